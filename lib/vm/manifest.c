/* OVF manifests (.mf): one line per file of the package,
 *
 *   SHA256(disk1.vmdk)= 4a218c15...
 *
 * (ovftool writes "SHA1(name)= hex", VirtualBox "SHA256 (name) = hex";
 * both are read), and checking a file or an archive member against one.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/hash.h"
#include "../common/stop.h"
#include "../common/util.h"

/* Bytes read per call while hashing. */
#define HASH_CHUNK (1u << 20)

/* Parse one manifest line [P, END), numbered LINENO, into VM. */
static int
parse_line (struct ferry_vm *vm, const char *name, unsigned lineno,
            const char *p, const char *end)
{
  const char *alg_start, *alg_end, *name_start, *name_end, *hex;
  struct ferry_vm_manifest_entry *e;
  char *file;
  enum hash_algorithm alg;
  char algname[16];
  size_t hexlen, i, want;

  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
    end--;
  if (p == end)
    return 0;                         /* a blank line */

  alg_start = p;
  while (p < end && isalnum ((unsigned char) *p))
    p++;
  alg_end = p;
  while (p < end && *p == ' ')
    p++;
  if (p == end || *p != '(' || alg_end == alg_start ||
      (size_t) (alg_end - alg_start) >= sizeof algname)
    return ferry_error (EINVAL, "%s: line %u: expected ALGORITHM(FILE)= "
                        "DIGEST", name, lineno);
  memcpy (algname, alg_start, alg_end - alg_start);
  algname[alg_end - alg_start] = '\0';
  if (!hash_algorithm_by_name (algname, &alg))
    return ferry_error (ENOTSUP, "%s: line %u: unknown digest algorithm "
                        "'%s' (ferry checks SHA1, SHA256 and SHA512)",
                        name, lineno, algname);

  /* The file name runs to the last ")" before the "=". */
  name_start = p + 1;
  hex = memchr (name_start, '=', end - name_start);
  while (hex && memchr (hex + 1, '=', end - hex - 1))
    hex = memchr (hex + 1, '=', end - hex - 1);
  if (hex == NULL)
    return ferry_error (EINVAL, "%s: line %u: no '=' before the digest",
                        name, lineno);
  name_end = hex;
  while (name_end > name_start && name_end[-1] == ' ')
    name_end--;
  if (name_end == name_start || name_end[-1] != ')' ||
      name_end - 1 == name_start)
    return ferry_error (EINVAL, "%s: line %u: expected ALGORITHM(FILE)= "
                        "DIGEST", name, lineno);
  name_end--;

  hex++;
  while (hex < end && *hex == ' ')
    hex++;
  hexlen = end - hex;
  want = alg == HASH_SHA1 ? 40 : alg == HASH_SHA256 ? 64 : 128;
  if (hexlen != want)
    return ferry_error (EINVAL, "%s: line %u: a %s digest has %zu hex "
                        "digits, not %zu", name, lineno, algname, want,
                        hexlen);
  for (i = 0; i < hexlen; i++)
    if (!isxdigit ((unsigned char) hex[i]))
      return ferry_error (EINVAL, "%s: line %u: the digest is not hex",
                          name, lineno);

  file = strndup (name_start, name_end - name_start);
  if (file == NULL)
    return ferry_error (ENOMEM, "out of memory");
  /* The files of the package, named relative to the manifest. */
  if (file[0] == '/' || vm_name_has_dotdot (file)) {
    ferry_error (EPERM, "%s: line %u: file '%s' leaves the package's folder",
                 name, lineno, file);
    free (file);
    return -1;
  }

  e = vm_add_manifest_entry (vm);
  if (e == NULL) {
    free (file);
    ferry_error_prefix ("%s", name);
    return -1;
  }
  e->name = file;
  e->algorithm = strdup (hash_algorithm_name (alg));
  e->digest = strndup (hex, hexlen);
  if (e->name == NULL || e->algorithm == NULL || e->digest == NULL)
    return ferry_error (ENOMEM, "out of memory");
  for (i = 0; i < hexlen; i++)
    e->digest[i] = tolower ((unsigned char) e->digest[i]);
  return 0;
}

int
vm_parse_manifest (struct ferry_vm *vm, const char *name, const char *text,
                   size_t len)
{
  const char *p = text, *end = text + len;
  unsigned lineno = 0;

  if (memchr (text, '\0', len))
    return ferry_error (EINVAL, "%s: not a manifest (it holds NUL bytes)",
                        name);
  while (p < end) {
    const char *nl = memchr (p, '\n', end - p);
    const char *eol = nl ? nl : end;

    lineno++;
    if (parse_line (vm, name, lineno, p, eol) == -1)
      return -1;
    p = nl ? nl + 1 : end;
  }
  if (vm->nr_manifest_entries == 0)
    return ferry_error (EINVAL, "%s: the manifest lists no file", name);
  return 0;
}

int
ferry_vm_verify_digest (const struct ferry_vm_manifest_entry *entry,
                        const char *path, uint64_t offset, uint64_t length,
                        char **got, void (*progress) (uint64_t, void *),
                        void *opaque)
{
  /* O_NONBLOCK: a FIFO is refused below instead of waited on. */
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  CLEANUP_FREE char *buf = NULL;
  char hex[HASH_HEX_MAX];
  struct stat st;
  enum hash_algorithm alg;
  struct hash_ctx ctx;
  uint64_t done = 0;

  *got = NULL;
  if (!hash_algorithm_by_name (entry->algorithm, &alg))
    return ferry_error (ENOTSUP, "%s: unknown digest algorithm '%s'",
                        entry->name, entry->algorithm);
  if (fd == -1)
    return ferry_error_errno (errno, "%s", path);
  if (fstat (fd, &st) == -1)
    return ferry_error_errno (errno, "%s: stat", path);
  if (!S_ISREG (st.st_mode))
    return ferry_error (EINVAL, "%s: not a regular file", path);
  if (length == UINT64_MAX)
    length = st.st_size;
  buf = malloc (HASH_CHUNK);
  if (buf == NULL)
    return ferry_error (ENOMEM, "out of memory");
  /* Tell the kernel the whole range is wanted, once, in order. */
  (void) posix_fadvise (fd, offset, length, POSIX_FADV_SEQUENTIAL);

  hash_init (&ctx, alg);
  while (done < length) {
    size_t n = MIN (length - done, HASH_CHUNK);
    ssize_t r;

    if (stop_requested ())      /* gigabytes of OVA take a while */
      return ferry_error (EINTR, "%s: checking the digest: interrupted",
                          entry->name);
    r = pread (fd, buf, n, offset + done);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return ferry_error_errno (errno, "%s: read at offset %" PRIu64, path,
                                offset + done);
    if (r == 0)
      return ferry_error (EIO, "%s: ends at offset %" PRIu64 ", inside %s",
                          path, offset + done, entry->name);
    hash_update (&ctx, buf, r);
    done += r;
    if (progress)
      progress (done, opaque);
  }
  hash_final_hex (&ctx, hex);
  if (strcmp (hex, entry->digest) == 0)
    return 1;
  *got = strdup (hex);
  if (*got == NULL)
    return ferry_error (ENOMEM, "out of memory");
  return 0;
}
