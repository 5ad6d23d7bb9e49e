/* idm/token.c: the token endpoint (TS 33.434 A.4.2.4-A.4.2.5; I5, I6, I9; RFC 6749 §4.1.3,
 * §4.4, §6; RFC 7636 §4.6; RFC 8705; RFC 8707) and token revocation (RFC 7009). */
#include "idm/internal.h"

#include "base/clock.h"
#include "base/log.h"
#include "base/rand.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { G_CODE = 1, G_REFRESH, G_REVOKE_RT, G_REVOKE_AT };

struct tok_job {
	struct sg_http_req *r;
	struct sg_idm *idm;
	struct idm_mount *m;
	int grant;
	char *client_id, *redirect_uri, *verifier, *scope_req, *resource;
	unsigned char digest[SG_SECRET_DIGEST];
	char new_rt[SG_SECRET_STR_LEN];
	unsigned char new_rt_digest[SG_SECRET_DIGEST];
	int64_t now;
	/* access-token revocation */
	char *jti;
	int64_t jti_exp;
	/* results */
	const char *error, *desc;
	char *replay_gid; /* a grant revoked by this request */
	char *gid, *granted, *tok_scope, *nonce;
	int64_t auth_time;
	struct sg_store_user user;
	/* the tokens, signed during the commit (tok_ran) or after it (token_response) */
	int minted;
	sg_err mint_e;
	char *at, *idt;
};

