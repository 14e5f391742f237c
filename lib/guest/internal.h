/* lib/guest: what its files share.  Nothing outside lib/guest includes it.
 *
 *   guestfs.c      the appliance: open, close, errors, small file helpers
 *   inspect.c      ferry_guest_inspect (libguestfs inspection and more)
 *   linux-text.c   pure text rewrites (fstab, kernel command lines, netplan,
 *                  udev rules): no libguestfs, unit-tested on their own
 *   linux-tools.c  finding and removing hypervisor tools
 *   linux-boot.c   boot loader and initramfs
 *   linux-net.c    interface names, network files, SELinux, first boot
 *   convert.c      ferry_guest_convert: the steps in order, the report
 *   overlay.c      ferry_guest_convert_image: the overlay and its commit
 *   verify.c       ferry_guest_boot
 */
#ifndef FERRY_GUEST_INTERNAL_H
#define FERRY_GUEST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <guestfs.h>

#include <ferry/guest.h>

#include "../common/error.h"
#include "../common/vector.h"

struct ferry_guest {
  guestfs_h *g;
  bool readonly;
  size_t nr_disks;
  char **disk_names;         /* the paths given, for messages */
  char **devices;            /* the appliance's whole-disk devices, in order
                                (/dev/sda, /dev/sdb, ...), NULL-terminated */
  char *mounted_root;        /* the root whose file systems are mounted */
  struct guest_watchdog *watchdog;  /* ends the appliance on a stop, or
                                       NULL (guestfs.c) */
};

/* --- guestfs.c ----------------------------------------------------------- */

/* Set the ferry error from libguestfs's last error: "WHAT: message". */
int guest_error (struct ferry_guest *g, const char *what);

/* Mount every file system of the OS at ROOT where its fstab puts them
 * (read-only for a read-only handle), shortest mount point first.  0 or -1. */
int guest_mount_os (struct ferry_guest *g, const char *root);
void guest_umount_all (struct ferry_guest *g);

/* Read a whole file of the guest; NULL with *SIZE 0 and no error when it
 * does not exist, NULL with the error set when it cannot be read.  The
 * result is NUL-terminated; the caller frees it. */
char *guest_read (struct ferry_guest *g, const char *path, size_t *size);
bool guest_exists (struct ferry_guest *g, const char *path);
bool guest_is_file (struct ferry_guest *g, const char *path);
bool guest_is_dir (struct ferry_guest *g, const char *path);
/* Write TEXT to PATH, keeping its mode and owner when it exists.  0 or -1. */
int guest_write (struct ferry_guest *g, const char *path, const char *text);
/* Paths matching the shell glob PATTERN, NULL-terminated (maybe empty);
 * NULL on error.  Free with guest_free_strings. */
char **guest_glob (struct ferry_guest *g, const char *pattern);
/* Run COMMAND with /bin/sh inside the guest (chroot at its root), with a
 * sane PATH and LANG=C.  Its stdout, or NULL with the error set to
 * "WHAT: " and the command's output when it fails. */
char *guest_sh (struct ferry_guest *g, const char *what, const char *command);
void guest_free_strings (char **v);
/* The guest's device name for the appliance's DEVICE (a partition or a
 * whole disk): /dev/sdb2 -> the same name; used for messages. */

/* Resolve a device as the guest names it (/dev/sda1, /dev/hdb2,
 * /dev/xvda1, /dev/vda3, /dev/disk/by-...) to the appliance's device, or
 * NULL when it names nothing on these disks.  The caller frees it. */
char *guest_resolve_device (struct ferry_guest *g, const char *spec);
/* The stable name of the appliance's DEVICE: "UUID=..." (or "LABEL=..."
 * when it has no UUID), or NULL.  The caller frees it. */
char *guest_stable_name (struct ferry_guest *g, const char *device);

/* --- inspect.c ------------------------------------------------------------ */

/* Fill OS for ROOT (file systems already mounted). */
int guest_inspect_os (struct ferry_guest *g, const char *root,
                      struct ferry_guest_os *os);
void guest_os_free (struct ferry_guest_os *os);
enum ferry_guest_naming guest_naming_of (const char *spec);

/* --- linux-text.c: rewrites on text, free of libguestfs ------------------ */

/* Maps a device name as the guest writes it to a stable name ("UUID=..."),
 * or NULL to leave it; the result is freed by the caller. */
typedef char *(*guest_device_map_fn) (const char *device, void *opaque);

/* True when DEV is a name that changes with the disk bus: /dev/sdX,
 * /dev/hdX, /dev/xvdX, /dev/vdX (with or without a partition number),
 * /dev/disk/by-path/... and /dev/disk/by-id/... */
bool guest_is_bus_bound_device (const char *dev);

/* Rewrite the first field of each fstab line that MAP maps, keeping the
 * rest of the line (spacing, comments) as it was.  *CHANGED counts the
 * lines rewritten.  A new string, or NULL (ENOMEM). */
char *guest_rewrite_fstab (const char *text, guest_device_map_fn map,
                           void *opaque, size_t *changed);

/* Rewrite root=DEV, resume=DEV (and RESUME=DEV) wherever they appear as
 * words in TEXT (a grub.cfg, menu.lst, extlinux.conf, /etc/default/grub,
 * a BLS entry, initramfs-tools' resume file), for each DEV that MAP maps.
 * *CHANGED counts the replacements. */
char *guest_rewrite_cmdline_devices (const char *text, guest_device_map_fn map,
                                     void *opaque, size_t *changed);

/* Comment out GRUB_DISABLE_LINUX_UUID=true in an /etc/default/grub (so
 * grub-mkconfig writes root=UUID=...).  *CHANGED is 1 when it did. */
