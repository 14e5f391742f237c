/* vmdk: the text descriptor, in its own file or embedded in a sparse
 * extent.  It is a list of lines:
 *
 *   # comments
 *   version=1
 *   CID=fffffffe                      hex
 *   parentCID=ffffffff                hex; ffffffff: no parent
 *   parentFileNameHint="base.vmdk"    the parent, for snapshots
 *   createType="monolithicSparse"
 *   RW 4192256 SPARSE "disk-s001.vmdk"        extent lines:
 *   RW 2097152 FLAT "disk-flat.vmdk" 0        ACCESS SECTORS TYPE
 *   RDONLY 1024 ZERO                          ["FILE" [OFFSET]]
 *   ddb.adapterType = "lsilogic"      the disk database
 *   encryption.keySafe = "..."        VMware's encrypted disks
 *
 * The parser is strict about what it understands (a malformed extent line,
 * an unterminated quote, a bad number is an error that names the line) and
 * keeps keys it does not know out of the way.  It never trusts a length:
 * the text is at most VMDK_MAX_DESCRIPTOR bytes and ends at its first NUL.
 * It is the one parser of descriptors: ferry_vmdk_read_descriptor
 * (<ferry/vmdk.h>) gives what it reads, without opening the extents, to
 * whoever looks at a disk before opening it (lib/vm, for a VMX's disks).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/vmdk.h>

#include "vmdk-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

static const char *const type_names[] = {
  [VMDK_EXTENT_FLAT] = "FLAT",
  [VMDK_EXTENT_SPARSE] = "SPARSE",
  [VMDK_EXTENT_ZERO] = "ZERO",
  [VMDK_EXTENT_VMFS] = "VMFS",
  [VMDK_EXTENT_VMFSSPARSE] = "VMFSSPARSE",
  [VMDK_EXTENT_SESPARSE] = "SESPARSE",
  [VMDK_EXTENT_VMFSRDM] = "VMFSRDM",
  [VMDK_EXTENT_VMFSRAW] = "VMFSRAW",
};

static const char *const access_names[] = {
  [VMDK_RW] = "RW",
  [VMDK_RDONLY] = "RDONLY",
  [VMDK_NOACCESS] = "NOACCESS",
};

const char *
vmdk_extent_type_name (enum vmdk_extent_type type)
{
  return type_names[type];
}

const char *
vmdk_access_name (enum vmdk_access access)
{
  return access_names[access];
}

static bool
is_space (char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* The line [P, END) without the blanks around it. */
static void
trim (const char **p, const char **end)
{
  while (*p < *end && is_space (**p))
    (*p)++;
  while (*end > *p && is_space ((*end)[-1]))
    (*end)--;
}

/* True when the counted string [P, END) equals WORD. */
static bool
equals (const char *p, const char *end, const char *word)
{
  size_t n = strlen (word);
  return (size_t) (end - p) == n && memcmp (p, word, n) == 0;
}

/* Skip a UTF-8 byte order mark at *P (a descriptor saved by a Windows
 * editor starts with one). */
static void
skip_bom (const char **p, const char *end)
{
  if (end - *p >= 3 && memcmp (*p, "\xef\xbb\xbf", 3) == 0)
    *p += 3;
}

int
vmdk_check_descriptor_name (const char *path, const char *name)
{
  const unsigned char *p;

  for (p = (const unsigned char *) name; *p; p++)
    if (*p == '"' || *p < 0x20 || *p == 0x7f)
      return ferry_error (EINVAL, "%s: a VMDK descriptor cannot name a file "
                          "with a double quote or a control character "
                          "('%s')", path, name);
  return 0;
}

bool
vmdk_looks_like_descriptor (const uint8_t *buf, size_t len)
{
  const char *p = (const char *) buf, *end = p + len;

  skip_bom (&p, end);

  while (p < end) {
    const char *eol = memchr (p, '\n', end - p), *q;
    const char *line_end = eol ? eol : end;

    if (memchr (p, '\0', line_end - p))
      return false;
    q = p;
    trim (&q, &line_end);
    if (q < line_end && *q == '#') {
      if (equals (q, line_end, "# Disk DescriptorFile"))
        return true;
    }
    else if (q < line_end) {
      /* The first line that is not a comment says "version=N". */
      if (line_end - q < 8 || strncmp (q, "version", 7) != 0)
        return false;
      for (q += 7; q < line_end && is_space (*q); q++)
        ;
      return q < line_end && *q == '=';
    }
    if (eol == NULL)
      break;
    p = eol + 1;
  }
  return false;
}

