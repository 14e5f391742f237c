/* vmdk: VMware's virtual disk format, read side.
 *
 * A VMDK is a descriptor and its extents.  The descriptor is a text file
 * (monolithicFlat, twoGbMaxExtent*, vmfs*, custom, snapshots) or sits
 * inside a hosted sparse file (monolithicSparse, streamOptimized).  Each
 * extent line maps a run of the disk to a FLAT or VMFS file (raw bytes at
 * an offset), a SPARSE or VMFSSPARSE file (hosted "KDMV" or ESX "COWD"
 * grains), a SESPARSE file, or ZERO (no file).  Snapshots name their
 * parent with parentFileNameHint and say which state of it they were
 * taken from with parentCID.
 *
 * NOTES ON THE DESIGN
 *
 * 1. Extents are kept in disk order; a request is cut at extent
 *    boundaries and each piece goes to its extent.  Flat extents are raw
 *    images of their own (the raw driver reads them, finds their holes and
 *    zeroes them); bytes past the end of a flat file read as zeroes.
 *
 * 2. Extent files must be regular files or block devices: a descriptor
 *    that names a FIFO, a socket or a terminal is refused before anything
 *    is opened, so it cannot make ferry wait forever.
 *
 * 3. A grain that a sparse extent does not hold reads from the parent at
 *    the same disk offset (zeroes past the parent's end, or without a
 *    parent); a zeroed grain reads as zeroes whatever the parent holds.
 *
 * 4. A parentCID that differs from the parent's CID means the parent
 *    changed after the snapshot was taken; VMware refuses such a chain.
 *    ferry warns, naming both files, and reads on (FERRY_OPEN_STRICT
 *    refuses), because the data may still be what the user needs.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostfile.h"
#include "vmdk-internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* The most runs one extents call reports; the caller asks again. */
#define VMDK_EXTENTS_MAX_RUNS 4096

static int
vmdk_probe (const uint8_t *head, size_t head_len, const uint8_t *tail,
            size_t tail_len, uint64_t file_size)
{
  if (head_len >= 4 && (get_le32 (head) == VMDK4_MAGIC ||
                        get_le32 (head) == VMDK_COWD_MAGIC))
    return 100;
  if (head_len >= 8 && get_le64 (head) == VMDK_SE_CONST_MAGIC)
    return 100;
  /* A descriptor is a small text file. */
  if (file_size <= VMDK_MAX_DESCRIPTOR &&
      vmdk_looks_like_descriptor (head, head_len))
    return 100;
  return 0;
}

/* Open the extent file PATH (note 2) of V for reading, or read-write,
 * locked as V is; returns the descriptor and its size in *SIZE, or -1. */
static int
open_extent_file (struct vmdk_image *v, const char *path, bool writable,
                  uint64_t *size)
{
  struct stat st;
  int fd = hostfile_open_locked (path, (writable ? FERRY_OPEN_WRITE : 0) |
                                 v->shared, false, &st);

  if (fd == -1)
    return -1;
  if (hostfile_size (fd, path, size) == -1) {
    close (fd);
    return -1;
  }
  return fd;
}

/* Open the sparse extent file E->path, whichever of KDMV, COWD or
 * seSparse it is. */
