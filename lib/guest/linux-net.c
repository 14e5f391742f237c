/* After the move: networking that keeps working on a virtio NIC, SELinux
 * labels, and qemu-guest-agent installed at first boot.
 *
 * Interface names: a guest configures its NIC by name (ens33 in
 * /etc/network/interfaces, ifcfg-eth0, a netplan key).  Those names come
 * from the NIC's position on the bus (the predictable scheme: ens33 is PCI
 * slot 33 on VMware) or the kernel's order (eth0); a virtio NIC in another
 * slot gets another name and the configuration no longer applies.  ferry
 * pins each configured name to the new NIC with a udev rule, by MAC
 * address when the migration knows the MACs (they are kept), else, for a
 * guest with a single NIC, by the virtio_net driver.  Configuration that
 * matches NICs by their old driver (netplan "driver: vmxnet3", udev
 * DRIVERS=="vmxnet3") is made to match virtio_net.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cleanup.h"
#include "internal.h"

#define NET_RULES "/etc/udev/rules.d/70-ferry-net.rules"

/* Does the kernel command line turn predictable names off (then the
 * virtio NIC is eth0 too)? */
static bool
ifnames_off (struct ferry_guest *g, struct ferry_guest_os *os)
{
  static const char *const files[] = { "/etc/default/grub", NULL };
  size_t i, sz;

  for (i = 0; i < 2; i++) {
    const char *path = i == 0 ? files[0] : os->bootloader_config;
    CLEANUP_FREE char *text = path ? guest_read (g, path, &sz) : NULL;
    if (text && strstr (text, "net.ifnames=0"))
      return true;
  }
  return false;
}

/* Is NAME bound to a MAC address by the file that configures it (ifcfg
 * HWADDR, a udev rule with ATTR{address}, netplan macaddress)? */
static bool
name_mac_bound (struct ferry_guest_os *os, const char *name)
{
  size_t i, j;

  for (i = 0; i < os->nr_netconfs; i++) {
    const struct ferry_guest_netconf *nc = &os->netconfs[i];
    if (!nc->macs || !nc->macs[0])
      continue;
    for (j = 0; nc->interfaces && nc->interfaces[j]; j++)
      if (strcmp (nc->interfaces[j], name) == 0 &&
          (strcmp (nc->kind, "ifcfg") == 0 ||
           strcmp (nc->kind, "udev-rules") == 0 ||
           strcmp (nc->kind, "netplan") == 0 ||
           strcmp (nc->kind, "systemd-networkd") == 0) &&
          nc->interfaces[1] == NULL)
        return true;
  }
  return false;
}

/* Natural order of interface names: ens33 before ens160, eth2 before eth10. */
static int
cmp_ifname (const void *a, const void *b)
{
  const char *x = *(const char *const *) a, *y = *(const char *const *) b;
  size_t lx = strlen (x), ly = strlen (y);

  if (lx != ly)
    return lx < ly ? -1 : 1;
  return strcmp (x, y);
}

int
guest_fix_network (struct ferry_guest *g, struct ferry_guest_os *os,
                   const struct ferry_guest_convert_options *opts,
                   struct ferry_guest_report *r)
{
  string_vector names = empty_vector, pinned = empty_vector;
  size_t i, j, nr_macs = 0, driver_edits = 0;
  CLEANUP_FREE char *rules = NULL, *list = NULL;
  int ret = 0;

  for (i = 0; opts && opts->macs && opts->macs[i]; i++)
    nr_macs++;

  /* Matches on the old NIC driver become matches on virtio_net. */
  for (i = 0; i < os->nr_netconfs; i++) {
    const struct ferry_guest_netconf *nc = &os->netconfs[i];
    size_t sz, n = 0;
    CLEANUP_FREE char *text = NULL, *out = NULL;

    if (strcmp (nc->kind, "netplan") != 0 && strcmp (nc->kind, "udev-rules") != 0 &&
        strcmp (nc->kind, "systemd-networkd") != 0)
      continue;
    text = guest_read (g, nc->path, &sz);
    if (!text)
      continue;
    out = guest_rewrite_driver_match (nc->kind, text, &n);
    if (!out) {
      ret = -1;
      goto out;
    }
    if (n) {
      if (guest_write (g, nc->path, out) == -1) {
        ret = -1;
        goto out;
      }
      guest_step (r, "network", FERRY_GUEST_STEP_DONE,
                  "%s: matches the virtio_net driver instead of the old NIC's",
                  nc->path);
      driver_edits++;
    }
  }

