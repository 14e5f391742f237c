/* libFuzzer harness for the libvirt domain reader (ferry_vm_read_libvirt,
 * what `verify --boot` reads of a v2v output): parse the input as a
 * domain, write the model out in every target's description, and write it
 * as a domain again and read that back, which must give the same disks
 * and NICs.  Relative disk names resolve into a folder that does not
 * exist; nothing the input names is opened. */
#include "fuzz-vm-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ferry_vm *vm;

  vm = ferry_vm_read_libvirt ("fuzz.xml", "/nonexistent/ferry-fuzz",
                              (const char *) data, size);
  if (vm == NULL)
    return 0;
  fuzz_exercise_vm (vm);
  fuzz_read_back (vm, true);
  ferry_vm_free (vm);
  return 0;
}
