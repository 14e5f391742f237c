/* vmdk: writing streamOptimized images, front to back, as ESXi reads an
 * OVA.
 *
 * NOTES ON THE DESIGN
 *
 * 1. The layout is VMware's: the header sector (zeroes until close), the
 *    embedded descriptor, then from the first grain boundary each grain as
 *    a marker (LBA, size) and its zlib stream padded to a sector, each
 *    grain table right after the grains it maps (tables that map no grain
 *    are left out, their directory entry is 0), then the grain directory,
 *    the footer (the header again, with the directory's place), and the
 *    end-of-stream marker.  The header at the front says "directory at the
 *    end" and is written last, so a file cut short never reads as whole.
 *
 * 2. Grains arrive compressed, in ascending order, from the copy engine
 *    (ferry_image_compress_required), which deflates them with
 *    vmdk_compress on every core and calls vmdk_write_compressed in order.
 *    The writer only appends, under its own lock; a write that goes
 *    backwards is refused, and after a failed write nothing more is
 *    written, so close does not dress up a broken stream with a footer.
 *
 * 3. Grains inflate to whole grains: the last grain of a disk whose size
 *    is not a multiple of the grain size is padded with zeroes before it
 *    is deflated.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <libdeflate.h>

#include "vmdk-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* libdeflate level for grains.  On the bench's tar of /usr, level 3
 * deflates about twice as fast as level 6 on two cores, and its output is
 * within 2% of qemu-img's zlib level 6 (bench/vmdk.sh measures both). */
#define DEFLATE_LEVEL 3

/* The stream writer. */
struct vmdk_stream_writer {
  pthread_mutex_t lock;
  uint64_t pos;                /* where the next marker goes */
  uint64_t next;               /* lowest guest offset still writable */
  uint32_t cur;                /* table being filled, or UINT32_MAX */
  bool cur_used;
  uint32_t *gt;                /* its entries */
  uint32_t *gd;                /* sector of each table written; 0: none */
  size_t bound;                /* compress bound of one grain */
  bool failed;                 /* a write failed: do not finish */
};

/* Write a metadata marker of TYPE announcing SECTORS sectors at *POS,
 * then DATA (SECTORS sectors, or NULL when SECTORS is 0). */
static int
stream_metadata (struct vmdk_sparse *s, uint32_t type, const void *data,
                 uint64_t sectors)
{
  struct vmdk_stream_writer *w = s->stream;
  uint8_t marker[VMDK_SECTOR] = { 0 };
  struct iovec iov[2] = {
    { .iov_base = marker, .iov_len = sizeof marker },
    { .iov_base = (void *) data, .iov_len = sectors * VMDK_SECTOR },
  };

  put_le64 (marker, sectors);
  put_le32 (marker + 12, type);
  if (full_pwritev (s->fd, iov, sectors ? 2 : 1, w->pos) == -1)
    return ferry_error_errno (errno, "%s: writing a stream marker at offset "
                              "0x%" PRIx64, s->path, w->pos);
  w->pos += VMDK_SECTOR + sectors * VMDK_SECTOR;
  return 0;
}

/* Write the grain table being filled, if it maps any grain. */
static int
stream_end_table (struct vmdk_sparse *s)
{
  struct vmdk_stream_writer *w = s->stream;
  uint8_t buf[VMDK_GTES_PER_GT * 4];
  uint32_t i;

  if (w->cur == UINT32_MAX || !w->cur_used)
    return 0;
  for (i = 0; i < VMDK_GTES_PER_GT; i++)
    put_le32 (buf + 4 * i, w->gt[i]);
  w->gd[w->cur] = (w->pos + VMDK_SECTOR) / VMDK_SECTOR;
  if (stream_metadata (s, VMDK_MARKER_GT, buf, sizeof buf / VMDK_SECTOR) == -1)
    return -1;
  w->cur_used = false;
  memset (w->gt, 0, VMDK_GTES_PER_GT * 4);
  return 0;
}

