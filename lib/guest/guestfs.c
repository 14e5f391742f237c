/* The libguestfs appliance behind struct ferry_guest, and the small file
 * and device helpers every other file of lib/guest uses.
 *
 * The appliance always runs with the direct backend (qemu started by
 * libguestfs itself, no libvirt) and, unless FERRY_GUESTFS_KVM=1, under
 * TCG: on some hosts /dev/kvm exists but Linux guests hang under it, which
 * no error reports; TCG is slower but always works.  With
 * FERRY_GUESTFS_KVM=1 a launch that fails under KVM is retried under TCG.
 *
 * Stopping (ferry_request_stop): libguestfs can cancel nothing but a file
 * transfer, and its calls, the appliance's start first, take seconds to
 * minutes.  So each handle has a watchdog thread that, on a stop request,
 * ends the processes libguestfs started for it (the appliance's QEMU, the
 * recovery process that watches it, supermin while it builds the
 * appliance): SIGTERM, then SIGKILL after STOP_GRACE_MS.  The call in
 * progress then fails at once (the appliance closed its connection), and
 * so does every later one; guest_error turns those failures into EINTR,
 * and guestfs_close reaps the processes and removes the appliance's
 * temporary files as after any failure.  The processes are told apart as
 * the children the opening thread forked after the watchdog started:
 * libguestfs forks them from the thread that calls it, and a handle is
 * used from the thread that opened it.  A QEMU that dies of the signal
 * while it starts leaves the overlay of its snapshot=on drive (the
 * appliance's root) in $TMPDIR; the watchdog notes it before the signal
 * and removes it after (note_qemu_temp_files).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry/image.h>

#include "../common/cleanup.h"
#include "../common/stop.h"
#include "internal.h"

/* How long the appliance's processes get to leave after SIGTERM. */
#define STOP_GRACE_MS 2000

/* The watchdog of one handle (see the top of the file). */
struct guest_watchdog {
  pthread_t thread;
  int wake[2];                  /* a byte on wake[1] ends the thread */
  pid_t tid;                    /* the thread that runs libguestfs */
  pid_t *before;                /* its children before, which stay */
  size_t nr_before;
  struct qemu_temp_files temp;  /* what the stopped QEMU may leave */
};

/* The largest guest file guest_read reads (modules.dep of a distribution
 * kernel is about 1 MiB). */
#define GUEST_TEXT_MAX (16 << 20)

int
guest_error (struct ferry_guest *g, const char *what)
{
  const char *msg = g && g->g ? guestfs_last_error (g->g) : NULL;
  int err = g && g->g ? guestfs_last_errno (g->g) : 0;

  /* The watchdog ended the appliance: that is why it failed. */
  if (stop_requested ())
    return ferry_error (EINTR, "%s: interrupted", what);
  if (err == 0)
    err = EIO;
  return ferry_error (err, "%s: %s", what, msg ? msg : "libguestfs failed (FERRY_DEBUG=1 shows its log)");
}

/* Libguestfs's messages go to ferry's debug log (FERRY_DEBUG=1 shows them). */
static void
guestfs_log (guestfs_h *h, void *opaque, uint64_t event, int event_handle,
             int flags, const char *buf, size_t len,
             const uint64_t *array, size_t array_len)
{
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
    len--;
  if (len)
    ferry_debug ("libguestfs: %.*s", (int) len, buf);
}

/* Send SIG to the children W->tid forked since the watchdog started. */
static void
end_appliance (struct guest_watchdog *w, int sig)
{
  pid_t *now;
  size_t nr, i, j;

  if (list_children (w->tid, &now, &nr) == -1)
    return;
  for (i = 0; i < nr; i++) {
    for (j = 0; j < w->nr_before && w->before[j] != now[i]; j++)
      ;
    if (j == w->nr_before) {
      if (sig == SIGTERM)
        note_qemu_temp_files (now[i], &w->temp);
      kill (now[i], sig);
    }
  }
  free (now);
}

/* The watchdog thread: wait for a stop request (or the end), then end
 * the appliance. */
static void *
watchdog_main (void *arg)
{
  struct guest_watchdog *w = arg;
  struct pollfd fds[2] = {
    { .fd = w->wake[0], .events = POLLIN },
    { .fd = stop_fd (), .events = POLLIN },
  };

  for (;;) {
    if (poll (fds, 2, STOP_POLL_MS) > 0 && (fds[0].revents & POLLIN))
      return NULL;
    if (stop_requested ())
      break;
  }
  ferry_debug ("libguestfs: stopping the appliance");
  end_appliance (w, SIGTERM);
  if (poll (fds, 1, STOP_GRACE_MS) > 0)
    return NULL;
  end_appliance (w, SIGKILL);
  return NULL;
}

