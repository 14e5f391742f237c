/* qcow2 check: `ferry check` for qcow2 images.
 *
 * It walks every structure of the file without trusting any of it (the
 * header, the refcount table and blocks, the active and snapshot L1 and
 * L2 tables, data and compressed clusters, bitmaps, the encryption
 * header), counts how often each host cluster is referenced, compares
 * the counts with the stored refcounts, and reports each problem with
 * check_report(), one line naming the structure and its offset.  The
 * header is decoded by qcow2_read_header, as open decodes it, which
 * reports each fault it finds in open's words.
 *
 * NOTES ON THE DESIGN
 *
 * 1. Classification follows qemu-img check, which users compare us with.
 *    A stored refcount lower than the references found is corruption (a
 *    write could free a cluster still in use); a higher one is a leak
 *    (space wasted, no harm), whether or not the cluster has any user.
 *    Anything structurally wrong is corruption: tables misaligned or past
 *    the end of the file, reserved bits set, metadata overlapping other
 *    metadata or data, a COPIED flag that disagrees with the refcount.
 *
 * 2. Memory is bounded by the file, never by what the header claims: a
 *    32-bit reference counter and a byte of flags per cluster of the file
 *    (MAX_CLUSTERS caps that), and two cluster buffers.  Tables are read
 *    a cluster at a time.  References past the end of the file are
 *    reported instead of counted.
 *
 * 3. Time is bounded too.  A cluster is read as a table (L1, L2, refcount
 *    or bitmap table) once at most: a second claim is an overlap, reported,
 *    and the table that makes it is walked no further.  An L2 table that several L1 entries point at
 *    (snapshots share them) is walked once; the references it passes on
 *    to its clusters for the other L1 entries are added in one later pass
 *    (recount_shared_l2).  So no file, however crafted, gets a cluster
 *    read more than a few times.
 *
 * 4. Stored refcounts are read only at the end (compare_refcounts), one
 *    refcount block at a time.  The COPIED flags of the active tables are
 *    remembered until then as two bits per cluster, because checking them
 *    needs the stored refcount.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostfile.h"
#include "internal.h"
#include "qcow2-format.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* The most clusters of file whose references we count: 5 bytes each, so
 * at most 320 MiB, for a 32 GiB file of 512-byte clusters or 4 TiB of
 * 64 KiB ones. */
#define MAX_CLUSTERS (UINT64_C (1) << 26)

/* Reserved bits of L2 entries for standard clusters (bits 1-8, 56-61);
 * bit 0 is reserved too in version 2 and with extended L2 entries. */
#define L2E_STD_RESERVED   UINT64_C (0x3f000000000001fe)
/* Bits of a bitmap table entry that hold the data cluster's offset. */
#define BME_OFFSET_MASK    UINT64_C (0x00fffffffffffe00)
#define SNAPSHOT_HEADER_SIZE 40
#define BITMAP_ENTRY_HEADER_SIZE 24
#define BITMAP_FLAGS_KNOWN 0x7u

/* What a host cluster was first found to hold. */
enum kind {
  KIND_FREE = 0,
  KIND_HEADER,
  KIND_REFTABLE,
  KIND_REFBLOCK,
  KIND_L1,
  KIND_L2,
  KIND_DATA,
  KIND_COMPRESSED,
  KIND_SNAPTABLE,
  KIND_SNAP_L1,
  KIND_BITMAP_DIR,
  KIND_BITMAP_TABLE,
  KIND_BITMAP_DATA,
  KIND_CRYPTO,
};

static const char *const kind_names[] = {
  [KIND_FREE] = "free cluster",
  [KIND_HEADER] = "header",
  [KIND_REFTABLE] = "refcount table",
  [KIND_REFBLOCK] = "refcount block",
  [KIND_L1] = "active L1 table",
  [KIND_L2] = "L2 table",
  [KIND_DATA] = "data cluster",
  [KIND_COMPRESSED] = "compressed data",
  [KIND_SNAPTABLE] = "snapshot table",
  [KIND_SNAP_L1] = "L1 table of a snapshot",
  [KIND_BITMAP_DIR] = "bitmap directory",
  [KIND_BITMAP_TABLE] = "bitmap table",
  [KIND_BITMAP_DATA] = "bitmap data cluster",
  [KIND_CRYPTO] = "encryption header",
};

/* Per-cluster flags, beside the kind in the low four bits. */
#define F_KIND          0x0f
#define F_WALKED        0x10  /* read as a table (L1, L2, refcount table,
                                 bitmap table), or at the end as a
                                 refcount block */
#define F_OVERLAP       0x20  /* claimed by structures that may not share */
#define F_COPIED_SET    0x40  /* an active L1/L2 entry has COPIED set */
#define F_COPIED_CLEAR  0x80  /* an active L1/L2 entry lacks COPIED */

struct checker {
  const char *path;
  int fd;
  uint64_t file_size;
  struct ferry_check_result *r;

  /* The header, decoded by qcow2_read_header (qcow2-header.c), which
   * reported what is wrong in it. */
  struct qcow2_header h;
  uint64_t cs;                  /* cluster size */
  unsigned bits;                /* cluster bits */
  uint64_t nb_clusters;         /* of the file, the last one maybe partial */
  bool data_file;               /* guest data lives in an external file */
  bool refcount_order_ok;       /* refcount_order is 0..6 */

