/* vhd: creating fixed and dynamic disks and writing them (new ones, and
 * existing ones opened with FERRY_OPEN_WRITE).
 *
 * Options, with qemu-img's names where it has them:
 *   subformat=dynamic|fixed   (default dynamic)
 *   block_size=SIZE           dynamic only: a power of 2 from 4 KiB to
 *                             32 MiB (default 2 MiB, what every tool
 *                             writes; Hyper-V also takes 512 KiB).  Below
 *                             4 KiB qemu-img miscounts the bitmap, and
 *                             past 32 MiB the copy engine cannot align
 *   force_size=on|off         on (ferry's default): the disk is exactly the
 *                             size asked (rounded up to 512 bytes); off
 *                             (qemu-img's default): rounded up to the next
 *                             size a CHS geometry expresses
 *   azure=on                  what Azure takes: fixed, the size rounded up
 *                             to a whole MiB, the footer Azure's own tools
 *                             write (original size = current size, data
 *                             offset all ones, host "Wi2k")
 * Disks larger than 2040 GiB are refused: the format cannot hold them.
 *
 * Every disk ferry writes carries creator "frry", which ferry, Windows,
 * Azure and VirtualBox read by its current size.  qemu-img sizes creators
 * it does not know by their CHS geometry, so the geometry written is the
 * one the specification computes when it expresses the size exactly, and
 * the largest one (65535/16/255, which qemu-img reads as "use the current
 * size", as qemu-img's own force_size=on writes it) when it does not.
 *
 * NOTES ON CRASH SAFETY
 *
 * 1. A fixed disk is complete from the moment it is created: the file is
 *    sized and its footer written before create returns; writes go to
 *    the data area in place.
 *
 * 2. A new dynamic disk gets its footer copy, header, an empty BAT and
 *    the trailing footer at create, so it is a valid empty disk at once.
 *
 * 3. A new block is placed at alloc_end, the end of everything the BAT
 *    points to, its data 4 KiB aligned in the file; the first new block
 *    after a flush cuts the file at alloc_end, dropping the trailing
 *    footer (and anything past it), so a block's unwritten sectors are a
 *    hole and read as zeroes.  From then until the next flush the file
 *    has no trailing footer; its copy at the start still describes it
 *    (ferry and qemu-img read dynamic disks by that copy).  The write
 *    that takes a block leaves out the 4 KiB pieces that are zeroes, so
 *    the file stays as sparse as the disk.
 *
 * 4. A block's BAT entry is set in memory only after its bitmap and data
 *    are written, with an atomic store, so a concurrent reader sees the
 *    old (empty) entry or the finished block.  Only the allocation
 *    (alloc_end) and the BAT's dirty range are serialised; data I/O is
 *    not.  Callers never write one block from two threads at once.
 *
 * 5. At flush and close, in this order: the data is synced (flush only),
 *    the trailing footer is written at alloc_end (so the file again ends
 *    with a footer and covers every block), the changed BAT entries are
 *    written, and the file is synced (flush only).  An interruption
 *    before the BAT leaves new blocks unreferenced: space lost, never a
 *    BAT entry pointing at data that is not there.  Each data write asks
 *    the kernel to start writing it back at once (sync_file_range), so
 *    the disk works while the copy goes on and the flush finds little
 *    left: a durable copy costs about the longer of copying and writing
 *    back, not their sum.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vhd-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"



/* The block sizes create takes (see the top of the file). */
#define VHD_MIN_WRITE_BLOCK_SIZE 4096u
#define VHD_MAX_WRITE_BLOCK_SIZE (32u << 20)

/* Data of new blocks is aligned to this in the file. */
#define VHD_DATA_ALIGN 4096u

/* The CHS geometry the specification's algorithm gives SECTORS (its
 * appendix), capped at the largest one. */
