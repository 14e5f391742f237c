/* Planning a cold V2V: the names and formats of what will be written,
 * the sizes, and every prerequisite check, run before any byte moves.
 *
 * Each check ends as an error (the migration cannot go ahead) or a
 * warning, each with a one-line remedy:
 *   - a disk file missing, or one whose content cannot be read, or one
 *     that is no regular file or block device; a raw disk held in a gzip
 *     stream is read through once, for its size (which nothing else
 *     records) and its trailers, and refused when it inflates far past
 *     the size the description declares;
 *   - for an OVF package, a disk that reads a file outside the package's
 *     folder (a symbolic link, a backing file, a VMDK extent, a data file);
 *   - a disk that is no disk: in no image format, and no whole number
 *     of 512-byte sectors (refused from a VMX or .vbox, which may name any
 *     file of the host; a warning from a package); a VMX disk that holds
 *     no VMDK;
 *   - disks that cannot be migrated: raw device mappings, independent
 *     disks, encrypted disks;
 *   - snapshots present (the current state is migrated, read through each
 *     disk's chain);
 *   - not enough free space where the output goes, against the data the
 *     disks hold (their allocated size), not their virtual size;
 *   - a manifest digest that does not match (every file it lists is
 *     read), a file it lists that is missing;
 *   - secure boot;
 *   - MAC addresses that clash within the VM;
 *   - and what the plan itself needs: a name, a target format ferry can
 *     write, an output folder that does not exist yet.
 */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <ferry/copy.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* How much of the source one extents query covers while counting data. */
#define EXTENT_QUERY (1ull << 30)

/* Add a check to PLAN whose remedy concerns INPUT, a member of struct
 * ferry_v2v_options (a static string), or none (NULL). */
static int
add_check_for (struct ferry_v2v_plan *plan, const char *input,
               enum ferry_v2v_severity severity, const char *remedy,
               const char *fmt, ...)
  __attribute__ ((format (printf, 5, 6)));
static int
add_check_for (struct ferry_v2v_plan *plan, const char *input,
               enum ferry_v2v_severity severity, const char *remedy,
               const char *fmt, ...)
{
  struct ferry_v2v_check *c;
  char *msg;
  va_list ap;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&msg, fmt, ap);
  va_end (ap);
  if (r == -1)
    return ferry_error (ENOMEM, "out of memory");
  c = realloc (plan->checks, (plan->nr_checks + 1) * sizeof *c);
  if (c == NULL) {
    free (msg);
    return ferry_error (ENOMEM, "out of memory");
  }
  plan->checks = c;
  c[plan->nr_checks].severity = severity;
  c[plan->nr_checks].message = msg;
  c[plan->nr_checks].input = input;
  c[plan->nr_checks].remedy = strdup (remedy);
  if (c[plan->nr_checks].remedy == NULL) {
    free (msg);
    return ferry_error (ENOMEM, "out of memory");
  }
  plan->nr_checks++;
  if (severity == FERRY_V2V_ERROR)
    plan->nr_errors++;
  return 0;
}

/* Add a check to PLAN, its remedy concerning no option. */
#define add_check(plan, ...) add_check_for ((plan), NULL, __VA_ARGS__)

void
ferry_v2v_plan_free (struct ferry_v2v_plan *plan)
{
  size_t i;

  if (plan == NULL)
    return;
  for (i = 0; i < plan->nr_disks; i++) {
    free (plan->disks[i].source);
    free (plan->disks[i].source_format);
    free (plan->disks[i].target_name);
    free (plan->disks[i].target_format);
  }
  free (plan->disks);
  for (i = 0; i < plan->nr_checks; i++) {
    free (plan->checks[i].message);
    free (plan->checks[i].remedy);
  }
  free (plan->checks);
  free (plan->out_dir);
  free (plan->description);
  free (plan);
}

/* Where the compressed bytes of the gzip disk D lie: [*OFFSET,
 * *OFFSET+*LENGTH) of d->path (a member of an OVA, or the whole file). */
static int
stream_range (const struct ferry_vm_disk *d, const char *label,
              uint64_t *offset, uint64_t *length)
{
  struct stat st;

  *offset = *length = 0;
  if (d->member) {
    *offset = d->member_offset;
    *length = d->member_length;
    return 0;
  }
  if (stat (d->path, &st) == -1)
    return ferry_error_errno (errno, "%s", label);
  *offset = 0;
  *length = st.st_size;
  return 0;
}

struct ferry_image *
v2v_open_source (const struct ferry_vm_disk *d, const char *label,
                 uint64_t size_hint)
{
  struct ferry_image *img;

  if (d->compression == FERRY_VM_COMPRESSION_GZIP) {
    /* Inflated as it is read, never to a file. */
    uint64_t offset, length;

    if (stream_range (d, label, &offset, &length) == -1)
      return NULL;
    img = ferry_image_open_stream (d->path, NULL, offset, length,
                                   size_hint, 0);
  }
  else if (d->member)
    img = ferry_image_open_window (d->path, NULL, d->member_offset,
                                   d->member_length, 0);
  else
    img = ferry_image_open (d->path, NULL, 0);
  /* The image's messages name the archive; add the member. */
  if (img == NULL && d->member)
    ferry_error_prefix ("%s", d->member);
  return img;
}

