/* sdd/plane.c: the SEALDD-UU user plane (framed TLS 1.3 data channels) and the SEALDD-S relay
 * to VAL servers, on the data plane thread (internal.h). */
#include "sdd/internal.h"

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
		sdd_notify_locked(s, rt, "RELEASED");
	pthread_mutex_unlock(&s->mu);
	rt->vstate = 0;
	sg_log_info("sdd: flow of VAL service %s ended: %s", rt->f->val_service_id, reason);
}

void sdd_frt_free(struct frt *rt)
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
		sdd_notify_locked(rt->s, rt, "ESTABLISHED");
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

void sdd_chan_free(struct chan *c)
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
	sdd_chan_free(arg);
}

static void chan_close_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	sdd_chan_free(arg);
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
			sdd_chan_free(c);
			return;
		}
		c->handshaken = 1;
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (!c->handshaken) {
			sdd_chan_free(c);
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
		sdd_chan_free(c);
	}
}

void sdd_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
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
			sdd_frt_free(w.dead[i]->rt);
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
	sweep_flows(s);
	sweep_tokens(s);
	sdd_vals_tick(s);
}

void *sdd_dp_main(void *arg)
{
	struct sg_sdd *s = arg;
	event_base_dispatch(s->base);
	return NULL;
}
