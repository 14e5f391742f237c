/* Warm migrations: the source runs while its disks are copied; rounds
 * copy what changed since the round before until the cutover stops the
 * source and copies the last delta (<ferry/warm.h>).
 *
 * Two sources of change:
 *  - a running QEMU (qmp:PATH): its disks are exported read-only by the
 *    VM itself over NBD on a Unix socket (block-export-add), and dirty
 *    bitmaps say what the guest wrote (notes 1 to 4);
 *  - a VMware-style VM (a VMX, OVF or folder) whose disks are snapshot
 *    deltas: the base copy reads each chain as it is; a round copies the
 *    grains of every delta that a newer snapshot froze since (note 6),
 *    and the cutover the grains of the delta the VM wrote last;
 *  - anything else (a raw file, a block device, an NBD export): fixed
 *    chunks hashed each round against the hashes of what the target
 *    holds (lib/copy/delta.c); the first round is the base copy.
 *
 * NOTES
 *
 * 1. No write falls between two bitmaps.  Bitmap "TAG-bN" starts before
 *    the base copy reads a byte.  A round starts the next one and stops
 *    every older one in one QMP transaction, so each guest write lands in
 *    a bitmap that is recording; the round then merges every stopped
 *    bitmap of ours into "TAG-m", exports the disk again with it, and
 *    copies the ranges it marks (the qemu:dirty-bitmap:TAG-m context).
 *    The data read may be newer than the freeze: those ranges are dirty in
 *    the recording bitmap too, and copied again by the next round.
 *
 * 2. A round's bitmaps are removed only once the targets are flushed and
 *    closed, so a kill at any moment leaves them in the VM: the next run
 *    stops whatever of ours still records, merges every one of ours that
 *    does not, and copies that.  The generation N is saved before the
 *    transaction that starts TAG-bN, so a name is never used twice.
 *
 * 3. A VM that no longer has our bitmaps (QEMU restarted, non-persistent
 *    bitmaps, or removed by hand) or a base copy whose bitmap went missing
 *    cannot say what changed: new bitmaps start first, then the next
 *    round compares every chunk (a hash round against a table that knows
 *    nothing, which reads the target too) and says so; blocks are never
 *    skipped on trust that is gone.  The loss is looked for when the job
 *    attaches to the VM, before each round, and in the round itself (a
 *    freeze refused, no stopped bitmap to merge or a merge that finds one
 *    gone).  A merge of no bitmap at all is never sent: QEMU 7.2 crashes
 *    on it (the source VM gone).
 *
 * 4. The source is only read until the cutover, and only the cutover stops
 *    it: a guest shutdown through ACPI with QEMU told to pause instead of
 *    exiting (set-action), or QMP stop; a shutdown that takes longer than
 *    its timeout becomes a stop.  "stopped" is saved before the stop is
 *    sent, so a run killed there goes straight to the last delta and never
 *    lets the VM run again; that run first stops the VM again if it still
 *    runs (the kill came before the stop, or during a guest's shutdown).
 *
 * 5. The prediction: the rounds measured how fast the source dirties
 *    (bytes the last one marked over the time since the freeze before)
 *    and how fast the copy moves (the median of the last OVERHEAD_ROUNDS
 *    rounds that copied 1 MiB or more: the best one seen is a lucky
 *    round, and with it a round's cost beyond its bytes looked larger
 *    than it is); if the stop came at the end of a round, the last delta
 *    would be what dirtied during that round and the stop.  Downtime =
 *    stop + a round's fixed cost + that delta / throughput + the steps
 *    after (AFTER_STEPS, the description and the commit; a conversion
 *    when there is one), the time from the stop to the output in place.
 *    The stop is a QMP stop when the source is paused: as long as the
 *    last freeze's QMP transaction took, PAUSE_COST at the least (a
 *    shutdown's length is the guest's own and not counted).  A round's
 *    fixed cost (its QMP commands, the export, the target's open and
 *    flush: its seconds beyond bytes / throughput) swings by 2x from one
 *    round to the next on a busy host, so the median of the last
 *    OVERHEAD_ROUNDS rounds' is taken.  A hash source re-reads all of
 *    itself in its last round: the last round's time is the estimate.
 *
 * 6. A snapshot chain: every write since the base copy began lands in the
 *    delta that was the top then ("active", saved before the base copy)
 *    or in a newer one.  A round walks each disk's chain from its top
 *    down to the saved active delta and copies, oldest first, every delta
 *    below the top: the grains allocated in the delta alone (opened
 *    without its parents), read through its own chain, so a grain the
 *    target takes whole is never filled from the wrong layer; where the
 *    delta alone reads as a hole, zeroes of its own (qcow2 and VDI report
 *    them as holes) that hide its parents' data are written, the rest
 *    left alone (layer_hidden).  The top becomes the new active one.  The cutover (the user has powered the
 *    VM off: ferry cannot) copies the top too.  An active delta that is
 *    no longer in the chain (snapshots consolidated) costs a full
 *    comparison (note 3).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <ferry/copy.h>
#include <ferry/error.h>
#include <ferry/image.h>
#include <ferry/qmp.h>
#include <ferry/vm.h>
#include <ferry/warm.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/stop.h"
#include "../common/util.h"

/* Rounds that keep shrinking run back to back, at most this many before
 * an automatic cutover ("now") goes ahead anyway. */
#define MAX_ROUNDS_NOW 8
/* A round shrinks when it copies less than this share of the one before. */
#define SHRINK 0.8
/* Seconds the steps after the last delta take (description, commit), and
 * a guest's conversion when there is one, for the prediction. */
#define AFTER_STEPS 0.02
#define CONVERT_ESTIMATE 60.0
/* Seconds QMP stop takes to pause the vCPUs, at the least: a VM's own
 * QMP answers (the freeze's) say more (note 5). */
#define PAUSE_COST 0.01
/* The rounds whose fixed cost and throughput the prediction takes the
 * median of. */
#define OVERHEAD_ROUNDS 5
/* Seconds a QMP command may take. */
#define QMP_TIMEOUT 30.0

enum kind { KIND_BITMAP, KIND_CHAIN, KIND_HASH };

struct ferry_warm {
  struct ferry_warm_options o;
  char *source, *domain, *workdir, *tag;   /* o's strings, ours */
  enum kind kind;
  bool run;

  /* A running QEMU. */
  struct ferry_qmp *q;
  char *sock;                  /* the NBD server's socket */
  bool server_ours;            /* the VM's NBD server is ours, to stop */
  struct ferry_qmp_disk *qd;   /* its disks */
  size_t nqd;
  size_t *vm_qd;               /* per VM disk, its index in QD */

  struct ferry_vm *vm;          /* until ferry_warm_take_vm */
  size_t vm_disks;             /* its disks */
  json_object *state;          /* what a later run needs (note 2) */

  /* What the rounds measured, for the prediction (note 5). */
  double last_freeze;          /* epoch seconds of the last freeze */
  double last_seconds;         /* the last round's length */
  double overheads[OVERHEAD_ROUNDS]; /* the last rounds' seconds beyond
                                      * their bytes, oldest first */
  unsigned nr_overheads;
  double throughputs[OVERHEAD_ROUNDS]; /* the last measured rounds'
                                        * bytes/s copied, oldest first */
  unsigned nr_throughputs;
  double qmp_seconds;          /* the last freeze's QMP transaction */
  double rate;                 /* bytes/s dirtied */
  double throughput;           /* bytes/s copied, best seen */
  uint64_t pending;             /* a chain's top: its bytes */
  bool have_round;
};

/* Seconds since the epoch. */
static double
epoch_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* "1.5 MB" style figures for messages, into BUF. */
static const char *
human (double bytes, char *buf, size_t len)
{
  static const char *const units[] = { "B", "KB", "MB", "GB", "TB" };
  size_t u = 0;

  while (bytes >= 1000 && u + 1 < sizeof units / sizeof units[0]) {
    bytes /= 1000;
    u++;
  }
  snprintf (buf, len, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

/* Pass a message at LEVEL to the journal's note, if it has one. */
static void
note (const struct ferry_warm_journal *j, const char *level,
      const char *fmt, ...)
{
  CLEANUP_FREE char *msg = NULL;
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = vasprintf (&msg, fmt, ap);
  va_end (ap);
  if (n >= 0 && j && j->note)
    j->note (j->opaque, level, msg);
}

/* --- the saved state (note 2) ------------------------------------------------ */

/* The saved state's integer KEY, 0 when it has none. */
static int64_t
state_int (struct ferry_warm *w, const char *key)
{
  json_object *v;

  return json_object_object_get_ex (w->state, key, &v)
    ? json_object_get_int64 (v) : 0;
}

/* The saved state's number KEY, 0 when it has none. */
static double
state_double (struct ferry_warm *w, const char *key)
{
  json_object *v;

  return json_object_object_get_ex (w->state, key, &v)
    ? json_object_get_double (v) : 0;
}

/* Set the state's integer KEY (kept at the next save_state). */
static void
state_set_int (struct ferry_warm *w, const char *key, int64_t v)
{
  json_object_object_add (w->state, key, json_object_new_int64 (v));
}

/* Set the state's number KEY (kept at the next save_state). */
static void
state_set_double (struct ferry_warm *w, const char *key, double v)
{
  json_object_object_add (w->state, key, json_object_new_double (v));
}

/* Hand the state to the journal. */
static int
save_state (struct ferry_warm *w, const struct ferry_warm_journal *j)
{
  if (j == NULL || j->save == NULL)
    return 0;
  return j->save (j->opaque, json_object_to_json_string_ext (
                    w->state, JSON_C_TO_STRING_PLAIN));
}

/* --- QMP --------------------------------------------------------------------- */

/* The QMP error, said as the source VM's when its connection is gone. */
static int
qmp_failed (struct ferry_warm *w)
{
  int e = ferry_get_errno ();

  if (e == EPIPE || e == ECONNRESET || e == ENOTCONN) {
    /* A copy: the new message is written where the old one is. */
    CLEANUP_FREE char *why = strdup (ferry_get_error ());
    return ferry_error (ENOTCONN, "the source VM went away (%s)",
                        why ? why : "?");
  }
  return -1;
}

/* Run COMMAND with ARGS (taken over, may be NULL). */
static int
qmp (struct ferry_warm *w, const char *command, json_object *args,
     json_object **ret)
{
  int r = ferry_qmp_execute (w->q, command, args, ret);

  json_object_put (args);
  return r == -1 ? qmp_failed (w) : 0;
}

/* {"node": NODE, "name": NAME} */
static json_object *
node_name (const char *node, const char *name)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "node", json_object_new_string (node));
  json_object_object_add (o, "name", json_object_new_string (name));
  return o;
}

