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
int cmd_qmp (int argc, char **argv);

/* Set by SIGINT, SIGTERM, SIGHUP and SIGQUIT (the signal's number):
 * main installs the handler before any command runs.  The handler also
 * calls ferry_request_stop, so every library call in progress ends with
 * EINTR; the command then cleans up as after any failure and returns
 * non-zero, and main reports the interruption and dies of the signal (see
 * finish_command in ferry.c).  A second signal ends ferry at once, and
 * so does the first, a second later, for a command that only reads
 * (info, compare, check, map: nothing to undo).  SIGPIPE is ignored, so
 * that a closed progress pipe does not kill a job half way.  serve
 * installs its own handler: a signal is how it ends. */
#include <signal.h>
extern volatile sig_atomic_t cli_stop;
void install_stop_signals (void);

/* Print "ferry CMD: interrupted; " and the formatted rest, for a command
 * that has more to say (what it did not write); main then says nothing
 * more. */
void print_interrupted (const char *cmd, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* --timeout SECONDS: how long each wait on an NBD server may last (the
 * connection and handshake, and each request); 0 for none.  Sets it for
 * the process, or returns -1 after a message naming CMD. */
int parse_timeout_option (const char *cmd, const char *arg);

/* Print "ferry CMD: " and the library's last error to stderr, with the
 * flag that sets the input it concerns (ferry_get_error_input); nothing
 * for an interrupted call: main reports the interruption. */
void print_error (const char *cmd);

/* print_error for an image that could not be opened for reading: when
 * it is in use by another process (EBUSY), say how to read it anyway
 * (-U, --force-share). */
void print_read_error (const char *cmd);

/* The flag (and its argument) that sets the library's INPUT, a member of
 * its options structures ("out_dir": "--out DIR"), or NULL. */
const char *input_hint (const char *input);

/* Print "ferry CMD: " and a formatted message to stderr. */
void print_message (const char *cmd, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Say, naming CMD, which leftovers of dead ferry processes the library
 * removed (PATHS: NULL-terminated, or NULL). */
void print_removed (const char *cmd, const char *const *paths);

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

/* v2v.c, shared with job.c: the plan printed for people or as JSON, the
 * progress of a migration (a bar per disk with the overall figure, JSON
 * lines, or, not on a terminal, a line per tenth), the summary. */
struct ferry_v2v_plan;
struct ferry_v2v_options;
struct ferry_v2v_progress;
struct ferry_v2v_summary;
struct json_object;
struct cli_progress {
  enum progress_mode mode;
  bool tty;
  int last_tenth;
  const char *last_phase;
};
void print_plan (const struct ferry_v2v_plan *plan,
                 const struct ferry_v2v_options *opts);
struct json_object *plan_json (const struct ferry_v2v_plan *plan,
                               const struct ferry_v2v_options *opts);
void print_json_object (struct json_object *o, bool pretty);
void v2v_progress (const struct ferry_v2v_progress *p, void *opaque);
void print_summary (const struct ferry_v2v_plan *plan,
                    const struct ferry_v2v_summary *s);
int cmd_job (int argc, char **argv);
int cmd_plan (int argc, char **argv);
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

/* A boot's result (verify.c), for verify --boot and v2v --verify: the
 * accelerator that ran it and why not KVM ("tcg; KVM stalled after ...")
 * in BUF, and the whole result as JSON (the caller owns the object). */
struct ferry_guest_boot_result;
const char *boot_accel_text (const struct ferry_guest_boot_result *res,
                             char *buf, size_t len);
struct json_object *boot_result_to_json (const struct ferry_guest_boot_result *res);

#endif /* FERRY_CLI_H */
