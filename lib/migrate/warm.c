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
 * warm-qmp.c holds a running QEMU's side (notes 1 to 4), warm-chain.c a
 * snapshot chain's (note 6); warm-internal.h what the three share.
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
 *    left alone (warm-chain.c, layer_hidden).  The top becomes the new
 *    active one.  The cutover (the user has powered the VM off: ferry
 *    cannot) copies the top too.  An active delta that is
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

#include "warm-internal.h"
#include "internal.h"
#include "../common/cleanup.h"
#include "../common/stop.h"
#include "../common/util.h"


/* Seconds since the epoch. */
double
warm_epoch_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* "1.5 MB" style figures for messages, into BUF. */
const char *
warm_human (double bytes, char *buf, size_t len)
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
void
warm_note (const struct ferry_warm_journal *j, const char *level,
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
int64_t
warm_state_int (struct ferry_warm *w, const char *key)
{
  json_object *v;

  return json_object_object_get_ex (w->state, key, &v)
    ? json_object_get_int64 (v) : 0;
}

/* The saved state's number KEY, 0 when it has none. */
double
warm_state_double (struct ferry_warm *w, const char *key)
{
  json_object *v;

  return json_object_object_get_ex (w->state, key, &v)
    ? json_object_get_double (v) : 0;
}

/* Set the state's integer KEY (kept at the next save_state). */
void
warm_state_set_int (struct ferry_warm *w, const char *key, int64_t v)
{
  json_object_object_add (w->state, key, json_object_new_int64 (v));
}

/* Set the state's number KEY (kept at the next save_state). */
void
warm_state_set_double (struct ferry_warm *w, const char *key, double v)
{
  json_object_object_add (w->state, key, json_object_new_double (v));
}

/* Hand the state to the journal. */
int
warm_save_state (struct ferry_warm *w, const struct ferry_warm_journal *j)
{
  if (j == NULL || j->save == NULL)
    return 0;
  return j->save (j->opaque, json_object_to_json_string_ext (
                    w->state, JSON_C_TO_STRING_PLAIN));
}

/* --- QMP --------------------------------------------------------------------- */

/* True when VM disk I is one we migrate (it has a QEMU disk). */
bool
warm_migrated (struct ferry_warm *w, size_t i)
{
  return w->vm_qd && w->vm_qd[i] != (size_t) -1;
}

/* --- the VM ------------------------------------------------------------------ */

/* A VM model of our own making, named NAME, with no device yet. */
struct ferry_vm *
warm_new_vm (const char *name, const char *source, const char *type)
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
struct ferry_vm_disk *
warm_add_disk (struct ferry_vm *vm, const char *path, uint64_t size)
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
char *
warm_name_of (const char *path)
{
  const char *b = strrchr (path, '/');
  char *s = strdup (b ? b + 1 : path), *dot;

  if (s && (dot = strrchr (s, '.')) != NULL && dot != s)
    *dot = '\0';
  return s;
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
  name = warm_name_of (w->source);
  if (name == NULL ||
      (w->vm = warm_new_vm (name, w->source, "image")) == NULL ||
      warm_add_disk (w->vm, w->source, size) == NULL)
    return ferry_error (ENOMEM, "out of memory");
  return 0;
}

/* --- snapshot chains (note 6) --------------------------------------------------- */

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
    if (warm_qmp_open (w, w->source + 4) == -1)
      goto err;
  }
  else if (w->domain) {
    ferry_error (EINVAL, "a description (domain) is for a running QEMU "
                 "(qmp:PATH), not %s", w->source);
    ferry_error_input ("domain");
    goto err;
  }
  else if (is_description (w->source)) {
    w->kind = KIND_CHAIN;
    if (warm_chain_open (w) == -1)
      goto err;
  }
  else {
    w->kind = KIND_HASH;
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
    warm_del_exports (w, "");
    if (finished || !w->run) {
      if (finished && warm_refresh_disks (w) == 0)
        for (i = 0; i < w->nqd; i++)
          for (k = 0; w->qd[i].bitmaps[k]; k++)
            if (strncmp (w->qd[i].bitmaps[k], w->tag, strlen (w->tag)) == 0 &&
                w->qd[i].bitmaps[k][strlen (w->tag)] == '-')
              warm_remove_bitmap (w, w->qd[i].node, w->qd[i].bitmaps[k]);
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
      r = warm_qmp_failed (w);
    else
      w->server_ours = w->sock && warm_socket_listens (w->sock);
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

/* Open plan disk I's target in STAGING for writing. */
struct ferry_image *
warm_open_target (struct ferry_v2v_plan *plan, size_t i, const char *staging,
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

/* Bytes of [0, SIZE) a delta copy with the extents EXTENTS (OPAQUE)
 * copies: all but its SKIP ranges. */
int
warm_extents_bytes (int (*extents) (void *, uint64_t, uint64_t,
                                    struct ferry_extent_list *),
                    void *opaque, uint64_t size, uint64_t *bytes)
{
  struct ferry_extent_list l = { 0 };
  uint64_t pos = 0;

  *bytes = 0;
  while (pos < size) {
    uint64_t reached = pos;
    size_t i;
    l.len = 0;
    if (extents (opaque, pos, MIN (size - pos, 1ull << 30), &l) == -1) {
      ferry_extent_list_free (&l);
      return -1;
    }
    for (i = 0; i < l.len; i++) {
      uint64_t s = MAX (l.ptr[i].offset, reached);
      uint64_t e = MIN (l.ptr[i].offset + l.ptr[i].length, size);
      if (e <= s)
        continue;
      if (!(l.ptr[i].flags & FERRY_EXTENT_SKIP))
        *bytes += e - s;
      reached = e;
    }
    if (reached == pos)
      break;                    /* nothing more said: the rest is none */
    pos = reached;
  }
  ferry_extent_list_free (&l);
  return 0;
}

/* Copy into plan disk I's target in STAGING what COPTS's extents give of
 * SRC (BYTES of them; none: the target is not even opened), and count
 * them in T.  The copy's error stands when the close fails after it. */
int
warm_copy_into (struct ferry_v2v_plan *plan, size_t i, const char *staging,
                struct ferry_image *src, const struct ferry_copy_options *copts,
                uint64_t bytes, struct tally *t)
{
  struct ferry_image *dst;
  double t0 = now_seconds ();

  if (bytes) {
    dst = warm_open_target (plan, i, staging, false, NULL);
    if (dst == NULL)
      return -1;
    if (ferry_copy (src, dst, copts) == -1) {
      struct error_saved saved;
      error_save (&saved);
      ferry_image_close (dst);
      error_restore (&saved);
      return -1;
    }
    if (ferry_image_close (dst) == -1)
      return -1;
  }
  t->bytes += bytes;
  t->bytes_read += bytes;
  t->copy_seconds += now_seconds () - t0;
  return 0;
}

/* Disk I by hashes (a hash source, or a VM that lost its bitmaps):
 * SOURCE is what to read. */
int
warm_hash_copy_disk (struct ferry_warm *w, struct ferry_v2v_plan *plan,
                     size_t i, const char *staging, const char *source,
                     bool forget, struct tally *t)
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
  dst = warm_open_target (plan, i, staging, true, &fresh);
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
    if (warm_hash_copy_disk (w, plan, i, staging, d->path, forget, t) == -1)
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

  warm_state_set_int (w, "stopped", 1);
  warm_state_set_double (w, "stopped-at", warm_epoch_now ());
  if (warm_save_state (w, j) == -1)
    return -1;
  if (j && j->stopped)
    j->stopped (j->opaque, warm_state_double (w, "stopped-at"));
  if (w->kind == KIND_HASH) {
    warm_note (j, "info", "cutover: the source must no longer change; the last "
               "round reads it whole");
    return 0;
  }
  if (w->kind == KIND_CHAIN) {
    warm_note (j, "info", "cutover: the source VM must be powered off now "
               "(ferry cannot stop it); the last round copies the delta it "
               "wrote last");
    return 0;
  }
  if (w->o.source_pause) {
    warm_note (j, "info", "cutover: pausing the source VM");
    return warm_qmp (w, "stop", NULL, NULL);
  }
  warm_note (j, "info", "cutover: shutting the source VM down");
  {
    json_object *a = json_object_new_object ();
    json_object_object_add (a, "shutdown", json_object_new_string ("pause"));
    if (warm_qmp (w, "set-action", a, NULL) == -1)
      return -1;
  }
  if (warm_qmp (w, "system_powerdown", NULL, NULL) == -1)
    return -1;
  deadline = now_seconds () + (w->o.shutdown_timeout > 0
                               ? w->o.shutdown_timeout : 120);
  for (;;) {
    if (ferry_qmp_status (w->q, status, sizeof status) == -1)
      return warm_qmp_failed (w);
    if (strcmp (status, "running") != 0)
      return 0;
    if (now_seconds () > deadline) {
      warm_note (j, "warning", "the guest did not shut down in %.0f s: "
                 "pausing it",
                 w->o.shutdown_timeout > 0 ? w->o.shutdown_timeout : 120);
      return warm_qmp (w, "stop", NULL, NULL);
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
  unsigned number = warm_state_int (w, "round");
  uint64_t prev_bytes = 0;
  bool final = warm_state_int (w, "stopped") != 0;
  unsigned since_asked = 0;
  char why[512] = "";

  if (w->kind == KIND_BITMAP && w->last_freeze == 0)
    w->last_freeze = warm_state_double (w, "freeze");
  if (final && w->kind == KIND_BITMAP) {
    /* A run killed after "stopped" was saved but before the VM stopped
     * (or one that someone let run again): the last delta is only the
     * last once the VM no longer writes (note 4). */
    char status[32];
    if (ferry_qmp_status (w->q, status, sizeof status) == -1)
      return warm_qmp_failed (w);
    if (strcmp (status, "running") == 0) {
      warm_note (j, "warning", "the source VM runs although its cutover began: "
                 "stopping it again");
      if (stop_source (w, j) == -1)
        return -1;
    }
  }
  for (;;) {
    struct ferry_warm_round rd = { 0 };
    struct tally t = { 0 };
    double t0 = now_seconds (), freeze_before = w->last_freeze, pred;
    bool fallback = warm_state_int (w, "fallback") != 0;
    bool asked, want;
    int r;

    if (stop_requested ())
      return ferry_error (EINTR, "interrupted");
    /* Bitmaps that went while the rounds ran are found before a round
     * trusts them (note 3). */
    if (w->kind == KIND_BITMAP && !fallback) {
      r = warm_bitmaps_lost (w, j);
      if (r == -1)
        return -1;
      fallback = r == 1;
    }
    rd.started = warm_epoch_now ();
    if (w->kind == KIND_HASH)
      r = hash_round (w, plan, staging, false, &t);
    else if (w->kind == KIND_CHAIN)
      r = warm_chain_round (w, plan, staging, final, j, &t, &w->pending);
    else {
      r = fallback ? 1 : warm_bitmap_round (w, plan, staging, j, &t);
      if (r == 1) {
        fallback = true;
        r = warm_lost_round (w, plan, staging, j, &t);
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
      w->last_freeze = warm_state_double (w, "freeze");
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
    warm_state_set_int (w, "round", number);
    if (warm_save_state (w, j) == -1)
      return -1;
    pred = predict (w);
    if (j && j->round && j->round (j->opaque, &rd, pred) == -1)
      return -1;
    if (final)
      return 0;

    /* Cut over now?  (And the hash source's base copy is no round to
     * judge by.) */
    asked = (j && j->cutover_asked && j->cutover_asked (j->opaque)) ||
      (w->o.cutover == FERRY_WARM_CUTOVER_AT &&
       warm_epoch_now () >= w->o.cutover_at);
    want = asked;
    if (w->o.cutover == FERRY_WARM_CUTOVER_NOW && w->have_round &&
        (prev_bytes == 0 || t.bytes >= SHRINK * prev_bytes ||
         number >= MAX_ROUNDS_NOW || t.bytes == 0))
      want = true;
    if (!w->have_round)
      want = false;                       /* one more round first */
    if (want && w->o.max_downtime > 0 &&
        (pred < 0 || pred > w->o.max_downtime)) {
      char a[32], b[32];
      snprintf (why, sizeof why, "the predicted downtime, %.1f s, is over "
                "the limit (max-downtime) of %.3g s: the source changes %s/s, the copy "
                "moves %s/s%s", pred, w->o.max_downtime,
                warm_human (w->rate, a, sizeof a),
                warm_human (w->throughput, b, sizeof b),
                prev_bytes && t.bytes >= SHRINK * prev_bytes
                ? "; the rounds no longer get smaller, so they will not "
                "catch up: slow the writes down or allow a longer downtime"
                : "");
      warm_note (j, "warning", "%s", why);
      if (j && j->waiting)
        j->waiting (j->opaque, why);
      want = false;
    }
    if (want) {
      /* The last delta is what dirties from the last freeze to the stop:
       * if that has grown (a wait between rounds), one more live round
       * first (note 5). */
      double gap = warm_epoch_now () - w->last_freeze;
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

/* The error of a cutover TEXT that is none. */
static int
bad_cutover (const char *text)
{
  ferry_error (EINVAL, "cutover %s: expected now, manual, a time "
               "(2026-12-08T03:00, local, or with Z for UTC) or +SECONDS",
               text);
  return ferry_error_input ("cutover");
}

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
      return bad_cutover (text);
    *at = warm_epoch_now () + s;
    return 0;
  }
  tm.tm_isdst = -1;
  end = strptime (text, "%Y-%m-%dT%H:%M", &tm);
  if (end && *end == ':')
    end = strptime (end, ":%S", &tm);
  if (end == NULL || (*end && strcmp (end, "Z") != 0))
    return bad_cutover (text);
  *at = *end == 'Z' ? (double) timegm (&tm) : (double) mktime (&tm);
  return 0;
}
