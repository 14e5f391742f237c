/* OVA archives: the tar that holds an OVF package.  Reading walks the
 * headers as a stream, from the first to the end-of-archive blocks,
 * recording where each member's bytes lie; a member is then read (or a
 * disk opened, with ferry_image_open_window) in place, never unpacked.
 * Writing lays the descriptor, the manifest and the disks out one after
 * the other.
 *
 * Formats read: POSIX ustar (with its 155-byte prefix), GNU tar (long
 * names in 'L' entries, sizes in base-256), and pax extended headers
 * ('x': path and size).  The end is two zero blocks, one, or the end of
 * the file.
 *
 * NOTES ON HOSTILE ARCHIVES
 *
 * 1. Nothing in a header is trusted: each checksum is verified, every
 *    size must end inside the file, names are refused when absolute, when
 *    a component is "..", or when empty, and only regular files and
 *    folders are accepted (links, devices, FIFOs and GNU sparse or
 *    multi-volume members are refused by name).
 *
 * 2. Memory is bounded: at most FERRY_OVA_MAX_MEMBERS entries are read
 *    (a tar of a million empty files is refused at the first one past
 *    it, after reading only that much), and the data of 'L' and 'x'
 *    entries, the only data held in memory, is at most
 *    MAX_EXTENDED_HEADER bytes.
 *
 * 3. A name that appears twice is refused: which copy the manifest and
 *    the migration would each see is not something to guess.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/fault.h"
#include "../common/hash.h"
#include "../common/stop.h"
#include "../common/util.h"

#define BLOCK 512u

/* The most bytes of a GNU long name or pax header kept in memory. */
#define MAX_EXTENDED_HEADER (64u << 10)

/* Header fields: offset and length. */
#define H_NAME      0
#define H_MODE    100
#define H_UID     108
#define H_GID     116
#define H_SIZE    124
#define H_MTIME   136
#define H_CHKSUM  148
#define H_TYPE    156
#define H_LINK    157
#define H_MAGIC   257
#define H_VERSION 263
#define H_UNAME   265
#define H_GNAME   297
#define H_PREFIX  345

/* True when the 512 bytes at B are all zero. */
static bool
zero_block (const uint8_t *b)
{
  return is_zero (b, BLOCK);
}

/* The octal number in the LEN bytes at P (spaces and NULs around it
 * allowed), or base-256 when the first byte has its top bit set (GNU).
 * False when it is neither. */
static bool
parse_number (const uint8_t *p, size_t len, uint64_t *value)
{
  uint64_t v = 0;
  size_t i = 0;

  if (p[0] & 0x80) {
    /* Base-256, big-endian, the first byte's top bit a flag; a negative
     * number (0xff) is not a size. */
    if (p[0] == 0xff)
      return false;
    v = p[0] & 0x7f;
    for (i = 1; i < len; i++) {
      if (v >> 56)
        return false;
      v = (v << 8) | p[i];
    }
    *value = v;
    return true;
  }
  while (i < len && (p[i] == ' ' || p[i] == '\0'))
    i++;
  if (i == len) {
    *value = 0;
    return true;
  }
  for (; i < len && p[i] >= '0' && p[i] <= '7'; i++) {
    if (v >> 60)
      return false;
    v = (v << 3) | (p[i] - '0');
  }
  for (; i < len; i++)
    if (p[i] != ' ' && p[i] != '\0')
      return false;
  *value = v;
  return true;
}

/* True when the header's checksum matches (as unsigned bytes, or, as some
 * old tars computed it, signed). */
static bool
checksum_ok (const uint8_t *h)
{
  uint64_t stored;
  unsigned sum = 0;
  int ssum = 0;
  size_t i;

  if (!parse_number (h + H_CHKSUM, 8, &stored))
    return false;
  for (i = 0; i < BLOCK; i++) {
    uint8_t c = (i >= H_CHKSUM && i < H_CHKSUM + 8) ? ' ' : h[i];
    sum += c;
    ssum += (signed char) c;
  }
  return stored == sum || (int64_t) stored == ssum;
}

/* The C string in the LEN bytes at P, which need not be terminated. */
static char *
field_string (const uint8_t *p, size_t len)
{
  return strndup ((const char *) p, len);
}