/* Start the watchdog of G on the calling thread's behalf; without one
 * (no thread to be had) a stop waits for the call in progress. */
static void
watchdog_start (struct ferry_guest *g)
{
  struct guest_watchdog *w = calloc (1, sizeof *w);
  sigset_t all, old;

  if (!w || pipe2 (w->wake, O_CLOEXEC) == -1) {
    free (w);
    return;
  }
  w->tid = gettid ();
  if (list_children (w->tid, &w->before, &w->nr_before) == -1)
    goto err;
  /* The program's signal handlers run on its own threads. */
  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &old);
  if (pthread_create (&w->thread, NULL, watchdog_main, w) != 0) {
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    goto err;
  }
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  g->watchdog = w;
  return;

 err:
  ferry_debug ("libguestfs: no watchdog for the appliance");
  close (w->wake[0]);
  close (w->wake[1]);
  free (w->before);
  free (w);
}

/* End G's watchdog (after guestfs_close, which reaps the appliance). */
static void
watchdog_stop (struct ferry_guest *g)
{
  struct guest_watchdog *w = g->watchdog;
  char c = 0;

  if (!w)
    return;
  if (write (w->wake[1], &c, 1) == -1) {
    /* Cannot be: the pipe is empty.  The join below would hang, so the
     * thread is left to end with the process. */
    pthread_detach (w->thread);
  }
  else
    pthread_join (w->thread, NULL);
  remove_qemu_temp_files (&w->temp);
  close (w->wake[0]);
  close (w->wake[1]);
  free (w->before);
  free (w);
  g->watchdog = NULL;
}

/* qemu's name for a ferry format. */
static const char *
qemu_format (const char *format)
{
  if (strcmp (format, "vhd") == 0)
    return "vpc";
  return format;
}

/* A configured handle with the disks added, not launched.  NULL on error
 * (message set). */
static guestfs_h *
make_handle (const struct ferry_guest_disk *disks, size_t n, bool readonly,
             bool tcg, char **formats)
{
  guestfs_h *h;
  size_t i;

  h = guestfs_create_flags (GUESTFS_CREATE_NO_ENVIRONMENT);
  if (!h) {
    ferry_error (ENOMEM, "libguestfs: cannot create a handle");
    return NULL;
  }
  guestfs_set_error_handler (h, NULL, NULL);
  /* The environment's LIBGUESTFS_PATH, _TMPDIR, _CACHEDIR still count; its
   * backend does not. */
  if (guestfs_parse_environment (h) == -1 ||
      guestfs_set_backend (h, "direct") == -1 ||
      (tcg && guestfs_set_backend_setting (h, "force_tcg", "1") == -1))
    goto err;
  if (getenv ("FERRY_DEBUG")) {
    guestfs_set_verbose (h, 1);
    guestfs_set_event_callback (h, guestfs_log, GUESTFS_EVENT_LIBRARY |
                                GUESTFS_EVENT_WARNING | GUESTFS_EVENT_APPLIANCE |
                                GUESTFS_EVENT_TRACE, 0, NULL);
  }
  for (i = 0; i < n; i++) {
    if (guestfs_add_drive_opts (h, disks[i].path,
                                GUESTFS_ADD_DRIVE_OPTS_FORMAT,
                                qemu_format (formats[i]),
                                GUESTFS_ADD_DRIVE_OPTS_READONLY, readonly,
                                -1) == -1) {
      ferry_error (EINVAL, "%s: %s", disks[i].path, guestfs_last_error (h));
      guestfs_close (h);
      return NULL;
    }
  }
  return h;

 err:
  ferry_error (EINVAL, "libguestfs: %s", guestfs_last_error (h));
  guestfs_close (h);
  return NULL;
}

