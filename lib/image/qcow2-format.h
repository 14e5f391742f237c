/* qcow2 on-disk layout (docs/interop/qcow2.txt in QEMU) and the parsed,
 * validated header that the driver (qcow2.c, qcow2-write.c) and the
 * checker (qcow2-check.c) share.  Private to lib/image.
 */
#ifndef FERRY_QCOW2_FORMAT_H
#define FERRY_QCOW2_FORMAT_H

#include <stdbool.h>
#include <stdint.h>

#define QCOW2_MAGIC 0x514649fbu            /* "QFI\xfb" */

/* Header field offsets (big-endian). */
#define QCOW2_HDR_MAGIC                    0
#define QCOW2_HDR_VERSION                  4
#define QCOW2_HDR_BACKING_FILE_OFFSET      8
#define QCOW2_HDR_BACKING_FILE_SIZE       16
#define QCOW2_HDR_CLUSTER_BITS            20
#define QCOW2_HDR_SIZE                    24
#define QCOW2_HDR_CRYPT_METHOD            32
#define QCOW2_HDR_L1_SIZE                 36
#define QCOW2_HDR_L1_TABLE_OFFSET         40
#define QCOW2_HDR_REFCOUNT_TABLE_OFFSET   48
#define QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS 56
#define QCOW2_HDR_NB_SNAPSHOTS            60
#define QCOW2_HDR_SNAPSHOTS_OFFSET        64
/* version 3 and later */
#define QCOW2_HDR_INCOMPATIBLE_FEATURES   72
#define QCOW2_HDR_COMPATIBLE_FEATURES     80
#define QCOW2_HDR_AUTOCLEAR_FEATURES      88
#define QCOW2_HDR_REFCOUNT_ORDER          96
#define QCOW2_HDR_HEADER_LENGTH          100
#define QCOW2_HDR_COMPRESSION_TYPE       104   /* if header_length > 104 */

