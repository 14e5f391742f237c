/* ferry job: migrations as durable jobs in the job store (<ferry/job.h>):
 * add, list, show (--watch), start, pause, resume, cancel, retry, rm, run,
 * cutover.  Every subcommand takes --store PATH and --json, whose object
 * carries at least "id" and "state".
 *
 * start, resume and retry run the job in the background: a detached
 * `ferry job run ID` whose output goes to the store's folder
 * (logs/job-ID.log); run runs it here, in the foreground.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <ferry/job.h>
#include <ferry/store.h>
#include <ferry/vm.h>

#include "ferry.h"
#include "job-cli.h"

static void
usage (FILE *fp)
{
  fprintf (fp,
    "usage: ferry job add [--store PATH] [--start] [--test] [--json] SOURCE\n"
    "                 --to libvirt|qemu|ova|local --out DIR [-O FMT]\n"
    "                 [--network-map SRC=DST]... [--name NAME] [--keep-devices]\n"
    "                 [--flavor vmware|virtualbox] [-m THREADS] [-t CACHE]\n"
    "                 [--no-convert] [--no-guest-agent] [--verify]\n"
    "                 [--verify-timeout S] [--mode cold|warm] [--domain FILE]\n"
    "                 [--cutover now|manual|TIME|+S] [--max-downtime S]\n"
    "                 [--round-interval S] [--source-stop shutdown|pause]\n"
    "                 [--shutdown-timeout S]\n"
    "       ferry job list [--store PATH] [--json] [--plan ID]\n"
    "       ferry job show [--store PATH] [--json] [--watch] ID\n"
    "       ferry job start|pause|resume|cancel|retry|rm|cutover [--store PATH]\n"
    "                 [--json] [--wait] ID\n"
    "       ferry job run [--store PATH] [--json] [-p | --progress=bar|json|none] ID\n"
    "  --store PATH    the job store (default $FERRY_STORE, else\n"
    "                  $XDG_STATE_HOME/ferry/ferry.db)\n"
    "  --start         start the job at once, in the background\n"
    "  --test          boot the result isolated first; the job then waits for\n"
    "                  `ferry job cutover ID`\n"
    "  --json          print the job (or the list) as JSON\n"
    "  --plan ID       only the jobs of plan ID\n"
    "  --watch         follow the job until it stops, with a progress bar\n"
    "  --wait          wait until the job stops (start, resume, retry) or\n"
    "                  until it has paused or been cancelled\n"
    "  -p, --progress  progress while it runs (run)\n"
    "  --verify        after the commit, boot the output isolated until a login\n"
    "                  prompt (as ferry verify --boot); the job fails if it does not\n"
    "  --verify-timeout S  seconds a boot may take (default 600)\n"
    "  --mode warm     copy while the source runs (SOURCE qmp:SOCKET, a VMX or\n"
    "                  OVF with snapshot deltas, an image, an NBD URI), rounds\n"
    "                  of what changed, then the cutover stops it\n"
    "  --domain FILE   a qmp: source's libvirt XML or QEMU script\n"
    "  --cutover WHEN  manual (default: ferry job cutover ID), now (once the\n"
    "                  rounds stop shrinking), a time (2026-12-08T03:00[Z]), +S\n"
    "  --max-downtime S  cut over only once the predicted downtime fits\n"
    "  --round-interval S  seconds between rounds that no longer shrink (10)\n"
    "  --source-stop HOW  shutdown (the guest's, default) or pause\n"
    "  --shutdown-timeout S  seconds a shutdown may take before a pause (120)\n"
    "  the other options are those of ferry v2v\n");
}

/* --- shared --------------------------------------------------------------- */

int
job_cli_parse_id (const char *cmd, const char *arg, int64_t *id)
{
  char *end;
  long long v;

  errno = 0;
  v = strtoll (arg, &end, 10);
  if (errno || end == arg || *end || v <= 0) {
    print_message (cmd, "%s: expected a job id (a positive number)", arg);
    return -1;
  }
  *id = v;
  return 0;
}

struct ferry_store *
job_cli_open_store (const char *cmd, const char *path, bool create)
{
  struct ferry_store *st = ferry_store_open (path, create ? 0
                                             : FERRY_STORE_NO_CREATE);
  if (st == NULL)
    print_error (cmd);
  return st;
}

