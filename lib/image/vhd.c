/* vhd: Microsoft's Virtual Hard Disk, read side ("vpc" to qemu-img).
 *
 * Fixed, dynamic and differencing disks.  Creating and writing live in
 * vhd-write.c; the layout is described in vhd-internal.h.
 *
 * NOTES ON THE DESIGN
 *
 * 1. A fixed disk has its footer only at the end, so the probe looks
 *    there too (qemu-img looks only at the start and calls such a file
 *    raw).  A footer at the end that says "fixed" wins over one at the
 *    start: the start of a fixed disk is the guest's first sector, which
 *    may itself hold anything.  A dynamic disk keeps a copy of the footer
 *    at the start; the one with a good checksum is used, the start first.
 *
 * 2. The virtual size is the footer's current size, or the CHS geometry
 *    times 512 for disks whose creator sized them by geometry (Virtual
 *    PC, Virtual Server, and qemu-img's default), unless the geometry is
 *    the largest there is, which cannot express the size.  Every other
 *    creator, known (Windows and Hyper-V, Disk2vhd, Azure, XenServer,
 *    VirtualBox, qemu-img force_size=on, ferry) or not, means the current
 *    size, as the specification defines it.  qemu-img 7.2 sizes every
 *    creator it does not list by geometry, Azure's "wa\0\0" and
 *    Disk2vhd's "d2v\0" among them, and so cuts such disks short; ferry
 *    info says which size it took and why.
 *
 * 3. A bad footer or header checksum is a warning (through the log
 *    callback) when the rest of the structure checks out, as Windows and
 *    libvhdi read such files; FERRY_OPEN_STRICT refuses it.  Everything
 *    else read from the file is checked before use: the BAT must lie in
 *    the file, cover the disk and not overlap the header; every block
 *    must lie in the file, clear of the metadata and of other blocks.
 *    The BAT is read whole at open: it is never larger than the file.
 *
 * 4. A dynamic disk's sector bitmaps are not consulted: qemu-img,
 *    Windows and Disk2vhd all set every bit of an allocated block, and
 *    qemu-img reads allocated blocks whole.  A differencing disk's bitmap
 *    says, sector by sector, whether the child or the parent holds the
 *    data, and is read with each request.
 *
 * 5. The parent of a differencing disk is looked for relative to the
 *    child, with the locators in the order Windows uses them: the
 *    relative one (W2ru, or the deprecated Wi2r), the Mac file URL
 *    (MacX), then the file names of the absolute ones (W2ku, Wi2k, MacX)
 *    and of the header's parent name beside the child.  The parent's
 *    unique id must be the one the child records.  The Mac alias blob
 *    ("Mac ") is not decoded.
 *
 * 6. Reads take no lock: the BAT of a read-only image never changes, and
 *    a writable image changes an entry only with an atomic store after
 *    the block's data is in the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhd-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* The most extents one call reports, and the most blocks it walks; the
 * caller asks again from where the list ends. */
#define VHD_EXTENTS_MAX_RUNS 4096
#define VHD_EXTENTS_MAX_BLOCKS 1024



/* The one's complement of the byte sum of BUF (LEN bytes), leaving out
 * the four bytes of the checksum field at FIELD. */
uint32_t
vhd_checksum (const uint8_t *buf, size_t len, size_t field)
{
  uint32_t sum = 0;
  size_t i;

  for (i = 0; i < len; i++)
    if (i < field || i >= field + 4)
      sum += buf[i];
  return ~sum;
}

/* How sure we are that a footer at F (512 bytes) is a VHD footer. */
static int
footer_score (const uint8_t *f, uint64_t file_size, bool at_end)
{
  uint32_t type;

  if (memcmp (f, VHD_COOKIE, 8) != 0)
    return 0;
  type = get_be32 (f + VHD_F_DISK_TYPE);
  if (at_end && type == VHD_TYPE_FIXED) {
    if (get_be64 (f + VHD_F_CURRENT_SIZE) <= file_size - VHD_FOOTER_SIZE &&
        vhd_checksum (f, VHD_FOOTER_SIZE, VHD_F_CHECKSUM) ==
        get_be32 (f + VHD_F_CHECKSUM))
      return 100;
    return 80;
  }
  if (!at_end && (type == VHD_TYPE_DYNAMIC || type == VHD_TYPE_DIFF))
    return 100;
  return 50;                    /* let open say what is wrong */
}

/* A fixed disk has its footer at the end (note 1); any other has it at
 * the start too. */
static int
vhd_probe (const uint8_t *head, size_t head_len, const uint8_t *tail,
           size_t tail_len, uint64_t file_size)
{
  int s_tail = 0, s_head = 0;

  if (tail_len >= VHD_FOOTER_SIZE)
    s_tail = footer_score (tail + tail_len - VHD_FOOTER_SIZE, file_size,
                           true);
  if (head_len >= VHD_FOOTER_SIZE)
    s_head = footer_score (head, file_size, false);
  return MAX (s_tail, s_head);
}

/* Format the 16-byte id at U into OUT as 8-4-4-4-12 hex digits, in the
 * byte order of the file. */
static void
format_uuid (const uint8_t *u, char out[37])
{
  static const char hex[] = "0123456789abcdef";
  char *p = out;
  int i;

  for (i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      *p++ = '-';
    *p++ = hex[u[i] >> 4];
    *p++ = hex[u[i] & 15];
  }
  *p = '\0';
}

/* A four-byte code such as the creator application, printable: "vpc",
 * "wa\0\0", "d2v\0".  Trailing spaces are dropped. */
static void
format_code (const uint8_t *c, char out[20])
{
  char *p = out;
  int i, n = 4;

  while (n > 0 && c[n - 1] == ' ')
    n--;
  for (i = 0; i < n; i++) {
    if (c[i] == 0) {
      memcpy (p, "\\0", 2);
      p += 2;
    }
    else if (c[i] < 0x20 || c[i] >= 0x7f)
      p += sprintf (p, "\\x%02x", c[i]);
    else
      *p++ = c[i];
  }
  *p = '\0';
}

