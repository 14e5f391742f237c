/* Unit tests for images named by URI: which paths are URIs (image.c's
 * scheme routing), what bad URIs give (libnbd parses them; ferry must say
 * what is wrong, name the URI, and never touch a file of that name), and
 * the metadata context calls on an image that offers only
 * base:allocation.  No server is needed: every URI here fails before or
 * at connect. */
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

#include <ferry/ferry.h>

static void
test_which_paths_are_uris (void **state)
{
  static const char *const uris[] = {
    "nbd://example.com/disk", "nbd://127.0.0.1:10809/", "nbds://host/x",
    "nbd+unix:///?socket=/tmp/s", "nbds+unix://alice@/?socket=s",
    "nbd+vsock:///", "nbds+vsock://2:10809/", "NBD://host/", "Nbd+Unix:///",
    "nbd://",
  };
  static const char *const files[] = {
    "disk.qcow2", "/var/lib/disk.raw", "nbd", "nbd:", "nbd:/x", "nbd:x",
    "http://host/disk", "file:///tmp/x", "./nbd://x", "dir/nbd://x",
    "nbd+tcp://host/", "nbdx://host/", "://", "", "nbd+unix:",
  };
  size_t i;

  for (i = 0; i < sizeof uris / sizeof uris[0]; i++) {
    if (!ferry_image_is_uri (uris[i]))
      fail_msg ("%s: not taken as a URI", uris[i]);
  }
  for (i = 0; i < sizeof files / sizeof files[0]; i++) {
    if (ferry_image_is_uri (files[i]))
      fail_msg ("%s: taken as a URI", files[i]);
  }
  assert_string_equal (ferry_image_probe ("nbd://example.com/"), "nbd");
}

/* Open URI; it must fail with a message that names it and contains
 * WANT. */
static void
expect_open_failure (const char *uri, const char *format, unsigned flags,
                     const char *want)
{
  struct ferry_image *img = ferry_image_open (uri, format, flags);

  if (img != NULL) {
    ferry_image_close (img);
    fail_msg ("%s: opened", uri);
  }
  if (strstr (ferry_get_error (), uri) == NULL)
    fail_msg ("%s: the message does not name it: %s", uri, ferry_get_error ());
  if (strstr (ferry_get_error (), want) == NULL)
    fail_msg ("%s: the message lacks '%s': %s", uri, want, ferry_get_error ());
  assert_int_not_equal (ferry_get_errno (), 0);
}

static void
test_bad_uris (void **state)
{
  char sock[] = "/tmp/ferry-test-nbd-uri.XXXXXX";
  char *missing;
  int fd = mkstemp (sock);

  assert_int_not_equal (fd, -1);
  close (fd);
  unlink (sock);
  assert_int_not_equal (asprintf (&missing, "nbd+unix:///?socket=%s", sock),
                        -1);

  expect_open_failure ("nbd+unix:///", NULL, 0, "socket");
  expect_open_failure ("nbd://127.0.0.1:99999/", NULL, 0, "");
  expect_open_failure ("nbd://[::1/", NULL, 0, "");
  expect_open_failure ("nbd+unix:///?socket=", NULL, 0, "");
  expect_open_failure ("nbd+unix:///x?socket=/s&bogus=%zz", NULL, 0, "");
  expect_open_failure (missing, NULL, 0, "No such file or directory");
  expect_open_failure (missing, NULL, FERRY_OPEN_WRITE,
                       "No such file or directory");
  /* A format inside the export is refused before connecting. */
  expect_open_failure (missing, "qcow2", 0, "qcow2 images inside it");
  /* Never a file: nothing of that name is created or opened. */
  assert_null (ferry_image_create ("nbd://example.com/new", "raw", 1 << 20,
                                   NULL));
  assert_int_equal (ferry_get_errno (), ENOTSUP);
  assert_non_null (strstr (ferry_get_error (), "exists already"));
  assert_int_equal (access ("nbd:", F_OK), -1);
  free (missing);
}

static void
test_local_images_offer_base_allocation_only (void **state)
{
  char path[] = "/tmp/ferry-test-contexts.XXXXXX";
  struct ferry_extent_list list = { 0 };
  const char *const *names;
  struct ferry_image *img;
  int fd = mkstemp (path);

  assert_int_not_equal (fd, -1);
  assert_int_equal (ftruncate (fd, 1 << 20), 0);
  assert_int_equal (pwrite (fd, "x", 1, 65536), 1);
  close (fd);

  img = ferry_image_open (path, "raw", 0);
  assert_non_null (img);
  names = ferry_image_contexts (img);
  assert_string_equal (names[0], FERRY_CONTEXT_BASE_ALLOCATION);
  assert_null (names[1]);

  /* base:allocation by name is the extents call. */
  assert_int_equal (ferry_image_context_extents (img, "base:allocation", 0,
                                                 1 << 20, &list), 0);
  assert_true (list.len >= 1);
  assert_int_equal (list.ptr[0].offset, 0);

  assert_int_equal (ferry_image_context_extents (img, "qemu:dirty-bitmap:b",
                                                 0, 1 << 20, &list), -1);
  assert_int_equal (ferry_get_errno (), ENOENT);
  assert_non_null (strstr (ferry_get_error (), "no metadata context "
                           "'qemu:dirty-bitmap:b' (this image offers: "
                           "base:allocation)"));
  assert_int_equal (ferry_image_context_extents (img, "base:allocation",
                                                 1 << 19, 1 << 20, &list), -1);
  assert_int_equal (ferry_get_errno (), EINVAL);

  /* Read-only: nothing to write with; raw has zero, trim and extents. */
  assert_int_equal (ferry_image_capabilities (img), FERRY_CAN_EXTENTS);
  ferry_image_close (img);
  img = ferry_image_open (path, "raw", FERRY_OPEN_WRITE);
  assert_non_null (img);
  assert_int_equal (ferry_image_capabilities (img),
                    FERRY_CAN_WRITE | FERRY_CAN_ZERO | FERRY_CAN_TRIM |
                    FERRY_CAN_EXTENTS);
  ferry_image_close (img);
  ferry_extent_list_free (&list);
  unlink (path);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_which_paths_are_uris),
    cmocka_unit_test (test_bad_uris),
    cmocka_unit_test (test_local_images_offer_base_allocation_only),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