static void
vhd_geometry (uint64_t sectors, uint32_t *c, uint32_t *h, uint32_t *s)
{
  uint64_t cth;

  if (sectors > (uint64_t) VHD_MAX_CYLINDERS * 16 * 255)
    sectors = (uint64_t) VHD_MAX_CYLINDERS * 16 * 255;
  if (sectors >= (uint64_t) VHD_MAX_CYLINDERS * 16 * 63) {
    *s = 255;
    *h = 16;
    cth = sectors / *s;
  }
  else {
    *s = 17;
    cth = sectors / *s;
    *h = (cth + 1023) / 1024;
    if (*h < 4)
      *h = 4;
    if (cth >= *h * 1024ull || *h > 16) {
      *s = 31;
      *h = 16;
      cth = sectors / *s;
    }
    if (cth >= *h * 1024ull) {
      *s = 63;
      *h = 16;
      cth = sectors / *s;
    }
  }
  *c = cth / *h;
}

/* The geometry to record for SIZE bytes (see the top of the file). */
static uint32_t
geometry_field (uint64_t size)
{
  uint32_t c, h, s;

  vhd_geometry (size / VHD_SECTOR, &c, &h, &s);
  if ((uint64_t) c * h * s * VHD_SECTOR != size) {
    c = VHD_MAX_CYLINDERS;
    h = VHD_MAX_HEADS;
    s = VHD_MAX_SPT;
  }
  return c << 16 | h << 8 | s;
}

/* SIZE rounded up to the next size a geometry expresses exactly, as
 * qemu-img does without force_size; sizes past the largest geometry stay
 * as they are. */
static uint64_t
round_to_geometry (uint64_t size)
{
  uint64_t sectors = size / VHD_SECTOR, i;
  uint32_t c, h, s;

  if (sectors >= (uint64_t) VHD_MAX_CYLINDERS * 16 * 255)
    return size;
  /* The geometry of N sectors covers at least N - H*S of them, so this
   * ends within 16 * 255 steps. */
  for (i = 0; i <= 16 * 255; i++) {
    vhd_geometry (sectors + i, &c, &h, &s);
    if ((uint64_t) c * h * s >= sectors)
      return (uint64_t) c * h * s * VHD_SECTOR;
  }
  return size;
}

/* Set the checksum field of the structure at BUF (LEN bytes). */
static void
set_checksum (uint8_t *buf, size_t len, size_t field)
{
  put_be32 (buf + field, vhd_checksum (buf, len, field));
}

/* Fill V's footer for a new disk of TYPE and SIZE bytes. */
static void
build_footer (struct vhd_image *v, enum vhd_type type, uint64_t size,
              uint64_t data_offset)
{
  uint8_t *f = v->footer;
  time_t now = time (NULL);

  memset (f, 0, VHD_FOOTER_SIZE);
  memcpy (f, VHD_COOKIE, 8);
  put_be32 (f + VHD_F_FEATURES, VHD_FEATURES_RESERVED);
  put_be32 (f + VHD_F_VERSION, VHD_VERSION);
  put_be64 (f + VHD_F_DATA_OFFSET, data_offset);
  put_be32 (f + VHD_F_TIMESTAMP, now > VHD_EPOCH ? now - VHD_EPOCH : 0);
  memcpy (f + VHD_F_CREATOR_APP, "frry", 4);
  put_be32 (f + VHD_F_CREATOR_VERSION, 0x00000001);   /* ferry 0.1 */
  memcpy (f + VHD_F_CREATOR_OS, "Wi2k", 4);
  put_be64 (f + VHD_F_ORIGINAL_SIZE, size);
  put_be64 (f + VHD_F_CURRENT_SIZE, size);
  put_be32 (f + VHD_F_GEOMETRY, geometry_field (size));
  put_be32 (f + VHD_F_DISK_TYPE, type);
  random_uuid (f + VHD_F_UUID);
  set_checksum (f, VHD_FOOTER_SIZE, VHD_F_CHECKSUM);
}

