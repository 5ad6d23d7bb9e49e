/* cli/cmd_user.c: `sealguard user add|list|disable|enable|passwd|remove`, the VAL users of the
 * SIM-S registry (TS 33.434 §5.2, I3, I7), working on the store of the state dir directly (also
 * next to a running server: it reloads its caches when the registry generation changes). Also
 * the helpers the registry and login commands share: opening the store, reading secrets from
 * files, audit rows. */
#include "cli/cli.h"

#include "auth/secret.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/file.h"
#include "conf/conf.h"
#include "idm/logic.h"
#include "store/store.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: sealguard [--state-dir DIR] user COMMAND [OPTIONS]\n"
    "\n"
    "The VAL users the identity management server (SIM-S) authenticates (TS 33.434 §5.2).\n"
    "Changes apply to a running server too, within a second, without a restart.\n"
    "\n"
    "commands:\n"
    "  add NAME --password-file F [--val-user-id SERVICE=ID]...\n"
    "                   create a user; a stable opaque `sub` is drawn for it\n"
    "  list             users with their sub, state and VAL user ids\n"
    "  disable NAME     refuse logins and refreshes of NAME and revoke its grants: resource\n"
    "                   servers refuse its access tokens within resource.revocation_poll_ms\n"
    "  enable NAME      allow NAME again (it logs in anew: revoked grants stay revoked)\n"
    "  passwd NAME --password-file F\n"
    "                   set a new password\n"
    "  remove NAME      delete NAME and revoke its grants; its sub is never given to anybody\n"
    "                   else\n"
    "\n"
    "Passwords are read from a file (one trailing newline is removed) or from standard input\n"
    "when F is \"-\"; never from the command line. They are stored as scrypt hashes\n"
    "(idm.scrypt_ln of the configuration, r=8, p=1).\n"
    "\n"
    "The VAL user id of a user for a VAL service defaults to the user name; --val-user-id\n"
    "SERVICE=ID sets another one. UE access tokens carry it (see docs/scopes.md).\n"
    "\n"
    "example:\n"
    "  printf '%%s\\n' 'correct horse' > pw && sealguard user add alice --password-file pw \\\n"
    "      --val-user-id v2x=alice@v2x.example\n";

/* ---- shared by the registry and login commands ------------------------------------------ */

int sg_cli_open_store(const struct sg_cli_global *g, struct sg_conf **conf, struct sg_store **st)
{
	*st = NULL;
	if (sg_cli_load_conf(g, NULL, conf) != 0)
		return 1;
	const struct sg_conf *c = *conf;
	const char *where = strcmp(c->store_driver, "sqlite") == 0 ? c->store_path : c->store_url;
	char err[1024] = "";
	/* a fresh state dir (before the first `serve`): create it as serve would, 0700 */
	if (c->state_dir && sg_mkdirs(c->state_dir, 0700) != SG_OK) {
		sg_cli_fail("cannot create the state dir %s: %s", c->state_dir, strerror(errno));
		sg_conf_free(*conf);
		*conf = NULL;
		return 1;
	}
	if (!where || sg_store_open(c->store_driver, where, st, err, sizeof err) != SG_OK) {
		sg_cli_fail("store %s: %s", where ? where : "(none)", err);
		sg_conf_free(*conf);
		*conf = NULL;
		return 1;
	}
	return 0;
}

