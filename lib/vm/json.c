/* The VM model as JSON: what `ferry v2v --dry-run --json` prints and what
 * `--to local` keeps beside the disks.  Member names are stable; an
 * absent value is left out rather than written as null. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "internal.h"

/* Add KEY=S to O when S is not NULL. */
static void
add_string (json_object *o, const char *key, const char *s)
{
  if (s)
    json_object_object_add (o, key, json_object_new_string (s));
}

/* Add KEY=V to O when V is not 0. */
static void
add_u64 (json_object *o, const char *key, uint64_t v)
{
  if (v)
    json_object_object_add (o, key, json_object_new_uint64 (v));
}

/* The place of a device: bus, controller, unit. */
static void
add_place (json_object *o, enum ferry_vm_bus bus, int controller, int unit)
{
  add_string (o, "bus", ferry_vm_bus_name (bus));
  if (controller >= 0)
    json_object_object_add (o, "controller", json_object_new_int (controller));
  if (unit >= 0)
    json_object_object_add (o, "unit", json_object_new_int (unit));
}

/* The disk D as an object; OUT (may be NULL) gives the target I. */
static json_object *
disk_object (const struct ferry_vm_disk *d, const struct ferry_vm_output *out,
             size_t i)
{
  static const struct { unsigned flag; const char *name; } flags[] = {
    { FERRY_VM_DISK_INDEPENDENT, "independent" },
    { FERRY_VM_DISK_RDM, "raw-device-mapping" },
    { FERRY_VM_DISK_ENCRYPTED, "encrypted" },
    { FERRY_VM_DISK_SNAPSHOT, "snapshot" },
    { FERRY_VM_DISK_NO_FILE, "no-file" },
  };
  json_object *o = json_object_new_object ();
  size_t f;

  add_string (o, "id", d->id);
  add_string (o, "file", d->file);
  add_string (o, "format", d->format);
  add_string (o, "subformat", d->subformat);
  if (d->compression == FERRY_VM_COMPRESSION_GZIP)
    add_string (o, "compression", "gzip");
  add_place (o, d->bus, d->controller, d->unit);
  add_string (o, "controller-model", d->controller_model);
  add_u64 (o, "capacity", d->capacity);
  add_u64 (o, "populated", d->populated);
  add_string (o, "mode", d->mode);
  for (f = 0; f < sizeof flags / sizeof flags[0]; f++)
    if (d->flags & flags[f].flag)
      json_object_object_add (o, flags[f].name, json_object_new_boolean (1));
  if (out && out->disk_paths && out->disk_paths[i]) {
    json_object *t = json_object_new_object ();
    add_string (t, "path", out->disk_paths[i]);
    add_string (t, "format", out->disk_formats ? out->disk_formats[i] : NULL);
    if (out->disk_sizes)
      add_u64 (t, "virtual-size", out->disk_sizes[i]);
    json_object_object_add (o, "target", t);
  }
  return o;
}

char *
ferry_vm_to_json (const struct ferry_vm *vm, const struct ferry_vm_output *out)
{
  json_object *o = json_object_new_object (), *a;
  const char *s;
  char *r;
  size_t i;

  if (o == NULL)
    goto nomem;
  add_string (o, "name", vm->name);
  add_string (o, "source", vm->source);
  add_string (o, "source-type", vm->source_type);
  add_string (o, "source-version", vm->source_version);
  add_string (o, "producer", vm->producer);
  add_string (o, "os-type", vm->os_type);
  add_string (o, "os-description", vm->os_description);
  add_string (o, "firmware", ferry_vm_firmware_name (vm->firmware));
  json_object_object_add (o, "secure-boot",
                          json_object_new_boolean (vm->secure_boot));
  json_object_object_add (o, "vcpus",
                          json_object_new_int (vm->vcpus ? vm->vcpus : 1));
  if (vm->sockets) {
    json_object *t = json_object_new_object ();
    json_object_object_add (t, "sockets", json_object_new_int (vm->sockets));
    json_object_object_add (t, "cores", json_object_new_int (vm->cores));
    json_object_object_add (t, "threads", json_object_new_int (vm->threads));
    json_object_object_add (o, "topology", t);
  }
  add_u64 (o, "memory", vm->memory);
  add_string (o, "video", vm->video);
  add_u64 (o, "video-ram", vm->video_ram);

  a = json_object_new_array ();
  for (i = 0; i < vm->nr_disks; i++)
    json_object_array_add (a, disk_object (&vm->disks[i], out, i));
  json_object_object_add (o, "disks", a);

  a = json_object_new_array ();
  for (i = 0; i < vm->nr_cdroms; i++) {
    json_object *c = json_object_new_object ();
    const struct ferry_vm_cdrom *cd = &vm->cdroms[i];
    add_place (c, cd->bus, cd->controller, cd->unit);
    add_string (c, "image", cd->image);
    json_object_array_add (a, c);
  }
  json_object_object_add (o, "cdroms", a);

  a = json_object_new_array ();
  for (i = 0; i < vm->nr_nics; i++) {
    json_object *n = json_object_new_object ();
    add_string (n, "id", vm->nics[i].id);
    add_string (n, "mac", vm->nics[i].mac);
    add_string (n, "network", vm->nics[i].network);
    add_string (n, "model", vm->nics[i].model);
    json_object_array_add (a, n);
  }
  json_object_object_add (o, "nics", a);

  json_object_object_add (o, "snapshots",
                          json_object_new_boolean (vm->has_snapshots));
  add_string (o, "manifest", vm->manifest);
  if (vm->nr_notes) {
    a = json_object_new_array ();
    for (i = 0; i < vm->nr_notes; i++)
      json_object_array_add (a, json_object_new_string (vm->notes[i]));
    json_object_object_add (o, "notes", a);
  }

  s = json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY |
                                      JSON_C_TO_STRING_NOSLASHESCAPE);
  r = s ? strdup (s) : NULL;
  json_object_put (o);
  if (r == NULL)
    goto nomem;
  return r;

 nomem:
  ferry_error (ENOMEM, "out of memory");
  return NULL;
}
