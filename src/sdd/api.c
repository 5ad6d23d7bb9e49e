/* sdd/api.c: SEALDD-S sdd-trans and connection status subscriptions (TS 29.548), their
 * notifications, and SEALDD-UU flow signalling (docs/sdd-protocol.md §2). */
#include "sdd/internal.h"

/* ---- notifications (TS 29.548 ConnStatusNotif over mutual TLS; 204 expected) ---- */

static void notif_enqueue_locked(struct sg_sdd *s, const struct subsc *sub, json_t *reports)
{
	json_t *n = json_pack("{s:s, s:O}", "subscriptionId", sub->id, "reports", reports);
	char *text = n ? json_dumps(n, JSON_COMPACT) : NULL;
	json_decref(n);
	struct notif *q = calloc(1, sizeof *q);
	const char *url = json_string_value(json_object_get(sub->body, "notifUri"));
	if (!text || !q || !url || !(q->url = strdup(url))) {
		free(text);
		if (q)
			free(q->url);
		free(q);
		atomic_fetch_add(&s->notif_failed, 1);
		return;
	}
	q->body = text;
	snprintf(q->sid, sizeof q->sid, "%s", sub->id);
	pthread_mutex_lock(&s->nmu);
	*s->nqtail = q;
	s->nqtail = &q->next;
	pthread_cond_signal(&s->ncv);
	pthread_mutex_unlock(&s->nmu);
}

static int str_in_array(const json_t *a, const char *s)
{
	size_t i;
	const json_t *e;
	json_array_foreach(a, i, e) if (json_is_string(e) &&
	                                strcmp(json_string_value(e), s) == 0) return 1;
	return 0;
}

/* Called with mu held: every subscription of the transmission's VAL server that matches. */
void sdd_notify_locked(struct sg_sdd *s, const struct frt *rt, const char *event)
{
	for (struct subsc *sub = s->subs; sub; sub = sub->next) {
		if (strcmp(sub->owner, rt->owner) != 0)
			continue;
		const json_t *b = sub->body;
		if (!str_in_array(json_object_get(b, "events"), event))
			continue;
		const char *svc = json_string_value(json_object_get(b, "valServiceId"));
		if (svc && strcmp(svc, rt->f->val_service_id) != 0)
			continue;
		const json_t *tu = json_object_get(b, "valTgtUe");
		const char *uid = json_string_value(json_object_get(tu, "valUserId"));
		if (tu && (!uid || strcmp(uid, rt->val_user_id) != 0))
			continue;
		json_t *rep =
		    json_pack("{s:s, s:{s:s}, s:s}", "event", event, "valTgtUe", "valUserId",
		              rt->val_user_id, "valServiceId", rt->f->val_service_id);
		if (rep && strcmp(event, "ESTABLISHED") == 0) {
			int64_t left = (rt->f->expires_ms - sg_now_ms()) / 1000;
			json_object_set_new(rep, "connEstData",
			                    json_pack("{s:o, s:I}", "ddServerConnInfo",
			                              sg_sdd_conninfo(s->host, (unsigned)s->port),
			                              "comLifetime",
			                              (json_int_t)(left > 0 ? left : 0)));
		}
		json_t *reports = json_array();
		if (rep && reports && json_array_append_new(reports, rep) == 0) {
			rep = NULL;
			notif_enqueue_locked(s, sub, reports);
		}
		json_decref(rep);
		json_decref(reports);
	}
}

