/* ferry: the command-line entry point and subcommand dispatch. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry.h"

/* A command that only reads (reads_only) has nothing to undo: a stop
 * signal ends it STOP_GRACE seconds later at the latest, even should some
 * loop of it miss the stop request (a check of a huge image). */
#define STOP_GRACE 1

static const struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *synopsis;
  bool reads_only;
} commands[] = {
  { "info", cmd_info,
    "info [--json] [-f FMT] [--backing-chain] [--strict] [--timeout S] IMAGE",
    true },
  { "convert", cmd_convert,
    "convert [-f FMT] [-O FMT] [-o key=val,...] [-c] [-p | --progress=json]\n"
    "                [-m THREADS] [-n] [-t CACHE] [--strict] [--timeout S]\n"
    "                SRC DST", false },
  { "compare", cmd_compare,
    "compare [-f FMT] [-F FMT] [-p] [-s|--strict] [--timeout S] A B", true },
  { "check", cmd_check, "check [-f FMT] [--json] IMAGE", true },
  { "map", cmd_map,
    "map [-f FMT] [--context NAME] [--totals] [--json] [--strict]\n"
    "            [--timeout S] IMAGE", true },
  { "serve", cmd_serve,
    "serve [-f FMT] [--port N [--bind ADDR] | --socket PATH] [--readonly]\n"
    "              [--tls-psk FILE | --tls-certs DIR] [--export NAME] IMAGE",
    false },
  { "v2v", cmd_v2v,
    "v2v SOURCE --to libvirt|qemu|ova|local --out DIR [-O FMT]\n"
    "                [--network-map SRC=DST] [--name NAME] [--dry-run] ...",
    false },
  { "job", cmd_job,
    "job add|list|show|start|pause|resume|cancel|retry|rm|run|cutover ...",
    false },
  { "plan", cmd_plan,
    "plan run [--parallel N] [--stagger S] [--per-source K] FILE | show ID",
    false },
  { "inspect", cmd_inspect, "inspect [-f FMT] [--json] IMAGE...", false },
  { "convert-guest", cmd_convert_guest,
    "convert-guest [-f FMT] [--mac MAC]... [--no-guest-agent] [--json] IMAGE...",
    false },
  { "qmp", cmd_qmp,
    "qmp [--timeout S] [--event NAME] SOCKET COMMAND [JSON-ARGS]\n"
    "          | --disks SOCKET", false },
  { "verify", cmd_verify,
    "verify --boot [--expect REGEX] [--timeout SECONDS] [--disk-bus BUS]\n"
    "               [--nic MODEL] [--accel auto|kvm|tcg] [--kvm-stall SECONDS]\n"
    "               [--console] [--json] IMAGE...",
    false },
};

static void
usage (FILE *fp)
{
  size_t i;
  const char *const *fmt;

  fprintf (fp, "usage:\n");
  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf (fp, "  ferry %s\n", commands[i].synopsis);
  fprintf (fp, "\nIMAGE, SRC and DST may be NBD URIs: nbd://HOST[:PORT]/EXPORT,\n"
           "nbds://... (TLS), nbd+unix:///EXPORT?socket=PATH; --timeout S gives\n"
           "up on a server that does not answer (default 30 s for the handshake,\n"
           "60 s for a request)\n");
  fprintf (fp, "\nformats:");
  for (fmt = ferry_image_formats (); *fmt; fmt++)
    fprintf (fp, " %s", *fmt);
  fprintf (fp, "\n");
}

volatile sig_atomic_t cli_stop;
static bool cli_stop_reported;   /* print_interrupted said it */

/* For a command that only reads: its message when STOP_GRACE runs out,
 * made before it starts (a signal handler cannot format). */
static bool grace_armed;
static char grace_message[128];
static size_t grace_len;

/* SIGALRM, STOP_GRACE seconds after a stop signal to a command that only
 * reads: say so and die of the stop signal. */
