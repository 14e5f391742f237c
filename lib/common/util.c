/* Helpers declared in util.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/uio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "util.h"

bool
is_zero (const void *buf, size_t len)
{
  const unsigned char *p = buf;
  size_t i, head = len < 16 ? len : 16;

  for (i = 0; i < head; i++)
    if (p[i])
      return false;
  /* The first 16 bytes are zero, so the buffer is all zero exactly when
   * it equals itself shifted by 16: memcmp runs at memory speed. */
  return len <= 16 || memcmp (p, p + 16, len - 16) == 0;
}

int
full_pread (int fd, void *buf, size_t count, uint64_t offset)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = pread (fd, p, count, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {
      memset (p, 0, count);
      return 0;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

int
full_pwrite (int fd, const void *buf, size_t count, uint64_t offset)
{
  const char *p = buf;

  if (fault_point (FAULT_WRITE, fd, NULL) == -1)
    return -1;
  while (count > 0) {
    ssize_t r = pwrite (fd, p, count, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

int
full_pwritev (int fd, struct iovec *iov, int n, uint64_t offset)
{
  if (fault_point (FAULT_WRITE, fd, NULL) == -1)
    return -1;
  while (n > 0) {
    ssize_t r = pwritev (fd, iov, n, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    offset += r;
    while (n > 0 && (size_t) r >= iov->iov_len) {
      r -= iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *) iov->iov_base + r;
      iov->iov_len -= r;
    }
  }
  return 0;
}

int
truncate_fd (int fd, uint64_t size)
{
  if (fault_point (FAULT_WRITE, fd, NULL) == -1)
    return -1;
  return ftruncate (fd, size);
}

int
fallocate_fd (int fd, int mode, uint64_t offset, uint64_t count)
{
  if (fault_point (FAULT_WRITE, fd, NULL) == -1)
    return -1;
  return fallocate (fd, mode, offset, count);
}

int
preallocate_fd (int fd, uint64_t offset, uint64_t count)
{
  int r;

  if (fault_point (FAULT_WRITE, fd, NULL) == -1)
    return -1;
  r = posix_fallocate (fd, offset, count);
  if (r == 0)
    return 0;
  errno = r;
  return -1;
}

int
zeroout_fd (int fd, uint64_t offset, uint64_t count)
{
  uint64_t range[2] = { offset, count };

  if (fault_point (FAULT_WRITE, fd, NULL) == -1)
    return -1;
  return ioctl (fd, BLKZEROOUT, range);
}

int
sync_fd (int fd)
{
  if (fault_point (FAULT_SYNC, fd, NULL) == -1)
    return -1;
  return fsync (fd);
}

int
datasync_fd (int fd)
{
  if (fault_point (FAULT_SYNC, fd, NULL) == -1)
    return -1;
  return fdatasync (fd);
}

int
sync_path (const char *path)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  int r, saved;

  if (fd == -1)
    return -1;
  r = sync_fd (fd);
  saved = errno;
  close (fd);
  errno = saved;
  return r;
}

int
rename_noreplace (const char *from, const char *to)
{
  if (fault_point (FAULT_RENAME, -1, to) == -1)
    return -1;
  if (renameat2 (AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno != EINVAL && errno != ENOSYS && errno != EPERM)
    return -1;
  /* No RENAME_NOREPLACE here (NFS, some FUSE, old kernels): a hard link
   * fails on an existing TO just the same. */
  if (link (from, to) == 0) {
    int err;
    if (unlink (from) == 0 || errno == ENOENT)
      return 0;
    /* Both names are there: undo, so that a failure means no TO.  Where
     * TO cannot go either, the move is done as far as it can be: TO is
     * there, FROM a second name, as after a crash between the two. */
    err = errno;
    if (unlink (to) == -1)
      return 0;
    errno = err;
    return -1;
  }
  if (errno == EPERM) {
    /* A folder cannot be linked: look, then rename.  Only a folder made
     * at TO between the two, and empty, could be replaced. */
    struct stat st;
    if (lstat (from, &st) == 0 && S_ISDIR (st.st_mode)) {
      if (lstat (to, &st) == 0) {
        errno = EEXIST;
        return -1;
      }
      return rename (from, to);
    }
    errno = EPERM;
  }
  return -1;
}

int
link_noreplace (const char *from, const char *to)
{
  if (fault_point (FAULT_RENAME, -1, to) == -1)
    return -1;
  return link (from, to);
}

char *
strdup_counted (const void *p, size_t len)
{
  char *s = malloc (len + 1);

  if (s == NULL)
    return NULL;
  memcpy (s, p, len);
  s[len] = '\0';
  return s;
}

double
now_seconds (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

unsigned
online_cpus (void)
{
  long n = sysconf (_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (unsigned) n;
}

void
random_uuid (uint8_t out[16])
{
  static uint64_t counter;
  size_t got = 0;

  while (got < 16) {
    ssize_t r = getrandom (out + got, 16 - got, 0);
    if (r <= 0)
      break;
    got += r;
  }
  if (got < 16) {
    /* No entropy to be had: unique enough for an image id. */
    uint64_t a = (uint64_t) time (NULL) ^ ((uint64_t) getpid () << 32);
    uint64_t b = __atomic_add_fetch (&counter, 1, __ATOMIC_RELAXED) ^
      (uint64_t) (now_seconds () * 1e9);
    memcpy (out, &a, 8);
    memcpy (out + 8, &b, 8);
  }
  out[6] = (out[6] & 0x0f) | 0x40;      /* version 4: random */
  out[8] = (out[8] & 0x3f) | 0x80;      /* the RFC 4122 variant */
}

char *
utf16_to_utf8 (const void *buf, size_t len, bool big_endian)
{
  const uint8_t *p = buf;
  char *out = malloc (len / 2 * 3 + 1), *o = out;
  size_t i;

  if (out == NULL)
    return NULL;
  for (i = 0; i + 1 < len; i += 2) {
    uint32_t c = big_endian ? get_be16 (p + i) : get_le16 (p + i);
    if (c == 0)
      break;
    if (c >= 0xd800 && c < 0xdc00 && i + 3 < len) {
      uint32_t lo = big_endian ? get_be16 (p + i + 2) : get_le16 (p + i + 2);
      if (lo >= 0xdc00 && lo < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        i += 2;
      }
      else
        c = 0xfffd;
    }
    else if (c >= 0xd800 && c < 0xe000)
      c = 0xfffd;
    if (c < 0x80)
      *o++ = c;
    else if (c < 0x800) {
      *o++ = 0xc0 | (c >> 6);
      *o++ = 0x80 | (c & 0x3f);
    }
    else if (c < 0x10000) {
      *o++ = 0xe0 | (c >> 12);
      *o++ = 0x80 | ((c >> 6) & 0x3f);
      *o++ = 0x80 | (c & 0x3f);
    }
    else {
      /* Four bytes for the two units just consumed: still fits. */
      *o++ = 0xf0 | (c >> 18);
      *o++ = 0x80 | ((c >> 12) & 0x3f);
      *o++ = 0x80 | ((c >> 6) & 0x3f);
      *o++ = 0x80 | (c & 0x3f);
    }
  }
  *o = '\0';
  return out;
}

void
strbuf_vprintf (struct strbuf *s, const char *fmt, va_list ap)
{
  va_list copy;
  int n;

  if (s->failed)
    return;
  for (;;) {
    va_copy (copy, ap);
    n = vsnprintf (s->buf ? s->buf + s->len : NULL,
                   s->buf ? s->cap - s->len : 0, fmt, copy);
    va_end (copy);
    if (n < 0) {
      s->failed = true;
      return;
    }
    if (s->buf && s->len + n < s->cap) {
      s->len += n;
      return;
    }
    {
      size_t cap = MAX (s->cap * 2, s->len + n + 1024);
      char *p = realloc (s->buf, cap);
      if (p == NULL) {
        s->failed = true;
        return;
      }
      s->buf = p;
      s->cap = cap;
    }
  }
}

void
strbuf_printf (struct strbuf *s, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  strbuf_vprintf (s, fmt, ap);
  va_end (ap);
}

char *
qemu_opt_escape (const char *s)
{
  size_t n = 0;
  const char *p;
  char *r, *q;

  for (p = s; *p; p++)
    n += *p == ',' ? 2 : 1;
  r = q = malloc (n + 1);
  if (r == NULL)
    return NULL;
  for (p = s; *p; p++) {
    *q++ = *p;
    if (*p == ',')
      *q++ = ',';
  }
  *q = '\0';
  return r;
}
