/* ferry_guest_convert: a Linux guest made to boot on KVM, step by step.
 *
 * NOTES ON THE ORDER OF THE STEPS
 *
 * 1. Everything that can refuse runs before the first write: the OS is
 *    found and is Linux, one of its kernels has virtio drivers (virtio_pci
 *    and virtio_blk or virtio_scsi, as modules or built in), and there is a
 *    tool to rebuild the initramfs when they are modules.  A refused guest
 *    is left exactly as it was (convert-guest's overlay is then dropped, and
 *    even without one, nothing was written).
 * 2. Tools go first: removing open-vm-tools runs its package scripts,
 *    which may touch the initramfs configuration and the boot loader.
 * 3. fstab and the boot loader's device names change before the
 *    initramfs is rebuilt: initramfs-tools copies the resume device and
 *    the fstab root options into the image.
 * 4. The initramfs is rebuilt last among the boot-critical steps, and
 *    checked with the guest's own listing tool; a rebuilt image without
 *    virtio_blk fails the conversion.
 * 5. Network, SELinux and the first-boot agent install do not decide
 *    whether the guest boots; their failures still fail the conversion,
 *    so a report never says "done" over a half-written file.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cleanup.h"
#include "../common/util.h"
#include "internal.h"

const char *
ferry_guest_step_status_name (enum ferry_guest_step_status s)
{
  switch (s) {
  case FERRY_GUEST_STEP_DONE: return "done";
  case FERRY_GUEST_STEP_SKIPPED: return "skipped";
  default: return "failed";
  }
}

int
guest_step (struct ferry_guest_report *r, const char *name,
            enum ferry_guest_step_status status, const char *fmt, ...)
{
  struct ferry_guest_step *v, *s;
  va_list ap;
  int n;

  v = realloc (r->steps, (r->nr_steps + 1) * sizeof *v);
  if (!v)
    return 0;                   /* the report loses a line, nothing else */
  r->steps = v;
  s = &v[r->nr_steps];
  s->name = strdup (name);
  s->status = status;
  va_start (ap, fmt);
  n = vasprintf (&s->detail, fmt, ap);
  va_end (ap);
  if (n < 0)
    s->detail = NULL;
  if (!s->name) {
    free (s->detail);
    return 0;
  }
  r->nr_steps++;
  ferry_debug ("convert: %s: %s: %s", name, ferry_guest_step_status_name (status),
               s->detail ? s->detail : "");
  return 0;
}

void
ferry_guest_report_free (struct ferry_guest_report *r)
{
  size_t i;

  if (!r)
    return;
  for (i = 0; i < r->nr_steps; i++) {
    free (r->steps[i].name);
    free (r->steps[i].detail);
  }
  free (r->steps);
  free (r->os);
  free (r->root);
  free (r);
}

/* The kernels' virtio drivers, for the refusal: "6.1.0-21-amd64 (no
 * virtio_pci, no virtio_blk)". */
static char *
describe_kernels (const struct ferry_guest_os *os)
{
  char *s = strdup (""), *n;
  size_t i;

  for (i = 0; s && i < os->nr_kernels; i++) {
    const struct ferry_guest_kernel *k = &os->kernels[i];
    n = guest_printf ("%s%s%s (virtio_pci %s, virtio_blk %s, virtio_scsi %s)",
                      s, i ? ", " : "", k->version,
                      k->virtio_pci ? "yes" : "no", k->virtio_blk ? "yes" : "no",
                      k->virtio_scsi ? "yes" : "no");
    free (s);
    s = n;
  }
  return s;
}

/* The checks of note 1.  0, or -1 with the refusal as the error. */
static int
preflight (struct ferry_guest *g, struct ferry_guest_os *os,
           struct ferry_guest_report *r)
{
  const char *disk = g->disk_names[0];
  size_t i;
  bool usable = false, modules = false;

