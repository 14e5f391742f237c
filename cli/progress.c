/* Progress output for long copies: a bar on a terminal, JSON lines for
 * programs (--progress=json), or a line every tenth when -p is given and
 * stderr is not a terminal. */
#include <json-c/json.h>
#include <stdio.h>
#include <unistd.h>

#include "ferry.h"

/* Minutes and seconds of S, or "--:--" when unknown. */
static const char *
format_eta (double s, char *buf, size_t len)
{
  if (s < 0 || s > 359999)
    snprintf (buf, len, "--:--");
  else if (s >= 3600)
    snprintf (buf, len, "%d:%02d:%02d", (int) s / 3600, (int) s / 60 % 60,
              (int) s % 60);
  else
    snprintf (buf, len, "%d:%02d", (int) s / 60, (int) s % 60);
  return buf;
}

/* One JSON object per line on stdout. */
static void
print_json (const struct ferry_progress *p)
{
  json_object *o = json_object_new_object ();
  double percent = p->total ? 100.0 * p->done / p->total : 100.0;

  json_object_object_add (o, "done", json_object_new_uint64 (p->done));
  json_object_object_add (o, "total", json_object_new_uint64 (p->total));
  json_object_object_add (o, "percent", json_object_new_double (percent));
  json_object_object_add (o, "elapsed", json_object_new_double (p->elapsed));
  json_object_object_add (o, "bytes_per_sec",
                          json_object_new_double (p->bytes_per_sec));
  json_object_object_add (o, "eta", json_object_new_double (p->eta));
  json_object_object_add (o, "finished", json_object_new_boolean (p->finished));
  printf ("%s\n", json_object_to_json_string_ext (o, JSON_C_TO_STRING_PLAIN));
  fflush (stdout);
  json_object_put (o);
}

void
progress_print (const struct ferry_progress *p, void *opaque)
{
  enum progress_mode *mode = opaque;
  static int last_tenth = -1;
  double percent = p->total ? 100.0 * p->done / p->total : 100.0;
  char done[32], total[32], eta[16];

  switch (*mode) {
  case PROGRESS_NONE:
    return;
  case PROGRESS_JSON:
    print_json (p);
    return;
  case PROGRESS_BAR:
    break;
  }

  if (!isatty (STDERR_FILENO)) {
    int tenth = (int) (percent / 10);
    if (tenth != last_tenth || p->finished) {
      last_tenth = tenth;
      fprintf (stderr, "    (%6.2f/100%%) %s of %s\n", percent,
               human_size (p->done, done, sizeof done),
               human_size (p->total, total, sizeof total));
    }
    return;
  }

  {
    int width = 30, filled = (int) (percent * width / 100), i;
    fprintf (stderr, "\r[");
    for (i = 0; i < width; i++)
      fputc (i < filled ? '#' : ' ', stderr);
    fprintf (stderr, "] %6.2f%%  %s / %s  %.1f MB/s  ETA %s\033[K",
             percent, human_size (p->done, done, sizeof done),
             human_size (p->total, total, sizeof total),
             p->bytes_per_sec / 1e6, format_eta (p->eta, eta, sizeof eta));
    if (p->finished)
      fprintf (stderr, "\n");
    fflush (stderr);
  }
}
