/* http/req.h (private to http/ and net/): the request object behind struct sg_http_req, shared by
 * the HTTP/1.1 and HTTP/2 codecs, and the glue that runs pre-handler + router on it. */
#ifndef SG_HTTP_REQ_H
#define SG_HTTP_REQ_H

#include "base/buf.h"
#include "http/http.h"

#include <stdint.h>

struct sg_conn;

struct sg_http_hdr {
	uint32_t name, nlen, val, vlen; /* offsets into arena */
};

struct sg_http_kv {
	char *name, *value;
};

struct sg_http_req {
	struct sg_conn *conn; /* NULL when the client went away while the handler was async */
	void *loop;
	int32_t stream_id; /* HTTP/2 */
	int version;
	int is_tls;
	const char *refpoint;
	const struct sg_tls_principal *principal;
	const char *peer;
	/* request: strings live in arena; pointers fixed once the head is complete */
	struct sg_buf arena;
	uint32_t method_off, url_off, url_len;
	struct sg_http_hdr *hdrs;
	unsigned nhdrs, chdrs;
	int last_was_value;
	char *method, *path, *raw_path, *query;
	struct sg_buf body;
	struct sg_http_kv *params, *qparams;
	unsigned nparams, nqparams, qparsed;
	char id[32];
	void *auth;
	void (*auth_free)(void *);
	int64_t t0_us;
	unsigned head : 1, async : 1, finished : 1, sent : 1, error : 1, body_too_large : 1,
	    hdr_too_large : 1;
	int err_status; /* set by the codec for a request refused before dispatch */
	/* response */
	int status;
	struct sg_buf rhdrs; /* "Name: value\r\n"... */
	struct sg_buf rbody;
	char *rctype;
	int has_cache_control;
	size_t rbody_off; /* HTTP/2 data provider position */
	size_t bytes_out;
	struct sg_http_req *next; /* HTTP/2 list per connection */
};

struct sg_http_req *sg_http_req_new(struct sg_conn *c, int version);
void sg_http_req_free(struct sg_http_req *r);
/* Adds one header (name lowercased) from complete strings (HTTP/2). */
int sg_http_req_add_header(struct sg_http_req *r, const char *n, size_t nl, const char *v,
                           size_t vl);
/* Fixes method/path/query pointers from arena offsets; decodes the path. -1: bad target. */
int sg_http_req_head_done(struct sg_http_req *r);
int sg_http_req_add_param(struct sg_http_req *r, const char *name, size_t nl, const char *val,
                          size_t vl);
/* Percent-decoding (RFC 3986 §2.1); plus_space for query strings. -1 on a bad escape or NUL. */
int sg_http_pct_decode(char *out, const char *in, size_t n, int plus_space);
const char *sg_http_reason(int status);
/* Runs pre-handler and router; sends unless async. */
void sg_http_req_dispatch(struct sg_http_req *r);
/* Sets an error response without running handlers (limits, malformed). */
void sg_http_req_error(struct sg_http_req *r, int status, const char *detail);

#endif
