/* vmdk: the files of an image ferry made, moved into place or removed.
 *
 * ferry writes a new target under a temporary name and renames it when
 * it is complete (target.c).  A VMDK made of several files
 * (monolithicFlat, twoGbMaxExtent*) names its extents after the
 * descriptor: .disk.vmdk.ferry-1a2b3c (the temporary descriptor) has
 * extents .disk.vmdk-s001.ferry-1a2b3c, ...  vmdk_rename gives them the
 * names that go with the final descriptor (disk-s001.vmdk) and only then
 * moves the descriptor, rewritten to name them, so the final name appears
 * last and only for a complete image.
 *
 * NOTES ON CRASH SAFETY
 *
 * 1. The extents get their new names first, as second links (link(2)
 *    never replaces an existing disk-s001.vmdk); then the descriptor is
 *    rewritten to name them and renamed (RENAME_NOREPLACE) to its final
 *    name; only then do the extents' temporary names go.  When a step
 *    fails before the descriptor's rename, the new links are removed and
 *    the descriptor keeps its old text, so the caller can remove the
 *    temporary image as it was.  A file system without hard links gets
 *    renames instead, moved back on failure.
 *
 * 2. With SYNC, each extent is fsync'd before it is linked, and the
 *    rewritten descriptor before the final rename; the caller syncs the
 *    folder.
 *
 * 3. A crash between the links and the descriptor's rename leaves the
 *    temporary image whole, some extents with a second, final name, and
 *    nothing that opens as the finished disk; a later ferry removes both
 *    names of such extents (target.c note 6).  A crash after the rename
 *    leaves the finished disk and temporary names linked to its extents,
 *    whose removal changes nothing.  Without hard links, a crash between
 *    the renames leaves extents under their final names that nothing
 *    will remove.
 *
 * 4. vmdk_remove deletes only extent files in the descriptor's own folder
 *    (names without a '/'), never a path the descriptor points elsewhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmdk-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

int
vmdk_split_name (const char *path, char **prefix, char **postfix)
{
  const char *base = strrchr (path, '/'), *dot;

  base = base ? base + 1 : path;
  dot = strrchr (base, '.');
  if (dot == NULL || dot == base)
    dot = base + strlen (base);
  *prefix = strdup_counted (base, dot - base);
  *postfix = strdup (dot);
  if (*prefix == NULL || *postfix == NULL) {
    free (*prefix);
    free (*postfix);
    return -1;
  }
  return 0;
}

/* Read the whole of the small file PATH; NULL (errno set) when it cannot
 * be read or is larger than a descriptor. */
static char *
read_small_file (const char *path, size_t *len)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  char *text;

  if (fd == -1 || fstat (fd, &st) == -1)
    return NULL;
  if (!S_ISREG (st.st_mode) || (uint64_t) st.st_size > VMDK_MAX_DESCRIPTOR) {
    errno = EINVAL;
    return NULL;
  }
  text = malloc (st.st_size + 1);
  if (text == NULL)
    return NULL;
  if (full_pread (fd, text, st.st_size, 0) == -1) {
    free (text);
    return NULL;
  }
  text[st.st_size] = '\0';
  *len = st.st_size;
  return text;
}

/* Parse PATH as a text descriptor file into D; -1 (no message) when it
 * is not one. */
static int
read_descriptor_file (const char *path, struct vmdk_descriptor *d,
                      char **text /* OUT */)
{
  size_t len = 0;

  *text = read_small_file (path, &len);
  if (*text == NULL)
    return -1;
  if (!vmdk_looks_like_descriptor ((const uint8_t *) *text, len) ||
      vmdk_descriptor_parse (path, *text, len, d) == -1) {
    free (*text);
    *text = NULL;
    return -1;
  }
  return 0;
}

int
vmdk_remove (const char *path)
{
  struct vmdk_descriptor d;
  CLEANUP_FREE char *text = NULL;
  size_t i;

  if (read_descriptor_file (path, &d, &text) == 0) {
    for (i = 0; i < d.extents.len; i++) {
      const char *file = d.extents.ptr[i].file;
      char *p;
      if (file == NULL || strchr (file, '/'))   /* note 4 */
        continue;
      p = image_resolve_relative (path, file);
      if (p)
        unlink (p);
      free (p);
    }
    vmdk_descriptor_free (&d);
  }
  if (unlink (path) == -1 && errno != ENOENT)
    return ferry_error_errno (errno, "%s: removing it", path);
  return 0;
}

