/* Unit tests of client/simc: the login page scan (tx, form action), the authorization response
 * in the redirect Location (code/state, errors, redirect URI prefix), the I4 state check (a
 * mismatch is dropped), and the ID token validation table of OIDC Core §3.1.3.7 with tokens
 * made by auth/jws. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth/jws.h"
#include "base/b64.h"
#include "client/simc.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW   1700000000LL
#define ISS   "https://localhost:9443"
#define CID   "ue-app"
#define NONCE "n-0S6_WzA2Mj"
#define RURI  "http://127.0.0.1/callback"

static struct sg_jws_key *g_key, *g_other;
static struct sg_jws_keyset *g_ks;

static int setup(void **state)
{
	(void)state;
	if (sg_jws_key_generate(&g_key) != SG_OK || sg_jws_key_generate(&g_other) != SG_OK ||
	    !(g_ks = sg_jws_keyset_new()) || sg_jws_keyset_add(g_ks, g_key) != SG_OK)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sg_jws_keyset_free(g_ks);
	sg_jws_key_free(g_key);
	sg_jws_key_free(g_other);
	return 0;
}

/* ---- login page ------------------------------------------------------------------------- */

static const char PAGE[] = "<!doctype html><html><head><title>Sign in</title></head><body>\n"
                           "<!-- <input type=\"hidden\" name=\"tx\" value=\"commented-out\"> -->\n"
                           "<form method=\"post\" action=\"/oauth2/login\">\n"
                           "<input type=\"hidden\" name=\"txx\" value=\"wrong-field\">\n"
                           "<INPUT value='abc&amp;d&#x2D;e&#95;f' TYPE=hidden NAME=\"tx\">\n"
                           "<label>User <input name=username autocomplete=username></label>\n"
                           "<input type=password name=password>\n"
                           "<button type=submit>Sign in</button></form></body></html>\n";

static void test_html_input(void **state)
{
	(void)state;
	char *v = NULL;
	assert_int_equal(sg_simc_html_input(PAGE, strlen(PAGE), "tx", &v), SG_OK);
	assert_string_equal(v, "abc&d-e_f"); /* attributes in any order, references decoded */
	free(v);
	assert_int_equal(sg_simc_html_input(PAGE, strlen(PAGE), "txx", &v), SG_OK);
	assert_string_equal(v, "wrong-field");
	free(v);
	/* an input without a value, and a page without the field (an error page) */
	assert_int_equal(sg_simc_html_input(PAGE, strlen(PAGE), "username", &v), SG_ERR_NOTFOUND);
	const char *err_page = "<html><body><p>Invalid request</p></body></html>";
	assert_int_equal(sg_simc_html_input(err_page, strlen(err_page), "tx", &v), SG_ERR_NOTFOUND);
	assert_null(v);
	/* unquoted value; a truncated tag is not a match */
	const char *p2 = "<form action=/x><input name=tx value=T123><input name=tx value=\"zz";
	assert_int_equal(sg_simc_html_input(p2, strlen(p2), "tx", &v), SG_OK);
	assert_string_equal(v, "T123");
	free(v);
	const char *p3 = "<input name=\"tx\" value=\"never-closed";
	assert_int_equal(sg_simc_html_input(p3, strlen(p3), "tx", &v), SG_ERR_NOTFOUND);
	/* the length bounds the scan */
	assert_int_equal(sg_simc_html_input(PAGE, 200, "tx", &v), SG_ERR_NOTFOUND);
}

static void test_html_form_action(void **state)
{
	(void)state;
	char *v = NULL;
	assert_int_equal(sg_simc_html_form_action(PAGE, strlen(PAGE), &v), SG_OK);
	assert_string_equal(v, "/oauth2/login");
	free(v);
	const char *p = "<form method=post><input name=tx value=1></form>";
	assert_int_equal(sg_simc_html_form_action(p, strlen(p), &v), SG_ERR_NOTFOUND);
	assert_null(v);
}

/* ---- redirect --------------------------------------------------------------------------- */

