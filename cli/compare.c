/* ferry compare: are two images the same to the guest?  Exit 0 when they
 * are, 1 when not (with the first differing offset), 2 on error, as
 * qemu-img compare. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

int
cmd_compare (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "strict", no_argument, NULL, 's' },
    { "force-share", no_argument, NULL, 'U' },
    { "timeout", required_argument, NULL, 'T' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *fmt_a = NULL, *fmt_b = NULL;
  struct ferry_image *a = NULL, *b = NULL;
  bool strict = false, size_differs;
  unsigned flags = 0;
  uint64_t diff;
  int c, r, ret = 2;

  while ((c = getopt_long (argc, argv, "f:F:spUh", long_options, NULL)) != -1) {
    switch (c) {
    case 'f': fmt_a = optarg; break;
    case 'F': fmt_b = optarg; break;
    case 's': strict = true; flags |= FERRY_OPEN_STRICT; break;
    case 'U': flags |= FERRY_OPEN_SHARED; break;
    case 'p': break;   /* accepted for qemu-img compatibility */
    case 'T':
      if (parse_timeout_option ("compare", optarg) == -1)
        return 2;
      break;
    case 'h':
      printf ("usage: ferry compare [-f FMT] [-F FMT] [-s] [-U] [--timeout S] A B\n"
              "  -s, --strict   fail on a size mismatch, and refuse images "
              "that would\n"
              "                 only open with a warning (a bad checksum)\n"
              "  -U, --force-share  read images another process is "
              "writing\n"
              "  --timeout S    give up on an NBD server that does not "
              "answer within S\n"
              "                 seconds (default 30 for the handshake, 60 "
              "for a request)\n");
      return 0;
    default:
      return 2;
    }
  }
  if (optind != argc - 2) {
    print_message ("compare", "expected two images (see ferry compare --help)");
    return 2;
  }

  /* Strict mode also refuses images that would open with a warning. */
  a = ferry_image_open (argv[optind], fmt_a, flags);
  if (a == NULL) {
    print_read_error ("compare");
    return 2;
  }
  b = ferry_image_open (argv[optind + 1], fmt_b, flags);
  if (b == NULL) {
    print_read_error ("compare");
    goto out;
  }
  if (strict && ferry_image_size (a) != ferry_image_size (b)) {
    printf ("Strict mode: image size mismatch! (%" PRIu64 " and %" PRIu64
            " bytes)\n", ferry_image_size (a), ferry_image_size (b));
    ret = 1;
    goto out;
  }

  r = ferry_compare (a, b, 0, &diff, &size_differs);
  if (r == -1) {
    print_error ("compare");
    goto out;
  }
  if (r == 1) {
    printf ("Content mismatch at offset %" PRIu64 "!\n", diff);
    ret = 1;
    goto out;
  }
  if (size_differs)
    printf ("Warning: Image size mismatch!\n");
  printf ("Images are identical.\n");
  ret = 0;

 out:
  ferry_image_close (a);
  ferry_image_close (b);
  return ret;
}