static void cleanse_free(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

static void tok_job_free(struct tok_job *j)
{
	free(j->client_id);
	free(j->redirect_uri);
	cleanse_free(j->verifier);
	cleanse_free(j->at);
	cleanse_free(j->idt);
	free(j->scope_req);
	free(j->resource);
	free(j->jti);
	free(j->replay_gid);
	free(j->gid);
	free(j->granted);
	free(j->tok_scope);
	free(j->nonce);
	sg_store_user_clear(&j->user);
	OPENSSL_cleanse(j->new_rt, sizeof j->new_rt);
	OPENSSL_cleanse(j->digest, sizeof j->digest);
	free(j);
}

static int64_t grant_revoke_until(const struct sg_idm *idm, int64_t now)
{
	/* a revoked grant is remembered while an access token it issued may still be valid */
	return now + ((int64_t)idm->conf->idm.access_ttl_s + SG_JWS_MAX_LEEWAY) * 1000;
}

static sg_err fail(struct tok_job *j, const char *error, const char *desc)
{
	j->error = error;
	j->desc = desc;
	return SG_ERR_DENIED; /* the job's savepoint rolls back: nothing changes */
}

static void audit_row(struct sg_store *st, struct tok_job *j, const char *action,
                      const char *object, const char *gid)
{
	char actor[300], detail[96];
	snprintf(actor, sizeof actor, "client:%s", j->client_id);
	snprintf(detail, sizeof detail, "grant=%s", gid ? gid : "-");
	struct sg_store_audit a = {.ts = j->now,
	                           .actor = actor,
	                           .action = (char *)action,
	                           .object = (char *)object,
	                           .refpoint = (char *)j->m->rp->name,
	                           .detail = detail};
	sg_store_audit_append(st, &a);
}

/* Scope of the access token: the requested one (no wider than granted, I9) narrowed to the
 * RFC 8707 resource. */
static sg_err token_scope(struct tok_job *j, const char *granted)
{
	const char *s = j->scope_req ? j->scope_req : granted;
	if (j->scope_req &&
	    (!sg_idm_scope_valid(j->scope_req) || !sg_idm_scope_subset(j->scope_req, granted)))
		return fail(j, "invalid_scope", "the requested scope exceeds the granted scope");
	char narrowed[256];
	if (j->resource) {
		if (sg_idm_scope_for_resource(s, j->resource, narrowed, sizeof narrowed) != 0)
			return fail(j, "invalid_target",
			            "resource is not an audience of the granted scope");
		s = narrowed;
	}
	j->tok_scope = strdup(s);
	j->granted = strdup(granted);
	return j->tok_scope && j->granted ? SG_OK : SG_ERR_NOMEM;
}

static sg_err account_check(struct sg_store *st, struct tok_job *j, const char *sub)
{
	sg_err e = sg_store_user_get_by_sub(st, sub, &j->user);
	if (e == SG_ERR_NOTFOUND || (e == SG_OK && j->user.disabled))
		return fail(j, "invalid_grant", "the account is disabled or removed");
	return e;
}

static sg_err put_successor(struct sg_store *st, struct tok_job *j, const char *gid,
                            const char *sub, const char *scope)
{
	struct sg_store_refresh rt = {
	    .digest_len = SG_SECRET_DIGEST,
	    .grant_id = (char *)gid,
	    .client_id = j->client_id,
	    .sub = (char *)sub,
	    .scope = (char *)scope,
	    .expires_at = j->now + (int64_t)j->idm->conf->idm.refresh_ttl_s * 1000,
	};
	memcpy(rt.digest, j->new_rt_digest, SG_SECRET_DIGEST);
	return sg_store_refresh_put(st, &rt);
}

/* A replayed code or refresh token: its grant is revoked and audited, the request fails with
 * invalid_grant (the caller answers after the commit). */
static sg_err replay_revoke(struct sg_store *st, struct tok_job *j, const char *action,
                            const char *sub, const char *gid, const char *desc)
{
	sg_err e = sg_store_grant_revoke(st, gid, j->now, grant_revoke_until(j->idm, j->now));
	if (e == SG_OK) {
		audit_row(st, j, action, sub, gid);
		j->replay_gid = strdup(gid);
		j->error = "invalid_grant";
		j->desc = desc;
	}
	return e;
}

static sg_err code_job(struct sg_store *st, struct tok_job *j)
{
	struct sg_store_code c = {0};
	enum sg_store_use use;
	sg_err e = sg_store_code_consume(st, j->digest, SG_SECRET_DIGEST, j->now, &c, &use);
	if (e == SG_ERR_NOTFOUND)
		return fail(j, "invalid_grant", "unknown authorization code");
	if (e != SG_OK)
		return e;
	if (use == SG_STORE_USE_REPLAY) {
		/* I5 / RFC 9700 §4.2.4... a replayed code revokes what it issued */
		e = replay_revoke(st, j, "token.code_replay", c.sub, c.grant_id,
		                  "authorization code already used; its grant is revoked");
		sg_store_code_clear(&c);
		return e;
	}
	if (use != SG_STORE_USE_OK)
		e = fail(j, "invalid_grant", "authorization code expired");
	else if (strcmp(c.client_id, j->client_id) != 0)
		e = fail(j, "invalid_grant", "authorization code was issued to another client");
	else if (strcmp(c.redirect_uri, j->redirect_uri) != 0) /* I5: identical */
		e = fail(j, "invalid_grant", "redirect_uri differs from the authorization request");
	else if (sg_pkce_s256_check(j->verifier, c.code_challenge) != SG_OK) /* RFC 7636 §4.6 */
		e = fail(j, "invalid_grant", "code_verifier does not match the code challenge");
	else if ((e = account_check(st, j, c.sub)) == SG_OK &&
	         (e = token_scope(j, c.scope)) == SG_OK &&
	         (e = put_successor(st, j, c.grant_id, c.sub, c.scope)) == SG_OK) {
		audit_row(st, j, "token.authorization_code", c.sub, c.grant_id);
		j->gid = strdup(c.grant_id);
		j->nonce = c.nonce ? strdup(c.nonce) : NULL;
		j->auth_time = c.auth_time;
		if (!j->gid || (c.nonce && !j->nonce))
			e = SG_ERR_NOMEM;
	}
	sg_store_code_clear(&c);
	return e;
}

static sg_err refresh_job(struct sg_store *st, struct tok_job *j)
{
	struct sg_store_refresh rt = {0};
	enum sg_store_use use;
	sg_err e = sg_store_refresh_consume(st, j->digest, SG_SECRET_DIGEST, j->now, &rt, &use);
	if (e == SG_ERR_NOTFOUND)
		return fail(j, "invalid_grant", "unknown refresh token");
	if (e != SG_OK)
		return e;
	if (use == SG_STORE_USE_REPLAY) {
		/* I9: reuse of a rotated refresh token revokes the whole family */
		e = replay_revoke(st, j, "token.refresh_reuse", rt.sub, rt.grant_id,
		                  "refresh token already used; its grant is revoked");
		sg_store_refresh_clear(&rt);
		return e;
	}
	if (use != SG_STORE_USE_OK)
		e = fail(j, "invalid_grant", "refresh token expired or revoked");
	else if (strcmp(rt.client_id, j->client_id) != 0)
		e = fail(j, "invalid_grant", "refresh token was issued to another client");
	else if ((e = account_check(st, j, rt.sub)) == SG_OK &&
	         (e = token_scope(j, rt.scope)) == SG_OK &&
	         (e = put_successor(st, j, rt.grant_id, rt.sub, rt.scope)) == SG_OK) {
		audit_row(st, j, "token.refresh_token", rt.sub, rt.grant_id);
		if (!(j->gid = strdup(rt.grant_id)))
			e = SG_ERR_NOMEM;
	}
	sg_store_refresh_clear(&rt);
	return e;
}

static sg_err revoke_rt_job(struct sg_store *st, struct tok_job *j)
{
	struct sg_store_refresh rt = {0};
	enum sg_store_use use;
	sg_err e = sg_store_refresh_consume(st, j->digest, SG_SECRET_DIGEST, j->now, &rt, &use);
	if (e == SG_ERR_NOTFOUND)
		return SG_ERR_NOTFOUND; /* RFC 7009 §2.2: unknown tokens are fine */
	if (e != SG_OK)
		return e;
	if ((use == SG_STORE_USE_OK || use == SG_STORE_USE_REPLAY) &&
	    !strcmp(rt.client_id, j->client_id)) {
		/* RFC 7009 §2.1: revoking a refresh token revokes the grant and its tokens */
		e = sg_store_grant_revoke(st, rt.grant_id, j->now,
		                          grant_revoke_until(j->idm, j->now));
		if (e == SG_OK) {
			audit_row(st, j, "revoke.refresh_token", rt.sub, rt.grant_id);
			j->replay_gid = strdup(rt.grant_id);
		}
	} else {
		e = SG_ERR_DENIED; /* another client's token: change nothing */
	}
	sg_store_refresh_clear(&rt);
	return e;
}

static sg_err revoke_at_job(struct sg_store *st, struct tok_job *j)
{
	sg_err e = sg_store_jti_revoke(st, j->jti, j->now, j->jti_exp);
	if (e == SG_OK)
		audit_row(st, j, "revoke.access_token", j->jti, NULL);
	return e;
}

static sg_err tok_job_run(struct sg_store *st, void *arg)
{
	struct tok_job *j = arg;
	switch (j->grant) {
	case G_CODE:
		return code_job(st, j);
	case G_REFRESH:
		return refresh_job(st, j);
	case G_REVOKE_RT:
		return revoke_rt_job(st, j);
	default:
		return revoke_at_job(st, j);
	}
}

/* 1 when s needs no JSON escaping and is what a token response carries: base64url, the dots
 * of a JWS, the colons and spaces of a scope list. */
static int json_plain(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.' ||
		      *s == ':' || *s == ' '))
			return 0;
	return 1;
}

