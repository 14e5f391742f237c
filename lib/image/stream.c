/* Images read from a gzip stream, start to end (ferry_image_open_stream):
 * a disk an OVA holds gzip-compressed (ovf:compression="gzip") cannot be
 * read at random without inflating it somewhere first; instead it is
 * inflated as the copy reads it, and never written out.
 *
 * image.c makes the stream (the compressed bytes are a window of a file),
 * probes the format from its first bytes, and hands the stream to the
 * driver's open_stream, which then pulls bytes in order with
 * image_stream_read.  raw's open_stream is here: the disk is the stream
 * itself.
 *
 * NOTES ON THE DESIGN
 *
 * 1. The image is sequential (ferry_image_is_sequential): reads must come
 *    at offsets that never go back.  The copy engine reads such a source
 *    with one worker, in order.  A read behind the stream fails (ESPIPE)
 *    rather than starting over, which would hide a caller reading at
 *    random behind a pass over the whole file each time.
 *
 * 2. Memory is bounded by one input buffer (STREAM_IN_SIZE, or the
 *    compressed bytes when they are fewer) and the first PROBE_HEAD_SIZE
 *    bytes kept for probing, whatever the disk's size.
 *
 * 3. Concatenated gzip members (what pigz and `cat a.gz b.gz` make) are
 *    one stream.  After the last member only zero bytes may follow (the
 *    padding some writers leave, as gzip(1) allows); anything else is an
 *    error, not a member to guess at.
 *
 * 4. A stream is only proven whole at its end: zlib checks each member's
 *    trailer (the CRC-32 and the length, ISIZE, of its data) when the
 *    member ends, and the last member's end is the stream's.  So a reader
 *    never stops at the size it was told: ferry_image_read_to_end reads
 *    what the copy left (for raw, nothing may be left past the image's
 *    size), and ferry_image_measure_stream reads a raw disk's stream
 *    through once, before the copy, to learn its size, which only the
 *    stream's end tells.  Neither keeps more than one buffer (note 2); the
 *    caller bounds the time a small file full of compressed zeroes could
 *    take (a decompression bomb) by the size it lets the stream reach.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "internal.h"
#include "../common/stop.h"
#include "../common/util.h"

/* Compressed bytes read from the file at a time, and uncompressed bytes
 * skipped at a time. */
#define STREAM_IN_SIZE (1u << 20)
#define STREAM_SINK_SIZE (1u << 20)

struct image_stream {
  char *path;                  /* for messages */
  int fd;                      /* owned */
  uint64_t start, length;      /* the compressed bytes in the file */
  uint64_t in_pos;             /* compressed bytes given to zlib */
  uint64_t pos;                /* uncompressed bytes delivered */
  z_stream z;
  bool z_ready;
  bool ended;                  /* the last gzip member ended */
  unsigned char *in;
  unsigned char head[PROBE_HEAD_SIZE];
  size_t head_len;             /* the first bytes, served again after the
                                  probe (note 2) */
  uint64_t inflated;           /* uncompressed bytes out of zlib so far */
  unsigned members;            /* gzip members that ended, trailer checked */
  uint64_t member_start;       /* INFLATED when the current member began */
  unsigned char *sink;         /* where skipped bytes go, when asked */
};

void
image_stream_free (struct image_stream *s)
{
  if (s == NULL)
    return;
  if (s->z_ready)
    inflateEnd (&s->z);
  if (s->fd >= 0)
    close (s->fd);
  free (s->in);
  free (s->sink);
  free (s->path);
  free (s);
}

const char *
image_stream_path (const struct image_stream *s)
{
  return s->path;
}

uint64_t
image_stream_position (const struct image_stream *s)
{
  return s->pos;
}

/* Give zlib the next compressed bytes, when it has none left and the
 * stream has more. */
static int
fill_input (struct image_stream *s)
{
  size_t n;

  if (s->z.avail_in > 0 || s->in_pos == s->length)
    return 0;
  n = MIN ((uint64_t) STREAM_IN_SIZE, s->length - s->in_pos);
  if (full_pread (s->fd, s->in, n, s->start + s->in_pos) == -1)
    return ferry_error_errno (errno, "%s: read at offset %" PRIu64,
                              s->path, s->start + s->in_pos);
  s->in_pos += n;
  s->z.next_in = s->in;
  s->z.avail_in = n;
  return 0;
}

