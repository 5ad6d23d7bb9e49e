/* http/router.c: method + path template routing. A template is a sequence of '/'-separated
 * segments; "{name}" matches exactly one non-empty segment of the raw (still percent-encoded)
 * path, so an encoded "/" (%2F) inside a parameter never crosses a segment boundary. Parameters
 * are percent-decoded (RFC 3986 §2.1) when stored. */
#include "http/req.h"

#include <stdlib.h>
#include <string.h>

#define SG_ROUTE_MAX_SEGS 32

struct sg_seg {
	char *text; /* literal, or the parameter name */
	size_t len;
	int param;
};

struct sg_route {
	char method[16];
	char *tmpl;
	struct sg_seg segs[SG_ROUTE_MAX_SEGS];
	unsigned nsegs;
	sg_http_handler h;
	void *arg;
};

struct sg_router {
	struct sg_route *routes;
	unsigned n, cap;
};

struct sg_router *sg_router_new(void)
{
	return calloc(1, sizeof(struct sg_router));
}

static void route_clear(struct sg_route *rt)
{
	for (unsigned i = 0; i < rt->nsegs; i++)
		free(rt->segs[i].text);
	free(rt->tmpl);
}

void sg_router_free(struct sg_router *rt)
{
	if (!rt)
		return;
	for (unsigned i = 0; i < rt->n; i++)
		route_clear(&rt->routes[i]);
	free(rt->routes);
	free(rt);
}

static int same_shape(const struct sg_route *a, const struct sg_route *b)
{
	if (a->nsegs != b->nsegs)
		return 0;
	for (unsigned i = 0; i < a->nsegs; i++) {
		if (a->segs[i].param != b->segs[i].param)
			return 0;
		if (!a->segs[i].param && strcmp(a->segs[i].text, b->segs[i].text) != 0)
			return 0;
	}
	return 1;
}

sg_err sg_router_add(struct sg_router *rt, const char *method, const char *tmpl, sg_http_handler h,
                     void *arg)
{
	if (!rt || !method || !tmpl || !h || tmpl[0] != '/' || strlen(method) >= 16 || !*method)
		return SG_ERR_INVALID;
	struct sg_route r;
	memset(&r, 0, sizeof r);
	strcpy(r.method, method);
	r.h = h;
	r.arg = arg;
	const char *p = tmpl + 1;
	/* "/" alone is the root: zero segments */
	while (*p || (p > tmpl + 1 && p[-1] == '/')) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (r.nsegs == SG_ROUTE_MAX_SEGS)
			goto bad;
		struct sg_seg *s = &r.segs[r.nsegs++];
		if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
			s->param = 1;
			s->text = strndup(p + 1, len - 2);
			s->len = len - 2;
			if (s->len == 0 || memchr(s->text, '{', s->len) ||
			    memchr(s->text, '}', s->len))
				goto bad_alloc;
		} else {
			if (memchr(p, '{', len) || memchr(p, '}', len))
				goto bad_alloc_pre;
			s->text = strndup(p, len);
			s->len = len;
		}
		if (!s->text)
			goto nomem;
		if (!e)
			break;
		p = e + 1;
	}
	for (unsigned i = 0; i < rt->n; i++)
		if (strcmp(rt->routes[i].method, method) == 0 && same_shape(&rt->routes[i], &r)) {
			route_clear(&r);
			return SG_ERR_EXISTS;
		}
	if (rt->n == rt->cap) {
		unsigned nc = rt->cap ? rt->cap * 2 : 16;
		struct sg_route *nr = realloc(rt->routes, nc * sizeof *nr);
		if (!nr)
			goto nomem;
		rt->routes = nr;
		rt->cap = nc;
	}
	r.tmpl = strdup(tmpl);
	if (!r.tmpl)
		goto nomem;
	rt->routes[rt->n++] = r;
	return SG_OK;
bad_alloc_pre:
	r.nsegs--;
bad_alloc:
bad:
	route_clear(&r);
	return SG_ERR_INVALID;
nomem:
	route_clear(&r);
	return SG_ERR_NOMEM;
}

/* Matches the raw path against a route; 1 when it matches. */
static int match(const struct sg_route *rt, const char *path)
{
	if (path[0] != '/')
		return 0;
	const char *p = path + 1;
	unsigned i = 0;
	if (rt->nsegs == 0)
		return *p == '\0';
	for (;;) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (i == rt->nsegs)
			return 0;
		const struct sg_seg *s = &rt->segs[i++];
		if (s->param) {
			if (len == 0)
				return 0;
		} else if (len != s->len || memcmp(p, s->text, len) != 0) {
			return 0;
		}
		if (!e)
			break;
		p = e + 1;
	}
	return i == rt->nsegs;
}

static int fill_params(const struct sg_route *rt, struct sg_http_req *r)
{
	const char *p = r->raw_path + 1;
	for (unsigned i = 0; i < rt->nsegs; i++) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (rt->segs[i].param &&
		    sg_http_req_add_param(r, rt->segs[i].text, rt->segs[i].len, p, len) != 0)
			return -1;
		p = e ? e + 1 : p + len;
	}
	return 0;
}

enum sg_http_result sg_router_dispatch(struct sg_router *rt, struct sg_http_req *r)
{
	const char *path = r->raw_path ? r->raw_path : "/";
	const char *method = sg_http_req_method(r);
	int head = strcmp(method, "HEAD") == 0;
	const struct sg_route *hit = NULL, *get = NULL;
	char allow[160];
	size_t alen = 0;
	allow[0] = '\0';
	for (unsigned i = 0; i < rt->n; i++) {
		const struct sg_route *x = &rt->routes[i];
		if (!match(x, path))
			continue;
		if (strcmp(x->method, method) == 0) {
			hit = x;
			break;
		}
		if (head && strcmp(x->method, "GET") == 0)
			get = x;
		size_t ml = strlen(x->method);
		if (!strstr(allow, x->method) && alen + ml + 3 < sizeof allow) {
			if (alen) {
				memcpy(allow + alen, ", ", 2);
				alen += 2;
			}
			memcpy(allow + alen, x->method, ml + 1);
			alen += ml;
		}
	}
	/* RFC 9110 §9.3.2: HEAD is GET without the body (the codec drops the body) */
	if (!hit && get)
		hit = get;
	if (!hit) {
		if (alen) {
			/* RFC 9110 §15.5.6: 405 carries Allow */
			sg_http_resp_header(r, "Allow", allow);
			sg_http_resp_problem(r, 405, "METHOD_NOT_ALLOWED",
			                     "method %s is not allowed on this resource", method);
		} else {
			sg_http_resp_problem(r, 404, "RESOURCE_NOT_FOUND",
			                     "no resource at this path");
		}
		return SG_HTTP_DONE;
	}
	if (fill_params(hit, r) != 0) {
		sg_http_resp_problem(r, 400, "INVALID_MSG_FORMAT", "bad percent-encoding in path");
		return SG_HTTP_DONE;
	}
	return hit->h(r, hit->arg);
}
