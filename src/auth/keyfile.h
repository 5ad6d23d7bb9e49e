/* auth/keyfile.h: the server's own long-term secrets, kept outside the database, and the
 * AES-256-GCM sealing of secrets at rest with them.
 *   STATE/secrets/pepper      HMAC key for digests of client secrets, codes, refresh tokens
 *   STATE/secrets/master.key  key-encryption key for signing keys and key material at rest
 * Each is 32 random bytes in a 0600 file (directory 0700), or, when the environment variable
 * SEALGUARD_<NAME>_KEY holds 64 hex digits (e.g. SEALGUARD_MASTER_KEY), that value. */
#ifndef SG_AUTH_KEYFILE_H
#define SG_AUTH_KEYFILE_H

#include "base/err.h"

#include <stddef.h>

#define SG_KEY_LEN 32

/* Loads secret `name` ("pepper" or "master") for state_dir into out. When absent and create is
 * set, generates it (atomically; a concurrent creator's file wins). Refuses a file that is
 * group/world accessible or not exactly 32 bytes. Wipe out with OPENSSL_cleanse after use. */
sg_err sg_keyfile_load(const char *state_dir, const char *name, int create,
                       unsigned char out[SG_KEY_LEN], char *err, size_t errlen);

/* Sealed size for a plaintext of n bytes: 12-byte nonce + ciphertext + 16-byte tag. */
#define SG_SEALED_LEN(n) ((n) + 12 + 16)

/* AES-256-GCM with a fresh random nonce; aad binds the ciphertext to its place (e.g. the record
 * id and version), so a sealed blob moved to another record does not open. out must hold
 * SG_SEALED_LEN(n) bytes. */
sg_err sg_seal(const unsigned char key[SG_KEY_LEN], const void *aad, size_t aadlen,
               const void *plain, size_t n, unsigned char *out);
/* Opens what sg_seal produced; SG_ERR_DENIED when the tag, key or aad do not match. out must
 * hold sealed_len - 28 bytes; *outlen is set to that. */
sg_err sg_unseal(const unsigned char key[SG_KEY_LEN], const void *aad, size_t aadlen,
                 const unsigned char *sealed, size_t sealed_len, unsigned char *out,
                 size_t *outlen);

#endif
