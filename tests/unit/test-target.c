/* Unit tests for lib/image/target.c: the pending target's commit and
 * abort, the names its messages use, and the sweep of leftovers (a dead
 * writer's files go, a live writer's stay, links are never followed).
 * The fault suite (tests/shell/fault-*.sh) kills and fails real writers;
 * here the leftovers are made by hand, to reach the cases a kill cannot
 * choose (a lock still held, a planted link).
 *
 * No file system here fails a lock or an unlink on demand, so this
 * program defines its own fcntl64 (what <fcntl.h>'s fcntl calls with
 * 64-bit offsets), renameat2 and unlink, which libferry (linked in
 * statically) calls instead of the C library's: each fails as a test asks
 * and hands everything else to the real one.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
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

#define SCRATCH_PREFIX "ferry-test-target"
#include "scratch-dir.h"

#include <ferry/error.h>
#include <ferry/image.h>
#include <ferry/target.h>

#include "common/error.h"

/* ----- the system calls libferry makes here ----- */

/* Nonzero: the errno that every F_OFD_SETLK fails with. */
static int lock_answer;
/* Nonzero: the errno that renameat2 fails with. */
static int rename_answer;
/* Non-empty: the paths that unlink fails on (EIO), a NUL each, the list
 * ending in an empty one. */
static char unlink_refused[2048];

int
fcntl64 (int fd, int cmd, ...)
{
  static int (*real) (int, int, ...);
  va_list ap;
  void *arg;

  va_start (ap, cmd);
  arg = va_arg (ap, void *);
  va_end (ap);
  if (real == NULL)
    real = (int (*) (int, int, ...)) dlsym (RTLD_NEXT, "fcntl64");
  if (cmd == F_OFD_SETLK && lock_answer) {
    errno = lock_answer;
    return -1;
  }
  return real (fd, cmd, arg);
}

int
renameat2 (int olddirfd, const char *oldpath, int newdirfd,
           const char *newpath, unsigned flags)
{
  static int (*real) (int, const char *, int, const char *, unsigned);

  if (real == NULL)
    real = (int (*) (int, const char *, int, const char *, unsigned))
      dlsym (RTLD_NEXT, "renameat2");
  if (rename_answer) {
    errno = rename_answer;
    return -1;
  }
  return real (olddirfd, oldpath, newdirfd, newpath, flags);
}

int
unlink (const char *path)
{
  static int (*real) (const char *);
  const char *p;

  if (real == NULL)
    real = (int (*) (const char *)) dlsym (RTLD_NEXT, "unlink");
  for (p = unlink_refused; *p; p += strlen (p) + 1)
    if (strcmp (p, path) == 0) {
      errno = EIO;
      return -1;
    }
  return real (path);
}

/* Make unlink refuse PATH too. */
static void
refuse_unlink (const char *path)
{
  char *end = unlink_refused;

  while (*end)
    end += strlen (end) + 1;
  assert_true (end + strlen (path) + 2 <= unlink_refused +
               sizeof unlink_refused);
  strcpy (end, path);
  end[strlen (path) + 1] = '\0';
}

/* Every system call as the C library makes it again. */
static void
answer_normally (void)
{
  lock_answer = rename_answer = 0;
  memset (unlink_refused, 0, sizeof unlink_refused);
}

/* ----- helpers ----- */

/* A fresh empty folder NAME in the scratch directory, into BUF. */
static const char *
fresh_dir (char *buf, size_t len, const char *name)
{
  snprintf (buf, len, "%s/%s", scratch_dir, name);
  assert_int_equal (mkdir (buf, 0755), 0);
  return buf;
}

/* The number of entries of folder DIR (but "." and ".."). */
static int
count_entries (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  int n = 0;

  assert_non_null (d);
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") && strcmp (e->d_name, ".."))
      n++;
  closedir (d);
  return n;
}

