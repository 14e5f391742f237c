/* qcow2: creating images and writing them (new ones, and existing ones
 * opened with FERRY_OPEN_WRITE).
 *
 * NOTES ON THE DESIGN
 *
 * 1. New host clusters are taken from the end of the file (alloc_end)
 *    under the image lock; the data is written without it.  A write that
 *    allocates several clusters gets them contiguous, so it is one
 *    pwritev.  The L2 entry is set only after the data is in the file, so
 *    the old mapping still describes the cluster while a partial write
 *    reads what it must keep (backing data, zeroes, a compressed
 *    cluster).  The caller guarantees that no two threads write the same
 *    cluster at once.
 *
 * 2. Every L2 table a writable image touches stays in memory (its slot is
 *    never evicted).  New tables get a host cluster only at flush, after
 *    the data, so metadata ends up together at the end of the file.
 *
 * 3. Refcounts are not maintained while writing.  At flush and close they
 *    are rebuilt from scratch by walking everything the image references
 *    (header, L1, L2 tables, data and compressed clusters), placed after
 *    alloc_end together with the refcount table, and the header is
 *    written last.  Old refcount structures of an existing image become
 *    free space.  Until then a new image has no header at all (cluster 0
 *    is zeroes, so nothing mistakes it for a finished qcow2 file) and an
 *    existing version 3 image carries the dirty bit, which tells qemu to
 *    repair the refcounts if ferry dies before closing.
 *
 * 4. Compressed clusters are packed one after another at byte
 *    granularity, sharing host clusters, as long as the refcount width
 *    can count the sharers; writes come in ascending order from one
 *    thread.
 *
 * 5. Writes go in place where an existing image's tables point, and
 *    the refcounts rebuilt at close would make any damage look
 *    consistent to qemu-img check.  So every L2 table of an existing
 *    image is validated at open, before the dirty bit is set
 *    (qcow2_validate_all_tables): an entry that points outside the file,
 *    unaligned, or at a cluster something else holds refuses the open
 *    before anything is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <libdeflate.h>
#include <zstd.h>

#include "hostfile.h"
#include "qcow2-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* Bytes written or zeroed per batch of metadata. */
#define BATCH_BYTES (1u << 20)

/* Default compression levels.  libdeflate 3 was measured 2.5 to 4 times
 * faster than its level 6 on a tar of /usr and still writes smaller
 * output than qemu-img's zlib default; zstd 3 is zstd's own default. */
#define DEFAULT_DEFLATE_LEVEL 3
#define DEFAULT_ZSTD_LEVEL 3

/* Free a libdeflate compressor of the pool. */
static void
free_compressor (void *c)
{
  libdeflate_free_compressor (c);
}

/* Free a zstd compression context of the pool. */
static void
free_cctx (void *c)
{
  ZSTD_freeCCtx (c);
}

/* Free the compressors left in the pool. */
void
qcow2_free_compressors (struct qcow2_image *q)
{
  pool_drain (&q->cpool, q->h.compression_type == QCOW2_COMPRESSION_ZSTD ?
              free_cctx : free_compressor);
}

/* Consecutive writes gathered into one pwrite while they are contiguous
 * in the file. */
struct batch {
  struct qcow2_image *q;
  uint8_t *buf;
  size_t len, cap;
  uint64_t start;
};

/* Write what the batch holds. */
static int
batch_flush (struct batch *b)
{
  if (b->len && full_pwrite (b->q->fd, b->buf, b->len, b->start) == -1)
    return ferry_error_errno (errno, "%s: writing metadata at offset 0x%"
                              PRIx64, b->q->base.path, b->start);
  b->len = 0;
  return 0;
}

/* Add N bytes at host offset HOST; the data is copied in by the caller
 * at the returned pointer.  NULL on error. */
static uint8_t *
batch_add (struct batch *b, uint64_t host, size_t n)
{
  uint8_t *p;

  if (b->len && (host != b->start + b->len || b->len + n > b->cap) &&
      batch_flush (b) == -1)
    return NULL;
  if (b->len == 0)
    b->start = host;
  p = b->buf + b->len;
  b->len += n;
  return p;
}

/* Whether guest cluster IDX of table E has a host cluster that writes
 * can go to in place; *HOST is set to it. */
static bool
host_in_place (struct qcow2_image *q, const uint64_t *e, uint32_t idx,
               uint64_t guest, uint64_t *host)
{
  uint64_t word = e[(size_t) idx * qcow2_entry_words (q)];

  if (q->has_data_file) {
    *host = ROUND_DOWN (guest, q->h.cluster_size);
    return true;
  }
  if (word & QCOW2_L2E_COMPRESSED)
    return false;
  *host = word & QCOW2_L2E_OFFSET_MASK;
  return *host != 0;
}

/* The allocation unit of cluster IDX: a subcluster with extended L2,
 * unless the cluster is compressed, which has none. */
static uint64_t
unit_size (struct qcow2_image *q, const uint64_t *e, uint32_t idx)
{
  if (q->h.extended_l2 && !(e[(size_t) idx * 2] & QCOW2_L2E_COMPRESSED))
    return 1ull << q->unit_bits;
  return q->h.cluster_size;
}

/* Whether the unit holding guest offset POS (in cluster IDX of E) reads
 * from its own host cluster, so a partial write need not fill it. */
static bool
unit_is_data (struct qcow2_image *q, const uint64_t *e, uint32_t idx,
              uint64_t pos)
{
  uint64_t word = e[(size_t) idx * qcow2_entry_words (q)];

  if (word & QCOW2_L2E_COMPRESSED)
    return false;
  if (q->h.extended_l2) {
    unsigned sub = (pos & (q->h.cluster_size - 1)) >> q->unit_bits;
    return (e[(size_t) idx * 2 + 1] >> sub) & 1;
  }
  if (q->h.version >= 3 && (word & QCOW2_L2E_ZERO))
    return false;
  return (word & QCOW2_L2E_OFFSET_MASK) != 0 ||
    (q->has_data_file && (word & QCOW2_L2E_COPIED));
}

/* Write at most one L2 table's worth of BUF (COUNT bytes at guest
 * OFFSET) to one contiguous host run; *DONE says how much. */
