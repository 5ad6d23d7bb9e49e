/* cli/cmd_valserver.c: `sealguard valserver add|list|remove`, the VAL servers registered with
 * the SIM-S: OAuth client_id = the VAL server's name, authenticated on SEAL-S by the identity
 * (subjectAltName) of its client certificate (R3, RFC 8705 tls_client_auth), the VAL services
 * it serves, its scopes (I8a) and the key provisioning right (SKeyProv, TS 33.434 §5.8, K3). */
#include "cli/cli.h"

#include "base/b64.h"
#include "base/buf.h"
#include "base/clock.h"
#include "client/valsrv.h"
#include "conf/conf.h"
#include "idm/logic.h"
#include "store/store.h"

#include <jansson.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: sealguard [--state-dir DIR] valserver COMMAND [OPTIONS]\n"
    "\n"
    "VAL servers registered with identity management. A VAL server reaches SEAL-S with mutual\n"
    "TLS; its client certificate's subjectAltName is its identity (R3), and it gets access\n"
    "tokens with client_credentials, client_id = NAME (RFC 8705 tls_client_auth).\n"
    "Changes apply to a running server too, without a restart.\n"
    "\n"
    "commands:\n"
    "  add NAME --identity SAN [--val-service ID]... [--scope S]... [--key-provisioning]\n"
    "              register VAL server NAME. SAN is the certificate identity: DNS:name,\n"
    "              URI:scheme:... or IP:address (a certificate from `sealguard pki init\n"
    "              --val-server NAME` has DNS:NAME). --val-service names a VAL service it\n"
    "              serves (repeatable).\n"
    "  list        the VAL servers with identity, services, scopes and rights\n"
    "  remove NAME delete the VAL server and revoke its access tokens (resource servers\n"
    "              refuse them within resource.revocation_poll_ms); SEALDD servers delete\n"
    "              its connection status subscriptions\n"
    "  token --name NAME [--raw] [the VAL server options of `sealguard call --help`]\n"
    "              get an access token as VAL server NAME does (client credentials over\n"
    "              mutual TLS, RFC 8705) and print its claims; --raw prints the token\n"
    "              alone\n"
    "\n"
    "Scopes (docs/scopes.md, REQUIREMENTS I8a): seal:gm seal:km seal:kp seal:ipp sdd. The\n"
    "default is all of them except seal:kp; --key-provisioning adds seal:kp together with\n"
    "the SKeyProv right (its access tokens carry the SKeyProv claim, TS 33.434 §5.8).\n"
    "--scope takes one scope or a space-separated list and may be repeated.\n"
    "\n"
    "example:\n"
    "  sealguard pki init --val-server v2x-app\n"
    "  sealguard valserver add v2x-app --identity DNS:v2x-app --val-service v2x \\\n"
    "      --key-provisioning\n";

/* I8a: VAL-server scopes, canonical order. */
static const char *const VS_SCOPES[] = {"seal:gm", "seal:km", "seal:kp", "seal:ipp", "sdd"};
#define N_VS_SCOPES (sizeof VS_SCOPES / sizeof VS_SCOPES[0])
#define KP          2 /* index of seal:kp */

/* VAL server names are OAuth client ids and usually the certificate's DNS name: letters,
 * digits, '-' and '.', 1..128. */
static int vs_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128)
		return 0;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			return 0;
	return 1;
}

/* T5: the identity is a subjectAltName entry: DNS:, URI: or IP:, as tls/ reports it. */
static int identity_check(const char *san)
{
	if (strncmp(san, "DNS:", 4) == 0) {
		const char *d = san + 4;
		size_t n = strlen(d);
		int ok = n > 0 && n <= 253 && d[0] != '.' && d[0] != '-' && d[n - 1] != '.';
		for (const char *p = d; ok && *p; p++)
			ok = isalnum((unsigned char)*p) || *p == '-' || *p == '.' ||
			     (*p == '*' && p == d && p[1] == '.');
		if (ok && !strstr(d, ".."))
			return 0;
		return sg_cli_fail("--identity %s: not a DNS name", san), 2;
	}
	if (strncmp(san, "IP:", 3) == 0) {
		unsigned char a[16];
		if (inet_pton(AF_INET, san + 3, a) == 1 || inet_pton(AF_INET6, san + 3, a) == 1)
			return 0;
		return sg_cli_fail("--identity %s: not an IPv4 or IPv6 address", san), 2;
	}
	if (strncmp(san, "URI:", 4) == 0) {
		const char *u = san + 4;
		size_t sl =
		    strspn(u, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+"
		              "-.");
		int ok = sl > 0 && isalpha((unsigned char)u[0]) && u[sl] == ':' && u[sl + 1];
		for (const char *p = u; ok && *p; p++)
			ok = (unsigned char)*p > 0x20 && *p != 0x7f;
		if (ok)
			return 0;
		return sg_cli_fail("--identity %s: not an absolute URI", san), 2;
	}
	return sg_cli_fail("--identity '%s': use DNS:name, URI:uri or IP:address (the "
	                   "certificate's subjectAltName)",
	                   san),
	       2;
}

