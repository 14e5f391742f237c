/* VirtualBox machines: .vbox settings files, and the vbox:Machine section
 * VirtualBox puts in the OVF it exports (the same <Machine> element).
 *
 * From a <Machine>: its name and OSType; Hardware's CPU count, RAMSize,
 * Firmware (EFI), Display (VRAM, controller), network adapters (enabled
 * ones, with MACAddress, type and the network they attach to); the
 * storage controllers (IDE, SATA, SCSI, SAS, NVMe, virtio-scsi) and the
 * disks and DVDs attached to them, each disk found by its uuid in the
 * MediaRegistry, whose nesting says which disks are differencing
 * (snapshot) images over a parent.  Settings files before 1.17 keep
 * StorageControllers beside Hardware, later ones inside it; both are
 * looked at.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xml.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* The disk in the media registry REG whose uuid is UUID, searching the
 * children (differencing images) too; *DEPTH is how many parents it has. */
static xmlNodePtr
find_medium (xmlNodePtr node, const char *kind, const char *uuid,
             unsigned *depth, unsigned level)
{
  xmlNodePtr c, f;

  if (node == NULL || level > 64)
    return NULL;
  for (c = node->children; c; c = c->next) {
    const char *u;
    if (!vm_xml_is (c, kind))
      continue;
    u = vm_xml_attr (c, "uuid");
    if (u && strcasecmp (u, uuid) == 0) {
      *depth = level;
      return c;
    }
    if ((f = find_medium (c, kind, uuid, depth, level + 1)))
      return f;
  }
  return NULL;
}

/* The bus and model a StorageController of TYPE drives. */
static enum ferry_vm_bus
controller_bus (const char *type)
{
  if (type == NULL)
    return FERRY_VM_BUS_UNKNOWN;
  if (!strcasecmp (type, "PIIX3") || !strcasecmp (type, "PIIX4") ||
      !strcasecmp (type, "ICH6"))
    return FERRY_VM_BUS_IDE;
  if (!strcasecmp (type, "AHCI"))
    return FERRY_VM_BUS_SATA;
  if (!strcasecmp (type, "LsiLogic") || !strcasecmp (type, "BusLogic") ||
      !strcasecmp (type, "LsiLogicSas") || !strcasecmp (type, "VirtioSCSI"))
    return FERRY_VM_BUS_SCSI;
  if (!strcasecmp (type, "NVMe"))
    return FERRY_VM_BUS_NVME;
  if (!strcasecmp (type, "I82078"))
    return FERRY_VM_BUS_FLOPPY;
  if (!strcasecmp (type, "USB"))
    return FERRY_VM_BUS_USB;
  return FERRY_VM_BUS_UNKNOWN;
}

/* An attribute as a number, or DEF. */
static int
attr_int (xmlNodePtr node, const char *name, int def)
{
  uint64_t v;

  if (!vm_parse_u64 (vm_xml_attr (node, name), &v) || v > 1024)
    return def;
  return v;
}

