/* Tests for conf/: the embedded default, overrides, path resolution, and rejected configs with
 * the exact file:line of the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "conf/conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct sg_conf_refpoint *find_rp(const struct sg_conf *c, const char *name)
{
	for (unsigned i = 0; i < c->n_refpoints; i++)
		if (strcmp(c->refpoints[i].name, name) == 0)
			return &c->refpoints[i];
	return NULL;
}

static void test_default(void **state)
{
	(void)state;
	struct sg_conf *c = NULL;
	char err[512] = "";
	assert_int_equal(
	    sg_conf_load_string(SG_CONF_DEFAULT_YAML, "<embedded default>", &c, err, sizeof err),
	    SG_OK);
	assert_int_equal(sg_conf_finish(c, NULL, NULL, err, sizeof err), SG_OK);
	assert_string_equal(c->source, "<embedded default>");
	assert_string_equal(c->state_dir, "./var");
	assert_int_equal(c->workers, 0);
	assert_int_equal(c->access_log, 1);
	assert_string_equal(c->log_level, "info");
	assert_string_equal(c->store_driver, "sqlite");
	assert_string_equal(c->store_path, "./var/sealguard.db");
	assert_string_equal(c->pki_dir, "./var/pki");
	assert_string_equal(c->admin_bind, "127.0.0.1:9090");
	assert_int_equal(c->n_roles, 4);
	assert_string_equal(c->roles[0], "idm");
	assert_string_equal(c->roles[3], "sdd");
	assert_int_equal(c->n_refpoints, 3);

	const struct sg_conf_refpoint *uu = find_rp(c, "SEAL-UU"), *s = find_rp(c, "SEAL-S"),
	                              *e = find_rp(c, "SEAL-E");
	assert_non_null(uu);
	assert_non_null(s);
	assert_non_null(e);
	assert_string_equal(uu->bind, "127.0.0.1:9443");
	assert_int_equal(uu->tls.mode, SG_TLS_SERVER_AUTH);
	assert_int_equal(uu->auth_mode, SG_AUTH_BEARER);
	assert_int_equal(uu->n_services, 4);
	assert_string_equal(s->bind, "127.0.0.1:9444");
	assert_int_equal(s->tls.mode, SG_TLS_MUTUAL);
	assert_int_equal(s->auth_mode, SG_AUTH_MTLS_BEARER);
	assert_string_equal(e->bind, "127.0.0.1:9445");
	assert_int_equal(e->tls.mode, SG_TLS_MUTUAL);
	assert_int_equal(e->auth_mode, SG_AUTH_MTLS);
	assert_int_equal(e->n_services, 4); /* SEAL-E also carries SEALDD-E (sdd) */
	assert_string_equal(e->services[2], "km");
	assert_string_equal(e->services[3], "sdd");

	/* TLS files default into the PKI dir; tls points at the refpoint's strings */
	assert_string_equal(s->tls.cert, "./var/pki/server.crt");
	assert_string_equal(s->tls.key, "./var/pki/server.key");
	assert_string_equal(s->tls.ca, "./var/pki/ca.crt");
	assert_string_equal(s->tls.crl, "./var/pki/crl.pem");
	assert_ptr_equal(s->tls.cert, s->cert);
	assert_string_equal(uu->tls.cert, "./var/pki/server.crt");
	assert_null(uu->tls.psk_file);

	/* limits default */
	struct sg_limits d;
	memset(&d, 0, sizeof d); /* padding too: the listener's limits were zeroed first */
	sg_limits_default(&d);
	assert_memory_equal(&uu->limits, &d, sizeof d);
	assert_int_equal(uu->limits.max_handshakes_per_address, 256);
	assert_int_equal(uu->limits.requests_per_second, 1000);
	assert_int_equal(uu->limits.request_burst, 2000);
	assert_int_equal(uu->limits.requests_per_second_per_identity, 0); /* off */
	assert_int_equal(uu->limits.handshakes_per_second, 200);
	assert_int_equal(uu->limits.handshake_burst, 400);
	/* identity management and resource-server defaults derive from the listeners */
	assert_string_equal(c->idm.issuer, "https://localhost:9443");
	assert_string_equal(c->resource.idm_url, "https://localhost:9445");
	assert_true(c->idm.access_ttl_s < c->idm.id_ttl_s);
	assert_int_equal(c->idm.code_ttl_s, 60);
	assert_int_equal(c->resource.revocation_poll_ms, 2000);
	assert_string_equal(c->km.gm_url, "https://localhost:9445");
	assert_null(c->sdd.data_bind);
	assert_int_equal(c->sdd.flow_lifetime_s, 3600);
	assert_int_equal(c->sdd.subscription_lifetime_s, 86400);
	assert_int_equal(c->sdd.user_output_mib, 64);
	assert_int_equal(c->sdd.max_subsc, 10000);
	assert_int_equal(c->sdd.max_subsc_per_server, 1000);
	assert_int_equal(c->audit.retention_days, 365);
	assert_int_equal(c->audit.max_rows, 10000000);
	assert_int_equal(c->km.gm_max_mib, 64);
	assert_int_equal(c->gm.max_docs_per_server, 1000);
	assert_int_equal(c->gm.max_bytes_per_server, 4u << 20);
	assert_int_equal(c->gm.max_members, 10000);
	assert_int_equal(c->sdd.max_channels, 10000);
	assert_int_equal(c->sdd.max_channels_per_user, 512);
	assert_int_equal(c->sdd.max_unauth_per_addr, 256);
	assert_int_equal(c->sdd.channels_per_second_per_addr, 200);
	/* R4: SEAL-E client credentials default to this server's own certificate */
	assert_string_equal(c->resource.client_cert, "./var/pki/server.crt");
	assert_string_equal(c->resource.client_key, "./var/pki/server.key");
	assert_string_equal(c->resource.ca, "./var/pki/ca.crt");
	sg_conf_free(c);
}