/* True when PATH exists (without following a link). */
static bool
exists (const char *path)
{
  struct stat st;
  return lstat (path, &st) == 0;
}

/* True when DIR/NAME exists (without following a link). */
static bool
exists_in (const char *dir, const char *name)
{
  char path[1024];

  snprintf (path, sizeof path, "%s/%s", dir, name);
  return exists (path);
}

/* Make the file DIR/NAME holding TEXT. */
static void
make_file (const char *dir, const char *name, const char *text)
{
  char path[1024];
  FILE *fp;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  fp = fopen (path, "w");
  assert_non_null (fp);
  fputs (text, fp);
  fclose (fp);
}

/* An image target: nothing under DEST until the commit; then DEST alone,
 * a raw image of the size asked for. */
static void
test_image_commit (void **state)
{
  char dir[300], dest[400];
  struct ferry_target *t;
  struct ferry_image *img;
  struct stat st;

  fresh_dir (dir, sizeof dir, "commit");
  snprintf (dest, sizeof dest, "%s/disk.raw", dir);
  t = ferry_target_begin (dest, "raw", 0);
  assert_non_null (t);
  assert_string_equal (ferry_target_dest (t), dest);
  assert_non_null (strstr (ferry_target_path (t), "/.disk.raw.ferry-"));
  assert_null (ferry_target_removed (t)[0]);
  img = ferry_target_create_image (t, 1 << 20, NULL);
  assert_non_null (img);
  assert_int_equal (ferry_image_pwrite (img, "data", 4, 0), 0);
  assert_false (exists (dest));
  assert_int_equal (count_entries (dir), 2);      /* the image, the lock */
  assert_int_equal (ferry_target_commit (t), 0);
  ferry_target_free (t);
  assert_int_equal (stat (dest, &st), 0);
  assert_int_equal (st.st_size, 1 << 20);
  assert_int_equal (count_entries (dir), 1);
}

/* A target freed without a commit leaves nothing; an existing DEST is
 * refused before anything is made, with no command-line flag named. */
static void
test_abort_and_existing (void **state)
{
  char dir[300], dest[400];
  struct ferry_target *t;

  fresh_dir (dir, sizeof dir, "abort");
  snprintf (dest, sizeof dest, "%s/d.qcow2", dir);
  t = ferry_target_begin (dest, "qcow2", 0);
  assert_non_null (t);
  assert_non_null (ferry_target_create_image (t, 1 << 20, NULL));
  ferry_target_free (t);
  assert_int_equal (count_entries (dir), 0);

  make_file (dir, "d.qcow2", "precious");
  assert_null (ferry_target_begin (dest, "qcow2", 0));
  assert_int_equal (ferry_get_errno (), EEXIST);
  assert_non_null (strstr (ferry_get_error (), "d.qcow2 exists already"));
  assert_null (strstr (ferry_get_error (), "-n"));
  assert_int_equal (count_entries (dir), 1);
}

/* While a target is pending, messages name DEST, not the temporary name;
 * afterwards they are left alone. */
static void
test_messages_name_dest (void **state)
{
  char dir[300], dest[400], msg[700];
  struct ferry_target *t;
  const char *tmp;

  fresh_dir (dir, sizeof dir, "names");
  snprintf (dest, sizeof dest, "%s/out", dir);
  t = ferry_target_begin (dest, NULL, FERRY_TARGET_FOLDER);
  assert_non_null (t);
  tmp = ferry_target_path (t);
  ferry_error (EIO, "%s/disk-1.qcow2: write at offset 0x10000", tmp);
  snprintf (msg, sizeof msg, "%s/disk-1.qcow2: write at offset 0x10000",
            dest);
  assert_string_equal (ferry_get_error (), msg);
  snprintf (msg, sizeof msg, "%s", tmp);
  ferry_target_free (t);
  /* The error survives the free; a later one is not rewritten. */
  assert_int_equal (ferry_get_errno (), EIO);
  ferry_error (EIO, "%s", msg);
  assert_string_equal (ferry_get_error (), msg);
}

