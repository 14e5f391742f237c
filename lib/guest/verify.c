/* ferry_guest_boot: boot a migrated VM with QEMU and watch its serial
 * console until it reaches a login prompt (or the caller's marker), a
 * known failure, or the timeout.
 *
 * Where it runs: QEMU with KVM when that works and TCG otherwise (or as
 * asked; see the notes below), no display, the first serial port on QEMU's stdout, which ferry
 * reads through a pipe.  The network is QEMU's user network with
 * restrict=on: the guest gets its DHCP answer and nothing else, no route
 * to the host's networks or beyond.  The disks are opened with
 * snapshot=on unless the caller asks otherwise, so what the boot writes
 * (journals, first-boot services) goes to a throw-away overlay and the
 * VM's first real boot is still its first.
 *
 * A stop request (ferry_request_stop) ends the wait at once: QEMU is
 * stopped as at the end of any boot, and the call fails with EINTR.  QEMU
 * also gets SIGKILL should ferry die first (PR_SET_PDEATHSIG), so no
 * guest outlives it.
 *
 * It lives in lib/guest rather than lib/migrate because it needs nothing
 * of a migration: only disks and what the guest expects of the hardware,
 * which `ferry verify --boot` gets from the user and `ferry v2v --verify`
 * from the VM description.
 *
 * NOTES ON THE CHOICE OF ACCELERATOR (FERRY_GUEST_ACCEL_AUTO)
 *
 * 1. KVM is tried first when its device (/dev/kvm; FERRY_KVM_DEVICE names
 *    another, for tests) can be opened for reading and writing; else the
 *    boot runs under TCG and the result says why.
 * 2. On some hosts KVM starts but hangs Linux guests (nested
 *    virtualisation gone wrong) at any stage: before the first byte,
 *    after GRUB, after "Booting Linux".  Under KVM, a console that shows
 *    nothing new for kvm_stall seconds (30 by default: see KVM_STALL) is a
 *    stall: QEMU is stopped and the boot starts again under TCG (and so
 *    on a KVM failure, note 5, or a stuck CPU, note 6).
 * 3. The stall is judged before the initramfs' root-wait rule
 *    (ROOT_WAIT_SILENCE), and the default stall is the shorter: a root
 *    wait under KVM looks exactly like a KVM hang at that stage, so it is
 *    retried, and TCG, which does not hang, is the one that judges it.
 *    Failures the guest prints (a panic, emergency mode, the initramfs
 *    giving up) are final under KVM too: the guest said what is wrong.
 * 4. The user's timeout is what the whole call may take: TCG gets what
 *    the KVM attempt left (one deadline for both), so a stall costs the
 *    time to the stall plus kvm_stall, never a second timeout.
 * 5. A broken KVM may also fail outright, at any stage before the marker,
 *    not only as it starts: "KVM internal error" (an emulation failure),
 *    "kvm run failed", "KVM: entry failed".  QEMU writes such a line to
 *    its stderr and then either exits or, as it does after an internal
 *    error, keeps running with the VM paused and the console silent.  So
 *    QEMU's stderr is watched throughout a KVM boot: a line that names
 *    KVM (in any case) and is not a warning gives up KVM at once, whether
 *    QEMU exited or not ("KVM did not start: ..." on an empty console,
 *    "KVM failed after 'LINE': ..." once the guest printed).  A guest
 *    that errs the same way under TCG then fails on its own account.
 * 6. A guest that KVM hangs may keep printing: Linux reports a CPU stuck
 *    for 20 s or more (a soft lockup, an RCU stall) every 20 s or so, which
 *    would keep resetting the stall clock of note 2 for ever.  Under KVM
 *    such a report (guest_console's cpu_stalls) is a stall by itself: the
 *    guest's own clock says it made no progress for longer than a healthy
 *    boot is ever quiet.  Under TCG (and under KVM without the fall-back:
 *    FERRY_GUEST_ACCEL_KVM) the same reports are warnings, not a verdict:
 *    TCG's virtual CPUs fall behind the guest's clock on a busy host and a
 *    slow boot often reports stalls it recovers from, and there is no
 *    other accelerator to try.  The boot goes on to its marker, a known
 *    failure or the timeout; a timeout's reason then says how many stalls
 *    the guest reported and the last one, since a guest that is truly
 *    stuck shows exactly that.
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
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ferry/image.h>

#include "../common/cleanup.h"
#include "../common/stop.h"
#include "../common/util.h"
#include "internal.h"

/* An initramfs that waits for its root device prints nothing while it
 * waits (Debian's gives up only after 180 s): this long a silence after
 * "Waiting for root" means the device is not coming (its driver is not in
 * the initramfs). */
