/* The thread-local error and the log callback. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

/* Messages longer than this are cut; they are one line for a person. */
#define ERROR_MAX 1024

static __thread char error_message[ERROR_MAX];
static __thread int error_errno;
static __thread const char *error_input;

static ferry_log_fn log_fn;
static void *log_opaque;

const char *
ferry_get_error (void)
{
  return error_message[0] ? error_message : "no error";
}

int
ferry_get_errno (void)
{
  return error_errno;
}

const char *
ferry_get_error_input (void)
{
  return error_input;
}

int
ferry_error_input (const char *input)
{
  error_input = input;
  return -1;
}

/* Set the message from FMT and AP, with ": strerror" when WITH_ERRNO. */
static void
set_error (int errnum, int with_errno, const char *fmt, va_list ap)
{
  int n = vsnprintf (error_message, sizeof error_message, fmt, ap);
  if (n < 0)
    n = 0;
  if (with_errno && (size_t) n < sizeof error_message) {
    char buf[128];
    snprintf (error_message + n, sizeof error_message - n, ": %s",
              strerror_r (errnum, buf, sizeof buf));
  }
  error_errno = errnum;
  error_input = NULL;
  errno = errnum;
}

int
ferry_error (int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  set_error (errnum, 0, fmt, ap);
  va_end (ap);
  return -1;
}

int
ferry_error_errno (int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  set_error (errnum, 1, fmt, ap);
  va_end (ap);
  return -1;
}

void
ferry_error_prefix (const char *fmt, ...)
{
  char prefix[256], old[ERROR_MAX];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (prefix, sizeof prefix, fmt, ap);
  va_end (ap);
  memcpy (old, error_message, sizeof old);
  /* Messages are cut at ERROR_MAX; say so to the compiler too. */
  if (snprintf (error_message, sizeof error_message, "%s: %.*s", prefix,
                (int) (sizeof error_message - 1), old) < 0)
    error_message[0] = '\0';
  errno = error_errno;
}

void
ferry_set_log_callback (ferry_log_fn fn, void *opaque)
{
  log_opaque = opaque;
  __atomic_store_n (&log_fn, fn, __ATOMIC_RELEASE);
}

void
ferry_log (enum ferry_log_level level, const char *fmt, ...)
{
  ferry_log_fn fn = __atomic_load_n (&log_fn, __ATOMIC_ACQUIRE);
  char msg[ERROR_MAX];
  va_list ap;
  int saved = errno;

  if (fn == NULL)
    return;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  fn (level, msg, log_opaque);
  errno = saved;
}
