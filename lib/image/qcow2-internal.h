/* qcow2 driver: the private state shared by qcow2.c (open, read,
 * extents, describe, close) and qcow2-write.c (create, writes, the
 * metadata written at flush and close).  Private to these two files.
 */
#ifndef FERRY_QCOW2_INTERNAL_H
#define FERRY_QCOW2_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "qcow2-format.h"
#include "../common/pool.h"

/* How much memory the L2 cache of a read-only image may hold (tests
 * build with a tiny one to exercise eviction). */
#ifndef QCOW2_L2_CACHE_BYTES
#define QCOW2_L2_CACHE_BYTES (32u << 20)
#endif

/* The most memory the map of claimed host clusters may take; past it,
 * clusters claimed twice are no longer noticed. */
#define QCOW2_CLAIMS_MAX_BYTES (64u << 20)
#define QCOW2_CLAIMS_CHUNK_BITS 16           /* clusters per chunk: 2^16 */

/* The longest a single extents call walks, in L2 tables' worth of guest
 * space, and the most runs it reports; the caller asks again. */
#define QCOW2_EXTENTS_MAX_TABLES 16
#define QCOW2_EXTENTS_MAX_RUNS 4096

/* One L2 table in memory, its entries in host byte order: l2_entries
 * words, or two words per entry with extended L2 (descriptor, then the
 * subcluster bitmap). */
struct qcow2_l2_slot {
  uint32_t l1_index;
  bool referenced;             /* clock bit of the read-only cache */
  bool dirty;                  /* write mode: to be written at flush */
  uint64_t host;               /* where it is in the file; 0: not yet placed */
  uint64_t *entries;
};

struct qcow2_image {
  struct ferry_image base;     /* must be first */
  struct qcow2_header h;       /* owns the backing and data file names */
  int fd;                      /* the qcow2 file */
  int data_fd;                 /* the external data file, or fd */
  uint64_t start;              /* where the image begins in fd: 0, or a
                                  window's start (read-only) */
  bool has_data_file;
  bool data_raw;               /* raw external data file bit */
  uint64_t file_size;          /* of the qcow2 file when opened */
  uint64_t data_size;          /* of the data file when opened */
  uint32_t l2_bits;            /* log2 of h.l2_entries */
  uint32_t unit_bits;          /* log2 of the allocation unit: the
                                  subcluster with extended L2 */
  uint64_t *l1;                /* h.l1_size entries, host byte order */

  /* The L2 tables in memory and everything else that changes after
   * open.  Readers hold it while they look at a table, never during
   * data I/O. */
  pthread_mutex_t lock;
  struct {
    struct qcow2_l2_slot *ptr;
    size_t len, cap;
  } slots;
  size_t max_slots, clock_hand;
  int32_t *slot_of;            /* per L1 index: slot number, or -1 */

  /* Who uses each host cluster of the file (2 bits per cluster, in
   * chunks made on first use), so that a cluster claimed twice in the
   * active layer is refused when the second claim is read. */
  uint8_t **claims;
  size_t nr_claim_chunks, claims_bytes;
  uint8_t *validated;          /* per L1 index: its table was checked */

  struct pool dpool;           /* decompressors */
  struct pool cpool;           /* compressors */

  /* For describe: freed at the next describe and at close. */
  struct ferry_snapshot *snapshots;
  size_t nr_snapshots;

  /* Write mode only (base.readonly false). */
  bool is_new;                 /* made by create: write the whole header */
  bool meta_dirty;             /* something changed since the last flush */
  bool l1_dirty;
  uint64_t alloc_end;          /* next free host cluster, cluster aligned */
  uint64_t comp_pos;           /* where the last compressed data ended */
  uint64_t comp_refs;          /* compressed clusters touching its cluster */
  uint64_t refcount_max;       /* the largest refcount the width holds */
  int deflate_level;
  int zstd_level;
};

/* How a run of guest bytes is stored. */
enum qcow2_kind {
  QCOW2_RUN_DATA,              /* at host, contiguous */
  QCOW2_RUN_ZERO,              /* reads as zeroes */
  QCOW2_RUN_UNALLOC,           /* reads from the backing file, or zeroes */
  QCOW2_RUN_COMPRESSED,        /* one compressed cluster; host is the L2 entry */
};

struct qcow2_run {
  enum qcow2_kind kind;
  uint64_t length;             /* guest bytes from the offset asked */
  uint64_t host;               /* DATA: host offset of the first byte;
                                  COMPRESSED: the L2 entry */
  bool preallocated;           /* ZERO: a host cluster is still attached */
  uint64_t bound;              /* the end of the file, taken under the lock */
  uint32_t l1_index, l2_index; /* for messages */
};

/* qcow2.c */
struct qcow2_image *qcow2_alloc (int fd);
struct ferry_image *qcow2_setup (struct qcow2_image *q);
int qcow2_map (struct qcow2_image *q, uint64_t offset, uint64_t max_len,
               struct qcow2_run *run /* OUT */);
int qcow2_read_range (struct qcow2_image *q, void *buf, uint64_t count,
                      uint64_t offset);
int qcow2_get_slot (struct qcow2_image *q, uint32_t l1_index, bool create);
int qcow2_validate_all_tables (struct qcow2_image *q);
void qcow2_free (struct qcow2_image *q);

/* qcow2-write.c */
struct ferry_image *qcow2_create (const char *path, int fd, uint64_t size,
                                  struct option_list *opts);
int qcow2_open_for_write (struct qcow2_image *q);
int qcow2_pwrite (struct ferry_image *img, const void *buf, size_t count,
                  uint64_t offset);
int qcow2_zero (struct ferry_image *img, size_t count, uint64_t offset,
                unsigned flags);
uint32_t qcow2_compress_unit (struct ferry_image *img);
size_t qcow2_compress_bound (struct ferry_image *img);
ssize_t qcow2_compress (struct ferry_image *img, const void *in, size_t count,
                        void *out);
int qcow2_write_compressed (struct ferry_image *img, uint64_t offset,
                            const void *data, size_t len, size_t count);
int qcow2_flush (struct ferry_image *img);
int qcow2_finish (struct qcow2_image *q);
void qcow2_free_compressors (struct qcow2_image *q);

/* Words per L2 entry: 2 with extended L2. */
static inline unsigned
qcow2_entry_words (const struct qcow2_image *q)
{
  return q->h.extended_l2 ? 2 : 1;
}

/* Bytes of guest space one L2 table maps. */
static inline uint64_t
qcow2_table_span (const struct qcow2_image *q)
{
  return 1ull << (q->h.cluster_bits + q->l2_bits);
}

#endif /* FERRY_QCOW2_INTERNAL_H */
