/* idm/ipp.c: ss-ipp/v1 (TS 29.549 SS_IdmParameterProvisioning, REQUIREMENTS I11): VAL servers
 * provision VAL services configurations (VAL service id -> list of VAL user / VAL UE ids) to the
 * IM server over SEAL-S. Every request carries an access token with scope seal:ipp bound to the
 * presenting certificate (R3, RFC 8705 §3); a VAL server sees and changes only its own
 * configurations, and only for the VAL services it is registered for. */
#include "idm/internal.h"

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/rand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum ipp_op { IPP_CREATE, IPP_LIST, IPP_GET, IPP_PUT, IPP_PATCH, IPP_DELETE };

struct ipp_job {
	struct sg_http_req *r;
	struct sg_idm *idm;
	struct idm_mount *m;
	enum ipp_op op;
	char *owner, *conf_id;
	char **ids; /* config-ids filter */
	size_t nids;
	json_t *body;    /* create/put: the validated config; patch: the merge patch */
	char **services; /* the owner's VAL services, for validating a patched document */
	size_t nservices;
	/* results */
	int status;
	char msg[160];
	json_t *out;
};

/* TS 29.549 VALServicesConfig: valSvcConf (VALServiceParams, minItems 1) + suppFeat. Returns
 * 0 or the HTTP status (400 malformed, 403 a VAL service the VAL server does not serve). */
static int ipp_validate(const json_t *b, char **services, size_t nservices, char *msg,
                        size_t msglen, json_t **canon)
{
	*canon = NULL;
	if (!json_is_object(b)) {
		snprintf(msg, msglen, "VALServicesConfig must be an object");
		return 400;
	}
	const json_t *arr = json_object_get(b, "valSvcConf");
	const json_t *sf = json_object_get(b, "suppFeat");
	if (!json_is_array(arr) || json_array_size(arr) == 0) {
		snprintf(msg, msglen, "valSvcConf must be a non-empty array");
		return 400;
	}
	if (sf && (!json_is_string(sf) || strspn(json_string_value(sf), "0123456789abcdefABCDEF") !=
	                                      strlen(json_string_value(sf)))) {
		snprintf(msg, msglen, "suppFeat must be a hexadecimal string");
		return 400;
	}
	size_t i, k;
	const json_t *p, *id;
	json_array_foreach(arr, i, p)
	{
		const json_t *svc = json_object_get(p, "valServiceId");
		const json_t *ids = json_object_get(p, "idList");
		if (!json_is_object(p) || !json_is_string(svc) || !*json_string_value(svc) ||
		    !json_is_array(ids) || json_array_size(ids) == 0) {
			snprintf(msg, msglen,
			         "valSvcConf[%zu] needs valServiceId and a non-empty idList", i);
			return 400;
		}
		json_array_foreach(ids, k, id)
		{
			const json_t *u = json_object_get(id, "valUserId");
			const json_t *e = json_object_get(id, "valUeId");
			/* ValTargetUe: oneOf valUserId / valUeId */
			if (!json_is_object(id) || (u != NULL) == (e != NULL) ||
			    (u && (!json_is_string(u) || !*json_string_value(u))) ||
			    (e && (!json_is_string(e) || !*json_string_value(e)))) {
				snprintf(
				    msg, msglen,
				    "valSvcConf[%zu].idList[%zu] needs exactly one of valUserId, "
				    "valUeId",
				    i, k);
				return 400;
			}
		}
		int served = 0;
		for (size_t s = 0; s < nservices && !served; s++)
			served = !strcmp(services[s], json_string_value(svc));
		if (!served) {
			snprintf(msg, msglen, "this VAL server does not serve VAL service %.64s",
			         json_string_value(svc));
			return 403;
		}
	}
	*canon = json_pack("{s:O}", "valSvcConf", arr);
	if (*canon && sf)
		json_object_set(*canon, "suppFeat", (json_t *)sf);
	return *canon ? 0 : 500;
}

static void ipp_job_free(struct ipp_job *j)
{
	free(j->owner);
	free(j->conf_id);
	for (size_t i = 0; i < j->nids; i++)
		free(j->ids[i]);
	free(j->ids);
	for (size_t i = 0; i < j->nservices; i++)
		free(j->services[i]);
	free(j->services);
	json_decref(j->body);
	json_decref(j->out);
	free(j);
}

