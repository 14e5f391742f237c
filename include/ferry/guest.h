/* ferry: what is inside a VM's disks, and making a Linux guest boot on
 * KVM after the move (virtio disk and NIC), through libguestfs.
 *
 * A struct ferry_guest is one libguestfs appliance over the disks of one
 * VM, in the order the VM has them (the first disk is the one it boots
 * from).  The appliance runs with LIBGUESTFS_BACKEND=direct and under TCG
 * unless FERRY_GUESTFS_KVM=1 is set (Linux guests, the appliance among
 * them, hang under KVM on some hosts, and TCG always works).
 *
 *   ferry_guest_open      start the appliance over the disks
 *   ferry_guest_inspect   partitions, file systems, LVM and each OS found
 *   ferry_guest_convert   the Linux conversion, step by step
 *   ferry_guest_close     stop the appliance (flushing what was written)
 *
 * ferry_guest_convert_image wraps them for `ferry convert-guest`: it works
 * on a temporary qcow2 overlay and writes the overlay's clusters into the
 * image only when every step succeeded, so a refused or failed conversion
 * leaves the image exactly as it was.
 *
 * ferry_guest_boot (lib/guest/verify.c) boots a disk set with QEMU on an
 * isolated network and watches the serial console for a login prompt.
 *
 * Errors: calls return -1 or NULL and set the thread-local error of
 * <ferry/error.h>.
 */
#ifndef FERRY_GUEST_H
#define FERRY_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_guest;

/* One disk of the VM.  FORMAT is a ferry driver name (raw, qcow2, vmdk,
 * vhdx, ...) or NULL to probe it. */
struct ferry_guest_disk {
  const char *path;
  const char *format;
};

#define FERRY_GUEST_READONLY 0x1   /* the appliance may not write */
#define FERRY_GUEST_SHARED   0x2   /* with READONLY: the disks may be in
                                    * use by another process (a running
                                    * VM); ferry reads them with
                                    * FERRY_OPEN_SHARED */

/* Start an appliance over the N DISKS.  The caller frees it with
 * ferry_guest_close(). */
struct ferry_guest *ferry_guest_open (const struct ferry_guest_disk *disks,
                                      size_t n, unsigned flags);

/* Without starting anything: set *BLANK when no disk starts with a
 * partition table, a file system or a volume signature (MBR, GPT, ext,
 * XFS, btrfs, LVM, NTFS, FAT, swap, LUKS), so no OS can be on them (data
 * disks, or disks never written).  0, or -1 with the error set. */
int ferry_guest_disks_blank (const struct ferry_guest_disk *disks, size_t n,
                             bool *blank /* OUT */);

/* Stop the appliance and free the handle.  For a writable handle, -1
 * means what was written may not all be on the disks.  G may be NULL. */
int ferry_guest_close (struct ferry_guest *g);

/* --- inspection --------------------------------------------------------- */

struct ferry_guest_partition {
  char *device;        /* as the appliance names it: /dev/sda1 */
  uint64_t start;      /* bytes from the start of the disk */
  uint64_t size;
  char *table;         /* "msdos" or "gpt" */
  char *type;          /* MBR id ("83") or GPT type GUID */
  bool bootable;       /* MBR active flag */
};

struct ferry_guest_filesystem {
  char *device;        /* /dev/sda1, /dev/vg/root, ... */
  char *type;          /* "ext4", "xfs", "swap", "vfat", ... */
  char *uuid;          /* or NULL */
  char *label;         /* or NULL */
};

struct ferry_guest_lv {
  char *vg;
  char *lv;
  char *device;        /* /dev/VG/LV */
  uint64_t size;
};

/* How an fstab entry (or a root=, resume= argument) names its device. */
enum ferry_guest_naming {
  FERRY_GUEST_NAMING_DEVICE = 0,  /* /dev/sda1: changes with the bus */
  FERRY_GUEST_NAMING_UUID,        /* UUID=... or /dev/disk/by-uuid/ */
  FERRY_GUEST_NAMING_LABEL,       /* LABEL=... or /dev/disk/by-label/ */
  FERRY_GUEST_NAMING_PARTUUID,
  FERRY_GUEST_NAMING_PARTLABEL,
  FERRY_GUEST_NAMING_LVM,         /* /dev/VG/LV, /dev/mapper/... */
  FERRY_GUEST_NAMING_PATH,        /* /dev/disk/by-path, by-id: bus bound */
  FERRY_GUEST_NAMING_OTHER,       /* tmpfs, proc, NFS, ... */
};

/* The word for NAMING: "device", "uuid", "label", ... */
const char *ferry_guest_naming_name (enum ferry_guest_naming naming);

struct ferry_guest_fstab_entry {
  char *spec;          /* first field, as written */
  char *mountpoint;
  char *type;
  char *options;
  enum ferry_guest_naming naming;
};

struct ferry_guest_kernel {
  char *version;       /* "6.1.0-21-amd64" (the /lib/modules name) */
  char *vmlinuz;       /* /boot/vmlinuz-..., or NULL when not found */
  char *initrd;        /* /boot/initrd.img-..., or NULL */
  /* Each true when the driver is a module of this kernel or built in. */
  bool virtio_pci, virtio_blk, virtio_scsi, virtio_net;
};

