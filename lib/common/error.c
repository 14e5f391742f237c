/* The thread-local error, the log callback, and the name aliases that
 * make messages name a destination rather than its temporary name. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static __thread char error_message[ERROR_MAX];
static __thread int error_errno;
static __thread const char *error_input;

static ferry_log_fn log_fn;
static void *log_opaque;
static __thread unsigned log_muted;

/* One alias (error.h): TP + MIDDLE + TS becomes DP + MIDDLE + DS. */
struct alias {
  char *tp, *ts, *dp, *ds;     /* one allocation, at tp */
  size_t tp_len, ts_len;
};

/* How far before TS the start of TP may be: MIDDLE is a suffix such as
 * "-s001" or "-flat", never long. */
#define ALIAS_MIDDLE_MAX 64

static pthread_mutex_t alias_lock = PTHREAD_MUTEX_INITIALIZER;
static struct alias *aliases;
static size_t nr_aliases;      /* read without the lock to skip it */

/* Split NAME at its last dot into *HEAD and *TAIL (copied into BUF). */
static void
split_at_dot (const char *name, char *buf, char **head, char **tail)
{
  const char *dot = strrchr (name, '.');
  size_t n = dot && dot != name ? (size_t) (dot - name) : strlen (name);

  memcpy (buf, name, n);
  buf[n] = '\0';
  strcpy (buf + n + 1, name + n);
  *head = buf;
  *tail = buf + n + 1;
}

