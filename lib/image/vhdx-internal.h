/* vhdx driver: the private state shared by vhdx.c (open, read, extents,
 * describe), vhdx-log.c (finding and replaying the log), vhdx-write.c
 * (create, writes, flush) and vhdx-check.c.  Private to these files.
 */
#ifndef FERRY_VHDX_INTERNAL_H
#define FERRY_VHDX_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hostfile.h"
#include "internal.h"
#include "vhdx-format.h"

/* A header in host byte order. */
struct vhdx_header {
  uint64_t sequence;
  uint8_t file_write_guid[16];
  uint8_t data_write_guid[16];
  uint8_t log_guid[16];
  uint16_t log_version;
  uint16_t version;
  uint32_t log_length;
  uint64_t log_offset;
};

/* One step of a log replay: FILE_OFFSET gets LENGTH bytes of zeroes
 * (ZERO) or the 4 KiB data sector stored in the log at LOG_POS, with its
 * first 8 and last 4 bytes taken from the descriptor. */
struct vhdx_log_op {
  bool zero;
  uint64_t file_offset;
  uint64_t length;
  uint64_t log_pos;             /* data: file offset of the data sector */
  uint8_t leading[VHDX_LOG_DATA_LEADING];
  uint8_t trailing[VHDX_LOG_DATA_TRAILING];
};

/* What a log replay does, for the read-only view (note 3 of vhdx.c):
 * RANGES are disjoint, sorted by start, each naming the op that wrote it
 * last. */
struct vhdx_overlay_range {
  uint64_t start, end;
  uint32_t op;
};
struct vhdx_log_replay {
  struct vhdx_log_op *ops;
  size_t nr_ops;
  struct vhdx_overlay_range *ranges;
  size_t nr_ranges;
  uint64_t data_end;            /* end of the last byte the log writes */
  uint64_t flushed_file_offset; /* of the head entry */
  uint64_t last_file_offset;    /* of the head entry */
  uint64_t head_sequence;
  size_t nr_entries;
};

struct vhdx_image {
  struct ferry_image base;      /* must be first */
  int fd;
  bool is_block;                /* the file is a block device */
  uint64_t real_size;           /* of the file when opened */
  uint64_t file_size;           /* the file as the replayed log extends it */
  uint64_t block_limit;         /* payload blocks may reach this far */

  struct vhdx_header h;         /* the current header */
  int current_header;           /* 0 or 1: which slot holds it */
  char *creator;                /* from the file identifier, UTF-8 */

  /* Regions. */
  uint64_t bat_offset;
  uint32_t bat_length;
  uint64_t meta_offset;
  uint32_t meta_length;

  /* Metadata. */
  uint32_t block_size;
  uint32_t block_bits;
  uint32_t logical_sector;
  uint32_t physical_sector;
  bool leave_allocated;         /* fixed */
  bool has_parent;              /* differencing */
  uint8_t disk_id[16];
  char *parent_path;            /* the path tried, as recorded ('/') */
  char *parent_linkage;         /* "{...}" as recorded */
  char *parent_linkage2;
  char *parent_relative;        /* the parent locator's paths, as recorded */
  char *parent_volume;          /* (Windows '\\'), or NULL */
  char *parent_absolute;

  /* The BAT, host byte order; entries are read and written atomically
   * (note 2 of vhdx.c). */
  uint64_t chunk_ratio;         /* payload blocks per sector bitmap block */
  uint64_t data_blocks;
  uint64_t bitmap_blocks;
  uint64_t bat_entries;
  uint64_t *bat;

  /* A log replayed in memory on a read-only open, or NULL. */
  struct vhdx_log_replay *replay;
  bool log_replayed;            /* a log was replayed (in memory or to disk) */