static void test_parse_redirect(void **state)
{
	(void)state;
	struct sg_simc_response r;
	char err[256];
	assert_int_equal(sg_simc_parse_redirect(RURI "?code=c%2D1&state=S&iss=https%3A%2F%2Flocal"
	                                             "host%3A9443&extra=1",
	                                        RURI, &r, err, sizeof err),
	                 SG_OK);
	assert_string_equal(r.code, "c-1");
	assert_string_equal(r.state, "S");
	assert_string_equal(r.iss, ISS);
	assert_null(r.error);
	sg_simc_response_clear(&r);
	assert_null(r.code);

	/* RFC 6749 §4.1.2.1 error, form-encoded description */
	assert_int_equal(sg_simc_parse_redirect(RURI "?error=access_denied&error_description="
	                                             "login+refused%21&state=S",
	                                        RURI, &r, err, sizeof err),
	                 SG_OK);
	assert_string_equal(r.error, "access_denied");
	assert_string_equal(r.error_description, "login refused!");
	assert_null(r.code);
	sg_simc_response_clear(&r);

	/* a redirect URI that has a query already: the response continues it with '&' */
	assert_int_equal(sg_simc_parse_redirect("com.example.app:/cb?a=1&code=X&state=S",
	                                        "com.example.app:/cb?a=1", &r, err, sizeof err),
	                 SG_OK);
	assert_string_equal(r.code, "X");
	sg_simc_response_clear(&r);

	static const struct {
		const char *loc, *why;
	} bad[] = {
	    {"http://127.0.0.1/other?code=X&state=S", "another path"},
	    {"http://127.0.0.1/callbackevil?code=X&state=S", "a longer path with our prefix"},
	    {"http://127.0.0.1.evil.example/callback?code=X&state=S", "another host"},
	    {"https://evil.example/?r=" RURI "?code=X&state=S", "our URI inside another"},
	    {RURI "#code=X&state=S", "fragment instead of query"},
	    {RURI "?code=X&state=S#frag", "query and fragment"},
	    {RURI "?code=X&code=Y&state=S", "repeated code"},
	    {RURI "?code=X&state=S&state=T", "repeated state"},
	    {RURI "?code=X%00Y&state=S", "NUL byte in a value"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		sg_err e = sg_simc_parse_redirect(bad[i].loc, RURI, &r, err, sizeof err);
		if (e != SG_ERR_PROTO)
			fail_msg("%s: want SG_ERR_PROTO, got %d", bad[i].why, (int)e);
		assert_null(r.code);
		assert_null(r.state);
	}
}

/* ---- I4 --------------------------------------------------------------------------------- */

static void test_state_check(void **state)
{
	(void)state;
	struct sg_simc_request req;
	assert_int_equal(sg_simc_request_new(&req), SG_OK);
	assert_int_equal(strlen(req.state), 43);
	assert_int_equal(strlen(req.nonce), 43);
	assert_int_equal(strlen(req.verifier), 43);
	assert_string_not_equal(req.state, req.nonce);
	/* RFC 7636 §4.2: challenge = BASE64URL(SHA256(verifier)) */
	unsigned char h[SHA256_DIGEST_LENGTH];
	char want[64];
	SHA256((const unsigned char *)req.verifier, strlen(req.verifier), h);
	sg_b64url_encode(h, sizeof h, want);
	assert_string_equal(req.challenge, want);

	char loc[512], err[256] = "";
	struct sg_simc_response r;
	/* the state sent comes back: accepted */
	snprintf(loc, sizeof loc, RURI "?code=C&state=%s", req.state);
	assert_int_equal(sg_simc_parse_redirect(loc, RURI, &r, err, sizeof err), SG_OK);
	assert_int_equal(sg_simc_accept_response(&req, ISS, &r), SG_OK);
	sg_simc_response_clear(&r);

	/* I4 table: every mismatch is dropped (SG_ERR_DENIED, nothing to show) */
	char flipped[SG_SIMC_RANDOM];
	memcpy(flipped, req.state, sizeof flipped);
	flipped[10] = flipped[10] == 'A' ? 'B' : 'A';
	char longer[128];
	snprintf(longer, sizeof longer, "%sx", req.state);
	const char *states[] = {flipped, longer, "", "short", NULL};
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
		struct sg_simc_response m = {.code = strdup("C"),
		                             .state = states[i] ? strdup(states[i]) : NULL};
		assert_int_equal(sg_simc_accept_response(&req, ISS, &m), SG_ERR_DENIED);
		sg_simc_response_clear(&m);
	}
	/* an error response with a foreign state is dropped as well */
	struct sg_simc_response e1 = {.error = strdup("access_denied"), .state = strdup("other")};
	assert_int_equal(sg_simc_accept_response(&req, ISS, &e1), SG_ERR_DENIED);
	sg_simc_response_clear(&e1);
	/* RFC 9207: a right state from another issuer is dropped */
	struct sg_simc_response m2 = {
	    .code = strdup("C"), .state = strdup(req.state), .iss = strdup("https://evil.example")};
	assert_int_equal(sg_simc_accept_response(&req, ISS, &m2), SG_ERR_DENIED);
	free(m2.iss);
	m2.iss = strdup(ISS);
	assert_int_equal(sg_simc_accept_response(&req, ISS, &m2), SG_OK);
	sg_simc_response_clear(&m2);
	/* a fresh request never reuses the state */
	struct sg_simc_request req2;
	assert_int_equal(sg_simc_request_new(&req2), SG_OK);
	assert_string_not_equal(req.state, req2.state);
	sg_simc_request_wipe(&req);
	assert_int_equal(req.verifier[0], 0);
}

