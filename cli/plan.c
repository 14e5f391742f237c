/* ferry plan: many migrations as one plan.
 *
 *   ferry plan run FILE [--parallel N] [--stagger S] [--per-source K]
 *   ferry plan show ID
 *
 * FILE is JSON: {"vms": [{"source": ..., "to": ..., "out": ..., ...}]},
 * each VM an object whose members are `source` and the long options of
 * `ferry job add` ("format" for -O); relative paths are relative to the
 * plan file's folder.  Running it adds a job per VM (a VM whose checks
 * fail is added as failed, so the plan shows it) and runs them, each in a
 * process of its own (`ferry job run ID`), at most N at once, at least S
 * seconds apart, at most K at once per source (the folder of a file
 * source, the host of a URI).  One failing VM never stops the others.
 * The plan's status is a query over its jobs (`ferry plan show ID`, or
 * `ferry job list --plan ID`), from any terminal while it runs.
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

#include "ferry.h"
#include "job-cli.h"

/* A plan file larger than this is refused (a plan of many thousand VMs
 * fits in far less). */
#define PLAN_FILE_MAX (16 << 20)
#define MAX_VMS 100000

static void
usage (FILE *fp)
{
  fprintf (fp,
    "usage: ferry plan run [--store PATH] [--parallel N] [--stagger S]\n"
    "                 [--per-source K] [--json] FILE\n"
    "       ferry plan show [--store PATH] [--json] ID\n"
    "  FILE            {\"vms\": [{\"source\": \"a.ova\", \"to\": \"libvirt\",\n"
    "                  \"out\": \"/srv/a\", \"format\": \"qcow2\"}, ...]}: each VM's\n"
    "                  members are the long options of ferry job add\n"
    "  --store PATH    the job store (as for ferry job)\n"
    "  --parallel N    run at most N migrations at once (default 2)\n"
    "  --stagger S     start them at least S seconds apart (default 0)\n"
    "  --per-source K  at most K at once from one source (a folder, a host;\n"
    "                  default: no limit)\n"
    "  --json          print the plan and its jobs as JSON\n");
}

static double
mono_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Read FILE (at most PLAN_FILE_MAX bytes) as a JSON object. */
static json_object *
read_plan_file (const char *file)
{
  FILE *fp = fopen (file, "re");
  char *buf;
  size_t n;
  json_object *o;

  if (fp == NULL) {
    print_message ("plan run", "%s: %s", file, strerror (errno));
    return NULL;
  }
  buf = malloc (PLAN_FILE_MAX + 1);
  if (buf == NULL) {
    fclose (fp);
    print_message ("plan run", "out of memory");
    return NULL;
  }
  n = fread (buf, 1, PLAN_FILE_MAX + 1, fp);
  if (ferror (fp) || n > PLAN_FILE_MAX) {
    print_message ("plan run", "%s: %s", file, ferror (fp) ? strerror (errno)
                   : "larger than 16 MiB: not a plan file");
    free (buf);
    fclose (fp);
    return NULL;
  }
  fclose (fp);
  if (ferry_job_json_parse (buf, n, &o) == -1) {
    print_message ("plan run", "%s: %s", file, ferry_get_error ());
    o = NULL;
  }
  else if (!json_object_is_type (o, json_type_object)) {
    print_message ("plan run", "%s: not a plan (a JSON object with \"vms\")",
                   file);
    json_object_put (o);
    o = NULL;
  }
  free (buf);
  return o;
}

/* Make the path member KEY of VM absolute, relative to DIR. */
static void
absolute_member (json_object *vm, const char *key, const char *dir)
{
  json_object *v;
  const char *p;
  char *abs;

  if (!json_object_object_get_ex (vm, key, &v) ||
      !json_object_is_type (v, json_type_string))
    return;
  p = json_object_get_string (v);
  if (p[0] == '/' || strstr (p, "://") || strncmp (p, "qmp:", 4) == 0)
    return;
  if (asprintf (&abs, "%s/%s", dir, p) == -1)
    return;
  json_object_object_add (vm, key, json_object_new_string (abs));
  free (abs);
}

/* One job the plan runs. */
struct slot {
  int64_t id;
  char *key;                   /* its source key */
  pid_t pid;                   /* its runner, 0 when not started */
  bool finished;
};

