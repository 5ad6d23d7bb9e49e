/* tests/unit/test_gm.c: the group management server's pure rules (gm/logic.c) and its store
 * (store/gm.c): VALGroupDocument validation (TS 29.549 SS_GroupManagement), RFC 7396 merge
 * patch (its Appendix A examples) and ModifyIndValGroupDoc (a patch that would break the
 * document changes nothing), the RetrieveValGroupDocs filters, the RetrieveIndValGroupDoc
 * projection, GM-UU membership and the VAL-server service rules, ProblemDetails with
 * invalidParams, and the store's group documents with their generation. */
#include "base/json.h"
#include "gm/logic.h"
#include "store/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static json_t *J(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
	if (!j)
		fail_msg("bad test JSON %s: %s", s, e.text);
	return j;
}

static int has_param(const struct sg_gm_check *c, const char *param)
{
	for (size_t i = 0; i < c->n && i < SG_GM_MAX_INVALID; i++)
		if (!strcmp(c->v[i].param, param))
			return 1;
	return 0;
}

static void test_validate_table(void **state)
{
	(void)state;
	static const struct {
		const char *doc;
		const char *bad_param; /* NULL: valid */
	} rows[] = {
	    {"{\"valGroupId\":\"g1\"}", NULL},
	    {"{\"valGroupId\":\"g1\",\"grpDesc\":\"d\",\"members\":[{\"valUserId\":\"a\"},"
	     "{\"valUeId\":\"ue-1\"}],\"valGrpConf\":\"c\",\"valServiceIds\":[\"v2x\"],"
	     "\"valSvcInf\":\"i\",\"suppFeat\":\"0aF\",\"resUri\":\"https://x/y\","
	     "\"locInfo\":{\"cellId\":\"c1\",\"ageOfLocationInfo\":3},"
	     "\"addLocInfo\":{\"geographicAreas\":[]},\"valSvcAreaId\":\"a1\","
	     "\"extGrpId\":\"grp@example.com\",\"com5GLanType\":\"IPV4\"}",
	     NULL},
	    {"[]", "/"},
	    {"\"g\"", "/"},
	    {"{}", "/valGroupId"},
	    {"{\"grpDesc\":\"no id\"}", "/valGroupId"},
	    {"{\"valGroupId\":\"\"}", "/valGroupId"},
	    {"{\"valGroupId\":7}", "/valGroupId"},
	    {"{\"valGroupId\":\"g\",\"grpDesc\":1}", "/grpDesc"},
	    {"{\"valGroupId\":\"g\",\"members\":[]}", "/members"},
	    {"{\"valGroupId\":\"g\",\"members\":{}}", "/members"},
	    {"{\"valGroupId\":\"g\",\"members\":[\"a\"]}", "/members/0"},
	    {"{\"valGroupId\":\"g\",\"members\":[{}]}", "/members/0"},
	    {"{\"valGroupId\":\"g\",\"members\":[{\"valUserId\":\"a\"},"
	     "{\"valUserId\":\"b\",\"valUeId\":\"c\"}]}",
	     "/members/1"},
	    {"{\"valGroupId\":\"g\",\"members\":[{\"valUserId\":5}]}", "/members/0"},
	    {"{\"valGroupId\":\"g\",\"valServiceIds\":[]}", "/valServiceIds"},
	    {"{\"valGroupId\":\"g\",\"valServiceIds\":[\"a\",3]}", "/valServiceIds/1"},
	    {"{\"valGroupId\":\"g\",\"suppFeat\":\"xyz\"}", "/suppFeat"},
	    {"{\"valGroupId\":\"g\",\"extGrpId\":\"nodomain\"}", "/extGrpId"},
	    {"{\"valGroupId\":\"g\",\"extGrpId\":\"a@b@c\"}", "/extGrpId"},
	    {"{\"valGroupId\":\"g\",\"locInfo\":[]}", "/locInfo"},
	    {"{\"valGroupId\":\"g\",\"locInfo\":{\"cellId\":5}}", "/locInfo/cellId"},
	    {"{\"valGroupId\":\"g\",\"locInfo\":{\"ageOfLocationInfo\":-1}}",
	     "/locInfo/ageOfLocationInfo"},
	    {"{\"valGroupId\":\"g\",\"addLocInfo\":{\"civicAddresses\":{}}}",
	     "/addLocInfo/civicAddresses"},
	    {"{\"valGroupId\":\"g\",\"com5GLanType\":4}", "/com5GLanType"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_t *d = J(rows[i].doc), *canon = NULL;
		struct sg_gm_check chk;
		int rc = sg_gm_doc_validate(d, &canon, &chk);
		if (!rows[i].bad_param) {
			if (rc != 0)
				fail_msg("row %zu should be valid: %s %s", i, chk.v[0].param,
				         chk.v[0].reason);
			assert_non_null(canon);
			assert_true(json_equal(canon, d)); /* every attribute is known */
		} else {
			if (rc == 0 || !has_param(&chk, rows[i].bad_param))
				fail_msg("row %zu: want a problem at %s (rc %d, first %s)", i,
				         rows[i].bad_param, rc, chk.n ? chk.v[0].param : "-");
			assert_null(canon);
		}
		json_decref(canon);
		json_decref(d);
	}
}

static void test_validate_unknown_ignored(void **state)
{
	(void)state;
	/* the schema has no additionalProperties: other names are allowed, and ignored */
	json_t *d = J("{\"valGroupId\":\"g\",\"vendorExt\":{\"a\":1}}"), *canon = NULL;
	struct sg_gm_check chk;
	assert_int_equal(sg_gm_doc_validate(d, &canon, &chk), 0);
	assert_null(json_object_get(canon, "vendorExt"));
	assert_string_equal(json_string_value(json_object_get(canon, "valGroupId")), "g");
	json_decref(canon);
	json_decref(d);
	/* several problems are all reported */
	d = J("{\"grpDesc\":1,\"members\":[],\"suppFeat\":\"q\"}");
	assert_int_equal(sg_gm_doc_validate(d, NULL, &chk), -1);
	assert_int_equal(chk.n, 4);
	json_decref(d);
}

static void test_merge_patch_rfc7396(void **state)
{
	(void)state;
	/* RFC 7396 Appendix A */
	static const char *const rows[][3] = {
	    {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
	    {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
	    {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
	    {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
	    {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
	    {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
	    {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
	    {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
	    {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
	    {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
	    {"{\"a\":\"foo\"}", "null", "null"},
	    {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
	    {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
	    {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
	    {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		json_t *t = J(rows[i][0]), *p = J(rows[i][1]), *want = J(rows[i][2]);
		json_t *tcopy = json_deep_copy(t);
		json_t *got = sg_json_merge_patch(t, p);
		if (!json_equal(got, want)) {
			char *g = json_dumps(got, JSON_ENCODE_ANY);
			fail_msg("row %zu: got %s want %s", i, g ? g : "NULL", rows[i][2]);
		}
		assert_true(json_equal(t, tcopy)); /* the target is not changed */
		json_decref(got);
		json_decref(t);
		json_decref(tcopy);
		json_decref(p);
		json_decref(want);
	}
}

#define DOC                                                                                        \
	"{\"valGroupId\":\"g1\",\"grpDesc\":\"fleet\",\"members\":[{\"valUserId\":\"alice\"}],"    \
	"\"valServiceIds\":[\"v2x\"],\"suppFeat\":\"0\",\"locInfo\":{\"cellId\":\"c1\","           \
	"\"plmnId\":\"p\"}}"

static void test_doc_patch(void **state)
{
	(void)state;
	json_t *doc = J(DOC), *orig = json_deep_copy(doc), *out = NULL;
	struct sg_gm_check chk;
	/* a good patch: replaces members, removes grpDesc, merges into locInfo */
	json_t *p = J("{\"members\":[{\"valUserId\":\"bob\"}],\"grpDesc\":null,"
	              "\"locInfo\":{\"plmnId\":null,\"twanId\":\"t\"},\"unknownThing\":1}");
	assert_int_equal(sg_gm_doc_patch(doc, p, &out, &chk), 0);
	json_t *want = J("{\"valGroupId\":\"g1\",\"members\":[{\"valUserId\":\"bob\"}],"
	                 "\"valServiceIds\":[\"v2x\"],\"suppFeat\":\"0\","
	                 "\"locInfo\":{\"cellId\":\"c1\",\"twanId\":\"t\"}}");
	assert_true(json_equal(out, want));
	json_decref(want);
	json_decref(out);
	json_decref(p);
	static const struct {
		const char *patch, *param;
	} bad[] = {
	    /* would delete the required valGroupId */
	    {"{\"valGroupId\":null}", "/valGroupId"},
	    /* not in VALGroupDocumentPatch */
	    {"{\"valGroupId\":\"g2\"}", "/valGroupId"},
	    {"{\"suppFeat\":\"1\"}", "/suppFeat"},
	    {"{\"resUri\":\"x\"}", "/resUri"},
	    {"{\"valSvcInf\":\"x\"}", "/valSvcInf"},
	    /* would break a type or minItems of the merged document */
	    {"{\"members\":[]}", "/members"},
	    {"{\"members\":[{\"valUserId\":\"a\",\"valUeId\":\"b\"}]}", "/members/0"},
	    {"{\"valServiceIds\":[]}", "/valServiceIds"},
	    {"{\"locInfo\":{\"cellId\":7}}", "/locInfo/cellId"},
	    {"{\"grpDesc\":false}", "/grpDesc"},
	    /* not an object */
	    {"[]", "/"},
	    {"\"x\"", "/"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		p = J(bad[i].patch);
		out = NULL;
		if (sg_gm_doc_patch(doc, p, &out, &chk) == 0 || !has_param(&chk, bad[i].param))
			fail_msg("bad patch %zu (%s): want a problem at %s", i, bad[i].patch,
			         bad[i].param);
		assert_null(out);
		assert_true(json_equal(doc, orig)); /* nothing changed */
		json_decref(p);
	}
	json_decref(doc);
	json_decref(orig);
}

static void test_filters_projection(void **state)
{
	(void)state;
	json_t *d = J("{\"valGroupId\":\"g1\",\"members\":[{\"valUserId\":\"a\"}],"
	              "\"valGrpConf\":\"conf\",\"valServiceIds\":[\"v2x\",\"fleet\"],"
	              "\"grpDesc\":\"x\"}");
	assert_true(sg_gm_doc_matches(d, NULL, NULL));
	assert_true(sg_gm_doc_matches(d, "g1", NULL));
	assert_true(sg_gm_doc_matches(d, "g1", "fleet"));
	assert_true(sg_gm_doc_matches(d, NULL, "v2x"));
	assert_false(sg_gm_doc_matches(d, "g2", NULL));
	assert_false(sg_gm_doc_matches(d, "g1", "other"));
	assert_false(sg_gm_doc_matches(d, "G1", NULL)); /* exact */
	json_t *nosvc = J("{\"valGroupId\":\"g1\"}");
	assert_false(sg_gm_doc_matches(nosvc, NULL, "v2x"));
	json_decref(nosvc);

	json_t *p = sg_gm_doc_project(d, 0, 0);
	assert_true(json_equal(p, d));
	json_decref(p);
	p = sg_gm_doc_project(d, 1, 0);
	json_t *w = J("{\"valGroupId\":\"g1\",\"members\":[{\"valUserId\":\"a\"}]}");
	assert_true(json_equal(p, w));
	json_decref(p);
	json_decref(w);
	p = sg_gm_doc_project(d, 0, 1);
	w = J("{\"valGroupId\":\"g1\",\"valGrpConf\":\"conf\"}");
	assert_true(json_equal(p, w));
	json_decref(p);
	json_decref(w);
	p = sg_gm_doc_project(d, 1, 1);
	w = J(
	    "{\"valGroupId\":\"g1\",\"members\":[{\"valUserId\":\"a\"}],\"valGrpConf\":\"conf\"}");
	assert_true(json_equal(p, w));
	json_decref(p);
	json_decref(w);
	json_decref(d);

	/* the membership view: ids only, the rest of each member and document left out */
	d = J("{\"valGroupId\":\"g1\",\"grpDesc\":\"x\",\"valServiceIds\":[\"v2x\"],"
	      "\"members\":[{\"valUserId\":\"a\",\"note\":\"big\"},{\"valUeId\":\"ue-1\"}],"
	      "\"valGrpConf\":\"conf\"}");
	p = sg_gm_doc_membership(d);
	w = J("{\"valGroupId\":\"g1\",\"valServiceIds\":[\"v2x\"],"
	      "\"members\":[{\"valUserId\":\"a\"},{\"valUeId\":\"ue-1\"}]}");
	assert_true(json_equal(p, w));
	json_decref(p);
	json_decref(w);
	json_decref(d);
	d = J("{\"valGroupId\":\"g2\"}");
	p = sg_gm_doc_membership(d);
	assert_true(json_equal(p, d)); /* nothing added */
	json_decref(p);
	json_decref(d);
}

/* A UE's val_user_ids claim stands in for the principal. */
static const char *uid_from_claim(void *ctx, const char *svc)
{
	return json_string_value(json_object_get(ctx, svc));
}

static void test_membership(void **state)
{
	(void)state;
	json_t *d = J("{\"valGroupId\":\"g\",\"valServiceIds\":[\"v2x\",\"fleet\"],"
	              "\"members\":[{\"valUeId\":\"alice@v2x\"},{\"valUserId\":\"bob@fleet\"},"
	              "{\"valUserId\":\"carol@v2x\"}]}");
	json_t *bob = J("{\"v2x\":\"bob@v2x\",\"fleet\":\"bob@fleet\"}");
	json_t *carol = J("{\"v2x\":\"carol@v2x\",\"fleet\":\"carol\"}");
	json_t *alice = J("{\"v2x\":\"alice@v2x\",\"fleet\":\"alice\"}");
	json_t *other_svc = J("{\"kiosk\":\"bob@fleet\"}");
	json_t *none = J("{}");
	assert_true(sg_gm_is_member(d, uid_from_claim, bob));
	assert_true(sg_gm_is_member(d, uid_from_claim, carol));
	/* a valUeId member is not a VAL user id */
	assert_false(sg_gm_is_member(d, uid_from_claim, alice));
	/* the right id for a VAL service the group does not have does not count */
	assert_false(sg_gm_is_member(d, uid_from_claim, other_svc));
	assert_false(sg_gm_is_member(d, uid_from_claim, none));
	/* bob's fleet id used for v2x only: not a member */
	json_t *d2 = J("{\"valGroupId\":\"g\",\"valServiceIds\":[\"v2x\"],"
	               "\"members\":[{\"valUserId\":\"bob@fleet\"}]}");
	assert_false(sg_gm_is_member(d2, uid_from_claim, bob));
	/* no valServiceIds: nobody is a member */
	json_t *d3 = J("{\"valGroupId\":\"g\",\"members\":[{\"valUserId\":\"bob@fleet\"}]}");
	assert_false(sg_gm_is_member(d3, uid_from_claim, bob));
	json_decref(d);
	json_decref(d2);
	json_decref(d3);
	json_decref(bob);
	json_decref(carol);
	json_decref(alice);
	json_decref(other_svc);
	json_decref(none);
}

static void test_val_server_rules(void **state)
{
	(void)state;
	char *svcs[] = {"v2x", "fleet"};
	json_t *a = J("{\"valGroupId\":\"g\",\"valServiceIds\":[\"v2x\"]}");
	json_t *b = J("{\"valGroupId\":\"g\",\"valServiceIds\":[\"v2x\",\"kiosk\"]}");
	json_t *c = J("{\"valGroupId\":\"g\",\"valServiceIds\":[\"kiosk\"]}");
	json_t *none = J("{\"valGroupId\":\"g\"}");
	assert_true(sg_gm_services_within(a, svcs, 2));
	assert_false(sg_gm_services_within(b, svcs, 2));
	assert_false(sg_gm_services_within(c, svcs, 2));
	assert_false(sg_gm_services_within(none, svcs, 2)); /* must name its services */
	assert_false(sg_gm_services_within(a, svcs, 0));
	assert_true(sg_gm_services_overlap(a, svcs, 2));
	assert_true(sg_gm_services_overlap(b, svcs, 2));
	assert_false(sg_gm_services_overlap(c, svcs, 2));
	assert_false(sg_gm_services_overlap(none, svcs, 2));
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(none);
	assert_true(sg_gm_doc_id_ok("AbC-_09"));
	assert_false(sg_gm_doc_id_ok(""));
	assert_false(sg_gm_doc_id_ok("a/b"));
	assert_false(sg_gm_doc_id_ok("a.b"));
}

static void test_problem(void **state)
{
	(void)state;
	json_t *d = J("{\"members\":[]}");
	struct sg_gm_check chk;
	assert_int_equal(sg_gm_doc_validate(d, NULL, &chk), -1);
	json_t *p = sg_gm_problem(400, "INVALID_MSG_FORMAT", "bad", &chk);
	assert_int_equal(json_integer_value(json_object_get(p, "status")), 400);
	assert_string_equal(json_string_value(json_object_get(p, "cause")), "INVALID_MSG_FORMAT");
	assert_string_equal(json_string_value(json_object_get(p, "title")), "Bad Request");
	json_t *ip = json_object_get(p, "invalidParams");
	assert_int_equal(json_array_size(ip), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(ip, 0), "param")),
	                    "/valGroupId");
	assert_non_null(json_string_value(json_object_get(json_array_get(ip, 0), "reason")));
	json_decref(p);
	p = sg_gm_problem(404, NULL, "x", NULL);
	assert_null(json_object_get(p, "invalidParams"));
	assert_null(json_object_get(p, "cause"));
	json_decref(p);
	json_decref(d);
}

static void test_store(void **state)
{
	(void)state;
	char dir[] = "/tmp/sg-test-gm.XXXXXX", path[128], err[256] = "";
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/gm.db", dir);
	struct sg_store *st = NULL;
	assert_int_equal(sg_store_open("sqlite", path, &st, err, sizeof err), SG_OK);
	int v = 0;
	assert_int_equal(sg_store_schema_version(st, &v), SG_OK);
	assert_int_equal(v, SG_STORE_SCHEMA_VERSION);
	assert_true(v >= 3); /* ss-gm is migration 3 */
	uint64_t g0 = 0, g1 = 0, r0 = 0, r1 = 0;
	assert_int_equal(sg_store_gm_generation(st, &g0), SG_OK);
	assert_int_equal(sg_store_generation(st, &r0), SG_OK);
	struct sg_store_gm_doc d = {.doc_id = "d1",
	                            .owner = "v2x-app",
	                            .val_group_id = "g1",
	                            .body = "{\"valGroupId\":\"g1\"}"};
	assert_int_equal(sg_store_gm_put(st, &d, 1), SG_OK);
	assert_int_equal(sg_store_gm_put(st, &d, 1), SG_ERR_EXISTS);
	assert_int_equal(sg_store_gm_generation(st, &g1), SG_OK);
	assert_int_equal(sg_store_generation(st, &r1), SG_OK);
	assert_true(g1 > g0);
	assert_int_equal(r1, r0); /* the registry's caches are not disturbed */
	d.body = "{\"valGroupId\":\"g2\"}";
	d.val_group_id = "g2";
	d.owner = "someone-else"; /* ignored on replace */
	assert_int_equal(sg_store_gm_put(st, &d, 0), SG_OK);
	struct sg_store_gm_doc out;
	assert_int_equal(sg_store_gm_get(st, "d1", &out), SG_OK);
	assert_string_equal(out.owner, "v2x-app");
	assert_string_equal(out.val_group_id, "g2");
	assert_string_equal(out.body, "{\"valGroupId\":\"g2\"}");
	assert_true(out.updated_at >= out.created_at && out.created_at > 0);
	sg_store_gm_clear(&out);
	struct sg_store_gm_doc d2 = {
	    .doc_id = "a0", .owner = "o", .val_group_id = "g", .body = "{}"};
	assert_int_equal(sg_store_gm_put(st, &d2, 1), SG_OK);
	struct sg_store_gm_doc *all = NULL;
	size_t n = 0;
	assert_int_equal(sg_store_gm_list(st, &all, &n), SG_OK);
	assert_int_equal(n, 2);
	assert_string_equal(all[0].doc_id, "a0"); /* by doc_id */
	assert_string_equal(all[1].doc_id, "d1");
	sg_store_gm_list_free(all, n);
	d.doc_id = "missing";
	assert_int_equal(sg_store_gm_put(st, &d, 0), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_gm_delete(st, "d1"), SG_OK);
	assert_int_equal(sg_store_gm_delete(st, "d1"), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_gm_get(st, "d1", &out), SG_ERR_NOTFOUND);
	struct sg_store_gm_doc bad = {.doc_id = "x", .val_group_id = "g", .body = "{}"};
	assert_int_equal(sg_store_gm_put(st, &bad, 1), SG_ERR_INVALID); /* no owner */
	/* a VAL server's usage (its quota): documents and bytes, one of them left out */
	struct sg_store_gm_doc q1 = {
	    .doc_id = "q1", .owner = "q", .val_group_id = "gq1", .body = "{\"valGroupId\":\"é\"}"};
	struct sg_store_gm_doc q2 = {.doc_id = "q2",
	                             .owner = "q",
	                             .val_group_id = "gq2",
	                             .body = "{\"valGroupId\":\"gq2\"}"};
	assert_int_equal(sg_store_gm_put(st, &q1, 1), SG_OK);
	assert_int_equal(sg_store_gm_put(st, &q2, 1), SG_OK);
	uint64_t docs = 9, bytes = 9;
	assert_int_equal(sg_store_gm_owner_usage(st, "q", "", &docs, &bytes), SG_OK);
	assert_int_equal(docs, 2);
	assert_int_equal(bytes, strlen(q1.body) + strlen(q2.body)); /* bytes, not characters */
	assert_int_equal(sg_store_gm_owner_usage(st, "q", "q1", &docs, &bytes), SG_OK);
	assert_int_equal(docs, 1);
	assert_int_equal(bytes, strlen(q2.body));
	assert_int_equal(sg_store_gm_owner_usage(st, "nobody", "", &docs, &bytes), SG_OK);
	assert_int_equal(docs + bytes, 0);
	q2.body = "{}";
	assert_int_equal(sg_store_gm_put(st, &q2, 0), SG_OK); /* a replace updates the size */
	assert_int_equal(sg_store_gm_owner_usage(st, "q", "q1", &docs, &bytes), SG_OK);
	assert_int_equal(bytes, 2);
	sg_store_close(st);
	/* reopening finds the documents (durable) */
	assert_int_equal(sg_store_open("sqlite", path, &st, err, sizeof err), SG_OK);
	assert_int_equal(sg_store_gm_get(st, "a0", &out), SG_OK);
	sg_store_gm_clear(&out);
	sg_store_close(st);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* base/json.c: jansson frees through the wiping free from then on, and everything else works
 * as before */
static void test_json_wipe_on_free(void **state)
{
	(void)state;
	json_malloc_t m0 = NULL, m1 = NULL;
	json_free_t f0 = NULL, f1 = NULL;
	json_get_alloc_funcs(&m0, &f0);
	sg_json_wipe_on_free();
	sg_json_wipe_on_free(); /* once */
	json_get_alloc_funcs(&m1, &f1);
	assert_ptr_equal(f0, free);
	assert_ptr_not_equal(f1, free);
	assert_ptr_equal(m1, malloc); /* json_dumps output is still free()d by its callers */
	json_t *j = json_pack("{s:s,s:[i,i]}", "key", "c2VjcmV0LWtleS1ieXRlcw", "v", 1, 2);
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"key\":\"c2VjcmV0LWtleS1ieXRlcw\",\"v\":[1,2]}");
	json_t *back = json_loads(s, 0, NULL);
	assert_true(json_equal(j, back));
	free(s);
	json_decref(back);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_validate_table),
	    cmocka_unit_test(test_validate_unknown_ignored),
	    cmocka_unit_test(test_merge_patch_rfc7396),
	    cmocka_unit_test(test_json_wipe_on_free),
	    cmocka_unit_test(test_doc_patch),
	    cmocka_unit_test(test_filters_projection),
	    cmocka_unit_test(test_membership),
	    cmocka_unit_test(test_val_server_rules),
	    cmocka_unit_test(test_problem),
	    cmocka_unit_test(test_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
