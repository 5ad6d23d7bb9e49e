/* cli/cmd_serve.c: `sealguard serve`: loads the configuration, creates the development PKI on
 * the first start, builds one TLS endpoint and router per reference point (DESIGN §2: a
 * reference point is a listener with a security profile), the admin listener, and runs. */
#include "auth/policy.h"
#include "base/buf.h"
#include "base/file.h"
#include "base/log.h"
#include "cli/cli.h"
#include "conf/conf.h"
#include "gm/gm.h"
#include "idm/idm.h"
#include "km/km.h"
#include "net/server.h"
#include "sdd/sdd.h"
#include "store/store.h"
#include "tls/pki.h"
#include "tls/tls.h"

#include <getopt.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char USAGE[] =
    "usage: sealguard serve [--config FILE] [--state-dir DIR] [--roles LIST] [--workers N]\n"
    "                       [--log-level LEVEL]\n"
    "\n"
    "Runs the SEAL functions named by the roles behind the reference-point listeners of the\n"
    "configuration. Without --config the embedded default is used (`sealguard config show`):\n"
    "  SEAL-UU  127.0.0.1:9443  TLS, server certificate; clients present bearer tokens\n"
    "  SEAL-S   127.0.0.1:9444  mutual TLS (VAL servers) + bearer tokens\n"
    "  SEAL-E   127.0.0.1:9445  mutual TLS between SEAL servers\n"
    "  admin    127.0.0.1:9090  plain HTTP, loopback: /healthz, /readyz, /metrics, /pki/ca.crl\n"
    "On the first start a development PKI is created in STATE/pki (see `sealguard pki`).\n"
    "Every TLS listener answers GET /healthz. SIGTERM or SIGINT drains and stops; certificate\n"
    "and CRL files are re-read when they change (`sealguard pki revoke` takes effect live).\n"
    "\n"
    "options:\n"
    "  --roles LIST       comma-separated SEAL functions to run: idm, gm, km, sdd (default all)\n"
    "  --workers N        event-loop threads (default: number of cores)\n"
    "  --log-level LEVEL  debug, info, warn or error (default info)\n";

struct serve_state {
	struct sg_conf *conf;
	struct sg_server *server;
	struct sg_tls_server **tls; /* one per reference point */
	struct sg_router **routers; /* one per reference point, then the admin router */
	unsigned n;
	struct sg_idm *idm;       /* identity management (SIM-S) when the idm role runs */
	struct sg_sdd *sdd;       /* SEALDD server when the sdd role runs */
	struct sg_gm *gm;         /* group management (ss-gm) when the gm role runs */
	struct sg_km *km;         /* key management (SKM-S) when the km role runs */
	struct sg_policy *policy; /* auth/: the pre-handler of every reference point */
	unsigned reload_ticks; /* reload_tick's count: the CRLs' next update is looked at hourly */
	struct sg_store_upkeep *upkeep; /* expired rows and audit retention, hourly */
};

#define CRL_FILES_MAX 16

/* T5: the CRL files this process checks chains against (the listeners', resource.crl), each
 * once; returns how many. */
static size_t crl_files(const struct sg_conf *c, const char **out)
{
	size_t n = 0;
	for (unsigned i = 0; i <= c->n_refpoints && n < CRL_FILES_MAX; i++) {
		const char *f = i < c->n_refpoints ? c->refpoints[i].crl : c->resource.crl;
		int seen = !f;
		for (size_t k = 0; k < n && !seen; k++)
			seen = !strcmp(out[k], f);
		if (!seen)
			out[n++] = f;
	}
	return n;
}

/* The seconds left until each CRL's next update (sealguard_tls_crl_seconds_left). */
static sg_err crl_metrics(const struct sg_conf *c, struct sg_buf *b)
{
	const char *f[CRL_FILES_MAX];
	size_t n = crl_files(c, f);
	sg_err e = sg_buf_printf(b, "# HELP sealguard_tls_crl_seconds_left Seconds until the CRL "
	                            "file's earliest next update; past it (negative), chains "
	                            "checked against it are refused.\n"
	                            "# TYPE sealguard_tls_crl_seconds_left gauge\n");
	for (size_t i = 0; e == SG_OK && i < n; i++) {
		int64_t left;
		char err[256];
		if (!strpbrk(f[i], "\"\\\n") &&
		    sg_tls_crl_seconds_left(f[i], &left, err, sizeof err) == SG_OK)
			e = sg_buf_printf(b, "sealguard_tls_crl_seconds_left{file=\"%s\"} %lld\n",
			                  f[i], (long long)left);
	}
	return e;
}

