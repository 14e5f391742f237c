/* The copy engine: ferry_copy moves the guest-visible contents of one
 * image into another, on several threads.
 *
 * The source is cut into work items by a dispatcher that walks its
 * extents.  Holes and known-zero ranges are never read: a target that
 * reads as zeroes skips them, any other target gets them as zero requests
 * (FERRY_ZERO_MAY_TRIM).  Data items are at most request_size bytes; the
 * worker that takes one reads it, classifies each block (4 KiB, or one
 * target cluster, or one compress unit) as data or zeroes, and writes runs
 * of equal blocks with one request each.  A target with a backing file
 * gets only the blocks that differ from what it reads through the backing
 * file.  Compressed targets get each unit compressed by the worker that
 * read it, and written in file order.
 *
 * The calling thread starts the workers, sums the source's data extents
 * for progress, and then watches: it reports progress, polls the cancel
 * flag, makes the checkpoints (notes 8 and 9), and waits for the workers
 * to finish.  A resumed copy starts at the last checkpoint (note 10).
 *
 * NOTES ON THE DESIGN
 *
 * 1. Work items start and end on multiples of C->align, which is a whole
 *    number of target clusters (and of compress units), except the last
 *    one which ends at the source's size.  Two workers therefore never
 *    write into the same target cluster, which is what the image layer
 *    asks of concurrent writers.  Skipped ranges only ever cover whole
 *    aligned blocks, so the cluster a skipped range shares with an item is
 *    written by that item alone.
 *
 * 2. Compressed output is written in strictly ascending offset order.
 *    The dispatcher numbers items in offset order under C->lock; a worker
 *    compresses its item whenever it has it, then waits on C->order_cond
 *    until C->next_write equals its number, writes, and increments it.
 *    Every numbered item is owned by a running worker until written, so
 *    the wait always ends, unless the copy stops, which wakes everyone.
 *    Each worker holds one item, so memory stays bounded.
 *
 * 3. The first error wins.  The worker (or the dispatcher, or the
 *    watching thread for a cancel) that fails first copies its
 *    thread-local message and errno into C under C->lock and raises
 *    C->stop; later errors are dropped.  Every worker checks C->stop before
 *    each item and each turn, so they all leave soon after.  The calling
 *    thread re-sets that message with ferry_error() once all workers are
 *    joined, so the error is on the thread that called ferry_copy.
 *
 * 4. The target is flushed once, at the end, after every worker has been
 *    joined and only when nothing failed; the final progress call
 *    (finished set) comes after that flush.  No finished call is made when
 *    the copy fails.
 *
 * 5. Only the calling thread reads *opts->cancel (a signal handler may set
 *    it) and calls opts->progress, so neither needs to be thread-safe.
 *    Workers see a cancel through C->stop, and a stop request
 *    (ferry_request_stop) both ways: through C->stop, and in the drivers,
 *    whose waits on a server end with EINTR, so a worker blocked in one
 *    comes back at once.  Workers block SIGINT, SIGTERM, SIGHUP and SIGQUIT
 *    so the handler runs on the calling thread.
 *
 * 6. Over a backing file, zeroes are written without FERRY_ZERO_MAY_TRIM:
 *    a trimmed cluster would read the backing file's data again.  Only a
 *    new overlay (ferry_image_reads_as_backing) is compared with its
 *    backing file: blocks equal to the backing file's are not written at
 *    all, so it holds only what differs.  An existing overlay (-n) holds
 *    clusters of its own, so it gets every block.
 *
 * 7. Memory is bounded by the workers' buffers (one item each, all of
 *    them under BUFFER_BUDGET) and the extent lists, whose queries cover
 *    at most EXTENT_QUERY bytes: nothing grows with the image's size.
 *
 * 8. Checkpoints (only with opts->checkpoint; without it none of this
 *    runs and workers take no extra lock).  Items are handed out in
 *    ascending offset order, so once every item handed out is written,
 *    the target holds the source over [0, C->pos).  C->paused, under
 *    C->lock, holds the dispatcher: the calling thread raises it when
 *    checkpoint_seconds have passed, the dispatcher itself (waking the
 *    calling thread) when it has handed out checkpoint_bytes since the
 *    last checkpoint, so a checkpoint never lags more than one item
 *    behind its bytes, and what a kill loses is at most checkpoint_bytes
 *    of data plus one item.  The calling thread waits, POLL_INTERVAL at
 *    a time and watching the cancel flag, until C->busy (items held by
 *    workers) is 0.  Compressed
 *    items complete too: their numbers are all below C->next_seq and
 *    each is held by a running worker (note 2).  It then flushes the
 *    target, which races with nothing since every worker is idle, calls
 *    the callback with C->pos (aligned, note 1), and lets the workers go.
 *
 * 9. A cancel raises C->stop at once, as before; the workers finish or
 *    drop the item they hold and leave.  Once they are joined, each
 *    worker whose item did not complete (W->busy still set) holds the
 *    start of a range that may be partly written, and the lowest of
 *    those (or C->pos when there is none) is what the target holds for
 *    good after a flush: the last checkpoint is made there, so a cancel
 *    ends the copy as fast as it did.  Other errors make no checkpoint.
 *
 * 10. A resumed copy (opts->resume_from) starts the dispatcher at
 *    resume_from rounded down to C->align, so its first item starts on a
 *    boundary as every other does (note 1), and progress counts the
 *    source's data below it as done.
 *
 * 11. A delta copy (opts->extents) walks the caller's extents instead of
 *    the source's: FERRY_EXTENT_SKIP ranges are passed over like a zero
 *    range into a target that reads as zeroes, whole aligned blocks only
 *    (note 1), so a cluster shared with a copied range is copied whole
 *    from the source, which is what the target must hold anyway.  The
 *    target holds older data there (opts->overwrite), so zeroes inside
 *    the ranges copied are written, never skipped.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ferry/copy.h>

#include "internal.h"
#include "../common/error.h"
#include "../common/util.h"
#include "../common/vector.h"

/* Bytes per data item when the caller does not say: large enough that
 * per-request costs vanish, small enough that every worker stays busy
 * and the page cache is not flooded.  Compressed items are smaller so the
 * in-order writer does not leave cores idle at the end. */
