/* tests/unit/test_sdd.c: SEALDD pure parts (sdd/proto.h): the SEALDD-UU frame codec with
 * malformed and oversized frames, sddFlowId text form, duplicate elimination (URLLC), the flow
 * table (owner binding, limits, expiry) and the TS 29.548 TransReq / ConnStatusSubsc checks. */
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
	a1->released = 1;
	struct sg_sdd_flow *a4 = sg_sdd_flowtab_add(t, "alice", "v2x", 0, 1000, 60, &why);
	assert_null(a4); /* ...but still for the total until removed */
	sg_sdd_flowtab_remove(t, a1);
	sg_sdd_flowtab_remove(t, b1);
	assert_int_equal(sg_sdd_flowtab_count(t), 3);
	assert_non_null(sg_sdd_flowtab_add(t, "alice", "v2x", 0, 1000, 60, &why));
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frame_roundtrip), cmocka_unit_test(test_frame_malformed),
	    cmocka_unit_test(test_frame_oversized), cmocka_unit_test(test_flow_text),
	    cmocka_unit_test(test_dedup),           cmocka_unit_test(test_flowtab),
	    cmocka_unit_test(test_transreq),        cmocka_unit_test(test_subsc_and_conninfo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
