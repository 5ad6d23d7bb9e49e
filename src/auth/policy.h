/* auth/policy.h: the per-reference-point authorization policy (TS 33.434 §5.1.1, R1–R4, I10),
 * enforced once, before any service handler runs, as the listener's pre-handler; and the
 * principal it hands to handlers. A handler never verifies a token or a certificate itself.
 *
 * What each listener demands (from its `auth` in the configuration):
 *   none         nothing (admin, health)
 *   bearer       an access token (RFC 6750) issued by identity management: ES256 signature by
 *                a key of its JWKS, iss, aud = the route's service, exp/iat (≤ 30 s leeway),
 *                the route's scope, client_id, not revoked; no certificate-bound token (cnf)
 *   mtls         a verified client certificate whose SAN is allowed on the listener
 *   mtls+bearer  both, and the token is bound to that very certificate (RFC 8705 cnf.x5t#S256),
 *                which identity management only issues to the VAL server registered for it. */
#ifndef SG_AUTH_POLICY_H
#define SG_AUTH_POLICY_H

#include "base/buf.h"
#include "base/err.h"
#include "http/http.h"

#include <jansson.h>

enum sg_principal_kind {
	SG_PRINCIPAL_ANONYMOUS = 0,
	SG_PRINCIPAL_UE,          /* a VAL user's client (SIM-C): token with sub + val_user_ids */
	SG_PRINCIPAL_VAL_SERVER,  /* a VAL server: certificate + certificate-bound token */
	SG_PRINCIPAL_SEAL_SERVER, /* another SEAL server: certificate only (SEAL-E/X1/X2) */
};

/* Owned by the request (sg_http_req_auth); valid until the response is sent. */
struct sg_principal {
	enum sg_principal_kind kind;
	const char *sub;           /* token sub (UE: the user's stable opaque id), or NULL */
	const char *client_id;     /* token client_id (VAL server: its name), or NULL */
	const char *scope;         /* granted scopes, space-separated, or "" */
	const char *cert_identity; /* the SAN that matched (e.g. "DNS:v2x-app"), or NULL */
	json_t *claims;            /* the verified access token's claims (borrowed), or NULL */
};

/* The principal of a request that passed the policy (never NULL inside a handler of a listener
 * with a policy: anonymous on `auth: none`). */
const struct sg_principal *sg_principal_of(const struct sg_http_req *r);
/* 1 when the space-separated scope list contains scope exactly. */
int sg_principal_has_scope(const struct sg_principal *p, const char *scope);
/* The VAL user id of a UE principal for a VAL service (val_user_ids claim), or NULL. */
const char *sg_principal_val_user_id(const struct sg_principal *p, const char *val_service_id);

/* A service declares, per route, which scope a request needs; the policy checks it (403
 * insufficient_scope) before the handler runs. audience is the service's token audience,
 * e.g. "sealguard:gm". */
sg_err sg_policy_route(struct sg_router *rt, const char *method, const char *tmpl,
                       const char *audience, const char *scope, sg_http_handler h, void *arg);

/* ---- the engine (one per process) ----------------------------------------------------- */

struct sg_conf;
struct sg_conf_refpoint;
struct sg_jws_keyset;
struct sg_jws_cache;
struct sg_idm_remote;
struct sg_tls_principal;

/* The policy of a process: issuer (conf idm.issuer), the SIM-S key set and revocation list
 * fetched from resource.idm_url over SEAL-E (auth/remote.h), the verified-token cache
 * (resource.token_cache_entries; 0 = none) and one pre-handler argument per reference point.
 * conf is borrowed and must outlive the policy. Nothing is fetched before sg_policy_start().
 * *out owned by the caller: sg_policy_free(). */
struct sg_policy;
sg_err sg_policy_new(const struct sg_conf *conf, struct sg_policy **out, char *err, size_t errlen);
/* Starts fetching the JWKS and the revocation list (a thread; never an event loop). */
sg_err sg_policy_start(struct sg_policy *p, char *err, size_t errlen);
void sg_policy_free(struct sg_policy *p);
/* 1 when tokens can be verified now (an issuer is configured and the SIM-S key set is loaded:
 * fetched over SEAL-E, or published by the identity management of this process); 0 while
 * token-protected routes would answer 503. why (may be NULL) says what is missing. */
int sg_policy_ready(const struct sg_policy *p, const char **why);
/* Appends the policy's Prometheus metrics (requests refused by the per-identity rate limit,
 * per listener that has one). */
sg_err sg_policy_metrics(const struct sg_policy *p, struct sg_buf *out);

/* The listener pre-handler (net/server.h sg_pre_handler) with its argument for reference point
 * rp (owned by p; NULL when rp is not one of the policy's configuration). It attaches the
 * principal to every request; on auth mtls / mtls+bearer it refuses (403 UNAUTHORIZED_IDENTITY)
 * a certificate whose SAN is not in allowed_identities when the list is set. Tokens are
 * verified by the sg_policy_route wrapper, with the route's audience and scope; routes added
 * with sg_router_add directly are public (health, identity management's own endpoints). */
int sg_policy_pre(struct sg_http_req *r, void *listener_arg);
void *sg_policy_listener_arg(struct sg_policy *p, const struct sg_conf_refpoint *rp);

/* The engine's parts, for tests and benchmarks (owned by p). */
struct sg_jws_keyset *sg_policy_keyset(struct sg_policy *p);
struct sg_idm_remote *sg_policy_remote(struct sg_policy *p);

/* The decision of a token check, as the route wrapper answers it (RFC 6750 §3). */
struct sg_policy_decision {
	int status;        /* 0 = allowed; else 401, 403, 500 or 503 */
	const char *error; /* "invalid_token", "insufficient_scope", or NULL (no token: RFC 6750
	                      §3.1 says no error code then) */
	const char *cause; /* ProblemDetails cause: INVALID_TOKEN, INSUFFICIENT_SCOPE,
	                      CERTIFICATE_MISMATCH, SERVICE_UNAVAILABLE, ... */
	char desc[160];    /* error_description: never contains the token, '"' or '\' */
};

/* The pure decision for one request: the listener's auth mode, the TLS principal (may be NULL),
 * the Authorization header value (may be NULL), the route's audience and scope. On success
 * *claims (may be NULL) receives a new reference to the verified claims (read-only, shared).
 * Never logs the token. */
void sg_policy_check(struct sg_policy *p, int auth_mode, const struct sg_tls_principal *tp,
                     const char *authorization, const char *audience, const char *scope,
                     json_t **claims, struct sg_policy_decision *d);
/* Frees what sg_policy_route allocated for every router (at process exit; tests). */
void sg_policy_routes_release(void);

#endif