#define DEFAULT_REQUEST_SIZE (4u << 20)
#define DEFAULT_COMPRESS_REQUEST_SIZE (1u << 20)

/* The smallest block looked at for zeroes inside data. */
#define ZERO_BLOCK 4096u

/* How much of the source one extents query covers: bounds the dispatcher's
 * list however fragmented the image is. */
#define EXTENT_QUERY (256ull << 20)

/* A zero item (nothing to read) covers at most this much. */
#define ZERO_ITEM_MAX (1ull << 30)

/* All workers' buffers together stay under this, so peak memory does
 * whatever the image size and -m. */
#define BUFFER_BUDGET (128u << 20)
#define MAX_THREADS 64u

/* Checkpoint cadence when the caller does not say (note 8). */
#define DEFAULT_CHECKPOINT_BYTES (64ull << 20)
#define DEFAULT_CHECKPOINT_SECONDS 2.0

/* How often the calling thread wakes to look at the cancel flag, and how
 * often it reports progress. */
#define POLL_INTERVAL 0.05
#define PROGRESS_INTERVAL 0.2

/* The speed is measured over about this many seconds. */
#define RATE_SAMPLES 16

/* What to do with one block of the target. */
enum action {
  ACT_NONE = 0,    /* no run yet */
  ACT_SKIP,        /* the target already reads what it must */
  ACT_ZERO,        /* make it read zeroes */
  ACT_DATA,        /* write the bytes (compressed or not) */
};

enum item_kind {
  ITEM_DATA,       /* read the source's data extents */
  ITEM_ZERO,       /* the source reads zeroes over the whole item */
};

/* One work item: [start, end) of the source. */
struct item {
  enum item_kind kind;
  uint64_t seq;                    /* order of writing, compressed output */
  uint64_t start, end;
  uint64_t data_bytes;             /* bytes of data extents, for progress */
  struct ferry_extent_list ext;    /* the source's extents over the item */
};

struct copy;

/* One worker thread and the buffers it reuses for every item. */
struct worker {
  struct copy *c;
  pthread_t thread;
  bool started;
  unsigned char *buf;              /* source bytes of one item */
  unsigned char *bbuf;             /* backing bytes, backing mode only */
  unsigned char *cbuf;             /* compressed units, compress mode */
  size_t *clen;                    /* encoded length of each unit */
  unsigned char *acts;             /* enum action of each unit */
  struct ferry_extent_list bext;   /* backing extents, scratch */
  struct item item;
  bool busy;                       /* holds ITEM, not yet written (note 9) */
};

/* The state every thread of one copy shares. */
struct copy {
  struct ferry_image *src, *dst;
  struct ferry_image *backing;     /* compare with this backing file, or NULL */
  bool no_trim;                    /* the target has a backing file */
  const struct ferry_copy_options *opts;
  uint64_t size;                   /* bytes to copy: the source's size */
  uint64_t align;                  /* item boundaries (note 1) */
  uint64_t block;                  /* unit of the data / zero decision */
  size_t request;                  /* bytes per data item */
  bool skip_zero;                  /* zeroes need no write at all */
  bool compress;
  uint32_t unit;                   /* compress unit, compress mode */
  size_t bound;                    /* compress bound, compress mode */
  uint64_t resume_from;            /* where the copy starts (note 10) */
  bool checkpointing;              /* opts->checkpoint is set (note 8) */

  /* The dispatcher, the first error and the count of running workers,
   * under LOCK. */
  pthread_mutex_t lock;
  pthread_cond_t finished_cond;    /* signalled when a worker exits */
  unsigned running;
  struct ferry_extent_list ext;    /* source extents from POS onwards */
  size_t ext_idx;
  uint64_t pos;                    /* where the next item starts */
  uint64_t next_seq;
  struct first_error error;        /* the first error, the stop (note 3) */
  /* Checkpoints (note 8), under LOCK too. */
  bool paused;                     /* hand out no item */
  bool ckpt_due;                   /* the dispatcher asks for a checkpoint */
  uint64_t ckpt_pos;               /* where the last checkpoint was */
  uint64_t ckpt_bytes;             /* source bytes between checkpoints */
  double ckpt_seconds;             /* seconds between checkpoints */
  double ckpt_time;                /* when the last one was (calling thread) */
  unsigned busy;                   /* items handed out and not written */
  pthread_cond_t idle_cond;        /* BUSY dropped to 0 while PAUSED */
  pthread_cond_t resume_cond;      /* PAUSED dropped, or a stop */

  /* In-order writing of compressed output (note 2). */
  pthread_mutex_t order_lock;
  pthread_cond_t order_cond;
  uint64_t next_write;

  uint64_t done;                   /* atomic: data bytes handled */
};

/* Smallest common multiple of A and B (both non-zero). */
static uint64_t
lcm (uint64_t a, uint64_t b)
{
  uint64_t x = a, y = b;

  while (y) {
    uint64_t t = x % y;
    x = y;
    y = t;
  }
  return a / x * b;
}

