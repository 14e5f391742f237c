/* ferry verify --boot: boot a migrated VM with QEMU on an isolated network
 * and succeed when its serial console reaches a login prompt (or the
 * --expect marker) within the timeout.  On failure the console's last
 * lines are printed.  Exit 0 booted, 1 did not (or could not try).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include <ferry/guest.h>
#include <ferry/migrate.h>

#include "ferry.h"

/* Does PATH name a VM description (a libvirt domain, a QEMU script)
 * rather than a disk image? */
static bool
is_description (const char *path)
{
  size_t len = strlen (path);

  return (len > 4 && strcmp (path + len - 4, ".xml") == 0) ||
         (len > 3 && strcmp (path + len - 3, ".sh") == 0);
}

/* --console: each line the guest prints. */
static void
show_line (const char *line, void *opaque)
{
  fprintf (stderr, "console: %s\n", line);
}

/* OPTION's ARG, seconds from 1 to a day, into *OUT; -1 after a message. */
static int
parse_seconds (const char *option, const char *arg, unsigned *out)
{
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul (arg, &end, 10);
  if (errno || end == arg || *end || arg[0] == '-' || v == 0 || v > 86400) {
    print_message ("verify", "%s %s: expected seconds (1 to 86400)", option, arg);
    return -1;
  }
  *out = v;
  return 0;
}

/* "tcg; KVM stalled after ..." (see ferry.h). */
const char *
boot_accel_text (const struct ferry_guest_boot_result *res, char *buf,
                 size_t len)
{
  snprintf (buf, len, "%s%s%s", res->accel ? res->accel : "?",
            res->fallback ? "; " : "", res->fallback ? res->fallback : "");
  return buf;
}

/* The result as JSON: verify --json, and v2v's "verification". */
struct json_object *
boot_result_to_json (const struct ferry_guest_boot_result *res)
{
  json_object *j = json_object_new_object (), *a = json_object_new_array ();
  size_t i;

  json_object_object_add (j, "booted", json_object_new_boolean (res->booted));
  json_object_object_add (j, "seconds", json_object_new_double (res->seconds));
  json_object_object_add (j, "accel", res->accel ? json_object_new_string (res->accel) : NULL);
  json_object_object_add (j, "fallback", res->fallback ? json_object_new_string (res->fallback) : NULL);
  json_object_object_add (j, "matched", res->matched ? json_object_new_string (res->matched) : NULL);
  json_object_object_add (j, "reason", res->reason ? json_object_new_string (res->reason) : NULL);
  for (i = 0; res->last_lines && res->last_lines[i]; i++)
    json_object_array_add (a, json_object_new_string (res->last_lines[i]));
  json_object_object_add (j, "console", a);
  return j;
}

