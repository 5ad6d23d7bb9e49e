/* idm/oidc.c: discovery (OIDC Discovery 1.0 / RFC 8414), JWKS, the authorization endpoint
 * (TS 33.434 A.4.2.1, I2) and the login page with its POST (I3, G4). */
#include "idm/internal.h"

#include "base/addrtab.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/rand.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- discovery and JWKS ---- */

enum sg_http_result idm_h_discovery(struct sg_http_req *r, void *arg)
{
	struct idm_mount *m = arg;
	struct sg_idm *idm = m->idm;
	char u[8][320];
	const char *paths[] = {"/oauth2/authorize", "/oauth2/token",  "/oauth2/userinfo",
	                       "/oauth2/jwks",      "/oauth2/revoke", "/oauth2/introspect"};
	for (int i = 0; i < 6; i++)
		snprintf(u[i], sizeof u[i], "%s%s", idm->issuer, paths[i]);
	json_t *d = json_pack(
	    "{s:s,s:s,s:s,s:s,s:s,s:s,s:[s],s:[s],s:[sss],s:[s],s:[s],s:[ss],s:[s],s:[s],"
	    "s:[ssssss],s:[ssssssssssss],s:b,s:b,s:b,s:[s],s:[s]}",
	    "issuer", idm->issuer, "authorization_endpoint", u[0], "token_endpoint", u[1],
	    "userinfo_endpoint", u[2], "jwks_uri", u[3], "revocation_endpoint", u[4],
	    "response_types_supported", "code", "response_modes_supported", "query",
	    "grant_types_supported", "authorization_code", "refresh_token", "client_credentials",
	    "subject_types_supported", "public", "id_token_signing_alg_values_supported", "ES256",
	    "token_endpoint_auth_methods_supported", "client_secret_basic", "tls_client_auth",
	    "code_challenge_methods_supported", "S256", "acr_values_supported", SG_IDM_ACR_PASSWORD,
	    "scopes_supported", "openid", "seal:gm", "seal:km", "seal:kp", "seal:ipp", "sdd",
	    "claims_supported", "iss", "sub", "aud", "exp", "iat", "auth_time", "acr", "nonce",
	    "preferred_username", "val_user_ids", "SKeyProv", "cnf",
	    "tls_client_certificate_bound_access_tokens", 1,
	    "authorization_response_iss_parameter_supported", 1, "request_parameter_supported", 0,
	    "revocation_endpoint_auth_methods_supported", "client_secret_basic",
	    "introspection_endpoint_auth_methods_supported", "tls_client_auth");
	if (d && *idm->mtls_base) {
		/* RFC 8705 §5: endpoints for mutual TLS (SEAL-S); introspection lives only there */
		char t[320], rv[320], in[320];
		snprintf(t, sizeof t, "%s/oauth2/token", idm->mtls_base);
		snprintf(rv, sizeof rv, "%s/oauth2/revoke", idm->mtls_base);
		snprintf(in, sizeof in, "%s/oauth2/introspect", idm->mtls_base);
		json_object_set_new(d, "introspection_endpoint", json_string(in));
		json_object_set_new(d, "mtls_endpoint_aliases",
		                    json_pack("{s:s,s:s,s:s}", "token_endpoint", t,
		                              "revocation_endpoint", rv, "introspection_endpoint",
		                              in));
		json_array_append_new(
		    json_object_get(d, "revocation_endpoint_auth_methods_supported"),
		    json_string("tls_client_auth"));
	}
	if (!d) {
		sg_http_resp_problem(r, 500, NULL, "out of memory");
		return SG_HTTP_DONE;
	}
	sg_http_resp_header(r, "Cache-Control", "max-age=300");
	sg_http_resp_json(r, 200, d);
	return SG_HTTP_DONE;
}