struct ferry_guest *
ferry_guest_open (const struct ferry_guest_disk *disks, size_t n,
                  unsigned flags)
{
  struct ferry_guest *g;
  char **formats = NULL;
  bool readonly = flags & FERRY_GUEST_READONLY;
  bool tcg = !(getenv ("FERRY_GUESTFS_KVM") &&
               strcmp (getenv ("FERRY_GUESTFS_KVM"), "1") == 0);
  size_t i;

  if (n == 0) {
    ferry_error (EINVAL, "no disks given");
    return NULL;
  }
  g = calloc (1, sizeof *g);
  formats = calloc (n, sizeof *formats);
  if (!g || !formats)
    goto nomem;
  g->readonly = readonly;
  g->nr_disks = n;
  g->disk_names = calloc (n + 1, sizeof *g->disk_names);
  if (!g->disk_names)
    goto nomem;
  for (i = 0; i < n; i++) {
    const char *fmt = disks[i].format;
    struct ferry_image *img;
    if (ferry_image_is_uri (disks[i].path)) {
      ferry_error (EINVAL, "%s: guest inspection and conversion work on "
                   "files; copy the export to a file first", disks[i].path);
      goto err;
    }
    /* ferry reads it first: a bad image gets ferry's message naming the
     * file and the structure, not QEMU's, and no appliance starts. */
    img = ferry_image_open (disks[i].path, fmt,
                            readonly && (flags & FERRY_GUEST_SHARED) ?
                            FERRY_OPEN_SHARED : 0);
    if (!img)
      goto err;
    fmt = ferry_image_format (img);
    if (!(g->disk_names[i] = strdup (disks[i].path)) ||
        !(formats[i] = strdup (fmt))) {
      ferry_image_close (img);
      goto nomem;
    }
    ferry_image_close (img);
  }

  watchdog_start (g);
  g->g = make_handle (disks, n, readonly, tcg, formats);
  if (!g->g)
    goto err;
  if (guestfs_launch (g->g) == -1) {
    if (tcg || stop_requested ()) {
      guest_error (g, "libguestfs: starting the appliance");
      goto err;
    }
    ferry_debug ("libguestfs: launch under KVM failed (%s); trying TCG",
                 guestfs_last_error (g->g));
    guestfs_close (g->g);
    g->g = make_handle (disks, n, readonly, true, formats);
    if (!g->g)
      goto err;
    if (guestfs_launch (g->g) == -1) {
      guest_error (g, "libguestfs: starting the appliance");
      goto err;
    }
  }
  g->devices = guestfs_list_devices (g->g);
  if (!g->devices) {
    guest_error (g, "libguestfs: listing the disks");
    goto err;
  }
  for (i = 0; i < n; i++)
    free (formats[i]);
  free (formats);
  return g;

 nomem:
  ferry_error (ENOMEM, "out of memory");
 err:
  if (formats)
    for (i = 0; i < n; i++)
      free (formats[i]);
  free (formats);
  if (g && g->g)
    guestfs_close (g->g);
  if (g) {
    g->g = NULL;
    ferry_guest_close (g);
  }
  return NULL;
}

int
ferry_guest_close (struct ferry_guest *g)
{
  int r = 0;
  size_t i;

  if (!g)
    return 0;
  if (g->g) {
    if (!g->readonly) {
      guestfs_umount_all (g->g);
      if (guestfs_sync (g->g) == -1)
        r = guest_error (g, "libguestfs: flushing the disks");
    }
    if (guestfs_shutdown (g->g) == -1 && r == 0)
      r = guest_error (g, "libguestfs: stopping the appliance");
    guestfs_close (g->g);
  }
  watchdog_stop (g);
  guest_free_strings (g->devices);
  if (g->disk_names)
    for (i = 0; i < g->nr_disks; i++)
      free (g->disk_names[i]);
  free (g->disk_names);
  free (g->mounted_root);
  free (g);
  return r;
}

void
guest_free_strings (char **v)
{
  size_t i;

  if (!v)
    return;
  for (i = 0; v[i]; i++)
    free (v[i]);
  free (v);
}

/* Sort mount points by length, so "/" comes before "/boot". */
static int
cmp_mountpoint (const void *a, const void *b)
{
  const char *const *x = a, *const *y = b;
  size_t lx = strlen (x[0]), ly = strlen (y[0]);

  return lx < ly ? -1 : lx > ly ? 1 : strcmp (x[0], y[0]);
}