/* "12.3 s", "4 min 10 s", "2 h 5 min". */
static const char *
duration (double s, char *buf, size_t len)
{
  if (s < 0)
    snprintf (buf, len, "?");
  else if (s < 60)
    snprintf (buf, len, "%.1f s", s);
  else if (s < 3600)
    snprintf (buf, len, "%d min %d s", (int) s / 60, (int) s % 60);
  else
    snprintf (buf, len, "%d h %d min", (int) s / 3600, (int) s % 3600 / 60);
  return buf;
}

/* The time T (Unix seconds) as "2026-12-07 21:03:05". */
static const char *
when (double t, char *buf, size_t len)
{
  time_t tt = (time_t) t;
  struct tm tm;

  if (t <= 0 || localtime_r (&tt, &tm) == NULL)
    snprintf (buf, len, "-");
  else
    strftime (buf, len, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

static double
num (json_object *o, const char *key)
{
  json_object *v;

  if (o && json_object_object_get_ex (o, key, &v))
    return json_object_get_double (v);
  return 0;
}

static const char *
str_opt (json_object *o, const char *key)
{
  json_object *v;

  if (o && json_object_object_get_ex (o, key, &v) &&
      json_object_is_type (v, json_type_string))
    return json_object_get_string (v);
  return NULL;
}

/* Member KEY of O, "?" when missing. */
static const char *
str (json_object *o, const char *key)
{
  const char *v = str_opt (o, key);

  return v ? v : "?";
}

/* Bytes done and to do over the job's disks. */
static void
totals (json_object *doc, uint64_t *done, uint64_t *total, double *speed,
        double *eta)
{
  json_object *disks;
  size_t i;

  *done = *total = 0;
  *speed = 0;
  *eta = 0;
  if (!json_object_object_get_ex (doc, "disks", &disks))
    return;
  for (i = 0; i < json_object_array_length (disks); i++) {
    json_object *d = json_object_array_get_idx (disks, i);
    *done += num (d, "done");
    *total += num (d, "total");
    *speed += num (d, "speed");
    if (num (d, "eta") > 0)
      *eta += num (d, "eta");
  }
}

json_object *
job_cli_json (struct ferry_store *st, const struct ferry_store_record *r,
              bool events)
{
  json_object *o = json_object_new_object ();
  json_object *doc = json_tokener_parse (r->doc ? r->doc : "{}");
  uint64_t done, total;
  double speed, eta;

  json_object_object_add (o, "id", json_object_new_int64 (r->id));
  json_object_object_add (o, "state", json_object_new_string (
                            ferry_job_shown_state (st, r)));
  if (r->plan)
    json_object_object_add (o, "plan", json_object_new_int64 (r->plan));
  if (r->runner)
    json_object_object_add (o, "runner", json_object_new_string (r->runner));
  if (r->request)
    json_object_object_add (o, "request", json_object_new_string (r->request));
  totals (doc, &done, &total, &speed, &eta);
  json_object_object_add (o, "bytes_done", json_object_new_uint64 (done));
  json_object_object_add (o, "bytes_total", json_object_new_uint64 (total));
  json_object_object_add (o, "speed", json_object_new_double (speed));
  json_object_object_add (o, "eta", json_object_new_double (eta));
  if (doc && json_object_is_type (doc, json_type_object)) {
    json_object_object_foreach (doc, key, v) {
      if (strcmp (key, "state") == 0)
        continue;
      json_object_object_add (o, key, json_object_get (v));
    }
  }
  json_object_put (doc);
  if (events) {
    struct ferry_store_event *ev = NULL;
    size_t n = 0, i;
    json_object *a = json_object_new_array ();
    if (ferry_store_event_list (st, r->id, 0, 0, &ev, &n) == 0) {
      for (i = 0; i < n; i++) {
        json_object *e = json_object_new_object ();
        json_object_object_add (e, "time", json_object_new_double (ev[i].time));
        json_object_object_add (e, "level", json_object_new_string (ev[i].level));
        json_object_object_add (e, "message",
                                json_object_new_string (ev[i].message));
        json_object_array_add (a, e);
      }
      ferry_store_events_free (ev, n);
    }
    json_object_object_add (o, "events", a);
  }
  return o;
}

/* Print job R for people: its state, disks, steps and events. */
static void
print_job (struct ferry_store *st, const struct ferry_store_record *r)
{
  json_object *doc = json_tokener_parse (r->doc ? r->doc : "{}");
  json_object *a, *opts = NULL;
  struct ferry_store_event *ev = NULL;
  size_t n = 0, i;
  char b1[32], b2[32], b3[32], b4[32];

  json_object_object_get_ex (doc, "options", &opts);
  printf ("Job %" PRId64 ": %s\n", r->id, ferry_job_shown_state (st, r));
  printf ("  VM: %s\n", str (doc, "vm"));
  printf ("  source: %s\n", str (doc, "source"));
  printf ("  target: %s, %s\n", str (opts, "to"),
          str (doc, "out"));
  if (r->plan)
    printf ("  plan: %" PRId64 "\n", r->plan);
  if (num (doc, "test") || json_object_get_boolean (
        json_object_object_get (doc, "test")))
    printf ("  test first: yes%s\n", json_object_get_boolean (
              json_object_object_get (doc, "cutover")) ? " (cutover asked)" : "");
  if (r->runner)
    printf ("  runner: %s%s\n", r->runner,
            ferry_store_job_runner_alive (st, r, FERRY_JOB_STALE) == 1
            ? "" : " (gone)");
  if (r->request)
    printf ("  asked: %s\n", r->request);
  printf ("  created %s", when (num (doc, "created"), b1, sizeof b1));
  if (num (doc, "started"))
    printf (", started %s", when (num (doc, "started"), b1, sizeof b1));
  if (num (doc, "finished"))
    printf (", ended %s", when (num (doc, "finished"), b1, sizeof b1));
  printf ("\n");
  if (str_opt (doc, "error"))
    printf ("  error: %s\n", str (doc, "error"));
  if (json_object_object_get_ex (doc, "disks", &a)) {
    printf ("Disks:\n");
    for (i = 0; i < json_object_array_length (a); i++) {
      json_object *d = json_object_array_get_idx (a, i), *c;
      double t = num (d, "total"), dn = num (d, "done");
      printf ("  %zu. %s -> %s (%s): %s of %s (%.0f%%)", i + 1,
              str (d, "source"),
              str (d, "target"),
              str (d, "format"),
              human_size (dn, b1, sizeof b1), human_size (t, b2, sizeof b2),
              t > 0 ? 100.0 * dn / t : 100.0);
      if (strcmp (r->state, "running") == 0 && num (d, "speed") > 0 && dn < t)
        printf (", %.1f MB/s, ETA %s", num (d, "speed") / 1e6,
                duration (num (d, "eta"), b3, sizeof b3));
      if (json_object_object_get_ex (d, "checkpoint", &c))
        printf (", checkpoint at %s", human_size (num (c, "durable"), b3,
                                                   sizeof b3));
      printf ("\n");
    }
  }
  if (json_object_object_get_ex (doc, "rounds", &a) &&
      json_object_array_length (a)) {
    printf ("Rounds:\n");
    for (i = 0; i < json_object_array_length (a); i++) {
      json_object *w = json_object_array_get_idx (a, i);
      printf ("  %2.0f. %-8s %s in %s, the source changed %s/s",
              num (w, "number"), str (w, "kind"),
              human_size (num (w, "bytes"), b1, sizeof b1),
              duration (num (w, "seconds"), b2, sizeof b2),
              human_size (num (w, "dirty_rate"), b3, sizeof b3));
      if (num (w, "throughput") > 0)
        printf (", copied at %s/s", human_size (num (w, "throughput"), b4,
                                                sizeof b4));
      printf ("%s\n", json_object_get_boolean (
                json_object_object_get (w, "final"))
              ? " (the last delta, source stopped)" : "");
    }
  }
  if (json_object_object_get_ex (doc, "predicted_downtime_s", &a))
    printf ("  predicted downtime: %.2f s\n", json_object_get_double (a));
  if (json_object_object_get_ex (doc, "downtime_s", &a))
    printf ("  measured downtime: %.2f s (disks final after %.2f s)\n",
            json_object_get_double (a), num (doc, "disks_final_s"));
  if (str_opt (doc, "waiting"))
    printf ("  waiting: %s\n", str (doc, "waiting"));
  if (json_object_object_get_ex (doc, "checks", &a) &&
      json_object_array_length (a)) {
    printf ("Checks:\n");
    for (i = 0; i < json_object_array_length (a); i++) {
      json_object *c = json_object_array_get_idx (a, i);
      printf ("  %s: %s\n", str (c, "severity"), str (c, "message"));
      if (str_opt (c, "remedy"))
        printf ("    remedy: %s\n", str (c, "remedy"));
    }
  }
  if (json_object_object_get_ex (doc, "steps", &a) &&
      json_object_array_length (a)) {
    printf ("Steps:\n");
    for (i = 0; i < json_object_array_length (a); i++) {
      json_object *s = json_object_array_get_idx (a, i), *d;
      double t0 = num (s, "started"), t1 = num (s, "finished");
      char name[64];
      if (json_object_object_get_ex (s, "disk", &d))
        snprintf (name, sizeof name, "%s disk %d", str (s, "name"),
                  json_object_get_int (d) + 1);
      else
        snprintf (name, sizeof name, "%s", str (s, "name"));
      printf ("  %-16s %-8s %s", name, str (s, "state"),
              when (t0, b1, sizeof b1));
      if (t1 > 0)
        printf (" (%s)", duration (t1 - t0, b2, sizeof b2));
      if (str_opt (s, "outcome"))
        printf (": %s", str (s, "outcome"));
      printf ("\n");
    }
  }
  if (ferry_store_event_list (st, r->id, 0, 0, &ev, &n) == 0 && n) {
    printf ("Events:\n");
    for (i = 0; i < n; i++)
      printf ("  %s %-7s %s\n", when (ev[i].time, b1, sizeof b1),
              ev[i].level, ev[i].message);
  }
  ferry_store_events_free (ev, n);
  json_object_put (doc);
}

/* Print job ID (as JSON with JSON), read again from the store. */
static int
show_one (const char *cmd, struct ferry_store *st, int64_t id, bool json)
{
  struct ferry_store_record r;

  if (ferry_store_job_get (st, id, &r) == -1) {
    print_error (cmd);
    return 1;
  }
  if (json)
    print_json_object (job_cli_json (st, &r, true), true);
  else
    print_job (st, &r);
  ferry_store_record_free (&r);
  fflush (stdout);
  return 0;
}

/* True when a job in STATE does not move by itself. */
static bool
settled (const char *state)
{
  return strcmp (state, "running") != 0;
}

/* Wait for job ID: until a runner has taken it (it leaves "planned"; at
 * most CLAIM_WAIT seconds) when NEED_RUNNER, then, when UNTIL_SETTLED,
 * until it no longer runs (at most TIMEOUT seconds, 0: no limit).  0, or
 * 1 on a timeout or an interrupt. */
#define CLAIM_WAIT 15
static int
wait_for (struct ferry_store *st, int64_t id, bool need_runner,
          bool until_settled, double timeout)
{
  struct timespec t0;
  clock_gettime (CLOCK_MONOTONIC, &t0);

  for (;;) {
    struct ferry_store_record r;
    struct timespec t1;
    const char *state;
    double elapsed;
    bool done;

    if (cli_stop)
      return 1;
    if (ferry_store_job_get (st, id, &r) == -1)
      return 1;
    state = ferry_job_shown_state (st, &r);
    clock_gettime (CLOCK_MONOTONIC, &t1);
    elapsed = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (need_runner && strcmp (state, "planned") == 0)
      done = elapsed > CLAIM_WAIT;
    else
      /* A warm job awaiting its cutover with a live runner still runs
       * rounds. */
      done = !until_settled ||
        (settled (state) && !(strcmp (state, "awaiting-cutover") == 0 &&
                              r.runner &&
                              ferry_store_job_runner_alive (
                                st, &r, FERRY_JOB_STALE) == 1));
    ferry_store_record_free (&r);
    if (done)
      return 0;
    if (timeout > 0 && elapsed > timeout)
      return 1;
    usleep (100000);
  }
}

int
job_cli_spawn (const char *cmd, struct ferry_store *st, int64_t id)
{
  CLEANUP_FREE_STR char *logdir = NULL, *log = NULL, *idstr = NULL;
  const char *path = ferry_store_path (st);
  const char *slash = strrchr (path, '/');
  pid_t pid;
  int status;

  if (asprintf (&logdir, "%.*s/logs", slash ? (int) (slash - path) : 1,
                slash ? path : ".") == -1 ||
      asprintf (&log, "%s/job-%" PRId64 ".log", logdir, id) == -1 ||
      asprintf (&idstr, "%" PRId64, id) == -1) {
    print_message (cmd, "out of memory");
    return -1;
  }
  if (mkdir (logdir, 0700) == -1 && errno != EEXIST) {
    print_message (cmd, "%s: %s", logdir, strerror (errno));
    return -1;
  }
  fflush (stdout);
  fflush (stderr);
  /* Twice forked, so the runner is nobody's child and outlives us. */
  pid = fork ();
  if (pid == -1) {
    print_message (cmd, "fork: %s", strerror (errno));
    return -1;
  }
  if (pid == 0) {
    pid_t p2;
    int fd;
    setsid ();
    p2 = fork ();
    if (p2 != 0)
      _exit (p2 == -1 ? 1 : 0);
    signal (SIGINT, SIG_DFL);
    signal (SIGTERM, SIG_DFL);
    signal (SIGHUP, SIG_DFL);
    fd = open ("/dev/null", O_RDONLY);
    if (fd >= 0) {
      dup2 (fd, 0);
      close (fd);
    }
    fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2 (fd, 1);
      dup2 (fd, 2);
      close (fd);
    }
    execl ("/proc/self/exe", "ferry", "job", "run", "--store", path, idstr,
           (char *) NULL);
    _exit (127);
  }
  if (waitpid (pid, &status, 0) == -1 || !WIFEXITED (status) ||
      WEXITSTATUS (status) != 0) {
    print_message (cmd, "could not start the job's runner");
    return -1;
  }
  return 0;
}

/* --- subcommands ------------------------------------------------------------ */

/* The options every subcommand takes. */
struct common {
  const char *store;
  bool json, wait, watch, start, test;
  int64_t plan;
};

/* list */
static int
job_list (struct ferry_store *st, const struct common *c)
{
  struct ferry_store_record *r = NULL;
  size_t n = 0, i;
  json_object *a;

  if (ferry_store_job_list (st, c->plan ? c->plan : -1, &r, &n) == -1) {
    print_error ("job list");
    return 1;
  }
  if (c->json) {
    a = json_object_new_array ();
    for (i = 0; i < n; i++)
      json_object_array_add (a, job_cli_json (st, &r[i], false));
    print_json_object (a, true);
  }
  else {
    printf ("%-5s %-17s %-20s %-8s %7s  %s\n", "ID", "STATE", "VM", "TARGET",
            "DONE", "OUTPUT");
    for (i = 0; i < n; i++) {
      json_object *doc = json_tokener_parse (r[i].doc ? r[i].doc : "{}");
      json_object *o = NULL;
      uint64_t done, total;
      double speed, eta;
      json_object_object_get_ex (doc, "options", &o);
      totals (doc, &done, &total, &speed, &eta);
      char pct[16];
      if (total)
        snprintf (pct, sizeof pct, "%.1f%%", 100.0 * done / total);
      else
        snprintf (pct, sizeof pct, "%s", strcmp (r[i].state, "done") == 0
                  ? "100.0%" : "-");
      printf ("%-5" PRId64 " %-17s %-20.20s %-8s %7s  %s\n", r[i].id,
              ferry_job_shown_state (st, &r[i]),
              str (doc, "vm"),
              str (o, "to"), pct,
              str (doc, "out"));
      json_object_put (doc);
    }
  }
  ferry_store_records_free (r, n);
  return 0;
}

/* show --watch: a bar, as convert -p draws it, until the job settles. */
static int
job_watch (struct ferry_store *st, int64_t id, bool json)
{
  bool tty = isatty (STDERR_FILENO);

  for (;;) {
    struct ferry_store_record r;
    json_object *doc;
    uint64_t done, total;
    double speed, eta;
    const char *state;
    char b1[32], b2[32], b3[32];

    if (cli_stop)
      return 1;
    if (ferry_store_job_get (st, id, &r) == -1) {
      print_error ("job show");
      return 1;
    }
    doc = json_tokener_parse (r.doc ? r.doc : "{}");
    totals (doc, &done, &total, &speed, &eta);
    state = ferry_job_shown_state (st, &r);
    if (json) {
      json_object *o = json_object_new_object ();
      json_object_object_add (o, "id", json_object_new_int64 (id));
      json_object_object_add (o, "state", json_object_new_string (state));
      json_object_object_add (o, "bytes_done", json_object_new_uint64 (done));
      json_object_object_add (o, "bytes_total", json_object_new_uint64 (total));
      json_object_object_add (o, "speed", json_object_new_double (speed));
      json_object_object_add (o, "eta", json_object_new_double (eta));
      print_json_object (o, false);
    }
    else {
      double pct = total ? 100.0 * done / total : 100.0;
      int width = 30, fill = (int) (pct / 100 * width), i;
      fprintf (stderr, "%sjob %" PRId64 " %-16s [", tty ? "\r" : "", id, state);
      for (i = 0; i < width; i++)
        fputc (i < fill ? '#' : ' ', stderr);
      fprintf (stderr, "] %5.1f%%  %s / %s  %.1f MB/s  ETA %s%s", pct,
               human_size (done, b1, sizeof b1),
               human_size (total, b2, sizeof b2), speed / 1e6,
               duration (strcmp (state, "running") ? 0 : eta, b3, sizeof b3),
               tty ? "\033[K" : "\n");
      fflush (stderr);
    }
    json_object_put (doc);
    if (settled (state)) {
      if (!json && tty)
        fputc ('\n', stderr);
      ferry_store_record_free (&r);
      return show_one ("job show", st, id, json);
    }
    ferry_store_record_free (&r);
    usleep (json ? 1000000 : 200000);
  }
}

/* run: run job ID here. */
static int
job_run_here (const char *cmd, struct ferry_store *st, int64_t id, bool json,
              enum progress_mode mode, struct ferry_vm *vm,
              struct ferry_v2v_plan *plan)
{
  struct cli_progress cp = { .mode = mode, .last_tenth = -1,
                             .tty = isatty (STDERR_FILENO) };
  struct ferry_job_run_options o = {
    .progress = mode != PROGRESS_NONE ? v2v_progress : NULL,
    .progress_opaque = &cp, .interrupt = &cli_stop,
    .vm = vm, .plan = plan,
  };
  struct ferry_job_outcome out;
  int r = ferry_job_run (st, id, &o, &out);
  int ret = r == 0 ? 0 : 1;

  if (r == -1) {
    if (cli_stop && ferry_get_errno () == EINTR)
      print_interrupted (cmd, "job %" PRId64 " is paused; ferry job resume %"
                         PRId64 " goes on where it stopped", id, id);
    else
      print_error (cmd);
  }
  else if (!json && strcmp (out.state, "awaiting-cutover") == 0)
    fprintf (stderr, "ferry %s: job %" PRId64 " is awaiting its cutover: "
             "ferry job cutover %" PRId64 " puts it in place\n", cmd, id, id);
  else if (!json && strcmp (out.state, "done") != 0)
    fprintf (stderr, "ferry %s: job %" PRId64 " is %s\n", cmd, id, out.state);
  if (json)
    show_one (cmd, st, id, true);
  ferry_job_outcome_free (&out);
  return ret;
}

/* add: plan, check, record; start with --start. */
static int
job_add (struct ferry_store *st, const struct common *c,
         const struct ferry_job_spec *spec)
{
  struct ferry_vm *vm = NULL;
  struct ferry_v2v_plan *plan = NULL;
  int64_t id;
  int ret = 1;

  id = ferry_job_add (st, spec, false, &vm, &plan);
  if (id == -1) {
    print_error ("job add");
    goto out;
  }
  if (plan) {
    if (!c->json)
      print_plan (plan, &(struct ferry_v2v_options) {
          .target = strcmp (spec->to, "qemu") == 0 ? FERRY_V2V_QEMU
          : strcmp (spec->to, "ova") == 0 ? FERRY_V2V_OVA
          : strcmp (spec->to, "local") == 0 ? FERRY_V2V_LOCAL
          : FERRY_V2V_LIBVIRT });
  }
  if (id == 0) {
    print_message ("job add", "%zu check%s failed: no job was added",
                   plan->nr_errors, plan->nr_errors == 1 ? "" : "s");
    if (c->json) {
      json_object *o = json_object_new_object ();
      json_object_object_add (o, "id", NULL);
      json_object_object_add (o, "state", json_object_new_string ("refused"));
      print_json_object (o, true);
    }
    goto out;
  }
  if (c->start && job_cli_spawn ("job add", st, id) == -1)
    goto out;
  if (c->start)
    wait_for (st, id, true, c->wait, 0);
  if (c->json)
    show_one ("job add", st, id, true);
  else
    printf ("Job %" PRId64 " added%s\n", id, c->start ? " and started" : "");
  ret = 0;
 out:
  ferry_v2v_plan_free (plan);
  ferry_vm_free (vm);
  return ret;
}

/* start, resume, retry, pause, cancel, rm, cutover. */
static int
job_control (const char *sub, struct ferry_store *st, int64_t id,
             const struct common *c)
{
  char cmd[32];
  int r = 0;

  snprintf (cmd, sizeof cmd, "job %s", sub);
  if (!strcmp (sub, "pause") || !strcmp (sub, "cancel")) {
    r = sub[0] == 'p' ? ferry_job_pause (st, id) : ferry_job_cancel (st, id);
    if (r == -1) {
      print_error (cmd);
      return 1;
    }
    /* A running job stops at its next safe point, within seconds. */
    if (r == 0 && wait_for (st, id, false, true, c->wait ? 0 : 10) == 1 &&
        !cli_stop)
      print_message (cmd, "job %" PRId64 " was asked, and has not stopped "
                     "yet", id);
  }
  else if (!strcmp (sub, "rm")) {
    if (ferry_job_remove (st, id) == -1) {
      print_error (cmd);
      return 1;
    }
    if (c->json) {
      json_object *o = json_object_new_object ();
      json_object_object_add (o, "id", json_object_new_int64 (id));
      json_object_object_add (o, "state", json_object_new_string ("removed"));
      print_json_object (o, true);
    }
    else
      printf ("Job %" PRId64 " removed\n", id);
    return 0;
  }
  else {
    struct ferry_store_record rec;
    bool retry = !strcmp (sub, "retry"), cutover = !strcmp (sub, "cutover");
    if (ferry_store_job_get (st, id, &rec) == -1) {
      print_error (cmd);
      return 1;
    }
    if (!strcmp (sub, "start") && strcmp (rec.state, "planned") != 0) {
      print_message (cmd, "job %" PRId64 " is %s: start runs a planned job "
                     "(resume goes on after a pause or a failure)", id,
                     ferry_job_shown_state (st, &rec));
      ferry_store_record_free (&rec);
      return 1;
    }
    if (!strcmp (sub, "resume") && !strcmp (rec.state, "planned"))
      ;                         /* nothing to reset: just start */
    else if (cutover) {
      r = ferry_job_cutover (st, id);
      /* A warm job's runner, live, was asked: it goes on by itself. */
      if (r == 0 && rec.runner &&
          ferry_store_job_runner_alive (st, &rec, FERRY_JOB_STALE) == 1) {
        ferry_store_record_free (&rec);
        if (c->wait)
          wait_for (st, id, true, true, 0);
        return show_one (cmd, st, id, c->json);
      }
    }
    else if (strcmp (rec.state, "planned") != 0)
      r = ferry_job_reset (st, id, retry &&
                           !strcmp (rec.state, "awaiting-cutover"));
    else
      r = 0;
    ferry_store_record_free (&rec);
    if (!strcmp (sub, "resume") || !strcmp (sub, "retry") || cutover) {
      if (r == -1) {
        print_error (cmd);
        return 1;
      }
    }
    if (job_cli_spawn (cmd, st, id) == -1)
      return 1;
    wait_for (st, id, true, c->wait, 0);
    /* --wait: the status says how it ended, for scripts. */
    if (c->wait) {
      struct ferry_store_record end;
      bool ok = false;
      if (ferry_store_job_get (st, id, &end) == 0) {
        const char *state = ferry_job_shown_state (st, &end);
        ok = !strcmp (state, "done") || !strcmp (state, "awaiting-cutover");
        ferry_store_record_free (&end);
      }
      return show_one (cmd, st, id, c->json) || !ok;
    }
  }
  return show_one (cmd, st, id, c->json);
}

int
cmd_job (int argc, char **argv)
{
  enum { OPT_STORE = 256, OPT_JSON, OPT_START, OPT_TEST, OPT_PLAN, OPT_WATCH,
         OPT_WAIT, OPT_PROGRESS, OPT_VERIFY };
  static const struct option long_options[] = {
    { "store", required_argument, NULL, OPT_STORE },
    { "json", no_argument, NULL, OPT_JSON },
    { "start", no_argument, NULL, OPT_START },
    { "test", no_argument, NULL, OPT_TEST },
    { "plan", required_argument, NULL, OPT_PLAN },
    { "watch", no_argument, NULL, OPT_WATCH },
    { "wait", no_argument, NULL, OPT_WAIT },
    { "progress", optional_argument, NULL, OPT_PROGRESS },
    { "verify", no_argument, NULL, OPT_VERIFY },
    JOB_V2V_LONG_OPTIONS,
    JOB_WARM_LONG_OPTIONS,
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct common c = { 0 };
  struct job_v2v_args va;
  enum progress_mode mode = PROGRESS_NONE;
  bool progress_set = false;
  struct ferry_store *st = NULL;
  const char *sub;
  char cmd[32];
  int ch, ret = 1;
  int64_t id = 0;

  if (argc < 2 || !strcmp (argv[1], "--help") || !strcmp (argv[1], "-h")) {
    usage (argc < 2 ? stderr : stdout);
    return argc < 2 ? 1 : 0;
  }
  sub = argv[1];
  snprintf (cmd, sizeof cmd, "job %s", sub);
  job_v2v_args_init (&va);
  argc--;
  argv++;
  while ((ch = getopt_long (argc, argv, "O:pm:t:h", long_options, NULL)) != -1) {
    switch (ch) {
    case OPT_STORE: c.store = optarg; break;
    case OPT_JSON: c.json = true; break;
    case OPT_START: c.start = true; break;
    case OPT_TEST: c.test = true; break;
    case OPT_WATCH: c.watch = true; break;
    case OPT_WAIT: c.wait = true; break;
    case OPT_VERIFY: va.spec.verify = true; break;
    case OPT_PLAN:
      if (job_cli_parse_id (cmd, optarg, &c.plan) == -1)
        goto out;
      break;
    case 'p':
      mode = PROGRESS_BAR;
      progress_set = true;
      break;
    case OPT_PROGRESS:
      progress_set = true;
      if (optarg == NULL || !strcmp (optarg, "bar"))
        mode = PROGRESS_BAR;
      else if (!strcmp (optarg, "json"))
        mode = PROGRESS_JSON;
      else if (!strcmp (optarg, "none"))
        mode = PROGRESS_NONE;
      else {
        print_message (cmd, "--progress=%s: expected bar, json or none",
                       optarg);
        goto out;
      }
      break;
    case 'h': usage (stdout); ret = 0; goto out;
    default: {
      int r = job_v2v_args_option (cmd, &va, ch, optarg);
      if (r == -1)
        goto out;
      if (r == 0) {
        usage (stderr);
        goto out;
      }
    }
    }
  }
  if (!progress_set && isatty (STDERR_FILENO))
    mode = PROGRESS_BAR;

  if (!strcmp (sub, "add")) {
    if (optind != argc - 1) {
      print_message (cmd, "expected one SOURCE (see ferry job --help)");
      goto out;
    }
    va.spec.source = argv[optind];
    va.spec.test = c.test;
    if (job_v2v_args_check (cmd, &va) == -1)
      goto out;
    st = job_cli_open_store (cmd, c.store, true);
    if (st)
      ret = job_add (st, &c, &va.spec);
    goto out;
  }
  if (!strcmp (sub, "list")) {
    st = job_cli_open_store (cmd, c.store, true);
    if (st)
      ret = job_list (st, &c);
    goto out;
  }
  if (strcmp (sub, "show") && strcmp (sub, "run") && strcmp (sub, "start") &&
      strcmp (sub, "pause") && strcmp (sub, "resume") &&
      strcmp (sub, "cancel") && strcmp (sub, "retry") && strcmp (sub, "rm") &&
      strcmp (sub, "cutover")) {
    print_message ("job", "unknown subcommand '%s' (see ferry job --help)",
                   sub);
    goto out;
  }
  if (optind != argc - 1) {
    print_message (cmd, "expected one job ID");
    goto out;
  }
  if (job_cli_parse_id (cmd, argv[optind], &id) == -1)
    goto out;
  st = job_cli_open_store (cmd, c.store, false);
  if (st == NULL)
    goto out;
  if (!strcmp (sub, "show"))
    ret = c.watch ? job_watch (st, id, c.json) : show_one (cmd, st, id, c.json);
  else if (!strcmp (sub, "run"))
    ret = job_run_here (cmd, st, id, c.json, c.json && mode == PROGRESS_JSON
                        ? PROGRESS_NONE : mode, NULL, NULL);
  else
    ret = job_control (sub, st, id, &c);

 out:
  job_v2v_args_free (&va);
  ferry_store_close (st);
  return ret;
}