int sg_cli_read_secret(const char *path, const char *what, char **out)
{
	*out = NULL;
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!f)
		return sg_cli_fail("%s file %s: %s", what, path, strerror(errno));
	struct sg_buf b = SG_BUF_INIT;
	char chunk[512];
	size_t n;
	int rc = 0;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (b.len + n > SG_PASSWORD_MAX_LEN + 2 || sg_buf_append(&b, chunk, n) != SG_OK) {
			rc = sg_cli_fail("%s in %s is too long (at most %d bytes)", what, path,
			                 SG_PASSWORD_MAX_LEN);
			break;
		}
	}
	OPENSSL_cleanse(chunk, sizeof chunk);
	if (rc == 0 && ferror(f))
		rc = sg_cli_fail("%s file %s: read error", what, path);
	if (f != stdin)
		fclose(f);
	if (rc == 0) {
		/* one trailing newline (LF or CRLF), as an editor or `echo` leaves it */
		if (b.len && b.data[b.len - 1] == '\n')
			b.data[--b.len] = '\0';
		if (b.len && b.data[b.len - 1] == '\r')
			b.data[--b.len] = '\0';
		if (b.len == 0)
			rc = sg_cli_fail("%s in %s is empty", what, path);
		else if (memchr(b.data, '\0', b.len))
			rc = sg_cli_fail("%s in %s contains a NUL byte", what, path);
	}
	if (rc) {
		sg_buf_wipe(&b);
		return rc;
	}
	*out = sg_buf_steal(&b);
	return 0;
}

void sg_cli_secret_free(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

int sg_cli_audit(struct sg_store *st, const char *action, const char *object, const char *detail)
{
	struct sg_store_audit a = {.actor = "cli",
	                           .action = (char *)action,
	                           .object = (char *)object,
	                           .detail = (char *)detail};
	if (sg_store_audit_append(st, &a) != SG_OK)
		return sg_cli_fail("audit: %s", sg_store_last_error());
	return 0;
}

int sg_cli_store_fail(struct sg_store *st, const char *what)
{
	sg_store_tx_rollback(st);
	return sg_cli_fail("%s: %s", what, sg_store_last_error());
}

int sg_cli_tx_finish(struct sg_store *st, sg_err e, const char *noun, const char *what,
                     const char *action, const char *object, const char *detail)
{
	if (e == SG_ERR_NOTFOUND) {
		sg_store_tx_rollback(st);
		return sg_cli_fail("no %s '%s'", noun, object);
	}
	if (e != SG_OK)
		return sg_cli_store_fail(st, what);
	if (sg_cli_audit(st, action, object, detail)) {
		sg_store_tx_rollback(st);
		return 1;
	}
	if (sg_store_tx_commit(st) != SG_OK)
		return sg_cli_store_fail(st, what);
	return 0;
}

/* ---- user ------------------------------------------------------------------------------- */

/* User names: 1..64 of letters, digits and "._@+-" (they appear in logs, audit rows and
 * default VAL user ids; no spaces, no controls). */
static int name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return 0;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._@+-", *p))
			return 0;
	return 1;
}

/* VAL service ids and VAL user ids: printable ASCII without spaces, 1..255 bytes. */
static int token_ok(const char *s, size_t n)
{
	if (n == 0 || n > 255)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return 0;
	return 1;
}

enum { OPT_PW = 1000, OPT_VALID };

static int hash_password(const struct sg_conf *conf, const char *pwfile, char *phc, size_t len)
{
	char *pw = NULL;
	if (sg_cli_read_secret(pwfile, "password", &pw))
		return 1;
	struct sg_password_params pp = {.ln = conf->idm.scrypt_ln ? conf->idm.scrypt_ln
	                                                          : SG_PASSWORD_LN_DEFAULT,
	                                .r = 8,
	                                .p = 1};
	sg_err e = sg_password_hash(pw, &pp, phc, len);
	sg_cli_secret_free(pw);
	if (e != SG_OK)
		return sg_cli_fail("password hashing failed (%s)", sg_err_str(e));
	return 0;
}

