/* vmdk: creating images (monolithicSparse, streamOptimized, monolithicFlat,
 * twoGbMaxExtentSparse, twoGbMaxExtentFlat) and writing them, and writing
 * existing hosted sparse and flat images opened with FERRY_OPEN_WRITE.
 *
 * NOTES ON THE DESIGN
 *
 * 1. A hosted sparse extent is laid out as VMware and qemu lay it out:
 *    header, embedded descriptor (monolithic only, 20 sectors), redundant
 *    grain directory and its tables, grain directory and its tables, then
 *    grains from the first grain boundary on.  Every table has its place
 *    from the start; tables live in memory and are written at flush and
 *    close, after the data they map.  The header of a new extent is
 *    written at its first flush with the uncleanShutdown flag (as an
 *    existing image opened for writing has it, note 4), after the data
 *    and tables are synced, and again without the flag last, at close:
 *    until the first flush sector 0 holds zeroes, so a file left by a
 *    crash before it is not mistaken for a VMDK, and after it the file
 *    is the flushed state, which a copy resumes from (lib/copy's
 *    checkpoints) and which says it was not closed.
 *
 * 2. New grains are taken from the end of the extent (alloc_end) under
 *    the image lock; the data is written without it, and the table entry
 *    is set after the data is in the file.  A write that needs several
 *    grains gets them contiguous, so it is one pwrite.  A partial write
 *    into a grain that is not allocated fills the rest of the grain from
 *    the parent (or with zeroes) first.  The caller guarantees that no two
 *    threads write into the same grain at once.
 *
 * 3. streamOptimized output is written front to back by vmdk-stream.c,
 *    whose notes say how.
 *
 * 4. An existing image opened for writing gets the uncleanShutdown flag
 *    in each hosted sparse header before anything else is written, and
 *    loses it at close after the tables; its CID changes at close when
 *    anything was written, as VMware does, so snapshots taken from the old
 *    contents no longer claim it as their parent state.
 *
 * 5. Multi-file images (monolithicFlat, twoGbMaxExtent*) are made under
 *    names derived from the descriptor's name (disk.vmdk ->
 *    disk-s001.vmdk, disk-f001.vmdk, disk-flat.vmdk), written at create
 *    with O_EXCL; vmdk_rename moves them with the descriptor, which it
 *    rewrites to name the new files and moves last, and vmdk_remove deletes
 *    them all.  A failed create removes what it made.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostfile.h"
#include "vmdk-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

#define EMBEDDED_DESC_SECTORS 20u

/* Extents of twoGbMaxExtent* images: VMware's 2047 MiB, which keeps a
 * full sparse extent and its tables under 2 GiB. */
#define SPLIT_SECTORS UINT64_C (4192256)

enum subformat {
  SUB_MONOLITHIC_SPARSE,
  SUB_MONOLITHIC_FLAT,
  SUB_TWOGB_SPARSE,
  SUB_TWOGB_FLAT,
  SUB_STREAM,
};

static const char *const subformat_names[] = {
  [SUB_MONOLITHIC_SPARSE] = "monolithicSparse",
  [SUB_MONOLITHIC_FLAT] = "monolithicFlat",
  [SUB_TWOGB_SPARSE] = "twoGbMaxExtentSparse",
  [SUB_TWOGB_FLAT] = "twoGbMaxExtentFlat",
  [SUB_STREAM] = "streamOptimized",
};

/* --- small helpers ------------------------------------------------------ */

/* A random CID, avoiding the two values that mean "none". */
static uint32_t
random_cid (void)
{
  uint32_t cid = 0;

  while (cid == 0 || cid >= 0xfffffffeu)
    if (getrandom (&cid, sizeof cid, 0) != sizeof cid)
      cid = (uint32_t) (uintptr_t) &cid ^ (uint32_t) getpid ();
  return cid;
}

/* --- hosted sparse extents ------------------------------------------------ */

/* Encode table INDEX of S (host order in memory) into BUF. */
static void
encode_table (struct vmdk_sparse *s, uint32_t index, uint8_t *buf)
{
  const uint32_t *t = s->gts[index];
  uint32_t i;

  for (i = 0; i < s->gt_entries; i++)
    put_le32 (buf + 4 * i, t ? __atomic_load_n (&t[i], __ATOMIC_RELAXED) : 0);
}

/* Write the tables of S that changed, in both directories (note 1).
 * Image lock held. */
