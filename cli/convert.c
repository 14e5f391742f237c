/* ferry convert: copy an image into a new one of any format, with the
 * option names qemu-img users know.
 *
 * NOTES ON CRASH SAFETY
 *
 * 1. Without -n the target is a pending target of the library
 *    (<ferry/target.h>): made under a hidden temporary name beside DST,
 *    written, then committed (closed, every file fsync'd, renamed to DST
 *    without ever replacing anything, the folder fsync'd), or removed on
 *    any failure.  Nothing that looks like a finished DST exists before
 *    the copy is complete.  The library's messages name DST, never the
 *    temporary name, and it removes the leftovers of ferry processes
 *    that died in DST's folder; they are listed here.
 *
 * 2. SIGINT, SIGTERM, SIGHUP and SIGQUIT only set a flag and ask the
 *    library to stop (ferry.h); the copy engine and any wait on an NBD
 *    server see it, stop, and the temporary file is removed like on any
 *    failure.  SIGPIPE is ignored, so a closed progress pipe does not kill
 *    ferry half way.
 *
 * 3. With -n the copy goes into the existing DST in place, as qemu-img
 *    convert -n does: there is no atomicity to offer then, which is what
 *    -n asks for.  A failure or an interrupt leaves DST partly written,
 *    and the message says so.
 *
 * 4. -t unsafe (qemu-img's default cache mode) skips the flush and the
 *    fsync of note 1: the rename still comes last, but after a power cut
 *    DST may exist with data that never reached the disk.  Every other
 *    -t value keeps ferry's default, which flushes before the rename.
 *
 * 5. An NBD export as DST (nbd://, nbds://, nbd+unix://...) exists already
 *    and has no name to rename to: it is written in place as with -n (-O
 *    may only say raw; -o and -B are refused), after refusing one smaller
 *    than SRC.  A failure or an interrupt leaves it partly written, and
 *    the message says so; the flush at the end is the server's NBD flush.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ferry.h"

/* Append "KEY=VALUE" to the option string *OPTS (growing it).  Commas in
 * VALUE are doubled, as the option syntax wants for a literal comma. */
static int
append_option (char **opts, const char *key, const char *value)
{
  char *escaped = NULL, *s, *p;
  int r;

  if (value) {
    escaped = malloc (2 * strlen (value) + 1);
    if (escaped == NULL)
      return -1;
    for (p = escaped; *value; value++) {
      if (*value == ',')
        *p++ = ',';
      *p++ = *value;
    }
    *p = '\0';
  }
  if (*opts && **opts)
    r = asprintf (&s, "%s,%s%s%s", *opts, key, escaped ? "=" : "",
                  escaped ? escaped : "");
  else
    r = asprintf (&s, "%s%s%s", key, escaped ? "=" : "",
                  escaped ? escaped : "");
  free (escaped);
  if (r == -1)
    return -1;
  free (*opts);
  *opts = s;
  return 0;
}

/* With -n: refuse a DST (of format FMT) that is SRC, or one of its
 * files (a VMDK extent, a backing file), before opening it for writing,
 * which would change it already (a qcow2 dirty bit, VHDX GUIDs).  Its
 * files are read from a shared, read-only open; -1 after a message. */
static int
refuse_same_file (struct ferry_image *src, const char *dst_path,
                  const char *fmt)
{
  struct ferry_image *peek;
  int r = ferry_image_has_file (src, dst_path);

  if (r == 0) {
    peek = ferry_image_open (dst_path, fmt,
                             FERRY_OPEN_SHARED | FERRY_OPEN_NO_BACKING);
    /* Where DST does not open as FMT, the open for writing says why. */
    r = peek ? ferry_image_same_file (src, peek) : 0;
    ferry_image_close (peek);
  }
  if (r == 1)
    print_message ("convert", "SRC and DST are the same file, which writing "
                   "would destroy: %s", ferry_get_error ());
  else if (r == -1)
    print_error ("convert");
  return r == 0 ? 0 : -1;
}

