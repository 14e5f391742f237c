/* The host-file layer: zeroing, holes and the size of the file under an
 * image; see hostfile.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostfile.h"
#include "internal.h"
#include "lock.h"
#include "../common/error.h"
#include "../common/util.h"

/* What the file of mode MODE is, for a message refusing it. */
static const char *
file_kind (mode_t mode)
{
  switch (mode & S_IFMT) {
  case S_IFIFO: return "a FIFO (named pipe)";
  case S_IFSOCK: return "a socket";
  case S_IFCHR: return "a character device";
  case S_IFDIR: return "a directory";
  case S_IFLNK: return "a symbolic link";
  default: return "not a file";
  }
}

int
hostfile_open (const char *path, unsigned flags, bool create,
               struct stat *st)
{
  int oflags = (flags & FERRY_OPEN_WRITE) ? O_RDWR : O_RDONLY;
  struct stat sb;
  int fd, fl;

  if (st == NULL)
    st = &sb;
  if (create)
    oflags |= O_CREAT | O_EXCL;
  fd = open (path, oflags | O_NONBLOCK | O_CLOEXEC, 0644);
  if (fd == -1)
    return ferry_error_errno (errno, "%s", path);
  if (fstat (fd, st) == -1) {
    ferry_error_errno (errno, "%s: stat", path);
    goto err;
  }
  if (!S_ISREG (st->st_mode) && !S_ISBLK (st->st_mode)) {
    ferry_error (EINVAL, "%s: %s, not an image (a regular file or a block "
                 "device)", path, file_kind (st->st_mode));
    goto err;
  }
  fl = fcntl (fd, F_GETFL);
  if (fl == -1 || fcntl (fd, F_SETFL, fl & ~O_NONBLOCK) == -1) {
    ferry_error_errno (errno, "%s: fcntl", path);
    goto err;
  }
  return fd;

 err:
  close (fd);
  if (create)
    unlink (path);
  return -1;
}

int
hostfile_open_locked (const char *path, unsigned flags, bool create,
                      struct stat *st)
{
  int fd = hostfile_open (path, flags, create, st);

  if (fd != -1 && image_lock (fd, path, flags) == -1) {
    close (fd);
    if (create)
      unlink (path);
    return -1;
  }
  return fd;
}

/* True when ERR means "this file cannot do that", for good (the top of
 * hostfile.h): the caps remember it. */
static bool
not_supported (int err)
{
  return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS ||
         err == ENOTTY;
}

/* True when ERR means "not this request": fall back for it alone. */
static bool
refused_here (int err)
{
  return err == EINVAL;
}

void
hostfile_caps_init (struct hostfile_caps *caps, int fd)
{
  struct stat st;
  bool is_block = fstat (fd, &st) == 0 && S_ISBLK (st.st_mode);

  __atomic_store_n (&caps->no_punch_hole, is_block, __ATOMIC_RELAXED);
  __atomic_store_n (&caps->no_zero_range, false, __ATOMIC_RELAXED);
  __atomic_store_n (&caps->no_zeroout, !is_block, __ATOMIC_RELAXED);
  __atomic_store_n (&caps->no_seek_data, is_block, __ATOMIC_RELAXED);
}

/* After a failed step of the ladder (errno set): remember a "cannot" in
 * *NO, and say whether to fall back (0) or fail (-1, error set). */
static int
ladder_failed (bool *no, const char *path, const char *what, uint64_t count,
               uint64_t offset)
{
  if (not_supported (errno)) {
    __atomic_store_n (no, true, __ATOMIC_RELAXED);
    return 0;
  }
  if (refused_here (errno))
    return 0;
  return ferry_error_errno (errno, "%s: %s %" PRIu64 " bytes at offset 0x%"
                            PRIx64, path, what, count, offset);
}

int
hostfile_zero (int fd, uint64_t offset, uint64_t count, bool may_trim,
               struct hostfile_caps *caps, const char *path)
{
  static const uint8_t zeroes[1 << 16];