/* the roles split: a gm-only process names identity management's issuer and SEAL-E, its own
 * client credentials (relative to pki_dir, or absolute) and may disable the token cache */
static void test_resource_split(void **state)
{
	(void)state;
	struct sg_conf *c = NULL;
	char err[512] = "";
	const char *y = "state_dir: /tmp/gm\nroles: [gm]\n"
	                "idm: {issuer: \"https://idm.example:9443\"}\n"
	                "resource: {idm_url: \"https://idm.example:9445\", client_cert: gm.crt,"
	                " client_key: /etc/gm.key, token_cache_entries: 0}\n"
	                "reference_points:\n"
	                "  - {name: SEAL-UU, bind: \"0.0.0.0:9543\", tls: {mode: server-auth},"
	                " auth: bearer, services: [gm]}\n";
	assert_int_equal(sg_conf_load_string(y, "gm.yaml", &c, err, sizeof err), SG_OK);
	assert_int_equal(sg_conf_finish(c, NULL, NULL, err, sizeof err), SG_OK);
	assert_string_equal(c->idm.issuer, "https://idm.example:9443");
	assert_string_equal(c->resource.idm_url, "https://idm.example:9445");
	assert_string_equal(c->resource.client_cert, "/tmp/gm/pki/gm.crt");
	assert_string_equal(c->resource.client_key, "/etc/gm.key");
	assert_string_equal(c->resource.ca, "/tmp/gm/pki/ca.crt");
	assert_int_equal(c->resource.token_cache_entries, 0);
	sg_conf_free(c);
}

