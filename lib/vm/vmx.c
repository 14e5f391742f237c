/* VMware .vmx configuration files into the VM model.
 *
 * A VMX is lines of `key = "value"` (keys case-insensitive, "|22"-style
 * escapes in values, '#' comments).  Read: displayName, guestOS, memSize,
 * numvcpus and cpuid.coresPerSocket, firmware and
 * uefi.secureBoot.enabled, svga; the IDE, SCSI (with scsiN.virtualDev),
 * SATA and NVMe controllers that are present and the devices on them
 * (BUSn:m.present, .fileName, .deviceType, .mode): disks and CD-ROMs;
 * ethernetN with its virtualDev, networkName (or connectionType) and MAC
 * (generatedAddress or address, as addressType says).  Each disk's VMDK
 * descriptor is read when the file is there, by the VMDK driver's parser
 * (<ferry/vmdk.h>): a parent makes it a snapshot, an RDM or encryption is
 * flagged.  Keys "encryption.*" in
 * the VMX mean every disk is encrypted.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ferry/vmdk.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* The most lines a VMX may have: real ones have hundreds. */
#define MAX_LINES 100000

struct vmx_pair {
  char *key;                   /* lower case */
  char *value;                 /* unquoted, unescaped */
};

struct vmx {
  const char *name;
  struct vmx_pair *pairs;
  size_t nr_pairs;
};

static void
vmx_free (struct vmx *x)
{
  size_t i;

  for (i = 0; i < x->nr_pairs; i++) {
    free (x->pairs[i].key);
    free (x->pairs[i].value);
  }
  free (x->pairs);
}

/* The value of KEY (any case), the last one given, or NULL. */
static const char *
get (const struct vmx *x, const char *key)
{
  size_t i = x->nr_pairs;

  while (i-- > 0)
    if (strcasecmp (x->pairs[i].key, key) == 0)
      return x->pairs[i].value;
  return NULL;
}

