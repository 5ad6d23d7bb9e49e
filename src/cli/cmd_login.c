/* cli/cmd_login.c: `sealguard login` and `sealguard token show|refresh`: the SIM-C of
 * client/simc.c on the command line (TS 33.434 Annex A): a UE-side login to the SIM-S with the
 * authorization code flow + PKCE, the validated tokens kept in a 0600 cache file. */
#include "cli/cli.h"

#include "base/b64.h"
#include "base/clock.h"
#include "base/file.h"
#include "client/simc.h"
#include "conf/conf.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_REDIRECT_URI "http://127.0.0.1/callback"

static const char USAGE_LOGIN[] =
    "usage: sealguard login --client-id ID --client-secret-file F --username U\n"
    "                       [--issuer URL] [--password-file F] [--scope S] [--cacert FILE]\n"
    "                       [--crl FILE] [--redirect-uri URI] [--token-cache FILE]\n"
    "\n"
    "Logs a VAL user in to the identity management server (SIM-S) as a SIM-C would\n"
    "(TS 33.434 Annex A): discovery, authorization request with PKCE S256, state, nonce and\n"
    "acr_values 3gpp:acr:password; the user name and password POSTed to the login page; the\n"
    "redirect's state checked (a mismatched one is dropped, I4); the code exchanged with\n"
    "client_secret_basic; the ID token validated (OIDC Core §3.1.3.7: ES256 signature with a\n"
    "key of the provider's JWKS, iss, aud, exp, iat, nonce). The tokens go to a cache file\n"
    "(mode 0600) for `sealguard token show|refresh`; they are never printed here.\n"
    "\n"
    "options:\n"
    "  --issuer URL             the SIM-S issuer (default: idm.issuer of the configuration)\n"
    "  --client-id ID           the registered SIM-C client\n"
    "  --client-secret-file F   its secret (from `sealguard client add`); \"-\" = stdin\n"
    "  --username U             the VAL user\n"
    "  --password-file F        the password (one trailing newline removed; \"-\" = stdin);\n"
    "                           without it the password is asked for on the terminal\n"
    "  --scope S                scopes to ask for (default: openid seal:gm seal:km sdd);\n"
    "                           openid is always added\n"
    "  --cacert FILE            trust anchors for the SIM-S certificate (default:\n"
    "                           STATE/pki/ca.crt when it exists)\n"
    "  --crl FILE               CRLs checked for its chain (default: STATE/pki/crl.pem when\n"
    "                           it exists and --cacert is not given; \"\" checks none).\n"
    "                           The cache keeps both for `token refresh` and `key`.\n"
    "  --redirect-uri URI       a redirect URI registered for the client (default\n"
    "                           " DEFAULT_REDIRECT_URI "). The SIM-C reads the code from the\n"
    "                           redirect itself: nothing needs to listen there.\n"
    "  --token-cache FILE       default $XDG_STATE_HOME/sealguard/tokens.json, or\n"
    "                           ~/.local/state/sealguard/tokens.json\n";

static const char USAGE_TOKEN[] =
    "usage: sealguard token show [--raw] [--token-cache FILE]\n"
    "       sealguard token refresh [--scope S] [--client-secret-file F] [--cacert FILE]\n"
    "                               [--crl FILE] [--token-cache FILE]\n"
    "\n"
    "show      prints the claims of the cached ID token and access token and their expiry;\n"
    "          --raw also prints the tokens themselves (they are bearer credentials:\n"
    "          anybody who sees them can use them until they expire)\n"
    "refresh   trades the cached refresh token for new tokens (grant_type=refresh_token,\n"
    "          I9); the SIM-S rotates the refresh token and the new one replaces the old.\n"
    "          --scope may narrow the scope, never widen it. The client secret is read from\n"
    "          the file given at login unless --client-secret-file says otherwise, and\n"
    "          the SIM-S is checked with login's trust anchors and CRL unless --cacert or\n"
    "          --crl (\"\" checks none) say otherwise.\n";

