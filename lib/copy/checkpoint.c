/* Checkpoints of a copy, on the target's side: what a checkpoint records
 * of the target file (ferry_copy_mark_target), and reopening a partial
 * target in a later process to finish the copy (ferry_copy_reopen_target).
 *
 * NOTES ON THE DESIGN
 *
 * 1. A mark is taken in the checkpoint callback, after the engine flushed
 *    the target, and the caller persists it after that.  A process killed
 *    between a flush and the persisting of its mark leaves a file that is
 *    newer than the mark says: the flush may have written metadata past
 *    the mark's file_size that points at data written after the mark's
 *    DURABLE (a qcow2 header and its tables, a VHD's trailing footer and
 *    BAT, a VHDX or VDI block map).  Cutting such a file back to
 *    file_size would leave that metadata pointing past its end.  So the
 *    file is never truncated here: every writable driver reopens the file
 *    of any flushed state, with or without data written after it, and
 *    the resumed copy writes every block from DURABLE on again (the
 *    reopened target is not zero-initialised), so whatever the killed
 *    process wrote after the checkpoint is overwritten.  What it appended
 *    and no metadata refers to is cut or reused by the drivers (vhd,
 *    vdi: the first new block cuts the file at the end of the allocated
 *    data) or stays as unreferenced space (qcow2, vhdx), which readers
 *    ignore and qemu-img check does not count as a leak.
 *
 * 2. The size check (at least file_size, less a dynamic VHD's footer,
 *    which its writer cuts and rewrites) and the device and inode catch
 *    a target that was replaced or cut by something else since the mark:
 *    it is not the one the checkpoint describes, and ESTALE tells the
 *    caller to start that disk again.  So does a file no driver opens
 *    any more (a new qcow2 or VMDK killed before its first flush has no
 *    header yet) and a target that cannot resume at all
 *    (ferry_image_can_resume).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <ferry/copy.h>

#include "../common/error.h"

/* True when an open that failed with ERRNUM says the file itself is not
 * a resumable image, rather than that the host refused (a lock held by
 * another process, permissions, no memory, an interrupt). */
static bool
open_error_is_stale (int errnum)
{
  switch (errnum) {
  case EBUSY: case EACCES: case EPERM: case ENOMEM: case EMFILE:
  case ENFILE: case EINTR: case ENOENT: case EIO:
    return false;
  default:
    return true;
  }
}

/* How much shorter than at a checkpoint the writer of FORMAT may leave
 * its file: a dynamic VHD's first new block after a flush cuts the
 * trailing footer (vhd-write.c, note 3), which the next flush or close
 * writes again. */
static uint64_t
trailer_cut (const char *format)
{
  return format && strcmp (format, "vpc") == 0 ? 512 : 0;
}

/* Whether a copy into DST can be resumed mid-file. */
bool
ferry_image_can_resume (struct ferry_image *dst)
{
  return !ferry_image_compress_required (dst) &&
    !ferry_image_is_sequential (dst);
}

/* Fill *MARK for the target file PATH at a checkpoint. */
int
ferry_copy_mark_target (const char *path, uint64_t durable,
                        struct ferry_copy_mark *mark)
{
  struct stat st;

  if (stat (path, &st) == -1)
    return ferry_error_errno (errno, "%s: cannot look at the target at a "
                              "checkpoint", path);
  mark->durable = durable;
  mark->file_size = S_ISREG (st.st_mode) ? (uint64_t) st.st_size : 0;
  mark->dev = st.st_dev;
  mark->ino = st.st_ino;
  return 0;
}

/* Reopen the partial target PATH to resume a copy checkpointed by MARK. */
struct ferry_image *
ferry_copy_reopen_target (const char *path, const char *format,
                          const struct ferry_copy_mark *mark)
{
  struct ferry_image *img;
  struct stat st;

  /* Probing would take a qcow2 file that has no header yet for raw. */
  if (format == NULL) {
    ferry_error (EINVAL, "%s: reopening a partial target needs its format",
                 path);
    return NULL;
  }
  if (stat (path, &st) == -1) {
    int e = errno;
    ferry_error_errno (e == ENOENT ? ESTALE : e, "%s: the partial target "
                       "is gone", path);
    return NULL;
  }
  if ((uint64_t) st.st_dev != mark->dev || (uint64_t) st.st_ino != mark->ino) {
    ferry_error (ESTALE, "%s: not the partial target the checkpoint "
                 "describes (another file by that name)", path);
    return NULL;
  }
  if (S_ISREG (st.st_mode) &&
      (uint64_t) st.st_size + trailer_cut (format) < mark->file_size) {
    ferry_error (ESTALE, "%s: the partial target holds %" PRIu64 " bytes, "
                 "less than the %" PRIu64 " it held at the checkpoint",
                 path, (uint64_t) st.st_size, mark->file_size);
    return NULL;
  }

  img = ferry_image_open (path, format, FERRY_OPEN_WRITE);
  if (img == NULL) {
    char why[1024];

    if (open_error_is_stale (ferry_get_errno ())) {
      snprintf (why, sizeof why, "%s", ferry_get_error ());
      ferry_error (ESTALE, "%s: the partial target cannot be resumed: %s",
                   path, why);
    }
    return NULL;
  }
  if (!ferry_image_can_resume (img)) {
    ferry_error (ESTALE, "%s: a %s target is written in order and cannot "
                 "be resumed mid-file", path, ferry_image_format (img));
    ferry_image_close (img);
    return NULL;
  }
  return img;
}
