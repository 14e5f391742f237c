/* ferry_guest_inspect: the disks' partitions, file systems and LVM, and
 * for each operating system found, what a migration needs to know about
 * it: distribution and version, kernels and whether they have virtio
 * drivers, boot loader, firmware, init system, hypervisor tools, network
 * files and how fstab names its devices.
 *
 * libguestfs's own inspection finds the OS, its version and its mount
 * points; the rest is read from the guest's files here.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cleanup.h"
#include "../common/stop.h"
#include "internal.h"

#define ESP_GUID "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

static char *
dup_or_null (const char *s)
{
  return s && *s && strcmp (s, "unknown") != 0 ? strdup (s) : NULL;
}

/* A libguestfs string call that may fail quietly: its result or NULL. */
#define QUIET(g, call) ({                                  \
      char *_r;                                            \
      guestfs_push_error_handler ((g)->g, NULL, NULL);     \
      _r = (call);                                         \
      guestfs_pop_error_handler ((g)->g);                  \
      _r; })

static int
inspect_partitions (struct ferry_guest *g, struct ferry_guest_inspection *ins)
{
  char **parts = guestfs_list_partitions (g->g);
  size_t n, i;

  if (!parts)
    return guest_error (g, "libguestfs: listing partitions");
  for (n = 0; parts[n]; n++)
    ;
  ins->partitions = calloc (n ? n : 1, sizeof *ins->partitions);
  if (!ins->partitions) {
    guest_free_strings (parts);
    return ferry_error (ENOMEM, "out of memory");
  }
  for (i = 0; i < n; i++) {
    struct ferry_guest_partition *p = &ins->partitions[ins->nr_partitions];
    CLEANUP_FREE char *dev = QUIET (g, guestfs_part_to_dev (g->g, parts[i]));
    struct guestfs_partition_list *pl;
    int num, j;

    if (!dev)
      continue;
    num = guestfs_part_to_partnum (g->g, parts[i]);
    p->device = strdup (parts[i]);
    p->table = QUIET (g, guestfs_part_get_parttype (g->g, dev));
    guestfs_push_error_handler (g->g, NULL, NULL);
    pl = guestfs_part_list (g->g, dev);
    if (pl) {
      for (j = 0; j < (int) pl->len; j++)
        if (pl->val[j].part_num == num) {
          p->start = pl->val[j].part_start;
          p->size = pl->val[j].part_size;
        }
      guestfs_free_partition_list (pl);
    }
    if (p->table && strcmp (p->table, "gpt") == 0)
      p->type = guestfs_part_get_gpt_type (g->g, dev, num);
    else if (p->table) {
      int id = guestfs_part_get_mbr_id (g->g, dev, num);
      if (id >= 0)
        p->type = guest_printf ("%02x", id);
      p->bootable = guestfs_part_get_bootable (g->g, dev, num) > 0;
    }
    guestfs_pop_error_handler (g->g);
    ins->nr_partitions++;
  }
  guest_free_strings (parts);
  return 0;
}

