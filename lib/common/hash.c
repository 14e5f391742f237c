/* Digests for OVF manifests; see hash.h. */
#include <strings.h>

#include "hash.h"

bool
hash_algorithm_by_name (const char *name, enum hash_algorithm *alg)
{
  if (strcasecmp (name, "SHA1") == 0)
    *alg = HASH_SHA1;
  else if (strcasecmp (name, "SHA256") == 0)
    *alg = HASH_SHA256;
  else if (strcasecmp (name, "SHA512") == 0)
    *alg = HASH_SHA512;
  else
    return false;
  return true;
}

const char *
hash_algorithm_name (enum hash_algorithm alg)
{
  switch (alg) {
  case HASH_SHA1: return "SHA1";
  case HASH_SHA256: return "SHA256";
  case HASH_SHA512: return "SHA512";
  }
  return "?";
}

void
hash_init (struct hash_ctx *ctx, enum hash_algorithm alg)
{
  ctx->algorithm = alg;
  switch (alg) {
  case HASH_SHA1: sha1_init (&ctx->u.sha1); break;
  case HASH_SHA256: sha256_init (&ctx->u.sha256); break;
  case HASH_SHA512: sha512_init (&ctx->u.sha512); break;
  }
}

void
hash_update (struct hash_ctx *ctx, const void *data, size_t len)
{
  switch (ctx->algorithm) {
  case HASH_SHA1: sha1_update (&ctx->u.sha1, len, data); break;
  case HASH_SHA256: sha256_update (&ctx->u.sha256, len, data); break;
  case HASH_SHA512: sha512_update (&ctx->u.sha512, len, data); break;
  }
}

void
hash_final_hex (struct hash_ctx *ctx, char *out)
{
  static const char digits[] = "0123456789abcdef";
  unsigned char d[SHA512_DIGEST_SIZE];
  size_t n = 0, i;

  switch (ctx->algorithm) {
  case HASH_SHA1:
    n = SHA1_DIGEST_SIZE;
    sha1_digest (&ctx->u.sha1, n, d);
    break;
  case HASH_SHA256:
    n = SHA256_DIGEST_SIZE;
    sha256_digest (&ctx->u.sha256, n, d);
    break;
  case HASH_SHA512:
    n = SHA512_DIGEST_SIZE;
    sha512_digest (&ctx->u.sha512, n, d);
    break;
  }
  for (i = 0; i < n; i++) {
    out[2 * i] = digits[d[i] >> 4];
    out[2 * i + 1] = digits[d[i] & 15];
  }
  out[2 * n] = '\0';
}
