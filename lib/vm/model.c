/* The VM model: building it, freeing it, and the small parsers every
 * reader shares (MAC addresses, numbers, paths, whole files). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/image.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

struct ferry_vm *
vm_new (const char *source, const char *type)
{
  struct ferry_vm *vm = calloc (1, sizeof *vm);

  if (vm == NULL || vm_set (&vm->source, source) == -1 ||
      vm_set (&vm->source_type, type) == -1) {
    ferry_vm_free (vm);
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  return vm;
}

int
vm_set (char **field, const char *value)
{
  char *copy = NULL;

  if (value && (copy = strdup (value)) == NULL)
    return ferry_error (ENOMEM, "out of memory");
  free (*field);
  *field = copy;
  return 0;
}

int
ferry_vm_set_string (char **field, const char *value)
{
  return vm_set (field, value);
}

int
vm_setf (char **field, const char *fmt, ...)
{
  va_list ap;
  char *s;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (r == -1)
    return ferry_error (ENOMEM, "out of memory");
  free (*field);
  *field = s;
  return 0;
}

/* Grow the array *PTR of *LEN elements of SIZE bytes by one zeroed
 * element and return it, or NULL (with the error set) when out of memory
 * or past VM_MAX_DEVICES. */
static void *
grow (void **ptr, size_t *len, size_t size, const char *what)
{
  char *p;

  if (*len >= VM_MAX_DEVICES) {
    ferry_error (E2BIG, "more than %u %s", VM_MAX_DEVICES, what);
    return NULL;
  }
  p = realloc (*ptr, (*len + 1) * size);
  if (p == NULL) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  *ptr = p;
  memset (p + *len * size, 0, size);
  return p + (*len)++ * size;
}

struct ferry_vm_disk *
vm_add_disk (struct ferry_vm *vm)
{
  struct ferry_vm_disk *d = grow ((void **) &vm->disks, &vm->nr_disks,
                                  sizeof *d, "disks");
  if (d)
    d->controller = d->unit = -1;
  return d;
}

struct ferry_vm_cdrom *
vm_add_cdrom (struct ferry_vm *vm)
{
  struct ferry_vm_cdrom *c = grow ((void **) &vm->cdroms, &vm->nr_cdroms,
                                   sizeof *c, "CD-ROM drives");
  if (c)
    c->controller = c->unit = -1;
  return c;
}

struct ferry_vm_nic *
vm_add_nic (struct ferry_vm *vm)
{
  return grow ((void **) &vm->nics, &vm->nr_nics, sizeof (struct ferry_vm_nic),
               "network adapters");
}

struct ferry_vm_manifest_entry *
vm_add_manifest_entry (struct ferry_vm *vm)
{
  return grow ((void **) &vm->manifest_entries, &vm->nr_manifest_entries,
               sizeof (struct ferry_vm_manifest_entry), "manifest lines");
}

int
vm_note (struct ferry_vm *vm, const char *fmt, ...)
{
  char **p, *line;
  va_list ap;
  int r;

  if (vm->nr_notes >= VM_MAX_DEVICES)
    return 0;                 /* enough said */
  va_start (ap, fmt);
  r = vasprintf (&line, fmt, ap);
  va_end (ap);
  if (r == -1)
    return ferry_error (ENOMEM, "out of memory");
  p = realloc (vm->notes, (vm->nr_notes + 1) * sizeof *p);
  if (p == NULL) {
    free (line);
    return ferry_error (ENOMEM, "out of memory");
  }
  vm->notes = p;
  vm->notes[vm->nr_notes++] = line;
  return 0;
}

void
ferry_vm_free (struct ferry_vm *vm)
{
  size_t i;

  if (vm == NULL)
    return;
  free (vm->name);
  free (vm->source);
  free (vm->source_type);
  free (vm->source_version);
  free (vm->producer);
  free (vm->os_type);
  free (vm->os_description);
  free (vm->video);
  for (i = 0; i < vm->nr_disks; i++) {
    struct ferry_vm_disk *d = &vm->disks[i];
    free (d->file);
    free (d->path);
    free (d->member);
    free (d->format);
    free (d->subformat);
    free (d->controller_model);
    free (d->mode);
    free (d->id);
  }
  free (vm->disks);
  for (i = 0; i < vm->nr_cdroms; i++)
    free (vm->cdroms[i].image);
  free (vm->cdroms);
  for (i = 0; i < vm->nr_nics; i++) {
    free (vm->nics[i].mac);
    free (vm->nics[i].network);
    free (vm->nics[i].model);
    free (vm->nics[i].id);
  }
  free (vm->nics);
  free (vm->manifest);
  for (i = 0; i < vm->nr_manifest_entries; i++) {
    free (vm->manifest_entries[i].name);
    free (vm->manifest_entries[i].algorithm);
    free (vm->manifest_entries[i].digest);
  }
  free (vm->manifest_entries);
  for (i = 0; i < vm->nr_notes; i++)
    free (vm->notes[i]);
  free (vm->notes);
  free (vm);
}

