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
int cmd_inspect (int argc, char **argv);
int cmd_convert_guest (int argc, char **argv);
int cmd_verify (int argc, char **argv);

/* Print "ferry CMD: " and the library's last error to stderr. */
void print_error (const char *cmd);

/* Print "ferry CMD: " and a formatted message to stderr. */
void print_message (const char *cmd, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

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
struct json_object;
void print_guest_report (FILE *fp, const struct ferry_guest_report *r);
struct json_object *guest_report_to_json (const struct ferry_guest_report *r);

#endif /* FERRY_CLI_H */
