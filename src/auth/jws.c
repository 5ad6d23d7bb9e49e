/* auth/jws.c: ES256 compact JWS (RFC 7515, RFC 7518 §3.4), JWK/JWKS (RFC 7517, RFC 7518 §6.2)
 * and the verified-token cache. Design notes:
 *  - one algorithm, fixed by us, never taken from the token (RFC 8725 §3.1): the header must say
 *    "ES256" and the key must be an EC P-256 key from our key set; embedded or referenced keys
 *    (jwk, jku, x5u, x5c) and "crit" are refused (RFC 8725 §3.10, RFC 7515 §4.1.11);
 *  - the signature is checked before the payload is even decoded;
 *  - OpenSSL does the ECDSA directly (cjose would parse and copy the token several times);
 *    tests check interoperability with cjose in both directions. */
#include "auth/jws.h"

#include "base/b64.h"
#include "base/rand.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define P256_LEN 32
#define SIG_LEN  64 /* RFC 7518 §3.4: R || S, 32 bytes each */

static const char P256_GROUP[] = "prime256v1";

/* ---- keys ------------------------------------------------------------------------------ */

#define SIGN_CTX_MAX 8 /* idle signing contexts kept per key (one per busy thread suffices) */

struct sg_jws_key {
	EVP_PKEY *pkey; /* private + public */
	char kid[SG_JWS_KID_MAX + 1];
	unsigned char x[P256_LEN], y[P256_LEN];
	/* The base64url protected headers of the two token types we mint (RFC 7515 §7.1), built
	 * once: they depend on the kid alone. */
	char *hdr_jwt, *hdr_at;
	size_t hdr_jwt_len, hdr_at_len;
	/* Idle EVP_PKEY_CTX initialised for signing with pkey: creating and initialising one
	 * (provider lookups, key export to the provider) costs a visible share of a signature,
	 * and a context can sign again and again. Taken and given back under mu. */
	pthread_mutex_t mu;
	EVP_PKEY_CTX *sctx[SIGN_CTX_MAX];
	size_t nsctx;
};

static char *header_b64(const char *kid, const char *typ, size_t *len);

static bool kid_ok(const char *kid, size_t n)
{
	if (n == 0 || n > SG_JWS_KID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)kid[i] < 0x21 || (unsigned char)kid[i] > 0x7e)
			return false;
	return true;
}

/* True when pkey is an EC key on P-256. */
static bool is_p256(const EVP_PKEY *pkey)
{
	char grp[32];
	size_t n = 0;
	if (!EVP_PKEY_is_a(pkey, "EC"))
		return false;
	if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, grp, sizeof grp, &n) !=
	    1)
		return false;
	return strcmp(grp, P256_GROUP) == 0;
}

static bool get_xy(const EVP_PKEY *pkey, unsigned char x[P256_LEN], unsigned char y[P256_LEN])
{
	BIGNUM *bx = NULL, *by = NULL;
	bool ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &bx) == 1 &&
	          EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &by) == 1 &&
	          BN_bn2binpad(bx, x, P256_LEN) == P256_LEN &&
	          BN_bn2binpad(by, y, P256_LEN) == P256_LEN;
	BN_free(bx);
	BN_free(by);
	return ok;
}

/* A public P-256 key from its affine coordinates; NULL unless the point is on the curve. */
static EVP_PKEY *pub_from_xy(const unsigned char x[P256_LEN], const unsigned char y[P256_LEN])
{
	unsigned char pt[1 + 2 * P256_LEN];
	char grp[sizeof P256_GROUP];
	EVP_PKEY *pkey = NULL;
	pt[0] = 0x04; /* SEC 1 §2.3.3 uncompressed point */
	memcpy(pt + 1, x, P256_LEN);
	memcpy(pt + 1 + P256_LEN, y, P256_LEN);
	memcpy(grp, P256_GROUP, sizeof grp);
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, grp, 0),
	    OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt),
	    OSSL_PARAM_construct_end()};
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	/* Invalid-curve defence: the point must be on P-256 and not the point at infinity. */
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!ctx || EVP_PKEY_public_check(ctx) != 1) {
		EVP_PKEY_CTX_free(ctx);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

static sg_err key_wrap(EVP_PKEY *pkey, const char *kid, struct sg_jws_key **out)
{
	struct sg_jws_key *k = calloc(1, sizeof *k);
	if (!k)
		return SG_ERR_NOMEM;
	if (!get_xy(pkey, k->x, k->y)) {
		free(k);
		return SG_ERR_TLS;
	}
	snprintf(k->kid, sizeof k->kid, "%s", kid);
	k->hdr_jwt = header_b64(kid, SG_JWS_TYP_JWT, &k->hdr_jwt_len);
	k->hdr_at = header_b64(kid, SG_JWS_TYP_AT, &k->hdr_at_len);
	if (!k->hdr_jwt || !k->hdr_at) {
		free(k->hdr_jwt);
		free(k->hdr_at);
		free(k);
		return SG_ERR_NOMEM;
	}
	pthread_mutex_init(&k->mu, NULL);
	k->pkey = pkey;
	*out = k;
	return SG_OK;
}

sg_err sg_jws_key_generate(struct sg_jws_key **out)
{
	unsigned char rnd[12];
	char kid[sizeof rnd * 2];
	*out = NULL;
	sg_err e = sg_random_bytes(rnd, sizeof rnd);
	if (e != SG_OK)
		return e;
	sg_b64url_encode(rnd, sizeof rnd, kid);
	EVP_PKEY *pkey = EVP_EC_gen(P256_GROUP);
	if (!pkey)
		return SG_ERR_TLS;
	e = key_wrap(pkey, kid, out);
	if (e != SG_OK)
		EVP_PKEY_free(pkey);
	return e;
}

sg_err sg_jws_key_from_pem(const char *pem, size_t pemlen, const char *kid, struct sg_jws_key **out,
                           char *err, size_t errlen)
{
	*out = NULL;
	if (!pem || !kid || !kid_ok(kid, strlen(kid)))
		return sg_fail(err, errlen, SG_ERR_INVALID, "kid must be 1..%d printable bytes",
		               SG_JWS_KID_MAX);
	if (pemlen > INT32_MAX)
		return sg_fail(err, errlen, SG_ERR_INVALID, "PEM too large");
	BIO *bio = BIO_new_mem_buf(pem, (int)pemlen);
	if (!bio)
		return SG_ERR_NOMEM;
	EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!pkey) {
		sg_fail(err, errlen, SG_ERR_INVALID, "not an unencrypted PEM private key");
		sg_fail_append_openssl(err, errlen);
		return SG_ERR_INVALID;
	}
	if (!is_p256(pkey)) {
		EVP_PKEY_free(pkey);
		return sg_fail(err, errlen, SG_ERR_INVALID, "signing key must be EC P-256 (ES256)");
	}
	sg_err e = key_wrap(pkey, kid, out);
	if (e != SG_OK) {
		EVP_PKEY_free(pkey);
		return sg_fail(err, errlen, e, "cannot read the public point");
	}
	return SG_OK;
}

