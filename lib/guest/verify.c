/* ferry_guest_boot: boot a migrated VM with QEMU and watch its serial
 * console until it reaches a login prompt (or the caller's marker), a
 * known failure, or the timeout.
 *
 * Where it runs: QEMU with KVM when that starts and TCG otherwise (or as
 * asked), no display, the first serial port on QEMU's stdout, which ferry
 * reads through a pipe.  The network is QEMU's user network with
 * restrict=on: the guest gets its DHCP answer and nothing else, no route
 * to the host's networks or beyond.  The disks are opened with
 * snapshot=on unless the caller asks otherwise, so what the boot writes
 * (journals, first-boot services) goes to a throw-away overlay and the
 * VM's first real boot is still its first.
 *
 * It lives in lib/guest rather than lib/migrate because it needs nothing
 * of a migration: only disks and what the guest expects of the hardware,
 * which `ferry verify --boot` gets from the user and `ferry v2v --verify`
 * from the VM description.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ferry/image.h>

#include "../common/cleanup.h"
#include "../common/util.h"
#include "internal.h"

/* An initramfs that waits for its root device prints nothing while it
 * waits (Debian's gives up only after 180 s): this long a silence after
 * "Waiting for root" means the device is not coming (its driver is not in
 * the initramfs). */
#define ROOT_WAIT_SILENCE 45
/* On some hosts KVM starts but a Linux guest hangs under it, silently:
 * with --accel auto, a KVM boot whose console stays empty this long is
 * tried again under TCG. */
#define KVM_SILENCE 60

/* The argument vector being built. */
DEFINE_VECTOR_TYPE (arg_vector, char *);

