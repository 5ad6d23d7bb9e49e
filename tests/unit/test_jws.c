/* Unit tests of auth/jws: ES256 issue and verify, JWKS, the rejection table (RFC 8725 attacks,
 * RFC 7519 time rules, I7/I8/I10 claim checks), the verified-token cache, cjose interop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth/jws.h"
#include "base/b64.h"

#include <cjose/cjose.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1700000000LL
#define ISS "https://sim-s.example:8443"

static struct sg_jws_key *g_key;
static struct sg_jws_keyset *g_ks;
static EVP_PKEY *g_priv; /* the same key, loaded independently for forging test tokens */

static int setup(void **state)
{
	(void)state;
	char *pem = NULL;
	size_t pemlen = 0;
	if (sg_jws_key_generate(&g_key) != SG_OK || !(g_ks = sg_jws_keyset_new()) ||
	    sg_jws_keyset_add(g_ks, g_key) != SG_OK ||
	    sg_jws_key_private_pem(g_key, &pem, &pemlen) != SG_OK)
		return -1;
	BIO *bio = BIO_new_mem_buf(pem, (int)pemlen);
	g_priv = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	sg_jws_secret_free(pem, pemlen);
	return g_priv ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(g_priv);
	sg_jws_keyset_free(g_ks);
	sg_jws_key_free(g_key);
	return 0;
}

static struct sg_jws_policy policy(void)
{
	struct sg_jws_policy p = {
	    .iss = ISS, .aud = "gm", .scope = "seal:gm", .leeway = 30, .now = NOW};
	return p;
}

static char *b64s(const void *data, size_t n)
{
	char *out = malloc(sg_b64url_len(n) + 1);
	sg_b64url_encode(data, n, out);
	return out;
}

/* A raw ES256 signature (R || S) over msg, made with OpenSSL in the test, not by jws.c. */
static void raw_es256(const char *msg, unsigned char sig[64])
{
	unsigned char der[80];
	size_t derlen = sizeof der;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, g_priv), 1);
	assert_int_equal(EVP_DigestSign(md, der, &derlen, (const unsigned char *)msg, strlen(msg)),
	                 1);
	EVP_MD_CTX_free(md);
	const unsigned char *p = der;
	ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	const BIGNUM *r, *s;
	ECDSA_SIG_get0(es, &r, &s);
	BN_bn2binpad(r, sig, 32);
	BN_bn2binpad(s, sig + 32, 32);
	ECDSA_SIG_free(es);
}

enum how { ES256, UNSIGNED, HS256_PEM, HS256_JWK, ES256_DER, ES256_65 };

/* Builds BASE64URL(hdr) . BASE64URL(payload) . signature, "KID" in hdr replaced by our kid. */
static char *forge(const char *hdr_tmpl, const char *payload, enum how how)
{
	char hdr[1024];
	const char *k = strstr(hdr_tmpl, "KID");
	if (k)
		snprintf(hdr, sizeof hdr, "%.*s%s%s", (int)(k - hdr_tmpl), hdr_tmpl,
		         sg_jws_key_kid(g_key), k + 3);
	else
		snprintf(hdr, sizeof hdr, "%s", hdr_tmpl);
	char *h = b64s(hdr, strlen(hdr)), *p = b64s(payload, strlen(payload));
	char *input = malloc(strlen(h) + strlen(p) + 2);
	sprintf(input, "%s.%s", h, p);
	unsigned char sig[128];
	size_t siglen = 0;
	switch (how) {
	case ES256:
		raw_es256(input, sig);
		siglen = 64;
		break;
	case ES256_65:
		raw_es256(input, sig);
		sig[64] = 0;
		siglen = 65;
		break;
	case ES256_DER: {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		siglen = sizeof sig;
		assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, g_priv), 1);
		assert_int_equal(
		    EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, strlen(input)),
		    1);
		EVP_MD_CTX_free(md);
		break;
	}
	case UNSIGNED:
		break;
	case HS256_PEM:
	case HS256_JWK: {
		/* Algorithm confusion: the verifier's public key used as an HMAC secret. */
		char *secret = NULL;
		if (how == HS256_JWK) {
			json_t *jwk = sg_jws_key_public_jwk(g_key);
			secret = json_dumps(jwk, JSON_COMPACT);
			json_decref(jwk);
		} else {
			BIO *bio = BIO_new(BIO_s_mem());
			PEM_write_bio_PUBKEY(bio, g_priv);
			char *data;
			long n = BIO_get_mem_data(bio, &data);
			secret = strndup(data, (size_t)n);
			BIO_free(bio);
		}
		unsigned int n = 0;
		HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)input,
		     strlen(input), sig, &n);
		siglen = n;
		free(secret);
		break;
	}
	}
	char *s = b64s(sig, siglen);
	char *tok = malloc(strlen(input) + strlen(s) + 2);
	sprintf(tok, "%s.%s", input, s);
	free(h);
	free(p);
	free(input);
	free(s);
	return tok;
}

#define HDR "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"KID\"}"
#define P_OK                                                                                       \
	"{\"iss\":\"" ISS "\",\"sub\":\"u1\",\"aud\":\"gm\",\"exp\":1700000300,"                   \
	"\"iat\":1699999990,\"jti\":\"j1\",\"scope\":\"openid seal:gm\","                          \
	"\"client_id\":\"simc\"}"
#define P_TIMES(exp, iat, extra)                                                                   \
	"{\"iss\":\"" ISS "\",\"aud\":\"gm\",\"exp\":" #exp ",\"iat\":" #iat                       \
	",\"scope\":\"seal:gm\"" extra "}"
