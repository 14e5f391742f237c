/* The hash delta: warm rounds for sources without change tracking.
 *
 * A round (ferry_hash_round) cuts the source into fixed chunks, hashes
 * each with XXH3-128 (a chunk that its extents say reads as zeroes is
 * not read at all), and compares the hash with what the table says the
 * target holds from the round before, so the target is not read again;
 * only the chunks that differ are written.  The table lives in a file
 * between rounds and between runs (struct ferry_hash_table).
 *
 * The table file: a header of HEADER_SIZE bytes (magic, version, image
 * size, chunk size, entry count, an XXH3-64 checksum of the rest of the
 * header), then one ENTRY_SIZE-byte entry per chunk: state (unknown,
 * blank, hash), the 16-byte hash, and an XXH3-64 checksum of the entry
 * seeded with its index (so an entry moved elsewhere does not pass).
 * Entries are 32 bytes, so none straddles a sector or a page: a write
 * that is torn by a crash tears between entries.
 *
 * NOTES ON THE DESIGN
 *
 * 1. The one invariant: the table file never says "blank" or "hash H"
 *    for a chunk that the target might not hold (durably) as zeroes or
 *    as bytes that hash to H.  "unknown" is always true.  Everything
 *    below keeps it whatever the moment of a kill or a power loss.
 *
 * 2. A round works in windows of WINDOW_BYTES of the source, one after
 *    the other.  Within a window: (a) the workers hash the window's
 *    chunks in parallel, each chunk read into its place of the window
 *    buffer, and compare each hash with its entry; an "unknown" entry
 *    makes the worker read and hash the target's chunk too; (b) when
 *    some chunk must be written, the calling thread marks those entries
 *    unknown in memory, writes them to the table file and fdatasyncs it;
 *    (c) the workers write those chunks to the target, from the very
 *    bytes that were hashed in (a), so what is recorded is what was
 *    written even while the source changes under the round; (d) the
 *    calling thread flushes the target and only then writes the new
 *    entries (the written chunks' and the unknown ones found equal).
 *
 * 3. So before any byte of a chunk's write reaches the target, its entry
 *    is durably "unknown" (2b before 2c), and a hash is recorded only
 *    for a target that holds it durably (the flush of 2d).  A kill at
 *    any point leaves entries that are true: the old hash for chunks not
 *    yet invalidated (their target bytes are untouched), "unknown" for
 *    those being written, the new hash for those recorded after a flush.
 *    The case "X held A, the round wrote B and was killed before it
 *    recorded, the source went back to A" is caught: X is "unknown", so
 *    the next round reads the target's X (B, or part of it), finds it
 *    differs from A, and writes A.
 *
 * 4. The new entries of 2d are written without a sync: losing them to a
 *    power cut leaves "unknown" (true, note 1), costing a target read in
 *    the next round.  The round fdatasyncs the table once at its end, so
 *    a finished round's hashes last.  A window in which nothing differs
 *    and no entry was unknown writes nothing and syncs nothing.
 *
 * 5. A table file entry whose checksum is wrong (a damaged sector) is
 *    read as "unknown", which is always true (note 1); a header that is
 *    damaged, for another image size or chunk size, or a file whose
 *    length is not the header's plus its entries (cut short, or longer)
 *    is refused with ESTALE, and the caller starts with a new, unknown
 *    table.  The table file is locked (an OFD write lock) while open, so
 *    two rounds never share one.
 *
 * 6. Chunks are whole target clusters (the chunk is a multiple of the
 *    target's cluster, refused otherwise), so two workers writing two
 *    chunks never write into the same cluster (copy.c, note 1).  Within a
 *    chunk, blocks of max(cluster, 4 KiB) that are zeroes are written as
 *    zero requests, the rest as data.
 *
 * 7. The workers block the signals a user sends; the calling thread polls
 *    the cancel flag and the stop request while they work, reports
 *    progress, and raises the round's stop, which the workers look at
 *    before each chunk.  The first error wins (copy.c, note 3).  A stop
 *    or an error leaves the table as note 3 says: nothing to undo.
 *
 * 8. Memory is bounded: the window buffer (WINDOW_BYTES or one chunk),
 *    one target buffer per worker, and 17 bytes per chunk for the table
 *    (1 MiB chunks: 68 KiB for a 4 GiB disk).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include <ferry/copy.h>

#include "internal.h"
#include "../common/error.h"
#include "../common/util.h"

#define TABLE_MAGIC "FERRYHT\n"
#define TABLE_VERSION 1
#define HEADER_SIZE 64u
#define ENTRY_SIZE 32u

#define DEFAULT_CHUNK (1u << 20)
#define MIN_CHUNK (64u << 10)
#define MAX_CHUNK (64u << 20)
/* At most this many chunks (17 bytes of memory each). */
#define MAX_ENTRIES (1ull << 26)

