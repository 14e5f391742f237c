/* The serial console of a booting guest, read by ferry_guest_boot
 * (verify.c): bytes to lines (escape sequences and carriage returns
 * dropped), each line judged against the marker and the known failures,
 * the last lines kept for the report.  The guest writes these bytes, so
 * fuzz/fuzz-guest-text.c feeds it too.
 */
#include <regex.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Console lines that mean the boot failed and will not get better. */
static const struct {
  const char *text;
  const char *reason;
} failure_markers[] = {
  { "Gave up waiting for root", "the initramfs did not find the root device" },
  { "ALERT! ", "the initramfs did not find the root device" },
  { "Dropping to a shell", "the initramfs gave up and dropped to a shell" },
  { "Could not boot.", "dracut could not boot" },
  { "Kernel panic - not syncing", "kernel panic" },
  { "You are in emergency mode", "systemd emergency mode" },
  { "Give root password for maintenance", "maintenance mode" },
  { "No bootable device", "no bootable device" },
  { "Boot failed: not a bootable disk", "not a bootable disk" },
};

/* What a Linux kernel prints when a CPU has made no progress for tens of
 * seconds: its soft-lockup watchdog ("watchdog: BUG: soft lockup - CPU#0
 * stuck for 22s! [swapper/0:1]", "BUG: soft lockup" alone before Linux
 * 4.15), the hard-lockup one, and RCU's stall warnings, by the CPU that
 * stalled or by another, for either flavour ("rcu: INFO: rcu_sched
 * detected stalls on CPUs/tasks:", "INFO: rcu_preempt self-detected stall
 * on CPU", "... detected expedited stalls ...").  verify.c decides what
 * they mean under each accelerator. */
static const char *const cpu_stall_markers[] = {
  "BUG: soft lockup",
  "detected hard LOCKUP",
  "rcu_sched detected stall",
  "rcu_sched self-detected stall",
  "rcu_sched detected expedited stall",
  "rcu_preempt detected stall",
  "rcu_preempt self-detected stall",
  "rcu_preempt detected expedited stall",
};

/* Count LINE (whole) if it reports a stalled CPU, keeping it as the last
 * such report. */
static void
note_cpu_stall (struct guest_console *c, const char *line)
{
  size_t i;

  for (i = 0; i < sizeof cpu_stall_markers / sizeof cpu_stall_markers[0]; i++)
    if (strstr (line, cpu_stall_markers[i])) {
      size_t len = strnlen (line, sizeof c->cpu_stall - 1);
      c->cpu_stalls++;
      memcpy (c->cpu_stall, line, len);
      c->cpu_stall[len] = '\0';
      return;
    }
}

/* The console, line by line: escape sequences and carriage returns go,
 * the last GUEST_CONSOLE_LAST_LINES lines stay. */

static void
console_keep (struct guest_console *c, const char *line)
{
  char *copy;

  /* A line repeated (a waiting loop) is kept once, with a count. */
  if (c->nr_last) {
    size_t last = (c->first + c->nr_last - 1) % GUEST_CONSOLE_LAST_LINES;
    if (strcmp (c->last[last], line) == 0) {
      c->repeats[last]++;
      return;
    }
  }
  copy = strdup (line);
  if (!copy)
    return;
  if (c->nr_last < GUEST_CONSOLE_LAST_LINES) {
    size_t slot = (c->first + c->nr_last++) % GUEST_CONSOLE_LAST_LINES;
    c->last[slot] = copy;
    c->repeats[slot] = 1;
  }
  else {
    free (c->last[c->first]);
    c->last[c->first] = copy;
    c->repeats[c->first] = 1;
    c->first = (c->first + 1) % GUEST_CONSOLE_LAST_LINES;
  }
}

/* What a console line (or the pending partial line) tells: 1 the marker,
 * -1 a failure (*REASON set), 0 nothing yet. */
static int
judge_line (const char *line, const regex_t *marker, const char **reason)
{
  size_t i;

  for (i = 0; i < sizeof failure_markers / sizeof failure_markers[0]; i++)
    if (strstr (line, failure_markers[i].text)) {
      *reason = failure_markers[i].reason;
      return -1;
    }
  return regexec (marker, line, 0, NULL, 0) == 0 ? 1 : 0;
}