/* What each creator application means by the disk's size (note 2). */
static const struct {
  uint8_t app[4];
  bool by_geometry;
  const char *who;
} creators[] = {
  { "vpc ", true, "Virtual PC" },
  { "vs  ", true, "Virtual Server" },
  { "qemu", true, "qemu-img (force_size=off)" },
  { "qem2", false, "qemu-img (force_size=on)" },
  { "win ", false, "Windows: Hyper-V or Disk Management" },
  { "d2v ", false, "Disk2vhd" },
  { { 'd', '2', 'v', 0 }, false, "Disk2vhd" },
  { { 'w', 'a', 0, 0 }, false, "Azure" },
  { { 't', 'a', 'p', 0 }, false, "XenServer" },
  { "CTXS", false, "XenConverter" },
  { "vbox", false, "VirtualBox" },
  { "frry", false, "ferry" },
};

/* Set the virtual size from the footer, and say why (note 2). */
static void
choose_size (struct vhd_image *v)
{
  const uint8_t *f = v->footer;
  uint32_t geo = get_be32 (f + VHD_F_GEOMETRY);
  uint64_t c = geo >> 16, h = (geo >> 8) & 0xff, s = geo & 0xff;
  uint64_t chs = c * h * s * VHD_SECTOR;
  char app[20];
  size_t i;

  format_code (f + VHD_F_CREATOR_APP, app);
  v->base.size = v->current_size;
  if (c == VHD_MAX_CYLINDERS && h == VHD_MAX_HEADS && s == VHD_MAX_SPT) {
    snprintf (v->size_reason, sizeof v->size_reason,
              "the geometry is the largest there is (65535/16/255), "
              "which cannot express the size");
    return;
  }
  for (i = 0; i < sizeof creators / sizeof creators[0]; i++) {
    if (memcmp (f + VHD_F_CREATOR_APP, creators[i].app, 4) != 0)
      continue;
    if (creators[i].by_geometry && chs == 0) {
      snprintf (v->size_reason, sizeof v->size_reason,
                "creator '%s' (%s) sizes disks by geometry, but the "
                "geometry is empty", app, creators[i].who);
      return;
    }
    if (creators[i].by_geometry) {
      v->base.size = chs;
      v->size_from_geometry = true;
    }
    snprintf (v->size_reason, sizeof v->size_reason,
              "creator '%s' (%s) sizes disks by %s", app, creators[i].who,
              creators[i].by_geometry ? "their CHS geometry" :
              "the current size field");
    return;
  }
  snprintf (v->size_reason, sizeof v->size_reason,
            "creator '%s' is not one ferry knows; the current size field "
            "is the size the specification defines", app);
}

/* Read the 512 bytes at OFFSET of V's file into BUF. */
static int
read_at (struct vhd_image *v, void *buf, size_t len, uint64_t offset,
         const char *what)
{
  if (full_pread (v->fd, buf, len, offset) == -1)
    return ferry_error_errno (errno, "%s: reading the %s at offset 0x%"
                              PRIx64, v->base.path, what, offset);
  return 0;
}

/* Find the footer (note 1), check it and take the type and size from it.
 * *FOOTER_OFF says where it was. */
static int
load_footer (struct vhd_image *v, uint64_t *footer_off)
{
  uint8_t head[VHD_FOOTER_SIZE], tail[VHD_FOOTER_SIZE];
  bool head_ok = false, tail_ok = false;
  uint32_t head_type = 0, tail_type = 0, version;
  const char *path = v->base.path;

  if (v->file_size < VHD_FOOTER_SIZE)
    return ferry_error (EINVAL, "%s: file of %" PRIu64 " bytes is too small "
                        "to hold a VHD footer (512 bytes)", path,
                        v->file_size);
  if (read_at (v, head, sizeof head, 0, "footer") == -1 ||
      read_at (v, tail, sizeof tail, v->file_size - VHD_FOOTER_SIZE,
               "footer") == -1)
    return -1;
  if (memcmp (head, VHD_COOKIE, 8) == 0) {
    head_ok = true;
    head_type = get_be32 (head + VHD_F_DISK_TYPE);
  }
  if (memcmp (tail, VHD_COOKIE, 8) == 0) {
    tail_ok = true;
    tail_type = get_be32 (tail + VHD_F_DISK_TYPE);
  }

  if (tail_ok && tail_type == VHD_TYPE_FIXED) {
    memcpy (v->footer, tail, sizeof tail);
    *footer_off = v->file_size - VHD_FOOTER_SIZE;
    snprintf (v->footer_where, sizeof v->footer_where, "at the end");
  }
  else if (head_ok && (head_type == VHD_TYPE_DYNAMIC ||
                       head_type == VHD_TYPE_DIFF)) {
    bool head_good = vhd_checksum (head, 512, VHD_F_CHECKSUM) ==
      get_be32 (head + VHD_F_CHECKSUM);
    bool tail_good = tail_ok && tail_type == head_type &&
      vhd_checksum (tail, 512, VHD_F_CHECKSUM) ==
      get_be32 (tail + VHD_F_CHECKSUM);
    if (!head_good && tail_good) {
      memcpy (v->footer, tail, sizeof tail);
      *footer_off = v->file_size - VHD_FOOTER_SIZE;
    }
    else {
      memcpy (v->footer, head, sizeof head);
      *footer_off = 0;
    }
    snprintf (v->footer_where, sizeof v->footer_where, "%s",
              tail_ok ? "at the start and at the end" : "at the start only");
  }
  else if (tail_ok && (tail_type == VHD_TYPE_DYNAMIC ||
                       tail_type == VHD_TYPE_DIFF)) {
    memcpy (v->footer, tail, sizeof tail);
    *footer_off = v->file_size - VHD_FOOTER_SIZE;
    snprintf (v->footer_where, sizeof v->footer_where, "at the end only");
  }
  else if (head_ok || tail_ok)
    return ferry_error (EINVAL, "%s: footer at offset 0x%" PRIx64 ": disk "
                        "type %" PRIu32 " is not fixed (2) at the end of the "
                        "file, nor dynamic (3) or differencing (4) at its "
                        "start", path, tail_ok ? v->file_size - 512 : 0,
                        tail_ok ? tail_type : head_type);
  else
    return ferry_error (EINVAL, "%s: no VHD footer ('conectix') at offset 0 "
                        "or at the end of the file", path);

  v->has_tail_footer = tail_ok;
  v->type = get_be32 (v->footer + VHD_F_DISK_TYPE);
  version = get_be32 (v->footer + VHD_F_VERSION);
  if ((version >> 16) != 1)
    return ferry_error (EINVAL, "%s: footer at offset 0x%" PRIx64 ": format "
                        "version %" PRIu32 ".%" PRIu32 " (ferry reads 1.x)",
                        path, *footer_off, version >> 16, version & 0xffff);
  v->footer_checksum_bad = vhd_checksum (v->footer, 512, VHD_F_CHECKSUM) !=
    get_be32 (v->footer + VHD_F_CHECKSUM);
  v->current_size = get_be64 (v->footer + VHD_F_CURRENT_SIZE);
  choose_size (v);
  return 0;
}