static void test_overrides(void **state)
{
	(void)state;
	struct sg_conf *c = NULL;
	char err[512] = "";
	assert_int_equal(sg_conf_load_string(SG_CONF_DEFAULT_YAML, "x", &c, err, sizeof err),
	                 SG_OK);
	assert_int_equal(sg_conf_finish(c, "/tmp/sgstate", "km, idm", err, sizeof err), SG_OK);
	assert_string_equal(c->state_dir, "/tmp/sgstate");
	assert_string_equal(c->pki_dir, "/tmp/sgstate/pki");
	assert_string_equal(c->store_path, "/tmp/sgstate/sealguard.db");
	assert_int_equal(c->n_roles, 2);
	assert_string_equal(c->roles[0], "km");
	assert_string_equal(c->roles[1], "idm");
	assert_string_equal(c->refpoints[0].tls.cert, "/tmp/sgstate/pki/server.crt");
	sg_conf_free(c);

	/* unknown or repeated role in --roles */
	const char *bad[][2] = {{"idm,xm", "--roles: 'xm' is not one of idm, gm, km, sdd"},
	                        {"idm,idm", "--roles: 'idm' is listed twice"},
	                        {",", "--roles: empty"}};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(
		    sg_conf_load_string(SG_CONF_DEFAULT_YAML, "x", &c, err, sizeof err), SG_OK);
		assert_int_equal(sg_conf_finish(c, NULL, bad[i][0], err, sizeof err),
		                 SG_ERR_CONFIG);
		if (!strstr(err, bad[i][1]))
			fail_msg("--roles %s: got '%s'", bad[i][0], err);
		sg_conf_free(c);
	}
}

static const char FULL[] = "state_dir: /srv/sg\n"                        /* 1 */
                           "workers: 4\n"                                /* 2 */
                           "log_level: debug\n"                          /* 3 */
                           "access_log: false\n"                         /* 4 */
                           "store: {driver: postgres, url: 'host=db'}\n" /* 5 */
                           "pki_dir: /etc/sg/pki\n"                      /* 6 */
                           "admin: {bind: ''}\n"                         /* 7 */
                           "roles: [km]\n"                               /* 8 */
                           "reference_points:\n"                         /* 9 */
                           "  - name: KM-S\n"                            /* 10 */
                           "    bind: '[::1]:8443'\n"                    /* 11 */
                           "    tls:\n"                                  /* 12 */
                           "      mode: mutual\n"                        /* 13 */
                           "      cert: certs/km.crt\n"                  /* 14 */
                           "      key: /abs/km.key\n"                    /* 15 */
                           "      ca: other-ca.crt\n"                    /* 16 */
                           "      min_version: TLS1.3\n"                 /* 17 */
                           "      groups: P-256\n"                       /* 18 */
                           "    auth: mtls+bearer\n"                     /* 19 */
                           "    services: [km]\n"                        /* 20 */
                           "    allowed_identities: ['DNS:val1']\n"      /* 21 */
                           "    limits: {max_body_bytes: 4096, h2_max_streams: 10, "
                           "requests_per_second: 50, requests_per_second_per_identity: 7, "
                           "handshakes_per_second: 30}\n"
                           "  - name: T6\n"
                           "    bind: localhost:0\n"
                           "    tls: {mode: psk, psk_file: psk.txt}\n"
                           "    auth: bearer\n"
                           "    services: [idm]\n"
                           "    limits: {requests_per_second: 0}\n";

