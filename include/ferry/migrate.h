/* ferry: migrations.  A cold V2V reads a VM's description (<ferry/vm.h>),
 * plans the move and checks, before any byte moves, that it can succeed;
 * then converts every disk through the copy engine and writes the
 * description the target wants, into an output folder that appears whole
 * or not at all.
 *
 *   plan = ferry_v2v_plan (vm, &opts);       checks, sizes, names
 *   ... show plan->checks; stop on plan->nr_errors ...
 *   ferry_v2v_run (plan, &opts, &summary);   the copy
 *   ferry_v2v_plan_free (plan);
 */
#ifndef FERRY_MIGRATE_H
#define FERRY_MIGRATE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/copy.h>
#include <ferry/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ferry_v2v_target {
  FERRY_V2V_LIBVIRT,       /* disks + NAME.xml, a libvirt domain */
  FERRY_V2V_QEMU,          /* disks + NAME.sh, a QEMU launch script */
  FERRY_V2V_OVA,           /* NAME.ova: OVF, manifest, streamOptimized VMDKs */
  FERRY_V2V_LOCAL,         /* disks + NAME.json, the model as ferry sees it */
};

/* Progress of a run: which step, which disk, and the totals. */
struct ferry_v2v_progress {
  const char *phase;       /* "verify" (manifest digests), "copy", "pack"
                              (writing the OVA) */
  size_t disk;             /* the disk being copied (index in the plan) */
  size_t nr_disks;
  const char *disk_name;   /* its target file name */
  struct ferry_progress disk_progress;  /* this disk, from the engine */
  uint64_t done, total;    /* bytes of the phase, over all disks */
  double elapsed;          /* seconds since the phase began */
  bool finished;           /* the last call of the phase */
};

typedef void (*ferry_v2v_progress_fn) (const struct ferry_v2v_progress *p,
                                       void *opaque);

struct ferry_v2v_options {
  enum ferry_v2v_target target;
  const char *out_dir;     /* created by the run; must not exist */
  const char *disk_format; /* -O; NULL: qcow2 (an OVA holds vmdk) */
  const char *name;        /* --name: the VM's new name, or NULL */
  /* --network-map: "SRC=DST" (the source network SRC becomes DST) or
   * "DST" (every network not mapped otherwise); NULL-terminated. */
  const char *const *network_map;
  bool keep_devices;       /* keep disk buses and NIC models (not virtio) */
  const char *flavor;      /* OVA: "vmware" (default) or "virtualbox" */
  unsigned threads;        /* copy engine workers; 0: one per core */
  /* Skip every flush (qemu-img's cache=unsafe, -t unsafe): faster, but
   * after a crash the output folder may exist with data that never
   * reached the disk.  The rename still comes last. */
  bool no_flush;
  /* --no-convert: leave the guest as it is.  Otherwise, for the KVM
   * targets (libvirt, qemu, local), the Linux guest on the copied disks is
   * converted (<ferry/guest.h>) before the output is put in place; a
   * refused or failed conversion fails the run. */
  bool no_convert;
  bool no_guest_agent;     /* the conversion installs no qemu-guest-agent */
  ferry_v2v_progress_fn progress;
  void *progress_opaque;
  volatile sig_atomic_t *cancel;
  /* Bytes of the output already written (a resumed job's working folder,
   * beside out_dir): the space check asks only for the rest. */
  uint64_t space_written;
};

enum ferry_v2v_severity {
  FERRY_V2V_WARNING,       /* the migration goes ahead; the user should know */
  FERRY_V2V_ERROR,         /* the migration cannot go ahead */
};

struct ferry_v2v_check {
  enum ferry_v2v_severity severity;
  char *message;           /* one line: what is wrong, naming the thing */
  char *remedy;            /* one line: what to do about it */
  const char *input;       /* the member of ferry_v2v_options the remedy
                              changes ("out_dir", "name", "disk_format"),
                              or NULL; a program adds how its user sets it
                              (the CLI, the flag), as for
                              ferry_get_error_input */
};

