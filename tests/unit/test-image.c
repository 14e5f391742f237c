/* Unit tests for lib/image: what the shell tests cannot reach through
 * the ferry binary.
 *
 * - raw zeroing falls back from punching a hole to FALLOC_FL_ZERO_RANGE
 *   to writing zeroes, and remembers what the file system refused.  No
 *   file system here refuses on demand, so this program defines its own
 *   fallocate(), which the raw driver (linked in statically) calls
 *   instead of the C library's; it counts the calls and refuses the modes
 *   a test asks it to, then hands the rest to the real one.
 * - a qcow2 L2 table that claims a cluster another one holds is reported
 *   the same way every time it is read, not as overlapping itself.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define SCRATCH_PREFIX "ferry-test-image"
#include "scratch-dir.h"

#include <ferry/image.h>
#include <ferry/error.h>

#include "common/util.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* ----- the fallocate() the raw driver calls here ----- */

/* What fallocate answers: 0 (pass to the real one), or an errno value
 * for punching holes and for zeroing ranges. */
static int punch_answer, zero_range_answer;
static int punch_calls, zero_range_calls;

int
fallocate (int fd, int mode, off_t offset, off_t len)
{
  static int (*real) (int, int, off_t, off_t);
  int answer = 0;

  if (real == NULL)
    real = (int (*) (int, int, off_t, off_t)) dlsym (RTLD_NEXT, "fallocate");
  if (mode & FALLOC_FL_PUNCH_HOLE) {
    punch_calls++;
    answer = punch_answer;
  }
  else if (mode & FALLOC_FL_ZERO_RANGE) {
    zero_range_calls++;
    answer = zero_range_answer;
  }
  if (answer) {
    errno = answer;
    return -1;
  }
  return real (fd, mode, offset, len);
}

/* Forget the counts and answer everything from the real fallocate. */
static void
reset_fallocate (void)
{
  punch_answer = zero_range_answer = 0;
  punch_calls = zero_range_calls = 0;
}

/* ----- helpers ----- */

/* A new raw image of 1 MiB at PATH, every byte 0xff and allocated. */
static struct ferry_image *
dirty_raw (const char *path)
{
  struct ferry_image *img = ferry_image_create (path, "raw", 1 * MiB, NULL);
  unsigned char *buf = malloc (1 * MiB);

  assert_non_null (img);
  assert_non_null (buf);
  memset (buf, 0xff, 1 * MiB);
  assert_int_equal (ferry_image_pwrite (img, buf, 1 * MiB, 0), 0);
  free (buf);
  return img;
}

/* Assert that [OFFSET, OFFSET+LEN) of IMG reads as zeroes and the bytes
 * on either side still hold 0xff. */
static void
assert_zeroed (struct ferry_image *img, uint64_t offset, size_t len)
{
  unsigned char *buf = malloc (len + 2);

  assert_non_null (buf);
  assert_int_equal (ferry_image_pread (img, buf, len + 2, offset - 1), 0);
  assert_int_equal (buf[0], 0xff);
  assert_true (is_zero (buf + 1, len));
  assert_int_equal (buf[len + 1], 0xff);
  free (buf);
}

/* ----- raw zeroing ----- */

/* Where the file system can, a zero that may trim punches a hole; one
 * that may not never does. */
static void
test_raw_zero_punches (void **state)
{
  char path[300];
  struct ferry_image *img = dirty_raw (tmp_path (path, sizeof path, "p.raw"));

  reset_fallocate ();
  assert_int_equal (ferry_image_zero (img, 64 * KiB, 128 * KiB,
                                      FERRY_ZERO_MAY_TRIM), 0);
  assert_int_equal (punch_calls, 1);
  assert_int_equal (zero_range_calls, 0);
  assert_zeroed (img, 128 * KiB, 64 * KiB);
  assert_int_equal (ferry_image_flush (img), 0);
  assert_true (is_hole (path, 128 * KiB, 64 * KiB));

  assert_int_equal (ferry_image_zero (img, 64 * KiB, 512 * KiB, 0), 0);
  assert_int_equal (punch_calls, 1);
  assert_zeroed (img, 512 * KiB, 64 * KiB);
  assert_int_equal (ferry_image_close (img), 0);
}

/* A file system that cannot punch holes: ZERO_RANGE instead, and the
 * refusal is remembered, so punching is not tried again. */
static void
test_raw_zero_no_punch (void **state)
{
  char path[300];
  struct ferry_image *img = dirty_raw (tmp_path (path, sizeof path, "n.raw"));

  reset_fallocate ();
  punch_answer = EOPNOTSUPP;
  assert_int_equal (ferry_image_zero (img, 64 * KiB, 128 * KiB,
                                      FERRY_ZERO_MAY_TRIM), 0);
  assert_int_equal (punch_calls, 1);
  assert_int_equal (zero_range_calls, 1);
  assert_zeroed (img, 128 * KiB, 64 * KiB);
  assert_int_equal (ferry_image_zero (img, 4 * KiB, 300 * KiB,
                                      FERRY_ZERO_MAY_TRIM), 0);
  assert_int_equal (punch_calls, 1);
  assert_int_equal (zero_range_calls, 2);
  assert_zeroed (img, 300 * KiB, 4 * KiB);
  assert_int_equal (ferry_image_close (img), 0);
}

/* Neither (ENOTSUP from one, ENOSYS from the other): zeroes are written,
 * and after the first request fallocate is not called at all. */
