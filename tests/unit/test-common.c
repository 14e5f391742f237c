/* Unit tests for lib/common: errors, vectors, zero detection, stopping,
 * fault injection (with the host-file layer's zeroing, which it must
 * see). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "common/stop.h"
#include "common/fault.h"
#include "common/util.h"
#include "common/vector.h"
#include "image/hostfile.h"

DEFINE_VECTOR_TYPE (int_vector, int);

/* ferry_error sets both errno and the message, and returns -1. */
static void
test_error_sets_message_and_errno (void **state)
{
  assert_int_equal (ferry_error (EINVAL, "%s: bad %d", "disk.img", 7), -1);
  assert_string_equal (ferry_get_error (), "disk.img: bad 7");
  assert_int_equal (ferry_get_errno (), EINVAL);
  ferry_error_prefix ("ferry convert");
  assert_string_equal (ferry_get_error (), "ferry convert: disk.img: bad 7");
  assert_int_equal (errno, EINVAL);
}

static void
test_error_errno_appends_strerror (void **state)
{
  ferry_error_errno (ENOSPC, "out.qcow2: write");
  assert_string_equal (ferry_get_error (),
                       "out.qcow2: write: No space left on device");
}

/* A saved error comes back whole, with the input it concerns, after a
 * later error replaced it. */
static void
test_error_save_keeps_the_input (void **state)
{
  struct error_saved saved;

  ferry_error (EINVAL, "in.vmdk: bad extent");
  ferry_error_input ("source");
  error_save (&saved);
  ferry_error (EIO, "out.qcow2: close");
  assert_null (ferry_get_error_input ());
  error_restore (&saved);
  assert_string_equal (ferry_get_error (), "in.vmdk: bad extent");
  assert_int_equal (ferry_get_errno (), EINVAL);
  assert_non_null (ferry_get_error_input ());
  assert_string_equal (ferry_get_error_input (), "source");
}