static int
add_arg (arg_vector *v, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static int
add_arg (arg_vector *v, const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  if (vasprintf (&s, fmt, ap) < 0)
    s = NULL;
  va_end (ap);
  if (!s || arg_vector_append (v, s) == -1) {
    free (s);
    return ferry_error (ENOMEM, "out of memory");
  }
  return 0;
}

static void
free_args (arg_vector *v)
{
  size_t i;

  for (i = 0; i < v->len; i++)
    free (v->ptr[i]);
  arg_vector_reset (v);
}

/* qemu's name for a ferry format. */
static const char *
qemu_format_name (const char *format)
{
  return strcmp (format, "vhd") == 0 ? "vpc" : format;
}

/* Search PATH for PROG; a new string or NULL. */
static char *
find_program (const char *prog)
{
  const char *path = getenv ("PATH");
  char *copy, *dir, *save = NULL, *found = NULL;

  if (strchr (prog, '/'))
    return access (prog, X_OK) == 0 ? strdup (prog) : NULL;
  copy = strdup (path ? path : "/usr/bin:/bin");
  for (dir = copy ? strtok_r (copy, ":", &save) : NULL; dir && !found;
       dir = strtok_r (NULL, ":", &save)) {
    char *p = guest_printf ("%s/%s", dir, prog);
    if (p && access (p, X_OK) == 0)
      found = p;
    else
      free (p);
  }
  free (copy);
  return found;
}

/* The OVMF firmware Debian's ovmf package installs: a code file and the
 * variable store template of the same flash size, by index. */
static const char *const ovmf_codes[] = { "/usr/share/OVMF/OVMF_CODE_4M.fd",
                                          "/usr/share/OVMF/OVMF_CODE.fd" };
static const char *const ovmf_vars[] = { "/usr/share/OVMF/OVMF_VARS_4M.fd",
                                         "/usr/share/OVMF/OVMF_VARS.fd" };

/* The index of the first pair present, or -1. */
static int
ovmf_pair (void)
{
  size_t i;

  for (i = 0; i < sizeof ovmf_codes / sizeof ovmf_codes[0]; i++)
    if (access (ovmf_codes[i], R_OK) == 0 && access (ovmf_vars[i], R_OK) == 0)
      return (int) i;
  return -1;
}

/* Copy the variable store template FROM into the open file FD (at most
 * 64 MiB: the templates are 128 KiB to 4 MiB). */
static int
copy_vars (const char *from, int fd, const char *to)
{
  char buf[65536];
  int in = open (from, O_RDONLY | O_CLOEXEC);
  off_t total = 0;
  ssize_t r;

  if (in == -1)
    return ferry_error_errno (errno, "%s", from);
  while ((r = read (in, buf, sizeof buf)) > 0 && total < (64 << 20)) {
    if (full_pwrite (fd, buf, r, total) == -1) {
      close (in);
      return ferry_error_errno (errno, "%s", to);
    }
    total += r;
  }
  close (in);
  if (r == -1)
    return ferry_error_errno (errno, "%s", from);
  return 0;
}

static int
build_argv (const struct ferry_guest_disk *disks, size_t n,
            const struct ferry_guest_boot_options *o, const char *qemu,
            enum ferry_guest_accel accel, const char *vars, arg_vector *v)
{
  const char *bus = o->disk_bus ? o->disk_bus : "virtio";
  const char *nic = o->nic_model ? o->nic_model : "virtio";
  bool uefi = o->firmware && strcmp (o->firmware, "uefi") == 0;
  uint64_t mem = o->memory ? o->memory : UINT64_C (1) << 30;
  size_t i;

  if (add_arg (v, "%s", qemu) == -1 ||
      add_arg (v, "-nodefaults") == -1 || add_arg (v, "-no-user-config") == -1 ||
      add_arg (v, "-display") == -1 || add_arg (v, "none") == -1 ||
      add_arg (v, "-no-reboot") == -1 ||
      add_arg (v, "-machine") == -1 || add_arg (v, uefi ? "q35" : "pc") == -1 ||
      add_arg (v, "-m") == -1 || add_arg (v, "%" PRIu64 "M", mem >> 20) == -1 ||
      add_arg (v, "-smp") == -1 || add_arg (v, "%u", o->vcpus ? o->vcpus : 1) == -1 ||
      add_arg (v, "-serial") == -1 || add_arg (v, "stdio") == -1 ||
      add_arg (v, "-monitor") == -1 || add_arg (v, "none") == -1)
    return -1;
  if (accel == FERRY_GUEST_ACCEL_KVM || accel == FERRY_GUEST_ACCEL_AUTO) {
    if (add_arg (v, "-accel") == -1 || add_arg (v, "kvm") == -1 ||
        add_arg (v, "-cpu") == -1 || add_arg (v, "host") == -1)
      return -1;
  }
  if (accel == FERRY_GUEST_ACCEL_TCG || accel == FERRY_GUEST_ACCEL_AUTO) {
    if (add_arg (v, "-accel") == -1 || add_arg (v, "tcg") == -1)
      return -1;
  }
  if (uefi) {
    int pair = ovmf_pair ();
    const char *code;
    if (pair == -1)
      return ferry_error (ENOENT, "UEFI boot needs OVMF (Debian's ovmf "
                          "package: /usr/share/OVMF/OVMF_CODE_4M.fd and "
                          "OVMF_VARS_4M.fd)");
    code = ovmf_codes[pair];
    CLEANUP_FREE char *vfile = qemu_opt_escape (vars);
    if (!vfile)
      return ferry_error (ENOMEM, "out of memory");
    if (add_arg (v, "-drive") == -1 ||
        add_arg (v, "if=pflash,format=raw,readonly=on,file=%s", code) == -1 ||
        add_arg (v, "-drive") == -1 ||
        add_arg (v, "if=pflash,format=raw,file=%s", vfile) == -1)
      return -1;
  }

  if (strcmp (bus, "sata") == 0) {
    if (add_arg (v, "-device") == -1 || add_arg (v, "ahci,id=ahci0") == -1)
      return -1;
  }
  else if (strcmp (bus, "scsi") == 0 || strcmp (bus, "lsi") == 0) {
    if (add_arg (v, "-device") == -1 ||
        add_arg (v, "%s,id=scsi0", strcmp (bus, "lsi") == 0 ? "lsi53c895a"
                                                            : "virtio-scsi-pci") == -1)
      return -1;
  }
  else if (strcmp (bus, "virtio") != 0 && strcmp (bus, "ide") != 0)
    return ferry_error (EINVAL, "disk bus '%s': expected virtio, scsi (virtio-scsi), "
                        "lsi (LSI 53C895A SCSI), sata or ide", bus);
  for (i = 0; i < n; i++) {
    const char *fmt = disks[i].format;
    CLEANUP_FREE char *file = NULL;
    if (!fmt && !(fmt = ferry_image_probe (disks[i].path)))
      return -1;
    if ((file = qemu_opt_escape (disks[i].path)) == NULL)
      return ferry_error (ENOMEM, "out of memory");
    if (add_arg (v, "-drive") == -1 ||
        add_arg (v, "file=%s,format=%s,if=none,id=disk%zu,cache=unsafe%s",
                 file, qemu_format_name (fmt), i,
                 o->writable ? "" : ",snapshot=on") == -1 ||
        add_arg (v, "-device") == -1)
      return -1;
    if (strcmp (bus, "virtio") == 0) {
      if (add_arg (v, "virtio-blk-pci,drive=disk%zu,bootindex=%zu", i, i) == -1)
        return -1;
    }
    else if (strcmp (bus, "sata") == 0) {
      if (add_arg (v, "ide-hd,drive=disk%zu,bus=ahci0.%zu,bootindex=%zu", i, i, i) == -1)
        return -1;
    }
    else if (strcmp (bus, "ide") == 0) {
      if (add_arg (v, "ide-hd,drive=disk%zu,bus=ide.%zu,unit=%zu,bootindex=%zu",
                   i, i / 2, i % 2, i) == -1)
        return -1;
    }
    else if (add_arg (v, "scsi-hd,drive=disk%zu,bus=scsi0.0,scsi-id=%zu,bootindex=%zu",
                      i, i, i) == -1)
      return -1;
  }

  if (strcmp (nic, "none") != 0) {
    size_t nics = 1;
    if (strcmp (nic, "virtio") == 0)
      nic = "virtio-net-pci";
    else if (strcmp (nic, "e1000") != 0 && strcmp (nic, "e1000e") != 0 &&
             strcmp (nic, "rtl8139") != 0 && strcmp (nic, "vmxnet3") != 0)
      return ferry_error (EINVAL, "NIC model '%s': expected virtio, e1000, "
                          "e1000e, rtl8139, vmxnet3 or none", nic);
    if (o->macs)
      for (nics = 0; o->macs[nics]; nics++)
        ;
    for (i = 0; i < nics; i++) {
      /* restrict=on: no route out; the guest still gets its DHCP answer. */
      if (add_arg (v, "-netdev") == -1 ||
          add_arg (v, "user,id=net%zu,restrict=on", i) == -1 ||
          add_arg (v, "-device") == -1 ||
          add_arg (v, "%s,netdev=net%zu%s%s", nic, i,
                   o->macs ? ",mac=" : "", o->macs ? o->macs[i] : "") == -1)
        return -1;
    }
  }
  return arg_vector_append (v, NULL) == -1
    ? ferry_error (ENOMEM, "out of memory") : 0;
}

static void
stop_qemu (pid_t pid)
{
  int i, status;

  kill (pid, SIGTERM);
  for (i = 0; i < 50; i++) {
    if (waitpid (pid, &status, WNOHANG) == pid)
      return;
    usleep (100 * 1000);
  }
  kill (pid, SIGKILL);
  waitpid (pid, &status, 0);
}

void
ferry_guest_boot_result_free (struct ferry_guest_boot_result *r)
{
  if (!r)
    return;
  free (r->reason);
  free (r->matched);
  free (r->accel);
  guest_free_strings (r->last_lines);
  memset (r, 0, sizeof *r);
}

/* One boot attempt with ACCEL.  *RETRY is set when KVM failed to start (or,
 * with RETRY_ON_SILENCE, the guest stayed silent under it) and TCG is
 * worth a try. */
static int
boot_once (const struct ferry_guest_disk *disks, size_t n,
           const struct ferry_guest_boot_options *o, const char *qemu,
           enum ferry_guest_accel accel, bool retry_on_silence,
           const regex_t *marker, struct ferry_guest_boot_result *res,
           bool *retry)
{
  arg_vector args = empty_vector;
  struct guest_console con = { 0 };
  CLEANUP_FREE char *errpath = NULL, *vars = NULL;
  const char *tmpdir = getenv ("TMPDIR");
  int out[2] = { -1, -1 }, errfd = -1, devnull = -1, ret = -1;
  unsigned timeout = o->timeout ? o->timeout : 600;
  double start = now_seconds (), last_output = start;
  bool any_output = false;
  const char *reason = NULL;
  pid_t pid;
  size_t i;

  *retry = false;
  if (!tmpdir || !*tmpdir)
    tmpdir = "/tmp";
  errpath = guest_printf ("%s/ferry-boot-XXXXXX", tmpdir);
  if (!errpath || (errfd = mkstemp (errpath)) == -1) {
    ferry_error_errno (errno, "a temporary file in %s", tmpdir);
    goto out;
  }
  unlink (errpath);
  if (o->firmware && strcmp (o->firmware, "uefi") == 0) {
    /* UEFI variables: a private copy of the template, dropped after. */
    int fd, pair = ovmf_pair ();
    vars = guest_printf ("%s/ferry-vars-XXXXXX", tmpdir);
    if (!vars || (fd = mkstemp (vars)) == -1) {
      ferry_error_errno (errno, "a temporary file in %s", tmpdir);
      goto out;
    }
    if (pair != -1 && copy_vars (ovmf_vars[pair], fd, vars) == -1) {
      close (fd);
      goto out;
    }
    close (fd);
  }
  if (build_argv (disks, n, o, qemu, accel, vars, &args) == -1)
    goto out;
  {
    CLEANUP_FREE char *cmdline = strdup ("");
    for (i = 0; cmdline && args.ptr[i]; i++) {
      char *c = guest_printf ("%s %s", cmdline, args.ptr[i]);
      free (cmdline);
      cmdline = c;
    }
    ferry_debug ("boot:%s", cmdline ? cmdline : "");
  }
  if (pipe2 (out, O_CLOEXEC) == -1 ||
      (devnull = open ("/dev/null", O_RDONLY | O_CLOEXEC)) == -1) {
    ferry_error_errno (errno, "pipe");
    goto out;
  }
  pid = fork ();
  if (pid == -1) {
    ferry_error_errno (errno, "fork");
    goto out;
  }
  if (pid == 0) {
    dup2 (devnull, 0);
    dup2 (out[1], 1);
    dup2 (errfd, 2);
    setpgid (0, 0);
    execv (args.ptr[0], args.ptr);
    _exit (127);
  }
  close (out[1]);
  out[1] = -1;

  res->accel = strdup (accel == FERRY_GUEST_ACCEL_TCG ? "tcg" : "kvm");
  for (;;) {
    struct pollfd pfd = { .fd = out[0], .events = POLLIN };
    double left = timeout - (now_seconds () - start);
    char buf[4096];
    ssize_t r;
    int verdict;

    if (left <= 0) {
      res->reason = guest_printf ("no %s on the console within %u s",
                                  o->expect ? "match for the marker"
                                            : "login prompt", timeout);
      break;
    }
    r = poll (&pfd, 1, left > 1 ? 1000 : (int) (left * 1000) + 1);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == 0) {
      if (accel == FERRY_GUEST_ACCEL_KVM && retry_on_silence && !any_output &&
          now_seconds () - start > KVM_SILENCE) {
        *retry = true;
        res->reason = guest_printf ("no console output under KVM within %d s",
                                    KVM_SILENCE);
        break;
      }
      if (con.waiting_root && now_seconds () - last_output > ROOT_WAIT_SILENCE) {
        res->reason = guest_printf ("the initramfs has been waiting for the "
                                    "root device for %d s: it does not "
                                    "appear (is its driver in the initramfs?)",
                                    ROOT_WAIT_SILENCE);
        break;
      }
      continue;
    }
    last_output = now_seconds ();
    r = read (out[0], buf, sizeof buf);
    if (r > 0)
      any_output = true;
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      /* QEMU exited (a reboot with -no-reboot, a crash, a bad option). */
      char err[512] = "";
      ssize_t m = pread (errfd, err, sizeof err - 1, 0);
      err[m > 0 ? m : 0] = '\0';
      err[strcspn (err, "\n")] = '\0';
      if (accel == FERRY_GUEST_ACCEL_KVM && strstr (err, "kvm") &&
          now_seconds () - start < 30)
        *retry = true;
      res->reason = guest_printf ("QEMU stopped before the %s%s%s",
                                  o->expect ? "marker" : "login prompt",
                                  *err ? ": " : "", err);
      break;
    }
    verdict = guest_console_feed (&con, buf, r, marker, o->console_line, o->opaque,
                                  &reason, &res->matched);
    if (verdict == 1) {
      res->booted = true;
      break;
    }
    if (verdict == -1) {
      res->reason = guest_printf ("%s: \"%s\"", reason,
                                  res->matched ? res->matched : "");
      break;
    }
  }
  res->seconds = now_seconds () - start;
  stop_qemu (pid);
  {
    /* What qemu said about the accelerator. */
    char err[2048] = "";
    ssize_t m = pread (errfd, err, sizeof err - 1, 0);
    err[m > 0 ? m : 0] = '\0';
    if (accel == FERRY_GUEST_ACCEL_AUTO && strstr (err, "kvm")) {
      free (res->accel);
      res->accel = strdup ("tcg");
    }
  }
  res->last_lines = guest_console_finish (&con);
  ret = 0;

 out:
  if (out[0] >= 0)
    close (out[0]);
  if (out[1] >= 0)
    close (out[1]);
  if (errfd >= 0)
    close (errfd);
  if (devnull >= 0)
    close (devnull);
  if (vars)
    unlink (vars);
  free_args (&args);
  return ret;
}

