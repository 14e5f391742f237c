/* The job store's public calls (<ferry/store.h>): argument checks, then
 * the driver's op (internal.h).  What every driver shares lives here too:
 * the default path, the runner ids and the rule that judges whether a
 * runner still lives.
 *
 * NOTES ON RUNNERS
 *
 * 1. A runner id is "HOST:PID:START", START being field 22 of
 *    /proc/PID/stat (the start time in clock ticks since boot).  A pid
 *    alone is not an identity: after a reboot or a wrap it names another
 *    process, which would keep a dead runner's job held for ever.
 *
 * 2. On this host a runner lives while a process PID exists, is not a
 *    zombie (a child that exited and was not yet waited for is gone for
 *    our purpose) and started at START.  Its heartbeat is not consulted:
 *    a live runner stuck in a long write is still the holder.
 *
 * 3. On another host the process cannot be seen, so the heartbeat
 *    decides: older than STALE seconds (or none), the runner counts as
 *    gone.  Hosts are compared by gethostname, so two containers sharing
 *    a store must have distinct host names (or share a pid namespace).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <ferry/store.h>

#include "../common/cleanup.h"
#include "../common/error.h"
#include "internal.h"

/* The path a store opened without one uses. */
char *
ferry_store_default_path (void)
{
  const char *env = getenv ("FERRY_STORE");
  const char *xdg = getenv ("XDG_STATE_HOME");
  const char *home = getenv ("HOME");
  char *path = NULL;
  int r;

  if (env && *env)
    r = (path = strdup (env)) ? 0 : -1;
  else if (geteuid () == 0)
    r = (path = strdup ("/var/lib/ferry/ferry.db")) ? 0 : -1;
  /* The XDG spec ignores a relative XDG_STATE_HOME. */
  else if (xdg && xdg[0] == '/')
    r = asprintf (&path, "%s/ferry/ferry.db", xdg);
  else if (home && *home)
    r = asprintf (&path, "%s/.local/state/ferry/ferry.db", home);
  else {
    ferry_error (ENOENT, "no path for the job store: neither FERRY_STORE, "
                 "XDG_STATE_HOME nor HOME is set");
    return NULL;
  }
  if (r == -1) {
    ferry_error_errno (errno, "the job store's path");
    return NULL;
  }
  return path;
}

/* Make DIR and its missing parents, 0700 each. */
int
store_make_folder (const char *path, const char *dir)
{
  CLEANUP_FREE char *copy = strdup (dir);
  struct stat sb;
  char *p;

  if (copy == NULL)
    return ferry_error_errno (errno, "%s", path);
  if (stat (dir, &sb) == 0) {
    if (!S_ISDIR (sb.st_mode))
      return ferry_error (ENOTDIR, "%s: cannot create the job store: %s "
                          "is not a folder", path, dir);
    return 0;
  }
  for (p = copy + 1; ; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char c = *p;
    *p = '\0';
    if (mkdir (copy, 0700) == -1 && errno != EEXIST)
      return ferry_error_errno (errno, "%s: cannot create the job store's "
                                "folder %s", path, copy);
    *p = c;
    if (c == '\0')
      break;
  }
  return 0;
}

/* Open the store at PATH, or at the default path. */
struct ferry_store *
ferry_store_open (const char *path, unsigned flags)
{
  CLEANUP_FREE char *def = NULL;
  struct ferry_store *st;

  if (flags & ~FERRY_STORE_NO_CREATE) {
    ferry_error (EINVAL, "ferry_store_open: unknown flags 0x%x", flags);
    return NULL;
  }
  if (path == NULL) {
    def = ferry_store_default_path ();
    if (def == NULL)
      return NULL;
    path = def;
  }
  if (*path == '\0') {
    ferry_error (EINVAL, "the job store's path is empty");
    return NULL;
  }
  st = store_sqlite_open (path, flags);
  if (st)
    pthread_mutex_init (&st->lock, NULL);
  return st;
}

/* The path the store was opened with. */
const char *
ferry_store_path (const struct ferry_store *st)
{
  return st->path;
}

/* Close the store and free its handle. */
void
ferry_store_close (struct ferry_store *st)
{
  if (st) {
    pthread_mutex_destroy (&st->lock);
    st->ops->close (st);
  }
}

/* The schema version this program writes. */
int
ferry_store_schema_version (void)
{
  return 1;
}

/* Free the members of one record. */
void
ferry_store_record_free (struct ferry_store_record *r)
{
  if (r == NULL)
    return;
  free (r->state);
  free (r->doc);
  free (r->runner);
  free (r->request);
  r->state = r->doc = r->runner = r->request = NULL;
}

