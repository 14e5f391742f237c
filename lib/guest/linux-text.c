/* Text rewrites of a Linux guest's configuration files: fstab, kernel
 * command lines in boot loader files, network files.  Pure functions on
 * strings, so tests/unit/test-guest.c checks them without an appliance.
 *
 * Every rewrite keeps what it does not change byte for byte (spacing,
 * comments, other lines): an administrator diffing the file afterwards
 * sees only the device names that moved to stable ones.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

char *
guest_printf (const char *fmt, ...)
{
  va_list ap;
  char *s;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&s, fmt, ap);
  va_end (ap);
  return r < 0 ? NULL : s;
}

int
string_vector_add_unique (string_vector *v, const char *s)
{
  size_t i;
  char *copy;

  for (i = 0; i < v->len; i++)
    if (strcmp (v->ptr[i], s) == 0)
      return 0;
  copy = strdup (s);
  if (!copy || string_vector_append (v, copy) == -1) {
    free (copy);
    return ferry_error (ENOMEM, "out of memory");
  }
  return 0;
}

void
string_vector_free (string_vector *v)
{
  size_t i;

  for (i = 0; i < v->len; i++)
    free (v->ptr[i]);
  string_vector_reset (v);
}

/* A growing output string. */
struct buf {
  char *p;
  size_t len, cap;
  bool failed;
};

