/* ferry: what a VMDK's text descriptor says, read by the VMDK driver's
 * own parser without opening the disk's extents: for those who look at a
 * disk before they open it (a VMX's disks, in lib/vm: which files make
 * the disk, whether it is a snapshot, a raw device mapping or encrypted).
 *
 * Errors: calls return -1 and set the thread-local error of
 * <ferry/error.h>, naming the file and the descriptor's line.
 */
#ifndef FERRY_VMDK_H
#define FERRY_VMDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One extent line: ACCESS SECTORS TYPE ["FILE" [OFFSET]]. */
struct ferry_vmdk_extent {
  const char *access;      /* "RW", "RDONLY" or "NOACCESS" */
  uint64_t sectors;        /* of 512 bytes */
  const char *type;        /* "FLAT", "SPARSE", "ZERO", "VMFS", "VMFSSPARSE",
                              "SESPARSE", "VMFSRDM" or "VMFSRAW" */
  char *file;              /* as the line names it, or NULL (ZERO) */
  char *path;              /* FILE resolved against the descriptor's
                              folder, or NULL */
  uint64_t offset;         /* sectors into FILE (flat types), else 0 */
};

struct ferry_vmdk_descriptor {
  bool embedded;           /* inside a hosted sparse extent ("KDMV") */
  char *create_type;       /* as written, or NULL */
  char *parent_hint;       /* parentFileNameHint, or NULL */
  uint32_t cid;
  uint32_t parent_cid;     /* 0xffffffff: no parent */
  char *adapter;           /* ddb.adapterType, or NULL */
  bool encrypted;          /* encryption.* keys, which VMware adds to the
                              descriptors of the disks it encrypts */
  bool raw_device;         /* a raw device mapping: createType
                              vmfsRawDeviceMap or vmfsPassthroughRawDeviceMap,
                              or a VMFSRDM or VMFSRAW extent */
  uint64_t capacity;       /* the extents' sectors, in bytes */
  struct ferry_vmdk_extent *extents;
  size_t nr_extents;
};

/* Read the descriptor of the VMDK at PATH: a descriptor file, or the one
 * embedded in a hosted sparse extent; nothing else is opened.  Returns 1
 * with *D filled (the caller frees it with ferry_vmdk_descriptor_free()),
 * 0 when PATH holds no descriptor (no VMDK, an ESX sparse extent, a
 * stream without one, or no regular file, which is not opened), -1 when
 * it cannot be read or the descriptor is malformed. */
int ferry_vmdk_read_descriptor (const char *path,
                                struct ferry_vmdk_descriptor *d /* OUT */);
void ferry_vmdk_descriptor_free (struct ferry_vmdk_descriptor *d);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_VMDK_H */
