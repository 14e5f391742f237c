/* qcow2: QEMU's copy-on-write format, read side (docs/interop/qcow2.txt).
 *
 * Versions 2 and 3, clusters of 512 B to 2 MiB, zero clusters,
 * compressed clusters (zlib and zstd), extended L2 entries with 32
 * subclusters, backing chains, external data files; internal snapshots
 * are listed and the active layer is read.  Writing lives in
 * qcow2-write.c, the header parser in qcow2-header.c.
 *
 * NOTES ON THE DESIGN
 *
 * 1. The L1 table is read whole at open (the header parser has checked
 *    that it fits in the file and in QCOW2_MAX_L1_BYTES).  L2 tables are
 *    read on demand into slots, indexed by L1 index, in host byte order.
 *    A read-only image keeps at most QCOW2_L2_CACHE_BYTES of them and
 *    evicts with the clock algorithm; a writable image keeps every table
 *    it has touched, because it writes them at flush.
 *
 * 2. One mutex guards the slots and all metadata.  A reader holds it
 *    only to turn a guest range into a run (qcow2_map: data at one host
 *    offset, zeroes, unallocated, or one compressed cluster), then reads
 *    the data without it.  Reading an L2 table from the file also drops
 *    the lock; whoever comes back second keeps the first copy.
 *
 * 3. Nothing read from the file is trusted: an L2 table or data cluster
 *    that is unaligned or lies past the end of the file is reported when
 *    it is reached, with its L1 and L2 index.
 *
 * 4. Each host cluster is claimed by the first structure that uses it
 *    (metadata, one data cluster, or compressed data), as tables are
 *    read, so a cluster claimed twice is refused.  A table that fails
 *    leaves no claims behind.  A read-only image validates each table
 *    when a read first reaches it; a writable one validates them all at
 *    open, before the dirty bit is set, since writes go in place.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include "hostfile.h"
#include "qcow2-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* Returned by qcow2_get_slot when the L1 entry is empty. */
#define NO_TABLE (-2)

/* A qcow2 file starts with the magic and a version we know; the magic
 * alone (qcow version 1, a future version) gets a lower score so that
 * open explains what is wrong instead of reading it as raw. */
static int
qcow2_probe (const uint8_t *head, size_t head_len, const uint8_t *tail,
             size_t tail_len, uint64_t file_size)
{
  uint32_t version, cluster_bits;

  if (head_len < 4 || get_be32 (head) != QCOW2_MAGIC)
    return 0;
  if (head_len < 24)            /* truncated: let open say so */
    return 50;
  version = get_be32 (head + QCOW2_HDR_VERSION);
  cluster_bits = get_be32 (head + QCOW2_HDR_CLUSTER_BITS);
  if ((version == 2 || version == 3) &&
      cluster_bits >= QCOW2_MIN_CLUSTER_BITS &&
      cluster_bits <= QCOW2_MAX_CLUSTER_BITS)
    return 100;
  return 50;
}

/* Free a libdeflate decompressor of the pool. */
static void
free_decompressor (void *d)
{
  libdeflate_free_decompressor (d);
}

/* Free a zstd decompression context of the pool. */
static void
free_dctx (void *d)
{
  ZSTD_freeDCtx (d);
}

/* The host offset past which nothing of this image's data may lie. */
static uint64_t
data_bound (const struct qcow2_image *q)
{
  if (q->base.readonly)
    return q->data_size;
  return q->has_data_file ? UINT64_MAX : q->alloc_end;
}

/* A free slot for a new table: a new one while under max_slots, else
 * the first unreferenced clean one the clock hand finds.  Lock held. */
static int
take_slot (struct qcow2_image *q)
{
  size_t i, n;

  if (q->slots.len < q->max_slots &&
      (q->slots.len < q->slots.cap ||
       generic_vector_reserve (&q->slots, 1, sizeof *q->slots.ptr) == 0)) {
    memset (&q->slots.ptr[q->slots.len], 0, sizeof *q->slots.ptr);
    return q->slots.len++;
  }
  if (!q->base.readonly || q->slots.len == 0)
    return ferry_error (ENOMEM, "%s: out of memory for L2 tables",
                        q->base.path);
  for (i = 0; i < 2 * q->slots.len + 1; i++) {
    struct qcow2_l2_slot *s = &q->slots.ptr[q->clock_hand];

    n = q->clock_hand;
    q->clock_hand = (q->clock_hand + 1) % q->slots.len;
    if (s->dirty)
      continue;
    if (s->referenced) {
      s->referenced = false;
      continue;
    }
    q->slot_of[s->l1_index] = -1;
    free (s->entries);
    memset (s, 0, sizeof *s);
    return n;
  }
  return ferry_error (ENOMEM, "%s: no L2 cache slot could be freed",
                      q->base.path);
}

enum claim {
  CLAIM_FREE = 0,
  CLAIM_META = 1,              /* header, L1, L2, refcount table or block */
  CLAIM_DATA = 2,
  CLAIM_COMPRESSED = 3,        /* may be shared by compressed clusters */
};

/* What a claim of KIND is called in messages. */
static const char *
claim_name (enum claim kind)
{
  switch (kind) {
  case CLAIM_META: return "metadata (the header, an L1, L2 or refcount "
      "table, or a refcount block)";
  case CLAIM_DATA: return "a data cluster of another L2 entry";
  case CLAIM_COMPRESSED: return "compressed data";
  default: return "nothing";
  }
}

/* Claim the host cluster at OFFSET for KIND.  Returns CLAIM_FREE when
 * that is fine (or when the cluster is past the file or beyond the
 * memory budget, so unknown), else what already holds it.  *NEWLY (may
 * be NULL) tells whether this call made the claim, which unclaim_cluster
 * can take back.  Lock held or single-threaded. */