/* The source bytes one window covers (note 2), at least one chunk. */
#define WINDOW_BYTES (64u << 20)
#define MAX_THREADS 64u
#define ZERO_BLOCK 4096u

/* How often the calling thread looks at the cancel flag, and reports
 * progress. */
#define POLL_INTERVAL 0.05
#define PROGRESS_INTERVAL 0.2

/* The state of one entry, as kept in the file. */
enum entry_state {
  STATE_UNKNOWN = 0,    /* what the target holds there is not known */
  STATE_BLANK = 1,      /* the target reads as zeroes */
  STATE_HASH = 2,       /* the target holds bytes of this hash */
};

struct ferry_hash_table {
  char *path;
  int fd;
  uint64_t size;              /* image size */
  uint32_t chunk;
  uint64_t count;             /* entries */
  uint8_t *state;             /* enum entry_state, COUNT of them */
  XXH128_hash_t *hash;        /* meaningful where STATE_HASH */
};

/* ----- the table file ----- */

/* Encode entry I of T into the ENTRY_SIZE bytes at P. */
static void
encode_entry (const struct ferry_hash_table *t, uint64_t i, unsigned char *p)
{
  memset (p, 0, ENTRY_SIZE);
  p[0] = t->state[i];
  if (t->state[i] == STATE_HASH) {
    put_le64 (p + 8, t->hash[i].low64);
    put_le64 (p + 16, t->hash[i].high64);
  }
  put_le64 (p + 24, XXH3_64bits_withSeed (p, 24, i));
}

/* Decode the entry I at P into T; a damaged one becomes unknown (note 5).
 * True when it was whole. */
static bool
decode_entry (struct ferry_hash_table *t, uint64_t i, const unsigned char *p)
{
  if (get_le64 (p + 24) != XXH3_64bits_withSeed (p, 24, i) ||
      p[0] > STATE_HASH) {
    t->state[i] = STATE_UNKNOWN;
    return false;
  }
  t->state[i] = p[0];
  t->hash[i].low64 = get_le64 (p + 8);
  t->hash[i].high64 = get_le64 (p + 16);
  return true;
}

/* Write entries [FIRST, END) of T from memory to the file, and with SYNC
 * fdatasync it. */
static int
write_entries (struct ferry_hash_table *t, uint64_t first, uint64_t end,
               bool sync)
{
  unsigned char buf[256 * ENTRY_SIZE];

  while (first < end) {
    uint64_t n = MIN (end - first, sizeof buf / ENTRY_SIZE), i;

    for (i = 0; i < n; i++)
      encode_entry (t, first + i, buf + i * ENTRY_SIZE);
    if (full_pwrite (t->fd, buf, n * ENTRY_SIZE,
                     HEADER_SIZE + first * ENTRY_SIZE) == -1)
      return ferry_error_errno (errno, "%s: writing entries %" PRIu64
                                " to %" PRIu64 " of the hash table", t->path,
                                first, first + n - 1);
    first += n;
  }
  if (sync && datasync_fd (t->fd) == -1)
    return ferry_error_errno (errno, "%s: syncing the hash table", t->path);
  return 0;
}

/* Encode the header of T into the HEADER_SIZE bytes at P. */
static void
encode_header (const struct ferry_hash_table *t, unsigned char *p)
{
  memset (p, 0, HEADER_SIZE);
  memcpy (p, TABLE_MAGIC, 8);
  put_le32 (p + 8, TABLE_VERSION);
  put_le32 (p + 12, t->chunk);
  put_le64 (p + 16, t->size);
  put_le64 (p + 24, t->count);
  put_le64 (p + 56, XXH3_64bits (p, 56));
}

