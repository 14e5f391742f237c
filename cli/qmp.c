/* ferry qmp: talk to a running QEMU through its QMP socket, for tests and
 * for looking at a VM before a warm migration: run one command and print
 * its return as JSON, or list the VM's disks as the library sees them
 * (ferry_qmp_query_disks).  Exit 0, or 1 with the error (a QMP error
 * reply's class after its message). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include <ferry/qmp.h>

#include "ferry.h"

/* The disks of Q as a JSON array (the caller puts it), or NULL with the
 * error set. */
static json_object *
disks_json (struct ferry_qmp *q)
{
  struct ferry_qmp_disk *disks;
  json_object *arr;
  size_t i, j, n;

  if (ferry_qmp_query_disks (q, &disks, &n) == -1)
    return NULL;
  arr = json_object_new_array ();
  for (i = 0; i < n; i++) {
    const struct ferry_qmp_disk *d = &disks[i];
    json_object *o = json_object_new_object (), *bitmaps;

    json_object_object_add (o, "device", json_object_new_string (d->device));
    json_object_object_add (o, "qdev",
                            d->qdev ? json_object_new_string (d->qdev) : NULL);
    json_object_object_add (o, "node", json_object_new_string (d->node));
    json_object_object_add (o, "file",
                            d->file ? json_object_new_string (d->file) : NULL);
    json_object_object_add (o, "format", json_object_new_string (d->format));
    json_object_object_add (o, "virtual-size",
                            json_object_new_uint64 (d->virtual_size));
    json_object_object_add (o, "read-only",
                            json_object_new_boolean (d->read_only));
    json_object_object_add (o, "removable",
                            json_object_new_boolean (d->removable));
    bitmaps = json_object_new_array ();
    for (j = 0; d->bitmaps[j]; j++) {
      json_object *b = json_object_new_object ();
      json_object_object_add (b, "name", json_object_new_string (d->bitmaps[j]));
      json_object_object_add (b, "recording",
                              json_object_new_boolean (d->bitmap_recording[j]));
      json_object_array_add (bitmaps, b);
    }
    json_object_object_add (o, "bitmaps", bitmaps);
    json_object_array_add (arr, o);
  }
  ferry_qmp_disks_free (disks, n);
  return arr;
}

/* Print O (NULL: {}) as JSON on stdout. */
static void
print_json (json_object *o)
{
  printf ("%s\n", o ? json_object_to_json_string_ext (o,
          JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE) : "{}");
}

/* Print the library's error, with a QMP error reply's class. */
static void
print_qmp_error (struct ferry_qmp *q)
{
  const char *cls = q ? ferry_qmp_error_class (q) : NULL;

  if (cls == NULL) {
    print_error ("qmp");
    return;
  }
  print_message ("qmp", "%s (%s)", ferry_get_error (), cls);
}

int
cmd_qmp (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "disks", no_argument, NULL, 'd' },
    { "event", required_argument, NULL, 'e' },
    { "timeout", required_argument, NULL, 'T' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct ferry_qmp *q;
  json_object *args = NULL, *ret = NULL;
  const char *event = NULL;
  bool disks = false;
  double timeout = 0;
  char *end;
  int c, r;

  while ((c = getopt_long (argc, argv, "h", long_options, NULL)) != -1) {
    switch (c) {
    case 'd': disks = true; break;
    case 'e': event = optarg; break;
    case 'T':
      errno = 0;
      timeout = strtod (optarg, &end);
      if (errno || end == optarg || *end || !(timeout > 0) || timeout > 86400) {
        print_message ("qmp", "--timeout '%s' is not a number of seconds "
                       "from 0 to 86400", optarg);
        return 1;
      }
      break;
    case 'h':
      printf ("usage: ferry qmp [--timeout S] [--event NAME] SOCKET COMMAND "
              "[JSON-ARGS]\n"
              "       ferry qmp [--timeout S] --disks SOCKET\n"
              "  --disks       list the VM's disks (node names, bitmaps) as "
              "JSON\n"
              "  --event NAME  then wait for the event NAME and print its "
              "data\n"
              "  --timeout S   give up on a QEMU that does not answer within "
              "S seconds (30)\n");
      return 0;
    default:
      return 1;
    }
  }
  if (disks ? optind != argc - 1 : optind != argc - 2 && optind != argc - 3) {
    print_message ("qmp", "expected SOCKET COMMAND [JSON-ARGS] or --disks "
                   "SOCKET (see ferry qmp --help)");
    return 1;
  }
  if (!disks && optind == argc - 3) {
    enum json_tokener_error e;
    args = json_tokener_parse_verbose (argv[optind + 2], &e);
    if (args == NULL || !json_object_is_type (args, json_type_object)) {
      print_message ("qmp", "JSON-ARGS '%s' is not a JSON object",
                     argv[optind + 2]);
      json_object_put (args);
      return 1;
    }
  }

  q = ferry_qmp_connect (argv[optind], timeout);
  if (q == NULL) {
    json_object_put (args);
    print_qmp_error (NULL);
    return 1;
  }
  if (disks) {
    ret = disks_json (q);
    r = ret ? 0 : -1;
  }
  else
    r = ferry_qmp_execute (q, argv[optind + 1], args, &ret);
  json_object_put (args);
  if (r == -1) {
    print_qmp_error (q);
    ferry_qmp_close (q);
    return 1;
  }
  print_json (ret);
  json_object_put (ret);
  if (event) {
    fflush (stdout);
    r = ferry_qmp_wait_event (q, event, timeout > 0 ? timeout : 30, &ret);
    if (r == 1) {
      print_json (ret);
      json_object_put (ret);
    }
    else if (r == 0)
      print_message ("qmp", "qmp:%s: no %s event within %g s", argv[optind],
                     event, timeout > 0 ? timeout : 30);
    else
      print_qmp_error (q);
  }
  ferry_qmp_close (q);
  return event && r != 1 ? 1 : 0;
}