/* True when FD is readable now. */
static bool
readable (int fd)
{
  struct pollfd p = { .fd = fd, .events = POLLIN };

  return poll (&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* A stop request is seen by the flag and by the eventfd, whether it came
 * before the eventfd was made (the first call here makes it) or after;
 * it stands until cleared. */
static void
test_stop_request (void **state)
{
  int fd;

  assert_false (stop_requested ());
  ferry_request_stop ();                /* before any stop_fd () */
  assert_true (stop_requested ());
  assert_true (ferry_stop_requested ());
  fd = stop_fd ();
  assert_true (fd >= 0);
  assert_true (readable (fd));
  assert_true (readable (fd));          /* stays readable */
  ferry_clear_stop ();
  assert_false (stop_requested ());
  assert_false (readable (fd));
  ferry_request_stop ();
  ferry_request_stop ();
  assert_int_equal (stop_fd (), fd);
  assert_true (readable (fd));
  ferry_clear_stop ();
  assert_false (readable (fd));
}

/* A child that waits to be killed, with FILE (when given) open. */
static pid_t
start_child (const char *file)
{
  pid_t pid = fork ();

  assert_true (pid >= 0);
  if (pid == 0) {
    if (file && open (file, O_RDONLY) == -1)
      _exit (1);
    pause ();
    _exit (0);
  }
  return pid;
}

static bool
has_pid (const pid_t *v, size_t n, pid_t pid)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (v[i] == pid)
      return true;
  return false;
}

/* The children of this thread, and of the process, are listed. */
static void
test_list_children (void **state)
{
  pid_t child = start_child (NULL), *v;
  size_t n;

  assert_int_equal (list_children (gettid (), &v, &n), 0);
  assert_true (has_pid (v, n, child));
  free (v);
  assert_int_equal (list_children (0, &v, &n), 0);
  assert_true (has_pid (v, n, child));
  free (v);
  kill (child, SIGKILL);
  waitpid (child, NULL, 0);
  assert_int_equal (list_children (gettid (), &v, &n), 0);
  assert_false (has_pid (v, n, child));
  free (v);
}

/* The vl.XXXXXX file a process has open is noted and removed once it is
 * gone; another file it has open is not. */
static void
test_qemu_temp_files (void **state)
{
  char dir[] = "/tmp/ferry-test-common-XXXXXX", vl[64], other[64];
  struct qemu_temp_files t = { 0 };
  pid_t a, b;
  int fd;

  assert_non_null (mkdtemp (dir));
  snprintf (vl, sizeof vl, "%s/vl.Ab12Z3", dir);
  snprintf (other, sizeof other, "%s/disk.raw", dir);
  assert_true ((fd = open (vl, O_CREAT | O_WRONLY, 0600)) >= 0);
  close (fd);
  assert_true ((fd = open (other, O_CREAT | O_WRONLY, 0600)) >= 0);
  close (fd);
  a = start_child (vl);
  b = start_child (other);
  usleep (200 * 1000);                  /* both have opened their file */
  note_qemu_temp_files (a, &t);
  note_qemu_temp_files (b, &t);
  assert_int_equal (t.nr, 1);
  assert_string_equal (t.paths[0], vl);
  kill (a, SIGKILL);
  kill (b, SIGKILL);
  waitpid (a, NULL, 0);
  waitpid (b, NULL, 0);
  remove_qemu_temp_files (&t);
  assert_int_equal (t.nr, 0);
  assert_int_equal (access (vl, F_OK), -1);
  assert_int_equal (access (other, F_OK), 0);
  unlink (other);
  rmdir (dir);
}

/* While an alias is registered, messages name the destination: the
 * temporary name itself, paths through it, and files named after it. */
static void
test_error_alias_names_the_destination (void **state)
{
  const char *tmp = ".d.vmdk.ferry-0123456789ab";

  assert_int_equal (error_alias_add (tmp, "d.vmdk"), 0);
  assert_int_equal (error_alias_add (".out.ferry-ba9876543210", "out"), 0);
  ferry_error (EIO, "dir/.d.vmdk.ferry-0123456789ab: write");
  assert_string_equal (ferry_get_error (), "dir/d.vmdk: write");
  ferry_error (EIO, "dir/.d.vmdk-s002.ferry-0123456789ab: extent of "
               ".d.vmdk.ferry-0123456789ab");
  assert_string_equal (ferry_get_error (), "dir/d-s002.vmdk: extent of d.vmdk");
  ferry_error (EIO, "/a/.out.ferry-ba9876543210/disk.qcow2: short");
  assert_string_equal (ferry_get_error (), "/a/out/disk.qcow2: short");
  ferry_error_prefix ("in .out.ferry-ba9876543210");
  assert_string_equal (ferry_get_error (), "in out: /a/out/disk.qcow2: short");
  /* Another tag, or a '/' between the parts, is left alone. */
  ferry_error (EIO, ".d.vmdk.ferry-0123456789ac .d.vmdk/x.ferry-0123456789ab");
  assert_string_equal (ferry_get_error (),
                       ".d.vmdk.ferry-0123456789ac .d.vmdk/x.ferry-0123456789ab");
  error_alias_remove (tmp);
  error_alias_remove (".out.ferry-ba9876543210");
  ferry_error (EIO, "%s", tmp);
  assert_string_equal (ferry_get_error (), tmp);
}

/* A fault test's files: a scratch folder holding the file PATH the test
 * writes and the trace of its operations. */
struct fault_files {
  char dir[64], path[80], trace[80];
};

/* Make F's folder and file; the file's descriptor, open read-write. */
static int
fault_files_make (struct fault_files *f)
{
  int fd;

  snprintf (f->dir, sizeof f->dir, "/tmp/ferry-test-fault.XXXXXX");
  assert_non_null (mkdtemp (f->dir));
  snprintf (f->path, sizeof f->path, "%s/f", f->dir);
  snprintf (f->trace, sizeof f->trace, "%s/trace", f->dir);
  fd = open (f->path, O_RDWR | O_CREAT | O_EXCL, 0644);
  assert_true (fd >= 0);
  return fd;
}

/* Assert that F's trace lists the N operations WANT ("1 write ", ...),
 * each on F's file; then remove F's files. */
static void
fault_files_check (struct fault_files *f, const char *const *want, int n)
{
  char line[256], *text;
  FILE *fp = fopen (f->trace, "r");
  int i = 0;

  assert_non_null (fp);
  while (fgets (line, sizeof line, fp)) {
    assert_true (i < n);
    assert_memory_equal (line, want[i], strlen (want[i]));
    text = strchr (line + strlen (want[i]), '\n');
    assert_non_null (text);
    *text = '\0';
    assert_string_equal (line + strlen (want[i]), f->path);
    i++;
  }
  fclose (fp);
  assert_int_equal (i, n);
  unlink (f->trace);
  unlink (f->path);
  rmdir (f->dir);
}

/* FERRY_FAULT=write:2:enospc fails the second write and every later
 * one, and nothing else; FERRY_FAULT_TRACE lists every operation. */
static void
test_fault_fails_from_the_nth_write (void **state)
{
  static const char *const want[] = {
    "1 write ", "2 sync ", "3 write ", "4 write ", "5 sync ",
  };
  struct fault_files f;
  int fd = fault_files_make (&f);

  setenv ("FERRY_FAULT", "write:2:enospc", 1);
  setenv ("FERRY_FAULT_TRACE", f.trace, 1);
  fault_reset ();
  assert_int_equal (full_pwrite (fd, "a", 1, 0), 0);
  assert_int_equal (sync_fd (fd), 0);
  assert_int_equal (full_pwrite (fd, "b", 1, 1), -1);
  assert_int_equal (errno, ENOSPC);
  assert_int_equal (truncate_fd (fd, 10), -1);
  assert_int_equal (errno, ENOSPC);
  assert_int_equal (datasync_fd (fd), 0);

  /* Unset, nothing fails and nothing is counted. */
  unsetenv ("FERRY_FAULT");
  unsetenv ("FERRY_FAULT_TRACE");
  fault_reset ();
  assert_int_equal (full_pwrite (fd, "c", 1, 2), 0);
  assert_int_equal (fault_state, 0);
  close (fd);
  fault_files_check (&f, want, 5);
}

/* A FERRY_FAULT that does not parse injects nothing. */
static void
test_fault_bad_spec_is_ignored (void **state)
{
  static const char *const bad[] = {
    "write", "write:0", "write:x", "write:3:boom", "nosuch:3", "write:3x",
  };
  size_t i;

  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    setenv ("FERRY_FAULT", bad[i], 1);
    fault_reset ();
    assert_int_equal (fault_point (FAULT_WRITE, -1, "x"), 0);
    assert_int_equal (fault_state, 0);
  }
  unsetenv ("FERRY_FAULT");
  fault_reset ();
}