int
error_alias_add (const char *temp, const char *dest)
{
  size_t tl = strlen (temp), dl = strlen (dest);
  struct alias a, *p;
  char *buf;

  if (dl >= tl || strchr (temp, '/') || strchr (dest, '/'))
    return ferry_error (EINVAL, "%s: no alias for %s", temp, dest);
  buf = malloc (tl + dl + 4);
  if (buf == NULL)
    return ferry_error (ENOMEM, "out of memory");
  split_at_dot (temp, buf, &a.tp, &a.ts);
  split_at_dot (dest, buf + tl + 2, &a.dp, &a.ds);
  a.tp_len = strlen (a.tp);
  a.ts_len = strlen (a.ts);
  if (a.ts_len == 0) {
    free (buf);
    return ferry_error (EINVAL, "%s: no alias for %s", temp, dest);
  }
  pthread_mutex_lock (&alias_lock);
  p = realloc (aliases, (nr_aliases + 1) * sizeof *aliases);
  if (p == NULL) {
    pthread_mutex_unlock (&alias_lock);
    free (buf);
    return ferry_error (ENOMEM, "out of memory");
  }
  aliases = p;
  aliases[nr_aliases] = a;
  __atomic_store_n (&nr_aliases, nr_aliases + 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock (&alias_lock);
  return 0;
}

void
error_alias_remove (const char *temp)
{
  size_t i, tl = strlen (temp);

  pthread_mutex_lock (&alias_lock);
  for (i = 0; i < nr_aliases; i++) {
    struct alias *a = &aliases[i];
    if (a->tp_len + a->ts_len == tl && strncmp (temp, a->tp, a->tp_len) == 0 &&
        strcmp (temp + a->tp_len, a->ts) == 0) {
      free (a->tp);
      aliases[i] = aliases[nr_aliases - 1];
      __atomic_store_n (&nr_aliases, nr_aliases - 1, __ATOMIC_RELEASE);
      break;
    }
  }
  pthread_mutex_unlock (&alias_lock);
}

/* Rewrite MSG in place by alias A; the result is never longer. */
static void
apply_alias (char *msg, const struct alias *a)
{
  size_t dp = strlen (a->dp), ds = strlen (a->ds), at = 0;
  char mid[ALIAS_MIDDLE_MAX], *p;

  while ((p = strstr (msg + at, a->ts)) != NULL) {
    size_t ts_at = p - msg, middle, i;
    bool found = false;

    /* The nearest TP before TS with no '/' between them. */
    for (middle = 0; middle < ALIAS_MIDDLE_MAX &&
           middle + a->tp_len <= ts_at; middle++) {
      i = ts_at - middle - a->tp_len;
      if (middle > 0 && msg[i + a->tp_len] == '/')
        break;
      if (memcmp (msg + i, a->tp, a->tp_len) == 0) {
        found = true;
        break;
      }
    }
    if (!found) {
      at = ts_at + a->ts_len;
      continue;
    }
    /* msg[i..] = TP MIDDLE TS REST  becomes  DP MIDDLE DS REST, which
     * is shorter (DEST is shorter than TEMP), so REST moves left. */
    memcpy (mid, msg + i + a->tp_len, middle);
    memcpy (msg + i, a->dp, dp);
    memcpy (msg + i + dp, mid, middle);
    memcpy (msg + i + dp + middle, a->ds, ds);
    memmove (msg + i + dp + middle + ds, msg + ts_at + a->ts_len,
             strlen (msg + ts_at + a->ts_len) + 1);
    at = i + dp + middle + ds;
  }
}

/* Rewrite MSG by every alias. */
static void
apply_aliases (char *msg)
{
  size_t i;

  if (__atomic_load_n (&nr_aliases, __ATOMIC_ACQUIRE) == 0)
    return;
  pthread_mutex_lock (&alias_lock);
  for (i = 0; i < nr_aliases; i++)
    apply_alias (msg, &aliases[i]);
  pthread_mutex_unlock (&alias_lock);
}

const char *
ferry_get_error (void)
{
  return error_message[0] ? error_message : "no error";
}

int
ferry_get_errno (void)
{
  return error_errno;
}

const char *
ferry_get_error_input (void)
{
  return error_input;
}

int
ferry_error_input (const char *input)
{
  error_input = input;
  return -1;
}

/* Set the message from FMT and AP, with ": strerror" when WITH_ERRNO. */
static void
set_error (int errnum, int with_errno, const char *fmt, va_list ap)
{
  int n = vsnprintf (error_message, sizeof error_message, fmt, ap);
  if (n < 0)
    n = 0;
  if (with_errno && (size_t) n < sizeof error_message) {
    char buf[128];
    snprintf (error_message + n, sizeof error_message - n, ": %s",
              strerror_r (errnum, buf, sizeof buf));
  }
  apply_aliases (error_message);
  error_errno = errnum;
  error_input = NULL;
  errno = errnum;
}

void
error_save (struct error_saved *saved)
{
  saved->errnum = error_errno;
  saved->input = error_input;
  memcpy (saved->message, error_message, sizeof saved->message);
}

void
error_restore (const struct error_saved *saved)
{
  memcpy (error_message, saved->message, sizeof error_message);
  error_errno = saved->errnum;
  error_input = saved->input;
  errno = saved->errnum;
}

int
ferry_error (int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  set_error (errnum, 0, fmt, ap);
  va_end (ap);
  return -1;
}

int
ferry_error_errno (int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  set_error (errnum, 1, fmt, ap);
  va_end (ap);
  return -1;
}

void
ferry_error_prefix (const char *fmt, ...)
{
  char prefix[256], old[ERROR_MAX];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (prefix, sizeof prefix, fmt, ap);
  va_end (ap);
  memcpy (old, error_message, sizeof old);
  /* Messages are cut at ERROR_MAX; say so to the compiler too. */
  if (snprintf (error_message, sizeof error_message, "%s: %.*s", prefix,
                (int) (sizeof error_message - 1), old) < 0)
    error_message[0] = '\0';
  apply_aliases (error_message);
  errno = error_errno;
}

void
ferry_set_log_callback (ferry_log_fn fn, void *opaque)
{
  log_opaque = opaque;
  __atomic_store_n (&log_fn, fn, __ATOMIC_RELEASE);
}

void
ferry_log (enum ferry_log_level level, const char *fmt, ...)
{
  ferry_log_fn fn = __atomic_load_n (&log_fn, __ATOMIC_ACQUIRE);
  char msg[ERROR_MAX];
  va_list ap;
  int saved = errno;

  if (fn == NULL || log_muted)
    return;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  apply_aliases (msg);
  fn (level, msg, log_opaque);
  errno = saved;
}

void
ferry_log_mute (bool mute)
{
  if (mute)
    log_muted++;
  else if (log_muted > 0)
    log_muted--;
}
