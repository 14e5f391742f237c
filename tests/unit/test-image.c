/* Unit tests for lib/image: what the shell tests cannot reach through
 * the ferry binary.
 *
 * - the host-file layer's zeroing (hostfile.h), under raw and VHDX alike,
 *   falls back from punching a hole to FALLOC_FL_ZERO_RANGE to writing
 *   zeroes, remembers what the file system refused for good, and takes
 *   EINVAL as a refusal of that one request.  No file system here refuses
 *   on demand, so this program defines its own fallocate(), which the
 *   drivers (linked in statically) call instead of the C library's; it
 *   counts the calls and refuses the modes a test asks it to, then hands
 *   the rest to the real one.
 * - the image locks: a file locked as a QEMU writer locks it is refused
 *   for reading (EBUSY, the message naming the lock), read with
 *   FERRY_OPEN_SHARED, and shown by ferry_image_lock_query.
 * - a qcow2 L2 table that claims a cluster another one holds is reported
 *   the same way every time it is read, not as overlapping itself.
 * - an image opened without its missing backing file reads what it holds
 *   and fails, never reads zeroes, where it would read the backing file.
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
#include <zlib.h>

#define SCRATCH_PREFIX "ferry-test-image"
#include "scratch-dir.h"

#include <ferry/image.h>
#include <ferry/error.h>
#include <ferry/vmdk.h>

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

/* A new image of FORMAT and 1 MiB at PATH, every byte 0xff and
 * allocated. */
static struct ferry_image *
dirty_image (const char *path, const char *format, const char *options)
{
  struct ferry_image *img = ferry_image_create (path, format, 1 * MiB,
                                                options);
  unsigned char *buf = malloc (1 * MiB);

  assert_non_null (img);
  assert_non_null (buf);
  memset (buf, 0xff, 1 * MiB);
  assert_int_equal (ferry_image_pwrite (img, buf, 1 * MiB, 0), 0);
  free (buf);
  return img;
}

/* A new raw image of 1 MiB at PATH, every byte 0xff and allocated. */
static struct ferry_image *
dirty_raw (const char *path)
{
  return dirty_image (path, "raw", NULL);
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
            "0x2000: %s", path, strerror (EIO));
  assert_string_equal (ferry_get_error (), want);
  reset_fallocate ();
  assert_int_equal (ferry_image_close (img), 0);
}

/* ----- VHDX zeroing: the same layer ----- */

/* A present VHDX block is zeroed in the file by the same ladder: EINVAL
 * from punching falls back to ZERO_RANGE for that request only (the
 * VHDX driver's own ladder failed on it), ENOSYS from ZERO_RANGE is
 * remembered (it knew EOPNOTSUPP alone), and the zeroes land where they
 * should. */
static void
test_vhdx_zero_ladder (void **state)
{
  char path[300];
  struct ferry_image *img = dirty_image (tmp_path (path, sizeof path,
                                                   "z.vhdx"),
                                         "vhdx", "block_size=1M");

  reset_fallocate ();
  punch_answer = EINVAL;
  assert_int_equal (ferry_image_zero (img, 64 * KiB, 128 * KiB,
                                      FERRY_ZERO_MAY_TRIM), 0);
  assert_int_equal (punch_calls, 1);
  assert_int_equal (zero_range_calls, 1);
  assert_zeroed (img, 128 * KiB, 64 * KiB);

  punch_answer = ENOSYS;
  zero_range_answer = ENOSYS;
  assert_int_equal (ferry_image_zero (img, 8 * KiB, 400 * KiB,
                                      FERRY_ZERO_MAY_TRIM), 0);
  assert_int_equal (ferry_image_zero (img, 8 * KiB, 600 * KiB,
                                      FERRY_ZERO_MAY_TRIM), 0);
  assert_int_equal (punch_calls, 2);
  assert_int_equal (zero_range_calls, 2);
  assert_zeroed (img, 400 * KiB, 8 * KiB);
  assert_zeroed (img, 600 * KiB, 8 * KiB);

  /* Any other error fails the request, naming the file. */
  reset_fallocate ();
  assert_int_equal (ferry_image_close (img), 0);
  img = ferry_image_open (path, "vhdx", FERRY_OPEN_WRITE);
  assert_non_null (img);
  punch_answer = EIO;
  assert_int_equal (ferry_image_zero (img, 4096, 8192, FERRY_ZERO_MAY_TRIM),
                    -1);
  assert_int_equal (ferry_get_errno (), EIO);
  assert_non_null (strstr (ferry_get_error (), path));
  assert_non_null (strstr (ferry_get_error (), "punching a hole"));
  reset_fallocate ();
  assert_int_equal (ferry_image_close (img), 0);
}