void *sdd_notif_main(void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_conf *c = s->conf;
	struct sg_http_client_conf hc = {
	    .tls = {.mode = SG_TLS_MUTUAL,
	            .cert = c->resource.client_cert,
	            .key = c->resource.client_key,
	            .ca = c->resource.ca},
	    .connect_timeout_ms = 3000,
	    .timeout_ms = 5000,
	    .max_response_bytes = 64 * 1024,
	};
	char err[256];
	struct sg_http_client *cl = NULL;
	if (sg_http_client_new(&hc, &cl, err, sizeof err) != SG_OK)
		sg_log_error("sdd: notification client: %s (notifications will fail)", err);
	for (;;) {
		pthread_mutex_lock(&s->nmu);
		while (!s->nq && !atomic_load(&s->stop))
			pthread_cond_wait(&s->ncv, &s->nmu);
		struct notif *q = s->nq;
		if (q) {
			s->nq = q->next;
			if (!s->nq)
				s->nqtail = &s->nq;
		}
		pthread_mutex_unlock(&s->nmu);
		if (!q)
			break;
		static const char *const H[] = {"Content-Type: application/json", NULL};
		int ok = 0;
		long last = 0;
		for (int i = 0; cl && i < NOTIF_TRIES && !ok && !atomic_load(&s->stop); i++) {
			if (i)
				usleep((useconds_t)(250000u << (i - 1)));
			struct sg_http_response resp = {0};
			err[0] = '\0';
			if (sg_http_client_request(cl, "POST", q->url, H, q->body, strlen(q->body),
			                           &resp, err, sizeof err) == SG_OK) {
				last = resp.status;
				ok = resp.status == 204;
			}
			sg_http_response_free(&resp);
		}
		if (ok) {
			atomic_fetch_add(&s->notif_sent, 1);
		} else {
			atomic_fetch_add(&s->notif_failed, 1);
			sg_log_warn(
			    "sdd: notification for subscription %s not delivered after %d tries "
			    "(last status %ld%s%s); %llu failed so far",
			    q->sid, NOTIF_TRIES, last, err[0] ? ": " : "", err,
			    (unsigned long long)atomic_load(&s->notif_failed));
		}
		free(q->url);
		free(q->body);
		free(q);
	}
	sg_http_client_free(cl);
	return NULL;
}

/* ---- HTTP: SEALDD-S sdd-trans (TS 29.548) ---- */

static void problem(struct sg_http_req *r, int status, const char *cause, const char *detail,
                    const struct sg_sdd_check *chk)
{
	json_t *p = sg_sdd_problem(status, cause, detail, chk);
	if (!p) {
		sg_http_resp_problem(r, 500, NULL, "out of memory");
		return;
	}
	char *text = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	if (!text) {
		sg_http_resp_problem(r, 500, NULL, "out of memory");
		return;
	}
	sg_http_resp_status(r, status);
	sg_http_resp_body(r, text, strlen(text), "application/problem+json");
	free(text);
}

void sdd_trans_free(struct trans *t)
{
	if (!t)
		return;
	free(t->svc);
	free(t->client_id);
	free(t->identity);
	free(t->val_user_id);
	free(t->val_ue_id);
	free(t);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static enum sg_http_result h_request_trans(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p = sg_principal_of(r);
	const char *tt = sg_http_req_param(r, "transType");
	if (!tt || (strcmp(tt, "regular") != 0 && strcmp(tt, "urllc") != 0)) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "transType must be regular or urllc", NULL);
		return SG_HTTP_DONE;
	}
	if (!p || p->kind != SG_PRINCIPAL_VAL_SERVER || !p->client_id || !p->cert_identity) {
		problem(r, 403, "UNAUTHORIZED_IDENTITY",
		        "only VAL servers may request transmission", NULL);
		return SG_HTTP_DONE;
	}
	json_t *req = sg_http_req_json(r);
	if (!req)
		return SG_HTTP_DONE;
	struct sg_sdd_check chk;
	struct sg_sdd_target tgt;
	if (sg_sdd_transreq_validate(req, &tgt, &chk) != 0) {
		json_decref(req);
		problem(r, 400, "INVALID_MSG_FORMAT", "the TransReq does not follow TS 29.548",
		        &chk);
		return SG_HTTP_DONE;
	}
	const json_t *tu = json_object_get(req, "valTargetId");
	struct trans *t = calloc(1, sizeof *t);
	if (t) {
		t->svc = strdup(json_string_value(json_object_get(req, "valServiceId")));
		t->client_id = strdup(p->client_id);
		t->identity = strdup(p->cert_identity);
		t->val_user_id = dup_or_null(json_string_value(json_object_get(tu, "valUserId")));
		t->val_ue_id = dup_or_null(json_string_value(json_object_get(tu, "valUeId")));
		t->urllc = strcmp(tt, "urllc") == 0;
		t->tgt = tgt;
	}
	json_decref(req);
	if (!t || !t->svc || !t->client_id || !t->identity) {
		sdd_trans_free(t);
		problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	/* D2: only a VAL server registered for the VAL service may have its data relayed (the
	 * registry snapshot, refreshed off the loops when the store's generation changes) */
	pthread_mutex_lock(&s->mu);
	const char *why = NULL;
	if (sdd_vals_serves_locked(s, t->client_id, t->svc, &why) != 0) {
		pthread_mutex_unlock(&s->mu);
		sdd_trans_free(t);
		problem(r, 403, "OPERATION_NOT_ALLOWED", why, NULL);
		return SG_HTTP_DONE;
	}
	/* one transmission per VAL service: the latest request of a VAL server registered for it
	 * replaces the earlier one (flows already established keep their relay) */
	struct trans **pp = &s->trans;
	while (*pp && strcmp((*pp)->svc, t->svc) != 0)
		pp = &(*pp)->next;
	if (*pp && strcmp((*pp)->client_id, t->client_id) != 0)
		sg_log_info("sdd: VAL server %s takes over VAL service %s from VAL server %s",
		            t->client_id, t->svc, (*pp)->client_id);
	if (*pp) {
		t->next = (*pp)->next;
		sdd_trans_free(*pp);
		*pp = t;
	} else {
		t->next = s->trans;
		s->trans = t;
	}
	sg_log_info("sdd: VAL server %s requested %s transmission for VAL service %s", t->client_id,
	            tt, t->svc);
	pthread_mutex_unlock(&s->mu);
	json_t *resp =
	    json_pack("{s:o}", "ddServerConnInfo", sg_sdd_conninfo(s->host, (unsigned)s->port));
	sg_http_resp_json(r, 200, resp);
	return SG_HTTP_DONE;
}