uint64_t
v2v_data_bytes (struct ferry_image *img)
{
  struct ferry_extent_list list = { 0 };
  uint64_t size = ferry_image_size (img), pos = 0, data = 0;

  while (pos < size) {
    uint64_t before = pos;
    size_t i;

    list.len = 0;
    if (ferry_image_extents (img, pos, MIN (size - pos, EXTENT_QUERY),
                             &list) == -1) {
      ferry_extent_list_free (&list);
      return UINT64_MAX;
    }
    for (i = 0; i < list.len; i++) {
      const struct ferry_extent *e = &list.ptr[i];
      uint64_t end = MIN (e->offset + e->length, size);
      if (end <= pos)
        continue;
      if (!(e->flags & FERRY_EXTENT_ZERO))
        data += end - MAX (e->offset, pos);
      pos = end;
    }
    if (pos == before)
      break;
  }
  ferry_extent_list_free (&list);
  return data;
}

const char *
v2v_extension (const char *format)
{
  if (strcmp (format, "raw") == 0)
    return "img";
  return format;
}

/* Apply the network map MAP (the options' network_map) to the NICs of
 * VM.  KEEP_NAMES: a network no rule maps keeps its name (OVA, local,
 * QEMU's comments); otherwise (libvirt) it becomes "default", the network
 * every libvirt host has. */
static int
map_networks (struct ferry_vm *vm, const char *const *map, bool keep_names)
{
  const char *fallback = keep_names ? NULL : "default";
  size_t i, j;

  for (j = 0; map && map[j]; j++) {
    const char *eq = strchr (map[j], '=');
    if (eq == NULL) {
      if (*map[j] == '\0') {
        ferry_error (EINVAL, "network map rule '': expected SRC=DST or DST");
        return ferry_error_input ("network_map");
      }
      fallback = map[j];
    }
    else if (eq == map[j] || eq[1] == '\0') {
      ferry_error (EINVAL, "network map rule '%s': expected SRC=DST with "
                   "both names", map[j]);
      return ferry_error_input ("network_map");
    }
  }
  for (i = 0; i < vm->nr_nics; i++) {
    struct ferry_vm_nic *n = &vm->nics[i];
    const char *to = NULL;

    for (j = 0; map && map[j] && !to; j++) {
      const char *eq = strchr (map[j], '=');
      if (eq && n->network && strlen (n->network) == (size_t) (eq - map[j])
          && strncmp (n->network, map[j], eq - map[j]) == 0)
        to = eq + 1;
    }
    if (to == NULL)
      to = fallback;
    if (to && ferry_vm_set_string (&n->network, to) == -1)
      return -1;
  }
  return 0;
}

/* Make OUT the absolute path of DIR (its parent must exist). */
static int
absolute_out_dir (const char *dir, char **out)
{
  CLEANUP_FREE char *copy1 = strdup (dir), *copy2 = strdup (dir);
  char parent[PATH_MAX];
  const char *base;

  if (copy1 == NULL || copy2 == NULL)
    return ferry_error (ENOMEM, "out of memory");
  base = basename (copy1);
  if (*base == '\0' || strcmp (base, ".") == 0 || strcmp (base, "..") == 0 ||
      strcmp (base, "/") == 0) {
    ferry_error (EINVAL, "output folder %s: name a new folder", dir);
    return ferry_error_input ("out_dir");
  }
  if (realpath (dirname (copy2), parent) == NULL) {
    ferry_error_errno (errno, "output folder %s: its parent folder", dir);
    return ferry_error_input ("out_dir");
  }
  if (asprintf (out, "%s/%s", strcmp (parent, "/") ? parent : "", base) == -1)
    return ferry_error (ENOMEM, "out of memory");
  return 0;
}

/* A file name made of the VM's name: no slashes, no leading dot, and
 * nothing a VMDK descriptor could not quote. */
static char *
safe_name (const char *name)
{
  char *s = strdup (name), *p;

  if (s == NULL)
    return NULL;
  for (p = s; *p; p++)
    if (*p == '/' || *p == '"' || (unsigned char) *p < 0x20 || *p == 0x7f)
      *p = '_';
  if (s[0] == '.')
    s[0] = '_';
  return s;
}

/* True when FORMAT is a driver ferry has. */
static bool
known_format (const char *format)
{
  const char *const *f;

  for (f = ferry_image_formats (); *f; f++)
    if (strcmp (*f, format) == 0)
      return true;
  return false;
}

