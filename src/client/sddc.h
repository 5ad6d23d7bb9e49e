/* client/sddc.h: the SEALDD client (SEALDD-C is in-process, R5; TS 23.433): flow establishment
 * over SEALDD-UU signalling (`sdd-flows/v1`, HTTPS with the access token, R1) and the SEALDD-UU
 * user plane (TLS 1.3 data channels, token in the first frame, framed VAL data; two redundant
 * channels for URLLC with duplicate elimination). docs/sdd-protocol.md. One sg_sddc is used by
 * one thread; its calls block (with timeouts) and keep reading while they wait to write, so a
 * peer echoing back never deadlocks a sender. */
#ifndef SG_CLIENT_SDDC_H
#define SG_CLIENT_SDDC_H

#include "base/err.h"

#include <stddef.h>

struct sg_sddc_conf {
	const char *url;   /* SEALDD-UU base URL, e.g. https://localhost:9443 */
	const char *ca;    /* trust anchors for the SEALDD server's certificate (required) */
	const char *crl;   /* CRLs checked for its chain (T5), one for every CA of it; NULL: none */
	const char *token; /* access token, aud sealguard:sdd, scope sdd (borrowed) */
	long timeout_ms;   /* per operation; default 10000 */
	/* bytes of a flow's data held for sg_sddc_recv before the session stops reading its
	 * channel (backpressure: the SEALDD server then holds the VAL server's data back); default
	 * 4 MiB. A queue may pass it by one read (64 KiB). */
	size_t rx_queue_max;
	/* the name (or IP address) the data endpoint's certificate must carry (R1); default: the
	 * url's host, the identity of the SEALDD server the signalling went to. A client following
	 * a relocation sets the target's host here (sg_sddc_relocated_to). */
	const char *server_name;
};

struct sg_sddc_flow {
	char id[32]; /* sddFlowId (base64url, 22 characters) */
	char val_service_id[256];
	char trans_type[16]; /* "regular" | "urllc" */
	char host[256];      /* data endpoint (ddServerConnInfo) */
	unsigned port;
	long lifetime_s;
};

/* SEALDD-UU signalling. On refusal the error names the HTTP status and the ProblemDetails
 * cause, e.g. "404 TRANSMISSION_NOT_REQUESTED: ...". */
sg_err sg_sddc_flow_open(const struct sg_sddc_conf *c, const char *val_service_id,
                         struct sg_sddc_flow *out, char *err, size_t errlen);
sg_err sg_sddc_flow_get(const struct sg_sddc_conf *c, const char *flow_id, struct sg_sddc_flow *out,
                        char *err, size_t errlen);
sg_err sg_sddc_flow_release(const struct sg_sddc_conf *c, const char *flow_id, char *err,
                            size_t errlen);

/* A data session: nchan TLS 1.3 channels (1, or 2 for URLLC redundancy) to host:port, each
 * authenticated with c->token (AUTH frame). *out owned by the caller: sg_sddc_close(). */
struct sg_sddc;
sg_err sg_sddc_connect(const struct sg_sddc_conf *c, const char *host, unsigned port,
                       unsigned nchan, struct sg_sddc **out, char *err, size_t errlen);
/* Attaches the flow on every channel and waits until the SEALDD server's relay to the VAL server
 * is up (ATTACHED). A refusal (UNKNOWN_FLOW, BUSY, VAL_SERVER_UNREACHABLE, ...) is an error
 * (SG_ERR_DENIED with the server's reason). Only a channel the flow is attached on is skipped:
 * after the flow's END (or an ERROR that detached it) the server is asked again, and for a
 * flow it has released answers UNKNOWN_FLOW. With two channels (URLLC), a refusal on one while
 * the other carries the flow fails the attach with that refusal, but the flow goes on over the
 * other channel (a later attach asks again); ERROR ALREADY_ATTACHED is no refusal. */
#define SG_SDDC_SEND_ONLY                                                                          \
	1u /* this session only sends: what the VAL server sends back                              \
	    * waits in the SEALDD server for a session that receives */
sg_err sg_sddc_attach(struct sg_sddc *s, const char *flow_id, unsigned flags, char *err,
                      size_t errlen);
/* Sends len bytes on the flow (split into DATA frames, on every channel: up to 64 KiB is one
 * frame, each frame in as few TLS records as its bytes allow). Returns once the data is handed
 * to TLS; data arriving meanwhile is queued for sg_sddc_recv, up to rx_queue_max: a peer that
 * echoes must be read from, or a long send waits for it and times out as a full socket would.
 * SG_ERR_PROTO with the reason once the flow ended (END, or an ERROR or refused attach that
 * left it on no channel), or when its uplink sequence numbers (up to 2^64 - 1) cannot number the
 * frames. */
sg_err sg_sddc_send(struct sg_sddc *s, const char *flow_id, const void *data, size_t len, char *err,
                    size_t errlen);
/* sg_sddc_send that also tells how many bytes from the start of data it handed to TLS as whole
 * DATA frames (*taken), on success and on error. Those still go out after an error (on every
 * live channel, also while sg_sddc_close drains): a retry goes on from data + *taken, since
 * sending them again would deliver them twice. */
sg_err sg_sddc_send_ex(struct sg_sddc *s, const char *flow_id, const void *data, size_t len,
                       size_t *taken, char *err, size_t errlen);
/* Receives up to cap bytes of the flow: waits up to timeout_ms for the first byte.
 * *n = 0 with SG_ERR_TIMEOUT when nothing came; SG_ERR_PROTO with the reason when the flow or
 * the channel ended (END, an ERROR or refused attach that left the flow on no channel, token
 * expiry, server gone); what came before an END is delivered first. */
sg_err sg_sddc_recv(struct sg_sddc *s, const char *flow_id, void *buf, size_t cap, long timeout_ms,
                    size_t *n, char *err, size_t errlen);
/* Renews the channel authentication with a fresh token of the same user (before exp). */
sg_err sg_sddc_reauth(struct sg_sddc *s, const char *token, char *err, size_t errlen);
/* Sends raw bytes on channel 0 (tests: malformed frames): SG_OK once the socket took them all
 * within the timeout. */
sg_err sg_sddc_send_raw(struct sg_sddc *s, const void *p, size_t n, char *err, size_t errlen);
/* Bytes of the flow queued for sg_sddc_recv (0 for a flow not attached). */
size_t sg_sddc_queued(const struct sg_sddc *s, const char *flow_id);
/* Duplicates dropped by the receive side (URLLC). */
unsigned long long sg_sddc_duplicates(const struct sg_sddc *s);
/* Bytes of memory the session holds for output not yet on its sockets. */
size_t sg_sddc_out_memory(const struct sg_sddc *s);
void sg_sddc_close(struct sg_sddc *s);

/* SEALDD-E relocation (docs/sdd-protocol.md §7): when reason (the error of sg_sddc_recv,
 * sg_sddc_send or sg_sddc_attach) says the flow ended with END "FLOW_RELOCATED: HOST:PORT",
 * returns 1 with the target SEALDD server's data endpoint in host/port. The client then
 * re-attaches there: sg_sddc_connect(c, host, port, ...) with the same token and
 * c->server_name = host (the target is a server of its own name, which the source named over
 * its authenticated channel), and sg_sddc_attach() with the same sddFlowId. Otherwise
 * returns 0. */
int sg_sddc_relocated_to(const char *reason, char *host, size_t hostlen, unsigned *port);

#endif
