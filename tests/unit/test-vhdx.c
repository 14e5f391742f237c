/* Unit tests for the VHDX driver: CRC-32C against the published test
 * vectors (RFC 3720, B.4), and many threads writing into the same new
 * blocks at once (vhdx-write.c note 2), read back by ferry and, where
 * qemu-img is installed, judged by qemu-img compare and check.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <ferry/error.h>
#include <ferry/image.h>

#include "common/error.h"
#include "image/vhdx-internal.h"

#define MiB (1024ull * 1024)
#define CHUNK 4096u
#define THREADS 8u
#define DISK (24 * MiB)

static char tmpdir[256];

/* The byte chunk I holds: zero for every fifth chunk (left unwritten),
 * else a value that tells chunks apart. */
static unsigned char
chunk_byte (uint64_t i)
{
  return i % 5 == 3 ? 0 : (unsigned char) ((i * 7 + 1) | 1);
}

static void
test_crc32c_vectors (void **state)
{
  unsigned char buf[32];
  size_t i;

  assert_int_equal (vhdx_crc32c ("123456789", 9), 0xe3069283u);
  memset (buf, 0, sizeof buf);
  assert_int_equal (vhdx_crc32c (buf, sizeof buf), 0x8a9136aau);
  memset (buf, 0xff, sizeof buf);
  assert_int_equal (vhdx_crc32c (buf, sizeof buf), 0x62a8ab43u);
  for (i = 0; i < sizeof buf; i++)
    buf[i] = i;
  assert_int_equal (vhdx_crc32c (buf, sizeof buf), 0x46dd794eu);
  /* In pieces, as the log's checksum is computed. */
  assert_int_equal (vhdx_crc32c_update (vhdx_crc32c_update (0, buf, 5),
                                        buf + 5, sizeof buf - 5),
                    0x46dd794eu);
}

struct writer {
  struct ferry_image *img;
  unsigned id;
  int failed;
};

/* Write every THREADS-th chunk, starting at the thread's id, so the
 * threads take turns inside every block. */
static void *
writer_thread (void *arg)
{
  struct writer *w = arg;
  unsigned char buf[CHUNK];
  uint64_t i;

  for (i = w->id; i < DISK / CHUNK; i += THREADS) {
    if (chunk_byte (i) == 0)
      continue;
    memset (buf, chunk_byte (i), sizeof buf);
    if (ferry_image_pwrite (w->img, buf, sizeof buf, i * CHUNK) == -1)
      w->failed++;
  }
  return NULL;
}

static void
test_concurrent_writes (void **state)
{
  char path[300], raw[300], cmd[1024];
  struct writer w[THREADS];
  unsigned char buf[CHUNK];
  struct ferry_image *img;
  FILE *fp;
  uint64_t i;
  unsigned t;

  snprintf (path, sizeof path, "%s/conc.vhdx", tmpdir);
  snprintf (raw, sizeof raw, "%s/conc.raw", tmpdir);
  unlink (path);
  img = ferry_image_create (path, "vhdx", DISK, "block_size=1M");
  assert_non_null (img);
  for (t = 0; t < THREADS; t++) {
    w[t] = (struct writer) { .img = img, .id = t };
  }
  {
    pthread_t th[THREADS];
    for (t = 0; t < THREADS; t++)
      assert_int_equal (pthread_create (&th[t], NULL, writer_thread, &w[t]),
                        0);
    for (t = 0; t < THREADS; t++) {
      pthread_join (th[t], NULL);
      assert_int_equal (w[t].failed, 0);
    }
  }
  assert_int_equal (ferry_image_flush (img), 0);
  assert_int_equal (ferry_image_close (img), 0);

  /* Every chunk reads back as written; each block got one place. */
  img = ferry_image_open (path, "vhdx", 0);
  assert_non_null (img);
  fp = fopen (raw, "w");
  assert_non_null (fp);
  for (i = 0; i < DISK / CHUNK; i++) {
    size_t k;
    assert_int_equal (ferry_image_pread (img, buf, sizeof buf, i * CHUNK), 0);
    for (k = 0; k < sizeof buf; k++)
      if (buf[k] != chunk_byte (i))
        fail_msg ("chunk %" PRIu64 " byte %zu: 0x%02x, expected 0x%02x",
                  i, k, buf[k], chunk_byte (i));
    assert_int_equal (fwrite (buf, 1, sizeof buf, fp), sizeof buf);
  }
  assert_int_equal (fclose (fp), 0);
  {
    struct vhdx_image *v = (struct vhdx_image *) img;
    uint64_t b, c;
    for (b = 0; b < v->data_blocks; b++)
      for (c = b + 1; c < v->data_blocks; c++)
        assert_true ((v->bat[vhdx_payload_index (v, b)] &
                      VHDX_BAT_OFFSET_MASK) !=
                     (v->bat[vhdx_payload_index (v, c)] &
                      VHDX_BAT_OFFSET_MASK));
  }
  assert_int_equal (ferry_image_close (img), 0);

  /* The peer's judgement, when it is installed. */
  if (system ("command -v qemu-img >/dev/null 2>&1") == 0) {
    snprintf (cmd, sizeof cmd, "qemu-img compare -q -f raw -F vhdx '%s' '%s' "
              "&& qemu-img check -q -f vhdx '%s'", raw, path, path);
    assert_int_equal (system (cmd), 0);
  }
}

/* A header that names a log with nothing valid in it: read as an empty
 * log, as qemu-img reads it, but refused with FERRY_OPEN_STRICT. */
static void
test_log_guid_without_log (void **state)
{
  static const uint64_t where[2] = { VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET };
  unsigned char h[VHDX_HEADER_SIZE];
  struct ferry_image *img;
  char path[300];
  int fd, i;

  snprintf (path, sizeof path, "%s/logguid.vhdx", tmpdir);
  unlink (path);
  img = ferry_image_create (path, "vhdx", 8 * MiB, NULL);
  assert_non_null (img);
  assert_int_equal (ferry_image_close (img), 0);
  fd = open (path, O_RDWR);
  assert_true (fd >= 0);
  for (i = 0; i < 2; i++) {
    uint32_t crc;
    assert_int_equal (pread (fd, h, sizeof h, where[i]), sizeof h);
    memset (h + VHDX_HDR_LOG_GUID, 0x5a, 16);
    memset (h + VHDX_HDR_CHECKSUM, 0, 4);
    crc = htole32 (vhdx_crc32c (h, sizeof h));
    memcpy (h + VHDX_HDR_CHECKSUM, &crc, 4);
    assert_int_equal (pwrite (fd, h, sizeof h, where[i]), sizeof h);
  }
  close (fd);

  img = ferry_image_open (path, "vhdx", 0);
  assert_non_null (img);
  assert_int_equal (ferry_image_close (img), 0);
  img = ferry_image_open (path, "vhdx", FERRY_OPEN_STRICT);
  assert_null (img);
  assert_non_null (strstr (ferry_get_error (), "no valid entry sequence"));
}

static int
setup (void **state)
{
  const char *t = getenv ("TMPDIR");

  snprintf (tmpdir, sizeof tmpdir, "%s/ferry-test-vhdx.XXXXXX",
            t ? t : "/tmp");
  return mkdtemp (tmpdir) ? 0 : -1;
}

static int
teardown (void **state)
{
  char cmd[400];

  snprintf (cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system (cmd) == 0 ? 0 : -1;
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_crc32c_vectors),
    cmocka_unit_test (test_concurrent_writes),
    cmocka_unit_test (test_log_guid_without_log),
  };

  return cmocka_run_group_tests (tests, setup, teardown);
}
