/* sdd/plane.c: the SEALDD-UU user plane (framed TLS 1.3 data channels) and the SEALDD-S relay
 * to VAL servers, on the data plane thread (internal.h).
 *
 * Both kinds of connection drive OpenSSL directly on their non-blocking sockets with libevent
 * events (struct pconn), as net/conn.c does for HTTP: read-ahead (one read() per record, not a
 * header read and a body read), frames parsed in place in the channel's input buffer, and what
 * one side reads written to the other at once, from that buffer, with SSL_write. Bytes are
 * queued (copied) only when the other socket cannot take them, and a write event is armed only
 * then. A downlink DATA frame (header + payload) is one contiguous SSL_write of at most two full
 * TLS records. docs/performance.md "SEALDD" has the measurements behind this. */
#include "sdd/internal.h"

#include <openssl/err.h>

#define RECORD  16384u                        /* TLS plaintext per record */
#define DCHUNK  (2 * RECORD - SG_SDD_HDR_LEN) /* downlink payload: frame = 2 records */
#define IBUF    (SG_SDD_HDR_LEN + SG_SDD_MAX_PAYLOAD + 2 * RECORD) /* channel input */
#define IBUF0   (SG_SDD_HDR_LEN + SG_SDD_MAX_TOKEN) /* ... before AUTH_OK: one AUTH frame */
#define RBUDGET (1u << 20)  /* bytes read per callback before other connections get a turn */
#define CLOSE_S 2           /* an ERROR frame's flush before the channel is closed anyway */
#define MIN_HWM (64u << 10) /* a channel's share of sdd.user_output_mib is at least this */

/* One TLS connection of the data plane: a SEALDD-UU data channel or a relay to a VAL server. */
struct pconn {
	evutil_socket_t fd;
	SSL *ssl;
	struct event *rev, *wev;    /* persistent; wev armed only while bytes wait in `out` */
	struct event *tmo;          /* deadline: handshake/AUTH, relay connect, close flush */
	struct evbuffer *out;       /* what the socket could not take yet */
	const struct timeval *wtmo; /* write stall bound (relay): no write progress in this long */
	int64_t wstall_ms;          /* relay: since when no write progress (0: progress since) */
	uint8_t *ib;                /* channel input: frames parsed in place; NULL when empty */
	size_t icap;                /* its size: IBUF0 before AUTH_OK, then IBUF */
	size_t ioff, ilen;
	struct evdns_getaddrinfo_request *dnsreq; /* relay: resolving */
	int up;                                   /* handshake done */
	int connecting;                           /* relay: TCP connect in progress */
	int rd_on, wr_on;
	int rd_on_w; /* SSL_read wants the socket writable */
	int wr_on_r; /* SSL_write wants the socket readable */
	int in_read; /* a read of this connection is on the stack (no re-entry) */
	int dead;    /* closed or failed: the connection's own callback frees it */
};

static const struct timeval VAL_STALL = {VAL_TIMEOUT_S, 0};
/* the downlink frame being built: header, then up to DCHUNK bytes read from a relay */
static _Thread_local uint8_t dbuf[SG_SDD_HDR_LEN + DCHUNK];

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static struct pconn *pc_new(void)
{
	struct pconn *pc = calloc(1, sizeof *pc);
	if (pc && !(pc->out = evbuffer_new())) {
		free(pc);
		return NULL;
	}
	if (pc)
		pc->fd = -1;
	return pc;
}

/* Binds fd and ssl (both owned from now on) to pc, with cb as the callback of its events. */
static int pc_bind(struct sg_sdd *s, struct pconn *pc, evutil_socket_t fd, SSL *ssl,
                   event_callback_fn cb, void *arg)
{
	pc->fd = fd;
	pc->ssl = ssl;
	evutil_make_socket_nonblocking(fd);
	if (SSL_set_fd(ssl, (int)fd) != 1)
		return -1;
	/* RELEASE_BUFFERS keeps an idle connection small; read-ahead makes one read() take what
	 * the socket holds up to one full record (instead of a header read and a body read per
	 * record). The buffer stays at OpenSSL's default size, one record: before each record
	 * OpenSSL moves the bytes still buffered after it to the front, so a 64 KiB buffer
	 * moved tens of KiB per record (the data plane's largest memmove at 64 flows). */
	SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_read_ahead(ssl, 1);
	pc->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, cb, arg);
	pc->wev = event_new(s->base, fd, EV_WRITE | EV_PERSIST, cb, arg);
	if (!pc->tmo)
		pc->tmo = evtimer_new(s->base, cb, arg);
	return pc->rev && pc->wev && pc->tmo ? 0 : -1;
}

static void pc_free(struct pconn *pc)
{
	if (!pc)
		return;
	if (pc->dnsreq)
		evdns_getaddrinfo_cancel(pc->dnsreq); /* its callback sees EVUTIL_EAI_CANCEL */
	if (pc->rev)
		event_free(pc->rev);
	if (pc->wev)
		event_free(pc->wev);
	if (pc->tmo)
		event_free(pc->tmo);
	if (pc->ssl)
		SSL_free(pc->ssl);
	if (pc->fd >= 0)
		evutil_closesocket(pc->fd);
	evbuffer_free(pc->out);
	free(pc->ib);
	free(pc);
}

static void pc_read_on(struct pconn *pc, int on)
{
	if (!pc->rev || on == pc->rd_on)
		return;
	pc->rd_on = on;
	if (on)
		event_add(pc->rev, NULL);
	else
		event_del(pc->rev);
}

static void pc_write_on(struct pconn *pc, int on)
{
	if (!pc->wev || on == pc->wr_on)
		return;
	pc->wr_on = on;
	if (on)
		event_add(pc->wev, pc->up ? pc->wtmo : NULL);
	else
		event_del(pc->wev);
}

/* A fatal error found outside the connection's own callback: mark it and let the callback,
 * run from the loop, tear it down. */
static void pc_fail(struct pconn *pc)
{
	ERR_clear_error();
	if (pc->dead)
		return;
	pc->dead = 1;
	if (pc->wev)
		event_active(pc->wev, EV_WRITE, 0);
}

/* Writes what is queued. Returns 1 when bytes went out, 0 when none, -1 on failure. */
static int pc_flush(struct pconn *pc)
{
	int progress = 0;
	if (!pc->up)
		return 0;
	pc->wr_on_r = 0;
	while (!pc->dead) {
		size_t left = evbuffer_get_length(pc->out);
		if (!left)
			break;
		struct evbuffer_iovec v;
		if (evbuffer_peek(pc->out, -1, NULL, &v, 1) < 1)
			break;
		size_t n = v.iov_len;
		if (n < RECORD && left > n) {
			/* small pieces (frame headers, short frames) go out as one record */
			n = left < RECORD ? left : RECORD;
			if (!(v.iov_base = evbuffer_pullup(pc->out, (ev_ssize_t)n))) {
				pc_fail(pc);
				return -1;
			}
		}
		int r = SSL_write(pc->ssl, v.iov_base, (int)(n > MAX_IO ? MAX_IO : n));
		if (r > 0) {
			evbuffer_drain(pc->out, (size_t)r);
			progress = 1;
			continue;
		}
		int e = SSL_get_error(pc->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE)
			break;
		if (e == SSL_ERROR_WANT_READ) {
			pc->wr_on_r = 1;
			pc_read_on(pc, 1);
			break;
		}
		pc_fail(pc);
		return -1;
	}
	int want = evbuffer_get_length(pc->out) && !pc->wr_on_r;
	if (progress)
		pc->wstall_ms = 0;
	if (want && progress && pc->wr_on && pc->wtmo)
		event_add(pc->wev, pc->wtmo); /* progress: the stall bound starts again */
	pc_write_on(pc, want);
	return progress;
}