  uint32_t *refs;               /* references found, per cluster */
  uint8_t *flags;               /* kind and F_*, per cluster */
  uint8_t *table_buf;           /* one cluster, for walk_table */
  uint8_t *cluster_buf;         /* one cluster: L2 table, refcount block */
};

/* Report a problem; return -1 from the caller if even that fails. */
#define REPORT(c, corruption, ...)                                   \
  do {                                                               \
    if (check_report ((c)->r, (corruption), __VA_ARGS__) == -1)     \
      return -1;                                                     \
  } while (0)

/* Read COUNT bytes at OFFSET; past the end of the file reads zeroes. */
static int
read_at (struct checker *c, void *buf, size_t count, uint64_t offset)
{
  if (full_pread (c->fd, buf, count, offset) == -1)
    return ferry_error_errno (errno, "%s: read of %zu bytes at 0x%" PRIx64,
                              c->path, count, offset);
  return 0;
}

/* True when [OFFSET, OFFSET+LEN) reaches a cluster past the end of the
 * file.  As for qemu, the last cluster of the file may be partial. */
static bool
past_eof (const struct checker *c, uint64_t offset, uint64_t len)
{
  if (len == 0)
    len = 1;
  if (offset > UINT64_MAX - (len - 1))
    return true;
  return ((offset + len - 1) >> c->bits) >= c->nb_clusters;
}

/* Structures that may share a host cluster with others of their kind:
 * snapshots share L2 tables and data clusters with the active layer, and
 * compressed clusters pack several into one host cluster. */
static bool
kind_is_shareable (enum kind kind)
{
  return kind == KIND_L2 || kind == KIND_DATA || kind == KIND_COMPRESSED;
}

/* The first structure a marked range ran into. */
struct clash {
  enum kind kind;               /* KIND_FREE: none */
  uint64_t offset;              /* of its cluster */
};

/* Add ADD references to each cluster of [OFFSET, OFFSET+LEN) inside the
 * file.  With KIND other than KIND_FREE, also claim the clusters for that
 * kind and note in *CLASH the first one another structure had claimed. */
static void
mark_quiet (struct checker *c, uint64_t offset, uint64_t len, enum kind kind,
            uint32_t add, struct clash *clash)
{
  uint64_t first, last, i;

  if (len == 0)
    return;
  first = offset >> c->bits;
  if (offset > UINT64_MAX - (len - 1))
    last = UINT64_MAX >> c->bits;
  else
    last = (offset + len - 1) >> c->bits;
  for (i = first; i <= last && i < c->nb_clusters; i++) {
    enum kind prior = c->flags[i] & F_KIND;

    c->refs[i] = c->refs[i] > UINT32_MAX - add ? UINT32_MAX : c->refs[i] + add;
    if (kind == KIND_FREE)
      continue;
    if (prior == KIND_FREE)
      c->flags[i] |= kind;
    else if (prior != kind || !kind_is_shareable (kind)) {
      c->flags[i] |= F_OVERLAP;
      if (clash->kind == KIND_FREE) {
        clash->kind = prior;
        clash->offset = i << c->bits;
      }
    }
  }
}

/* Report that WHAT, at [OFFSET, OFFSET+LEN), is past the end of the file
 * (when EOF) and that it overlaps CLASH (when there is one). */
static int
report_mark (struct checker *c, const char *what, uint64_t offset,
             bool eof, const struct clash *clash)
{
  if (eof)
    REPORT (c, true, "%s %s past the end of the file (size 0x%" PRIx64 ")",
            what, (offset >> c->bits) >= c->nb_clusters ? "points" : "runs",
            c->file_size);
  if (clash->kind != KIND_FREE)
    REPORT (c, true, "%s overlaps the %s at 0x%" PRIx64, what,
            kind_names[clash->kind], clash->offset);
  return 0;
}

/* Count one reference to each cluster of [OFFSET, OFFSET+LEN) for a
 * structure of KIND, described by FMT in messages, and report a range
 * past the end of the file or overlapping another structure. */
static int __attribute__ ((format (printf, 5, 6)))
mark (struct checker *c, uint64_t offset, uint64_t len, enum kind kind,
      const char *fmt, ...)
{
  struct clash clash = { KIND_FREE, 0 };
  CLEANUP_FREE char *what = NULL;
  bool eof = len > 0 && past_eof (c, offset, len);
  va_list ap;
  int n;

  mark_quiet (c, offset, len, kind, 1, &clash);
  if (!eof && clash.kind == KIND_FREE)
    return 0;
  va_start (ap, fmt);
  n = vasprintf (&what, fmt, ap);
  va_end (ap);
  if (n == -1) {
    what = NULL;
    return ferry_error (ENOMEM, "out of memory");
  }
  return report_mark (c, what, offset, eof, &clash);
}

/* Called by walk_table for each entry: INDEX is its number in the table.
 * Returns 0 to go on, 1 to stop, -1 on error. */
typedef int (*entry_fn) (struct checker *c, void *arg, uint64_t index,
                         uint64_t entry);

