/* The guest-conversion step of a cold V2V: after the disks are copied
 * into the working folder and before the description is written and the
 * folder is put in place, the Linux guest on the copies is made to boot
 * on KVM (lib/guest).
 *
 * The copies are the run's own files, removed with the working folder if
 * anything fails, so the conversion works on them directly (no overlay):
 * a refused guest (no virtio in its kernel, not Linux) fails the run and
 * leaves no output, and the source is never opened for writing.  The
 * NICs keep their MAC addresses on the target (the writers carry them
 * over), so the conversion pins interface names by MAC when every NIC
 * has one.  An OVA target is for VMware or VirtualBox: its guest is left
 * as it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/guest.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

int
v2v_convert_guest (struct ferry_v2v_plan *plan,
                   const struct ferry_v2v_options *opts,
                   const char *staging, struct ferry_v2v_summary *summary,
                   bool overlay)
{
  struct ferry_vm *vm = plan->vm;
  size_t n = 0, i, nr_macs = 0;
  CLEANUP_FREE struct ferry_guest_disk *disks = NULL;
  CLEANUP_FREE char **paths = NULL;
  CLEANUP_FREE const char **macs = NULL;
  struct ferry_guest_convert_options copts = {
    .no_guest_agent = opts->no_guest_agent,
  };
  struct ferry_v2v_progress p = { .phase = "convert" };
  struct ferry_guest *g = NULL;
  double start = now_seconds (), launched;
  int r = -1;

  if (opts->no_convert || opts->target == FERRY_V2V_OVA)
    return 0;
  disks = calloc (plan->nr_disks + 1, sizeof *disks);
  paths = calloc (plan->nr_disks + 1, sizeof *paths);
  macs = calloc (vm->nr_nics + 1, sizeof *macs);
  if (!disks || !paths || !macs)
    return ferry_error (ENOMEM, "out of memory");
  for (i = 0; i < plan->nr_disks; i++) {
    const struct ferry_v2v_disk *pd = &plan->disks[i];
    if (!pd->migrated)
      continue;
    if (asprintf (&paths[n], "%s/%s", staging, pd->target_name) == -1) {
      paths[n] = NULL;
      ferry_error (ENOMEM, "out of memory");
      goto out;
    }
    disks[n].path = paths[n];
    disks[n].format = pd->target_format;
    n++;
  }
  if (n == 0) {
    r = 0;
    goto out;
  }
  for (i = 0; i < vm->nr_nics; i++)
    if (vm->nics[i].mac)
      macs[nr_macs++] = vm->nics[i].mac;
  /* Pinning by MAC needs every NIC's; otherwise the driver match. */
  if (nr_macs && nr_macs == vm->nr_nics)
    copts.macs = macs;

  /* Disks with no partition table or file system (data disks, blank
   * ones) hold no OS to convert: they are copied as they are, without the
   * minute an appliance takes to start. */
  {
    bool blank;
    if (ferry_guest_disks_blank (disks, n, &blank) == -1)
      goto out;
    if (blank) {
      summary->convert_skipped = "no partition table or file system on the "
        "disks, so no operating system to convert: copied as they are";
      r = 0;
      goto out;
    }
  }
  if (opts->progress)
    opts->progress (&p, opts->progress_opaque);
  if (overlay) {
    launched = now_seconds ();
    r = ferry_guest_convert_image (disks, n, &copts, &summary->guest);
  }
  else {
    g = ferry_guest_open (disks, n, 0);
    if (!g)
      goto out;
    launched = now_seconds ();
    r = ferry_guest_convert (g, &copts, &summary->guest);
    if (ferry_guest_close (g) == -1)
      r = -1;
  }
  if (r == -1)
    goto out;
  /* Inspection: the appliance's start and finding the OS; conversion:
   * the rest. */
  summary->inspect_seconds = launched - start +
    (summary->guest ? summary->guest->inspect_seconds : 0);
  summary->convert_seconds = now_seconds () - start - summary->inspect_seconds;
  if (opts->progress) {
    p.finished = true;
    p.elapsed = now_seconds () - start;
    opts->progress (&p, opts->progress_opaque);
  }

 out:
  for (i = 0; i < n; i++)
    free (paths[i]);
  if (r == -1) {
    ferry_error_prefix ("converting the guest");
    /* A guest ferry refuses can still be copied as it is: the options'
     * no_convert does that. */
    if (ferry_get_errno () == ENOENT || ferry_get_errno () == ENOTSUP)
      ferry_error_input ("no_convert");
  }
  return r;
}
