/* New targets: written under a temporary name, committed by a rename that
 * never replaces, removed on anything short of a commit; and the
 * leftovers of writers that died.  See <ferry/target.h>.
 *
 * NOTES ON CRASH SAFETY
 *
 * 1. Names.  DEST is DIR/NAME.  The target is written as DIR/.NAME.ferry-
 *    TAG (TAG: 12 hex digits, 48 random bits), its "primary" name; the
 *    files an image keeps beside it are named after it and end in
 *    ".ferry-TAG" too (a VMDK's extents: .NAME-s001.ferry-TAG, see
 *    vmdk-files.c).  A lock file DIR/.NAME.ferry-TAG.lock, made first with
 *    O_EXCL and removed last, marks the group and carries its writer's
 *    lock.  Nothing ever waits under DEST itself.
 *
 * 2. The lock is an open file description lock (F_OFD_SETLK, write, the
 *    whole file) on the lock file, held from begin until commit or free
 *    is done.  It lives on the lock file, not on the image, so it never
 *    meets the byte-range locks that QEMU and ferry take on images, and
 *    it goes with its process however that ends (on NFS the server drops
 *    it).  Where the file system has no locks (EINVAL, EOPNOTSUPP, ENOSYS:
 *    lock.h's rule), the writer goes on without one, and sweepers, which
 *    cannot lock either, leave its files alone.  Any other lock error
 *    (ENOLCK: an NFS server without its lock service) fails the begin: a
 *    writer going on unlocked there would look dead to a sweeper whose
 *    lock does succeed, which would remove its files while it writes.
 *
 * 3. Begin: remove the dead leftovers of DIR (note 6), before DEST is
 *    looked at, so that a rerun after a kill that came after the rename
 *    (DEST complete, state 5a or 5d) removes them and only then refuses
 *    DEST as existing; create the lock file, lock it, and check that the name is still that file (a sweeper
 *    may have removed it between the two); only then the primary is made
 *    (a folder at once, an image by ferry_target_create_image).
 *
 * 4. Commit: close the image (the drivers write their tables and footers
 *    there), fsync every file (ferry_image_rename does it for an image,
 *    file by file before each moves; a folder's files are synced here),
 *    rename to DEST without replacing, fsync DIR; then unlink the lock
 *    file and close it.  Every result is checked.  If the fsync of DIR
 *    fails, DEST is removed again: a commit that fails leaves nothing.
 *    FERRY_TARGET_NO_SYNC leaves out every fsync, not the order.
 *
 * 5. What a writer killed at any point leaves (the jobs that resume start
 *    from exactly these), and DEST is absent or complete in each:
 *    a. the lock file alone: killed before the image was made, or after
 *       the rename (DEST complete) but before the lock file went;
 *    b. the lock file and a partial primary (an image, its extents, a
 *       folder with some disks): killed while writing or syncing;
 *    c. a split VMDK during its rename: (b), plus some of DEST's extent
 *       names already given to the temporary extents as second links
 *       (vmdk-files.c note 1);
 *    d. DEST complete, the lock file, and temporary extent names still
 *       linked to DEST's extents: killed after the descriptor's rename.
 *    A failure that is not a kill (an error, a signal that stops the
 *    copy) leaves nothing: the target is removed before the call returns.
 *
 * 6. Sweeping DIR: for each lock file that no live process holds, which
 *    we can tell by taking its lock ourselves (a regular file owned by
 *    our user, opened without following links, still under its name once
 *    locked), remove its group: every entry ending in ".ferry-TAG" (a
 *    folder with all it holds, never following a link), and, while the
 *    primary still exists with a single link (state c, not d), every other
 *    name in DIR of the group's files.  The lock file goes last, still
 *    locked, so no writer can take it over meanwhile.  Leftovers without
 *    a lock file (ferry before this scheme) are left alone: nobody can
 *    tell whether their writer lives.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ferry/target.h>

#include "internal.h"
#include "lock.h"
#include "../common/cleanup.h"
#include "../common/util.h"
#include "../common/vector.h"

#define TAG_DIGITS 12
#define TAG_MARK ".ferry-"
#define LOCK_SUFFIX ".lock"
/* How deep a leftover folder is removed (ferry makes none inside). */
#define REMOVE_DEPTH 8

/* A target of ferry_target_begin_kept (internal flag). */
#define FERRY_TARGET_KEPT 0x100