/* The export id of disk I: "TAG-dI" for the base copy, "TAG-xI" for a
 * round's bitmap. */
static char *
export_id (struct ferry_warm *w, char what, size_t i)
{
  char *s;

  return asprintf (&s, "%s-%c%zu", w->tag, what, i) == -1 ? NULL : s;
}

/* The NBD URI of export ID. */
static char *
export_uri (struct ferry_warm *w, const char *id)
{
  char *s;

  return asprintf (&s, "nbd+unix:///%s?socket=%s", id, w->sock) == -1
    ? NULL : s;
}

/* Remove every export of ours whose id starts with PREFIX ("" all), and
 * wait until QEMU has let go of them (their bitmaps are busy until then). */
static int
del_exports (struct ferry_warm *w, const char *prefix)
{
  CLEANUP_FREE char *mine = NULL;
  double deadline = now_seconds () + QMP_TIMEOUT;

  if (asprintf (&mine, "%s-%s", w->tag, prefix) == -1)
    return ferry_error (ENOMEM, "out of memory");
  for (;;) {
    json_object *list = NULL;
    size_t i, n, left = 0;

    if (qmp (w, "query-block-exports", NULL, &list) == -1)
      return -1;
    n = json_object_is_type (list, json_type_array)
      ? json_object_array_length (list) : 0;
    for (i = 0; i < n; i++) {
      json_object *e = json_object_array_get_idx (list, i), *v;
      const char *id = json_object_object_get_ex (e, "id", &v)
        ? json_object_get_string (v) : "";
      bool dying = json_object_object_get_ex (e, "shutting-down", &v) &&
        json_object_get_boolean (v);
      if (strncmp (id, mine, strlen (mine)) != 0)
        continue;
      left++;
      if (!dying) {
        json_object *a = json_object_new_object ();
        json_object_object_add (a, "id", json_object_new_string (id));
        json_object_object_add (a, "mode", json_object_new_string ("hard"));
        if (qmp (w, "block-export-del", a, NULL) == -1) {
          json_object_put (list);
          return -1;
        }
      }
    }
    json_object_put (list);
    if (left == 0)
      return 0;
    if (now_seconds () > deadline)
      return ferry_error (ETIMEDOUT, "qmp:%s: the VM did not remove "
                          "ferry's exports in %.0f s", ferry_qmp_path (w->q),
                          QMP_TIMEOUT);
    if (stop_requested ())
      return ferry_error (EINTR, "interrupted");
    usleep (20000);
  }
}

/* Export node NODE read-only as ID, with BITMAP (or NULL). */
static int
add_export (struct ferry_warm *w, const char *id, const char *node,
            const char *bitmap)
{
  json_object *a = json_object_new_object ();

  json_object_object_add (a, "type", json_object_new_string ("nbd"));
  json_object_object_add (a, "id", json_object_new_string (id));
  json_object_object_add (a, "node-name", json_object_new_string (node));
  json_object_object_add (a, "name", json_object_new_string (id));
  json_object_object_add (a, "writable", json_object_new_boolean (false));
  if (bitmap) {
    json_object *b = json_object_new_array ();
    json_object_array_add (b, json_object_new_string (bitmap));
    json_object_object_add (a, "bitmaps", b);
  }
  return qmp (w, "block-export-add", a, NULL);
}

/* True when something listens on the Unix socket PATH. */
static bool
socket_listens (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd, r;

  if (strlen (path) >= sizeof sa.sun_path)
    return false;
  strcpy (sa.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1)
    return false;
  r = connect (fd, (struct sockaddr *) &sa, sizeof sa);
  close (fd);
  return r == 0;
}

/* Start the VM's NBD server on our socket, or find that an earlier run of
 * ours left it running there.  Only a server of ours is stopped by
 * ferry_warm_close: one the VM runs for someone else (a backup) is left
 * alone, and refused. */
static int
start_server (struct ferry_warm *w)
{
  json_object *a = json_object_new_object (), *addr, *data;
  struct stat st;

  addr = json_object_new_object ();
  data = json_object_new_object ();
  json_object_object_add (data, "path", json_object_new_string (w->sock));
  json_object_object_add (addr, "type", json_object_new_string ("unix"));
  json_object_object_add (addr, "data", data);
  json_object_object_add (a, "addr", addr);
  if (ferry_qmp_execute (w->q, "nbd-server-start", a, NULL) == 0) {
    json_object_put (a);
    w->server_ours = true;
    return 0;
  }
  json_object_put (a);
  if (ferry_get_errno () != EPROTO)
    return qmp_failed (w);
  /* Ours, from a run that was killed: the socket is still there, and
   * served (a socket file left by a QEMU that died is not). */
  if (lstat (w->sock, &st) == 0 && S_ISSOCK (st.st_mode) &&
      socket_listens (w->sock)) {
    w->server_ours = true;
    return 0;
  }
  {
    /* The refusal's text, copied: the new message is written where it
     * was. */
    CLEANUP_FREE char *why = strdup (ferry_get_error ());
    return ferry_error (EBUSY, "qmp:%s: the VM runs an NBD server already "
                        "(a backup, another migration?), so ferry cannot "
                        "export its disks (%s)", ferry_qmp_path (w->q),
                        why ? why : "?");
  }
}

/* The names of our bitmaps ("TAG-b...") on disk QD, NULL-terminated, in
 * *OUT (the caller frees the array, not the strings), and whether one of
 * them records. */
static int
our_bitmaps (struct ferry_warm *w, const struct ferry_qmp_disk *qd,
             const char ***out, size_t *n, bool *recording)
{
  CLEANUP_FREE char *prefix = NULL;
  size_t i, k = 0;

  *out = NULL;
  *n = 0;
  if (recording)
    *recording = false;
  if (asprintf (&prefix, "%s-b", w->tag) == -1)
    return ferry_error (ENOMEM, "out of memory");
  for (i = 0; qd->bitmaps[i]; i++)
    ;
  *out = calloc (i + 1, sizeof **out);
  if (*out == NULL)
    return ferry_error (ENOMEM, "out of memory");
  for (i = 0; qd->bitmaps[i]; i++)
    if (strncmp (qd->bitmaps[i], prefix, strlen (prefix)) == 0) {
      (*out)[k++] = qd->bitmaps[i];
      if (recording && qd->bitmap_recording[i])
        *recording = true;
    }
  *n = k;
  return 0;
}

/* Query the disks again (their bitmaps change). */
static int
refresh_disks (struct ferry_warm *w)
{
  struct ferry_qmp_disk *qd;
  size_t n;

  if (ferry_qmp_query_disks (w->q, &qd, &n) == -1)
    return qmp_failed (w);
  if (n != w->nqd) {
    ferry_qmp_disks_free (qd, n);
    return ferry_error (ENOTCONN, "qmp:%s: the VM's disks changed during "
                        "the migration (%zu, then %zu)",
                        ferry_qmp_path (w->q), w->nqd, n);
  }
  ferry_qmp_disks_free (w->qd, w->nqd);
  w->qd = qd;
  return 0;
}

/* True when VM disk I is one we migrate (it has a QEMU disk). */
static bool
migrated (struct ferry_warm *w, size_t i)
{
  return w->vm_qd && w->vm_qd[i] != (size_t) -1;
}

/* --- the VM ------------------------------------------------------------------ */

/* A VM model of our own making, named NAME, with no device yet. */
static struct ferry_vm *
new_vm (const char *name, const char *source, const char *type)
{
  struct ferry_vm *vm = calloc (1, sizeof *vm);

  if (vm == NULL)
    return NULL;
  vm->name = strdup (name);
  vm->source = strdup (source);
  vm->source_type = strdup (type);
  if (!vm->name || !vm->source || !vm->source_type) {
    ferry_vm_free (vm);
    return NULL;
  }
  vm->vcpus = 1;
  vm->memory = 1ull << 30;
  return vm;
}

/* Add a disk reading PATH to VM. */
static struct ferry_vm_disk *
add_disk (struct ferry_vm *vm, const char *path, uint64_t size)
{
  struct ferry_vm_disk *d = realloc (vm->disks,
                                     (vm->nr_disks + 1) * sizeof *d);

  if (d == NULL)
    return NULL;
  vm->disks = d;
  d = &vm->disks[vm->nr_disks];
  memset (d, 0, sizeof *d);
  d->controller = d->unit = -1;
  d->bus = FERRY_VM_BUS_VIRTIO;
  d->capacity = size;
  d->path = strdup (path);
  d->file = strdup (path);
  if (d->path == NULL || d->file == NULL) {
    free (d->path);
    free (d->file);
    return NULL;
  }
  vm->nr_disks++;
  return d;
}

/* The name a file or socket gives a VM: its base name, no extension. */
static char *
name_of (const char *path)
{
  const char *b = strrchr (path, '/');
  char *s = strdup (b ? b + 1 : path), *dot;

  if (s && (dot = strrchr (s, '.')) != NULL && dot != s)
    *dot = '\0';
  return s;
}

