/* net/conn.c: one connection's life on its worker loop: non-blocking TLS handshake driven by
 * raw read/write events (no bufferevent: no per-connection evbuffers, OpenSSL's buffers are
 * released while idle), reads into the worker's shared buffer, one write per batch of
 * responses, timeouts (handshake, header, body, idle) on libevent common-timeout queues. */
#include "base/log.h"
#include "http/req.h"
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void conn_free(struct sg_conn *c);
static void start_linger(struct sg_conn *c);

static void fmt_peer(char *out, size_t outlen, const struct sockaddr *sa)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
		snprintf(out, outlen, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
		snprintf(out, outlen, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(out, outlen, "unix");
	}
}

/* The handshake of c ended (or c goes first): its address no longer holds one of l's. */
static void hs_release(struct sg_conn *c)
{
	if (!c->hs_counted)
		return;
	c->hs_counted = 0;
	pthread_mutex_lock(&c->l->hmu);
	sg_addrtab_dec(&c->l->hs, c->addr_key);
	pthread_mutex_unlock(&c->l->hmu);
}

void sg_conn_accepted(struct sg_worker *w, struct sg_listener *l, int fd, const struct sockaddr *sa,
                      socklen_t salen, const uint8_t *key, int hs_counted)
{
	(void)salen;
	struct sg_conn *c = calloc(1, sizeof *c);
	if (!c)
		goto fail;
	c->w = w;
	c->l = l;
	c->fd = fd;
	if (key) {
		memcpy(c->addr_key, key, sizeof c->addr_key);
		c->keyed = 1;
		c->hs_counted = hs_counted != 0;
	}
	c->timer_kind = SG_TO_NONE;
	fmt_peer(c->peer, sizeof c->peer, sa);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (l->tls) {
		c->ssl = sg_tls_server_ssl_new(l->tls);
		if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
			SSL_free(c->ssl);
			free(c); /* the count is released below */
			goto fail;
		}
		SSL_set_accept_state(c->ssl);
		/* small idle footprint: OpenSSL frees its record buffers when they are empty */
		SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
		                         SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		/* one read() per TLS record batch instead of header + body reads */
		SSL_set_read_ahead(c->ssl, 1);
	}
	event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, on_read, c);
	event_assign(&c->wev, w->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
	evtimer_assign(&c->tmr, w->base, on_timer, c);
	event_add(&c->rev, NULL);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	SG_CNT_ADD(w->stats[l->idx].open, 1);
	if (c->ssl)
		sg_conn_set_timer(c, SG_TO_HANDSHAKE);
	else
		sg_h1_init(c);
	return;
fail:
	if (hs_counted) {
		pthread_mutex_lock(&l->hmu);
		sg_addrtab_dec(&l->hs, key);
		pthread_mutex_unlock(&l->hmu);
	}
	close(fd);
	atomic_fetch_sub(&l->nconns, 1);
}

void sg_conn_set_timer(struct sg_conn *c, int kind)
{
	if (kind == c->timer_kind)
		return;
	c->timer_kind = kind;
	if (kind == SG_TO_NONE) {
		evtimer_del(&c->tmr);
		return;
	}
	evtimer_add(&c->tmr, &c->w->to[c->l->idx][kind]);
}

#define SG_SPARE_MAX 16384

/* Gives c's (empty) output buffer back to its worker, or frees it. */
static void out_release(struct sg_conn *c)
{
	struct sg_worker *w = c->w;
	if (!c->out)
		return;
	if (!w->spare_out && c->ocap <= SG_SPARE_MAX) {
		w->spare_out = c->out;
		w->spare_cap = c->ocap;
	} else {
		free(c->out);
	}
	c->out = NULL;
	c->ocap = 0;
}

void sg_worker_free_spare(struct sg_worker *w)
{
	free(w->spare_out);
	w->spare_out = NULL;
	w->spare_cap = 0;
}

int sg_conn_out(struct sg_conn *c, const void *p, size_t n)
{
	if (!c->out && c->w->spare_out) {
		c->out = c->w->spare_out;
		c->ocap = c->w->spare_cap;
		c->w->spare_out = NULL;
		c->w->spare_cap = 0;
	}
	if (c->olen + n > c->ocap) {
		size_t nc = c->ocap ? c->ocap : 1024;
		while (nc < c->olen + n)
			nc *= 2;
		char *b = realloc(c->out, nc);
		if (!b)
			return -1;
		c->out = b;
		c->ocap = nc;
	}
	memcpy(c->out + c->olen, p, n);
	c->olen += n;
	return 0;
}

/* >0 bytes read; 0 would block; -1 EOF or error */
static ssize_t io_read(struct sg_conn *c, void *buf, size_t n)
{
	if (!c->ssl) {
		ssize_t r = read(c->fd, buf, n);
		if (r > 0)
			return r;
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		return -1;
	}
	ERR_clear_error();
	int r = SSL_read(c->ssl, buf, (int)n);
	if (r > 0)
		return r;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return 0;
	case SSL_ERROR_WANT_WRITE:
		event_add(&c->wev, NULL);
		return 0;
	default:
		return -1;
	}
}