DEFINE_VECTOR_TYPE (string_vector, char *);

struct ferry_target {
  char *dest;                  /* as given */
  char *dir;                   /* DEST's folder, "." for none */
  char *prefix;                /* DEST up to its last '/' ("" for none) */
  char *temp;                  /* the primary: DIR/.NAME.ferry-TAG */
  char *lock_path;             /* temp + ".lock" */
  char *format;                /* image targets: the driver, or NULL */
  unsigned flags;
  int lock_fd;                 /* note 2; -1 once released */
  struct ferry_image *img;     /* made by create_image, until commit */
  bool made;                   /* the primary may exist: ours to remove */
  bool committed;
  bool alias;                  /* error_alias_add succeeded */
  string_vector removed;       /* leftovers swept, NULL-terminated */
};

/* --- leftovers (note 6) ----------------------------------------------------- */

/* True when NAME is ".X.ferry-TAG" (IS_LOCK: with ".lock" after it);
 * the TAG's digits are then at NAME + *TAG_AT. */
static bool
parse_temp_name (const char *name, bool is_lock, size_t *tag_at)
{
  size_t len = strlen (name), suffix = is_lock ? strlen (LOCK_SUFFIX) : 0;
  size_t mark = strlen (TAG_MARK), i;

  if (name[0] != '.' || len < 2 + mark + TAG_DIGITS + suffix ||
      (is_lock && strcmp (name + len - suffix, LOCK_SUFFIX) != 0))
    return false;
  *tag_at = len - suffix - TAG_DIGITS;
  if (strncmp (name + *tag_at - mark, TAG_MARK, mark) != 0)
    return false;
  for (i = 0; i < TAG_DIGITS; i++) {
    char c = name[*tag_at + i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  }
  return true;
}

/* Remove NAME in the folder DFD, a folder with all it holds down to DEPTH
 * levels, never following a link.  0, or -1 with errno set. */
static int
remove_tree_at (int dfd, const char *name, int depth)
{
  struct stat st;
  DIR *d;
  struct dirent *e;
  int fd, r = 0;

  if (fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
    return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR (st.st_mode))
    return unlinkat (dfd, name, 0) == -1 && errno != ENOENT ? -1 : 0;
  if (depth <= 0) {
    errno = ENOTEMPTY;
    return -1;
  }
  fd = openat (dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd == -1)
    return -1;
  d = fdopendir (fd);
  if (d == NULL) {
    close (fd);
    return -1;
  }
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") && strcmp (e->d_name, "..") &&
        remove_tree_at (dirfd (d), e->d_name, depth - 1) == -1)
      r = -1;
  closedir (d);
  if (unlinkat (dfd, name, AT_REMOVEDIR) == -1 && errno != ENOENT)
    r = -1;
  return r;
}

/* Record DIR/NAME in REMOVED (best effort: it is a report). */
static void
note_removed (string_vector *removed, const char *dir, const char *name)
{
  char *path;

  if (asprintf (&path, "%s%s%s", strcmp (dir, ".") ? dir : "",
                strcmp (dir, ".") ? "/" : "", name) == -1)
    return;
  if (string_vector_append (removed, path) == -1)
    free (path);
}

/* Remove the other names in NAMES (the entries of DFD) of the file ST,
 * which belongs to a dead group (note 6, state c). */