static void
test_raw_zero_by_writing (void **state)
{
  char path[300];
  struct ferry_image *img = dirty_raw (tmp_path (path, sizeof path, "w.raw"));

  reset_fallocate ();
  punch_answer = ENOTSUP;
  zero_range_answer = ENOSYS;
  assert_int_equal (ferry_image_zero (img, 200 * KiB, 100 * KiB + 7,
                                      FERRY_ZERO_MAY_TRIM), 0);
  assert_int_equal (punch_calls, 1);
  assert_int_equal (zero_range_calls, 1);
  assert_zeroed (img, 100 * KiB + 7, 200 * KiB);
  assert_int_equal (ferry_image_zero (img, 1000, 700 * KiB + 3,
                                      FERRY_ZERO_MAY_TRIM), 0);
  assert_int_equal (ferry_image_zero (img, 1000, 800 * KiB + 3, 0), 0);
  assert_int_equal (punch_calls, 1);
  assert_int_equal (zero_range_calls, 1);
  assert_zeroed (img, 700 * KiB + 3, 1000);
  assert_zeroed (img, 800 * KiB + 3, 1000);
  assert_int_equal (ferry_image_flush (img), 0);
  assert_false (is_hole (path, 200 * KiB, 4 * KiB));
  assert_int_equal (ferry_image_close (img), 0);
}

/* EINVAL refuses one request (a range a device will not take), not the
 * method: the next request tries punching again. */
static void
test_raw_zero_einval_not_remembered (void **state)
{
  char path[300];
  struct ferry_image *img = dirty_raw (tmp_path (path, sizeof path, "e.raw"));

  reset_fallocate ();
  punch_answer = EINVAL;
  assert_int_equal (ferry_image_zero (img, 64 * KiB, 0, FERRY_ZERO_MAY_TRIM),
                    0);
  assert_int_equal (punch_calls, 1);
  assert_int_equal (zero_range_calls, 1);
  punch_answer = 0;
  assert_int_equal (ferry_image_zero (img, 64 * KiB, 256 * KiB,
                                      FERRY_ZERO_MAY_TRIM), 0);
  assert_int_equal (punch_calls, 2);
  assert_int_equal (zero_range_calls, 1);
  assert_int_equal (ferry_image_flush (img), 0);
  assert_true (is_hole (path, 256 * KiB, 64 * KiB));
  assert_int_equal (ferry_image_close (img), 0);
}

/* Any other error (EIO) fails the request with a message naming the
 * file, the offset and what was tried. */
static void
test_raw_zero_error (void **state)
{
  char path[300], want[400];
  struct ferry_image *img = dirty_raw (tmp_path (path, sizeof path, "x.raw"));

  reset_fallocate ();
  punch_answer = EIO;
  assert_int_equal (ferry_image_zero (img, 4096, 8192, FERRY_ZERO_MAY_TRIM),
                    -1);
  assert_int_equal (ferry_get_errno (), EIO);
  snprintf (want, sizeof want, "%s: punching a hole of 4096 bytes at offset "
            "8192: %s", path, strerror (EIO));
  assert_string_equal (ferry_get_error (), want);
  reset_fallocate ();
  assert_int_equal (ferry_image_close (img), 0);
}

/* ----- qcow2 ----- */

/* Read a big-endian 64-bit number at OFFSET of the file FD. */
static uint64_t
read_be64 (int fd, uint64_t offset)
{
  uint64_t v;

  assert_int_equal (pread (fd, &v, 8, offset), 8);
  return be64toh (v);
}

/* An L2 entry that points at the data cluster of another: every read
 * of that table reports the same fault, naming the entry. */
static void
test_qcow2_bad_table_same_error (void **state)
{
  char path[300], first[1024];
  struct ferry_image *img;
  unsigned char *buf = malloc (128 * KiB);
  uint64_t l1_offset, l2_offset, entry0;
  int fd, i;

  /* Two data clusters, then entry 1 pointed at entry 0's cluster. */
  assert_non_null (buf);
  memset (buf, 0x5a, 128 * KiB);
  img = ferry_image_create (tmp_path (path, sizeof path, "bad.qcow2"),
                            "qcow2", 1 * MiB, "cluster_size=65536");
  assert_non_null (img);
  assert_int_equal (ferry_image_pwrite (img, buf, 128 * KiB, 0), 0);
  assert_int_equal (ferry_image_close (img), 0);
  fd = open (path, O_RDWR);
  assert_true (fd >= 0);
  l1_offset = read_be64 (fd, 40);
  l2_offset = read_be64 (fd, l1_offset) & 0x00fffffffffffe00ull;
  entry0 = htobe64 (read_be64 (fd, l2_offset));
  assert_int_equal (pwrite (fd, &entry0, 8, l2_offset + 8), 8);
  close (fd);

  img = ferry_image_open (path, "qcow2", 0);
  assert_non_null (img);
  for (i = 0; i < 3; i++) {
    assert_int_equal (ferry_image_pread (img, buf, 4096, 0), -1);
    assert_int_equal (ferry_get_errno (), EINVAL);
    if (i == 0) {
      snprintf (first, sizeof first, "%s", ferry_get_error ());
      assert_non_null (strstr (first, "L2 entry 1 of the L2 table of L1 "
                               "entry 0 points to the host cluster at "
                               "offset 0x"));
      assert_non_null (strstr (first, "which is also a data cluster of "
                               "another L2 entry"));
    }
    else
      assert_string_equal (ferry_get_error (), first);
  }
  assert_int_equal (ferry_image_close (img), 0);
  free (buf);
}

/* Run every test, with the temporary directory around them. */
int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_raw_zero_punches),
    cmocka_unit_test (test_raw_zero_no_punch),
    cmocka_unit_test (test_raw_zero_by_writing),
    cmocka_unit_test (test_raw_zero_einval_not_remembered),
    cmocka_unit_test (test_raw_zero_error),
    cmocka_unit_test (test_qcow2_bad_table_same_error),
  };
  return cmocka_run_group_tests (tests, make_scratch_dir, remove_scratch_dir);
}
