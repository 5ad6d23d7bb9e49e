/* Unit tests of auth/policy and auth/remote: the token decision table of every kind of
 * listener (TS 33.434 §5.1.1 R1/R3/R4, I10, RFC 6750 §3, RFC 8705 §3.1), with and without the
 * verified-token cache; revocation through the applied revocation list (also of a cached
 * token); JWKS updates (new kid, removed kid); readiness; scopes and VAL user ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth/jws.h"
#include "auth/policy.h"
#include "auth/remote.h"
#include "auth/secret.h"
#include "base/b64.h"
#include "conf/conf.h"
#include "tls/tls.h"

#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ISS "https://idm.example:9443"

static struct sg_jws_key *g_key, *g_other;
static struct sg_tls_principal g_cert_a, g_cert_b;
static char g_x5t_a[SG_X5T_S256_LEN], g_x5t_b[SG_X5T_S256_LEN];

static int setup(void **state)
{
	(void)state;
	if (sg_jws_key_generate(&g_key) != SG_OK || sg_jws_key_generate(&g_other) != SG_OK)
		return -1;
	static char san_a[] = "DNS:val-a", san_b[] = "DNS:val-b";
	g_cert_a = (struct sg_tls_principal){.authenticated = 1, .nsans = 1};
	g_cert_a.sans[0] = san_a;
	g_cert_b = (struct sg_tls_principal){.authenticated = 1, .nsans = 1};
	g_cert_b.sans[0] = san_b;
	RAND_bytes(g_cert_a.cert_sha256, 32);
	RAND_bytes(g_cert_b.cert_sha256, 32);
	sg_secret_x5t_s256(g_cert_a.cert_sha256, g_x5t_a);
	sg_secret_x5t_s256(g_cert_b.cert_sha256, g_x5t_b);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sg_jws_key_free(g_key);
	sg_jws_key_free(g_other);
	return 0;
}

/* A policy for a gm resource server with the three kinds of listener, its remote client fed
 * by hand (no network): the JWKS of g_key and an empty revocation list. */
static struct sg_policy *new_policy(struct sg_conf **confp, unsigned cache_entries)
{
	char yaml[1024], err[512] = "";
	snprintf(
	    yaml, sizeof yaml,
	    "state_dir: /tmp/sg-test-policy\n"
	    "roles: [gm]\n"
	    "idm: {issuer: \"%s\"}\n"
	    "resource: {idm_url: \"https://idm.example:9445\", token_cache_entries: %u}\n"
	    "reference_points:\n"
	    "  - {name: SEAL-UU, bind: \"127.0.0.1:1\", tls: {mode: server-auth}, auth: bearer,"
	    " services: [gm]}\n"
	    "  - {name: SEAL-S, bind: \"127.0.0.1:2\", tls: {mode: mutual}, auth: mtls+bearer,"
	    " services: [gm]}\n"
	    "  - {name: SEAL-E, bind: \"127.0.0.1:3\", tls: {mode: mutual}, auth: mtls,"
	    " services: [gm]}\n",
	    ISS, cache_entries);
	struct sg_conf *c = NULL;
	assert_int_equal(sg_conf_load_string(yaml, "policy.yaml", &c, err, sizeof err), SG_OK);
	assert_int_equal(sg_conf_finish(c, NULL, NULL, err, sizeof err), SG_OK);
	struct sg_policy *p = NULL;
	assert_int_equal(sg_policy_new(c, &p, err, sizeof err), SG_OK);
	assert_non_null(sg_policy_remote(p));
	/* not ready before the JWKS and a revocation list arrived: 503, never a guess */
	struct sg_policy_decision d;
	sg_policy_check(p, SG_AUTH_BEARER, NULL, "Bearer x.y.z", "sealguard:gm", "seal:gm", NULL,
	                &d);
	assert_int_equal(d.status, 503);
	struct sg_jws_keyset *ks = sg_jws_keyset_new();
	assert_int_equal(sg_jws_keyset_add(ks, g_key), SG_OK);
	json_t *jwks = sg_jws_keyset_to_jwks(ks);
	char *doc = json_dumps(jwks, JSON_COMPACT);
	assert_int_equal(
	    sg_idm_remote_apply_jwks(sg_policy_remote(p), doc, strlen(doc), err, sizeof err),
	    SG_OK);
	free(doc);
	json_decref(jwks);
	sg_jws_keyset_free(ks);
	assert_int_equal(sg_idm_remote_ready(sg_policy_remote(p)), 0);
	const char *rl = "{\"now\":1,\"jti\":[],\"gid\":[]}";
	assert_int_equal(
	    sg_idm_remote_apply_revocations(sg_policy_remote(p), rl, strlen(rl), err, sizeof err),
	    SG_OK);
	assert_int_equal(sg_idm_remote_ready(sg_policy_remote(p)), 1);
	*confp = c;
	return p;
}

