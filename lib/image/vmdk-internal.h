/* vmdk driver: the on-disk constants and the private state shared by
 *   vmdk.c             open (descriptor files, embedded descriptors,
 *                      parents), read, extents, describe, close;
 *   vmdk-descriptor.c  the text descriptor: parse and format;
 *   vmdk-sparse.c      hosted sparse extents (monolithicSparse, the s001
 *                      files, streamOptimized) and the grain map every
 *                      sparse kind shares;
 *   vmdk-esx.c         ESX snapshot extents: COWD (vmfsSparse) and seSparse;
 *   vmdk-write.c       create, writes to sparse and flat extents, and what
 *                      close completes;
 *   vmdk-stream.c      writing streamOptimized, and compressing grains;
 *   vmdk-files.c       moving and removing the files of an image made;
 *   vmdk-check.c       ferry check.
 * Private to these files.
 *
 * Layouts: VMware's "Virtual Disk Format 5.0" technote (hosted sparse
 * extents, stream-optimized markers, the COWD header of ESX sparse
 * extents).  seSparse is not published by VMware; its header fields and
 * table encodings are those that qemu's reader documents.
 */
#ifndef FERRY_VMDK_INTERNAL_H
#define FERRY_VMDK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "../common/pool.h"
#include "../common/util.h"
#include "../common/vector.h"

#define VMDK_SECTOR 512u

/* Text descriptors (files, and the embedded ones) are read whole; a
 * larger "descriptor" is not one. */
#define VMDK_MAX_DESCRIPTOR (1u << 20)

/* The largest grain we accept, in sectors (qemu's limit: 1 GiB), and the
 * largest compressed grain, whose inflated copy is held in memory per
 * reader. */
#define VMDK_MAX_GRAIN_SECTORS (1u << 21)
#define VMDK_MAX_COMPRESSED_GRAIN (16u << 20)

/* What ferry writes: 64 KiB grains, 512 entries per grain table. */
#define VMDK_GRAIN_SECTORS 128u
#define VMDK_GTES_PER_GT 512u

/* The largest virtual size: sectors fit in 63 bits of bytes. */
#define VMDK_MAX_SIZE (UINT64_C (1) << 62)

/* --- hosted sparse extent header (512 bytes, little-endian) ------------ */
#define VMDK4_MAGIC 0x564d444bu          /* "KDMV" read as LE u32 */
#define VMDK_HDR_VERSION        4
#define VMDK_HDR_FLAGS          8
#define VMDK_HDR_CAPACITY      12
#define VMDK_HDR_GRAIN         20
#define VMDK_HDR_DESC_OFFSET   28
#define VMDK_HDR_DESC_SIZE     36
#define VMDK_HDR_NUM_GTES      44
#define VMDK_HDR_RGD_OFFSET    48
#define VMDK_HDR_GD_OFFSET     56
#define VMDK_HDR_OVERHEAD      64
#define VMDK_HDR_UNCLEAN       72
#define VMDK_HDR_NL_CHARS      73        /* '\n', ' ', '\r', '\n' */
#define VMDK_HDR_COMPRESS      77

#define VMDK_FLAG_NL_DETECT    (1u << 0)
#define VMDK_FLAG_RGD          (1u << 1)
#define VMDK_FLAG_ZERO_GRAIN   (1u << 2)
#define VMDK_FLAG_COMPRESSED   (1u << 16)
#define VMDK_FLAG_MARKERS      (1u << 17)
#define VMDK_GD_AT_END         UINT64_MAX
#define VMDK_COMPRESS_DEFLATE  1
#define VMDK_GTE_ZEROED        1u        /* with VMDK_FLAG_ZERO_GRAIN */

/* Stream-optimized markers: a grain marker is (u64 lba, u32 size, data);
 * a metadata marker is (u64 sectors, u32 0, u32 type, padding) in one
 * sector, followed by SECTORS sectors of what it announces. */
#define VMDK_MARKER_EOS        0
#define VMDK_MARKER_GT         1
#define VMDK_MARKER_GD         2
#define VMDK_MARKER_FOOTER     3
#define VMDK_GRAIN_MARKER_SIZE 12

/* --- ESX sparse extents ------------------------------------------------ */
#define VMDK_COWD_MAGIC 0x44574f43u      /* "COWD" read as LE u32 */
#define VMDK_COWD_HEADER_SIZE 2048
#define VMDK_COWD_GT_ENTRIES 4096
#define VMDK_SE_CONST_MAGIC UINT64_C (0xcafebabe)
#define VMDK_SE_VOLATILE_MAGIC UINT64_C (0xcafecafe)
#define VMDK_SE_VERSION UINT64_C (0x0000000200000001)

