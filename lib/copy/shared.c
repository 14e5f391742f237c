/* What the copy engine and the hash rounds share (internal.h). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "../common/error.h"
#include "../common/stop.h"
#include "../common/util.h"

/* Keep the first error and raise the stop. */
void
first_error_keep (struct first_error *e, int errnum, const char *msg)
{
  if (!e->failed) {
    e->failed = true;
    e->err = errnum ? errnum : EIO;
    snprintf (e->msg, sizeof e->msg, "%s", msg);
  }
  __atomic_store_n (&e->stop, 1, __ATOMIC_RELEASE);
}

/* True once the group must stop. */
bool
first_error_stopped (struct first_error *e)
{
  return __atomic_load_n (&e->stop, __ATOMIC_ACQUIRE) != 0;
}

/* True when the caller asked to stop. */
bool
copy_cancel_requested (const struct ferry_copy_options *opts)
{
  return (opts->cancel && *opts->cancel) || stop_requested ();
}

/* Block SIGINT, SIGTERM, SIGHUP and SIGQUIT on this thread. */
void
copy_block_user_signals (sigset_t *old)
{
  sigset_t set;

  sigemptyset (&set);
  sigaddset (&set, SIGINT);
  sigaddset (&set, SIGTERM);
  sigaddset (&set, SIGHUP);
  sigaddset (&set, SIGQUIT);
  pthread_sigmask (SIG_BLOCK, &set, old);
}

/* The monotonic deadline SECONDS from now. */
void
copy_deadline (struct timespec *ts, double seconds)
{
  clock_gettime (CLOCK_MONOTONIC, ts);
  ts->tv_nsec += (long) (seconds * 1e9);
  while (ts->tv_nsec >= 1000000000) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000;
  }
}

/* Allocate an aligned buffer. */
void *
copy_alloc_aligned (size_t len)
{
  void *p;

  if (posix_memalign (&p, 4096, len) != 0)
    return NULL;
  return p;
}

/* Read [START, END) of IMG through its extents. */
int
copy_read_extents (struct ferry_image *img, struct ferry_extent_list *scratch,
                   uint64_t start, uint64_t end, unsigned char *buf,
                   uint64_t *read)
{
  uint64_t pos = start, stop = MIN (end, ferry_image_size (img));

  *read = 0;
  while (pos < stop) {
    uint64_t before = pos;
    size_t i;

    scratch->len = 0;
    if (ferry_image_extents (img, pos, stop - pos, scratch) == -1)
      return -1;
    for (i = 0; i < scratch->len && pos < stop; i++) {
      const struct ferry_extent *x = &scratch->ptr[i];
      uint64_t xend = MIN (x->offset + x->length, stop);

      if (xend <= pos)
        continue;
      if (x->flags & FERRY_EXTENT_ZERO)
        memset (buf + (pos - start), 0, xend - pos);
      else {
        if (ferry_image_pread (img, buf + (pos - start), xend - pos, pos) == -1)
          return -1;
        *read += xend - pos;
      }
      pos = xend;
    }
    if (pos == before)
      return ferry_error (EIO, "%s: the %s driver gave no extent at offset %"
                          PRIu64, ferry_image_path (img),
                          ferry_image_format (img), pos);
  }
  if (pos < end)
    memset (buf + (pos - start), 0, end - pos);
  return 0;
}
