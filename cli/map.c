/* ferry map: the extents of an image, local or NBD, printed as nbdinfo
 * --map prints them: start, length, the context's raw value and its
 * meaning, one line each (or a JSON array with --json); --totals sums
 * each value instead.  --context picks a metadata context other than
 * base:allocation (an NBD export's qemu:dirty-bitmap:NAME, ...).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

/* How much one query covers: bounds the list however fragmented. */
#define MAP_QUERY (1ull << 30)

#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* What a value of CONTEXT means, in nbdinfo's words; NULL when there is
 * no word for it. */
static const char *
describe_value (const char *context, uint32_t type, char *buf, size_t len)
{
  static const char *const allocation[] = {
    "data", "hole", "zero", "hole,zero",
  };

  if (strcmp (context, FERRY_CONTEXT_BASE_ALLOCATION) == 0)
    return type < 4 ? allocation[type] : NULL;
  if (strncmp (context, "qemu:dirty-bitmap:", 18) == 0)
    return type == 0 ? "clean" : type == 1 ? "dirty" : NULL;
  if (strcmp (context, "qemu:allocation-depth") == 0) {
    if (type == 0)
      return "absent";
    if (type == 1)
      return "local";
    snprintf (buf, len, "backing depth %" PRIu32, type);
    return buf;
  }
  return NULL;
}

/* The printer's state: the extent not yet printed (adjacent ones with
 * the same value are merged across queries), and the totals. */
struct map_out {
  const char *context;
  bool json, totals;
  bool have, first;
  struct ferry_extent cur;
  uint64_t size;
  struct { uint32_t type; uint64_t bytes; } *sums;
  size_t nr_sums;
};

/* A JSON string of S (descriptions are plain, but say so for sure). */
static void
print_json_string (const char *s)
{
  putchar ('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      printf ("\\%c", *s);
    else if ((unsigned char) *s < 0x20)
      printf ("\\u%04x", *s);
    else
      putchar (*s);
  }
  putchar ('"');
}

/* Print or count the extent M holds. */
static int
emit (struct map_out *m)
{
  char buf[64];
  const char *desc;
  size_t i;

  if (!m->have)
    return 0;
  m->have = false;
  if (m->totals) {
    for (i = 0; i < m->nr_sums; i++)
      if (m->sums[i].type == m->cur.flags)
        break;
    if (i == m->nr_sums) {
      void *p = realloc (m->sums, (m->nr_sums + 1) * sizeof *m->sums);
      if (p == NULL)
        return -1;
      m->sums = p;
      m->sums[m->nr_sums].type = m->cur.flags;
      m->sums[m->nr_sums++].bytes = 0;
    }
    m->sums[i].bytes += m->cur.length;
    return 0;
  }
  desc = describe_value (m->context, m->cur.flags, buf, sizeof buf);
  if (m->json) {
    printf ("%s{ \"offset\": %" PRIu64 ", \"length\": %" PRIu64
            ", \"type\": %" PRIu32, m->first ? "" : ",\n", m->cur.offset,
            m->cur.length, m->cur.flags);
    if (desc) {
      printf (", \"description\": ");
      print_json_string (desc);
    }
    printf ("}");
  }
  else
    printf ("%10" PRIu64 "  %10" PRIu64 "  %3" PRIu32 "%s%s\n",
            m->cur.offset, m->cur.length, m->cur.flags, desc ? "  " : "",
            desc ? desc : "");
  m->first = false;
  return 0;
}

/* Take one extent: merge it into the one held, or print that one. */
static int
take (struct map_out *m, const struct ferry_extent *e)
{
  if (m->have && m->cur.offset + m->cur.length == e->offset &&
      m->cur.flags == e->flags) {
    m->cur.length += e->length;
    return 0;
  }
  if (emit (m) == -1)
    return -1;
  m->cur = *e;
  m->have = true;
  return 0;
}

static int
compare_sums (const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

  return x < y ? -1 : x > y;
}