/* Whether the file NAME (relative: to the folder of OWNER, or to the
 * current one when OWNER is NULL) lies outside the folder ROOT (a real
 * path): then *OUTSIDE gets its real path (NAME when it has none), which
 * the caller frees. */
static bool
is_outside (const char *root, const char *owner, const char *name,
            char **outside)
{
  CLEANUP_FREE char *full = NULL, *real = NULL;
  const char *slash = owner ? strrchr (owner, '/') : NULL;
  size_t n = strlen (root);

  if (name[0] == '/' || slash == NULL)
    full = strdup (name);
  else if (asprintf (&full, "%.*s/%s", (int) (slash - owner), owner,
                     name) == -1)
    full = NULL;
  real = full ? realpath (full, NULL) : NULL;
  if (real && strncmp (real, root, n) == 0 &&
      (root[n - 1] == '/' || real[n] == '/'))
    return false;
  *outside = real ? real : strdup (name);
  real = NULL;
  return true;
}

/* For an OVF package (not an OVA, whose disks have no files of their
 * own, nor a VMX or .vbox, whose disks live on datastores anywhere): the
 * file of the first of IMG's layers, of each backing file, VMDK extent
 * and external data file its chain reads, outside the folder ROOT (a
 * real path), into *OUTSIDE (NULL: none); the caller frees it.  A package
 * from elsewhere could otherwise make ferry copy /etc/shadow into the
 * output through a backing file or an extent line, as qemu-img would. */
static int
find_outside (struct ferry_image *img, const char *root, char **outside)
{
  struct ferry_image *layer;

  *outside = NULL;
  for (layer = img; layer; layer = ferry_image_backing (layer)) {
    struct ferry_image_info info;
    size_t i;

    if (ferry_image_describe (layer, &info) == -1)
      return -1;
    /* The layer's path and its extents' are as opened; a data file's is
     * as the image records it. */
    if (is_outside (root, NULL, info.path, outside) ||
        (info.data_file &&
         is_outside (root, info.path, info.data_file, outside)))
      return 0;
    for (i = 0; i < info.nr_facts; i++) {
      const struct ferry_fact *f = &info.facts[i];
      size_t k = strlen (f->key);
      if (f->kind == FERRY_FACT_STRING && strncmp (f->key, "extent[", 7) == 0
          && k > 9 && strcmp (f->key + k - 9, ".filename") == 0 &&
          is_outside (root, NULL, f->string, outside))
        return 0;
    }
  }
  return 0;
}

/* Progress of a pass over the sources before the copy (the manifest's
 * digests, a stream measured), for the caller's callback. */
struct verify_progress {
  const struct ferry_v2v_options *opts;
  struct ferry_v2v_progress p;
  uint64_t base;
  double start;
};

static void
verify_progress (uint64_t done, void *opaque)
{
  struct verify_progress *vp = opaque;
  double now = now_seconds ();

  vp->p.done = vp->base + done;
  vp->p.elapsed = now - vp->start;
  vp->opts->progress (&vp->p, vp->opts->progress_opaque);
}

/* A raw disk in a gzip stream records no size: read the stream through
 * once, checking its trailers, for its size and its data (image.h,
 * ferry_image_measure_stream).  The disk may be larger than the
 * description says (its size wins, as for any disk) but not without
 * bound: a small file of compressed zeroes (a decompression bomb) could
 * otherwise keep ferry inflating for hours.  The bound is twice the
 * declared capacity or 1 GiB over it; with none declared (a disk named by
 * ovf:/file/), INFLATE_MAX_UNDECLARED or what FERRY_INFLATE_MAX says.
 * A stop request ends the measure (EINTR), and the plan with it. */
#define INFLATE_MAX_UNDECLARED (UINT64_C (1) << 40)   /* 1 TiB */