#define P_CLAIMS(iss_aud_scope)                                                                    \
	"{" iss_aud_scope ",\"exp\":1700000300,\"iat\":1699999990,\"client_id\":\"c\"}"

enum mutate {
	M_NONE,
	M_FLIP_SIG,
	M_FLIP_PAYLOAD,
	M_TRUNC_SIG,
	M_TWO_PARTS,
	M_EXTRA,
	M_B64_HDR,
	M_B64_SIG
};

static void apply(char *tok, enum mutate m)
{
	char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
	size_t n = strlen(tok);
	switch (m) {
	case M_NONE:
		break;
	case M_FLIP_SIG: { /* flip one bit of R, re-encode canonically */
		unsigned char sig[64];
		size_t sl = 0;
		assert_int_equal(sg_b64url_decode(d2 + 1, strlen(d2 + 1), sig, 64, &sl), SG_OK);
		sig[10] ^= 0x01;
		sg_b64url_encode(sig, 64, d2 + 1);
		break;
	}
	case M_FLIP_PAYLOAD: /* 'e' and 'f' differ in the low bit of their 6-bit values */
		d1[2] = d1[2] == 'A' ? 'B' : 'A';
		break;
	case M_TRUNC_SIG:
		tok[n - 10] = '\0';
		break;
	case M_TWO_PARTS:
		*d2 = '\0';
		break;
	case M_EXTRA:
		break; /* handled by the caller (needs room) */
	case M_B64_HDR:
		tok[3] = '+';
		break;
	case M_B64_SIG:
		d2[5] = '/';
		break;
	}
}

struct row {
	const char *name;
	const char *hdr;
	const char *payload;
	enum how how;
	enum mutate mut;
	sg_jws_status want;
};

