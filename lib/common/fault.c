/* Fault injection at the host-file I/O primitives; see fault.h. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fault.h"
#include "util.h"

#define FAULT_ANY 3             /* OP "any": every kind on one count */

int fault_state = 1;

static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static int fault_op = -1;       /* FAULT_* or FAULT_ANY; -1: no fault */
static unsigned long fault_at;
static int fault_errno;         /* 0: kill */
static int trace_fd = -1;
static unsigned long counts[FAULT_ANY + 1];

static const char *const op_names[] = { "write", "sync", "rename", "any" };

/* Parse FERRY_FAULT (S) into the fault_* settings; false when it does not
 * parse. */
static bool
parse_fault (const char *s)
{
  const char *colon = strchr (s, ':');
  char *end;
  int op;

  if (colon == NULL)
    return false;
  for (op = 0; op <= FAULT_ANY; op++)
    if (strlen (op_names[op]) == (size_t) (colon - s) &&
        strncmp (s, op_names[op], colon - s) == 0)
      break;
  if (op > FAULT_ANY || colon[1] < '1' || colon[1] > '9')
    return false;
  errno = 0;
  fault_at = strtoul (colon + 1, &end, 10);
  if (errno || (*end != '\0' && *end != ':'))
    return false;
  if (*end == '\0' || strcmp (end, ":eio") == 0)
    fault_errno = EIO;
  else if (strcmp (end, ":enospc") == 0)
    fault_errno = ENOSPC;
  else if (strcmp (end, ":kill") == 0)
    fault_errno = 0;
  else
    return false;
  fault_op = op;
  return true;
}

/* Read the environment (under fault_lock). */
static void
fault_init (void)
{
  const char *spec = getenv ("FERRY_FAULT");
  const char *trace = getenv ("FERRY_FAULT_TRACE");

  fault_op = -1;
  if (spec && *spec && !parse_fault (spec)) {
    fault_op = -1;
    ferry_warn ("FERRY_FAULT=%s: expected OP:N[:ACTION] (OP write, sync, "
                "rename or any; ACTION eio, enospc or kill); no fault is "
                "injected", spec);
  }
  if (trace && *trace && trace_fd == -1)
    trace_fd = open (trace, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  __atomic_store_n (&fault_state, fault_op >= 0 || trace_fd >= 0 ? 2 : 0,
                    __ATOMIC_RELEASE);
}

/* Append the trace line of operation SEQ, OP on FD or PATH. */
static void
trace (unsigned long seq, enum fault_op op, int fd, const char *path)
{
  char link[64], name[4096], line[4200];
  ssize_t n = -1;
  int len;

  if (path == NULL && fd >= 0) {
    snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink (link, name, sizeof name - 1);
  }
  if (n >= 0)
    name[n] = '\0';
  else
    snprintf (name, sizeof name, "%s", path ? path : "?");
  len = snprintf (line, sizeof line, "%lu %s %s\n", seq, op_names[op], name);
  if (len > 0 && write (trace_fd, line, MIN ((size_t) len, sizeof line - 1)) < 0)
    return;
}

int
fault_check (enum fault_op op, int fd, const char *path)
{
  unsigned long seq, n;
  bool strike;

  pthread_mutex_lock (&fault_lock);
  if (__atomic_load_n (&fault_state, __ATOMIC_ACQUIRE) == 1)
    fault_init ();
  if (fault_state == 0) {
    pthread_mutex_unlock (&fault_lock);
    return 0;
  }
  seq = ++counts[FAULT_ANY];
  n = fault_op == FAULT_ANY ? seq : ++counts[op];
  if (trace_fd >= 0)
    trace (seq, op, fd, path);
  strike = fault_op >= 0 && (fault_op == FAULT_ANY || fault_op == (int) op) &&
    n >= fault_at;
  pthread_mutex_unlock (&fault_lock);
  if (!strike)
    return 0;
  if (fault_errno == 0)
    raise (SIGKILL);
  errno = fault_errno;
  return -1;
}

void
fault_reset (void)
{
  pthread_mutex_lock (&fault_lock);
  memset (counts, 0, sizeof counts);
  if (trace_fd >= 0)
    close (trace_fd);
  trace_fd = -1;
  __atomic_store_n (&fault_state, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock (&fault_lock);
}
