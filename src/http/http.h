/* http/http.h: the request/response objects handlers see, the router (method + path template),
 * and ProblemDetails errors. The same objects serve HTTP/1.1 and HTTP/2 (chosen by ALPN). */
#ifndef SG_HTTP_HTTP_H
#define SG_HTTP_HTTP_H

#include "base/err.h"
#include "tls/tls.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct sg_http_req; /* owned by the connection; valid until the response is sent */

/* --- request (read-only for handlers) --- */
const char *sg_http_req_method(const struct sg_http_req *r); /* "GET" */
const char *sg_http_req_path(const struct sg_http_req *r);   /* decoded path, no query */
const char *sg_http_req_query(const struct sg_http_req *r);  /* raw query or "" */
/* Value of a query parameter (percent-decoded, first occurrence) or NULL. The returned string
 * lives as long as the request. */
const char *sg_http_req_query_param(struct sg_http_req *r, const char *name);
const char *sg_http_req_header(const struct sg_http_req *r, const char *name); /* case-insens. */
const unsigned char *sg_http_req_body(const struct sg_http_req *r, size_t *len);
const char *sg_http_req_param(const struct sg_http_req *r, const char *name); /* {name} in route */
const char *sg_http_req_id(const struct sg_http_req *r);       /* request id for logs */
const char *sg_http_req_refpoint(const struct sg_http_req *r); /* listener name, "SEAL-UU" */
int sg_http_req_version(const struct sg_http_req *r);          /* 11 or 20 */
int sg_http_req_is_tls(const struct sg_http_req *r);
const struct sg_tls_principal *sg_http_req_tls_principal(const struct sg_http_req *r);
const char *sg_http_req_peer_addr(const struct sg_http_req *r); /* "127.0.0.1:53422" */
/* Authenticated principal set by the auth/ policy before the handler runs (opaque here). */
void *sg_http_req_auth(const struct sg_http_req *r);
void sg_http_req_set_auth(struct sg_http_req *r, void *auth, void (*free_fn)(void *));
/* Parses the body as JSON when its Content-Type is media (the OpenAPI operation's request
 * media type; parameters such as charset allowed). On failure it has already answered 415 (any
 * other media type) or 400 (malformed JSON) with a ProblemDetails and returns NULL. Caller owns
 * the json_t. sg_http_req_json: media application/json. */
json_t *sg_http_req_json_as(struct sg_http_req *r, const char *media);
json_t *sg_http_req_json(struct sg_http_req *r);
/* 1 when the Content-Type value ct names media type want (case-insensitive; whitespace before
 * it and parameters after it allowed), else 0. */
int sg_http_ctype_is(const char *ct, const char *want);
/* The authority the client addressed (Host, or :authority on HTTP/2) when it is a plain
 * host[:port] of at most 255 bytes, else fallback: for the apiRoot of a Location. */
const char *sg_http_req_authority(const struct sg_http_req *r, const char *fallback);

/* --- response --- */
void sg_http_resp_status(struct sg_http_req *r, int status);
/* Adds a response header (copied). Hop-by-hop headers are managed by the codec. */
void sg_http_resp_header(struct sg_http_req *r, const char *name, const char *value);
/* Sets the body (copied). */
void sg_http_resp_body(struct sg_http_req *r, const void *data, size_t len, const char *ctype);
/* Sets a JSON body (serialized compactly) with the given status. Steals the caller's reference
 * to j (like json_object_set_new): do not json_decref(j) afterwards. */
void sg_http_resp_json(struct sg_http_req *r, int status, json_t *j);
/* ProblemDetails (TS 29.122 / RFC 7807) as application/problem+json: status, title, detail,
 * and the 3GPP cause (may be NULL). */
void sg_http_resp_problem(struct sg_http_req *r, int status, const char *cause, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
/* G4: 429 ProblemDetails (cause TOO_MANY_REQUESTS, detail "more than RATE requests per second
 * WHO; retry after N s") with Retry-After: N, N = retry_us rounded up to seconds. */
void sg_http_resp_too_many(struct sg_http_req *r, unsigned rate, const char *who,
                           uint64_t retry_us);
int sg_http_resp_get_status(const struct sg_http_req *r);

/* --- handlers and router --- */
/* A handler fills the response and returns SG_HTTP_DONE; the codec sends it. A handler that
 * must wait (a durable write on the worker pool) returns SG_HTTP_ASYNC and later, on the same
 * loop thread, calls sg_http_req_finish(). */
enum sg_http_result { SG_HTTP_DONE = 0, SG_HTTP_ASYNC = 1 };
typedef enum sg_http_result (*sg_http_handler)(struct sg_http_req *r, void *arg);
void sg_http_req_finish(struct sg_http_req *r);
/* The event loop (struct event_base *) the request runs on, for async handlers. */
void *sg_http_req_loop(const struct sg_http_req *r);

struct sg_router;
struct sg_router *sg_router_new(void);
void sg_router_free(struct sg_router *rt);
/* Adds a route. Template segments in braces match one path segment: "/ss-gm/v1/{id}".
 * Later additions of the same method+template are rejected (SG_ERR_EXISTS). */
sg_err sg_router_add(struct sg_router *rt, const char *method, const char *tmpl, sg_http_handler h,
                     void *arg);
/* Dispatches: 404 ProblemDetails when no template matches, 405 (with Allow) when the path
 * matches but the method does not. Fills route params into r. */
enum sg_http_result sg_router_dispatch(struct sg_router *rt, struct sg_http_req *r);

#endif