static void free_policy(struct sg_policy *p, struct sg_conf *c)
{
	sg_policy_free(p);
	sg_conf_free(c);
}

enum tok {
	T_NONE_HDR,
	T_BASIC,
	T_EMPTY,
	T_SIGN,
	T_OTHER_KEY,
	T_ALG_NONE,
	T_HS256,
	T_FLIP,
	T_TYP_JWT,
	T_GARBAGE
};
enum cnf { C_NONE, C_A, C_B, C_BAD };

/* the base claims of a UE token; cnf added per row */
static json_t *base_claims(time_t now)
{
	return json_pack("{s:s, s:s, s:[s,s], s:I, s:I, s:s, s:s, s:s, s:s, s:{s:s}}", "iss", ISS,
	                 "sub", "user-1", "aud", "sealguard:idm", "sealguard:gm", "exp",
	                 (json_int_t)(now + 600), "iat", (json_int_t)now, "jti", "jti-1", "gid",
	                 "gid-1", "scope", "openid seal:gm", "client_id", "app", "val_user_ids",
	                 "v2x", "alice@v2x");
}

static char *b64json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	char *o = malloc(sg_b64url_len(strlen(s)) + 1);
	sg_b64url_encode(s, strlen(s), o);
	free(s);
	return o;
}

static char *make_token(enum tok kind, json_t *claims)
{
	char *t = NULL;
	switch (kind) {
	case T_SIGN:
	case T_FLIP:
		assert_int_equal(sg_jws_sign_typ(g_key, SG_JWS_TYP_AT, claims, &t), SG_OK);
		if (kind == T_FLIP)
			t[strlen(t) - 5] = t[strlen(t) - 5] == 'A' ? 'B' : 'A';
		return t;
	case T_TYP_JWT:
		assert_int_equal(sg_jws_sign_typ(g_key, SG_JWS_TYP_JWT, claims, &t), SG_OK);
		return t;
	case T_OTHER_KEY:
		assert_int_equal(sg_jws_sign_typ(g_other, SG_JWS_TYP_AT, claims, &t), SG_OK);
		return t;
	case T_ALG_NONE:
	case T_HS256: {
		json_t *h =
		    json_pack("{s:s, s:s, s:s}", "alg", kind == T_ALG_NONE ? "none" : "HS256",
		              "typ", "at+jwt", "kid", sg_jws_key_kid(g_key));
		char *hh = b64json(h), *pp = b64json(claims);
		size_t n = strlen(hh) + strlen(pp) + 64;
		t = malloc(n);
		snprintf(t, n, "%s.%s.", hh, pp);
		if (kind == T_HS256) {
			/* RFC 8725 §2.1: HMAC keyed by the public key, the classic confusion */
			json_t *jwk = sg_jws_key_public_jwk(g_key);
			char *k = json_dumps(jwk, JSON_COMPACT);
			unsigned char mac[32];
			unsigned ml = 0;
			HMAC(EVP_sha256(), k, (int)strlen(k), (unsigned char *)t, strlen(t) - 1,
			     mac, &ml);
			char s[64];
			sg_b64url_encode(mac, ml, s);
			strncat(t, s, n - strlen(t) - 1);
			free(k);
			json_decref(jwk);
		}
		free(hh);
		free(pp);
		json_decref(h);
		return t;
	}
	case T_GARBAGE:
		return strdup("not-a-jwt");
	default:
		return NULL;
	}
}