enum sg_http_result idm_h_jwks(struct sg_http_req *r, void *arg)
{
	struct idm_mount *m = arg;
	json_t *j = sg_jws_keyset_to_jwks(m->idm->keys);
	if (!j) {
		sg_http_resp_problem(r, 500, NULL, "out of memory");
		return SG_HTTP_DONE;
	}
	sg_http_resp_header(r, "Cache-Control", "max-age=60");
	sg_http_resp_json(r, 200, j);
	sg_http_resp_header(r, "Content-Type", "application/jwk-set+json");
	return SG_HTTP_DONE;
}

/* ---- HTML ---- */

static void html_esc(struct sg_buf *b, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<':
			sg_buf_appends(b, "&lt;");
			break;
		case '>':
			sg_buf_appends(b, "&gt;");
			break;
		case '&':
			sg_buf_appends(b, "&amp;");
			break;
		case '"':
			sg_buf_appends(b, "&quot;");
			break;
		case '\'':
			sg_buf_appends(b, "&#39;");
			break;
		default:
			sg_buf_append(b, s, 1);
		}
	}
}

static const char STYLE[] =
    "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;color:#1b1f24}"
    "main{max-width:22rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;"
    "box-shadow:0 1px 4px rgba(0,0,0,.15)}h1{font-size:1.4rem;margin-top:0}"
    "label{display:block;margin:1rem 0 .3rem;font-weight:600}"
    "input{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #767676;"
    "border-radius:4px}button{margin-top:1.5rem;width:100%;padding:.7rem;font-size:1rem;"
    "background:#0b5cad;color:#fff;border:0;border-radius:4px;cursor:pointer}"
    "button:focus,input:focus{outline:3px solid #f5a623;outline-offset:1px}"
    ".err{color:#a00;background:#fdecea;padding:.6rem;border-radius:4px}";

/* The page headers: CSP without scripts; the form may post to us and (after our 302) reach the
 * client's redirect URI, which browsers check against form-action too. */
static void page_headers(struct sg_http_req *r, const char *redirect_uri)
{
	char csp[768], origin[400] = "";
	if (redirect_uri) {
		const char *p = strstr(redirect_uri, "://");
		if (p && (!strncmp(redirect_uri, "http://", 7) ||
		          !strncmp(redirect_uri, "https://", 8))) {
			size_t n = (size_t)(p + 3 - redirect_uri) + strcspn(p + 3, "/?#");
			snprintf(origin, sizeof origin, " %.*s", (int)n, redirect_uri);
		} else if ((p = strchr(redirect_uri, ':'))) {
			snprintf(origin, sizeof origin, " %.*s", (int)(p - redirect_uri + 1),
			         redirect_uri);
		}
		if (origin[0] && strpbrk(origin + 1, ";,\"'\t "))
			origin[0] = '\0'; /* never let a URI inject CSP directives */
	}
	snprintf(csp, sizeof csp,
	         "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'%s; "
	         "frame-ancestors 'none'; base-uri 'none'",
	         origin);
	sg_http_resp_header(r, "Content-Security-Policy", csp);
	sg_http_resp_header(r, "X-Frame-Options", "DENY");
	sg_http_resp_header(r, "Referrer-Policy", "no-referrer");
	sg_http_resp_header(r, "X-Content-Type-Options", "nosniff");
	sg_http_resp_header(r, "Cache-Control", "no-store");
}

static void page_open(struct sg_buf *b, const char *title)
{
	sg_buf_appends(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	                  "<title>");
	html_esc(b, title);
	sg_buf_printf(b, " - sealguard</title><style>%s</style></head><body><main>", STYLE);
}

static void error_page(struct sg_http_req *r, int status, const char *msg)
{
	struct sg_buf b = SG_BUF_INIT;
	page_open(&b, "Sign-in error");
	sg_buf_appends(&b, "<h1>Sign-in error</h1><p role=\"alert\" class=\"err\">");
	html_esc(&b, msg);
	sg_buf_appends(&b, "</p><p>Go back to the application and start again.</p></main></body>"
	                   "</html>\n");
	page_headers(r, NULL);
	sg_http_resp_status(r, status);
	sg_http_resp_body(r, b.data, b.len, "text/html; charset=utf-8");
	sg_buf_free(&b);
}

