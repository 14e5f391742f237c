/* OVF descriptors: versions 0.9 (VMware's, <Section xsi:type=...>), 1.x
 * and 2.0 (DMTF DSP0243), as VMware (ovftool, vCenter) and VirtualBox
 * write them, into the VM model.
 *
 * What is read: References (files, their gzip compression), the disks of
 * DiskSection with their capacity and format, the first VirtualSystem's
 * name and OperatingSystemSection, and its VirtualHardwareSection: CPUs
 * (with VMware's vmw:CoresPerSocket), memory, IDE, SCSI, SATA and NVMe
 * controllers, disks and CD-ROMs by their Parent and AddressOnParent,
 * NICs, video; VMware's vmw:Config and vmw:ExtraConfig (firmware, secure
 * boot); VirtualBox's vbox:Machine (firmware, MAC addresses, see
 * vbox.c).  A disk item names a Disk of DiskSection (ovf:/disk/ID) or, as
 * VMware VirtualCenter exports may, a File of References itself
 * (ovf:/file/ID; DSP0243 allows both): that file is then the disk, its
 * format and size the image's own.  Items of OVF 2.0 (StorageItem,
 * EthernetPortItem) are read like Items.  With a DeploymentOptionSection,
 * the items of the default configuration are taken, each InstanceID's
 * last applicable item winning.
 *
 * Elements and attributes are matched by local name (xml.h), so the
 * namespace each version uses does not matter.  A reference that leads
 * nowhere (a disk item naming a disk that DiskSection lacks, a parent
 * that is not a controller, a disk whose file References lacks) is an
 * error naming the item; an item ferry has no use for is a note.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xml.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* CIM ResourceType values (CIM_ResourceAllocationSettingData). */
enum {
  RT_OTHER = 1, RT_PROCESSOR = 3, RT_MEMORY = 4, RT_IDE = 5, RT_SCSI = 6,
  RT_ETHERNET = 10, RT_FLOPPY = 14, RT_CD = 15, RT_DVD = 16, RT_DISK = 17,
  RT_OTHER_STORAGE = 20, RT_SERIAL = 21, RT_PARALLEL = 22, RT_USB = 23,
  RT_GRAPHICS = 24, RT_SOUND = 35,
};

struct ovf_file {
  const char *id, *href;
  const char *compression;
  bool used;                   /* a disk item names it (ovf:/file/ID) */
};

struct ovf_disk {
  const char *id, *file_ref, *format;
  uint64_t capacity, populated;
  bool used;
};

/* One item of the VirtualHardwareSection, its fields as strings (owned). */
struct ovf_item {
  xmlNodePtr node;
  char *instance_id, *subtype, *quantity, *units, *parent;
  char *address_on_parent, *address, *host_resource, *connection, *name;
  unsigned long type;
  /* A controller's place: its bus, and which one of that bus it is. */
  enum ferry_vm_bus bus;
  int index;
};

struct ovf {
  const char *name;            /* for messages */
  const char *dir;
  struct ferry_vm *vm;
  struct ovf_file *files;
  size_t nr_files;
  struct ovf_disk *disks;
  size_t nr_disks;
  struct ovf_item *items;
  size_t nr_items;
  const char *config;          /* the deployment configuration, or NULL */
};

/* True when NODE is the section KIND: <KIND>, or (OVF 0.9) <Section
 * xsi:type="ovf:KIND_Type">. */
static bool
is_section (xmlNodePtr node, const char *kind)
{
  const char *type;
  size_t n = strlen (kind);

  if (vm_xml_is (node, kind))
    return true;
  if (!vm_xml_is (node, "Section") && !vm_xml_is (node, "Content"))
    return false;
  type = vm_xml_attr (node, "type");
  if (type == NULL)
    return false;
  if (strchr (type, ':'))
    type = strchr (type, ':') + 1;
  return strncmp (type, kind, n) == 0 && strcmp (type + n, "_Type") == 0;
}

/* The first child of NODE that is the section KIND, or NULL. */
static xmlNodePtr
find_section (xmlNodePtr node, const char *kind)
{
  xmlNodePtr c;

  for (c = node ? node->children : NULL; c; c = c->next)
    if (is_section (c, kind))
      return c;
  return NULL;
}

/* Multiply V by the unit of an AllocationUnits string: "byte", "byte *
 * 2^20", "MegaBytes", "KB" ... (DSP0004 programmatic units, and the
 * words VirtualBox writes).  DEFAULT_MULT when UNITS is NULL or empty.
 * False when the unit is unknown or the product overflows. */
