/* auth/jws.h: ES256 JSON Web Tokens (RFC 7515 compact JWS carrying RFC 7519 claims): P-256
 * signing keys, key sets (RFC 7517 JWKS), issue, strict verification (RFC 8725 BCP), and the
 * bounded, sharded cache of verified tokens that keeps a resource server's hot path to one hash
 * lookup (TS 33.434 §5.2 / Annex A; REQUIREMENTS I7, I8, I10). Signing and verifying use OpenSSL
 * directly (one EVP call each); JSON is jansson. No HTTP here. */
#ifndef SG_AUTH_JWS_H
#define SG_AUTH_JWS_H

#include "base/err.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "typ" header values. RFC 9068 §2.1: access tokens carry "at+jwt", so that an ID token (typ
 * "JWT", OIDC Core §2) can never be replayed as an access token (RFC 8725 §3.11): resource
 * servers set sg_jws_policy.typ = SG_JWS_TYP_AT. */
#define SG_JWS_TYP_JWT "JWT"
#define SG_JWS_TYP_AT  "at+jwt"

#define SG_JWS_KID_MAX    64   /* longest kid accepted (bytes) */
#define SG_JWS_MAX_TOKEN  8192 /* default sg_jws_policy.max_len */
#define SG_JWS_MAX_LEEWAY 30   /* I7: clock-skew leeway ≤ 30 s */

/* ---- signing keys ---------------------------------------------------------------------- */

/* A P-256 key pair and its kid. Immutable once made; safe to share between threads. */
struct sg_jws_key;

/* Generates a fresh P-256 key with a random kid (base64url of 12 random bytes).
 * *out is owned by the caller (sg_jws_key_free). */
sg_err sg_jws_key_generate(struct sg_jws_key **out);
/* Loads a private key from PEM (PKCS#8 or SEC1, unencrypted: the caller decrypts the stored
 * copy) under the given kid. Anything but an EC P-256 key is refused (RFC 7518 §3.4).
 * *out is owned by the caller. */
sg_err sg_jws_key_from_pem(const char *pem, size_t pemlen, const char *kid, struct sg_jws_key **out,
                           char *err, size_t errlen);
/* Exports the private key as PKCS#8 PEM. *pem (NUL-terminated, *pemlen bytes) is owned by the
 * caller, who encrypts it for storage and releases it with sg_jws_secret_free (wipes it). */
sg_err sg_jws_key_private_pem(const struct sg_jws_key *key, char **pem, size_t *pemlen);
/* Public JWK (RFC 7517 §4, RFC 7518 §6.2.1): kty, crv, x, y, kid, use "sig", alg "ES256".
 * Never contains "d". Returns a new reference (json_decref) or NULL on allocation failure. */
json_t *sg_jws_key_public_jwk(const struct sg_jws_key *key);
/* The key's kid (owned by the key). */
const char *sg_jws_key_kid(const struct sg_jws_key *key);
void sg_jws_key_free(struct sg_jws_key *key);
/* Wipes (OPENSSL_cleanse) and frees a secret string returned by this module. NULL is fine. */
void sg_jws_secret_free(char *s, size_t len);

/* ---- issuing --------------------------------------------------------------------------- */

/* Signs claims (a JSON object, not modified) as a compact JWS with header
 * {"alg":"ES256","typ":typ,"kid":kid}; typ NULL means "JWT". The signature is the 64-byte
 * r||s of RFC 7518 §3.4. *token (NUL-terminated) is owned by the caller (free()). */
sg_err sg_jws_sign_typ(const struct sg_jws_key *key, const char *typ, const json_t *claims,
                       char **token);
/* sg_jws_sign_typ with typ "JWT" (ID tokens, logout tokens, anything but access tokens). */
sg_err sg_jws_sign(const struct sg_jws_key *key, const json_t *claims, char **token);

/* ---- key sets (RFC 7517 §5) ------------------------------------------------------------ */

/* Public keys by kid. Thread-safe: readers (verification) take a shared lock only long enough
 * to find and reference a key; writers (JWKS refresh, rotation) an exclusive one. */
struct sg_jws_keyset;

