/* ferry_guest_read_target: what to boot for `ferry verify --boot TARGET`
 * when TARGET is a migrated VM rather than disk images: the output folder
 * of `ferry v2v --to libvirt|qemu`, or the description in it (a libvirt
 * domain XML, or the QEMU launch script ferry writes).
 *
 * Only what a boot needs is read: the disks (files, formats, the bus they
 * sit on), the NICs' model and MAC addresses, memory, vCPUs and firmware.
 * The libvirt reader understands any domain XML of that shape; the script
 * reader understands the scripts lib/vm/qemu.c writes (its -drive,
 * -device, -m, -smp and pflash lines), not arbitrary shell.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "../common/cleanup.h"
#include "internal.h"

#define MAX_DESCRIPTION (4 << 20)

void
ferry_guest_target_free (struct ferry_guest_target *t)
{
  size_t i;

  if (!t)
    return;
  for (i = 0; i < t->nr_disks; i++) {
    free ((char *) t->disks[i].path);
    free ((char *) t->disks[i].format);
  }
  free (t->disks);
  free (t->disk_bus);
  free (t->nic_model);
  guest_free_strings (t->macs);
  free (t->firmware);
  free (t->description);
  memset (t, 0, sizeof *t);
}

static int
add_disk (struct ferry_guest_target *t, const char *dir, const char *file,
          const char *format)
{
  struct ferry_guest_disk *v = realloc (t->disks, (t->nr_disks + 1) * sizeof *v);
  char *path, *fmt = NULL;

  if (!v)
    return ferry_error (ENOMEM, "out of memory");
  t->disks = v;
  path = file[0] == '/' ? strdup (file) : guest_printf ("%s/%s", dir, file);
  if (format && !(fmt = strdup (format))) {
    free (path);
    return ferry_error (ENOMEM, "out of memory");
  }
  if (!path) {
    free (fmt);
    return ferry_error (ENOMEM, "out of memory");
  }
  v[t->nr_disks].path = path;
  v[t->nr_disks].format = fmt;
  t->nr_disks++;
  return 0;
}

/* Move the MAC addresses collected in MACS into T (NULL-terminated). */
static int
take_macs (struct ferry_guest_target *t, string_vector *macs)
{
  if (macs->len == 0)
    return 0;
  if (string_vector_append (macs, NULL) == -1)
    return ferry_error (ENOMEM, "out of memory");
  t->macs = macs->ptr;
  *macs = (string_vector) empty_vector;
  return 0;
}

static int
add_mac (string_vector *macs, const char *mac)
{
  return string_vector_add_unique (macs, mac);
}

/* The first child element of NODE named NAME. */
static xmlNodePtr
child (xmlNodePtr node, const char *name)
{
  xmlNodePtr c;

  for (c = node ? node->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && strcmp ((const char *) c->name, name) == 0)
      return c;
  return NULL;
}

/* Attribute NAME of NODE, as a string the caller frees, or NULL. */
static char *
attr (xmlNodePtr node, const char *name)
{
  xmlChar *v = node ? xmlGetProp (node, (const xmlChar *) name) : NULL;
  char *s = v ? strdup ((const char *) v) : NULL;

  xmlFree (v);
  return s;
}

static char *
text_of (xmlNodePtr node)
{
  xmlChar *v = node ? xmlNodeGetContent (node) : NULL;
  char *s = v ? strdup ((const char *) v) : NULL;

  xmlFree (v);
  return s;
}

static int
read_libvirt (const char *path, const char *dir, const char *text, size_t len,
              struct ferry_guest_target *t)
{
  xmlDocPtr doc;
  xmlNodePtr root, devices, os, n;
  string_vector macs = empty_vector;
  int r = -1;

