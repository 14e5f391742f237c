/* copy-resume: the library's checkpoints and resume, driven by
 * tests/shell/copy-resume.sh.
 *
 *   copy-resume copy SRC DST FORMAT OPTIONS STATE CKPT_BYTES [compress]
 *     creates DST and copies the raw image SRC into it with a checkpoint
 *     every CKPT_BYTES; each checkpoint's mark, and each progress call's
 *     done, go to STATE (replaced atomically: written beside it, renamed)
 *     as "durable file_size dev ino done".  The test kills it at random.
 *     CKPT_BYTES 0 makes no checkpoints (to time what they cost).
 *   copy-resume cancel SRC DST FORMAT OPTIONS STATE CKPT_BYTES AT [compress]
 *     the same, but raises the cancel flag once progress or a checkpoint
 *     passes AT bytes;
 *     the copy must fail with EINTR after a last checkpoint.
 *   copy-resume resume SRC DST FORMAT STATE [compress]
 *     reopens DST with the mark in STATE and finishes the copy from its
 *     durable offset, printing "durable D first_done F last_done L" (the
 *     progress done before anything was copied again, and the killed
 *     process's last done), or exits 3 with ESTALE's message.  BELOW is
 *     the source's data under durable; the first progress must count it.
 *
 * copy and cancel print "can_resume true|false" (ferry_image_can_resume
 * of the new target) first.
 * SRC may be a gzip file (NAME.gz), read as a stream, see open_source.
 *
 * Exit status 0, 1 on an error (printed on stderr), 3 for ESTALE.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ferry/copy.h>
#include <ferry/error.h>
#include <ferry/image.h>

/* What the callbacks of one copy share. */
struct state {
  const char *dst, *state_file;
  struct ferry_copy_mark mark;
  uint64_t done;                 /* last progress done */
  uint64_t first_done;           /* first progress done (resume) */
  bool have_first;
  uint64_t cancel_at;            /* cancel mode: raise CANCEL here */
  volatile sig_atomic_t cancel;
  unsigned checkpoints;
};

/* Replace the state file with the mark and the last progress. */
static void
save_state (struct state *s)
{
  char tmp[4096];
  FILE *f;

  snprintf (tmp, sizeof tmp, "%s.tmp", s->state_file);
  f = fopen (tmp, "w");
  if (f == NULL) {
    perror (tmp);
    exit (1);
  }
  fprintf (f, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
           s->mark.durable, s->mark.file_size, s->mark.dev, s->mark.ino,
           s->done);
  if (fclose (f) == EOF || rename (tmp, s->state_file) == -1) {
    perror (s->state_file);
    exit (1);
  }
}

/* Append DURABLE to the list of checkpoints, STATE.log. */
static void
append_log (struct state *s, uint64_t durable)
{
  char log[4096];
  FILE *f;

  snprintf (log, sizeof log, "%s.log", s->state_file);
  f = fopen (log, "a");
  if (f == NULL || fprintf (f, "%" PRIu64 "\n", durable) < 0 ||
      fclose (f) == EOF) {
    perror (log);
    exit (1);
  }
}

/* The checkpoint callback: record the target's mark. */
static int
on_checkpoint (uint64_t durable, void *opaque)
{
  struct state *s = opaque;

  if (ferry_copy_mark_target (s->dst, durable, &s->mark) == -1)
    return -1;
  s->checkpoints++;
  save_state (s);
  append_log (s, durable);
  /* A checkpoint is a moment the copy is surely still going. */
  if (s->cancel_at && durable >= s->cancel_at)
    s->cancel = 1;
  return 0;
}

/* The progress callback: remember done, and cancel when asked. */
static void
on_progress (const struct ferry_progress *p, void *opaque)
{
  struct state *s = opaque;

  if (!s->have_first) {
    s->first_done = p->done;
    s->have_first = true;
  }
  s->done = p->done;
  if (s->state_file && s->mark.ino)
    save_state (s);
  if (s->cancel_at && p->done >= s->cancel_at)
    s->cancel = 1;
}

/* Read the state file into S. */
static void
load_state (struct state *s)
{
  FILE *f = fopen (s->state_file, "r");

  if (f == NULL) {
    perror (s->state_file);
    exit (1);
  }
  if (fscanf (f, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64,
              &s->mark.durable, &s->mark.file_size, &s->mark.dev,
              &s->mark.ino, &s->done) != 5) {
    fprintf (stderr, "%s: not a state file\n", s->state_file);
    exit (1);
  }
  fclose (f);
}

static void fail (const char *what) __attribute__ ((noreturn));

/* Open the source PATH: a raw image, or with a name ending in .gz, a raw
 * image gzip-compressed, read as a stream (ferry_image_open_stream) of
 * the virtual size $SOURCE_SIZE. */
static struct ferry_image *
open_source (const char *path)
{
  size_t len = strlen (path);
  struct ferry_image *img;
  struct stat st;

  if (len > 3 && strcmp (path + len - 3, ".gz") == 0) {
    const char *size = getenv ("SOURCE_SIZE");
    if (size == NULL || stat (path, &st) == -1) {
      fprintf (stderr, "%s: set SOURCE_SIZE to its inflated size\n", path);
      exit (1);
    }
    img = ferry_image_open_stream (path, "raw", 0, st.st_size,
                                   strtoull (size, NULL, 0), 0);
  }
  else
    img = ferry_image_open (path, "raw", 0);
  if (img == NULL)
    fail ("open source");
  return img;
}

