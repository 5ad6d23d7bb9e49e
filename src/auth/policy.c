/* auth/policy.c: the per-reference-point authorization policy (TS 33.434 §5.1.1, R1–R4, I10,
 * G2): the listener pre-handler that attaches the principal, the sg_policy_route wrapper that
 * verifies the access token against the route's audience and scope before the handler runs,
 * and the RFC 6750 §3 answers. Tokens are verified by auth/jws (ES256 only, key set from the
 * SIM-S over SEAL-E by auth/remote), through the verified-token cache. */
#include "auth/policy.h"

#include "auth/jws.h"
#include "auth/remote.h"
#include "auth/secret.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/ratelimit.h"
#include "conf/conf.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct policy_listener {
	struct sg_policy *p;
	const struct sg_conf_refpoint *rp;
	enum sg_auth_mode mode;
	struct id_limit *idl; /* requests per identity (G4), NULL: no limit */
};

struct id_limit {
	struct sg_ratelimit rl;
	_Atomic unsigned long long refused;
};

struct sg_policy {
	char *issuer;
	struct sg_jws_keyset *ks;
	struct sg_jws_cache *cache; /* NULL when token_cache_entries is 0 */
	struct sg_idm_remote *remote;
	struct policy_listener *listeners;
	unsigned n;
	int need_remote;    /* some listener takes tokens and a resource-server role runs */
	char *const *peers; /* sdd.peers (the configuration's, which outlives the policy) */
	unsigned n_peers;
};

/* What the pre-handler attaches to a request (sg_http_req_set_auth); the public part first. */
struct preq {
	struct sg_principal pub;
	const struct policy_listener *l;
	json_t *claims; /* reference held while the request lives */
};

#define PREQ_LEEWAY SG_JWS_MAX_LEEWAY /* I7: ≤ 30 s */

/* ---- principal ---- */

const struct sg_principal *sg_principal_of(const struct sg_http_req *r)
{
	const struct preq *q = sg_http_req_auth(r);
	return q ? &q->pub : NULL;
}

int sg_principal_has_scope(const struct sg_principal *p, const char *scope)
{
	if (!p || !p->scope || !scope || !*scope)
		return 0;
	size_t n = strlen(scope);
	for (const char *s = p->scope; *s;) {
		while (*s == ' ')
			s++;
		const char *e = s;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - s) == n && memcmp(s, scope, n) == 0)
			return 1;
		s = e;
	}
	return 0;
}

const char *sg_principal_val_user_id(const struct sg_principal *p, const char *val_service_id)
{
	if (!p || p->kind != SG_PRINCIPAL_UE || !p->claims || !val_service_id)
		return NULL;
	json_t *m = json_object_get(p->claims, "val_user_ids");
	return json_string_value(json_object_get(m, val_service_id));
}

static void preq_free(void *arg)
{
	struct preq *q = arg;
	json_decref(q->claims);
	free(q);
}

/* ---- the engine ---- */