enum {
	OPT_ISSUER = 1000,
	OPT_CID,
	OPT_CSF,
	OPT_USER,
	OPT_PWF,
	OPT_SCOPE,
	OPT_CA,
	OPT_CRL,
	OPT_RURI,
	OPT_CACHE,
	OPT_RAW
};

/* ---- token cache ------------------------------------------------------------------------ */

static int cache_path(const char *opt, char *out, size_t outlen)
{
	if (opt)
		return (size_t)snprintf(out, outlen, "%s", opt) < outlen
		           ? 0
		           : sg_cli_fail("--token-cache is too long");
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;
	if (xdg && xdg[0] == '/')
		n = snprintf(out, outlen, "%s/sealguard/tokens.json", xdg);
	else if (home && *home)
		n = snprintf(out, outlen, "%s/.local/state/sealguard/tokens.json", home);
	else
		return sg_cli_fail(
		    "neither XDG_STATE_HOME nor HOME is set: give --token-cache FILE");
	return n > 0 && (size_t)n < outlen ? 0 : sg_cli_fail("token cache path is too long");
}

/* Writes the cache atomically with mode 0600 (its directory 0700 when created). */
static int cache_write(const char *path, json_t *cache)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (sg_mkdirs(dir, 0700) != SG_OK)
			return sg_cli_fail("cannot create %s: %s", dir, strerror(errno));
	}
	char *text = json_dumps(cache, JSON_INDENT(2));
	if (!text)
		return sg_cli_fail("out of memory");
	size_t len = strlen(text);
	sg_err e = sg_file_write_atomic(path, text, len, 0600);
	OPENSSL_cleanse(text, len);
	free(text);
	if (e != SG_OK)
		return sg_cli_fail("cannot write the token cache %s: %s", path, strerror(errno));
	return 0;
}

static int cache_read(const char *path, json_t **out)
{
	*out = NULL;
	struct stat sb;
	if (stat(path, &sb) != 0)
		return sg_cli_fail("no token cache %s (run `sealguard login` first)", path);
	if (sb.st_mode & 077)
		fprintf(stderr, "sealguard: warning: %s is readable by group or others\n", path);
	char *text = NULL;
	size_t len = 0;
	if (sg_file_read(path, 1 << 20, &text, &len) != SG_OK)
		return sg_cli_fail("cannot read %s: %s", path, strerror(errno));
	json_error_t je;
	*out = json_loadb(text, len, 0, &je);
	OPENSSL_cleanse(text, len);
	free(text);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return sg_cli_fail("%s: not a token cache (%s)", path, je.text);
	}
	return 0;
}

/* Overwrites the string members of the cache before it is released (it holds tokens). */
static void cache_free(json_t *cache)
{
	const char *k;
	json_t *v;
	json_object_foreach(cache, k, v)
	{
		if (json_is_string(v))
			OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
	}
	json_decref(cache);
}

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
	else
		json_object_del(o, k);
}

/* Puts the tokens into the cache; a NULL refresh/id token keeps the cached one (a refresh
 * response without them). */
static void cache_put_tokens(json_t *cache, const struct sg_simc_tokens *t)
{
	set_str(cache, "access_token", t->access_token);
	set_str(cache, "token_type", t->token_type);
	json_object_set_new(cache, "expires_at", json_integer(t->expires_at));
	json_object_set_new(cache, "obtained_at", json_integer(sg_now_ms() / 1000));
	if (t->scope)
		set_str(cache, "scope", t->scope);
	if (t->id_token)
		set_str(cache, "id_token", t->id_token);
	if (t->refresh_token) {
		const json_t *old = json_object_get(cache, "refresh_token");
		if (json_is_string(old))
			OPENSSL_cleanse((char *)json_string_value(old), json_string_length(old));
		set_str(cache, "refresh_token", t->refresh_token);
	}
}