static const struct row rows[] = {
    {"valid token", HDR, P_OK, ES256, M_NONE, SG_JWS_OK},
    {"alg none, unsigned", "{\"alg\":\"none\",\"typ\":\"JWT\"}", P_OK, UNSIGNED, M_NONE,
     SG_JWS_BAD_ALG},
    {"alg none with our kid", "{\"alg\":\"none\",\"kid\":\"KID\"}", P_OK, UNSIGNED, M_NONE,
     SG_JWS_BAD_ALG},
    {"alg None (case)", "{\"alg\":\"None\",\"kid\":\"KID\"}", P_OK, UNSIGNED, M_NONE,
     SG_JWS_BAD_ALG},
    {"HS256 keyed by public key PEM", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"KID\"}", P_OK,
     HS256_PEM, M_NONE, SG_JWS_BAD_ALG},
    {"HS256 keyed by public JWK", "{\"alg\":\"HS256\",\"kid\":\"KID\"}", P_OK, HS256_JWK, M_NONE,
     SG_JWS_BAD_ALG},
    {"RS256 header", "{\"alg\":\"RS256\",\"kid\":\"KID\"}", P_OK, ES256, M_NONE, SG_JWS_BAD_ALG},
    {"PS256 header", "{\"alg\":\"PS256\",\"kid\":\"KID\"}", P_OK, ES256, M_NONE, SG_JWS_BAD_ALG},
    {"ES384 header", "{\"alg\":\"ES384\",\"kid\":\"KID\"}", P_OK, ES256, M_NONE, SG_JWS_BAD_ALG},
    {"alg missing", "{\"typ\":\"JWT\",\"kid\":\"KID\"}", P_OK, ES256, M_NONE, SG_JWS_BAD_ALG},
    {"alg not a string", "{\"alg\":1,\"kid\":\"KID\"}", P_OK, ES256, M_NONE, SG_JWS_BAD_ALG},
    {"unknown kid", "{\"alg\":\"ES256\",\"kid\":\"nope\"}", P_OK, ES256, M_NONE,
     SG_JWS_UNKNOWN_KID},
    {"missing kid", "{\"alg\":\"ES256\",\"typ\":\"JWT\"}", P_OK, ES256, M_NONE, SG_JWS_UNKNOWN_KID},
    {"crit header", "{\"alg\":\"ES256\",\"kid\":\"KID\",\"crit\":[\"exp\"],\"exp\":1}", P_OK, ES256,
     M_NONE, SG_JWS_BAD_HEADER},
    {"embedded jwk header",
     "{\"alg\":\"ES256\",\"kid\":\"KID\",\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\"}}", P_OK, ES256,
     M_NONE, SG_JWS_BAD_HEADER},
    {"jku header", "{\"alg\":\"ES256\",\"kid\":\"KID\",\"jku\":\"https://evil/jwks\"}", P_OK, ES256,
     M_NONE, SG_JWS_BAD_HEADER},
    {"x5u header", "{\"alg\":\"ES256\",\"kid\":\"KID\",\"x5u\":\"https://evil/c.pem\"}", P_OK,
     ES256, M_NONE, SG_JWS_BAD_HEADER},
    {"duplicate header member", "{\"alg\":\"ES256\",\"alg\":\"ES256\",\"kid\":\"KID\"}", P_OK,
     ES256, M_NONE, SG_JWS_MALFORMED},
    {"bit-flipped signature", HDR, P_OK, ES256, M_FLIP_SIG, SG_JWS_BAD_SIGNATURE},
    {"bit-flipped payload", HDR, P_OK, ES256, M_FLIP_PAYLOAD, SG_JWS_BAD_SIGNATURE},
    {"truncated signature", HDR, P_OK, ES256, M_TRUNC_SIG, SG_JWS_BAD_SIGNATURE},
    {"truncated to two parts", HDR, P_OK, ES256, M_TWO_PARTS, SG_JWS_MALFORMED},
    {"extra segment", HDR, P_OK, ES256, M_EXTRA, SG_JWS_MALFORMED},
    {"bad base64url in header", HDR, P_OK, ES256, M_B64_HDR, SG_JWS_MALFORMED},
    {"bad base64url in signature", HDR, P_OK, ES256, M_B64_SIG, SG_JWS_MALFORMED},
    {"signature of 65 bytes", HDR, P_OK, ES256_65, M_NONE, SG_JWS_BAD_SIGNATURE},
    {"DER signature", HDR, P_OK, ES256_DER, M_NONE, SG_JWS_BAD_SIGNATURE},
    {"empty signature", HDR, P_OK, UNSIGNED, M_NONE, SG_JWS_BAD_SIGNATURE},
    {"payload not JSON", HDR, "not json", ES256, M_NONE, SG_JWS_MALFORMED},
    {"payload an array", HDR, "[1,2]", ES256, M_NONE, SG_JWS_MALFORMED},
    {"exp missing", HDR, "{\"iss\":\"" ISS "\",\"aud\":\"gm\",\"iat\":1699999990}", ES256, M_NONE,
     SG_JWS_MALFORMED},
    {"iat missing", HDR, "{\"iss\":\"" ISS "\",\"aud\":\"gm\",\"exp\":1700000300}", ES256, M_NONE,
     SG_JWS_MALFORMED},
    {"exp a string", HDR, P_TIMES("1700000300", 1699999990, ""), ES256, M_NONE, SG_JWS_MALFORMED},
    {"expired beyond leeway", HDR, P_TIMES(1699999969, 1699999000, ""), ES256, M_NONE,
     SG_JWS_EXPIRED},
    {"expired at the leeway edge", HDR, P_TIMES(1699999970, 1699999000, ""), ES256, M_NONE,
     SG_JWS_EXPIRED},
    {"expired within leeway", HDR, P_TIMES(1699999971, 1699999000, ""), ES256, M_NONE, SG_JWS_OK},
    {"exp as a real number", HDR, P_TIMES(1700000300.5, 1699999990, ""), ES256, M_NONE, SG_JWS_OK},
    {"iat in the future beyond leeway", HDR, P_TIMES(1700000300, 1700000031, ""), ES256, M_NONE,
     SG_JWS_NOT_YET_VALID},
    {"iat in the future within leeway", HDR, P_TIMES(1700000300, 1700000030, ""), ES256, M_NONE,
     SG_JWS_OK},
    {"nbf in the future", HDR, P_TIMES(1700000300, 1699999990, ",\"nbf\":1700000060"), ES256,
     M_NONE, SG_JWS_NOT_YET_VALID},
    {"nbf in the past", HDR, P_TIMES(1700000300, 1699999990, ",\"nbf\":1699999990"), ES256, M_NONE,
     SG_JWS_OK},
    {"wrong iss", HDR,
     P_CLAIMS("\"iss\":\"https://evil.example\",\"aud\":\"gm\",\"scope\":\"seal:gm\""), ES256,
     M_NONE, SG_JWS_WRONG_ISSUER},
    {"iss with trailing slash", HDR,
     P_CLAIMS("\"iss\":\"" ISS "/\",\"aud\":\"gm\",\"scope\":\"seal:gm\""), ES256, M_NONE,
     SG_JWS_WRONG_ISSUER},
    {"iss missing", HDR, P_CLAIMS("\"aud\":\"gm\",\"scope\":\"seal:gm\""), ES256, M_NONE,
     SG_JWS_WRONG_ISSUER},
    {"wrong aud (string)", HDR,
     P_CLAIMS("\"iss\":\"" ISS "\",\"aud\":\"km\",\"scope\":\"seal:gm\""), ES256, M_NONE,
     SG_JWS_WRONG_AUDIENCE},
    {"wrong aud (array)", HDR,
     P_CLAIMS("\"iss\":\"" ISS "\",\"aud\":[\"km\",\"sdd\"],\"scope\":\"seal:gm\""), ES256, M_NONE,
     SG_JWS_WRONG_AUDIENCE},
    {"aud array containing ours", HDR,
     P_CLAIMS("\"iss\":\"" ISS "\",\"aud\":[\"km\",\"gm\"],\"scope\":\"seal:gm\""), ES256, M_NONE,
     SG_JWS_OK},
    {"aud missing", HDR, P_CLAIMS("\"iss\":\"" ISS "\",\"scope\":\"seal:gm\""), ES256, M_NONE,
     SG_JWS_WRONG_AUDIENCE},
    {"missing scope", HDR,
     P_CLAIMS("\"iss\":\"" ISS "\",\"aud\":\"gm\",\"scope\":\"openid seal:km\""), ES256, M_NONE,
     SG_JWS_INSUFFICIENT_SCOPE},
    {"scope prefix only", HDR,
     P_CLAIMS("\"iss\":\"" ISS "\",\"aud\":\"gm\",\"scope\":\"seal:gmx seal\""), ES256, M_NONE,
     SG_JWS_INSUFFICIENT_SCOPE},
    {"no scope claim", HDR, P_CLAIMS("\"iss\":\"" ISS "\",\"aud\":\"gm\""), ES256, M_NONE,
     SG_JWS_INSUFFICIENT_SCOPE},
};

