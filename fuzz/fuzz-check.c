/* libFuzzer harness for ferry check: check the input as qcow2 and walk the
 * result.  The check must not trust anything it reads. */
#include <string.h>

#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *path = fuzz_input_path (data, size);
  struct ferry_check_result r;
  volatile size_t sink = 0;
  size_t i;

  if (ferry_image_check (path, "qcow2", 0, &r) == 0) {
    if (r.nr_messages > 0 && r.messages == NULL)
      abort ();
    for (i = 0; i < r.nr_messages; i++)
      sink += strlen (r.messages[i]);
    if (r.messages && r.messages[r.nr_messages] != NULL)
      abort ();             /* the list is NULL-terminated */
  }
  ferry_check_result_free (&r);
  (void) sink;
  return 0;
}