/* The login page (I3) for a fresh transaction made from t. */
static void login_page(struct sg_idm *idm, struct sg_http_req *r, struct idm_tx *t, int status,
                       const char *msg, const char *username)
{
	t->has_addr = sg_addr_key_text(sg_http_req_peer_addr(r), t->addr) == 0;
	if (idm_tx_put(idm, t) != 0) {
		error_page(r, 503, "The server is busy. Try again later.");
		return;
	}
	struct sg_buf b = SG_BUF_INIT;
	page_open(&b, "Sign in");
	sg_buf_appends(&b, "<h1>Sign in</h1><p>to continue to <strong>");
	html_esc(&b, t->client_id);
	sg_buf_appends(&b, "</strong></p>");
	if (msg) {
		sg_buf_appends(&b, "<p role=\"alert\" class=\"err\" id=\"msg\">");
		html_esc(&b, msg);
		sg_buf_appends(&b, "</p>");
	}
	/* After a failure the message describes both fields and the focus goes where the person
	 * types next (the password when the user name is kept), so a screen reader reads it. */
	int focus_pw = msg && username && *username;
	sg_buf_printf(&b,
	              "<form method=\"post\" action=\"/oauth2/login\">"
	              "<input type=\"hidden\" name=\"tx\" value=\"%s\">"
	              "<label for=\"username\">User name</label>"
	              "<input id=\"username\" name=\"username\" type=\"text\" "
	              "autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" "
	              "required maxlength=\"255\"%s%s value=\"",
	              t->id, msg ? " aria-describedby=\"msg\"" : "", focus_pw ? "" : " autofocus");
	html_esc(&b, username ? username : "");
	sg_buf_printf(&b,
	              "\"><label for=\"password\">Password</label>"
	              "<input id=\"password\" name=\"password\" type=\"password\" "
	              "autocomplete=\"current-password\" required maxlength=\"1024\"%s%s>"
	              "<button type=\"submit\">Sign in</button></form></main></body></html>\n",
	              msg ? " aria-describedby=\"msg\"" : "", focus_pw ? " autofocus" : "");
	page_headers(r, t->redirect_uri);
	sg_http_resp_status(r, status);
	sg_http_resp_body(r, b.data, b.len, "text/html; charset=utf-8");
	sg_buf_free(&b);
}

/* ---- authorization endpoint ---- */

static void redirect_to(struct sg_http_req *r, const char *loc)
{
	sg_http_resp_header(r, "Location", loc);
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_header(r, "Referrer-Policy", "no-referrer");
	sg_http_resp_status(r, 302);
	sg_http_resp_body(r, NULL, 0, NULL);
}

