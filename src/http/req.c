/* http/req.c: request and response objects shared by the HTTP/1.1 and HTTP/2 codecs, query
 * parameter decoding, ProblemDetails and the pre-handler -> router dispatch. */
#include "http/req.h"
#include "base/clock.h"
#include "base/log.h"
#include "net/conn.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct sg_http_req *sg_http_req_new(struct sg_conn *c, int version)
{
	struct sg_http_req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->conn = c;
	r->version = version;
	r->status = 200;
	if (c) {
		r->loop = c->w->base;
		r->is_tls = c->ssl != NULL;
		r->refpoint = c->l->name;
		r->principal = c->principal;
		r->peer = c->peer;
	}
	return r;
}

static void kv_free(struct sg_http_kv *kv, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		free(kv[i].name);
		free(kv[i].value);
	}
	free(kv);
}

void sg_http_req_free(struct sg_http_req *r)
{
	if (!r)
		return;
	if (r->auth && r->auth_free)
		r->auth_free(r->auth);
	sg_buf_free(&r->arena);
	free(r->hdrs);
	sg_buf_wipe(&r->body); /* may carry credentials (token requests) */
	kv_free(r->params, r->nparams);
	kv_free(r->qparams, r->nqparams);
	sg_buf_free(&r->rhdrs);
	sg_buf_wipe(&r->rbody); /* may carry tokens and keys */
	free(r->rctype);
	free(r);
}

int sg_http_req_add_header(struct sg_http_req *r, const char *n, size_t nl, const char *v,
                           size_t vl)
{
	if (r->nhdrs == r->chdrs) {
		unsigned nc = r->chdrs ? r->chdrs * 2 : 16;
		struct sg_http_hdr *h = realloc(r->hdrs, nc * sizeof *h);
		if (!h)
			return -1;
		r->hdrs = h;
		r->chdrs = nc;
	}
	struct sg_http_hdr *h = &r->hdrs[r->nhdrs];
	h->name = (uint32_t)r->arena.len;
	h->nlen = (uint32_t)nl;
	if (sg_buf_append(&r->arena, n, nl) || sg_buf_append(&r->arena, "", 1))
		return -1;
	h->val = (uint32_t)r->arena.len;
	h->vlen = (uint32_t)vl;
	if (sg_buf_append(&r->arena, v, vl) || sg_buf_append(&r->arena, "", 1))
		return -1;
	r->nhdrs++;
	return 0;
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch |= 0x20;
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

int sg_http_pct_decode(char *out, const char *in, size_t n, int plus_space)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = in[i];
		if (ch == '%') {
			int hi, lo;
			if (i + 2 >= n)
				return -1;
			hi = hexval((unsigned char)in[i + 1]);
			lo = hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			ch = (char)(hi << 4 | lo);
			if (ch == '\0')
				return -1;
			i += 2;
		} else if (ch == '+' && plus_space) {
			ch = ' ';
		} else if (ch == '\0') {
			return -1;
		}
		out[o++] = ch;
	}
	out[o] = '\0';
	return (int)o;
}

int sg_http_req_head_done(struct sg_http_req *r)
{
	if (r->url_len == 0)
		return -1;
	/* RFC 9112 §3.2: origin-form; absolute-form is accepted and reduced to its path */
	size_t off = r->url_off, len = r->url_len;
	const char *u = r->arena.data + off;
	if (u[0] != '/') {
		const char *s = memmem(u, len, "://", 3);
		if (!s)
			return -1;
		const char *p = memchr(s + 3, '/', len - (size_t)(s + 3 - u));
		if (!p)
			return -1;
		len -= (size_t)(p - u);
		off += (size_t)(p - u);
		u = p;
	}
	const char *q = memchr(u, '?', len);
	size_t plen = q ? (size_t)(q - u) : len;
	/* fragment is never sent by clients; cut it if present */
	const char *frag = memchr(u, '#', len);
	size_t qlen = q ? (frag && frag > q ? (size_t)(frag - q - 1) : len - plen - 1) : 0;
	if (frag && (!q || frag < q))
		plen = (size_t)(frag - u);
	size_t qoff = q ? (size_t)(q - r->arena.data) : 0;
	off = (size_t)(u - r->arena.data);
	if (sg_buf_reserve(&r->arena, plen * 2 + qlen + 3))
		return -1;
	/* the reserve above keeps arena.data stable from here on */
	u = r->arena.data + off;
	if (q)
		q = r->arena.data + qoff;
	size_t raw_off = r->arena.len;
	memcpy(r->arena.data + raw_off, u, plen);
	r->arena.data[raw_off + plen] = '\0';
	size_t dec_off = raw_off + plen + 1;
	int dl = sg_http_pct_decode(r->arena.data + dec_off, u, plen, 0);
	if (dl < 0)
		return -1;
	size_t q_off = dec_off + (size_t)dl + 1;
	if (q)
		memcpy(r->arena.data + q_off, q + 1, qlen);
	r->arena.data[q_off + qlen] = '\0';
	r->arena.len = q_off + qlen + 1;
	r->raw_path = r->arena.data + raw_off;
	r->path = r->arena.data + dec_off;
	r->query = r->arena.data + q_off;
	if (!r->method)
		r->method = r->arena.data + r->method_off;
	r->head = strcmp(r->method, "HEAD") == 0;
	return 0;
}

