/* The VM model as an OVF 1.0 descriptor, in the dialect of VMware
 * (ovftool, vSphere: vmx-13 hardware, vmw:osType, vmw:Config for firmware
 * and secure boot) or of VirtualBox (virtualbox-2.2 hardware,
 * vbox:OSType), with streamOptimized VMDK disks.
 *
 * Devices are translated to what the flavour's importer knows: SCSI
 * controllers keep their model where the flavour has it (VMware:
 * lsilogic, lsilogicsas, VirtualSCSI, buslogic; VirtualBox: lsilogic),
 * SATA is AHCI, NVMe stays NVMe for VMware and becomes SATA for
 * VirtualBox, virtio disks go on SCSI (VMware) or SATA (VirtualBox).
 * Each device keeps its unit where it has one that is free.  NICs keep
 * their network, their MAC (in rasd:Address, which ferry reads back) and
 * a model the flavour emulates.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xml.h"
#include "../common/util.h"

#define VMDK_STREAM_URI \
  "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"

/* A controller of the descriptor. */
struct ctl {
  enum ferry_vm_bus bus;
  int index;                   /* the source's, for matching devices */
  const char *subtype;
  unsigned id;                 /* its InstanceID */
  unsigned long long used;     /* units taken, a bit each (0..63) */
};

struct writer {
  struct vm_xw x;
  const struct ferry_vm *vm;
  const struct ferry_vm_output *out;
  bool vbox;
  struct ctl ctls[32];
  size_t nr_ctls;
  unsigned next_id;
};

/* The bus a device on BUS gets in the flavour. */
static enum ferry_vm_bus
flavour_bus (struct writer *w, enum ferry_vm_bus bus)
{
  switch (bus) {
  case FERRY_VM_BUS_IDE: case FERRY_VM_BUS_SATA: case FERRY_VM_BUS_SCSI:
    return bus;
  case FERRY_VM_BUS_NVME:
    return w->vbox ? FERRY_VM_BUS_SATA : FERRY_VM_BUS_NVME;
  default:
    return w->vbox ? FERRY_VM_BUS_SATA : FERRY_VM_BUS_SCSI;
  }
}

/* The ResourceSubType of a SCSI controller the source calls MODEL. */
static const char *
scsi_subtype (struct writer *w, const char *model)
{
  if (w->vbox || model == NULL)
    return "lsilogic";
  if (!strcasecmp (model, "pvscsi") || !strcasecmp (model, "VirtualSCSI"))
    return "VirtualSCSI";
  if (!strcasecmp (model, "lsisas1068") || !strcasecmp (model, "lsilogicsas")
      || !strcasecmp (model, "LsiLogicSas"))
    return "lsilogicsas";
  if (!strcasecmp (model, "buslogic"))
    return "buslogic";
  return "lsilogic";
}

/* The controller for a device the source has on BUS, controller INDEX,
 * made on first use. */
static struct ctl *
controller_for (struct writer *w, enum ferry_vm_bus src_bus, int index,
                const char *model)
{
  enum ferry_vm_bus bus = flavour_bus (w, src_bus);
  size_t i;

  if (index < 0 || bus != src_bus)
    index = 0;
  for (i = 0; i < w->nr_ctls; i++)
    if (w->ctls[i].bus == bus && w->ctls[i].index == index)
      return &w->ctls[i];
  if (w->nr_ctls == sizeof w->ctls / sizeof w->ctls[0])
    return NULL;
  w->ctls[w->nr_ctls] = (struct ctl) {
    .bus = bus, .index = index, .id = w->next_id++,
    .subtype = bus == FERRY_VM_BUS_SCSI ? scsi_subtype (w, model)
      : bus == FERRY_VM_BUS_IDE ? (w->vbox ? "PIIX4" : NULL)
      : bus == FERRY_VM_BUS_SATA ? (w->vbox ? "AHCI" : "vmware.sata.ahci")
      : "vmware.nvme.controller",
  };
  return &w->ctls[w->nr_ctls++];
}

/* Take UNIT on C, or the first free one when it is taken or unknown. */
static int
take_unit (struct ctl *c, int unit)
{
  int max = c->bus == FERRY_VM_BUS_IDE ? 2 : c->bus == FERRY_VM_BUS_SCSI ?
    16 : 30;
  int u;

  if (unit >= 0 && unit < max && !(c->used & (1ull << unit)) &&
      !(c->bus == FERRY_VM_BUS_SCSI && unit == 7)) {
    c->used |= 1ull << unit;
    return unit;
  }
  for (u = 0; u < max; u++) {
    if ((c->used & (1ull << u)) || (c->bus == FERRY_VM_BUS_SCSI && u == 7))
      continue;
    c->used |= 1ull << u;
    return u;
  }
  return -1;
}

