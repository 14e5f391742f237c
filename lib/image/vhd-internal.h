/* vhd driver: the on-disk layout of Microsoft's Virtual Hard Disk format
 * (Virtual Hard Disk Image Format Specification 1.0, 2006) and the
 * private state shared by vhd.c (probe, open, read, extents, describe)
 * and vhd-write.c (create, writes, and what is written at flush and
 * close).  Private to these two files.
 *
 * Every integer on disk is big-endian.  A fixed disk is the guest's bytes
 * followed by a 512-byte footer; a dynamic or differencing disk is a copy
 * of the footer, a 1024-byte dynamic header, the block allocation table
 * (BAT: one 32-bit sector number per block, 0xffffffff for none), blocks
 * (a sector bitmap padded to 512 bytes, then the block's data) and the
 * footer again at the very end.
 */
#ifndef FERRY_VHD_INTERNAL_H
#define FERRY_VHD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "hostfile.h"

#define VHD_SECTOR 512u
#define VHD_FOOTER_SIZE 512u
#define VHD_HEADER_SIZE 1024u

/* The footer. */
#define VHD_COOKIE "conectix"
#define VHD_F_FEATURES 8
#define VHD_F_VERSION 12
#define VHD_F_DATA_OFFSET 16
#define VHD_F_TIMESTAMP 24
#define VHD_F_CREATOR_APP 28
#define VHD_F_CREATOR_VERSION 32
#define VHD_F_CREATOR_OS 36
#define VHD_F_ORIGINAL_SIZE 40
#define VHD_F_CURRENT_SIZE 48
#define VHD_F_GEOMETRY 56
#define VHD_F_DISK_TYPE 60
#define VHD_F_CHECKSUM 64
#define VHD_F_UUID 68
#define VHD_F_SAVED_STATE 84

/* The dynamic disk header. */
#define VHD_HEADER_COOKIE "cxsparse"
#define VHD_H_DATA_OFFSET 8
#define VHD_H_TABLE_OFFSET 16
#define VHD_H_VERSION 24
#define VHD_H_MAX_ENTRIES 28
#define VHD_H_BLOCK_SIZE 32
#define VHD_H_CHECKSUM 36
#define VHD_H_PARENT_UUID 40
#define VHD_H_PARENT_TIMESTAMP 56
#define VHD_H_PARENT_NAME 64          /* 512 bytes of UTF-16BE */
#define VHD_H_PARENT_NAME_SIZE 512
#define VHD_H_LOCATORS 576            /* 8 entries of 24 bytes */
#define VHD_NR_LOCATORS 8
#define VHD_LOCATOR_SIZE 24

#define VHD_VERSION 0x00010000u
#define VHD_FEATURES_RESERVED 0x2u    /* must always be set */
#define VHD_BAT_UNUSED 0xffffffffu
#define VHD_DEFAULT_BLOCK_SIZE (2u << 20)
#define VHD_MIN_BLOCK_SIZE 512u
#define VHD_MAX_BLOCK_SIZE (256u << 20)
/* The largest disk the format holds, as Microsoft states it. */
#define VHD_MAX_SIZE (2040ull << 30)
/* The largest CHS geometry: cylinders, heads, sectors per track. */
#define VHD_MAX_CYLINDERS 65535u
#define VHD_MAX_HEADS 16u
#define VHD_MAX_SPT 255u
/* Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC, the epoch of
 * VHD time stamps. */
#define VHD_EPOCH 946684800u
/* A parent locator holds a path; more than this is not a path. */
#define VHD_MAX_LOCATOR_BYTES 65536u

enum vhd_type {
  VHD_TYPE_FIXED = 2,
  VHD_TYPE_DYNAMIC = 3,
  VHD_TYPE_DIFF = 4,
};

struct vhd_image {
  struct ferry_image base;     /* must be first */
  int fd;
  uint64_t file_size;          /* when opened, or as written so far */
  enum vhd_type type;
  uint8_t footer[VHD_FOOTER_SIZE]; /* the footer in use, as on disk */
  uint64_t current_size;       /* the footer's current size field */
  bool size_from_geometry;     /* the virtual size is C*H*S*512 */
  char size_reason[160];       /* why, for ferry info */
  char footer_where[64];       /* which copies of the footer were found */
  bool has_tail_footer;        /* a footer ends the file */
  bool footer_checksum_bad;
  bool header_checksum_bad;

  /* Dynamic and differencing disks. */
  uint8_t header[VHD_HEADER_SIZE];
  uint64_t header_offset;
  uint64_t bat_offset;
  uint32_t max_entries;        /* as recorded */
  uint32_t nr_entries;         /* the entries the disk uses */
  uint32_t block_size;
  unsigned block_bits;
  uint32_t bitmap_size;        /* bytes of a block's sector bitmap */
  uint32_t *bat;               /* nr_entries, host byte order; changed
                                  only with __atomic stores in write mode */

  /* Differencing disks. */
  char *parent_name;           /* the header's parent name, UTF-8 */
  char *parent_path;           /* where it was found, as opened; or where
                                  the child expects it, when missing */
  const char *parent_locator;  /* the locator that found it */
  char *locators[VHD_NR_LOCATORS]; /* each locator's path as recorded
                                  (UTF-8), or NULL, for describe */

  struct hostfile_caps caps;

  /* Write mode only. */
  pthread_mutex_t lock;        /* alloc_end, the BAT's dirty range */
  uint64_t alloc_end;          /* where the next block goes */
  bool tail_stale;             /* the file goes on past alloc_end (the
                                  trailing footer): cut it before the
                                  next new block */
  bool meta_dirty;             /* BAT or trailing footer to write */
  uint32_t dirty_lo, dirty_hi; /* BAT entries [lo, hi) to write */
  uint8_t *ones;               /* bitmap_size bytes of 0xff */
};

/* vhd.c */
uint32_t vhd_checksum (const uint8_t *buf, size_t len, size_t field);
/* Make V for FD (owned from here, closed on failure), its base set up and
 * file_size known.  NULL with the error set. */
struct vhd_image *vhd_alloc (const char *path, int fd, bool writable);
/* Make V for FD (owned from here, closed on failure) and read and check
 * its footer, header and BAT, but not its parent; *FOOTER_OFF says where
 * the footer in use lies.  NULL with the error set. */
struct vhd_image *vhd_load (const char *path, int fd, bool writable,
                            uint64_t *footer_off /* OUT */);
void vhd_free (struct vhd_image *v);
int vhd_read_range (struct vhd_image *v, void *buf, uint64_t count,
                    uint64_t offset);

/* vhd-check.c */
int vhd_check (const char *path, int fd, struct ferry_check_result *result);

/* vhd-write.c */
struct ferry_image *vhd_create (const char *path, int fd, uint64_t size,
                                struct option_list *opts);
int vhd_open_for_write (struct vhd_image *v);
int vhd_pwrite (struct ferry_image *img, const void *buf, size_t count,
                uint64_t offset);
int vhd_zero (struct ferry_image *img, size_t count, uint64_t offset,
              unsigned flags);
int vhd_flush (struct ferry_image *img);
int vhd_finish (struct vhd_image *v, bool sync);

/* The block of guest OFFSET, and the BAT entry for it (unused past the
 * table). */
static inline uint32_t
vhd_bat_get (struct vhd_image *v, uint64_t block)
{
  if (block >= v->nr_entries)
    return VHD_BAT_UNUSED;
  return __atomic_load_n (&v->bat[block], __ATOMIC_ACQUIRE);
}

#endif /* FERRY_VHD_INTERNAL_H */
