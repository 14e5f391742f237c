/* The boot target of <ferry/guest.h>: what booting a migrated VM needs.
 * lib/migrate fills it (ferry_v2v_read_target) from the description lib/vm
 * reads back; this frees it.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void
ferry_guest_target_free (struct ferry_guest_target *t)
{
  size_t i;

  if (!t)
    return;
  for (i = 0; i < t->nr_disks; i++) {
    free ((char *) t->disks[i].path);
    free ((char *) t->disks[i].format);
  }
  free (t->disks);
  free (t->disk_bus);
  free (t->nic_model);
  guest_free_strings (t->macs);
  free (t->firmware);
  free (t->description);
  memset (t, 0, sizeof *t);
}