static int scopes_add(const char *s, int have[N_VS_SCOPES])
{
	return sg_cli_scopes_add(
	    s, VS_SCOPES, N_VS_SCOPES, have,
	    "is not a VAL-server scope (seal:gm seal:km seal:kp seal:ipp sdd)");
}

enum { OPT_ID = 1000, OPT_SVC, OPT_SCOPE, OPT_KP };

static int cmd_add(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct option opts[] = {
	    {"identity", required_argument, NULL, OPT_ID},
	    {"val-service", required_argument, NULL, OPT_SVC},
	    {"scope", required_argument, NULL, OPT_SCOPE},
	    {"key-provisioning", no_argument, NULL, OPT_KP},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char **svcs = calloc((size_t)argc + 1, sizeof *svcs);
	if (!svcs)
		return sg_cli_fail("out of memory");
	size_t nsvcs = 0;
	const char *identity = NULL;
	int have[N_VS_SCOPES] = {0}, scope_given = 0, kp = 0, rc = 0, ch;
	optind = 0;
	while (rc == 0 && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_ID:
			identity = optarg;
			rc = identity_check(optarg);
			break;
		case OPT_SVC: {
			size_t n = strlen(optarg);
			int ok = n > 0 && n <= 255;
			for (const char *p = optarg; ok && *p; p++)
				ok = (unsigned char)*p > 0x20 && *p != 0x7f;
			for (size_t i = 0; ok && i < nsvcs; i++)
				ok = strcmp(svcs[i], optarg) != 0;
			if (!ok)
				rc = (sg_cli_fail(
				          "--val-service '%s': a VAL service id (no spaces, at "
				          "most 255 bytes), each once",
				          optarg),
				      2);
			svcs[nsvcs++] = optarg;
			break;
		}
		case OPT_SCOPE:
			scope_given = 1;
			rc = scopes_add(optarg, have);
			break;
		case OPT_KP:
			kp = 1;
			break;
		case 'h':
			fputs(USAGE, stdout);
			rc = -1;
			break;
		default:
			fputs(USAGE, stderr);
			rc = 2;
		}
	}
	const char *name = optind < argc ? argv[optind] : NULL;
	if (rc == 0 && (!name || optind + 1 != argc || !identity))
		rc = (sg_cli_fail("usage: sealguard valserver add NAME --identity SAN "
		                  "[--val-service ID]... [--scope S]... [--key-provisioning]"),
		      2);
	if (rc == 0 && !vs_name_ok(name))
		rc = (sg_cli_fail("VAL server name '%s': 1 to 128 letters, digits, '-' or '.'",
		                  name),
		      2);
	/* K3: seal:kp only together with the SKeyProv right */
	if (rc == 0 && have[KP] && !kp)
		rc = (sg_cli_fail("seal:kp comes with the key provisioning right: add "
		                  "--key-provisioning"),
		      2);
	if (rc) {
		free(svcs);
		return rc < 0 ? 0 : rc;
	}
	for (size_t i = 0; i < N_VS_SCOPES; i++)
		have[i] = i == KP ? kp : have[i] || !scope_given;
	char scopes[80] = "";
	for (size_t i = 0; i < N_VS_SCOPES; i++)
		if (have[i])
			snprintf(scopes + strlen(scopes), sizeof scopes - strlen(scopes), "%s%s",
			         scopes[0] ? " " : "", VS_SCOPES[i]);

	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	if (sg_cli_open_store(g, &conf, &st)) {
		free(svcs);
		return 1;
	}
	struct sg_store_valserver v = {.name = (char *)name,
	                               .identity = (char *)identity,
	                               .val_services = svcs,
	                               .n_val_services = nsvcs,
	                               .scopes = scopes,
	                               .key_provisioning = kp};
	struct sg_buf detail = SG_BUF_INIT;
	sg_buf_printf(&detail, "identity=%s scopes=%s key_provisioning=%d val_services=", identity,
	              scopes, kp);
	for (size_t i = 0; i < nsvcs; i++)
		sg_buf_printf(&detail, "%s%s", i ? "," : "", svcs[i]);
	sg_err e = sg_store_tx_begin(st);
	/* one certificate identity names one VAL server, or tls_client_auth is ambiguous */
	struct sg_store_valserver *all = NULL;
	size_t nall = 0;
	const char *clash = NULL;
	if (e == SG_OK && (e = sg_store_valserver_list(st, &all, &nall)) == SG_OK)
		for (size_t i = 0; i < nall && !clash; i++)
			if (all[i].identity && strcmp(all[i].identity, identity) == 0)
				clash = all[i].name;
	if (e == SG_OK && clash) {
		sg_store_tx_rollback(st);
		rc = (sg_cli_fail("identity %s is already registered for VAL server '%s'", identity,
		                  clash),
		      1);
	} else if (e == SG_OK && (e = sg_store_valserver_add(st, &v)) == SG_ERR_EXISTS) {
		sg_store_tx_rollback(st);
		rc = sg_cli_fail("the name '%s' is taken (by a VAL server or a client)", name);
	} else if (e != SG_OK) {
		rc = sg_cli_store_fail(st, "valserver add");
	} else if (sg_cli_audit(st, "valserver.add", name, detail.data)) {
		sg_store_tx_rollback(st);
		rc = 1;
	} else if (sg_store_tx_commit(st) != SG_OK) {
		rc = sg_cli_store_fail(st, "valserver add");
	} else {
		printf("added VAL server %s\n  identity: %s\n  scopes: %s\n  key provisioning "
		       "(SKeyProv): %s\n",
		       name, identity, scopes, kp ? "yes" : "no");
		for (size_t i = 0; i < nsvcs; i++)
			printf("  VAL service: %s\n", svcs[i]);
	}
	sg_store_valserver_list_free(all, nall);
	sg_buf_free(&detail);
	sg_store_close(st);
	sg_conf_free(conf);
	free(svcs);
	return rc;
}