/* Visit the NR big-endian 64-bit entries of the table at OFFSET (cluster
 * aligned: the caller checked), a cluster at a time, calling FN for each.
 * With KIND other than KIND_FREE, count the table's clusters as KIND,
 * report overlaps and a table past the end of the file (WHAT names it),
 * and stop at the first cluster already read as a table: that overlap is
 * reported, and not counting the rest keeps the walk linear in the file
 * size even when thousands of tables claim the same clusters.  Entries
 * past the end of the file are never visited. */
static int
walk_table (struct checker *c, uint64_t offset, uint64_t nr, enum kind kind,
            const char *what, entry_fn fn, void *arg)
{
  const uint64_t per_cluster = c->cs / 8;
  const uint64_t limit = c->nb_clusters << c->bits;
  struct clash clash = { KIND_FREE, 0 };
  uint64_t in_file, first, n, j;
  int r;

  if (nr == 0)
    return 0;
  in_file = offset >= limit ? 0 : MIN (nr, (limit - offset) / 8);
  if (kind != KIND_FREE && in_file < nr)
    REPORT (c, true, "%s (%" PRIu64 " entries) %s past the end of the file "
            "(size 0x%" PRIx64 ")", what, nr, in_file ? "runs" : "points",
            c->file_size);

  for (first = 0; first < in_file; first += per_cluster) {
    uint64_t cluster_offset = offset + first * 8;

    n = MIN (per_cluster, in_file - first);
    if (kind != KIND_FREE) {
      uint8_t *f = &c->flags[cluster_offset >> c->bits];
      bool walked = *f & F_WALKED;

      mark_quiet (c, cluster_offset, n * 8, kind, 1, &clash);
      if (walked)
        break;
      *f |= F_WALKED;
    }
    if (read_at (c, c->table_buf, n * 8, cluster_offset) == -1)
      return -1;
    for (j = 0; j < n; j++) {
      r = fn (c, arg, first + j, get_be64 (c->table_buf + j * 8));
      if (r == -1)
        return -1;
      if (r == 1)
        goto done;
    }
  }
 done:
  if (clash.kind != KIND_FREE)
    REPORT (c, true, "%s overlaps the %s at 0x%" PRIx64, what,
            kind_names[clash.kind], clash.offset);
  return 0;
}

/* Phase 1 entry of the refcount table: check it and count its refcount
 * block.  The block itself is read at the end, by refcount_entry. */
static int
reftable_entry (struct checker *c, void *arg, uint64_t index, uint64_t entry)
{
  uint64_t offset = entry & QCOW2_REFT_OFFSET_MASK;

  if (entry & ~QCOW2_REFT_OFFSET_MASK)
    REPORT (c, true, "refcount table entry %" PRIu64 " (0x%016" PRIx64
            ") has reserved bits set", index, entry);
  if (offset == 0)
    return 0;
  if (!IS_ALIGNED (offset, c->cs)) {
    REPORT (c, true, "refcount block at 0x%" PRIx64 " (refcount table index %"
            PRIu64 ") is not cluster aligned", offset, index);
    return 0;
  }
  if (past_eof (c, offset, c->cs)) {
    REPORT (c, true, "refcount block at 0x%" PRIx64 " (refcount table index %"
            PRIu64 ") points past the end of the file (size 0x%" PRIx64 ")",
            offset, index, c->file_size);
    return 0;
  }
  return mark (c, offset, c->cs, KIND_REFBLOCK, "refcount block at 0x%"
               PRIx64 " (refcount table index %" PRIu64 ")", offset, index);
}

/* How a walk of an L1 table and its L2 tables describes itself. */
struct l1_walk {
  bool active;                  /* the active table: COPIED is meaningful */
  char where[96];               /* "" or " of snapshot N (ID 'x')" */
};

enum l2_type { L2_UNALLOCATED, L2_STANDARD, L2_COMPRESSED };

/* Decode an L2 ENTRY: its type and, when allocated, the host range it
 * uses.  Nothing is checked. */
static enum l2_type
decode_l2 (const struct checker *c, uint64_t entry, uint64_t *offset,
           uint64_t *len)
{
  if (entry & QCOW2_L2E_COMPRESSED) {
    *offset = qcow2_compressed_offset (&c->h, entry);
    *len = qcow2_compressed_length (&c->h, entry);
    return L2_COMPRESSED;
  }
  *offset = entry & QCOW2_L2E_OFFSET_MASK;
  *len = c->cs;
  /* Offset 0 is a real cluster only in an external data file, where
   * COPIED tells it from an unallocated entry. */
  if (*offset == 0 && !(c->data_file && (entry & QCOW2_L2E_COPIED)))
    return L2_UNALLOCATED;
  return L2_STANDARD;
}

