/* qcow2: the one decoder of the header and its extensions.
 *
 * Used by the driver's open (qcow2.c, and through it qcow2-write.c) and
 * by the checker (qcow2-check.c), so that both read the same fields the
 * same way and find the same faults in them.  Nothing in the header is
 * trusted: every offset is checked against the file size before anyone
 * reads from it, and every size against the limits of qcow2-format.h
 * before anyone allocates it.
 *
 * NOTES ON THE DESIGN
 *
 * 1. Every fault found is one of four kinds.  FATAL (not a qcow2 file, a
 *    version, cluster size or incompatible feature ferry does not know):
 *    nobody can go on, both callers get -1.  STOP (the header is cut
 *    short, cluster_bits is nonsense): open refuses; the checker reports
 *    it and has nothing left to walk.  DAMAGE (a field out of its range,
 *    a backing name or extension that does not fit): open refuses; the
 *    checker reports it and decoding goes on with a safe value.  NOTE
 *    (inconsistencies in what open does not use: the bitmaps and
 *    encryption extensions): the checker reports them, open ignores them.
 *
 * 2. Open passes no report: the first DAMAGE or STOP is its error, with
 *    the file's name in front.  The checker passes one: each fault goes
 *    to it as one line without the name.  The FATAL faults are found
 *    before anything is reported, so a check that cannot run has no half
 *    report.
 *
 * 3. What the header points to (the L1, refcount and snapshot tables) is
 *    checked against the file and the memory limits only by open
 *    (qcow2_check_tables): the checker walks those tables itself, a
 *    cluster at a time, and reports them in its own terms.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
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

#define BITMAPS_EXT_SIZE 24
#define CRYPTO_EXT_SIZE  16

/* What decoding one header needs: where the faults go (note 2). */
struct decoder {
  const char *path;
  const struct qcow2_header_report *report;   /* NULL: open */
  struct qcow2_header *h;
};

/* Decoding steps return DECODED, STOPPED (note 1: nothing more can be
 * decoded; only with a report) or -1 (the error is set). */
#define DECODED 0
#define STOPPED 1

/* A DAMAGE or STOP fault (note 1): without a report the error (ERRNUM),
 * -1; with one, the line reported and 0 (-1 if even that failed). */
static int __attribute__ ((format (printf, 3, 4)))
fault (struct decoder *d, int errnum, const char *fmt, ...)
{
  char msg[512];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  if (d->report == NULL)
    return ferry_error (errnum, "%s: %s", d->path, msg);
  return d->report->problem (d->report->opaque, msg);
}

/* A NOTE (note 1): reported when there is a report, else nothing. */
#define NOTE(d, ...)                                                    \
  ((d)->report ? fault ((d), EINVAL, __VA_ARGS__) : 0)

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

/* The fixed fields, in the order the faults must be found (note 2):
 * the first LEN bytes of the file (of FILE_SIZE) are in BUF. */