static enum claim
claim_cluster (struct qcow2_image *q, uint64_t offset, enum claim kind,
               bool *newly)
{
  uint64_t c = offset >> q->h.cluster_bits;
  size_t chunk = c >> QCOW2_CLAIMS_CHUNK_BITS;
  size_t bytes = (1u << QCOW2_CLAIMS_CHUNK_BITS) / 4;
  unsigned shift = (c & 3) * 2;
  uint8_t *p;
  enum claim old;

  if (newly)
    *newly = false;
  if (offset >= q->file_size || q->claims == NULL)
    return CLAIM_FREE;
  if (q->claims[chunk] == NULL) {
    if (q->claims_bytes + bytes > QCOW2_CLAIMS_MAX_BYTES ||
        (q->claims[chunk] = calloc (1, bytes)) == NULL)
      return CLAIM_FREE;
    q->claims_bytes += bytes;
  }
  p = &q->claims[chunk][(c & ((1u << QCOW2_CLAIMS_CHUNK_BITS) - 1)) / 4];
  old = (*p >> shift) & 3;
  if (old == CLAIM_FREE) {
    *p |= kind << shift;
    if (newly)
      *newly = true;
    return CLAIM_FREE;
  }
  if (old == CLAIM_COMPRESSED && kind == CLAIM_COMPRESSED)
    return CLAIM_FREE;
  return old;
}

/* Take back the claim that claim_cluster made on the host cluster at
 * OFFSET (it said *NEWLY).  Lock held. */
static void
unclaim_cluster (struct qcow2_image *q, uint64_t offset)
{
  uint64_t c = offset >> q->h.cluster_bits;
  size_t chunk = c >> QCOW2_CLAIMS_CHUNK_BITS;

  q->claims[chunk][(c & ((1u << QCOW2_CLAIMS_CHUNK_BITS) - 1)) / 4] &=
    ~(3u << ((c & 3) * 2));
}

/* Claim the clusters of [OFFSET, OFFSET+LEN) as metadata WHAT. */
static int
claim_meta (struct qcow2_image *q, uint64_t offset, uint64_t len,
            const char *what)
{
  uint64_t pos;
  enum claim old;

  for (pos = ROUND_DOWN (offset, (uint64_t) q->h.cluster_size);
       pos < offset + len; pos += q->h.cluster_size)
    if ((old = claim_cluster (q, pos, CLAIM_META, NULL)) != CLAIM_FREE)
      return ferry_error (EINVAL, "%s: %s at offset 0x%" PRIx64 " overlaps "
                          "%s at offset 0x%" PRIx64, q->base.path, what,
                          offset, claim_name (old), pos);
  return 0;
}

/* Set up the claims map with the metadata the header points to: the
 * header, the L1 table, the refcount table and its blocks. */
static int
claims_init (struct qcow2_image *q)
{
  uint32_t cs = q->h.cluster_size;
  uint64_t nclusters = DIV_ROUND_UP (q->file_size, (uint64_t) cs);
  uint64_t rt_len = (uint64_t) q->h.refcount_table_clusters * cs, i;
  CLEANUP_FREE uint64_t *rt = NULL;

  q->validated = calloc (DIV_ROUND_UP (MAX (q->h.l1_size, 1u), 8), 1);
  q->nr_claim_chunks = DIV_ROUND_UP (MAX (nclusters, (uint64_t) 1),
                                     1ull << QCOW2_CLAIMS_CHUNK_BITS);
  q->claims = calloc (q->nr_claim_chunks, sizeof *q->claims);
  if (q->validated == NULL || q->claims == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
  if (claim_meta (q, 0, cs, "the header") == -1 ||
      claim_meta (q, q->h.l1_table_offset, (uint64_t) q->h.l1_size * 8,
                  "the L1 table") == -1 ||
      claim_meta (q, q->h.refcount_table_offset, rt_len,
                  "the refcount table") == -1)
    return -1;

  /* The header parser checked that the table lies in the file. */
  rt = malloc (rt_len);
  if (rt == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
  if (full_pread (q->fd, rt, rt_len, q->start + q->h.refcount_table_offset) == -1)
    return ferry_error_errno (errno, "%s: reading the refcount table at "
                              "offset 0x%" PRIx64, q->base.path,
                              q->h.refcount_table_offset);
  for (i = 0; i < rt_len / 8; i++) {
    uint64_t block = be64toh (rt[i]) & QCOW2_REFT_OFFSET_MASK;
    enum claim old;
    if (block == 0 || !IS_ALIGNED (block, cs) || block >= q->file_size)
      continue;                 /* only the checker cares */
    if ((old = claim_cluster (q, block, CLAIM_META, NULL)) != CLAIM_FREE)
      return ferry_error (EINVAL, "%s: refcount table entry %" PRIu64
                          " points to a refcount block at offset 0x%" PRIx64
                          " that is also %s", q->base.path, i, block,
                          claim_name (old));
  }
  return 0;
}

/* The claims one L2 table makes, noted so that they can be taken back
 * when the table turns out to be bad. */
struct claim_log {
  uint64_t *offsets;           /* host clusters this table claimed first */
  size_t len;
};

/* Claim the host cluster at OFFSET for KIND and note it in LOG when the
 * claim is new; what already holds it, as claim_cluster says. */
static enum claim
claim_logged (struct qcow2_image *q, uint64_t offset, enum claim kind,
              struct claim_log *log)
{
  bool newly;
  enum claim old = claim_cluster (q, offset, kind, &newly);

  if (newly)
    log->offsets[log->len++] = offset;
  return old;
}

/* Claim, for the L2 table of L1 entry L1I (at L2_OFF, entries E), its own
 * cluster and its data clusters, noting each new claim in LOG. */
static int
claim_table (struct qcow2_image *q, uint32_t l1i, uint64_t l2_off,
             const uint64_t *e, struct claim_log *log)
{
  uint32_t cs = q->h.cluster_size, i;
  unsigned w = qcow2_entry_words (q);
  enum claim old;

  if ((old = claim_logged (q, l2_off, CLAIM_META, log)) != CLAIM_FREE)
    return ferry_error (EINVAL, "%s: the L2 table of L1 entry %" PRIu32
                        " at offset 0x%" PRIx64 " is also %s", q->base.path,
                        l1i, l2_off, claim_name (old));
  for (i = 0; i < q->h.l2_entries; i++) {
    uint64_t word = e[(size_t) i * w], host, end, pos;
    if (word & QCOW2_L2E_COMPRESSED) {
      host = qcow2_compressed_offset (&q->h, word);
      end = host + qcow2_compressed_length (&q->h, word);
      /* As for data clusters below: refused now when writable. */
      if (!q->base.readonly && q->has_data_file)
        return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 "
                            "table of L1 entry %" PRIu32 " is compressed, "
                            "which images with an external data file cannot "
                            "hold", q->base.path, i, l1i);
      if (!q->base.readonly && (host < cs || host >= q->file_size))
        return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 "
                            "table of L1 entry %" PRIu32 " points to "
                            "compressed data at offset 0x%" PRIx64 " outside "
                            "the file (size 0x%" PRIx64 ")", q->base.path, i,
                            l1i, host, q->file_size);
      for (pos = ROUND_DOWN (host & ~511ull, (uint64_t) cs); pos < end;
           pos += cs)
        if ((old = claim_logged (q, pos, CLAIM_COMPRESSED, log)) !=
            CLAIM_FREE)
          return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 "
                              "table of L1 entry %" PRIu32 " points to "
                              "compressed data at offset 0x%" PRIx64 " in "
                              "a cluster that is also %s", q->base.path, i,
                              l1i, host, claim_name (old));
      continue;
    }
    host = word & QCOW2_L2E_OFFSET_MASK;
    if (!q->base.readonly && q->h.extended_l2) {
      /* Writing trusts the allocation bits to tell what a partial
       * write must keep; reading checks them as it goes. */
      uint64_t bitmap = e[(size_t) i * 2 + 1];
      if ((bitmap & (bitmap >> 32) & 0xffffffff) ||
          ((bitmap & 0xffffffff) && host == 0 && !q->has_data_file))
        return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 "
                            "table of L1 entry %" PRIu32 " has the "
                            "subcluster bitmap 0x%016" PRIx64 ", which marks "
                            "subclusters %s", q->base.path, i, l1i, bitmap,
                            host == 0 ? "allocated without a host cluster" :
                            "both allocated and zero");
    }
    if (host == 0 || q->has_data_file)
      continue;
    /* Reading reports these when it reaches them; writing in place
     * (qcow2-write.c) trusts the table, so a writable image refuses
     * them now, before anything is written where they point. */
    if (!IS_ALIGNED (host, cs) || host >= q->file_size) {
      if (q->base.readonly)
        continue;
      return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 table "
                          "of L1 entry %" PRIu32 " points to a data cluster "
                          "at offset 0x%" PRIx64 " that %s; ferry does not "
                          "write through it", q->base.path, i, l1i, host,
                          IS_ALIGNED (host, cs) ?
                          "is past the end of the file" :
                          "is not aligned to a cluster");
    }
    if ((old = claim_logged (q, host, CLAIM_DATA, log)) != CLAIM_FREE)
      return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 table "
                          "of L1 entry %" PRIu32 " points to the host cluster "
                          "at offset 0x%" PRIx64 ", which is also %s",
                          q->base.path, i, l1i, host, claim_name (old));
  }
  return 0;
}