  if (!os->type || strcmp (os->type, "linux") != 0)
    return ferry_error (ENOTSUP, "%s: the guest on %s is %s; ferry converts "
                        "Linux guests only; nothing was changed", disk, os->root,
                        os->product_name ? os->product_name :
                        os->type ? os->type : "of an unknown type");
  if (os->nr_kernels == 0)
    return ferry_error (ENOENT, "%s: the Linux guest on %s has no kernel "
                        "modules in /lib/modules; nothing was changed",
                        disk, os->root);
  for (i = 0; i < os->nr_kernels; i++) {
    const struct ferry_guest_kernel *k = &os->kernels[i];
    if (k->vmlinuz && k->virtio_pci && k->virtio_blk)
      usable = true;
  }
  if (!usable) {
    CLEANUP_FREE char *ks = describe_kernels (os);
    return ferry_error (ENOTSUP, "%s: no kernel of the guest has virtio "
                        "drivers: %s; it cannot boot from a virtio disk on "
                        "KVM.  Install a kernel with virtio_pci and "
                        "virtio_blk (any distribution kernel since 2.6.25 "
                        "has them) and convert again; nothing was changed",
                        disk, ks ? ks : "");
  }
  /* Are the drivers modules, which an initramfs must carry? */
  for (i = 0; i < os->nr_kernels; i++)
    if (os->kernels[i].vmlinuz)
      modules = true;
  if (modules && !os->initramfs_tool && os->nr_kernels && os->kernels[0].initrd)
    return ferry_error (ENOTSUP, "%s: the guest boots with an initramfs but "
                        "has no update-initramfs, dracut or mkinitrd to "
                        "rebuild it with the virtio drivers; nothing was "
                        "changed", disk);
  {
    CLEANUP_FREE char *ks = describe_kernels (os);
    guest_step (r, "inspect", FERRY_GUEST_STEP_DONE,
                "%s on %s (%s); kernels: %s",
                os->product_name ? os->product_name : "Linux", os->root,
                os->arch ? os->arch : "unknown architecture", ks ? ks : "");
  }
  return 0;
}

int
ferry_guest_convert (struct ferry_guest *g,
                     const struct ferry_guest_convert_options *opts,
                     struct ferry_guest_report **report)
{
  struct ferry_guest_report *r;
  struct ferry_guest_os os = { 0 };
  char **roots = NULL;
  double start = now_seconds ();
  int ret = -1;
  size_t i;

  *report = NULL;
  if (g->readonly)
    return ferry_error (EROFS, "%s: the guest was opened read-only",
                        g->disk_names[0]);
  r = calloc (1, sizeof *r);
  if (!r)
    return ferry_error (ENOMEM, "out of memory");
  *report = r;

  roots = guestfs_inspect_os (g->g);
  if (!roots) {
    guest_error (g, "libguestfs: inspecting the disks");
    goto out;
  }
  if (!roots[0]) {
    ferry_error (ENOENT, "%s: no operating system found on the disks; "
                 "nothing was changed", g->disk_names[0]);
    goto out;
  }
  /* A multi-boot VM: the first Linux root is the one converted. */
  for (i = 0; roots[i]; i++) {
    CLEANUP_FREE char *type = guestfs_inspect_get_type (g->g, roots[i]);
    if (type && strcmp (type, "linux") == 0)
      break;
  }
  if (!roots[i])
    i = 0;
  if (guest_inspect_os (g, roots[i], &os) == -1)
    goto out;
  r->root = strdup (os.root);
  r->os = os.product_name ? strdup (os.product_name) : NULL;
  if (i > 0 || roots[1])
    guest_step (r, "inspect", FERRY_GUEST_STEP_DONE,
                "several operating systems on the disks; converting the one "
                "on %s", os.root);
  if (preflight (g, &os, r) == -1)
    goto out;
  r->inspect_seconds = now_seconds () - start;

  if (guest_remove_tools (g, &os, r) == -1 ||
      guest_fix_fstab (g, &os, r) == -1 ||
      guest_fix_bootloader (g, &os, r) == -1 ||
      guest_fix_initramfs (g, &os, r) == -1 ||
      guest_fix_network (g, &os, opts, r) == -1 ||
      guest_fix_selinux (g, &os, r) == -1 ||
      guest_install_agent (g, &os, opts, r) == -1)
    goto out;
  if (guestfs_sync (g->g) == -1) {
    guest_error (g, "libguestfs: flushing the disks");
    goto out;
  }
  ret = 0;

 out:
  r->seconds = now_seconds () - start;
  guest_os_free (&os);
  guest_free_strings (roots);
  return ret;
}
