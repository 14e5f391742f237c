/* lib/job's private header: the store's driver interface.
 *
 * A store is a handle whose first member is struct ferry_store: the
 * driver's ops and the path every message starts with.  The public calls
 * of store.c check their arguments and dispatch through the ops; a driver
 * (SQLite now, a server database or ferryd's API later) only keeps
 * records.  Each op has the contract of its public call in
 * <ferry/store.h>; it returns -1 (NULL) with the thread-local error set,
 * its message starting with the store's path.
 */
#ifndef FERRY_JOB_INTERNAL_H
#define FERRY_JOB_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/store.h>

struct store_ops {
  const char *name;                       /* "sqlite" */
  /* Free everything the handle holds, the base included. */
  void (*close) (struct ferry_store *st);
  int64_t (*job_add) (struct ferry_store *st, int64_t plan,
                      const char *state, const char *doc);
  int (*job_get) (struct ferry_store *st, int64_t id,
                  struct ferry_store_record *r);
  int (*job_save) (struct ferry_store *st, int64_t id, int64_t rev,
                   const char *state, const char *doc, int64_t *new_rev);
  int (*job_list) (struct ferry_store *st, int64_t plan,
                   struct ferry_store_record **out, size_t *n);
  int (*job_delete) (struct ferry_store *st, int64_t id);
  /* Judges the holder with store_runner_alive, inside one transaction. */
  int (*job_claim) (struct ferry_store *st, int64_t id, const char *runner,
                    double stale);
  int (*job_heartbeat) (struct ferry_store *st, int64_t id,
                        const char *runner, char **request);
  int (*job_release) (struct ferry_store *st, int64_t id,
                      const char *runner);
  int (*job_request) (struct ferry_store *st, int64_t id,
                      const char *request);
  int (*event_add) (struct ferry_store *st, int64_t job, const char *level,
                    const char *message);
  int (*event_list) (struct ferry_store *st, int64_t job, int64_t after,
                     size_t limit, struct ferry_store_event **out,
                     size_t *n);
  int64_t (*plan_add) (struct ferry_store *st, const char *doc);
  int (*plan_get) (struct ferry_store *st, int64_t id, char **doc);
  int (*plan_list) (struct ferry_store *st, int64_t **ids, size_t *n);
};

/* The base of every driver's handle (its first member).  The public
 * calls hold LOCK around each op, so a driver sees one call at a time and
 * threads sharing a handle never interleave inside one transaction. */
struct ferry_store {
  const struct store_ops *ops;
  char *path;                             /* owned by the handle */
  pthread_mutex_t lock;                   /* store.c initialises it */
};

/* The SQLite driver (store-sqlite.c): open PATH (not NULL) as
 * ferry_store_open says.  The caller closes it with ferry_store_close. */
struct ferry_store *store_sqlite_open (const char *path, unsigned flags);

/* Whether RUNNER ("HOST:PID:START"), whose last heartbeat was HEARTBEAT
 * (Unix seconds, 0: none), still runs, by the rule of
 * ferry_store_job_claim.  1 or 0. */
int store_runner_alive (const char *runner, double heartbeat, double stale);

/* The holder RUNNER in words for a refusal ("process 1234 on HOST
 * (started ...)"), written into BUF of LEN bytes; returns BUF. */
const char *store_runner_describe (const char *runner, double heartbeat,
                                   char *buf, size_t len);

/* Wall-clock time in Unix seconds. */
double store_now (void);

/* Make DIR and its missing parents with mode 0700.  -1 with the error
 * set (naming PATH, the store) on failure. */
int store_make_folder (const char *path, const char *dir);

#endif /* FERRY_JOB_INTERNAL_H */