/* Free N records and the array. */
void
ferry_store_records_free (struct ferry_store_record *r, size_t n)
{
  if (r == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    ferry_store_record_free (&r[i]);
  free (r);
}

/* Free N events and the array. */
void
ferry_store_events_free (struct ferry_store_event *e, size_t n)
{
  if (e == NULL)
    return;
  for (size_t i = 0; i < n; i++) {
    free (e[i].level);
    free (e[i].message);
  }
  free (e);
}

/* Refuse a missing string argument of the call FN. */
static int
check_string (const char *fn, const char *what, const char *s)
{
  if (s == NULL)
    return ferry_error (EINVAL, "%s: %s is NULL", fn, what);
  return 0;
}

/* Add a job. */
int64_t
ferry_store_job_add (struct ferry_store *st, int64_t plan,
                     const char *state, const char *doc)
{
  if (check_string ("ferry_store_job_add", "the state", state) == -1 ||
      check_string ("ferry_store_job_add", "the document", doc) == -1)
    return -1;
  if (plan < 0)
    return ferry_error (EINVAL, "%s: no plan %" PRId64, st->path, plan);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->job_add (st, plan, state, doc);
}

/* Read one job. */
int
ferry_store_job_get (struct ferry_store *st, int64_t id,
                     struct ferry_store_record *r)
{
  memset (r, 0, sizeof *r);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->job_get (st, id, r);
}

/* Save one job if nobody saved it since revision REV. */
int
ferry_store_job_save (struct ferry_store *st, int64_t id, int64_t rev,
                      const char *state, const char *doc, int64_t *new_rev)
{
  if (check_string ("ferry_store_job_save", "the state", state) == -1 ||
      check_string ("ferry_store_job_save", "the document", doc) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->job_save (st, id, rev, state, doc, new_rev);
}

/* Every job of a plan, or every job. */
int
ferry_store_job_list (struct ferry_store *st, int64_t plan,
                      struct ferry_store_record **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->job_list (st, plan, out, n);
}

/* Remove a job and its events. */
int
ferry_store_job_delete (struct ferry_store *st, int64_t id)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->job_delete (st, id);
}

/* Take a job for RUNNER unless a live runner holds it. */
int
ferry_store_job_claim (struct ferry_store *st, int64_t id,
                       const char *runner, double stale)
{
  if (check_string ("ferry_store_job_claim", "the runner", runner) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->job_claim (st, id, runner, stale);
}

/* RUNNER's heartbeat; gives the pending request. */
int
ferry_store_job_heartbeat (struct ferry_store *st, int64_t id,
                           const char *runner, char **request)
{
  if (request)
    *request = NULL;
  if (check_string ("ferry_store_job_heartbeat", "the runner", runner) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->job_heartbeat (st, id, runner, request);
}

/* RUNNER lets go of a job. */
int
ferry_store_job_release (struct ferry_store *st, int64_t id,
                         const char *runner)
{
  if (check_string ("ferry_store_job_release", "the runner", runner) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->job_release (st, id, runner);
}

/* Ask a job's runner to pause or cancel, or withdraw the request. */
int
ferry_store_job_request (struct ferry_store *st, int64_t id,
                         const char *request)
{
  if (request && strcmp (request, "pause") && strcmp (request, "cancel") &&
      strcmp (request, "cutover"))
    return ferry_error (EINVAL, "%s: job %" PRId64 ": unknown request "
                        "\"%s\" (pause, cancel or cutover)", st->path, id,
                        request);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->job_request (st, id, request);
}

/* Whether a record's runner lives, as claim judges it. */
int
ferry_store_job_runner_alive (struct ferry_store *st,
                              const struct ferry_store_record *r,
                              double stale)
{
  (void) st;
  return store_runner_alive (r->runner, r->heartbeat, stale);
}

/* Append one event to a job's log. */
int
ferry_store_event_add (struct ferry_store *st, int64_t job,
                       const char *level, const char *message)
{
  if (check_string ("ferry_store_event_add", "the level", level) == -1 ||
      check_string ("ferry_store_event_add", "the message", message) == -1)
    return -1;
  if (strcmp (level, "info") && strcmp (level, "warning") &&
      strcmp (level, "error"))
    return ferry_error (EINVAL, "%s: job %" PRId64 ": unknown event level "
                        "\"%s\" (info, warning or error)",
                        st->path, job, level);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->event_add (st, job, level, message);
}

/* Events after AFTER, oldest first. */
int
ferry_store_event_list (struct ferry_store *st, int64_t job,
                        int64_t after, size_t limit,
                        struct ferry_store_event **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->event_list (st, job, after, limit, out, n);
}

/* Add a plan. */
int64_t
ferry_store_plan_add (struct ferry_store *st, const char *doc)
{
  if (check_string ("ferry_store_plan_add", "the document", doc) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->plan_add (st, doc);
}

/* Read a plan's document. */
int
ferry_store_plan_get (struct ferry_store *st, int64_t id, char **doc)
{
  *doc = NULL;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->plan_get (st, id, doc);
}

/* Every plan's id, oldest first. */
int
ferry_store_plan_list (struct ferry_store *st, int64_t **ids, size_t *n)
{
  *ids = NULL;
  *n = 0;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  return st->ops->plan_list (st, ids, n);
}

/* ----- runners ----- */

/* Wall-clock seconds since the epoch. */
double
store_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Process PID's state letter and start time (field 22 of
 * /proc/PID/stat).  -1 when it cannot be read (no such process). */
static int
process_start (pid_t pid, char *state, unsigned long long *start)
{
  char path[64], buf[1024];
  FILE *f;
  size_t len;
  char *p;

  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  f = fopen (path, "re");
  if (f == NULL)
    return -1;
  len = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  buf[len] = '\0';
  /* The command name (field 2) is in parentheses and may hold anything,
   * spaces and parentheses too: the fields go on after the last ')'. */
  p = strrchr (buf, ')');
  if (p == NULL)
    return -1;
  if (sscanf (p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u "
              "%*d %*d %*d %*d %*d %*d %llu", state, start) != 2)
    return -1;
  return 0;
}

/* This host's name (empty if it has none). */
static void
host_name (char *buf, size_t len)
{
  if (gethostname (buf, len) == -1)
    buf[0] = '\0';
  buf[len - 1] = '\0';
}

/* This process's runner id. */
char *
ferry_store_runner_id (void)
{
  char host[HOST_NAME_MAX + 1], state;
  unsigned long long start;
  char *id;

  host_name (host, sizeof host);
  if (process_start (getpid (), &state, &start) == -1) {
    ferry_error_errno (errno, "/proc/%d/stat: cannot read this process's "
                       "start time", (int) getpid ());
    return NULL;
  }
  if (asprintf (&id, "%s:%d:%llu", host, (int) getpid (), start) == -1) {
    ferry_error_errno (errno, "runner id");
    return NULL;
  }
  return id;
}

/* Split a runner id into its host (in HOST, LEN bytes), pid and start
 * time.  -1 when it is not "HOST:PID:START". */
static int
parse_runner (const char *runner, char *host, size_t len, pid_t *pid,
              unsigned long long *start)
{
  const char *c2 = strrchr (runner, ':'), *c1;
  char *end;
  long p;

  if (c2 == NULL || c2 == runner)
    return -1;
  for (c1 = c2 - 1; c1 > runner && *c1 != ':'; c1--)
    ;
  if (*c1 != ':' || (size_t) (c1 - runner) >= len)
    return -1;
  memcpy (host, runner, c1 - runner);
  host[c1 - runner] = '\0';
  errno = 0;
  p = strtol (c1 + 1, &end, 10);
  if (errno || end != c2 || p <= 0 || p > INT_MAX)
    return -1;
  *pid = p;
  if (!isdigit ((unsigned char) c2[1]))
    return -1;
  *start = strtoull (c2 + 1, &end, 10);
  if (errno || *end)
    return -1;
  return 0;
}

/* Whether RUNNER lives (notes 2 and 3). */
int
store_runner_alive (const char *runner, double heartbeat, double stale)
{
  char host[HOST_NAME_MAX + 1], me[HOST_NAME_MAX + 1], state;
  unsigned long long start, actual;
  pid_t pid;

  if (runner == NULL)
    return 0;
  host_name (me, sizeof me);
  if (parse_runner (runner, host, sizeof host, &pid, &start) == 0 &&
      strcmp (host, me) == 0) {
    if (kill (pid, 0) == -1 && errno != EPERM)
      return 0;
    if (process_start (pid, &state, &actual) == -1)
      return 0;
    return actual == start && state != 'Z' && state != 'X';
  }
  /* Another host, or an id this program cannot read: the heartbeat. */
  return heartbeat > 0 && store_now () - heartbeat < stale;
}

/* The holder in words, for a refusal. */
const char *
store_runner_describe (const char *runner, double heartbeat, char *buf,
                       size_t len)
{
  char host[HOST_NAME_MAX + 1], started[64] = "";
  unsigned long long start;
  double age = store_now () - heartbeat;
  pid_t pid;

  if (parse_runner (runner, host, sizeof host, &pid, &start) == -1) {
    snprintf (buf, len, "runner \"%s\" (last heartbeat %.0f s ago)",
              runner, age);
    return buf;
  }
  {
    char me[HOST_NAME_MAX + 1];
    long ticks = sysconf (_SC_CLK_TCK);
    struct timespec boot;

    host_name (me, sizeof me);
    /* The start time is in ticks since this host's boot: a date only
     * here. */
    if (strcmp (host, me) == 0 && ticks > 0 &&
        clock_gettime (CLOCK_BOOTTIME, &boot) == 0) {
      time_t t = (time_t) (store_now () - (boot.tv_sec + boot.tv_nsec / 1e9)
                           + (double) start / ticks);
      struct tm tm;
      if (localtime_r (&t, &tm))
        strftime (started, sizeof started, "started %Y-%m-%d %H:%M:%S, ",
                  &tm);
    }
  }
  if (heartbeat > 0)
    snprintf (buf, len, "process %d on %s (%slast heartbeat %.0f s ago)",
              (int) pid, host, started, age < 0 ? 0 : age);
  else
    snprintf (buf, len, "process %d on %s (%sno heartbeat yet)",
              (int) pid, host, started);
  return buf;
}
