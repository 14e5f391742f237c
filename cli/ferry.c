/* ferry: the command-line entry point and subcommand dispatch. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

static const struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *synopsis;
} commands[] = {
  { "info", cmd_info,
    "info [--json] [-f FMT] [--backing-chain] [--strict] IMAGE" },
  { "convert", cmd_convert,
    "convert [-f FMT] [-O FMT] [-o key=val,...] [-c] [-p | --progress=json]\n"
    "                [-m THREADS] [-n] [-t CACHE] [--strict] SRC DST" },
  { "compare", cmd_compare,
    "compare [-f FMT] [-F FMT] [-p] [-s|--strict] A B" },
  { "check", cmd_check, "check [-f FMT] [--json] IMAGE" },
  { "map", cmd_map,
    "map [-f FMT] [--context NAME] [--totals] [--json] [--strict] IMAGE" },
  { "serve", cmd_serve,
    "serve [-f FMT] [--port N [--bind ADDR] | --socket PATH] [--readonly]\n"
    "              [--tls-psk FILE | --tls-certs DIR] [--export NAME] IMAGE" },
  { "v2v", cmd_v2v,
    "v2v SOURCE --to libvirt|qemu|ova|local --out DIR [-O FMT]\n"
    "                [--network-map SRC=DST] [--name NAME] [--dry-run] ..." },
  { "inspect", cmd_inspect, "inspect [-f FMT] [--json] IMAGE..." },
  { "convert-guest", cmd_convert_guest,
    "convert-guest [-f FMT] [--mac MAC]... [--no-guest-agent] [--json] IMAGE..." },
  { "verify", cmd_verify,
    "verify --boot [--expect REGEX] [--timeout SECONDS] [--disk-bus BUS]\n"
    "               [--nic MODEL] [--accel auto|kvm|tcg] [--console] [--json] IMAGE..." },
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
           "nbds://... (TLS), nbd+unix:///EXPORT?socket=PATH\n");
  fprintf (fp, "\nformats:");
  for (fmt = ferry_image_formats (); *fmt; fmt++)
    fprintf (fp, " %s", *fmt);
  fprintf (fp, "\n");
}

volatile sig_atomic_t cli_stop;

static void
on_stop_signal (int sig)
{
  cli_stop = sig;
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
  const char *hint = input_hint (ferry_get_error_input ());

  fprintf (stderr, "ferry %s: %s%s%s%s\n", cmd, ferry_get_error (),
           hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
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
    if (!strcmp (argv[1], commands[i].name))
      return commands[i].run (argc - 1, argv + 1);
  fprintf (stderr, "ferry: unknown command '%s'\n", argv[1]);
  usage (stderr);
  return 1;
}