/* Sends n bytes: straight through SSL_write when nothing is queued, the rest queued. */
static void pc_write(struct pconn *pc, const void *p, size_t n)
{
	if (pc->dead || !n)
		return;
	const uint8_t *b = p;
	if (pc->up && !pc->wr_on_r && !evbuffer_get_length(pc->out)) {
		while (n) {
			int r = SSL_write(pc->ssl, b, (int)(n > MAX_IO ? MAX_IO : n));
			if (r > 0) {
				b += r;
				n -= (size_t)r;
				continue;
			}
			int e = SSL_get_error(pc->ssl, r);
			if (e == SSL_ERROR_WANT_READ) {
				pc->wr_on_r = 1;
				pc_read_on(pc, 1);
			} else if (e != SSL_ERROR_WANT_WRITE) {
				pc_fail(pc);
				return;
			}
			break;
		}
		if (!n)
			return;
	}
	/* after WANT_WRITE OpenSSL holds the first record of these bytes: the retry writes
	 * them again from the queue (ACCEPT_MOVING_WRITE_BUFFER) */
	if (evbuffer_add(pc->out, b, n) != 0) {
		pc_fail(pc);
		return;
	}
	if (pc->up && !pc->wr_on_r)
		pc_write_on(pc, 1); /* (while connecting, the handshake owns the write event) */
}

static size_t pc_queued(const struct pconn *pc)
{
	return pc ? evbuffer_get_length(pc->out) : 0;
}

/* Handshake step: 1 done, 0 in progress, -1 failed. */
static int pc_handshake(struct pconn *pc)
{
	int r = SSL_do_handshake(pc->ssl);
	if (r == 1) {
		pc->up = 1;
		pc_write_on(pc, 0);
		return 1;
	}
	int e = SSL_get_error(pc->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		pc_write_on(pc, 0);
		pc_read_on(pc, 1);
		return 0;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		pc_write_on(pc, 1);
		return 0;
	}
	ERR_clear_error();
	return -1;
}

/* ---- data plane: frames out ---- */

static void send_frame(struct pconn *pc, uint8_t type, const uint8_t *flow, uint64_t seq,
                       const void *p, size_t n)
{
	uint8_t f[SG_SDD_HDR_LEN + 256];
	sg_sdd_frame_header(f, type, (uint32_t)n, seq, flow);
	if (n <= sizeof f - SG_SDD_HDR_LEN) {
		if (n)
			memcpy(f + SG_SDD_HDR_LEN, p, n);
		pc_write(pc, f, SG_SDD_HDR_LEN + n); /* one record */
		return;
	}
	pc_write(pc, f, SG_SDD_HDR_LEN);
	pc_write(pc, p, n);
}

static void send_text(struct pconn *pc, uint8_t type, const uint8_t *flow, const char *code,
                      const char *detail)
{
	char m[256];
	int n = snprintf(m, sizeof m, "%s%s%s", code, detail && *detail ? ": " : "",
	                 detail ? detail : "");
	send_frame(pc, type, flow, 0, m,
	           n < 0                   ? 0
	           : (size_t)n >= sizeof m ? sizeof m - 1
	                                   : (size_t)n);
}

/* ---- data plane: flows ---- */

static void chan_check_resume(struct chan *c);
static int chan_blocked(const struct chan *c);
static void chan_read(struct chan *c);
static void relay_read(struct frt *rt);
static void user_rebalance(struct chan *c);

/* SSL_read into buf from *n on until it holds cap bytes (returns 0), the socket would block
 * (1; a read that needs the socket writable arms the write event) or the connection ended or
 * failed (2). *n counts the bytes in buf. */
