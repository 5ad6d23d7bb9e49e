/* sdd/server.c: the SEALDD server (see sdd.h; docs/sdd-protocol.md).
 *
 * Threads: HTTP handlers run on the net/ workers and only touch the tables under `mu`; the
 * user plane (SEALDD-UU data channels and the SEALDD-S relays to VAL servers) runs on one
 * thread with its own event loop, which alone owns every bufferevent; connection status
 * notifications are POSTed by a third thread (libcurl, mutual TLS). A released or expired flow
 * is only marked under `mu`; the data plane's sweep (every SWEEP_MS) tears it down and frees it,
 * so a flow pointer held by the data plane stays valid between sweeps. */
#include "sdd/sdd.h"

#include "auth/policy.h"
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

#define SWEEP_MS         250          /* release/expiry/token-expiry granularity */
#define TOKEN_RECHECK_MS 1000         /* revocation re-check of every channel token */
#define HWM              (1u << 20)   /* stop reading the other side above this much queued */
#define LWM              (256u << 10) /* resume below this */
#define CHUNK            (32u << 10)  /* downlink DATA frame size */
#define MAX_IO           (256u << 10) /* per read/write of a bufferevent (libevent: 16 KiB) */
#define AUTH_TIMEOUT_S   10           /* handshake + AUTH frame must arrive in */
#define VAL_TIMEOUT_S    10           /* relay connect + handshake; relay write stall */
#define MAX_CHANNELS     10000
#define MAX_ATTACH       256 /* flows per channel */
#define MAX_FLOWS        100000
#define MAX_FLOWS_USER   256
#define MAX_SUBSC        10000
#define NOTIF_TRIES      4   /* first try + 3 retries, backoff 250 ms doubling */
#define REGISTRY_MS      500 /* the registry snapshot follows the store's generation */

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
	char *owner; /* VAL server client_id */
	json_t *body;
};

struct chan;

/* Runtime state of a flow, owned by the data plane (tgt/identity/... set at creation). */
struct frt {
	struct sg_sdd *s;
	struct sg_sdd_flow *f;
	struct sg_sdd_target tgt;
	char *identity, *owner, *val_user_id;
	struct bufferevent *vb;
	int vstate; /* 0 none, 1 connecting, 2 up */
	int ended;
	int up_blocked, down_blocked;
	struct chan *ch[2];
	int rx[2]; /* 0: the channel only sends (ATTACH seq bit 0): no downlink to it */
	int nch;
	struct sg_sdd_dedup up;
	uint64_t down_seq;
};

struct chan {
	struct sg_sdd *s;
	struct chan *prev, *next;
	struct bufferevent *bev;
	char *sub;
	char *token; /* secret: wiped on change and close */
	int64_t exp_ms, next_check_ms;
	int handshaken, authed, closing;
	struct frt **att;
	size_t natt, capatt;
	char peer[64];
};

/* The VAL servers of the registry (name = client_id -> VAL services), sorted by name; immutable
 * once built, swapped whole under mu by the refresh job (a store pool thread). */
struct notif {
	struct notif *next;
	char *url;
	char *body;
	char sid[32];
};

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
	SSL_CTX *val_ctx;
	evutil_socket_t lfd;
	int port;
	char host[256];
	pthread_t th;
	int started;
	atomic_int stop;
	int stopping; /* data plane thread only */
	struct event_base *base;
	struct evconnlistener *lis;
	struct event *tick;
	struct evdns_base *dns;
	struct chan *chans;
	size_t nchans;
	int64_t next_token_check;
	/* notifications */
	pthread_t nth;
	int nstarted;
	pthread_mutex_t nmu;
	pthread_cond_t ncv;
	struct notif *nq, **nqtail;
	atomic_ullong notif_sent, notif_failed;
	atomic_ullong dup_dropped;
	/* data-plane counters for /metrics (sg_sdd_metrics) */
	atomic_ullong bytes_up, bytes_down; /* VAL payload relayed: client->VAL, VAL->client */
	atomic_ullong chans_open;
	/* registry snapshot (VAL servers and their VAL services), refreshed off the loops */
	struct sg_store_pool *pool;
	struct sg_store_vals *vals; /* under mu */
	atomic_int vals_busy;
	int64_t next_vals_ms; /* data plane thread only */
};

/* ---- notifications (TS 29.548 ConnStatusNotif over mutual TLS; 204 expected) ---- */

static void notif_enqueue_locked(struct sg_sdd *s, const struct subsc *sub, json_t *reports)
{
	json_t *n = json_pack("{s:s, s:O}", "subscriptionId", sub->id, "reports", reports);
	char *text = n ? json_dumps(n, JSON_COMPACT) : NULL;
	json_decref(n);
	struct notif *q = calloc(1, sizeof *q);
	const char *url = json_string_value(json_object_get(sub->body, "notifUri"));
	if (!text || !q || !url || !(q->url = strdup(url))) {
		free(text);
		if (q)
			free(q->url);
		free(q);
		atomic_fetch_add(&s->notif_failed, 1);
		return;
	}
	q->body = text;
	snprintf(q->sid, sizeof q->sid, "%s", sub->id);
	pthread_mutex_lock(&s->nmu);
	*s->nqtail = q;
	s->nqtail = &q->next;
	pthread_cond_signal(&s->ncv);
	pthread_mutex_unlock(&s->nmu);
}

static int str_in_array(const json_t *a, const char *s)
{
	size_t i;
	const json_t *e;
	json_array_foreach(a, i, e) if (json_is_string(e) &&
	                                strcmp(json_string_value(e), s) == 0) return 1;
	return 0;
}

/* Called with mu held: every subscription of the transmission's VAL server that matches. */
static void notify_locked(struct sg_sdd *s, const struct frt *rt, const char *event)
{
	for (struct subsc *sub = s->subs; sub; sub = sub->next) {
		if (strcmp(sub->owner, rt->owner) != 0)
			continue;
		const json_t *b = sub->body;
		if (!str_in_array(json_object_get(b, "events"), event))
			continue;
		const char *svc = json_string_value(json_object_get(b, "valServiceId"));
		if (svc && strcmp(svc, rt->f->val_service_id) != 0)
			continue;
		const json_t *tu = json_object_get(b, "valTgtUe");
		const char *uid = json_string_value(json_object_get(tu, "valUserId"));
		if (tu && (!uid || strcmp(uid, rt->val_user_id) != 0))
			continue;
		json_t *rep =
		    json_pack("{s:s, s:{s:s}, s:s}", "event", event, "valTgtUe", "valUserId",
		              rt->val_user_id, "valServiceId", rt->f->val_service_id);
		if (rep && strcmp(event, "ESTABLISHED") == 0) {
			int64_t left = (rt->f->expires_ms - sg_now_ms()) / 1000;
			json_object_set_new(rep, "connEstData",
			                    json_pack("{s:o, s:I}", "ddServerConnInfo",
			                              sg_sdd_conninfo(s->host, (unsigned)s->port),
			                              "comLifetime",
			                              (json_int_t)(left > 0 ? left : 0)));
		}
		json_t *reports = json_array();
		if (rep && reports && json_array_append_new(reports, rep) == 0) {
			rep = NULL;
			notif_enqueue_locked(s, sub, reports);
		}
		json_decref(rep);
		json_decref(reports);
	}
}

static void *notif_main(void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_conf *c = s->conf;
	struct sg_http_client_conf hc = {
	    .tls = {.mode = SG_TLS_MUTUAL,
	            .cert = c->resource.client_cert,
	            .key = c->resource.client_key,
	            .ca = c->resource.ca},
	    .connect_timeout_ms = 3000,
	    .timeout_ms = 5000,
	    .max_response_bytes = 64 * 1024,
	};
	char err[256];
	struct sg_http_client *cl = NULL;
	if (sg_http_client_new(&hc, &cl, err, sizeof err) != SG_OK)
		sg_log_error("sdd: notification client: %s (notifications will fail)", err);
	for (;;) {
		pthread_mutex_lock(&s->nmu);
		while (!s->nq && !atomic_load(&s->stop))
			pthread_cond_wait(&s->ncv, &s->nmu);
		struct notif *q = s->nq;
		if (q) {
			s->nq = q->next;
			if (!s->nq)
				s->nqtail = &s->nq;
		}
		pthread_mutex_unlock(&s->nmu);
		if (!q)
			break;
		static const char *const H[] = {"Content-Type: application/json", NULL};
		int ok = 0;
		long last = 0;
		for (int i = 0; cl && i < NOTIF_TRIES && !ok && !atomic_load(&s->stop); i++) {
			if (i)
				usleep((useconds_t)(250000u << (i - 1)));
			struct sg_http_response resp = {0};
			err[0] = '\0';
			if (sg_http_client_request(cl, "POST", q->url, H, q->body, strlen(q->body),
			                           &resp, err, sizeof err) == SG_OK) {
				last = resp.status;
				ok = resp.status == 204;
			}
			sg_http_response_free(&resp);
		}
		if (ok) {
			atomic_fetch_add(&s->notif_sent, 1);
		} else {
			atomic_fetch_add(&s->notif_failed, 1);
			sg_log_warn(
			    "sdd: notification for subscription %s not delivered after %d tries "
			    "(last status %ld%s%s); %llu failed so far",
			    q->sid, NOTIF_TRIES, last, err[0] ? ": " : "", err,
			    (unsigned long long)atomic_load(&s->notif_failed));
		}
		free(q->url);
		free(q->body);
		free(q);
	}
	sg_http_client_free(cl);
	return NULL;
}