/* A member ended, its trailer checked by zlib: start the next one, or
 * end the stream at zero padding or at the end of the bytes (note 3). */
static int
after_member (struct image_stream *s)
{
  bool padding = false;

  s->members++;
  for (;;) {
    uint64_t at;

    if (fill_input (s) == -1)
      return -1;
    if (s->z.avail_in == 0) {
      s->ended = true;
      return 0;
    }
    at = s->start + s->in_pos - s->z.avail_in;
    if (!padding && s->z.next_in[0] == 0x1f) {
      if (inflateReset (&s->z) != Z_OK)
        return ferry_error (EIO, "%s: gzip stream at offset %" PRIu64
                            ": cannot restart", s->path, s->start);
      s->member_start = s->inflated;
      return 0;
    }
    if (s->z.next_in[0] != 0)
      return ferry_error (EINVAL, "%s: the gzip stream at offset %" PRIu64
                          " holds bytes at offset %" PRIu64 ", after its "
                          "member %u, that are no gzip member", s->path,
                          s->start, at, s->members);
    padding = true;
    while (s->z.avail_in > 0 && s->z.next_in[0] == 0) {
      s->z.next_in++;
      s->z.avail_in--;
    }
  }
}

/* The error for zlib's answer R: a trailer that does not match (note 4)
 * or damaged data. */
static int
stream_error (struct image_stream *s, int r)
{
  const char *msg = s->z.msg ? s->z.msg : "zlib error";
  uint64_t member_bytes = s->inflated - s->member_start;

  if (r == Z_DATA_ERROR && strcmp (msg, "incorrect data check") == 0)
    return ferry_error (EINVAL, "%s: the gzip stream at offset %" PRIu64
                        ": member %u's trailer gives a CRC-32 that its %"
                        PRIu64 " bytes of data do not have", s->path,
                        s->start, s->members + 1, member_bytes);
  if (r == Z_DATA_ERROR && strcmp (msg, "incorrect length check") == 0)
    return ferry_error (EINVAL, "%s: the gzip stream at offset %" PRIu64
                        ": member %u's trailer gives a length (ISIZE) "
                        "other than its %" PRIu64 " bytes of data", s->path,
                        s->start, s->members + 1, member_bytes);
  return ferry_error (EINVAL, "%s: the gzip stream at offset %" PRIu64
                      " is damaged after %" PRIu64 " bytes of data (%s)",
                      s->path, s->start, s->inflated, msg);
}

/* Inflate up to COUNT bytes into BUF; *GOT is how many came (0 at the
 * end of the stream). */
static int
inflate_some (struct image_stream *s, unsigned char *buf, size_t count,
              size_t *got)
{
  *got = 0;
  while (*got == 0 && !s->ended) {
    int r;

    if (fill_input (s) == -1)
      return -1;
    if (s->z.avail_in == 0)
      return ferry_error (EIO, "%s: the gzip stream at offset %" PRIu64
                          " is cut short after %" PRIu64 " bytes of data",
                          s->path, s->start, s->inflated);
    s->z.next_out = buf;
    s->z.avail_out = MIN (count, (size_t) UINT32_MAX);
    r = inflate (&s->z, Z_NO_FLUSH);
    *got = s->z.next_out - buf;
    s->inflated += *got;
    if (r == Z_STREAM_END) {
      if (after_member (s) == -1)
        return -1;
    }
    else if (r != Z_OK && !(r == Z_BUF_ERROR && *got > 0))
      return stream_error (s, r);
  }
  return 0;
}

int
image_stream_read_some (struct image_stream *s, void *buf, size_t count,
                        size_t *got)
{
  unsigned char *p = buf;
  size_t n = 0;

  *got = 0;
  /* The probed head first. */
  if (s->pos < s->head_len) {
    n = MIN (count, s->head_len - s->pos);
    if (p)
      memcpy (p, s->head + s->pos, n);
    s->pos += n;
    *got = n;
    return 0;
  }
  if (p == NULL) {
    if (s->sink == NULL && (s->sink = malloc (STREAM_SINK_SIZE)) == NULL)
      return ferry_error (ENOMEM, "out of memory");
    if (inflate_some (s, s->sink, MIN (count, STREAM_SINK_SIZE), &n) == -1)
      return -1;
  }
  else if (inflate_some (s, p, count, &n) == -1)
    return -1;
  s->pos += n;
  *got = n;
  return 0;
}

