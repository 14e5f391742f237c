/* ferry v2v: migrate a VM, cold, from an OVA, an OVF, a VMX or a .vbox
 * to libvirt, QEMU, an OVA, or a local folder.
 *
 * It reads the description, plans the migration and runs every check
 * before any byte moves (ferry_v2v_plan), prints the plan and the
 * checks, and stops on an error; --dry-run stops there in any case.
 * Otherwise it converts the disks with progress per disk and overall, and
 * prints a summary.  SIGINT, SIGTERM, SIGHUP and SIGQUIT stop the copy;
 * the output folder is then never left behind (lib/migrate/cold.c).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <ferry/guest.h>
#include <ferry/job.h>
#include <ferry/migrate.h>
#include <ferry/store.h>
#include <ferry/vm.h>

#include "ferry.h"

static void
usage (FILE *fp)
{
  fprintf (fp,
    "usage: ferry v2v SOURCE --to libvirt|qemu|ova|local --out DIR [-O FMT]\n"
    "                 [--network-map SRC=DST]... [--name NAME] [--keep-devices]\n"
    "                 [--flavor vmware|virtualbox] [--dry-run] [--json]\n"
    "                 [-p | --progress=bar|json|none] [-m THREADS] [-t CACHE]\n"
    "                 [--no-convert] [--no-guest-agent] [--verify [--verify-timeout S]]\n"
    "  SOURCE          an .ova, a folder with an .ovf, an .ovf, a .vmx or a .vbox\n"
    "  --to libvirt    disks and NAME.xml, a libvirt domain (virsh define NAME.xml)\n"
    "  --to qemu       disks and NAME.sh, which starts the VM with qemu-system-x86_64\n"
    "  --to ova        NAME.ova: OVF, manifest and streamOptimized VMDK disks\n"
    "  --to local      disks and NAME.json, the VM as ferry read it\n"
    "  --out DIR       the output folder; it must not exist, and appears only\n"
    "                  when everything is in it\n"
    "  -O FMT          disk format (default qcow2; an OVA holds vmdk)\n"
    "  --network-map   SRC=DST connects the NICs on network SRC to DST; a bare DST\n"
    "                  takes every network no other rule maps\n"
    "  --name NAME     the VM's new name\n"
    "  --keep-devices  keep the source's disk buses and NIC models (default: virtio)\n"
    "  --flavor        the OVF dialect of an OVA: vmware (default) or virtualbox\n"
    "  --dry-run       run the checks and print the plan; change nothing\n"
    "  --json          print the plan (and the run's result) as JSON on stdout\n"
    "  -p, --progress  progress per disk and overall (a bar on a terminal, the\n"
    "                  default there); --progress=json prints JSON lines on stdout\n"
    "  -m THREADS      copy workers (default: one per core)\n"
    "  -t unsafe       flush nothing before the output folder is renamed into\n"
    "                  place (qemu-img's default; faster, not crash-safe)\n"
    "  --no-convert    leave the guest as it is (by default a Linux guest is made\n"
    "                  to boot on KVM: virtio drivers, stable device names, no\n"
    "                  VMware/VirtualBox/Hyper-V tools; see ferry convert-guest)\n"
    "  --no-guest-agent  do not install qemu-guest-agent at first boot\n"
    "  --verify        boot the result with QEMU on an isolated network until a\n"
    "                  login prompt (see ferry verify --boot); exit 1 if it does not\n"
    "  --verify-timeout S  seconds the boot may take (default 600)\n"
    "  --store PATH    the job store the migration is kept in, so that an\n"
    "                  interrupted one resumes (ferry job resume ID; default\n"
    "                  $FERRY_STORE, else $XDG_STATE_HOME/ferry/ferry.db)\n");
}

/* "1.5 GiB" into BUF. */
static const char *
size_str (uint64_t bytes, char *buf, size_t len)
{
  return human_size (bytes, buf, len);
}

/* Where a device sits: "scsi 0:1". */
static const char *
place (enum ferry_vm_bus bus, int controller, int unit, char *buf,
       size_t len)
{
  if (controller >= 0 && unit >= 0)
    snprintf (buf, len, "%s %d:%d", ferry_vm_bus_name (bus), controller,
              unit);
  else
    snprintf (buf, len, "%s", ferry_vm_bus_name (bus));
  return buf;
}

static const char *const target_names[] = {
  [FERRY_V2V_LIBVIRT] = "libvirt", [FERRY_V2V_QEMU] = "qemu",
  [FERRY_V2V_OVA] = "ova", [FERRY_V2V_LOCAL] = "local",
};

/* The remedy of check C, with the flag that sets the option it changes
 * (C's input), in BUF when there is one. */