#define QCOW2_V2_HEADER_LENGTH  72
#define QCOW2_V3_HEADER_LENGTH 104              /* without compression type */
#define QCOW2_V3_HEADER_LENGTH_COMPRESSION 112  /* padded to 8 bytes */

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY        (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN        0x1full

/* Compatible feature bits. */
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

/* Autoclear feature bits. */
#define QCOW2_AUTOCLEAR_BITMAPS     (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ull << 1)

#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

/* Header extension types. */
#define QCOW2_EXT_END              0x00000000u
#define QCOW2_EXT_BACKING_FORMAT   0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE    0x6803f857u
#define QCOW2_EXT_CRYPTO           0x0537be77u
#define QCOW2_EXT_BITMAPS          0x23852875u
#define QCOW2_EXT_DATA_FILE        0x44415441u

/* L1 entries. */
#define QCOW2_L1E_OFFSET_MASK      0x00fffffffffffe00ull
#define QCOW2_L1E_COPIED           (1ull << 63)

/* L2 entries (standard clusters). */
#define QCOW2_L2E_OFFSET_MASK      0x00fffffffffffe00ull
#define QCOW2_L2E_ZERO             (1ull << 0)
#define QCOW2_L2E_COMPRESSED       (1ull << 62)
#define QCOW2_L2E_COPIED           (1ull << 63)
/* Compressed cluster descriptor: with x = 62 - (cluster_bits - 8), bits
 * 0..x-1 are the host offset and bits x..61 the number of additional
 * 512-byte sectors the compressed data spans. */
#define QCOW2_COMPRESSED_SECTOR_SIZE 512

/* Refcount table entries. */
#define QCOW2_REFT_OFFSET_MASK     0xfffffffffffffe00ull

/* Sane limits, beyond which a header is refused as absurd. */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES     (32u << 20)    /* as qemu: 32 MiB of L1 */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS    65536
#define QCOW2_MAX_BACKING_NAME 1023

/* The header, decoded and checked by qcow2_read_header. */
struct qcow2_header {
  uint32_t version;                 /* 2 or 3 */
  uint32_t cluster_bits;
  uint32_t cluster_size;
  uint64_t size;                    /* virtual size */
  uint32_t crypt_method;
  uint32_t l1_size;                 /* entries */
  uint64_t l1_table_offset;
  uint64_t refcount_table_offset;
  uint32_t refcount_table_clusters;
  uint32_t nb_snapshots;
  uint64_t snapshots_offset;
  uint64_t incompatible_features;
  uint64_t compatible_features;
  uint64_t autoclear_features;
  uint32_t refcount_order;          /* refcount bits = 1 << order */
  uint32_t header_length;
  uint8_t compression_type;
  bool extended_l2;                 /* 32 subclusters per cluster */
  uint32_t l2_entry_size;           /* 8, or 16 with extended L2 */
  uint32_t l2_entries;              /* entries per L2 table */

  /* From the backing file name and header extensions; malloc'd, NULL
   * when absent.  Free with qcow2_header_free. */
  char *backing_file;
  char *backing_format;
  char *data_file;
  bool has_bitmaps;                 /* a bitmaps extension is there */
  bool bitmaps_readable;            /* ... of 24 bytes or more: */
  uint32_t nb_bitmaps;
  uint64_t bitmap_dir_size;
  uint64_t bitmap_dir_offset;
  bool has_crypto;                  /* an encryption extension of 16 bytes */
  uint64_t crypto_offset;
  uint64_t crypto_length;

  /* With a report only: decoding stopped at a fault past which nothing
   * could be decoded (a header cut short, cluster_bits out of range); the
   * fields after it are 0. */
  bool stopped;
};

/* Where the faults of a header go when the caller reports them (the
 * checker) instead of refusing the first (open): PROBLEM gets one line,
 * without the file's name, and returns 0 (or -1, the error set, if it
 * cannot keep it). */
struct qcow2_header_report {
  int (*problem) (void *opaque, const char *msg);
  void *opaque;
};

/* Decode and check the header of the qcow2 file FD of FILE_SIZE bytes
 * from START (a window, or all of it from 0); PATH names it in messages.
 * Always refused, -1 with the error set: not a qcow2 file, versions other
 * than 2 and 3, clusters over 2 MiB, unknown incompatible features.
 * Damage (a field out of its range, a truncated header, a backing name or
 * extension that does not fit in the header cluster): with REPORT NULL
 * the first is the error (-1); with a REPORT each goes to it and decoding
 * goes on where it can (0; H->stopped when it could not).  REPORT also
 * gets what only a check cares about (the bitmaps and encryption
 * extensions).  Encryption, the tables and the corrupt and dirty bits are
 * left to the caller (qcow2_check_tables for open). */
int qcow2_read_header (const char *path, int fd, uint64_t start,
                       uint64_t file_size, struct qcow2_header *h /* OUT */,
                       const struct qcow2_header_report *report);
void qcow2_header_free (struct qcow2_header *h);

/* Open's check of the tables H points to: the L1, refcount and snapshot
 * tables aligned, inside the FILE_SIZE bytes of the file and within the
 * memory limits above.  0, or -1 with the error set naming PATH. */
int qcow2_check_tables (const char *path, uint64_t file_size,
                        const struct qcow2_header *h);

/* Host offset and sector count of a compressed cluster's L2 entry. */
static inline uint64_t
qcow2_compressed_offset (const struct qcow2_header *h, uint64_t l2e)
{
  unsigned x = 62 - (h->cluster_bits - 8);
  return l2e & ((1ull << x) - 1);
}

static inline uint64_t
qcow2_compressed_length (const struct qcow2_header *h, uint64_t l2e)
{
  unsigned x = 62 - (h->cluster_bits - 8);
  uint64_t nb_sectors = ((l2e >> x) & ((1ull << (62 - x)) - 1)) + 1;
  uint64_t off = qcow2_compressed_offset (h, l2e);
  /* The data runs from OFF to the end of the last sector it touches. */
  return nb_sectors * QCOW2_COMPRESSED_SECTOR_SIZE - (off & 511);
}

struct ferry_check_result;

/* Check the qcow2 file FD (PATH for messages) without trusting it; see the .check contract in internal.h. */
int qcow2_check (const char *path, int fd, struct ferry_check_result *result);

#endif /* FERRY_QCOW2_FORMAT_H */