static void
buf_add (struct buf *b, const char *s, size_t n)
{
  if (b->failed)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *p;
    while (cap < b->len + n + 1)
      cap *= 2;
    p = realloc (b->p, cap);
    if (!p) {
      b->failed = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy (b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static char *
buf_finish (struct buf *b)
{
  if (!b->failed && !b->p)
    buf_add (b, "", 0);
  if (b->failed) {
    free (b->p);
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  return b->p;
}

bool
guest_is_bus_bound_device (const char *dev)
{
  const char *p;

  if (strncmp (dev, "/dev/disk/by-path/", 18) == 0 ||
      strncmp (dev, "/dev/disk/by-id/", 16) == 0)
    return true;
  if (strncmp (dev, "/dev/", 5) != 0)
    return false;
  p = dev + 5;
  if (strncmp (p, "xvd", 3) == 0)
    p += 3;
  else if ((p[0] == 's' || p[0] == 'h' || p[0] == 'v') && p[1] == 'd')
    p += 2;
  else
    return false;
  if (!islower ((unsigned char) *p))
    return false;
  while (islower ((unsigned char) *p))
    p++;
  while (isdigit ((unsigned char) *p))
    p++;
  return *p == '\0';
}

enum ferry_guest_naming
guest_naming_of (const char *spec)
{
  if (strncmp (spec, "UUID=", 5) == 0 ||
      strncmp (spec, "/dev/disk/by-uuid/", 18) == 0)
    return FERRY_GUEST_NAMING_UUID;
  if (strncmp (spec, "LABEL=", 6) == 0 ||
      strncmp (spec, "/dev/disk/by-label/", 19) == 0)
    return FERRY_GUEST_NAMING_LABEL;
  if (strncmp (spec, "PARTUUID=", 9) == 0 ||
      strncmp (spec, "/dev/disk/by-partuuid/", 22) == 0)
    return FERRY_GUEST_NAMING_PARTUUID;
  if (strncmp (spec, "PARTLABEL=", 10) == 0 ||
      strncmp (spec, "/dev/disk/by-partlabel/", 23) == 0)
    return FERRY_GUEST_NAMING_PARTLABEL;
  if (strncmp (spec, "/dev/disk/by-path/", 18) == 0 ||
      strncmp (spec, "/dev/disk/by-id/", 16) == 0)
    return FERRY_GUEST_NAMING_PATH;
  if (strncmp (spec, "/dev/mapper/", 12) == 0 ||
      strncmp (spec, "/dev/md", 7) == 0)
    return FERRY_GUEST_NAMING_LVM;
  if (guest_is_bus_bound_device (spec))
    return FERRY_GUEST_NAMING_DEVICE;
  if (strncmp (spec, "/dev/", 5) == 0 && strchr (spec + 5, '/'))
    return FERRY_GUEST_NAMING_LVM;          /* /dev/VG/LV */
  if (strncmp (spec, "/dev/", 5) == 0)
    return FERRY_GUEST_NAMING_DEVICE;
  return FERRY_GUEST_NAMING_OTHER;
}

const char *
ferry_guest_naming_name (enum ferry_guest_naming naming)
{
  switch (naming) {
  case FERRY_GUEST_NAMING_DEVICE: return "device";
  case FERRY_GUEST_NAMING_UUID: return "uuid";
  case FERRY_GUEST_NAMING_LABEL: return "label";
  case FERRY_GUEST_NAMING_PARTUUID: return "partuuid";
  case FERRY_GUEST_NAMING_PARTLABEL: return "partlabel";
  case FERRY_GUEST_NAMING_LVM: return "lvm";
  case FERRY_GUEST_NAMING_PATH: return "path";
  default: return "other";
  }
}

/* The end of the line that starts at P (at its '\n' or the NUL). */
static const char *
line_end (const char *p)
{
  const char *e = strchr (p, '\n');
  return e ? e : p + strlen (p);
}

char *
guest_rewrite_fstab (const char *text, guest_device_map_fn map, void *opaque,
                     size_t *changed)
{
  struct buf b = { 0 };
  const char *p = text;

  *changed = 0;
  while (*p) {
    const char *end = line_end (p), *s = p, *f;
    char *field, *stable = NULL;

    while (s < end && (*s == ' ' || *s == '\t'))
      s++;
    f = s;
    while (f < end && *f != ' ' && *f != '\t')
      f++;
    if (s < end && *s != '#' && f > s) {
      field = strndup (s, f - s);
      if (!field) {
        b.failed = true;
        break;
      }
      stable = map (field, opaque);
      free (field);
    }
    if (stable) {
      buf_add (&b, p, s - p);
      buf_add (&b, stable, strlen (stable));
      buf_add (&b, f, end - f);
      free (stable);
      (*changed)++;
    }
    else
      buf_add (&b, p, end - p);
    if (*end == '\n')
      buf_add (&b, "\n", 1);
    p = *end ? end + 1 : end;
  }
  return buf_finish (&b);
}

/* Is P (inside TEXT) at the start of a word? */
static bool
word_start (const char *text, const char *p)
{
  return p == text || isspace ((unsigned char) p[-1]) || p[-1] == '"' ||
         p[-1] == '\'';
}

/* The keys whose values are devices on a kernel command line. */
static const char *const cmdline_keys[] = { "root=", "resume=", "RESUME=",
                                            NULL };

/* If P starts a word with one of cmdline_keys, its length; else 0. */
static size_t
cmdline_key_at (const char *text, const char *p)
{
  size_t i, n;

  if (!word_start (text, p))
    return 0;
  for (i = 0; cmdline_keys[i]; i++) {
    n = strlen (cmdline_keys[i]);
    if (strncmp (p, cmdline_keys[i], n) == 0)
      return n;
  }
  return 0;
}

/* Length of the value starting at P: up to a blank or a quote. */
static size_t
value_len (const char *p)
{
  size_t n = 0;

  while (p[n] && !isspace ((unsigned char) p[n]) && p[n] != '"' &&
         p[n] != '\'')
    n++;
  return n;
}

char *
guest_rewrite_cmdline_devices (const char *text, guest_device_map_fn map,
                               void *opaque, size_t *changed)
{
  struct buf b = { 0 };
  const char *p = text, *copied = text;

  *changed = 0;
  while (*p) {
    size_t k = cmdline_key_at (text, p), n;
    char *value, *stable;

    if (!k) {
      p++;
      continue;
    }
    n = value_len (p + k);
    value = strndup (p + k, n);
    if (!value) {
      b.failed = true;
      break;
    }
    stable = n ? map (value, opaque) : NULL;
    free (value);
    if (stable) {
      buf_add (&b, copied, p + k - copied);
      buf_add (&b, stable, strlen (stable));
      free (stable);
      (*changed)++;
      copied = p + k + n;
    }
    p += k + n;
  }
  buf_add (&b, copied, strlen (copied));
  return buf_finish (&b);
}

int
guest_cmdline_devices (const char *text, string_vector *v)
{
  const char *p;

  for (p = text; *p; p++) {
    size_t k = cmdline_key_at (text, p), n;
    char *value;

    if (!k)
      continue;
    n = value_len (p + k);
    if (n == 0)
      continue;
    value = strndup (p + k, n);
    if (!value)
      return ferry_error (ENOMEM, "out of memory");
    /* Shell variables ($linux_root_device...) are not devices. */
    if (value[0] != '$' && string_vector_add_unique (v, value) == -1) {
      free (value);
      return -1;
    }
    free (value);
    p += k + n - 1;
  }
  return 0;
}

char *
guest_grub_default_enable_uuid (const char *text, size_t *changed)
{
  struct buf b = { 0 };
  const char *p = text;
  static const char comment[] =
    "# ferry: disks become virtio, so the kernel finds its root by UUID\n#";

  *changed = 0;
  while (*p) {
    const char *end = line_end (p), *s = p;

    while (s < end && (*s == ' ' || *s == '\t'))
      s++;
    if (strncmp (s, "GRUB_DISABLE_LINUX_UUID=", 24) == 0) {
      const char *v = s + 24;
      if (*v == '"' || *v == '\'')
        v++;
      if (strncmp (v, "true", 4) == 0) {
        buf_add (&b, comment, strlen (comment));
        (*changed)++;
      }
    }
    buf_add (&b, p, end - p);
    if (*end == '\n')
      buf_add (&b, "\n", 1);
    p = *end ? end + 1 : end;
  }
  return buf_finish (&b);
}

int
guest_parse_fstab (const char *text, struct ferry_guest_fstab_entry **entries,
                   size_t *n)
{
  const char *p = text;
  struct ferry_guest_fstab_entry *v = NULL, *nv;
  size_t len = 0;

  while (*p) {
    const char *end = line_end (p);
    char *line = strndup (p, end - p), *save = NULL, *f[4];
    int i;

    if (!line)
      goto nomem;
    for (i = 0; i < 4; i++)
      f[i] = strtok_r (i == 0 ? line : NULL, " \t", &save);
    if (f[0] && f[0][0] != '#' && f[1]) {
      nv = realloc (v, (len + 1) * sizeof *v);
      if (!nv) {
        free (line);
        goto nomem;
      }
      v = nv;
      v[len].spec = strdup (f[0]);
      v[len].mountpoint = strdup (f[1]);
      v[len].type = strdup (f[2] ? f[2] : "");
      v[len].options = strdup (f[3] ? f[3] : "defaults");
      v[len].naming = guest_naming_of (f[0]);
      len++;
      if (!v[len - 1].spec || !v[len - 1].mountpoint || !v[len - 1].type ||
          !v[len - 1].options) {
        free (line);
        goto nomem;
      }
    }
    free (line);
    p = *end ? end + 1 : end;
  }
  *entries = v;
  *n = len;
  return 0;

 nomem:
  while (len-- > 0) {
    free (v[len].spec);
    free (v[len].mountpoint);
    free (v[len].type);
    free (v[len].options);
  }
  free (v);
  return ferry_error (ENOMEM, "out of memory");
}

/* Is S a MAC address "xx:xx:xx:xx:xx:xx"? */
static bool
is_mac (const char *s, size_t n)
{
  size_t i;

  if (n != 17)
    return false;
  for (i = 0; i < 17; i++)
    if (i % 3 == 2 ? s[i] != ':' : !isxdigit ((unsigned char) s[i]))
      return false;
  return true;
}

/* Append every MAC address in TEXT, lower-cased, to MACS. */
static int
collect_macs (const char *text, string_vector *macs)
{
  const char *p;

  for (p = text; *p; p++) {
    char mac[18];
    size_t i;

    if ((p != text && (isxdigit ((unsigned char) p[-1]) || p[-1] == ':')) ||
        strnlen (p, 17) < 17 || !is_mac (p, 17) ||
        isxdigit ((unsigned char) p[17]) || p[17] == ':')
      continue;
    for (i = 0; i < 17; i++)
      mac[i] = tolower ((unsigned char) p[i]);
    mac[17] = '\0';
    if (string_vector_add_unique (macs, mac) == -1)
      return -1;
    p += 16;
  }
  return 0;
}

/* Add NAME (N bytes) to NAMES unless it is empty or the loopback. */
static int
add_ifname (string_vector *names, const char *name, size_t n)
{
  char *s;
  int r;

  if (n == 0 || (n == 2 && strncmp (name, "lo", 2) == 0) || n > 15)
    return 0;
  s = strndup (name, n);
  if (!s)
    return ferry_error (ENOMEM, "out of memory");
  r = string_vector_add_unique (names, s);
  free (s);
  return r;
}

/* Length of an interface name at P (letters, digits, . - _ :). */
static size_t
ifname_len (const char *p)
{
  size_t n = 0;

  while (isalnum ((unsigned char) p[n]) || p[n] == '.' || p[n] == '-' ||
         p[n] == '_')
    n++;
  return n;
}

int
guest_parse_netconf (const char *kind, const char *text, string_vector *names,
                     string_vector *macs)
{
  const char *p = text;
  int in_ethernets = -1;        /* netplan: indentation of "ethernets:" */
  int child_indent = -1;

  if (collect_macs (text, macs) == -1)
    return -1;
  while (*p) {
    const char *end = line_end (p), *s = p;
    int indent = 0;

    while (s < end && (*s == ' ' || *s == '\t')) {
      s++;
      indent++;
    }
    if (s == end || *s == '#')
      goto next;
    if (strcmp (kind, "ifupdown") == 0) {
      /* iface NAME ..., auto NAME..., allow-hotplug NAME... */
      static const char *const kw[] = { "iface ", "auto ", "allow-hotplug ",
                                        "allow-auto ", NULL };
      size_t i;
      for (i = 0; kw[i]; i++)
        if (strncmp (s, kw[i], strlen (kw[i])) == 0) {
          const char *q = s + strlen (kw[i]);
          while (q < end) {
            size_t n;
            while (q < end && (*q == ' ' || *q == '\t'))
              q++;
            n = ifname_len (q);
            if (n == 0)
              break;
            if (add_ifname (names, q, n) == -1)
              return -1;
            if (i == 0)
              break;                  /* iface NAME inet ...: one name */
            q += n;
          }
        }
    }
    else if (strcmp (kind, "netplan") == 0) {
      /* network: / ethernets: / NAME: (the keys one level below). */
      if (strncmp (s, "ethernets:", 10) == 0) {
        in_ethernets = indent;
        child_indent = -1;
      }
      else if (in_ethernets >= 0 && indent <= in_ethernets)
        in_ethernets = -1;
      else if (in_ethernets >= 0) {
        size_t n = ifname_len (s);
        if (child_indent < 0)
          child_indent = indent;
        if (indent == child_indent && n > 0 && s[n] == ':' &&
            add_ifname (names, s, n) == -1)
          return -1;
      }
      if (strncmp (s, "set-name:", 9) == 0) {
        const char *q = s + 9;
        while (*q == ' ' || *q == '"' || *q == '\'')
          q++;
        if (add_ifname (names, q, ifname_len (q)) == -1)
          return -1;
      }
    }
    else if (strcmp (kind, "ifcfg") == 0) {
      if (strncmp (s, "DEVICE=", 7) == 0 || strncmp (s, "NAME=", 5) == 0) {
        const char *q = strchr (s, '=') + 1;
        if (*q == '"' || *q == '\'')
          q++;
        if (strncmp (s, "DEVICE=", 7) == 0 &&
            add_ifname (names, q, ifname_len (q)) == -1)
          return -1;
      }
    }
    else if (strcmp (kind, "networkmanager") == 0) {
      if (strncmp (s, "interface-name=", 15) == 0 &&
          add_ifname (names, s + 15, ifname_len (s + 15)) == -1)
        return -1;
    }
    else if (strcmp (kind, "systemd-networkd") == 0) {
      if (strncmp (s, "Name=", 5) == 0) {
        const char *q = s + 5;
        while (q < end) {
          size_t n = ifname_len (q);
          if (n == 0)
            break;
          if (!memchr (q, '*', n) && add_ifname (names, q, n) == -1)
            return -1;
          q += n;
          while (q < end && *q == ' ')
            q++;
        }
      }
    }
    else if (strcmp (kind, "udev-rules") == 0) {
      const char *q = strstr (s, "NAME=\"");
      if (q && q < end && (q == s || q[-1] == ' ' || q[-1] == ',')) {
        q += 6;
        if (add_ifname (names, q, ifname_len (q)) == -1)
          return -1;
      }
    }
  next:
    p = *end ? end + 1 : end;
  }
  return 0;
}

/* NIC drivers of other hypervisors. */
static const char *const foreign_nic_drivers[] = {
  "vmxnet3", "vmxnet", "e1000e", "e1000", "pcnet32", "hv_netvsc",
  "xen-netfront", "xen_netfront", "tulip", NULL
};

/* If P starts one of foreign_nic_drivers (followed by a non-name byte),
 * its length. */
static size_t
foreign_driver_at (const char *p)
{
  size_t i, n;

  for (i = 0; foreign_nic_drivers[i]; i++) {
    n = strlen (foreign_nic_drivers[i]);
    if (strncmp (p, foreign_nic_drivers[i], n) == 0 &&
        !isalnum ((unsigned char) p[n]) && p[n] != '_' && p[n] != '-')
      return n;
  }
  return 0;
}

char *
guest_rewrite_driver_match (const char *kind, const char *text,
                            size_t *changed)
{
  struct buf b = { 0 };
  const char *p = text, *copied = text;
  const char *key = strcmp (kind, "netplan") == 0 ? "driver:" :
                    strcmp (kind, "udev-rules") == 0 ? "DRIVERS==\"" :
                    "Driver=";

  *changed = 0;
  while ((p = strstr (p, key))) {
    const char *v = p + strlen (key);
    size_t n;

    while (*v == ' ' || *v == '"' || *v == '\'')
      v++;
    n = foreign_driver_at (v);
    if (n) {
      buf_add (&b, copied, v - copied);
      buf_add (&b, "virtio_net", 10);
      copied = v + n;
      (*changed)++;
    }
    p = v;
  }
  buf_add (&b, copied, strlen (copied));
  return buf_finish (&b);
}

bool
guest_is_positional_ifname (const char *name)
{
  const char *p;

  /* eth0: the kernel's order, which follows the bus. */
  if (strncmp (name, "eth", 3) == 0) {
    for (p = name + 3; *p; p++)
      if (!isdigit ((unsigned char) *p))
        return false;
    return p > name + 3;
  }
  /* The predictable scheme: en + o(nboard) / s(lot) / p(ci) / x(MAC is
   * not positional, so not x). */
  if (strncmp (name, "en", 2) == 0 &&
      (name[2] == 'o' || name[2] == 's' || name[2] == 'p') &&
      isdigit ((unsigned char) name[3]))
    return true;
  return false;
}
