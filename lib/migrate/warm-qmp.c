/* Warm migrations of a running QEMU (warm.c notes 1 to 4): QMP, the
 * VM's NBD server and exports, dirty bitmaps started, frozen, merged and
 * copied, and the round that follows their loss.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/image.h>

#include "warm-internal.h"
#include "internal.h"
#include "../common/cleanup.h"
#include "../common/stop.h"
#include "../common/util.h"

/* The QMP error, said as the source VM's when its connection is gone. */
int
warm_qmp_failed (struct ferry_warm *w)
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
int
warm_qmp (struct ferry_warm *w, const char *command, json_object *args,
          json_object **ret)
{
  int r = ferry_qmp_execute (w->q, command, args, ret);

  json_object_put (args);
  return r == -1 ? warm_qmp_failed (w) : 0;
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
char *
warm_export_id (struct ferry_warm *w, char what, size_t i)
{
  char *s;

  return asprintf (&s, "%s-%c%zu", w->tag, what, i) == -1 ? NULL : s;
}

/* The NBD URI of export ID. */
char *
warm_export_uri (struct ferry_warm *w, const char *id)
{
  char *s;

  return asprintf (&s, "nbd+unix:///%s?socket=%s", id, w->sock) == -1
    ? NULL : s;
}

/* Remove every export of ours whose id starts with PREFIX ("" all), and
 * wait until QEMU has let go of them (their bitmaps are busy until then). */
int
warm_del_exports (struct ferry_warm *w, const char *prefix)
{
  CLEANUP_FREE char *mine = NULL;
  double deadline = now_seconds () + QMP_TIMEOUT;

  if (asprintf (&mine, "%s-%s", w->tag, prefix) == -1)
    return ferry_error (ENOMEM, "out of memory");
  for (;;) {
    json_object *list = NULL;
    size_t i, n, left = 0;

    if (warm_qmp (w, "query-block-exports", NULL, &list) == -1)
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
        if (warm_qmp (w, "block-export-del", a, NULL) == -1) {
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
  return warm_qmp (w, "block-export-add", a, NULL);
}

/* True when something listens on the Unix socket PATH. */
bool
warm_socket_listens (const char *path)
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
    return warm_qmp_failed (w);
  /* Ours, from a run that was killed: the socket is still there, and
   * served (a socket file left by a QEMU that died is not). */
  if (lstat (w->sock, &st) == 0 && S_ISSOCK (st.st_mode) &&
      warm_socket_listens (w->sock)) {
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
int
warm_refresh_disks (struct ferry_warm *w)
{
  struct ferry_qmp_disk *qd;
  size_t n;

  if (ferry_qmp_query_disks (w->q, &qd, &n) == -1)
    return warm_qmp_failed (w);
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

/* Start bitmap TAG-bN, N the next generation (saved first, note 2), on
 * each of the first NDISKS VM disks we migrate, in one transaction: the
 * first bitmaps, or those that replace bitmaps the VM lost (notes 1 and
 * 3). */
int
warm_start_bitmaps (struct ferry_warm *w, size_t ndisks,
                    const struct ferry_warm_journal *j)
{
  json_object *actions = json_object_new_array (), *args;
  char name[256];
  int64_t gen = warm_state_int (w, "gen") + 1;
  size_t i;

  warm_state_set_int (w, "gen", gen);
  if (warm_save_state (w, j) == -1) {
    json_object_put (actions);
    return -1;
  }
  snprintf (name, sizeof name, "%s-b%" PRId64, w->tag, gen);
  for (i = 0; i < ndisks; i++) {
    json_object *a;
    if (!warm_migrated (w, i))
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
  if (warm_qmp (w, "transaction", args, NULL) == -1)
    return -1;
  warm_state_set_double (w, "freeze", warm_epoch_now ());
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
    if (!warm_migrated (w, i))
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
int
warm_bitmaps_lost (struct ferry_warm *w, const struct ferry_warm_journal *j)
{
  size_t with, of;

  if (warm_refresh_disks (w) == -1 ||
      disks_tracked (w, w->vm_disks, &with, &of) == -1)
    return -1;
  if (with == of)
    return 0;
  warm_state_set_int (w, "fallback", 1);
  if (warm_start_bitmaps (w, w->vm_disks, j) == -1 ||
      warm_save_state (w, j) == -1)
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
      name = warm_name_of (ferry_qmp_path (w->q));
    w->vm = name ? warm_new_vm (name, w->source, "qmp") : NULL;
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
          warm_add_disk (w->vm, w->qd[i].file ? w->qd[i].file : w->qd[i].node,
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
    CLEANUP_FREE char *id = warm_export_id (w, 'd', i);
    char *uri = id ? warm_export_uri (w, id) : NULL;
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
int
warm_qmp_open (struct ferry_warm *w, const char *path)
{
  json_object *jobs = NULL;
  char status[32];
  size_t i;

  w->q = ferry_qmp_connect (path, QMP_TIMEOUT);
  if (w->q == NULL)
    return -1;
  if (ferry_qmp_status (w->q, status, sizeof status) == -1)
    return warm_qmp_failed (w);
  if (strcmp (status, "running") && strcmp (status, "paused") &&
      !(strcmp (status, "shutdown") == 0 && warm_state_int (w, "stopped")))
    return ferry_error (EINVAL, "qmp:%s: the VM is %s: a warm migration "
                        "needs it running (or paused)", path, status);
  if (warm_qmp (w, "query-block-jobs", NULL, &jobs) == -1)
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
    return warm_qmp_failed (w);
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
  if (warm_del_exports (w, "") == -1)
    return -1;

  if (w->run) {
    /* The first bitmaps, before the base copy reads a byte (note 1); a
     * VM that lost ours needs a full comparison (note 3). */
    size_t with, of;

    if (disks_tracked (w, w->vm->nr_disks, &with, &of) == -1)
      return -1;
    if (with == 0) {
      if (warm_state_int (w, "gen") > 0)
        warm_state_set_int (w, "fallback", 1);
      if (warm_start_bitmaps (w, w->vm->nr_disks, w->o.journal) == -1)
        return -1;
      if (!warm_state_int (w, "started"))
        warm_state_set_int (w, "started", 1);
    }
    w->last_freeze = warm_state_double (w, "freeze");
  }

  for (i = 0; i < w->vm->nr_disks; i++) {
    CLEANUP_FREE char *id = warm_export_id (w, 'd', i);
    if (!warm_migrated (w, i))
      continue;
    if (id == NULL)
      return ferry_error (ENOMEM, "out of memory");
    if (add_export (w, id, w->qd[w->vm_qd[i]].node, NULL) == -1)
      return -1;
  }
  return 0;
}

/* Remove bitmap NAME of NODE, saying nothing when it is gone. */
void
warm_remove_bitmap (struct ferry_warm *w, const char *node, const char *name)
{
  if (ferry_qmp_execute (w->q, "block-dirty-bitmap-remove",
                         node_name (node, name), NULL) == -1)
    ferry_debug ("%s: removing bitmap %s: %s", node, name, ferry_get_error ());
}

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

/* Copy disk I's dirty ranges (bitmap MERGED, exported as ID) into its
 * target. */
static int
bitmap_copy_disk (struct ferry_warm *w, struct ferry_v2v_plan *plan,
                  size_t i, const char *staging, const char *id,
                  const char *merged, struct tally *t)
{
  const struct ferry_v2v_disk *pd = &plan->disks[i];
  CLEANUP_FREE char *uri = warm_export_uri (w, id);
  struct delta d = { 0 };
  struct ferry_copy_options copts = {
    .extents = delta_extents, .extents_opaque = &d, .overwrite = true,
  };
  uint64_t bytes = 0;
  int r = -1;

  if (uri == NULL)
    return ferry_error (ENOMEM, "out of memory");
  snprintf (d.context, sizeof d.context, "qemu:dirty-bitmap:%s", merged);
  d.src = ferry_image_open (uri, "raw", FERRY_OPEN_SHARED);
  if (d.src == NULL)
    return -1;
  if (warm_extents_bytes (delta_extents, &d, ferry_image_size (d.src),
                          &bytes) == 0 &&
      warm_copy_into (plan, i, staging, d.src, &copts, bytes, t) == 0)
    r = 0;
  else
    ferry_error_prefix ("disk %zu (%s)", pd->index + 1, pd->source);
  ferry_image_close (d.src);
  return r;
}

/* One round of a running QEMU (notes 1 and 2): freeze, merge, copy,
 * then drop what it copied; 1 when our bitmaps turn out lost (note 3),
 * new ones recording. */
int
warm_bitmap_round (struct ferry_warm *w, struct ferry_v2v_plan *plan,
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
  if (warm_del_exports (w, "x") == -1 || warm_refresh_disks (w) == -1)
    return -1;
  for (i = 0; i < w->vm_disks; i++) {
    struct ferry_qmp_disk *qd;
    if (!warm_migrated (w, i))
      continue;
    qd = &w->qd[w->vm_qd[i]];
    for (k = 0; qd->bitmaps[k]; k++)
      if (strcmp (qd->bitmaps[k], merged) == 0)
        warm_remove_bitmap (w, qd->node, merged);
  }

  /* The freeze: a new bitmap starts, every other of ours stops, in one
   * transaction over every disk. */
  gen = warm_state_int (w, "gen") + 1;
  warm_state_set_int (w, "gen", gen);
  if (warm_save_state (w, j) == -1)
    return -1;
  snprintf (name, sizeof name, "%s-b%" PRId64, w->tag, gen);
  actions = json_object_new_array ();
  for (i = 0; i < w->vm_disks; i++) {
    CLEANUP_FREE const char **mine = NULL;
    struct ferry_qmp_disk *qd;
    json_object *a;
    size_t n;
    if (!warm_migrated (w, i))
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
    if (warm_qmp (w, "transaction", args, NULL) == -1) {
      /* Refused as a whole, nothing done: a bitmap of ours that went
       * since the look before is a lost one (note 3). */
      int lost;
      struct error_saved saved;
      if (ferry_get_errno () != EPROTO)
        return -1;
      error_save (&saved);
      lost = warm_bitmaps_lost (w, j);
      if (lost == 0)
        error_restore (&saved);
      return lost == 0 ? -1 : lost;
    }
    w->qmp_seconds = now_seconds () - t0;
  }
  warm_state_set_double (w, "freeze", warm_epoch_now ());
  if (warm_refresh_disks (w) == -1)
    return -1;

  /* Every stopped bitmap of ours merged into one, exported, copied. */
  for (i = 0; i < w->vm_disks; i++) {
    CLEANUP_FREE const char **mine = NULL;
    CLEANUP_FREE char *id = warm_export_id (w, 'x', i);
    struct ferry_qmp_disk *qd;
    json_object *a, *list;
    size_t n;
    if (!warm_migrated (w, i))
      continue;
    qd = &w->qd[w->vm_qd[i]];
    if (id == NULL)
      return ferry_error (ENOMEM, "out of memory");
    a = node_name (qd->node, merged);
    json_object_object_add (a, "disabled", json_object_new_boolean (true));
    if (warm_qmp (w, "block-dirty-bitmap-add", a, NULL) == -1)
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
      warm_state_set_int (w, "fallback", 1);
      return warm_save_state (w, j) == -1 ? -1 : 1;
    }
    a = json_object_new_object ();
    json_object_object_add (a, "node", json_object_new_string (qd->node));
    json_object_object_add (a, "target", json_object_new_string (merged));
    json_object_object_add (a, "bitmaps", list);
    if (warm_qmp (w, "block-dirty-bitmap-merge", a, NULL) == -1) {
      if (ferry_get_errno () != EPROTO)
        return -1;
      /* A stopped bitmap went before its merge: what it held is lost,
       * and TAG-bN records from the freeze on (note 3). */
      warm_state_set_int (w, "fallback", 1);
      return warm_save_state (w, j) == -1 ? -1 : 1;
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
          return warm_qmp_failed (w);
        error_restore (&saved);
      }
      return -1;
    }
    if (warm_del_exports (w, "x") == -1)
      return -1;
    /* Copied and flushed: the stopped bitmaps have served (note 2). */
    warm_remove_bitmap (w, qd->node, merged);
    for (k = 0; k < n; k++)
      if (strcmp (mine[k], name) != 0)
        warm_remove_bitmap (w, qd->node, mine[k]);
  }
  return 0;
}

/* The round after the VM lost our bitmaps (note 3): new ones record
 * already; every chunk of each disk is compared, the target read too. */
int
warm_lost_round (struct ferry_warm *w, struct ferry_v2v_plan *plan,
                 const char *staging, const struct ferry_warm_journal *j,
                 struct tally *t)
{
  size_t i;

  warm_note (j, "warning", "the source VM lost ferry's dirty bitmaps (was it "
             "restarted, or were they removed?): this round compares every "
             "chunk of its disks");
  warm_state_set_double (w, "freeze", warm_epoch_now ());
  for (i = 0; i < plan->nr_disks; i++) {
    CLEANUP_FREE char *id = warm_export_id (w, 'd', plan->disks[i].index);
    CLEANUP_FREE char *uri = id ? warm_export_uri (w, id) : NULL;
    if (!plan->disks[i].migrated)
      continue;
    if (uri == NULL)
      return ferry_error (ENOMEM, "out of memory");
    if (warm_hash_copy_disk (w, plan, i, staging, uri, true, t) == -1)
      return -1;
  }
  warm_state_set_int (w, "fallback", 0);
  return 0;
}
