/* What the cmocka unit tests share: a scratch directory for the files
 * they make, removed with everything in it at the end, and a look at a
 * file's holes.  Include it after <cmocka.h>; run the tests with
 *
 *   cmocka_run_group_tests (tests, make_scratch_dir, remove_scratch_dir);
 *
 * having set SCRATCH_PREFIX ("ferry-test-copy", ...) before including.
 */
#ifndef FERRY_TESTS_SCRATCH_DIR_H
#define FERRY_TESTS_SCRATCH_DIR_H

#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SCRATCH_PREFIX
#error "define SCRATCH_PREFIX before including scratch-dir.h"
#endif

static char scratch_dir[256];

/* The path of NAME in the scratch directory, written into BUF (LEN
 * bytes), with no file of that name left from an earlier test. */
static __attribute__ ((unused)) const char *
tmp_path (char *buf, size_t len, const char *name)
{
  snprintf (buf, len, "%s/%s", scratch_dir, name);
  unlink (buf);
  return buf;
}

/* True when [OFFSET, OFFSET+LEN) of file PATH is one hole. */
static __attribute__ ((unused)) bool
is_hole (const char *path, uint64_t offset, uint64_t len)
{
  int fd = open (path, O_RDONLY);
  off_t data;

  assert_true (fd >= 0);
  data = lseek (fd, offset, SEEK_DATA);
  close (fd);
  return data == -1 || (uint64_t) data >= offset + len;
}

/* Remove one entry of the scratch directory. */
static int
remove_scratch_entry (const char *path, const struct stat *st, int flag,
                      struct FTW *ftw)
{
  return remove (path);
}

/* Make the scratch directory, under $TMPDIR or /tmp. */
static int
make_scratch_dir (void **state)
{
  const char *base = getenv ("TMPDIR");

  snprintf (scratch_dir, sizeof scratch_dir, "%s/" SCRATCH_PREFIX "-XXXXXX",
            base ? base : "/tmp");
  return mkdtemp (scratch_dir) ? 0 : -1;
}

/* Remove the scratch directory and everything in it. */
static int
remove_scratch_dir (void **state)
{
  return nftw (scratch_dir, remove_scratch_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif /* FERRY_TESTS_SCRATCH_DIR_H */