static int pc_fill(struct pconn *pc, uint8_t *buf, size_t cap, size_t *n)
{
	while (*n < cap) {
		int r = SSL_read(pc->ssl, buf + *n, (int)(cap - *n));
		if (r > 0) {
			*n += (size_t)r;
			continue;
		}
		int e = SSL_get_error(pc->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			return 1;
		if (e == SSL_ERROR_WANT_WRITE) {
			pc->rd_on_w = 1;
			pc_write_on(pc, 1);
			return 1;
		}
		return 2;
	}
	return 0;
}

/* The channels the relay's downlink goes to: attached to receive, and not failed (a failed
 * channel's callback has yet to detach it; what the relay read for it would be lost). */
static int chan_rx(const struct frt *rt, int i)
{
	return rt->rx[i] && !rt->ch[i]->pc->dead;
}

static int frt_nrx(const struct frt *rt)
{
	int n = 0;
	for (int i = 0; i < rt->nch; i++)
		n += chan_rx(rt, i);
	return n;
}

/* The channel may read again (deferred to its own callback: this runs inside other
 * connections' callbacks and teardown, and frames already buffered wake no event). */
static void chan_wake(struct chan *c)
{
	if (c->closing || c->pc->dead || !c->handshaken || chan_blocked(c))
		return;
	pc_read_on(c->pc, 1);
	event_active(c->pc->rev, EV_READ, 0);
}

/* After every write of the relay: once its output is at up_lwm or below, the channels held back
 * for it (uplink backpressure) read again, wherever the relay was drained (its own write
 * event, the handshake's completion, the end of a channel's batch, a channel's detach). */
static void relay_drained(struct frt *rt)
{
	if (!rt->up_blocked || !rt->vc || pc_queued(rt->vc) > rt->up_lwm)
		return;
	rt->up_blocked = 0;
	for (int i = 0; i < rt->nch; i++)
		chan_wake(rt->ch[i]);
}

/* The relay reads from the VAL server again once no receiving channel is over its high-water
 * mark (the channel that held it back drained, went away or got a larger share of its user's
 * budget: a URLLC flow's other leg carries on). */
static void relay_wake(struct frt *rt)
{
	if (!rt->down_blocked || !rt->vc || !frt_nrx(rt))
		return;
	for (int i = 0; i < rt->nch; i++)
		if (chan_rx(rt, i) && pc_queued(rt->ch[i]->pc) > rt->ch[i]->hwm)
			return;
	rt->down_blocked = 0;
	pc_read_on(rt->vc, 1);
	event_active(rt->vc->rev, EV_READ, 0);
}

static void frt_detach_chan(struct frt *rt, struct chan *c)
{
	if (rt->corked) { /* what this channel's batch gathered still goes out */
		rt->corked = 0;
		if (rt->vc && !rt->vc->dead)
			pc_flush(rt->vc);
	}
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
	if (frt_nrx(rt) == 0 && rt->vc)
		pc_read_on(rt->vc, 0); /* nobody to deliver to: backpressure */
	relay_drained(rt);
	relay_wake(rt);
}

const char *const SDD_END_REASONS[SDD_N_ENDS] = {"FLOW_RELEASED",
                                                 "FLOW_EXPIRED",
                                                 "FLOW_RELOCATED",
                                                 "VAL_SERVER_UNREACHABLE",
                                                 "VAL_SERVER_IDENTITY",
                                                 "VAL_SERVER_CLOSED",
                                                 "VAL_SERVER_STALLED",
                                                 "TRANSMISSION_NOT_REQUESTED",
                                                 "OTHER"};

static void count_end(struct sg_sdd *s, const char *reason)
{
	size_t n = strcspn(reason, ":"), i = 0;
	while (i < SDD_N_ENDS - 1 &&
	       (strlen(SDD_END_REASONS[i]) != n || strncmp(SDD_END_REASONS[i], reason, n) != 0))
		i++;
	atomic_fetch_add_explicit(&s->flow_ends[i], 1, memory_order_relaxed);
}

/* Ends a flow: END to its channels, relay closed, flow marked released (the sweep frees it).
 * Call without mu. */
static void frt_end(struct frt *rt, const char *reason)
{
	if (rt->ended)
		return;
	rt->ended = 1;
	struct sg_sdd *s = rt->s;
	if (rt->attached_once) /* a flow released or expired unused is no data-plane end */
		count_end(s, reason);
	while (rt->nch) {
		struct chan *c = rt->ch[0];
		send_text(c->pc, SG_SDD_END, rt->f->id, reason, NULL);
		frt_detach_chan(rt, c);
		user_rebalance(c);
		chan_check_resume(c);
	}
	pc_free(rt->vc);
	rt->vc = NULL;
	pthread_mutex_lock(&s->mu);
	sg_sdd_flowtab_release(s->flows, rt->f);
	if (rt->vstate == 2)
		sdd_notify_locked(s, rt, "RELEASED");
	pthread_mutex_unlock(&s->mu);
	rt->vstate = 0;
	sg_log_info("sdd: flow of VAL service %s ended: %s", rt->f->val_service_id, reason);
}

void sdd_frt_free(struct frt *rt)
{
	if (!rt)
		return;
	pc_free(rt->vc);
	free(rt->identity);
	free(rt->owner);
	free(rt->val_user_id);
	free(rt);
}

/* Uplink: the payload of a DATA frame (in the channel's input buffer) to the relay. A full-size
 * payload is written at once when the relay's socket takes it; smaller ones are gathered and
 * written together at the end of the channel's batch (chan_uncork), so many small frames read
 * in one batch reach the VAL server in full records rather than a record each. */
static void frt_uplink(struct frt *rt, const struct chan *c, uint64_t seq, const uint8_t *p,
                       size_t len)
{
	if (!sg_sdd_dedup_accept(&rt->up, seq)) {
		atomic_fetch_add(&rt->s->dup_dropped, 1); /* URLLC: the other copy arrived first */
		return;
	}
	if (!rt->vc || !len)
		return;
	if (len < RECORD && rt->vc->up && !rt->vc->dead) {
		if (evbuffer_add(rt->vc->out, p, len) != 0) {
			pc_fail(rt->vc);
			return;
		}
		rt->corked = 1;
	} else {
		pc_write(rt->vc, p, len);
	}
	atomic_fetch_add_explicit(&rt->s->bytes_up, len, memory_order_relaxed);
	if (pc_queued(rt->vc) > c->rhwm) { /* its user's relay share (G4) */
		rt->up_blocked = 1;        /* the channel stops reading until the relay drains */
		rt->up_lwm = c->rhwm / 4;
	}
}

/* Downlink: relay bytes to every attached receiving channel (both, for URLLC) as DATA frames of
 * up to DCHUNK bytes, each written once per channel from dbuf. */
static void relay_read(struct frt *rt)
{
	struct pconn *pc = rt->vc;
	if (!pc || !pc->up || pc->dead || pc->in_read)
		return;
	pc->in_read = 1;
	pc->rd_on_w = 0;
	size_t total = 0;
	for (;;) {
		if (!frt_nrx(rt)) {
			pc_read_on(pc, 0);
			break;
		}
		/* a receiving channel over its mark: its share of its user's budget (G4) */
		int full = 0;
		for (int i = 0; i < rt->nch; i++)
			full |= chan_rx(rt, i) && pc_queued(rt->ch[i]->pc) > rt->ch[i]->hwm;
		if (full) {
			rt->down_blocked = 1;
			pc_read_on(pc, 0);
			break;
		}
		size_t n = 0;
		int st = pc_fill(pc, dbuf + SG_SDD_HDR_LEN, DCHUNK, &n);
		if (n) {
			rt->down_seq++;
			sg_sdd_frame_header(dbuf, SG_SDD_DATA, (uint32_t)n, rt->down_seq,
			                    rt->f->id);
			for (int i = 0; i < rt->nch; i++)
				if (chan_rx(rt, i))
					pc_write(rt->ch[i]->pc, dbuf, SG_SDD_HDR_LEN + n);
			atomic_fetch_add_explicit(&rt->s->bytes_down, n, memory_order_relaxed);
			total += n;
		}
		if (st == 2) {
			pc_fail(pc); /* the VAL server closed: relay_cb ends the flow */
			break;
		}
		if (st == 1)
			break;
		if (total >= RBUDGET) {
			event_active(pc->rev, EV_READ, 0); /* more is buffered: next loop pass */
			break;
		}
	}
	pc->in_read = 0;
}

/* seq: the next uplink sequence number. After 2^64 - 1 there is none (the flow's uplink
 * sequence space is used up: every frame is a duplicate); it stays 2^64 - 1 rather than
 * wrapping to 0, which no frame may carry. */
static void send_attached(struct frt *rt, struct chan *c)
{
	uint64_t next = rt->up.top == UINT64_MAX ? UINT64_MAX : rt->up.top + 1;
	send_frame(c->pc, SG_SDD_ATTACHED, rt->f->id, next, NULL, 0);
}

/* The relay's TLS handshake completed. */
static void relay_up(struct frt *rt)
{
	struct pconn *pc = rt->vc;
	/* SEALDD-S user plane (R3): the chain was verified by the profile; the identity must be
	 * the certificate SAN of the VAL server that requested the transmission */
	struct sg_tls_principal p;
	int good = SSL_get_verify_result(pc->ssl) == X509_V_OK &&
	           sg_tls_principal_from_ssl(pc->ssl, &p) == SG_OK;
	if (good) {
		good = p.authenticated && sg_tls_principal_has_san(&p, rt->identity);
		sg_tls_principal_clear(&p);
	}
	if (!good) {
		sg_log_warn("sdd: VAL server endpoint %s:%u does not present %s: relay refused",
		            rt->tgt.host, rt->tgt.port, rt->identity);
		frt_end(rt, "VAL_SERVER_IDENTITY");
		return;
	}
	evtimer_del(pc->tmo);
	pc->wtmo = &VAL_STALL;
	rt->vstate = 2;
	pthread_mutex_lock(&rt->s->mu);
	sdd_notify_locked(rt->s, rt, "ESTABLISHED");
	pthread_mutex_unlock(&rt->s->mu);
	for (int i = 0; i < rt->nch; i++)
		send_attached(rt, rt->ch[i]);
	pc_flush(pc); /* uplink data that came while connecting */
	relay_drained(rt);
	pc_read_on(pc, frt_nrx(rt) > 0);
	relay_read(rt); /* records that came with the handshake sit in OpenSSL's buffer */
}

static void relay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct frt *rt = arg;
	struct pconn *pc = rt->vc;
	if (!pc)
		return;
	ERR_clear_error(); /* nothing stale may make SSL_get_error report a failure */
	if (fd < 0) {      /* connect + handshake deadline */
		if (rt->vstate != 2)
			frt_end(rt, "VAL_SERVER_UNREACHABLE");
		return;
	}
	if (pc->dead) {
		frt_end(rt, rt->vstate == 2 ? "VAL_SERVER_CLOSED" : "VAL_SERVER_UNREACHABLE");
		return;
	}
	if (what & EV_TIMEOUT) {
		/* no write progress in VAL_TIMEOUT_S. While the relay does not read the VAL server
		 * (no receiving channel, or one over its mark) the VAL server may well be blocked
		 * writing to us and so have stopped reading: that is this side's backpressure, not
		 * its stall, and the wait goes on (bounded by the flow's lifetime). But not past
		 * sdd.channel_stall_s while the relay holds a channel's input (up_blocked): that
		 * channel's other flows and its AUTH renewals would wait as long, and no channel
		 * stall bound sees it (the channel's output is not what is stuck). A send-only
		 * flow to a VAL server that answers everything ends so once the buffers on the way
		 * are full. (With a receiving channel over its mark, it is that channel's client
		 * that does not read: the channel stall bound closes it, the flow lives on.) */
		int64_t now = sg_mono_ms(),
		        bound = (int64_t)rt->s->conf->sdd.channel_stall_s * 1000;
		if (!pc->wstall_ms)
			pc->wstall_ms = now - VAL_TIMEOUT_S * 1000;
		int held = rt->down_blocked || !frt_nrx(rt);
		if (held && !(rt->up_blocked && !rt->down_blocked && now - pc->wstall_ms >= bound))
			event_add(pc->wev, pc->wtmo);
		else
			frt_end(rt, "VAL_SERVER_STALLED");
		return;
	}
	if (pc->connecting) {
		int soerr = 0;
		socklen_t sl = sizeof soerr;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
			frt_end(rt, "VAL_SERVER_UNREACHABLE");
			return;
		}
		pc->connecting = 0;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	if (!pc->up) {
		int h = pc_handshake(pc);
		long vr = h < 0 ? SSL_get_verify_result(pc->ssl) : X509_V_OK;
		if (vr == X509_V_ERR_APPLICATION_VERIFICATION) {
			sg_log_warn("sdd: VAL server endpoint %s:%u does not present %s: relay "
			            "refused in the handshake",
			            rt->tgt.host, rt->tgt.port, rt->identity);
			frt_end(rt, "VAL_SERVER_IDENTITY");
		} else if (vr != X509_V_OK) {
			/* T5: the endpoint's certificate does not verify (revoked by the CRL,
			 * expired, another CA): it is not the VAL server, whatever its SAN */
			sg_log_warn(
			    "sdd: VAL server endpoint %s:%u: certificate refused (%s): relay "
			    "refused",
			    rt->tgt.host, rt->tgt.port, X509_verify_cert_error_string(vr));
			frt_end(rt, "VAL_SERVER_IDENTITY");
		} else if (h < 0) {
			frt_end(rt, "VAL_SERVER_UNREACHABLE");
		} else if (h > 0)
			relay_up(rt);
		return;
	}
	if ((what & EV_WRITE) || pc->wr_on_r) {
		pc_flush(pc);
		relay_drained(rt);
	}
	if (rt->vc != pc)
		return;
	if (!pc->dead && ((what & EV_READ) || pc->rd_on_w))
		relay_read(rt);
	if (rt->vc == pc && pc->dead)
		frt_end(rt, rt->vstate == 2 ? "VAL_SERVER_CLOSED" : "VAL_SERVER_UNREACHABLE");
}

