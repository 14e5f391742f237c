/* vhdx: ferry check.  Everything open refuses (bad checksums, a log that
 * cannot be replayed, regions or blocks outside the file or over other
 * structures, reserved block states) is one corruption with open's
 * message; on top of that, payload and sector bitmap blocks that share
 * file space are found by sorting them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx-internal.h"
#include "../common/util.h"

/* A block placed in the file by BAT entry INDEX. */
struct placed {
  uint64_t offset, length, index;
};

static int
cmp_placed (const void *a, const void *b)
{
  const struct placed *x = a, *y = b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int
vhdx_check (const char *path, int fd, struct ferry_check_result *r)
{
  struct open_args args = { .flags = FERRY_OPEN_NO_BACKING };
  struct ferry_image *img;
  struct vhdx_image *v;
  struct placed *p;
  uint64_t i, n = 0;
  int dupfd = dup (fd);

  if (dupfd == -1)
    return ferry_error_errno (errno, "%s: dup", path);
  img = vhdx_driver.open (path, dupfd, &args);
  if (img == NULL)
    return check_report_error (r, path);  /* open's message */
  v = (struct vhdx_image *) img;

  p = malloc (MAX (v->bat_entries, (uint64_t) 1) * sizeof *p);
  if (p == NULL) {
    ferry_image_close (img);
    return ferry_error (ENOMEM, "%s: out of memory", path);
  }
  for (i = 0; i < v->bat_entries; i++) {
    uint64_t e = v->bat[i], state = e & VHDX_BAT_STATE_MASK;
    bool bitmap = (i + 1) % (v->chunk_ratio + 1) == 0;

    if (!bitmap && i / (v->chunk_ratio + 1) * v->chunk_ratio +
        i % (v->chunk_ratio + 1) >= v->data_blocks)
      continue;
    if (bitmap ? state == VHDX_SB_PRESENT && v->has_parent :
        state == VHDX_PAYLOAD_FULLY_PRESENT ||
        state == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
      p[n++] = (struct placed) {
        .offset = e & VHDX_BAT_OFFSET_MASK,
        .length = bitmap ? VHDX_SB_BLOCK_SIZE : v->block_size,
        .index = i,
      };
      if (!bitmap)
        r->allocated_clusters++;
    }
  }
  r->total_clusters = v->data_blocks;
  qsort (p, n, sizeof *p, cmp_placed);
  for (i = 0; i + 1 < n; i++)
    if (p[i].offset + p[i].length > p[i + 1].offset &&
        check_report (r, true, "VHDX BAT entries %" PRIu64 " and %" PRIu64
                      " place blocks over each other (file offsets 0x%" PRIx64
                      " and 0x%" PRIx64 ")", p[i].index, p[i + 1].index,
                      p[i].offset, p[i + 1].offset) == -1)
      break;
  free (p);
  ferry_image_close (img);
  return 0;
}
