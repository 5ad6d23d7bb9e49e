/* tests/unit/test_sdd.c: SEALDD pure parts (sdd/proto.h): the SEALDD-UU frame codec with
 * malformed and oversized frames, sddFlowId text form, duplicate elimination (URLLC), the flow
 * table (owner binding, limits, expiry), the TS 29.548 TransReq / ConnStatusSubsc checks with
 * the subscription bounds, and the notification queue (bounds, order, fairness). */
#include "base/clock.h"
#include "sdd/internal.h"
#include "sdd/proto.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

static size_t frame(uint8_t *buf, uint8_t type, const void *p, uint32_t n, uint64_t seq,
                    const uint8_t *flow)
{
	sg_sdd_frame_header(buf, type, n, seq, flow);
	if (n)
		memcpy(buf + SG_SDD_HDR_LEN, p, n);
	return SG_SDD_HDR_LEN + n;
}

static const uint8_t FLOW[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void test_frame_roundtrip(void **state)
{
	(void)state;
	uint8_t buf[256];
	size_t n = frame(buf, SG_SDD_DATA, "hello", 5, 0x0102030405060708ull, FLOW);
	struct sg_sdd_frame f;
	assert_int_equal(sg_sdd_frame_parse(buf, n, &f), (int)n);
	assert_int_equal(f.type, SG_SDD_DATA);
	assert_int_equal(f.len, 5);
	assert_true(f.seq == 0x0102030405060708ull);
	assert_memory_equal(f.flow, FLOW, 16);
	assert_memory_equal(f.payload, "hello", 5);
	/* every prefix is "need more", never an error or a frame */
	for (size_t k = 0; k < n; k++)
		assert_int_equal(sg_sdd_frame_parse(buf, k, &f), 0);
	/* two frames back to back: the first is taken alone */
	size_t m = frame(buf + n, SG_SDD_DETACH, NULL, 0, 0, FLOW);
	assert_int_equal(sg_sdd_frame_parse(buf, n + m, &f), (int)n);
	assert_int_equal(sg_sdd_frame_parse(buf + n, m, &f), (int)m);
	assert_int_equal(f.type, SG_SDD_DETACH);
}

static void test_frame_malformed(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct sg_sdd_frame f;
	frame(buf, SG_SDD_DATA, NULL, 0, 1, FLOW);
	buf[0] = 2;
	assert_int_equal(sg_sdd_frame_parse(buf, SG_SDD_HDR_LEN, &f), SG_SDD_PERR_VERSION);
	frame(buf, SG_SDD_DATA, NULL, 0, 1, FLOW);
	buf[1] = 0;
	assert_int_equal(sg_sdd_frame_parse(buf, SG_SDD_HDR_LEN, &f), SG_SDD_PERR_TYPE);
	buf[1] = SG_SDD_FTYPE_MAX + 1;
	assert_int_equal(sg_sdd_frame_parse(buf, SG_SDD_HDR_LEN, &f), SG_SDD_PERR_TYPE);
	frame(buf, SG_SDD_DATA, NULL, 0, 1, FLOW);
	buf[3] = 1;
	assert_int_equal(sg_sdd_frame_parse(buf, SG_SDD_HDR_LEN, &f), SG_SDD_PERR_RESERVED);
	/* flow id rules: DATA/ATTACH need one, AUTH must not carry one */
	frame(buf, SG_SDD_DATA, NULL, 0, 1, NULL);
	assert_int_equal(sg_sdd_frame_parse(buf, SG_SDD_HDR_LEN, &f), SG_SDD_PERR_FLOW);
	frame(buf, SG_SDD_ATTACH, NULL, 0, 0, NULL);
	assert_int_equal(sg_sdd_frame_parse(buf, SG_SDD_HDR_LEN, &f), SG_SDD_PERR_FLOW);
	frame(buf, SG_SDD_AUTH, NULL, 0, 0, FLOW);
	assert_int_equal(sg_sdd_frame_parse(buf, SG_SDD_HDR_LEN, &f), SG_SDD_PERR_FLOW);
	/* channel-level ERROR (zero flow) is fine */
	frame(buf, SG_SDD_ERROR, "X", 1, 0, NULL);
	assert_int_equal(sg_sdd_frame_parse(buf, SG_SDD_HDR_LEN + 1, &f), SG_SDD_HDR_LEN + 1);
}

static void test_frame_oversized(void **state)
{
	(void)state;
	uint8_t hdr[SG_SDD_HDR_LEN];
	struct sg_sdd_frame f;
	/* refused from the header alone, before any payload arrives */
	sg_sdd_frame_header(hdr, SG_SDD_DATA, SG_SDD_MAX_PAYLOAD + 1, 1, FLOW);
	assert_int_equal(sg_sdd_frame_parse(hdr, sizeof hdr, &f), SG_SDD_PERR_TOO_LARGE);
	sg_sdd_frame_header(hdr, SG_SDD_DATA, 0xffffffffu, 1, FLOW);
	assert_int_equal(sg_sdd_frame_parse(hdr, sizeof hdr, &f), SG_SDD_PERR_TOO_LARGE);
	sg_sdd_frame_header(hdr, SG_SDD_DATA, SG_SDD_MAX_PAYLOAD, 1, FLOW);
	assert_int_equal(sg_sdd_frame_parse(hdr, sizeof hdr, &f), 0); /* allowed: needs more */
	/* AUTH has its own, smaller bound */
	sg_sdd_frame_header(hdr, SG_SDD_AUTH, SG_SDD_MAX_TOKEN + 1, 0, NULL);
	assert_int_equal(sg_sdd_frame_parse(hdr, sizeof hdr, &f), SG_SDD_PERR_TOO_LARGE);
	uint8_t *big = malloc(SG_SDD_HDR_LEN + SG_SDD_MAX_PAYLOAD);
	assert_non_null(big);
	memset(big, 0xab, SG_SDD_HDR_LEN + SG_SDD_MAX_PAYLOAD);
	sg_sdd_frame_header(big, SG_SDD_DATA, SG_SDD_MAX_PAYLOAD, 7, FLOW);
	assert_int_equal(sg_sdd_frame_parse(big, SG_SDD_HDR_LEN + SG_SDD_MAX_PAYLOAD, &f),
	                 SG_SDD_HDR_LEN + SG_SDD_MAX_PAYLOAD);
	free(big);
}

static void test_flow_text(void **state)
{
	(void)state;
	char t[SG_SDD_FLOW_TEXT_LEN + 1];
	uint8_t back[16];
	sg_sdd_flow_to_text(FLOW, t);
	assert_int_equal(strlen(t), 22);
	assert_int_equal(sg_sdd_flow_from_text(t, back), 0);
	assert_memory_equal(back, FLOW, 16);
	assert_int_equal(sg_sdd_flow_from_text("short", back), -1);
	assert_int_equal(sg_sdd_flow_from_text("AAAAAAAAAAAAAAAAAAAAAA=", back), -1);
	assert_int_equal(sg_sdd_flow_from_text("AAAAAAAAAAAAAAAAAAAA+/", back), -1);
	/* non-canonical last character (unused bits set) */
	assert_int_equal(sg_sdd_flow_from_text("AAAAAAAAAAAAAAAAAAAAAB", back), -1);
	assert_int_equal(sg_sdd_flow_from_text(NULL, back), -1);
}

static void test_dedup(void **state)
{
	(void)state;
	struct sg_sdd_dedup d;
	memset(&d, 0, sizeof d);
	assert_int_equal(sg_sdd_dedup_accept(&d, 0), 0);
	/* two redundant in-order streams, interleaved: each sequence number once */
	int delivered = 0;
	for (uint64_t s = 1; s <= 5000; s++) {
		delivered += sg_sdd_dedup_accept(&d, s);
		delivered += sg_sdd_dedup_accept(&d, s);
	}
	assert_int_equal(delivered, 5000);
	/* one stream lagging behind: all its copies are duplicates */
	memset(&d, 0, sizeof d);
	for (uint64_t s = 1; s <= 100; s++)
		assert_int_equal(sg_sdd_dedup_accept(&d, s), 1);
	for (uint64_t s = 1; s <= 100; s++)
		assert_int_equal(sg_sdd_dedup_accept(&d, s), 0);
	/* out of order within the window: accepted once */
	assert_int_equal(sg_sdd_dedup_accept(&d, 150), 1);
	assert_int_equal(sg_sdd_dedup_accept(&d, 120), 1);
	assert_int_equal(sg_sdd_dedup_accept(&d, 120), 0);
	assert_int_equal(sg_sdd_dedup_accept(&d, 101), 1);
	/* older than the window: dropped */
	assert_int_equal(sg_sdd_dedup_accept(&d, 150 + SG_SDD_WINDOW + 10), 1);
	assert_int_equal(sg_sdd_dedup_accept(&d, 130), 0);
	/* a jump far ahead clears the window */
	assert_int_equal(sg_sdd_dedup_accept(&d, 1000000), 1);
	assert_int_equal(sg_sdd_dedup_accept(&d, 1000000 - 5), 1);
	assert_int_equal(sg_sdd_dedup_accept(&d, 1000000 - 5), 0);
	/* the top of the sequence space, reached in steps inside the window: each returns (the
	 * loop that cleared the bits up to seq once never ended for UINT64_MAX) */
	memset(&d, 0, sizeof d);
	assert_int_equal(sg_sdd_dedup_accept(&d, UINT64_MAX - 2000), 1);
	assert_int_equal(sg_sdd_dedup_accept(&d, UINT64_MAX - 3), 1);
	assert_int_equal(sg_sdd_dedup_accept(&d, UINT64_MAX), 1);
	assert_int_equal(sg_sdd_dedup_accept(&d, UINT64_MAX), 0);
	assert_int_equal(sg_sdd_dedup_accept(&d, UINT64_MAX - 1), 1);
	assert_int_equal(sg_sdd_dedup_accept(&d, UINT64_MAX - 3), 0);
	assert_int_equal(sg_sdd_dedup_accept(&d, UINT64_MAX - 2000), 0);
}

static void test_flowtab(void **state)
{
	(void)state;
	struct sg_sdd_flowtab *t = sg_sdd_flowtab_new(5, 3);
	assert_non_null(t);
	const char *why;
	struct sg_sdd_flow *a1 = sg_sdd_flowtab_add(t, "alice", "v2x", 0, 1000, 60, &why);
	struct sg_sdd_flow *a2 = sg_sdd_flowtab_add(t, "alice", "v2x", 1, 1000, 60, &why);
	struct sg_sdd_flow *b1 = sg_sdd_flowtab_add(t, "bob", "v2x", 0, 1000, 10, &why);
	assert_non_null(a1);
	assert_non_null(a2);
	assert_non_null(b1);
	assert_memory_not_equal(a1->id, a2->id, 16);
	assert_false(sg_sdd_flow_is_zero(a1->id));
	/* bound to the owner: another user finds nothing */
	assert_ptr_equal(sg_sdd_flowtab_find(t, a1->id, "alice"), a1);
	assert_null(sg_sdd_flowtab_find(t, a1->id, "bob"));
	assert_ptr_equal(sg_sdd_flowtab_find(t, a1->id, NULL), a1);
	uint8_t guess[16] = {0};
	guess[0] = a1->id[0];
	guess[1] = a1->id[1]; /* same bucket, other id */
	assert_null(sg_sdd_flowtab_find(t, guess, "alice"));
	/* per-user limit */
	assert_non_null(sg_sdd_flowtab_add(t, "alice", "v2x", 0, 1000, 60, &why));
	assert_null(sg_sdd_flowtab_add(t, "alice", "v2x", 0, 1000, 60, &why));
	assert_string_equal(why, "limit");
	/* total limit */
	assert_non_null(sg_sdd_flowtab_add(t, "carol", "v2x", 0, 1000, 60, &why));
	assert_null(sg_sdd_flowtab_add(t, "dave", "v2x", 0, 1000, 60, &why));
	assert_int_equal(sg_sdd_flowtab_count(t), 5);
	/* expiry marks released; released flows are not found */
	assert_int_equal(sg_sdd_flowtab_expire(t, 1000 + 10 * 1000), 1);
	assert_null(sg_sdd_flowtab_find(t, b1->id, "bob"));
	assert_int_equal(sg_sdd_flowtab_expire(t, 1000 + 10 * 1000), 0);
	/* a released flow of alice no longer counts for her limit... */
	sg_sdd_flowtab_release(t, a1);
	struct sg_sdd_flow *a4 = sg_sdd_flowtab_add(t, "alice", "v2x", 0, 1000, 60, &why);
	assert_null(a4); /* ...but still for the total until removed */
	sg_sdd_flowtab_remove(t, a1);
	sg_sdd_flowtab_remove(t, b1);
	assert_int_equal(sg_sdd_flowtab_count(t), 3);
	assert_non_null(sg_sdd_flowtab_add(t, "alice", "v2x", 0, 1000, 60, &why));
	sg_sdd_flowtab_free(t);

	/* the per-user count follows adds, releases (once each) and removals, for many users
	 * sharing the count's hash buckets */
	enum { USERS = 3000, PER = 3 };
	t = sg_sdd_flowtab_new(USERS * PER * 2, PER); /* the per-user limit is what refuses */
	assert_non_null(t);
	static struct sg_sdd_flow *fl[USERS][PER + 1];
	char sub[16];
	for (int u = 0; u < USERS; u++) {
		snprintf(sub, sizeof sub, "u%d", u);
		for (int i = 0; i < PER; i++)
			assert_non_null(fl[u][i] =
			                    sg_sdd_flowtab_add(t, sub, "v2x", 0, 0, 60, &why));
	}
	for (int u = 0; u < USERS; u++) {
		snprintf(sub, sizeof sub, "u%d", u);
		assert_null(sg_sdd_flowtab_add(t, sub, "v2x", 0, 0, 60, &why));
		sg_sdd_flowtab_release(t, fl[u][0]);
		sg_sdd_flowtab_release(t, fl[u][0]); /* twice: counted once */
		assert_non_null(fl[u][PER] = sg_sdd_flowtab_add(t, sub, "v2x", 0, 0, 60, &why));
		assert_null(sg_sdd_flowtab_add(t, sub, "v2x", 0, 0, 60, &why));
		sg_sdd_flowtab_remove(t, fl[u][1]); /* a live one removed: room for one */
		assert_non_null(fl[u][1] = sg_sdd_flowtab_add(t, sub, "v2x", 0, 0, 60, &why));
		assert_null(sg_sdd_flowtab_add(t, sub, "v2x", 0, 0, 60, &why));
		sg_sdd_flowtab_remove(t, fl[u][0]); /* a released one removed: no more room */
		fl[u][0] = NULL;
		assert_null(sg_sdd_flowtab_add(t, sub, "v2x", 0, 0, 60, &why));
		assert_string_equal(why, "limit");
	}
	for (int u = 0; u < USERS; u++) /* every flow gone: so is every user's count */
		for (int i = 1; i <= PER; i++)
			sg_sdd_flowtab_remove(t, fl[u][i]);
	assert_int_equal(sg_sdd_flowtab_count(t), 0);
	for (int i = 0; i < PER; i++)
		assert_non_null(sg_sdd_flowtab_add(t, "u1", "v2x", 0, 0, 60, &why));
	assert_null(sg_sdd_flowtab_add(t, "u1", "v2x", 0, 0, 60, &why));
	sg_sdd_flowtab_free(t);
}

static json_t *J(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
	assert_non_null(j);
	return j;
}

static void test_transreq(void **state)
{
	(void)state;
	struct sg_sdd_check chk;
	struct sg_sdd_target tgt;
	json_t *j =
	    J("{\"valServiceId\":\"v2x\",\"valServerConnInfo\":{\"ipv4Addr\":\"10.0.0.1\","
	      "\"port\":7000},\"valTargetId\":{\"valUserId\":\"a\"},\"qosInfo\":{"
	      "\"altQosReqs\":[{\"altQosParamSetRef\":\"r\",\"gbrUl\":\"1.5 Mbps\","
	      "\"pdb\":10,\"per\":\"1E-6\"}]},\"valUsersBdw\":{\"minUlBdw\":1,\"minDlBdw\":1,"
	      "\"maxUlBdw\":2,\"maxDlBdw\":2},\"suppFeat\":\"0aF\",\"x-ignored\":1}");
	assert_int_equal(sg_sdd_transreq_validate(j, &tgt, &chk), 0);
	assert_string_equal(tgt.host, "10.0.0.1");
	assert_int_equal(tgt.port, 7000);
	json_decref(j);
	j = J("{\"valServiceId\":\"v2x\",\"valServerConnInfo\":{\"uri\":\"https://"
	      "[2001:db8::1]:8443/x\"}}");
	assert_int_equal(sg_sdd_transreq_validate(j, &tgt, &chk), 0);
	assert_string_equal(tgt.host, "2001:db8::1");
	assert_int_equal(tgt.port, 8443);
	json_decref(j);
	j = J("{\"valServiceId\":\"v2x\",\"valServerConnInfo\":{\"ipv6Addr\":\"2001:db8::1\","
	      "\"port\":1}}");
	assert_int_equal(sg_sdd_transreq_validate(j, &tgt, &chk), 0);
	json_decref(j);
	static const char *const BAD[][2] = {
	    {"{}", "/valServerConnInfo"},
	    {"{\"valServiceId\":\"v\",\"valServerConnInfo\":{\"ipv4Addr\":\"1.2.3.4\",\"ipv6Addr\":"
	     "\"::1\","
	     "\"port\":1}}",
	     "/valServerConnInfo"},
	    {"{\"valServiceId\":\"v\",\"valServerConnInfo\":{\"ipv4Addr\":\"01.2.3.4\",\"port\":1}"
	     "}",
	     "/valServerConnInfo/ipv4Addr"},
	    {"{\"valServiceId\":\"v\",\"valServerConnInfo\":{\"ipv6Addr\":\"2001:DB8::1\",\"port\":"
	     "1}}",
	     "/valServerConnInfo/ipv6Addr"},
	    {"{\"valServiceId\":\"v\",\"valServerConnInfo\":{\"ipv4Addr\":\"1.2.3.4\",\"port\":-1}"
	     "}",
	     "/valServerConnInfo/port"},
	    {"{\"valServiceId\":\"v\",\"valServerConnInfo\":{\"ipv4Addr\":\"1.2.3.4\",\"port\":1.5}"
	     "}",
	     "/valServerConnInfo/port"},
	    {"{\"valServiceId\":\"v\",\"valServerConnInfo\":{\"uri\":\"https://u@h:1\"}}",
	     "/valServerConnInfo/uri"},
	    {"{\"valServiceId\":\"v\",\"valTargetId\":{},\"valServerConnInfo\":{\"uri\":\"h:1\"}}",
	     "/valTargetId"},
	    {"{\"valServiceId\":\"v\",\"qosInfo\":{\"altQosReqs\":[{\"gbrUl\":\"1 Mbps\"}]},"
	     "\"valServerConnInfo\":{\"uri\":\"h:1\"}}",
	     "/qosInfo/altQosReqs/0/altQosParamSetRef"},
	    {"{\"valServiceId\":\"v\",\"qosInfo\":{\"altQosReqs\":[{\"altQosParamSetRef\":\"r\","
	     "\"gbrDl\":\"fast\"}]},\"valServerConnInfo\":{\"uri\":\"h:1\"}}",
	     "/qosInfo/altQosReqs/0/gbrDl"},
	    {"{\"valServiceId\":\"v\",\"qosInfo\":{\"altQosReqs\":[{\"altQosParamSetRef\":\"r\","
	     "\"pdb\":0}]},\"valServerConnInfo\":{\"uri\":\"h:1\"}}",
	     "/qosInfo/altQosReqs/0/pdb"},
	    {"{\"valServiceId\":\"\",\"valServerConnInfo\":{\"uri\":\"h:1\"}}", "/valServiceId"},
	    {"{\"valServerConnInfo\":{\"uri\":\"h:1\"}}", "/valServiceId"},
	    {"\"text\"", "/"},
	};
	for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
		j = J(BAD[i][0]);
		assert_int_equal(sg_sdd_transreq_validate(j, &tgt, &chk), -1);
		assert_true(chk.n >= 1);
		int found = 0;
		for (size_t k = 0; k < chk.n && k < SG_SDD_MAX_INVALID; k++)
			found |= strcmp(chk.v[k].param, BAD[i][1]) == 0;
		if (!found)
			fail_msg("case %zu: %s not among the invalid params (first %s)", i,
			         BAD[i][1], chk.v[0].param);
		json_decref(j);
	}
}

