/* ferry check: read an image's metadata without trusting it and report
 * what is inconsistent.  Exit 0 clean, 2 corruption, 3 leaks only,
 * 1 when the check could not run. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "ferry.h"

int
cmd_check (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "json", no_argument, NULL, 'j' },
    { "output", required_argument, NULL, 'o' },
    { "format", required_argument, NULL, 'f' },
    { "force-share", no_argument, NULL, 'U' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct ferry_check_result r;
  const char *format = NULL, *path;
  bool json = false;
  unsigned open_flags = 0;
  size_t i;
  int c, ret;

  while ((c = getopt_long (argc, argv, "f:Uh", long_options, NULL)) != -1) {
    switch (c) {
    case 'j': json = true; break;
    case 'o':
      if (parse_output_option ("check", optarg, &json) == -1)
        return 1;
      break;
    case 'f': format = optarg; break;
    case 'U': open_flags |= FERRY_OPEN_SHARED; break;
    case 'h':
      printf ("usage: ferry check [-f FMT] [--json] [-U] IMAGE\n"
              "  -U, --force-share  check an image another process is "
              "writing\n");
      return 0;
    default:
      return 1;
    }
  }
  if (optind != argc - 1) {
    print_message ("check", "expected one IMAGE (see ferry check --help)");
    return 1;
  }
  path = argv[optind];

  if (ferry_image_check (path, format, open_flags, &r) == -1) {
    print_read_error ("check");
    return 1;
  }
  ret = r.corruptions ? 2 : r.leaks ? 3 : 0;

  if (json) {
    json_object *o = json_object_new_object ();
    json_object *msgs = json_object_new_array ();
    json_object_object_add (o, "filename", json_object_new_string (path));
    json_object_object_add (o, "corruptions",
                            json_object_new_uint64 (r.corruptions));
    json_object_object_add (o, "leaks", json_object_new_uint64 (r.leaks));
    json_object_object_add (o, "allocated-clusters",
                            json_object_new_uint64 (r.allocated_clusters));
    json_object_object_add (o, "total-clusters",
                            json_object_new_uint64 (r.total_clusters));
    for (i = 0; i < r.nr_messages; i++)
      json_object_array_add (msgs, json_object_new_string (r.messages[i]));
    json_object_object_add (o, "messages", msgs);
    printf ("%s\n", json_object_to_json_string_ext (o,
            JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (o);
  }
  else {
    for (i = 0; i < r.nr_messages; i++)
      printf ("%s: %s\n", path, r.messages[i]);
    if (r.nr_messages < r.corruptions + r.leaks)
      printf ("(%" PRIu64 " more problems not listed)\n",
              r.corruptions + r.leaks - r.nr_messages);
    if (r.corruptions)
      printf ("\n%" PRIu64 " errors were found on the image.\n"
              "Data may be corrupted, or further writes to the image may "
              "corrupt it.\n", r.corruptions);
    if (r.leaks)
      printf ("\n%" PRIu64 " leaked clusters were found on the image.\n"
              "This means waste of disk space, but no harm to data.\n",
              r.leaks);
    if (!r.corruptions && !r.leaks)
      printf ("No errors were found on the image.\n");
    if (r.total_clusters)
      printf ("%" PRIu64 "/%" PRIu64 " = %.2f%% allocated\n",
              r.allocated_clusters, r.total_clusters,
              100.0 * r.allocated_clusters / r.total_clusters);
  }
  ferry_check_result_free (&r);
  return ret;
}
