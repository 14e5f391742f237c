/* What a VMDK's text descriptor tells the VM layer about a disk named by
 * a VMX or a .vbox file, before any image is opened: which files make the
 * disk (the descriptor and its extents, for the missing-file check and
 * the space needed), whether it is a snapshot (parentFileNameHint), a raw
 * device mapping (createType vmfsRawDeviceMap or
 * vmfsPassthroughRawDeviceMap, or an extent of type VMFSRDM or VMFSRAW),
 * or encrypted (encryption.keySafe / encryption.data, which VMware adds to
 * the descriptors of encrypted disks).
 *
 * The descriptor is a text file of its own, or embedded in a hosted sparse
 * extent (the "KDMV" header's descriptorOffset and descriptorSize, in
 * sectors).  Reading the disk's data is the image layer's business; this
 * only reads the descriptor's lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* The largest descriptor read (the VMDK driver's limit too). */
#define MAX_DESCRIPTOR (1u << 20)
#define KDMV_MAGIC 0x564d444bu

void
vm_vmdk_info_free (struct vm_vmdk_info *info)
{
  size_t i;

  free (info->create_type);
  free (info->parent);
  for (i = 0; i < info->nr_extent_files; i++)
    free (info->extent_files[i]);
  free (info->extent_files);
  memset (info, 0, sizeof *info);
}

/* The quoted or bare value in [P, END): strip blanks and quotes. */
static char *
value_of (const char *p, const char *end)
{
  vm_trim_value (&p, &end);
  return strndup (p, end - p);
}

/* Parse one extent line "ACCESS SECTORS TYPE ["FILE" [OFFSET]]" into INFO;
 * DIR resolves the file.  False when the line is not an extent line. */
static int
parse_extent (const char *path, const char *dir, const char *p,
              const char *end, struct vm_vmdk_info *info)
{
  static const char *const access[] = { "RW ", "RDONLY ", "NOACCESS " };
  char type[32];
  const char *q, *fstart, *fend;
  uint64_t sectors = 0;
  size_t i, n;
  char **files;

  for (i = 0; i < 3; i++)
    if ((size_t) (end - p) > strlen (access[i]) &&
        strncmp (p, access[i], strlen (access[i])) == 0)
      break;
  if (i == 3)
    return 0;
  p += strlen (access[i]);
  while (p < end && *p == ' ')
    p++;
  for (q = p; q < end && *q >= '0' && *q <= '9'; q++) {
    if (sectors > UINT64_MAX / 10 - 10)
      return ferry_error (EINVAL, "%s: extent line: size out of range",
                          path);
    sectors = sectors * 10 + (*q - '0');
  }
  if (q == p)
    return 0;
  p = q;
  while (p < end && *p == ' ')
    p++;
  for (n = 0; p < end && *p != ' ' && n < sizeof type - 1; p++)
    type[n++] = *p;
  type[n] = '\0';
  if (sectors > (UINT64_MAX >> 9) - (info->capacity >> 9))
    return ferry_error (EINVAL, "%s: extent line: size out of range", path);
  info->capacity += sectors << 9;
  if (!strcasecmp (type, "VMFSRDM") || !strcasecmp (type, "VMFSRAW"))
    info->rdm = true;
  if (!strcasecmp (type, "ZERO"))
    return 1;

  fstart = memchr (p, '"', end - p);
  fend = fstart ? memchr (fstart + 1, '"', end - fstart - 1) : NULL;
  if (fend == NULL || fend == fstart + 1)
    return ferry_error (EINVAL, "%s: the %s extent line names no file",
                        path, type);
  if (info->nr_extent_files >= 4096)
    return ferry_error (E2BIG, "%s: more than 4096 extents", path);
  files = realloc (info->extent_files,
                   (info->nr_extent_files + 1) * sizeof *files);
  if (files == NULL)
    return ferry_error (ENOMEM, "out of memory");
  info->extent_files = files;
  {
    CLEANUP_FREE char *name = strndup (fstart + 1, fend - fstart - 1);
    if (name == NULL ||
        (files[info->nr_extent_files] = vm_path_join (dir, name)) == NULL)
      return ferry_error (ENOMEM, "out of memory");
  }
  info->nr_extent_files++;
  return 1;
}

