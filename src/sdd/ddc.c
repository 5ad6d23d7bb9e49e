/* sdd/ddc.c: SEALDD-E, SEALDD server to SEALDD server: DD context relocation (TS 23.433 SEALDD
 * server relocation; TS 29.548 SDD_DDContext `sdd-ddc/v1`; TS 33.434 Rel-18 D3: SEALDD-E is
 * protected as SEAL-E, i.e. mutual TLS with the certificate identity checked, R4). See
 * docs/sdd-protocol.md §7.
 *
 *   target side  POST /sdd-ddc/v1/contexts (push) and GET /sdd-ddc/v1/contexts?sdd-flow-id=ID
 *                (pull) on the SEAL-E listener, for peer SEALDD servers only (sdd.peers);
 *   source side  POST /sg-sdd-ops/v1/relocations on the same listener, for the operator only
 *                (this server's own certificate, `sealguard dd relocate`): a worker thread
 *                pushes the flow's context to the target over mutual TLS with this server's
 *                certificate, refuses a target whose certificate identity is not in sdd.peers
 *                (checked inside the TLS handshake, before any byte of the context is sent),
 *                and on 201 ends the flow here with END "FLOW_RELOCATED: host:port".
 *
 * Threads: handlers run on the net/ workers and touch the flow table under s->mu only; pushes
 * run on the relocation thread (blocking libcurl), whose answers go back to the request's own
 * loop (event_base_once) where the request is finished. */
#include "sdd/internal.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/pem.h>
#include <stdarg.h>

#define DDC_BASE        "/sdd-ddc/v1/contexts"
#define DDC_OPS         "/sg-sdd-ops/v1/relocations"
#define DDC_QUEUE_MAX   64
#define DDC_CONNECT_MS  3000
#define DDC_TIMEOUT_MS  10000
#define DDC_MAX_RESP    (64 * 1024)
#define DDC_SUB_MAX     255
#define DDC_URL_MAX     400
#define DDC_REASON_CODE "FLOW_RELOCATED"

struct ddc_job {
	struct ddc_job *next;
	struct sg_sdd *s;
	struct sg_http_req *r;
	void *loop;
	uint8_t id[SG_SDD_FLOW_ID_LEN];
	char url[DDC_URL_MAX + 32];
	char target[DDC_URL_MAX + 1];
	/* the answer, filled on the relocation thread, sent on the request's loop */
	int status;
	json_t *body; /* ProblemDetails or the result */
};

struct sdd_ddc {
	unsigned char self_sha256[32]; /* this server's own certificate (resource.client_cert) */
	int have_self;
	pthread_t th;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct ddc_job *q, **qtail;
	size_t nq;
	int stop;
	int curl_inited;
};

/* ---- helpers ---- */

static void answer(struct sg_http_req *r, int status, const char *cause, const char *detail,
                   const struct sg_sdd_check *chk)
{
	json_t *p = sg_sdd_problem(status, cause, detail, chk);
	char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
	json_decref(p);
	if (!text) {
		sg_http_resp_problem(r, 500, NULL, "out of memory");
		return;
	}
	sg_http_resp_status(r, status);
	sg_http_resp_body(r, text, strlen(text), "application/problem+json");
	free(text);
}

static void chk_add(struct sg_sdd_check *chk, const char *param, const char *reason)
{
	if (chk->n < SG_SDD_MAX_INVALID) {
		snprintf(chk->v[chk->n].param, sizeof chk->v[chk->n].param, "%s", param);
		snprintf(chk->v[chk->n].reason, sizeof chk->v[chk->n].reason, "%s", reason);
	}
	chk->n++;
}

static int is_hex(const char *v)
{
	for (; *v; v++)
		if (!strchr("0123456789abcdefABCDEF", *v))
			return 0;
	return 1;
}

/* TS 33.434 Rel-18 D3 / R4: 1 when the peer's verified certificate carries a SAN listed in
 * sdd.peers (the certificate identity, never the CN: TS 33.310). */
static int is_peer(const struct sg_conf *c, const struct sg_tls_principal *tp)
{
	if (!tp || !tp->authenticated || tp->is_psk)
		return 0;
	for (unsigned i = 0; i < c->sdd.n_peers; i++)
		if (sg_tls_principal_has_san(tp, c->sdd.peers[i]))
			return 1;
	return 0;
}

/* Only peer SEALDD servers: everything else (no certificate, a VAL server's, a SEAL server not
 * listed) gets 403 and nothing happens. Returns 0 when allowed. */
