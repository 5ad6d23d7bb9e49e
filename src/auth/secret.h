/* auth/secret.h: how sealguard keeps and checks secrets (DESIGN §5):
 *  - passwords chosen by people: scrypt (RFC 7914, OpenSSL EVP_KDF "SCRYPT"), per-user random
 *    salt, stored as a PHC string "$scrypt$ln=14,r=8,p=1$<salt>$<hash>" (I3, G4);
 *  - generated high-entropy secrets (client secrets, authorization codes, refresh tokens):
 *    HMAC-SHA-256 under a server-side pepper, so a stolen database is useless and a check costs
 *    one HMAC, not a slow hash (I5, I9);
 *  - PKCE S256 (RFC 7636, I1/I5) and RFC 8705 certificate thumbprints (cnf.x5t#S256).
 * Every comparison is constant time (CRYPTO_memcmp); intermediate secrets are wiped. */
#ifndef SG_AUTH_SECRET_H
#define SG_AUTH_SECRET_H

#include "base/err.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- scrypt ---------------------------------------------------------------------------- */

/* RFC 7914 §2 scrypt(P, S, N, r, p, dkLen) through OpenSSL's EVP_KDF; N must be a power of two
 * > 1. Memory use is about 128 * r * N bytes (+ 128 * r * p). out receives outlen bytes. */
sg_err sg_scrypt(const void *pass, size_t passlen, const void *salt, size_t saltlen, uint64_t N,
                 uint32_t r, uint32_t p, unsigned char *out, size_t outlen);

/* ---- passwords ------------------------------------------------------------------------- */

/* scrypt cost: N = 2^ln. The default ln=14, r=8, p=1 uses 16 MiB and costs ~43 ms on the
 * project's 2-core machines (ln=15: ~99 ms, 32 MiB), keeping a login under 50 ms of CPU. */
struct sg_password_params {
	unsigned ln; /* log2(N), 10..20 */
	unsigned r;  /* block size, 1..32 */
	unsigned p;  /* parallelism, 1..16 */
};
#define SG_PASSWORD_LN_DEFAULT 14
#define SG_PASSWORD_SALT_LEN   16
#define SG_PASSWORD_HASH_LEN   32
#define SG_PASSWORD_PHC_MAX    128  /* buffer size that holds any string sg_password_hash makes */
#define SG_PASSWORD_MAX_LEN    1024 /* longer passwords are refused (bounded work per attempt) */

/* The defaults above. */
struct sg_password_params sg_password_params_default(void);

/* Hashes password (NUL-terminated, 1..SG_PASSWORD_MAX_LEN bytes) with a fresh random salt
 * under params (NULL: the defaults) into out (outlen ≥ SG_PASSWORD_PHC_MAX):
 * "$scrypt$ln=14,r=8,p=1$<salt>$<hash>", salt and hash in the PHC string format's base64
 * (standard alphabet, no padding). */
sg_err sg_password_hash(const char *password, const struct sg_password_params *params, char *out,
                        size_t outlen);
/* SG_OK when password matches phc; SG_ERR_DENIED when it does not; SG_ERR_INVALID when phc is
 * malformed or its parameters are out of the ranges above (never a match). The hash
 * comparison is constant time. */
sg_err sg_password_verify(const char *password, const char *phc);
/* True when phc was made with parameters other than params (NULL: the defaults), or is
 * malformed: the caller rehashes after the next successful login. */
bool sg_password_needs_rehash(const char *phc, const struct sg_password_params *params);

/* ---- generated secrets ----------------------------------------------------------------- */

#define SG_SECRET_BYTES   32 /* entropy of a generated secret (256 bits) */
#define SG_SECRET_STR_LEN 44 /* base64url of 32 bytes + NUL */
#define SG_SECRET_DIGEST  32 /* HMAC-SHA-256 output */
#define SG_PEPPER_MIN     16 /* shortest pepper accepted */

/* Writes base64url(32 random bytes) (43 characters + NUL) into out (outlen ≥ 44). */
sg_err sg_secret_generate(char *out, size_t outlen);
/* out = HMAC-SHA-256(pepper, secret). The pepper (≥ SG_PEPPER_MIN bytes) is a server key kept
 * out of the database. The digest is what gets stored. */
sg_err sg_secret_digest(const unsigned char *pepper, size_t pepperlen, const char *secret,
                        unsigned char out[SG_SECRET_DIGEST]);
/* True when HMAC(pepper, secret) equals the stored digest (constant-time comparison). */
bool sg_secret_check(const unsigned char *pepper, size_t pepperlen, const char *secret,
                     const unsigned char stored[SG_SECRET_DIGEST]);
/* Constant-time equality of two buffers of n bytes. */
bool sg_secret_equal(const void *a, const void *b, size_t n);

/* ---- PKCE (RFC 7636) ------------------------------------------------------------------- */

#define SG_PKCE_VERIFIER_MIN  43
#define SG_PKCE_VERIFIER_MAX  128
#define SG_PKCE_CHALLENGE_LEN 43 /* base64url of a SHA-256 digest */

/* RFC 7636 §4.1: 43..128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~". */
bool sg_pkce_verifier_valid(const char *verifier);
/* RFC 7636 §4.2 S256: out = BASE64URL(SHA256(ASCII(verifier))), 43 chars + NUL (outlen ≥ 44). */
sg_err sg_pkce_s256_challenge(const char *verifier, char *out, size_t outlen);
/* RFC 7636 §4.6 with method S256 only ("plain" is not supported, I1): SG_OK when the verifier
 * is well-formed and its S256 equals challenge (constant time); SG_ERR_INVALID for a malformed
 * verifier; SG_ERR_DENIED for a mismatch. */
sg_err sg_pkce_s256_check(const char *verifier, const char *challenge);
/* For clients (SIM-C): a fresh verifier (base64url of 32 random bytes, 43 chars) and its S256
 * challenge; both buffers ≥ 44 bytes. */
sg_err sg_pkce_generate(char *verifier, size_t vlen, char *challenge, size_t clen);

/* ---- RFC 8705 certificate thumbprints -------------------------------------------------- */

#define SG_X5T_S256_LEN 44 /* 43 chars + NUL */

/* RFC 8705 §3.1 "x5t#S256": base64url of the SHA-256 of the certificate's DER, given that
 * digest (e.g. from X509_digest). out holds SG_X5T_S256_LEN bytes. */
void sg_secret_x5t_s256(const unsigned char digest[32], char out[SG_X5T_S256_LEN]);
/* The same from the DER encoding itself. */
sg_err sg_secret_x5t_s256_der(const unsigned char *der, size_t derlen, char out[SG_X5T_S256_LEN]);

#endif