static int
inspect_filesystems (struct ferry_guest *g, struct ferry_guest_inspection *ins)
{
  char **fs = guestfs_list_filesystems (g->g);
  size_t n, i;

  if (!fs)
    return guest_error (g, "libguestfs: listing file systems");
  for (n = 0; fs[n]; n++)
    ;
  ins->filesystems = calloc (n / 2 + 1, sizeof *ins->filesystems);
  if (!ins->filesystems) {
    guest_free_strings (fs);
    return ferry_error (ENOMEM, "out of memory");
  }
  for (i = 0; i < n; i += 2) {
    struct ferry_guest_filesystem *f = &ins->filesystems[ins->nr_filesystems];
    if (strcmp (fs[i + 1], "unknown") == 0)
      continue;
    f->device = strdup (fs[i]);
    f->type = strdup (fs[i + 1]);
    f->uuid = QUIET (g, guestfs_vfs_uuid (g->g, fs[i]));
    f->label = QUIET (g, guestfs_vfs_label (g->g, fs[i]));
    if (f->uuid && !*f->uuid) {
      free (f->uuid);
      f->uuid = NULL;
    }
    if (f->label && !*f->label) {
      free (f->label);
      f->label = NULL;
    }
    ins->nr_filesystems++;
  }
  guest_free_strings (fs);

  {
    char **lvs;
    size_t nlv;
    guestfs_push_error_handler (g->g, NULL, NULL);
    lvs = guestfs_lvs (g->g);
    guestfs_pop_error_handler (g->g);
    for (nlv = 0; lvs && lvs[nlv]; nlv++)
      ;
    if (nlv)
      ins->lvs = calloc (nlv, sizeof *ins->lvs);
    for (i = 0; ins->lvs && i < nlv; i++) {
      /* /dev/VG/LV */
      const char *vg = lvs[i] + 5, *slash = strchr (vg, '/');
      if (strncmp (lvs[i], "/dev/", 5) != 0 || !slash)
        continue;
      ins->lvs[ins->nr_lvs].vg = strndup (vg, slash - vg);
      ins->lvs[ins->nr_lvs].lv = strdup (slash + 1);
      ins->lvs[ins->nr_lvs].device = strdup (lvs[i]);
      guestfs_push_error_handler (g->g, NULL, NULL);
      ins->lvs[ins->nr_lvs].size = guestfs_blockdev_getsize64 (g->g, lvs[i]);
      guestfs_pop_error_handler (g->g);
      ins->nr_lvs++;
    }
    guest_free_strings (lvs);
  }
  return 0;
}

/* The first of PATHS that is a file, or NULL. */
static const char *
first_file (struct ferry_guest *g, const char *const *paths)
{
  size_t i;

  for (i = 0; paths[i]; i++)
    if (guest_is_file (g, paths[i]))
      return paths[i];
  return NULL;
}

static void
find_bootloader (struct ferry_guest *g, struct ferry_guest_os *os)
{
  static const char *const grub2[] = {
    "/boot/grub2/grub.cfg", "/boot/grub/grub.cfg", NULL };
  static const char *const legacy[] = {
    "/boot/grub/menu.lst", "/boot/grub/grub.conf", NULL };
  static const char *const extlinux[] = {
    "/boot/extlinux/extlinux.conf", "/boot/extlinux.conf", "/extlinux.conf",
    "/boot/syslinux/syslinux.cfg", "/syslinux.cfg", NULL };
  static const char *const sdboot[] = {
    "/boot/efi/loader/loader.conf", "/boot/loader/loader.conf",
    "/efi/loader/loader.conf", NULL };
  const char *p = NULL;
  char **efi = NULL;

  if ((p = first_file (g, grub2)))
    os->bootloader = strdup ("grub2");
  else if ((efi = guest_glob (g, "/boot/efi/EFI/*/grub.cfg")) && efi[0]) {
    os->bootloader = strdup ("grub2");
    os->bootloader_config = strdup (efi[0]);
    guest_free_strings (efi);
    return;
  }
  else if (guest_free_strings (efi), (p = first_file (g, legacy)))
    os->bootloader = strdup ("grub-legacy");
  else if ((p = first_file (g, extlinux)))
    os->bootloader = strdup ("extlinux");
  else if ((p = first_file (g, sdboot)))
    os->bootloader = strdup ("systemd-boot");
  if (p)
    os->bootloader_config = strdup (p);
}

static void
find_firmware (struct ferry_guest *g, struct ferry_guest_os *os,
               const struct ferry_guest_inspection *ins)
{
  bool esp = false, gpt = false;
  size_t i;

  for (i = 0; ins && i < ins->nr_partitions; i++) {
    if (ins->partitions[i].type &&
        strcasecmp (ins->partitions[i].type, ESP_GUID) == 0)
      esp = true;
    if (ins->partitions[i].table && strcmp (ins->partitions[i].table, "gpt") == 0)
      gpt = true;
  }
  /* A guest that mounts an ESP with boot loaders in it boots by UEFI; a
   * GPT disk with an ESP but GRUB in the MBR gap (bios_grub) is hybrid,
   * and BIOS still works for it. */
  if (guest_is_dir (g, "/boot/efi/EFI") &&
      (!os->bootloader_config || strncmp (os->bootloader_config, "/boot/efi", 9) == 0 ||
       !guest_exists (g, "/boot/grub/i386-pc")))
    os->firmware = strdup ("uefi");
  else if (esp && gpt && !guest_exists (g, "/boot/grub/i386-pc") &&
           !guest_exists (g, "/boot/grub2/i386-pc"))
    os->firmware = strdup ("uefi");
  else
    os->firmware = strdup ("bios");
}

