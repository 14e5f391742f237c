/* The one image interface: driver table, probing, open and create, and
 * the checks every request passes before it reaches a driver.
 *
 * NOTES ON THE DESIGN
 *
 * 1. Requests are checked here (bounds, read-only) so that drivers can
 *    trust offset + count <= size.  Drivers still check everything they
 *    read from the file, which no caller can vouch for.
 *
 * 2. Probing reads the first PROBE_HEAD_SIZE and last PROBE_TAIL_SIZE
 *    bytes and asks each driver for a score; the highest wins and raw,
 *    which scores 1 for anything, is the fallback.  The file name is
 *    never looked at.
 *
 * 3. A backing chain is followed with the (device, inode) of every image
 *    above, so a chain that loops back is refused at the first repeat
 *    instead of being opened forever (qemu-img 7.2 never returns on one).
 *    A failure deep in a chain is reported once, as the top image, the
 *    layer that failed and that layer's own message: prefixing every
 *    layer on the way up would push the reason out of the message.
 *
 * 4. A path whose scheme a driver claims (nbd://, nbds+unix://, ...) is a
 *    URI, not a file: it goes to that driver's open_uri whole, and is
 *    never opened, probed, created or resolved against a directory here.
 *
 * 5. A path becomes a file descriptor through hostfile_open, which never
 *    waits on a FIFO and refuses anything but a regular file or a block
 *    device, and every file of an image is locked as QEMU locks it
 *    (lock.c) before anything of it is read: a writer elsewhere cannot
 *    change it under the probe, and ferry never writes under a reader.
 *
 * 6. A backing file that is not there at all is "missing", which
 *    FERRY_OPEN_MISSING_BACKING tolerates for showing the image: the
 *    driver finds out (each format looks for its parent its own way) and
 *    calls image_backing_missing, which keeps the reason for describe.
 *    Every read of the parent goes through image_backing_pread or
 *    image_sub_extents, which then fail instead of reading zeroes.
 *
 * 7. A name read from an image (a backing file, a parent, a VMDK extent,
 *    an external data file) is a file, never a URI: an image is untrusted
 *    input, and following "nbd+unix:///?socket=..." from it would make
 *    ferry connect to, and with a write open write to, whatever server
 *    the image names.  image_refuse_uri says so, before anything is
 *    resolved or opened.  (qemu-img follows such names; a user who wants
 *    a chain over NBD opens the export itself.)
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostfile.h"
#include "internal.h"
#include "lock.h"
#include "../common/cleanup.h"
#include "../common/util.h"

static const struct image_driver *const drivers[] = {
  &qcow2_driver,
  &vmdk_driver,
  &nbd_driver,       /* URIs only: no probe */
  &vhdx_driver,
  &vhd_driver,
  &vdi_driver,
  &raw_driver,       /* last: the fallback of the probe */
};
#define NR_DRIVERS (sizeof drivers / sizeof drivers[0])

/* The driver called NAME (or one of its aliases), or NULL. */
static const struct image_driver *
find_driver (const char *name)
{
  size_t i, j;

  for (i = 0; i < NR_DRIVERS; i++) {
    if (strcmp (drivers[i]->name, name) == 0)
      return drivers[i];
    for (j = 0; drivers[i]->aliases && drivers[i]->aliases[j]; j++)
      if (strcmp (drivers[i]->aliases[j], name) == 0)
        return drivers[i];
  }
  return NULL;
}

/* The driver that takes PATH as a URI ("SCHEME://..." with a scheme it
 * claims), or NULL when PATH is a file name. */
static const struct image_driver *
uri_driver (const char *path)
{
  const char *sep = strstr (path, "://");
  size_t i, j, len;

  if (sep == NULL)
    return NULL;
  len = sep - path;
  for (i = 0; i < NR_DRIVERS; i++)
    for (j = 0; drivers[i]->uri_schemes && drivers[i]->uri_schemes[j]; j++)
      if (strlen (drivers[i]->uri_schemes[j]) == len &&
          strncasecmp (drivers[i]->uri_schemes[j], path, len) == 0)
        return drivers[i];
  return NULL;
}

/* Set the error for an unknown format NAME, listing the known ones. */
static void
unknown_format_error (const char *name)
{
  char list[256] = "";
  size_t i;

  for (i = 0; i < NR_DRIVERS; i++) {
    if (i > 0)
      strncat (list, ", ", sizeof list - strlen (list) - 1);
    strncat (list, drivers[i]->name, sizeof list - strlen (list) - 1);
  }
  ferry_error (EINVAL, "unknown format '%s' (ferry knows: %s)", name, list);
}

const char *const *
ferry_image_formats (void)
{
  static const char *names[NR_DRIVERS + 1];
  size_t i;

  for (i = 0; i < NR_DRIVERS; i++)
    names[i] = drivers[i]->name;
  names[NR_DRIVERS] = NULL;
  return names;
}

/* Set *SIZE to the size of the regular file or block device FD (PATH
 * for messages). */
static int
fd_size (const char *path, int fd, uint64_t *size)
{
  struct stat st;

  if (fstat (fd, &st) == -1)
    return ferry_error_errno (errno, "%s: stat", path);
  if (!S_ISBLK (st.st_mode) && !S_ISREG (st.st_mode))
    return ferry_error (EINVAL, "%s: not a regular file or block device",
                        path);
  return hostfile_size (fd, path, size);
}

/* Pick the driver for the SIZE bytes of FD that start at START (PATH for
 * messages). */
static const struct image_driver *probe_head (const char *path,
                                              const uint8_t *head,
                                              size_t head_len,
                                              const uint8_t *tail,
                                              size_t tail_len,
                                              uint64_t size);

