/* http/h2.c: the HTTP/2 server codec (RFC 9113) on nghttp2, used when ALPN selected "h2"
 * (TS 29.549 §6.3: HTTP/2 over TLS recommended). Input is fed with mem_recv, output collected
 * with mem_send into the connection's buffer, so one TLS write carries many frames. */
#include "base/clock.h"
#include "http/req.h"
#include "net/conn.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct h2 {
	nghttp2_session *s;
	struct sg_http_req *reqs; /* open streams */
	int goaway;
};

static void link_req(struct h2 *h, struct sg_http_req *r)
{
	r->next = h->reqs;
	h->reqs = r;
}

static void unlink_req(struct h2 *h, struct sg_http_req *r)
{
	for (struct sg_http_req **pp = &h->reqs; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			return;
		}
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct sg_conn *c = ud;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct sg_http_req *r = sg_http_req_new(c, 20);
	if (!r)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	r->stream_id = f->hd.stream_id;
	r->t0_us = sg_mono_us();
	link_req(c->h2, r);
	c->h2_active++;
	nghttp2_session_set_stream_user_data(s, f->hd.stream_id, r);
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	(void)flags;
	struct sg_conn *c = ud;
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct sg_http_req *r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (!r || r->hdr_too_large)
		return 0;
	/* RFC 7541 §4.1 entry size; the list is bounded like an HTTP/1.1 head (431) */
	r->bytes_out += nl + vl + 32; /* reused as header-size accumulator until the response */
	if (r->bytes_out > c->l->limits.max_header_bytes) {
		r->hdr_too_large = 1;
		return 0;
	}
	if (nl == 7 && memcmp(name, ":method", 7) == 0) {
		r->method_off = (uint32_t)r->arena.len;
		if (sg_buf_append(&r->arena, value, vl) || sg_buf_append(&r->arena, "", 1))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		r->method = (char *)1; /* marks "set"; fixed in head_done */
		return 0;
	}
	if (nl == 5 && memcmp(name, ":path", 5) == 0) {
		r->url_off = (uint32_t)r->arena.len;
		r->url_len = (uint32_t)vl;
		if (sg_buf_append(&r->arena, value, vl) || sg_buf_append(&r->arena, "", 1))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		return 0;
	}
	if (nl == 10 && memcmp(name, ":authority", 10) == 0) {
		/* RFC 9113 §8.3.1: :authority stands in for Host */
		name = (const uint8_t *)"host";
		nl = 4;
	} else if (nl && name[0] == ':') {
		return 0; /* :scheme; nghttp2 already validated pseudo-headers */
	}
	if (sg_http_req_add_header(r, (const char *)name, nl, (const char *)value, vl))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                   void *ud)
{
	(void)flags;
	struct sg_conn *c = ud;
	struct sg_http_req *r = nghttp2_session_get_stream_user_data(s, sid);
	if (!r || r->body_too_large || r->sent)
		return 0;
	if (r->body.len + len > c->l->limits.max_body_bytes) {
		r->body_too_large = 1;
		sg_buf_wipe(&r->body);
		return 0;
	}
	if (sg_buf_append(&r->body, data, len))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static void refuse(struct sg_http_req *r, int status, const char *detail)
{
	sg_http_req_error(r, status, detail);
	r->sent = 1;
	sg_h2_send(r->conn, r);
}

static int fix_head(struct sg_http_req *r)
{
	if (r->method != (char *)1)
		return -1;
	r->method = NULL;
	return sg_http_req_head_done(r);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct sg_conn *c = ud;
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	struct sg_http_req *r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (!r || r->sent)
		return 0;
	int end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
		if (r->hdr_too_large) {
			r->method = r->method == (char *)1 ? NULL : r->method;
			refuse(r, 431, "the request header fields are too large");
			return 0;
		}
		if (fix_head(r) != 0) {
			r->method = NULL;
			refuse(r, 400, "malformed HTTP/2 request");
			return 0;
		}
		r->bytes_out = 0;
		const char *cl = sg_http_req_header(r, "content-length");
		if (cl && strtoull(cl, NULL, 10) > c->l->limits.max_body_bytes) {
			refuse(r, 413, "the request body is too large");
			return 0;
		}
	}
	if (!end)
		return 0;
	if (r->body_too_large) {
		refuse(r, 413, "the request body is too large");
		return 0;
	}
	sg_http_req_dispatch(r);
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
	(void)code;
	struct sg_conn *c = ud;
	struct sg_http_req *r = nghttp2_session_get_stream_user_data(s, sid);
	if (!r)
		return 0;
	nghttp2_session_set_stream_user_data(s, sid, NULL);
	unlink_req(c->h2, r);
	c->h2_active--;
	if (r->async && !r->finished) {
		/* the client reset the stream while the handler works: finish() will free it */
		r->conn = NULL;
		c->pending--;
	} else {
		sg_http_req_free(r);
	}
	return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
	(void)s;
	(void)sid;
	(void)ud;
	struct sg_http_req *r = src->ptr;
	size_t left = r->rbody.len - r->rbody_off;
	size_t n = left < len ? left : len;
	if (n)
		memcpy(buf, r->rbody.data + r->rbody_off, n);
	r->rbody_off += n;
	if (r->rbody_off == r->rbody.len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static nghttp2_session_callbacks *g_cbs;
static nghttp2_option *g_opt;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_callbacks(void)
{
	nghttp2_session_callbacks *cb;
	if (nghttp2_session_callbacks_new(&cb) != 0)
		return;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	if (nghttp2_option_new(&g_opt) == 0)
		/* bound the HPACK encoder table we keep per connection (RFC 7541 §4.2) */
		nghttp2_option_set_max_deflate_dynamic_table_size(g_opt, 4096);
	g_cbs = cb;
}

int sg_h2_init(struct sg_conn *c)
{
	pthread_once(&g_once, init_callbacks);
	if (!g_cbs)
		return -1;
	struct h2 *h = calloc(1, sizeof *h);
	if (!h)
		return -1;
	if (nghttp2_session_server_new2(&h->s, g_cbs, c, g_opt) != 0) {
		free(h);
		return -1;
	}
	c->h2 = h;
	c->proto = 20;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->l->limits.h2_max_streams},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)c->l->limits.max_header_bytes},
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0)
		return -1;
	sg_conn_set_timer(c, SG_TO_IDLE);
	return 0;
}