static int peer_only(struct sg_sdd *s, struct sg_http_req *r)
{
	const struct sg_principal *p = sg_principal_of(r);
	if (s->conf->sdd.n_peers == 0) {
		answer(r, 403, "UNAUTHORIZED_IDENTITY",
		       "SEALDD-E is disabled on this SEALDD server (sdd.peers is empty)", NULL);
		return -1;
	}
	if (!p || p->kind != SG_PRINCIPAL_SEAL_SERVER ||
	    !is_peer(s->conf, sg_http_req_tls_principal(r))) {
		answer(r, 403, "UNAUTHORIZED_IDENTITY",
		       "SEALDD-E is open to the peer SEALDD servers of sdd.peers only", NULL);
		return -1;
	}
	return 0;
}

/* "host:port" of a data endpoint for the END reason, IPv6 in brackets. */
static void endpoint_text(const struct sg_sdd_target *t, char *out, size_t outlen)
{
	if (strchr(t->host, ':'))
		snprintf(out, outlen, "[%s]:%u", t->host, t->port);
	else
		snprintf(out, outlen, "%s:%u", t->host, t->port);
}

/* The DD context of a live flow (TS 29.548 DdContext), as this server holds it. The user's sub
 * and the transType ride in the sealguard extension members uuContext.sgSub and
 * uuContext.sgTransType (the schema has no member for them). Called with mu held. */
static json_t *context_of_locked(const struct sg_sdd *s, const struct sg_sdd_flow *f)
{
	const struct frt *rt = f->rt;
	if (!rt)
		return NULL;
	char id[SG_SDD_FLOW_TEXT_LEN + 1];
	sg_sdd_flow_to_text(f->id, id);
	int64_t left = (f->expires_ms - sg_now_ms() + 999) / 1000;
	return json_pack("{s:{s:s, s:s, s:s, s:o, s:o, s:{s:s}, s:I, s:s, s:s},"
	                 " s:{s:s, s:s, s:o, s:o}, s:{s:s}}",
	                 "uuContext", "sddFlowId", id, "valServiceId", f->val_service_id,
	                 "valServerId", rt->owner, "valServEndPoint",
	                 sg_sdd_conninfo(rt->tgt.host, rt->tgt.port), "ddServConnInfo",
	                 sg_sdd_conninfo(s->host, (unsigned)s->port), "valTgtUe", "valUserId",
	                 rt->val_user_id, "comLifetime", (json_int_t)(left > 0 ? left : 0), "sgSub",
	                 f->sub, "sgTransType", f->urllc ? "urllc" : "regular", "sContext",
	                 "valServerId", rt->owner, "valServiceId", f->val_service_id,
	                 "valServerConnInfo", sg_sdd_conninfo(rt->tgt.host, rt->tgt.port),
	                 "ddServerConnInfo", sg_sdd_conninfo(s->host, (unsigned)s->port),
	                 "trLayerContext", "transProtoc", "TCP_TLS");
}

/* ---- target side: push (TS 29.548 PushDdContext) ---- */

struct pushed {
	uint8_t id[SG_SDD_FLOW_ID_LEN];
	char svc[256], server[256], sub[DDC_SUB_MAX + 1], val_user_id[256];
	int urllc;
	unsigned lifetime_s;
	struct sg_sdd_target tgt;
};

/* DdContextPushReq (TS 29.548) plus what this server needs to continue the flow: the flow id
 * in its canonical form, the VAL service, the user (sgSub). Returns 0 or -1 with chk filled. */
