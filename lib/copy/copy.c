/* The copy engine: placeholder, serial, until the real one lands. */
#include <errno.h>
#include <stdlib.h>
#include <ferry/copy.h>
#include "../common/error.h"
#include "../common/util.h"

int
ferry_copy (struct ferry_image *src, struct ferry_image *dst,
            const struct ferry_copy_options *opts)
{
  uint64_t size = ferry_image_size (src), off;
  size_t bs = 1 << 20;
  char *buf = malloc (bs);

  if (!buf)
    return ferry_error (ENOMEM, "out of memory");
  for (off = 0; off < size; off += bs) {
    size_t n = MIN (bs, size - off);
    if (ferry_image_pread (src, buf, n, off) == -1 ||
        ferry_image_pwrite (dst, buf, n, off) == -1) {
      free (buf);
      return -1;
    }
  }
  free (buf);
  return ferry_image_flush (dst);
}
