/* Helpers declared in util.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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