static bool
apply_units (const char *units, uint64_t default_mult, uint64_t v,
             uint64_t *out)
{
  static const struct { const char *word; unsigned shift; } words[] = {
    { "byte", 0 }, { "bytes", 0 },
    { "kilobytes", 10 }, { "kb", 10 }, { "kib", 10 },
    { "megabytes", 20 }, { "mb", 20 }, { "mib", 20 },
    { "gigabytes", 30 }, { "gb", 30 }, { "gib", 30 },
    { "terabytes", 40 }, { "tb", 40 }, { "tib", 40 },
  };
  uint64_t mult = default_mult;
  char buf[64];
  size_t i, n = 0;

  if (units && *units) {
    /* Drop blanks: "byte * 2^20" and "byte*2^20" are the same. */
    for (; *units && n < sizeof buf - 1; units++)
      if (*units != ' ' && *units != '\t')
        buf[n++] = *units;
    buf[n] = '\0';
    mult = 0;
    for (i = 0; i < sizeof words / sizeof words[0]; i++)
      if (strcasecmp (buf, words[i].word) == 0)
        mult = UINT64_C (1) << words[i].shift;
    if (mult == 0 && strncasecmp (buf, "byte*", 5) == 0) {
      unsigned long base, exp;
      char *end;
      base = strtoul (buf + 5, &end, 10);
      if (*end != '^')
        return false;
      exp = strtoul (end + 1, &end, 10);
      if (*end || (base != 2 && base != 10) || exp > 60)
        return false;
      for (mult = 1; exp > 0; exp--) {
        if (mult > UINT64_MAX / base)
          return false;
        mult *= base;
      }
    }
    if (mult == 0)
      return false;
  }
  if (v != 0 && mult > UINT64_MAX / v)
    return false;
  *out = v * mult;
  return true;
}

/* Read References: the files of the package. */
static int
read_references (struct ovf *o, xmlNodePtr env)
{
  xmlNodePtr refs = vm_xml_child (env, "References"), f;

  for (f = refs ? vm_xml_child (refs, "File") : NULL; f;
       f = vm_xml_next (f, "File")) {
    struct ovf_file *nf;
    const char *id = vm_xml_attr (f, "id"), *href = vm_xml_attr (f, "href");

    if (id == NULL || href == NULL || *href == '\0')
      return ferry_error (EINVAL, "%s: References: a File without ovf:id "
                          "or ovf:href (line %d)", o->name, f->line);
    /* Files are named relative to the descriptor (OVF 1.x and 2.0 say
     * so): one named outside the package's folder is not its own. */
    if (href[0] == '/' || vm_name_has_dotdot (href))
      return ferry_error (EPERM, "%s: References: file %s is named '%s', "
                          "which leaves the package's folder (an OVF names "
                          "its files relative to itself)", o->name, id, href);
    if (vm_xml_attr (f, "chunkSize"))
      return ferry_error (ENOTSUP, "%s: References: file %s is split in "
                          "chunks (ovf:chunkSize), which ferry does not "
                          "read", o->name, id);
    if (o->nr_files >= VM_MAX_DEVICES)
      return ferry_error (E2BIG, "%s: References: more than %u files",
                          o->name, VM_MAX_DEVICES);
    nf = realloc (o->files, (o->nr_files + 1) * sizeof *nf);
    if (nf == NULL)
      return ferry_error (ENOMEM, "out of memory");
    o->files = nf;
    o->files[o->nr_files++] = (struct ovf_file) {
      .id = id, .href = href, .compression = vm_xml_attr (f, "compression"),
    };
  }
  return 0;
}

/* The file whose ovf:id is ID, or NULL. */
static struct ovf_file *
find_file (struct ovf *o, const char *id)
{
  size_t i;

  for (i = 0; i < o->nr_files; i++)
    if (strcmp (o->files[i].id, id) == 0)
      return &o->files[i];
  return NULL;
}