/* Write a new table file: header and every entry, synced. */
static int
create_table (struct ferry_hash_table *t)
{
  unsigned char h[HEADER_SIZE];

  encode_header (t, h);
  if (truncate_fd (t->fd, 0) == -1 ||
      full_pwrite (t->fd, h, sizeof h, 0) == -1)
    return ferry_error_errno (errno, "%s: writing the hash table's header",
                              t->path);
  return write_entries (t, 0, t->count, true);
}

/* Read and check the table file of T (note 5). */
static int
load_table (struct ferry_hash_table *t, uint64_t file_size)
{
  unsigned char h[HEADER_SIZE], buf[256 * ENTRY_SIZE];
  uint64_t size, count, i, damaged = 0;
  uint32_t version, chunk;

  if (file_size < HEADER_SIZE)
    return ferry_error (ESTALE, "%s: the hash table is cut short (%" PRIu64
                        " bytes, less than its header)", t->path, file_size);
  if (full_pread (t->fd, h, sizeof h, 0) == -1)
    return ferry_error_errno (errno, "%s: reading the hash table's header",
                              t->path);
  if (memcmp (h, TABLE_MAGIC, 8) != 0)
    return ferry_error (ESTALE, "%s: not a ferry hash table (bad magic)",
                        t->path);
  version = get_le32 (h + 8);
  if (version != TABLE_VERSION)
    return ferry_error (ESTALE, "%s: hash table version %" PRIu32 ", this "
                        "ferry reads version %d", t->path, version,
                        TABLE_VERSION);
  if (get_le64 (h + 56) != XXH3_64bits (h, 56))
    return ferry_error (ESTALE, "%s: the hash table's header is damaged "
                        "(bad checksum)", t->path);
  chunk = get_le32 (h + 12);
  size = get_le64 (h + 16);
  count = get_le64 (h + 24);
  if (size != t->size || chunk != t->chunk)
    return ferry_error (ESTALE, "%s: the hash table is for images of %"
                        PRIu64 " bytes in chunks of %" PRIu32 ", not %"
                        PRIu64 " bytes in chunks of %" PRIu32, t->path,
                        size, chunk, t->size, t->chunk);
  if (count != t->count)
    return ferry_error (ESTALE, "%s: the hash table's header counts %"
                        PRIu64 " entries, its size and chunk make %" PRIu64,
                        t->path, count, t->count);
  if (file_size != HEADER_SIZE + count * ENTRY_SIZE)
    return ferry_error (ESTALE, "%s: the hash table file holds %" PRIu64
                        " bytes, its %" PRIu64 " entries need %" PRIu64
                        " (cut short or damaged)", t->path, file_size, count,
                        HEADER_SIZE + count * ENTRY_SIZE);

  for (i = 0; i < count; ) {
    uint64_t n = MIN (count - i, sizeof buf / ENTRY_SIZE), j;

    if (full_pread (t->fd, buf, n * ENTRY_SIZE,
                    HEADER_SIZE + i * ENTRY_SIZE) == -1)
      return ferry_error_errno (errno, "%s: reading the hash table", t->path);
    for (j = 0; j < n; j++)
      if (!decode_entry (t, i + j, buf + j * ENTRY_SIZE))
        damaged++;
    i += n;
  }
  if (damaged)
    ferry_debug ("%s: %" PRIu64 " damaged entries of the hash table taken as "
                 "unknown", t->path, damaged);
  return 0;
}

/* fsync the folder that holds PATH, so that a new file's name lasts: a
 * "blank" table lost to a power cut and made again later would claim
 * zeroes where the target may have been written meanwhile. */
static int
sync_folder_of (const char *path)
{
  char *dir = strdup (path), *slash;
  int r;

  if (dir == NULL)
    return ferry_error (ENOMEM, "out of memory");
  slash = strrchr (dir, '/');
  if (slash == NULL)
    strcpy (dir, ".");
  else if (slash == dir)
    slash[1] = '\0';
  else
    *slash = '\0';
  r = sync_path (dir);
  if (r == -1)
    ferry_error_errno (errno, "%s: cannot sync the folder of the new hash "
                       "table", path);
  free (dir);
  return r;
}