/* X rounded down or up to a multiple of A (any A, not only powers of 2). */
static uint64_t
align_down (uint64_t x, uint64_t a)
{
  return x - x % a;
}

static uint64_t
align_up (uint64_t x, uint64_t a)
{
  return align_down (x + a - 1, a);
}

/* True once the copy must stop (an error or a cancel). */
static bool
stopped (struct copy *c)
{
  return first_error_stopped (&c->error);
}

/* Keep ERRNUM and MSG as the copy's error unless one came first, and make
 * every thread stop (note 3). */
static void
record_error (struct copy *c, int errnum, const char *msg)
{
  pthread_mutex_lock (&c->lock);
  first_error_keep (&c->error, errnum, msg);
  /* Wake the workers a checkpoint holds back. */
  pthread_cond_broadcast (&c->resume_cond);
  pthread_mutex_unlock (&c->lock);

  /* Wake the workers waiting for their turn to write. */
  pthread_mutex_lock (&c->order_lock);
  pthread_cond_broadcast (&c->order_cond);
  pthread_mutex_unlock (&c->order_lock);
}

/* Record this thread's last ferry error as the copy's error. */
static void
record_thread_error (struct copy *c)
{
  record_error (c, ferry_get_errno (), ferry_get_error ());
}

/* The source's extents over [OFF, OFF+LEN): the caller's delta
 * (opts->extents) when it gives one, else the image's. */
static int
source_extents (struct copy *c, uint64_t off, uint64_t len,
                struct ferry_extent_list *list)
{
  if (c->opts->extents)
    return c->opts->extents (c->opts->extents_opaque, off, len, list);
  return ferry_image_extents (c->src, off, len, list);
}

/* True when an extent's flags say the copy leaves it alone. */
static bool
extent_is_skip (uint32_t flags)
{
  return (flags & FERRY_EXTENT_SKIP) != 0;
}

/* True when an extent's flags say it reads as zeroes. */
static bool
extent_is_zero (uint32_t flags)
{
  return (flags & FERRY_EXTENT_ZERO) != 0;
}

/* The source's extent at C->pos, clipped to start there, into *E; the
 * driver is asked again when the list runs out.  Called under C->lock. */
static int
extent_at_pos (struct copy *c, struct ferry_extent *e)
{
  bool fresh = false;

  for (;;) {
    while (c->ext_idx < c->ext.len) {
      const struct ferry_extent *x = &c->ext.ptr[c->ext_idx];
      uint64_t xend = x->offset + x->length;

      if (x->offset <= c->pos && xend > c->pos) {
        e->offset = c->pos;
        e->length = MIN (xend, c->size) - c->pos;
        e->flags = x->flags;
        return 0;
      }
      if (x->offset > c->pos)
        break;
      c->ext_idx++;
    }
    if (fresh)
      return ferry_error (EIO, "%s: the %s driver gave no extent at offset %"
                          PRIu64, ferry_image_path (c->src),
                          ferry_image_format (c->src), c->pos);
    c->ext.len = 0;
    c->ext_idx = 0;
    if (source_extents (c, c->pos, MIN (c->size - c->pos, EXTENT_QUERY),
                        &c->ext) == -1)
      return -1;
    fresh = true;
  }
}

/* Hand out the next work item into *IT.  Returns 1 with an item, 0 when
 * the whole source is handed out, -1 on error.  Called under C->lock. */
static int
next_item (struct copy *c, struct item *it)
{
  struct ferry_extent e;
  uint64_t limit;

  for (;;) {
    uint64_t zend;

    if (c->pos >= c->size)
      return 0;
    if (extent_at_pos (c, &e) == -1)
      return -1;
    if (extent_is_skip (e.flags)) {
      /* A range left alone: its whole aligned blocks are passed over;
       * less than one block is copied as data (note 1). */
      zend = e.offset + e.length >= c->size ? c->size
        : align_down (e.offset + e.length, c->align);
      if (zend <= c->pos) {
        e.flags = 0;
        break;
      }
      c->pos = zend;
      continue;
    }
    if (!extent_is_zero (e.flags))
      break;
    /* A zero range: its whole aligned blocks need no reading.  C->pos is
     * aligned here (note 1). */
    zend = e.offset + e.length >= c->size ? c->size
      : align_down (e.offset + e.length, c->align);
    if (zend <= c->pos)
      break;               /* less than one block: part of a data item */
    if (c->skip_zero) {
      c->pos = zend;
      continue;
    }
    it->kind = ITEM_ZERO;
    it->seq = c->next_seq++;
    it->start = c->pos;
    it->end = MIN (zend, c->pos + ZERO_ITEM_MAX);
    it->data_bytes = 0;
    it->ext.len = 0;
    c->pos = it->end;
    return 1;
  }

  /* A data item: extents from C->pos up to the request size, ending
   * early (on a block boundary) before a zero range that holds whole
   * blocks, which the next call turns into a zero item or skips. */
  it->kind = ITEM_DATA;
  it->seq = c->next_seq++;
  it->start = c->pos;
  it->data_bytes = 0;
  it->ext.len = 0;
  limit = MIN (c->pos + c->request, c->size);
  while (c->pos < limit) {
    uint64_t n;

    if (c->pos > it->start) {
      if (extent_at_pos (c, &e) == -1)
        return -1;
    }
    if ((extent_is_zero (e.flags) || extent_is_skip (e.flags)) &&
        c->pos > it->start) {
      uint64_t b = MIN (align_up (c->pos, c->align), c->size);
      uint64_t zend = e.offset + e.length >= c->size ? c->size
        : align_down (e.offset + e.length, c->align);
      if (zend > b) {
        if (b > c->pos) {
          if (ferry_extent_list_append (&it->ext, c->pos, b - c->pos,
                                        e.flags & ~FERRY_EXTENT_SKIP) == -1)
            return -1;
          c->pos = b;
        }
        break;
      }
    }
    /* What is left of a skipped range inside an item is copied. */
    e.flags &= ~FERRY_EXTENT_SKIP;
    n = MIN (e.length, limit - c->pos);
    if (ferry_extent_list_append (&it->ext, c->pos, n, e.flags) == -1)
      return -1;
    if (!extent_is_zero (e.flags))
      it->data_bytes += n;
    c->pos += n;
  }
  it->end = c->pos;
  return 1;
}