/* Start bitmap TAG-bN, N the next generation (saved first, note 2), on
 * each of the first NDISKS VM disks we migrate, in one transaction: the
 * first bitmaps, or those that replace bitmaps the VM lost (notes 1 and
 * 3). */
static int
start_bitmaps (struct ferry_warm *w, size_t ndisks,
               const struct ferry_warm_journal *j)
{
  json_object *actions = json_object_new_array (), *args;
  char name[256];
  int64_t gen = state_int (w, "gen") + 1;
  size_t i;

  state_set_int (w, "gen", gen);
  if (save_state (w, j) == -1) {
    json_object_put (actions);
    return -1;
  }
  snprintf (name, sizeof name, "%s-b%" PRId64, w->tag, gen);
  for (i = 0; i < ndisks; i++) {
    json_object *a;
    if (!migrated (w, i))
      continue;
    a = json_object_new_object ();
    json_object_object_add (a, "type",
                            json_object_new_string ("block-dirty-bitmap-add"));
    json_object_object_add (a, "data",
                            node_name (w->qd[w->vm_qd[i]].node, name));
    json_object_array_add (actions, a);
  }
  args = json_object_new_object ();
  json_object_object_add (args, "actions", actions);
  if (qmp (w, "transaction", args, NULL) == -1)
    return -1;
  state_set_double (w, "freeze", epoch_now ());
  return 0;
}

/* Of the first NDISKS VM disks, how many we migrate (*OF) and how many
 * of those have a bitmap of ours (*WITH). */
static int
disks_tracked (struct ferry_warm *w, size_t ndisks, size_t *with, size_t *of)
{
  size_t i;

  *with = *of = 0;
  for (i = 0; i < ndisks; i++) {
    CLEANUP_FREE const char **mine = NULL;
    size_t n;
    if (!migrated (w, i))
      continue;
    if (our_bitmaps (w, &w->qd[w->vm_qd[i]], &mine, &n, NULL) == -1)
      return -1;
    ++*of;
    if (n)
      ++*with;
  }
  return 0;
}

/* Whether the VM lost the bitmaps of ours on a disk we migrate (removed
 * by hand, a QEMU restarted without them) since the last round: then (1)
 * new ones start before anything is read, and the round that follows
 * compares every chunk (note 3).  0 when they are all there. */
static int
bitmaps_lost (struct ferry_warm *w, const struct ferry_warm_journal *j)
{
  size_t with, of;

  if (refresh_disks (w) == -1 ||
      disks_tracked (w, w->vm_disks, &with, &of) == -1)
    return -1;
  if (with == of)
    return 0;
  state_set_int (w, "fallback", 1);
  if (start_bitmaps (w, w->vm_disks, j) == -1 || save_state (w, j) == -1)
    return -1;
  return 1;
}

/* The VM of a running QEMU: its description when the user gave one, else
 * what QMP tells; its disks then read the exports. */
static int
qmp_vm (struct ferry_warm *w)
{
  size_t i, k;

  if (w->domain) {
    w->vm = ferry_vm_read_target (w->domain);
    if (w->vm == NULL)
      return -1;
  }
  else {
    json_object *r = NULL, *v;
    CLEANUP_FREE char *name = NULL;

    if (ferry_qmp_execute (w->q, "query-name", NULL, &r) == 0 &&
        json_object_object_get_ex (r, "name", &v))
      name = strdup (json_object_get_string (v));
    json_object_put (r);
    if (name == NULL)
      name = name_of (ferry_qmp_path (w->q));
    w->vm = name ? new_vm (name, w->source, "qmp") : NULL;
    if (w->vm == NULL)
      return ferry_error (ENOMEM, "out of memory");
    r = NULL;
    if (ferry_qmp_execute (w->q, "query-cpus-fast", NULL, &r) == 0 &&
        json_object_is_type (r, json_type_array) &&
        json_object_array_length (r) > 0)
      w->vm->vcpus = json_object_array_length (r);
    json_object_put (r);
    r = NULL;
    if (ferry_qmp_execute (w->q, "query-memory-size-summary", NULL, &r) == 0 &&
        json_object_object_get_ex (r, "base-memory", &v))
      w->vm->memory = json_object_get_uint64 (v);
    json_object_put (r);
    for (i = 0; i < w->nqd; i++)
      if (!w->qd[i].removable &&
          add_disk (w->vm, w->qd[i].file ? w->qd[i].file : w->qd[i].node,
                    w->qd[i].virtual_size) == NULL)
        return ferry_error (ENOMEM, "out of memory");
  }

  /* Each described disk is the QEMU disk with its file, else the next
   * one in order. */
  w->vm_qd = calloc (w->vm->nr_disks + 1, sizeof *w->vm_qd);
  if (w->vm_qd == NULL)
    return ferry_error (ENOMEM, "out of memory");
  {
    CLEANUP_FREE bool *used = calloc (w->nqd + 1, sizeof *used);
    if (used == NULL)
      return ferry_error (ENOMEM, "out of memory");
    for (i = 0; i < w->vm->nr_disks; i++) {
      struct ferry_vm_disk *d = &w->vm->disks[i];
      CLEANUP_FREE char *real = d->path ? realpath (d->path, NULL) : NULL;
      w->vm_qd[i] = (size_t) -1;
      for (k = 0; real && k < w->nqd; k++) {
        CLEANUP_FREE char *qreal = w->qd[k].file
          ? realpath (w->qd[k].file, NULL) : NULL;
        if (!used[k] && !w->qd[k].removable && qreal &&
            strcmp (qreal, real) == 0)
          break;
      }
      if (!real || k == w->nqd)
        for (k = 0; k < w->nqd; k++)
          if (!used[k] && !w->qd[k].removable)
            break;
      if (k == w->nqd)
        return ferry_error (EINVAL, "%s: its disk %zu (%s) is none of the "
                            "running VM's disks (qmp:%s)", w->domain, i + 1,
                            d->path ? d->path : "no file",
                            ferry_qmp_path (w->q));
      used[k] = true;
      w->vm_qd[i] = k;
    }
    for (k = 0; k < w->nqd; k++)
      if (!used[k] && !w->qd[k].removable)
        return ferry_error (EINVAL, "%s describes %zu disk%s, but the running "
                            "VM has more (%s is not described)", w->domain,
                            w->vm->nr_disks, w->vm->nr_disks == 1 ? "" : "s",
                            w->qd[k].file ? w->qd[k].file : w->qd[k].node);
  }
  for (i = 0; i < w->vm->nr_disks; i++) {
    struct ferry_vm_disk *d = &w->vm->disks[i];
    CLEANUP_FREE char *id = export_id (w, 'd', i);
    char *uri = id ? export_uri (w, id) : NULL;
    if (uri == NULL)
      return ferry_error (ENOMEM, "out of memory");
    free (d->path);
    d->path = uri;
    free (d->format);
    d->format = NULL;
    free (d->member);
    d->member = NULL;
    d->compression = FERRY_VM_COMPRESSION_NONE;
    d->flags &= ~FERRY_VM_DISK_SNAPSHOT;
    d->capacity = w->qd[w->vm_qd[i]].virtual_size;
  }
  w->vm->has_snapshots = false;
  return 0;
}

/* Attach to a running QEMU: check it, start the NBD server, the base
 * exports and (RUN) the first bitmaps. */
static int
qmp_open (struct ferry_warm *w, const char *path)
{
  json_object *jobs = NULL;
  char status[32];
  size_t i;

  w->q = ferry_qmp_connect (path, QMP_TIMEOUT);
  if (w->q == NULL)
    return -1;
  if (ferry_qmp_status (w->q, status, sizeof status) == -1)
    return qmp_failed (w);
  if (strcmp (status, "running") && strcmp (status, "paused") &&
      !(strcmp (status, "shutdown") == 0 && state_int (w, "stopped")))
    return ferry_error (EINVAL, "qmp:%s: the VM is %s: a warm migration "
                        "needs it running (or paused)", path, status);
  if (qmp (w, "query-block-jobs", NULL, &jobs) == -1)
    return -1;
  if (json_object_is_type (jobs, json_type_array) &&
      json_object_array_length (jobs) > 0) {
    json_object *j0 = json_object_array_get_idx (jobs, 0), *v;
    CLEANUP_FREE char *what = NULL;
    if (asprintf (&what, "%s on %s",
                  json_object_object_get_ex (j0, "type", &v)
                  ? json_object_get_string (v) : "a job",
                  json_object_object_get_ex (j0, "device", &v)
                  ? json_object_get_string (v) : "?") == -1)
      what = NULL;
    json_object_put (jobs);
    return ferry_error (EBUSY, "qmp:%s: the VM already runs a block job (%s): "
                        "wait for it to end, or cancel it, then try again",
                        path, what ? what : "?");
  }
  json_object_put (jobs);
  if (ferry_qmp_query_disks (w->q, &w->qd, &w->nqd) == -1)
    return qmp_failed (w);
  for (i = 0; i < w->nqd; i++)
    if (!w->qd[i].removable)
      break;
  if (i == w->nqd)
    return ferry_error (EINVAL, "qmp:%s: the VM has no disk", path);
  if (qmp_vm (w) == -1)
    return -1;

  if (start_server (w) == -1)
    return -1;
  /* Leftovers of a run that was killed. */
  if (del_exports (w, "") == -1)
    return -1;

  if (w->run) {
    /* The first bitmaps, before the base copy reads a byte (note 1); a
     * VM that lost ours needs a full comparison (note 3). */
    size_t with, of;

    if (disks_tracked (w, w->vm->nr_disks, &with, &of) == -1)
      return -1;
    if (with == 0) {
      if (state_int (w, "gen") > 0)
        state_set_int (w, "fallback", 1);
      if (start_bitmaps (w, w->vm->nr_disks, w->o.journal) == -1)
        return -1;
      if (!state_int (w, "started"))
        state_set_int (w, "started", 1);
    }
    w->last_freeze = state_double (w, "freeze");
  }

  for (i = 0; i < w->vm->nr_disks; i++) {
    CLEANUP_FREE char *id = export_id (w, 'd', i);
    if (!migrated (w, i))
      continue;
    if (id == NULL)
      return ferry_error (ENOMEM, "out of memory");
    if (add_export (w, id, w->qd[w->vm_qd[i]].node, NULL) == -1)
      return -1;
  }
  return 0;
}