/* Check a compressed L2 entry (first walk of its table). */
static int
check_compressed (struct checker *c, const struct l1_walk *w, uint64_t entry,
                  uint64_t bitmap, uint64_t guest)
{
  uint64_t offset = qcow2_compressed_offset (&c->h, entry);
  uint64_t len = qcow2_compressed_length (&c->h, entry);

  if (c->data_file) {
    REPORT (c, true, "compressed cluster at 0x%" PRIx64 " (guest offset 0x%"
            PRIx64 "%s) in an image with an external data file", offset,
            guest, w->where);
    return 0;
  }
  if (entry & QCOW2_L2E_COPIED)
    REPORT (c, true, "compressed cluster at 0x%" PRIx64 " (guest offset 0x%"
            PRIx64 "%s) has the COPIED flag set", offset, guest, w->where);
  if (bitmap != 0)
    REPORT (c, true, "compressed cluster at 0x%" PRIx64 " (guest offset 0x%"
            PRIx64 "%s) has a subcluster bitmap (0x%016" PRIx64 ")", offset,
            guest, w->where, bitmap);
  /* With small clusters the offset field reaches past bit 55, where the
   * spec wants zeroes. */
  if (offset >> 56)
    REPORT (c, true, "compressed cluster at 0x%" PRIx64 " (guest offset 0x%"
            PRIx64 "%s) has reserved offset bits set", offset, guest,
            w->where);
  if (w->active)
    c->r->allocated_clusters++;
  return mark (c, offset, len, KIND_COMPRESSED, "compressed cluster at 0x%"
               PRIx64 " (guest offset 0x%" PRIx64 "%s)", offset, guest,
               w->where);
}

/* Check one L2 entry ENTRY (with BITMAP when extended) of the table at
 * L2_OFFSET, index J, mapping GUEST; count the clusters it uses. */
static int
check_l2_entry (struct checker *c, const struct l1_walk *w,
                uint64_t l2_offset, uint64_t j, uint64_t guest,
                uint64_t entry, uint64_t bitmap)
{
  uint64_t offset, len, reserved;
  uint32_t alloc = bitmap & 0xffffffff, zero = bitmap >> 32;
  enum l2_type type = decode_l2 (c, entry, &offset, &len);
  bool copied = entry & QCOW2_L2E_COPIED;

  if (type == L2_COMPRESSED)
    return check_compressed (c, w, entry, bitmap, guest);

  reserved = entry & L2E_STD_RESERVED;
  if (c->h.version == 2 || c->h.extended_l2)
    reserved |= entry & QCOW2_L2E_ZERO;
  if (reserved)
    REPORT (c, true, "L2 table at 0x%" PRIx64 " entry %" PRIu64 " (guest "
            "offset 0x%" PRIx64 "%s) has reserved bits set (0x%016" PRIx64
            ")", l2_offset, j, guest, w->where, entry);
  if (c->h.extended_l2) {
    if (type == L2_UNALLOCATED && alloc != 0)
      REPORT (c, true, "L2 table at 0x%" PRIx64 " entry %" PRIu64 " (guest "
              "offset 0x%" PRIx64 "%s) has allocated subclusters (0x%08"
              PRIx32 ") but no cluster", l2_offset, j, guest, w->where,
              alloc);
    if (alloc & zero)
      REPORT (c, true, "L2 table at 0x%" PRIx64 " entry %" PRIu64 " (guest "
              "offset 0x%" PRIx64 "%s) has subclusters both allocated and "
              "zero (0x%016" PRIx64 ")", l2_offset, j, guest, w->where,
              bitmap);
  }
  if (type == L2_UNALLOCATED) {
    if (copied)
      REPORT (c, true, "L2 table at 0x%" PRIx64 " entry %" PRIu64 " (guest "
              "offset 0x%" PRIx64 "%s) has the COPIED flag set but no "
              "cluster", l2_offset, j, guest, w->where);
    return 0;
  }

  if (w->active)
    c->r->allocated_clusters++;
  if (c->data_file) {
    /* Not refcounted: the cluster lives in the other file at the guest
     * offset, with an implicit refcount of 1. */
    if (offset != guest)
      REPORT (c, true, "data cluster at 0x%" PRIx64 " of the external data "
              "file does not match its guest offset 0x%" PRIx64 "%s",
              offset, guest, w->where);
    if (w->active && !copied)
      REPORT (c, true, "data cluster at 0x%" PRIx64 " of the external data "
              "file (guest offset 0x%" PRIx64 ") lacks the COPIED flag",
              offset, guest);
    return 0;
  }
  if (!IS_ALIGNED (offset, c->cs)) {
    REPORT (c, true, "data cluster at 0x%" PRIx64 " (guest offset 0x%" PRIx64
            "%s) is not cluster aligned", offset, guest, w->where);
    return 0;
  }
  if (w->active && !past_eof (c, offset, c->cs))
    c->flags[offset >> c->bits] |= copied ? F_COPIED_SET : F_COPIED_CLEAR;
  return mark (c, offset, c->cs, KIND_DATA, "data cluster at 0x%" PRIx64
               " (guest offset 0x%" PRIx64 "%s)", offset, guest, w->where);
}

/* Walk the L2 table at L2_OFFSET the first time, from L1 index L1_INDEX. */
static int
walk_l2 (struct checker *c, const struct l1_walk *w, uint64_t l2_offset,
         uint64_t l1_index)
{
  const uint32_t esize = c->h.l2_entry_size;
  uint64_t j;

  if (read_at (c, c->cluster_buf, c->cs, l2_offset) == -1)
    return -1;
  for (j = 0; j < c->h.l2_entries; j++) {
    const uint8_t *p = c->cluster_buf + j * esize;
    uint64_t bitmap = c->h.extended_l2 ? get_be64 (p + 8) : 0;
    uint64_t guest = (l1_index * c->h.l2_entries + j) << c->bits;

    if (check_l2_entry (c, w, l2_offset, j, guest, get_be64 (p), bitmap)
        == -1)
      return -1;
  }
  return 0;
}