/* Read and check the dynamic header, then the BAT (note 3). */
static int
load_header (struct vhd_image *v)
{
  const char *path = v->base.path;
  uint8_t *h = v->header;
  uint64_t off = get_be64 (v->footer + VHD_F_DATA_OFFSET);
  uint64_t bat_bytes, needed;
  uint32_t version;

  if (off < VHD_FOOTER_SIZE || off > v->file_size ||
      v->file_size - off < VHD_HEADER_SIZE)
    return ferry_error (EINVAL, "%s: footer: the dynamic disk header at "
                        "offset 0x%" PRIx64 " does not lie in the file (size "
                        "%" PRIu64 " bytes)", path, off, v->file_size);
  v->header_offset = off;
  if (read_at (v, h, VHD_HEADER_SIZE, off, "dynamic disk header") == -1)
    return -1;
  if (memcmp (h, VHD_HEADER_COOKIE, 8) != 0)
    return ferry_error (EINVAL, "%s: dynamic disk header at offset 0x%" PRIx64
                        ": no 'cxsparse' cookie", path, off);
  version = get_be32 (h + VHD_H_VERSION);
  if ((version >> 16) != 1)
    return ferry_error (EINVAL, "%s: dynamic disk header at offset 0x%" PRIx64
                        ": version %" PRIu32 ".%" PRIu32 " (ferry reads 1.x)",
                        path, off, version >> 16, version & 0xffff);
  v->header_checksum_bad = vhd_checksum (h, VHD_HEADER_SIZE, VHD_H_CHECKSUM)
    != get_be32 (h + VHD_H_CHECKSUM);

  v->block_size = get_be32 (h + VHD_H_BLOCK_SIZE);
  if (!is_power_of_2 (v->block_size) || v->block_size < VHD_MIN_BLOCK_SIZE ||
      v->block_size > VHD_MAX_BLOCK_SIZE)
    return ferry_error (EINVAL, "%s: dynamic disk header at offset 0x%" PRIx64
                        ": block size %" PRIu32 " is not a power of 2 from "
                        "512 bytes to 256 MiB", path, off, v->block_size);
  v->block_bits = __builtin_ctz (v->block_size);
  v->bitmap_size = ROUND_UP (v->block_size / VHD_SECTOR / 8, VHD_SECTOR);
  if (v->bitmap_size == 0)
    v->bitmap_size = VHD_SECTOR;

  v->bat_offset = get_be64 (h + VHD_H_TABLE_OFFSET);
  v->max_entries = get_be32 (h + VHD_H_MAX_ENTRIES);
  bat_bytes = (uint64_t) v->max_entries * 4;
  if (v->bat_offset > v->file_size || v->file_size - v->bat_offset < bat_bytes)
    return ferry_error (EINVAL, "%s: dynamic disk header at offset 0x%" PRIx64
                        ": the BAT of %" PRIu32 " entries at offset 0x%" PRIx64
                        " runs past the end of the file (size %" PRIu64
                        " bytes)", path, off, v->max_entries, v->bat_offset,
                        v->file_size);
  if (v->bat_offset < VHD_FOOTER_SIZE ||
      (v->bat_offset < off + VHD_HEADER_SIZE &&
       v->bat_offset + bat_bytes > off))
    return ferry_error (EINVAL, "%s: dynamic disk header at offset 0x%" PRIx64
                        ": the BAT at offset 0x%" PRIx64 " overlaps the "
                        "footer copy or the header", path, off,
                        v->bat_offset);
  needed = DIV_ROUND_UP (v->base.size, (uint64_t) v->block_size);
  if (needed > v->max_entries)
    return ferry_error (EINVAL, "%s: dynamic disk header at offset 0x%" PRIx64
                        ": the BAT has %" PRIu32 " entries of %" PRIu32
                        " bytes, too few for the disk's %" PRIu64 " bytes",
                        path, off, v->max_entries, v->block_size,
                        v->base.size);
  v->nr_entries = needed;
  return 0;
}

/* Whether [A, A+ALEN) and [B, B+BLEN) share a byte. */
static bool
overlaps (uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
  return a < b + blen && b < a + alen;
}

/* Compare two BAT entries, for qsort. */
static int
cmp_u32 (const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

  return x < y ? -1 : x > y;
}