  doc = xmlReadMemory (text, len, path, NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (!doc)
    return ferry_error (EINVAL, "%s: not well-formed XML", path);
  root = xmlDocGetRootElement (doc);
  if (!root || strcmp ((const char *) root->name, "domain") != 0) {
    ferry_error (EINVAL, "%s: not a libvirt domain (no <domain> element)", path);
    goto out;
  }
  {
    CLEANUP_FREE char *mem = text_of (child (root, "memory"));
    CLEANUP_FREE char *unit = attr (child (root, "memory"), "unit");
    CLEANUP_FREE char *vcpu = text_of (child (root, "vcpu"));
    uint64_t m = mem ? strtoull (mem, NULL, 10) : 0;
    if (!unit || strcmp (unit, "KiB") == 0 || strcmp (unit, "k") == 0)
      m <<= 10;
    else if (strcmp (unit, "MiB") == 0 || strcmp (unit, "M") == 0)
      m <<= 20;
    else if (strcmp (unit, "GiB") == 0 || strcmp (unit, "G") == 0)
      m <<= 30;
    t->memory = m;
    t->vcpus = vcpu ? (unsigned) strtoul (vcpu, NULL, 10) : 0;
  }
  os = child (root, "os");
  {
    CLEANUP_FREE char *fw = attr (os, "firmware");
    bool uefi = (fw && strcmp (fw, "efi") == 0) || child (os, "loader");
    t->firmware = strdup (uefi ? "uefi" : "bios");
  }
  devices = child (root, "devices");
  for (n = devices ? devices->children : NULL; n; n = n->next) {
    if (n->type != XML_ELEMENT_NODE)
      continue;
    if (strcmp ((const char *) n->name, "disk") == 0) {
      CLEANUP_FREE char *device = attr (n, "device");
      CLEANUP_FREE char *file = attr (child (n, "source"), "file");
      CLEANUP_FREE char *type = attr (child (n, "driver"), "type");
      CLEANUP_FREE char *bus = attr (child (n, "target"), "bus");
      if (device && strcmp (device, "disk") != 0)
        continue;
      if (!file) {
        ferry_error (EINVAL, "%s: a <disk> without <source file=...>: ferry "
                     "boots file-backed disks only", path);
        goto out;
      }
      if (add_disk (t, dir, file, type) == -1)
        goto out;
      if (bus && !t->disk_bus)
        t->disk_bus = strdup (bus);
    }
    else if (strcmp ((const char *) n->name, "controller") == 0) {
      CLEANUP_FREE char *type = attr (n, "type");
      CLEANUP_FREE char *model = attr (n, "model");
      /* libvirt's SCSI default is LSI; ferry writes virtio-scsi. */
      if (type && strcmp (type, "scsi") == 0 && model &&
          strcmp (model, "virtio-scsi") != 0)
        t->lsi_scsi = true;
    }
    else if (strcmp ((const char *) n->name, "interface") == 0) {
      CLEANUP_FREE char *mac = attr (child (n, "mac"), "address");
      CLEANUP_FREE char *model = attr (child (n, "model"), "type");
      if (mac && add_mac (&macs, mac) == -1)
        goto out;
      if (model && !t->nic_model)
        t->nic_model = strdup (model);
    }
  }
  r = 0;

 out:
  if (r == 0)
    r = take_macs (t, &macs);
  string_vector_free (&macs);
  xmlFreeDoc (doc);
  return r;
}

/* The value of KEY= in the comma-separated option list OPTS (up to a
 * blank or a backslash), as a new string, or NULL. */
static char *
option_value (const char *opts, const char *key)
{
  size_t k = strlen (key);
  const char *p = opts;

  while (p && *p && *p != ' ' && *p != '\\') {
    if (strncmp (p, key, k) == 0 && p[k] == '=') {
      const char *v = p + k + 1;
      return strndup (v, strcspn (v, ", \\\n"));
    }
    p = strchr (p, ',');
    if (p)
      p++;
  }
  return NULL;
}

static int
read_qemu_script (const char *path, const char *dir, const char *text,
                  struct ferry_guest_target *t)
{
  string_vector macs = empty_vector;
  const char *p;
  int r = -1;

