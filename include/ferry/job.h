/* ferry: migration jobs.  Every migration is a job kept in the job store
 * (<ferry/store.h>): its source and options, its checks, its steps with
 * their times and outcomes, each disk's progress and checkpoint, and an
 * event log.  Any process that reaches the store can run it
 * (ferry_job_run), and a run that stops for any reason (a pause, a kill,
 * a full disk) is taken up by the next one where it stopped.
 *
 *   id = ferry_job_add (st, &spec, &checks);    plan, check, record
 *   ferry_job_run (st, id, &run);               run it here (resumes)
 *   ferry_job_pause / _cancel (st, id)          ask its runner, wherever
 *
 * States: planned -> running -> done; running -> paused (a pause, or its
 * runner interrupted) -> running; running -> failed -> running (retry);
 * running -> awaiting-cutover (a test run) -> done (cutover); a warm job
 * (<ferry/warm.h>) is awaiting-cutover while its runner runs rounds, and
 * its cutover is asked of that runner; any but done -> cancelled (partial
 * outputs removed, the record kept).
 */
#ifndef FERRY_JOB_H
#define FERRY_JOB_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/migrate.h>
#include <ferry/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What `ferry job add` (and `ferry v2v`, and each VM of a plan) asks:
 * the source and every option of `ferry v2v`, by their long names. */
struct ferry_job_spec {
  const char *source;
  const char *to;              /* "libvirt", "qemu", "ova", "local" */
  const char *out;
  const char *format;          /* -O, or NULL */
  const char *name;
  const char *const *network_map;   /* NULL-terminated, or NULL */
  bool keep_devices;
  const char *flavor;
  unsigned threads;
  bool no_flush;               /* -t unsafe */
  bool no_convert;
  bool no_guest_agent;
  unsigned verify_timeout;
  bool test;                   /* --test: boot before the cutover, then wait */
  bool verify;                 /* --verify: boot the output after the commit */
  int64_t plan;                /* the plan it belongs to, 0: none */
  /* A warm migration (<ferry/warm.h>): mode "warm" (NULL: "cold"). */
  const char *mode;
  const char *domain;          /* --domain: a qmp source's description */
  const char *cutover;         /* "now", "manual" (NULL), a time */
  double max_downtime;         /* seconds, 0: none */
  double round_interval;       /* seconds, 0: the default */
  const char *source_stop;     /* "shutdown" (NULL) or "pause" */
  unsigned shutdown_timeout;   /* seconds, 0: the default */
};

/* Read a spec from the JSON object TEXT (a job's "options", or a plan's
 * VM: "source", "to", "out", "format", "name", "network-map" (a string or
 * an array), "keep-devices", "flavor", "threads", "cache", "no-convert",
 * "no-guest-agent", "verify", "verify-timeout", "test"; a warm one's
 * "mode", "domain", "cutover", "max-downtime", "round-interval",
 * "source-stop", "shutdown-timeout").  Unknown members
 * are refused, naming them.  The strings point into *HOLD, which the
 * caller frees with ferry_job_spec_free.  0, or -1 with the error set. */
struct ferry_job_spec_hold;
int ferry_job_spec_parse (const char *text, struct ferry_job_spec *spec,
                          struct ferry_job_spec_hold **hold);
void ferry_job_spec_free (struct ferry_job_spec_hold *hold);

/* Parse TEXT (LEN bytes) as one JSON value and nothing after it (a plan
 * file, a spec).  *OUT (caller puts it) or -1 with the error set: cut
 * short, bad at byte N, more after the value. */
struct json_object;
int ferry_job_json_parse (const char *text, size_t len,
                          struct json_object **out);

/* Plan the migration SPEC asks for, run its checks and add it to the
 * store as a planned job, whose id is returned (> 0).  *PLAN (OUT, may
 * be NULL) is the plan with its checks, and *VM its VM, for the caller to
 * show (it frees them with ferry_v2v_plan_free and ferry_vm_free).  When
 * the checks find errors nothing is added and 0 is returned (the checks
 * say why); -1 with the error set when it could not be planned at all.
 * ADD_FAILED: add it even then, as failed (a plan's VM, so the plan
 * shows it). */
int64_t ferry_job_add (struct ferry_store *st, const struct ferry_job_spec *spec,
                       bool add_failed, struct ferry_vm **vm,
                       struct ferry_v2v_plan **plan);