/* Claim what the L2 table of L1 entry L1I (at L2_OFF, entries E) uses,
 * the first time it is read.  A table found bad leaves no claims behind,
 * so the next read of it finds the same fault, not its own claims. */
static int
validate_table (struct qcow2_image *q, uint32_t l1i, uint64_t l2_off,
                const uint64_t *e)
{
  struct claim_log log = { .len = 0 };
  size_t i;

  if (q->claims == NULL || (q->validated[l1i / 8] >> (l1i % 8)) & 1)
    return 0;
  /* The table's own cluster, and at most three host clusters for each
   * entry (compressed data spans up to two clusters' worth of bytes). */
  log.offsets = malloc ((1 + 3 * (size_t) q->h.l2_entries) *
                        sizeof *log.offsets);
  if (log.offsets == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
  if (claim_table (q, l1i, l2_off, e, &log) == -1) {
    for (i = 0; i < log.len; i++)
      unclaim_cluster (q, log.offsets[i]);
    free (log.offsets);
    return -1;
  }
  free (log.offsets);
  q->validated[l1i / 8] |= 1 << (l1i % 8);
  return 0;
}

/* Check that L1 entry L1_INDEX's L2 table, at L2_OFF, is a whole cluster
 * of the file after the header. */
static int
check_l2_offset (struct qcow2_image *q, uint32_t l1_index, uint64_t l2_off)
{
  uint32_t cs = q->h.cluster_size;

  if (!IS_ALIGNED (l2_off, cs) || l2_off < cs)
    return ferry_error (EINVAL, "%s: L1 entry %" PRIu32 " (L1 table at "
                        "offset 0x%" PRIx64 ") points to an L2 table at "
                        "offset 0x%" PRIx64 " that is not aligned to a "
                        "cluster or overlaps the header", q->base.path,
                        l1_index, q->h.l1_table_offset, l2_off);
  if (l2_off > q->file_size || cs > q->file_size - l2_off)
    return ferry_error (EINVAL, "%s: L1 entry %" PRIu32 " (L1 table at "
                        "offset 0x%" PRIx64 ") points to an L2 table at "
                        "offset 0x%" PRIx64 " past the end of the file "
                        "(size 0x%" PRIx64 ")", q->base.path, l1_index,
                        q->h.l1_table_offset, l2_off, q->file_size);
  return 0;
}

/* Validate every L2 table of the file (note 4), for an image about to
 * be written: writes go in place where the tables say, so they must all
 * be known sound first, not only those the writes reach (two L1 entries
 * sharing a table, or an L2 entry sharing a data cluster with one in a
 * table never read, would otherwise carry a write to a second place).
 * Reads each table once and keeps none of them. */
int
qcow2_validate_all_tables (struct qcow2_image *q)
{
  uint32_t cs = q->h.cluster_size, i;
  size_t j, nwords = (size_t) q->h.l2_entries * qcow2_entry_words (q);
  CLEANUP_FREE uint64_t *buf = malloc (cs);

  if (buf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
  for (i = 0; i < q->h.l1_size; i++) {
    uint64_t l2_off = q->l1[i] & QCOW2_L1E_OFFSET_MASK;

    if (l2_off == 0)
      continue;
    if (check_l2_offset (q, i, l2_off) == -1)
      return -1;
    if (full_pread (q->fd, buf, cs, q->start + l2_off) == -1)
      return ferry_error_errno (errno, "%s: reading the L2 table at offset "
                                "0x%" PRIx64 " (L1 entry %" PRIu32 ")",
                                q->base.path, l2_off, i);
    for (j = 0; j < nwords; j++)
      buf[j] = be64toh (buf[j]);
    if (validate_table (q, i, l2_off, buf) == -1)
      return -1;
  }
  return 0;
}

/* The slot holding the L2 table of L1 entry L1_INDEX, read from the file
 * or (CREATE) made empty; NO_TABLE when there is none.  Lock held; it is
 * dropped while the table is read. */
int
qcow2_get_slot (struct qcow2_image *q, uint32_t l1_index, bool create)
{
  uint32_t cs = q->h.cluster_size;
  uint64_t l2_off = q->l1[l1_index] & QCOW2_L1E_OFFSET_MASK;
  uint64_t *entries;
  size_t i, nwords = (size_t) q->h.l2_entries * qcow2_entry_words (q);
  int s, r;

  s = q->slot_of[l1_index];
  if (s >= 0) {
    q->slots.ptr[s].referenced = true;
    return s;
  }

  if (l2_off == 0) {
    if (!create)
      return NO_TABLE;
    entries = calloc (nwords, sizeof *entries);
    if (entries == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
  }
  else {
    if (check_l2_offset (q, l1_index, l2_off) == -1)
      return -1;
    entries = malloc (cs);
    if (entries == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    pthread_mutex_unlock (&q->lock);
    r = full_pread (q->fd, entries, cs, q->start + l2_off);
    pthread_mutex_lock (&q->lock);
    if (r == -1) {
      ferry_error_errno (errno, "%s: reading the L2 table at offset 0x%"
                         PRIx64 " (L1 entry %" PRIu32 ")", q->base.path,
                         l2_off, l1_index);
      free (entries);
      return -1;
    }
    s = q->slot_of[l1_index];
    if (s >= 0) {               /* another thread was quicker */
      free (entries);
      q->slots.ptr[s].referenced = true;
      return s;
    }
    for (i = 0; i < nwords; i++)
      entries[i] = be64toh (entries[i]);
    if (validate_table (q, l1_index, l2_off, entries) == -1) {
      free (entries);
      return -1;
    }
  }

  s = take_slot (q);
  if (s == -1) {
    free (entries);
    return -1;
  }
  q->slots.ptr[s].l1_index = l1_index;
  q->slots.ptr[s].entries = entries;
  q->slots.ptr[s].host = l2_off;
  q->slots.ptr[s].referenced = true;
  q->slots.ptr[s].dirty = l2_off == 0;
  q->slot_of[l1_index] = s;
  return s;
}

/* Classify the allocation unit at guest offset POS of the table E (of
 * L1 index L1I): fill RUN's kind, host and preallocated.  Lock held.
 * Every field of RUN is set first, on the error paths too: the compiler
 * cannot see that ferry_error returns -1, so a field left unset there is
 * one a caller might read (gcc -O3 says so). */
static int
classify (struct qcow2_image *q, const uint64_t *e, uint32_t l1i,
          uint64_t pos, struct qcow2_run *run)
{
  uint32_t cb = q->h.cluster_bits;
  uint32_t l2i = (pos >> cb) & (q->h.l2_entries - 1);
  uint64_t in_cluster = pos & (q->h.cluster_size - 1);
  uint64_t word = e[(size_t) l2i * qcow2_entry_words (q)];
  uint64_t host = word & QCOW2_L2E_OFFSET_MASK;
  bool data;

  *run = (struct qcow2_run) {
    .kind = QCOW2_RUN_UNALLOC,
    .l1_index = l1i,
    .l2_index = l2i,
  };
  if (word & QCOW2_L2E_COMPRESSED) {
    if (q->has_data_file)
      return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 table "
                          "of L1 entry %" PRIu32 " is compressed, which "
                          "images with an external data file cannot hold",
                          q->base.path, l2i, l1i);
    run->kind = QCOW2_RUN_COMPRESSED;
    run->host = word;
    return 0;
  }
  if (q->h.extended_l2) {
    uint64_t bitmap = e[(size_t) l2i * 2 + 1];
    unsigned sub = in_cluster >> q->unit_bits;
    bool alloc = (bitmap >> sub) & 1, zero = (bitmap >> (32 + sub)) & 1;
    if (alloc && zero)
      return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 table "
                          "of L1 entry %" PRIu32 " marks subcluster %u both "
                          "allocated and zero (bitmap 0x%016" PRIx64 ")",
                          q->base.path, l2i, l1i, sub, bitmap);
    if (zero) {
      run->kind = QCOW2_RUN_ZERO;
      run->preallocated = host != 0;
      return 0;
    }
    data = alloc;
    if (data && host == 0 && !(q->has_data_file && (word & QCOW2_L2E_COPIED)))
      return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 table "
                          "of L1 entry %" PRIu32 " has allocated subclusters "
                          "but no host offset", q->base.path, l2i, l1i);
  }
  else {
    if (q->h.version >= 3 && (word & QCOW2_L2E_ZERO)) {
      run->kind = QCOW2_RUN_ZERO;
      run->preallocated = host != 0;
      return 0;
    }
    data = host != 0 || (q->has_data_file && (word & QCOW2_L2E_COPIED));
  }
  if (!data) {
    run->kind = QCOW2_RUN_UNALLOC;
    return 0;
  }
  if (!IS_ALIGNED (host, q->h.cluster_size))
    return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 table of "
                        "L1 entry %" PRIu32 " points to offset 0x%" PRIx64
                        ", which is not aligned to a cluster", q->base.path,
                        l2i, l1i, host);
  if (host >= data_bound (q))
    return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 table of "
                        "L1 entry %" PRIu32 " points to a data cluster at "
                        "offset 0x%" PRIx64 " past the end of the %s "
                        "(size 0x%" PRIx64 ")", q->base.path, l2i, l1i, host,
                        q->has_data_file ? "data file" : "file",
                        data_bound (q));
  run->kind = QCOW2_RUN_DATA;
  run->host = host + in_cluster;
  return 0;
}

