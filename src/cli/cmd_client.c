/* cli/cmd_client.c: `sealguard client add|list|remove`, the SIM-C clients registered with the
 * SIM-S (I1: the client is registered first, with its client_id and redirect URIs), working on
 * the store of the state dir (a running server picks the change up by the registry
 * generation). The client secret is kept as an HMAC-SHA-256 digest under the server's pepper
 * (DESIGN §5), never in clear. */
#include "cli/cli.h"

#include "auth/keyfile.h"
#include "auth/secret.h"
#include "base/buf.h"
#include "base/clock.h"
#include "conf/conf.h"
#include "idm/logic.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char USAGE[] =
    "usage: sealguard [--state-dir DIR] client COMMAND [OPTIONS]\n"
    "\n"
    "SIM-C clients (UE applications) registered with the identity management server\n"
    "(TS 33.434 Annex A, I1). Changes apply to a running server too, without a restart.\n"
    "\n"
    "commands:\n"
    "  add ID --redirect-uri URI [--redirect-uri URI]... --secret-file F [--scope S]...\n"
    "              register client ID. The client secret is read from F; when F does not\n"
    "              exist, a 256-bit secret is generated and written to F (mode 0600).\n"
    "              Only an HMAC-SHA-256 digest of it is stored.\n"
    "  list        the clients, their scopes and redirect URIs\n"
    "  remove ID   delete the client with its codes and refresh tokens; every grant it\n"
    "              holds is revoked, so resource servers refuse its unexpired access\n"
    "              tokens within resource.revocation_poll_ms\n"
    "\n"
    "Redirect URIs (compared exactly by the server, I2) must be absolute and without a\n"
    "fragment: https://..., http:// only to a loopback IP literal (RFC 8252 §7.3, e.g.\n"
    "http://127.0.0.1/callback, what `sealguard login` uses by default), or a private-use\n"
    "scheme in reverse domain name form (RFC 8252 §7.1, e.g. com.example.app:/cb).\n"
    "\n"
    "Scopes (docs/scopes.md, REQUIREMENTS I8a): a UE client may hold openid seal:gm seal:km\n"
    "sdd; the default is all of them. --scope takes one scope or a space-separated list and\n"
    "may be repeated; openid is always included (every request of a SIM-C carries it, I2).\n"
    "\n"
    "example:\n"
    "  sealguard client add ue-app --redirect-uri http://127.0.0.1/callback \\\n"
    "      --secret-file ue-app.secret\n";

/* I8a: what a UE client may hold, in canonical order. */
static const char *const UE_SCOPES[] = {"openid", "seal:gm", "seal:km", "sdd"};
#define N_UE_SCOPES (sizeof UE_SCOPES / sizeof UE_SCOPES[0])

/* Client ids: 1..128 of letters, digits and "-._~" (RFC 3986 unreserved: safe in URLs, forms
 * and the client_secret_basic header without escaping surprises). */
static int client_id_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128)
		return 0;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-._~", *p))
			return 0;
	return 1;
}

/* RFC 8252 §7.3, §8.3: loopback redirect URIs use an IP literal ("localhost" is NOT
 * RECOMMENDED). host is curl's form ("127.0.0.1", "[::1]"). */
