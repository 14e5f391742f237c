/* vhdx: creating fixed and dynamic images and writing them (new ones,
 * and existing ones opened with FERRY_OPEN_WRITE).
 *
 * NOTES ON THE DESIGN
 *
 * 1. The file stays a valid VHDX if the writer dies at any point, by a
 *    careful order of writes rather than by the log.  The only metadata
 *    that changes after create is the BAT, and only from "not allocated"
 *    (not present, zero, undefined, unmapped) to "fully present at offset
 *    X", with the block's data written at X before the entry reaches the
 *    disk.  An 8-byte entry never straddles a sector, so a torn write of
 *    the BAT leaves each entry either old (the block reads as before: a
 *    flushed state) or new (its data is on disk).  Space taken for a
 *    block whose entry never reached the disk is unreferenced space at
 *    the end of the file, which a reader ignores.  The log would give the
 *    same guarantee with twice the metadata writes and a format for
 *    ferry to get right on the write side too; the order gives it with
 *    none.  ferry therefore never writes log entries, and an image it has
 *    written always has an empty log (LogGuid zero).
 *
 * 2. New payload blocks are taken at the end of the file (alloc_end)
 *    under v->lock, which also sets the BAT entry in memory and marks its
 *    4 KiB page of the BAT dirty; the data is written without the lock.
 *    Space past the old end of a regular file reads as zeroes, so a
 *    partial write into a new block needs no fill, and two threads
 *    writing into the same new block need nothing but the lock to agree
 *    on where it is.  (Block devices, whose fresh space is not zero, are
 *    refused for writing.)
 *
 * 3. Flush, in this order: extend the file to alloc_end, fdatasync (the
 *    data of new blocks is durable), write the dirty BAT pages, fdatasync
 *    (note 1).  Close without a flush (ferry convert -t unsafe) writes the
 *    BAT pages in the same program order but without the syncs: a killed
 *    process still leaves a valid file, a power cut may not, as with
 *    qemu-img's default cache mode.  Each data write asks the kernel to
 *    start writing it back at once (sync_file_range), so the disk works
 *    while the copy goes on and the final fdatasync finds little left:
 *    a durable copy then costs about the longer of copying and writing
 *    back, not their sum.
 *
 * 4. A writable image reports no cluster size in describe, so the copy
 *    engine decides data or zeroes per 4 KiB instead of per block: the
 *    zero parts of a half-written 32 MiB block are then never written and
 *    stay holes in the file.  Note 2 makes writes of any alignment safe
 *    from several threads at once.
 *
 * 5. Zeroing never changes the BAT: a present block has its range punched
 *    (FERRY_ZERO_MAY_TRIM) or zeroed in place, and every other state of
 *    a non-differencing image already reads as zeroes.
 *
 * 6. Headers (spec 2.2.2.1): a new file gets its two headers last, after
 *    everything else is synced, so a file cut short before then has no
 *    valid header and is not taken for a VHDX.  An existing file opened
 *    for writing gets a new FileWriteGuid before any other write (a log
 *    replay included), and a new DataWriteGuid before the first write
 *    that changes what the disk reads; an open that changes nothing the
 *    guest sees keeps the DataWriteGuid, so differencing children of the
 *    file still match it.  Each update writes the non-current header slot
 *    with the next sequence number and syncs, then the other slot, so one
 *    valid header is on disk at every moment.
 *
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostfile.h"
#include "vhdx-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

#define BAT_PAGE 4096u

/* --- writing the file -------------------------------------------------- */

int
vhdx_write_file (struct vhdx_image *v, const void *buf, size_t len,
                 uint64_t offset)
{
  if (full_pwrite (v->fd, buf, len, offset) == -1)
    return ferry_error_errno (errno, "%s: writing %zu bytes at offset 0x%"
                              PRIx64, v->base.path, len, offset);
  return 0;
}

int
vhdx_sync (struct vhdx_image *v)
{
  if (datasync_fd (v->fd) == -1)
    return ferry_error_errno (errno, "%s: flush", v->base.path);
  return 0;
}

/* A new random (version 4) GUID in binary form. */
static int
random_guid (struct vhdx_image *v, uint8_t *g)
{
  if (getrandom (g, 16, 0) != 16)
    return ferry_error_errno (errno, "%s: getrandom", v->base.path);
  g[7] = (g[7] & 0x0f) | 0x40;        /* Data3's high byte: version 4 */
  g[8] = (g[8] & 0x3f) | 0x80;        /* the variant */
  return 0;
}