static const char *
remedy_of (const struct ferry_v2v_check *c, char *buf, size_t len)
{
  const char *hint = input_hint (c->input);

  if (hint == NULL)
    return c->remedy;
  snprintf (buf, len, "%s (%s)", c->remedy, hint);
  return buf;
}

/* Print the plan for people. */
void
print_plan (const struct ferry_v2v_plan *plan,
            const struct ferry_v2v_options *opts)
{
  const struct ferry_vm *vm = plan->vm;
  char a[32], b[32], c[32];
  size_t i;

  printf ("Source: %s (%s%s%s%s%s)\n", vm->source, vm->source_type,
          vm->source_version ? " " : "",
          vm->source_version ? vm->source_version : "",
          vm->producer ? ", " : "", vm->producer ? vm->producer : "");
  printf ("VM: %s\n", vm->name ? vm->name : "(no name)");
  printf ("  guest OS: %s\n", vm->os_type ? vm->os_type : "not given");
  printf ("  firmware: %s%s\n", vm->firmware == FERRY_VM_FIRMWARE_UEFI ?
          "UEFI" : "BIOS", vm->secure_boot ? ", secure boot" : "");
  printf ("  CPUs: %u", vm->vcpus ? vm->vcpus : 1);
  if (vm->sockets)
    printf (" (%u socket%s, %u core%s each, %u thread%s each)", vm->sockets,
            vm->sockets == 1 ? "" : "s", vm->cores, vm->cores == 1 ? "" : "s",
            vm->threads, vm->threads == 1 ? "" : "s");
  printf ("\n  memory: %s\n", vm->memory ? size_str (vm->memory, a, sizeof a)
          : "not given");
  if (vm->video)
    printf ("  video: %s%s%s\n", vm->video, vm->video_ram ? ", " : "",
            vm->video_ram ? size_str (vm->video_ram, a, sizeof a) : "");
  printf ("Disks: %zu\n", vm->nr_disks);
  for (i = 0; i < plan->nr_disks; i++) {
    const struct ferry_vm_disk *d = &vm->disks[i];
    const struct ferry_v2v_disk *pd = &plan->disks[i];
    printf ("  %zu. %s", i + 1, d->file ? d->file : "(no file)");
    if (d->format)
      printf (" [%s%s%s]", d->format, d->subformat ? " " : "",
              d->subformat ? d->subformat : "");
    if (d->compression == FERRY_VM_COMPRESSION_GZIP)
      printf (" gzip");
    printf (" on %s%s%s%s\n", place (d->bus, d->controller, d->unit, c,
                                     sizeof c),
            d->controller_model ? " (" : "",
            d->controller_model ? d->controller_model : "",
            d->controller_model ? ")" : "");
    printf ("     %s virtual, %s of data", pd->virtual_size ?
            size_str (pd->virtual_size, a, sizeof a) : "? bytes",
            size_str (pd->data_bytes, b, sizeof b));
    if (pd->source_format)
      printf (", content %s", pd->source_format);
    if (pd->migrated)
      printf (" -> %s (%s)\n", pd->target_name, pd->target_format);
    else
      printf (" -> not migrated\n");
  }
  printf ("CD-ROMs: %zu\n", vm->nr_cdroms);
  for (i = 0; i < vm->nr_cdroms; i++)
    printf ("  %zu. on %s%s%s\n", i + 1,
            place (vm->cdroms[i].bus, vm->cdroms[i].controller,
                   vm->cdroms[i].unit, c, sizeof c),
            vm->cdroms[i].image ? ", held " : ", empty",
            vm->cdroms[i].image ? vm->cdroms[i].image : "");
  printf ("NICs: %zu\n", vm->nr_nics);
  for (i = 0; i < vm->nr_nics; i++)
    printf ("  %zu. %s %s, MAC %s, network %s\n", i + 1,
            vm->nics[i].id ? vm->nics[i].id : "",
            vm->nics[i].model ? vm->nics[i].model : "?",
            vm->nics[i].mac ? vm->nics[i].mac : "generated",
            vm->nics[i].network ? vm->nics[i].network : "(none)");
  printf ("Target: %s, %s/%s\n", target_names[opts->target], plan->out_dir,
          plan->description);
  printf ("  needs about %s, %s free\n",
          size_str (plan->space_needed, a, sizeof a),
          size_str (plan->space_free, b, sizeof b));
  for (i = 0; i < vm->nr_notes; i++)
    printf ("Note: %s\n", vm->notes[i]);
  if (plan->nr_checks == 0)
    printf ("Checks: all passed\n");
  else {
    printf ("Checks:\n");
    for (i = 0; i < plan->nr_checks; i++) {
      char buf[512];
      printf ("  %s: %s\n    remedy: %s\n",
              plan->checks[i].severity == FERRY_V2V_ERROR ? "error"
              : "warning", plan->checks[i].message,
              remedy_of (&plan->checks[i], buf, sizeof buf));
    }
  }
  fflush (stdout);
}

