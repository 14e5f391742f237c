/* libFuzzer harness for the OVF reader (OVF 0.9, 1.x, 2.0, vmw: and
 * vbox:Machine): parse the input as a descriptor, then write the model
 * out in every target's description. */
#include "fuzz-vm-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ferry_vm *vm;

  /* No folder: file names stay names and nothing beside is opened. */
  vm = ferry_vm_read_ovf ("fuzz.ovf", NULL, (const char *) data, size);
  if (vm == NULL)
    return 0;
  fuzz_exercise_vm (vm);
  ferry_vm_free (vm);
  return 0;
}