static void
on_grace_over (int unused)
{
  int sig = cli_stop;

  if (write (STDERR_FILENO, grace_message, grace_len) == -1) {
    /* Nothing more to do: ending is what matters. */
  }
  if (sig == SIGQUIT)
    _exit (128 + sig);
  signal (sig, SIG_DFL);
  kill (getpid (), sig);        /* the process, whichever thread runs this */
}

/* The first stop signal asks the library to stop (every wait ends, and
 * the command cleans up as on any failure); a second one ends ferry at
 * once, as if there were no handler. */
static void
on_stop_signal (int sig)
{
  if (cli_stop) {
    signal (sig, SIG_DFL);
    raise (sig);
    return;
  }
  cli_stop = sig;
  ferry_request_stop ();
  if (grace_armed)
    alarm (STOP_GRACE);
}

void
install_stop_signals (void)
{
  struct sigaction sa;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  sigaction (SIGQUIT, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);
  if (grace_armed) {
    sa.sa_handler = on_grace_over;
    sigaction (SIGALRM, &sa, NULL);
  }
}

const char *
input_hint (const char *input)
{
  /* The library's names for its inputs (the members of its options
   * structures), and the flags that set them here. */
  static const struct { const char *input, *hint; } hints[] = {
    { "out_dir", "--out DIR" },
    { "network_map", "--network-map SRC=DST" },
    { "name", "--name NAME" },
    { "flavor", "--flavor vmware|virtualbox" },
    { "disk_format", "-O FMT" },
    { "no_convert", "--no-convert copies the disks as they are" },
    { "expect", "--expect REGEX" },
    { "strict", "--strict" },
    { "test", "--test" },
    { "mode", "--mode warm" },
    { "domain", "--domain FILE, for qmp:SOCKET" },
    { "cutover", "--cutover now|manual|TIME|+SECONDS" },
    { "source_stop", "--source-stop shutdown|pause" },
  };
  size_t i;

  for (i = 0; input && i < sizeof hints / sizeof hints[0]; i++)
    if (strcmp (hints[i].input, input) == 0)
      return hints[i].hint;
  return NULL;
}