/* Write LEN bytes of BUF at OFFSET, naming WHAT on failure. */
static int
write_at (struct vhd_image *v, const void *buf, size_t len, uint64_t offset,
          const char *what)
{
  if (full_pwrite (v->fd, buf, len, offset) == -1)
    return ferry_error_errno (errno, "%s: writing the %s at offset 0x%"
                              PRIx64, v->base.path, what, offset);
  return 0;
}

/* Cut the file at LEN bytes. */
static int
truncate_to (struct vhd_image *v, uint64_t len)
{
  if (truncate_fd (v->fd, len) == -1)
    return ferry_error_errno (errno, "%s: setting the file size to %" PRIu64
                              " bytes", v->base.path, len);
  v->file_size = len;
  return 0;
}

/* Set up what writing a dynamic disk needs: the all-ones bitmap, and
 * alloc_end past everything the BAT points to. */
static int
init_dynamic_write (struct vhd_image *v)
{
  uint64_t end = MAX (v->header_offset + VHD_HEADER_SIZE,
                      v->bat_offset + (uint64_t) v->max_entries * 4);
  uint32_t i;

  for (i = 0; i < v->nr_entries; i++)
    if (v->bat[i] != VHD_BAT_UNUSED)
      end = MAX (end, (uint64_t) v->bat[i] * VHD_SECTOR + v->bitmap_size +
                 v->block_size);
  v->alloc_end = ROUND_UP (end, (uint64_t) VHD_SECTOR);
  v->tail_stale = v->file_size > v->alloc_end;
  v->dirty_lo = UINT32_MAX;
  v->dirty_hi = 0;
  v->ones = malloc (v->bitmap_size);
  if (v->ones == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  memset (v->ones, 0xff, v->bitmap_size);
  return 0;
}

int
vhd_open_for_write (struct vhd_image *v)
{
  if (v->type == VHD_TYPE_FIXED)
    return 0;
  return init_dynamic_write (v);
}

/* The host offset of block B (its bitmap), taking a new block at
 * alloc_end when it has none (note 3); *FRESH then says its BAT entry
 * waits for publish_block. */
static int
block_for_write (struct vhd_image *v, uint64_t b, uint64_t *start,
                 bool *fresh)
{
  uint32_t e = vhd_bat_get (v, b);
  uint64_t s;

  *fresh = false;
  if (e != VHD_BAT_UNUSED) {
    *start = (uint64_t) e * VHD_SECTOR;
    return 0;
  }
  if (b >= v->nr_entries)
    return ferry_error (EINVAL, "%s: block %" PRIu64 " is past the BAT (%"
                        PRIu32 " entries)", v->base.path, b, v->nr_entries);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->lock);
    if (v->tail_stale) {
      if (truncate_to (v, v->alloc_end) == -1)
        return -1;
      v->tail_stale = false;
    }
    s = ROUND_UP (v->alloc_end + v->bitmap_size, (uint64_t) VHD_DATA_ALIGN) -
      v->bitmap_size;
    if (s / VHD_SECTOR >= VHD_BAT_UNUSED)
      return ferry_error (ENOSPC, "%s: a new block at offset 0x%" PRIx64
                          " is past what a BAT entry can address (2 TiB)",
                          v->base.path, s);
    v->alloc_end = s + v->bitmap_size + v->block_size;
  }
  if (write_at (v, v->ones, v->bitmap_size, s, "sector bitmap") == -1)
    return -1;
  *start = s;
  *fresh = true;
  return 0;
}

/* Point block B's BAT entry at START, now that its data is written
 * (note 4). */
static void
publish_block (struct vhd_image *v, uint64_t b, uint64_t start)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->lock);
  __atomic_store_n (&v->bat[b], (uint32_t) (start / VHD_SECTOR),
                    __ATOMIC_RELEASE);
  v->dirty_lo = MIN (v->dirty_lo, (uint32_t) b);
  v->dirty_hi = MAX (v->dirty_hi, (uint32_t) b + 1);
  v->meta_dirty = true;
}

