/* libFuzzer harness for the VMDK sparse readers: the input is opened as a
 * VMDK (no parent) when it starts with a hosted sparse header (KDMV), a
 * COWD header or a seSparse header, so the header, grain directory, grain
 * tables, stream footer, markers and compressed grains are all parsed from
 * it; then described, its extents walked, a bounded amount read, and
 * checked.  Text descriptors are left to fuzz-vmdk-descriptor: they name
 * other files, and a fuzzer should not open files by the names it makes. */
#include <string.h>

#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const uint8_t se_magic[8] = { 0xbe, 0xba, 0xfe, 0xca, 0, 0, 0, 0 };
  const char *path;
  struct ferry_image *img;
  struct ferry_check_result r;

  if (size < 8 || (memcmp (data, "KDMV", 4) != 0 &&
                   memcmp (data, "COWD", 4) != 0 &&
                   memcmp (data, se_magic, 8) != 0))
    return 0;
  path = fuzz_input_path (data, size);
  img = ferry_image_open (path, "vmdk", FERRY_OPEN_NO_BACKING);
  if (img) {
    fuzz_exercise_image (img);
    ferry_image_close (img);
  }
  if (ferry_image_check (path, "vmdk", 0, &r) == 0 && r.nr_messages > 0 &&
      r.messages[r.nr_messages] != NULL)
    abort ();                 /* the list is NULL-terminated */
  ferry_check_result_free (&r);
  return 0;
}
