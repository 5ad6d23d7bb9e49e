/* cli/cmd_call.c: `sealguard call METHOD URL`: one SEAL API request as a VAL server would send
 * it over SEAL-S (TS 33.434 §5.1.1 R3): mutual TLS with the VAL server's certificate and an
 * access token from client credentials (RFC 8705 tls_client_auth), through the VAL-server SDK
 * (client/valsrv.h). Also the options shared with `sealguard valserver token`. */
#include "cli/cli.h"

#include "base/file.h"
#include "client/valsrv.h"
#include "conf/conf.h"

#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char USAGE[] =
    "usage: sealguard call METHOD URL [--body FILE] [--content-type TYPE] [--name NAME]\n"
    "                     [--scope S] [--resource AUD] [--cert F --key F] [--cacert F]\n"
    "                     [--token-url URL | --issuer URL] [--http2]\n"
    "\n"
    "Sends one request to a SEAL API as VAL server NAME does on SEAL-S: mutual TLS with its\n"
    "certificate, and an access token it gets first with client credentials (client_id =\n"
    "NAME, bound to the certificate, RFC 8705). Prints the status line, Location and\n"
    "Content-Type when present, an empty line and the response body; exits 0 for a status\n"
    "below 400, 1 otherwise. The token itself is never printed.\n"
    "\n" SG_CLI_VALSRV_OPTIONS "request options:\n"
    "  --body FILE          request body (\"-\" = stdin)\n"
    "  --content-type TYPE  of the body (default application/json; application/merge-\n"
    "                       patch+json for PATCH)\n"
    "  --http2              offer HTTP/2 (ALPN)\n"
    "\n"
    "example:\n"
    "  sealguard call POST https://localhost:9444/ss-gm/v1/group-documents \\\n"
    "      --name v2x-app --body group.json\n";

/* The issuer the configuration's identity management has (as idm/ derives it). */
static int conf_issuer(const struct sg_conf *c, char *out, size_t len)
{
	if (c->idm.issuer) {
		snprintf(out, len, "%s", c->idm.issuer);
		return 0;
	}
	for (unsigned i = 0; i < c->n_refpoints; i++) {
		const struct sg_conf_refpoint *r = &c->refpoints[i];
		int serves = 0;
		for (unsigned k = 0; k < r->n_services; k++)
			serves |= !strcmp(r->services[k], "idm");
		const char *port = strrchr(r->bind, ':');
		if (serves && r->tls.mode != SG_TLS_MUTUAL && port) {
			snprintf(out, len, "https://localhost:%s", port + 1);
			return 0;
		}
	}
	return -1;
}

/* The only VAL server with credentials in PKI/val-servers, or NULL. */
static char *only_val_server(const char *pki)
{
	char dir[4096];
	if (sg_path_join(dir, sizeof dir, pki, "val-servers") != SG_OK)
		return NULL;
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	char *name = NULL;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l > 4 && !strcmp(e->d_name + l - 4, ".crt") && n++ == 0)
			name = strndup(e->d_name, l - 4);
	}
	closedir(d);
	if (n != 1) {
		free(name);
		return NULL;
	}
	return name;
}

int sg_cli_valsrv_opt(struct sg_cli_valsrv_args *a, int opt, const char *arg)
{
	switch (opt) {
	case SG_CLI_OPT_NAME:
		a->name = arg;
		return 1;
	case SG_CLI_OPT_SCOPE:
		a->scope = arg;
		return 1;
	case SG_CLI_OPT_RESOURCE:
		a->resource = arg;
		return 1;
	case SG_CLI_OPT_CERT:
		a->cert = arg;
		return 1;
	case SG_CLI_OPT_KEY:
		a->key = arg;
		return 1;
	case SG_CLI_OPT_CACERT:
		a->cacert = arg;
		return 1;
	case SG_CLI_OPT_CRL:
		a->crl = arg;
		return 1;
	case SG_CLI_OPT_TOKEN_URL:
		a->token_url = arg;
		return 1;
	case SG_CLI_OPT_ISSUER:
		a->issuer = arg;
		return 1;
	default:
		return 0;
	}
}