/* SEALDD-S user plane (R3): the endpoint's leaf must carry the identity of the VAL server that
 * requested the transmission, checked inside the handshake after the profile's own checks, so
 * that an endpoint that is not that VAL server never receives this server's client certificate
 * (TLS 1.3 sends it only after the server's Finished). relay_up checks the principal again. */
static int relay_ex_idx = -1;
static pthread_once_t relay_ex_once = PTHREAD_ONCE_INIT;
static void relay_ex_init(void)
{
	relay_ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int relay_verify_cb(int ok, X509_STORE_CTX *sctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	const char *id = ssl ? SSL_get_ex_data(ssl, relay_ex_idx) : NULL;
	SSL_verify_cb prev = ssl ? SSL_CTX_get_verify_callback(SSL_get_SSL_CTX(ssl)) : NULL;
	if (!id)
		return 0;
	if (prev)
		ok = prev(ok, sctx);
	if (!ok || X509_STORE_CTX_get_error_depth(sctx) != 0)
		return ok;
	if (!sg_tls_cert_has_san(X509_STORE_CTX_get_current_cert(sctx), id)) {
		X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return 1;
}

static void relay_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	if (result == EVUTIL_EAI_CANCEL) { /* the flow ended while resolving */
		if (res)
			evutil_freeaddrinfo(res);
		return;
	}
	struct frt *rt = arg;
	struct pconn *pc = rt->vc;
	pc->dnsreq = NULL;
	evutil_socket_t fd = -1;
	if (result == 0 && res) {
		fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0 &&
		    errno != EINPROGRESS) {
			evutil_closesocket(fd);
			fd = -1;
		}
	}
	if (res)
		evutil_freeaddrinfo(res);
	if (fd < 0) {
		frt_end(rt, "VAL_SERVER_UNREACHABLE");
		return;
	}
	SSL *ssl = sg_tls_client_ssl_new(rt->s->val_tls);
	pthread_once(&relay_ex_once, relay_ex_init);
	if (!ssl || relay_ex_idx < 0 || !SSL_set_ex_data(ssl, relay_ex_idx, rt->identity)) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		frt_end(rt, "VAL_SERVER_UNREACHABLE");
		return;
	}
	SSL_set_verify(ssl, SSL_VERIFY_PEER, relay_verify_cb);
	if (pc_bind(rt->s, pc, fd, ssl, relay_cb, rt) != 0) {
		frt_end(rt, "VAL_SERVER_UNREACHABLE");
		return;
	}
	if (!evutil_inet_pton(AF_INET, rt->tgt.host, &(struct in_addr){0}) &&
	    !evutil_inet_pton(AF_INET6, rt->tgt.host, &(struct in6_addr){0}))
		SSL_set_tlsext_host_name(ssl, rt->tgt.host);
	SSL_set_connect_state(ssl);
	pc->connecting = 1;
	pc_write_on(pc, 1); /* writable: connected (or failed: SO_ERROR) */
}

