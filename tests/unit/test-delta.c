/* Unit tests for lib/copy/delta.c: hash rounds between raw and qcow2
 * images made by the test, judged by qemu-img compare and by the round's
 * own counts (what it read, what it wrote), and the table file's
 * refusals (another size or chunk, a damaged or cut file).  A kill
 * between a chunk's write and its record (the ABA case) is made with the
 * fault injection of lib/common/fault.h: the target's flush fails, which
 * leaves the files as a kill there would.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define SCRATCH_PREFIX "ferry-test-delta"
#include "scratch-dir.h"

#include <ferry/copy.h>

#include "common/error.h"
#include "common/fault.h"
#include "common/util.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* The source: 160 MiB and a bit (three windows of the round, a last
 * chunk cut short), in 1 MiB chunks:
 *   chunk 0        data
 *   chunk 1        half data, half hole
 *   chunk 5        zeroes written as data
 *   chunks 70-72   data (the second window)
 *   chunk 130      4 KiB of data in a hole
 *   chunk 160      the last, 1234 bytes of data */
#define SOURCE_SIZE (160 * MiB + 1234)
#define CHUNK MiB
#define NR_CHUNKS 161
#define DATA_CHUNKS 7          /* chunks that hold something but zeroes */
#define DATA_BYTES (MiB + MiB / 2 + 3 * MiB + 4 * KiB + 1234)

/* ----- helpers ----- */

/* Write LEN bytes of the pattern SEED at OFFSET of IMG (never zero). */
static void
write_pattern (struct ferry_image *img, uint64_t offset, size_t len,
               unsigned seed)
{
  unsigned char *buf = malloc (len);
  size_t i;

  assert_non_null (buf);
  for (i = 0; i < len; i++)
    buf[i] = (unsigned char) (((offset + i) * 13 + ((offset + i) >> 12) * 7 +
                               seed) | 1);
  assert_int_equal (ferry_image_pwrite (img, buf, len, offset), 0);
  free (buf);
}

/* Make the source described above at PATH. */
static void
make_source (const char *path)
{
  struct ferry_image *img = ferry_image_create (path, "raw", SOURCE_SIZE,
                                                NULL);
  unsigned char *zeroes = calloc (1, MiB);

  assert_non_null (img);
  assert_non_null (zeroes);
  write_pattern (img, 0, MiB + MiB / 2, 1);
  assert_int_equal (ferry_image_pwrite (img, zeroes, MiB, 5 * MiB), 0);
  write_pattern (img, 70 * MiB, 3 * MiB, 1);
  write_pattern (img, 130 * MiB + 64 * KiB, 4 * KiB, 1);
  write_pattern (img, 160 * MiB, 1234, 1);
  assert_int_equal (ferry_image_close (img), 0);
  free (zeroes);
}

/* Write LEN bytes of the pattern SEED at OFFSET of the image PATH. */
static void
modify (const char *path, const char *format, uint64_t offset, size_t len,
        unsigned seed)
{
  struct ferry_image *img = ferry_image_open (path, format, FERRY_OPEN_WRITE);

  assert_non_null (img);
  write_pattern (img, offset, len, seed);
  assert_int_equal (ferry_image_close (img), 0);
}

/* A new, empty target of FORMAT at PATH (OPTIONS as for create). */
static void
make_target (const char *path, const char *format, const char *options)
{
  struct ferry_image *img = ferry_image_create (path, format, SOURCE_SIZE,
                                                options);

  assert_non_null (img);
  assert_int_equal (ferry_image_close (img), 0);
}

/* The files of the test running: the raw source, the target, the table. */
static char src[512], dst[512], tab[512];

/* Make the source, and a new target of FORMAT (OPTIONS as for create;
 * NULL: none made), and open a new table for them, FRESH or not. */
static struct ferry_hash_table *
setup (const char *format, const char *options, bool fresh)
{
  struct ferry_hash_table *t;

  tmp_path (src, sizeof src, "src.raw");
  tmp_path (dst, sizeof dst, "dst.img");
  tmp_path (tab, sizeof tab, "dst.hashes");
  make_source (src);
  if (format)
    make_target (dst, format, options);
  t = ferry_hash_table_open (tab, SOURCE_SIZE, 0, fresh);
  assert_non_null (t);
  return t;
}

/* Open the table of the test again. */
static struct ferry_hash_table *
reopen_table (void)
{
  struct ferry_hash_table *t = ferry_hash_table_open (tab, SOURCE_SIZE, 0,
                                                      false);

  assert_non_null (t);
  return t;
}

/* The errno of the last round_of that failed. */
static int round_errno;