static sg_err store_body(struct sg_store *st, struct ipp_job *j, json_t *doc, int create)
{
	char *s = json_dumps(doc, JSON_COMPACT);
	if (!s)
		return SG_ERR_NOMEM;
	struct sg_store_ipp_conf c = {.conf_id = j->conf_id, .val_server = j->owner, .body = s};
	sg_err e = sg_store_ipp_put(st, &c, create);
	free(s);
	return e;
}

/* The stored configuration of the owner, or 404. */
static sg_err load_own(struct sg_store *st, struct ipp_job *j, json_t **doc)
{
	struct sg_store_ipp_conf c = {0};
	sg_err e = sg_store_ipp_get(st, j->conf_id, &c);
	if (e == SG_OK && strcmp(c.val_server, j->owner) != 0)
		e = SG_ERR_NOTFOUND; /* another VAL server's: not visible */
	if (e == SG_OK && !(*doc = json_loads(c.body, 0, NULL)))
		e = SG_ERR_INTERNAL;
	sg_store_ipp_clear(&c);
	if (e == SG_ERR_NOTFOUND) {
		j->status = 404;
		snprintf(j->msg, sizeof j->msg, "no such VAL services configuration");
	}
	return e;
}

static sg_err ipp_run(struct sg_store *st, void *arg)
{
	struct ipp_job *j = arg;
	sg_err e = SG_OK;
	json_t *doc = NULL;
	switch (j->op) {
	case IPP_CREATE:
		for (int tries = 0; tries < 3; tries++) {
			char id[32];
			if ((e = sg_random_token(id, sizeof id, 16)) != SG_OK)
				return e;
			free(j->conf_id);
			if (!(j->conf_id = strdup(id)))
				return SG_ERR_NOMEM;
			if ((e = store_body(st, j, j->body, 1)) != SG_ERR_EXISTS)
				break;
		}
		if (e == SG_OK) {
			j->status = 201;
			j->out = json_incref(j->body);
		}
		break;
	case IPP_LIST: {
		struct sg_store_ipp_conf *v = NULL;
		size_t n = 0;
		if ((e = sg_store_ipp_list(st, j->owner, &v, &n)) != SG_OK)
			return e;
		j->out = json_array();
		for (size_t i = 0; i < n; i++) {
			int want = j->nids == 0;
			for (size_t k = 0; k < j->nids && !want; k++)
				want = !strcmp(j->ids[k], v[i].conf_id);
			json_t *d = want ? json_loads(v[i].body, 0, NULL) : NULL;
			if (d)
				json_array_append_new(j->out, d);
		}
		sg_store_ipp_list_free(v, n);
		j->status = 200;
		break;
	}
	case IPP_GET:
		if ((e = load_own(st, j, &doc)) == SG_OK) {
			j->status = 200;
			j->out = doc;
			doc = NULL;
		}
		break;
	case IPP_PUT:
		if ((e = load_own(st, j, &doc)) == SG_OK &&
		    (e = store_body(st, j, j->body, 0)) == SG_OK) {
			j->status = 200;
			j->out = json_incref(j->body);
		}
		break;
	case IPP_PATCH:
		if ((e = load_own(st, j, &doc)) != SG_OK)
			break;
		{
			json_t *merged = sg_json_merge_patch(doc, j->body); /* RFC 7396 */
			if (!merged) {
				e = SG_ERR_NOMEM;
				break;
			}
			json_decref(doc);
			doc = merged;
			json_t *canon = NULL;
			int st_code = ipp_validate(doc, j->services, j->nservices, j->msg,
			                           sizeof j->msg, &canon);
			if (st_code) {
				j->status = st_code;
				e = SG_ERR_INVALID;
			} else if ((e = store_body(st, j, canon, 0)) == SG_OK) {
				j->status = 200;
				j->out = canon;
				canon = NULL;
			}
			json_decref(canon);
		}
		break;
	case IPP_DELETE:
		if ((e = load_own(st, j, &doc)) == SG_OK &&
		    (e = sg_store_ipp_delete(st, j->conf_id)) == SG_OK)
			j->status = 204;
		break;
	}
	json_decref(doc);
	if (e == SG_OK && j->op != IPP_LIST && j->op != IPP_GET) {
		char actor[300];
		snprintf(actor, sizeof actor, "valserver:%s", j->owner);
		static const char *const act[] = {"ipp.create", "",           "",
		                                  "ipp.update", "ipp.modify", "ipp.delete"};
		struct sg_store_audit a = {.ts = sg_now_ms(),
		                           .actor = actor,
		                           .action = (char *)act[j->op],
		                           .object = j->conf_id,
		                           .refpoint = (char *)j->m->rp->name};
		e = sg_store_audit_append(st, &a);
	}
	return e;
}