/* Append one compressed grain (LEN bytes of zlib stream) for guest OFFSET. */
static int
stream_append (struct vmdk_sparse *s, uint64_t offset, const void *data,
               size_t len)
{
  struct vmdk_stream_writer *w = s->stream;
  static const uint8_t zeroes[VMDK_SECTOR];
  uint8_t marker[VMDK_GRAIN_MARKER_SIZE];
  uint64_t g = offset >> s->grain_bits;
  uint32_t ti = g / VMDK_GTES_PER_GT;
  size_t total = ROUND_UP (VMDK_GRAIN_MARKER_SIZE + len, VMDK_SECTOR);
  struct iovec iov[3] = {
    { .iov_base = marker, .iov_len = sizeof marker },
    { .iov_base = (void *) data, .iov_len = len },
    { .iov_base = (void *) zeroes,
      .iov_len = total - VMDK_GRAIN_MARKER_SIZE - len },
  };
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&w->lock);

  if (w->failed)
    return ferry_error (EIO, "%s: an earlier write failed", s->path);
  if (offset & (s->grain_size - 1))
    return ferry_error (EINVAL, "%s: a streamOptimized image is written in "
                        "whole grains: offset %" PRIu64 " is not on a grain "
                        "boundary", s->path, offset);
  if (offset < w->next)
    return ferry_error (EINVAL, "%s: a streamOptimized image is written in "
                        "ascending order: offset %" PRIu64 " comes after %"
                        PRIu64, s->path, offset, w->next);
  if (ti != w->cur) {
    if (stream_end_table (s) == -1)
      goto fail;
    w->cur = ti;
  }
  if ((w->pos + total) / VMDK_SECTOR > UINT32_MAX) {
    ferry_error (EFBIG, "%s: the stream would grow past 2 TiB, which its "
                 "grain tables cannot address", s->path);
    goto fail;
  }
  put_le64 (marker, offset / VMDK_SECTOR);
  put_le32 (marker + 8, len);
  if (full_pwritev (s->fd, iov, 3, w->pos) == -1) {
    ferry_error_errno (errno, "%s: writing the grain for offset %" PRIu64
                       " at 0x%" PRIx64, s->path, offset, w->pos);
    goto fail;
  }
  w->gt[g % VMDK_GTES_PER_GT] = w->pos / VMDK_SECTOR;
  w->cur_used = true;
  w->pos += total;
  w->next = offset + s->grain_size;
  return 0;

 fail:
  w->failed = true;
  return -1;
}

/* Finish the stream: last table, directory, footer, end-of-stream marker,
 * and the header at the front. */