static void test_rejection_table(void **state)
{
	(void)state;
	struct sg_jws_policy pol = policy();
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char *tok = forge(rows[i].hdr, rows[i].payload, rows[i].how);
		if (rows[i].mut == M_EXTRA) {
			char *t2 = malloc(strlen(tok) + 8);
			sprintf(t2, "%s.e30", tok);
			free(tok);
			tok = t2;
		}
		apply(tok, rows[i].mut);
		char err[256] = "";
		json_t *claims = NULL;
		sg_jws_status st = sg_jws_verify(g_ks, tok, &pol, &claims, err, sizeof err);
		if (st != rows[i].want)
			fail_msg("row \"%s\": got %s (%s), want %s", rows[i].name,
			         sg_jws_status_str(st), err, sg_jws_status_str(rows[i].want));
		assert_true((st == SG_JWS_OK) == (claims != NULL));
		if (st != SG_JWS_OK)
			assert_true(err[0] != '\0');
		assert_null(strstr(err, tok)); /* the token is never echoed */
		json_decref(claims);
		free(tok);
	}
}

static void test_oauth_error_mapping(void **state)
{
	(void)state;
	assert_string_equal(sg_jws_status_oauth_error(SG_JWS_INSUFFICIENT_SCOPE),
	                    "insufficient_scope");
	for (int s = SG_JWS_MALFORMED; s <= SG_JWS_REVOKED; s++)
		if (s != SG_JWS_INSUFFICIENT_SCOPE)
			assert_string_equal(sg_jws_status_oauth_error((sg_jws_status)s),
			                    "invalid_token");
	assert_null(sg_jws_status_oauth_error(SG_JWS_OK));
	assert_null(sg_jws_status_oauth_error(SG_JWS_INTERNAL));
}

static json_t *claims_ok(const char *jti)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "iss", ISS, "sub", "u-1",
	                 "aud", "gm", "exp", (json_int_t)(NOW + 300), "iat", (json_int_t)NOW, "jti",
	                 jti, "scope", "openid seal:gm sdd", "client_id", "simc");
}

static void test_sign_verify_round_trip(void **state)
{
	(void)state;
	json_t *c = claims_ok("rt");
	char *tok = NULL;
	assert_int_equal(sg_jws_sign(g_key, c, &tok), SG_OK);
	struct sg_jws_policy pol = policy();
	pol.scope = "sdd seal:gm";
	json_t *out = NULL;
	char err[128];
	assert_int_equal(sg_jws_verify(g_ks, tok, &pol, &out, err, sizeof err), SG_JWS_OK);
	assert_true(json_equal(out, c));
	json_decref(out);
	/* Header: alg ES256, typ JWT, our kid. */
	unsigned char hdr[256];
	size_t n = 0;
	assert_int_equal(
	    sg_b64url_decode(tok, (size_t)(strchr(tok, '.') - tok), hdr, sizeof hdr, &n), SG_OK);
	json_t *h = json_loadb((const char *)hdr, n, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(h, "alg")), "ES256");
	assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
	assert_string_equal(json_string_value(json_object_get(h, "kid")), sg_jws_key_kid(g_key));
	json_decref(h);
	/* An ID token (typ JWT) is refused where an access token (at+jwt, RFC 9068) is due. */
	pol.typ = SG_JWS_TYP_AT;
	assert_int_equal(sg_jws_verify(g_ks, tok, &pol, NULL, NULL, 0), SG_JWS_WRONG_TYPE);
	free(tok);
	assert_int_equal(sg_jws_sign_typ(g_key, SG_JWS_TYP_AT, c, &tok), SG_OK);
	assert_int_equal(sg_jws_verify(g_ks, tok, &pol, NULL, NULL, 0), SG_JWS_OK);
	pol.typ = "application/AT+JWT";
	assert_int_equal(sg_jws_verify(g_ks, tok, &pol, NULL, NULL, 0), SG_JWS_OK);
	/* Length limit. */
	pol.max_len = strlen(tok) - 1;
	assert_int_equal(sg_jws_verify(g_ks, tok, &pol, NULL, NULL, 0), SG_JWS_MALFORMED);
	/* A leeway above 30 s (I7) is a policy error, not an accepted token. */
	pol.max_len = 0;
	pol.leeway = 31;
	assert_int_equal(sg_jws_verify(g_ks, tok, &pol, NULL, NULL, 0), SG_JWS_INTERNAL);
	free(tok);
	json_decref(c);
}

static void test_pem_round_trip(void **state)
{
	(void)state;
	char *pem = NULL;
	size_t pemlen = 0;
	assert_int_equal(sg_jws_key_private_pem(g_key, &pem, &pemlen), SG_OK);
	assert_non_null(strstr(pem, "BEGIN PRIVATE KEY"));
	struct sg_jws_key *k2 = NULL;
	char err[256];
	assert_int_equal(
	    sg_jws_key_from_pem(pem, pemlen, sg_jws_key_kid(g_key), &k2, err, sizeof err), SG_OK);
	sg_jws_secret_free(pem, pemlen);
	json_t *c = claims_ok("pem");
	char *tok = NULL;
	assert_int_equal(sg_jws_sign(k2, c, &tok), SG_OK);
	struct sg_jws_policy pol = policy();
	assert_int_equal(sg_jws_verify(g_ks, tok, &pol, NULL, NULL, 0), SG_JWS_OK);
	free(tok);
	json_decref(c);
	sg_jws_key_free(k2);
	/* Not P-256: refused. */
	EVP_PKEY *p384 = EVP_EC_gen("secp384r1");
	BIO *bio = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(bio, p384, NULL, NULL, 0, NULL, NULL);
	char *data;
	long n = BIO_get_mem_data(bio, &data);
	assert_int_equal(sg_jws_key_from_pem(data, (size_t)n, "k", &k2, err, sizeof err),
	                 SG_ERR_INVALID);
	BIO_free(bio);
	EVP_PKEY_free(p384);
	assert_int_equal(sg_jws_key_from_pem("junk", 4, "k", &k2, err, sizeof err), SG_ERR_INVALID);
}