/* I6 / RFC 6749 §5.1 (+ OIDC Core §3.1.3.3 id_token) successful token response, no-store.
 * Every value is a base64url token, a scope list that passed sg_idm_scope_valid() or a number,
 * so the body is written directly: a jansson object and its serialisation were a visible share
 * of a client_credentials request. A value outside that alphabet (json_plain) still goes
 * through jansson. rt and idt may be NULL. */
static void token_body(struct sg_http_req *r, const char *at, unsigned ttl_s, const char *rt,
                       const char *scope, const char *idt)
{
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_header(r, "Pragma", "no-cache");
	if (!json_plain(at) || !json_plain(scope) || (rt && !json_plain(rt)) ||
	    (idt && !json_plain(idt))) {
		json_t *resp = json_pack("{s:s,s:s,s:I,s:s}", "access_token", at, "token_type",
		                         "Bearer", "expires_in", (json_int_t)ttl_s, "scope", scope);
		if (resp && rt)
			json_object_set_new(resp, "refresh_token", json_string(rt));
		if (resp && idt)
			json_object_set_new(resp, "id_token", json_string(idt));
		sg_http_resp_json(r, 200, resp);
		return;
	}
	size_t cap =
	    strlen(at) + strlen(scope) + (rt ? strlen(rt) : 0) + (idt ? strlen(idt) : 0) + 160;
	char *b = malloc(cap);
	if (!b) {
		idm_oauth_error(r, 503, "temporarily_unavailable", "out of memory");
		return;
	}
	int n = snprintf(b, cap,
	                 "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%u,"
	                 "%s%s%s\"scope\":\"%s\"%s%s%s}",
	                 at, ttl_s, rt ? "\"refresh_token\":\"" : "", rt ? rt : "", rt ? "\"," : "",
	                 scope, idt ? ",\"id_token\":\"" : "", idt ? idt : "", idt ? "\"" : "");
	sg_http_resp_status(r, 200);
	sg_http_resp_body(r, b, (size_t)n, "application/json");
	OPENSSL_cleanse(b, (size_t)n);
	free(b);
}

