/* nbdkit-ferry-plugin: serve any image ferry opens, over NBD.
 *
 *   nbdkit ferry [file=]IMAGE [format=FMT] [readonly=true [shared=true]]
 *                [export=NAME]
 *
 * A thin adapter from nbdkit's plugin API onto lib/image: the image is
 * opened once, at get_ready, and every connection reads and writes it
 * through the one interface (<ferry/image.h>).  `ferry serve` starts
 * nbdkit with this plugin.
 *
 * NOTES ON THE DESIGN
 *
 * 1. Thread model PARALLEL, held to the image layer's contract: reads and
 *    extents run concurrently; writes (pwrite, zero, trim) run
 *    concurrently except where two touch the same cluster, which the
 *    range lock below serialises; flush runs alone (the write side of
 *    flush_lock, which every other request holds for reading).  Nothing
 *    else calls describe or close while requests run.
 *
 * 2. Multi-conn is advertised because it is safe here: every connection
 *    uses the same image handle in the same process, so a write completed
 *    on one connection is seen by all, and a flush on any connection
 *    flushes the image every connection wrote.
 *
 * 3. The image is opened read-only with readonly=true (which `ferry serve
 *    --readonly` passes along with nbdkit's -r): opening a qcow2 image for
 *    writing marks it dirty and rebuilds its refcounts at close, which a
 *    read-only server must not do.  Without it the plugin opens for
 *    writing, and falls back to read-only when the file cannot be written
 *    (nbdkit -r on a read-only file).
 *
 * 4. The image stays open from get_ready to cleanup, so its locks (as
 *    QEMU's, <ferry/image.h>) are held for as long as nbdkit serves it:
 *    nobody writes an image served read-only, nor reads or writes one
 *    served writable.  shared=true (readonly only; ferry serve -U) serves
 *    an image another process writes, as qemu-nbd --force-share.
 *
 * 5. Trim and zero are offered where the format has them
 *    (ferry_image_capabilities); trim is a zero that may deallocate, so a
 *    trimmed range reads as zeroes, which NBD allows.  Fast zero is not
 *    offered: a driver may fall back to writing zeroes.
 */
#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL   /* note 1 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-plugin.h>

#include <ferry/ferry.h>

/* Preferred and largest request we tell clients about. */
#define PREFERRED_MIN (4u << 10)
#define PREFERRED_MAX (2u << 20)
#define MAXIMUM_REQUEST (32u << 20)

static char *image_path;         /* file=, absolute (or a URI) */
static const char *image_format; /* format=, NULL: probe */
static bool readonly_param;      /* readonly=true */
static bool shared_param;        /* shared=true */
static const char *export_name;  /* export=, NULL: any name */

static struct ferry_image *img;
static unsigned caps;            /* FERRY_CAN_* */
static uint64_t cluster;         /* range lock granularity, 0: none */

/* Note 1: flush alone; writes per cluster. */
static pthread_rwlock_t flush_lock;
struct range {
  uint64_t start, end;
  struct range *next;
};
static pthread_mutex_t range_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t range_cond = PTHREAD_COND_INITIALIZER;
static struct range *ranges;     /* writes in progress */

/* Report the library's last error to nbdkit and the client. */
static int
fail (void)
{
  int err = ferry_get_errno ();

  nbdkit_error ("%s", ferry_get_error ());
  nbdkit_set_error (err ? err : EIO);
  return -1;
}

/* Library warnings go to nbdkit's log. */
static void
log_to_nbdkit (enum ferry_log_level level, const char *msg, void *opaque)
{
  if (level >= FERRY_LOG_WARNING)
    nbdkit_error ("warning: %s", msg);
  else
    nbdkit_debug ("%s", msg);
}

static void
ferry_load (void)
{
  pthread_rwlockattr_t attr;

  /* Writers first, or a busy server would never let a flush in. */
  pthread_rwlockattr_init (&attr);
  pthread_rwlockattr_setkind_np (&attr,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&flush_lock, &attr);
  pthread_rwlockattr_destroy (&attr);
  ferry_set_log_callback (log_to_nbdkit, NULL);
}

static void
ferry_unload (void)
{
  free (image_path);
  pthread_rwlock_destroy (&flush_lock);
}

static int
ferry_config (const char *key, const char *value)
{
  if (strcmp (key, "file") == 0) {
    free (image_path);
    image_path = ferry_image_is_uri (value) ? strdup (value)
      : nbdkit_absolute_path (value);
    if (image_path == NULL)
      return -1;
  }
  else if (strcmp (key, "format") == 0)
    image_format = value;
  else if (strcmp (key, "readonly") == 0) {
    int r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    readonly_param = r;
  }
  else if (strcmp (key, "shared") == 0) {
    int r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    shared_param = r;
  }
  else if (strcmp (key, "export") == 0)
    export_name = value;
  else {
    nbdkit_error ("unknown parameter '%s' (ferry takes file, format, "
                  "readonly, shared and export)", key);
    return -1;
  }
  return 0;
}