/* --- hash sources ------------------------------------------------------------- */

/* The VM of an image, block device or NBD export: one disk. */
static int
hash_open (struct ferry_warm *w)
{
  struct ferry_image *img;
  CLEANUP_FREE char *name = NULL;
  uint64_t size;

  img = ferry_image_open (w->source, NULL, FERRY_OPEN_SHARED);
  if (img == NULL)
    return -1;
  size = ferry_image_size (img);
  ferry_image_close (img);
  name = name_of (w->source);
  if (name == NULL || (w->vm = new_vm (name, w->source, "image")) == NULL ||
      add_disk (w->vm, w->source, size) == NULL)
    return ferry_error (ENOMEM, "out of memory");
  return 0;
}

/* --- snapshot chains (note 6) --------------------------------------------------- */

/* The files of the chain whose top is PATH, top first, NULL-terminated
 * (the caller frees each and the array). */
static char **
chain_files (const char *path)
{
  struct ferry_image *img = ferry_image_open (path, NULL, FERRY_OPEN_SHARED);
  struct ferry_image *layer;
  char **files = NULL;
  size_t n = 0;

  if (img == NULL)
    return NULL;
  for (layer = img; layer; layer = ferry_image_backing (layer)) {
    char **f = realloc (files, (n + 2) * sizeof *f);
    if (f == NULL)
      goto nomem;
    files = f;
    files[n] = realpath (ferry_image_path (layer), NULL);
    if (files[n] == NULL)
      files[n] = strdup (ferry_image_path (layer));
    if (files[n] == NULL)
      goto nomem;
    files[++n] = NULL;
  }
  ferry_image_close (img);
  return files;
 nomem:
  ferry_image_close (img);
  while (n > 0)
    free (files[--n]);
  free (files);
  ferry_error (ENOMEM, "out of memory");
  return NULL;
}

/* Free a list of chain_files. */
static void
free_files (char **files)
{
  size_t i;

  for (i = 0; files && files[i]; i++)
    free (files[i]);
  free (files);
}

/* The state's key for disk I's active delta. */
static void
active_key (size_t i, char *buf, size_t len)
{
  snprintf (buf, len, "active%zu", i);
}

/* A VMware-style VM whose disks are snapshot deltas: read it, and (RUN)
 * save each disk's top as the active delta before anything is read. */
static int
chain_open (struct ferry_warm *w)
{
  size_t i, deltas = 0;

  w->vm = ferry_vm_read (w->source);
  if (w->vm == NULL)
    return -1;
  for (i = 0; i < w->vm->nr_disks; i++) {
    struct ferry_vm_disk *d = &w->vm->disks[i];
    char **files;
    char key[32];
    if (d->path == NULL || d->member || (d->flags & FERRY_VM_DISK_NO_FILE))
      return ferry_error (EINVAL, "%s: disk %zu is %s: a warm migration "
                          "reads the disks of a VM in place (not inside a "
                          "package)", w->source, i + 1,
                          d->member ? "inside a package" : "not a file");
    files = chain_files (d->path);
    if (files == NULL)
      return -1;
    if (files[1])
      deltas++;
    active_key (i, key, sizeof key);
    if (w->run && !json_object_object_get_ex (w->state, key, NULL))
      json_object_object_add (w->state, key,
                              json_object_new_string (files[0]));
    free_files (files);
  }
  if (deltas == 0)
    return ferry_error (EINVAL, "%s: no disk of the VM is a snapshot delta, "
                        "so nothing tells what changes while it runs: take "
                        "a snapshot first (the base is then copied while "
                        "the VM writes to the delta), or migrate it cold",
                        w->source);
  return 0;
}

/* --- opening ------------------------------------------------------------------ */

/* True when SOURCE is a VM's description (read by ferry_vm_read: a
 * folder, a .vmx, .ovf, .ova or .vbox), not a disk. */
static bool
is_description (const char *source)
{
  static const char *const suffixes[] = { ".vmx", ".ovf", ".ova", ".vbox" };
  size_t i, n = strlen (source);
  struct stat st;

  if (stat (source, &st) == 0 && S_ISDIR (st.st_mode))
    return true;
  for (i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    size_t k = strlen (suffixes[i]);
    if (n > k && strcasecmp (source + n - k, suffixes[i]) == 0)
      return true;
  }
  return false;
}

/* A copy of S, or NULL for NULL; *OK false when out of memory. */
static char *
dup_or_null (const char *s, bool *ok)
{
  char *d = s ? strdup (s) : NULL;

  if (s && d == NULL)
    *ok = false;
  return d;
}

struct ferry_warm *
ferry_warm_open (const struct ferry_warm_options *o, bool run,
                 const char *state)
{
  struct ferry_warm *w = calloc (1, sizeof *w);
  bool ok = true;

  if (w == NULL) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  w->o = *o;
  w->run = run;
  w->source = dup_or_null (o->source, &ok);
  w->domain = dup_or_null (o->domain, &ok);
  w->workdir = dup_or_null (o->workdir, &ok);
  w->tag = dup_or_null (o->tag ? o->tag : "ferry", &ok);
  w->o.source = w->source;
  w->o.domain = w->domain;
  w->o.workdir = w->workdir;
  w->o.tag = w->tag;
  if (!ok) {
    ferry_error (ENOMEM, "out of memory");
    goto err;
  }
  if (w->source == NULL) {
    ferry_error (EINVAL, "no source");
    goto err;
  }
  if (state && *state) {
    w->state = json_tokener_parse (state);
    if (!json_object_is_type (w->state, json_type_object)) {
      ferry_error (EINVAL, "the warm migration's saved state is damaged");
      goto err;
    }
  }
  else
    w->state = json_object_new_object ();
  if (w->workdir && mkdir (w->workdir, 0700) == -1 && errno != EEXIST) {
    ferry_error_errno (errno, "%s", w->workdir);
    goto err;
  }

  if (strncmp (w->source, "qmp:", 4) == 0) {
    w->kind = KIND_BITMAP;
    if (w->workdir == NULL) {
      ferry_error (EINVAL, "a warm migration needs a working folder");
      goto err;
    }
    if (asprintf (&w->sock, "%s/nbd.sock", w->workdir) == -1) {
      w->sock = NULL;
      ferry_error (ENOMEM, "out of memory");
      goto err;
    }
    if (strlen (w->sock) >= 100) {
      ferry_error (ENAMETOOLONG, "%s: too long a path for a socket",
                   w->sock);
      goto err;
    }
    if (qmp_open (w, w->source + 4) == -1)
      goto err;
  }
  else if (is_description (w->source)) {
    w->kind = KIND_CHAIN;
    if (w->domain) {
      ferry_error (EINVAL, "--domain describes a running QEMU (qmp:PATH), "
                   "not %s", w->source);
      goto err;
    }
    if (chain_open (w) == -1)
      goto err;
  }
  else {
    w->kind = KIND_HASH;
    if (w->domain) {
      ferry_error (EINVAL, "--domain describes a running QEMU (qmp:PATH), "
                   "not %s", w->source);
      goto err;
    }
    if (hash_open (w) == -1)
      goto err;
  }
  w->vm_disks = w->vm->nr_disks;
  w->o.journal = NULL;                  /* the caller's, for the open only */
  return w;

 err:
  {
    struct error_saved saved;
    error_save (&saved);
    ferry_warm_close (w, !run);
    error_restore (&saved);
  }
  return NULL;
}

struct ferry_vm *
ferry_warm_take_vm (struct ferry_warm *w)
{
  struct ferry_vm *vm = w->vm;

  w->vm_disks = vm ? vm->nr_disks : 0;
  w->vm = NULL;
  return vm;
}

const char *
ferry_warm_kind (const struct ferry_warm *w)
{
  return w->kind == KIND_BITMAP ? "bitmap" : w->kind == KIND_CHAIN ? "snapshot"
    : "hash";
}

bool
ferry_warm_copies_base (const struct ferry_warm *w)
{
  return w->kind != KIND_HASH;
}

/* Remove bitmap NAME of NODE, saying nothing when it is gone. */
static void
remove_bitmap (struct ferry_warm *w, const char *node, const char *name)
{
  if (ferry_qmp_execute (w->q, "block-dirty-bitmap-remove",
                         node_name (node, name), NULL) == -1)
    ferry_debug ("%s: removing bitmap %s: %s", node, name, ferry_get_error ());
}

/* Remove the files of ferry's in W's workdir (hash tables, a socket
 * left behind) and the folder. */
static void
remove_workdir (struct ferry_warm *w)
{
  DIR *d = w->workdir ? opendir (w->workdir) : NULL;
  struct dirent *e;

  if (d == NULL)
    return;
  while ((e = readdir (d)) != NULL) {
    size_t n = strlen (e->d_name);
    if ((strncmp (e->d_name, "disk", 4) == 0 && n > 7 &&
         strcmp (e->d_name + n - 7, ".hashes") == 0) ||
        strcmp (e->d_name, "nbd.sock") == 0)
      unlinkat (dirfd (d), e->d_name, 0);
  }
  closedir (d);
  rmdir (w->workdir);
}

