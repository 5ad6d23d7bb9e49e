/* tests/unit/test_sdd_ddc.c: the pure parts of SEALDD-E (docs/sdd-protocol.md §7): flows
 * created with a given sddFlowId (relocation target), the TS 29.548 DdContext check, the
 * client's reading of END FLOW_RELOCATED, and the sdd.peers configuration key. */
#include "client/sddc.h"
#include "conf/conf.h"
#include "sdd/proto.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t ID[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 1, 2, 3, 4, 5, 6, 7};

static void test_flowtab_add_id(void **state)
{
	(void)state;
	struct sg_sdd_flowtab *t = sg_sdd_flowtab_new(3, 2);
	const char *why = NULL;
	struct sg_sdd_flow *f = sg_sdd_flowtab_add_id(t, ID, "alice", "v2x", 1, 1000, 60, &why);
	assert_non_null(f);
	assert_null(why);
	assert_memory_equal(f->id, ID, 16);
	assert_int_equal(f->urllc, 1);
	assert_int_equal(f->expires_ms, 1000 + 60000);
	assert_null(f->end_reason);
	assert_ptr_equal(sg_sdd_flowtab_find(t, ID, "alice"), f);
	assert_null(sg_sdd_flowtab_find(t, ID, "bob")); /* bound to its user */
	/* the same id again: refused, whoever asks, also while the first is being freed */
	assert_null(sg_sdd_flowtab_add_id(t, ID, "bob", "v2x", 0, 1000, 60, &why));
	assert_string_equal(why, "exists");
	f->released = 1;
	f->end_reason = strdup("FLOW_RELOCATED: 127.0.0.1:9546");
	assert_null(sg_sdd_flowtab_add_id(t, ID, "alice", "v2x", 0, 1000, 60, &why));
	assert_string_equal(why, "exists");
	assert_int_equal(sg_sdd_flowtab_count(t), 1);
	/* the zero id is never a flow */
	uint8_t zero[16] = {0};
	assert_null(sg_sdd_flowtab_add_id(t, zero, "alice", "v2x", 0, 1000, 60, &why));
	/* per-user limit (2) and total limit (3) */
	uint8_t id[16];
	memcpy(id, ID, 16);
	id[15] = 100;
	assert_non_null(sg_sdd_flowtab_add_id(t, id, "bob", "v2x", 0, 1000, 60, &why));
	id[15] = 101;
	assert_non_null(sg_sdd_flowtab_add_id(t, id, "bob", "v2x", 0, 1000, 60, &why));
	id[15] = 102;
	assert_null(sg_sdd_flowtab_add_id(t, id, "bob", "v2x", 0, 1000, 60, &why));
	assert_string_equal(why, "limit");
	assert_null(sg_sdd_flowtab_add_id(t, id, "carol", "v2x", 0, 1000, 60, &why));
	assert_string_equal(why, "limit");
	assert_int_equal(sg_sdd_flowtab_count(t), 3);
	sg_sdd_flowtab_free(t); /* frees end_reason too (ASan) */
}

static const char CTX[] =
    "{\"uuContext\":{\"sddFlowId\":\"CQgHBgUEAwIBAQIDBAUGBw\",\"valServiceId\":\"v2x\","
    "\"valServEndPoint\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":7000},"
    "\"valTgtUe\":{\"valUserId\":\"alice@v2x\"},\"comLifetime\":60},"
    "\"sContext\":{\"valServerId\":\"v2x-app\",\"valServiceId\":\"v2x\","
    "\"valServerConnInfo\":{\"uri\":\"tls://val.example.com:7443\"},"
    "\"qosInfo\":{\"qosReference\":\"q\"},"
    "\"valServerBdw\":{\"totalUlBdw\":1,\"totalDlBdw\":2}},"
    "\"trLayerContext\":{\"transProtoc\":\"TCP_TLS\"}}";