int
vmdk_stream_finish (struct vmdk_sparse *s)
{
  struct vmdk_stream_writer *w = s->stream;
  struct vmdk_sparse_header footer = s->h;
  uint64_t gd_sectors = DIV_ROUND_UP ((uint64_t) s->nr_gts * 4, VMDK_SECTOR);
  CLEANUP_FREE uint8_t *gd = calloc (gd_sectors, VMDK_SECTOR);
  uint8_t buf[VMDK_SECTOR];
  uint32_t i;

  if (w->failed)
    return ferry_error (EIO, "%s: not finished: an earlier write failed",
                        s->path);
  if (gd == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", s->path);
  if (stream_end_table (s) == -1)
    return -1;
  for (i = 0; i < s->nr_gts; i++)
    put_le32 (gd + 4 * i, w->gd[i]);
  footer.gd_offset = (w->pos + VMDK_SECTOR) / VMDK_SECTOR;
  if (stream_metadata (s, VMDK_MARKER_GD, gd, gd_sectors) == -1)
    return -1;
  vmdk_header_encode (&footer, buf);
  if (stream_metadata (s, VMDK_MARKER_FOOTER, buf, 1) == -1 ||
      stream_metadata (s, VMDK_MARKER_EOS, NULL, 0) == -1)
    return -1;
  if (truncate_fd (s->fd, w->pos) == -1)
    return ferry_error_errno (errno, "%s: setting the size", s->path);
  return vmdk_sparse_write_header (s);
}

/* Set up S as a new streamOptimized extent of CAPACITY bytes. */
int
vmdk_stream_init (struct vmdk_image *v, struct vmdk_sparse *s,
                  uint64_t capacity)
{
  struct vmdk_sparse_header *h = &s->h;
  struct libdeflate_compressor *c;
  struct vmdk_stream_writer *w;

  memset (h, 0, sizeof *h);
  h->version = 3;
  h->flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS;
  h->capacity = capacity / VMDK_SECTOR;
  h->grain = VMDK_GRAIN_SECTORS;
  h->gtes_per_gt = VMDK_GTES_PER_GT;
  h->desc_offset = 1;
  h->gd_offset = VMDK_GD_AT_END;
  h->overhead = VMDK_GRAIN_SECTORS;
  h->compress = VMDK_COMPRESS_DEFLATE;
  s->capacity = capacity;
  s->grain_size = VMDK_GRAIN_SECTORS * VMDK_SECTOR;
  s->grain_bits = __builtin_ctz (s->grain_size);
  s->gt_entries = VMDK_GTES_PER_GT;
  s->gt_span = (uint64_t) VMDK_GTES_PER_GT * s->grain_size;
  s->nr_gts = DIV_ROUND_UP (capacity, s->gt_span);
  s->compressed = s->markers = true;
  s->writable = s->is_new = true;
  s->gd = calloc (s->nr_gts, sizeof *s->gd);
  s->gts = calloc (s->nr_gts, sizeof *s->gts);
  w = s->stream = calloc (1, sizeof *w);
  if (s->gd == NULL || s->gts == NULL || w == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", s->path);
  pthread_mutex_init (&w->lock, NULL);
  w->pos = h->overhead * VMDK_SECTOR;
  w->cur = UINT32_MAX;
  w->gt = calloc (VMDK_GTES_PER_GT, 4);
  w->gd = calloc (s->nr_gts, 4);
  c = libdeflate_alloc_compressor (DEFLATE_LEVEL);
  if (w->gt == NULL || w->gd == NULL || c == NULL) {
    if (c)
      libdeflate_free_compressor (c);
    return ferry_error (ENOMEM, "%s: out of memory", s->path);
  }
  w->bound = libdeflate_zlib_compress_bound (c, s->grain_size);
  pool_put (&v->deflaters, c, (void (*) (void *)) libdeflate_free_compressor);
  v->stream_out = true;
  v->base.compress_required = true;
  return 0;
}

static void
free_compressor (void *c)
{
  libdeflate_free_compressor (c);
}

uint32_t
vmdk_compress_unit (struct ferry_image *img)
{
  struct vmdk_image *v = (struct vmdk_image *) img;

  return v->stream_out ? v->extents[0].sparse->grain_size : 0;
}

size_t
vmdk_compress_bound (struct ferry_image *img)
{
  struct vmdk_image *v = (struct vmdk_image *) img;

  return v->stream_out ? v->extents[0].sparse->stream->bound : 0;
}

ssize_t
vmdk_compress (struct ferry_image *img, const void *in, size_t count,
               void *out)
{
  struct vmdk_image *v = (struct vmdk_image *) img;
  struct vmdk_sparse *s;
  struct libdeflate_compressor *c;
  CLEANUP_FREE uint8_t *padded = NULL;
  size_t n;

  if (!v->stream_out)
    return ferry_error (ENOTSUP, "%s: only streamOptimized VMDK images hold "
                        "compressed grains", img->path);
  s = v->extents[0].sparse;
  if (count > s->grain_size)
    return ferry_error (EINVAL, "%s: %zu bytes is more than a grain",
                        img->path, count);
  /* Grains inflate to a whole grain: pad the last one of the disk. */
  if (count < s->grain_size) {
    padded = calloc (1, s->grain_size);
    if (padded == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", img->path);
    memcpy (padded, in, count);
    in = padded;
  }
  c = pool_get (&v->deflaters);
  if (c == NULL && (c = libdeflate_alloc_compressor (DEFLATE_LEVEL)) == NULL)
    return ferry_error (ENOMEM, "%s: out of memory for a compressor",
                        img->path);
  n = libdeflate_zlib_compress (c, in, s->grain_size, out,
                                s->stream->bound);
  pool_put (&v->deflaters, c, free_compressor);
  if (n == 0)
    return ferry_error (EIO, "%s: deflate did not fit its own bound",
                        img->path);
  return n;
}

int
vmdk_write_compressed (struct ferry_image *img, uint64_t offset,
                       const void *data, size_t len, size_t count)
{
  struct vmdk_image *v = (struct vmdk_image *) img;

  if (!v->stream_out)
    return ferry_error (ENOTSUP, "%s: only streamOptimized VMDK images hold "
                        "compressed grains", img->path);
  __atomic_store_n (&v->written, true, __ATOMIC_RELAXED);
  return stream_append (v->extents[0].sparse, offset, data, len);
}

/* pwrite into a stream: whole grains in ascending order, deflated here,
 * for callers that do not compress themselves. */
int
vmdk_stream_pwrite (struct vmdk_image *v, const uint8_t *buf, size_t count,
                    uint64_t offset)
{
  struct vmdk_sparse *s = v->extents[0].sparse;
  CLEANUP_FREE uint8_t *out = malloc (s->stream->bound);

  if (out == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  while (count > 0) {
    size_t n = MIN (count, s->grain_size);
    ssize_t len;

    if ((offset & (s->grain_size - 1)) ||
        (n < s->grain_size && offset + n != v->base.size))
      return ferry_error (EINVAL, "%s: a streamOptimized image is written in "
                          "whole grains (%" PRIu32 " bytes): %zu bytes at "
                          "offset %" PRIu64, v->base.path, s->grain_size,
                          count, offset);
    if (!is_zero (buf, n)) {
      len = vmdk_compress (&v->base, buf, n, out);
      if (len == -1 || vmdk_write_compressed (&v->base, offset, out, len,
                                              n) == -1)
        return -1;
    }
    buf += n;
    count -= n;
    offset += n;
  }
  return 0;
}

/* Zeroes into a stream: grains not written read as zeroes, written ones
 * cannot change. */
int
vmdk_stream_zero (struct vmdk_image *v, uint64_t offset)
{
  struct vmdk_stream_writer *w = v->extents[0].sparse->stream;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&w->lock);

  if (offset < w->next)
    return ferry_error (EINVAL, "%s: a streamOptimized image is written in "
                        "ascending order: cannot zero offset %" PRIu64
                        " after %" PRIu64, v->base.path, offset, w->next);
  return 0;
}

void
vmdk_stream_free (struct vmdk_stream_writer *w)
{
  if (w == NULL)
    return;
  pthread_mutex_destroy (&w->lock);
  free (w->gt);
  free (w->gd);
  free (w);
}

void
vmdk_write_free (struct vmdk_image *v)
{
  pool_drain (&v->deflaters, free_compressor);
}