static void test_subsc_and_conninfo(void **state)
{
	(void)state;
	struct sg_sdd_check chk;
	json_t *j =
	    J("{\"events\":[\"ESTABLISHED\",\"FUTURE_EVENT\"],\"valServerConnInfo\":{\"uri\":"
	      "\"h:1\"},\"notifUri\":\"https://vs/n\"}");
	assert_int_equal(sg_sdd_subsc_validate(j, &chk), 0);
	json_decref(j);
	j = J(
	    "{\"events\":[],\"valServerConnInfo\":{\"uri\":\"h:1\"},\"notifUri\":\"http://vs/n\"}");
	assert_int_equal(sg_sdd_subsc_validate(j, &chk), -1);
	assert_int_equal(chk.n, 2);
	json_decref(j);
	json_t *ci = sg_sdd_conninfo("127.0.0.1", 9446);
	assert_string_equal(json_string_value(json_object_get(ci, "ipv4Addr")), "127.0.0.1");
	assert_int_equal(json_integer_value(json_object_get(ci, "port")), 9446);
	json_decref(ci);
	ci = sg_sdd_conninfo("::1", 1);
	assert_string_equal(json_string_value(json_object_get(ci, "ipv6Addr")), "::1");
	json_decref(ci);
	ci = sg_sdd_conninfo("sdd.example", 2);
	assert_string_equal(json_string_value(json_object_get(ci, "uri")),
	                    "sealdd://sdd.example:2");
	json_decref(ci);
}