/* Fill BUF with the source's bytes of the data item IT: read the data
 * extents, zero the rest. */
static int
read_source (struct copy *c, const struct item *it, unsigned char *buf)
{
  size_t i;

  for (i = 0; i < it->ext.len; i++) {
    const struct ferry_extent *x = &it->ext.ptr[i];
    unsigned char *p = buf + (x->offset - it->start);

    if (extent_is_zero (x->flags))
      memset (p, 0, x->length);
    else if (ferry_image_pread (c->src, p, x->length, x->offset) == -1)
      return -1;
  }
  return 0;
}

/* Fill BUF with what the target's backing file reads over [START, END):
 * its data extents are read, its zero extents and anything past its end
 * are zeroed.  *ALL_ZERO tells whether nothing was read. */
static int
read_backing (struct copy *c, struct worker *w, uint64_t start, uint64_t end,
              unsigned char *buf, bool *all_zero)
{
  uint64_t read;

  if (copy_read_extents (c->backing, &w->bext, start, end, buf, &read) == -1)
    return -1;
  *all_zero = read == 0;
  return 0;
}

/* Decide what the target block [OFF, OFF+N) needs, from the source bytes
 * P and (backing mode) the backing bytes BP. */
static enum action
classify (struct copy *c, const unsigned char *p, const unsigned char *bp,
          size_t n)
{
  if (bp) {
    if (memcmp (p, bp, n) == 0)
      return ACT_SKIP;
    return is_zero (p, n) ? ACT_ZERO : ACT_DATA;
  }
  if (is_zero (p, n))
    return c->skip_zero ? ACT_SKIP : ACT_ZERO;
  return ACT_DATA;
}

/* Write the run of ACT over [START, END) of the target; BUF holds the
 * source bytes of the item that begins at BUF_START. */
static int
flush_run (struct copy *c, enum action act, uint64_t start, uint64_t end,
           const unsigned char *buf, uint64_t buf_start)
{
  switch (act) {
  case ACT_NONE:
  case ACT_SKIP:
    return 0;
  case ACT_ZERO:
    /* Over a backing file, trimming would show the backing's data. */
    return ferry_image_zero (c->dst, end - start, start,
                             c->no_trim ? 0 : FERRY_ZERO_MAY_TRIM);
  case ACT_DATA:
    return ferry_image_pwrite (c->dst, buf + (start - buf_start),
                               end - start, start);
  }
  abort ();
}

/* The end of the block that starts at OFF, clipped to END. */
static uint64_t
block_end (struct copy *c, uint64_t off, uint64_t end)
{
  return MIN (align_down (off, c->block) + c->block, end);
}

/* Write the data item IT (uncompressed target): runs of equal actions,
 * one request each. */
static int
write_data_item (struct copy *c, struct worker *w, const struct item *it)
{
  enum action run = ACT_NONE;
  uint64_t run_start = it->start, off;
  const unsigned char *bp = NULL;

  if (read_source (c, it, w->buf) == -1)
    return -1;
  if (c->backing) {
    bool all_zero;
    if (read_backing (c, w, it->start, it->end, w->bbuf, &all_zero) == -1)
      return -1;
    bp = w->bbuf;
  }

  for (off = it->start; off < it->end; ) {
    uint64_t next = block_end (c, off, it->end);
    size_t i = off - it->start;
    enum action act = classify (c, w->buf + i, bp ? bp + i : NULL,
                                next - off);

    if (act != run) {
      if (flush_run (c, run, run_start, off, w->buf, it->start) == -1)
        return -1;
      run = act;
      run_start = off;
    }
    off = next;
  }
  return flush_run (c, run, run_start, it->end, w->buf, it->start);
}

/* Write the zero item IT: the source reads zeroes over all of it. */
static int
write_zero_item (struct copy *c, struct worker *w, const struct item *it)
{
  uint64_t off = it->start;

  if (c->backing == NULL)
    return ferry_image_zero (c->dst, it->end - it->start, it->start,
                             c->no_trim ? 0 : FERRY_ZERO_MAY_TRIM);

  /* Over a backing file: zero only the blocks where the backing file
   * does not read as zeroes already. */
  while (off < it->end) {
    uint64_t chunk_end = MIN (off + c->request, it->end), pos;
    enum action run = ACT_NONE;
    uint64_t run_start = off;
    bool all_zero;

    if (stopped (c))
      return 0;
    if (off >= ferry_image_size (c->backing))
      break;
    if (read_backing (c, w, off, chunk_end, w->bbuf, &all_zero) == -1)
      return -1;
    if (all_zero) {
      off = chunk_end;
      continue;
    }
    for (pos = off; pos < chunk_end; ) {
      uint64_t next = block_end (c, pos, chunk_end);
      enum action act = is_zero (w->bbuf + (pos - off), next - pos)
        ? ACT_SKIP : ACT_ZERO;

      if (act != run) {
        if (flush_run (c, run, run_start, pos, NULL, off) == -1)
          return -1;
        run = act;
        run_start = pos;
      }
      pos = next;
    }
    if (flush_run (c, run, run_start, chunk_end, NULL, off) == -1)
      return -1;
    off = chunk_end;
  }
  return 0;
}