static const struct image_driver *
probe_bytes (const char *path, int fd, uint64_t start, uint64_t size)
{
  /* On the heap: every layer of a backing chain probes on the stack of
   * the layer above (note 3). */
  CLEANUP_FREE uint8_t *head = malloc (PROBE_HEAD_SIZE);
  CLEANUP_FREE uint8_t *tail = malloc (PROBE_TAIL_SIZE);
  size_t head_len, tail_len;

  if (head == NULL || tail == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    return NULL;
  }
  head_len = MIN (size, (uint64_t) PROBE_HEAD_SIZE);
  tail_len = MIN (size, (uint64_t) PROBE_TAIL_SIZE);
  if (full_pread (fd, head, head_len, start) == -1 ||
      full_pread (fd, tail, tail_len, start + size - tail_len) == -1) {
    ferry_error_errno (errno, "%s: reading the header", path);
    return NULL;
  }
  return probe_head (path, head, head_len, tail, tail_len, size);
}

/* Pick the driver for an image whose first HEAD_LEN bytes are HEAD and
 * last TAIL_LEN bytes TAIL, SIZE bytes in all. */
static const struct image_driver *
probe_head (const char *path, const uint8_t *head, size_t head_len,
            const uint8_t *tail, size_t tail_len, uint64_t size)
{
  const struct image_driver *best = NULL;
  int best_score = 0;
  size_t i;

  for (i = 0; i < NR_DRIVERS; i++) {
    int score = drivers[i]->probe ?
      drivers[i]->probe (head, head_len, tail, tail_len, size) : 0;
    if (score > best_score) {
      best_score = score;
      best = drivers[i];
    }
  }
  if (best == NULL)
    ferry_error (EINVAL, "%s: unknown image format", path);
  return best;
}

/* Pick the driver for the content of FD (PATH for messages). */
static const struct image_driver *
probe_fd (const char *path, int fd)
{
  uint64_t size = 0;

  if (fd_size (path, fd, &size) == -1)
    return NULL;
  return probe_bytes (path, fd, 0, size);
}

const char *
ferry_image_probe (const char *path)
{
  const struct image_driver *drv = uri_driver (path);
  CLEANUP_CLOSE int fd = -1;

  if (drv)
    return drv->name;
  fd = hostfile_open (path, 0, false, NULL);
  if (fd == -1)
    return NULL;
  drv = probe_fd (path, fd);
  return drv ? drv->name : NULL;
}

/* Refuse PATH, layer ARGS->chain_len of a backing chain, when that is
 * deeper than MAX_BACKING_DEPTH. */
static int
too_deep (const char *path, const struct open_args *args)
{
  if (args->chain_len <= MAX_BACKING_DEPTH)
    return 0;
  return ferry_error (ELOOP, "%s: the backing chain is deeper than the %d "
                      "layers ferry follows below the image opened", path,
                      MAX_BACKING_DEPTH);
}

/* Set the error for the open of PATH that failed with ERRNUM, saying
 * what the limit on open files means when that is why. */
static void
open_error (const char *path, int errnum, const struct open_args *args)
{
  struct rlimit rl;

  if (errnum != EMFILE || getrlimit (RLIMIT_NOFILE, &rl) == -1) {
    ferry_error_errno (errnum, "%s", path);
    return;
  }
  if (args->chain_len > 0)
    ferry_error (EMFILE, "%s: cannot open it: the process has used up its "
                 "limit of %llu open files (RLIMIT_NOFILE), and each of "
                 "the %zu images of the backing chain above this one "
                 "holds one or more; raise the limit (ulimit -n) to read "
                 "this chain", path, (unsigned long long) rl.rlim_cur,
                 args->chain_len);
  else
    ferry_error (EMFILE, "%s: cannot open it: the process has used up its "
                 "limit of %llu open files (RLIMIT_NOFILE); raise the "
                 "limit (ulimit -n)", path,
                 (unsigned long long) rl.rlim_cur);
}

/* Open the URI PATH with the driver that claims its scheme (note 4).
 * FORMAT_DRV, the driver the caller asked for, may be that driver, raw
 * (the bytes of the export, which is what the URI driver gives), or NULL;
 * a format inside the export is not read through a URI. */
static struct ferry_image *
open_uri (const char *path, const struct image_driver *format_drv,
          const struct open_args *args)
{
  const struct image_driver *drv = uri_driver (path);

  if (format_drv && format_drv != drv && format_drv != &raw_driver) {
    ferry_error (ENOTSUP, "%s: ferry reads a URI with its %s driver, as the "
                 "raw bytes of the export; %s images inside it are not "
                 "supported", path, drv->name, format_drv->name);
    return NULL;
  }
  if (too_deep (path, args) == -1)
    return NULL;
  if (drv->open_uri == NULL) {
    ferry_error (ENOTSUP, "%s: ferry cannot open %s URIs", path, drv->name);
    return NULL;
  }
  return drv->open_uri (path, args);
}

/* Open PATH with ARGS; the common body of ferry_image_open and
 * image_open_backing. */
