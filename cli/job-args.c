/* The options of a migration (ferry v2v, ferry job add), parsed into a
 * <ferry/job.h> spec. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "job-cli.h"

void
job_v2v_args_init (struct job_v2v_args *a)
{
  memset (a, 0, sizeof *a);
}

void
job_v2v_args_free (struct job_v2v_args *a)
{
  free (a->netmap);
  a->netmap = NULL;
}

int
job_v2v_args_option (const char *cmd, struct job_v2v_args *a, int ch,
                     const char *arg)
{
  struct ferry_job_spec *s = &a->spec;

  switch (ch) {
  case JOB_OPT_TO:
    if (strcmp (arg, "libvirt") && strcmp (arg, "qemu") &&
        strcmp (arg, "ova") && strcmp (arg, "local")) {
      print_message (cmd, "--to %s: expected libvirt, qemu, ova or local",
                     arg);
      return -1;
    }
    s->to = arg;
    a->have_to = true;
    return 1;
  case JOB_OPT_OUT: s->out = arg; return 1;
  case 'O': s->format = arg; return 1;
  case JOB_OPT_NETMAP: {
    const char **n = realloc (a->netmap, (a->nr_netmap + 2) * sizeof *n);
    if (n == NULL) {
      print_message (cmd, "out of memory");
      return -1;
    }
    a->netmap = n;
    a->netmap[a->nr_netmap++] = arg;
    a->netmap[a->nr_netmap] = NULL;
    s->network_map = a->netmap;
    return 1;
  }
  case JOB_OPT_NAME: s->name = arg; return 1;
  case JOB_OPT_KEEP: s->keep_devices = true; return 1;
  case JOB_OPT_FLAVOR: s->flavor = arg; return 1;
  case JOB_OPT_NO_CONVERT: s->no_convert = true; return 1;
  case JOB_OPT_NO_AGENT: s->no_guest_agent = true; return 1;
  case JOB_OPT_VERIFY_TIMEOUT: {
    char *end;
    unsigned long t = strtoul (arg, &end, 10);
    if (*end || t == 0 || t > 86400) {
      print_message (cmd, "--verify-timeout %s: expected seconds (1 to 86400)",
                     arg);
      return -1;
    }
    s->verify_timeout = t;
    return 1;
  }
  case JOB_OPT_MODE:
    if (strcmp (arg, "cold") && strcmp (arg, "warm")) {
      print_message (cmd, "--mode %s: expected cold or warm", arg);
      return -1;
    }
    s->mode = arg;
    return 1;
  case JOB_OPT_DOMAIN: s->domain = arg; return 1;
  case JOB_OPT_CUTOVER: s->cutover = arg; return 1;
  case JOB_OPT_SOURCE_STOP:
    if (strcmp (arg, "shutdown") && strcmp (arg, "pause")) {
      print_message (cmd, "--source-stop %s: expected shutdown or pause", arg);
      return -1;
    }
    s->source_stop = arg;
    return 1;
  case JOB_OPT_MAX_DOWNTIME:
  case JOB_OPT_ROUND_INTERVAL:
  case JOB_OPT_SHUTDOWN_TIMEOUT: {
    const char *name = ch == JOB_OPT_MAX_DOWNTIME ? "--max-downtime"
      : ch == JOB_OPT_ROUND_INTERVAL ? "--round-interval"
      : "--shutdown-timeout";
    char *end;
    double t;
    errno = 0;
    t = strtod (arg, &end);
    if (errno || end == arg || *end || !(t > 0) || t > 86400 ||
        (ch == JOB_OPT_SHUTDOWN_TIMEOUT && t != (unsigned) t)) {
      print_message (cmd, "%s %s: expected seconds (more than 0, at most "
                     "86400%s)", name, arg,
                     ch == JOB_OPT_SHUTDOWN_TIMEOUT ? ", whole" : "");
      return -1;
    }
    if (ch == JOB_OPT_MAX_DOWNTIME)
      s->max_downtime = t;
    else if (ch == JOB_OPT_ROUND_INTERVAL)
      s->round_interval = t;
    else
      s->shutdown_timeout = t;
    return 1;
  }
  case 'm': {
    unsigned long t;
    if (parse_threads_option (cmd, arg, &t) == -1)
      return -1;
    s->threads = t;
    return 1;
  }
  case 't':
    return parse_cache_option (cmd, arg, &s->no_flush) == -1 ? -1 : 1;
  }
  return 0;
}

int
job_v2v_args_check (const char *cmd, struct job_v2v_args *a)
{
  if (!a->have_to) {
    print_message (cmd, "--to is required: libvirt, qemu, ova or local");
    return -1;
  }
  if (a->spec.out == NULL) {
    print_message (cmd, "--out DIR is required");
    return -1;
  }
  return 0;
}