int
image_stream_read (struct image_stream *s, void *buf, size_t count)
{
  unsigned char *p = buf;

  while (count > 0) {
    size_t got;
    if (image_stream_read_some (s, p, count, &got) == -1)
      return -1;
    if (got == 0)
      return ferry_error (EIO, "%s: the gzip stream at offset %" PRIu64
                          " ends at byte %" PRIu64 " of its data, inside "
                          "the image", s->path, s->start, s->pos);
    count -= got;
    if (p)
      p += got;
  }
  return 0;
}

struct image_stream *
image_stream_open (const char *path, int fd, uint64_t start, uint64_t length)
{
  struct image_stream *s = calloc (1, sizeof *s);
  size_t in_size = MIN ((uint64_t) STREAM_IN_SIZE, length + 1);

  if (s == NULL || (s->path = strdup (path)) == NULL ||
      (s->in = malloc (in_size)) == NULL) {
    ferry_error (ENOMEM, "out of memory");
    if (s)
      s->fd = -1;
    image_stream_free (s);
    close (fd);
    return NULL;
  }
  s->fd = fd;
  s->start = start;
  s->length = length;
  /* 16 + MAX_WBITS: a gzip header and trailer, checked by zlib. */
  if (inflateInit2 (&s->z, 16 + MAX_WBITS) != Z_OK) {
    ferry_error (ENOMEM, "%s: out of memory for zlib", path);
    image_stream_free (s);
    return NULL;
  }
  s->z_ready = true;
  (void) posix_fadvise (fd, start, length, POSIX_FADV_SEQUENTIAL);

  /* Keep the first bytes for the probe, to be read again (note 2). */
  while (s->head_len < sizeof s->head) {
    size_t got;
    if (inflate_some (s, s->head + s->head_len,
                      sizeof s->head - s->head_len, &got) == -1) {
      image_stream_free (s);
      return NULL;
    }
    if (got == 0)
      break;
    s->head_len += got;
  }
  return s;
}

const unsigned char *
image_stream_head (const struct image_stream *s, size_t *len)
{
  *len = s->head_len;
  return s->head;
}

/* --- raw over a stream -------------------------------------------------- */

struct stream_raw {
  struct ferry_image base;     /* must be first */
  struct image_stream *s;
  pthread_mutex_t lock;        /* reads are one at a time, in order */
};

/* Read guest bytes: skip to OFFSET, then take COUNT bytes; the declared
 * size may run past the stream, and what lies there reads as zeroes. */
static int
stream_raw_pread (struct ferry_image *img, void *buf, size_t count,
                  uint64_t offset)
{
  struct stream_raw *h = (struct stream_raw *) img;
  unsigned char *p = buf;
  uint64_t pos;
  int r = 0;

  pthread_mutex_lock (&h->lock);
  pos = image_stream_position (h->s);
  if (offset < pos) {
    r = ferry_error (ESPIPE, "%s: read at offset %" PRIu64 " behind the "
                     "gzip stream (at %" PRIu64 "): it is read once, in "
                     "order", img->path, offset, pos);
    goto out;
  }
  while (pos < offset) {
    size_t got;
    if ((r = image_stream_read_some (h->s, NULL, MIN (offset - pos,
                                                      (uint64_t) 1 << 30),
                                     &got)) == -1)
      goto out;
    if (got == 0)
      break;
    pos += got;
  }
  while (count > 0) {
    size_t got = 0;
    if (pos == offset &&
        (r = image_stream_read_some (h->s, p, count, &got)) == -1)
      goto out;
    if (got == 0) {
      memset (p, 0, count);   /* past the stream's end */
      break;
    }
    p += got;
    count -= got;
    offset += got;
    pos += got;
  }
 out:
  pthread_mutex_unlock (&h->lock);
  return r;
}

/* What is left after the copy: nothing past the image's size, then the
 * stream's end (note 4). */
