/* auth/secret.c: scrypt password hashes in PHC strings, peppered HMAC digests of generated
 * secrets, PKCE S256 and RFC 8705 thumbprints. All on OpenSSL 3. */
#include "auth/secret.h"

#include "base/b64.h"
#include "base/rand.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- scrypt ---------------------------------------------------------------------------- */

#define SCRYPT_MAX_MEM (1024ull * 1024 * 1024) /* refuse parameters needing more than 1 GiB */

sg_err sg_scrypt(const void *pass, size_t passlen, const void *salt, size_t saltlen, uint64_t N,
                 uint32_t r, uint32_t p, unsigned char *out, size_t outlen)
{
	/* RFC 7914 §2: N a power of two greater than 1; r * p < 2^30. */
	if (N < 2 || (N & (N - 1)) != 0 || r == 0 || p == 0 || (uint64_t)r * p >= (1u << 30) ||
	    outlen == 0)
		return SG_ERR_INVALID;
	/* OpenSSL's accounting: V is 128 * r * (N + 2) bytes, B is 128 * r * p. */
	if (N > SCRYPT_MAX_MEM / 128 / r)
		return SG_ERR_LIMIT;
	uint64_t mem = 128ull * r * (N + 2) + 128ull * r * p;
	if (mem > SCRYPT_MAX_MEM)
		return SG_ERR_LIMIT;
	uint64_t maxmem = mem + 4096;
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_SCRYPT, NULL);
	if (!kdf)
		return SG_ERR_TLS;
	EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
	EVP_KDF_free(kdf);
	if (!ctx)
		return SG_ERR_NOMEM;
	/* An empty password or salt still needs a valid (non-NULL) pointer. */
	static const unsigned char empty[1];
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
	                                      (void *)(passlen ? pass : empty), passlen),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(saltlen ? salt : empty),
	                                      saltlen),
	    OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &N),
	    OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
	    OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
	    OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
	    OSSL_PARAM_construct_end()};
	int ok = EVP_KDF_derive(ctx, out, outlen, params);
	EVP_KDF_CTX_free(ctx);
	return ok == 1 ? SG_OK : SG_ERR_TLS;
}

/* ---- PHC strings ----------------------------------------------------------------------- */

/* The PHC string format's B64: standard alphabet (RFC 4648 §4) without padding. */
static void phc_b64_encode(const unsigned char *in, size_t n, char *out)
{
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	while (len > 0 && out[len - 1] == '=')
		out[--len] = '\0';
}

/* Decodes n characters; refuses other characters, impossible lengths and non-canonical
 * encodings (re-encoding must give the input back). */
static bool phc_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap, size_t *outlen)
{
	char padded[128], check[128];
	if (n == 0 || n % 4 == 1 || n + 3 >= sizeof padded || (n * 3) / 4 > cap)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return false;
	}
	memcpy(padded, in, n);
	size_t pad = (4 - n % 4) % 4, len = n;
	while (len < n + pad)
		padded[len++] = '=';
	padded[len] = '\0';
	unsigned char tmp[96];
	int m = EVP_DecodeBlock(tmp, (const unsigned char *)padded, (int)len);
	if (m < 0 || (size_t)m < pad)
		return false;
	size_t dec = (size_t)m - pad;
	if (dec > cap)
		return false;
	phc_b64_encode(tmp, dec, check);
	if (strlen(check) != n || memcmp(check, in, n) != 0) {
		OPENSSL_cleanse(tmp, sizeof tmp);
		return false;
	}
	memcpy(out, tmp, dec);
	OPENSSL_cleanse(tmp, sizeof tmp);
	*outlen = dec;
	return true;
}

struct phc {
	unsigned ln, r, p;
	unsigned char salt[64], hash[64];
	size_t saltlen, hashlen;
};

/* Reads a decimal 1..max without leading zeros at *s, which must end at term. */
static bool phc_num(const char **s, const char *name, char term, unsigned max, unsigned *out)
{
	size_t nl = strlen(name);
	const char *p = *s;
	if (strncmp(p, name, nl) != 0 || p[nl] != '=')
		return false;
	p += nl + 1;
	if (*p < '1' || *p > '9')
		return false;
	unsigned v = 0;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > max)
			return false;
		p++;
	}
	if (*p != term)
		return false;
	*s = p + 1;
	*out = v;
	return true;
}

static bool params_ok(unsigned ln, unsigned r, unsigned p)
{
	if (ln < 1 || ln > 30 || r < 1 || r > 32 || p < 1 || p > 16)
		return false;
	return 128ull * r * ((1ull << ln) + 2) + 128ull * r * p <= SCRYPT_MAX_MEM;
}

