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
 *
 * Read back (ferry_vm_read_libvirt), a domain gives what booting it needs:
 * its name, memory, vCPUs, firmware, file-backed disks with their format,
 * bus and SCSI controller model, CD-ROMs, NICs with MAC, model and network,
 * and the video model.  Any domain of that shape reads, not only ferry's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xml.h"
#include "../common/cleanup.h"

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

/* The count in COUNT (one per bus) that names the next device on BUS:
 * SCSI, SATA and USB disks are all "sdX" to libvirt, and a target name
 * may appear once in a domain. */
static unsigned *
name_count (unsigned *count, enum ferry_vm_bus bus)
{
  if (bus == FERRY_VM_BUS_VIRTIO || bus == FERRY_VM_BUS_IDE ||
      bus == FERRY_VM_BUS_NVME)
    return &count[bus];
  return &count[FERRY_VM_BUS_SCSI];
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
    vm_disk_name (bus, (*name_count (count, bus))++, dev, sizeof dev);
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

    vm_disk_name (bus, (*name_count (count, bus))++, dev, sizeof dev);
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

/* --- reading a domain back ---------------------------------------------- */

/* The bus a <target bus='NAME'> names. */
static enum ferry_vm_bus
bus_by_name (const char *name)
{
  static const struct { const char *name; enum ferry_vm_bus bus; } buses[] = {
    { "virtio", FERRY_VM_BUS_VIRTIO }, { "scsi", FERRY_VM_BUS_SCSI },
    { "sata", FERRY_VM_BUS_SATA }, { "ide", FERRY_VM_BUS_IDE },
    { "nvme", FERRY_VM_BUS_NVME }, { "usb", FERRY_VM_BUS_USB },
    { "fdc", FERRY_VM_BUS_FLOPPY },
  };
  size_t i;

  for (i = 0; name && i < sizeof buses / sizeof buses[0]; i++)
    if (strcmp (name, buses[i].name) == 0)
      return buses[i].bus;
  return FERRY_VM_BUS_UNKNOWN;
}

/* Bytes in VALUE of libvirt's UNIT (KiB when none), into *OUT. */
static bool
libvirt_size (const char *value, const char *unit, uint64_t *out)
{
  static const struct { const char *unit; uint64_t mult; } units[] = {
    { "b", 1 }, { "bytes", 1 }, { "KB", 1000 }, { "k", 1024 },
    { "KiB", 1024 }, { "MB", 1000000 }, { "M", 1 << 20 },
    { "MiB", 1 << 20 }, { "GB", 1000000000 }, { "G", 1 << 30 },
    { "GiB", 1 << 30 }, { "TB", UINT64_C (1000000000000) },
    { "T", UINT64_C (1) << 40 }, { "TiB", UINT64_C (1) << 40 },
  };
  uint64_t v, mult = 0;
  size_t i;

  if (!vm_parse_u64 (value, &v))
    return false;
  for (i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strcmp (unit ? unit : "KiB", units[i].unit) == 0)
      mult = units[i].mult;
  if (mult == 0 || (v && mult > UINT64_MAX / v))
    return false;
  *out = v * mult;
  return true;
}

/* Read one <disk> element N of the domain NAME into VM (DIR resolves
 * relative files). */
static int
read_disk (struct ferry_vm *vm, const char *name, const char *dir,
           xmlNodePtr n)
{
  const char *device = vm_xml_attr (n, "device");
  xmlNodePtr source = vm_xml_child (n, "source");
  xmlNodePtr target = vm_xml_child (n, "target");
  xmlNodePtr address = vm_xml_child (n, "address");
  const char *file = vm_xml_attr (source, "file");
  const char *ctl = vm_xml_attr (address, "controller");
  const char *unit = vm_xml_attr (address, "unit");
  enum ferry_vm_bus bus = bus_by_name (vm_xml_attr (target, "bus"));
  uint64_t v;

  if (device && strcmp (device, "cdrom") == 0) {
    struct ferry_vm_cdrom *c = vm_add_cdrom (vm);
    if (c == NULL || vm_set (&c->image, file) == -1)
      return -1;
    c->bus = bus;
    return 0;
  }
  if (device && strcmp (device, "disk") != 0)
    return vm_note (vm, "a <disk device='%s'> is not read", device);
  if (file == NULL || *file == '\0')
    return ferry_error (EINVAL, "%s: a <disk> without <source file=...> "
                        "(line %d): ferry reads file-backed disks only",
                        name, n->line);
  {
    struct ferry_vm_disk *d = vm_add_disk (vm);
    if (d == NULL || vm_set (&d->file, file) == -1 ||
        vm_set (&d->format, vm_xml_attr (vm_xml_child (n, "driver"),
                                         "type")) == -1 ||
        vm_set (&d->id, vm_xml_attr (target, "dev")) == -1)
      return -1;
    d->path = vm_path_join (dir, file);
    if (d->path == NULL)
      return ferry_error (ENOMEM, "out of memory");
    d->bus = bus;
    if (ctl && vm_parse_u64 (ctl, &v) && v < 64)
      d->controller = v;
    if (unit && vm_parse_u64 (unit, &v) && v < 1024)
      d->unit = v;
  }
  return 0;
}

/* Read one <interface> element N of the domain NAME into VM. */
static int
read_interface (struct ferry_vm *vm, const char *name, xmlNodePtr n)
{
  struct ferry_vm_nic *nic = vm_add_nic (vm);
  xmlNodePtr source = vm_xml_child (n, "source");
  const char *mac = vm_xml_attr (vm_xml_child (n, "mac"), "address");
  const char *net = vm_xml_attr (source, "network");
  char norm[18];

  if (nic == NULL ||
      vm_set (&nic->network, net ? net : vm_xml_attr (source, "bridge")) == -1
      || vm_set (&nic->model, vm_xml_attr (vm_xml_child (n, "model"),
                                          "type")) == -1)
    return -1;
  if (mac == NULL)
    return 0;
  if (!vm_mac_normalize (mac, norm))
    return ferry_error (EINVAL, "%s: <interface> at line %d: '%s' is not a "
                        "MAC address", name, n->line, mac);
  return vm_set (&nic->mac, norm);
}

/* Read the domain ROOT (<domain>) of the document NAME into VM. */
static int
read_domain (struct ferry_vm *vm, const char *name, const char *dir,
             xmlNodePtr root)
{
  xmlNodePtr os = vm_xml_child (root, "os"), devices, n;
  xmlNodePtr memory = vm_xml_child (root, "memory");
  CLEANUP_FREE char *dname = vm_xml_child_text (root, "name");
  CLEANUP_FREE char *mem = vm_xml_child_text (root, "memory");
  CLEANUP_FREE char *vcpu = vm_xml_child_text (root, "vcpu");
  const char *fw = vm_xml_attr (os, "firmware");
  xmlNodePtr loader = vm_xml_child (os, "loader");
  const char *scsi_model[8] = { NULL };
  uint64_t v;
  size_t i;

  if (vm_set (&vm->name, dname) == -1)
    return -1;
  if (mem && !libvirt_size (mem, vm_xml_attr (memory, "unit"), &vm->memory))
    return ferry_error (EINVAL, "%s: <memory> '%s %s' is not a size", name,
                        mem, vm_xml_attr (memory, "unit") ?
                        vm_xml_attr (memory, "unit") : "KiB");
  if (vcpu) {
    if (!vm_parse_u64 (vcpu, &v) || v == 0 || v > 4096)
      return ferry_error (EINVAL, "%s: <vcpu> '%s' is not a CPU count", name,
                          vcpu);
    vm->vcpus = v;
  }
  vm->firmware = (fw && strcmp (fw, "efi") == 0) || loader ?
    FERRY_VM_FIRMWARE_UEFI : FERRY_VM_FIRMWARE_BIOS;
  vm->secure_boot = vm_xml_attr (loader, "secure") &&
    strcmp (vm_xml_attr (loader, "secure"), "yes") == 0;

  devices = vm_xml_child (root, "devices");
  for (n = devices ? devices->children : NULL; n; n = n->next) {
    int r = 0;
    if (vm_xml_is (n, "disk"))
      r = read_disk (vm, name, dir, n);
    else if (vm_xml_is (n, "interface"))
      r = read_interface (vm, name, n);
    else if (vm_xml_is (n, "controller")) {
      const char *type = vm_xml_attr (n, "type");
      const char *index = vm_xml_attr (n, "index");
      if (type && strcmp (type, "scsi") == 0 &&
          (index == NULL || (vm_parse_u64 (index, &v) && v < 8)))
        scsi_model[index ? v : 0] = vm_xml_attr (n, "model");
    }
    else if (vm_xml_is (n, "video"))
      r = vm_set (&vm->video, vm_xml_attr (vm_xml_child (n, "model"),
                                           "type"));
    if (r == -1)
      return -1;
  }
  /* A SCSI disk's controller: libvirt's default (LSI) when not given. */
  for (i = 0; i < vm->nr_disks; i++) {
    struct ferry_vm_disk *d = &vm->disks[i];
    int c = d->controller >= 0 && d->controller < 8 ? d->controller : 0;
    if (d->bus == FERRY_VM_BUS_SCSI &&
        vm_set (&d->controller_model, scsi_model[c] ? scsi_model[c]
                : "lsilogic") == -1)
      return -1;
  }
  return 0;
}

struct ferry_vm *
ferry_vm_read_libvirt (const char *name, const char *dir, const char *text,
                       size_t len)
{
  struct ferry_vm *vm = NULL;
  xmlDocPtr doc;
  xmlNodePtr root;

  doc = vm_xml_parse (name, text, len);
  if (doc == NULL)
    return NULL;
  root = xmlDocGetRootElement (doc);
  if (!vm_xml_is (root, "domain")) {
    ferry_error (EINVAL, "%s: not a libvirt domain: the root element is "
                 "<%s>, not <domain>", name, (const char *) root->name);
    goto out;
  }
  vm = vm_new (name, "libvirt");
  if (vm && read_domain (vm, name, dir, root) == -1) {
    ferry_vm_free (vm);
    vm = NULL;
  }
 out:
  xmlFreeDoc (doc);
  return vm;
}
