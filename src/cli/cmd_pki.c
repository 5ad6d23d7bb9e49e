/* cli/cmd_pki.c: `sealguard pki init|revoke|list`, the development PKI of tls/pki.c. */
#include "cli/cli.h"

#include "base/file.h"
#include "conf/conf.h"
#include "tls/pki.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: sealguard pki COMMAND [OPTIONS]\n"
    "\n"
    "A development PKI for sealguard: a P-256 CA, certificates with the TS 33.310 profile\n"
    "(identity in subjectAltName, keyUsage, extendedKeyUsage, CRL distribution point) and a\n"
    "CRL. For development and tests only; production deployments use their operator's PKI.\n"
    "\n"
    "commands:\n"
    "  init     create the CA, CRL and this host's server certificate, and the named VAL\n"
    "           server / SEAL server certificates (existing files are kept)\n"
    "  revoke   put a certificate on the CRL\n"
    "  list     show the certificates issued, with their serial and revocation state\n"
    "  issue    one certificate with explicit fields (expired, other EKU...), for testing\n"
    "\n"
    "DIR (--dir) defaults to STATE/pki, STATE being --state-dir (default ./var); `sealguard\n"
    "serve` uses the same directory. `sealguard pki COMMAND --help` explains a command.\n"
    "\n"
    "example:\n"
    "  sealguard pki init --val-server v2x-app     # ./var/pki/val-servers/v2x-app.crt|.key\n"
    "  curl --cacert var/pki/ca.crt --cert var/pki/val-servers/v2x-app.crt \\\n"
    "       --key var/pki/val-servers/v2x-app.key https://localhost:9444/healthz\n";

static const char USAGE_INIT[] =
    "usage: sealguard pki init [--dir DIR] [--val-server NAME]... [--seal-server NAME]...\n"
    "                          [--crl-uri URI] [--days N]\n"
    "\n"
    "Creates, when absent, in DIR (default STATE/pki):\n"
    "  ca.crt, ca.key           the CA (P-256, 10 years); ca.key is mode 0600\n"
    "  crl.pem                  the CRL, signed by the CA (served at the admin listener)\n"
    "  server.crt, server.key   this host's certificate: SAN DNS:localhost, IP:127.0.0.1,\n"
    "                           extendedKeyUsage serverAuth + clientAuth\n"
    "  val-servers/NAME.crt|.key   a VAL server's client certificate (SEAL-S): SAN DNS:NAME,\n"
    "                              extendedKeyUsage clientAuth\n"
    "  seal-servers/NAME.crt|.key  a SEAL server's certificate (SEAL-E, SEAL-X1/X2): SAN\n"
    "                              DNS:NAME, extendedKeyUsage serverAuth + clientAuth\n"
    "  index.json               every certificate issued (see `sealguard pki list`)\n"
    "\n"
    "The identity of a certificate is its subjectAltName, not its subject CN: a VAL server\n"
    "created with --val-server v2x-app is authenticated as \"DNS:v2x-app\", the identity to\n"
    "register and to name in policies. Run init again on the same DIR to add certificates:\n"
    "the CA and every existing key are kept, never overwritten.\n"
    "\n"
    "options:\n"
    "  --dir DIR            the PKI directory (created with mode 0700)\n"
    "  --val-server NAME    issue val-servers/NAME.crt (repeatable)\n"
    "  --seal-server NAME   issue seal-servers/NAME.crt (repeatable)\n"
    "                       NAME: letters, digits, '-' and '.', like a DNS name\n"
    "  --crl-uri URI        the cRLDistributionPoints URI put in new certificates\n"
    "                       (default http://127.0.0.1:9090/pki/ca.crl, the admin listener)\n"
    "  --days N             validity of new certificates in days (default 365)\n"
    "  -h, --help           this text\n";

static const char USAGE_REVOKE[] =
    "usage: sealguard pki revoke CERT [--dir DIR]\n"
    "\n"
    "Adds the certificate in the PEM file CERT, which DIR's CA must have issued, to DIR/crl.pem\n"
    "and re-signs the CRL (crlNumber + 1, next update in 30 days). Revoking a certificate twice\n"
    "is harmless. Running servers refuse the certificate once they have reloaded the CRL.\n"
    "\n"
    "example: sealguard pki revoke var/pki/val-servers/v2x-app.crt\n"
    "\n"
    "options:\n"
    "  --dir DIR    the PKI directory (default STATE/pki)\n"
    "  -h, --help   this text\n";