static void
remove_other_links (int dfd, const char *dir, const string_vector *names,
                    const struct stat *st, string_vector *removed)
{
  size_t i;

  for (i = 0; i < names->len; i++) {
    struct stat other;
    size_t at;
    if (!parse_temp_name (names->ptr[i], false, &at) &&
        fstatat (dfd, names->ptr[i], &other, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG (other.st_mode) && other.st_dev == st->st_dev &&
        other.st_ino == st->st_ino &&
        unlinkat (dfd, names->ptr[i], 0) == 0)
      note_removed (removed, dir, names->ptr[i]);
  }
}

/* Remove the group of the lock file LOCK, dead or ours, whose folder DFD
 * (DIR for messages) holds NAMES (note 6). */
static void
remove_group (int dfd, const char *dir, const string_vector *names,
              const char *lock, string_vector *removed)
{
  CLEANUP_FREE char *primary = NULL;
  struct stat pst;
  size_t tag_at, i, before = removed->len;
  bool links;

  if (!parse_temp_name (lock, true, &tag_at) ||
      (primary = strndup (lock, strlen (lock) - strlen (LOCK_SUFFIX))) == NULL)
    return;
  links = fstatat (dfd, primary, &pst, AT_SYMLINK_NOFOLLOW) == 0 &&
    S_ISREG (pst.st_mode) && pst.st_nlink == 1;
  for (i = 0; i < names->len; i++) {
    const char *name = names->ptr[i];
    struct stat st;
    size_t at;

    if (!parse_temp_name (name, false, &at) ||
        strncmp (name + at, lock + tag_at, TAG_DIGITS) != 0)
      continue;
    if (fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
      continue;
    if (links && S_ISREG (st.st_mode) && st.st_nlink > 1 &&
        strcmp (name, primary) != 0)
      remove_other_links (dfd, dir, names, &st, removed);
    if (remove_tree_at (dfd, name, REMOVE_DEPTH) == 0)
      note_removed (removed, dir, name);
    else
      ferry_warn ("%s/%s: cannot remove this temporary file: %s", dir,
                  name, strerror (errno));
  }
  /* A lock file alone (note 5a) is a leftover to report too. */
  if (unlinkat (dfd, lock, 0) == 0 && removed->len == before)
    note_removed (removed, dir, lock);
}

/* True when the lock file NAME in DFD is one we may sweep: ours, a
 * regular file, and nobody holds its lock.  *FD is then open and locked
 * (the caller closes it after the group is gone). */
static bool
lock_is_dead (int dfd, const char *name, int *fd)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  struct stat st, now;

  *fd = openat (dfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
                O_CLOEXEC);
  if (*fd == -1)
    return false;
  if (fstat (*fd, &st) == -1 || !S_ISREG (st.st_mode) ||
      st.st_uid != geteuid () || fcntl (*fd, F_OFD_SETLK, &fl) == -1 ||
      fstatat (dfd, name, &now, AT_SYMLINK_NOFOLLOW) == -1 ||
      now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
    close (*fd);
    *fd = -1;
    return false;
  }
  return true;
}

/* The entries of the folder DFD but "." and "..", into NAMES; false
 * when it cannot be read. */
static bool
list_folder (int dfd, string_vector *names)
{
  struct dirent *e;
  int fd = dup (dfd);
  DIR *d = fd >= 0 ? fdopendir (fd) : NULL;

  if (d == NULL) {
    if (fd >= 0)
      close (fd);
    return false;
  }
  while ((e = readdir (d)) != NULL) {
    char *copy;
    if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    copy = strdup (e->d_name);
    if (copy == NULL || string_vector_append (names, copy) == -1) {
      free (copy);
      break;
    }
  }
  closedir (d);
  return true;
}

/* Free the strings of NAMES and NAMES. */
static void
free_names (string_vector *names)
{
  size_t i;

  for (i = 0; i < names->len; i++)
    free (names->ptr[i]);
  free (names->ptr);
  memset (names, 0, sizeof *names);
}

/* Sweep DIR (note 6), appending what goes to REMOVED. */
static void
sweep (const char *dir, string_vector *removed)
{
  string_vector names = empty_vector;
  CLEANUP_CLOSE int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  size_t i, at;
  int fd;

  if (dfd == -1 || !list_folder (dfd, &names))
    return;
  for (i = 0; i < names.len; i++) {
    if (!parse_temp_name (names.ptr[i], true, &at) ||
        !lock_is_dead (dfd, names.ptr[i], &fd))
      continue;
    remove_group (dfd, dir, &names, names.ptr[i], removed);
    close (fd);
  }
  free_names (&names);
}

/* --- begin ------------------------------------------------------------------ */

/* Split DEST into T->dir, T->prefix and its base name *NAME (all
 * allocated). */
static int
split_dest (struct ferry_target *t, char **name)
{
  CLEANUP_FREE char *copy = strdup (t->dest);
  char *slash, *end;

  if (copy == NULL)
    return ferry_error (ENOMEM, "out of memory");
  end = copy + strlen (copy);
  while (end > copy + 1 && end[-1] == '/')
    *--end = '\0';
  slash = strrchr (copy, '/');
  *name = strdup (slash ? slash + 1 : copy);
  t->prefix = strndup (copy, slash ? (size_t) (slash + 1 - copy) : 0);
  if (slash == copy)
    t->dir = strdup ("/");
  else
    t->dir = slash ? strndup (copy, slash - copy) : strdup (".");
  if (*name == NULL || t->dir == NULL || t->prefix == NULL)
    return ferry_error (ENOMEM, "out of memory");
  if (**name == '\0' || !strcmp (*name, ".") || !strcmp (*name, "..") ||
      !strcmp (*name, "/"))
    return ferry_error (EINVAL, "%s: not a name for a new file or folder",
                        t->dest);
  return 0;
}

/* 48 random bits for a TAG. */
static uint64_t
random_tag (void)
{
  static uint64_t counter;
  uint64_t r;

  if (getrandom (&r, sizeof r, 0) != sizeof r)
    r = (uint64_t) getpid () << 32 ^ (uint64_t) time (NULL) ^
      __atomic_add_fetch (&counter, 0x9e3779b97f4a7c15, __ATOMIC_RELAXED);
  return r & UINT64_C (0xffffffffffff);
}

/* Reserve a TAG: make and lock the lock file, set T->temp (note 3). */
static int
reserve (struct ferry_target *t, const char *name)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  int tries;

  for (tries = 0; tries < 16; tries++) {
    struct stat st, now;
    int fd;

    free (t->temp);
    free (t->lock_path);
    t->temp = t->lock_path = NULL;
    if (asprintf (&t->temp, "%s.%s" TAG_MARK "%012" PRIx64, t->prefix,
                  name, random_tag ()) == -1) {
      t->temp = NULL;
      return ferry_error (ENOMEM, "out of memory");
    }
    if (asprintf (&t->lock_path, "%s" LOCK_SUFFIX, t->temp) == -1) {
      t->lock_path = NULL;
      return ferry_error (ENOMEM, "out of memory");
    }
    fd = open (t->lock_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
               O_CLOEXEC, 0600);
    if (fd == -1 && errno == EEXIST)
      continue;
    if (fd == -1)
      return ferry_error_errno (errno, "%s: making a temporary file beside "
                                "it", t->dest);
    if (fcntl (fd, F_OFD_SETLK, &fl) == -1) {
      int err = errno;
      if (err == EAGAIN || err == EACCES) {
        close (fd);            /* a sweeper holds it, and removes it */
        continue;
      }
      /* Only a file system without locks lets us go on unlocked (note
       * 2); any other failure would leave our files to the next sweeper
       * as a dead writer's. */
      if (!locks_unsupported (err)) {
        unlink (t->lock_path);
        close (fd);
        return ferry_error_errno (err, "%s: cannot lock the temporary "
                                  "file that marks it as being written",
                                  t->dest);
      }
    }
    if (fstat (fd, &st) == -1 || lstat (t->lock_path, &now) == -1 ||
        st.st_dev != now.st_dev || st.st_ino != now.st_ino) {
      close (fd);
      continue;
    }
    t->lock_fd = fd;
    return 0;
  }
  return ferry_error (EEXIST, "%s: no free temporary name beside it",
                      t->dest);
}

