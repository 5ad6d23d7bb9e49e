/* cli/cmd_keys.c: `sealguard keys rotate|list`: the SIM-S's ES256 signing keys (I7, I8). A
 * rotation makes a new key the signing one; the previous one stays in the JWKS until every
 * token it signed has expired, then leaves. A running server picks the change up by itself
 * (store generation), so no restart is needed. */
#include "auth/keyfile.h"
#include "base/clock.h"
#include "cli/cli.h"
#include "conf/conf.h"
#include "idm/idm.h"
#include "store/store.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "usage: sealguard [--state-dir DIR] [--config FILE] keys rotate|list\n"
    "\n"
    "The identity management (SIM-S) token signing keys (ES256), kept in the store with the\n"
    "private key sealed by STATE/secrets/master.key.\n"
    "  rotate   create a new signing key; the previous one keeps being published in the JWKS\n"
    "           until the longest token lifetime has passed (max of access and ID token TTL),\n"
    "           so tokens it signed stay verifiable. A running server follows within a second.\n"
    "  list     kid, state (signing / published until / retired) and creation time\n";

static int open_all(const struct sg_cli_global *g, struct sg_conf **conf, struct sg_store **st)
{
	if (sg_cli_load_conf(g, NULL, conf) != 0)
		return 1;
	char err[1024] = "";
	if (sg_store_open((*conf)->store_driver ? (*conf)->store_driver : "sqlite",
	                  (*conf)->store_path, st, err, sizeof err) != SG_OK) {
		sg_conf_free(*conf);
		return sg_cli_fail("%s", err);
	}
	return 0;
}

static int keys_rotate(const struct sg_cli_global *g)
{
	struct sg_conf *conf;
	struct sg_store *st;
	if (open_all(g, &conf, &st) != 0)
		return 1;
	unsigned char master[32];
	char err[1024] = "", kid[80] = "";
	int rc = 1;
	if (sg_keyfile_load(conf->state_dir, "master", 1, master, err, sizeof err) != SG_OK) {
		sg_cli_fail("%s", err);
	} else if (sg_idm_key_create(st, master, sg_idm_key_retire_after_ms(conf), kid, err,
	                             sizeof err) != SG_OK) {
		sg_cli_fail("%s", err);
	} else {
		struct sg_store_audit a = {
		    .ts = sg_now_ms(), .actor = "cli", .action = "key.rotate", .object = kid};
		if (sg_store_audit_append(st, &a) != SG_OK)
			sg_cli_fail("audit: %s", sg_store_last_error());
		else
			rc = 0;
		printf("new signing key %s; the previous one stays published for %lld s\n", kid,
		       (long long)(sg_idm_key_retire_after_ms(conf) / 1000));
	}
	OPENSSL_cleanse(master, sizeof master);
	sg_store_close(st);
	sg_conf_free(conf);
	return rc;
}

static int keys_list(const struct sg_cli_global *g)
{
	struct sg_conf *conf;
	struct sg_store *st;
	if (open_all(g, &conf, &st) != 0)
		return 1;
	struct sg_store_key *v = NULL;
	size_t n = 0;
	int rc = 0;
	if (sg_store_key_list(st, &v, &n) != SG_OK) {
		rc = sg_cli_fail("cannot list keys: %s", sg_store_last_error());
	} else {
		int64_t now = sg_now_ms();
		printf("%-24s %-8s %-34s %s\n", "KID", "ALG", "STATE", "CREATED");
		for (size_t i = 0; i < n; i++) {
			char created[40], until[40], state[64];
			sg_time_iso8601(created, sizeof created, v[i].created_at);
			if (v[i].active) {
				snprintf(state, sizeof state, "signing");
			} else if (v[i].retire_at && v[i].retire_at <= now) {
				snprintf(state, sizeof state, "retired");
			} else if (v[i].retire_at) {
				sg_time_iso8601(until, sizeof until, v[i].retire_at);
				snprintf(state, sizeof state, "published until %s", until);
			} else {
				snprintf(state, sizeof state, "published");
			}
			printf("%-24s %-8s %-34s %s\n", v[i].kid, v[i].alg, state, created);
		}
		sg_store_key_list_free(v, n);
	}
	sg_store_close(st);
	sg_conf_free(conf);
	return rc;
}

int sg_cli_keys(int argc, char **argv, const struct sg_cli_global *g)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(USAGE, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (argc > 2)
		return sg_cli_fail("keys %s takes no arguments ('%s')", argv[1], argv[2]), 2;
	if (!strcmp(argv[1], "rotate"))
		return keys_rotate(g);
	if (!strcmp(argv[1], "list"))
		return keys_list(g);
	sg_cli_fail("unknown keys command '%s' (rotate, list)", argv[1]);
	return 2;
}