/* Check NAME, a member's path, and strip "./" prefixes in place.  ARCHIVE
 * and OFFSET for messages.  0, or -1 with the error set. */
static int
check_name (const char *archive, uint64_t offset, char *name)
{
  size_t n;

  while (name[0] == '.' && name[1] == '/')
    memmove (name, name + 2, strlen (name + 2) + 1);
  if (name[0] == '\0')
    return ferry_error (EINVAL, "%s: tar header at offset %" PRIu64
                        ": the member has no name", archive, offset);
  if (name[0] == '/')
    return ferry_error (EPERM, "%s: tar header at offset %" PRIu64
                        ": member '%s' has an absolute path", archive,
                        offset, name);
  if (vm_name_has_dotdot (name))
    return ferry_error (EPERM, "%s: tar header at offset %" PRIu64
                        ": member '%s' climbs out of the archive with '..'",
                        archive, offset, name);
  /* A folder's trailing slash is not part of the name. */
  n = strlen (name);
  while (n > 1 && name[n - 1] == '/')
    name[--n] = '\0';
  return 0;
}

/* What the type flag C is called, for refusals. */
static const char *
type_name (uint8_t c)
{
  switch (c) {
  case '1': return "a hard link";
  case '2': return "a symbolic link";
  case '3': return "a character device";
  case '4': return "a block device";
  case '6': return "a FIFO";
  case 'S': return "a GNU sparse file";
  case 'M': return "a GNU multi-volume continuation";
  case 'K': return "a GNU long link name";
  case 'D': return "a GNU directory dump";
  case 'V': return "a volume label";
  default: return "an entry of an unknown type";
  }
}

/* Apply the pax extended header records in [P, P+LEN) (archive ARCHIVE,
 * header at OFFSET): "LENGTH key=value\n".  Sets *PATH and *SIZE when
 * they are given. */
static int
parse_pax (const char *archive, uint64_t offset, const char *p, size_t len,
           char **path, uint64_t *size, bool *has_size)
{
  const char *end = p + len;

  while (p < end) {
    uint64_t reclen = 0;
    const char *q = p, *eq, *rec_end;

    if (*p == '\0')
      break;                    /* padding */
    while (q < end && *q >= '0' && *q <= '9' && reclen < len)
      reclen = reclen * 10 + (*q++ - '0');
    if (q == p || q >= end || *q != ' ' || reclen > (uint64_t) (end - p) ||
        reclen < (uint64_t) (q - p) + 2 || p[reclen - 1] != '\n')
      return ferry_error (EINVAL, "%s: pax header at offset %" PRIu64
                          ": malformed record", archive, offset);
    rec_end = p + reclen - 1;
    q++;
    eq = memchr (q, '=', rec_end - q);
    if (eq == NULL)
      return ferry_error (EINVAL, "%s: pax header at offset %" PRIu64
                          ": record without '='", archive, offset);
    if ((size_t) (eq - q) == 4 && memcmp (q, "path", 4) == 0) {
      free (*path);
      *path = strndup (eq + 1, rec_end - eq - 1);
      if (*path == NULL)
        return ferry_error (ENOMEM, "out of memory");
      if (strlen (*path) != (size_t) (rec_end - eq - 1))
        return ferry_error (EINVAL, "%s: pax header at offset %" PRIu64
                            ": a path with a NUL byte", archive, offset);
    }
    else if ((size_t) (eq - q) == 4 && memcmp (q, "size", 4) == 0) {
      CLEANUP_FREE char *v = strndup (eq + 1, rec_end - eq - 1);
      if (v == NULL)
        return ferry_error (ENOMEM, "out of memory");
      if (!vm_parse_u64 (v, size))
        return ferry_error (EINVAL, "%s: pax header at offset %" PRIu64
                            ": size '%s' is not a number", archive, offset,
                            v);
      *has_size = true;
    }
    p += reclen;
  }
  return 0;
}

void
ferry_ova_free (struct ferry_ova *ova)
{
  size_t i;

  if (ova == NULL)
    return;
  for (i = 0; i < ova->nr_members; i++)
    free (ova->members[i].name);
  free (ova->members);
  free (ova->path);
  free (ova);
}