/* 1 when param is among chk's invalid params. */
static int has_param(const struct sg_sdd_check *chk, const char *param)
{
	for (size_t k = 0; k < chk->n && k < SG_SDD_MAX_INVALID; k++)
		if (strcmp(chk->v[k].param, param) == 0)
			return 1;
	return 0;
}

/* A valid ConnStatusSubsc to break one member at a time. */
static json_t *subsc_ok(void)
{
	return J("{\"events\":[\"ESTABLISHED\"],\"valServerConnInfo\":{\"uri\":\"h:1\"},"
	         "\"notifUri\":\"https://vs/n\"}");
}

static char *filled(size_t n, char c)
{
	char *p = malloc(n + 1);
	assert_non_null(p);
	memset(p, c, n);
	p[n] = '\0';
	return p;
}

/* j is refused with exactly one problem, at param, whose reason says reason. */
static void refused_once(const json_t *j, const char *param, const char *reason)
{
	struct sg_sdd_check chk;
	assert_int_equal(sg_sdd_subsc_validate(j, &chk), -1);
	assert_int_equal(chk.n, 1);
	assert_string_equal(chk.v[0].param, param);
	assert_non_null(strstr(chk.v[0].reason, reason));
}

/* The bounds of a ConnStatusSubsc (proto.h SG_SDD_SUBSC_MAX_*): each refusal names its member,
 * and the largest accepted value of each bound passes. */
