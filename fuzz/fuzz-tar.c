/* libFuzzer harness for the OVA (tar) reader: walk the input's headers,
 * check every member lies inside it, then read it as an OVA (its OVF
 * descriptor and manifest) and write the model out. */
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"
#include "fuzz-vm-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *path = fuzz_input_path (data, size);
  struct ferry_ova *ova;
  struct ferry_vm *vm;
  size_t i;

  ova = ferry_ova_open (path);
  if (ova == NULL)
    return 0;
  for (i = 0; i < ova->nr_members; i++) {
    const struct ferry_ova_member *m = &ova->members[i];
    /* Every member's bytes lie inside the archive, after a header. */
    if (m->offset < 512 || m->offset > size || m->length > size - m->offset)
      abort ();
    if (m->name[0] == '/' || strstr (m->name, "../") ||
        strcmp (m->name, "..") == 0)
      abort ();
    if (ferry_ova_find (ova, m->name) != m)
      abort ();
  }
  ferry_ova_free (ova);

  vm = ferry_vm_read (path);
  if (vm == NULL)
    return 0;
  fuzz_exercise_vm (vm);
  ferry_vm_free (vm);
  return 0;
}