static const char *cstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* An absolute form of path (the cache outlives the working directory). */
static char *abs_path(const char *path)
{
	if (!path || strcmp(path, "-") == 0)
		return NULL;
	char *r = realpath(path, NULL);
	return r ? r : strdup(path);
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* Reads a password from the terminal without echo. *out owned by the caller. */
static int prompt_password(const char *user, char **out)
{
	*out = NULL;
	FILE *tty = fopen("/dev/tty", "r+");
	if (!tty)
		return sg_cli_fail("cannot open the terminal: %s", strerror(errno));
	struct termios old, noecho;
	int fd = fileno(tty);
	if (tcgetattr(fd, &old) != 0) {
		fclose(tty);
		return sg_cli_fail("cannot read the terminal settings: %s", strerror(errno));
	}
	noecho = old;
	noecho.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	noecho.c_lflag |= ICANON;
	fprintf(tty, "Password for %s: ", user);
	fflush(tty);
	tcsetattr(fd, TCSAFLUSH, &noecho);
	char *buf = malloc(1100);
	char *got = buf ? fgets(buf, 1100, tty) : NULL;
	tcsetattr(fd, TCSAFLUSH, &old);
	fputc('\n', tty);
	fclose(tty);
	if (!got) {
		if (buf)
			OPENSSL_cleanse(buf, 1100);
		free(buf);
		return sg_cli_fail("no password given");
	}
	buf[strcspn(buf, "\r\n")] = '\0';
	if (!*buf) {
		free(buf);
		return sg_cli_fail("empty password");
	}
	*out = buf;
	return 0;
}

/* The payload of a JWT, decoded but NOT verified (display only). */
static json_t *jwt_payload(const char *jwt)
{
	const char *a = jwt ? strchr(jwt, '.') : NULL;
	const char *b = a ? strchr(a + 1, '.') : NULL;
	if (!b || (size_t)(b - a) > 16384)
		return NULL;
	unsigned char buf[16384];
	size_t n = 0;
	if (sg_b64url_decode(a + 1, (size_t)(b - a - 1), buf, sizeof buf, &n) != SG_OK)
		return NULL;
	return json_loadb((const char *)buf, n, 0, NULL);
}

static void print_expiry(const char *what, int64_t exp)
{
	char when[40];
	sg_time_iso8601(when, sizeof when, exp * 1000);
	int64_t left = exp - sg_now_ms() / 1000;
	if (left > 0)
		printf("%s expires %s (in %lld s)\n", what, when, (long long)left);
	else
		printf("%s expired %s (%lld s ago)\n", what, when, (long long)-left);
}

/* The SIM-S trust anchors and CRL when --cacert is not given: the state dir's ca.crt when it
 * exists, with its crl.pem when that exists (T5); "" when not. --crl (crl_opt) wins. */
static int default_pki(const struct sg_cli_global *g, const char *crl_opt, char *ca, char *crl,
                       size_t len)
{
	ca[0] = '\0';
	struct sg_conf *conf = NULL;
	if (sg_cli_load_conf(g, NULL, &conf))
		return 1;
	if (sg_path_join(ca, len, conf->pki_dir, "ca.crt") != SG_OK || !sg_file_exists(ca))
		ca[0] = '\0';
	sg_cli_crl(conf, crl_opt, ca[0] ? NULL : "", crl, len);
	sg_conf_free(conf);
	return 0;
}

/* ---- login ------------------------------------------------------------------------------ */

int sg_cli_login(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct option opts[] = {
	    {"issuer", required_argument, NULL, OPT_ISSUER},
	    {"client-id", required_argument, NULL, OPT_CID},
	    {"client-secret-file", required_argument, NULL, OPT_CSF},
	    {"username", required_argument, NULL, OPT_USER},
	    {"password-file", required_argument, NULL, OPT_PWF},
	    {"scope", required_argument, NULL, OPT_SCOPE},
	    {"cacert", required_argument, NULL, OPT_CA},
	    {"crl", required_argument, NULL, OPT_CRL},
	    {"redirect-uri", required_argument, NULL, OPT_RURI},
	    {"token-cache", required_argument, NULL, OPT_CACHE},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *issuer = NULL, *cid = NULL, *csf = NULL, *user = NULL, *pwf = NULL,
	           *scope = "openid seal:gm seal:km sdd", *ca = NULL, *ruri = DEFAULT_REDIRECT_URI,
	           *cache_opt = NULL, *crl_opt = NULL;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_ISSUER:
			issuer = optarg;
			break;
		case OPT_CID:
			cid = optarg;
			break;
		case OPT_CSF:
			csf = optarg;
			break;
		case OPT_USER:
			user = optarg;
			break;
		case OPT_PWF:
			pwf = optarg;
			break;
		case OPT_SCOPE:
			scope = optarg;
			break;
		case OPT_CA:
			ca = optarg;
			break;
		case OPT_CRL:
			crl_opt = optarg;
			break;
		case OPT_RURI:
			ruri = optarg;
			break;
		case OPT_CACHE:
			cache_opt = optarg;
			break;
		case 'h':
			fputs(USAGE_LOGIN, stdout);
			return 0;
		default:
			fputs(USAGE_LOGIN, stderr);
			return 2;
		}
	}
	if (optind != argc || !cid || !csf || !user) {
		sg_cli_fail("login needs --client-id, --client-secret-file and --username");
		fputs(USAGE_LOGIN, stderr);
		return 2;
	}
	if (pwf && csf && strcmp(pwf, "-") == 0 && strcmp(csf, "-") == 0)
		return sg_cli_fail("the password and the client secret cannot both come from "
		                   "stdin"),
		       2;
	if (!pwf && !isatty(STDIN_FILENO))
		return sg_cli_fail("no --password-file and standard input is not a terminal "
		                   "(use --password-file -)"),
		       2;
	char cachef[PATH_MAX], cabuf[PATH_MAX] = "", crl[PATH_MAX] = "";
	if (crl_opt) /* T5 */
		snprintf(crl, sizeof crl, "%s", crl_opt);
	if (cache_path(cache_opt, cachef, sizeof cachef))
		return 1;
	struct sg_conf *conf = NULL;
	char *issuer_conf = NULL;
	if (!issuer || !ca) {
		if (sg_cli_load_conf(g, NULL, &conf))
			return 1;
		if (!issuer && conf->idm.issuer)
			issuer = issuer_conf = strdup(conf->idm.issuer);
		sg_conf_free(conf);
		if (!issuer)
			return sg_cli_fail("no --issuer and no idm.issuer in the configuration"), 2;
		if (!ca && default_pki(g, crl_opt, cabuf, crl, sizeof crl)) {
			free(issuer_conf);
			return 1;
		}
		if (!ca && cabuf[0])
			ca = cabuf;
	}
	char *secret = NULL, *password = NULL;
	int rc = sg_cli_read_secret(csf, "client secret", &secret);
	if (rc == 0)
		rc = pwf ? sg_cli_read_secret(pwf, "password", &password)
		         : prompt_password(user, &password);
	struct sg_simc *c = NULL;
	struct sg_simc_tokens t = {0};
	char err[1024] = "";
	if (rc == 0) {
		struct sg_simc_conf sc = {.issuer = issuer,
		                          .client_id = cid,
		                          .client_secret = secret,
		                          .redirect_uri = ruri,
		                          .ca = ca,
		                          .crl = crl[0] ? crl : NULL};
		if (sg_simc_new(&sc, &c, err, sizeof err) != SG_OK ||
		    sg_simc_login(c, scope, user, password, &t, err, sizeof err) != SG_OK)
			rc = sg_cli_fail("login failed: %s", err);
	}
	sg_cli_secret_free(password);
	sg_cli_secret_free(secret);
	if (rc == 0) {
		json_t *cache = json_object();
		char *ca_abs = abs_path(ca), *csf_abs = abs_path(csf),
		     *crl_abs = crl[0] ? abs_path(crl) : NULL;
		set_str(cache, "issuer", issuer);
		set_str(cache, "client_id", cid);
		set_str(cache, "redirect_uri", ruri);
		set_str(cache, "username", user);
		set_str(cache, "cacert", ca_abs);
		set_str(cache, "crl", crl_abs);
		set_str(cache, "client_secret_file", csf_abs);
		free(ca_abs);
		free(crl_abs);
		free(csf_abs);
		cache_put_tokens(cache, &t);
		rc = cache_write(cachef, cache);
		cache_free(cache);
	}
	if (rc == 0) {
		const char *sub = json_string_value(json_object_get(t.id_claims, "sub"));
		printf("logged in as %s (sub %s) at %s\n", user, sub ? sub : "?", issuer);
		printf("scope: %s\n", t.scope ? t.scope : scope);
		print_expiry("access token", t.expires_at);
		json_t *e = json_object_get(t.id_claims, "exp");
		if (json_is_integer(e))
			print_expiry("ID token (validated)", json_integer_value(e));
		printf("refresh token: %s\n", t.refresh_token ? "yes" : "no");
		printf("tokens saved in %s (mode 0600); `sealguard token show` decodes them\n",
		       cachef);
	}
	sg_simc_tokens_clear(&t);
	sg_simc_free(c);
	free(issuer_conf);
	return rc;
}

