/* ferry_vm_read: tell what kind of description a source is, from its
 * content, and read it: an OVA (a tar: the .ovf member, its manifest,
 * and where each disk's bytes lie in the archive), a folder (its one .ovf,
 * .vmx or .vbox), an .ovf (with the .mf beside it), a .vmx or a .vbox.
 * ferry_vm_read_target: what ferry wrote for KVM (a libvirt domain or a
 * QEMU script, or the folder holding it), read back.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/util.h"

/* The one entry of folder DIR whose name ends with SUFFIX, into *FOUND
 * (NULL when there is none); an error when there are several. */
static int
find_in_dir (const char *dir, const char *suffix, char **found)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  int r = 0;

  *found = NULL;
  if (d == NULL)
    return ferry_error_errno (errno, "%s", dir);
  while ((e = readdir (d)) != NULL) {
    if (e->d_name[0] == '.' || !vm_has_suffix (e->d_name, suffix))
      continue;
    if (*found) {
      r = ferry_error (EINVAL, "%s: holds several %s files (%s, %s...); "
                       "name the one to migrate", dir, suffix,
                       strrchr (*found, '/') + 1, e->d_name);
      free (*found);
      *found = NULL;
      break;
    }
    *found = vm_path_join (dir, e->d_name);
    if (*found == NULL) {
      r = ferry_error (ENOMEM, "out of memory");
      break;
    }
  }
  closedir (d);
  return r;
}

/* The manifest beside the OVF at PATH (same name, .mf), parsed into VM
 * when it is there. */
static int
read_manifest_file (struct ferry_vm *vm, const char *path)
{
  CLEANUP_FREE char *mf = NULL, *text = NULL;
  size_t n = strlen (path), len;

  if (!vm_has_suffix (path, ".ovf"))
    return 0;
  if (asprintf (&mf, "%.*s.mf", (int) (n - 4), path) == -1)
    return ferry_error (ENOMEM, "out of memory");
  if (access (mf, F_OK) != 0)
    return 0;
  if (vm_read_file (mf, VM_MAX_DESCRIPTION, "a manifest", &text, &len) == -1)
    return -1;
  if (vm_set (&vm->manifest, mf) == -1)
    return -1;
  return vm_parse_manifest (vm, mf, text, len);
}