/* Read DiskSection: each disk's file, capacity and format. */
static int
read_disks (struct ovf *o, xmlNodePtr env)
{
  xmlNodePtr sec = find_section (env, "DiskSection"), d;

  for (d = sec ? vm_xml_child (sec, "Disk") : NULL; d;
       d = vm_xml_next (d, "Disk")) {
    struct ovf_disk *nd, disk = { 0 };
    const char *cap = vm_xml_attr (d, "capacity");
    const char *pop = vm_xml_attr (d, "populatedSize");
    uint64_t v;

    disk.id = vm_xml_attr (d, "diskId");
    disk.file_ref = vm_xml_attr (d, "fileRef");
    disk.format = vm_xml_attr (d, "format");
    if (disk.id == NULL)
      return ferry_error (EINVAL, "%s: DiskSection: a Disk without "
                          "ovf:diskId (line %d)", o->name, d->line);
    if (cap == NULL)
      return ferry_error (EINVAL, "%s: DiskSection: disk %s has no "
                          "ovf:capacity", o->name, disk.id);
    if (!vm_parse_u64 (cap, &v)) {
      if (strspn (cap, "0123456789") == strlen (cap))
        return ferry_error (ERANGE, "%s: DiskSection: disk %s: capacity %s "
                            "is out of range", o->name, disk.id, cap);
      /* "${disk.size}": a property the deployer sets; unknown here. */
      if (vm_note (o->vm, "disk %s: capacity '%s' is not a number",
                   disk.id, cap) == -1)
        return -1;
    }
    else if (!apply_units (vm_xml_attr (d, "capacityAllocationUnits"), 1, v,
                           &disk.capacity)) {
      const char *u = vm_xml_attr (d, "capacityAllocationUnits");
      uint64_t one;
      if (apply_units (u, 1, 1, &one))
        return ferry_error (ERANGE, "%s: DiskSection: disk %s: capacity %s "
                            "of '%s' is out of range", o->name, disk.id, cap,
                            u);
      return ferry_error (EINVAL, "%s: DiskSection: disk %s: unknown "
                          "capacityAllocationUnits '%s'", o->name, disk.id, u);
    }
    if (pop && vm_parse_u64 (pop, &v))
      disk.populated = v;
    if (o->nr_disks >= VM_MAX_DEVICES)
      return ferry_error (E2BIG, "%s: DiskSection: more than %u disks",
                          o->name, VM_MAX_DEVICES);
    nd = realloc (o->disks, (o->nr_disks + 1) * sizeof *nd);
    if (nd == NULL)
      return ferry_error (ENOMEM, "out of memory");
    o->disks = nd;
    o->disks[o->nr_disks++] = disk;
  }
  return 0;
}

/* The disk whose ovf:diskId is ID, or NULL. */
static struct ovf_disk *
find_disk (struct ovf *o, const char *id)
{
  size_t i;

  for (i = 0; i < o->nr_disks; i++)
    if (strcmp (o->disks[i].id, id) == 0)
      return &o->disks[i];
  return NULL;
}

/* The deployment configuration: the one marked default, or the first. */
static void
find_configuration (struct ovf *o, xmlNodePtr env)
{
  xmlNodePtr sec = find_section (env, "DeploymentOptionSection"), c;
  const char *def = NULL, *first = NULL;

  for (c = sec ? vm_xml_child (sec, "Configuration") : NULL; c;
       c = vm_xml_next (c, "Configuration")) {
    const char *id = vm_xml_attr (c, "id"), *d = vm_xml_attr (c, "default");
    if (id == NULL)
      continue;
    if (first == NULL)
      first = id;
    if (d && (strcmp (d, "true") == 0 || strcmp (d, "1") == 0) && !def)
      def = id;
  }
  o->config = def ? def : first;
}

/* True when the item NODE applies to the chosen configuration: it names
 * none, or names it among its space-separated list. */
static bool
item_applies (struct ovf *o, xmlNodePtr node)
{
  const char *list = vm_xml_attr (node, "configuration"), *p;
  size_t n;

  if (list == NULL || *list == '\0')
    return true;
  if (o->config == NULL)
    return false;
  n = strlen (o->config);
  for (p = list; *p; ) {
    size_t len;
    while (*p == ' ')
      p++;
    len = strcspn (p, " ");
    if (len == n && strncmp (p, o->config, n) == 0)
      return true;
    p += len;
  }
  return false;
}

static void
free_item (struct ovf_item *it)
{
  free (it->instance_id);
  free (it->subtype);
  free (it->quantity);
  free (it->units);
  free (it->parent);
  free (it->address_on_parent);
  free (it->address);
  free (it->host_resource);
  free (it->connection);
  free (it->name);
}