static void test_jwks_public_only(void **state)
{
	(void)state;
	struct sg_jws_key *k2 = NULL;
	assert_int_equal(sg_jws_key_generate(&k2), SG_OK);
	assert_string_not_equal(sg_jws_key_kid(k2), sg_jws_key_kid(g_key));
	struct sg_jws_keyset *ks = sg_jws_keyset_new();
	assert_int_equal(sg_jws_keyset_add(ks, g_key), SG_OK);
	assert_int_equal(sg_jws_keyset_add(ks, k2), SG_OK);
	assert_int_equal(sg_jws_keyset_add(ks, k2), SG_ERR_EXISTS);
	json_t *jwks = sg_jws_keyset_to_jwks(ks);
	char *s = json_dumps(jwks, JSON_COMPACT);
	assert_null(strstr(s, "\"d\""));
	json_t *keys = json_object_get(jwks, "keys");
	assert_int_equal(json_array_size(keys), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *k = json_array_get(keys, i);
		assert_int_equal(json_object_size(k), 7);
		assert_string_equal(json_string_value(json_object_get(k, "kty")), "EC");
		assert_string_equal(json_string_value(json_object_get(k, "crv")), "P-256");
		assert_string_equal(json_string_value(json_object_get(k, "use")), "sig");
		assert_string_equal(json_string_value(json_object_get(k, "alg")), "ES256");
		assert_int_equal(strlen(json_string_value(json_object_get(k, "x"))), 43);
		assert_int_equal(strlen(json_string_value(json_object_get(k, "y"))), 43);
	}
	/* Parsed back, the set verifies tokens of both keys. */
	struct sg_jws_keyset *parsed = NULL;
	char err[256];
	assert_int_equal(sg_jws_keyset_parse(s, strlen(s), &parsed, err, sizeof err), SG_OK);
	assert_int_equal(sg_jws_keyset_count(parsed), 2);
	json_t *c = claims_ok("jwks");
	char *tok = NULL;
	assert_int_equal(sg_jws_sign(k2, c, &tok), SG_OK);
	struct sg_jws_policy pol = policy();
	assert_int_equal(sg_jws_verify(parsed, tok, &pol, NULL, NULL, 0), SG_JWS_OK);
	/* Rotation: once the key leaves the set, its tokens are unknown_kid. */
	uint64_t gen = sg_jws_keyset_generation(parsed);
	assert_int_equal(sg_jws_keyset_remove(parsed, sg_jws_key_kid(k2)), SG_OK);
	assert_int_equal(sg_jws_keyset_remove(parsed, sg_jws_key_kid(k2)), SG_ERR_NOTFOUND);
	assert_true(sg_jws_keyset_generation(parsed) > gen);
	assert_int_equal(sg_jws_verify(parsed, tok, &pol, NULL, NULL, 0), SG_JWS_UNKNOWN_KID);
	free(tok);
	json_decref(c);
	free(s);
	json_decref(jwks);
	sg_jws_keyset_free(parsed);
	sg_jws_keyset_free(ks);
	sg_jws_key_free(k2);
}

static void test_jwks_parse_foreign(void **state)
{
	(void)state;
	json_t *ec = sg_jws_key_public_jwk(g_key);
	json_object_set_new(ec, "d", json_string("AAAA")); /* a careless publisher: dropped */
	json_t *doc = json_pack("{s:[{s:s, s:s, s:s, s:s, s:s}, O, {s:s, s:s, s:s, s:s, s:s, s:s},"
	                        " {s:s, s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s}]}",
	                        "keys", "kty", "RSA", "kid", "rsa-1", "use", "sig", "n", "sXch",
	                        "e", "AQAB", ec, "kty", "EC", "crv", "P-384", "kid", "p384", "x",
	                        "AAAA", "y", "AAAA", "use", "sig", "kty", "EC", "crv", "P-256",
	                        "kid", "enc-1", "x", json_string_value(json_object_get(ec, "x")),
	                        "y", json_string_value(json_object_get(ec, "y")), "use", "enc",
	                        /* not on the curve: x, y = 1, 1 */
	                        "kty", "EC", "crv", "P-256", "kid", "bad-point", "x",
	                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE", "y",
	                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE");
	assert_non_null(doc);
	char *s = json_dumps(doc, JSON_COMPACT);
	struct sg_jws_keyset *ks = NULL;
	char err[256];
	assert_int_equal(sg_jws_keyset_parse(s, strlen(s), &ks, err, sizeof err), SG_OK);
	assert_int_equal(sg_jws_keyset_count(ks), 1);
	assert_true(sg_jws_keyset_has(ks, sg_jws_key_kid(g_key)));
	assert_false(sg_jws_keyset_has(ks, "rsa-1"));
	json_t *out = sg_jws_keyset_to_jwks(ks);
	char *o = json_dumps(out, JSON_COMPACT);
	assert_null(strstr(o, "\"d\""));
	/* The parsed set verifies our tokens. */
	json_t *c = claims_ok("foreign");
	char *tok = NULL;
	assert_int_equal(sg_jws_sign(g_key, c, &tok), SG_OK);
	struct sg_jws_policy pol = policy();
	assert_int_equal(sg_jws_verify(ks, tok, &pol, NULL, NULL, 0), SG_JWS_OK);
	free(tok);
	json_decref(c);
	free(o);
	json_decref(out);
	sg_jws_keyset_free(ks);
	free(s);
	json_decref(doc);
	json_decref(ec);
	/* Not a JWKS at all. */
	static const char *bad[] = {"[]", "{}", "{\"keys\":{}}", "not json", ""};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(sg_jws_keyset_parse(bad[i], strlen(bad[i]), &ks, err, sizeof err),
		                 SG_ERR_INVALID);
		assert_null(ks);
	}
}

