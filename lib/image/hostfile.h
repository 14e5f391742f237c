/* The host-file layer: what every driver that keeps an image in a file
 * or block device of the host (raw, vhd, vdi, vhdx, ...) asks of that
 * file, written once.
 *
 * - Zeroing (hostfile_zero): punch a hole when trimming is allowed, else
 *   FALLOC_FL_ZERO_RANGE, else BLKZEROOUT on a block device, else writes
 *   of zeroes.  One errno rule for every step: EOPNOTSUPP, ENOTSUP,
 *   ENOSYS and ENOTTY mean "this file cannot do that" and are remembered
 *   for good in struct hostfile_caps; EINVAL means "not this range" (a
 *   range not aligned to a 4Kn device's blocks) and falls back for that
 *   request alone; anything else is an error.
 * - Holes (hostfile_run, hostfile_extents): SEEK_DATA / SEEK_HOLE, all
 *   data where the file system cannot tell.  Formats that keep guest
 *   blocks at offsets of one file (a fixed VHD, a static VDI, an
 *   allocated block of a dynamic one or of a VHDX) get their finer
 *   extents from the file system: a block allocated in the image but a
 *   hole in the file reads as zeroes, and the copy engine need not read
 *   it.
 * - Data goes through the I/O primitives of lib/common/util.h
 *   (full_pwrite, full_pread, datasync_fd, fallocate_fd, zeroout_fd,
 *   ...), never a bare pwrite, fallocate, ioctl or fsync, so that the
 *   fault injection there (fault.h) sees every write and flush.
 */
#ifndef FERRY_HOSTFILE_H
#define FERRY_HOSTFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include <ferry/image.h>

/* Open PATH, a file of an image, for reading, or reading and writing
 * with FERRY_OPEN_WRITE in FLAGS; with CREATE, as a new file (O_EXCL,
 * mode 0644 less the umask).  The open never waits (O_NONBLOCK, cleared
 * once open), so a FIFO cannot hang it, and anything but a regular file
 * or a block device is refused with EINVAL and a message naming PATH and
 * what it is.  *ST (NULL: not wanted) gets its status.  Takes no lock:
 * image_lock (lock.h) does.  The descriptor, close-on-exec, or -1 with
 * the error set. */
int hostfile_open (const char *path, unsigned flags, bool create,
                   struct stat *st /* OUT */);

/* hostfile_open, then image_lock with FLAGS: how a driver opens a file
 * of its image beside the one image.c opened (an extent, a data file). */
int hostfile_open_locked (const char *path, unsigned flags, bool create,
                          struct stat *st /* OUT */);

/* What the file said it cannot do, or must not be asked; all false
 * (everything worth a try) for a zeroed struct, hostfile_caps_init sets
 * it for the kind of file.  Read and set with relaxed atomics only, so
 * many threads may share one. */
struct hostfile_caps {
  bool no_punch_hole;
  bool no_zero_range;
  bool no_zeroout;              /* BLKZEROOUT: block devices only */
  bool no_seek_data;            /* also set by a driver whose file alone
                                 * does not say what a range holds */
};

/* Set CAPS for the file FD: a block device is never punched (raw's rule
 * since its first version: a device keeps its blocks) nor asked for holes,
 * a regular file never gets BLKZEROOUT. */
void hostfile_caps_init (struct hostfile_caps *caps, int fd);

/* Make COUNT bytes at host OFFSET of FD read as zeroes, the cheapest way
 * the file allows (see the top of the file).  PATH is for messages.  0,
 * or -1 with the error set. */
int hostfile_zero (int fd, uint64_t offset, uint64_t count, bool may_trim,
                   struct hostfile_caps *caps, const char *path);

/* Write COUNT bytes of BUF at host OFFSET of FD, leaving out the 4 KiB
 * pieces (aligned in the file) that are all zeroes.  Only for a range that
 * reads as zeroes already, such as a block the image has just taken at
 * the end of its file: the pieces left out stay holes.  The copy engine
 * writes whole blocks (it decides per target cluster), so a block half
 * data, half zeroes would otherwise cost its zeroes on disk.  0, or -1
 * with the error set. */
int hostfile_write_sparse (int fd, const void *buf, size_t count,
                           uint64_t offset, const char *path);

/* The run of FD that starts at host OFFSET, at most LEN bytes long: data,
 * or a hole (*HOLE).  *RUN is its length, at least 1 byte.  Where the
 * file system cannot tell, everything is data.  0, or -1 with the error
 * set. */
int hostfile_run (int fd, uint64_t offset, uint64_t len,
                  struct hostfile_caps *caps, const char *path,
                  bool *hole /* OUT */, uint64_t *run /* OUT */);

/* Append to LIST the extents of LEN guest bytes at guest OFFSET that are
 * stored in FD at host HOST: data, or HOLE_FLAGS where the file has a
 * hole (FERRY_EXTENT_ZERO for a block the image holds, with
 * FERRY_EXTENT_HOLE too where nothing holds it).  Holes are trimmed to
 * whole 4 KiB guest blocks inside the range (the rest counts as data).
 * 0, or -1 with the error set. */
int hostfile_extents (int fd, uint64_t host, uint64_t len, uint64_t offset,
                      uint32_t hole_flags, struct hostfile_caps *caps,
                      const char *path, struct ferry_extent_list *list);

/* When IMG's writer will flush it (ferry_image_set_early_writeback), ask
 * the kernel to start writing COUNT bytes at OFFSET of FD back to the
 * disk now (a hint: errors are ignored), so that the copy and the disk
 * work at the same time and the final flush finds little left. */
void hostfile_start_writeback (const struct ferry_image *img, int fd,
                               uint64_t offset, uint64_t count);

/* Write entries [LO, HI) of the 32-bit TABLE (host byte order) into FD,
 * where entry 0 lies at host OFFSET, big- or little-endian; WHAT names
 * the table in messages.  0, or -1 with the error set. */
int hostfile_write_table32 (int fd, const uint32_t *table, uint32_t lo,
                            uint32_t hi, uint64_t offset, bool big_endian,
                            const char *path, const char *what);

/* The size of the file or block device FD: 0, or -1 with the error set. */
int hostfile_size (int fd, const char *path, uint64_t *size /* OUT */);

#endif /* FERRY_HOSTFILE_H */
