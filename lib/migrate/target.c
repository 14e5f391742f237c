/* ferry_v2v_read_target: a `v2v --to libvirt|qemu` output read back as
 * what booting it needs (`ferry verify --boot`, `v2v --verify`).  The
 * description is read by lib/vm, beside the writers that made it; this
 * hands lib/guest's boot the disks, their bus, the NICs, firmware, memory
 * and CPUs, so that neither of the two knows the other.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/guest.h>
#include <ferry/migrate.h>
#include <ferry/vm.h>

#include "internal.h"

/* Copy S into *DST (NULL stays NULL).  0, or -1 when out of memory. */
static int
copy_string (char **dst, const char *s)
{
  *dst = NULL;
  if (s && (*dst = strdup (s)) == NULL)
    return ferry_error (ENOMEM, "out of memory");
  return 0;
}

/* Fill T from VM, a description read back. */
static int
fill_target (const struct ferry_vm *vm, struct ferry_guest_target *t)
{
  size_t i, nr_macs = 0;

  t->disks = calloc (vm->nr_disks, sizeof *t->disks);
  t->macs = calloc (vm->nr_nics + 1, sizeof *t->macs);
  if (t->disks == NULL || t->macs == NULL)
    return ferry_error (ENOMEM, "out of memory");
  t->nr_disks = vm->nr_disks;
  for (i = 0; i < vm->nr_disks; i++) {
    const struct ferry_vm_disk *d = &vm->disks[i];
    if (copy_string ((char **) &t->disks[i].path, d->path) == -1 ||
        copy_string ((char **) &t->disks[i].format, d->format) == -1)
      return -1;
  }
  /* The boot disk's bus; a SCSI controller other than virtio-scsi is
   * LSI (libvirt's default model, the QEMU script's lsi53c895a). */
  if (vm->nr_disks && vm->disks[0].bus != FERRY_VM_BUS_UNKNOWN) {
    const struct ferry_vm_disk *d = &vm->disks[0];
    if (copy_string (&t->disk_bus, ferry_vm_bus_name (d->bus)) == -1)
      return -1;
    t->lsi_scsi = d->bus == FERRY_VM_BUS_SCSI && d->controller_model &&
      strstr (d->controller_model, "virtio") == NULL;
  }
  if (vm->nr_nics && copy_string (&t->nic_model, vm->nics[0].model) == -1)
    return -1;
  for (i = 0; i < vm->nr_nics; i++) {
    size_t j;
    if (vm->nics[i].mac == NULL)
      continue;
    for (j = 0; j < nr_macs; j++)
      if (strcmp (t->macs[j], vm->nics[i].mac) == 0)
        break;
    if (j == nr_macs && copy_string (&t->macs[nr_macs++], vm->nics[i].mac)
        == -1)
      return -1;
  }
  if (nr_macs == 0) {
    free (t->macs);
    t->macs = NULL;
  }
  if (copy_string (&t->firmware, ferry_vm_firmware_name (
                     vm->firmware == FERRY_VM_FIRMWARE_UEFI ?
                     FERRY_VM_FIRMWARE_UEFI : FERRY_VM_FIRMWARE_BIOS)) == -1)
    return -1;
  t->memory = vm->memory;
  t->vcpus = vm->vcpus;
  return copy_string (&t->description, vm->source);
}

int
ferry_v2v_read_target (const char *target, struct ferry_guest_target *t)
{
  struct ferry_vm *vm;
  int r;

  memset (t, 0, sizeof *t);
  vm = ferry_vm_read_target (target);
  if (vm == NULL)
    return -1;
  if (vm->nr_disks == 0)
    r = ferry_error (EINVAL, "%s: names no disk to boot from", vm->source);
  else
    r = fill_target (vm, t);
  ferry_vm_free (vm);
  if (r == -1)
    ferry_guest_target_free (t);
  return r;
}