static int
decode_fixed (struct decoder *d, const uint8_t *buf, size_t len,
              uint64_t file_size)
{
  struct qcow2_header *h = d->h;

  if (len >= 4 && get_be32 (buf + QCOW2_HDR_MAGIC) != QCOW2_MAGIC)
    return ferry_error (EINVAL, "%s: qcow2 header at offset 0x0 has a bad "
                        "magic number: not a qcow2 file", d->path);
  if (len >= 8) {
    h->version = get_be32 (buf + QCOW2_HDR_VERSION);
    if (h->version != 2 && h->version != 3)
      return ferry_error (ENOTSUP, "%s: qcow2 header at offset 0x0 has "
                          "version %" PRIu32 " (ferry reads versions 2 and "
                          "3)", d->path, h->version);
  }
  if (len < QCOW2_V2_HEADER_LENGTH)
    return fault (d, EINVAL, "qcow2 header at offset 0x0 is truncated: the "
                  "file has %" PRIu64 " bytes, the header needs %d",
                  file_size, QCOW2_V2_HEADER_LENGTH) == -1 ? -1 : STOPPED;
  h->cluster_bits = get_be32 (buf + QCOW2_HDR_CLUSTER_BITS);
  if (h->cluster_bits > QCOW2_MAX_CLUSTER_BITS && h->cluster_bits < 64)
    /* Valid for the specification, beyond what QEMU and ferry read. */
    return ferry_error (ENOTSUP, "%s: qcow2 header at offset 0x%x has "
                        "cluster_bits %" PRIu32 " (expected %d to %d: 512 "
                        "bytes to 2 MiB; larger clusters are beyond ferry)",
                        d->path, QCOW2_HDR_CLUSTER_BITS, h->cluster_bits,
                        QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
  if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
      h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
    return fault (d, EINVAL, "qcow2 header at offset 0x%x has cluster_bits "
                  "%" PRIu32 " (expected %d to %d: 512 bytes to 2 MiB)",
                  QCOW2_HDR_CLUSTER_BITS, h->cluster_bits,
                  QCOW2_MIN_CLUSTER_BITS,
                  QCOW2_MAX_CLUSTER_BITS) == -1 ? -1 : STOPPED;
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
  h->header_length = QCOW2_V2_HEADER_LENGTH;
  h->refcount_order = 4;
  if (h->version == 2)
    return DECODED;

  if (len < QCOW2_V3_HEADER_LENGTH)
    return fault (d, EINVAL, "qcow2 header at offset 0x0 is truncated: the "
                  "file has %" PRIu64 " bytes, a version 3 header needs %d",
                  file_size, QCOW2_V3_HEADER_LENGTH) == -1 ? -1 : STOPPED;
  h->incompatible_features = get_be64 (buf + QCOW2_HDR_INCOMPATIBLE_FEATURES);
  h->compatible_features = get_be64 (buf + QCOW2_HDR_COMPATIBLE_FEATURES);
  h->autoclear_features = get_be64 (buf + QCOW2_HDR_AUTOCLEAR_FEATURES);
  h->refcount_order = get_be32 (buf + QCOW2_HDR_REFCOUNT_ORDER);
  h->header_length = get_be32 (buf + QCOW2_HDR_HEADER_LENGTH);
  if (h->header_length > QCOW2_HDR_COMPRESSION_TYPE &&
      len > QCOW2_HDR_COMPRESSION_TYPE)
    h->compression_type = buf[QCOW2_HDR_COMPRESSION_TYPE];
  return DECODED;
}

/* The fields whose faults are DAMAGE (note 1), after the FATAL ones. */
static int
check_fixed (struct decoder *d, uint64_t file_size)
{
  struct qcow2_header *h = d->h;

  if (h->version == 3 &&
      (h->header_length < QCOW2_V3_HEADER_LENGTH ||
       !IS_ALIGNED (h->header_length, 8) ||
       h->header_length > h->cluster_size)) {
    if (fault (d, EINVAL, "qcow2 header at offset 0x%x has header_length %"
               PRIu32 " (expected a multiple of 8 from %d to the cluster "
               "size, %" PRIu32 ")", QCOW2_HDR_HEADER_LENGTH,
               h->header_length, QCOW2_V3_HEADER_LENGTH,
               h->cluster_size) == -1)
      return -1;
    if (h->header_length < QCOW2_V3_HEADER_LENGTH)
      h->header_length = QCOW2_V3_HEADER_LENGTH;
  }
  else if (h->header_length > file_size &&
           fault (d, EINVAL, "qcow2 header at offset 0x0 is truncated: "
                  "header_length is %" PRIu32 " bytes, the file has %"
                  PRIu64, h->header_length, file_size) == -1)
    return -1;
  if (h->refcount_order > 6 &&
      fault (d, EINVAL, "qcow2 header at offset 0x%x has refcount_order %"
             PRIu32 " (at most 6: 64 bits)", QCOW2_HDR_REFCOUNT_ORDER,
             h->refcount_order) == -1)
    return -1;
  if (h->crypt_method > 2 &&
      fault (d, EINVAL, "qcow2 header at offset 0x%x has the unknown "
             "encryption method %" PRIu32, QCOW2_HDR_CRYPT_METHOD,
             h->crypt_method) == -1)
    return -1;
  if ((h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) &&
      (h->header_length <= QCOW2_HDR_COMPRESSION_TYPE ||
       h->compression_type == QCOW2_COMPRESSION_ZLIB) &&
      fault (d, EINVAL, "qcow2 header at offset 0x%x has the %s bit set but "
             "no compression_type field", QCOW2_HDR_INCOMPATIBLE_FEATURES,
             incompat_names[3]) == -1)
    return -1;
  if (!(h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) &&
      h->compression_type != QCOW2_COMPRESSION_ZLIB &&
      fault (d, EINVAL, "qcow2 header at offset 0x%x has compression_type "
             "%u without the compression type incompatible bit",
             QCOW2_HDR_COMPRESSION_TYPE, h->compression_type) == -1)
    return -1;
  if (h->compression_type > QCOW2_COMPRESSION_ZSTD &&
      fault (d, ENOTSUP, "qcow2 header at offset 0x%x has the unknown "
             "compression_type %u", QCOW2_HDR_COMPRESSION_TYPE,
             h->compression_type) == -1)
    return -1;
  h->extended_l2 = (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
  if (h->extended_l2 && h->cluster_bits < 14 &&
      fault (d, EINVAL, "qcow2 header at offset 0x%x: extended L2 entries "
             "need clusters of 16 KiB or more, the cluster size is %" PRIu32,
             QCOW2_HDR_CLUSTER_BITS, h->cluster_size) == -1)
    return -1;
  h->l2_entry_size = h->extended_l2 ? 16 : 8;
  h->l2_entries = h->cluster_size / h->l2_entry_size;
  return DECODED;
}

/* Copy the string header extension of LEN bytes at P into *OUT. */
static int
extension_string (struct decoder *d, const uint8_t *p, uint32_t len,
                  uint64_t offset, const char *what, char **out)
{
  if (*out != NULL)
    return fault (d, EINVAL, "qcow2 %s header extension at offset 0x%"
                  PRIx64 " appears twice", what, offset);
  if (len == 0 || len > QCOW2_MAX_BACKING_NAME)
    return fault (d, EINVAL, "qcow2 %s header extension at offset 0x%" PRIx64
                  " has a length of %" PRIu32 " bytes (expected 1 to %d)",
                  what, offset, len, QCOW2_MAX_BACKING_NAME);
  if (memchr (p, '\0', len) != NULL)
    return fault (d, EINVAL, "qcow2 %s header extension at offset 0x%" PRIx64
                  " contains a NUL byte", what, offset);
  *out = strdup_counted ((const char *) p, len);
  if (*out == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", d->path);
  return 0;
}

/* The bitmaps or encryption extension of LEN bytes at P (offset POS):
 * fields open does not use, NOTE faults (note 1). */
static int
decode_checked_extension (struct decoder *d, uint32_t type, const uint8_t *p,
                          uint32_t len, size_t pos)
{
  struct qcow2_header *h = d->h;

  if (type == QCOW2_EXT_BITMAPS) {
    h->has_bitmaps = true;
    if (len < BITMAPS_EXT_SIZE)
      return NOTE (d, "bitmaps header extension at offset 0x%zx is %" PRIu32
                   " bytes, fewer than %d", pos, len, BITMAPS_EXT_SIZE);
    h->bitmaps_readable = true;
    h->nb_bitmaps = get_be32 (p);
    h->bitmap_dir_size = get_be64 (p + 8);
    h->bitmap_dir_offset = get_be64 (p + 16);
    if (get_be32 (p + 4) != 0)
      return NOTE (d, "bitmaps header extension at offset 0x%zx has its "
                   "reserved field set", pos);
    return 0;
  }
  if (len < CRYPTO_EXT_SIZE)
    return NOTE (d, "encryption header extension at offset 0x%zx is %" PRIu32
                 " bytes, fewer than %d", pos, len, CRYPTO_EXT_SIZE);
  h->has_crypto = true;
  h->crypto_offset = get_be64 (p);
  h->crypto_length = get_be64 (p + 8);
  return 0;
}

/* Walk the header extensions in BUF from START to END; fill H and note
 * where the feature name table is. */
static int
decode_extensions (struct decoder *d, const uint8_t *buf, size_t start,
                   size_t end, size_t *ftable_offset, size_t *ftable_len)
{
  struct qcow2_header *h = d->h;
  size_t pos = start;

  *ftable_offset = *ftable_len = 0;
  while (pos < end) {
    uint32_t type, len;
    int r = 0;

    if (end - pos < 8)
      return fault (d, EINVAL, "qcow2 header extension at offset 0x%zx runs "
                    "past the end of the header area (0x%zx)", pos, end);
    type = get_be32 (buf + pos);
    len = get_be32 (buf + pos + 4);
    if (type == QCOW2_EXT_END)
      break;
    if (len > end - pos - 8)
      return fault (d, EINVAL, "qcow2 header extension 0x%08" PRIx32 " at "
                    "offset 0x%zx has a length of %" PRIu32 " bytes, past "
                    "the end of the header area (0x%zx)", type, pos, len,
                    end);
    switch (type) {
    case QCOW2_EXT_BACKING_FORMAT:
      r = extension_string (d, buf + pos + 8, len, pos, "backing format",
                            &h->backing_format);
      break;
    case QCOW2_EXT_DATA_FILE:
      r = extension_string (d, buf + pos + 8, len, pos, "data file",
                            &h->data_file);
      break;
    case QCOW2_EXT_FEATURE_TABLE:
      *ftable_offset = pos + 8;
      *ftable_len = len;
      break;
    case QCOW2_EXT_BITMAPS: case QCOW2_EXT_CRYPTO:
      r = decode_checked_extension (d, type, buf + pos + 8, len, pos);
      break;
    default:                    /* unknown ones */
      break;
    }
    if (r == -1)
      return -1;
    pos += 8 + ROUND_UP ((size_t) len, 8);
  }

  if (!h->bitmaps_readable &&
      (h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) &&
      NOTE (d, "qcow2 header: the bitmaps autoclear bit is set but there is "
            "no bitmaps extension") == -1)
    return -1;
  if (h->has_crypto && h->crypt_method != 2 &&
      NOTE (d, "qcow2 header: an encryption header extension without LUKS "
            "encryption") == -1)
    return -1;
  if (!h->has_crypto && h->crypt_method == 2 &&
      NOTE (d, "qcow2 header: LUKS encryption without an encryption header "
            "extension") == -1)
    return -1;
  return 0;
}

/* The backing file name in the first LEN bytes of the file, in BUF; *END
 * becomes where it starts, which is where the extensions end. */
static int
decode_backing_name (struct decoder *d, const uint8_t *buf, size_t len,
                     size_t *end)
{
  struct qcow2_header *h = d->h;
  uint64_t offset = get_be64 (buf + QCOW2_HDR_BACKING_FILE_OFFSET);
  uint32_t size = get_be32 (buf + QCOW2_HDR_BACKING_FILE_SIZE);

  *end = len;
  if (offset == 0)
    return 0;
  if (size == 0 || size > QCOW2_MAX_BACKING_NAME)
    return fault (d, EINVAL, "backing file name at offset 0x%" PRIx64 " has "
                  "a length of %" PRIu32 " bytes (expected 1 to %d)", offset,
                  size, QCOW2_MAX_BACKING_NAME);
  if (offset < h->header_length)
    return fault (d, EINVAL, "backing file name at offset 0x%" PRIx64 " (%"
                  PRIu32 " bytes) overlaps the header fields (header_length "
                  "%" PRIu32 ")", offset, size, h->header_length);
  if (offset > len || size > len - offset)
    return fault (d, EINVAL, "backing file name at offset 0x%" PRIx64 " (%"
                  PRIu32 " bytes) is outside the header cluster (0x%zx bytes "
                  "in the file)", offset, size, len);
  *end = offset;
  if (memchr (buf + offset, '\0', size) != NULL)
    return fault (d, EINVAL, "backing file name at offset 0x%" PRIx64
                  " contains a NUL byte", offset);
  h->backing_file = strdup_counted ((const char *) buf + offset, size);
  if (h->backing_file == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", d->path);
  return 0;
}

/* The first cluster: backing name, extensions, and the incompatible
 * features, which the feature name table in them may name. */
static int
decode_cluster (struct decoder *d, const uint8_t *buf, size_t len)
{
  struct qcow2_header *h = d->h;
  uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;
  size_t ext_end = len, ftable_offset = 0, ftable_len = 0;
  /* A header_length past the cluster leaves no extension area (already
   * reported); the fields are still walked by the checker. */
  bool area = h->header_length <= MIN (len, (size_t) h->cluster_size);

  if (area &&
      (decode_backing_name (d, buf, len, &ext_end) == -1 ||
       decode_extensions (d, buf, h->header_length, MAX (ext_end,
                          (size_t) h->header_length), &ftable_offset,
                          &ftable_len) == -1))
    return -1;
  if (unknown) {
    unsigned bit = __builtin_ctzll (unknown);
    char name[64];
    feature_name_from_table (buf, ftable_offset, ftable_len, bit,
                             name, sizeof name);
    return ferry_error (ENOTSUP, "%s: qcow2 header at offset 0x%x has the "
                        "unknown incompatible feature bit %u%s%s%s set "
                        "(features 0x%" PRIx64 ")", d->path,
                        QCOW2_HDR_INCOMPATIBLE_FEATURES, bit,
                        name[0] ? " (" : "", name, name[0] ? ")" : "",
                        h->incompatible_features);
  }
  if ((h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) == 0 &&
      h->data_file != NULL &&
      fault (d, EINVAL, "qcow2 header has a data file name extension without "
             "the %s bit", incompat_names[2]) == -1)
    return -1;
  return 0;
}

/* The sizes both callers rely on: a virtual size that an L1 table of
 * sane size maps, enough L1 entries for it, and a refcount table at all. */
static int
check_sizes (struct decoder *d)
{
  struct qcow2_header *h = d->h;
  uint64_t span = (uint64_t) h->cluster_size * h->l2_entries;
  uint64_t needed = h->size / span + (h->size % span != 0);

  if (needed > QCOW2_MAX_L1_BYTES / 8) {
    if (fault (d, EFBIG, "qcow2 header at offset 0x%x has a virtual size of "
               "%" PRIu64 " bytes, which needs an L1 table larger than %u "
               "bytes", QCOW2_HDR_SIZE, h->size, QCOW2_MAX_L1_BYTES) == -1)
      return -1;
  }
  else if (h->l1_size < needed &&
      fault (d, EINVAL, "L1 table at offset 0x%" PRIx64 " has %" PRIu32
             " entries, too few for the virtual size of %" PRIu64 " bytes (%"
             PRIu64 " needed)", h->l1_table_offset, h->l1_size, h->size,
             needed) == -1)
    return -1;
  if (h->refcount_table_clusters == 0 &&
      fault (d, EINVAL, "refcount table at offset 0x%" PRIx64 " has a size "
             "of zero clusters", h->refcount_table_offset) == -1)
    return -1;
  return 0;
}

/* A report that keeps nothing (the walk for a feature's name). */
static int
ignore_problem (void *opaque, const char *msg)
{
  return 0;
}
static const struct qcow2_header_report silent_report = {
  .problem = ignore_problem,
};

int
qcow2_read_header (const char *path, int fd, uint64_t start,
                   uint64_t file_size, struct qcow2_header *h,
                   const struct qcow2_header_report *report)
{
  struct decoder d = { .path = path, .report = report, .h = h };
  CLEANUP_FREE uint8_t *buf = NULL;
  size_t len;
  int r;

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
  r = decode_fixed (&d, buf, len, file_size);
  if (r != DECODED)
    goto out;

  len = MIN (file_size, (uint64_t) h->cluster_size);
  free (buf);
  buf = malloc (len);
  if (buf == NULL) {
    r = ferry_error (ENOMEM, "%s: out of memory", path);
    goto out;
  }
  if (full_pread (fd, buf, len, start) == -1) {
    r = ferry_error_errno (errno, "%s: reading the qcow2 header cluster at "
                           "offset 0x0", path);
    goto out;
  }
  /* Note 2: unknown incompatible bits are FATAL, found before anything
   * is reported; the extensions are walked without reporting only to
   * find the name the image's feature table gives them. */
  if (h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN) {
    struct decoder silent = { .path = path, .report = &silent_report, .h = h };
    r = decode_cluster (&silent, buf, len);
    goto out;
  }
  r = check_fixed (&d, file_size);
  if (r == DECODED)
    r = decode_cluster (&d, buf, len);
  if (r == DECODED)
    r = check_sizes (&d);

 out:
  if (r == -1) {
    qcow2_header_free (h);
    return -1;
  }
  h->stopped = r == STOPPED;
  return 0;
}

/* Check the table of BYTES bytes at OFFSET: aligned to the cluster and
 * inside the file.  WHAT names it. */
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

int
qcow2_check_tables (const char *path, uint64_t file_size,
                    const struct qcow2_header *h)
{
  uint64_t reftable_bytes;

  if ((uint64_t) h->l1_size * 8 > QCOW2_MAX_L1_BYTES)
    return ferry_error (EFBIG, "%s: L1 table at offset 0x%" PRIx64 " has %"
                        PRIu32 " entries, more than the limit of %u", path,
                        h->l1_table_offset, h->l1_size,
                        QCOW2_MAX_L1_BYTES / 8);
  if (h->l1_size > 0 &&
      check_table (path, h, file_size, "L1 table", h->l1_table_offset,
                   (uint64_t) h->l1_size * 8) == -1)
    return -1;

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

/* Free the strings of H. */
void
qcow2_header_free (struct qcow2_header *h)
{
  free (h->backing_file);
  free (h->backing_format);
  free (h->data_file);
  h->backing_file = h->backing_format = h->data_file = NULL;
}
