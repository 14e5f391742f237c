/* ferry info: what an image is, layer by layer down its backing chain.
 *
 * The human form follows qemu-img info --backing-chain; --json prints one
 * object whose member names follow qemu-img info --output=json, with the
 * next layer nested as "backing-image", and --backing-chain --json a list
 * of layers, as qemu-img info --backing-chain --output=json does.
 *
 * The image opens with FERRY_OPEN_MISSING_BACKING: a layer whose backing
 * file (parent) is missing is shown with what it records of it and why
 * it is missing, and the chain ends there.  ferry's own JSON members:
 * "backing-missing" (true) and "backing-missing-reason".
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "ferry.h"

/* The JSON object for one layer, with its backing layers nested unless
 * FLAT. */
static json_object *
layer_to_json (struct ferry_image *img, bool flat)
{
  struct ferry_image_info info;
  json_object *o, *specific, *snaps;
  struct ferry_image *backing;
  size_t i;

  if (ferry_image_describe (img, &info) == -1)
    return NULL;
  o = json_object_new_object ();
  json_object_object_add (o, "filename", json_object_new_string (info.path));
  json_object_object_add (o, "format", json_object_new_string (info.format));
  json_object_object_add (o, "virtual-size",
                          json_object_new_uint64 (info.virtual_size));
  if (info.allocated != FERRY_SIZE_UNKNOWN)
    json_object_object_add (o, "actual-size",
                            json_object_new_uint64 (info.allocated));
  if (info.cluster_size)
    json_object_object_add (o, "cluster-size",
                            json_object_new_uint64 (info.cluster_size));
  if (info.backing_file)
    json_object_object_add (o, "backing-filename",
                            json_object_new_string (info.backing_file));
  if (info.full_backing_file)
    json_object_object_add (o, "full-backing-filename",
                            json_object_new_string (info.full_backing_file));
  if (info.backing_format)
    json_object_object_add (o, "backing-filename-format",
                            json_object_new_string (info.backing_format));
  if (info.backing_missing) {
    json_object_object_add (o, "backing-missing",
                            json_object_new_boolean (true));
    json_object_object_add (o, "backing-missing-reason",
                            json_object_new_string (info.backing_missing));
  }
  if (info.data_file)
    json_object_object_add (o, "data-file",
                            json_object_new_string (info.data_file));

  specific = json_object_new_object ();
  for (i = 0; i < info.nr_facts; i++) {
    const struct ferry_fact *f = &info.facts[i];
    json_object *v;
    switch (f->kind) {
    case FERRY_FACT_STRING: v = json_object_new_string (f->string); break;
    case FERRY_FACT_NUMBER: v = json_object_new_uint64 (f->number); break;
    default: v = json_object_new_boolean (f->number != 0); break;
    }
    json_object_object_add (specific, f->key, v);
  }
  json_object_object_add (o, "format-specific", specific);

  if (info.nr_snapshots) {
    snaps = json_object_new_array ();
    for (i = 0; i < info.nr_snapshots; i++) {
      const struct ferry_snapshot *s = &info.snapshots[i];
      json_object *so = json_object_new_object ();
      json_object_object_add (so, "id", json_object_new_string (s->id));
      json_object_object_add (so, "name", json_object_new_string (s->name));
      json_object_object_add (so, "vm-state-size",
                              json_object_new_uint64 (s->vm_state_size));
      json_object_object_add (so, "date-sec",
                              json_object_new_uint64 (s->date_sec));
      json_object_object_add (so, "date-nsec",
                              json_object_new_uint64 (s->date_nsec));
      json_object_object_add (so, "vm-clock-nsec",
                              json_object_new_uint64 (s->vm_clock_nsec));
      json_object_object_add (so, "disk-size",
                              json_object_new_uint64 (s->disk_size));
      json_object_array_add (snaps, so);
    }
    json_object_object_add (o, "snapshots", snaps);
  }

  backing = ferry_image_backing (img);
  if (backing && !flat) {
    json_object *b = layer_to_json (backing, false);
    if (b == NULL) {
      json_object_put (o);
      return NULL;
    }
    json_object_object_add (o, "backing-image", b);
  }
  return o;
}

/* The JSON list of every layer, top first (--backing-chain). */
static json_object *
chain_to_json (struct ferry_image *img)
{
  json_object *list = json_object_new_array ();
  struct ferry_image *layer;

  for (layer = img; layer; layer = ferry_image_backing (layer)) {
    json_object *o = layer_to_json (layer, true);
    if (o == NULL) {
      json_object_put (list);
      return NULL;
    }
    json_object_array_add (list, o);
  }
  return list;
}