struct row {
	const char *name;
	int mode; /* SG_AUTH_* */
	int cert; /* 0 none, 1 A, 2 B */
	enum tok tok;
	enum cnf cnf;
	const char *patch;    /* JSON merged into the claims ("null" members delete) */
	int exp_off, iat_off; /* seconds relative to now; 0 = defaults */
	const char *scope;    /* route scope; NULL = "seal:gm" */
	int want_status;
	const char *want_error; /* NULL: none */
	const char *want_cause;
};

static const struct row ROWS[] = {
    /* SEAL-UU: bearer (R1, I10) */
    {"UE token", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, NULL, 0, 0, NULL, 0, NULL, NULL},
    {"no Authorization", SG_AUTH_BEARER, 0, T_NONE_HDR, C_NONE, NULL, 0, 0, NULL, 401, NULL,
     "UNAUTHENTICATED"},
    {"Basic instead of Bearer", SG_AUTH_BEARER, 0, T_BASIC, C_NONE, NULL, 0, 0, NULL, 401, NULL,
     "UNAUTHENTICATED"},
    {"empty bearer", SG_AUTH_BEARER, 0, T_EMPTY, C_NONE, NULL, 0, 0, NULL, 401, "invalid_token",
     "INVALID_TOKEN"},
    {"malformed", SG_AUTH_BEARER, 0, T_GARBAGE, C_NONE, NULL, 0, 0, NULL, 401, "invalid_token",
     "INVALID_TOKEN"},
    {"expired 60 s ago (beyond leeway)", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, NULL, -60, -700, NULL,
     401, "invalid_token", "INVALID_TOKEN"},
    {"expired 10 s ago (within leeway)", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, NULL, -10, -700, NULL,
     0, NULL, NULL},
    {"iat 120 s in the future", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, NULL, 0, 120, NULL, 401,
     "invalid_token", "INVALID_TOKEN"},
    {"iat 10 s in the future (within leeway)", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, NULL, 0, 10, NULL,
     0, NULL, NULL},
    {"wrong iss", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, "{\"iss\":\"https://evil.example\"}", 0, 0,
     NULL, 401, "invalid_token", "INVALID_TOKEN"},
    {"wrong aud", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, "{\"aud\":[\"sealguard:km\"]}", 0, 0, NULL,
     401, "invalid_token", "INVALID_TOKEN"},
    {"aud as a string", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, "{\"aud\":\"sealguard:gm\"}", 0, 0, NULL,
     0, NULL, NULL},
    {"missing scope", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, "{\"scope\":\"openid seal:km\"}", 0, 0,
     NULL, 403, "insufficient_scope", "INSUFFICIENT_SCOPE"},
    {"route needs two scopes", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, NULL, 0, 0, "seal:gm seal:km",
     403, "insufficient_scope", "INSUFFICIENT_SCOPE"},
    {"no client_id", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, "{\"client_id\":null}", 0, 0, NULL, 401,
     "invalid_token", "INVALID_TOKEN"},
    {"no exp", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, "{\"exp\":null}", 0, 0, NULL, 401,
     "invalid_token", "INVALID_TOKEN"},
    {"alg none", SG_AUTH_BEARER, 0, T_ALG_NONE, C_NONE, NULL, 0, 0, NULL, 401, "invalid_token",
     "INVALID_TOKEN"},
    {"HS256 keyed by the public key", SG_AUTH_BEARER, 0, T_HS256, C_NONE, NULL, 0, 0, NULL, 401,
     "invalid_token", "INVALID_TOKEN"},
    {"unknown kid", SG_AUTH_BEARER, 0, T_OTHER_KEY, C_NONE, NULL, 0, 0, NULL, 401, "invalid_token",
     "INVALID_TOKEN"},
    {"flipped signature bit", SG_AUTH_BEARER, 0, T_FLIP, C_NONE, NULL, 0, 0, NULL, 401,
     "invalid_token", "INVALID_TOKEN"},
    {"ID token (typ JWT)", SG_AUTH_BEARER, 0, T_TYP_JWT, C_NONE, NULL, 0, 0, NULL, 401,
     "invalid_token", "INVALID_TOKEN"},
    {"revoked jti", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, "{\"jti\":\"revoked-jti\"}", 0, 0, NULL, 401,
     "invalid_token", "INVALID_TOKEN"},
    {"revoked grant", SG_AUTH_BEARER, 0, T_SIGN, C_NONE, "{\"gid\":\"revoked-gid\"}", 0, 0, NULL,
     401, "invalid_token", "INVALID_TOKEN"},
    {"VAL server token on SEAL-UU (cnf)", SG_AUTH_BEARER, 0, T_SIGN, C_A, NULL, 0, 0, NULL, 401,
     "invalid_token", "CERTIFICATE_MISMATCH"},
    /* SEAL-S: mutual TLS + bearer, bound (R3, RFC 8705 §3.1) */
    {"VAL server A token, A certificate", SG_AUTH_MTLS_BEARER, 1, T_SIGN, C_A, NULL, 0, 0, NULL, 0,
     NULL, NULL},
    {"VAL server A token, B certificate", SG_AUTH_MTLS_BEARER, 2, T_SIGN, C_A, NULL, 0, 0, NULL,
     401, "invalid_token", "CERTIFICATE_MISMATCH"},
    {"malformed cnf thumbprint", SG_AUTH_MTLS_BEARER, 1, T_SIGN, C_BAD, NULL, 0, 0, NULL, 401,
     "invalid_token", "CERTIFICATE_MISMATCH"},
    {"UE token (no cnf) on SEAL-S", SG_AUTH_MTLS_BEARER, 1, T_SIGN, C_NONE, NULL, 0, 0, NULL, 401,
     "invalid_token", "INVALID_TOKEN"},
    {"no certificate on SEAL-S", SG_AUTH_MTLS_BEARER, 0, T_SIGN, C_A, NULL, 0, 0, NULL, 401,
     "invalid_token", "CERTIFICATE_MISMATCH"},
    {"no token on SEAL-S", SG_AUTH_MTLS_BEARER, 1, T_NONE_HDR, C_NONE, NULL, 0, 0, NULL, 401, NULL,
     "UNAUTHENTICATED"},
    {"bound token, expired", SG_AUTH_MTLS_BEARER, 1, T_SIGN, C_A, NULL, -60, -700, NULL, 401,
     "invalid_token", "INVALID_TOKEN"},
    {"bound token, wrong scope", SG_AUTH_MTLS_BEARER, 1, T_SIGN, C_A, "{\"scope\":\"seal:ipp\"}", 0,
     0, NULL, 403, "insufficient_scope", "INSUFFICIENT_SCOPE"},
    {"bound token, alg none", SG_AUTH_MTLS_BEARER, 1, T_ALG_NONE, C_A, NULL, 0, 0, NULL, 401,
     "invalid_token", "INVALID_TOKEN"},
    /* SEAL-E: mutual TLS only (R4) */
    {"SEAL server certificate", SG_AUTH_MTLS, 1, T_NONE_HDR, C_NONE, NULL, 0, 0, NULL, 0, NULL,
     NULL},
    {"SEAL-E without certificate", SG_AUTH_MTLS, 0, T_NONE_HDR, C_NONE, NULL, 0, 0, NULL, 403, NULL,
     "UNAUTHORIZED_IDENTITY"},
};

