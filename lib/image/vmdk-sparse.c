/* vmdk: hosted sparse extents (the "KDMV" files of monolithicSparse,
 * twoGbMaxExtentSparse's s001 files and streamOptimized), and the grain
 * map that every sparse kind shares (COWD and seSparse fill it in
 * vmdk-esx.c).
 *
 * NOTES ON THE DESIGN
 *
 * 1. The grain directory is read whole at open; it must lie inside the
 *    file, which bounds its size by the file's.  Grain tables are read on
 *    first use and published with a compare-and-swap into s->gts, so
 *    readers on many threads never take a lock: whoever loses the race
 *    frees its copy.  Tables stay until close.  Once the tables held
 *    reach the file's size (a directory whose entries all name the same
 *    table could otherwise make a small file cost gigabytes), further
 *    tables are read for each lookup and dropped after it.
 *
 * 2. A streamOptimized extent whose header says "grain directory at the
 *    end" is read through its footer: the copy of the header in the
 *    second-to-last sector, between a footer marker and the end-of-stream
 *    marker.  Grain table entries of compressed extents point at grain
 *    markers; a marker whose LBA is not the grain the table maps is an
 *    error, not data from elsewhere in the disk.
 *
 * 3. Compressed grains are inflated with libdeflate into a buffer taken
 *    from a pool, so many threads inflate at once without allocating per
 *    grain.
 *
 * 4. Nothing read from the file is trusted: tables and grains that lie
 *    past the end of the file are reported when reached, with the table
 *    and entry that named them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libdeflate.h>

#include "vmdk-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* An inflate context and its buffers, for one compressed grain. */
struct vmdk_inflater {
  struct libdeflate_decompressor *d;
  uint8_t *in;                 /* marker and compressed data */
  size_t in_cap;
  uint8_t *out;                /* one grain */
};

void
vmdk_header_decode (const uint8_t *b, struct vmdk_sparse_header *h)
{
  h->version = get_le32 (b + VMDK_HDR_VERSION);
  h->flags = get_le32 (b + VMDK_HDR_FLAGS);
  h->capacity = get_le64 (b + VMDK_HDR_CAPACITY);
  h->grain = get_le64 (b + VMDK_HDR_GRAIN);
  h->desc_offset = get_le64 (b + VMDK_HDR_DESC_OFFSET);
  h->desc_size = get_le64 (b + VMDK_HDR_DESC_SIZE);
  h->gtes_per_gt = get_le32 (b + VMDK_HDR_NUM_GTES);
  h->rgd_offset = get_le64 (b + VMDK_HDR_RGD_OFFSET);
  h->gd_offset = get_le64 (b + VMDK_HDR_GD_OFFSET);
  h->overhead = get_le64 (b + VMDK_HDR_OVERHEAD);
  h->unclean = b[VMDK_HDR_UNCLEAN] != 0;
  h->compress = get_le16 (b + VMDK_HDR_COMPRESS);
}

void
vmdk_header_encode (const struct vmdk_sparse_header *h, uint8_t *b)
{
  memset (b, 0, VMDK_SECTOR);
  put_le32 (b, VMDK4_MAGIC);
  put_le32 (b + VMDK_HDR_VERSION, h->version);
  put_le32 (b + VMDK_HDR_FLAGS, h->flags);
  put_le64 (b + VMDK_HDR_CAPACITY, h->capacity);
  put_le64 (b + VMDK_HDR_GRAIN, h->grain);
  put_le64 (b + VMDK_HDR_DESC_OFFSET, h->desc_offset);
  put_le64 (b + VMDK_HDR_DESC_SIZE, h->desc_size);
  put_le32 (b + VMDK_HDR_NUM_GTES, h->gtes_per_gt);
  put_le64 (b + VMDK_HDR_RGD_OFFSET, h->rgd_offset);
  put_le64 (b + VMDK_HDR_GD_OFFSET, h->gd_offset);
  put_le64 (b + VMDK_HDR_OVERHEAD, h->overhead);
  b[VMDK_HDR_UNCLEAN] = h->unclean;
  memcpy (b + VMDK_HDR_NL_CHARS, "\n \r\n", 4);
  put_le16 (b + VMDK_HDR_COMPRESS, h->compress);
}

