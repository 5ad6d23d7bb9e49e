/* Router: templates, params (percent-decoded), 404, 405 + Allow, duplicates, segment bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/req.h"

#include <stdlib.h>
#include <string.h>

static enum sg_http_result h_a(struct sg_http_req *r, void *arg)
{
	(void)arg;
	sg_http_resp_body(r, "a", 1, "text/plain");
	return SG_HTTP_DONE;
}

static enum sg_http_result h_b(struct sg_http_req *r, void *arg)
{
	(void)arg;
	sg_http_resp_status(r, 201);
	sg_http_resp_body(r, "b", 1, "text/plain");
	return SG_HTTP_DONE;
}

/* A request as the codec would build it (no connection). */
static struct sg_http_req *mkreq(const char *method, const char *url)
{
	struct sg_http_req *r = sg_http_req_new(NULL, 11);
	assert_non_null(r);
	r->method_off = (uint32_t)r->arena.len;
	sg_buf_append(&r->arena, method, strlen(method) + 1);
	r->url_off = (uint32_t)r->arena.len;
	r->url_len = (uint32_t)strlen(url);
	sg_buf_append(&r->arena, url, strlen(url) + 1);
	assert_int_equal(sg_http_req_head_done(r), 0);
	return r;
}

static struct sg_router *mkrouter(void)
{
	struct sg_router *rt = sg_router_new();
	assert_non_null(rt);
	assert_int_equal(sg_router_add(rt, "GET", "/ss-gm/v1/groups/{id}", h_a, NULL), SG_OK);
	assert_int_equal(sg_router_add(rt, "PUT", "/ss-gm/v1/groups/{id}", h_b, NULL), SG_OK);
	assert_int_equal(sg_router_add(rt, "GET", "/a/{x}/b/{y}", h_a, NULL), SG_OK);
	assert_int_equal(sg_router_add(rt, "POST", "/", h_b, NULL), SG_OK);
	return rt;
}

static void test_match_params(void **state)
{
	(void)state;
	struct sg_router *rt = mkrouter();
	struct sg_http_req *r = mkreq("GET", "/a/one/b/two?q=1");
	assert_int_equal(sg_router_dispatch(rt, r), SG_HTTP_DONE);
	assert_int_equal(sg_http_resp_get_status(r), 200);
	assert_string_equal(sg_http_req_param(r, "x"), "one");
	assert_string_equal(sg_http_req_param(r, "y"), "two");
	assert_null(sg_http_req_param(r, "z"));
	assert_string_equal(sg_http_req_query(r), "q=1");
	sg_http_req_free(r);

	r = mkreq("PUT", "/ss-gm/v1/groups/g1");
	sg_router_dispatch(rt, r);
	assert_int_equal(sg_http_resp_get_status(r), 201);
	assert_string_equal(sg_http_req_param(r, "id"), "g1");
	sg_http_req_free(r);

	r = mkreq("POST", "/");
	sg_router_dispatch(rt, r);
	assert_int_equal(sg_http_resp_get_status(r), 201);
	sg_http_req_free(r);
	sg_router_free(rt);
}

static void test_percent_decoding(void **state)
{
	(void)state;
	struct sg_router *rt = mkrouter();
	/* %2F stays inside its segment, then decodes */
	struct sg_http_req *r = mkreq("GET", "/ss-gm/v1/groups/a%2Fb%20c");
	sg_router_dispatch(rt, r);
	assert_int_equal(sg_http_resp_get_status(r), 200);
	assert_string_equal(sg_http_req_param(r, "id"), "a/b c");
	assert_string_equal(sg_http_req_path(r), "/ss-gm/v1/groups/a/b c");
	sg_http_req_free(r);
	/* query params decoded, '+' is a space there */
	r = mkreq("GET", "/x?a=1&name=J%C3%B6rg+K&empty=&a=2");
	assert_string_equal(sg_http_req_query_param(r, "name"), "J\xc3\xb6rg K");
	assert_string_equal(sg_http_req_query_param(r, "a"), "1");
	assert_string_equal(sg_http_req_query_param(r, "empty"), "");
	assert_null(sg_http_req_query_param(r, "nope"));
	sg_http_req_free(r);
	sg_router_free(rt);
}

