/* vmdk driver: reading a streamOptimized VMDK from a gzip stream, start to
 * end (the open_stream of ferry_image_open_stream: a disk an OVA holds
 * gzip-compressed).  The file cannot be read at random, so its grain
 * directory, which a streamOptimized file keeps at its end, is of no use;
 * the markers are read instead, in the order they come: each grain marker
 * (LBA, size, zlib data) is the data of one grain, metadata markers
 * (grain tables, the directory, the footer) are skipped, and the
 * end-of-stream marker ends the disk.  What no grain covers reads as
 * zeroes.
 *
 * NOTES ON THE DESIGN
 *
 * 1. Grains must come in ascending LBA order, as every writer of streams
 *    (VMware, VirtualBox, qemu-img, ferry) writes them.  A grain that
 *    comes for a place already passed is an error that says to unpack the
 *    file first, not something to read at random for.
 *
 * 2. The next grain's marker is read ahead (peeked) when a read or an
 *    extents query needs to know where the next data is; its compressed
 *    bytes are read, and inflated, only when a read reaches the grain (or
 *    skipped, when a read jumps over it).  Extents report the zero run up
 *    to the peeked grain, and data beyond it, since nothing past it is
 *    known: the copy engine skips what is known to be zeroes, and reads
 *    the rest, which pread fills in.
 *
 * 3. Reads are serialized by one lock and must not go back (ESPIPE), as
 *    for every sequential image; the copy engine reads them with one
 *    worker, in order, and then reads the rest to the end of the gzip
 *    stream (ferry_image_read_to_end), where its trailers are checked.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>

#include "vmdk-internal.h"

struct vmdk_stream_image {
  struct ferry_image base;     /* must be first */
  struct image_stream *s;
  pthread_mutex_t lock;
  uint32_t grain_size;         /* bytes */
  uint64_t passed;             /* guest bytes already read or skipped */
  bool ended;                  /* the end-of-stream marker, or the end */
  /* The next grain, peeked (note 2). */
  bool have_next;
  uint64_t next_start;         /* guest offset */
  uint32_t next_csize;         /* compressed bytes after its marker */
  uint64_t next_marker_at;     /* stream offset of its marker, for messages */
  /* The grain last inflated. */
  uint8_t *grain;
  uint64_t grain_start;        /* UINT64_MAX: none */
  uint8_t *cbuf;               /* compressed bytes of one grain */
  struct libdeflate_decompressor *d;
};

/* Read the rest of a marker's sector after the LEN bytes already read, so
 * the stream stands at the next sector. */
static int
skip_to_sector (struct vmdk_stream_image *v, uint64_t len)
{
  return image_stream_read (v->s, NULL, ROUND_UP (len, (uint64_t) VMDK_SECTOR)
                            - len);
}

/* Read markers until the next grain marker (peek it) or the end. */
static int
peek_next (struct vmdk_stream_image *v)
{
  const char *path = v->base.path;

  while (!v->have_next && !v->ended) {
    uint8_t m[VMDK_GRAIN_MARKER_SIZE];
    uint64_t at = image_stream_position (v->s), value;
    uint32_t size;
    size_t got, n = 0;

    /* The end of the stream where a marker would start is the end. */
    while (n < sizeof m) {
      if (image_stream_read_some (v->s, m + n, sizeof m - n, &got) == -1)
        return -1;
      if (got == 0)
        break;
      n += got;
    }
    if (n == 0) {
      v->ended = true;
      break;
    }
    if (n < sizeof m)
      return ferry_error (EINVAL, "%s: the stream ends inside the marker at "
                          "its offset %" PRIu64, path, at);
    value = get_le64 (m);
    size = get_le32 (m + 8);
    if (size == 0) {
      /* A metadata marker: its type, the rest of its sector, and VALUE
       * sectors of what it announces. */
      uint8_t type[4];
      if (image_stream_read (v->s, type, 4) == -1)
        return -1;
      if (get_le32 (type) == VMDK_MARKER_EOS) {
        v->ended = true;
        break;
      }
      if (get_le32 (type) > VMDK_MARKER_FOOTER)
        return ferry_error (EINVAL, "%s: the marker at offset %" PRIu64 " of "
                            "the stream has type %" PRIu32 ", which no "
                            "stream holds", path, at, get_le32 (type));
      if (value > (UINT64_MAX >> 9) ||
          skip_to_sector (v, sizeof m + 4) == -1 ||
          image_stream_read (v->s, NULL, value * VMDK_SECTOR) == -1)
        return -1;
      continue;
    }
    if (size > VMDK_MAX_COMPRESSED_GRAIN)
      return ferry_error (EINVAL, "%s: the grain marker at offset %" PRIu64
                          " of the stream gives %" PRIu32 " bytes of "
                          "compressed data (at most %u)", path, at, size,
                          VMDK_MAX_COMPRESSED_GRAIN);
    if (value > (v->base.size - 1) / VMDK_SECTOR ||
        value % (v->grain_size / VMDK_SECTOR) != 0)
      return ferry_error (EINVAL, "%s: the grain marker at offset %" PRIu64
                          " of the stream is for sector %" PRIu64 ", which "
                          "is %s", path, at, value,
                          value > (v->base.size - 1) / VMDK_SECTOR ?
                          "past the end of the disk" :
                          "not the start of a grain");
    if (value * VMDK_SECTOR < v->passed)
      return ferry_error (ESPIPE, "%s: the grain for sector %" PRIu64 " comes "
                          "after sector %" PRIu64 " was passed: the stream "
                          "is not in order (note 1); unpack it (gunzip) "
                          "first", path, value, v->passed / VMDK_SECTOR);
    v->have_next = true;
    v->next_start = value * VMDK_SECTOR;
    v->next_csize = size;
    v->next_marker_at = at;
  }
  return 0;
}

