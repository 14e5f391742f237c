/* Warm migrations of a VMware-style VM whose disks are snapshot deltas
 * (warm.c note 6): each delta a snapshot froze is copied by its own
 * grains, read through its own chain.
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

/* The files of the chain whose top is PATH, top first, NULL-terminated
 * (the caller frees each and the array). */
char **
warm_chain_files (const char *path)
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
void
warm_free_files (char **files)
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
int
warm_chain_open (struct ferry_warm *w)
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
    files = warm_chain_files (d->path);
    if (files == NULL)
      return -1;
    if (files[1])
      deltas++;
    active_key (i, key, sizeof key);
    if (w->run && !json_object_object_get_ex (w->state, key, NULL))
      json_object_object_add (w->state, key,
                              json_object_new_string (files[0]));
    warm_free_files (files);
  }
  if (deltas == 0)
    return ferry_error (EINVAL, "%s: no disk of the VM is a snapshot delta, "
                        "so nothing tells what changes while it runs: take "
                        "a snapshot first (the base is then copied while "
                        "the VM writes to the delta), or migrate it cold",
                        w->source);
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

/* The extents of a delta alone as a copy's: what it holds, the rest
 * SKIP (the bytes the last delta holds so far, for the prediction). */
static int
alone_extents (void *opaque, uint64_t offset, uint64_t length,
               struct ferry_extent_list *list)
{
  struct ferry_extent_list l = { 0 };
  size_t i;
  int r = 0;

  if (ferry_image_extents (opaque, offset, length, &l) == -1)
    return -1;
  for (i = 0; i < l.len && r == 0; i++)
    r = ferry_extent_list_append (list, l.ptr[i].offset, l.ptr[i].length,
                                  (l.ptr[i].flags & FERRY_EXTENT_HOLE)
                                  ? FERRY_EXTENT_SKIP : l.ptr[i].flags);
  ferry_extent_list_free (&l);
  return r;
}

/* Copy the grains of delta FILE into plan disk I's target. */
static int
copy_layer (struct ferry_v2v_plan *plan, size_t i, const char *staging,
            const char *file, struct tally *t)
{
  struct ferry_image *src, *alone = NULL;
  struct layer lay;
  struct ferry_copy_options copts = { .extents = layer_extents,
                                      .extents_opaque = &lay,
                                      .overwrite = true };
  uint64_t bytes;
  int r = -1;

  src = ferry_image_open (file, NULL, FERRY_OPEN_SHARED);
  alone = src ? ferry_image_open (file, NULL, FERRY_OPEN_SHARED |
                                  FERRY_OPEN_NO_BACKING) : NULL;
  lay.alone = alone;
  lay.src = src;
  if (alone && warm_extents_bytes (layer_extents, &lay,
                                   ferry_image_size (alone), &bytes) == 0 &&
      warm_copy_into (plan, i, staging, src, &copts, bytes, t) == 0)
    r = 0;
  else
    ferry_error_prefix ("%s", file);
  ferry_image_close (alone);
  ferry_image_close (src);
  return r;
}

/* One round of a snapshot chain (note 6): the deltas frozen since the
 * last one, and with FINAL the top as well.  *PENDING: bytes the top
 * holds (what the last delta would be now). */
int
warm_chain_round (struct ferry_warm *w, struct ferry_v2v_plan *plan,
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
    files = warm_chain_files (now->disks[di].path);
    if (files == NULL) {
      r = -1;
      break;
    }
    for (a = 0; files[a] && !(active && strcmp (files[a], active) == 0); a++)
      ;
    if (files[a] == NULL) {
      warm_note (j, "warning", "disk %zu: the delta %s is no longer in its "
                 "chain (snapshots deleted?): this round compares every "
                 "chunk", di + 1,
                 active ? active : "?");
      r = warm_hash_copy_disk (w, plan, i, staging, now->disks[di].path,
                               true, t);
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
      if (top && warm_extents_bytes (alone_extents, top,
                                     ferry_image_size (top), &b) == 0 &&
          !final)
        *pending += b;
      ferry_image_close (top);
      json_object_object_add (w->state, key,
                              json_object_new_string (files[0]));
      r = warm_save_state (w, j);
    }
    warm_free_files (files);
  }
  ferry_vm_free (now);
  return r;
}