sg_err sg_jws_key_private_pem(const struct sg_jws_key *key, char **pem, size_t *pemlen)
{
	*pem = NULL;
	*pemlen = 0;
	BIO *bio = BIO_new(BIO_s_secmem());
	if (!bio)
		return SG_ERR_NOMEM;
	sg_err e = SG_ERR_TLS;
	char *data = NULL;
	if (PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL) == 1) {
		long n = BIO_get_mem_data(bio, &data);
		char *copy = n > 0 ? malloc((size_t)n + 1) : NULL;
		if (copy) {
			memcpy(copy, data, (size_t)n);
			copy[n] = '\0';
			*pem = copy;
			*pemlen = (size_t)n;
			e = SG_OK;
		} else {
			e = SG_ERR_NOMEM;
		}
	}
	BIO_free(bio); /* secure-heap BIO: cleansed on free */
	return e;
}

static json_t *jwk_from_xy(const char *kid, const unsigned char x[P256_LEN],
                           const unsigned char y[P256_LEN])
{
	char bx[48], by[48];
	sg_b64url_encode(x, P256_LEN, bx);
	sg_b64url_encode(y, P256_LEN, by);
	/* RFC 7518 §6.2.1 members, plus RFC 7517 §4.2-4.5 use/alg/kid. */
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x",
	                 bx, "y", by, "kid", kid, "use", "sig", "alg", "ES256");
}

json_t *sg_jws_key_public_jwk(const struct sg_jws_key *key)
{
	return jwk_from_xy(key->kid, key->x, key->y);
}

const char *sg_jws_key_kid(const struct sg_jws_key *key)
{
	return key->kid;
}

void sg_jws_key_free(struct sg_jws_key *key)
{
	if (!key)
		return;
	for (size_t i = 0; i < key->nsctx; i++)
		EVP_PKEY_CTX_free(key->sctx[i]);
	pthread_mutex_destroy(&key->mu);
	EVP_PKEY_free(key->pkey); /* OpenSSL clears the private scalar */
	free(key->hdr_jwt);
	free(key->hdr_at);
	free(key);
}

void sg_jws_secret_free(char *s, size_t len)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, len);
	free(s);
}

/* ---- signing --------------------------------------------------------------------------- */

/* SHA-256 fetched once: EVP_sha256() makes OpenSSL 3 look the implementation up on every
 * EVP_DigestSignInit/EVP_DigestVerifyInit, a visible share of an ES256 operation. */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	g_sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

static const EVP_MD *sha256(void)
{
	pthread_once(&g_sha256_once, sha256_fetch);
	return g_sha256 ? g_sha256 : EVP_sha256();
}

/* base64url(data) appended at out; returns the number of characters written. */
static size_t b64_append(char *out, const void *data, size_t n)
{
	sg_b64url_encode(data, n, out);
	return sg_b64url_len(n);
}

/* base64url of the protected header {"alg":"ES256","typ":typ,"kid":kid} (RFC 7515 §4.1: alg,
 * kid; typ per RFC 7519 §5.1 / RFC 9068 §2.1), NUL-terminated; *len its length. NULL when out
 * of memory. */
static char *header_b64(const char *kid, const char *typ, size_t *len)
{
	json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "typ", typ, "kid", kid);
	char *h = hdr ? json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(hdr);
	char *out = h ? malloc(sg_b64url_len(strlen(h)) + 1) : NULL;
	if (out) {
		*len = b64_append(out, h, strlen(h));
		out[*len] = '\0';
	}
	free(h);
	return out;
}

/* A signing context of key's, idle or new; NULL when OpenSSL fails. */
static EVP_PKEY_CTX *sctx_take(struct sg_jws_key *key)
{
	EVP_PKEY_CTX *c = NULL;
	pthread_mutex_lock(&key->mu);
	if (key->nsctx)
		c = key->sctx[--key->nsctx];
	pthread_mutex_unlock(&key->mu);
	if (c)
		return c;
	c = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
	if (c && EVP_PKEY_sign_init(c) != 1) {
		EVP_PKEY_CTX_free(c);
		c = NULL;
	}
	return c;
}

/* Gives a context back after a successful signature (a failed one is dropped). */
static void sctx_give(struct sg_jws_key *key, EVP_PKEY_CTX *c, bool ok)
{
	if (ok) {
		pthread_mutex_lock(&key->mu);
		if (key->nsctx < SIGN_CTX_MAX) {
			key->sctx[key->nsctx++] = c;
			c = NULL;
		}
		pthread_mutex_unlock(&key->mu);
	}
	EVP_PKEY_CTX_free(c);
}

/* ECDSA P-256 over SHA-256 of msg, as the 64-byte R || S of RFC 7518 §3.4. The digest is
 * computed here and signed with a reused context (EVP_PKEY_sign on a prehash: the same
 * signature as EVP_DigestSign, a fresh random nonce every time). */