/* One round from the raw SRC into DST of FORMAT with table T: its
 * result, *STATS filled. */
static int
round_of (const char *src, const char *dst, const char *format,
          struct ferry_hash_table *t, struct ferry_delta_stats *stats)
{
  struct ferry_copy_options opts = { .threads = 2 };
  struct ferry_image *s = ferry_image_open (src, "raw", 0);
  struct ferry_image *d = ferry_image_open (dst, format, FERRY_OPEN_WRITE);
  int r;

  assert_non_null (s);
  assert_non_null (d);
  r = ferry_hash_round (s, d, t, &opts, stats);
  round_errno = r == -1 ? ferry_get_errno () : 0;
  ferry_image_close (s);
  if (r == 0)
    assert_int_equal (ferry_image_close (d), 0);
  else
    ferry_image_close (d);
  return r;
}

/* True when qemu-img compare finds the raw SRC and DST of FORMAT equal. */
static bool
qemu_img_same (const char *src, const char *dst, const char *format)
{
  char cmd[1200];
  int st;

  snprintf (cmd, sizeof cmd, "qemu-img compare -q -f raw -F %s '%s' '%s'",
            format, src, dst);
  st = system (cmd);
  assert_true (WIFEXITED (st));
  assert_true (WEXITSTATUS (st) <= 1);       /* 2: it could not compare */
  return WEXITSTATUS (st) == 0;
}

/* Flip one byte at OFFSET of the file PATH. */
static void
flip_byte (const char *path, uint64_t offset)
{
  int fd = open (path, O_RDWR);
  unsigned char b;

  assert_true (fd >= 0);
  assert_int_equal (pread (fd, &b, 1, offset), 1);
  b ^= 0x5a;
  assert_int_equal (pwrite (fd, &b, 1, offset), 1);
  close (fd);
}

/* ----- tests ----- */

/* Rounds into a fresh target of FORMAT: the first copies the data and
 * reads no hole, the next one with no change writes and reads nothing on
 * the target, then k changed chunks are exactly what is written, and the
 * table kept in its file does the same in a later "run". */
static void
rounds_into (const char *format)
{
  struct ferry_hash_table *t;
  struct ferry_delta_stats st;

  t = setup (format, NULL, true);
  assert_int_equal (ferry_hash_table_chunk (t), CHUNK);
  assert_int_equal (round_of (src, dst, format, t, &st), 0);
  assert_int_equal (st.chunks, NR_CHUNKS);
  assert_int_equal (st.bytes_read, DATA_BYTES + MiB);  /* + chunk 5's zeroes */
  assert_int_equal (st.bytes_target_read, 0);
  assert_int_equal (st.chunks_written, DATA_CHUNKS);
  assert_true (qemu_img_same (src, dst, format));

  /* No change: nothing written, nothing read from the target. */
  assert_int_equal (round_of (src, dst, format, t, &st), 0);
  assert_int_equal (st.chunks_written, 0);
  assert_int_equal (st.bytes_written, 0);
  assert_int_equal (st.bytes_target_read, 0);

  /* Three chunks change: one of data, one in the second window, one
   * that was a hole; and chunk 1's data becomes zeroes. */
  modify (src, "raw", 100, 5000, 2);
  modify (src, "raw", 71 * MiB + 12345, 10, 2);
  modify (src, "raw", 150 * MiB, 64 * KiB, 2);
  {
    struct ferry_image *img = ferry_image_open (src, "raw", FERRY_OPEN_WRITE);
    assert_non_null (img);
    assert_int_equal (ferry_image_zero (img, MiB, MiB, FERRY_ZERO_MAY_TRIM),
                      0);
    assert_int_equal (ferry_image_close (img), 0);
  }
  assert_false (qemu_img_same (src, dst, format));
  assert_int_equal (round_of (src, dst, format, t, &st), 0);
  assert_int_equal (st.chunks_written, 4);
  assert_int_equal (st.bytes_written, 4 * CHUNK);
  assert_int_equal (st.bytes_target_read, 0);
  assert_true (qemu_img_same (src, dst, format));
  ferry_hash_table_close (t);

  /* A later run reads the table back: still nothing to write. */
  t = reopen_table ();
  assert_int_equal (round_of (src, dst, format, t, &st), 0);
  assert_int_equal (st.chunks_written, 0);
  assert_int_equal (st.bytes_target_read, 0);
  ferry_hash_table_close (t);
}

static void
test_rounds_raw (void **state)
{
  rounds_into ("raw");
}

static void
test_rounds_qcow2 (void **state)
{
  rounds_into ("qcow2");
}

/* X holds A; a round writes B and is killed before it records B; the
 * source goes back to A: the next round must write X again. */