static int push_validate(const struct sg_sdd *s, const json_t *req, struct pushed *out,
                         struct sg_sdd_check *chk)
{
	memset(chk, 0, sizeof *chk);
	memset(out, 0, sizeof *out);
	if (!json_is_object(req)) {
		chk_add(chk, "/", "DdContextPushReq must be a JSON object");
		return -1;
	}
	const json_t *ctx = json_object_get(req, "ddContext");
	if (!ctx)
		chk_add(chk, "/ddContext", "is required");
	else
		sg_sdd_ddcontext_validate(ctx, "/ddContext", &out->tgt, chk);
	const json_t *sf = json_object_get(req, "suppFeat");
	if (sf && (!json_is_string(sf) || !is_hex(json_string_value(sf))))
		chk_add(chk, "/suppFeat",
		        "must be a hexadecimal string (TS 29.571 SupportedFeatures)");
	if (chk->n)
		return -1;
	const json_t *uu = json_object_get(ctx, "uuContext"),
	             *sc = json_object_get(ctx, "sContext");
	/* sealguard's own demands (docs/sdd-protocol.md §7) */
	if (sg_sdd_flow_from_text(json_string_value(json_object_get(uu, "sddFlowId")), out->id) !=
	        0 ||
	    sg_sdd_flow_is_zero(out->id))
		chk_add(chk, "/ddContext/uuContext/sddFlowId",
		        "must be a sddFlowId of this protocol: 22 base64url characters (128 bits)");
	const char *su = json_string_value(json_object_get(uu, "valServiceId")),
	           *ss = json_string_value(json_object_get(sc, "valServiceId"));
	const char *svc = ss ? ss : su;
	if (!svc || !*svc || strlen(svc) >= sizeof out->svc)
		chk_add(chk, "/ddContext/sContext/valServiceId",
		        "is required by this SEALDD server (flows are mapped from it): 1 to 255 "
		        "characters");
	else if (su && ss && strcmp(su, ss) != 0)
		chk_add(chk, "/ddContext/uuContext/valServiceId",
		        "differs from sContext/valServiceId");
	const char *vs = json_string_value(json_object_get(sc, "valServerId")),
	           *vu = json_string_value(json_object_get(uu, "valServerId"));
	if (!*vs || strlen(vs) >= sizeof out->server)
		chk_add(chk, "/ddContext/sContext/valServerId", "must be 1 to 255 characters");
	else if (vu && strcmp(vu, vs) != 0)
		chk_add(chk, "/ddContext/uuContext/valServerId",
		        "differs from sContext/valServerId");
	const json_t *sub = json_object_get(uu, "sgSub");
	if (!json_is_string(sub) || json_string_length(sub) == 0 ||
	    json_string_length(sub) > DDC_SUB_MAX)
		chk_add(
		    chk, "/ddContext/uuContext/sgSub",
		    "is required by this SEALDD server: the VAL user (token sub) the flow is bound "
		    "to, 1 to 255 characters");
	const json_t *tt = json_object_get(uu, "sgTransType");
	const char *tts = json_string_value(tt);
	if (tt && (!tts || (strcmp(tts, "regular") != 0 && strcmp(tts, "urllc") != 0)))
		chk_add(chk, "/ddContext/uuContext/sgTransType", "must be regular or urllc");
	const json_t *tu = json_object_get(uu, "valTgtUe");
	const char *uid = json_string_value(json_object_get(tu, "valUserId"));
	if (tu && (!uid || !*uid || strlen(uid) >= sizeof out->val_user_id))
		chk_add(chk, "/ddContext/uuContext/valTgtUe",
		        "a flow's target is a VAL user (valUserId, 1 to 255 characters)");
	const json_t *lt = json_object_get(uu, "comLifetime");
	if (lt && json_integer_value(lt) < 1)
		chk_add(chk, "/ddContext/uuContext/comLifetime",
		        "a relocated flow needs at least 1 s of lifetime left");
	if (chk->n)
		return -1;
	snprintf(out->svc, sizeof out->svc, "%s", svc);
	snprintf(out->server, sizeof out->server, "%s", vs);
	snprintf(out->sub, sizeof out->sub, "%s", json_string_value(sub));
	snprintf(out->val_user_id, sizeof out->val_user_id, "%s", uid ? uid : out->sub);
	out->urllc = tts && strcmp(tts, "urllc") == 0;
	unsigned max = s->conf->sdd.flow_lifetime_s;
	json_int_t l = lt ? json_integer_value(lt) : (json_int_t)max;
	out->lifetime_s = l > (json_int_t)max ? max : (unsigned)l;
	return 0;
}