/* Start `ferry job run ID` as a child, its output in LOG_DIR. */
static pid_t
start_runner (const char *store, const char *log_dir, int64_t id)
{
  char idstr[32], log[PATH_MAX];
  pid_t pid;

  snprintf (idstr, sizeof idstr, "%" PRId64, id);
  snprintf (log, sizeof log, "%s/job-%" PRId64 ".log", log_dir, id);
  fflush (stdout);
  fflush (stderr);
  pid = fork ();
  if (pid == 0) {
    int fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    signal (SIGINT, SIG_DFL);
    signal (SIGTERM, SIG_DFL);
    if (fd >= 0) {
      dup2 (fd, 1);
      dup2 (fd, 2);
      close (fd);
    }
    execl ("/proc/self/exe", "ferry", "job", "run", "--store", store, idstr,
           (char *) NULL);
    _exit (127);
  }
  return pid;
}

/* The plan's jobs, a line each, and the counts by state.  Returns the
 * number of jobs not done. */
static size_t
print_status (struct ferry_store *st, int64_t plan, bool json)
{
  struct ferry_store_record *r = NULL;
  size_t n = 0, i, not_done = 0;
  json_object *o = NULL, *a = NULL;

  if (ferry_store_job_list (st, plan, &r, &n) == -1) {
    print_error ("plan");
    return 1;
  }
  if (json) {
    o = json_object_new_object ();
    a = json_object_new_array ();
    json_object_object_add (o, "id", json_object_new_int64 (plan));
  }
  else
    printf ("Plan %" PRId64 ": %zu VM%s\n", plan, n, n == 1 ? "" : "s");
  for (i = 0; i < n; i++) {
    const char *state = ferry_job_shown_state (st, &r[i]);
    if (strcmp (state, "done") != 0)
      not_done++;
    if (json)
      json_object_array_add (a, job_cli_json (st, &r[i], false));
    else {
      json_object *doc = json_tokener_parse (r[i].doc ? r[i].doc : "{}");
      json_object *v, *e;
      const char *vm = json_object_object_get_ex (doc, "vm", &v)
        ? json_object_get_string (v) : "?";
      const char *err = json_object_object_get_ex (doc, "error", &e)
        ? json_object_get_string (e) : NULL;
      printf ("  job %-5" PRId64 " %-17s %s%s%s\n", r[i].id, state, vm,
              err ? ": " : "", err ? err : "");
      json_object_put (doc);
    }
  }
  if (json) {
    json_object_object_add (o, "state", json_object_new_string (
                              not_done ? "incomplete" : "done"));
    json_object_object_add (o, "jobs", a);
    print_json_object (o, true);
  }
  else
    printf ("%zu done, %zu not done\n", n - not_done, not_done);
  ferry_store_records_free (r, n);
  return not_done;
}

/* Whether job ID is still planned: one paused, cancelled or removed
 * from another terminal while it waited for its turn is not run (a
 * runner would run a paused job). */
static bool
still_planned (struct ferry_store *st, int64_t id)
{
  struct ferry_store_record r;
  bool planned;

  if (ferry_store_job_get (st, id, &r) == -1)
    return false;
  planned = strcmp (r.state, "planned") == 0;
  ferry_store_record_free (&r);
  return planned;
}

/* Run the plan's SLOTS to the end (note at the top). */
static void
schedule (struct ferry_store *st, struct slot *slots, size_t n,
          unsigned parallel, double stagger, unsigned per_source,
          const char *log_dir)
{
  double last_start = -1e9;
  size_t next = 0, running = 0, i;

  for (;;) {
    int status;
    pid_t pid;

    /* Reap. */
    while ((pid = waitpid (-1, &status, WNOHANG)) > 0)
      for (i = 0; i < n; i++)
        if (slots[i].pid == pid) {
          slots[i].finished = true;
          running--;
        }
    if (cli_stop) {
      /* Each runner pauses its job at a safe point. */
      for (i = 0; i < n; i++)
        if (slots[i].pid > 0 && !slots[i].finished)
          kill (slots[i].pid, SIGINT);
      while (running > 0 && (pid = waitpid (-1, &status, 0)) > 0)
        running--;
      return;
    }
    while (next < n && slots[next].pid == -1)
      next++;
    if (next >= n && running == 0)
      return;
    /* Start what may start. */
    for (i = next; i < n && running < parallel; i++) {
      size_t k, same = 0;
      if (slots[i].pid != 0)
        continue;
      for (k = 0; k < n; k++)
        if (slots[k].pid > 0 && !slots[k].finished &&
            strcmp (slots[k].key, slots[i].key) == 0)
          same++;
      if (per_source && same >= per_source)
        continue;
      if (mono_now () - last_start < stagger)
        break;
      if (!still_planned (st, slots[i].id)) {
        slots[i].pid = -1;
        continue;
      }
      slots[i].pid = start_runner (ferry_store_path (st), log_dir, slots[i].id);
      if (slots[i].pid <= 0) {
        slots[i].pid = -1;
        continue;
      }
      last_start = mono_now ();
      running++;
    }
    while (next < n && slots[next].pid != 0)
      next++;
    usleep (100000);
  }
}

