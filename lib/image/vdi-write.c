/* vdi: creating dynamic and static images and writing them (new ones, and
 * existing ones opened with FERRY_OPEN_WRITE).
 *
 * Options, with qemu-img's name: static=on|off (default off), or
 * subformat=dynamic|static (VBoxManage calls static "Fixed", and ferry
 * takes fixed too).  Blocks are 1 MiB, as VirtualBox and qemu-img write
 * them; the block map and the data area start on 1 MiB boundaries, as
 * VirtualBox places them.
 *
 * NOTES ON CRASH SAFETY
 *
 * 1. A new image is complete when create returns: the header and the
 *    whole block map are written (every block FREE for a dynamic image;
 *    for a static one, block N at data block N, with the file sized to
 *    hold them all).
 *
 * 2. A new block takes the next block of the data area (next_index); the
 *    first new block after open cuts the file at the end of the data area
 *    if anything lies past it, so a new block's unwritten bytes read as
 *    zeroes (they are past the end of the file, or a hole).  The write
 *    that takes a block, and the first write into each block of a static
 *    image ferry created (all holes), leave out the 4 KiB pieces that are
 *    zeroes, so the file stays as sparse as the disk.
 *
 * 3. A block's map entry is set in memory only after its data is written,
 *    with an atomic store, so a concurrent reader sees FREE or the
 *    finished block.  Only next_index and the map's dirty range are
 *    serialised; data I/O is not.  Callers never write one block from two
 *    threads at once.
 *
 * 4. At flush and close, in this order: the file is extended to hold
 *    every block the data area counts, the data is synced (flush only),
 *    the header (with cBlocksAllocated) is written, then the changed map
 *    entries, then the file is synced (flush only).  VirtualBox puts new
 *    blocks at cBlocksAllocated, so a count written before the entries
 *    can at worst leave blocks counted but unused, never an entry that
 *    points at a block VirtualBox would hand out again.  Each data write
 *    asks the kernel to start writing it back at once, so the flush finds
 *    little left (as in vhd-write.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdi-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* The text VirtualBox puts at the start of every image ("for eyes
 * only"); tools such as file(1) know images by it. */
static const char vdi_text[] = "<<< Oracle VM VirtualBox Disk Image >>>\n";

/* Write LEN bytes of BUF at OFFSET, naming WHAT on failure. */
static int
write_at (struct vdi_image *d, const void *buf, size_t len, uint64_t offset,
          const char *what)
{
  if (full_pwrite (d->fd, buf, len, offset) == -1)
    return ferry_error_errno (errno, "%s: writing the %s at offset 0x%"
                              PRIx64, d->base.path, what, offset);
  return 0;
}

/* Set the file size to LEN bytes. */
static int
resize_to (struct vdi_image *d, uint64_t len)
{
  if (truncate_fd (d->fd, len) == -1)
    return ferry_error_errno (errno, "%s: setting the file size to %" PRIu64
                              " bytes", d->base.path, len);
  d->file_size = len;
  return 0;
}

/* The end of the data area's blocks up to next_index. */
static uint64_t
data_end (const struct vdi_image *d)
{
  return d->off_data + (uint64_t) d->next_index * d->stride;
}

int
vdi_open_for_write (struct vdi_image *d)
{
  uint32_t i;

  d->next_index = d->nr_allocated;
  for (i = 0; i < d->nr_entries; i++)
    if (d->map[i] < VDI_BLOCK_ZERO && d->map[i] >= d->next_index)
      d->next_index = d->map[i] + 1;
  d->dirty_lo = UINT32_MAX;
  d->dirty_hi = 0;
  return 0;
}

/* The data-area index of block B, taking the next one when it has none
 * (note 2); *FRESH then says its map entry waits for publish_block. */