static int check(const char *json, struct sg_sdd_target *tgt, struct sg_sdd_check *chk)
{
	json_t *j = json_loads(json, 0, NULL);
	assert_non_null(j);
	memset(chk, 0, sizeof *chk);
	int rc = sg_sdd_ddcontext_validate(j, "/ddContext", tgt, chk);
	json_decref(j);
	return rc;
}

/* one problem, at param */
static void refused(const char *json, const char *param)
{
	struct sg_sdd_target tgt;
	struct sg_sdd_check chk;
	assert_int_equal(check(json, &tgt, &chk), -1);
	int found = 0;
	for (size_t i = 0; i < chk.n && i < SG_SDD_MAX_INVALID; i++)
		found |= strcmp(chk.v[i].param, param) == 0;
	if (!found)
		fail_msg("%s: no problem at %s (first: %s %s)", json, param, chk.v[0].param,
		         chk.v[0].reason);
}

static char *with(const char *from, const char *to)
{
	static char buf[2048];
	const char *p = strstr(CTX, from);
	assert_non_null(p);
	snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - CTX), CTX, to, p + strlen(from));
	return buf;
}

static void test_ddcontext(void **state)
{
	(void)state;
	struct sg_sdd_target tgt;
	struct sg_sdd_check chk;
	assert_int_equal(check(CTX, &tgt, &chk), 0);
	assert_int_equal(chk.n, 0);
	assert_string_equal(tgt.host, "val.example.com");
	assert_int_equal(tgt.port, 7443);
	refused("[]", "/ddContext");
	refused(with("\"uuContext\"", "\"uuContextX\""), "/ddContext/uuContext");
	refused(with("\"sContext\"", "\"sContextX\""), "/ddContext/sContext");
	refused(with("\"sddFlowId\"", "\"sddFlowIdX\""), "/ddContext/uuContext/sddFlowId");
	refused(with("\"valServEndPoint\"", "\"x\""), "/ddContext/uuContext/valServEndPoint");
	refused(with("\"valServerId\":\"v2x-app\"", "\"valServerId\":1"),
	        "/ddContext/sContext/valServerId");
	refused(with("\"valServerId\":\"v2x-app\",", ""), "/ddContext/sContext/valServerId");
	refused(with("\"valServerConnInfo\"", "\"y\""), "/ddContext/sContext/valServerConnInfo");
	refused(with("tls://val.example.com:7443", "tls://val.example.com"),
	        "/ddContext/sContext/valServerConnInfo/port");
	refused(with("\"ipv4Addr\":\"127.0.0.1\"", "\"ipv4Addr\":\"300.1.1.1\""),
	        "/ddContext/uuContext/valServEndPoint/ipv4Addr");
	refused(with("{\"valUserId\":\"alice@v2x\"}", "{\"valUserId\":\"a\",\"valUeId\":\"b\"}"),
	        "/ddContext/uuContext/valTgtUe");
	refused(with("\"comLifetime\":60", "\"comLifetime\":-5"),
	        "/ddContext/uuContext/comLifetime");
	refused(with("\"totalDlBdw\":2", "\"totalDlBdw\":\"2\""),
	        "/ddContext/sContext/valServerBdw/totalDlBdw");
	refused(with("\"qosReference\":\"q\"", "\"qosReference\":5"),
	        "/ddContext/sContext/qosInfo/qosReference");
	refused(with("\"transProtoc\":\"TCP_TLS\"", ""), "/ddContext/trLayerContext/transProtoc");
	/* problems are appended, never reset */
	json_t *j = json_loads("{}", 0, NULL);
	chk.n = 1;
	assert_int_equal(sg_sdd_ddcontext_validate(j, "/c", &tgt, &chk), -1);
	assert_true(chk.n >= 3);
	json_decref(j);
}

