/* Hypervisor tools in a Linux guest: VMware Tools and open-vm-tools,
 * VirtualBox guest additions, Hyper-V daemons, Xen guest utilities.
 * Found among the guest's packages (libguestfs lists them from the dpkg
 * or rpm database) or, for tarball installs, by the uninstaller they
 * leave behind; removed with the guest's own package manager or that
 * uninstaller, run inside the guest.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cleanup.h"
#include "internal.h"

/* Package names (fnmatch patterns) and the hypervisor they belong to. */
static const struct {
  const char *pattern;
  const char *kind;
} tool_packages[] = {
  { "open-vm-tools*", "vmware" },
  { "vmware-tools*", "vmware" },
  { "VMwareTools*", "vmware" },
  { "kmod-vmware-tools*", "vmware" },
  { "vmware-open-vm-tools*", "vmware" },
  { "virtualbox-guest-*", "virtualbox" },
  { "virtualbox-ose-guest-*", "virtualbox" },
  { "VirtualBox-guest*", "virtualbox" },
  { "kmod-VirtualBox*", "virtualbox" },
  { "hyperv-daemons*", "hyperv" },
  { "hypervkvpd", "hyperv" },
  { "hypervvssd", "hyperv" },
  { "hypervfcopyd", "hyperv" },
  { "hyperv-tools", "hyperv" },
  { "microsoft-hyper-v", "hyperv" },
  { "kmod-microsoft-hyper-v", "hyperv" },
  { "xe-guest-utilities*", "xen" },
  { "xen-guest-agent", "xen" },
  { "kmod-xenpv*", "xen" },
};

/* Tarball installs: the file that shows one, and its uninstaller. */
static const struct {
  const char *glob;
  const char *kind;
  const char *name;
} tool_uninstallers[] = {
  { "/usr/bin/vmware-uninstall-tools.pl", "vmware", "VMware Tools" },
  { "/opt/VBoxGuestAdditions-*/uninstall.sh", "virtualbox",
    "VirtualBox Guest Additions" },
};

static int
add_tool (struct ferry_guest_os *os, const char *kind, const char *name,
          const char *version, const char *package, const char *uninstaller)
{
  struct ferry_guest_tool *v = realloc (os->tools,
                                        (os->nr_tools + 1) * sizeof *v), *t;

  if (!v)
    return ferry_error (ENOMEM, "out of memory");
  os->tools = v;
  t = &v[os->nr_tools++];
  memset (t, 0, sizeof *t);
  t->kind = strdup (kind);
  t->name = strdup (name);
  t->version = version && *version ? strdup (version) : NULL;
  t->package = package ? strdup (package) : NULL;
  t->uninstaller = uninstaller ? strdup (uninstaller) : NULL;
  if (!t->kind || !t->name)
    return ferry_error (ENOMEM, "out of memory");
  return 0;
}

int
guest_find_tools (struct ferry_guest *g, const char *root,
                  struct ferry_guest_os *os)
{
  struct guestfs_application2_list *apps;
  size_t i, j;
  bool packaged_vmware = false;

  guestfs_push_error_handler (g->g, NULL, NULL);
  apps = guestfs_inspect_list_applications2 (g->g, root);
  guestfs_pop_error_handler (g->g);
  for (i = 0; apps && i < apps->len; i++) {
    const struct guestfs_application2 *a = &apps->val[i];
    for (j = 0; j < sizeof tool_packages / sizeof tool_packages[0]; j++)
      if (fnmatch (tool_packages[j].pattern, a->app2_name, 0) == 0) {
        if (add_tool (os, tool_packages[j].kind, a->app2_name,
                      a->app2_version, a->app2_name, NULL) == -1) {
          guestfs_free_application2_list (apps);
          return -1;
        }
        if (strcmp (tool_packages[j].kind, "vmware") == 0)
          packaged_vmware = true;
        break;
      }
  }
  if (apps)
    guestfs_free_application2_list (apps);