/* Open (or create) the table file PATH. */
struct ferry_hash_table *
ferry_hash_table_open (const char *path, uint64_t size, uint32_t chunk,
                       bool fresh)
{
  struct ferry_hash_table *t;
  struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  struct stat st;
  bool created = false;
  uint64_t i;

  if (chunk == 0)
    chunk = DEFAULT_CHUNK;
  if (!is_power_of_2 (chunk) || chunk < MIN_CHUNK || chunk > MAX_CHUNK) {
    ferry_error (EINVAL, "%s: a hash table's chunk must be a power of two "
                 "from %u to %u bytes, not %" PRIu32, path, MIN_CHUNK,
                 MAX_CHUNK, chunk);
    return NULL;
  }
  if (DIV_ROUND_UP (size, chunk) > MAX_ENTRIES) {
    ferry_error (EINVAL, "%s: %" PRIu64 " bytes in chunks of %" PRIu32
                 " make more than %llu hash table entries; take larger "
                 "chunks", path, size, chunk, MAX_ENTRIES);
    return NULL;
  }

  t = calloc (1, sizeof *t);
  if (t == NULL)
    goto nomem;
  t->fd = -1;
  t->size = size;
  t->chunk = chunk;
  t->count = DIV_ROUND_UP (size, chunk);
  t->path = strdup (path);
  t->state = calloc (t->count + 1, 1);
  t->hash = calloc (t->count + 1, sizeof *t->hash);
  if (t->path == NULL || t->state == NULL || t->hash == NULL)
    goto nomem;

  t->fd = open (path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (t->fd == -1 && errno == ENOENT) {
    t->fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0644);
    created = true;
  }
  if (t->fd == -1) {
    ferry_error_errno (errno, "%s: cannot open the hash table", path);
    goto err;
  }
  if (fstat (t->fd, &st) == -1) {
    ferry_error_errno (errno, "%s: cannot look at the hash table", path);
    goto err;
  }
  if (!S_ISREG (st.st_mode)) {
    ferry_error (EINVAL, "%s: a hash table must be a regular file", path);
    goto err;
  }
  if (fcntl (t->fd, F_OFD_SETLK, &lk) == -1) {
    ferry_error_errno (errno == EAGAIN || errno == EACCES ? EBUSY : errno,
                       "%s: the hash table is in use by another round",
                       path);
    goto err;
  }

  if (created) {
    memset (t->state, fresh ? STATE_BLANK : STATE_UNKNOWN, t->count);
    if (create_table (t) == -1 || sync_folder_of (path) == -1) {
      unlink (path);
      goto err;
    }
  }
  else if (load_table (t, st.st_size) == -1)
    goto err;
  for (i = 0; i < t->count; i++)
    if (t->state[i] != STATE_HASH)
      memset (&t->hash[i], 0, sizeof t->hash[i]);
  return t;

 nomem:
  ferry_error (ENOMEM, "%s: out of memory for the hash table", path);
 err:
  ferry_hash_table_close (t);
  return NULL;
}

/* Close T and free it (its file stays). */
void
ferry_hash_table_close (struct ferry_hash_table *t)
{
  if (t == NULL)
    return;
  if (t->fd >= 0)
    close (t->fd);
  free (t->path);
  free (t->state);
  free (t->hash);
  free (t);
}

/* Mark every chunk of T unknown, durably. */
int
ferry_hash_table_forget (struct ferry_hash_table *t)
{
  memset (t->state, STATE_UNKNOWN, t->count);
  memset (t->hash, 0, t->count * sizeof *t->hash);
  return write_entries (t, 0, t->count, true);
}

/* The chunk size of T. */
uint32_t
ferry_hash_table_chunk (const struct ferry_hash_table *t)
{
  return t->chunk;
}

/* ----- the round ----- */

/* What a window's chunk needs, decided by the hashing phase. */
enum chunk_action {
  ACT_SKIP = 0,         /* the target holds it, as the table says */
  ACT_RECORD,           /* unknown, but the target holds it: record it */
  ACT_WRITE,            /* write it, then record it */
};

enum phase { PHASE_HASH, PHASE_WRITE };

struct round;

/* One worker of a phase and the buffers it keeps for the round. */
struct worker {
  struct round *r;
  pthread_t thread;
  bool started;
  unsigned char *tbuf;                /* one chunk of the target */
  struct ferry_extent_list ext;       /* scratch */
};