int
vhdx_write_headers (struct vhdx_image *v)
{
  static const uint64_t where[2] = { VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET };
  uint8_t buf[VHDX_HEADER_SIZE];
  int round;

  /* Note 6: the other slot first, synced, then this one. */
  for (round = 0; round < 2; round++) {
    int slot = 1 - v->current_header;

    memset (buf, 0, sizeof buf);
    memcpy (buf + VHDX_HDR_SIGNATURE, "head", 4);
    put_le64 (buf + VHDX_HDR_SEQUENCE, ++v->h.sequence);
    memcpy (buf + VHDX_HDR_FILE_WRITE, v->h.file_write_guid, 16);
    memcpy (buf + VHDX_HDR_DATA_WRITE, v->h.data_write_guid, 16);
    memcpy (buf + VHDX_HDR_LOG_GUID, v->h.log_guid, 16);
    put_le16 (buf + VHDX_HDR_LOG_VERSION, 0);
    put_le16 (buf + VHDX_HDR_VERSION, 1);
    put_le32 (buf + VHDX_HDR_LOG_LENGTH, v->h.log_length);
    put_le64 (buf + VHDX_HDR_LOG_OFFSET, v->h.log_offset);
    put_le32 (buf + VHDX_HDR_CHECKSUM, vhdx_crc32c (buf, sizeof buf));
    if (vhdx_write_file (v, buf, sizeof buf, where[slot]) == -1 ||
        vhdx_sync (v) == -1)
      return -1;
    v->current_header = slot;
  }
  return 0;
}

/* A new FileWriteGuid on disk, once per session, before the first write
 * to an existing file (note 6). */
int
vhdx_begin_writing (struct vhdx_image *v)
{
  if (v->file_guid_updated)
    return 0;
  if (random_guid (v, v->h.file_write_guid) == -1 ||
      vhdx_write_headers (v) == -1)
    return -1;
  v->file_guid_updated = true;
  return 0;
}

/* A new DataWriteGuid on disk before the first change the guest can see
 * (note 6); writers that come meanwhile wait for it on the lock. */
static int
begin_data_change (struct vhdx_image *v)
{
  if (__atomic_load_n (&v->data_guid_updated, __ATOMIC_ACQUIRE))
    return 0;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->lock);
  if (v->data_guid_updated)
    return 0;
  if (random_guid (v, v->h.data_write_guid) == -1 ||
      vhdx_write_headers (v) == -1)
    return -1;
  __atomic_store_n (&v->data_guid_updated, true, __ATOMIC_RELEASE);
  return 0;
}

/* --- writes ------------------------------------------------------------ */

/* Give payload block B a place in the file if it has none (note 2); its
 * entry is returned in *E. */
static int
alloc_block (struct vhdx_image *v, uint64_t b, uint64_t *e)
{
  uint64_t i = vhdx_payload_index (v, b), host;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->lock);
  *e = v->bat[i];
  if ((*e & VHDX_BAT_STATE_MASK) == VHDX_PAYLOAD_FULLY_PRESENT)
    return 0;                   /* another thread was first */
  host = v->alloc_end;
  if (host > VHDX_MAX_FILE_OFFSET - v->block_size)
    return ferry_error (EFBIG, "%s: the file would grow past %" PRIu64
                        " bytes", v->base.path, VHDX_MAX_FILE_OFFSET);
  v->alloc_end += v->block_size;
  *e = host | VHDX_PAYLOAD_FULLY_PRESENT;
  __atomic_store_n (&v->bat[i], *e, __ATOMIC_RELEASE);
  v->bat_dirty[i * 8 / BAT_PAGE / 8] |= 1u << (i * 8 / BAT_PAGE % 8);
  v->meta_dirty = true;
  return 0;
}