static int
block_for_write (struct vdi_image *d, uint64_t b, uint32_t *index,
                 bool *fresh)
{
  uint32_t e = vdi_map_get (d, b);

  *fresh = false;
  /* Any write gets the image a new modification UUID at close. */
  __atomic_store_n (&d->meta_dirty, true, __ATOMIC_RELAXED);
  if (e < VDI_BLOCK_ZERO) {
    *index = e;
    /* A block of a new static image reads as zeroes until its first
     * write. */
    if (d->untouched && e < d->nr_blocks) {
      uint8_t bit = 1 << (e % 8);
      *fresh = __atomic_fetch_and (&d->untouched[e / 8], ~bit,
                                   __ATOMIC_RELAXED) & bit;
    }
    return 0;
  }
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&d->lock);
  if (b >= d->nr_entries)
    return ferry_error (EINVAL, "%s: block %" PRIu64 " is past the block map "
                        "(%" PRIu32 " entries)", d->base.path, b,
                        d->nr_entries);
  if (d->next_index >= VDI_BLOCK_ZERO)
    return ferry_error (ENOSPC, "%s: the data area is full (%" PRIu32
                        " blocks)", d->base.path, d->next_index);
  if (d->file_size > data_end (d) && resize_to (d, data_end (d)) == -1)
    return -1;
  *index = d->next_index++;
  *fresh = true;
  return 0;
}

/* Point block B's map entry at INDEX, now that its data is written
 * (note 3). */
static void
publish_block (struct vdi_image *d, uint64_t b, uint32_t index)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&d->lock);
  __atomic_store_n (&d->map[b], index, __ATOMIC_RELEASE);
  d->dirty_lo = MIN (d->dirty_lo, (uint32_t) b);
  d->dirty_hi = MAX (d->dirty_hi, (uint32_t) b + 1);
}