int sg_http_req_add_param(struct sg_http_req *r, const char *name, size_t nl, const char *val,
                          size_t vl)
{
	struct sg_http_kv *kv = realloc(r->params, (r->nparams + 1) * sizeof *kv);
	if (!kv)
		return -1;
	r->params = kv;
	char *n = strndup(name, nl), *v = malloc(vl + 1);
	if (!n || !v || sg_http_pct_decode(v, val, vl, 0) < 0) {
		free(n);
		free(v);
		return -1;
	}
	kv[r->nparams].name = n;
	kv[r->nparams].value = v;
	r->nparams++;
	return 0;
}

/* --- accessors --- */
const char *sg_http_req_method(const struct sg_http_req *r)
{
	return r->method ? r->method : "";
}
const char *sg_http_req_path(const struct sg_http_req *r)
{
	return r->path ? r->path : "";
}
const char *sg_http_req_query(const struct sg_http_req *r)
{
	return r->query ? r->query : "";
}

static void parse_query(struct sg_http_req *r)
{
	r->qparsed = 1;
	const char *q = r->query;
	if (!q || !*q)
		return;
	while (*q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		if (len) {
			const char *eq = memchr(q, '=', len);
			size_t nl = eq ? (size_t)(eq - q) : len;
			size_t vl = eq ? len - nl - 1 : 0;
			char *n = malloc(nl + 1), *v = malloc(vl + 1);
			struct sg_http_kv *kv =
			    n && v ? realloc(r->qparams, (r->nqparams + 1) * sizeof *kv) : NULL;
			if (!kv || sg_http_pct_decode(n, q, nl, 1) < 0 ||
			    sg_http_pct_decode(v, eq ? eq + 1 : "", vl, 1) < 0) {
				free(n);
				free(v);
				if (kv)
					r->qparams = kv;
			} else {
				r->qparams = kv;
				kv[r->nqparams].name = n;
				kv[r->nqparams].value = v;
				r->nqparams++;
			}
		}
		if (!amp)
			break;
		q = amp + 1;
	}
}

const char *sg_http_req_query_param(struct sg_http_req *r, const char *name)
{
	if (!r->qparsed)
		parse_query(r);
	for (unsigned i = 0; i < r->nqparams; i++)
		if (strcmp(r->qparams[i].name, name) == 0)
			return r->qparams[i].value;
	return NULL;
}

const char *sg_http_req_header(const struct sg_http_req *r, const char *name)
{
	size_t nl = strlen(name);
	for (unsigned i = 0; i < r->nhdrs; i++) {
		const struct sg_http_hdr *h = &r->hdrs[i];
		if (h->nlen == nl && strncasecmp(r->arena.data + h->name, name, nl) == 0)
			return r->arena.data + h->val;
	}
	return NULL;
}

const unsigned char *sg_http_req_body(const struct sg_http_req *r, size_t *len)
{
	if (len)
		*len = r->body.len;
	return r->body.data ? (const unsigned char *)r->body.data : (const unsigned char *)"";
}

const char *sg_http_req_param(const struct sg_http_req *r, const char *name)
{
	for (unsigned i = 0; i < r->nparams; i++)
		if (strcmp(r->params[i].name, name) == 0)
			return r->params[i].value;
	return NULL;
}

static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
extern char sg_server_id_prefix[8];