/* Write TEXT over the file PATH (descriptor files); with SYNC, fsync. */
static int
rewrite_file (const char *path, const char *text, bool sync)
{
  CLEANUP_CLOSE int fd = open (path, O_WRONLY | O_CLOEXEC);
  size_t len = strlen (text);

  if (fd == -1 || full_pwrite (fd, text, len, 0) == -1 ||
      truncate_fd (fd, len) == -1 || (sync && sync_fd (fd) == -1))
    return ferry_error_errno (errno, "%s: writing the descriptor", path);
  return 0;
}

/* Rename a monolithic file: its embedded descriptor is made to name the
 * new file (cosmetic: readers take the data from the file itself) when
 * it fits in its sectors, then the file moves. */
static int
rename_monolithic (const char *from, const char *to, bool sync)
{
  CLEANUP_CLOSE int fd = open (from, O_RDWR | O_CLOEXEC);
  CLEANUP_FREE char *text = NULL, *new_text = NULL, *base = strdup (to);
  uint8_t hdr[VMDK_SECTOR];
  struct vmdk_sparse_header h;
  struct vmdk_descriptor d;
  uint64_t len;

  if (fd == -1 || base == NULL)
    return ferry_error_errno (errno ? errno : ENOMEM, "%s", from);
  if (full_pread (fd, hdr, sizeof hdr, 0) == -1)
    return ferry_error_errno (errno, "%s: reading the header", from);
  vmdk_header_decode (hdr, &h);
  len = h.desc_size * VMDK_SECTOR;
  if (h.desc_offset && len && len <= VMDK_MAX_DESCRIPTOR &&
      (text = calloc (1, len + 1)) != NULL &&
      full_pread (fd, text, len, h.desc_offset * VMDK_SECTOR) == 0 &&
      vmdk_descriptor_parse (from, text, len, &d) == 0) {
    if (d.extents.len == 1) {
      char *name = strdup (basename (base));
      if (name) {
        free (d.extents.ptr[0].file);
        d.extents.ptr[0].file = name;
        new_text = vmdk_descriptor_format (&d);
      }
    }
    vmdk_descriptor_free (&d);
    if (new_text && strlen (new_text) <= len) {
      memset (text, 0, len);
      memcpy (text, new_text, strlen (new_text));
      if (full_pwrite (fd, text, len, h.desc_offset * VMDK_SECTOR) == -1)
        return ferry_error_errno (errno, "%s: writing the descriptor", from);
    }
  }
  if (sync && sync_fd (fd) == -1)
    return ferry_error_errno (errno, "%s: fsync", from);
  if (rename_noreplace (from, to) == -1)
    return ferry_error_errno (errno, "%s: renaming the finished image into "
                              "place", to);
  return 0;
}

/* Take back the first N new names of the extents: unlink them (they were
 * links), or, after renames, move them back (note 1). */
static void
undo_moves (char **old_paths, char **new_paths, size_t n, bool renamed)
{
  while (n-- > 0) {
    if (old_paths[n] == NULL || new_paths[n] == NULL)
      continue;
    if (renamed)
      rename (new_paths[n], old_paths[n]);
    else
      unlink (new_paths[n]);
  }
}

/* True when link(2) failed with ERR because the file system has no hard
 * links, as opposed to a name that exists or an I/O error. */
static bool
no_hard_links (int err)
{
  return err == EPERM || err == ENOTSUP || err == EOPNOTSUPP ||
    err == ENOSYS || err == EMLINK;
}

/* Rename a descriptor file and its extents (notes 1 to 3). */
static int
rename_split (const char *from, const char *to, bool sync,
              struct vmdk_descriptor *d, const char *old_text)
{
  CLEANUP_FREE char *fp = NULL, *fpost = NULL, *tp = NULL, *tpost = NULL;
  CLEANUP_FREE char *to_copy = strdup (to), *new_text = NULL;
  size_t n = d->extents.len, i, moved = 0;
  char **old_paths = calloc (n + 1, sizeof *old_paths);
  char **new_paths = calloc (n + 1, sizeof *new_paths);
  bool renamed = false;        /* no hard links: the extents were renamed */
  const char *to_dir;
  int ret = -1;

