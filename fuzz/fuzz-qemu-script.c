/* libFuzzer harness for the reader of the QEMU launch scripts ferry
 * writes (ferry_vm_read_qemu, what `verify --boot` reads of a v2v
 * output): parse the input as a script, write the model out in every
 * target's description, and write it as a script again and read that
 * back, which must give the same disks and NICs.  Nothing is run, and
 * nothing the input names is opened. */
#include "fuzz-vm-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ferry_vm *vm;

  vm = ferry_vm_read_qemu ("fuzz.sh", "/nonexistent/ferry-fuzz",
                           (const char *) data, size);
  if (vm == NULL)
    return 0;
  fuzz_exercise_vm (vm);
  fuzz_read_back (vm, false);
  ferry_vm_free (vm);
  return 0;
}