void
ferry_warm_close (struct ferry_warm *w, bool finished)
{
  size_t i, k;

  if (w == NULL)
    return;
  if (w->q) {
    struct error_saved saved;
    error_save (&saved);
    del_exports (w, "");
    if (finished || !w->run) {
      if (finished && refresh_disks (w) == 0)
        for (i = 0; i < w->nqd; i++)
          for (k = 0; w->qd[i].bitmaps[k]; k++)
            if (strncmp (w->qd[i].bitmaps[k], w->tag, strlen (w->tag)) == 0 &&
                w->qd[i].bitmaps[k][strlen (w->tag)] == '-')
              remove_bitmap (w, w->qd[i].node, w->qd[i].bitmaps[k]);
      if (w->server_ours &&
          ferry_qmp_execute (w->q, "nbd-server-stop", NULL, NULL) == -1)
        ferry_debug ("nbd-server-stop: %s", ferry_get_error ());
      if (w->sock && w->server_ours)
        unlink (w->sock);
    }
    ferry_qmp_close (w->q);
    error_restore (&saved);
  }
  if (finished)
    remove_workdir (w);
  ferry_qmp_disks_free (w->qd, w->nqd);
  ferry_vm_free (w->vm);
  json_object_put (w->state);
  free (w->vm_qd);
  free (w->sock);
  free (w->source);
  free (w->domain);
  free (w->workdir);
  free (w->tag);
  free (w);
}

int
ferry_warm_forget (const struct ferry_warm_options *o)
{
  struct ferry_warm *w = calloc (1, sizeof *w);
  bool ok = true;
  int r = 0;

  if (w == NULL)
    return ferry_error (ENOMEM, "out of memory");
  w->run = true;
  w->workdir = dup_or_null (o->workdir, &ok);
  w->tag = dup_or_null (o->tag ? o->tag : "ferry", &ok);
  w->state = json_object_new_object ();
  if (ok && w->workdir && asprintf (&w->sock, "%s/nbd.sock", w->workdir) == -1)
    w->sock = NULL, ok = false;
  if (!ok) {
    ferry_warm_close (w, false);
    return ferry_error (ENOMEM, "out of memory");
  }
  if (o->source && strncmp (o->source, "qmp:", 4) == 0) {
    w->q = ferry_qmp_connect (o->source + 4, QMP_TIMEOUT);
    if (w->q == NULL)
      r = -1;
    else if (ferry_qmp_query_disks (w->q, &w->qd, &w->nqd) == -1)
      r = qmp_failed (w);
    else
      w->server_ours = w->sock && socket_listens (w->sock);
  }
  if (r == -1) {
    /* Nothing of the VM's was touched: its leftovers stay, and so do
     * the files that say what they are. */
    struct error_saved saved;
    error_save (&saved);
    ferry_warm_close (w, false);
    error_restore (&saved);
    return -1;
  }
  ferry_warm_close (w, true);
  return 0;
}

/* --- rounds ------------------------------------------------------------------- */

/* A round's figures, summed over the disks. */
struct tally {
  uint64_t bytes, bytes_read;
  double copy_seconds;
};

/* The extents of a bitmap round: the bitmap's dirty ranges are copied,
 * the clean ones left alone. */
struct delta {
  struct ferry_image *src;
  char context[300];
};

/* The copy's extents callback for a bitmap round (struct delta). */
static int
delta_extents (void *opaque, uint64_t offset, uint64_t length,
               struct ferry_extent_list *list)
{
  struct delta *d = opaque;
  struct ferry_extent_list dirty = { 0 };
  size_t i;
  int r = 0;

  if (ferry_image_context_extents (d->src, d->context, offset, length,
                                   &dirty) == -1)
    return -1;
  for (i = 0; i < dirty.len && r == 0; i++)
    r = ferry_extent_list_append (list, dirty.ptr[i].offset,
                                  dirty.ptr[i].length,
                                  (dirty.ptr[i].flags & 1) ? 0
                                  : FERRY_EXTENT_SKIP);
  ferry_extent_list_free (&dirty);
  return r;
}

/* Bytes the context of D marks dirty. */
static int
dirty_bytes (struct delta *d, uint64_t size, uint64_t *bytes)
{
  struct ferry_extent_list l = { 0 };
  uint64_t pos = 0;

  *bytes = 0;
  while (pos < size) {
    size_t i;
    l.len = 0;
    if (ferry_image_context_extents (d->src, d->context, pos,
                                     MIN (size - pos, 1ull << 30), &l) == -1) {
      ferry_extent_list_free (&l);
      return -1;
    }
    for (i = 0; i < l.len; i++) {
      uint64_t e = MIN (l.ptr[i].offset + l.ptr[i].length, size);
      if (e <= pos)
        continue;
      if (l.ptr[i].flags & 1)
        *bytes += e - MAX (l.ptr[i].offset, pos);
      pos = e;
    }
    if (l.len == 0)
      break;
  }
  ferry_extent_list_free (&l);
  return 0;
}

/* Open plan disk I's target in STAGING for writing. */
static struct ferry_image *
open_target (struct ferry_v2v_plan *plan, size_t i, const char *staging,
             bool create, bool *fresh)
{
  const struct ferry_v2v_disk *pd = &plan->disks[i];
  CLEANUP_FREE char *path = NULL;
  struct stat st;

  if (asprintf (&path, "%s/%s", staging, pd->target_name) == -1) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (fresh)
    *fresh = false;
  if (create && lstat (path, &st) == -1 && errno == ENOENT) {
    if (fresh)
      *fresh = true;
    return ferry_image_create (path, pd->target_format, pd->virtual_size,
                               NULL);
  }
  return ferry_image_open (path, pd->target_format, FERRY_OPEN_WRITE);
}

/* Copy disk I's dirty ranges (bitmap MERGED, exported as ID) into its
 * target. */
static int
bitmap_copy_disk (struct ferry_warm *w, struct ferry_v2v_plan *plan,
                  size_t i, const char *staging, const char *id,
                  const char *merged, struct tally *t)
{
  const struct ferry_v2v_disk *pd = &plan->disks[i];
  CLEANUP_FREE char *uri = export_uri (w, id);
  struct delta d = { 0 };
  struct ferry_copy_options copts = {
    .extents = delta_extents, .extents_opaque = &d, .overwrite = true,
  };
  struct ferry_image *dst = NULL;
  uint64_t bytes = 0;
  double t0;
  int r = -1;

  if (uri == NULL)
    return ferry_error (ENOMEM, "out of memory");
  snprintf (d.context, sizeof d.context, "qemu:dirty-bitmap:%s", merged);
  d.src = ferry_image_open (uri, "raw", FERRY_OPEN_SHARED);
  if (d.src == NULL)
    return -1;
  if (dirty_bytes (&d, ferry_image_size (d.src), &bytes) == -1)
    goto out;
  t0 = now_seconds ();
  if (bytes) {
    dst = open_target (plan, i, staging, false, NULL);
    if (dst == NULL)
      goto out;
    if (ferry_copy (d.src, dst, &copts) == -1)
      goto out;
    if (ferry_image_close (dst) == -1) {
      dst = NULL;
      goto out;
    }
    dst = NULL;
  }
  t->bytes += bytes;
  t->bytes_read += bytes;
  t->copy_seconds += now_seconds () - t0;
  r = 0;
 out:
  if (r == -1) {
    struct error_saved saved;
    error_save (&saved);
    ferry_image_close (dst);
    error_restore (&saved);
    ferry_error_prefix ("disk %zu (%s)", pd->index + 1, pd->source);
  }
  ferry_image_close (d.src);
  return r;
}

/* Disk I by hashes (a hash source, or a VM that lost its bitmaps):
 * SOURCE is what to read. */
static int
hash_copy_disk (struct ferry_warm *w, struct ferry_v2v_plan *plan, size_t i,
                const char *staging, const char *source, bool forget,
                struct tally *t)
{
  const struct ferry_v2v_disk *pd = &plan->disks[i];
  CLEANUP_FREE char *table_path = NULL;
  struct ferry_image *src = NULL, *dst = NULL;
  struct ferry_hash_table *table = NULL;
  struct ferry_delta_stats stats = { 0 };
  struct ferry_copy_options copts = { 0 };
  bool fresh;
  int r = -1;

  if (asprintf (&table_path, "%s/disk%zu.hashes", w->workdir, i) == -1)
    return ferry_error (ENOMEM, "out of memory");
  src = ferry_image_open (source, NULL, FERRY_OPEN_SHARED);
  if (src == NULL)
    goto out;
  dst = open_target (plan, i, staging, true, &fresh);
  if (dst == NULL)
    goto out;
  if (fresh)
    unlink (table_path);
  table = ferry_hash_table_open (table_path, ferry_image_size (src), 0, fresh);
  if (table == NULL && ferry_get_errno () == ESTALE) {
    unlink (table_path);
    table = ferry_hash_table_open (table_path, ferry_image_size (src), 0,
                                   false);
  }
  if (table == NULL)
    goto out;
  if (forget && ferry_hash_table_forget (table) == -1)
    goto out;
  if (ferry_hash_round (src, dst, table, &copts, &stats) == -1)
    goto out;
  if (ferry_image_close (dst) == -1) {
    dst = NULL;
    goto out;
  }
  dst = NULL;
  t->bytes += stats.bytes_written;
  t->bytes_read += stats.bytes_read;
  t->copy_seconds += stats.seconds;
  r = 0;
 out:
  if (r == -1) {
    struct error_saved saved;
    error_save (&saved);
    ferry_image_close (dst);
    error_restore (&saved);
    ferry_error_prefix ("disk %zu (%s)", pd->index + 1, pd->source);
  }
  ferry_hash_table_close (table);
  ferry_image_close (src);
  return r;
}

/* One round of a running QEMU (notes 1 and 2): freeze, merge, copy,
 * then drop what it copied; 1 when our bitmaps turn out lost (note 3),
 * new ones recording. */