struct ferry_target *
ferry_target_begin (const char *dest, const char *format, unsigned flags)
{
  struct ferry_target *t = calloc (1, sizeof *t);
  CLEANUP_FREE char *name = NULL;
  struct stat st;
  size_t i;

  if (t == NULL) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  t->lock_fd = -1;
  t->flags = flags;
  t->dest = strdup (dest);
  t->format = format ? strdup (format) : NULL;
  if (t->dest == NULL || (format && t->format == NULL)) {
    ferry_error (ENOMEM, "out of memory");
    goto err;
  }
  if (ferry_image_is_uri (dest)) {
    ferry_error (EINVAL, "%s: an export is no file or folder to create",
                 dest);
    goto err;
  }
  if (split_dest (t, &name) == -1)
    goto err;
  /* The sweep comes before the check on DEST (note 3): a writer killed
   * after its rename left DEST whole beside its leftovers, and running
   * the same command again is how a user cleans up after it. */
  sweep (t->dir, &t->removed);
  if (string_vector_append (&t->removed, NULL) == -1) {
    ferry_error (ENOMEM, "out of memory");
    goto err;
  }
  if (lstat (dest, &st) == 0) {
    ferry_error (EEXIST, "%s exists already", dest);
    goto err;
  }
  if (reserve (t, name) == -1)
    goto err;
  {
    const char *base = strrchr (t->temp, '/');
    t->alias = error_alias_add (base ? base + 1 : t->temp, name) == 0;
  }
  if (flags & FERRY_TARGET_FOLDER) {
    if (mkdir (t->temp, 0777) == -1) {
      ferry_error_errno (errno, "%s: making its folder", dest);
      goto err;
    }
    t->made = true;
  }
  return t;

 err:
  /* The caller gets no target to ask what the sweep removed. */
  for (i = 0; i < t->removed.len && t->removed.ptr[i]; i++)
    ferry_warn ("removed %s, left by a ferry process that is gone",
                t->removed.ptr[i]);
  ferry_target_free (t);
  return NULL;
}