const struct ferry_ova_member *
ferry_ova_find (const struct ferry_ova *ova, const char *name)
{
  size_t i;

  while (name[0] == '.' && name[1] == '/')
    name += 2;
  for (i = 0; i < ova->nr_members; i++)
    if (strcmp (ova->members[i].name, name) == 0)
      return &ova->members[i];
  return NULL;
}

/* Add the member NAME (taken over) at OFFSET, LENGTH bytes. */
static int
add_member (struct ferry_ova *ova, char *name, uint64_t offset,
            uint64_t length, uint64_t header)
{
  struct ferry_ova_member *m;

  if (ferry_ova_find (ova, name)) {
    ferry_error (EINVAL, "%s: tar header at offset %" PRIu64 ": member "
                 "'%s' appears twice", ova->path, header, name);
    free (name);
    return -1;
  }
  m = realloc (ova->members, (ova->nr_members + 1) * sizeof *m);
  if (m == NULL) {
    free (name);
    return ferry_error (ENOMEM, "out of memory");
  }
  ova->members = m;
  m[ova->nr_members++] = (struct ferry_ova_member) {
    .name = name, .offset = offset, .length = length,
  };
  return 0;
}

/* Read the LEN bytes of an 'L' or 'x' entry's data at OFFSET of FD. */
static char *
read_extended (struct ferry_ova *ova, int fd, uint64_t offset, uint64_t len,
               uint64_t header)
{
  char *buf;

  if (len > MAX_EXTENDED_HEADER) {
    ferry_error (EFBIG, "%s: tar header at offset %" PRIu64 ": an extended "
                 "header of %" PRIu64 " bytes (at most %u)", ova->path,
                 header, len, MAX_EXTENDED_HEADER);
    return NULL;
  }
  buf = malloc (len + 1);
  if (buf == NULL) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (full_pread (fd, buf, len, offset) == -1) {
    ferry_error_errno (errno, "%s: read at offset %" PRIu64, ova->path,
                       offset);
    free (buf);
    return NULL;
  }
  buf[len] = '\0';
  return buf;
}