static int
bitmap_round (struct ferry_warm *w, struct ferry_v2v_plan *plan,
              const char *staging, const struct ferry_warm_journal *j,
              struct tally *t)
{
  CLEANUP_FREE char *merged = NULL;
  json_object *actions;
  char name[256];
  int64_t gen;
  size_t i, k;

  if (asprintf (&merged, "%s-m", w->tag) == -1)
    return ferry_error (ENOMEM, "out of memory");
  /* A killed round's leftovers: its export, its merged bitmap. */
  if (del_exports (w, "x") == -1 || refresh_disks (w) == -1)
    return -1;
  for (i = 0; i < w->vm_disks; i++) {
    struct ferry_qmp_disk *qd;
    if (!migrated (w, i))
      continue;
    qd = &w->qd[w->vm_qd[i]];
    for (k = 0; qd->bitmaps[k]; k++)
      if (strcmp (qd->bitmaps[k], merged) == 0)
        remove_bitmap (w, qd->node, merged);
  }

  /* The freeze: a new bitmap starts, every other of ours stops, in one
   * transaction over every disk. */
  gen = state_int (w, "gen") + 1;
  state_set_int (w, "gen", gen);
  if (save_state (w, j) == -1)
    return -1;
  snprintf (name, sizeof name, "%s-b%" PRId64, w->tag, gen);
  actions = json_object_new_array ();
  for (i = 0; i < w->vm_disks; i++) {
    CLEANUP_FREE const char **mine = NULL;
    struct ferry_qmp_disk *qd;
    json_object *a;
    size_t n;
    if (!migrated (w, i))
      continue;
    qd = &w->qd[w->vm_qd[i]];
    a = json_object_new_object ();
    json_object_object_add (a, "type",
                            json_object_new_string ("block-dirty-bitmap-add"));
    json_object_object_add (a, "data", node_name (qd->node, name));
    json_object_array_add (actions, a);
    if (our_bitmaps (w, qd, &mine, &n, NULL) == -1) {
      json_object_put (actions);
      return -1;
    }
    for (k = 0; k < n; k++) {
      size_t b;
      for (b = 0; qd->bitmaps[b]; b++)
        if (qd->bitmaps[b] == mine[k] && qd->bitmap_recording[b])
          break;
      if (qd->bitmaps[b] == NULL)
        continue;                       /* stopped already */
      a = json_object_new_object ();
      json_object_object_add (a, "type", json_object_new_string (
                                "block-dirty-bitmap-disable"));
      json_object_object_add (a, "data", node_name (qd->node, mine[k]));
      json_object_array_add (actions, a);
    }
  }
  {
    json_object *args = json_object_new_object ();
    double t0 = now_seconds ();
    json_object_object_add (args, "actions", actions);
    if (qmp (w, "transaction", args, NULL) == -1) {
      /* Refused as a whole, nothing done: a bitmap of ours that went
       * since the look before is a lost one (note 3). */
      int lost;
      struct error_saved saved;
      if (ferry_get_errno () != EPROTO)
        return -1;
      error_save (&saved);
      lost = bitmaps_lost (w, j);
      if (lost == 0)
        error_restore (&saved);
      return lost == 0 ? -1 : lost;
    }
    w->qmp_seconds = now_seconds () - t0;
  }
  state_set_double (w, "freeze", epoch_now ());
  if (refresh_disks (w) == -1)
    return -1;

  /* Every stopped bitmap of ours merged into one, exported, copied. */
  for (i = 0; i < w->vm_disks; i++) {
    CLEANUP_FREE const char **mine = NULL;
    CLEANUP_FREE char *id = export_id (w, 'x', i);
    struct ferry_qmp_disk *qd;
    json_object *a, *list;
    size_t n;
    if (!migrated (w, i))
      continue;
    qd = &w->qd[w->vm_qd[i]];
    if (id == NULL)
      return ferry_error (ENOMEM, "out of memory");
    a = node_name (qd->node, merged);
    json_object_object_add (a, "disabled", json_object_new_boolean (true));
    if (qmp (w, "block-dirty-bitmap-add", a, NULL) == -1)
      return -1;
    if (our_bitmaps (w, qd, &mine, &n, NULL) == -1)
      return -1;
    list = json_object_new_array ();
    for (k = 0; k < n; k++)
      if (strcmp (mine[k], name) != 0)
        json_object_array_add (list, json_object_new_string (mine[k]));
    if (json_object_array_length (list) == 0) {
      /* No stopped bitmap of ours: lost since the look before the round
       * (note 3).  Never a merge of none: QEMU 7.2 crashes on it
       * (segfault, the source VM gone). */
      json_object_put (list);
      state_set_int (w, "fallback", 1);
      return save_state (w, j) == -1 ? -1 : 1;
    }
    a = json_object_new_object ();
    json_object_object_add (a, "node", json_object_new_string (qd->node));
    json_object_object_add (a, "target", json_object_new_string (merged));
    json_object_object_add (a, "bitmaps", list);
    if (qmp (w, "block-dirty-bitmap-merge", a, NULL) == -1) {
      if (ferry_get_errno () != EPROTO)
        return -1;
      /* A stopped bitmap went before its merge: what it held is lost,
       * and TAG-bN records from the freeze on (note 3). */
      state_set_int (w, "fallback", 1);
      return save_state (w, j) == -1 ? -1 : 1;
    }
    if (add_export (w, id, qd->node, merged) == -1)
      return -1;
    if (bitmap_copy_disk (w, plan, i, staging, id, merged, t) == -1) {
      if (ferry_get_errno () != EINTR) {
        /* The VM may have gone: say so rather than what NBD saw. */
        char st[32];
        struct error_saved saved;
        error_save (&saved);
        if (ferry_qmp_status (w->q, st, sizeof st) == -1)
          return qmp_failed (w);
        error_restore (&saved);
      }
      return -1;
    }
    if (del_exports (w, "x") == -1)
      return -1;
    /* Copied and flushed: the stopped bitmaps have served (note 2). */
    remove_bitmap (w, qd->node, merged);
    for (k = 0; k < n; k++)
      if (strcmp (mine[k], name) != 0)
        remove_bitmap (w, qd->node, mine[k]);
  }
  return 0;
}

/* A delta as a round copies it: the delta alone (opened without its
 * parents) says what it holds, its own chain (SRC) what that reads. */
struct layer {
  struct ferry_image *alone, *src;
};

/* Append [OFF, END), where the delta alone reports a hole (nothing of
 * its own, or zero clusters or grains that hide its parents' data: a
 * driver reports both alike), to LIST: zeroes where its chain reads
 * zeroes over its parents' data, SKIP elsewhere (the target holds what
 * the parents read).  A delta with no parent (a disk written in place)
 * reads zeroes there: written as zeroes. */
static int
layer_hidden (struct layer *l, uint64_t off, uint64_t end,
              struct ferry_extent_list *list)
{
  struct ferry_image *parent = ferry_image_backing (l->src);
  struct ferry_extent_list x = { 0 };
  int r = 0;

  while (off < end && r == 0) {
    uint64_t n = end - off;
    uint32_t flags = FERRY_EXTENT_SKIP;
    x.len = 0;
    r = ferry_image_extents (l->src, off, n, &x);
    if (r == 0 && (x.len == 0 || x.ptr[0].offset > off))
      r = ferry_error (EIO, "%s: no extent at offset %" PRIu64,
                       ferry_image_path (l->src), off);
    if (r == -1)
      break;
    n = MIN (x.ptr[0].offset + x.ptr[0].length, end) - off;
    if (x.ptr[0].flags & FERRY_EXTENT_ZERO) {
      flags = FERRY_EXTENT_ZERO;
      if (parent) {
        x.len = 0;
        r = ferry_image_extents (parent, off, n, &x);
        if (r == 0 && (x.len == 0 || x.ptr[0].offset > off))
          r = ferry_error (EIO, "%s: no extent at offset %" PRIu64,
                           ferry_image_path (parent), off);
        if (r == -1)
          break;
        n = MIN (x.ptr[0].offset + x.ptr[0].length, off + n) - off;
        if (x.ptr[0].flags & FERRY_EXTENT_ZERO)
          flags = FERRY_EXTENT_SKIP;    /* zeroes in the parents too */
      }
    }
    r = ferry_extent_list_append (list, off, n, flags);
    off += n;
  }
  ferry_extent_list_free (&x);
  return r;
}

/* The extents of one delta (struct layer): what it holds is copied, by
 * its flags; where it holds nothing, see layer_hidden. */
static int
layer_extents (void *opaque, uint64_t offset, uint64_t length,
               struct ferry_extent_list *list)
{
  struct layer *lay = opaque;
  struct ferry_extent_list l = { 0 };
  size_t i;
  int r = 0;

  if (ferry_image_extents (lay->alone, offset, length, &l) == -1)
    return -1;
  for (i = 0; i < l.len && r == 0; i++) {
    uint64_t start = MAX (l.ptr[i].offset, offset);
    uint64_t end = MIN (l.ptr[i].offset + l.ptr[i].length, offset + length);
    if (end <= start)
      continue;
    if (l.ptr[i].flags & FERRY_EXTENT_HOLE)
      r = layer_hidden (lay, start, end, list);
    else
      r = ferry_extent_list_append (list, start, end - start,
                                    l.ptr[i].flags);
  }
  ferry_extent_list_free (&l);
  return r;
}

/* Bytes the delta ALONE allocates; with its chain SRC, the bytes a round
 * copies of it (layer_extents: its zeroes that hide data count too). */
