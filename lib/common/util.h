/* Small helpers every layer uses: byte order, rounding, zero tests. */
#ifndef FERRY_UTIL_H
#define FERRY_UTIL_H

#include <endian.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Round X up or down to a multiple of the power of two N. */
#define ROUND_UP(x, n) (((x) + (n) - 1) & ~((__typeof__ (x)) (n) - 1))
#define ROUND_DOWN(x, n) ((x) & ~((__typeof__ (x)) (n) - 1))
#define IS_ALIGNED(x, n) (((x) & ((n) - 1)) == 0)
#define DIV_ROUND_UP(x, n) (((x) + (n) - 1) / (n))

static inline bool
is_power_of_2 (uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

/* Read and write big- and little-endian integers at unaligned P. */
static inline uint16_t get_be16 (const void *p) { uint16_t v; memcpy (&v, p, 2); return be16toh (v); }
static inline uint32_t get_be32 (const void *p) { uint32_t v; memcpy (&v, p, 4); return be32toh (v); }
static inline uint64_t get_be64 (const void *p) { uint64_t v; memcpy (&v, p, 8); return be64toh (v); }
static inline uint16_t get_le16 (const void *p) { uint16_t v; memcpy (&v, p, 2); return le16toh (v); }
static inline uint32_t get_le32 (const void *p) { uint32_t v; memcpy (&v, p, 4); return le32toh (v); }
static inline uint64_t get_le64 (const void *p) { uint64_t v; memcpy (&v, p, 8); return le64toh (v); }
static inline void put_be16 (void *p, uint16_t v) { v = htobe16 (v); memcpy (p, &v, 2); }
static inline void put_be32 (void *p, uint32_t v) { v = htobe32 (v); memcpy (p, &v, 4); }
static inline void put_be64 (void *p, uint64_t v) { v = htobe64 (v); memcpy (p, &v, 8); }
static inline void put_le16 (void *p, uint16_t v) { v = htole16 (v); memcpy (p, &v, 2); }
static inline void put_le32 (void *p, uint32_t v) { v = htole32 (v); memcpy (p, &v, 4); }
static inline void put_le64 (void *p, uint64_t v) { v = htole64 (v); memcpy (p, &v, 8); }

/* True when the LEN bytes at BUF are all zero.  Fast: it compares the
 * buffer with itself shifted by 16 bytes after checking the head. */
bool is_zero (const void *buf, size_t len);

/* Full-length pread and pwrite: retry short transfers and EINTR.  A read
 * that hits end of file fills the rest with zeroes and succeeds.
 * Return 0, or -1 with errno set (nothing else). */
int full_pread (int fd, void *buf, size_t count, uint64_t offset);
int full_pwrite (int fd, const void *buf, size_t count, uint64_t offset);

/* pwritev all of IOV (N buffers, which it consumes) at OFFSET, retrying
 * short writes and EINTR.  0, or -1 with errno set. */
struct iovec;
int full_pwritev (int fd, struct iovec *iov, int n, uint64_t offset);

/* The other host-file primitives of every writer: each is the system
 * call of its name and counts for fault injection (fault.h), like the
 * writes above, so that a test can fail or kill a writer at any of them.
 * Every write, flush and rename of an image file goes through these.
 * 0, or -1 with errno set (nothing else). */
int truncate_fd (int fd, uint64_t size);                  /* ftruncate */
int fallocate_fd (int fd, int mode, uint64_t offset, uint64_t count);
int preallocate_fd (int fd, uint64_t offset, uint64_t count);
                                       /* posix_fallocate, errno set */
/* Zero COUNT bytes at OFFSET of the block device FD (the BLKZEROOUT
 * ioctl: both multiples of 512).  A write for fault injection. */
int zeroout_fd (int fd, uint64_t offset, uint64_t count);
int sync_fd (int fd);                                     /* fsync */
int datasync_fd (int fd);                                 /* fdatasync */
/* fsync the file or folder PATH (opened read-only for it). */
int sync_path (const char *path);
/* Rename FROM to TO, failing with EEXIST rather than replacing an
 * existing TO; where the file system has no RENAME_NOREPLACE, a hard link
 * and an unlink do the same (a crash between them leaves both names).
 * The result says whether TO names the file: -1 leaves no TO of ours
 * (when FROM cannot be unlinked after the link, TO is unlinked again and
 * the first errno kept), 0 means TO is in place (FROM may remain a second
 * name when neither unlink succeeds). */
int rename_noreplace (const char *from, const char *to);
/* Give the file FROM the second name TO (link(2): never replaces). */
int link_noreplace (const char *from, const char *to);

/* A NUL-terminated copy of the LEN bytes at P, which need not be
 * terminated themselves (names in image headers are counted, not
 * terminated).  NULL when out of memory; the caller frees it. */
char *strdup_counted (const void *p, size_t len);

/* A UTF-8 copy of the UTF-16 string (big- or little-endian) of LEN
 * bytes at P, up to the first NUL; a broken surrogate becomes U+FFFD.
 * NULL when out of memory; the caller frees it.  Image headers (VHD,
 * VHDX) name files and creators in UTF-16. */
char *utf16_to_utf8 (const void *p, size_t len, bool big_endian);

/* Sixteen random bytes with the bits of an RFC 4122 version 4 UUID, in
 * the order of its text form, for the ids images carry. */
void random_uuid (uint8_t out[16]);

/* A monotonic clock in seconds. */
double now_seconds (void);

/* Number of online CPUs, at least 1. */
unsigned online_cpus (void);

/* S with every comma doubled, as QEMU's option values want it (a single
 * comma would start the next option); the caller frees it.  NULL when
 * out of memory. */
char *qemu_opt_escape (const char *s);

/* A string built by appending (descriptors, scripts): BUF is NULL or
 * NUL-terminated; the first failure to grow it sticks in FAILED, and
 * later appends do nothing, so the builder checks once at the end.  Start
 * with { 0 }; the caller frees BUF (CLEANUP_FREE on the struct does: BUF
 * is its first member). */
struct strbuf {
  char *buf;                   /* must be first */
  size_t len, cap;
  bool failed;
};
void strbuf_printf (struct strbuf *s, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
void strbuf_vprintf (struct strbuf *s, const char *fmt, va_list ap)
  __attribute__ ((format (printf, 2, 0)));

#endif /* FERRY_UTIL_H */