/* ---- registry snapshot (`sealguard valserver add NAME --val-service ID`) ---- */

/* Reloads the VAL servers when the registry generation moved. Runs on a store pool thread (and
 * once in sg_sdd_new), never on the data plane or HTTP loops. */
static sg_err vals_refresh(struct sg_store *st, void *arg)
{
	struct sg_sdd *s = arg;
	uint64_t gen = 0;
	sg_err e = sg_store_generation(st, &gen);
	if (e != SG_OK)
		return e;
	pthread_mutex_lock(&s->mu);
	int same = s->vals && sg_store_vals_gen(s->vals) == gen;
	pthread_mutex_unlock(&s->mu);
	if (same)
		return SG_OK;
	struct sg_store_vals *v = NULL;
	if ((e = sg_store_vals_load(st, gen, &v)) != SG_OK)
		return e;
	pthread_mutex_lock(&s->mu);
	struct sg_store_vals *old = s->vals;
	s->vals = v;
	pthread_mutex_unlock(&s->mu);
	sg_store_vals_unref(old);
	return SG_OK;
}

static sg_err vals_job(struct sg_store *st, void *arg)
{
	sg_err e = vals_refresh(st, arg);
	if (e != SG_OK)
		sg_log_warn("sdd: registry refresh failed, keeping the previous snapshot: %s",
		            sg_store_last_error());
	return e;
}

static void vals_job_done(sg_err rc, void *arg)
{
	(void)rc;
	struct sg_sdd *s = arg;
	atomic_store(&s->vals_busy, 0);
}

/* From the data plane's tick: queues a refresh (one at a time), never waits for the store. */
static void vals_tick(struct sg_sdd *s)
{
	int64_t now = sg_now_ms();
	if (!s->pool || now < s->next_vals_ms)
		return;
	s->next_vals_ms = now + REGISTRY_MS;
	int expected = 0;
	if (!atomic_compare_exchange_strong(&s->vals_busy, &expected, 1))
		return;
	if (sg_store_pool_submit_read(s->pool, vals_job, s, vals_job_done, s, NULL) != SG_OK)
		atomic_store(&s->vals_busy, 0);
}

/* Called with mu held: 0 when VAL server client_id is registered, enabled and serves svc;
 * else -1 with *why set. */
static int vals_serves_locked(const struct sg_sdd *s, const char *client_id, const char *svc,
                              const char **why)
{
	const struct sg_store_valserver *v = sg_store_vals_find(s->vals, client_id);
	if (!v || v->disabled) {
		*why = "the VAL server is not registered (sealguard valserver add)";
		return -1;
	}
	for (size_t i = 0; i < v->n_val_services; i++)
		if (strcmp(v->val_services[i], svc) == 0)
			return 0;
	*why = "the VAL server is not registered for this VAL service (valserver --val-service)";
	return -1;
}

/* ---- data plane: frames out ---- */

static void send_frame(struct bufferevent *bev, uint8_t type, const uint8_t *flow, uint64_t seq,
                       const void *p, size_t n)
{
	uint8_t hdr[SG_SDD_HDR_LEN];
	sg_sdd_frame_header(hdr, type, (uint32_t)n, seq, flow);
	struct evbuffer *out = bufferevent_get_output(bev);
	evbuffer_add(out, hdr, sizeof hdr);
	if (n)
		evbuffer_add(out, p, n);
}

static void send_text(struct bufferevent *bev, uint8_t type, const uint8_t *flow, const char *code,
                      const char *detail)
{
	char m[256];
	int n = snprintf(m, sizeof m, "%s%s%s", code, detail && *detail ? ": " : "",
	                 detail ? detail : "");
	send_frame(bev, type, flow, 0, m,
	           n < 0                   ? 0
	           : (size_t)n >= sizeof m ? sizeof m - 1
	                                   : (size_t)n);
}

/* ---- data plane: flows ---- */

static void chan_check_resume(struct chan *c);
static void chan_read_cb(struct bufferevent *bev, void *arg);
static void val_read_cb(struct bufferevent *bev, void *arg);

static int frt_nrx(const struct frt *rt)
{
	int n = 0;
	for (int i = 0; i < rt->nch; i++)
		n += rt->rx[i];
	return n;
}

static void frt_detach_chan(struct frt *rt, struct chan *c)
{
	for (int i = 0; i < rt->nch; i++)
		if (rt->ch[i] == c) {
			rt->nch--;
			rt->ch[i] = rt->ch[rt->nch];
			rt->rx[i] = rt->rx[rt->nch];
			rt->ch[rt->nch] = NULL;
			break;
		}
	for (size_t i = 0; i < c->natt; i++)
		if (c->att[i] == rt) {
			c->att[i] = c->att[--c->natt];
			break;
		}
	if (frt_nrx(rt) == 0 && rt->vb)
		bufferevent_disable(rt->vb, EV_READ); /* nobody to deliver to: backpressure */
}

/* Ends a flow: END to its channels, relay closed, flow marked released (the sweep frees it).
 * Call without mu. */
static void frt_end(struct frt *rt, const char *reason)
{
	if (rt->ended)
		return;
	rt->ended = 1;
	struct sg_sdd *s = rt->s;
	while (rt->nch) {
		struct chan *c = rt->ch[0];
		send_text(c->bev, SG_SDD_END, rt->f->id, reason, NULL);
		frt_detach_chan(rt, c);
		chan_check_resume(c);
	}
	if (rt->vb) {
		bufferevent_free(rt->vb);
		rt->vb = NULL;
	}
	pthread_mutex_lock(&s->mu);
	if (!rt->f->released)
		rt->f->released = 1;
	if (rt->vstate == 2)
		notify_locked(s, rt, "RELEASED");
	pthread_mutex_unlock(&s->mu);
	rt->vstate = 0;
	sg_log_info("sdd: flow of VAL service %s ended: %s", rt->f->val_service_id, reason);
}

static void frt_free(struct frt *rt)
{
	if (!rt)
		return;
	if (rt->vb)
		bufferevent_free(rt->vb);
	free(rt->identity);
	free(rt->owner);
	free(rt->val_user_id);
	free(rt);
}

/* Uplink: VAL data from a channel to the relay. */
/* in holds the frame's payload (len bytes) at its front, the header already drained: the
 * payload is moved (evbuffer chains, no copy) to the relay, or drained when it is a duplicate. */
static void frt_uplink(struct frt *rt, uint64_t seq, struct evbuffer *in, size_t len)
{
	if (!sg_sdd_dedup_accept(&rt->up, seq)) {
		atomic_fetch_add(&rt->s->dup_dropped, 1); /* URLLC: the other copy arrived first */
		evbuffer_drain(in, len);
		return;
	}
	if (!rt->vb || !len) {
		evbuffer_drain(in, len);
		return;
	}
	struct evbuffer *out = bufferevent_get_output(rt->vb);
	evbuffer_remove_buffer(in, out, len);
	atomic_fetch_add_explicit(&rt->s->bytes_up, len, memory_order_relaxed);
	if (evbuffer_get_length(out) > HWM)
		rt->up_blocked = 1; /* the channel stops reading until the relay drains */
}