static int
layer_bytes (struct ferry_image *alone, struct ferry_image *src,
             uint64_t *bytes)
{
  struct ferry_extent_list l = { 0 };
  struct layer lay = { .alone = alone, .src = src };
  uint64_t size = ferry_image_size (alone), pos = 0;

  *bytes = 0;
  while (pos < size) {
    size_t i;
    uint64_t n = MIN (size - pos, 1ull << 30);
    l.len = 0;
    if ((src ? layer_extents (&lay, pos, n, &l)
         : ferry_image_extents (alone, pos, n, &l)) == -1) {
      ferry_extent_list_free (&l);
      return -1;
    }
    if (l.len == 0)
      break;
    for (i = 0; i < l.len; i++) {
      uint64_t e = MIN (l.ptr[i].offset + l.ptr[i].length, size);
      if (e > pos && !(l.ptr[i].flags &
                       (src ? FERRY_EXTENT_SKIP : FERRY_EXTENT_HOLE)))
        *bytes += e - MAX (l.ptr[i].offset, pos);
      pos = MAX (pos, e);
    }
  }
  ferry_extent_list_free (&l);
  return 0;
}

/* Copy the grains of delta FILE into plan disk I's target. */
static int
copy_layer (struct ferry_v2v_plan *plan, size_t i, const char *staging,
            const char *file, struct tally *t)
{
  struct ferry_image *src = NULL, *alone = NULL, *dst = NULL;
  struct layer lay;
  struct ferry_copy_options copts = { .extents = layer_extents,
                                      .overwrite = true };
  uint64_t bytes;
  double t0 = now_seconds ();
  int r = -1;

  src = ferry_image_open (file, NULL, FERRY_OPEN_SHARED);
  alone = src ? ferry_image_open (file, NULL, FERRY_OPEN_SHARED |
                                  FERRY_OPEN_NO_BACKING) : NULL;
  if (alone == NULL || layer_bytes (alone, src, &bytes) == -1)
    goto out;
  lay.alone = alone;
  lay.src = src;
  copts.extents_opaque = &lay;
  if (bytes) {
    dst = open_target (plan, i, staging, false, NULL);
    if (dst == NULL || ferry_copy (src, dst, &copts) == -1)
      goto out;
    r = ferry_image_close (dst);
    dst = NULL;
    if (r == -1)
      goto out;
  }
  t->bytes += bytes;
  t->bytes_read += bytes;
  t->copy_seconds += now_seconds () - t0;
  r = 0;
 out:
  if (r == -1) {
    struct error_saved saved;
    error_save (&saved);
    ferry_image_close (dst);
    error_restore (&saved);
    ferry_error_prefix ("%s", file);
  }
  ferry_image_close (alone);
  ferry_image_close (src);
  return r;
}

/* One round of a snapshot chain (note 6): the deltas frozen since the
 * last one, and with FINAL the top as well.  *PENDING: bytes the top
 * holds (what the last delta would be now). */
static int
chain_round (struct ferry_warm *w, struct ferry_v2v_plan *plan,
             const char *staging, bool final,
             const struct ferry_warm_journal *j, struct tally *t,
             uint64_t *pending)
{
  struct ferry_vm *now = ferry_vm_read (w->source);
  size_t i;
  int r = 0;

  *pending = 0;
  if (now == NULL)
    return -1;
  if (now->nr_disks != w->vm_disks) {
    ferry_vm_free (now);
    return ferry_error (EINVAL, "%s: the VM has %zu disks now, %zu when the "
                        "migration began", w->source, now->nr_disks,
                        w->vm_disks);
  }
  for (i = 0; i < plan->nr_disks && r == 0; i++) {
    size_t di = plan->disks[i].index, k, a;
    char **files;
    char key[32];
    const char *active;
    if (!plan->disks[i].migrated)
      continue;
    active_key (di, key, sizeof key);
    active = json_object_get_string (json_object_object_get (w->state, key));
    files = chain_files (now->disks[di].path);
    if (files == NULL) {
      r = -1;
      break;
    }
    for (a = 0; files[a] && !(active && strcmp (files[a], active) == 0); a++)
      ;
    if (files[a] == NULL) {
      note (j, "warning", "disk %zu: the delta %s is no longer in its chain "
            "(snapshots deleted?): this round compares every chunk", di + 1,
            active ? active : "?");
      r = hash_copy_disk (w, plan, i, staging, now->disks[di].path, true, t);
    }
    else {
      /* Oldest first: files[a] down to files[1], and the top if final. */
      size_t lo = final ? 0 : 1;
      for (k = a + 1; r == 0 && k-- > lo; )
        r = copy_layer (plan, i, staging, files[k], t);
    }
    if (r == 0) {
      struct ferry_image *top = ferry_image_open (files[0], NULL,
                                                  FERRY_OPEN_SHARED |
                                                  FERRY_OPEN_NO_BACKING);
      uint64_t b = 0;
      if (top && layer_bytes (top, NULL, &b) == 0 && !final)
        *pending += b;
      ferry_image_close (top);
      json_object_object_add (w->state, key,
                              json_object_new_string (files[0]));
      r = save_state (w, j);
    }
    free_files (files);
  }
  ferry_vm_free (now);
  return r;
}

/* One round by hashes over every disk.  FORGET: nothing known of the
 * targets (note 3). */
static int
hash_round (struct ferry_warm *w, struct ferry_v2v_plan *plan,
            const char *staging, bool forget, struct tally *t)
{
  size_t i;

  for (i = 0; i < plan->nr_disks; i++) {
    const struct ferry_vm_disk *d = &plan->vm->disks[plan->disks[i].index];
    if (!plan->disks[i].migrated)
      continue;
    if (hash_copy_disk (w, plan, i, staging, d->path, forget, t) == -1)
      return -1;
  }
  return 0;
}

/* Keep X as the newest of the last OVERHEAD_ROUNDS values V (*N of them,
 * oldest first). */
static void
keep_last (double *v, unsigned *n, double x)
{
  if (*n == OVERHEAD_ROUNDS) {
    memmove (v, v + 1, (OVERHEAD_ROUNDS - 1) * sizeof v[0]);
    (*n)--;
  }
  v[(*n)++] = x;
}

