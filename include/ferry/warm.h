/* ferry: warm migrations.  The source keeps running while its disks are
 * copied; rounds then copy what changed since the round before, until the
 * cutover stops the source and copies the last delta.  What changed comes
 * from the source's own change tracking where it has some (a running
 * QEMU's dirty bitmaps) or from hashes of fixed chunks (a raw file, a
 * block device, an NBD export).  lib/job runs a warm migration as a job:
 * the base copy and the steps after the cutover are a cold run's
 * (<ferry/migrate.h>), with the rounds in its "sync" step.
 *
 *   w = ferry_warm_open (&wo, true, state);   attach: exports, bitmaps
 *   vm = ferry_warm_take_vm (w);              the VM, disks readable
 *   plan = ferry_v2v_plan (vm, &opts); ... journal.sync calls
 *   ferry_warm_sync (w, plan, staging, &wj);  rounds, cutover, last delta
 *   ferry_warm_close (w, finished);
 */
#ifndef FERRY_WARM_H
#define FERRY_WARM_H

#include <stdbool.h>
#include <stdint.h>

#include <ferry/migrate.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ferry_warm_cutover {
  FERRY_WARM_CUTOVER_MANUAL,   /* wait for ferry job cutover */
  FERRY_WARM_CUTOVER_NOW,      /* as soon as the rounds stop shrinking */
  FERRY_WARM_CUTOVER_AT,       /* at cutover_at (or on a command before) */
};

struct ferry_warm_journal;

struct ferry_warm_options {
  const char *source;          /* "qmp:PATH", an image file, a block
                                  device or an NBD URI */
  const char *domain;          /* a qmp source's libvirt XML or QEMU
                                  script (--domain), or NULL */
  const char *workdir;         /* ferry's own files for this migration:
                                  the NBD socket, hash tables; made if
                                  missing, short enough for a socket */
  const char *tag;             /* names ferry's bitmaps and exports in
                                  the VM ("ferry-j12"), unique per job */
  enum ferry_warm_cutover cutover;
  double cutover_at;           /* seconds since the epoch */
  double max_downtime;         /* seconds; 0: no limit */
  double round_interval;       /* seconds between rounds that no longer
                                  shrink; 0: 10 */
  bool source_pause;           /* stop the source with QMP stop (pause),
                                  not a guest shutdown */
  double shutdown_timeout;     /* seconds before a shutdown becomes a
                                  pause; 0: 120 */
  bool converts;               /* the steps after the stop convert the
                                  guest (the prediction counts it) */
  const struct ferry_warm_journal *journal;
                               /* read by ferry_warm_open only: with RUN
                                  it saves through its save the state it
                                  changes (a QEMU's new bitmaps, a
                                  fallback owed) before the change; NULL:
                                  a kill between the open and the first
                                  round then forgets them */
};

/* One round, as the job records it. */
struct ferry_warm_round {
  unsigned number;             /* 0: the base copy of a hash source */
  const char *kind;            /* "bitmap", "hash" */
  bool final;                  /* the last delta, the source stopped */
  uint64_t bytes;              /* bytes copied (written to the targets) */
  uint64_t bytes_read;         /* bytes read from the source */
  double started;              /* seconds since the epoch */
  double seconds;              /* the whole round */
  double dirty_rate;           /* bytes per second the source changed */
  double throughput;           /* bytes per second the copy moved */
};

/* How a sync reports to its job, on the calling thread. */
struct ferry_warm_journal {
  void *opaque;
  /* The warm state to keep (JSON text): what a later process needs to go
   * on (ferry_warm_open's STATE).  Saved before the step it describes
   * takes effect.  -1 stops the sync. */
  int (*save) (void *opaque, const char *state);
  /* A round ended, with the downtime predicted if the cutover came now
   * (< 0: not known yet).  -1 stops the sync. */
  int (*round) (void *opaque, const struct ferry_warm_round *r,
                double predicted_downtime);
  /* True once the user asked for the cutover (ferry job cutover). */
  bool (*cutover_asked) (void *opaque);
  /* Waiting for the cutover (WHY: a line), or (NULL) cutting over. */
  void (*waiting) (void *opaque, const char *why);
  /* The source was stopped at AT (seconds since the epoch): the
   * downtime runs from there. */
  void (*stopped) (void *opaque, double at);
  void (*note) (void *opaque, const char *level, const char *message);
};

struct ferry_warm;

/* Attach to O->source.  RUN: for a migration that runs now (a running
 * QEMU gets its dirty bitmaps, unless STATE says it has them); otherwise
 * only to plan and check (exports for reading the disks, nothing else).
 * STATE: the text a journal saved, or NULL.  NULL with the error set.
 * Nothing in the source VM changes but ferry's bitmaps and read-only
 * exports, which ferry_warm_close removes. */
struct ferry_warm *ferry_warm_open (const struct ferry_warm_options *o,
                                    bool run, const char *state);

/* The source as a VM whose disks read what the base copy needs; the
 * caller owns it (ferry_vm_free) and must free it after the plan. */
struct ferry_vm *ferry_warm_take_vm (struct ferry_warm *w);

/* "bitmap" or "hash". */
const char *ferry_warm_kind (const struct ferry_warm *w);

/* False when the sync step copies the disks itself (a hash source: its
 * first round is the base copy), so the cold copy step is skipped. */
bool ferry_warm_copies_base (const struct ferry_warm *w);

/* Bring the targets in STAGING (PLAN's disks) up to date round by round
 * until the cutover, stop the source, copy the last delta.  Returns 0
 * with every target holding the stopped source's contents, -1 with the
 * error set: EINTR on a stop request, ENOTCONN when the source VM went
 * away (its QMP socket closed), others as they come. */
int ferry_warm_sync (struct ferry_warm *w, struct ferry_v2v_plan *plan,
                     const char *staging, const struct ferry_warm_journal *j);

/* Detach: remove ferry's exports; FINISHED (the migration is over or
 * cancelled) also removes its bitmaps and the workdir's files. */
void ferry_warm_close (struct ferry_warm *w, bool finished);

/* Take what a warm migration of O->source that no process runs any more
 * left behind (a job cancelled while paused): from a running QEMU
 * (qmp:PATH) ferry's exports, its bitmaps (O->tag's) and its NBD server;
 * the files of O->workdir and the folder.  -1 with the error set when the
 * VM cannot be reached: then nothing is removed. */
int ferry_warm_forget (const struct ferry_warm_options *o);

/* Parse a --cutover value: "now", "manual", an ISO 8601 time
 * ("2026-12-08T03:00[:SS][Z]", local unless Z) or "+SECONDS".  0 or -1
 * with the error set. */
int ferry_warm_parse_cutover (const char *text,
                              enum ferry_warm_cutover *mode, double *at);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_WARM_H */
