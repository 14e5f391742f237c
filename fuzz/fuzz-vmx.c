/* libFuzzer harness for the VMX reader: parse the input as a .vmx, then
 * write the model out in every target's description.  Disk names resolve
 * into a folder that does not exist, so no VMDK descriptor is read. */
#include "fuzz-vm-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ferry_vm *vm;

  vm = ferry_vm_read_vmx ("fuzz.vmx", "/nonexistent/ferry-fuzz",
                          (const char *) data, size);
  if (vm == NULL)
    return 0;
  fuzz_exercise_vm (vm);
  ferry_vm_free (vm);
  return 0;
}
