/* Running a job: take it in the store, plan it again (its checks run on
 * every start: the world may have changed since), and carry out the cold
 * migration step by step (ferry_v2v_run_journal), recording each step, each
 * disk's progress and checkpoints, and every event, so that the next
 * runner, in any process, goes on where this one stopped.
 *
 * NOTES
 *
 * 1. One runner per job: ferry_store_job_claim refuses a job a live runner
 *    holds.  The runner is the only writer of the job's document while it
 *    holds it (job.c note 1); other processes only set its request.
 *
 * 2. A heartbeat thread, with its own store connection, says every
 *    HEARTBEAT seconds that the runner lives and reads the request.  A
 *    "pause" or "cancel" raises the library's stop request
 *    (ferry_request_stop): the copy engine checkpoints and stops, a
 *    conversion or boot stops its appliance, and the run returns EINTR
 *    within about two seconds.  The runner then records paused, or, for a
 *    cancel, removes the working folder and records cancelled.
 *
 * 3. Checkpoints: the copy engine flushes the target, then the journal's
 *    checkpoint callback records the disk's mark in the document, saved
 *    before the copy goes on (flush, then record).  Progress between two
 *    checkpoints is saved at most every PROGRESS_SAVE seconds.
 *
 * 4. A run interrupted by the caller's interrupt flag (^C on `ferry v2v`
 *    or `ferry job run`) leaves the job paused: `ferry job resume` goes
 *    on.  A kill leaves it "running" with a runner that is gone, which
 *    every reader shows as interrupted and the next claim takes over.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ferry/target.h>
#include <ferry/vm.h>
#include <ferry/warm.h>

#include "job-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

#define HEARTBEAT 0.5
#define PROGRESS_SAVE 1.0
/* Rounds a warm job's record keeps (the first, and the last ones). */
#define MAX_ROUNDS_KEPT 200

enum request { REQ_NONE, REQ_PAUSE, REQ_CANCEL, REQ_LOST };

struct runner {
  struct ferry_store *st;
  int64_t id;
  char *me;                       /* runner id */
  int64_t rev;
  json_object *doc;
  const struct ferry_job_run_options *o;
  struct ferry_v2v_plan *plan;
  struct ferry_v2v_disk_state *states;   /* per plan disk */
  double last_save;
  int request;                    /* atomic: enum request */
  const char *live_state;         /* "running", or "awaiting-cutover" while
                                     a warm job's rounds wait for it */

  /* A warm migration. */
  struct ferry_warm *warm;
  int cutover;                    /* atomic: its cutover was asked */
  double stopped_at;              /* when its source stopped, or 0 */

  /* The heartbeat thread (note 2). */
  pthread_t hb;
  bool hb_started;
  pthread_mutex_t hb_lock;
  pthread_cond_t hb_cond;
  bool hb_stop;
  char *store_path;
};

/* Save the document in its current state STATE. */
static int
save (struct runner *r, const char *state)
{
  r->last_save = job_now ();
  return job_doc_save (r->st, r->id, &r->rev, state, r->doc);
}

/* Append an event. */
static void
event (struct runner *r, const char *level, const char *fmt, ...)
{
  CLEANUP_FREE char *msg = NULL;
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = vasprintf (&msg, fmt, ap);
  va_end (ap);
  if (n >= 0)
    ferry_store_event_add (r->st, r->id, level, msg);
}

/* --- the heartbeat (note 2) ------------------------------------------------- */