/* Hypervisor tools installed in the guest. */
struct ferry_guest_tool {
  char *kind;          /* "vmware", "virtualbox", "hyperv", "xen" */
  char *name;          /* the package, or what was found ("VMware Tools") */
  char *version;       /* or NULL */
  char *package;       /* the package to remove, NULL when not packaged */
  char *uninstaller;   /* for tarball installs: the script, or NULL */
};

/* A network configuration file and the interfaces it names. */
struct ferry_guest_netconf {
  char *path;
  char *kind;          /* "ifupdown", "netplan", "ifcfg", "networkmanager",
                          "systemd-networkd", "udev-rules" */
  char **interfaces;   /* NULL-terminated: "ens33", "eth0" (never lo) */
  char **macs;         /* NULL-terminated MAC addresses it binds to */
};

struct ferry_guest_os {
  char *root;          /* the root file system's device */
  char *type;          /* "linux", "windows", ... */
  char *distro;        /* "debian", "rhel", "ubuntu", ... */
  char *product_name;  /* "Debian GNU/Linux 12 (bookworm)" */
  int major, minor;
  char *arch;          /* "x86_64" */
  char *hostname;
  char *package_format;     /* "deb", "rpm", or NULL */
  char *package_management; /* "apt", "dnf", "yum", "zypper", or NULL */
  char *init_system;   /* "systemd", "upstart", "sysvinit", "openrc", ... */
  char *bootloader;    /* "grub2", "grub-legacy", "extlinux",
                          "systemd-boot", or NULL when none was found */
  char *bootloader_config; /* its configuration file */
  char *firmware;      /* "bios" or "uefi" */
  char *selinux;       /* "enforcing", "permissive", "disabled" or NULL */
  char *initramfs_tool;/* "update-initramfs", "dracut", "mkinitrd" or NULL */
  struct ferry_guest_kernel *kernels;
  size_t nr_kernels;
  struct ferry_guest_tool *tools;
  size_t nr_tools;
  struct ferry_guest_netconf *netconfs;
  size_t nr_netconfs;
  struct ferry_guest_fstab_entry *fstab;
  size_t nr_fstab;
  char **cmdline_devices; /* root= and resume= values of the boot loader's
                             configuration, NULL-terminated */
};

struct ferry_guest_inspection {
  struct ferry_guest_partition *partitions;
  size_t nr_partitions;
  struct ferry_guest_filesystem *filesystems;
  size_t nr_filesystems;
  struct ferry_guest_lv *lvs;
  size_t nr_lvs;
  struct ferry_guest_os *oses;
  size_t nr_oses;
};

/* Inspect the disks of G.  Finding no OS is not an error (nr_oses is 0).
 * The caller frees it with ferry_guest_inspection_free(). */
struct ferry_guest_inspection *ferry_guest_inspect (struct ferry_guest *g);
void ferry_guest_inspection_free (struct ferry_guest_inspection *ins);

/* --- conversion --------------------------------------------------------- */

enum ferry_guest_step_status {
  FERRY_GUEST_STEP_DONE = 0,
  FERRY_GUEST_STEP_SKIPPED,     /* nothing to do, or could not: see why */
  FERRY_GUEST_STEP_FAILED,      /* the conversion stopped here */
};

/* The word for STATUS: "done", "skipped", "failed". */
const char *ferry_guest_step_status_name (enum ferry_guest_step_status s);

struct ferry_guest_step {
  char *name;          /* "remove-tools", "fstab", "bootloader", ... */
  enum ferry_guest_step_status status;
  char *detail;        /* what was done, or why it was skipped, or failed */
};

struct ferry_guest_report {
  char *os;            /* the product name of what was converted */
  char *root;          /* its root device */
  struct ferry_guest_step *steps;
  size_t nr_steps;
  double seconds;      /* the conversion's own time */
  double inspect_seconds; /* of which finding the OS and the checks that
                             may refuse it */
};

void ferry_guest_report_free (struct ferry_guest_report *r);

struct ferry_guest_convert_options {
  /* The MAC addresses the VM's NICs keep on the new platform, in order,
   * NULL-terminated, or NULL when not known (`ferry convert-guest` alone):
   * interface names are then pinned to them. */
  const char *const *macs;
  /* Skip installing qemu-guest-agent at first boot. */
  bool no_guest_agent;
};

/* Convert the Linux guest on the disks of G (opened writable) to boot on
 * KVM with virtio disks and NICs.  Every check that can refuse runs before
 * anything is written: a guest that is not Linux, has no root file system,
 * or whose kernels have no virtio drivers is refused with nothing changed.
 * *REPORT (OUT) is set in every case where it got as far as a report,
 * even when -1 is returned (the failed step says why); the caller frees
 * it with ferry_guest_report_free(). */
int ferry_guest_convert (struct ferry_guest *g,
                         const struct ferry_guest_convert_options *opts,
                         struct ferry_guest_report **report /* OUT */);

