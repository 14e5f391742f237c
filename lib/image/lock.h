/* Image locks that QEMU sees, and that see QEMU's (lock.c).
 *
 * Every file of an image ferry opens (the image file, a VMDK's extents, a
 * qcow2 external data file, each backing file) is locked as QEMU's
 * file-posix driver locks it: shared open-file-description locks on one
 * byte per permission, so ferry, qemu-img, qemu-nbd, qemu-io and running
 * VMs see one another.  The locks belong to the open file description:
 * closing the descriptor (the image) drops them, and nothing needs to be
 * undone by hand.
 */
#ifndef FERRY_IMAGE_LOCK_H
#define FERRY_IMAGE_LOCK_H

#include <stdbool.h>

/* Take the locks of an open with FLAGS (FERRY_OPEN_WRITE: writing;
 * FERRY_OPEN_SHARED: reading, whoever writes; neither: reading, with
 * nobody writing) on FD, the open file PATH.  A conflict with another
 * process's locks is refused with EBUSY and a message naming PATH and the
 * permission ("PATH: the image is in use by another process (failed to
 * get a write lock)"); where the file system has no such locks, nothing
 * is locked.  0, or -1 with the error set and FD's locks dropped. */
int image_lock (int fd, const char *path, unsigned flags);

/* True when ERR, from an F_OFD_SETLK or F_OFD_GETLK, means the file
 * system has no OFD locks (EINVAL, EOPNOTSUPP, ENOSYS): go on without
 * them.  Any other error (ENOLCK from an NFS server without its lock
 * service, say) is a failure, never a licence to go on unlocked. */
bool locks_unsupported (int err);

#endif /* FERRY_IMAGE_LOCK_H */