struct ferry_target *
ferry_target_begin_kept (const char *dest, const char *staging,
                         unsigned flags)
{
  struct ferry_target *t = calloc (1, sizeof *t);
  CLEANUP_FREE char *name = NULL;
  struct stat st;

  if (t == NULL) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  t->lock_fd = -1;
  t->flags = flags | FERRY_TARGET_FOLDER | FERRY_TARGET_KEPT;
  t->dest = strdup (dest);
  t->temp = strdup (staging);
  if (t->dest == NULL || t->temp == NULL) {
    ferry_error (ENOMEM, "out of memory");
    goto err;
  }
  if (split_dest (t, &name) == -1)
    goto err;
  if (lstat (dest, &st) == 0) {
    ferry_error (EEXIST, "%s exists already", dest);
    goto err;
  }
  if (mkdir (t->temp, 0777) == -1 && errno != EEXIST) {
    ferry_error_errno (errno, "%s: making its working folder %s", dest,
                       staging);
    goto err;
  }
  if (lstat (t->temp, &st) == -1 || !S_ISDIR (st.st_mode)) {
    ferry_error (ENOTDIR, "%s: its working folder %s is not a folder", dest,
                 staging);
    goto err;
  }
  t->made = true;
  {
    /* Messages name DEST, never the working folder (note 1). */
    const char *base = strrchr (t->temp, '/');
    t->alias = error_alias_add (base ? base + 1 : t->temp, name) == 0;
  }
  return t;

 err:
  ferry_target_free (t);
  return NULL;
}

int
ferry_target_discard (struct ferry_target *t)
{
  if (!(t->flags & FERRY_TARGET_KEPT) || t->committed || !t->made)
    return 0;
  if (remove_tree_at (AT_FDCWD, t->temp, REMOVE_DEPTH) == -1 &&
      errno != ENOENT)
    return ferry_error_errno (errno, "%s: removing its working folder %s",
                              t->dest, t->temp);
  t->made = false;
  return 0;
}

int
ferry_target_remove_kept (const char *staging)
{
  if (remove_tree_at (AT_FDCWD, staging, REMOVE_DEPTH) == -1 &&
      errno != ENOENT)
    return ferry_error_errno (errno, "%s: removing it", staging);
  return 0;
}

struct ferry_image *
ferry_target_create_image (struct ferry_target *t, uint64_t size,
                           const char *options)
{
  if ((t->flags & FERRY_TARGET_FOLDER) || t->made) {
    ferry_error (EINVAL, "%s: the target has its %s already", t->dest,
                 t->flags & FERRY_TARGET_FOLDER ? "folder" : "image");
    return NULL;
  }
  t->img = ferry_image_create (t->temp, t->format, size, options);
  t->made = t->img != NULL;
  return t->img;
}

const char *
ferry_target_path (const struct ferry_target *t)
{
  return t->temp;
}

const char *
ferry_target_dest (const struct ferry_target *t)
{
  return t->dest;
}

const char *const *
ferry_target_removed (const struct ferry_target *t)
{
  return (const char *const *) t->removed.ptr;
}

/* --- commit (note 4) -------------------------------------------------------- */

