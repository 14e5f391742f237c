/* Image locks compatible with QEMU's; see lock.h and
 * ferry_image_lock_query in <ferry/image.h>.
 *
 * NOTES ON THE DESIGN
 *
 * 1. The layout is QEMU's (file-posix, as qemu-img 7.2, qemu-io and
 *    qemu-nbd take it, seen in /proc/locks and with strace): for each
 *    permission N it holds, a process takes a shared (F_RDLCK)
 *    open-file-description lock on byte 100 + N of the file; for each
 *    permission it will not let others hold, one on byte 200 + N.  N is
 *    0 consistent read, 1 write, 2 write unchanged, 3 resize (QEMU before
 *    7.0 also had 4, graph mod, which nobody refuses to share).  The
 *    locks are shared, so they never stop one another from being taken:
 *    a conflict is found afterwards, by asking (F_OFD_GETLK, as for an
 *    exclusive lock) whether anyone else holds byte 200 + N for a
 *    permission we hold, or byte 100 + N for one we refuse to share.
 *    Locks of the same open file description never conflict with one
 *    another, so the answer is always about someone else, including
 *    another open of the same file in this process: a source and a
 *    target that are one file conflict like two processes.
 *
 * 2. What ferry takes: reading holds consistent read and shares
 *    everything but write and resize (qemu-img convert's source);
 *    FERRY_OPEN_SHARED (qemu-img -U) holds consistent read and shares
 *    everything; writing holds consistent read, write and resize and
 *    shares neither write nor resize (qemu-io and qemu-nbd on a writable
 *    image).  So ferry never writes an image anyone else reads or writes
 *    through these locks, never reads one another process writes unless
 *    told to share, and two ferry readers get along.
 *
 * 3. Set first, then check, then drop everything on a conflict: between
 *    the two steps a rival may have set its own, and then both see the
 *    conflict and both refuse, which is safe (QEMU does the same).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <ferry/image.h>

#include "lock.h"
#include "../common/error.h"

#define HELD_BASE 100           /* byte 100 + N: holds permission N */
#define UNSHARED_BASE 200       /* byte 200 + N: will not share N */
#define NR_PERMS 4

static const char *const perm_names[NR_PERMS] = {
  "consistent read", "write", "write unchanged", "resize",
};

/* One lock of TYPE (F_RDLCK, F_UNLCK) on BYTE of FD: 0, or -1 (errno). */
static int
set_byte (int fd, int type, off_t byte)
{
  struct flock fl = {
    .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1,
  };

  return fcntl (fd, F_OFD_SETLK, &fl);
}

/* Whether another open file description holds a lock on BYTE of FD: 1
 * yes, 0 no, -1 error (errno). */
static int
byte_taken (int fd, off_t byte)
{
  struct flock fl = {
    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1,
  };

  if (fcntl (fd, F_OFD_GETLK, &fl) == -1)
    return -1;
  return fl.l_type != F_UNLCK;
}

bool
locks_unsupported (int err)
{
  return err == EINVAL || err == EOPNOTSUPP || err == ENOSYS;
}

/* Drop every lock of the layout on FD. */
static void
unlock_all (int fd)
{
  struct flock fl = {
    .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = HELD_BASE,
    .l_len = UNSHARED_BASE + NR_PERMS - HELD_BASE,
  };

  (void) fcntl (fd, F_OFD_SETLK, &fl);
}

/* The permissions held and not shared by an open with FLAGS (note 2). */
static void
lock_perms (unsigned flags, unsigned *held, unsigned *unshared)
{
  if (flags & FERRY_OPEN_WRITE) {
    *held = FERRY_PERM_CONSISTENT_READ | FERRY_PERM_WRITE | FERRY_PERM_RESIZE;
    *unshared = FERRY_PERM_WRITE | FERRY_PERM_RESIZE;
  }
  else if (flags & FERRY_OPEN_SHARED) {
    *held = FERRY_PERM_CONSISTENT_READ;
    *unshared = 0;
  }
  else {
    *held = FERRY_PERM_CONSISTENT_READ;
    *unshared = FERRY_PERM_WRITE | FERRY_PERM_RESIZE;
  }
}

int
image_lock (int fd, const char *path, unsigned flags)
{
  unsigned held, unshared, n;
  int r;

  lock_perms (flags, &held, &unshared);
  for (n = 0; n < NR_PERMS; n++) {
    if (((held >> n) & 1) && set_byte (fd, F_RDLCK, HELD_BASE + n) == -1)
      goto set_failed;
    if (((unshared >> n) & 1) && set_byte (fd, F_RDLCK, UNSHARED_BASE + n) == -1)
      goto set_failed;
  }
  /* Note 1: anyone refusing what we hold, or holding what we refuse.
   * Bit 0 of K: the byte asked about is someone's hold (a lock we would
   * share with it), else someone's refusal. */
  for (n = 0; n < NR_PERMS; n++) {
    for (unsigned k = 0; k < 2; k++) {
      if (!(((k ? unshared : held) >> n) & 1))
        continue;
      r = byte_taken (fd, (k ? HELD_BASE : UNSHARED_BASE) + n);
      if (r == -1)
        goto check_failed;
      if (r) {
        unlock_all (fd);
        return ferry_error (EBUSY, "%s: the image is in use by another "
                            "process (failed to get a %s%s lock)", path,
                            k ? "shared " : "", perm_names[n]);
      }
    }
  }
  return 0;

 set_failed:
  if (locks_unsupported (errno)) {
    unlock_all (fd);
    return 0;
  }
  if (errno == EAGAIN || errno == EACCES) {
    /* Someone holds an exclusive lock on our bytes: not QEMU, but in
     * use all the same. */
    unlock_all (fd);
    return ferry_error (EBUSY, "%s: the image is in use by another process "
                        "(it holds an exclusive lock on it)", path);
  }
 check_failed:
  r = errno;
  unlock_all (fd);
  return ferry_error_errno (r, "%s: taking the image locks", path);
}

int
ferry_image_lock_query (const char *path, unsigned *held, unsigned *unshared)
{
  int fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  unsigned n;
  int r;

  *held = *unshared = 0;
  if (fd == -1)
    return ferry_error_errno (errno, "%s", path);
  for (n = 0; n < NR_PERMS; n++) {
    int h = byte_taken (fd, HELD_BASE + n);
    int u = h == -1 ? -1 : byte_taken (fd, UNSHARED_BASE + n);

    r = h == -1 || u == -1 ? -1 : 0;
    *held |= (h == 1) << n;
    *unshared |= (u == 1) << n;
    if (r == -1) {
      r = errno;
      close (fd);
      if (locks_unsupported (r))
        return 0;
      return ferry_error_errno (r, "%s: asking for its image locks", path);
    }
  }
  close (fd);
  return 0;
}