static void *
heartbeat_main (void *arg)
{
  struct runner *r = arg;
  struct ferry_store *st = ferry_store_open (r->store_path,
                                             FERRY_STORE_NO_CREATE);
  sigset_t set;

  /* Signals are for the runner's thread. */
  sigfillset (&set);
  pthread_sigmask (SIG_BLOCK, &set, NULL);
  pthread_mutex_lock (&r->hb_lock);
  while (!r->hb_stop) {
    struct timespec ts;
    char *req = NULL;
    int e = 0;

    pthread_mutex_unlock (&r->hb_lock);
    if (st && ferry_store_job_heartbeat (st, r->id, r->me, &req) == -1)
      e = ferry_get_errno ();
    if (req && strcmp (req, "cutover") == 0)
      __atomic_store_n (&r->cutover, 1, __ATOMIC_SEQ_CST);
    else if (e == ESTALE || (req && (!strcmp (req, "pause") ||
                                     !strcmp (req, "cancel")))) {
      int want = e == ESTALE ? REQ_LOST : req[0] == 'p' ? REQ_PAUSE
        : REQ_CANCEL;
      if (__atomic_exchange_n (&r->request, want, __ATOMIC_SEQ_CST) == 0)
        ferry_request_stop ();
    }
    free (req);
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long) (HEARTBEAT * 1e9);
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock (&r->hb_lock);
    if (!r->hb_stop)
      pthread_cond_timedwait (&r->hb_cond, &r->hb_lock, &ts);
  }
  pthread_mutex_unlock (&r->hb_lock);
  ferry_store_close (st);
  return NULL;
}

static void
stop_heartbeat (struct runner *r)
{
  if (!r->hb_started)
    return;
  pthread_mutex_lock (&r->hb_lock);
  r->hb_stop = true;
  pthread_cond_signal (&r->hb_cond);
  pthread_mutex_unlock (&r->hb_lock);
  pthread_join (r->hb, NULL);
  r->hb_started = false;
}

/* --- the journal ------------------------------------------------------------ */

/* The document's step entry for STEP of DISK, or NULL. */
static json_object *
find_step (struct runner *r, const char *step, int disk)
{
  json_object *steps;
  size_t i;

  if (!json_object_object_get_ex (r->doc, "steps", &steps))
    return NULL;
  for (i = 0; i < json_object_array_length (steps); i++) {
    json_object *s = json_object_array_get_idx (steps, i), *d;
    const char *name = job_str (s, "name");
    int sd = json_object_object_get_ex (s, "disk", &d)
      ? json_object_get_int (d) : -1;
    if (name && strcmp (name, step) == 0 && sd == disk)
      return s;
  }
  return NULL;
}

static bool
j_done (void *opaque, const char *step, int disk)
{
  json_object *s = find_step (opaque, step, disk);
  const char *state = job_str (s, "state");

  return state && strcmp (state, "done") == 0;
}

static int
j_begin (void *opaque, const char *step, int disk)
{
  struct runner *r = opaque;
  json_object *s = find_step (r, step, disk);

  if (s == NULL) {
    json_object *steps;
    s = json_object_new_object ();
    json_object_object_add (s, "name", json_object_new_string (step));
    if (disk >= 0)
      json_object_object_add (s, "disk", json_object_new_int (disk));
    json_object_object_get_ex (r->doc, "steps", &steps);
    json_object_array_add (steps, s);
  }
  json_object_object_add (s, "state", json_object_new_string ("running"));
  json_object_object_add (s, "started", json_object_new_double (job_now ()));
  json_object_object_del (s, "finished");
  json_object_object_del (s, "outcome");
  return save (r, r->live_state);
}

static int
j_end (void *opaque, const char *step, int disk, bool ok, const char *outcome)
{
  struct runner *r = opaque;
  json_object *s = find_step (r, step, disk);

  bool stopped = !ok && ferry_get_errno () == EINTR;

  if (s == NULL)
    return 0;
  /* A stop (pause, cancel, ^C) is not the step's failure: it goes on
   * from there. */
  json_object_object_add (s, "state", json_object_new_string (
                            ok ? "done" : stopped ? "stopped" : "failed"));
  json_object_object_add (s, "finished", json_object_new_double (job_now ()));
  if (outcome)
    json_object_object_add (s, "outcome", json_object_new_string (outcome));
  if (ok && disk >= 0) {
    json_object *disks, *d;
    if (json_object_object_get_ex (r->doc, "disks", &disks) &&
        (d = json_object_array_get_idx (disks, disk)) != NULL) {
      json_object_object_add (d, "done", json_object_new_uint64 (
                                (uint64_t) job_num (d, "total")));
      json_object_object_add (d, "eta", json_object_new_double (0));
    }
  }
  if (stopped)
    outcome = NULL;
  if (disk >= 0)
    event (r, ok || stopped ? "info" : "error", "%s of disk %d %s%s%s", step,
           disk + 1, ok ? "done" : stopped ? "stopped" : "failed",
           outcome ? ": " : "", outcome ? outcome : "");
  else
    event (r, ok || stopped ? "info" : "error", "%s %s%s%s", step,
           ok ? "done" : stopped ? "stopped" : "failed",
           outcome ? ": " : "", outcome ? outcome : "");
  /* A warm job's downtime: from its source's stop to its disks' last
   * write, and to the output in place. */
  if (ok && r->stopped_at > 0 && (!strcmp (step, "sync") ||
                                  !strcmp (step, "commit"))) {
    double d = job_now () - r->stopped_at;
    json_object_object_add (r->doc, step[0] == 's' ? "disks_final_s"
                            : "downtime_s", json_object_new_double (d));
    if (step[0] == 'c')
      event (r, "info", "downtime %.2f s (the source stopped, then the "
             "output in place)", d);
  }
  return save (r, r->live_state);
}

