/* vdi: VirtualBox's Virtual Disk Image, read side.
 *
 * Dynamic ("normal"), static ("fixed"), differencing and undo images,
 * header versions 1.1 and 0 (VirtualBox 1.x); any power-of-2 block size
 * from 512 bytes to 256 MiB, though VirtualBox and qemu-img only ever
 * write 1 MiB.  Creating and writing live in vdi-write.c; the layout is
 * described in vdi-internal.h.
 *
 * NOTES ON THE DESIGN
 *
 * 1. The block map is read whole at open, after checking that it lies in
 *    the file (so it is never larger than the file), and every entry is
 *    checked then: a block must start inside the file, and no two entries
 *    may name the same block of the data area.
 *
 * 2. A FREE block reads from the parent in a differencing or undo image,
 *    and as zeroes in any other; a ZERO block (discarded) reads as zeroes
 *    in every image, never from the parent.
 *
 * 3. The parent of a differencing image is the image whose creation UUID
 *    is the child's linkage UUID.  VirtualBox keeps that link in its
 *    media registry, not in the file, so ferry looks for it among the
 *    *.vdi files of the child's folder.  A parent whose modification UUID
 *    is not the one the child recorded was changed after the child was
 *    made: a warning, refused under FERRY_OPEN_STRICT.
 *
 * 4. Reads take no lock: the map of a read-only image never changes, and
 *    a writable image changes an entry only with an atomic store after
 *    the block's data is in the file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdi-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* The most extents one call reports, and the most blocks it walks. */
#define VDI_EXTENTS_MAX_RUNS 4096
#define VDI_EXTENTS_MAX_BLOCKS 1024

/* A VDI file has the signature at offset 64. */
static int
vdi_probe (const uint8_t *head, size_t head_len, const uint8_t *tail,
           size_t tail_len, uint64_t file_size)
{
  uint32_t version;

  if (head_len < VDI_HEADER_START || get_le32 (head + 64) != VDI_SIGNATURE)
    return 0;
  version = get_le32 (head + 68);
  if (version == VDI_VERSION_1_1 || (version >> 16) == 0)
    return 100;
  return 50;                    /* let open say which version it is */
}