struct ferry_ova *
ferry_ova_open (const char *path)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);
  struct ferry_ova *ova = NULL;
  char *long_name = NULL, *pax_path = NULL;
  uint64_t pax_size = 0, pos = 0, file_size, entries = 0;
  bool pax_has_size = false;
  uint8_t h[BLOCK];
  struct stat st;

  if (fd == -1) {
    ferry_error_errno (errno, "%s", path);
    return NULL;
  }
  if (fstat (fd, &st) == -1) {
    ferry_error_errno (errno, "%s: stat", path);
    return NULL;
  }
  if (!S_ISREG (st.st_mode)) {
    ferry_error (EINVAL, "%s: not a regular file", path);
    return NULL;
  }
  file_size = st.st_size;
  ova = calloc (1, sizeof *ova);
  if (ova == NULL || (ova->path = strdup (path)) == NULL) {
    ferry_error (ENOMEM, "out of memory");
    goto err;
  }
  (void) posix_fadvise (fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  for (;;) {
    uint64_t size, data, next;
    char *name;
    uint8_t type;

    if (pos == file_size)
      break;                    /* no end-of-archive blocks: the end */
    if (file_size - pos < BLOCK) {
      ferry_error (EINVAL, "%s: the archive ends inside the tar header at "
                   "offset %" PRIu64, path, pos);
      goto err;
    }
    if (full_pread (fd, h, BLOCK, pos) == -1) {
      ferry_error_errno (errno, "%s: read at offset %" PRIu64, path, pos);
      goto err;
    }
    if (zero_block (h))
      break;                    /* the end-of-archive marker */
    if (!checksum_ok (h)) {
      if (pos == 0)
        ferry_error (EINVAL, "%s: not a tar archive (the first header's "
                     "checksum does not match)", path);
      else
        ferry_error (EINVAL, "%s: tar header at offset %" PRIu64 ": bad "
                     "checksum", path, pos);
      goto err;
    }
    if (++entries > FERRY_OVA_MAX_MEMBERS) {
      ferry_error (E2BIG, "%s: more than %u entries in the archive (an OVA "
                   "holds a descriptor, a manifest and its disks)", path,
                   FERRY_OVA_MAX_MEMBERS);
      goto err;
    }
    type = h[H_TYPE];
    if (!parse_number (h + H_SIZE, 12, &size)) {
      ferry_error (EINVAL, "%s: tar header at offset %" PRIu64 ": the size "
                   "field is not a number", path, pos);
      goto err;
    }
    if (type == '0' || type == '\0' || type == '7') {
      if (pax_has_size)
        size = pax_size;
    }
    data = pos + BLOCK;
    if (size > file_size - data) {
      ferry_error (EINVAL, "%s: tar header at offset %" PRIu64 ": the "
                   "member claims %" PRIu64 " bytes, past the end of the "
                   "archive (%" PRIu64 " bytes)", path, pos, size,
                   file_size);
      goto err;
    }
    next = data + ROUND_UP (size, (uint64_t) BLOCK);
    if (next > file_size)
      next = file_size;         /* the last member's padding may be cut */

    switch (type) {
    case 'L':                   /* GNU: the next entry's long name */
      free (long_name);
      long_name = read_extended (ova, fd, data, size, pos);
      if (long_name == NULL)
        goto err;
      break;
    case 'x':                   /* pax: the next entry's attributes */
    case 'g': {                 /* pax: global ones (a path there is odd,
                                   but taken the same way) */
      CLEANUP_FREE char *pax = read_extended (ova, fd, data, size, pos);
      if (pax == NULL ||
          parse_pax (path, pos, pax, size, &pax_path, &pax_size,
                     &pax_has_size) == -1)
        goto err;
      if (type == 'g') {
        free (pax_path);
        pax_path = NULL;
        pax_has_size = false;
      }
      break;
    }
    case '0': case '\0': case '7': case '5': {
      /* A regular file (or a folder, which is only checked). */
      if (pax_path) {
        name = pax_path;
        pax_path = NULL;
      }
      else if (long_name) {
        name = long_name;
        long_name = NULL;
      }
      else if (memcmp (h + H_MAGIC, "ustar", 6) == 0 && h[H_PREFIX]) {
        /* POSIX ustar ("ustar\0"); GNU's "ustar  " keeps atime and
         * ctime there, and long names in 'L' entries. */
        CLEANUP_FREE char *prefix = field_string (h + H_PREFIX, 155);
        CLEANUP_FREE char *base = field_string (h + H_NAME, 100);
        if (prefix == NULL || base == NULL ||
            asprintf (&name, "%s/%s", prefix, base) == -1) {
          ferry_error (ENOMEM, "out of memory");
          goto err;
        }
      }
      else
        name = field_string (h + H_NAME, 100);
      if (name == NULL) {
        ferry_error (ENOMEM, "out of memory");
        goto err;
      }
      if (check_name (path, pos, name) == -1) {
        free (name);
        goto err;
      }
      if (type == '5')
        free (name);
      else if (add_member (ova, name, data, size, pos) == -1)
        goto err;
      free (long_name);
      long_name = NULL;
      pax_has_size = false;
      break;
    }
    default: {
      CLEANUP_FREE char *name = pax_path ? strdup (pax_path)
        : long_name ? strdup (long_name) : field_string (h + H_NAME, 100);
      ferry_error (EPERM, "%s: tar header at offset %" PRIu64 ": member "
                   "'%s' is %s, which an OVA does not hold", path, pos,
                   name ? name : "?", type_name (type));
      goto err;
    }
    }
    pos = next;
  }
  if (long_name || pax_path) {
    ferry_error (EINVAL, "%s: the archive ends after an extended header, "
                 "with no member for it", path);
    goto err;
  }
  return ova;

 err:
  free (long_name);
  free (pax_path);
  ferry_ova_free (ova);
  return NULL;
}

/* --- writing ------------------------------------------------------------ */