static void
test_aba (void **state)
{
  struct ferry_hash_table *t;
  struct ferry_delta_stats st;
  struct ferry_image *img;
  unsigned char a[64], b[64];

  t = setup ("raw", NULL, true);
  assert_int_equal (round_of (src, dst, "raw", t, &st), 0);
  img = ferry_image_open (src, "raw", 0);
  assert_non_null (img);
  assert_int_equal (ferry_image_pread (img, a, sizeof a, 70 * MiB), 0);
  ferry_image_close (img);

  /* B: the round writes it, and the target's flush fails (the table's
   * invalidation is the first sync, the target's flush the second). */
  modify (src, "raw", 70 * MiB, 64, 3);
  setenv ("FERRY_FAULT", "sync:2:eio", 1);
  fault_reset ();
  assert_int_equal (round_of (src, dst, "raw", t, &st), -1);
  unsetenv ("FERRY_FAULT");
  fault_reset ();
  assert_int_equal (round_errno, EIO);
  assert_int_equal (st.chunks_written, 1);
  ferry_hash_table_close (t);
  /* The target holds B, unrecorded. */
  img = ferry_image_open (dst, "raw", 0);
  assert_non_null (img);
  assert_int_equal (ferry_image_pread (img, b, sizeof b, 70 * MiB), 0);
  ferry_image_close (img);
  assert_memory_not_equal (a, b, sizeof a);

  /* Back to A, in a later run. */
  img = ferry_image_open (src, "raw", FERRY_OPEN_WRITE);
  assert_non_null (img);
  assert_int_equal (ferry_image_pwrite (img, a, sizeof a, 70 * MiB), 0);
  assert_int_equal (ferry_image_close (img), 0);
  assert_false (qemu_img_same (src, dst, "raw"));
  t = reopen_table ();
  assert_int_equal (round_of (src, dst, "raw", t, &st), 0);
  assert_int_equal (st.chunks_written, 1);
  assert_int_equal (st.bytes_target_read, CHUNK);   /* X, unknown, read */
  assert_true (qemu_img_same (src, dst, "raw"));
  ferry_hash_table_close (t);
}

/* A table for another size or chunk is refused with ESTALE naming it;
 * bad chunks with EINVAL; a table in use with EBUSY. */
static void
test_stale_table (void **state)
{
  struct ferry_hash_table *t, *t2;

  tmp_path (tab, sizeof tab, "t.hashes");
  t = ferry_hash_table_open (tab, 8 * MiB, 64 * KiB, false);
  assert_non_null (t);
  t2 = ferry_hash_table_open (tab, 8 * MiB, 64 * KiB, false);
  assert_null (t2);
  assert_int_equal (ferry_get_errno (), EBUSY);
  ferry_hash_table_close (t);

  assert_null (ferry_hash_table_open (tab, 9 * MiB, 64 * KiB, false));
  assert_int_equal (ferry_get_errno (), ESTALE);
  assert_non_null (strstr (ferry_get_error (), tab));
  assert_non_null (strstr (ferry_get_error (), "for images of 8388608 bytes"));
  assert_null (ferry_hash_table_open (tab, 8 * MiB, 128 * KiB, false));
  assert_int_equal (ferry_get_errno (), ESTALE);

  assert_null (ferry_hash_table_open (tab, 8 * MiB, 1000, false));
  assert_int_equal (ferry_get_errno (), EINVAL);
  assert_null (ferry_hash_table_open (tab, 8 * MiB, 32 * KiB, false));
  assert_int_equal (ferry_get_errno (), EINVAL);
  assert_non_null (strstr (ferry_get_error (), "power of two"));
}

/* A table file cut short, longer, with a damaged header or not a table
 * at all is refused with ESTALE; a damaged entry is taken as unknown. */
