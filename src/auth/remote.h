/* auth/remote.h: a resource server's view of identity management (SIM-S) when it may run in
 * another process or host: the JWKS and the revocation list, fetched over SEAL-E with mutual TLS
 * (TS 33.434 §5.1.1, R4) by one dedicated thread, so that no event loop ever waits on it. The
 * thread publishes into the thread-safe key set and the revocation set the workers read, and
 * bumps the verified-token cache whenever something new is revoked.
 *
 * Revocation delay bound: a token revoked at the SIM-S (acknowledged by its revocation
 * endpoint, or a grant revoked by code or refresh-token replay) is refused by this resource
 * server within revocation_poll_ms + the duration of one poll request (client timeout 5 s at
 * worst, a few ms on a LAN). When the revocation list cannot be fetched for longer than
 * sg_idm_remote_stale_ms(), token-protected requests fail closed (503) instead of trusting a
 * stale list. */
#ifndef SG_AUTH_REMOTE_H
#define SG_AUTH_REMOTE_H

#include "auth/jws.h"
#include "base/err.h"
#include "tls/tls.h"

#include <stdbool.h>
#include <stdint.h>

struct sg_idm_remote_conf {
	const char *idm_url;          /* https://host:port of the SIM-S SEAL-E listener */
	struct sg_tls_conf tls;       /* client side: mode mutual, cert, key, ca (crl optional) */
	unsigned revocation_poll_ms;  /* poll period of /oauth2/revocations (≥ 100) */
	unsigned jwks_min_refresh_ms; /* unknown kid: refetch the JWKS at most this often */
};

struct sg_idm_remote;

/* ks and cache (cache may be NULL) are borrowed and must outlive the client; the thread adds
 * and removes keys of ks and bumps cache. Nothing is fetched before sg_idm_remote_start().
 * *out owned by the caller: sg_idm_remote_free(). */
sg_err sg_idm_remote_new(const struct sg_idm_remote_conf *conf, struct sg_jws_keyset *ks,
                         struct sg_jws_cache *cache, struct sg_idm_remote **out, char *err,
                         size_t errlen);
/* Starts the fetching thread (first JWKS and full revocation list at once, retried every
 * 250 ms until they succeed). */
sg_err sg_idm_remote_start(struct sg_idm_remote *r, char *err, size_t errlen);
/* Stops the thread and frees everything. NULL is fine. */
void sg_idm_remote_free(struct sg_idm_remote *r);

/* true when a jti or a grant id (either may be NULL) is on the revocation list. Any thread. */
bool sg_idm_remote_is_revoked(struct sg_idm_remote *r, const char *jti, const char *gid);
/* A token named a kid that the key set lacks: asks the thread to refetch the JWKS, at most once
 * per jwks_min_refresh_ms (the request at hand is refused; the next one sees the new key). */
void sg_idm_remote_kid_miss(struct sg_idm_remote *r);
/* 1 when the JWKS has been fetched and the revocation list is fresh (fetched successfully
 * within sg_idm_remote_stale_ms()): tokens may be accepted. Any thread. */
int sg_idm_remote_ready(struct sg_idm_remote *r);
/* How old the last successful revocation poll may be before tokens are refused (ms). */
unsigned sg_idm_remote_stale_ms(const struct sg_idm_remote *r);

/* Testing hooks (no network): apply a JWKS document or a revocation list document exactly as
 * a fetched one would be applied. */
sg_err sg_idm_remote_apply_jwks(struct sg_idm_remote *r, const char *json, size_t len, char *err,
                                size_t errlen);
sg_err sg_idm_remote_apply_revocations(struct sg_idm_remote *r, const char *json, size_t len,
                                       char *err, size_t errlen);

#endif
