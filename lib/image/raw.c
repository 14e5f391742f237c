/* raw: the disk byte for byte, in a regular file or on a block device.
 *
 * Holes and zeroing are the host-file layer's (hostfile.h): SEEK_DATA /
 * SEEK_HOLE, and punch hole, ZERO_RANGE, BLKZEROOUT on devices, writes of
 * zeroes, with what the file cannot do remembered in the handle.
 *
 * A raw image may also be a window of a larger file (a disk inside an
 * OVA, see ferry_image_open_window): every file offset is then moved by
 * the window's start, and the window's length is the disk's size.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostfile.h"
#include "internal.h"
#include "../common/util.h"

struct raw_image {
  struct ferry_image base;     /* must be first */
  int fd;
  uint64_t start;              /* where the disk begins in the file */
  bool windowed;
  bool is_block;
  struct hostfile_caps caps;   /* what the file cannot do */
};

/* raw claims anything, with the lowest score, so it is the fallback. */
static int
raw_probe (const uint8_t *head, size_t head_len, const uint8_t *tail,
           size_t tail_len, uint64_t file_size)
{
  return 1;
}

/* Fill the handle for FD; shared by open and create. */
static struct ferry_image *
raw_setup (const char *path, int fd, bool readonly)
{
  struct raw_image *h = calloc (1, sizeof *h);
  struct stat st;

  if (h == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    close (fd);
    return NULL;
  }
  h->fd = fd;
  if (image_init_base (&h->base, &raw_driver, path, fd, readonly) == -1 ||
      fstat (fd, &st) == -1)
    goto err;
  h->is_block = S_ISBLK (st.st_mode);
  if (h->is_block) {
    uint64_t size;
    if (ioctl (fd, BLKGETSIZE64, &size) == -1) {
      ferry_error_errno (errno, "%s: BLKGETSIZE64", path);
      goto err;
    }
    h->base.size = size;
  }
  else
    h->base.size = st.st_size;
  hostfile_caps_init (&h->caps, fd);
  return &h->base;

 err:
  free (h->base.path);
  free (h);
  close (fd);
  return NULL;
}

/* Open an existing file or device as it is. */
static struct ferry_image *
raw_open (const char *path, int fd, const struct open_args *args)
{
  struct ferry_image *img = raw_setup (path, fd,
                                       !(args->flags & FERRY_OPEN_WRITE));
  struct raw_image *h = (struct raw_image *) img;

  if (img && args->windowed) {
    h->windowed = true;
    h->start = args->window_start;
    img->size = args->window_length;
  }
  return img;
}

/* Size a new file (preallocated if asked); a device keeps its size and
 * its old contents. */
static struct ferry_image *
raw_create (const char *path, int fd, uint64_t size, struct option_list *opts)
{
  struct ferry_image *img;
  const char *prealloc = options_get (opts, "preallocation");
  struct raw_image *h;

  if (prealloc && strcmp (prealloc, "off") && strcmp (prealloc, "falloc") &&
      strcmp (prealloc, "full")) {
    ferry_error (EINVAL, "%s: preallocation=%s: expected off, falloc or full",
                 path, prealloc);
    close (fd);
    return NULL;
  }
  img = raw_setup (path, fd, false);
  if (img == NULL)
    return NULL;
  h = (struct raw_image *) img;
  if (h->is_block) {
    if (size > img->size) {
      ferry_error (ENOSPC, "%s: the device holds %" PRIu64 " bytes, "
                   "%" PRIu64 " are needed", path, img->size, size);
      goto err;
    }
    /* A device keeps whatever it held: nothing is known to be zero. */
    img->size = size ? size : img->size;
    return img;
  }
  if (truncate_fd (fd, size) == -1) {
    ferry_error_errno (errno, "%s: setting the size to %" PRIu64, path, size);
    goto err;
  }
  if (prealloc && strcmp (prealloc, "off") != 0) {
    if (preallocate_fd (fd, 0, size) == -1) {
      ferry_error_errno (errno, "%s: preallocating %" PRIu64 " bytes", path,
                         size);
      goto err;
    }
  }
  img->size = size;
  img->zero_initialized = true;
  return img;

 err:
  ferry_image_close (img);
  return NULL;
}

/* Read guest bytes: the same bytes of the file. */
static int
raw_pread (struct ferry_image *img, void *buf, size_t count, uint64_t offset)
{
  struct raw_image *h = (struct raw_image *) img;

  if (full_pread (h->fd, buf, count, h->start + offset) == -1)
    return ferry_error_errno (errno, "%s: read of %zu bytes at offset %"
                              PRIu64, img->path, count, offset);
  return 0;
}

/* Write guest bytes to the same bytes of the file. */
static int
raw_pwrite (struct ferry_image *img, const void *buf, size_t count,
            uint64_t offset)
{
  struct raw_image *h = (struct raw_image *) img;

  if (full_pwrite (h->fd, buf, count, offset) == -1)
    return ferry_error_errno (errno, "%s: write of %zu bytes at offset %"
                              PRIu64, img->path, count, offset);
  hostfile_start_writeback (img, h->fd, offset, count);
  return 0;
}

/* Make a range read as zeroes, the cheapest way the file allows. */
static int
raw_zero (struct ferry_image *img, size_t count, uint64_t offset,
          unsigned flags)
{
  struct raw_image *h = (struct raw_image *) img;

  return hostfile_zero (h->fd, offset, count, flags & FERRY_ZERO_MAY_TRIM,
                        &h->caps, img->path);
}

/* Data and holes of the file (in a window, moved by its start). */
static int
raw_extents (struct ferry_image *img, uint64_t offset, uint64_t length,
             struct ferry_extent_list *list)
{
  struct raw_image *h = (struct raw_image *) img;

  return hostfile_extents (h->fd, h->start + offset, length, offset,
                           FERRY_EXTENT_HOLE | FERRY_EXTENT_ZERO, &h->caps,
                           img->path, list);
}

/* Make what was written durable. */
static int
raw_flush (struct ferry_image *img)
{
  struct raw_image *h = (struct raw_image *) img;

  if (datasync_fd (h->fd) == -1)
    return ferry_error_errno (errno, "%s: flush", img->path);
  return 0;
}

/* Close the file; an error closing a written file is an error. */
static int
raw_close (struct ferry_image *img)
{
  struct raw_image *h = (struct raw_image *) img;
  int r = 0;

  if (close (h->fd) == -1 && !img->readonly)
    r = ferry_error_errno (errno, "%s: close", img->path);
  free (h);
  return r;
}

/* Space used on disk (a device counts whole), and whether it is a
 * device. */
static int
raw_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  struct raw_image *h = (struct raw_image *) img;

  /* A window's share of the file's blocks is not known: count it all. */
  info->allocated = h->is_block || h->windowed ? img->size
    : file_allocated_bytes (h->fd);
  if (h->is_block)
    return image_fact_bool (img, "block-device", true);
  return 0;
}

const struct image_driver raw_driver = {
  .name = "raw",
  .probe = raw_probe,
  .windows = true,
  .open_stream = raw_open_stream,
  .open = raw_open,
  .create = raw_create,
  .pread = raw_pread,
  .pwrite = raw_pwrite,
  .zero = raw_zero,
  .extents = raw_extents,
  .flush = raw_flush,
  .close = raw_close,
  .describe = raw_describe,
};