/* A lock that fails for any reason but "no locks on this file system"
 * (ENOLCK: an NFS server without its lock service) fails the begin,
 * leaving nothing: a writer that went on unlocked would look dead to a
 * later sweeper and lose its files.  Where the file system has no locks
 * (EOPNOTSUPP), the writer goes on without one. */
static void
test_lock_errors (void **state)
{
  char dir[300], dest[400];
  struct ferry_target *t;

  fresh_dir (dir, sizeof dir, "lock-errors");
  snprintf (dest, sizeof dest, "%s/d.raw", dir);
  lock_answer = ENOLCK;
  t = ferry_target_begin (dest, "raw", 0);
  answer_normally ();
  assert_null (t);
  assert_int_equal (ferry_get_errno (), ENOLCK);
  assert_non_null (strstr (ferry_get_error (), dest));
  assert_non_null (strstr (ferry_get_error (), "cannot lock"));
  assert_null (strstr (ferry_get_error (), ".ferry-"));
  assert_int_equal (count_entries (dir), 0);

  lock_answer = EOPNOTSUPP;
  t = ferry_target_begin (dest, "raw", 0);
  assert_non_null (t);
  assert_non_null (ferry_target_create_image (t, 1 << 20, NULL));
  assert_int_equal (ferry_target_commit (t), 0);
  ferry_target_free (t);
  answer_normally ();
  assert_true (exists (dest));
  assert_int_equal (count_entries (dir), 1);
}

/* Where the file system has no RENAME_NOREPLACE, the commit links DEST
 * and unlinks the temporary name.  When that unlink fails, the commit
 * fails and leaves no DEST (it unlinks DEST again); when DEST cannot be
 * unlinked either, the move counts as done: DEST is there and the commit
 * succeeds.  Either way, the result says whether DEST exists. */
static void
test_commit_by_link (void **state)
{
  char dir[300], dest[400], tmp[400];
  struct ferry_target *t;
  int r;

  fresh_dir (dir, sizeof dir, "link");
  snprintf (dest, sizeof dest, "%s/d.raw", dir);
  t = ferry_target_begin (dest, "raw", 0);
  assert_non_null (t);
  assert_non_null (ferry_target_create_image (t, 1 << 20, NULL));
  rename_answer = EINVAL;
  refuse_unlink (ferry_target_path (t));
  r = ferry_target_commit (t);
  answer_normally ();
  assert_int_equal (r, -1);
  assert_int_equal (ferry_get_errno (), EIO);
  assert_non_null (strstr (ferry_get_error (), dest));
  assert_false (exists (dest));
  ferry_target_free (t);
  assert_int_equal (count_entries (dir), 0);

  t = ferry_target_begin (dest, "raw", 0);
  assert_non_null (t);
  assert_non_null (ferry_target_create_image (t, 1 << 20, NULL));
  snprintf (tmp, sizeof tmp, "%s", ferry_target_path (t));
  rename_answer = EINVAL;
  refuse_unlink (tmp);
  refuse_unlink (dest);
  r = ferry_target_commit (t);
  answer_normally ();
  assert_int_equal (r, 0);
  ferry_target_free (t);
  assert_true (exists (dest));
  /* The temporary name is a second name of DEST, which stays. */
  assert_int_equal (unlink (tmp), 0);
  assert_int_equal (count_entries (dir), 1);
}

/* The warnings the library logs, kept for a test to read. */
static char warnings[4096];

/* The log callback: append each warning, a line each. */
static void
keep_warnings (enum ferry_log_level level, const char *msg, void *opaque)
{
  size_t len = strlen (warnings);

  if (level >= FERRY_LOG_WARNING)
    snprintf (warnings + len, sizeof warnings - len, "%s\n", msg);
}