int sg_cli_valsrv_open(const struct sg_cli_global *g, const struct sg_cli_valsrv_args *a, int http2,
                       struct sg_valsrv **out)
{
	*out = NULL;
	if ((a->cert != NULL) != (a->key != NULL))
		return sg_cli_fail("--cert and --key go together"), 2;
	struct sg_conf *c = NULL;
	if (sg_cli_load_conf(g, NULL, &c))
		return 1;
	char cert[4096], key[4096], ca[4096], issuer[512] = "", rel[600];
	char *guess = a->name ? NULL : only_val_server(c->pki_dir);
	const char *name = a->name ? a->name : guess;
	int rc = 0;
	if (!name) {
		rc = (sg_cli_fail("--name NAME: which VAL server (its certificate is "
		                  "%s/val-servers/NAME.crt)",
		                  c->pki_dir),
		      2);
		goto out;
	}
	snprintf(rel, sizeof rel, "val-servers/%s.crt", name);
	if (!a->cert && sg_path_join(cert, sizeof cert, c->pki_dir, rel) != SG_OK)
		rc = sg_cli_fail("path too long");
	snprintf(rel, sizeof rel, "val-servers/%s.key", name);
	if (!rc && !a->key && sg_path_join(key, sizeof key, c->pki_dir, rel) != SG_OK)
		rc = sg_cli_fail("path too long");
	if (!rc && !a->cacert && sg_path_join(ca, sizeof ca, c->pki_dir, "ca.crt") != SG_OK)
		rc = sg_cli_fail("path too long");
	if (rc)
		goto out;
	const char *cp = a->cert ? a->cert : cert, *kp = a->key ? a->key : key,
	           *ap = a->cacert ? a->cacert : ca;
	const char *files[] = {cp, kp, ap};
	for (int i = 0; i < 3; i++)
		if (!sg_file_exists(files[i])) {
			rc = sg_cli_fail(
			    "%s does not exist%s", files[i],
			    i < 2 && !a->cert
			        ? " (create it with `sealguard pki init --val-server NAME`)"
			        : "");
			goto out;
		}
	if (!a->token_url && !a->issuer && conf_issuer(c, issuer, sizeof issuer)) {
		rc = sg_cli_fail("no token endpoint: give --token-url or --issuer");
		goto out;
	}
	char crl[4096]; /* T5: as the SEAL servers check the VAL server's chain */
	sg_cli_crl(c, a->crl, a->cacert, crl, sizeof crl);
	struct sg_valsrv_conf vc = {
	    .name = name,
	    .cert = cp,
	    .key = kp,
	    .ca = ap,
	    .crl = crl[0] ? crl : NULL,
	    .token_url = a->token_url,
	    .issuer = a->token_url ? NULL : (a->issuer ? a->issuer : issuer),
	    .scope = a->scope,
	    .resource = a->resource,
	    .http2 = http2,
	};
	char err[512] = "";
	if (sg_valsrv_new(&vc, out, err, sizeof err) != SG_OK)
		rc = sg_cli_fail("%s", err);
out:
	free(guess);
	sg_conf_free(c);
	return rc;
}

int sg_cli_call(int argc, char **argv, const struct sg_cli_global *g)
{
	enum { OPT_BODY = 2000, OPT_CTYPE, OPT_H2 };
	static const struct option opts[] = {
	    SG_CLI_VALSRV_LONGOPTS,
	    {"body", required_argument, NULL, OPT_BODY},
	    {"content-type", required_argument, NULL, OPT_CTYPE},
	    {"http2", no_argument, NULL, OPT_H2},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct sg_cli_valsrv_args a = {0};
	const char *body_file = NULL, *ctype = NULL;
	int http2 = 0, ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (sg_cli_valsrv_opt(&a, ch, optarg))
			continue;
		switch (ch) {
		case OPT_BODY:
			body_file = optarg;
			break;
		case OPT_CTYPE:
			ctype = optarg;
			break;
		case OPT_H2:
			http2 = 1;
			break;
		case 'h':
			fputs(USAGE, stdout);
			return 0;
		default:
			fputs(USAGE, stderr);
			return 2;
		}
	}
	if (argc - optind != 2)
		return sg_cli_fail("usage: sealguard call METHOD URL [options] (see --help)"), 2;
	const char *method = argv[optind], *url = argv[optind + 1];
	if (!*method || strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(method))
		return sg_cli_fail("METHOD '%s': an HTTP method in capitals (GET, POST...)",
		                   method),
		       2;
	if (strncmp(url, "https://", 8) != 0)
		return sg_cli_fail("URL '%s': an https URL (SEAL-S is TLS only)", url), 2;
	char *body = NULL;
	size_t blen = 0;
	if (body_file) {
		sg_err e;
		if (!strcmp(body_file, "-")) {
			e = sg_file_read("/dev/stdin", 16u << 20, &body, &blen);
		} else {
			e = sg_file_read(body_file, 16u << 20, &body, &blen);
		}
		if (e != SG_OK)
			return sg_cli_fail("cannot read the body from %s: %s", body_file,
			                   sg_err_str(e));
		if (!ctype)
			ctype = !strcmp(method, "PATCH") ? "application/merge-patch+json"
			                                 : "application/json";
	}
	if (!a.resource)
		a.resource = sg_valsrv_audience_of_url(url); /* I10: a token for that service */
	struct sg_valsrv *v = NULL;
	int rc = sg_cli_valsrv_open(g, &a, http2, &v);
	if (rc) {
		free(body);
		return rc;
	}
	struct sg_http_response resp;
	char err[512] = "";
	if (sg_valsrv_request(v, method, url, body ? ctype : NULL, body, blen, &resp, err,
	                      sizeof err) != SG_OK) {
		rc = sg_cli_fail("%s %s: %s", method, url, err);
	} else {
		printf("HTTP/%s %ld\n", resp.http_version[0] ? resp.http_version : "1.1",
		       resp.status);
		if (resp.location[0])
			printf("Location: %s\n", resp.location);
		if (resp.content_type[0])
			printf("Content-Type: %s\n", resp.content_type);
		putchar('\n');
		if (resp.body.len) {
			fwrite(resp.body.data, 1, resp.body.len, stdout);
			if (resp.body.data[resp.body.len - 1] != '\n')
				putchar('\n');
		}
		rc = resp.status < 400 ? 0 : 1;
		sg_http_response_free(&resp);
	}
	sg_valsrv_free(v);
	free(body);
	return rc;
}
