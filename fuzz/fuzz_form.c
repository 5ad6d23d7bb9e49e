/* fuzz/fuzz_form.c: application/x-www-form-urlencoded and query strings as identity management
 * reads them (token, authorization and login requests; RFC 6749 §4.1, Appendix B). What
 * parses must survive encoding again (sg_idm_url_append) and parsing back unchanged. The
 * pairs are then judged as an authorization request (I2) the way idm/oidc.c does, against a
 * registry of one client ("ue-app" with one redirect URI): the user agent is never redirected
 * to a URI that is not the client's registered one (RFC 6749 §4.1.2.1), and a request is
 * accepted only with every parameter I2 requires (RFC 7636 S256 PKCE, openid, the password
 * acr, scopes within the client's). */
#include "fuzz.h"

#include "idm/logic.h"

#include <string.h>

#define CLIENT   "ue-app"
#define REDIRECT "http://127.0.0.1/cb"

static int has(const char *v)
{
	return v && *v;
}

static void authorize(const struct sg_idm_form *f)
{
	struct sg_idm_authz_req a = {
	    .response_type = sg_idm_form_get(f, "response_type"),
	    .client_id = sg_idm_form_get(f, "client_id"),
	    .redirect_uri = sg_idm_form_get(f, "redirect_uri"),
	    .scope = sg_idm_form_get(f, "scope"),
	    .state = sg_idm_form_get(f, "state"),
	    .acr_values = sg_idm_form_get(f, "acr_values"),
	    .code_challenge = sg_idm_form_get(f, "code_challenge"),
	    .code_challenge_method = sg_idm_form_get(f, "code_challenge_method"),
	    .nonce = sg_idm_form_get(f, "nonce"),
	};
	a.dup_client =
	    sg_idm_form_count(f, "client_id") > 1 || sg_idm_form_count(f, "redirect_uri") > 1;
	for (size_t i = 0; i < f->n; i++)
		a.dup_other |= sg_idm_form_count(f, f->kv[i].name) > 1;
	a.client_known = a.client_id && !strcmp(a.client_id, CLIENT);
	a.redirect_ok = a.client_known && a.redirect_uri && !strcmp(a.redirect_uri, REDIRECT);
	char allowed[256];
	sg_idm_client_scopes(NULL, allowed, sizeof allowed);
	a.allowed_scopes = allowed;
	struct sg_idm_authz_result r;
	sg_idm_authz_check(&a, &r);
	if (r.outcome != SG_IDM_AUTHZ_PAGE) /* a redirect goes only to the registered URI */
		FUZZ_CHECK(a.client_known && a.redirect_ok && !a.dup_client);
	if (r.outcome != SG_IDM_AUTHZ_OK) {
		FUZZ_CHECK(r.error && *r.error && r.description && *r.description);
		return;
	}
	FUZZ_CHECK(!r.error && !a.dup_other);
	FUZZ_CHECK(!strcmp(a.response_type, "code"));
	FUZZ_CHECK(has(a.state) && strlen(a.state) <= 512);
	FUZZ_CHECK(sg_idm_scope_valid(a.scope) && sg_idm_scope_has(a.scope, "openid"));
	FUZZ_CHECK(sg_idm_scope_subset(a.scope, allowed));
	FUZZ_CHECK(sg_idm_scope_has(a.acr_values, SG_IDM_ACR_PASSWORD));
	FUZZ_CHECK(!strcmp(a.code_challenge_method, "S256") && strlen(a.code_challenge) == 43);
	FUZZ_CHECK(!a.nonce || strlen(a.nonce) <= 255);
	/* every scope of a valid list has an audience; narrowing to one keeps a subset */
	json_t *aud = sg_idm_audiences(a.scope);
	FUZZ_CHECK(aud && json_array_size(aud) >= 1);
	for (size_t i = 0; i < json_array_size(aud); i++) {
		char narrow[256];
		const char *res = json_string_value(json_array_get(aud, i));
		FUZZ_CHECK(res &&
		           sg_idm_scope_for_resource(a.scope, res, narrow, sizeof narrow) == 0);
		FUZZ_CHECK(*narrow && sg_idm_scope_subset(narrow, a.scope));
	}
	json_decref(aud);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sg_idm_form f, g;
	if (sg_idm_form_parse((const char *)data, size, &f) != 0)
		return 0;
	/* every pair, percent-encoded: at most three bytes per input byte, plus separators */
	size_t cap = 3 * size + 2 * f.n + 2;
	char *q = calloc(1, cap);
	FUZZ_CHECK(q != NULL);
	for (size_t i = 0; i < f.n; i++) {
		FUZZ_CHECK(f.kv[i].name && f.kv[i].value);
		FUZZ_CHECK(sg_idm_url_append(q, cap, f.kv[i].name, f.kv[i].value) == 0);
	}
	FUZZ_CHECK(f.n == 0 || q[0] == '?');
	FUZZ_CHECK(sg_idm_form_parse(q + (f.n ? 1 : 0), strlen(q) - (f.n ? 1 : 0), &g) == 0);
	FUZZ_CHECK(g.n == f.n);
	for (size_t i = 0; i < f.n; i++) {
		FUZZ_CHECK(strcmp(f.kv[i].name, g.kv[i].name) == 0);
		FUZZ_CHECK(strcmp(f.kv[i].value, g.kv[i].value) == 0);
		FUZZ_CHECK(sg_idm_form_count(&f, f.kv[i].name) >= 1);
		FUZZ_CHECK(sg_idm_form_get(&f, f.kv[i].name) != NULL);
	}
	authorize(&f);
	sg_idm_form_free(&f);
	sg_idm_form_free(&g);
	free(q);
	return 0;
}