  /* The configured names that depend on the NIC's position. */
  for (i = 0; i < os->nr_netconfs; i++)
    for (j = 0; os->netconfs[i].interfaces && os->netconfs[i].interfaces[j]; j++)
      if (guest_is_positional_ifname (os->netconfs[i].interfaces[j]) &&
          string_vector_add_unique (&names, os->netconfs[i].interfaces[j]) == -1) {
        ret = -1;
        goto out;
      }
  if (names.len == 0) {
    if (!driver_edits)
      guest_step (r, "network", FERRY_GUEST_STEP_SKIPPED,
                  "no configured interface name depends on the NIC's bus "
                  "position (%zu network file%s)", os->nr_netconfs,
                  os->nr_netconfs == 1 ? "" : "s");
    goto out;
  }
  qsort (names.ptr, names.len, sizeof *names.ptr, cmp_ifname);

  if (strncmp (names.ptr[0], "eth", 3) == 0 && ifnames_off (g, os)) {
    guest_step (r, "network", FERRY_GUEST_STEP_SKIPPED,
                "%s: kept, the guest turns predictable names off "
                "(net.ifnames=0), so the virtio NIC is named the same",
                names.ptr[0]);
    goto out;
  }

  rules = strdup ("# Written by ferry when the VM moved to KVM: the names "
                  "its network\n# configuration uses, given to the virtio "
                  "NICs.\n");
  if (!rules) {
    ret = ferry_error (ENOMEM, "out of memory");
    goto out;
  }
  for (i = 0; i < names.len; i++) {
    const char *name = names.ptr[i];
    char *line = NULL, *nr;

    if (nr_macs == names.len)
      line = guest_printf ("SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", "
                           "ATTR{address}==\"%s\", ATTR{type}==\"1\", "
                           "NAME=\"%s\"\n", opts->macs[i], name);
    else if (name_mac_bound (os, name)) {
      guest_step (r, "network", FERRY_GUEST_STEP_SKIPPED,
                  "%s: kept, its configuration binds it to its MAC address, "
                  "which the migration keeps", name);
      continue;
    }
    else if (names.len == 1 && nr_macs <= 1)
      line = nr_macs == 1
        ? guest_printf ("SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", "
                        "ATTR{address}==\"%s\", ATTR{type}==\"1\", "
                        "NAME=\"%s\"\n", opts->macs[0], name)
        : guest_printf ("SUBSYSTEM==\"net\", ACTION==\"add\", "
                        "DRIVERS==\"virtio_net\", ATTR{type}==\"1\", "
                        "NAME=\"%s\"\n", name);
    else {
      guest_step (r, "network", FERRY_GUEST_STEP_SKIPPED,
                  "%s: not pinned: %zu interface names and %zu known MAC "
                  "addresses, so which NIC is which cannot be told; name "
                  "the NICs after the first boot", name, names.len, nr_macs);
      continue;
    }
    if (!line || !(nr = guest_printf ("%s%s", rules, line))) {
      free (line);
      ret = ferry_error (ENOMEM, "out of memory");
      goto out;
    }
    free (rules);
    rules = nr;
    free (line);
    if (string_vector_add_unique (&pinned, name) == -1) {
      ret = -1;
      goto out;
    }
  }
  if (pinned.len) {
    if (guest_write (g, NET_RULES, rules) == -1) {
      ret = -1;
      goto out;
    }
    list = calloc (1, 17 * pinned.len + 1);   /* ", " and 15 */
    for (i = 0; list && i < pinned.len; i++) {
      if (i)
        strcat (list, ", ");
      strncat (list, pinned.ptr[i], 15);
    }
    guest_step (r, "network", FERRY_GUEST_STEP_DONE,
                "%s: the virtio NIC%s named %s (%s), as the network "
                "configuration expects", NET_RULES, pinned.len == 1 ? " is" : "s are",
                list ? list : "",
                !nr_macs ? "matched by the virtio_net driver: one NIC"
                : pinned.len > 1 ? "matched by MAC address, names in their "
                "numeric order to the VM's NICs in theirs"
                : "matched by MAC address");
  }

 out:
  string_vector_free (&names);
  string_vector_free (&pinned);
  if (ret == -1)
    guest_step (r, "network", FERRY_GUEST_STEP_FAILED, "%s", ferry_get_error ());
  return ret;
}

int
guest_fix_selinux (struct ferry_guest *g, struct ferry_guest_os *os,
                   struct ferry_guest_report *r)
{
  if (!os->selinux)
    return guest_step (r, "selinux", FERRY_GUEST_STEP_SKIPPED,
                       "SELinux is not configured in the guest");
  if (strcmp (os->selinux, "enforcing") != 0 &&
      strcmp (os->selinux, "permissive") != 0)
    return guest_step (r, "selinux", FERRY_GUEST_STEP_SKIPPED,
                       "SELinux is %s", os->selinux);
  /* The files ferry wrote have no labels; a full relabel at the next boot
   * gives them theirs (as after any offline edit). */
  if (guestfs_touch (g->g, "/.autorelabel") == -1) {
    guest_error (g, "/.autorelabel");
    guest_step (r, "selinux", FERRY_GUEST_STEP_FAILED, "%s", ferry_get_error ());
    return -1;
  }
  return guest_step (r, "selinux", FERRY_GUEST_STEP_DONE,
                     "SELinux is %s: /.autorelabel makes the first boot "
                     "relabel the file systems", os->selinux);
}