/* Describe the longest run from guest OFFSET (at most MAX_LEN bytes, within
 * one L2 table) stored one way. */
int
qcow2_map (struct qcow2_image *q, uint64_t offset, uint64_t max_len,
           struct qcow2_run *run)
{
  uint32_t cb = q->h.cluster_bits;
  uint64_t l1i = offset >> (cb + q->l2_bits);
  uint64_t table_end = (l1i + 1) << (cb + q->l2_bits);
  uint64_t end = max_len > table_end - offset ? table_end : offset + max_len;
  uint64_t unit = 1ull << q->unit_bits, pos;
  const uint64_t *e;
  struct qcow2_run next;
  int s;

  memset (run, 0, sizeof *run);
  if (l1i >= q->h.l1_size) {    /* past what L1 maps: nothing there */
    run->kind = QCOW2_RUN_UNALLOC;
    run->length = end - offset;
    return 0;
  }

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
  s = qcow2_get_slot (q, l1i, false);
  if (s == -1)
    return -1;
  if (s == NO_TABLE) {
    run->kind = QCOW2_RUN_UNALLOC;
    run->l1_index = l1i;
    run->length = end - offset;
    return 0;
  }
  e = q->slots.ptr[s].entries;
  if (classify (q, e, l1i, offset, run) == -1)
    return -1;
  if (run->kind == QCOW2_RUN_COMPRESSED) {
    uint64_t cluster_end = ROUND_DOWN (offset, q->h.cluster_size) +
      q->h.cluster_size;
    run->length = MIN (end, cluster_end) - offset;
    run->bound = q->base.readonly ? q->file_size : q->alloc_end;
    return 0;
  }