static void run_row(struct sg_policy *p, const struct row *w)
{
	time_t now = time(NULL);
	json_t *cl = base_claims(now);
	if (w->exp_off)
		json_object_set_new(cl, "exp", json_integer((json_int_t)(now + w->exp_off)));
	if (w->iat_off)
		json_object_set_new(cl, "iat", json_integer((json_int_t)(now + w->iat_off)));
	if (w->cnf != C_NONE)
		json_object_set_new(cl, "cnf",
		                    json_pack("{s:s}", "x5t#S256",
		                              w->cnf == C_A   ? g_x5t_a
		                              : w->cnf == C_B ? g_x5t_b
		                                              : "short"));
	if (w->patch) {
		json_t *pj = json_loads(w->patch, 0, NULL);
		const char *k;
		json_t *v;
		json_object_foreach(pj, k, v)
		{
			if (json_is_null(v))
				json_object_del(cl, k);
			else
				json_object_set(cl, k, v);
		}
		json_decref(pj);
	}
	char hdr[8192] = "";
	char *tok = NULL;
	if (w->tok == T_BASIC)
		snprintf(hdr, sizeof hdr, "Basic YXBwOnNlY3JldA==");
	else if (w->tok == T_EMPTY)
		snprintf(hdr, sizeof hdr, "Bearer ");
	else if (w->tok != T_NONE_HDR && (tok = make_token(w->tok, cl)))
		snprintf(hdr, sizeof hdr, "Bearer %s", tok);
	const struct sg_tls_principal *tp = w->cert == 1   ? &g_cert_a
	                                    : w->cert == 2 ? &g_cert_b
	                                                   : NULL;
	struct sg_policy_decision d;
	json_t *claims = NULL;
	/* twice: the second run may be served by the cache and must decide the same */
	for (int pass = 0; pass < 2; pass++) {
		sg_policy_check(p, w->mode, tp, hdr[0] ? hdr : NULL, "sealguard:gm",
		                w->scope ? w->scope : "seal:gm", &claims, &d);
		if (d.status != w->want_status)
			fail_msg("%s (pass %d): status %d, want %d (%s)", w->name, pass, d.status,
			         w->want_status, d.desc);
		if ((d.error == NULL) != (w->want_error == NULL) ||
		    (d.error && strcmp(d.error, w->want_error)))
			fail_msg("%s: error %s, want %s", w->name, d.error ? d.error : "(none)",
			         w->want_error ? w->want_error : "(none)");
		if ((d.cause == NULL) != (w->want_cause == NULL) ||
		    (d.cause && strcmp(d.cause, w->want_cause)))
			fail_msg("%s: cause %s, want %s", w->name, d.cause ? d.cause : "(none)",
			         w->want_cause ? w->want_cause : "(none)");
		if (w->want_status == 0 && w->mode != SG_AUTH_MTLS)
			assert_non_null(claims);
		else
			assert_null(claims);
		/* never echo the token back */
		if (tok)
			assert_null(strstr(d.desc, tok));
		json_decref(claims);
		claims = NULL;
	}
	free(tok);
	json_decref(cl);
}