#define ROOT_WAIT_SILENCE 45
/* The default of kvm_stall (note 2).  Under KVM a Linux guest reaches
 * its login prompt in seconds, and its quietest healthy stretches (GRUB's
 * menu countdown, the kernel unpacking itself before its console is up,
 * systemd waiting on a job, which it reports every few seconds) last a
 * few seconds; 30 s of silence is several times that, and short next to
 * a TCG boot (a minute or two) and the 600 s default timeout.  A false
 * alarm costs a boot under TCG; a late one costs each second waited. */
#define KVM_STALL 30
/* How much of QEMU's stderr is searched for a KVM failure (note 5): the
 * line comes first, before any register dump.  The line quoted is cut to
 * KVM_ERROR_QUOTE bytes. */
#define KVM_ERROR_SCAN 16384
#define KVM_ERROR_QUOTE 200

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

/* QEMU's command line for one boot under ACCEL (KVM or TCG) into V. */
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
  if (accel == FERRY_GUEST_ACCEL_KVM) {
    if (add_arg (v, "-accel") == -1 || add_arg (v, "kvm") == -1 ||
        add_arg (v, "-cpu") == -1 || add_arg (v, "host") == -1)
      return -1;
  }
  else if (add_arg (v, "-accel") == -1 || add_arg (v, "tcg") == -1)
    return -1;
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

/* Stop QEMU (SIGTERM, then SIGKILL after 5 s) and reap it, removing the
 * temporary overlay it leaves when it dies of the signal. */
static void
stop_qemu (pid_t pid)
{
  struct qemu_temp_files temp = { 0 };
  int i, status;

  note_qemu_temp_files (pid, &temp);
  kill (pid, SIGTERM);
  for (i = 0; i < 50; i++) {
    if (waitpid (pid, &status, WNOHANG) == pid)
      goto out;
    usleep (100 * 1000);
  }
  kill (pid, SIGKILL);
  waitpid (pid, &status, 0);
 out:
  remove_qemu_temp_files (&temp);
}

void
ferry_guest_boot_result_free (struct ferry_guest_boot_result *r)
{
  if (!r)
    return;
  free (r->reason);
  free (r->matched);
  free (r->accel);
  free (r->fallback);
  guest_free_strings (r->last_lines);
  memset (r, 0, sizeof *r);
}

/* LINE as the result quotes it: its trailing blanks dropped, cut to 80
 * bytes.  A new string or NULL. */
static char *
quote_line (const char *line)
{
  size_t len = strlen (line);

  while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
    len--;
  return guest_printf ("'%.*s%s'", (int) (len > 80 ? 80 : len), line,
                       len > 80 ? "..." : "");
}

/* Why a stalled KVM boot was given up (note 2), from its console C: a
 * new string or NULL. */
static char *
stall_text (struct guest_console *c, unsigned stall)
{
  const char *last = guest_console_last_line (c);
  CLEANUP_FREE char *quoted = last ? quote_line (last) : NULL;

  if (!last)
    return guest_printf ("KVM stalled with an empty console for %u s", stall);
  return guest_printf ("KVM stalled after %s for %u s", quoted ? quoted : "?",
                       stall);
}

/* The first line of QEMU's stderr (ERRFD) that names KVM in any case and
 * is not a warning (note 5), or NULL.  While QEMU runs (not EXITED) a line
 * is judged once it ends, and *SCANNED, the size already searched, spares
 * reading a file that has not grown.  A new string. */
static char *
kvm_error_line (int errfd, off_t *scanned, bool exited)
{
  CLEANUP_FREE char *buf = NULL;
  char *line, *next, *found = NULL;
  struct stat st;
  ssize_t r;

  if (!exited &&
      (fstat (errfd, &st) == -1 || st.st_size == *scanned ||
       *scanned >= KVM_ERROR_SCAN))
    return NULL;
  if ((buf = malloc (KVM_ERROR_SCAN + 1)) == NULL)
    return NULL;
  r = pread (errfd, buf, KVM_ERROR_SCAN, 0);
  if (r <= 0)
    return NULL;
  *scanned = r;
  buf[r] = '\0';
  for (line = buf; line && !found; line = next) {
    next = strchr (line, '\n');
    if (next)
      *next++ = '\0';
    else if (!exited || r == KVM_ERROR_SCAN)
      break;                    /* not whole yet, or cut */
    if (strcasestr (line, "kvm") && !strstr (line, "warning:"))
      found = strndup (line, KVM_ERROR_QUOTE);
  }
  return found;
}