static const struct ferry_v2v_disk_state *
j_disk_state (void *opaque, int disk)
{
  struct runner *r = opaque;
  struct ferry_v2v_disk_state *ds = &r->states[disk];

  return ds->mark.durable ? ds : NULL;
}

/* Disk DISK's entry in the document. */
static json_object *
doc_disk (struct runner *r, int disk)
{
  json_object *disks;

  if (!json_object_object_get_ex (r->doc, "disks", &disks))
    return NULL;
  return json_object_array_get_idx (disks, disk);
}

static int
j_checkpoint (void *opaque, int disk, const struct ferry_v2v_disk_state *st)
{
  struct runner *r = opaque;
  json_object *d = doc_disk (r, disk), *c;

  r->states[disk] = *st;
  if (d == NULL)
    return 0;
  c = json_object_new_object ();
  json_object_object_add (c, "durable", json_object_new_uint64 (st->mark.durable));
  json_object_object_add (c, "file-size",
                          json_object_new_uint64 (st->mark.file_size));
  json_object_object_add (c, "dev", json_object_new_uint64 (st->mark.dev));
  json_object_object_add (c, "ino", json_object_new_uint64 (st->mark.ino));
  json_object_object_add (c, "source", json_object_new_string (st->source));
  json_object_object_add (c, "time", json_object_new_double (job_now ()));
  json_object_object_add (d, "checkpoint", c);
  return save (r, r->live_state);
}

static void
j_note (void *opaque, const char *level, const char *message)
{
  event (opaque, level, "%s", message);
}

/* Read the checkpoints the document keeps into R->states. */
static void
load_states (struct runner *r)
{
  size_t i;

  for (i = 0; i < r->plan->nr_disks; i++) {
    json_object *d = doc_disk (r, i), *c;
    const char *src;
    if (d == NULL || !json_object_object_get_ex (d, "checkpoint", &c))
      continue;
    r->states[i].mark.durable = job_num (c, "durable");
    r->states[i].mark.file_size = job_num (c, "file-size");
    r->states[i].mark.dev = json_object_get_uint64 (
      json_object_object_get (c, "dev"));
    r->states[i].mark.ino = json_object_get_uint64 (
      json_object_object_get (c, "ino"));
    src = job_str (c, "source");
    snprintf (r->states[i].source, sizeof r->states[i].source, "%s",
              src ? src : "");
  }
}

/* The run's progress: the caller's, and the disk's figures in the
 * document (note 3). */
static void
run_progress (const struct ferry_v2v_progress *p, void *opaque)
{
  struct runner *r = opaque;

  if (r->o && r->o->progress)
    r->o->progress (p, r->o->progress_opaque);
  if (strcmp (p->phase, "copy") == 0 && p->disk_name && !p->finished) {
    json_object *d = doc_disk (r, p->disk);
    if (d) {
      const struct ferry_progress *dp = &p->disk_progress;
      json_object_object_add (d, "done", json_object_new_uint64 (dp->done));
      if (dp->total)
        json_object_object_add (d, "total", json_object_new_uint64 (dp->total));
      json_object_object_add (d, "speed", json_object_new_double (dp->bytes_per_sec));
      json_object_object_add (d, "eta", json_object_new_double (dp->eta));
    }
    if (job_now () - r->last_save >= PROGRESS_SAVE)
      save (r, r->live_state);
  }
}