static void revoke_fixed(struct sg_policy *p)
{
	char err[256];
	char rl[256];
	long long exp = (long long)(time(NULL) + 600) * 1000;
	snprintf(rl, sizeof rl,
	         "{\"now\":2,\"jti\":[{\"id\":\"revoked-jti\",\"exp\":%lld}],"
	         "\"gid\":[{\"id\":\"revoked-gid\",\"exp\":%lld}]}",
	         exp, exp);
	assert_int_equal(
	    sg_idm_remote_apply_revocations(sg_policy_remote(p), rl, strlen(rl), err, sizeof err),
	    SG_OK);
}

static void table(unsigned cache_entries)
{
	struct sg_conf *c;
	struct sg_policy *p = new_policy(&c, cache_entries);
	revoke_fixed(p);
	for (size_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++)
		run_row(p, &ROWS[i]);
	free_policy(p, c);
}

static void test_table_cached(void **state)
{
	(void)state;
	table(1000);
}

static void test_table_uncached(void **state)
{
	(void)state;
	table(0);
}

/* A token verified (and cached) before its revocation arrives is refused right after the
 * revocation list that names it is applied: the list bumps the cache. */
static void test_revocation_after_cache(void **state)
{
	(void)state;
	struct sg_conf *c;
	struct sg_policy *p = new_policy(&c, 1000);
	json_t *cl = base_claims(time(NULL));
	json_object_set_new(cl, "jti", json_string("later-revoked"));
	char *tok = make_token(T_SIGN, cl), hdr[4096];
	snprintf(hdr, sizeof hdr, "Bearer %s", tok);
	struct sg_policy_decision d;
	for (int i = 0; i < 3; i++) {
		sg_policy_check(p, SG_AUTH_BEARER, NULL, hdr, "sealguard:gm", "seal:gm", NULL, &d);
		assert_int_equal(d.status, 0);
	}
	char err[256], rl[256];
	snprintf(rl, sizeof rl, "{\"now\":3,\"jti\":[{\"id\":\"later-revoked\",\"exp\":%lld}]}",
	         (long long)(time(NULL) + 600) * 1000);
	assert_int_equal(
	    sg_idm_remote_apply_revocations(sg_policy_remote(p), rl, strlen(rl), err, sizeof err),
	    SG_OK);
	assert_true(sg_idm_remote_is_revoked(sg_policy_remote(p), "later-revoked", NULL));
	sg_policy_check(p, SG_AUTH_BEARER, NULL, hdr, "sealguard:gm", "seal:gm", NULL, &d);
	assert_int_equal(d.status, 401);
	assert_string_equal(d.error, "invalid_token");
	/* a malformed list changes nothing */
	assert_int_not_equal(sg_idm_remote_apply_revocations(sg_policy_remote(p), "{\"jti\":[]}",
	                                                     10, err, sizeof err),
	                     SG_OK);
	free(tok);
	json_decref(cl);
	free_policy(p, c);
}