/* Wait until every item before SEQ has been written (note 2).  Returns
 * false when the copy stopped instead. */
static bool
wait_turn (struct copy *c, uint64_t seq)
{
  bool ok;

  pthread_mutex_lock (&c->order_lock);
  while (c->next_write != seq && !stopped (c))
    pthread_cond_wait (&c->order_cond, &c->order_lock);
  ok = !stopped (c);
  pthread_mutex_unlock (&c->order_lock);
  return ok;
}

/* Let the item after the one just written go. */
static void
end_turn (struct copy *c)
{
  pthread_mutex_lock (&c->order_lock);
  c->next_write++;
  pthread_cond_broadcast (&c->order_cond);
  pthread_mutex_unlock (&c->order_lock);
}

/* Compress the data item IT unit by unit, then write it in its turn. */
static int
write_compressed_item (struct copy *c, struct worker *w,
                       const struct item *it)
{
  enum action run = ACT_NONE;
  uint64_t run_start = it->start, off;
  const unsigned char *bp = NULL;
  size_t u;

  if (read_source (c, it, w->buf) == -1)
    return -1;
  if (c->backing) {
    bool all_zero;
    if (read_backing (c, w, it->start, it->end, w->bbuf, &all_zero) == -1)
      return -1;
    bp = w->bbuf;
  }

  /* Compress on this thread, in parallel with the other workers. */
  for (off = it->start, u = 0; off < it->end; off += c->unit, u++) {
    size_t i = off - it->start, n = MIN (c->unit, it->end - off);

    w->acts[u] = classify (c, w->buf + i, bp ? bp + i : NULL, n);
    w->clen[u] = 0;
    if (w->acts[u] == ACT_DATA) {
      ssize_t r = ferry_image_compress (c->dst, w->buf + i, n,
                                        w->cbuf + u * c->bound);
      if (r == -1)
        return -1;
      w->clen[u] = r;
    }
  }

  if (!wait_turn (c, it->seq))
    return 0;
  for (off = it->start, u = 0; off < it->end; off += c->unit, u++) {
    size_t i = off - it->start, n = MIN (c->unit, it->end - off);
    int r;

    if (w->acts[u] != ACT_DATA) {
      /* Skips and zeroes merge into runs. */
      if (w->acts[u] != run) {
        if (flush_run (c, run, run_start, off, w->buf, it->start) == -1)
          goto err;
        run = w->acts[u];
        run_start = off;
      }
      continue;
    }
    if (flush_run (c, run, run_start, off, w->buf, it->start) == -1)
      goto err;
    run = ACT_NONE;
    if (w->clen[u] == 0)      /* compressing does not pay */
      r = ferry_image_pwrite (c->dst, w->buf + i, n, off);
    else
      r = ferry_image_write_compressed (c->dst, off, w->cbuf + u * c->bound,
                                        w->clen[u], n);
    if (r == -1)
      goto err;
  }
  if (flush_run (c, run, run_start, it->end, w->buf, it->start) == -1)
    goto err;
  end_turn (c);
  return 0;

 err:
  /* The caller records the error, which wakes everyone; no end_turn, so
   * nothing is written after a failed write. */
  return -1;
}

/* Handle one work item. */
static int
process_item (struct copy *c, struct worker *w, const struct item *it)
{
  if (!c->compress) {
    if (it->kind == ITEM_ZERO)
      return write_zero_item (c, w, it);
    return write_data_item (c, w, it);
  }
  if (it->kind == ITEM_DATA)
    return write_compressed_item (c, w, it);
  /* Zero items keep the file order too. */
  if (!wait_turn (c, it->seq))
    return 0;
  if (write_zero_item (c, w, it) == -1)
    return -1;
  end_turn (c);
  return 0;
}

/* The body of each worker thread: take items until none is left. */
static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  struct copy *c = w->c;

  while (!stopped (c)) {
    int r;

    pthread_mutex_lock (&c->lock);
    /* Past a checkpoint's worth of the source, the dispatcher holds
     * itself and calls the calling thread (note 8); a worker that waited
     * looks again, since others may have taken items since. */
    while (c->checkpointing && !stopped (c)) {
      if (!c->paused && c->pos - c->ckpt_pos >= c->ckpt_bytes &&
          c->pos < c->size) {
        c->paused = c->ckpt_due = true;
        pthread_cond_signal (&c->finished_cond);
      }
      if (!c->paused)
        break;
      pthread_cond_wait (&c->resume_cond, &c->lock);
    }
    r = stopped (c) ? 0 : next_item (c, &w->item);
    if (r == 1 && c->checkpointing) {
      w->busy = true;
      c->busy++;
    }
    pthread_mutex_unlock (&c->lock);
    if (r == -1) {
      record_thread_error (c);
      break;
    }
    if (r == 0)
      break;
    /* A write the stop cut short leaves BUSY set (note 9). */
    if (process_item (c, w, &w->item) == -1) {
      record_thread_error (c);
      break;
    }
    if (c->checkpointing && !stopped (c)) {
      pthread_mutex_lock (&c->lock);
      w->busy = false;
      if (--c->busy == 0 && c->paused)
        pthread_cond_signal (&c->idle_cond);
      pthread_mutex_unlock (&c->lock);
    }
    if (w->item.data_bytes)
      __atomic_fetch_add (&c->done, w->item.data_bytes, __ATOMIC_RELAXED);
  }

  pthread_mutex_lock (&c->lock);
  c->running--;
  pthread_cond_signal (&c->finished_cond);
  pthread_mutex_unlock (&c->lock);
  return NULL;
}

