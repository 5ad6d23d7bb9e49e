/* sdd/sdd.h: the SEALDD server (TS 23.433; TS 29.548 SDD_Transmission `sdd-trans/v1`;
 * TS 33.434 Rel-18, G6, D1-D3):
 *   - SEALDD-S (on an mtls+bearer listener serving sdd): request-trans and connection status
 *     subscriptions for VAL servers (certificate + certificate-bound token, scope sdd);
 *   - SEALDD-UU signalling (on a bearer listener serving sdd): flow establishment, read and
 *     release for SEALDD clients (`sdd-flows/v1`, docs/sdd-protocol.md);
 *   - SEALDD-UU user plane: its own TLS 1.3 listener (sdd.data_bind) with framed channels
 *     authenticated by the access token, relayed to the VAL server over mutual TLS.
 * Transmissions and connection status subscriptions are stored (store/sdd.c) before they are
 * acknowledged and loaded at start, so they survive a restart or a crash; flows and data
 * channels are bound to live TLS connections and live in memory (a restart drops them and
 * clients re-establish). The auth/ policy verifies HTTP tokens; the data plane verifies its
 * channel tokens with the same policy (sg_policy_check). */
#ifndef SG_SDD_SDD_H
#define SG_SDD_SDD_H

#include "base/err.h"

#include <stddef.h>

struct sg_buf;
struct sg_conf;
struct sg_conf_refpoint;
struct sg_router;
struct sg_policy;
struct sg_sdd;

#define SG_SDD_AUDIENCE "sealguard:sdd" /* token audience of SEALDD (docs/scopes.md) */
#define SG_SDD_SCOPE    "sdd"           /* scope every SEALDD operation requires (I8a) */

/* Creates the SEALDD server and binds its data endpoint (conf sdd.data_bind) with the TLS
 * profile of the first bearer reference point serving sdd (SEALDD-UU = SEAL-UU), narrowed to
 * TLS 1.3. The relay to VAL servers uses this server's own certificate (resource.client_cert).
 * conf and policy are borrowed and must outlive it. *out owned by the caller: sg_sdd_free(). */
sg_err sg_sdd_new(const struct sg_conf *conf, struct sg_policy *policy, struct sg_sdd **out,
                  char *err, size_t errlen);
/* Adds the routes that belong on rp: sdd-trans on mtls+bearer (SEALDD-S), sdd-flows on bearer
 * (SEALDD-UU); none elsewhere. */
sg_err sg_sdd_mount(struct sg_sdd *s, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                    char *err, size_t errlen);
/* Starts the data plane (its own thread and event loop) and the notification sender. */
sg_err sg_sdd_start(struct sg_sdd *s, char *err, size_t errlen);
/* The bound data port. */
int sg_sdd_data_port(const struct sg_sdd *s);
/* Appends the data-plane metrics (Prometheus text): channels and flows open, transmissions,
 * bytes relayed each way, URLLC duplicates dropped, notifications sent and failed. NULL ok
 * (appends nothing). Any thread. */
sg_err sg_sdd_metrics(struct sg_sdd *s, struct sg_buf *out);
/* Re-reads the data endpoint's certificate, key, CA and CRL and the relay's client certificate,
 * CA and CRL when one of the files changed (cheap stat() checks otherwise), as every listener
 * does: new data channels and relays use them; on failure the old ones stay and it is logged.
 * Any thread; `sealguard serve` calls it every second. */
void sg_sdd_tls_reload(struct sg_sdd *s);
/* Stops the threads (open channels and relays are closed) and frees everything. NULL ok. */
void sg_sdd_free(struct sg_sdd *s);

#endif