/* Read the fields of the item NODE into IT. */
static int
parse_item (struct ovf *o, xmlNodePtr node, struct ovf_item *it)
{
  CLEANUP_FREE char *type = NULL;
  char *end;

  it->node = node;
  it->index = -1;
  it->instance_id = vm_xml_child_text (node, "InstanceID");
  if (it->instance_id == NULL)
    it->instance_id = vm_xml_child_text (node, "InstanceId");
  type = vm_xml_child_text (node, "ResourceType");
  it->subtype = vm_xml_child_text (node, "ResourceSubType");
  it->quantity = vm_xml_child_text (node, "VirtualQuantity");
  it->units = vm_xml_child_text (node, "AllocationUnits");
  it->parent = vm_xml_child_text (node, "Parent");
  it->address_on_parent = vm_xml_child_text (node, "AddressOnParent");
  it->address = vm_xml_child_text (node, "Address");
  it->host_resource = vm_xml_child_text (node, "HostResource");
  it->connection = vm_xml_child_text (node, "Connection");
  it->name = vm_xml_child_text (node, "ElementName");
  if (it->name == NULL)
    it->name = vm_xml_child_text (node, "Caption");
  if (it->instance_id == NULL)
    return ferry_error (EINVAL, "%s: VirtualHardwareSection: the item at "
                        "line %d has no InstanceID", o->name, node->line);
  if (type == NULL)
    return ferry_error (EINVAL, "%s: VirtualHardwareSection: item %s has "
                        "no ResourceType", o->name, it->instance_id);
  errno = 0;
  it->type = strtoul (type, &end, 10);
  if (errno || end == type || *end)
    return ferry_error (EINVAL, "%s: VirtualHardwareSection: item %s: "
                        "ResourceType '%s' is not a number", o->name,
                        it->instance_id, type);
  return 0;
}

/* Collect the items of the hardware section HW that apply, the last one
 * of each InstanceID winning. */
static int
read_items (struct ovf *o, xmlNodePtr hw)
{
  xmlNodePtr c;
  size_t i;

  for (c = hw->children; c; c = c->next) {
    struct ovf_item it = { 0 }, *ni;

    if (!vm_xml_is (c, "Item") && !vm_xml_is (c, "StorageItem") &&
        !vm_xml_is (c, "EthernetPortItem"))
      continue;
    if (!item_applies (o, c))
      continue;
    if (parse_item (o, c, &it) == -1) {
      free_item (&it);
      return -1;
    }
    for (i = 0; i < o->nr_items; i++) {
      if (strcmp (o->items[i].instance_id, it.instance_id) == 0) {
        free_item (&o->items[i]);
        o->items[i] = it;
        break;
      }
    }
    if (i < o->nr_items)
      continue;
    if (o->nr_items >= 4 * VM_MAX_DEVICES) {
      free_item (&it);
      return ferry_error (E2BIG, "%s: VirtualHardwareSection: more than %u "
                          "items", o->name, 4 * VM_MAX_DEVICES);
    }
    ni = realloc (o->items, (o->nr_items + 1) * sizeof *ni);
    if (ni == NULL) {
      free_item (&it);
      return ferry_error (ENOMEM, "out of memory");
    }
    o->items = ni;
    o->items[o->nr_items++] = it;
  }
  return 0;
}

/* The item whose InstanceID is ID, or NULL. */
static struct ovf_item *
find_item (struct ovf *o, const char *id)
{
  size_t i;

  for (i = 0; i < o->nr_items; i++)
    if (strcmp (o->items[i].instance_id, id) == 0)
      return &o->items[i];
  return NULL;
}

/* Which bus a storage controller item drives (FERRY_VM_BUS_UNKNOWN when
 * the item is not one). */
static enum ferry_vm_bus
controller_bus (const struct ovf_item *it)
{
  const char *s = it->subtype ? it->subtype : "";

  switch (it->type) {
  case RT_IDE: return FERRY_VM_BUS_IDE;
  case RT_SCSI: return FERRY_VM_BUS_SCSI;
  case RT_OTHER_STORAGE:
    if (strcasestr (s, "nvme"))
      return FERRY_VM_BUS_NVME;
    if (strcasestr (s, "ahci") || strcasestr (s, "sata"))
      return FERRY_VM_BUS_SATA;
    if (strcasestr (s, "virtio"))
      return FERRY_VM_BUS_VIRTIO;
    return FERRY_VM_BUS_SATA;     /* what "other storage" means in practice */
  default: return FERRY_VM_BUS_UNKNOWN;
  }
}

/* Number the controllers of each bus: by their Address where it is a
 * number, else in the order they come. */
static void
number_controllers (struct ovf *o)
{
  int next[FERRY_VM_BUS_USB + 1] = { 0 };
  size_t i;

  for (i = 0; i < o->nr_items; i++) {
    struct ovf_item *it = &o->items[i];
    uint64_t a;

    it->bus = controller_bus (it);
    if (it->bus == FERRY_VM_BUS_UNKNOWN)
      continue;
    if (it->address && vm_parse_u64 (it->address, &a) && a < 64)
      it->index = a;
    else
      it->index = next[it->bus];
    if (it->index >= next[it->bus])
      next[it->bus] = it->index + 1;
  }
}