/* Why the boot failed at the timeout: with EXPECT, the caller's marker
 * was not seen, else the login prompt; what the guest reported of a
 * stuck CPU, if it did (note 6).  A new string or NULL. */
static char *
timeout_text (struct guest_console *c, bool expect, unsigned timeout)
{
  const char *what = expect ? "match for the marker" : "login prompt";
  CLEANUP_FREE char *stuck = NULL;

  if (!c->cpu_stalls)
    return guest_printf ("no %s on the console within %u s", what, timeout);
  stuck = quote_line (c->cpu_stall);
  return guest_printf ("no %s on the console within %u s; the guest "
                       "reported a stuck CPU %u time%s, the last: %s", what,
                       timeout, c->cpu_stalls, c->cpu_stalls == 1 ? "" : "s",
                       stuck ? stuck : "?");
}

/* Why KVM was given up after QEMU's stderr named it (note 5): ERR, with
 * where the console was.  A new string or NULL. */
static char *
kvm_error_text (struct guest_console *c, const char *err)
{
  const char *last = guest_console_last_line (c);
  CLEANUP_FREE char *quoted = last ? quote_line (last) : NULL;

  if (!last)
    return guest_printf ("KVM did not start: %s", err);
  return guest_printf ("KVM failed after %s: %s", quoted ? quoted : "?", err);
}

/* One boot attempt under ACCEL (KVM or TCG), until START + TIMEOUT.  With
 * GIVE_UP (OUT, may be NULL) a KVM boot that stalls for STALL seconds,
 * whose guest reports a stuck CPU, or whose QEMU names a KVM failure is
 * stopped and *GIVE_UP says why (notes 2, 5 and 6): RES then holds that
 * attempt, for the caller to drop. */