/* Fill the header H for a regular file NAME of SIZE bytes. */
static int
make_header (uint8_t *h, const char *name, uint64_t size)
{
  size_t len = strlen (name);
  unsigned sum = 0;
  size_t i;

  memset (h, 0, BLOCK);
  if (len == 0 || len > 100)
    return ferry_error (ENAMETOOLONG, "%s: names in an OVA are 1 to 100 "
                        "bytes long", name);
  memcpy (h + H_NAME, name, len);
  memcpy (h + H_MODE, "0000644", 8);
  memcpy (h + H_UID, "0000000", 8);
  memcpy (h + H_GID, "0000000", 8);
  if (size < (UINT64_C (1) << 33))
    snprintf ((char *) h + H_SIZE, 12, "%011" PRIo64, size);
  else {
    /* Base-256 (GNU), which every tar reader of OVAs takes. */
    h[H_SIZE] = 0x80;
    for (i = 0; i < 8; i++)
      h[H_SIZE + 11 - i] = size >> (8 * i);
  }
  memcpy (h + H_MTIME, "00000000000", 12);
  h[H_TYPE] = '0';
  memcpy (h + H_MAGIC, "ustar", 6);
  memcpy (h + H_VERSION, "00", 2);
  memcpy (h + H_UNAME, "root", 4);
  memcpy (h + H_GNAME, "root", 4);
  for (i = 0; i < BLOCK; i++)
    sum += (i >= H_CHKSUM && i < H_CHKSUM + 8) ? ' ' : h[i];
  snprintf ((char *) h + H_CHKSUM, 8, "%06o", sum);
  h[H_CHKSUM + 7] = ' ';
  return 0;
}

/* The digest of the file PATH (ALG) into HEX. */
static int
digest_file (const char *path, enum hash_algorithm alg, char *hex)
{
  struct ferry_vm_manifest_entry e = {
    .name = (char *) path, .algorithm = (char *) hash_algorithm_name (alg),
    .digest = (char *) "",
  };
  char *got = NULL;
  int r = ferry_vm_verify_digest (&e, path, 0, UINT64_MAX, &got, NULL, NULL);

  if (r == -1)
    return -1;
  snprintf (hex, HASH_HEX_MAX, "%s", got ? got : "");
  free (got);
  return 0;
}

/* Append LEN bytes of DATA at *POS of FD, then the padding to a block. */
static int
append_data (const char *path, int fd, uint64_t *pos, const void *data,
             size_t len)
{
  static const uint8_t zeroes[BLOCK];
  size_t pad = ROUND_UP (len, (size_t) BLOCK) - len;

  if (full_pwrite (fd, data, len, *pos) == -1 ||
      full_pwrite (fd, zeroes, pad, *pos + len) == -1)
    return ferry_error_errno (errno, "%s: write at offset %" PRIu64, path,
                              *pos);
  *pos += len + pad;
  return 0;
}

/* Append the file SRC (SIZE bytes) at *POS of FD, in the kernel where it
 * can (copy_file_range), then the padding. */
static int
append_file (const char *path, int fd, uint64_t *pos, const char *src,
             uint64_t size)
{
  static const uint8_t zeroes[BLOCK];
  CLEANUP_CLOSE int sfd = open (src, O_RDONLY | O_CLOEXEC);
  loff_t in = 0, out = *pos;
  size_t pad = ROUND_UP (size, (uint64_t) BLOCK) - size;

  if (sfd == -1)
    return ferry_error_errno (errno, "%s", src);
  while ((uint64_t) in < size) {
    ssize_t r;

    /* In pieces of 256 MiB, so that a stop request is seen; a write like
     * full_pwrite's, for fault injection. */
    if (stop_requested ())
      return ferry_error (EINTR, "%s: interrupted", path);
    r = fault_point (FAULT_WRITE, fd, NULL) == -1 ? -1 :
      copy_file_range (sfd, &in, fd, &out,
                       MIN (size - in, (uint64_t) 256 << 20), 0);
    if (r == -1 && (errno == EXDEV || errno == ENOSYS ||
                    errno == EOPNOTSUPP || errno == EINVAL)) {
      /* Plain reads and writes, where the kernel cannot copy. */
      CLEANUP_FREE char *buf = malloc (1 << 20);
      if (buf == NULL)
        return ferry_error (ENOMEM, "out of memory");
      while ((uint64_t) in < size) {
        size_t n = MIN (size - in, (uint64_t) 1 << 20);
        if (stop_requested ())
          return ferry_error (EINTR, "%s: interrupted", path);
        if (full_pread (sfd, buf, n, in) == -1)
          return ferry_error_errno (errno, "%s: read", src);
        if (full_pwrite (fd, buf, n, out) == -1)
          return ferry_error_errno (errno, "%s: write at offset %" PRIu64,
                                    path, (uint64_t) out);
        in += n;
        out += n;
      }
      break;
    }
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return ferry_error_errno (errno, "%s: copying %s into it", path, src);
    if (r == 0)
      return ferry_error (EIO, "%s: shorter than it was (%" PRIu64
                          " bytes)", src, size);
  }
  if (full_pwrite (fd, zeroes, pad, out) == -1)
    return ferry_error_errno (errno, "%s: write", path);
  *pos = out + pad;
  return 0;
}