struct vmdk_sparse *
vmdk_sparse_alloc (enum vmdk_sparse_kind kind, const char *path, int fd,
                   bool shared_fd)
{
  struct vmdk_sparse *s = calloc (1, sizeof *s);

  if (s == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    return NULL;
  }
  s->kind = kind;
  s->path = path;
  s->fd = fd;
  s->shared_fd = shared_fd;
  pthread_mutex_init (&s->inflaters.lock, NULL);
  return s;
}

static void
free_inflater (void *p)
{
  struct vmdk_inflater *inf = p;

  libdeflate_free_decompressor (inf->d);
  free (inf->in);
  free (inf->out);
  free (inf);
}

void
vmdk_sparse_free (struct vmdk_sparse *s)
{
  uint32_t i;

  if (s == NULL)
    return;
  if (s->gts) {
    for (i = 0; i < s->nr_gts; i++)
      free (s->gts[i]);
    free (s->gts);
  }
  free (s->gd);
  free (s->rgd);
  free (s->gt_dirty);
  vmdk_stream_free (s->stream);
  pool_drain (&s->inflaters, free_inflater);
  pthread_mutex_destroy (&s->inflaters.lock);
  if (!s->shared_fd && s->fd >= 0)
    close (s->fd);
  free (s);
}

/* Bytes of one grain table in the file. */
static size_t
table_bytes (const struct vmdk_sparse *s)
{
  return (size_t) s->gt_entries * (s->kind == VMDK_SPARSE_SE ? 8 : 4);
}

/* Where the data of the file may not go past: the end of the file for a
 * read-only extent, what has been allocated for a writable one. */
static uint64_t
data_bound (const struct vmdk_sparse *s)
{
  return s->writable ? s->alloc_end : s->file_size;
}

/* Check the hosted sparse header H of S (FILE_SIZE bytes); WHERE says
 * which copy it is, for messages. */
static int
check_hosted_header (struct vmdk_sparse *s, const struct vmdk_sparse_header *h,
                     uint64_t file_size, const char *where)
{
  uint64_t span;

  if (h->version < 1 || h->version > 3)
    return ferry_error (ENOTSUP, "%s: %s: sparse extent version %" PRIu32
                        " is not one ferry knows (1 to 3)", s->path, where,
                        h->version);
  if (h->compress > VMDK_COMPRESS_DEFLATE)
    return ferry_error (ENOTSUP, "%s: %s: compression algorithm %u is not "
                        "deflate (1)", s->path, where, h->compress);
  if (h->capacity == 0 || h->capacity > VMDK_MAX_SIZE / VMDK_SECTOR)
    return ferry_error (EINVAL, "%s: %s: capacity of %" PRIu64 " sectors",
                        s->path, where, h->capacity);
  if (!is_power_of_2 (h->grain) || h->grain > VMDK_MAX_GRAIN_SECTORS)
    return ferry_error (EINVAL, "%s: %s: grain size of %" PRIu64 " sectors "
                        "(a power of two up to %u is needed)", s->path, where,
                        h->grain, VMDK_MAX_GRAIN_SECTORS);
  if ((h->compress || (h->flags & VMDK_FLAG_COMPRESSED)) &&
      h->grain * VMDK_SECTOR > VMDK_MAX_COMPRESSED_GRAIN)
    return ferry_error (ENOTSUP, "%s: %s: compressed grains of %" PRIu64
                        " bytes are larger than ferry reads (%u)", s->path,
                        where, h->grain * VMDK_SECTOR,
                        VMDK_MAX_COMPRESSED_GRAIN);
  if (h->gtes_per_gt == 0 || h->gtes_per_gt > 512)
    return ferry_error (EINVAL, "%s: %s: %" PRIu32 " entries per grain table "
                        "(1 to 512 expected)", s->path, where, h->gtes_per_gt);
  span = h->grain * h->gtes_per_gt;
  if (h->gd_offset == 0 || h->gd_offset > file_size / VMDK_SECTOR ||
      DIV_ROUND_UP (h->capacity, span) * 4 >
      file_size - h->gd_offset * VMDK_SECTOR)
    return ferry_error (EINVAL, "%s: %s: the grain directory at sector %"
                        PRIu64 " (%" PRIu64 " entries) does not fit in the "
                        "file (%" PRIu64 " bytes)", s->path, where,
                        h->gd_offset, DIV_ROUND_UP (h->capacity, span),
                        file_size);
  return 0;
}

