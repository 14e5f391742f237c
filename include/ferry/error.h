/* ferry: errors and the log callback.
 *
 * Every library call that can fail returns -1 or NULL and leaves a
 * thread-local error behind: an errno value and a message that names the
 * file, the structure and what was wrong.  The caller reads them back with
 * ferry_get_error() and ferry_get_errno() before its next library call.
 *
 * The library never prints.  Warnings and debug messages go through the
 * log callback the program installs; without one they are dropped.
 */
#ifndef FERRY_ERROR_H
#define FERRY_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* The message of the last error on this thread, never NULL.  The string
 * belongs to the library and stays valid until this thread's next call. */
const char *ferry_get_error (void);

/* The errno value of the last error on this thread (EINVAL for bad
 * input, EIO for a failed read or write, ENOSPC for a full target, ...). */
int ferry_get_errno (void);

/* Which of the caller's inputs the last error on this thread concerns,
 * when it is one of the members of an options structure: its name there
 * ("out_dir", "network_map", "name", "flavor", "disk_format" and
 * "no_convert" of struct ferry_v2v_options; "expect" of struct
 * ferry_guest_boot_options; "strict" for FERRY_OPEN_STRICT), or NULL.
 * Messages name no command-line flag (a daemon has none): a program maps
 * the input to how its user sets it, as the ferry CLI adds the flag. */
const char *ferry_get_error_input (void);

enum ferry_log_level {
  FERRY_LOG_DEBUG = 0,
  FERRY_LOG_INFO = 1,
  FERRY_LOG_WARNING = 2,
};

typedef void (*ferry_log_fn) (enum ferry_log_level level, const char *msg,
                              void *opaque);

/* Install the callback that receives warnings and debug messages.  It may
 * be called from any thread; NULL removes it. */
void ferry_set_log_callback (ferry_log_fn fn, void *opaque);

/* Stopping.  ferry_request_stop asks every library call in progress, on
 * any thread, to stop as soon as it can: a call that waits on something
 * outside the process (an NBD server, the QEMU of a boot verification,
 * the libguestfs appliance, which it stops) or copies, compares or hashes
 * returns -1 with errno EINTR within a fraction of a second, after
 * undoing what it would on any failure.  Such a call made while the stop
 * stands fails the same way at once, so a long job ends as a whole;
 * closing and freeing still work (an NBD export is then closed without
 * waiting for its server).  It is async-signal-safe: a program calls it
 * from its SIGINT and SIGTERM handlers.  ferry_clear_stop withdraws it (a
 * long-lived program, between two jobs; not while a call runs). */
void ferry_request_stop (void);
int ferry_stop_requested (void);
void ferry_clear_stop (void);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_ERROR_H */