  if (may_trim && !__atomic_load_n (&caps->no_punch_hole, __ATOMIC_RELAXED)) {
    if (fallocate_fd (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                      count) == 0)
      return 0;
    if (ladder_failed (&caps->no_punch_hole, path, "punching a hole of",
                       count, offset) == -1)
      return -1;
  }
  if (!__atomic_load_n (&caps->no_zero_range, __ATOMIC_RELAXED)) {
    if (fallocate_fd (fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset,
                      count) == 0)
      return 0;
    if (ladder_failed (&caps->no_zero_range, path, "zeroing", count,
                       offset) == -1)
      return -1;
  }
  if (!__atomic_load_n (&caps->no_zeroout, __ATOMIC_RELAXED) &&
      IS_ALIGNED (offset | count, 512)) {
    if (zeroout_fd (fd, offset, count) == 0)
      return 0;
    if (ladder_failed (&caps->no_zeroout, path, "BLKZEROOUT of", count,
                       offset) == -1)
      return -1;
  }
  while (count > 0) {
    size_t n = MIN (count, sizeof zeroes);
    if (full_pwrite (fd, zeroes, n, offset) == -1)
      return ferry_error_errno (errno, "%s: writing zeroes at offset 0x%"
                                PRIx64, path, offset);
    offset += n;
    count -= n;
  }
  return 0;
}

/* Pieces of this size that are all zeroes are left out of sparse writes:
 * the file system's block, and the copy engine's zero block. */
#define SPARSE_PIECE 4096u

int
hostfile_write_sparse (int fd, const void *buf, size_t count,
                       uint64_t offset, const char *path)
{
  const uint8_t *p = buf;
  size_t pos = 0, start;

  while (pos < count) {
    /* The end of the piece that holds byte POS. */
    size_t end = MIN (count, (size_t) (ROUND_UP (offset + pos + 1,
                                                 (uint64_t) SPARSE_PIECE)
                                       - offset));
    if (is_zero (p + pos, end - pos)) {
      pos = end;
      continue;
    }
    start = pos;
    pos = end;
    while (pos < count) {
      end = MIN (count, pos + SPARSE_PIECE);
      if (is_zero (p + pos, end - pos))
        break;
      pos = end;
    }
    if (full_pwrite (fd, p + start, pos - start, offset + start) == -1)
      return ferry_error_errno (errno, "%s: writing %zu bytes at offset 0x%"
                                PRIx64, path, pos - start, offset + start);
  }
  return 0;
}

int
hostfile_run (int fd, uint64_t offset, uint64_t len,
              struct hostfile_caps *caps, const char *path, bool *hole,
              uint64_t *run)
{
  off_t data, end;

  *hole = false;
  *run = len;
  if (__atomic_load_n (&caps->no_seek_data, __ATOMIC_RELAXED))
    return 0;
  data = lseek (fd, offset, SEEK_DATA);
  if (data == -1) {
    if (errno == ENXIO) {       /* no data from OFFSET on */
      *hole = true;
      return 0;
    }
    if (not_supported (errno)) {
      __atomic_store_n (&caps->no_seek_data, true, __ATOMIC_RELAXED);
      return 0;
    }
    if (refused_here (errno))   /* all data, this time */
      return 0;
    return ferry_error_errno (errno, "%s: SEEK_DATA at offset 0x%" PRIx64,
                              path, offset);
  }
  if ((uint64_t) data > offset) {
    *hole = true;
    *run = MIN ((uint64_t) data - offset, len);
    return 0;
  }
  end = lseek (fd, offset, SEEK_HOLE);
  if (end == -1)
    return ferry_error_errno (errno, "%s: SEEK_HOLE at offset 0x%" PRIx64,
                              path, offset);
  if ((uint64_t) end > offset)
    *run = MIN ((uint64_t) end - offset, len);
  return 0;
}

