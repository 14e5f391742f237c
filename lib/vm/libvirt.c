/* The VM model as a libvirt domain (KVM), for `virsh define`.
 *
 * Disks and NICs are virtio unless keep_devices (then the source's bus
 * and unit, SCSI controller model, and NIC model, where QEMU emulates
 * them; NVMe disks become virtio, libvirt 9 having no NVMe disk bus).  The machine is q35, or the i440FX PC when a kept device is on
 * IDE, which q35 lacks.  UEFI guests get firmware='efi' (libvirt picks the
 * OVMF build), with secure boot and SMM when the source had secure boot.
 * CD-ROM drives are kept, empty: the ISOs they held are files of the old
 * host.  NICs keep their MAC address and connect to the network they are
 * mapped to (the caller has applied --network-map).  What virt-xml-validate
 * checks is the schema of libvirt 9; the test runs it on what this writes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xml.h"

/* Write the <os> element and the features that go with it. */
static void
write_os (struct vm_xw *x, const struct ferry_vm *vm, bool i440fx)
{
  bool uefi = vm->firmware == FERRY_VM_FIRMWARE_UEFI;
  bool secure = uefi && vm->secure_boot && !i440fx;

  vm_xw_start (x, "os");
  if (uefi)
    vm_xw_attr (x, "firmware", "efi");
  vm_xw_start (x, "type");
  vm_xw_attr (x, "arch", "x86_64");
  vm_xw_attr (x, "machine", i440fx ? "pc" : "q35");
  vm_xw_text (x, "hvm");
  vm_xw_end (x);
  if (uefi) {
    vm_xw_start (x, "firmware");
    vm_xw_empty (x, "feature", "enabled", secure ? "yes" : "no",
                 "name", "secure-boot", NULL);
    vm_xw_empty (x, "feature", "enabled", secure ? "yes" : "no",
                 "name", "enrolled-keys", NULL);
    vm_xw_end (x);
    if (secure)
      vm_xw_empty (x, "loader", "secure", "yes", NULL);
  }
  vm_xw_end (x);   /* the first disk boots: <boot order> on it */

  vm_xw_start (x, "features");
  vm_xw_empty (x, "acpi", NULL);
  vm_xw_empty (x, "apic", NULL);
  if (secure)
    vm_xw_empty (x, "smm", "state", "on", NULL);
  vm_xw_end (x);
}

/* Write the <address type='drive'> of a kept device on BUS. */
static void
write_drive_address (struct vm_xw *x, enum ferry_vm_bus bus, int controller,
                     int unit)
{
  if (controller < 0 || unit < 0 || bus == FERRY_VM_BUS_VIRTIO ||
      bus == FERRY_VM_BUS_NVME)
    return;
  vm_xw_start (x, "address");
  vm_xw_attr (x, "type", "drive");
  if (bus == FERRY_VM_BUS_IDE) {
    /* IDE: one controller, two buses (channels), two units on each. */
    vm_xw_attr (x, "controller", "0");
    vm_xw_attrf (x, "bus", "%d", controller);
  }
  else {
    vm_xw_attrf (x, "controller", "%d", controller);
    vm_xw_attr (x, "bus", "0");
  }
  vm_xw_attr (x, "target", "0");
  vm_xw_attrf (x, "unit", "%d", unit);
  vm_xw_end (x);
}

/* Write the disks, CD-ROMs and the controllers they need. */
static void
write_storage (struct vm_xw *x, const struct ferry_vm *vm,
               const struct ferry_vm_output *out, bool i440fx)
{
  unsigned count[FERRY_VM_BUS_USB + 1] = { 0 };
  bool scsi_written[8] = { false };
  size_t i;

  for (i = 0; i < vm->nr_disks; i++) {
    const struct ferry_vm_disk *d = &vm->disks[i];
    enum ferry_vm_bus bus = vm_target_bus (d->bus, out->keep_devices);
    char dev[16];

    if (out->disk_paths == NULL || out->disk_paths[i] == NULL)
      continue;                 /* not migrated */
    /* libvirt 9 has no NVMe disk bus: virtio is the nearest. */
    if (bus == FERRY_VM_BUS_NVME)
      bus = FERRY_VM_BUS_VIRTIO;
    vm_disk_name (bus, count[bus]++, dev, sizeof dev);
    vm_xw_start (x, "disk");
    vm_xw_attr (x, "type", "file");
    vm_xw_attr (x, "device", "disk");
    vm_xw_empty (x, "driver", "name", "qemu", "type",
                 out->disk_formats ? out->disk_formats[i] : "raw", NULL);
    vm_xw_empty (x, "source", "file", out->disk_paths[i], NULL);
    vm_xw_empty (x, "target", "dev", dev,
                 "bus", ferry_vm_bus_name (bus), NULL);
    if (i == 0)
      vm_xw_empty (x, "boot", "order", "1", NULL);
    if (out->keep_devices)
      write_drive_address (x, bus, d->controller, d->unit);
    vm_xw_end (x);

    if (bus == FERRY_VM_BUS_SCSI && d->controller >= 0 &&
        d->controller < 8 && !scsi_written[d->controller]) {
      scsi_written[d->controller] = true;
      vm_xw_start (x, "controller");
      vm_xw_attr (x, "type", "scsi");
      vm_xw_attrf (x, "index", "%d", d->controller);
      vm_xw_attr (x, "model", vm_scsi_model (d->controller_model, false));
      vm_xw_end (x);
    }
  }

  for (i = 0; i < vm->nr_cdroms; i++) {
    const struct ferry_vm_cdrom *c = &vm->cdroms[i];
    enum ferry_vm_bus bus = vm_cdrom_bus (c->bus, out->keep_devices, i440fx);
    char dev[16];

    vm_disk_name (bus, count[bus]++, dev, sizeof dev);
    vm_xw_start (x, "disk");
    vm_xw_attr (x, "type", "file");
    vm_xw_attr (x, "device", "cdrom");
    vm_xw_empty (x, "driver", "name", "qemu", "type", "raw", NULL);
    vm_xw_empty (x, "target", "dev", dev,
                 "bus", ferry_vm_bus_name (bus), NULL);
    vm_xw_empty (x, "readonly", NULL);
    if (out->keep_devices && bus == c->bus)
      write_drive_address (x, bus, c->controller, c->unit);
    vm_xw_end (x);
  }
}