struct vmdk_sparse_header {
  uint32_t version;
  uint32_t flags;
  uint64_t capacity;           /* sectors */
  uint64_t grain;              /* sectors */
  uint64_t desc_offset;        /* sectors, 0: none */
  uint64_t desc_size;          /* sectors */
  uint32_t gtes_per_gt;
  uint64_t rgd_offset;         /* sectors */
  uint64_t gd_offset;          /* sectors, or VMDK_GD_AT_END */
  uint64_t overhead;           /* sectors before the first grain */
  bool unclean;
  uint16_t compress;
};

/* --- the descriptor --------------------------------------------------- */
enum vmdk_access { VMDK_RW, VMDK_RDONLY, VMDK_NOACCESS };

enum vmdk_extent_type {
  VMDK_EXTENT_FLAT,
  VMDK_EXTENT_SPARSE,
  VMDK_EXTENT_ZERO,
  VMDK_EXTENT_VMFS,
  VMDK_EXTENT_VMFSSPARSE,
  VMDK_EXTENT_SESPARSE,
  VMDK_EXTENT_VMFSRDM,
  VMDK_EXTENT_VMFSRAW,
};

/* One extent line: ACCESS SECTORS TYPE ["FILE" [OFFSET]]. */
struct vmdk_extent_line {
  enum vmdk_access access;
  uint64_t sectors;
  enum vmdk_extent_type type;
  char *file;                  /* NULL for ZERO */
  uint64_t offset;             /* sectors into FILE (flat types) */
  bool has_offset;
};

struct vmdk_ddb_entry {
  char *key;                   /* "ddb.adapterType" */
  char *value;                 /* unquoted */
};

DEFINE_VECTOR_TYPE (vmdk_line_list, struct vmdk_extent_line);
DEFINE_VECTOR_TYPE (vmdk_ddb_list, struct vmdk_ddb_entry);

struct vmdk_descriptor {
  unsigned version;
  uint32_t cid, parent_cid;
  bool has_cid, has_parent_cid;
  char *create_type;           /* or NULL */
  char *parent_hint;           /* parentFileNameHint, or NULL */
  char *encoding;              /* or NULL */
  bool encrypted;              /* encryption.* keys: VMware encrypted it */
  vmdk_line_list extents;
  vmdk_ddb_list ddb;
};

#define VMDK_NO_PARENT 0xffffffffu

/* --- the grain map of a sparse extent ---------------------------------- */
enum vmdk_sparse_kind {
  VMDK_SPARSE_HOSTED,          /* KDMV: monolithicSparse, s001, stream */
  VMDK_SPARSE_COWD,            /* ESX vmfsSparse (COWD) */
  VMDK_SPARSE_SE,              /* ESX seSparse */
};

enum vmdk_run_kind {
  VMDK_RUN_UNALLOC,            /* reads from the parent, or zeroes */
  VMDK_RUN_ZERO,               /* a zeroed grain: zeroes, never the parent */
  VMDK_RUN_DATA,               /* at HOST in the extent file, contiguous */
  VMDK_RUN_COMPRESSED,         /* one compressed grain at HOST */
};

/* How a range of an extent is stored, from the offset asked. */
struct vmdk_run {
  enum vmdk_run_kind kind;
  uint64_t length;             /* bytes */
  uint64_t host;               /* DATA: file offset of the first byte;
                                  COMPRESSED: file offset of the grain */
};

struct vmdk_stream_writer;

struct vmdk_sparse {
  enum vmdk_sparse_kind kind;
  const char *path;            /* the extent file, for messages (not owned) */
  int fd;                      /* owned, unless shared_fd */
  uint64_t start;              /* where the extent begins in the file: 0,
                                  or a window's start (a disk inside an
                                  OVA, ferry_image_open_window) */
  bool shared_fd;              /* fd is the image's own (embedded) */
  uint64_t file_size;          /* read-only: data must start below it */
  struct vmdk_sparse_header h; /* KDMV: as found (the footer's for streams) */
  uint64_t capacity;           /* bytes the extent maps */
  uint32_t grain_size;         /* bytes, a power of two */
  unsigned grain_bits;
  uint32_t gt_entries;         /* entries per grain table */
  uint64_t gt_span;            /* guest bytes one table maps */
  uint32_t nr_gts;             /* grain directory entries */
  uint64_t *gd;                /* file offset of each table; 0: none */
  void **gts;                  /* loaded tables (uint32_t or, SE, uint64_t
                                  entries, host order), read and set with
                                  atomics; NULL: not loaded yet */
  bool compressed;             /* grains are deflated (zlib streams) */
  bool markers;                /* grains start with a grain marker */
  bool zero_grains;            /* GTE 1 means a zeroed grain */
  uint64_t se_tables;          /* SE: file offset of the grain tables */
  uint64_t se_grains;          /* SE: file offset of the grain area */
  uint64_t table_bytes_held;   /* atomic: bytes of tables in gts */
  struct pool inflaters;       /* struct vmdk_inflater, for compressed reads */

