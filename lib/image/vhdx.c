/* vhdx: Microsoft's Virtual Hard Disk v2 format ([MS-VHDX]), read side.
 *
 * Fixed, dynamic and differencing images, 512- and 4096-byte logical
 * sectors, blocks of 1 to 256 MiB and every payload block state.  The log
 * is found and replayed by vhdx-log.c, images are created and written by
 * vhdx-write.c, and ferry check walks them in vhdx-check.c.
 *
 * NOTES ON THE DESIGN
 *
 * 1. Open reads in the order the specification asks for: the file
 *    identifier, both headers (the valid one with the higher sequence
 *    number is current; equal numbers are taken only when both headers
 *    hold the same bytes, as Disk2VHD writes them), the log (note 3), the
 *    region table (the first of its two copies whose checksum holds), the
 *    metadata table and its items, and the whole BAT.  Every offset and
 *    length read from the file is checked before it is used, and every
 *    BAT entry is checked at open, so the read path needs no checks.
 *
 * 2. The BAT is kept whole in memory: the file must hold it, so its size
 *    is justified by the file's.  Readers load entries atomically and
 *    take no lock; writers change them under v->lock (vhdx-write.c).
 *    Data is read straight into the caller's buffer.
 *
 * 3. A log that needs replay is replayed in memory on a read-only open:
 *    vhdx-log.c finds the active sequence and maps the file ranges it
 *    rewrites, and every read of the file (metadata and payload alike)
 *    goes through vhdx_read_file, which patches those ranges in.  The file
 *    is never written.  A read-write open replays the log to disk before
 *    it reads the region table.
 *
 * 4. Payload blocks in the states "undefined" and "unmapped" read as
 *    zeroes (the specification allows that, and it leaks nothing); "not
 *    present" reads the parent of a differencing image, zeroes elsewhere.
 *    Sector bitmaps of partially present blocks are read from the file
 *    when the block is read; nothing of them is cached.
 *
 * 5. Extents inside fully present blocks come from the file's holes
 *    (SEEK_DATA / SEEK_HOLE): qemu-img leaves the unwritten parts of its
 *    blocks as holes, and the copy engine then never reads them.  Only on
 *    read-only opens of regular files with no log replayed in memory,
 *    where the file alone says what a range holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <isa-l/crc.h>

#include "hostfile.h"
#include "vhdx-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* The most runs one extents call reports, and the most guest bytes it
 * walks; the caller asks again. */
#define VHDX_EXTENTS_MAX_RUNS 4096
#define VHDX_EXTENTS_MAX_BYTES (64ull << 30)

static const uint8_t guid_bat[16] = VHDX_GUID_BAT;
static const uint8_t guid_metadata[16] = VHDX_GUID_METADATA;
static const uint8_t guid_file_parameters[16] = VHDX_GUID_FILE_PARAMETERS;
static const uint8_t guid_disk_size[16] = VHDX_GUID_VIRTUAL_DISK_SIZE;
static const uint8_t guid_disk_id[16] = VHDX_GUID_VIRTUAL_DISK_ID;
static const uint8_t guid_logical_sector[16] = VHDX_GUID_LOGICAL_SECTOR_SIZE;
static const uint8_t guid_physical_sector[16] = VHDX_GUID_PHYSICAL_SECTOR_SIZE;
static const uint8_t guid_parent_locator[16] = VHDX_GUID_PARENT_LOCATOR;
static const uint8_t guid_locator_vhdx[16] = VHDX_GUID_LOCATOR_TYPE_VHDX;

/* CRC-32C (Castagnoli) of BUF continuing from CRC (0 to start), with the
 * usual pre- and post-inversion; ISA-L's crc32_iscsi does neither. */
uint32_t
vhdx_crc32c_update (uint32_t crc, const void *buf, size_t len)
{
  const unsigned char *p = buf;
  uint32_t state = ~crc;

  while (len > 0) {
    int n = len > (1u << 30) ? 1 << 30 : (int) len;
    state = crc32_iscsi ((unsigned char *) p, n, state);
    p += n;
    len -= n;
  }
  return ~state;
}

uint32_t
vhdx_crc32c (const void *buf, size_t len)
{
  return vhdx_crc32c_update (0, buf, len);
}

/* Whether the checksum at FIELD of the LEN bytes at BUF holds (the CRC of
 * the whole with the field taken as zero). */
static bool
checksum_ok (const uint8_t *buf, size_t len, size_t field)
{
  static const uint8_t zero[4];
  uint32_t crc = vhdx_crc32c_update (0, buf, field);

  crc = vhdx_crc32c_update (crc, zero, 4);
  crc = vhdx_crc32c_update (crc, buf + field + 4, len - field - 4);
  return crc == get_le32 (buf + field);
}