static struct ferry_image *
open_with_args (const char *path, const char *format,
                const struct open_args *args)
{
  const struct image_driver *drv = NULL;
  struct stat st;
  size_t i;
  int fd;

  if (format) {
    drv = find_driver (format);
    if (drv == NULL) {
      unknown_format_error (format);
      return NULL;
    }
  }

  if (uri_driver (path))
    return open_uri (path, drv, args);
  if ((args->flags & FERRY_OPEN_WRITE) && (args->flags & FERRY_OPEN_SHARED)) {
    ferry_error (EINVAL, "%s: an image opened for writing cannot be shared "
                 "with other writers", path);
    return NULL;
  }

  /* Note 5. */
  fd = hostfile_open (path, args->flags, false, &st);
  if (fd == -1) {
    if (errno == EMFILE)
      open_error (path, EMFILE, args);
    return NULL;
  }
  for (i = 0; i < args->chain_len; i++) {
    if (args->chain[i].dev == st.st_dev && args->chain[i].ino == st.st_ino) {
      ferry_error (ELOOP, "%s: the backing chain loops back to this file",
                   path);
      close (fd);
      return NULL;
    }
  }
  if (too_deep (path, args) == -1) {
    close (fd);
    return NULL;
  }
  /* After the loop check, which has the better message for a chain that
   * comes back to a file open above. */
  if (image_lock (fd, path, args->flags) == -1) {
    close (fd);
    return NULL;
  }

  if (args->windowed) {
    uint64_t end;
    if (!S_ISREG (st.st_mode) ||
        __builtin_add_overflow (args->window_start, args->window_length,
                                &end) ||
        end > (uint64_t) st.st_size) {
      ferry_error (EINVAL, "%s: the image at offset %" PRIu64 " (%" PRIu64
                   " bytes) lies past the end of the file (%" PRIu64
                   " bytes)", path, args->window_start, args->window_length,
                   (uint64_t) st.st_size);
      close (fd);
      return NULL;
    }
  }

  if (drv == NULL) {
    drv = args->windowed ?
      probe_bytes (path, fd, args->window_start, args->window_length) :
      probe_fd (path, fd);
    if (drv == NULL) {
      close (fd);
      return NULL;
    }
  }
  if (args->windowed && !drv->windows) {
    ferry_error (ENOTSUP, "%s: ferry cannot read a %s image in place inside "
                 "another file (at offset %" PRIu64 ")", path, drv->name,
                 args->window_start);
    close (fd);
    return NULL;
  }
  if (drv->open == NULL) {
    ferry_error (ENOTSUP, "%s: ferry cannot open %s images", path, drv->name);
    close (fd);
    return NULL;
  }
  return drv->open (path, fd, args);   /* owns fd from here */
}

struct ferry_image *
ferry_image_open (const char *path, const char *format, unsigned flags)
{
  struct open_args args = { .flags = flags, .chain = NULL, .chain_len = 0 };

  return open_with_args (path, format, &args);
}

struct ferry_image *
ferry_image_open_window (const char *path, const char *format,
                         uint64_t offset, uint64_t length, unsigned flags)
{
  struct open_args args = {
    .flags = flags, .windowed = true,
    .window_start = offset, .window_length = length,
  };

  if (flags & FERRY_OPEN_WRITE) {
    ferry_error (EINVAL, "%s: an image inside another file is opened "
                 "read-only", path);
    return NULL;
  }
  return open_with_args (path, format, &args);
}

struct ferry_image *
ferry_image_open_stream (const char *path, const char *format,
                         uint64_t offset, uint64_t length,
                         uint64_t size_hint, unsigned flags)
{
  struct open_args args = {
    .flags = flags, .windowed = true,
    .window_start = offset, .window_length = length,
  };
  const struct image_driver *drv = NULL;
  const unsigned char *head;
  struct image_stream *s;
  struct stat st;
  uint64_t end;
  size_t head_len;
  int fd;

  if (flags & FERRY_OPEN_WRITE) {
    ferry_error (EINVAL, "%s: a compressed image is opened read-only", path);
    return NULL;
  }
  if (format && (drv = find_driver (format)) == NULL) {
    unknown_format_error (format);
    return NULL;
  }
  fd = hostfile_open_locked (path, flags, false, &st);
  if (fd == -1)
    return NULL;
  if (!S_ISREG (st.st_mode) ||
      __builtin_add_overflow (offset, length, &end) ||
      end > (uint64_t) st.st_size) {
    ferry_error (EINVAL, "%s: the compressed image at offset %" PRIu64
                 " (%" PRIu64 " bytes) lies past the end of the file", path,
                 offset, length);
    close (fd);
    return NULL;
  }
  s = image_stream_open (path, fd, offset, length);   /* owns fd */
  if (s == NULL)
    return NULL;
  if (drv == NULL) {
    /* Only the head is known: its size and end come when it is read. */
    head = image_stream_head (s, &head_len);
    drv = probe_head (path, head, head_len, NULL, 0, UINT64_MAX);
    if (drv == NULL) {
      image_stream_free (s);
      return NULL;
    }
  }
  if (drv->open_stream == NULL) {
    ferry_error (ENOTSUP, "%s: ferry cannot read a %s image from a gzip "
                 "stream (at offset %" PRIu64 "); unpack it first", path,
                 drv->name, offset);
    image_stream_free (s);
    return NULL;
  }
  return drv->open_stream (path, s, size_hint, &args);   /* owns s */
}

bool
ferry_image_is_sequential (struct ferry_image *img)
{
  return img->sequential;
}

int
ferry_image_read_to_end (struct ferry_image *img)
{
  if (!img->sequential || img->driver->read_to_end == NULL)
    return 0;
  return img->driver->read_to_end (img);
}

char *
image_resolve_relative (const char *img_path, const char *name)
{
  CLEANUP_FREE char *copy = NULL;
  char *dir, *ret;

  /* Beside an image named without a folder, NAME is the path already
   * (qemu-img's full-backing-filename says the same). */
  if (name[0] == '/' || uri_driver (name) || strchr (img_path, '/') == NULL)
    return strdup (name);
  copy = strdup (img_path);
  if (copy == NULL)
    return NULL;
  dir = dirname (copy);
  if (asprintf (&ret, "%s/%s", dir, name) == -1)
    return NULL;
  return ret;
}

int
image_refuse_uri (const char *img_path, const char *what, const char *name)
{
  if (uri_driver (name) == NULL)
    return 0;
  return ferry_error (EINVAL, "%s: the %s '%s' is a URI: ferry opens a name "
                      "an image records only as a file, and never connects "
                      "to a server an image names", img_path, what, name);
}

const char *
image_backing_word (const struct ferry_image *img)
{
  return img->driver->backing_word ? img->driver->backing_word :
    "backing file";
}