  if (!strstr (text, "qemu-system-"))
    return ferry_error (EINVAL, "%s: not a QEMU launch script (it never "
                        "runs qemu-system-...)", path);
  for (p = text; *p; p = strchr (p, '\n') ? strchr (p, '\n') + 1 : p + strlen (p)) {
    const char *line = p;
    while (*line == ' ' || *line == '\t')
      line++;
    if (strncmp (line, "-drive file=", 12) == 0) {
      /* -drive file="$(opt "$here")"/'NAME',format=F,if=none,id=...: the
       * name shell-quoted ('\'' for a quote) with its commas doubled
       * (lib/vm/qemu.c); older scripts said "$here"/NAME. */
      const char *f = line + 12;
      CLEANUP_FREE char *file = NULL, *format = NULL;
      size_t k = 0;
      static const char here_opt[] = "\"$(opt \"$here\")\"/", here[] = "\"$here\"/";
      if (strncmp (f, here_opt, sizeof here_opt - 1) == 0)
        f += sizeof here_opt - 1;
      else if (strncmp (f, here, sizeof here - 1) == 0)
        f += sizeof here - 1;
      file = malloc (strcspn (f, "\n") + 1);
      if (!file) {
        ferry_error (ENOMEM, "out of memory");
        goto out;
      }
      if (*f == '\'') {
        for (f++; *f && *f != '\n'; f++) {
          if (strncmp (f, "'\\''", 4) == 0) {
            file[k++] = '\'';
            f += 3;
          }
          else if (*f == '\'')
            break;
          else if (*f == ',' && f[1] == ',') {
            file[k++] = ',';
            f++;
          }
          else
            file[k++] = *f;
        }
      }
      else
        for (; *f && !strchr ("\" \\\n", *f) && (*f != ',' || f[1] == ','); f++) {
          file[k++] = *f;
          if (*f == ',')
            f++;
        }
      file[k] = '\0';
      format = option_value (line + 7, "format");
      if (add_disk (t, dir, file, format) == -1)
        goto out;
    }
    else if (strncmp (line, "-drive if=pflash", 16) == 0 && !t->firmware)
      t->firmware = strdup ("uefi");
    else if (strncmp (line, "-device ", 8) == 0) {
      const char *d = line + 8;
      CLEANUP_FREE char *mac = option_value (d, "mac");
      if (strncmp (d, "virtio-blk-pci,", 15) == 0 && !t->disk_bus)
        t->disk_bus = strdup ("virtio");
      else if (strncmp (d, "scsi-hd,", 8) == 0 && !t->disk_bus)
        t->disk_bus = strdup ("scsi");
      else if (strncmp (d, "lsi53c895a", 10) == 0)
        t->lsi_scsi = true;
      else if ((strncmp (d, "ide-hd,", 7) == 0) && !t->disk_bus)
        t->disk_bus = strdup (strstr (d, "ahci") ? "sata" : "ide");
      if (mac && add_mac (&macs, mac) == -1)
        goto out;
    }
    else if (strncmp (line, "-netdev user", 12) == 0) {
      /* -netdev user,id=net0 -device MODEL,netdev=net0,mac=... */
      const char *eol = strchr (line, '\n'), *dev = strstr (line, "-device ");
      if (dev && (!eol || dev < eol)) {
        CLEANUP_FREE char *mac = option_value (dev + 8, "mac");
        dev += 8;
        if (!t->nic_model)
          t->nic_model = strncmp (dev, "virtio-net", 10) == 0
            ? strdup ("virtio") : strndup (dev, strcspn (dev, ", \\\n"));
        if (mac && add_mac (&macs, mac) == -1)
          goto out;
      }
    }
    else if (strncmp (line, "-m ", 3) == 0)
      t->memory = strtoull (line + 3, NULL, 10) << 20;
    else if (strncmp (line, "-smp ", 5) == 0)
      t->vcpus = (unsigned) strtoul (line + 5, NULL, 10);
  }
  if (!t->firmware)
    t->firmware = strdup ("bios");
  r = 0;

 out:
  if (r == 0)
    r = take_macs (t, &macs);
  string_vector_free (&macs);
  return r;
}

/* In folder DIR, the one description a v2v output has (NAME.xml or
 * NAME.sh), as a new path. */
static char *
find_description (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  char *found = NULL;
  int n = 0;

  if (!d) {
    ferry_error_errno (errno, "%s", dir);
    return NULL;
  }
  while ((e = readdir (d)) != NULL) {
    size_t len = strlen (e->d_name);
    if (len > 4 && (strcmp (e->d_name + len - 4, ".xml") == 0 ||
                    strcmp (e->d_name + len - 3, ".sh") == 0)) {
      n++;
      free (found);
      found = guest_printf ("%s/%s", dir, e->d_name);
    }
  }
  closedir (d);
  if (n != 1) {
    free (found);
    ferry_error (ENOENT, "%s: expected one libvirt domain (NAME.xml) or "
                 "QEMU script (NAME.sh) in the folder, found %d", dir, n);
    return NULL;
  }
  return found;
}

int
ferry_guest_read_target (const char *target, struct ferry_guest_target *t)
{
  CLEANUP_FREE char *desc = NULL, *text = NULL, *dircopy = NULL;
  struct stat st;
  ssize_t n;
  int fd, r;

  memset (t, 0, sizeof *t);
  if (stat (target, &st) == -1)
    return ferry_error_errno (errno, "%s", target);
  desc = S_ISDIR (st.st_mode) ? find_description (target) : strdup (target);
  if (!desc)
    return -1;
  fd = open (desc, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return ferry_error_errno (errno, "%s", desc);
  if (fstat (fd, &st) == -1 || st.st_size > MAX_DESCRIPTION) {
    close (fd);
    return ferry_error (EFBIG, "%s: larger than a VM description can be (%d MiB)",
                        desc, MAX_DESCRIPTION >> 20);
  }
  text = malloc (st.st_size + 1);
  if (!text) {
    close (fd);
    return ferry_error (ENOMEM, "out of memory");
  }
  n = pread (fd, text, st.st_size, 0);
  close (fd);
  if (n != st.st_size)
    return ferry_error_errno (n < 0 ? errno : EIO, "%s: read", desc);
  text[n] = '\0';
  dircopy = strdup (desc);
  if (!dircopy)
    return ferry_error (ENOMEM, "out of memory");
  {
    const char *dir = dirname (dircopy);
    const char *s = text;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
      s++;
    if (*s == '<')
      r = read_libvirt (desc, dir, text, n, t);
    else
      r = read_qemu_script (desc, dir, text, t);
  }
  if (r == 0 && t->nr_disks == 0)
    r = ferry_error (EINVAL, "%s: names no disk to boot from", desc);
  if (r == 0) {
    t->description = desc;
    desc = NULL;
  }
  else {
    ferry_guest_target_free (t);
  }
  return r;
}