/* Parse the descriptor TEXT of the VMDK at PATH into INFO. */
static int
parse_descriptor (const char *path, const char *text, size_t len,
                  struct vm_vmdk_info *info)
{
  CLEANUP_FREE char *dir = vm_dirname (path);
  const char *p = text, *end = text + len;

  if (dir == NULL)
    return ferry_error (ENOMEM, "out of memory");
  while (p < end) {
    const char *nl = memchr (p, '\n', end - p), *eol = nl ? nl : end;
    const char *eq;
    int r;

    while (p < eol && (*p == ' ' || *p == '\t'))
      p++;
    if (p == eol || *p == '#') {
      p = nl ? nl + 1 : end;
      continue;
    }
    r = parse_extent (path, dir, p, eol, info);
    if (r == -1)
      return -1;
    if (r == 0 && (eq = memchr (p, '=', eol - p))) {
      const char *k = p, *kend = eq;
      while (kend > k && (kend[-1] == ' ' || kend[-1] == '\t'))
        kend--;
#define KEY_IS(s) ((size_t) (kend - k) == strlen (s) && \
                   strncasecmp (k, s, kend - k) == 0)
      if (KEY_IS ("createType")) {
        free (info->create_type);
        info->create_type = value_of (eq + 1, eol);
        if (info->create_type == NULL)
          return ferry_error (ENOMEM, "out of memory");
      }
      else if (KEY_IS ("parentFileNameHint")) {
        free (info->parent);
        info->parent = value_of (eq + 1, eol);
        if (info->parent == NULL)
          return ferry_error (ENOMEM, "out of memory");
      }
      else if ((size_t) (kend - k) > 11 &&
               strncasecmp (k, "encryption.", 11) == 0)
        info->encrypted = true;
#undef KEY_IS
    }
    p = nl ? nl + 1 : end;
  }
  if (info->create_type &&
      (!strcasecmp (info->create_type, "vmfsRawDeviceMap") ||
       !strcasecmp (info->create_type, "vmfsPassthroughRawDeviceMap")))
    info->rdm = true;
  return 1;
}

int
vm_vmdk_descriptor (const char *path, struct vm_vmdk_info *info)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);
  CLEANUP_FREE char *text = NULL;
  uint8_t head[512];
  uint64_t off = 0, len, size;
  struct stat st;

  memset (info, 0, sizeof *info);
  if (fd == -1)
    return ferry_error_errno (errno, "%s", path);
  if (fstat (fd, &st) == -1)
    return ferry_error_errno (errno, "%s: stat", path);
  if (!S_ISREG (st.st_mode))
    return ferry_error (EINVAL, "%s: not a regular file", path);
  size = st.st_size;
  if (full_pread (fd, head, sizeof head, 0) == -1)
    return ferry_error_errno (errno, "%s: read", path);

  if (size >= 512 && get_le32 (head) == KDMV_MAGIC) {
    uint64_t doff = get_le64 (head + 28), dsize = get_le64 (head + 36);
    if (doff == 0 || dsize == 0)
      return 0;                 /* a stream or extent without one */
    if (doff > size / 512 || dsize > MAX_DESCRIPTOR / 512)
      return ferry_error (EINVAL, "%s: sparse header: the embedded "
                          "descriptor (sector %" PRIu64 ", %" PRIu64
                          " sectors) lies outside the file", path, doff,
                          dsize);
    off = doff * 512;
    len = MIN (dsize * 512, size - off);
  }
  else {
    /* A text descriptor: small, and starts like one. */
    if (size > MAX_DESCRIPTOR ||
        (memmem (head, MIN (size, sizeof head), "# Disk DescriptorFile", 21)
         == NULL &&
         memmem (head, MIN (size, sizeof head), "createType", 10) == NULL))
      return 0;
    len = size;
  }
  if (vm_read_range (path, off, len, &text) == -1)
    return -1;
  /* An embedded descriptor is padded with NULs. */
  len = strnlen (text, len);
  if (parse_descriptor (path, text, len, info) == -1) {
    vm_vmdk_info_free (info);
    return -1;
  }
  return 1;
}