/* Returns NULL on allocation failure. Owned by the caller (sg_jws_keyset_free). */
struct sg_jws_keyset *sg_jws_keyset_new(void);
void sg_jws_keyset_free(struct sg_jws_keyset *ks);
/* Adds the public half of key. SG_ERR_EXISTS if its kid is already present. */
sg_err sg_jws_keyset_add(struct sg_jws_keyset *ks, const struct sg_jws_key *key);
/* Adds one public JWK. Only kty "EC", crv "P-256", with x and y of 32 bytes, a kid, "use" absent
 * or "sig" and "alg" absent or "ES256" are accepted (SG_ERR_INVALID otherwise, with a reason in
 * err); a private "d" member is ignored, never kept. SG_ERR_EXISTS for a duplicate kid. */
sg_err sg_jws_keyset_add_jwk(struct sg_jws_keyset *ks, const json_t *jwk, char *err, size_t errlen);
/* Removes a key. SG_ERR_NOTFOUND if absent. Bumps the key set's generation, so tokens that a
 * cache verified with that key are no longer served from it. */
sg_err sg_jws_keyset_remove(struct sg_jws_keyset *ks, const char *kid);
bool sg_jws_keyset_has(const struct sg_jws_keyset *ks, const char *kid);
size_t sg_jws_keyset_count(const struct sg_jws_keyset *ks);
/* The key set's generation: incremented by every removal (see sg_jws_cache). */
uint64_t sg_jws_keyset_generation(const struct sg_jws_keyset *ks);
/* RFC 7517 §5 document {"keys":[...]} of public JWKs. New reference, or NULL (no memory). */
json_t *sg_jws_keyset_to_jwks(const struct sg_jws_keyset *ks);
/* Parses a JWKS document (e.g. fetched from the SIM-S jwks_uri) into a new key set, keeping the
 * usable EC P-256 signing keys and silently skipping every other key (RSA, OKP, other curves,
 * "use":"enc", other algs, duplicate kids). A document that is not {"keys":[...]} is
 * SG_ERR_INVALID. *out is owned by the caller. */
sg_err sg_jws_keyset_parse(const char *json, size_t len, struct sg_jws_keyset **out, char *err,
                           size_t errlen);

/* ---- verification ---------------------------------------------------------------------- */

/* Verification outcome. Every value except OK, INSUFFICIENT_SCOPE and INTERNAL maps to the
 * RFC 6750 §3.1 error "invalid_token" (401); INSUFFICIENT_SCOPE to "insufficient_scope" (403);
 * INTERNAL (out of memory, library failure, bad policy) to a 500. */
typedef enum sg_jws_status {
	SG_JWS_OK = 0,
	SG_JWS_MALFORMED,          /* not three base64url segments of JSON objects, too long,
	                              duplicate members, a required claim missing or mistyped */
	SG_JWS_BAD_ALG,            /* alg missing or other than ES256 (none, HS*, RS*, PS*, ...) */
	SG_JWS_BAD_HEADER,         /* crit, jku, jwk, x5u, x5c, x5t: refused (RFC 8725 §3.10) */
	SG_JWS_WRONG_TYPE,         /* typ differs from sg_jws_policy.typ (RFC 8725 §3.11) */
	SG_JWS_UNKNOWN_KID,        /* kid missing or not in the key set */
	SG_JWS_BAD_SIGNATURE,      /* signature not 64 bytes, or does not verify */
	SG_JWS_EXPIRED,            /* exp ≤ now - leeway (RFC 7519 §4.1.4) */
	SG_JWS_NOT_YET_VALID,      /* iat or nbf later than now + leeway (RFC 7519 §4.1.5/6) */
	SG_JWS_WRONG_ISSUER,       /* iss missing or not exactly sg_jws_policy.iss */
	SG_JWS_WRONG_AUDIENCE,     /* aud (string or array) does not contain sg_jws_policy.aud */
	SG_JWS_INSUFFICIENT_SCOPE, /* scope claim lacks one of sg_jws_policy.scope */
	SG_JWS_REVOKED,            /* the caller's revocation check said so */
	SG_JWS_INTERNAL,           /* allocation or library failure, or an invalid policy */
} sg_jws_status;

/* Static name of a status, e.g. "expired". */
const char *sg_jws_status_str(sg_jws_status s);
/* RFC 6750 §3.1 error code for a status: "invalid_token", "insufficient_scope", or NULL for
 * SG_JWS_OK and SG_JWS_INTERNAL (no WWW-Authenticate error then). */
const char *sg_jws_status_oauth_error(sg_jws_status s);