static void
find_init (struct ferry_guest *g, struct ferry_guest_os *os)
{
  CLEANUP_FREE char *target = QUIET (g, guestfs_realpath (g->g, "/sbin/init"));

  if (target && strstr (target, "systemd"))
    os->init_system = strdup ("systemd");
  else if (guest_exists (g, "/sbin/initctl") && guest_is_dir (g, "/etc/init") &&
           !guest_exists (g, "/etc/inittab"))
    os->init_system = strdup ("upstart");
  else if (target && strstr (target, "busybox"))
    os->init_system = strdup ("busybox");
  else if (guest_exists (g, "/sbin/openrc") || guest_exists (g, "/usr/sbin/openrc"))
    os->init_system = strdup ("openrc");
  else if (guest_exists (g, "/etc/inittab"))
    os->init_system = strdup ("sysvinit");
  else if (guest_is_dir (g, "/lib/systemd/system") ||
           guest_is_dir (g, "/usr/lib/systemd/system"))
    os->init_system = strdup ("systemd");
}

static void
find_selinux (struct ferry_guest *g, struct ferry_guest_os *os)
{
  size_t n;
  CLEANUP_FREE char *text = guest_read (g, "/etc/selinux/config", &n);
  char *p;

  if (!text)
    return;
  for (p = text; (p = strstr (p, "SELINUX=")); p++)
    if (p == text || p[-1] == '\n') {
      char *v = p + 8, *e = v + strcspn (v, " \t\r\n\"#");
      if (*v == '"')
        v++, e = v + strcspn (v, "\"\n");
      os->selinux = strndup (v, e - v);
      return;
    }
}

static void
find_initramfs_tool (struct ferry_guest *g, struct ferry_guest_os *os)
{
  static const char *const uit[] = { "/usr/sbin/update-initramfs",
                                     "/sbin/update-initramfs", NULL };
  static const char *const dracut[] = { "/usr/bin/dracut", "/usr/sbin/dracut",
                                        "/sbin/dracut", NULL };
  static const char *const mkinitrd[] = { "/sbin/mkinitrd",
                                          "/usr/sbin/mkinitrd", NULL };

  if (first_file (g, uit))
    os->initramfs_tool = strdup ("update-initramfs");
  else if (first_file (g, dracut))
    os->initramfs_tool = strdup ("dracut");
  else if (first_file (g, mkinitrd))
    os->initramfs_tool = strdup ("mkinitrd");
}

/* Is module NAME (virtio_blk) in modules.builtin or, with its file
 * present, in modules.dep of the kernel whose module directory is DIR? */
static bool
kernel_has (struct ferry_guest *g, const char *dir, const char *builtin,
            const char *dep, const char *name)
{
  char pat[64];
  const char *p;

  snprintf (pat, sizeof pat, "/%s.ko", name);
  if (builtin && strstr (builtin, pat))
    return true;
  for (p = dep; p && (p = strstr (p, pat)); p++) {
    const char *start = p, *end = strchr (p, ':');
    CLEANUP_FREE char *rel = NULL, *path = NULL;
    while (start > dep && start[-1] != '\n')
      start--;
    if (!end)
      break;
    rel = strndup (start, end - start);
    path = rel ? guest_printf ("%s/%s", dir, rel) : NULL;
    if (path && guest_exists (g, path))
      return true;
  }
  return false;
}