static void test_full_and_paths(void **state)
{
	(void)state;
	struct sg_conf *c = NULL;
	char err[512] = "";
	assert_int_equal(sg_conf_load_string(FULL, "full.yaml", &c, err, sizeof err), SG_OK);
	assert_int_equal(sg_conf_finish(c, NULL, NULL, err, sizeof err), SG_OK);
	assert_string_equal(c->state_dir, "/srv/sg");
	assert_int_equal(c->workers, 4);
	assert_int_equal(c->access_log, 0);
	assert_string_equal(c->store_driver, "postgres");
	assert_string_equal(c->store_url, "host=db");
	assert_null(c->store_path);
	assert_string_equal(c->admin_bind, "");
	assert_int_equal(c->n_roles, 1);

	const struct sg_conf_refpoint *k = &c->refpoints[0];
	assert_string_equal(k->bind, "[::1]:8443");
	assert_string_equal(k->tls.cert, "/etc/sg/pki/certs/km.crt"); /* relative: under pki_dir */
	assert_string_equal(k->tls.key, "/abs/km.key");               /* absolute: kept */
	assert_string_equal(k->tls.ca, "/etc/sg/pki/other-ca.crt");
	assert_string_equal(k->tls.crl, "/etc/sg/pki/crl.pem"); /* default */
	assert_string_equal(k->tls.min_version, "TLS1.3");
	assert_string_equal(k->tls.groups, "P-256");
	assert_null(k->tls.max_version);
	assert_int_equal(k->n_allowed_identities, 1);
	assert_string_equal(k->allowed_identities[0], "DNS:val1");
	struct sg_limits d;
	sg_limits_default(&d);
	assert_int_equal(k->limits.max_body_bytes, 4096);
	assert_int_equal(k->limits.h2_max_streams, 10);
	assert_int_equal(k->limits.max_header_bytes, d.max_header_bytes);
	assert_int_equal(k->limits.idle_timeout_ms, d.idle_timeout_ms);
	assert_int_equal(k->limits.requests_per_second, 50);
	assert_int_equal(k->limits.request_burst, 100); /* twice the rate unless given */
	assert_int_equal(k->limits.requests_per_second_per_identity, 7);
	assert_int_equal(k->limits.request_burst_per_identity, 14);
	assert_int_equal(k->limits.handshakes_per_second, 30);
	assert_int_equal(k->limits.handshake_burst, 60); /* twice the rate unless given */

	const struct sg_conf_refpoint *p = &c->refpoints[1];
	assert_int_equal(p->tls.mode, SG_TLS_PSK);
	assert_string_equal(p->tls.psk_file, "/etc/sg/pki/psk.txt");
	assert_null(p->tls.cert);
	assert_int_equal(p->auth_mode, SG_AUTH_BEARER);
	assert_int_equal(p->limits.requests_per_second, 0); /* 0: no rate limit */
	sg_conf_free(c);
}

