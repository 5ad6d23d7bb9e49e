/* client/valsrv.h: the VAL-server SDK: how a VAL server reaches SEAL servers over SEAL-S
 * (TS 33.434 §5.1.1, R3): mutual TLS with its certificate (T profile), then an OAuth 2.0 access
 * token on every request (I10), obtained with the client credentials grant at the SIM-S token
 * endpoint on SEAL-S, client authentication tls_client_auth (RFC 8705 §2.1.2: form field
 * client_id = the VAL server's name, the certificate's SAN is its identity) and bound to that
 * certificate (cnf.x5t#S256, RFC 8705 §3).
 *
 * The token endpoint is given, or discovered from the issuer's metadata (OIDC Discovery §4,
 * RFC 8705 §5 mtls_endpoint_aliases.token_endpoint). The token is kept in memory and renewed
 * before it expires (a tenth of its lifetime, at most 60 s, ahead), and once more when a
 * resource server answers 401 invalid_token (revoked, keys rotated). Tokens are wiped when
 * dropped and never logged. Not thread-safe: one struct sg_valsrv per thread. */
#ifndef SG_CLIENT_VALSRV_H
#define SG_CLIENT_VALSRV_H

#include "base/err.h"
#include "http/client.h"

#include <stddef.h>
#include <stdint.h>

struct sg_valsrv_conf {
	const char *name;      /* the VAL server's registered name = OAuth client_id */
	const char *cert;      /* its client certificate (PEM), SAN = its registered identity */
	const char *key;       /* its private key (PEM) */
	const char *ca;        /* trust anchors for the SEAL servers' certificates (PEM) */
	const char *crl;       /* CRLs checked for their chains (T5); NULL: none */
	const char *token_url; /* the token endpoint on SEAL-S (https), or NULL to discover */
	const char *issuer;    /* the SIM-S issuer, for discovery when token_url is NULL */
	const char *scope;     /* scopes to ask for (NULL: what the VAL server is registered for) */
	const char *resource;  /* RFC 8707 audience of the token, e.g. "sealguard:gm" (NULL: all) */
	int http2;             /* offer HTTP/2 (R6: recommended) */
	long timeout_ms;       /* per HTTP request; 0 = 30000 */
};

struct sg_valsrv;

/* Creates the client (no network yet); strings are copied. *out owned by the caller:
 * sg_valsrv_free(). */
sg_err sg_valsrv_new(const struct sg_valsrv_conf *conf, struct sg_valsrv **out, char *err,
                     size_t errlen);
/* Wipes the token and frees everything. NULL is fine. */
void sg_valsrv_free(struct sg_valsrv *v);

/* The token endpoint in use (after discovery or the first token), or NULL. Owned by v. */
const char *sg_valsrv_token_endpoint(const struct sg_valsrv *v);

/* A valid access token: the cached one, or a new one when there is none or it expires within
 * the renewal margin. *token is owned by v and valid until the next call on v; *expires_at_ms
 * (may be NULL) gets its expiry, *scope (may be NULL) the granted scope (owned by v).
 * Errors: SG_ERR_DENIED when the SIM-S refuses (RFC 6749 §5.2 error in err), SG_ERR_TLS / IO
 * for the transport, SG_ERR_PROTO for a response outside RFC 6749 §5.1. */
sg_err sg_valsrv_token(struct sg_valsrv *v, const char **token, int64_t *expires_at_ms,
                       const char **scope, char *err, size_t errlen);
/* Drops the cached token (the next call gets a new one). */
void sg_valsrv_forget(struct sg_valsrv *v);

/* Sends method url with the token (Authorization: Bearer) over mutual TLS. content_type (may
 * be NULL when there is no body) is sent with body. A 401 with error="invalid_token" gets one
 * retry with a new token. *resp owned by the caller: sg_http_response_free(). */
sg_err sg_valsrv_request(struct sg_valsrv *v, const char *method, const char *url,
                         const char *content_type, const void *body, size_t len,
                         struct sg_http_response *resp, char *err, size_t errlen);

/* The sealguard audience of a SEAL API URL by its path (ss-gm -> sealguard:gm; ss-ipp, oauth2
 * -> sealguard:idm; ss-kpp, ss-kir -> sealguard:km; sdd- -> sealguard:sdd), or NULL. */
const char *sg_valsrv_audience_of_url(const char *url);

#endif