  /* Writing (vmdk-write.c); the image's lock guards them. */
  bool writable;
  bool is_new;                 /* made by create: the header comes last */
  uint64_t alloc_end;          /* next free byte, grain aligned */
  uint64_t *rgd;               /* redundant directory, or NULL */
  uint8_t *gt_dirty;           /* per table: write it at flush */
  bool header_dirty;
  struct vmdk_stream_writer *stream;
};

/* --- the image -------------------------------------------------------- */
struct vmdk_extent {
  enum vmdk_extent_type type;
  enum vmdk_access access;
  uint64_t start, length;      /* guest bytes */
  char *file;                  /* as the descriptor names it, or NULL */
  char *path;                  /* resolved against the descriptor's folder */
  uint64_t flat_offset;        /* bytes into the file (flat types) */
  struct ferry_image *raw;     /* flat types: the file as a raw image */
  struct vmdk_sparse *sparse;  /* sparse types */
  bool created;                /* create made this file (removed on failure) */
};

struct vmdk_image {
  struct ferry_image base;     /* must be first */
  int fd;                      /* the file opened: descriptor or sparse */
  bool windowed;               /* a window of FD (ferry_image_open_window) */
  uint64_t start, window_length;
  bool embedded;               /* the descriptor sits inside a sparse file */
  struct vmdk_descriptor desc;
  char *create_type;
  struct vmdk_extent *extents;
  size_t nr_extents;
  struct pool deflaters;       /* write: libdeflate compressors */
  pthread_mutex_t lock;        /* write: allocation and tables */
  bool written;                /* write: something changed since open */
  bool stream_out;             /* write: a streamOptimized target */
  bool created;                /* made by create, not opened */
  unsigned shared;             /* FERRY_OPEN_SHARED or 0: extents are
                                * opened (and locked) so too */
};

/* vmdk-descriptor.c */
int vmdk_descriptor_parse (const char *path, const char *text, size_t len,
                           struct vmdk_descriptor *d /* OUT */);
void vmdk_descriptor_free (struct vmdk_descriptor *d);
const char *vmdk_ddb_get (const struct vmdk_descriptor *d, const char *key);
char *vmdk_descriptor_format (const struct vmdk_descriptor *d);
const char *vmdk_extent_type_name (enum vmdk_extent_type type);
const char *vmdk_access_name (enum vmdk_access access);
bool vmdk_looks_like_descriptor (const uint8_t *buf, size_t len);
/* 0 when the file name NAME can stand between the double quotes of a
 * descriptor line (the format has no escapes: no '"', no control
 * character); else -1 with a message naming PATH. */
int vmdk_check_descriptor_name (const char *path, const char *name);

/* Read COUNT bytes at OFFSET of the extent S (moved by its start in the
 * file).  0, or -1 with errno set, as full_pread. */
static inline int
vmdk_sparse_pread (const struct vmdk_sparse *s, void *buf, size_t count,
                   uint64_t offset)
{
  return full_pread (s->fd, buf, count, s->start + offset);
}

/* vmdk-sparse.c */
void vmdk_header_decode (const uint8_t *buf, struct vmdk_sparse_header *h);
void vmdk_header_encode (const struct vmdk_sparse_header *h, uint8_t *buf);
struct vmdk_sparse *vmdk_sparse_alloc (enum vmdk_sparse_kind kind,
                                       const char *path, int fd,
                                       bool shared_fd);
int vmdk_sparse_open_hosted (struct vmdk_sparse *s, uint64_t file_size,
                             char **desc_text /* OUT, may be NULL */,
                             size_t *desc_len /* OUT */);
/* The descriptor embedded in the hosted sparse extent S (FILE_SIZE bytes)
 * whose header is H: *DESC_TEXT, NUL-terminated, which the caller frees,
 * and *DESC_LEN, or NULL when H gives none. */