/* plan run FILE. */
static int
plan_run (struct ferry_store *st, const char *file, unsigned parallel,
          double stagger, unsigned per_source, bool json)
{
  json_object *plan = read_plan_file (file), *vms, *pdoc;
  CLEANUP_FREE_STR char *abs = NULL, *log_dir = NULL;
  struct slot *slots = NULL;
  size_t n, i, nr = 0;
  int64_t plan_id;
  char *dir;
  const char *path = ferry_store_path (st);
  const char *slash = strrchr (path, '/');
  int ret = 1;

  if (plan == NULL)
    return 1;
  if (!json_object_object_get_ex (plan, "vms", &vms) ||
      !json_object_is_type (vms, json_type_array)) {
    print_message ("plan run", "%s: no \"vms\" array", file);
    goto out;
  }
  n = json_object_array_length (vms);
  if (n == 0 || n > MAX_VMS) {
    print_message ("plan run", "%s: %zu VMs (expected 1 to %d)", file, n,
                   MAX_VMS);
    goto out;
  }
  abs = realpath (file, NULL);
  if (abs == NULL) {
    print_message ("plan run", "%s: %s", file, strerror (errno));
    goto out;
  }
  dir = strrchr (abs, '/');
  if (asprintf (&log_dir, "%.*s/logs", slash ? (int) (slash - path) : 1,
                slash ? path : ".") == -1) {
    log_dir = NULL;
    goto out;
  }
  mkdir (log_dir, 0700);
  pdoc = json_object_new_object ();
  json_object_object_add (pdoc, "file", json_object_new_string (abs));
  json_object_object_add (pdoc, "parallel", json_object_new_int (parallel));
  json_object_object_add (pdoc, "stagger", json_object_new_double (stagger));
  json_object_object_add (pdoc, "per-source", json_object_new_int (per_source));
  json_object_object_add (pdoc, "vms", json_object_get (vms));
  plan_id = ferry_store_plan_add (st, json_object_to_json_string_ext (
                                    pdoc, JSON_C_TO_STRING_PLAIN));
  json_object_put (pdoc);
  if (plan_id <= 0) {
    print_error ("plan run");
    goto out;
  }
  if (!json)
    printf ("Plan %" PRId64 ": %zu VMs from %s\n", plan_id, n, abs);
  slots = calloc (n, sizeof *slots);
  if (slots == NULL)
    goto out;
  *dir = '\0';
  for (i = 0; i < n; i++) {
    json_object *vm = json_object_array_get_idx (vms, i);
    struct ferry_job_spec spec;
    struct ferry_job_spec_hold *hold = NULL;
    struct ferry_store_record r;
    int64_t id;

    if (json_object_is_type (vm, json_type_object)) {
      absolute_member (vm, "source", abs);
      absolute_member (vm, "out", abs);
    }
    if (ferry_job_spec_parse (json_object_to_json_string (vm), &spec,
                              &hold) == -1 || spec.source == NULL) {
      print_message ("plan run", "%s: VM %zu: %s", file, i + 1,
                     spec.source ? ferry_get_error ()
                     : "no \"source\"");
      ferry_job_spec_free (hold);
      continue;
    }
    spec.plan = plan_id;
    id = ferry_job_add (st, &spec, true, NULL, NULL);
    ferry_job_spec_free (hold);
    if (id <= 0) {
      print_message ("plan run", "VM %zu: %s", i + 1, ferry_get_error ());
      continue;
    }
    if (ferry_store_job_get (st, id, &r) == -1)
      continue;
    {
      json_object *doc = json_tokener_parse (r.doc ? r.doc : "{}"), *k;
      slots[nr].id = id;
      slots[nr].key = strdup (json_object_object_get_ex (doc, "source-key", &k)
                              ? json_object_get_string (k) : "");
      /* A VM whose checks failed is in the plan, and not run. */
      slots[nr].pid = strcmp (r.state, "planned") == 0 ? 0 : -1;
      if (slots[nr].pid == -1 && !json)
        printf ("  job %" PRId64 ": %s: not run\n", id, r.state);
      json_object_put (doc);
      nr++;
    }
    ferry_store_record_free (&r);
  }
  schedule (st, slots, nr, parallel, stagger, per_source, log_dir);
  ret = print_status (st, plan_id, json) == 0 && nr == n ? 0 : 1;

 out:
  for (i = 0; slots && i < nr; i++)
    free (slots[i].key);
  free (slots);
  json_object_put (plan);
  return ret;
}