static enum sg_http_result h_push(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	if (peer_only(s, r))
		return SG_HTTP_DONE;
	json_t *req = sg_http_req_json(r);
	if (!req)
		return SG_HTTP_DONE;
	struct pushed in;
	struct sg_sdd_check chk;
	if (push_validate(s, req, &in, &chk) != 0) {
		json_decref(req);
		answer(r, 400, "INVALID_MSG_FORMAT",
		       "the DdContextPushReq does not follow TS 29.548", &chk);
		return SG_HTTP_DONE;
	}
	json_t *out_ctx = json_deep_copy(json_object_get(req, "ddContext"));
	json_decref(req);
	struct frt *rt = calloc(1, sizeof *rt);
	if (!out_ctx || !rt) {
		json_decref(out_ctx);
		free(rt);
		answer(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	rt->s = s;
	rt->tgt = in.tgt;
	rt->owner = strdup(in.server);
	rt->val_user_id = strdup(in.val_user_id);
	int status = 0;
	const char *cause = NULL, *detail = NULL;
	pthread_mutex_lock(&s->mu);
	/* D2, as for request-trans: the VAL server named in the context must be registered,
	 * enabled and registered for the VAL service in this server's registry; the relay then
	 * demands that VAL server's certificate identity from this registry, not from the peer */
	const char *why = NULL;
	const struct sg_store_valserver *v = sg_store_vals_find(s->vals, in.server);
	if (sdd_vals_serves_locked(s, in.server, in.svc, &why) != 0) {
		status = 403, cause = "OPERATION_NOT_ALLOWED", detail = why;
	} else if (!v->identity || !*v->identity) {
		status = 403, cause = "OPERATION_NOT_ALLOWED";
		detail = "the VAL server has no certificate identity in this server's registry";
	} else if (!(rt->identity = strdup(v->identity)) || !rt->owner || !rt->val_user_id) {
		status = 503, cause = "SERVICE_UNAVAILABLE", detail = "out of memory";
	}
	struct sg_sdd_flow *f = NULL;
	if (!status) {
		f = sg_sdd_flowtab_add_id(s->flows, in.id, in.sub, in.svc, in.urllc, sg_now_ms(),
		                          in.lifetime_s, &why);
		if (!f && why && !strcmp(why, "exists"))
			status = 409, cause = "CONTEXT_EXISTS",
			detail = "a flow with this sddFlowId exists on this SEALDD server";
		else if (!f && why && !strcmp(why, "limit"))
			status = 429, cause = "TOO_MANY_FLOWS", detail = "flow limit reached";
		else if (!f)
			status = 503, cause = "SERVICE_UNAVAILABLE", detail = "out of memory";
	}
	if (!status) {
		rt->f = f;
		f->rt = rt;
		rt = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	sdd_frt_free(rt);
	if (status) {
		json_decref(out_ctx);
		answer(r, status, cause, detail, NULL);
		return SG_HTTP_DONE;
	}
	char id[SG_SDD_FLOW_TEXT_LEN + 1];
	sg_sdd_flow_to_text(in.id, id);
	sg_log_info("sdd: SEALDD-E: flow of VAL service %s relocated here from %s", in.svc,
	            sg_principal_of(r)->cert_identity ? sg_principal_of(r)->cert_identity : "?");
	/* the context as it now stands here: this server's data endpoint */
	json_object_set_new(json_object_get(out_ctx, "uuContext"), "ddServConnInfo",
	                    sg_sdd_conninfo(s->host, (unsigned)s->port));
	json_object_set_new(json_object_get(out_ctx, "sContext"), "ddServerConnInfo",
	                    sg_sdd_conninfo(s->host, (unsigned)s->port));
	json_t *resp = json_pack("{s:o, s:o}", "ddContext", out_ctx, "endPoint",
	                         sg_sdd_conninfo(s->host, (unsigned)s->port));
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_json(r, 201, resp);
	return SG_HTTP_DONE;
}

/* ---- target side: pull (TS 29.548 PullDdContext) ---- */

/* The schema has no flow selector: this server takes the sealguard query parameter
 * sdd-flow-id (required). sealdd-pol-ind: no SEALDD policies are configured here, so none are
 * returned. */
static enum sg_http_result h_pull(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	if (peer_only(s, r))
		return SG_HTTP_DONE;
	struct sg_sdd_check chk = {0};
	const char *fid = sg_http_req_query_param(r, "sdd-flow-id");
	const char *pol = sg_http_req_query_param(r, "sealdd-pol-ind");
	const char *sf = sg_http_req_query_param(r, "supp-feats");
	uint8_t id[SG_SDD_FLOW_ID_LEN];
	if (!fid || sg_sdd_flow_from_text(fid, id) != 0)
		chk_add(&chk, "sdd-flow-id",
		        "is required by this SEALDD server: the sddFlowId whose context is pulled");
	if (pol && strcmp(pol, "true") != 0 && strcmp(pol, "false") != 0)
		chk_add(&chk, "sealdd-pol-ind", "must be true or false");
	if (sf && !is_hex(sf))
		chk_add(&chk, "supp-feats", "must be a hexadecimal string");
	if (chk.n) {
		answer(r, 400, "INVALID_QUERY_PARAM", "the query does not follow TS 29.548", &chk);
		return SG_HTTP_DONE;
	}
	pthread_mutex_lock(&s->mu);
	struct sg_sdd_flow *f = sg_sdd_flowtab_find(s->flows, id, NULL);
	json_t *ctx = f ? context_of_locked(s, f) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!ctx) {
		answer(r, 404, "CONTEXT_NOT_FOUND", "no such flow", NULL);
		return SG_HTTP_DONE;
	}
	json_t *resp = json_pack("{s:o, s:o}", "ddContext", ctx, "endPoint",
	                         sg_sdd_conninfo(s->host, (unsigned)s->port));
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_json(r, 200, resp);
	return SG_HTTP_DONE;
}

/* ---- source side: the push over SEALDD-E (mutual TLS, the target's identity checked) ---- */

struct push {
	const struct sg_conf *conf;
	struct sg_tls_conf tls;
	int (*prev_verify)(int, X509_STORE_CTX *);
	int not_peer;
	char seen[256]; /* the target's SANs when it is not a peer */
	char tls_err[256];
	struct sg_buf body;
	int over;
};

static int push_ex_idx = -1;
static pthread_once_t push_once = PTHREAD_ONCE_INIT;
static void push_idx_init(void)
{
	push_ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static void san_text(const GENERAL_NAME *g, char *out, size_t outlen)
{
	out[0] = '\0';
	if (g->type == GEN_DNS || g->type == GEN_URI) {
		const ASN1_IA5STRING *s = g->d.ia5;
		snprintf(out, outlen, "%s:%.*s", g->type == GEN_DNS ? "DNS" : "URI", s->length,
		         (const char *)s->data);
	} else if (g->type == GEN_IPADD) {
		char a[INET6_ADDRSTRLEN] = "";
		const ASN1_OCTET_STRING *o = g->d.ip;
		if (o->length == 4)
			inet_ntop(AF_INET, o->data, a, sizeof a);
		else if (o->length == 16)
			inet_ntop(AF_INET6, o->data, a, sizeof a);
		snprintf(out, outlen, "IP:%s", a);
	}
}

/* R4 on the source side: the target's leaf certificate must carry a SAN of sdd.peers. Runs in
 * the handshake, so a target that is not a peer never receives the context. */
static int push_verify_cb(int ok, X509_STORE_CTX *sctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct push *p = ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), push_ex_idx) : NULL;
	if (!p)
		return 0;
	if (p->prev_verify)
		ok = p->prev_verify(ok, sctx);
	if (!ok || X509_STORE_CTX_get_error_depth(sctx) != 0)
		return ok;
	X509 *x = X509_STORE_CTX_get_current_cert(sctx);
	int found = 0;
	/* the match as everywhere else (a SAN with an embedded NUL matches nothing); the SANs'
	 * text only for the log */
	for (unsigned k = 0; x && k < p->conf->sdd.n_peers && !found; k++)
		found = sg_tls_cert_has_san(x, p->conf->sdd.peers[k]);
	GENERAL_NAMES *gens = x ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
	p->seen[0] = '\0';
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
		char t[300];
		san_text(sk_GENERAL_NAME_value(gens, i), t, sizeof t);
		size_t l = strlen(p->seen);
		if (t[0])
			snprintf(p->seen + l, sizeof p->seen - l, "%s%s", l ? ", " : "", t);
	}
	GENERAL_NAMES_free(gens);
	if (!found) {
		p->not_peer = 1;
		X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return 1;
}

static CURLcode push_ctx_cb(CURL *curl, void *sslctx, void *arg)
{
	(void)curl;
	struct push *p = arg;
	SSL_CTX *ctx = sslctx;
	if (sg_tls_apply_profile(ctx, &p->tls, 0, p->tls_err, sizeof p->tls_err) != SG_OK)
		return CURLE_SSL_CERTPROBLEM;
	p->prev_verify = SSL_CTX_get_verify_callback(ctx);
	if (SSL_CTX_set_ex_data(ctx, push_ex_idx, p) != 1)
		return CURLE_SSL_CERTPROBLEM;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, push_verify_cb);
	return CURLE_OK;
}

