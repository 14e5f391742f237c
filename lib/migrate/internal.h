/* lib/migrate private interface: what planning (plan.c) and running
 * (cold.c) a cold V2V share.  Nothing outside lib/migrate includes it. */
#ifndef FERRY_MIGRATE_INTERNAL_H
#define FERRY_MIGRATE_INTERNAL_H

#include <ferry/image.h>
#include <ferry/migrate.h>

#include "../common/error.h"

/* Open the source image of disk D (read-only, no backing chain outside
 * the package): the file, or the OVA member in place.  NULL with the
 * error set, naming the disk. */
struct ferry_image *v2v_open_source (const struct ferry_vm_disk *d,
                                     const char *label);

/* The bytes of data in IMG (its extents that do not read as zeroes), by
 * walking the extents; UINT64_MAX when the image cannot tell. */
uint64_t v2v_data_bytes (struct ferry_image *img);

/* The extension of target files of FORMAT ("qcow2", "vmdk", "img"). */
const char *v2v_extension (const char *format);

#endif /* FERRY_MIGRATE_INTERNAL_H */