/* The state the threads of one round share. */
struct round {
  struct ferry_image *src, *dst;
  struct ferry_hash_table *t;
  const struct ferry_copy_options *opts;
  uint64_t size;                      /* the source's */
  uint64_t chunk;
  uint64_t block;                     /* zero / data decision in a chunk */
  unsigned zero_flags;                /* for ferry_image_zero */
  unsigned threads;

  /* The window (note 2): chunks [first, end) of the table. */
  uint64_t first, end;
  uint64_t window_chunks;
  unsigned char *wbuf;                /* the source's bytes, chunk by chunk */
  uint8_t *action;                    /* enum chunk_action, per window chunk */
  uint8_t *new_state;                 /* what the source holds */
  XXH128_hash_t *new_hash;
  enum phase phase;
  uint64_t next;                      /* atomic: next window chunk to take */

  /* Running workers and the first error, under LOCK (note 7). */
  pthread_mutex_t lock;
  pthread_cond_t done_cond;
  unsigned running;
  struct first_error error;

  /* Atomic counters. */
  uint64_t chunks, done, bytes_read, bytes_target_read, bytes_written,
    chunks_written;

  double start, last_report;
};

/* True once the round must stop. */
static bool
stopped (struct round *r)
{
  return first_error_stopped (&r->error);
}

/* Keep ERRNUM and MSG as the round's error unless one came first, and
 * stop every thread. */
static void
record_error (struct round *r, int errnum, const char *msg)
{
  pthread_mutex_lock (&r->lock);
  first_error_keep (&r->error, errnum, msg);
  pthread_mutex_unlock (&r->lock);
}

/* The state and hash of the LEN bytes at BUF, READ of them read. */
static uint8_t
chunk_state (const unsigned char *buf, uint64_t len, uint64_t read,
             XXH128_hash_t *h)
{
  memset (h, 0, sizeof *h);
  if (read == 0 || is_zero (buf, len))
    return STATE_BLANK;
  *h = XXH3_128bits (buf, len);
  return STATE_HASH;
}

/* True when the state A with hash HA says the same contents as B, HB. */
static bool
same_contents (uint8_t a, XXH128_hash_t ha, uint8_t b, XXH128_hash_t hb)
{
  return a == b && (a != STATE_HASH || XXH128_isEqual (ha, hb));
}

/* Hash window chunk K of the source and decide what it needs (note 2a). */
static int
hash_chunk (struct worker *w, uint64_t k)
{
  struct round *r = w->r;
  uint64_t c = r->first + k, off = c * r->chunk;
  uint64_t len = MIN (r->chunk, r->size - off), read;
  unsigned char *buf = r->wbuf + k * r->chunk;
  XXH128_hash_t h;
  uint8_t s;

  if (copy_read_extents (r->src, &w->ext, off, off + len, buf, &read) == -1)
    return -1;
  __atomic_fetch_add (&r->bytes_read, read, __ATOMIC_RELAXED);
  s = chunk_state (buf, len, read, &h);
  r->new_state[k] = s;
  r->new_hash[k] = h;

  if (same_contents (r->t->state[c], r->t->hash[c], s, h))
    r->action[k] = ACT_SKIP;
  else if (r->t->state[c] == STATE_UNKNOWN) {
    XXH128_hash_t th;
    uint8_t ts;

    if (copy_read_extents (r->dst, &w->ext, off, off + len, w->tbuf,
                           &read) == -1)
      return -1;
    __atomic_fetch_add (&r->bytes_target_read, read, __ATOMIC_RELAXED);
    ts = chunk_state (w->tbuf, len, read, &th);
    r->action[k] = same_contents (ts, th, s, h) ? ACT_RECORD : ACT_WRITE;
  }
  else
    r->action[k] = ACT_WRITE;
  __atomic_fetch_add (&r->done, len, __ATOMIC_RELAXED);
  __atomic_fetch_add (&r->chunks, 1, __ATOMIC_RELAXED);
  return 0;
}

/* Write the run [START, END) of the target: zeroes or BUF's bytes. */
static int
write_run (struct round *r, bool zero, uint64_t start, uint64_t end,
           const unsigned char *buf, uint64_t buf_start)
{
  if (end == start)
    return 0;
  if (zero)
    return ferry_image_zero (r->dst, end - start, start, r->zero_flags);
  return ferry_image_pwrite (r->dst, buf + (start - buf_start), end - start,
                             start);
}

