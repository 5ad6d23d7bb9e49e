/* idm/endpoints.c: userinfo (OIDC Core §5.3, RFC 6750), token introspection (RFC 7662) for SEAL
 * and VAL servers over mutual TLS, and the revocation list resource servers poll (SEAL-E). */
#include "idm/internal.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum sg_http_result idm_h_userinfo(struct sg_http_req *r, void *arg)
{
	struct idm_mount *m = arg;
	struct sg_idm *idm = m->idm;
	const char *tok = idm_bearer_token(r);
	if (!tok) {
		/* RFC 6750 §3.1: no error code when the request had no authentication */
		idm_bearer_error(r, 401, NULL, NULL);
		return SG_HTTP_DONE;
	}
	json_t *claims = NULL;
	char why[160] = "";
	sg_jws_status s = idm_verify_access(idm, tok, "sealguard:idm", &claims, why, sizeof why);
	if (s == SG_JWS_OK &&
	    !sg_idm_scope_has(json_string_value(json_object_get(claims, "scope")), "openid"))
		s = SG_JWS_INSUFFICIENT_SCOPE;
	if (s != SG_JWS_OK) {
		json_decref(claims);
		if (s == SG_JWS_INTERNAL)
			sg_http_resp_problem(r, 500, NULL, "token verification failed");
		else if (s == SG_JWS_INSUFFICIENT_SCOPE)
			idm_bearer_error(r, 403, "insufficient_scope",
			                 "the openid scope is required");
		else
			idm_bearer_error(r, 401, "invalid_token", sg_jws_status_str(s));
		return SG_HTTP_DONE;
	}
	struct idm_reg *reg = idm_reg_get(idm);
	const struct sg_store_user *u =
	    idm_user_by_sub(reg, json_string_value(json_object_get(claims, "sub")));
	if (!u || u->disabled) {
		idm_bearer_error(r, 401, "invalid_token", "the account is disabled or removed");
	} else if (!idm_client_find(reg, json_string_value(json_object_get(claims, "client_id")))) {
		/* the client was removed: its grants are revoked too (the revocation list), this
		 * refuses its tokens here at once */
		idm_bearer_error(r, 401, "invalid_token", "the client is no longer registered");
	} else {
		json_t *j = json_pack("{s:s,s:s,s:o}", "sub", u->sub, "preferred_username", u->name,
		                      "val_user_ids", idm_val_user_ids(reg, u));
		sg_http_resp_header(r, "Cache-Control", "no-store");
		sg_http_resp_json(r, 200, j);
	}
	idm_reg_put(reg);
	json_decref(claims);
	return SG_HTTP_DONE;
}

/* Introspection callers: on a listener with bearer auth (SEAL-S) a registered, enabled VAL
 * server; on SEAL-E any SEAL server the listener's TLS (and allow-list) admitted. */
static int introspect_caller_ok(struct idm_mount *m, struct sg_http_req *r)
{
	const struct sg_tls_principal *p = sg_http_req_tls_principal(r);
	if (!p || !p->authenticated)
		return 0;
	if (m->rp->auth_mode != SG_AUTH_MTLS_BEARER)
		return 1;
	struct idm_reg *reg = idm_reg_get(m->idm);
	int ok = 0;
	for (size_t i = 0; reg && i < reg->nvals && !ok; i++)
		ok = !reg->vals[i].disabled && sg_tls_principal_has_san(p, reg->vals[i].identity);
	idm_reg_put(reg);
	return ok;
}

enum sg_http_result idm_h_introspect(struct sg_http_req *r, void *arg)
{
	struct idm_mount *m = arg;
	if (!introspect_caller_ok(m, r)) {
		idm_oauth_error(r, 401, "invalid_client",
		                "introspection needs a registered client "
		                "certificate");
		return SG_HTTP_DONE;
	}
	struct sg_idm_form f;
	if (idm_body_form(r, &f, 1) != 0)
		return SG_HTTP_DONE;
	const char *tok = sg_idm_form_get(&f, "token");
	if (!tok || !*tok) {
		sg_idm_form_free(&f);
		idm_oauth_error(r, 400, "invalid_request", "token is missing");
		return SG_HTTP_DONE;
	}
	/* RFC 7662 §2.2: active only when signed by us, unexpired and not revoked. Refresh
	 * tokens are opaque to everyone but their client: reported inactive. */
	json_t *claims = NULL;
	sg_jws_status s = idm_verify_access(m->idm, tok, NULL, &claims, NULL, 0);
	sg_idm_form_free(&f);
	json_t *j;
	if (s == SG_JWS_OK) {
		j = json_deep_copy(claims);
		json_object_set_new(j, "active", json_true());
		json_object_set_new(j, "token_type", json_string("Bearer"));
	} else {
		j = json_pack("{s:b}", "active", 0);
	}
	json_decref(claims);
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_json(r, 200, j);
	return SG_HTTP_DONE;
}

/* ---- revocation list (for resource servers; issue 4 polls it) ---- */

struct revs_job {
	struct sg_http_req *r;
	int64_t since, now;
	struct sg_store_revoked *v;
	size_t n;
};

static sg_err revs_job(struct sg_store *st, void *arg)
{
	struct revs_job *j = arg;
	return sg_store_revoked_list(st, j->since, j->now, &j->v, &j->n);
}

static void revs_done(sg_err rc, void *arg)
{
	struct revs_job *j = arg;
	struct sg_http_req *r = j->r;
	if (rc != SG_OK) {
		sg_http_resp_problem(r, 503, "SERVICE_UNAVAILABLE", "revocation list unavailable");
	} else {
		json_t *jti = json_array(), *gid = json_array();
		for (size_t i = 0; i < j->n; i++)
			json_array_append_new(j->v[i].kind == SG_STORE_REVOKED_JTI ? jti : gid,
			                      json_pack("{s:s,s:I}", "id", j->v[i].id, "exp",
			                                (json_int_t)j->v[i].expires_at));
		sg_http_resp_header(r, "Cache-Control", "no-store");
		sg_http_resp_json(
		    r, 200,
		    json_pack("{s:I,s:o,s:o}", "now", (json_int_t)j->now, "jti", jti, "gid", gid));
	}
	sg_store_revoked_list_free(j->v, j->n);
	free(j);
	sg_http_req_finish(r);
}

enum sg_http_result idm_h_revocations(struct sg_http_req *r, void *arg)
{
	struct idm_mount *m = arg;
	const char *since = sg_http_req_query_param(r, "since");
	char *end = NULL;
	long long s = since ? strtoll(since, &end, 10) : 0;
	if (since && (!*since || *end || s < 0)) {
		sg_http_resp_problem(r, 400, "INVALID_QUERY_PARAM",
		                     "since must be milliseconds since the epoch");
		return SG_HTTP_DONE;
	}
	struct revs_job *j = calloc(1, sizeof *j);
	if (!j) {
		sg_http_resp_problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory");
		return SG_HTTP_DONE;
	}
	j->r = r;
	j->since = s;
	j->now = sg_now_ms();
	if (sg_store_pool_submit_read(m->idm->pool, revs_job, j, revs_done, j,
	                              sg_http_req_loop(r)) != SG_OK) {
		free(j);
		sg_http_resp_problem(r, 503, "SERVICE_UNAVAILABLE", "busy");
		return SG_HTTP_DONE;
	}
	return SG_HTTP_ASYNC;
}
