/* ferry: one model of a virtual machine, read from the descriptions
 * hypervisors write (OVF and OVA, VMware's VMX, VirtualBox's .vbox) and
 * written out for others (libvirt domain XML, a QEMU launch script, OVF
 * and OVA).
 *
 * A reader fills struct ferry_vm with what the source says, in the
 * source's own words where a word has no common meaning (the guest OS
 * type, controller and NIC models); the writers translate.  Nothing here
 * opens the disks: sizes the description declares are in the model, what
 * the disks really hold is for the migration (lib/migrate) to find.
 *
 * Errors: calls return -1 or NULL and set the thread-local error of
 * <ferry/error.h>, with a message that names the file, the element or
 * line, and what is wrong.
 */
#ifndef FERRY_VM_H
#define FERRY_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ferry_vm_firmware {
  FERRY_VM_FIRMWARE_UNKNOWN = 0,   /* the source does not say: BIOS */
  FERRY_VM_FIRMWARE_BIOS,
  FERRY_VM_FIRMWARE_UEFI,
};

enum ferry_vm_bus {
  FERRY_VM_BUS_UNKNOWN = 0,
  FERRY_VM_BUS_IDE,
  FERRY_VM_BUS_SATA,
  FERRY_VM_BUS_SCSI,
  FERRY_VM_BUS_NVME,
  FERRY_VM_BUS_VIRTIO,
  FERRY_VM_BUS_FLOPPY,
  FERRY_VM_BUS_USB,
};

enum ferry_vm_compression {
  FERRY_VM_COMPRESSION_NONE = 0,
  FERRY_VM_COMPRESSION_GZIP,       /* OVF ovf:compression="gzip" */
};

/* Disk flags: what makes a disk hard or impossible to migrate. */
#define FERRY_VM_DISK_INDEPENDENT 0x1  /* VMware independent mode */
#define FERRY_VM_DISK_RDM         0x2  /* a raw device mapping: no file */
#define FERRY_VM_DISK_ENCRYPTED   0x4  /* encrypted by the hypervisor */
#define FERRY_VM_DISK_SNAPSHOT    0x8  /* the file is a delta over a parent */
#define FERRY_VM_DISK_NO_FILE    0x10  /* declared, but names no file */

struct ferry_vm_disk {
  char *file;          /* the name the description gives (href, fileName) */
  char *path;          /* the file it resolves to; for a disk inside an
                          OVA, the OVA itself */
  char *member;        /* inside an OVA: the tar member's name, else NULL */
  uint64_t member_offset; /* its bytes in the OVA */
  uint64_t member_length;
  enum ferry_vm_compression compression;
  char *format;        /* as declared: "vmdk", "qcow2", "vhd", ... or NULL */
  char *subformat;     /* "streamOptimized", "monolithicSparse", ... */
  enum ferry_vm_bus bus;
  int controller;      /* which controller of that bus (scsi1 is 1), -1 */
  int unit;            /* unit, port or address on it, -1 when unknown */
  char *controller_model; /* "lsilogic", "pvscsi", "PIIX4", "AHCI" ... */
  uint64_t capacity;   /* virtual size declared, bytes; 0 when unknown */
  uint64_t populated;  /* bytes of data declared; 0 when unknown */
  unsigned flags;      /* FERRY_VM_DISK_* */
  char *mode;          /* VMware's disk mode as written, or NULL */
  char *id;            /* the source's name for it: "vmdisk1", "scsi0:1" */
};

struct ferry_vm_cdrom {
  enum ferry_vm_bus bus;
  int controller;
  int unit;
  char *image;         /* the ISO the drive holds, as named, or NULL */
};

struct ferry_vm_nic {
  char *mac;           /* "00:50:56:9b:5f:0d" (lower case), or NULL when
                          the source leaves it to be generated */
  char *network;       /* the network it connects to, as named, or NULL */
  char *model;         /* as the source names it: "vmxnet3", "E1000" ... */
  char *id;            /* the source's name for it: "ethernet0" ... */
};