/* Print the totals, by value, as nbdinfo --map --totals does. */
static void
print_totals (struct map_out *m)
{
  char buf[64];
  size_t i;

  qsort (m->sums, m->nr_sums, sizeof *m->sums, compare_sums);
  if (m->json)
    printf ("[\n");
  for (i = 0; i < m->nr_sums; i++) {
    double pc = m->size ? 100.0 * m->sums[i].bytes / m->size : 0;
    const char *desc = describe_value (m->context, m->sums[i].type, buf,
                                       sizeof buf);
    if (m->json) {
      printf ("%s{ \"size\": %" PRIu64 ", \"percent\": %g, \"type\": %"
              PRIu32, i ? ",\n" : "", m->sums[i].bytes, pc, m->sums[i].type);
      if (desc) {
        printf (", \"description\": ");
        print_json_string (desc);
      }
      printf ("}");
    }
    else
      printf ("%10" PRIu64 " %5.1f%% %3" PRIu32 "%s%s\n", m->sums[i].bytes,
              pc, m->sums[i].type, desc ? " " : "", desc ? desc : "");
  }
  if (m->json)
    printf ("\n]\n");
}

static void
usage (FILE *fp)
{
  fprintf (fp,
    "usage: ferry map [-f FMT] [--context NAME] [--totals] [--json]\n"
    "                 [--strict] [-U] [--timeout S] IMAGE\n"
    "  IMAGE           a file or an NBD URI (nbd://, nbds://, nbd+unix://)\n"
    "  --context NAME  the metadata context to map (default base:allocation;\n"
    "                  an NBD export may offer qemu:dirty-bitmap:NAME,\n"
    "                  qemu:allocation-depth, ...)\n"
    "  --totals        the bytes of each value instead of the extents\n"
    "  --json          JSON, as nbdinfo --map --json\n"
    "  --strict        refuse what would only be a warning (a bad checksum)\n"
    "  -U, --force-share  read an image another process is writing\n"
    "  --timeout S     give up on an NBD server that does not answer within\n"
    "                  S seconds (default 30 for the handshake, 60 for a\n"
    "                  request; 0: wait for ever)\n");
}

int
cmd_map (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "context", required_argument, NULL, 'x' },
    { "json", no_argument, NULL, 'j' },
    { "totals", no_argument, NULL, 't' },
    { "format", required_argument, NULL, 'f' },
    { "strict", no_argument, NULL, 's' },
    { "force-share", no_argument, NULL, 'U' },
    { "timeout", required_argument, NULL, 'T' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *format = NULL;
  unsigned flags = 0;
  struct map_out m = { .context = FERRY_CONTEXT_BASE_ALLOCATION, .first = true };
  struct ferry_extent_list list = { 0 };
  struct ferry_image *img;
  uint64_t pos = 0;
  int c, ret = 1;

  while ((c = getopt_long (argc, argv, "f:Uh", long_options, NULL)) != -1) {
    switch (c) {
    case 'x': m.context = optarg; break;
    case 'j': m.json = true; break;
    case 't': m.totals = true; break;
    case 'f': format = optarg; break;
    case 's': flags |= FERRY_OPEN_STRICT; break;
    case 'U': flags |= FERRY_OPEN_SHARED; break;
    case 'T':
      if (parse_timeout_option ("map", optarg) == -1)
        return 1;
      break;
    case 'h': usage (stdout); return 0;
    default: usage (stderr); return 1;
    }
  }
  if (optind != argc - 1) {
    print_message ("map", "expected one IMAGE (see ferry map --help)");
    return 1;
  }

  img = ferry_image_open (argv[optind], format, flags);
  if (img == NULL) {
    print_read_error ("map");
    return 1;
  }
  m.size = ferry_image_size (img);
  if (m.json && !m.totals)
    printf ("[\n");
  while (pos < m.size) {
    uint64_t before = pos;
    size_t i;

    if (cli_stop)               /* a huge local image: stop between queries */
      goto out;
    list.len = 0;
    if (ferry_image_context_extents (img, m.context, pos,
                                     MIN (m.size - pos, MAP_QUERY),
                                     &list) == -1) {
      fflush (stdout);
      print_error ("map");
      goto out;
    }
    for (i = 0; i < list.len; i++) {
      struct ferry_extent e = list.ptr[i];
      uint64_t end = MIN (e.offset + e.length, m.size);
      if (end <= pos)
        continue;
      e.length = end - pos;
      e.offset = pos;
      if (take (&m, &e) == -1)
        goto nomem;
      pos = end;
    }
    if (pos == before) {
      print_message ("map", "%s: no extent at offset %" PRIu64, argv[optind],
                     pos);
      goto out;
    }
  }
  if (emit (&m) == -1)
    goto nomem;
  if (m.totals)
    print_totals (&m);
  else if (m.json)
    printf ("\n]\n");
  ret = 0;
  goto out;

 nomem:
  print_message ("map", "out of memory");
 out:
  ferry_extent_list_free (&list);
  free (m.sums);
  ferry_image_close (img);
  return ret;
}