/* Print one layer the way people read qemu-img info. */
static int
print_layer (struct ferry_image *img)
{
  struct ferry_image_info info;
  char h1[32], h2[32];
  size_t i;

  if (ferry_image_describe (img, &info) == -1)
    return -1;
  printf ("image: %s\n", info.path);
  printf ("file format: %s\n", info.format);
  printf ("virtual size: %s (%" PRIu64 " bytes)\n",
          human_size (info.virtual_size, h1, sizeof h1), info.virtual_size);
  if (info.allocated == FERRY_SIZE_UNKNOWN)
    printf ("disk size: unavailable\n");
  else
    printf ("disk size: %s\n", human_size (info.allocated, h2, sizeof h2));
  if (info.cluster_size)
    printf ("cluster_size: %" PRIu32 "\n", info.cluster_size);
  if (info.backing_file && info.full_backing_file &&
      strcmp (info.backing_file, info.full_backing_file) != 0)
    printf ("backing file: %s (actual path: %s)\n", info.backing_file,
            info.full_backing_file);
  else if (info.backing_file)
    printf ("backing file: %s\n", info.backing_file);
  if (info.backing_format)
    printf ("backing file format: %s\n", info.backing_format);
  if (info.backing_missing)
    printf ("backing file missing: %s\n", info.backing_missing);
  if (info.data_file)
    printf ("data file: %s\n", info.data_file);
  if (info.nr_snapshots) {
    printf ("Snapshot list:\n");
    printf ("%-10s %-20s %11s %19s %15s\n", "ID", "TAG", "VM SIZE", "DATE",
            "VM CLOCK");
    for (i = 0; i < info.nr_snapshots; i++) {
      const struct ferry_snapshot *s = &info.snapshots[i];
      time_t t = s->date_sec;
      struct tm tm;
      char date[32];
      uint64_t secs = s->vm_clock_nsec / 1000000000;
      strftime (date, sizeof date, "%Y-%m-%d %H:%M:%S", localtime_r (&t, &tm));
      printf ("%-10s %-20s %11s %19s %02" PRIu64 ":%02" PRIu64 ":%02" PRIu64
              ".%03" PRIu64 "\n", s->id, s->name,
              human_size (s->vm_state_size, h1, sizeof h1), date,
              secs / 3600, secs / 60 % 60, secs % 60,
              s->vm_clock_nsec / 1000000 % 1000);
    }
  }
  if (info.nr_facts) {
    printf ("Format specific information:\n");
    for (i = 0; i < info.nr_facts; i++) {
      const struct ferry_fact *f = &info.facts[i];
      switch (f->kind) {
      case FERRY_FACT_STRING:
        printf ("    %s: %s\n", f->key, f->string);
        break;
      case FERRY_FACT_NUMBER:
        printf ("    %s: %" PRIu64 "\n", f->key, f->number);
        break;
      default:
        printf ("    %s: %s\n", f->key, f->number ? "true" : "false");
        break;
      }
    }
  }
  return 0;
}

int
cmd_info (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "json", no_argument, NULL, 'j' },
    { "output", required_argument, NULL, 'o' },
    { "format", required_argument, NULL, 'f' },
    { "strict", no_argument, NULL, 's' },
    { "force-share", no_argument, NULL, 'U' },
    { "timeout", required_argument, NULL, 'T' },
    { "backing-chain", no_argument, NULL, 'b' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *format = NULL;
  bool json = false, chain = false;
  unsigned flags = FERRY_OPEN_MISSING_BACKING;
  struct ferry_image *img, *layer;
  int c, ret = 0;

  while ((c = getopt_long (argc, argv, "f:Uh", long_options, NULL)) != -1) {
    switch (c) {
    case 'j': json = true; break;
    case 'o':
      if (parse_output_option ("info", optarg, &json) == -1)
        return 1;
      break;
    case 'f': format = optarg; break;
    case 's': flags |= FERRY_OPEN_STRICT; break;
    case 'U': flags |= FERRY_OPEN_SHARED; break;
    case 'T':
      if (parse_timeout_option ("info", optarg) == -1)
        return 1;
      break;
    case 'b': chain = true; break;
    case 'h':
      printf ("usage: ferry info [--json] [-f FMT] [--backing-chain] "
              "[--strict] [-U] [--timeout S] IMAGE\n"
              "  every layer of the backing chain is shown, down to a "
              "missing one\n"
              "  --backing-chain  with --json, a list of layers (as "
              "qemu-img info --backing-chain)\n"
              "                   instead of each nested in the one above\n"
              "  --strict         refuse what would only be a warning (a "
              "bad checksum)\n"
              "  -U, --force-share  read an image another process is "
              "writing\n"
              "  --timeout S      give up on an NBD server that does not "
              "answer within S\n"
              "                   seconds (default 30 for the handshake, 60 "
              "for a request)\n");
      return 0;
    default:
      return 1;
    }
  }
  if (optind != argc - 1) {
    print_message ("info", "expected one IMAGE (see ferry info --help)");
    return 1;
  }

  img = ferry_image_open (argv[optind], format, flags);
  if (img == NULL) {
    print_read_error ("info");
    return 1;
  }
  if (json) {
    json_object *o = chain ? chain_to_json (img) : layer_to_json (img, false);
    if (o == NULL) {
      print_error ("info");
      ret = 1;
    }
    else {
      printf ("%s\n", json_object_to_json_string_ext (o,
              JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
      json_object_put (o);
    }
  }
  else {
    for (layer = img; layer; layer = ferry_image_backing (layer)) {
      if (layer != img)
        printf ("\n");
      if (print_layer (layer) == -1) {
        print_error ("info");
        ret = 1;
        break;
      }
    }
  }
  ferry_image_close (img);
  return ret;
}
