/* libFuzzer harness for the VHDX driver.
 *
 * A VHDX file is at least 4 MiB (a 1 MiB header section, then the log,
 * the BAT and the metadata, each 1 MiB aligned), but mostly zeroes, and
 * the fuzzers take inputs of up to 128 KiB.  So the input describes a
 * sparse file: a little-endian u64 file size (capped at 64 MiB), then
 * records of a u32 offset in units of 16 bytes, a u16 length and that
 * many bytes.  fuzz/make-seeds.sh encodes real images this way
 * (tests/shell/vhdx-tool.py sparse-encode).
 *
 * Each input is opened read-only (describe, extents, reads, ferry check),
 * then read-write (a log is replayed to disk, a few writes and zeroes,
 * flush), without parents.
 */
#include <fcntl.h>
#include <string.h>

#include "fuzz-common.h"

#define MAX_FILE_SIZE (64u << 20)

/* Build the sparse file described by DATA in the harness's memfd and
 * return its path, or NULL when the input is too short to say a size. */
static const char *
build_file (const uint8_t *data, size_t size)
{
  const char *path = fuzz_input_path (NULL, 0);
  uint64_t file_size;
  size_t pos = 8;
  int fd;

  if (size < 8)
    return NULL;
  memcpy (&file_size, data, 8);
  file_size = le64toh (file_size) % (MAX_FILE_SIZE + 1);
  fd = open (path, O_RDWR | O_CLOEXEC);
  if (fd == -1 || ftruncate (fd, file_size) == -1) {
    perror (path);
    abort ();
  }
  while (pos + 6 <= size) {
    uint32_t off;
    uint16_t len;
    uint64_t at;

    memcpy (&off, data + pos, 4);
    memcpy (&len, data + pos + 4, 2);
    pos += 6;
    at = (uint64_t) le32toh (off) * 16;
    len = le16toh (len);
    if (len > size - pos)
      len = size - pos;
    if (at < file_size) {
      size_t n = file_size - at < len ? file_size - at : len;
      if (pwrite (fd, data + pos, n, at) != (ssize_t) n) {
        perror ("pwrite");
        abort ();
      }
    }
    pos += len;
  }
  close (fd);
  return path;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static uint8_t buf[65536];
  const char *path = build_file (data, size);
  struct ferry_check_result r;
  struct ferry_image *img;
  uint64_t vsize;

  if (path == NULL)
    return 0;
  img = ferry_image_open (path, "vhdx", FERRY_OPEN_NO_BACKING);
  if (img) {
    fuzz_exercise_image (img);
    ferry_image_close (img);
  }
  if (ferry_image_check (path, "vhdx", 0, &r) == 0 && r.nr_messages > 0 &&
      r.messages[r.nr_messages] != NULL)
    abort ();
  ferry_check_result_free (&r);

  img = ferry_image_open (path, "vhdx", FERRY_OPEN_WRITE |
                          FERRY_OPEN_NO_BACKING);
  if (img == NULL)
    return 0;
  vsize = ferry_image_size (img);
  memset (buf, 0xa5, sizeof buf);
  if (vsize >= sizeof buf) {
    (void) ferry_image_pwrite (img, buf, sizeof buf, 0);
    (void) ferry_image_pwrite (img, buf, 4096, vsize - 4096);
    (void) ferry_image_zero (img, 8192, vsize / 2 & ~4095ull,
                             FERRY_ZERO_MAY_TRIM);
    (void) ferry_image_pread (img, buf, sizeof buf, 0);
  }
  (void) ferry_image_flush (img);
  ferry_image_close (img);
  return 0;
}