static sg_err es256_sign(struct sg_jws_key *key, const char *msg, size_t msglen,
                         unsigned char sig[SIG_LEN])
{
	unsigned char dgst[32], der[80];
	unsigned int dl = 0;
	size_t derlen = sizeof der;
	if (EVP_Digest(msg, msglen, dgst, &dl, sha256(), NULL) != 1 || dl != sizeof dgst)
		return SG_ERR_TLS;
	EVP_PKEY_CTX *c = sctx_take(key);
	if (!c)
		return SG_ERR_TLS;
	sg_err e = SG_ERR_TLS;
	if (EVP_PKEY_sign(c, der, &derlen, dgst, sizeof dgst) == 1) {
		const unsigned char *p = der;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
		if (es) {
			const BIGNUM *r, *s;
			ECDSA_SIG_get0(es, &r, &s);
			if (BN_bn2binpad(r, sig, P256_LEN) == P256_LEN &&
			    BN_bn2binpad(s, sig + P256_LEN, P256_LEN) == P256_LEN)
				e = SG_OK;
			ECDSA_SIG_free(es);
		}
	}
	sctx_give(key, c, e == SG_OK);
	return e;
}

sg_err sg_jws_sign_typ(const struct sg_jws_key *key, const char *typ, const json_t *claims,
                       char **token)
{
	*token = NULL;
	if (!key || !json_is_object(claims))
		return SG_ERR_INVALID;
	/* the key's signing contexts are a cache behind its mutex: signing does not change it */
	struct sg_jws_key *k = (struct sg_jws_key *)key;
	if (!typ)
		typ = SG_JWS_TYP_JWT;
	const char *hb = NULL;
	size_t hbl = 0;
	char *hdyn = NULL;
	if (!strcmp(typ, SG_JWS_TYP_JWT)) {
		hb = k->hdr_jwt;
		hbl = k->hdr_jwt_len;
	} else if (!strcmp(typ, SG_JWS_TYP_AT)) {
		hb = k->hdr_at;
		hbl = k->hdr_at_len;
	} else if (!(hb = hdyn = header_b64(k->kid, typ, &hbl))) {
		return SG_ERR_NOMEM;
	}
	char *p = json_dumps(claims, JSON_COMPACT);
	char *out = NULL;
	sg_err e = SG_ERR_NOMEM;
	if (!p)
		goto done;
	size_t pl = strlen(p);
	size_t cap = hbl + sg_b64url_len(pl) + sg_b64url_len(SIG_LEN) + 3;
	out = malloc(cap);
	if (!out)
		goto done;
	memcpy(out, hb, hbl);
	size_t n = hbl;
	out[n++] = '.';
	n += b64_append(out + n, p, pl);
	unsigned char sig[SIG_LEN];
	e = es256_sign(k, out, n, sig);
	if (e != SG_OK)
		goto done;
	out[n++] = '.';
	n += b64_append(out + n, sig, SIG_LEN);
	out[n] = '\0';
	*token = out;
	out = NULL;
done:
	free(out);
	free(hdyn);
	free(p);
	return e;
}

sg_err sg_jws_sign(const struct sg_jws_key *key, const json_t *claims, char **token)
{
	return sg_jws_sign_typ(key, SG_JWS_TYP_JWT, claims, token);
}

/* ---- key sets -------------------------------------------------------------------------- */

struct ks_entry {
	char kid[SG_JWS_KID_MAX + 1];
	EVP_PKEY *pub;
	unsigned char x[P256_LEN], y[P256_LEN];
};

struct sg_jws_keyset {
	pthread_rwlock_t lock;
	struct ks_entry *v;
	size_t n, cap;
	_Atomic uint64_t gen;
};

struct sg_jws_keyset *sg_jws_keyset_new(void)
{
	struct sg_jws_keyset *ks = calloc(1, sizeof *ks);
	if (!ks)
		return NULL;
	if (pthread_rwlock_init(&ks->lock, NULL) != 0) {
		free(ks);
		return NULL;
	}
	atomic_init(&ks->gen, 1);
	return ks;
}

void sg_jws_keyset_free(struct sg_jws_keyset *ks)
{
	if (!ks)
		return;
	for (size_t i = 0; i < ks->n; i++)
		EVP_PKEY_free(ks->v[i].pub);
	free(ks->v);
	pthread_rwlock_destroy(&ks->lock);
	free(ks);
}

/* Index of kid, or -1. Caller holds the lock. Key sets are small (current + previous keys),
 * so a linear scan beats any index. */
static long ks_find(const struct sg_jws_keyset *ks, const char *kid)
{
	for (size_t i = 0; i < ks->n; i++)
		if (strcmp(ks->v[i].kid, kid) == 0)
			return (long)i;
	return -1;
}

/* Takes ownership of pub (freed on failure). */
static sg_err ks_insert(struct sg_jws_keyset *ks, const char *kid, EVP_PKEY *pub,
                        const unsigned char x[P256_LEN], const unsigned char y[P256_LEN])
{
	sg_err e = SG_OK;
	pthread_rwlock_wrlock(&ks->lock);
	if (ks_find(ks, kid) >= 0) {
		e = SG_ERR_EXISTS;
	} else if (ks->n == ks->cap) {
		size_t cap = ks->cap ? ks->cap * 2 : 4;
		struct ks_entry *v = realloc(ks->v, cap * sizeof *v);
		if (!v) {
			e = SG_ERR_NOMEM;
		} else {
			ks->v = v;
			ks->cap = cap;
		}
	}
	if (e == SG_OK) {
		struct ks_entry *en = &ks->v[ks->n++];
		snprintf(en->kid, sizeof en->kid, "%s", kid);
		en->pub = pub;
		memcpy(en->x, x, P256_LEN);
		memcpy(en->y, y, P256_LEN);
	}
	pthread_rwlock_unlock(&ks->lock);
	if (e != SG_OK)
		EVP_PKEY_free(pub);
	return e;
}