/* Print the library's error and exit. */
static void
fail (const char *what)
{
  fprintf (stderr, "copy-resume: %s: %s (errno %d)\n", what,
           ferry_get_error (), ferry_get_errno ());
  exit (ferry_get_errno () == ESTALE ? 3 : 1);
}

/* Copy SRC into DST with checkpoints (copy and cancel modes). */
static int
do_copy (char **argv, int argc, bool cancel)
{
  struct state s = { .dst = argv[3], .state_file = argv[6] };
  struct ferry_copy_options opts = { 0 };
  struct ferry_image *src, *dst;
  int compress_arg = cancel ? 9 : 8;

  src = open_source (argv[2]);
  dst = ferry_image_create (argv[3], argv[4], ferry_image_size (src),
                            *argv[5] ? argv[5] : NULL);
  if (dst == NULL)
    fail ("create target");
  printf ("can_resume %s\n", ferry_image_can_resume (dst) ? "true" : "false");
  fflush (stdout);
  /* CKPT_BYTES 0: no checkpoints at all (to time their cost). */
  opts.checkpoint_bytes = strtoull (argv[7], NULL, 0);
  if (opts.checkpoint_bytes) {
    opts.checkpoint = on_checkpoint;
    opts.checkpoint_opaque = &s;
  }
  opts.progress = on_progress;
  opts.progress_opaque = &s;
  opts.compress = argc > compress_arg && strcmp (argv[compress_arg], "compress") == 0;
  if (cancel) {
    s.cancel_at = strtoull (argv[8], NULL, 0);
    opts.cancel = &s.cancel;
  }
  if (ferry_copy (src, dst, &opts) == -1) {
    if (cancel && ferry_get_errno () == EINTR) {
      printf ("cancelled checkpoints %u durable %" PRIu64 "\n",
              s.checkpoints, s.mark.durable);
      ferry_image_close (dst);
      ferry_image_close (src);
      return 0;
    }
    fail ("copy");
  }
  printf ("finished checkpoints %u\n", s.checkpoints);
  if (ferry_image_close (dst) == -1)
    fail ("close target");
  ferry_image_close (src);
  return cancel ? 2 : 0;
}

/* The bytes of SRC's data extents below END. */
static uint64_t
data_below (struct ferry_image *src, uint64_t end)
{
  struct ferry_extent_list list = { 0 };
  uint64_t pos = 0, n = 0;
  size_t i;

  while (pos < end) {
    list.len = 0;
    if (ferry_image_extents (src, pos, end - pos, &list) == -1)
      fail ("extents");
    for (i = 0; i < list.len && pos < end; i++) {
      const struct ferry_extent *x = &list.ptr[i];
      uint64_t e = x->offset + x->length < end ? x->offset + x->length : end;

      if (e <= pos)
        continue;
      if (!(x->flags & FERRY_EXTENT_ZERO))
        n += e - pos;
      pos = e;
    }
  }
  ferry_extent_list_free (&list);
  return n;
}

/* The most data of SRC between two checkpoints of STATE.log (from 0). */
static uint64_t
max_data_gap (struct ferry_image *src, const char *state_file)
{
  char log[4096];
  uint64_t d, prev = 0, gap = 0;
  FILE *f;

  snprintf (log, sizeof log, "%s.log", state_file);
  f = fopen (log, "r");
  if (f == NULL) {
    perror (log);
    exit (1);
  }
  while (fscanf (f, "%" SCNu64, &d) == 1) {
    uint64_t n = data_below (src, d);
    if (n - prev > gap)
      gap = n - prev;
    prev = n;
  }
  fclose (f);
  return gap;
}

/* Reopen the partial target and finish the copy. */
static int
do_resume (char **argv, int argc)
{
  struct state s = { .state_file = argv[5] };
  struct ferry_copy_options opts = { 0 };
  struct ferry_image *src, *dst;
  uint64_t killed_done;

  load_state (&s);
  killed_done = s.done;
  src = open_source (argv[2]);
  dst = ferry_copy_reopen_target (argv[3], argv[4], &s.mark);
  if (dst == NULL)
    fail ("reopen target");
  s.state_file = NULL;
  opts.resume_from = s.mark.durable;
  opts.progress = on_progress;
  opts.progress_opaque = &s;
  opts.compress = argc > 6 && strcmp (argv[6], "compress") == 0;
  if (ferry_copy (src, dst, &opts) == -1)
    fail ("resumed copy");
  if (ferry_image_close (dst) == -1)
    fail ("close target");
  printf ("durable %" PRIu64 " below %" PRIu64 " first_done %" PRIu64
          " last_done %" PRIu64 " max_gap %" PRIu64 "\n", s.mark.durable,
          data_below (src, s.mark.durable), s.first_done, killed_done,
          max_data_gap (src, argv[5]));
  ferry_image_close (src);
  return 0;
}

/* Dispatch on the mode. */
int
main (int argc, char **argv)
{
  if (argc >= 8 && strcmp (argv[1], "copy") == 0)
    return do_copy (argv, argc, false);
  if (argc >= 9 && strcmp (argv[1], "cancel") == 0)
    return do_copy (argv, argc, true);
  if (argc >= 6 && strcmp (argv[1], "resume") == 0)
    return do_resume (argv, argc);
  fprintf (stderr, "usage: see the comment at the top of copy-resume.c\n");
  return 1;
}