static int cmd_add(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct option opts[] = {
	    {"password-file", required_argument, NULL, OPT_PW},
	    {"val-user-id", required_argument, NULL, OPT_VALID},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *pwfile = NULL;
	struct sg_store_val_id *ids = calloc((size_t)argc + 1, sizeof *ids);
	char **bufs = calloc((size_t)argc + 1, sizeof *bufs);
	size_t nids = 0;
	int rc = 0, ch;
	if (!ids || !bufs) {
		free(ids);
		free(bufs);
		return sg_cli_fail("out of memory");
	}
	optind = 0;
	while (rc == 0 && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_PW:
			pwfile = optarg;
			break;
		case OPT_VALID: {
			const char *eq = strchr(optarg, '=');
			if (!eq || !token_ok(optarg, (size_t)(eq - optarg)) ||
			    !token_ok(eq + 1, strlen(eq + 1))) {
				rc = (sg_cli_fail("--val-user-id takes SERVICE=ID (no spaces, at "
				                  "most 255 bytes each), not '%s'",
				                  optarg),
				      2);
				break;
			}
			for (size_t i = 0; i < nids; i++)
				if (strncmp(ids[i].service, optarg, (size_t)(eq - optarg)) == 0 &&
				    ids[i].service[eq - optarg] == '\0')
					rc = (sg_cli_fail("--val-user-id: VAL service '%.*s' given "
					                  "twice",
					                  (int)(eq - optarg), optarg),
					      2);
			if (rc)
				break;
			if (!(bufs[nids] = strdup(optarg))) {
				rc = sg_cli_fail("out of memory");
				break;
			}
			bufs[nids][eq - optarg] = '\0';
			ids[nids].service = bufs[nids];
			ids[nids].val_user_id = bufs[nids] + (eq - optarg) + 1;
			nids++;
			break;
		}
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
	if (rc == 0 && (!name || optind + 1 != argc || !pwfile))
		rc = (sg_cli_fail("usage: sealguard user add NAME --password-file F "
		                  "[--val-user-id SERVICE=ID]..."),
		      2);
	if (rc == 0 && !name_ok(name))
		rc = (sg_cli_fail("user name '%s': 1 to 64 letters, digits or ._@+-", name), 2);
	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	char phc[SG_PASSWORD_PHC_MAX] = "", sub[SG_STORE_SUB_LEN + 1] = "";
	if (rc == 0)
		rc = sg_cli_open_store(g, &conf, &st);
	if (rc == 0)
		rc = hash_password(conf, pwfile, phc, sizeof phc);
	if (rc == 0) {
		struct sg_store_user u = {
		    .name = (char *)name, .password_hash = phc, .val_ids = ids, .n_val_ids = nids};
		struct sg_buf detail = SG_BUF_INIT;
		for (size_t i = 0; i < nids; i++)
			sg_buf_printf(&detail, "%sval_user_id %s=%s", i ? ", " : "", ids[i].service,
			              ids[i].val_user_id);
		sg_err e = sg_store_tx_begin(st);
		if (e == SG_OK)
			e = sg_store_user_add(st, &u, sub);
		if (e == SG_ERR_EXISTS) {
			sg_store_tx_rollback(st);
			rc = sg_cli_fail("user '%s' exists already", name);
		} else if (e != SG_OK) {
			rc = sg_cli_store_fail(st, "user add");
		} else if (sg_cli_audit(st, "user.add", name, detail.data)) {
			sg_store_tx_rollback(st);
			rc = 1;
		} else if (sg_store_tx_commit(st) != SG_OK) {
			rc = sg_cli_store_fail(st, "user add");
		} else {
			printf("added user %s (sub %s)\n", name, sub);
			for (size_t i = 0; i < nids; i++)
				printf("  VAL user id for %s: %s\n", ids[i].service,
				       ids[i].val_user_id);
		}
		sg_buf_free(&detail);
	}
	OPENSSL_cleanse(phc, sizeof phc);
	sg_store_close(st);
	sg_conf_free(conf);
	for (size_t i = 0; i < nids; i++)
		free(bufs[i]);
	free(bufs);
	free(ids);
	return rc < 0 ? 0 : rc;
}

static int cmd_list(int argc, char **argv, const struct sg_cli_global *g)
{
	(void)argv;
	if (argc > 1)
		return sg_cli_fail("user list takes no arguments"), 2;
	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	if (sg_cli_open_store(g, &conf, &st))
		return 1;
	struct sg_store_user *v = NULL;
	size_t n = 0;
	int rc = 0;
	if (sg_store_user_list(st, &v, &n) != SG_OK) {
		rc = sg_cli_fail("user list: %s", sg_store_last_error());
	} else {
		printf("%-24s  %-22s  %-8s  %s\n", "NAME", "SUB", "DISABLED", "VAL_USER_IDS");
		for (size_t i = 0; i < n; i++) {
			printf("%-24s  %-22s  %-8s  ", v[i].name, v[i].sub,
			       v[i].disabled ? "yes" : "no");
			if (v[i].n_val_ids == 0)
				printf("(the user name for every VAL service)");
			for (size_t j = 0; j < v[i].n_val_ids; j++)
				printf("%s%s=%s", j ? " " : "", v[i].val_ids[j].service,
				       v[i].val_ids[j].val_user_id);
			printf("\n");
		}
		sg_store_user_list_free(v, n);
	}
	sg_store_close(st);
	sg_conf_free(conf);
	return rc;
}

/* A disabled or removed user's grants are revoked (inside the caller's transaction), so its
 * unexpired access tokens are refused by resource servers, not only its refreshes. */
static sg_err revoke_grants_of(struct sg_store *st, const struct sg_conf *conf, const char *name)
{
	struct sg_store_user u = {0};
	sg_err e = sg_store_user_get_by_name(st, name, &u);
	if (e == SG_OK) {
		int64_t now = sg_now_ms();
		e = sg_store_grants_revoke_of(
		    st, NULL, u.sub, now,
		    sg_idm_grant_revoke_until(conf->idm.access_ttl_s, conf->idm.id_ttl_s, now),
		    NULL);
	}
	sg_store_user_clear(&u);
	return e;
}

/* disable, enable, remove, passwd: NAME [--password-file F] */
static int cmd_change(int argc, char **argv, const struct sg_cli_global *g)
{
	const char *what = argv[0]; /* disable, enable, passwd, remove */
	static const struct option opts[] = {
	    {"password-file", required_argument, NULL, OPT_PW},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int is_pw = strcmp(what, "passwd") == 0;
	const char *pwfile = NULL;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ch == OPT_PW && is_pw) {
			pwfile = optarg;
		} else if (ch == 'h') {
			fputs(USAGE, stdout);
			return 0;
		} else {
			fputs(USAGE, stderr);
			return 2;
		}
	}
	if (optind + 1 != argc || (is_pw && !pwfile)) {
		sg_cli_fail("usage: sealguard user %s NAME%s", what,
		            is_pw ? " --password-file F" : "");
		return 2;
	}
	const char *name = argv[optind];
	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	if (sg_cli_open_store(g, &conf, &st))
		return 1;
	char phc[SG_PASSWORD_PHC_MAX] = "", action[32];
	int rc = is_pw ? hash_password(conf, pwfile, phc, sizeof phc) : 0;
	snprintf(action, sizeof action, "user.%s", what);
	sg_err e = SG_OK;
	if (rc == 0 && (e = sg_store_tx_begin(st)) == SG_OK) {
		if (is_pw)
			e = sg_store_user_set_password(st, name, phc);
		else if (strcmp(what, "enable") == 0)
			e = sg_store_user_set_disabled(st, name, 0);
		else if ((e = revoke_grants_of(st, conf, name)) == SG_OK)
			e = strcmp(what, "remove") == 0 ? sg_store_user_delete(st, name)
			                                : sg_store_user_set_disabled(st, name, 1);
	}
	if (rc == 0) /* else the password could not be read or hashed */
		rc = sg_cli_tx_finish(st, e, "user", action, action, name, NULL);
	if (rc) {
		/* reported */
	} else if (is_pw) {
		printf("password of %s changed\n", name);
	} else if (strcmp(what, "remove") == 0) {
		printf("removed user %s (its sub stays reserved)\n", name);
	} else {
		printf("user %s %sd\n", name, what);
	}
	OPENSSL_cleanse(phc, sizeof phc);
	sg_store_close(st);
	sg_conf_free(conf);
	return rc;
}

int sg_cli_user(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct sg_cli_sub subs[] = {
	    {"add", cmd_add},       {"list", cmd_list},     {"disable", cmd_change},
	    {"enable", cmd_change}, {"passwd", cmd_change}, {"remove", cmd_change},
	    {NULL, NULL},
	};
	return sg_cli_dispatch(argc, argv, g, "user", USAGE, subs);
}
