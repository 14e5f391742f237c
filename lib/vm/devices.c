/* Translating the source's devices for KVM targets (libvirt and QEMU):
 * which bus a disk goes on, which NIC and SCSI models QEMU has for the
 * ones VMware and VirtualBox name, the machine type, and disk names.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* Source NIC models (VMware's virtualDev and OVF ResourceSubType,
 * VirtualBox's adapter types) and the libvirt model that emulates each. */
static const struct { const char *source, *libvirt; } nic_models[] = {
  { "e1000", "e1000" }, { "E1000", "e1000" },
  { "82540EM", "e1000" }, { "82543GC", "e1000" }, { "82545EM", "e1000" },
  { "e1000e", "e1000e" }, { "E1000e", "e1000e" },
  { "vmxnet3", "vmxnet3" }, { "VmxNet3", "vmxnet3" },
  { "vmxnet", "vmxnet3" }, { "vmxnet2", "vmxnet3" },
  { "vlance", "pcnet" }, { "PCNet32", "pcnet" }, { "Am79C970A", "pcnet" },
  { "Am79C973", "pcnet" }, { "Am79C960", "pcnet" },
  { "rtl8139", "rtl8139" }, { "virtio", "virtio" }, { "virtio-net", "virtio" },
};

const char *
vm_nic_model (const char *source, bool keep)
{
  size_t i;

  if (!keep)
    return "virtio";
  for (i = 0; source && i < sizeof nic_models / sizeof nic_models[0]; i++)
    if (strcasecmp (source, nic_models[i].source) == 0)
      return nic_models[i].libvirt;
  return "e1000";             /* what every guest has a driver for */
}

const char *
vm_qemu_nic_device (const char *libvirt_model)
{
  if (strcmp (libvirt_model, "virtio") == 0)
    return "virtio-net-pci";
  return libvirt_model;
}

/* SCSI controller models and libvirt's names for them. */
static const struct { const char *source, *libvirt, *qemu; } scsi_models[] = {
  { "lsilogic", "lsilogic", "lsi53c895a" },
  { "LsiLogic", "lsilogic", "lsi53c895a" },
  { "lsisas1068", "lsisas1068", "mptsas1068" },
  { "lsilogicsas", "lsisas1068", "mptsas1068" },
  { "LsiLogicSas", "lsisas1068", "mptsas1068" },
  { "pvscsi", "vmpvscsi", "pvscsi" },
  { "VirtualSCSI", "vmpvscsi", "pvscsi" },
  { "buslogic", "buslogic", "lsi53c895a" },
  { "VirtioSCSI", "virtio-scsi", "virtio-scsi-pci" },
  { "virtio-scsi", "virtio-scsi", "virtio-scsi-pci" },
};

const char *
vm_scsi_model (const char *source, bool qemu)
{
  size_t i;

  for (i = 0; source && i < sizeof scsi_models / sizeof scsi_models[0]; i++)
    if (strcasecmp (source, scsi_models[i].source) == 0)
      return qemu ? scsi_models[i].qemu : scsi_models[i].libvirt;
  return qemu ? "lsi53c895a" : "lsilogic";
}

enum ferry_vm_bus
vm_target_bus (enum ferry_vm_bus bus, bool keep)
{
  if (!keep)
    return FERRY_VM_BUS_VIRTIO;
  switch (bus) {
  case FERRY_VM_BUS_IDE: case FERRY_VM_BUS_SATA: case FERRY_VM_BUS_SCSI:
  case FERRY_VM_BUS_NVME: case FERRY_VM_BUS_VIRTIO:
    return bus;
  default:
    return FERRY_VM_BUS_SATA;
  }
}

enum ferry_vm_bus
vm_cdrom_bus (enum ferry_vm_bus bus, bool keep, bool i440fx)
{
  if (keep && (bus == FERRY_VM_BUS_IDE || bus == FERRY_VM_BUS_SATA ||
               bus == FERRY_VM_BUS_SCSI))
    return bus;
  return i440fx ? FERRY_VM_BUS_IDE : FERRY_VM_BUS_SATA;
}

bool
vm_needs_i440fx (const struct ferry_vm *vm, bool keep)
{
  size_t i;

  /* q35 has no IDE controller: a kept IDE device needs the older PC. */
  if (!keep)
    return false;
  for (i = 0; i < vm->nr_disks; i++)
    if (vm->disks[i].bus == FERRY_VM_BUS_IDE)
      return true;
  for (i = 0; i < vm->nr_cdroms; i++)
    if (vm->cdroms[i].bus == FERRY_VM_BUS_IDE)
      return true;
  return false;
}

void
vm_disk_name (enum ferry_vm_bus bus, unsigned index, char *out, size_t len)
{
  const char *prefix = bus == FERRY_VM_BUS_VIRTIO ? "vd"
    : bus == FERRY_VM_BUS_IDE ? "hd" : "sd";
  char letters[8];
  int n = 0;

  if (bus == FERRY_VM_BUS_NVME) {
    snprintf (out, len, "nvme%un1", index);
    return;
  }
  /* a..z, then aa..zz, as the kernel names them. */
  index++;
  while (index > 0 && n < (int) sizeof letters) {
    index--;
    letters[n++] = 'a' + index % 26;
    index /= 26;
  }
  snprintf (out, len, "%s", prefix);
  while (n > 0 && strlen (out) + 1 < len) {
    size_t l = strlen (out);
    out[l] = letters[--n];
    out[l + 1] = '\0';
  }
}
