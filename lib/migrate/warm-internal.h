/* The warm migration's parts (warm.c: opening, rounds, the cutover;
 * warm-qmp.c: a running QEMU's bitmaps and exports; warm-chain.c:
 * snapshot chains): what they share.  Private to lib/migrate. */
#ifndef FERRY_MIGRATE_WARM_INTERNAL_H
#define FERRY_MIGRATE_WARM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include <ferry/copy.h>
#include <ferry/migrate.h>
#include <ferry/qmp.h>
#include <ferry/vm.h>
#include <ferry/warm.h>

/* Rounds that keep shrinking run back to back, at most this many before
 * an automatic cutover ("now") goes ahead anyway. */
#define MAX_ROUNDS_NOW 8
/* A round shrinks when it copies less than this share of the one before. */
#define SHRINK 0.8
/* Seconds the steps after the last delta take (description, commit), and
 * a guest's conversion when there is one, for the prediction. */
#define AFTER_STEPS 0.02
#define CONVERT_ESTIMATE 60.0
/* Seconds QMP stop takes to pause the vCPUs, at the least: a VM's own
 * QMP answers (the freeze's) say more (note 5). */
#define PAUSE_COST 0.01
/* The rounds whose fixed cost and throughput the prediction takes the
 * median of. */
#define OVERHEAD_ROUNDS 5
/* Seconds a QMP command may take. */
#define QMP_TIMEOUT 30.0

enum kind { KIND_BITMAP, KIND_CHAIN, KIND_HASH };

struct ferry_warm {
  struct ferry_warm_options o;
  char *source, *domain, *workdir, *tag;   /* o's strings, ours */
  enum kind kind;
  bool run;

  /* A running QEMU. */
  struct ferry_qmp *q;
  char *sock;                  /* the NBD server's socket */
  bool server_ours;            /* the VM's NBD server is ours, to stop */
  struct ferry_qmp_disk *qd;   /* its disks */
  size_t nqd;
  size_t *vm_qd;               /* per VM disk, its index in QD */

  struct ferry_vm *vm;          /* until ferry_warm_take_vm */
  size_t vm_disks;             /* its disks */
  json_object *state;          /* what a later run needs (note 2) */

  /* What the rounds measured, for the prediction (note 5). */
  double last_freeze;          /* epoch seconds of the last freeze */
  double last_seconds;         /* the last round's length */
  double overheads[OVERHEAD_ROUNDS]; /* the last rounds' seconds beyond
                                      * their bytes, oldest first */
  unsigned nr_overheads;
  double throughputs[OVERHEAD_ROUNDS]; /* the last measured rounds'
                                        * bytes/s copied, oldest first */
  unsigned nr_throughputs;
  double qmp_seconds;          /* the last freeze's QMP transaction */
  double rate;                 /* bytes/s dirtied */
  double throughput;           /* bytes/s copied, best seen */
  uint64_t pending;             /* a chain's top: its bytes */
  bool have_round;
};

/* A round's figures, summed over the disks. */
struct tally {
  uint64_t bytes, bytes_read;
  double copy_seconds;
};

/* Seconds since the epoch. */
double warm_epoch_now (void);
/* "1.5 MB" style figures for messages, into BUF. */
const char *warm_human (double bytes, char *buf, size_t len);
/* Pass a message at LEVEL to the journal's note, if it has one. */
void warm_note (const struct ferry_warm_journal *j, const char *level,
                const char *fmt, ...);
/* The saved state's integer KEY, 0 when it has none. */
int64_t warm_state_int (struct ferry_warm *w, const char *key);
/* The saved state's number KEY, 0 when it has none. */
double warm_state_double (struct ferry_warm *w, const char *key);
/* Set the state's integer KEY (kept at the next save_state). */
void warm_state_set_int (struct ferry_warm *w, const char *key, int64_t v);
/* Set the state's number KEY (kept at the next save_state). */
void warm_state_set_double (struct ferry_warm *w, const char *key, double v);
/* Hand the state to the journal. */
int warm_save_state (struct ferry_warm *w, const struct ferry_warm_journal *j);
/* True when VM disk I is one we migrate (it has a QEMU disk). */
bool warm_migrated (struct ferry_warm *w, size_t i);
/* A VM model of our own making, named NAME, with no device yet. */
struct ferry_vm *warm_new_vm (const char *name, const char *source,
                              const char *type);
/* Add a disk reading PATH to VM. */
struct ferry_vm_disk *warm_add_disk (struct ferry_vm *vm, const char *path,
                                     uint64_t size);
/* The name a file or socket gives a VM: its base name, no extension. */
char *warm_name_of (const char *path);
/* Open plan disk I's target in STAGING for writing. */
struct ferry_image *warm_open_target (struct ferry_v2v_plan *plan, size_t i,
                                      const char *staging, bool create,
                                      bool *fresh);
