/* ferry: the copy engine.
 *
 * One engine moves bytes for convert, network copies, warm syncs and P2V:
 * it walks the source's extents and never reads a hole, reads and writes
 * on several threads, turns zero runs inside data into holes, and, for
 * compressed targets, compresses on every core while the writer keeps
 * the file's order.
 */
#ifndef FERRY_COPY_H
#define FERRY_COPY_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <ferry/image.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_progress {
  uint64_t done;             /* bytes of the source handled so far */
  uint64_t total;            /* bytes to handle: the allocated ones */
  uint64_t virtual_size;
  double elapsed;            /* seconds since the copy started */
  double bytes_per_sec;      /* recent speed */
  double eta;                /* seconds left, < 0 when unknown */
  bool finished;
};

/* An extent flag of ferry_copy_options' extents: a range the copy leaves
 * alone, because DST already holds it. */
#define FERRY_EXTENT_SKIP 0x80000000u

typedef void (*ferry_progress_fn) (const struct ferry_progress *p,
                                   void *opaque);

struct ferry_copy_options {
  unsigned threads;          /* workers; 0 means one per core */
  bool compress;             /* write compressed blocks (-c) */
  size_t request_size;       /* bytes per request; 0 means the default */
  /* Called at most a few times a second from one thread, and once with
   * finished set at the end. */
  ferry_progress_fn progress;
  void *progress_opaque;
  /* When it becomes non-zero (a signal handler sets it) the copy stops
   * and returns -1 with errno EINTR, as on ferry_request_stop. */
  volatile sig_atomic_t *cancel;
  /* Leave DST unflushed at the end (qemu-img's -t unsafe): faster, but
   * the data may still be only in the page cache when ferry_copy returns. */
  bool no_flush;
  /* Resume an earlier copy of SRC into this DST: DST already holds SRC's
   * contents over [0, resume_from) for good (a checkpoint's DURABLE).
   * The copy starts there, rounded down to the engine's item alignment
   * (a whole number of target clusters); progress counts the source's
   * data below it as done.  0: copy everything. */
  uint64_t resume_from;
  /* Called on the calling thread with every worker idle and DST flushed
   * (unless no_flush): DST now holds SRC over [0, durable) for good.
   * Called every checkpoint_bytes of the source or checkpoint_seconds,
   * whichever comes first, and once more when a cancel (or stop request)
   * stops the copy, before ferry_copy returns -1/EINTR; not after other
   * errors (the last checkpoint stands), nor at the end of a copy that
   * succeeds (ferry_copy's 0 says DST holds everything).  A -1 return
   * (error set) stops the copy with that error.  NULL: no checkpoints. */
  int (*checkpoint) (uint64_t durable, void *opaque);
  void *checkpoint_opaque;
  uint64_t checkpoint_bytes;     /* 0: 64 MiB */
  double checkpoint_seconds;     /* 0: 2 s */
  /* What to copy (a delta: a dirty bitmap's ranges, a snapshot's
   * grains).  NULL: all of SRC.  Otherwise it describes [OFFSET,
   * OFFSET+LENGTH) of SRC as ferry_image_extents does (at least one
   * extent from OFFSET, may stop short), with FERRY_EXTENT_SKIP on the
   * ranges the copy must leave alone; the others are copied by their
   * flags.  A skipped range that covers only part of a target cluster
   * is copied instead (the engine writes whole clusters).  Called from
   * two threads at once. */
  int (*extents) (void *opaque, uint64_t offset, uint64_t length,
                  struct ferry_extent_list *list);
  void *extents_opaque;
  /* DST already holds older contents (a delta round): ranges that read
   * as zeroes are written as zeroes, never skipped. */
  bool overwrite;
};

/* Copy the guest-visible contents of SRC into DST, which must be at least
 * as large.  Where DST has a backing file, only what differs from it is
 * written.  Returns 0, or -1 with the error set; DST is flushed on
 * success unless opts->no_flush. */
int ferry_copy (struct ferry_image *src, struct ferry_image *dst,
                const struct ferry_copy_options *opts);

/* Whether a copy into DST, open for writing, can be stopped and later
 * resumed mid-file in another process (ferry_copy_reopen_target, then
 * ferry_copy with resume_from): false for targets written strictly in
 * order, which must be written again from the start (a streamOptimized
 * VMDK, and anything else that takes only compressed data), true for
 * every other target ferry writes.  A compressed copy into qcow2 (-c)
 * resumes too: the clusters after the checkpoint are appended again. */
bool ferry_image_can_resume (struct ferry_image *dst);

/* What a checkpoint records of the target file, so a later process can
 * tell whether the partial target is still the one it describes. */
struct ferry_copy_mark {
  uint64_t durable;      /* SRC's bytes [0, durable) are in the target */
  uint64_t file_size;    /* the target file's size at that moment */
  uint64_t dev, ino;     /* which file */
};

/* Fill *MARK for the target file PATH at a checkpoint (from the
 * checkpoint callback, after the flush), DURABLE being the callback's
 * argument.  0, or -1 with the error set. */
