/* ferry inspect: what is inside a VM's disks (libguestfs, read-only).
 *
 * The disks are given in the VM's order, the boot disk first.  The human
 * form is a few sections per OS; --json prints one object with the same
 * facts (member names in the style of ferry info's).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include <ferry/guest.h>

#include "ferry.h"

static json_object *
jstr (const char *s)
{
  return s ? json_object_new_string (s) : NULL;
}

static json_object *
jstrings (char *const *v)
{
  json_object *a = json_object_new_array ();
  size_t i;

  for (i = 0; v && v[i]; i++)
    json_object_array_add (a, json_object_new_string (v[i]));
  return a;
}

static json_object *
os_to_json (const struct ferry_guest_os *os)
{
  json_object *o = json_object_new_object (), *a;
  size_t i;

  json_object_object_add (o, "root", jstr (os->root));
  json_object_object_add (o, "type", jstr (os->type));
  json_object_object_add (o, "distro", jstr (os->distro));
  json_object_object_add (o, "product-name", jstr (os->product_name));
  json_object_object_add (o, "major-version", json_object_new_int (os->major));
  json_object_object_add (o, "minor-version", json_object_new_int (os->minor));
  json_object_object_add (o, "arch", jstr (os->arch));
  json_object_object_add (o, "hostname", jstr (os->hostname));
  json_object_object_add (o, "package-format", jstr (os->package_format));
  json_object_object_add (o, "package-management", jstr (os->package_management));
  json_object_object_add (o, "init-system", jstr (os->init_system));
  json_object_object_add (o, "bootloader", jstr (os->bootloader));
  json_object_object_add (o, "bootloader-config", jstr (os->bootloader_config));
  json_object_object_add (o, "firmware", jstr (os->firmware));
  json_object_object_add (o, "selinux", jstr (os->selinux));
  json_object_object_add (o, "initramfs-tool", jstr (os->initramfs_tool));

  a = json_object_new_array ();
  for (i = 0; i < os->nr_kernels; i++) {
    const struct ferry_guest_kernel *k = &os->kernels[i];
    json_object *ko = json_object_new_object (), *v = json_object_new_object ();
    json_object_object_add (ko, "version", jstr (k->version));
    json_object_object_add (ko, "vmlinuz", jstr (k->vmlinuz));
    json_object_object_add (ko, "initrd", jstr (k->initrd));
    json_object_object_add (v, "virtio_pci", json_object_new_boolean (k->virtio_pci));
    json_object_object_add (v, "virtio_blk", json_object_new_boolean (k->virtio_blk));
    json_object_object_add (v, "virtio_scsi", json_object_new_boolean (k->virtio_scsi));
    json_object_object_add (v, "virtio_net", json_object_new_boolean (k->virtio_net));
    json_object_object_add (ko, "virtio", v);
    json_object_array_add (a, ko);
  }
  json_object_object_add (o, "kernels", a);

  a = json_object_new_array ();
  for (i = 0; i < os->nr_tools; i++) {
    const struct ferry_guest_tool *t = &os->tools[i];
    json_object *to = json_object_new_object ();
    json_object_object_add (to, "hypervisor", jstr (t->kind));
    json_object_object_add (to, "name", jstr (t->name));
    json_object_object_add (to, "version", jstr (t->version));
    json_object_object_add (to, "package", jstr (t->package));
    json_object_object_add (to, "uninstaller", jstr (t->uninstaller));
    json_object_array_add (a, to);
  }
  json_object_object_add (o, "hypervisor-tools", a);

  a = json_object_new_array ();
  for (i = 0; i < os->nr_netconfs; i++) {
    const struct ferry_guest_netconf *n = &os->netconfs[i];
    json_object *no = json_object_new_object ();
    json_object_object_add (no, "path", jstr (n->path));
    json_object_object_add (no, "kind", jstr (n->kind));
    json_object_object_add (no, "interfaces", jstrings (n->interfaces));
    json_object_object_add (no, "macs", jstrings (n->macs));
    json_object_array_add (a, no);
  }
  json_object_object_add (o, "network-files", a);

  a = json_object_new_array ();
  for (i = 0; i < os->nr_fstab; i++) {
    const struct ferry_guest_fstab_entry *f = &os->fstab[i];
    json_object *fo = json_object_new_object ();
    json_object_object_add (fo, "spec", jstr (f->spec));
    json_object_object_add (fo, "mountpoint", jstr (f->mountpoint));
    json_object_object_add (fo, "type", jstr (f->type));
    json_object_object_add (fo, "options", jstr (f->options));
    json_object_object_add (fo, "naming", jstr (ferry_guest_naming_name (f->naming)));
    json_object_array_add (a, fo);
  }
  json_object_object_add (o, "fstab", a);
  json_object_object_add (o, "boot-devices", jstrings (os->cmdline_devices));
  return o;
}

static json_object *
inspection_to_json (const struct ferry_guest_inspection *ins,
                    char *const *disks)
{
  json_object *o = json_object_new_object (), *a;
  size_t i;

  json_object_object_add (o, "disks", jstrings (disks));
  a = json_object_new_array ();
  for (i = 0; i < ins->nr_partitions; i++) {
    const struct ferry_guest_partition *p = &ins->partitions[i];
    json_object *po = json_object_new_object ();
    json_object_object_add (po, "device", jstr (p->device));
    json_object_object_add (po, "start", json_object_new_uint64 (p->start));
    json_object_object_add (po, "size", json_object_new_uint64 (p->size));
    json_object_object_add (po, "table", jstr (p->table));
    json_object_object_add (po, "type", jstr (p->type));
    json_object_object_add (po, "bootable", json_object_new_boolean (p->bootable));
    json_object_array_add (a, po);
  }
  json_object_object_add (o, "partitions", a);
  a = json_object_new_array ();
  for (i = 0; i < ins->nr_filesystems; i++) {
    const struct ferry_guest_filesystem *f = &ins->filesystems[i];
    json_object *fo = json_object_new_object ();
    json_object_object_add (fo, "device", jstr (f->device));
    json_object_object_add (fo, "type", jstr (f->type));
    json_object_object_add (fo, "uuid", jstr (f->uuid));
    json_object_object_add (fo, "label", jstr (f->label));
    json_object_array_add (a, fo);
  }
  json_object_object_add (o, "filesystems", a);
  a = json_object_new_array ();
  for (i = 0; i < ins->nr_lvs; i++) {
    json_object *lo = json_object_new_object ();
    json_object_object_add (lo, "vg", jstr (ins->lvs[i].vg));
    json_object_object_add (lo, "lv", jstr (ins->lvs[i].lv));
    json_object_object_add (lo, "device", jstr (ins->lvs[i].device));
    json_object_object_add (lo, "size", json_object_new_uint64 (ins->lvs[i].size));
    json_object_array_add (a, lo);
  }
  json_object_object_add (o, "lvm", a);
  a = json_object_new_array ();
  for (i = 0; i < ins->nr_oses; i++)
    json_object_array_add (a, os_to_json (&ins->oses[i]));
  json_object_object_add (o, "operating-systems", a);
  return o;
}

#define OR(s) ((s) ? (s) : "unknown")

static void
print_os (const struct ferry_guest_os *os)
{
  size_t i, j;
  char sz[32];

  (void) sz;
  printf ("\nOperating system on %s\n", os->root);
  printf ("  type:            %s\n", OR (os->type));
  printf ("  distribution:    %s %d.%d (%s)\n", OR (os->distro), os->major,
          os->minor, OR (os->product_name));
  printf ("  architecture:    %s\n", OR (os->arch));
  printf ("  hostname:        %s\n", OR (os->hostname));
  if (!os->type || strcmp (os->type, "linux") != 0)
    return;
  printf ("  packages:        %s (%s)\n", OR (os->package_format),
          OR (os->package_management));
  printf ("  init system:     %s\n", OR (os->init_system));
  printf ("  boot loader:     %s%s%s%s\n", os->bootloader ? os->bootloader : "none found",
          os->bootloader_config ? " (" : "", os->bootloader_config ? os->bootloader_config : "",
          os->bootloader_config ? ")" : "");
  printf ("  firmware:        %s\n", OR (os->firmware));
  printf ("  SELinux:         %s\n", os->selinux ? os->selinux : "not configured");
  printf ("  initramfs tool:  %s\n", os->initramfs_tool ? os->initramfs_tool : "none");
  printf ("  kernels:\n");
  for (i = 0; i < os->nr_kernels; i++) {
    const struct ferry_guest_kernel *k = &os->kernels[i];
    printf ("    %s%s  virtio: %s%s%s%s\n", k->version,
            k->vmlinuz ? "" : " (no image in /boot)",
            k->virtio_pci ? "pci " : "", k->virtio_blk ? "blk " : "",
            k->virtio_scsi ? "scsi " : "", k->virtio_net ? "net" : "");
    if (!k->virtio_pci && !k->virtio_blk && !k->virtio_scsi && !k->virtio_net)
      printf ("      (no virtio drivers: cannot boot on a virtio disk)\n");
  }
  printf ("  hypervisor tools:%s\n", os->nr_tools ? "" : " none");
  for (i = 0; i < os->nr_tools; i++)
    printf ("    %s: %s%s%s%s%s\n", os->tools[i].kind, os->tools[i].name,
            os->tools[i].version ? " " : "", os->tools[i].version ? os->tools[i].version : "",
            os->tools[i].package ? " (package)" : "",
            os->tools[i].uninstaller ? " (tarball install)" : "");
  printf ("  network files:%s\n", os->nr_netconfs ? "" : " none");
  for (i = 0; i < os->nr_netconfs; i++) {
    printf ("    %s (%s):", os->netconfs[i].path, os->netconfs[i].kind);
    for (j = 0; os->netconfs[i].interfaces && os->netconfs[i].interfaces[j]; j++)
      printf (" %s", os->netconfs[i].interfaces[j]);
    for (j = 0; os->netconfs[i].macs && os->netconfs[i].macs[j]; j++)
      printf (" [%s]", os->netconfs[i].macs[j]);
    printf ("\n");
  }
  printf ("  fstab:\n");
  for (i = 0; i < os->nr_fstab; i++)
    printf ("    %-40s %-12s %-6s by %s\n", os->fstab[i].spec,
            os->fstab[i].mountpoint, os->fstab[i].type,
            ferry_guest_naming_name (os->fstab[i].naming));
  if (os->cmdline_devices && os->cmdline_devices[0]) {
    printf ("  boot devices:   ");
    for (i = 0; os->cmdline_devices[i]; i++)
      printf (" %s", os->cmdline_devices[i]);
    printf ("\n");
  }
}

static void
print_inspection (const struct ferry_guest_inspection *ins)
{
  size_t i;
  char sz[32];

  printf ("Partitions:%s\n", ins->nr_partitions ? "" : " none");
  for (i = 0; i < ins->nr_partitions; i++) {
    const struct ferry_guest_partition *p = &ins->partitions[i];
    printf ("  %-12s %-6s type %-8s start %" PRIu64 " size %s%s\n", p->device,
            OR (p->table), OR (p->type), p->start, human_size (p->size, sz, sizeof sz),
            p->bootable ? " (bootable)" : "");
  }
  printf ("File systems:%s\n", ins->nr_filesystems ? "" : " none");
  for (i = 0; i < ins->nr_filesystems; i++) {
    const struct ferry_guest_filesystem *f = &ins->filesystems[i];
    printf ("  %-20s %-8s%s%s%s%s\n", f->device, f->type,
            f->uuid ? " UUID=" : "", f->uuid ? f->uuid : "",
            f->label ? " LABEL=" : "", f->label ? f->label : "");
  }
  if (ins->nr_lvs) {
    printf ("LVM logical volumes:\n");
    for (i = 0; i < ins->nr_lvs; i++)
      printf ("  %-24s %s\n", ins->lvs[i].device,
              human_size (ins->lvs[i].size, sz, sizeof sz));
  }
  if (ins->nr_oses == 0)
    printf ("\nNo operating system found.\n");
  for (i = 0; i < ins->nr_oses; i++)
    print_os (&ins->oses[i]);
}

struct ferry_guest_disk *
guest_disks_from_args (char **args, int n, const char *format)
{
  struct ferry_guest_disk *disks = calloc (n, sizeof *disks);
  int i;

  for (i = 0; disks && i < n; i++) {
    disks[i].path = args[i];
    disks[i].format = format;
  }
  return disks;
}

int
cmd_inspect (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "json", no_argument, NULL, 'j' },
    { "output", required_argument, NULL, 'o' },
    { "format", required_argument, NULL, 'f' },
    { "force-share", no_argument, NULL, 'U' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct ferry_guest_disk *disks;
  struct ferry_guest *g;
  struct ferry_guest_inspection *ins;
  const char *format = NULL;
  bool json = false;
  unsigned flags = FERRY_GUEST_READONLY;
  int c, n;

  while ((c = getopt_long (argc, argv, "f:Uh", long_options, NULL)) != -1) {
    switch (c) {
    case 'j': json = true; break;
    case 'o':
      if (parse_output_option ("inspect", optarg, &json) == -1)
        return 1;
      break;
    case 'f': format = optarg; break;
    case 'U': flags |= FERRY_GUEST_SHARED; break;
    case 'h':
      printf ("usage: ferry inspect [-f FMT] [--json] [-U] IMAGE...\n"
              "  The VM's disks, boot disk first; opened read-only.\n"
              "  -U, --force-share  inspect disks another process (a running "
              "VM) writes\n");
      return 0;
    default:
      return 1;
    }
  }
  n = argc - optind;
  if (n < 1) {
    print_message ("inspect", "expected the VM's disk images (see ferry inspect --help)");
    return 1;
  }
  disks = guest_disks_from_args (argv + optind, n, format);
  if (!disks)
    return 1;
  g = ferry_guest_open (disks, n, flags);
  free (disks);
  if (!g) {
    print_read_error ("inspect");
    return 1;
  }
  ins = ferry_guest_inspect (g);
  if (!ins) {
    print_error ("inspect");
    ferry_guest_close (g);
    return 1;
  }
  ferry_guest_close (g);
  if (json) {
    json_object *o = inspection_to_json (ins, argv + optind);
    printf ("%s\n", json_object_to_json_string_ext (o,
            JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (o);
  }
  else
    print_inspection (ins);
  ferry_guest_inspection_free (ins);
  return 0;
}