/* --- a warm job's rounds ------------------------------------------------------ */

/* The warm journal's save: the state into the job's record, saved now. */
static int
w_save (void *opaque, const char *state)
{
  struct runner *r = opaque;
  json_object *o = json_tokener_parse (state);

  if (o == NULL)
    return ferry_error (EINVAL, "a warm state that is not JSON");
  json_object_object_add (r->doc, "warm", o);
  return save (r, r->live_state);
}

/* A round ended: appended to the record's rounds, with the prediction. */
static int
w_round (void *opaque, const struct ferry_warm_round *rd, double predicted)
{
  struct runner *r = opaque;
  json_object *rounds, *o = json_object_new_object ();

  if (!json_object_object_get_ex (r->doc, "rounds", &rounds)) {
    rounds = json_object_new_array ();
    json_object_object_add (r->doc, "rounds", rounds);
  }
  json_object_object_add (o, "number", json_object_new_int (rd->number));
  json_object_object_add (o, "kind", json_object_new_string (rd->kind));
  json_object_object_add (o, "final", json_object_new_boolean (rd->final));
  json_object_object_add (o, "bytes", json_object_new_uint64 (rd->bytes));
  json_object_object_add (o, "bytes_read",
                          json_object_new_uint64 (rd->bytes_read));
  json_object_object_add (o, "started", json_object_new_double (rd->started));
  json_object_object_add (o, "seconds", json_object_new_double (rd->seconds));
  json_object_object_add (o, "dirty_rate",
                          json_object_new_double (rd->dirty_rate));
  json_object_object_add (o, "throughput",
                          json_object_new_double (rd->throughput));
  json_object_array_add (rounds, o);
  /* A job may wait days for its cutover: the record keeps the first
   * round and the last ones. */
  if (json_object_array_length (rounds) > MAX_ROUNDS_KEPT)
    json_object_array_del_idx (rounds, 1, 1);
  if (predicted >= 0 && !rd->final)
    json_object_object_add (r->doc, "predicted_downtime_s",
                            json_object_new_double (predicted));
  if (rd->bytes || rd->final || rd->number == 1)
    event (r, "info", "round %u%s: %" PRIu64 " bytes in %.2f s", rd->number,
           rd->final ? " (the last delta)" : "", rd->bytes, rd->seconds);
  return save (r, r->live_state);
}

/* True once a cutover was asked of this run or saved in the record. */
static bool
w_cutover_asked (void *opaque)
{
  struct runner *r = opaque;

  return __atomic_load_n (&r->cutover, __ATOMIC_SEQ_CST) ||
    job_bool (r->doc, "cutover");
}

/* Awaiting the cutover (WHY), or (NULL) running it: the shown state. */
static void
w_waiting (void *opaque, const char *why)
{
  struct runner *r = opaque;
  const char *was = job_str (r->doc, "waiting");

  if (why) {
    bool same = was && strcmp (was, why) == 0;
    r->live_state = "awaiting-cutover";
    json_object_object_add (r->doc, "waiting", json_object_new_string (why));
    if (!same)
      save (r, r->live_state);
  }
  else {
    r->live_state = "running";
    json_object_object_del (r->doc, "waiting");
    save (r, r->live_state);
  }
}

/* The source stopped at AT: the downtime's start, the request spent. */
static void
w_stopped (void *opaque, double at)
{
  struct runner *r = opaque;

  r->stopped_at = at;
  json_object_object_add (r->doc, "stopped_at", json_object_new_double (at));
  /* Asked and done: the request is spent. */
  if (__atomic_load_n (&r->cutover, __ATOMIC_SEQ_CST))
    ferry_store_job_request (r->st, r->id, NULL);
  event (r, "info", "cutover: the source stops now (the downtime counts from "
         "here)");
  save (r, r->live_state);
}

/* A warm migration's message, as the job's event. */
static void
w_note (void *opaque, const char *level, const char *message)
{
  event (opaque, level, "%s", message);
}