static void test_file(void **state)
{
	(void)state;
	char path[] = "/tmp/sg_conf_testXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *bad = "workers: 1\nreference_points:\n  - name: A\n    bind: x:1\n"
	                  "    tls: {mode: mutal}\n    auth: bearer\n    services: [idm]\n";
	assert_int_equal(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
	close(fd);
	struct sg_conf *c = NULL;
	char err[512] = "", want[512];
	assert_int_equal(sg_conf_load_file(path, &c, err, sizeof err), SG_ERR_CONFIG);
	assert_null(c);
	snprintf(want, sizeof want,
	         "%s:5: reference_points[0].tls.mode: 'mutal' is not one of server-auth, mutual, "
	         "psk",
	         path);
	assert_string_equal(err, want);
	unlink(path);
	assert_int_equal(sg_conf_load_file(path, &c, err, sizeof err), SG_ERR_CONFIG);
	assert_non_null(strstr(err, "cannot read"));
}

/* A valid two-refpoint config; bad cases below replace one line. */
static const char *const BASE[] = {
    "state_dir: ./var",                 /* 1 */
    "roles: [idm, km]",                 /* 2 */
    "reference_points:",                /* 3 */
    "  - name: SEAL-UU",                /* 4 */
    "    bind: 127.0.0.1:9443",         /* 5 */
    "    tls:",                         /* 6 */
    "      mode: server-auth",          /* 7 */
    "    auth: bearer",                 /* 8 */
    "    services: [idm]",              /* 9 */
    "  - name: SEAL-S",                 /* 10 */
    "    bind: 127.0.0.1:9444",         /* 11 */
    "    tls:",                         /* 12 */
    "      mode: mutual",               /* 13 */
    "    auth: mtls+bearer",            /* 14 */
    "    services: [km]",               /* 15 */
    "    limits: {max_body_bytes: 10}", /* 16 */
};
#define N_BASE (sizeof BASE / sizeof BASE[0])

struct bad {
	unsigned line;      /* line of BASE to replace (1-based), 0 = none */
	const char *text;   /* replacement (may hold several lines) */
	const char *prefix; /* expected start of the error */
	const char *frag;   /* expected fragment */
};

static const struct bad BAD[] = {
    {1, "state_dir: ./var\nidm: {issuer: http://localhost:9443}",
     "bad.yaml:2: idm.issuer:", "must be an https URL"},
    {1, "state_dir: ./var\nidm: {access_token_ttl_s: 7200}",
     "bad.yaml:2: idm.access_token_ttl_s:", "must be shorter than id_token_ttl_s"},
    {1, "state_dir: ./var\nidm: {scrypt_ln: 30}", "bad.yaml:2: idm.scrypt_ln:", "from 10 to 20"},
    {1, "state_dir: ./var\nresource: {idm_url: ftp://x}",
     "bad.yaml:2: resource.idm_url:", "must be an https URL"},
    {1, "state_dir: ./var\nkm: {gm_url: http://gm.example:9445}",
     "bad.yaml:2: km.gm_url:", "must be an https URL"},
    {1, "state_dir: ./var\nsdd: {data_bind: 127.0.0.1}",
     "bad.yaml:2: sdd.data_bind:", "expected host:port"},
    {1, "state_dir: ./var\nsdd: {flow_lifetime_s: 5}",
     "bad.yaml:2: sdd.flow_lifetime_s:", "from 60 to 86400"},
    {1, "state_dir: ./var\naudit: {retention_days: 36501}",
     "bad.yaml:2: audit.retention_days:", "from 0 (keep) to 36500"},
    {1, "state_dir: ./var\naudit: {max_rows: 999}", "bad.yaml:2: audit.max_rows:", "at least 1000"},
    {1, "state_dir: ./var\nsdd: {data_advertise: 'sdd host'}",
     "bad.yaml:2: sdd.data_advertise:", "must be a host name or address"},
    {1, "state_dir: ./var\nsdd: {data_bind: '0.0.0.0:9446'}",
     "bad.yaml:2: sdd.data_bind:", "set sdd.data_advertise"},
    {1, "state_dir: ./var\nsdd: {data_bind: '[::]:9446'}",
     "bad.yaml:2: sdd.data_bind:", "listens on every address"},
    {1, "state_dir: ./var\nsdd: {data_advertise: ''}",
     "bad.yaml:2: sdd.data_advertise:", "must be a host name or address"},
    {1, "state_dir: ./var\nkm: {gm_max_mib: 0}", "bad.yaml:2: km.gm_max_mib:", "from 1 to 4096"},
    {1, "state_dir: ./var\ngm: {max_bytes_per_server: 4095}",
     "bad.yaml:2: gm.max_bytes_per_server:", "from 4096 to 1073741824"},
    {1, "state_dir: ./var\ngm: {max_documents_per_server: 0}",
     "bad.yaml:2: gm.max_documents_per_server:", "from 1 to 1000000"},
    {1, "state_dir: ./var\ngm: {max_members: 1000001}",
     "bad.yaml:2: gm.max_members:", "from 1 to 1000000"},
    {1, "state_dir: ./var\ngm: {max_member: 5}", "bad.yaml", "max_member"},
    {1, "state_dir: ./var\nsdd: {channel_stall_s: 0}",
     "bad.yaml:2: sdd.channel_stall_s:", "from 1 to 3600"},
    {1, "state_dir: ./var\nsdd: {subscription_lifetime_s: 59}",
     "bad.yaml:2: sdd.subscription_lifetime_s:", "from 60 to 31536000"},
    {1, "state_dir: ./var\nsdd: {subscription_lifetime_s: 31536001}",
     "bad.yaml:2: sdd.subscription_lifetime_s:", "from 60 to 31536000"},
    {1, "state_dir: ./var\nsdd: {user_output_mib: 0}",
     "bad.yaml:2: sdd.user_output_mib:", "from 1 to 4096"},
    {1, "state_dir: ./var\nsdd: {user_output_mib: 4097}",
     "bad.yaml:2: sdd.user_output_mib:", "from 1 to 4096"},
    {1, "state_dir: ./var\nsdd: {max_subscriptions: 0}",
     "bad.yaml:2: sdd.max_subscriptions:", "from 1 to 1000000"},
    {1, "state_dir: ./var\nsdd: {max_subscriptions_per_server: 2000000}",
     "bad.yaml:2: sdd.max_subscriptions_per_server:", "from 1 to 1000000"},
    {1, "state_dir: ./var\nsdd: {max_unauthenticated_per_address: 0}",
     "bad.yaml:2: sdd.max_unauthenticated_per_address:", "from 1 to 1000000"},
    {1, "state_dir: ./var\nsdd: {channels_per_second_per_address: 1000001}",
     "bad.yaml:2: sdd.channels_per_second_per_address:", "from 1 to 1000000"},
    {1, "state_dri: ./var", "bad.yaml:1: state_dri:", "unknown key"},
    {7, "      mode: server-auth\n      cert_file: x",
     "bad.yaml:8: reference_points[0].tls.cert_file:", "unknown key (expected one of mode, cert"},
    {13, "      mode: mutal", "bad.yaml:13: reference_points[1].tls.mode:",
     "'mutal' is not one of server-auth, mutual, psk"},
    {14, "    auth: token", "bad.yaml:14: reference_points[1].auth:",
     "'token' is not one of none, bearer, mtls, mtls+bearer"},
    {5, "    bind: 127.0.0.1",
     "bad.yaml:5: reference_points[0].bind:", "'127.0.0.1': expected host:port"},
    {5, "    bind: ::1:9443", "bad.yaml:5: reference_points[0].bind:", "in brackets"},
    {11, "    bind: 127.0.0.1:99999",
     "bad.yaml:11: reference_points[1].bind:", "port must be a number from 0 to 65535"},
    {10, "  - name: SEAL-UU",
     "bad.yaml:10: reference_points[1].name:", "'SEAL-UU' is already used by reference_points[0]"},
    {13, "      mode: server-auth", "bad.yaml:14: reference_points[1].auth:",
     "'mtls+bearer' needs tls.mode mutual (tls.mode is server-auth)"},
    {7, "      mode: psk", "bad.yaml:6: reference_points[0].tls:", "mode psk needs psk_file"},
    {9, "    services: [idm, xm]",
     "bad.yaml:9: reference_points[0].services[1]:", "'xm' is not one of idm, gm, km, sdd"},
    {2, "roles: [idm, lm]", "bad.yaml:2: roles[1]:", "'lm' is not one of idm, gm, km, sdd"},
    {5, "    bind: [127.0.0.1:9443", "bad.yaml:", "syntax error"},
    {8, "    auth: bearer: x", "bad.yaml:8: syntax error:", "mapping values are not allowed"},
    {16, "    limits: {max_body_bytes: -3}",
     "bad.yaml:16: reference_points[1].limits.max_body_bytes:", "expected a non-negative integer"},
    {16, "    limits: {max_body_bytes: 0}",
     "bad.yaml:16: reference_points[1].limits.max_body_bytes:", "must be from 1"},
    {16, "    limits: {requests_per_second: 1000001}",
     "bad.yaml:16: reference_points[1].limits.requests_per_second:",
     "must be from 0 (no limit) to 1000000"},
    {16, "    limits: {requests_per_second: 5, request_burst: 0}",
     "bad.yaml:16: reference_points[1].limits.request_burst:", "must be from 1 to 1000000"},
    {16, "    limits: {requests_per_second_per_identity: 2000000}",
     "bad.yaml:16: reference_points[1].limits.requests_per_second_per_identity:",
     "must be from 0 (no limit) to 1000000"},
    {16, "    limits: {request_burst_per_identity: 0}",
     "bad.yaml:16: reference_points[1].limits.request_burst_per_identity:",
     "must be from 1 to 1000000"},
    {16, "    limits: {handshakes_per_second: 1000001}",
     "bad.yaml:16: reference_points[1].limits.handshakes_per_second:",
     "must be from 0 (no limit) to 1000000"},
    {16, "    limits: {handshake_burst: 0}",
     "bad.yaml:16: reference_points[1].limits.handshake_burst:", "must be from 1 to 1000000"},
    {8, "    allowed_identities: []",
     "bad.yaml:4: reference_points[0]:", "missing required key 'auth'"},
    {7, "      - server-auth",
     "bad.yaml:7: reference_points[0].tls:", "expected a mapping, got a list"},
    {1, "workers: many", "bad.yaml:1: workers:", "expected a non-negative integer"},
};

static char *build(const struct bad *b)
{
	size_t cap = 4096;
	char *s = calloc(1, cap);
	assert_non_null(s);
	for (unsigned i = 0; i < N_BASE; i++) {
		const char *l = (b && b->line == i + 1) ? b->text : BASE[i];
		strncat(s, l, cap - strlen(s) - 2);
		strcat(s, "\n");
	}
	return s;
}

static void test_bad_table(void **state)
{
	(void)state;
	struct sg_conf *c = NULL;
	char err[512];
	char *good = build(NULL);
	assert_int_equal(sg_conf_load_string(good, "bad.yaml", &c, err, sizeof err), SG_OK);
	assert_int_equal(sg_conf_finish(c, NULL, NULL, err, sizeof err), SG_OK);
	assert_int_equal(c->refpoints[1].limits.max_body_bytes, 10);
	sg_conf_free(c);
	free(good);

	for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
		char *y = build(&BAD[i]);
		err[0] = '\0';
		c = NULL;
		sg_err e = sg_conf_load_string(y, "bad.yaml", &c, err, sizeof err);
		if (e != SG_ERR_CONFIG || c)
			fail_msg("case %zu (%s): accepted or wrong code %d", i, BAD[i].text, e);
		if (strncmp(err, BAD[i].prefix, strlen(BAD[i].prefix)) != 0 ||
		    !strstr(err, BAD[i].frag))
			fail_msg("case %zu (%s):\n  got  '%s'\n  want '%s...%s'", i, BAD[i].text,
			         err, BAD[i].prefix, BAD[i].frag);
		free(y);
	}
}