/* Judge the pending partial line: the marker always, failures only with
 * FAILURES.  A line judged is kept and handed to LINE_FN as a whole one. */
static int
judge_partial (struct guest_console *c, const regex_t *marker,
               void (*line_fn) (const char *line, void *opaque),
               void *opaque, bool failures, const char **reason,
               char **matched)
{
  int v;

  if (!c->len)
    return 0;
  c->line[c->len] = '\0';
  v = judge_line (c->line, marker, reason);
  if (v == 0 || (v == -1 && !failures))
    return 0;
  *matched = strdup (c->line);
  console_keep (c, c->line);
  if (line_fn)
    line_fn (c->line, opaque);
  c->len = 0;
  return v;
}

int
guest_console_feed (struct guest_console *c, const char *buf, size_t n,
                    const regex_t *marker,
                    void (*line_fn) (const char *line, void *opaque),
                    void *opaque, const char **reason, char **matched)
{
  size_t i;
  int verdict = 0, v;

  for (i = 0; i < n; i++) {
    unsigned char ch = buf[i];
    if (c->in_escape) {
      if ((ch >= '@' && ch <= '~' && ch != '[') )
        c->in_escape = false;
      continue;
    }
    if (ch == 0x1b) {
      c->in_escape = true;
      continue;
    }
    if (ch == '\n') {
      c->line[c->len] = '\0';
      c->waiting_root = strstr (c->line, "Waiting for root") != NULL;
      note_cpu_stall (c, c->line);
      console_keep (c, c->line);
      if (line_fn)
        line_fn (c->line, opaque);
      if (!verdict && (v = judge_line (c->line, marker, reason)) != 0) {
        verdict = v;
        *matched = strdup (c->line);
      }
      c->len = 0;
      continue;
    }
    if (ch == '\r' || (ch < 0x20 && ch != '\t'))
      continue;
    if (c->len < GUEST_CONSOLE_LINE_MAX - 1)
      c->line[c->len++] = ch;
  }
  /* A login prompt does not end its line, nor does Debian's "Begin:
   * Waiting for root file system ... ".  A failure is judged on whole
   * lines only (a read may end anywhere, and "Kernel panic - not
   * syncing" without its reason says little), or on a partial one that
   * has stopped growing (guest_console_idle). */
  if (c->len) {
    c->line[c->len] = '\0';
    c->waiting_root = strstr (c->line, "Waiting for root") != NULL;
  }
  if (!verdict)
    verdict = judge_partial (c, marker, line_fn, opaque, false, reason, matched);
  return verdict;
}

int
guest_console_idle (struct guest_console *c, const regex_t *marker,
                    void (*line_fn) (const char *line, void *opaque),
                    void *opaque, const char **reason, char **matched)
{
  return judge_partial (c, marker, line_fn, opaque, true, reason, matched);
}

/* Is LINE blank (nothing but spaces and tabs)? */
static bool
blank_line (const char *line)
{
  return line[strspn (line, " \t")] == '\0';
}

const char *
guest_console_last_line (struct guest_console *c)
{
  size_t i;

  if (c->len) {
    c->line[c->len] = '\0';
    if (!blank_line (c->line))
      return c->line;
  }
  for (i = c->nr_last; i > 0; i--) {
    const char *l = c->last[(c->first + i - 1) % GUEST_CONSOLE_LAST_LINES];
    if (!blank_line (l))
      return l;
  }
  return NULL;
}

char **
guest_console_finish (struct guest_console *c)
{
  char **v;
  size_t i;

  if (c->len) {
    c->line[c->len] = '\0';
    console_keep (c, c->line);
    c->len = 0;
  }
  v = calloc (c->nr_last + 1, sizeof *v);
  for (i = 0; i < c->nr_last; i++) {
    size_t slot = (c->first + i) % GUEST_CONSOLE_LAST_LINES;
    char *l = c->last[slot];
    if (v && c->repeats[slot] > 1) {
      char *r = guest_printf ("%s  [%zu times]", l, c->repeats[slot]);
      if (r) {
        free (l);
        l = r;
      }
    }
    if (v)
      v[i] = l;
    else
      free (l);
  }
  c->nr_last = 0;
  return v;
}