/* The host-file layer's BLKZEROOUT step counts as a write: a fault
 * strikes there as at any write, and the trace lists it.  A regular file
 * stands in for the block device, its caps set as a device's would be
 * where punching and FALLOC_FL_ZERO_RANGE are refused: its ioctl fails
 * with ENOTTY, and zeroes are written instead, where no fault strikes. */
static void
test_fault_counts_zeroout (void **state)
{
  /* The struck BLKZEROOUT; then BLKZEROOUT and the write of zeroes. */
  static const char *const want[] = { "1 write ", "1 write ", "2 write " };
  struct hostfile_caps caps = {
    .no_punch_hole = true, .no_zero_range = true, .no_zeroout = false,
  };
  struct fault_files f;
  int fd = fault_files_make (&f);
  char buf[4096];

  memset (buf, 0xff, sizeof buf);
  assert_int_equal (full_pwrite (fd, buf, sizeof buf, 0), 0);
  setenv ("FERRY_FAULT", "write:1:eio", 1);
  setenv ("FERRY_FAULT_TRACE", f.trace, 1);
  fault_reset ();
  assert_int_equal (hostfile_zero (fd, 0, 4096, false, &caps, f.path), -1);
  assert_int_equal (ferry_get_errno (), EIO);
  assert_non_null (strstr (ferry_get_error (), "BLKZEROOUT"));
  assert_non_null (strstr (ferry_get_error (), f.path));
  assert_false (caps.no_zeroout);
  assert_int_equal (full_pread (fd, buf, sizeof buf, 0), 0);
  assert_int_equal (buf[0], (char) 0xff);

  unsetenv ("FERRY_FAULT");
  fault_reset ();
  assert_int_equal (hostfile_zero (fd, 0, 4096, false, &caps, f.path), 0);
  assert_true (caps.no_zeroout);
  assert_int_equal (full_pread (fd, buf, sizeof buf, 0), 0);
  assert_true (is_zero (buf, sizeof buf));
  unsetenv ("FERRY_FAULT_TRACE");
  fault_reset ();
  close (fd);
  fault_files_check (&f, want, 3);
}