/* The value of vmw:Config or vmw:ExtraConfig KEY among NODE's children,
 * or NULL. */
static const char *
vmw_config (xmlNodePtr node, const char *key)
{
  xmlNodePtr c;

  for (c = node ? node->children : NULL; c; c = c->next) {
    const char *k;
    if (!vm_xml_is (c, "Config") && !vm_xml_is (c, "ExtraConfig"))
      continue;
    k = vm_xml_attr (c, "key");
    if (k && strcmp (k, key) == 0)
      return vm_xml_attr (c, "value");
  }
  return NULL;
}

/* The id in a HostResource "ovf:/disk/ID" (KIND "disk") or "ovf:/file/ID"
 * (KIND "file"), or NULL when it is not of that kind. */
static const char *
host_resource_id (const char *res, const char *kind)
{
  size_t n = strlen (kind);

  if (res == NULL)
    return NULL;
  if (strncmp (res, "ovf:", 4) == 0)
    res += 4;
  while (*res == '/')
    res++;
  if (strncmp (res, kind, n) != 0 || res[n] != '/')
    return NULL;
  return res + n + 1;
}

/* Set the controller, bus and unit of a device item IT into *BUS,
 * *CONTROLLER, *UNIT and *MODEL. */
static int
attach (struct ovf *o, const struct ovf_item *it, enum ferry_vm_bus *bus,
        int *controller, int *unit, char **model)
{
  const struct ovf_item *p;
  uint64_t a;

  if (it->address_on_parent && vm_parse_u64 (it->address_on_parent, &a) &&
      a < 1024)
    *unit = a;
  if (it->parent == NULL)
    return 0;
  p = find_item (o, it->parent);
  if (p == NULL || p->bus == FERRY_VM_BUS_UNKNOWN)
    return ferry_error (EINVAL, "%s: VirtualHardwareSection: item %s (%s) "
                        "names Parent %s, which is %s", o->name,
                        it->instance_id, it->name ? it->name : "a device",
                        it->parent,
                        p ? "not a storage controller" : "no item");
  *bus = p->bus;
  *controller = p->index;
  return model && p->subtype ? vm_set (model, p->subtype) : 0;
}

/* Set what the disk format URI FORMAT says into D ("...vmdk.html#
 * streamOptimized" is vmdk, subformat streamOptimized). */
static int
disk_format (struct ovf *o, struct ferry_vm_disk *d, const char *format)
{
  const char *hash;

  if (format == NULL)
    return 0;
  hash = strchr (format, '#');
  if (strcasestr (format, "vmdk") || strcasestr (format, "vmware.com")) {
    if (vm_set (&d->format, "vmdk") == -1)
      return -1;
    return hash ? vm_set (&d->subformat, hash + 1) : 0;
  }
  if (strcasestr (format, "qcow"))
    return vm_set (&d->format, "qcow2");
  if (strcasestr (format, "vhdx"))
    return vm_set (&d->format, "vhdx");
  if (strcasestr (format, "vhd") || strcasestr (format, "bb676673"))
    return vm_set (&d->format, "vhd");
  if (strcasestr (format, "vdi") || strcasestr (format, "virtualbox"))
    return vm_set (&d->format, "vdi");
  if (strcasestr (format, "raw"))
    return vm_set (&d->format, "raw");
  return vm_note (o->vm, "disk %s: unknown format '%s'; it is probed",
                  d->id ? d->id : "?", format);
}

/* Make D's file the References file F: its name, its path, its
 * compression. */
static int
set_disk_file (struct ovf *o, struct ferry_vm_disk *d,
               const struct ovf_file *f)
{
  if (vm_set (&d->file, f->href) == -1)
    return -1;
  d->path = vm_path_join (o->dir, f->href);
  if (d->path == NULL)
    return ferry_error (ENOMEM, "out of memory");
  if (f->compression && strcmp (f->compression, "identity") != 0) {
    if (strcmp (f->compression, "gzip") != 0)
      return ferry_error (ENOTSUP, "%s: References: file %s: compression "
                          "'%s' (ferry reads gzip)", o->name, f->id,
                          f->compression);
    d->compression = FERRY_VM_COMPRESSION_GZIP;
  }
  return 0;
}

