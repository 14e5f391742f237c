/* Setting the thread-local error and logging, inside the library.
 *
 *   return ferry_error (EINVAL, "%s: L1 table at 0x%" PRIx64 " ...", path, off);
 *
 * ferry_error always returns -1 so a failing path is one line.  The
 * message should start with the file it concerns; callers that add
 * context use ferry_error_prefix.
 */
#ifndef FERRY_COMMON_ERROR_H
#define FERRY_COMMON_ERROR_H

#include <ferry/error.h>

/* Set errno ERRNUM and the message; returns -1. */
int ferry_error (int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Like ferry_error, appending ": " and strerror (ERRNUM). */
int ferry_error_errno (int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Say which input of the caller the error just set concerns (a static
 * string: see ferry_get_error_input); ferry_error and ferry_error_errno
 * clear it, ferry_error_prefix keeps it.  Returns -1. */
int ferry_error_input (const char *input);

/* Put "PREFIX: " in front of the current message, keeping errno. */
void ferry_error_prefix (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* Send a message to the program's log callback, if any. */
void ferry_log (enum ferry_log_level level, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

#define ferry_warn(...) ferry_log (FERRY_LOG_WARNING, __VA_ARGS__)
#define ferry_debug(...) ferry_log (FERRY_LOG_DEBUG, __VA_ARGS__)

#endif /* FERRY_COMMON_ERROR_H */