/* Add a planned job for SPEC from the VM and the plan the caller made
 * (ferry v2v, which plans before it knows it will run), which must have
 * no errors.  Its id, or -1. */
int64_t ferry_job_add_plan (struct ferry_store *st,
                            const struct ferry_job_spec *spec,
                            const struct ferry_vm *vm,
                            const struct ferry_v2v_plan *plan);

/* The unfinished job (planned, paused, failed, or interrupted: its
 * runner gone) that migrates SPEC's source into OUT (absolute) with the
 * same options, the newest one, not part of a plan: what running the
 * same `ferry v2v` again resumes.  Its id, 0 when there is none, -1 on
 * error. */
int64_t ferry_job_find_resumable (struct ferry_store *st,
                                  const struct ferry_job_spec *spec,
                                  const char *out);

/* How a run reports to its caller (the CLI's progress, on the run's
 * thread). */
struct ferry_job_run_options {
  ferry_v2v_progress_fn progress;
  void *progress_opaque;
  /* Set by a signal handler: stop at a safe point; the job is then
   * paused ("interrupted"), to be resumed. */
  volatile sig_atomic_t *interrupt;
  /* The VM and its plan when the caller has just made them for this job
   * (ferry v2v): the run takes them instead of planning again.  They stay
   * the caller's. */
  struct ferry_vm *vm;
  struct ferry_v2v_plan *plan;
  /* Copy checkpoints: 0 for the defaults (64 MiB, 2 s). */
  uint64_t checkpoint_bytes;
  double checkpoint_seconds;
};

/* What a run ended in. */
struct ferry_job_outcome {
  char state[24];              /* the job's state when the run ended */
  struct ferry_v2v_summary summary;   /* freed by ferry_job_outcome_free */
  bool have_summary;
};
void ferry_job_outcome_free (struct ferry_job_outcome *o);

/* Run job ID in this process until it is done, waits for its cutover,
 * is paused or cancelled (by ferry_job_pause/cancel from anywhere, or the
 * interrupt), or fails.  Refused when another live runner holds it
 * (EBUSY) or its state does not allow a run (EINVAL: done, cancelled).
 * Returns 0 when the run went as far as it could (see OUT->state: done,
 * awaiting-cutover, paused, cancelled), -1 with the error set when the
 * job failed (its record says why) or could not be run. */
int ferry_job_run (struct ferry_store *st, int64_t id,
                   const struct ferry_job_run_options *o,
                   struct ferry_job_outcome *out);

/* Ask job ID to pause or cancel.  A job no runner holds changes state at
 * once (a cancel removes its partial output); a running one is asked, and
 * its runner stops at a safe point within about two seconds.  Returns 1
 * when the state changed here, 0 when the runner was asked, -1 with the
 * error set (EINVAL: not in a state that can be paused or cancelled). */
int ferry_job_pause (struct ferry_store *st, int64_t id);
int ferry_job_cancel (struct ferry_store *st, int64_t id);

/* Make a paused, failed, interrupted (its runner died) or cancelled job
 * runnable again: its state becomes planned (a failed or cancelled one's
 * failure is kept in its events); ferry_job_run then resumes it from its
 * checkpoints.  RESTART (retry of a test): drop every step and start
 * again.  0, or -1 with the error set. */
int ferry_job_reset (struct ferry_store *st, int64_t id, bool restart);

/* Finalise a test job waiting for its cutover: mark it so that its next
 * run commits; a warm job's runner is asked to stop the source and copy
 * the last delta now (a warm job no runner holds cuts over as soon as its
 * next run has caught up). 0 or -1. */
int ferry_job_cutover (struct ferry_store *st, int64_t id);

/* Remove job ID: its partial output and its record.  Refused while a
 * live runner holds it.  0 or -1. */
int ferry_job_remove (struct ferry_store *st, int64_t id);

/* The state a job shows: its record's, but "interrupted" for a running
 * job whose runner is gone. */
const char *ferry_job_shown_state (struct ferry_store *st,
                                   const struct ferry_store_record *r);

/* Seconds after which a runner on another host whose heartbeat stopped
 * counts as gone. */
#define FERRY_JOB_STALE 30.0

#ifdef __cplusplus
}
#endif

#endif /* FERRY_JOB_H */
