/* Fault injection at the host-file I/O primitives, for the tests.
 *
 * Every write, flush and rename that a writer makes on a host file goes
 * through the primitives of util.h (full_pwrite, full_pwritev,
 * truncate_fd, fallocate_fd, preallocate_fd, zeroout_fd, sync_fd,
 * datasync_fd, sync_path, rename_noreplace, link_noreplace), and each of
 * them calls fault_point first.  Two environment variables, read once, turn it on:
 *
 *   FERRY_FAULT=OP:N[:ACTION]
 *     OP      write (writes, truncates, fallocate, BLKZEROOUT), sync (fsync,
 *             fdatasync), rename (renames and links that put a name in
 *             place), or any (all of them on one count)
 *     N       the operation of that kind, counted from 1 across the
 *             process, at which the fault strikes
 *     ACTION  eio (the default) or enospc: the Nth operation and every
 *             later one of that kind fail with that errno and do nothing
 *             (a dead device, a full disk); kill: the process kills
 *             itself (SIGKILL) instead of doing the Nth operation
 *
 *   FERRY_FAULT_TRACE=FILE
 *     append a line "SEQ OP FILE" to FILE for every operation (SEQ counts
 *     all kinds from 1; FILE is the file the operation is on), so a test
 *     counts a run's operations before it loops over N.
 *
 * Unset, fault_point costs one relaxed load.  A FERRY_FAULT that does not
 * parse is reported once through the log callback and injects nothing.
 */
#ifndef FERRY_FAULT_H
#define FERRY_FAULT_H

enum fault_op {
  FAULT_WRITE,
  FAULT_SYNC,
  FAULT_RENAME,
};

/* 1 while the environment has not been read, 2 when a fault or a trace is
 * on, 0 when neither is. */
extern int fault_state;

/* The slow path of fault_point. */
int fault_check (enum fault_op op, int fd, const char *path);

/* Count one operation OP on FD (or, with FD -1, on PATH): 0 to go ahead,
 * -1 with errno set when the fault mode fails it; it does not return when
 * the fault mode kills. */
static inline int
fault_point (enum fault_op op, int fd, const char *path)
{
  if (__builtin_expect (__atomic_load_n (&fault_state, __ATOMIC_RELAXED) == 0,
                        1))
    return 0;
  return fault_check (op, fd, path);
}

/* Forget the counts and read the environment again (unit tests). */
void fault_reset (void);

#endif /* FERRY_FAULT_H */