/* Key rotation at the SIM-S: a JWKS with a new kid is picked up; a kid no longer published is
 * dropped, and tokens it signed (even cached ones) are refused from then on. */
static void test_jwks_update(void **state)
{
	(void)state;
	struct sg_conf *c;
	struct sg_policy *p = new_policy(&c, 1000);
	json_t *cl = base_claims(time(NULL));
	char *t_old = make_token(T_SIGN, cl), *t_new = make_token(T_OTHER_KEY, cl);
	char h_old[4096], h_new[4096], err[256];
	snprintf(h_old, sizeof h_old, "Bearer %s", t_old);
	snprintf(h_new, sizeof h_new, "Bearer %s", t_new);
	struct sg_policy_decision d;
	sg_policy_check(p, SG_AUTH_BEARER, NULL, h_old, "sealguard:gm", "seal:gm", NULL, &d);
	assert_int_equal(d.status, 0);
	sg_policy_check(p, SG_AUTH_BEARER, NULL, h_new, "sealguard:gm", "seal:gm", NULL, &d);
	assert_int_equal(d.status, 401);
	/* JWKS with only the new key */
	struct sg_jws_keyset *ks = sg_jws_keyset_new();
	assert_int_equal(sg_jws_keyset_add(ks, g_other), SG_OK);
	json_t *j = sg_jws_keyset_to_jwks(ks);
	char *doc = json_dumps(j, JSON_COMPACT);
	assert_int_equal(
	    sg_idm_remote_apply_jwks(sg_policy_remote(p), doc, strlen(doc), err, sizeof err),
	    SG_OK);
	sg_policy_check(p, SG_AUTH_BEARER, NULL, h_new, "sealguard:gm", "seal:gm", NULL, &d);
	assert_int_equal(d.status, 0);
	sg_policy_check(p, SG_AUTH_BEARER, NULL, h_old, "sealguard:gm", "seal:gm", NULL, &d);
	assert_int_equal(d.status, 401);
	/* a JWKS without a usable key changes nothing */
	const char *empty = "{\"keys\":[]}";
	assert_int_not_equal(
	    sg_idm_remote_apply_jwks(sg_policy_remote(p), empty, strlen(empty), err, sizeof err),
	    SG_OK);
	sg_policy_check(p, SG_AUTH_BEARER, NULL, h_new, "sealguard:gm", "seal:gm", NULL, &d);
	assert_int_equal(d.status, 0);
	free(doc);
	json_decref(j);
	sg_jws_keyset_free(ks);
	free(t_old);
	free(t_new);
	json_decref(cl);
	free_policy(p, c);
}