/* Inflate the peeked grain into v->grain (SKIP: read past it instead). */
static int
take_next (struct vmdk_stream_image *v, bool skip)
{
  size_t got = 0;
  enum libdeflate_result r;

  v->have_next = false;
  if (skip)
    return image_stream_read (v->s, NULL, v->next_csize) == -1 ||
      skip_to_sector (v, VMDK_GRAIN_MARKER_SIZE + v->next_csize) == -1
      ? -1 : 0;
  if (image_stream_read (v->s, v->cbuf, v->next_csize) == -1 ||
      skip_to_sector (v, VMDK_GRAIN_MARKER_SIZE + v->next_csize) == -1)
    return -1;
  r = libdeflate_zlib_decompress (v->d, v->cbuf, v->next_csize, v->grain,
                                  v->grain_size, &got);
  if (r != LIBDEFLATE_SUCCESS)
    return ferry_error (EINVAL, "%s: the grain at offset %" PRIu64 " of the "
                        "stream (guest sector %" PRIu64 ") %s",
                        v->base.path, v->next_marker_at,
                        v->next_start / VMDK_SECTOR,
                        r == LIBDEFLATE_INSUFFICIENT_SPACE ?
                        "inflates to more than a grain" :
                        "is not valid zlib data");
  if (got < v->grain_size)
    memset (v->grain + got, 0, v->grain_size - got);
  v->grain_start = v->next_start;
  return 0;
}

static int
vmdk_stream_pread (struct ferry_image *img, void *buf, size_t count,
                   uint64_t offset)
{
  struct vmdk_stream_image *v = (struct vmdk_stream_image *) img;
  uint8_t *p = buf;
  int r = 0;

  pthread_mutex_lock (&v->lock);
  if (offset < v->passed &&
      !(v->grain_start != UINT64_MAX && offset >= v->grain_start)) {
    r = ferry_error (ESPIPE, "%s: read at offset %" PRIu64 " behind the "
                     "stream (at %" PRIu64 "): it is read once, in order",
                     img->path, offset, v->passed);
    goto out;
  }
  while (count > 0) {
    size_t n;

    if (v->grain_start != UINT64_MAX && offset >= v->grain_start &&
        offset < v->grain_start + v->grain_size) {
      n = MIN (count, v->grain_start + v->grain_size - offset);
      memcpy (p, v->grain + (offset - v->grain_start), n);
    }
    else {
      if ((r = peek_next (v)) == -1)
        goto out;
      if (v->have_next && v->next_start + v->grain_size <= offset) {
        /* A grain this read jumps over. */
        if ((r = take_next (v, true)) == -1)
          goto out;
        continue;
      }
      if (v->have_next && v->next_start <= offset) {
        if ((r = take_next (v, false)) == -1)
          goto out;
        continue;
      }
      /* Zeroes up to the next grain, or to the end. */
      n = v->have_next ? MIN (count, v->next_start - offset) : count;
      memset (p, 0, n);
    }
    p += n;
    offset += n;
    count -= n;
    v->passed = MAX (v->passed, offset);
  }
 out:
  pthread_mutex_unlock (&v->lock);
  return r;
}

/* Extents, as far as the stream shows them (note 2). */
static int
vmdk_stream_extents (struct ferry_image *img, uint64_t offset,
                     uint64_t length, struct ferry_extent_list *list)
{
  struct vmdk_stream_image *v = (struct vmdk_stream_image *) img;
  uint64_t end = offset + length, zero_end = offset;
  int r = 0;

  pthread_mutex_lock (&v->lock);
  if (offset >= v->passed &&
      !(v->grain_start != UINT64_MAX && offset < v->grain_start +
        v->grain_size)) {
    r = peek_next (v);
    if (r == 0 && v->ended)
      zero_end = end;
    else if (r == 0 && v->have_next && v->next_start > offset)
      zero_end = MIN (end, v->next_start);
  }
  pthread_mutex_unlock (&v->lock);
  if (r == -1)
    return -1;
  if (zero_end > offset &&
      ferry_extent_list_append (list, offset, zero_end - offset,
                                FERRY_EXTENT_ZERO | FERRY_EXTENT_HOLE) == -1)
    return -1;
  return zero_end < end ? ferry_extent_list_append (list, zero_end,
                                                    end - zero_end, 0) : 0;
}

