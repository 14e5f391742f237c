/* ferry: the job store.  Every migration is a job whose whole state lives
 * here, so that any process that reaches the store can run, pause, resume
 * or show it (`ferry job run ID` in a fresh process, later ferryd, later a
 * task on another machine).
 *
 * The store keeps records, not meanings: a job is a JSON document (its
 * options, steps, disks, checkpoints: lib/job/ gives it meaning) with a few
 * columns beside it that queries need (its plan, its state), a revision
 * that every save bumps (so two writers never overwrite each other
 * unknowingly: a save names the revision it read), and who runs it.
 * Events are appended to a log per job.  Plans are documents too.
 *
 * The implementation behind this interface is SQLite (lib/job/store.c:
 * WAL, a busy timeout, a versioned schema upgraded in place); a server
 * database or ferryd's API can replace it behind the same calls.
 *
 * Errors: -1 (or NULL) with the thread-local error of <ferry/error.h>;
 * messages start with the store's path.
 */
#ifndef FERRY_STORE_H
#define FERRY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_store;

/* The store's path when the caller names none: $FERRY_STORE, else
 * $XDG_STATE_HOME/ferry/ferry.db (XDG_STATE_HOME defaults to
 * ~/.local/state), or /var/lib/ferry/ferry.db for root.  The caller frees
 * it; NULL with the error set when no path can be made (no HOME). */
char *ferry_store_default_path (void);

/* Open the store at PATH (NULL: ferry_store_default_path), creating the
 * file and its folder when missing unless FERRY_STORE_NO_CREATE.  Refuses
 * a file that is not a ferry store, a corrupt one, one whose schema is
 * newer than this program knows (naming both versions), and one locked
 * by another process for longer than the busy timeout.  An older schema
 * is upgraded in place. */
#define FERRY_STORE_NO_CREATE 0x1
struct ferry_store *ferry_store_open (const char *path, unsigned flags);
const char *ferry_store_path (const struct ferry_store *st);
void ferry_store_close (struct ferry_store *st);

/* The schema version this program writes. */
int ferry_store_schema_version (void);

/* One job as stored.  Every string is owned by the record. */
struct ferry_store_record {
  int64_t id;
  int64_t plan;             /* the plan it belongs to, 0: none */
  char *state;              /* a copy of the document's state, for queries */
  int64_t rev;              /* bumped by every save */
  char *doc;                /* the JSON document */
  char *runner;             /* who runs it ("HOST:PID:START"), or NULL */
  double heartbeat;         /* when its runner last said it lives (Unix
                               seconds), 0 when none */
  char *request;            /* what was asked of its runner: "pause",
                               "cancel", "cutover" (a warm job), or NULL */
  double created, updated;  /* Unix seconds */
};
void ferry_store_record_free (struct ferry_store_record *r);   /* members */
void ferry_store_records_free (struct ferry_store_record *r, size_t n);

/* Add a job in STATE with document DOC to PLAN (0: none).  Returns its
 * id (> 0), or -1. */
int64_t ferry_store_job_add (struct ferry_store *st, int64_t plan,
                             const char *state, const char *doc);

/* Read job ID into *R.  -1 with errno ENOENT ("no job ID in PATH") when
 * there is none. */
int ferry_store_job_get (struct ferry_store *st, int64_t id,
                         struct ferry_store_record *r /* OUT */);

/* Replace job ID's state and document, if its revision is still REV.
 * Returns 1 when saved (*NEW_REV, if not NULL, is the new revision), 0
 * when someone saved it since (read again and redo), -1 on error
 * (ENOENT: it was removed). */
int ferry_store_job_save (struct ferry_store *st, int64_t id, int64_t rev,
                          const char *state, const char *doc,
                          int64_t *new_rev /* OUT */);

/* Every job of PLAN (-1: every job), by id.  *OUT is freed with
 * ferry_store_records_free. */
int ferry_store_job_list (struct ferry_store *st, int64_t plan,
                          struct ferry_store_record **out, size_t *n);

/* Remove job ID and its events.  -1 with ENOENT when there is none. */
int ferry_store_job_delete (struct ferry_store *st, int64_t id);

/* Take job ID for RUNNER ("HOST:PID:START", see ferry_store_runner_id).
 * Succeeds when no runner holds it, or its runner is gone: on this host
 * its process no longer exists (or is another process with the same pid:
 * START differs), or, on another host, its heartbeat is older than STALE
 * seconds.  0 when taken (heartbeat set to now, request cleared unless it
 * is "cancel" or "cutover"); -1 with errno EBUSY and a message naming the holder when
 * a live runner holds it. */
int ferry_store_job_claim (struct ferry_store *st, int64_t id,
                           const char *runner, double stale);

/* RUNNER says it lives: set the heartbeat, and give the pending request
 * (*REQUEST, caller frees, NULL when none).  -1 with errno ESTALE when
 * RUNNER no longer holds the job (someone took it over). */
int ferry_store_job_heartbeat (struct ferry_store *st, int64_t id,
                               const char *runner, char **request /* OUT */);

/* RUNNER lets go of job ID (no-op if it does not hold it). */
int ferry_store_job_release (struct ferry_store *st, int64_t id,
                             const char *runner);

/* Ask job ID's runner to "pause", "cancel" or "cutover" (NULL: withdraw).  Works
 * whether or not a runner holds it. */
int ferry_store_job_request (struct ferry_store *st, int64_t id,
                             const char *request);

/* True when job ID's runner (if any) is alive, as claim judges it. */
int ferry_store_job_runner_alive (struct ferry_store *st,
                                  const struct ferry_store_record *r,
                                  double stale);

/* This process's runner id: "HOST:PID:START" (START: the process's start
 * time in clock ticks since boot, from /proc, so a reused pid differs).
 * Caller frees. */
char *ferry_store_runner_id (void);

/* --- events: each job's log --------------------------------------------- */

struct ferry_store_event {
  int64_t seq;              /* increasing over the whole store */
  int64_t job;
  double time;              /* Unix seconds */
  char *level;              /* "info", "warning", "error" */
  char *message;
};
void ferry_store_events_free (struct ferry_store_event *e, size_t n);

int ferry_store_event_add (struct ferry_store *st, int64_t job,
                           const char *level, const char *message);

/* Events of JOB (-1: every job) with seq > AFTER, oldest first, at most
 * LIMIT (0: all). */
int ferry_store_event_list (struct ferry_store *st, int64_t job,
                            int64_t after, size_t limit,
                            struct ferry_store_event **out, size_t *n);

/* --- plans ----------------------------------------------------------------- */

/* Plans are documents: what was asked (the plan file, the limits).  A
 * plan's status is a query over its jobs (ferry_store_job_list). */
int64_t ferry_store_plan_add (struct ferry_store *st, const char *doc);
int ferry_store_plan_get (struct ferry_store *st, int64_t id,
                          char **doc /* OUT */);
int ferry_store_plan_list (struct ferry_store *st, int64_t **ids,
                           size_t *n);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_STORE_H */