/* One line of a manifest (.mf): the digest a file must have. */
struct ferry_vm_manifest_entry {
  char *name;          /* as the manifest names it */
  char *algorithm;     /* "SHA1", "SHA256" or "SHA512" */
  char *digest;        /* lower-case hex */
};

struct ferry_vm {
  char *name;
  char *source;        /* the path read */
  char *source_type;   /* "ova", "ovf", "vmx" or "vbox" */
  char *source_version;/* OVF "0.9", "1.0", "2.0"; .vbox settings version */
  char *producer;      /* "VMware", "VirtualBox", or NULL */
  char *os_type;       /* as the source names it: "rhel6_64Guest" ... */
  char *os_description;
  enum ferry_vm_firmware firmware;
  bool secure_boot;
  unsigned vcpus;      /* 0 when the source does not say (then 1) */
  unsigned sockets, cores, threads; /* topology, 0 when not given */
  uint64_t memory;     /* bytes, 0 when the source does not say */
  char *video;         /* as named, or NULL */
  uint64_t video_ram;  /* bytes, 0 when not given */

  struct ferry_vm_disk *disks;    /* in the order of the description */
  size_t nr_disks;
  struct ferry_vm_cdrom *cdroms;
  size_t nr_cdroms;
  struct ferry_vm_nic *nics;
  size_t nr_nics;

  bool has_snapshots;  /* the source keeps snapshots: what is migrated is
                          the current state, read through each chain */
  char *manifest;      /* the manifest file or member, or NULL */
  struct ferry_vm_manifest_entry *manifest_entries;
  size_t nr_manifest_entries;
  char **notes;        /* what the reader noticed and let pass, one line
                          each ("Item 27: unknown ResourceType 42") */
  size_t nr_notes;
};

/* Read the VM described by SOURCE: an .ova, a folder holding one .ovf
 * (or .vmx, or .vbox), an .ovf, a .vmx or a .vbox.  The kind is told by
 * the content, the name only breaks ties.  Disk paths are resolved against
 * the description's folder; nothing but the description (and, for an
 * OVA, its tar headers and small members; for a VMX, the text VMDK
 * descriptors it names) is read.  The caller frees it with
 * ferry_vm_free(). */
struct ferry_vm *ferry_vm_read (const char *source);

/* The readers behind ferry_vm_read, on text already in memory (for the
 * fuzzers and for descriptions inside archives).  NAME is for messages;
 * DIR resolves relative file names (NULL: leave them as they are). */
struct ferry_vm *ferry_vm_read_ovf (const char *name, const char *dir,
                                    const char *text, size_t len);
struct ferry_vm *ferry_vm_read_vmx (const char *name, const char *dir,
                                    const char *text, size_t len);
struct ferry_vm *ferry_vm_read_vbox (const char *name, const char *dir,
                                     const char *text, size_t len);

/* What ferry_vm_to_libvirt and ferry_vm_to_qemu write, read back (a
 * `v2v --to libvirt|qemu` output, to boot it): a libvirt domain XML (any
 * of that shape) or a QEMU launch script ferry wrote (its lines, not
 * arbitrary shell).  The model holds the name, memory, vCPUs, firmware,
 * the disks (path, format, bus, SCSI controller model), CD-ROMs, NICs
 * (MAC, model: "virtio", "e1000" ...) and, for libvirt, the video model;
 * source_type is "libvirt" or "qemu".  NAME is for messages, DIR resolves
 * relative disk names (the script's own folder, where the writer puts
 * them). */
struct ferry_vm *ferry_vm_read_libvirt (const char *name, const char *dir,
                                        const char *text, size_t len);
struct ferry_vm *ferry_vm_read_qemu (const char *name, const char *dir,
                                     const char *text, size_t len);
/* Read TARGET, such an output folder (its one NAME.xml or NAME.sh) or the
 * description in it, told apart by content.  The caller frees it with
 * ferry_vm_free(). */
struct ferry_vm *ferry_vm_read_target (const char *target);

void ferry_vm_free (struct ferry_vm *vm);

/* Replace the model's string *FIELD (&vm->name, &nic->network ...) by a
 * copy of VALUE.  0, or -1 (ENOMEM) with *FIELD as it was. */
