/* libFuzzer harness for the vhd reader: open the input as vhd (no parent
 * is looked up), describe it, walk its extents and read a bounded amount
 * of its data, close it. */
#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *path = fuzz_input_path (data, size);
  struct ferry_image *img;

  img = ferry_image_open (path, "vhd", FERRY_OPEN_NO_BACKING);
  if (img == NULL)
    return 0;
  fuzz_exercise_image (img);
  ferry_image_close (img);
  return 0;
}