/* Read the disks and DVDs attached to the controllers of MACHINE. */
static int
read_storage (struct ferry_vm *vm, const char *name, xmlNodePtr machine,
              xmlNodePtr hw, const char *dir)
{
  xmlNodePtr scs = vm_xml_child (hw, "StorageControllers"), sc, ad;
  xmlNodePtr reg = vm_xml_child (machine, "MediaRegistry");
  int count[FERRY_VM_BUS_USB + 1] = { 0 };

  if (scs == NULL)
    scs = vm_xml_child (machine, "StorageControllers");
  for (sc = scs ? vm_xml_child (scs, "StorageController") : NULL; sc;
       sc = vm_xml_next (sc, "StorageController")) {
    const char *type = vm_xml_attr (sc, "type");
    enum ferry_vm_bus bus = controller_bus (type);
    int index = count[bus]++;

    for (ad = vm_xml_child (sc, "AttachedDevice"); ad;
         ad = vm_xml_next (ad, "AttachedDevice")) {
      const char *dtype = vm_xml_attr (ad, "type");
      xmlNodePtr image = vm_xml_child (ad, "Image");
      const char *uuid = image ? vm_xml_attr (image, "uuid") : NULL;
      int port = attr_int (ad, "port", 0), device = attr_int (ad, "device", 0);
      int controller = bus == FERRY_VM_BUS_IDE ? port : index;
      int unit = bus == FERRY_VM_BUS_IDE ? device : port;

      if (dtype && strcasecmp (dtype, "HardDisk") == 0) {
        struct ferry_vm_disk *d;
        xmlNodePtr hd;
        unsigned depth = 0;
        const char *loc, *fmt;

        if (uuid == NULL)
          return ferry_error (EINVAL, "%s: controller %s: a hard disk "
                              "attachment without an Image uuid", name,
                              vm_xml_attr (sc, "name"));
        hd = find_medium (reg ? vm_xml_child (reg, "HardDisks") : NULL,
                          "HardDisk", uuid, &depth, 0);
        if (hd == NULL)
          return ferry_error (EINVAL, "%s: controller %s, port %d: disk %s "
                              "is not in the MediaRegistry", name,
                              vm_xml_attr (sc, "name"), port, uuid);
        loc = vm_xml_attr (hd, "location");
        fmt = vm_xml_attr (hd, "format");
        d = vm_add_disk (vm);
        if (d == NULL || vm_set (&d->id, uuid) == -1 ||
            vm_set (&d->file, loc) == -1 ||
            vm_set (&d->controller_model, type) == -1)
          return -1;
        if (loc == NULL || *loc == '\0')
          return ferry_error (EINVAL, "%s: disk %s has no location", name,
                              uuid);
        d->path = vm_path_join (dir, loc);
        if (d->path == NULL)
          return ferry_error (ENOMEM, "out of memory");
        if (fmt) {
          char lower[32];
          size_t i;
          for (i = 0; fmt[i] && i < sizeof lower - 1; i++)
            lower[i] = fmt[i] >= 'A' && fmt[i] <= 'Z' ? fmt[i] + 32 : fmt[i];
          lower[i] = '\0';
          if (vm_set (&d->format, lower) == -1)
            return -1;
        }
        d->bus = bus;
        d->controller = controller;
        d->unit = unit;
        if (depth > 0) {
          d->flags |= FERRY_VM_DISK_SNAPSHOT;
          vm->has_snapshots = true;
        }
      }
      else if (dtype && strcasecmp (dtype, "DVD") == 0) {
        struct ferry_vm_cdrom *c = vm_add_cdrom (vm);
        xmlNodePtr img = NULL;
        unsigned depth;

        if (c == NULL)
          return -1;
        c->bus = bus;
        c->controller = controller;
        c->unit = unit;
        if (uuid && reg)
          img = find_medium (vm_xml_child (reg, "DVDImages"), "Image", uuid,
                             &depth, 0);
        if (img && vm_set (&c->image, vm_xml_attr (img, "location")) == -1)
          return -1;
      }
      else if (vm_note (vm, "controller %s, port %d: a %s attachment is not "
                        "migrated", vm_xml_attr (sc, "name"), port,
                        dtype ? dtype : "device") == -1)
        return -1;
    }
  }
  return 0;
}

/* The name of the network adapter A attaches to, if it says. */
static const char *
adapter_network (xmlNodePtr a)
{
  static const char *const kinds[] = {
    "BridgedInterface", "InternalNetwork", "HostOnlyInterface",
    "NATNetwork", "GenericInterface", "CloudNetwork",
  };
  xmlNodePtr c;
  size_t i;

  if (vm_xml_child (a, "NAT"))
    return "NAT";
  for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if ((c = vm_xml_child (a, kinds[i])) && vm_xml_attr (c, "name"))
      return vm_xml_attr (c, "name");
  return NULL;
}

/* Read the enabled network adapters of HW.  IN_OVF: the NICs are the
 * OVF's; give them the MACs, in slot order. */
static int
read_network (struct ferry_vm *vm, xmlNodePtr hw, bool in_ovf)
{
  xmlNodePtr net = vm_xml_child (hw, "Network"), a;
  size_t next = 0;

  for (a = net ? vm_xml_child (net, "Adapter") : NULL; a;
       a = vm_xml_next (a, "Adapter")) {
    const char *enabled = vm_xml_attr (a, "enabled");
    const char *macs = vm_xml_attr (a, "MACAddress");
    struct ferry_vm_nic *n;
    char mac[18];
    bool has_mac = macs && vm_mac_normalize (macs, mac);

    if (enabled && strcasecmp (enabled, "true") != 0)
      continue;
    if (in_ovf) {
      if (next < vm->nr_nics) {
        n = &vm->nics[next++];
        if (n->mac == NULL && has_mac && vm_set (&n->mac, mac) == -1)
          return -1;
      }
      continue;
    }
    n = vm_add_nic (vm);
    if (n == NULL ||
        vm_setf (&n->id, "adapter %s", vm_xml_attr (a, "slot") ?
                 vm_xml_attr (a, "slot") : "?") == -1 ||
        vm_set (&n->model, vm_xml_attr (a, "type")) == -1 ||
        vm_set (&n->network, adapter_network (a)) == -1 ||
        (has_mac && vm_set (&n->mac, mac) == -1))
      return -1;
  }
  return 0;
}

