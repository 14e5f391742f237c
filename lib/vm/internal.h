/* lib/vm private interface: building the model, and what the readers and
 * writers share.  Nothing outside lib/vm includes this file.
 *
 * Strings in struct ferry_vm are owned by it and freed by ferry_vm_free;
 * a reader sets them with vm_set (which copies) and adds devices with
 * vm_add_disk / vm_add_cdrom / vm_add_nic (which return a zeroed device
 * with controller and unit -1, owned by the model).
 */
#ifndef FERRY_VM_INTERNAL_H
#define FERRY_VM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/vm.h>

#include "../common/error.h"

/* The largest description read whole (OVF, VMX, .vbox, manifest): real
 * ones are tens of KiB. */
#define VM_MAX_DESCRIPTION (16u << 20)

/* The most devices of a kind a model holds: far above any hypervisor's
 * limit, low enough that a hostile description cannot make millions. */
#define VM_MAX_DEVICES 1024

/* model.c */
struct ferry_vm *vm_new (const char *source, const char *type);
/* Replace *FIELD by a copy of VALUE (NULL clears it).  0, or -1 (ENOMEM). */
int vm_set (char **field, const char *value);
/* Like vm_set with a formatted value. */
int vm_setf (char **field, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
struct ferry_vm_disk *vm_add_disk (struct ferry_vm *vm);
struct ferry_vm_cdrom *vm_add_cdrom (struct ferry_vm *vm);
struct ferry_vm_nic *vm_add_nic (struct ferry_vm *vm);
struct ferry_vm_manifest_entry *vm_add_manifest_entry (struct ferry_vm *vm);
/* Keep a note of something the reader let pass (not an error). */
int vm_note (struct ferry_vm *vm, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
/* "0800272AFB4E", "00:50:56:9B:5F:0D" or "00-50-56-..." as
 * "08:00:27:2a:fb:4e" in *OUT (18 bytes); false when S is not a MAC. */
bool vm_mac_normalize (const char *s, char out[18]);
/* A whole decimal number (leading and trailing blanks allowed). */
bool vm_parse_u64 (const char *s, uint64_t *value);
/* NAME resolved against DIR (NULL or absolute NAME: NAME itself).  The
 * caller frees it; NULL when out of memory. */
char *vm_path_join (const char *dir, const char *name);
/* The folder of PATH (".": none).  The caller frees it. */
char *vm_dirname (const char *path);
/* Read all of the file PATH (at most MAX bytes, else an error naming
 * WHAT) into *TEXT, NUL-terminated.  0 or -1. */
int vm_read_file (const char *path, size_t max, const char *what,
                  char **text /* OUT */, size_t *len /* OUT */);
/* Read LEN bytes at OFFSET of PATH, NUL-terminated, into *TEXT. */
int vm_read_range (const char *path, uint64_t offset, size_t len,
                   char **text /* OUT */);
/* Narrow [*P, *END) to the value inside: blanks (and a '\r') cut at both
 * ends, then one pair of double quotes around it. */
void vm_trim_value (const char **p, const char **end);
/* Case-insensitive: does S end with SUFFIX? */
bool vm_has_suffix (const char *s, const char *suffix);
/* Does the relative name NAME climb out of its folder: is one of its
 * '/'-separated components ".."?  (OVA members, OVF references and
 * manifest lines name files inside the package.) */
bool vm_name_has_dotdot (const char *name);

/* manifest.c: parse the text of a manifest into VM's entries.  NAME is
 * for messages. */
int vm_parse_manifest (struct ferry_vm *vm, const char *name,
                       const char *text, size_t len);

/* ovf.c: read an OVF held in TEXT into a new model.  NAME for messages,
 * DIR for file names (NULL inside an archive). */
struct ferry_vm *vm_ovf_parse (const char *name, const char *dir,
                               const char *text, size_t len);

/* devices.c: the source's devices on KVM (libvirt and QEMU). */
/* The libvirt NIC model for SOURCE ("virtio" unless KEEP). */
const char *vm_nic_model (const char *source, bool keep);
/* QEMU's -device name for a libvirt NIC model. */
const char *vm_qemu_nic_device (const char *libvirt_model);
/* libvirt's (or, QEMU, qemu's -device) name for a SCSI controller. */
const char *vm_scsi_model (const char *source, bool qemu);
/* The bus a disk on BUS goes on (virtio unless KEEP). */
enum ferry_vm_bus vm_target_bus (enum ferry_vm_bus bus, bool keep);
/* The bus a CD-ROM on BUS goes on. */
enum ferry_vm_bus vm_cdrom_bus (enum ferry_vm_bus bus, bool keep,
                                bool i440fx);
/* True when the target needs the i440FX PC (kept IDE devices); else q35. */
bool vm_needs_i440fx (const struct ferry_vm *vm, bool keep);
/* The guest's name for the INDEXth disk on BUS: "vda", "sdb", "hdc". */
void vm_disk_name (enum ferry_vm_bus bus, unsigned index, char *out,
                   size_t len);
/* Memory in bytes the target gets: the source's, or 1 GiB. */
#define VM_DEFAULT_MEMORY (UINT64_C (1) << 30)

#endif /* FERRY_VM_INTERNAL_H */
