/* vmdk: ferry check.  Opening the image checks the descriptor, the headers
 * and that the grain directories fit in their files; the check then walks
 * every grain table of every sparse extent without trusting it:
 *
 *   - each table lies inside the file, and each entry is a state the
 *     format knows and points inside the file;
 *   - no grain overlaps another grain or the metadata (header, embedded
 *     descriptor, directories, tables, stream markers);
 *   - each compressed grain starts with a marker for the sector its table
 *     maps, whose data fits in the file;
 *   - the redundant tables of a hosted sparse extent match the primary
 *     ones.
 *
 * Who uses each sector is kept in a bitmap of the file's sectors, at most
 * CHECK_BITMAP_MAX bytes per extent file (a file of 256 GiB); past that
 * the overlap checks are skipped, everything else is still checked.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmdk-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

#define CHECK_BITMAP_MAX (64u << 20)

/* The sectors of one extent file in use so far. */
struct claims {
  uint8_t *bits;
  uint64_t nr_sectors;
};

/* Mark [OFF, OFF+LEN) used; false when any of it was already. */
static bool
claim (struct claims *c, uint64_t off, uint64_t len)
{
  uint64_t s, e;
  bool fresh = true;

  if (c->bits == NULL || len == 0)
    return true;
  s = off / VMDK_SECTOR;
  e = MIN (DIV_ROUND_UP (off + len, VMDK_SECTOR), c->nr_sectors);
  for (; s < e; s++) {
    uint8_t m = 1u << (s & 7);
    if (c->bits[s >> 3] & m)
      fresh = false;
    c->bits[s >> 3] |= m;
  }
  return fresh;
}

/* Claim the metadata of S; a clash is reported. */
static int
claim_metadata (struct vmdk_sparse *s, struct claims *c,
                struct ferry_check_result *r)
{
  size_t tb = (size_t) s->gt_entries * (s->kind == VMDK_SPARSE_SE ? 8 : 4);
  size_t eb = s->kind == VMDK_SPARSE_SE ? 8 : 4;
  bool stream = s->markers;
  uint32_t i;

  switch (s->kind) {
  case VMDK_SPARSE_HOSTED:
    claim (c, 0, VMDK_SECTOR);
    if (s->h.desc_offset)
      claim (c, s->h.desc_offset * VMDK_SECTOR, s->h.desc_size * VMDK_SECTOR);
    break;
  case VMDK_SPARSE_COWD:
    claim (c, 0, VMDK_COWD_HEADER_SIZE);
    break;
  case VMDK_SPARSE_SE:
    claim (c, 0, 2 * VMDK_SECTOR);
    break;
  }
  /* The directory, with its marker in a stream. */
  if (!claim (c, s->h.gd_offset * VMDK_SECTOR - (stream ? VMDK_SECTOR : 0),
              (uint64_t) s->nr_gts * eb + (stream ? VMDK_SECTOR : 0)) &&
      check_report (r, true, "%s: the grain directory at sector %" PRIu64
                    " overlaps other metadata", s->path,
                    s->h.gd_offset) == -1)
    return -1;
  if (stream && s->file_size >= 3 * VMDK_SECTOR &&
      s->file_size - 3 * VMDK_SECTOR > s->h.gd_offset * VMDK_SECTOR)
    claim (c, ROUND_DOWN (s->file_size, VMDK_SECTOR) - 3 * VMDK_SECTOR,
           3 * VMDK_SECTOR);
  for (i = 0; i < s->nr_gts; i++) {
    if (s->gd[i] == 0)
      continue;
    if (!claim (c, s->gd[i] - (stream ? VMDK_SECTOR : 0),
                tb + (stream ? VMDK_SECTOR : 0)) &&
        s->kind != VMDK_SPARSE_SE &&
        check_report (r, true, "%s: grain table %" PRIu32 " at offset 0x%"
                      PRIx64 " overlaps other metadata", s->path, i,
                      s->gd[i]) == -1)
      return -1;
  }
  return 0;
}