/* Read the BAT and check every block it points to (note 3). */
static int
load_bat (struct vhd_image *v)
{
  const char *path = v->base.path;
  uint64_t stride = (uint64_t) v->bitmap_size + v->block_size;
  uint64_t data_end = v->file_size -
    (v->has_tail_footer ? VHD_FOOTER_SIZE : 0);
  uint64_t bat_bytes = (uint64_t) v->max_entries * 4;
  CLEANUP_FREE uint32_t *sorted = NULL;
  uint32_t i, n = v->nr_entries, nused = 0;

  v->bat = malloc (MAX (n, 1u) * sizeof *v->bat);
  sorted = malloc (MAX (n, 1u) * sizeof *sorted);
  if (v->bat == NULL || sorted == NULL)
    return ferry_error (ENOMEM, "%s: out of memory for a BAT of %" PRIu32
                        " entries", path, n);
  if (n && read_at (v, v->bat, (size_t) n * 4, v->bat_offset, "BAT") == -1)
    return -1;
  for (i = 0; i < n; i++) {
    uint64_t start;
    v->bat[i] = be32toh (v->bat[i]);
    if (v->bat[i] == VHD_BAT_UNUSED)
      continue;
    start = (uint64_t) v->bat[i] * VHD_SECTOR;
    if (start + v->bitmap_size > data_end)
      return ferry_error (EINVAL, "%s: BAT at offset 0x%" PRIx64 ": entry %"
                          PRIu32 " points to a block at offset 0x%" PRIx64
                          " past the end of the data (0x%" PRIx64 ")", path,
                          v->bat_offset, i, start, data_end);
    if (v->has_tail_footer && start + stride > data_end)
      return ferry_error (EINVAL, "%s: BAT at offset 0x%" PRIx64 ": entry %"
                          PRIu32 " points to a block at offset 0x%" PRIx64
                          " that runs into the footer at offset 0x%" PRIx64,
                          path, v->bat_offset, i, start, data_end);
    if (overlaps (start, stride, v->header_offset, VHD_HEADER_SIZE) ||
        overlaps (start, stride, v->bat_offset, bat_bytes))
      return ferry_error (EINVAL, "%s: BAT at offset 0x%" PRIx64 ": entry %"
                          PRIu32 " points to a block at offset 0x%" PRIx64
                          " that overlaps the header or the BAT", path,
                          v->bat_offset, i, start);
    if (start < VHD_FOOTER_SIZE)
      return ferry_error (EINVAL, "%s: BAT at offset 0x%" PRIx64 ": entry %"
                          PRIu32 " points to offset 0x%" PRIx64 ", into the "
                          "footer copy", path, v->bat_offset, i, start);
    sorted[nused++] = v->bat[i];
  }
  qsort (sorted, nused, sizeof *sorted, cmp_u32);
  for (i = 1; i < nused; i++)
    if ((uint64_t) (sorted[i] - sorted[i - 1]) * VHD_SECTOR < stride)
      return ferry_error (EINVAL, "%s: BAT at offset 0x%" PRIx64 ": the "
                          "blocks at offsets 0x%" PRIx64 " and 0x%" PRIx64
                          " overlap (a block takes %" PRIu64 " bytes)", path,
                          v->bat_offset, (uint64_t) sorted[i - 1] * VHD_SECTOR,
                          (uint64_t) sorted[i] * VHD_SECTOR, stride);
  return 0;
}

/* Check that locator I of the header, if any, lies in the file. */
static int
check_locator (struct vhd_image *v, int i)
{
  const uint8_t *e = v->header + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE;
  uint32_t len = get_be32 (e + 8);
  uint64_t off = get_be64 (e + 16);
  char cc[20];

  if (get_be32 (e) == 0 || len == 0)
    return 0;
  if (len > VHD_MAX_LOCATOR_BYTES || off > v->file_size ||
      v->file_size - off < len) {
    format_code (e, cc);
    return ferry_error (EINVAL, "%s: dynamic disk header at offset 0x%" PRIx64
                        ": parent locator %d ('%s') of %" PRIu32 " bytes at "
                        "offset 0x%" PRIx64 " does not lie in the file (size %"
                        PRIu64 " bytes)", v->base.path, v->header_offset, i,
                        cc, len, off, v->file_size);
  }
  return 0;
}

/* Read locator I of the header into a new string (UTF-8), or set *DATA
 * NULL for an empty one.  *CODE gets its platform code. */