static ssize_t io_write(struct sg_conn *c, const void *buf, size_t n)
{
	if (!c->ssl) {
		ssize_t r = write(c->fd, buf, n);
		if (r >= 0)
			return r;
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		return -1;
	}
	ERR_clear_error();
	int r = SSL_write(c->ssl, buf, (int)n);
	if (r > 0)
		return r;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	default:
		return -1;
	}
}

static int conn_idle(const struct sg_conn *c)
{
	if (c->proto == 20)
		return c->h2_active == 0;
	return c->proto == 11 && sg_h1_idle(c);
}

void sg_conn_flush(struct sg_conn *c)
{
	if (c->in_io || c->closing)
		return;
	if (c->proto == 20 && sg_h2_pump(c) != 0) {
		sg_conn_close(c);
		return;
	}
	while (c->ooff < c->olen) {
		ssize_t n = io_write(c, c->out + c->ooff, c->olen - c->ooff);
		if (n < 0) {
			sg_conn_close(c);
			return;
		}
		if (n == 0)
			break;
		c->ooff += (size_t)n;
	}
	if (c->ooff < c->olen) {
		if (!c->want_write) {
			c->want_write = 1;
			event_add(&c->wev, NULL);
		}
		return;
	}
	c->ooff = c->olen = 0;
	if (c->want_write) {
		c->want_write = 0;
		event_del(&c->wev);
	}
	if (conn_idle(c) && c->out) {
		/* nothing in flight: give the buffer back (idle connections hold no buffers) */
		out_release(c);
	}
	if (c->proto == 11 && c->close_after && !c->cur && !c->pending) {
		if (c->linger)
			start_linger(c);
		else
			sg_conn_close(c);
		return;
	}
	if (c->proto == 20 && sg_h2_done(c))
		sg_conn_close(c);
}

/* Lingering close (as nginx does): after an error response the client may still be sending
 * (an oversized body); closing with unread data would make the kernel send RST and the client
 * could lose our response. So: close_notify, half-close, then read and drop for a while. */
static void start_linger(struct sg_conn *c)
{
	if (c->ssl) {
		ERR_clear_error();
		SSL_shutdown(c->ssl);
	}
	shutdown(c->fd, SHUT_WR);
	c->proto = -1;
	c->timer_kind = SG_TO_NONE;
	evtimer_del(&c->tmr);
	struct timeval tv = {2, 0};
	evtimer_add(&c->tmr, &tv);
	c->timer_kind = SG_TO_LINGER;
	if (c->want_write) {
		c->want_write = 0;
		event_del(&c->wev);
	}
}

static void linger_read(struct sg_conn *c)
{
	for (;;) {
		ssize_t n = read(c->fd, c->w->rbuf, sizeof c->w->rbuf);
		if (n > 0) {
			c->lingered += (size_t)n;
			if (c->lingered < 4u << 20)
				continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			return;
		}
		conn_free(c);
		return;
	}
}

static void finish_handshake(struct sg_conn *c)
{
	hs_release(c); /* G4: the address's handshake slot is free again */
	if (sg_tls_check_negotiated(c->ssl) != SG_OK) {
		sg_tls_stats_count(c->ssl, 0);
		sg_conn_close(c);
		return;
	}
	sg_tls_stats_count(c->ssl, 1);
	c->principal = calloc(1, sizeof *c->principal);
	if (!c->principal || sg_tls_principal_from_ssl(c->ssl, c->principal) != SG_OK) {
		sg_conn_close(c);
		return;
	}
	const unsigned char *alpn = NULL;
	unsigned alen = 0;
	SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
	/* TS 29.549 §6.3 / RFC 9113 §3.2: "h2" via ALPN selects HTTP/2, anything else HTTP/1.1 */
	if (alen == 2 && memcmp(alpn, "h2", 2) == 0) {
		if (sg_h2_init(c) != 0) {
			sg_conn_close(c);
			return;
		}
		if (c->w->draining)
			sg_h2_goaway(c);
	} else {
		sg_h1_init(c);
	}
}

static void do_handshake(struct sg_conn *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		if (c->want_write && c->olen == 0) {
			c->want_write = 0;
			event_del(&c->wev);
		}
		finish_handshake(c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		if (c->want_write) {
			c->want_write = 0;
			event_del(&c->wev);
		}
		return;
	case SSL_ERROR_WANT_WRITE:
		if (!c->want_write) {
			c->want_write = 1;
			event_add(&c->wev, NULL);
		}
		return;
	default:
		sg_tls_stats_count(c->ssl, 0);
		sg_conn_close(c);
	}
}

