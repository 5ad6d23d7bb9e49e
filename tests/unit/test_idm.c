/* tests/unit/test_idm.c: the SIM-S's pure decisions (idm/logic.c): authorization request
 * validation (I2, RFC 6749 §4.1.2.1), scopes and audiences (I8a, RFC 8707), form parsing, and
 * the login throttle's backoff (G4). */
#include "idm/logic.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#define CH "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

static struct sg_idm_authz_req good(void)
{
	struct sg_idm_authz_req q = {
	    .response_type = "code",
	    .client_id = "app",
	    .redirect_uri = "http://127.0.0.1/cb",
	    .scope = "openid seal:gm",
	    .state = "s",
	    .acr_values = "3gpp:acr:password",
	    .code_challenge = CH,
	    .code_challenge_method = "S256",
	    .client_known = 1,
	    .redirect_ok = 1,
	    .allowed_scopes = SG_IDM_SCOPES_UE_DEFAULT,
	};
	return q;
}

static void test_authz_table(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int field; /* which field to change */
		const char *value;
		enum sg_idm_authz_outcome outcome;
		const char *error;
	} rows[] = {
	    {"ok", -1, NULL, SG_IDM_AUTHZ_OK, NULL},
	    {"no client_id", 1, NULL, SG_IDM_AUTHZ_PAGE, "invalid_request"},
	    {"no redirect_uri", 2, NULL, SG_IDM_AUTHZ_PAGE, "invalid_request"},
	    {"no response_type", 0, NULL, SG_IDM_AUTHZ_REDIRECT, "invalid_request"},
	    {"token response_type", 0, "token", SG_IDM_AUTHZ_REDIRECT, "unsupported_response_type"},
	    {"no scope", 3, NULL, SG_IDM_AUTHZ_REDIRECT, "invalid_request"},
	    {"no openid", 3, "seal:gm", SG_IDM_AUTHZ_REDIRECT, "invalid_scope"},
	    {"unknown scope", 3, "openid x", SG_IDM_AUTHZ_REDIRECT, "invalid_scope"},
	    {"repeated scope", 3, "openid openid", SG_IDM_AUTHZ_REDIRECT, "invalid_scope"},
	    {"seal:kp for UE", 3, "openid seal:kp", SG_IDM_AUTHZ_REDIRECT, "invalid_scope"},
	    {"no state", 4, NULL, SG_IDM_AUTHZ_REDIRECT, "invalid_request"},
	    {"no acr", 5, NULL, SG_IDM_AUTHZ_REDIRECT, "invalid_request"},
	    {"other acr", 5, "urn:x", SG_IDM_AUTHZ_REDIRECT, "invalid_request"},
	    {"no challenge", 6, NULL, SG_IDM_AUTHZ_REDIRECT, "invalid_request"},
	    {"short challenge", 6, "abc", SG_IDM_AUTHZ_REDIRECT, "invalid_request"},
	    {"no method", 7, NULL, SG_IDM_AUTHZ_REDIRECT, "invalid_request"},
	    {"plain", 7, "plain", SG_IDM_AUTHZ_REDIRECT, "invalid_request"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct sg_idm_authz_req q = good();
		const char **f[] = {
		    &q.response_type, &q.client_id,  &q.redirect_uri,   &q.scope,
		    &q.state,         &q.acr_values, &q.code_challenge, &q.code_challenge_method};
		if (rows[i].field >= 0)
			*f[rows[i].field] = rows[i].value;
		struct sg_idm_authz_result r;
		sg_idm_authz_check(&q, &r);
		if (r.outcome != rows[i].outcome ||
		    (rows[i].error ? !r.error || strcmp(r.error, rows[i].error) : r.error != NULL))
			fail_msg("row '%s': outcome %d error %s", rows[i].name, r.outcome,
			         r.error ? r.error : "(none)");
	}
	struct sg_idm_authz_req q = good();
	struct sg_idm_authz_result r;
	q.client_known = 0;
	sg_idm_authz_check(&q, &r);
	assert_int_equal(r.outcome, SG_IDM_AUTHZ_PAGE); /* never redirect for an unknown client */
	q = good();
	q.redirect_ok = 0;
	q.response_type = "token";
	sg_idm_authz_check(&q, &r);
	assert_int_equal(r.outcome, SG_IDM_AUTHZ_PAGE); /* nor to an unregistered URI */
	q = good();
	q.dup_other = 1;
	sg_idm_authz_check(&q, &r);
	assert_int_equal(r.outcome, SG_IDM_AUTHZ_REDIRECT);
	q = good();
	q.dup_client = 1;
	sg_idm_authz_check(&q, &r);
	assert_int_equal(r.outcome, SG_IDM_AUTHZ_PAGE);
}