static int
boot_once (const struct ferry_guest_disk *disks, size_t n,
           const struct ferry_guest_boot_options *o, const char *qemu,
           enum ferry_guest_accel accel, double start, unsigned timeout,
           unsigned stall, const regex_t *marker,
           struct ferry_guest_boot_result *res, char **give_up)
{
  arg_vector args = empty_vector;
  struct guest_console con = { 0 };
  CLEANUP_FREE char *errpath = NULL, *vars = NULL;
  const char *tmpdir = getenv ("TMPDIR");
  int out[2] = { -1, -1 }, errfd = -1, devnull = -1, ret = -1;
  double last_output = now_seconds ();
  off_t err_scanned = 0;
  bool watch_kvm = give_up && accel == FERRY_GUEST_ACCEL_KVM;
  bool interrupted = false;
  pid_t parent = getpid ();
  const char *reason = NULL;
  pid_t pid;
  size_t i;

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
    /* Never outlive ferry, even if it is killed. */
    if (prctl (PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid () != parent)
      _exit (127);
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
    struct pollfd pfds[2] = {
      { .fd = out[0], .events = POLLIN },
      { .fd = stop_fd (), .events = POLLIN },
    };
    double left = timeout - (now_seconds () - start);
    char buf[4096];
    ssize_t r;
    int verdict;

    if (stop_requested ()) {
      interrupted = true;
      break;
    }
    if (left <= 0) {
      res->reason = timeout_text (&con, o->expect != NULL, timeout);
      break;
    }
    r = poll (pfds, 2, left > 1 ? 1000 : (int) (left * 1000) + 1);
    if (r == -1 && errno == EINTR)
      continue;
    if (stop_requested ())
      continue;                 /* the top of the loop says why */
    if (r == 0) {
      /* A second without output: a partial line is whole by now. */
      verdict = guest_console_idle (&con, marker, o->console_line, o->opaque,
                                    &reason, &res->matched);
    }
    else {
      last_output = now_seconds ();
      r = read (out[0], buf, sizeof buf);
      if (r == -1 && errno == EINTR)
        continue;
      if (r > 0)
        verdict = guest_console_feed (&con, buf, r, marker, o->console_line,
                                      o->opaque, &reason, &res->matched);
      else if ((verdict = guest_console_idle (&con, marker, o->console_line,
                                              o->opaque, &reason,
                                              &res->matched)) == 0) {
        /* QEMU exited (a reboot with -no-reboot, a crash, a bad option,
         * a KVM failure: note 5). */
        CLEANUP_FREE char *kvm_err =
          watch_kvm ? kvm_error_line (errfd, &err_scanned, true) : NULL;
        char err[512] = "";
        ssize_t m;
        if (kvm_err) {
          *give_up = kvm_error_text (&con, kvm_err);
          break;
        }
        m = pread (errfd, err, sizeof err - 1, 0);
        err[m > 0 ? m : 0] = '\0';
        err[strcspn (err, "\n")] = '\0';
        res->reason = guest_printf ("QEMU stopped before the %s%s%s",
                                    o->expect ? "marker" : "login prompt",
                                    *err ? ": " : "", err);
        break;
      }
    }
    if (verdict == 1) {
      res->booted = true;
      break;
    }
    if (verdict == -1) {
      res->reason = guest_printf ("%s: \"%s\"", reason,
                                  res->matched ? res->matched : "");
      break;
    }
    if (watch_kvm) {
      /* Note 5: QEMU names a KVM failure, and may still be running. */
      CLEANUP_FREE char *kvm_err = kvm_error_line (errfd, &err_scanned, false);
      if (kvm_err) {
        *give_up = kvm_error_text (&con, kvm_err);
        break;
      }
      /* Note 6: the guest says a CPU is stuck. */
      if (con.cpu_stalls) {
        CLEANUP_FREE char *stuck = quote_line (con.cpu_stall);
        *give_up = guest_printf ("KVM stalled: the guest reported %s",
                                 stuck ? stuck : "a stuck CPU");
        break;
      }
    }
    if (r != 0)
      continue;
    /* Note 3: nothing new on the console; a stall first, then the root
     * wait. */
    if (watch_kvm && now_seconds () - last_output >= stall) {
      *give_up = stall_text (&con, stall);
      break;
    }
    if (con.waiting_root && now_seconds () - last_output > ROOT_WAIT_SILENCE) {
      res->reason = guest_printf ("the initramfs has been waiting for the "
                                  "root device for %d s: it does not "
                                  "appear (is its driver in the initramfs?)",
                                  ROOT_WAIT_SILENCE);
      break;
    }
  }
  res->seconds = now_seconds () - start;
  stop_qemu (pid);
  res->last_lines = guest_console_finish (&con);
  if (interrupted) {
    ferry_guest_boot_result_free (res);
    ferry_error (EINTR, "booting %s: interrupted", disks[0].path);
  }
  else
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
  const char *kvm_device = getenv ("FERRY_KVM_DEVICE");
  enum ferry_guest_accel accel = o->accel;
  unsigned timeout = o->timeout ? o->timeout : 600;
  unsigned stall = o->kvm_stall ? o->kvm_stall : KVM_STALL;
  double start = now_seconds ();
  char *fallback = NULL;
  regex_t marker;
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
  /* Note 1. */
  if (!kvm_device || !*kvm_device)
    kvm_device = "/dev/kvm";
  if (accel == FERRY_GUEST_ACCEL_AUTO) {
    if (access (kvm_device, R_OK | W_OK) == 0)
      accel = FERRY_GUEST_ACCEL_KVM;
    else {
      fallback = guest_printf ("KVM is not available: %s: %s", kvm_device,
                               strerror (errno));
      accel = FERRY_GUEST_ACCEL_TCG;
    }
  }
  r = boot_once (disks, n, o, qemu, accel, start, timeout, stall, &marker,
                 result, o->accel == FERRY_GUEST_ACCEL_AUTO ? &fallback : NULL);
  if (r == 0 && accel == FERRY_GUEST_ACCEL_KVM && fallback) {
    /* Notes 2 and 4: TCG, with what is left of the timeout. */
    ferry_debug ("boot: %s; restarting under TCG", fallback);
    ferry_guest_boot_result_free (result);
    r = boot_once (disks, n, o, qemu, FERRY_GUEST_ACCEL_TCG, start, timeout,
                   0, &marker, result, NULL);
  }
  if (r == 0)
    result->fallback = fallback;
  else
    free (fallback);
  regfree (&marker);
  return r;
}