/* Downlink: relay bytes to every attached channel (both, for URLLC) as DATA frames. */
static void val_read_cb(struct bufferevent *bev, void *arg)
{
	struct frt *rt = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t buf[CHUNK];
	while (frt_nrx(rt) && evbuffer_get_length(in)) {
		for (int i = 0; i < rt->nch; i++)
			if (rt->rx[i] &&
			    evbuffer_get_length(bufferevent_get_output(rt->ch[i]->bev)) > HWM) {
				rt->down_blocked = 1;
				bufferevent_disable(bev, EV_READ);
				return;
			}
		rt->down_seq++;
		if (frt_nrx(rt) == 1) {
			/* one receiver: the bytes move from the relay to the channel without a copy
			 */
			size_t n = evbuffer_get_length(in);
			n = n > CHUNK ? CHUNK : n;
			for (int i = 0; i < rt->nch; i++)
				if (rt->rx[i]) {
					uint8_t hdr[SG_SDD_HDR_LEN];
					sg_sdd_frame_header(hdr, SG_SDD_DATA, (uint32_t)n,
					                    rt->down_seq, rt->f->id);
					struct evbuffer *out =
					    bufferevent_get_output(rt->ch[i]->bev);
					evbuffer_add(out, hdr, sizeof hdr);
					evbuffer_remove_buffer(in, out, n);
				}
			atomic_fetch_add_explicit(&rt->s->bytes_down, n, memory_order_relaxed);
			continue;
		}
		int n = evbuffer_remove(in, buf, sizeof buf); /* URLLC: a copy for each channel */
		if (n <= 0)
			break;
		atomic_fetch_add_explicit(&rt->s->bytes_down, (unsigned)n, memory_order_relaxed);
		for (int i = 0; i < rt->nch; i++)
			if (rt->rx[i])
				send_frame(rt->ch[i]->bev, SG_SDD_DATA, rt->f->id, rt->down_seq,
				           buf, (size_t)n);
	}
	if (!frt_nrx(rt))
		bufferevent_disable(bev, EV_READ);
}

static void val_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct frt *rt = arg;
	if (!rt->up_blocked)
		return;
	rt->up_blocked = 0;
	for (int i = 0; i < rt->nch; i++)
		chan_check_resume(rt->ch[i]);
}

static void send_attached(struct frt *rt, struct chan *c)
{
	send_frame(c->bev, SG_SDD_ATTACHED, rt->f->id, rt->up.top + 1, NULL, 0);
}

static void val_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct frt *rt = arg;
	if (what & BEV_EVENT_CONNECTED) {
		/* SEALDD-S user plane (R3): the chain was verified by the profile; the identity
		 * must be the certificate SAN of the VAL server that requested the transmission */
		SSL *ssl = bufferevent_openssl_get_ssl(bev);
		struct sg_tls_principal p;
		int good = ssl && SSL_get_verify_result(ssl) == X509_V_OK &&
		           sg_tls_principal_from_ssl(ssl, &p) == SG_OK;
		if (good) {
			good = p.authenticated && sg_tls_principal_has_san(&p, rt->identity);
			sg_tls_principal_clear(&p);
		}
		if (!good) {
			sg_log_warn(
			    "sdd: VAL server endpoint %s:%u does not present %s: relay refused",
			    rt->tgt.host, rt->tgt.port, rt->identity);
			frt_end(rt, "VAL_SERVER_IDENTITY");
			return;
		}
		struct timeval wt = {VAL_TIMEOUT_S, 0};
		bufferevent_set_timeouts(bev, NULL, &wt);
		rt->vstate = 2;
		pthread_mutex_lock(&rt->s->mu);
		notify_locked(rt->s, rt, "ESTABLISHED");
		pthread_mutex_unlock(&rt->s->mu);
		for (int i = 0; i < rt->nch; i++)
			send_attached(rt, rt->ch[i]);
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (frt_nrx(rt))
			bufferevent_enable(bev, EV_READ);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		if (rt->vstate == 2 && evbuffer_get_length(bufferevent_get_input(bev)))
			val_read_cb(bev, rt); /* what the VAL server sent before closing */
		const char *why = rt->vstate == 2 ? (what & BEV_EVENT_TIMEOUT ? "VAL_SERVER_STALLED"
		                                                              : "VAL_SERVER_CLOSED")
		                                  : "VAL_SERVER_UNREACHABLE";
		frt_end(rt, why);
	}
}

static int is_ip_literal(const char *h)
{
	unsigned char b[16];
	return evutil_inet_pton(AF_INET, h, b) == 1 || evutil_inet_pton(AF_INET6, h, b) == 1;
}

static int frt_connect(struct frt *rt)
{
	struct sg_sdd *s = rt->s;
	SSL *ssl = SSL_new(s->val_ctx);
	if (!ssl)
		return -1;
	if (!is_ip_literal(rt->tgt.host))
		SSL_set_tlsext_host_name(ssl, rt->tgt.host);
	rt->vb = bufferevent_openssl_socket_new(s->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (!rt->vb) {
		SSL_free(ssl);
		return -1;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(rt->vb, 1);
	bufferevent_setcb(rt->vb, val_read_cb, val_write_cb, val_event_cb, rt);
	bufferevent_set_max_single_read(rt->vb, MAX_IO);
	bufferevent_set_max_single_write(rt->vb, MAX_IO);
	bufferevent_setwatermark(rt->vb, EV_WRITE, LWM, 0);
	bufferevent_setwatermark(rt->vb, EV_READ, 0, HWM);
	struct timeval t = {VAL_TIMEOUT_S, 0};
	bufferevent_set_timeouts(rt->vb, &t, &t);
	rt->vstate = 1;
	if (bufferevent_socket_connect_hostname(rt->vb, s->dns, AF_UNSPEC, rt->tgt.host,
	                                        (int)rt->tgt.port) != 0)
		return -1;
	return 0;
}

/* ---- data plane: channels ---- */

static void chan_free(struct chan *c)
{
	struct sg_sdd *s = c->s;
	while (c->natt)
		frt_detach_chan(c->att[0], c);
	if (c->prev)
		c->prev->next = c->next;
	else if (s->chans == c)
		s->chans = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nchans--;
	atomic_fetch_sub_explicit(&s->chans_open, 1, memory_order_relaxed);
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->token) {
		OPENSSL_cleanse(c->token, strlen(c->token));
		free(c->token);
	}
	free(c->sub);
	free(c->att);
	free(c);
}

static void chan_close_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	chan_free(arg);
}

static void chan_close_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	chan_free(arg);
}

/* A channel-level error: ERROR frame, flows detached (they live on), close once flushed. */
static void chan_fail(struct chan *c, const char *code, const char *detail)
{
	if (c->closing)
		return;
	c->closing = 1;
	sg_log_info("sdd: data channel %s closed: %s%s%s", c->peer, code, detail ? ": " : "",
	            detail ? detail : "");
	while (c->natt)
		frt_detach_chan(c->att[0], c);
	send_text(c->bev, SG_SDD_ERROR, NULL, code, detail);
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_setcb(c->bev, NULL, chan_close_write_cb, chan_close_event_cb, c);
	struct timeval t = {2, 0};
	bufferevent_set_timeouts(c->bev, NULL, &t);
	bufferevent_enable(c->bev, EV_WRITE);
}

static int chan_blocked(const struct chan *c)
{
	for (size_t i = 0; i < c->natt; i++)
		if (c->att[i]->up_blocked)
			return 1;
	return 0;
}

static void chan_check_resume(struct chan *c)
{
	if (c->closing || chan_blocked(c))
		return;
	bufferevent_enable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) >= SG_SDD_HDR_LEN)
		chan_read_cb(c->bev, c);
}

static struct frt *chan_flow(struct chan *c, const uint8_t *id)
{
	for (size_t i = 0; i < c->natt; i++)
		if (CRYPTO_memcmp(c->att[i]->f->id, id, SG_SDD_FLOW_ID_LEN) == 0)
			return c->att[i];
	return NULL;
}

/* I10 on the data channel: the same checks as a SEALDD-UU request (ES256 by the SIM-S, iss,
 * aud sealguard:sdd, scope sdd, exp, client_id, not revoked, not certificate-bound).
 * Returns 0 with *sub_out/exp set, else -1 with d filled. */
static int token_check(struct sg_sdd *s, const char *token, char **sub_out, int64_t *exp_ms,
                       struct sg_policy_decision *d)
{
	size_t n = strlen(token);
	char *authz = malloc(n + 8);
	if (!authz) {
		memset(d, 0, sizeof *d);
		d->status = 500;
		snprintf(d->desc, sizeof d->desc, "out of memory");
		return -1;
	}
	memcpy(authz, "Bearer ", 7);
	memcpy(authz + 7, token, n + 1);
	json_t *claims = NULL;
	sg_policy_check(s->policy, SG_AUTH_BEARER, NULL, authz, SG_SDD_AUDIENCE, SG_SDD_SCOPE,
	                &claims, d);
	OPENSSL_cleanse(authz, n + 7);
	free(authz);
	if (d->status)
		return -1;
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	json_int_t exp = json_integer_value(json_object_get(claims, "exp"));
	int rc = -1;
	if (!sub || !*sub) {
		d->status = 401;
		snprintf(d->desc, sizeof d->desc, "the token names no user (sub)");
	} else if ((int64_t)exp * 1000 <= sg_now_ms()) {
		d->status = 401;
		snprintf(d->desc, sizeof d->desc, "token expired");
	} else {
		*exp_ms = (int64_t)exp * 1000;
		*sub_out = strdup(sub);
		rc = *sub_out ? 0 : -1;
	}
	json_decref(claims);
	return rc;
}

