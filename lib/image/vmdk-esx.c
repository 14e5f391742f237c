/* vmdk: the sparse extents of ESX snapshots, read-only.
 *
 * COWD ("vmfsSparse", the -000001-delta.vmdk of ESX 3 to 6.0 snapshots
 * on VMFS 5): a 2048-byte header, then a grain directory of 32-bit sector
 * offsets to grain tables of 4096 32-bit entries; 0 is a grain that is not
 * in this snapshot.
 *
 * seSparse (the -sesparse.vmdk of vSphere 6.5+ snapshots on VMFS 6, and of
 * linked clones): a constant header and a volatile header of 512 bytes,
 * 4 KiB grains, a grain directory of 64-bit entries (0x1 in the top
 * nibble, a table number below), tables of 4096 64-bit entries whose top
 * nibble is the grain's state: 0 not allocated, 1 unmapped and 2 zeroed
 * (both read as zeroes), 3 allocated, with the grain's number split over
 * the low 60 bits.  VMware does not publish this layout; the fields and
 * encodings are the ones qemu's reader documents, and ferry is as strict
 * as qemu about the fields it does not understand.
 *
 * Both only map grains; the grain map of vmdk-sparse.c does the rest.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "vmdk-internal.h"
#include "../common/util.h"

/* COWD header fields (little-endian u32 unless noted). */
#define COWD_VERSION        4
#define COWD_FLAGS          8
#define COWD_NUM_SECTORS   12
#define COWD_GRAIN_SIZE    16
#define COWD_GD_OFFSET     20
#define COWD_NUM_GD        24
#define COWD_FREE_SECTOR   28

/* seSparse constant header fields (little-endian u64). */
#define SE_MAGIC            0
#define SE_VERSION          8
#define SE_CAPACITY        16
#define SE_GRAIN_SIZE      24
#define SE_GT_SIZE         32
#define SE_FLAGS           40
#define SE_VOLATILE_OFFSET 80
#define SE_GD_OFFSET      128
#define SE_GD_SIZE        136
#define SE_GT_OFFSET      144
#define SE_GRAINS_OFFSET  192

int
vmdk_cowd_open (struct vmdk_sparse *s, uint64_t file_size)
{
  uint8_t h[VMDK_COWD_HEADER_SIZE];
  uint32_t sectors, grain, gd, nr_gd;
  uint64_t needed;

  s->file_size = file_size;
  if (file_size < sizeof h)
    return ferry_error (EINVAL, "%s: %" PRIu64 " bytes is too short for a "
                        "COWD header (%zu bytes)", s->path, file_size,
                        sizeof h);
  if (vmdk_sparse_pread (s, h, sizeof h, 0) == -1)
    return ferry_error_errno (errno, "%s: reading the COWD header", s->path);
  if (get_le32 (h) != VMDK_COWD_MAGIC)
    return ferry_error (EINVAL, "%s: no COWD header", s->path);
  if (get_le32 (h + COWD_VERSION) != 1)
    return ferry_error (ENOTSUP, "%s: COWD version %" PRIu32 " is not one "
                        "ferry knows (1)", s->path,
                        get_le32 (h + COWD_VERSION));
  sectors = get_le32 (h + COWD_NUM_SECTORS);
  grain = get_le32 (h + COWD_GRAIN_SIZE);
  gd = get_le32 (h + COWD_GD_OFFSET);
  nr_gd = get_le32 (h + COWD_NUM_GD);
  if (sectors == 0)
    return ferry_error (EINVAL, "%s: COWD header: capacity of 0 sectors",
                        s->path);
  if (!is_power_of_2 (grain) || grain > VMDK_MAX_GRAIN_SECTORS)
    return ferry_error (EINVAL, "%s: COWD header: grain size of %" PRIu32
                        " sectors (a power of two up to %u is needed)",
                        s->path, grain, VMDK_MAX_GRAIN_SECTORS);
  needed = DIV_ROUND_UP ((uint64_t) sectors,
                         (uint64_t) grain * VMDK_COWD_GT_ENTRIES);
  if (nr_gd < needed)
    return ferry_error (EINVAL, "%s: COWD header: %" PRIu32 " grain "
                        "directory entries cannot map %" PRIu32 " sectors "
                        "(%" PRIu64 " are needed)", s->path, nr_gd, sectors,
                        needed);
  s->capacity = (uint64_t) sectors * VMDK_SECTOR;
  s->grain_size = grain * VMDK_SECTOR;
  s->gt_entries = VMDK_COWD_GT_ENTRIES;
  s->h.gd_offset = gd;
  s->h.grain = grain;
  s->h.capacity = sectors;
  s->h.gtes_per_gt = VMDK_COWD_GT_ENTRIES;
  s->h.version = 1;
  return vmdk_sparse_setup_map (s, (uint64_t) gd * VMDK_SECTOR);
}