int
guest_mount_os (struct ferry_guest *g, const char *root)
{
  char **mps;
  size_t n, i;
  int r = 0;

  if (g->mounted_root && strcmp (g->mounted_root, root) == 0)
    return 0;
  guest_umount_all (g);
  mps = guestfs_inspect_get_mountpoints (g->g, root);
  if (!mps)
    return guest_error (g, "libguestfs: the mount points of the guest");
  for (n = 0; mps[n]; n += 2)
    ;
  /* Pairs of (mount point, device): sort the pairs. */
  qsort (mps, n / 2, 2 * sizeof *mps, cmp_mountpoint);
  for (i = 0; i < n; i += 2) {
    int m = g->readonly ? guestfs_mount_ro (g->g, mps[i + 1], mps[i])
                        : guestfs_mount (g->g, mps[i + 1], mps[i]);
    if (m == -1) {
      if (strcmp (mps[i], "/") == 0) {
        r = ferry_error (EIO, "%s: cannot mount the root file system: %s",
                         mps[i + 1], guestfs_last_error (g->g));
        break;
      }
      ferry_warn ("%s: cannot mount it on %s: %s", mps[i + 1], mps[i],
                  guestfs_last_error (g->g));
    }
  }
  guest_free_strings (mps);
  if (r == 0 && !(g->mounted_root = strdup (root)))
    r = ferry_error (ENOMEM, "out of memory");
  return r;
}

void
guest_umount_all (struct ferry_guest *g)
{
  if (g->mounted_root) {
    guestfs_umount_all (g->g);
    free (g->mounted_root);
    g->mounted_root = NULL;
  }
}

bool
guest_exists (struct ferry_guest *g, const char *path)
{
  return guestfs_exists (g->g, path) > 0;
}

bool
guest_is_file (struct ferry_guest *g, const char *path)
{
  return guestfs_is_file_opts (g->g, path, GUESTFS_IS_FILE_OPTS_FOLLOWSYMLINKS,
                               1, -1) > 0;
}

bool
guest_is_dir (struct ferry_guest *g, const char *path)
{
  return guestfs_is_dir_opts (g->g, path, GUESTFS_IS_DIR_OPTS_FOLLOWSYMLINKS,
                              1, -1) > 0;
}