int
vm_vbox_machine (struct ferry_vm *vm, const char *name, xmlNodePtr machine,
                 const char *dir, bool in_ovf)
{
  xmlNodePtr hw = vm_xml_child (machine, "Hardware"), c;
  uint64_t v;

  if (hw == NULL)
    return ferry_error (EINVAL, "%s: the VirtualBox machine has no "
                        "<Hardware>", name);
  if (vm->name == NULL && vm_set (&vm->name, vm_xml_attr (machine, "name"))
      == -1)
    return -1;
  if (vm->os_type == NULL &&
      vm_set (&vm->os_type, vm_xml_attr (machine, "OSType")) == -1)
    return -1;
  if (vm_set (&vm->producer, "VirtualBox") == -1)
    return -1;

  if ((c = vm_xml_child (hw, "Firmware"))) {
    const char *t = vm_xml_attr (c, "type");
    if (t && strncasecmp (t, "EFI", 3) == 0)
      vm->firmware = FERRY_VM_FIRMWARE_UEFI;
    else if (t && strcasecmp (t, "BIOS") == 0)
      vm->firmware = FERRY_VM_FIRMWARE_BIOS;
  }
  if (vm->firmware == FERRY_VM_FIRMWARE_UNKNOWN)
    vm->firmware = FERRY_VM_FIRMWARE_BIOS;   /* VirtualBox's default */
  if ((c = vm_xml_child (hw, "CPU")) && vm->vcpus == 0) {
    vm->vcpus = vm_parse_u64 (vm_xml_attr (c, "count"), &v) && v > 0 &&
      v <= 4096 ? v : 1;
  }
  if ((c = vm_xml_child (hw, "Memory")) && vm->memory == 0 &&
      vm_parse_u64 (vm_xml_attr (c, "RAMSize"), &v) &&
      v < (UINT64_C (1) << 40))
    vm->memory = v << 20;
  if ((c = vm_xml_child (hw, "Display"))) {
    if (vm_parse_u64 (vm_xml_attr (c, "VRAMSize"), &v) && v < (1u << 20) &&
        vm->video_ram == 0)
      vm->video_ram = v << 20;
    if (vm->video == NULL &&
        vm_set (&vm->video, vm_xml_attr (c, "controller") ?
                vm_xml_attr (c, "controller") : "VBoxVGA") == -1)
      return -1;
  }
  if (read_network (vm, hw, in_ovf) == -1)
    return -1;
  if (vm_xml_child (machine, "Snapshot"))
    vm->has_snapshots = true;
  if (in_ovf)
    return 0;
  if (vm->vcpus == 0)
    vm->vcpus = 1;
  return read_storage (vm, name, machine, hw, dir);
}

struct ferry_vm *
ferry_vm_read_vbox (const char *name, const char *dir, const char *text,
                    size_t len)
{
  struct ferry_vm *vm = NULL;
  xmlDocPtr doc;
  xmlNodePtr root, machine;

  doc = vm_xml_parse (name, text, len);
  if (doc == NULL)
    return NULL;
  root = xmlDocGetRootElement (doc);
  if (!vm_xml_is (root, "VirtualBox")) {
    ferry_error (EINVAL, "%s: not a VirtualBox settings file: the root "
                 "element is <%s>, not <VirtualBox>", name,
                 (const char *) root->name);
    goto out;
  }
  machine = vm_xml_child (root, "Machine");
  if (machine == NULL) {
    ferry_error (EINVAL, "%s: the settings file holds no <Machine>", name);
    goto out;
  }
  vm = vm_new (name, "vbox");
  if (vm == NULL ||
      vm_set (&vm->source_version, vm_xml_attr (root, "version")) == -1 ||
      vm_vbox_machine (vm, name, machine, dir, false) == -1) {
    ferry_vm_free (vm);
    vm = NULL;
  }

 out:
  xmlFreeDoc (doc);
  return vm;
}