static void test_404_405(void **state)
{
	(void)state;
	struct sg_router *rt = mkrouter();
	struct sg_http_req *r = mkreq("GET", "/ss-gm/v1/nothing");
	sg_router_dispatch(rt, r);
	assert_int_equal(sg_http_resp_get_status(r), 404);
	assert_string_equal(r->rctype, "application/problem+json");
	assert_non_null(strstr(r->rbody.data, "\"status\":404"));
	assert_non_null(strstr(r->rbody.data, "\"cause\":\"RESOURCE_NOT_FOUND\""));
	sg_http_req_free(r);

	r = mkreq("DELETE", "/ss-gm/v1/groups/g1");
	sg_router_dispatch(rt, r);
	assert_int_equal(sg_http_resp_get_status(r), 405);
	assert_non_null(strstr(r->rhdrs.data, "Allow: GET, PUT\r\n"));
	assert_non_null(strstr(r->rbody.data, "\"title\":\"Method Not Allowed\""));
	sg_http_req_free(r);

	/* HEAD falls back to GET */
	r = mkreq("HEAD", "/ss-gm/v1/groups/g1");
	sg_router_dispatch(rt, r);
	assert_int_equal(sg_http_resp_get_status(r), 200);
	sg_http_req_free(r);
	sg_router_free(rt);
}

static void test_segment_boundaries(void **state)
{
	(void)state;
	struct sg_router *rt = mkrouter();
	const char *miss[] = {"/ss-gm/v1/groups/",   "/ss-gm/v1/groups/a/b",
	                      "/ss-gm/v1/groups",    "/a/one/b/two/three",
	                      "/a//b/two",           "/a/one/bb/two",
	                      "/ss-gm/v1/groupsx/a", "//"};
	for (size_t i = 0; i < sizeof miss / sizeof miss[0]; i++) {
		struct sg_http_req *r = mkreq("GET", miss[i]);
		sg_router_dispatch(rt, r);
		assert_int_equal(sg_http_resp_get_status(r), 404);
		sg_http_req_free(r);
	}
	sg_router_free(rt);
}

static void test_duplicates_and_bad(void **state)
{
	(void)state;
	struct sg_router *rt = mkrouter();
	assert_int_equal(sg_router_add(rt, "GET", "/ss-gm/v1/groups/{id}", h_b, NULL),
	                 SG_ERR_EXISTS);
	/* same shape, other param name: still the same route */
	assert_int_equal(sg_router_add(rt, "GET", "/ss-gm/v1/groups/{gid}", h_b, NULL),
	                 SG_ERR_EXISTS);
	assert_int_equal(sg_router_add(rt, "DELETE", "/ss-gm/v1/groups/{id}", h_b, NULL), SG_OK);
	assert_int_equal(sg_router_add(rt, "GET", "no-slash", h_b, NULL), SG_ERR_INVALID);
	assert_int_equal(sg_router_add(rt, "GET", "/a/{}/b", h_b, NULL), SG_ERR_INVALID);
	assert_int_equal(sg_router_add(rt, "GET", "/a/x{y}", h_b, NULL), SG_ERR_INVALID);
	/* a bad escape or an encoded NUL in the target is refused before routing (400) */
	const char *bad[] = {"/ss-gm/v1/groups/a%zz", "/ss-gm/v1/groups/%00", "/x%4", "noslash"};
	for (size_t i = 0; i < 4; i++) {
		struct sg_http_req *r = sg_http_req_new(NULL, 11);
		sg_buf_append(&r->arena, "GET", 4);
		r->url_off = (uint32_t)r->arena.len;
		r->url_len = (uint32_t)strlen(bad[i]);
		sg_buf_append(&r->arena, bad[i], strlen(bad[i]) + 1);
		assert_int_equal(sg_http_req_head_done(r), -1);
		sg_http_req_free(r);
	}
	sg_router_free(rt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_match_params),
	    cmocka_unit_test(test_percent_decoding),
	    cmocka_unit_test(test_404_405),
	    cmocka_unit_test(test_segment_boundaries),
	    cmocka_unit_test(test_duplicates_and_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
