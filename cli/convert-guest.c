/* ferry convert-guest: make the Linux guest on a VM's disks boot on KVM
 * (virtio disk and NIC), in place, all or nothing: the images change only
 * when every step succeeded (lib/guest/overlay.c).
 *
 * Exit 0 when converted; 1 when refused or failed (the images are as they
 * were; the message says why, and the steps run so far are listed).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include <ferry/guest.h>

#include "ferry.h"

json_object *
guest_report_to_json (const struct ferry_guest_report *r)
{
  json_object *o = json_object_new_object (), *a = json_object_new_array ();
  size_t i;

  if (r) {
    json_object_object_add (o, "os", r->os ? json_object_new_string (r->os) : NULL);
    json_object_object_add (o, "root", r->root ? json_object_new_string (r->root) : NULL);
    json_object_object_add (o, "seconds", json_object_new_double (r->seconds));
    for (i = 0; i < r->nr_steps; i++) {
      json_object *s = json_object_new_object ();
      json_object_object_add (s, "step", json_object_new_string (r->steps[i].name));
      json_object_object_add (s, "status", json_object_new_string (
                                ferry_guest_step_status_name (r->steps[i].status)));
      json_object_object_add (s, "detail", r->steps[i].detail
                              ? json_object_new_string (r->steps[i].detail) : NULL);
      json_object_array_add (a, s);
    }
  }
  json_object_object_add (o, "steps", a);
  return o;
}

void
print_guest_report (FILE *fp, const struct ferry_guest_report *r)
{
  size_t i;

  if (!r)
    return;
  for (i = 0; i < r->nr_steps; i++)
    fprintf (fp, "  %-8s %-13s %s\n",
             ferry_guest_step_status_name (r->steps[i].status),
             r->steps[i].name, r->steps[i].detail ? r->steps[i].detail : "");
}

int
cmd_convert_guest (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "json", no_argument, NULL, 'j' },
    { "format", required_argument, NULL, 'f' },
    { "mac", required_argument, NULL, 'm' },
    { "no-guest-agent", no_argument, NULL, 'A' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct ferry_guest_convert_options opts = { 0 };
  struct ferry_guest_report *report = NULL;
  struct ferry_guest_disk *disks;
  const char **macs = NULL;
  const char *format = NULL;
  size_t nr_macs = 0;
  bool json = false;
  int c, n, r;

  while ((c = getopt_long (argc, argv, "f:h", long_options, NULL)) != -1) {
    switch (c) {
    case 'j': json = true; break;
    case 'f': format = optarg; break;
    case 'A': opts.no_guest_agent = true; break;
    case 'm': {
      const char **v = realloc (macs, (nr_macs + 2) * sizeof *v);
      if (!v)
        return 1;
      macs = v;
      macs[nr_macs++] = optarg;
      macs[nr_macs] = NULL;
      break;
    }
    case 'h':
      printf ("usage: ferry convert-guest [-f FMT] [--mac MAC]... "
              "[--no-guest-agent] [--json] IMAGE...\n"
              "  Convert the Linux guest on the VM's disks (boot disk first)\n"
              "  to boot on KVM with virtio disks and NICs.  --mac gives the\n"
              "  NICs' MAC addresses on the new platform, in order.\n");
      free (macs);
      return 0;
    default:
      free (macs);
      return 1;
    }
  }
  n = argc - optind;
  if (n < 1) {
    print_message ("convert-guest", "expected the VM's disk images "
                   "(see ferry convert-guest --help)");
    free (macs);
    return 1;
  }
  opts.macs = macs;
  disks = guest_disks_from_args (argv + optind, n, format);
  if (!disks) {
    free (macs);
    return 1;
  }
  if (!json)
    fprintf (stderr, "ferry convert-guest: inspecting and converting %s "
             "(the appliance takes a minute to start under TCG)\n", disks[0].path);
  r = ferry_guest_convert_image (disks, n, &opts, &report);
  free (disks);
  free (macs);
  if (json) {
    json_object *o = guest_report_to_json (report);
    json_object_object_add (o, "converted", json_object_new_boolean (r == 0));
    if (r == -1)
      json_object_object_add (o, "error", json_object_new_string (ferry_get_error ()));
    printf ("%s\n", json_object_to_json_string_ext (o,
            JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (o);
  }
  else {
    if (report && report->os)
      printf ("%s (%s):\n", report->os, report->root ? report->root : "");
    print_guest_report (stdout, report);
    if (r == 0)
      printf ("converted in %.1f s\n", report ? report->seconds : 0.0);
  }
  if (r == -1 && cli_stop)
    print_interrupted ("convert-guest", "the images were not changed");
  else if (r == -1)
    print_error ("convert-guest");
  ferry_guest_report_free (report);
  return r == 0 ? 0 : 1;
}