/* "$scrypt$ln=L,r=R,p=P$SALT$HASH", exactly in this order, as we write it. */
static bool phc_parse(const char *s, struct phc *out)
{
	static const char prefix[] = "$scrypt$";
	if (!s || strncmp(s, prefix, sizeof prefix - 1) != 0)
		return false;
	s += sizeof prefix - 1;
	if (!phc_num(&s, "ln", ',', 99, &out->ln) || !phc_num(&s, "r", ',', 999, &out->r) ||
	    !phc_num(&s, "p", '$', 999, &out->p) || !params_ok(out->ln, out->r, out->p))
		return false;
	const char *d = strchr(s, '$');
	if (!d || strchr(d + 1, '$'))
		return false;
	if (!phc_b64_decode(s, (size_t)(d - s), out->salt, sizeof out->salt, &out->saltlen) ||
	    !phc_b64_decode(d + 1, strlen(d + 1), out->hash, sizeof out->hash, &out->hashlen))
		return false;
	return out->saltlen >= 8 && out->hashlen >= 16;
}

struct sg_password_params sg_password_params_default(void)
{
	return (struct sg_password_params){.ln = SG_PASSWORD_LN_DEFAULT, .r = 8, .p = 1};
}

sg_err sg_password_hash(const char *password, const struct sg_password_params *params, char *out,
                        size_t outlen)
{
	struct sg_password_params def = sg_password_params_default();
	if (!params)
		params = &def;
	if (!password || !out || outlen < SG_PASSWORD_PHC_MAX)
		return SG_ERR_INVALID;
	size_t pwlen = strnlen(password, SG_PASSWORD_MAX_LEN + 1);
	if (pwlen == 0 || pwlen > SG_PASSWORD_MAX_LEN)
		return SG_ERR_INVALID;
	if (params->ln < 10 || params->ln > 20 || !params_ok(params->ln, params->r, params->p))
		return SG_ERR_INVALID;
	unsigned char salt[SG_PASSWORD_SALT_LEN], dk[SG_PASSWORD_HASH_LEN];
	sg_err e = sg_random_bytes(salt, sizeof salt); /* per-user random salt */
	if (e != SG_OK)
		return e;
	e = sg_scrypt(password, pwlen, salt, sizeof salt, 1ull << params->ln, params->r, params->p,
	              dk, sizeof dk);
	if (e == SG_OK) {
		char bs[32], bh[48];
		phc_b64_encode(salt, sizeof salt, bs);
		phc_b64_encode(dk, sizeof dk, bh);
		int n = snprintf(out, outlen, "$scrypt$ln=%u,r=%u,p=%u$%s$%s", params->ln,
		                 params->r, params->p, bs, bh);
		if (n < 0 || (size_t)n >= outlen)
			e = SG_ERR_INTERNAL;
		OPENSSL_cleanse(bh, sizeof bh);
	}
	OPENSSL_cleanse(dk, sizeof dk);
	return e;
}

sg_err sg_password_verify(const char *password, const char *phc)
{
	struct phc h;
	if (!password || !phc_parse(phc, &h))
		return SG_ERR_INVALID;
	size_t pwlen = strnlen(password, SG_PASSWORD_MAX_LEN + 1);
	if (pwlen > SG_PASSWORD_MAX_LEN) {
		OPENSSL_cleanse(&h, sizeof h);
		return SG_ERR_DENIED;
	}
	unsigned char dk[64];
	sg_err e =
	    sg_scrypt(password, pwlen, h.salt, h.saltlen, 1ull << h.ln, h.r, h.p, dk, h.hashlen);
	if (e == SG_OK)
		e = CRYPTO_memcmp(dk, h.hash, h.hashlen) == 0 ? SG_OK : SG_ERR_DENIED;
	OPENSSL_cleanse(dk, sizeof dk);
	OPENSSL_cleanse(&h, sizeof h);
	return e;
}

bool sg_password_needs_rehash(const char *phc, const struct sg_password_params *params)
{
	struct sg_password_params def = sg_password_params_default();
	struct phc h;
	if (!params)
		params = &def;
	if (!phc_parse(phc, &h))
		return true;
	bool differ = h.ln != params->ln || h.r != params->r || h.p != params->p ||
	              h.saltlen != SG_PASSWORD_SALT_LEN || h.hashlen != SG_PASSWORD_HASH_LEN;
	OPENSSL_cleanse(&h, sizeof h);
	return differ;
}

/* ---- generated secrets ----------------------------------------------------------------- */

