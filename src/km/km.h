/* km/km.h: the SEAL key management server, SKM-S (TS 33.434 §5.3, §5.8; TS 29.549
 * SS_KMParametersProvisioning `ss-kpp/v1`, SS_KeyInfoRetrieval `ss-kir/v1`):
 *   KM-UU (SEAL-UU, UEs, bearer seal:km): SKM-C key registration and the SEAL KM Request /
 *     Response (docs/km-protocol.md);
 *   KM-S (SEAL-S, VAL servers, mutual TLS + certificate-bound token): SKM-C key registration,
 *     key provisioning (ss-kpp, seal:kp + SKeyProv, K3), key information retrieval (ss-kir,
 *     seal:km, K4), key revocation.
 * Key material leaves only as a JWE (ECDH-ES + A256GCM) to the requester's registered SKM-C
 * public key (R2); at rest it is sealed with the master key (STATE/secrets/master.key or
 * SEALGUARD_MASTER_KEY), AAD = record id + version; every provisioning, retrieval and
 * revocation is audited (without key bytes) in the same transaction, before the answer. */
#ifndef SG_KM_KM_H
#define SG_KM_KM_H

#include "base/err.h"

#include <stddef.h>

struct sg_conf;
struct sg_conf_refpoint;
struct sg_router;
struct sg_km;

#define SG_KM_AUDIENCE "sealguard:km" /* token audience of key management (docs/scopes.md) */
#define SG_KM_SCOPE    "seal:km"      /* KM-UU requests, ss-kir, SKM-C key registration */
#define SG_KP_SCOPE    "seal:kp"      /* ss-kpp and revocation (with SKeyProv) */

/* Creates the key management server: the master key (created when absent), its store pool on
 * conf's store. conf is borrowed and must outlive it. *out owned by the caller: sg_km_free(). */
sg_err sg_km_new(const struct sg_conf *conf, struct sg_km **out, char *err, size_t errlen);
/* Adds the routes that belong on this reference point (one whose services include "km"): on a
 * bearer listener (SEAL-UU as KM-UU) the UE routes; on an mtls+bearer listener (SEAL-S as KM-S)
 * the VAL-server routes. Others get none. */
sg_err sg_km_mount(struct sg_km *km, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                   char *err, size_t errlen);
/* Timer upkeep (call every ~500 ms from one thread): follows the registry generation so that
 * a disabled or removed VAL server's cached authorization is dropped. Never blocks. */
void sg_km_tick(struct sg_km *km);
/* Stops the pool (finishing queued work), wipes the master key and frees. NULL is fine. */
void sg_km_free(struct sg_km *km);

#endif
