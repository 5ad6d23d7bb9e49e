/* net/server.h: the server: worker threads with one event loop each, and listeners (one per
 * reference point), each with its own TLS endpoint, limits, pre-handler (the auth/ policy) and
 * router. Handshakes are non-blocking; a slow client never stalls a loop. */
#ifndef SG_NET_SERVER_H
#define SG_NET_SERVER_H

#include "base/buf.h"
#include "base/err.h"
#include "http/http.h"
#include "tls/tls.h"

#include <stddef.h>

/* Safe defaults are applied by sg_limits_default(); every field is configurable. */
struct sg_limits {
	size_t max_header_bytes;  /* request line + headers; over it: 431 (default 16 KiB) */
	size_t max_body_bytes;    /* over it: 413 (default 1 MiB) */
	unsigned max_connections; /* per listener, all workers (default 20000) */
	unsigned max_handshakes_per_address; /* per listener: connections of one client address
	                                      * (IPv6: its /64) still in the TLS handshake
	                                      * (default 256) */
	unsigned handshake_timeout_ms;       /* TLS handshake must finish in (default 10 s) */
	unsigned header_timeout_ms;          /* whole request head must arrive in (default 10 s) */
	unsigned body_timeout_ms;            /* body must arrive in (default 30 s) */
	unsigned idle_timeout_ms;            /* keep-alive idle (default 60 s) */
	unsigned h2_max_streams;             /* SETTINGS_MAX_CONCURRENT_STREAMS (default 100) */
	unsigned requests_per_second;        /* per listener: requests of one client address (IPv6:
	                                      * its /64) per second; over it 429 with Retry-After.
	                                      * 0 = no limit (default 1000) */
	unsigned request_burst;              /* requests one address may make at once (default
	                                      * 2 x requests_per_second) */
	unsigned handshakes_per_second;      /* TLS listeners: new connections (each a TLS
	                                      * handshake) of one client address per second; over
	                                      * it closed before the handshake. 0 = no limit
	                                      * (default 200) */
	unsigned handshake_burst;            /* connections one address may open at once (default
	                                      * 2 x handshakes_per_second) */
	/* the same per authenticated identity (token sub or client_id, certificate SAN), on the
	 * routes that establish one (auth/policy.c): 0 = no limit (default) */
	unsigned requests_per_second_per_identity, request_burst_per_identity;
};
void sg_limits_default(struct sg_limits *l);

/* Runs before routing on every request of a listener. Returns SG_HTTP_DONE with the response
 * already set to refuse the request, or -1 to let the router dispatch it. */
typedef int (*sg_pre_handler)(struct sg_http_req *r, void *arg);

struct sg_listener_conf {
	const char *name;          /* reference point, e.g. "SEAL-UU" (copied) */
	const char *bind;          /* "127.0.0.1:9443", "[::1]:9443" (copied) */
	struct sg_tls_server *tls; /* NULL = plain HTTP/1.1 (admin only); borrowed */
	struct sg_router *router;  /* borrowed */
	sg_pre_handler pre;        /* may be NULL */
	void *pre_arg;
	struct sg_limits limits;
	int access_log; /* 1 = one JSON line per request */
};

struct sg_server;

/* workers = number of event loop threads (0 = number of cores). */
sg_err sg_server_new(unsigned workers, struct sg_server **out);
/* Binds now (so a busy port fails early, with the error in err); serves once running. */
sg_err sg_server_add_listener(struct sg_server *s, const struct sg_listener_conf *lc, char *err,
                              size_t errlen);
/* The bound port of listener `name` (useful with port 0), or -1. */
int sg_server_listener_port(const struct sg_server *s, const char *name);
/* Runs until sg_server_stop() or SIGTERM/SIGINT; then stops accepting, lets in-flight requests
 * finish (up to drain_ms), and returns. SIGHUP calls the reload hook. */
sg_err sg_server_run(struct sg_server *s);
void sg_server_stop(struct sg_server *s); /* async-signal-safe; any thread */
void sg_server_set_drain_ms(struct sg_server *s, unsigned drain_ms);
/* A callback run every period_ms on the main thread (CRL/cert reload checks, cache upkeep). */
sg_err sg_server_add_timer(struct sg_server *s, unsigned period_ms, void (*fn)(void *), void *arg);
void sg_server_free(struct sg_server *s);

/* Prometheus text exposition of the server's metrics: connections (open, accepted, refused),
 * TLS handshakes (full, resumed, failed), requests by listener and status, latency histogram. */
sg_err sg_server_metrics(struct sg_server *s, struct sg_buf *out);

#endif
