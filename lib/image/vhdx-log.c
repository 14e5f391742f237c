/* vhdx: the log ([MS-VHDX] 2.3): finding the active sequence and
 * replaying it, in memory for a read-only open or to disk for a
 * read-write one.  ferry never writes log entries itself (vhdx-write.c
 * note 1 says why).
 *
 * NOTES ON THE DESIGN
 *
 * 1. An entry is valid when its header, every descriptor and every data
 *    sector agree on the signature, the sequence number and the header's
 *    LogGuid, and the CRC-32C over the whole entry holds.  The active
 *    sequence is found as the specification describes: from each 4 KiB
 *    position of the ring, follow entries whose sequence numbers rise by
 *    one; a run is a sequence when its head entry's tail lies inside it;
 *    the sequence with the highest head sequence number wins.  Its
 *    entries from the head's tail to the head are replayed, in order.
 *
 * 2. No descriptor may write below 192 KiB (the file identifier and the
 *    headers are never logged) or past VHDX_MAX_FILE_OFFSET; an entry
 *    that tries is invalid.  So is one whose LastFileOffset lies past that
 *    bound, so a hostile log cannot make a read-write open grow the file
 *    without limit.
 *
 * 3. In memory, the replay is a list of disjoint file ranges, each
 *    naming the last step that wrote it (painted from the last step
 *    backwards, with a "next unpainted interval" forest so every interval
 *    is visited once).  Data sectors stay in the log and are read when a
 *    read touches them: memory is a few dozen bytes per descriptor.  A
 *    file of LastFileOffset bytes is not pretended: bytes past the end
 *    read as zeroes anyway.
 *
 * 4. To disk: the headers get a new FileWriteGuid (the log still in
 *    them), the steps are applied in order, the file is extended to
 *    LastFileOffset, synced, and only then are the headers rewritten with
 *    a zero LogGuid.  A crash before that leaves the log in place, and
 *    replaying it again gives the same file.  The DataWriteGuid stays: a
 *    replay changes nothing a reader sees, since readers replay too.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

DEFINE_VECTOR_TYPE (op_list, struct vhdx_log_op);
DEFINE_VECTOR_TYPE (pos_list, uint64_t);

/* What a valid entry's header says. */
struct entry_info {
  uint64_t pos;                 /* in the log */
  uint32_t length;
  uint32_t tail;
  uint64_t sequence;
  uint64_t flushed;
  uint64_t last;
};

/* Read LEN bytes of the log at ring position POS, wrapping at its end. */
static int
log_pread (struct vhdx_image *v, void *buf, uint64_t len, uint64_t pos)
{
  uint64_t size = v->h.log_length, first = MIN (len, size - pos);

  if (full_pread (v->fd, buf, first, v->h.log_offset + pos) == -1 ||
      (len > first &&
       full_pread (v->fd, (uint8_t *) buf + first, len - first,
                   v->h.log_offset) == -1))
    return ferry_error_errno (errno, "%s: reading the VHDX log at offset 0x%"
                              PRIx64, v->base.path, v->h.log_offset + pos);
  return 0;
}

/* Whether a step writing LEN bytes at file offset OFF is allowed (note 2). */
static bool
target_ok (uint64_t off, uint64_t len)
{
  return off % VHDX_LOG_SECTOR == 0 && len % VHDX_LOG_SECTOR == 0 &&
    off >= VHDX_REGION1_OFFSET && off <= VHDX_MAX_FILE_OFFSET &&
    len <= VHDX_MAX_FILE_OFFSET - off;
}

/* Check the entry at ring position POS (note 1).  1 when it is valid
 * (*E filled, and its steps appended to OPS unless NULL), 0 when not, -1
 * on an I/O error. */