static void
usage (FILE *fp)
{
  fprintf (fp,
    "usage: ferry convert [-f FMT] [-O FMT] [-o key=val,...] [-B BACKING [-F FMT]]\n"
    "                     [-c] [-p | --progress=bar|json|none] [-m THREADS] [-n]\n"
    "                     [--strict] [-U] [--timeout S] SRC DST\n"
    "  SRC and DST are files, devices or NBD URIs (nbd://HOST[:PORT]/EXPORT,\n"
    "  nbds://..., nbd+unix:///EXPORT?socket=PATH); an NBD DST is written in\n"
    "  place, as with -n, and must be at least as large as SRC\n"
    "  -f FMT       format of SRC (default: probed from its content)\n"
    "  -O FMT       format of DST (default: raw)\n"
    "  -o OPTIONS   options of the output format, e.g. cluster_size=64k,compat=0.10\n"
    "  -B BACKING   DST gets BACKING as its backing file; only what differs is written\n"
    "  -c           compress (qcow2)\n"
    "  -p           show progress; --progress=json prints JSON lines on stdout\n"
    "  -m THREADS   parallel workers (default: one per core)\n"
    "  -n           write into an existing DST instead of creating it\n"
    "  -t CACHE     unsafe: do not flush DST before renaming it into place\n"
    "               (qemu-img's default); writeback, none, writethrough and\n"
    "               directsync flush it (ferry's default)\n"
    "  -U, --force-share  read a SRC another process is writing\n"
    "  --strict     refuse a SRC that would only open with a warning (a bad\n"
    "               checksum)\n"
    "  --timeout S  give up on an NBD server that does not answer a request\n"
    "               (or the handshake) within S seconds (default: 60, and 30\n"
    "               for the handshake; 0: wait for ever)\n");
}