char *guest_grub_default_enable_uuid (const char *text, size_t *changed);

/* The root= and resume= values of TEXT, appended to V (strdup'd). */
DEFINE_VECTOR_TYPE (string_vector, char *);
int guest_cmdline_devices (const char *text, string_vector *v);

/* Parse /etc/fstab text into entries (comments and blank lines skipped). */
int guest_parse_fstab (const char *text, struct ferry_guest_fstab_entry **entries,
                       size_t *n);

/* Interface names and MACs a network file names (lo left out).  KIND is
 * one of ferry_guest_netconf.kind.  Appends to NAMES and MACS. */
int guest_parse_netconf (const char *kind, const char *text,
                         string_vector *names, string_vector *macs);

/* Netplan and udev rules that match a NIC by its old driver (vmxnet3,
 * e1000, ...): make them match virtio_net.  *CHANGED counts. */
char *guest_rewrite_driver_match (const char *kind, const char *text,
                                  size_t *changed);

/* True when the name is one the kernel gives (eth0) or the predictable
 * scheme derives from the bus position (ens33, enp2s1, eno1), which a
 * virtio NIC would not get: the name must then be pinned. */
bool guest_is_positional_ifname (const char *name);

/* Append S (copied) unless V already holds it.  0 or -1. */
int string_vector_add_unique (string_vector *v, const char *s);
void string_vector_free (string_vector *v);

/* A printf into a new string; NULL on ENOMEM. */
char *guest_printf (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* --- linux-tools.c -------------------------------------------------------- */

/* Find hypervisor tools (packages and tarball installs).  Fills OS. */
int guest_find_tools (struct ferry_guest *g, const char *root,
                      struct ferry_guest_os *os);

/* --- convert.c: the report ------------------------------------------------ */

struct guest_convert;          /* the state of one conversion (convert.c) */
int guest_step (struct ferry_guest_report *r, const char *name,
                enum ferry_guest_step_status status, const char *fmt, ...)
  __attribute__ ((format (printf, 4, 5)));

/* The steps, in the order ferry_guest_convert runs them.  Each returns 0
 * (the report says done or skipped) or -1 (error set, step marked failed). */
int guest_remove_tools (struct ferry_guest *g, struct ferry_guest_os *os,
                        struct ferry_guest_report *r);
int guest_fix_fstab (struct ferry_guest *g, struct ferry_guest_os *os,
                     struct ferry_guest_report *r);
int guest_fix_bootloader (struct ferry_guest *g, struct ferry_guest_os *os,
                          struct ferry_guest_report *r);
int guest_fix_initramfs (struct ferry_guest *g, struct ferry_guest_os *os,
                         struct ferry_guest_report *r);
int guest_fix_network (struct ferry_guest *g, struct ferry_guest_os *os,
                       const struct ferry_guest_convert_options *opts,
                       struct ferry_guest_report *r);
int guest_fix_selinux (struct ferry_guest *g, struct ferry_guest_os *os,
                       struct ferry_guest_report *r);
int guest_install_agent (struct ferry_guest *g, struct ferry_guest_os *os,
                         const struct ferry_guest_convert_options *opts,
                         struct ferry_guest_report *r);

/* --- console.c: a booting guest's serial console ------------------------- */

#define GUEST_CONSOLE_LAST_LINES 40
#define GUEST_CONSOLE_LINE_MAX 1024
#define GUEST_CONSOLE_CPU_STALL_MAX 128

struct guest_console {
  bool waiting_root;       /* the last line says it waits for root */
  /* The kernel's reports of a CPU that made no progress for tens of
   * seconds (a soft or hard lockup, an RCU stall): how many whole lines
   * said so, and the last of them (cut to fit). */
  unsigned cpu_stalls;
  char cpu_stall[GUEST_CONSOLE_CPU_STALL_MAX];
  bool in_escape;          /* inside an escape sequence */
  char line[GUEST_CONSOLE_LINE_MAX];
  size_t len;
  char *last[GUEST_CONSOLE_LAST_LINES];  /* a ring of the last lines */
  size_t repeats[GUEST_CONSOLE_LAST_LINES]; /* how often each came in a row */
  size_t nr_last, first;
};

/* Feed N bytes of console output.  LINE_FN (may be NULL) gets each
 * complete line.  Returns 1 when a line (or the pending partial line: a
 * login prompt does not end its line) matches MARKER, -1 when a complete
 * line shows a known failure (*REASON says which), 0 when nothing decided
 * yet; on 1 and -1, *MATCHED is a copy of that line (the caller frees it). */
#include <regex.h>
int guest_console_feed (struct guest_console *c, const char *buf, size_t n,
                        const regex_t *marker,
                        void (*line_fn) (const char *line, void *opaque),
                        void *opaque, const char **reason, char **matched);
/* The console has been quiet a while: judge its pending partial line as
 * if it were whole (a failure that does not end its line).  Returns as
 * guest_console_feed. */
int guest_console_idle (struct guest_console *c, const regex_t *marker,
                        void (*line_fn) (const char *line, void *opaque),
                        void *opaque, const char **reason, char **matched);
/* The kept lines, oldest first, NULL-terminated (the caller frees them);
 * C is left empty. */
char **guest_console_finish (struct guest_console *c);
/* The last line the console showed that is not blank (the pending
 * partial line first), or NULL when there is none yet.  The string
 * belongs to C and lasts until the next feed. */
const char *guest_console_last_line (struct guest_console *c);

/* The virtio drivers the converted guest needs in its initramfs. */
extern const char *const guest_virtio_drivers[];

#endif /* FERRY_GUEST_INTERNAL_H */