  /* Extend the run unit by unit while the kind stays the same and data
   * stays contiguous in the file. */
  pos = ROUND_DOWN (offset, unit) + unit;
  while (pos < end) {
    if (classify (q, e, l1i, pos, &next) == -1)
      return -1;
    if (next.kind != run->kind ||
        (next.kind == QCOW2_RUN_DATA && next.host != run->host + (pos - offset))
        || (next.kind == QCOW2_RUN_ZERO &&
            next.preallocated != run->preallocated))
      break;
    pos += unit;
  }
  run->length = MIN (pos, end) - offset;
  return 0;
}

/* Inflate a raw deflate stream with zlib, for streams libdeflate would
 * not take: qemu accepts a stream that fills the cluster without its
 * final block. */
static int
inflate_with_zlib (const uint8_t *in, size_t in_len, uint8_t *out,
                   size_t out_len)
{
  z_stream z;
  int r;

  memset (&z, 0, sizeof z);
  if (inflateInit2 (&z, -15) != Z_OK)
    return -1;
  z.next_in = (uint8_t *) in;
  z.avail_in = in_len;
  z.next_out = out;
  z.avail_out = out_len;
  r = inflate (&z, Z_FINISH);
  inflateEnd (&z);
  return (r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) &&
    z.avail_out == 0 ? 0 : -1;
}

/* Decompress the cluster of RUN (a compressed run) into OUT (a cluster),
 * using CBUF (two clusters) for the compressed bytes. */
