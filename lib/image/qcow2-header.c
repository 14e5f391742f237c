/* qcow2: parsing and validating the header and its extensions.
 *
 * Shared by the driver (qcow2.c, qcow2-write.c) and the checker
 * (qcow2-check.c).  Nothing in the header is trusted: every offset is
 * checked against the file size before anyone reads from it, and every
 * size against the limits of qcow2-format.h before anyone allocates it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "qcow2-format.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* Names of the incompatible feature bits this code knows. */
static const char *const incompat_names[] = {
  "dirty bit", "corrupt bit", "external data file",
  "compression type", "extended L2 entries",
};

/* Look up the name the image's feature name table gives to incompatible
 * bit BIT; copy it into NAME (of NAME_LEN bytes) or leave "" there. */
static void
feature_name_from_table (const uint8_t *buf, size_t table_offset,
                         size_t table_len, unsigned bit,
                         char *name, size_t name_len)
{
  size_t i;

  name[0] = '\0';
  for (i = 0; i + 48 <= table_len; i += 48) {
    const uint8_t *e = buf + table_offset + i;
    if (e[0] == 0 && e[1] == bit) {
      size_t n = strnlen ((const char *) e + 2, 46);
      if (n >= name_len)
        n = name_len - 1;
      memcpy (name, e + 2, n);
      name[n] = '\0';
      return;
    }
  }
}