static void test_relocated_to(void **state)
{
	(void)state;
	char host[64];
	unsigned port = 0;
	assert_int_equal(
	    sg_sddc_relocated_to("FLOW_RELOCATED: 127.0.0.1:9546", host, sizeof host, &port), 1);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 9546);
	assert_int_equal(sg_sddc_relocated_to("recv: FLOW_RELOCATED: [::1]:443 after 5 bytes", host,
	                                      sizeof host, &port),
	                 1);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 443);
	assert_int_equal(
	    sg_sddc_relocated_to("FLOW_RELOCATED: sdd2.example.com:9446", host, sizeof host, &port),
	    1);
	assert_string_equal(host, "sdd2.example.com");
	static const char *const bad[] = {
	    NULL,
	    "FLOW_RELEASED",
	    "FLOW_RELOCATED: ",
	    "FLOW_RELOCATED: host",
	    "FLOW_RELOCATED: host:",
	    "FLOW_RELOCATED: host:0",
	    "FLOW_RELOCATED: host:70000",
	    "FLOW_RELOCATED: host:12x",
	    "FLOW_RELOCATED: :80",
	    "FLOW_RELOCATED: [::1]80",
	    "FLOW_RELOCATED: a-very-long-host-name-that-does-not-fit-into-the-buffer.example:1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char small[32];
		if (sg_sddc_relocated_to(bad[i], small, sizeof small, &port) != 0)
			fail_msg("accepted: %s", bad[i] ? bad[i] : "(null)");
	}
}

static void test_conf_peers(void **state)
{
	(void)state;
	static const char base[] =
	    "state_dir: ./var\n"
	    "reference_points:\n"
	    "  - {name: E, bind: 127.0.0.1:9445, tls: {mode: mutual}, auth: mtls, services: "
	    "[sdd]}\n"
	    "  - {name: U, bind: 127.0.0.1:9443, tls: {mode: server-auth}, auth: bearer, services: "
	    "[sdd]}\n";
	char y[1024], err[512];
	struct sg_conf *c = NULL;
	assert_int_equal(sg_conf_load_string(base, "x", &c, err, sizeof err), SG_OK);
	assert_int_equal(c->sdd.n_peers, 0); /* default: SEALDD-E off */
	sg_conf_free(c);
	snprintf(y, sizeof y, "%ssdd: {peers: [\"DNS:sdd2.example.com\", \"IP:10.0.0.2\"]}\n",
	         base);
	assert_int_equal(sg_conf_load_string(y, "x", &c, err, sizeof err), SG_OK);
	assert_int_equal(c->sdd.n_peers, 2);
	assert_string_equal(c->sdd.peers[0], "DNS:sdd2.example.com");
	assert_string_equal(c->sdd.peers[1], "IP:10.0.0.2");
	sg_conf_free(c);
	static const char *const bad[] = {"sdd2.example.com", "DNS:", "CN:sdd2",
	                                  "DNS:a\", \"DNS:a"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(y, sizeof y, "%ssdd: {peers: [\"%s\"]}\n", base, bad[i]);
		c = NULL;
		err[0] = '\0';
		if (sg_conf_load_string(y, "x", &c, err, sizeof err) == SG_OK) {
			sg_conf_free(c);
			fail_msg("accepted peer %s", bad[i]);
		}
		assert_non_null(strstr(err, "sdd.peers["));
	}
	/* the embedded default lists sdd on SEAL-E and no peers */
	assert_int_equal(sg_conf_load_string(SG_CONF_DEFAULT_YAML, "d", &c, err, sizeof err),
	                 SG_OK);
	int sdd_on_e = 0;
	for (unsigned i = 0; i < c->n_refpoints; i++)
		if (!strcmp(c->refpoints[i].name, "SEAL-E"))
			for (unsigned k = 0; k < c->refpoints[i].n_services; k++)
				sdd_on_e |= !strcmp(c->refpoints[i].services[k], "sdd");
	assert_true(sdd_on_e);
	assert_int_equal(c->sdd.n_peers, 0);
	sg_conf_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_flowtab_add_id),
	    cmocka_unit_test(test_ddcontext),
	    cmocka_unit_test(test_relocated_to),
	    cmocka_unit_test(test_conf_peers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