/* ---- cache ----------------------------------------------------------------------------- */

static bool g_revoked;
static int g_revoked_calls;
static bool revoked_cb(void *arg, const json_t *claims)
{
	(void)arg;
	(void)claims;
	g_revoked_calls++;
	return g_revoked;
}

static void test_cache_hit_expiry_revocation(void **state)
{
	(void)state;
	struct sg_jws_cache *c = sg_jws_cache_new(64);
	assert_non_null(c);
	json_t *cl = claims_ok("cache-1");
	char *tok = NULL;
	assert_int_equal(sg_jws_sign(g_key, cl, &tok), SG_OK);
	struct sg_jws_policy pol = policy();
	struct sg_jws_cache_stats st;
	json_t *out = NULL;
	g_revoked = false;
	g_revoked_calls = 0;

	/* Miss, then hit. */
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, revoked_cb, NULL, &out, NULL, 0),
	                 SG_JWS_OK);
	assert_true(json_equal(out, cl));
	json_decref(out);
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, revoked_cb, NULL, &out, NULL, 0),
	                 SG_JWS_OK);
	assert_true(json_equal(out, cl));
	json_decref(out);
	sg_jws_cache_stats(c, &st);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.entries, 1);
	assert_int_equal(g_revoked_calls, 1);

	/* A hit still applies the route's policy. */
	pol.scope = "seal:km";
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, NULL, NULL, NULL, NULL, 0),
	                 SG_JWS_INSUFFICIENT_SCOPE);
	pol.scope = "seal:gm";
	pol.aud = "km";
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, NULL, NULL, NULL, NULL, 0),
	                 SG_JWS_WRONG_AUDIENCE);
	pol.aud = "gm";
	pol.typ = SG_JWS_TYP_AT;
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, NULL, NULL, NULL, NULL, 0),
	                 SG_JWS_WRONG_TYPE);
	pol.typ = NULL;

	/* Expired entries are never served. */
	pol.now = NOW + 300 + 31;
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, NULL, NULL, &out, NULL, 0),
	                 SG_JWS_EXPIRED);
	assert_null(out);
	pol.now = NOW + 300 + 29; /* within the leeway: still fine */
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, NULL, NULL, NULL, NULL, 0),
	                 SG_JWS_OK);
	pol.now = NOW + 300 + 10; /* without leeway: expired even when cached */
	pol.leeway = 0;
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, NULL, NULL, NULL, NULL, 0),
	                 SG_JWS_EXPIRED);
	pol = policy();

	/* Revocation: until the generation moves, the cached verdict stands; after, the
	 * predicate is consulted again and refuses. */
	g_revoked = true;
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, revoked_cb, NULL, NULL, NULL, 0),
	                 SG_JWS_OK);
	sg_jws_cache_bump(c);
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, revoked_cb, NULL, NULL, NULL, 0),
	                 SG_JWS_REVOKED);
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, revoked_cb, NULL, NULL, NULL, 0),
	                 SG_JWS_REVOKED); /* and a revoked token is not cached */
	g_revoked = false;
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok, &pol, revoked_cb, NULL, NULL, NULL, 0),
	                 SG_JWS_OK);
	/* After a bump a cached token costs the predicate once, not a signature check: both
	 * verifications below are hits, and the second does not ask again. */
	sg_jws_cache_stats(c, &st);
	uint64_t hits0 = st.hits, misses0 = st.misses;
	int calls0 = g_revoked_calls;
	sg_jws_cache_bump(c);
	for (int i = 0; i < 2; i++)
		assert_int_equal(
		    sg_jws_verify_cached(c, g_ks, tok, &pol, revoked_cb, NULL, NULL, NULL, 0),
		    SG_JWS_OK);
	sg_jws_cache_stats(c, &st);
	assert_int_equal(st.hits, hits0 + 2);
	assert_int_equal(st.misses, misses0);
	assert_int_equal(g_revoked_calls, calls0 + 1);

	/* A key leaving the set invalidates the tokens it signed, cached or not. */
	struct sg_jws_key *k2 = NULL;
	assert_int_equal(sg_jws_key_generate(&k2), SG_OK);
	struct sg_jws_keyset *ks = sg_jws_keyset_new();
	assert_int_equal(sg_jws_keyset_add(ks, k2), SG_OK);
	char *tok2 = NULL;
	assert_int_equal(sg_jws_sign(k2, cl, &tok2), SG_OK);
	assert_int_equal(sg_jws_verify_cached(c, ks, tok2, &pol, NULL, NULL, NULL, NULL, 0),
	                 SG_JWS_OK);
	/* The same token against another key set is not served from the cache. */
	assert_int_equal(sg_jws_verify_cached(c, g_ks, tok2, &pol, NULL, NULL, NULL, NULL, 0),
	                 SG_JWS_UNKNOWN_KID);
	assert_int_equal(sg_jws_keyset_remove(ks, sg_jws_key_kid(k2)), SG_OK);
	assert_int_equal(sg_jws_verify_cached(c, ks, tok2, &pol, NULL, NULL, NULL, NULL, 0),
	                 SG_JWS_UNKNOWN_KID);
	/* Rejections are never cached. */
	char *bad = forge("{\"alg\":\"none\"}", P_OK, UNSIGNED);
	for (int i = 0; i < 2; i++)
		assert_int_equal(
		    sg_jws_verify_cached(c, g_ks, bad, &pol, NULL, NULL, NULL, NULL, 0),
		    SG_JWS_BAD_ALG);
	free(bad);
	sg_jws_cache_clear(c);
	sg_jws_cache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	free(tok2);
	sg_jws_keyset_free(ks);
	sg_jws_key_free(k2);
	free(tok);
	json_decref(cl);
	sg_jws_cache_free(c);
}