static void chan_auth(struct chan *c, const struct sg_sdd_frame *f)
{
	char *token = malloc(f->len + 1);
	if (!token) {
		chan_fail(c, "INTERNAL", "out of memory");
		return;
	}
	memcpy(token, f->payload, f->len);
	token[f->len] = '\0';
	for (size_t i = 0; i < f->len; i++)
		if (f->payload[i] <= 0x20 || f->payload[i] >= 0x7f) {
			OPENSSL_cleanse(token, f->len);
			free(token);
			chan_fail(c, "UNAUTHENTICATED", "malformed token");
			return;
		}
	struct sg_policy_decision d;
	char *sub = NULL;
	int64_t exp = 0;
	if (token_check(c->s, token, &sub, &exp, &d) != 0) {
		OPENSSL_cleanse(token, f->len);
		free(token);
		chan_fail(c, d.status == 503 ? "SERVICE_UNAVAILABLE" : "UNAUTHENTICATED", d.desc);
		return;
	}
	if (c->authed && strcmp(sub, c->sub) != 0) {
		/* a channel is bound to one user for its whole life */
		OPENSSL_cleanse(token, f->len);
		free(token);
		free(sub);
		chan_fail(c, "USER_MISMATCH", "a channel carries the flows of one user only");
		return;
	}
	if (c->token) {
		OPENSSL_cleanse(c->token, strlen(c->token));
		free(c->token);
	}
	c->token = token;
	free(c->sub);
	c->sub = sub;
	c->exp_ms = exp;
	c->authed = 1;
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	send_frame(c->bev, SG_SDD_AUTH_OK, NULL, (uint64_t)(exp / 1000), NULL, 0);
}

static void chan_attach(struct chan *c, const struct sg_sdd_frame *f)
{
	struct sg_sdd *s = c->s;
	if (chan_flow(c, f->flow)) {
		send_text(c->bev, SG_SDD_ERROR, f->flow, "ALREADY_ATTACHED", NULL);
		return;
	}
	if (c->natt >= MAX_ATTACH) {
		send_text(c->bev, SG_SDD_ERROR, f->flow, "LIMIT", "too many flows on this channel");
		return;
	}
	pthread_mutex_lock(&s->mu);
	struct sg_sdd_flow *fl = sg_sdd_flowtab_find(s->flows, f->flow, c->sub);
	struct frt *rt = fl ? fl->rt : NULL;
	pthread_mutex_unlock(&s->mu);
	/* another user's flow looks exactly like no flow: no oracle for guessing ids */
	if (!rt || rt->ended) {
		send_text(c->bev, SG_SDD_ERROR, f->flow, "UNKNOWN_FLOW", NULL);
		return;
	}
	if (rt->nch >= (fl->urllc ? 2 : 1)) {
		send_text(c->bev, SG_SDD_ERROR, f->flow, "BUSY",
		          fl->urllc ? "the flow has two channels already"
		                    : "the flow is attached to another channel");
		return;
	}
	if (c->natt == c->capatt) {
		size_t cap = c->capatt ? c->capatt * 2 : 4;
		struct frt **v = realloc(c->att, cap * sizeof *v);
		if (!v) {
			send_text(c->bev, SG_SDD_ERROR, f->flow, "INTERNAL", "out of memory");
			return;
		}
		c->att = v;
		c->capatt = cap;
	}
	c->att[c->natt++] = rt;
	rt->rx[rt->nch] = !(f->seq & 1);
	rt->ch[rt->nch++] = c;
	if (rt->vstate == 0 && frt_connect(rt) != 0) {
		frt_end(rt, "VAL_SERVER_UNREACHABLE");
		return;
	}
	if (rt->vstate == 2) {
		send_attached(rt, c);
		if (frt_nrx(rt)) {
			bufferevent_enable(rt->vb, EV_READ);
			if (evbuffer_get_length(bufferevent_get_input(rt->vb)))
				val_read_cb(rt->vb, rt);
		}
	}
}

static void chan_frame(struct chan *c, const struct sg_sdd_frame *f)
{
	if (f->type == SG_SDD_AUTH) {
		chan_auth(c, f);
		return;
	}
	if (!c->authed) {
		chan_fail(c, "UNAUTHENTICATED",
		          "the first frame must be AUTH with an access token");
		return;
	}
	struct frt *rt;
	switch (f->type) {
	case SG_SDD_ATTACH:
		chan_attach(c, f);
		break;
	case SG_SDD_DATA: /* authenticated DATA is taken in chan_read_cb, uncopied */
		send_text(c->bev, SG_SDD_ERROR, f->flow, "UNKNOWN_FLOW", "not attached");
		break;
	case SG_SDD_DETACH:
		if ((rt = chan_flow(c, f->flow)))
			frt_detach_chan(rt, c);
		break;
	default:
		chan_fail(c, "PROTOCOL_ERROR", "frame type not allowed from a client");
	}
}

static void chan_read_cb(struct bufferevent *bev, void *arg)
{
	struct chan *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	while (!c->closing) {
		if (chan_blocked(c)) {
			bufferevent_disable(bev, EV_READ); /* backpressure from a relay */
			return;
		}
		size_t avail = evbuffer_get_length(in);
		if (avail < SG_SDD_HDR_LEN)
			return;
		uint8_t hdr[SG_SDD_HDR_LEN];
		struct sg_sdd_frame f;
		evbuffer_copyout(in, hdr, sizeof hdr);
		int r = sg_sdd_frame_parse(hdr, sizeof hdr, &f);
		if (r < 0) {
			chan_fail(c,
			          r == SG_SDD_PERR_TOO_LARGE ? "FRAME_TOO_LARGE" : "PROTOCOL_ERROR",
			          sg_sdd_perr_str(r));
			return;
		}
		size_t plen =
		    (size_t)hdr[4] << 24 | (size_t)hdr[5] << 16 | (size_t)hdr[6] << 8 | hdr[7];
		size_t need = SG_SDD_HDR_LEN + plen;
		if (avail < need)
			return;
		if (hdr[1] == SG_SDD_DATA && c->authed) {
			/* the hot path: the payload goes from this channel to the relay uncopied
			 * (the header alone was checked above: version, type, reserved, length,
			 * flow id) */
			uint64_t seq = 0;
			for (int k = 8; k < 16; k++)
				seq = seq << 8 | hdr[k];
			struct frt *rt = chan_flow(c, hdr + 16);
			evbuffer_drain(in, SG_SDD_HDR_LEN);
			if (rt) {
				frt_uplink(rt, seq, in, plen);
			} else {
				evbuffer_drain(in, plen);
				send_text(c->bev, SG_SDD_ERROR, hdr + 16, "UNKNOWN_FLOW",
				          "not attached");
			}
			continue;
		}
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)need);
		if (!p || sg_sdd_frame_parse(p, need, &f) != (int)need) {
			chan_fail(c, "PROTOCOL_ERROR", "malformed frame");
			return;
		}
		chan_frame(c, &f);
		evbuffer_drain(in, need);
	}
}

static void chan_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct chan *c = arg;
	for (size_t i = 0; i < c->natt; i++) {
		struct frt *rt = c->att[i];
		if (rt->down_blocked && rt->vb) {
			rt->down_blocked = 0;
			bufferevent_enable(rt->vb, EV_READ);
			if (evbuffer_get_length(bufferevent_get_input(rt->vb)))
				val_read_cb(rt->vb, rt);
		}
	}
}