/* A cleanup that cannot remove the temporary folder (deeper than the
 * sweep goes) warns naming the temporary folder, which is what is left,
 * not DEST, which never existed. */
static void
test_cleanup_warning_names_leftover (void **state)
{
  char dir[300], dest[400], tmp[400], path[600];
  struct ferry_target *t;
  const char *base;
  int i;

  fresh_dir (dir, sizeof dir, "warn");
  snprintf (dest, sizeof dest, "%s/out", dir);
  t = ferry_target_begin (dest, NULL, FERRY_TARGET_FOLDER);
  assert_non_null (t);
  snprintf (tmp, sizeof tmp, "%s", ferry_target_path (t));
  snprintf (path, sizeof path, "%s", tmp);
  for (i = 0; i < 12; i++) {
    strcat (path, "/d");
    assert_int_equal (mkdir (path, 0755), 0);
  }
  warnings[0] = '\0';
  ferry_set_log_callback (keep_warnings, NULL);
  ferry_target_free (t);
  ferry_set_log_callback (NULL, NULL);
  base = strrchr (tmp, '/') + 1;
  assert_non_null (strstr (warnings, base));
  assert_non_null (strstr (warnings, "cannot remove"));
  snprintf (path, sizeof path, "%s: cannot", dest);
  assert_null (strstr (warnings, path));
  assert_true (exists (tmp));
}

/* A writer killed after its rename leaves DEST whole beside its lock
 * file: running it again removes the lock file, says so, and only then
 * refuses DEST as existing. */
static void
test_existing_dest_swept (void **state)
{
  char dir[300], dest[400];

  fresh_dir (dir, sizeof dir, "rerun");
  snprintf (dest, sizeof dest, "%s/d.raw", dir);
  make_file (dir, "d.raw", "whole");
  make_file (dir, ".d.raw.ferry-0000000000aa.lock", "");
  warnings[0] = '\0';
  ferry_set_log_callback (keep_warnings, NULL);
  assert_null (ferry_target_begin (dest, "raw", 0));
  ferry_set_log_callback (NULL, NULL);
  assert_int_equal (ferry_get_errno (), EEXIST);
  assert_non_null (strstr (ferry_get_error (), "d.raw exists already"));
  assert_non_null (strstr (warnings, "removed "));
  assert_non_null (strstr (warnings, "/.d.raw.ferry-0000000000aa.lock, left "
                           "by a ferry process that is gone"));
  assert_false (exists_in (dir, ".d.raw.ferry-0000000000aa.lock"));
  assert_int_equal (count_entries (dir), 1);
}

/* A folder target: its files are there under DEST after the commit. */
static void
test_folder_commit (void **state)
{
  char dir[300], dest[400], path[500];
  struct ferry_target *t;

  fresh_dir (dir, sizeof dir, "folder");
  snprintf (dest, sizeof dest, "%s/vm", dir);
  t = ferry_target_begin (dest, NULL, FERRY_TARGET_FOLDER);
  assert_non_null (t);
  make_file (ferry_target_path (t), "vm.xml", "<domain/>");
  assert_false (exists (dest));
  assert_int_equal (ferry_target_commit (t), 0);
  ferry_target_free (t);
  snprintf (path, sizeof path, "%s/vm.xml", dest);
  assert_true (exists (path));
  assert_int_equal (count_entries (dir), 1);
}

/* The sweep: a dead group (its lock file not held) goes, with the second
 * name of one of its files (a VMDK extent linked into place); a group
 * whose lock is held stays; a lock file that is a symbolic link is never
 * followed; files that merely look like temporary names stay. */