/* Hourly (and at the first tick): a CRL near or past its next update is logged, as every
 * chain checked against it will be refused once it passes. */
static void crl_check(const struct sg_conf *c)
{
	const char *f[CRL_FILES_MAX];
	size_t n = crl_files(c, f);
	for (size_t i = 0; i < n; i++) {
		int64_t left;
		char err[256];
		if (sg_tls_crl_seconds_left(f[i], &left, err, sizeof err) != SG_OK)
			sg_log_warn("%s", err);
		else if (left < 0)
			sg_log_error(
			    "CRL %s is past its next update (%lld s ago): every certificate "
			    "chain checked against it is refused until it is renewed",
			    f[i], (long long)-left);
		else if (left < 7 * 86400)
			sg_log_warn(
			    "CRL %s reaches its next update in %lld h: renew it before then "
			    "(sealguard pki revoke re-signs the development CA's)",
			    f[i], (long long)(left / 3600));
	}
}

static enum sg_http_result h_healthz(struct sg_http_req *r, void *arg)
{
	(void)arg;
	static const char body[] = "{\"status\":\"pass\"}";
	sg_http_resp_body(r, body, sizeof body - 1, "application/health+json");
	return SG_HTTP_DONE;
}

/* Readiness (admin listener): 200 once tokens can be verified, 503 with the reason before
 * (start-up, or identity management unreachable). /healthz only says the process serves. */
static enum sg_http_result h_readyz(struct sg_http_req *r, void *arg)
{
	struct serve_state *st = arg;
	const char *why = NULL;
	if (!st->policy || sg_policy_ready(st->policy, &why)) {
		static const char body[] = "{\"status\":\"pass\"}";
		sg_http_resp_body(r, body, sizeof body - 1, "application/health+json");
		return SG_HTTP_DONE;
	}
	char b[256]; /* why is one of sg_policy_ready's fixed texts: nothing to escape */
	int n = snprintf(b, sizeof b, "{\"status\":\"fail\",\"notes\":[\"%s\"]}", why);
	sg_http_resp_status(r, 503);
	sg_http_resp_header(r, "Retry-After", "1");
	sg_http_resp_body(r, b, (size_t)n, "application/health+json");
	return SG_HTTP_DONE;
}

static sg_err upkeep_metrics(struct sg_store_upkeep *u, struct sg_buf *b)
{
	uint64_t expired, audit;
	sg_store_upkeep_totals(u, &expired, &audit);
	return sg_buf_printf(
	    b,
	    "# HELP sealguard_store_deleted_rows_total Rows the store upkeep "
	    "deleted: codes, refresh tokens and revocations past their expiry; "
	    "audit rows past audit.retention_days or audit.max_rows.\n"
	    "# TYPE sealguard_store_deleted_rows_total counter\n"
	    "sealguard_store_deleted_rows_total{reason=\"expired\"} %llu\n"
	    "sealguard_store_deleted_rows_total{reason=\"audit_retention\"} %llu\n",
	    (unsigned long long)expired, (unsigned long long)audit);
}

static enum sg_http_result h_metrics(struct sg_http_req *r, void *arg)
{
	struct serve_state *st = arg;
	struct sg_buf b = SG_BUF_INIT;
	if (sg_server_metrics(st->server, &b) != SG_OK || sg_sdd_metrics(st->sdd, &b) != SG_OK ||
	    sg_policy_metrics(st->policy, &b) != SG_OK || crl_metrics(st->conf, &b) != SG_OK ||
	    upkeep_metrics(st->upkeep, &b) != SG_OK) {
		sg_buf_free(&b);
		sg_http_resp_problem(r, 500, NULL, "metrics unavailable");
		return SG_HTTP_DONE;
	}
	sg_http_resp_body(r, b.data, b.len, "text/plain; version=0.0.4");
	sg_buf_free(&b);
	return SG_HTTP_DONE;
}

/* TS 33.310 §6.1.3a: the CRL named by every certificate's cRLDistributionPoints, served DER
 * (RFC 5280 §4.2.1.13, media type application/pkix-crl). */