static size_t push_write_cb(char *d, size_t size, size_t n, void *arg)
{
	struct push *p = arg;
	size_t len = size * n;
	if (p->body.len + len > DDC_MAX_RESP) {
		p->over = 1;
		return 0;
	}
	return sg_buf_append(&p->body, d, len) == SG_OK ? len : 0;
}

/* POSTs body to url; fills *status (0 when nothing came back) and p. -1 with err on transport
 * failure. */
static int push_post(struct push *p, const char *url, const char *body, long *status, char *err,
                     size_t errlen)
{
	*status = 0;
	CURL *h = curl_easy_init();
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	char cerr[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	CURLcode rc = hdr ? CURLE_OK : CURLE_OUT_OF_MEMORY;
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(h, opt, val);                                        \
	} while (0)
	SET(CURLOPT_ERRORBUFFER, cerr);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)DDC_CONNECT_MS);
	SET(CURLOPT_TIMEOUT_MS, (long)DDC_TIMEOUT_MS);
	SET(CURLOPT_URL, url);
	SET(CURLOPT_HTTPHEADER, hdr);
	SET(CURLOPT_POSTFIELDS, body);
	SET(CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	SET(CURLOPT_WRITEFUNCTION, push_write_cb);
	SET(CURLOPT_WRITEDATA, p);
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	/* TS 33.310 / R4: chain and host name verified, then the identity (push_verify_cb) */
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_SSL_CTX_FUNCTION, push_ctx_cb);
	SET(CURLOPT_SSL_CTX_DATA, p);
	SET(CURLOPT_CAINFO, p->tls.ca);
	SET(CURLOPT_CAPATH, NULL);
	SET(CURLOPT_SSLCERT, p->tls.cert);
	SET(CURLOPT_SSLKEY, p->tls.key ? p->tls.key : p->tls.cert);