int sg_h2_input(struct sg_conn *c, const char *p, size_t n)
{
	struct h2 *h = c->h2;
	ssize_t rv = nghttp2_session_mem_recv(h->s, (const uint8_t *)p, n);
	if (rv < 0)
		return -1;
	if (c->h2_active > c->pending) {
		/* streams still arriving: body_timeout of silence ends the connection (re-armed on
		 * every input, so a long busy multiplexed connection is never cut) */
		c->timer_kind = SG_TO_NONE;
		sg_conn_set_timer(c, SG_TO_BODY);
	} else if (c->h2_active == 0)
		sg_conn_set_timer(c, SG_TO_IDLE);
	else
		sg_conn_set_timer(c, SG_TO_NONE);
	return 0;
}

int sg_h2_pump(struct sg_conn *c)
{
	struct h2 *h = c->h2;
	if (!h)
		return 0;
	for (;;) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(h->s, &data);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		if (sg_conn_out(c, data, (size_t)n))
			return -1;
	}
	return 0;
}

static size_t lower_copy(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)((src[i] >= 'A' && src[i] <= 'Z') ? src[i] + 32 : src[i]);
	return n;
}

void sg_h2_send(struct sg_conn *c, struct sg_http_req *r)
{
	struct h2 *h = c->h2;
	nghttp2_nv nva[64];
	size_t nn = 0;
	char status[4], clen[24];
	snprintf(status, sizeof status, "%d", r->status);
	snprintf(clen, sizeof clen, "%zu", r->rbody.len);
#define NV(n, v, vl)                                                                               \
	do {                                                                                       \
		nva[nn].name = (uint8_t *)(n);                                                     \
		nva[nn].namelen = strlen(n);                                                       \
		nva[nn].value = (uint8_t *)(v);                                                    \
		nva[nn].valuelen = (vl);                                                           \
		nva[nn].flags = NGHTTP2_NV_FLAG_NONE;                                              \
		nn++;                                                                              \
	} while (0)
	NV(":status", status, strlen(status));
	const char *ct = r->rctype ? r->rctype : r->rbody.len ? "application/octet-stream" : NULL;
	if (ct)
		NV("content-type", ct, strlen(ct));
	if (r->status != 204 && r->status != 304) /* RFC 9110 §8.6 */
		NV("content-length", clen, strlen(clen));
	if (!r->has_cache_control)
		NV("cache-control", "no-store", 8);
	/* RFC 9113 §8.2.1: field names in lowercase; copy "Name: value\r\n" lines */
	char *lower = NULL;
	if (r->rhdrs.len) {
		lower = malloc(r->rhdrs.len + 1);
		if (lower) {
			memcpy(lower, r->rhdrs.data, r->rhdrs.len + 1);
			char *p = lower;
			while (*p && nn < sizeof nva / sizeof nva[0]) {
				char *colon = strchr(p, ':');
				char *eol = strstr(p, "\r\n");
				if (!colon || !eol || colon > eol)
					break;
				lower_copy(p, p, (size_t)(colon - p));
				char *v = colon + 1;
				while (*v == ' ')
					v++;
				nva[nn].name = (uint8_t *)p;
				nva[nn].namelen = (size_t)(colon - p);
				nva[nn].value = (uint8_t *)v;
				nva[nn].valuelen = (size_t)(eol - v);
				nva[nn].flags = NGHTTP2_NV_FLAG_NONE;
				nn++;
				p = eol + 2;
			}
		}
	}
#undef NV
	nghttp2_data_provider dp = {.source.ptr = r, .read_callback = read_body};
	int has_body = r->rbody.len && !r->head && r->status != 204 && r->status != 304;
	r->bytes_out = has_body ? r->rbody.len : 0;
	if (nghttp2_submit_response(h->s, r->stream_id, nva, nn, has_body ? &dp : NULL) != 0)
		nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, r->stream_id,
		                          NGHTTP2_INTERNAL_ERROR);
	free(lower);
	sg_server_log_request(c, r);
}

