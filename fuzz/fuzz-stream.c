/* libFuzzer harness for images read as gzip streams
 * (ferry_image_open_stream: a disk an OVA holds with
 * ovf:compression="gzip").  An input is the uncompressed file, which the
 * harness gzips into its memfd, so the fuzzer mutates what the stream
 * readers parse (a streamOptimized VMDK's markers, grains and metadata;
 * raw) rather than the deflate layer zlib already guards; but an input
 * that starts with gzip's magic (1f 8b) is the gzip stream itself, so that
 * what lies around the members (their trailers, padding, garbage, members
 * cut short) reaches the stream's own end handling.  The
 * stream is measured (ferry_image_measure_stream, as the plan measures a
 * raw disk); then the image is probed, read from start to end within a
 * budget as the copy engine reads a sequential source (extents, then the
 * data they report), read to its end (ferry_image_read_to_end, as the
 * copy ends), and closed.
 */
#include <string.h>

#include <zlib.h>

#include "fuzz-common.h"

#define STREAM_READ_LIMIT (4u << 20)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* DATA gzip-compressed into a buffer the caller frees; NULL on failure. */
static uint8_t *
gzip (const uint8_t *data, size_t size, size_t *out_len)
{
  z_stream z;
  uint8_t *out;
  size_t cap;

  memset (&z, 0, sizeof z);
  if (deflateInit2 (&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return NULL;
  cap = deflateBound (&z, size) + 64;
  out = malloc (cap);
  if (out == NULL) {
    deflateEnd (&z);
    return NULL;
  }
  z.next_in = (uint8_t *) data;
  z.avail_in = size;
  z.next_out = out;
  z.avail_out = cap;
  if (deflate (&z, Z_FINISH) != Z_STREAM_END) {
    deflateEnd (&z);
    free (out);
    return NULL;
  }
  *out_len = cap - z.avail_out;
  deflateEnd (&z);
  return out;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static uint8_t buf[1 << 16];
  struct ferry_extent_list list = { 0 };
  struct ferry_image *img;
  uint64_t pos = 0, end, budget = STREAM_READ_LIMIT, msize, mdata;
  size_t len, i, calls = 0;
  uint8_t *gz;
  const char *path;

  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
    path = fuzz_input_path (data, size);
    len = size;
  }
  else {
    gz = gzip (data, size, &len);
    if (gz == NULL)
      abort ();
    path = fuzz_input_path (gz, len);
    free (gz);
  }
  /* What the plan does for a raw disk: the stream's size, bounded. */
  if (ferry_image_measure_stream (path, 0, len, 4 * STREAM_READ_LIMIT,
                                  &msize, &mdata, NULL, NULL) == 0 &&
      (msize > 4 * STREAM_READ_LIMIT || mdata > msize))
    abort ();
  /* A size hint as an OVF would give one, for raw. */
  img = ferry_image_open_stream (path, NULL, 0, len, size, 0);
  if (img == NULL)
    return 0;
  end = ferry_image_size (img);
  /* Zero runs cost no budget (a huge disk of few grains is fine), so the
   * number of extents calls is bounded too. */
  while (pos < end && budget > 0 && calls++ < 4096) {
    list.len = 0;
    if (ferry_image_extents (img, pos, end - pos, &list) == -1 ||
        list.len == 0)
      break;
    for (i = 0; i < list.len && budget > 0; i++) {
      const struct ferry_extent *e = &list.ptr[i];
      uint64_t at = MAX (e->offset, pos), stop = e->offset + e->length;
      if (stop <= at)
        continue;
      if (e->flags & FERRY_EXTENT_ZERO) {
        pos = stop;
        continue;
      }
      while (at < stop && budget > 0) {
        size_t n = MIN (stop - at, sizeof buf);
        if (ferry_image_pread (img, buf, n, at) == -1)
          goto out;
        at += n;
        budget -= MIN (budget, n);
      }
      pos = at;
    }
  }
  /* The copy's end: the rest of the stream and its trailers. */
  (void) ferry_image_read_to_end (img);
 out:
  ferry_extent_list_free (&list);
  ferry_image_close (img);
  return 0;
}