static int has_str(char **v, unsigned n, const char *s)
{
	for (unsigned i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

sg_err sg_policy_new(const struct sg_conf *conf, struct sg_policy **out, char *err, size_t errlen)
{
	struct sg_policy *p = calloc(1, sizeof *p);
	if (!p)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	sg_err e = SG_ERR_NOMEM;
	p->n = conf->n_refpoints;
	p->peers = conf->sdd.peers;
	p->n_peers = conf->sdd.n_peers;
	p->listeners = calloc(p->n ? p->n : 1, sizeof *p->listeners);
	p->ks = sg_jws_keyset_new();
	if (!p->listeners || !p->ks)
		goto fail;
	if (conf->resource.token_cache_entries &&
	    !(p->cache = sg_jws_cache_new(conf->resource.token_cache_entries)))
		goto fail;
	int tokens = 0, resource_role = 0;
	for (unsigned i = 0; i < p->n; i++) {
		const struct sg_conf_refpoint *rp = &conf->refpoints[i];
		p->listeners[i] = (struct policy_listener){.p = p, .rp = rp, .mode = rp->auth_mode};
		if (rp->limits.requests_per_second_per_identity) {
			if (!(p->listeners[i].idl = calloc(1, sizeof *p->listeners[i].idl)))
				goto fail;
			sg_ratelimit_init(
			    &p->listeners[i].idl->rl, rp->limits.requests_per_second_per_identity,
			    rp->limits.request_burst_per_identity, SG_RATELIMIT_MAX_KEYS);
		}
		tokens |= rp->auth_mode == SG_AUTH_BEARER || rp->auth_mode == SG_AUTH_MTLS_BEARER;
	}
	static const char *const RESOURCE_ROLES[] = {"gm", "km", "sdd"};
	for (size_t i = 0; i < sizeof RESOURCE_ROLES / sizeof RESOURCE_ROLES[0]; i++)
		resource_role |= has_str(conf->roles, conf->n_roles, RESOURCE_ROLES[i]);
	p->need_remote = tokens && resource_role;
	if (p->need_remote) {
		/* I10: iss must be exactly identity management's issuer: idm.issuer, else derived
		 * as identity management derives it (the first non-mutual listener serving idm) */
		char derived[300] = "";
		for (unsigned i = 0; !conf->idm.issuer && i < p->n && !*derived; i++) {
			const struct sg_conf_refpoint *rp = &conf->refpoints[i];
			const char *port = strrchr(rp->bind, ':');
			if (has_str(rp->services, rp->n_services, "idm") &&
			    rp->tls.mode != SG_TLS_MUTUAL && port)
				snprintf(derived, sizeof derived, "https://localhost:%s", port + 1);
		}
		if (!conf->idm.issuer && !*derived) {
			e = sg_fail(
			    err, errlen, SG_ERR_CONFIG,
			    "idm.issuer must be set: no listener of this configuration serves "
			    "idm, so the token issuer cannot be derived");
			goto fail_msg;
		}
		if (!(p->issuer = strdup(conf->idm.issuer ? conf->idm.issuer : derived)))
			goto fail;
		size_t il = strlen(p->issuer);
		while (il > 8 && p->issuer[il - 1] == '/')
			p->issuer[--il] = '\0';
		if (!conf->resource.idm_url) {
			e = sg_fail(err, errlen, SG_ERR_CONFIG,
			            "resource.idm_url must be set: no mutual-TLS listener of this "
			            "configuration serves idm (SEAL-E)");
			goto fail_msg;
		}
		struct sg_idm_remote_conf rc = {
		    .idm_url = conf->resource.idm_url,
		    .tls = {.mode = SG_TLS_MUTUAL,
		            .cert = conf->resource.client_cert,
		            .key = conf->resource.client_key,
		            .ca = conf->resource.ca,
		            .crl = conf->resource.crl},
		    .revocation_poll_ms = conf->resource.revocation_poll_ms,
		    .jwks_min_refresh_ms = conf->resource.jwks_min_refresh_ms,
		};
		if ((e = sg_idm_remote_new(&rc, p->ks, p->cache, &p->remote, err, errlen)) != SG_OK)
			goto fail_msg;
	}
	*out = p;
	return SG_OK;
fail:
	sg_fail(err, errlen, e, "out of memory");
fail_msg:
	sg_policy_free(p);
	return e;
}

sg_err sg_policy_start(struct sg_policy *p, char *err, size_t errlen)
{
	if (!p->remote)
		return SG_OK;
	return sg_idm_remote_start(p->remote, err, errlen);
}

void sg_policy_free(struct sg_policy *p)
{
	if (!p)
		return;
	sg_idm_remote_free(p->remote); /* stops the thread before its key set and cache go */
	sg_jws_cache_free(p->cache);
	sg_jws_keyset_free(p->ks);
	for (unsigned i = 0; p->listeners && i < p->n; i++)
		if (p->listeners[i].idl) {
			sg_ratelimit_free(&p->listeners[i].idl->rl);
			free(p->listeners[i].idl);
		}
	free(p->listeners);
	free(p->issuer);
	free(p);
}

struct sg_jws_keyset *sg_policy_keyset(struct sg_policy *p)
{
	return p->ks;
}

struct sg_idm_remote *sg_policy_remote(struct sg_policy *p)
{
	return p->remote;
}

void *sg_policy_listener_arg(struct sg_policy *p, const struct sg_conf_refpoint *rp)
{
	for (unsigned i = 0; i < p->n; i++)
		if (p->listeners[i].rp == rp)
			return &p->listeners[i];
	return NULL;
}

/* ---- the pre-handler ---- */

static const char *allowed_san(const struct policy_listener *l, const struct sg_tls_principal *tp)
{
	const struct sg_conf_refpoint *rp = l->rp;
	if (!tp || !tp->authenticated || tp->is_psk)
		return NULL;
	if (rp->n_allowed_identities == 0 && l->mode != SG_AUTH_MTLS)
		return tp->nsans ? tp->sans[0]
		                 : ""; /* the token says who (mtls+bearer, RFC 8705) */
	if (rp->n_allowed_identities == 0) {
		/* R4 without a list: the SEAL servers this one knows, i.e. those presenting an
		 * identity of its own certificate (the functions of one deployment share it) and
		 * its SEALDD peers (sdd.peers). Not any certificate of the CA: the VAL servers'
		 * come from it too, and SEAL-E hands out group documents and group keys. */
		if (tp->own_san)
			return tp->own_san;
		for (unsigned i = 0; i < l->p->n_peers; i++)
			if (sg_tls_principal_has_san(tp, l->p->peers[i]))
				return l->p->peers[i];
		return NULL;
	}
	for (unsigned i = 0; i < rp->n_allowed_identities; i++)
		if (sg_tls_principal_has_san(tp, rp->allowed_identities[i]))
			return rp->allowed_identities[i];
	return NULL;
}

int sg_policy_ready(const struct sg_policy *p, const char **why)
{
	const char *w = !p->issuer ? "no idm.issuer is configured"
	                : p->remote && !sg_idm_remote_ready(p->remote)
	                    ? "the SIM-S key set and revocation list are not fetched yet"
	                : !p->remote && sg_jws_keyset_count(p->ks) == 0
	                    ? "the SIM-S key set is not loaded yet"
	                    : NULL;
	if (why)
		*why = w;
	return w == NULL;
}

int sg_policy_pre(struct sg_http_req *r, void *listener_arg)
{
	const struct policy_listener *l = listener_arg;
	struct preq *q = calloc(1, sizeof *q);
	if (!q) {
		sg_http_resp_problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory");
		return SG_HTTP_DONE;
	}
	q->l = l;
	q->pub.kind = SG_PRINCIPAL_ANONYMOUS;
	q->pub.scope = "";
	sg_http_req_set_auth(r, q, preq_free);
	if (l->mode != SG_AUTH_MTLS && l->mode != SG_AUTH_MTLS_BEARER)
		return -1;
	/* R3/R4: the identity in the peer's end-entity certificate is used for policy; when the
	 * operator lists allowed identities, any other SAN is refused (health stays answerable) */
	const struct sg_tls_principal *tp = sg_http_req_tls_principal(r);
	const char *san = allowed_san(l, tp);
	if (!san) {
		if (strcmp(sg_http_req_path(r), "/healthz") == 0)
			return -1;
		sg_http_resp_problem(r, 403, "UNAUTHORIZED_IDENTITY",
		                     "the client certificate's identity is not allowed on %s",
		                     l->rp->name);
		return SG_HTTP_DONE;
	}
	q->pub.cert_identity = *san ? san : NULL;
	if (l->mode == SG_AUTH_MTLS)
		q->pub.kind = SG_PRINCIPAL_SEAL_SERVER; /* R4: the certificate is the credential */
	return -1;
}

/* ---- token decision ---- */

static void decide(struct sg_policy_decision *d, int status, const char *error, const char *cause,
                   const char *desc)
{
	d->status = status;
	d->error = error;
	d->cause = cause;
	/* RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E */
	size_t j = 0;
	for (size_t i = 0; desc && desc[i] && j + 1 < sizeof d->desc; i++) {
		unsigned char c = (unsigned char)desc[i];
		if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\')
			d->desc[j++] = (char)c;
	}
	d->desc[j] = '\0';
}

static bool revoked_cb(void *arg, const json_t *claims)
{
	struct sg_policy *p = arg;
	if (!p->remote)
		return false;
	return sg_idm_remote_is_revoked(p->remote,
	                                json_string_value(json_object_get(claims, "jti")),
	                                json_string_value(json_object_get(claims, "gid")));
}

static const char *bearer_of(const char *authorization)
{
	if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
		return NULL;
	const char *t = authorization + 7;
	while (*t == ' ')
		t++;
	return t;
}

void sg_policy_check(struct sg_policy *p, int auth_mode, const struct sg_tls_principal *tp,
                     const char *authorization, const char *audience, const char *scope,
                     json_t **claims_out, struct sg_policy_decision *d)
{
	memset(d, 0, sizeof *d);
	if (claims_out)
		*claims_out = NULL;
	if (auth_mode == SG_AUTH_NONE)
		return;
	if (auth_mode == SG_AUTH_MTLS) {
		/* R4: SEAL-E/X1/X2 carry no token; the pre-handler checked the certificate */
		if (!tp || !tp->authenticated)
			decide(d, 403, NULL, "UNAUTHORIZED_IDENTITY",
			       "a client certificate is required");
		return;
	}
	if (auth_mode == SG_AUTH_MTLS_BEARER && (!tp || !tp->authenticated || tp->is_psk)) {
		decide(d, 401, "invalid_token", "CERTIFICATE_MISMATCH",
		       "a client certificate is required on this reference point");
		return;
	}
	const char *token = bearer_of(authorization);
	if (!token) {
		/* RFC 6750 §3.1: no authentication information, no error code */
		decide(d, 401, NULL, "UNAUTHENTICATED", "an access token is required (RFC 6750)");
		return;
	}
	if (!*token) {
		decide(d, 401, "invalid_token", "INVALID_TOKEN", "malformed token");
		return;
	}
	if (!sg_policy_ready(p, NULL)) {
		decide(d, 503, NULL, "SERVICE_UNAVAILABLE",
		       "identity management is not reachable: tokens cannot be verified now");
		return;
	}
	/* I10: ES256 by a key of the SIM-S JWKS, iss, aud (this service), exp/iat with ≤ 30 s
	 * leeway, scope; RFC 9068 typ at+jwt; not revoked (jti or grant) */
	struct sg_jws_policy pol = {.iss = p->issuer,
	                            .aud = audience,
	                            .scope = scope,
	                            .typ = SG_JWS_TYP_AT,
	                            .leeway = PREQ_LEEWAY};
	json_t *claims = NULL;
	char why[128] = "";
	sg_jws_status st = sg_jws_verify_cached(p->cache, p->ks, token, &pol, revoked_cb, p,
	                                        &claims, why, sizeof why);
	if (st != SG_JWS_OK) {
		if (st == SG_JWS_UNKNOWN_KID && p->remote)
			sg_idm_remote_kid_miss(p->remote);
		if (st == SG_JWS_INSUFFICIENT_SCOPE)
			decide(d, 403, "insufficient_scope", "INSUFFICIENT_SCOPE",
			       "the token lacks the scope this resource needs");
		else if (st == SG_JWS_INTERNAL)
			decide(d, 500, NULL, NULL, "token verification failed");
		else
			decide(d, 401, "invalid_token", "INVALID_TOKEN", sg_jws_status_str(st));
		json_decref(claims);
		return;
	}
	/* I8/I10: client_id is REQUIRED */
	const char *cid = json_string_value(json_object_get(claims, "client_id"));
	if (!cid || !*cid) {
		decide(d, 401, "invalid_token", "INVALID_TOKEN", "client_id missing");
		json_decref(claims);
		return;
	}
	json_t *cnf = json_object_get(claims, "cnf");
	const char *x5t = json_string_value(json_object_get(cnf, "x5t#S256"));
	if (auth_mode == SG_AUTH_BEARER) {
		/* RFC 8705 §3: a certificate-bound token is only good with its certificate, which a
		 * server-authenticated listener never sees */
		if (cnf) {
			decide(d, 401, "invalid_token", "CERTIFICATE_MISMATCH",
			       "certificate-bound token presented without its certificate");
			json_decref(claims);
			return;
		}
	} else {
		/* R3 + RFC 8705 §3.1: cnf.x5t#S256 = base64url(SHA-256(DER of the presented
		 * certificate)); identity management binds it only for the VAL server registered
		 * with that certificate's SAN, so client_id is the certificate's VAL server */
		char have[SG_X5T_S256_LEN];
		sg_secret_x5t_s256(tp->cert_sha256, have);
		if (!x5t) {
			decide(d, 401, "invalid_token", "INVALID_TOKEN",
			       "the token is not bound to a client certificate (cnf)");
			json_decref(claims);
			return;
		}
		if (strlen(x5t) != strlen(have) || CRYPTO_memcmp(x5t, have, strlen(have)) != 0) {
			decide(d, 401, "invalid_token", "CERTIFICATE_MISMATCH",
			       "the token is bound to another certificate");
			json_decref(claims);
			return;
		}
	}
	if (claims_out)
		*claims_out = claims;
	else
		json_decref(claims);
}

/* RFC 6750 §3 answer with a ProblemDetails body (TS 29.122 cause) */
static void answer(struct sg_http_req *r, const struct sg_policy_decision *d, const char *scope)
{
	if (d->status == 401 || d->status == 403) {
		char h[512];
		int n = snprintf(h, sizeof h, "Bearer realm=\"sealguard\"");
		if (d->error)
			n += snprintf(h + n, sizeof h - (size_t)n, ", error=\"%s\"", d->error);
		if (d->error && d->desc[0])
			n += snprintf(h + n, sizeof h - (size_t)n, ", error_description=\"%s\"",
			              d->desc);
		if (d->error && !strcmp(d->error, "insufficient_scope") && scope && *scope)
			snprintf(h + n, sizeof h - (size_t)n, ", scope=\"%s\"", scope);
		if (d->error || d->status == 401)
			sg_http_resp_header(r, "WWW-Authenticate", h);
	}
	if (d->status == 503)
		sg_http_resp_header(r, "Retry-After", "1");
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_problem(r, d->status, d->cause, "%s", d->desc);
}

/* ---- routes ---- */

struct policy_route {
	struct policy_route *next;
	char *audience, *scope;
	sg_http_handler h;
	void *arg;
};

static pthread_mutex_t routes_mu = PTHREAD_MUTEX_INITIALIZER;
static struct policy_route *routes;

/* G4: the request rate of the identity the request was just authenticated as (a UE's token
 * sub, a VAL server's client_id, a SEAL server's certificate SAN; one table for all, the kinds
 * apart), so that users sharing an address behind NAT each have their own allowance. 1 when
 * over it: answered 429, the handler does not run. */
static int over_identity_rate(struct sg_http_req *r, const struct policy_listener *l,
                              const struct sg_principal *pr)
{
	const char *id = pr->kind == SG_PRINCIPAL_UE           ? pr->sub
	                 : pr->kind == SG_PRINCIPAL_VAL_SERVER ? pr->client_id
	                                                       : pr->cert_identity;
	if (!id)
		return 0; /* anonymous: the per-address limit applies */
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)id, strlen(id), md);
	md[0] ^= (unsigned char)pr->kind; /* the key is the first 16 bytes */
	uint64_t retry_us = 0;
	if (sg_ratelimit_take(&l->idl->rl, md, (uint64_t)sg_mono_us(), &retry_us) != SG_RL_LIMITED)
		return 0;
	sg_http_resp_too_many(r, l->rp->limits.requests_per_second_per_identity,
	                      "for this identity", retry_us);
	atomic_fetch_add_explicit(&l->idl->refused, 1, memory_order_relaxed);
	return 1;
}