/* An entry of an L1 table: check it, count its L2 table, and walk that
 * table if no other L1 entry led to it before. */
static int
l1_entry (struct checker *c, void *arg, uint64_t index, uint64_t entry)
{
  const struct l1_walk *w = arg;
  uint64_t l2_offset = entry & QCOW2_L1E_OFFSET_MASK;
  uint64_t cluster;

  if (entry & ~(QCOW2_L1E_OFFSET_MASK | QCOW2_L1E_COPIED))
    REPORT (c, true, "L1 entry %" PRIu64 "%s (0x%016" PRIx64 ") has "
            "reserved bits set", index, w->where, entry);
  if (l2_offset == 0)
    return 0;
  if (!IS_ALIGNED (l2_offset, c->cs)) {
    REPORT (c, true, "L2 table at 0x%" PRIx64 " (L1 index %" PRIu64 "%s) is "
            "not cluster aligned", l2_offset, index, w->where);
    return 0;
  }
  if (past_eof (c, l2_offset, c->cs)) {
    REPORT (c, true, "L2 table at 0x%" PRIx64 " (L1 index %" PRIu64 "%s) "
            "points past the end of the file (size 0x%" PRIx64 ")",
            l2_offset, index, w->where, c->file_size);
    return 0;
  }
  cluster = l2_offset >> c->bits;
  if (w->active)
    c->flags[cluster] |= (entry & QCOW2_L1E_COPIED) ? F_COPIED_SET
                                                    : F_COPIED_CLEAR;
  if (mark (c, l2_offset, c->cs, KIND_L2, "L2 table at 0x%" PRIx64
            " (L1 index %" PRIu64 "%s)", l2_offset, index, w->where) == -1)
    return -1;
  if (c->flags[cluster] & F_WALKED)
    return 0;
  c->flags[cluster] |= F_WALKED;
  return walk_l2 (c, w, l2_offset, index);
}

/* Walk the L1 table of SIZE entries at OFFSET and everything it reaches.
 * KIND is KIND_L1 for the active table, KIND_SNAP_L1 for a snapshot's. */
static int
walk_l1 (struct checker *c, uint64_t offset, uint32_t size, enum kind kind,
         struct l1_walk *w)
{
  char what[160];

  snprintf (what, sizeof what, "L1 table at 0x%" PRIx64 "%s", offset,
            w->where);
  if (size == 0)
    return 0;
  if (!IS_ALIGNED (offset, c->cs)) {
    REPORT (c, true, "%s is not cluster aligned", what);
    return 0;
  }
  return walk_table (c, offset, size, kind, what, l1_entry, w);
}

/* Add to the clusters used by the L2 tables that several L1 entries point
 * at the references of all but the first, which walk_l2 counted. */
static int
recount_shared_l2 (struct checker *c)
{
  const uint32_t esize = c->h.l2_entry_size;
  uint64_t cluster, j, offset, len;

  for (cluster = 0; cluster < c->nb_clusters; cluster++) {
    uint8_t f = c->flags[cluster];
    uint32_t extra = c->refs[cluster] - 1;

    /* An L2 table that overlaps something else has references that are
     * not L1 entries; it was reported, its count is meaningless. */
    if ((f & F_KIND) != KIND_L2 || !(f & F_WALKED) || (f & F_OVERLAP) ||
        c->refs[cluster] < 2)
      continue;
    if (read_at (c, c->cluster_buf, c->cs, cluster << c->bits) == -1)
      return -1;
    for (j = 0; j < c->h.l2_entries; j++) {
      uint64_t entry = get_be64 (c->cluster_buf + j * esize);

      switch (decode_l2 (c, entry, &offset, &len)) {
      case L2_UNALLOCATED:
        break;
      case L2_COMPRESSED:
        if (!c->data_file)
          mark_quiet (c, offset, len, KIND_FREE, extra, NULL);
        break;
      case L2_STANDARD:
        if (!c->data_file && IS_ALIGNED (offset, c->cs))
          mark_quiet (c, offset, len, KIND_FREE, extra, NULL);
        break;
      }
    }
  }
  return 0;
}

/* A snapshot table entry, as much as the check needs. */
struct snapshot {
  uint64_t l1_offset;
  uint32_t l1_size;
  uint64_t len;                 /* without the padding */
  uint64_t entry_len;           /* with the padding to the next entry */
  char id[32];                  /* printable, maybe cut short */
};

/* Read snapshot number INDEX at POS of the snapshot table.  1 when read,
 * 0 when it runs past the end of the file (reported when REPORT_EOF). */
static int
read_snapshot (struct checker *c, uint64_t pos, uint64_t index,
               struct snapshot *s, bool report_eof)
{
  uint8_t buf[SNAPSHOT_HEADER_SIZE];
  uint32_t extra, id_len, i, n;

