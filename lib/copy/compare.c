/* Comparing the guest-visible contents of two images (ferry compare).
 *
 * Both images' extents are walked together; a range that is known zero
 * in both is skipped unread, a range known zero in one is read only from
 * the other and tested for zeroes, and everything else is read from both
 * and compared.  Past the end of the shorter image the longer one must
 * read as zeroes, as qemu-img compare (without --strict) decides.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/copy.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "../common/stop.h"
#include "../common/util.h"

#define COMPARE_CHUNK (4u << 20)

/* Flags of IMG at OFFSET and how far they hold (at most MAX bytes). */
static int
extent_at (struct ferry_image *img, uint64_t offset, uint64_t max,
           struct ferry_extent_list *list, uint64_t *len, bool *zero)
{
  list->len = 0;
  if (ferry_image_extents (img, offset, max, list) == -1)
    return -1;
  *len = MIN (list->ptr[0].offset + list->ptr[0].length - offset, max);
  *zero = (list->ptr[0].flags & FERRY_EXTENT_ZERO) != 0;
  return 0;
}

/* Index of the first non-zero byte in BUF, which is known not all zero. */
static size_t
first_nonzero (const unsigned char *buf, size_t len)
{
  size_t i;

  for (i = 0; i < len && buf[i] == 0; i++)
    ;
  return i;
}

/* Index of the first byte where A and B differ (they are known to). */
static size_t
first_difference (const unsigned char *a, const unsigned char *b, size_t len)
{
  size_t i;

  for (i = 0; i < len && a[i] == b[i]; i++)
    ;
  return i;
}

int
ferry_compare (struct ferry_image *a, struct ferry_image *b, unsigned threads,
               uint64_t *first_diff, bool *size_differs)
{
  uint64_t size_a = ferry_image_size (a), size_b = ferry_image_size (b);
  uint64_t common = MIN (size_a, size_b), end = MAX (size_a, size_b);
  struct ferry_extent_list la = { 0 }, lb = { 0 };
  CLEANUP_FREE unsigned char *buf_a = malloc (COMPARE_CHUNK);
  CLEANUP_FREE unsigned char *buf_b = malloc (COMPARE_CHUNK);
  uint64_t offset = 0;
  int ret = -1;

  *size_differs = size_a != size_b;
  *first_diff = 0;
  if (buf_a == NULL || buf_b == NULL)
    return ferry_error (ENOMEM, "out of memory");

  while (offset < end) {
    uint64_t len_a, len_b, n;
    bool zero_a, zero_b;

    if (stop_requested ()) {
      ferry_error (EINTR, "interrupted");
      goto out;
    }
    /* Past the end of one image it reads as zeroes. */
    if (offset < size_a) {
      if (extent_at (a, offset, MIN (size_a - offset, COMPARE_CHUNK), &la,
                     &len_a, &zero_a) == -1)
        goto out;
    }
    else {
      len_a = end - offset;
      zero_a = true;
    }
    if (offset < size_b) {
      if (extent_at (b, offset, MIN (size_b - offset, COMPARE_CHUNK), &lb,
                     &len_b, &zero_b) == -1)
        goto out;
    }
    else {
      len_b = end - offset;
      zero_b = true;
    }
    n = MIN (MIN (len_a, len_b), COMPARE_CHUNK);
    if (offset < common)
      n = MIN (n, common - offset);

    if (zero_a && zero_b)
      ;
    else if (zero_a || zero_b) {
      struct ferry_image *img = zero_a ? b : a;
      if (ferry_image_pread (img, buf_a, n, offset) == -1)
        goto out;
      if (!is_zero (buf_a, n)) {
        *first_diff = offset + first_nonzero (buf_a, n);
        ret = 1;
        goto out;
      }
    }
    else {
      if (ferry_image_pread (a, buf_a, n, offset) == -1 ||
          ferry_image_pread (b, buf_b, n, offset) == -1)
        goto out;
      if (memcmp (buf_a, buf_b, n) != 0) {
        *first_diff = offset + first_difference (buf_a, buf_b, n);
        ret = 1;
        goto out;
      }
    }
    offset += n;
  }
  ret = 0;

 out:
  ferry_extent_list_free (&la);
  ferry_extent_list_free (&lb);
  return ret;
}