/* Copy the string header extension of LEN bytes at P into *OUT. */
static int
extension_string (const char *path, const uint8_t *p, uint32_t len,
                  uint64_t offset, const char *what, char **out)
{
  if (*out != NULL)
    return ferry_error (EINVAL, "%s: qcow2 %s header extension at offset "
                        "0x%" PRIx64 " appears twice", path, what, offset);
  if (len == 0 || len > QCOW2_MAX_BACKING_NAME)
    return ferry_error (EINVAL, "%s: qcow2 %s header extension at offset "
                        "0x%" PRIx64 " has a length of %" PRIu32
                        " bytes (expected 1 to %d)", path, what, offset, len,
                        QCOW2_MAX_BACKING_NAME);
  if (memchr (p, '\0', len) != NULL)
    return ferry_error (EINVAL, "%s: qcow2 %s header extension at offset "
                        "0x%" PRIx64 " contains a NUL byte", path, what,
                        offset);
  *out = strdup_counted ((const char *) p, len);
  if (*out == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", path);
  return 0;
}

/* Walk the header extensions in BUF (the first BUF_LEN bytes of the
 * file) from START to END; fill H and note where the feature name
 * table is. */
static int
parse_extensions (const char *path, const uint8_t *buf, size_t start,
                  size_t end, struct qcow2_header *h,
                  size_t *ftable_offset, size_t *ftable_len)
{
  size_t pos = start;

  *ftable_offset = *ftable_len = 0;
  while (pos < end) {
    uint32_t type, len;

    if (end - pos < 8)
      return ferry_error (EINVAL, "%s: qcow2 header extension at offset "
                          "0x%zx runs past the end of the header area "
                          "(0x%zx)", path, pos, end);
    type = get_be32 (buf + pos);
    len = get_be32 (buf + pos + 4);
    if (type == QCOW2_EXT_END)
      return 0;
    if (len > end - pos - 8)
      return ferry_error (EINVAL, "%s: qcow2 header extension 0x%08" PRIx32
                          " at offset 0x%zx has a length of %" PRIu32
                          " bytes, past the end of the header area (0x%zx)",
                          path, type, pos, len, end);
    switch (type) {
    case QCOW2_EXT_BACKING_FORMAT:
      if (extension_string (path, buf + pos + 8, len, pos, "backing format",
                            &h->backing_format) == -1)
        return -1;
      break;
    case QCOW2_EXT_DATA_FILE:
      if (extension_string (path, buf + pos + 8, len, pos, "data file",
                            &h->data_file) == -1)
        return -1;
      break;
    case QCOW2_EXT_FEATURE_TABLE:
      *ftable_offset = pos + 8;
      *ftable_len = len;
      break;
    case QCOW2_EXT_BITMAPS:
      h->has_bitmaps = true;
      break;
    default:                    /* crypto (refused later) and unknown ones */
      break;
    }
    pos += 8 + ROUND_UP ((size_t) len, 8);
  }
  return 0;
}

/* Check the table of ENTRIES * ENTRY_SIZE bytes at OFFSET: aligned to
 * the cluster and inside the file.  WHAT names it. */
static int
check_table (const char *path, const struct qcow2_header *h,
             uint64_t file_size, const char *what, uint64_t offset,
             uint64_t bytes)
{
  if (!IS_ALIGNED (offset, h->cluster_size))
    return ferry_error (EINVAL, "%s: qcow2 %s at offset 0x%" PRIx64
                        " is not aligned to the cluster size (%" PRIu32 ")",
                        path, what, offset, h->cluster_size);
  if (offset < h->cluster_size)
    return ferry_error (EINVAL, "%s: qcow2 %s at offset 0x%" PRIx64
                        " overlaps the header", path, what, offset);
  if (offset > file_size || bytes > file_size - offset)
    return ferry_error (EINVAL, "%s: qcow2 %s at offset 0x%" PRIx64
                        " (%" PRIu64 " bytes) runs past the end of the file "
                        "(size 0x%" PRIx64 ")", path, what, offset, bytes,
                        file_size);
  return 0;
}

/* The fixed fields, the limits that do not depend on extensions. */
static int
parse_fixed (const char *path, const uint8_t *buf, size_t len,
             uint64_t file_size, struct qcow2_header *h)
{
  if (len < QCOW2_V2_HEADER_LENGTH)
    return ferry_error (EINVAL, "%s: qcow2 header at offset 0x0 is truncated: "
                        "the file has %" PRIu64 " bytes, the header needs %d",
                        path, file_size, QCOW2_V2_HEADER_LENGTH);
  if (get_be32 (buf + QCOW2_HDR_MAGIC) != QCOW2_MAGIC)
    return ferry_error (EINVAL, "%s: qcow2 header at offset 0x0 has a bad "
                        "magic number", path);
  h->version = get_be32 (buf + QCOW2_HDR_VERSION);
  if (h->version != 2 && h->version != 3)
    return ferry_error (ENOTSUP, "%s: qcow2 header at offset 0x0 has version "
                        "%" PRIu32 " (ferry reads versions 2 and 3)", path,
                        h->version);
  h->cluster_bits = get_be32 (buf + QCOW2_HDR_CLUSTER_BITS);
  if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
      h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
    return ferry_error (EINVAL, "%s: qcow2 header at offset 0x%x has "
                        "cluster_bits %" PRIu32 " (expected %d to %d: 512 "
                        "bytes to 2 MiB)", path, QCOW2_HDR_CLUSTER_BITS,
                        h->cluster_bits, QCOW2_MIN_CLUSTER_BITS,
                        QCOW2_MAX_CLUSTER_BITS);
  h->cluster_size = 1u << h->cluster_bits;
  h->size = get_be64 (buf + QCOW2_HDR_SIZE);
  h->crypt_method = get_be32 (buf + QCOW2_HDR_CRYPT_METHOD);
  h->l1_size = get_be32 (buf + QCOW2_HDR_L1_SIZE);
  h->l1_table_offset = get_be64 (buf + QCOW2_HDR_L1_TABLE_OFFSET);
  h->refcount_table_offset = get_be64 (buf + QCOW2_HDR_REFCOUNT_TABLE_OFFSET);
  h->refcount_table_clusters =
    get_be32 (buf + QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS);
  h->nb_snapshots = get_be32 (buf + QCOW2_HDR_NB_SNAPSHOTS);
  h->snapshots_offset = get_be64 (buf + QCOW2_HDR_SNAPSHOTS_OFFSET);

  if (h->version == 2) {
    h->header_length = QCOW2_V2_HEADER_LENGTH;
    h->refcount_order = 4;
    return 0;
  }
  if (len < QCOW2_V3_HEADER_LENGTH)
    return ferry_error (EINVAL, "%s: qcow2 header at offset 0x0 is truncated: "
                        "the file has %" PRIu64 " bytes, a version 3 header "
                        "needs %d", path, file_size, QCOW2_V3_HEADER_LENGTH);
  h->incompatible_features = get_be64 (buf + QCOW2_HDR_INCOMPATIBLE_FEATURES);
  h->compatible_features = get_be64 (buf + QCOW2_HDR_COMPATIBLE_FEATURES);
  h->autoclear_features = get_be64 (buf + QCOW2_HDR_AUTOCLEAR_FEATURES);
  h->refcount_order = get_be32 (buf + QCOW2_HDR_REFCOUNT_ORDER);
  h->header_length = get_be32 (buf + QCOW2_HDR_HEADER_LENGTH);
  if (h->header_length < QCOW2_V3_HEADER_LENGTH ||
      !IS_ALIGNED (h->header_length, 8) ||
      h->header_length > h->cluster_size)
    return ferry_error (EINVAL, "%s: qcow2 header at offset 0x%x has "
                        "header_length %" PRIu32 " (expected a multiple of 8 "
                        "from %d to the cluster size)", path,
                        QCOW2_HDR_HEADER_LENGTH, h->header_length,
                        QCOW2_V3_HEADER_LENGTH);
  if (h->header_length > file_size)
    return ferry_error (EINVAL, "%s: qcow2 header at offset 0x0 is truncated: "
                        "header_length is %" PRIu32 " bytes, the file has %"
                        PRIu64, path, h->header_length, file_size);
  if (h->refcount_order > 6)
    return ferry_error (EINVAL, "%s: qcow2 header at offset 0x%x has "
                        "refcount_order %" PRIu32 " (at most 6: 64 bits)",
                        path, QCOW2_HDR_REFCOUNT_ORDER, h->refcount_order);
  if (h->header_length > QCOW2_HDR_COMPRESSION_TYPE &&
      len > QCOW2_HDR_COMPRESSION_TYPE)
    h->compression_type = buf[QCOW2_HDR_COMPRESSION_TYPE];
  return 0;
}

/* Check the feature bits, naming an unknown incompatible one from the
 * image's own feature table when it has one. */
static int
check_features (const char *path, const uint8_t *buf, size_t ftable_offset,
                size_t ftable_len, struct qcow2_header *h)
{
  uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;

  if (unknown) {
    unsigned bit = __builtin_ctzll (unknown);
    char name[64];
    feature_name_from_table (buf, ftable_offset, ftable_len, bit,
                             name, sizeof name);
    return ferry_error (ENOTSUP, "%s: qcow2 header at offset 0x%x has the "
                        "unknown incompatible feature bit %u%s%s%s set "
                        "(features 0x%" PRIx64 ")", path,
                        QCOW2_HDR_INCOMPATIBLE_FEATURES, bit,
                        name[0] ? " (" : "", name, name[0] ? ")" : "",
                        h->incompatible_features);
  }
  if (h->crypt_method != 0)
    return ferry_error (ENOTSUP, "%s: qcow2 header at offset 0x%x: the image "
                        "is encrypted (%s), which ferry does not support",
                        path, QCOW2_HDR_CRYPT_METHOD,
                        h->crypt_method == 1 ? "AES" :
                        h->crypt_method == 2 ? "LUKS" : "unknown method");
  if (h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) {
    if (h->header_length <= QCOW2_HDR_COMPRESSION_TYPE ||
        h->compression_type == QCOW2_COMPRESSION_ZLIB)
      return ferry_error (EINVAL, "%s: qcow2 header at offset 0x%x has the "
                          "%s bit set but no compression_type field", path,
                          QCOW2_HDR_INCOMPATIBLE_FEATURES, incompat_names[3]);
  }
  else if (h->compression_type != QCOW2_COMPRESSION_ZLIB)
    return ferry_error (EINVAL, "%s: qcow2 header at offset 0x%x has "
                        "compression_type %u without the compression type "
                        "incompatible bit", path, QCOW2_HDR_COMPRESSION_TYPE,
                        h->compression_type);
  if (h->compression_type > QCOW2_COMPRESSION_ZSTD)
    return ferry_error (ENOTSUP, "%s: qcow2 header at offset 0x%x has the "
                        "unknown compression_type %u", path,
                        QCOW2_HDR_COMPRESSION_TYPE, h->compression_type);
  h->extended_l2 = (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
  if (h->extended_l2 && h->cluster_bits < 14)
    return ferry_error (EINVAL, "%s: qcow2 header at offset 0x%x: extended "
                        "L2 entries need clusters of 16 KiB or more, the "
                        "cluster size is %" PRIu32, path,
                        QCOW2_HDR_CLUSTER_BITS, h->cluster_size);
  if ((h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) == 0 &&
      h->data_file != NULL)
    return ferry_error (EINVAL, "%s: qcow2 header has a data file name "
                        "extension without the %s bit", path,
                        incompat_names[2]);
  return 0;
}

/* Check the tables the header points to against the file and the
 * limits. */
static int
check_tables (const char *path, uint64_t file_size, struct qcow2_header *h)
{
  uint64_t span = (uint64_t) h->cluster_size * h->l2_entries;
  uint64_t needed = h->size / span + (h->size % span != 0);
  uint64_t reftable_bytes;

  if (needed > QCOW2_MAX_L1_BYTES / 8)
    return ferry_error (EFBIG, "%s: qcow2 header at offset 0x%x has a "
                        "virtual size of %" PRIu64 " bytes, which needs an "
                        "L1 table larger than %u bytes", path, QCOW2_HDR_SIZE,
                        h->size, QCOW2_MAX_L1_BYTES);
  if ((uint64_t) h->l1_size * 8 > QCOW2_MAX_L1_BYTES)
    return ferry_error (EFBIG, "%s: L1 table at offset 0x%" PRIx64 " has %"
                        PRIu32 " entries, more than the limit of %u", path,
                        h->l1_table_offset, h->l1_size,
                        QCOW2_MAX_L1_BYTES / 8);
  if (h->l1_size < needed)
    return ferry_error (EINVAL, "%s: L1 table at offset 0x%" PRIx64 " has %"
                        PRIu32 " entries, too few for the virtual size of %"
                        PRIu64 " bytes (%" PRIu64 " needed)", path,
                        h->l1_table_offset, h->l1_size, h->size, needed);
  if (h->l1_size > 0 &&
      check_table (path, h, file_size, "L1 table", h->l1_table_offset,
                   (uint64_t) h->l1_size * 8) == -1)
    return -1;

  if (h->refcount_table_clusters == 0)
    return ferry_error (EINVAL, "%s: refcount table at offset 0x%" PRIx64
                        " has a size of zero clusters", path,
                        h->refcount_table_offset);
  reftable_bytes = (uint64_t) h->refcount_table_clusters * h->cluster_size;
  if (reftable_bytes > QCOW2_MAX_REFTABLE_BYTES)
    return ferry_error (EFBIG, "%s: refcount table at offset 0x%" PRIx64
                        " has %" PRIu32 " clusters (%" PRIu64 " bytes), more "
                        "than the limit of %u bytes", path,
                        h->refcount_table_offset, h->refcount_table_clusters,
                        reftable_bytes, QCOW2_MAX_REFTABLE_BYTES);
  if (check_table (path, h, file_size, "refcount table",
                   h->refcount_table_offset, reftable_bytes) == -1)
    return -1;

  if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
    return ferry_error (EFBIG, "%s: snapshot table at offset 0x%" PRIx64
                        " has %" PRIu32 " entries, more than the limit of %d",
                        path, h->snapshots_offset, h->nb_snapshots,
                        QCOW2_MAX_SNAPSHOTS);
  /* Each entry takes at least 40 bytes. */
  if (h->nb_snapshots > 0 &&
      check_table (path, h, file_size, "snapshot table", h->snapshots_offset,
                   (uint64_t) h->nb_snapshots * 40) == -1)
    return -1;
  return 0;
}

/* Read and check the header, its extensions and the table bounds. */
int
qcow2_read_header (const char *path, int fd, uint64_t start,
                   uint64_t file_size, struct qcow2_header *h)
{
  CLEANUP_FREE uint8_t *buf = NULL;
  uint64_t backing_offset;
  uint32_t backing_size;
  size_t len, ext_end, ftable_offset, ftable_len;

  memset (h, 0, sizeof *h);

  /* The fixed part first, to learn the cluster size; then the whole
   * first cluster, where extensions and the backing name live. */
  len = MIN (file_size, (uint64_t) QCOW2_V3_HEADER_LENGTH_COMPRESSION);
  buf = malloc (MAX (len, (size_t) 1));
  if (buf == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", path);
  if (full_pread (fd, buf, len, start) == -1)
    return ferry_error_errno (errno, "%s: reading the qcow2 header at offset "
                              "0x0", path);
  if (parse_fixed (path, buf, len, file_size, h) == -1)
    goto err;

  len = MIN (file_size, (uint64_t) h->cluster_size);
  free (buf);
  buf = malloc (len);
  if (buf == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    goto err;
  }
  if (full_pread (fd, buf, len, start) == -1) {
    ferry_error_errno (errno, "%s: reading the qcow2 header cluster at "
                       "offset 0x0", path);
    goto err;
  }

  /* The backing file name sits after the extensions, in the first
   * cluster; the extensions end where it starts. */
  ext_end = len;
  backing_offset = get_be64 (buf + QCOW2_HDR_BACKING_FILE_OFFSET);
  backing_size = get_be32 (buf + QCOW2_HDR_BACKING_FILE_SIZE);
  if (backing_offset != 0) {
    if (backing_size == 0 || backing_size > QCOW2_MAX_BACKING_NAME) {
      ferry_error (EINVAL, "%s: backing file name at offset 0x%" PRIx64
                   " has a length of %" PRIu32 " bytes (expected 1 to %d)",
                   path, backing_offset, backing_size,
                   QCOW2_MAX_BACKING_NAME);
      goto err;
    }
    if (backing_offset < h->header_length || backing_offset > len ||
        backing_size > len - backing_offset) {
      ferry_error (EINVAL, "%s: backing file name at offset 0x%" PRIx64
                   " (%" PRIu32 " bytes) is outside the header cluster "
                   "(0x%zx bytes in the file)", path, backing_offset,
                   backing_size, len);
      goto err;
    }
    if (memchr (buf + backing_offset, '\0', backing_size) != NULL) {
      ferry_error (EINVAL, "%s: backing file name at offset 0x%" PRIx64
                   " contains a NUL byte", path, backing_offset);
      goto err;
    }
    h->backing_file = strdup_counted ((const char *) buf + backing_offset,
                               backing_size);
    if (h->backing_file == NULL) {
      ferry_error (ENOMEM, "%s: out of memory", path);
      goto err;
    }
    ext_end = backing_offset;
  }

  if (parse_extensions (path, buf, h->header_length, ext_end, h,
                        &ftable_offset, &ftable_len) == -1 ||
      check_features (path, buf, ftable_offset, ftable_len, h) == -1)
    goto err;

  h->l2_entry_size = h->extended_l2 ? 16 : 8;
  h->l2_entries = h->cluster_size / h->l2_entry_size;
  if (check_tables (path, file_size, h) == -1)
    goto err;
  return 0;

 err:
  qcow2_header_free (h);
  return -1;
}

/* Free the strings of H. */
void
qcow2_header_free (struct qcow2_header *h)
{
  free (h->backing_file);
  free (h->backing_format);
  free (h->data_file);
  h->backing_file = h->backing_format = h->data_file = NULL;
}