void
vdi_format_uuid (const uint8_t *u, char out[37])
{
  /* RTUUID: the first three fields little-endian, as VirtualBox shows
   * them. */
  snprintf (out, 37, "%08" PRIx32 "-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x"
            "%02x", get_le32 (u), get_le16 (u + 4), get_le16 (u + 6), u[8],
            u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* Whether the 16 bytes at U are all zero (an id that is not set). */
static bool
uuid_is_null (const uint8_t *u)
{
  return is_zero (u, 16);
}

/* Parse the header in d->prefix (read from the file) into D. */
static int
parse_header (struct vdi_image *d)
{
  const uint8_t *h = d->prefix;
  const char *path = d->base.path;

  if (get_le32 (h + 64) != VDI_SIGNATURE)
    return ferry_error (EINVAL, "%s: header at offset 0x40: no VDI "
                        "signature", path);
  d->version = get_le32 (h + 68);
  if (d->version == VDI_VERSION_1_1) {
    d->header_size = get_le32 (h + VDI1_HEADER_SIZE);
    if (d->header_size < VDI1_MIN_HEADER_SIZE ||
        d->header_size > VDI_PREFIX_SIZE - VDI_HEADER_START)
      return ferry_error (EINVAL, "%s: header at offset 0x48: header size "
                          "%" PRIu32 " is not from %d to %d bytes", path,
                          d->header_size, VDI1_MIN_HEADER_SIZE,
                          VDI_PREFIX_SIZE - VDI_HEADER_START);
    d->type = get_le32 (h + VDI1_TYPE);
    d->off_blocks = get_le32 (h + VDI1_OFF_BLOCKS);
    d->off_data = get_le32 (h + VDI1_OFF_DATA);
    d->base.size = get_le64 (h + VDI1_DISK_SIZE);
    d->block_size = get_le32 (h + VDI1_BLOCK_SIZE);
    d->block_extra = get_le32 (h + VDI1_BLOCK_EXTRA);
    d->nr_blocks = get_le32 (h + VDI1_BLOCKS);
    d->nr_allocated = get_le32 (h + VDI1_BLOCKS_ALLOCATED);
    d->uuid_create = VDI1_UUID_CREATE;
    d->uuid_modify = VDI1_UUID_MODIFY;
    d->uuid_linkage = VDI1_UUID_LINKAGE;
    d->uuid_parent_modify = VDI1_UUID_PARENT_MODIFY;
  }
  else if ((d->version >> 16) == 0) {
    d->header_size = VDI0_END - VDI_HEADER_START;
    d->type = get_le32 (h + VDI0_TYPE);
    d->base.size = get_le64 (h + VDI0_DISK_SIZE);
    d->block_size = get_le32 (h + VDI0_BLOCK_SIZE);
    d->block_extra = 0;
    d->nr_blocks = get_le32 (h + VDI0_BLOCKS);
    d->nr_allocated = get_le32 (h + VDI0_BLOCKS_ALLOCATED);
    d->off_blocks = VDI0_END;
    d->off_data = VDI0_END + (uint64_t) d->nr_blocks * 4;
    d->uuid_create = VDI0_UUID_CREATE;
    d->uuid_modify = VDI0_UUID_MODIFY;
    d->uuid_linkage = VDI0_UUID_LINKAGE;
    d->uuid_parent_modify = 0;
  }
  else
    return ferry_error (EINVAL, "%s: header at offset 0x44: version %" PRIu32
                        ".%" PRIu32 " (ferry reads 0.x and 1.1)", path,
                        d->version >> 16, d->version & 0xffff);

  if (d->type < VDI_TYPE_NORMAL || d->type > VDI_TYPE_DIFF)
    return ferry_error (EINVAL, "%s: header: image type %u is not normal (1), "
                        "fixed (2), undo (3) or differencing (4)", path,
                        (unsigned) d->type);
  if (!is_power_of_2 (d->block_size) || d->block_size < VDI_MIN_BLOCK_SIZE ||
      d->block_size > VDI_MAX_BLOCK_SIZE)
    return ferry_error (EINVAL, "%s: header: block size %" PRIu32 " is not a "
                        "power of 2 from 512 bytes to 256 MiB", path,
                        d->block_size);
  if (d->block_extra % 512 != 0 || d->block_extra > VDI_MAX_BLOCK_SIZE)
    return ferry_error (EINVAL, "%s: header: %" PRIu32 " bytes of extra "
                        "data per block is not a multiple of 512 up to 256 "
                        "MiB", path, d->block_extra);
  d->block_bits = __builtin_ctz (d->block_size);
  d->stride = (uint64_t) d->block_extra + d->block_size;
  if ((uint64_t) d->nr_blocks * d->block_size < d->base.size)
    return ferry_error (EINVAL, "%s: header: %" PRIu32 " blocks of %" PRIu32
                        " bytes do not cover the disk's %" PRIu64 " bytes",
                        path, d->nr_blocks, d->block_size, d->base.size);
  d->nr_entries = DIV_ROUND_UP (d->base.size, (uint64_t) d->block_size);
  if (d->off_blocks < VDI_HEADER_START + d->header_size ||
      d->off_blocks > d->file_size ||
      d->file_size - d->off_blocks < (uint64_t) d->nr_blocks * 4)
    return ferry_error (EINVAL, "%s: header: the block map of %" PRIu32
                        " entries at offset 0x%" PRIx64 " does not lie in the "
                        "file after the header (file size %" PRIu64
                        " bytes)", path, d->nr_blocks, d->off_blocks,
                        d->file_size);
  if (d->off_data < d->off_blocks + (uint64_t) d->nr_blocks * 4)
    return ferry_error (EINVAL, "%s: header: the data area at offset 0x%"
                        PRIx64 " overlaps the block map at offset 0x%" PRIx64,
                        path, d->off_data, d->off_blocks);
  return 0;
}

/* Read the block map and check every entry (note 1). */
static int
load_map (struct vdi_image *d)
{
  const char *path = d->base.path;
  uint64_t in_file = d->file_size > d->off_data ?
    DIV_ROUND_UP (d->file_size - d->off_data, d->stride) : 0;
  CLEANUP_FREE uint8_t *seen = NULL;
  uint32_t i, n = d->nr_entries;

  d->map = malloc (MAX (n, 1u) * sizeof *d->map);
  seen = calloc (DIV_ROUND_UP (MAX (in_file, (uint64_t) 1), 8), 1);
  if (d->map == NULL || seen == NULL)
    return ferry_error (ENOMEM, "%s: out of memory for a block map of %"
                        PRIu32 " entries", path, n);
  if (n && full_pread (d->fd, d->map, (size_t) n * 4, d->off_blocks) == -1)
    return ferry_error_errno (errno, "%s: reading the block map at offset 0x%"
                              PRIx64, path, d->off_blocks);
  for (i = 0; i < n; i++) {
    uint32_t e = d->map[i] = le32toh (d->map[i]);
    if (e == VDI_BLOCK_FREE || e == VDI_BLOCK_ZERO)
      continue;
    if (e >= in_file)
      return ferry_error (EINVAL, "%s: block map at offset 0x%" PRIx64
                          ": entry %" PRIu32 " points to block %" PRIu32
                          " of the data area, at offset 0x%" PRIx64 ", past "
                          "the end of the file (size %" PRIu64 " bytes)",
                          path, d->off_blocks, i, e,
                          d->off_data + (uint64_t) e * d->stride,
                          d->file_size);
    if (seen[e / 8] & (1 << (e % 8)))
      return ferry_error (EINVAL, "%s: block map at offset 0x%" PRIx64
                          ": entry %" PRIu32 " points to block %" PRIu32
                          " of the data area, which an earlier entry uses "
                          "too", path, d->off_blocks, i, e);
    seen[e / 8] |= 1 << (e % 8);
  }
  return 0;
}

/* Whether the file NAME in DIR is a VDI image whose creation UUID is
 * WANT; *MODIFY_OK then says whether its modification UUID is
 * MODIFY (or MODIFY is not set). */
static bool
is_parent (const char *dir, const char *name, const uint8_t *want,
           const uint8_t *modify, bool *modify_ok)
{
  CLEANUP_FREE char *full = NULL;
  CLEANUP_CLOSE int fd = -1;
  uint8_t h[VDI_PREFIX_SIZE];
  size_t create_at, modify_at;
  struct stat st;

  if (asprintf (&full, "%s/%s", dir, name) == -1) {
    full = NULL;
    return false;
  }
  fd = open (full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd == -1 || fstat (fd, &st) == -1 || !S_ISREG (st.st_mode) ||
      full_pread (fd, h, sizeof h, 0) == -1 ||
      get_le32 (h + 64) != VDI_SIGNATURE)
    return false;
  if (get_le32 (h + 68) == VDI_VERSION_1_1) {
    create_at = VDI1_UUID_CREATE;
    modify_at = VDI1_UUID_MODIFY;
  }
  else {
    create_at = VDI0_UUID_CREATE;
    modify_at = VDI0_UUID_MODIFY;
  }
  if (memcmp (h + create_at, want, 16) != 0)
    return false;
  *modify_ok = modify == NULL || uuid_is_null (modify) ||
    memcmp (h + modify_at, modify, 16) == 0;
  return true;
}

/* Find the parent of a differencing image among the *.vdi files of its
 * folder and open it (note 3). */
static int
open_parent (struct vdi_image *d, const struct open_args *args)
{
  const uint8_t *link = d->prefix + d->uuid_linkage;
  const uint8_t *pmod = d->uuid_parent_modify ?
    d->prefix + d->uuid_parent_modify : NULL;
  CLEANUP_FREE char *copy = strdup (d->base.path);
  char want[37], *dir, *slash;
  bool modify_ok = false, best_ok = false;
  struct dirent *de;
  DIR *dp;

  vdi_format_uuid (link, want);
  if (copy == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", d->base.path);
  if (uuid_is_null (link))
    return ferry_error (EINVAL, "%s: header: a differencing image with no "
                        "parent UUID", d->base.path);
  /* The fuzzers open without backing files: nothing is looked up. */
  if (args->flags & FERRY_OPEN_NO_BACKING)
    return 0;
  slash = strrchr (copy, '/');
  if (slash == NULL)
    dir = ".";
  else if (slash == copy)
    dir = "/";
  else {
    *slash = '\0';
    dir = copy;
  }
  dp = opendir (dir);
  if (dp == NULL)
    return ferry_error_errno (errno, "%s: looking for the parent image {%s} "
                              "in %s", d->base.path, want, dir);
  while ((de = readdir (dp)) != NULL) {
    size_t len = strlen (de->d_name);
    if (len < 4 || strcasecmp (de->d_name + len - 4, ".vdi") != 0)
      continue;
    if (!is_parent (dir, de->d_name, link, pmod, &modify_ok))
      continue;
    /* Two copies of the parent: take the one the child was made from. */
    if (d->parent_path == NULL || (modify_ok && !best_ok)) {
      free (d->parent_path);
      d->parent_path = strdup (de->d_name);
      best_ok = modify_ok;
      if (d->parent_path == NULL) {
        closedir (dp);
        return ferry_error (ENOMEM, "%s: out of memory", d->base.path);
      }
    }
  }
  closedir (dp);
  if (d->parent_path == NULL)
    return image_backing_missing (&d->base, args, NULL, "the parent image "
                                  "{%s} is missing: no *.vdi file in %s has "
                                  "that UUID", want, dir);
  if (!best_ok) {
    char got[37];
    vdi_format_uuid (pmod, got);
    if (args->flags & FERRY_OPEN_STRICT) {
      ferry_error (EINVAL, "%s: the parent image '%s' {%s} was modified "
                   "after this image was made from it (it is not "
                   "modification {%s}); refused in strict mode",
                   d->base.path, d->parent_path, want, got);
      return ferry_error_input ("strict");
    }
    ferry_warn ("%s: the parent image '%s' {%s} was modified after this "
                "image was made from it (it is not modification {%s}); "
                "reading it anyway (strict mode refuses it)", d->base.path,
                d->parent_path, want, got);
  }
  return image_open_backing (&d->base, d->parent_path, "vdi", args);
}

/* Read one block's part of a request: N bytes at IN of block B (note 2). */
static int
read_in_block (struct vdi_image *d, uint8_t *p, uint64_t b, uint64_t in,
               uint64_t n, uint64_t offset)
{
  uint32_t e = vdi_map_get (d, b);
  uint64_t host;

  if (e == VDI_BLOCK_FREE && (d->type == VDI_TYPE_DIFF ||
                              d->type == VDI_TYPE_UNDO))
    return image_backing_pread (&d->base, p, n, offset);
  if (e == VDI_BLOCK_FREE || e == VDI_BLOCK_ZERO) {
    memset (p, 0, n);
    return 0;
  }
  host = vdi_block_host (d, e) + in;
  if (full_pread (d->fd, p, n, host) == -1)
    return ferry_error_errno (errno, "%s: reading %" PRIu64 " bytes of block %"
                              PRIu64 " at offset 0x%" PRIx64, d->base.path, n,
                              b, host);
  return 0;
}

/* The pread callback. */
static int
vdi_pread (struct ferry_image *img, void *buf, size_t count, uint64_t offset)
{
  struct vdi_image *d = (struct vdi_image *) img;
  uint8_t *p = buf;

  while (count > 0) {
    uint64_t b = offset >> d->block_bits;
    uint64_t in = offset & (d->block_size - 1);
    uint64_t n = MIN ((uint64_t) count, d->block_size - in);
    if (read_in_block (d, p, b, in, n, offset) == -1)
      return -1;
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

/* Extents from the block map, refined by the file system inside
 * allocated blocks; FREE blocks of a differencing image from the parent. */
static int
vdi_extents (struct ferry_image *img, uint64_t offset, uint64_t length,
             struct ferry_extent_list *list)
{
  struct vdi_image *d = (struct vdi_image *) img;
  uint64_t end = offset + length, blocks = 0, reached;
  size_t start_len = list->len;
  bool diff = d->type == VDI_TYPE_DIFF || d->type == VDI_TYPE_UNDO;

  while (offset < end && blocks++ < VDI_EXTENTS_MAX_BLOCKS &&
         list->len - start_len < VDI_EXTENTS_MAX_RUNS) {
    uint64_t b = offset >> d->block_bits;
    uint64_t in = offset & (d->block_size - 1);
    uint64_t n = MIN (end - offset, d->block_size - in);
    uint32_t e = vdi_map_get (d, b);
    if (e == VDI_BLOCK_FREE && diff) {
      if (image_backing_extents (img, offset, n, list, &reached) == -1)
        return -1;
      if (reached < offset + n)
        return 0;               /* the caller asks again from there */
    }
    else if (e == VDI_BLOCK_FREE || e == VDI_BLOCK_ZERO) {
      if (ferry_extent_list_append (list, offset, n, FERRY_EXTENT_HOLE |
                                    FERRY_EXTENT_ZERO) == -1)
        return ferry_error (ENOMEM, "%s: out of memory", img->path);
    }
    else if (hostfile_extents (d->fd, vdi_block_host (d, e) + in, n, offset,
                               FERRY_EXTENT_ZERO, &d->caps, img->path,
                               list) == -1)
      return -1;
    offset += n;
  }
  return 0;
}

/* Fill INFO and the facts. */
static int
vdi_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  struct vdi_image *d = (struct vdi_image *) img;
  static const char *const types[] = {
    "", "dynamic", "static", "undo", "differencing",
  };
  char s[40];
  uint32_t i, used = 0;

  info->allocated = file_allocated_bytes (d->fd);
  info->cluster_size = d->block_size;
  info->backing_file = d->parent_path;
  if (d->parent_path)
    info->backing_format = "vdi";
  for (i = 0; i < d->nr_entries; i++)
    if (vdi_map_get (d, i) < VDI_BLOCK_ZERO)
      used++;
  snprintf (s, sizeof s, "%" PRIu32 ".%" PRIu32, d->version >> 16,
            d->version & 0xffff);
  if (image_fact_string (img, "subformat", types[d->type]) == -1 ||
      image_fact_string (img, "version", s) == -1 ||
      image_fact_number (img, "blocks", d->nr_blocks) == -1 ||
      image_fact_number (img, "blocks-allocated", used) == -1)
    return -1;
  vdi_format_uuid (d->prefix + d->uuid_create, s);
  if (image_fact_string (img, "uuid", s) == -1)
    return -1;
  vdi_format_uuid (d->prefix + d->uuid_modify, s);
  if (image_fact_string (img, "modification-uuid", s) == -1)
    return -1;
  if (d->type == VDI_TYPE_DIFF || d->type == VDI_TYPE_UNDO) {
    vdi_format_uuid (d->prefix + d->uuid_linkage, s);
    if (image_fact_string (img, "parent-uuid", s) == -1)
      return -1;
    if (d->uuid_parent_modify) {
      vdi_format_uuid (d->prefix + d->uuid_parent_modify, s);
      if (image_fact_string (img, "parent-modification-uuid", s) == -1)
        return -1;
    }
  }
  {
    const char *c = (const char *) d->prefix +
      (d->version == VDI_VERSION_1_1 ? VDI1_COMMENT : VDI0_COMMENT);
    CLEANUP_FREE char *comment = strdup_counted (c, strnlen (c,
                                                 VDI_COMMENT_SIZE));
    if (comment && comment[0] && image_fact_string (img, "comment",
                                                    comment) == -1)
      return -1;
  }
  return 0;
}

/* Free D and everything it holds, closing its file. */
void
vdi_free (struct vdi_image *d)
{
  if (d->fd >= 0)
    close (d->fd);
  pthread_mutex_destroy (&d->lock);
  free (d->map);
  free (d->untouched);
  free (d->parent_path);
  free (d);
}

struct vdi_image *
vdi_alloc (const char *path, int fd, bool writable)
{
  struct vdi_image *d = calloc (1, sizeof *d);

  if (d == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    close (fd);
    return NULL;
  }
  d->fd = fd;
  pthread_mutex_init (&d->lock, NULL);
  hostfile_caps_init (&d->caps, fd);
  if (image_init_base (&d->base, &vdi_driver, path, fd, !writable) == -1 ||
      hostfile_size (fd, path, &d->file_size) == -1) {
    free (d->base.path);
    vdi_free (d);
    return NULL;
  }
  return d;
}

/* Make D for FD (owned from here, closed on failure) and read and check
 * its header and block map, but not its parent.  NULL with the error set. */
static struct vdi_image *
vdi_load (const char *path, int fd, bool writable)
{
  struct vdi_image *d = vdi_alloc (path, fd, writable);

  if (d == NULL)
    return NULL;
  if (d->file_size < VDI_HEADER_START + VDI1_MIN_HEADER_SIZE) {
    ferry_error (EINVAL, "%s: file of %" PRIu64 " bytes is too small to hold "
                 "a VDI header", path, d->file_size);
    goto err;
  }
  if (full_pread (fd, d->prefix, sizeof d->prefix, 0) == -1) {
    ferry_error_errno (errno, "%s: reading the header", path);
    goto err;
  }
  if (parse_header (d) == -1 || load_map (d) == -1)
    goto err;
  return d;

 err:
  free (d->base.path);
  vdi_free (d);
  return NULL;
}

/* Open a VDI image and, for a differencing one, its parent. */
static struct ferry_image *
vdi_open (const char *path, int fd, const struct open_args *args)
{
  bool writable = args->flags & FERRY_OPEN_WRITE;
  struct vdi_image *d = vdi_load (path, fd, writable);

  if (d == NULL)
    return NULL;
  if (d->type == VDI_TYPE_DIFF || d->type == VDI_TYPE_UNDO) {
    if (writable) {
      ferry_error (ENOTSUP, "%s: ferry does not write into differencing VDI "
                   "images", path);
      goto err;
    }
    if (open_parent (d, args) == -1)
      goto err;
  }
  if (writable && vdi_open_for_write (d) == -1)
    goto err;
  return &d->base;

 err:
  image_base_discard (&d->base);
  vdi_free (d);
  return NULL;
}

/* ferry check: what open refuses is an error (its message); a map entry
 * past the header's count of data blocks is an error too (VirtualBox
 * would hand that block out again); counted blocks no entry uses are
 * leaks.  The parent is not opened: each file is checked on its own. */
static int
vdi_check (const char *path, int fd, struct ferry_check_result *r)
{
  int fd2 = fcntl (fd, F_DUPFD_CLOEXEC, 0);
  CLEANUP_FREE uint8_t *used = NULL;
  struct vdi_image *d;
  uint64_t unused = 0;
  uint32_t i;
  int ret = -1;

  if (fd2 == -1)
    return ferry_error_errno (errno, "%s: dup", path);
  d = vdi_load (path, fd2, false);
  if (d == NULL)
    return check_report_error (r, path);
  used = calloc (DIV_ROUND_UP (MAX (d->nr_allocated, 1u), 8), 1);
  if (used == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    goto out;
  }
  for (i = 0; i < d->nr_entries; i++) {
    uint32_t e = d->map[i];
    if (e >= VDI_BLOCK_ZERO)
      continue;
    r->allocated_clusters++;
    if (e < d->nr_allocated)
      used[e / 8] |= 1 << (e % 8);
    else if (check_report (r, true, "block map entry %" PRIu32 " points to "
                           "data block %" PRIu32 ", past the %" PRIu32
                           " blocks the header counts (VirtualBox would give "
                           "it out again)", i, e, d->nr_allocated) == -1)
      goto out;
  }
  for (i = 0; i < d->nr_allocated; i++)
    if (!(used[i / 8] & (1 << (i % 8))))
      unused++;
  if (unused && check_report (r, false, "%" PRIu64 " of the %" PRIu32
                              " data blocks the header counts are used by no "
                              "block map entry", unused,
                              d->nr_allocated) == -1)
    goto out;
  r->leaks += unused ? unused - 1 : 0;   /* one line, one leak per block */
  r->total_clusters = d->nr_entries;
  ret = 0;
 out:
  free (d->base.path);
  vdi_free (d);
  return ret;
}

/* Finish a writable image (map, header) and free it all. */
static int
vdi_close (struct ferry_image *img)
{
  struct vdi_image *d = (struct vdi_image *) img;
  int r = 0;

  if (!img->readonly) {
    r = vdi_finish (d, false);
    if (close (d->fd) == -1 && r == 0)
      r = ferry_error_errno (errno, "%s: close", img->path);
    d->fd = -1;
  }
  vdi_free (d);
  return r;
}

const struct image_driver vdi_driver = {
  .name = "vdi",
  .backing_word = "parent",
  .probe = vdi_probe,
  .open = vdi_open,
  .create = vdi_create,
  .pread = vdi_pread,
  .pwrite = vdi_pwrite,
  .zero = vdi_zero,
  .extents = vdi_extents,
  .flush = vdi_flush,
  .close = vdi_close,
  .describe = vdi_describe,
  .check = vdi_check,
};