/* ----- image locks ----- */

/* A shared OFD lock on BYTE of FD, as QEMU takes them. */
static void
qemu_lock_byte (int fd, off_t byte)
{
  struct flock fl = {
    .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1,
  };

  assert_int_equal (fcntl (fd, F_OFD_SETLK, &fl), 0);
}

/* A file held as qemu-io and qemu-nbd hold a writable image. */
static void
test_locks_of_a_qemu_writer (void **state)
{
  char path[300];
  struct ferry_image *img = ferry_image_create (tmp_path (path, sizeof path,
                                                          "held.raw"),
                                                "raw", 1 * MiB, NULL);
  unsigned held, unshared;
  int fd;

  assert_non_null (img);
  assert_int_equal (ferry_image_close (img), 0);
  assert_int_equal (ferry_image_lock_query (path, &held, &unshared), 0);
  assert_int_equal (held, 0);
  assert_int_equal (unshared, 0);

  fd = open (path, O_RDWR | O_CLOEXEC);
  assert_true (fd >= 0);
  qemu_lock_byte (fd, 100);     /* consistent read */
  qemu_lock_byte (fd, 101);     /* write */
  qemu_lock_byte (fd, 103);     /* resize */
  qemu_lock_byte (fd, 201);     /* write: not shared */
  qemu_lock_byte (fd, 203);     /* resize: not shared */
  assert_int_equal (ferry_image_lock_query (path, &held, &unshared), 0);
  assert_int_equal (held, FERRY_PERM_CONSISTENT_READ | FERRY_PERM_WRITE |
                    FERRY_PERM_RESIZE);
  assert_int_equal (unshared, FERRY_PERM_WRITE | FERRY_PERM_RESIZE);

  assert_null (ferry_image_open (path, "raw", 0));
  assert_int_equal (ferry_get_errno (), EBUSY);
  assert_non_null (strstr (ferry_get_error (), "in use by another process "
                           "(failed to get a shared write lock)"));
  assert_null (ferry_image_open (path, "raw", FERRY_OPEN_WRITE));
  assert_int_equal (ferry_get_errno (), EBUSY);
  assert_null (ferry_image_open (path, "raw",
                                 FERRY_OPEN_WRITE | FERRY_OPEN_SHARED));
  assert_int_equal (ferry_get_errno (), EINVAL);

  img = ferry_image_open (path, "raw", FERRY_OPEN_SHARED);
  assert_non_null (img);
  assert_int_equal (ferry_image_close (img), 0);

  /* Once the writer is gone, ferry writes it. */
  close (fd);
  img = ferry_image_open (path, "raw", FERRY_OPEN_WRITE);
  assert_non_null (img);
  assert_int_equal (ferry_image_lock_query (path, &held, &unshared), 0);
  assert_int_equal (held, FERRY_PERM_CONSISTENT_READ | FERRY_PERM_WRITE |
                    FERRY_PERM_RESIZE);
  assert_int_equal (unshared, FERRY_PERM_WRITE | FERRY_PERM_RESIZE);
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

/* A qcow2 overlay whose backing file is gone: refused without
 * FERRY_OPEN_MISSING_BACKING (ENOENT, naming it); with it, the overlay
 * opens, describe says what is missing, its own clusters read, and a
 * read or an extents query that reaches the backing file fails with
 * ENOENT instead of reading zeroes.  A writable open is refused. */
static void
test_qcow2_missing_backing (void **state)
{
  char base[300], top[300];
  unsigned char *buf = malloc (128 * KiB);
  struct ferry_extent_list list = { 0 };
  struct ferry_image_info info;
  struct ferry_image *img;

  assert_non_null (buf);
  img = ferry_image_create (tmp_path (base, sizeof base, "gone.qcow2"),
                            "qcow2", 1 * MiB, NULL);
  assert_non_null (img);
  assert_int_equal (ferry_image_close (img), 0);
  img = ferry_image_create (tmp_path (top, sizeof top, "orphan.qcow2"),
                            "qcow2", 1 * MiB,
                            "backing_file=gone.qcow2,backing_fmt=qcow2");
  assert_non_null (img);
  memset (buf, 0x7e, 64 * KiB);
  assert_int_equal (ferry_image_pwrite (img, buf, 64 * KiB, 0), 0);
  assert_int_equal (ferry_image_close (img), 0);
  assert_int_equal (unlink (base), 0);

  assert_null (ferry_image_open (top, NULL, 0));
  assert_int_equal (ferry_get_errno (), ENOENT);
  assert_non_null (strstr (ferry_get_error (), "the backing file "
                           "'gone.qcow2' is missing"));
  assert_null (ferry_image_open (top, NULL, FERRY_OPEN_WRITE |
                                 FERRY_OPEN_MISSING_BACKING));
  assert_int_equal (ferry_get_errno (), ENOENT);

  img = ferry_image_open (top, NULL, FERRY_OPEN_MISSING_BACKING);
  assert_non_null (img);
  assert_null (ferry_image_backing (img));
  assert_int_equal (ferry_image_describe (img, &info), 0);
  assert_string_equal (info.backing_file, "gone.qcow2");
  assert_string_equal (info.full_backing_file, base);
  assert_non_null (info.backing_missing);
  assert_non_null (strstr (info.backing_missing, base));
  assert_int_equal (ferry_image_pread (img, buf, 64 * KiB, 0), 0);
  assert_int_equal (buf[0], 0x7e);
  assert_int_equal (ferry_image_pread (img, buf, 128 * KiB, 0), -1);
  assert_int_equal (ferry_get_errno (), ENOENT);
  assert_non_null (strstr (ferry_get_error (), "reaches the backing file, "
                           "which is missing"));
  assert_int_equal (ferry_image_extents (img, 0, 64 * KiB, &list), 0);
  assert_int_equal (ferry_image_extents (img, 64 * KiB, 64 * KiB, &list), -1);
  assert_int_equal (ferry_get_errno (), ENOENT);
  ferry_extent_list_free (&list);
  assert_int_equal (ferry_image_close (img), 0);
  free (buf);
}

/* A raw disk read in place as bytes [64 KiB, 64 KiB + 1 MiB) of a larger
 * file, as a disk inside an OVA is: reads, extents and the size stay
 * inside the window, and writes, windows past the end and formats that
 * cannot be read in place are refused. */
static void
test_raw_window (void **state)
{
  char path[300];
  const uint64_t start = 64 * KiB, len = 1 * MiB;
  unsigned char *buf = malloc (len);
  struct ferry_extent_list list = { 0 };
  struct ferry_image *img;
  uint64_t pos;
  size_t i;
  int fd;

  /* 0x11 before the window, 0x22 over its first 64 KiB, a hole, 0x33
   * over its last 64 KiB, and 0x44 after it. */
  assert_non_null (buf);
  fd = open (tmp_path (path, sizeof path, "archive"),
             O_RDWR | O_CREAT | O_EXCL, 0644);
  assert_true (fd >= 0);
  memset (buf, 0x11, start);
  assert_int_equal (pwrite (fd, buf, start, 0), (ssize_t) start);
  memset (buf, 0x22, 64 * KiB);
  assert_int_equal (pwrite (fd, buf, 64 * KiB, start), 64 * KiB);
  memset (buf, 0x33, 64 * KiB);
  assert_int_equal (pwrite (fd, buf, 64 * KiB, start + len - 64 * KiB),
                    64 * KiB);
  memset (buf, 0x44, 4096);
  assert_int_equal (pwrite (fd, buf, 4096, start + len), 4096);
  close (fd);

  img = ferry_image_open_window (path, NULL, start, len, 0);
  assert_non_null (img);
  assert_string_equal (ferry_image_format (img), "raw");
  assert_int_equal (ferry_image_size (img), len);
  assert_int_equal (ferry_image_pread (img, buf, len, 0), 0);
  for (i = 0; i < len; i++) {
    unsigned char want = i < 64 * KiB ? 0x22 : i >= len - 64 * KiB ? 0x33 : 0;
    if (buf[i] != want)
      fail_msg ("byte %zu of the window is 0x%02x, not 0x%02x", i, buf[i],
                want);
  }
  assert_int_equal (ferry_image_pread (img, buf, 512, len - 256), -1);
  assert_int_equal (ferry_get_errno (), EINVAL);
  assert_int_equal (ferry_image_pwrite (img, buf, 512, 0), -1);
  assert_int_equal (ferry_get_errno (), EROFS);

  /* Extents cover the window exactly, data where it was written. */
  for (pos = 0; pos < len; ) {
    list.len = 0;
    assert_int_equal (ferry_image_extents (img, pos, len - pos, &list), 0);
    for (i = 0; i < list.len; i++) {
      const struct ferry_extent *e = &list.ptr[i];
      assert_int_equal (e->offset, pos);
      assert_true (e->offset + e->length <= len);
      if (!(e->flags & FERRY_EXTENT_ZERO)) {
        /* Data only where 0x22 or 0x33 was written (the file system may
         * round to its blocks, never past the window). */
        assert_true (e->offset < 64 * KiB + 4096 ||
                     e->offset + e->length > len - 64 * KiB - 4096);
      }
      pos += e->length;
    }
  }
  assert_int_equal (pos, len);
  ferry_extent_list_free (&list);
  assert_int_equal (ferry_image_close (img), 0);

  /* Read-write, past the end of the file, and a qcow2 in a window. */
  assert_null (ferry_image_open_window (path, "raw", start, len,
                                        FERRY_OPEN_WRITE));
  assert_int_equal (ferry_get_errno (), EINVAL);
  assert_null (ferry_image_open_window (path, "raw", start, 2 * MiB, 0));
  assert_int_equal (ferry_get_errno (), EINVAL);
  assert_non_null (strstr (ferry_get_error (), "lies past the end of the "
                           "file"));
  free (buf);
}

/* A qcow2 image read in place at 64 KiB into a file (as an OVA holds
 * one): its data, its holes, and its size are the image's. */
static void
test_qcow2_window (void **state)
{
  char path[300], outer[300];
  unsigned char *buf = malloc (256 * KiB), *copy;
  struct ferry_extent_list list = { 0 };
  struct ferry_image *img;
  struct stat st;
  ssize_t n;
  int fd, ofd;

  assert_non_null (buf);
  img = ferry_image_create (tmp_path (path, sizeof path, "inner.qcow2"),
                            "qcow2", 4 * MiB, "cluster_size=65536");
  assert_non_null (img);
  memset (buf, 0x3c, 128 * KiB);
  assert_int_equal (ferry_image_pwrite (img, buf, 128 * KiB, 1 * MiB), 0);
  assert_int_equal (ferry_image_close (img), 0);

  /* Copy it to 64 KiB into a larger file, 0x99 around it. */
  assert_int_equal (stat (path, &st), 0);
  copy = malloc (st.st_size);
  assert_non_null (copy);
  fd = open (path, O_RDONLY);
  assert_true (fd >= 0);
  n = pread (fd, copy, st.st_size, 0);
  assert_int_equal (n, st.st_size);
  close (fd);
  ofd = open (tmp_path (outer, sizeof outer, "holder"),
              O_RDWR | O_CREAT | O_EXCL, 0644);
  assert_true (ofd >= 0);
  memset (buf, 0x99, 64 * KiB);
  assert_int_equal (pwrite (ofd, buf, 64 * KiB, 0), 64 * KiB);
  assert_int_equal (pwrite (ofd, copy, st.st_size, 64 * KiB), st.st_size);
  assert_int_equal (pwrite (ofd, buf, 64 * KiB, 64 * KiB + st.st_size),
                    64 * KiB);
  close (ofd);

  img = ferry_image_open_window (outer, NULL, 64 * KiB, st.st_size, 0);
  assert_non_null (img);
  assert_string_equal (ferry_image_format (img), "qcow2");
  assert_int_equal (ferry_image_size (img), 4 * MiB);
  assert_int_equal (ferry_image_pread (img, buf, 256 * KiB, 1 * MiB - 64 * KiB),
                    0);
  for (size_t i = 0; i < 256 * KiB; i++)
    if (buf[i] != (i >= 64 * KiB && i < 192 * KiB ? 0x3c : 0))
      fail_msg ("byte %zu of the window's guest data is 0x%02x", i, buf[i]);
  assert_int_equal (ferry_image_extents (img, 0, 4 * MiB, &list), 0);
  assert_true (list.len >= 1);
  assert_true (list.ptr[0].flags & FERRY_EXTENT_ZERO);
  assert_int_equal (list.ptr[0].length, 1 * MiB);
  ferry_extent_list_free (&list);
  assert_int_equal (ferry_image_close (img), 0);
  free (copy);
  free (buf);
}

/* A raw disk gzip-compressed inside a larger file, read as a stream:
 * forward reads give its bytes (the declared size past the stream's end
 * reads as zeroes), a read behind the stream fails with ESPIPE, and the
 * image says it is sequential; its end is read and checked after the
 * reads; measuring the stream gives its size. */
static void
test_raw_gzip_stream (void **state)
{
  char path[300];
  const size_t len = 256 * KiB;
  unsigned char *data = malloc (len), *buf = malloc (len), *z;
  uLongf zlen = compressBound (len) + 64;
  struct ferry_image *img;
  z_stream zs = { 0 };
  uint64_t size, nonzero;
  size_t i;
  int fd;

  assert_non_null (data);
  assert_non_null (buf);
  for (i = 0; i < len; i++)
    data[i] = (i * 7 + i / 4096) & 0xff;
  /* gzip framing (windowBits 16 + 15), 4 KiB of junk before it. */
  z = malloc (zlen);
  assert_non_null (z);
  assert_int_equal (deflateInit2 (&zs, 6, Z_DEFLATED, 16 + 15, 8,
                                  Z_DEFAULT_STRATEGY), Z_OK);
  zs.next_in = data;
  zs.avail_in = len;
  zs.next_out = z;
  zs.avail_out = zlen;
  assert_int_equal (deflate (&zs, Z_FINISH), Z_STREAM_END);
  zlen = zs.total_out;
  deflateEnd (&zs);
  fd = open (tmp_path (path, sizeof path, "gz-archive"),
             O_RDWR | O_CREAT | O_EXCL, 0644);
  assert_true (fd >= 0);
  memset (buf, 0x77, 4096);
  assert_int_equal (pwrite (fd, buf, 4096, 0), 4096);
  assert_int_equal (pwrite (fd, z, zlen, 4096), (ssize_t) zlen);
  assert_int_equal (pwrite (fd, buf, 512, 4096 + zlen), 512);
  close (fd);

  img = ferry_image_open_stream (path, NULL, 4096, zlen, len + 8192, 0);
  assert_non_null (img);
  assert_string_equal (ferry_image_format (img), "raw");
  assert_true (ferry_image_is_sequential (img));
  assert_int_equal (ferry_image_size (img), len + 8192);
  assert_int_equal (ferry_image_pread (img, buf, 1000, 0), 0);
  assert_memory_equal (buf, data, 1000);
  /* Skipping forward, across the probed head. */
  assert_int_equal (ferry_image_pread (img, buf, 50000, 100000), 0);
  assert_memory_equal (buf, data + 100000, 50000);
  assert_int_equal (ferry_image_pread (img, buf, 100, 5000), -1);
  assert_int_equal (ferry_get_errno (), ESPIPE);
  assert_non_null (strstr (ferry_get_error (), "behind the gzip stream"));
  /* The end of the data, then the declared size past it: zeroes. */
  assert_int_equal (ferry_image_pread (img, buf, 8192 + 4096, len - 4096), 0);
  assert_memory_equal (buf, data + len - 4096, 4096);
  for (i = 4096; i < 8192 + 4096; i++)
    assert_int_equal (buf[i], 0);
  /* Its end (the trailer) checks out. */
  assert_int_equal (ferry_image_read_to_end (img), 0);
  assert_int_equal (ferry_image_close (img), 0);

  /* No size declared: an empty image, whose stream holds more than that,
   * which reading it to its end finds. */
  img = ferry_image_open_stream (path, "raw", 4096, zlen, 0, 0);
  assert_non_null (img);
  assert_int_equal (ferry_image_size (img), 0);
  assert_int_equal (ferry_image_read_to_end (img), -1);
  assert_int_equal (ferry_get_errno (), EFBIG);
  assert_int_equal (ferry_image_close (img), 0);
  /* Measured: its size and its data (every 4 KiB block holds some); a
   * stream that passes the bound given is refused. */
  assert_int_equal (ferry_image_measure_stream (path, 4096, zlen, len, &size,
                                                &nonzero, NULL, NULL), 0);
  assert_int_equal (size, len);
  assert_int_equal (nonzero, len);
  assert_int_equal (ferry_image_measure_stream (path, 4096, zlen, len - 1,
                                                &size, &nonzero, NULL, NULL),
                    -1);
  assert_int_equal (ferry_get_errno (), EFBIG);
  /* Opened at that size and read from the middle: the rest and the
   * trailer are read at the end. */
  img = ferry_image_open_stream (path, "raw", 4096, zlen, len, 0);
  assert_non_null (img);
  assert_int_equal (ferry_image_pread (img, buf, 4096, len / 2), 0);
  assert_memory_equal (buf, data + len / 2, 4096);
  assert_int_equal (ferry_image_read_to_end (img), 0);
  assert_int_equal (ferry_image_close (img), 0);
  /* Bytes that are no gzip stream. */
  assert_null (ferry_image_open_stream (path, NULL, 0, 4096, len, 0));
  assert_non_null (strstr (ferry_get_error (), "gzip stream at offset 0"));
  free (z);
  free (data);
  free (buf);
}

/* Write TEXT into the file PATH. */
static void
write_text (const char *path, const char *text)
{
  FILE *fp = fopen (path, "w");

  assert_non_null (fp);
  assert_int_equal (fputs (text, fp) >= 0, 1);
  assert_int_equal (fclose (fp), 0);
}

/* A VMDK's descriptor read alone (<ferry/vmdk.h>), as lib/vm reads a
 * VMX's disks: a text descriptor with a parent, encryption keys, an
 * adapter and two extents, its files resolved beside it; a raw device
 * mapping; the descriptor embedded in a monolithicSparse file, whose
 * extent is the file itself; a file that is no VMDK and a FIFO, which
 * hold none; a malformed line, named. */
static void
test_vmdk_read_descriptor (void **state)
{
  char path[300], other[300], dir[300], *slash;
  struct ferry_vmdk_descriptor d;
  struct ferry_image *img;

  write_text (tmp_path (path, sizeof path, "d.vmdk"),
              "# Disk DescriptorFile\nversion=1\nCID=1234abcd\n"
              "parentCID=fffffffe\nparentFileNameHint=\"base.vmdk\"\n"
              "createType=\"monolithicFlat\"\n"
              "encryption.keySafe = \"vmware:key/list\"\n"
              "RW 2048 FLAT \"d-flat.vmdk\" 0\nRDONLY 1024 ZERO\n"
              "ddb.adapterType = \"lsilogic\"\n");
  assert_int_equal (ferry_vmdk_read_descriptor (path, &d), 1);
  assert_false (d.embedded);
  assert_string_equal (d.create_type, "monolithicFlat");
  assert_string_equal (d.parent_hint, "base.vmdk");
  assert_int_equal (d.cid, 0x1234abcd);
  assert_int_equal (d.parent_cid, 0xfffffffe);
  assert_string_equal (d.adapter, "lsilogic");
  assert_true (d.encrypted);
  assert_false (d.raw_device);
  assert_int_equal (d.capacity, 3072 * 512);
  assert_int_equal (d.nr_extents, 2);
  assert_string_equal (d.extents[0].type, "FLAT");
  assert_string_equal (d.extents[0].access, "RW");
  assert_string_equal (d.extents[0].file, "d-flat.vmdk");
  snprintf (dir, sizeof dir, "%s", path);
  slash = strrchr (dir, '/');
  assert_non_null (slash);
  snprintf (slash + 1, sizeof dir - (slash + 1 - dir), "d-flat.vmdk");
  assert_string_equal (d.extents[0].path, dir);
  assert_string_equal (d.extents[1].type, "ZERO");
  assert_null (d.extents[1].file);
  ferry_vmdk_descriptor_free (&d);

  write_text (path, "# Disk DescriptorFile\nversion=1\n"
              "createType=\"vmfsRawDeviceMap\"\n"
              "RW 2097152 VMFSRDM \"d-rdm.vmdk\"\n");
  assert_int_equal (ferry_vmdk_read_descriptor (path, &d), 1);
  assert_true (d.raw_device);
  assert_false (d.encrypted);
  ferry_vmdk_descriptor_free (&d);

  img = ferry_image_create (tmp_path (other, sizeof other, "mono.vmdk"),
                            "vmdk", 1 << 20, NULL);
  assert_non_null (img);
  assert_int_equal (ferry_image_close (img), 0);
  assert_int_equal (ferry_vmdk_read_descriptor (other, &d), 1);
  assert_true (d.embedded);
  assert_string_equal (d.create_type, "monolithicSparse");
  assert_int_equal (d.capacity, 1 << 20);
  assert_int_equal (d.nr_extents, 1);
  assert_string_equal (d.extents[0].path, other);
  ferry_vmdk_descriptor_free (&d);

  write_text (path, "not a descriptor\n");
  assert_int_equal (ferry_vmdk_read_descriptor (path, &d), 0);
  assert_int_equal (mkfifo (tmp_path (other, sizeof other, "fifo.vmdk"),
                            0600), 0);
  assert_int_equal (ferry_vmdk_read_descriptor (other, &d), 0);

  write_text (path, "# Disk DescriptorFile\nversion=1\nRW many FLAT \"x\"\n");
  assert_int_equal (ferry_vmdk_read_descriptor (path, &d), -1);
  assert_int_equal (ferry_get_errno (), EINVAL);
  assert_non_null (strstr (ferry_get_error (), "descriptor line 3"));
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
    cmocka_unit_test (test_vhdx_zero_ladder),
    cmocka_unit_test (test_locks_of_a_qemu_writer),
    cmocka_unit_test (test_qcow2_bad_table_same_error),
    cmocka_unit_test (test_qcow2_missing_backing),
    cmocka_unit_test (test_raw_window),
    cmocka_unit_test (test_qcow2_window),
    cmocka_unit_test (test_raw_gzip_stream),
    cmocka_unit_test (test_vmdk_read_descriptor),
  };
  return cmocka_run_group_tests (tests, make_scratch_dir, remove_scratch_dir);
}