const char *sg_http_req_id(const struct sg_http_req *r)
{
	struct sg_http_req *m = (struct sg_http_req *)r;
	if (!m->id[0]) {
		/* short and unique within the process: random prefix, worker, per-worker sequence
		 */
		char tmp[16];
		int n = 0;
		uint64_t seq = 0;
		unsigned widx = 0;
		if (m->conn) {
			seq = ++m->conn->w->req_seq;
			widx = m->conn->w->idx;
		} else {
			static _Atomic uint64_t orphan_seq;
			seq = ++orphan_seq;
			widx = 99;
		}
		do {
			tmp[n++] = b36[seq % 36];
			seq /= 36;
		} while (seq && n < 15);
		int o = snprintf(m->id, sizeof m->id, "%s%u-", sg_server_id_prefix, widx);
		while (n > 0 && o < (int)sizeof m->id - 1)
			m->id[o++] = tmp[--n];
		m->id[o] = '\0';
	}
	return m->id;
}

const char *sg_http_req_refpoint(const struct sg_http_req *r)
{
	return r->refpoint ? r->refpoint : "";
}
int sg_http_req_version(const struct sg_http_req *r)
{
	return r->version;
}
int sg_http_req_is_tls(const struct sg_http_req *r)
{
	return r->is_tls;
}
const struct sg_tls_principal *sg_http_req_tls_principal(const struct sg_http_req *r)
{
	return r->principal;
}
const char *sg_http_req_peer_addr(const struct sg_http_req *r)
{
	return r->peer ? r->peer : "";
}
void *sg_http_req_auth(const struct sg_http_req *r)
{
	return r->auth;
}
void sg_http_req_set_auth(struct sg_http_req *r, void *auth, void (*free_fn)(void *))
{
	if (r->auth && r->auth_free && r->auth != auth)
		r->auth_free(r->auth);
	r->auth = auth;
	r->auth_free = free_fn;
}
void *sg_http_req_loop(const struct sg_http_req *r)
{
	return r->loop;
}

int sg_http_ctype_is(const char *ct, const char *want)
{
	if (!ct)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strcspn(ct, "; \t");
	return n == strlen(want) && strncasecmp(ct, want, n) == 0;
}

const char *sg_http_req_authority(const struct sg_http_req *r, const char *fallback)
{
	const char *host = sg_http_req_header(r, "host");
	size_t hl = host ? strlen(host) : 0;
	if (!hl || hl > 255 ||
	    strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") !=
	        hl)
		return fallback;
	return host;
}

json_t *sg_http_req_json(struct sg_http_req *r)
{
	return sg_http_req_json_as(r, "application/json");
}

json_t *sg_http_req_json_as(struct sg_http_req *r, const char *media)
{
	/* exactly the operation's media type: a merge patch sent to a PUT, say, is not taken
	 * for a whole resource (any +json would be) */
	if (!sg_http_ctype_is(sg_http_req_header(r, "content-type"), media)) {
		sg_http_resp_problem(r, 415, "UNSUPPORTED_MEDIA_TYPE", "the body must be %s",
		                     media);
		return NULL;
	}
	json_error_t e;
	json_t *j =
	    json_loadb(r->body.data ? r->body.data : "", r->body.len, JSON_REJECT_DUPLICATES, &e);
	if (!j) {
		sg_http_resp_problem(r, 400, "INVALID_MSG_FORMAT", "malformed JSON: %s at %d:%d",
		                     e.text, e.line, e.column);
		return NULL;
	}
	return j;
}

/* --- response --- */
void sg_http_resp_status(struct sg_http_req *r, int status)
{
	if (status >= 100 && status <= 599)
		r->status = status;
}

static int valid_token(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s <= ' ' || *s == ':' || *s == 127)
			return 0;
	return 1;
}

void sg_http_resp_header(struct sg_http_req *r, const char *name, const char *value)
{
	/* no header injection: names are tokens, values have no CR/LF (RFC 9110 §5.5) */
	if (!valid_token(name) || strpbrk(value, "\r\n"))
		return;
	/* hop-by-hop and framing headers belong to the codec */
	if (!strcasecmp(name, "content-length") || !strcasecmp(name, "connection") ||
	    !strcasecmp(name, "transfer-encoding") || !strcasecmp(name, "keep-alive") ||
	    !strcasecmp(name, "upgrade"))
		return;
	if (!strcasecmp(name, "content-type")) {
		free(r->rctype);
		r->rctype = strdup(value);
		return;
	}
	if (!strcasecmp(name, "cache-control"))
		r->has_cache_control = 1;
	sg_buf_printf(&r->rhdrs, "%s: %s\r\n", name, value);
}

void sg_http_resp_body(struct sg_http_req *r, const void *data, size_t len, const char *ctype)
{
	sg_buf_wipe(&r->rbody);
	if (len)
		sg_buf_append(&r->rbody, data, len);
	free(r->rctype);
	r->rctype = ctype ? strdup(ctype) : NULL;
}