sg_err sg_secret_generate(char *out, size_t outlen)
{
	if (!out || outlen < SG_SECRET_STR_LEN)
		return SG_ERR_INVALID;
	return sg_random_token(out, outlen, SG_SECRET_BYTES);
}

sg_err sg_secret_digest(const unsigned char *pepper, size_t pepperlen, const char *secret,
                        unsigned char out[SG_SECRET_DIGEST])
{
	unsigned int n = 0;
	if (!pepper || pepperlen < SG_PEPPER_MIN || pepperlen > INT32_MAX || !secret)
		return SG_ERR_INVALID;
	if (!HMAC(EVP_sha256(), pepper, (int)pepperlen, (const unsigned char *)secret,
	          strlen(secret), out, &n) ||
	    n != SG_SECRET_DIGEST)
		return SG_ERR_TLS;
	return SG_OK;
}

bool sg_secret_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

bool sg_secret_check(const unsigned char *pepper, size_t pepperlen, const char *secret,
                     const unsigned char stored[SG_SECRET_DIGEST])
{
	unsigned char d[SG_SECRET_DIGEST];
	bool ok = sg_secret_digest(pepper, pepperlen, secret, d) == SG_OK &&
	          CRYPTO_memcmp(d, stored, SG_SECRET_DIGEST) == 0;
	OPENSSL_cleanse(d, sizeof d);
	return ok;
}

/* ---- PKCE ------------------------------------------------------------------------------ */

bool sg_pkce_verifier_valid(const char *v)
{
	if (!v)
		return false;
	size_t n = strnlen(v, SG_PKCE_VERIFIER_MAX + 1);
	if (n < SG_PKCE_VERIFIER_MIN || n > SG_PKCE_VERIFIER_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c =
		    v[i]; /* RFC 7636 §4.1 unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~" */
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_' || c == '~'))
			return false;
	}
	return true;
}

sg_err sg_pkce_s256_challenge(const char *verifier, char *out, size_t outlen)
{
	unsigned char d[SHA256_DIGEST_LENGTH];
	if (!sg_pkce_verifier_valid(verifier) || !out || outlen < SG_PKCE_CHALLENGE_LEN + 1)
		return SG_ERR_INVALID;
	SHA256((const unsigned char *)verifier, strlen(verifier), d);
	sg_b64url_encode(d, sizeof d, out);
	OPENSSL_cleanse(d, sizeof d);
	return SG_OK;
}

sg_err sg_pkce_s256_check(const char *verifier, const char *challenge)
{
	char computed[SG_PKCE_CHALLENGE_LEN + 1];
	if (!challenge)
		return SG_ERR_INVALID;
	sg_err e = sg_pkce_s256_challenge(verifier, computed, sizeof computed);
	if (e != SG_OK)
		return e;
	/* Compare the full 43 bytes whatever the challenge's length, in constant time. */
	char want[SG_PKCE_CHALLENGE_LEN + 1] = {0};
	size_t cl = strnlen(challenge, SG_PKCE_CHALLENGE_LEN + 1);
	memcpy(want, challenge, cl > SG_PKCE_CHALLENGE_LEN ? SG_PKCE_CHALLENGE_LEN : cl);
	bool ok = cl == SG_PKCE_CHALLENGE_LEN &&
	          CRYPTO_memcmp(computed, want, SG_PKCE_CHALLENGE_LEN) == 0;
	OPENSSL_cleanse(computed, sizeof computed);
	return ok ? SG_OK : SG_ERR_DENIED;
}

sg_err sg_pkce_generate(char *verifier, size_t vlen, char *challenge, size_t clen)
{
	if (!verifier || vlen < SG_SECRET_STR_LEN)
		return SG_ERR_INVALID;
	/* RFC 7636 §4.1 / §7.1: 32 random octets, base64url-encoded (43 characters). */
	sg_err e = sg_random_token(verifier, vlen, 32);
	if (e != SG_OK)
		return e;
	return sg_pkce_s256_challenge(verifier, challenge, clen);
}

/* ---- thumbprints ----------------------------------------------------------------------- */

void sg_secret_x5t_s256(const unsigned char digest[32], char out[SG_X5T_S256_LEN])
{
	sg_b64url_encode(digest, 32, out);
}

sg_err sg_secret_x5t_s256_der(const unsigned char *der, size_t derlen, char out[SG_X5T_S256_LEN])
{
	unsigned char d[SHA256_DIGEST_LENGTH];
	if (!der || derlen == 0)
		return SG_ERR_INVALID;
	SHA256(der, derlen, d);
	sg_secret_x5t_s256(d, out);
	return SG_OK;
}
