/* The VM model as a shell script that starts it with qemu-system-x86_64.
 *
 * The script finds its disks beside itself (the caller passes names
 * relative to the output folder), so the folder can be moved.  Devices
 * follow the same choices as the libvirt domain (devices.c): virtio
 * unless keep_devices, q35 unless a kept device needs IDE.  UEFI guests
 * boot OVMF (the paths Debian's ovmf package installs, or $OVMF_CODE and
 * $OVMF_VARS), with a private copy of the variable store made at the
 * first start.  NICs use QEMU's user networking with their MAC address;
 * the source's network names are listed in the header for whoever wires
 * them to a bridge.  Arguments given to the script go to QEMU.
 *
 * Read back (ferry_vm_read_qemu), such a script gives what booting it
 * needs: its -drive files (names as the writer quotes them) and formats,
 * the bus of each from its -device line, the SCSI controllers' models,
 * NICs with model and MAC, -m, -smp, -name and the UEFI firmware.  Only
 * the lines this writer writes are understood, not arbitrary shell.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* Append to the script S (strbuf_printf, by a short name). */
static void
add (struct strbuf *s, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
static void
add (struct strbuf *s, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  strbuf_vprintf (s, fmt, ap);
  va_end (ap);
}

/* S single-quoted for the shell (the caller frees it). */
static char *
quote (const char *s)
{
  size_t n = 2, i;
  const char *p;
  char *r;

  for (p = s; *p; p++)
    n += *p == '\'' ? 4 : 1;
  r = malloc (n + 1);
  if (r == NULL)
    return NULL;
  i = 0;
  r[i++] = '\'';
  for (p = s; *p; p++) {
    if (*p == '\'') {
      memcpy (r + i, "'\\''", 4);
      i += 4;
    }
    else
      r[i++] = *p;
  }
  r[i++] = '\'';
  r[i] = '\0';
  return r;
}

/* S escaped for a QEMU option, then quoted for the shell. */
static char *
quote_opt (const char *s)
{
  char *e = qemu_opt_escape (s), *r;

  if (e == NULL)
    return NULL;
  r = quote (e);
  free (e);
  return r;
}

/* A comment line's text: no newlines. */
static void
add_comment (struct strbuf *s, const char *label, const char *text)
{
  add (s, "# %s", label);
  for (; text && *text; text++)
    add (s, "%c", *text == '\n' || *text == '\r' ? ' ' : *text);
  add (s, "\n");
}

/* The -device arguments that put drive ID (a disk when DISK) on BUS. */
static void
add_drive_device (struct strbuf *s, enum ferry_vm_bus bus, bool disk,
                  const char *id, int controller, int unit, bool i440fx,
                  unsigned *ide_next, int boot)
{
  char bootidx[32] = "";

  if (boot >= 0)
    snprintf (bootidx, sizeof bootidx, ",bootindex=%d", boot);
  switch (bus) {
  case FERRY_VM_BUS_VIRTIO:
    add (s, "  -device virtio-blk-pci,drive=%s%s \\\n", id, bootidx);
    break;
  case FERRY_VM_BUS_SCSI:
    add (s, "  -device %s,drive=%s,bus=scsi%d.0,scsi-id=%d%s \\\n",
         disk ? "scsi-hd" : "scsi-cd", id, MAX (controller, 0),
         MAX (unit, 0), bootidx);
    break;
  case FERRY_VM_BUS_NVME:
    add (s, "  -device nvme,drive=%s,serial=%s%s \\\n", id, id, bootidx);
    break;
  default: {
    /* IDE on the PC (two buses, two units each) or the AHCI ports of
     * q35 (ide.0 to ide.5), handed out in order. */
    unsigned n = (*ide_next)++;
    const char *kind = disk ? "ide-hd" : "ide-cd";
    if (i440fx)
      add (s, "  -device %s,drive=%s,bus=ide.%u,unit=%u%s \\\n", kind, id,
           n / 2, n % 2, bootidx);
    else
      add (s, "  -device %s,drive=%s,bus=ide.%u%s \\\n", kind, id, n,
           bootidx);
  }
  }
}

char *
ferry_vm_to_qemu (const struct ferry_vm *vm, const struct ferry_vm_output *out)
{
  bool i440fx = vm_needs_i440fx (vm, out->keep_devices);
  bool uefi = vm->firmware == FERRY_VM_FIRMWARE_UEFI;
  bool secure = uefi && vm->secure_boot && !i440fx;
  uint64_t mib = (vm->memory ? vm->memory : VM_DEFAULT_MEMORY) >> 20;
  unsigned vcpus = vm->vcpus ? vm->vcpus : 1, ide_next = 0;
  bool scsi[8] = { false };
  struct strbuf s = { 0 };
  char *name = NULL;
  size_t i;

  if (vm->name == NULL || *vm->name == '\0') {
    ferry_error (EINVAL, "the VM has no name");
    ferry_error_input ("name");
    return NULL;
  }
  name = quote_opt (vm->name);
  if (name == NULL)
    goto nomem;

  add (&s, "#!/bin/sh\n");
  add_comment (&s, "", vm->name);
  add_comment (&s, "Converted by ferry from ", vm->source);
  add (&s, "# The disks are found beside this script; arguments given to it "
       "go to QEMU.\n");
  for (i = 0; i < vm->nr_nics; i++) {
    char label[128];
    snprintf (label, sizeof label, "NIC %zu: QEMU user networking; the "
              "source network was: ", i);
    add_comment (&s, label, vm->nics[i].network ? vm->nics[i].network
                 : "(none)");
  }
  add (&s, "set -e\nhere=$(cd \"$(dirname \"$0\")\" && pwd)\n");
  /* Paths in QEMU's options: commas doubled. */
  add (&s, "opt() { printf '%%s' \"$1\" | sed 's/,/,,/g'; }\n");
  if (uefi) {
    add (&s, "code=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M%s.fd}\n",
         secure ? ".secboot" : "");
    add (&s, "vars=\"$here/firmware-vars.fd\"\n");
    add (&s, "[ -f \"$vars\" ] || cp \"${OVMF_VARS:-/usr/share/OVMF/"
         "OVMF_VARS_4M%s.fd}\" \"$vars\"\n", secure ? ".ms" : "");
  }
  add (&s, "exec qemu-system-x86_64 \\\n");
  add (&s, "  -name guest=%s \\\n", name);
  add (&s, "  -machine %s,accel=kvm:tcg%s \\\n", i440fx ? "pc" : "q35",
       secure ? ",smm=on" : "");
  add (&s, "  -cpu max \\\n");
  if (vm->sockets && vm->cores && vm->threads &&
      vm->sockets * vm->cores * vm->threads == vcpus)
    add (&s, "  -smp %u,sockets=%u,cores=%u,threads=%u \\\n", vcpus,
         vm->sockets, vm->cores, vm->threads);
  else
    add (&s, "  -smp %u \\\n", vcpus);
  add (&s, "  -m %" PRIu64 " \\\n", mib);
  if (uefi) {
    if (secure)
      add (&s, "  -global driver=cfi.pflash01,property=secure,value=on \\\n");
    add (&s, "  -drive if=pflash,format=raw,readonly=on,file=\"$(opt \"$code\")\" "
         "\\\n");
    add (&s, "  -drive if=pflash,format=raw,file=\"$(opt \"$vars\")\" \\\n");
  }

  for (i = 0; i < vm->nr_disks; i++) {
    const struct ferry_vm_disk *d = &vm->disks[i];
    enum ferry_vm_bus bus = vm_target_bus (d->bus, out->keep_devices);
    char *file, id[32];

    if (out->disk_paths == NULL || out->disk_paths[i] == NULL)
      continue;
    file = quote_opt (out->disk_paths[i]);
    if (file == NULL)
      goto nomem;
    snprintf (id, sizeof id, "disk%zu", i);
    if (bus == FERRY_VM_BUS_SCSI && d->controller >= 0 && d->controller < 8
        && !scsi[d->controller]) {
      scsi[d->controller] = true;
      add (&s, "  -device %s,id=scsi%d \\\n",
           vm_scsi_model (d->controller_model, true), d->controller);
    }
    add (&s, "  -drive file=\"$(opt \"$here\")\"/%s,format=%s,if=none,id=%s \\\n",
         file,
         out->disk_formats ? out->disk_formats[i] : "raw", id);
    free (file);
    add_drive_device (&s, bus, true, id, d->controller, d->unit, i440fx,
                      &ide_next, i == 0 ? 0 : -1);
  }
  for (i = 0; i < vm->nr_cdroms; i++) {
    enum ferry_vm_bus bus = vm_cdrom_bus (vm->cdroms[i].bus,
                                          out->keep_devices, i440fx);
    char id[32];

    /* A SCSI CD-ROM needs its controller; on any other bus it is IDE
     * or AHCI, handed out in order. */
    if (bus == FERRY_VM_BUS_SCSI)
      bus = FERRY_VM_BUS_SATA;
    snprintf (id, sizeof id, "cd%zu", i);
    add (&s, "  -drive if=none,id=%s,media=cdrom \\\n", id);
    add_drive_device (&s, bus, false, id, vm->cdroms[i].controller,
                      vm->cdroms[i].unit, i440fx, &ide_next, -1);
  }
  for (i = 0; i < vm->nr_nics; i++) {
    const struct ferry_vm_nic *n = &vm->nics[i];
    const char *model = vm_nic_model (n->model, out->keep_devices);
    add (&s, "  -netdev user,id=net%zu -device %s,netdev=net%zu%s%s \\\n",
         i, vm_qemu_nic_device (model), i, n->mac ? ",mac=" : "",
         n->mac ? n->mac : "");
  }
  add (&s, "  -device qemu-xhci -device usb-tablet \\\n");
  add (&s, "  -vga %s \\\n", out->keep_devices && vm->video &&
       strstr (vm->video, "vmware") ? "vmware" : "std");
  add (&s, "  \"$@\"\n");
  free (name);
  if (s.failed)
    goto nomem;
  return s.buf;

 nomem:
  free (name);
  free (s.buf);
  ferry_error (ENOMEM, "out of memory");
  return NULL;
}

/* --- reading a script back ---------------------------------------------- */

/* The value of KEY= in the comma-separated QEMU options at OPTS (up to a
 * blank, a backslash or the end of the line), its doubled commas undone,
 * as a new string; NULL when absent (*NOMEM tells out of memory). */
static char *
option_value (const char *opts, const char *key, bool *nomem)
{
  size_t k = strlen (key);
  const char *p = opts;

  while (p && *p && !strchr (" \\\n", *p)) {
    if (strncmp (p, key, k) == 0 && p[k] == '=') {
      const char *v = p + k + 1;
      char *r = malloc (strcspn (v, " \\\n") + 1), *q = r;
      if (r == NULL) {
        *nomem = true;
        return NULL;
      }
      for (; *v && !strchr (" \\\n", *v) && (*v != ',' || v[1] == ',');
           v++) {
        *q++ = *v;
        if (*v == ',')
          v++;
      }
      *q = '\0';
      return r;
    }
    /* The next option: past a comma that is not doubled. */
    while (*p && !strchr (" \\\n", *p) && (*p != ',' || p[1] == ','))
      p += *p == ',' ? 2 : 1;
    p = *p == ',' ? p + 1 : NULL;
  }
  return NULL;
}

/* The file name of a -drive file=F line: F as the writer quotes it,
 * "$(opt "$here")"/'NAME' (shell-quoted, commas doubled), or an older
 * script's "$here"/NAME.  A new string, or NULL when out of memory;
 * *END is where F ends. */
static char *
drive_file (const char *f, const char **end)
{
  static const char here_opt[] = "\"$(opt \"$here\")\"/", here[] = "\"$here\"/";
  char *file = malloc (strcspn (f, "\n") + 1);
  size_t k = 0;

  if (file == NULL)
    return NULL;
  if (strncmp (f, here_opt, sizeof here_opt - 1) == 0)
    f += sizeof here_opt - 1;
  else if (strncmp (f, here, sizeof here - 1) == 0)
    f += sizeof here - 1;
  if (*f == '\'') {
    for (f++; *f && *f != '\n'; f++) {
      if (strncmp (f, "'\\''", 4) == 0) {
        file[k++] = '\'';
        f += 3;
      }
      else if (*f == '\'') {
        f++;
        break;
      }
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
  *end = f;
  return file;
}

/* The disk of VM whose id (the drive's, "disk0") is ID, or NULL. */
static struct ferry_vm_disk *
disk_by_id (struct ferry_vm *vm, const char *id)
{
  size_t i;

  for (i = 0; id && i < vm->nr_disks; i++)
    if (vm->disks[i].id && strcmp (vm->disks[i].id, id) == 0)
      return &vm->disks[i];
  return NULL;
}

/* Read the -device line at D (after "-device ") into VM: a disk's bus, a
 * SCSI controller's model.  Q35: the machine is q35 (its IDE ports are
 * AHCI's). */
static int
read_device (struct ferry_vm *vm, const char *d, bool q35,
             const char **scsi_model)
{
  bool nomem = false;
  CLEANUP_FREE char *drive = option_value (d, "drive", &nomem);
  CLEANUP_FREE char *id = option_value (d, "id", &nomem);
  CLEANUP_FREE char *bus = option_value (d, "bus", &nomem);
  struct ferry_vm_disk *disk = disk_by_id (vm, drive);
  size_t len = strcspn (d, ", \\\n");

  if (nomem)
    return ferry_error (ENOMEM, "out of memory");
  if (disk) {
    if (strncmp (d, "virtio-blk-pci,", 15) == 0)
      disk->bus = FERRY_VM_BUS_VIRTIO;
    else if (strncmp (d, "scsi-hd,", 8) == 0) {
      disk->bus = FERRY_VM_BUS_SCSI;
      if (bus && strncmp (bus, "scsi", 4) == 0)
        disk->controller = atoi (bus + 4) & 7;
    }
    else if (strncmp (d, "ide-hd,", 7) == 0)
      disk->bus = q35 ? FERRY_VM_BUS_SATA : FERRY_VM_BUS_IDE;
    else if (strncmp (d, "nvme,", 5) == 0)
      disk->bus = FERRY_VM_BUS_NVME;
  }
  else if (id && strncmp (id, "scsi", 4) == 0 && !drive) {
    int c = atoi (id + 4) & 7;
    free ((char *) scsi_model[c]);
    scsi_model[c] = strndup (d, len);
    if (scsi_model[c] == NULL)
      return ferry_error (ENOMEM, "out of memory");
  }
  return 0;
}

/* Read a NIC: "-netdev user,id=netN -device MODEL,netdev=netN,mac=M". */
static int
read_nic (struct ferry_vm *vm, const char *name, unsigned lineno,
          const char *dev)
{
  struct ferry_vm_nic *nic = vm_add_nic (vm);
  bool nomem = false;
  CLEANUP_FREE char *mac = option_value (dev, "mac", &nomem);
  char norm[18];

  if (nic == NULL)
    return -1;
  if (nomem)
    return ferry_error (ENOMEM, "out of memory");
  if (vm_setf (&nic->model, "%.*s", (int) strcspn (dev, ", \\\n"), dev) == -1)
    return -1;
  if (strncmp (nic->model, "virtio-net", 10) == 0 &&
      vm_set (&nic->model, "virtio") == -1)
    return -1;
  if (mac == NULL)
    return 0;
  if (!vm_mac_normalize (mac, norm))
    return ferry_error (EINVAL, "%s: line %u: '%s' is not a MAC address",
                        name, lineno, mac);
  return vm_set (&nic->mac, norm);
}

/* Read the script TEXT (NAME, its folder DIR) into VM, line by line. */
static int
read_script (struct ferry_vm *vm, const char *name, const char *dir,
             const char *text)
{
  const char *scsi_model[8] = { NULL };
  const char *p, *m = strstr (text, "-machine ");
  bool q35 = m && strncmp (m + 9, "q35", 3) == 0;
  unsigned lineno = 0;
  int r = -1;
  size_t i;

  for (p = text; *p; p += strcspn (p, "\n"), p += *p == '\n') {
    const char *line = p + strspn (p, " \t");
    bool nomem = false;
    uint64_t v;

    lineno++;
    if (strncmp (line, "-drive file=", 12) == 0) {
      struct ferry_vm_disk *d = vm_add_disk (vm);
      const char *opts = line + 12;
      CLEANUP_FREE char *file = drive_file (opts, &opts);
      CLEANUP_FREE char *format = NULL, *id = NULL;
      if (d == NULL)
        goto out;
      /* The options after the file's name. */
      if (*opts == ',') {
        format = option_value (opts + 1, "format", &nomem);
        id = option_value (opts + 1, "id", &nomem);
      }
      if (file == NULL || nomem ||
          (d->path = vm_path_join (dir, file)) == NULL) {
        ferry_error (ENOMEM, "out of memory");
        goto out;
      }
      if (vm_set (&d->file, file) == -1 || vm_set (&d->format, format) == -1
          || vm_set (&d->id, id) == -1)
        goto out;
    }
    else if (strncmp (line, "-drive if=pflash", 16) == 0)
      vm->firmware = FERRY_VM_FIRMWARE_UEFI;
    else if (strncmp (line, "-global driver=cfi.pflash01,property=secure,"
                      "value=on", 52) == 0)
      vm->secure_boot = true;
    else if (strncmp (line, "-device ", 8) == 0) {
      if (read_device (vm, line + 8, q35, scsi_model) == -1)
        goto out;
    }
    else if (strncmp (line, "-netdev user", 12) == 0) {
      const char *eol = line + strcspn (line, "\n");
      const char *dev = strstr (line, " -device ");
      if (dev && dev < eol && read_nic (vm, name, lineno, dev + 9) == -1)
        goto out;
    }
    else if (strncmp (line, "-m ", 3) == 0) {
      CLEANUP_FREE char *mib = strndup (line + 3, strcspn (line + 3,
                                                           " \\\n"));
      if (mib == NULL || !vm_parse_u64 (mib, &v) || v > (UINT64_C (1) << 40)) {
        ferry_error (EINVAL, "%s: line %u: -m '%s' is not a size in MiB",
                     name, lineno, mib ? mib : "");
        goto out;
      }
      vm->memory = v << 20;
    }
    else if (strncmp (line, "-smp ", 5) == 0) {
      CLEANUP_FREE char *n = strndup (line + 5, strcspn (line + 5,
                                                         ", \\\n"));
      if (n == NULL || !vm_parse_u64 (n, &v) || v == 0 || v > 4096) {
        ferry_error (EINVAL, "%s: line %u: -smp '%s' is not a CPU count",
                     name, lineno, n ? n : "");
        goto out;
      }
      vm->vcpus = v;
    }
    else if (strncmp (line, "-name guest=", 12) == 0) {
      const char *end;
      CLEANUP_FREE char *n = drive_file (line + 12, &end);
      if (n == NULL || vm_set (&vm->name, n) == -1) {
        ferry_error (ENOMEM, "out of memory");
        goto out;
      }
    }
  }
  if (vm->firmware == FERRY_VM_FIRMWARE_UNKNOWN)
    vm->firmware = FERRY_VM_FIRMWARE_BIOS;
  for (i = 0; i < vm->nr_disks; i++) {
    struct ferry_vm_disk *d = &vm->disks[i];
    if (d->bus == FERRY_VM_BUS_SCSI && scsi_model[MAX (d->controller, 0)] &&
        vm_set (&d->controller_model, scsi_model[MAX (d->controller, 0)])
        == -1)
      goto out;
  }
  r = 0;
 out:
  for (i = 0; i < 8; i++)
    free ((char *) scsi_model[i]);
  return r;
}

struct ferry_vm *
ferry_vm_read_qemu (const char *name, const char *dir, const char *text,
                    size_t len)
{
  CLEANUP_FREE char *copy = NULL;
  struct ferry_vm *vm;

  /* A script is text: it ends at its first NUL, if it has one. */
  copy = strndup (text, len);
  if (copy == NULL) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (strstr (copy, "qemu-system-") == NULL) {
    ferry_error (EINVAL, "%s: not a QEMU launch script (it never runs "
                 "qemu-system-...)", name);
    return NULL;
  }
  vm = vm_new (name, "qemu");
  if (vm && read_script (vm, name, dir, copy) == -1) {
    ferry_vm_free (vm);
    vm = NULL;
  }
  return vm;
}