static int
find_kernels (struct ferry_guest *g, struct ferry_guest_os *os)
{
  char **dirs = guest_glob (g, "/lib/modules/*");
  size_t n, i;

  if (!dirs)
    return -1;
  for (n = 0; dirs[n]; n++)
    ;
  os->kernels = calloc (n + 1, sizeof *os->kernels);
  if (!os->kernels) {
    guest_free_strings (dirs);
    return ferry_error (ENOMEM, "out of memory");
  }
  for (i = 0; i < n; i++) {
    struct ferry_guest_kernel *k = &os->kernels[os->nr_kernels];
    char *dir = dirs[i];
    size_t len = strlen (dir), sz;
    const char *ver;
    CLEANUP_FREE char *builtin = NULL, *dep = NULL, *bp = NULL, *dp = NULL;
    const char *const vmlinuz[] = { "/boot/vmlinuz-%s", "/boot/vmlinux-%s",
                                    "/boot/kernel-%s", NULL };
    const char *const initrd[] = { "/boot/initrd.img-%s",
                                   "/boot/initramfs-%s.img",
                                   "/boot/initrd-%s.img", "/boot/initrd-%s",
                                   "/boot/initramfs-%s", NULL };
    size_t j;

    if (len && dir[len - 1] == '/')
      dir[len - 1] = '\0';
    ver = strrchr (dir, '/') + 1;
    if (!*ver || !guest_is_dir (g, dir))
      continue;
    k->version = strdup (ver);
    for (j = 0; vmlinuz[j] && !k->vmlinuz; j++) {
      char *p = guest_printf (vmlinuz[j], ver);
      if (p && guest_is_file (g, p))
        k->vmlinuz = p;
      else
        free (p);
    }
    for (j = 0; initrd[j] && !k->initrd; j++) {
      char *p = guest_printf (initrd[j], ver);
      if (p && guest_is_file (g, p))
        k->initrd = p;
      else
        free (p);
    }
    bp = guest_printf ("%s/modules.builtin", dir);
    dp = guest_printf ("%s/modules.dep", dir);
    builtin = bp ? guest_read (g, bp, &sz) : NULL;
    dep = dp ? guest_read (g, dp, &sz) : NULL;
    k->virtio_pci = kernel_has (g, dir, builtin, dep, "virtio_pci");
    k->virtio_blk = kernel_has (g, dir, builtin, dep, "virtio_blk");
    k->virtio_scsi = kernel_has (g, dir, builtin, dep, "virtio_scsi");
    k->virtio_net = kernel_has (g, dir, builtin, dep, "virtio_net");
    if (!k->version)
      break;
    os->nr_kernels++;
  }
  guest_free_strings (dirs);
  return 0;
}

/* Network files: each kind and the globs that find them. */
static const struct {
  const char *kind;
  const char *glob;
} netconf_globs[] = {
  { "ifupdown", "/etc/network/interfaces" },
  { "ifupdown", "/etc/network/interfaces.d/*" },
  { "netplan", "/etc/netplan/*.yaml" },
  { "ifcfg", "/etc/sysconfig/network-scripts/ifcfg-*" },
  { "ifcfg", "/etc/sysconfig/network/ifcfg-*" },
  { "networkmanager", "/etc/NetworkManager/system-connections/*" },
  { "systemd-networkd", "/etc/systemd/network/*.network" },
  { "systemd-networkd", "/etc/systemd/network/*.link" },
  { "udev-rules", "/etc/udev/rules.d/*net*.rules" },
};

static int
find_netconfs (struct ferry_guest *g, struct ferry_guest_os *os)
{
  size_t i, j;

  for (i = 0; i < sizeof netconf_globs / sizeof netconf_globs[0]; i++) {
    char **files = guest_glob (g, netconf_globs[i].glob);
    for (j = 0; files && files[j]; j++) {
      size_t sz;
      CLEANUP_FREE char *text = guest_read (g, files[j], &sz);
      string_vector names = empty_vector, macs = empty_vector;
      struct ferry_guest_netconf *nv, *nc;

      if (!text || (strcmp (netconf_globs[i].kind, "ifcfg") == 0 &&
                    strstr (files[j], "ifcfg-lo")))
        continue;
      if (guest_parse_netconf (netconf_globs[i].kind, text, &names, &macs) == -1 ||
          string_vector_append (&names, NULL) == -1 ||
          string_vector_append (&macs, NULL) == -1) {
        string_vector_free (&names);
        string_vector_free (&macs);
        guest_free_strings (files);
        return -1;
      }
      nv = realloc (os->netconfs, (os->nr_netconfs + 1) * sizeof *nv);
      if (!nv) {
        string_vector_free (&names);
        string_vector_free (&macs);
        guest_free_strings (files);
        return ferry_error (ENOMEM, "out of memory");
      }
      os->netconfs = nv;
      nc = &nv[os->nr_netconfs++];
      nc->path = strdup (files[j]);
      nc->kind = strdup (netconf_globs[i].kind);
      nc->interfaces = names.ptr;
      nc->macs = macs.ptr;
    }
    guest_free_strings (files);
  }
  return 0;
}