/* Write window chunk K to the target, zero blocks as zero requests
 * (notes 2c and 6). */
static int
write_chunk (struct worker *w, uint64_t k)
{
  struct round *r = w->r;
  uint64_t off = (r->first + k) * r->chunk;
  uint64_t len = MIN (r->chunk, r->size - off), pos, run_start = off;
  const unsigned char *buf = r->wbuf + k * r->chunk;
  bool run_zero = false;

  if (r->action[k] != ACT_WRITE)
    return 0;
  if (r->new_state[k] == STATE_BLANK) {
    if (ferry_image_zero (r->dst, len, off, r->zero_flags) == -1)
      return -1;
  }
  else {
    for (pos = off; pos < off + len; ) {
      uint64_t next = MIN (pos + r->block, off + len);
      bool z = is_zero (buf + (pos - off), next - pos);

      if (z != run_zero && pos > run_start) {
        if (write_run (r, run_zero, run_start, pos, buf, off) == -1)
          return -1;
        run_start = pos;
      }
      run_zero = z;
      pos = next;
    }
    if (write_run (r, run_zero, run_start, off + len, buf, off) == -1)
      return -1;
  }
  __atomic_fetch_add (&r->chunks_written, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add (&r->bytes_written, len, __ATOMIC_RELAXED);
  return 0;
}

/* A worker: take the window's chunks one by one and do the phase's work
 * on each, until none is left or the round stops. */
static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  struct round *r = w->r;
  uint64_t n = r->end - r->first;

  while (!stopped (r)) {
    uint64_t k = __atomic_fetch_add (&r->next, 1, __ATOMIC_RELAXED);
    int ret;

    if (k >= n)
      break;
    ret = r->phase == PHASE_HASH ? hash_chunk (w, k) : write_chunk (w, k);
    if (ret == -1) {
      record_error (r, ferry_get_errno (), ferry_get_error ());
      break;
    }
  }

  pthread_mutex_lock (&r->lock);
  r->running--;
  pthread_cond_broadcast (&r->done_cond);
  pthread_mutex_unlock (&r->lock);
  return NULL;
}

/* Report progress: DONE of the source's bytes, FINISHED at the end. */
static void
report_progress (struct round *r, bool finished)
{
  struct ferry_progress p = { 0 };
  double now = now_seconds ();

  p.done = __atomic_load_n (&r->done, __ATOMIC_RELAXED);
  p.total = r->size;
  p.virtual_size = r->size;
  p.elapsed = now - r->start;
  p.bytes_per_sec = p.elapsed > 0 ? p.done / p.elapsed : 0;
  p.eta = finished ? 0 : p.bytes_per_sec > 0
    ? (p.total - p.done) / p.bytes_per_sec : -1;
  p.finished = finished;
  r->last_report = now;
  r->opts->progress (&p, r->opts->progress_opaque);
}

/* Run PHASE over the window on the workers, watching the cancel flag and
 * reporting progress meanwhile (note 7).  0, or -1 once the round has
 * failed (its error in R). */
static int
run_phase (struct round *r, struct worker *workers, enum phase phase)
{
  sigset_t old;
  unsigned i;

  r->phase = phase;
  r->next = 0;
  copy_block_user_signals (&old);
  for (i = 0; i < r->threads; i++) {
    int e;

    pthread_mutex_lock (&r->lock);
    r->running++;
    pthread_mutex_unlock (&r->lock);
    e = pthread_create (&workers[i].thread, NULL, worker_main, &workers[i]);
    if (e != 0) {
      pthread_mutex_lock (&r->lock);
      r->running--;
      pthread_mutex_unlock (&r->lock);
      if (i == 0) {
        char msg[ERROR_MSG_MAX];

        ferry_error_errno (e, "starting the hash round's threads");
        snprintf (msg, sizeof msg, "%s", ferry_get_error ());
        record_error (r, e, msg);
      }
      break;
    }
    workers[i].started = true;
  }
  pthread_sigmask (SIG_SETMASK, &old, NULL);

  for (;;) {
    struct timespec ts;
    unsigned running;

    copy_deadline (&ts, POLL_INTERVAL);
    pthread_mutex_lock (&r->lock);
    if (r->running > 0)
      pthread_cond_timedwait (&r->done_cond, &r->lock, &ts);
    running = r->running;
    pthread_mutex_unlock (&r->lock);
    if (running == 0)
      break;
    if (copy_cancel_requested (r->opts))
      record_error (r, EINTR, "interrupted");
    if (r->opts->progress && !stopped (r) &&
        now_seconds () - r->last_report >= PROGRESS_INTERVAL)
      report_progress (r, false);
  }
  for (i = 0; i < r->threads; i++)
    if (workers[i].started) {
      pthread_join (workers[i].thread, NULL);
      workers[i].started = false;
    }
  if (!r->error.failed && copy_cancel_requested (r->opts))
    record_error (r, EINTR, "interrupted");
  return r->error.failed ? -1 : 0;
}