static void ipp_done(sg_err rc, void *arg)
{
	struct ipp_job *j = arg;
	struct sg_http_req *r = j->r;
	if (j->status == 404)
		sg_http_resp_problem(r, 404, "RESOURCE_NOT_FOUND", "%s", j->msg);
	else if (j->status == 400 || j->status == 403)
		sg_http_resp_problem(
		    r, j->status, j->status == 403 ? "OPERATION_NOT_ALLOWED" : "INVALID_MSG_FORMAT",
		    "%s", j->msg);
	else if (rc != SG_OK || !j->status)
		sg_http_resp_problem(r, 503, "SERVICE_UNAVAILABLE", "the store is unavailable");
	else if (j->status == 204) {
		sg_http_resp_status(r, 204);
		sg_http_resp_body(r, NULL, 0, NULL);
	} else {
		if (j->status == 201) {
			char loc[512];
			const char *base = *j->idm->mtls_base ? j->idm->mtls_base : j->idm->issuer;
			snprintf(loc, sizeof loc, "%s/ss-ipp/v1/configurations/%s", base,
			         j->conf_id);
			sg_http_resp_header(r, "Location", loc);
		}
		sg_http_resp_json(r, j->status, json_incref(j->out));
	}
	ipp_job_free(j);
	sg_http_req_finish(r);
}

/* R3: certificate, then a seal:ipp token bound to that certificate, naming a VAL server whose
 * identity the certificate carries. */
static const struct sg_store_valserver *ipp_auth(struct idm_mount *m, struct idm_reg *reg,
                                                 struct sg_http_req *r)
{
	const struct sg_tls_principal *p = sg_http_req_tls_principal(r);
	const char *tok = idm_bearer_token(r);
	if (!tok) {
		idm_bearer_error(r, 401, NULL, NULL);
		return NULL;
	}
	json_t *claims = NULL;
	sg_jws_status s = idm_verify_access(m->idm, tok, "sealguard:idm", &claims, NULL, 0);
	const struct sg_store_valserver *v = NULL;
	if (s == SG_JWS_OK &&
	    !sg_idm_scope_has(json_string_value(json_object_get(claims, "scope")), "seal:ipp")) {
		idm_bearer_error(r, 403, "insufficient_scope", "the seal:ipp scope is required");
	} else if (s != SG_JWS_OK) {
		idm_bearer_error(r, s == SG_JWS_INTERNAL ? 500 : 401, "invalid_token",
		                 sg_jws_status_str(s));
	} else {
		char x5t[SG_X5T_S256_LEN];
		sg_secret_x5t_s256(p->cert_sha256, x5t);
		const char *bound =
		    json_string_value(json_object_get(json_object_get(claims, "cnf"), "x5t#S256"));
		v = idm_val_find(reg, json_string_value(json_object_get(claims, "client_id")));
		if (!bound || strcmp(bound, x5t) != 0) {
			/* RFC 8705 §3: the token is bound to another certificate */
			idm_bearer_error(r, 401, "invalid_token",
			                 "the token is not bound to this certificate");
			v = NULL;
		} else if (!v || v->disabled || !sg_tls_principal_has_san(p, v->identity)) {
			sg_http_resp_problem(r, 403, "UNAUTHORIZED_IDENTITY",
			                     "the token's VAL server is not this certificate's");
			v = NULL;
		}
	}
	json_decref(claims);
	return v;
}

static int add_ids(struct ipp_job *j, const char *val)
{
	/* config-ids: repeated (form, explode) or comma-separated */
	const char *s = val;
	while (*s) {
		size_t n = strcspn(s, ",");
		if (n) {
			char **v = realloc(j->ids, (j->nids + 1) * sizeof *v);
			if (!v)
				return -1;
			j->ids = v;
			if (!(v[j->nids] = strndup(s, n)))
				return -1;
			j->nids++;
		}
		s += n + (s[n] == ',');
	}
	return 0;
}