static const char USAGE_LIST[] = "usage: sealguard pki list [--dir DIR]\n"
                                 "\n"
                                 "Lists the certificates issued by DIR's CA, from DIR/index.json:\n"
                                 "serial, kind, name, expiry and revocation time.\n"
                                 "\n"
                                 "options:\n"
                                 "  --dir DIR    the PKI directory (default STATE/pki)\n"
                                 "  -h, --help   this text\n";

static const char USAGE_ISSUE[] =
    "usage: sealguard pki issue --san SAN[,SAN...] --out PREFIX [--server-auth] [--client-auth]\n"
    "                           [--not-before-offset S] [--not-after-offset S] [--dir DIR]\n"
    "\n"
    "Issues one certificate with explicit fields under DIR's CA, written to PREFIX.crt and\n"
    "PREFIX.key: for testing how peers handle unusual certificates (expired, not yet valid,\n"
    "without clientAuth or serverAuth). Everyday certificates come from `pki init`.\n"
    "\n"
    "options:\n"
    "  --san SAN             subjectAltName entries, e.g. DNS:app1 or DNS:localhost,IP:127.0.0.1\n"
    "  --server-auth         extendedKeyUsage serverAuth\n"
    "  --client-auth         extendedKeyUsage clientAuth (neither: no extendedKeyUsage at all)\n"
    "  --not-before-offset S seconds from now (negative: in the past; default -60)\n"
    "  --not-after-offset S  seconds from now (default 365 days)\n"
    "  --out PREFIX          where to write PREFIX.crt and PREFIX.key (0600)\n"
    "  --dir DIR             the PKI directory (default STATE/pki)\n";

enum {
	OPT_DIR = 1000,
	OPT_VAL,
	OPT_SEAL,
	OPT_CRL,
	OPT_DAYS,
	OPT_SAN,
	OPT_SRV,
	OPT_CLI,
	OPT_NB,
	OPT_NA,
	OPT_OUT
};

/* DIR: --dir, else STATE/pki. */
static int pki_dir(const char *opt_dir, const struct sg_cli_global *g, char *out, size_t outlen)
{
	if (opt_dir) {
		if ((size_t)snprintf(out, outlen, "%s", opt_dir) >= outlen)
			return sg_cli_fail("--dir is too long");
		return 0;
	}
	/* The same directory `serve` uses: the configuration's pki_dir (STATE/pki by default). */
	struct sg_conf *c = NULL;
	if (sg_cli_load_conf(g, NULL, &c) != 0)
		return 1;
	int n = snprintf(out, outlen, "%s", c->pki_dir);
	sg_conf_free(c);
	if (n < 0 || (size_t)n >= outlen)
		return sg_cli_fail("PKI directory path is too long");
	return 0;
}

/* One file init may create, and whether it was there before. */
struct pki_file {
	char rel[300];
	int existed;
};

static int add_file(struct pki_file *files, size_t *n, const char *dir, const char *rel)
{
	char full[4096];
	snprintf(files[*n].rel, sizeof files[*n].rel, "%s", rel);
	if (sg_path_join(full, sizeof full, dir, rel) != SG_OK)
		return sg_cli_fail("path too long: %s/%s", dir, rel);
	files[*n].existed = sg_file_exists(full);
	(*n)++;
	return 0;
}