/* Parse the decimal number at *P (up to END) into *V, moving *P past it. */
static bool
parse_u64 (const char **p, const char *end, uint64_t *v)
{
  uint64_t n = 0;
  const char *q = *p;

  if (q >= end || *q < '0' || *q > '9')
    return false;
  for (; q < end && *q >= '0' && *q <= '9'; q++) {
    if (n > (UINT64_MAX - 9) / 10)
      return false;
    n = n * 10 + (*q - '0');
  }
  *p = q;
  *v = n;
  return true;
}

/* The next word (up to a blank) at *P; moves *P past it and the blanks
 * after it.  Returns its length (0 at the end). */
static size_t
next_word (const char **p, const char *end, const char **word)
{
  const char *q = *p;
  size_t n;

  *word = q;
  while (q < end && !is_space (*q))
    q++;
  n = q - *word;
  while (q < end && is_space (*q))
    q++;
  *p = q;
  return n;
}

static void
free_line (struct vmdk_extent_line *l)
{
  free (l->file);
}

/* Parse an extent line [P, END) (line LINENO of PATH) into D. */
static int
parse_extent_line (const char *path, unsigned lineno, const char *p,
                   const char *end, struct vmdk_descriptor *d)
{
  struct vmdk_extent_line l = { 0 };
  const char *w, *line = p;
  size_t n;
  size_t t;

  n = next_word (&p, end, &w);
  if (n == 2 && memcmp (w, "RW", 2) == 0)
    l.access = VMDK_RW;
  else if (n == 6 && memcmp (w, "RDONLY", 6) == 0)
    l.access = VMDK_RDONLY;
  else
    l.access = VMDK_NOACCESS;

  if (!parse_u64 (&p, end, &l.sectors) || (p < end && !is_space (*p)))
    goto bad;
  while (p < end && is_space (*p))
    p++;
  n = next_word (&p, end, &w);
  for (t = 0; t < sizeof type_names / sizeof type_names[0]; t++)
    if (strlen (type_names[t]) == n && memcmp (w, type_names[t], n) == 0)
      break;
  if (t == sizeof type_names / sizeof type_names[0]) {
    ferry_error (ENOTSUP, "%s: descriptor line %u: extent type '%.*s' is "
                 "not one ferry knows (FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, "
                 "SESPARSE)", path, lineno, (int) MIN (n, 32), w);
    return -1;
  }
  l.type = t;
  if (l.sectors == 0 || l.sectors > VMDK_MAX_SIZE / VMDK_SECTOR) {
    ferry_error (EINVAL, "%s: descriptor line %u: an extent of %" PRIu64
                 " sectors", path, lineno, l.sectors);
    return -1;
  }

  if (p < end) {
    const char *name = p, *name_end;
    if (*p == '"') {
      name = ++p;
      name_end = memchr (p, '"', end - p);
      if (name_end == NULL) {
        ferry_error (EINVAL, "%s: descriptor line %u: the file name has no "
                     "closing quote", path, lineno);
        return -1;
      }
      p = name_end + 1;
    }
    else {
      while (p < end && !is_space (*p))
        p++;
      name_end = p;
    }
    if (name_end == name)
      goto bad;
    l.file = strdup_counted (name, name_end - name);
    if (l.file == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", path);
    /* image.c note 7: an extent is a file, whoever reads the descriptor
     * (the driver, or a VMX's disk through ferry_vmdk_read_descriptor). */
    if (ferry_image_is_uri (l.file)) {
      ferry_error (EINVAL, "%s: descriptor line %u: the extent file '%s' is "
                   "a URI: an extent is a file, and ferry never connects to "
                   "a server a descriptor names", path, lineno, l.file);
      goto err;
    }
    while (p < end && is_space (*p))
      p++;
    if (p < end) {
      if (!parse_u64 (&p, end, &l.offset))
        goto bad_free;
      l.has_offset = true;
      while (p < end && is_space (*p))
        p++;
      if (p < end)
        goto bad_free;
      if (l.offset > VMDK_MAX_SIZE / VMDK_SECTOR) {
        ferry_error (EINVAL, "%s: descriptor line %u: offset %" PRIu64
                     " sectors is too large", path, lineno, l.offset);
        goto err;
      }
    }
  }

  switch (l.type) {
  case VMDK_EXTENT_ZERO:
    if (l.file) {
      ferry_error (EINVAL, "%s: descriptor line %u: a ZERO extent names no "
                   "file", path, lineno);
      goto err;
    }
    break;
  case VMDK_EXTENT_SPARSE: case VMDK_EXTENT_VMFSSPARSE:
  case VMDK_EXTENT_SESPARSE:
    if (l.has_offset) {
      ferry_error (EINVAL, "%s: descriptor line %u: a %s extent takes no "
                   "offset", path, lineno, type_names[l.type]);
      goto err;
    }
    /* fall through */
  default:
    if (l.file == NULL) {
      ferry_error (EINVAL, "%s: descriptor line %u: a %s extent needs a "
                   "file name", path, lineno, type_names[l.type]);
      goto err;
    }
    break;
  }
  if (vmdk_line_list_append (&d->extents, l) == -1) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    goto err;
  }
  return 0;

 bad_free:
  free_line (&l);
 bad:
  ferry_error (EINVAL, "%s: descriptor line %u: not an extent line: '%.*s'",
               path, lineno, (int) MIN (end - line, 200), line);
  return -1;
 err:
  free_line (&l);
  return -1;
}