static void
test_damaged_table (void **state)
{
  struct ferry_hash_table *t;
  struct ferry_delta_stats st;
  struct stat sb;
  int fd;

  tmp_path (tab, sizeof tab, "t.hashes");
  t = ferry_hash_table_open (tab, 8 * MiB, 0, false);
  assert_non_null (t);
  ferry_hash_table_close (t);
  assert_int_equal (stat (tab, &sb), 0);
  assert_int_equal (truncate (tab, sb.st_size - 10), 0);
  assert_null (ferry_hash_table_open (tab, 8 * MiB, 0, false));
  assert_int_equal (ferry_get_errno (), ESTALE);
  assert_non_null (strstr (ferry_get_error (), "cut short"));
  assert_int_equal (truncate (tab, sb.st_size + 32), 0);
  assert_null (ferry_hash_table_open (tab, 8 * MiB, 0, false));
  assert_int_equal (ferry_get_errno (), ESTALE);
  assert_int_equal (truncate (tab, 20), 0);
  assert_null (ferry_hash_table_open (tab, 8 * MiB, 0, false));
  assert_int_equal (ferry_get_errno (), ESTALE);

  unlink (tab);
  t = ferry_hash_table_open (tab, 8 * MiB, 0, false);
  assert_non_null (t);
  ferry_hash_table_close (t);
  flip_byte (tab, 20);
  assert_null (ferry_hash_table_open (tab, 8 * MiB, 0, false));
  assert_int_equal (ferry_get_errno (), ESTALE);
  assert_non_null (strstr (ferry_get_error (), "damaged"));

  fd = open (tab, O_WRONLY | O_TRUNC);
  assert_true (fd >= 0);
  {
    char text[200];
    memset (text, 'x', sizeof text);
    assert_int_equal (write (fd, text, sizeof text), sizeof text);
  }
  close (fd);
  assert_null (ferry_hash_table_open (tab, 8 * MiB, 0, false));
  assert_int_equal (ferry_get_errno (), ESTALE);
  assert_non_null (strstr (ferry_get_error (), "not a ferry hash table"));

  /* A damaged entry (chunk 70's hash) is read as unknown: the round
   * reads that chunk of the target, finds it equal, writes nothing. */
  t = setup ("raw", NULL, true);
  assert_int_equal (round_of (src, dst, "raw", t, &st), 0);
  ferry_hash_table_close (t);
  flip_byte (tab, 64 + 70 * 32 + 9);
  t = reopen_table ();
  assert_int_equal (round_of (src, dst, "raw", t, &st), 0);
  assert_int_equal (st.bytes_target_read, CHUNK);
  assert_int_equal (st.chunks_written, 0);
  /* And it was recorded again: the next round reads nothing. */
  assert_int_equal (round_of (src, dst, "raw", t, &st), 0);
  assert_int_equal (st.bytes_target_read, 0);
  ferry_hash_table_close (t);
}

/* An unknown table compares with the target: a full copy made by
 * ferry_copy needs no write; after foreign writes to two chunks of the
 * target and a forget, exactly those two are written. */
static void
test_unknown_table (void **state)
{
  struct ferry_hash_table *t;
  struct ferry_delta_stats st;
  struct ferry_image *s, *d;

  t = setup (NULL, NULL, false);
  s = ferry_image_open (src, "raw", 0);
  d = ferry_image_create (dst, "qcow2", SOURCE_SIZE, NULL);
  assert_non_null (s);
  assert_non_null (d);
  assert_int_equal (ferry_copy (s, d, NULL), 0);
  ferry_image_close (s);
  assert_int_equal (ferry_image_close (d), 0);

  assert_int_equal (round_of (src, dst, "qcow2", t, &st), 0);
  assert_int_equal (st.chunks_written, 0);
  assert_true (st.bytes_target_read >= DATA_BYTES);
  assert_true (st.bytes_target_read <= DATA_CHUNKS * CHUNK);
  assert_int_equal (round_of (src, dst, "qcow2", t, &st), 0);
  assert_int_equal (st.bytes_target_read, 0);

  modify (dst, "qcow2", 2 * MiB, 4096, 9);
  modify (dst, "qcow2", 72 * MiB + 500, 100, 9);
  assert_false (qemu_img_same (src, dst, "qcow2"));
  assert_int_equal (ferry_hash_table_forget (t), 0);
  assert_int_equal (round_of (src, dst, "qcow2", t, &st), 0);
  assert_int_equal (st.chunks_written, 2);
  assert_true (qemu_img_same (src, dst, "qcow2"));
  ferry_hash_table_close (t);
}

/* A target whose clusters are larger than the chunks is refused. */
static void
test_cluster_larger_than_chunk (void **state)
{
  struct ferry_hash_table *t;
  struct ferry_delta_stats st;

  t = setup ("qcow2", "cluster_size=2M", true);
  assert_int_equal (round_of (src, dst, "qcow2", t, &st), -1);
  assert_int_equal (round_errno, EINVAL);
  assert_non_null (strstr (ferry_get_error (), "clusters of 2097152 bytes"));
  ferry_hash_table_close (t);
}