/* Keep this thread's last error as the round's. */
static int
fail_round (struct round *r)
{
  record_error (r, ferry_get_errno (), ferry_get_error ());
  return -1;
}

/* One window of the round: hash, invalidate, write, flush, record
 * (note 2).  *TABLE_WRITTEN is set when it wrote to the table file. */
static int
do_window (struct round *r, struct worker *workers, bool *table_written)
{
  struct ferry_hash_table *t = r->t;
  uint64_t n = r->end - r->first, k;
  uint64_t wlo = UINT64_MAX, whi = 0, rlo = UINT64_MAX, rhi = 0;

  if (run_phase (r, workers, PHASE_HASH) == -1)
    return -1;
  for (k = 0; k < n; k++) {
    if (r->action[k] == ACT_SKIP)
      continue;
    rlo = MIN (rlo, k);
    rhi = k + 1;
    if (r->action[k] == ACT_WRITE) {
      wlo = MIN (wlo, k);
      whi = k + 1;
    }
  }
  if (rlo == UINT64_MAX)
    return 0;                  /* nothing differs: no write, no sync */

  if (wlo != UINT64_MAX) {
    /* 2b: durably unknown before the target changes. */
    for (k = wlo; k < whi; k++)
      if (r->action[k] == ACT_WRITE)
        t->state[r->first + k] = STATE_UNKNOWN;
    *table_written = true;
    if (write_entries (t, r->first + wlo, r->first + whi, true) == -1)
      return fail_round (r);
    /* 2c. */
    if (run_phase (r, workers, PHASE_WRITE) == -1)
      return -1;
  }

  /* 2d: the target holds them for good, then the table says so. */
  if (ferry_image_flush (r->dst) == -1)
    return fail_round (r);
  for (k = rlo; k < rhi; k++)
    if (r->action[k] != ACT_SKIP) {
      t->state[r->first + k] = r->new_state[k];
      t->hash[r->first + k] = r->new_hash[k];
    }
  *table_written = true;
  if (write_entries (t, r->first + rlo, r->first + rhi, false) == -1)
    return fail_round (r);
  return 0;
}

/* Check that SRC, DST and T fit together, and work out the round's
 * geometry. */
static int
plan_round (struct round *r)
{
  struct ferry_image_info info;
  uint64_t dst_size = ferry_image_size (r->dst);
  unsigned n;

  if (r->t->size != r->size)
    return ferry_error (EINVAL, "%s: the hash table is for images of %"
                        PRIu64 " bytes, the source %s has %" PRIu64,
                        r->t->path, r->t->size, ferry_image_path (r->src),
                        r->size);
  if (dst_size < r->size)
    return ferry_error (EINVAL, "%s: the target holds %" PRIu64 " bytes, "
                        "the source %s has %" PRIu64,
                        ferry_image_path (r->dst), dst_size,
                        ferry_image_path (r->src), r->size);
  if (ferry_image_is_sequential (r->src))
    return ferry_error (ENOTSUP, "%s: a source read only in order cannot "
                        "be hashed in chunks", ferry_image_path (r->src));
  if (ferry_image_compress_required (r->dst))
    return ferry_error (ENOTSUP, "%s: a %s target is written in order and "
                        "cannot take a hash round",
                        ferry_image_path (r->dst),
                        ferry_image_format (r->dst));
  if (ferry_image_describe (r->dst, &info) == -1)
    return -1;
  if (info.cluster_size && r->chunk % info.cluster_size != 0)
    return ferry_error (EINVAL, "%s: clusters of %" PRIu32 " bytes do not "
                        "fit whole in the hash table's chunks of %" PRIu64
                        " (%s)", ferry_image_path (r->dst),
                        info.cluster_size, r->chunk, r->t->path);
  r->block = MAX ((uint64_t) info.cluster_size, ZERO_BLOCK);
  r->zero_flags = ferry_image_backing (r->dst) ? 0 : FERRY_ZERO_MAY_TRIM;

  r->window_chunks = MAX (WINDOW_BYTES / r->chunk, 1);
  n = r->opts->threads ? r->opts->threads : online_cpus ();
  n = MIN (n, MAX_THREADS);
  n = MIN ((uint64_t) n, r->window_chunks);
  r->threads = MAX (n, 1u);
  return 0;
}