/* The cold run's sync step: a warm job's rounds and cutover. */
static int
j_sync (void *opaque, struct ferry_v2v_plan *plan, const char *staging)
{
  struct runner *r = opaque;
  struct ferry_warm_journal wj = {
    .opaque = r, .save = w_save, .round = w_round,
    .cutover_asked = w_cutover_asked, .waiting = w_waiting,
    .stopped = w_stopped, .note = w_note,
  };
  int ret = ferry_warm_sync (r->warm, plan, staging, &wj);

  r->live_state = "running";
  return ret;
}

/* Attach to the warm job's source (SPEC) and read its VM. */
static struct ferry_vm *
warm_attach (struct runner *r, const struct ferry_job_spec *spec,
             struct ferry_v2v_options *opts)
{
  struct ferry_warm_options wo;
  struct ferry_warm_journal wj = { .opaque = r, .save = w_save };
  CLEANUP_FREE char *workdir = NULL;
  json_object *state;
  char tag[64];

  if (job_warm_options (spec, &wo) == -1)
    return NULL;
  workdir = job_warm_workdir (r->st, r->id);
  if (workdir == NULL)
    return NULL;
  job_warm_tag (r->id, tag, sizeof tag);
  wo.source = spec->source;
  wo.workdir = workdir;
  wo.tag = tag;
  wo.journal = &wj;
  r->stopped_at = job_num (r->doc, "stopped_at");
  state = json_object_object_get (r->doc, "warm");
  r->warm = ferry_warm_open (&wo, true, state
                             ? json_object_to_json_string_ext (
                               state, JSON_C_TO_STRING_PLAIN) : NULL);
  if (r->warm == NULL)
    return NULL;
  if (strcmp (ferry_warm_kind (r->warm), "bitmap") == 0)
    opts->no_convert = true;            /* a KVM guest already */
  return ferry_warm_take_vm (r->warm);
}

/* --- the run ---------------------------------------------------------------- */

/* Bytes the files of the folder PATH take (a working folder holds files
 * only), 0 when it does not exist. */