#undef SET
	if (rc == CURLE_OK)
		rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	else
		snprintf(err, errlen, "%s",
		         p->tls_err[0] ? p->tls_err
		         : cerr[0]     ? cerr
		                       : curl_easy_strerror(rc));
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	return rc == CURLE_OK ? 0 : -1;
}

static json_t *result_problem(int *status, int st, const char *cause, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static json_t *result_problem(int *status, int st, const char *cause, const char *fmt, ...)
{
	char d[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d, sizeof d, fmt, ap);
	va_end(ap);
	*status = st;
	return sg_sdd_problem(st, cause, d, NULL);
}

/* The relocation of one flow, on the relocation thread. */
static void relocate(struct ddc_job *j)
{
	struct sg_sdd *s = j->s;
	char id[SG_SDD_FLOW_TEXT_LEN + 1];
	sg_sdd_flow_to_text(j->id, id);
	pthread_mutex_lock(&s->mu);
	struct sg_sdd_flow *f = sg_sdd_flowtab_find(s->flows, j->id, NULL);
	json_t *ctx = f ? context_of_locked(s, f) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!ctx) {
		j->body = result_problem(&j->status, 404, "RESOURCE_NOT_FOUND", "no such flow");
		return;
	}
	json_t *req = json_pack("{s:o}", "ddContext", ctx);
	char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!text) {
		j->body = result_problem(&j->status, 503, "SERVICE_UNAVAILABLE", "out of memory");
		return;
	}
	const struct sg_conf *c = s->conf;
	struct push p = {.conf = c,
	                 .tls = {.mode = SG_TLS_MUTUAL,
	                         .cert = c->resource.client_cert,
	                         .key = c->resource.client_key,
	                         .ca = c->resource.ca,
	                         .crl = c->resource.crl}};
	char err[300] = "";
	long st = 0;
	int rc = push_post(&p, j->url, text, &st, err, sizeof err);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	json_t *resp = rc == 0 ? json_loadb((const char *)p.body.data, p.body.len, 0, NULL) : NULL;
	if (p.not_peer) {
		j->body =
		    result_problem(&j->status, 403, "TARGET_NOT_PEER",
		                   "the target's certificate identity (%s) is not in sdd.peers: "
		                   "nothing was pushed, the flow stays here",
		                   p.seen[0] ? p.seen : "no SAN");
	} else if (rc != 0) {
		j->body = result_problem(&j->status, 502, "TARGET_UNREACHABLE",
		                         "SEALDD-E push to %s failed: %s; the flow stays here",
		                         j->target, err);
	} else if (st != 201) {
		const char *d = json_string_value(json_object_get(resp, "detail"));
		const char *cz = json_string_value(json_object_get(resp, "cause"));
		j->body = result_problem(&j->status, 502, "TARGET_REFUSED",
		                         "the target answered %ld%s%s%s%s; the flow stays here", st,
		                         cz ? " " : "", cz ? cz : "", d ? ": " : "", d ? d : "");
	} else {
		/* the target's SEALDD-UU data endpoint: the client continues there */
		struct sg_sdd_target t;
		struct sg_sdd_check chk;
		json_t *ep = json_object_get(resp, "endPoint");
		json_t *probe =
		    ep ? json_pack("{s:s, s:O}", "valServiceId", "x", "valServerConnInfo", ep)
		       : NULL;
		int good = probe && sg_sdd_transreq_validate(probe, &t, &chk) == 0;
		json_decref(probe);
		if (!good) {
			j->body =
			    result_problem(&j->status, 502, "TARGET_REFUSED",
			                   "the target's DdContextResp has no usable endPoint; "
			                   "the flow stays here (and may exist at the target)");
		} else {
			char where[300], reason[340];
			endpoint_text(&t, where, sizeof where);
			snprintf(reason, sizeof reason, "%s: %s", DDC_REASON_CODE, where);
			pthread_mutex_lock(&s->mu);
			f = sg_sdd_flowtab_find(s->flows, j->id, NULL);
			if (f && !f->end_reason && (f->end_reason = strdup(reason)))
				sg_sdd_flowtab_release(s->flows, f); /* END with the reason */
			pthread_mutex_unlock(&s->mu);
			j->status = 200;
			j->body = json_pack("{s:s, s:s, s:O, s:s}", "sddFlowId", id, "target",
			                    j->target, "endPoint", ep, "endReason", reason);
			sg_log_info("sdd: SEALDD-E: flow relocated to %s (data endpoint %s)",
			            j->target, where);
		}
	}
	json_decref(resp);
	sg_buf_free(&p.body);
}

