/* Unit tests for lib/common: errors, vectors, zero detection. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/util.h"
#include "common/vector.h"

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
    cmocka_unit_test (test_error_errno_appends_strerror),
    cmocka_unit_test (test_vector_grows),
    cmocka_unit_test (test_vector_overflow_is_refused),
    cmocka_unit_test (test_is_zero),
    cmocka_unit_test (test_byte_order),
    cmocka_unit_test (test_strbuf_grows),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