static enum sg_http_result h_crl(struct sg_http_req *r, void *arg)
{
	struct serve_state *st = arg;
	char path[4096];
	if (sg_path_join(path, sizeof path, st->conf->pki_dir, "crl.pem") != SG_OK)
		goto fail;
	FILE *f = fopen(path, "r");
	if (!f)
		goto fail;
	X509_CRL *crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	if (!crl)
		goto fail;
	unsigned char *der = NULL;
	int n = i2d_X509_CRL(crl, &der);
	X509_CRL_free(crl);
	if (n <= 0)
		goto fail;
	sg_http_resp_body(r, der, (size_t)n, "application/pkix-crl");
	OPENSSL_free(der);
	return SG_HTTP_DONE;
fail:
	sg_http_resp_problem(r, 404, NULL, "no CRL is published by this server");
	return SG_HTTP_DONE;
}

static enum sg_http_result h_ca(struct sg_http_req *r, void *arg)
{
	struct serve_state *st = arg;
	char path[4096], *pem = NULL;
	size_t len = 0;
	if (sg_path_join(path, sizeof path, st->conf->pki_dir, "ca.crt") != SG_OK ||
	    sg_file_read(path, 1 << 20, &pem, &len) != SG_OK) {
		sg_http_resp_problem(r, 404, NULL, "no CA certificate is published by this server");
		return SG_HTTP_DONE;
	}
	sg_http_resp_body(r, pem, len, "application/x-pem-file");
	free(pem);
	return SG_HTTP_DONE;
}