static int cmd_list(int argc, char **argv, const struct sg_cli_global *g)
{
	(void)argv;
	if (argc > 1)
		return sg_cli_fail("valserver list takes no arguments"), 2;
	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	if (sg_cli_open_store(g, &conf, &st))
		return 1;
	struct sg_store_valserver *v = NULL;
	size_t n = 0;
	int rc = 0;
	if (sg_store_valserver_list(st, &v, &n) != SG_OK) {
		rc = sg_cli_fail("valserver list: %s", sg_store_last_error());
	} else {
		printf("%-20s  %-24s  %-8s  %-36s  %s\n", "NAME", "IDENTITY", "SKEYPROV", "SCOPES",
		       "VAL_SERVICES");
		for (size_t i = 0; i < n; i++) {
			printf("%-20s  %-24s  %-8s  %-36s  ", v[i].name, v[i].identity,
			       v[i].key_provisioning ? "yes" : "no",
			       v[i].scopes ? v[i].scopes : "");
			for (size_t j = 0; j < v[i].n_val_services; j++)
				printf("%s%s", j ? "," : "", v[i].val_services[j]);
			printf("%s\n", v[i].disabled ? "  (disabled)" : "");
		}
		sg_store_valserver_list_free(v, n);
	}
	sg_store_close(st);
	sg_conf_free(conf);
	return rc;
}