/* Open the disks, convert, and write the result into them only when the
 * conversion succeeded (see the top of this file).  *REPORT as for
 * ferry_guest_convert. */
int ferry_guest_convert_image (const struct ferry_guest_disk *disks, size_t n,
                               const struct ferry_guest_convert_options *opts,
                               struct ferry_guest_report **report /* OUT */);

/* --- boot verification (verify.c) ---------------------------------------- */

enum ferry_guest_accel {
  FERRY_GUEST_ACCEL_AUTO = 0,   /* KVM, and TCG when KVM is not there, does
                                   not start, fails or stalls (see
                                   kvm_stall) */
  FERRY_GUEST_ACCEL_KVM,
  FERRY_GUEST_ACCEL_TCG,
};

struct ferry_guest_boot_options {
  const char *disk_bus;     /* "virtio" (default), "scsi", "sata", "ide" */
  const char *nic_model;    /* "virtio" (default), "e1000", "none" */
  const char *const *macs;  /* one per NIC, NULL-terminated; NULL: one NIC
                               with QEMU's default MAC */
  const char *firmware;     /* "bios" (default) or "uefi" */
  uint64_t memory;          /* bytes; 0: 1 GiB */
  unsigned vcpus;           /* 0: 1 */
  enum ferry_guest_accel accel;
  unsigned timeout;         /* seconds in all, both accelerators; 0: 600 */
  /* With FERRY_GUEST_ACCEL_AUTO: a KVM boot whose console shows nothing
   * new for this many seconds before the marker has stalled (KVM hangs
   * guests on some hosts) and the boot starts again under TCG with the
   * rest of the timeout.  Seconds; 0: 30.  A guest that reports a stuck
   * CPU (a soft lockup, an RCU stall) has stalled at once; under TCG such
   * reports are only counted, for the reason of a timeout. */
  unsigned kvm_stall;
  /* A regular expression (POSIX extended) the console must show; NULL:
   * a login prompt ("NAME login:"). */
  const char *expect;
  /* Called with each complete line the console prints, or NULL. */
  void (*console_line) (const char *line, void *opaque);
  void *opaque;
  /* Write to the disks (default: the boot runs on a throw-away overlay,
   * so the verified VM's first real boot is still its first). */
  bool writable;
};

struct ferry_guest_boot_result {
  bool booted;              /* the marker was seen */
  char *reason;             /* why not: timeout, a kernel panic, ... */
  char *matched;            /* the console line that matched, or NULL */
  double seconds;           /* from start to the marker (or the end), both
                               accelerators */
  char *accel;              /* "kvm" or "tcg": what ran last, the boot
                               this result describes */
  /* With FERRY_GUEST_ACCEL_AUTO, why that was TCG and not KVM, or NULL:
   * "KVM stalled after 'Booting Linux...' for 30 s", "KVM stalled: the
   * guest reported '... soft lockup ...'", "KVM failed after 'Booting
   * Linux...': KVM internal error. ...", "KVM did not start: ...", "KVM
   * is not available: /dev/kvm: ...". */
  char *fallback;
  char **last_lines;        /* the console's last lines, NULL-terminated */
};

void ferry_guest_boot_result_free (struct ferry_guest_boot_result *r);

/* Boot the N DISKS with QEMU, on a user network with no route out
 * (restrict=on) and the first serial port read by ferry, until the marker
 * appears, a known failure does (the initramfs gives up on its root
 * device, a kernel panic, emergency mode), QEMU exits, or the timeout.
 * With FERRY_GUEST_ACCEL_AUTO, a KVM that is missing, does not start,
 * fails (QEMU names KVM in an error, at any stage) or stalls is replaced
 * by TCG within the same timeout; a known failure under KVM is final (the
 * guest said what is wrong).
 * Returns 0 when the boot could be tried (RESULT says how it went), -1
 * when it could not (no QEMU, a disk that does not open).  The caller frees
 * RESULT's members with ferry_guest_boot_result_free(). */
int ferry_guest_boot (const struct ferry_guest_disk *disks, size_t n,
                      const struct ferry_guest_boot_options *opts,
                      struct ferry_guest_boot_result *result /* OUT */);

/* A migrated VM to boot: what a `ferry v2v --to libvirt|qemu` output
 * (the folder, or the libvirt domain XML or QEMU script in it) says, as
 * ferry_v2v_read_target (<ferry/migrate.h>) reads it. */
struct ferry_guest_target {
  struct ferry_guest_disk *disks;  /* absolute paths, formats as declared */
  size_t nr_disks;
  char *disk_bus;          /* "virtio", "scsi", "sata", "ide" or NULL */
  bool lsi_scsi;           /* the SCSI controller is LSI, not virtio-scsi */
  char *nic_model;         /* "virtio", "e1000", ... or NULL (no NIC) */
  char **macs;             /* NULL-terminated, or NULL */
  char *firmware;          /* "bios" or "uefi" */
  uint64_t memory;         /* bytes, 0 when not given */
  unsigned vcpus;          /* 0 when not given */
  char *description;       /* the file read */
};

void ferry_guest_target_free (struct ferry_guest_target *t);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_GUEST_H */