static int
decompress_cluster (struct qcow2_image *q, const struct qcow2_run *run,
                    uint8_t *out, uint8_t *cbuf)
{
  uint32_t cs = q->h.cluster_size;
  uint64_t coff = qcow2_compressed_offset (&q->h, run->host);
  uint64_t clen = qcow2_compressed_length (&q->h, run->host);
  uint64_t bound = run->bound;
  bool ok = false;

  if (coff >= bound || coff < cs)
    return ferry_error (EINVAL, "%s: L2 entry %" PRIu32 " of the L2 table of "
                        "L1 entry %" PRIu32 " points to compressed data at "
                        "offset 0x%" PRIx64 " outside the file (size 0x%"
                        PRIx64 ")", q->base.path, run->l2_index,
                        run->l1_index, coff, bound);
  clen = MIN (clen, bound - coff);
  clen = MIN (clen, 2 * (uint64_t) cs);
  if (full_pread (q->fd, cbuf, clen, q->start + coff) == -1)
    return ferry_error_errno (errno, "%s: reading compressed cluster at "
                              "offset 0x%" PRIx64, q->base.path, coff);

  if (q->h.compression_type == QCOW2_COMPRESSION_ZLIB) {
    struct libdeflate_decompressor *d = pool_get (&q->dpool);
    size_t in_used, out_len;
    if (d == NULL)
      d = libdeflate_alloc_decompressor ();
    if (d == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    ok = libdeflate_deflate_decompress_ex (d, cbuf, clen, out, cs, &in_used,
                                           &out_len) == LIBDEFLATE_SUCCESS &&
      out_len == cs;
    pool_put (&q->dpool, d, free_decompressor);
    if (!ok)
      ok = inflate_with_zlib (cbuf, clen, out, cs) == 0;
  }
  else {
    ZSTD_DCtx *d = pool_get (&q->dpool);
    size_t frame, n;
    if (d == NULL)
      d = ZSTD_createDCtx ();
    if (d == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    /* The sectors hold the frame and whatever follows it. */
    frame = ZSTD_findFrameCompressedSize (cbuf, clen);
    if (!ZSTD_isError (frame)) {
      n = ZSTD_decompressDCtx (d, out, cs, cbuf, frame);
      ok = !ZSTD_isError (n) && n == cs;
    }
    pool_put (&q->dpool, d, free_dctx);
  }
  if (!ok)
    return ferry_error (EINVAL, "%s: compressed cluster of L2 entry %" PRIu32
                        " of the L2 table of L1 entry %" PRIu32 " at offset "
                        "0x%" PRIx64 " (%" PRIu64 " bytes) does not "
                        "decompress to a cluster with %s", q->base.path,
                        run->l2_index, run->l1_index, coff, clen,
                        q->h.compression_type == QCOW2_COMPRESSION_ZLIB ?
                        "zlib" : "zstd");
  return 0;
}

/* Read COUNT guest bytes at OFFSET, without checking the virtual size
 * (writes use it to read the parts of a cluster they keep). */
int
qcow2_read_range (struct qcow2_image *q, void *buf, uint64_t count,
                  uint64_t offset)
{
  CLEANUP_FREE uint8_t *ubuf = NULL;
  CLEANUP_FREE uint8_t *cbuf = NULL;
  uint32_t cs = q->h.cluster_size;
  uint8_t *p = buf;
  struct qcow2_run run;

  while (count > 0) {
    if (qcow2_map (q, offset, count, &run) == -1)
      return -1;
    switch (run.kind) {
    case QCOW2_RUN_DATA:
      if (full_pread (q->data_fd, p, run.length,
                      (q->data_fd == q->fd ? q->start : 0) + run.host) == -1)
        return ferry_error_errno (errno, "%s: reading %" PRIu64 " bytes at "
                                  "offset 0x%" PRIx64, q->base.path,
                                  run.length, run.host);
      break;
    case QCOW2_RUN_ZERO:
      memset (p, 0, run.length);
      break;
    case QCOW2_RUN_UNALLOC:
      if (image_backing_pread (&q->base, p, run.length, offset) == -1)
        return -1;
      break;
    case QCOW2_RUN_COMPRESSED:
      if (cbuf == NULL) {
        ubuf = malloc (cs);
        cbuf = malloc (2 * (size_t) cs);
        if (ubuf == NULL || cbuf == NULL)
          return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
      }
      if (run.length == cs) {
        if (decompress_cluster (q, &run, p, cbuf) == -1)
          return -1;
      }
      else {
        if (decompress_cluster (q, &run, ubuf, cbuf) == -1)
          return -1;
        memcpy (p, ubuf + (offset & (cs - 1)), run.length);
      }
      break;
    }
    p += run.length;
    offset += run.length;
    count -= run.length;
  }
  return 0;
}

/* The pread callback. */
static int
qcow2_pread (struct ferry_image *img, void *buf, size_t count,
             uint64_t offset)
{
  return qcow2_read_range ((struct qcow2_image *) img, buf, count, offset);
}

/* Report runs as extents, asking the backing file about unallocated
 * ones; stops after QCOW2_EXTENTS_MAX_TABLES tables or _RUNS runs. */
static int
qcow2_extents (struct ferry_image *img, uint64_t offset, uint64_t length,
               struct ferry_extent_list *list)
{
  struct qcow2_image *q = (struct qcow2_image *) img;
  uint64_t end = offset + length;
  uint64_t limit = offset + QCOW2_EXTENTS_MAX_TABLES * qcow2_table_span (q);
  struct qcow2_run run;
  unsigned runs = 0;
  uint32_t flags;

  if (limit > offset && limit < end)
    end = limit;
  while (offset < end && runs++ < QCOW2_EXTENTS_MAX_RUNS) {
    if (qcow2_map (q, offset, end - offset, &run) == -1)
      return -1;
    if (run.kind == QCOW2_RUN_UNALLOC) {
      uint64_t reached = 0;
      if (image_sub_extents (&q->base, q->base.backing, offset, run.length,
                             offset, list, &reached) == -1)
        return -1;
      if (reached < offset + run.length)
        return 0;               /* the caller asks again from there */
      offset += run.length;
      continue;
    }
    if (run.kind == QCOW2_RUN_ZERO)
      flags = run.preallocated ? FERRY_EXTENT_ZERO :
        FERRY_EXTENT_ZERO | FERRY_EXTENT_HOLE;
    else
      flags = 0;
    if (ferry_extent_list_append (list, offset, run.length, flags) == -1)
      return -1;
    offset += run.length;
  }
  return 0;
}

/* Free the snapshot list of describe. */
static void
free_snapshots (struct qcow2_image *q)
{
  size_t i;

  for (i = 0; i < q->nr_snapshots; i++) {
    free ((char *) q->snapshots[i].id);
    free ((char *) q->snapshots[i].name);
  }
  free (q->snapshots);
  q->snapshots = NULL;
  q->nr_snapshots = 0;
}

/* Read the snapshot table into q->snapshots. */
static int
load_snapshots (struct qcow2_image *q)
{
  uint64_t pos = q->h.snapshots_offset;
  uint8_t hdr[40];
  uint32_t i;

  free_snapshots (q);
  if (q->h.nb_snapshots == 0)
    return 0;
  q->snapshots = calloc (q->h.nb_snapshots, sizeof *q->snapshots);
  if (q->snapshots == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
  for (i = 0; i < q->h.nb_snapshots; i++) {
    struct ferry_snapshot *sn = &q->snapshots[i];
    CLEANUP_FREE uint8_t *rest = NULL;
    uint32_t extra, id_len, name_len, rest_len;

    if (pos > q->file_size || q->file_size - pos < sizeof hdr)
      return ferry_error (EINVAL, "%s: snapshot %" PRIu32 " at offset 0x%"
                          PRIx64 " runs past the end of the file (size 0x%"
                          PRIx64 ")", q->base.path, i, pos, q->file_size);
    if (full_pread (q->fd, hdr, sizeof hdr, q->start + pos) == -1)
      return ferry_error_errno (errno, "%s: reading snapshot %" PRIu32
                                " at offset 0x%" PRIx64, q->base.path, i, pos);
    id_len = get_be16 (hdr + 12);
    name_len = get_be16 (hdr + 14);
    extra = get_be32 (hdr + 36);
    if (extra > 1024)
      return ferry_error (EINVAL, "%s: snapshot %" PRIu32 " at offset 0x%"
                          PRIx64 " has %" PRIu32 " bytes of extra data (at "
                          "most 1024)", q->base.path, i, pos, extra);
    rest_len = extra + id_len + name_len;
    if (q->file_size - pos - sizeof hdr < rest_len)
      return ferry_error (EINVAL, "%s: snapshot %" PRIu32 " at offset 0x%"
                          PRIx64 " runs past the end of the file (size 0x%"
                          PRIx64 ")", q->base.path, i, pos, q->file_size);
    rest = malloc (rest_len + 1);
    if (rest == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    if (full_pread (q->fd, rest, rest_len, q->start + pos + sizeof hdr) == -1)
      return ferry_error_errno (errno, "%s: reading snapshot %" PRIu32
                                " at offset 0x%" PRIx64, q->base.path, i, pos);
    sn->date_sec = get_be32 (hdr + 16);
    sn->date_nsec = get_be32 (hdr + 20);
    sn->vm_clock_nsec = get_be64 (hdr + 24);
    sn->vm_state_size = get_be32 (hdr + 32);
    if (extra >= 8)
      sn->vm_state_size = get_be64 (rest);
    sn->disk_size = extra >= 16 ? get_be64 (rest + 8) : q->h.size;
    sn->id = strdup_counted ((char *) rest + extra, id_len);
    sn->name = strdup_counted ((char *) rest + extra + id_len, name_len);
    q->nr_snapshots++;
    if (sn->id == NULL || sn->name == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    pos += ROUND_UP (sizeof hdr + (uint64_t) rest_len, 8);
  }
  return 0;
}

/* Fill INFO and the facts, named as qemu-img info --output=json names them. */
static int
qcow2_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  struct qcow2_image *q = (struct qcow2_image *) img;
  const struct qcow2_header *h = &q->h;
  uint64_t incompat = h->incompatible_features;

  /* A window's share of the file's blocks is not known: count it all. */
  info->allocated = q->start ? q->file_size : file_allocated_bytes (q->fd);
  if (q->has_data_file)
    info->allocated += file_allocated_bytes (q->data_fd);
  info->cluster_size = h->cluster_size;
  info->backing_file = h->backing_file;
  info->backing_format = h->backing_format;
  info->data_file = h->data_file;
  if (load_snapshots (q) == -1)
    return -1;
  info->snapshots = q->snapshots;
  info->nr_snapshots = q->nr_snapshots;

  if (image_fact_string (img, "compat", h->version == 2 ? "0.10" : "1.1") ||
      image_fact_string (img, "compression-type",
                         h->compression_type == QCOW2_COMPRESSION_ZSTD ?
                         "zstd" : "zlib") ||
      image_fact_number (img, "refcount-bits", 1ull << h->refcount_order) ||
      image_fact_bool (img, "extended-l2", h->extended_l2) ||
      image_fact_bool (img, "lazy-refcounts",
                       h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS) ||
      image_fact_bool (img, "dirty", incompat & QCOW2_INCOMPAT_DIRTY) ||
      image_fact_bool (img, "corrupt", incompat & QCOW2_INCOMPAT_CORRUPT))
    return -1;
  if (q->has_data_file &&
      ((h->data_file && image_fact_string (img, "data-file", h->data_file)) ||
       image_fact_bool (img, "data-file-raw", q->data_raw)))
    return -1;
  if (h->has_bitmaps && image_fact_bool (img, "bitmaps", true))
    return -1;
  return 0;
}

/* Free Q and everything it holds, closing the files still open. */
void
qcow2_free (struct qcow2_image *q)
{
  size_t i;

  pool_drain (&q->dpool, q->h.compression_type == QCOW2_COMPRESSION_ZSTD ?
              free_dctx : free_decompressor);
  qcow2_free_compressors (q);
  pthread_mutex_destroy (&q->dpool.lock);
  pthread_mutex_destroy (&q->cpool.lock);
  pthread_mutex_destroy (&q->lock);
  for (i = 0; i < q->slots.len; i++)
    free (q->slots.ptr[i].entries);
  free (q->slots.ptr);
  free (q->slot_of);
  free (q->l1);
  for (i = 0; i < q->nr_claim_chunks; i++)
    free (q->claims[i]);
  free (q->claims);
  free (q->validated);
  free_snapshots (q);
  if (q->data_fd >= 0 && q->data_fd != q->fd)
    close (q->data_fd);
  if (q->fd >= 0)
    close (q->fd);
  qcow2_header_free (&q->h);
  free (q);
}

/* Derive the geometry from q->h and set up the L2 slots; for open and
 * create.  NULL on error. */
struct ferry_image *
qcow2_setup (struct qcow2_image *q)
{
  uint32_t i;

  q->l2_bits = __builtin_ctz (q->h.l2_entries);
  q->unit_bits = q->h.cluster_bits - (q->h.extended_l2 ? 5 : 0);
  q->max_slots = q->base.readonly ?
    MAX (QCOW2_L2_CACHE_BYTES >> q->h.cluster_bits, 4u) : SIZE_MAX;
  q->slot_of = malloc (MAX (q->h.l1_size, 1u) * sizeof *q->slot_of);
  if (q->slot_of == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", q->base.path);
    return NULL;
  }
  for (i = 0; i < q->h.l1_size; i++)
    q->slot_of[i] = -1;
  return &q->base;
}

/* Read the L1 table into q->l1, in host byte order. */
static int
load_l1 (struct qcow2_image *q)
{
  size_t i, n = q->h.l1_size;

  q->l1 = malloc (MAX (n, (size_t) 1) * sizeof *q->l1);
  if (q->l1 == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
  if (n && full_pread (q->fd, q->l1, n * 8,
                   q->start + q->h.l1_table_offset) == -1)
    return ferry_error_errno (errno, "%s: reading the L1 table at offset 0x%"
                              PRIx64, q->base.path, q->h.l1_table_offset);
  for (i = 0; i < n; i++)
    q->l1[i] = be64toh (q->l1[i]);
  return 0;
}

/* Open the external data file named in the header, locked as the image
 * (open FLAGS). */
static int
open_data_file (struct qcow2_image *q, unsigned flags)
{
  CLEANUP_FREE char *path = NULL;
  struct stat st;

  if (q->h.data_file == NULL)
    return ferry_error (EINVAL, "%s: the image has the external data file "
                        "bit set but names no data file", q->base.path);
  if (image_refuse_uri (q->base.path, "external data file",
                        q->h.data_file) == -1)
    return -1;
  path = image_resolve_relative (q->base.path, q->h.data_file);
  if (path == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", q->base.path);
  q->data_fd = hostfile_open_locked (path, flags, false, &st);
  if (q->data_fd == -1) {
    ferry_error_prefix ("%s: external data file", q->base.path);
    return -1;
  }
  if (hostfile_size (q->data_fd, path, &q->data_size) == -1)
    return -1;
  q->has_data_file = true;
  q->data_raw = (q->h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) != 0;
  return 0;
}

/* Allocate Q with its locks, for open and create; FD is owned by it. */
struct qcow2_image *
qcow2_alloc (int fd)
{
  struct qcow2_image *q = calloc (1, sizeof *q);

  if (q == NULL)
    return NULL;
  q->fd = fd;
  q->data_fd = fd;
  pthread_mutex_init (&q->lock, NULL);
  pthread_mutex_init (&q->dpool.lock, NULL);
  pthread_mutex_init (&q->cpool.lock, NULL);
  return q;
}

/* Open an existing image, its data file and its backing chain. */
static struct ferry_image *
qcow2_open (const char *path, int fd, const struct open_args *args)
{
  bool writable = args->flags & FERRY_OPEN_WRITE;
  struct qcow2_image *q = qcow2_alloc (fd);

  if (q == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    close (fd);
    return NULL;
  }
  if (image_init_base (&q->base, &qcow2_driver, path, fd, !writable) == -1)
    goto err;
  if (hostfile_size (fd, path, &q->file_size) == -1)
    goto err;
  if (args->windowed) {
    /* A disk inside an OVA: the window is the whole file. */
    q->start = args->window_start;
    q->file_size = args->window_length;
  }
  q->data_size = q->file_size;
  if (qcow2_read_header (path, fd, q->start, q->file_size, &q->h,
                         NULL) == -1)
    goto err;
  if (q->h.crypt_method != 0) {
    ferry_error (ENOTSUP, "%s: qcow2 header at offset 0x%x: the image is "
                 "encrypted (%s), which ferry does not support", path,
                 QCOW2_HDR_CRYPT_METHOD,
                 q->h.crypt_method == 1 ? "AES" : "LUKS");
    goto err;
  }
  if (qcow2_check_tables (path, q->file_size, &q->h) == -1)
    goto err;
  if (args->windowed &&
      (q->h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE)) {
    ferry_error (ENOTSUP, "%s: the qcow2 image at offset %" PRIu64 " keeps "
                 "its data in an external file, which an archive does not "
                 "hold", path, q->start);
    goto err;
  }
  if ((q->h.incompatible_features & QCOW2_INCOMPAT_CORRUPT) &&
      (writable || (args->flags & FERRY_OPEN_STRICT))) {
    ferry_error (EINVAL, "%s: qcow2 header at offset 0x%x has the corrupt "
                 "bit set: the image may be inconsistent (run ferry check)",
                 path, QCOW2_HDR_INCOMPATIBLE_FEATURES);
    goto err;
  }
  q->base.size = q->h.size;
  if ((q->h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) &&
      open_data_file (q, args->flags) == -1)
    goto err;
  if (qcow2_setup (q) == NULL || load_l1 (q) == -1 || claims_init (q) == -1)
    goto err;
  if (q->h.backing_file &&
      image_open_backing (&q->base, q->h.backing_file, q->h.backing_format,
                          args) == -1)
    goto err;
  if (writable && q->h.backing_file && q->base.backing == NULL) {
    /* Partial writes fill clusters from the backing file. */
    ferry_error (EINVAL, "%s: writing needs the backing file '%s' open "
                 "(FERRY_OPEN_NO_BACKING was given)", path, q->h.backing_file);
    goto err;
  }
  if (writable && qcow2_open_for_write (q) == -1)
    goto err;
  return &q->base;

 err:
  image_base_discard (&q->base);
  qcow2_free (q);
  return NULL;
}

/* Finish a writable image (tables, refcounts, header) and free it all. */
static int
qcow2_close (struct ferry_image *img)
{
  struct qcow2_image *q = (struct qcow2_image *) img;
  int r = 0;

  if (!img->readonly) {
    r = qcow2_finish (q);
    if (q->data_fd != q->fd && close (q->data_fd) == -1 && r == 0)
      r = ferry_error_errno (errno, "%s: closing the data file", img->path);
    q->data_fd = -1;
    if (close (q->fd) == -1 && r == 0)
      r = ferry_error_errno (errno, "%s: close", img->path);
    q->fd = -1;
  }
  qcow2_free (q);
  return r;
}

/* The external data file, for image_for_each_file. */
static int
qcow2_files (struct ferry_image *img, image_file_fn fn, void *opaque)
{
  struct qcow2_image *q = (struct qcow2_image *) img;
  CLEANUP_FREE char *path = NULL;

  if (!q->has_data_file || q->data_fd == q->fd)
    return 0;
  path = image_resolve_relative (img->path, q->h.data_file);
  return image_file_of_fd (q->data_fd, path ? path : img->path, fn, opaque);
}

const struct image_driver qcow2_driver = {
  .name = "qcow2",
  .backing_word = "backing file",
  .probe = qcow2_probe,
  .windows = true,
  .open = qcow2_open,
  .create = qcow2_create,
  .pread = qcow2_pread,
  .pwrite = qcow2_pwrite,
  .zero = qcow2_zero,
  .extents = qcow2_extents,
  .compress_unit = qcow2_compress_unit,
  .compress_bound = qcow2_compress_bound,
  .compress = qcow2_compress,
  .write_compressed = qcow2_write_compressed,
  .flush = qcow2_flush,
  .close = qcow2_close,
  .describe = qcow2_describe,
  .check = qcow2_check,
  .files = qcow2_files,
};