/* Progress reporting state, on the calling thread only. */
struct progress {
  double start;
  double last_report;
  uint64_t total;
  double sample_time[RATE_SAMPLES];
  uint64_t sample_done[RATE_SAMPLES];
  unsigned nr_samples, next_sample;
};

/* Call the progress callback with DONE bytes handled. */
static void
report_progress (struct copy *c, struct progress *pr, uint64_t done,
                 bool finished)
{
  struct ferry_progress p = { 0 };
  double now = now_seconds ();
  unsigned oldest;

  /* A ring of recent (time, done) samples gives the recent speed. */
  pr->sample_time[pr->next_sample] = now;
  pr->sample_done[pr->next_sample] = done;
  pr->next_sample = (pr->next_sample + 1) % RATE_SAMPLES;
  if (pr->nr_samples < RATE_SAMPLES)
    pr->nr_samples++;
  oldest = pr->nr_samples < RATE_SAMPLES ? 0 : pr->next_sample;

  p.done = done;
  p.total = MAX (pr->total, done);
  p.virtual_size = c->size;
  p.elapsed = now - pr->start;
  if (pr->nr_samples > 1 && now > pr->sample_time[oldest])
    p.bytes_per_sec = (done - pr->sample_done[oldest]) /
      (now - pr->sample_time[oldest]);
  else if (p.elapsed > 0)
    p.bytes_per_sec = done / p.elapsed;
  if (finished)
    p.eta = 0;
  else if (p.bytes_per_sec > 0)
    p.eta = (p.total - done) / p.bytes_per_sec;
  else
    p.eta = -1;
  p.finished = finished;
  pr->last_report = now;
  c->opts->progress (&p, c->opts->progress_opaque);
}


static void checkpoint_if_due (struct copy *c);

/* Sum the source's data extents: the total the progress counts up to,
 * and in *BELOW those under C->resume_from, which a resumed copy counts
 * as done (note 10).  Runs on the calling thread while the workers copy. */
static int
count_data_bytes (struct copy *c, uint64_t *total, uint64_t *below)
{
  struct ferry_extent_list list = { 0 };
  uint64_t pos = 0;

  *total = 0;
  *below = 0;
  while (pos < c->size && !stopped (c) && !copy_cancel_requested (c->opts)) {
    size_t i;

    list.len = 0;
    if (source_extents (c, pos, MIN (c->size - pos, EXTENT_QUERY),
                        &list) == -1) {
      ferry_extent_list_free (&list);
      return -1;
    }
    for (i = 0; i < list.len; i++) {
      const struct ferry_extent *x = &list.ptr[i];
      uint64_t s = MAX (x->offset, pos), e = MIN (x->offset + x->length,
                                                  c->size);
      if (e <= s)
        continue;
      if (!extent_is_zero (x->flags) && !extent_is_skip (x->flags)) {
        *total += e - s;
        if (s < c->resume_from)
          *below += MIN (e, c->resume_from) - s;
      }
      pos = e;
    }
    /* A long count must not hold back a checkpoint the workers wait for. */
    checkpoint_if_due (c);
  }
  ferry_extent_list_free (&list);
  return 0;
}


/* Flush the target and tell the caller it holds the source over
 * [0, DURABLE) for good.  On the calling thread, with no worker writing. */
static int
make_checkpoint (struct copy *c, uint64_t durable)
{
  if (!c->opts->no_flush && ferry_image_flush (c->dst) == -1)
    return -1;
  return c->opts->checkpoint (durable, c->opts->checkpoint_opaque);
}

/* Hold the dispatcher, wait until every item handed out is written, and
 * make a checkpoint at C->pos (note 8).  A cancel or an error during the
 * wait stops the copy instead; the caller's loop then sees the workers
 * leave. */
static void
periodic_checkpoint (struct copy *c)
{
  uint64_t durable = 0, last;
  bool idle;

  pthread_mutex_lock (&c->lock);
  last = c->ckpt_pos;
  c->paused = true;
  c->ckpt_due = false;
  while (c->busy > 0 && !stopped (c)) {
    struct timespec ts;

    copy_deadline (&ts, POLL_INTERVAL);
    pthread_cond_timedwait (&c->idle_cond, &c->lock, &ts);
    if (c->busy > 0 && copy_cancel_requested (c->opts)) {
      pthread_mutex_unlock (&c->lock);
      record_error (c, EINTR, "interrupted");
      pthread_mutex_lock (&c->lock);
    }
  }
  idle = c->busy == 0 && !stopped (c);
  durable = c->pos;
  pthread_mutex_unlock (&c->lock);

  if (idle && durable > last && make_checkpoint (c, durable) == -1)
    record_thread_error (c);
  c->ckpt_time = now_seconds ();

  pthread_mutex_lock (&c->lock);
  c->ckpt_pos = durable;
  c->paused = false;
  pthread_cond_broadcast (&c->resume_cond);
  pthread_mutex_unlock (&c->lock);
}

/* Make a checkpoint when one is due: the dispatcher asked for it
 * (checkpoint_bytes), or checkpoint_seconds have passed since the last
 * and the copy moved on.  On the calling thread. */
static void
checkpoint_if_due (struct copy *c)
{
  uint64_t pos, last;
  bool due;

  if (!c->checkpointing || stopped (c))
    return;
  pthread_mutex_lock (&c->lock);
  pos = c->pos;
  last = c->ckpt_pos;
  due = c->ckpt_due;
  pthread_mutex_unlock (&c->lock);
  if (due || (pos > last && now_seconds () - c->ckpt_time >= c->ckpt_seconds))
    periodic_checkpoint (c);
}