int ferry_copy_mark_target (const char *path, uint64_t durable,
                            struct ferry_copy_mark *mark /* OUT */);

/* Reopen the partial target PATH of FORMAT (a driver name, never NULL:
 * a probe would take a new qcow2 file without its header for raw) for
 * writing, to resume a copy checkpointed by MARK: check that it is the
 * file MARK describes (device, inode, a size of at least
 * MARK->file_size, a dynamic VHD's footer less) and open it with
 * FERRY_OPEN_WRITE.  Nothing is cut: what the killed writer did after
 * the checkpoint is overwritten by the resumed copy or left unreferenced
 * (checkpoint.c, note 1).  The copy then goes on with resume_from =
 * MARK->durable.  NULL with the error set; errno ESTALE when it is not
 * the file MARK describes or no longer an image the driver opens (a new
 * qcow2 or VMDK killed before its first flush) or cannot be resumed
 * (ferry_image_can_resume), and the caller then starts that disk again;
 * EINVAL without FORMAT; other errors (EBUSY for a file another process
 * holds, EACCES) as the open gives them.  The caller frees it with
 * ferry_image_close(). */
struct ferry_image *ferry_copy_reopen_target (const char *path,
                                              const char *format,
                                              const struct ferry_copy_mark *mark);

/* Compare the guest-visible contents of A and B.  Returns 0 when equal,
 * 1 when not (*FIRST_DIFF is then the first differing byte offset), -1 on
 * error.  Images of different sizes are equal only if the longer one
 * reads as zeroes past the end of the shorter one; *SIZE_DIFFERS tells
 * when they differed in size. */
int ferry_compare (struct ferry_image *a, struct ferry_image *b,
                   unsigned threads, uint64_t *first_diff /* OUT */,
                   bool *size_differs /* OUT */);

/* The hash delta (warm rounds for sources without change tracking).
 *
 * The hashes of what a target holds, chunk by chunk, kept in a file
 * between rounds (and runs). */
struct ferry_hash_table;

/* Open the table file PATH for images of SIZE bytes cut in chunks of
 * CHUNK bytes (0: 1 MiB; it must be a power of two from 64 KiB to
 * 64 MiB, else EINVAL), creating it when missing with every chunk
 * "blank" (FRESH: the target was just created and reads as zeroes
 * everywhere) or "unknown" (!FRESH), synced with its folder; FRESH is
 * ignored for an existing file.  An existing file made for another
 * size or chunk, or damaged (its header, or its length), is refused with
 * ESTALE and a message naming it (the caller then removes it and starts
 * with an unknown table); an entry whose own checksum is wrong is taken
 * as "unknown".  The file is locked while open: another open of it fails
 * with EBUSY.  NULL with the error set.  The caller frees it with
 * ferry_hash_table_close(). */
struct ferry_hash_table *ferry_hash_table_open (const char *path,
                                                uint64_t size, uint32_t chunk,
                                                bool fresh);
/* Close T (NULL: nothing); its file stays. */
void ferry_hash_table_close (struct ferry_hash_table *t);
/* Forget every hash (the target's contents are no longer known): every
 * chunk becomes unknown, durably.  0, or -1 with the error set. */
int ferry_hash_table_forget (struct ferry_hash_table *t);
uint32_t ferry_hash_table_chunk (const struct ferry_hash_table *t);

struct ferry_delta_stats {
  uint64_t chunks;            /* chunks looked at */
  uint64_t chunks_written;    /* chunks written (data or zeroes) to the target */
  uint64_t bytes_read;        /* bytes read from the source (holes are not read) */
  uint64_t bytes_target_read; /* bytes read from the target (unknown chunks only) */
  uint64_t bytes_written;     /* bytes written to the target, zero writes included */
  double seconds;
};

/* One hash round: make DST (open for writing, as large as SRC) hold
 * SRC's contents, writing only what the table T (made for SRC's size)
 * says differs.  For each chunk: SRC's extents first (a chunk that is
 * all holes or zero extents hashes as zeroes without a read), else read
 * and hash it (XXH3-128).  A chunk whose table entry is a hash equal to
 * it is skipped; "blank" and SRC zero: skipped; "unknown": DST's chunk
 * is read (its data extents) and hashed, and written only if different;
 * otherwise it is written (zero runs as ferry_image_zero, data with
 * pwrite).  The new hashes are recorded once DST is flushed; a kill at
 * any moment leaves a table that claims nothing DST does not hold
 * (delta.c, notes 1 to 4).  The chunk must be a multiple of DST's
 * cluster size (EINVAL otherwise).  OPTS (NULL: defaults): threads
 * (workers), cancel, progress (done/total in source bytes) as in
 * ferry_copy; the other fields are ignored.  0 with *STATS filled, or -1
 * with the error set (EINTR when cancelled or on a stop request) and
 * *STATS telling what was done before. */
int ferry_hash_round (struct ferry_image *src, struct ferry_image *dst,
                      struct ferry_hash_table *t,
                      const struct ferry_copy_options *opts,
                      struct ferry_delta_stats *stats /* OUT */);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_COPY_H */