static int cmd_init(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct option opts[] = {
	    {"dir", required_argument, NULL, OPT_DIR},
	    {"val-server", required_argument, NULL, OPT_VAL},
	    {"seal-server", required_argument, NULL, OPT_SEAL},
	    {"crl-uri", required_argument, NULL, OPT_CRL},
	    {"days", required_argument, NULL, OPT_DAYS},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char **vals = calloc((size_t)argc + 1, sizeof *vals);
	const char **seals = calloc((size_t)argc + 1, sizeof *seals);
	struct pki_file *files = calloc(5 + 2 * (size_t)argc, sizeof *files);
	if (!vals || !seals || !files) {
		free(vals);
		free(seals);
		free(files);
		return sg_cli_fail("out of memory");
	}
	struct sg_pki_opts o = {.val_servers = vals, .seal_servers = seals};
	const char *dir_opt = NULL;
	int rc = 0, ch;
	optind = 0;
	while (rc == 0 && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_DIR:
			dir_opt = optarg;
			break;
		case OPT_VAL:
			vals[o.n_val_servers++] = optarg;
			break;
		case OPT_SEAL:
			seals[o.n_seal_servers++] = optarg;
			break;
		case OPT_CRL:
			if (strncmp(optarg, "http://", 7) != 0 &&
			    strncmp(optarg, "https://", 8) != 0)
				rc = (sg_cli_fail("--crl-uri must be an http:// or https:// URI"),
				      2);
			o.crl_uri = optarg;
			break;
		case OPT_DAYS: {
			char *end;
			long d = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end || d < 1 || d > 36500)
				rc = (sg_cli_fail("--days takes a number of days from 1 to 36500"),
				      2);
			o.days = (int)d;
			break;
		}
		case 'h':
			fputs(USAGE_INIT, stdout);
			rc = -1;
			break;
		default:
			fputs(USAGE_INIT, stderr);
			rc = 2;
		}
	}
	if (rc == 0 && optind < argc)
		rc = (sg_cli_fail(
		          "pki init takes no arguments ('%s'); see `sealguard pki init --help`",
		          argv[optind]),
		      2);
	char dir[4096];
	if (rc == 0)
		rc = pki_dir(dir_opt, g, dir, sizeof dir);
	size_t nf = 0;
	if (rc == 0) {
		o.dir = dir;
		static const char *fixed[] = {"ca.crt", "ca.key", "crl.pem", "server.crt",
		                              "server.key"};
		for (size_t i = 0; rc == 0 && i < sizeof fixed / sizeof fixed[0]; i++)
			rc = add_file(files, &nf, dir, fixed[i]);
		for (int role = 0; role < 2 && rc == 0; role++) {
			size_t n = role ? o.n_seal_servers : o.n_val_servers;
			for (size_t i = 0; rc == 0 && i < n; i++) {
				const char *name = role ? seals[i] : vals[i];
				char rel[300];
				/* names are checked by sg_pki_init; only build the paths here */
				snprintf(rel, sizeof rel, "%s/%.250s.crt",
				         role ? "seal-servers" : "val-servers", name);
				rc = add_file(files, &nf, dir, rel);
			}
		}
	}
	if (rc == 0) {
		char err[1024] = "";
		if (sg_pki_init(&o, err, sizeof err) != SG_OK) {
			rc = sg_cli_fail("pki init in %s: %s", dir, err);
		} else {
			for (size_t i = 0; i < nf; i++) {
				int dup = 0;
				for (size_t j = 0; j < i; j++)
					dup |= strcmp(files[i].rel, files[j].rel) == 0;
				if (dup)
					continue;
				printf("%-8s %s/%s\n", files[i].existed ? "kept" : "created", dir,
				       files[i].rel);
				/* each .crt of a leaf comes with its .key */
				size_t l = strlen(files[i].rel);
				if (i >= 5 && l > 4)
					printf("%-8s %s/%.*s.key\n",
					       files[i].existed ? "kept" : "created", dir,
					       (int)(l - 4), files[i].rel);
			}
			printf("updated  %s/index.json\n", dir);
			for (size_t i = 0; i < o.n_val_servers; i++)
				printf("VAL server %s: identity DNS:%s (client certificate "
				       "%s/val-servers/%s.crt)\n",
				       vals[i], vals[i], dir, vals[i]);
			for (size_t i = 0; i < o.n_seal_servers; i++)
				printf("SEAL server %s: identity DNS:%s\n", seals[i], seals[i]);
		}
	}
	free(vals);
	free(seals);
	free(files);
	return rc < 0 ? 0 : rc;
}