/* Watch the workers until they have all left: poll the cancel flag,
 * report progress and make the checkpoints. */
static void
supervise (struct copy *c, struct progress *pr)
{
  for (;;) {
    struct timespec ts;
    unsigned running;
    double now;

    copy_deadline (&ts, POLL_INTERVAL);
    pthread_mutex_lock (&c->lock);
    if (c->running > 0)
      pthread_cond_timedwait (&c->finished_cond, &c->lock, &ts);
    running = c->running;
    pthread_mutex_unlock (&c->lock);
    if (running == 0)
      return;

    if (copy_cancel_requested (c->opts))
      record_error (c, EINTR, "interrupted");
    checkpoint_if_due (c);
    now = now_seconds ();
    if (c->opts->progress && !stopped (c) &&
        now - pr->last_report >= PROGRESS_INTERVAL)
      report_progress (c, pr, __atomic_load_n (&c->done, __ATOMIC_RELAXED),
                       false);
  }
}

/* Free the buffers of W. */
static void
free_worker (struct worker *w)
{
  free (w->buf);
  free (w->bbuf);
  free (w->cbuf);
  free (w->clen);
  free (w->acts);
  ferry_extent_list_free (&w->bext);
  ferry_extent_list_free (&w->item.ext);
}


/* Allocate W's buffers for C. */
static int
init_worker (struct copy *c, struct worker *w)
{
  w->c = c;
  w->buf = copy_alloc_aligned (c->request);
  if (w->buf == NULL)
    goto nomem;
  if (c->backing && (w->bbuf = copy_alloc_aligned (c->request)) == NULL)
    goto nomem;
  if (c->compress) {
    size_t units = c->request / c->unit;
    w->cbuf = copy_alloc_aligned (units * c->bound);
    w->clen = calloc (units, sizeof *w->clen);
    w->acts = calloc (units, 1);
    if (w->cbuf == NULL || w->clen == NULL || w->acts == NULL)
      goto nomem;
  }
  return 0;

 nomem:
  return ferry_error (ENOMEM, "out of memory for the copy buffers "
                      "(%zu bytes per worker)", c->request);
}

/* Bytes of buffers one worker of C holds. */
static uint64_t
worker_bytes (const struct copy *c, size_t request)
{
  uint64_t n = request;

  if (c->backing)
    n += request;
  if (c->compress)
    n += request / c->unit * (c->bound + sizeof (size_t) + 1);
  return n;
}

/* Work out the geometry of the copy: alignment, block and request sizes,
 * and the number of workers.  Fails on targets that cannot take it. */
static int
plan_copy (struct copy *c, const struct ferry_copy_options *opts,
           unsigned *threads)
{
  struct ferry_image_info info;
  uint64_t dst_size = ferry_image_size (c->dst);
  uint64_t request, cluster;
  unsigned n;

  if (dst_size < c->size)
    return ferry_error (EINVAL, "%s: the target holds %" PRIu64 " bytes, "
                        "the source %s has %" PRIu64,
                        ferry_image_path (c->dst), dst_size,
                        ferry_image_path (c->src), c->size);
  if (ferry_image_describe (c->dst, &info) == -1)
    return -1;
  cluster = info.cluster_size;

  c->no_trim = ferry_image_backing (c->dst) != NULL;
  c->backing = ferry_image_reads_as_backing (c->dst) ?
    ferry_image_backing (c->dst) : NULL;
  c->skip_zero = ferry_image_is_zero_initialized (c->dst) && !c->no_trim &&
    !opts->overwrite;
  /* A streamOptimized VMDK takes nothing but compressed grains. */
  c->compress = opts->compress || ferry_image_compress_required (c->dst);
  if (c->compress) {
    c->unit = ferry_image_compress_unit (c->dst);
    if (c->unit == 0)
      return ferry_error (ENOTSUP, "%s: %s images cannot hold compressed "
                          "data", ferry_image_path (c->dst),
                          ferry_image_format (c->dst));
    c->bound = ferry_image_compress_bound (c->dst);
    if (c->bound == 0)
      return ferry_error (ENOTSUP, "%s: the %s driver gives no compress "
                          "bound", ferry_image_path (c->dst),
                          ferry_image_format (c->dst));
  }

  /* Decisions are made per target cluster (at least 4 KiB): a cluster
   * is either written or not.  Compressed targets decide per unit. */
  c->block = c->compress ? c->unit
    : cluster ? lcm (cluster, ZERO_BLOCK) : ZERO_BLOCK;
  c->align = lcm (c->block, ZERO_BLOCK);
  if (cluster)
    c->align = lcm (c->align, cluster);
  if (c->align > BUFFER_BUDGET / 4)
    return ferry_error (EINVAL, "%s: clusters of %" PRIu64 " bytes are too "
                        "large to copy", ferry_image_path (c->dst),
                        c->align);

  request = opts->request_size ? opts->request_size
    : c->compress ? DEFAULT_COMPRESS_REQUEST_SIZE : DEFAULT_REQUEST_SIZE;
  request = MIN (request, BUFFER_BUDGET / 4);
  request = MAX (align_down (request, c->align), c->align);

  n = opts->threads ? opts->threads : online_cpus ();
  n = MIN (n, MAX_THREADS);
  /* A source read once, in order (a gzip stream), gets one worker: it
   * takes the items, and so reads, in order. */
  if (ferry_image_is_sequential (c->src))
    n = 1;
  /* No more workers than items (a tiny image needs one). */
  if (c->size / request + 1 < n)
    n = c->size / request + 1;
  /* Keep the buffers within budget: smaller requests first, then fewer
   * workers. */
  while (request > c->align && n * worker_bytes (c, request) > BUFFER_BUDGET)
    request = MAX (align_down (request / 2, c->align), c->align);
  while (n > 1 && n * worker_bytes (c, request) > BUFFER_BUDGET)
    n--;
  c->request = request;
  *threads = n;
  /* Note 10. */
  c->resume_from = MIN (align_down (opts->resume_from, c->align), c->size);
  c->pos = c->ckpt_pos = c->resume_from;
  c->ckpt_bytes = opts->checkpoint_bytes ? opts->checkpoint_bytes
    : DEFAULT_CHECKPOINT_BYTES;
  c->ckpt_seconds = opts->checkpoint_seconds > 0 ? opts->checkpoint_seconds
    : DEFAULT_CHECKPOINT_SECONDS;
  return 0;
}