static void chan_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct chan *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		SSL *ssl = bufferevent_openssl_get_ssl(bev);
		int ok =
		    sg_tls_check_negotiated(ssl) == SG_OK && SSL_version(ssl) == TLS1_3_VERSION;
		sg_tls_stats_count(ssl, ok);
		if (!ok) {
			chan_free(c);
			return;
		}
		c->handshaken = 1;
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (!c->handshaken) {
			chan_free(c);
			return;
		}
		chan_fail(c, "TIMEOUT", "no AUTH frame in time");
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (!c->handshaken)
			sg_tls_stats_count(bufferevent_openssl_get_ssl(bev), 0);
		/* frames that arrived before the close are processed first */
		if (c->handshaken && !c->closing)
			chan_read_cb(bev, c);
		chan_free(c);
	}
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	(void)l;
	struct sg_sdd *s = arg;
	if (s->nchans >= MAX_CHANNELS || atomic_load(&s->stop)) {
		evutil_closesocket(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct chan *c = calloc(1, sizeof *c);
	SSL *ssl = c ? sg_tls_server_ssl_new(s->dtls) : NULL;
	if (!ssl) {
		free(c);
		evutil_closesocket(fd);
		return;
	}
	c->s = s;
	c->bev = bufferevent_openssl_socket_new(s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		free(c);
		return;
	}
	char host[48] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET && (size_t)salen >= sizeof(struct sockaddr_in)) {
		evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host, sizeof host);
		port = ntohs(((struct sockaddr_in *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, host,
		                 sizeof host);
		port = ntohs(((struct sockaddr_in6 *)sa)->sin6_port);
	}
	snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	bufferevent_setcb(c->bev, chan_read_cb, chan_write_cb, chan_event_cb, c);
	bufferevent_set_max_single_read(c->bev, MAX_IO);
	bufferevent_set_max_single_write(c->bev, MAX_IO);
	bufferevent_setwatermark(c->bev, EV_WRITE, LWM, 0);
	bufferevent_setwatermark(c->bev, EV_READ, 0, HWM);
	struct timeval t = {AUTH_TIMEOUT_S, 0};
	bufferevent_set_timeouts(c->bev, &t, NULL);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = s->chans;
	if (s->chans)
		s->chans->prev = c;
	s->chans = c;
	s->nchans++;
	atomic_fetch_add_explicit(&s->chans_open, 1, memory_order_relaxed);
}

/* ---- data plane: the sweep ---- */

struct sweep {
	struct sg_sdd *s;
	struct sg_sdd_flow *dead[256];
	size_t ndead;
};

static void sweep_flow(struct sg_sdd_flow *f, void *arg)
{
	struct sweep *w = arg;
	if (f->released && w->ndead < sizeof w->dead / sizeof w->dead[0])
		w->dead[w->ndead++] = f;
}

static void sweep_flows(struct sg_sdd *s)
{
	for (;;) {
		struct sweep w = {.s = s};
		pthread_mutex_lock(&s->mu);
		sg_sdd_flowtab_expire(s->flows, sg_now_ms());
		sg_sdd_flowtab_each(s->flows, sweep_flow, &w);
		pthread_mutex_unlock(&s->mu);
		for (size_t i = 0; i < w.ndead; i++) {
			struct frt *rt = w.dead[i]->rt;
			if (rt && !rt->ended)
				frt_end(rt, w.dead[i]->expires_ms <= sg_now_ms() ? "FLOW_EXPIRED"
				                                                 : "FLOW_RELEASED");
		}
		pthread_mutex_lock(&s->mu);
		for (size_t i = 0; i < w.ndead; i++) {
			frt_free(w.dead[i]->rt);
			w.dead[i]->rt = NULL;
			sg_sdd_flowtab_remove(s->flows, w.dead[i]);
		}
		pthread_mutex_unlock(&s->mu);
		if (w.ndead < sizeof w.dead / sizeof w.dead[0])
			break;
	}
}

/* Token expiry (every sweep) and revocation (every TOKEN_RECHECK_MS) stop a channel's flows:
 * the bound is documented in docs/sdd-protocol.md §4. */
static void sweep_tokens(struct sg_sdd *s)
{
	int64_t now = sg_now_ms();
	int recheck = now >= s->next_token_check;
	if (recheck)
		s->next_token_check = now + TOKEN_RECHECK_MS;
	for (struct chan *c = s->chans, *n; c; c = n) {
		n = c->next;
		if (!c->authed || c->closing)
			continue;
		if (now >= c->exp_ms) {
			chan_fail(c, "TOKEN_EXPIRED", "send AUTH with a fresh token before exp");
			continue;
		}
		if (!recheck)
			continue;
		struct sg_policy_decision d;
		char *sub = NULL;
		int64_t exp = 0;
		if (token_check(s, c->token, &sub, &exp, &d) != 0) {
			/* identity management unreachable (503): the token stays good until its exp
			 */
			if (d.status != 503)
				chan_fail(c, "TOKEN_INVALID", d.desc);
			continue;
		}
		free(sub);
	}
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sg_sdd *s = arg;
	if (atomic_load(&s->stop)) {
		if (!s->stopping) {
			/* stop accepting; tell every channel, give the ERROR frames time to go out
			 */
			s->stopping = 1;
			evconnlistener_disable(s->lis);
			for (struct chan *c = s->chans, *n; c; c = n) {
				n = c->next;
				chan_fail(c, "SHUTTING_DOWN", "the SEALDD server is stopping");
			}
			struct timeval t = {0, 300000};
			event_base_loopexit(s->base, &t);
		}
		return;
	}
	sweep_flows(s);
	sweep_tokens(s);
	vals_tick(s);
}

static void *dp_main(void *arg)
{
	struct sg_sdd *s = arg;
	event_base_dispatch(s->base);
	return NULL;
}

/* ---- HTTP: SEALDD-S sdd-trans (TS 29.548) ---- */

static void problem(struct sg_http_req *r, int status, const char *cause, const char *detail,
                    const struct sg_sdd_check *chk)
{
	json_t *p = sg_sdd_problem(status, cause, detail, chk);
	if (!p) {
		sg_http_resp_problem(r, 500, NULL, "out of memory");
		return;
	}
	char *text = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	if (!text) {
		sg_http_resp_problem(r, 500, NULL, "out of memory");
		return;
	}
	sg_http_resp_status(r, status);
	sg_http_resp_body(r, text, strlen(text), "application/problem+json");
	free(text);
}

static void trans_free(struct trans *t)
{
	if (!t)
		return;
	free(t->svc);
	free(t->client_id);
	free(t->identity);
	free(t->val_user_id);
	free(t->val_ue_id);
	free(t);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static enum sg_http_result h_request_trans(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p = sg_principal_of(r);
	const char *tt = sg_http_req_param(r, "transType");
	if (!tt || (strcmp(tt, "regular") != 0 && strcmp(tt, "urllc") != 0)) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "transType must be regular or urllc", NULL);
		return SG_HTTP_DONE;
	}
	if (!p || p->kind != SG_PRINCIPAL_VAL_SERVER || !p->client_id || !p->cert_identity) {
		problem(r, 403, "UNAUTHORIZED_IDENTITY",
		        "only VAL servers may request transmission", NULL);
		return SG_HTTP_DONE;
	}
	json_t *req = sg_http_req_json(r);
	if (!req)
		return SG_HTTP_DONE;
	struct sg_sdd_check chk;
	struct sg_sdd_target tgt;
	if (sg_sdd_transreq_validate(req, &tgt, &chk) != 0) {
		json_decref(req);
		problem(r, 400, "INVALID_MSG_FORMAT", "the TransReq does not follow TS 29.548",
		        &chk);
		return SG_HTTP_DONE;
	}
	const json_t *tu = json_object_get(req, "valTargetId");
	struct trans *t = calloc(1, sizeof *t);
	if (t) {
		t->svc = strdup(json_string_value(json_object_get(req, "valServiceId")));
		t->client_id = strdup(p->client_id);
		t->identity = strdup(p->cert_identity);
		t->val_user_id = dup_or_null(json_string_value(json_object_get(tu, "valUserId")));
		t->val_ue_id = dup_or_null(json_string_value(json_object_get(tu, "valUeId")));
		t->urllc = strcmp(tt, "urllc") == 0;
		t->tgt = tgt;
	}
	json_decref(req);
	if (!t || !t->svc || !t->client_id || !t->identity) {
		trans_free(t);
		problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	/* D2: only a VAL server registered for the VAL service may have its data relayed (the
	 * registry snapshot, refreshed off the loops when the store's generation changes) */
	pthread_mutex_lock(&s->mu);
	const char *why = NULL;
	if (vals_serves_locked(s, t->client_id, t->svc, &why) != 0) {
		pthread_mutex_unlock(&s->mu);
		trans_free(t);
		problem(r, 403, "OPERATION_NOT_ALLOWED", why, NULL);
		return SG_HTTP_DONE;
	}
	/* one transmission per VAL service: the latest request of a VAL server registered for it
	 * replaces the earlier one (flows already established keep their relay) */
	struct trans **pp = &s->trans;
	while (*pp && strcmp((*pp)->svc, t->svc) != 0)
		pp = &(*pp)->next;
	if (*pp && strcmp((*pp)->client_id, t->client_id) != 0)
		sg_log_info("sdd: VAL server %s takes over VAL service %s from VAL server %s",
		            t->client_id, t->svc, (*pp)->client_id);
	if (*pp) {
		t->next = (*pp)->next;
		trans_free(*pp);
		*pp = t;
	} else {
		t->next = s->trans;
		s->trans = t;
	}
	sg_log_info("sdd: VAL server %s requested %s transmission for VAL service %s", t->client_id,
	            tt, t->svc);
	pthread_mutex_unlock(&s->mu);
	json_t *resp =
	    json_pack("{s:o}", "ddServerConnInfo", sg_sdd_conninfo(s->host, (unsigned)s->port));
	sg_http_resp_json(r, 200, resp);
	return SG_HTTP_DONE;
}

/* ---- HTTP: connection status subscriptions ---- */

static const struct subsc *subsc_find_locked(struct sg_sdd *s, const char *id, const char *owner)
{
	for (struct subsc *x = s->subs; x; x = x->next)
		if (strcmp(x->id, id) == 0 && strcmp(x->owner, owner) == 0)
			return x;
	return NULL;
}

static int val_server_of(struct sg_http_req *r, const struct sg_principal **out)
{
	const struct sg_principal *p = sg_principal_of(r);
	if (!p || p->kind != SG_PRINCIPAL_VAL_SERVER || !p->client_id) {
		problem(r, 403, "UNAUTHORIZED_IDENTITY", "only VAL servers may subscribe", NULL);
		return -1;
	}
	*out = p;
	return 0;
}

static json_t *subsc_canon(const json_t *in)
{
	static const char *const K[] = {"events",   "valServiceId", "valTgtUe", "valServerConnInfo",
	                                "notifUri", "suppFeat"};
	json_t *o = json_object();
	for (size_t i = 0; o && i < sizeof K / sizeof K[0]; i++) {
		json_t *v = json_object_get(in, K[i]);
		if (v)
			json_object_set(o, K[i], v);
	}
	return o;
}

static void subsc_location(struct sg_http_req *r, const char *id)
{
	const char *host = sg_http_req_header(r, "host");
	char loc[512];
	snprintf(loc, sizeof loc, "https://%s/sdd-trans/v1/subscriptions/%s",
	         host ? host : "localhost", id);
	sg_http_resp_header(r, "Location", loc);
}

static enum sg_http_result h_subsc_create(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	json_t *body = sg_http_req_json(r);
	if (!body)
		return SG_HTTP_DONE;
	struct sg_sdd_check chk;
	if (sg_sdd_subsc_validate(body, &chk) != 0) {
		json_decref(body);
		problem(r, 400, "INVALID_MSG_FORMAT",
		        "the ConnStatusSubsc does not follow TS 29.548", &chk);
		return SG_HTTP_DONE;
	}
	struct subsc *x = calloc(1, sizeof *x);
	if (x) {
		x->owner = strdup(p->client_id);
		x->body = subsc_canon(body);
	}
	json_decref(body);
	if (!x || !x->owner || !x->body || sg_random_token(x->id, sizeof x->id, 16) != SG_OK) {
		if (x) {
			free(x->owner);
			json_decref(x->body);
		}
		free(x);
		problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	pthread_mutex_lock(&s->mu);
	if (s->nsubs >= MAX_SUBSC) {
		pthread_mutex_unlock(&s->mu);
		free(x->owner);
		json_decref(x->body);
		free(x);
		problem(r, 429, "TOO_MANY_REQUESTS", "too many subscriptions", NULL);
		return SG_HTTP_DONE;
	}
	x->next = s->subs;
	s->subs = x;
	s->nsubs++;
	json_t *out = json_deep_copy(x->body);
	pthread_mutex_unlock(&s->mu);
	subsc_location(r, x->id);
	sg_http_resp_json(r, 201, out);
	return SG_HTTP_DONE;
}

static enum sg_http_result h_subsc_get(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	pthread_mutex_lock(&s->mu);
	const struct subsc *x =
	    subsc_find_locked(s, sg_http_req_param(r, "subscriptionId"), p->client_id);
	json_t *out = x ? json_deep_copy(x->body) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!out) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such subscription", NULL);
		return SG_HTTP_DONE;
	}
	sg_http_resp_json(r, 200, out);
	return SG_HTTP_DONE;
}