/* Parse a hexadecimal CID [P, END) into *V. */
static bool
parse_cid (const char *p, const char *end, uint32_t *v)
{
  uint64_t n = 0;

  if (p == end || end - p > 8)
    return false;
  for (; p < end; p++) {
    int c = *p;
    if (c >= '0' && c <= '9') n = n * 16 + (c - '0');
    else if (c >= 'a' && c <= 'f') n = n * 16 + (c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') n = n * 16 + (c - 'A' + 10);
    else return false;
  }
  *v = n;
  return true;
}

/* Replace *DST with a copy of [P, END). */
static int
set_string (char **dst, const char *p, const char *end)
{
  char *s = strdup_counted (p, end - p);

  if (s == NULL)
    return -1;
  free (*dst);
  *dst = s;
  return 0;
}

/* Parse "key = value" [P, END) (line LINENO of PATH) into D. */
static int
parse_assignment (const char *path, unsigned lineno, const char *p,
                  const char *end, struct vmdk_descriptor *d)
{
  const char *eq = memchr (p, '=', end - p);
  const char *key = p, *key_end = eq, *val = eq + 1, *val_end = end;

  trim (&key, &key_end);
  trim (&val, &val_end);
  if (key == key_end) {
    ferry_error (EINVAL, "%s: descriptor line %u: '=' without a key", path,
                 lineno);
    return -1;
  }
  if (val < val_end && *val == '"') {
    const char *close = memchr (val + 1, '"', val_end - val - 1);
    if (close == NULL) {
      ferry_error (EINVAL, "%s: descriptor line %u: the value of '%.*s' has "
                   "no closing quote", path, lineno,
                   (int) MIN (key_end - key, 64), key);
      return -1;
    }
    val++;
    val_end = close;
  }

  if (equals (key, key_end, "version")) {
    uint64_t v;
    const char *q = val;
    if (!parse_u64 (&q, val_end, &v) || q != val_end || v == 0 || v > 255) {
      ferry_error (EINVAL, "%s: descriptor line %u: version '%.*s' is not a "
                   "number from 1 to 255", path, lineno,
                   (int) MIN (val_end - val, 32), val);
      return -1;
    }
    d->version = v;
  }
  else if (equals (key, key_end, "CID") ||
           equals (key, key_end, "parentCID")) {
    bool parent = key_end - key == 9;
    if (!parse_cid (val, val_end, parent ? &d->parent_cid : &d->cid)) {
      ferry_error (EINVAL, "%s: descriptor line %u: %s '%.*s' is not a "
                   "32-bit hexadecimal number", path, lineno,
                   parent ? "parentCID" : "CID",
                   (int) MIN (val_end - val, 32), val);
      return -1;
    }
    if (parent)
      d->has_parent_cid = true;
    else
      d->has_cid = true;
  }
  else if (equals (key, key_end, "createType")) {
    if (set_string (&d->create_type, val, val_end) == -1)
      goto nomem;
  }
  else if (equals (key, key_end, "parentFileNameHint")) {
    if (set_string (&d->parent_hint, val, val_end) == -1)
      goto nomem;
  }
  else if (equals (key, key_end, "encoding")) {
    if (set_string (&d->encoding, val, val_end) == -1)
      goto nomem;
  }
  else if (key_end - key > 11 && strncmp (key, "encryption.", 11) == 0)
    d->encrypted = true;        /* encryption.keySafe, encryption.data */
  else if (key_end - key > 4 && strncmp (key, "ddb.", 4) == 0) {
    struct vmdk_ddb_entry e = {
      .key = strdup_counted (key, key_end - key),
      .value = strdup_counted (val, val_end - val),
    };
    if (e.key == NULL || e.value == NULL ||
        vmdk_ddb_list_append (&d->ddb, e) == -1) {
      free (e.key);
      free (e.value);
      goto nomem;
    }
  }
  /* Other keys (isNativeSnapshot, changeTrackPath, ...) say nothing
   * about where the data is. */
  return 0;

 nomem:
  return ferry_error (ENOMEM, "%s: out of memory", path);
}

/* True when [P, END) starts with an access word and a blank. */
static bool
is_extent_line (const char *p, const char *end)
{
  static const char *const words[] = { "RW", "RDONLY", "NOACCESS" };
  size_t i, n;

  for (i = 0; i < 3; i++) {
    n = strlen (words[i]);
    if ((size_t) (end - p) > n && memcmp (p, words[i], n) == 0 &&
        is_space (p[n]))
      return true;
  }
  return false;
}

int
vmdk_descriptor_parse (const char *path, const char *text, size_t len,
                       struct vmdk_descriptor *d)
{
  const char *p = text, *end;
  unsigned lineno = 0;
  uint64_t total = 0;
  size_t i;

  memset (d, 0, sizeof *d);
  d->parent_cid = VMDK_NO_PARENT;
  if (len > VMDK_MAX_DESCRIPTOR)
    len = VMDK_MAX_DESCRIPTOR;
  end = memchr (text, '\0', len);
  if (end == NULL)
    end = text + len;
  skip_bom (&p, end);

  while (p < end) {
    const char *eol = memchr (p, '\n', end - p);
    const char *q = p, *line_end = eol ? eol : end;

    lineno++;
    trim (&q, &line_end);
    if (q == line_end || *q == '#')
      ;
    else if (is_extent_line (q, line_end)) {
      if (parse_extent_line (path, lineno, q, line_end, d) == -1)
        goto err;
    }
    else if (memchr (q, '=', line_end - q)) {
      if (parse_assignment (path, lineno, q, line_end, d) == -1)
        goto err;
    }
    else {
      ferry_error (EINVAL, "%s: descriptor line %u is neither a comment, an "
                   "extent nor a key = value: '%.*s'", path, lineno,
                   (int) MIN (line_end - q, 200), q);
      goto err;
    }
    if (eol == NULL)
      break;
    p = eol + 1;
  }

  for (i = 0; i < d->extents.len; i++) {
    total += d->extents.ptr[i].sectors;
    if (total > VMDK_MAX_SIZE / VMDK_SECTOR) {
      ferry_error (EFBIG, "%s: the extents add up to more than %" PRIu64
                   " bytes", path, VMDK_MAX_SIZE);
      goto err;
    }
  }
  return 0;

 err:
  vmdk_descriptor_free (d);
  return -1;
}

void
vmdk_descriptor_free (struct vmdk_descriptor *d)
{
  size_t i;

  for (i = 0; i < d->extents.len; i++)
    free_line (&d->extents.ptr[i]);
  vmdk_line_list_reset (&d->extents);
  for (i = 0; i < d->ddb.len; i++) {
    free (d->ddb.ptr[i].key);
    free (d->ddb.ptr[i].value);
  }
  vmdk_ddb_list_reset (&d->ddb);
  free (d->create_type);
  free (d->parent_hint);
  free (d->encoding);
  memset (d, 0, sizeof *d);
}

const char *
vmdk_ddb_get (const struct vmdk_descriptor *d, const char *key)
{
  const char *ret = NULL;
  size_t i;

  /* The last one wins, as VMware reads them. */
  for (i = 0; i < d->ddb.len; i++)
    if (strcmp (d->ddb.ptr[i].key, key) == 0)
      ret = d->ddb.ptr[i].value;
  return ret;
}

char *
vmdk_descriptor_format (const struct vmdk_descriptor *d)
{
  struct strbuf t = { 0 };
  size_t i;

  strbuf_printf (&t, "# Disk DescriptorFile\n");
  strbuf_printf (&t, "version=%u\n", d->version ? d->version : 1);
  if (d->encoding)
    strbuf_printf (&t, "encoding=\"%s\"\n", d->encoding);
  strbuf_printf (&t, "CID=%08" PRIx32 "\n", d->cid);
  strbuf_printf (&t, "parentCID=%08" PRIx32 "\n", d->parent_cid);
  if (d->parent_hint)
    strbuf_printf (&t, "parentFileNameHint=\"%s\"\n", d->parent_hint);
  strbuf_printf (&t, "createType=\"%s\"\n", d->create_type);
  strbuf_printf (&t, "\n# Extent description\n");
  for (i = 0; i < d->extents.len; i++) {
    const struct vmdk_extent_line *l = &d->extents.ptr[i];
    strbuf_printf (&t, "%s %" PRIu64 " %s", access_names[l->access],
                   l->sectors, type_names[l->type]);
    if (l->file)
      strbuf_printf (&t, " \"%s\"", l->file);
    if (l->has_offset)
      strbuf_printf (&t, " %" PRIu64, l->offset);
    strbuf_printf (&t, "\n");
  }
  strbuf_printf (&t, "\n# The Disk Data Base\n#DDB\n\n");
  for (i = 0; i < d->ddb.len; i++)
    strbuf_printf (&t, "%s = \"%s\"\n", d->ddb.ptr[i].key,
                   d->ddb.ptr[i].value);
  if (t.failed) {
    free (t.buf);
    return NULL;
  }
  return t.buf;
}

/* --- the descriptor alone, for those who look before opening ----------- */

void
ferry_vmdk_descriptor_free (struct ferry_vmdk_descriptor *d)
{
  size_t i;

  for (i = 0; i < d->nr_extents; i++) {
    free (d->extents[i].file);
    free (d->extents[i].path);
  }
  free (d->extents);
  free (d->create_type);
  free (d->parent_hint);
  free (d->adapter);
  memset (d, 0, sizeof *d);
}

/* The text of the descriptor in the file FD (PATH, SIZE bytes, whose
 * first HEAD_LEN bytes are HEAD) into *TEXT and *LEN, and whether it is
 * embedded; *TEXT NULL when the file holds none. */
static int
read_descriptor_text (const char *path, int fd, uint64_t size,
                      const uint8_t *head, size_t head_len, char **text,
                      size_t *len, bool *embedded)
{
  *text = NULL;
  *len = 0;
  *embedded = false;
  if (head_len >= VMDK_SECTOR && get_le32 (head) == VMDK4_MAGIC) {
    /* A hosted sparse extent: the descriptor where its first header says
     * (a stream's footer repeats it). */
    struct vmdk_sparse_header h;
    struct vmdk_sparse *s = vmdk_sparse_alloc (VMDK_SPARSE_HOSTED, path, fd,
                                               true);
    int r;

    if (s == NULL)
      return -1;
    vmdk_header_decode (head, &h);
    r = vmdk_sparse_read_embedded (s, &h, size, text, len);
    vmdk_sparse_free (s);
    *embedded = *text != NULL;
    return r;
  }
  if (size > VMDK_MAX_DESCRIPTOR || !vmdk_looks_like_descriptor (head,
                                                                 head_len))
    return 0;                   /* no VMDK, or one with no text */
  *text = malloc (size + 1);
  if (*text == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", path);
  if (full_pread (fd, *text, size, 0) == -1) {
    free (*text);
    *text = NULL;
    return ferry_error_errno (errno, "%s: reading the descriptor", path);
  }
  (*text)[size] = '\0';
  *len = size;
  return 0;
}

/* Fill OUT from the descriptor D of the VMDK at PATH. */
static int
export_descriptor (const char *path, const struct vmdk_descriptor *d,
                   bool embedded, struct ferry_vmdk_descriptor *out)
{
  const char *adapter = vmdk_ddb_get (d, "ddb.adapterType");
  size_t i;

  out->embedded = embedded;
  out->cid = d->cid;
  out->parent_cid = d->parent_cid;
  out->encrypted = d->encrypted;
  if ((d->create_type && !(out->create_type = strdup (d->create_type))) ||
      (d->parent_hint && !(out->parent_hint = strdup (d->parent_hint))) ||
      (adapter && !(out->adapter = strdup (adapter))))
    return ferry_error (ENOMEM, "%s: out of memory", path);
  out->raw_device = d->create_type &&
    (strcmp (d->create_type, "vmfsRawDeviceMap") == 0 ||
     strcmp (d->create_type, "vmfsPassthroughRawDeviceMap") == 0);
  out->extents = calloc (d->extents.len + 1, sizeof *out->extents);
  if (out->extents == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", path);
  for (i = 0; i < d->extents.len; i++) {
    const struct vmdk_extent_line *l = &d->extents.ptr[i];
    struct ferry_vmdk_extent *e = &out->extents[out->nr_extents++];

    e->access = access_names[l->access];
    e->sectors = l->sectors;
    e->type = type_names[l->type];
    e->offset = l->has_offset ? l->offset : 0;
    out->capacity += l->sectors * VMDK_SECTOR;
    if (l->type == VMDK_EXTENT_VMFSRDM || l->type == VMDK_EXTENT_VMFSRAW)
      out->raw_device = true;
    if (l->file == NULL)
      continue;
    /* An embedded descriptor names its file as it was called when made:
     * the data is this file, whatever it is called now (vmdk.c). */
    e->file = strdup (l->file);
    e->path = embedded ? strdup (path)
      : image_resolve_relative (path, l->file);
    if (e->file == NULL || e->path == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", path);
  }
  return 0;
}

int
ferry_vmdk_read_descriptor (const char *path,
                            struct ferry_vmdk_descriptor *out)
{
  /* O_NONBLOCK: a FIFO is not waited on (and not read: it is no file). */
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  CLEANUP_FREE char *text = NULL;
  struct vmdk_descriptor d;
  uint8_t head[VMDK_SECTOR];
  size_t len, head_len;
  bool embedded;
  struct stat st;

  memset (out, 0, sizeof *out);
  if (fd == -1)
    return ferry_error_errno (errno, "%s", path);
  if (fstat (fd, &st) == -1)
    return ferry_error_errno (errno, "%s: stat", path);
  if (!S_ISREG (st.st_mode))
    return 0;
  head_len = MIN ((uint64_t) st.st_size, sizeof head);
  if (full_pread (fd, head, head_len, 0) == -1)
    return ferry_error_errno (errno, "%s: read", path);
  if (read_descriptor_text (path, fd, st.st_size, head, head_len, &text,
                            &len, &embedded) == -1)
    return -1;
  if (text == NULL)
    return 0;
  if (vmdk_descriptor_parse (path, text, len, &d) == -1)
    return -1;
  if (export_descriptor (path, &d, embedded, out) == -1) {
    vmdk_descriptor_free (&d);
    ferry_vmdk_descriptor_free (out);
    return -1;
  }
  vmdk_descriptor_free (&d);
  return 1;
}