void sg_http_resp_json(struct sg_http_req *r, int status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	sg_http_resp_status(r, status);
	if (s) {
		sg_http_resp_body(r, s, strlen(s), "application/json");
		free(s);
	} else {
		sg_http_resp_body(r, "null", 4, "application/json");
	}
	json_decref(j);
}

const char *sg_http_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 303:
		return "See Other";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 406:
		return "Not Acceptable";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 411:
		return "Length Required";
	case 412:
		return "Precondition Failed";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return status < 300   ? "OK"
		       : status < 400 ? "Redirect"
		       : status < 500 ? "Client Error"
		                      : "Server Error";
	}
}

void sg_http_resp_problem(struct sg_http_req *r, int status, const char *cause, const char *fmt,
                          ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	/* TS 29.501 §5.2.4.1 / RFC 7807 ProblemDetails */
	json_t *j = json_pack("{s:s,s:i,s:s}", "title", sg_http_reason(status), "status", status,
	                      "detail", detail);
	if (j && cause)
		json_object_set_new(j, "cause", json_string(cause));
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	sg_http_resp_status(r, status);
	if (s) {
		sg_http_resp_body(r, s, strlen(s), "application/problem+json");
		free(s);
	}
}

void sg_http_resp_too_many(struct sg_http_req *r, unsigned rate, const char *who, uint64_t retry_us)
{
	char secs[24];
	snprintf(secs, sizeof secs, "%llu", (unsigned long long)((retry_us + 999999u) / 1000000u));
	sg_http_resp_problem(r, 429, "TOO_MANY_REQUESTS",
	                     "more than %u requests per second %s; retry after %s s", rate, who,
	                     secs);
	sg_http_resp_header(r, "Retry-After", secs);
}

int sg_http_resp_get_status(const struct sg_http_req *r)
{
	return r->status;
}

void sg_http_req_error(struct sg_http_req *r, int status, const char *detail)
{
	const char *cause = status == 413   ? "REQUEST_ENTITY_TOO_LARGE"
	                    : status == 431 ? "REQUEST_HEADER_FIELDS_TOO_LARGE"
	                    : status == 408 ? "REQUEST_TIMEOUT"
	                    : status == 503 ? "SERVICE_UNAVAILABLE"
	                                    : "INVALID_MSG_FORMAT";
	sg_http_resp_problem(r, status, cause, "%s", detail);
}

/* --- dispatch --- */
static void send_response(struct sg_http_req *r)
{
	r->sent = 1;
	if (r->version == 20)
		sg_h2_send(r->conn, r);
	else
		sg_h1_send(r->conn, r);
}

void sg_http_req_dispatch(struct sg_http_req *r)
{
	struct sg_conn *c = r->conn;
	struct sg_listener *l = c->l;
	enum sg_http_result res = SG_HTTP_DONE;
	int pre = -1;
	/* G4: the per-address request rate, before the policy's token checks (the costly part a
	 * flood would aim at); the refusal is cheap and reaches no handler */
	if (l->rl_on && c->keyed) {
		uint64_t retry_us = 0;
		switch (sg_ratelimit_take(&l->rl, c->addr_key, (uint64_t)sg_mono_us(), &retry_us)) {
		case SG_RL_LIMITED:
			sg_http_resp_too_many(r, l->limits.requests_per_second, "from this address",
			                      retry_us);
			SG_CNT_ADD(c->w->stats[l->idx].limited, 1);
			send_response(r);
			return;
		case SG_RL_UNTRACKED:
			SG_CNT_ADD(c->w->stats[l->idx].untracked, 1);
			break;
		case SG_RL_OK:
			break;
		}
	}
	if (l->pre)
		pre = l->pre(r, l->pre_arg);
	if (pre != SG_HTTP_DONE) {
		if (l->router)
			res = sg_router_dispatch(l->router, r);
		else
			sg_http_resp_problem(r, 404, "RESOURCE_NOT_FOUND", "no such resource");
	}
	if (res == SG_HTTP_ASYNC && !r->finished) {
		r->async = 1;
		c->pending++;
		if (r->version == 11)
			c->areq = r;
		return;
	}
	send_response(r);
}

void sg_http_req_finish(struct sg_http_req *r)
{
	if (!r || r->finished)
		return;
	r->finished = 1;
	if (!r->async)
		return; /* finished inside the handler: dispatch sends it */
	struct sg_conn *c = r->conn;
	if (!c) {
		/* the client went away while the handler worked: nothing to send */
		sg_http_req_free(r);
		return;
	}
	c->pending--;
	if (c->areq == r)
		c->areq = NULL;
	send_response(r);
	sg_conn_resume(c);
}