/* What a verifier expects. Zero-initialise, then set what applies. */
struct sg_jws_policy {
	const char *iss;   /* exact issuer (I10); NULL skips the check (only for the issuer
	                      itself, e.g. introspection of its own tokens) */
	const char *aud;   /* this service; the token's aud is a string or an array containing
	                      it (RFC 7519 §4.1.3); NULL skips the check */
	const char *scope; /* space-separated scopes that must all be in the token's "scope"
	                      claim (RFC 8693 §4.2 / RFC 9068 §2.2.3); NULL or "" for none */
	const char *typ;   /* required "typ" header (compared case-insensitively, an
	                      "application/" prefix allowed, RFC 7515 §4.1.9); NULL: any */
	int leeway;        /* clock-skew leeway in seconds, 0..SG_JWS_MAX_LEEWAY (I7) */
	int64_t now;       /* current time in seconds since the epoch; 0 = the real clock */
	size_t max_len;    /* longest token accepted; 0 = SG_JWS_MAX_TOKEN */
};

/* Verifies a compact JWS against the key set and the policy, in this order: length and shape,
 * header (alg ES256 only; no crit/jku/jwk/x5u/x5c/x5t; typ; kid known), signature (64 bytes,
 * ECDSA P-256 SHA-256), then claims: exp (required) and iat (required), nbf (if present), iss,
 * aud, scope. On SG_JWS_OK, *claims_out (may be NULL) receives the claims: a new reference
 * owned by the caller (json_decref). err (may be NULL) gets a one-line reason, never the
 * token. */
sg_jws_status sg_jws_verify(const struct sg_jws_keyset *ks, const char *token,
                            const struct sg_jws_policy *policy, json_t **claims_out, char *err,
                            size_t errlen);

/* Checks already-verified claims against a policy (the claim half of sg_jws_verify). */
sg_jws_status sg_jws_check_claims(const json_t *claims, const struct sg_jws_policy *policy,
                                  char *err, size_t errlen);

/* ---- verified-token cache -------------------------------------------------------------- */

/* Tokens whose signature verified, keyed by SHA-256 of the token, with their claims and exp.
 * Bounded (LRU per shard) and sharded by hash, one mutex per shard. An entry is served only
 * while exp has not passed and the key set's generation is the one it was stored under; once
 * the cache's revocation generation moved, only after the revocation predicate was asked again
 * (the signature is not verified again: a revocation costs no signature check per cached
 * token). The policy's claim checks (iss, aud, scope, time) run again on every hit, so one
 * cache serves every route of a listener. */
struct sg_jws_cache;

/* max_entries ≥ 1. Returns NULL on allocation failure. Owned by the caller. */
struct sg_jws_cache *sg_jws_cache_new(size_t max_entries);
void sg_jws_cache_free(struct sg_jws_cache *c);
/* Invalidates every entry stored so far. Call whenever the set of revoked tokens or clients
 * grows (RFC 7009 revocation, code replay, client removal). Cheap: one atomic increment. */
void sg_jws_cache_bump(struct sg_jws_cache *c);
/* Drops every entry now. */
void sg_jws_cache_clear(struct sg_jws_cache *c);

struct sg_jws_cache_stats {
	uint64_t hits, misses, inserts, evictions;
	size_t entries;
};
void sg_jws_cache_stats(struct sg_jws_cache *c, struct sg_jws_cache_stats *out);

/* Revocation predicate, consulted at every full verification (before an entry is stored) and
 * on the first hit of an entry after each sg_jws_cache_bump: returns true when the token
 * (claims: jti, client_id, sub...) is revoked. */
typedef bool (*sg_jws_revoked_fn)(void *arg, const json_t *claims);

/* sg_jws_verify through the cache: a hit costs a SHA-256 of the token, a hash lookup and the
 * claim checks; a miss runs sg_jws_verify, then revoked (may be NULL), then stores the claims.
 * *claims_out (may be NULL) is a new reference to claims that may be shared with other threads:
 * treat them as read-only, json_decref when done. c may be NULL (no caching). */
sg_jws_status sg_jws_verify_cached(struct sg_jws_cache *c, const struct sg_jws_keyset *ks,
                                   const char *token, const struct sg_jws_policy *policy,
                                   sg_jws_revoked_fn revoked, void *revoked_arg,
                                   json_t **claims_out, char *err, size_t errlen);

#endif