const char *
ferry_vm_bus_name (enum ferry_vm_bus bus)
{
  switch (bus) {
  case FERRY_VM_BUS_IDE: return "ide";
  case FERRY_VM_BUS_SATA: return "sata";
  case FERRY_VM_BUS_SCSI: return "scsi";
  case FERRY_VM_BUS_NVME: return "nvme";
  case FERRY_VM_BUS_VIRTIO: return "virtio";
  case FERRY_VM_BUS_FLOPPY: return "floppy";
  case FERRY_VM_BUS_USB: return "usb";
  case FERRY_VM_BUS_UNKNOWN: break;
  }
  return "unknown";
}

const char *
ferry_vm_firmware_name (enum ferry_vm_firmware fw)
{
  switch (fw) {
  case FERRY_VM_FIRMWARE_BIOS: return "bios";
  case FERRY_VM_FIRMWARE_UEFI: return "uefi";
  case FERRY_VM_FIRMWARE_UNKNOWN: break;
  }
  return "unknown";
}

/* The value of the hex digit C, or -1. */
static int
hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

bool
vm_mac_normalize (const char *s, char out[18])
{
  static const char digits[] = "0123456789abcdef";
  int nibbles[12], n = 0, i;
  char sep = 0;

  while (*s == ' ')
    s++;
  for (; *s && *s != ' '; s++) {
    int v = hex_value (*s);
    if (v >= 0) {
      if (n == 12)
        return false;
      nibbles[n++] = v;
      continue;
    }
    /* A separator after every second digit, always the same one. */
    if ((*s != ':' && *s != '-') || n % 2 != 0 || n == 0 ||
        (sep && sep != *s))
      return false;
    sep = *s;
  }
  if (n != 12)
    return false;
  for (i = 0; i < 6; i++) {
    out[3 * i] = digits[nibbles[2 * i]];
    out[3 * i + 1] = digits[nibbles[2 * i + 1]];
    out[3 * i + 2] = i < 5 ? ':' : '\0';
  }
  return true;
}

bool
vm_parse_u64 (const char *s, uint64_t *value)
{
  uint64_t v = 0;

  if (s == NULL)
    return false;
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
    s++;
  if (*s < '0' || *s > '9')
    return false;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (v > (UINT64_MAX - (*s - '0')) / 10)
      return false;
    v = v * 10 + (*s - '0');
  }
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
    s++;
  if (*s)
    return false;
  *value = v;
  return true;
}

char *
vm_path_join (const char *dir, const char *name)
{
  char *s;

  /* A description is untrusted: a disk it names is a file, so a name that
   * would read as a URI (nbd+unix:///?socket=...) gets a "./" and stays
   * one (lib/image's image.c note 7). */
  if ((dir == NULL || strcmp (dir, ".") == 0) && name[0] != '/' &&
      ferry_image_is_uri (name)) {
    if (asprintf (&s, "./%s", name) == -1)
      return NULL;
    return s;
  }
  if (dir == NULL || name[0] == '/' || strcmp (dir, ".") == 0)
    return strdup (name);
  if (asprintf (&s, "%s/%s", dir, name) == -1)
    return NULL;
  return s;
}

char *
vm_dirname (const char *path)
{
  const char *slash = strrchr (path, '/');

  if (slash == NULL)
    return strdup (".");
  if (slash == path)
    return strdup ("/");
  return strndup (path, slash - path);
}

void
vm_trim_value (const char **p, const char **end)
{
  while (*p < *end && (**p == ' ' || **p == '\t'))
    (*p)++;
  while (*end > *p && ((*end)[-1] == ' ' || (*end)[-1] == '\t' ||
                       (*end)[-1] == '\r'))
    (*end)--;
  if (*end - *p >= 2 && **p == '"' && (*end)[-1] == '"') {
    (*p)++;
    (*end)--;
  }
}

bool
vm_has_suffix (const char *s, const char *suffix)
{
  size_t n = strlen (s), m = strlen (suffix);

  return n >= m && strcasecmp (s + n - m, suffix) == 0;
}

bool
vm_name_has_dotdot (const char *name)
{
  const char *p;
  size_t n;

  for (p = name; *p; p += n + (p[n] == '/')) {
    n = strcspn (p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return true;
  }
  return false;
}

int
vm_read_range (const char *path, uint64_t offset, size_t len, char **text)
{
  /* O_NONBLOCK: a FIFO put in place of a checked file fails, not waits. */
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  char *buf;

  if (fd == -1)
    return ferry_error_errno (errno, "%s", path);
  buf = malloc (len + 1);
  if (buf == NULL)
    return ferry_error (ENOMEM, "out of memory");
  if (full_pread (fd, buf, len, offset) == -1) {
    free (buf);
    return ferry_error_errno (errno, "%s: read of %zu bytes at offset %"
                              PRIu64, path, len, offset);
  }
  buf[len] = '\0';
  *text = buf;
  return 0;
}

int
vm_read_file (const char *path, size_t max, const char *what, char **text,
              size_t *len)
{
  struct stat st;

  if (stat (path, &st) == -1)
    return ferry_error_errno (errno, "%s", path);
  if (!S_ISREG (st.st_mode))
    return ferry_error (EINVAL, "%s: not a regular file", path);
  if ((uint64_t) st.st_size > max)
    return ferry_error (EFBIG, "%s: %" PRIu64 " bytes is too large for %s "
                        "(at most %zu)", path, (uint64_t) st.st_size, what,
                        max);
  *len = st.st_size;
  return vm_read_range (path, 0, st.st_size, text);
}