/* Read the streamOptimized footer of S into H (note 2). */
static int
read_footer (struct vmdk_sparse *s, uint64_t file_size,
             struct vmdk_sparse_header *h)
{
  uint8_t buf[3 * VMDK_SECTOR];
  uint64_t at;

  if (file_size < 5 * VMDK_SECTOR)
    return ferry_error (EINVAL, "%s: the header puts the grain directory at "
                        "the end, but the file (%" PRIu64 " bytes) is too "
                        "short to hold the footer", s->path, file_size);
  at = ROUND_DOWN (file_size, VMDK_SECTOR) - sizeof buf;
  if (vmdk_sparse_pread (s, buf, sizeof buf, at) == -1)
    return ferry_error_errno (errno, "%s: reading the footer at offset 0x%"
                              PRIx64, s->path, at);
  if (get_le32 (buf + 8) != 0 || get_le32 (buf + 12) != VMDK_MARKER_FOOTER ||
      get_le32 (buf + VMDK_SECTOR) != VMDK4_MAGIC ||
      get_le64 (buf + 2 * VMDK_SECTOR) != 0 ||
      get_le32 (buf + 2 * VMDK_SECTOR + 8) != 0 ||
      get_le32 (buf + 2 * VMDK_SECTOR + 12) != VMDK_MARKER_EOS)
    return ferry_error (EINVAL, "%s: the header puts the grain directory at "
                        "the end, but no footer marker, footer and "
                        "end-of-stream marker end the file at offset 0x%"
                        PRIx64 " (truncated stream?)", s->path, at);
  vmdk_header_decode (buf + VMDK_SECTOR, h);
  if (h->gd_offset == VMDK_GD_AT_END)
    return ferry_error (EINVAL, "%s: the footer at offset 0x%" PRIx64 " puts "
                        "the grain directory at the end too", s->path,
                        at + VMDK_SECTOR);
  return 0;
}

int
vmdk_sparse_open_hosted (struct vmdk_sparse *s, uint64_t file_size,
                         char **desc_text, size_t *desc_len)
{
  uint8_t buf[VMDK_SECTOR];
  struct vmdk_sparse_header h;
  const char *where = "header";

  s->file_size = file_size;
  if (file_size < VMDK_SECTOR)
    return ferry_error (EINVAL, "%s: %" PRIu64 " bytes is too short for a "
                        "sparse extent header", s->path, file_size);
  if (vmdk_sparse_pread (s, buf, sizeof buf, 0) == -1)
    return ferry_error_errno (errno, "%s: reading the header", s->path);
  if (get_le32 (buf) != VMDK4_MAGIC)
    return ferry_error (EINVAL, "%s: no sparse extent header (magic KDMV)",
                        s->path);
  vmdk_header_decode (buf, &h);
  if (h.gd_offset == VMDK_GD_AT_END) {
    /* The embedded descriptor is where the first header says. */
    uint64_t desc_offset = h.desc_offset, desc_size = h.desc_size;
    if (read_footer (s, file_size, &h) == -1)
      return -1;
    h.desc_offset = desc_offset;
    h.desc_size = desc_size;
    where = "footer";
  }
  if (check_hosted_header (s, &h, file_size, where) == -1)
    return -1;
  if ((h.flags & VMDK_FLAG_NL_DETECT) &&
      memcmp (buf + VMDK_HDR_NL_CHARS, "\n \r\n", 4) != 0)
    return ferry_error (EINVAL, "%s: the header's line-ending check bytes "
                        "are damaged (the file went through a text-mode "
                        "transfer?)", s->path);

  s->h = h;
  s->capacity = h.capacity * VMDK_SECTOR;
  s->grain_size = h.grain * VMDK_SECTOR;
  s->gt_entries = h.gtes_per_gt;
  s->compressed = h.compress == VMDK_COMPRESS_DEFLATE ||
    (h.flags & VMDK_FLAG_COMPRESSED);
  s->markers = h.flags & VMDK_FLAG_MARKERS;
  s->zero_grains = h.flags & VMDK_FLAG_ZERO_GRAIN;

  if (desc_text &&
      vmdk_sparse_read_embedded (s, &h, file_size, desc_text, desc_len) == -1)
    return -1;
  return vmdk_sparse_setup_map (s, h.gd_offset * VMDK_SECTOR);
}