  /* Write mode only. */
  pthread_mutex_t lock;         /* allocation and the BAT */
  uint64_t alloc_end;           /* where the next new block goes */
  uint8_t *bat_dirty;           /* one bit per 4 KiB page of the BAT */
  bool meta_dirty;
  bool file_guid_updated;       /* this session's FileWriteGuid is on disk */
  bool data_guid_updated;       /* ... and its DataWriteGuid (atomic) */
  bool new_block_state_zero;    /* unwritten blocks of a new image: ZERO */
  /* What the file cannot do (hostfile.h); no_seek_data is also set
   * where the file alone does not say what a range holds (vhdx.c note
   * 5). */
  struct hostfile_caps caps;
};

/* vhdx.c */
uint32_t vhdx_crc32c (const void *buf, size_t len);
uint32_t vhdx_crc32c_update (uint32_t crc, const void *buf, size_t len);
int vhdx_read_file (struct vhdx_image *v, void *buf, size_t len,
                    uint64_t offset);
void vhdx_free (struct vhdx_image *v);
struct vhdx_image *vhdx_alloc (int fd);
int vhdx_setup_geometry (struct vhdx_image *v);
void vhdx_format_guid (const uint8_t *g, char *out /* 39 bytes */);

/* vhdx-log.c */
int vhdx_log_find (struct vhdx_image *v, struct vhdx_log_replay **out);
int vhdx_log_build_overlay (struct vhdx_image *v, struct vhdx_log_replay *r);
int vhdx_log_apply_overlay (struct vhdx_image *v, uint8_t *buf, size_t len,
                            uint64_t offset);
int vhdx_log_replay_to_disk (struct vhdx_image *v, struct vhdx_log_replay *r);
void vhdx_log_replay_free (struct vhdx_log_replay *r);

/* vhdx-write.c */
struct ferry_image *vhdx_create (const char *path, int fd, uint64_t size,
                                 struct option_list *opts);
int vhdx_open_for_write (struct vhdx_image *v);
int vhdx_pwrite (struct ferry_image *img, const void *buf, size_t count,
                 uint64_t offset);
int vhdx_zero (struct ferry_image *img, size_t count, uint64_t offset,
               unsigned flags);
int vhdx_flush (struct ferry_image *img);
int vhdx_finish (struct vhdx_image *v);
int vhdx_write_file (struct vhdx_image *v, const void *buf, size_t len,
                     uint64_t offset);
int vhdx_sync (struct vhdx_image *v);
int vhdx_zero_file_range (struct vhdx_image *v, uint64_t off, uint64_t len,
                          bool trim);
int vhdx_write_headers (struct vhdx_image *v);
int vhdx_begin_writing (struct vhdx_image *v);

/* vhdx-check.c */
int vhdx_check (const char *path, int fd, struct ferry_check_result *r);

/* The BAT index of payload block B, and of the sector bitmap block of
 * chunk C. */
static inline uint64_t
vhdx_payload_index (const struct vhdx_image *v, uint64_t b)
{
  return b + b / v->chunk_ratio;
}
static inline uint64_t
vhdx_bitmap_index (const struct vhdx_image *v, uint64_t c)
{
  return c * (v->chunk_ratio + 1) + v->chunk_ratio;
}

static inline uint64_t
vhdx_bat_get (const struct vhdx_image *v, uint64_t i)
{
  return __atomic_load_n (&v->bat[i], __ATOMIC_ACQUIRE);
}

/* The part of a request of COUNT bytes at guest OFFSET that lies in one
 * payload block: the block, the offset in it, the length, and the
 * block's BAT entry as it is now. */
struct vhdx_piece {
  uint64_t block;
  uint64_t in;
  uint64_t len;
  uint64_t entry;
};

static inline struct vhdx_piece
vhdx_piece (const struct vhdx_image *v, uint64_t offset, uint64_t count)
{
  struct vhdx_piece p;

  p.block = offset >> v->block_bits;
  p.in = offset & (v->block_size - 1);
  p.len = count < v->block_size - p.in ? count : v->block_size - p.in;
  p.entry = vhdx_bat_get (v, vhdx_payload_index (v, p.block));
  return p;
}

#endif /* FERRY_VHDX_INTERNAL_H */
