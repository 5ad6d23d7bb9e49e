/* sdd/internal.h: state shared by the SEALDD server's parts (not a public interface):
 *   server.c  lifecycle and the registry snapshot;
 *   api.c     SEALDD-S sdd-trans, connection status notifications, SEALDD-UU signalling;
 *   plane.c   the SEALDD-UU user plane (data channels) and the SEALDD-S relay.
 *
 * Threads: HTTP handlers run on the net/ workers and only touch the tables under `mu`; the
 * user plane (SEALDD-UU data channels and the SEALDD-S relays to VAL servers) runs on one
 * thread with its own event loop, which alone owns every bufferevent; connection status
 * notifications are POSTed by NOTIF_WORKERS threads (libcurl, mutual TLS). A released or expired
 * flow is only marked under `mu`; the data plane's sweep (every SWEEP_MS) tears it down and frees
 * it, so a flow pointer held by the data plane stays valid between sweeps. */
#ifndef SG_SDD_INTERNAL_H
#define SG_SDD_INTERNAL_H

#include "sdd/sdd.h"

#include "auth/policy.h"
#include "base/addrtab.h"
#include "base/ratelimit.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/rand.h"
#include "conf/conf.h"
#include "http/client.h"
#include "http/http.h"
#include "sdd/proto.h"
#include "store/store.h"
#include "tls/tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SWEEP_MS           250          /* release/expiry/token-expiry granularity */
#define TOKEN_RECHECK_MS   1000         /* revocation re-check of each channel's token */
#define HWM                (1u << 20)   /* stop reading the other side above this much queued */
#define MAX_IO             (256u << 10) /* per read/write of a bufferevent (libevent: 16 KiB) */
#define AUTH_TIMEOUT_S     10           /* handshake + AUTH frame must arrive in */
#define VAL_TIMEOUT_S      10           /* relay connect + handshake; relay write stall */
#define DISPATCH_CALLBACKS 32  /* the data plane's event loop polls again after this many */
#define MAX_ATTACH         256 /* flows per channel */
#define MAX_FLOWS          100000
#define MAX_FLOWS_USER     256
#define REGISTRY_MS        500   /* the registry snapshot follows the store's generation */
#define SUBSC_SWEEP_MS     10000 /* expired subscriptions are deleted within this */

/* Connection status notifications (TS 29.548 ConnStatusNotif; bounds: TS 33.434 Rel-18 G6, G4;
 * docs/sdd-protocol.md §1) */
#define NOTIF_TRIES         4     /* first try + up to 3 retries: transport failure, 5xx, 429 */
#define NOTIF_BACKOFF_MS    250   /* before the second try, doubling */
#define NOTIF_WORKERS       4     /* delivery threads; one VAL server occupies at most one */
#define NOTIF_MAX_QUEUED    4096  /* pending in all (those in delivery included) */
#define NOTIF_MAX_PER_OWNER 256   /* pending per VAL server (subscription owner) */
#define NOTIF_DROP_LOG_MS   10000 /* drops are summarized in one warning at most this often */

/* ---- state ---- */

/* A transmission requested by a VAL server over SEALDD-S (TS 29.548 RequestTrans). */
struct trans {
	struct trans *next;
	char *svc;       /* valServiceId: flows of this VAL service are relayed to tgt */
	char *client_id; /* the requesting VAL server (token client_id) */
	char *identity;  /* its certificate SAN: the relay demands it from the VAL endpoint */
	char *val_user_id, *val_ue_id; /* valTargetId, when set */
	int urllc;
	struct sg_sdd_target tgt;
};

/* A connection status subscription (TS 29.548 ConnStatusSubsc). */
struct subsc {
	struct subsc *next;
	char id[32];
	char *owner;    /* VAL server client_id */
	char *identity; /* its certificate identity (SAN) at creation: only it may use this one */
	int64_t expires_ms; /* wall clock (its expTime): gone from then on */
	json_t *body;
};
void sdd_subsc_free(struct subsc *x); /* and what it holds; NULL is fine */

struct chan;
struct pconn;