/* The rasd: fields of one Item, gathered first: CIM's schema wants them
 * in alphabetical order, whatever order they come in here. */
struct item {
  struct { const char *name; char *value; } f[16];
  int n;
  bool failed;
};

/* Add the field NAME (without "rasd:") with a printf'd value. */
static void
item_add (struct item *it, const char *name, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
static void
item_add (struct item *it, const char *name, const char *fmt, ...)
{
  va_list ap;
  int r;

  if (it->n == (int) (sizeof it->f / sizeof it->f[0])) {
    it->failed = true;
    return;
  }
  va_start (ap, fmt);
  r = vasprintf (&it->f[it->n].value, fmt, ap);
  va_end (ap);
  if (r == -1) {
    it->failed = true;
    return;
  }
  it->f[it->n++].name = name;
}

/* An item's name, InstanceID and ResourceType. */
static void
item_begin (struct item *it, unsigned id, int type, const char *name)
{
  memset (it, 0, sizeof *it);
  item_add (it, "ElementName", "%s", name);
  item_add (it, "InstanceID", "%u", id);
  item_add (it, "ResourceType", "%d", type);
}

static int
field_order (const void *a, const void *b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* Start the <Item> and write its fields in order; the caller may add
 * vmw: children, then ends it with vm_xw_end. */
static void
item_emit (struct writer *w, struct item *it)
{
  int i;

  qsort (it->f, it->n, sizeof it->f[0], field_order);
  vm_xw_start (&w->x, "Item");
  for (i = 0; i < it->n; i++) {
    char name[64];
    snprintf (name, sizeof name, "rasd:%s", it->f[i].name);
    vm_xw_elem (&w->x, name, it->f[i].value);
    free (it->f[i].value);
  }
  if (it->failed)
    w->x.failed = true;
}

/* The CIM operating system id for the source's OS name (coarse). */
static int
cim_os_id (const char *os)
{
  bool is64 = os && strstr (os, "64");

  if (os == NULL)
    return 1;
  if (strncmp (os, "cim-", 4) == 0 && atoi (os + 4) > 0)
    return atoi (os + 4);
  if (strcasestr (os, "win"))
    return is64 ? 103 : 105;
  if (strcasestr (os, "ubuntu"))
    return is64 ? 94 : 93;
  if (strcasestr (os, "rhel") || strcasestr (os, "redhat") ||
      strcasestr (os, "centos"))
    return is64 ? 80 : 79;
  if (strcasestr (os, "linux") || strcasestr (os, "debian") ||
      strcasestr (os, "fedora") || strcasestr (os, "sles"))
    return is64 ? 101 : 36;
  return is64 ? 102 : 1;
}

/* VMware's guest id for the source's OS name: kept when it is one
 * already, converted from a VMX guestOS ("rhel7-64" is rhel7_64Guest). */
static char *
vmware_os_type (const struct ferry_vm *vm)
{
  const char *os = vm->os_type;
  char *r, *p;

  if (os == NULL || !vm->producer || strcmp (vm->producer, "VMware"))
    return strdup (os && strstr (os, "64") ? "other3xLinux64Guest"
                   : "otherGuest");
  if (vm_has_suffix (os, "Guest"))
    return strdup (os);
  if (asprintf (&r, "%sGuest", os) == -1)
    return NULL;
  for (p = r; *p; p++)
    if (*p == '-')
      *p = '_';
  return r;
}

/* The NIC model name the flavour uses for the source's MODEL. */
static const char *
nic_subtype (struct writer *w, const char *model)
{
  const char *m = vm_nic_model (model, true);

  if (!strcmp (m, "vmxnet3"))
    return w->vbox ? "E1000" : "VmxNet3";
  if (!strcmp (m, "e1000e"))
    return w->vbox ? "E1000" : "E1000e";
  if (!strcmp (m, "pcnet"))
    return "PCNet32";
  if (!strcmp (m, "virtio"))
    return w->vbox ? "virtio" : "VmxNet3";
  return "E1000";
}

/* Write the envelope's sections before the VirtualSystem. */
static void
write_package (struct writer *w)
{
  const struct ferry_vm *vm = w->vm;
  const struct ferry_vm_output *out = w->out;
  size_t i, j;

  vm_xw_start (&w->x, "References");
  for (i = 0; i < vm->nr_disks; i++) {
    if (out->disk_paths[i] == NULL)
      continue;
    vm_xw_start (&w->x, "File");
    vm_xw_attr (&w->x, "ovf:href", out->disk_paths[i]);
    vm_xw_attrf (&w->x, "ovf:id", "file%zu", i + 1);
    if (out->disk_file_sizes)
      vm_xw_attrf (&w->x, "ovf:size", "%" PRIu64, out->disk_file_sizes[i]);
    vm_xw_end (&w->x);
  }
  vm_xw_end (&w->x);

  vm_xw_start (&w->x, "DiskSection");
  vm_xw_elem (&w->x, "Info", "Virtual disk information");
  for (i = 0; i < vm->nr_disks; i++) {
    if (out->disk_paths[i] == NULL)
      continue;
    vm_xw_start (&w->x, "Disk");
    vm_xw_attrf (&w->x, "ovf:capacity", "%" PRIu64, out->disk_sizes[i]);
    vm_xw_attr (&w->x, "ovf:capacityAllocationUnits", "byte");
    vm_xw_attrf (&w->x, "ovf:diskId", "vmdisk%zu", i + 1);
    vm_xw_attrf (&w->x, "ovf:fileRef", "file%zu", i + 1);
    vm_xw_attr (&w->x, "ovf:format", VMDK_STREAM_URI);
    if (out->disk_populated)
      vm_xw_attrf (&w->x, "ovf:populatedSize", "%" PRIu64,
                   out->disk_populated[i]);
    vm_xw_end (&w->x);
  }
  vm_xw_end (&w->x);

  vm_xw_start (&w->x, "NetworkSection");
  vm_xw_elem (&w->x, "Info", "The list of logical networks");
  for (i = 0; i < vm->nr_nics; i++) {
    const char *net = vm->nics[i].network;
    if (net == NULL)
      continue;
    for (j = 0; j < i; j++)
      if (vm->nics[j].network && !strcmp (vm->nics[j].network, net))
        break;
    if (j < i)
      continue;
    vm_xw_start (&w->x, "Network");
    vm_xw_attr (&w->x, "ovf:name", net);
    vm_xw_elemf (&w->x, "Description", "The %s network", net);
    vm_xw_end (&w->x);
  }
  vm_xw_end (&w->x);
}

/* Write a device item (disk or CD-ROM) on its controller. */
static int
write_device (struct writer *w, int type, const char *name,
              enum ferry_vm_bus bus, int controller, int unit,
              const char *model, const char *disk_id)
{
  struct ctl *c = controller_for (w, bus, controller, model);
  struct item it;
  int u;

  if (c == NULL)
    return ferry_error (E2BIG, "too many controllers for an OVF");
  u = take_unit (c, flavour_bus (w, bus) == bus ? unit : -1);
  if (u < 0)
    return ferry_error (E2BIG, "no free unit on the %s controller %d for %s",
                        ferry_vm_bus_name (c->bus), c->index, name);
  item_begin (&it, w->next_id++, type, name);
  item_add (&it, "AddressOnParent", "%d", u);
  if (disk_id)
    item_add (&it, "HostResource", "ovf:/disk/%s", disk_id);
  else
    item_add (&it, "AutomaticAllocation", "false");
  item_add (&it, "Parent", "%u", c->id);
  item_emit (w, &it);
  vm_xw_end (&w->x);
  return 0;
}

/* The controllers, written once every device has picked its own. */
static void
write_controllers (struct writer *w)
{
  size_t i;

  for (i = 0; i < w->nr_ctls; i++) {
    const struct ctl *c = &w->ctls[i];
    struct item it;
    char name[64];
    int type = c->bus == FERRY_VM_BUS_IDE ? 5 : c->bus == FERRY_VM_BUS_SCSI ?
      6 : 20;

    snprintf (name, sizeof name, "%s controller %d",
              c->bus == FERRY_VM_BUS_IDE ? "IDE" :
              c->bus == FERRY_VM_BUS_SCSI ? "SCSI" :
              c->bus == FERRY_VM_BUS_SATA ? "SATA" : "NVMe", c->index);
    item_begin (&it, c->id, type, name);
    item_add (&it, "Address", "%d", c->index);
    if (c->subtype)
      item_add (&it, "ResourceSubType", "%s", c->subtype);
    item_emit (w, &it);
    vm_xw_end (&w->x);
  }
}

/* Write the VirtualHardwareSection. */
static int
write_hardware (struct writer *w)
{
  const struct ferry_vm *vm = w->vm;
  unsigned vcpus = vm->vcpus ? vm->vcpus : 1;
  uint64_t mib = (vm->memory ? vm->memory : VM_DEFAULT_MEMORY) >> 20;
  struct item it;
  size_t i;

  vm_xw_start (&w->x, "VirtualHardwareSection");
  vm_xw_elem (&w->x, "Info", "Virtual hardware requirements");
  vm_xw_start (&w->x, "System");
  vm_xw_elem (&w->x, "vssd:ElementName", "Virtual Hardware Family");
  vm_xw_elem (&w->x, "vssd:InstanceID", "0");
  vm_xw_elem (&w->x, "vssd:VirtualSystemIdentifier", vm->name);
  vm_xw_elem (&w->x, "vssd:VirtualSystemType",
              w->vbox ? "virtualbox-2.2" : "vmx-13");
  vm_xw_end (&w->x);

  item_begin (&it, 1, 3, "virtual CPUs");
  item_add (&it, "AllocationUnits", "hertz * 10^6");
  item_add (&it, "VirtualQuantity", "%u", vcpus);
  item_emit (w, &it);
  if (!w->vbox && vm->cores) {
    char cores[16];
    vm_xw_start (&w->x, "vmw:CoresPerSocket");
    vm_xw_attr (&w->x, "ovf:required", "false");
    snprintf (cores, sizeof cores, "%u", vm->cores);
    vm_xw_text (&w->x, cores);
    vm_xw_end (&w->x);
  }
  vm_xw_end (&w->x);
  item_begin (&it, 2, 4, "memory");
  item_add (&it, "AllocationUnits", "byte * 2^20");
  item_add (&it, "VirtualQuantity", "%" PRIu64, mib);
  item_emit (w, &it);
  vm_xw_end (&w->x);

  /* Devices first (their controllers are numbered as they come), the
   * controllers after: OVF does not ask for an order. */
  w->next_id = 3;
  /* Controller ids come first in number: reserve them by making each
   * one before any device item id is handed out. */
  for (i = 0; i < vm->nr_disks; i++)
    if (w->out->disk_paths[i] &&
        controller_for (w, vm->disks[i].bus, vm->disks[i].controller,
                        vm->disks[i].controller_model) == NULL)
      return ferry_error (E2BIG, "too many controllers for an OVF");
  for (i = 0; i < vm->nr_cdroms; i++)
    if (controller_for (w, vm->cdroms[i].bus, vm->cdroms[i].controller,
                        NULL) == NULL)
      return ferry_error (E2BIG, "too many controllers for an OVF");
  write_controllers (w);
  for (i = 0; i < vm->nr_disks; i++) {
    const struct ferry_vm_disk *d = &vm->disks[i];
    char name[48], id[48];
    if (w->out->disk_paths[i] == NULL)
      continue;
    snprintf (name, sizeof name, "Hard disk %zu", i + 1);
    snprintf (id, sizeof id, "vmdisk%zu", i + 1);
    if (write_device (w, 17, name, d->bus, d->controller, d->unit,
                      d->controller_model, id) == -1)
      return -1;
  }
  for (i = 0; i < vm->nr_cdroms; i++) {
    const struct ferry_vm_cdrom *c = &vm->cdroms[i];
    char name[48];
    snprintf (name, sizeof name, "CD/DVD drive %zu", i + 1);
    if (write_device (w, 15, name, c->bus, c->controller, c->unit, NULL,
                      NULL) == -1)
      return -1;
  }
  for (i = 0; i < vm->nr_nics; i++) {
    const struct ferry_vm_nic *n = &vm->nics[i];
    char name[48];
    snprintf (name, sizeof name, "Network adapter %zu", i + 1);
    item_begin (&it, w->next_id++, 10, n->id ? n->id : name);
    if (n->mac)
      item_add (&it, "Address", "%s", n->mac);
    item_add (&it, "AddressOnParent", "%zu", 7 + i);
    item_add (&it, "AutomaticAllocation", "true");
    if (n->network)
      item_add (&it, "Connection", "%s", n->network);
    item_add (&it, "ResourceSubType", "%s", nic_subtype (w, n->model));
    item_emit (w, &it);
    vm_xw_end (&w->x);
  }
  if (!w->vbox) {
    item_begin (&it, w->next_id++, 24, "Video card");
    item_add (&it, "AutomaticAllocation", "false");
    item_emit (w, &it);
    if (vm->video_ram) {
      char kb[32];
      snprintf (kb, sizeof kb, "%" PRIu64, vm->video_ram >> 10);
      vm_xw_empty (&w->x, "vmw:Config", "ovf:required", "false",
                   "vmw:key", "videoRamSizeInKB", "vmw:value", kb, NULL);
    }
    vm_xw_end (&w->x);
    vm_xw_empty (&w->x, "vmw:Config", "ovf:required", "false",
                 "vmw:key", "firmware", "vmw:value",
                 vm->firmware == FERRY_VM_FIRMWARE_UEFI ? "efi" : "bios",
                 NULL);
    if (vm->secure_boot)
      vm_xw_empty (&w->x, "vmw:Config", "ovf:required", "false",
                   "vmw:key", "bootOptions.efiSecureBootEnabled",
                   "vmw:value", "true", NULL);
  }
  vm_xw_end (&w->x);
  return 0;
}

char *
ferry_vm_to_ovf (const struct ferry_vm *vm, const struct ferry_vm_output *out)
{
  struct writer w = { .vm = vm, .out = out };
  char *os = NULL;

  if (vm->name == NULL || *vm->name == '\0') {
    ferry_error (EINVAL, "the VM has no name");
    ferry_error_input ("name");
    return NULL;
  }
  if (out->disk_paths == NULL || out->disk_sizes == NULL) {
    ferry_error (EINVAL, "%s: an OVF needs the disks' files and sizes",
                 vm->name);
    return NULL;
  }
  w.vbox = out->flavor && strcasecmp (out->flavor, "virtualbox") == 0;
  if (out->flavor && !w.vbox && strcasecmp (out->flavor, "vmware") != 0) {
    ferry_error (EINVAL, "OVF flavour '%s': expected vmware or virtualbox",
                 out->flavor);
    return NULL;
  }
  if (vm_xw_begin (&w.x) == -1)
    return NULL;
  vm_xw_start (&w.x, "Envelope");
  vm_xw_attr (&w.x, "ovf:version", "1.0");
  vm_xw_attr (&w.x, "xmlns", "http://schemas.dmtf.org/ovf/envelope/1");
  vm_xw_attr (&w.x, "xmlns:ovf", "http://schemas.dmtf.org/ovf/envelope/1");
  vm_xw_attr (&w.x, "xmlns:rasd", "http://schemas.dmtf.org/wbem/wscim/1/"
              "cim-schema/2/CIM_ResourceAllocationSettingData");
  vm_xw_attr (&w.x, "xmlns:vssd", "http://schemas.dmtf.org/wbem/wscim/1/"
              "cim-schema/2/CIM_VirtualSystemSettingData");
  vm_xw_attr (&w.x, "xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance");
  if (w.vbox)
    vm_xw_attr (&w.x, "xmlns:vbox", "http://www.virtualbox.org/ovf/machine");
  else
    vm_xw_attr (&w.x, "xmlns:vmw", "http://www.vmware.com/schema/ovf");
  write_package (&w);

  vm_xw_start (&w.x, "VirtualSystem");
  vm_xw_attr (&w.x, "ovf:id", vm->name);
  vm_xw_elem (&w.x, "Info", "A virtual machine");
  vm_xw_elem (&w.x, "Name", vm->name);
  vm_xw_start (&w.x, "OperatingSystemSection");
  vm_xw_attrf (&w.x, "ovf:id", "%d", cim_os_id (vm->os_type));
  if (!w.vbox) {
    os = vmware_os_type (vm);
    if (os == NULL)
      w.x.failed = true;
    vm_xw_attr (&w.x, "vmw:osType", os);
  }
  vm_xw_elem (&w.x, "Info", "The kind of installed guest operating system");
  vm_xw_elem (&w.x, "Description", vm->os_description ? vm->os_description
              : vm->os_type);
  if (w.vbox && vm->os_type) {
    vm_xw_start (&w.x, "vbox:OSType");
    vm_xw_attr (&w.x, "ovf:required", "false");
    vm_xw_text (&w.x, vm->os_type);
    vm_xw_end (&w.x);
  }
  vm_xw_end (&w.x);
  if (write_hardware (&w) == -1) {
    free (os);
    free (vm_xw_finish (&w.x, vm->name));
    return NULL;
  }
  vm_xw_end (&w.x);   /* VirtualSystem */
  vm_xw_end (&w.x);   /* Envelope */
  free (os);
  return vm_xw_finish (&w.x, vm->name);
}
