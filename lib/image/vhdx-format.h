/* VHDX on-disk layout ([MS-VHDX], Microsoft's Virtual Hard Disk v2 File
 * Format): offsets, signatures, GUIDs and limits shared by the driver
 * (vhdx.c, vhdx-log.c, vhdx-write.c) and the checker.  All multi-byte
 * fields are little-endian.  Private to lib/image.
 */
#ifndef FERRY_VHDX_FORMAT_H
#define FERRY_VHDX_FORMAT_H

#include <stdint.h>

#define VHDX_KiB ((uint64_t) 1024)
#define VHDX_MiB ((uint64_t) 1024 * 1024)

/* The header section: 1 MiB holding five 64 KiB structures. */
#define VHDX_IDENT_OFFSET      0
#define VHDX_HEADER1_OFFSET    (64 * VHDX_KiB)
#define VHDX_HEADER2_OFFSET    (128 * VHDX_KiB)
#define VHDX_REGION1_OFFSET    (192 * VHDX_KiB)
#define VHDX_REGION2_OFFSET    (256 * VHDX_KiB)
#define VHDX_HEADER_SECTION    VHDX_MiB

#define VHDX_IDENT_SIGNATURE   "vhdxfile"          /* 8 bytes, no NUL */
#define VHDX_CREATOR_OFFSET    8                   /* UTF-16LE, 512 bytes */
#define VHDX_CREATOR_BYTES     512

/* A header: 4 KiB at 64 KiB and at 128 KiB. */
#define VHDX_HEADER_SIZE       4096
#define VHDX_HDR_SIGNATURE     0    /* "head" */
#define VHDX_HDR_CHECKSUM      4
#define VHDX_HDR_SEQUENCE      8
#define VHDX_HDR_FILE_WRITE    16   /* GUID */
#define VHDX_HDR_DATA_WRITE    32   /* GUID */
#define VHDX_HDR_LOG_GUID      48   /* GUID */
#define VHDX_HDR_LOG_VERSION   64   /* u16, must be 0 */
#define VHDX_HDR_VERSION       66   /* u16, must be 1 */
#define VHDX_HDR_LOG_LENGTH    68   /* u32 */
#define VHDX_HDR_LOG_OFFSET    72   /* u64 */

/* The region table: 64 KiB at 192 KiB and at 256 KiB. */
#define VHDX_REGION_TABLE_SIZE (64 * VHDX_KiB)
#define VHDX_RT_SIGNATURE      0    /* "regi" */
#define VHDX_RT_CHECKSUM       4
#define VHDX_RT_ENTRY_COUNT    8
#define VHDX_RT_HEADER_SIZE    16
#define VHDX_RT_ENTRY_SIZE     32   /* GUID, u64 offset, u32 length, u32 required */
#define VHDX_RT_MAX_ENTRIES    2047

/* The metadata region: a 64 KiB table, then the items. */
#define VHDX_MT_SIZE           (64 * VHDX_KiB)
#define VHDX_MT_SIGNATURE      "metadata"
#define VHDX_MT_ENTRY_COUNT    10   /* u16 */
#define VHDX_MT_HEADER_SIZE    32
#define VHDX_MT_ENTRY_SIZE     32   /* GUID, u32 offset, u32 length, u32 flags, u32 */
#define VHDX_MT_MAX_ENTRIES    2047
#define VHDX_MT_IS_USER        0x1u
#define VHDX_MT_IS_VIRTUAL_DISK 0x2u
#define VHDX_MT_IS_REQUIRED    0x4u
#define VHDX_MT_MAX_ITEM       VHDX_MiB

/* File parameters item: u32 block size, u32 flags. */
#define VHDX_PARAM_LEAVE_BLOCKS_ALLOCATED 0x1u
#define VHDX_PARAM_HAS_PARENT  0x2u

/* Parent locator item: GUID type, u16 reserved, u16 count, then entries of
 * u32 key offset, u32 value offset, u16 key length, u16 value length. */
#define VHDX_PL_HEADER_SIZE    20
#define VHDX_PL_ENTRY_SIZE     12