int vmdk_sparse_read_embedded (struct vmdk_sparse *s,
                               const struct vmdk_sparse_header *h,
                               uint64_t file_size,
                               char **desc_text /* OUT */,
                               size_t *desc_len /* OUT */);
int vmdk_sparse_setup_map (struct vmdk_sparse *s, uint64_t gd_bytes_entry);
int vmdk_sparse_map (struct vmdk_sparse *s, uint64_t offset,
                     uint64_t max_len, struct vmdk_run *run /* OUT */);
int vmdk_sparse_read_grain (struct vmdk_sparse *s, uint64_t host,
                            uint64_t grain_offset, void *buf, size_t count,
                            size_t skip);
void *vmdk_sparse_get_table (struct vmdk_sparse *s, uint32_t index);
void *vmdk_sparse_read_table (struct vmdk_sparse *s, uint32_t index);
int vmdk_sparse_classify (struct vmdk_sparse *s, const void *t, uint32_t ti,
                          uint32_t idx, enum vmdk_run_kind *kind,
                          uint64_t *host /* OUT */);
void vmdk_sparse_free (struct vmdk_sparse *s);

/* vmdk-esx.c */
int vmdk_cowd_open (struct vmdk_sparse *s, uint64_t file_size);
int vmdk_se_open (struct vmdk_sparse *s, uint64_t file_size);

/* vmdk.c */
struct vmdk_image *vmdk_image_new (const char *path, int fd, bool readonly);
/* Free V and what only close would free otherwise (the parent, the
 * path): for opens and creates that fail half way. */
void vmdk_image_discard (struct vmdk_image *v);
void vmdk_image_free (struct vmdk_image *v);
/* Fill V's extents from its descriptor's lines (type, access, place in
 * the disk, names) and set the disk's size; names are resolved against
 * the descriptor's folder, or are the image itself when SELF. */
int vmdk_layout_extents (struct vmdk_image *v, bool self);
int vmdk_pread (struct ferry_image *img, void *buf, size_t count,
                uint64_t offset);
/* The extent that holds disk offset OFFSET (< the disk's size). */
struct vmdk_extent *vmdk_find_extent (struct vmdk_image *v, uint64_t offset);

/* vmdk-stream.c */
int vmdk_stream_init (struct vmdk_image *v, struct vmdk_sparse *s,
                      uint64_t capacity);
int vmdk_stream_finish (struct vmdk_sparse *s);
int vmdk_stream_pwrite (struct vmdk_image *v, const uint8_t *buf,
                        size_t count, uint64_t offset);
int vmdk_stream_zero (struct vmdk_image *v, uint64_t offset);
void vmdk_stream_free (struct vmdk_stream_writer *w);
uint32_t vmdk_compress_unit (struct ferry_image *img);
size_t vmdk_compress_bound (struct ferry_image *img);
ssize_t vmdk_compress (struct ferry_image *img, const void *in, size_t count,
                       void *out);
int vmdk_write_compressed (struct ferry_image *img, uint64_t offset,
                           const void *data, size_t len, size_t count);
void vmdk_write_free (struct vmdk_image *v);

/* vmdk-stream-read.c: the open_stream of the driver (a streamOptimized
 * VMDK read from a gzip stream, in order). */
struct ferry_image *vmdk_open_stream (const char *path,
                                      struct image_stream *s,
                                      uint64_t size_hint,
                                      const struct open_args *args);

/* vmdk-files.c */
int vmdk_split_name (const char *path, char **prefix, char **postfix);
int vmdk_rename (const char *from, const char *to, bool sync);
int vmdk_remove (const char *path);

/* vmdk-check.c */
int vmdk_check (const char *path, int fd, struct ferry_check_result *result);

/* vmdk-write.c */
struct ferry_image *vmdk_create (const char *path, int fd, uint64_t size,
                                 struct option_list *opts);
int vmdk_open_for_write (struct vmdk_image *v);
int vmdk_pwrite (struct ferry_image *img, const void *buf, size_t count,
                 uint64_t offset);
int vmdk_zero (struct ferry_image *img, size_t count, uint64_t offset,
               unsigned flags);
int vmdk_flush (struct ferry_image *img);
int vmdk_finish (struct vmdk_image *v);
int vmdk_sparse_write_header (struct vmdk_sparse *s);

extern const struct image_driver vmdk_driver;

#endif /* FERRY_VMDK_INTERNAL_H */