/* One hash round: make DST hold SRC, writing only what differs. */
int
ferry_hash_round (struct ferry_image *src, struct ferry_image *dst,
                  struct ferry_hash_table *t,
                  const struct ferry_copy_options *opts,
                  struct ferry_delta_stats *stats)
{
  static const struct ferry_copy_options default_opts;
  struct round r = { 0 };
  struct worker *workers = NULL;
  pthread_condattr_t attr;
  bool table_written = false;
  unsigned i;
  int ret = -1;

  memset (stats, 0, sizeof *stats);
  if (opts == NULL)
    opts = &default_opts;
  if (copy_cancel_requested (opts))
    return ferry_error (EINTR, "interrupted");

  r.src = src;
  r.dst = dst;
  r.t = t;
  r.opts = opts;
  r.size = ferry_image_size (src);
  r.chunk = t->chunk;
  if (plan_round (&r) == -1)
    return -1;
  ferry_image_set_early_writeback (dst, true);

  pthread_mutex_init (&r.lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&r.done_cond, &attr);
  pthread_condattr_destroy (&attr);

  r.wbuf = copy_alloc_aligned (r.window_chunks * r.chunk);
  r.action = calloc (r.window_chunks, 1);
  r.new_state = calloc (r.window_chunks, 1);
  r.new_hash = calloc (r.window_chunks, sizeof *r.new_hash);
  workers = calloc (r.threads, sizeof *workers);
  if (r.wbuf == NULL || r.action == NULL || r.new_state == NULL ||
      r.new_hash == NULL || workers == NULL)
    goto nomem;
  for (i = 0; i < r.threads; i++) {
    workers[i].r = &r;
    workers[i].tbuf = copy_alloc_aligned (r.chunk);
    if (workers[i].tbuf == NULL)
      goto nomem;
  }

  r.start = r.last_report = now_seconds ();
  for (r.first = 0; r.first < t->count; r.first = r.end) {
    r.end = MIN (r.first + r.window_chunks, t->count);
    if (do_window (&r, workers, &table_written) == -1)
      break;
  }
  /* Note 4: a finished round's hashes last. */
  if (!r.error.failed && table_written && datasync_fd (t->fd) == -1) {
    ferry_error_errno (errno, "%s: syncing the hash table", t->path);
    fail_round (&r);
  }
  if (r.error.failed) {
    ferry_error (r.error.err, "%s", r.error.msg);
    goto out;
  }
  if (opts->progress)
    report_progress (&r, true);
  ret = 0;
  goto out;

 nomem:
  ferry_error (ENOMEM, "out of memory for the hash round's buffers (%"
               PRIu64 " bytes)", r.window_chunks * r.chunk);
 out:
  stats->chunks = r.chunks;
  stats->chunks_written = r.chunks_written;
  stats->bytes_read = r.bytes_read;
  stats->bytes_target_read = r.bytes_target_read;
  stats->bytes_written = r.bytes_written;
  stats->seconds = r.start ? now_seconds () - r.start : 0;
  if (workers) {
    for (i = 0; i < r.threads; i++) {
      free (workers[i].tbuf);
      ferry_extent_list_free (&workers[i].ext);
    }
    free (workers);
  }
  free (r.wbuf);
  free (r.action);
  free (r.new_state);
  free (r.new_hash);
  pthread_cond_destroy (&r.done_cond);
  pthread_mutex_destroy (&r.lock);
  return ret;
}