#define FIRSTBOOT_SCRIPT "/usr/local/libexec/ferry-firstboot"
#define FIRSTBOOT_UNIT "/etc/systemd/system/ferry-firstboot.service"

int
guest_install_agent (struct ferry_guest *g, struct ferry_guest_os *os,
                     const struct ferry_guest_convert_options *opts,
                     struct ferry_guest_report *r)
{
  const char *pm = os->package_management, *install;
  CLEANUP_FREE char *script = NULL;
  static const char unit[] =
    "[Unit]\n"
    "Description=ferry: install qemu-guest-agent after the move to KVM\n"
    "Wants=network-online.target\n"
    "After=network-online.target\n"
    "\n"
    "[Service]\n"
    "Type=oneshot\n"
    "ExecStart=" FIRSTBOOT_SCRIPT "\n"
    "TimeoutStartSec=600\n"
    "\n"
    "[Install]\n"
    "WantedBy=multi-user.target\n";

  if (opts && opts->no_guest_agent)
    return guest_step (r, "guest-agent", FERRY_GUEST_STEP_SKIPPED,
                       "not asked for");
  if (guest_exists (g, "/usr/bin/qemu-ga") || guest_exists (g, "/usr/sbin/qemu-ga"))
    return guest_step (r, "guest-agent", FERRY_GUEST_STEP_SKIPPED,
                       "qemu-guest-agent is installed already");
  if (!pm)
    return guest_step (r, "guest-agent", FERRY_GUEST_STEP_SKIPPED,
                       "the guest's package manager is unknown");
  if (strcmp (pm, "apt") == 0)
    install = "apt-get update && apt-get install -y qemu-guest-agent";
  else if (strcmp (pm, "dnf") == 0)
    install = "dnf -y install qemu-guest-agent";
  else if (strcmp (pm, "yum") == 0)
    install = "yum -y install qemu-guest-agent";
  else if (strcmp (pm, "zypper") == 0)
    install = "zypper -n install qemu-guest-agent";
  else
    return guest_step (r, "guest-agent", FERRY_GUEST_STEP_SKIPPED,
                       "ferry does not drive the guest's package manager %s",
                       pm);
  if (!os->init_system || strcmp (os->init_system, "systemd") != 0)
    return guest_step (r, "guest-agent", FERRY_GUEST_STEP_SKIPPED,
                       "first-boot installs need systemd; the guest runs %s",
                       os->init_system ? os->init_system : "an unknown init");

  /* It runs at each boot until the install succeeds (the network may not
   * be up at the first), then removes itself. */
  script = guest_printf (
    "#!/bin/sh\n"
    "# Written by ferry when the VM moved to KVM: install qemu-guest-agent\n"
    "# once the network is up, then remove this service.\n"
    "export DEBIAN_FRONTEND=noninteractive\n"
    "log=/var/log/ferry-firstboot.log\n"
    "date >>\"$log\"\n"
    "if ( %s ) >>\"$log\" 2>&1; then\n"
    "  systemctl enable --now qemu-guest-agent >>\"$log\" 2>&1 || true\n"
    "  systemctl disable ferry-firstboot.service >>\"$log\" 2>&1\n"
    "  rm -f " FIRSTBOOT_UNIT " \"$0\"\n"
    "else\n"
    "  echo 'ferry-firstboot: qemu-guest-agent not installed yet; trying again next boot' >>\"$log\"\n"
    "fi\n"
    "exit 0\n", install);
  if (!script)
    return ferry_error (ENOMEM, "out of memory");
  if (guestfs_mkdir_p (g->g, "/usr/local/libexec") == -1 ||
      guestfs_mkdir_p (g->g, "/etc/systemd/system/multi-user.target.wants") == -1) {
    guest_error (g, "installing the first-boot service");
    goto fail;
  }
  if (guest_write (g, FIRSTBOOT_SCRIPT, script) == -1 ||
      guest_write (g, FIRSTBOOT_UNIT, unit) == -1)
    goto fail;
  if (guestfs_chmod (g->g, 0755, FIRSTBOOT_SCRIPT) == -1 ||
      guestfs_ln_sf (g->g, FIRSTBOOT_UNIT,
                     "/etc/systemd/system/multi-user.target.wants/ferry-firstboot.service") == -1) {
    guest_error (g, "installing the first-boot service");
    goto fail;
  }
  return guest_step (r, "guest-agent", FERRY_GUEST_STEP_DONE,
                     "ferry-firstboot.service installs qemu-guest-agent with "
                     "%s at the first boot with a network", pm);

 fail:
  guest_step (r, "guest-agent", FERRY_GUEST_STEP_FAILED, "%s", ferry_get_error ());
  return -1;
}