/* The value of the key printf'd from FMT, or NULL. */
static const char *
getf (const struct vmx *x, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
static const char *
getf (const struct vmx *x, const char *fmt, ...)
{
  char key[128];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (key, sizeof key, fmt, ap);
  va_end (ap);
  return get (x, key);
}

/* True when VALUE is VMware's true. */
static bool
is_true (const char *value)
{
  return value && (!strcasecmp (value, "TRUE") || !strcasecmp (value, "yes")
                   || !strcmp (value, "1"));
}

/* Decode the value in [P, END) (quotes removed, "|XX" escapes decoded)
 * into a new string. */
static char *
decode_value (const char *p, const char *end)
{
  char *s, *q;

  vm_trim_value (&p, &end);
  s = malloc (end - p + 1);
  if (s == NULL)
    return NULL;
  for (q = s; p < end; p++) {
    if (*p == '|' && end - p >= 3 && isxdigit ((unsigned char) p[1]) &&
        isxdigit ((unsigned char) p[2])) {
      char hex[3] = { p[1], p[2], 0 };
      char c = (char) strtoul (hex, NULL, 16);
      if (c != '\0')
        *q++ = c;
      p += 2;
    }
    else
      *q++ = *p;
  }
  *q = '\0';
  return s;
}

/* Split TEXT into key/value pairs. */
static int
parse_lines (struct vmx *x, const char *text, size_t len)
{
  const char *p = text, *end = text + len;
  unsigned lineno = 0;

  if (memchr (text, '\0', len))
    return ferry_error (EINVAL, "%s: not a VMX file (it holds NUL bytes)",
                        x->name);
  while (p < end) {
    const char *nl = memchr (p, '\n', end - p), *eol = nl ? nl : end;
    const char *eq, *k, *kend;
    struct vmx_pair *np, pair;

    lineno++;
    k = p;
    p = nl ? nl + 1 : end;
    while (k < eol && (*k == ' ' || *k == '\t'))
      k++;
    if (k == eol || *k == '#' || *k == '\r')
      continue;
    eq = memchr (k, '=', eol - k);
    if (eq == NULL)
      return ferry_error (EINVAL, "%s: line %u: not of the form "
                          "key = \"value\"", x->name, lineno);
    kend = eq;
    while (kend > k && (kend[-1] == ' ' || kend[-1] == '\t'))
      kend--;
    if (kend == k)
      return ferry_error (EINVAL, "%s: line %u: a value without a key",
                          x->name, lineno);
    if (x->nr_pairs >= MAX_LINES)
      return ferry_error (E2BIG, "%s: more than %u settings", x->name,
                          MAX_LINES);
    pair.key = strndup (k, kend - k);
    pair.value = decode_value (eq + 1, eol);
    np = realloc (x->pairs, (x->nr_pairs + 1) * sizeof *np);
    if (pair.key == NULL || pair.value == NULL || np == NULL) {
      free (pair.key);
      free (pair.value);
      if (np)
        x->pairs = np;
      return ferry_error (ENOMEM, "out of memory");
    }
    x->pairs = np;
    x->pairs[x->nr_pairs++] = pair;
  }
  return 0;
}

/* The device key prefixes of each bus, in the order ferry lists them. */
static const struct {
  const char *prefix;
  enum ferry_vm_bus bus;
  int max_controllers, max_units;
} buses[] = {
  { "ide", FERRY_VM_BUS_IDE, 2, 2 },
  { "scsi", FERRY_VM_BUS_SCSI, 4, 64 },
  { "sata", FERRY_VM_BUS_SATA, 4, 30 },
  { "nvme", FERRY_VM_BUS_NVME, 4, 64 },
};

/* One device found: its place, and the position of its first key in the
 * file, which orders the disks as the VMX lists them. */
struct vmx_device {
  size_t first;
  int bus, controller, unit;
};

/* Compare devices by where they first appear. */
static int
device_order (const void *a, const void *b)
{
  const struct vmx_device *x = a, *y = b;

  return x->first < y->first ? -1 : x->first > y->first;
}

/* Parse "PREFIXn:m.rest" at KEY: set *CONTROLLER, *UNIT; false if not. */
static bool
device_key (const char *key, const char *prefix, int *controller, int *unit)
{
  size_t n = strlen (prefix);
  char *end;
  long c, u;

  if (strncasecmp (key, prefix, n) != 0 || !isdigit ((unsigned char) key[n]))
    return false;
  c = strtol (key + n, &end, 10);
  if (*end != ':' || !isdigit ((unsigned char) end[1]))
    return false;
  u = strtol (end + 1, &end, 10);
  if (*end != '.' || c > 64 || u > 1024)
    return false;
  *controller = c;
  *unit = u;
  return true;
}

/* Fill the disk D from its VMDK descriptor, if the file is there, as the
 * VMDK driver reads it (<ferry/vmdk.h>).  A descriptor that does not read
 * is a note here: the plan opens the disk, and refuses it saying why. */
static int
read_descriptor (struct ferry_vm *vm, struct ferry_vm_disk *d)
{
  struct ferry_vmdk_descriptor desc;
  size_t i;
  int r;

  if (access (d->path, F_OK) != 0)
    return 0;                   /* the checks report a missing file */
  r = ferry_vmdk_read_descriptor (d->path, &desc);
  if (r == -1)
    return vm_note (vm, "disk %s: %s", d->id, ferry_get_error ());
  if (r == 0)
    return 0;
  if (desc.create_type && vm_set (&d->subformat, desc.create_type) == -1)
    goto err;
  if (desc.parent_hint) {
    d->flags |= FERRY_VM_DISK_SNAPSHOT;
    vm->has_snapshots = true;
  }
  if (desc.raw_device)
    d->flags |= FERRY_VM_DISK_RDM;
  if (desc.encrypted)
    d->flags |= FERRY_VM_DISK_ENCRYPTED;
  if (desc.capacity && !d->capacity)
    d->capacity = desc.capacity;
  for (i = 0; i < desc.nr_extents; i++) {
    const char *p = desc.extents[i].path;
    if (p && strcmp (p, d->path) != 0 && access (p, F_OK) != 0 &&
        !desc.raw_device &&
        vm_note (vm, "disk %s: extent file %s is missing", d->id, p) == -1)
      goto err;
  }
  ferry_vmdk_descriptor_free (&desc);
  return 0;

 err:
  ferry_vmdk_descriptor_free (&desc);
  return -1;
}

/* Read the disks and CD-ROMs of every present controller. */
static int
read_devices (struct ferry_vm *vm, const struct vmx *x, const char *dir)
{
  CLEANUP_FREE struct vmx_device *devs = NULL;
  size_t nr = 0, i, j;
  bool encrypted = get (x, "encryption.keySafe") || get (x, "encryption.data");

  /* Every device key, once per device, in file order. */
  for (i = 0; i < x->nr_pairs; i++) {
    for (j = 0; j < sizeof buses / sizeof buses[0]; j++) {
      int c, u;
      size_t k;
      struct vmx_device *nd;

      if (!device_key (x->pairs[i].key, buses[j].prefix, &c, &u))
        continue;
      for (k = 0; k < nr; k++)
        if (devs[k].bus == (int) j && devs[k].controller == c &&
            devs[k].unit == u)
          break;
      if (k < nr)
        break;
      if (nr >= VM_MAX_DEVICES)
        return ferry_error (E2BIG, "%s: more than %u devices", vm->source,
                            VM_MAX_DEVICES);
      nd = realloc (devs, (nr + 1) * sizeof *nd);
      if (nd == NULL)
        return ferry_error (ENOMEM, "out of memory");
      devs = nd;
      devs[nr++] = (struct vmx_device) {
        .first = i, .bus = j, .controller = c, .unit = u,
      };
      break;
    }
  }
  if (nr > 1)
    qsort (devs, nr, sizeof *devs, device_order);

  for (i = 0; i < nr; i++) {
    const char *prefix = buses[devs[i].bus].prefix;
    int c = devs[i].controller, u = devs[i].unit;
    const char *file = getf (x, "%s%d:%d.fileName", prefix, c, u);
    const char *type = getf (x, "%s%d:%d.deviceType", prefix, c, u);
    const char *mode = getf (x, "%s%d:%d.mode", prefix, c, u);
    bool cdrom = type && (strcasestr (type, "cdrom") ||
                          strcasestr (type, "atapi"));

    if (!is_true (getf (x, "%s%d:%d.present", prefix, c, u)))
      continue;
    /* IDE controllers are always there; the others must be present. */
    if (devs[i].bus != 0 && !is_true (getf (x, "%s%d.present", prefix, c))) {
      if (vm_note (vm, "%s%d:%d: its controller %s%d is not present; "
                   "skipped", prefix, c, u, prefix, c) == -1)
        return -1;
      continue;
    }
    if (cdrom) {
      struct ferry_vm_cdrom *cd = vm_add_cdrom (vm);
      if (cd == NULL)
        return -1;
      cd->bus = buses[devs[i].bus].bus;
      cd->controller = c;
      cd->unit = u;
      if (file && type && strcasecmp (type, "cdrom-image") == 0 &&
          vm_set (&cd->image, file) == -1)
        return -1;
      continue;
    }
    if (file == NULL || *file == '\0') {
      if (vm_note (vm, "%s%d:%d: a device with no file; skipped", prefix, c,
                   u) == -1)
        return -1;
      continue;
    }
    {
      struct ferry_vm_disk *d = vm_add_disk (vm);
      if (d == NULL ||
          vm_setf (&d->id, "%s%d:%d", prefix, c, u) == -1 ||
          vm_set (&d->file, file) == -1 ||
          vm_set (&d->mode, mode) == -1 ||
          vm_set (&d->controller_model,
                  getf (x, "%s%d.virtualDev", prefix, c)) == -1)
        return -1;
      d->path = vm_path_join (dir, file);
      if (d->path == NULL)
        return ferry_error (ENOMEM, "out of memory");
      d->bus = buses[devs[i].bus].bus;
      d->controller = c;
      d->unit = u;
      if (vm_has_suffix (file, ".vmdk") && vm_set (&d->format, "vmdk") == -1)
        return -1;
      if (mode && strcasestr (mode, "independent"))
        d->flags |= FERRY_VM_DISK_INDEPENDENT;
      if (type && (!strcasecmp (type, "rawDisk") ||
                   !strcasecmp (type, "scsi-passthru")))
        d->flags |= FERRY_VM_DISK_RDM;
      if (encrypted)
        d->flags |= FERRY_VM_DISK_ENCRYPTED;
      if (d->format && read_descriptor (vm, d) == -1)
        return -1;
    }
  }
  return 0;
}

/* Read ethernetN for N up to 10 (VMware's limit). */
static int
read_nics (struct ferry_vm *vm, const struct vmx *x)
{
  int n;

  for (n = 0; n < 10; n++) {
    const char *atype = getf (x, "ethernet%d.addressType", n);
    const char *mac = atype && strcasecmp (atype, "static") == 0 ?
      getf (x, "ethernet%d.address", n) :
      getf (x, "ethernet%d.generatedAddress", n);
    const char *net = getf (x, "ethernet%d.networkName", n);
    const char *model = getf (x, "ethernet%d.virtualDev", n);
    struct ferry_vm_nic *nic;
    char norm[18];

    if (!is_true (getf (x, "ethernet%d.present", n)))
      continue;
    if (mac == NULL)
      mac = getf (x, "ethernet%d.address", n);
    if (net == NULL)
      net = getf (x, "ethernet%d.connectionType", n);
    nic = vm_add_nic (vm);
    if (nic == NULL || vm_setf (&nic->id, "ethernet%d", n) == -1 ||
        vm_set (&nic->network, net) == -1 ||
        vm_set (&nic->model, model ? model : "e1000") == -1)
      return -1;
    if (mac) {
      if (!vm_mac_normalize (mac, norm))
        return ferry_error (EINVAL, "%s: ethernet%d: '%s' is not a MAC "
                            "address", vm->source, n, mac);
      if (vm_set (&nic->mac, norm) == -1)
        return -1;
    }
  }
  return 0;
}

/* Fill VM from the settings of X. */
static int
build (struct ferry_vm *vm, const struct vmx *x, const char *dir)
{
  const char *s;
  uint64_t v;

  if (get (x, "config.version") == NULL && get (x, "virtualHW.version") == NULL
      && get (x, "displayName") == NULL && get (x, "guestOS") == NULL)
    return ferry_error (EINVAL, "%s: not a VMX file (no displayName, "
                        "guestOS, config.version or virtualHW.version)",
                        x->name);
  if (vm_set (&vm->producer, "VMware") == -1 ||
      vm_set (&vm->name, get (x, "displayName")) == -1 ||
      vm_set (&vm->os_type, get (x, "guestOS")) == -1 ||
      vm_set (&vm->source_version, get (x, "virtualHW.version")) == -1)
    return -1;
  if ((s = get (x, "memSize"))) {
    if (!vm_parse_u64 (s, &v) || v > (UINT64_C (1) << 30))
      return ferry_error (EINVAL, "%s: memSize '%s' is not a size in MiB",
                          x->name, s);
    vm->memory = v << 20;
  }
  vm->vcpus = 1;
  if ((s = get (x, "numvcpus"))) {
    if (!vm_parse_u64 (s, &v) || v == 0 || v > 4096)
      return ferry_error (EINVAL, "%s: numvcpus '%s' is not a CPU count",
                          x->name, s);
    vm->vcpus = v;
  }
  if ((s = get (x, "cpuid.coresPerSocket")) && vm_parse_u64 (s, &v) &&
      v > 0 && vm->vcpus % v == 0) {
    vm->cores = v;
    vm->sockets = vm->vcpus / v;
    vm->threads = 1;
  }
  s = get (x, "firmware");
  vm->firmware = s && strcasecmp (s, "efi") == 0 ? FERRY_VM_FIRMWARE_UEFI
    : FERRY_VM_FIRMWARE_BIOS;
  vm->secure_boot = is_true (get (x, "uefi.secureBoot.enabled"));
  if (is_true (get (x, "svga.present")) || get (x, "svga.vramSize")) {
    if (vm_set (&vm->video, "vmware-svga") == -1)
      return -1;
    if ((s = get (x, "svga.vramSize")) && vm_parse_u64 (s, &v))
      vm->video_ram = v;
  }
  if (read_devices (vm, x, dir) == -1 || read_nics (vm, x) == -1)
    return -1;

  /* Snapshots: a .vmsd beside the VMX that counts some. */
  if (dir && vm->name) {
    CLEANUP_FREE char *vmsd = NULL, *text = NULL;
    size_t len;
    const char *vmx_base = strrchr (x->name, '/');
    vmx_base = vmx_base ? vmx_base + 1 : x->name;
    if (asprintf (&vmsd, "%s/%.*s.vmsd", dir,
                  (int) (strlen (vmx_base) -
                         (vm_has_suffix (vmx_base, ".vmx") ? 4 : 0)),
                  vmx_base) != -1 &&
        access (vmsd, R_OK) == 0 &&
        vm_read_file (vmsd, VM_MAX_DESCRIPTION, "a snapshot list", &text,
                      &len) == 0) {
      const char *n = strcasestr (text, "snapshot.numSnapshots");
      if (n && (n = strchr (n, '"')) && atoi (n + 1) > 0)
        vm->has_snapshots = true;
    }
  }
  return 0;
}

struct ferry_vm *
ferry_vm_read_vmx (const char *name, const char *dir, const char *text,
                   size_t len)
{
  struct vmx x = { .name = name };
  struct ferry_vm *vm = NULL;

  if (parse_lines (&x, text, len) == -1)
    goto out;
  vm = vm_new (name, "vmx");
  if (vm == NULL)
    goto out;
  if (build (vm, &x, dir) == -1) {
    ferry_vm_free (vm);
    vm = NULL;
  }

 out:
  vmx_free (&x);
  return vm;
}
