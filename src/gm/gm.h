/* gm/gm.h: the group management server (TS 23.434 §10.3; TS 29.549 SS_GroupManagement,
 * `ss-gm/v1`): VAL group documents created, replaced, modified (merge patch) and deleted by VAL
 * servers over SEAL-S, read by them and, over SEAL-UU (GM-UU), by the UEs that are members.
 * The auth/ policy has checked the token (audience sealguard:gm, scope seal:gm) and, on SEAL-S,
 * the certificate binding before a handler runs; gm/ applies only its business rules
 * (docs/gm.md). Documents persist in the store (store/gm.c); reads come from an in-memory
 * snapshot kept coherent with the store's group-document generation. */
#ifndef SG_GM_GM_H
#define SG_GM_GM_H

#include "base/err.h"

#include <stddef.h>

struct sg_conf;
struct sg_conf_refpoint;
struct sg_router;
struct sg_gm;

#define SG_GM_AUDIENCE "sealguard:gm" /* token audience of ss-gm (docs/scopes.md) */
#define SG_GM_SCOPE    "seal:gm"      /* scope every ss-gm route requires */

/* Creates the group management server: its store pool on conf's store and a first load of the
 * group documents and of the VAL servers' services. conf is borrowed and must outlive it.
 * *out owned by the caller: sg_gm_free(). */
sg_err sg_gm_new(const struct sg_conf *conf, struct sg_gm **out, char *err, size_t errlen);
/* Adds the ss-gm routes that belong on this reference point (one whose services include "gm"):
 * on a bearer listener (SEAL-UU) the two reads, for UEs; on an mtls+bearer listener (SEAL-S)
 * all six operations, for VAL servers. On SEAL-E (auth mtls) only the read of group documents,
 * for SEAL servers: the KM server learns group membership there (SEAL-X1, K5). */
sg_err sg_gm_mount(struct sg_gm *gm, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                   char *err, size_t errlen);
/* Timer upkeep (call every ~500 ms from one thread): reloads the snapshots when the store's
 * group-document or registry generation changed. Never blocks: the work runs on the pool. */
void sg_gm_tick(struct sg_gm *gm);
/* Stops the pool (finishing queued work) and frees everything. NULL is fine. */
void sg_gm_free(struct sg_gm *gm);

#endif
