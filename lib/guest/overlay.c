/* ferry_guest_convert_image: convert the guest on image files, all or
 * nothing.
 *
 * NOTES ON THE DESIGN
 *
 * 1. The appliance never writes the images.  Each image gets a temporary
 *    qcow2 overlay (in $TMPDIR, default /var/tmp) whose backing file is
 *    the image; libguestfs opens the overlays, and every write of the
 *    conversion lands in them.
 * 2. Before the appliance starts, each image is checked to be one ferry
 *    can write in place (its format, not streamOptimized, a writable
 *    file), so such an image is refused before any work is done.  It is
 *    not opened for writing yet: a driver may update a header as it opens
 *    for writing, and a refused conversion must leave no trace.
 * 3. Only when the conversion succeeded and the appliance has flushed and
 *    stopped are the overlays' clusters copied into the images (the
 *    clusters of the overlay alone, opened without its backing file: what
 *    it holds is exactly what the conversion wrote).  Each image is
 *    flushed after its copy.  A refused or failed conversion leaves the
 *    images as they were, byte for byte.
 * 4. The overlays are removed in every case.  A crash during the copy of
 *    step 3 can leave an image partly converted (the copy is small: the
 *    files the conversion wrote, tens of MiB); the conversion can be run
 *    again on it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry/image.h>

#include "../common/cleanup.h"
#include "../common/stop.h"
#include "../common/util.h"
#include "internal.h"

#define COMMIT_CHUNK (1024 * 1024)

/* Copy what the overlay OVL itself holds into BASE (note 3). */
static int
commit_overlay (const char *ovl, struct ferry_image *base)
{
  struct ferry_image *top;
  struct ferry_extent_list list = { 0 };
  CLEANUP_FREE char *buf = NULL;
  uint64_t size, off = 0;
  int r = -1;

  top = ferry_image_open (ovl, "qcow2", FERRY_OPEN_NO_BACKING);
  if (!top)
    return -1;
  size = ferry_image_size (top);
  buf = malloc (COMMIT_CHUNK);
  if (!buf) {
    ferry_error (ENOMEM, "out of memory");
    goto out;
  }
  while (off < size) {
    size_t i;
    list.len = 0;
    if (ferry_image_extents (top, off, size - off, &list) == -1)
      goto out;
    for (i = 0; i < list.len; i++) {
      const struct ferry_extent *e = &list.ptr[i];
      uint64_t pos;
      if (e->flags & FERRY_EXTENT_HOLE)
        continue;
      if (e->flags & FERRY_EXTENT_ZERO) {
        if (ferry_image_zero (base, e->length, e->offset, 0) == -1)
          goto out;
        continue;
      }
      for (pos = e->offset; pos < e->offset + e->length; pos += COMMIT_CHUNK) {
        size_t n = MIN (COMMIT_CHUNK, e->offset + e->length - pos);
        if (ferry_image_pread (top, buf, n, pos) == -1 ||
            ferry_image_pwrite (base, buf, n, pos) == -1)
          goto out;
      }
    }
    if (list.len == 0)
      break;                    /* cannot be: extents cover what was asked */
    off = list.ptr[list.len - 1].offset + list.ptr[list.len - 1].length;
  }
  r = ferry_image_flush (base);

 out:
  ferry_extent_list_free (&list);
  ferry_image_close (top);
  return r;
}

/* Can ferry write DISK in place?  Decided without opening it for writing
 * (which may already change a header), from its format: *FORMAT and
 * *SIZE (its virtual size) are set.
 * 0, or -1 with the error set. */
static int
writable_in_place (const struct ferry_guest_disk *disk, const char **format,
                   uint64_t *size)
{
  static const char *const writable[] = { "raw", "qcow2", "vmdk", "vhdx", NULL };
  struct ferry_image *img = ferry_image_open (disk->path, disk->format, 0);
  struct ferry_image_info info;
  bool ok = false, stream = false;
  size_t i;

  if (!img)
    return -1;
  *format = ferry_image_format (img);
  *size = ferry_image_size (img);
  for (i = 0; writable[i]; i++)
    if (strcmp (*format, writable[i]) == 0)
      ok = true;
  if (ok && ferry_image_describe (img, &info) == 0)
    for (i = 0; i < info.nr_facts; i++)
      if (strcmp (info.facts[i].key, "create-type") == 0 &&
          info.facts[i].kind == FERRY_FACT_STRING &&
          strcmp (info.facts[i].string, "streamOptimized") == 0)
        ok = false, stream = true;
  if (!ok) {
    ferry_error (ENOTSUP, "%s: cannot convert the guest in place: ferry does "
                 "not write into an existing %s%s image; convert it to qcow2 "
                 "or raw first (ferry convert)", disk->path,
                 stream ? "streamOptimized " : "", *format);
    ferry_image_close (img);
    return -1;
  }
  ferry_image_close (img);
  if (access (disk->path, W_OK) == -1)
    return ferry_error_errno (errno, "%s: cannot convert the guest in place",
                              disk->path);
  return 0;
}