static int
check_entry (struct vhdx_image *v, uint64_t pos, struct entry_info *e,
             op_list *ops)
{
  uint64_t size = v->h.log_length;
  uint8_t sector[VHDX_LOG_SECTOR];
  CLEANUP_FREE uint8_t *desc = NULL;
  uint32_t count, nsect, dsect, ndata = 0, i, crc;
  static const uint8_t zero4[4];

  if (log_pread (v, sector, VHDX_LOG_SECTOR, pos) == -1)
    return -1;
  e->pos = pos;
  e->length = get_le32 (sector + VHDX_LOG_HDR_LENGTH);
  e->tail = get_le32 (sector + VHDX_LOG_HDR_TAIL);
  e->sequence = get_le64 (sector + VHDX_LOG_HDR_SEQUENCE);
  e->flushed = get_le64 (sector + VHDX_LOG_HDR_FLUSHED);
  e->last = get_le64 (sector + VHDX_LOG_HDR_LAST);
  count = get_le32 (sector + VHDX_LOG_HDR_DESC_COUNT);
  if (memcmp (sector, "loge", 4) != 0 || e->length == 0 ||
      e->length % VHDX_LOG_SECTOR || e->length > size ||
      e->tail % VHDX_LOG_SECTOR || e->tail >= size || e->sequence == 0 ||
      memcmp (sector + VHDX_LOG_HDR_LOG_GUID, v->h.log_guid, 16) != 0 ||
      e->last > VHDX_MAX_FILE_OFFSET)
    return 0;
  nsect = e->length / VHDX_LOG_SECTOR;
  dsect = count <= VHDX_LOG_DESC_FIRST ? 1 :
    1 + DIV_ROUND_UP (count - VHDX_LOG_DESC_FIRST, VHDX_LOG_DESC_PER_SECTOR);
  if (dsect > nsect)
    return 0;

  /* The descriptor sectors, kept; the checksum field counts as zero. */
  desc = malloc ((size_t) dsect * VHDX_LOG_SECTOR);
  if (desc == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  if (log_pread (v, desc, (uint64_t) dsect * VHDX_LOG_SECTOR, pos) == -1)
    return -1;
  crc = vhdx_crc32c_update (0, desc, VHDX_LOG_HDR_CHECKSUM);
  crc = vhdx_crc32c_update (crc, zero4, 4);
  crc = vhdx_crc32c_update (crc, desc + VHDX_LOG_HDR_CHECKSUM + 4,
                            (size_t) dsect * VHDX_LOG_SECTOR -
                            VHDX_LOG_HDR_CHECKSUM - 4);
  for (i = 0; i < count; i++) {
    const uint8_t *d = desc + VHDX_LOG_HDR_SIZE + (size_t) i *
      VHDX_LOG_DESC_SIZE;
    bool is_zero = memcmp (d, "zero", 4) == 0;
    if (!is_zero && memcmp (d, "desc", 4) != 0)
      return 0;
    if (get_le64 (d + 24) != e->sequence)
      return 0;
    if (!target_ok (get_le64 (d + 16), is_zero ? get_le64 (d + 8) :
                    VHDX_LOG_SECTOR))
      return 0;
    if (!is_zero)
      ndata++;
  }
  if (ndata > nsect - dsect)
    return 0;

  /* The data sectors, checked and summed, and any padding after them. */
  for (i = dsect; i < nsect; i++) {
    uint64_t p = (pos + (uint64_t) i * VHDX_LOG_SECTOR) % size;
    if (log_pread (v, sector, VHDX_LOG_SECTOR, p) == -1)
      return -1;
    if (i - dsect < ndata &&
        (memcmp (sector, "data", 4) != 0 ||
         get_le32 (sector + 4) != (uint32_t) (e->sequence >> 32) ||
         get_le32 (sector + VHDX_LOG_SECTOR - 4) != (uint32_t) e->sequence))
      return 0;
    crc = vhdx_crc32c_update (crc, sector, VHDX_LOG_SECTOR);
  }
  if (crc != get_le32 (desc + VHDX_LOG_HDR_CHECKSUM))
    return 0;

  if (ops) {
    uint32_t k = 0;
    for (i = 0; i < count; i++) {
      const uint8_t *d = desc + VHDX_LOG_HDR_SIZE + (size_t) i *
        VHDX_LOG_DESC_SIZE;
      struct vhdx_log_op op = { .file_offset = get_le64 (d + 16) };
      if (memcmp (d, "zero", 4) == 0) {
        op.zero = true;
        op.length = get_le64 (d + 8);
      }
      else {
        op.length = VHDX_LOG_SECTOR;
        op.log_pos = v->h.log_offset +
          (pos + (uint64_t) (dsect + k++) * VHDX_LOG_SECTOR) % size;
        memcpy (op.trailing, d + 4, 4);
        memcpy (op.leading, d + 8, 8);
      }
      if (op.length && op_list_append (ops, op) == -1)
        return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
    }
  }
  return 1;
}

int
vhdx_log_find (struct vhdx_image *v, struct vhdx_log_replay **out)
{
  uint64_t size = v->h.log_length, max_entries = size / VHDX_LOG_SECTOR;
  uint64_t tail = 0, old_tail = 0, pos, best_seq = 0, i;
  struct entry_info e, head = { 0 }, best = { 0 };
  pos_list seen = empty_vector;
  op_list ops = empty_vector;
  struct vhdx_log_replay *r;
  bool first = true;
  int k;

  *out = NULL;
  /* Note 1: scan the ring for the newest valid sequence. */
  for (;;) {
    bool valid = false;

    seen.len = 0;
    pos = tail;
    while (seen.len < max_entries) {
      k = check_entry (v, pos, &e, NULL);
      if (k == -1)
        goto err;
      if (k == 0 || (seen.len > 0 && e.sequence != head.sequence + 1))
        break;
      if (pos_list_append (&seen, pos) == -1) {
        ferry_error (ENOMEM, "%s: out of memory", v->base.path);
        goto err;
      }
      head = e;
      pos = (pos + e.length) % size;
    }
    for (i = 0; i < seen.len && !valid; i++)
      valid = seen.ptr[i] == head.tail;
    if (valid && head.sequence > best_seq) {
      best_seq = head.sequence;
      best = head;
    }
    if (valid)
      tail = pos;
    else {
      tail += VHDX_LOG_SECTOR;
      if (tail >= size)
        tail = 0;
    }
    if (!first && tail <= old_tail)
      break;
    if (first && tail == 0)
      break;
    first = false;
    old_tail = tail;
  }
  free (seen.ptr);
  seen.ptr = NULL;
  if (best_seq == 0)
    return 0;                   /* no valid sequence: nothing to replay */

  /* Collect the steps from the head's tail to the head. */
  pos = best.tail;
  for (i = 0; i < max_entries; i++) {
    k = check_entry (v, pos, &e, &ops);
    if (k == -1)
      goto err;
    if (k == 0) {
      ferry_error (EIO, "%s: VHDX log entry at offset 0x%" PRIx64 " changed "
                   "while it was read", v->base.path, v->h.log_offset + pos);
      goto err;
    }
    if (pos == best.pos)
      break;
    pos = (pos + e.length) % size;
  }
  if (best.flushed > v->real_size) {
    ferry_error (EINVAL, "%s: VHDX log entry %" PRIu64 " at offset 0x%" PRIx64
                 " says the file was at least %" PRIu64 " bytes long, but it "
                 "has %" PRIu64 ": the file was truncated", v->base.path,
                 best.sequence, v->h.log_offset + best.pos, best.flushed,
                 v->real_size);
    goto err;
  }
  r = calloc (1, sizeof *r);
  if (r == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", v->base.path);
    goto err;
  }
  r->ops = ops.ptr;
  r->nr_ops = ops.len;
  r->flushed_file_offset = best.flushed;
  r->last_file_offset = best.last;
  r->head_sequence = best.sequence;
  r->nr_entries = i + 1;
  for (i = 0; i < r->nr_ops; i++)
    if (!r->ops[i].zero)
      r->data_end = MAX (r->data_end, r->ops[i].file_offset +
                         r->ops[i].length);
  *out = r;
  return 0;

 err:
  free (seen.ptr);
  free (ops.ptr);
  return -1;
}

void
vhdx_log_replay_free (struct vhdx_log_replay *r)
{
  if (r == NULL)
    return;
  free (r->ops);
  free (r->ranges);
  free (r);
}

/* The root of X in the "next unpainted interval" forest, compressing the
 * path on the way. */
static size_t
next_unpainted (size_t *next, size_t x)
{
  size_t root = x, t;

  while (next[root] != root)
    root = next[root];
  while (next[x] != root) {
    t = next[x];
    next[x] = root;
    x = t;
  }
  return root;
}

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
  return x < y ? -1 : x > y;
}

