/* vdi driver: the on-disk layout of VirtualBox's Virtual Disk Image and
 * the private state shared by vdi.c (probe, open, read, extents,
 * describe) and vdi-write.c (create, writes, and what is written at flush
 * and close).  Private to these two files.
 *
 * Every integer on disk is little-endian.  A file starts with 64 bytes of
 * text for the eyes, a signature and a version, then the header; the
 * block map (one 32-bit entry per block of the disk: the index of the
 * block in the data area, or FREE or ZERO) lies at offBlocks, and block N
 * of the data area at offData + N * (cbBlockExtra + cbBlock), its data
 * after cbBlockExtra bytes of extra information.
 */
#ifndef FERRY_VDI_INTERNAL_H
#define FERRY_VDI_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "hostfile.h"

#define VDI_TEXT_SIZE 64
#define VDI_SIGNATURE 0xbeda107fu
#define VDI_VERSION_1_1 0x00010001u
#define VDI_HEADER_START 72            /* after text, signature, version */
#define VDI_PREFIX_SIZE 512            /* everything up to the block map */

/* Version 1.1 header, at offsets from the start of the file. */
#define VDI1_HEADER_SIZE 72
#define VDI1_TYPE 76
#define VDI1_FLAGS 80
#define VDI1_COMMENT 84
#define VDI1_OFF_BLOCKS 340
#define VDI1_OFF_DATA 344
/* Geometries: cylinders, heads, sectors per track, bytes per sector. */
#define VDI1_LEGACY_GEOMETRY 348
#define VDI1_DISK_SIZE 368
#define VDI1_BLOCK_SIZE 376
#define VDI1_BLOCK_EXTRA 380
#define VDI1_BLOCKS 384
#define VDI1_BLOCKS_ALLOCATED 388
#define VDI1_UUID_CREATE 392
#define VDI1_UUID_MODIFY 408
#define VDI1_UUID_LINKAGE 424
#define VDI1_UUID_PARENT_MODIFY 440
#define VDI1_LCHS_GEOMETRY 456
#define VDI1_MIN_HEADER_SIZE 384       /* up to uuidParentModify */
#define VDI1_FULL_HEADER_SIZE 400      /* with the LCHS geometry */

/* Version 0 header (VirtualBox 1.x): no header size, no offsets; the
 * block map follows the header and the data follows the map. */
#define VDI0_TYPE 72
#define VDI0_FLAGS 76
#define VDI0_COMMENT 80
#define VDI0_DISK_SIZE 352
#define VDI0_BLOCK_SIZE 360
#define VDI0_BLOCKS 364
#define VDI0_BLOCKS_ALLOCATED 368
#define VDI0_UUID_CREATE 372
#define VDI0_UUID_MODIFY 388
#define VDI0_UUID_LINKAGE 404
#define VDI0_END 420

#define VDI_COMMENT_SIZE 256

/* Block map entries. */
#define VDI_BLOCK_FREE 0xffffffffu     /* not here: the parent, or zeroes */
#define VDI_BLOCK_ZERO 0xfffffffeu     /* discarded: reads as zeroes */

#define VDI_DEFAULT_BLOCK_SIZE (1u << 20)
#define VDI_MIN_BLOCK_SIZE 512u
#define VDI_MAX_BLOCK_SIZE (256u << 20)
/* The data area and block map are aligned to this, as VirtualBox does. */
#define VDI_DATA_ALIGN (1u << 20)

enum vdi_type {
  VDI_TYPE_NORMAL = 1,         /* dynamic */
  VDI_TYPE_FIXED = 2,          /* static */
  VDI_TYPE_UNDO = 3,
  VDI_TYPE_DIFF = 4,
};

struct vdi_image {
  struct ferry_image base;     /* must be first */
  int fd;
  uint64_t file_size;
  uint8_t prefix[VDI_PREFIX_SIZE]; /* text, signature, version, header */
  uint32_t version;
  enum vdi_type type;
  uint32_t header_size;        /* version 1: cbHeader */
  uint64_t off_blocks, off_data;
  uint32_t block_size;
  unsigned block_bits;
  uint32_t block_extra;
  uint64_t stride;             /* block_extra + block_size */
  uint32_t nr_blocks;          /* as recorded */
  uint32_t nr_entries;         /* the entries the disk uses */
  uint32_t nr_allocated;       /* as recorded */
  uint32_t *map;               /* nr_entries, host byte order; changed
                                  only with __atomic stores in write mode */
  /* Where the ids lie in prefix (they move with the version). */
  size_t uuid_create, uuid_modify, uuid_linkage, uuid_parent_modify;

  /* Differencing and undo images. */
  char *parent_path;           /* the parent, as opened */

  struct hostfile_caps caps;

  /* Write mode only. */
  pthread_mutex_t lock;        /* next_index, the map's dirty range */
  uint32_t next_index;         /* the next block of the data area */
  bool meta_dirty;
  uint32_t dirty_lo, dirty_hi; /* map entries [lo, hi) to write */
  uint8_t *untouched;          /* a new static image: a bit per data-area
                                  block not yet written, or NULL */
};

/* vdi.c */
/* Make D for FD (owned from here, closed on failure), its base set up and
 * file_size known.  NULL with the error set. */
struct vdi_image *vdi_alloc (const char *path, int fd, bool writable);
void vdi_free (struct vdi_image *d);
void vdi_format_uuid (const uint8_t *u, char out[37]);

/* vdi-write.c */
struct ferry_image *vdi_create (const char *path, int fd, uint64_t size,
                                struct option_list *opts);
int vdi_open_for_write (struct vdi_image *d);
int vdi_pwrite (struct ferry_image *img, const void *buf, size_t count,
                uint64_t offset);
int vdi_zero (struct ferry_image *img, size_t count, uint64_t offset,
              unsigned flags);
int vdi_flush (struct ferry_image *img);
int vdi_finish (struct vdi_image *d, bool sync);

/* The map entry of block B (FREE past the map). */
static inline uint32_t
vdi_map_get (struct vdi_image *d, uint64_t b)
{
  if (b >= d->nr_entries)
    return VDI_BLOCK_FREE;
  return __atomic_load_n (&d->map[b], __ATOMIC_ACQUIRE);
}

/* The host offset of the data of data-area block INDEX. */
static inline uint64_t
vdi_block_host (const struct vdi_image *d, uint32_t index)
{
  return d->off_data + (uint64_t) index * d->stride + d->block_extra;
}

#endif /* FERRY_VDI_INTERNAL_H */