static void test_cache_bounded(void **state)
{
	(void)state;
	struct sg_jws_cache *c = sg_jws_cache_new(4);
	struct sg_jws_policy pol = policy();
	char *toks[20];
	for (int i = 0; i < 20; i++) {
		char jti[16];
		snprintf(jti, sizeof jti, "b-%d", i);
		json_t *cl = claims_ok(jti);
		assert_int_equal(sg_jws_sign(g_key, cl, &toks[i]), SG_OK);
		json_decref(cl);
		assert_int_equal(
		    sg_jws_verify_cached(c, g_ks, toks[i], &pol, NULL, NULL, NULL, NULL, 0),
		    SG_JWS_OK);
	}
	struct sg_jws_cache_stats st;
	sg_jws_cache_stats(c, &st);
	assert_true(st.entries <= 4);
	assert_int_equal(st.inserts, 20);
	assert_int_equal(st.evictions, 20 - st.entries);
	/* The most recent token is still cached; the first was evicted. */
	assert_int_equal(sg_jws_verify_cached(c, g_ks, toks[19], &pol, NULL, NULL, NULL, NULL, 0),
	                 SG_JWS_OK);
	assert_int_equal(sg_jws_verify_cached(c, g_ks, toks[0], &pol, NULL, NULL, NULL, NULL, 0),
	                 SG_JWS_OK);
	struct sg_jws_cache_stats st2;
	sg_jws_cache_stats(c, &st2);
	assert_int_equal(st2.hits, st.hits + 1);
	assert_int_equal(st2.misses, st.misses + 1);
	for (int i = 0; i < 20; i++)
		free(toks[i]);
	sg_jws_cache_free(c);
}

struct thr {
	struct sg_jws_cache *c;
	char **toks;
	int ntoks, fails;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	struct sg_jws_policy pol = policy();
	for (int i = 0; i < 400; i++) {
		json_t *out = NULL;
		if (sg_jws_verify_cached(t->c, g_ks, t->toks[i % t->ntoks], &pol, NULL, NULL, &out,
		                         NULL, 0) != SG_JWS_OK ||
		    !json_is_string(json_object_get(out, "jti")))
			t->fails++;
		json_decref(out);
		if (i % 100 == 99)
			sg_jws_cache_bump(t->c);
	}
	return NULL;
}

static void test_cache_threads(void **state)
{
	(void)state;
	struct sg_jws_cache *c = sg_jws_cache_new(16);
	char *toks[24];
	for (int i = 0; i < 24; i++) {
		char jti[16];
		snprintf(jti, sizeof jti, "t-%d", i);
		json_t *cl = claims_ok(jti);
		assert_int_equal(sg_jws_sign(g_key, cl, &toks[i]), SG_OK);
		json_decref(cl);
	}
	pthread_t th[4];
	struct thr t[4];
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){.c = c, .toks = toks, .ntoks = 24 - i * 5};
		assert_int_equal(pthread_create(&th[i], NULL, thr_main, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].fails, 0);
	}
	struct sg_jws_cache_stats st;
	sg_jws_cache_stats(c, &st);
	assert_true(st.entries <= 16);
	assert_int_equal(st.hits + st.misses, 1600);
	for (int i = 0; i < 24; i++)
		free(toks[i]);
	sg_jws_cache_free(c);
}

/* Signing reuses the key's signing contexts and prebuilt headers: from several threads at
 * once, for both prebuilt types and another one, every token verifies, carries its own typ,
 * and no two signatures repeat (a fresh ECDSA nonce each time). */
struct sign_thr {
	int idx, fails;
	char *sigs[150];
};

static void *sign_thr_main(void *arg)
{
	struct sign_thr *t = arg;
	static const char *const typs[] = {SG_JWS_TYP_JWT, SG_JWS_TYP_AT, "dpop+jwt"};
	json_t *cl = claims_ok("same");
	for (int i = 0; i < 150; i++) {
		const char *typ = typs[(i + t->idx) % 3];
		char *tok = NULL;
		struct sg_jws_policy pol = policy();
		pol.typ = typ;
		if (sg_jws_sign_typ(g_key, typ, cl, &tok) != SG_OK ||
		    sg_jws_verify(g_ks, tok, &pol, NULL, NULL, 0) != SG_JWS_OK) {
			t->fails++;
			t->sigs[i] = NULL;
		} else {
			t->sigs[i] = strdup(strrchr(tok, '.') + 1);
		}
		free(tok);
	}
	json_decref(cl);
	return NULL;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_sign_threads_reuse(void **state)
{
	(void)state;
	pthread_t th[4];
	struct sign_thr t[4];
	for (int i = 0; i < 4; i++) {
		memset(&t[i], 0, sizeof t[i]);
		t[i].idx = i;
		assert_int_equal(pthread_create(&th[i], NULL, sign_thr_main, &t[i]), 0);
	}
	char *all[600];
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].fails, 0);
		memcpy(all + i * 150, t[i].sigs, sizeof t[i].sigs);
	}
	qsort(all, 600, sizeof all[0], cmp_strp);
	for (int i = 1; i < 600; i++)
		assert_true(strcmp(all[i - 1], all[i]) != 0);
	for (int i = 0; i < 600; i++)
		free(all[i]);
	/* the header of a type without a prebuilt header */
	json_t *cl = claims_ok("dpop");
	char *tok = NULL;
	assert_int_equal(sg_jws_sign_typ(g_key, "dpop+jwt", cl, &tok), SG_OK);
	unsigned char hdr[256];
	size_t n = 0;
	assert_int_equal(
	    sg_b64url_decode(tok, (size_t)(strchr(tok, '.') - tok), hdr, sizeof hdr, &n), SG_OK);
	json_t *h = json_loadb((const char *)hdr, n, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(h, "typ")), "dpop+jwt");
	assert_string_equal(json_string_value(json_object_get(h, "alg")), "ES256");
	assert_string_equal(json_string_value(json_object_get(h, "kid")), sg_jws_key_kid(g_key));
	json_decref(h);
	free(tok);
	/* a key read back from PEM signs with its own contexts: the original still verifies it */
	char *pem = NULL;
	size_t pemlen = 0;
	struct sg_jws_key *k2 = NULL;
	assert_int_equal(sg_jws_key_private_pem(g_key, &pem, &pemlen), SG_OK);
	assert_int_equal(sg_jws_key_from_pem(pem, pemlen, sg_jws_key_kid(g_key), &k2, NULL, 0),
	                 SG_OK);
	sg_jws_secret_free(pem, pemlen);
	struct sg_jws_policy pol = policy();
	for (int i = 0; i < 3; i++) {
		assert_int_equal(sg_jws_sign(k2, cl, &tok), SG_OK);
		assert_int_equal(sg_jws_verify(g_ks, tok, &pol, NULL, NULL, 0), SG_JWS_OK);
		free(tok);
	}
	sg_jws_key_free(k2);
	json_decref(cl);
}

