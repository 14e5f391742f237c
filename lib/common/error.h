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

#include <stdbool.h>

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

/* Messages longer than this are cut; they are one line for a person. */
#define ERROR_MAX 1024

/* The thread's error, kept across calls that may set another (a close
 * after a failure, whose own complaint would hide the first). */
struct error_saved {
  int errnum;
  const char *input;            /* ferry_error_input's hint, static */
  char message[ERROR_MAX];
};
void error_save (struct error_saved *saved /* OUT */);
void error_restore (const struct error_saved *saved);

/* Name aliases: while a new target is written under a temporary name
 * beside its destination (lib/image/target.c), every message and log line
 * of the library names the destination instead, whichever layer or
 * thread sets it.  TEMP and DEST are base names; each is split at its last
 * dot, TEMP = TP + TS and DEST = DP + DS, and any TP + MIDDLE + TS in a
 * message (MIDDLE holding no '/') becomes DP + MIDDLE + DS: the temporary
 * name itself, and the files an image names after it (a VMDK's extents,
 * ".d.vmdk-s001.ferry-1a2b..." for "d-s001.vmdk"), the rule ferry_image_rename
 * follows.  TS must be unique to the target (it holds a random tag) and
 * DEST shorter than TEMP.  0, or -1 (ENOMEM) with nothing added. */
int error_alias_add (const char *temp, const char *dest);
/* Remove the alias of TEMP, if any. */
void error_alias_remove (const char *temp);

/* Send a message to the program's log callback, if any. */
void ferry_log (enum ferry_log_level level, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Hold back (MUTE true) or let through again (false) what this thread
 * logs, for work whose warnings say nothing to the caller (ferry check
 * opening an image only to see whether its parent is there).  Calls
 * nest. */
void ferry_log_mute (bool mute);

#define ferry_warn(...) ferry_log (FERRY_LOG_WARNING, __VA_ARGS__)
#define ferry_debug(...) ferry_log (FERRY_LOG_DEBUG, __VA_ARGS__)

#endif /* FERRY_COMMON_ERROR_H */