/* Runtime state of a flow, owned by the data plane (tgt/identity/... set at creation). */
struct frt {
	struct sg_sdd *s;
	struct sg_sdd_flow *f;
	struct sg_sdd_target tgt;
	char *identity, *owner, *val_user_id;
	struct pconn *vc; /* the relay's TLS connection (plane.c) */
	int vstate;       /* 0 none, 1 connecting, 2 up */
	int ended;
	int up_blocked, down_blocked;
	int attached_once; /* a channel attached it: its end counts in flow_ends (plane.c) */
	int from_trans;    /* created under this server's transmission of its VAL service (not
	                    * relocated from a peer): relayed only while that is unchanged */
	size_t up_lwm;     /* up_blocked until its output is at most this (plane.c, G4) */
	int corked;        /* small uplink payloads queued, to be written as one record (plane.c) */
	struct chan *ch[2];
	int rx[2]; /* 0: the channel only sends (ATTACH seq bit 0): no downlink to it */
	int nch;
	struct sg_sdd_dedup up;
	uint64_t down_seq;
};

struct chan {
	struct sg_sdd *s;
	struct chan *prev, *next;
	struct pconn *pc; /* the channel's TLS connection (plane.c) */
	char *sub;
	char *token;                   /* secret: wiped on change and close */
	int64_t exp_ms, next_check_ms; /* its token's exp; its next revocation re-check */
	int handshaken, authed, closing;
	int out_full; /* its output passed hwm: its input waits until that drains to hwm/4 */
	size_t hwm;   /* its output's high-water mark: its user's share (plane.c, G4) */
	size_t rhwm;  /* the high-water mark of the relays it feeds: its user's relay share */
	struct chan *uprev, *unext; /* ring of its user's authenticated, open channels (plane.c) */
	int unauth;           /* counted in s->unauth under addr until the first AUTH_OK (G4) */
	uint8_t addr[16];     /* the client's address key (sg_addr_key) */
	struct timeval stall; /* its write stall bound: sdd.channel_stall_s */
	struct frt **att;
	size_t natt, capatt;
	size_t hot; /* the index in att of the flow chan_flow found last */
	char peer[64];
};

/* The VAL servers of the registry (name = client_id -> VAL services), sorted by name; immutable
 * once built, swapped whole under mu by the refresh job (a store pool thread). */
/* The END reasons of a flow on the data plane (docs/sdd-protocol.md §4), counted by
 * sealguard_sdd_flow_ends_total; the last counts any other. */
#define SDD_N_ENDS 9
extern const char *const SDD_END_REASONS[SDD_N_ENDS];

struct sg_sdd {
	const struct sg_conf *conf;
	struct sg_policy *policy;
	pthread_mutex_t mu;
	struct sg_sdd_flowtab *flows;
	struct trans *trans;
	struct subsc *subs;
	size_t nsubs;
	/* data plane */
	struct sg_tls_server *dtls;
	struct sg_tls_client *val_tls; /* the relay's (SEALDD-S user plane), reloaded (T5) */
	evutil_socket_t lfd;
	int port;
	char host[256];
	pthread_t th;
	int started;
	atomic_int stop;
	int stopping;             /* data plane thread only */
	int64_t accept_resume_ms; /* accept failed (EMFILE...): the listener waits until then */
	struct event_base *base;
	struct evconnlistener *lis;
	struct event *tick;
	struct evdns_base *dns;
	struct chan *chans;
	size_t nchans;
	struct sg_addrtab unauth;      /* channels not yet authenticated, per client address */
	struct sg_ratelimit chan_rate; /* new channels per client address and second */
	atomic_ullong refused_chans, refused_addr, refused_user, refused_rate; /* (G4) */
	atomic_ullong chans_stalled; /* closed: no write progress in channel_stall_s (G4) */
	atomic_ullong accept_failed; /* accept() failures of the data endpoint (EMFILE...) */
	atomic_ullong out_queued;    /* output queued for all channels, sampled by the tick */
	atomic_ullong relay_queued;  /* uplink output queued in the relays of attached flows */
	/* notifications: sdd_notify_locked queues (with mu held, then nmu: never take mu while
	 * holding nmu), NOTIF_WORKERS threads deliver (api.c) */
	pthread_t nth[NOTIF_WORKERS];
	int nstarted;            /* workers started */
	pthread_mutex_t nmu;     /* nq, ndrop_* */
	pthread_cond_t ncv;      /* nq changed or stop (broadcast); CLOCK_MONOTONIC */
	struct sg_sdd_notifq nq; /* bounded per VAL server and in all (proto.h) */
	atomic_ullong notif_sent, notif_failed;
	atomic_ullong notif_dropped;       /* refused by a bound of nq */
	atomic_ullong notif_cancelled;     /* the subscription was deleted before delivery */
	unsigned long long ndrop_unlogged; /* drops since the last warning */
	int64_t ndrop_next_log_ms;
	atomic_ullong dup_dropped;
	atomic_ullong flow_ends[SDD_N_ENDS]; /* flows ended on the data plane, by END reason */
	/* data-plane counters for /metrics (sg_sdd_metrics) */
	atomic_ullong bytes_up, bytes_down; /* VAL payload relayed: client->VAL, VAL->client */
	atomic_ullong chans_open;
	/* registry snapshot (VAL servers and their VAL services), refreshed off the loops */
	struct sg_store_pool *pool;
	struct sg_store_vals *vals; /* under mu */
	atomic_int vals_busy;
	int64_t next_vals_ms; /* data plane thread only */
	/* the sweep of expired subscriptions (sdd_subsc_sweep), one at a time */
	atomic_int subsc_sweeping;
	int64_t next_subsc_sweep_ms; /* data plane thread only */
	uint64_t subsc_swept_gen;    /* ... the registry generation the last sweep saw */
	struct sdd_ddc *ddc;         /* SEALDD-E: DD context relocation (ddc.c) */
};

