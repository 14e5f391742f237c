/* qcow2: placeholder until the driver lands. */
#include <errno.h>
#include <unistd.h>
#include "internal.h"
#include "qcow2-format.h"
#include "../common/util.h"

static int
qcow2_probe (const uint8_t *head, size_t head_len, const uint8_t *tail,
             size_t tail_len, uint64_t file_size)
{
  return head_len >= 8 && get_be32 (head) == QCOW2_MAGIC ? 100 : 0;
}

static struct ferry_image *
qcow2_open (const char *path, int fd, const struct open_args *args)
{
  close (fd);
  ferry_error (ENOTSUP, "%s: qcow2 not yet implemented", path);
  return NULL;
}

const struct image_driver qcow2_driver = {
  .name = "qcow2",
  .probe = qcow2_probe,
  .open = qcow2_open,
};