/* The median of the N values V (N at most OVERHEAD_ROUNDS); 0 for none. */
static double
median (const double *v, unsigned n)
{
  double s[OVERHEAD_ROUNDS], t;
  unsigned i, k;

  if (n == 0)
    return 0;
  memcpy (s, v, n * sizeof s[0]);
  for (i = 1; i < n; i++)             /* insertion sort: five at most */
    for (k = i; k > 0 && s[k - 1] > s[k]; k--) {
      t = s[k];
      s[k] = s[k - 1];
      s[k - 1] = t;
    }
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The throughput a round can expect (note 5): the median of the last
 * measured ones, else the best seen. */
static double
typical_throughput (const struct ferry_warm *w)
{
  return w->nr_throughputs ? median (w->throughputs, w->nr_throughputs)
    : w->throughput;
}

/* The round after the VM lost our bitmaps (note 3): new ones record
 * already; every chunk of each disk is compared, the target read too. */
static int
lost_round (struct ferry_warm *w, struct ferry_v2v_plan *plan,
            const char *staging, const struct ferry_warm_journal *j,
            struct tally *t)
{
  size_t i;

  note (j, "warning", "the source VM lost ferry's dirty bitmaps (was it "
        "restarted, or were they removed?): this round compares every "
        "chunk of its disks");
  state_set_double (w, "freeze", epoch_now ());
  for (i = 0; i < plan->nr_disks; i++) {
    CLEANUP_FREE char *id = export_id (w, 'd', plan->disks[i].index);
    CLEANUP_FREE char *uri = id ? export_uri (w, id) : NULL;
    if (!plan->disks[i].migrated)
      continue;
    if (uri == NULL)
      return ferry_error (ENOMEM, "out of memory");
    if (hash_copy_disk (w, plan, i, staging, uri, true, t) == -1)
      return -1;
  }
  state_set_int (w, "fallback", 0);
  return 0;
}

/* The downtime if the source stopped now (note 5); < 0 when unknown. */
static double
predict (struct ferry_warm *w)
{
  double after = w->o.converts ? CONVERT_ESTIMATE : AFTER_STEPS;
  double stop = w->kind == KIND_BITMAP && w->o.source_pause
    ? MAX (PAUSE_COST, w->qmp_seconds) : 0;
  double overhead;

  if (!w->have_round)
    return -1;
  if (w->kind == KIND_HASH)
    return w->last_seconds + after;
  if (w->throughput <= 0)
    return -1;
  overhead = median (w->overheads, w->nr_overheads);
  if (w->kind == KIND_CHAIN)
    return overhead + w->pending / typical_throughput (w) + after;
  return stop + overhead +
    w->rate * (w->last_seconds + stop) / typical_throughput (w) + after;
}

/* Stop the source (note 4). */
static int
stop_source (struct ferry_warm *w, const struct ferry_warm_journal *j)
{
  double deadline;
  char status[32];

  state_set_int (w, "stopped", 1);
  state_set_double (w, "stopped-at", epoch_now ());
  if (save_state (w, j) == -1)
    return -1;
  if (j && j->stopped)
    j->stopped (j->opaque, state_double (w, "stopped-at"));
  if (w->kind == KIND_HASH) {
    note (j, "info", "cutover: the source must no longer change; the last "
          "round reads it whole");
    return 0;
  }
  if (w->kind == KIND_CHAIN) {
    note (j, "info", "cutover: the source VM must be powered off now (ferry "
          "cannot stop it); the last round copies the delta it wrote last");
    return 0;
  }
  if (w->o.source_pause) {
    note (j, "info", "cutover: pausing the source VM");
    return qmp (w, "stop", NULL, NULL);
  }
  note (j, "info", "cutover: shutting the source VM down");
  {
    json_object *a = json_object_new_object ();
    json_object_object_add (a, "shutdown", json_object_new_string ("pause"));
    if (qmp (w, "set-action", a, NULL) == -1)
      return -1;
  }
  if (qmp (w, "system_powerdown", NULL, NULL) == -1)
    return -1;
  deadline = now_seconds () + (w->o.shutdown_timeout > 0
                               ? w->o.shutdown_timeout : 120);
  for (;;) {
    if (ferry_qmp_status (w->q, status, sizeof status) == -1)
      return qmp_failed (w);
    if (strcmp (status, "running") != 0)
      return 0;
    if (now_seconds () > deadline) {
      note (j, "warning", "the guest did not shut down in %.0f s: pausing it",
            w->o.shutdown_timeout > 0 ? w->o.shutdown_timeout : 120);
      return qmp (w, "stop", NULL, NULL);
    }
    if (stop_requested ())
      return ferry_error (EINTR, "interrupted");
    usleep (200000);
  }
}

/* Sleep up to SECONDS, ending early on a cutover asked or a stop. */
static void
nap (const struct ferry_warm_journal *j, double seconds)
{
  double end = now_seconds () + seconds;

  while (now_seconds () < end && !stop_requested () &&
         !(j && j->cutover_asked && j->cutover_asked (j->opaque)))
    usleep (100000);
}

int
ferry_warm_sync (struct ferry_warm *w, struct ferry_v2v_plan *plan,
                 const char *staging, const struct ferry_warm_journal *j)
{
  unsigned number = state_int (w, "round");
  uint64_t prev_bytes = 0;
  bool final = state_int (w, "stopped") != 0;
  unsigned since_asked = 0;
  char why[512] = "";

  if (w->kind == KIND_BITMAP && w->last_freeze == 0)
    w->last_freeze = state_double (w, "freeze");
  if (final && w->kind == KIND_BITMAP) {
    /* A run killed after "stopped" was saved but before the VM stopped
     * (or one that someone let run again): the last delta is only the
     * last once the VM no longer writes (note 4). */
    char status[32];
    if (ferry_qmp_status (w->q, status, sizeof status) == -1)
      return qmp_failed (w);
    if (strcmp (status, "running") == 0) {
      note (j, "warning", "the source VM runs although its cutover began: "
            "stopping it again");
      if (stop_source (w, j) == -1)
        return -1;
    }
  }
  for (;;) {
    struct ferry_warm_round rd = { 0 };
    struct tally t = { 0 };
    double t0 = now_seconds (), freeze_before = w->last_freeze, pred;
    bool fallback = state_int (w, "fallback") != 0;
    bool asked, want;
    int r;

    if (stop_requested ())
      return ferry_error (EINTR, "interrupted");
    /* Bitmaps that went while the rounds ran are found before a round
     * trusts them (note 3). */
    if (w->kind == KIND_BITMAP && !fallback) {
      r = bitmaps_lost (w, j);
      if (r == -1)
        return -1;
      fallback = r == 1;
    }
    rd.started = epoch_now ();
    if (w->kind == KIND_HASH)
      r = hash_round (w, plan, staging, false, &t);
    else if (w->kind == KIND_CHAIN)
      r = chain_round (w, plan, staging, final, j, &t, &w->pending);
    else {
      r = fallback ? 1 : bitmap_round (w, plan, staging, j, &t);
      if (r == 1) {
        fallback = true;
        r = lost_round (w, plan, staging, j, &t);
      }
    }
    if (r == -1)
      return -1;

    /* The round is in the targets: record it. */
    number++;
    rd.number = number;
    rd.kind = w->kind == KIND_HASH || (fallback && w->kind == KIND_BITMAP)
      ? "hash" : ferry_warm_kind (w);
    rd.final = final;
    rd.bytes = t.bytes;
    rd.bytes_read = t.bytes_read;
    rd.seconds = now_seconds () - t0;
    if (w->kind == KIND_BITMAP) {
      w->last_freeze = state_double (w, "freeze");
      if (freeze_before > 0 && w->last_freeze > freeze_before)
        rd.dirty_rate = t.bytes / (w->last_freeze - freeze_before);
    }
    else if (w->kind == KIND_HASH && w->have_round)
      rd.dirty_rate = t.bytes / MAX (rd.started - w->last_freeze, 0.001);
    if (w->kind != KIND_BITMAP) {
      if (w->last_freeze > 0 && w->kind == KIND_CHAIN)
        rd.dirty_rate = t.bytes / MAX (rd.started - w->last_freeze, 0.001);
      w->last_freeze = rd.started;
    }
    if (t.copy_seconds > 0.01 && t.bytes >= (1u << 20)) {
      rd.throughput = t.bytes / t.copy_seconds;
      keep_last (w->throughputs, &w->nr_throughputs, rd.throughput);
    }
    if (rd.throughput > w->throughput)
      w->throughput = rd.throughput;
    if (w->throughput <= 0)
      w->throughput = 100e6;             /* until one is measured */
    w->rate = rd.dirty_rate;
    w->last_seconds = rd.seconds;
    keep_last (w->overheads, &w->nr_overheads,
               MAX (rd.seconds - t.bytes / typical_throughput (w), 0));
    /* A hash source's first round is its base copy: no measure of what
     * changes. */
    w->have_round = !(w->kind == KIND_HASH && number == 1);
    state_set_int (w, "round", number);
    if (save_state (w, j) == -1)
      return -1;
    pred = predict (w);
    if (j && j->round && j->round (j->opaque, &rd, pred) == -1)
      return -1;
    if (final)
      return 0;

    /* Cut over now?  (And the hash source's base copy is no round to
     * judge by.) */
    asked = (j && j->cutover_asked && j->cutover_asked (j->opaque)) ||
      (w->o.cutover == FERRY_WARM_CUTOVER_AT && epoch_now () >= w->o.cutover_at);
    want = asked;
    if (w->o.cutover == FERRY_WARM_CUTOVER_NOW && w->have_round &&
        (prev_bytes == 0 || t.bytes >= SHRINK * prev_bytes ||
         number >= MAX_ROUNDS_NOW || t.bytes == 0))
      want = true;
    if (!w->have_round)
      want = false;                       /* one more round first */
    if (want && w->o.max_downtime > 0 && (pred < 0 || pred > w->o.max_downtime)) {
      char a[32], b[32];
      snprintf (why, sizeof why, "the predicted downtime, %.1f s, is over "
                "--max-downtime %.3g s: the source changes %s/s, the copy "
                "moves %s/s%s", pred, w->o.max_downtime,
                human (w->rate, a, sizeof a),
                human (w->throughput, b, sizeof b),
                prev_bytes && t.bytes >= SHRINK * prev_bytes
                ? "; the rounds no longer get smaller, so they will not "
                "catch up: slow the writes down or allow a longer downtime"
                : "");
      note (j, "warning", "%s", why);
      if (j && j->waiting)
        j->waiting (j->opaque, why);
      want = false;
    }
    if (want) {
      /* The last delta is what dirties from the last freeze to the stop:
       * if that has grown (a wait between rounds), one more live round
       * first (note 5). */
      double gap = epoch_now () - w->last_freeze;
      if (since_asked == 0 && w->kind == KIND_BITMAP &&
          gap > MAX (2 * rd.seconds, 1.0)) {
        since_asked++;
        continue;
      }
      if (j && j->waiting)
        j->waiting (j->opaque, NULL);
      if (stop_source (w, j) == -1)
        return -1;
      final = true;
      continue;
    }
    since_asked = 0;
    if (j && j->waiting && !(w->o.max_downtime > 0 && why[0])) {
      char p[64] = "";
      if (pred >= 0)
        snprintf (p, sizeof p, ", predicted downtime %.1f s", pred);
      snprintf (why, sizeof why, "%s%s",
                w->o.cutover == FERRY_WARM_CUTOVER_MANUAL
                ? "waiting for `ferry job cutover`"
                : w->o.cutover == FERRY_WARM_CUTOVER_AT
                ? "waiting for the cutover time" : "rounds running", p);
      j->waiting (j->opaque, why);
    }
    why[0] = '\0';
    /* Rounds that shrink follow at once; otherwise wait a while. */
    if (!(w->have_round && prev_bytes && t.bytes < SHRINK * prev_bytes) &&
        w->have_round)
      nap (j, w->o.round_interval > 0 ? w->o.round_interval : 10);
    prev_bytes = t.bytes;
  }
}

/* --- --cutover ---------------------------------------------------------------- */

int
ferry_warm_parse_cutover (const char *text, enum ferry_warm_cutover *mode,
                          double *at)
{
  struct tm tm = { 0 };
  const char *end;
  char *e;

  *at = 0;
  if (strcmp (text, "now") == 0) {
    *mode = FERRY_WARM_CUTOVER_NOW;
    return 0;
  }
  if (strcmp (text, "manual") == 0) {
    *mode = FERRY_WARM_CUTOVER_MANUAL;
    return 0;
  }
  *mode = FERRY_WARM_CUTOVER_AT;
  if (text[0] == '+') {
    double s;
    errno = 0;
    s = strtod (text + 1, &e);
    if (errno || e == text + 1 || *e || !(s >= 0) || s > 1e9)
      return ferry_error (EINVAL, "--cutover %s: expected now, manual, a time "
                          "(2026-12-08T03:00) or +SECONDS", text);
    *at = epoch_now () + s;
    return 0;
  }
  tm.tm_isdst = -1;
  end = strptime (text, "%Y-%m-%dT%H:%M", &tm);
  if (end && *end == ':')
    end = strptime (end, ":%S", &tm);
  if (end == NULL || (*end && strcmp (end, "Z") != 0))
    return ferry_error (EINVAL, "--cutover %s: expected now, manual, a time "
                        "(2026-12-08T03:00, local, or with Z for UTC) or "
                        "+SECONDS", text);
  *at = *end == 'Z' ? (double) timegm (&tm) : (double) mktime (&tm);
  return 0;
}