/* ---- HTTP: connection status subscriptions ---- */

static const struct subsc *subsc_find_locked(struct sg_sdd *s, const char *id, const char *owner)
{
	for (struct subsc *x = s->subs; x; x = x->next)
		if (strcmp(x->id, id) == 0 && strcmp(x->owner, owner) == 0)
			return x;
	return NULL;
}

static int val_server_of(struct sg_http_req *r, const struct sg_principal **out)
{
	const struct sg_principal *p = sg_principal_of(r);
	if (!p || p->kind != SG_PRINCIPAL_VAL_SERVER || !p->client_id) {
		problem(r, 403, "UNAUTHORIZED_IDENTITY", "only VAL servers may subscribe", NULL);
		return -1;
	}
	*out = p;
	return 0;
}

static json_t *subsc_canon(const json_t *in)
{
	static const char *const K[] = {"events",   "valServiceId", "valTgtUe", "valServerConnInfo",
	                                "notifUri", "suppFeat"};
	json_t *o = json_object();
	for (size_t i = 0; o && i < sizeof K / sizeof K[0]; i++) {
		json_t *v = json_object_get(in, K[i]);
		if (v)
			json_object_set(o, K[i], v);
	}
	return o;
}

static void subsc_location(struct sg_http_req *r, const char *id)
{
	const char *host = sg_http_req_header(r, "host");
	char loc[512];
	snprintf(loc, sizeof loc, "https://%s/sdd-trans/v1/subscriptions/%s",
	         host ? host : "localhost", id);
	sg_http_resp_header(r, "Location", loc);
}

static enum sg_http_result h_subsc_create(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	json_t *body = sg_http_req_json(r);
	if (!body)
		return SG_HTTP_DONE;
	struct sg_sdd_check chk;
	if (sg_sdd_subsc_validate(body, &chk) != 0) {
		json_decref(body);
		problem(r, 400, "INVALID_MSG_FORMAT",
		        "the ConnStatusSubsc does not follow TS 29.548", &chk);
		return SG_HTTP_DONE;
	}
	struct subsc *x = calloc(1, sizeof *x);
	if (x) {
		x->owner = strdup(p->client_id);
		x->body = subsc_canon(body);
	}
	json_decref(body);
	if (!x || !x->owner || !x->body || sg_random_token(x->id, sizeof x->id, 16) != SG_OK) {
		if (x) {
			free(x->owner);
			json_decref(x->body);
		}
		free(x);
		problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	pthread_mutex_lock(&s->mu);
	if (s->nsubs >= MAX_SUBSC) {
		pthread_mutex_unlock(&s->mu);
		free(x->owner);
		json_decref(x->body);
		free(x);
		problem(r, 429, "TOO_MANY_REQUESTS", "too many subscriptions", NULL);
		return SG_HTTP_DONE;
	}
	x->next = s->subs;
	s->subs = x;
	s->nsubs++;
	json_t *out = json_deep_copy(x->body);
	pthread_mutex_unlock(&s->mu);
	subsc_location(r, x->id);
	sg_http_resp_json(r, 201, out);
	return SG_HTTP_DONE;
}

static enum sg_http_result h_subsc_get(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	pthread_mutex_lock(&s->mu);
	const struct subsc *x =
	    subsc_find_locked(s, sg_http_req_param(r, "subscriptionId"), p->client_id);
	json_t *out = x ? json_deep_copy(x->body) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!out) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such subscription", NULL);
		return SG_HTTP_DONE;
	}
	sg_http_resp_json(r, 200, out);
	return SG_HTTP_DONE;
}