  if (pos > c->file_size || c->file_size - pos < SNAPSHOT_HEADER_SIZE)
    goto eof;
  if (read_at (c, buf, sizeof buf, pos) == -1)
    return -1;
  s->l1_offset = get_be64 (buf);
  s->l1_size = get_be32 (buf + 8);
  id_len = get_be16 (buf + 12);
  extra = get_be32 (buf + 36);
  s->len = SNAPSHOT_HEADER_SIZE + (uint64_t) extra + id_len +
    get_be16 (buf + 14);
  s->entry_len = ROUND_UP (s->len, 8);
  /* The last entry needs no padding, and qemu writes none. */
  if (c->file_size - pos < s->len)
    goto eof;
  n = MIN (id_len, sizeof s->id - 1);
  if (read_at (c, s->id, n, pos + SNAPSHOT_HEADER_SIZE + extra) == -1)
    return -1;
  for (i = 0; i < n; i++)
    if (s->id[i] < 0x20 || s->id[i] > 0x7e)
      s->id[i] = '?';
  s->id[n] = '\0';
  return 1;

 eof:
  if (report_eof)
    REPORT (c, true, "snapshot table at 0x%" PRIx64 ": snapshot %" PRIu64
            " at 0x%" PRIx64 " runs past the end of the file (size 0x%"
            PRIx64 ")", c->h.snapshots_offset, index, pos, c->file_size);
  return 0;
}

/* Count the snapshot table, then walk each snapshot's L1 table. */
static int
walk_snapshots (struct checker *c)
{
  const uint64_t table = c->h.snapshots_offset;
  struct snapshot s;
  uint64_t pos, i, nr_read, table_end = table;
  struct l1_walk w = { .active = false };
  int r;

  if (c->h.nb_snapshots == 0)
    return 0;
  if (c->data_file)
    REPORT (c, true, "snapshot table: %" PRIu32 " internal snapshots in an "
            "image with an external data file", c->h.nb_snapshots);
  if (!IS_ALIGNED (table, c->cs)) {
    REPORT (c, true, "snapshot table at 0x%" PRIx64 " is not cluster "
            "aligned", table);
    return 0;
  }

  /* Find the table's end first, so that it is claimed before the L1
   * tables it points to. */
  for (i = 0, pos = table; i < c->h.nb_snapshots; i++, pos += s.entry_len) {
    r = read_snapshot (c, pos, i, &s, true);
    if (r == -1)
      return -1;
    if (r == 0)
      break;
    table_end = pos + s.len;
  }
  nr_read = i;
  if (mark (c, table, table_end - table, KIND_SNAPTABLE, "snapshot table at "
            "0x%" PRIx64, table) == -1)
    return -1;

  for (i = 0, pos = table; i < nr_read; i++, pos += s.entry_len) {
    r = read_snapshot (c, pos, i, &s, false);
    if (r == -1)
      return -1;
    if (r == 0)
      break;                    /* the file shrank under us */
    snprintf (w.where, sizeof w.where, " of snapshot %" PRIu64 " (ID '%s')",
              i, s.id);
    if (walk_l1 (c, s.l1_offset, s.l1_size, KIND_SNAP_L1, &w) == -1)
      return -1;
  }
  return 0;
}

/* An entry of the bitmap table of bitmap *ARG: count its data cluster. */
static int
bitmap_entry (struct checker *c, void *arg, uint64_t index, uint64_t entry)
{
  uint64_t bitmap = *(const uint64_t *) arg;
  uint64_t offset = entry & BME_OFFSET_MASK;
  uint64_t reserved = entry & ~(BME_OFFSET_MASK | 1);

  /* Bit 0 says "all ones" for an unallocated cluster only. */
  if (offset != 0)
    reserved |= entry & 1;
  if (reserved)
    REPORT (c, true, "bitmap %" PRIu64 " table entry %" PRIu64 " (0x%016"
            PRIx64 ") has reserved bits set", bitmap, index, entry);
  if (offset == 0)
    return 0;
  if (!IS_ALIGNED (offset, c->cs)) {
    REPORT (c, true, "bitmap data cluster at 0x%" PRIx64 " (bitmap %" PRIu64
            " index %" PRIu64 ") is not cluster aligned", offset, bitmap,
            index);
    return 0;
  }
  return mark (c, offset, c->cs, KIND_BITMAP_DATA, "bitmap data cluster at 0x%"
               PRIx64 " (bitmap %" PRIu64 " index %" PRIu64 ")", offset,
               bitmap, index);
}

/* Count the bitmap directory, each bitmap table and the data clusters.
 * As qemu does, bitmaps that the autoclear bit does not vouch for are
 * ignored (their clusters then show as leaks). */
