/* idm/idm.h: the SIM-S, the OpenID Connect provider of TS 33.434 §5.2 / Annex A: discovery,
 * JWKS, authorization endpoint with the login page, token endpoint (authorization code + PKCE,
 * refresh, client credentials over mutual TLS), userinfo, introspection, revocation, the
 * revocation list for resource servers, ss-ipp (TS 29.549), and its signing keys.
 * Endpoint paths and claim names: docs/scopes.md. */
#ifndef SG_IDM_IDM_H
#define SG_IDM_IDM_H

#include "base/err.h"

#include <stddef.h>
#include <stdint.h>

struct sg_conf;
struct sg_conf_refpoint;
struct sg_router;
struct sg_store;
struct sg_idm;

/* Creates the SIM-S: opens its store pool on conf->store_path, loads (creating when absent) the
 * pepper and the master key of conf->state_dir, loads the active signing key or creates one,
 * and loads the registry caches (clients, VAL servers, users, keys). conf is borrowed and must
 * outlive the SIM-S. *out owned by the caller: sg_idm_free(). */
sg_err sg_idm_new(const struct sg_conf *conf, struct sg_idm **out, char *err, size_t errlen);
/* Adds the routes that belong on this reference point: discovery and JWKS everywhere; the UE
 * endpoints (authorize, login, token, userinfo, revoke) on server-authenticated listeners; the
 * token endpoint alias, revoke, introspection and ss-ipp on mutual-TLS listeners with bearer
 * auth (SEAL-S); introspection and the revocation list on mutual-TLS-only ones (SEAL-E). */
sg_err sg_idm_mount(struct sg_idm *idm, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                    char *err, size_t errlen);
/* Timer upkeep (call every ~500 ms from one thread): reloads the registry caches when the
 * store's generation changed (the CLI edits a running server's store), retires signing keys,
 * picks up revocations, expires login transactions and throttle entries. Never blocks: the
 * store work runs on the pool. */
void sg_idm_tick(struct sg_idm *idm);
/* Stops the pool (finishing queued work) and frees everything. NULL is fine. */
void sg_idm_free(struct sg_idm *idm);

/* ---- signing keys (also used by `sealguard keys`) ---------------------------------------- */

/* Creates a new ES256 signing key in the store and makes it the active one: its private key is
 * sealed with master (AES-256-GCM, AAD "sigkey:" + kid); the previously active key stops
 * signing and stays published until retire_after_ms from now (the longest lifetime of a token
 * it signed). kid_out (may be NULL) receives the kid (SG_JWS_KID_MAX + 1 bytes). */
sg_err sg_idm_key_create(struct sg_store *st, const unsigned char master[32],
                         int64_t retire_after_ms, char *kid_out, char *err, size_t errlen);
/* How long a rotated-out key must stay in the JWKS for this configuration (ms):
 * max(access, ID token lifetime) + the verification leeway. */
int64_t sg_idm_key_retire_after_ms(const struct sg_conf *conf);

#endif