/* PUT (replace) and PATCH (RFC 7396 merge patch, ConnStatusSubscPatch members only). */
static enum sg_http_result subsc_change(struct sg_http_req *r, struct sg_sdd *s, int patch)
{
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	if (patch) {
		const char *ct = sg_http_req_header(r, "content-type");
		if (!ct || strncasecmp(ct, "application/merge-patch+json", 28) != 0) {
			problem(r, 415, "UNSUPPORTED_MEDIA_TYPE",
			        "PATCH takes application/merge-patch+json", NULL);
			return SG_HTTP_DONE;
		}
	}
	json_t *body = sg_http_req_json(r);
	if (!body)
		return SG_HTTP_DONE;
	const char *id = sg_http_req_param(r, "subscriptionId");
	pthread_mutex_lock(&s->mu);
	struct subsc *x = (struct subsc *)subsc_find_locked(s, id, p->client_id);
	if (!x) {
		pthread_mutex_unlock(&s->mu);
		json_decref(body);
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such subscription", NULL);
		return SG_HTTP_DONE;
	}
	json_t *next = NULL;
	struct sg_sdd_check chk = {0};
	if (patch) {
		static const char *const PK[] = {"events", "valServiceId", "valTgtUe",
		                                 "valServerConnInfo", "notifUri"};
		next = json_deep_copy(x->body);
		const char *k;
		json_t *v;
		int okp = json_is_object(body) && next;
		json_object_foreach(body, k, v)
		{
			int known = 0;
			for (size_t i = 0; i < sizeof PK / sizeof PK[0]; i++)
				known |= strcmp(k, PK[i]) == 0;
			if (!known)
				continue;
			if (json_is_null(v))
				json_object_del(next, k);
			else
				json_object_set(next, k, v);
		}
		if (!okp) {
			json_decref(next);
			next = NULL;
			chk.n = 1;
			snprintf(chk.v[0].param, sizeof chk.v[0].param, "/");
			snprintf(chk.v[0].reason, sizeof chk.v[0].reason, "must be a JSON object");
		}
	} else {
		next = json_incref(body);
	}
	json_decref(body);
	if (!next || sg_sdd_subsc_validate(next, &chk) != 0) {
		pthread_mutex_unlock(&s->mu);
		json_decref(next);
		problem(r, 400, "INVALID_MSG_FORMAT", "the subscription does not follow TS 29.548",
		        &chk);
		return SG_HTTP_DONE;
	}
	json_t *canon = subsc_canon(next);
	json_decref(next);
	if (!canon) {
		pthread_mutex_unlock(&s->mu);
		problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	json_decref(x->body);
	x->body = canon;
	json_t *out = json_deep_copy(canon);
	pthread_mutex_unlock(&s->mu);
	sg_http_resp_json(r, 200, out);
	return SG_HTTP_DONE;
}

static enum sg_http_result h_subsc_put(struct sg_http_req *r, void *arg)
{
	return subsc_change(r, arg, 0);
}

static enum sg_http_result h_subsc_patch(struct sg_http_req *r, void *arg)
{
	return subsc_change(r, arg, 1);
}

static enum sg_http_result h_subsc_delete(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	const char *id = sg_http_req_param(r, "subscriptionId");
	pthread_mutex_lock(&s->mu);
	struct subsc **pp = &s->subs;
	while (*pp && !(strcmp((*pp)->id, id) == 0 && strcmp((*pp)->owner, p->client_id) == 0))
		pp = &(*pp)->next;
	struct subsc *x = *pp;
	if (x) {
		*pp = x->next;
		s->nsubs--;
	}
	pthread_mutex_unlock(&s->mu);
	if (!x) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such subscription", NULL);
		return SG_HTTP_DONE;
	}
	free(x->owner);
	json_decref(x->body);
	free(x);
	sg_http_resp_status(r, 204);
	return SG_HTTP_DONE;
}