sg_err sg_policy_metrics(const struct sg_policy *p, struct sg_buf *out)
{
	if (!p)
		return SG_OK;
	int e = sg_buf_appends(out, "# HELP sealguard_identity_requests_limited_total Requests "
	                            "refused with 429 by the per-identity rate limit.\n"
	                            "# TYPE sealguard_identity_requests_limited_total counter\n");
	for (unsigned i = 0; i < p->n; i++)
		if (p->listeners[i].idl) {
			char name[128];
			sg_json_escape(name, sizeof name, p->listeners[i].rp->name);
			e |= sg_buf_printf(
			    out,
			    "sealguard_identity_requests_limited_total{listener=\"%s\"} %llu\n",
			    name,
			    atomic_load_explicit(&p->listeners[i].idl->refused,
			                         memory_order_relaxed));
		}
	return e ? SG_ERR_NOMEM : SG_OK;
}

static enum sg_http_result route_handler(struct sg_http_req *r, void *arg)
{
	const struct policy_route *rt = arg;
	struct preq *q = sg_http_req_auth(r);
	if (!q) {
		/* fail closed: a protected route on a listener without the policy */
		sg_http_resp_problem(r, 500, NULL, "no authorization policy on %s",
		                     sg_http_req_refpoint(r));
		return SG_HTTP_DONE;
	}
	const struct policy_listener *l = q->l;
	if (l->mode == SG_AUTH_BEARER || l->mode == SG_AUTH_MTLS_BEARER) {
		struct sg_policy_decision d;
		json_t *claims = NULL;
		sg_policy_check(l->p, (int)l->mode, sg_http_req_tls_principal(r),
		                sg_http_req_header(r, "authorization"), rt->audience, rt->scope,
		                &claims, &d);
		if (d.status) {
			sg_log_debug("%s %s refused: %d %s (%s)", sg_http_req_refpoint(r),
			             sg_http_req_id(r), d.status, d.cause ? d.cause : "", d.desc);
			answer(r, &d, rt->scope);
			return SG_HTTP_DONE;
		}
		json_decref(q->claims);
		q->claims = claims;
		q->pub.kind = l->mode == SG_AUTH_BEARER ? SG_PRINCIPAL_UE : SG_PRINCIPAL_VAL_SERVER;
		q->pub.claims = claims;
		q->pub.sub = json_string_value(json_object_get(claims, "sub"));
		q->pub.client_id = json_string_value(json_object_get(claims, "client_id"));
		const char *sc = json_string_value(json_object_get(claims, "scope"));
		q->pub.scope = sc ? sc : "";
	} else if (l->mode == SG_AUTH_MTLS && q->pub.kind != SG_PRINCIPAL_SEAL_SERVER) {
		sg_http_resp_problem(r, 403, "UNAUTHORIZED_IDENTITY",
		                     "a client certificate is required");
		return SG_HTTP_DONE;
	}
	if (l->idl && over_identity_rate(r, l, &q->pub))
		return SG_HTTP_DONE;
	return rt->h(r, rt->arg);
}

