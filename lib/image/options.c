/* The options of ferry_image_create ("-o key=val,key=val"): parsing them
 * as qemu-img does (",," for a comma inside a value), and the typed
 * lookups drivers use, each marking its key used so that an unknown key
 * can be refused. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "../common/util.h"

/* Split "key=val,key=val" into OPTS.  ",," stands for a comma inside a
 * value, as in qemu-img. */
int
parse_options (const char *s, struct option_list *opts)
{
  while (s && *s) {
    struct option_pair pair = { 0 };
    char *buf = malloc (strlen (s) + 1), *out = buf;
    char *eq;

    if (buf == NULL)
      return ferry_error (ENOMEM, "out of memory");
    while (*s) {
      if (*s == ',') {
        if (s[1] == ',') {
          *out++ = ',';
          s += 2;
          continue;
        }
        s++;
        break;
      }
      *out++ = *s++;
    }
    *out = '\0';
    if (buf[0] == '\0') {
      free (buf);
      continue;
    }
    eq = strchr (buf, '=');
    if (eq == NULL || eq == buf) {
      ferry_error (EINVAL, "option '%s' is not of the form key=value", buf);
      free (buf);
      return -1;
    }
    *eq = '\0';
    pair.key = buf;
    pair.value = strdup (eq + 1);
    if (pair.value == NULL || option_list_append (opts, pair) == -1) {
      free (pair.value);
      free (buf);
      return ferry_error (ENOMEM, "out of memory");
    }
  }
  return 0;
}

void
free_options (struct option_list *opts)
{
  size_t i;

  for (i = 0; i < opts->len; i++) {
    free (opts->ptr[i].key);
    free (opts->ptr[i].value);
  }
  option_list_reset (opts);
}

const char *
options_get (struct option_list *opts, const char *key)
{
  const char *ret = NULL;
  size_t i;

  /* The last one given wins, as on a command line. */
  for (i = 0; i < opts->len; i++) {
    if (strcmp (opts->ptr[i].key, key) == 0) {
      opts->ptr[i].used = true;
      ret = opts->ptr[i].value;
    }
  }
  return ret;
}

/* Parse a size with an optional k/M/G/T/P/E suffix (powers of 1024). */
static int
parse_size (const char *s, uint64_t *value)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  if (*s == '\0' || *s == '-')
    return -1;
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno || end == s)
    return -1;
  switch (*end) {
  case '\0': break;
  case 'b': case 'B': end++; break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  case 'p': case 'P': shift = 50; end++; break;
  case 'e': case 'E': shift = 60; end++; break;
  default: return -1;
  }
  if (*end != '\0')
    return -1;
  if (shift && v > (UINT64_MAX >> shift))
    return -1;
  *value = (uint64_t) v << shift;
  return 0;
}

int
ferry_parse_size (const char *s, uint64_t *value)
{
  if (parse_size (s, value) == -1)
    return ferry_error (EINVAL, "'%s' is not a size (a number with an "
                        "optional k, M, G or T suffix)", s);
  return 0;
}

int
options_get_size (struct option_list *opts, const char *path, const char *key,
                  uint64_t *value)
{
  const char *s = options_get (opts, key);

  if (s == NULL)
    return 0;
  if (parse_size (s, value) == -1)
    return ferry_error (EINVAL, "%s: %s=%s: not a size (a number with an "
                        "optional k, M, G or T suffix)", path, key, s);
  return 1;
}

/* SIZE as an option would give it: "512", "4k", "2M", "1G". */
static const char *
size_text (uint64_t size, char *buf, size_t len)
{
  static const char units[] = "kMGTPE";
  int u = -1;

  while (size >= 1024 && size % 1024 == 0 && u < 5) {
    size /= 1024;
    u++;
  }
  if (u < 0)
    snprintf (buf, len, "%" PRIu64, size);
  else
    snprintf (buf, len, "%" PRIu64 "%c", size, units[u]);
  return buf;
}

int
options_get_pow2 (struct option_list *opts, const char *path, const char *key,
                  uint64_t min, uint64_t max, uint64_t *value)
{
  const char *s = options_get (opts, key);
  char lo[24], hi[24];
  uint64_t v;

  if (s == NULL)
    return 0;
  if (parse_size (s, &v) == -1 || !is_power_of_2 (v) || v < min || v > max)
    return ferry_error (EINVAL, "%s: %s=%s: expected a power of 2 from %s "
                        "to %s", path, key, s, size_text (min, lo, sizeof lo),
                        size_text (max, hi, sizeof hi));
  *value = v;
  return 1;
}

int
options_get_bool (struct option_list *opts, const char *path, const char *key,
                  bool *value)
{
  const char *s = options_get (opts, key);

  if (s == NULL)
    return 0;
  if (!strcmp (s, "on") || !strcmp (s, "true") || !strcmp (s, "yes") ||
      !strcmp (s, "1"))
    *value = true;
  else if (!strcmp (s, "off") || !strcmp (s, "false") || !strcmp (s, "no") ||
           !strcmp (s, "0"))
    *value = false;
  else
    return ferry_error (EINVAL, "%s: %s=%s: expected on or off", path, key,
                        s);
  return 1;
}