/* The log: entries of 4 KiB sectors in a ring. */
#define VHDX_LOG_SECTOR        4096
#define VHDX_LOG_HDR_SIGNATURE 0    /* "loge" */
#define VHDX_LOG_HDR_CHECKSUM  4
#define VHDX_LOG_HDR_LENGTH    8    /* u32 entry length */
#define VHDX_LOG_HDR_TAIL      12   /* u32 */
#define VHDX_LOG_HDR_SEQUENCE  16   /* u64 */
#define VHDX_LOG_HDR_DESC_COUNT 24  /* u32 */
#define VHDX_LOG_HDR_LOG_GUID  32   /* GUID */
#define VHDX_LOG_HDR_FLUSHED   48   /* u64 flushed file offset */
#define VHDX_LOG_HDR_LAST      56   /* u64 last file offset */
#define VHDX_LOG_HDR_SIZE      64
#define VHDX_LOG_DESC_SIZE     32
#define VHDX_LOG_DESC_FIRST    126  /* descriptors in the first sector */
#define VHDX_LOG_DESC_PER_SECTOR 128
/* A zero descriptor: "zero", u32 reserved, u64 length, u64 offset, u64 seq.
 * A data descriptor: "desc", u32 trailing bytes, u64 leading bytes,
 * u64 offset, u64 seq.  A data sector: "data", u32 seq high, 4084 bytes,
 * u32 seq low. */
#define VHDX_LOG_DATA_LEADING  8
#define VHDX_LOG_DATA_TRAILING 4

/* BAT entries: 3 bits of state, 17 reserved, 44 bits of offset in MiB. */
#define VHDX_BAT_STATE_MASK    0x7ull
#define VHDX_BAT_OFFSET_MASK   0xfffffffffff00000ull
#define VHDX_BAT_RESERVED_MASK 0x00000000000ffff8ull

enum vhdx_payload_state {
  VHDX_PAYLOAD_NOT_PRESENT = 0,
  VHDX_PAYLOAD_UNDEFINED = 1,
  VHDX_PAYLOAD_ZERO = 2,
  VHDX_PAYLOAD_UNMAPPED = 3,
  VHDX_PAYLOAD_FULLY_PRESENT = 6,
  VHDX_PAYLOAD_PARTIALLY_PRESENT = 7,
};
#define VHDX_SB_NOT_PRESENT    0
#define VHDX_SB_PRESENT        6

/* A sector bitmap block is 1 MiB: 2^23 bits, one per logical sector. */
#define VHDX_SB_BLOCK_SIZE     VHDX_MiB
#define VHDX_SECTORS_PER_CHUNK ((uint64_t) 1 << 23)

/* Limits from the specification. */
#define VHDX_MIN_BLOCK_SIZE    VHDX_MiB
#define VHDX_MAX_BLOCK_SIZE    (256 * VHDX_MiB)
#define VHDX_MAX_DISK_SIZE     ((uint64_t) 64 << 40)    /* 64 TiB */
/* Not in the specification: no structure may lie beyond this offset (the
 * largest disk with its metadata fits well inside), so that no field read
 * from a hostile file can make ferry extend a file without bound. */
#define VHDX_MAX_FILE_OFFSET   ((uint64_t) 1 << 47)     /* 128 TiB */

/* A GUID in its binary form: Data1, Data2 and Data3 little-endian, then
 * Data4 as bytes. */
#define VHDX_GUID(d1, d2, d3, a, b, c, d, e, f, g, h)                     \
  { (d1) & 0xff, ((d1) >> 8) & 0xff, ((d1) >> 16) & 0xff, ((d1) >> 24) & 0xff, \
    (d2) & 0xff, ((d2) >> 8) & 0xff, (d3) & 0xff, ((d3) >> 8) & 0xff,     \
    a, b, c, d, e, f, g, h }

#define VHDX_GUID_BAT \
  VHDX_GUID (0x2dc27766, 0xf623, 0x4200, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08)
#define VHDX_GUID_METADATA \
  VHDX_GUID (0x8b7ca206, 0x4790, 0x4b9a, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e)
#define VHDX_GUID_FILE_PARAMETERS \
  VHDX_GUID (0xcaa16737, 0xfa36, 0x4d43, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b)
#define VHDX_GUID_VIRTUAL_DISK_SIZE \
  VHDX_GUID (0x2fa54224, 0xcd1b, 0x4876, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8)
#define VHDX_GUID_VIRTUAL_DISK_ID \
  VHDX_GUID (0xbeca12ab, 0xb2e6, 0x4523, 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46)
#define VHDX_GUID_LOGICAL_SECTOR_SIZE \
  VHDX_GUID (0x8141bf1d, 0xa96f, 0x4709, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f)
#define VHDX_GUID_PHYSICAL_SECTOR_SIZE \
  VHDX_GUID (0xcda348c7, 0x445d, 0x4471, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56)
#define VHDX_GUID_PARENT_LOCATOR \
  VHDX_GUID (0xa8d35f2d, 0xb30b, 0x454d, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c)
#define VHDX_GUID_LOCATOR_TYPE_VHDX \
  VHDX_GUID (0xb04aefb7, 0xd19e, 0x4a81, 0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13)

#endif /* FERRY_VHDX_FORMAT_H */