static int
write_tables (struct vmdk_sparse *s)
{
  size_t bytes = (size_t) s->gt_entries * 4;
  CLEANUP_FREE uint8_t *buf = malloc (bytes);
  uint32_t i;

  if (buf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", s->path);
  for (i = 0; i < s->nr_gts; i++) {
    if (!s->gt_dirty[i])
      continue;
    encode_table (s, i, buf);
    if (full_pwrite (s->fd, buf, bytes, s->gd[i]) == -1 ||
        (s->rgd && s->rgd[i] &&
         full_pwrite (s->fd, buf, bytes, s->rgd[i]) == -1))
      return ferry_error_errno (errno, "%s: writing grain table %" PRIu32,
                                s->path, i);
    s->gt_dirty[i] = 0;
  }
  return 0;
}

/* Write the header of S. */
int
vmdk_sparse_write_header (struct vmdk_sparse *s)
{
  uint8_t buf[VMDK_SECTOR];

  vmdk_header_encode (&s->h, buf);
  if (full_pwrite (s->fd, buf, sizeof buf, 0) == -1)
    return ferry_error_errno (errno, "%s: writing the header", s->path);
  s->header_dirty = false;
  return 0;
}

/* Write a grain directory of S (offsets in sectors) at sector AT. */
static int
write_directory (struct vmdk_sparse *s, const uint64_t *dir, uint64_t at)
{
  size_t bytes = ROUND_UP ((size_t) s->nr_gts * 4, VMDK_SECTOR);
  CLEANUP_FREE uint8_t *buf = calloc (1, bytes);
  uint32_t i;

  if (buf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", s->path);
  for (i = 0; i < s->nr_gts; i++)
    put_le32 (buf + 4 * i, dir[i] / VMDK_SECTOR);
  if (full_pwrite (s->fd, buf, bytes, at * VMDK_SECTOR) == -1)
    return ferry_error_errno (errno, "%s: writing the grain directory at "
                              "sector %" PRIu64, s->path, at);
  return 0;
}

/* Set up S as a new hosted sparse extent of CAPACITY bytes (note 1); an
 * embedded descriptor takes EMBEDDED_DESC_SECTORS when DESC. */
static int
sparse_init_new (struct vmdk_sparse *s, uint64_t capacity, bool desc,
                 bool zeroed_grain)
{
  struct vmdk_sparse_header *h = &s->h;
  uint64_t gd_sectors, gt_sectors, nr_gts, at;
  uint32_t i;

  memset (h, 0, sizeof *h);
  h->version = zeroed_grain ? 2 : 1;
  h->flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_RGD |
    (zeroed_grain ? VMDK_FLAG_ZERO_GRAIN : 0);
  h->capacity = capacity / VMDK_SECTOR;
  h->grain = VMDK_GRAIN_SECTORS;
  h->gtes_per_gt = VMDK_GTES_PER_GT;
  h->desc_offset = desc ? 1 : 0;
  h->desc_size = desc ? EMBEDDED_DESC_SECTORS : 0;
  nr_gts = DIV_ROUND_UP (h->capacity, (uint64_t) VMDK_GRAIN_SECTORS * VMDK_GTES_PER_GT);
  gd_sectors = DIV_ROUND_UP (nr_gts * 4, VMDK_SECTOR);
  gt_sectors = VMDK_GTES_PER_GT * 4 / VMDK_SECTOR;
  h->rgd_offset = 1 + h->desc_size;
  h->gd_offset = h->rgd_offset + gd_sectors + nr_gts * gt_sectors;
  h->overhead = ROUND_UP (h->gd_offset + gd_sectors + nr_gts * gt_sectors,
                          (uint64_t) VMDK_GRAIN_SECTORS);
  if (h->overhead + h->capacity > UINT32_MAX)
    return ferry_error (EFBIG, "%s: %" PRIu64 " bytes is more than a hosted "
                        "sparse extent can address (2 TiB)", s->path,
                        capacity);

  s->capacity = capacity;
  s->grain_size = VMDK_GRAIN_SECTORS * VMDK_SECTOR;
  s->grain_bits = __builtin_ctz (s->grain_size);
  s->gt_entries = VMDK_GTES_PER_GT;
  s->gt_span = (uint64_t) VMDK_GTES_PER_GT * s->grain_size;
  s->zero_grains = zeroed_grain;
  s->nr_gts = nr_gts;
  s->gd = calloc (nr_gts, sizeof *s->gd);
  s->rgd = calloc (nr_gts, sizeof *s->rgd);
  s->gts = calloc (nr_gts, sizeof *s->gts);
  s->gt_dirty = calloc (nr_gts, 1);
  if (s->gd == NULL || s->rgd == NULL || s->gts == NULL || s->gt_dirty == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", s->path);
  for (i = 0, at = h->rgd_offset + gd_sectors; i < nr_gts; i++,
         at += gt_sectors)
    s->rgd[i] = at * VMDK_SECTOR;
  for (i = 0, at = h->gd_offset + gd_sectors; i < nr_gts; i++,
         at += gt_sectors)
    s->gd[i] = at * VMDK_SECTOR;
  s->writable = true;
  s->is_new = true;
  s->alloc_end = h->overhead * VMDK_SECTOR;
  s->file_size = s->alloc_end;

  /* The directories now; tables (zero until written) and the header come
   * later (note 1).  The file is as long as its metadata. */
  if (write_directory (s, s->rgd, h->rgd_offset) == -1 ||
      write_directory (s, s->gd, h->gd_offset) == -1)
    return -1;
  if (truncate_fd (s->fd, s->alloc_end) == -1)
    return ferry_error_errno (errno, "%s: setting the size", s->path);
  return 0;
}

/* Make an existing hosted sparse extent S writable (note 4). */
static int
sparse_open_for_write (struct vmdk_sparse *s)
{
  struct stat st;
  uint32_t i;

  if (s->kind != VMDK_SPARSE_HOSTED)
    return ferry_error (ENOTSUP, "%s: ferry cannot write %s extents", s->path,
                        s->kind == VMDK_SPARSE_COWD ? "COWD" : "seSparse");
  if (s->compressed)
    return ferry_error (ENOTSUP, "%s: a streamOptimized extent is written "
                        "once, front to back; ferry does not change one",
                        s->path);
  if (s->h.version == 3)
    return ferry_error (ENOTSUP, "%s: version 3 sparse extents (with "
                        "changed block tracking) are read-only", s->path);
  if (fstat (s->fd, &st) == -1)
    return ferry_error_errno (errno, "%s: stat", s->path);
  for (i = 0; i < s->nr_gts; i++)
    if (s->gd[i] == 0)
      return ferry_error (ENOTSUP, "%s: grain table %" PRIu32 " has no place "
                          "in the file; ferry writes only extents whose "
                          "tables are all there", s->path, i);
  if (s->h.flags & VMDK_FLAG_RGD) {
    CLEANUP_FREE uint8_t *raw = malloc ((size_t) s->nr_gts * 4);
    uint64_t at = s->h.rgd_offset * VMDK_SECTOR;
    s->rgd = calloc (s->nr_gts, sizeof *s->rgd);
    if (raw == NULL || s->rgd == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", s->path);
    if (at > s->file_size || (uint64_t) s->nr_gts * 4 > s->file_size - at)
      return ferry_error (EINVAL, "%s: the redundant grain directory runs "
                          "past the end of the file", s->path);
    if (full_pread (s->fd, raw, (size_t) s->nr_gts * 4, at) == -1)
      return ferry_error_errno (errno, "%s: reading the redundant grain "
                                "directory", s->path);
    for (i = 0; i < s->nr_gts; i++)
      s->rgd[i] = (uint64_t) get_le32 (raw + 4 * i) * VMDK_SECTOR;
  }
  s->gt_dirty = calloc (s->nr_gts, 1);
  if (s->gt_dirty == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", s->path);
  s->alloc_end = MAX (ROUND_UP ((uint64_t) st.st_size, VMDK_SECTOR),
                      s->h.overhead * VMDK_SECTOR);
  s->writable = true;
  s->h.unclean = true;
  if (vmdk_sparse_write_header (s) == -1)
    return -1;
  if (datasync_fd (s->fd) == -1)
    return ferry_error_errno (errno, "%s: flush", s->path);
  return 0;
}

/* Read COUNT bytes at extent offset OFF of E into BUF as the disk showed
 * them before this write: the parent's data, or zeroes. */
static int
fill_from_parent (struct vmdk_image *v, struct vmdk_extent *e, uint8_t *buf,
                  uint64_t count, uint64_t off, bool zeroed)
{
  struct ferry_image *b = v->base.backing;
  uint64_t at = e->start + off, n = 0;

  if (!zeroed && b && at < b->size) {
    n = MIN (count, b->size - at);
    if (ferry_image_pread (b, buf, n, at) == -1)
      return -1;
  }
  memset (buf + n, 0, count - n);
  return 0;
}

/* The state of grain G of S: its table entry, under the image lock. */
static int
grain_entry (struct vmdk_sparse *s, uint64_t g, uint32_t **entry)
{
  uint32_t ti = g / s->gt_entries;
  uint32_t *t = vmdk_sparse_get_table (s, ti);

  if (t == NULL)
    return -1;
  *entry = &t[g % s->gt_entries];
  return 0;
}

/* Write COUNT bytes at OFF of the sparse extent E (note 2). */
static int
write_sparse (struct vmdk_image *v, struct vmdk_extent *e, const uint8_t *buf,
              uint64_t count, uint64_t off)
{
  struct vmdk_sparse *s = e->sparse;
  uint64_t gs = s->grain_size;

  while (count > 0) {
    uint64_t g = off >> s->grain_bits, in = off & (gs - 1), host, n;
    uint64_t grain_len = MIN (gs, s->capacity - (g << s->grain_bits));
    uint32_t *entry, old, k;
    bool zeroed;

    if (off >= s->capacity)
      return ferry_error (EINVAL, "%s: write at offset %" PRIu64 " past the "
                          "extent's capacity", s->path, off);
    pthread_mutex_lock (&v->lock);
    if (grain_entry (s, g, &entry) == -1) {
      pthread_mutex_unlock (&v->lock);
      return -1;
    }
    old = __atomic_load_n (entry, __ATOMIC_RELAXED);
    zeroed = s->zero_grains && old == VMDK_GTE_ZEROED;
    if (old != 0 && !zeroed) {
      /* Allocated: write in place. */
      pthread_mutex_unlock (&v->lock);
      n = MIN (count, grain_len - in);
      host = (uint64_t) old * VMDK_SECTOR + in;
      if (full_pwrite (s->fd, buf, n, host) == -1)
        return ferry_error_errno (errno, "%s: writing %" PRIu64 " bytes at "
                                  "offset 0x%" PRIx64, s->path, n, host);
      goto next;
    }

    if (in == 0 && count >= grain_len) {
      /* Whole grains: take as many following unallocated ones as the
       * write covers, contiguous in the file. */
      uint64_t want = count, end_cap = s->capacity - off;
      want = MIN (want, end_cap);
      k = 1;
      while ((uint64_t) (k + 1) * gs <= want && k < 4096) {
        uint32_t *e2;
        if (grain_entry (s, g + k, &e2) == -1) {
          pthread_mutex_unlock (&v->lock);
          return -1;
        }
        if (*e2 != 0 && !(s->zero_grains && *e2 == VMDK_GTE_ZEROED))
          break;
        k++;
      }
      n = MIN ((uint64_t) k * gs, want);
      /* A final partial grain of the extent is written whole. */
      k = DIV_ROUND_UP (n, gs);
      host = s->alloc_end;
      if ((host + (uint64_t) k * gs) / VMDK_SECTOR > UINT32_MAX) {
        pthread_mutex_unlock (&v->lock);
        return ferry_error (EFBIG, "%s: the extent file would grow past 2 TiB, "
                            "which its grain tables cannot address", s->path);
      }
      s->alloc_end += (uint64_t) k * gs;
      pthread_mutex_unlock (&v->lock);
      if (full_pwrite (s->fd, buf, n, host) == -1)
        return ferry_error_errno (errno, "%s: writing %" PRIu64 " bytes at "
                                  "offset 0x%" PRIx64, s->path, n, host);
      if (n % gs) {
        /* Pad the last grain so the file ends on a grain. */
        static const uint8_t zeroes[VMDK_SECTOR];
        uint64_t pad_at = host + n, pad_end = host + (uint64_t) k * gs;
        while (pad_at < pad_end) {
          size_t m = MIN (sizeof zeroes, pad_end - pad_at);
          if (full_pwrite (s->fd, zeroes, m, pad_at) == -1)
            return ferry_error_errno (errno, "%s: writing", s->path);
          pad_at += m;
        }
      }
      pthread_mutex_lock (&v->lock);
      for (uint32_t j = 0; j < k; j++) {
        uint32_t *ej = NULL;
        if (grain_entry (s, g + j, &ej) == -1) {   /* loaded above */
          pthread_mutex_unlock (&v->lock);
          return -1;
        }
        __atomic_store_n (ej, (host + (uint64_t) j * gs) / VMDK_SECTOR,
                          __ATOMIC_RELAXED);
        s->gt_dirty[(g + j) / s->gt_entries] = 1;
      }
      pthread_mutex_unlock (&v->lock);
      goto next;
    }

    /* Part of a grain that is not here: fill the rest first. */
    {
      CLEANUP_FREE uint8_t *tmp = malloc (gs);
      host = s->alloc_end;
      if (tmp == NULL) {
        pthread_mutex_unlock (&v->lock);
        return ferry_error (ENOMEM, "%s: out of memory", s->path);
      }
      if ((host + gs) / VMDK_SECTOR > UINT32_MAX) {
        pthread_mutex_unlock (&v->lock);
        return ferry_error (EFBIG, "%s: the extent file would grow past 2 TiB, "
                            "which its grain tables cannot address", s->path);
      }
      s->alloc_end += gs;
      pthread_mutex_unlock (&v->lock);
      n = MIN (count, grain_len - in);
      if (fill_from_parent (v, e, tmp, gs, g << s->grain_bits, zeroed) == -1)
        return -1;
      memcpy (tmp + in, buf, n);
      if (full_pwrite (s->fd, tmp, gs, host) == -1)
        return ferry_error_errno (errno, "%s: writing a grain at offset 0x%"
                                  PRIx64, s->path, host);
      pthread_mutex_lock (&v->lock);
      __atomic_store_n (entry, host / VMDK_SECTOR, __ATOMIC_RELAXED);
      s->gt_dirty[g / s->gt_entries] = 1;
      pthread_mutex_unlock (&v->lock);
    }

  next:
    buf += n;
    count -= n;
    off += n;
  }
  return 0;
}

/* Make COUNT bytes at OFF of the sparse extent E read as zeroes. */
static int
zero_sparse (struct vmdk_image *v, struct vmdk_extent *e, uint64_t count,
             uint64_t off, unsigned flags)
{
  struct vmdk_sparse *s = e->sparse;
  static const uint8_t zeroes[1 << 16];
  bool parent = v->base.backing != NULL;

  while (count > 0) {
    uint64_t g = off >> s->grain_bits, in = off & (s->grain_size - 1);
    uint64_t grain_len = MIN ((uint64_t) s->grain_size,
                              s->capacity - (g << s->grain_bits));
    uint64_t n = MIN (count, grain_len - in);
    uint32_t *entry, old;
    bool done = false;

    pthread_mutex_lock (&v->lock);
    if (grain_entry (s, g, &entry) == -1) {
      pthread_mutex_unlock (&v->lock);
      return -1;
    }
    old = *entry;
    if ((old == 0 && !parent) ||
        (s->zero_grains && old == VMDK_GTE_ZEROED))
      done = true;              /* reads as zeroes already */
    else if (in == 0 && n == grain_len) {
      if (s->zero_grains) {
        __atomic_store_n (entry, VMDK_GTE_ZEROED, __ATOMIC_RELAXED);
        done = true;
      }
      else if (!parent && (flags & FERRY_ZERO_MAY_TRIM)) {
        /* The grain's space stays in the file, unused. */
        __atomic_store_n (entry, 0, __ATOMIC_RELAXED);
        done = true;
      }
      if (done)
        s->gt_dirty[g / s->gt_entries] = 1;
    }
    pthread_mutex_unlock (&v->lock);
    if (!done) {
      uint64_t m = 0;
      while (m < n) {
        uint64_t k = MIN (n - m, sizeof zeroes);
        if (write_sparse (v, e, zeroes, k, off + m) == -1)
          return -1;
        m += k;
      }
    }
    count -= n;
    off += n;
  }
  return 0;
}

/* --- the write requests ------------------------------------------------------- */

/* Find the extent for OFFSET and refuse what cannot be written there. */
static struct vmdk_extent *
writable_extent (struct vmdk_image *v, uint64_t offset)
{
  struct vmdk_extent *e = vmdk_find_extent (v, offset);

  if (e->type == VMDK_EXTENT_ZERO || e->access != VMDK_RW) {
    ferry_error (EROFS, "%s: the extent at offset %" PRIu64 " (%s) cannot be "
                 "written", v->base.path, e->start,
                 e->type == VMDK_EXTENT_ZERO ? "ZERO" :
                 vmdk_access_name (e->access));
    return NULL;
  }
  return e;
}

/* Return -1 for a failure in the extent file FILE of V, saying which disk
 * it belongs to when it is a file of its own (the message names FILE). */
static int
extent_failed (struct vmdk_image *v, const char *file)
{
  if (file && strcmp (file, v->base.path) != 0)
    ferry_error_prefix ("%s", v->base.path);
  return -1;
}

/* Write BUF (COUNT bytes at OFFSET), or zeroes with FLAGS when BUF is
 * NULL, cut at extent boundaries. */
static int
write_pieces (struct vmdk_image *v, const uint8_t *buf, uint64_t count,
              uint64_t offset, unsigned flags)
{
  __atomic_store_n (&v->written, true, __ATOMIC_RELAXED);
  while (count > 0) {
    struct vmdk_extent *e = writable_extent (v, offset);
    uint64_t off, n, at;
    int r;

    if (e == NULL)
      return -1;
    off = offset - e->start;
    n = MIN (count, e->length - off);
    at = e->flat_offset + off;
    if (e->sparse)
      r = buf ? write_sparse (v, e, buf, n, off) :
        zero_sparse (v, e, n, off, flags);
    else
      r = buf ? ferry_image_pwrite (e->raw, buf, n, at) :
        ferry_image_zero (e->raw, n, at, flags);
    if (r == -1)
      return extent_failed (v, e->path);
    if (buf)
      buf += n;
    count -= n;
    offset += n;
  }
  return 0;
}

int
vmdk_pwrite (struct ferry_image *img, const void *buf, size_t count,
             uint64_t offset)
{
  struct vmdk_image *v = (struct vmdk_image *) img;

  if (v->stream_out)
    return vmdk_stream_pwrite (v, buf, count, offset);
  return write_pieces (v, buf, count, offset, 0);
}

int
vmdk_zero (struct ferry_image *img, size_t count, uint64_t offset,
           unsigned flags)
{
  struct vmdk_image *v = (struct vmdk_image *) img;

  if (v->stream_out)
    return vmdk_stream_zero (v, offset);
  return write_pieces (v, NULL, count, offset, flags);
}

int
vmdk_flush (struct ferry_image *img)
{
  struct vmdk_image *v = (struct vmdk_image *) img;
  size_t i;

  for (i = 0; i < v->nr_extents; i++) {
    struct vmdk_extent *e = &v->extents[i];
    if (e->sparse && e->sparse->writable) {
      int r;
      if (!e->sparse->stream) {
        pthread_mutex_lock (&v->lock);
        r = write_tables (e->sparse);
        pthread_mutex_unlock (&v->lock);
        if (r == -1)
          return extent_failed (v, e->sparse->path);
      }
      if (datasync_fd (e->sparse->fd) == -1) {
        ferry_error_errno (errno, "%s: flush", e->sparse->path);
        return extent_failed (v, e->sparse->path);
      }
      /* A new extent's first flush gives it its header, unclean (note 1). */
      if (!e->sparse->stream && e->sparse->is_new && !e->sparse->h.unclean) {
        e->sparse->h.unclean = true;
        if (vmdk_sparse_write_header (e->sparse) == -1)
          return extent_failed (v, e->sparse->path);
        if (datasync_fd (e->sparse->fd) == -1) {
          ferry_error_errno (errno, "%s: flush", e->sparse->path);
          return extent_failed (v, e->sparse->path);
        }
      }
    }
    else if (e->raw && ferry_image_flush (e->raw) == -1)
      return extent_failed (v, e->path);
  }
  if (datasync_fd (v->fd) == -1)
    return ferry_error_errno (errno, "%s: flush", img->path);
  return 0;
}

/* --- create ------------------------------------------------------------------ */

struct create_opts {
  enum subformat sub;
  const char *adapter;         /* as VMware names it */
  const char *hwversion;
  const char *toolsversion;
  bool zeroed_grain;
  const char *backing_file;
};

/* True when S is a non-empty string of at most 10 digits. */
static bool
is_number (const char *s)
{
  size_t n = strspn (s, "0123456789");
  return n > 0 && n <= 10 && s[n] == '\0';
}

static int
parse_create_options (const char *path, struct option_list *opts,
                      struct create_opts *o)
{
  static const char *const known[] = {
    "subformat", "adapter_type", "hwversion", "toolsversion", "compat6",
    "zeroed_grain", "backing_file", "backing_fmt", NULL,
  };
  static const char *const adapters[] = {
    "ide", "buslogic", "lsilogic", "legacyESX", NULL,
  };
  const char *s, *fmt;
  bool compat6 = false;
  size_t i, j;

  /* Refused before any file is made. */
  for (i = 0; i < opts->len; i++) {
    for (j = 0; known[j] && strcmp (known[j], opts->ptr[i].key); j++)
      ;
    if (known[j] == NULL)
      return ferry_error (EINVAL, "%s: vmdk does not take the option '%s' "
                          "(it takes subformat, adapter_type, hwversion, "
                          "toolsversion, compat6, zeroed_grain, "
                          "backing_file, backing_fmt)", path,
                          opts->ptr[i].key);
  }

  memset (o, 0, sizeof *o);
  o->sub = SUB_MONOLITHIC_SPARSE;
  o->adapter = "ide";
  o->hwversion = "4";
  o->toolsversion = "2147483647";
  s = options_get (opts, "subformat");
  if (s) {
    for (i = 0; i < 5 && strcmp (s, subformat_names[i]); i++)
      ;
    if (i == 5)
      return ferry_error (EINVAL, "%s: subformat=%s: expected "
                          "monolithicSparse, monolithicFlat, "
                          "twoGbMaxExtentSparse, twoGbMaxExtentFlat or "
                          "streamOptimized", path, s);
    o->sub = i;
  }
  s = options_get (opts, "adapter_type");
  if (s) {
    for (i = 0; adapters[i] && strcmp (s, adapters[i]); i++)
      ;
    if (adapters[i] == NULL)
      return ferry_error (EINVAL, "%s: adapter_type=%s: expected ide, "
                          "buslogic, lsilogic or legacyESX", path, s);
    o->adapter = adapters[i];
  }
  s = options_get (opts, "hwversion");
  if (s && strcmp (s, "undefined") != 0) {
    if (!is_number (s))
      return ferry_error (EINVAL, "%s: hwversion=%s: expected a number, "
                          "such as 4, 8 or 14", path, s);
    o->hwversion = s;
  }
  if (options_get_bool (opts, path, "compat6", &compat6) == -1)
    return -1;
  if (compat6) {
    if (s && strcmp (s, "undefined") != 0)
      return ferry_error (EINVAL, "%s: compat6 and hwversion cannot be given "
                          "together", path);
    o->hwversion = "6";
  }
  s = options_get (opts, "toolsversion");
  if (s) {
    if (!is_number (s))
      return ferry_error (EINVAL, "%s: toolsversion=%s: expected a number",
                          path, s);
    o->toolsversion = s;
  }
  if (options_get_bool (opts, path, "zeroed_grain", &o->zeroed_grain) == -1)
    return -1;
  o->backing_file = options_get (opts, "backing_file");
  fmt = options_get (opts, "backing_fmt");
  if (fmt && strcmp (fmt, "vmdk") != 0)
    return ferry_error (EINVAL, "%s: backing_fmt=%s: the parent of a VMDK "
                        "is a VMDK", path, fmt);
  if (o->backing_file && (strchr (o->backing_file, '"') ||
                          strchr (o->backing_file, '\n')))
    return ferry_error (EINVAL, "%s: backing_file: a descriptor cannot hold "
                        "a quote or a newline in a file name", path);

  if (o->sub == SUB_MONOLITHIC_FLAT || o->sub == SUB_TWOGB_FLAT) {
    if (o->backing_file)
      return ferry_error (EINVAL, "%s: a flat VMDK (%s) cannot have a backing "
                          "file", path, subformat_names[o->sub]);
    if (o->zeroed_grain)
      return ferry_error (EINVAL, "%s: zeroed_grain needs a sparse subformat",
                          path);
  }
  if (o->sub == SUB_STREAM && (o->backing_file || o->zeroed_grain))
    return ferry_error (EINVAL, "%s: a streamOptimized VMDK takes neither a "
                        "backing file nor zeroed_grain", path);
  return 0;
}

/* Append the ddb entry KEY = VALUE to D. */
static int
ddb_add (struct vmdk_descriptor *d, const char *key, const char *value)
{
  struct vmdk_ddb_entry e = { .key = strdup (key), .value = strdup (value) };

  if (e.key == NULL || e.value == NULL ||
      vmdk_ddb_list_append (&d->ddb, e) == -1) {
    free (e.key);
    free (e.value);
    return -1;
  }
  return 0;
}

/* The disk database VMware writes, in its (alphabetical) order. */
static int
fill_ddb (struct vmdk_descriptor *d, const struct create_opts *o,
          uint64_t size)
{
  bool ide = strcmp (o->adapter, "ide") == 0;
  unsigned heads = ide ? 16 : 255;
  uint64_t cylinders = size / ((uint64_t) heads * 63 * VMDK_SECTOR);
  uint8_t r[32];
  char cyl[32], hd[8], lci[40], uuid[64];
  size_t i;

  if (ide && cylinders > 16383)
    cylinders = 16383;
  if (getrandom (r, sizeof r, 0) != sizeof r)
    return -1;
  snprintf (cyl, sizeof cyl, "%" PRIu64, cylinders);
  snprintf (hd, sizeof hd, "%u", heads);
  for (i = 0; i < 16; i++)
    snprintf (lci + 2 * i, 3, "%02x", r[i]);
  /* "60 00 C2 ..": VMware's prefix, then random bytes. */
  snprintf (uuid, sizeof uuid, "60 00 C2 %02x %02x %02x %02x %02x-"
            "%02x %02x %02x %02x %02x %02x %02x %02x", r[19], r[20], r[21],
            r[22], r[23], r[24], r[25], r[26], r[27], r[28], r[29], r[30],
            r[31]);
  if (ddb_add (d, "ddb.adapterType", o->adapter) == -1 ||
      ddb_add (d, "ddb.geometry.cylinders", cyl) == -1 ||
      ddb_add (d, "ddb.geometry.heads", hd) == -1 ||
      ddb_add (d, "ddb.geometry.sectors", "63") == -1 ||
      ddb_add (d, "ddb.longContentID", lci) == -1 ||
      (o->sub != SUB_MONOLITHIC_FLAT && o->sub != SUB_TWOGB_FLAT &&
       ddb_add (d, "ddb.thinProvisioned", "1") == -1) ||
      ddb_add (d, "ddb.toolsVersion", o->toolsversion) == -1 ||
      ddb_add (d, "ddb.uuid", uuid) == -1 ||
      ddb_add (d, "ddb.virtualHWVersion", o->hwversion) == -1)
    return -1;
  return 0;
}

/* Add an extent line to D. */
static int
add_line (struct vmdk_descriptor *d, enum vmdk_access access,
          uint64_t bytes, enum vmdk_extent_type type, const char *file)
{
  struct vmdk_extent_line l = {
    .access = access, .sectors = bytes / VMDK_SECTOR, .type = type,
    .file = strdup (file), .has_offset = type == VMDK_EXTENT_FLAT,
  };

  if (l.file == NULL || vmdk_line_list_append (&d->extents, l) == -1) {
    free (l.file);
    return -1;
  }
  return 0;
}

/* Make the extent files the descriptor of V names (note 5); the
 * monolithic kinds use the image file itself. */
static int
make_extents (struct vmdk_image *v, const struct create_opts *o)
{
  bool self = o->sub == SUB_MONOLITHIC_SPARSE || o->sub == SUB_STREAM;
  size_t i;

  if (vmdk_layout_extents (v, self) == -1)
    return -1;
  for (i = 0; i < v->nr_extents; i++) {
    struct vmdk_extent *e = &v->extents[i];
    int fd;

    if (self) {
      e->sparse = vmdk_sparse_alloc (VMDK_SPARSE_HOSTED, e->path, v->fd,
                                     true);
      if (e->sparse == NULL)
        return -1;
      if (o->sub == SUB_STREAM ? vmdk_stream_init (v, e->sparse, e->length) :
          sparse_init_new (e->sparse, e->length, true, o->zeroed_grain))
        return -1;
      continue;
    }

    fd = hostfile_open_locked (e->path, FERRY_OPEN_WRITE, true, NULL);
    if (fd == -1)
      return -1;
    e->created = true;
    if (e->type == VMDK_EXTENT_FLAT) {
      struct option_list none = empty_vector;
      e->raw = raw_driver.create (e->path, fd, e->length, &none);
      if (e->raw == NULL)
        return -1;
    }
    else {
      e->sparse = vmdk_sparse_alloc (VMDK_SPARSE_HOSTED, e->path, fd, false);
      if (e->sparse == NULL) {
        close (fd);
        return -1;
      }
      if (sparse_init_new (e->sparse, e->length, false, o->zeroed_grain))
        return -1;
    }
  }
  return 0;
}

/* Write the descriptor of V: into the sparse file (embedded), or as the
 * file itself. */
static int
write_descriptor (struct vmdk_image *v, bool embedded)
{
  CLEANUP_FREE char *text = vmdk_descriptor_format (&v->desc);
  size_t len;

  if (text == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  len = strlen (text);
  if (embedded) {
    struct vmdk_sparse *s = v->extents[0].sparse;
    if (len > s->h.desc_size * VMDK_SECTOR)
      return ferry_error (EINVAL, "%s: the descriptor (%zu bytes) does not "
                          "fit in its %" PRIu64 " sectors", v->base.path, len,
                          s->h.desc_size);
    if (full_pwrite (v->fd, text, len, s->h.desc_offset * VMDK_SECTOR) == -1)
      return ferry_error_errno (errno, "%s: writing the descriptor",
                                v->base.path);
    return 0;
  }
  if (full_pwrite (v->fd, text, len, 0) == -1 || truncate_fd (v->fd, len) == -1)
    return ferry_error_errno (errno, "%s: writing the descriptor",
                              v->base.path);
  return 0;
}

/* Remove the extent files create made (on failure). */
static void
remove_created (struct vmdk_image *v)
{
  size_t i;

  for (i = 0; i < v->nr_extents; i++)
    if (v->extents[i].created)
      unlink (v->extents[i].path);
}

struct ferry_image *
vmdk_create (const char *path, int fd, uint64_t size,
             struct option_list *opts)
{
  struct vmdk_image *v;
  struct create_opts o;
  CLEANUP_FREE char *prefix = NULL, *postfix = NULL;
  struct vmdk_descriptor *d;
  struct open_args args = { .flags = 0 };
  char name[PATH_MAX];
  struct stat st;
  uint64_t done, n;
  unsigned k;

  v = vmdk_image_new (path, fd, false);
  if (v == NULL)
    return NULL;
  if (parse_create_options (path, opts, &o) == -1)
    goto err;
  if (fstat (fd, &st) == 0 && S_ISBLK (st.st_mode)) {
    ferry_error (EINVAL, "%s: a VMDK is written to files, not to a block "
                 "device (write raw to a device)", path);
    goto err;
  }
  size = ROUND_UP (size, (uint64_t) VMDK_SECTOR);
  if (size == 0 || size > VMDK_MAX_SIZE) {
    ferry_error (EINVAL, "%s: a VMDK of %" PRIu64 " bytes", path, size);
    goto err;
  }
  if (vmdk_split_name (path, &prefix, &postfix) == -1) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    goto err;
  }
  /* Every extent's name and the parent's go into the descriptor. */
  if (vmdk_check_descriptor_name (path, prefix) == -1 ||
      vmdk_check_descriptor_name (path, postfix) == -1 ||
      (o.backing_file &&
       vmdk_check_descriptor_name (path, o.backing_file) == -1))
    goto err;

  d = &v->desc;
  d->version = 1;
  d->cid = random_cid ();
  d->has_cid = true;
  d->parent_cid = VMDK_NO_PARENT;
  d->encoding = strdup ("UTF-8");
  d->create_type = strdup (subformat_names[o.sub]);
  v->create_type = strdup (subformat_names[o.sub]);
  if (d->encoding == NULL || d->create_type == NULL ||
      v->create_type == NULL || fill_ddb (d, &o, size) == -1) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    goto err;
  }
  if (o.backing_file) {
    struct vmdk_image *p;
    if (image_open_backing (&v->base, o.backing_file, "vmdk", &args) == -1)
      goto err;
    p = (struct vmdk_image *) v->base.backing;
    d->parent_cid = p->desc.has_cid ? p->desc.cid : VMDK_NO_PARENT;
    d->parent_hint = strdup (o.backing_file);
    if (d->parent_hint == NULL) {
      ferry_error (ENOMEM, "%s: out of memory", path);
      goto err;
    }
  }

  for (done = 0, k = 1; done < size; done += n, k++) {
    int r;
    switch (o.sub) {
    case SUB_MONOLITHIC_SPARSE: case SUB_STREAM:
      n = size;
      r = add_line (d, o.sub == SUB_STREAM ? VMDK_RDONLY : VMDK_RW, n,
                    VMDK_EXTENT_SPARSE, basename ((char *) path));
      break;
    case SUB_MONOLITHIC_FLAT:
      n = size;
      snprintf (name, sizeof name, "%s-flat%s", prefix, postfix);
      r = add_line (d, VMDK_RW, n, VMDK_EXTENT_FLAT, name);
      break;
    default:
      n = MIN (size - done, SPLIT_SECTORS * VMDK_SECTOR);
      snprintf (name, sizeof name, "%s-%c%03u%s", prefix,
                o.sub == SUB_TWOGB_FLAT ? 'f' : 's', k, postfix);
      r = add_line (d, VMDK_RW, n, o.sub == SUB_TWOGB_FLAT ?
                    VMDK_EXTENT_FLAT : VMDK_EXTENT_SPARSE, name);
      break;
    }
    if (r == -1) {
      ferry_error (ENOMEM, "%s: out of memory", path);
      goto err;
    }
  }
  v->base.size = size;
  if (make_extents (v, &o) == -1) {
    if (o.sub != SUB_MONOLITHIC_SPARSE && o.sub != SUB_STREAM)
      ferry_error_prefix ("%s", path);   /* the message names an extent */
    goto err;
  }
  if (o.sub == SUB_STREAM) {
    /* Room for the final name, which vmdk_rename writes in. */
    struct vmdk_sparse *s = v->extents[0].sparse;
    CLEANUP_FREE char *text = vmdk_descriptor_format (d);
    if (text == NULL) {
      ferry_error (ENOMEM, "%s: out of memory", path);
      goto err;
    }
    s->h.desc_size = DIV_ROUND_UP (strlen (text) + 512, VMDK_SECTOR);
    if (s->h.desc_size >= s->h.overhead) {
      ferry_error (EINVAL, "%s: the descriptor is too long", path);
      goto err;
    }
  }
  if (write_descriptor (v, o.sub == SUB_MONOLITHIC_SPARSE ||
                        o.sub == SUB_STREAM) == -1)
    goto err;
  v->base.zero_initialized = v->base.backing == NULL;
  v->created = true;
  return &v->base;

 err:
  remove_created (v);
  vmdk_image_discard (v);
  return NULL;
}

/* --- existing images, and what close completes -------------------------------- */

int
vmdk_open_for_write (struct vmdk_image *v)
{
  size_t i;

  for (i = 0; i < v->nr_extents; i++) {
    struct vmdk_extent *e = &v->extents[i];
    if (e->sparse && e->access == VMDK_RW &&
        sparse_open_for_write (e->sparse) == -1)
      return -1;
  }
  if (v->desc.parent_hint && v->base.backing == NULL)
    return ferry_error (EINVAL, "%s: writing needs the parent '%s' open "
                        "(FERRY_OPEN_NO_BACKING was given)", v->base.path,
                        v->desc.parent_hint);
  return 0;
}

/* Give V a new CID in its descriptor (note 4), editing only that line. */
static int
update_cid (struct vmdk_image *v)
{
  struct vmdk_sparse *s = v->embedded ? v->extents[0].sparse : NULL;
  uint64_t at = s ? s->h.desc_offset * VMDK_SECTOR : 0;
  uint64_t room = s ? s->h.desc_size * VMDK_SECTOR : VMDK_MAX_DESCRIPTOR;
  CLEANUP_FREE char *text = calloc (1, room + 16), *new_text = NULL;
  char *line, *val, *end;
  ssize_t len;
  size_t n;
  uint32_t cid = random_cid ();

  if (text == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  len = pread (v->fd, text, room, at);
  if (len <= 0)
    return ferry_error_errno (errno, "%s: reading the descriptor",
                              v->base.path);
  text[len] = '\0';
  for (line = text; line && *line; line = strchr (line, '\n'),
         line = line ? line + 1 : NULL) {
    char *p = line + strspn (line, " \t");
    if (strncmp (p, "CID", 3) == 0 && p[3 + strspn (p + 3, " \t")] == '=')
      break;
  }
  if (line == NULL || *line == '\0')
    return 0;                   /* no CID line: nothing to change */
  val = strchr (line, '=') + 1;
  val += strspn (val, " \t\"");
  end = val + strspn (val, "0123456789abcdefABCDEF");
  /* qemu-img writes the CID without leading zeroes: the new one may be
   * longer, which moves the rest of the text. */
  if (asprintf (&new_text, "%.*s%08" PRIx32 "%s", (int) (val - text), text,
                cid, end) == -1)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  n = strlen (new_text);
  if (n > room)
    return ferry_error (ENOSPC, "%s: the descriptor has no room for the new "
                        "CID", v->base.path);
  if (full_pwrite (v->fd, new_text, n, at) == -1 ||
      (s == NULL && truncate_fd (v->fd, n) == -1))
    return ferry_error_errno (errno, "%s: writing the descriptor",
                              v->base.path);
  v->desc.cid = cid;
  return 0;
}

int
vmdk_finish (struct vmdk_image *v)
{
  size_t i;
  int r = 0;

  for (i = 0; i < v->nr_extents; i++) {
    struct vmdk_sparse *s = v->extents[i].sparse;
    if (s == NULL || !s->writable)
      continue;
    if (s->stream) {
      if (vmdk_stream_finish (s) == -1)
        r = extent_failed (v, s->path);
      continue;
    }
    pthread_mutex_lock (&v->lock);
    if (write_tables (s) == -1)
      r = extent_failed (v, s->path);
    pthread_mutex_unlock (&v->lock);
    if (r == 0 && !s->is_new && datasync_fd (s->fd) == -1) {
      ferry_error_errno (errno, "%s: flush", s->path);
      r = extent_failed (v, s->path);
    }
    /* The header last (notes 1 and 4). */
    s->h.unclean = false;
    if (r == 0 && vmdk_sparse_write_header (s) == -1)
      r = extent_failed (v, s->path);
  }
  if (r == 0 && v->written && !v->created &&
      v->desc.has_cid && update_cid (v) == -1)
    r = -1;
  return r;
}