  if (to_copy == NULL || old_paths == NULL || new_paths == NULL ||
      vmdk_split_name (from, &fp, &fpost) == -1 ||
      vmdk_split_name (to, &tp, &tpost) == -1) {
    ferry_error (ENOMEM, "%s: out of memory", from);
    goto out;
  }
  to_dir = dirname (to_copy);

  /* The new names: the part between the old prefix and postfix kept. */
  for (i = 0; i < n; i++) {
    struct vmdk_extent_line *l = &d->extents.ptr[i];
    size_t len, fl = strlen (fp), pl = strlen (fpost);
    char *name;

    if (l->file == NULL)
      continue;
    len = strlen (l->file);
    if (strchr (l->file, '/') || len < fl + pl ||
        strncmp (l->file, fp, fl) != 0 ||
        strcmp (l->file + len - pl, fpost) != 0) {
      ferry_error (EINVAL, "%s: extent file '%s' is not named after the "
                   "descriptor; ferry moves only the images it made", from,
                   l->file);
      goto out;
    }
    if (asprintf (&name, "%s%.*s%s", tp, (int) (len - fl - pl),
                  l->file + fl, tpost) == -1) {
      ferry_error (ENOMEM, "%s: out of memory", from);
      goto out;
    }
    old_paths[i] = image_resolve_relative (from, l->file);
    if (asprintf (&new_paths[i], "%s/%s", to_dir, name) == -1)
      new_paths[i] = NULL;
    free (l->file);
    l->file = name;
    if (old_paths[i] == NULL || new_paths[i] == NULL) {
      ferry_error (ENOMEM, "%s: out of memory", from);
      goto out;
    }
  }
  new_text = vmdk_descriptor_format (d);
  if (new_text == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", from);
    goto out;
  }

  for (i = 0; i < n; i++) {
    if (old_paths[i] == NULL)
      continue;
    if (sync && sync_path (old_paths[i]) == -1) {
      ferry_error_errno (errno, "%s: fsync of extent %s", from, old_paths[i]);
      goto out;
    }
  }
  for (moved = 0; moved < n; moved++) {
    int r;
    if (old_paths[moved] == NULL)
      continue;
    r = renamed ? rename_noreplace (old_paths[moved], new_paths[moved])
      : link_noreplace (old_paths[moved], new_paths[moved]);
    if (r == -1 && !renamed && moved == 0 && no_hard_links (errno)) {
      renamed = true;
      r = rename_noreplace (old_paths[moved], new_paths[moved]);
    }
    if (r == -1) {
      ferry_error_errno (errno, "%s: moving extent %s into place", from,
                         new_paths[moved]);
      undo_moves (old_paths, new_paths, moved, renamed);
      goto out;
    }
  }
  if (rewrite_file (from, new_text, sync) == -1) {
    undo_moves (old_paths, new_paths, n, renamed);
    goto out;
  }
  if (rename_noreplace (from, to) == -1) {
    ferry_error_errno (errno, "%s: renaming the finished image into place",
                       to);
    rewrite_file (from, old_text, false);
    undo_moves (old_paths, new_paths, n, renamed);
    goto out;
  }
  /* The disk is in place: the temporary names of its extents go. */
  for (i = 0; i < n && !renamed; i++)
    if (old_paths[i])
      unlink (old_paths[i]);
  ret = 0;

 out:
  for (i = 0; i < n; i++) {
    free (old_paths[i]);
    free (new_paths[i]);
  }
  free (old_paths);
  free (new_paths);
  return ret;
}

int
vmdk_rename (const char *from, const char *to, bool sync)
{
  struct vmdk_descriptor d;
  CLEANUP_FREE char *text = NULL, *copy = strdup (to);
  uint8_t magic[4] = { 0 };
  int fd, r;

  /* The new names go into the descriptor. */
  if (copy == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", to);
  if (vmdk_check_descriptor_name (to, basename (copy)) == -1)
    return -1;
  fd = open (from, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return ferry_error_errno (errno, "%s", from);
  r = full_pread (fd, magic, sizeof magic, 0);
  close (fd);
  if (r == -1)
    return ferry_error_errno (errno, "%s: reading the header", from);
  if (get_le32 (magic) == VMDK4_MAGIC)
    return rename_monolithic (from, to, sync);
  if (read_descriptor_file (from, &d, &text) == -1)
    return ferry_error (EINVAL, "%s: neither a sparse VMDK nor a descriptor "
                        "file", from);
  r = rename_split (from, to, sync, &d, text);
  vmdk_descriptor_free (&d);
  return r;
}
