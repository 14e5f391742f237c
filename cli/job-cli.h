/* What the job commands (job.c, plan.c) and v2v.c share: the options of a
 * migration, parsed into a <ferry/job.h> spec, and the store. */
#ifndef FERRY_CLI_JOB_H
#define FERRY_CLI_JOB_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include <ferry/job.h>
#include <ferry/store.h>

struct json_object;

/* The long options of a migration, as getopt_long entries (their values
 * are JOB_OPT_*); -O, -m and -t are short ones ("O:m:t:"). */
enum {
  JOB_OPT_TO = 512, JOB_OPT_OUT, JOB_OPT_NETMAP, JOB_OPT_NAME, JOB_OPT_KEEP,
  JOB_OPT_FLAVOR, JOB_OPT_NO_CONVERT, JOB_OPT_NO_AGENT, JOB_OPT_VERIFY_TIMEOUT,
  JOB_OPT_MODE, JOB_OPT_DOMAIN, JOB_OPT_CUTOVER, JOB_OPT_MAX_DOWNTIME,
  JOB_OPT_ROUND_INTERVAL, JOB_OPT_SOURCE_STOP, JOB_OPT_SHUTDOWN_TIMEOUT,
};
/* The options of a warm migration (ferry job add only). */
#define JOB_WARM_LONG_OPTIONS \
  { "mode", required_argument, NULL, JOB_OPT_MODE }, \
  { "domain", required_argument, NULL, JOB_OPT_DOMAIN }, \
  { "cutover", required_argument, NULL, JOB_OPT_CUTOVER }, \
  { "max-downtime", required_argument, NULL, JOB_OPT_MAX_DOWNTIME }, \
  { "round-interval", required_argument, NULL, JOB_OPT_ROUND_INTERVAL }, \
  { "source-stop", required_argument, NULL, JOB_OPT_SOURCE_STOP }, \
  { "shutdown-timeout", required_argument, NULL, JOB_OPT_SHUTDOWN_TIMEOUT }
#define JOB_V2V_LONG_OPTIONS \
  { "to", required_argument, NULL, JOB_OPT_TO }, \
  { "out", required_argument, NULL, JOB_OPT_OUT }, \
  { "network-map", required_argument, NULL, JOB_OPT_NETMAP }, \
  { "name", required_argument, NULL, JOB_OPT_NAME }, \
  { "keep-devices", no_argument, NULL, JOB_OPT_KEEP }, \
  { "flavor", required_argument, NULL, JOB_OPT_FLAVOR }, \
  { "no-convert", no_argument, NULL, JOB_OPT_NO_CONVERT }, \
  { "no-guest-agent", no_argument, NULL, JOB_OPT_NO_AGENT }, \
  { "verify-timeout", required_argument, NULL, JOB_OPT_VERIFY_TIMEOUT }

struct job_v2v_args {
  struct ferry_job_spec spec;
  const char **netmap;
  size_t nr_netmap;
  bool have_to;
};

void job_v2v_args_init (struct job_v2v_args *a);
void job_v2v_args_free (struct job_v2v_args *a);
/* Take option CH (with ARG): 1 taken, 0 not one of ours, -1 bad (said). */
int job_v2v_args_option (const char *cmd, struct job_v2v_args *a, int ch,
                         const char *arg);
/* --to and --out are there. 0 or -1 (said). */
int job_v2v_args_check (const char *cmd, struct job_v2v_args *a);

int job_cli_parse_id (const char *cmd, const char *arg, int64_t *id);
struct ferry_store *job_cli_open_store (const char *cmd, const char *path,
                                        bool create);
/* Job R as JSON (with its events when EVENTS). */
struct json_object *job_cli_json (struct ferry_store *st,
                                  const struct ferry_store_record *r,
                                  bool events);
/* Start `ferry job run ID` in the background, detached.  0 or -1 (said). */
int job_cli_spawn (const char *cmd, struct ferry_store *st, int64_t id);

static inline void
job_cli_freep (char **p)
{
  free (*p);
}
#define CLEANUP_FREE_STR __attribute__ ((cleanup (job_cli_freep)))

#endif /* FERRY_CLI_JOB_H */