int
vhdx_pwrite (struct ferry_image *img, const void *buf, size_t count,
             uint64_t offset)
{
  struct vhdx_image *v = (struct vhdx_image *) img;
  const uint8_t *p = buf;

  if (begin_data_change (v) == -1)
    return -1;
  while (count > 0) {
    struct vhdx_piece pc = vhdx_piece (v, offset, count);

    if ((pc.entry & VHDX_BAT_STATE_MASK) != VHDX_PAYLOAD_FULLY_PRESENT &&
        alloc_block (v, pc.block, &pc.entry) == -1)
      return -1;
    if (vhdx_write_file (v, p, pc.len,
                         (pc.entry & VHDX_BAT_OFFSET_MASK) + pc.in) == -1)
      return -1;
    /* Start writing it back now (note 3), so the flush finds little
     * left to do. */
    hostfile_start_writeback (img, v->fd,
                              (pc.entry & VHDX_BAT_OFFSET_MASK) + pc.in, pc.len);
    p += pc.len;
    offset += pc.len;
    count -= pc.len;
  }
  return 0;
}

/* Make LEN bytes of the file at OFF read as zeroes (hostfile_zero),
 * punching a hole when TRIM allows. */
int
vhdx_zero_file_range (struct vhdx_image *v, uint64_t off, uint64_t len,
                      bool trim)
{
  return hostfile_zero (v->fd, off, len, trim, &v->caps, v->base.path);
}

/* The zero callback (note 5). */
int
vhdx_zero (struct ferry_image *img, size_t count, uint64_t offset,
           unsigned flags)
{
  struct vhdx_image *v = (struct vhdx_image *) img;

  while (count > 0) {
    struct vhdx_piece pc = vhdx_piece (v, offset, count);

    if ((pc.entry & VHDX_BAT_STATE_MASK) == VHDX_PAYLOAD_FULLY_PRESENT &&
        (begin_data_change (v) == -1 ||
         vhdx_zero_file_range (v, (pc.entry & VHDX_BAT_OFFSET_MASK) + pc.in,
                               pc.len, flags & FERRY_ZERO_MAY_TRIM) == -1))
      return -1;
    offset += pc.len;
    count -= pc.len;
  }
  return 0;
}

/* Write the BAT pages marked dirty, in runs of consecutive pages. */
static int
write_dirty_bat (struct vhdx_image *v)
{
  uint64_t pages = DIV_ROUND_UP (v->bat_entries * 8, (uint64_t) BAT_PAGE);
  uint64_t per_page = BAT_PAGE / 8, pg = 0, i;
  CLEANUP_FREE uint64_t *buf = malloc (VHDX_MiB);

  if (buf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  while (pg < pages) {
    uint64_t first, n, entries;

    if (!(v->bat_dirty[pg / 8] & (1u << (pg % 8)))) {
      pg++;
      continue;
    }
    first = pg;
    while (pg < pages && pg - first < VHDX_MiB / BAT_PAGE &&
           (v->bat_dirty[pg / 8] & (1u << (pg % 8))))
      pg++;
    n = pg - first;
    entries = MIN (n * per_page, v->bat_entries - first * per_page);
    memset (buf, 0, n * BAT_PAGE);
    for (i = 0; i < entries; i++)
      buf[i] = htole64 (v->bat[first * per_page + i]);
    if (vhdx_write_file (v, buf, n * BAT_PAGE,
                         v->bat_offset + first * BAT_PAGE) == -1)
      return -1;
  }
  memset (v->bat_dirty, 0, DIV_ROUND_UP (pages, 8));
  return 0;
}

/* Put the BAT changes on disk in the order of note 3; SYNC says whether
 * to sync around them. */
static int
commit (struct vhdx_image *v, bool sync)
{
  struct stat st;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->lock);
  if (!v->meta_dirty)
    return sync ? vhdx_sync (v) : 0;
  if (fstat (v->fd, &st) == -1)
    return ferry_error_errno (errno, "%s: stat", v->base.path);
  if ((uint64_t) st.st_size < v->alloc_end &&
      truncate_fd (v->fd, v->alloc_end) == -1)
    return ferry_error_errno (errno, "%s: extending the file to %" PRIu64
                              " bytes", v->base.path, v->alloc_end);
  if ((sync && vhdx_sync (v) == -1) || write_dirty_bat (v) == -1 ||
      (sync && vhdx_sync (v) == -1))
    return -1;
  v->meta_dirty = false;
  return 0;
}

int
vhdx_flush (struct ferry_image *img)
{
  return commit ((struct vhdx_image *) img, true);
}

int
vhdx_finish (struct vhdx_image *v)
{
  return commit (v, false);
}