/* ---- token show | refresh --------------------------------------------------------------- */

static void show_jwt(const char *what, const char *jwt, int raw)
{
	json_t *claims = jwt_payload(jwt);
	if (!claims) {
		printf("%s: %s\n", what, jwt ? "not a JWT" : "none");
		return;
	}
	char *text = json_dumps(claims, JSON_INDENT(2));
	printf("%s claims:\n%s\n", what, text ? text : "?");
	free(text);
	json_t *exp = json_object_get(claims, "exp");
	if (json_is_integer(exp))
		print_expiry(what, json_integer_value(exp));
	if (raw)
		printf("%s: %s\n", what, jwt);
	json_decref(claims);
}

static int cmd_show(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"raw", no_argument, NULL, OPT_RAW},
	    {"token-cache", required_argument, NULL, OPT_CACHE},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *cache_opt = NULL;
	int raw = 0, ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_RAW:
			raw = 1;
			break;
		case OPT_CACHE:
			cache_opt = optarg;
			break;
		case 'h':
			fputs(USAGE_TOKEN, stdout);
			return 0;
		default:
			fputs(USAGE_TOKEN, stderr);
			return 2;
		}
	}
	if (optind != argc)
		return sg_cli_fail("token show takes no arguments ('%s')", argv[optind]), 2;
	char cachef[PATH_MAX];
	json_t *cache = NULL;
	if (cache_path(cache_opt, cachef, sizeof cachef) || cache_read(cachef, &cache))
		return 1;
	printf("issuer: %s\nclient: %s\nuser: %s\nscope: %s\n", cstr(cache, "issuer"),
	       cstr(cache, "client_id"), cstr(cache, "username"), cstr(cache, "scope"));
	show_jwt("ID token", cstr(cache, "id_token"), raw);
	show_jwt("access token", cstr(cache, "access_token"), raw);
	json_t *exp = json_object_get(cache, "expires_at");
	if (json_is_integer(exp))
		print_expiry("access token (expires_in)", json_integer_value(exp));
	const char *rt = cstr(cache, "refresh_token");
	if (raw && rt)
		printf("refresh token: %s\n", rt);
	else
		printf("refresh token: %s\n", rt ? "present (opaque; --raw prints it)" : "none");
	cache_free(cache);
	return 0;
}