/* Signs the tokens of a successful code exchange or refresh (I7, I8) into j. Runs on the loop,
 * from tok_ran while the writer commits, or from token_response when the commit came first. */
static void tok_mint(struct tok_job *j)
{
	struct sg_idm *idm = j->idm;
	struct idm_reg *reg = idm_reg_get(idm);
	json_t *extra = json_pack("{s:o,s:s}", "val_user_ids", idm_val_user_ids(reg, &j->user),
	                          "preferred_username", j->user.name);
	j->mint_e = idm_mint_access(idm, reg, j->user.sub, j->client_id, j->tok_scope, j->resource,
	                            j->gid, extra, &j->at, NULL);
	/* OIDC Core §3.1.3.3 / §12.2: an ID token with openid; on refresh without nonce */
	if (j->mint_e == SG_OK && sg_idm_scope_has(j->tok_scope, "openid"))
		j->mint_e = idm_mint_id(idm, reg, j->user.sub, j->client_id,
		                        j->grant == G_CODE ? j->nonce : NULL,
		                        j->grant == G_CODE ? j->auth_time / 1000 : 0, &j->idt);
	json_decref(extra);
	idm_reg_put(reg);
	j->minted = 1;
}

/* The pool's early hand-off: the exchange's writes ran and are being committed. The tokens
 * are signed now, in parallel with the fsync, and disclosed only by tok_done, after the commit
 * (a failed commit discards them). */
static void tok_ran(sg_err rc, void *arg)
{
	struct tok_job *j = arg;
	if (rc == SG_OK && !j->error && !j->minted)
		tok_mint(j);
}

static void token_response(struct tok_job *j)
{
	if (!j->minted)
		tok_mint(j);
	if (j->mint_e != SG_OK)
		idm_oauth_error(j->r, 500, "server_error", "cannot issue tokens");
	else
		token_body(j->r, j->at, j->idm->conf->idm.access_ttl_s, j->new_rt, j->tok_scope,
		           j->idt);
}

static void tok_done(sg_err rc, void *arg)
{
	struct tok_job *j = arg;
	struct sg_idm *idm = j->idm;
	struct sg_http_req *r = j->r;
	if (j->replay_gid)
		idm_revoked_add(idm, SG_STORE_REVOKED_GRANT, j->replay_gid,
		                grant_revoke_until(idm, sg_now_ms()));
	if (j->grant == G_REVOKE_AT && rc == SG_OK)
		idm_revoked_add(idm, SG_STORE_REVOKED_JTI, j->jti, j->jti_exp);
	if (j->grant == G_REVOKE_RT || j->grant == G_REVOKE_AT) {
		if (rc == SG_OK || rc == SG_ERR_NOTFOUND || rc == SG_ERR_DENIED) {
			sg_http_resp_header(r, "Cache-Control", "no-store");
			sg_http_resp_status(r, 200); /* RFC 7009 §2.2 */
			sg_http_resp_body(r, NULL, 0, NULL);
		} else {
			idm_oauth_error(r, 503, "temporarily_unavailable", "try again later");
		}
	} else if (j->error) {
		idm_oauth_error(r, 400, j->error, j->desc);
	} else if (rc != SG_OK) {
		sg_log_error("idm: token endpoint store failure: %s", sg_err_str(rc));
		idm_oauth_error(r, 503, "temporarily_unavailable", "try again later");
	} else {
		token_response(j);
	}
	tok_job_free(j);
	sg_http_req_finish(r);
}