sg_err sg_jws_keyset_add(struct sg_jws_keyset *ks, const struct sg_jws_key *key)
{
	EVP_PKEY *pub = pub_from_xy(key->x, key->y);
	if (!pub)
		return SG_ERR_TLS;
	return ks_insert(ks, key->kid, pub, key->x, key->y);
}

static bool jwk_coord(const json_t *jwk, const char *name, unsigned char out[P256_LEN])
{
	const char *s = json_string_value(json_object_get(jwk, name));
	size_t n = 0;
	return s && sg_b64url_decode(s, strlen(s), out, P256_LEN, &n) == SG_OK && n == P256_LEN;
}

sg_err sg_jws_keyset_add_jwk(struct sg_jws_keyset *ks, const json_t *jwk, char *err, size_t errlen)
{
	if (!json_is_object(jwk))
		return sg_fail(err, errlen, SG_ERR_INVALID, "JWK is not a JSON object");
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	if (!kty || strcmp(kty, "EC") != 0 || !crv || strcmp(crv, "P-256") != 0)
		return sg_fail(err, errlen, SG_ERR_INVALID, "not an EC P-256 key");
	json_t *use = json_object_get(jwk, "use"), *alg = json_object_get(jwk, "alg");
	if (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0))
		return sg_fail(err, errlen, SG_ERR_INVALID, "key \"use\" is not \"sig\"");
	if (alg && (!json_is_string(alg) || strcmp(json_string_value(alg), "ES256") != 0))
		return sg_fail(err, errlen, SG_ERR_INVALID, "key \"alg\" is not ES256");
	json_t *kid = json_object_get(jwk, "kid");
	if (!json_is_string(kid) || !kid_ok(json_string_value(kid), json_string_length(kid)))
		return sg_fail(err, errlen, SG_ERR_INVALID, "key has no usable \"kid\"");
	unsigned char x[P256_LEN], y[P256_LEN];
	if (!jwk_coord(jwk, "x", x) || !jwk_coord(jwk, "y", y))
		return sg_fail(err, errlen, SG_ERR_INVALID, "x and y must be 32-byte base64url");
	EVP_PKEY *pub = pub_from_xy(x, y);
	if (!pub)
		return sg_fail(err, errlen, SG_ERR_INVALID, "point is not on P-256");
	sg_err e = ks_insert(ks, json_string_value(kid), pub, x, y);
	if (e == SG_ERR_EXISTS)
		return sg_fail(err, errlen, e, "duplicate kid");
	return e;
}

sg_err sg_jws_keyset_remove(struct sg_jws_keyset *ks, const char *kid)
{
	sg_err e = SG_ERR_NOTFOUND;
	pthread_rwlock_wrlock(&ks->lock);
	long i = ks_find(ks, kid);
	if (i >= 0) {
		EVP_PKEY_free(ks->v[i].pub);
		memmove(&ks->v[i], &ks->v[i + 1], (ks->n - (size_t)i - 1) * sizeof ks->v[0]);
		ks->n--;
		atomic_fetch_add(&ks->gen, 1);
		e = SG_OK;
	}
	pthread_rwlock_unlock(&ks->lock);
	return e;
}

bool sg_jws_keyset_has(const struct sg_jws_keyset *ks, const char *kid)
{
	struct sg_jws_keyset *m = (struct sg_jws_keyset *)ks;
	pthread_rwlock_rdlock(&m->lock);
	bool found = ks_find(m, kid) >= 0;
	pthread_rwlock_unlock(&m->lock);
	return found;
}

size_t sg_jws_keyset_count(const struct sg_jws_keyset *ks)
{
	struct sg_jws_keyset *m = (struct sg_jws_keyset *)ks;
	pthread_rwlock_rdlock(&m->lock);
	size_t n = m->n;
	pthread_rwlock_unlock(&m->lock);
	return n;
}

uint64_t sg_jws_keyset_generation(const struct sg_jws_keyset *ks)
{
	return atomic_load(&((struct sg_jws_keyset *)ks)->gen);
}

/* The public key for kid with a reference of its own (EVP_PKEY_free), or NULL. */
static EVP_PKEY *ks_get(const struct sg_jws_keyset *ks, const char *kid)
{
	struct sg_jws_keyset *m = (struct sg_jws_keyset *)ks;
	EVP_PKEY *pub = NULL;
	pthread_rwlock_rdlock(&m->lock);
	long i = ks_find(m, kid);
	if (i >= 0 && EVP_PKEY_up_ref(m->v[i].pub) == 1)
		pub = m->v[i].pub;
	pthread_rwlock_unlock(&m->lock);
	return pub;
}

json_t *sg_jws_keyset_to_jwks(const struct sg_jws_keyset *ks)
{
	struct sg_jws_keyset *m = (struct sg_jws_keyset *)ks;
	json_t *keys = json_array();
	if (!keys)
		return NULL;
	pthread_rwlock_rdlock(&m->lock);
	for (size_t i = 0; i < m->n; i++) {
		if (json_array_append_new(keys, jwk_from_xy(m->v[i].kid, m->v[i].x, m->v[i].y)) !=
		    0) {
			pthread_rwlock_unlock(&m->lock);
			json_decref(keys);
			return NULL;
		}
	}
	pthread_rwlock_unlock(&m->lock);
	return json_pack("{s:o}", "keys", keys);
}

sg_err sg_jws_keyset_parse(const char *json, size_t len, struct sg_jws_keyset **out, char *err,
                           size_t errlen)
{
	*out = NULL;
	json_error_t jerr;
	json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *keys = json_object_get(doc, "keys");
	if (!json_is_object(doc) || !json_is_array(keys)) {
		json_decref(doc);
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "not a JWKS document (RFC 7517 §5: {\"keys\":[...]})");
	}
	struct sg_jws_keyset *ks = sg_jws_keyset_new();
	if (!ks) {
		json_decref(doc);
		return SG_ERR_NOMEM;
	}
	size_t i;
	json_t *jwk;
	json_array_foreach(keys, i, jwk)
	{
		/* RFC 7517 §5: keys we cannot use are ignored, not fatal. */
		sg_err e = sg_jws_keyset_add_jwk(ks, jwk, NULL, 0);
		if (e == SG_ERR_NOMEM) {
			sg_jws_keyset_free(ks);
			json_decref(doc);
			return e;
		}
	}
	json_decref(doc);
	*out = ks;
	return SG_OK;
}