int
ferry_guest_convert_image (const struct ferry_guest_disk *disks, size_t n,
                           const struct ferry_guest_convert_options *opts,
                           struct ferry_guest_report **report)
{
  struct ferry_image **bases = NULL;
  struct ferry_guest_disk *ovl = NULL;
  const char **fmts = NULL;     /* each disk's format and size (note 2) */
  uint64_t *sizes = NULL;
  struct ferry_guest *g = NULL;
  const char *tmpdir = getenv ("TMPDIR");
  int ret = -1, converted = -1;
  size_t i;

  *report = NULL;
  if (n == 0)
    return ferry_error (EINVAL, "no disks given");
  if (!tmpdir || !*tmpdir)
    tmpdir = "/var/tmp";
  bases = calloc (n, sizeof *bases);
  ovl = calloc (n, sizeof *ovl);
  fmts = calloc (n, sizeof *fmts);
  sizes = calloc (n, sizeof *sizes);
  if (!bases || !ovl || !fmts || !sizes) {
    ferry_error (ENOMEM, "out of memory");
    goto out;
  }

  /* What cannot be written in place is refused first: that holds
   * whatever the disks contain (note 2). */
  for (i = 0; i < n; i++)
    if (writable_in_place (&disks[i], &fmts[i], &sizes[i]) == -1)
      goto out;
  {
    bool blank;
    if (ferry_guest_disks_blank (disks, n, &blank) == -1)
      goto out;
    if (blank) {
      ferry_error (ENOENT, "%s: no operating system found on the disks (no "
                   "partition table or file system); nothing was changed",
                   disks[0].path);
      goto out;
    }
  }
  for (i = 0; i < n; i++) {
    CLEANUP_FREE char *abs = NULL, *opt = NULL;
    struct ferry_image *o;
    const char *fmt = fmts[i];
    uint64_t size = sizes[i];
    char *path;
    int fd;

    abs = realpath (disks[i].path, NULL);
    path = guest_printf ("%s/ferry-convert-XXXXXX.qcow2", tmpdir);
    if (!abs || !path) {
      free (path);
      ferry_error_errno (errno, "%s", disks[i].path);
      goto out;
    }
    fd = mkstemps (path, 6);
    if (fd == -1) {
      ferry_error_errno (errno, "%s: a temporary overlay", path);
      free (path);
      goto out;
    }
    close (fd);
    unlink (path);            /* ferry_image_create wants a new name */
    ovl[i].path = path;
    ovl[i].format = "qcow2";
    opt = guest_printf ("backing_file=%s,backing_fmt=%s", abs, fmt);
    if (!opt) {
      ferry_error (ENOMEM, "out of memory");
      goto out;
    }
    o = ferry_image_create (path, "qcow2", size, opt);
    if (!o || ferry_image_close (o) == -1)
      goto out;
  }

  g = ferry_guest_open (ovl, n, 0);
  if (!g)
    goto out;
  /* The report names the images, not the overlays. */
  for (i = 0; i < n; i++) {
    char *name = strdup (disks[i].path);
    if (name) {
      free (g->disk_names[i]);
      g->disk_names[i] = name;
    }
  }
  converted = ferry_guest_convert (g, opts, report);
  if (ferry_guest_close (g) == -1 && converted == 0)
    converted = -1;
  g = NULL;
  if (converted == -1)
    goto out;
  /* A stop request now still leaves the images as they were (note 3);
   * once their copy starts, it is short and runs to its end. */
  if (stop_requested ()) {
    ferry_error (EINTR, "%s: interrupted; nothing was changed",
                 disks[0].path);
    goto out;
  }

  for (i = 0; i < n; i++) {
    bases[i] = ferry_image_open (disks[i].path, disks[i].format, FERRY_OPEN_WRITE);
    if (!bases[i] || commit_overlay (ovl[i].path, bases[i]) == -1) {
      ferry_error_prefix ("%s: writing the converted guest", disks[i].path);
      goto out;
    }
  }
  ret = 0;

 out:
  if (g) {
    /* Keep the conversion's error, not the shutdown's. */
    CLEANUP_FREE char *msg = strdup (ferry_get_error ());
    int err = ferry_get_errno ();
    ferry_guest_close (g);
    ferry_error (err, "%s", msg ? msg : "");
  }
  for (i = 0; bases && i < n; i++)
    if (bases[i] && ferry_image_close (bases[i]) == -1 && ret == 0)
      ret = -1;
  for (i = 0; ovl && i < n; i++)
    if (ovl[i].path) {
      unlink (ovl[i].path);
      free ((char *) ovl[i].path);
    }
  free (bases);
  free (ovl);
  free (fmts);
  free (sizes);
  return ret;
}