/* ---- ID token --------------------------------------------------------------------------- */

static json_t *good_claims(void)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "iss", ISS, "sub",
	                 "q1w2e3r4t5y6u7i8o9p0aa", "aud", CID, "exp", (json_int_t)(NOW + 3600),
	                 "iat", (json_int_t)NOW, "nonce", NONCE, "acr", "3gpp:acr:password");
}

static char *sign(const struct sg_jws_key *k, const char *typ, json_t *claims)
{
	char *t = NULL;
	assert_int_equal(sg_jws_sign_typ(k, typ, claims, &t), SG_OK);
	json_decref(claims);
	return t;
}

static void at_hash(const char *at, char out[64])
{
	unsigned char h[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)at, strlen(at), h);
	sg_b64url_encode(h, 16, out);
}

enum mut {
	M_NONE,
	M_ISS,
	M_ISS_SLASH,
	M_AUD,
	M_AUD_MULTI_NO_AZP,
	M_AUD_MULTI_AZP,
	M_AZP_OTHER,
	M_EXPIRED,
	M_EXP_IN_LEEWAY,
	M_IAT_FUTURE,
	M_NONCE,
	M_NONCE_MISSING,
	M_SUB_MISSING,
	M_SUB_LONG,
	M_ACR,
	M_AT_HASH_BAD,
	M_AT_HASH_OK,
	M_BITFLIP,
	M_OTHER_KEY,
	M_AT_TYP,
	M_ALG_NONE,
	M_NO_EXP,
};