/* ---- HTTP: SEALDD-UU flow signalling (docs/sdd-protocol.md §2) ---- */

static json_t *flow_json(const struct sg_sdd *s, const struct sg_sdd_flow *f)
{
	char id[SG_SDD_FLOW_TEXT_LEN + 1], exp[40];
	sg_sdd_flow_to_text(f->id, id);
	sg_time_iso8601(exp, sizeof exp, f->expires_ms);
	int64_t left = (f->expires_ms - sg_now_ms() + 999) / 1000;
	return json_pack("{s:s, s:s, s:s, s:o, s:I, s:s}", "sddFlowId", id, "valServiceId",
	                 f->val_service_id, "transType", f->urllc ? "urllc" : "regular",
	                 "ddServerConnInfo", sg_sdd_conninfo(s->host, (unsigned)s->port),
	                 "lifetime", (json_int_t)(left > 0 ? left : 0), "expiresAt", exp);
}

static enum sg_http_result h_flow_create(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p = sg_principal_of(r);
	if (!p || p->kind != SG_PRINCIPAL_UE || !p->sub) {
		problem(r, 403, "UNAUTHORIZED_IDENTITY", "a VAL user's token is required", NULL);
		return SG_HTTP_DONE;
	}
	json_t *body = sg_http_req_json(r);
	if (!body)
		return SG_HTTP_DONE;
	struct sg_sdd_check chk = {0};
	const json_t *sv = json_object_get(body, "valServiceId");
	if (!json_is_object(body) || !json_is_string(sv) || json_string_length(sv) == 0 ||
	    json_string_length(sv) > 255) {
		chk.n = 1;
		snprintf(chk.v[0].param, sizeof chk.v[0].param, "/valServiceId");
		snprintf(chk.v[0].reason, sizeof chk.v[0].reason,
		         "is required: a string of 1 to 255 characters");
		json_decref(body);
		problem(r, 400, "INVALID_MSG_FORMAT", "a flow request names its VAL service", &chk);
		return SG_HTTP_DONE;
	}
	char svc[256];
	snprintf(svc, sizeof svc, "%s", json_string_value(sv));
	json_decref(body);
	const char *uid = sg_principal_val_user_id(p, svc);
	pthread_mutex_lock(&s->mu);
	struct trans *t = s->trans;
	while (t && strcmp(t->svc, svc) != 0)
		t = t->next;
	int status = 0;
	const char *cause = NULL, *detail = NULL;
	if (!t) {
		status = 404, cause = "TRANSMISSION_NOT_REQUESTED";
		detail = "no VAL server requested SEALDD transmission for this VAL service";
	} else if (t->val_ue_id || (t->val_user_id && (!uid || strcmp(uid, t->val_user_id) != 0))) {
		/* TransReq.valTargetId limits the transmission to one VAL user (a valUeId target
		 * cannot be proven by a token, which carries VAL user ids only) */
		status = 403, cause = "OPERATION_NOT_ALLOWED";
		detail = "the transmission is for another VAL user";
	}
	struct frt *rt = status ? NULL : calloc(1, sizeof *rt);
	if (rt) {
		rt->s = s;
		rt->tgt = t->tgt;
		rt->identity = strdup(t->identity);
		rt->owner = strdup(t->client_id);
		rt->val_user_id = strdup(uid ? uid : p->sub);
	}
	if (!status && (!rt || !rt->identity || !rt->owner || !rt->val_user_id))
		status = 503, cause = "SERVICE_UNAVAILABLE", detail = "out of memory";
	const char *why = NULL;
	struct sg_sdd_flow *f =
	    status ? NULL
	           : sg_sdd_flowtab_add(s->flows, p->sub, svc, t->urllc, sg_now_ms(),
	                                s->conf->sdd.flow_lifetime_s, &why);
	if (!status && !f) {
		if (why && !strcmp(why, "limit"))
			status = 429, cause = "TOO_MANY_FLOWS", detail = "flow limit reached";
		else
			status = 503, cause = "SERVICE_UNAVAILABLE", detail = "out of memory";
	}
	json_t *out = NULL;
	if (!status) {
		rt->f = f;
		f->rt = rt;
		rt = NULL;
		out = flow_json(s, f);
	}
	pthread_mutex_unlock(&s->mu);
	sdd_frt_free(rt);
	if (status) {
		problem(r, status, cause, detail, NULL);
		return SG_HTTP_DONE;
	}
	const char *host = sg_http_req_header(r, "host");
	char loc[512];
	snprintf(loc, sizeof loc, "https://%s/sdd-flows/v1/flows/%s", host ? host : "localhost",
	         json_string_value(json_object_get(out, "sddFlowId")));
	sg_http_resp_header(r, "Location", loc);
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_json(r, 201, out);
	return SG_HTTP_DONE;
}