int
image_backing_missing (struct ferry_image *img, const struct open_args *args,
                       const char *full, const char *fmt, ...)
{
  char *reason;
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = vasprintf (&reason, fmt, ap);
  va_end (ap);
  if (n == -1)
    return ferry_error (ENOMEM, "%s: out of memory", img->path);
  if (!(args->flags & FERRY_OPEN_MISSING_BACKING) ||
      (args->flags & FERRY_OPEN_WRITE)) {
    ferry_error (ENOENT, "%s: %s", img->path, reason);
    free (reason);
    return -1;
  }
  free (img->backing_missing);
  free (img->missing_backing_path);
  img->backing_missing = reason;
  img->missing_backing_path = full ? strdup (full) : NULL;
  if (full && img->missing_backing_path == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", img->path);
  return 0;
}

int
image_open_backing (struct ferry_image *img, const char *name,
                    const char *format, const struct open_args *args)
{
  CLEANUP_FREE char *path = NULL;
  CLEANUP_FREE struct chain_link *chain = NULL;
  struct open_args bargs = { 0 };
  const char *word = image_backing_word (img);
  size_t failed_layer = 0;
  struct stat st;

  /* A name relative to the file would point beside the archive, not
   * inside it. */
  if (args->windowed)
    return ferry_error (EINVAL, "%s: the image at offset %" PRIu64 " names "
                        "a %s ('%s'), which an image inside another file "
                        "cannot have", img->path, args->window_start, word,
                        name);
  /* Note 7, for the names a user gives at create time as well: the image
   * would name the server for every later open. */
  if (image_refuse_uri (img->path, word, name) == -1)
    return -1;
  if (args->flags & FERRY_OPEN_NO_BACKING)
    return 0;

  path = image_resolve_relative (img->path, name);
  chain = calloc (args->chain_len + 1, sizeof *chain);
  if (path == NULL || chain == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", img->path);

  /* Note 6: nothing at all at that path. */
  if (stat (path, &st) == -1 &&
      (errno == ENOENT || errno == ENOTDIR))
    return image_backing_missing (img, args, path, "the %s '%s' is missing: "
                                  "there is no file at '%s'", word, name,
                                  path);

  if (args->chain_len)
    memcpy (chain, args->chain, args->chain_len * sizeof *chain);
  chain[args->chain_len].dev = img->dev;
  chain[args->chain_len].ino = img->ino;
  bargs.flags = args->flags & ~FERRY_OPEN_WRITE;   /* SHARED stays */
  bargs.chain = chain;
  bargs.chain_len = args->chain_len + 1;
  bargs.failed_layer = args->failed_layer ? args->failed_layer : &failed_layer;

  img->backing = open_with_args (path, format, &bargs);
  if (img->backing == NULL) {
    /* Note 3: the deepest layer that sees the failure records it; only
     * the top image adds to the message. */
    if (*bargs.failed_layer == 0)
      *bargs.failed_layer = bargs.chain_len;
    if (args->chain_len > 0)
      return -1;
    if (failed_layer == 1)
      ferry_error_prefix ("%s: %s '%s'", img->path, word, name);
    else
      ferry_error_prefix ("%s: layer %zu of its backing chain",
                          img->path, failed_layer);
    return -1;
  }
  return 0;
}

struct ferry_image *
ferry_image_create (const char *path, const char *format, uint64_t size,
                    const char *options)
{
  struct option_list opts = empty_vector;
  const struct image_driver *drv;
  struct ferry_image *img;
  struct stat st;
  bool is_block;
  size_t i;
  int fd;

  drv = find_driver (format ? format : "raw");
  if (drv == NULL) {
    unknown_format_error (format);
    return NULL;
  }
  if (uri_driver (path)) {
    ferry_error (ENOTSUP, "%s: a %s export exists already and cannot be "
                 "created; write into it instead (ferry convert does)",
                 path, uri_driver (path)->name);
    return NULL;
  }
  if (drv->create == NULL) {
    ferry_error (ENOTSUP, "%s: ferry cannot write %s images", path, drv->name);
    return NULL;
  }
  if (parse_options (options, &opts) == -1) {
    ferry_error_prefix ("%s", path);
    free_options (&opts);
    return NULL;
  }

  /* A block device is written in place; anything else must be new, and
   * is removed again if the driver refuses to make an image of it. */
  is_block = stat (path, &st) == 0 && S_ISBLK (st.st_mode);
  fd = hostfile_open_locked (path, FERRY_OPEN_WRITE, !is_block, NULL);
  if (fd == -1) {
    free_options (&opts);
    return NULL;
  }

  img = drv->create (path, fd, size, &opts);   /* owns fd from here */
  if (img == NULL) {
    if (!is_block)
      unlink (path);
    free_options (&opts);
    return NULL;
  }
  for (i = 0; i < opts.len; i++) {
    if (!opts.ptr[i].used) {
      ferry_error (EINVAL, "%s: %s does not take the option '%s'",
                   path, drv->name, opts.ptr[i].key);
      free_options (&opts);
      ferry_image_close (img);
      if (!is_block)
        ferry_image_remove (path, drv->name);
      return NULL;
    }
  }
  free_options (&opts);
  /* A new overlay shows its backing file through every cluster. */
  img->reads_as_backing = img->backing != NULL;
  return img;
}

int
image_init_base (struct ferry_image *base, const struct image_driver *driver,
                 const char *path, int fd, bool readonly)
{
  struct stat st;

  base->driver = driver;
  base->readonly = readonly;
  base->path = strdup (path);
  if (base->path == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", path);
  if (fd == -1)                 /* a URI: no file */
    return 0;
  if (fstat (fd, &st) == -1)
    return ferry_error_errno (errno, "%s: stat", path);
  base->dev = st.st_dev;
  base->ino = st.st_ino;
  return 0;
}

void
image_base_discard (struct ferry_image *base)
{
  ferry_image_close (base->backing);
  free (base->path);
  free (base->backing_missing);
  free (base->missing_backing_path);
  base->backing = NULL;
  base->path = base->backing_missing = base->missing_backing_path = NULL;
}

/* Check a request of COUNT bytes at OFFSET against the image; WRITE says
 * whether it changes the image. */
static int
check_request (struct ferry_image *img, const char *what, size_t count,
               uint64_t offset, bool write)
{
  uint64_t end;

  if (write && img->readonly)
    return ferry_error (EROFS, "%s: %s: the image is open read-only",
                        img->path, what);
  if (__builtin_add_overflow (offset, (uint64_t) count, &end) ||
      end > img->size)
    return ferry_error (EINVAL, "%s: %s of %zu bytes at offset %" PRIu64
                        " is past the end of the disk (%" PRIu64 " bytes)",
                        img->path, what, count, offset, img->size);
  return 0;
}

int
ferry_image_pread (struct ferry_image *img, void *buf, size_t count,
                   uint64_t offset)
{
  if (check_request (img, "read", count, offset, false) == -1)
    return -1;
  if (count == 0)
    return 0;
  return img->driver->pread (img, buf, count, offset);
}

int
ferry_image_pwrite (struct ferry_image *img, const void *buf, size_t count,
                    uint64_t offset)
{
  if (check_request (img, "write", count, offset, true) == -1)
    return -1;
  if (count == 0)
    return 0;
  if (img->driver->pwrite == NULL)
    return ferry_error (ENOTSUP, "%s: ferry cannot write %s images",
                        img->path, img->driver->name);
  return img->driver->pwrite (img, buf, count, offset);
}

int
image_zero_by_writing (struct ferry_image *img, size_t count, uint64_t offset)
{
  static const char zeroes[1 << 16];

  while (count > 0) {
    size_t n = MIN (count, sizeof zeroes);
    if (img->driver->pwrite (img, zeroes, n, offset) == -1)
      return -1;
    count -= n;
    offset += n;
  }
  return 0;
}

int
ferry_image_zero (struct ferry_image *img, size_t count, uint64_t offset,
                  unsigned flags)
{
  if (check_request (img, "zero", count, offset, true) == -1)
    return -1;
  if (count == 0)
    return 0;
  if (img->driver->zero)
    return img->driver->zero (img, count, offset, flags);
  if (img->driver->pwrite == NULL)
    return ferry_error (ENOTSUP, "%s: ferry cannot write %s images",
                        img->path, img->driver->name);
  return image_zero_by_writing (img, count, offset);
}

int
ferry_extent_list_append (struct ferry_extent_list *list, uint64_t offset,
                    uint64_t length, uint32_t flags)
{
  struct ferry_extent *last;

  if (length == 0)
    return 0;
  last = list->len ? &list->ptr[list->len - 1] : NULL;
  if (last && last->offset + last->length == offset && last->flags == flags) {
    last->length += length;
    return 0;
  }
  if (list->len >= list->cap &&
      generic_vector_reserve (list, 1, sizeof (struct ferry_extent)) == -1)
    return -1;
  list->ptr[list->len++] = (struct ferry_extent) {
    .offset = offset, .length = length, .flags = flags,
  };
  return 0;
}

void
ferry_extent_list_free (struct ferry_extent_list *list)
{
  free (list->ptr);
  list->ptr = NULL;
  list->len = list->cap = 0;
}

/* Check an extents query of LENGTH bytes at OFFSET against the image. */
static int
check_extents_request (struct ferry_image *img, uint64_t offset,
                       uint64_t length)
{
  if (length > img->size || offset > img->size - length)
    return ferry_error (EINVAL, "%s: extents of %" PRIu64 " bytes at offset %"
                        PRIu64 " are past the end of the disk (%" PRIu64
                        " bytes)", img->path, length, offset, img->size);
  return 0;
}

/* The extents contract: at least one extent appended since the list held
 * BEFORE entries, or the last one before already covering OFFSET. */
static void
assert_extents_contract (const struct ferry_extent_list *list, size_t before,
                         uint64_t offset)
{
  assert (list->len > before || (before > 0 &&
          list->ptr[before - 1].offset + list->ptr[before - 1].length >
          offset));
}

/* The error for a read or an extents query of COUNT bytes at OFFSET
 * that reaches IMG's missing backing file (note 6). */
static int
backing_missing_error (struct ferry_image *img, const char *what,
                       uint64_t count, uint64_t offset)
{
  return ferry_error (ENOENT, "%s: %s of %" PRIu64 " bytes at offset %"
                      PRIu64 " reaches the %s, which is missing (%s)",
                      img->path, what, count, offset,
                      image_backing_word (img), img->backing_missing);
}

int
image_backing_pread (struct ferry_image *img, void *buf, uint64_t count,
                     uint64_t offset)
{
  struct ferry_image *b = img->backing;
  uint64_t n = 0;

  if (img->backing_missing)
    return backing_missing_error (img, "read", count, offset);
  if (b && offset < b->size) {
    n = MIN (count, b->size - offset);
    if (ferry_image_pread (b, buf, n, offset) == -1) {
      ferry_error_prefix ("%s: reading its backing file", img->path);
      return -1;
    }
  }
  memset ((uint8_t *) buf + n, 0, count - n);
  return 0;
}

int
image_sub_extents (struct ferry_image *img, struct ferry_image *sub,
                   uint64_t at, uint64_t count, uint64_t offset,
                   struct ferry_extent_list *list, uint64_t *end)
{
  struct ferry_extent_list tmp = { 0 };
  uint64_t n, reached = at;
  size_t i;

  if (sub == NULL && img->backing_missing)
    return backing_missing_error (img, "extents", count, at);
  if (sub == NULL || at >= sub->size) {
    *end = offset + count;
    return ferry_extent_list_append (list, offset, count,
                                     FERRY_EXTENT_HOLE | FERRY_EXTENT_ZERO);
  }
  n = MIN (count, sub->size - at);
  if (ferry_image_extents (sub, at, n, &tmp) == -1) {
    ferry_error_prefix ("%s: extents of %s", img->path, sub->path);
    ferry_extent_list_free (&tmp);
    return -1;
  }
  for (i = 0; i < tmp.len; i++) {
    uint64_t s = MAX (tmp.ptr[i].offset, reached);
    uint64_t e = MIN (tmp.ptr[i].offset + tmp.ptr[i].length, at + n);
    if (s != reached || e <= s)
      break;
    if (ferry_extent_list_append (list, s - at + offset, e - s,
                                  tmp.ptr[i].flags) == -1) {
      ferry_extent_list_free (&tmp);
      return -1;
    }
    reached = e;
  }
  ferry_extent_list_free (&tmp);
  if (reached == at)
    return ferry_error (EIO, "%s: %s reported no extent at offset %" PRIu64,
                        img->path, sub->path, at);
  if (reached == at + n && n < count) {
    if (ferry_extent_list_append (list, reached - at + offset, count - n,
                                  FERRY_EXTENT_HOLE | FERRY_EXTENT_ZERO) == -1)
      return -1;
    reached = at + count;
  }
  *end = reached - at + offset;
  return 0;
}

int
ferry_image_extents (struct ferry_image *img, uint64_t offset,
                     uint64_t length, struct ferry_extent_list *list)
{
  size_t before = list->len;

  if (check_extents_request (img, offset, length) == -1)
    return -1;
  if (length == 0)
    return 0;
  if (img->driver->extents == NULL)
    return ferry_extent_list_append (list, offset, length, 0);
  if (img->driver->extents (img, offset, length, list) == -1)
    return -1;
  assert_extents_contract (list, before, offset);
  return 0;
}

const char *const *
ferry_image_contexts (struct ferry_image *img)
{
  static const char *const base_only[] = {
    FERRY_CONTEXT_BASE_ALLOCATION, NULL,
  };

  if (img->driver->contexts)
    return img->driver->contexts (img);
  return base_only;
}

int
ferry_image_context_extents (struct ferry_image *img, const char *name,
                             uint64_t offset, uint64_t length,
                             struct ferry_extent_list *list)
{
  const char *const *names = ferry_image_contexts (img);
  size_t before = list->len, i;
  char offered[512] = "";

  if (strcmp (name, FERRY_CONTEXT_BASE_ALLOCATION) == 0)
    return ferry_image_extents (img, offset, length, list);
  for (i = 0; names[i]; i++)
    if (strcmp (names[i], name) == 0)
      break;
  if (names[i] == NULL || img->driver->context_extents == NULL) {
    for (i = 0; names[i]; i++) {
      if (i > 0)
        strncat (offered, ", ", sizeof offered - strlen (offered) - 1);
      strncat (offered, names[i], sizeof offered - strlen (offered) - 1);
    }
    return ferry_error (ENOENT, "%s: no metadata context '%s' (this image "
                        "offers: %s)", img->path, name, offered);
  }
  if (check_extents_request (img, offset, length) == -1)
    return -1;
  if (length == 0)
    return 0;
  if (img->driver->context_extents (img, name, offset, length, list) == -1)
    return -1;
  assert_extents_contract (list, before, offset);
  return 0;
}

void
ferry_image_set_early_writeback (struct ferry_image *img, bool on)
{
  if (on && !img->readonly && img->writeback == NULL) {
    /* Without memory it is only slower: write-back waits for the flush. */
    img->writeback = calloc (1, sizeof *img->writeback);
    if (img->writeback)
      pthread_mutex_init (&img->writeback->lock, NULL);
  }
  else if (!on && img->writeback) {
    pthread_mutex_destroy (&img->writeback->lock);
    free (img->writeback);
    img->writeback = NULL;
  }
}

uint32_t
ferry_image_compress_unit (struct ferry_image *img)
{
  if (img->driver->compress_unit == NULL || img->driver->compress == NULL)
    return 0;
  return img->driver->compress_unit (img);
}

size_t
ferry_image_compress_bound (struct ferry_image *img)
{
  return img->driver->compress_bound ? img->driver->compress_bound (img) : 0;
}

ssize_t
ferry_image_compress (struct ferry_image *img, const void *in, size_t count,
                      void *out)
{
  if (img->driver->compress == NULL)
    return ferry_error (ENOTSUP, "%s: %s images cannot hold compressed data",
                        img->path, img->driver->name);
  return img->driver->compress (img, in, count, out);
}

int
ferry_image_write_compressed (struct ferry_image *img, uint64_t offset,
                              const void *data, size_t len, size_t count)
{
  if (check_request (img, "compressed write", count, offset, true) == -1)
    return -1;
  if (img->driver->write_compressed == NULL)
    return ferry_error (ENOTSUP, "%s: %s images cannot hold compressed data",
                        img->path, img->driver->name);
  return img->driver->write_compressed (img, offset, data, len, count);
}

bool
ferry_image_compress_required (struct ferry_image *img)
{
  return img->compress_required;
}

int
ferry_image_flush (struct ferry_image *img)
{
  if (img->readonly || img->driver->flush == NULL)
    return 0;
  return img->driver->flush (img);
}

/* Free what describe left in the base. */
static void
free_facts (struct ferry_image *img)
{
  size_t i;

  for (i = 0; i < img->fact_strings.len; i++)
    free (img->fact_strings.ptr[i]);
  free (img->fact_strings.ptr);
  free (img->facts.ptr);
  memset (&img->facts, 0, sizeof img->facts);
  memset (&img->fact_strings, 0, sizeof img->fact_strings);
}

int
ferry_image_close (struct ferry_image *img)
{
  struct ferry_image *backing;
  char *path, *missing, *missing_path;
  int r;

  if (img == NULL)
    return 0;
  backing = img->backing;
  path = img->path;
  missing = img->backing_missing;
  missing_path = img->missing_backing_path;
  free_facts (img);
  ferry_image_set_early_writeback (img, false);
  r = img->driver->close (img);   /* frees img itself */
  free (path);
  free (missing);
  free (missing_path);
  if (ferry_image_close (backing) == -1)
    r = -1;
  return r;
}

/* Keep S alive until the facts are freed; return the copy. */
static const char *
keep_string (struct ferry_image *img, const char *s)
{
  char *copy = strdup (s);

  if (copy == NULL ||
      generic_vector_reserve (&img->fact_strings, 1, sizeof (char *)) == -1) {
    free (copy);
    return NULL;
  }
  img->fact_strings.ptr[img->fact_strings.len++] = copy;
  return copy;
}

static int
add_fact (struct ferry_image *img, struct ferry_fact fact)
{
  fact.key = keep_string (img, fact.key);
  if (fact.key == NULL)
    return ferry_error (ENOMEM, "out of memory");
  if (generic_vector_reserve (&img->facts, 1, sizeof fact) == -1)
    return -1;
  img->facts.ptr[img->facts.len++] = fact;
  return 0;
}

int
image_fact_string (struct ferry_image *img, const char *key,
                   const char *value)
{
  const char *copy = keep_string (img, value);

  if (copy == NULL)
    return ferry_error (ENOMEM, "out of memory");
  return add_fact (img, (struct ferry_fact) {
    .key = key, .kind = FERRY_FACT_STRING, .string = copy });
}

int
image_fact_number (struct ferry_image *img, const char *key, uint64_t value)
{
  return add_fact (img, (struct ferry_fact) {
    .key = key, .kind = FERRY_FACT_NUMBER, .number = value });
}

int
image_fact_bool (struct ferry_image *img, const char *key, bool value)
{
  return add_fact (img, (struct ferry_fact) {
    .key = key, .kind = FERRY_FACT_BOOL, .number = value });
}

int
ferry_image_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  memset (info, 0, sizeof *info);
  free_facts (img);
  info->format = img->driver->name;
  info->path = img->path;
  info->virtual_size = img->size;
  if (img->driver->describe && img->driver->describe (img, info) == -1)
    return -1;
  info->backing_missing = img->backing_missing;
  if (img->backing)
    info->full_backing_file = img->backing->path;
  else if (img->backing_missing)
    info->full_backing_file = img->missing_backing_path;
  else if (info->backing_file) {
    /* Not opened (FERRY_OPEN_NO_BACKING): where it would be. */
    CLEANUP_FREE char *full = image_resolve_relative (img->path,
                                                      info->backing_file);
    info->full_backing_file = full ? keep_string (img, full) : NULL;
    if (info->full_backing_file == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", img->path);
  }
  info->facts = img->facts.ptr;
  info->nr_facts = img->facts.len;
  return 0;
}

struct ferry_image *
ferry_image_backing (struct ferry_image *img)
{
  return img->backing;
}

uint64_t
ferry_image_size (struct ferry_image *img)
{
  return img->size;
}

const char *
ferry_image_format (struct ferry_image *img)
{
  return img->driver->name;
}

const char *
ferry_image_path (struct ferry_image *img)
{
  return img->path;
}

int
image_file_of_fd (int fd, const char *path, image_file_fn fn, void *opaque)
{
  struct stat st;

  if (fstat (fd, &st) == -1)
    return ferry_error_errno (errno, "%s: stat", path);
  return fn (&(struct image_file) { st.st_dev, st.st_ino, path }, opaque);
}

int
image_for_each_file (struct ferry_image *img, image_file_fn fn, void *opaque)
{
  int r = 0;

  if (img->dev || img->ino)
    r = fn (&(struct image_file) { img->dev, img->ino, img->path }, opaque);
  if (r == 0 && img->driver->files)
    r = img->driver->files (img, fn, opaque);
  return r;
}

/* What same_file_fn looks for, and where it found it. */
struct same_file_search {
  const struct image_file *want;
  struct ferry_image *top;      /* the image whose chain is searched */
  struct ferry_image *layer;    /* the layer being walked */
};

/* Is FILE the one searched for?  1 with the message set. */
static int
same_file_fn (const struct image_file *file, void *opaque)
{
  struct same_file_search *s = opaque;

  if (file->dev != s->want->dev || file->ino != s->want->ino)
    return 0;
  if (s->layer == s->top)
    ferry_error (EEXIST, "%s and %s are the same file", s->want->path,
                 file->path);
  else
    ferry_error (EEXIST, "%s and %s are the same file (%s is in the backing "
                 "chain of %s)", s->want->path, file->path, s->layer->path,
                 s->top->path);
  return 1;
}

/* Whether WANT is a file of IMG or of its backing chain: 1 (message
 * set), 0, or -1. */
static int
chain_has_file (struct ferry_image *img, const struct image_file *want)
{
  struct same_file_search s = { .want = want, .top = img };
  int r = 0;

  for (s.layer = img; s.layer && r == 0; s.layer = s.layer->backing)
    r = image_for_each_file (s.layer, same_file_fn, &s);
  return r;
}

/* image_for_each_file's FN over OTHER: is FILE a file of IMG's chain? */
static int
other_file_fn (const struct image_file *file, void *opaque)
{
  return chain_has_file (opaque, file);
}

int
ferry_image_same_file (struct ferry_image *img, struct ferry_image *other)
{
  return image_for_each_file (other, other_file_fn, img);
}

int
ferry_image_has_file (struct ferry_image *img, const char *path)
{
  struct stat st;

  if (stat (path, &st) == -1)
    return errno == ENOENT ? 0 : ferry_error_errno (errno, "%s", path);
  return chain_has_file (img, &(struct image_file) {
      st.st_dev, st.st_ino, path });
}

bool
ferry_image_is_uri (const char *path)
{
  return uri_driver (path) != NULL;
}

unsigned
ferry_image_capabilities (struct ferry_image *img)
{
  const struct image_driver *drv = img->driver;
  unsigned caps = 0;

  if (!img->readonly && drv->pwrite)
    caps |= FERRY_CAN_WRITE;
  if (drv->zero)
    caps |= FERRY_CAN_ZERO | FERRY_CAN_TRIM;
  if (drv->extents)
    caps |= FERRY_CAN_EXTENTS;
  if (drv->capabilities)
    caps &= drv->capabilities (img);
  if (!(caps & FERRY_CAN_WRITE))
    caps &= ~(FERRY_CAN_ZERO | FERRY_CAN_TRIM);
  return caps;
}

bool
ferry_image_is_zero_initialized (struct ferry_image *img)
{
  return img->zero_initialized;
}

bool
ferry_image_reads_as_backing (struct ferry_image *img)
{
  return img->reads_as_backing;
}

uint64_t
file_allocated_bytes (int fd)
{
  struct stat st;

  if (fstat (fd, &st) == -1)
    return 0;
  return (uint64_t) st.st_blocks * 512;
}

int
check_report (struct ferry_check_result *r, bool corruption,
              const char *fmt, ...)
{
  char *line, **p;
  va_list ap;
  int n;

  if (corruption)
    r->corruptions++;
  else
    r->leaks++;
  /* A badly broken image can have millions of problems; keep the first
   * thousand lines and count the rest. */
  if (r->nr_messages >= 1000)
    return 0;
  va_start (ap, fmt);
  n = vasprintf (&line, fmt, ap);
  va_end (ap);
  if (n == -1)
    return ferry_error (ENOMEM, "out of memory");
  p = realloc (r->messages, (r->nr_messages + 2) * sizeof *p);
  if (p == NULL) {
    free (line);
    return ferry_error (ENOMEM, "out of memory");
  }
  r->messages = p;
  r->messages[r->nr_messages++] = line;
  r->messages[r->nr_messages] = NULL;
  return 0;
}

int
check_report_error (struct ferry_check_result *r, const char *path)
{
  const char *msg = ferry_get_error ();
  size_t n = strlen (path);

  if (strncmp (msg, path, n) == 0 && strncmp (msg + n, ": ", 2) == 0)
    msg += n + 2;
  return check_report (r, true, "%s", msg);
}

/* ferry check refuses, as qemu-img check does, an image whose backing
 * file (parent) is missing, at any depth: -1 with the missing layer's
 * reason.  The open shares and locks as the caller's FLAGS say.  An image
 * that does not open for what is wrong inside it is left to the driver's
 * check, which says what; one that does not open for another reason (in
 * use, out of memory, unreadable) is refused with that reason. */
static int
parent_present (const char *path, const struct image_driver *drv,
                unsigned flags)
{
  struct open_args args = {
    .flags = FERRY_OPEN_MISSING_BACKING |
             (flags & (FERRY_OPEN_SHARED | FERRY_OPEN_STRICT)),
  };
  struct ferry_image *img, *layer;
  int r = 0;

  if (drv->backing_word == NULL)      /* no backing files in this format */
    return 0;
  /* Its warnings (a checksum, a CID) are the check's to report. */
  ferry_log_mute (true);
  img = open_with_args (path, drv->name, &args);
  ferry_log_mute (false);
  if (img == NULL) {
    int e = ferry_get_errno ();
    if (e == EBUSY || e == ENOMEM || e == EACCES || e == EPERM)
      return -1;
  }
  for (layer = img; layer && r == 0; layer = layer->backing)
    if (layer->backing_missing)
      r = ferry_error (ENOENT, "%s: %s%s%s", path,
                       layer == img ? "" : layer->path,
                       layer == img ? "" : ": ", layer->backing_missing);
  ferry_image_close (img);
  return r;
}

int
ferry_image_check (const char *path, const char *format, unsigned flags,
                   struct ferry_check_result *result)
{
  const struct image_driver *drv;
  CLEANUP_CLOSE int fd = -1;

  memset (result, 0, sizeof *result);
  if (uri_driver (path)) {
    /* An export has no metadata of its own to check: that it answers is
     * all there is to know. */
    struct ferry_image *img = ferry_image_open (path, format,
                                                flags & ~FERRY_OPEN_WRITE);
    if (img == NULL)
      return -1;
    return ferry_image_close (img);
  }
  fd = hostfile_open_locked (path, flags & ~FERRY_OPEN_WRITE, false, NULL);
  if (fd == -1)
    return -1;
  if (format) {
    drv = find_driver (format);
    if (drv == NULL) {
      unknown_format_error (format);
      return -1;
    }
  }
  else {
    drv = probe_fd (path, fd);
    if (drv == NULL)
      return -1;
  }
  if (parent_present (path, drv, flags) == -1)
    return -1;
  if (drv->check == NULL)
    return 0;   /* no metadata, nothing that can be inconsistent */
  if (drv->check (path, fd, result) == -1) {
    ferry_check_result_free (result);   /* what it reported before */
    return -1;
  }
  return 0;
}

void
ferry_check_result_free (struct ferry_check_result *result)
{
  size_t i;

  for (i = 0; i < result->nr_messages; i++)
    free (result->messages[i]);
  free (result->messages);
  memset (result, 0, sizeof *result);
}

int
ferry_image_rename (const char *from, const char *to, const char *format,
                    bool sync)
{
  const struct image_driver *drv = find_driver (format ? format : "raw");

  if (drv == NULL) {
    unknown_format_error (format);
    return -1;
  }
  if (drv->rename)
    return drv->rename (from, to, sync);
  if (sync && sync_path (from) == -1)
    return ferry_error_errno (errno, "%s: fsync", from);
  if (rename_noreplace (from, to) == -1)
    return ferry_error_errno (errno, "%s: renaming the finished image into "
                              "place", to);
  return 0;
}

int
ferry_image_remove (const char *path, const char *format)
{
  const struct image_driver *drv = find_driver (format ? format : "raw");

  if (drv && drv->remove)
    return drv->remove (path);
  if (unlink (path) == -1 && errno != ENOENT)
    return ferry_error_errno (errno, "%s: removing it", path);
  return 0;
}