sg_err sg_policy_route(struct sg_router *rt, const char *method, const char *tmpl,
                       const char *audience, const char *scope, sg_http_handler h, void *arg)
{
	if (!rt || !method || !tmpl || !h)
		return SG_ERR_INVALID;
	struct policy_route *pr = calloc(1, sizeof *pr);
	if (!pr)
		return SG_ERR_NOMEM;
	pr->audience = audience ? strdup(audience) : NULL;
	pr->scope = scope ? strdup(scope) : NULL;
	pr->h = h;
	pr->arg = arg;
	if ((audience && !pr->audience) || (scope && !pr->scope)) {
		free(pr->audience);
		free(pr->scope);
		free(pr);
		return SG_ERR_NOMEM;
	}
	sg_err e = sg_router_add(rt, method, tmpl, route_handler, pr);
	if (e != SG_OK) {
		free(pr->audience);
		free(pr->scope);
		free(pr);
		return e;
	}
	pthread_mutex_lock(&routes_mu);
	pr->next = routes;
	routes = pr;
	pthread_mutex_unlock(&routes_mu);
	return SG_OK;
}

void sg_policy_routes_release(void)
{
	pthread_mutex_lock(&routes_mu);
	struct policy_route *pr = routes;
	routes = NULL;
	pthread_mutex_unlock(&routes_mu);
	while (pr) {
		struct policy_route *n = pr->next;
		free(pr->audience);
		free(pr->scope);
		free(pr);
		pr = n;
	}
}