static void test_scopes(void **state)
{
	(void)state;
	assert_true(sg_idm_scope_valid("openid seal:gm seal:km seal:kp seal:ipp sdd"));
	assert_false(sg_idm_scope_valid(""));
	assert_false(sg_idm_scope_valid("openid seal:gmx"));
	assert_true(sg_idm_scope_subset("seal:gm", "openid seal:gm"));
	assert_false(sg_idm_scope_subset("seal:gm seal:km", "openid seal:gm"));
	assert_string_equal(sg_idm_scope_audience("seal:kp"), "sealguard:km");
	assert_string_equal(sg_idm_scope_audience("seal:ipp"), "sealguard:idm");
	assert_null(sg_idm_scope_audience("seal"));
	json_t *a = sg_idm_audiences("sdd seal:km openid seal:kp");
	char *s = json_dumps(a, JSON_COMPACT);
	assert_string_equal(s, "[\"sealguard:idm\",\"sealguard:km\",\"sealguard:sdd\"]");
	free(s);
	json_decref(a);
	char out[128];
	assert_int_equal(
	    sg_idm_scope_for_resource("seal:km seal:gm seal:kp", "sealguard:km", out, sizeof out),
	    0);
	assert_string_equal(out, "seal:km seal:kp");
	assert_int_equal(sg_idm_scope_for_resource("seal:gm", "sealguard:sdd", out, sizeof out),
	                 -1);
	assert_int_equal(sg_idm_scope_for_resource("seal:gm", "https://x", out, sizeof out), -1);
	sg_idm_client_scopes("", out, sizeof out);
	assert_string_equal(out, "openid seal:gm seal:km sdd");
	sg_idm_valserver_scopes(NULL, 0, out, sizeof out);
	assert_string_equal(out, "seal:gm seal:km seal:ipp sdd");
	sg_idm_valserver_scopes(NULL, 1, out, sizeof out);
	assert_string_equal(out, "seal:gm seal:km seal:ipp sdd seal:kp");
	/* seal:kp never without the right, openid never for a VAL server */
	sg_idm_valserver_scopes("seal:kp openid seal:gm", 0, out, sizeof out);
	assert_string_equal(out, "seal:gm");
}

static void test_form(void **state)
{
	(void)state;
	struct sg_idm_form f;
	const char *s = "a=1&b=x+y%20z&a=2&c&=e&d=%41";
	assert_int_equal(sg_idm_form_parse(s, strlen(s), &f), 0);
	assert_string_equal(sg_idm_form_get(&f, "a"), "1");
	assert_int_equal(sg_idm_form_count(&f, "a"), 2);
	assert_string_equal(sg_idm_form_get(&f, "b"), "x y z");
	assert_string_equal(sg_idm_form_get(&f, "c"), "");
	assert_string_equal(sg_idm_form_get(&f, "d"), "A");
	sg_idm_form_free(&f);
	assert_int_equal(sg_idm_form_parse("a=%4", 4, &f), -1);
	assert_int_equal(sg_idm_form_parse("a=%zz", 5, &f), -1);
	assert_int_equal(sg_idm_form_parse("a=%00", 5, &f), -1);
	char url[64] = "http://h/cb";
	assert_int_equal(sg_idm_url_append(url, sizeof url, "code", "a b&c"), 0);
	assert_int_equal(sg_idm_url_append(url, sizeof url, "state", "x"), 0);
	assert_string_equal(url, "http://h/cb?code=a%20b%26c&state=x");
	char small[16] = "http://h";
	assert_int_equal(sg_idm_url_append(small, sizeof small, "code", "0123456789"), -1);
}