/* ---- verification ---------------------------------------------------------------------- */

const char *sg_jws_status_str(sg_jws_status s)
{
	switch (s) {
	case SG_JWS_OK:
		return "ok";
	case SG_JWS_MALFORMED:
		return "malformed";
	case SG_JWS_BAD_ALG:
		return "bad_alg";
	case SG_JWS_BAD_HEADER:
		return "bad_header";
	case SG_JWS_WRONG_TYPE:
		return "wrong_type";
	case SG_JWS_UNKNOWN_KID:
		return "unknown_kid";
	case SG_JWS_BAD_SIGNATURE:
		return "bad_signature";
	case SG_JWS_EXPIRED:
		return "expired";
	case SG_JWS_NOT_YET_VALID:
		return "not_yet_valid";
	case SG_JWS_WRONG_ISSUER:
		return "wrong_issuer";
	case SG_JWS_WRONG_AUDIENCE:
		return "wrong_audience";
	case SG_JWS_INSUFFICIENT_SCOPE:
		return "insufficient_scope";
	case SG_JWS_REVOKED:
		return "revoked";
	case SG_JWS_INTERNAL:
		return "internal";
	}
	return "unknown";
}

const char *sg_jws_status_oauth_error(sg_jws_status s)
{
	switch (s) {
	case SG_JWS_OK:
	case SG_JWS_INTERNAL:
		return NULL;
	case SG_JWS_INSUFFICIENT_SCOPE:
		return "insufficient_scope"; /* RFC 6750 §3.1, 403 */
	default:
		return "invalid_token"; /* RFC 6750 §3.1, 401 */
	}
}

__attribute__((format(printf, 4, 5))) static sg_jws_status
vfail(char *err, size_t errlen, sg_jws_status st, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return st;
}

static int64_t policy_now(const struct sg_jws_policy *p)
{
	return p->now ? p->now : (int64_t)time(NULL);
}

/* RFC 7519 §2 NumericDate: a JSON number, possibly non-integer. */
static bool numeric_date(const json_t *claims, const char *name, int64_t *out)
{
	const json_t *v = json_object_get(claims, name);
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return true;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!isfinite(d))
			return false;
		if (d > 1e15)
			d = 1e15;
		if (d < -1e15)
			d = -1e15;
		*out = (int64_t)floor(d);
		return true;
	}
	return false;
}

/* True when the space-separated list has the token tok (n bytes) as a whole element. */
static bool scope_has(const char *list, const char *tok, size_t n)
{
	for (const char *p = list; *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == n && n && memcmp(p, tok, n) == 0)
			return true;
		p = e;
	}
	return false;
}

sg_jws_status sg_jws_check_claims(const json_t *claims, const struct sg_jws_policy *pol, char *err,
                                  size_t errlen)
{
	if (!pol || pol->leeway < 0 || pol->leeway > SG_JWS_MAX_LEEWAY)
		return vfail(err, errlen, SG_JWS_INTERNAL, "leeway must be 0..%d s",
		             SG_JWS_MAX_LEEWAY);
	if (!json_is_object(claims))
		return vfail(err, errlen, SG_JWS_MALFORMED, "claims are not a JSON object");
	int64_t now = policy_now(pol), exp, iat, nbf;
	/* RFC 7519 §4.1.4; exp and iat are REQUIRED by I7/I8 (RFC 9068 §2.2). */
	if (!numeric_date(claims, "exp", &exp))
		return vfail(err, errlen, SG_JWS_MALFORMED, "exp missing or not a NumericDate");
	if (!numeric_date(claims, "iat", &iat))
		return vfail(err, errlen, SG_JWS_MALFORMED, "iat missing or not a NumericDate");
	if (exp <= now - pol->leeway)
		return vfail(err, errlen, SG_JWS_EXPIRED, "token expired");
	if (iat > now + pol->leeway)
		return vfail(err, errlen, SG_JWS_NOT_YET_VALID, "iat is in the future");
	if (json_object_get(claims, "nbf")) {
		if (!numeric_date(claims, "nbf", &nbf))
			return vfail(err, errlen, SG_JWS_MALFORMED, "nbf is not a NumericDate");
		if (nbf > now + pol->leeway) /* RFC 7519 §4.1.5 */
			return vfail(err, errlen, SG_JWS_NOT_YET_VALID, "token not yet valid");
	}
	if (pol->iss) { /* RFC 7519 §4.1.1, OIDC Core §3.1.3.7 step 2: exact match */
		const json_t *iss = json_object_get(claims, "iss");
		if (!json_is_string(iss) || strlen(pol->iss) != json_string_length(iss) ||
		    strcmp(json_string_value(iss), pol->iss) != 0)
			return vfail(err, errlen, SG_JWS_WRONG_ISSUER, "wrong issuer");
	}
	if (pol->aud) { /* RFC 7519 §4.1.3 */
		const json_t *aud = json_object_get(claims, "aud");
		bool ok = false;
		if (json_is_string(aud)) {
			ok = strcmp(json_string_value(aud), pol->aud) == 0;
		} else if (json_is_array(aud)) {
			for (size_t i = 0; i < json_array_size(aud) && !ok; i++) {
				const char *a = json_string_value(json_array_get(aud, i));
				ok = a && strcmp(a, pol->aud) == 0;
			}
		}
		if (!ok)
			return vfail(err, errlen, SG_JWS_WRONG_AUDIENCE, "audience not accepted");
	}
	if (pol->scope && *pol->scope) { /* I8a, I10; RFC 9068 §2.2.3 */
		const char *have = json_string_value(json_object_get(claims, "scope"));
		for (const char *p = pol->scope; *p;) {
			while (*p == ' ')
				p++;
			const char *e = p;
			while (*e && *e != ' ')
				e++;
			if (e > p && (!have || !scope_has(have, p, (size_t)(e - p))))
				return vfail(err, errlen, SG_JWS_INSUFFICIENT_SCOPE,
				             "scope %.*s required", (int)(e - p), p);
			p = e;
		}
	}
	return SG_JWS_OK;
}