/* Bytes of [0, SIZE) a delta copy with the extents EXTENTS (OPAQUE)
 * copies: all but its SKIP ranges. */
int warm_extents_bytes (int (*extents) (void *, uint64_t, uint64_t,
                                        struct ferry_extent_list *),
                        void *opaque, uint64_t size, uint64_t *bytes);
/* Copy into plan disk I's target in STAGING what COPTS's extents give of
 * SRC (BYTES of them; none: the target is not even opened), and count
 * them in T.  The copy's error stands when the close fails after it. */
int warm_copy_into (struct ferry_v2v_plan *plan, size_t i, const char *staging,
                    struct ferry_image *src,
                    const struct ferry_copy_options *copts, uint64_t bytes,
                    struct tally *t);
/* Disk I by hashes (a hash source, or a VM that lost its bitmaps):
 * SOURCE is what to read. */
int warm_hash_copy_disk (struct ferry_warm *w, struct ferry_v2v_plan *plan,
                         size_t i, const char *staging, const char *source,
                         bool forget, struct tally *t);
/* The QMP error, said as the source VM's when its connection is gone. */
int warm_qmp_failed (struct ferry_warm *w);
/* Run COMMAND with ARGS (taken over, may be NULL). */
int warm_qmp (struct ferry_warm *w, const char *command, json_object *args,
              json_object **ret);
/* The export id of disk I: "TAG-dI" for the base copy, "TAG-xI" for a
 * round's bitmap. */
char *warm_export_id (struct ferry_warm *w, char what, size_t i);
/* The NBD URI of export ID. */
char *warm_export_uri (struct ferry_warm *w, const char *id);
/* Remove every export of ours whose id starts with PREFIX ("" all), and
 * wait until QEMU has let go of them (their bitmaps are busy until then). */
int warm_del_exports (struct ferry_warm *w, const char *prefix);
/* True when something listens on the Unix socket PATH. */
bool warm_socket_listens (const char *path);
/* Query the disks again (their bitmaps change). */
int warm_refresh_disks (struct ferry_warm *w);
/* Start bitmap TAG-bN, N the next generation (saved first, note 2), on
 * each of the first NDISKS VM disks we migrate, in one transaction: the
 * first bitmaps, or those that replace bitmaps the VM lost (notes 1 and
 * 3). */
int warm_start_bitmaps (struct ferry_warm *w, size_t ndisks,
                        const struct ferry_warm_journal *j);
/* Whether the VM lost the bitmaps of ours on a disk we migrate (removed
 * by hand, a QEMU restarted without them) since the last round: then (1)
 * new ones start before anything is read, and the round that follows
 * compares every chunk (note 3).  0 when they are all there. */
int warm_bitmaps_lost (struct ferry_warm *w,
                       const struct ferry_warm_journal *j);
/* Attach to a running QEMU: check it, start the NBD server, the base
 * exports and (RUN) the first bitmaps. */
int warm_qmp_open (struct ferry_warm *w, const char *path);
/* Remove bitmap NAME of NODE, saying nothing when it is gone. */
void warm_remove_bitmap (struct ferry_warm *w, const char *node,
                         const char *name);
/* One round of a running QEMU (notes 1 and 2): freeze, merge, copy,
 * then drop what it copied; 1 when our bitmaps turn out lost (note 3),
 * new ones recording. */
int warm_bitmap_round (struct ferry_warm *w, struct ferry_v2v_plan *plan,
                       const char *staging, const struct ferry_warm_journal *j,
                       struct tally *t);
/* The round after the VM lost our bitmaps (note 3): new ones record
 * already; every chunk of each disk is compared, the target read too. */
int warm_lost_round (struct ferry_warm *w, struct ferry_v2v_plan *plan,
                     const char *staging, const struct ferry_warm_journal *j,
                     struct tally *t);
/* The files of the chain whose top is PATH, top first, NULL-terminated
 * (the caller frees each and the array). */
char **warm_chain_files (const char *path);
/* Free a list of chain_files. */
void warm_free_files (char **files);
/* A VMware-style VM whose disks are snapshot deltas: read it, and (RUN)
 * save each disk's top as the active delta before anything is read. */
int warm_chain_open (struct ferry_warm *w);
/* One round of a snapshot chain (note 6): the deltas frozen since the
 * last one, and with FINAL the top as well.  *PENDING: bytes the top
 * holds (what the last delta would be now). */
int warm_chain_round (struct ferry_warm *w, struct ferry_v2v_plan *plan,
                      const char *staging, bool final,
                      const struct ferry_warm_journal *j, struct tally *t,
                      uint64_t *pending);

#endif /* FERRY_MIGRATE_WARM_INTERNAL_H */
