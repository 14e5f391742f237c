/* libFuzzer harness for the VMDK text descriptor parser, called directly:
 * parse the input, and when it parses, format it and parse the result
 * again, which must give the same extents and disk database.  Then the
 * input as a file, read by ferry_vmdk_read_descriptor (a descriptor file,
 * or a hosted sparse extent's embedded one), as lib/vm reads a VMX's
 * disks.  Reading the descriptor either way opens no file the input
 * names. */
#include <stdlib.h>
#include <string.h>

#include <ferry/vmdk.h>

#include "fuzz-common.h"
#include "image/vmdk-internal.h"

/* The input as a file, as lib/vm reads a VMX's disk: what comes out
 * must hold together. */
static void
read_as_file (const uint8_t *data, size_t size)
{
  struct ferry_vmdk_descriptor fd;
  uint64_t sectors = 0;
  size_t i;

  if (ferry_vmdk_read_descriptor (fuzz_input_path (data, size), &fd) != 1)
    return;
  for (i = 0; i < fd.nr_extents; i++) {
    const struct ferry_vmdk_extent *e = &fd.extents[i];
    if (e->access == NULL || e->type == NULL || (e->file && !e->path))
      abort ();
    sectors += e->sectors;
  }
  if (sectors * 512 != fd.capacity)
    abort ();
  ferry_vmdk_descriptor_free (&fd);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct vmdk_descriptor d, d2;
  char *text;
  size_t i;

  read_as_file (data, size);

  (void) vmdk_looks_like_descriptor (data, size);
  if (vmdk_descriptor_parse ("fuzz", (const char *) data, size, &d) == -1)
    return 0;
  (void) vmdk_ddb_get (&d, "ddb.adapterType");
  if (d.create_type == NULL) {
    d.create_type = strdup ("custom");
    if (d.create_type == NULL)
      abort ();
  }
  text = vmdk_descriptor_format (&d);
  if (text == NULL)
    abort ();
  /* What ferry writes, ferry reads back the same, unless a name holds a
   * quote or a line end, which the format cannot carry. */
  if (vmdk_descriptor_parse ("fuzz-2", text, strlen (text), &d2) == 0) {
    if (d2.extents.len != d.extents.len)
      abort ();
    for (i = 0; i < d.extents.len; i++)
      if (d2.extents.ptr[i].sectors != d.extents.ptr[i].sectors ||
          d2.extents.ptr[i].type != d.extents.ptr[i].type ||
          d2.extents.ptr[i].offset != d.extents.ptr[i].offset)
        abort ();
    vmdk_descriptor_free (&d2);
  }
  free (text);
  vmdk_descriptor_free (&d);
  return 0;
}