static void
test_sweep (void **state)
{
  char dir[300], dest[400], path[500], path2[500], outside[300];
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  const char *const *removed;
  struct ferry_target *t;
  int live_fd, n;

  fresh_dir (dir, sizeof dir, "sweep");
  /* Dead: a descriptor, an extent, its final name, and a folder. */
  make_file (dir, ".d.vmdk.ferry-00000000000a.lock", "");
  make_file (dir, ".d.vmdk.ferry-00000000000a", "# Disk DescriptorFile\n");
  make_file (dir, ".d.vmdk-s001.ferry-00000000000a", "extent");
  snprintf (path, sizeof path, "%s/.d.vmdk-s001.ferry-00000000000a", dir);
  snprintf (path2, sizeof path2, "%s/d-s001.vmdk", dir);
  assert_int_equal (link (path, path2), 0);
  make_file (dir, ".o.ferry-00000000000b.lock", "");
  snprintf (path, sizeof path, "%s/.o.ferry-00000000000b", dir);
  assert_int_equal (mkdir (path, 0755), 0);
  make_file (path, "disk.qcow2", "x");
  /* Live: its lock is held (by another open file description). */
  make_file (dir, ".l.raw.ferry-00000000000c.lock", "");
  make_file (dir, ".l.raw.ferry-00000000000c", "live");
  snprintf (path, sizeof path, "%s/.l.raw.ferry-00000000000c.lock", dir);
  live_fd = open (path, O_RDWR);
  assert_true (live_fd >= 0);
  assert_int_equal (fcntl (live_fd, F_OFD_SETLK, &fl), 0);
  /* A planted link named like a lock file, and a file outside it names. */
  fresh_dir (outside, sizeof outside, "outside");
  make_file (outside, "precious", "keep");
  make_file (outside, ".p.ferry-00000000000d", "keep");
  snprintf (path, sizeof path, "%s/.p.ferry-00000000000d.lock", dir);
  assert_int_equal (symlink ("../outside/precious", path), 0);
  snprintf (path, sizeof path, "%s/.p.ferry-00000000000d", dir);
  assert_int_equal (symlink ("../outside/.p.ferry-00000000000d", path), 0);
  /* Not ours: no lock file, or not a tag. */
  make_file (dir, ".q.raw.ferry-00000000000e", "no lock");
  make_file (dir, ".r.raw.ferry-xyz.lock", "");
  make_file (dir, "d.vmdk.ferry-00000000000a", "no dot");

  snprintf (dest, sizeof dest, "%s/new.raw", dir);
  t = ferry_target_begin (dest, "raw", 0);
  assert_non_null (t);
  removed = ferry_target_removed (t);
  for (n = 0; removed[n]; n++)
    assert_non_null (strstr (removed[n], dir));
  assert_int_equal (n, 4);
  ferry_target_free (t);

  assert_false (exists_in (dir, ".d.vmdk.ferry-00000000000a"));
  assert_false (exists (path2));
  assert_false (exists_in (dir, ".o.ferry-00000000000b"));
  assert_false (exists_in (dir, ".o.ferry-00000000000b.lock"));
  assert_true (exists_in (dir, ".l.raw.ferry-00000000000c"));
  assert_true (exists_in (dir, ".p.ferry-00000000000d.lock"));
  assert_true (exists_in (outside, "precious"));
  assert_true (exists_in (outside, ".p.ferry-00000000000d"));
  assert_true (exists_in (dir, ".q.raw.ferry-00000000000e"));
  /* Left: the live pair, the planted pair, and the three look-alikes. */
  assert_int_equal (count_entries (dir), 7);
  close (live_fd);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_image_commit),
    cmocka_unit_test (test_abort_and_existing),
    cmocka_unit_test (test_messages_name_dest),
    cmocka_unit_test (test_folder_commit),
    cmocka_unit_test (test_cleanup_warning_names_leftover),
    cmocka_unit_test (test_existing_dest_swept),
    cmocka_unit_test (test_lock_errors),
    cmocka_unit_test (test_commit_by_link),
    cmocka_unit_test (test_sweep),
  };
  return cmocka_run_group_tests (tests, make_scratch_dir, remove_scratch_dir);
}