/* Opens the relay: resolve (evdns), connect, TLS; bounded by VAL_TIMEOUT_S in all. */
static int frt_connect(struct frt *rt)
{
	struct sg_sdd *s = rt->s;
	if (!(rt->vc = pc_new()))
		return -1;
	if (!(rt->vc->tmo = evtimer_new(s->base, relay_cb, rt)))
		return -1;
	struct timeval t = {VAL_TIMEOUT_S, 0};
	evtimer_add(rt->vc->tmo, &t);
	rt->vstate = 1;
	char port[8];
	snprintf(port, sizeof port, "%u", rt->tgt.port);
	struct evutil_addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
	struct evdns_getaddrinfo_request *q =
	    evdns_getaddrinfo(s->dns, rt->tgt.host, port, &hints, relay_resolved, rt);
	/* a literal address or a hosts entry is answered at once (callback already run) */
	if (q && rt->vc)
		rt->vc->dnsreq = q;
	return 0;
}

/* ---- data plane: the output budget of a user's channels ----
 * TS 33.434 G4 (DoS measures): the output queued for one user's data channels together is
 * bounded by sdd.user_output_mib (docs/sdd-protocol.md §3). Each of the user's authenticated,
 * open channels has an equal share of it as its high-water mark, at least MIN_HWM and at most
 * HWM: above it the relays feeding the channel stop reading from their VAL servers and the
 * channel's own input stops (the answers it would queue); both go on once it drains to a
 * quarter of it. So a user holds at most max(budget, n x MIN_HWM) of output, plus one frame
 * per channel, however many channels n it opens (at most sdd.max_channels_per_user); before,
 * each channel could hold HWM. The user's channels are on a ring (unext/uprev): the shares are
 * set again when one joins (its first AUTH_OK) or leaves (closes), in O(the user's channels),
 * not O(all channels) as a walk of s->chans would be on every close; the per-frame path only
 * compares with c->hwm. */

/* One authenticated, open channel of user sub (on its ring), or NULL. */
static struct chan *user_find(const struct sg_sdd *s, const char *sub)
{
	for (struct chan *c = s->chans; c; c = c->next)
		if (c->unext && !strcmp(c->sub, sub))
			return c;
	return NULL;
}

/* The channels on c's ring (0 for NULL). */
static size_t user_count(const struct chan *c)
{
	size_t n = 0;
	if (c) {
		const struct chan *x = c;
		do {
			n++;
			x = x->unext;
		} while (x != c);
	}
	return n;
}

static void user_join(struct chan *c, struct chan *peer)
{
	if (!peer) {
		c->unext = c->uprev = c;
		return;
	}
	c->uprev = peer;
	c->unext = peer->unext;
	peer->unext->uprev = c;
	peer->unext = c;
}

/* Takes c off its user's ring; returns another channel of the user, or NULL. */
static struct chan *user_leave(struct chan *c)
{
	if (!c->unext)
		return NULL;
	struct chan *other = c->unext == c ? NULL : c->unext;
	c->uprev->unext = c->unext;
	c->unext->uprev = c->uprev;
	c->unext = c->uprev = NULL;
	return other;
}

/* Sets the channel's high-water mark. Lowered below what it holds: it stops feeding (relay_read)
 * and reading (chan_parse) at its next frame, and its drain (chan_cb) wakes both as ever. At or
 * below the new low-water mark: what was held back for it goes on now (deferred wakes, as this
 * runs inside other connections' callbacks), as the drain would once the channel wrote
 * something, which a channel whose queue is already at that mark may never do. */
static void chan_set_hwm(struct chan *c, size_t hwm)
{
	if (c->hwm == hwm)
		return;
	c->hwm = hwm;
	if (pc_queued(c->pc) > hwm / 4)
		return;
	for (size_t i = 0; i < c->natt; i++)
		relay_wake(c->att[i]);
	if (c->out_full) {
		c->out_full = 0;
		chan_wake(c);
	}
}

/* Sets the high-water mark of the relays the channel feeds. Raised: a relay held back at the
 * old mark whose output is at the new low-water mark lets its channels read again now. */
static void chan_set_rhwm(struct chan *c, size_t rhwm)
{
	if (c->rhwm == rhwm)
		return;
	c->rhwm = rhwm;
	for (size_t i = 0; i < c->natt; i++) {
		struct frt *rt = c->att[i];
		if (rt->up_blocked && rt->up_lwm < rhwm / 4) {
			rt->up_lwm = rhwm / 4;
			relay_drained(rt);
		}
	}
}

static size_t share_of(uint64_t budget, size_t n)
{
	uint64_t share = n ? budget / n : budget;
	return share < MIN_HWM ? MIN_HWM : share > HWM ? HWM : (size_t)share;
}

/* Gives every channel on c's ring its share of the user's budget, and the relays of the flows
 * attached to them theirs: the same budget again, divided among those attachments (a URLLC
 * flow's relay counts for both of its channels), for what the relays queue toward their VAL
 * servers (uplink). So a user holds at most about twice sdd.user_output_mib (or n x MIN_HWM
 * each), not a relay's HWM for every flow. Channels that are not on a ring (closing) are left
 * as they are. */
static void user_rebalance(struct chan *c)
{
	struct sg_sdd *s = c ? c->s : NULL;
	if (!c || !c->unext || s->stopping || atomic_load(&s->stop))
		return; /* (stopping: every channel is being closed) */
	uint64_t budget = (uint64_t)s->conf->sdd.user_output_mib << 20;
	size_t natt = 0;
	struct chan *x = c;
	do {
		natt += x->natt;
		x = x->unext;
	} while (x != c);
	size_t hwm = share_of(budget, user_count(c)), rhwm = share_of(budget, natt);
	do {
		chan_set_hwm(x, hwm);
		chan_set_rhwm(x, rhwm);
		x = x->unext;
	} while (x != c);
}

/* ---- data plane: channels ---- */

void sdd_chan_free(struct chan *c)
{
	struct sg_sdd *s = c->s;
	struct chan *peer = user_leave(c); /* (not closing: stalled, reset, or at the end) */
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
	user_rebalance(peer);
	if (c->unauth)
		sg_addrtab_dec(&s->unauth, c->addr);
	pc_free(c->pc);
	if (c->token) {
		OPENSSL_cleanse(c->token, strlen(c->token));
		free(c->token);
	}
	free(c->sub);
	free(c->att);
	free(c);
}

/* A channel-level error: ERROR frame, flows detached (they live on), close once flushed. */
static void chan_fail(struct chan *c, const char *code, const char *detail)
{
	if (c->closing)
		return;
	c->closing = 1;
	user_rebalance(user_leave(c)); /* the user's other channels share its budget */
	sg_log_info("sdd: data channel %s closed: %s%s%s", c->peer, code, detail ? ": " : "",
	            detail ? detail : "");
	while (c->natt)
		frt_detach_chan(c->att[0], c);
	send_text(c->pc, SG_SDD_ERROR, NULL, code, detail);
	pc_read_on(c->pc, 0);
	struct timeval t = {CLOSE_S, 0};
	evtimer_add(c->pc->tmo, &t);
	if (c->pc->wev)
		event_active(c->pc->wev, EV_WRITE, 0); /* the callback closes once flushed */
}

/* The channel's input waits: for a relay whose output is full (uplink backpressure), or for
 * its own output, which its frames' answers (ERROR, ATTACHED, AUTH_OK) fill as well as the
 * downlink: a client that sends without reading must not grow the server's memory. */
static int chan_blocked(const struct chan *c)
{
	if (c->out_full)
		return 1;
	for (size_t i = 0; i < c->natt; i++)
		if (c->att[i]->up_blocked)
			return 1;
	return 0;
}