int
vmdk_sparse_read_embedded (struct vmdk_sparse *s,
                           const struct vmdk_sparse_header *h,
                           uint64_t file_size, char **desc_text,
                           size_t *desc_len)
{
  uint64_t off = h->desc_offset * VMDK_SECTOR, len;

  *desc_text = NULL;
  *desc_len = 0;
  if (h->desc_offset == 0 || h->desc_size == 0)
    return 0;
  if (h->desc_offset > file_size / VMDK_SECTOR ||
      h->desc_size > VMDK_MAX_DESCRIPTOR / VMDK_SECTOR)
    return ferry_error (EINVAL, "%s: embedded descriptor at sector %" PRIu64
                        " of %" PRIu64 " sectors lies outside the file or is "
                        "too large", s->path, h->desc_offset, h->desc_size);
  len = MIN (h->desc_size * VMDK_SECTOR, file_size - off);
  *desc_text = malloc (len + 1);
  if (*desc_text == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", s->path);
  if (vmdk_sparse_pread (s, *desc_text, len, off) == -1) {
    free (*desc_text);
    *desc_text = NULL;
    return ferry_error_errno (errno, "%s: reading the embedded descriptor",
                              s->path);
  }
  (*desc_text)[len] = '\0';
  *desc_len = len;
  return 0;
}

/* Read the grain directory of S at GD_AT (bytes) and set up the map:
 * s->capacity, grain_size, gt_entries and kind are set already. */
int
vmdk_sparse_setup_map (struct vmdk_sparse *s, uint64_t gd_at)
{
  size_t entry = s->kind == VMDK_SPARSE_SE ? 8 : 4;
  CLEANUP_FREE uint8_t *raw = NULL;
  uint64_t n;
  uint32_t i;

  s->grain_bits = __builtin_ctz (s->grain_size);
  s->gt_span = (uint64_t) s->gt_entries * s->grain_size;
  n = DIV_ROUND_UP (s->capacity, s->gt_span);
  if (n > UINT32_MAX || gd_at > s->file_size ||
      n * entry > s->file_size - gd_at)
    return ferry_error (EINVAL, "%s: the grain directory at offset 0x%" PRIx64
                        " (%" PRIu64 " entries) runs past the end of the file "
                        "(%" PRIu64 " bytes)", s->path, gd_at, n,
                        s->file_size);
  s->nr_gts = n;
  raw = malloc (n * entry);
  s->gd = calloc (n, sizeof *s->gd);
  s->gts = calloc (n, sizeof *s->gts);
  if ((n && raw == NULL) || s->gd == NULL || s->gts == NULL)
    return ferry_error (ENOMEM, "%s: out of memory for the grain directory",
                        s->path);
  if (vmdk_sparse_pread (s, raw, n * entry, gd_at) == -1)
    return ferry_error_errno (errno, "%s: reading the grain directory at "
                              "offset 0x%" PRIx64, s->path, gd_at);
  for (i = 0; i < n; i++) {
    if (s->kind != VMDK_SPARSE_SE) {
      s->gd[i] = (uint64_t) get_le32 (raw + 4 * i) * VMDK_SECTOR;
      continue;
    }
    /* seSparse: 0 (no table), or 0x1 in the top nibble and the table's
     * number in the low 32 bits. */
    uint64_t e = get_le64 (raw + 8 * i);
    if (e == 0)
      continue;
    if ((e >> 32) != UINT64_C (0x10000000))
      return ferry_error (EINVAL, "%s: grain directory entry %" PRIu32
                          " is 0x%016" PRIx64 ", not a table reference",
                          s->path, i, e);
    s->gd[i] = s->se_tables + (e & 0xffffffff) * table_bytes (s);
  }
  return 0;
}

/* The most bytes of tables S keeps in s->gts (note 1). */
static uint64_t
cache_limit (const struct vmdk_sparse *s)
{
  return MAX (s->file_size, UINT64_C (1) << 20);
}

/* Read table INDEX of S into a new host-order array; NULL on error. */
void *
vmdk_sparse_read_table (struct vmdk_sparse *s, uint32_t index)
{
  size_t bytes = table_bytes (s), i;
  uint64_t at = s->gd[index], bound = MAX (data_bound (s), s->file_size);
  uint8_t *t;

  if (s->is_new) {              /* nothing in the file yet */
    t = calloc (1, bytes);
    if (t == NULL)
      ferry_error (ENOMEM, "%s: out of memory for grain table %" PRIu32,
                   s->path, index);
    return t;
  }
  if (at > bound || bytes > bound - at) {
    ferry_error (EINVAL, "%s: grain table %" PRIu32 " at offset 0x%" PRIx64
                 " runs past the end of the file (%" PRIu64 " bytes)",
                 s->path, index, at, bound);
    return NULL;
  }
  t = malloc (bytes);
  if (t == NULL) {
    ferry_error (ENOMEM, "%s: out of memory for grain table %" PRIu32,
                 s->path, index);
    return NULL;
  }
  if (vmdk_sparse_pread (s, t, bytes, at) == -1) {
    ferry_error_errno (errno, "%s: reading grain table %" PRIu32 " at "
                       "offset 0x%" PRIx64, s->path, index, at);
    free (t);
    return NULL;
  }
  /* Host byte order in place. */
  if (s->kind == VMDK_SPARSE_SE)
    for (i = 0; i < s->gt_entries; i++)
      ((uint64_t *) t)[i] = get_le64 (t + 8 * i);
  else
    for (i = 0; i < s->gt_entries; i++)
      ((uint32_t *) t)[i] = get_le32 (t + 4 * i);
  return t;
}

/* The table INDEX of S, loaded and published (note 1).  *TEMP is set
 * when the caller must free it after use.  NULL on error. */
static void *
get_table (struct vmdk_sparse *s, uint32_t index, bool *temp)
{
  void *t = __atomic_load_n (&s->gts[index], __ATOMIC_ACQUIRE), *expected;
  size_t bytes = table_bytes (s);

  *temp = false;
  if (t)
    return t;
  t = vmdk_sparse_read_table (s, index);
  if (t == NULL)
    return NULL;
  if (!s->writable &&
      __atomic_add_fetch (&s->table_bytes_held, bytes, __ATOMIC_RELAXED) >
      cache_limit (s)) {
    __atomic_sub_fetch (&s->table_bytes_held, bytes, __ATOMIC_RELAXED);
    *temp = true;
    return t;
  }
  expected = NULL;
  if (!__atomic_compare_exchange_n (&s->gts[index], &expected, t, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    free (t);
    if (!s->writable)
      __atomic_sub_fetch (&s->table_bytes_held, bytes, __ATOMIC_RELAXED);
    t = expected;
  }
  return t;
}

void *
vmdk_sparse_get_table (struct vmdk_sparse *s, uint32_t index)
{
  bool temp;
  void *t = get_table (s, index, &temp);

  /* Writable extents always keep their tables. */
  if (t && temp) {
    free (t);
    return NULL;
  }
  return t;
}

/* What entry IDX of table T (index TI) of S says: the kind, and for data
 * the file offset of the grain. */
int
vmdk_sparse_classify (struct vmdk_sparse *s, const void *t, uint32_t ti,
                      uint32_t idx, enum vmdk_run_kind *kind, uint64_t *host)
{
  uint64_t bound = data_bound (s), off;

  if (s->kind == VMDK_SPARSE_SE) {
    uint64_t e = __atomic_load_n (&((const uint64_t *) t)[idx],
                                  __ATOMIC_RELAXED), n;
    switch (e >> 60) {
    case 0:
      if (e != 0)
        goto bad_se;
      *kind = VMDK_RUN_UNALLOC;
      return 0;
    case 1:                     /* unmapped */
    case 2:                     /* zeroed */
      *kind = VMDK_RUN_ZERO;
      return 0;
    case 3:
      n = ((e & UINT64_C (0x0fff000000000000)) >> 48) |
        ((e & UINT64_C (0x0000ffffffffffff)) << 12);
      if (n > (UINT64_MAX - s->se_grains) >> s->grain_bits)
        goto past_end;
      off = s->se_grains + (n << s->grain_bits);
      break;
    default:
    bad_se:
      return ferry_error (EINVAL, "%s: grain table %" PRIu32 " entry %"
                          PRIu32 " is 0x%016" PRIx64 ", which is no grain "
                          "state ferry knows", s->path, ti, idx, e);
    }
  }
  else {
    uint32_t e = __atomic_load_n (&((const uint32_t *) t)[idx],
                                  __ATOMIC_RELAXED);
    if (e == 0) {
      *kind = VMDK_RUN_UNALLOC;
      return 0;
    }
    if (e == VMDK_GTE_ZEROED && s->zero_grains) {
      *kind = VMDK_RUN_ZERO;
      return 0;
    }
    off = (uint64_t) e * VMDK_SECTOR;
  }
  if (off >= bound) {
  past_end:
    return ferry_error (EINVAL, "%s: grain table %" PRIu32 " entry %" PRIu32
                        " points past the end of the file (%" PRIu64
                        " bytes)", s->path, ti, idx, bound);
  }
  *kind = s->compressed ? VMDK_RUN_COMPRESSED : VMDK_RUN_DATA;
  *host = off;
  return 0;
}

int
vmdk_sparse_map (struct vmdk_sparse *s, uint64_t offset, uint64_t max_len,
                 struct vmdk_run *run)
{
  uint64_t pos = offset, end = offset + MIN (max_len, s->capacity - offset);
  bool first = true;

  run->length = 0;
  run->host = 0;
  while (pos < end) {
    uint64_t g = pos >> s->grain_bits, step_end, host = 0;
    uint32_t ti = g / s->gt_entries, idx = g % s->gt_entries;
    enum vmdk_run_kind kind = VMDK_RUN_UNALLOC;

    if (s->gd[ti] == 0 && __atomic_load_n (&s->gts[ti], __ATOMIC_ACQUIRE) ==
        NULL) {
      kind = VMDK_RUN_UNALLOC;
      step_end = MIN ((uint64_t) (ti + 1) * s->gt_span, end);
    }
    else {
      bool temp;
      void *t = get_table (s, ti, &temp);
      int r;
      if (t == NULL)
        return -1;
      r = vmdk_sparse_classify (s, t, ti, idx, &kind, &host);
      if (temp)
        free (t);
      if (r == -1)
        return -1;
      host += pos & (s->grain_size - 1);
      step_end = MIN ((g + 1) << s->grain_bits, end);
    }
    if (first) {
      run->kind = kind;
      run->host = host;
      first = false;
    }
    else if (kind != run->kind || kind == VMDK_RUN_COMPRESSED ||
             (kind == VMDK_RUN_DATA && host != run->host + run->length))
      break;
    run->length += step_end - pos;
    pos = step_end;
    if (kind == VMDK_RUN_COMPRESSED)
      break;
  }
  return 0;
}

/* Make an inflate context for S. */
static struct vmdk_inflater *
new_inflater (struct vmdk_sparse *s)
{
  struct vmdk_inflater *inf = calloc (1, sizeof *inf);

  if (inf == NULL)
    return NULL;
  /* The marker and the compressed grain: deflate adds a few bytes per
   * 64 KiB at worst, and the read is rounded to sectors. */
  inf->in_cap = s->grain_size + s->grain_size / 8 + 2 * VMDK_SECTOR;
  inf->d = libdeflate_alloc_decompressor ();
  inf->in = malloc (inf->in_cap);
  inf->out = malloc (s->grain_size);
  if (inf->d == NULL || inf->in == NULL || inf->out == NULL) {
    free_inflater (inf);
    return NULL;
  }
  return inf;
}

int
vmdk_sparse_read_grain (struct vmdk_sparse *s, uint64_t host,
                        uint64_t grain_offset, void *buf, size_t count,
                        size_t skip)
{
  struct vmdk_inflater *inf = pool_get (&s->inflaters);
  const uint8_t *data;
  size_t len, want, got = 0;
  uint8_t *out;
  enum libdeflate_result r;
  int ret = -1;

  if (inf == NULL && (inf = new_inflater (s)) == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", s->path);
  want = MIN (inf->in_cap, s->file_size - host);
  if (vmdk_sparse_pread (s, inf->in, want, host) == -1) {
    ferry_error_errno (errno, "%s: reading the compressed grain at offset 0x%"
                       PRIx64, s->path, host);
    goto out;
  }
  data = inf->in;
  len = want;
  if (s->markers) {
    uint64_t lba = get_le64 (inf->in);
    uint32_t size = get_le32 (inf->in + 8);
    if (want < VMDK_GRAIN_MARKER_SIZE || size == 0 ||
        size > want - VMDK_GRAIN_MARKER_SIZE) {
      ferry_error (EINVAL, "%s: the grain marker at offset 0x%" PRIx64
                   " gives %" PRIu32 " bytes of compressed data, which do "
                   "not fit in %zu bytes", s->path, host, size,
                   want < VMDK_GRAIN_MARKER_SIZE ? 0 :
                   want - VMDK_GRAIN_MARKER_SIZE);
      goto out;
    }
    if (lba != grain_offset / VMDK_SECTOR) {
      ferry_error (EINVAL, "%s: the grain marker at offset 0x%" PRIx64
                   " is for sector %" PRIu64 ", but the grain table maps "
                   "sector %" PRIu64 " there", s->path, host, lba,
                   grain_offset / VMDK_SECTOR);
      goto out;
    }
    data += VMDK_GRAIN_MARKER_SIZE;
    len = size;
  }
  /* A whole grain goes straight into the caller's buffer. */
  out = (skip == 0 && count == s->grain_size) ? buf : inf->out;
  if (s->markers)
    r = libdeflate_zlib_decompress (inf->d, data, len, out, s->grain_size,
                                    &got);
  else
    r = libdeflate_zlib_decompress_ex (inf->d, data, len, out,
                                       s->grain_size, NULL, &got);
  if (r != LIBDEFLATE_SUCCESS) {
    ferry_error (EINVAL, "%s: the compressed grain at offset 0x%" PRIx64
                 " (guest sector %" PRIu64 ") %s", s->path, host,
                 grain_offset / VMDK_SECTOR,
                 r == LIBDEFLATE_INSUFFICIENT_SPACE ?
                 "inflates to more than a grain" : "is not valid zlib data");
    goto out;
  }
  if (got < s->grain_size)
    memset (out + got, 0, s->grain_size - got);
  if (out != buf)
    memcpy (buf, out + skip, count);
  ret = 0;

 out:
  pool_put (&s->inflaters, inf, free_inflater);
  return ret;
}
