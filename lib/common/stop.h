/* The stop request (ferry_request_stop) as the library's waits see it.
 *
 * A wait on something outside the process (an NBD server, a QEMU, the
 * libguestfs appliance) either puts stop_fd() in its poll() set, which
 * becomes readable once a stop is requested and stays so, or looks at
 * stop_requested() at least every STOP_POLL_MS.  Either way it then ends
 * its wait and returns -1 with errno EINTR.
 */
#ifndef FERRY_COMMON_STOP_H
#define FERRY_COMMON_STOP_H

#include <stdbool.h>
#include <sys/types.h>

#include <ferry/error.h>

/* The longest a wait that cannot poll stop_fd() sleeps between two looks
 * at stop_requested(). */
#define STOP_POLL_MS 100

/* True once a stop was requested (and not cleared since). */
bool stop_requested (void);

/* An eventfd that is readable while a stop is requested, for poll(); -1
 * when none could be made (then look at stop_requested() instead).  It
 * belongs to the library: never read or close it. */
int stop_fd (void);

/* The pids of the children that thread TID of this process forked (from
 * /proc; every child of the process when TID is 0 or the kernel does not
 * tell one thread's), into *PIDS (the caller frees it) and *NR.  0, or -1
 * with the error set. */
int list_children (pid_t tid, pid_t **pids, size_t *nr);

/* The temporary files of QEMUs that were stopped: a QEMU with a
 * snapshot=on drive keeps its overlay in $TMPDIR/vl.XXXXXX and removes it
 * as it exits, but not when a signal ends it while it starts (QEMU 7.2
 * dies of SIGTERM then), nor after SIGKILL. */
struct qemu_temp_files {
  char **paths;
  size_t nr;
};

/* Add the vl.XXXXXX files that process PID has open to T (read from
 * /proc before it is stopped).  Best effort: nothing on failure. */
void note_qemu_temp_files (pid_t pid, struct qemu_temp_files *t);

/* Remove the files of T that still exist (once their QEMU is gone), and
 * empty T. */
void remove_qemu_temp_files (struct qemu_temp_files *t);

#endif /* FERRY_COMMON_STOP_H */