static uint64_t
tree_bytes (const char *path)
{
  DIR *d = opendir (path);
  struct dirent *e;
  uint64_t n = 0;

  if (d == NULL)
    return 0;
  while ((e = readdir (d)) != NULL) {
    struct stat sb;
    if (fstatat (dirfd (d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG (sb.st_mode))
      n += (uint64_t) sb.st_blocks * 512;
  }
  closedir (d);
  return n;
}

void
ferry_job_outcome_free (struct ferry_job_outcome *o)
{
  if (o->have_summary)
    ferry_v2v_summary_free (&o->summary);
  o->have_summary = false;
}

/* The checks of PLAN into the document, and a line for the error when
 * there are errors. */
static void
record_checks (struct runner *r, const struct ferry_v2v_plan *plan)
{
  size_t i;

  for (i = 0; i < plan->nr_checks; i++)
    if (plan->checks[i].severity == FERRY_V2V_ERROR)
      event (r, "error", "check: %s", plan->checks[i].message);
  json_object_object_add (r->doc, "checks", job_checks_json (plan));
}

/* End the run in STATE with the error (if FAILED) as its reason. */
static void
finish (struct runner *r, const char *state, bool failed,
        struct ferry_job_outcome *out)
{
  struct error_saved saved;

  error_save (&saved);
  if (failed) {
    json_object_object_add (r->doc, "error",
                            json_object_new_string (ferry_get_error ()));
    event (r, "error", "failed: %s", ferry_get_error ());
  }
  if (strcmp (state, "running") != 0)
    json_object_object_add (r->doc, "finished",
                            json_object_new_double (job_now ()));
  save (r, state);
  snprintf (out->state, sizeof out->state, "%s", state);
  error_restore (&saved);
}

int
ferry_job_run (struct ferry_store *st, int64_t id,
               const struct ferry_job_run_options *o,
               struct ferry_job_outcome *out)
{
  static const char *const runnable[] = {
    "planned", "running", "paused", "failed", "awaiting-cutover", NULL,
  };
  struct runner r = { .st = st, .id = id, .o = o, .live_state = "running" };
  struct ferry_store_record rec = { 0 };
  struct ferry_job_spec spec;
  struct ferry_job_spec_hold *hold = NULL;
  struct ferry_v2v_options opts;
  struct ferry_v2v_journal j = {
    .opaque = &r, .done = j_done, .begin = j_begin, .end = j_end,
    .disk_state = j_disk_state, .checkpoint = j_checkpoint, .note = j_note,
  };
  struct ferry_vm *vm = NULL;
  const char *staging, *prev;
  char *staging_made = NULL, *last_runner = NULL;
  size_t i;
  int ret = -1, rr;

  memset (out, 0, sizeof *out);
  snprintf (out->state, sizeof out->state, "?");
  r.me = ferry_store_runner_id ();
  r.store_path = strdup (ferry_store_path (st));
  pthread_mutex_init (&r.hb_lock, NULL);
  pthread_cond_init (&r.hb_cond, NULL);
  if (r.me == NULL || r.store_path == NULL) {
    ferry_error (ENOMEM, "out of memory");
    goto out_free;
  }
  {
    /* The runner it had, for the takeover's event: the claim puts ours
     * in its place. */
    struct ferry_store_record before = { 0 };
    if (ferry_store_job_get (st, id, &before) == 0 && before.runner)
      last_runner = strdup (before.runner);
    ferry_store_record_free (&before);
  }
  if (ferry_store_job_claim (st, id, r.me, FERRY_JOB_STALE) == -1)
    goto out_free;
  if (ferry_store_job_get (st, id, &rec) == -1)
    goto out_release;
  r.rev = rec.rev;
  r.doc = job_doc_parse (&rec);
  if (r.doc == NULL)
    goto out_release;
  prev = rec.state;
  for (i = 0; runnable[i]; i++)
    if (strcmp (prev, runnable[i]) == 0)
      break;
  if (runnable[i] == NULL) {
    ferry_error (EINVAL, "job %" PRId64 " is %s: nothing to run", id, prev);
    snprintf (out->state, sizeof out->state, "%s", prev);
    goto out_release;
  }
  if (strcmp (prev, "awaiting-cutover") == 0 && !job_bool (r.doc, "cutover") &&
      !(job_str (r.doc, "mode") && !strcmp (job_str (r.doc, "mode"), "warm"))) {
    ferry_error (EINVAL, "job %" PRId64 " is awaiting its cutover: cut it "
                 "over, or retry it to test again", id);
    snprintf (out->state, sizeof out->state, "%s", prev);
    goto out_release;
  }
  if (rec.request && strcmp (rec.request, "cancel") == 0) {
    /* Cancelled before it ran again. */
    staging = job_str (r.doc, "staging");
    if (staging && ferry_target_remove_kept (staging) == -1)
      goto out_release;
    job_warm_forget (st, id, r.doc);
    ferry_store_job_request (st, id, NULL);
    event (&r, "info", "cancelled; its partial output was removed");
    finish (&r, "cancelled", false, out);
    ret = 0;
    goto out_release;
  }
  if (strcmp (prev, "running") == 0)
    event (&r, "warning", "its last runner (%s) is gone: taking it over",
           last_runner ? last_runner : "?");
  event (&r, "info", "run by %s", r.me);
  if (job_num (r.doc, "started") == 0)
    json_object_object_add (r.doc, "started",
                            json_object_new_double (job_now ()));
  json_object_object_del (r.doc, "error");
  json_object_object_del (r.doc, "finished");
  if (save (&r, "running") == -1)
    goto out_release;

  if (job_doc_spec (r.doc, &spec, &hold) == -1 ||
      job_v2v_options (&spec, &opts) == -1) {
    finish (&r, "failed", true, out);
    goto out_release;
  }
  staging = job_str (r.doc, "staging");
  j.staging = staging;
  j.test = job_bool (r.doc, "test") && !job_bool (r.doc, "cutover");
  j.boot_timeout = spec.verify_timeout;
  j.boot_after = spec.verify;
  j.checkpoint_bytes = o ? o->checkpoint_bytes : 0;
  j.checkpoint_seconds = o ? o->checkpoint_seconds : 0;
  {
    /* For tests: checkpoints more often than the defaults. */
    const char *e = getenv ("FERRY_CHECKPOINT_BYTES");
    if (e && *e && j.checkpoint_bytes == 0)
      j.checkpoint_bytes = strtoull (e, NULL, 10);
  }
  opts.cancel = o ? o->interrupt : NULL;
  if (staging)
    opts.space_written = tree_bytes (staging);
  opts.progress = run_progress;
  opts.progress_opaque = &r;

  /* The checks, again (a step of their own). */
  j_begin (&r, "checks", -1);
  if (o && o->plan)
    r.plan = o->plan;                   /* the caller's, just made */
  else {
    vm = job_is_warm (&spec) ? warm_attach (&r, &spec, &opts)
      : ferry_vm_read (spec.source);
    if (vm)
      r.plan = ferry_v2v_plan (vm, &opts);
  }
  if (r.warm) {
    j.sync = j_sync;
    j.no_copy = !ferry_warm_copies_base (r.warm);
  }
  if (r.plan == NULL) {
    j_end (&r, "checks", -1, false, ferry_get_error ());
    finish (&r, "failed", true, out);
    goto out_release;
  }
  {
    /* A run killed after its commit's rename left the output whole: its
     * "exists already" is the job done. */
    if (job_found_done (r.doc)) {
      j_end (&r, "checks", -1, true, NULL);
      j_begin (&r, "commit", -1);
      j_end (&r, "commit", -1, true, "found done: the output folder is in "
             "place");
      finish (&r, "done", false, out);
      ret = 0;
      goto out_release;
    }
  }
  record_checks (&r, r.plan);
  if (r.plan->nr_errors) {
    size_t k;
    for (k = 0; k < r.plan->nr_checks; k++)
      if (r.plan->checks[k].severity == FERRY_V2V_ERROR)
        break;
    ferry_error (EINVAL, "%zu check%s failed: %s", r.plan->nr_errors,
                 r.plan->nr_errors == 1 ? "" : "s",
                 r.plan->checks[k].message);
    j_end (&r, "checks", -1, false, ferry_get_error ());
    finish (&r, "failed", true, out);
    goto out_release;
  }
  j_end (&r, "checks", -1, true, NULL);
  if (staging == NULL) {
    /* Added when it could not be planned (its source was missing): its
     * working folder and disks are known only now. */
    json_object *disks;
    staging_made = job_staging_path (r.plan->out_dir, id);
    if (staging_made == NULL) {
      finish (&r, "failed", true, out);
      goto out_release;
    }
    json_object_object_add (r.doc, "staging",
                            json_object_new_string (staging_made));
    staging = j.staging = staging_made;
    if (!json_object_object_get_ex (r.doc, "disks", &disks) ||
        json_object_array_length (disks) == 0)
      json_object_object_add (r.doc, "disks", job_disks_json (r.plan));
    if (job_str (r.doc, "vm") == NULL && r.plan->vm->name)
      json_object_object_add (r.doc, "vm",
                              json_object_new_string (r.plan->vm->name));
  }
  r.states = calloc (r.plan->nr_disks + 1, sizeof *r.states);
  if (r.states == NULL) {
    ferry_error (ENOMEM, "out of memory");
    finish (&r, "failed", true, out);
    goto out_release;
  }
  load_states (&r);
  {
    /* Steps done in a working folder that is gone (removed by hand):
     * nothing of them is left, so everything starts again. */
    struct stat sb;
    json_object *steps;
    if (staging && lstat (staging, &sb) == -1 &&
        json_object_object_get_ex (r.doc, "steps", &steps) &&
        json_object_array_length (steps) > 1) {
      json_object *fresh = json_object_new_array ();
      json_object *checks = find_step (&r, "checks", -1);
      if (checks)
        json_object_array_add (fresh, json_object_get (checks));
      json_object_object_add (r.doc, "steps", fresh);
      memset (r.states, 0, (r.plan->nr_disks + 1) * sizeof *r.states);
      event (&r, "warning", "its working folder %s is gone: everything "
             "starts again", staging);
    }
  }

  if (pthread_create (&r.hb, NULL, heartbeat_main, &r) == 0)
    r.hb_started = true;
  rr = ferry_v2v_run_journal (r.plan, &opts, &j, &out->summary);
  out->have_summary = true;
  stop_heartbeat (&r);
  if (r.warm) {
    /* Over (or cancelled): ferry's bitmaps and files go; otherwise they
     * stay for the next run. */
    int req = __atomic_load_n (&r.request, __ATOMIC_SEQ_CST);
    bool over = rr >= 0 || (ferry_get_errno () == EINTR && req == REQ_CANCEL);
    struct error_saved saved;
    error_save (&saved);
    /* A pause or a cancel stopped the run through the library's stop
     * request, which fails every QMP call: the run is over, and taking
     * ferry's exports (and, cancelled, its bitmaps) out of the VM needs
     * QMP again.  A takeover (REQ_LOST) keeps it: the VM is the new
     * runner's. */
    if (rr < 0 && (req == REQ_PAUSE || req == REQ_CANCEL))
      ferry_clear_stop ();
    ferry_warm_close (r.warm, over);
    r.warm = NULL;
    error_restore (&saved);
  }

  if (rr >= 0 && __atomic_load_n (&r.request, __ATOMIC_SEQ_CST) != REQ_NONE) {
    /* Asked to stop as the run ended anyway: the request is spent, and the
     * stop must not cut short what the caller does next. */
    ferry_store_job_request (st, id, NULL);
    ferry_clear_stop ();
  }
  if (rr == 0) {
    finish (&r, "done", false, out);
    ret = 0;
  }
  else if (rr == 1) {
    event (&r, "info", "the test booted: waiting for the cutover");
    finish (&r, "awaiting-cutover", false, out);
    ret = 0;
  }
  else {
    int req = __atomic_load_n (&r.request, __ATOMIC_SEQ_CST);
    bool stopped = ferry_get_errno () == EINTR;
    if (stopped && req == REQ_CANCEL) {
      if (ferry_target_remove_kept (staging) == -1)
        finish (&r, "failed", true, out);
      else {
        event (&r, "info", "cancelled; its partial output was removed");
        ferry_store_job_request (st, id, NULL);
        finish (&r, "cancelled", false, out);
        ret = 0;
      }
    }
    else if (stopped && req == REQ_PAUSE) {
      event (&r, "info", "paused");
      ferry_store_job_request (st, id, NULL);
      finish (&r, "paused", false, out);
      ret = 0;
    }
    else if (stopped && req == REQ_LOST) {
      /* Another runner took it over: the record is its own now. */
      snprintf (out->state, sizeof out->state, "running");
    }
    else if (stopped) {
      event (&r, "info", "interrupted: paused, to be resumed");
      finish (&r, "paused", false, out);
      ferry_error (EINTR, "interrupted");
    }
    else if (ferry_get_errno () == ENOTCONN && job_is_warm (&spec)) {
      /* The source VM went away: paused, to be resumed once it is back
       * (its lost bitmaps then cost a full comparison). */
      json_object_object_add (r.doc, "error",
                              json_object_new_string (ferry_get_error ()));
      event (&r, "error", "%s: paused", ferry_get_error ());
      finish (&r, "paused", false, out);
    }
    else
      finish (&r, "failed", true, out);
    /* The stop request was for this run. */
    if (req != REQ_NONE)
      ferry_clear_stop ();
  }

 out_release:
  {
    struct error_saved saved;
    error_save (&saved);
    if (__atomic_load_n (&r.request, __ATOMIC_SEQ_CST) != REQ_LOST)
      ferry_store_job_release (st, id, r.me);
    error_restore (&saved);
  }
 out_free:
  stop_heartbeat (&r);
  ferry_warm_close (r.warm, false);
  ferry_job_spec_free (hold);
  if (!(o && o->plan))
    ferry_v2v_plan_free (r.plan);
  ferry_vm_free (vm);
  free (r.states);
  free (staging_made);
  free (last_runner);
  json_object_put (r.doc);
  ferry_store_record_free (&rec);
  free (r.me);
  free (r.store_path);
  pthread_mutex_destroy (&r.hb_lock);
  pthread_cond_destroy (&r.hb_cond);
  return ret;
}