/* The byte offset of a sector field at OFF in the constant header C,
 * checked against the file size; UINT64_MAX when it is outside. */
static uint64_t
se_offset (const uint8_t *c, size_t off, uint64_t file_size)
{
  uint64_t v = get_le64 (c + off);

  if (v > file_size / VMDK_SECTOR)
    return UINT64_MAX;
  return v * VMDK_SECTOR;
}

int
vmdk_se_open (struct vmdk_sparse *s, uint64_t file_size)
{
  uint8_t c[VMDK_SECTOR], vol[VMDK_SECTOR];
  uint64_t capacity, gd, gd_entries, vol_at;

  s->file_size = file_size;
  if (file_size < 2 * VMDK_SECTOR)
    return ferry_error (EINVAL, "%s: %" PRIu64 " bytes is too short for a "
                        "seSparse extent", s->path, file_size);
  if (vmdk_sparse_pread (s, c, sizeof c, 0) == -1)
    return ferry_error_errno (errno, "%s: reading the seSparse header",
                              s->path);
  if (get_le64 (c + SE_MAGIC) != VMDK_SE_CONST_MAGIC)
    return ferry_error (EINVAL, "%s: no seSparse header (magic 0xcafebabe)",
                        s->path);
  if (get_le64 (c + SE_VERSION) != VMDK_SE_VERSION)
    return ferry_error (ENOTSUP, "%s: seSparse version 0x%016" PRIx64
                        " is not one ferry knows (0x%016" PRIx64 ")", s->path,
                        get_le64 (c + SE_VERSION), VMDK_SE_VERSION);
  if (get_le64 (c + SE_GRAIN_SIZE) != 8 || get_le64 (c + SE_GT_SIZE) != 64)
    return ferry_error (ENOTSUP, "%s: seSparse grains of %" PRIu64 " sectors "
                        "and tables of %" PRIu64 " sectors (ferry knows 8 "
                        "and 64)", s->path, get_le64 (c + SE_GRAIN_SIZE),
                        get_le64 (c + SE_GT_SIZE));
  if (get_le64 (c + SE_FLAGS) != 0)
    return ferry_error (ENOTSUP, "%s: seSparse flags 0x%" PRIx64 " are not "
                        "ones ferry knows", s->path, get_le64 (c + SE_FLAGS));

  vol_at = se_offset (c, SE_VOLATILE_OFFSET, file_size);
  if (vol_at == UINT64_MAX || vol_at > file_size - sizeof vol)
    return ferry_error (EINVAL, "%s: the seSparse volatile header lies past "
                        "the end of the file", s->path);
  if (vmdk_sparse_pread (s, vol, sizeof vol, vol_at) == -1)
    return ferry_error_errno (errno, "%s: reading the seSparse volatile "
                              "header", s->path);
  if (get_le64 (vol) != VMDK_SE_VOLATILE_MAGIC)
    return ferry_error (EINVAL, "%s: no seSparse volatile header (magic "
                        "0xcafecafe) at offset 0x%" PRIx64, s->path, vol_at);
  if (get_le64 (vol + 24) != 0)
    return ferry_error (ENOTSUP, "%s: the seSparse journal must be replayed "
                        "first (the snapshot was not closed cleanly)",
                        s->path);

  capacity = get_le64 (c + SE_CAPACITY);
  if (capacity == 0 || capacity > VMDK_MAX_SIZE / VMDK_SECTOR)
    return ferry_error (EINVAL, "%s: seSparse capacity of %" PRIu64
                        " sectors", s->path, capacity);
  gd = se_offset (c, SE_GD_OFFSET, file_size);
  s->se_tables = se_offset (c, SE_GT_OFFSET, file_size);
  s->se_grains = se_offset (c, SE_GRAINS_OFFSET, file_size);
  if (gd == UINT64_MAX || s->se_tables == UINT64_MAX ||
      s->se_grains == UINT64_MAX)
    return ferry_error (EINVAL, "%s: the seSparse grain directory, tables or "
                        "grains start past the end of the file", s->path);
  s->capacity = capacity * VMDK_SECTOR;
  s->grain_size = 8 * VMDK_SECTOR;
  s->gt_entries = 64 * VMDK_SECTOR / 8;
  gd_entries = get_le64 (c + SE_GD_SIZE);
  if (gd_entries > UINT64_MAX / 64 ||
      gd_entries * 64 < DIV_ROUND_UP (s->capacity,
                                      (uint64_t) s->gt_entries * 4096))
    return ferry_error (EINVAL, "%s: the seSparse grain directory (%" PRIu64
                        " sectors) cannot map %" PRIu64 " sectors", s->path,
                        gd_entries, capacity);
  s->h.capacity = capacity;
  s->h.grain = 8;
  s->h.gtes_per_gt = s->gt_entries;
  s->h.gd_offset = gd / VMDK_SECTOR;
  return vmdk_sparse_setup_map (s, gd);
}