int
ferry_guest_boot (const struct ferry_guest_disk *disks, size_t n,
                  const struct ferry_guest_boot_options *opts,
                  struct ferry_guest_boot_result *result)
{
  static const struct ferry_guest_boot_options defaults = { 0 };
  const struct ferry_guest_boot_options *o = opts ? opts : &defaults;
  CLEANUP_FREE char *qemu = NULL;
  enum ferry_guest_accel accel = o->accel;
  regex_t marker;
  bool retry;
  int r, rc;

  memset (result, 0, sizeof *result);
  if (n == 0)
    return ferry_error (EINVAL, "no disks given");
  qemu = find_program (getenv ("FERRY_QEMU") ? getenv ("FERRY_QEMU")
                                             : "qemu-system-x86_64");
  if (!qemu)
    return ferry_error (ENOENT, "qemu-system-x86_64 is not installed "
                        "(Debian's qemu-system-x86)");
  rc = regcomp (&marker, o->expect ? o->expect : "[A-Za-z0-9_.-]+ login:",
                REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char msg[256];
    regerror (rc, &marker, msg, sizeof msg);
    ferry_error (EINVAL, "the pattern to expect, '%s': %s", o->expect, msg);
    return ferry_error_input ("expect");
  }
  /* KVM first only when /dev/kvm can be opened at all. */
  if (accel == FERRY_GUEST_ACCEL_AUTO && access ("/dev/kvm", R_OK | W_OK) != 0)
    accel = FERRY_GUEST_ACCEL_TCG;
  if (accel == FERRY_GUEST_ACCEL_AUTO)
    accel = FERRY_GUEST_ACCEL_KVM;
  r = boot_once (disks, n, o, qemu, accel, o->accel == FERRY_GUEST_ACCEL_AUTO,
                 &marker, result, &retry);
  if (r == 0 && retry && o->accel == FERRY_GUEST_ACCEL_AUTO) {
    ferry_debug ("boot: KVM did not start (%s); trying TCG", result->reason);
    ferry_guest_boot_result_free (result);
    r = boot_once (disks, n, o, qemu, FERRY_GUEST_ACCEL_TCG, false, &marker,
                   result, &retry);
  }
  regfree (&marker);
  return r;
}