static int
stream_raw_read_to_end (struct ferry_image *img)
{
  struct stream_raw *h = (struct stream_raw *) img;
  uint64_t pos;
  size_t got = 1;
  int r = 0;

  pthread_mutex_lock (&h->lock);
  for (pos = image_stream_position (h->s); pos < img->size && got > 0;
       pos += got)
    if ((r = image_stream_read_some (h->s, NULL, MIN (img->size - pos,
                                                      (uint64_t) 1 << 30),
                                     &got)) == -1)
      goto out;
  if ((r = image_stream_read_some (h->s, NULL, 1, &got)) == 0 && got > 0)
    r = ferry_error (EFBIG, "%s: the gzip-compressed raw disk at offset %"
                     PRIu64 " holds more than the %" PRIu64 " bytes taken "
                     "as its size", img->path, h->s->start, img->size);
 out:
  pthread_mutex_unlock (&h->lock);
  return r;
}

static int
stream_raw_close (struct ferry_image *img)
{
  struct stream_raw *h = (struct stream_raw *) img;

  image_stream_free (h->s);
  pthread_mutex_destroy (&h->lock);
  free (h);
  return 0;
}

static int
stream_raw_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  struct stream_raw *h = (struct stream_raw *) img;

  info->allocated = h->s->length;
  return image_fact_string (img, "compression", "gzip");
}

static const struct image_driver stream_raw_driver = {
  .name = "raw",
  .pread = stream_raw_pread,
  .read_to_end = stream_raw_read_to_end,
  .close = stream_raw_close,
  .describe = stream_raw_describe,
};

struct ferry_image *
raw_open_stream (const char *path, struct image_stream *s, uint64_t size_hint,
                 const struct open_args *args)
{
  struct stream_raw *h;

  h = calloc (1, sizeof *h);
  if (h == NULL) {
    ferry_error (ENOMEM, "out of memory");
    image_stream_free (s);
    return NULL;
  }
  h->base.driver = &stream_raw_driver;
  h->base.readonly = true;
  h->base.sequential = true;
  /* The stream's own size is known only at its end (note 4). */
  h->base.size = size_hint;
  h->base.path = strdup (path);
  h->s = s;
  pthread_mutex_init (&h->lock, NULL);
  if (h->base.path == NULL) {
    ferry_error (ENOMEM, "out of memory");
    stream_raw_close (&h->base);
    return NULL;
  }
  (void) args;
  return &h->base;
}

/* --- measuring a stream ------------------------------------------------- */

/* Bytes inflated at a time while measuring, and the blocks whose zeroes
 * are counted as holes (as the copy engine's). */
#define MEASURE_BUFFER (256u << 10)
#define MEASURE_BLOCK 4096u

int
ferry_image_measure_stream (const char *path, uint64_t offset,
                            uint64_t length, uint64_t max,
                            uint64_t *size, uint64_t *data,
                            void (*progress) (uint64_t done, void *opaque),
                            void *opaque)
{
  struct ferry_image *img;
  struct image_stream *st;
  unsigned char *buf;
  uint64_t pos = 0, nonzero = 0;
  int r = -1;

  /* Opened as raw, whatever it holds: only its bytes are counted. */
  img = ferry_image_open_stream (path, "raw", offset, length, 0, 0);
  if (img == NULL)
    return -1;
  st = ((struct stream_raw *) img)->s;
  buf = malloc (MEASURE_BUFFER);
  if (buf == NULL) {
    ferry_error (ENOMEM, "out of memory");
    goto out;
  }
  for (;;) {
    size_t len = 0, got = 1, i;

    /* A whole buffer, or what is left, so blocks fall where the disk's
     * do. */
    if (stop_requested ()) {
      ferry_error (EINTR, "%s: interrupted while reading the gzip stream at "
                   "offset %" PRIu64 " for its size", path, offset);
      goto out;
    }
    while (len < MEASURE_BUFFER && got > 0) {
      if (image_stream_read_some (st, buf + len, MEASURE_BUFFER - len,
                                  &got) == -1)
        goto out;
      len += got;
    }
    if (len > max - MIN (pos, max)) {
      ferry_error (EFBIG, "%s: the gzip stream at offset %" PRIu64 " holds "
                   "more than %" PRIu64 " bytes", path, offset, max);
      goto out;
    }
    for (i = 0; i < len; i += MEASURE_BLOCK) {
      size_t n = MIN (len - i, (size_t) MEASURE_BLOCK);
      if (!is_zero (buf + i, n))
        nonzero += n;
    }
    pos += len;
    if (progress)
      progress (st->in_pos - st->z.avail_in, opaque);
    if (len < MEASURE_BUFFER)
      break;
  }
  *size = pos;
  *data = nonzero;
  r = 0;
 out:
  free (buf);
  ferry_image_close (img);
  return r;
}