/* ---- interoperability with cjose ------------------------------------------------------- */

static void test_cjose_verifies_ours(void **state)
{
	(void)state;
	json_t *jwk = sg_jws_key_public_jwk(g_key);
	char *js = json_dumps(jwk, JSON_COMPACT);
	cjose_err cerr;
	cjose_jwk_t *cj = cjose_jwk_import(js, strlen(js), &cerr);
	assert_non_null(cj);
	json_t *cl = claims_ok("to-cjose");
	for (int i = 0; i < 64; i++) { /* many signatures: R or S with leading zero bytes */
		char *tok = NULL;
		assert_int_equal(sg_jws_sign(g_key, cl, &tok), SG_OK);
		cjose_jws_t *jws = cjose_jws_import(tok, strlen(tok), &cerr);
		assert_non_null(jws);
		if (!cjose_jws_verify(jws, cj, &cerr))
			fail_msg("cjose rejected our token: %s", cerr.message);
		uint8_t *pt = NULL;
		size_t ptlen = 0;
		assert_true(cjose_jws_get_plaintext(jws, &pt, &ptlen, &cerr));
		json_t *back = json_loadb((const char *)pt, ptlen, 0, NULL);
		assert_true(json_equal(back, cl));
		json_decref(back);
		cjose_jws_release(jws);
		free(tok);
	}
	json_decref(cl);
	cjose_jwk_release(cj);
	free(js);
	json_decref(jwk);
}

static void test_we_verify_cjose(void **state)
{
	(void)state;
	cjose_err cerr;
	cjose_jwk_t *cj = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &cerr);
	assert_non_null(cj);
	assert_true(cjose_jwk_set_kid(cj, "cjose-key", 9, &cerr));
	char *pub = cjose_jwk_to_json(cj, false, &cerr);
	assert_non_null(pub);
	json_t *jwk = json_loads(pub, 0, NULL);
	assert_null(json_object_get(jwk, "d"));
	struct sg_jws_keyset *ks = sg_jws_keyset_new();
	char err[256];
	assert_int_equal(sg_jws_keyset_add_jwk(ks, jwk, err, sizeof err), SG_OK);
	cjose_header_t *hdr = cjose_header_new(&cerr);
	assert_true(cjose_header_set(hdr, CJOSE_HDR_ALG, CJOSE_HDR_ALG_ES256, &cerr));
	assert_true(cjose_header_set(hdr, CJOSE_HDR_KID, "cjose-key", &cerr));
	assert_true(cjose_header_set(hdr, "typ", "at+jwt", &cerr));
	json_t *cl = claims_ok("from-cjose");
	char *payload = json_dumps(cl, JSON_COMPACT);
	struct sg_jws_policy pol = policy();
	pol.typ = SG_JWS_TYP_AT;
	for (int i = 0; i < 64; i++) {
		cjose_jws_t *jws =
		    cjose_jws_sign(cj, hdr, (const uint8_t *)payload, strlen(payload), &cerr);
		assert_non_null(jws);
		const char *tok = NULL;
		assert_true(cjose_jws_export(jws, &tok, &cerr));
		json_t *out = NULL;
		sg_jws_status st = sg_jws_verify(ks, tok, &pol, &out, err, sizeof err);
		if (st != SG_JWS_OK)
			fail_msg("cjose token refused: %s (%s)", sg_jws_status_str(st), err);
		assert_true(json_equal(out, cl));
		json_decref(out);
		cjose_jws_release(jws);
	}
	free(payload);
	json_decref(cl);
	cjose_header_release(hdr);
	sg_jws_keyset_free(ks);
	json_decref(jwk);
	free(pub);
	cjose_jwk_release(cj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sign_verify_round_trip),
	    cmocka_unit_test(test_rejection_table),
	    cmocka_unit_test(test_oauth_error_mapping),
	    cmocka_unit_test(test_pem_round_trip),
	    cmocka_unit_test(test_jwks_public_only),
	    cmocka_unit_test(test_jwks_parse_foreign),
	    cmocka_unit_test(test_cache_hit_expiry_revocation),
	    cmocka_unit_test(test_cache_bounded),
	    cmocka_unit_test(test_cache_threads),
	    cmocka_unit_test(test_sign_threads_reuse),
	    cmocka_unit_test(test_cjose_verifies_ours),
	    cmocka_unit_test(test_we_verify_cjose),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