/* The plan as one JSON object: the model, the disks' plan, the checks.
 * NULL with the error set. */
json_object *
plan_json (const struct ferry_v2v_plan *plan,
           const struct ferry_v2v_options *opts)
{
  char *model = ferry_vm_to_json (plan->vm, NULL);
  json_object *o, *a;
  size_t i;

  if (model == NULL)
    return NULL;
  o = json_object_new_object ();
  json_object_object_add (o, "vm", json_tokener_parse (model));
  free (model);
  json_object_object_add (o, "target",
                          json_object_new_string (target_names[opts->target]));
  json_object_object_add (o, "out", json_object_new_string (plan->out_dir));
  json_object_object_add (o, "description",
                          json_object_new_string (plan->description));
  json_object_object_add (o, "space-needed",
                          json_object_new_uint64 (plan->space_needed));
  json_object_object_add (o, "space-free",
                          json_object_new_uint64 (plan->space_free));
  a = json_object_new_array ();
  for (i = 0; i < plan->nr_disks; i++) {
    const struct ferry_v2v_disk *pd = &plan->disks[i];
    json_object *d = json_object_new_object ();
    json_object_object_add (d, "source", json_object_new_string (pd->source));
    if (pd->source_format)
      json_object_object_add (d, "source-format",
                              json_object_new_string (pd->source_format));
    json_object_object_add (d, "virtual-size",
                            json_object_new_uint64 (pd->virtual_size));
    json_object_object_add (d, "data-bytes",
                            json_object_new_uint64 (pd->data_bytes));
    json_object_object_add (d, "migrated",
                            json_object_new_boolean (pd->migrated));
    json_object_object_add (d, "target",
                            json_object_new_string (pd->target_name));
    json_object_object_add (d, "target-format",
                            json_object_new_string (pd->target_format));
    json_object_array_add (a, d);
  }
  json_object_object_add (o, "disks", a);
  a = json_object_new_array ();
  for (i = 0; i < plan->nr_checks; i++) {
    json_object *c = json_object_new_object ();
    json_object_object_add (c, "severity", json_object_new_string (
      plan->checks[i].severity == FERRY_V2V_ERROR ? "error" : "warning"));
    json_object_object_add (c, "message",
                            json_object_new_string (plan->checks[i].message));
    char buf[512];
    json_object_object_add (c, "remedy", json_object_new_string (
                              remedy_of (&plan->checks[i], buf, sizeof buf)));
    json_object_array_add (a, c);
  }
  json_object_object_add (o, "checks", a);
  return o;
}