/* Read the OVA at PATH. */
static struct ferry_vm *
read_ova (const char *path)
{
  struct ferry_ova *ova = ferry_ova_open (path);
  const struct ferry_ova_member *ovf = NULL, *mf;
  CLEANUP_FREE char *text = NULL, *label = NULL, *mf_name = NULL;
  CLEANUP_FREE char *folder = NULL;
  struct ferry_vm *vm = NULL;
  size_t i;

  if (ova == NULL)
    return NULL;
  for (i = 0; i < ova->nr_members; i++) {
    if (!vm_has_suffix (ova->members[i].name, ".ovf"))
      continue;
    if (ovf) {
      ferry_error (EINVAL, "%s: the archive holds several OVF descriptors "
                   "(%s, %s)", path, ovf->name, ova->members[i].name);
      goto out;
    }
    ovf = &ova->members[i];
  }
  if (ovf == NULL) {
    ferry_error (EINVAL, "%s: the archive holds no OVF descriptor (.ovf)",
                 path);
    goto out;
  }
  if (ovf->length > VM_MAX_DESCRIPTION) {
    ferry_error (EFBIG, "%s: OVF descriptor %s is %" PRIu64 " bytes (at "
                 "most %u)", path, ovf->name, ovf->length,
                 VM_MAX_DESCRIPTION);
    goto out;
  }
  if (asprintf (&label, "%s:%s", path, ovf->name) == -1) {
    ferry_error (ENOMEM, "out of memory");
    goto out;
  }
  if (vm_read_range (path, ovf->offset, ovf->length, &text) == -1)
    goto out;
  vm = vm_ovf_parse (label, NULL, text, ovf->length);
  if (vm == NULL)
    goto out;
  if (vm_set (&vm->source, path) == -1 ||
      vm_set (&vm->source_type, "ova") == -1)
    goto err;

  /* Members are named relative to the descriptor's folder. */
  folder = strrchr (ovf->name, '/') ?
    strndup (ovf->name, strrchr (ovf->name, '/') - ovf->name) : NULL;
  for (i = 0; i < vm->nr_disks; i++) {
    struct ferry_vm_disk *d = &vm->disks[i];
    CLEANUP_FREE char *name = NULL;
    const struct ferry_ova_member *m;

    free (d->path);
    d->path = NULL;
    if (d->file == NULL)
      continue;
    name = vm_path_join (folder, d->file);
    if (name == NULL) {
      ferry_error (ENOMEM, "out of memory");
      goto err;
    }
    m = ferry_ova_find (ova, name);
    if (m == NULL)
      continue;                 /* the checks report it missing */
    if (vm_set (&d->path, path) == -1 || vm_set (&d->member, m->name) == -1)
      goto err;
    d->member_offset = m->offset;
    d->member_length = m->length;
  }

  /* The manifest: the descriptor's name with .mf. */
  if (asprintf (&mf_name, "%.*s.mf", (int) strlen (ovf->name) - 4,
                ovf->name) == -1) {
    ferry_error (ENOMEM, "out of memory");
    goto err;
  }
  mf = ferry_ova_find (ova, mf_name);
  if (mf) {
    CLEANUP_FREE char *mtext = NULL, *mlabel = NULL;
    if (mf->length > VM_MAX_DESCRIPTION) {
      ferry_error (EFBIG, "%s: manifest %s is too large", path, mf->name);
      goto err;
    }
    if (asprintf (&mlabel, "%s:%s", path, mf->name) == -1) {
      ferry_error (ENOMEM, "out of memory");
      goto err;
    }
    if (vm_read_range (path, mf->offset, mf->length, &mtext) == -1 ||
        vm_set (&vm->manifest, mf->name) == -1 ||
        vm_parse_manifest (vm, mlabel, mtext, mf->length) == -1)
      goto err;
  }
  goto out;

 err:
  ferry_vm_free (vm);
  vm = NULL;
 out:
  ferry_ova_free (ova);
  return vm;
}

/* What kind of description the first bytes HEAD (LEN of them) are:
 * "ova", "ovf", "vbox", "vmx", or NULL. */
static const char *
sniff (const char *head, size_t len)
{
  const char *p = head, *end = head + len;

  /* A tar: "ustar" at 257, or a header whose checksum adds up (old
   * tars); ferry_ova_open checks properly. */
  if (len >= 512 && (memcmp (head + 257, "ustar", 5) == 0))
    return "ova";
  if (len >= 3 && (unsigned char) p[0] == 0xef &&
      (unsigned char) p[1] == 0xbb && (unsigned char) p[2] == 0xbf)
    p += 3;                     /* a UTF-8 byte order mark */
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    p++;
  if (p < end && *p == '<') {
    /* XML: the root element says which. */
    if (memmem (p, end - p, "VirtualBox", 10) &&
        !memmem (p, end - p, "Envelope", 8))
      return "vbox";
    return "ovf";
  }
  if (memchr (head, '\0', len) == NULL && memchr (head, '=', len))
    return "vmx";
  return NULL;
}

/* Read the description file PATH of kind KIND. */
static struct ferry_vm *
read_file (const char *path, const char *kind)
{
  CLEANUP_FREE char *text = NULL, *dir = NULL;
  struct ferry_vm *vm = NULL;
  size_t len;

  if (strcmp (kind, "ova") == 0)
    return read_ova (path);
  if (vm_read_file (path, VM_MAX_DESCRIPTION, "a VM description", &text,
                    &len) == -1)
    return NULL;
  dir = vm_dirname (path);
  if (dir == NULL) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (strcmp (kind, "ovf") == 0) {
    vm = vm_ovf_parse (path, dir, text, len);
    if (vm && read_manifest_file (vm, path) == -1) {
      ferry_vm_free (vm);
      vm = NULL;
    }
  }
  else if (strcmp (kind, "vbox") == 0)
    vm = ferry_vm_read_vbox (path, dir, text, len);
  else
    vm = ferry_vm_read_vmx (path, dir, text, len);
  return vm;
}