static void test_empty(void **state)
{
	(void)state;
	struct sg_conf *c = NULL;
	char err[512];
	assert_int_equal(sg_conf_load_string("", "e.yaml", &c, err, sizeof err), SG_ERR_CONFIG);
	assert_non_null(strstr(err, "e.yaml:1:"));
	assert_int_equal(sg_conf_load_string("just text\n", "e.yaml", &c, err, sizeof err),
	                 SG_ERR_CONFIG);
	assert_string_equal(err, "e.yaml:1: expected a mapping, got a scalar");
	assert_int_equal(sg_conf_load_string("workers: 2\nreference_points: []\n", "e.yaml", &c,
	                                     err, sizeof err),
	                 SG_ERR_CONFIG);
	assert_string_equal(err, "e.yaml:2: reference_points: needs at least 1 entry");
	assert_int_equal(sg_conf_load_string("workers: 2\n", "e.yaml", &c, err, sizeof err),
	                 SG_ERR_CONFIG);
	assert_string_equal(err, "e.yaml:1: missing required key 'reference_points'");
	assert_null(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_default),        cmocka_unit_test(test_overrides),
	    cmocka_unit_test(test_resource_split), cmocka_unit_test(test_full_and_paths),
	    cmocka_unit_test(test_file),           cmocka_unit_test(test_bad_table),
	    cmocka_unit_test(test_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
