/* lib/migrate private interface: what planning (plan.c) and running
 * (cold.c) a cold V2V share.  Nothing outside lib/migrate includes it. */
#ifndef FERRY_MIGRATE_INTERNAL_H
#define FERRY_MIGRATE_INTERNAL_H

#include <ferry/image.h>
#include <ferry/migrate.h>

#include "../common/error.h"

/* Open the source image of disk D (read-only, no backing chain outside
 * the package): the file, or the OVA member in place, or its gzip stream.
 * SIZE_HINT is the size of a raw disk in a stream (which records none):
 * the plan's, once it has measured the stream.  NULL with the error set,
 * naming the disk. */
struct ferry_image *v2v_open_source (const struct ferry_vm_disk *d,
                                     const char *label, uint64_t size_hint);

/* The bytes of data in IMG (its extents that do not read as zeroes), by
 * walking the extents; UINT64_MAX when the image cannot tell. */
uint64_t v2v_data_bytes (struct ferry_image *img);

/* The extension of target files of FORMAT ("qcow2", "vmdk", "img"). */
const char *v2v_extension (const char *format);

/* convert.c: convert the guest on the disks copied into STAGING, unless
 * OPTS says not to or the target is not KVM.  Sets summary->guest and
 * summary->convert_seconds.  OVERLAY: convert on overlays, written into
 * the copies only when the conversion succeeded (a durable run, whose
 * conversion starts again after a kill).  0, or -1 with the error set. */
int v2v_convert_guest (struct ferry_v2v_plan *plan,
                       const struct ferry_v2v_options *opts,
                       const char *staging, struct ferry_v2v_summary *summary,
                       bool overlay);

#endif /* FERRY_MIGRATE_INTERNAL_H */
