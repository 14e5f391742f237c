/* Digests of byte streams: SHA-1, SHA-256 and SHA-512, for OVF manifests.
 *
 * Nettle does the work: it is GnuTLS's own crypto library, so it is in
 * every ferry process already (libnbd links GnuTLS), it needs no global
 * initialisation, and its fat build uses the CPU's SHA instructions.
 */
#ifndef FERRY_HASH_H
#define FERRY_HASH_H

#include <stdbool.h>
#include <stddef.h>

#include <nettle/sha1.h>
#include <nettle/sha2.h>

enum hash_algorithm { HASH_SHA1, HASH_SHA256, HASH_SHA512 };

/* Room for the longest digest in hex, with its NUL. */
#define HASH_HEX_MAX (2 * SHA512_DIGEST_SIZE + 1)

struct hash_ctx {
  enum hash_algorithm algorithm;
  union {
    struct sha1_ctx sha1;
    struct sha256_ctx sha256;
    struct sha512_ctx sha512;
  } u;
};

/* The algorithm called NAME ("SHA1", "sha256", ...); false when unknown. */
bool hash_algorithm_by_name (const char *name, enum hash_algorithm *alg);
const char *hash_algorithm_name (enum hash_algorithm alg);

void hash_init (struct hash_ctx *ctx, enum hash_algorithm alg);
void hash_update (struct hash_ctx *ctx, const void *data, size_t len);
/* Finish: the digest in lower-case hex into OUT (HASH_HEX_MAX bytes). */
void hash_final_hex (struct hash_ctx *ctx, char *out);

#endif /* FERRY_HASH_H */