enum sg_http_result idm_h_authorize(struct sg_http_req *r, void *arg)
{
	struct idm_mount *m = arg;
	struct sg_idm *idm = m->idm;
	const char *q = sg_http_req_query(r);
	struct sg_idm_form f;
	if (sg_idm_form_parse(q, strlen(q), &f) != 0) {
		error_page(r, 400, "The sign-in request is malformed.");
		return SG_HTTP_DONE;
	}
	struct idm_reg *reg = idm_reg_get(idm);
	struct sg_idm_authz_req a = {
	    .response_type = sg_idm_form_get(&f, "response_type"),
	    .client_id = sg_idm_form_get(&f, "client_id"),
	    .redirect_uri = sg_idm_form_get(&f, "redirect_uri"),
	    .scope = sg_idm_form_get(&f, "scope"),
	    .state = sg_idm_form_get(&f, "state"),
	    .acr_values = sg_idm_form_get(&f, "acr_values"),
	    .code_challenge = sg_idm_form_get(&f, "code_challenge"),
	    .code_challenge_method = sg_idm_form_get(&f, "code_challenge_method"),
	    .nonce = sg_idm_form_get(&f, "nonce"),
	};
	a.dup_client =
	    sg_idm_form_count(&f, "client_id") > 1 || sg_idm_form_count(&f, "redirect_uri") > 1;
	for (size_t i = 0; i < f.n; i++)
		if (sg_idm_form_count(&f, f.kv[i].name) > 1)
			a.dup_other = 1;
	const struct sg_store_client *c = idm_client_find(reg, a.client_id);
	a.client_known = c != NULL;
	for (size_t i = 0; c && a.redirect_uri && i < c->n_redirect_uris; i++)
		a.redirect_ok |= !strcmp(c->redirect_uris[i], a.redirect_uri); /* exact (I2) */
	char allowed[256];
	sg_idm_client_scopes(c ? c->scopes : NULL, allowed, sizeof allowed);
	a.allowed_scopes = allowed;
	struct sg_idm_authz_result res;
	sg_idm_authz_check(&a, &res);
	if (res.outcome == SG_IDM_AUTHZ_PAGE) {
		error_page(r, 400, res.description);
	} else if (res.outcome == SG_IDM_AUTHZ_REDIRECT) {
		/* RFC 6749 §4.1.2.1 (+ RFC 9207 iss) */
		char loc[4096];
		snprintf(loc, sizeof loc, "%s", a.redirect_uri);
		if (sg_idm_url_append(loc, sizeof loc, "error", res.error) ||
		    sg_idm_url_append(loc, sizeof loc, "error_description", res.description) ||
		    (a.state && sg_idm_url_append(loc, sizeof loc, "state", a.state)) ||
		    sg_idm_url_append(loc, sizeof loc, "iss", idm->issuer))
			error_page(r, 400, "The sign-in request is too long.");
		else
			redirect_to(r, loc);
	} else {
		struct idm_tx t = {.client_id = (char *)a.client_id,
		                   .redirect_uri = (char *)a.redirect_uri,
		                   .scope = (char *)a.scope,
		                   .state = (char *)a.state,
		                   .nonce = (char *)a.nonce,
		                   .code_challenge = (char *)a.code_challenge};
		login_page(idm, r, &t, 200, NULL, NULL);
	}
	idm_reg_put(reg);
	sg_idm_form_free(&f);
	return SG_HTTP_DONE;
}

/* ---- login ---- */

struct login_job {
	struct sg_http_req *r;
	struct sg_idm *idm;
	struct idm_mount *m;
	struct idm_tx *tx;
	char *username, *password;
	char addr_key[80], user_key[300];
	int ok;
	char code[SG_SECRET_STR_LEN];
};

static void addr_of(const char *peer, char *out, size_t outlen)
{
	/* "1.2.3.4:5678" or "[2001:db8::1]:5678" -> the client as every other limit sees it
	 * (sg_addr_key: an IPv6 client by its /64, which a host holds whole) */
	uint8_t key[16];
	if (sg_addr_key_text(peer, key) != 0) {
		snprintf(out, outlen, "a:%s", peer ? peer : "");
		return;
	}
	size_t o = (size_t)snprintf(out, outlen, "a:");
	for (int i = 0; i < 16 && o + 2 < outlen; i++)
		o += (size_t)snprintf(out + o, outlen - o, "%02x", key[i]);
}

