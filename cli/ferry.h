/* ferry command line: what the subcommands share.  Only cli/ prints and
 * exits; the library reports through errors and the log callback. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <ferry/ferry.h>

/* Each subcommand: argc/argv start at the subcommand's name; returns the
 * exit status. */
int cmd_info (int argc, char **argv);
int cmd_convert (int argc, char **argv);
int cmd_compare (int argc, char **argv);
int cmd_check (int argc, char **argv);
int cmd_map (int argc, char **argv);
int cmd_serve (int argc, char **argv);
int cmd_v2v (int argc, char **argv);
int cmd_inspect (int argc, char **argv);
int cmd_convert_guest (int argc, char **argv);
int cmd_verify (int argc, char **argv);

/* Set by SIGINT, SIGTERM, SIGHUP and SIGQUIT once install_stop_signals
 * has run (the signal's number); long jobs poll it, or hand it to the copy
 * engine as its cancel flag.  SIGPIPE is ignored, so that a closed
 * progress pipe does not kill a job half way. */
#include <signal.h>
extern volatile sig_atomic_t cli_stop;
void install_stop_signals (void);

/* Print "ferry CMD: " and the library's last error to stderr, with the
 * flag that sets the input it concerns (ferry_get_error_input). */
void print_error (const char *cmd);

/* The flag (and its argument) that sets the library's INPUT, a member of
 * its options structures ("out_dir": "--out DIR"), or NULL. */
const char *input_hint (const char *input);

/* Print "ferry CMD: " and a formatted message to stderr. */
void print_message (const char *cmd, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* -m THREADS (1 to 256) and -t CACHE (unsafe skips flushes; writeback,
 * none, writethrough and directsync flush): set *THREADS or *UNSAFE, or
 * -1 after a message naming CMD. */
int parse_threads_option (const char *cmd, const char *arg,
                          unsigned long *threads);
int parse_cache_option (const char *cmd, const char *arg, bool *unsafe);

/* --output=json|human: set *JSON; -1 after a message on anything else. */
int parse_output_option (const char *cmd, const char *arg, bool *json);

/* Human-readable size: "1.5 GiB", "512 B". */
const char *human_size (uint64_t bytes, char *buf, size_t len);

/* Progress output for the copy engine (progress.c). */
enum progress_mode { PROGRESS_NONE, PROGRESS_BAR, PROGRESS_JSON };
void progress_print (const struct ferry_progress *p, void *opaque);

/* A guest conversion's report (convert-guest.c): one line per step, or
 * as JSON (the caller owns the object). */
struct ferry_guest_report;
struct ferry_guest_disk;
struct json_object;
/* The N disk images named by ARGS, each of FORMAT (NULL: probed), for the
 * guest commands (inspect.c); the caller frees the array. */
struct ferry_guest_disk *guest_disks_from_args (char **args, int n,
                                                const char *format);
void print_guest_report (FILE *fp, const struct ferry_guest_report *r);
struct json_object *guest_report_to_json (const struct ferry_guest_report *r);

#endif /* FERRY_CLI_H */
