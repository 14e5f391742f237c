/* Stopping: ferry_request_stop and what the library's waits use to see it.
 *
 * NOTES ON THE DESIGN
 *
 * 1. ferry_request_stop runs in signal handlers, so it only stores to an
 *    atomic flag and write()s to an eventfd, both async-signal-safe.  The
 *    eventfd is never read while the stop stands, so it stays readable and
 *    every poll() that includes it returns at once, however many there are
 *    and on whichever thread.
 *
 * 2. The eventfd is made on first use by a wait, not in the handler.  A
 *    stop requested before it exists is seen the other way round: stop_fd
 *    publishes the fd first and reads the flag after, while the handler
 *    sets the flag first and reads the fd after (all sequentially
 *    consistent), so at least one of the two sees the other and the fd is
 *    readable either way.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "error.h"
#include "stop.h"

static int stop_flag;           /* atomic */
static int stop_event = -1;     /* atomic: the eventfd, or -1 (note 2) */

/* Make FD readable (async-signal-safe). */
static void
raise_event (int fd)
{
  uint64_t one = 1;

  if (write (fd, &one, sizeof one) == -1) {
    /* EAGAIN: the counter is full, so it is readable already. */
  }
}

void
ferry_request_stop (void)
{
  int fd;

  __atomic_store_n (&stop_flag, 1, __ATOMIC_SEQ_CST);
  fd = __atomic_load_n (&stop_event, __ATOMIC_SEQ_CST);
  if (fd >= 0)
    raise_event (fd);
}

int
ferry_stop_requested (void)
{
  return stop_requested ();
}

void
ferry_clear_stop (void)
{
  int fd = __atomic_load_n (&stop_event, __ATOMIC_SEQ_CST);
  uint64_t v;

  __atomic_store_n (&stop_flag, 0, __ATOMIC_SEQ_CST);
  if (fd >= 0 && read (fd, &v, sizeof v) == -1) {
    /* EAGAIN: it was not readable. */
  }
}

bool
stop_requested (void)
{
  return __atomic_load_n (&stop_flag, __ATOMIC_SEQ_CST) != 0;
}

int
stop_fd (void)
{
  int fd = __atomic_load_n (&stop_event, __ATOMIC_SEQ_CST), expected = -1;

  if (fd >= 0)
    return fd;
  fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd == -1)
    return -1;
  if (!__atomic_compare_exchange_n (&stop_event, &expected, fd, false,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    close (fd);                 /* another thread made it first */
    return expected;
  }
  if (stop_requested ())        /* note 2 */
    raise_event (fd);
  return fd;
}

/* The parent pid in /proc/PID/stat, or -1.  The command name in
 * parentheses may hold anything, so the fields are read after the last
 * ')'. */
static pid_t
parent_of (const char *pid)
{
  char path[64], buf[512], *p;
  FILE *fp;
  size_t n;
  int ppid;

  snprintf (path, sizeof path, "/proc/%s/stat", pid);
  fp = fopen (path, "re");
  if (fp == NULL)
    return -1;
  n = fread (buf, 1, sizeof buf - 1, fp);
  fclose (fp);
  buf[n] = '\0';
  p = strrchr (buf, ')');
  if (p == NULL || sscanf (p + 1, " %*c %d", &ppid) != 1)
    return -1;
  return ppid;
}

/* Append PID to the vector *V of *LEN (capacity *CAP).  0 or -1. */
static int
append_pid (pid_t **v, size_t *len, size_t *cap, pid_t pid)
{
  if (*len == *cap) {
    size_t ncap = *cap ? 2 * *cap : 8;
    pid_t *nv = realloc (*v, ncap * sizeof *nv);
    if (nv == NULL)
      return ferry_error (ENOMEM, "out of memory");
    *v = nv;
    *cap = ncap;
  }
  (*v)[(*len)++] = pid;
  return 0;
}

/* The children of thread TID from /proc/self/task/TID/children (a
 * kernel with CONFIG_PROC_CHILDREN).  1 when read, 0 when the kernel has
 * no such file, -1 on error. */
static int
children_of_thread (pid_t tid, pid_t **v, size_t *len, size_t *cap)
{
  char path[64];
  FILE *fp;
  int pid, r = 1;

  snprintf (path, sizeof path, "/proc/self/task/%d/children", (int) tid);
  fp = fopen (path, "re");
  if (fp == NULL)
    return 0;
  while (r == 1 && fscanf (fp, "%d", &pid) == 1)
    if (append_pid (v, len, cap, pid) == -1)
      r = -1;
  fclose (fp);
  return r;
}

int
list_children (pid_t tid, pid_t **pids, size_t *nr)
{
  DIR *d;
  struct dirent *e;
  pid_t self = getpid (), *v = NULL;
  size_t len = 0, cap = 0;
  int r;

  *pids = NULL;
  *nr = 0;
  if (tid > 0 && (r = children_of_thread (tid, &v, &len, &cap)) != 0) {
    if (r == -1) {
      free (v);
      return -1;
    }
    *pids = v;
    *nr = len;
    return 0;
  }
  /* Every process whose parent is this one, forked by any thread. */
  d = opendir ("/proc");
  if (d == NULL)
    return ferry_error_errno (errno, "/proc");
  while ((e = readdir (d)) != NULL) {
    if (!isdigit ((unsigned char) e->d_name[0]) ||
        parent_of (e->d_name) != self)
      continue;
    if (append_pid (&v, &len, &cap, (pid_t) atoi (e->d_name)) == -1) {
      free (v);
      closedir (d);
      return -1;
    }
  }
  closedir (d);
  *pids = v;
  *nr = len;
  return 0;
}

/* True when NAME is what QEMU calls a temporary snapshot: "vl." and six
 * characters of mkstemp. */
static bool
is_qemu_temp_name (const char *name)
{
  size_t i;

  if (strncmp (name, "vl.", 3) != 0 || strlen (name) != 9)
    return false;
  for (i = 3; i < 9; i++)
    if (!isalnum ((unsigned char) name[i]))
      return false;
  return true;
}

void
note_qemu_temp_files (pid_t pid, struct qemu_temp_files *t)
{
  struct dirent *e;
  char dir[64], link[64 + sizeof e->d_name], target[4096];
  DIR *d;

  snprintf (dir, sizeof dir, "/proc/%d/fd", (int) pid);
  d = opendir (dir);
  if (d == NULL)
    return;
  while ((e = readdir (d)) != NULL) {
    const char *base;
    ssize_t n;
    char **p;

    if (e->d_name[0] == '.')
      continue;
    snprintf (link, sizeof link, "%s/%s", dir, e->d_name);
    n = readlink (link, target, sizeof target - 1);
    if (n <= 0)
      continue;
    target[n] = '\0';
    base = strrchr (target, '/');
    if (target[0] != '/' || !is_qemu_temp_name (base + 1))
      continue;
    p = realloc (t->paths, (t->nr + 1) * sizeof *p);
    if (p == NULL)
      break;
    t->paths = p;
    if ((p[t->nr] = strdup (target)) != NULL)
      t->nr++;
  }
  closedir (d);
}

void
remove_qemu_temp_files (struct qemu_temp_files *t)
{
  size_t i;

  for (i = 0; i < t->nr; i++) {
    if (unlink (t->paths[i]) == 0)
      ferry_debug ("removed %s, which a stopped QEMU left", t->paths[i]);
    free (t->paths[i]);
  }
  free (t->paths);
  t->paths = NULL;
  t->nr = 0;
}
