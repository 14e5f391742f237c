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
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
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