struct ferry_v2v_disk {
  size_t index;            /* in vm->disks */
  char *source;            /* the file, or "OVA:member", for messages */
  char *source_format;     /* what its content is, or NULL (not opened) */
  uint64_t virtual_size;   /* the image's, else the declared capacity */
  uint64_t data_bytes;     /* bytes of data to copy (holes left out) */
  uint64_t file_bytes;     /* bytes of the file or member */
  char *target_name;       /* its file in the output folder */
  char *target_format;
  bool migrated;           /* false when there is nothing to copy */
};

struct ferry_v2v_plan {
  struct ferry_vm *vm;     /* the caller's, changed by --name and
                              --network-map; not freed with the plan */
  struct ferry_v2v_disk *disks;   /* one per vm->disks */
  size_t nr_disks;
  struct ferry_v2v_check *checks;
  size_t nr_checks;
  size_t nr_errors;
  uint64_t data_bytes;     /* sum over the disks */
  uint64_t space_needed;   /* bytes the output may take */
  uint64_t space_free;     /* bytes free where it goes */
  char *out_dir;           /* absolute */
  char *description;       /* the description's file name in out_dir
                              (NAME.xml, NAME.sh, NAME.ova, NAME.json) */
};

/* Plan the migration of VM and run every prerequisite check (it opens the
 * disks read-only, and verifies the manifest's digests, which reads every
 * file it lists).  Returns the plan, whose checks say whether it can go
 * ahead, or NULL when the plan could not be made at all (bad options,
 * out of memory).  The caller frees it with ferry_v2v_plan_free(). */
struct ferry_v2v_plan *ferry_v2v_plan (struct ferry_vm *vm,
                                       const struct ferry_v2v_options *opts);
void ferry_v2v_plan_free (struct ferry_v2v_plan *plan);

struct ferry_guest_report;

struct ferry_v2v_summary {
  double seconds;          /* the whole run */
  double copy_seconds;     /* the disks' copy */
  double inspect_seconds;  /* starting libguestfs and finding the OS */
  double convert_seconds;  /* the guest's conversion after that (0: not
                              converted) */
  /* The conversion's report, step by step, or NULL when there was none.
   * Kept even when ferry_v2v_run fails (it says which step failed);
   * ferry_v2v_summary_free frees it. */
  struct ferry_guest_report *guest;
  /* Why the guest was not converted though it could have been (a static
   * string), or NULL. */
  const char *convert_skipped;
  uint64_t bytes;          /* data bytes copied */
  double *disk_seconds;    /* per disk of the plan (freed by
                              ferry_v2v_summary_free) */
  uint64_t *disk_bytes;    /* bytes each disk's target file takes */
  size_t nr_disks;
  /* Leftovers of ferry processes that died, removed from the output
   * folder's parent before the run began (<ferry/target.h>): paths,
   * NULL-terminated, or NULL.  Kept when ferry_v2v_run fails. */
  char **removed;
};

/* Carry out PLAN (which must have no errors): convert every disk into a
 * hidden folder beside opts->out_dir, write the description, flush it all
 * and rename the folder to out_dir (a folder target of <ferry/target.h>).
 * On failure or cancel the folder is removed: out_dir never exists half
 * made.  0, or -1 with the error set. */
int ferry_v2v_run (struct ferry_v2v_plan *plan,
                   const struct ferry_v2v_options *opts,
                   struct ferry_v2v_summary *summary /* OUT */);
void ferry_v2v_summary_free (struct ferry_v2v_summary *summary);

/* --- durable runs (a job: lib/job, <ferry/job.h>) ----------------------
 *
 * A durable run is ferry_v2v_run cut into steps that a later process can
 * take up where an earlier one stopped (paused, killed, failed): the
 * caller's journal says which steps are done and keeps each disk's
 * checkpoint; lib/migrate knows nothing of where they are kept.  Steps:
 * "copy" (one per migrated disk, DISK its index in the plan), "sync" (a
 * warm run only), "convert",
 * "describe", "verify" (a test run only), "commit".  The working folder
 * (journal->staging) is kept when the run stops short of the commit. */