static void test_subsc_bounds(void **state)
{
	(void)state;
	struct sg_sdd_check chk;
	json_t *j;

	/* notifUri: 2048 bytes pass, 2049 do not */
	for (size_t len = SG_SDD_SUBSC_MAX_NOTIF_URI; len <= SG_SDD_SUBSC_MAX_NOTIF_URI + 1;
	     len++) {
		char *u = filled(len, 'a');
		memcpy(u, "https://", 8);
		j = subsc_ok();
		json_object_set_new(j, "notifUri", json_string(u));
		if (len == SG_SDD_SUBSC_MAX_NOTIF_URI)
			assert_int_equal(sg_sdd_subsc_validate(j, &chk), 0);
		else
			refused_once(j, "/notifUri", "at most 2048 bytes");
		json_decref(j);
		free(u);
	}

	/* events: 8 different ones (unknown strings too) pass, a 9th does not */
	j = subsc_ok();
	json_t *ev = json_array();
	json_array_append_new(ev, json_string("ESTABLISHED"));
	json_array_append_new(ev, json_string("RELEASED"));
	for (int i = 2; i < SG_SDD_SUBSC_MAX_EVENTS; i++) {
		char name[32];
		snprintf(name, sizeof name, "FUTURE_%d", i);
		json_array_append_new(ev, json_string(name));
	}
	json_object_set(j, "events", ev);
	assert_int_equal(sg_sdd_subsc_validate(j, &chk), 0);
	json_array_append_new(ev, json_string("FUTURE_9"));
	refused_once(j, "/events", "at most 8 entries");
	json_decref(ev);
	json_decref(j);

	/* the report's attack: ~262,000 events in 1 MiB is refused by its count alone (one
	 * problem, not one per entry) */
	j = subsc_ok();
	ev = json_array();
	for (int i = 0; i < 262000; i++)
		json_array_append_new(ev, json_string("RELEASED"));
	json_object_set_new(j, "events", ev);
	assert_int_equal(sg_sdd_subsc_validate(j, &chk), -1);
	assert_true(has_param(&chk, "/events"));
	assert_true(chk.n <= 2); /* /events, and / for the size */
	json_decref(j);

	/* the same event twice */
	j = subsc_ok();
	json_object_set_new(j, "events",
	                    json_pack("[s, s, s]", "RELEASED", "ESTABLISHED", "RELEASED"));
	refused_once(j, "/events/2", "repeats /events/0");
	json_decref(j);

	/* one event string: 64 bytes pass (forward compatible), 65 do not */
	char *e64 = filled(SG_SDD_SUBSC_MAX_EVENT_LEN, 'E');
	char *e65 = filled(SG_SDD_SUBSC_MAX_EVENT_LEN + 1, 'E');
	j = subsc_ok();
	json_object_set_new(j, "events", json_pack("[s]", e64));
	assert_int_equal(sg_sdd_subsc_validate(j, &chk), 0);
	json_object_set_new(j, "events", json_pack("[s, s]", "ESTABLISHED", e65));
	refused_once(j, "/events/1", "at most 64 bytes");
	json_decref(j);
	free(e64);
	free(e65);

	/* the whole canonical subscription: a valTgtUe.valUserId of 17,000 bytes (no bound of its
	 * own) takes it over 16 KiB */
	char *big = filled(17000, 'u');
	j = subsc_ok();
	json_object_set_new(j, "valTgtUe", json_pack("{s:s}", "valUserId", big));
	refused_once(j, "/", "at most 16384 bytes");
	json_decref(j);
	/* ... 16 KiB exactly passes: grow valServiceId up to the bound */
	j = subsc_ok();
	json_object_set_new(j, "valServiceId", json_string(""));
	json_t *canon = sg_sdd_subsc_canon(j);
	char *text = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS);
	size_t room = SG_SDD_SUBSC_MAX_BYTES - strlen(text);
	free(text);
	json_decref(canon);
	char *svc = filled(room, 's');
	json_object_set_new(j, "valServiceId", json_string(svc));
	assert_int_equal(sg_sdd_subsc_validate(j, &chk), 0);
	svc[room] = 's'; /* one more byte */
	svc = realloc(svc, room + 2);
	svc[room + 1] = '\0';
	json_object_set_new(j, "valServiceId", json_string(svc));
	assert_int_equal(sg_sdd_subsc_validate(j, &chk), -1);
	assert_string_equal(chk.v[0].param, "/");
	free(svc);
	/* ... members that are not kept do not count */
	json_object_set_new(j, "valServiceId", json_string("v2x"));
	json_object_set_new(j, "sgIgnored", json_string(big));
	assert_int_equal(sg_sdd_subsc_validate(j, &chk), 0);
	json_t *kept = sg_sdd_subsc_canon(j);
	assert_null(json_object_get(kept, "sgIgnored"));
	assert_string_equal(json_string_value(json_object_get(kept, "valServiceId")), "v2x");
	json_decref(kept);
	json_decref(j);
	free(big);
}

