/* http/h1.c: the HTTP/1.1 codec (RFC 9112) on top of http_parser: keep-alive, pipelining (one
 * request at a time; later ones wait, buffered), chunked request bodies, Expect: 100-continue,
 * header/body limits (431/413) and malformed requests (400, then close). */
#include "base/clock.h"
#include "http/req.h"
#include "net/conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define C(p) ((struct sg_conn *)(p)->data)

/* Marks the current request as refused with status and stops the parser (pause). */
static int refuse(struct sg_conn *c, int status)
{
	if (c->cur && !c->cur->err_status)
		c->cur->err_status = status;
	http_parser_pause(&c->hp, 1);
	return 0;
}

static int head_account(struct sg_conn *c, size_t n)
{
	c->head_bytes += n;
	if (c->head_bytes > c->l->limits.max_header_bytes)
		return refuse(c, 431), -1;
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct sg_conn *c = C(p);
	struct sg_http_req *r = sg_http_req_new(c, 11);
	if (!r)
		return -1;
	c->cur = r;
	c->head_bytes = 0;
	r->t0_us = sg_mono_us();
	/* slowloris: the whole head must arrive within header_timeout_ms of its first byte */
	sg_conn_set_timer(c, SG_TO_HEADER);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct sg_conn *c = C(p);
	struct sg_http_req *r = c->cur;
	if (head_account(c, n))
		return 0;
	if (r->url_len == 0)
		r->url_off = (uint32_t)r->arena.len;
	r->url_len += (uint32_t)n;
	return sg_buf_append(&r->arena, at, n) ? -1 : 0;
}

/* Ends the URL or the header name/value being accumulated (NUL terminator). */
static int close_piece(struct sg_http_req *r)
{
	return sg_buf_append(&r->arena, "", 1) ? -1 : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct sg_conn *c = C(p);
	struct sg_http_req *r = c->cur;
	if (head_account(c, n + 4))
		return 0;
	if (r->nhdrs == 0 && !r->last_was_value && r->chdrs == 0) {
		if (close_piece(r)) /* end of URL */
			return -1;
	}
	if (r->nhdrs == 0 || r->last_was_value) {
		if (r->nhdrs && close_piece(r)) /* end of previous value */
			return -1;
		if (r->nhdrs == r->chdrs) {
			unsigned nc = r->chdrs ? r->chdrs * 2 : 16;
			struct sg_http_hdr *h = realloc(r->hdrs, nc * sizeof *h);
			if (!h)
				return -1;
			r->hdrs = h;
			r->chdrs = nc;
		}
		struct sg_http_hdr *h = &r->hdrs[r->nhdrs++];
		h->name = (uint32_t)r->arena.len;
		h->nlen = 0;
		h->val = 0;
		h->vlen = 0;
		r->last_was_value = 0;
	}
	r->hdrs[r->nhdrs - 1].nlen += (uint32_t)n;
	return sg_buf_append(&r->arena, at, n) ? -1 : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	struct sg_conn *c = C(p);
	struct sg_http_req *r = c->cur;
	if (head_account(c, n))
		return 0;
	struct sg_http_hdr *h = &r->hdrs[r->nhdrs - 1];
	if (!r->last_was_value) {
		if (close_piece(r))
			return -1;
		h->val = (uint32_t)r->arena.len;
		r->last_was_value = 1;
	}
	h->vlen += (uint32_t)n;
	return sg_buf_append(&r->arena, at, n) ? -1 : 0;
}