static int
ferry_config_complete (void)
{
  if (image_path == NULL) {
    nbdkit_error ("the image to serve is missing: nbdkit ferry IMAGE");
    return -1;
  }
  if (shared_param && !readonly_param) {
    nbdkit_error ("shared=true serves an image others write, and only "
                  "read-only: give readonly=true too");
    return -1;
  }
  return 0;
}

#define ferry_config_help \
  "[file=]IMAGE        (required) the image to serve, any format ferry opens\n" \
  "format=FMT          its format (default: probed from the content)\n" \
  "readonly=true       open it read-only (give nbdkit -r too)\n" \
  "shared=true         with readonly=true: serve an image another process\n" \
  "                    is writing (its locks let it)\n" \
  "export=NAME         serve it under this export name only"

/* Open the image once for every connection (notes 2 and 3). */
static int
ferry_get_ready (void)
{
  struct ferry_image_info info;

  img = ferry_image_open (image_path, image_format,
                          readonly_param ? (shared_param ? FERRY_OPEN_SHARED
                                            : 0) : FERRY_OPEN_WRITE);
  if (img == NULL && !readonly_param &&
      (ferry_get_errno () == EACCES || ferry_get_errno () == EROFS ||
       ferry_get_errno () == EPERM)) {
    nbdkit_debug ("%s cannot be written (%s): serving it read-only",
                  image_path, ferry_get_error ());
    img = ferry_image_open (image_path, image_format, 0);
  }
  if (img == NULL)
    return fail ();
  caps = ferry_image_capabilities (img);
  if (ferry_image_describe (img, &info) == -1)
    return fail ();
  cluster = (caps & FERRY_CAN_WRITE) ? info.cluster_size : 0;
  nbdkit_debug ("serving %s (%s, %" PRIu64 " bytes, cluster %" PRIu64
                ", capabilities 0x%x)", image_path, info.format,
                info.virtual_size, cluster, caps);
  return 0;
}

/* Close the image after the last connection: held-back tables and
 * refcounts are written here. */
static void
ferry_cleanup (void)
{
  if (img && ferry_image_close (img) == -1)
    nbdkit_error ("%s", ferry_get_error ());
  img = NULL;
}

static void *
ferry_open (int readonly)
{
  const char *name = nbdkit_export_name ();

  if (export_name && strcmp (name ? name : "", export_name) != 0) {
    nbdkit_error ("no export '%s' here (this server has '%s')",
                  name ? name : "", export_name);
    nbdkit_set_error (ENOENT);
    return NULL;
  }
  return NBDKIT_HANDLE_NOT_NEEDED;
}

static int
ferry_list_exports (int readonly, int is_tls, struct nbdkit_exports *exports)
{
  return nbdkit_add_export (exports, export_name ? export_name : "", NULL);
}

static const char *
ferry_default_export (int readonly, int is_tls)
{
  return export_name ? export_name : "";
}

static const char *
ferry_export_description (void *handle)
{
  return nbdkit_printf_intern ("%s image %s", ferry_image_format (img),
                               image_path);
}

static int64_t
ferry_get_size (void *handle)
{
  return ferry_image_size (img);
}

static int
ferry_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                  uint32_t *maximum)
{
  uint64_t pref = PREFERRED_MIN;

  /* A whole cluster per request saves the format a read-modify-write. */
  while (pref < cluster && pref < PREFERRED_MAX)
    pref *= 2;
  *minimum = 1;
  *preferred = pref;
  *maximum = MAXIMUM_REQUEST;
  return 0;
}

static int
ferry_can_write (void *handle)
{
  return (caps & FERRY_CAN_WRITE) != 0;
}

static int
ferry_can_flush (void *handle)
{
  return 1;
}

static int
ferry_can_fua (void *handle)
{
  return (caps & FERRY_CAN_WRITE) ? NBDKIT_FUA_EMULATE : NBDKIT_FUA_NONE;
}

static int
ferry_can_trim (void *handle)
{
  return (caps & FERRY_CAN_TRIM) != 0;
}

static int
ferry_can_zero (void *handle)
{
  /* 0: nbdkit still offers WRITE_ZEROES, and writes zeroes for it. */
  return (caps & FERRY_CAN_ZERO) != 0;
}

static int
ferry_can_fast_zero (void *handle)
{
  return 0;                     /* note 5 */
}

static int
ferry_can_extents (void *handle)
{
  return 1;
}

static int
ferry_can_multi_conn (void *handle)
{
  return 1;                     /* note 2 */
}

static int
ferry_can_cache (void *handle)
{
  return NBDKIT_CACHE_NONE;
}

static int
ferry_is_rotational (void *handle)
{
  return 0;
}

/* Hold off every other write into the clusters of [OFFSET, OFFSET+COUNT)
 * until unlock_range (R) (note 1).  Formats without clusters need no
 * lock. */
static void
lock_range (struct range *r, uint64_t offset, uint64_t count)
{
  struct range *p;

  r->start = r->end = 0;
  if (cluster == 0 || count == 0)
    return;
  r->start = offset - offset % cluster;
  r->end = offset + count;
  if (r->end % cluster)
    r->end += cluster - r->end % cluster;
  pthread_mutex_lock (&range_mutex);
  for (;;) {
    for (p = ranges; p; p = p->next)
      if (p->start < r->end && r->start < p->end)
        break;
    if (p == NULL)
      break;
    pthread_cond_wait (&range_cond, &range_mutex);
  }
  r->next = ranges;
  ranges = r;
  pthread_mutex_unlock (&range_mutex);
}