/* The first index of the sorted array A of N values that is >= X. */
static size_t
lower_bound (const uint64_t *a, size_t n, uint64_t x)
{
  size_t lo = 0, hi = n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a[mid] < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

int
vhdx_log_build_overlay (struct vhdx_image *v, struct vhdx_log_replay *r)
{
  CLEANUP_FREE uint64_t *pts = NULL;
  CLEANUP_FREE size_t *next = NULL;
  CLEANUP_FREE uint32_t *owner = NULL;
  size_t n = 0, m, i, k;

  if (r->nr_ops == 0)
    return 0;
  pts = malloc (2 * r->nr_ops * sizeof *pts);
  if (pts == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  for (i = 0; i < r->nr_ops; i++) {
    pts[n++] = r->ops[i].file_offset;
    pts[n++] = r->ops[i].file_offset + r->ops[i].length;
  }
  qsort (pts, n, sizeof *pts, cmp_u64);
  for (m = 0, i = 0; i < n; i++)
    if (m == 0 || pts[m - 1] != pts[i])
      pts[m++] = pts[i];

  /* Intervals [pts[j], pts[j+1]) for j < m-1; next[m-1] is the sentinel. */
  next = malloc (m * sizeof *next);
  owner = malloc (m * sizeof *owner);
  r->ranges = malloc (m * sizeof *r->ranges);
  if (next == NULL || owner == NULL || r->ranges == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  for (i = 0; i < m; i++) {
    next[i] = i;
    owner[i] = UINT32_MAX;
  }
  for (k = r->nr_ops; k-- > 0;) {
    const struct vhdx_log_op *op = &r->ops[k];
    size_t a = lower_bound (pts, m, op->file_offset);
    size_t b = lower_bound (pts, m, op->file_offset + op->length);
    size_t x = next_unpainted (next, a);
    while (x < b) {
      owner[x] = k;
      next[x] = x + 1;
      x = next_unpainted (next, x + 1);
    }
  }
  for (i = 0; i + 1 < m; i++) {
    struct vhdx_overlay_range *last = r->nr_ranges ?
      &r->ranges[r->nr_ranges - 1] : NULL;
    if (owner[i] == UINT32_MAX)
      continue;
    /* Zero steps that touch merge; data steps are one sector each. */
    if (last && last->end == pts[i] && r->ops[owner[i]].zero &&
        r->ops[last->op].zero) {
      last->end = pts[i + 1];
      continue;
    }
    r->ranges[r->nr_ranges++] = (struct vhdx_overlay_range) {
      .start = pts[i], .end = pts[i + 1], .op = owner[i],
    };
  }
  return 0;
}

/* Read the data sector of OP from the log with its leading and trailing
 * bytes put back: the 4 KiB the step writes. */
static int
read_data_sector (struct vhdx_image *v, const struct vhdx_log_op *op,
                  uint8_t *sector)
{
  if (full_pread (v->fd, sector, VHDX_LOG_SECTOR, op->log_pos) == -1)
    return ferry_error_errno (errno, "%s: reading the VHDX log at offset 0x%"
                              PRIx64, v->base.path, op->log_pos);
  memcpy (sector, op->leading, VHDX_LOG_DATA_LEADING);
  memcpy (sector + VHDX_LOG_SECTOR - VHDX_LOG_DATA_TRAILING, op->trailing,
          VHDX_LOG_DATA_TRAILING);
  return 0;
}

int
vhdx_log_apply_overlay (struct vhdx_image *v, uint8_t *buf, size_t len,
                        uint64_t offset)
{
  const struct vhdx_log_replay *r = v->replay;
  uint64_t end = offset + len;
  size_t lo = 0, hi = r->nr_ranges;
  uint8_t sector[VHDX_LOG_SECTOR];

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (r->ranges[mid].end <= offset)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (; lo < r->nr_ranges && r->ranges[lo].start < end; lo++) {
    const struct vhdx_overlay_range *g = &r->ranges[lo];
    const struct vhdx_log_op *op = &r->ops[g->op];
    uint64_t s = MAX (g->start, offset), e = MIN (g->end, end);

    if (op->zero)
      memset (buf + (s - offset), 0, e - s);
    else {
      if (read_data_sector (v, op, sector) == -1)
        return -1;
      memcpy (buf + (s - offset), sector + (s - op->file_offset), e - s);
    }
  }
  return 0;
}

int
vhdx_log_replay_to_disk (struct vhdx_image *v, struct vhdx_log_replay *r)
{
  uint64_t end = MAX (v->real_size, r->last_file_offset);
  uint8_t sector[VHDX_LOG_SECTOR];
  size_t i;

  /* A new FileWriteGuid first: the replay is a change to the file. */
  if (vhdx_begin_writing (v) == -1)
    return -1;
  for (i = 0; i < r->nr_ops; i++) {
    const struct vhdx_log_op *op = &r->ops[i];
    end = MAX (end, op->file_offset + op->length);
    if (op->zero) {
      if (op->file_offset < v->real_size &&
          vhdx_zero_file_range (v, op->file_offset,
                                MIN (op->length,
                                     v->real_size - op->file_offset),
                                true) == -1)
        return -1;
    }
    else if (read_data_sector (v, op, sector) == -1 ||
             vhdx_write_file (v, sector, VHDX_LOG_SECTOR,
                              op->file_offset) == -1)
      return -1;
  }
  if (end > v->real_size && truncate_fd (v->fd, end) == -1)
    return ferry_error_errno (errno, "%s: extending the file to %" PRIu64
                              " bytes after the VHDX log replay", v->base.path,
                              end);
  v->real_size = v->file_size = v->block_limit = end;
  if (vhdx_sync (v) == -1)
    return -1;
  /* Note 4: only now is the log declared done. */
  memset (v->h.log_guid, 0, 16);
  return vhdx_write_headers (v);
}
