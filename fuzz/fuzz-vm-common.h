/* What the VM-description harnesses share: run every writer over a model
 * a reader made, so that whatever a reader lets through is also safe to
 * write out; and read what was written for KVM back. */
#ifndef FERRY_FUZZ_VM_COMMON_H
#define FERRY_FUZZ_VM_COMMON_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/vm.h>

static inline void
fuzz_exercise_vm (const struct ferry_vm *vm)
{
  const char *paths[64], *formats[64];
  uint64_t sizes[64];
  struct ferry_vm_output out = { 0 };
  size_t i, n = vm->nr_disks < 64 ? vm->nr_disks : 64;

  if (vm->nr_disks > 64)
    return;
  for (i = 0; i < n; i++) {
    paths[i] = vm->disks[i].file ? vm->disks[i].file : "disk";
    formats[i] = "qcow2";
    sizes[i] = vm->disks[i].capacity;
  }
  out.disk_paths = paths;
  out.disk_formats = formats;
  out.disk_sizes = sizes;
  for (int keep = 0; keep < 2; keep++) {
    out.keep_devices = keep;
    out.flavor = keep ? "virtualbox" : "vmware";
    free (ferry_vm_to_json (vm, &out));
    free (ferry_vm_to_libvirt (vm, &out));
    free (ferry_vm_to_qemu (vm, &out));
    free (ferry_vm_to_ovf (vm, &out));
  }
}

/* Write VM for KVM (libvirt when LIBVIRT, else the QEMU script) with
 * plain disk names, read it back, and abort unless the disks and NICs
 * came back: what ferry writes, ferry reads. */
static inline void
fuzz_read_back (const struct ferry_vm *vm, bool libvirt)
{
  static const char *const names[] = { "d0.qcow2", "/abs/d1.raw" };
  const char *paths[64], *formats[64];
  uint64_t sizes[64];
  struct ferry_vm_output out = { 0 };
  struct ferry_vm *back;
  size_t i;
  char *text;

  if (vm->nr_disks > 64 || vm->name == NULL || *vm->name == '\0' ||
      strchr (vm->name, '\n'))
    return;
  for (i = 0; i < vm->nr_disks; i++) {
    paths[i] = names[i % 2];
    formats[i] = "qcow2";
    sizes[i] = 1;
  }
  out.disk_paths = paths;
  out.disk_formats = formats;
  out.disk_sizes = sizes;
  text = libvirt ? ferry_vm_to_libvirt (vm, &out) : ferry_vm_to_qemu (vm, &out);
  if (text == NULL)
    return;
  back = libvirt ? ferry_vm_read_libvirt ("back.xml", "/out", text,
                                          strlen (text))
    : ferry_vm_read_qemu ("back.sh", "/out", text, strlen (text));
  if (back == NULL || back->nr_disks != vm->nr_disks ||
      back->nr_nics != vm->nr_nics)
    abort ();
  ferry_vm_free (back);
  free (text);
}

#endif /* FERRY_FUZZ_VM_COMMON_H */