static int
open_sparse_extent (struct vmdk_image *v, struct vmdk_extent *e,
                    bool writable)
{
  uint64_t size;
  uint8_t magic[8] = { 0 };
  int fd = open_extent_file (v, e->path, writable, &size);
  struct vmdk_sparse *s;
  enum vmdk_sparse_kind kind;
  int r;

  if (fd == -1)
    return -1;
  if (full_pread (fd, magic, sizeof magic, 0) == -1) {
    ferry_error_errno (errno, "%s: reading the header", e->path);
    close (fd);
    return -1;
  }
  if (e->type == VMDK_EXTENT_SESPARSE)
    kind = VMDK_SPARSE_SE;
  else if (get_le32 (magic) == VMDK_COWD_MAGIC)
    kind = VMDK_SPARSE_COWD;
  else if (get_le32 (magic) == VMDK4_MAGIC)
    kind = VMDK_SPARSE_HOSTED;
  else {
    ferry_error (EINVAL, "%s: a %s extent, but neither a hosted sparse "
                 "header (KDMV) nor a COWD header starts the file", e->path,
                 vmdk_extent_type_name (e->type));
    close (fd);
    return -1;
  }
  s = vmdk_sparse_alloc (kind, e->path, fd, false);
  if (s == NULL) {
    close (fd);
    return -1;
  }
  e->sparse = s;
  switch (kind) {
  case VMDK_SPARSE_HOSTED: r = vmdk_sparse_open_hosted (s, size, NULL, NULL);
    break;
  case VMDK_SPARSE_COWD: r = vmdk_cowd_open (s, size); break;
  default: r = vmdk_se_open (s, size); break;
  }
  if (r == 0 && s->capacity != e->length)
    ferry_warn ("%s: the descriptor gives extent %s %" PRIu64 " bytes, its "
                "header %" PRIu64, v->base.path, e->file, e->length,
                s->capacity);
  return r;
}