static int has_str(char **v, unsigned n, const char *s)
{
	for (unsigned i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

static void idm_tick(void *arg)
{
	sg_idm_tick(arg);
}

static void gm_tick(void *arg)
{
	sg_gm_tick(arg);
}

static void km_tick(void *arg)
{
	sg_km_tick(arg);
}

static void reload_tick(void *arg)
{
	struct serve_state *st = arg;
	for (unsigned i = 0; i < st->n; i++) {
		char err[512] = "";
		if (sg_tls_server_reload_if_changed(st->tls[i], err, sizeof err) != SG_OK)
			sg_log_warn("TLS reload of %s failed, keeping the previous files: %s",
			            st->conf->refpoints[i].name, err);
	}
	sg_sdd_tls_reload(st->sdd);
	if (st->reload_ticks++ % 3600 == 0)
		crl_check(st->conf);
}

/* Creates the development PKI when the state dir has none: "dev PKI created on first start". */
static int ensure_pki(const struct sg_conf *c)
{
	char ca[4096];
	if (sg_path_join(ca, sizeof ca, c->pki_dir, "ca.crt") != SG_OK)
		return sg_cli_fail("PKI directory path too long");
	if (sg_file_exists(ca))
		return 0;
	char uri[300];
	snprintf(uri, sizeof uri, "http://%s/pki/ca.crl",
	         c->admin_bind && *c->admin_bind ? c->admin_bind : "127.0.0.1:9090");
	struct sg_pki_opts o = {.dir = c->pki_dir, .crl_uri = uri};
	char err[512] = "";
	if (sg_pki_init(&o, err, sizeof err) != SG_OK)
		return sg_cli_fail("cannot create the development PKI in %s: %s", c->pki_dir, err);
	sg_log_info("created a development PKI in %s (for development only)", c->pki_dir);
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void serve_state_free(struct serve_state *st)
{
	sg_store_upkeep_stop(st->upkeep);
	st->upkeep = NULL;
	/* before the server: queued store jobs complete while the loops still exist */
	sg_idm_free(st->idm);
	st->idm = NULL;
	sg_gm_free(st->gm);
	st->gm = NULL;
	sg_km_free(st->km);
	st->km = NULL;
	sg_sdd_free(st->sdd); /* before the policy its data plane verifies tokens with */
	st->sdd = NULL;
	if (st->server)
		sg_server_free(st->server);
	sg_policy_free(st->policy);
	st->policy = NULL;
	for (unsigned i = 0; i < st->n; i++) {
		if (st->tls && st->tls[i])
			sg_tls_server_free(st->tls[i]);
	}
	for (unsigned i = 0; st->routers && i <= st->n; i++)
		if (st->routers[i])
			sg_router_free(st->routers[i]);
	free(st->tls);
	free(st->routers);
	sg_policy_routes_release();
	sg_conf_free(st->conf);
}

static int build(struct serve_state *st)
{
	struct sg_conf *c = st->conf;
	char err[1024] = "";
	st->n = c->n_refpoints;
	st->tls = calloc(st->n, sizeof *st->tls);
	st->routers = calloc(st->n + 1, sizeof *st->routers);
	if (!st->tls || !st->routers)
		return sg_cli_fail("out of memory");
	if (sg_server_new(c->workers, &st->server) != SG_OK)
		return sg_cli_fail("cannot create the server");
	int idm_listeners = 0;
	for (unsigned i = 0; i < c->n_refpoints; i++)
		idm_listeners +=
		    has_str(c->refpoints[i].services, c->refpoints[i].n_services, "idm");
	if (has_str(c->roles, c->n_roles, "idm") && idm_listeners &&
	    sg_idm_new(c, &st->idm, err, sizeof err) != SG_OK)
		return sg_cli_fail("identity management: %s", err);
	if (has_str(c->roles, c->n_roles, "gm") && sg_gm_new(c, &st->gm, err, sizeof err) != SG_OK)
		return sg_cli_fail("group management: %s", err);
	if (has_str(c->roles, c->n_roles, "km") && sg_km_new(c, &st->km, err, sizeof err) != SG_OK)
		return sg_cli_fail("key management: %s", err);
	/* TS 33.434 §5.1.1: one policy engine, enforced before any handler (R1-R4, I10) */
	if (sg_policy_new(c, &st->policy, err, sizeof err) != SG_OK)
		return sg_cli_fail("%s: authorization policy: %s", c->source, err);
	if (has_str(c->roles, c->n_roles, "sdd") &&
	    sg_sdd_new(c, st->policy, &st->sdd, err, sizeof err) != SG_OK)
		return sg_cli_fail("SEALDD: %s", err);
	for (unsigned i = 0; i < st->n; i++) {
		struct sg_conf_refpoint *rp = &c->refpoints[i];
		if (sg_tls_conf_check(&rp->tls, 1, err, sizeof err) != SG_OK)
			return sg_cli_fail("%s: reference point %s: %s", c->source, rp->name, err);
		if (sg_tls_server_new(&rp->tls, 1, &st->tls[i], err, sizeof err) != SG_OK)
			return sg_cli_fail("reference point %s: TLS: %s", rp->name, err);
		st->routers[i] = sg_router_new();
		if (!st->routers[i] ||
		    sg_router_add(st->routers[i], "GET", "/healthz", h_healthz, NULL) != SG_OK)
			return sg_cli_fail("out of memory");
		if (st->idm && has_str(rp->services, rp->n_services, "idm") &&
		    sg_idm_mount(st->idm, st->routers[i], rp, err, sizeof err) != SG_OK)
			return sg_cli_fail("%s", err);
		if (st->gm && has_str(rp->services, rp->n_services, "gm") &&
		    sg_gm_mount(st->gm, st->routers[i], rp, err, sizeof err) != SG_OK)
			return sg_cli_fail("%s", err);
		if (st->sdd && has_str(rp->services, rp->n_services, "sdd") &&
		    sg_sdd_mount(st->sdd, st->routers[i], rp, err, sizeof err) != SG_OK)
			return sg_cli_fail("%s", err);
		if (st->km && has_str(rp->services, rp->n_services, "km") &&
		    sg_km_mount(st->km, st->routers[i], rp, err, sizeof err) != SG_OK)
			return sg_cli_fail("%s", err);
		struct sg_listener_conf lc = {
		    .name = rp->name,
		    .bind = rp->bind,
		    .tls = st->tls[i],
		    .router = st->routers[i],
		    .pre = sg_policy_pre,
		    .pre_arg = sg_policy_listener_arg(st->policy, rp),
		    .limits = rp->limits,
		    .access_log = c->access_log,
		};
		if (sg_server_add_listener(st->server, &lc, err, sizeof err) != SG_OK)
			return sg_cli_fail("%s", err);
		/* the rate limits are said at start: a per-address limit behind a source-NAT
		 * balancer would otherwise surprise (docs/configuration.md) */
		char rate[96] = "no rate limit per address";
		if (rp->limits.requests_per_second)
			snprintf(rate, sizeof rate, "%u requests/s per address, burst %u",
			         rp->limits.requests_per_second, rp->limits.request_burst);
		if (rp->limits.requests_per_second_per_identity)
			snprintf(rate + strlen(rate), sizeof rate - strlen(rate),
			         "; %u/s per identity",
			         rp->limits.requests_per_second_per_identity);
		sg_log_info("%s listening on %s (tls %s, auth %s; %s)", rp->name, rp->bind,
		            rp->tls_mode, rp->auth, rate);
	}
	if (c->admin_bind && *c->admin_bind) {
		struct sg_router *rt = sg_router_new();
		st->routers[st->n] = rt;
		if (!rt || sg_router_add(rt, "GET", "/healthz", h_healthz, NULL) ||
		    sg_router_add(rt, "GET", "/readyz", h_readyz, st) ||
		    sg_router_add(rt, "GET", "/metrics", h_metrics, st) ||
		    sg_router_add(rt, "GET", "/pki/ca.crl", h_crl, st) ||
		    sg_router_add(rt, "GET", "/pki/ca.crt", h_ca, st))
			return sg_cli_fail("out of memory");
		struct sg_listener_conf lc = {.name = "admin", .bind = c->admin_bind, .router = rt};
		sg_limits_default(&lc.limits);
		lc.limits.requests_per_second = 0; /* loopback: health checks and scrapers */
		if (sg_server_add_listener(st->server, &lc, err, sizeof err) != SG_OK)
			return sg_cli_fail("admin listener on %s: %s", c->admin_bind, err);
		sg_log_info(
		    "admin listening on %s (plain HTTP: /healthz /readyz /metrics /pki/ca.crl)",
		    c->admin_bind);
	}
	/* JWKS and revocations from identity management over SEAL-E, on a thread of its own */
	if (sg_policy_start(st->policy, err, sizeof err) != SG_OK)
		return sg_cli_fail("%s", err);
	if (st->sdd && sg_sdd_start(st->sdd, err, sizeof err) != SG_OK)
		return sg_cli_fail("SEALDD: %s", err);
	if (sg_server_add_timer(st->server, 1000, reload_tick, st) != SG_OK)
		return sg_cli_fail("cannot start the reload timer");
	/* expired codes, refresh tokens and revocations, and the audit's retention: without it
	 * they grow with every login and token (G4: a disk that fills stops every function) */
	struct sg_store_upkeep_conf uc = {
	    .driver = c->store_driver,
	    .path = c->store_path,
	    .audit_retention_ms = (int64_t)c->audit.retention_days * 86400000,
	    .audit_max_rows = c->audit.max_rows,
	    .first_ms = 1000,
	    .interval_ms = 3600 * 1000,
	};
	if (c->store_path && sg_store_upkeep_start(&uc, &st->upkeep, err, sizeof err) != SG_OK)
		return sg_cli_fail("%s", err);
	/* registry caches follow the store (CLI changes on a running server) within 0.5 s */
	if (st->idm && sg_server_add_timer(st->server, 500, idm_tick, st->idm) != SG_OK)
		return sg_cli_fail("cannot start the identity management timer");
	if (st->gm && sg_server_add_timer(st->server, 500, gm_tick, st->gm) != SG_OK)
		return sg_cli_fail("cannot start the group management timer");
	if (st->km && sg_server_add_timer(st->server, 500, km_tick, st->km) != SG_OK)
		return sg_cli_fail("cannot start the key management timer");
	return 0;
}

int sg_cli_serve(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct option opts[] = {
	    {"roles", required_argument, NULL, 'r'},
	    {"workers", required_argument, NULL, 'w'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *roles = NULL, *level = NULL;
	long workers = -1;
	optind = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'r':
			roles = optarg;
			break;
		case 'w': {
			char *end;
			workers = strtol(optarg, &end, 10);
			if (*end || workers < 0 || workers > 256)
				return sg_cli_fail("--workers takes a number from 0 to 256"), 2;
			break;
		}
		case 'l':
			level = optarg;
			break;
		case 'h':
			fputs(USAGE, stdout);
			return 0;
		default:
			fputs(USAGE, stderr);
			return 2;
		}
	}
	if (optind < argc)
		return sg_cli_fail("serve takes no arguments ('%s')", argv[optind]), 2;

	struct serve_state st = {0};
	if (sg_cli_load_conf(g, roles, &st.conf) != 0)
		return 1;
	if (workers >= 0)
		st.conf->workers = (unsigned)workers;
	const char *lvl = level ? level : st.conf->log_level;
	if (lvl) {
		int l = sg_log_level_parse(lvl);
		if (l < 0) {
			sg_conf_free(st.conf);
			return sg_cli_fail("unknown log level '%s'", lvl), 2;
		}
		sg_log_set_level((enum sg_log_level)l);
	}
	raise_nofile();
	int rc = 1;
	if (sg_mkdirs(st.conf->state_dir, 0700) != SG_OK) {
		sg_cli_fail("cannot create the state directory %s", st.conf->state_dir);
	} else if (ensure_pki(st.conf) == 0 && build(&st) == 0) {
		sg_log_info("sealguard %s serving (config %s, state %s)", SG_VERSION,
		            st.conf->source, st.conf->state_dir);
		rc = sg_server_run(st.server) == SG_OK ? 0 : 1;
		sg_log_info("sealguard stopped");
	}
	serve_state_free(&st);
	return rc;
}