/* PUT (replace) and PATCH (RFC 7396 merge patch, ConnStatusSubscPatch members only). */
static enum sg_http_result subsc_change(struct sg_http_req *r, struct sg_sdd *s, int patch)
{
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	if (patch) {
		const char *ct = sg_http_req_header(r, "content-type");
		if (!ct || strncasecmp(ct, "application/merge-patch+json", 28) != 0) {
			problem(r, 415, "UNSUPPORTED_MEDIA_TYPE",
			        "PATCH takes application/merge-patch+json", NULL);
			return SG_HTTP_DONE;
		}
	}
	json_t *body = sg_http_req_json(r);
	if (!body)
		return SG_HTTP_DONE;
	const char *id = sg_http_req_param(r, "subscriptionId");
	pthread_mutex_lock(&s->mu);
	struct subsc *x = (struct subsc *)subsc_find_locked(s, id, p->client_id);
	if (!x) {
		pthread_mutex_unlock(&s->mu);
		json_decref(body);
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such subscription", NULL);
		return SG_HTTP_DONE;
	}
	json_t *next = NULL;
	struct sg_sdd_check chk = {0};
	if (patch) {
		static const char *const PK[] = {"events", "valServiceId", "valTgtUe",
		                                 "valServerConnInfo", "notifUri"};
		next = json_deep_copy(x->body);
		const char *k;
		json_t *v;
		int okp = json_is_object(body) && next;
		json_object_foreach(body, k, v)
		{
			int known = 0;
			for (size_t i = 0; i < sizeof PK / sizeof PK[0]; i++)
				known |= strcmp(k, PK[i]) == 0;
			if (!known)
				continue;
			if (json_is_null(v))
				json_object_del(next, k);
			else
				json_object_set(next, k, v);
		}
		if (!okp) {
			json_decref(next);
			next = NULL;
			chk.n = 1;
			snprintf(chk.v[0].param, sizeof chk.v[0].param, "/");
			snprintf(chk.v[0].reason, sizeof chk.v[0].reason, "must be a JSON object");
		}
	} else {
		next = json_incref(body);
	}
	json_decref(body);
	if (!next || sg_sdd_subsc_validate(next, &chk) != 0) {
		pthread_mutex_unlock(&s->mu);
		json_decref(next);
		problem(r, 400, "INVALID_MSG_FORMAT", "the subscription does not follow TS 29.548",
		        &chk);
		return SG_HTTP_DONE;
	}
	json_t *canon = subsc_canon(next);
	json_decref(next);
	if (!canon) {
		pthread_mutex_unlock(&s->mu);
		problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	json_decref(x->body);
	x->body = canon;
	json_t *out = json_deep_copy(canon);
	pthread_mutex_unlock(&s->mu);
	sg_http_resp_json(r, 200, out);
	return SG_HTTP_DONE;
}

static enum sg_http_result h_subsc_put(struct sg_http_req *r, void *arg)
{
	return subsc_change(r, arg, 0);
}

static enum sg_http_result h_subsc_patch(struct sg_http_req *r, void *arg)
{
	return subsc_change(r, arg, 1);
}

static enum sg_http_result h_subsc_delete(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	const char *id = sg_http_req_param(r, "subscriptionId");
	pthread_mutex_lock(&s->mu);
	struct subsc **pp = &s->subs;
	while (*pp && !(strcmp((*pp)->id, id) == 0 && strcmp((*pp)->owner, p->client_id) == 0))
		pp = &(*pp)->next;
	struct subsc *x = *pp;
	if (x) {
		*pp = x->next;
		s->nsubs--;
	}
	pthread_mutex_unlock(&s->mu);
	if (!x) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such subscription", NULL);
		return SG_HTTP_DONE;
	}
	free(x->owner);
	json_decref(x->body);
	free(x);
	sg_http_resp_status(r, 204);
	return SG_HTTP_DONE;
}

/* ---- HTTP: SEALDD-UU flow signalling (docs/sdd-protocol.md §2) ---- */

static json_t *flow_json(const struct sg_sdd *s, const struct sg_sdd_flow *f)
{
	char id[SG_SDD_FLOW_TEXT_LEN + 1], exp[40];
	sg_sdd_flow_to_text(f->id, id);
	sg_time_iso8601(exp, sizeof exp, f->expires_ms);
	int64_t left = (f->expires_ms - sg_now_ms() + 999) / 1000;
	return json_pack("{s:s, s:s, s:s, s:o, s:I, s:s}", "sddFlowId", id, "valServiceId",
	                 f->val_service_id, "transType", f->urllc ? "urllc" : "regular",
	                 "ddServerConnInfo", sg_sdd_conninfo(s->host, (unsigned)s->port),
	                 "lifetime", (json_int_t)(left > 0 ? left : 0), "expiresAt", exp);
}

