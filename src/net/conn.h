/* net/conn.h (private to net/ and http/): workers, listeners and connections as the HTTP codecs
 * see them. A connection lives on exactly one worker's loop; nothing here is shared between
 * threads except the listener's connection count and the server's drain flag. */
#ifndef SG_NET_CONN_H
#define SG_NET_CONN_H

#include "base/addrtab.h"
#include "base/ratelimit.h"
#include "net/server.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <http_parser.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define SG_MAX_LISTENERS 16
#define SG_MAX_WORKERS   64
#define SG_HIST_BUCKETS  12
#define SG_RBUF_SIZE     16384

extern const double sg_hist_bounds[SG_HIST_BUCKETS]; /* seconds */

/* Per worker, per listener counters: written by one thread only (relaxed load+store, no locked
 * instructions), summed by sg_server_metrics. */
struct sg_wstats {
	_Atomic uint64_t accepted, refused, open;
	/* requests over the per-address rate limit; let through untracked (table full) */
	_Atomic uint64_t limited, untracked;
	_Atomic uint64_t codes[600];
	_Atomic uint64_t hist[SG_HIST_BUCKETS + 1];
	_Atomic uint64_t dur_us_sum, count;
};
#define SG_CNT_ADD(x, n)                                                                           \
	atomic_store_explicit(&(x), atomic_load_explicit(&(x), memory_order_relaxed) + (n),        \
	                      memory_order_relaxed)

struct sg_listener {
	char *name, *bind;
	struct sg_tls_server *tls;
	struct sg_router *router;
	sg_pre_handler pre;
	void *pre_arg;
	struct sg_limits limits;
	int access_log;
	int idx, port;
	int fds[SG_MAX_WORKERS];
	_Atomic unsigned nconns; /* all workers: max_connections is per listener */
	pthread_mutex_t hmu;     /* guards hs */
	struct sg_addrtab hs;    /* TLS handshakes in progress per client address (all workers) */
	struct sg_ratelimit rl;  /* request rate per client address (all workers) */
	int rl_on;               /* limits.requests_per_second > 0 */
	struct sg_ratelimit hrl; /* new TLS connections per client address (all workers) */
	int hrl_on;              /* a TLS listener and limits.handshakes_per_second > 0 */
	char name_json[128];     /* JSON-escaped name for logs/metrics */
};

struct sg_conn;

struct sg_worker {
	struct sg_server *srv;
	unsigned idx;
	pthread_t th;
	struct event_base *base;
	struct event *accept_ev[SG_MAX_LISTENERS];
	struct event *drain_ev, *flush_ev;
	/* libevent common timeouts (O(1) queues), per listener: handshake, header, body, idle */
	struct timeval to[SG_MAX_LISTENERS][4];
	struct sg_wstats stats[SG_MAX_LISTENERS];
	struct sg_buf alog;    /* access-log lines waiting for the next flush */
	struct sg_conn *conns; /* doubly linked, for drain */
	unsigned nconns;
	int draining;
	uint64_t req_seq;
	/* one output buffer handed from connection to connection: a keep-alive request takes it,
	 * and gives it back once its response is written, so idle connections hold no buffer
	 * and busy ones do not malloc/free one per response */
	char *spare_out;
	size_t spare_cap;
	unsigned char rbuf[SG_RBUF_SIZE];
};

enum sg_conn_timer {
	SG_TO_HANDSHAKE = 0,
	SG_TO_HEADER,
	SG_TO_BODY,
	SG_TO_IDLE,
	SG_TO_NONE,
	SG_TO_LINGER
};

struct sg_http_req;

struct sg_conn {
	struct sg_worker *w;
	struct sg_listener *l;
	struct sg_conn *prev, *next;
	SSL *ssl; /* NULL: plain */
	int fd;
	int proto; /* 0 handshake, 11, 20, -1 lingering close */
	unsigned closing : 1, close_after : 1, want_write : 1, reading_off : 1, in_io : 1,
	    freed_pending : 1, linger : 1;
	int timer_kind;
	unsigned keyed : 1;      /* addr_key is set (an IPv4 or IPv6 client) */
	unsigned hs_counted : 1; /* counted in l->hs under addr_key until the handshake ends */
	uint8_t addr_key[16];    /* the client's address key (sg_addr_key) */
	struct event rev, wev, tmr;
	struct sg_tls_principal *principal; /* NULL for plain / unauthenticated */
	char peer[48];
	/* output not yet written */
	char *out;
	size_t olen, ooff, ocap;
	/* HTTP/1.1: input not yet parsed (only while a request is pending), parser, request */
	char *in;
	size_t ilen, icap;
	http_parser hp;
	struct sg_http_req *cur;
	struct sg_http_req *areq; /* the request whose handler went async */
	size_t lingered;
	size_t head_bytes;
	/* HTTP/2 */
	void *h2; /* nghttp2_session* */
	unsigned h2_active;
	/* requests whose handler went async and are still attached */
	unsigned pending;
};

/* conn.c */
/* key: the client's address key (sg_addr_key), NULL for another family; hs_counted: the
 * connection was counted in l->hs under it (G4), released when the handshake ends or the
 * connection goes. */
void sg_conn_accepted(struct sg_worker *w, struct sg_listener *l, int fd, const struct sockaddr *sa,
                      socklen_t salen, const uint8_t *key, int hs_counted);
int sg_conn_out(struct sg_conn *c, const void *p, size_t n); /* 0 or -1 (nomem) */
void sg_conn_flush(struct sg_conn *c);
void sg_conn_close(struct sg_conn *c);
void sg_conn_set_timer(struct sg_conn *c, int kind);
void sg_conn_drain(struct sg_conn *c);
/* Called after an async request finished on c: flush, resume reading. */
void sg_conn_resume(struct sg_conn *c);
void sg_worker_free_spare(struct sg_worker *w);

/* h1.c */
void sg_h1_init(struct sg_conn *c);
int sg_h1_input(struct sg_conn *c, const char *p, size_t n); /* -1: close now */
void sg_h1_send(struct sg_conn *c, struct sg_http_req *r);   /* serialize r's response */
void sg_h1_free(struct sg_conn *c);
int sg_h1_idle(const struct sg_conn *c);
void sg_h1_resume(struct sg_conn *c);

/* h2.c: TS 29.549 §6.3: HTTP/2 when ALPN selected "h2" (RFC 9113 §3.2) */
int sg_h2_init(struct sg_conn *c);
int sg_h2_input(struct sg_conn *c, const char *p, size_t n);
int sg_h2_pump(struct sg_conn *c); /* session output -> c->out; -1: close */
void sg_h2_send(struct sg_conn *c, struct sg_http_req *r);
void sg_h2_goaway(struct sg_conn *c);
void sg_h2_free(struct sg_conn *c);
int sg_h2_done(const struct sg_conn *c); /* nothing more to do: close */

/* server.c */
void sg_server_log_request(struct sg_conn *c, struct sg_http_req *r);

#endif