static int
write_chunk (struct qcow2_image *q, const uint8_t *buf, uint64_t count,
             uint64_t offset, uint64_t *done)
{
  uint32_t cb = q->h.cluster_bits, cs = q->h.cluster_size;
  uint32_t l1i = offset >> (cb + q->l2_bits);
  uint64_t table_end = (uint64_t) (l1i + 1) << (cb + q->l2_bits);
  uint64_t end = MIN (offset + count, table_end);
  uint64_t first = offset >> cb, last = (end - 1) >> cb, c;
  uint64_t host_start = 0, host = 0, fill_start, fill_end, run_end;
  uint32_t mask = q->h.l2_entries - 1;
  CLEANUP_FREE uint8_t *head = NULL;
  CLEANUP_FREE uint8_t *tail = NULL;
  struct iovec iov[3];
  bool in_place;
  int s, n = 0;
  const uint64_t *e;

  /* 1. Under the lock: find the run and take new clusters for it. */
  pthread_mutex_lock (&q->lock);
  s = qcow2_get_slot (q, l1i, true);
  if (s < 0) {
    pthread_mutex_unlock (&q->lock);
    return -1;
  }
  e = q->slots.ptr[s].entries;
  in_place = host_in_place (q, e, first & mask, first << cb, &host_start);
  if (!in_place)
    host_start = q->alloc_end;
  for (c = first + 1; c <= last; c++) {
    bool ip = host_in_place (q, e, c & mask, c << cb, &host);
    if (ip != in_place ||
        (in_place && host != host_start + ((c - first) << cb)))
      break;
  }
  if (!in_place)
    q->alloc_end += (c - first) << cb;
  run_end = MIN (end, c << cb);
  last = c - 1;

  /* Partial units at either end keep what they held unless they hold
   * their own data already. */
  fill_start = ROUND_DOWN (offset, unit_size (q, e, first & mask));
  if (fill_start != offset && unit_is_data (q, e, first & mask, offset))
    fill_start = offset;
  fill_end = ROUND_UP (run_end, unit_size (q, e, last & mask));
  if (fill_end != run_end && unit_is_data (q, e, last & mask, run_end - 1))
    fill_end = run_end;
  pthread_mutex_unlock (&q->lock);

  /* 2. Without it: read what the partial units keep, write. */
  if (fill_start < offset) {
    head = malloc (offset - fill_start);
    if (head == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    if (qcow2_read_range (q, head, offset - fill_start, fill_start) == -1)
      return -1;
    iov[n++] = (struct iovec) { head, offset - fill_start };
  }
  iov[n++] = (struct iovec) { (void *) buf, run_end - offset };
  if (fill_end > run_end) {
    tail = malloc (fill_end - run_end);
    if (tail == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    if (qcow2_read_range (q, tail, fill_end - run_end, run_end) == -1)
      return -1;
    iov[n++] = (struct iovec) { tail, fill_end - run_end };
  }
  host = host_start + (fill_start - (first << cb));
  if (full_pwritev (q->data_fd, iov, n, host) == -1)
    return ferry_error_errno (errno, "%s: writing %" PRIu64 " bytes at "
                              "offset 0x%" PRIx64, q->base.path,
                              fill_end - fill_start, host);
  hostfile_start_writeback (&q->base, q->data_fd, host, fill_end - fill_start);

  /* 3. Under the lock again: point the L2 entries at the data. */
  pthread_mutex_lock (&q->lock);
  s = q->slot_of[l1i];
  {
    uint64_t *ent = q->slots.ptr[s].entries;
    for (c = first; c <= last; c++) {
      uint64_t h = host_start + ((c - first) << cb);
      uint32_t idx = c & mask;
      if (q->h.extended_l2) {
        uint64_t cstart = c << cb;
        uint64_t a = MAX (fill_start, cstart) - cstart;
        uint64_t b = MIN (fill_end, cstart + cs) - cstart;
        unsigned u0 = a >> q->unit_bits, u1 = (b - 1) >> q->unit_bits;
        uint64_t bits = ((2ull << u1) - 1) & ~((1ull << u0) - 1);
        if (ent[idx * 2] & QCOW2_L2E_COMPRESSED)
          ent[idx * 2 + 1] = 0;
        ent[idx * 2] = h | QCOW2_L2E_COPIED;
        ent[idx * 2 + 1] = (ent[idx * 2 + 1] | bits) & ~(bits << 32);
      }
      else
        ent[idx] = h | QCOW2_L2E_COPIED;
    }
    q->slots.ptr[s].dirty = true;
  }
  q->meta_dirty = true;
  pthread_mutex_unlock (&q->lock);
  *done = run_end - offset;
  return 0;
}

/* The pwrite callback: one contiguous host run at a time. */
int
qcow2_pwrite (struct ferry_image *img, const void *buf, size_t count,
              uint64_t offset)
{
  struct qcow2_image *q = (struct qcow2_image *) img;
  const uint8_t *p = buf;
  uint64_t done = 0;

  while (count > 0) {
    if (write_chunk (q, p, count, offset, &done) == -1)
      return -1;
    p += done;
    offset += done;
    count -= done;
  }
  return 0;
}

/* Write COUNT bytes of real zeroes at guest OFFSET. */
static int
write_zeroes (struct qcow2_image *q, uint64_t count, uint64_t offset)
{
  size_t n = MIN (count, (uint64_t) BATCH_BYTES);
  CLEANUP_FREE uint8_t *zeroes = calloc (1, n);

  if (zeroes == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
  while (count > 0) {
    n = MIN (count, (uint64_t) BATCH_BYTES);
    if (qcow2_pwrite (&q->base, zeroes, n, offset) == -1)
      return -1;
    count -= n;
    offset += n;
  }
  return 0;
}

/* Make whole cluster IDX of E (guest offset GUEST) read as zeroes
 * through metadata, if the format allows; false when zeroes must be
 * written instead.  Lock held. */
static bool
zero_cluster (struct qcow2_image *q, uint64_t *e, uint32_t idx,
              uint64_t guest, unsigned flags, bool *changed)
{
  bool trim = flags & FERRY_ZERO_MAY_TRIM;
  bool backing = q->base.backing && guest < q->base.backing->size;
  uint64_t word = e[(size_t) idx * qcow2_entry_words (q)];
  uint64_t host = word & QCOW2_L2E_OFFSET_MASK;
  bool compressed = word & QCOW2_L2E_COMPRESSED;
  bool keep = !trim && !compressed && host != 0;

  *changed = false;
  if (q->h.extended_l2) {
    uint64_t w0 = keep ? word : 0, bm = backing || keep ? 0xffffffff00000000ull
      : 0;
    if (e[idx * 2] != w0 || e[idx * 2 + 1] != bm) {
      e[idx * 2] = w0;
      e[idx * 2 + 1] = bm;
      *changed = true;
    }
    return true;
  }
  if (q->h.version >= 3) {
    uint64_t nw;
    if (!backing && (word == 0 || trim))
      nw = 0;
    else if (keep)
      nw = (word & ~QCOW2_L2E_COMPRESSED) | QCOW2_L2E_ZERO;
    else
      nw = QCOW2_L2E_ZERO;
    if (nw != word) {
      e[idx] = nw;
      *changed = true;
    }
    return true;
  }
  /* Version 2 has no zero flag: an unallocated cluster reads as zeroes
   * only where no backing file shows through. */
  if (backing || keep)
    return false;
  if (word != 0) {
    e[idx] = 0;
    *changed = true;
  }
  return true;
}

/* Set the zero bits of the subclusters [A, B) (offsets in the cluster)
 * of extended cluster IDX; false when the cluster is compressed and
 * zeroes must be written instead.  Lock held. */
static bool
zero_subclusters (struct qcow2_image *q, uint64_t *e, uint32_t idx,
                  uint64_t a, uint64_t b)
{
  unsigned u0 = a >> q->unit_bits, u1 = (b - 1) >> q->unit_bits;
  uint64_t bits = ((2ull << u1) - 1) & ~((1ull << u0) - 1);

  if (e[idx * 2] & QCOW2_L2E_COMPRESSED)
    return false;
  e[idx * 2 + 1] = (e[idx * 2 + 1] & ~bits) | (bits << 32);
  return true;
}

/* Whether [OFFSET, END) of the table of L1 entry L1I reads as zeroes
 * already: no table, and no backing file behind.  Lock held. */
static bool
table_reads_zero (struct qcow2_image *q, uint32_t l1i, uint64_t offset)
{
  return q->slot_of[l1i] < 0 && (q->l1[l1i] & QCOW2_L1E_OFFSET_MASK) == 0 &&
    (q->base.backing == NULL || q->base.backing->size <= offset);
}

/* Zero whole clusters from OFFSET (a cluster boundary) to at most END
 * within one L2 table, through metadata; *DONE says how far it got, and
 * *WRITE how many bytes after that must be written as zeroes. */
static int
zero_clusters (struct qcow2_image *q, uint64_t offset, uint64_t end,
               unsigned flags, uint64_t *done, uint64_t *write)
{
  uint32_t cb = q->h.cluster_bits, cs = q->h.cluster_size;
  uint32_t l1i = offset >> (cb + q->l2_bits);
  uint64_t table_end = (uint64_t) (l1i + 1) << (cb + q->l2_bits);
  uint64_t pos = offset;
  bool changed;
  int s;

  *write = 0;
  end = MIN (end, table_end);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
  if (table_reads_zero (q, l1i, offset)) {
    *done = end - offset;
    return 0;
  }
  s = qcow2_get_slot (q, l1i, true);
  if (s < 0)
    return -1;
  for (; pos < end; pos += cs) {
    uint64_t *e = q->slots.ptr[s].entries;
    if (!zero_cluster (q, e, (pos >> cb) & (q->h.l2_entries - 1), pos, flags,
                       &changed)) {
      *write = MIN ((uint64_t) cs, end - pos);
      break;
    }
    if (changed)
      q->slots.ptr[s].dirty = q->meta_dirty = true;
  }
  *done = pos - offset;
  return 0;
}

/* The zero callback: zero flags and subcluster bits where the version
 * has them, real zeroes elsewhere. */
int
qcow2_zero (struct ferry_image *img, size_t count, uint64_t offset,
            unsigned flags)
{
  struct qcow2_image *q = (struct qcow2_image *) img;
  uint32_t cs = q->h.cluster_size;
  uint64_t unit = 1ull << q->unit_bits, end = offset + count;

  /* A raw data file must read as the disk: write the zeroes. */
  if (q->data_raw)
    return write_zeroes (q, count, offset);

  while (offset < end) {
    uint64_t cstart = ROUND_DOWN (offset, cs), cend = cstart + cs;
    uint64_t b = MIN (end, cend);
    /* The tail of the last cluster, past the disk, does not matter. */
    uint64_t covered = b == img->size ? cend : b;
    uint64_t ua, ub, done = 0, wr = 0;
    bool ok;

    if (offset == cstart && covered == cend) {
      /* Whole clusters: as many as this table holds, in one go. */
      uint64_t whole = end >= img->size ? ROUND_UP (end, (uint64_t) cs) :
        ROUND_DOWN (end, (uint64_t) cs);
      if (zero_clusters (q, offset, whole, flags, &done, &wr) == -1)
        return -1;
      offset += done;
      if (wr) {
        wr = MIN (wr, end - offset);
        if (write_zeroes (q, wr, offset) == -1)
          return -1;
        offset += wr;
      }
      continue;
    }

    /* Part of a cluster: whole subclusters through their zero bits, the
     * rest written. */
    ua = ROUND_UP (offset, unit);
    ub = ROUND_DOWN (covered, unit);
    if (!q->h.extended_l2 || ua >= ub) {
      if (write_zeroes (q, b - offset, offset) == -1)
        return -1;
      offset = b;
      continue;
    }
    if (ua > offset && write_zeroes (q, ua - offset, offset) == -1)
      return -1;
    {
      uint32_t l1i = ua >> (q->h.cluster_bits + q->l2_bits);
      int s;
      pthread_mutex_lock (&q->lock);
      ok = true;
      if (!table_reads_zero (q, l1i, ua)) {
        s = qcow2_get_slot (q, l1i, true);
        if (s < 0) {
          pthread_mutex_unlock (&q->lock);
          return -1;
        }
        ok = zero_subclusters (q, q->slots.ptr[s].entries,
                               (ua >> q->h.cluster_bits) &
                               (q->h.l2_entries - 1),
                               ua - cstart, ub - cstart);
        if (ok)
          q->slots.ptr[s].dirty = q->meta_dirty = true;
      }
      pthread_mutex_unlock (&q->lock);
    }
    if (!ok && write_zeroes (q, MIN (ub, b) - ua, ua) == -1)
      return -1;
    if (b > ub && write_zeroes (q, b - ub, ub) == -1)
      return -1;
    offset = b;
  }
  return 0;
}

/* One cluster; none with an external data file, which cannot hold them. */
uint32_t
qcow2_compress_unit (struct ferry_image *img)
{
  return ((struct qcow2_image *) img)->has_data_file ? 0 :
    ((struct qcow2_image *) img)->h.cluster_size;
}

/* Output that does not fit in less than a cluster is not used. */
size_t
qcow2_compress_bound (struct ferry_image *img)
{
  return ((struct qcow2_image *) img)->h.cluster_size;
}

/* Compress one cluster (zero-padded when short); 0 when it does not pay. */
ssize_t
qcow2_compress (struct ferry_image *img, const void *in, size_t count,
                void *out)
{
  struct qcow2_image *q = (struct qcow2_image *) img;
  size_t cs = q->h.cluster_size, n;
  CLEANUP_FREE uint8_t *padded = NULL;

  /* The reader decompresses whole clusters: pad the last one. */
  if (count < cs) {
    padded = calloc (1, cs);
    if (padded == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", img->path);
    memcpy (padded, in, count);
    in = padded;
  }
  if (q->h.compression_type == QCOW2_COMPRESSION_ZLIB) {
    struct libdeflate_compressor *c = pool_get (&q->cpool);
    if (c == NULL)
      c = libdeflate_alloc_compressor (q->deflate_level);
    if (c == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", img->path);
    /* 0 when it does not fit in less than a cluster. */
    n = libdeflate_deflate_compress (c, in, cs, out, cs - 1);
    pool_put (&q->cpool, c, free_compressor);
    return n;
  }
  else {
    ZSTD_CCtx *c = pool_get (&q->cpool);
    if (c == NULL)
      c = ZSTD_createCCtx ();
    if (c == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", img->path);
    n = ZSTD_compressCCtx (c, out, cs - 1, in, cs, q->zstd_level);
    pool_put (&q->cpool, c, free_cctx);
    /* An error here is almost always "does not fit": store it plain. */
    return ZSTD_isError (n) ? 0 : (ssize_t) n;
  }
}

/* Append one compressed cluster after the last and point its L2 entry at
 * it (note 4). */
int
qcow2_write_compressed (struct ferry_image *img, uint64_t offset,
                        const void *data, size_t len, size_t count)
{
  struct qcow2_image *q = (struct qcow2_image *) img;
  uint32_t cb = q->h.cluster_bits, cs = q->h.cluster_size;
  uint32_t l1i = offset >> (cb + q->l2_bits);
  uint32_t idx = (offset >> cb) & (q->h.l2_entries - 1);
  unsigned x = 62 - (cb - 8);
  uint64_t start, nb, entry;
  uint64_t *e;
  int s;

  if (len == 0 || len >= cs || !IS_ALIGNED (offset, cs))
    return ferry_error (EINVAL, "%s: compressed write of %zu bytes at guest "
                        "offset %" PRIu64 ": expected fewer than %" PRIu32
                        " bytes at a cluster boundary", img->path, len,
                        offset, cs);
  if (q->has_data_file)
    return ferry_error (ENOTSUP, "%s: images with an external data file "
                        "cannot hold compressed clusters", img->path);

  /* Continue in the host cluster the last compressed cluster ended in,
   * while it is the last one taken and its refcount can count one more. */
  pthread_mutex_lock (&q->lock);
  s = qcow2_get_slot (q, l1i, true);
  if (s < 0) {
    pthread_mutex_unlock (&q->lock);
    return -1;
  }
  if (q->comp_pos && !IS_ALIGNED (q->comp_pos, cs) &&
      ROUND_UP (q->comp_pos, cs) == q->alloc_end &&
      q->comp_refs < q->refcount_max) {
    start = q->comp_pos;
    if ((start + len - 1) >> cb == start >> cb)
      q->comp_refs++;
    else
      q->comp_refs = 1;
  }
  else {
    start = q->alloc_end;
    q->comp_refs = 1;
  }
  q->comp_pos = start + len;
  q->alloc_end = MAX (q->alloc_end, ROUND_UP (start + len, (uint64_t) cs));
  pthread_mutex_unlock (&q->lock);

  if (start >> x)
    return ferry_error (EFBIG, "%s: compressed data at offset 0x%" PRIx64
                        " is beyond what a compressed cluster descriptor "
                        "can address", img->path, start);
  if (full_pwrite (q->fd, data, len, start) == -1)
    return ferry_error_errno (errno, "%s: writing %zu bytes of compressed "
                              "data at offset 0x%" PRIx64, img->path, len,
                              start);

  nb = ((start + len - 1) >> 9) - (start >> 9);
  entry = QCOW2_L2E_COMPRESSED | (nb << x) | start;
  pthread_mutex_lock (&q->lock);
  e = q->slots.ptr[q->slot_of[l1i]].entries;
  if (q->h.extended_l2) {
    e[idx * 2] = entry;
    e[idx * 2 + 1] = 0;
  }
  else
    e[idx] = entry;
  q->slots.ptr[q->slot_of[l1i]].dirty = true;
  q->meta_dirty = true;
  pthread_mutex_unlock (&q->lock);
  return 0;
}

/* Build the header cluster of a new image into BUF (LEN bytes, zeroed
 * by the caller).  Returns -1 when it does not fit. */
static int
build_header (struct qcow2_image *q, uint8_t *buf, size_t len,
              uint64_t reftable_offset, uint32_t reftable_clusters)
{
  static const struct { uint8_t type, bit; const char *name; } features[] = {
    { 0, 0, "dirty bit" }, { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" }, { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" }, { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" }, { 2, 1, "raw external data" },
  };
  const struct qcow2_header *h = &q->h;
  size_t pos = h->header_length, fmt_len, name_len, table_len, i;

  if (len < pos)
    return -1;
  put_be32 (buf + QCOW2_HDR_MAGIC, QCOW2_MAGIC);
  put_be32 (buf + QCOW2_HDR_VERSION, h->version);
  put_be32 (buf + QCOW2_HDR_CLUSTER_BITS, h->cluster_bits);
  put_be64 (buf + QCOW2_HDR_SIZE, h->size);
  put_be32 (buf + QCOW2_HDR_L1_SIZE, h->l1_size);
  put_be64 (buf + QCOW2_HDR_L1_TABLE_OFFSET, h->l1_table_offset);
  put_be64 (buf + QCOW2_HDR_REFCOUNT_TABLE_OFFSET, reftable_offset);
  put_be32 (buf + QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS, reftable_clusters);
  if (h->version >= 3) {
    put_be64 (buf + QCOW2_HDR_INCOMPATIBLE_FEATURES,
              h->incompatible_features & ~QCOW2_INCOMPAT_DIRTY);
    put_be64 (buf + QCOW2_HDR_COMPATIBLE_FEATURES, h->compatible_features);
    put_be64 (buf + QCOW2_HDR_AUTOCLEAR_FEATURES, h->autoclear_features);
    put_be32 (buf + QCOW2_HDR_REFCOUNT_ORDER, h->refcount_order);
    put_be32 (buf + QCOW2_HDR_HEADER_LENGTH, h->header_length);
    if (h->header_length > QCOW2_HDR_COMPRESSION_TYPE)
      buf[QCOW2_HDR_COMPRESSION_TYPE] = h->compression_type;
  }

  fmt_len = h->backing_format ? strlen (h->backing_format) : 0;
  name_len = h->backing_file ? strlen (h->backing_file) : 0;
  table_len = sizeof features / sizeof features[0] * 48;
  if (fmt_len && (len - pos < 8 + ROUND_UP (fmt_len, 8)))
    return -1;
  if (fmt_len) {
    put_be32 (buf + pos, QCOW2_EXT_BACKING_FORMAT);
    put_be32 (buf + pos + 4, fmt_len);
    memcpy (buf + pos + 8, h->backing_format, fmt_len);
    pos += 8 + ROUND_UP (fmt_len, 8);
  }
  /* The feature names are a courtesy to older readers: only when they
   * fit beside everything else. */
  if (h->version >= 3 && len - pos >= 8 + table_len + 8 + name_len) {
    put_be32 (buf + pos, QCOW2_EXT_FEATURE_TABLE);
    put_be32 (buf + pos + 4, table_len);
    for (i = 0; i < sizeof features / sizeof features[0]; i++) {
      uint8_t *f = buf + pos + 8 + i * 48;
      f[0] = features[i].type;
      f[1] = features[i].bit;
      memcpy (f + 2, features[i].name, strlen (features[i].name));
    }
    pos += 8 + table_len;
  }
  if (len - pos < 8 + name_len)
    return -1;
  put_be32 (buf + pos, QCOW2_EXT_END);
  put_be32 (buf + pos + 4, 0);
  pos += 8;
  if (name_len) {
    put_be64 (buf + QCOW2_HDR_BACKING_FILE_OFFSET, pos);
    put_be32 (buf + QCOW2_HDR_BACKING_FILE_SIZE, name_len);
    memcpy (buf + pos, h->backing_file, name_len);
  }
  return 0;
}

/* Write the header last: the whole header of a new image, or the
 * changed fields of an existing one. */
static int
write_header (struct qcow2_image *q, uint64_t reftable_offset,
              uint32_t reftable_clusters)
{
  size_t len = q->h.version >= 3 ? QCOW2_V3_HEADER_LENGTH :
    QCOW2_V2_HEADER_LENGTH;
  CLEANUP_FREE uint8_t *buf = NULL;

  if (q->is_new) {
    len = q->h.cluster_size;
    buf = calloc (1, len);
    if (buf == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    if (build_header (q, buf, len, reftable_offset, reftable_clusters) == -1)
      return ferry_error (ENAMETOOLONG, "%s: the header does not fit in one "
                          "cluster", q->base.path);
  }
  else {
    buf = malloc (len);
    if (buf == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    if (full_pread (q->fd, buf, len, 0) == -1)
      return ferry_error_errno (errno, "%s: reading the header", q->base.path);
    put_be64 (buf + QCOW2_HDR_REFCOUNT_TABLE_OFFSET, reftable_offset);
    put_be32 (buf + QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS, reftable_clusters);
    if (q->h.version >= 3) {
      put_be64 (buf + QCOW2_HDR_INCOMPATIBLE_FEATURES,
                q->h.incompatible_features & ~QCOW2_INCOMPAT_DIRTY);
      /* Autoclear bits we do not maintain are cleared, as the spec asks
       * of a writer. */
      put_be64 (buf + QCOW2_HDR_AUTOCLEAR_FEATURES,
                q->h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW);
    }
  }
  if (full_pwrite (q->fd, buf, len, 0) == -1)
    return ferry_error_errno (errno, "%s: writing the header", q->base.path);
  return 0;
}

/* Store refcount VALUE at INDEX of the refcount block BLOCK. */
static void
put_refcount (uint8_t *block, unsigned order, uint64_t index, uint64_t value)
{
  switch (order) {
  case 0: case 1: case 2: {
    unsigned bits = 1u << order;
    block[index * bits / 8] |= value << ((index * bits) % 8);
    break;
  }
  case 3: block[index] = value; break;
  case 4: put_be16 (block + index * 2, value); break;
  case 5: put_be32 (block + index * 4, value); break;
  default: put_be64 (block + index * 8, value); break;
  }
}

/* Refcounts being rebuilt: one counter per host cluster. */
struct refcounts {
  struct qcow2_image *q;
  uint32_t *count;
  uint64_t nr;                 /* clusters counted */
};

/* Count one reference to each host cluster of [START, START+LEN).
 * WHAT and the indexes name the referrer in messages. */
static int
count_range (struct refcounts *rc, uint64_t start, uint64_t len,
             const char *what, uint32_t l1i, uint32_t l2i)
{
  uint32_t cb = rc->q->h.cluster_bits;
  uint64_t c, first = start >> cb, last = (start + len - 1) >> cb;

  if (last >= rc->nr || start + len < start)
    return ferry_error (EINVAL, "%s: %s of L2 entry %" PRIu32 " of the L2 "
                        "table of L1 entry %" PRIu32 " at offset 0x%" PRIx64
                        " is past the end of the file (0x%" PRIx64 ")",
                        rc->q->base.path, what, l2i, l1i, start,
                        rc->nr << cb);
  for (c = first; c <= last; c++)
    rc->count[c]++;
  return 0;
}

/* Count what the L2 table E (of L1 entry L1I) references. */
static int
count_table (struct refcounts *rc, const uint64_t *e, uint32_t l1i)
{
  struct qcow2_image *q = rc->q;
  unsigned w = qcow2_entry_words (q);
  uint32_t i, cs = q->h.cluster_size;

  for (i = 0; i < q->h.l2_entries; i++) {
    uint64_t word = e[(size_t) i * w];
    if (word & QCOW2_L2E_COMPRESSED) {
      uint64_t off = qcow2_compressed_offset (&q->h, word) & ~511ull;
      uint64_t end = qcow2_compressed_offset (&q->h, word) +
        qcow2_compressed_length (&q->h, word);
      if (count_range (rc, off, end - off, "compressed data", l1i, i) == -1)
        return -1;
    }
    else if ((word & QCOW2_L2E_OFFSET_MASK) && !q->has_data_file) {
      uint64_t host = word & QCOW2_L2E_OFFSET_MASK;
      if (!IS_ALIGNED (host, cs))
        return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 "
                            "table of L1 entry %" PRIu32 " points to "
                            "unaligned offset 0x%" PRIx64, q->base.path, i,
                            l1i, host);
      if (count_range (rc, host, cs, "data cluster", l1i, i) == -1)
        return -1;
    }
  }
  return 0;
}

/* Set the COPIED flags of the tables in memory and of L1 to what the
 * rebuilt refcounts say. */
static void
fix_copied (struct refcounts *rc)
{
  struct qcow2_image *q = rc->q;
  unsigned w = qcow2_entry_words (q);
  uint32_t cb = q->h.cluster_bits;
  size_t i, j;

  for (i = 0; i < q->slots.len; i++) {
    struct qcow2_l2_slot *s = &q->slots.ptr[i];
    for (j = 0; j < q->h.l2_entries; j++) {
      uint64_t word = s->entries[j * w], host, want;
      host = word & QCOW2_L2E_OFFSET_MASK;
      if (word & QCOW2_L2E_COMPRESSED)
        want = 0;
      else if (q->has_data_file)
        want = word & QCOW2_L2E_COPIED;   /* implicitly 1: left as is */
      else
        want = host && rc->count[host >> cb] == 1 ? QCOW2_L2E_COPIED : 0;
      if ((word & QCOW2_L2E_COPIED) != want) {
        s->entries[j * w] = (word & ~QCOW2_L2E_COPIED) | want;
        s->dirty = true;
      }
    }
  }
  for (i = 0; i < q->h.l1_size; i++) {
    uint64_t l2 = q->l1[i] & QCOW2_L1E_OFFSET_MASK;
    uint64_t want = l2 && rc->count[l2 >> cb] == 1 ? QCOW2_L1E_COPIED : 0;
    if ((q->l1[i] & QCOW2_L1E_COPIED) != want) {
      q->l1[i] = (q->l1[i] & ~QCOW2_L1E_COPIED) | want;
      q->l1_dirty = true;
    }
  }
}

/* Count every reference of the image into RC (allocated here for the
 * clusters below RC->nr). */
static int
count_references (struct refcounts *rc)
{
  struct qcow2_image *q = rc->q;
  uint32_t cs = q->h.cluster_size, i;
  size_t nwords = (size_t) q->h.l2_entries * qcow2_entry_words (q), j;
  CLEANUP_FREE uint64_t *tmp = NULL;

  rc->count[0]++;               /* the header */
  if (q->h.l1_size &&
      count_range (rc, q->h.l1_table_offset, (uint64_t) q->h.l1_size * 8,
                   "L1 table", 0, 0) == -1)
    return -1;
  for (i = 0; i < q->h.l1_size; i++) {
    uint64_t l2 = q->l1[i] & QCOW2_L1E_OFFSET_MASK;
    const uint64_t *e;
    if (l2 == 0)
      continue;
    if (!IS_ALIGNED (l2, cs) || (l2 >> q->h.cluster_bits) >= rc->nr)
      return ferry_error (EINVAL, "%s: L1 entry %" PRIu32 " points to an L2 "
                          "table at offset 0x%" PRIx64 " that is unaligned or "
                          "past the end of the file", q->base.path, i, l2);
    rc->count[l2 >> q->h.cluster_bits]++;
    if (q->slot_of[i] >= 0)
      e = q->slots.ptr[q->slot_of[i]].entries;
    else {
      /* An existing table this session never touched. */
      if (tmp == NULL && (tmp = malloc (cs)) == NULL)
        return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
      if (full_pread (q->fd, tmp, cs, l2) == -1)
        return ferry_error_errno (errno, "%s: reading the L2 table at offset "
                                  "0x%" PRIx64, q->base.path, l2);
      for (j = 0; j < nwords; j++)
        tmp[j] = be64toh (tmp[j]);
      e = tmp;
    }
    if (count_table (rc, e, i) == -1)
      return -1;
  }
  return 0;
}

/* Write the dirty L2 tables and, if it changed, the L1 table. */
static int
write_tables (struct qcow2_image *q, struct batch *b)
{
  size_t nwords = (size_t) q->h.l2_entries * qcow2_entry_words (q), j;
  uint32_t i;

  for (i = 0; i < q->h.l1_size; i++) {
    struct qcow2_l2_slot *s;
    uint64_t *p;
    if (q->slot_of[i] < 0 || !q->slots.ptr[q->slot_of[i]].dirty)
      continue;
    s = &q->slots.ptr[q->slot_of[i]];
    p = (uint64_t *) batch_add (b, s->host, q->h.cluster_size);
    if (p == NULL)
      return -1;
    for (j = 0; j < nwords; j++)
      p[j] = htobe64 (s->entries[j]);
    s->dirty = false;
  }
  if (batch_flush (b) == -1)
    return -1;
  if (q->l1_dirty && q->h.l1_size) {
    CLEANUP_FREE uint64_t *l1 = malloc ((size_t) q->h.l1_size * 8);
    if (l1 == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    for (i = 0; i < q->h.l1_size; i++)
      l1[i] = htobe64 (q->l1[i]);
    if (full_pwrite (q->fd, l1, (size_t) q->h.l1_size * 8,
                     q->h.l1_table_offset) == -1)
      return ferry_error_errno (errno, "%s: writing the L1 table at offset 0x%"
                                PRIx64, q->base.path, q->h.l1_table_offset);
  }
  q->l1_dirty = false;
  return 0;
}

/* Write the refcount blocks (NB of them from BLOCKS) and the refcount
 * table (at TABLE, NT clusters) for RC. */
static int
write_refcounts (struct refcounts *rc, struct batch *b, uint64_t blocks,
                 uint64_t nb, uint64_t table, uint64_t nt)
{
  struct qcow2_image *q = rc->q;
  uint32_t cs = q->h.cluster_size, order = q->h.refcount_order;
  uint64_t per_block = (uint64_t) cs * 8 >> order, i, j;

  for (i = 0; i < nb; i++) {
    uint8_t *p = batch_add (b, blocks + i * cs, cs);
    if (p == NULL)
      return -1;
    memset (p, 0, cs);
    for (j = 0; j < per_block && i * per_block + j < rc->nr; j++)
      if (rc->count[i * per_block + j])
        put_refcount (p, order, j, rc->count[i * per_block + j]);
  }
  for (i = 0; i < nt; i++) {
    uint8_t *p = batch_add (b, table + i * cs, cs);
    if (p == NULL)
      return -1;
    memset (p, 0, cs);
    for (j = 0; j < cs / 8 && i * (cs / 8) + j < nb; j++)
      put_be64 (p + j * 8, blocks + (i * (cs / 8) + j) * cs);
  }
  return batch_flush (b);
}

/* Write the metadata held back (notes 2 and 3): L2 tables, L1, the
 * rebuilt refcounts, then the header. */
int
qcow2_finish (struct qcow2_image *q)
{
  uint32_t cb = q->h.cluster_bits, cs = q->h.cluster_size, i;
  uint64_t per_block = (uint64_t) cs * 8 >> q->h.refcount_order;
  uint64_t data_clusters, nb = 0, nt = 0, nb2, nt2, blocks, table, c;
  struct refcounts rc = { .q = q };
  struct batch b = { .q = q };
  struct stat st;
  int r = -1;

  if (!q->meta_dirty)
    return 0;

  /* 1. Give the new L2 tables their clusters, in L1 order. */
  for (i = 0; i < q->h.l1_size; i++) {
    int s = q->slot_of[i];
    if (s >= 0 && q->slots.ptr[s].host == 0) {
      q->slots.ptr[s].host = q->alloc_end;
      q->l1[i] = q->alloc_end;
      q->alloc_end += cs;
      q->l1_dirty = true;
    }
  }

  /* 2. The refcount blocks and table go after everything, and count
   * themselves: grow them until they cover their own clusters. */
  data_clusters = q->alloc_end >> cb;
  do {
    nb2 = DIV_ROUND_UP (data_clusters + nb + nt, per_block);
    nt2 = DIV_ROUND_UP (nb2 * 8, cs);
    if (nb2 == nb && nt2 == nt)
      break;
    nb = nb2;
    nt = nt2;
  } while (1);
  if (nt * cs > QCOW2_MAX_REFTABLE_BYTES)
    return ferry_error (EFBIG, "%s: the refcount table would take %" PRIu64
                        " bytes, more than the limit of %u", q->base.path,
                        nt * cs, QCOW2_MAX_REFTABLE_BYTES);
  blocks = q->alloc_end;
  table = blocks + nb * cs;
  rc.nr = data_clusters + nb + nt;
  rc.count = calloc (rc.nr, sizeof *rc.count);
  b.cap = MAX ((size_t) BATCH_BYTES, (size_t) cs);
  b.buf = malloc (b.cap);
  if (rc.count == NULL || b.buf == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    goto out;
  }

  /* 3. Count, then check the counts fit the refcount width. */
  if (count_references (&rc) == -1)
    goto out;
  for (c = data_clusters; c < rc.nr; c++)
    rc.count[c]++;
  for (c = 0; c < rc.nr; c++)
    if (rc.count[c] > q->refcount_max) {
      ferry_error (EOVERFLOW, "%s: host cluster at offset 0x%" PRIx64 " is "
                   "referenced %" PRIu32 " times, more than %" PRIu32
                   "-bit refcounts hold", q->base.path, c << cb, rc.count[c],
                   1u << q->h.refcount_order);
      goto out;
    }

  /* 4. Write tables, refcounts, then the header. */
  fix_copied (&rc);
  if (write_tables (q, &b) == -1 ||
      write_refcounts (&rc, &b, blocks, nb, table, nt) == -1)
    goto out;
  q->alloc_end = table + nt * cs;
  q->comp_pos = 0;
  if (fstat (q->fd, &st) == -1) {
    ferry_error_errno (errno, "%s: stat", q->base.path);
    goto out;
  }
  if (S_ISREG (st.st_mode) && (uint64_t) st.st_size < q->alloc_end &&
      truncate_fd (q->fd, q->alloc_end) == -1) {
    ferry_error_errno (errno, "%s: extending the file to %" PRIu64 " bytes",
                       q->base.path, q->alloc_end);
    goto out;
  }
  if (write_header (q, table, nt) == -1)
    goto out;
  q->meta_dirty = false;
  r = 0;

 out:
  free (rc.count);
  free (b.buf);
  return r;
}

/* Finish the metadata and sync the file(s). */
int
qcow2_flush (struct ferry_image *img)
{
  struct qcow2_image *q = (struct qcow2_image *) img;

  if (qcow2_finish (q) == -1)
    return -1;
  if (datasync_fd (q->fd) == -1)
    return ferry_error_errno (errno, "%s: flush", img->path);
  if (q->data_fd != q->fd && datasync_fd (q->data_fd) == -1)
    return ferry_error_errno (errno, "%s: flush of the data file", img->path);
  return 0;
}

/* Settings every writable image needs. */
static void
init_write_state (struct qcow2_image *q)
{
  uint32_t order = q->h.refcount_order;

  q->refcount_max = order == 6 ? UINT32_MAX :
    MIN ((1ull << (1u << order)) - 1, (uint64_t) UINT32_MAX);
  q->deflate_level = DEFAULT_DEFLATE_LEVEL;
  q->zstd_level = DEFAULT_ZSTD_LEVEL;
  q->meta_dirty = true;
}

/* Prepare an existing image for writing: refuse what we cannot keep
 * consistent and set the dirty bit. */
int
qcow2_open_for_write (struct qcow2_image *q)
{
  uint8_t buf[8];

  if (q->h.nb_snapshots > 0)
    return ferry_error (ENOTSUP, "%s: ferry does not write into qcow2 images "
                        "with internal snapshots (this one has %" PRIu32 ")",
                        q->base.path, q->h.nb_snapshots);
  if (q->h.has_bitmaps)
    return ferry_error (ENOTSUP, "%s: ferry does not write into qcow2 images "
                        "with persistent bitmaps", q->base.path);
  if (qcow2_validate_all_tables (q) == -1)   /* note 5 */
    return -1;
  init_write_state (q);
  q->alloc_end = ROUND_UP (q->file_size, (uint64_t) q->h.cluster_size);
  if (q->h.version >= 3) {
    put_be64 (buf, q->h.incompatible_features | QCOW2_INCOMPAT_DIRTY);
    if (full_pwrite (q->fd, buf, 8, QCOW2_HDR_INCOMPATIBLE_FEATURES) == -1)
      return ferry_error_errno (errno, "%s: setting the dirty bit",
                                q->base.path);
  }
  return 0;
}

/* Options of create, parsed and checked. */
struct create_opts {
  uint32_t version;
  uint32_t cluster_bits;
  uint32_t refcount_order;
  uint8_t compression_type;
  bool lazy_refcounts, extended_l2;
  const char *prealloc;
  const char *backing_file, *backing_fmt;
};

/* Read and check the options of create. */
static int
parse_create_options (const char *path, struct option_list *opts,
                      struct create_opts *o)
{
  const char *s;
  uint64_t v;
  int r;

  memset (o, 0, sizeof *o);
  o->version = 3;
  o->cluster_bits = 16;
  o->refcount_order = 4;
  s = options_get (opts, "compat");
  if (s) {
    if (!strcmp (s, "0.10") || !strcmp (s, "v2"))
      o->version = 2;
    else if (!strcmp (s, "1.1") || !strcmp (s, "v3"))
      o->version = 3;
    else
      return ferry_error (EINVAL, "%s: compat=%s: expected 0.10 or 1.1",
                          path, s);
  }
  r = options_get_pow2 (opts, path, "cluster_size",
                        UINT64_C (1) << QCOW2_MIN_CLUSTER_BITS,
                        UINT64_C (1) << QCOW2_MAX_CLUSTER_BITS, &v);
  if (r == -1)
    return -1;
  if (r == 1)
    o->cluster_bits = __builtin_ctzll (v);
  s = options_get (opts, "refcount_bits");
  if (s) {
    char *end;
    unsigned long bits = strtoul (s, &end, 10);
    if (*end || !is_power_of_2 (bits) || bits > 64)
      return ferry_error (EINVAL, "%s: refcount_bits=%s: expected 1, 2, 4, "
                          "8, 16, 32 or 64", path, s);
    o->refcount_order = __builtin_ctzl (bits);
    if (o->version == 2 && bits != 16)
      return ferry_error (EINVAL, "%s: refcount_bits=%s needs compat=1.1 "
                          "(version 2 images have 16-bit refcounts)", path, s);
  }
  s = options_get (opts, "compression_type");
  if (s) {
    if (!strcmp (s, "zlib"))
      o->compression_type = QCOW2_COMPRESSION_ZLIB;
    else if (!strcmp (s, "zstd"))
      o->compression_type = QCOW2_COMPRESSION_ZSTD;
    else
      return ferry_error (EINVAL, "%s: compression_type=%s: expected zlib or "
                          "zstd", path, s);
    if (o->version == 2 && o->compression_type != QCOW2_COMPRESSION_ZLIB)
      return ferry_error (EINVAL, "%s: compression_type=zstd needs compat=1.1",
                          path);
  }
  if (options_get_bool (opts, path, "lazy_refcounts",
                        &o->lazy_refcounts) == -1 ||
      options_get_bool (opts, path, "extended_l2", &o->extended_l2) == -1)
    return -1;
  if (o->version == 2 && o->lazy_refcounts)
    return ferry_error (EINVAL, "%s: lazy_refcounts=on needs compat=1.1",
                        path);
  if (o->extended_l2 && (o->version == 2 || o->cluster_bits < 14))
    return ferry_error (EINVAL, "%s: extended_l2=on needs compat=1.1 and "
                        "clusters of 16k or more", path);
  o->prealloc = options_get (opts, "preallocation");
  if (o->prealloc && strcmp (o->prealloc, "off") &&
      strcmp (o->prealloc, "metadata") && strcmp (o->prealloc, "falloc") &&
      strcmp (o->prealloc, "full"))
    return ferry_error (EINVAL, "%s: preallocation=%s: expected off, "
                        "metadata, falloc or full", path, o->prealloc);
  if (o->prealloc && !strcmp (o->prealloc, "off"))
    o->prealloc = NULL;
  o->backing_file = options_get (opts, "backing_file");
  o->backing_fmt = options_get (opts, "backing_fmt");
  if (o->prealloc && o->backing_file && !o->extended_l2)
    return ferry_error (EINVAL, "%s: preallocation=%s with a backing file "
                        "needs extended_l2=on (preallocated clusters would "
                        "hide the backing file)", path, o->prealloc);
  if (o->backing_fmt && !o->backing_file)
    return ferry_error (EINVAL, "%s: backing_fmt needs backing_file", path);
  if (o->backing_file && (!o->backing_file[0] ||
                          strlen (o->backing_file) > QCOW2_MAX_BACKING_NAME))
    return ferry_error (EINVAL, "%s: backing_file: expected a name of 1 to %d "
                        "bytes", path, QCOW2_MAX_BACKING_NAME);
  return 0;
}

/* Allocate every L2 table and data cluster of a new image; MODE
 * "falloc" reserves the data on disk, "full" writes its zeroes. */
static int
preallocate (struct qcow2_image *q, const char *mode)
{
  uint32_t cb = q->h.cluster_bits, cs = q->h.cluster_size, i, j;
  uint64_t nclusters = DIV_ROUND_UP (q->h.size, (uint64_t) cs), c = 0;
  uint64_t data_start, end;
  CLEANUP_FREE uint8_t *zeroes = NULL;
  int r;

  for (i = 0; i < q->h.l1_size; i++) {
    int s = qcow2_get_slot (q, i, true);
    if (s < 0)
      return -1;
    q->slots.ptr[s].host = q->alloc_end;
    q->l1[i] = q->alloc_end;
    q->alloc_end += cs;
  }
  data_start = q->alloc_end;
  for (i = 0; i < q->h.l1_size; i++) {
    uint64_t *e = q->slots.ptr[q->slot_of[i]].entries;
    for (j = 0; j < q->h.l2_entries && c < nclusters; j++, c++) {
      uint64_t entry = (data_start + (c << cb)) | QCOW2_L2E_COPIED;
      if (q->h.extended_l2) {
        /* With a backing file the subclusters stay unallocated, so that
         * it shows through until written. */
        e[j * 2] = entry;
        e[j * 2 + 1] = q->base.backing ? 0 : 0xffffffffu;
      }
      else
        e[j] = entry;
    }
  }
  q->alloc_end = data_start + (nclusters << cb);
  end = q->alloc_end;
  if (truncate_fd (q->fd, end) == -1)
    return ferry_error_errno (errno, "%s: setting the size to %" PRIu64,
                              q->base.path, end);
  if (!strcmp (mode, "falloc") || !strcmp (mode, "full")) {
    r = preallocate_fd (q->fd, data_start, end - data_start);
    if (r == -1 && strcmp (mode, "falloc") == 0)
      return ferry_error_errno (errno, "%s: preallocating %" PRIu64 " bytes",
                                q->base.path, end - data_start);
  }
  if (!strcmp (mode, "full")) {
    zeroes = calloc (1, BATCH_BYTES);
    if (zeroes == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    for (c = data_start; c < end; c += BATCH_BYTES)
      if (full_pwrite (q->fd, zeroes, MIN ((uint64_t) BATCH_BYTES, end - c),
                       c) == -1)
        return ferry_error_errno (errno, "%s: writing zeroes at offset 0x%"
                                  PRIx64, q->base.path, c);
  }
  return 0;
}

/* Create a new image; its header is written at the first flush or close. */
struct ferry_image *
qcow2_create (const char *path, int fd, uint64_t size,
              struct option_list *opts)
{
  struct open_args args = { .flags = 0 };
  struct qcow2_image *q = qcow2_alloc (fd);
  struct qcow2_header *h;
  struct create_opts o;
  uint64_t span, needed;
  CLEANUP_FREE uint8_t *hbuf = NULL;

  if (q == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    close (fd);
    return NULL;
  }
  h = &q->h;
  if (image_init_base (&q->base, &qcow2_driver, path, fd, false) == -1 ||
      parse_create_options (path, opts, &o) == -1)
    goto err;

  if (o.backing_file) {
    if (image_open_backing (&q->base, o.backing_file, o.backing_fmt,
                            &args) == -1)
      goto err;
    if (size == 0)
      size = q->base.backing->size;
    h->backing_file = strdup (o.backing_file);
    /* Record the format even when probed: qemu wants it named. */
    h->backing_format = strdup (o.backing_fmt ? o.backing_fmt :
                                ferry_image_format (q->base.backing));
    if (h->backing_file == NULL || h->backing_format == NULL) {
      ferry_error (ENOMEM, "%s: out of memory", path);
      goto err;
    }
  }

  /* qemu sees qcow2 disks in whole sectors (it drops a partial last
   * one), so round up as qemu-img create does. */
  if (size > UINT64_MAX - 511) {
    ferry_error (EFBIG, "%s: a virtual size of %" PRIu64 " bytes is too large",
                 path, size);
    goto err;
  }
  size = ROUND_UP (size, (uint64_t) 512);
  h->version = o.version;
  h->cluster_bits = o.cluster_bits;
  h->cluster_size = 1u << o.cluster_bits;
  h->size = size;
  h->refcount_order = o.refcount_order;
  h->header_length = o.version == 2 ? QCOW2_V2_HEADER_LENGTH :
    QCOW2_V3_HEADER_LENGTH_COMPRESSION;
  h->compression_type = o.compression_type;
  h->extended_l2 = o.extended_l2;
  h->l2_entry_size = o.extended_l2 ? 16 : 8;
  h->l2_entries = h->cluster_size / h->l2_entry_size;
  if (o.compression_type != QCOW2_COMPRESSION_ZLIB)
    h->incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
  if (o.extended_l2)
    h->incompatible_features |= QCOW2_INCOMPAT_EXTL2;
  if (o.lazy_refcounts)
    h->compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;

  span = (uint64_t) h->cluster_size * h->l2_entries;
  needed = size / span + (size % span != 0);
  if (needed > QCOW2_MAX_L1_BYTES / 8) {
    ferry_error (EFBIG, "%s: a virtual size of %" PRIu64 " bytes needs an L1 "
                 "table larger than %u bytes with %" PRIu32 "-byte clusters "
                 "(use a larger cluster_size)", path, size, QCOW2_MAX_L1_BYTES,
                 h->cluster_size);
    goto err;
  }
  h->l1_size = needed;
  h->l1_table_offset = h->cluster_size;
  hbuf = calloc (1, h->cluster_size);
  if (hbuf == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    goto err;
  }
  if (build_header (q, hbuf, h->cluster_size, 0, 0) == -1) {
    ferry_error (ENAMETOOLONG, "%s: the backing file name does not fit in the "
                 "header cluster of %" PRIu32 " bytes", path, h->cluster_size);
    goto err;
  }

  q->base.size = size;
  q->is_new = true;
  q->l1 = calloc (MAX (needed, (uint64_t) 1), sizeof *q->l1);
  if (q->l1 == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    goto err;
  }
  if (qcow2_setup (q) == NULL)
    goto err;
  init_write_state (q);
  q->l1_dirty = true;
  q->alloc_end = h->cluster_size +
    ROUND_UP (needed * 8, (uint64_t) h->cluster_size);
  if (o.prealloc && preallocate (q, o.prealloc) == -1)
    goto err;
  q->base.zero_initialized = q->base.backing == NULL;
  return &q->base;

 err:
  ferry_image_close (q->base.backing);
  free (q->base.path);
  qcow2_free (q);
  return NULL;
}