static void finish_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct ddc_job *j = arg;
	if (!j->body) {
		sg_http_resp_problem(j->r, 503, "SERVICE_UNAVAILABLE", "out of memory");
	} else if (j->status == 200) {
		sg_http_resp_header(j->r, "Cache-Control", "no-store");
		sg_http_resp_json(j->r, 200, j->body);
		j->body = NULL;
	} else {
		char *text = json_dumps(j->body, JSON_COMPACT);
		sg_http_resp_status(j->r, j->status);
		if (text)
			sg_http_resp_body(j->r, text, strlen(text), "application/problem+json");
		free(text);
	}
	json_decref(j->body);
	sg_http_req_finish(j->r);
	free(j);
}

static void *ddc_main(void *arg)
{
	struct sg_sdd *s = arg;
	struct sdd_ddc *d = s->ddc;
	for (;;) {
		pthread_mutex_lock(&d->mu);
		while (!d->q && !d->stop)
			pthread_cond_wait(&d->cv, &d->mu);
		struct ddc_job *j = d->q;
		if (j) {
			d->q = j->next;
			if (!d->q)
				d->qtail = &d->q;
			d->nq--;
		}
		int stop = d->stop;
		pthread_mutex_unlock(&d->mu);
		if (!j)
			break;
		if (stop)
			j->body = result_problem(&j->status, 503, "SERVICE_UNAVAILABLE",
			                         "the SEALDD server is stopping");
		else
			relocate(j);
		struct timeval zero = {0, 0};
		if (event_base_once(j->loop, -1, EV_TIMEOUT, finish_cb, j, &zero) != 0) {
			sg_log_error("sdd: SEALDD-E: cannot hand the relocation answer back");
			json_decref(j->body);
			free(j);
		}
	}
	return NULL;
}

/* ---- source side: the operator's request ---- */

/* Only the operator: a client holding this server's own certificate and key (the state
 * directory's resource.client_cert, which `sealguard dd relocate` presents). */