static int
measure_raw_stream (struct ferry_v2v_plan *plan,
                    const struct ferry_v2v_options *opts,
                    const struct ferry_vm_disk *d, struct ferry_v2v_disk *pd,
                    const char *id)
{
  struct verify_progress vp = { .opts = opts };
  uint64_t offset, length, size, data, max = UINT64_MAX;
  int r;

  if (d->capacity)
    max = MAX (d->capacity > UINT64_MAX / 2 ? UINT64_MAX : d->capacity * 2,
               d->capacity > UINT64_MAX - (1ull << 30) ? UINT64_MAX :
               d->capacity + (1ull << 30));
  else {
    const char *env = getenv ("FERRY_INFLATE_MAX");
    max = INFLATE_MAX_UNDECLARED;
    if (env && ferry_parse_size (env, &max) == -1)
      return ferry_error (EINVAL, "FERRY_INFLATE_MAX=%s: not a size (a "
                          "number with an optional k, M, G or T suffix)",
                          env);
  }
  vp.p.phase = "inflate";
  vp.start = now_seconds ();
  r = stream_range (d, pd->source, &offset, &length);
  if (r == 0) {
    vp.p.total = length;
    r = ferry_image_measure_stream (d->path, offset, length, max, &size,
                                    &data, opts->progress ? verify_progress
                                    : NULL, &vp);
  }
  if (r == -1) {
    if (ferry_get_errno () == EINTR)
      return -1;
    if (d->member)
      ferry_error_prefix ("%s", d->member);
    pd->migrated = false;
    if (ferry_get_errno () == EFBIG && d->capacity == 0)
      return add_check (plan, FERRY_V2V_ERROR, "if the disk is right, "
                        "declare it in the OVF's DiskSection with its "
                        "capacity, or raise FERRY_INFLATE_MAX",
                        "disk %s: %s, and its size is declared nowhere: "
                        "refused as a decompression bomb", id,
                        ferry_get_error ());
    if (ferry_get_errno () == EFBIG)
      return add_check (plan, FERRY_V2V_ERROR, "check the package: if the "
                        "disk is right, correct its capacity in the OVF",
                        "disk %s: %s, far more than the %" PRIu64 " bytes "
                        "the description declares: refused as a "
                        "decompression bomb", id, ferry_get_error (),
                        d->capacity);
    return add_check (plan, FERRY_V2V_ERROR, "the package is damaged: "
                      "fetch it again", "disk %s: %s", id,
                      ferry_get_error ());
  }
  if (opts->progress) {
    vp.p.done = vp.p.total;
    vp.p.finished = true;
    vp.p.elapsed = now_seconds () - vp.start;
    opts->progress (&vp.p, opts->progress_opaque);
  }
  pd->virtual_size = size;
  pd->data_bytes = data;
  return 0;
}

/* The checks on a disk D whose content is in no image format (raw):
 * whether it can be a disk at all.  A disk in no format whose size is not
 * a whole number of 512-byte sectors was made by no hypervisor: a text
 * file, /etc/passwd.  A VMX or a .vbox may name any file of this host
 * (unlike an OVF package, whose files stay in its folder), and ferry would
 * copy that file out into the output, so from them such a disk is refused,
 * as virt-v2v, which opens a VMX's disks as VMDKs only, refuses anything
 * else; from a package it is a warning.  A VMX's disks are VMDKs: one that
 * holds none is read as the raw bytes it is, with a warning. */
static int
check_raw_disk (struct ferry_v2v_plan *plan, const struct ferry_vm_disk *d,
                const struct ferry_v2v_disk *pd, const char *id)
{
  const char *type = plan->vm->source_type;
  bool anywhere = strcmp (type, "vmx") == 0 || strcmp (type, "vbox") == 0;
  const char *file = d->file ? d->file : pd->source;

  if (pd->virtual_size % 512 != 0)
    return add_check (plan, anywhere ? FERRY_V2V_ERROR : FERRY_V2V_WARNING,
                      anywhere ? "check that the description names the "
                      "disk's file: it may name any file of this host" :
                      "check the disk is the one meant", "disk %s: %s is %"
                      PRIu64 " bytes, %s, in no disk image format: no "
                      "hypervisor made it a disk", id, file,
                      pd->virtual_size, pd->virtual_size < 512 ?
                      "less than one 512-byte sector" :
                      "not a whole number of 512-byte sectors");
  if (strcmp (type, "vmx") == 0 && d->format == NULL)
    return add_check (plan, FERRY_V2V_WARNING, "check that the description "
                      "names the disk's file", "disk %s: %s holds no VMDK, "
                      "which a VMX's disks are, nor another image format: "
                      "it is read as the raw bytes it is", id, file);
  return 0;
}