int
cmd_verify (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "boot", no_argument, NULL, 'b' },
    { "expect", required_argument, NULL, 'e' },
    { "timeout", required_argument, NULL, 't' },
    { "disk-bus", required_argument, NULL, 'd' },
    { "nic", required_argument, NULL, 'n' },
    { "mac", required_argument, NULL, 'm' },
    { "memory", required_argument, NULL, 'M' },
    { "vcpus", required_argument, NULL, 'c' },
    { "firmware", required_argument, NULL, 'F' },
    { "accel", required_argument, NULL, 'a' },
    { "kvm-stall", required_argument, NULL, 'S' },
    { "console", no_argument, NULL, 'C' },
    { "json", no_argument, NULL, 'j' },
    { "format", required_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct ferry_guest_boot_options o = { 0 };
  struct ferry_guest_boot_result res;
  struct ferry_guest_target target = { 0 };
  struct ferry_guest_disk *disks = NULL;
  struct stat st;
  const char **macs = NULL;
  const char *format = NULL;
  char accel[256];
  size_t nr_macs = 0, i;
  bool boot = false, json = false;
  char *end;
  int c, n, r;

  while ((c = getopt_long (argc, argv, "f:h", long_options, NULL)) != -1) {
    switch (c) {
    case 'b': boot = true; break;
    case 'e': o.expect = optarg; break;
    case 't':
      if (parse_seconds ("--timeout", optarg, &o.timeout) == -1)
        goto usage_error;
      break;
    case 'd': o.disk_bus = optarg; break;
    case 'n': o.nic_model = optarg; break;
    case 'm': {
      const char **v = realloc (macs, (nr_macs + 2) * sizeof *v);
      if (!v)
        goto usage_error;
      macs = v;
      macs[nr_macs++] = optarg;
      macs[nr_macs] = NULL;
      break;
    }
    case 'M':
      if (ferry_parse_size (optarg, &o.memory) == -1 || o.memory < (64 << 20)) {
        print_message ("verify", "--memory %s: expected a size of at least 64M", optarg);
        goto usage_error;
      }
      break;
    case 'c':
      o.vcpus = strtoul (optarg, &end, 10);
      if (*end || o.vcpus == 0 || o.vcpus > 64) {
        print_message ("verify", "--vcpus %s: expected 1 to 64", optarg);
        goto usage_error;
      }
      break;
    case 'F':
      if (strcmp (optarg, "bios") != 0 && strcmp (optarg, "uefi") != 0) {
        print_message ("verify", "--firmware %s: expected bios or uefi", optarg);
        goto usage_error;
      }
      o.firmware = optarg;
      break;
    case 'a':
      if (strcmp (optarg, "auto") == 0)
        o.accel = FERRY_GUEST_ACCEL_AUTO;
      else if (strcmp (optarg, "kvm") == 0)
        o.accel = FERRY_GUEST_ACCEL_KVM;
      else if (strcmp (optarg, "tcg") == 0)
        o.accel = FERRY_GUEST_ACCEL_TCG;
      else {
        print_message ("verify", "--accel %s: expected auto, kvm or tcg", optarg);
        goto usage_error;
      }
      break;
    case 'S':
      if (parse_seconds ("--kvm-stall", optarg, &o.kvm_stall) == -1)
        goto usage_error;
      break;
    case 'C':
      o.console_line = show_line;
      break;
    case 'j': json = true; break;
    case 'f': format = optarg; break;
    case 'h':
      printf ("usage: ferry verify --boot [--expect REGEX] [--timeout SECONDS]\n"
              "                    [--disk-bus virtio|scsi|lsi|sata|ide] [--nic virtio|e1000|none]\n"
              "                    [--mac MAC]... [--memory SIZE] [--vcpus N]\n"
              "                    [--firmware bios|uefi] [--accel auto|kvm|tcg]\n"
              "                    [--kvm-stall SECONDS] [--console] [--json]\n"
              "                    [-f FMT] DISK... | VM\n"
              "  Boot the VM on DISK... (boot disk first), or the migrated VM (a ferry\n"
              "  v2v output folder, or its NAME.xml or NAME.sh), with QEMU on an isolated\n"
              "  network, on a throw-away overlay, until its serial console shows a\n"
              "  login prompt (or REGEX).  Default: virtio disk and NIC, 1 GiB, 600 s.\n"
              "  --accel auto (the default) boots under KVM, and under TCG when KVM\n"
              "  is missing, does not start, or stalls: its console shows nothing new\n"
              "  for --kvm-stall seconds (default 30) before the login prompt.  The\n"
              "  TCG boot gets what is left of --timeout.\n");
      free (macs);
      return 0;
    default:
      goto usage_error;
    }
  }
  if (!boot) {
    print_message ("verify", "say what to verify: --boot (see ferry verify --help)");
    goto usage_error;
  }
  n = argc - optind;
  if (n < 1) {
    print_message ("verify", "expected the VM's disk images (see ferry verify --help)");
    goto usage_error;
  }
  o.macs = macs;
  if (n == 1 && stat (argv[optind], &st) == 0 &&
      (S_ISDIR (st.st_mode) || is_description (argv[optind]))) {
    /* A migrated VM: its description says what to boot and on what;
     * options given here still win. */
    if (ferry_v2v_read_target (argv[optind], &target) == -1) {
      print_error ("verify");
      goto usage_error;
    }
    n = target.nr_disks;
    disks = target.disks;
    if (!o.disk_bus)
      o.disk_bus = target.lsi_scsi && target.disk_bus &&
        strcmp (target.disk_bus, "scsi") == 0 ? "lsi" : target.disk_bus;
    if (!o.nic_model)
      o.nic_model = target.nic_model ? target.nic_model : "none";
    if (!o.macs)
      o.macs = (const char *const *) target.macs;
    if (!o.firmware)
      o.firmware = target.firmware;
    if (!o.memory)
      o.memory = target.memory;
    if (!o.vcpus)
      o.vcpus = target.vcpus;
  }
  else {
    disks = guest_disks_from_args (argv + optind, n, format);
    if (!disks)
      goto usage_error;
  }
  if (!json)
    fprintf (stderr, "ferry verify: booting %s (%s disk, %s NIC, isolated network)\n",
             argv[optind], o.disk_bus ? o.disk_bus : "virtio",
             o.nic_model ? o.nic_model : "virtio");
  r = ferry_guest_boot (disks, n, &o, &res);
  if (disks != target.disks)
    free (disks);
  free (macs);
  if (r == -1) {
    print_error ("verify");
    return 1;
  }
  if (json) {
    json_object *j = boot_result_to_json (&res);
    printf ("%s\n", json_object_to_json_string_ext (j,
            JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (j);
  }
  else if (res.booted)
    printf ("booted in %.0f s (%s): \"%s\"\n", res.seconds,
            boot_accel_text (&res, accel, sizeof accel),
            res.matched ? res.matched : "");
  else {
    fprintf (stderr, "ferry verify: %s did not boot: %s (after %.0f s, %s)\n",
             argv[optind], res.reason ? res.reason : "unknown", res.seconds,
             boot_accel_text (&res, accel, sizeof accel));
    fprintf (stderr, "ferry verify: the console's last lines:\n");
    for (i = 0; res.last_lines && res.last_lines[i]; i++)
      fprintf (stderr, "  | %s\n", res.last_lines[i]);
  }
  r = res.booted ? 0 : 1;
  ferry_guest_boot_result_free (&res);
  ferry_guest_target_free (&target);
  return r;

 usage_error:
  free (macs);
  return 1;
}