static enum sg_http_result h_flow_create(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p = sg_principal_of(r);
	if (!p || p->kind != SG_PRINCIPAL_UE || !p->sub) {
		problem(r, 403, "UNAUTHORIZED_IDENTITY", "a VAL user's token is required", NULL);
		return SG_HTTP_DONE;
	}
	json_t *body = sg_http_req_json(r);
	if (!body)
		return SG_HTTP_DONE;
	struct sg_sdd_check chk = {0};
	const json_t *sv = json_object_get(body, "valServiceId");
	if (!json_is_object(body) || !json_is_string(sv) || json_string_length(sv) == 0 ||
	    json_string_length(sv) > 255) {
		chk.n = 1;
		snprintf(chk.v[0].param, sizeof chk.v[0].param, "/valServiceId");
		snprintf(chk.v[0].reason, sizeof chk.v[0].reason,
		         "is required: a string of 1 to 255 characters");
		json_decref(body);
		problem(r, 400, "INVALID_MSG_FORMAT", "a flow request names its VAL service", &chk);
		return SG_HTTP_DONE;
	}
	char svc[256];
	snprintf(svc, sizeof svc, "%s", json_string_value(sv));
	json_decref(body);
	const char *uid = sg_principal_val_user_id(p, svc);
	pthread_mutex_lock(&s->mu);
	struct trans *t = s->trans;
	while (t && strcmp(t->svc, svc) != 0)
		t = t->next;
	int status = 0;
	const char *cause = NULL, *detail = NULL;
	if (!t) {
		status = 404, cause = "TRANSMISSION_NOT_REQUESTED";
		detail = "no VAL server requested SEALDD transmission for this VAL service";
	} else if (t->val_ue_id || (t->val_user_id && (!uid || strcmp(uid, t->val_user_id) != 0))) {
		/* TransReq.valTargetId limits the transmission to one VAL user (a valUeId target
		 * cannot be proven by a token, which carries VAL user ids only) */
		status = 403, cause = "OPERATION_NOT_ALLOWED";
		detail = "the transmission is for another VAL user";
	}
	struct frt *rt = status ? NULL : calloc(1, sizeof *rt);
	if (rt) {
		rt->s = s;
		rt->tgt = t->tgt;
		rt->identity = strdup(t->identity);
		rt->owner = strdup(t->client_id);
		rt->val_user_id = strdup(uid ? uid : p->sub);
	}
	if (!status && (!rt || !rt->identity || !rt->owner || !rt->val_user_id))
		status = 503, cause = "SERVICE_UNAVAILABLE", detail = "out of memory";
	const char *why = NULL;
	struct sg_sdd_flow *f =
	    status ? NULL
	           : sg_sdd_flowtab_add(s->flows, p->sub, svc, t->urllc, sg_now_ms(),
	                                s->conf->sdd.flow_lifetime_s, &why);
	if (!status && !f) {
		if (why && !strcmp(why, "limit"))
			status = 429, cause = "TOO_MANY_FLOWS", detail = "flow limit reached";
		else
			status = 503, cause = "SERVICE_UNAVAILABLE", detail = "out of memory";
	}
	json_t *out = NULL;
	if (!status) {
		rt->f = f;
		f->rt = rt;
		rt = NULL;
		out = flow_json(s, f);
	}
	pthread_mutex_unlock(&s->mu);
	frt_free(rt);
	if (status) {
		problem(r, status, cause, detail, NULL);
		return SG_HTTP_DONE;
	}
	const char *host = sg_http_req_header(r, "host");
	char loc[512];
	snprintf(loc, sizeof loc, "https://%s/sdd-flows/v1/flows/%s", host ? host : "localhost",
	         json_string_value(json_object_get(out, "sddFlowId")));
	sg_http_resp_header(r, "Location", loc);
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_json(r, 201, out);
	return SG_HTTP_DONE;
}

static struct sg_sdd_flow *flow_of_req_locked(struct sg_sdd *s, struct sg_http_req *r)
{
	const struct sg_principal *p = sg_principal_of(r);
	uint8_t id[SG_SDD_FLOW_ID_LEN];
	if (!p || !p->sub || sg_sdd_flow_from_text(sg_http_req_param(r, "sddFlowId"), id) != 0)
		return NULL;
	return sg_sdd_flowtab_find(s->flows, id, p->sub);
}

static enum sg_http_result h_flow_get(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	pthread_mutex_lock(&s->mu);
	struct sg_sdd_flow *f = flow_of_req_locked(s, r);
	json_t *out = f ? flow_json(s, f) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!out) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such flow", NULL);
		return SG_HTTP_DONE;
	}
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_json(r, 200, out);
	return SG_HTTP_DONE;
}

static enum sg_http_result h_flow_delete(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	pthread_mutex_lock(&s->mu);
	struct sg_sdd_flow *f = flow_of_req_locked(s, r);
	if (f)
		f->released = 1; /* the data plane ends it within SWEEP_MS */
	pthread_mutex_unlock(&s->mu);
	if (!f) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such flow", NULL);
		return SG_HTTP_DONE;
	}
	sg_http_resp_status(r, 204);
	return SG_HTTP_DONE;
}

/* ---- lifecycle ---- */

sg_err sg_sdd_mount(struct sg_sdd *s, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                    char *err, size_t errlen)
{
	sg_err e = SG_OK;
	if (rp->auth_mode == SG_AUTH_MTLS_BEARER) {
		/* SEALDD-S = SEAL-S (G6, D3, R3) */
		const struct {
			const char *m, *t;
			sg_http_handler h;
		} R[] = {
		    {"POST", "/sdd-trans/v1/{transType}/request-trans", h_request_trans},
		    {"POST", "/sdd-trans/v1/subscriptions", h_subsc_create},
		    {"GET", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_get},
		    {"PUT", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_put},
		    {"PATCH", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_patch},
		    {"DELETE", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_delete},
		};
		for (size_t i = 0; e == SG_OK && i < sizeof R / sizeof R[0]; i++)
			e = sg_policy_route(rt, R[i].m, R[i].t, SG_SDD_AUDIENCE, SG_SDD_SCOPE,
			                    R[i].h, s);
	} else if (rp->auth_mode == SG_AUTH_BEARER) {
		/* SEALDD-UU = SEAL-UU (G6, D3, R1) */
		e = sg_policy_route(rt, "POST", "/sdd-flows/v1/flows", SG_SDD_AUDIENCE,
		                    SG_SDD_SCOPE, h_flow_create, s);
		if (e == SG_OK)
			e = sg_policy_route(rt, "GET", "/sdd-flows/v1/flows/{sddFlowId}",
			                    SG_SDD_AUDIENCE, SG_SDD_SCOPE, h_flow_get, s);
		if (e == SG_OK)
			e = sg_policy_route(rt, "DELETE", "/sdd-flows/v1/flows/{sddFlowId}",
			                    SG_SDD_AUDIENCE, SG_SDD_SCOPE, h_flow_delete, s);
	}
	if (e != SG_OK)
		return sg_fail(err, errlen, e, "%s: cannot add the SEALDD routes: %s", rp->name,
		               sg_err_str(e));
	return SG_OK;
}

static sg_err bind_data(struct sg_sdd *s, const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int sl = sizeof ss;
	/* libevent's parser refuses port 0 (any free port): parse it as 1, then zero it */
	char tmp[300];
	size_t al = strlen(addr);
	int any = al > 2 && al < sizeof tmp && !strcmp(addr + al - 2, ":0");
	if (any) {
		snprintf(tmp, sizeof tmp, "%.*s:1", (int)(al - 2), addr);
		addr = tmp;
	}
	if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sl) != 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "sdd.data_bind '%s': not host:port",
		               addr);
	if (any && ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else if (any)
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	s->lfd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (s->lfd < 0)
		return sg_fail(err, errlen, SG_ERR_IO, "socket: %s", strerror(errno));
	int one = 1;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(s->lfd, (struct sockaddr *)&ss, (socklen_t)sl) != 0 || listen(s->lfd, 1024) != 0)
		return sg_fail(err, errlen, SG_ERR_IO, "SEALDD data endpoint %s: %s", addr,
		               strerror(errno));
	evutil_make_socket_nonblocking(s->lfd);
	evutil_make_socket_closeonexec(s->lfd);
	sl = sizeof ss;
	getsockname(s->lfd, (struct sockaddr *)&ss, (socklen_t *)&sl);
	if (ss.ss_family == AF_INET) {
		s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, s->host,
		                 sizeof s->host);
	} else {
		s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, s->host,
		                 sizeof s->host);
	}
	return SG_OK;
}