/* Print O on stdout (pretty, or one line for --progress=json) and drop it. */
void
print_json_object (json_object *o, bool pretty)
{
  printf ("%s\n", json_object_to_json_string_ext (o,
          (pretty ? JSON_C_TO_STRING_PRETTY : JSON_C_TO_STRING_PLAIN) |
          JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put (o);
  fflush (stdout);
}

/* Print RES: as the "result" of the plan *JPLAN (--json; printed and
 * dropped), or without one as the last --progress=json line. */
static void
print_result (json_object **jplan, json_object *res)
{
  if (*jplan) {
    json_object_object_add (*jplan, "result", res);
    print_json_object (*jplan, true);
    *jplan = NULL;
  }
  else {
    json_object_object_add (res, "phase", json_object_new_string ("result"));
    print_json_object (res, false);
  }
}

/* What a run did, for --json (the plan's "result") and --progress=json
 * (its last line): the disks, the guest's conversion step by step, the
 * times and the verification.  VERIFIED: -1 not run, 0 failed, 1 booted;
 * JBOOT (taken over, may be NULL): the boot's result, accelerator and
 * all. */
static json_object *
result_json (const struct ferry_v2v_plan *plan,
             const struct ferry_v2v_options *opts,
             const struct ferry_v2v_summary *s, bool ok, int verified,
             double verify_seconds, json_object *jboot)
{
  json_object *o = json_object_new_object (), *a = json_object_new_array ();
  json_object *t = json_object_new_object ();
  size_t i;

  json_object_object_add (o, "ok", json_object_new_boolean (ok));
  json_object_object_add (o, "output", json_object_new_string (plan->out_dir));
  for (i = 0; i < plan->nr_disks && i < s->nr_disks; i++) {
    const struct ferry_v2v_disk *pd = &plan->disks[i];
    json_object *d;
    if (!pd->migrated)
      continue;
    d = json_object_new_object ();
    json_object_object_add (d, "target", json_object_new_string (pd->target_name));
    json_object_object_add (d, "data-bytes", json_object_new_uint64 (pd->data_bytes));
    json_object_object_add (d, "disk-bytes", json_object_new_uint64 (s->disk_bytes[i]));
    json_object_object_add (d, "seconds", json_object_new_double (s->disk_seconds[i]));
    json_object_array_add (a, d);
  }
  json_object_object_add (o, "disks", a);
  if (s->guest)
    json_object_object_add (o, "guest-conversion", guest_report_to_json (s->guest));
  else
    json_object_object_add (o, "guest-conversion-skipped", json_object_new_string (
                              opts->no_convert ? "--no-convert" :
                              s->convert_skipped ? s->convert_skipped : "not run"));
  json_object_object_add (t, "inspection", json_object_new_double (s->inspect_seconds));
  json_object_object_add (t, "conversion", json_object_new_double (s->convert_seconds));
  json_object_object_add (t, "copy", json_object_new_double (s->copy_seconds));
  if (verified != -1)
    json_object_object_add (t, "verification", json_object_new_double (verify_seconds));
  json_object_object_add (t, "total", json_object_new_double (s->seconds));
  json_object_object_add (o, "seconds", t);
  if (verified != -1)
    json_object_object_add (o, "verified", json_object_new_boolean (verified == 1));
  if (jboot)
    json_object_object_add (o, "verification", jboot);
  return o;
}

void
v2v_progress (const struct ferry_v2v_progress *p, void *opaque)
{
  struct cli_progress *cp = opaque;
  double overall = p->total ? 100.0 * p->done / p->total : 100.0;
  const struct ferry_progress *dp = &p->disk_progress;
  double disk = dp->total ? 100.0 * dp->done / dp->total : 0.0;
  char done[32], total[32];

  if (cp->mode == PROGRESS_NONE)
    return;
  if (cp->mode == PROGRESS_JSON) {
    json_object *o = json_object_new_object ();
    json_object_object_add (o, "phase", json_object_new_string (p->phase));
    if (strcmp (p->phase, "copy") == 0 && p->disk_name) {
      json_object_object_add (o, "disk", json_object_new_int (p->disk + 1));
      json_object_object_add (o, "disks", json_object_new_int (p->nr_disks));
      json_object_object_add (o, "disk_name",
                              json_object_new_string (p->disk_name));
      json_object_object_add (o, "disk_done",
                              json_object_new_uint64 (dp->done));
      json_object_object_add (o, "disk_total",
                              json_object_new_uint64 (dp->total));
    }
    json_object_object_add (o, "done", json_object_new_uint64 (p->done));
    json_object_object_add (o, "total", json_object_new_uint64 (p->total));
    json_object_object_add (o, "percent", json_object_new_double (overall));
    json_object_object_add (o, "elapsed", json_object_new_double (p->elapsed));
    json_object_object_add (o, "finished",
                            json_object_new_boolean (p->finished));
    printf ("%s\n", json_object_to_json_string_ext (o,
                                                    JSON_C_TO_STRING_PLAIN));
    fflush (stdout);
    json_object_put (o);
    return;
  }

  if (strcmp (p->phase, "convert") == 0) {
    /* No bytes to count: a line when it starts and when it ends. */
    if (p->finished)
      fprintf (stderr, "converted the guest in %.1f s\n", p->elapsed);
    else
      fprintf (stderr, "converting the guest (libguestfs; a minute or more "
               "under TCG)\n");
    fflush (stderr);
    return;
  }
  if (cp->last_phase != p->phase) {
    cp->last_phase = p->phase;
    cp->last_tenth = -1;
  }
  if (!cp->tty) {
    int tenth = (int) (overall / 10);
    if (tenth == cp->last_tenth && !p->finished)
      return;
    cp->last_tenth = tenth;
    if (strcmp (p->phase, "copy") == 0 && p->disk_name && !p->finished)
      fprintf (stderr, "    copy disk %zu/%zu %s: %5.1f%%, overall %5.1f%% "
               "(%s of %s)\n", p->disk + 1, p->nr_disks, p->disk_name, disk,
               overall, human_size (p->done, done, sizeof done),
               human_size (p->total, total, sizeof total));
    else
      fprintf (stderr, "    %s: %5.1f%% (%s of %s)\n", p->phase, overall,
               human_size (p->done, done, sizeof done),
               human_size (p->total, total, sizeof total));
    return;
  }
  if (strcmp (p->phase, "copy") == 0 && p->disk_name && !p->finished)
    fprintf (stderr, "\rdisk %zu/%zu %s %5.1f%%  overall %5.1f%%  %s / %s  "
             "%.1f MB/s\033[K", p->disk + 1, p->nr_disks, p->disk_name, disk,
             overall, human_size (p->done, done, sizeof done),
             human_size (p->total, total, sizeof total),
             dp->bytes_per_sec / 1e6);
  else
    fprintf (stderr, "\r%s %5.1f%%  %s / %s\033[K", p->phase, overall,
             human_size (p->done, done, sizeof done),
             human_size (p->total, total, sizeof total));
  if (p->finished)
    fputc ('\n', stderr);
  fflush (stderr);
}

static double
now_seconds_cli (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --verify: boot the output folder OUT as `ferry verify --boot OUT` does;
 * *JBOOT (OUT) is the boot's result as JSON when it could be tried.
 * Returns the exit status (0 booted). */
static int
v2v_verify (const char *out, unsigned timeout, bool quiet, json_object **jboot)
{
  struct ferry_guest_target t;
  struct ferry_guest_boot_options o = { .timeout = timeout };
  struct ferry_guest_boot_result res;
  const char *accel = getenv ("FERRY_ACCEL");
  const char *stall = getenv ("FERRY_KVM_STALL");
  char text[256];
  size_t i;
  int r;

  if (ferry_v2v_read_target (out, &t) == -1) {
    print_error ("v2v");
    return 1;
  }
  o.disk_bus = t.lsi_scsi && t.disk_bus && strcmp (t.disk_bus, "scsi") == 0
    ? "lsi" : t.disk_bus;
  o.nic_model = t.nic_model ? t.nic_model : "none";
  o.macs = (const char *const *) t.macs;
  o.firmware = t.firmware;
  o.memory = t.memory;
  o.vcpus = t.vcpus;
  /* FERRY_ACCEL=tcg where KVM starts but hangs guests. */
  if (accel && strcmp (accel, "tcg") == 0)
    o.accel = FERRY_GUEST_ACCEL_TCG;
  else if (accel && strcmp (accel, "kvm") == 0)
    o.accel = FERRY_GUEST_ACCEL_KVM;
  /* FERRY_KVM_STALL=SECONDS: verify --boot's --kvm-stall. */
  if (stall && *stall) {
    char *end;
    unsigned long v = strtoul (stall, &end, 10);
    if (*end || v == 0 || v > 86400)
      print_message ("v2v", "FERRY_KVM_STALL=%s: expected seconds (1 to 86400); "
                     "using the default", stall);
    else
      o.kvm_stall = v;
  }
  if (!quiet)
    fprintf (stderr, "Verifying: booting %s (%s disk, %s NIC, isolated network)\n",
             t.description, o.disk_bus ? o.disk_bus : "virtio", o.nic_model);
  r = ferry_guest_boot (t.disks, t.nr_disks, &o, &res);
  if (r == -1) {
    if (cli_stop)
      print_interrupted ("v2v", "%s is complete but was not verified", out);
    else
      print_error ("v2v");
    ferry_guest_target_free (&t);
    return 1;
  }
  *jboot = boot_result_to_json (&res);
  if (res.booted) {
    if (!quiet)
      printf ("Verified: booted to \"%s\" in %.0f s (%s)\n",
              res.matched ? res.matched : "", res.seconds,
              boot_accel_text (&res, text, sizeof text));
  }
  else {
    print_message ("v2v", "verification failed: %s did not boot: %s (after "
                   "%.0f s, %s); the console's last lines:", out,
                   res.reason ? res.reason : "unknown", res.seconds,
                   boot_accel_text (&res, text, sizeof text));
    for (i = 0; res.last_lines && res.last_lines[i]; i++)
      fprintf (stderr, "  | %s\n", res.last_lines[i]);
  }
  r = res.booted ? 0 : 1;
  ferry_guest_boot_result_free (&res);
  ferry_guest_target_free (&t);
  return r;
}

/* Print what was done. */
void
print_summary (const struct ferry_v2v_plan *plan,
               const struct ferry_v2v_summary *s)
{
  char a[32], b[32];
  size_t i;

  printf ("Migrated %s in %.2f s:\n", plan->vm->name, s->seconds);
  for (i = 0; i < plan->nr_disks; i++) {
    const struct ferry_v2v_disk *pd = &plan->disks[i];
    if (!pd->migrated)
      continue;
    printf ("  %s: %s virtual, %s of data, %s on disk, %.2f s, %.1f MB/s\n",
            pd->target_name, size_str (pd->virtual_size, a, sizeof a),
            size_str (pd->data_bytes, b, sizeof b),
            human_size (s->disk_bytes[i], (char[32]) { 0 }, 32),
            s->disk_seconds[i], s->disk_seconds[i] > 0 ?
            pd->data_bytes / s->disk_seconds[i] / 1e6 : 0.0);
  }
  printf ("  total: %s of data in %.2f s, %.1f MB/s\n",
          size_str (s->bytes, a, sizeof a), s->seconds,
          s->seconds > 0 ? s->bytes / s->seconds / 1e6 : 0.0);
  printf ("Output: %s/%s\n", plan->out_dir, plan->description);
}

/* Run PLAN as a job of the store (STORE_PATH, or the default): added,
 * then run here, so that an interruption leaves it to be resumed.  When
 * no store can be opened, the run goes on without one (a warning says
 * so).  *JOB_ID (OUT): the job's id, 0 when none.  0 done, -1 failed
 * (the error set), -2 paused or cancelled from elsewhere (said). */
static int
run_as_job (const char *source, const char *store_path, struct ferry_vm *vm,
            struct ferry_v2v_plan *plan, const struct ferry_v2v_options *opts,
            struct ferry_v2v_summary *summary, int64_t *job_id)
{
  struct ferry_job_spec spec = {
    .source = source, .to = target_names[opts->target],
    .out = opts->out_dir, .format = opts->disk_format, .name = opts->name,
    .network_map = opts->network_map, .keep_devices = opts->keep_devices,
    .flavor = opts->flavor, .threads = opts->threads,
    .no_flush = opts->no_flush, .no_convert = opts->no_convert,
    .no_guest_agent = opts->no_guest_agent,
  };
  struct ferry_job_run_options o = {
    .progress = opts->progress, .progress_opaque = opts->progress_opaque,
    .interrupt = &cli_stop, .vm = vm, .plan = plan,
  };
  struct ferry_job_outcome out;
  struct ferry_store *st;
  int r;

  *job_id = 0;
  st = ferry_store_open (store_path, 0);
  if (st == NULL) {
    if (store_path)
      return -1;
    print_message ("v2v", "warning: %s; the migration runs without a job, "
                   "so it cannot be resumed if interrupted",
                   ferry_get_error ());
    return ferry_v2v_run (plan, opts, summary);
  }
  /* The same migration, interrupted before: it goes on from there. */
  *job_id = ferry_job_find_resumable (st, &spec, plan->out_dir);
  if (*job_id > 0) {
    struct ferry_store_record rec;
    if (ferry_store_job_get (st, *job_id, &rec) == 0) {
      print_message ("v2v", "resuming job %" PRId64 " (%s), the same "
                     "migration, where it stopped", *job_id,
                     ferry_job_shown_state (st, &rec));
      if (strcmp (rec.state, "planned") != 0 &&
          ferry_job_reset (st, *job_id, false) == -1)
        *job_id = -1;
      ferry_store_record_free (&rec);
    }
  }
  else if (*job_id == 0)
    *job_id = ferry_job_add_plan (st, &spec, vm, plan);
  if (*job_id <= 0) {
    *job_id = 0;
    ferry_store_close (st);
    return -1;
  }
  r = ferry_job_run (st, *job_id, &o, &out);
  if (out.have_summary) {
    *summary = out.summary;
    out.have_summary = false;
  }
  if (r == 0 && strcmp (out.state, "done") != 0) {
    /* Paused or cancelled from elsewhere (ferry job pause ID). */
    print_message ("v2v", "%s was not written: job %" PRId64 " is %s",
                   plan->out_dir, *job_id, out.state);
    r = -2;
  }
  ferry_job_outcome_free (&out);
  ferry_store_close (st);
  return r;
}

int
cmd_v2v (int argc, char **argv)
{
  enum { OPT_TO = 256, OPT_OUT, OPT_NETMAP, OPT_NAME, OPT_KEEP, OPT_FLAVOR,
         OPT_DRY, OPT_JSON, OPT_PROGRESS, OPT_NO_CONVERT, OPT_NO_AGENT,
         OPT_VERIFY, OPT_VERIFY_TIMEOUT, OPT_STORE };
  static const struct option long_options[] = {
    { "to", required_argument, NULL, OPT_TO },
    { "out", required_argument, NULL, OPT_OUT },
    { "network-map", required_argument, NULL, OPT_NETMAP },
    { "name", required_argument, NULL, OPT_NAME },
    { "keep-devices", no_argument, NULL, OPT_KEEP },
    { "flavor", required_argument, NULL, OPT_FLAVOR },
    { "dry-run", no_argument, NULL, OPT_DRY },
    { "json", no_argument, NULL, OPT_JSON },
    { "progress", optional_argument, NULL, OPT_PROGRESS },
    { "no-convert", no_argument, NULL, OPT_NO_CONVERT },
    { "no-guest-agent", no_argument, NULL, OPT_NO_AGENT },
    { "verify", no_argument, NULL, OPT_VERIFY },
    { "verify-timeout", required_argument, NULL, OPT_VERIFY_TIMEOUT },
    { "store", required_argument, NULL, OPT_STORE },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct ferry_v2v_options opts = { .target = FERRY_V2V_LIBVIRT };
  struct cli_progress cp = { .mode = PROGRESS_BAR, .last_tenth = -1 };
  struct ferry_v2v_summary summary = { 0 };
  struct ferry_v2v_plan *plan = NULL;
  struct ferry_vm *vm = NULL;
  const char **netmap = NULL;
  size_t nr_netmap = 0;
  bool dry_run = false, json = false, have_target = false, progress_set = false;
  bool verify = false;
  unsigned verify_timeout = 0;
  double verify_seconds = 0;
  json_object *jplan = NULL, *jboot = NULL;
  const char *store_path = NULL;
  int64_t job_id = 0;
  int c, r, ret = 1;

  while ((c = getopt_long (argc, argv, "O:pm:t:h", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_TO: {
      size_t i;
      for (i = 0; i < sizeof target_names / sizeof target_names[0]; i++)
        if (strcmp (optarg, target_names[i]) == 0)
          break;
      if (i == sizeof target_names / sizeof target_names[0]) {
        print_message ("v2v", "--to %s: expected libvirt, qemu, ova or local",
                       optarg);
        goto out;
      }
      opts.target = i;
      have_target = true;
      break;
    }
    case OPT_OUT: opts.out_dir = optarg; break;
    case 'O': opts.disk_format = optarg; break;
    case OPT_NETMAP: {
      const char **n = realloc (netmap, (nr_netmap + 2) * sizeof *n);
      if (n == NULL) {
        print_message ("v2v", "out of memory");
        goto out;
      }
      netmap = n;
      netmap[nr_netmap++] = optarg;
      netmap[nr_netmap] = NULL;
      break;
    }
    case OPT_NAME: opts.name = optarg; break;
    case OPT_KEEP: opts.keep_devices = true; break;
    case OPT_FLAVOR: opts.flavor = optarg; break;
    case OPT_DRY: dry_run = true; break;
    case OPT_NO_CONVERT: opts.no_convert = true; break;
    case OPT_NO_AGENT: opts.no_guest_agent = true; break;
    case OPT_VERIFY: verify = true; break;
    case OPT_VERIFY_TIMEOUT: {
      char *end;
      unsigned long t = strtoul (optarg, &end, 10);
      if (*end || t == 0 || t > 86400) {
        print_message ("v2v", "--verify-timeout %s: expected seconds (1 to 86400)",
                       optarg);
        goto out;
      }
      verify_timeout = t;
      verify = true;
      break;
    }
    case OPT_JSON: json = true; break;
    case OPT_STORE: store_path = optarg; break;
    case 'p':
      cp.mode = PROGRESS_BAR;
      progress_set = true;
      break;
    case OPT_PROGRESS:
      progress_set = true;
      if (optarg == NULL || !strcmp (optarg, "bar"))
        cp.mode = PROGRESS_BAR;
      else if (!strcmp (optarg, "json"))
        cp.mode = PROGRESS_JSON;
      else if (!strcmp (optarg, "none"))
        cp.mode = PROGRESS_NONE;
      else {
        print_message ("v2v", "--progress=%s: expected bar, json or none",
                       optarg);
        goto out;
      }
      break;
    case 'm': {
      unsigned long t;
      if (parse_threads_option ("v2v", optarg, &t) == -1)
        goto out;
      opts.threads = t;
      break;
    }
    case 't':
      if (parse_cache_option ("v2v", optarg, &opts.no_flush) == -1)
        goto out;
      break;
    case 'h': usage (stdout); ret = 0; goto out;
    default: usage (stderr); goto out;
    }
  }
  if (optind != argc - 1) {
    print_message ("v2v", "expected one SOURCE (see ferry v2v --help)");
    goto out;
  }
  if (!have_target) {
    print_message ("v2v", "--to is required: libvirt, qemu, ova or local");
    goto out;
  }
  if (opts.out_dir == NULL) {
    print_message ("v2v", "--out DIR is required");
    goto out;
  }
  opts.network_map = netmap;
  cp.tty = isatty (STDERR_FILENO);
  /* A bar by default on a terminal; elsewhere only when asked. */
  if (!progress_set && !cp.tty)
    cp.mode = PROGRESS_NONE;
  if (verify && (opts.target == FERRY_V2V_OVA || opts.target == FERRY_V2V_LOCAL)) {
    print_message ("v2v", "--verify boots a libvirt or qemu target; --to %s "
                   "writes none", target_names[opts.target]);
    goto out;
  }
  if (json && cp.mode == PROGRESS_JSON) {
    print_message ("v2v", "--json and --progress=json both write to stdout; "
                   "choose one");
    goto out;
  }
  opts.progress = cp.mode != PROGRESS_NONE ? v2v_progress : NULL;
  opts.progress_opaque = &cp;
  opts.cancel = &cli_stop;

  vm = ferry_vm_read (argv[optind]);
  if (vm == NULL) {
    print_error ("v2v");
    goto out;
  }
  plan = ferry_v2v_plan (vm, &opts);
  if (plan == NULL) {
    print_error ("v2v");
    goto out;
  }
  if (cli_stop) {
    print_interrupted ("v2v", "nothing was written");
    goto out;
  }
  if (json) {
    /* Printed now for a dry run or a plan with errors; else after the
     * run, with its result. */
    jplan = plan_json (plan, &opts);
    if (jplan == NULL) {
      print_error ("v2v");
      goto out;
    }
    if (dry_run || plan->nr_errors) {
      print_json_object (jplan, true);
      jplan = NULL;
    }
  }
  else if (cp.mode != PROGRESS_JSON)
    print_plan (plan, &opts);
  if (plan->nr_errors) {
    size_t i;
    /* The errors again on stderr, naming the source, for whoever reads
     * only that. */
    for (i = 0; i < plan->nr_checks; i++) {
      char buf[512];
      if (plan->checks[i].severity == FERRY_V2V_ERROR)
        print_message ("v2v", "%s: %s (%s)", vm->source,
                       plan->checks[i].message,
                       remedy_of (&plan->checks[i], buf, sizeof buf));
    }
    print_message ("v2v", "%zu check%s failed: nothing was done",
                   plan->nr_errors, plan->nr_errors == 1 ? "" : "s");
    goto out;
  }
  if (dry_run) {
    ret = 0;
    goto out;
  }

  r = run_as_job (argv[optind], store_path, vm, plan, &opts, &summary, &job_id);
  print_removed ("v2v", (const char *const *) summary.removed);
  if (r == -2)
    goto out;
  if (r == -1) {
    if (json || cp.mode == PROGRESS_JSON) {
      print_result (&jplan, result_json (plan, &opts, &summary, false, -1, 0, NULL));
    }
    else if (summary.guest) {
      printf ("Guest conversion:\n");
      print_guest_report (stdout, summary.guest);
      fflush (stdout);
    }
    if (cli_stop && job_id > 0)
      print_interrupted ("v2v", "%s was not written; job %" PRId64 " is "
                         "paused: ferry job resume %" PRId64 " goes on where "
                         "it stopped", plan->out_dir, job_id, job_id);
    else if (cli_stop)
      print_interrupted ("v2v", "%s was not written", plan->out_dir);
    else {
      print_error ("v2v");
      if (job_id > 0)
        print_message ("v2v", "job %" PRId64 " keeps what was done: ferry job "
                       "retry %" PRId64 " goes on from there once the cause "
                       "is fixed, ferry job cancel %" PRId64 " removes it",
                       job_id, job_id, job_id);
    }
    goto out;
  }
  if (!json && cp.mode != PROGRESS_JSON) {
    if (summary.guest) {
      printf ("Guest conversion (%s, %.1f s):\n",
              summary.guest->os ? summary.guest->os : "Linux",
              summary.inspect_seconds + summary.convert_seconds);
      print_guest_report (stdout, summary.guest);
    }
    else if (opts.no_convert)
      printf ("Guest conversion: not done (--no-convert)\n");
    else if (summary.convert_skipped)
      printf ("Guest conversion: skipped: %s\n", summary.convert_skipped);
    print_summary (plan, &summary);
  }
  ret = 0;
  if (verify) {
    double t0 = now_seconds_cli ();
    ret = v2v_verify (plan->out_dir, verify_timeout, json || cp.mode == PROGRESS_JSON,
                      &jboot);
    verify_seconds = now_seconds_cli () - t0;
    if (!json && cp.mode != PROGRESS_JSON)
      printf ("Times: inspection %.1f s, conversion %.1f s, copy %.1f s, "
              "verification %.1f s\n", summary.inspect_seconds,
              summary.convert_seconds, summary.copy_seconds, verify_seconds);
  }
  else if (!json && cp.mode != PROGRESS_JSON)
    printf ("Times: inspection %.1f s, conversion %.1f s, copy %.1f s\n",
            summary.inspect_seconds, summary.convert_seconds,
            summary.copy_seconds);
  if (json || cp.mode == PROGRESS_JSON) {
    print_result (&jplan, result_json (plan, &opts, &summary, ret == 0,
                                       verify ? ret == 0 : -1, verify_seconds,
                                       jboot));
    jboot = NULL;
  }

 out:
  if (jplan)
    json_object_put (jplan);
  if (jboot)
    json_object_put (jboot);
  ferry_v2v_summary_free (&summary);
  ferry_v2v_plan_free (plan);
  ferry_vm_free (vm);
  free (netmap);
  return ret;
}