int ferry_vm_set_string (char **field, const char *value);

/* Names for messages and plans: "scsi", "uefi", ... */
const char *ferry_vm_bus_name (enum ferry_vm_bus bus);
const char *ferry_vm_firmware_name (enum ferry_vm_firmware fw);

/* Check a manifest entry against a file, or against LENGTH bytes at
 * OFFSET of PATH (a member of an OVA; LENGTH UINT64_MAX: the whole
 * file).  Returns 1 when the digest matches, 0 when not (*GOT then holds
 * the digest found, which the caller frees), -1 on error.  PROGRESS, when
 * not NULL, is called with the bytes hashed so far. */
int ferry_vm_verify_digest (const struct ferry_vm_manifest_entry *entry,
                            const char *path, uint64_t offset,
                            uint64_t length, char **got /* OUT */,
                            void (*progress) (uint64_t done, void *opaque),
                            void *opaque);

/* --- OVA archives ------------------------------------------------------ */

/* One member of an OVA: a regular file of the tar. */
struct ferry_ova_member {
  char *name;          /* its path inside the archive, as stored */
  uint64_t offset;     /* where its bytes start in the archive */
  uint64_t length;
};

struct ferry_ova {
  char *path;
  struct ferry_ova_member *members;
  size_t nr_members;
};

/* Read the headers of the tar at PATH, as a stream from the start: every
 * member's name, offset and length.  Absolute names, "..", links, devices,
 * FIFOs, sizes past the end of the file and more than FERRY_OVA_MAX_MEMBERS
 * entries are refused.  The caller frees it with ferry_ova_free(). */
#define FERRY_OVA_MAX_MEMBERS 10000
struct ferry_ova *ferry_ova_open (const char *path);
void ferry_ova_free (struct ferry_ova *ova);

/* The member called NAME (a path; "./" prefixes are ignored), or NULL. */
const struct ferry_ova_member *ferry_ova_find (const struct ferry_ova *ova,
                                               const char *name);

/* One file to put in an OVA, in order. */
struct ferry_ova_input {
  const char *name;    /* its name in the archive */
  const char *path;    /* where its bytes are now, or NULL for DATA */
  const char *data;    /* its bytes, when PATH is NULL */
  size_t len;
};

/* Write the OVA at PATH (which must not exist): the OVF descriptor
 * INPUTS[0], then a manifest (ALGORITHM "SHA1" or "SHA256") of every
 * input named MF_NAME, then the other inputs in order.  0, or -1 with
 * the error set and no PATH left behind. */
int ferry_ova_write (const char *path, const struct ferry_ova_input *inputs,
                     size_t nr_inputs, const char *mf_name,
                     const char *algorithm);

/* --- writers ----------------------------------------------------------- */

/* What the writers need beyond the model: where each disk of VM now
 * lives, and how to translate. */
struct ferry_vm_output {
  /* One per disk of the model, in order: the path (or, for OVF, the file
   * name) the description names, its format, its virtual size and, for
   * OVF, the file's size in bytes and the data it holds. */
  const char *const *disk_paths;
  const char *const *disk_formats;
  const uint64_t *disk_sizes;
  const uint64_t *disk_file_sizes;
  const uint64_t *disk_populated;
  bool keep_devices;   /* keep the source's disk buses and NIC models
                          instead of virtio */
  const char *flavor;  /* OVF: "vmware" (default) or "virtualbox" */
};

/* Each returns the description as a NUL-terminated string the caller
 * frees, or NULL with the error set. */
char *ferry_vm_to_libvirt (const struct ferry_vm *vm,
                           const struct ferry_vm_output *out);
char *ferry_vm_to_qemu (const struct ferry_vm *vm,
                        const struct ferry_vm_output *out);
char *ferry_vm_to_ovf (const struct ferry_vm *vm,
                       const struct ferry_vm_output *out);
/* The model itself, as JSON (what `ferry v2v --dry-run --json` shows and
 * `--to local` keeps). */
char *ferry_vm_to_json (const struct ferry_vm *vm,
                        const struct ferry_vm_output *out);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_VM_H */