int
hostfile_extents (int fd, uint64_t host, uint64_t len, uint64_t offset,
                  uint32_t hole_flags, struct hostfile_caps *caps,
                  const char *path, struct ferry_extent_list *list)
{
  uint64_t start = offset, end = offset + len;

  while (len > 0) {
    uint64_t run, a = offset, b, ha, hb;
    bool hole;
    if (hostfile_run (fd, host, len, caps, path, &hole, &run) == -1)
      return -1;
    b = a + run;
    /* The file system's blocks need not line up with the guest's (qemu-img
     * puts VHD data 512 bytes past a page): a hole gives the partial 4 KiB
     * guest blocks at its edges to the data around it, so the copy reads
     * and writes whole guest blocks. */
    ha = a == start ? a : ROUND_UP (a, (uint64_t) SPARSE_PIECE);
    hb = b == end ? b : ROUND_DOWN (b, (uint64_t) SPARSE_PIECE);
    if (!hole || ha >= hb) {
      ha = hb = b;
      hole = false;
    }
    if ((ha > a && ferry_extent_list_append (list, a, ha - a, 0) == -1) ||
        (hb > ha && ferry_extent_list_append (list, ha, hb - ha,
                                              hole_flags) == -1) ||
        (b > hb && ferry_extent_list_append (list, hb, b - hb, 0) == -1))
      return ferry_error (ENOMEM, "%s: out of memory", path);
    host += run;
    offset += run;
    len -= run;
  }
  return 0;
}

int
hostfile_write_table32 (int fd, const uint32_t *table, uint32_t lo,
                        uint32_t hi, uint64_t offset, bool big_endian,
                        const char *path, const char *what)
{
  uint32_t *buf, i;
  int r = 0;

  if (lo >= hi)
    return 0;
  buf = malloc ((size_t) (hi - lo) * 4);
  if (buf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", path);
  for (i = lo; i < hi; i++)
    buf[i - lo] = big_endian ? htobe32 (table[i]) : htole32 (table[i]);
  if (full_pwrite (fd, buf, (size_t) (hi - lo) * 4,
                   offset + (uint64_t) lo * 4) == -1)
    r = ferry_error_errno (errno, "%s: writing the %s at offset 0x%" PRIx64,
                           path, what, offset + (uint64_t) lo * 4);
  free (buf);
  return r;
}

int
hostfile_size (int fd, const char *path, uint64_t *size)
{
  struct stat st;
  off_t end;

  if (fstat (fd, &st) == -1)
    return ferry_error_errno (errno, "%s: stat", path);
  if (!S_ISBLK (st.st_mode)) {
    *size = st.st_size;
    return 0;
  }
  end = lseek (fd, 0, SEEK_END);
  if (end == -1)
    return ferry_error_errno (errno, "%s: finding the size of the device",
                              path);
  *size = end;
  return 0;
}

/* How much data may be on its way to the disk, its write-back started
 * but not waited for, before a writer waits for the oldest range. */
#define WRITEBACK_WINDOW (32u << 20)

void
hostfile_start_writeback (const struct ferry_image *img, int fd,
                          uint64_t offset, uint64_t count)
{
  struct image_writeback *wb = img->writeback;
  struct writeback_range done[WRITEBACK_RING];
  unsigned n = 0, i;

  if (wb == NULL)
    return;
  (void) sync_file_range (fd, offset, count, SYNC_FILE_RANGE_WRITE);
  pthread_mutex_lock (&wb->lock);
  while (wb->len > 0 &&
         (wb->len == WRITEBACK_RING || wb->bytes > WRITEBACK_WINDOW)) {
    done[n] = wb->ring[wb->head];
    wb->bytes -= done[n++].count;
    wb->head = (wb->head + 1) % WRITEBACK_RING;
    wb->len--;
  }
  wb->ring[(wb->head + wb->len++) % WRITEBACK_RING] =
    (struct writeback_range) { fd, offset, count };
  wb->bytes += count;
  pthread_mutex_unlock (&wb->lock);
  /* Outside the lock: other writers go on meanwhile. */
  for (i = 0; i < n; i++)
    (void) sync_file_range (done[i].fd, done[i].offset, done[i].count,
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                            SYNC_FILE_RANGE_WAIT_AFTER);
}