static void
test_vector_grows (void **state)
{
  int_vector v = empty_vector;
  int i;

  for (i = 0; i < 1000; i++)
    assert_int_equal (int_vector_append (&v, i), 0);
  assert_int_equal (v.len, 1000);
  for (i = 0; i < 1000; i++)
    assert_int_equal (v.ptr[i], i);
  int_vector_reset (&v);
  assert_null (v.ptr);
}

static void
test_vector_overflow_is_refused (void **state)
{
  int_vector v = empty_vector;

  assert_int_equal (int_vector_reserve (&v, SIZE_MAX), -1);
  assert_int_equal (ferry_get_errno (), ENOMEM);
  assert_null (v.ptr);
}

static void
test_is_zero (void **state)
{
  unsigned char buf[4096];
  size_t i;

  memset (buf, 0, sizeof buf);
  assert_true (is_zero (buf, sizeof buf));
  assert_true (is_zero (buf, 0));
  assert_true (is_zero (buf, 5));
  /* A single set byte anywhere is found. */
  for (i = 0; i < sizeof buf; i += 509) {
    buf[i] = 1;
    assert_false (is_zero (buf, sizeof buf));
    buf[i] = 0;
  }
  buf[sizeof buf - 1] = 0x80;
  assert_false (is_zero (buf, sizeof buf));
}

static void
test_byte_order (void **state)
{
  unsigned char b[8];

  put_be32 (b, 0x514649fb);
  assert_memory_equal (b, "QFI\xfb", 4);
  assert_int_equal (get_be32 (b), 0x514649fb);
  put_le64 (b, 0x0102030405060708ull);
  assert_int_equal (b[0], 8);
  assert_int_equal (get_le64 (b), 0x0102030405060708ull);
}

/* A strbuf grows past any first capacity and keeps every byte. */
static void
test_strbuf_grows (void **state)
{
  struct strbuf s = { 0 };
  char want[8192];
  size_t i, n = 0;

  for (i = 0; i < 1000; i++) {
    strbuf_printf (&s, "%zu,", i);
    n += snprintf (want + n, sizeof want - n, "%zu,", i);
  }
  strbuf_printf (&s, "%s", "");
  assert_false (s.failed);
  assert_int_equal (s.len, n);
  assert_string_equal (s.buf, want);
  free (s.buf);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_error_sets_message_and_errno),
    cmocka_unit_test (test_stop_request),
    cmocka_unit_test (test_list_children),
    cmocka_unit_test (test_qemu_temp_files),
    cmocka_unit_test (test_error_errno_appends_strerror),
    cmocka_unit_test (test_error_save_keeps_the_input),
    cmocka_unit_test (test_error_alias_names_the_destination),
    cmocka_unit_test (test_fault_fails_from_the_nth_write),
    cmocka_unit_test (test_fault_bad_spec_is_ignored),
    cmocka_unit_test (test_fault_counts_zeroout),
    cmocka_unit_test (test_vector_grows),
    cmocka_unit_test (test_vector_overflow_is_refused),
    cmocka_unit_test (test_is_zero),
    cmocka_unit_test (test_byte_order),
    cmocka_unit_test (test_strbuf_grows),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