/* RFC 7515 §4.1.9: typ is case-insensitive and "application/" may be omitted. */
static bool typ_matches(const char *have, const char *want)
{
	if (strncasecmp(have, "application/", 12) == 0)
		have += 12;
	if (strncasecmp(want, "application/", 12) == 0)
		want += 12;
	return strcasecmp(have, want) == 0;
}

/* Decodes one base64url segment and parses it as a JSON object (duplicate members refused,
 * RFC 7515 §5.2 step 4 / RFC 7519 §4). */
static sg_jws_status segment_json(const char *seg, size_t n, json_t **out, char *err, size_t errlen,
                                  const char *what)
{
	unsigned char stackbuf[1024], *buf = stackbuf;
	size_t cap = n / 4 * 3 + 3, len = 0;
	*out = NULL;
	if (cap > sizeof stackbuf && !(buf = malloc(cap)))
		return vfail(err, errlen, SG_JWS_INTERNAL, "out of memory");
	sg_jws_status st = SG_JWS_OK;
	if (n == 0 || sg_b64url_decode(seg, n, buf, cap, &len) != SG_OK) {
		st = vfail(err, errlen, SG_JWS_MALFORMED, "%s is not base64url", what);
	} else {
		json_error_t jerr;
		*out = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(*out)) {
			json_decref(*out);
			*out = NULL;
			st = vfail(err, errlen, SG_JWS_MALFORMED, "%s is not a JSON object", what);
		}
	}
	if (buf != stackbuf)
		free(buf);
	return st;
}

static bool es256_verify(EVP_PKEY *pub, const char *msg, size_t msglen,
                         const unsigned char sig[SIG_LEN])
{
	unsigned char der[80], *p = der;
	bool ok = false;
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, P256_LEN, NULL), *s = BN_bin2bn(sig + P256_LEN, P256_LEN, NULL);
	if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return false;
	}
	int derlen = i2d_ECDSA_SIG(es, &p);
	ECDSA_SIG_free(es);
	if (derlen <= 0 || (size_t)derlen > sizeof der)
		return false;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md && EVP_DigestVerifyInit(md, NULL, sha256(), NULL, pub) == 1)
		ok = EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)msg,
		                      msglen) == 1;
	EVP_MD_CTX_free(md);
	return ok;
}

/* sg_jws_verify, also handing back the header's typ (malloc'd, may be NULL) for the cache. */
static sg_jws_status verify_full(const struct sg_jws_keyset *ks, const char *token,
                                 const struct sg_jws_policy *pol, json_t **claims_out,
                                 char **typ_out, char *err, size_t errlen)
{
	*claims_out = NULL;
	if (typ_out)
		*typ_out = NULL;
	if (!ks || !token || !pol || pol->leeway < 0 || pol->leeway > SG_JWS_MAX_LEEWAY)
		return vfail(err, errlen, SG_JWS_INTERNAL, "invalid verification policy");
	size_t maxlen = pol->max_len ? pol->max_len : SG_JWS_MAX_TOKEN;
	size_t len = strnlen(token, maxlen + 1);
	if (len > maxlen)
		return vfail(err, errlen, SG_JWS_MALFORMED, "token longer than %zu bytes", maxlen);
	/* RFC 7515 §7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature). */
	const char *d1 = memchr(token, '.', len);
	const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
	if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
		return vfail(err, errlen, SG_JWS_MALFORMED, "not a three-part compact JWS");
	const char *sigseg = d2 + 1;
	size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1);
	size_t slen = len - (size_t)(sigseg - token);
	if (hlen == 0 || plen == 0) /* an empty signature is judged after the header ("none") */
		return vfail(err, errlen, SG_JWS_MALFORMED, "empty JWS segment");

	json_t *hdr = NULL, *claims = NULL;
	EVP_PKEY *pub = NULL;
	sg_jws_status st = segment_json(token, hlen, &hdr, err, errlen, "header");
	if (st != SG_JWS_OK)
		return st;
	/* RFC 8725 §3.1: the algorithm is ours, not the token's. Missing alg, "none", HS*
	 * (key confusion with our public key), RS*, PS*, ES384...: all refused. */
	const json_t *alg = json_object_get(hdr, "alg");
	if (!json_is_string(alg) || strcmp(json_string_value(alg), "ES256") != 0) {
		st = vfail(err, errlen, SG_JWS_BAD_ALG, "alg must be ES256");
		goto out;
	}
	/* RFC 7515 §4.1.11: we understand no extension, so any "crit" is fatal; keys carried
	 * or pointed to by the token are never trusted (RFC 8725 §3.10). */
	static const char *const refused[] = {"crit", "jku", "jwk",      "x5u",
	                                      "x5c",  "x5t", "x5t#S256", "zip"};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		if (json_object_get(hdr, refused[i])) {
			st = vfail(err, errlen, SG_JWS_BAD_HEADER, "header parameter %s refused",
			           refused[i]);
			goto out;
		}
	}
	const json_t *typ = json_object_get(hdr, "typ");
	if (typ && !json_is_string(typ)) {
		st = vfail(err, errlen, SG_JWS_MALFORMED, "typ is not a string");
		goto out;
	}
	if (pol->typ && (!typ || !typ_matches(json_string_value(typ), pol->typ))) {
		st = vfail(err, errlen, SG_JWS_WRONG_TYPE, "typ must be %s", pol->typ);
		goto out;
	}
	const json_t *kid = json_object_get(hdr, "kid");
	if (!json_is_string(kid) || !kid_ok(json_string_value(kid), json_string_length(kid))) {
		st = vfail(err, errlen, SG_JWS_UNKNOWN_KID, "kid missing");
		goto out;
	}
	pub = ks_get(ks, json_string_value(kid));
	if (!pub) {
		st = vfail(err, errlen, SG_JWS_UNKNOWN_KID, "unknown kid");
		goto out;
	}
	/* RFC 7518 §3.4: exactly 64 octets R || S; anything else (DER, padded) is invalid. */
	unsigned char sig[SIG_LEN + 1];
	size_t siglen = 0;
	sg_err de = sg_b64url_decode(sigseg, slen, sig, sizeof sig, &siglen);
	if (de == SG_ERR_INVALID) {
		st = vfail(err, errlen, SG_JWS_MALFORMED, "signature is not base64url");
		goto out;
	}
	if (de != SG_OK || siglen != SIG_LEN) {
		st = vfail(err, errlen, SG_JWS_BAD_SIGNATURE, "signature is not 64 bytes");
		goto out;
	}
	if (!es256_verify(pub, token, (size_t)(d2 - token), sig)) {
		st = vfail(err, errlen, SG_JWS_BAD_SIGNATURE, "signature does not verify");
		goto out;
	}
	/* Only now is the payload worth decoding. */
	st = segment_json(d1 + 1, plen, &claims, err, errlen, "payload");
	if (st != SG_JWS_OK)
		goto out;
	st = sg_jws_check_claims(claims, pol, err, errlen);
	if (st != SG_JWS_OK)
		goto out;
	if (typ_out && typ && !(*typ_out = strdup(json_string_value(typ)))) {
		st = vfail(err, errlen, SG_JWS_INTERNAL, "out of memory");
		goto out;
	}
	*claims_out = claims;
	claims = NULL;