struct ferry_vm *
ferry_vm_read (const char *source)
{
  struct stat st;
  char head[4096];
  const char *kind;
  ssize_t n;
  int fd;

  if (stat (source, &st) == -1) {
    ferry_error_errno (errno, "%s", source);
    return NULL;
  }
  if (S_ISDIR (st.st_mode)) {
    static const char *const suffixes[] = { ".ovf", ".vmx", ".vbox" };
    size_t i;
    for (i = 0; i < 3; i++) {
      CLEANUP_FREE char *found = NULL;
      if (find_in_dir (source, suffixes[i], &found) == -1)
        return NULL;
      if (found)
        return ferry_vm_read (found);
    }
    ferry_error (ENOENT, "%s: the folder holds no .ovf, .vmx or .vbox file",
                 source);
    return NULL;
  }
  if (!S_ISREG (st.st_mode)) {
    ferry_error (EINVAL, "%s: not a file or a folder", source);
    return NULL;
  }

  fd = open (source, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    ferry_error_errno (errno, "%s", source);
    return NULL;
  }
  n = pread (fd, head, sizeof head, 0);
  close (fd);
  if (n == -1) {
    ferry_error_errno (errno, "%s: read", source);
    return NULL;
  }
  kind = sniff (head, n);
  /* An .ova that is no tar: say so rather than guess something else. */
  if (vm_has_suffix (source, ".ova") && (kind == NULL || strcmp (kind, "ova")))
    kind = "ova";
  if (kind == NULL) {
    ferry_error (EINVAL, "%s: not a VM description ferry knows (OVA, OVF, "
                 "VMX or VirtualBox .vbox)", source);
    return NULL;
  }
  return read_file (source, kind);
}

/* In folder DIR, the one description a v2v output for KVM has (NAME.xml
 * or NAME.sh), as a new path, or NULL with the error set. */
static char *
find_target_description (const char *dir)
{
  CLEANUP_FREE char *xml = NULL, *sh = NULL;
  char *found;

  if (find_in_dir (dir, ".xml", &xml) == -1 ||
      find_in_dir (dir, ".sh", &sh) == -1)
    return NULL;
  if ((xml == NULL) == (sh == NULL)) {
    ferry_error (ENOENT, "%s: expected one libvirt domain (NAME.xml) or QEMU "
                 "script (NAME.sh) in the folder, found %s", dir,
                 xml ? "both" : "neither");
    return NULL;
  }
  found = xml ? xml : sh;
  xml = sh = NULL;
  return found;
}

struct ferry_vm *
ferry_vm_read_target (const char *target)
{
  CLEANUP_FREE char *path = NULL, *text = NULL, *dir = NULL;
  struct stat st;
  const char *p;
  size_t len;

  if (stat (target, &st) == -1) {
    ferry_error_errno (errno, "%s", target);
    return NULL;
  }
  path = S_ISDIR (st.st_mode) ? find_target_description (target)
    : strdup (target);
  if (path == NULL) {
    if (!S_ISDIR (st.st_mode))
      ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  if (vm_read_file (path, VM_MAX_DESCRIPTION, "a VM description", &text,
                    &len) == -1 ||
      (dir = vm_dirname (path)) == NULL) {
    if (text)
      ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  for (p = text; p < text + len && (*p == ' ' || *p == '\t' || *p == '\r' ||
                                    *p == '\n'); p++)
    ;
  if (p < text + len && *p == '<')
    return ferry_vm_read_libvirt (path, dir, text, len);
  return ferry_vm_read_qemu (path, dir, text, len);
}