static char *body(const char *text)
{
	char *p = strdup(text);
	assert_non_null(p);
	return p;
}

/* Takes the next notification and checks whose and which it is. */
static struct sg_sdd_notif *take_is(struct sg_sdd_notifq *q, const char *owner, const char *b)
{
	struct sg_sdd_notif *n = sg_sdd_notifq_take(q, 0);
	assert_non_null(n);
	assert_string_equal(sg_sdd_notif_owner(n), owner);
	assert_string_equal(n->body, b);
	return n;
}

/* The notification queue: bounds in all and per owner (drops, not growth), each owner's
 * notifications in order and one at a time, owners served round robin, and an owner whose
 * delivery hangs holding nothing but its own; retries wait in the queue, not in a worker. */
static void test_notifq(void **state)
{
	(void)state;
	struct sg_sdd_notifq q;
	const char *why = NULL;
	char *b;
	sg_sdd_notifq_init(&q, 5, 2, 3);
	assert_null(sg_sdd_notifq_take(&q, 0));
	assert_int_equal(sg_sdd_notifq_push(&q, "A", "s1", body("a1"), &why), 0);
	assert_int_equal(sg_sdd_notifq_push(&q, "A", "s1", body("a2"), &why), 0);
	assert_false(sg_sdd_notifq_admits(&q, "A"));
	assert_true(sg_sdd_notifq_admits(&q, "B"));
	b = body("a3");
	assert_int_equal(sg_sdd_notifq_push(&q, "A", "s1", b, &why), 1);
	assert_string_equal(why, "max_per_owner");
	free(b); /* refused: still the caller's */
	assert_int_equal(sg_sdd_notifq_push(&q, "B", "s2", body("b1"), &why), 0);
	assert_int_equal(sg_sdd_notifq_push(&q, "B", "s2", body("b2"), &why), 0);
	assert_int_equal(sg_sdd_notifq_push(&q, "C", "s3", body("c1"), &why), 0);
	assert_int_equal(q.n, 5);
	assert_false(sg_sdd_notifq_admits(&q, "D"));
	b = body("d1");
	assert_int_equal(sg_sdd_notifq_push(&q, "D", "s4", b, &why), 1);
	assert_string_equal(why, "max_total");
	free(b);

	/* round robin over the owners, one in delivery per owner */
	struct sg_sdd_notif *a1 = take_is(&q, "A", "a1");
	assert_string_equal(a1->sid, "s1");
	struct sg_sdd_notif *b1 = take_is(&q, "B", "b1");
	struct sg_sdd_notif *c1 = take_is(&q, "C", "c1");
	assert_null(sg_sdd_notifq_take(&q, 0)); /* A and B wait for their first */
	/* in delivery still counts against the bounds */
	assert_false(sg_sdd_notifq_admits(&q, "A"));
	sg_sdd_notifq_done(&q, b1, 1);
	struct sg_sdd_notif *b2 = take_is(&q, "B", "b2");
	sg_sdd_notifq_done(&q, c1, 1);
	assert_null(sg_sdd_notifq_take(&q, 0));
	assert_true(sg_sdd_notifq_admits(&q, "C")); /* 3 of 5: room again */
	assert_int_equal(sg_sdd_notifq_push(&q, "C", "s3", body("c2"), &why), 0);
	sg_sdd_notifq_done(&q, a1, 1);
	/* C became ready before A's first was done: C first, then A */
	struct sg_sdd_notif *c2 = take_is(&q, "C", "c2");
	struct sg_sdd_notif *a2 = take_is(&q, "A", "a2");
	sg_sdd_notifq_done(&q, a2, 1);
	sg_sdd_notifq_done(&q, b2, 1);
	sg_sdd_notifq_done(&q, c2, 1);
	assert_int_equal(q.n, 0);
	assert_null(sg_sdd_notifq_take(&q, 0));

	/* an owner whose delivery hangs (a dead endpoint): while its first is held, everyone
	 * else's notifications are delivered, and its own stay behind it, in order */
	sg_sdd_notifq_init(&q, 4096, 256, 3);
	for (int i = 0; i < 300; i++) {
		char t[16];
		snprintf(t, sizeof t, "dead%d", i);
		b = body(t);
		int rc = sg_sdd_notifq_push(&q, "dead", "s", b, &why);
		assert_int_equal(rc, i < 256 ? 0 : 1);
		if (rc)
			free(b);
	}
	struct sg_sdd_notif *held = take_is(&q, "dead", "dead0");
	for (int i = 0; i < 100; i++) {
		char o[16];
		snprintf(o, sizeof o, "val%d", i % 10);
		assert_int_equal(sg_sdd_notifq_push(&q, o, "s", body(o), &why), 0);
	}
	for (int i = 0; i < 100; i++) {
		struct sg_sdd_notif *n = sg_sdd_notifq_take(&q, 0);
		assert_non_null(n);
		assert_string_not_equal(sg_sdd_notif_owner(n), "dead");
		sg_sdd_notifq_done(&q, n, 1);
	}
	assert_null(sg_sdd_notifq_take(&q, 0));
	sg_sdd_notifq_done(&q, held, 1);
	for (int i = 1; i < 256; i++) {
		char t[16];
		snprintf(t, sizeof t, "dead%d", i);
		sg_sdd_notifq_done(&q, take_is(&q, "dead", t), 1);
	}
	assert_int_equal(q.n, 0);

	/* a retry: the notification goes back to the front of its owner's FIFO, the owner waits
	 * out of the round robin until the retry is due (no worker waits), in order of due time,
	 * and still counts against the bounds */
	assert_int_equal(sg_sdd_notifq_next_due(&q), -1);
	assert_int_equal(sg_sdd_notifq_push(&q, "X", "s", body("x1"), &why), 0);
	assert_int_equal(sg_sdd_notifq_push(&q, "X", "s", body("x2"), &why), 0);
	assert_int_equal(sg_sdd_notifq_push(&q, "Y", "s", body("y1"), &why), 0);
	assert_int_equal(sg_sdd_notifq_push(&q, "Z", "s", body("z1"), &why), 0);
	struct sg_sdd_notif *x1 = take_is(&q, "X", "x1");
	x1->tries = 1;
	sg_sdd_notifq_retry(&q, x1, 1000);
	assert_int_equal(sg_sdd_notifq_next_due(&q), 1000);
	assert_int_equal(q.n, 4);
	struct sg_sdd_notif *y1 = take_is(&q, "Y", "y1");
	y1->tries = 1;
	sg_sdd_notifq_retry(&q, y1, 500); /* due before X: first on the wait list */
	assert_int_equal(sg_sdd_notifq_next_due(&q), 500);
	assert_int_equal(sg_sdd_notifq_push(&q, "X", "s", body("x3"), &why), 0);
	sg_sdd_notifq_done(&q, take_is(&q, "Z", "z1"), 1);
	assert_null(sg_sdd_notifq_take(&q, 499)); /* X and Y wait; x3 queued behind x1 */
	y1 = sg_sdd_notifq_take(&q, 500);
	assert_non_null(y1);
	assert_string_equal(y1->body, "y1");
	assert_int_equal(y1->tries, 1);
	assert_int_equal(sg_sdd_notifq_next_due(&q), 1000);
	sg_sdd_notifq_done(&q, y1, 1);
	assert_null(sg_sdd_notifq_take(&q, 999));
	x1 = sg_sdd_notifq_take(&q, 5000);
	assert_non_null(x1);
	assert_string_equal(x1->body, "x1"); /* the retried one first, then in order */
	assert_int_equal(sg_sdd_notifq_next_due(&q), -1);
	assert_null(sg_sdd_notifq_take(&q, 5000)); /* X is in delivery again */
	sg_sdd_notifq_retry(&q, x1, 6000);
	assert_int_equal(sg_sdd_notifq_clear(&q), 3); /* waiting owners are freed too */
	assert_int_equal(sg_sdd_notifq_next_due(&q), -1);
	assert_null(sg_sdd_notifq_take(&q, 7000));

	/* suspect owners (whose last try got no answer) never hold more than max_suspect_busy (3)
	 * workers: a good owner that came later still gets the next one */
	struct sg_sdd_notif *d[5];
	for (int i = 0; i < 5; i++) {
		char o[16];
		snprintf(o, sizeof o, "dead%d", i);
		assert_int_equal(sg_sdd_notifq_push(&q, o, "s", body(o), &why), 0);
		d[i] = take_is(&q, o, o);
		d[i]->tries = 1;
		sg_sdd_notifq_retry(&q, d[i], 10); /* suspect from now on */
	}
	for (int i = 0; i < 3; i++) {
		d[i] = sg_sdd_notifq_take(&q, 10);
		assert_non_null(d[i]);
	}
	assert_null(sg_sdd_notifq_take(&q, 10)); /* dead3 and dead4 wait: 3 suspects busy */
	assert_int_equal(sg_sdd_notifq_push(&q, "good", "s", body("g1"), &why), 0);
	sg_sdd_notifq_done(&q, take_is(&q, "good", "g1"), 1);
	sg_sdd_notifq_done(&q, d[0], 0); /* given up, no answer: dead0 stays suspect */
	d[3] = sg_sdd_notifq_take(&q, 10);
	assert_non_null(d[3]);
	assert_string_equal(sg_sdd_notif_owner(d[3]), "dead3");
	assert_null(sg_sdd_notifq_take(&q, 10));
	assert_int_equal(sg_sdd_notifq_push(&q, "dead0", "s", body("again"), &why), 0);
	assert_int_equal(sg_sdd_notifq_push(&q, "good", "s", body("g2"), &why), 0);
	/* dead0 is remembered as suspect with nothing queued: it waits, good g2 goes first */
	sg_sdd_notifq_done(&q, take_is(&q, "good", "g2"), 1);
	assert_null(sg_sdd_notifq_take(&q, 10));
	sg_sdd_notifq_done(&q, d[1], 1); /* dead1 answered (a 4xx): no longer suspect */
	struct sg_sdd_notif *a = sg_sdd_notifq_take(&q, 10); /* dead4 waited longer than dead0 */
	assert_non_null(a);
	assert_string_equal(sg_sdd_notif_owner(a), "dead4");
	assert_null(sg_sdd_notifq_take(&q, 10));
	assert_int_equal(sg_sdd_notifq_push(&q, "dead1", "s", body("ok"), &why), 0);
	sg_sdd_notifq_done(&q, take_is(&q, "dead1", "ok"), 1); /* not held by the cap */
	sg_sdd_notifq_done(&q, a, 0);
	sg_sdd_notifq_done(&q, take_is(&q, "dead0", "again"), 1);
	sg_sdd_notifq_done(&q, d[2], 1);
	sg_sdd_notifq_done(&q, d[3], 1);
	assert_int_equal(q.n, 0);
	assert_int_equal(q.suspect_busy, 0);
	assert_null(sg_sdd_notifq_take(&q, 10));
	assert_int_equal(sg_sdd_notifq_clear(&q), 0); /* frees dead4, still remembered */

	/* the total bound over many owners, and clear frees what is queued */
	for (int i = 0; i < 5000; i++) {
		char o[16];
		snprintf(o, sizeof o, "o%d", i % 1000);
		b = body("x");
		int rc = sg_sdd_notifq_push(&q, o, "s", b, &why);
		assert_int_equal(rc, i < 4096 ? 0 : 1);
		if (rc)
			free(b);
	}
	assert_int_equal(q.n, 4096);
	assert_int_equal(sg_sdd_notifq_clear(&q), 4096);
	assert_int_equal(q.n, 0);
	assert_null(sg_sdd_notifq_take(&q, 0));

	/* a full queue still takes a notification of an owner that is not suspect: the newest of
	 * the suspect owner with the most queued goes (never its last one, nor the one in
	 * delivery); a suspect owner's own is refused */
	sg_sdd_notifq_init(&q, 4, 4, 3);
	assert_int_equal(sg_sdd_notifq_push(&q, "S", "s", body("s1"), &why), 0);
	assert_int_equal(sg_sdd_notifq_push(&q, "S", "s", body("s2"), &why), 0);
	assert_int_equal(sg_sdd_notifq_push(&q, "S", "s", body("s3"), &why), 0);
	struct sg_sdd_notif *s1 = take_is(&q, "S", "s1");
	sg_sdd_notifq_retry(&q, s1, 100); /* S is suspect: s1, s2, s3 queued */
	assert_int_equal(sg_sdd_notifq_push(&q, "G", "s", body("g1"), &why), 0);
	assert_int_equal(q.n, 4);
	b = body("s4");
	assert_int_equal(sg_sdd_notifq_push(&q, "S", "s", b, &why), 1);
	assert_string_equal(why, "max_total");
	free(b);
	assert_true(sg_sdd_notifq_admits(&q, "H"));
	assert_int_equal(sg_sdd_notifq_push(&q, "H", "s", body("h1"), &why), 0);
	assert_int_equal(q.evicted, 1);
	assert_string_equal(q.evicted_owner, "S");
	assert_int_equal(sg_sdd_notifq_push(&q, "G", "s", body("g2"), &why), 0);
	assert_int_equal(q.evicted, 2);
	assert_int_equal(q.n, 4);
	assert_false(sg_sdd_notifq_admits(&q, "K")); /* S holds one: nothing more to drop */
	b = body("k1");
	assert_int_equal(sg_sdd_notifq_push(&q, "K", "s", b, &why), 1);
	assert_string_equal(why, "max_total");
	free(b);
	/* what is left is delivered: S kept its oldest (the retried s1), s2 and s3 went */
	char got[64] = "";
	for (struct sg_sdd_notif *x; (x = sg_sdd_notifq_take(&q, 100));) {
		strcat(got, x->body);
		strcat(got, " ");
		sg_sdd_notifq_done(&q, x, 1);
	}
	assert_string_equal(got, "g1 h1 s1 g2 ");
	assert_int_equal(q.n, 0);
	assert_int_equal(sg_sdd_notifq_clear(&q), 0);
}