int
cmd_convert (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "progress", optional_argument, NULL, 'P' },
    { "strict", no_argument, NULL, 'S' },
    { "force-share", no_argument, NULL, 'U' },
    { "timeout", required_argument, NULL, 'T' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *src_fmt = NULL, *dst_fmt = NULL, *backing = NULL;
  const char *backing_fmt = NULL, *src_path, *dst_path;
  char *options = NULL;
  struct ferry_target *target = NULL;  /* note 1; NULL with -n */
  enum progress_mode mode = PROGRESS_NONE;
  struct ferry_copy_options copts = { 0 };
  struct ferry_image *src = NULL, *dst = NULL;
  bool compress = false, no_create = false, unsafe = false, dst_uri;
  unsigned open_flags = 0;             /* both SRC and DST */
  unsigned src_flags = 0;              /* SRC only */
  unsigned long threads = 0;
  struct stat st;
  int c, ret = 1;

  while ((c = getopt_long (argc, argv, "f:O:o:B:F:cpm:nt:Uh", long_options,
                           NULL)) != -1) {
    switch (c) {
    case 'f': src_fmt = optarg; break;
    case 'O': dst_fmt = optarg; break;
    case 'o':
      if (append_option (&options, optarg, NULL) == -1)
        goto nomem;
      break;
    case 'B': backing = optarg; break;
    case 'F': backing_fmt = optarg; break;
    case 'c': compress = true; break;
    case 'p': mode = PROGRESS_BAR; break;
    case 'P':
      if (optarg == NULL || !strcmp (optarg, "bar"))
        mode = PROGRESS_BAR;
      else if (!strcmp (optarg, "json"))
        mode = PROGRESS_JSON;
      else if (!strcmp (optarg, "none"))
        mode = PROGRESS_NONE;
      else {
        print_message ("convert", "--progress=%s: expected bar, json or none",
                       optarg);
        goto out;
      }
      break;
    case 'm':
      if (parse_threads_option ("convert", optarg, &threads) == -1)
        goto out;
      break;
    case 'n': no_create = true; break;
    case 'S': open_flags |= FERRY_OPEN_STRICT; break;
    case 'U': src_flags |= FERRY_OPEN_SHARED; break;
    case 'T':
      if (parse_timeout_option ("convert", optarg) == -1)
        goto out;
      break;
    case 't':
      if (parse_cache_option ("convert", optarg, &unsafe) == -1)
        goto out;
      break;
    case 'h': usage (stdout); ret = 0; goto out;
    default: usage (stderr); goto out;
    }
  }
  if (optind != argc - 2) {
    print_message ("convert", "expected SRC and DST (see ferry convert --help)");
    goto out;
  }
  src_path = argv[optind];
  dst_path = argv[optind + 1];
  dst_uri = ferry_image_is_uri (dst_path);   /* note 5 */
  if (backing && (append_option (&options, "backing_file", backing) == -1 ||
                  (backing_fmt &&
                   append_option (&options, "backing_fmt", backing_fmt) == -1)))
    goto nomem;
  if (backing_fmt && !backing) {
    print_message ("convert", "-F needs -B");
    goto out;
  }

  src = ferry_image_open (src_path, src_fmt, open_flags | src_flags);
  if (src == NULL) {
    print_read_error ("convert");
    goto out;
  }

  if (no_create || dst_uri) {
    if (options) {
      print_message ("convert", "-o and -B create a target; %s",
                     dst_uri ? "an NBD export exists already"
                     : "with -n the target exists already");
      goto out;
    }
    /* Never probe a target about to be written: a raw disk whose guest
     * data starts with an image header would be written through it.  As
     * in qemu-img, -n without -O means raw. */
    if (!dst_uri && refuse_same_file (src, dst_path, dst_fmt ? dst_fmt
                                      : "raw") == -1)
      goto out;
    dst = ferry_image_open (dst_path, dst_fmt ? dst_fmt : "raw",
                            FERRY_OPEN_WRITE | open_flags);
    if (dst == NULL) {
      print_error ("convert");
      goto out;
    }
    if (ferry_image_size (dst) < ferry_image_size (src)) {
      print_message ("convert", "%s: %" PRIu64 " bytes is smaller than %s "
                     "(%" PRIu64 " bytes)", dst_path, ferry_image_size (dst),
                     src_path, ferry_image_size (src));
      goto out;
    }
  }
  else {
    target = ferry_target_begin (dst_path, dst_fmt,
                                 unsafe ? FERRY_TARGET_NO_SYNC : 0);
    if (target == NULL) {
      if (ferry_get_errno () == EEXIST && lstat (dst_path, &st) == 0)
        print_message ("convert", "%s; remove it, or give -n to write into "
                       "it", ferry_get_error ());
      else
        print_error ("convert");
      goto out;
    }
    print_removed ("convert", ferry_target_removed (target));
    dst = ferry_target_create_image (target, ferry_image_size (src), options);
    if (dst == NULL) {
      print_error ("convert");
      goto out;
    }
  }

  copts.threads = threads;
  copts.compress = compress;
  copts.cancel = &cli_stop;
  copts.no_flush = unsafe;
  copts.progress = mode != PROGRESS_NONE ? progress_print : NULL;
  copts.progress_opaque = &mode;
  if (ferry_copy (src, dst, &copts) == -1) {
    if (cli_stop)
      print_interrupted ("convert", target ? "%s was not written" :
                         "%s is only partly written", dst_path);
    else {
      print_error ("convert");
      if (!target)
        print_message ("convert", "%s is only partly written", dst_path);
    }
    goto out;
  }

  if (target) {
    /* Note 1: the image belongs to the target, which closes it. */
    dst = NULL;
    if (cli_stop) {
      print_interrupted ("convert", "%s was not written", dst_path);
      goto out;
    }
    if (ferry_target_commit (target) == -1) {
      print_error ("convert");
      goto out;
    }
  }
  else {
    struct ferry_image *img = dst;
    dst = NULL;
    if (ferry_image_close (img) == -1) {
      print_error ("convert");
      print_message ("convert", "%s is only partly written", dst_path);
      goto out;
    }
  }
  ret = 0;
  goto out;

 nomem:
  print_message ("convert", "out of memory");
 out:
  if (!target && dst && ferry_image_close (dst) == -1 && ret == 0)
    ret = 1;
  ferry_target_free (target);          /* removes it unless committed */
  ferry_image_close (src);
  free (options);
  return ret;
}