/* A cancelled round stops with EINTR and writes nothing. */
static void
test_cancel (void **state)
{
  struct ferry_hash_table *t;
  struct ferry_delta_stats st;
  volatile sig_atomic_t cancel = 1;
  struct ferry_copy_options opts = { .cancel = &cancel };
  struct ferry_image *s, *d;

  t = setup ("raw", NULL, true);
  s = ferry_image_open (src, "raw", 0);
  d = ferry_image_open (dst, "raw", FERRY_OPEN_WRITE);
  assert_int_equal (ferry_hash_round (s, d, t, &opts, &st), -1);
  assert_int_equal (ferry_get_errno (), EINTR);
  assert_int_equal (st.bytes_written, 0);
  ferry_image_close (s);
  ferry_image_close (d);
  ferry_hash_table_close (t);
}

/* Kill a round (SIGKILL, from the fault injection) at each of its first
 * writes and syncs, in a child process; a later round in this process
 * must make the target equal to the source, as qemu-img compare says. */
static void
test_kill_anywhere (void **state)
{
  static const char *const ops[] = { "write", "sync" };
  struct ferry_hash_table *t = setup ("qcow2", NULL, true);
  struct ferry_delta_stats st;
  unsigned seed = 10, kills = 0;
  size_t o;

  assert_int_equal (round_of (src, dst, "qcow2", t, &st), 0);
  ferry_hash_table_close (t);
  for (o = 0; o < sizeof ops / sizeof ops[0]; o++) {
    unsigned n;

    for (n = 1; n <= 8; n++) {
      char fault[64];
      pid_t pid;
      int status;

      /* Six chunks change, in all three windows. */
      seed++;
      modify (src, "raw", 0, 4096, seed);
      modify (src, "raw", 3 * MiB + 8192, 100, seed);
      modify (src, "raw", 70 * MiB, MiB, seed);
      modify (src, "raw", 72 * MiB + 4096, 4096, seed);
      modify (src, "raw", 100 * MiB, 64 * KiB, seed);
      modify (src, "raw", 150 * MiB + 12345, 10, seed);

      snprintf (fault, sizeof fault, "%s:%u:kill", ops[o], n);
      pid = fork ();
      assert_true (pid >= 0);
      if (pid == 0) {
        setenv ("FERRY_FAULT", fault, 1);
        fault_reset ();
        t = reopen_table ();
        round_of (src, dst, "qcow2", t, &st);
        _exit (0);
      }
      assert_int_equal (waitpid (pid, &status, 0), pid);
      if (WIFSIGNALED (status)) {
        assert_int_equal (WTERMSIG (status), SIGKILL);
        kills++;
      }
      else
        assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);

      t = reopen_table ();
      assert_int_equal (round_of (src, dst, "qcow2", t, &st), 0);
      ferry_hash_table_close (t);
      assert_true (qemu_img_same (src, dst, "qcow2"));
    }
  }
  /* Every sync of such a round and most of its writes were struck. */
  assert_true (kills >= 14);
}

/* What the progress callback of a round last saw, and how often. */
static struct ferry_progress last_progress;
static unsigned progress_calls, finished_calls;

/* Keep the progress report P. */
static void
keep_progress (const struct ferry_progress *p, void *opaque)
{
  last_progress = *p;
  progress_calls++;
  finished_calls += p->finished;
}

/* A round reports its progress in source bytes, once finished. */
static void
test_progress (void **state)
{
  struct ferry_hash_table *t = setup ("raw", NULL, true);
  struct ferry_copy_options opts = { .progress = keep_progress };
  struct ferry_delta_stats st;
  struct ferry_image *s = ferry_image_open (src, "raw", 0);
  struct ferry_image *d = ferry_image_open (dst, "raw", FERRY_OPEN_WRITE);

  assert_non_null (s);
  assert_non_null (d);
  assert_int_equal (ferry_hash_round (s, d, t, &opts, &st), 0);
  assert_true (progress_calls >= 1);
  assert_int_equal (finished_calls, 1);
  assert_true (last_progress.finished);
  assert_int_equal (last_progress.done, SOURCE_SIZE);
  assert_int_equal (last_progress.total, SOURCE_SIZE);
  ferry_image_close (s);
  assert_int_equal (ferry_image_close (d), 0);
  ferry_hash_table_close (t);
}

/* Run every test, with the temporary directory around them. */
int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_rounds_raw),
    cmocka_unit_test (test_rounds_qcow2),
    cmocka_unit_test (test_aba),
    cmocka_unit_test (test_kill_anywhere),
    cmocka_unit_test (test_stale_table),
    cmocka_unit_test (test_damaged_table),
    cmocka_unit_test (test_unknown_table),
    cmocka_unit_test (test_cluster_larger_than_chunk),
    cmocka_unit_test (test_cancel),
    cmocka_unit_test (test_progress),
  };
  return cmocka_run_group_tests (tests, make_scratch_dir, remove_scratch_dir);
}