void
print_error (const char *cmd)
{
  const char *hint;

  /* An interrupted call: main says so, once. */
  if (cli_stop && ferry_get_errno () == EINTR)
    return;
  hint = input_hint (ferry_get_error_input ());
  fprintf (stderr, "ferry %s: %s%s%s%s\n", cmd, ferry_get_error (),
           hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
}

/* On a terminal, clear the line a progress bar may have left half
 * drawn (with the cursor at its end), so the message starts a line. */
static void
start_fresh_line (void)
{
  if (isatty (STDERR_FILENO))
    fputs ("\r\033[K", stderr);
}

void
print_interrupted (const char *cmd, const char *fmt, ...)
{
  va_list ap;

  start_fresh_line ();
  fprintf (stderr, "ferry %s: interrupted; ", cmd);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  cli_stop_reported = true;
}

/* End a command CMD that returned RET.  When a stop signal interrupted
 * it, say so (unless it did) and die of that signal, as qemu-img and
 * nbdcopy do (a shell sees 128 + its number: 130 for SIGINT, 143 for
 * SIGTERM), so that a script running ferry stops too; SIGQUIT, whose
 * default action dumps core, gives exit status 131 instead.  A command
 * that finished anyway keeps its status. */
static int
finish_command (const char *cmd, int ret)
{
  int sig = cli_stop;

  alarm (0);
  if (!sig || ret == 0)
    return ret;
  if (!cli_stop_reported) {
    start_fresh_line ();
    fprintf (stderr, "ferry %s: interrupted by SIG%s\n", cmd,
             sigabbrev_np (sig) ? sigabbrev_np (sig) : "?");
  }
  fflush (stdout);
  fflush (stderr);
  if (sig != SIGQUIT) {
    signal (sig, SIG_DFL);
    raise (sig);
  }
  return 128 + sig;
}

int
parse_timeout_option (const char *cmd, const char *arg)
{
  char *end;
  double t;

  errno = 0;
  t = strtod (arg, &end);
  if (errno || end == arg || *end || ferry_nbd_set_timeouts (t, t) == -1) {
    print_message (cmd, "--timeout %s: expected a number of seconds from 0 "
                   "(no timeout) to 1000000", arg);
    return -1;
  }
  return 0;
}

void
print_read_error (const char *cmd)
{
  bool busy = ferry_get_errno () == EBUSY;

  print_error (cmd);
  if (busy)
    fprintf (stderr, "ferry %s: -U (--force-share) reads it all the same, "
             "as it is at each moment while the other process writes\n",
             cmd);
}

void
print_message (const char *cmd, const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "ferry %s: ", cmd);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

/* One line per leftover removed. */
void
print_removed (const char *cmd, const char *const *paths)
{
  for (; paths && *paths; paths++)
    print_message (cmd, "removed %s, left by a ferry process that is gone",
                   *paths);
}

int
parse_threads_option (const char *cmd, const char *arg,
                      unsigned long *threads)
{
  char *end;

  errno = 0;
  *threads = strtoul (arg, &end, 10);
  if (errno || *end || *threads < 1 || *threads > 256) {
    print_message (cmd, "-m %s: expected a number of threads from 1 to 256",
                   arg);
    return -1;
  }
  return 0;
}

int
parse_cache_option (const char *cmd, const char *arg, bool *unsafe)
{
  if (!strcmp (arg, "unsafe"))
    *unsafe = true;
  else if (!strcmp (arg, "writeback") || !strcmp (arg, "none") ||
           !strcmp (arg, "writethrough") || !strcmp (arg, "directsync"))
    *unsafe = false;
  else {
    print_message (cmd, "-t %s: expected unsafe, writeback, none, "
                   "writethrough or directsync", arg);
    return -1;
  }
  return 0;
}

int
parse_output_option (const char *cmd, const char *arg, bool *json)
{
  if (strcmp (arg, "json") == 0)
    *json = true;
  else if (strcmp (arg, "human") == 0)
    *json = false;
  else {
    print_message (cmd, "--output=%s: expected json or human", arg);
    return -1;
  }
  return 0;
}

const char *
human_size (uint64_t bytes, char *buf, size_t len)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB",
                                       "PiB", "EiB" };
  double v = bytes;
  size_t u = 0;

  while (v >= 1024 && u < sizeof units / sizeof units[0] - 1) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (buf, len, "%llu B", (unsigned long long) bytes);
  else
    snprintf (buf, len, "%.3g %s", v, units[u]);
  return buf;
}

/* Warnings from the library go to stderr, prefixed with "ferry: ". */
static void
log_to_stderr (enum ferry_log_level level, const char *msg, void *opaque)
{
  if (level >= FERRY_LOG_WARNING)
    fprintf (stderr, "ferry: warning: %s\n", msg);
  else if (getenv ("FERRY_DEBUG"))
    fprintf (stderr, "ferry: debug: %s\n", msg);
}

int
main (int argc, char **argv)
{
  size_t i;

  if (argc < 2 || !strcmp (argv[1], "--help") || !strcmp (argv[1], "-h")) {
    usage (argc < 2 ? stderr : stdout);
    return argc < 2 ? 1 : 0;
  }
  if (!strcmp (argv[1], "--version")) {
    printf ("ferry 0.1.0\n");
    return 0;
  }
  ferry_set_log_callback (log_to_stderr, NULL);
  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp (argv[1], commands[i].name)) {
      if (commands[i].reads_only) {
        int n = snprintf (grace_message, sizeof grace_message,
                          "ferry %s: interrupted\n", commands[i].name);
        grace_len = n > 0 ? (size_t) n : 0;
        grace_armed = true;
      }
      install_stop_signals ();
      return finish_command (commands[i].name,
                             commands[i].run (argc - 1, argv + 1));
    }
  fprintf (stderr, "ferry: unknown command '%s'\n", argv[1]);
  usage (stderr);
  return 1;
}