/* Make the model's disk for the DiskSection disk OD. */
static struct ferry_vm_disk *
add_disk (struct ovf *o, struct ovf_disk *od)
{
  struct ferry_vm_disk *d = vm_add_disk (o->vm);
  struct ovf_file *f = NULL;

  if (d == NULL)
    return NULL;
  od->used = true;
  if (vm_set (&d->id, od->id) == -1)
    return NULL;
  d->capacity = od->capacity;
  d->populated = od->populated;
  if (od->file_ref == NULL || *od->file_ref == '\0') {
    /* A blank disk the deployer makes: nothing to migrate from. */
    d->flags |= FERRY_VM_DISK_NO_FILE;
    return d;
  }
  f = find_file (o, od->file_ref);
  if (f == NULL) {
    ferry_error (EINVAL, "%s: DiskSection: disk %s names file %s, which "
                 "References does not list", o->name, od->id, od->file_ref);
    return NULL;
  }
  f->used = true;
  if (set_disk_file (o, d, f) == -1 || disk_format (o, d, od->format) == -1)
    return NULL;
  return d;
}

/* The disk of the item IT whose HostResource is "ovf:/file/FID": the file
 * itself is the disk (DSP0243 lets a disk drive name a File of References
 * as well as a Disk of DiskSection; VMware VirtualCenter exports do).
 * Nothing declares its format or capacity: the image is probed and
 * measured when it is opened.  A DiskSection disk on the same file is
 * that disk. */
static struct ferry_vm_disk *
add_file_disk (struct ovf *o, const struct ovf_item *it, const char *fid)
{
  struct ovf_file *f = find_file (o, fid);
  struct ferry_vm_disk *d;
  size_t i;

  if (f == NULL) {
    ferry_error (EINVAL, "%s: item %s (%s): HostResource '%s' names no "
                 "file of References", o->name, it->instance_id,
                 it->name ? it->name : "disk", it->host_resource);
    return NULL;
  }
  for (i = 0; i < o->nr_disks; i++)
    if (o->disks[i].file_ref && strcmp (o->disks[i].file_ref, fid) == 0 &&
        !o->disks[i].used)
      return add_disk (o, &o->disks[i]);
  if (f->used) {
    ferry_error (EINVAL, "%s: item %s: file %s is attached twice", o->name,
                 it->instance_id, f->id);
    return NULL;
  }
  f->used = true;
  d = vm_add_disk (o->vm);
  if (d == NULL || vm_set (&d->id, f->id) == -1 ||
      set_disk_file (o, d, f) == -1)
    return NULL;
  return d;
}