char *
guest_read (struct ferry_guest *g, const char *path, size_t *size)
{
  char *data, *text;
  size_t n;
  int64_t fsize;

  *size = 0;
  if (!guest_is_file (g, path))
    return NULL;
  /* Every file ferry reads from a guest is configuration text; a huge one
   * is hostile or broken, and reading it whole would cost its size.  It
   * is passed over as if absent, with a warning. */
  fsize = guestfs_filesize (g->g, path);
  if (fsize == -1) {
    guest_error (g, path);
    return NULL;
  }
  if (fsize > GUEST_TEXT_MAX) {
    ferry_warn ("%s: %" PRIi64 " bytes, more than the %d MiB a configuration "
                "file may have: not read", path, fsize, GUEST_TEXT_MAX >> 20);
    return NULL;
  }
  data = guestfs_read_file (g->g, path, &n);
  if (!data) {
    guest_error (g, path);
    return NULL;
  }
  text = realloc (data, n + 1);
  if (!text) {
    free (data);
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  text[n] = '\0';
  *size = n;
  return text;
}

int
guest_write (struct ferry_guest *g, const char *path, const char *text)
{
  if (guestfs_write (g->g, path, text, strlen (text)) == -1)
    return guest_error (g, path);
  return 0;
}

char **
guest_glob (struct ferry_guest *g, const char *pattern)
{
  char **v = guestfs_glob_expand (g->g, pattern);

  if (!v)
    guest_error (g, pattern);
  return v;
}

char *
guest_sh (struct ferry_guest *g, const char *what, const char *command)
{
  CLEANUP_FREE char *full = NULL;
  char *out;

  full = guest_printf ("export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C "
                       "DEBIAN_FRONTEND=noninteractive; %s", command);
  if (!full) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  ferry_debug ("guest: %s: %s", what, command);
  out = guestfs_sh (g->g, full);
  if (!out)
    guest_error (g, what);
  return out;
}

char *
guest_resolve_device (struct ferry_guest *g, const char *spec)
{
  const char *p, *letters;
  size_t index = 0, nr_devices;
  char *r;

  if (strncmp (spec, "UUID=", 5) == 0 ||
      strncmp (spec, "/dev/disk/by-uuid/", 18) == 0 ||
      strncmp (spec, "LABEL=", 6) == 0 ||
      strncmp (spec, "/dev/disk/by-label/", 19) == 0) {
    bool uuid = spec[0] == 'U' || strncmp (spec, "/dev/disk/by-uuid/", 18) == 0;
    const char *value = strchr (spec, '=') ? strchr (spec, '=') + 1
                                           : strrchr (spec, '/') + 1;
    guestfs_push_error_handler (g->g, NULL, NULL);
    r = uuid ? guestfs_findfs_uuid (g->g, value) : guestfs_findfs_label (g->g, value);
    guestfs_pop_error_handler (g->g);
    return r;
  }
  if (!guest_is_bus_bound_device (spec) || strncmp (spec, "/dev/disk/", 10) == 0)
    return NULL;
  /* /dev/sdb2: the second disk, partition 2.  Disks are added in the VM's
   * order, which is also how the guest's kernel named them. */
  p = spec + 5;
  p += strncmp (p, "xvd", 3) == 0 ? 3 : 2;
  letters = p;
  while (*p >= 'a' && *p <= 'z')
    p++;
  if (p - letters == 1)
    index = (size_t) (letters[0] - 'a');
  else if (p - letters == 2)                  /* sdaa is disk 26 */
    index = (size_t) (letters[0] - 'a' + 1) * 26 + (size_t) (letters[1] - 'a');
  else
    return NULL;
  for (nr_devices = 0; g->devices[nr_devices]; nr_devices++)
    ;
  if (index >= nr_devices || index >= g->nr_disks)
    return NULL;
  r = guest_printf ("%s%s", g->devices[index], p);
  if (r && *p) {
    /* The partition must exist (is_blockdev would look in the guest's
     * own /dev, not the appliance's). */
    char **parts = guestfs_list_partitions (g->g);
    size_t i;
    bool found = false;
    for (i = 0; parts && parts[i]; i++)
      if (strcmp (parts[i], r) == 0)
        found = true;
    guest_free_strings (parts);
    if (!found) {
      free (r);
      return NULL;
    }
  }
  return r;
}

char *
guest_stable_name (struct ferry_guest *g, const char *device)
{
  char *v, *r = NULL;

  guestfs_push_error_handler (g->g, NULL, NULL);
  v = guestfs_vfs_uuid (g->g, device);
  if (v && *v)
    r = guest_printf ("UUID=%s", v);
  free (v);
  if (!r) {
    v = guestfs_vfs_label (g->g, device);
    if (v && *v)
      r = guest_printf ("LABEL=%s", v);
    free (v);
  }
  guestfs_pop_error_handler (g->g);
  return r;
}

/* The signatures of what an OS disk starts with: a partition table, or a
 * file system or volume written on the whole disk. */
static const struct {
  uint32_t offset;
  const char *magic;
  size_t len;
} disk_signatures[] = {
  { 510, "\x55\xaa", 2 },             /* MBR (and GPT's protective MBR) */
  { 512, "EFI PART", 8 },               /* GPT header */
  { 1080, "\x53\xef", 2 },            /* ext2, ext3, ext4 */
  { 0, "XFSB", 4 },                     /* XFS */
  { 512, "LABELONE", 8 },               /* LVM physical volume */
  { 65600, "_BHRfS_M", 8 },             /* btrfs */
  { 3, "NTFS    ", 8 },                 /* NTFS */
  { 0, "\xeb", 1 },                    /* FAT, other x86 boot sectors */
  { 4086, "SWAPSPACE2", 10 },           /* swap */
  { 0, "LUKS\xba\xbe", 6 },           /* LUKS */
};

int
ferry_guest_disks_blank (const struct ferry_guest_disk *disks, size_t n,
                         bool *blank)
{
  enum { PROBE = 65608 };
  char *buf = malloc (PROBE);
  size_t i, j;

  if (!buf)
    return ferry_error (ENOMEM, "out of memory");
  *blank = true;
  for (i = 0; i < n && *blank; i++) {
    struct ferry_image *img = ferry_image_open (disks[i].path, disks[i].format, 0);
    uint64_t size, len;
    if (!img) {
      free (buf);
      return -1;
    }
    size = ferry_image_size (img);
    len = size < PROBE ? size : PROBE;
    memset (buf, 0, PROBE);
    if (len && ferry_image_pread (img, buf, len, 0) == -1) {
      ferry_image_close (img);
      free (buf);
      return -1;
    }
    ferry_image_close (img);
    for (j = 0; j < sizeof disk_signatures / sizeof disk_signatures[0]; j++)
      if (memcmp (buf + disk_signatures[j].offset, disk_signatures[j].magic,
                  disk_signatures[j].len) == 0)
        *blank = false;
  }
  free (buf);
  return 0;
}