static sg_err login_job(struct sg_store *st, void *arg)
{
	struct login_job *j = arg;
	struct sg_idm *idm = j->idm;
	struct sg_store_user u = {0};
	sg_err e = sg_store_user_get_by_name(st, j->username, &u);
	if (e != SG_OK && e != SG_ERR_NOTFOUND)
		return e;
	int found = e == SG_OK;
	/* I3/G4: the same scrypt work whether or not the user exists (no enumeration) */
	sg_err v = sg_password_verify(j->password, found ? u.password_hash : idm->dummy_phc);
	j->ok = found && v == SG_OK && !u.disabled;
	if (!j->ok) {
		sg_store_user_clear(&u);
		return SG_OK;
	}
	if (sg_password_needs_rehash(u.password_hash, &idm->pw)) {
		char phc[SG_PASSWORD_PHC_MAX];
		if (sg_password_hash(j->password, &idm->pw, phc, sizeof phc) == SG_OK)
			sg_store_user_set_password(st, u.name, phc);
		OPENSSL_cleanse(phc, sizeof phc);
	}
	/* I3: a single-use, short-lived code bound to client, redirect URI, PKCE challenge */
	unsigned char digest[SG_SECRET_DIGEST];
	char gid[32];
	int64_t now = sg_now_ms();
	if ((e = sg_secret_generate(j->code, sizeof j->code)) != SG_OK ||
	    (e = sg_secret_digest(idm->pepper, sizeof idm->pepper, j->code, digest)) != SG_OK ||
	    (e = sg_random_token(gid, sizeof gid, 16)) != SG_OK) {
		sg_store_user_clear(&u);
		j->ok = 0;
		return e;
	}
	struct sg_store_code c = {
	    .digest_len = SG_SECRET_DIGEST,
	    .client_id = j->tx->client_id,
	    .sub = u.sub,
	    .redirect_uri = j->tx->redirect_uri,
	    .scope = j->tx->scope,
	    .nonce = j->tx->nonce,
	    .code_challenge = j->tx->code_challenge,
	    .acr = SG_IDM_ACR_PASSWORD,
	    .auth_time = now,
	    .expires_at = now + (int64_t)idm->conf->idm.code_ttl_s * 1000,
	    .grant_id = gid,
	};
	memcpy(c.digest, digest, sizeof digest);
	if ((e = sg_store_tx_begin(st)) == SG_OK) {
		char actor[300];
		snprintf(actor, sizeof actor, "user:%s", u.name);
		struct sg_store_audit a = {.ts = now,
		                           .actor = actor,
		                           .action = "login",
		                           .object = j->tx->client_id,
		                           .refpoint = (char *)j->m->rp->name,
		                           .detail = "acr=3gpp:acr:password"};
		e = sg_store_code_put(st, &c);
		if (e == SG_OK)
			e = sg_store_audit_append(st, &a);
		if (e == SG_OK)
			e = sg_store_tx_commit(st);
		else
			sg_store_tx_rollback(st);
	}
	OPENSSL_cleanse(digest, sizeof digest);
	sg_store_user_clear(&u);
	if (e != SG_OK)
		j->ok = 0;
	return e;
}

static void login_job_free(struct login_job *j)
{
	idm_tx_free(j->tx);
	free(j->username);
	if (j->password) {
		OPENSSL_cleanse(j->password, strlen(j->password));
		free(j->password);
	}
	OPENSSL_cleanse(j->code, sizeof j->code);
	free(j);
}

static void login_done(sg_err rc, void *arg)
{
	struct login_job *j = arg;
	struct sg_idm *idm = j->idm;
	struct sg_http_req *r = j->r;
	int64_t now = sg_now_ms();
	int ok = rc == SG_OK && j->ok;
	sg_idm_throttle_end(idm->thr_user, j->user_key, 1, ok, now);
	sg_idm_throttle_end(idm->thr_addr, j->addr_key, 0, ok, now);
	if (rc != SG_OK) {
		sg_log_error("idm: login store failure: %s", sg_err_str(rc));
		error_page(r, 503, "The server could not complete the sign-in. Try again later.");
	} else if (ok) {
		char loc[4096];
		snprintf(loc, sizeof loc, "%s", j->tx->redirect_uri);
		if (sg_idm_url_append(loc, sizeof loc, "code", j->code) ||
		    sg_idm_url_append(loc, sizeof loc, "state", j->tx->state) ||
		    sg_idm_url_append(loc, sizeof loc, "iss", idm->issuer))
			error_page(r, 400, "The sign-in request is too long.");
		else
			redirect_to(r, loc);
		OPENSSL_cleanse(loc, sizeof loc);
	} else {
		idm_audit(idm, "idm", "login.failure", j->tx->client_id, j->m->rp->name, NULL);
		login_page(idm, r, j->tx, 200, "Wrong user name or password.", j->username);
	}
	login_job_free(j);
	sg_http_req_finish(r);
}