/* Write the NICs. */
static void
write_nics (struct vm_xw *x, const struct ferry_vm *vm,
            const struct ferry_vm_output *out)
{
  size_t i;

  for (i = 0; i < vm->nr_nics; i++) {
    const struct ferry_vm_nic *n = &vm->nics[i];

    vm_xw_start (x, "interface");
    vm_xw_attr (x, "type", "network");
    if (n->mac)
      vm_xw_empty (x, "mac", "address", n->mac, NULL);
    vm_xw_empty (x, "source", "network", n->network ? n->network : "default",
                 NULL);
    vm_xw_empty (x, "model", "type",
                 vm_nic_model (n->model, out->keep_devices), NULL);
    vm_xw_end (x);
  }
}

char *
ferry_vm_to_libvirt (const struct ferry_vm *vm,
                     const struct ferry_vm_output *out)
{
  bool i440fx = vm_needs_i440fx (vm, out->keep_devices);
  uint64_t kib = (vm->memory ? vm->memory : VM_DEFAULT_MEMORY) >> 10;
  unsigned vcpus = vm->vcpus ? vm->vcpus : 1;
  bool windows = vm->os_type && strcasestr (vm->os_type, "win");
  struct vm_xw x;
  char text[32];

  if (vm->name == NULL || *vm->name == '\0') {
    ferry_error (EINVAL, "the VM has no name");
    ferry_error_input ("name");
    return NULL;
  }
  if (vm_xw_begin (&x) == -1)
    return NULL;
  vm_xw_start (&x, "domain");
  vm_xw_attr (&x, "type", "kvm");
  vm_xw_elem (&x, "name", vm->name);
  vm_xw_elemf (&x, "description", "Converted by ferry from %s (%s%s%s)",
               vm->source ? vm->source : "?",
               vm->source_type ? vm->source_type : "?",
               vm->os_type ? ", guest " : "", vm->os_type ? vm->os_type : "");
  vm_xw_start (&x, "memory");
  vm_xw_attr (&x, "unit", "KiB");
  snprintf (text, sizeof text, "%" PRIu64, kib);
  vm_xw_text (&x, text);
  vm_xw_end (&x);
  vm_xw_elemf (&x, "vcpu", "%u", vcpus);
  write_os (&x, vm, i440fx);
  vm_xw_start (&x, "cpu");
  vm_xw_attr (&x, "mode", "host-model");
  if (vm->sockets && vm->cores && vm->threads &&
      vm->sockets * vm->cores * vm->threads == vcpus) {
    vm_xw_start (&x, "topology");
    vm_xw_attrf (&x, "sockets", "%u", vm->sockets);
    vm_xw_attr (&x, "dies", "1");
    vm_xw_attrf (&x, "cores", "%u", vm->cores);
    vm_xw_attrf (&x, "threads", "%u", vm->threads);
    vm_xw_end (&x);
  }
  vm_xw_end (&x);
  vm_xw_empty (&x, "clock", "offset", windows ? "localtime" : "utc", NULL);
  vm_xw_elem (&x, "on_poweroff", "destroy");
  vm_xw_elem (&x, "on_reboot", "restart");
  vm_xw_elem (&x, "on_crash", "restart");

  vm_xw_start (&x, "devices");
  write_storage (&x, vm, out, i440fx);
  write_nics (&x, vm, out);
  vm_xw_empty (&x, "input", "type", "tablet", "bus", "usb", NULL);
  vm_xw_empty (&x, "graphics", "type", "vnc", "autoport", "yes", NULL);
  vm_xw_start (&x, "video");
  vm_xw_empty (&x, "model", "type", out->keep_devices && vm->video &&
               strcasestr (vm->video, "vmware") ? "vmvga" : "vga", NULL);
  vm_xw_end (&x);
  vm_xw_empty (&x, "console", "type", "pty", NULL);
  vm_xw_end (&x);   /* devices */
  vm_xw_end (&x);   /* domain */
  return vm_xw_finish (&x, vm->name);
}