/* A periodic job of the SEALDD server (registry refresh, subscription sweep): due once its time
 * came and the previous run is over; while that one is still in flight it stays due (the next
 * tick tries again) instead of slipping a whole period. */
static void test_job_due(void **state)
{
	(void)state;
	struct sg_sdd s;
	memset(&s, 0, sizeof s);
	atomic_int busy;
	atomic_init(&busy, 0);
	int64_t next = 0;
	assert_int_equal(sdd_job_due(&s, &next, 1000, &busy), 0); /* no store: never */
	s.pool = (struct sg_store_pool *)&s;                      /* only tested for NULL */
	int64_t t0 = sg_now_ms();
	assert_int_equal(sdd_job_due(&s, &next, 1000, &busy), 1);
	assert_true(next >= t0 + 1000 && atomic_load(&busy) == 1);
	assert_int_equal(sdd_job_due(&s, &next, 1000, &busy), 0); /* not yet */
	next = 0;                                                 /* its time came ... */
	assert_int_equal(sdd_job_due(&s, &next, 1000, &busy), 0); /* ... the last one runs */
	assert_int_equal(next, 0);                                /* still due */
	atomic_store(&busy, 0);                                   /* it finished */
	assert_int_equal(sdd_job_due(&s, &next, 1000, &busy), 1);
	assert_true(next >= t0 + 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frame_roundtrip), cmocka_unit_test(test_frame_malformed),
	    cmocka_unit_test(test_frame_oversized), cmocka_unit_test(test_flow_text),
	    cmocka_unit_test(test_dedup),           cmocka_unit_test(test_flowtab),
	    cmocka_unit_test(test_transreq),        cmocka_unit_test(test_subsc_and_conninfo),
	    cmocka_unit_test(test_subsc_bounds),    cmocka_unit_test(test_notifq),
	    cmocka_unit_test(test_job_due),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