static void test_backoff(void **state)
{
	(void)state;
	assert_int_equal(sg_idm_backoff_ms(0, 3, 1000, 900000), 0);
	assert_int_equal(sg_idm_backoff_ms(2, 3, 1000, 900000), 0);
	assert_int_equal(sg_idm_backoff_ms(3, 3, 1000, 900000), 1000);
	assert_int_equal(sg_idm_backoff_ms(4, 3, 1000, 900000), 2000);
	assert_int_equal(sg_idm_backoff_ms(8, 3, 1000, 900000), 32000);
	assert_int_equal(sg_idm_backoff_ms(40, 3, 1000, 900000), 900000);
	assert_int_equal(sg_idm_backoff_ms(4000000000u, 3, 1000, 900000), 900000);
}

static void test_throttle(void **state)
{
	(void)state;
	struct sg_idm_throttle *t = sg_idm_throttle_new(2, 1000, 60000, 100);
	int64_t now = 1000000;
	/* two free failures, then 1 s, then 2 s */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(sg_idm_throttle_begin(t, "u:a", 1, now), 0);
		sg_idm_throttle_end(t, "u:a", 1, 0, now);
	}
	assert_int_equal(sg_idm_throttle_begin(t, "u:a", 1, now), 1000);
	assert_int_equal(sg_idm_throttle_begin(t, "u:b", 1, now), 0);    /* per key */
	assert_int_equal(sg_idm_throttle_begin(t, "u:b", 1, now), 1000); /* one at a time */
	sg_idm_throttle_end(t, "u:b", 1, 1, now);
	assert_int_equal(sg_idm_throttle_begin(t, "u:a", 1, now + 1000), 0);
	sg_idm_throttle_end(t, "u:a", 1, 0, now + 1000);
	assert_int_equal(sg_idm_throttle_begin(t, "u:a", 1, now + 1000), 2000);
	/* success resets */
	assert_int_equal(sg_idm_throttle_begin(t, "u:a", 1, now + 3000), 0);
	sg_idm_throttle_end(t, "u:a", 1, 1, now + 3000);
	assert_int_equal(sg_idm_throttle_begin(t, "u:a", 1, now + 3000), 0);
	sg_idm_throttle_end(t, "u:a", 1, 1, now + 3000);
	/* non-exclusive keys (addresses) run concurrently, but no more at once than they have
	 * free attempts left: a burst cannot run before its failures are counted */
	assert_int_equal(sg_idm_throttle_begin(t, "a:1", 0, now), 0);
	assert_int_equal(sg_idm_throttle_begin(t, "a:1", 0, now), 0);
	assert_int_equal(sg_idm_throttle_begin(t, "a:1", 0, now), 1000); /* 2 in flight, 2 free */
	sg_idm_throttle_end(t, "a:1", 0, 0, now);                        /* 1 failure, 1 running */
	assert_int_equal(sg_idm_throttle_begin(t, "a:1", 0, now), 1000);
	sg_idm_throttle_end(t, "a:1", 0, 0, now); /* 2 failures: the backoff */
	assert_int_equal(sg_idm_throttle_begin(t, "a:1", 0, now), 1000);
	/* a success from the address takes one failure back, not all */
	assert_int_equal(sg_idm_throttle_begin(t, "a:1", 0, now + 1000), 0);
	sg_idm_throttle_end(t, "a:1", 0, 1, now + 1000); /* 1 failure left: 1 free attempt */
	assert_int_equal(sg_idm_throttle_begin(t, "a:1", 0, now + 1000), 0);
	assert_int_equal(sg_idm_throttle_begin(t, "a:1", 0, now + 1000), 1000);
	sg_idm_throttle_end(t, "a:1", 0, -1, now + 1000); /* not run: nothing counted */
	assert_int_equal(sg_idm_throttle_begin(t, "a:1", 0, now + 1000), 0);
	sg_idm_throttle_end(t, "a:1", 0, 0, now + 1000); /* 2 failures again: the backoff */
	assert_int_equal(sg_idm_throttle_begin(t, "a:1", 0, now + 1000), 1000);
	sg_idm_throttle_expire(t, now + 10 * 60000);
	sg_idm_throttle_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_authz_table), cmocka_unit_test(test_scopes),
	    cmocka_unit_test(test_form),        cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_throttle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