void sg_h2_goaway(struct sg_conn *c)
{
	struct h2 *h = c->h2;
	if (!h || h->goaway)
		return;
	h->goaway = 1;
	/* RFC 9113 §6.8: graceful shutdown, streams already received still complete */
	nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE,
	                      nghttp2_session_get_last_proc_stream_id(h->s), NGHTTP2_NO_ERROR, NULL,
	                      0);
}

int sg_h2_done(const struct sg_conn *c)
{
	struct h2 *h = c->h2;
	if (!h)
		return 1;
	if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s))
		return 1;
	return h->goaway && c->h2_active == 0 && !nghttp2_session_want_write(h->s);
}

void sg_h2_free(struct sg_conn *c)
{
	struct h2 *h = c->h2;
	if (!h)
		return;
	/* detach async requests: their finish() frees them */
	for (struct sg_http_req *r = h->reqs, *n; r; r = n) {
		n = r->next;
		nghttp2_session_set_stream_user_data(h->s, r->stream_id, NULL);
		if (r->async && !r->finished)
			r->conn = NULL;
		else
			sg_http_req_free(r);
	}
	h->reqs = NULL;
	c->h2_active = 0;
	c->pending = 0;
	nghttp2_session_del(h->s);
	free(h);
	c->h2 = NULL;
}