static int loopback_ip(const char *host)
{
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	size_t n = strlen(host);
	if (n > 2 && n < 64 && host[0] == '[' && host[n - 1] == ']') {
		char v6[64];
		struct in6_addr a6;
		memcpy(v6, host + 1, n - 2);
		v6[n - 2] = '\0';
		return inet_pton(AF_INET6, v6, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
	}
	return 0;
}

/* Checks a redirect URI; 0 when acceptable, else prints why and returns 2. */
static int redirect_uri_check(const char *uri)
{
	if (strlen(uri) > 400) /* it travels in the Location of every login */
		return sg_cli_fail("redirect URI '%.60s...' is longer than 400 bytes", uri), 2;
	for (const char *p = uri; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return sg_cli_fail("redirect URI '%s' contains a space or control "
			                   "character",
			                   uri),
			       2;
	/* RFC 6749 §3.1.2: absolute, MUST NOT include a fragment */
	if (strchr(uri, '#'))
		return sg_cli_fail("redirect URI '%s' has a fragment (RFC 6749 §3.1.2)", uri), 2;
	size_t sl =
	    strspn(uri, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
	if (sl == 0 || uri[sl] != ':' || !isalpha((unsigned char)uri[0]))
		return sg_cli_fail("redirect URI '%s' is not absolute (no scheme)", uri), 2;
	if (sl == 5 && strncasecmp(uri, "https", 5) == 0) {
		/* fall through to the URL check below */
	} else if (sl == 4 && strncasecmp(uri, "http", 4) == 0) {
		/* checked below: loopback only */
	} else {
		/* RFC 8252 §7.1: a private-use URI scheme based on a domain name the app
		 * controls, in reverse order, so it contains a period */
		if (!memchr(uri, '.', sl))
			return sg_cli_fail(
			           "redirect URI '%s': scheme '%.*s' is neither https, http "
			           "to loopback, nor a private-use scheme like "
			           "com.example.app:/cb (RFC 8252 §7.1)",
			           uri, (int)sl, uri),
			       2;
		if (uri[sl + 1] != '/' || uri[sl + 2] == '/' || uri[sl + 2] == '\0')
			return sg_cli_fail("redirect URI '%s': a private-use scheme URI has one "
			                   "slash and a path, like com.example.app:/cb (RFC 8252 "
			                   "§7.1)",
			                   uri),
			       2;
		return 0;
	}
	CURLU *u = curl_url();
	char *host = NULL, *user = NULL;
	int rc = 0;
	if (!u)
		return sg_cli_fail("out of memory");
	if (curl_url_set(u, CURLUPART_URL, uri, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
		rc = (sg_cli_fail("redirect URI '%s' is not a valid URL", uri), 2);
	} else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		rc = (sg_cli_fail("redirect URI '%s' carries user information", uri), 2);
	} else if (sl == 4 && !loopback_ip(host)) {
		rc = (sg_cli_fail("redirect URI '%s': http is allowed only to a loopback IP "
		                  "literal (127.0.0.1 or [::1], RFC 8252 §7.3/§8.3); use https",
		                  uri),
		      2);
	}
	curl_free(host);
	curl_free(user);
	curl_url_cleanup(u);
	return rc;
}

/* Adds the space-separated scopes in s to the set `have` (indexes of UE_SCOPES). */
static int scopes_add(const char *s, int have[N_UE_SCOPES])
{
	return sg_cli_scopes_add(s, UE_SCOPES, N_UE_SCOPES, have,
	                         "is not for UE clients: they may hold openid seal:gm seal:km sdd"
	                         " (seal:kp and seal:ipp are VAL-server scopes)");
}

/* Reads the secret from path, or generates one there when the file does not exist.
 * *secret owned by the caller (sg_cli_secret_free). */
static int get_secret(const char *path, char **secret, int *generated)
{
	*generated = 0;
	struct stat sb;
	if (stat(path, &sb) == 0 || strcmp(path, "-") == 0) {
		if (strcmp(path, "-") != 0 && (sb.st_mode & 077))
			fprintf(stderr, "sealguard: warning: %s is readable by group or others\n",
			        path);
		if (sg_cli_read_secret(path, "client secret", secret))
			return 1;
		/* the stored digest is a fast HMAC, so the secret itself must be high-entropy */
		if (strlen(*secret) < 32) {
			sg_cli_secret_free(*secret);
			*secret = NULL;
			return sg_cli_fail("the client secret in %s is shorter than 32 characters; "
			                   "name a file that does not exist to have one generated",
			                   path),
			       2;
		}
		return 0;
	}
	if (errno != ENOENT)
		return sg_cli_fail("secret file %s: %s", path, strerror(errno));
	char buf[SG_SECRET_STR_LEN + 1];
	if (sg_secret_generate(buf, sizeof buf) != SG_OK)
		return sg_cli_fail("could not generate a secret");
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		OPENSSL_cleanse(buf, sizeof buf);
		return sg_cli_fail("cannot create %s: %s", path, strerror(errno));
	}
	size_t n = strlen(buf);
	buf[n] = '\n';
	int ok = write(fd, buf, n + 1) == (ssize_t)(n + 1) && fsync(fd) == 0;
	ok &= close(fd) == 0;
	buf[n] = '\0';
	if (!ok) {
		OPENSSL_cleanse(buf, sizeof buf);
		unlink(path);
		return sg_cli_fail("cannot write %s: %s", path, strerror(errno));
	}
	*secret = strdup(buf);
	OPENSSL_cleanse(buf, sizeof buf);
	if (!*secret)
		return sg_cli_fail("out of memory");
	*generated = 1;
	return 0;
}

enum { OPT_RURI = 1000, OPT_SECRET, OPT_SCOPE };

static int cmd_add(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct option opts[] = {
	    {"redirect-uri", required_argument, NULL, OPT_RURI},
	    {"secret-file", required_argument, NULL, OPT_SECRET},
	    {"scope", required_argument, NULL, OPT_SCOPE},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char **uris = calloc((size_t)argc + 1, sizeof *uris);
	if (!uris)
		return sg_cli_fail("out of memory");
	size_t nuris = 0;
	const char *secret_file = NULL;
	int have[N_UE_SCOPES] = {0}, scope_given = 0, rc = 0, ch;
	optind = 0;
	while (rc == 0 && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_RURI:
			rc = redirect_uri_check(optarg);
			for (size_t i = 0; rc == 0 && i < nuris; i++)
				if (strcmp(uris[i], optarg) == 0)
					rc =
					    (sg_cli_fail("redirect URI %s given twice", optarg), 2);
			uris[nuris++] = optarg;
			break;
		case OPT_SECRET:
			secret_file = optarg;
			break;
		case OPT_SCOPE:
			scope_given = 1;
			rc = scopes_add(optarg, have);
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
	const char *id = optind < argc ? argv[optind] : NULL;
	if (rc == 0 && (!id || optind + 1 != argc || !nuris || !secret_file))
		rc = (sg_cli_fail("usage: sealguard client add ID --redirect-uri URI... "
		                  "--secret-file F [--scope S]..."),
		      2);
	if (rc == 0 && !client_id_ok(id))
		rc = (sg_cli_fail("client id '%s': 1 to 128 letters, digits or -._~", id), 2);
	if (rc) {
		free(uris);
		return rc < 0 ? 0 : rc;
	}
	/* I8a: default every UE scope; openid always (I2) */
	for (size_t i = 0; i < N_UE_SCOPES; i++)
		have[i] = have[i] || !scope_given || i == 0;
	char scopes[64] = "";
	for (size_t i = 0; i < N_UE_SCOPES; i++)
		if (have[i])
			snprintf(scopes + strlen(scopes), sizeof scopes - strlen(scopes), "%s%s",
			         scopes[0] ? " " : "", UE_SCOPES[i]);

	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	char *secret = NULL;
	int generated = 0;
	unsigned char pepper[SG_KEY_LEN];
	char err[512] = "";
	rc = sg_cli_open_store(g, &conf, &st);
	if (rc == 0) {
		/* refuse a taken id before creating a secret file for nothing */
		struct sg_store_client old;
		struct sg_store_valserver vs;
		if (sg_store_client_get(st, id, &old) == SG_OK) {
			sg_store_client_clear(&old);
			rc = sg_cli_fail("client '%s' exists already", id);
		} else if (sg_store_valserver_get(st, id, &vs) == SG_OK) {
			sg_store_valserver_clear(&vs);
			rc = sg_cli_fail(
			    "'%s' is the name of a VAL server (client ids and VAL server "
			    "names share one namespace)",
			    id);
		}
	}
	if (rc == 0 && sg_keyfile_load(conf->state_dir, "pepper", 1, pepper, err, sizeof err))
		rc = sg_cli_fail("pepper: %s", err);
	else if (rc == 0)
		rc = get_secret(secret_file, &secret, &generated);
	if (rc == 0) {
		struct sg_store_client c = {.client_id = (char *)id,
		                            .redirect_uris = uris,
		                            .n_redirect_uris = nuris,
		                            .scopes = scopes,
		                            .secret_digest_len = SG_SECRET_DIGEST};
		struct sg_buf detail = SG_BUF_INIT;
		sg_buf_printf(&detail, "scopes=%s redirect_uris=", scopes);
		for (size_t i = 0; i < nuris; i++)
			sg_buf_printf(&detail, "%s%s", i ? "," : "", uris[i]);
		sg_err e = sg_secret_digest(pepper, sizeof pepper, secret, c.secret_digest);
		if (e == SG_OK)
			e = sg_store_tx_begin(st);
		if (e == SG_OK)
			e = sg_store_client_add(st, &c);
		if (e == SG_ERR_EXISTS) {
			sg_store_tx_rollback(st);
			rc = sg_cli_fail("client id '%s' is taken (by a client or a VAL server)",
			                 id);
		} else if (e != SG_OK) {
			rc = sg_cli_store_fail(st, "client add");
		} else if (sg_cli_audit(st, "client.add", id, detail.data)) {
			sg_store_tx_rollback(st);
			rc = 1;
		} else if (sg_store_tx_commit(st) != SG_OK) {
			rc = sg_cli_store_fail(st, "client add");
		} else {
			printf("added client %s\n  scopes: %s\n", id, scopes);
			for (size_t i = 0; i < nuris; i++)
				printf("  redirect URI: %s\n", uris[i]);
			if (generated)
				printf("  generated a client secret in %s (mode 0600); give it to "
				       "the client and keep it secret\n",
				       secret_file);
		}
		OPENSSL_cleanse(c.secret_digest, sizeof c.secret_digest);
		sg_buf_free(&detail);
		if (rc && generated) /* the registration failed: no orphan secret file */
			unlink(secret_file);
	}
	OPENSSL_cleanse(pepper, sizeof pepper);
	sg_cli_secret_free(secret);
	sg_store_close(st);
	sg_conf_free(conf);
	free(uris);
	return rc;
}

static int cmd_list(int argc, char **argv, const struct sg_cli_global *g)
{
	(void)argv;
	if (argc > 1)
		return sg_cli_fail("client list takes no arguments"), 2;
	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	if (sg_cli_open_store(g, &conf, &st))
		return 1;
	struct sg_store_client *v = NULL;
	size_t n = 0;
	int rc = 0;
	if (sg_store_client_list(st, &v, &n) != SG_OK) {
		rc = sg_cli_fail("client list: %s", sg_store_last_error());
	} else {
		printf("%-24s  %-28s  %s\n", "CLIENT_ID", "SCOPES", "REDIRECT_URIS");
		for (size_t i = 0; i < n; i++) {
			printf("%-24s  %-28s  ", v[i].client_id, v[i].scopes ? v[i].scopes : "");
			for (size_t j = 0; j < v[i].n_redirect_uris; j++)
				printf("%s%s", j ? " " : "", v[i].redirect_uris[j]);
			printf("\n");
		}
		sg_store_client_list_free(v, n);
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
		return sg_cli_fail("usage: sealguard client remove ID"), 2;
	}
	const char *id = argv[1];
	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	if (sg_cli_open_store(g, &conf, &st))
		return 1;
	size_t ngrants = 0;
	int64_t now = sg_now_ms();
	/* one transaction: its grants are on the revocation list before it is gone */
	sg_err e = sg_store_tx_begin(st);
	if (e == SG_OK)
		e = sg_store_grants_revoke_of(
		    st, id, NULL, now,
		    sg_idm_grant_revoke_until(conf->idm.access_ttl_s, conf->idm.id_ttl_s, now),
		    &ngrants);
	if (e == SG_OK)
		e = sg_store_client_delete(st, id);
	int rc = sg_cli_tx_finish(st, e, "client", "client remove", "client.remove", id,
	                          ngrants ? "grants revoked" : NULL);
	if (rc == 0) {
		printf(
		    "removed client %s (with its codes and refresh tokens; %zu grant%s revoked)\n",
		    id, ngrants, ngrants == 1 ? "" : "s");
	}
	sg_store_close(st);
	sg_conf_free(conf);
	return rc;
}

int sg_cli_client(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct sg_cli_sub subs[] = {
	    {"add", cmd_add},
	    {"list", cmd_list},
	    {"remove", cmd_remove},
	    {NULL, NULL},
	};
	return sg_cli_dispatch(argc, argv, g, "client", USAGE, subs);
}