/* Parses the options of revoke and list: only --dir and --help. Returns -1 to go on. */
static int dir_only_opts(int argc, char **argv, const char *usage, const char **dir_opt)
{
	static const struct option opts[] = {
	    {"dir", required_argument, NULL, OPT_DIR},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_DIR:
			*dir_opt = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	return -1;
}

static int cmd_revoke(int argc, char **argv, const struct sg_cli_global *g)
{
	const char *dir_opt = NULL;
	int rc = dir_only_opts(argc, argv, USAGE_REVOKE, &dir_opt);
	if (rc >= 0)
		return rc;
	if (argc - optind != 1) {
		sg_cli_fail("pki revoke takes one certificate file");
		fputs(USAGE_REVOKE, stderr);
		return 2;
	}
	const char *cert = argv[optind];
	char dir[4096], err[1024] = "";
	if (pki_dir(dir_opt, g, dir, sizeof dir))
		return 1;
	if (sg_pki_revoke(dir, cert, err, sizeof err) != SG_OK)
		return sg_cli_fail("pki revoke: %s", err);
	printf("%s\n", err);
	printf("CRL: %s/crl.pem\n", dir);
	return 0;
}

static int parse_offset(const char *s, long *out)
{
	char *end;
	*out = strtol(s, &end, 10);
	return *s && !*end ? 0 : -1;
}

static int cmd_issue(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct option opts[] = {
	    {"dir", required_argument, NULL, OPT_DIR},
	    {"san", required_argument, NULL, OPT_SAN},
	    {"server-auth", no_argument, NULL, OPT_SRV},
	    {"client-auth", no_argument, NULL, OPT_CLI},
	    {"not-before-offset", required_argument, NULL, OPT_NB},
	    {"not-after-offset", required_argument, NULL, OPT_NA},
	    {"out", required_argument, NULL, OPT_OUT},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir_opt = NULL, *out = NULL;
	struct sg_pki_issue req = {.not_before_offset_s = -60, .not_after_offset_s = 365L * 86400};
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_DIR:
			dir_opt = optarg;
			break;
		case OPT_SAN:
			req.san = optarg;
			break;
		case OPT_SRV:
			req.server_auth = 1;
			break;
		case OPT_CLI:
			req.client_auth = 1;
			break;
		case OPT_NB:
		case OPT_NA:
			if (parse_offset(optarg, ch == OPT_NB ? &req.not_before_offset_s
			                                      : &req.not_after_offset_s))
				return sg_cli_fail("%s takes a number of seconds",
				                   ch == OPT_NB ? "--not-before-offset"
				                                : "--not-after-offset"),
				       2;
			break;
		case OPT_OUT:
			out = optarg;
			break;
		case 'h':
			fputs(USAGE_ISSUE, stdout);
			return 0;
		default:
			fputs(USAGE_ISSUE, stderr);
			return 2;
		}
	}
	if (!req.san || !out || optind != argc) {
		sg_cli_fail("pki issue needs --san and --out, and takes no other arguments");
		fputs(USAGE_ISSUE, stderr);
		return 2;
	}
	char dir[4096], crt[4096], key[4096], err[1024] = "";
	if (pki_dir(dir_opt, g, dir, sizeof dir))
		return 1;
	if ((size_t)snprintf(crt, sizeof crt, "%s.crt", out) >= sizeof crt ||
	    (size_t)snprintf(key, sizeof key, "%s.key", out) >= sizeof key)
		return sg_cli_fail("--out is too long");
	req.ca_dir = dir;
	req.out_crt = crt;
	req.out_key = key;
	if (sg_pki_issue(&req, err, sizeof err) != SG_OK)
		return sg_cli_fail("pki issue: %s", err);
	printf("issued %s (%s) and %s\n", crt, req.san, key);
	return 0;
}

static int cmd_list(int argc, char **argv, const struct sg_cli_global *g)
{
	const char *dir_opt = NULL;
	int rc = dir_only_opts(argc, argv, USAGE_LIST, &dir_opt);
	if (rc >= 0)
		return rc;
	if (optind < argc) {
		sg_cli_fail("pki list takes no arguments ('%s')", argv[optind]);
		return 2;
	}
	char dir[4096], path[4096];
	if (pki_dir(dir_opt, g, dir, sizeof dir))
		return 1;
	if (sg_path_join(path, sizeof path, dir, "index.json") != SG_OK)
		return sg_cli_fail("path too long: %s", dir);
	if (!sg_file_exists(path))
		return sg_cli_fail("no PKI in %s (create one with `sealguard pki init --dir %s`)",
		                   dir, dir);
	json_error_t je;
	json_t *idx = json_load_file(path, 0, &je);
	if (!idx || !json_is_array(idx)) {
		json_decref(idx);
		return sg_cli_fail("%s: not a JSON array (%s)", path, je.text);
	}
	printf("%-32s  %-11s  %-24s  %-20s  %s\n", "SERIAL", "KIND", "NAME", "NOT_AFTER",
	       "REVOKED");
	size_t i;
	json_t *v;
	json_array_foreach(idx, i, v)
	{
		const char *revoked = json_string_value(json_object_get(v, "revoked_at"));
		const char *serial = json_string_value(json_object_get(v, "serial"));
		const char *kind = json_string_value(json_object_get(v, "kind"));
		const char *name = json_string_value(json_object_get(v, "name"));
		const char *na = json_string_value(json_object_get(v, "not_after"));
		printf("%-32s  %-11s  %-24s  %-20s  %s\n", serial ? serial : "?", kind ? kind : "?",
		       name ? name : "?", na ? na : "?", revoked ? revoked : "no");
	}
	json_decref(idx);
	return 0;
}

int sg_cli_pki(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct sg_cli_sub subs[] = {
	    {"init", cmd_init},   {"revoke", cmd_revoke}, {"list", cmd_list},
	    {"issue", cmd_issue}, {NULL, NULL},
	};
	return sg_cli_dispatch(argc, argv, g, "pki", USAGE, subs);
}