static void test_id_token_table(void **state)
{
	(void)state;
	static const struct {
		enum mut m;
		sg_err want;
		const char *reason; /* substring of err */
		const char *name;
	} rows[] = {
	    {M_NONE, SG_OK, NULL, "valid"},
	    {M_ISS, SG_ERR_DENIED, "wrong_issuer", "wrong iss"},
	    {M_ISS_SLASH, SG_ERR_DENIED, "wrong_issuer", "iss with a trailing slash"},
	    {M_AUD, SG_ERR_DENIED, "wrong_audience", "wrong aud"},
	    {M_AUD_MULTI_NO_AZP, SG_ERR_DENIED, "azp", "several aud, no azp"},
	    {M_AUD_MULTI_AZP, SG_OK, NULL, "several aud, azp = client"},
	    {M_AZP_OTHER, SG_ERR_DENIED, "azp", "azp of another client"},
	    {M_EXPIRED, SG_ERR_DENIED, "expired", "expired beyond the leeway"},
	    {M_EXP_IN_LEEWAY, SG_OK, NULL, "expired 20 s ago, within the 30 s leeway"},
	    {M_IAT_FUTURE, SG_ERR_DENIED, "not_yet_valid", "iat 60 s in the future"},
	    {M_NONCE, SG_ERR_DENIED, "nonce mismatch", "nonce mismatch"},
	    {M_NONCE_MISSING, SG_ERR_DENIED, "nonce missing", "nonce missing"},
	    {M_SUB_MISSING, SG_ERR_DENIED, "sub", "sub missing"},
	    {M_SUB_LONG, SG_ERR_DENIED, "sub", "sub longer than 255"},
	    {M_ACR, SG_ERR_DENIED, "acr", "another acr"},
	    {M_AT_HASH_BAD, SG_ERR_DENIED, "at_hash", "at_hash of another token"},
	    {M_AT_HASH_OK, SG_OK, NULL, "at_hash matches"},
	    {M_BITFLIP, SG_ERR_DENIED, "bad_signature", "bad signature (bit flip)"},
	    {M_OTHER_KEY, SG_ERR_DENIED, "unknown_kid", "signed by a key not in the JWKS"},
	    {M_AT_TYP, SG_ERR_DENIED, "access token", "an access token as ID token"},
	    {M_ALG_NONE, SG_ERR_DENIED, "bad_alg", "alg none"},
	    {M_NO_EXP, SG_ERR_DENIED, "malformed", "no exp"},
	};
	const char *at = "eyJhbGciOiJFUzI1NiJ9.access.token";
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_t *c = good_claims();
		const struct sg_jws_key *k = g_key;
		const char *typ = "JWT";
		char h[64];
		switch (rows[i].m) {
		case M_ISS:
			json_object_set_new(c, "iss", json_string("https://evil.example"));
			break;
		case M_ISS_SLASH:
			json_object_set_new(c, "iss", json_string(ISS "/"));
			break;
		case M_AUD:
			json_object_set_new(c, "aud", json_string("other-app"));
			break;
		case M_AUD_MULTI_NO_AZP:
			json_object_set_new(c, "aud", json_pack("[s,s]", CID, "gm"));
			break;
		case M_AUD_MULTI_AZP:
			json_object_set_new(c, "aud", json_pack("[s,s]", "gm", CID));
			json_object_set_new(c, "azp", json_string(CID));
			break;
		case M_AZP_OTHER:
			json_object_set_new(c, "azp", json_string("other-app"));
			break;
		case M_EXPIRED:
			json_object_set_new(c, "exp", json_integer(NOW - 31));
			break;
		case M_EXP_IN_LEEWAY:
			json_object_set_new(c, "exp", json_integer(NOW - 20));
			break;
		case M_IAT_FUTURE:
			json_object_set_new(c, "iat", json_integer(NOW + 60));
			break;
		case M_NONCE:
			json_object_set_new(c, "nonce", json_string("n-other"));
			break;
		case M_NONCE_MISSING:
			json_object_del(c, "nonce");
			break;
		case M_SUB_MISSING:
			json_object_del(c, "sub");
			break;
		case M_SUB_LONG: {
			char longsub[300];
			memset(longsub, 'a', sizeof longsub - 1);
			longsub[sizeof longsub - 1] = '\0';
			json_object_set_new(c, "sub", json_string(longsub));
			break;
		}
		case M_ACR:
			json_object_set_new(c, "acr", json_string("0"));
			break;
		case M_AT_HASH_BAD:
			at_hash("another-access-token", h);
			json_object_set_new(c, "at_hash", json_string(h));
			break;
		case M_AT_HASH_OK:
			at_hash(at, h);
			json_object_set_new(c, "at_hash", json_string(h));
			break;
		case M_OTHER_KEY:
			k = g_other;
			break;
		case M_AT_TYP:
			typ = "at+jwt";
			break;
		case M_NO_EXP:
			json_object_del(c, "exp");
			break;
		default:
			break;
		}
		char *tok;
		if (rows[i].m == M_ALG_NONE) {
			char *payload = json_dumps(c, JSON_COMPACT);
			json_decref(c);
			const char *hdr = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
			char hb[64], pb[1024];
			sg_b64url_encode(hdr, strlen(hdr), hb);
			sg_b64url_encode(payload, strlen(payload), pb);
			free(payload);
			tok = malloc(strlen(hb) + strlen(pb) + 3);
			sprintf(tok, "%s.%s.", hb, pb);
		} else {
			tok = sign(k, typ, c);
		}
		if (rows[i].m == M_BITFLIP) {
			char *sig = strrchr(tok, '.') + 5;
			*sig = *sig == 'A' ? 'B' : 'A';
		}
		struct sg_simc_id_expect x = {.issuer = ISS,
		                              .client_id = CID,
		                              .nonce = NONCE,
		                              .access_token = at,
		                              .now = NOW};
		char err[256] = "";
		json_t *claims = NULL;
		sg_err e = sg_simc_validate_id_token(g_ks, tok, &x, &claims, err, sizeof err);
		if (e != rows[i].want)
			fail_msg("%s: want %d, got %d (%s)", rows[i].name, (int)rows[i].want,
			         (int)e, err);
		if (rows[i].reason && !strstr(err, rows[i].reason))
			fail_msg("%s: reason '%s' not in '%s'", rows[i].name, rows[i].reason, err);
		if (e == SG_OK) {
			assert_non_null(claims);
			assert_string_equal(json_string_value(json_object_get(claims, "nonce")),
			                    NONCE);
		} else {
			assert_null(claims);
			assert_null(strstr(err, tok)); /* the token is never in a message */
		}
		json_decref(claims);
		free(tok);
	}
}

/* OIDC Core §12.2: a refreshed ID token (no nonce expected) for the same subject. */
static void test_id_token_refresh(void **state)
{
	(void)state;
	json_t *c = good_claims();
	json_object_del(c, "nonce");
	char *tok = sign(g_key, "JWT", c);
	char err[256];
	struct sg_simc_id_expect x = {
	    .issuer = ISS, .client_id = CID, .sub = "q1w2e3r4t5y6u7i8o9p0aa", .now = NOW};
	assert_int_equal(sg_simc_validate_id_token(g_ks, tok, &x, NULL, err, sizeof err), SG_OK);
	x.sub = "somebody-else";
	assert_int_equal(sg_simc_validate_id_token(g_ks, tok, &x, NULL, err, sizeof err),
	                 SG_ERR_DENIED);
	assert_non_null(strstr(err, "sub"));
	free(tok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_html_input),     cmocka_unit_test(test_html_form_action),
	    cmocka_unit_test(test_parse_redirect), cmocka_unit_test(test_state_check),
	    cmocka_unit_test(test_id_token_table), cmocka_unit_test(test_id_token_refresh),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