/* Plan disk I of the VM and check it. */
static int
plan_disk (struct ferry_v2v_plan *plan, const struct ferry_v2v_options *opts,
           size_t i, const char *base, const char *format)
{
  struct ferry_vm *vm = plan->vm;
  struct ferry_vm_disk *d = &vm->disks[i];
  struct ferry_v2v_disk *pd = &plan->disks[i];
  const char *id = d->id ? d->id : d->file ? d->file : "?";
  struct ferry_image *img;
  struct stat st;
  bool uri;

  pd->index = i;
  pd->virtual_size = d->capacity;
  if (asprintf (&pd->target_name, "%s-disk%zu.%s", base, i + 1,
                v2v_extension (format)) == -1 ||
      (pd->target_format = strdup (format)) == NULL)
    return ferry_error (ENOMEM, "out of memory");
  if (d->member) {
    if (asprintf (&pd->source, "%s:%s", d->path, d->member) == -1)
      return ferry_error (ENOMEM, "out of memory");
  }
  else if ((pd->source = strdup (d->path ? d->path :
                                 d->file ? d->file : id)) == NULL)
    return ferry_error (ENOMEM, "out of memory");

  if (d->flags & FERRY_VM_DISK_NO_FILE) {
    pd->migrated = d->capacity > 0;
    return add_check (plan, FERRY_V2V_WARNING, "nothing to do, unless the "
                      "disk was meant to hold data",
                      "disk %s names no file: %s", id, d->capacity ?
                      "it is created empty" : "it is left out");
  }
  if (d->flags & FERRY_VM_DISK_RDM)
    return add_check (plan, FERRY_V2V_ERROR, "copy the device's contents "
                      "into a virtual disk on the source, or detach it",
                      "disk %s is a raw device mapping: there is no file "
                      "to copy", id);
  if (d->flags & FERRY_VM_DISK_ENCRYPTED)
    return add_check (plan, FERRY_V2V_ERROR, "decrypt the VM on the source "
                      "first", "disk %s is encrypted by the hypervisor", id);
  if ((d->flags & FERRY_VM_DISK_INDEPENDENT) &&
      add_check (plan, FERRY_V2V_ERROR, "set the disk to dependent mode on "
                 "the source (or detach it), then migrate again",
                 "disk %s is an independent disk (%s)", id,
                 d->mode ? d->mode : "independent") == -1)
    return -1;
  /* A server's export (a running VM's disk, a warm migration): no file
   * here to look at; opening it tells. */
  uri = d->path && ferry_image_is_uri (d->path);
  if (uri)
    memset (&st, 0, sizeof st);
  if (d->path == NULL || (!d->member && !uri && stat (d->path, &st) == -1))
    return add_check (plan, FERRY_V2V_ERROR, d->member || !strcmp
                      (vm->source_type, "ova") ? "the package is "
                      "incomplete: fetch it again" : "put the file where "
                      "the description says, or fix the name there",
                      "disk %s: file %s is missing%s", id,
                      d->file ? d->file : "?",
                      !strcmp (vm->source_type, "ova") ?
                      " from the archive" : "");
  /* Opening a FIFO would wait for a writer forever. */
  if (!d->member && !uri && !S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode))
    return add_check (plan, FERRY_V2V_ERROR, "put the file where the "
                      "description says, or fix the name there",
                      "disk %s: file %s is not a regular file or a block "
                      "device", id, d->file ? d->file : d->path);

  img = v2v_open_source (d, pd->source, d->capacity);
  if (img == NULL)
    return add_check (plan, FERRY_V2V_ERROR, ferry_get_errno () == ENOTSUP ?
                      "unpack the package (tar xf, gunzip) and migrate from "
                      "its folder" : "repair or replace the disk file",
                      "disk %s: %s", id, ferry_get_error ());
  if (!d->member && strcmp (vm->source_type, "ovf") == 0) {
    CLEANUP_FREE char *copy = strdup (vm->source), *root = NULL;
    CLEANUP_FREE char *outside = NULL;
    int r = -1;

    errno = ENOMEM;
    if (copy && (root = realpath (dirname (copy), NULL)) != NULL)
      r = find_outside (img, root, &outside);
    if (r == 0 && outside) {
      ferry_image_close (img);
      return add_check (plan, FERRY_V2V_ERROR, "migrate only packages you "
                        "trust; fix the disk so it reads only the "
                        "package's files", "disk %s: %s reads %s, which "
                        "lies outside the package's folder", id,
                        d->file ? d->file : d->path, outside);
    }
    if (r == -1) {
      ferry_image_close (img);
      return add_check (plan, FERRY_V2V_ERROR, "repair or replace the disk "
                        "file", "disk %s: %s", id, root ? ferry_get_error ()
                        : strerror (errno));
    }
  }
  pd->migrated = true;
  pd->source_format = strdup (ferry_image_format (img));
  pd->virtual_size = ferry_image_size (img);
  pd->file_bytes = d->member ? d->member_length : (uint64_t) st.st_size;
  /* A stream cannot be looked ahead in: what the description says (a
   * raw one is measured below). */
  if (ferry_image_is_sequential (img))
    pd->data_bytes = d->populated ? MIN (d->populated, pd->virtual_size)
      : pd->virtual_size;
  else
    pd->data_bytes = v2v_data_bytes (img);
  ferry_image_close (img);
  if (pd->source_format == NULL)
    return ferry_error (ENOMEM, "out of memory");
  if (pd->data_bytes == UINT64_MAX)
    pd->data_bytes = pd->virtual_size;
  if (d->compression == FERRY_VM_COMPRESSION_GZIP &&
      strcmp (pd->source_format, "raw") == 0) {
    if (measure_raw_stream (plan, opts, d, pd, id) == -1)
      return -1;
    if (!pd->migrated)
      return 0;                 /* the stream is refused */
  }
  if (strcmp (pd->source_format, "raw") == 0 &&
      check_raw_disk (plan, d, pd, id) == -1)
    return -1;
  if (d->format && strcmp (d->format, pd->source_format) != 0 &&
      add_check (plan, FERRY_V2V_WARNING, "check the disk is the one meant",
                 "disk %s: the description says %s, the file holds %s; "
                 "read as %s", id, d->format, pd->source_format,
                 pd->source_format) == -1)
    return -1;
  if (d->capacity && d->capacity != pd->virtual_size &&
      add_check (plan, FERRY_V2V_WARNING, "check the description",
                 "disk %s: the description says %" PRIu64 " bytes, the "
                 "image has %" PRIu64 "; the image's size is kept", id,
                 d->capacity, pd->virtual_size) == -1)
    return -1;
  return 0;
}