static int
find_cmdline_devices (struct ferry_guest *g, struct ferry_guest_os *os)
{
  string_vector v = empty_vector;
  size_t sz;
  CLEANUP_FREE char *text = NULL;

  if (os->bootloader_config)
    text = guest_read (g, os->bootloader_config, &sz);
  if ((text && guest_cmdline_devices (text, &v) == -1) ||
      string_vector_append (&v, NULL) == -1) {
    string_vector_free (&v);
    return -1;
  }
  os->cmdline_devices = v.ptr;
  return 0;
}

int
guest_inspect_os (struct ferry_guest *g, const char *root,
                  struct ferry_guest_os *os)
{
  CLEANUP_FREE char *type = NULL, *distro = NULL, *product = NULL,
    *arch = NULL, *host = NULL, *pkgfmt = NULL, *pkgmgmt = NULL;
  size_t sz;

  os->root = strdup (root);
  type = QUIET (g, guestfs_inspect_get_type (g->g, root));
  distro = QUIET (g, guestfs_inspect_get_distro (g->g, root));
  product = QUIET (g, guestfs_inspect_get_product_name (g->g, root));
  arch = QUIET (g, guestfs_inspect_get_arch (g->g, root));
  host = QUIET (g, guestfs_inspect_get_hostname (g->g, root));
  pkgfmt = QUIET (g, guestfs_inspect_get_package_format (g->g, root));
  pkgmgmt = QUIET (g, guestfs_inspect_get_package_management (g->g, root));
  os->type = dup_or_null (type);
  os->distro = dup_or_null (distro);
  os->product_name = dup_or_null (product);
  os->arch = dup_or_null (arch);
  os->hostname = dup_or_null (host);
  os->package_format = dup_or_null (pkgfmt);
  os->package_management = dup_or_null (pkgmgmt);
  os->major = guestfs_inspect_get_major_version (g->g, root);
  os->minor = guestfs_inspect_get_minor_version (g->g, root);
  if (!os->root)
    return ferry_error (ENOMEM, "out of memory");
  if (!os->type || strcmp (os->type, "linux") != 0)
    return 0;

  if (guest_mount_os (g, root) == -1)
    return -1;
  {
    /* os-release's PRETTY_NAME says more than libguestfs's product name
     * for some distributions (Debian's is /etc/debian_version). */
    CLEANUP_FREE char *osr = guest_read (g, "/etc/os-release", &sz);
    char *p = osr ? strstr (osr, "PRETTY_NAME=") : NULL;
    if (p && (p == osr || p[-1] == '\n')) {
      char *v = p + 12, *e;
      if (*v == '"')
        v++;
      e = v + strcspn (v, "\"\n");
      if (e > v) {
        free (os->product_name);
        os->product_name = strndup (v, e - v);
      }
    }
  }
  {
    CLEANUP_FREE char *fstab = guest_read (g, "/etc/fstab", &sz);
    if (fstab && guest_parse_fstab (fstab, &os->fstab, &os->nr_fstab) == -1)
      return -1;
  }
  find_bootloader (g, os);
  find_init (g, os);
  find_selinux (g, os);
  find_initramfs_tool (g, os);
  if (find_kernels (g, os) == -1 || guest_find_tools (g, root, os) == -1 ||
      find_netconfs (g, os) == -1 || find_cmdline_devices (g, os) == -1)
    return -1;
  return 0;
}