/* What a journal keeps of one disk's copy. */
struct ferry_v2v_disk_state {
  struct ferry_copy_mark mark;   /* mark.durable == 0: nothing kept */
  char source[160];              /* the source as it was ("" unknown):
                                    ferry_v2v_source_ident */
};

struct ferry_v2v_journal {
  const char *staging;           /* the working folder beside out_dir */
  bool test;                     /* stop after "verify": boot the result
                                    isolated and leave it uncommitted */
  bool boot_after;               /* after the commit, boot the output in
                                    place ("boot" step: --verify) */
  unsigned boot_timeout;         /* the boots: seconds (0: 600) */
  uint64_t checkpoint_bytes;     /* the copy's checkpoints (0: defaults) */
  double checkpoint_seconds;
  void *opaque;
  /* True when STEP (of DISK, -1 for none) is done already. */
  bool (*done) (void *opaque, const char *step, int disk);
  /* STEP begins; or ends (OK: done; else failed, with the error set and
   * OUTCOME the message).  OUTCOME: a line for the record, or NULL.  -1
   * stops the run with the error set. */
  int (*begin) (void *opaque, const char *step, int disk);
  int (*end) (void *opaque, const char *step, int disk, bool ok,
              const char *outcome);
  /* Disk DISK's state from an earlier run (NULL: none); and its new
   * checkpoint (after the target's flush). */
  const struct ferry_v2v_disk_state *(*disk_state) (void *opaque, int disk);
  int (*checkpoint) (void *opaque, int disk,
                     const struct ferry_v2v_disk_state *st);
  /* Something worth the record ("disk 2: the source changed since the
   * checkpoint, copying it again"). */
  void (*note) (void *opaque, const char *level, const char *message);
  /* A warm run (<ferry/warm.h>): the "sync" step, after the copies and
   * before "convert", brings the disks in STAGING up to date with a
   * source that kept running, and stops it.  NULL: none.  NO_COPY: the
   * sync step copies the disks itself, there is no "copy" step. */
  int (*sync) (void *opaque, struct ferry_v2v_plan *plan,
               const char *staging);
  bool no_copy;
};

/* The identity of plan disk DISK's source, to tell later whether it
 * changed: its file (or the OVA's) device, inode, size and modification
 * time, in BUF.  0, or -1 with the error set. */
int ferry_v2v_source_ident (const struct ferry_v2v_plan *plan, size_t disk,
                            char *buf, size_t len);

/* Run PLAN as ferry_v2v_run does, step by step through JOURNAL: steps it
 * says are done are skipped, a disk with a checkpoint whose source and
 * partial target are unchanged resumes from it, and anything else starts
 * again.  On failure or cancel the working folder is kept (the caller
 * discards it on a cancel).  Returns 0 when committed, 1 when a test run
 * stopped before the commit as it should, -1 with the error set. */
int ferry_v2v_run_journal (struct ferry_v2v_plan *plan,
                           const struct ferry_v2v_options *opts,
                           const struct ferry_v2v_journal *journal,
                           struct ferry_v2v_summary *summary /* OUT */);

struct ferry_guest_target;

/* Read back TARGET, a `--to libvirt` or `--to qemu` output (the folder,
 * or the NAME.xml or NAME.sh in it, read by ferry_vm_read_target), as what
 * booting it needs (<ferry/guest.h>): the disks, the boot disk's bus, the
 * NICs' model and MACs, firmware, memory and CPUs.  0, or -1 with the
 * error set (nothing to free then); the caller frees T with
 * ferry_guest_target_free(). */
int ferry_v2v_read_target (const char *target,
                           struct ferry_guest_target *t /* OUT */);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_MIGRATE_H */