static enum sg_http_result submit(struct tok_job *j)
{
	struct sg_http_req *r = j->r;
	/* a code exchange or refresh signs its tokens while its writes commit */
	int early = j->grant == G_CODE || j->grant == G_REFRESH;
	if (sg_store_pool_submit_early(j->idm->pool, tok_job_run, j, early ? tok_ran : NULL,
	                               tok_done, j, sg_http_req_loop(r)) != SG_OK) {
		tok_job_free(j);
		idm_oauth_error(r, 503, "temporarily_unavailable", "try again later");
		return SG_HTTP_DONE;
	}
	return SG_HTTP_ASYNC;
}

/* RFC 6749 §4.4 + RFC 8705: VAL servers over SEAL-S. Answered on the loop, without waiting for
 * the store: the token is a self-contained JWT and nothing its validity or its revocation
 * depends on is written when it is issued. Its grant id is derived from the VAL server's
 * registration (already durable: removing the VAL server revokes the grant, and I10 refuses
 * revoked tokens), a revocation of its jti (RFC 7009) is written, durably, when it is revoked, and
 * its lifetime is bounded by exp. The one write, the audit row, is queued lazily (written with the
 * next batch, or within SG_STORE_LAZY_MS; never waited for): a crash can lose the audit lines of
 * the last milliseconds, never a security property. Waiting for that fsync would turn a CPU-bound
 * path into a disk-bound one for no guarantee a VAL server could observe. */
static void client_credentials(struct idm_mount *m, struct idm_reg *reg, struct sg_http_req *r,
                               const struct sg_idm_form *f)
{
	struct sg_idm *idm = m->idm;
	if (!m->mtls) {
		idm_oauth_error(
		    r, 400, "unauthorized_client",
		    "client_credentials is served on the mutual-TLS token endpoint only "
		    "(mtls_endpoint_aliases)");
		return;
	}
	const struct sg_store_valserver *v;
	if (idm_client_tls(m, reg, r, f, &v) != 0)
		return;
	char allowed[256], narrowed[256];
	sg_idm_valserver_scopes(v->scopes, v->key_provisioning, allowed, sizeof allowed);
	const char *scope = sg_idm_form_get(f, "scope");
	const char *resource = sg_idm_form_get(f, "resource");
	if (scope && (!sg_idm_scope_valid(scope) || !sg_idm_scope_subset(scope, allowed))) {
		idm_oauth_error(r, 400, "invalid_scope",
		                "scope is not allowed for this VAL server");
		return;
	}
	if (!scope)
		scope = allowed;
	if (!*scope) {
		idm_oauth_error(r, 400, "invalid_scope", "this VAL server holds no scope");
		return;
	}
	if (resource) {
		if (sg_idm_scope_for_resource(scope, resource, narrowed, sizeof narrowed) != 0) {
			idm_oauth_error(r, 400, "invalid_target",
			                "resource is not an audience of the scope");
			return;
		}
		scope = narrowed;
	}
	/* RFC 8705 §3.1: bound to the certificate */
	char x5t[SG_X5T_S256_LEN], gid[SG_IDM_VALSERVER_GID_LEN + 1];
	sg_secret_x5t_s256(sg_http_req_tls_principal(r)->cert_sha256, x5t);
	json_t *extra = json_pack("{s:{s:s}}", "cnf", "x5t#S256", x5t);
	if (v->key_provisioning && sg_idm_scope_has(scope, "seal:kp")) {
		/* TS 33.434 §5.8 / I8: SKeyProv lists the VAL services it may provision keys for */
		json_t *sk = json_array();
		for (size_t i = 0; i < v->n_val_services; i++)
			json_array_append_new(sk, json_string(v->val_services[i]));
		json_object_set_new(extra, "SKeyProv", sk);
	}
	char *at = NULL;
	/* the VAL server's grant: removing it revokes every token it holds */
	sg_err e = sg_idm_valserver_gid(v->name, v->created_at, gid) == 0 ? SG_OK : SG_ERR_INTERNAL;
	if (e == SG_OK)
		e = idm_mint_access(idm, reg, v->name, v->name, scope, resource, gid, extra, &at,
		                    NULL);
	json_decref(extra);
	if (e != SG_OK) {
		idm_oauth_error(r, 500, "server_error", "cannot issue tokens");
		return;
	}
	char actor[300];
	snprintf(actor, sizeof actor, "valserver:%s", v->name);
	idm_audit(idm, actor, "token.client_credentials", v->name, m->rp->name, scope);
	token_body(r, at, idm->conf->idm.access_ttl_s, NULL, scope, NULL);
	OPENSSL_cleanse(at, strlen(at));
	free(at);
}