static enum sg_http_result h_relocate(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	struct sdd_ddc *d = s->ddc;
	const struct sg_tls_principal *tp = sg_http_req_tls_principal(r);
	if (!d->have_self || !tp || !tp->authenticated ||
	    CRYPTO_memcmp(tp->cert_sha256, d->self_sha256, 32) != 0) {
		answer(r, 403, "UNAUTHORIZED_IDENTITY",
		       "relocations are requested by this server's operator (its own certificate)",
		       NULL);
		return SG_HTTP_DONE;
	}
	json_t *body = sg_http_req_json(r);
	if (!body)
		return SG_HTTP_DONE;
	struct sg_sdd_check chk = {0};
	uint8_t id[SG_SDD_FLOW_ID_LEN];
	const char *fid = json_string_value(json_object_get(body, "sddFlowId"));
	const char *to = json_string_value(json_object_get(body, "target"));
	if (!json_is_object(body) || !fid || sg_sdd_flow_from_text(fid, id) != 0)
		chk_add(&chk, "/sddFlowId", "is required: a sddFlowId (22 base64url characters)");
	size_t tl = to ? strlen(to) : 0;
	while (tl && to[tl - 1] == '/')
		tl--;
	int bad_to = !to || tl <= 8 || tl > DDC_URL_MAX || strncmp(to, "https://", 8) != 0;
	for (size_t i = 8; !bad_to && i < tl; i++)
		bad_to = strchr("/?#@ \\", to[i]) != NULL || (unsigned char)to[i] < 0x21 ||
		         (unsigned char)to[i] > 0x7e;
	if (bad_to)
		chk_add(&chk, "/target", "is required: the target's SEAL-E as https://HOST:PORT");
	if (chk.n) {
		json_decref(body);
		answer(r, 400, "INVALID_MSG_FORMAT", "a relocation names a flow and a target",
		       &chk);
		return SG_HTTP_DONE;
	}
	if (s->conf->sdd.n_peers == 0) {
		json_decref(body);
		answer(r, 403, "OPERATION_NOT_ALLOWED",
		       "no peer SEALDD servers are configured (sdd.peers): nothing was pushed",
		       NULL);
		return SG_HTTP_DONE;
	}
	pthread_mutex_lock(&s->mu);
	int found = sg_sdd_flowtab_find(s->flows, id, NULL) != NULL;
	pthread_mutex_unlock(&s->mu);
	if (!found) {
		json_decref(body);
		answer(r, 404, "RESOURCE_NOT_FOUND", "no such flow", NULL);
		return SG_HTTP_DONE;
	}
	struct ddc_job *j = calloc(1, sizeof *j);
	if (!j) {
		json_decref(body);
		answer(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	j->s = s;
	j->r = r;
	j->loop = sg_http_req_loop(r);
	memcpy(j->id, id, sizeof id);
	snprintf(j->target, sizeof j->target, "%.*s", (int)tl, to);
	snprintf(j->url, sizeof j->url, "%s%s", j->target, DDC_BASE);
	json_decref(body);
	pthread_mutex_lock(&d->mu);
	int full = d->nq >= DDC_QUEUE_MAX || d->stop || !d->started;
	if (!full) {
		*d->qtail = j;
		d->qtail = &j->next;
		d->nq++;
		pthread_cond_signal(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	if (full) {
		free(j);
		answer(r, 503, "SERVICE_UNAVAILABLE", "too many relocations in progress", NULL);
		return SG_HTTP_DONE;
	}
	return SG_HTTP_ASYNC;
}

/* ---- lifecycle (server.c) and routes (api.c) ---- */

sg_err sdd_ddc_new(struct sg_sdd *s, char *err, size_t errlen)
{
	struct sdd_ddc *d = calloc(1, sizeof *d);
	if (!d)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	d->qtail = &d->q;
	s->ddc = d;
	pthread_once(&push_once, push_idx_init);
	if (push_ex_idx < 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "SEALDD-E: no SSL_CTX ex index");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "SEALDD-E: curl_global_init failed");
	d->curl_inited = 1;
	/* this server's own certificate: the operator's credential for relocations */
	const char *cert = s->conf->resource.client_cert;
	FILE *fp = cert ? fopen(cert, "r") : NULL;
	X509 *x = fp ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;
	if (fp)
		fclose(fp);
	unsigned int mdlen = 0;
	if (x && X509_digest(x, EVP_sha256(), d->self_sha256, &mdlen) == 1 && mdlen == 32)
		d->have_self = 1;
	X509_free(x);
	if (!d->have_self)
		sg_log_warn("sdd: SEALDD-E: cannot read this server's certificate (%s): "
		            "relocations cannot be requested",
		            cert ? cert : "resource.client_cert");
	return SG_OK;
}

sg_err sdd_ddc_start(struct sg_sdd *s, char *err, size_t errlen)
{
	struct sdd_ddc *d = s->ddc;
	if (pthread_create(&d->th, NULL, ddc_main, s) != 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "thread");
	pthread_mutex_lock(&d->mu);
	d->started = 1;
	pthread_mutex_unlock(&d->mu);
	return SG_OK;
}

void sdd_ddc_free(struct sg_sdd *s)
{
	struct sdd_ddc *d = s ? s->ddc : NULL;
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->stop = 1;
	int started = d->started;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	if (started)
		pthread_join(d->th, NULL); /* answers what is queued (503) and exits */
	if (d->curl_inited)
		curl_global_cleanup();
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	OPENSSL_cleanse(d->self_sha256, sizeof d->self_sha256);
	free(d);
	s->ddc = NULL;
}

/* SEALDD-E = SEAL-E (D3, R4): on auth mtls only; certificate, no token. */
sg_err sdd_ddc_mount(struct sg_sdd *s, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                     char *err, size_t errlen)
{
	if (rp->auth_mode != SG_AUTH_MTLS)
		return SG_OK;
	sg_err e = sg_policy_route(rt, "POST", DDC_BASE, NULL, NULL, h_push, s);
	if (e == SG_OK)
		e = sg_policy_route(rt, "GET", DDC_BASE, NULL, NULL, h_pull, s);
	if (e == SG_OK)
		e = sg_policy_route(rt, "POST", DDC_OPS, NULL, NULL, h_relocate, s);
	if (e != SG_OK)
		return sg_fail(err, errlen, e, "%s: cannot add the SEALDD-E routes: %s", rp->name,
		               sg_err_str(e));
	return SG_OK;
}