enum sg_http_result idm_h_login(struct sg_http_req *r, void *arg)
{
	struct idm_mount *m = arg;
	struct sg_idm *idm = m->idm;
	struct sg_idm_form f;
	if (idm_body_form(r, &f, 0) != 0)
		return SG_HTTP_DONE;
	struct idm_tx *tx = idm_tx_take(idm, sg_idm_form_get(&f, "tx"));
	if (!tx || sg_idm_form_count(&f, "tx") != 1) {
		/* single use: a replayed, forged or expired transaction goes nowhere */
		idm_tx_free(tx);
		sg_idm_form_free(&f);
		error_page(r, 400, "This sign-in page has expired or was already used.");
		return SG_HTTP_DONE;
	}
	const char *user = sg_idm_form_get(&f, "username"), *pass = sg_idm_form_get(&f, "password");
	if (!user || !*user || !pass || !*pass || strlen(user) > 255 ||
	    strlen(pass) > SG_PASSWORD_MAX_LEN) {
		login_page(idm, r, tx, 200, "Enter your user name and password.", user);
		idm_tx_free(tx);
		sg_idm_form_free(&f);
		return SG_HTTP_DONE;
	}
	struct login_job *j = calloc(1, sizeof *j);
	if (!j || !(j->username = strdup(user)) || !(j->password = strdup(pass))) {
		if (j)
			free(j->username);
		free(j);
		idm_tx_free(tx);
		sg_idm_form_free(&f);
		error_page(r, 503, "The server is busy. Try again later.");
		return SG_HTTP_DONE;
	}
	sg_idm_form_free(&f);
	j->r = r;
	j->idm = idm;
	j->m = m;
	j->tx = tx;
	addr_of(sg_http_req_peer_addr(r), j->addr_key, sizeof j->addr_key);
	snprintf(j->user_key, sizeof j->user_key, "u:%s", j->username);
	/* G4: exponential backoff per source address and per account */
	int64_t now = sg_now_ms();
	int64_t wait = sg_idm_throttle_begin(idm->thr_addr, j->addr_key, 0, now);
	if (!wait && (wait = sg_idm_throttle_begin(idm->thr_user, j->user_key, 1, now)))
		sg_idm_throttle_end(idm->thr_addr, j->addr_key, 0, -1, now); /* did not run */
	if (wait) {
		char ra[24];
		snprintf(ra, sizeof ra, "%lld", (long long)((wait + 999) / 1000));
		idm_audit(idm, "idm", "login.throttled", tx->client_id, m->rp->name, NULL);
		login_page(idm, r, tx, 429,
		           "Too many failed attempts. Wait a moment and try again.", j->username);
		sg_http_resp_header(r, "Retry-After", ra);
		login_job_free(j);
		return SG_HTTP_DONE;
	}
	/* scrypt runs on the pool, never on the event loop */
	if (sg_store_pool_submit_read(idm->pool, login_job, j, login_done, j,
	                              sg_http_req_loop(r)) != SG_OK) {
		sg_idm_throttle_end(idm->thr_user, j->user_key, 1, -1, now);
		sg_idm_throttle_end(idm->thr_addr, j->addr_key, 0, -1, now);
		login_job_free(j);
		error_page(r, 503, "The server is busy. Try again later.");
		return SG_HTTP_DONE;
	}
	return SG_HTTP_ASYNC;
}