static int cmd_refresh(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"scope", required_argument, NULL, OPT_SCOPE},
	    {"client-secret-file", required_argument, NULL, OPT_CSF},
	    {"cacert", required_argument, NULL, OPT_CA},
	    {"crl", required_argument, NULL, OPT_CRL},
	    {"token-cache", required_argument, NULL, OPT_CACHE},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *cache_opt = NULL, *scope = NULL, *csf = NULL, *ca = NULL, *crl = NULL;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_SCOPE:
			scope = optarg;
			break;
		case OPT_CSF:
			csf = optarg;
			break;
		case OPT_CA:
			ca = optarg;
			break;
		case OPT_CRL:
			crl = optarg;
			break;
		case OPT_CACHE:
			cache_opt = optarg;
			break;
		case 'h':
			fputs(USAGE_TOKEN, stdout);
			return 0;
		default:
			fputs(USAGE_TOKEN, stderr);
			return 2;
		}
	}
	if (optind != argc)
		return sg_cli_fail("token refresh takes no arguments ('%s')", argv[optind]), 2;
	char cachef[PATH_MAX];
	json_t *cache = NULL;
	if (cache_path(cache_opt, cachef, sizeof cachef) || cache_read(cachef, &cache))
		return 1;
	int rc = 0;
	const char *rt = cstr(cache, "refresh_token");
	if (!csf)
		csf = cstr(cache, "client_secret_file");
	if (!crl && !ca) /* T5: login's CRL goes with login's trust anchors */
		crl = cstr(cache, "crl");
	if (!ca)
		ca = cstr(cache, "cacert");
	if (!rt)
		rc = sg_cli_fail("no refresh token in %s: log in again", cachef);
	else if (!csf)
		rc = sg_cli_fail("give --client-secret-file (the cache does not name one)");
	char *secret = NULL;
	if (rc == 0)
		rc = sg_cli_read_secret(csf, "client secret", &secret);
	struct sg_simc *c = NULL;
	struct sg_simc_tokens t = {0};
	char err[1024] = "";
	json_t *old_id = jwt_payload(cstr(cache, "id_token"));
	if (rc == 0) {
		struct sg_simc_conf sc = {.issuer = cstr(cache, "issuer"),
		                          .client_id = cstr(cache, "client_id"),
		                          .client_secret = secret,
		                          .redirect_uri = cstr(cache, "redirect_uri"),
		                          .ca = ca,
		                          .crl = crl && crl[0] ? crl : NULL};
		if (sg_simc_new(&sc, &c, err, sizeof err) != SG_OK ||
		    sg_simc_refresh(c, rt, scope, cstr(old_id, "sub"), &t, err, sizeof err) !=
		        SG_OK)
			rc = sg_cli_fail("refresh failed: %s%s", err,
			                 strstr(err, "invalid_grant") ? " (log in again)" : "");
	}
	sg_cli_secret_free(secret);
	if (rc == 0) {
		int rotated = t.refresh_token != NULL;
		cache_put_tokens(cache, &t);
		rc = cache_write(cachef, cache);
		if (rc == 0) {
			printf("refreshed: scope %s\n", t.scope ? t.scope : cstr(cache, "scope"));
			print_expiry("access token", t.expires_at);
			printf("refresh token: %s\n",
			       rotated ? "rotated (the new one is saved)" : "unchanged");
			printf("tokens saved in %s\n", cachef);
		}
	}
	json_decref(old_id);
	sg_simc_tokens_clear(&t);
	sg_simc_free(c);
	cache_free(cache);
	return rc;
}

int sg_cli_token(int argc, char **argv, const struct sg_cli_global *g)
{
	(void)g;
	if (argc < 2) {
		fputs(USAGE_TOKEN, stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		fputs(USAGE_TOKEN, stdout);
		return 0;
	}
	if (strcmp(cmd, "show") == 0)
		return cmd_show(argc - 1, argv + 1);
	if (strcmp(cmd, "refresh") == 0)
		return cmd_refresh(argc - 1, argv + 1);
	sg_cli_fail("unknown token command '%s' (try `sealguard token --help`)", cmd);
	return 2;
}