static void
unlock_range (struct range *r)
{
  struct range **pp;

  if (r->end == 0)
    return;
  pthread_mutex_lock (&range_mutex);
  for (pp = &ranges; *pp; pp = &(*pp)->next)
    if (*pp == r) {
      *pp = r->next;
      break;
    }
  pthread_cond_broadcast (&range_cond);
  pthread_mutex_unlock (&range_mutex);
}

static int
ferry_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  int r;

  pthread_rwlock_rdlock (&flush_lock);
  r = ferry_image_pread (img, buf, count, offset);
  pthread_rwlock_unlock (&flush_lock);
  return r == -1 ? fail () : 0;
}

/* Run a write-like request under the locks of note 1.  (FUA is
 * nbdkit's: it flushes after the request.) */
static int
write_request (uint32_t count, uint64_t offset, uint32_t flags,
               const void *buf, unsigned zero_flags, bool zero)
{
  struct range range;
  int r;

  pthread_rwlock_rdlock (&flush_lock);
  lock_range (&range, offset, count);
  r = zero ? ferry_image_zero (img, count, offset, zero_flags)
    : ferry_image_pwrite (img, buf, count, offset);
  unlock_range (&range);
  pthread_rwlock_unlock (&flush_lock);
  return r == -1 ? fail () : 0;
}

static int
ferry_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
              uint32_t flags)
{
  return write_request (count, offset, flags, buf, 0, false);
}

static int
ferry_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return write_request (count, offset, flags, NULL,
                        (flags & NBDKIT_FLAG_MAY_TRIM) ? FERRY_ZERO_MAY_TRIM
                        : 0, true);
}

static int
ferry_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return write_request (count, offset, flags, NULL, FERRY_ZERO_MAY_TRIM,
                        true);
}

static int
ferry_flush (void *handle, uint32_t flags)
{
  int r;

  pthread_rwlock_wrlock (&flush_lock);
  r = ferry_image_flush (img);
  pthread_rwlock_unlock (&flush_lock);
  return r == -1 ? fail () : 0;
}

/* base:allocation over the whole range asked for (one extent with
 * REQ_ONE): the driver may stop short, so ask again from there. */
static int
ferry_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
               struct nbdkit_extents *extents)
{
  struct ferry_extent_list list = { 0 };
  uint64_t pos = offset, end = offset + count;
  int r = 0;

  pthread_rwlock_rdlock (&flush_lock);
  while (pos < end && r == 0) {
    size_t i;

    list.len = 0;
    if (ferry_image_extents (img, pos, end - pos, &list) == -1) {
      r = fail ();
      break;
    }
    for (i = 0; i < list.len && pos < end; i++) {
      const struct ferry_extent *e = &list.ptr[i];
      uint64_t e_end = e->offset + e->length;
      uint32_t type = 0;

      if (e_end <= pos)
        continue;
      if (e->flags & FERRY_EXTENT_HOLE)
        type |= NBDKIT_EXTENT_HOLE;
      if (e->flags & FERRY_EXTENT_ZERO)
        type |= NBDKIT_EXTENT_ZERO;
      if (nbdkit_add_extent (extents, pos, e_end - pos, type) == -1) {
        r = -1;
        break;
      }
      pos = e_end;
    }
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
  }
  pthread_rwlock_unlock (&flush_lock);
  ferry_extent_list_free (&list);
  return r;
}

static struct nbdkit_plugin plugin = {
  .name = "ferry",
  .longname = "ferry: any image ferry opens (raw, qcow2, ...)",
  .version = "0.1.0",
  .description = "Serves disk images of every format ferry reads and "
                 "writes, with extents, zero, trim and flush.",
  .magic_config_key = "file",
  .load = ferry_load,
  .unload = ferry_unload,
  .config = ferry_config,
  .config_complete = ferry_config_complete,
  .config_help = ferry_config_help,
  .get_ready = ferry_get_ready,
  .cleanup = ferry_cleanup,
  .open = ferry_open,
  .list_exports = ferry_list_exports,
  .default_export = ferry_default_export,
  .export_description = ferry_export_description,
  .get_size = ferry_get_size,
  .block_size = ferry_block_size,
  .can_write = ferry_can_write,
  .can_flush = ferry_can_flush,
  .can_fua = ferry_can_fua,
  .can_trim = ferry_can_trim,
  .can_zero = ferry_can_zero,
  .can_fast_zero = ferry_can_fast_zero,
  .can_extents = ferry_can_extents,
  .can_multi_conn = ferry_can_multi_conn,
  .can_cache = ferry_can_cache,
  .is_rotational = ferry_is_rotational,
  .pread = ferry_pread,
  .pwrite = ferry_pwrite,
  .zero = ferry_zero,
  .trim = ferry_trim,
  .flush = ferry_flush,
  .extents = ferry_extents,
  .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN (plugin)