int
vmdk_layout_extents (struct vmdk_image *v, bool self)
{
  const struct vmdk_descriptor *d = &v->desc;
  uint64_t start = 0;
  size_t i;

  v->extents = calloc (d->extents.len + 1, sizeof *v->extents);
  if (v->extents == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  for (i = 0; i < d->extents.len; i++) {
    const struct vmdk_extent_line *l = &d->extents.ptr[i];
    struct vmdk_extent *e = &v->extents[v->nr_extents++];

    e->type = l->type;
    e->access = l->access;
    e->start = start;
    e->length = l->sectors * VMDK_SECTOR;
    e->flat_offset = l->offset * VMDK_SECTOR;
    start += e->length;
    if (l->file == NULL)
      continue;
    e->file = strdup (l->file);
    e->path = self ? strdup (v->base.path) :
      image_resolve_relative (v->base.path, l->file);
    if (e->file == NULL || e->path == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  }
  v->base.size = start;
  return 0;
}

/* Open the extent files V's descriptor names (relative to its folder). */
static int
open_extents (struct vmdk_image *v, bool writable)
{
  size_t i;

  if (vmdk_layout_extents (v, false) == -1)
    return -1;
  for (i = 0; i < v->nr_extents; i++) {
    struct vmdk_extent *e = &v->extents[i];
    bool rw = writable && e->access == VMDK_RW;

    if (e->file == NULL || e->access == VMDK_NOACCESS)
      continue;               /* ZERO; or reads of it fail */
    switch (e->type) {
    case VMDK_EXTENT_SPARSE: case VMDK_EXTENT_VMFSSPARSE:
    case VMDK_EXTENT_SESPARSE:
      if (open_sparse_extent (v, e, rw) == -1)
        goto err;
      break;
    default: {
      /* FLAT, VMFS, and the raw device maps, read as the raw files they
       * are where the datastore is mounted. */
      e->raw = ferry_image_open (e->path, "raw",
                                 (rw ? FERRY_OPEN_WRITE : 0) | v->shared);
      if (e->raw == NULL)
        goto err;
      break;
    }
    }
  }
  return 0;

 err:
  ferry_error_prefix ("%s: extent %zu", v->base.path, i);
  return -1;
}

/* Open the parent of V (note 4). */
static int
open_parent (struct vmdk_image *v, const struct open_args *args)
{
  const char *hint = v->desc.parent_hint;
  CLEANUP_FREE char *copy = NULL;
  struct vmdk_image *p;
  struct stat st;

  if (hint == NULL || (args->flags & FERRY_OPEN_NO_BACKING))
    return 0;
  /* ESX records absolute datastore paths; off the host, the parent sits
   * beside the snapshot. */
  if (hint[0] == '/' && stat (hint, &st) == -1) {
    CLEANUP_FREE char *beside = NULL;
    copy = strdup (hint);
    if (copy == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
    hint = basename (copy);
    beside = image_resolve_relative (v->base.path, hint);
    if (beside == NULL)
      return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
    if (stat (beside, &st) == -1 && (errno == ENOENT || errno == ENOTDIR))
      return image_backing_missing (&v->base, args, beside, "the parent '%s' "
                                    "is missing: there is no file at that "
                                    "path, nor beside the snapshot at '%s'",
                                    v->desc.parent_hint, beside);
  }
  if (image_open_backing (&v->base, hint, "vmdk", args) == -1)
    return -1;
  p = (struct vmdk_image *) v->base.backing;
  if (p == NULL)                /* missing (FERRY_OPEN_MISSING_BACKING) */
    return 0;
  if (p->desc.has_cid && v->desc.parent_cid != p->desc.cid) {
    if (args->flags & FERRY_OPEN_STRICT)
      return ferry_error (EINVAL, "%s: parentCID %08" PRIx32 " is not the CID "
                          "%08" PRIx32 " of its parent %s: the parent "
                          "changed after this snapshot was taken",
                          v->base.path, v->desc.parent_cid, p->desc.cid,
                          p->base.path);
    ferry_warn ("%s: parentCID %08" PRIx32 " is not the CID %08" PRIx32
                " of its parent %s: the parent changed after this snapshot "
                "was taken; reading on", v->base.path, v->desc.parent_cid,
                p->desc.cid, p->base.path);
  }
  return 0;
}

/* Open a file that starts with a sparse header: the monolithic kinds,
 * whose descriptor (if any) is inside, and ESX sparse files opened alone. */
static int
open_monolithic (struct vmdk_image *v, uint64_t file_size, uint32_t magic)
{
  CLEANUP_FREE char *text = NULL;
  size_t len = 0;
  struct vmdk_sparse *s;
  struct vmdk_extent *e;
  enum vmdk_sparse_kind kind = magic == VMDK4_MAGIC ? VMDK_SPARSE_HOSTED :
    magic == VMDK_COWD_MAGIC ? VMDK_SPARSE_COWD : VMDK_SPARSE_SE;
  int r;

  s = vmdk_sparse_alloc (kind, v->base.path, v->fd, true);
  v->extents = calloc (1, sizeof *v->extents);
  if (s == NULL || v->extents == NULL) {
    vmdk_sparse_free (s);
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  }
  s->start = v->start;
  e = &v->extents[0];
  v->nr_extents = 1;
  e->sparse = s;
  e->access = VMDK_RW;
  e->path = strdup (v->base.path);
  if (e->path == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  switch (kind) {
  case VMDK_SPARSE_HOSTED:
    e->type = VMDK_EXTENT_SPARSE;
    r = vmdk_sparse_open_hosted (s, file_size, &text, &len);
    break;
  case VMDK_SPARSE_COWD:
    e->type = VMDK_EXTENT_VMFSSPARSE;
    r = vmdk_cowd_open (s, file_size);
    break;
  default:
    e->type = VMDK_EXTENT_SESPARSE;
    r = vmdk_se_open (s, file_size);
    break;
  }
  if (r == -1)
    return -1;
  e->length = s->capacity;
  v->base.size = s->capacity;
  v->embedded = text != NULL;
  if (text) {
    /* The embedded descriptor's extent line names the file as it was
     * called when made (or is missing); the data is this file whatever it
     * is called now. */
    if (vmdk_descriptor_parse (v->base.path, text, len, &v->desc) == -1)
      return -1;
  }
  v->create_type = strdup (v->desc.create_type ? v->desc.create_type :
                           kind == VMDK_SPARSE_COWD ? "vmfsSparse" :
                           kind == VMDK_SPARSE_SE ? "seSparse" :
                           s->compressed ? "streamOptimized" :
                           "monolithicSparse");
  if (v->create_type == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  return 0;
}

/* Read the descriptor file V->fd of FILE_SIZE bytes and open what it
 * names. */
static int
open_descriptor_file (struct vmdk_image *v, uint64_t file_size,
                      bool writable)
{
  CLEANUP_FREE char *text = NULL;

  if (file_size > VMDK_MAX_DESCRIPTOR)
    return ferry_error (EINVAL, "%s: no sparse extent header, and at %" PRIu64
                        " bytes too large to be a VMDK descriptor",
                        v->base.path, file_size);
  text = malloc (file_size + 1);
  if (text == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  if (full_pread (v->fd, text, file_size, 0) == -1)
    return ferry_error_errno (errno, "%s: reading the descriptor",
                              v->base.path);
  text[file_size] = '\0';
  if (!vmdk_looks_like_descriptor ((const uint8_t *) text, file_size))
    return ferry_error (EINVAL, "%s: neither a sparse extent header nor a "
                        "descriptor (which starts with \"# Disk "
                        "DescriptorFile\" or version=1)", v->base.path);
  if (vmdk_descriptor_parse (v->base.path, text, file_size, &v->desc) == -1)
    return -1;
  if (v->desc.extents.len == 0)
    return ferry_error (EINVAL, "%s: the descriptor lists no extent",
                        v->base.path);
  v->create_type = strdup (v->desc.create_type ? v->desc.create_type :
                           "custom");
  if (v->create_type == NULL)
    return ferry_error (ENOMEM, "%s: out of memory", v->base.path);
  return open_extents (v, writable);
}

static struct ferry_image *
vmdk_open (const char *path, int fd, const struct open_args *args)
{
  bool writable = args->flags & FERRY_OPEN_WRITE;
  struct vmdk_image *v = vmdk_image_new (path, fd, !writable);
  uint8_t head[8] = { 0 };
  uint64_t file_size;
  int r;

  if (v == NULL)
    return NULL;
  v->shared = args->flags & FERRY_OPEN_SHARED;
  if (hostfile_size (fd, path, &file_size) == -1)
    goto err;
  if (args->windowed) {
    /* A disk inside an OVA: the window is the whole file. */
    v->windowed = true;
    v->start = args->window_start;
    v->window_length = file_size = args->window_length;
  }
  if (full_pread (fd, head, sizeof head, v->start) == -1) {
    ferry_error_errno (errno, "%s: reading the header", path);
    goto err;
  }
  if (get_le32 (head) == VMDK4_MAGIC || get_le32 (head) == VMDK_COWD_MAGIC ||
      get_le64 (head) == VMDK_SE_CONST_MAGIC)
    r = open_monolithic (v, file_size, get_le32 (head));
  else if (v->windowed)
    r = ferry_error (ENOTSUP, "%s: the VMDK at offset %" PRIu64 " is a "
                     "descriptor naming its extents as files of their own, "
                     "which an archive does not hold", path, v->start);
  else
    r = open_descriptor_file (v, file_size, writable);
  if (r == -1 || open_parent (v, args) == -1)
    goto err;
  if (writable && vmdk_open_for_write (v) == -1)
    goto err;
  return &v->base;

 err:
  vmdk_image_discard (v);
  return NULL;
}

struct vmdk_image *
vmdk_image_new (const char *path, int fd, bool readonly)
{
  struct vmdk_image *v = calloc (1, sizeof *v);

  if (v == NULL) {
    ferry_error (ENOMEM, "%s: out of memory", path);
    close (fd);
    return NULL;
  }
  v->fd = fd;
  pthread_mutex_init (&v->lock, NULL);
  pthread_mutex_init (&v->deflaters.lock, NULL);
  if (image_init_base (&v->base, &vmdk_driver, path, fd, readonly) == -1) {
    vmdk_image_discard (v);
    return NULL;
  }
  return v;
}

void
vmdk_image_discard (struct vmdk_image *v)
{
  image_base_discard (&v->base);
  vmdk_image_free (v);
}

void
vmdk_image_free (struct vmdk_image *v)
{
  size_t i;

  for (i = 0; i < v->nr_extents; i++) {
    struct vmdk_extent *e = &v->extents[i];
    vmdk_sparse_free (e->sparse);
    ferry_image_close (e->raw);
    free (e->file);
    free (e->path);
  }
  free (v->extents);
  vmdk_write_free (v);
  vmdk_descriptor_free (&v->desc);
  free (v->create_type);
  pthread_mutex_destroy (&v->lock);
  pthread_mutex_destroy (&v->deflaters.lock);
  if (v->fd >= 0)
    close (v->fd);
  free (v);
}

/* The extent that holds disk offset OFFSET (< size). */
struct vmdk_extent *
vmdk_find_extent (struct vmdk_image *v, uint64_t offset)
{
  size_t lo = 0, hi = v->nr_extents;

  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (v->extents[mid].start <= offset)
      lo = mid;
    else
      hi = mid;
  }
  return &v->extents[lo];
}

/* Read COUNT bytes at OFF (relative to E) of the sparse extent E. */
static int
read_sparse (struct vmdk_image *v, struct vmdk_extent *e, uint8_t *buf,
             uint64_t count, uint64_t off)
{
  struct vmdk_sparse *s = e->sparse;

  while (count > 0) {
    struct vmdk_run run;
    uint64_t n;

    if (off >= s->capacity)     /* the descriptor says more than the header */
      return image_backing_pread (&v->base, buf, count, e->start + off);
    if (vmdk_sparse_map (s, off, count, &run) == -1)
      return -1;
    n = MIN (run.length, count);
    switch (run.kind) {
    case VMDK_RUN_UNALLOC:
      if (image_backing_pread (&v->base, buf, n, e->start + off) == -1)
        return -1;
      break;
    case VMDK_RUN_ZERO:
      memset (buf, 0, n);
      break;
    case VMDK_RUN_DATA:
      if (vmdk_sparse_pread (s, buf, n, run.host) == -1)
        return ferry_error_errno (errno, "%s: reading %" PRIu64 " bytes at "
                                  "offset 0x%" PRIx64, s->path, n, run.host);
      break;
    case VMDK_RUN_COMPRESSED: {
      uint64_t grain = ROUND_DOWN (off, (uint64_t) s->grain_size);
      if (vmdk_sparse_read_grain (s, run.host, grain, buf, n,
                                  off - grain) == -1)
        return -1;
      break;
    }
    }
    buf += n;
    count -= n;
    off += n;
  }
  return 0;
}

/* Read COUNT bytes at OFF (relative to E) of the flat extent E (note 1). */
static int
read_flat (struct vmdk_extent *e, uint8_t *buf, uint64_t count, uint64_t off)
{
  uint64_t at = e->flat_offset + off, size = e->raw->size, n = 0;

  if (at < size) {
    n = MIN (count, size - at);
    if (ferry_image_pread (e->raw, buf, n, at) == -1)
      return -1;
  }
  memset (buf + n, 0, count - n);
  return 0;
}

int
vmdk_pread (struct ferry_image *img, void *buf, size_t count,
            uint64_t offset)
{
  struct vmdk_image *v = (struct vmdk_image *) img;
  uint8_t *p = buf;

  while (count > 0) {
    struct vmdk_extent *e = vmdk_find_extent (v, offset);
    uint64_t off = offset - e->start, n = MIN (count, e->length - off);
    int r;

    if (e->access == VMDK_NOACCESS)
      return ferry_error (EACCES, "%s: the extent at offset %" PRIu64
                          " (%s) is NOACCESS", img->path, e->start,
                          e->file ? e->file : "ZERO");
    if (e->type == VMDK_EXTENT_ZERO) {
      memset (p, 0, n);
      r = 0;
    }
    else if (e->sparse)
      r = read_sparse (v, e, p, n, off);
    else
      r = read_flat (e, p, n, off);
    if (r == -1)
      return -1;
    p += n;
    count -= n;
    offset += n;
  }
  return 0;
}

static int
vmdk_extents (struct ferry_image *img, uint64_t offset, uint64_t length,
              struct ferry_extent_list *list)
{
  struct vmdk_image *v = (struct vmdk_image *) img;
  uint64_t end = offset + length;
  unsigned runs = 0;

  while (offset < end && runs++ < VMDK_EXTENTS_MAX_RUNS) {
    struct vmdk_extent *e = vmdk_find_extent (v, offset);
    uint64_t off = offset - e->start, n = MIN (end - offset, e->length - off);
    uint64_t reached = 0;

    if (e->type == VMDK_EXTENT_ZERO || e->access == VMDK_NOACCESS) {
      if (ferry_extent_list_append (list, offset, n, e->access ==
                                    VMDK_NOACCESS ? 0 :
                                    FERRY_EXTENT_HOLE | FERRY_EXTENT_ZERO))
        return -1;
      offset += n;
      continue;
    }
    if (e->raw) {
      /* Past the end of a short flat file: zeroes (note 1). */
      if (image_sub_extents (img, e->raw, e->flat_offset + off, n, offset,
                             list, &reached) == -1)
        return -1;
      if (reached < offset + n)
        return 0;
      offset += n;
      continue;
    }
    {
      struct vmdk_sparse *s = e->sparse;
      struct vmdk_run run;
      uint32_t flags = 0;

      if (off >= s->capacity)
        run = (struct vmdk_run) { .kind = VMDK_RUN_UNALLOC, .length = n };
      else if (vmdk_sparse_map (s, off, n, &run) == -1)
        return -1;
      run.length = MIN (run.length, n);
      if (run.kind == VMDK_RUN_UNALLOC) {
        if (image_sub_extents (img, v->base.backing, offset, run.length,
                               offset, list, &reached) == -1)
          return -1;
        if (reached < offset + run.length)
          return 0;
        offset += run.length;
        continue;
      }
      /* A zeroed grain is this layer's own (it hides the parent's data),
       * as QEMU reports it: zero, not a hole. */
      if (run.kind == VMDK_RUN_ZERO)
        flags = FERRY_EXTENT_ZERO;
      if (ferry_extent_list_append (list, offset, run.length, flags) == -1)
        return -1;
      offset += run.length;
    }
  }
  return 0;
}

static int
vmdk_close (struct ferry_image *img)
{
  struct vmdk_image *v = (struct vmdk_image *) img;
  int r = 0;

  if (!img->readonly && vmdk_finish (v) == -1)
    r = -1;
  vmdk_image_free (v);
  return r;
}

/* Add the fact KEY with the ddb value DDB_KEY, if the descriptor has it. */
static int
ddb_fact (struct vmdk_image *v, const char *key, const char *ddb_key)
{
  const char *s = vmdk_ddb_get (&v->desc, ddb_key);

  return s ? image_fact_string (&v->base, key, s) : 0;
}

static int
vmdk_describe (struct ferry_image *img, struct ferry_image_info *info)
{
  struct vmdk_image *v = (struct vmdk_image *) img;
  const char *c, *h, *s;
  size_t i;

  info->allocated = v->windowed ? v->window_length
    : file_allocated_bytes (v->fd);
  for (i = 0; i < v->nr_extents; i++) {
    struct vmdk_extent *e = &v->extents[i];
    if (e->sparse && !e->sparse->shared_fd)
      info->allocated += file_allocated_bytes (e->sparse->fd);
    else if (e->raw) {
      struct ferry_image_info ri;
      if (ferry_image_describe (e->raw, &ri) == 0)
        info->allocated += ri.allocated;
    }
    if (e->sparse && info->cluster_size == 0)
      info->cluster_size = e->sparse->grain_size;
  }
  info->backing_file = v->desc.parent_hint;
  if (v->desc.parent_hint)
    info->backing_format = "vmdk";

  if (image_fact_string (img, "create-type", v->create_type) == -1)
    return -1;
  if (v->desc.has_cid &&
      (image_fact_number (img, "cid", v->desc.cid) == -1 ||
       image_fact_number (img, "parent-cid", v->desc.parent_cid) == -1))
    return -1;
  if (ddb_fact (v, "adapter-type", "ddb.adapterType") == -1 ||
      ddb_fact (v, "hwversion", "ddb.virtualHWVersion") == -1 ||
      ddb_fact (v, "toolsversion", "ddb.toolsVersion") == -1 ||
      ddb_fact (v, "uuid", "ddb.uuid") == -1 ||
      ddb_fact (v, "long-content-id", "ddb.longContentID") == -1 ||
      ddb_fact (v, "thin-provisioned", "ddb.thinProvisioned") == -1)
    return -1;
  c = vmdk_ddb_get (&v->desc, "ddb.geometry.cylinders");
  h = vmdk_ddb_get (&v->desc, "ddb.geometry.heads");
  s = vmdk_ddb_get (&v->desc, "ddb.geometry.sectors");
  if (c && h && s) {
    char geo[128];
    snprintf (geo, sizeof geo, "%.40s/%.40s/%.40s", c, h, s);
    if (image_fact_string (img, "geometry", geo) == -1)
      return -1;
  }
  if (image_fact_number (img, "extents", v->nr_extents) == -1)
    return -1;
  for (i = 0; i < v->nr_extents; i++) {
    struct vmdk_extent *e = &v->extents[i];
    char key[64];

#define EXTENT_KEY(name) (snprintf (key, sizeof key, "extent[%zu].%s", i, \
                                    name), key)
    if (image_fact_string (img, EXTENT_KEY ("type"),
                           vmdk_extent_type_name (e->type)) == -1 ||
        (e->type != VMDK_EXTENT_ZERO &&
         image_fact_string (img, EXTENT_KEY ("filename"), e->path) == -1) ||
        image_fact_number (img, EXTENT_KEY ("virtual-size"), e->length) == -1)
      return -1;
    if (e->access != VMDK_RW &&
        image_fact_string (img, EXTENT_KEY ("access"),
                           vmdk_access_name (e->access)) == -1)
      return -1;
    if (e->raw && e->flat_offset &&
        image_fact_number (img, EXTENT_KEY ("offset"), e->flat_offset) == -1)
      return -1;
    if (e->sparse) {
      struct vmdk_sparse *sp = e->sparse;
      if (image_fact_number (img, EXTENT_KEY ("cluster-size"),
                             sp->grain_size) == -1 ||
          (sp->compressed &&
           image_fact_bool (img, EXTENT_KEY ("compressed"), true) == -1) ||
          (sp->kind == VMDK_SPARSE_HOSTED &&
           image_fact_number (img, EXTENT_KEY ("version"),
                              sp->h.version) == -1) ||
          (sp->kind != VMDK_SPARSE_HOSTED &&
           image_fact_string (img, EXTENT_KEY ("format"),
                              sp->kind == VMDK_SPARSE_COWD ? "COWD" :
                              "seSparse") == -1) ||
          (sp->h.unclean &&
           image_fact_bool (img, EXTENT_KEY ("unclean-shutdown"),
                            true) == -1))
        return -1;
    }
#undef EXTENT_KEY
  }
  return 0;
}

/* The extent files, for image_for_each_file. */
static int
vmdk_files (struct ferry_image *img, image_file_fn fn, void *opaque)
{
  struct vmdk_image *v = (struct vmdk_image *) img;
  size_t i;
  int r = 0;

  for (i = 0; i < v->nr_extents && r == 0; i++) {
    struct vmdk_extent *e = &v->extents[i];
    if (e->sparse && !e->sparse->shared_fd)
      r = image_file_of_fd (e->sparse->fd, e->path, fn, opaque);
    else if (e->raw)
      r = image_for_each_file (e->raw, fn, opaque);
  }
  return r;
}

const struct image_driver vmdk_driver = {
  .name = "vmdk",
  .backing_word = "parent",
  .probe = vmdk_probe,
  .windows = true,
  .open_stream = vmdk_open_stream,
  .open = vmdk_open,
  .create = vmdk_create,
  .pread = vmdk_pread,
  .pwrite = vmdk_pwrite,
  .zero = vmdk_zero,
  .extents = vmdk_extents,
  .compress_unit = vmdk_compress_unit,
  .compress_bound = vmdk_compress_bound,
  .compress = vmdk_compress,
  .write_compressed = vmdk_write_compressed,
  .flush = vmdk_flush,
  .close = vmdk_close,
  .describe = vmdk_describe,
  .check = vmdk_check,
  .files = vmdk_files,
  .rename = vmdk_rename,
  .remove = vmdk_remove,
};