/* A count option: 1 to 10000 (0 allowed when ZERO_OK). */
static int
parse_count (const char *opt, const char *arg, bool zero_ok, unsigned *out)
{
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul (arg, &end, 10);
  if (errno || end == arg || *end || v > 10000 || (!zero_ok && v == 0)) {
    print_message ("plan run", "%s %s: expected a number from %d to 10000",
                   opt, arg, zero_ok ? 0 : 1);
    return -1;
  }
  *out = v;
  return 0;
}

int
cmd_plan (int argc, char **argv)
{
  enum { OPT_STORE = 256, OPT_PARALLEL, OPT_STAGGER, OPT_PER_SOURCE,
         OPT_JSON };
  static const struct option long_options[] = {
    { "store", required_argument, NULL, OPT_STORE },
    { "parallel", required_argument, NULL, OPT_PARALLEL },
    { "stagger", required_argument, NULL, OPT_STAGGER },
    { "per-source", required_argument, NULL, OPT_PER_SOURCE },
    { "json", no_argument, NULL, OPT_JSON },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *store = NULL, *sub;
  unsigned parallel = 2, per_source = 0;
  double stagger = 0;
  bool json = false;
  struct ferry_store *st = NULL;
  int c, ret = 1;

  if (argc < 2 || !strcmp (argv[1], "--help") || !strcmp (argv[1], "-h")) {
    usage (argc < 2 ? stderr : stdout);
    return argc < 2 ? 1 : 0;
  }
  sub = argv[1];
  argc--;
  argv++;
  while ((c = getopt_long (argc, argv, "h", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_STORE: store = optarg; break;
    case OPT_JSON: json = true; break;
    case OPT_PARALLEL:
      if (parse_count ("--parallel", optarg, false, &parallel) == -1)
        return 1;
      break;
    case OPT_PER_SOURCE:
      if (parse_count ("--per-source", optarg, false, &per_source) == -1)
        return 1;
      break;
    case OPT_STAGGER: {
      char *end;
      errno = 0;
      stagger = strtod (optarg, &end);
      if (errno || end == optarg || *end || stagger < 0 || stagger > 86400) {
        print_message ("plan run", "--stagger %s: expected seconds (0 to "
                       "86400)", optarg);
        return 1;
      }
      break;
    }
    case 'h': usage (stdout); return 0;
    default: usage (stderr); return 1;
    }
  }
  if (optind != argc - 1) {
    print_message ("plan", "expected one %s (see ferry plan --help)",
                   strcmp (sub, "run") == 0 ? "FILE" : "plan ID");
    return 1;
  }
  if (!strcmp (sub, "run")) {
    st = job_cli_open_store ("plan run", store, true);
    if (st)
      ret = plan_run (st, argv[optind], parallel, stagger, per_source, json);
  }
  else if (!strcmp (sub, "show")) {
    int64_t id;
    char *doc = NULL;
    if (job_cli_parse_id ("plan show", argv[optind], &id) == -1)
      return 1;
    st = job_cli_open_store ("plan show", store, false);
    if (st && ferry_store_plan_get (st, id, &doc) == -1)
      print_error ("plan show");
    else if (st) {
      print_status (st, id, json);
      ret = 0;
    }
    free (doc);
  }
  else
    print_message ("plan", "unknown subcommand '%s' (see ferry plan --help)",
                   sub);
  ferry_store_close (st);
  return ret;
}