static struct sg_sdd_flow *flow_of_req_locked(struct sg_sdd *s, struct sg_http_req *r)
{
	const struct sg_principal *p = sg_principal_of(r);
	uint8_t id[SG_SDD_FLOW_ID_LEN];
	if (!p || !p->sub || sg_sdd_flow_from_text(sg_http_req_param(r, "sddFlowId"), id) != 0)
		return NULL;
	return sg_sdd_flowtab_find(s->flows, id, p->sub);
}

static enum sg_http_result h_flow_get(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	pthread_mutex_lock(&s->mu);
	struct sg_sdd_flow *f = flow_of_req_locked(s, r);
	json_t *out = f ? flow_json(s, f) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!out) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such flow", NULL);
		return SG_HTTP_DONE;
	}
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_json(r, 200, out);
	return SG_HTTP_DONE;
}

static enum sg_http_result h_flow_delete(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	pthread_mutex_lock(&s->mu);
	struct sg_sdd_flow *f = flow_of_req_locked(s, r);
	if (f)
		f->released = 1; /* the data plane ends it within SWEEP_MS */
	pthread_mutex_unlock(&s->mu);
	if (!f) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such flow", NULL);
		return SG_HTTP_DONE;
	}
	sg_http_resp_status(r, 204);
	return SG_HTTP_DONE;
}

sg_err sg_sdd_mount(struct sg_sdd *s, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                    char *err, size_t errlen)
{
	sg_err e = SG_OK;
	if (rp->auth_mode == SG_AUTH_MTLS_BEARER) {
		/* SEALDD-S = SEAL-S (G6, D3, R3) */
		const struct {
			const char *m, *t;
			sg_http_handler h;
		} R[] = {
		    {"POST", "/sdd-trans/v1/{transType}/request-trans", h_request_trans},
		    {"POST", "/sdd-trans/v1/subscriptions", h_subsc_create},
		    {"GET", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_get},
		    {"PUT", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_put},
		    {"PATCH", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_patch},
		    {"DELETE", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_delete},
		};
		for (size_t i = 0; e == SG_OK && i < sizeof R / sizeof R[0]; i++)
			e = sg_policy_route(rt, R[i].m, R[i].t, SG_SDD_AUDIENCE, SG_SDD_SCOPE,
			                    R[i].h, s);
	} else if (rp->auth_mode == SG_AUTH_BEARER) {
		/* SEALDD-UU = SEAL-UU (G6, D3, R1) */
		e = sg_policy_route(rt, "POST", "/sdd-flows/v1/flows", SG_SDD_AUDIENCE,
		                    SG_SDD_SCOPE, h_flow_create, s);
		if (e == SG_OK)
			e = sg_policy_route(rt, "GET", "/sdd-flows/v1/flows/{sddFlowId}",
			                    SG_SDD_AUDIENCE, SG_SDD_SCOPE, h_flow_get, s);
		if (e == SG_OK)
			e = sg_policy_route(rt, "DELETE", "/sdd-flows/v1/flows/{sddFlowId}",
			                    SG_SDD_AUDIENCE, SG_SDD_SCOPE, h_flow_delete, s);
	}
	if (e != SG_OK)
		return sg_fail(err, errlen, e, "%s: cannot add the SEALDD routes: %s", rp->name,
		               sg_err_str(e));
	return SG_OK;
}