/* Reads what is available, feeds the codec, then writes all produced output at once. */
static void conn_io(struct sg_conn *c)
{
	struct sg_worker *w = c->w;
	if (c->proto == -1) {
		linger_read(c);
		return;
	}
	if (c->proto == 0) {
		c->in_io = 1;
		do_handshake(c);
		c->in_io = 0;
		if (c->closing) {
			conn_free(c);
			return;
		}
		if (c->proto == 0)
			return;
		if (!SSL_has_pending(c->ssl)) {
			sg_conn_flush(c);
			return;
		}
	}
	c->in_io = 1;
	for (int i = 0; i < 32 && !c->closing; i++) {
		ssize_t n = io_read(c, w->rbuf, sizeof w->rbuf);
		if (n < 0) {
			c->closing = 1;
			break;
		}
		if (n == 0)
			break;
		int rc = c->proto == 20 ? sg_h2_input(c, (const char *)w->rbuf, (size_t)n)
		                        : sg_h1_input(c, (const char *)w->rbuf, (size_t)n);
		if (rc != 0) {
			c->closing = 1;
			break;
		}
		if ((size_t)n < sizeof w->rbuf && !(c->ssl && SSL_has_pending(c->ssl)))
			break;
	}
	c->in_io = 0;
	if (c->closing) {
		/* flush what we have best effort, then go */
		c->closing = 0;
		if (c->proto == 20)
			sg_h2_pump(c);
		if (c->olen > c->ooff)
			io_write(c, c->out + c->ooff, c->olen - c->ooff);
		conn_free(c);
		return;
	}
	sg_conn_flush(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_io(arg);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sg_conn *c = arg;
	if (c->proto == 0) {
		conn_io(c);
		return;
	}
	sg_conn_flush(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sg_conn *c = arg;
	int kind = c->timer_kind;
	c->timer_kind = SG_TO_NONE;
	if (kind == SG_TO_LINGER) {
		conn_free(c);
		return;
	}
	if (kind == SG_TO_HANDSHAKE) {
		sg_tls_stats_count(c->ssl, 0);
	} else if (c->proto == 11 && (kind == SG_TO_HEADER || kind == SG_TO_BODY) && c->cur) {
		/* RFC 9110 §15.5.9: 408, then close */
		struct sg_http_req *r = c->cur;
		c->cur = NULL;
		if (!r->method)
			r->method = "-";
		c->close_after = 1;
		sg_http_req_error(r, 408,
		                  kind == SG_TO_HEADER ? "the request head took too long"
		                                       : "the request body took too long");
		sg_h1_send(c, r);
		if (c->olen > c->ooff)
			io_write(c, c->out + c->ooff, c->olen - c->ooff);
		c->ooff = c->olen = 0;
		start_linger(c);
		return;
	} else if (c->proto == 20) {
		sg_h2_goaway(c);
		sg_h2_pump(c);
		if (c->olen > c->ooff)
			io_write(c, c->out + c->ooff, c->olen - c->ooff);
	}
	conn_free(c);
}

void sg_conn_close(struct sg_conn *c)
{
	if (c->in_io) {
		c->closing = 1;
		return;
	}
	conn_free(c);
}

void sg_conn_resume(struct sg_conn *c)
{
	if (c->proto == 11 && !c->pending) {
		int was = c->in_io;
		c->in_io = 1;
		sg_h1_resume(c);
		c->in_io = was;
		if (c->closing && !was) {
			conn_free(c);
			return;
		}
	}
	sg_conn_flush(c);
}

void sg_conn_drain(struct sg_conn *c)
{
	if (c->proto == -1)
		return; /* lingering: its timer ends it */
	if (c->proto == 0 || (c->proto == 11 && sg_h1_idle(c) && c->olen == 0)) {
		sg_conn_close(c);
		return;
	}
	if (c->proto == 11) {
		c->close_after = 1;
		return;
	}
	sg_h2_goaway(c);
	sg_conn_flush(c);
}

static void conn_free(struct sg_conn *c)
{
	struct sg_worker *w = c->w;
	if (c->areq) {
		c->areq->conn = NULL; /* its finish() frees it */
		c->areq = NULL;
	}
	sg_h1_free(c);
	sg_h2_free(c);
	event_del(&c->rev);
	event_del(&c->wev);
	evtimer_del(&c->tmr);
	hs_release(c);
	if (c->ssl) {
		if (c->proto != 0 && !(SSL_get_shutdown(c->ssl) & SSL_RECEIVED_SHUTDOWN)) {
			ERR_clear_error();
			SSL_shutdown(c->ssl); /* close_notify, best effort, never waits */
		}
		SSL_free(c->ssl);
	}
	ERR_clear_error();
	close(c->fd);
	if (c->principal) {
		sg_tls_principal_clear(c->principal);
		free(c->principal);
	}
	c->olen = c->ooff = 0;
	out_release(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	SG_CNT_ADD(w->stats[c->l->idx].open, (uint64_t)-1);
	atomic_fetch_sub(&c->l->nconns, 1);
	free(c);
	if (w->draining && w->nconns == 0)
		event_base_loopexit(w->base, NULL);
}