out:
	EVP_PKEY_free(pub);
	json_decref(hdr);
	json_decref(claims);
	return st;
}

sg_jws_status sg_jws_verify(const struct sg_jws_keyset *ks, const char *token,
                            const struct sg_jws_policy *policy, json_t **claims_out, char *err,
                            size_t errlen)
{
	json_t *claims = NULL;
	sg_jws_status st = verify_full(ks, token, policy, &claims, NULL, err, errlen);
	if (claims_out)
		*claims_out = claims;
	else
		json_decref(claims);
	return st;
}

/* ---- verified-token cache -------------------------------------------------------------- */

struct centry {
	unsigned char key[SHA256_DIGEST_LENGTH]; /* SHA-256 of the token */
	int64_t exp;
	uint64_t gen, ksgen;
	const struct sg_jws_keyset *ks;
	json_t *claims;
	char *typ;
	struct centry *hnext;       /* bucket chain */
	struct centry *prev, *next; /* LRU list, most recent first */
};

struct shard {
	pthread_mutex_t mu;
	struct centry **buckets;
	size_t nbuckets; /* power of two */
	size_t count, cap;
	struct centry lru; /* sentinel */
	uint64_t hits, misses, inserts, evictions;
	char pad[64]; /* keep neighbouring shards' locks off one cache line */
};

struct sg_jws_cache {
	struct shard *shards;
	size_t nshards; /* power of two */
	_Atomic uint64_t gen;
};

static void lru_unlink(struct centry *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
}

static void lru_push_front(struct shard *s, struct centry *e)
{
	e->next = s->lru.next;
	e->prev = &s->lru;
	s->lru.next->prev = e;
	s->lru.next = e;
}

static uint64_t key_word(const unsigned char *k)
{
	uint64_t w;
	memcpy(&w, k, sizeof w);
	return w;
}

struct sg_jws_cache *sg_jws_cache_new(size_t max_entries)
{
	if (max_entries == 0)
		return NULL;
	struct sg_jws_cache *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	size_t ns = 1;
	while (ns < 64 && ns * 2 <= max_entries / 4)
		ns *= 2; /* at least ~4 entries per shard, up to 64 shards */
	c->nshards = ns;
	c->shards = calloc(ns, sizeof *c->shards);
	if (!c->shards) {
		free(c);
		return NULL;
	}
	atomic_init(&c->gen, 1);
	for (size_t i = 0; i < ns; i++) {
		struct shard *s = &c->shards[i];
		s->cap = max_entries / ns + (i < max_entries % ns ? 1 : 0);
		s->nbuckets = 1;
		while (s->nbuckets < s->cap)
			s->nbuckets *= 2;
		s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
		pthread_mutex_init(&s->mu, NULL);
		s->lru.next = s->lru.prev = &s->lru;
		if (!s->buckets) {
			c->nshards = i + 1;
			sg_jws_cache_free(c);
			return NULL;
		}
	}
	return c;
}

static void entry_free(struct centry *e)
{
	json_decref(e->claims);
	free(e->typ);
	free(e);
}

/* Removes e from its bucket and the LRU list. Caller holds s->mu. */
static void shard_remove(struct shard *s, struct centry *e)
{
	struct centry **pp = &s->buckets[key_word(e->key + 8) & (s->nbuckets - 1)];
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	lru_unlink(e);
	s->count--;
	entry_free(e);
}

static void shard_clear(struct shard *s)
{
	while (s->lru.next != &s->lru)
		shard_remove(s, s->lru.next);
}

void sg_jws_cache_free(struct sg_jws_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];
		if (s->buckets)
			shard_clear(s);
		free(s->buckets);
		pthread_mutex_destroy(&s->mu);
	}
	free(c->shards);
	free(c);
}

void sg_jws_cache_bump(struct sg_jws_cache *c)
{
	atomic_fetch_add(&c->gen, 1);
}

void sg_jws_cache_clear(struct sg_jws_cache *c)
{
	for (size_t i = 0; i < c->nshards; i++) {
		pthread_mutex_lock(&c->shards[i].mu);
		shard_clear(&c->shards[i]);
		pthread_mutex_unlock(&c->shards[i].mu);
	}
}