static int
walk_bitmaps (struct checker *c)
{
  const uint64_t dir = c->h.bitmap_dir_offset;
  uint8_t buf[BITMAP_ENTRY_HEADER_SIZE];
  uint64_t i, pos, end, len, table;
  uint32_t table_size, flags;
  char what[96];

  if (!c->h.bitmaps_readable ||
      !(c->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
    return 0;
  if (c->h.nb_bitmaps == 0)
    REPORT (c, true, "bitmaps header extension with no bitmaps");
  if (!IS_ALIGNED (dir, c->cs)) {
    REPORT (c, true, "bitmap directory at 0x%" PRIx64 " is not cluster "
            "aligned", dir);
    return 0;
  }
  if (mark (c, dir, c->h.bitmap_dir_size, KIND_BITMAP_DIR, "bitmap directory "
            "at 0x%" PRIx64 " (0x%" PRIx64 " bytes)", dir,
            c->h.bitmap_dir_size) == -1)
    return -1;
  end = dir > c->file_size ? dir : dir + MIN (c->h.bitmap_dir_size,
                                              c->file_size - dir);

  for (i = 0, pos = dir; i < c->h.nb_bitmaps; i++, pos += len) {
    if (end - pos < BITMAP_ENTRY_HEADER_SIZE)
      break;
    if (read_at (c, buf, sizeof buf, pos) == -1)
      return -1;
    len = ROUND_UP (BITMAP_ENTRY_HEADER_SIZE + (uint64_t) get_be32 (buf + 20)
                    + get_be16 (buf + 18), 8);
    if (end - pos < len)
      break;
    table = get_be64 (buf);
    table_size = get_be32 (buf + 8);
    flags = get_be32 (buf + 12);
    if (flags & ~BITMAP_FLAGS_KNOWN)
      REPORT (c, true, "bitmap %" PRIu64 " in the directory at 0x%" PRIx64
              " has reserved flags set (0x%" PRIx32 ")", i, dir, flags);
    if (table_size == 0)
      continue;
    if (!IS_ALIGNED (table, c->cs)) {
      REPORT (c, true, "bitmap table at 0x%" PRIx64 " (bitmap %" PRIu64 ") "
              "is not cluster aligned", table, i);
      continue;
    }
    snprintf (what, sizeof what, "bitmap table at 0x%" PRIx64 " (bitmap %"
              PRIu64 ")", table, i);
    if (walk_table (c, table, table_size, KIND_BITMAP_TABLE, what,
                    bitmap_entry, &i) == -1)
      return -1;
  }
  if (i < c->h.nb_bitmaps)
    REPORT (c, true, "bitmap directory at 0x%" PRIx64 " (0x%" PRIx64 " bytes)"
            " holds %" PRIu64 " of its %" PRIu32 " bitmaps", dir,
            c->h.bitmap_dir_size, i, c->h.nb_bitmaps);
  return 0;
}

/* The refcount at INDEX of the refcount block BLOCK. */
static uint64_t
get_refcount (const uint8_t *block, uint64_t index, unsigned order)
{
  uint64_t bit;

  switch (order) {
  case 0: case 1: case 2:
    /* Sub-byte refcounts: bit 0 is the least significant one. */
    bit = index << order;
    return (block[bit / 8] >> (bit % 8)) & ((1u << (1u << order)) - 1);
  case 3:
    return block[index];
  case 4:
    return get_be16 (block + index * 2);
  case 5:
    return get_be32 (block + index * 4);
  default:
    return get_be64 (block + index * 8);
  }
}

/* Compare the stored refcounts of clusters [START, END), from BLOCK (whose
 * first entry is START) or all 0 when BLOCK is NULL, with the references
 * found, and the COPIED flags of the active tables with them. */
static int
compare_range (struct checker *c, uint64_t start, uint64_t end,
               const uint8_t *block)
{
  uint64_t i;

  for (i = start; i < end; i++) {
    uint64_t stored = block ? get_refcount (block, i - start,
                                            c->h.refcount_order) : 0;
    uint64_t offset = i << c->bits;
    uint32_t refs = c->refs[i];
    uint8_t f = c->flags[i];
    const char *name = kind_names[f & F_KIND];
    const char *parent = (f & F_KIND) == KIND_L2 ? "L1" : "L2";

    if (stored < refs)
      REPORT (c, true, "cluster 0x%" PRIx64 ": refcount %" PRIu64 ", "
              "referenced %" PRIu32, offset, stored, refs);
    else if (stored > refs)
      REPORT (c, false, "cluster 0x%" PRIx64 " is leaked: refcount %" PRIu64
              ", referenced %" PRIu32, offset, stored, refs);
    if ((f & F_COPIED_SET) && stored != 1)
      REPORT (c, true, "%s at 0x%" PRIx64 " has refcount %" PRIu64 " but an "
              "active %s entry has the COPIED flag set", name, offset,
              stored, parent);
    if ((f & F_COPIED_CLEAR) && stored == 1)
      REPORT (c, true, "%s at 0x%" PRIx64 " has refcount 1 but an active %s "
              "entry lacks the COPIED flag", name, offset, parent);
  }
  return 0;
}

/* An entry of the refcount table, at the end: compare the clusters its
 * refcount block covers.  Blocks found broken in phase 1 (reported then)
 * are skipped, so are blocks shared by two entries after the first. */
static int
refcount_entry (struct checker *c, void *arg, uint64_t index, uint64_t entry)
{
  const uint64_t per_block = (c->cs * 8) >> c->h.refcount_order;
  uint64_t offset = entry & QCOW2_REFT_OFFSET_MASK;
  uint64_t start, end, cluster;

  if (index > (c->nb_clusters - 1) / per_block)
    return 1;                   /* covers nothing in the file */
  start = index * per_block;
  end = MIN (start + per_block, c->nb_clusters);
  if (offset == 0)
    return compare_range (c, start, end, NULL);
  if (!IS_ALIGNED (offset, c->cs) || past_eof (c, offset, c->cs))
    return 0;
  cluster = offset >> c->bits;
  if ((c->flags[cluster] & F_KIND) != KIND_REFBLOCK ||
      (c->flags[cluster] & F_WALKED))
    return 0;
  c->flags[cluster] |= F_WALKED;
  if (read_at (c, c->cluster_buf, c->cs, offset) == -1)
    return -1;
  return compare_range (c, start, end, c->cluster_buf);
}

/* Compare every stored refcount the refcount table lets us read. */
static int
compare_refcounts (struct checker *c)
{
  const uint64_t per_block = (c->cs * 8) >> c->h.refcount_order;
  const uint64_t offset = c->h.refcount_table_offset;
  const uint64_t entries = (uint64_t) c->h.refcount_table_clusters * c->cs / 8;

  if (walk_table (c, offset, entries, KIND_FREE, NULL, refcount_entry, NULL)
      == -1)
    return -1;
  /* Clusters beyond what the table covers have refcount 0, but only if
   * the whole table could be read. */
  if (!past_eof (c, offset, entries * 8) &&
      entries <= (c->nb_clusters - 1) / per_block)
    return compare_range (c, entries * per_block, c->nb_clusters, NULL);
  return 0;
}

/* Walk everything, in the order the overlap messages read best: the
 * fixed structures first, then what the tables point to. */
static int
walk_image (struct checker *c)
{
  const struct qcow2_header *h = &c->h;
  const uint64_t reftable = h->refcount_table_offset;
  const uint64_t reftable_entries =
    (uint64_t) h->refcount_table_clusters * c->cs / 8;
  struct l1_walk active = { .active = true, .where = "" };
  bool reftable_ok = false;
  char what[64];

  if (mark (c, 0, c->cs, KIND_HEADER, "header") == -1)
    return -1;

  /* A refcount table of no clusters, like an L1 table too short for the
   * disk, was reported by the header decoder. */
  if (h->refcount_table_clusters > 0 && !IS_ALIGNED (reftable, c->cs))
    REPORT (c, true, "refcount table at 0x%" PRIx64 " is not cluster "
            "aligned", reftable);
  else if (h->refcount_table_clusters > 0) {
    reftable_ok = true;
    snprintf (what, sizeof what, "refcount table at 0x%" PRIx64, reftable);
    if (walk_table (c, reftable, reftable_entries, KIND_REFTABLE, what,
                    reftable_entry, NULL) == -1)
      return -1;
  }

  if (walk_l1 (c, h->l1_table_offset, h->l1_size, KIND_L1, &active) == -1 ||
      walk_snapshots (c) == -1 ||
      walk_bitmaps (c) == -1)
    return -1;
  if (c->h.has_crypto) {
    if (!IS_ALIGNED (c->h.crypto_offset, c->cs))
      REPORT (c, true, "encryption header at 0x%" PRIx64 " is not cluster "
              "aligned", c->h.crypto_offset);
    else if (mark (c, c->h.crypto_offset, c->h.crypto_length, KIND_CRYPTO,
                   "encryption header at 0x%" PRIx64 " (0x%" PRIx64
                   " bytes)", c->h.crypto_offset, c->h.crypto_length) == -1)
      return -1;
  }
  if (recount_shared_l2 (c) == -1)
    return -1;
  if (reftable_ok && c->refcount_order_ok)
    return compare_refcounts (c);
  return 0;
}

/* A fault the header decoder found: one corruption line. */
static int
report_header_problem (void *opaque, const char *msg)
{
  return check_report (opaque, true, "%s", msg);
}

/* The .check callback of the qcow2 driver: see qcow2-format.h. */
int
qcow2_check (const char *path, int fd, struct ferry_check_result *result)
{
  struct checker c = { .path = path, .fd = fd, .r = result };
  const struct qcow2_header_report report = {
    .problem = report_header_problem, .opaque = result,
  };
  CLEANUP_FREE uint32_t *refs = NULL;
  CLEANUP_FREE uint8_t *flags = NULL, *table_buf = NULL, *cluster_buf = NULL;

  if (hostfile_size (fd, path, &c.file_size) == -1)
    return -1;
  if (qcow2_read_header (path, fd, 0, c.file_size, &c.h, &report) == -1)
    return -1;
  qcow2_header_free (&c.h);     /* the walk needs none of its strings */
  if (c.h.stopped)
    return 0;                   /* reported: nothing more to walk */
  c.cs = c.h.cluster_size;
  c.bits = c.h.cluster_bits;
  c.data_file = c.h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE;
  c.refcount_order_ok = c.h.refcount_order <= 6;
  c.r->total_clusters = c.h.size / c.cs + (c.h.size % c.cs != 0);

  c.nb_clusters = c.file_size / c.cs + (c.file_size % c.cs != 0);
  if (c.nb_clusters > MAX_CLUSTERS)
    return ferry_error (EFBIG, "%s: the file holds %" PRIu64 " clusters of %"
                        PRIu64 " bytes; checking it would need %" PRIu64
                        " MiB of memory, more than the %" PRIu64 " MiB "
                        "ferry allows itself", path, c.nb_clusters, c.cs,
                        c.nb_clusters * 5 >> 20, MAX_CLUSTERS * 5 >> 20);
  c.refs = refs = calloc (c.nb_clusters, sizeof *refs);
  c.flags = flags = calloc (c.nb_clusters, 1);
  c.table_buf = table_buf = malloc (c.cs);
  c.cluster_buf = cluster_buf = malloc (c.cs);
  if (!refs || !flags || !table_buf || !cluster_buf)
    return ferry_error (ENOMEM, "%s: out of memory for the check", path);
  return walk_image (&c);
}