static int cmd_remove(int argc, char **argv, const struct sg_cli_global *g)
{
	if (argc != 2 || argv[1][0] == '-') {
		if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
			return fputs(USAGE, stdout), 0;
		return sg_cli_fail("usage: sealguard valserver remove NAME"), 2;
	}
	const char *name = argv[1];
	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	if (sg_cli_open_store(g, &conf, &st))
		return 1;
	int64_t now = sg_now_ms();
	struct sg_store_valserver v = {0};
	char gid[SG_IDM_VALSERVER_GID_LEN + 1];
	/* one transaction: the grant of its client_credentials tokens is revoked (on the
	 * revocation list) before it is gone */
	sg_err e = sg_store_tx_begin(st);
	if (e == SG_OK)
		e = sg_store_valserver_get(st, name, &v);
	if (e == SG_OK && sg_idm_valserver_gid(v.name, v.created_at, gid) != 0)
		e = SG_ERR_INTERNAL; /* libcrypto failed: nothing is removed */
	if (e == SG_OK)
		e = sg_store_grant_revoke(
		    st, gid, now,
		    sg_idm_grant_revoke_until(conf->idm.access_ttl_s, conf->idm.id_ttl_s, now));
	sg_store_valserver_clear(&v);
	if (e == SG_OK)
		e = sg_store_valserver_delete(st, name);
	int rc = sg_cli_tx_finish(st, e, "VAL server", "valserver remove", "valserver.remove", name,
	                          "tokens revoked");
	if (rc == 0)
		printf("removed VAL server %s (its access tokens revoked)\n", name);
	sg_store_close(st);
	sg_conf_free(conf);
	return rc;
}

/* `valserver token`: the VAL-server SDK's token (client/valsrv.h), decoded for display. */
static int cmd_token(int argc, char **argv, const struct sg_cli_global *g)
{
	enum { OPT_RAW = 2100 };
	static const struct option opts[] = {
	    SG_CLI_VALSRV_LONGOPTS,
	    {"raw", no_argument, NULL, OPT_RAW},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct sg_cli_valsrv_args a = {0};
	int raw = 0, ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (sg_cli_valsrv_opt(&a, ch, optarg))
			continue;
		if (ch == OPT_RAW) {
			raw = 1;
		} else if (ch == 'h') {
			fputs(USAGE, stdout);
			return 0;
		} else {
			fputs(USAGE, stderr);
			return 2;
		}
	}
	if (optind < argc)
		return sg_cli_fail("valserver token takes no arguments ('%s')", argv[optind]), 2;
	struct sg_valsrv *v = NULL;
	int rc = sg_cli_valsrv_open(g, &a, 0, &v);
	if (rc)
		return rc;
	const char *tok = NULL, *scope = NULL;
	int64_t exp = 0;
	char err[512] = "";
	if (sg_valsrv_token(v, &tok, &exp, &scope, err, sizeof err) != SG_OK) {
		rc = sg_cli_fail("no token: %s", err);
	} else if (raw) {
		printf("%s\n", tok); /* asked for: it is a bearer credential */
	} else {
		/* the payload, for display only: the SEAL servers verify the signature */
		const char *p1 = strchr(tok, '.'), *p2 = p1 ? strchr(p1 + 1, '.') : NULL;
		size_t n = p2 ? (size_t)(p2 - p1 - 1) : 0, len = 0;
		unsigned char *buf = n ? malloc(n) : NULL;
		json_t *claims = NULL;
		if (buf && sg_b64url_decode(p1 + 1, n, buf, n, &len) == SG_OK)
			claims = json_loadb((const char *)buf, len, 0, NULL);
		free(buf);
		char *txt = claims ? json_dumps(claims, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
		if (!txt) {
			rc = sg_cli_fail("the token is not a JWT");
		} else {
			const char *cid = json_string_value(json_object_get(claims, "client_id"));
			printf("access token of VAL server %s from %s\n  scope: %s\n  expires in "
			       "%lld s\nclaims (as issued; the SEAL servers verify them):\n%s\n",
			       cid ? cid : "?", sg_valsrv_token_endpoint(v), scope,
			       (long long)((exp - sg_now_ms()) / 1000), txt);
		}
		free(txt);
		json_decref(claims);
	}
	sg_valsrv_free(v);
	return rc;
}

int sg_cli_valserver(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct sg_cli_sub subs[] = {
	    {"add", cmd_add},     {"list", cmd_list}, {"remove", cmd_remove},
	    {"token", cmd_token}, {NULL, NULL},
	};
	return sg_cli_dispatch(argc, argv, g, "valserver", USAGE, subs);
}