static void chan_check_resume(struct chan *c)
{
	if (c->closing || c->pc->dead || !c->handshaken || chan_blocked(c))
		return;
	pc_read_on(c->pc, 1);
	chan_read(c); /* frames already buffered here or in OpenSSL wake no event */
}

/* The attached flow with this id, or NULL. The last one found is tried first: a channel
 * carrying many flows usually gets runs of DATA of one flow (each frame would otherwise scan up
 * to MAX_ATTACH ids). A plain memcmp: the list holds only ids this channel's peer attached
 * itself, so the comparison's timing tells it nothing it does not know. */
static struct frt *chan_flow(struct chan *c, const uint8_t *id)
{
	if (c->hot < c->natt && !memcmp(c->att[c->hot]->f->id, id, SG_SDD_FLOW_ID_LEN))
		return c->att[c->hot];
	for (size_t i = 0; i < c->natt; i++)
		if (!memcmp(c->att[i]->f->id, id, SG_SDD_FLOW_ID_LEN)) {
			c->hot = i;
			return c->att[i];
		}
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
	ERR_clear_error(); /* SSL_get_error on the data plane reads this thread's error queue */
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
	struct chan *peer = c->authed ? NULL : user_find(c->s, sub);
	if (!c->authed && user_count(peer) >= c->s->conf->sdd.max_channels_per_user) {
		/* G4: one user cannot take the endpoint's channels from the others */
		OPENSSL_cleanse(token, f->len);
		free(token);
		free(sub);
		atomic_fetch_add(&c->s->refused_user, 1);
		chan_fail(c, "LIMIT", "too many data channels for this user");
		return;
	}
	if (c->token) {
		OPENSSL_cleanse(c->token, strlen(c->token));
		free(c->token);
	}
	c->token = token;
	free(c->sub);
	c->sub = sub;
	if (c->unauth) { /* authenticated: no longer held against its address */
		c->unauth = 0;
		sg_addrtab_dec(&c->s->unauth, c->addr);
	}
	c->exp_ms = exp;
	c->next_check_ms = sg_now_ms() + TOKEN_RECHECK_MS; /* verified just now */
	if (!c->authed) { /* the user's budget is shared by one more channel */
		c->authed = 1;
		user_join(c, peer);
		user_rebalance(c);
	}
	evtimer_del(c->pc->tmo); /* the AUTH deadline is met */
	send_frame(c->pc, SG_SDD_AUTH_OK, NULL, (uint64_t)(exp / 1000), NULL, 0);
}

static void chan_attach(struct chan *c, const struct sg_sdd_frame *f)
{
	struct sg_sdd *s = c->s;
	if (chan_flow(c, f->flow)) {
		send_text(c->pc, SG_SDD_ERROR, f->flow, "ALREADY_ATTACHED", NULL);
		return;
	}
	if (c->natt >= MAX_ATTACH) {
		send_text(c->pc, SG_SDD_ERROR, f->flow, "LIMIT", "too many flows on this channel");
		return;
	}
	pthread_mutex_lock(&s->mu);
	struct sg_sdd_flow *fl = sg_sdd_flowtab_find(s->flows, f->flow, c->sub);
	struct frt *rt = fl ? fl->rt : NULL;
	/* D2 again when the relay is to be opened, which may be up to the flow's lifetime after
	 * the flow was authorized: a VAL server since removed, disabled, unregistered for the
	 * VAL service or registered with another certificate identity gets no user data */
	const char *why = NULL;
	if (rt && !rt->ended && rt->vstate == 0 &&
	    sdd_vals_serves_locked(s, rt->owner, fl->val_service_id, &why) == 0) {
		const struct sg_store_valserver *v = sg_store_vals_find(s->vals, rt->owner);
		if (!v->identity || strcmp(v->identity, rt->identity) != 0)
			why = "the VAL server is registered with another certificate identity";
	}
	/* ... and the transmission the flow was created under must still be the VAL service's:
	 * one replaced since (another VAL server took the VAL service over, or its VAL server
	 * moved its endpoint) relays no flow that had no relay yet to the old target */
	if (rt && !rt->ended && rt->vstate == 0 && rt->from_trans && !why) {
		const struct trans *t = s->trans;
		while (t && strcmp(t->svc, fl->val_service_id) != 0)
			t = t->next;
		if (!t || strcmp(t->client_id, rt->owner) != 0 ||
		    strcmp(t->identity, rt->identity) != 0 || t->tgt.port != rt->tgt.port ||
		    strcmp(t->tgt.host, rt->tgt.host) != 0)
			why =
			    "the transmission for this VAL service was replaced since the flow was "
			    "created";
	}
	pthread_mutex_unlock(&s->mu);
	/* another user's flow looks exactly like no flow: no oracle for guessing ids */
	if (!rt || rt->ended) {
		send_text(c->pc, SG_SDD_ERROR, f->flow, "UNKNOWN_FLOW", NULL);
		return;
	}
	if (why) {
		sg_log_warn(
		    "sdd: flow of VAL service %s (VAL server %s) ended at its first ATTACH: %s",
		    fl->val_service_id, rt->owner, why);
		send_text(c->pc, SG_SDD_ERROR, f->flow, "TRANSMISSION_NOT_REQUESTED", why);
		frt_end(rt, "TRANSMISSION_NOT_REQUESTED");
		return;
	}
	if (rt->nch >= (fl->urllc ? 2 : 1)) {
		send_text(c->pc, SG_SDD_ERROR, f->flow, "BUSY",
		          fl->urllc ? "the flow has two channels already"
		                    : "the flow is attached to another channel");
		return;
	}
	if (c->natt == c->capatt) {
		size_t cap = c->capatt ? c->capatt * 2 : 4;
		struct frt **v = realloc(c->att, cap * sizeof *v);
		if (!v) {
			send_text(c->pc, SG_SDD_ERROR, f->flow, "INTERNAL", "out of memory");
			return;
		}
		c->att = v;
		c->capatt = cap;
	}
	c->att[c->natt++] = rt;
	rt->attached_once = 1;
	rt->rx[rt->nch] = !(f->seq & 1);
	rt->ch[rt->nch++] = c;
	user_rebalance(c); /* one more relay shares the user's budget */
	if (rt->vstate == 0 && frt_connect(rt) != 0) {
		frt_end(rt, "VAL_SERVER_UNREACHABLE");
		return;
	}
	if (rt->vstate == 2 && !rt->ended) {
		send_attached(rt, c);
		if (frt_nrx(rt)) {
			pc_read_on(rt->vc, 1);
			relay_read(rt); /* what waited in OpenSSL's buffer wakes no event */
		}
	}
}

static void chan_frame(struct chan *c, const struct sg_sdd_frame *f)
{
	if (f->type == SG_SDD_AUTH) {
		chan_auth(c, f);
		return;
	}
	struct frt *rt; /* (chan_parse lets only AUTH through before AUTH_OK) */
	switch (f->type) {
	case SG_SDD_ATTACH:
		chan_attach(c, f);
		break;
	case SG_SDD_DATA: /* authenticated DATA is taken in chan_parse */
		send_text(c->pc, SG_SDD_ERROR, f->flow, "UNKNOWN_FLOW", "not attached");
		break;
	case SG_SDD_DETACH:
		if ((rt = chan_flow(c, f->flow))) {
			frt_detach_chan(rt, c);
			user_rebalance(c);
		}
		break;
	default:
		chan_fail(c, "PROTOCOL_ERROR", "frame type not allowed from a client");
	}
}

