/* What the ferry fuzz harnesses share: the input as a file.
 *
 * ferry opens images by path, so each input is written to one memfd that
 * lives for the whole run and is reached as /proc/self/fd/N.  Nothing
 * touches the disk, and no file name in the input can reach another file
 * (the harnesses open without backing files).
 */
#ifndef FERRY_FUZZ_COMMON_H
#define FERRY_FUZZ_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ferry/ferry.h>

/* Write DATA into the harness's memfd and return its path, or abort: a
 * harness that cannot make its file would only report false results. */
static inline const char *
fuzz_input_path (const uint8_t *data, size_t size)
{
  static int fd = -1;
  static char path[64];
  size_t done = 0;

  if (fd == -1) {
    fd = memfd_create ("ferry-fuzz-input", MFD_CLOEXEC);
    if (fd == -1) {
      perror ("memfd_create");
      abort ();
    }
    snprintf (path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate (fd, 0) == -1) {
    perror ("ftruncate");
    abort ();
  }
  while (done < size) {
    ssize_t r = pwrite (fd, data + done, size - done, done);
    if (r <= 0) {
      if (r == -1 && errno == EINTR)
        continue;
      perror ("pwrite");
      abort ();
    }
    done += r;
  }
  return path;
}

/* Read what an open image describes and holds, within bounds: every fact,
 * the extents of the first READ_LIMIT bytes (and of the last cluster or
 * so), and the data of those extents. */
#define FUZZ_READ_LIMIT   (4u << 20)
#define FUZZ_MAX_EXTENTS  4096
static inline void
fuzz_exercise_image (struct ferry_image *img)
{
  struct ferry_image_info info;
  struct ferry_extent_list list = { 0 };
  static uint8_t buf[1 << 16];
  uint64_t size = ferry_image_size (img), offset, limit;
  uint64_t read_budget = FUZZ_READ_LIMIT;
  size_t i, calls = 0;

  if (ferry_image_describe (img, &info) == 0) {
    /* Touch every string so the sanitizers see a bad pointer. */
    volatile size_t sink = 0;
    for (i = 0; i < info.nr_facts; i++) {
      if (info.facts[i].key)
        sink += info.facts[i].key[0];
      if (info.facts[i].kind == FERRY_FACT_STRING && info.facts[i].string)
        for (const char *p = info.facts[i].string; *p; p++)
          sink += *p;
    }
    for (i = 0; i < info.nr_snapshots; i++) {
      if (info.snapshots[i].id)
        sink += info.snapshots[i].id[0];
      if (info.snapshots[i].name)
        sink += info.snapshots[i].name[0];
    }
    if (info.backing_file)
      sink += info.backing_file[0];
    if (info.data_file)
      sink += info.data_file[0];
    (void) sink;
  }

  /* The front of the disk, then its last 64 KiB (offsets near the virtual
   * size catch arithmetic that only large offsets overflow). */
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 0) {
      offset = 0;
      limit = size < FUZZ_READ_LIMIT ? size : FUZZ_READ_LIMIT;
    }
    else {
      if (size <= FUZZ_READ_LIMIT)
        break;
      offset = size - (1u << 16);
      limit = size;
    }
    while (offset < limit && calls++ < FUZZ_MAX_EXTENTS) {
      uint64_t expect = offset;
      list.len = 0;
      if (ferry_image_extents (img, offset, limit - offset, &list) == -1)
        break;
      if (list.len == 0)
        abort ();           /* the contract: at least one extent */
      for (i = 0; i < list.len; i++) {
        const struct ferry_extent *e = &list.ptr[i];
        uint64_t o = e->offset, end;
        /* Extents are contiguous from OFFSET, non-empty, inside the disk. */
        if (e->offset != expect || e->length == 0 ||
            e->length > size - e->offset)
          abort ();
        expect = e->offset + e->length;
        end = expect < limit ? expect : limit;
        while (o < end && read_budget > 0 && !(e->flags & FERRY_EXTENT_ZERO)) {
          size_t n = end - o < sizeof buf ? end - o : sizeof buf;
          if (n > read_budget)
            n = read_budget;
          if (ferry_image_pread (img, buf, n, o) == -1)
            break;
          read_budget -= n;
          o += n;
        }
      }
      offset = expect;
    }
  }
  ferry_extent_list_free (&list);

  /* A read that straddles the end must fail cleanly, not read past it. */
  if (size >= 512)
    (void) ferry_image_pread (img, buf, 1024, size - 512);
}

#endif /* FERRY_FUZZ_COMMON_H */