int
vhd_pwrite (struct ferry_image *img, const void *buf, size_t count,
            uint64_t offset)
{
  struct vhd_image *v = (struct vhd_image *) img;
  const uint8_t *p = buf;

  if (v->type == VHD_TYPE_FIXED) {
    if (full_pwrite (v->fd, buf, count, offset) == -1)
      return ferry_error_errno (errno, "%s: write of %zu bytes at offset %"
                                PRIu64, img->path, count, offset);
    hostfile_start_writeback (img, v->fd, offset, count);
    return 0;
  }
  while (count > 0) {
    uint64_t b = offset >> v->block_bits;
    uint64_t in = offset & (v->block_size - 1);
    uint64_t n = MIN ((uint64_t) count, v->block_size - in), start = 0;
    bool fresh = false;
    if (block_for_write (v, b, &start, &fresh) == -1)
      return -1;
    /* A block taken by this very call reads as zeroes (note 3): its
     * zeroes need not be written. */
    if (fresh) {
      if (hostfile_write_sparse (v->fd, p, n, start + v->bitmap_size + in,
                                 img->path) == -1)
        return -1;
    }
    else if (full_pwrite (v->fd, p, n, start + v->bitmap_size + in) == -1)
      return ferry_error_errno (errno, "%s: writing %" PRIu64 " bytes of "
                                "block %" PRIu64 " at offset 0x%" PRIx64,
                                img->path, n, b, start + v->bitmap_size + in);
    hostfile_start_writeback (img, v->fd, start + v->bitmap_size + in, n);
    if (fresh)
      publish_block (v, b, start);
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

/* Zeroes: an unallocated block of a dynamic disk reads as zeroes already;
 * an allocated one, and a fixed disk, get them from the file system. */
int
vhd_zero (struct ferry_image *img, size_t count, uint64_t offset,
          unsigned flags)
{
  struct vhd_image *v = (struct vhd_image *) img;
  bool trim = flags & FERRY_ZERO_MAY_TRIM;

  if (v->type == VHD_TYPE_FIXED)
    return hostfile_zero (v->fd, offset, count, trim, &v->caps, img->path);
  while (count > 0) {
    uint64_t b = offset >> v->block_bits;
    uint64_t in = offset & (v->block_size - 1);
    uint64_t n = MIN ((uint64_t) count, v->block_size - in);
    uint32_t e = vhd_bat_get (v, b);
    if (e != VHD_BAT_UNUSED &&
        hostfile_zero (v->fd, (uint64_t) e * VHD_SECTOR + v->bitmap_size + in,
                       n, trim, &v->caps, img->path) == -1)
      return -1;
    offset += n;
    count -= n;
  }
  return 0;
}

/* Write the BAT entries that changed. */
static int
write_bat (struct vhd_image *v)
{
  if (hostfile_write_table32 (v->fd, v->bat, v->dirty_lo, v->dirty_hi,
                              v->bat_offset, true, v->base.path, "BAT") == -1)
    return -1;
  v->dirty_lo = UINT32_MAX;
  v->dirty_hi = 0;
  return 0;
}

int
vhd_finish (struct vhd_image *v, bool sync)
{
  if (v->type == VHD_TYPE_FIXED || !v->meta_dirty)
    return 0;
  /* Note 5: data, trailing footer, BAT. */
  if (sync && datasync_fd (v->fd) == -1)
    return ferry_error_errno (errno, "%s: flush", v->base.path);
  set_checksum (v->footer, VHD_FOOTER_SIZE, VHD_F_CHECKSUM);
  v->footer_checksum_bad = false;
  if (write_at (v, v->footer, VHD_FOOTER_SIZE, v->alloc_end,
                "trailing footer") == -1 ||
      truncate_to (v, v->alloc_end + VHD_FOOTER_SIZE) == -1 ||
      write_at (v, v->footer, VHD_FOOTER_SIZE, 0, "footer copy") == -1)
    return -1;
  v->tail_stale = true;
  v->has_tail_footer = true;
  if (write_bat (v) == -1)
    return -1;
  if (v->header_checksum_bad) {
    set_checksum (v->header, VHD_HEADER_SIZE, VHD_H_CHECKSUM);
    if (write_at (v, v->header, VHD_HEADER_SIZE, v->header_offset,
                  "dynamic disk header") == -1)
      return -1;
    v->header_checksum_bad = false;
  }
  v->meta_dirty = false;
  return 0;
}

int
vhd_flush (struct ferry_image *img)
{
  struct vhd_image *v = (struct vhd_image *) img;

  if (vhd_finish (v, true) == -1)
    return -1;
  if (datasync_fd (v->fd) == -1)
    return ferry_error_errno (errno, "%s: flush", img->path);
  return 0;
}

/* The options of create, checked. */
struct create_opts {
  bool fixed;
  bool force_size;
  bool azure;
  uint64_t block_size;
};

/* Read and check the options of create. */
static int
parse_create_options (const char *path, struct option_list *opts,
                      struct create_opts *o)
{
  const char *sub = options_get (opts, "subformat");
  int has_bs, has_force;

  o->fixed = false;
  o->force_size = true;
  o->azure = false;
  o->block_size = VHD_DEFAULT_BLOCK_SIZE;
  if (sub && strcmp (sub, "fixed") && strcmp (sub, "dynamic"))
    return ferry_error (EINVAL, "%s: subformat=%s: expected fixed or dynamic",
                        path, sub);
  o->fixed = sub && !strcmp (sub, "fixed");
  has_bs = options_get_pow2 (opts, path, "block_size",
                             VHD_MIN_WRITE_BLOCK_SIZE,
                             VHD_MAX_WRITE_BLOCK_SIZE, &o->block_size);
  has_force = options_get_bool (opts, path, "force_size", &o->force_size);
  if (has_bs == -1 || has_force == -1 ||
      options_get_bool (opts, path, "azure", &o->azure) == -1)
    return -1;
  if (o->azure) {
    if (sub && !o->fixed)
      return ferry_error (EINVAL, "%s: azure=on writes a fixed disk (Azure "
                          "takes no other); drop subformat=dynamic", path);
    if (has_force && !o->force_size)
      return ferry_error (EINVAL, "%s: azure=on sizes the disk in whole MiB; "
                          "force_size=off would round it to a CHS geometry",
                          path);
    o->fixed = true;
  }
  if (has_bs && o->fixed)
    return ferry_error (EINVAL, "%s: block_size is for subformat=dynamic; a "
                        "fixed disk has no blocks", path);
  return 0;
}

/* Lay out and write a new empty dynamic disk (note 2). */
static int
create_dynamic (struct vhd_image *v, uint64_t size, uint32_t block_size)
{
  uint64_t nr = DIV_ROUND_UP (size, (uint64_t) block_size), bat_bytes;
  CLEANUP_FREE uint8_t *batbuf = NULL;
  uint8_t *h = v->header;

  if (nr > UINT32_MAX / 4)
    return ferry_error (EFBIG, "%s: %" PRIu64 " blocks of %" PRIu32 " bytes "
                        "are more than a BAT holds (use a larger block_size)",
                        v->base.path, nr, block_size);
  v->type = VHD_TYPE_DYNAMIC;
  v->header_offset = VHD_FOOTER_SIZE;
  v->bat_offset = VHD_FOOTER_SIZE + VHD_HEADER_SIZE;
  v->max_entries = v->nr_entries = nr;
  v->block_size = block_size;
  v->block_bits = __builtin_ctz (block_size);
  v->bitmap_size = MAX (ROUND_UP (block_size / VHD_SECTOR / 8, VHD_SECTOR),
                        VHD_SECTOR);
  bat_bytes = ROUND_UP (nr * 4, (uint64_t) VHD_SECTOR);
  v->bat = malloc (MAX (nr, (uint64_t) 1) * 4);
  batbuf = malloc (MAX (bat_bytes, (uint64_t) 1));
  if (v->bat == NULL || batbuf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  memset (v->bat, 0xff, nr * 4);
  memset (batbuf, 0xff, bat_bytes);

  memset (h, 0, VHD_HEADER_SIZE);
  memcpy (h, VHD_HEADER_COOKIE, 8);
  put_be64 (h + VHD_H_DATA_OFFSET, UINT64_MAX);
  put_be64 (h + VHD_H_TABLE_OFFSET, v->bat_offset);
  put_be32 (h + VHD_H_VERSION, VHD_VERSION);
  put_be32 (h + VHD_H_MAX_ENTRIES, nr);
  put_be32 (h + VHD_H_BLOCK_SIZE, block_size);
  set_checksum (h, VHD_HEADER_SIZE, VHD_H_CHECKSUM);
  build_footer (v, VHD_TYPE_DYNAMIC, size, v->header_offset);

  if (init_dynamic_write (v) == -1)
    return -1;
  v->alloc_end = v->bat_offset + bat_bytes;
  if (write_at (v, v->footer, VHD_FOOTER_SIZE, 0, "footer copy") == -1 ||
      write_at (v, h, VHD_HEADER_SIZE, v->header_offset,
                "dynamic disk header") == -1 ||
      (bat_bytes && write_at (v, batbuf, bat_bytes, v->bat_offset,
                              "BAT") == -1) ||
      write_at (v, v->footer, VHD_FOOTER_SIZE, v->alloc_end,
                "trailing footer") == -1)
    return -1;
  v->file_size = v->alloc_end + VHD_FOOTER_SIZE;
  v->has_tail_footer = true;
  v->tail_stale = true;
  snprintf (v->footer_where, sizeof v->footer_where,
            "at the start and at the end");
  return 0;
}

/* Create a new fixed or dynamic disk, complete and empty. */
struct ferry_image *
vhd_create (const char *path, int fd, uint64_t size, struct option_list *opts)
{
  struct vhd_image *v;
  struct create_opts o;
  struct stat st;

  if (parse_create_options (path, opts, &o) == -1) {
    close (fd);
    return NULL;
  }
  if (fstat (fd, &st) == -1 || !S_ISREG (st.st_mode)) {
    ferry_error (ENOTSUP, "%s: ferry writes VHD images into regular files "
                 "only, not onto devices", path);
    close (fd);
    return NULL;
  }
  if (size > VHD_MAX_SIZE) {
    ferry_error (EFBIG, "%s: a VHD disk holds at most 2040 GiB (%llu bytes); "
                 "this one would have %" PRIu64 " bytes (write vhdx or qcow2 "
                 "instead)", path, (unsigned long long) VHD_MAX_SIZE, size);
    close (fd);
    return NULL;
  }
  size = ROUND_UP (size, (uint64_t) VHD_SECTOR);
  if (o.azure)
    size = ROUND_UP (size, 1ull << 20);
  if (!o.force_size)
    size = round_to_geometry (size);
  if (size > VHD_MAX_SIZE) {
    ferry_error (EFBIG, "%s: rounded up, the disk would have %" PRIu64
                 " bytes, more than the 2040 GiB a VHD disk holds", path,
                 size);
    close (fd);
    return NULL;
  }

  v = vhd_alloc (path, fd, true);
  if (v == NULL)
    return NULL;
  v->base.size = v->current_size = size;
  snprintf (v->size_reason, sizeof v->size_reason,
            "creator 'frry' (ferry) sizes disks by the current size field");
  if (o.fixed) {
    v->type = VHD_TYPE_FIXED;
    build_footer (v, VHD_TYPE_FIXED, size, UINT64_MAX);
    if (truncate_to (v, size + VHD_FOOTER_SIZE) == -1 ||
        write_at (v, v->footer, VHD_FOOTER_SIZE, size, "footer") == -1)
      goto err;
    v->has_tail_footer = true;
    snprintf (v->footer_where, sizeof v->footer_where, "at the end");
  }
  else if (create_dynamic (v, size, o.block_size) == -1)
    goto err;
  v->base.zero_initialized = true;
  return &v->base;

 err:
  free (v->base.path);
  vhd_free (v);
  return NULL;
}