/* Writes what frt_uplink gathered for the channel's flows during a batch. */
static void chan_uncork(struct chan *c)
{
	for (size_t i = 0; i < c->natt; i++) {
		struct frt *rt = c->att[i];
		if (!rt->corked)
			continue;
		rt->corked = 0;
		if (rt->vc && !rt->vc->dead) {
			pc_flush(rt->vc);
			relay_drained(rt);
		}
	}
}

/* Takes the complete frames in the channel's input buffer, in place. A frame is taken whole
 * (so a URLLC copy is never half relayed); a header is judged as soon as it is complete (an
 * oversized length is refused before its payload arrives). */
static void chan_parse(struct chan *c)
{
	struct pconn *pc = c->pc;
	while (!c->closing && !pc->dead && !chan_blocked(c)) {
		size_t avail = pc->ilen - pc->ioff;
		if (avail < SG_SDD_HDR_LEN)
			break;
		const uint8_t *h = pc->ib + pc->ioff;
		struct sg_sdd_frame f;
		int r = sg_sdd_frame_parse(h, SG_SDD_HDR_LEN, &f);
		if (r < 0) {
			chan_fail(c,
			          r == SG_SDD_PERR_TOO_LARGE ? "FRAME_TOO_LARGE" : "PROTOCOL_ERROR",
			          sg_sdd_perr_str(r));
			break;
		}
		if (!c->authed && h[1] != SG_SDD_AUTH) {
			/* judged from the header: a client that has not authenticated cannot make
			 * the server hold the payload of any other frame */
			chan_fail(c, "UNAUTHENTICATED",
			          "the first frame must be AUTH with an access token");
			break;
		}
		size_t need = SG_SDD_HDR_LEN + get32(h + 4);
		if (avail < need)
			break;
		pc->ioff += need;
		if (h[1] == SG_SDD_DATA && c->authed) {
			/* the hot path: the payload goes to the relay from this buffer (the header
			 * alone was checked above: version, type, reserved, length, flow id) */
			uint64_t seq = (uint64_t)get32(h + 8) << 32 | get32(h + 12);
			struct frt *rt = chan_flow(c, h + 16);
			if (rt) {
				frt_uplink(rt, c, seq, h + SG_SDD_HDR_LEN, need - SG_SDD_HDR_LEN);
			} else {
				send_text(pc, SG_SDD_ERROR, h + 16, "UNKNOWN_FLOW", "not attached");
				c->out_full = pc_queued(pc) > c->hwm;
			}
			continue;
		}
		if (sg_sdd_frame_parse(h, need, &f) != (int)need) {
			chan_fail(c, "PROTOCOL_ERROR", "malformed frame");
			break;
		}
		chan_frame(c, &f);
		c->out_full = pc_queued(pc) > c->hwm;
	}
	chan_uncork(c);
	/* a partial frame moves to the front: the buffer always has room for a whole one */
	if (pc->ioff == pc->ilen) {
		pc->ioff = pc->ilen = 0;
	} else if (pc->ioff) {
		memmove(pc->ib, pc->ib + pc->ioff, pc->ilen - pc->ioff);
		pc->ilen -= pc->ioff;
		pc->ioff = 0;
	}
}

/* Reads what the channel's socket and OpenSSL hold, in batches of up to IBUF bytes, and takes
 * the frames after each batch. On EOF or error the frames before it are taken, then the
 * channel is marked dead (its callback frees it). */
static void chan_read(struct chan *c)
{
	struct pconn *pc = c->pc;
	if (pc->in_read || !c->handshaken)
		return;
	pc->in_read = 1;
	pc->rd_on_w = 0;
	size_t total = 0;
	for (;;) {
		if (c->closing || pc->dead)
			break;
		if (chan_blocked(c)) {
			pc_read_on(pc, 0); /* backpressure from a relay */
			break;
		}
		/* before AUTH_OK only an AUTH frame is taken (chan_parse), so a client that has
		 * not authenticated makes the server hold that much at most, not a whole DATA
		 * frame's buffer per channel; what follows AUTH grows it (kept bytes included) */
		size_t cap = c->authed ? IBUF : IBUF0;
		if (pc->icap < cap || !pc->ib) {
			uint8_t *b = realloc(pc->ib, cap);
			if (!b) {
				chan_fail(c, "INTERNAL", "out of memory");
				break;
			}
			pc->ib = b;
			pc->icap = cap;
		}
		size_t before = pc->ilen;
		int st = pc_fill(pc, pc->ib, pc->icap, &pc->ilen);
		total += pc->ilen - before;
		chan_parse(c);
		if (st == 2) {
			pc_fail(pc);
			break;
		}
		if (st == 1)
			break;
		if (total >= RBUDGET && !chan_blocked(c) && !c->closing) {
			event_active(pc->rev, EV_READ, 0); /* more is buffered: next loop pass */
			break;
		}
	}
	if (pc->ib && !pc->ilen) { /* an idle channel holds no input buffer */
		free(pc->ib);
		pc->ib = NULL;
		pc->icap = 0;
	}
	pc->in_read = 0;
}

/* The channel's output drained to its low-water mark: relays held back for it read again. */
static void chan_resume_relays(struct chan *c)
{
	for (size_t i = 0; i < c->natt; i++) {
		struct frt *rt = c->att[i];
		if (rt->down_blocked && rt->vc) {
			rt->down_blocked = 0;
			pc_read_on(rt->vc, 1);
			relay_read(rt);
		}
	}
}