/* Where the manifest entry E's bytes are: a file, or a member of the
 * OVA. */
static int
locate_entry (struct ferry_v2v_plan *plan, const struct ferry_ova *ova,
              const struct ferry_vm_manifest_entry *e, char **path,
              uint64_t *offset, uint64_t *length)
{
  struct stat st;

  if (ova) {
    CLEANUP_FREE char *folder = NULL, *name = NULL;
    const struct ferry_ova_member *m;
    const char *slash = strrchr (plan->vm->manifest, '/');

    if (slash)
      folder = strndup (plan->vm->manifest, slash - plan->vm->manifest);
    if (asprintf (&name, "%s%s%s", folder ? folder : "", folder ? "/" : "",
                  e->name) == -1)
      return ferry_error (ENOMEM, "out of memory");
    m = ferry_ova_find (ova, name);
    if (m == NULL)
      return 0;
    *path = strdup (ova->path);
    *offset = m->offset;
    *length = m->length;
    return *path ? 1 : ferry_error (ENOMEM, "out of memory");
  }
  else {
    CLEANUP_FREE char *dir = strdup (plan->vm->source);
    if (dir == NULL)
      return ferry_error (ENOMEM, "out of memory");
    if (asprintf (path, "%s/%s", dirname (dir), e->name) == -1)
      return ferry_error (ENOMEM, "out of memory");
    if (stat (*path, &st) == -1) {
      free (*path);
      *path = NULL;
      return 0;
    }
    *offset = 0;
    *length = st.st_size;
    return 1;
  }
}

/* Check every digest of the manifest. */
static int
check_manifest (struct ferry_v2v_plan *plan,
                const struct ferry_v2v_options *opts)
{
  struct ferry_vm *vm = plan->vm;
  struct ferry_ova *ova = NULL;
  struct verify_progress vp = { .opts = opts };
  uint64_t total = 0;
  size_t i;
  int r = 0;

  if (vm->nr_manifest_entries == 0)
    return 0;
  if (strcmp (vm->source_type, "ova") == 0 &&
      (ova = ferry_ova_open (vm->source)) == NULL)
    return -1;
  /* The total first, for the progress. */
  for (i = 0; i < vm->nr_manifest_entries; i++) {
    CLEANUP_FREE char *path = NULL;
    uint64_t off, len;
    if (locate_entry (plan, ova, &vm->manifest_entries[i], &path, &off,
                      &len) == 1)
      total += len;
  }
  vp.p.phase = "verify";
  vp.p.total = total;
  vp.start = now_seconds ();

  for (i = 0; i < vm->nr_manifest_entries && r == 0; i++) {
    const struct ferry_vm_manifest_entry *e = &vm->manifest_entries[i];
    CLEANUP_FREE char *path = NULL, *got = NULL;
    uint64_t off = 0, len = 0;
    int found = locate_entry (plan, ova, e, &path, &off, &len);

    if (found == -1) {
      r = -1;
      break;
    }
    if (found == 0) {
      r = add_check (plan, FERRY_V2V_ERROR, "the package is incomplete: "
                     "fetch it again", "manifest %s lists %s, which is "
                     "missing", vm->manifest, e->name);
      continue;
    }
    switch (ferry_vm_verify_digest (e, path, off, len, &got,
                                    opts->progress ? verify_progress : NULL,
                                    &vp)) {
    case 1:
      break;
    case 0:
      r = add_check (plan, FERRY_V2V_ERROR, "the package was damaged or "
                     "changed: fetch it again", "%s: %s digest %s does not "
                     "match the manifest's %s", e->name, e->algorithm, got,
                     e->digest);
      break;
    default:
      r = add_check (plan, FERRY_V2V_ERROR, "check the file can be read",
                     "%s: %s", e->name, ferry_get_error ());
    }
    vp.base += len;
  }
  if (r == 0 && opts->progress) {
    vp.p.done = vp.p.total;
    vp.p.finished = true;
    vp.p.elapsed = now_seconds () - vp.start;
    opts->progress (&vp.p, opts->progress_opaque);
  }

  /* Disks the manifest does not cover go unverified. */
  for (i = 0; i < vm->nr_disks && r == 0; i++) {
    const struct ferry_vm_disk *d = &vm->disks[i];
    size_t j;
    if (d->file == NULL)
      continue;
    for (j = 0; j < vm->nr_manifest_entries; j++)
      if (strcmp (vm->manifest_entries[j].name, d->file) == 0)
        break;
    if (j == vm->nr_manifest_entries)
      r = add_check (plan, FERRY_V2V_WARNING, "nothing to do; the copy is "
                     "checked only by its own format", "disk file %s is not "
                     "in the manifest: it is not verified", d->file);
  }
  ferry_ova_free (ova);
  return r;
}