void sg_jws_cache_stats(struct sg_jws_cache *c, struct sg_jws_cache_stats *out)
{
	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_lock(&s->mu);
		out->hits += s->hits;
		out->misses += s->misses;
		out->inserts += s->inserts;
		out->evictions += s->evictions;
		out->entries += s->count;
		pthread_mutex_unlock(&s->mu);
	}
}

static struct centry *shard_find(struct shard *s, const unsigned char key[32])
{
	struct centry *e = s->buckets[key_word(key + 8) & (s->nbuckets - 1)];
	while (e && memcmp(e->key, key, SHA256_DIGEST_LENGTH) != 0)
		e = e->hnext;
	return e;
}

/* Takes ownership of claims and typ. */
static void cache_put(struct sg_jws_cache *c, const unsigned char key[32],
                      const struct sg_jws_keyset *ks, uint64_t gen, uint64_t ksgen, json_t *claims,
                      char *typ)
{
	int64_t exp = 0;
	struct centry *e = calloc(1, sizeof *e);
	if (!e || !numeric_date(claims, "exp", &exp)) {
		free(e);
		json_decref(claims);
		free(typ);
		return;
	}
	memcpy(e->key, key, SHA256_DIGEST_LENGTH);
	e->exp = exp;
	e->gen = gen;
	e->ksgen = ksgen;
	e->ks = ks;
	e->claims = claims;
	e->typ = typ;
	struct shard *s = &c->shards[key_word(key) & (c->nshards - 1)];
	pthread_mutex_lock(&s->mu);
	struct centry *old = shard_find(s, key);
	if (old)
		shard_remove(s, old); /* a concurrent miss stored it too: keep the newer */
	if (s->count >= s->cap) {
		shard_remove(s, s->lru.prev); /* least recently used */
		s->evictions++;
	}
	struct centry **b = &s->buckets[key_word(key + 8) & (s->nbuckets - 1)];
	e->hnext = *b;
	*b = e;
	lru_push_front(s, e);
	s->count++;
	s->inserts++;
	pthread_mutex_unlock(&s->mu);
}

sg_jws_status sg_jws_verify_cached(struct sg_jws_cache *c, const struct sg_jws_keyset *ks,
                                   const char *token, const struct sg_jws_policy *policy,
                                   sg_jws_revoked_fn revoked, void *revoked_arg,
                                   json_t **claims_out, char *err, size_t errlen)
{
	if (claims_out)
		*claims_out = NULL;
	if (!ks || !token || !policy || policy->leeway < 0 || policy->leeway > SG_JWS_MAX_LEEWAY)
		return vfail(err, errlen, SG_JWS_INTERNAL, "invalid verification policy");
	size_t maxlen = policy->max_len ? policy->max_len : SG_JWS_MAX_TOKEN;
	size_t len = strnlen(token, maxlen + 1);
	unsigned char key[SHA256_DIGEST_LENGTH];
	/* Generations are read before verifying: a revocation or key removal that lands while we
	 * verify makes the entry stale at once rather than letting it live on. */
	uint64_t gen = 0, ksgen = 0;
	bool use_cache = c && len <= maxlen;
	if (use_cache) {
		SHA256((const unsigned char *)token, len, key);
		gen = atomic_load(&c->gen);
		ksgen = sg_jws_keyset_generation(ks);
		struct shard *s = &c->shards[key_word(key) & (c->nshards - 1)];
		json_t *claims = NULL;
		bool typ_ok = true, recheck = false;
		int64_t now = policy_now(policy);
		pthread_mutex_lock(&s->mu);
		struct centry *e = shard_find(s, key);
		if (e && (e->ksgen != ksgen || e->ks != ks || e->exp <= now - SG_JWS_MAX_LEEWAY)) {
			shard_remove(s, e); /* stale: key gone, or long expired */
			e = NULL;
		}
		if (e) {
			s->hits++;
			lru_unlink(e);
			lru_push_front(s, e);
			claims = json_incref(e->claims);
			recheck = e->gen != gen;
			if (policy->typ)
				typ_ok = e->typ && typ_matches(e->typ, policy->typ);
		} else {
			s->misses++;
		}
		pthread_mutex_unlock(&s->mu);
		if (claims && recheck) {
			/* Something was revoked since this entry was stored: the signature and the
			 * key set are as they were, so only the revocation predicate is asked again
			 * (a full verification would reach the same verdict at the cost of a
			 * signature check per cached token after every revocation). The entry takes
			 * the generation read before asking: a revocation landing meanwhile makes
			 * it stale again. */
			bool gone = revoked && revoked(revoked_arg, claims);
			pthread_mutex_lock(&s->mu);
			if ((e = shard_find(s, key))) {
				if (gone)
					shard_remove(s, e);
				else if (e->gen < gen)
					e->gen = gen;
			}
			pthread_mutex_unlock(&s->mu);
			if (gone) {
				json_decref(claims);
				return vfail(err, errlen, SG_JWS_REVOKED, "token revoked");
			}
		}
		if (claims) {
			sg_jws_status st = typ_ok ? sg_jws_check_claims(claims, policy, err, errlen)
			                          : vfail(err, errlen, SG_JWS_WRONG_TYPE,
			                                  "typ must be %s", policy->typ);
			if (st == SG_JWS_OK && claims_out)
				*claims_out = claims;
			else
				json_decref(claims);
			return st;
		}
	}
	json_t *claims = NULL;
	char *typ = NULL;
	sg_jws_status st = verify_full(ks, token, policy, &claims, &typ, err, errlen);
	if (st == SG_JWS_OK && revoked && revoked(revoked_arg, claims))
		st = vfail(err, errlen, SG_JWS_REVOKED, "token revoked");
	if (st != SG_JWS_OK) {
		json_decref(claims);
		free(typ);
		return st;
	}
	if (claims_out)
		*claims_out = json_incref(claims);
	if (use_cache)
		cache_put(c, key, ks, gen, ksgen, claims, typ);
	else {
		json_decref(claims);
		free(typ);
	}
	return SG_JWS_OK;
}