static int repeated(const struct sg_idm_form *f)
{
	for (size_t i = 0; i < f->n; i++)
		if (sg_idm_form_count(f, f->kv[i].name) > 1)
			return 1;
	return 0;
}

static struct tok_job *job_new(struct idm_mount *m, struct sg_http_req *r, int grant,
                               const char *client_id)
{
	struct tok_job *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->r = r;
	j->idm = m->idm;
	j->m = m;
	j->grant = grant;
	j->now = sg_now_ms();
	if (!(j->client_id = strdup(client_id))) {
		free(j);
		return NULL;
	}
	return j;
}

enum sg_http_result idm_h_token(struct sg_http_req *r, void *arg)
{
	struct idm_mount *m = arg;
	struct sg_idm *idm = m->idm;
	struct sg_idm_form f;
	if (idm_body_form(r, &f, 1) != 0)
		return SG_HTTP_DONE;
	struct idm_reg *reg = idm_reg_get(idm);
	enum sg_http_result res = SG_HTTP_DONE;
	const char *gt = sg_idm_form_get(&f, "grant_type");
	const struct sg_store_client *c = NULL;
	if (repeated(&f)) {
		idm_oauth_error(r, 400, "invalid_request", "a parameter is repeated");
	} else if (!gt) {
		idm_oauth_error(r, 400, "invalid_request", "grant_type is missing");
	} else if (!strcmp(gt, "client_credentials")) {
		client_credentials(m, reg, r, &f);
	} else if (strcmp(gt, "authorization_code") != 0 && strcmp(gt, "refresh_token") != 0) {
		idm_oauth_error(r, 400, "unsupported_grant_type", "unsupported grant_type");
	} else if (idm_client_basic(idm, reg, r, &f, &c) == 0) {
		/* TS 33.434 A.4.2.4: client authentication REQUIRED (client_secret_basic) */
		int code = !strcmp(gt, "authorization_code");
		const char *cred = sg_idm_form_get(&f, code ? "code" : "refresh_token");
		const char *redirect = sg_idm_form_get(&f, "redirect_uri");
		const char *verifier = sg_idm_form_get(&f, "code_verifier");
		const char *scope = sg_idm_form_get(&f, "scope");
		const char *resource = sg_idm_form_get(&f, "resource");
		struct tok_job *j = NULL;
		if (!cred || !*cred)
			idm_oauth_error(r, 400, "invalid_request",
			                code ? "code is missing" : "refresh_token is missing");
		else if (code && (!redirect || !verifier))
			idm_oauth_error(r, 400, "invalid_request",
			                !redirect ? "redirect_uri is missing"
			                          : "code_verifier is missing");
		else if (code && scope)
			idm_oauth_error(r, 400, "invalid_request",
			                "scope is not a parameter of the code exchange");
		else if (!(j = job_new(m, r, code ? G_CODE : G_REFRESH, c->client_id)))
			idm_oauth_error(r, 503, "temporarily_unavailable", "out of memory");
		else {
			sg_secret_digest(idm->pepper, sizeof idm->pepper, cred, j->digest);
			j->redirect_uri = redirect ? strdup(redirect) : NULL;
			j->verifier = verifier ? strdup(verifier) : NULL;
			j->scope_req = scope ? strdup(scope) : NULL;
			j->resource = resource ? strdup(resource) : NULL;
			if (sg_secret_generate(j->new_rt, sizeof j->new_rt) != SG_OK ||
			    sg_secret_digest(idm->pepper, sizeof idm->pepper, j->new_rt,
			                     j->new_rt_digest) != SG_OK ||
			    (redirect && !j->redirect_uri) || (verifier && !j->verifier) ||
			    (scope && !j->scope_req) || (resource && !j->resource)) {
				tok_job_free(j);
				idm_oauth_error(r, 503, "temporarily_unavailable", "out of memory");
			} else {
				res = submit(j);
			}
		}
	}
	idm_reg_put(reg);
	sg_idm_form_free(&f);
	return res;
}

