/* What the VM-description harnesses share: run every writer over a model
 * a reader made, so that whatever a reader lets through is also safe to
 * write out. */
#ifndef FERRY_FUZZ_VM_COMMON_H
#define FERRY_FUZZ_VM_COMMON_H

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

#endif /* FERRY_FUZZ_VM_COMMON_H */