/* Compare the redundant tables of S with the primary ones. */
static int
check_redundant (struct vmdk_sparse *s, struct ferry_check_result *r)
{
  size_t bytes = (size_t) s->gt_entries * 4;
  CLEANUP_FREE uint8_t *raw = malloc ((size_t) s->nr_gts * 4);
  CLEANUP_FREE uint8_t *a = malloc (bytes), *b = malloc (bytes);
  uint64_t at = s->h.rgd_offset * VMDK_SECTOR;
  uint32_t i;

  if (raw == NULL || a == NULL || b == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", s->path);
  if (at > s->file_size || (uint64_t) s->nr_gts * 4 > s->file_size - at)
    return check_report (r, true, "%s: the redundant grain directory at "
                         "sector %" PRIu64 " runs past the end of the file",
                         s->path, s->h.rgd_offset);
  if (full_pread (s->fd, raw, (size_t) s->nr_gts * 4, at) == -1)
    return ferry_error_errno (errno, "%s: reading the redundant grain "
                              "directory", s->path);
  for (i = 0; i < s->nr_gts; i++) {
    uint64_t rgt = (uint64_t) get_le32 (raw + 4 * i) * VMDK_SECTOR;
    if (s->gd[i] == 0 && rgt == 0)
      continue;
    if (rgt == 0 || s->gd[i] == 0 || rgt > s->file_size - bytes ||
        s->gd[i] > s->file_size - bytes) {
      if (check_report (r, true, "%s: grain table %" PRIu32 " and its "
                        "redundant copy are not both in the file", s->path,
                        i) == -1)
        return -1;
      continue;
    }
    if (full_pread (s->fd, a, bytes, s->gd[i]) == -1 ||
        full_pread (s->fd, b, bytes, rgt) == -1)
      return ferry_error_errno (errno, "%s: reading grain table %" PRIu32,
                                s->path, i);
    if (memcmp (a, b, bytes) != 0 &&
        check_report (r, true, "%s: grain table %" PRIu32 " differs from its "
                      "redundant copy at offset 0x%" PRIx64, s->path, i,
                      rgt) == -1)
      return -1;
  }
  return 0;
}

/* Check the grain marker of the compressed grain at HOST for sector LBA;
 * *LEN is what it takes in the file. */
static int
check_marker (struct vmdk_sparse *s, uint64_t host, uint64_t lba,
              uint64_t *len, struct ferry_check_result *r)
{
  uint8_t m[VMDK_GRAIN_MARKER_SIZE];

  *len = VMDK_SECTOR;
  if (host > s->file_size - sizeof m)
    return check_report (r, true, "%s: the grain marker at offset 0x%" PRIx64
                         " runs past the end of the file", s->path, host);
  if (full_pread (s->fd, m, sizeof m, host) == -1)
    return ferry_error_errno (errno, "%s: reading the grain marker at "
                              "offset 0x%" PRIx64, s->path, host);
  if (get_le64 (m) != lba)
    return check_report (r, true, "%s: the grain marker at offset 0x%" PRIx64
                         " is for sector %" PRIu64 ", its table maps sector %"
                         PRIu64, s->path, host, get_le64 (m), lba);
  *len = sizeof m + get_le32 (m + 8);
  if (get_le32 (m + 8) == 0 || *len > s->file_size - host)
    return check_report (r, true, "%s: the grain marker at offset 0x%" PRIx64
                         " gives %" PRIu32 " bytes of data, which do not fit "
                         "in the file", s->path, host, get_le32 (m + 8));
  return 0;
}

/* Walk every table of S. */
static int
check_sparse (struct vmdk_sparse *s, struct ferry_check_result *r)
{
  struct claims c = { 0 };
  uint64_t bitmap = DIV_ROUND_UP (DIV_ROUND_UP (s->file_size, VMDK_SECTOR), 8);
  uint32_t ti, i;
  int ret = -1;

  if (bitmap <= CHECK_BITMAP_MAX) {
    c.bits = calloc (1, bitmap ? bitmap : 1);
    c.nr_sectors = DIV_ROUND_UP (s->file_size, VMDK_SECTOR);
  }
  if (claim_metadata (s, &c, r) == -1)
    goto out;
  r->total_clusters += DIV_ROUND_UP (s->capacity, s->grain_size);

  for (ti = 0; ti < s->nr_gts; ti++) {
    CLEANUP_FREE void *t = NULL;
    if (s->gd[ti] == 0)
      continue;
    t = vmdk_sparse_read_table (s, ti);
    if (t == NULL) {
      if (check_report (r, true, "%s", ferry_get_error ()) == -1)
        goto out;
      continue;
    }
    for (i = 0; i < s->gt_entries; i++) {
      uint64_t g = (uint64_t) ti * s->gt_entries + i, host = 0, len;
      enum vmdk_run_kind kind;

      if (g << s->grain_bits >= s->capacity)
        break;
      if (vmdk_sparse_classify (s, t, ti, i, &kind, &host) == -1) {
        if (check_report (r, true, "%s", ferry_get_error ()) == -1)
          goto out;
        continue;
      }
      if (kind != VMDK_RUN_DATA && kind != VMDK_RUN_COMPRESSED)
        continue;
      r->allocated_clusters++;
      len = s->grain_size;
      if (kind == VMDK_RUN_COMPRESSED && s->markers &&
          check_marker (s, host, (g << s->grain_bits) / VMDK_SECTOR, &len,
                        r) == -1)
        goto out;
      if (!claim (&c, host, MIN (len, s->file_size - host)) &&
          check_report (r, true, "%s: grain table %" PRIu32 " entry %" PRIu32
                        ": the grain at offset 0x%" PRIx64 " overlaps "
                        "metadata or another grain", s->path, ti, i,
                        host) == -1)
        goto out;
    }
  }
  if (s->kind == VMDK_SPARSE_HOSTED && (s->h.flags & VMDK_FLAG_RGD) &&
      s->h.rgd_offset && check_redundant (s, r) == -1)
    goto out;
  ret = 0;

 out:
  free (c.bits);
  return ret;
}

int
vmdk_check (const char *path, int fd, struct ferry_check_result *result)
{
  /* FD, open in ferry_image_check, holds the locks the caller asked
   * for on the descriptor (or monolithic file); the extents of this
   * second open are read without asking others to keep out. */
  struct ferry_image *img = ferry_image_open (path, "vmdk",
                                              FERRY_OPEN_NO_BACKING |
                                              FERRY_OPEN_SHARED);
  struct vmdk_image *v = (struct vmdk_image *) img;
  size_t i;
  int r = 0;

  if (img == NULL)
    return -1;
  for (i = 0; i < v->nr_extents && r == 0; i++)
    if (v->extents[i].sparse)
      r = check_sparse (v->extents[i].sparse, result);
  ferry_image_close (img);
  return r;
}
