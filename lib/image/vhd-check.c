/* vhd: ferry check for VHD disks.
 *
 * The disk is read as open reads it (footer, header, BAT, every block
 * checked against the file and against each other) but nothing it finds
 * stops the check short of a structure it cannot read.  Reported:
 *   errors: what open refuses (its message), a footer or header whose
 *     checksum does not match, a dynamic disk with no footer at the end
 *     (its writer was interrupted), footer copies that disagree;
 *   leaks: space between the metadata and blocks that nothing uses, in
 *     whole blocks (a writer that stopped between placing a block and
 *     writing its BAT entry leaves one);
 *   allocated / total clusters: BAT entries in use / BAT entries.
 * The parent of a differencing disk is not opened: each file is checked
 * on its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhd-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* A range of the file that something uses. */
struct used_range {
  uint64_t start, end;
};
DEFINE_VECTOR_TYPE (range_list, struct used_range);

/* Compare used ranges by start, for qsort. */
static int
cmp_range (const void *a, const void *b)
{
  const struct used_range *x = a, *y = b;

  return x->start < y->start ? -1 : x->start > y->start;
}

/* Add [START, START+LEN) to L. */
static int
add_range (struct range_list *l, uint64_t start, uint64_t len)
{
  if (range_list_append (l, (struct used_range) { start, start + len }) == -1)
    return ferry_error (ENOMEM, "out of memory");
  return 0;
}

/* Count the space no structure uses, in whole blocks, as leaks. */
static int
check_leaks (struct vhd_image *v, struct ferry_check_result *r)
{
  uint64_t stride = (uint64_t) v->bitmap_size + v->block_size;
  uint64_t data_end = v->file_size -
    (v->has_tail_footer ? VHD_FOOTER_SIZE : 0);
  uint64_t pos = VHD_FOOTER_SIZE;
  struct range_list l = empty_vector;
  uint32_t i;
  int ret = -1;

  if (add_range (&l, v->header_offset, VHD_HEADER_SIZE) == -1 ||
      add_range (&l, v->bat_offset, (uint64_t) v->max_entries * 4) == -1)
    goto out;
  for (i = 0; i < VHD_NR_LOCATORS; i++) {
    const uint8_t *e = v->header + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE;
    if (get_be32 (e) && get_be32 (e + 8) &&
        add_range (&l, get_be64 (e + 16), get_be32 (e + 8)) == -1)
      goto out;
  }
  for (i = 0; i < v->nr_entries; i++)
    if (v->bat[i] != VHD_BAT_UNUSED &&
        add_range (&l, (uint64_t) v->bat[i] * VHD_SECTOR, stride) == -1)
      goto out;
  qsort (l.ptr, l.len, sizeof *l.ptr, cmp_range);
  for (i = 0; i <= l.len; i++) {
    uint64_t next = i < l.len ? MIN (l.ptr[i].start, data_end) : data_end;
    if (next > pos && (next - pos) / stride > 0 &&
        check_report (r, false, "%" PRIu64 " bytes at offset 0x%" PRIx64
                      " are in no block, header or table (%" PRIu64
                      " blocks' worth)", next - pos, pos,
                      (next - pos) / stride) == -1)
      goto out;
    if (i < l.len)
      pos = MAX (pos, l.ptr[i].end);
  }
  ret = 0;
 out:
  range_list_reset (&l);
  return ret;
}

int
vhd_check (const char *path, int fd, struct ferry_check_result *r)
{
  uint8_t head[VHD_FOOTER_SIZE], tail[VHD_FOOTER_SIZE];
  int fd2 = fcntl (fd, F_DUPFD_CLOEXEC, 0);
  uint64_t footer_off = 0;
  struct vhd_image *v;
  uint32_t i;
  int ret = -1;

  if (fd2 == -1)
    return ferry_error_errno (errno, "%s: dup", path);
  v = vhd_load (path, fd2, false, &footer_off);
  if (v == NULL)
    return check_report_error (r, path);

  if (v->footer_checksum_bad &&
      check_report (r, true, "footer at offset 0x%" PRIx64 ": checksum "
                    "0x%08" PRIx32 " does not match its contents (0x%08"
                    PRIx32 ")", footer_off,
                    get_be32 (v->footer + VHD_F_CHECKSUM),
                    vhd_checksum (v->footer, VHD_FOOTER_SIZE,
                                  VHD_F_CHECKSUM)) == -1)
    goto out;
  if (v->type == VHD_TYPE_FIXED) {
    ret = 0;
    goto out;
  }
  if (v->header_checksum_bad &&
      check_report (r, true, "dynamic disk header at offset 0x%" PRIx64
                    ": checksum 0x%08" PRIx32 " does not match its "
                    "contents (0x%08" PRIx32 ")", v->header_offset,
                    get_be32 (v->header + VHD_H_CHECKSUM),
                    vhd_checksum (v->header, VHD_HEADER_SIZE,
                                  VHD_H_CHECKSUM)) == -1)
    goto out;
  if (!v->has_tail_footer) {
    if (check_report (r, true, "no footer at the end of the file (offset 0x%"
                      PRIx64 "): its writer did not finish", v->file_size -
                      VHD_FOOTER_SIZE) == -1)
      goto out;
  }
  else if (full_pread (fd, head, sizeof head, 0) == -1 ||
           full_pread (fd, tail, sizeof tail,
                       v->file_size - VHD_FOOTER_SIZE) == -1) {
    ferry_error_errno (errno, "%s: reading the footers", path);
    goto out;
  }
  else if (memcmp (head, VHD_COOKIE, 8) == 0 &&
           memcmp (head, tail, sizeof head) != 0 &&
           check_report (r, true, "the footer copy at offset 0 and the "
                         "footer at the end (offset 0x%" PRIx64 ") differ",
                         v->file_size - VHD_FOOTER_SIZE) == -1)
    goto out;
  if (check_leaks (v, r) == -1)
    goto out;
  for (i = 0; i < v->nr_entries; i++)
    if (v->bat[i] != VHD_BAT_UNUSED)
      r->allocated_clusters++;
  r->total_clusters = v->nr_entries;
  ret = 0;
 out:
  free (v->base.path);
  vhd_free (v);
  return ret;
}