int
ferry_ova_write (const char *path, const struct ferry_ova_input *inputs,
                 size_t nr_inputs, const char *mf_name, const char *algorithm)
{
  CLEANUP_FREE uint64_t *sizes = NULL;
  enum hash_algorithm alg;
  CLEANUP_FREE struct strbuf mf = { 0 };
  size_t i;
  uint8_t h[BLOCK];
  uint64_t pos = 0;
  int fd;

  if (nr_inputs == 0)
    return ferry_error (EINVAL, "%s: an OVA needs its descriptor", path);
  if (!hash_algorithm_by_name (algorithm, &alg))
    return ferry_error (EINVAL, "%s: unknown digest algorithm %s", path,
                        algorithm);
  sizes = calloc (nr_inputs, sizeof *sizes);
  if (sizes == NULL)
    return ferry_error (ENOMEM, "out of memory");

  /* The manifest first: the digest and size of every input. */
  for (i = 0; i < nr_inputs; i++) {
    char hex[HASH_HEX_MAX];

    if (inputs[i].path) {
      struct stat st;
      if (stat (inputs[i].path, &st) == -1)
        return ferry_error_errno (errno, "%s", inputs[i].path);
      sizes[i] = st.st_size;
      if (digest_file (inputs[i].path, alg, hex) == -1)
        return -1;
    }
    else {
      struct hash_ctx ctx;
      sizes[i] = inputs[i].len;
      hash_init (&ctx, alg);
      hash_update (&ctx, inputs[i].data, inputs[i].len);
      hash_final_hex (&ctx, hex);
    }
    strbuf_printf (&mf, "%s(%s)= %s\n", hash_algorithm_name (alg),
                   inputs[i].name, hex);
  }
  if (mf.failed)
    return ferry_error (ENOMEM, "out of memory");

  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd == -1)
    return ferry_error_errno (errno, "%s", path);
  for (i = 0; i < nr_inputs; i++) {
    if (make_header (h, inputs[i].name, sizes[i]) == -1 ||
        append_data (path, fd, &pos, h, BLOCK) == -1)
      goto err;
    if (inputs[i].path ?
        append_file (path, fd, &pos, inputs[i].path, sizes[i]) :
        append_data (path, fd, &pos, inputs[i].data, inputs[i].len))
      goto err;
    if (i == 0 && mf_name) {
      /* The manifest right after the descriptor, as OVF 1.x wants. */
      if (make_header (h, mf_name, mf.len) == -1 ||
          append_data (path, fd, &pos, h, BLOCK) == -1 ||
          append_data (path, fd, &pos, mf.buf, mf.len) == -1)
        goto err;
    }
  }
  /* Two zero blocks end the archive. */
  memset (h, 0, BLOCK);
  if (append_data (path, fd, &pos, h, BLOCK) == -1 ||
      append_data (path, fd, &pos, h, BLOCK) == -1)
    goto err;
  if (close (fd) == -1) {
    fd = -1;
    ferry_error_errno (errno, "%s: close", path);
    goto err;
  }
  return 0;

 err:
  if (fd >= 0)
    close (fd);
  unlink (path);
  return -1;
}