static void chan_cb(evutil_socket_t fd, short what, void *arg)
{
	struct chan *c = arg;
	struct pconn *pc = c->pc;
	ERR_clear_error(); /* nothing stale may make SSL_get_error report a failure */
	if (fd < 0) {      /* deadline: TLS handshake + AUTH, or the close flush */
		if (!c->handshaken || c->closing)
			sdd_chan_free(c);
		else
			chan_fail(c, "TIMEOUT", "no AUTH frame in time");
		return;
	}
	if (!c->handshaken) {
		int h = pc->dead ? -1 : pc_handshake(pc);
		if (h < 0) {
			sg_tls_stats_count(pc->ssl, 0);
			sdd_chan_free(c);
			return;
		}
		if (h == 0)
			return;
		int ok = sg_tls_check_negotiated(pc->ssl) == SG_OK &&
		         SSL_version(pc->ssl) == TLS1_3_VERSION;
		sg_tls_stats_count(pc->ssl, ok);
		if (!ok) {
			sdd_chan_free(c);
			return;
		}
		c->handshaken = 1;
		/* G4: a client that stops reading holds its queued output (up to its share of
		 * sdd.user_output_mib, user_rebalance) and, by backpressure, its flows' relays;
		 * with no write progress in channel_stall_s the channel is closed
		 * (docs/sdd-protocol.md §4) */
		c->stall.tv_sec = (time_t)c->s->conf->sdd.channel_stall_s;
		pc->wtmo = &c->stall;
		pc_read_on(pc, 1);
		what = EV_READ; /* the AUTH frame may have come with the handshake's last flight */
	}
	if ((what & EV_TIMEOUT) && !c->closing) { /* the write stall bound (wtmo) */
		atomic_fetch_add(&c->s->chans_stalled, 1);
		sg_log_info("sdd: data channel %s closed: no write progress in %u s", c->peer,
		            c->s->conf->sdd.channel_stall_s);
		/* a reset: what the kernel still holds for a client that reads nothing (up to
		 * the socket's send buffer, MBs) is dropped now, not trickled out at a zero window
		 */
		struct linger l = {1, 0};
		setsockopt(pc->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
		sdd_chan_free(c);
		return;
	}
	if (c->closing) {
		if (!pc->dead)
			pc_flush(pc);
		if (pc->dead || !pc_queued(pc)) {
			if (!pc->dead)
				SSL_shutdown(pc->ssl); /* close_notify, best effort */
			ERR_clear_error();
			sdd_chan_free(c);
		}
		return;
	}
	if (!pc->dead && ((what & EV_WRITE) || pc->wr_on_r)) {
		pc_flush(pc);
		if (pc_queued(pc) <= c->hwm / 4) { /* the low-water mark */
			chan_resume_relays(c);
			if (c->out_full) {
				c->out_full = 0;
				chan_check_resume(c);
			}
		}
	}
	if (!pc->dead && !c->closing && ((what & EV_READ) || pc->rd_on_w))
		chan_read(c);
	if (pc->dead)
		sdd_chan_free(c);
}

void sdd_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                   void *arg)
{
	(void)l;
	struct sg_sdd *s = arg;
	/* G4: bounded channels in all, and per client address before authentication, so that
	 * connections which never authenticate cannot take the endpoint from everyone else; and
	 * new channels per client address and second, each a TLS handshake (docs/configuration.md)
	 */
	uint8_t key[16];
	int keyed = sg_addr_key(sa, (size_t)salen, key) == 0;
	atomic_ullong *refused = NULL;
	uint64_t retry;
	if (s->nchans >= s->conf->sdd.max_channels)
		refused = &s->refused_chans;
	else if (keyed && sg_addrtab_get(&s->unauth, key) >= s->conf->sdd.max_unauth_per_addr)
		refused = &s->refused_addr;
	else if (keyed && sg_ratelimit_take(&s->chan_rate, key, (uint64_t)sg_mono_us(), &retry) ==
	                      SG_RL_LIMITED)
		refused = &s->refused_rate;
	if (refused || atomic_load(&s->stop)) {
		if (refused)
			atomic_fetch_add(refused, 1);
		evutil_closesocket(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct chan *c = calloc(1, sizeof *c);
	SSL *ssl = c ? sg_tls_server_ssl_new(s->dtls) : NULL;
	if (!ssl || !(c->pc = pc_new())) {
		SSL_free(ssl);
		free(c);
		evutil_closesocket(fd);
		return;
	}
	c->s = s;
	c->hwm = c->rhwm = HWM; /* until its first AUTH_OK makes it one of its user's channels */
	if (pc_bind(s, c->pc, fd, ssl, chan_cb, c) != 0 ||
	    (keyed && !sg_addrtab_inc(&s->unauth, key))) {
		pc_free(c->pc); /* closes fd, frees ssl */
		free(c);
		return;
	}
	if (keyed) {
		memcpy(c->addr, key, sizeof key);
		c->unauth = 1;
	}
	SSL_set_accept_state(ssl);
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
	struct timeval t = {AUTH_TIMEOUT_S, 0};
	evtimer_add(c->pc->tmo, &t);
	pc_read_on(c->pc, 1);
	c->next = s->chans;
	if (s->chans)
		s->chans->prev = c;
	s->chans = c;
	s->nchans++;
	atomic_fetch_add_explicit(&s->chans_open, 1, memory_order_relaxed);
}

/* accept() failed (out of file descriptors, most often): the connection stays in the backlog
 * and the listener would be woken at once, again and again. It pauses for a second instead
 * (the tick enables it again). */
void sdd_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct sg_sdd *s = arg;
	int e = EVUTIL_SOCKET_ERROR();
	sg_log_warn("sdd: data endpoint: accept failed: %s; paused for 1 s",
	            evutil_socket_error_to_string(e));
	atomic_fetch_add(&s->accept_failed, 1);
	evconnlistener_disable(l);
	s->accept_resume_ms = sg_mono_ms() + 1000;
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
				frt_end(rt, w.dead[i]->end_reason ? w.dead[i]->end_reason
				            : w.dead[i]->expires_ms <= sg_now_ms()
				                ? "FLOW_EXPIRED"
				                : "FLOW_RELEASED");
		}
		pthread_mutex_lock(&s->mu);
		for (size_t i = 0; i < w.ndead; i++) {
			sdd_frt_free(w.dead[i]->rt);
			w.dead[i]->rt = NULL;
			sg_sdd_flowtab_remove(s->flows, w.dead[i]);
		}
		pthread_mutex_unlock(&s->mu);
		if (w.ndead < sizeof w.dead / sizeof w.dead[0])
			break;
	}
}

/* Token expiry (every sweep) and revocation (every TOKEN_RECHECK_MS per channel) stop a
 * channel's flows: the bound is documented in docs/sdd-protocol.md §4. Each channel is
 * re-checked TOKEN_RECHECK_MS after its last check (its AUTH_OK at first), so the checks of
 * many channels spread over the sweeps instead of all falling in one. */
static void sweep_tokens(struct sg_sdd *s)
{
	int64_t now = sg_now_ms();
	for (struct chan *c = s->chans, *n; c; c = n) {
		n = c->next;
		if (!c->authed || c->closing)
			continue;
		if (now >= c->exp_ms) {
			chan_fail(c, "TOKEN_EXPIRED", "send AUTH with a fresh token before exp");
			continue;
		}
		if (now < c->next_check_ms)
			continue;
		c->next_check_ms = now + TOKEN_RECHECK_MS;
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

void sdd_tick_cb(evutil_socket_t fd, short what, void *arg)
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
	if (s->accept_resume_ms && sg_mono_ms() >= s->accept_resume_ms) {
		s->accept_resume_ms = 0;
		evconnlistener_enable(s->lis);
	}
	sweep_flows(s);
	sweep_tokens(s);
	sdd_vals_tick(s);
	sdd_subsc_sweep(s);
	/* for /metrics: sealguard_sdd_output_queued_bytes, sealguard_sdd_relay_queued_bytes (a
	 * relay counted at its first channel) */
	unsigned long long q = 0, rq = 0;
	for (const struct chan *c = s->chans; c; c = c->next) {
		q += pc_queued(c->pc);
		for (size_t i = 0; i < c->natt; i++)
			if (c->att[i]->ch[0] == c && c->att[i]->vc)
				rq += pc_queued(c->att[i]->vc);
	}
	atomic_store_explicit(&s->out_queued, q, memory_order_relaxed);
	atomic_store_explicit(&s->relay_queued, rq, memory_order_relaxed);
}

void *sdd_dp_main(void *arg)
{
	struct sg_sdd *s = arg;
	event_base_dispatch(s->base);
	return NULL;
}