/* Turn the items into the model's CPUs, memory and devices. */
static int
build_hardware (struct ovf *o, xmlNodePtr hw)
{
  struct ferry_vm *vm = o->vm;
  size_t i;

  number_controllers (o);
  for (i = 0; i < o->nr_items; i++) {
    struct ovf_item *it = &o->items[i];
    uint64_t q = 0;

    switch (it->type) {
    case RT_PROCESSOR: {
      CLEANUP_FREE char *cps = vm_xml_child_text (it->node, "CoresPerSocket");
      uint64_t c;
      if (!vm_parse_u64 (it->quantity, &q) || q == 0 || q > 4096)
        return ferry_error (EINVAL, "%s: item %s: VirtualQuantity '%s' is "
                            "not a CPU count", o->name, it->instance_id,
                            it->quantity ? it->quantity : "");
      vm->vcpus = q;
      if (cps && vm_parse_u64 (cps, &c) && c > 0 && c <= q && q % c == 0) {
        vm->cores = c;
        vm->sockets = q / c;
        vm->threads = 1;
      }
      break;
    }
    case RT_MEMORY:
      if (!vm_parse_u64 (it->quantity, &q) ||
          !apply_units (it->units, UINT64_C (1) << 20, q, &vm->memory))
        return ferry_error (EINVAL, "%s: item %s: memory '%s %s' is not a "
                            "size", o->name, it->instance_id,
                            it->quantity ? it->quantity : "",
                            it->units ? it->units : "");
      break;
    case RT_IDE: case RT_SCSI: case RT_OTHER_STORAGE:
      break;                    /* read through the devices on them */
    case RT_DISK: {
      const char *id = host_resource_id (it->host_resource, "disk");
      const char *fid = host_resource_id (it->host_resource, "file");
      struct ovf_disk *od = id ? find_disk (o, id) : NULL;
      struct ferry_vm_disk *d;
      if (fid)
        d = add_file_disk (o, it, fid);
      else if (od == NULL)
        return ferry_error (EINVAL, "%s: item %s (%s): HostResource '%s' "
                            "names no disk of DiskSection", o->name,
                            it->instance_id, it->name ? it->name : "disk",
                            it->host_resource ? it->host_resource : "");
      else if (od->used)
        return ferry_error (EINVAL, "%s: item %s: disk %s is attached "
                            "twice", o->name, it->instance_id, od->id);
      else
        d = add_disk (o, od);
      if (d == NULL ||
          attach (o, it, &d->bus, &d->controller, &d->unit,
                  &d->controller_model) == -1)
        return -1;
      break;
    }
    case RT_CD: case RT_DVD: {
      struct ferry_vm_cdrom *c = vm_add_cdrom (vm);
      const char *fid = host_resource_id (it->host_resource, "file");
      if (c == NULL || attach (o, it, &c->bus, &c->controller, &c->unit,
                               NULL) == -1)
        return -1;
      if (fid) {
        const struct ovf_file *f = find_file (o, fid);
        if (f == NULL)
          return ferry_error (EINVAL, "%s: item %s: HostResource '%s' names "
                              "no file of References", o->name,
                              it->instance_id, it->host_resource);
        if (vm_set (&c->image, f->href) == -1)
          return -1;
      }
      break;
    }
    case RT_ETHERNET: {
      struct ferry_vm_nic *n = vm_add_nic (vm);
      char mac[18];
      if (n == NULL || vm_set (&n->network, it->connection) == -1 ||
          vm_set (&n->model, it->subtype) == -1 ||
          vm_set (&n->id, it->name) == -1)
        return -1;
      if (it->address && vm_mac_normalize (it->address, mac) &&
          vm_set (&n->mac, mac) == -1)
        return -1;
      break;
    }
    case RT_GRAPHICS: {
      const char *kb = vmw_config (it->node, "videoRamSizeInKB");
      uint64_t v;
      if (vm_set (&vm->video, it->subtype ? it->subtype :
                  vm->producer && !strcmp (vm->producer, "VMware") ?
                  "vmware-svga" : "vga") == -1)
        return -1;
      if (kb && vm_parse_u64 (kb, &v) && v < (UINT64_C (1) << 40))
        vm->video_ram = v << 10;
      break;
    }
    case RT_FLOPPY: case RT_SERIAL: case RT_PARALLEL: case RT_USB:
    case RT_SOUND: case RT_OTHER:
      if (vm_note (vm, "item %s (%s): not migrated", it->instance_id,
                   it->name ? it->name : "device") == -1)
        return -1;
      break;
    default:
      if (vm_note (vm, "item %s (%s): ResourceType %lu is not one ferry "
                   "knows; not migrated", it->instance_id,
                   it->name ? it->name : "device", it->type) == -1)
        return -1;
    }
  }

  /* Firmware and secure boot, VMware's way. */
  {
    const char *fw = vmw_config (hw, "firmware");
    const char *sb = vmw_config (hw, "uefi.secureBoot.enabled");
    if (sb == NULL)
      sb = vmw_config (hw, "bootOptions.efiSecureBootEnabled");
    if (fw && strcasecmp (fw, "efi") == 0)
      vm->firmware = FERRY_VM_FIRMWARE_UEFI;
    else if (fw && strcasecmp (fw, "bios") == 0)
      vm->firmware = FERRY_VM_FIRMWARE_BIOS;
    if (sb && strcasecmp (sb, "true") == 0)
      vm->secure_boot = true;
  }
  return 0;
}

/* The first VirtualSystem under NODE (depth first, through collections),
 * and how many there are in *COUNT. */
static xmlNodePtr
find_virtual_system (xmlNodePtr node, unsigned *count, unsigned depth)
{
  xmlNodePtr c, found = NULL;

  if (depth > 8)
    return NULL;
  for (c = node->children; c; c = c->next) {
    xmlNodePtr f;
    if (c->type != XML_ELEMENT_NODE)
      continue;
    if (is_section (c, "VirtualSystem")) {
      (*count)++;
      if (found == NULL)
        found = c;
    }
    else if (is_section (c, "VirtualSystemCollection") &&
             (f = find_virtual_system (c, count, depth + 1)) && !found)
      found = f;
  }
  return found;
}

/* Read the version of the envelope ENV into the model. */
static int
read_version (struct ovf *o, xmlNodePtr env)
{
  const char *v = vm_xml_attr (env, "version");
  const char *ns = env->ns && env->ns->href ? (const char *) env->ns->href
    : "";

  if (v == NULL) {
    if (strstr (ns, "vmware.com/schema/ovf/1/envelope"))
      v = "0.9";
    else if (strstr (ns, "ovf/envelope/2"))
      v = "2.0";
    else
      v = "1.0";
  }
  return vm_set (&o->vm->source_version, v);
}