static int on_headers_complete(http_parser *p)
{
	struct sg_conn *c = C(p);
	struct sg_http_req *r = c->cur;
	const struct sg_limits *lim = &c->l->limits;
	if (close_piece(r)) /* URL (no headers) or last value */
		return -1;
	if (r->nhdrs && !r->last_was_value) { /* a name without a value callback: empty value */
		r->hdrs[r->nhdrs - 1].val = (uint32_t)r->arena.len;
		if (close_piece(r))
			return -1;
	}
	r->method = (char *)http_method_str((enum http_method)p->method);
	if (sg_http_req_head_done(r) != 0)
		return refuse(c, 400);
	if (!http_should_keep_alive(p))
		c->close_after = 1;
	if (p->upgrade)
		c->close_after =
		    1; /* we never switch protocols (RFC 9110 §7.8: Upgrade is optional) */
	/* RFC 9112 §6.3: Content-Length over the limit is refused before any body is read */
	if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX &&
	    p->content_length > lim->max_body_bytes)
		return refuse(c, 413);
	int has_body =
	    (p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != ULLONG_MAX);
	const char *expect = sg_http_req_header(r, "expect");
	if (expect) {
		/* RFC 9110 §10.1.1 */
		if (strcasecmp(expect, "100-continue") != 0)
			return refuse(c, 417);
		if (has_body && p->http_minor >= 1)
			sg_conn_out(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	}
	sg_conn_set_timer(c, has_body ? SG_TO_BODY : SG_TO_NONE);
	if (has_body && expect)
		sg_conn_flush(c);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct sg_conn *c = C(p);
	struct sg_http_req *r = c->cur;
	if (r->body.len + n > c->l->limits.max_body_bytes)
		return refuse(c, 413);
	return sg_buf_append(&r->body, at, n) ? -1 : 0;
}

static int on_message_complete(http_parser *p)
{
	struct sg_conn *c = C(p);
	sg_conn_set_timer(c, SG_TO_NONE);
	/* hand the request over outside the parser's callbacks */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void sg_h1_init(struct sg_conn *c)
{
	http_parser_init(&c->hp, HTTP_REQUEST);
	c->hp.data = c;
	c->proto = 11;
	sg_conn_set_timer(c, SG_TO_IDLE);
}

static const char *refusal_detail(int status)
{
	switch (status) {
	case 431:
		return "the request header fields are too large";
	case 413:
		return "the request body is too large";
	case 417:
		return "unsupported expectation";
	default:
		return "malformed HTTP/1.1 request";
	}
}

/* Answers an error and closes after it (the rest of the stream cannot be trusted). */
static void refuse_now(struct sg_conn *c, int status)
{
	struct sg_http_req *r = c->cur;
	c->cur = NULL;
	if (!r) {
		r = sg_http_req_new(c, 11);
		if (!r)
			return;
		r->t0_us = sg_mono_us();
	}
	if (!r->method)
		r->method = "-";
	c->close_after = 1;
	c->linger = 1; /* the client may still be sending: read and drop before closing */
	sg_http_req_error(r, status, refusal_detail(status));
	r->sent = 1;
	sg_h1_send(c, r);
}

static int save_input(struct sg_conn *c, const char *p, size_t n)
{
	if (!n)
		return 0;
	if (c->ilen + n > c->icap) {
		size_t nc = c->ilen + n + 1024;
		char *b = realloc(c->in, nc);
		if (!b)
			return -1;
		c->in = b;
		c->icap = nc;
	}
	memmove(c->in + c->ilen, p, n);
	c->ilen += n;
	return 0;
}

static int parse(struct sg_conn *c, const char *p, size_t n)
{
	while (n > 0) {
		if (c->close_after && !c->cur)
			return 0; /* after "Connection: close" or an error: ignore the rest */
		if (c->pending)
			return save_input(c, p, n);
		size_t done = http_parser_execute(&c->hp, &settings, p, n);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->hp);
		p += done;
		n -= done;
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->hp, 0);
			struct sg_http_req *r = c->cur;
			if (r && r->err_status) {
				refuse_now(c, r->err_status);
				return 0;
			}
			/* message complete */
			c->cur = NULL;
			if (r)
				sg_http_req_dispatch(r);
			continue;
		}
		if (e != HPE_OK) {
			refuse_now(c, e == HPE_HEADER_OVERFLOW ? 431 : 400);
			return 0;
		}
		if (c->hp.upgrade) {
			/* CONNECT / Upgrade: the parser stops; we answer and close */
			return 0;
		}
	}
	return 0;
}

int sg_h1_input(struct sg_conn *c, const char *p, size_t n)
{
	if (c->pending || c->ilen) {
		/* a request is being handled asynchronously: keep the bytes, bounded */
		if (c->ilen + n > c->l->limits.max_header_bytes + 65536)
			return -1;
		return save_input(c, p, n);
	}
	return parse(c, p, n);
}

