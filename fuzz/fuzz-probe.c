/* libFuzzer harness for the format probe: probe the input, then open it
 * with the probed format (no backing files) and read a little of it, as
 * ferry info and convert do without -f. */
#include <string.h>

#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *path = fuzz_input_path (data, size);
  const char *format;
  struct ferry_image *img;

  format = ferry_image_probe (path);
  if (format == NULL)
    return 0;
  if (strlen (format) == 0)
    abort ();
  img = ferry_image_open (path, NULL, FERRY_OPEN_NO_BACKING);
  if (img == NULL)
    return 0;
  /* The open must pick the driver the probe named. */
  if (strcmp (ferry_image_format (img), format) != 0)
    abort ();
  fuzz_exercise_image (img);
  ferry_image_close (img);
  return 0;
}