int
vdi_pwrite (struct ferry_image *img, const void *buf, size_t count,
            uint64_t offset)
{
  struct vdi_image *d = (struct vdi_image *) img;
  const uint8_t *p = buf;

  while (count > 0) {
    uint64_t b = offset >> d->block_bits;
    uint64_t in = offset & (d->block_size - 1);
    uint64_t n = MIN ((uint64_t) count, d->block_size - in), host;
    uint32_t index = 0;
    bool fresh = false;
    if (block_for_write (d, b, &index, &fresh) == -1)
      return -1;
    host = vdi_block_host (d, index) + in;
    /* A block that reads as zeroes before this call need not have its
     * zeroes written (note 2). */
    if (fresh) {
      if (hostfile_write_sparse (d->fd, p, n, host, img->path) == -1)
        return -1;
    }
    else if (full_pwrite (d->fd, p, n, host) == -1)
      return ferry_error_errno (errno, "%s: writing %" PRIu64 " bytes of "
                                "block %" PRIu64 " at offset 0x%" PRIx64,
                                img->path, n, b, host);
    hostfile_start_writeback (img, d->fd, host, n);
    if (fresh && vdi_map_get (d, b) >= VDI_BLOCK_ZERO)
      publish_block (d, b, index);
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

/* Zeroes: a FREE or ZERO block reads as zeroes already (no writable image
 * has a parent); an allocated one gets them from the file system. */
int
vdi_zero (struct ferry_image *img, size_t count, uint64_t offset,
          unsigned flags)
{
  struct vdi_image *d = (struct vdi_image *) img;

  while (count > 0) {
    uint64_t b = offset >> d->block_bits;
    uint64_t in = offset & (d->block_size - 1);
    uint64_t n = MIN ((uint64_t) count, d->block_size - in);
    uint32_t e = vdi_map_get (d, b);
    if (e < VDI_BLOCK_ZERO) {
      __atomic_store_n (&d->meta_dirty, true, __ATOMIC_RELAXED);
      if (hostfile_zero (d->fd, vdi_block_host (d, e) + in, n,
                         flags & FERRY_ZERO_MAY_TRIM, &d->caps,
                         img->path) == -1)
        return -1;
    }
    offset += n;
    count -= n;
  }
  return 0;
}

/* Write the map entries that changed. */
static int
write_map (struct vdi_image *d)
{
  if (hostfile_write_table32 (d->fd, d->map, d->dirty_lo, d->dirty_hi,
                              d->off_blocks, false, d->base.path,
                              "block map") == -1)
    return -1;
  d->dirty_lo = UINT32_MAX;
  d->dirty_hi = 0;
  return 0;
}

int
vdi_finish (struct vdi_image *d, bool sync)
{
  size_t count_at = d->version == VDI_VERSION_1_1 ? VDI1_BLOCKS_ALLOCATED :
    VDI0_BLOCKS_ALLOCATED;

  if (!d->meta_dirty)
    return 0;
  /* Note 4: room for every block, data, header, map. */
  if (d->file_size < data_end (d) && resize_to (d, data_end (d)) == -1)
    return -1;
  if (sync && datasync_fd (d->fd) == -1)
    return ferry_error_errno (errno, "%s: flush", d->base.path);
  d->nr_allocated = MAX (d->nr_allocated, d->next_index);
  put_le32 (d->prefix + count_at, d->nr_allocated);
  random_uuid (d->prefix + d->uuid_modify);
  if (write_at (d, d->prefix, VDI_HEADER_START + d->header_size, 0,
                "header") == -1 ||
      write_map (d) == -1)
    return -1;
  d->meta_dirty = false;
  return 0;
}

int
vdi_flush (struct ferry_image *img)
{
  struct vdi_image *d = (struct vdi_image *) img;

  if (vdi_finish (d, true) == -1)
    return -1;
  if (datasync_fd (d->fd) == -1)
    return ferry_error_errno (errno, "%s: flush", img->path);
  return 0;
}

/* Read the options of create: static or not. */
static int
parse_create_options (const char *path, struct option_list *opts,
                      bool *is_static)
{
  const char *sub = options_get (opts, "subformat");
  bool st = false;
  int has_static = options_get_bool (opts, path, "static", &st);

  if (has_static == -1)
    return -1;
  if (sub && strcmp (sub, "dynamic") && strcmp (sub, "static") &&
      strcmp (sub, "fixed"))
    return ferry_error (EINVAL, "%s: subformat=%s: expected dynamic or "
                        "static", path, sub);
  if (sub && has_static && st != (strcmp (sub, "dynamic") != 0))
    return ferry_error (EINVAL, "%s: subformat=%s and static=%s contradict",
                        path, sub, st ? "on" : "off");
  *is_static = has_static ? st : sub && strcmp (sub, "dynamic") != 0;
  return 0;
}

/* Fill d->prefix with the text, signature and a version 1.1 header for a
 * new image of SIZE bytes. */
static void
build_header (struct vdi_image *d, bool is_static)
{
  uint8_t *h = d->prefix;

  memset (h, 0, VDI_PREFIX_SIZE);
  memcpy (h, vdi_text, sizeof vdi_text - 1);
  put_le32 (h + 64, VDI_SIGNATURE);
  put_le32 (h + 68, VDI_VERSION_1_1);
  put_le32 (h + VDI1_HEADER_SIZE, VDI1_FULL_HEADER_SIZE);
  put_le32 (h + VDI1_TYPE, is_static ? VDI_TYPE_FIXED : VDI_TYPE_NORMAL);
  put_le32 (h + VDI1_OFF_BLOCKS, d->off_blocks);
  put_le32 (h + VDI1_OFF_DATA, d->off_data);
  put_le32 (h + VDI1_LEGACY_GEOMETRY + 12, 512);   /* bytes per sector */
  put_le64 (h + VDI1_DISK_SIZE, d->base.size);
  put_le32 (h + VDI1_BLOCK_SIZE, d->block_size);
  put_le32 (h + VDI1_BLOCK_EXTRA, 0);
  put_le32 (h + VDI1_BLOCKS, d->nr_blocks);
  put_le32 (h + VDI1_BLOCKS_ALLOCATED, d->nr_allocated);
  random_uuid (h + VDI1_UUID_CREATE);
  random_uuid (h + VDI1_UUID_MODIFY);
  put_le32 (h + VDI1_LCHS_GEOMETRY + 12, 512);
}

/* Lay out and write a new image (note 1). */
static int
write_new_image (struct vdi_image *d, uint64_t size, bool is_static)
{
  uint64_t n = DIV_ROUND_UP (size, (uint64_t) VDI_DEFAULT_BLOCK_SIZE), i;
  uint64_t map_bytes = ROUND_UP (MAX (n * 4, (uint64_t) 1), 512);
  CLEANUP_FREE uint32_t *buf = NULL;

  d->version = VDI_VERSION_1_1;
  d->header_size = VDI1_FULL_HEADER_SIZE;
  d->type = is_static ? VDI_TYPE_FIXED : VDI_TYPE_NORMAL;
  d->block_size = VDI_DEFAULT_BLOCK_SIZE;
  d->block_bits = __builtin_ctz (d->block_size);
  d->block_extra = 0;
  d->stride = d->block_size;
  d->off_blocks = VDI_DATA_ALIGN;
  d->off_data = ROUND_UP (d->off_blocks + n * 4, (uint64_t) VDI_DATA_ALIGN);
  if (n >= VDI_BLOCK_ZERO || d->off_data > UINT32_MAX)
    return ferry_error (EFBIG, "%s: a VDI image of %" PRIu64 " bytes would "
                        "need %" PRIu64 " blocks of 1 MiB, more than the "
                        "format addresses", d->base.path, size, n);
  d->nr_blocks = d->nr_entries = n;
  d->nr_allocated = is_static ? n : 0;
  d->next_index = d->nr_allocated;
  d->uuid_create = VDI1_UUID_CREATE;
  d->uuid_modify = VDI1_UUID_MODIFY;
  d->uuid_linkage = VDI1_UUID_LINKAGE;
  d->uuid_parent_modify = VDI1_UUID_PARENT_MODIFY;
  d->dirty_lo = UINT32_MAX;
  d->dirty_hi = 0;
  d->map = malloc (MAX (n, (uint64_t) 1) * 4);
  buf = calloc (1, map_bytes);
  if (d->map == NULL || buf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", d->base.path);
  for (i = 0; i < n; i++) {
    d->map[i] = is_static ? i : VDI_BLOCK_FREE;
    buf[i] = htole32 (d->map[i]);
  }
  if (is_static) {
    d->untouched = malloc (DIV_ROUND_UP (MAX (n, (uint64_t) 1), 8));
    if (d->untouched == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", d->base.path);
    memset (d->untouched, 0xff, DIV_ROUND_UP (MAX (n, (uint64_t) 1), 8));
  }
  build_header (d, is_static);
  if (resize_to (d, is_static ? data_end (d) : d->off_data) == -1 ||
      write_at (d, d->prefix, VDI_PREFIX_SIZE, 0, "header") == -1 ||
      write_at (d, buf, map_bytes, d->off_blocks, "block map") == -1)
    return -1;
  return 0;
}

/* Create a new dynamic or static image, complete and empty. */
struct ferry_image *
vdi_create (const char *path, int fd, uint64_t size, struct option_list *opts)
{
  struct vdi_image *d;
  struct stat st;
  bool is_static = false;

  if (parse_create_options (path, opts, &is_static) == -1) {
    close (fd);
    return NULL;
  }
  if (fstat (fd, &st) == -1 || !S_ISREG (st.st_mode)) {
    ferry_error (ENOTSUP, "%s: ferry writes VDI images into regular files "
                 "only, not onto devices", path);
    close (fd);
    return NULL;
  }
  d = vdi_alloc (path, fd, true);
  if (d == NULL)
    return NULL;
  /* VirtualBox sees disks in whole sectors, as qemu-img creates them. */
  if (size > UINT64_MAX - 511) {
    ferry_error (EFBIG, "%s: a virtual size of %" PRIu64 " bytes is too "
                 "large", path, size);
    goto err;
  }
  d->base.size = ROUND_UP (size, (uint64_t) 512);
  if (write_new_image (d, d->base.size, is_static) == -1)
    goto err;
  d->base.zero_initialized = true;
  return &d->base;

 err:
  free (d->base.path);
  vdi_free (d);
  return NULL;
}