/* Continues with buffered pipelined input after an async request finished. */
void sg_h1_resume(struct sg_conn *c)
{
	if (!c->ilen || c->pending)
		return;
	char *buf = c->in;
	size_t len = c->ilen;
	c->in = NULL;
	c->ilen = c->icap = 0;
	parse(c, buf, len);
	free(buf);
}

int sg_h1_idle(const struct sg_conn *c)
{
	return !c->cur && !c->pending && !c->ilen;
}

/* Appends n bytes to a fixed head buffer; *ok drops to 0 when it would not fit. */
static size_t head_put(char *head, size_t off, size_t cap, const char *s, size_t n, int *ok)
{
	if (!*ok || n > cap - off) {
		*ok = 0;
		return off;
	}
	memcpy(head + off, s, n);
	return off + n;
}
#define HEAD_LIT(s) head_put(head, n, sizeof head, s, sizeof s - 1, &fits)

/* Decimal digits of v into the end of out[24]; returns the start. */
static const char *fmt_u64(char out[24], unsigned long long v)
{
	char *p = out + 23;
	*p = '\0';
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return p;
}

void sg_h1_send(struct sg_conn *c, struct sg_http_req *r)
{
	/* the head is assembled by hand: this runs once per response, and snprintf's format
	 * interpretation was a measurable share of a keep-alive request */
	char head[512], num[24];
	int st = r->status >= 100 && r->status <= 999 ? r->status : 500;
	size_t blen = st == 204 || st == 304 ? 0 : r->rbody.len;
	const char *ct = r->rctype;
	if (!ct && blen)
		ct = "application/octet-stream";
	const char *reason = sg_http_reason(st);
	size_t n = 0;
	int fits = 1;
	n = HEAD_LIT("HTTP/1.1 ");
	const char *d = fmt_u64(num, (unsigned long long)st);
	n = head_put(head, n, sizeof head, d, strlen(d), &fits);
	n = HEAD_LIT(" ");
	n = head_put(head, n, sizeof head, reason, strlen(reason), &fits);
	n = HEAD_LIT("\r\n");
	if (ct) {
		n = HEAD_LIT("Content-Type: ");
		n = head_put(head, n, sizeof head, ct, strlen(ct), &fits);
		n = HEAD_LIT("\r\n");
	}
	if (st != 204 && st != 304) { /* RFC 9110 §8.6: neither has Content-Length (nor a body) */
		n = HEAD_LIT("Content-Length: ");
		d = fmt_u64(num, (unsigned long long)blen);
		n = head_put(head, n, sizeof head, d, strlen(d), &fits);
		n = HEAD_LIT("\r\n");
	}
	if (!r->has_cache_control)
		n = HEAD_LIT("Cache-Control: no-store\r\n");
	if (c->close_after)
		n = HEAD_LIT("Connection: close\r\n");
	if (!fits) {
		static const char fb[] = "HTTP/1.1 500 Internal Server Error\r\n"
		                         "Content-Length: 0\r\nConnection: close\r\n";
		memcpy(head, fb, sizeof fb - 1);
		n = sizeof fb - 1;
		c->close_after = 1; /* as the fallback head says */
	}
	int bad = sg_conn_out(c, head, n);
	if (r->rhdrs.len)
		bad |= sg_conn_out(c, r->rhdrs.data, r->rhdrs.len);
	bad |= sg_conn_out(c, "\r\n", 2);
	/* RFC 9110 §9.3.2: HEAD gets the headers of GET, without content */
	if (blen && !r->head)
		bad |= sg_conn_out(c, r->rbody.data, blen);
	r->bytes_out = r->head ? 0 : blen;
	if (bad)
		c->close_after = 1;
	sg_server_log_request(c, r);
	sg_http_req_free(r);
	if (!c->cur && !c->pending)
		sg_conn_set_timer(c, SG_TO_IDLE);
}

void sg_h1_free(struct sg_conn *c)
{
	if (c->cur) {
		sg_http_req_free(c->cur);
		c->cur = NULL;
	}
	free(c->in);
	c->in = NULL;
	c->ilen = c->icap = 0;
}