/* Read the operating system section OS. */
static int
read_os (struct ovf *o, xmlNodePtr os)
{
  CLEANUP_FREE char *desc = vm_xml_child_text (os, "Description");
  CLEANUP_FREE char *vbox = vm_xml_child_text (os, "OSType");
  const char *vmw = vm_xml_attr (os, "osType");
  const char *id = vm_xml_attr (os, "id");

  if (vm_set (&o->vm->os_description, desc) == -1)
    return -1;
  if (vmw)
    return vm_set (&o->vm->os_type, vmw);
  if (vbox)
    return vm_set (&o->vm->os_type, vbox);
  if (desc && *desc)
    return vm_set (&o->vm->os_type, desc);
  if (id)
    return vm_setf (&o->vm->os_type, "cim-%s", id);
  return 0;
}

/* Read the whole envelope ENV into O->vm. */
static int
read_envelope (struct ovf *o, xmlNodePtr env)
{
  struct ferry_vm *vm = o->vm;
  xmlNodePtr vs, hw, os, sys, machine;
  CLEANUP_FREE char *name = NULL, *systype = NULL;
  unsigned count = 0;
  size_t i;

  if (read_version (o, env) == -1 || read_references (o, env) == -1 ||
      read_disks (o, env) == -1)
    return -1;
  find_configuration (o, env);

  vs = find_virtual_system (env, &count, 0);
  if (vs == NULL)
    return ferry_error (EINVAL, "%s: the envelope holds no VirtualSystem",
                        o->name);
  if (count > 1 &&
      vm_note (vm, "the package holds %u virtual machines; the first, %s, "
               "is read", count, vm_xml_attr (vs, "id") ?
               vm_xml_attr (vs, "id") : "unnamed") == -1)
    return -1;

  hw = find_section (vs, "VirtualHardwareSection");
  if (hw == NULL)
    return ferry_error (EINVAL, "%s: VirtualSystem %s has no "
                        "VirtualHardwareSection", o->name,
                        vm_xml_attr (vs, "id") ? vm_xml_attr (vs, "id") : "");
  sys = vm_xml_child (hw, "System");
  systype = sys ? vm_xml_child_text (sys, "VirtualSystemType") : NULL;
  machine = vm_xml_child (vs, "Machine");
  if ((systype && strstr (systype, "virtualbox")) || machine) {
    if (vm_set (&vm->producer, "VirtualBox") == -1)
      return -1;
  }
  else if ((systype && strstr (systype, "vmx-")) ||
           vm_xml_attr (env, "buildId") ||
           strstr (o->vm->source_version, "0.9")) {
    if (vm_set (&vm->producer, "VMware") == -1)
      return -1;
  }

  name = vm_xml_child_text (vs, "Name");
  if (vm_set (&vm->name, name && *name ? name : vm_xml_attr (vs, "id")) == -1)
    return -1;
  os = find_section (vs, "OperatingSystemSection");
  if (os && read_os (o, os) == -1)
    return -1;

  if (read_items (o, hw) == -1 || build_hardware (o, hw) == -1)
    return -1;

  /* Disks DiskSection lists that no item attaches: migrated all the
   * same, with their bus left to the target. */
  for (i = 0; i < o->nr_disks; i++) {
    if (o->disks[i].used)
      continue;
    if (add_disk (o, &o->disks[i]) == NULL ||
        vm_note (vm, "disk %s is attached to no controller", o->disks[i].id)
        == -1)
      return -1;
  }

  if (machine && vm_vbox_machine (vm, o->name, machine, o->dir, true) == -1)
    return -1;
  return 0;
}

struct ferry_vm *
vm_ovf_parse (const char *name, const char *dir, const char *text, size_t len)
{
  struct ovf o = { .name = name, .dir = dir };
  xmlDocPtr doc;
  xmlNodePtr root;
  size_t i;
  int r = -1;

  doc = vm_xml_parse (name, text, len);
  if (doc == NULL)
    return NULL;
  root = xmlDocGetRootElement (doc);
  if (!vm_xml_is (root, "Envelope")) {
    ferry_error (EINVAL, "%s: not an OVF descriptor: the root element is "
                 "<%s>, not <Envelope>", name, (const char *) root->name);
    goto out;
  }
  o.vm = vm_new (name, "ovf");
  if (o.vm == NULL)
    goto out;
  r = read_envelope (&o, root);

 out:
  for (i = 0; i < o.nr_items; i++)
    free_item (&o.items[i]);
  free (o.items);
  free (o.files);
  free (o.disks);
  xmlFreeDoc (doc);
  if (r == -1) {
    ferry_vm_free (o.vm);
    return NULL;
  }
  return o.vm;
}

struct ferry_vm *
ferry_vm_read_ovf (const char *name, const char *dir, const char *text,
                   size_t len)
{
  return vm_ovf_parse (name, dir, text, len);
}