struct ferry_guest_inspection *
ferry_guest_inspect (struct ferry_guest *g)
{
  struct ferry_guest_inspection *ins = calloc (1, sizeof *ins);
  char **roots = NULL;
  size_t n, i;

  if (!ins) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (inspect_partitions (g, ins) == -1 || inspect_filesystems (g, ins) == -1)
    goto err;
  roots = guestfs_inspect_os (g->g);
  if (!roots) {
    guest_error (g, "libguestfs: inspecting the disks");
    goto err;
  }
  for (n = 0; roots[n]; n++)
    ;
  ins->oses = calloc (n + 1, sizeof *ins->oses);
  if (!ins->oses) {
    ferry_error (ENOMEM, "out of memory");
    goto err;
  }
  for (i = 0; i < n; i++) {
    if (guest_inspect_os (g, roots[i], &ins->oses[i]) == -1) {
      ins->nr_oses = i + 1;
      goto err;
    }
    find_firmware (g, &ins->oses[i], ins);
    ins->nr_oses = i + 1;
  }
  /* Calls that failed because of a stop look like things absent. */
  if (stop_requested ()) {
    ferry_error (EINTR, "libguestfs: inspecting the disks: interrupted");
    goto err;
  }
  guest_umount_all (g);
  guest_free_strings (roots);
  return ins;

 err:
  guest_umount_all (g);
  guest_free_strings (roots);
  ferry_guest_inspection_free (ins);
  return NULL;
}

void
guest_os_free (struct ferry_guest_os *os)
{
  size_t i;

  free (os->root);
  free (os->type);
  free (os->distro);
  free (os->product_name);
  free (os->arch);
  free (os->hostname);
  free (os->package_format);
  free (os->package_management);
  free (os->init_system);
  free (os->bootloader);
  free (os->bootloader_config);
  free (os->firmware);
  free (os->selinux);
  free (os->initramfs_tool);
  for (i = 0; i < os->nr_kernels; i++) {
    free (os->kernels[i].version);
    free (os->kernels[i].vmlinuz);
    free (os->kernels[i].initrd);
  }
  free (os->kernels);
  for (i = 0; i < os->nr_tools; i++) {
    free (os->tools[i].kind);
    free (os->tools[i].name);
    free (os->tools[i].version);
    free (os->tools[i].package);
    free (os->tools[i].uninstaller);
  }
  free (os->tools);
  for (i = 0; i < os->nr_netconfs; i++) {
    free (os->netconfs[i].path);
    free (os->netconfs[i].kind);
    guest_free_strings (os->netconfs[i].interfaces);
    guest_free_strings (os->netconfs[i].macs);
  }
  free (os->netconfs);
  for (i = 0; i < os->nr_fstab; i++) {
    free (os->fstab[i].spec);
    free (os->fstab[i].mountpoint);
    free (os->fstab[i].type);
    free (os->fstab[i].options);
  }
  free (os->fstab);
  guest_free_strings (os->cmdline_devices);
  memset (os, 0, sizeof *os);
}

void
ferry_guest_inspection_free (struct ferry_guest_inspection *ins)
{
  size_t i;

  if (!ins)
    return;
  for (i = 0; i < ins->nr_partitions; i++) {
    free (ins->partitions[i].device);
    free (ins->partitions[i].table);
    free (ins->partitions[i].type);
  }
  free (ins->partitions);
  for (i = 0; i < ins->nr_filesystems; i++) {
    free (ins->filesystems[i].device);
    free (ins->filesystems[i].type);
    free (ins->filesystems[i].uuid);
    free (ins->filesystems[i].label);
  }
  free (ins->filesystems);
  for (i = 0; i < ins->nr_lvs; i++) {
    free (ins->lvs[i].vg);
    free (ins->lvs[i].lv);
    free (ins->lvs[i].device);
  }
  free (ins->lvs);
  for (i = 0; i < ins->nr_oses; i++)
    guest_os_free (&ins->oses[i]);
  free (ins->oses);
  free (ins);
}