sg_err sg_sdd_new(const struct sg_conf *conf, struct sg_policy *policy, struct sg_sdd **out,
                  char *err, size_t errlen)
{
	const struct sg_conf_refpoint *uu = NULL;
	for (unsigned i = 0; i < conf->n_refpoints && !uu; i++) {
		const struct sg_conf_refpoint *rp = &conf->refpoints[i];
		for (unsigned j = 0; j < rp->n_services; j++)
			if (!strcmp(rp->services[j], "sdd") && rp->auth_mode == SG_AUTH_BEARER)
				uu = rp;
	}
	if (!uu)
		return sg_fail(
		    err, errlen, SG_ERR_CONFIG,
		    "the sdd role needs a bearer reference point serving sdd (SEALDD-UU)");
	struct sg_sdd *s = calloc(1, sizeof *s);
	if (!s)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	s->conf = conf;
	s->policy = policy;
	s->lfd = -1;
	s->nqtail = &s->nq;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->nmu, NULL);
	pthread_cond_init(&s->ncv, NULL);
	sg_err e;
	if (!(s->flows = sg_sdd_flowtab_new(MAX_FLOWS, MAX_FLOWS_USER))) {
		e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		goto fail;
	}
	/* SEALDD-UU user plane as R1: the SEAL-UU server certificate and profile, TLS 1.3 only */
	struct sg_tls_conf tc = uu->tls;
	tc.min_version = "TLS1.3";
	tc.max_version = "TLS1.3";
	char why[256];
	if ((e = sg_tls_server_new(&tc, 0, &s->dtls, why, sizeof why)) != SG_OK) {
		sg_fail(err, errlen, e, "SEALDD data endpoint TLS: %s", why);
		goto fail;
	}
	/* SEALDD-S user plane as R3: mutual TLS with this server's own certificate */
	struct sg_tls_conf vc = {.mode = SG_TLS_MUTUAL,
	                         .cert = conf->resource.client_cert,
	                         .key = conf->resource.client_key,
	                         .ca = conf->resource.ca};
	if ((e = sg_tls_client_ctx_new(&vc, &s->val_ctx, why, sizeof why)) != SG_OK) {
		sg_fail(err, errlen, e, "SEALDD relay TLS: %s", why);
		goto fail;
	}
	/* the registry snapshot: loaded now, then refreshed on this pool's thread */
	const char *driver = conf->store_driver ? conf->store_driver : "sqlite";
	const char *where = !strcmp(driver, "postgres") ? conf->store_url : conf->store_path;
	if ((e = sg_store_pool_create(driver, where, 1, &s->pool, err, errlen)) != SG_OK)
		goto fail;
	struct sg_store *st = NULL;
	if ((e = sg_store_open(driver, where, &st, err, errlen)) != SG_OK)
		goto fail;
	e = vals_refresh(st, s);
	sg_store_close(st);
	if (e != SG_OK) {
		sg_fail(err, errlen, e, "sdd: loading the VAL servers: %s", sg_store_last_error());
		goto fail;
	}
	if (conf->sdd.data_bind) {
		if ((e = bind_data(s, conf->sdd.data_bind, err, errlen)) != SG_OK)
			goto fail;
	} else if (bind_data(s, "127.0.0.1:9446", why, sizeof why) != SG_OK) {
		/* the default port is taken (another instance, a test): any free loopback port */
		if (s->lfd >= 0)
			close(s->lfd);
		s->lfd = -1;
		if ((e = bind_data(s, "127.0.0.1:0", err, errlen)) != SG_OK)
			goto fail;
	}
	*out = s;
	return SG_OK;
fail:
	sg_sdd_free(s);
	return e;
}

sg_err sg_sdd_start(struct sg_sdd *s, char *err, size_t errlen)
{
	if (!(s->base = event_base_new()))
		return sg_fail(err, errlen, SG_ERR_NOMEM, "event base");
	s->dns = evdns_base_new(s->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (!s->dns && (s->dns = evdns_base_new(s->base, 0)))
		evdns_base_load_hosts(s->dns, NULL);
	if (!s->dns)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "resolver");
	s->lis = evconnlistener_new(s->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE, 0, s->lfd);
	if (!s->lis)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "listener");
	s->lfd = -1; /* the listener owns it */
	s->tick = event_new(s->base, -1, EV_PERSIST, tick_cb, s);
	struct timeval tv = {0, SWEEP_MS * 1000};
	if (!s->tick || event_add(s->tick, &tv) != 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "timer");
	if (pthread_create(&s->th, NULL, dp_main, s) != 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "thread");
	s->started = 1;
	if (pthread_create(&s->nth, NULL, notif_main, s) != 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "thread");
	s->nstarted = 1;
	sg_log_info("SEALDD-UU data endpoint listening on %s:%d (TLS 1.3; docs/sdd-protocol.md)",
	            s->host, s->port);
	return SG_OK;
}

int sg_sdd_data_port(const struct sg_sdd *s)
{
	return s->port;
}

sg_err sg_sdd_metrics(struct sg_sdd *s, struct sg_buf *out)
{
	if (!s)
		return SG_OK;
	pthread_mutex_lock(&s->mu);
	size_t flows = sg_sdd_flowtab_count(s->flows), trans = 0;
	for (const struct trans *t = s->trans; t; t = t->next)
		trans++;
	pthread_mutex_unlock(&s->mu);
#define C(x) ((unsigned long long)atomic_load_explicit(&s->x, memory_order_relaxed))
	return sg_buf_printf(
	    out,
	    "# HELP sealguard_sdd_channels_open SEALDD-UU data channels open.\n"
	    "# TYPE sealguard_sdd_channels_open gauge\n"
	    "sealguard_sdd_channels_open %llu\n"
	    "# HELP sealguard_sdd_flows_open SEALDD flows allocated (sdd-flows/v1), not yet "
	    "freed.\n"
	    "# TYPE sealguard_sdd_flows_open gauge\n"
	    "sealguard_sdd_flows_open %zu\n"
	    "# HELP sealguard_sdd_transmissions SEALDD-S transmissions requested (request-trans).\n"
	    "# TYPE sealguard_sdd_transmissions gauge\n"
	    "sealguard_sdd_transmissions %zu\n"
	    "# HELP sealguard_sdd_relayed_bytes_total VAL payload bytes relayed, by direction.\n"
	    "# TYPE sealguard_sdd_relayed_bytes_total counter\n"
	    "sealguard_sdd_relayed_bytes_total{direction=\"uplink\"} %llu\n"
	    "sealguard_sdd_relayed_bytes_total{direction=\"downlink\"} %llu\n"
	    "# HELP sealguard_sdd_duplicates_dropped_total URLLC uplink duplicates eliminated.\n"
	    "# TYPE sealguard_sdd_duplicates_dropped_total counter\n"
	    "sealguard_sdd_duplicates_dropped_total %llu\n"
	    "# HELP sealguard_sdd_notifications_total Connection status notifications, by result.\n"
	    "# TYPE sealguard_sdd_notifications_total counter\n"
	    "sealguard_sdd_notifications_total{result=\"sent\"} %llu\n"
	    "sealguard_sdd_notifications_total{result=\"failed\"} %llu\n",
	    C(chans_open), flows, trans, C(bytes_up), C(bytes_down), C(dup_dropped), C(notif_sent),
	    C(notif_failed));
#undef C
}

static void free_rt(struct sg_sdd_flow *f, void *arg)
{
	(void)arg;
	frt_free(f->rt);
	f->rt = NULL;
}

void sg_sdd_free(struct sg_sdd *s)
{
	if (!s)
		return;
	atomic_store(&s->stop, 1);
	if (s->started)
		pthread_join(s->th, NULL);
	if (s->nstarted) {
		pthread_mutex_lock(&s->nmu);
		pthread_cond_broadcast(&s->ncv);
		pthread_mutex_unlock(&s->nmu);
		pthread_join(s->nth, NULL);
	}
	/* no refresh is queued after this (the data plane has stopped) */
	sg_store_pool_destroy(s->pool);
	s->pool = NULL;
	/* the loop has stopped: everything below runs on this thread alone */
	while (s->chans)
		chan_free(s->chans);
	if (s->flows) {
		sg_sdd_flowtab_each(s->flows, free_rt, NULL);
		sg_sdd_flowtab_free(s->flows);
	}
	if (s->lis)
		evconnlistener_free(s->lis);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->tick)
		event_free(s->tick);
	if (s->dns)
		evdns_base_free(s->dns, 0);
	if (s->base)
		event_base_free(s->base);
	while (s->trans) {
		struct trans *t = s->trans;
		s->trans = t->next;
		trans_free(t);
	}
	while (s->subs) {
		struct subsc *x = s->subs;
		s->subs = x->next;
		free(x->owner);
		json_decref(x->body);
		free(x);
	}
	while (s->nq) {
		struct notif *q = s->nq;
		s->nq = q->next;
		free(q->url);
		free(q->body);
		free(q);
	}
	if (s->notif_sent || s->notif_failed || s->dup_dropped)
		sg_log_info("sdd: notifications sent %llu, failed %llu; duplicates dropped %llu",
		            (unsigned long long)s->notif_sent, (unsigned long long)s->notif_failed,
		            (unsigned long long)s->dup_dropped);
	sg_store_vals_unref(s->vals);
	if (s->val_ctx)
		SSL_CTX_free(s->val_ctx);
	sg_tls_server_free(s->dtls);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->nmu);
	pthread_cond_destroy(&s->ncv);
	free(s);
}