/* The checks on the VM as a whole. */
static int
check_vm (struct ferry_v2v_plan *plan, const struct ferry_v2v_options *opts)
{
  struct ferry_vm *vm = plan->vm;
  size_t i, j;

  if (vm->has_snapshots &&
      add_check (plan, FERRY_V2V_WARNING, "consolidate (delete) the "
                 "snapshots on the source first to keep only the current "
                 "state there too", "the VM has snapshots: its current "
                 "state is migrated, read through each disk's chain; the "
                 "snapshots are not") == -1)
    return -1;
  if (vm->secure_boot &&
      add_check (plan, FERRY_V2V_WARNING, opts->target == FERRY_V2V_OVA ?
                 "check that the target enables secure boot" :
                 "install OVMF's secure boot build on the host; turn secure "
                 "boot off if the guest does not boot",
                 "the VM boots with UEFI secure boot: %s",
                 opts->target == FERRY_V2V_OVA ? "it is kept in the OVF" :
                 "the target boots OVMF with secure boot and Microsoft's "
                 "keys, not the source's own enrolled keys") == -1)
    return -1;
  /* VirtualBox reads firmware only from its own vbox:Machine section,
   * which ferry does not write (VirtualBox takes it as the whole
   * machine). */
  if (vm->firmware == FERRY_VM_FIRMWARE_UEFI &&
      opts->target == FERRY_V2V_OVA && opts->flavor &&
      strcasecmp (opts->flavor, "virtualbox") == 0 &&
      add_check (plan, FERRY_V2V_WARNING, "enable EFI in the imported VM's "
                 "settings (System, Enable EFI)", "the VM boots with UEFI, "
                 "which VirtualBox's OVF cannot say outside its own "
                 "vbox:Machine section: the import boots BIOS") == -1)
    return -1;
  if (vm->firmware == FERRY_VM_FIRMWARE_UEFI &&
      (opts->target == FERRY_V2V_QEMU || opts->target == FERRY_V2V_LIBVIRT) &&
      add_check (plan, FERRY_V2V_WARNING, "install Debian's ovmf package "
                 "(or your distribution's OVMF) on the host",
                 "the VM boots with UEFI: the target needs OVMF") == -1)
    return -1;
  if (vm->memory == 0 &&
      add_check (plan, FERRY_V2V_WARNING, "set the memory on the target",
                 "the description gives no memory size: the target gets "
                 "1 GiB") == -1)
    return -1;
  for (i = 0; i < vm->nr_nics; i++)
    for (j = i + 1; j < vm->nr_nics; j++)
      if (vm->nics[i].mac && vm->nics[j].mac &&
          strcmp (vm->nics[i].mac, vm->nics[j].mac) == 0 &&
          add_check (plan, FERRY_V2V_ERROR, "give one of them another "
                     "address on the source", "NICs %s and %s have the same "
                     "MAC address %s", vm->nics[i].id ? vm->nics[i].id : "?",
                     vm->nics[j].id ? vm->nics[j].id : "?",
                     vm->nics[i].mac) == -1)
        return -1;
  for (i = 0; i < vm->nr_cdroms; i++)
    if (vm->cdroms[i].image &&
        add_check (plan, FERRY_V2V_WARNING, "copy the ISO to the target host "
                   "and insert it there if the guest needs it",
                   "CD-ROM %zu held %s: the drive is kept, empty", i + 1,
                   vm->cdroms[i].image) == -1)
      return -1;
  return 0;
}

/* The space check: what the output may take against what is free. */
static int
check_space (struct ferry_v2v_plan *plan, const struct ferry_v2v_options *opts)
{
  CLEANUP_FREE char *parent = strdup (plan->out_dir);
  struct statvfs sv;
  size_t i;

  if (parent == NULL)
    return ferry_error (ENOMEM, "out of memory");
  for (i = 0; i < plan->nr_disks; i++)
    if (plan->disks[i].migrated)
      plan->data_bytes += plan->disks[i].data_bytes;
  /* Metadata on top of the data; an OVA is written twice over (the
   * VMDKs, then the archive holding them) before the VMDKs go. */
  plan->space_needed = plan->data_bytes + plan->data_bytes / 64 +
    (4u << 20) * plan->nr_disks;
  if (opts->target == FERRY_V2V_OVA)
    plan->space_needed *= 2;
  plan->space_needed -= MIN (plan->space_needed, opts->space_written);
  if (statvfs (dirname (parent), &sv) == -1)
    return add_check_for (plan, "out_dir", FERRY_V2V_ERROR, "choose another "
                          "output folder", "%s: %s", parent,
                          strerror (errno));
  plan->space_free = (uint64_t) sv.f_bavail * sv.f_frsize;
  if (plan->space_needed > plan->space_free)
    return add_check_for (plan, "out_dir", FERRY_V2V_ERROR, "free some "
                          "space there, or choose another output folder",
                          "the output needs about %" PRIu64 " MiB (the "
                          "disks' data), and %s has %" PRIu64 " MiB free",
                          plan->space_needed >> 20, parent,
                          plan->space_free >> 20);
  return 0;
}

