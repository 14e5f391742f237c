/* What the copy engine (copy.c) and the hash rounds (delta.c) share: the
 * first error of a group of worker threads, the caller's stop, the
 * workers' signal mask, aligned buffers, and reading a range of an image
 * through its extents.  Private to lib/copy.
 */
#ifndef FERRY_COPY_INTERNAL_H
#define FERRY_COPY_INTERNAL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <ferry/copy.h>

#define ERROR_MSG_MAX 1024

/* The first error of a group of threads (copy.c, note 3).  FAILED, ERR
 * and MSG are kept under the group's own lock; STOP is read without it. */
struct first_error {
  bool failed;
  int err;
  char msg[ERROR_MSG_MAX];
  int stop;                  /* atomic: leave as soon as possible */
};

/* Under the group's lock: keep ERRNUM (0: EIO) and MSG unless an error
 * came first, and raise STOP. */
void first_error_keep (struct first_error *e, int errnum, const char *msg);

/* True once STOP is raised. */
bool first_error_stopped (struct first_error *e);

/* True when the caller asked to stop: its cancel flag, or a stop request
 * for the whole library (ferry_request_stop). */
bool copy_cancel_requested (const struct ferry_copy_options *opts);

/* Block the signals a user sends (^C, kill) on the threads started until
 * the mask *OLD is set back, so that the handler runs on the calling
 * thread, which polls the cancel flag. */
void copy_block_user_signals (sigset_t *old /* OUT */);

/* The deadline SECONDS from now on CLOCK_MONOTONIC, for timed waits. */
void copy_deadline (struct timespec *ts /* OUT */, double seconds);

/* A 4 KiB-aligned buffer of LEN bytes, or NULL; the caller frees it. */
void *copy_alloc_aligned (size_t len);

/* Fill BUF with what IMG reads over [START, END): its data extents are
 * read, its zero extents and anything past its end are zeroed.  SCRATCH
 * is the caller's list, reused.  *READ gets the bytes read (0: the range
 * reads as zeroes by its extents alone).  0, or -1 with the error set. */
int copy_read_extents (struct ferry_image *img,
                       struct ferry_extent_list *scratch, uint64_t start,
                       uint64_t end, unsigned char *buf,
                       uint64_t *read /* OUT */);

#endif /* FERRY_COPY_INTERNAL_H */