  for (i = 0; i < sizeof tool_uninstallers / sizeof tool_uninstallers[0]; i++) {
    char **found = guest_glob (g, tool_uninstallers[i].glob);
    /* open-vm-tools ships no uninstaller; one found beside it belongs to
     * an old tarball install that the package replaced. */
    if (found && found[0] &&
        !(packaged_vmware && strcmp (tool_uninstallers[i].kind, "vmware") == 0) &&
        add_tool (os, tool_uninstallers[i].kind, tool_uninstallers[i].name,
                  NULL, NULL, found[0]) == -1) {
      guest_free_strings (found);
      return -1;
    }
    guest_free_strings (found);
  }
  return 0;
}

int
guest_remove_tools (struct ferry_guest *g, struct ferry_guest_os *os,
                    struct ferry_guest_report *r)
{
  CLEANUP_FREE char *packages = NULL;
  size_t i, len = 0;
  char *out;

  if (os->nr_tools == 0)
    return guest_step (r, "remove-tools", FERRY_GUEST_STEP_SKIPPED,
                       "no VMware, VirtualBox, Hyper-V or Xen guest tools "
                       "installed");

  /* Every packaged tool in one command, so dependencies among them (the
   * desktop part on the base package) are no obstacle. */
  for (i = 0; i < os->nr_tools; i++)
    if (os->tools[i].package)
      len += strlen (os->tools[i].package) + 1;
  if (len) {
    packages = calloc (1, len + 1);
    if (!packages)
      return ferry_error (ENOMEM, "out of memory");
    for (i = 0; i < os->nr_tools; i++)
      if (os->tools[i].package) {
        strcat (packages, " ");
        strcat (packages, os->tools[i].package);
      }
    if (os->package_format && strcmp (os->package_format, "deb") == 0) {
      CLEANUP_FREE char *cmd = guest_printf ("dpkg --purge%s 2>&1", packages);
      out = cmd ? guest_sh (g, "dpkg --purge", cmd) : NULL;
    }
    else if (os->package_format && strcmp (os->package_format, "rpm") == 0) {
      /* rpm -e for dnf, yum and zypper guests alike: it works offline and
       * removes exactly these packages. */
      CLEANUP_FREE char *cmd = guest_printf ("rpm -e%s 2>&1", packages);
      out = cmd ? guest_sh (g, "rpm -e", cmd) : NULL;
    }
    else {
      guest_step (r, "remove-tools", FERRY_GUEST_STEP_SKIPPED,
                  "left installed:%s (the guest's package format %s is not "
                  "one ferry drives: deb or rpm)", packages,
                  os->package_format ? os->package_format : "is unknown");
      out = NULL;
      len = 0;
    }
    if (len && !out) {
      guest_step (r, "remove-tools", FERRY_GUEST_STEP_SKIPPED,
                  "could not remove%s: %s", packages, ferry_get_error ());
    }
    else if (len) {
      guest_step (r, "remove-tools", FERRY_GUEST_STEP_DONE,
                  "removed with %s:%s",
                  strcmp (os->package_format, "deb") == 0 ? "dpkg --purge"
                                                          : "rpm -e",
                  packages);
      free (out);
    }
  }

  for (i = 0; i < os->nr_tools; i++) {
    CLEANUP_FREE char *cmd = NULL;
    const char *u = os->tools[i].uninstaller;
    if (!u)
      continue;
    /* The uninstallers ask nothing when stdin is not a terminal. */
    cmd = guest_printf ("'%s' </dev/null 2>&1", u);
    out = cmd ? guest_sh (g, u, cmd) : NULL;
    if (out)
      guest_step (r, "remove-tools", FERRY_GUEST_STEP_DONE,
                  "removed %s with %s", os->tools[i].name, u);
    else
      guest_step (r, "remove-tools", FERRY_GUEST_STEP_SKIPPED,
                  "could not remove %s with %s: %s", os->tools[i].name, u,
                  ferry_get_error ());
    free (out);
  }
  return 0;
}