struct ferry_v2v_plan *
ferry_v2v_plan (struct ferry_vm *vm, const struct ferry_v2v_options *opts)
{
  static const char *const suffixes[] = {
    [FERRY_V2V_LIBVIRT] = "xml", [FERRY_V2V_QEMU] = "sh",
    [FERRY_V2V_OVA] = "ova", [FERRY_V2V_LOCAL] = "json",
  };
  struct ferry_v2v_plan *plan;
  CLEANUP_FREE char *base = NULL;
  const char *format;
  struct stat st;
  size_t i;

  if (opts->out_dir == NULL || *opts->out_dir == '\0') {
    ferry_error (EINVAL, "no output folder given");
    ferry_error_input ("out_dir");
    return NULL;
  }
  if ((unsigned) opts->target > FERRY_V2V_LOCAL) {
    ferry_error (EINVAL, "unknown target");
    return NULL;
  }
  format = opts->target == FERRY_V2V_OVA ? "vmdk" :
    opts->disk_format ? opts->disk_format : "qcow2";
  if (opts->target == FERRY_V2V_OVA && opts->disk_format &&
      strcmp (opts->disk_format, "vmdk") != 0) {
    ferry_error (EINVAL, "disk format %s: an OVA holds streamOptimized VMDK "
                 "disks", opts->disk_format);
    ferry_error_input ("disk_format");
    return NULL;
  }
  if (opts->flavor && strcasecmp (opts->flavor, "vmware") &&
      strcasecmp (opts->flavor, "virtualbox")) {
    ferry_error (EINVAL, "OVF flavor %s: expected vmware or virtualbox",
                 opts->flavor);
    ferry_error_input ("flavor");
    return NULL;
  }
  plan = calloc (1, sizeof *plan);
  if (plan == NULL) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  plan->vm = vm;
  if (absolute_out_dir (opts->out_dir, &plan->out_dir) == -1)
    goto err;
  if (opts->name) {
    if (*opts->name == '\0' || strchr (opts->name, '/')) {
      ferry_error (EINVAL, "VM name '%s': a name without slashes",
                   opts->name);
      ferry_error_input ("name");
      goto err;
    }
    if (ferry_vm_set_string (&vm->name, opts->name) == -1)
      goto err;
  }
  if (map_networks (vm, opts->network_map,
                    opts->target != FERRY_V2V_LIBVIRT) == -1)
    goto err;

  if ((vm->name == NULL || *vm->name == '\0') &&
      add_check_for (plan, "name", FERRY_V2V_ERROR, "give it a name",
                     "the VM has no name") == -1)
    goto err;
  base = safe_name (vm->name && *vm->name ? vm->name : "vm");
  if (base == NULL ||
      asprintf (&plan->description, "%s.%s", base,
                suffixes[opts->target]) == -1) {
    ferry_error (ENOMEM, "out of memory");
    goto err;
  }
  if (lstat (plan->out_dir, &st) == 0 &&
      add_check_for (plan, "out_dir", FERRY_V2V_ERROR, "choose a new output "
                     "folder, or remove this one", "%s exists already",
                     plan->out_dir) == -1)
    goto err;
  if (!known_format (format) &&
      add_check_for (plan, "disk_format", FERRY_V2V_ERROR, "choose another "
                     "disk format", "ferry cannot write %s images",
                     format) == -1)
    goto err;

  plan->nr_disks = vm->nr_disks;
  plan->disks = calloc (vm->nr_disks ? vm->nr_disks : 1,
                        sizeof *plan->disks);
  if (plan->disks == NULL) {
    ferry_error (ENOMEM, "out of memory");
    goto err;
  }
  for (i = 0; i < vm->nr_disks; i++)
    if (plan_disk (plan, opts, i, base, format) == -1)
      goto err;
  if (vm->nr_disks == 0 &&
      add_check (plan, FERRY_V2V_WARNING, "nothing to do, unless disks were "
                 "expected", "the VM has no disks") == -1)
    goto err;
  if (check_vm (plan, opts) == -1 || check_manifest (plan, opts) == -1 ||
      check_space (plan, opts) == -1)
    goto err;
  return plan;

 err:
  ferry_v2v_plan_free (plan);
  return NULL;
}