/* fsync every file under the folder PATH (DEPTH levels), then PATH. */
static int
sync_tree (const char *path, int depth)
{
  DIR *d = opendir (path);
  struct dirent *e;
  int r = 0;

  if (d == NULL)
    return ferry_error_errno (errno, "%s", path);
  while (r == 0 && (e = readdir (d)) != NULL) {
    CLEANUP_FREE char *sub = NULL;
    struct stat st;

    if (!strcmp (e->d_name, ".") || !strcmp (e->d_name, ".."))
      continue;
    if (fstatat (dirfd (d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
      r = ferry_error_errno (errno, "%s/%s", path, e->d_name);
      break;
    }
    if (asprintf (&sub, "%s/%s", path, e->d_name) == -1) {
      r = ferry_error (ENOMEM, "out of memory");
      break;
    }
    if (S_ISDIR (st.st_mode) && depth > 0)
      r = sync_tree (sub, depth - 1);
    else if (S_ISREG (st.st_mode) && sync_path (sub) == -1)
      r = ferry_error_errno (errno, "%s: fsync", sub);
  }
  if (r == 0 && sync_fd (dirfd (d)) == -1)
    r = ferry_error_errno (errno, "%s: fsync", path);
  closedir (d);
  return r;
}

/* Remove what stands under DEST after a rename that must be undone. */
static void
remove_dest (struct ferry_target *t)
{
  if (t->flags & FERRY_TARGET_FOLDER) {
    if (remove_tree_at (AT_FDCWD, t->dest, REMOVE_DEPTH) == -1)
      ferry_warn ("%s: cannot remove it: %s", t->dest, strerror (errno));
  }
  else
    ferry_image_remove (t->dest, t->format);
}

/* Drop the lock file (note 4: last). */
static void
release (struct ferry_target *t)
{
  if (t->lock_fd >= 0) {
    unlink (t->lock_path);
    close (t->lock_fd);
    t->lock_fd = -1;
  }
}

int
ferry_target_commit (struct ferry_target *t)
{
  bool sync = !(t->flags & FERRY_TARGET_NO_SYNC);

  if (t->committed)
    return 0;
  if (t->img) {
    struct ferry_image *img = t->img;
    t->img = NULL;
    if (ferry_image_close (img) == -1)
      return -1;
  }
  if (!t->made)
    return ferry_error (EINVAL, "%s: nothing was written to commit", t->dest);

  if (t->flags & FERRY_TARGET_FOLDER) {
    if (sync && sync_tree (t->temp, REMOVE_DEPTH) == -1)
      return -1;
    if (rename_noreplace (t->temp, t->dest) == -1)
      return errno == EEXIST
        ? ferry_error (EEXIST, "%s exists already", t->dest)
        : ferry_error_errno (errno, "%s: putting it in place", t->dest);
  }
  else if (ferry_image_rename (t->temp, t->dest, t->format, sync) == -1)
    return -1;
  t->made = false;

  if (sync && sync_path (t->dir) == -1) {
    int err = errno;
    remove_dest (t);
    return ferry_error_errno (err, "%s: syncing its folder %s, so it was "
                              "removed again", t->dest, t->dir);
  }
  t->committed = true;
  release (t);
  return 0;
}

/* Remove every name of T's group but its lock file, whatever the driver
 * left: an abort leaves nothing (note 5). */
static void
remove_own_group (struct ferry_target *t)
{
  string_vector names = empty_vector, removed = empty_vector;
  CLEANUP_CLOSE int dfd = open (t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const char *lock = strrchr (t->lock_path, '/');

  if (dfd == -1 || !list_folder (dfd, &names))
    return;
  remove_group (dfd, t->dir, &names, lock ? lock + 1 : t->lock_path,
                &removed);
  free_names (&names);
  free_names (&removed);
}

void
ferry_target_free (struct ferry_target *t)
{
  struct error_saved saved;
  size_t i;

  if (t == NULL)
    return;
  error_save (&saved);
  if (t->img) {
    ferry_image_close (t->img);
    t->img = NULL;
  }
  /* The alias goes before the removals: their warnings are about the
   * temporary names left behind, which DEST would misname. */
  if (t->alias) {
    const char *base = strrchr (t->temp, '/');
    error_alias_remove (base ? base + 1 : t->temp);
    t->alias = false;
  }
  if (t->made && !t->committed && !(t->flags & FERRY_TARGET_FOLDER) &&
      ferry_image_remove (t->temp, t->format) == -1)
    ferry_warn ("%s", ferry_get_error ());
  if (!t->committed && t->lock_fd >= 0)
    remove_own_group (t);
  release (t);
  for (i = 0; i < t->removed.len; i++)
    free (t->removed.ptr[i]);
  free (t->removed.ptr);
  free (t->dest);
  free (t->dir);
  free (t->prefix);
  free (t->temp);
  free (t->lock_path);
  free (t->format);
  free (t);
  error_restore (&saved);
}