/* Set up what writing needs; for open and create. */
static int
init_write_state (struct vhdx_image *v, uint64_t file_end)
{
  uint64_t pages = DIV_ROUND_UP (v->bat_entries * 8, (uint64_t) BAT_PAGE);

  v->bat_dirty = calloc (DIV_ROUND_UP (MAX (pages, (uint64_t) 1), 8), 1);
  if (v->bat_dirty == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  v->alloc_end = ROUND_UP (file_end, VHDX_MiB);
  return 0;
}

/* Prepare an existing image for writing: new GUIDs in the headers before
 * anything else is written (note 6). */
int
vhdx_open_for_write (struct vhdx_image *v)
{
  uint64_t end = v->real_size, i;

  /* New blocks go after the file and after every block, even one whose
   * tail (past the end of the disk) lies past the end of the file. */
  for (i = 0; i < v->bat_entries; i++) {
    uint64_t e = v->bat[i], state = e & VHDX_BAT_STATE_MASK;
    if (state == VHDX_PAYLOAD_FULLY_PRESENT ||
        state == VHDX_PAYLOAD_PARTIALLY_PRESENT)
      end = MAX (end, (e & VHDX_BAT_OFFSET_MASK) + v->block_size);
  }
  if (init_write_state (v, end) == -1)
    return -1;
  if (v->file_guid_updated)
    return 0;                   /* done by the log replay */
  /* A LogGuid without a valid sequence: nothing to replay, and the log
   * is declared empty with the new headers. */
  memset (v->h.log_guid, 0, 16);
  return vhdx_begin_writing (v);
}

/* --- create ------------------------------------------------------------ */

/* Options of create, parsed and checked. */
struct create_opts {
  bool fixed;
  uint32_t block_size;          /* 0: by the disk size, as qemu-img does */
  uint32_t log_size;
  bool block_state_zero;
};

static int
parse_create_options (const char *path, struct option_list *opts,
                      struct create_opts *o)
{
  const char *s;
  uint64_t val;
  int r;

  o->fixed = false;
  o->block_size = 0;
  o->log_size = VHDX_MiB;
  o->block_state_zero = true;
  s = options_get (opts, "subformat");
  if (s) {
    if (strcmp (s, "fixed") == 0)
      o->fixed = true;
    else if (strcmp (s, "dynamic") != 0)
      return ferry_error (EINVAL, "%s: subformat=%s: expected dynamic or "
                          "fixed", path, s);
  }
  /* qemu-img takes block_size=0 for "choose from the size"; leaving the
   * option out says that, and 0 is no block size. */
  r = options_get_pow2 (opts, path, "block_size", VHDX_MIN_BLOCK_SIZE,
                        VHDX_MAX_BLOCK_SIZE, &val);
  if (r == -1)
    return -1;
  if (r == 1)
    o->block_size = val;
  r = options_get_size (opts, path, "log_size", &val);
  if (r == -1)
    return -1;
  if (r == 1) {
    if (val < VHDX_MiB || val % VHDX_MiB || val > 1024 * VHDX_MiB)
      return ferry_error (EINVAL, "%s: log_size=%s: expected a multiple of "
                          "1M from 1M to 1G", path,
                          options_get (opts, "log_size"));
    o->log_size = val;
  }
  if (options_get_bool (opts, path, "block_state_zero",
                        &o->block_state_zero) == -1)
    return -1;
  return 0;
}

/* qemu-img's block size for a disk of SIZE bytes, so that both tools
 * make the same image by default. */
static uint32_t
default_block_size (uint64_t size)
{
  if (size > 32ull << 40)
    return 64 * VHDX_MiB;
  if (size > 100ull << 30)
    return 32 * VHDX_MiB;
  if (size > 1ull << 30)
    return 16 * VHDX_MiB;
  return 8 * VHDX_MiB;
}

/* Write the file identifier, both region tables and the metadata region
 * of a new image. */
static int
write_skeleton (struct vhdx_image *v)
{
  static const uint8_t guid_bat[16] = VHDX_GUID_BAT;
  static const uint8_t guid_meta[16] = VHDX_GUID_METADATA;
  static const struct {
    uint8_t guid[16];
    uint32_t len, flags;
  } items[5] = {
    { VHDX_GUID_FILE_PARAMETERS, 8, VHDX_MT_IS_REQUIRED },
    { VHDX_GUID_VIRTUAL_DISK_SIZE, 8,
      VHDX_MT_IS_VIRTUAL_DISK | VHDX_MT_IS_REQUIRED },
    { VHDX_GUID_VIRTUAL_DISK_ID, 16,
      VHDX_MT_IS_VIRTUAL_DISK | VHDX_MT_IS_REQUIRED },
    { VHDX_GUID_LOGICAL_SECTOR_SIZE, 4,
      VHDX_MT_IS_VIRTUAL_DISK | VHDX_MT_IS_REQUIRED },
    { VHDX_GUID_PHYSICAL_SECTOR_SIZE, 4,
      VHDX_MT_IS_VIRTUAL_DISK | VHDX_MT_IS_REQUIRED },
  };
  static const char creator[] = "ferry";
  CLEANUP_FREE uint8_t *buf = calloc (1, 2 * VHDX_MT_SIZE);
  uint8_t *data;
  uint32_t off = VHDX_MT_SIZE;
  size_t i;

  if (buf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);

  /* The file identifier: the signature, then the creator in UTF-16LE. */
  memcpy (buf, VHDX_IDENT_SIGNATURE, 8);
  for (i = 0; creator[i]; i++)
    put_le16 (buf + VHDX_CREATOR_OFFSET + 2 * i, creator[i]);
  if (vhdx_write_file (v, buf, VHDX_CREATOR_OFFSET + VHDX_CREATOR_BYTES,
                       VHDX_IDENT_OFFSET) == -1)
    return -1;

  /* The region table, twice. */
  memset (buf, 0, VHDX_REGION_TABLE_SIZE);
  memcpy (buf + VHDX_RT_SIGNATURE, "regi", 4);
  put_le32 (buf + VHDX_RT_ENTRY_COUNT, 2);
  memcpy (buf + 16, guid_bat, 16);
  put_le64 (buf + 32, v->bat_offset);
  put_le32 (buf + 40, v->bat_length);
  put_le32 (buf + 44, 1);
  memcpy (buf + 48, guid_meta, 16);
  put_le64 (buf + 64, v->meta_offset);
  put_le32 (buf + 72, v->meta_length);
  put_le32 (buf + 76, 1);
  put_le32 (buf + VHDX_RT_CHECKSUM,
            vhdx_crc32c (buf, VHDX_REGION_TABLE_SIZE));
  if (vhdx_write_file (v, buf, VHDX_REGION_TABLE_SIZE,
                       VHDX_REGION1_OFFSET) == -1 ||
      vhdx_write_file (v, buf, VHDX_REGION_TABLE_SIZE,
                       VHDX_REGION2_OFFSET) == -1)
    return -1;

  /* The metadata table and its items, right after it. */
  memset (buf, 0, 2 * VHDX_MT_SIZE);
  memcpy (buf, VHDX_MT_SIGNATURE, 8);
  put_le16 (buf + VHDX_MT_ENTRY_COUNT, 5);
  for (i = 0; i < 5; i++) {
    uint8_t *e = buf + VHDX_MT_HEADER_SIZE + i * VHDX_MT_ENTRY_SIZE;
    memcpy (e, items[i].guid, 16);
    put_le32 (e + 16, off);
    put_le32 (e + 20, items[i].len);
    put_le32 (e + 24, items[i].flags);
    data = buf + off;
    switch (i) {
    case 0:
      put_le32 (data, v->block_size);
      put_le32 (data + 4, v->leave_allocated ?
                VHDX_PARAM_LEAVE_BLOCKS_ALLOCATED : 0);
      break;
    case 1: put_le64 (data, v->base.size); break;
    case 2: memcpy (data, v->disk_id, 16); break;
    case 3: put_le32 (data, v->logical_sector); break;
    case 4: put_le32 (data, v->physical_sector); break;
    }
    off += items[i].len;
  }
  return vhdx_write_file (v, buf, off, v->meta_offset);
}

/* Write the initial BAT of a new image: fixed blocks in place one after
 * another from DATA_START, dynamic ones in the zero state (or not present,
 * which is all zeroes on disk and needs no write). */
static int
write_initial_bat (struct vhdx_image *v, uint64_t data_start)
{
  uint64_t b, i, chunk = VHDX_MiB / 8;
  CLEANUP_FREE uint64_t *buf = NULL;

  for (b = 0; b < v->data_blocks; b++)
    v->bat[vhdx_payload_index (v, b)] = v->leave_allocated ?
      (data_start + (b << v->block_bits)) | VHDX_PAYLOAD_FULLY_PRESENT :
      v->new_block_state_zero ? VHDX_PAYLOAD_ZERO : VHDX_PAYLOAD_NOT_PRESENT;
  if (!v->leave_allocated && !v->new_block_state_zero)
    return 0;
  buf = malloc (VHDX_MiB);
  if (buf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  for (i = 0; i < v->bat_entries; i += chunk) {
    uint64_t n = MIN (chunk, v->bat_entries - i), k;
    for (k = 0; k < n; k++)
      buf[k] = htole64 (v->bat[i + k]);
    if (vhdx_write_file (v, buf, n * 8, v->bat_offset + i * 8) == -1)
      return -1;
  }
  return 0;
}

struct ferry_image *
vhdx_create (const char *path, int fd, uint64_t size, struct option_list *opts)
{
  struct vhdx_image *v = vhdx_alloc (fd);
  struct create_opts o;
  uint64_t data_start, file_end;
  struct stat st;

  if (v == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    close (fd);
    return NULL;
  }
  if (image_init_base (&v->base, &vhdx_driver, path, fd, false) == -1 ||
      parse_create_options (path, opts, &o) == -1)
    goto err;
  if (fstat (fd, &st) == -1) {
    ferry_error_errno (errno, "%s: stat", path);
    goto err;
  }
  if (S_ISBLK (st.st_mode)) {
    ferry_error (ENOTSUP, "%s: ferry writes VHDX images in regular files "
                 "only, not on block devices", path);
    goto err;
  }
  /* Whole 512-byte sectors, as qemu-img create rounds. */
  if (size > VHDX_MAX_DISK_SIZE) {
    ferry_error (EFBIG, "%s: a virtual size of %" PRIu64 " bytes is more "
                 "than VHDX holds (64 TiB)", path, size);
    goto err;
  }
  size = ROUND_UP (size, (uint64_t) 512);
  v->base.size = size;
  v->block_size = o.block_size ? o.block_size : default_block_size (size);
  v->logical_sector = v->physical_sector = 512;
  v->leave_allocated = o.fixed;
  v->new_block_state_zero = o.block_state_zero;
  v->h.version = 1;
  v->h.log_offset = VHDX_HEADER_SECTION;
  v->h.log_length = o.log_size;
  v->current_header = 1;
  if (vhdx_setup_geometry (v) == -1 || random_guid (v, v->disk_id) == -1 ||
      random_guid (v, v->h.file_write_guid) == -1 ||
      random_guid (v, v->h.data_write_guid) == -1)
    goto err;
  v->file_guid_updated = v->data_guid_updated = true;

  /* Layout: header section, log, BAT, metadata, payload. */
  v->bat_offset = v->h.log_offset + v->h.log_length;
  v->bat_length = ROUND_UP (MAX (v->bat_entries * 8, (uint64_t) 1),
                            VHDX_MiB);
  v->meta_offset = v->bat_offset + v->bat_length;
  v->meta_length = VHDX_MiB;
  data_start = v->meta_offset + v->meta_length;
  file_end = data_start + (o.fixed ? v->data_blocks << v->block_bits : 0);
  v->bat = calloc (MAX (v->bat_entries, (uint64_t) 1), 8);
  if (v->bat == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    goto err;
  }
  if (init_write_state (v, file_end) == -1)
    goto err;
  if (truncate_fd (fd, file_end) == -1) {
    ferry_error_errno (errno, "%s: setting the size to %" PRIu64, path,
                       file_end);
    goto err;
  }
  v->real_size = v->file_size = v->block_limit = file_end;
  /* Note 6: everything but the headers, synced, then the headers. */
  if (write_skeleton (v) == -1 || write_initial_bat (v, data_start) == -1 ||
      vhdx_sync (v) == -1 || vhdx_write_headers (v) == -1)
    goto err;
  v->base.zero_initialized = true;
  return &v->base;

 err:
  free (v->base.path);
  vhdx_free (v);
  return NULL;
}