/* After the copy: the markers left, to the end-of-stream marker, then
 * whatever the stream holds after it, so that the gzip trailers are
 * checked (stream.c, note 4). */
static int
vmdk_stream_read_to_end (struct ferry_image *img)
{
  struct vmdk_stream_image *v = (struct vmdk_stream_image *) img;
  size_t got = 1;
  int r = 0;

  pthread_mutex_lock (&v->lock);
  while (r == 0 && !v->ended) {
    r = peek_next (v);
    if (r == 0 && v->have_next)
      r = take_next (v, true);
  }
  while (r == 0 && got > 0)
    r = image_stream_read_some (v->s, NULL, 1 << 20, &got);
  pthread_mutex_unlock (&v->lock);
  return r;
}

static int
vmdk_stream_close (struct ferry_image *img)
{
  struct vmdk_stream_image *v = (struct vmdk_stream_image *) img;

  image_stream_free (v->s);
  libdeflate_free_decompressor (v->d);
  free (v->grain);
  free (v->cbuf);
  pthread_mutex_destroy (&v->lock);
  free (v);
  return 0;
}

static int
vmdk_stream_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  struct vmdk_stream_image *v = (struct vmdk_stream_image *) img;

  info->cluster_size = v->grain_size;
  if (image_fact_string (img, "create-type", "streamOptimized") == -1)
    return -1;
  return image_fact_string (img, "compression", "gzip");
}

/* The image the stream makes; only vmdk_open_stream makes one. */
static const struct image_driver vmdk_stream_driver = {
  .name = "vmdk",
  .pread = vmdk_stream_pread,
  .read_to_end = vmdk_stream_read_to_end,
  .extents = vmdk_stream_extents,
  .close = vmdk_stream_close,
  .describe = vmdk_stream_describe,
};

struct ferry_image *
vmdk_open_stream (const char *path, struct image_stream *s,
                  uint64_t size_hint, const struct open_args *args)
{
  struct vmdk_stream_image *v = calloc (1, sizeof *v);
  uint8_t hb[VMDK_SECTOR];
  struct vmdk_sparse_header h;

  if (v == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    image_stream_free (s);
    return NULL;
  }
  v->s = s;
  v->grain_start = UINT64_MAX;
  pthread_mutex_init (&v->lock, NULL);
  v->base.driver = &vmdk_stream_driver;
  v->base.readonly = true;
  v->base.sequential = true;
  v->base.path = strdup (path);
  if (v->base.path == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    goto err;
  }
  if (image_stream_read (s, hb, sizeof hb) == -1)
    goto err;
  if (get_le32 (hb) != VMDK4_MAGIC) {
    ferry_error (ENOTSUP, "%s: the gzip-compressed VMDK at offset %" PRIu64
                 " is not a hosted sparse extent; only streamOptimized ones "
                 "are read as streams: unpack it first", path,
                 args->window_start);
    goto err;
  }
  vmdk_header_decode (hb, &h);
  if (!(h.flags & VMDK_FLAG_MARKERS) || !(h.flags & VMDK_FLAG_COMPRESSED)) {
    ferry_error (ENOTSUP, "%s: the gzip-compressed VMDK at offset %" PRIu64
                 " is not streamOptimized (no grain markers), and its grain "
                 "tables cannot be read from a stream: unpack it first",
                 path, args->window_start);
    goto err;
  }
  if (h.capacity == 0 || h.capacity > VMDK_MAX_SIZE / VMDK_SECTOR ||
      !is_power_of_2 (h.grain) || h.grain > VMDK_MAX_GRAIN_SECTORS ||
      h.grain * VMDK_SECTOR > VMDK_MAX_COMPRESSED_GRAIN ||
      h.overhead == 0 || h.overhead > (UINT64_MAX >> 10)) {
    ferry_error (EINVAL, "%s: the gzip-compressed VMDK at offset %" PRIu64
                 ": header: capacity %" PRIu64 ", grain %" PRIu64 ", overhead "
                 "%" PRIu64 " sectors make no stream ferry reads", path,
                 args->window_start, h.capacity, h.grain, h.overhead);
    goto err;
  }
  v->base.size = h.capacity * VMDK_SECTOR;
  v->grain_size = h.grain * VMDK_SECTOR;
  v->grain = malloc (v->grain_size);
  v->cbuf = malloc (VMDK_MAX_COMPRESSED_GRAIN);
  v->d = libdeflate_alloc_decompressor ();
  if (v->grain == NULL || v->cbuf == NULL || v->d == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    goto err;
  }
  /* The descriptor and anything else before the first grain (qemu-img
   * puts its grain tables there); a stream too short for it says so. */
  if (image_stream_read (s, NULL, h.overhead * VMDK_SECTOR - sizeof hb) == -1)
    goto err;
  (void) size_hint;
  return &v->base;

 err:
  free (v->base.path);
  vmdk_stream_close (&v->base);
  return NULL;
}
