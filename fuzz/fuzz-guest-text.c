/* libFuzzer harness for what lib/guest parses of a guest's own files and
 * output: fstab, kernel command lines (grub.cfg, menu.lst, extlinux.conf,
 * /etc/default/grub), network files of every kind, and the serial console
 * of a booting guest.  The first byte picks what the rest is; rewrites
 * must keep every line they do not change, so a rewrite with a map that
 * maps nothing must give back the input. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "guest/internal.h"

static char *
map_sd (const char *dev, void *opaque)
{
  return strncmp (dev, "/dev/sd", 7) == 0 ? strdup ("UUID=0123-4567") : NULL;
}

static char *
map_none (const char *dev, void *opaque)
{
  return NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const char *const kinds[] = { "ifupdown", "netplan", "ifcfg",
                                       "networkmanager", "systemd-networkd",
                                       "udev-rules" };
  string_vector a = empty_vector, b = empty_vector;
  char *text, *out;
  size_t changed, i;

  if (size < 1)
    return 0;
  text = strndup ((const char *) data + 1, size - 1);
  if (!text)
    return 0;
  switch (data[0] % 5) {
  case 0: {
    struct ferry_guest_fstab_entry *e = NULL;
    size_t n = 0;
    if (guest_parse_fstab (text, &e, &n) == 0) {
      for (i = 0; i < n; i++) {
        (void) ferry_guest_naming_name (e[i].naming);
        free (e[i].spec);
        free (e[i].mountpoint);
        free (e[i].type);
        free (e[i].options);
      }
      free (e);
    }
    out = guest_rewrite_fstab (text, map_none, NULL, &changed);
    if (out && (changed || strcmp (out, text) != 0))
      abort ();
    free (out);
    free (guest_rewrite_fstab (text, map_sd, NULL, &changed));
    break;
  }
  case 1:
    out = guest_rewrite_cmdline_devices (text, map_none, NULL, &changed);
    if (out && (changed || strcmp (out, text) != 0))
      abort ();
    free (out);
    free (guest_rewrite_cmdline_devices (text, map_sd, NULL, &changed));
    (void) guest_cmdline_devices (text, &a);
    free (guest_grub_default_enable_uuid (text, &changed));
    break;
  case 2:
    for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
      (void) guest_parse_netconf (kinds[i], text, &a, &b);
      free (guest_rewrite_driver_match (kinds[i], text, &changed));
    }
    for (i = 0; i < a.len; i++)
      (void) guest_is_positional_ifname (a.ptr[i]);
    break;
  case 3:
    (void) guest_is_bus_bound_device (text);
    (void) guest_naming_of (text);
    break;
  default: {
    struct guest_console c = { 0 };
    regex_t re;
    const char *reason = NULL;
    char *matched = NULL, **lines;
    size_t off;
    if (regcomp (&re, "[A-Za-z0-9_.-]+ login:", REG_EXTENDED | REG_NOSUB) != 0)
      abort ();
    /* In pieces, as reads from a pipe come; then a quiet console. */
    for (off = 0; off + 1 < size; off += 7) {
      size_t n = size - 1 - off < 7 ? size - 1 - off : 7;
      if (guest_console_feed (&c, (const char *) data + 1 + off, n, &re,
                              NULL, NULL, &reason, &matched) != 0)
        break;
    }
    if (!matched) {
      (void) guest_console_last_line (&c);
      (void) guest_console_idle (&c, &re, NULL, NULL, &reason, &matched);
    }
    free (matched);
    lines = guest_console_finish (&c);
    guest_free_strings (lines);
    regfree (&re);
    break;
  }
  }
  string_vector_free (&a);
  string_vector_free (&b);
  free (text);
  return 0;
}