/* "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}" for the binary GUID G. */
void
vhdx_format_guid (const uint8_t *g, char *out)
{
  snprintf (out, 39, "{%08" PRIx32 "-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x"
            "%02x}", get_le32 (g), get_le16 (g + 4), get_le16 (g + 6),
            g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
}

static bool
guid_is_zero (const uint8_t *g)
{
  static const uint8_t zero[16];
  return memcmp (g, zero, 16) == 0;
}

/* A VHDX file starts with its signature. */
static int
vhdx_probe (const uint8_t *head, size_t head_len, const uint8_t *tail,
            size_t tail_len, uint64_t file_size)
{
  if (head_len >= 8 && memcmp (head, VHDX_IDENT_SIGNATURE, 8) == 0)
    return 100;
  return 0;
}

/* Read LEN bytes of the file at OFFSET as the replayed log shows them
 * (note 3); bytes past the end read as zeroes. */
int
vhdx_read_file (struct vhdx_image *v, void *buf, size_t len, uint64_t offset)
{
  if (full_pread (v->fd, buf, len, offset) == -1)
    return ferry_error_errno (errno, "%s: reading %zu bytes at offset 0x%"
                              PRIx64, v->base.path, len, offset);
  if (v->replay && vhdx_log_apply_overlay (v, buf, len, offset) == -1)
    return -1;
  return 0;
}

/* Parse the 4 KiB header at BUF into *H.  NULL when it is valid, else
 * what is wrong with it. */
static const char *
parse_header (const uint8_t *buf, struct vhdx_header *h)
{
  if (memcmp (buf + VHDX_HDR_SIGNATURE, "head", 4) != 0)
    return "no 'head' signature";
  if (!checksum_ok (buf, VHDX_HEADER_SIZE, VHDX_HDR_CHECKSUM))
    return "bad CRC-32C checksum";
  h->sequence = get_le64 (buf + VHDX_HDR_SEQUENCE);
  memcpy (h->file_write_guid, buf + VHDX_HDR_FILE_WRITE, 16);
  memcpy (h->data_write_guid, buf + VHDX_HDR_DATA_WRITE, 16);
  memcpy (h->log_guid, buf + VHDX_HDR_LOG_GUID, 16);
  h->log_version = get_le16 (buf + VHDX_HDR_LOG_VERSION);
  h->version = get_le16 (buf + VHDX_HDR_VERSION);
  h->log_length = get_le32 (buf + VHDX_HDR_LOG_LENGTH);
  h->log_offset = get_le64 (buf + VHDX_HDR_LOG_OFFSET);
  return NULL;
}

/* Read both headers and make the current one v->h. */
static int
read_headers (struct vhdx_image *v)
{
  static const uint64_t where[2] = { VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET };
  CLEANUP_FREE uint8_t *buf = malloc (2 * VHDX_HEADER_SIZE);
  struct vhdx_header h[2];
  const char *why[2];
  int i, cur;

  if (buf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  for (i = 0; i < 2; i++) {
    if (full_pread (v->fd, buf + i * VHDX_HEADER_SIZE, VHDX_HEADER_SIZE,
                    where[i]) == -1)
      return ferry_error_errno (errno, "%s: reading the VHDX header at offset "
                                "0x%" PRIx64, v->base.path, where[i]);
    why[i] = parse_header (buf + i * VHDX_HEADER_SIZE, &h[i]);
  }
  if (why[0] && why[1])
    return ferry_error (EINVAL, "%s: VHDX has no valid header (header 1 at "
                        "offset 0x%" PRIx64 ": %s; header 2 at offset 0x%"
                        PRIx64 ": %s)", v->base.path, where[0], why[0],
                        where[1], why[1]);
  if (why[0])
    cur = 1;
  else if (why[1])
    cur = 0;
  else if (h[0].sequence != h[1].sequence)
    cur = h[1].sequence > h[0].sequence;
  else if (memcmp (buf, buf + VHDX_HEADER_SIZE, VHDX_HEADER_SIZE) == 0)
    cur = 0;
  else
    return ferry_error (EINVAL, "%s: VHDX headers at offsets 0x%" PRIx64
                        " and 0x%" PRIx64 " both have sequence number %"
                        PRIu64 " but differ: neither is current",
                        v->base.path, where[0], where[1], h[0].sequence);
  v->h = h[cur];
  v->current_header = cur;
  if (v->h.version != 1)
    return ferry_error (ENOTSUP, "%s: VHDX header at offset 0x%" PRIx64
                        " has version %u (ferry knows version 1)",
                        v->base.path, where[cur], v->h.version);
  if (!guid_is_zero (v->h.log_guid)) {
    if (v->h.log_version != 0)
      return ferry_error (ENOTSUP, "%s: VHDX header at offset 0x%" PRIx64
                          " has a log of version %u to replay (ferry knows "
                          "version 0)", v->base.path, where[cur],
                          v->h.log_version);
    if (v->h.log_length == 0 || v->h.log_length % VHDX_MiB ||
        v->h.log_offset < VHDX_HEADER_SECTION || v->h.log_offset % VHDX_MiB ||
        v->h.log_offset > v->real_size ||
        v->real_size - v->h.log_offset < v->h.log_length)
      return ferry_error (EINVAL, "%s: VHDX header at offset 0x%" PRIx64
                          ": the log (offset 0x%" PRIx64 ", %" PRIu32
                          " bytes) is not 1 MiB aligned or not inside the "
                          "file (size 0x%" PRIx64 ")", v->base.path,
                          where[cur], v->h.log_offset, v->h.log_length,
                          v->real_size);
  }
  return 0;
}

/* Whether [A, A+AL) and [B, B+BL) overlap. */
static bool
overlaps (uint64_t a, uint64_t al, uint64_t b, uint64_t bl)
{
  return a < b + bl && b < a + al;
}

/* Parse the region table copy at OFFSET: NULL when valid (and the
 * regions filled in), else what is wrong with it.  A hard error (an
 * unknown required region, a region outside the file) sets *FATAL. */
static const char *
parse_region_table (struct vhdx_image *v, const uint8_t *rt, uint64_t offset,
                    bool *fatal)
{
  uint32_t count, i;
  bool have_bat = false, have_meta = false;

  *fatal = false;
  if (memcmp (rt + VHDX_RT_SIGNATURE, "regi", 4) != 0)
    return "no 'regi' signature";
  if (!checksum_ok (rt, VHDX_REGION_TABLE_SIZE, VHDX_RT_CHECKSUM))
    return "bad CRC-32C checksum";
  count = get_le32 (rt + VHDX_RT_ENTRY_COUNT);
  if (count > VHDX_RT_MAX_ENTRIES)
    return "more than 2047 entries";
  *fatal = true;
  for (i = 0; i < count; i++) {
    const uint8_t *e = rt + VHDX_RT_HEADER_SIZE + i * VHDX_RT_ENTRY_SIZE;
    uint64_t off = get_le64 (e + 16);
    uint32_t len = get_le32 (e + 24), required = get_le32 (e + 28);
    char g[64];
    bool *have;

    vhdx_format_guid (e, g);
    if (memcmp (e, guid_bat, 16) == 0) {
      have = &have_bat;
      strcat (g, " (the BAT)");
    }
    else if (memcmp (e, guid_metadata, 16) == 0) {
      have = &have_meta;
      strcat (g, " (metadata)");
    }
    else if (required & 1) {
      ferry_error (ENOTSUP, "%s: VHDX region table at offset 0x%" PRIx64
                   ": entry %" PRIu32 " is a region %s that ferry does not "
                   "know, marked required", v->base.path, offset, i, g);
      return "";
    }
    else
      continue;
    if (*have) {
      ferry_error (EINVAL, "%s: VHDX region table at offset 0x%" PRIx64
                   ": region %s appears twice", v->base.path, offset, g);
      return "";
    }
    *have = true;
    if (off < VHDX_HEADER_SECTION || off % VHDX_MiB || len == 0 ||
        len % VHDX_MiB || off > v->file_size || v->file_size - off < len) {
      ferry_error (EINVAL, "%s: VHDX region table at offset 0x%" PRIx64
                   ": region %s (offset 0x%" PRIx64 ", %" PRIu32 " bytes) is "
                   "not 1 MiB aligned or not inside the file (size 0x%" PRIx64
                   ")", v->base.path, offset, g, off, len, v->file_size);
      return "";
    }
    if (have == &have_bat) {
      v->bat_offset = off;
      v->bat_length = len;
    }
    else {
      v->meta_offset = off;
      v->meta_length = len;
    }
  }
  if (!have_bat || !have_meta) {
    ferry_error (EINVAL, "%s: VHDX region table at offset 0x%" PRIx64
                 " has no %s region", v->base.path, offset,
                 have_bat ? "metadata" : "BAT");
    return "";
  }
  if (overlaps (v->bat_offset, v->bat_length, v->meta_offset,
                v->meta_length) ||
      (!guid_is_zero (v->h.log_guid) &&
       (overlaps (v->bat_offset, v->bat_length, v->h.log_offset,
                  v->h.log_length) ||
        overlaps (v->meta_offset, v->meta_length, v->h.log_offset,
                  v->h.log_length)))) {
    ferry_error (EINVAL, "%s: VHDX region table at offset 0x%" PRIx64
                 ": the BAT (0x%" PRIx64 ") and the metadata region (0x%"
                 PRIx64 ") overlap each other or the log", v->base.path,
                 offset, v->bat_offset, v->meta_offset);
    return "";
  }
  *fatal = false;
  return NULL;
}

/* Read the region table: the first copy that is valid. */
static int
read_region_table (struct vhdx_image *v)
{
  static const uint64_t where[2] = { VHDX_REGION1_OFFSET, VHDX_REGION2_OFFSET };
  CLEANUP_FREE uint8_t *rt = malloc (VHDX_REGION_TABLE_SIZE);
  const char *why[2];
  bool fatal;
  int i;

  if (rt == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  for (i = 0; i < 2; i++) {
    if (vhdx_read_file (v, rt, VHDX_REGION_TABLE_SIZE, where[i]) == -1)
      return -1;
    why[i] = parse_region_table (v, rt, where[i], &fatal);
    if (why[i] == NULL)
      return 0;
    if (fatal)
      return -1;
  }
  return ferry_error (EINVAL, "%s: VHDX has no valid region table (at offset "
                      "0x%" PRIx64 ": %s; at offset 0x%" PRIx64 ": %s)",
                      v->base.path, where[0], why[0], where[1], why[1]);
}

/* The parent locator's entries, UTF-8. */
struct locator {
  char *linkage, *linkage2, *relative, *volume, *absolute;
};

static void
free_locator (struct locator *l)
{
  free (l->linkage);
  free (l->linkage2);
  free (l->relative);
  free (l->volume);
  free (l->absolute);
}

/* Parse the parent locator item of LEN bytes at P (metadata offset OFF). */
static int
parse_locator (struct vhdx_image *v, const uint8_t *p, uint32_t len,
               uint64_t off, struct locator *l)
{
  uint16_t count, i;
  char g[39];

  if (len < VHDX_PL_HEADER_SIZE)
    return ferry_error (EINVAL, "%s: VHDX parent locator at offset 0x%" PRIx64
                        " is %" PRIu32 " bytes long, too short for its header",
                        v->base.path, off, len);
  if (memcmp (p, guid_locator_vhdx, 16) != 0) {
    vhdx_format_guid (p, g);
    return ferry_error (ENOTSUP, "%s: VHDX parent locator at offset 0x%"
                        PRIx64 " has type %s, not a VHDX parent: ferry cannot "
                        "find such a parent", v->base.path, off, g);
  }
  count = get_le16 (p + 18);
  if ((uint64_t) count * VHDX_PL_ENTRY_SIZE > len - VHDX_PL_HEADER_SIZE)
    return ferry_error (EINVAL, "%s: VHDX parent locator at offset 0x%" PRIx64
                        " has %u entries, more than its %" PRIu32 " bytes "
                        "hold", v->base.path, off, count, len);
  for (i = 0; i < count; i++) {
    const uint8_t *e = p + VHDX_PL_HEADER_SIZE + i * VHDX_PL_ENTRY_SIZE;
    uint32_t ko = get_le32 (e), vo = get_le32 (e + 4);
    uint16_t kl = get_le16 (e + 8), vl = get_le16 (e + 10);
    CLEANUP_FREE char *key = NULL;
    char *value, **slot = NULL;

    if (ko == 0 || vo == 0 || kl == 0 || vl == 0 || ko > len ||
        len - ko < kl || vo > len || len - vo < vl)
      return ferry_error (EINVAL, "%s: VHDX parent locator at offset 0x%"
                          PRIx64 ": entry %u (key at %" PRIu32 ", %u bytes; "
                          "value at %" PRIu32 ", %u bytes) is empty or lies "
                          "outside the locator (%" PRIu32 " bytes)",
                          v->base.path, off, i, ko, kl, vo, vl, len);
    key = utf16_to_utf8 (p + ko, kl, false);
    value = utf16_to_utf8 (p + vo, vl, false);
    if (key == NULL || value == NULL) {
      free (value);
      return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
    }
    if (strcmp (key, "parent_linkage") == 0)
      slot = &l->linkage;
    else if (strcmp (key, "parent_linkage2") == 0)
      slot = &l->linkage2;
    else if (strcmp (key, "relative_path") == 0)
      slot = &l->relative;
    else if (strcmp (key, "volume_path") == 0)
      slot = &l->volume;
    else if (strcmp (key, "absolute_win32_path") == 0)
      slot = &l->absolute;
    if (slot == NULL) {
      free (value);
      continue;
    }
    if (*slot) {
      free (value);
      return ferry_error (EINVAL, "%s: VHDX parent locator at offset 0x%"
                          PRIx64 ": key '%s' appears twice", v->base.path,
                          off, key);
    }
    *slot = value;
  }
  if (l->linkage == NULL)
    return ferry_error (EINVAL, "%s: VHDX parent locator at offset 0x%" PRIx64
                        " has no parent_linkage entry", v->base.path, off);
  if (!l->relative && !l->volume && !l->absolute)
    return ferry_error (EINVAL, "%s: VHDX parent locator at offset 0x%" PRIx64
                        " names no parent path (relative_path, volume_path "
                        "or absolute_win32_path)", v->base.path, off);
  return 0;
}

/* Read the metadata table and the items ferry knows; *LOC gets the parent
 * locator of a differencing image. */
static int
read_metadata (struct vhdx_image *v, struct locator *loc)
{
  CLEANUP_FREE uint8_t *mt = malloc (VHDX_MT_SIZE);
  CLEANUP_FREE uint8_t *item = NULL;
  uint64_t disk_size = 0;
  uint32_t params_flags = 0;
  bool seen[7] = { false };
  uint16_t count, i;

  if (mt == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  if (vhdx_read_file (v, mt, VHDX_MT_SIZE, v->meta_offset) == -1)
    return -1;
  if (memcmp (mt, VHDX_MT_SIGNATURE, 8) != 0)
    return ferry_error (EINVAL, "%s: VHDX metadata table at offset 0x%" PRIx64
                        " has no 'metadata' signature", v->base.path,
                        v->meta_offset);
  count = get_le16 (mt + VHDX_MT_ENTRY_COUNT);
  if (count > VHDX_MT_MAX_ENTRIES)
    return ferry_error (EINVAL, "%s: VHDX metadata table at offset 0x%" PRIx64
                        " has %u entries (at most 2047)", v->base.path,
                        v->meta_offset, count);
  for (i = 0; i < count; i++) {
    const uint8_t *e = mt + VHDX_MT_HEADER_SIZE + i * VHDX_MT_ENTRY_SIZE;
    uint32_t off = get_le32 (e + 16), len = get_le32 (e + 20);
    uint32_t flags = get_le32 (e + 24);
    uint64_t where = v->meta_offset + off;
    static const uint8_t *const known[7] = {
      guid_file_parameters, guid_disk_size, guid_disk_id, guid_logical_sector,
      guid_physical_sector, guid_parent_locator, NULL,
    };
    static const uint32_t min_len[6] = { 8, 8, 16, 4, 4, VHDX_PL_HEADER_SIZE };
    int k;
    char g[39];

    vhdx_format_guid (e, g);
    for (k = 0; known[k]; k++)
      if (memcmp (e, known[k], 16) == 0)
        break;
    if (known[k] == NULL || (flags & VHDX_MT_IS_USER)) {
      if ((flags & VHDX_MT_IS_REQUIRED) && !(flags & VHDX_MT_IS_USER))
        return ferry_error (ENOTSUP, "%s: VHDX metadata table at offset 0x%"
                            PRIx64 ": item %s is required but ferry does not "
                            "know it", v->base.path, v->meta_offset, g);
      continue;
    }
    if (seen[k])
      return ferry_error (EINVAL, "%s: VHDX metadata table at offset 0x%"
                          PRIx64 ": item %s appears twice", v->base.path,
                          v->meta_offset, g);
    seen[k] = true;
    if (len < min_len[k] || len > VHDX_MT_MAX_ITEM || off < VHDX_MT_SIZE ||
        off > v->meta_length || v->meta_length - off < len)
      return ferry_error (EINVAL, "%s: VHDX metadata item %s (offset 0x%"
                          PRIx32 ", %" PRIu32 " bytes) is too short or lies "
                          "outside the metadata region (0x%" PRIx64 ", %"
                          PRIu32 " bytes)", v->base.path, g, off, len,
                          v->meta_offset, v->meta_length);
    free (item);
    item = malloc (len);
    if (item == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
    if (vhdx_read_file (v, item, len, where) == -1)
      return -1;
    switch (k) {
    case 0:
      v->block_size = get_le32 (item);
      params_flags = get_le32 (item + 4);
      break;
    case 1:
      disk_size = get_le64 (item);
      break;
    case 2:
      memcpy (v->disk_id, item, 16);
      break;
    case 3:
      v->logical_sector = get_le32 (item);
      break;
    case 4:
      v->physical_sector = get_le32 (item);
      break;
    case 5:
      if (parse_locator (v, item, len, where, loc) == -1)
        return -1;
      break;
    }
  }

  if (!seen[0] || !seen[1] || !seen[3])
    return ferry_error (EINVAL, "%s: VHDX metadata table at offset 0x%" PRIx64
                        " lacks the required %s item", v->base.path,
                        v->meta_offset, !seen[0] ? "file parameters" :
                        !seen[1] ? "virtual disk size" : "logical sector size");
  if (!seen[4])
    v->physical_sector = v->logical_sector;
  v->leave_allocated = params_flags & VHDX_PARAM_LEAVE_BLOCKS_ALLOCATED;
  v->has_parent = params_flags & VHDX_PARAM_HAS_PARENT;
  if (!is_power_of_2 (v->block_size) || v->block_size < VHDX_MIN_BLOCK_SIZE ||
      v->block_size > VHDX_MAX_BLOCK_SIZE)
    return ferry_error (EINVAL, "%s: VHDX file parameters: a block size of %"
                        PRIu32 " bytes (expected a power of 2 from 1 MiB to "
                        "256 MiB)", v->base.path, v->block_size);
  if (v->logical_sector != 512 && v->logical_sector != 4096)
    return ferry_error (EINVAL, "%s: VHDX logical sector size of %" PRIu32
                        " bytes (expected 512 or 4096)", v->base.path,
                        v->logical_sector);
  if (v->physical_sector != 512 && v->physical_sector != 4096)
    return ferry_error (EINVAL, "%s: VHDX physical sector size of %" PRIu32
                        " bytes (expected 512 or 4096)", v->base.path,
                        v->physical_sector);
  if (disk_size > VHDX_MAX_DISK_SIZE || disk_size % v->logical_sector)
    return ferry_error (EINVAL, "%s: VHDX virtual disk size of %" PRIu64
                        " bytes is not a multiple of the %" PRIu32 "-byte "
                        "sector or larger than 64 TiB", v->base.path,
                        disk_size, v->logical_sector);
  if (v->has_parent && !seen[5])
    return ferry_error (EINVAL, "%s: VHDX file parameters say the image has a "
                        "parent, but there is no parent locator",
                        v->base.path);
  v->base.size = disk_size;
  return 0;
}

/* Derive the BAT's geometry from the metadata; for open and create. */
int
vhdx_setup_geometry (struct vhdx_image *v)
{
  uint64_t size = v->base.size;

  v->block_bits = __builtin_ctz (v->block_size);
  v->chunk_ratio = (VHDX_SECTORS_PER_CHUNK * v->logical_sector) >>
    v->block_bits;
  v->data_blocks = DIV_ROUND_UP (size, (uint64_t) v->block_size);
  v->bitmap_blocks = DIV_ROUND_UP (v->data_blocks, v->chunk_ratio);
  if (v->has_parent)
    v->bat_entries = v->bitmap_blocks * (v->chunk_ratio + 1);
  else
    v->bat_entries = v->data_blocks ?
      v->data_blocks + (v->data_blocks - 1) / v->chunk_ratio : 0;
  return 0;
}

/* Which structure of the header section or the regions [OFF, OFF+LEN)
 * overlaps, or NULL. */
static const char *
overlapped_structure (const struct vhdx_image *v, uint64_t off, uint64_t len)
{
  if (overlaps (off, len, 0, VHDX_HEADER_SECTION))
    return "the header section";
  if (overlaps (off, len, v->bat_offset, v->bat_length))
    return "the BAT";
  if (overlaps (off, len, v->meta_offset, v->meta_length))
    return "the metadata region";
  if (v->h.log_length &&
      overlaps (off, len, v->h.log_offset, v->h.log_length))
    return "the log";
  return NULL;
}

/* Check a block of LEN bytes that BAT entry I places at OFF. */
static int
check_block_place (struct vhdx_image *v, uint64_t i, const char *what,
                   uint64_t off, uint64_t len, uint64_t limit)
{
  const char *s;

  if (off == 0)
    return ferry_error (EINVAL, "%s: VHDX BAT entry %" PRIu64 " at offset 0x%"
                        PRIx64 ": %s is present but has no file offset",
                        v->base.path, i, v->bat_offset + i * 8, what);
  if (off > limit || limit - off < len)
    return ferry_error (EINVAL, "%s: VHDX BAT entry %" PRIu64 " at offset 0x%"
                        PRIx64 ": %s at offset 0x%" PRIx64 " (%" PRIu64
                        " bytes) lies past the end of the file (size 0x%"
                        PRIx64 ")", v->base.path, i, v->bat_offset + i * 8,
                        what, off, len, limit);
  if ((s = overlapped_structure (v, off, len)) != NULL)
    return ferry_error (EINVAL, "%s: VHDX BAT entry %" PRIu64 " at offset 0x%"
                        PRIx64 ": %s at offset 0x%" PRIx64 " overlaps %s",
                        v->base.path, i, v->bat_offset + i * 8, what, off, s);
  return 0;
}

/* Read the BAT and check every entry that will be used. */
static int
load_bat (struct vhdx_image *v)
{
  uint64_t b, i;

  if (v->bat_entries > v->bat_length / 8)
    return ferry_error (EINVAL, "%s: VHDX BAT region at offset 0x%" PRIx64
                        " holds %" PRIu32 " entries, but a disk of %" PRIu64
                        " bytes in blocks of %" PRIu32 " bytes needs %" PRIu64,
                        v->base.path, v->bat_offset, v->bat_length / 8,
                        v->base.size, v->block_size, v->bat_entries);
  v->bat = malloc (MAX (v->bat_entries, (uint64_t) 1) * 8);
  if (v->bat == NULL)
    return ferry_error (ENOMEM, "%s: out of memory for a BAT of %" PRIu64
                        " entries", v->base.path, v->bat_entries);
  if (vhdx_read_file (v, v->bat, v->bat_entries * 8, v->bat_offset) == -1)
    return -1;
  for (i = 0; i < v->bat_entries; i++)
    v->bat[i] = le64toh (v->bat[i]);

  for (b = 0; b < v->data_blocks; b++) {
    uint64_t start = b << v->block_bits;
    uint64_t visible = MIN ((uint64_t) v->block_size, v->base.size - start);
    uint64_t e, sb;
    unsigned state;

    i = vhdx_payload_index (v, b);
    e = v->bat[i];
    state = e & VHDX_BAT_STATE_MASK;
    switch (state) {
    case VHDX_PAYLOAD_NOT_PRESENT: case VHDX_PAYLOAD_UNDEFINED:
    case VHDX_PAYLOAD_ZERO: case VHDX_PAYLOAD_UNMAPPED:
      break;
    case VHDX_PAYLOAD_PARTIALLY_PRESENT:
      if (!v->has_parent)
        return ferry_error (EINVAL, "%s: VHDX BAT entry %" PRIu64 " at offset "
                            "0x%" PRIx64 ": payload block %" PRIu64 " is "
                            "partially present, which only a differencing "
                            "image may have", v->base.path, i,
                            v->bat_offset + i * 8, b);
      sb = v->bat[vhdx_bitmap_index (v, b / v->chunk_ratio)];
      if ((sb & VHDX_BAT_STATE_MASK) != VHDX_SB_PRESENT)
        return ferry_error (EINVAL, "%s: VHDX BAT entry %" PRIu64 " at offset "
                            "0x%" PRIx64 ": payload block %" PRIu64 " is "
                            "partially present but its sector bitmap block "
                            "(BAT entry %" PRIu64 ") is not", v->base.path, i,
                            v->bat_offset + i * 8, b,
                            vhdx_bitmap_index (v, b / v->chunk_ratio));
      if (check_block_place (v, vhdx_bitmap_index (v, b / v->chunk_ratio),
                             "a sector bitmap block",
                             sb & VHDX_BAT_OFFSET_MASK, VHDX_SB_BLOCK_SIZE,
                             v->file_size) == -1)
        return -1;
      /* fall through */
    case VHDX_PAYLOAD_FULLY_PRESENT:
      if (check_block_place (v, i, "a payload block", e & VHDX_BAT_OFFSET_MASK,
                             visible, v->block_limit) == -1)
        return -1;
      break;
    default:
      return ferry_error (EINVAL, "%s: VHDX BAT entry %" PRIu64 " at offset 0x%"
                          PRIx64 ": payload block %" PRIu64 " has the "
                          "reserved state %u", v->base.path, i,
                          v->bat_offset + i * 8, b, state);
    }
  }
  return 0;
}

/* Whether the linkage string S ("{guid}") names the GUID G. */
static bool
linkage_matches (const char *s, const uint8_t *g)
{
  char want[39];

  if (s == NULL)
    return false;
  vhdx_format_guid (g, want);
  return strcasecmp (s, want) == 0;
}

/* NAME (a Windows path) with '/' for '\'; the caller frees it. */
static char *
unix_path (const char *name)
{
  char *s = strdup (name), *p;

  if (s)
    for (p = s; *p; p++)
      if (*p == '\\')
        *p = '/';
  return s;
}

/* Find and open the parent of a differencing image: its relative_path
 * first, then the file name of its absolute paths in the child's folder;
 * when none of them exists, the parent is missing and the reason names
 * each place looked at.  The parent's DataWriteGuid must match
 * parent_linkage or parent_linkage2. */
static int
open_parent (struct vhdx_image *v, struct locator *l,
             const struct open_args *args)
{
  static const char *const keys[3] = {
    "relative_path", "absolute_win32_path", "volume_path",
  };
  const char *tries[3] = { l->relative, l->absolute, l->volume };
  CLEANUP_FREE char *first_full = NULL;
  char looked[2048] = "";
  struct vhdx_image *p;
  bool found = false;
  char pg[39];
  int i;

  v->parent_linkage = l->linkage;
  v->parent_linkage2 = l->linkage2;
  v->parent_relative = l->relative;
  v->parent_absolute = l->absolute;
  v->parent_volume = l->volume;
  l->linkage = l->linkage2 = l->relative = l->absolute = l->volume = NULL;
  for (i = 0; i < 3 && !found; i++) {
    CLEANUP_FREE char *name = NULL;
    CLEANUP_FREE char *full = NULL;
    char *base;
    size_t n;

    if (tries[i] == NULL)
      continue;
    name = unix_path (tries[i]);
    if (name == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
    if (i > 0) {
      /* A Windows absolute path: take its file name, beside the child. */
      base = strrchr (name, '/');
      if (base)
        memmove (name, base + 1, strlen (base + 1) + 1);
    }
    full = image_resolve_relative (v->base.path, name);
    if (full == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
    found = access (full, F_OK) == 0;
    if (v->parent_path == NULL || found) {
      free (v->parent_path);
      v->parent_path = name;
      name = NULL;
      free (first_full);
      first_full = full;
      full = NULL;
    }
    n = strlen (looked);
    snprintf (looked + n, sizeof looked - n, "%s'%s' (%s%s)",
              n ? ", " : "", full ? full : first_full,
              i ? "the file name of its " : "its ", keys[i]);
  }
  if (args->flags & FERRY_OPEN_NO_BACKING)
    return 0;
  if (!found)
    return image_backing_missing (&v->base, args, first_full, "the parent "
                                  "'%s' is missing: there is no file at %s",
                                  tries[0] ? tries[0] : tries[1] ? tries[1] :
                                  tries[2], looked);
  if (image_open_backing (&v->base, v->parent_path, "vhdx", args) == -1)
    return -1;
  p = (struct vhdx_image *) v->base.backing;
  if (p == NULL)                /* gone since access() saw it */
    return 0;
  vhdx_format_guid (p->h.data_write_guid, pg);
  if (!linkage_matches (v->parent_linkage, p->h.data_write_guid) &&
      !linkage_matches (v->parent_linkage2, p->h.data_write_guid))
    return ferry_error (EINVAL, "%s: VHDX parent '%s' has DataWriteGuid %s, "
                        "but the child's parent_linkage is %s%s%s: the parent "
                        "was changed after the child was made", v->base.path,
                        v->parent_path, pg, v->parent_linkage,
                        v->parent_linkage2 ? " and parent_linkage2 " : "",
                        v->parent_linkage2 ? v->parent_linkage2 : "");
  if (p->logical_sector != v->logical_sector)
    return ferry_error (EINVAL, "%s: VHDX parent '%s' has %" PRIu32 "-byte "
                        "sectors, the child %" PRIu32 "-byte ones",
                        v->base.path, v->parent_path, p->logical_sector,
                        v->logical_sector);
  return 0;
}

/* The sector bitmap bits of some guest range of one partially present
 * block: bit FIRST_BIT of BITS is the sector FIRST_SECTOR. */
struct bitmap_view {
  uint8_t *bits;
  uint64_t first_bit;
  uint64_t first_sector;
};

/* Read the bitmap bits of the LEN guest bytes at OFFSET, all within one
 * partially present block, into BM (the caller frees BM->bits). */
static int
read_bitmap (struct vhdx_image *v, uint64_t offset, uint64_t len,
             struct bitmap_view *bm)
{
  uint64_t b = offset >> v->block_bits;
  uint64_t sb = vhdx_bat_get (v, vhdx_bitmap_index (v, b / v->chunk_ratio))
    & VHDX_BAT_OFFSET_MASK;
  uint64_t s0 = (offset / v->logical_sector) % VHDX_SECTORS_PER_CHUNK;
  uint64_t s1 = ((offset + len - 1) / v->logical_sector) %
    VHDX_SECTORS_PER_CHUNK;
  uint64_t n = s1 / 8 - s0 / 8 + 1;

  bm->bits = malloc (n);
  if (bm->bits == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  bm->first_bit = s0 % 8;
  bm->first_sector = offset / v->logical_sector;
  return vhdx_read_file (v, bm->bits, n, sb + s0 / 8);
}

/* Whether the sector holding guest offset POS is in this file. */
static bool
bitmap_bit (const struct vhdx_image *v, const struct bitmap_view *bm,
            uint64_t pos)
{
  uint64_t k = bm->first_bit + pos / v->logical_sector - bm->first_sector;

  return (bm->bits[k / 8] >> (k % 8)) & 1;
}

/* The bytes from POS up to at most END whose sectors share the bit of
 * POS's sector; the bit goes in *PRESENT. */
static uint64_t
bitmap_run (const struct vhdx_image *v, const struct bitmap_view *bm,
            uint64_t pos, uint64_t end, bool *present)
{
  uint64_t p = pos;

  *present = bitmap_bit (v, bm, pos);
  while (p < end && bitmap_bit (v, bm, p) == *present)
    p = MIN (ROUND_DOWN (p, (uint64_t) v->logical_sector) + v->logical_sector,
             end);
  return p - pos;
}

/* Read COUNT bytes at guest OFFSET, within one partially present block
 * at file offset HOST, run by run from this file or the parent. */
static int
read_partial (struct vhdx_image *v, uint8_t *buf, uint64_t count,
              uint64_t offset, uint64_t host)
{
  uint64_t end = offset + count;
  struct bitmap_view bm = { 0 };
  int r = read_bitmap (v, offset, count, &bm);

  while (r == 0 && offset < end) {
    bool present;
    uint64_t n = bitmap_run (v, &bm, offset, end, &present);

    r = present ?
      vhdx_read_file (v, buf, n, host + (offset & (v->block_size - 1))) :
      image_backing_pread (&v->base, buf, n, offset);
    buf += n;
    offset += n;
  }
  free (bm.bits);
  return r;
}

/* The pread callback: block by block, each by its BAT state (note 4). */
static int
vhdx_pread (struct ferry_image *img, void *buf, size_t count, uint64_t offset)
{
  struct vhdx_image *v = (struct vhdx_image *) img;
  uint8_t *p = buf;

  while (count > 0) {
    struct vhdx_piece pc = vhdx_piece (v, offset, count);
    uint64_t host = pc.entry & VHDX_BAT_OFFSET_MASK;
    int r = 0;

    switch (pc.entry & VHDX_BAT_STATE_MASK) {
    case VHDX_PAYLOAD_FULLY_PRESENT:
      r = vhdx_read_file (v, p, pc.len, host + pc.in);
      break;
    case VHDX_PAYLOAD_PARTIALLY_PRESENT:
      r = read_partial (v, p, pc.len, offset, host);
      break;
    case VHDX_PAYLOAD_NOT_PRESENT:
      if (v->has_parent) {
        r = image_backing_pread (&v->base, p, pc.len, offset);
        break;
      }
      /* fall through */
    default:
      memset (p, 0, pc.len);
    }
    if (r == -1)
      return -1;
    p += pc.len;
    offset += pc.len;
    count -= pc.len;
  }
  return 0;
}

/* Extents of the N bytes at guest OFFSET of a fully present block, whose
 * data is at file offset HOST: holes in the file read as zeroes, so
 * they are reported as such and the copy engine does not read them. */
static int
present_extents (struct vhdx_image *v, uint64_t offset, uint64_t n,
                 uint64_t host, struct ferry_extent_list *list)
{
  return hostfile_extents (v->fd, host, n, offset, FERRY_EXTENT_ZERO,
                           &v->caps, v->base.path, list);
}

/* Extents of COUNT bytes at OFFSET within one partially present block;
 * *DONE says how far the answer goes. */
static int
partial_extents (struct vhdx_image *v, uint64_t offset, uint64_t count,
                 struct ferry_extent_list *list, uint64_t *done)
{
  uint64_t end = offset + count, start = offset, reached;
  struct bitmap_view bm = { 0 };
  int r = read_bitmap (v, offset, count, &bm);

  *done = count;
  while (r == 0 && offset < end) {
    bool present;
    uint64_t n = bitmap_run (v, &bm, offset, end, &present);

    if (present)
      r = ferry_extent_list_append (list, offset, n, 0);
    else {
      r = image_backing_extents (&v->base, offset, n, list, &reached);
      if (r == 0 && reached < offset + n) {
        *done = reached - start;
        break;
      }
    }
    offset += n;
  }
  free (bm.bits);
  return r;
}

/* The extents callback, block by block; stops after
 * VHDX_EXTENTS_MAX_RUNS blocks or VHDX_EXTENTS_MAX_BYTES. */
static int
vhdx_extents (struct ferry_image *img, uint64_t offset, uint64_t length,
              struct ferry_extent_list *list)
{
  struct vhdx_image *v = (struct vhdx_image *) img;
  uint64_t end = offset + MIN (length, VHDX_EXTENTS_MAX_BYTES);
  unsigned runs = 0;

  while (offset < end && runs++ < VHDX_EXTENTS_MAX_RUNS) {
    struct vhdx_piece pc = vhdx_piece (v, offset, end - offset);
    uint64_t n = pc.len, done = n;
    int r;

    switch (pc.entry & VHDX_BAT_STATE_MASK) {
    case VHDX_PAYLOAD_FULLY_PRESENT:
      r = present_extents (v, offset, n, (pc.entry & VHDX_BAT_OFFSET_MASK) +
                           pc.in, list);
      break;
    case VHDX_PAYLOAD_PARTIALLY_PRESENT:
      r = partial_extents (v, offset, n, list, &done);
      break;
    case VHDX_PAYLOAD_NOT_PRESENT:
      if (v->has_parent) {
        uint64_t reached;
        r = image_backing_extents (&v->base, offset, n, list, &reached);
        done = reached - offset;
        break;
      }
      /* fall through */
    default:
      r = ferry_extent_list_append (list, offset, n,
                                    FERRY_EXTENT_HOLE | FERRY_EXTENT_ZERO);
    }
    if (r == -1)
      return -1;
    if (done < n)
      return 0;                 /* the caller asks again from there */
    offset += n;
  }
  return 0;
}

/* Fill INFO and the facts. */
static int
vhdx_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  struct vhdx_image *v = (struct vhdx_image *) img;
  char id[39];

  info->allocated = file_allocated_bytes (v->fd);
  /* A writable image reports no cluster: the copy engine then decides
   * zero or data per 4 KiB, and a block that is half data is not filled
   * with written zeroes (vhdx-write.c note 4). */
  info->cluster_size = img->readonly ? v->block_size : 0;
  info->backing_file = v->parent_path;
  info->backing_format = v->has_parent ? "vhdx" : NULL;
  vhdx_format_guid (v->disk_id, id);
  if (image_fact_string (img, "subformat", v->has_parent ? "differencing" :
                         v->leave_allocated ? "fixed" : "dynamic") ||
      image_fact_number (img, "block-size", v->block_size) ||
      image_fact_number (img, "logical-sector-size", v->logical_sector) ||
      image_fact_number (img, "physical-sector-size", v->physical_sector) ||
      image_fact_number (img, "log-size", v->h.log_length) ||
      image_fact_bool (img, "log-replayed", v->log_replayed) ||
      image_fact_string (img, "virtual-disk-id", id) ||
      (v->creator && v->creator[0] &&
       image_fact_string (img, "creator", v->creator)) ||
      (v->parent_linkage &&
       image_fact_string (img, "parent-linkage", v->parent_linkage)) ||
      (v->parent_linkage2 &&
       image_fact_string (img, "parent-linkage2", v->parent_linkage2)) ||
      (v->parent_relative &&
       image_fact_string (img, "parent-relative-path", v->parent_relative)) ||
      (v->parent_volume &&
       image_fact_string (img, "parent-volume-path", v->parent_volume)) ||
      (v->parent_absolute &&
       image_fact_string (img, "parent-absolute-win32-path",
                          v->parent_absolute)))
    return -1;
  return 0;
}

/* Allocate V with its lock, for open and create; FD is owned by it. */
struct vhdx_image *
vhdx_alloc (int fd)
{
  struct vhdx_image *v = calloc (1, sizeof *v);

  if (v == NULL)
    return NULL;
  v->fd = fd;
  hostfile_caps_init (&v->caps, fd);
  pthread_mutex_init (&v->lock, NULL);
  return v;
}

/* Free V and everything it holds, closing the file if still open. */
void
vhdx_free (struct vhdx_image *v)
{
  vhdx_log_replay_free (v->replay);
  pthread_mutex_destroy (&v->lock);
  free (v->bat);
  free (v->bat_dirty);
  free (v->creator);
  free (v->parent_path);
  free (v->parent_linkage);
  free (v->parent_linkage2);
  free (v->parent_relative);
  free (v->parent_volume);
  free (v->parent_absolute);
  if (v->fd >= 0)
    close (v->fd);
  free (v);
}

/* Read the file identifier: the signature and the creator. */
static int
read_identifier (struct vhdx_image *v)
{
  uint8_t buf[VHDX_CREATOR_OFFSET + VHDX_CREATOR_BYTES];

  if (v->real_size < VHDX_HEADER_SECTION)
    return ferry_error (EINVAL, "%s: VHDX file of %" PRIu64 " bytes is "
                        "shorter than its 1 MiB header section", v->base.path,
                        v->real_size);
  if (full_pread (v->fd, buf, sizeof buf, 0) == -1)
    return ferry_error_errno (errno, "%s: reading the VHDX file identifier",
                              v->base.path);
  if (memcmp (buf, VHDX_IDENT_SIGNATURE, 8) != 0)
    return ferry_error (EINVAL, "%s: not a VHDX file (no 'vhdxfile' "
                        "signature at offset 0)", v->base.path);
  v->creator = utf16_to_utf8 (buf + VHDX_CREATOR_OFFSET, VHDX_CREATOR_BYTES,
                              false);
  if (v->creator == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  return 0;
}

/* Find the log's active sequence and replay it: to disk when WRITABLE,
 * in memory otherwise (note 3).  A LogGuid with no valid sequence behind
 * it is taken as an empty log, as qemu-img takes it, unless STRICT: the
 * specification calls such a file corrupt. */
static int
replay_log (struct vhdx_image *v, bool writable, bool strict)
{
  struct vhdx_log_replay *r = NULL;

  if (guid_is_zero (v->h.log_guid))
    return 0;
  if (vhdx_log_find (v, &r) == -1)
    return -1;
  if (r == NULL && strict)
    return ferry_error (EINVAL, "%s: VHDX header names a log (at offset 0x%"
                        PRIx64 ") with no valid entry sequence", v->base.path,
                        v->h.log_offset);
  if (r == NULL)
    return 0;                   /* nothing to replay */
  v->log_replayed = true;
  if (writable) {
    int ret = vhdx_log_replay_to_disk (v, r);
    vhdx_log_replay_free (r);
    return ret;
  }
  if (vhdx_log_build_overlay (v, r) == -1) {
    vhdx_log_replay_free (r);
    return -1;
  }
  v->replay = r;
  v->file_size = MAX (v->real_size, r->data_end);
  v->block_limit = MAX (v->file_size, r->last_file_offset);
  return 0;
}

/* Open an existing image (and its parent). */
static struct ferry_image *
vhdx_open (const char *path, int fd, const struct open_args *args)
{
  bool writable = args->flags & FERRY_OPEN_WRITE;
  struct vhdx_image *v = vhdx_alloc (fd);
  struct locator loc = { 0 };
  struct stat st;

  if (v == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    close (fd);
    return NULL;
  }
  if (image_init_base (&v->base, &vhdx_driver, path, fd, !writable) == -1)
    goto err;
  if (fstat (fd, &st) == -1) {
    ferry_error_errno (errno, "%s: stat", path);
    goto err;
  }
  v->is_block = S_ISBLK (st.st_mode);
  if (hostfile_size (fd, path, &v->real_size) == -1)
    goto err;
  v->file_size = v->block_limit = v->real_size;
  if (writable && v->is_block) {
    ferry_error (ENOTSUP, "%s: ferry writes VHDX images in regular files "
                 "only, not on block devices", path);
    goto err;
  }
  if (read_identifier (v) == -1 || read_headers (v) == -1 ||
      replay_log (v, writable, args->flags & FERRY_OPEN_STRICT) == -1 || read_region_table (v) == -1 ||
      read_metadata (v, &loc) == -1 || vhdx_setup_geometry (v) == -1 ||
      load_bat (v) == -1)
    goto err;
  if (v->has_parent) {
    if (writable) {
      ferry_error (ENOTSUP, "%s: ferry does not write into differencing "
                   "VHDX images", path);
      goto err;
    }
    if (open_parent (v, &loc, args) == -1)
      goto err;
  }
  if (writable && vhdx_open_for_write (v) == -1)
    goto err;
  /* Note 5. */
  if (writable || v->is_block || v->replay)
    __atomic_store_n (&v->caps.no_seek_data, true, __ATOMIC_RELAXED);
  free_locator (&loc);
  return &v->base;

 err:
  free_locator (&loc);
  image_base_discard (&v->base);
  vhdx_free (v);
  return NULL;
}

/* Finish a writable image and free it all. */
static int
vhdx_close (struct ferry_image *img)
{
  struct vhdx_image *v = (struct vhdx_image *) img;
  int r = 0;

  if (!img->readonly) {
    r = vhdx_finish (v);
    if (close (v->fd) == -1 && r == 0)
      r = ferry_error_errno (errno, "%s: close", img->path);
    v->fd = -1;
  }
  vhdx_free (v);
  return r;
}

const struct image_driver vhdx_driver = {
  .name = "vhdx",
  .backing_word = "parent",
  .probe = vhdx_probe,
  .open = vhdx_open,
  .create = vhdx_create,
  .pread = vhdx_pread,
  .pwrite = vhdx_pwrite,
  .zero = vhdx_zero,
  .extents = vhdx_extents,
  .flush = vhdx_flush,
  .close = vhdx_close,
  .describe = vhdx_describe,
  .check = vhdx_check,
};