/* Called with mu held (takes nmu): queues the event's notification for every matching
 * subscription; what a bound of nq refuses is dropped and counted. */
void sdd_notify_locked(struct sg_sdd *s, const struct frt *rt, const char *event);
/* A delivery worker (NOTIF_WORKERS of them); returns once stop is set and nmu broadcast. */
void *sdd_notif_main(void *arg);
void sdd_vals_tick(struct sg_sdd *s);
/* From the data plane's tick, for a periodic job on the store pool: 1 when period_ms has passed
 * since the last time (*next_ms is moved on) and no such job is in flight (*busy set: the
 * job's completion clears it), else 0. */
int sdd_job_due(const struct sg_sdd *s, int64_t *next_ms, int64_t period_ms, atomic_int *busy);
/* From the data plane's tick, every SUBSC_SWEEP_MS and when the registry changed: when a
 * subscription has expired, or its VAL server was removed from the registry, queues its
 * deletion from the store and then from the table (api.c); never waits for the store. */
void sdd_subsc_sweep(struct sg_sdd *s);
/* 0 when the VAL server (client_id) is registered and enabled, else -1 with *why. */
int sdd_vals_registered_locked(const struct sg_sdd *s, const char *client_id, const char **why);
int sdd_vals_serves_locked(const struct sg_sdd *s, const char *client_id, const char *svc,
                           const char **why);
sg_err sdd_vals_refresh(struct sg_store *st, void *arg);
void sdd_frt_free(struct frt *rt);
void *sdd_dp_main(void *arg);
void sdd_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                   void *arg);
void sdd_chan_free(struct chan *c);
void sdd_accept_error_cb(struct evconnlistener *l, void *arg);
void sdd_tick_cb(evutil_socket_t fd, short what, void *arg);
void sdd_trans_free(struct trans *t);
/* SEALDD-E (ddc.c, docs/sdd-protocol.md §7): created in sg_sdd_new, its relocation thread
 * started in sg_sdd_start, freed (thread joined) in sg_sdd_free; routes on auth mtls. */
struct sdd_ddc;
sg_err sdd_ddc_new(struct sg_sdd *s, char *err, size_t errlen);
sg_err sdd_ddc_start(struct sg_sdd *s, char *err, size_t errlen);
void sdd_ddc_free(struct sg_sdd *s);
sg_err sdd_ddc_mount(struct sg_sdd *s, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                     char *err, size_t errlen);
/* Loads the stored transmissions and subscriptions into the tables (api.c; at start). */
sg_err sdd_state_load(struct sg_sdd *s, struct sg_store *st, char *err, size_t errlen);

#endif