enum sg_http_result idm_h_ipp(struct sg_http_req *r, void *arg)
{
	struct idm_mount *m = arg;
	struct idm_reg *reg = idm_reg_get(m->idm);
	const struct sg_store_valserver *v = ipp_auth(m, reg, r);
	enum sg_http_result res = SG_HTTP_DONE;
	struct ipp_job *j = NULL;
	if (!v)
		goto out;
	const char *method = sg_http_req_method(r), *conf_id = sg_http_req_param(r, "confId");
	j = calloc(1, sizeof *j);
	if (!j || !(j->owner = strdup(v->name)) || (conf_id && !(j->conf_id = strdup(conf_id))) ||
	    !(j->services = calloc(v->n_val_services + 1, sizeof *j->services)))
		goto oom;
	for (size_t i = 0; i < v->n_val_services; i++)
		if (!(j->services[j->nservices++] = strdup(v->val_services[i])))
			goto oom;
	j->r = r;
	j->idm = m->idm;
	j->m = m;
	int write = 1;
	if (!strcmp(method, "GET") && !conf_id) {
		j->op = IPP_LIST;
		write = 0;
		const char *q = sg_http_req_query(r);
		struct sg_idm_form f;
		if (sg_idm_form_parse(q, strlen(q), &f) != 0) {
			sg_http_resp_problem(r, 400, "INVALID_QUERY_PARAM", "malformed query");
			goto done;
		}
		const char *vs = sg_idm_form_get(&f, "val-server-id");
		int bad = 0;
		for (size_t i = 0; i < f.n && !bad; i++)
			if (!strcmp(f.kv[i].name, "config-ids"))
				bad = add_ids(j, f.kv[i].value) != 0;
		if (vs && strcmp(vs, v->name) != 0)
			j->owner[0] = '\0'; /* another VAL server's: none is visible */
		sg_idm_form_free(&f);
		if (bad)
			goto oom;
	} else if (!strcmp(method, "GET")) {
		j->op = IPP_GET;
		write = 0;
	} else if (!strcmp(method, "DELETE")) {
		j->op = IPP_DELETE;
	} else {
		j->op = !strcmp(method, "POST")  ? IPP_CREATE
		        : !strcmp(method, "PUT") ? IPP_PUT
		                                 : IPP_PATCH;
		json_t *b = sg_http_req_json_as(
		    r, j->op == IPP_PATCH ? "application/merge-patch+json" : "application/json");
		if (!b)
			goto done; /* answered: 415 or 400 */
		if (j->op == IPP_PATCH) {
			/* VALServicesConfigPatch: only valSvcConf may change */
			const char *k;
			json_t *val;
			int ok = json_is_object(b);
			json_object_foreach(b, k, val) ok &= !strcmp(k, "valSvcConf");
			if (!ok) {
				json_decref(b);
				sg_http_resp_problem(
				    r, 400, "INVALID_MSG_FORMAT",
				    "a VALServicesConfigPatch has only valSvcConf");
				goto done;
			}
			j->body = b;
		} else {
			char msg[160];
			int st =
			    ipp_validate(b, j->services, j->nservices, msg, sizeof msg, &j->body);
			json_decref(b);
			if (st) {
				sg_http_resp_problem(r, st,
				                     st == 403 ? "OPERATION_NOT_ALLOWED"
				                               : "INVALID_MSG_FORMAT",
				                     "%s", msg);
				goto done;
			}
		}
	}
	sg_err e =
	    write ? sg_store_pool_submit(m->idm->pool, ipp_run, j, ipp_done, j, sg_http_req_loop(r))
	          : sg_store_pool_submit_read(m->idm->pool, ipp_run, j, ipp_done, j,
	                                      sg_http_req_loop(r));
	if (e != SG_OK)
		goto oom;
	res = SG_HTTP_ASYNC;
	j = NULL;
	goto out;
oom:
	sg_http_resp_problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory");
done:
	if (j)
		ipp_job_free(j);
	j = NULL;
out:
	idm_reg_put(reg);
	return res;
}