static int
read_locator (struct vhd_image *v, int i, uint32_t *code, char **data)
{
  const uint8_t *e = v->header + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE;
  uint32_t len = get_be32 (e + 8);
  uint64_t off = get_be64 (e + 16);
  CLEANUP_FREE uint8_t *raw = NULL;

  *code = get_be32 (e);
  *data = NULL;
  if (*code == 0 || len == 0)
    return 0;
  if (check_locator (v, i) == -1)
    return -1;
  raw = malloc (len + 1);
  if (raw == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  if (read_at (v, raw, len, off, "parent locator") == -1)
    return -1;
  if (*code == 0x57326b75 || *code == 0x57327275)  /* "W2ku", "W2ru" */
    *data = utf16_to_utf8 (raw, len, false);
  else
    *data = strdup_counted (raw, len);
  if (*data == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  return 0;
}

/* The last component of a Windows or Unix path P (inside P). */
static const char *
path_basename (const char *p)
{
  const char *s = p, *q;

  for (q = p; *q; q++)
    if (*q == '\\' || *q == '/' || (*q == ':' && q == p + 1))
      s = q + 1;
  return s;
}

/* Turn a relative Windows path into a relative Unix one, in place:
 * backslashes become slashes and a leading ".\" goes. */
static void
unix_relative (char *p)
{
  char *q;

  for (q = p; *q; q++)
    if (*q == '\\')
      *q = '/';
  while (p[0] == '.' && p[1] == '/')
    memmove (p, p + 2, strlen (p + 2) + 1);
}

/* Turn a file URL ("file://localhost/a%20b") into a path, in place. */
static void
url_to_path (char *p)
{
  char *in, *out;

  if (strncmp (p, "file://", 7) == 0) {
    in = p + 7;
    if (strncmp (in, "localhost", 9) == 0)
      in += 9;
  }
  else
    in = p;
  for (out = p; *in; in++) {
    unsigned x;
    if (in[0] == '%' && in[1] && in[2] && sscanf (in + 1, "%2x", &x) == 1) {
      *out++ = x;
      in += 2;
    }
    else
      *out++ = *in;
  }
  *out = '\0';
}

/* Candidate places of the parent, best first (note 5). */
struct candidate {
  char *name;                  /* relative to the child, or absolute */
  const char *from;            /* which locator said so */
};
DEFINE_VECTOR_TYPE (candidate_list, struct candidate);

/* Add NAME (copied) to L unless empty. */
static int
add_candidate (struct candidate_list *l, const char *name, const char *from)
{
  struct candidate c = { .name = strdup (name), .from = from };

  if (name[0] == '\0') {
    free (c.name);
    return 0;
  }
  if (c.name == NULL || candidate_list_append (l, c) == -1) {
    free (c.name);
    return ferry_error (ENOMEM, "out of memory");
  }
  return 0;
}

/* Collect the places where the parent may be, in the order of note 5. */
static int
parent_candidates (struct vhd_image *v, struct candidate_list *l)
{
  static const struct {
    uint32_t code;
    const char *name;
    bool relative, url;
  } order[] = {
    { 0x57327275, "W2ru", true, false },
    { 0x57693272, "Wi2r", true, false },
    { 0x4d616358, "MacX", false, true },
  };
  static const struct { uint32_t code; const char *name; } absolute[] = {
    { 0x57326b75, "W2ku" }, { 0x5769326b, "Wi2k" }, { 0x4d616358, "MacX" },
  };
  char *data[VHD_NR_LOCATORS] = { 0 };
  uint32_t code[VHD_NR_LOCATORS];
  size_t k;
  int i, r = -1;

  for (i = 0; i < VHD_NR_LOCATORS; i++) {
    if (read_locator (v, i, &code[i], &data[i]) == -1)
      goto out;
    free (v->locators[i]);
    v->locators[i] = data[i] ? strdup (data[i]) : NULL;
    if (data[i] && v->locators[i] == NULL) {
      ferry_error (ENOMEM, "%s: out of memory", v->base.path);
      goto out;
    }
  }
  for (k = 0; k < sizeof order / sizeof order[0]; k++)
    for (i = 0; i < VHD_NR_LOCATORS; i++) {
      if (data[i] == NULL || code[i] != order[k].code)
        continue;
      if (order[k].relative)
        unix_relative (data[i]);
      if (order[k].url)
        url_to_path (data[i]);
      if (add_candidate (l, data[i], order[k].name) == -1)
        goto out;
    }
  for (k = 0; k < sizeof absolute / sizeof absolute[0]; k++)
    for (i = 0; i < VHD_NR_LOCATORS; i++)
      if (data[i] && code[i] == absolute[k].code &&
          add_candidate (l, path_basename (data[i]), absolute[k].name) == -1)
        goto out;
  if (v->parent_name &&
      add_candidate (l, path_basename (v->parent_name),
                     "parent name in the header") == -1)
    goto out;
  r = 0;
 out:
  for (i = 0; i < VHD_NR_LOCATORS; i++)
    free (data[i]);
  return r;
}

/* Find and open the parent of a differencing disk and check that it is
 * the one the child was made from (note 5). */
static int
open_parent (struct vhd_image *v, const struct open_args *args)
{
  struct candidate_list l = empty_vector;
  const uint8_t *want = v->header + VHD_H_PARENT_UUID;
  struct vhd_image *p;
  char want_s[37], got_s[37];
  size_t i, found = SIZE_MAX;
  int r = -1;

  v->parent_name = utf16_to_utf8 (v->header + VHD_H_PARENT_NAME,
                                  VHD_H_PARENT_NAME_SIZE, true);
  if (v->parent_name == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  if (parent_candidates (v, &l) == -1)
    goto out;
  if (l.len == 0) {
    ferry_error (EINVAL, "%s: dynamic disk header at offset 0x%" PRIx64 ": a "
                 "differencing disk with no parent locator and no parent "
                 "name", v->base.path, v->header_offset);
    goto out;
  }
  /* Without the backing chain, nothing is looked up (the fuzzers rely on
   * it): describe names the first candidate. */
  if (args->flags & FERRY_OPEN_NO_BACKING)
    found = 0;
  for (i = 0; i < l.len && found == SIZE_MAX; i++) {
    CLEANUP_FREE char *full = image_resolve_relative (v->base.path,
                                                      l.ptr[i].name);
    if (full == NULL) {
      ferry_error (ENOMEM, "%s: out of memory", v->base.path);
      goto out;
    }
    if (access (full, F_OK) == 0)
      found = i;
  }
  if (found == SIZE_MAX) {
    CLEANUP_FREE char *full = image_resolve_relative (v->base.path,
                                                      l.ptr[0].name);
    v->parent_path = strdup (l.ptr[0].name);
    if (full == NULL || v->parent_path == NULL) {
      ferry_error (ENOMEM, "%s: out of memory", v->base.path);
      goto out;
    }
    r = image_backing_missing (&v->base, args, full, "the parent '%s' is "
                               "missing: the child expects it at '%s' (its "
                               "%s)%s", l.ptr[0].name, full, l.ptr[0].from,
                               l.len > 1 ? "; it is not in the other places "
                               "the locators and the parent name give "
                               "either" : "");
    goto out;
  }
  v->parent_path = strdup (l.ptr[found].name);
  v->parent_locator = l.ptr[found].from;
  if (v->parent_path == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", v->base.path);
    goto out;
  }
  if (image_open_backing (&v->base, v->parent_path, "vhd", args) == -1)
    goto out;
  p = (struct vhd_image *) v->base.backing;
  if (p && memcmp (p->footer + VHD_F_UUID, want, 16) != 0) {
    format_uuid (want, want_s);
    format_uuid (p->footer + VHD_F_UUID, got_s);
    ferry_error (EINVAL, "%s: the parent '%s' (found by %s) has unique id %s, "
                 "but the child was made from %s", v->base.path,
                 v->parent_path, v->parent_locator, got_s, want_s);
    goto out;
  }
  r = 0;
 out:
  for (i = 0; i < l.len; i++)
    free (l.ptr[i].name);
  candidate_list_reset (&l);
  return r;
}

/* Read the bits of sectors [FIRST, LAST] of the bitmap of the block at
 * host START into BITS (the bytes that hold them, from FIRST/8 on). */
static int
read_bitmap (struct vhd_image *v, uint64_t start, uint64_t first,
             uint64_t last, uint8_t *bits)
{
  uint64_t lo = first / 8, hi = last / 8;

  if (full_pread (v->fd, bits, hi - lo + 1, start + lo) == -1)
    return ferry_error_errno (errno, "%s: reading the sector bitmap at offset "
                              "0x%" PRIx64, v->base.path, start);
  return 0;
}

/* Bit of sector S in BITS read from sector FIRST on. */
static inline bool
sector_present (const uint8_t *bits, uint64_t first, uint64_t s)
{
  uint64_t i = s - (first & ~7ull);

  return (bits[i / 8] >> (7 - i % 8)) & 1;
}

/* The length of the run from IN (an offset in a block of a differencing
 * disk) to at most END that the child (*OWN) or the parent holds. */
static uint64_t
bitmap_run (const uint8_t *bits, uint64_t first, uint64_t in, uint64_t end,
            bool *own)
{
  uint64_t s = in / VHD_SECTOR, pos;

  *own = sector_present (bits, first, s);
  for (pos = (s + 1) * VHD_SECTOR; pos < end; pos += VHD_SECTOR)
    if (sector_present (bits, first, pos / VHD_SECTOR) != *own)
      break;
  return MIN (pos, end) - in;
}

/* Read one block's part of a request: N bytes at IN of block B. */
static int
read_in_block (struct vhd_image *v, uint8_t *p, uint64_t b, uint64_t in,
               uint64_t n, uint64_t offset)
{
  uint32_t e = vhd_bat_get (v, b);
  uint64_t start = (uint64_t) e * VHD_SECTOR, end = in + n, first, last;
  uint8_t bits[VHD_MAX_BLOCK_SIZE / VHD_SECTOR / 8 / 64];
  CLEANUP_FREE uint8_t *big = NULL;
  uint8_t *bm = bits;
  bool own;

  if (e == VHD_BAT_UNUSED) {
    if (v->type == VHD_TYPE_DIFF)
      return image_backing_pread (&v->base, p, n, offset);
    memset (p, 0, n);
    return 0;
  }
  if (v->type != VHD_TYPE_DIFF) {
    if (full_pread (v->fd, p, n, start + v->bitmap_size + in) == -1)
      return ferry_error_errno (errno, "%s: reading %" PRIu64 " bytes of "
                                "block %" PRIu64 " at offset 0x%" PRIx64,
                                v->base.path, n, b,
                                start + v->bitmap_size + in);
    return 0;
  }

  first = in / VHD_SECTOR;
  last = (end - 1) / VHD_SECTOR;
  if (last / 8 - first / 8 + 1 > sizeof bits) {
    big = malloc (last / 8 - first / 8 + 1);
    if (big == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
    bm = big;
  }
  if (read_bitmap (v, start, first, last, bm) == -1)
    return -1;
  while (in < end) {
    uint64_t len = bitmap_run (bm, first, in, end, &own);
    if (own) {
      if (full_pread (v->fd, p, len, start + v->bitmap_size + in) == -1)
        return ferry_error_errno (errno, "%s: reading block %" PRIu64 " at "
                                  "offset 0x%" PRIx64, v->base.path, b,
                                  start + v->bitmap_size + in);
    }
    else if (image_backing_pread (&v->base, p, len, offset) == -1)
      return -1;
    p += len;
    in += len;
    offset += len;
  }
  return 0;
}

int
vhd_read_range (struct vhd_image *v, void *buf, uint64_t count,
                uint64_t offset)
{
  uint8_t *p = buf;

  if (v->type == VHD_TYPE_FIXED) {
    if (full_pread (v->fd, buf, count, offset) == -1)
      return ferry_error_errno (errno, "%s: read of %" PRIu64 " bytes at "
                                "offset %" PRIu64, v->base.path, count,
                                offset);
    return 0;
  }
  while (count > 0) {
    uint64_t b = offset >> v->block_bits;
    uint64_t in = offset & (v->block_size - 1);
    uint64_t n = MIN (count, v->block_size - in);
    if (read_in_block (v, p, b, in, n, offset) == -1)
      return -1;
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

/* The pread callback. */
static int
vhd_pread (struct ferry_image *img, void *buf, size_t count, uint64_t offset)
{
  return vhd_read_range ((struct vhd_image *) img, buf, count, offset);
}

/* Extents of one block's part [IN, IN+N) of block B at guest OFFSET.
 * *DONE is how far the answer reaches (short when the parent stopped
 * short). */
static int
block_extents (struct vhd_image *v, uint64_t b, uint64_t in, uint64_t n,
               uint64_t offset, struct ferry_extent_list *list,
               uint64_t *done)
{
  uint32_t e = vhd_bat_get (v, b);
  uint64_t start = (uint64_t) e * VHD_SECTOR, end = in + n, first, last;
  uint64_t reached;
  CLEANUP_FREE uint8_t *bm = NULL;
  bool own;

  *done = n;
  if (e == VHD_BAT_UNUSED) {
    if (v->type != VHD_TYPE_DIFF)
      return ferry_extent_list_append (list, offset, n, FERRY_EXTENT_HOLE |
                                       FERRY_EXTENT_ZERO);
    if (image_backing_extents (&v->base, offset, n, list, &reached) == -1)
      return -1;
    *done = reached - offset;
    return 0;
  }
  if (v->type != VHD_TYPE_DIFF)
    return hostfile_extents (v->fd, start + v->bitmap_size + in, n, offset,
                             FERRY_EXTENT_ZERO, &v->caps, v->base.path,
                             list);

  first = in / VHD_SECTOR;
  last = (end - 1) / VHD_SECTOR;
  bm = malloc (last / 8 - first / 8 + 1);
  if (bm == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  if (read_bitmap (v, start, first, last, bm) == -1)
    return -1;
  while (in < end) {
    uint64_t len = bitmap_run (bm, first, in, end, &own);
    if (own) {
      if (hostfile_extents (v->fd, start + v->bitmap_size + in, len, offset,
                            FERRY_EXTENT_ZERO, &v->caps, v->base.path,
                            list) == -1)
        return -1;
    }
    else {
      if (image_backing_extents (&v->base, offset, len, list,
                                 &reached) == -1)
        return -1;
      if (reached < offset + len) {
        *done = n - (end - in) + (reached - offset);
        return 0;
      }
    }
    in += len;
    offset += len;
  }
  return 0;
}

/* Extents: a fixed disk's from the file system; a dynamic disk's from the
 * BAT, refined by the file system inside allocated blocks; a differencing
 * disk's from the bitmaps and the parent (note 4). */
static int
vhd_extents (struct ferry_image *img, uint64_t offset, uint64_t length,
             struct ferry_extent_list *list)
{
  struct vhd_image *v = (struct vhd_image *) img;
  uint64_t end = offset + length, blocks = 0;
  size_t start_len = list->len;

  if (v->type == VHD_TYPE_FIXED)
    return hostfile_extents (v->fd, offset, length, offset,
                             FERRY_EXTENT_HOLE | FERRY_EXTENT_ZERO,
                             &v->caps, v->base.path, list);
  while (offset < end && blocks++ < VHD_EXTENTS_MAX_BLOCKS &&
         list->len - start_len < VHD_EXTENTS_MAX_RUNS) {
    uint64_t b = offset >> v->block_bits;
    uint64_t in = offset & (v->block_size - 1);
    uint64_t n = MIN (end - offset, v->block_size - in), done;
    if (block_extents (v, b, in, n, offset, list, &done) == -1)
      return -1;
    if (done < n)
      return 0;                 /* the caller asks again from there */
    offset += n;
  }
  return 0;
}

/* One fact per parent locator, as recorded: "parent-locator-W2ru" (a
 * second locator of the same platform gets its index after it). */
static int
describe_locators (struct vhd_image *v)
{
  char key[64], code[20], other[20];
  int i, k;

  for (i = 0; i < VHD_NR_LOCATORS; i++) {
    const uint8_t *e = v->header + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE;
    if (v->locators[i] == NULL)
      continue;
    format_code (e, code);
    snprintf (key, sizeof key, "parent-locator-%s", code);
    for (k = 0; k < i; k++) {
      format_code (v->header + VHD_H_LOCATORS + k * VHD_LOCATOR_SIZE, other);
      if (v->locators[k] && strcmp (other, code) == 0)
        snprintf (key, sizeof key, "parent-locator-%s-%d", code, i);
    }
    if (image_fact_string (&v->base, key, v->locators[i]) == -1)
      return -1;
  }
  return 0;
}

/* Fill INFO and the facts; ferry info shows which size was taken and
 * why (note 2). */
static int
vhd_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  struct vhd_image *v = (struct vhd_image *) img;
  const uint8_t *f = v->footer;
  uint32_t geo = get_be32 (f + VHD_F_GEOMETRY);
  uint32_t cv = get_be32 (f + VHD_F_CREATOR_VERSION);
  char s[64], code[20];

  info->allocated = file_allocated_bytes (v->fd);
  if (v->type != VHD_TYPE_FIXED)
    info->cluster_size = v->block_size;
  info->backing_file = v->parent_path;
  if (v->parent_path)
    info->backing_format = "vhd";
  if (image_fact_string (img, "subformat", v->type == VHD_TYPE_FIXED ? "fixed"
                         : v->type == VHD_TYPE_DYNAMIC ? "dynamic" :
                         "differencing") == -1)
    return -1;
  format_code (f + VHD_F_CREATOR_APP, code);
  if (image_fact_string (img, "creator-app", code) == -1)
    return -1;
  snprintf (s, sizeof s, "%u.%u", cv >> 16, cv & 0xffff);
  if (image_fact_string (img, "creator-version", s) == -1)
    return -1;
  format_code (f + VHD_F_CREATOR_OS, code);
  if (image_fact_string (img, "creator-os", code) == -1 ||
      image_fact_string (img, "size-from", v->size_from_geometry ?
                         "geometry" : "current-size") == -1 ||
      image_fact_string (img, "size-reason", v->size_reason) == -1 ||
      image_fact_number (img, "current-size", v->current_size) == -1)
    return -1;
  snprintf (s, sizeof s, "%u/%u/%u", geo >> 16, (geo >> 8) & 0xff,
            geo & 0xff);
  if (image_fact_string (img, "geometry", s) == -1 ||
      image_fact_number (img, "geometry-size",
                         (uint64_t) (geo >> 16) * ((geo >> 8) & 0xff) *
                         (geo & 0xff) * VHD_SECTOR) == -1)
    return -1;
  format_uuid (f + VHD_F_UUID, s);
  if (image_fact_string (img, "uuid", s) == -1 ||
      image_fact_string (img, "footer", v->footer_where) == -1 ||
      image_fact_bool (img, "footer-checksum-valid",
                       !v->footer_checksum_bad) == -1 ||
      image_fact_bool (img, "saved-state", f[VHD_F_SAVED_STATE] != 0) == -1)
    return -1;
  if (v->type == VHD_TYPE_FIXED)
    return 0;
  if (image_fact_bool (img, "header-checksum-valid",
                       !v->header_checksum_bad) == -1 ||
      image_fact_number (img, "block-size", v->block_size) == -1 ||
      image_fact_number (img, "bat-entries", v->max_entries) == -1)
    return -1;
  if (v->type != VHD_TYPE_DIFF)
    return 0;
  format_uuid (v->header + VHD_H_PARENT_UUID, s);
  if (image_fact_string (img, "parent-uuid", s) == -1 ||
      (v->parent_name && image_fact_string (img, "parent-name",
                                            v->parent_name) == -1) ||
      (v->parent_locator && image_fact_string (img, "parent-found-by",
                                               v->parent_locator) == -1))
    return -1;
  return describe_locators (v);
}

/* Free V and everything it holds, closing its file. */
void
vhd_free (struct vhd_image *v)
{
  int i;

  if (v->fd >= 0)
    close (v->fd);
  pthread_mutex_destroy (&v->lock);
  free (v->bat);
  free (v->ones);
  free (v->parent_name);
  free (v->parent_path);
  for (i = 0; i < VHD_NR_LOCATORS; i++)
    free (v->locators[i]);
  free (v);
}

/* Say what only warrants a warning (note 3), or refuse it under
 * FERRY_OPEN_STRICT. */
static int
checksum_warnings (struct vhd_image *v, uint64_t footer_off, bool strict)
{
  const char *path = v->base.path;

  if (v->footer_checksum_bad) {
    uint32_t got = get_be32 (v->footer + VHD_F_CHECKSUM);
    uint32_t want = vhd_checksum (v->footer, 512, VHD_F_CHECKSUM);
    if (strict) {
      ferry_error (EINVAL, "%s: footer at offset 0x%" PRIx64 ": checksum "
                   "0x%08" PRIx32 " does not match its contents (0x%08"
                   PRIx32 "); refused in strict mode", path, footer_off, got,
                   want);
      return ferry_error_input ("strict");
    }
    ferry_warn ("%s: footer at offset 0x%" PRIx64 ": checksum 0x%08" PRIx32
                " does not match its contents (0x%08" PRIx32 "); the rest is "
                "sound, so it is read anyway (strict mode refuses it)", path,
                footer_off, got, want);
  }
  if (v->header_checksum_bad) {
    uint32_t got = get_be32 (v->header + VHD_H_CHECKSUM);
    uint32_t want = vhd_checksum (v->header, VHD_HEADER_SIZE, VHD_H_CHECKSUM);
    if (strict) {
      ferry_error (EINVAL, "%s: dynamic disk header at offset 0x%" PRIx64
                   ": checksum 0x%08" PRIx32 " does not match its contents "
                   "(0x%08" PRIx32 "); refused in strict mode", path,
                   v->header_offset, got, want);
      return ferry_error_input ("strict");
    }
    ferry_warn ("%s: dynamic disk header at offset 0x%" PRIx64 ": checksum "
                "0x%08" PRIx32 " does not match its contents (0x%08" PRIx32
                "); the rest is sound, so it is read anyway (strict mode "
                "refuses it)", path, v->header_offset, got, want);
  }
  return 0;
}

struct vhd_image *
vhd_alloc (const char *path, int fd, bool writable)
{
  struct vhd_image *v = calloc (1, sizeof *v);

  if (v == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    close (fd);
    return NULL;
  }
  v->fd = fd;
  pthread_mutex_init (&v->lock, NULL);
  hostfile_caps_init (&v->caps, fd);
  if (image_init_base (&v->base, &vhd_driver, path, fd, !writable) == -1 ||
      hostfile_size (fd, path, &v->file_size) == -1) {
    free (v->base.path);
    vhd_free (v);
    return NULL;
  }
  return v;
}

struct vhd_image *
vhd_load (const char *path, int fd, bool writable, uint64_t *footer_off)
{
  struct vhd_image *v = vhd_alloc (path, fd, writable);

  if (v == NULL)
    return NULL;
  if (load_footer (v, footer_off) == -1)
    goto err;
  if (v->type == VHD_TYPE_FIXED) {
    if (v->base.size > v->file_size - VHD_FOOTER_SIZE) {
      ferry_error (EINVAL, "%s: footer at offset 0x%" PRIx64 ": a fixed disk "
                   "of %" PRIu64 " bytes, but the file holds only %" PRIu64
                   " bytes before its footer", path, *footer_off,
                   v->base.size, v->file_size - VHD_FOOTER_SIZE);
      goto err;
    }
  }
  else if (load_header (v) == -1 || load_bat (v) == -1)
    goto err;
  if (v->type == VHD_TYPE_DIFF)
    for (int i = 0; i < VHD_NR_LOCATORS; i++)
      if (check_locator (v, i) == -1)
        goto err;
  return v;

 err:
  free (v->base.path);
  vhd_free (v);
  return NULL;
}

/* Open a fixed, dynamic or differencing disk. */
static struct ferry_image *
vhd_open (const char *path, int fd, const struct open_args *args)
{
  bool writable = args->flags & FERRY_OPEN_WRITE;
  uint64_t footer_off = 0;
  struct vhd_image *v = vhd_load (path, fd, writable, &footer_off);

  if (v == NULL)
    return NULL;
  if (checksum_warnings (v, footer_off, args->flags & FERRY_OPEN_STRICT) == -1)
    goto err;
  if (v->type == VHD_TYPE_DIFF) {
    if (writable) {
      ferry_error (ENOTSUP, "%s: ferry does not write into differencing VHD "
                   "disks", path);
      goto err;
    }
    if (open_parent (v, args) == -1)
      goto err;
  }
  if (writable && vhd_open_for_write (v) == -1)
    goto err;
  return &v->base;

 err:
  image_base_discard (&v->base);
  vhd_free (v);
  return NULL;
}

/* Finish a writable image (BAT, footer) and free it all. */
static int
vhd_close (struct ferry_image *img)
{
  struct vhd_image *v = (struct vhd_image *) img;
  int r = 0;

  if (!img->readonly) {
    r = vhd_finish (v, false);
    if (close (v->fd) == -1 && r == 0)
      r = ferry_error_errno (errno, "%s: close", img->path);
    v->fd = -1;
  }
  vhd_free (v);
  return r;
}

static const char *const vhd_aliases[] = { "vpc", NULL };

const struct image_driver vhd_driver = {
  .name = "vhd",
  .backing_word = "parent",
  .aliases = vhd_aliases,
  .probe = vhd_probe,
  .open = vhd_open,
  .create = vhd_create,
  .pread = vhd_pread,
  .pwrite = vhd_pwrite,
  .zero = vhd_zero,
  .extents = vhd_extents,
  .flush = vhd_flush,
  .close = vhd_close,
  .describe = vhd_describe,
  .check = vhd_check,
};