/* After a cancel stopped the copy and the workers are joined: flush the
 * target and make the last checkpoint below every item that did not
 * complete (note 9). */
static void
stop_checkpoint (struct copy *c, struct worker *workers, unsigned threads)
{
  uint64_t durable = c->pos;
  unsigned i;

  for (i = 0; i < threads; i++)
    if (workers[i].started && workers[i].busy)
      durable = MIN (durable, workers[i].item.start);
  /* The copy's own error stands whatever the checkpoint says. */
  if (make_checkpoint (c, durable) == -1)
    ferry_debug ("no checkpoint at the stop: %s", ferry_get_error ());
}

/* Plan the copy, run the workers, watch them, and flush the target. */
int
ferry_copy (struct ferry_image *src, struct ferry_image *dst,
            const struct ferry_copy_options *opts)
{
  static const struct ferry_copy_options default_opts;
  struct copy c = { 0 };
  struct progress pr = { 0 };
  struct worker *workers = NULL;
  pthread_condattr_t attr;
  unsigned threads = 0, i;
  uint64_t total = 0, below = 0;
  sigset_t oldmask;
  int ret = -1;

  if (opts == NULL)
    opts = &default_opts;
  if (copy_cancel_requested (opts))
    return ferry_error (EINTR, "interrupted");

  c.src = src;
  c.dst = dst;
  c.opts = opts;
  ferry_image_set_early_writeback (dst, !opts->no_flush);
  c.size = ferry_image_size (src);
  if (plan_copy (&c, opts, &threads) == -1)
    return -1;

  pthread_mutex_init (&c.lock, NULL);
  pthread_mutex_init (&c.order_lock, NULL);
  pthread_cond_init (&c.order_cond, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&c.finished_cond, &attr);
  pthread_cond_init (&c.idle_cond, &attr);
  pthread_condattr_destroy (&attr);
  pthread_cond_init (&c.resume_cond, NULL);
  c.checkpointing = opts->checkpoint != NULL;

  workers = calloc (threads, sizeof *workers);
  if (workers == NULL) {
    ferry_error (ENOMEM, "out of memory");
    goto out;
  }
  for (i = 0; i < threads; i++)
    if (init_worker (&c, &workers[i]) == -1)
      goto out;

  pr.start = pr.last_report = c.ckpt_time = now_seconds ();
  copy_block_user_signals (&oldmask);
  for (i = 0; i < threads; i++) {
    int r;

    pthread_mutex_lock (&c.lock);
    c.running++;
    pthread_mutex_unlock (&c.lock);
    r = pthread_create (&workers[i].thread, NULL, worker_main, &workers[i]);
    if (r != 0) {
      pthread_mutex_lock (&c.lock);
      c.running--;
      pthread_mutex_unlock (&c.lock);
      /* Fewer workers will do, but not none. */
      if (i == 0) {
        pthread_sigmask (SIG_SETMASK, &oldmask, NULL);
        ferry_error_errno (r, "starting the copy threads");
        goto out;
      }
      break;
    }
    workers[i].started = true;
  }
  pthread_sigmask (SIG_SETMASK, &oldmask, NULL);

  if (opts->progress) {
    if (count_data_bytes (&c, &total, &below) == -1)
      record_thread_error (&c);
    pr.total = total;
    __atomic_fetch_add (&c.done, below, __ATOMIC_RELAXED);
  }
  supervise (&c, &pr);

  for (i = 0; i < threads; i++)
    if (workers[i].started)
      pthread_join (workers[i].thread, NULL);

  if (!c.error.failed && copy_cancel_requested (opts))
    record_error (&c, EINTR, "interrupted");
  if (c.error.failed && c.error.err == EINTR && c.checkpointing &&
      copy_cancel_requested (opts))
    stop_checkpoint (&c, workers, threads);
  if (c.error.failed) {
    ferry_error (c.error.err, "%s", c.error.msg);
    goto out;
  }
  /* A source read in order is known whole only at the end of its stream
   * (a gzip trailer): read it there before calling the copy done. */
  if (ferry_image_read_to_end (src) == -1)
    goto out;
  if (!opts->no_flush && ferry_image_flush (dst) == -1)
    goto out;
  if (opts->progress)
    report_progress (&c, &pr, c.done, true);
  ret = 0;

 out:
  if (workers) {
    for (i = 0; i < threads; i++)
      free_worker (&workers[i]);
    free (workers);
  }
  ferry_extent_list_free (&c.ext);
  pthread_cond_destroy (&c.finished_cond);
  pthread_cond_destroy (&c.idle_cond);
  pthread_cond_destroy (&c.resume_cond);
  pthread_cond_destroy (&c.order_cond);
  pthread_mutex_destroy (&c.order_lock);
  pthread_mutex_destroy (&c.lock);
  return ret;
}
