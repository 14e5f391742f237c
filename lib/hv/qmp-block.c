/* The VM's disks as QMP's query-block tells them (include/ferry/qmp.h):
 * each block device with a medium, its top node and that node's dirty
 * bitmaps.  A reply is checked member by member: what QMP promises and is
 * missing is named, never assumed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include <ferry/qmp.h>

#include "../common/error.h"

/* The string member KEY of OBJ, or NULL when absent or not a string. */
static const char *
get_string (struct json_object *obj, const char *key)
{
  struct json_object *v;

  if (!json_object_object_get_ex (obj, key, &v) ||
      !json_object_is_type (v, json_type_string))
    return NULL;
  return json_object_get_string (v);
}

/* The boolean member KEY of OBJ, false when absent. */
static bool
get_bool (struct json_object *obj, const char *key)
{
  struct json_object *v;

  return json_object_object_get_ex (obj, key, &v) &&
    json_object_is_type (v, json_type_boolean) && json_object_get_boolean (v);
}

/* Strdup S into *OUT (NULL stays NULL).  0, or -1 on ENOMEM. */
static int
copy_string (const char *s, char **out)
{
  *out = NULL;
  if (s == NULL)
    return 0;
  *out = strdup (s);
  return *out ? 0 : ferry_error (ENOMEM, "out of memory");
}

/* Fill D's bitmaps from the array BITMAPS (may be NULL).  0, or -1 with
 * the error set (unprefixed). */
static int
read_bitmaps (struct json_object *bitmaps, struct ferry_qmp_disk *d)
{
  size_t i, n = 0, k = 0;

  if (bitmaps && json_object_is_type (bitmaps, json_type_array))
    n = json_object_array_length (bitmaps);
  d->bitmaps = calloc (n + 1, sizeof *d->bitmaps);
  d->bitmap_recording = calloc (n + 1, sizeof *d->bitmap_recording);
  if (d->bitmaps == NULL || d->bitmap_recording == NULL)
    return ferry_error (ENOMEM, "out of memory");
  for (i = 0; i < n; i++) {
    struct json_object *b = json_object_array_get_idx (bitmaps, i);
    const char *name = b ? get_string (b, "name") : NULL;

    /* An anonymous bitmap (a block job's own) has no name: not ours. */
    if (name == NULL)
      continue;
    if (copy_string (name, &d->bitmaps[k]) == -1)
      return -1;
    d->bitmap_recording[k++] = get_bool (b, "recording");
  }
  return 0;
}

/* Fill D from one BlockInfo INFO (index I of the reply) that has a medium
 * (INSERTED).  0, or -1 with the error set (unprefixed). */
static int
read_disk (struct json_object *info, struct json_object *inserted, size_t i,
           struct ferry_qmp_disk *d)
{
  struct json_object *image, *v, *bitmaps = NULL;
  const char *device = get_string (info, "device");
  const char *node = get_string (inserted, "node-name");
  const char *drv = get_string (inserted, "drv");
  int64_t size;

  if (device == NULL)
    return ferry_error (EPROTO, "block device %zu has no \"device\" name", i);
  if (node == NULL || *node == '\0')
    return ferry_error (EPROTO, "block device %zu ('%s') has no "
                        "\"node-name\"", i, device);
  if (drv == NULL)
    return ferry_error (EPROTO, "block device %zu ('%s') has no \"drv\"",
                        i, device);
  if (!json_object_object_get_ex (inserted, "image", &image) ||
      !json_object_object_get_ex (image, "virtual-size", &v) ||
      !json_object_is_type (v, json_type_int) ||
      (size = json_object_get_int64 (v)) < 0)
    return ferry_error (EPROTO, "block device %zu ('%s') has no "
                        "\"virtual-size\"", i, device);
  d->virtual_size = size;
  d->read_only = get_bool (inserted, "ro");
  d->removable = get_bool (info, "removable");
  if (copy_string (device, &d->device) == -1 ||
      copy_string (get_string (info, "qdev"), &d->qdev) == -1 ||
      copy_string (node, &d->node) == -1 ||
      copy_string (get_string (inserted, "file"), &d->file) == -1 ||
      copy_string (drv, &d->format) == -1)
    return -1;
  /* Since QEMU 4.2 the bitmaps are the node's (in "inserted"); older ones
   * list them on the device. */
  if (!json_object_object_get_ex (inserted, "dirty-bitmaps", &bitmaps))
    json_object_object_get_ex (info, "dirty-bitmaps", &bitmaps);
  return read_bitmaps (bitmaps, d);
}

int
ferry_qmp_query_disks (struct ferry_qmp *q, struct ferry_qmp_disk **disks,
                       size_t *n)
{
  struct json_object *ret;
  struct ferry_qmp_disk *out;
  size_t i, len, nr = 0;

  *disks = NULL;
  *n = 0;
  if (ferry_qmp_execute (q, "query-block", NULL, &ret) == -1)
    return -1;
  if (ret == NULL || !json_object_is_type (ret, json_type_array)) {
    json_object_put (ret);
    return ferry_error (EPROTO, "qmp:%s: query-block: the reply is not a "
                        "list", ferry_qmp_path (q));
  }
  len = json_object_array_length (ret);
  out = calloc (len ? len : 1, sizeof *out);
  if (out == NULL) {
    json_object_put (ret);
    return ferry_error (ENOMEM, "qmp:%s: out of memory", ferry_qmp_path (q));
  }
  for (i = 0; i < len; i++) {
    struct json_object *info = json_object_array_get_idx (ret, i);
    struct json_object *inserted;

    if (info == NULL || !json_object_is_type (info, json_type_object)) {
      ferry_error (EPROTO, "block device %zu is not an object", i);
      goto err;
    }
    /* An empty CD-ROM drive: no medium, nothing to migrate. */
    if (!json_object_object_get_ex (info, "inserted", &inserted) ||
        !json_object_is_type (inserted, json_type_object))
      continue;
    if (read_disk (info, inserted, i, &out[nr++]) == -1)
      goto err;
  }
  json_object_put (ret);
  *disks = out;
  *n = nr;
  return 0;

 err:
  ferry_error_prefix ("qmp:%s: query-block", ferry_qmp_path (q));
  ferry_qmp_disks_free (out, nr);
  json_object_put (ret);
  return -1;
}

void
ferry_qmp_disks_free (struct ferry_qmp_disk *disks, size_t n)
{
  size_t i, j;

  if (disks == NULL)
    return;
  for (i = 0; i < n; i++) {
    struct ferry_qmp_disk *d = &disks[i];
    free (d->device);
    free (d->qdev);
    free (d->node);
    free (d->file);
    free (d->format);
    if (d->bitmaps)
      for (j = 0; d->bitmaps[j]; j++)
        free (d->bitmaps[j]);
    free (d->bitmaps);
    free (d->bitmap_recording);
  }
  free (disks);
}