/* ---- RFC 7009 revocation ---- */

enum sg_http_result idm_h_revoke(struct sg_http_req *r, void *arg)
{
	struct idm_mount *m = arg;
	struct sg_idm *idm = m->idm;
	struct sg_idm_form f;
	if (idm_body_form(r, &f, 1) != 0)
		return SG_HTTP_DONE;
	struct idm_reg *reg = idm_reg_get(idm);
	enum sg_http_result res = SG_HTTP_DONE;
	const char *token = sg_idm_form_get(&f, "token");
	const char *client_id = NULL;
	const struct sg_store_client *c = NULL;
	const struct sg_store_valserver *v = NULL;
	/* client authentication as at the token endpoint (RFC 7009 §2.1) */
	if (m->mtls && !sg_http_req_header(r, "authorization")) {
		if (idm_client_tls(m, reg, r, &f, &v) == 0)
			client_id = v->name;
	} else if (idm_client_basic(idm, reg, r, &f, &c) == 0) {
		client_id = c->client_id;
	}
	if (!client_id)
		goto out;
	if (!token || !*token || sg_idm_form_count(&f, "token") != 1) {
		idm_oauth_error(r, 400, "invalid_request", "token is missing");
		goto out;
	}
	const char *d1 = strchr(token, '.');
	int is_jwt = d1 && strchr(d1 + 1, '.');
	struct tok_job *j = job_new(m, r, is_jwt ? G_REVOKE_AT : G_REVOKE_RT, client_id);
	if (!j) {
		idm_oauth_error(r, 503, "temporarily_unavailable", "out of memory");
		goto out;
	}
	if (is_jwt) {
		/* our own access token, issued to this client: its jti is revoked until exp; with
		 * the largest leeway a resource server may give (I7), so a token just past exp that
		 * some of them still take can be revoked too */
		json_t *claims = NULL;
		struct sg_jws_policy pol = {
		    .iss = idm->issuer, .typ = SG_JWS_TYP_AT, .leeway = SG_JWS_MAX_LEEWAY};
		sg_jws_status s = sg_jws_verify(idm->keys, token, &pol, &claims, NULL, 0);
		const char *jti = json_string_value(json_object_get(claims, "jti"));
		const char *cid = json_string_value(json_object_get(claims, "client_id"));
		json_int_t exp = json_integer_value(json_object_get(claims, "exp"));
		if (s == SG_JWS_OK && jti && cid && !strcmp(cid, client_id))
			j->jti = strdup(jti);
		j->jti_exp = (int64_t)exp * 1000 + SG_JWS_MAX_LEEWAY * 1000;
		json_decref(claims);
		if (!j->jti) {
			/* RFC 7009 §2.2: invalid or foreign tokens still get 200 */
			tok_job_free(j);
			sg_http_resp_header(r, "Cache-Control", "no-store");
			sg_http_resp_status(r, 200);
			sg_http_resp_body(r, NULL, 0, NULL);
			goto out;
		}
	} else {
		sg_secret_digest(idm->pepper, sizeof idm->pepper, token, j->digest);
	}
	res = submit(j);
out:
	idm_reg_put(reg);
	sg_idm_form_free(&f);
	return res;
}