/* The gm-only process must be told the issuer and where identity management is. */
static void test_config_errors(void **state)
{
	(void)state;
	char err[512] = "";
	struct sg_conf *c = NULL;
	const char *yaml = "state_dir: /tmp/sg-test-policy\nroles: [gm]\n"
	                   "reference_points:\n"
	                   "  - {name: SEAL-UU, bind: \"127.0.0.1:1\", tls: {mode: server-auth},"
	                   " auth: bearer, services: [gm]}\n";
	assert_int_equal(sg_conf_load_string(yaml, "x.yaml", &c, err, sizeof err), SG_OK);
	assert_int_equal(sg_conf_finish(c, NULL, NULL, err, sizeof err), SG_OK);
	struct sg_policy *p = NULL;
	assert_int_equal(sg_policy_new(c, &p, err, sizeof err), SG_ERR_CONFIG);
	assert_non_null(strstr(err, "idm.issuer"));
	sg_conf_free(c);
	/* the idm role alone needs no remote client */
	assert_int_equal(sg_conf_load_string(SG_CONF_DEFAULT_YAML, "d", &c, err, sizeof err),
	                 SG_OK);
	assert_int_equal(sg_conf_finish(c, "/tmp/sg-test-policy", "idm", err, sizeof err), SG_OK);
	assert_int_equal(sg_policy_new(c, &p, err, sizeof err), SG_OK);
	assert_null(sg_policy_remote(p));
	sg_policy_free(p);
	sg_conf_free(c);
}

static void test_principal_helpers(void **state)
{
	(void)state;
	json_t *cl = json_pack("{s:{s:s}}", "val_user_ids", "v2x", "alice@v2x");
	struct sg_principal p = {
	    .kind = SG_PRINCIPAL_UE, .scope = "openid  seal:gm seal:km", .claims = cl};
	assert_true(sg_principal_has_scope(&p, "seal:gm"));
	assert_true(sg_principal_has_scope(&p, "seal:km"));
	assert_false(sg_principal_has_scope(&p, "seal"));
	assert_false(sg_principal_has_scope(&p, "seal:g"));
	assert_false(sg_principal_has_scope(&p, ""));
	assert_false(sg_principal_has_scope(NULL, "seal:gm"));
	assert_string_equal(sg_principal_val_user_id(&p, "v2x"), "alice@v2x");
	assert_null(sg_principal_val_user_id(&p, "other"));
	p.kind = SG_PRINCIPAL_VAL_SERVER;
	assert_null(sg_principal_val_user_id(&p, "v2x"));
	json_decref(cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table_cached),           cmocka_unit_test(test_table_uncached),
	    cmocka_unit_test(test_revocation_after_cache), cmocka_unit_test(test_jwks_update),
	    cmocka_unit_test(test_config_errors),          cmocka_unit_test(test_principal_helpers),
	};
	int rc = cmocka_run_group_tests(tests, setup, teardown);
	sg_policy_routes_release();
	return rc;
}
