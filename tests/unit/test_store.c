/* Unit tests of store/: the SQLite backend on real files (CRUD of every entity, uniqueness,
 * single-use codes, refresh rotation with reuse detection, revocation, migrations, change
 * detection across connections, file mode), the worker pool on a libevent loop, and
 * durability of acknowledged writes across a SIGKILL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "store/backend.h"
#include "store/store.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct fx {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/sg_store_XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < 4; i++) {
		char p[160];
		snprintf(p, sizeof p, "%s%s", f->path, sfx[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct sg_store *open_ok(const char *path)
{
	struct sg_store *st = NULL;
	char err[256] = "";
	sg_err e = sg_store_open("sqlite", path, &st, err, sizeof err);
	if (e != SG_OK)
		fail_msg("open: %s", err);
	return st;
}

/* Runs SQL on the file with a plain sqlite3 connection (like an operator's shell would). */
static int raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open(path, &db);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

static int64_t raw_int(const char *path, const char *sql, const char *arg)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	int64_t v = -1;
	if (sqlite3_open(path, &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK) {
		if (arg)
			sqlite3_bind_text(q, 1, arg, -1, SQLITE_STATIC);
		if (sqlite3_step(q) == SQLITE_ROW)
			v = sqlite3_column_int64(q, 0);
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	return v;
}

static int first_col(void *arg, int n, char **vals, char **names)
{
	(void)names;
	char **out = arg;
	if (n > 0 && vals[0] && !*out)
		*out = strdup(vals[0]);
	return 0;
}

static struct sg_store_client mk_client(const char *id, char **uris, size_t n)
{
	struct sg_store_client c = {0};
	c.client_id = (char *)id;
	memset(c.secret_digest, 0xab, 32);
	c.secret_digest_len = 32;
	c.redirect_uris = uris;
	c.n_redirect_uris = n;
	c.scopes = "openid seal:gm seal:km sdd";
	return c;
}

/* The client "simc" (redirect URI https://app/cb) of the grant tests. */
static void add_simc(struct sg_store *st)
{
	char *uris[] = {"https://app/cb"};
	struct sg_store_client c = mk_client("simc", uris, 1);
	assert_int_equal(sg_store_client_add(st, &c), SG_OK);
}

static void test_open_file_mode_and_drivers(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	struct sg_store_audit a = {.actor = "cli", .action = "test.write"};
	assert_int_equal(sg_store_audit_append(st, &a), SG_OK);
	char wal[160];
	snprintf(wal, sizeof wal, "%s-wal", f->path);
	assert_int_equal(stat(wal, &sb), 0); /* WAL mode */
	assert_int_equal(sb.st_mode & 0777, 0600);
	int v = 0;
	assert_int_equal(sg_store_schema_version(st, &v), SG_OK);
	assert_int_equal(v, SG_STORE_SCHEMA_VERSION);
	sg_store_close(st);
	/* WAL is persistent: a plain connection sees it. */
	sqlite3 *db = NULL;
	char *mode = NULL;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode", first_col, &mode, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	assert_non_null(mode);
	assert_string_equal(mode, "wal");
	free(mode);

	struct sg_store *none = NULL;
	char err[256] = "";
	assert_int_equal(sg_store_open("postgres", "postgresql://x/y", &none, err, sizeof err),
	                 SG_ERR_CONFIG);
	assert_non_null(strstr(err, "PostgreSQL"));
	assert_int_equal(sg_store_open("mysql", f->path, &none, err, sizeof err), SG_ERR_CONFIG);
	assert_null(none);
	char bad[200];
	snprintf(bad, sizeof bad, "%s/no/such/dir/x.db", f->dir);
	assert_int_equal(sg_store_open("sqlite", bad, &none, err, sizeof err), SG_ERR_IO);
}

static void test_users_crud(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	struct sg_store_val_id vids[] = {{"v2x", "alice@v2x"}, {"uas", "pilot-7"}};
	struct sg_store_user u = {.name = "alice",
	                          .password_hash = "$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA",
	                          .val_ids = vids,
	                          .n_val_ids = 2};
	char sub[SG_STORE_SUB_LEN + 1] = "";
	assert_int_equal(sg_store_user_add(st, &u, sub), SG_OK);
	assert_int_equal(strlen(sub), SG_STORE_SUB_LEN);
	assert_int_equal(
	    strspn(sub, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
	    SG_STORE_SUB_LEN);
	assert_int_equal(sg_store_user_add(st, &u, NULL), SG_ERR_EXISTS);
	assert_non_null(strstr(sg_store_last_error(), "alice"));
	struct sg_store_user bob = {.name = "bob", .password_hash = "h2", .disabled = 1};
	char bsub[SG_STORE_SUB_LEN + 1];
	assert_int_equal(sg_store_user_add(st, &bob, bsub), SG_OK);
	assert_string_not_equal(sub, bsub);

	struct sg_store_user g;
	assert_int_equal(sg_store_user_get_by_name(st, "alice", &g), SG_OK);
	assert_string_equal(g.sub, sub);
	assert_string_equal(g.password_hash, u.password_hash);
	assert_int_equal(g.disabled, 0);
	assert_true(g.created_at > 0);
	assert_int_equal(g.n_val_ids, 2);
	assert_string_equal(g.val_ids[0].service, "uas"); /* ordered by service */
	assert_string_equal(g.val_ids[0].val_user_id, "pilot-7");
	assert_string_equal(g.val_ids[1].val_user_id, "alice@v2x");
	sg_store_user_clear(&g);
	assert_int_equal(sg_store_user_get_by_sub(st, bsub, &g), SG_OK);
	assert_string_equal(g.name, "bob");
	assert_int_equal(g.disabled, 1);
	assert_int_equal(g.n_val_ids, 0);
	sg_store_user_clear(&g);
	assert_int_equal(sg_store_user_get_by_name(st, "carol", &g), SG_ERR_NOTFOUND);

	assert_int_equal(sg_store_user_set_password(st, "alice", "newhash"), SG_OK);
	assert_int_equal(sg_store_user_set_disabled(st, "alice", 1), SG_OK);
	assert_int_equal(sg_store_user_set_disabled(st, "carol", 1), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_user_val_id_set(st, "alice", "v2x", "alice2"), SG_OK);
	assert_int_equal(sg_store_user_val_id_delete(st, "alice", "uas"), SG_OK);
	assert_int_equal(sg_store_user_val_id_delete(st, "alice", "uas"), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_user_val_id_set(st, "carol", "v2x", "x"), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_user_get_by_name(st, "alice", &g), SG_OK);
	assert_string_equal(g.password_hash, "newhash");
	assert_int_equal(g.disabled, 1);
	assert_int_equal(g.n_val_ids, 1);
	assert_string_equal(g.val_ids[0].service, "v2x");
	assert_string_equal(g.val_ids[0].val_user_id, "alice2");
	sg_store_user_clear(&g);

	struct sg_store_user *list = NULL;
	size_t n = 0;
	assert_int_equal(sg_store_user_list(st, &list, &n), SG_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].name, "alice");
	assert_int_equal(list[0].n_val_ids, 1);
	assert_string_equal(list[1].name, "bob");
	sg_store_user_list_free(list, n);

	/* Delete: the sub is kept as a tombstone and never given again. */
	assert_int_equal(sg_store_user_delete(st, "alice"), SG_OK);
	assert_int_equal(sg_store_user_delete(st, "alice"), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_user_get_by_sub(st, sub, &g), SG_ERR_NOTFOUND);
	assert_true(raw_int(f->path, "SELECT deleted_at FROM subs WHERE sub = ?", sub) > 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM user_val_ids", NULL), 0);
	char sub2[SG_STORE_SUB_LEN + 1];
	assert_int_equal(sg_store_user_add(st, &u, sub2), SG_OK);
	assert_string_not_equal(sub2, sub);
	/* A tombstoned sub cannot be inserted again, even by hand. */
	char sql[160];
	snprintf(sql, sizeof sql, "INSERT INTO subs (sub, created_at) VALUES ('%s', 1)", sub);
	assert_int_not_equal(raw_exec(f->path, sql), SQLITE_OK);

	struct sg_store_user bad = {.name = "x"};
	assert_int_equal(sg_store_user_add(st, &bad, NULL), SG_ERR_INVALID);
	sg_store_close(st);
}

static void test_clients_and_valservers(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	char *uris[] = {"https://app.example/cb", "com.example.app:/oauth2redirect"};
	struct sg_store_client c = mk_client("simc-1", uris, 2);
	assert_int_equal(sg_store_client_add(st, &c), SG_OK);
	assert_int_equal(sg_store_client_add(st, &c), SG_ERR_EXISTS);

	struct sg_store_client g;
	assert_int_equal(sg_store_client_get(st, "simc-1", &g), SG_OK);
	assert_int_equal(g.n_redirect_uris, 2);
	assert_string_equal(g.redirect_uris[0], uris[0]); /* registration order kept */
	assert_string_equal(g.redirect_uris[1], uris[1]);
	assert_int_equal(g.secret_digest_len, 32);
	assert_memory_equal(g.secret_digest, c.secret_digest, 32);
	assert_string_equal(g.scopes, c.scopes);
	sg_store_client_clear(&g);
	unsigned char d2[32];
	memset(d2, 0x11, sizeof d2);
	assert_int_equal(sg_store_client_set_secret(st, "simc-1", d2, sizeof d2), SG_OK);
	assert_int_equal(sg_store_client_set_secret(st, "nope", d2, sizeof d2), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_client_get(st, "simc-1", &g), SG_OK);
	assert_memory_equal(g.secret_digest, d2, 32);
	sg_store_client_clear(&g);
	assert_int_equal(sg_store_client_get(st, "nope", &g), SG_ERR_NOTFOUND);

	char *svc[] = {"v2x", "uas", "v2x"};
	struct sg_store_valserver v = {.name = "v2x-app",
	                               .identity = "DNS:v2x-app",
	                               .val_services = svc,
	                               .n_val_services = 3,
	                               .scopes = "seal:gm seal:km seal:kp",
	                               .key_provisioning = 1};
	assert_int_equal(sg_store_valserver_add(st, &v), SG_OK);
	assert_int_equal(sg_store_valserver_add(st, &v), SG_ERR_EXISTS);
	/* client_id namespace shared between SIM-C clients and VAL servers */
	struct sg_store_valserver clash = v;
	clash.name = "simc-1";
	assert_int_equal(sg_store_valserver_add(st, &clash), SG_ERR_EXISTS);
	struct sg_store_client clash2 = mk_client("v2x-app", uris, 1);
	assert_int_equal(sg_store_client_add(st, &clash2), SG_ERR_EXISTS);

	struct sg_store_valserver gv;
	assert_int_equal(sg_store_valserver_get(st, "v2x-app", &gv), SG_OK);
	assert_string_equal(gv.identity, "DNS:v2x-app");
	assert_int_equal(gv.n_val_services, 2); /* duplicates collapse */
	assert_string_equal(gv.val_services[0], "uas");
	assert_string_equal(gv.val_services[1], "v2x");
	assert_int_equal(gv.key_provisioning, 1);
	assert_int_equal(gv.disabled, 0);
	sg_store_valserver_clear(&gv);
	assert_int_equal(sg_store_valserver_set_disabled(st, "v2x-app", 1), SG_OK);
	assert_int_equal(sg_store_valserver_get(st, "v2x-app", &gv), SG_OK);
	assert_int_equal(gv.disabled, 1);
	sg_store_valserver_clear(&gv);
	struct sg_store_valserver v2 = {.name = "uas-app", .identity = "URI:urn:uas"};
	assert_int_equal(sg_store_valserver_add(st, &v2), SG_OK);
	struct sg_store_valserver *vl = NULL;
	size_t n = 0;
	assert_int_equal(sg_store_valserver_list(st, &vl, &n), SG_OK);
	assert_int_equal(n, 2);
	assert_string_equal(vl[0].name, "uas-app");
	assert_int_equal(vl[0].n_val_services, 0);
	assert_string_equal(vl[1].name, "v2x-app");
	assert_int_equal(vl[1].n_val_services, 2);
	sg_store_valserver_list_free(vl, n);
	assert_int_equal(sg_store_valserver_delete(st, "v2x-app"), SG_OK);
	assert_int_equal(sg_store_valserver_delete(st, "v2x-app"), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_valserver_get(st, "v2x-app", &gv), SG_ERR_NOTFOUND);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM valserver_services", NULL), 0);

	struct sg_store_client c2 = mk_client("simc-2", uris, 1);
	assert_int_equal(sg_store_client_add(st, &c2), SG_OK);
	struct sg_store_client *cl = NULL;
	assert_int_equal(sg_store_client_list(st, &cl, &n), SG_OK);
	assert_int_equal(n, 2);
	assert_string_equal(cl[1].client_id, "simc-2");
	assert_int_equal(cl[1].n_redirect_uris, 1);
	sg_store_client_list_free(cl, n);

	/* Deleting a client removes its codes and refresh tokens. */
	int64_t now = sg_now_ms();
	struct sg_store_code code = {.digest = {1, 2, 3},
	                             .digest_len = 3,
	                             .client_id = "simc-2",
	                             .sub = "s",
	                             .redirect_uri = uris[0],
	                             .scope = "openid",
	                             .code_challenge = "ch",
	                             .expires_at = now + 60000,
	                             .grant_id = "g1"};
	assert_int_equal(sg_store_code_put(st, &code), SG_OK);
	assert_int_equal(sg_store_client_delete(st, "simc-2"), SG_OK);
	assert_int_equal(sg_store_client_delete(st, "simc-2"), SG_ERR_NOTFOUND);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM auth_codes", NULL), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM client_redirect_uris", NULL), 2);
	sg_store_close(st);
}

static void test_signing_keys_rotation(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	unsigned char blob[48];
	for (size_t i = 0; i < sizeof blob; i++)
		blob[i] = (unsigned char)i;
	struct sg_store_key k1 = {.kid = "k1",
	                          .alg = "ES256",
	                          .priv = blob,
	                          .priv_len = sizeof blob,
	                          .public_jwk = "{\"kty\":\"EC\",\"kid\":\"k1\"}",
	                          .created_at = 1000,
	                          .active = 1};
	assert_int_equal(sg_store_key_add(st, &k1, 3600000), SG_OK);
	assert_int_equal(sg_store_key_add(st, &k1, 3600000), SG_ERR_EXISTS);
	struct sg_store_key k2 = k1;
	k2.kid = "k2";
	k2.created_at = 2000;
	int64_t before = sg_now_ms();
	assert_int_equal(sg_store_key_add(st, &k2, 3600000), SG_OK);

	struct sg_store_key g;
	assert_int_equal(sg_store_key_get(st, "k1", &g), SG_OK);
	assert_int_equal(g.active, 0);
	assert_true(g.not_after_use >= before);
	assert_int_equal(g.retire_at, g.not_after_use + 3600000);
	assert_int_equal(g.priv_len, sizeof blob);
	assert_memory_equal(g.priv, blob, sizeof blob);
	assert_string_equal(g.alg, "ES256");
	sg_store_key_clear(&g);
	assert_null(g.priv);

	struct sg_store_key *kl = NULL;
	size_t n = 0;
	assert_int_equal(sg_store_key_list(st, &kl, &n), SG_OK);
	assert_int_equal(n, 2);
	assert_string_equal(kl[0].kid, "k2"); /* newest first */
	assert_int_equal(kl[0].active, 1);
	assert_int_equal(kl[0].not_after_use, 0);
	sg_store_key_list_free(kl, n);

	assert_int_equal(sg_store_key_retire(st, "k2", 99), SG_OK);
	assert_int_equal(sg_store_key_get(st, "k2", &g), SG_OK);
	assert_int_equal(g.active, 0);
	assert_int_equal(g.retire_at, 99);
	assert_true(g.not_after_use > 0);
	sg_store_key_clear(&g);
	assert_int_equal(sg_store_key_retire(st, "k9", 1), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_key_delete(st, "k1"), SG_OK);
	assert_int_equal(sg_store_key_get(st, "k1", &g), SG_ERR_NOTFOUND);
	sg_store_close(st);
}

static void test_code_single_use(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	add_simc(st);
	int64_t now = sg_now_ms();
	struct sg_store_code code = {.client_id = "simc",
	                             .sub = "SUB",
	                             .redirect_uri = "https://app/cb",
	                             .scope = "openid seal:gm",
	                             .nonce = "n-1",
	                             .code_challenge =
	                                 "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
	                             .acr = "3gpp:acr:password",
	                             .auth_time = now - 1000,
	                             .expires_at = now + 60000,
	                             .grant_id = "grant-A"};
	memset(code.digest, 0x42, 32);
	code.digest_len = 32;
	assert_int_equal(sg_store_code_put(st, &code), SG_OK);
	assert_int_equal(sg_store_code_put(st, &code), SG_ERR_EXISTS);

	struct sg_store_code out;
	enum sg_store_use use = -1;
	assert_int_equal(sg_store_code_consume(st, code.digest, 32, now, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_OK);
	assert_string_equal(out.client_id, "simc");
	assert_string_equal(out.sub, "SUB");
	assert_string_equal(out.nonce, "n-1");
	assert_string_equal(out.code_challenge, code.code_challenge);
	assert_string_equal(out.acr, "3gpp:acr:password");
	assert_int_equal(out.auth_time, now - 1000);
	assert_string_equal(out.grant_id, "grant-A");
	assert_int_equal(out.used_at, now);
	sg_store_code_clear(&out);
	/* Replay: reported with the grant id so the caller revokes what the first use issued. */
	assert_int_equal(sg_store_code_consume(st, code.digest, 32, now + 1, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_REPLAY);
	assert_string_equal(out.grant_id, "grant-A");
	assert_int_equal(out.used_at, now);
	sg_store_code_clear(&out);

	/* Expired: refused and left unused. */
	struct sg_store_code old = code;
	memset(old.digest, 0x43, 32);
	old.expires_at = now - 1;
	old.grant_id = "grant-B";
	old.nonce = NULL;
	assert_int_equal(sg_store_code_put(st, &old), SG_OK);
	assert_int_equal(sg_store_code_consume(st, old.digest, 32, now, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_EXPIRED);
	assert_null(out.nonce);
	assert_int_equal(out.used_at, 0);
	sg_store_code_clear(&out);
	assert_int_equal(
	    raw_int(f->path, "SELECT count(*) FROM auth_codes WHERE used_at = 0", NULL), 1);

	unsigned char unknown[32] = {0};
	assert_int_equal(sg_store_code_consume(st, unknown, 32, now, &out, &use), SG_ERR_NOTFOUND);
	/* A code for an unknown client is refused. */
	struct sg_store_code orphan = code;
	memset(orphan.digest, 0x44, 32);
	orphan.client_id = "ghost";
	assert_int_equal(sg_store_code_put(st, &orphan), SG_ERR_NOTFOUND);

	uint64_t purged = 0;
	assert_int_equal(sg_store_purge(st, now, 0, &purged), SG_OK);
	assert_int_equal(purged, 1); /* the expired unused code */
	/* the used one stays while a replay still revokes: a day past its own expiry, however
	 * long its grant lives on */
	struct sg_store_refresh rt = {.digest_len = 32,
	                              .grant_id = "grant-A",
	                              .client_id = "simc",
	                              .sub = "SUB",
	                              .scope = "openid",
	                              .expires_at = code.expires_at + 2 * 86400000LL};
	memset(rt.digest, 0x71, 32);
	assert_int_equal(sg_store_refresh_put(st, &rt), SG_OK);
	int64_t day = 86400000;
	assert_int_equal(sg_store_purge(st, code.expires_at + day - 1, 0, &purged), SG_OK);
	assert_int_equal(purged, 0);
	assert_int_equal(
	    sg_store_code_consume(st, code.digest, 32, code.expires_at + day - 1, &out, &use),
	    SG_OK);
	assert_int_equal(use, SG_STORE_USE_REPLAY);
	sg_store_code_clear(&out);
	assert_int_equal(sg_store_purge(st, code.expires_at + day, 0, &purged), SG_OK);
	assert_int_equal(purged, 1); /* the code; its grant's refresh token lives on */
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM auth_codes", NULL), 0);
	assert_int_equal(sg_store_purge(st, rt.expires_at + day - 1, 0, &purged), SG_OK);
	assert_int_equal(purged, 0);
	assert_int_equal(sg_store_purge(st, rt.expires_at + day, 0, &purged), SG_OK);
	assert_int_equal(purged, 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM refresh_tokens", NULL), 0);
	sg_store_close(st);
}

static void test_refresh_rotation_and_revocation(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	add_simc(st);
	int64_t now = sg_now_ms();
	struct sg_store_refresh r1 = {.digest = {1},
	                              .digest_len = 32,
	                              .grant_id = "fam-1",
	                              .client_id = "simc",
	                              .sub = "SUB",
	                              .scope = "openid seal:km",
	                              .expires_at = now + 86400000};
	assert_int_equal(sg_store_refresh_put(st, &r1), SG_OK);
	struct sg_store_refresh out;
	enum sg_store_use use;
	assert_int_equal(sg_store_refresh_consume(st, r1.digest, 32, now, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_OK);
	assert_string_equal(out.grant_id, "fam-1");
	assert_string_equal(out.scope, "openid seal:km");
	sg_store_refresh_clear(&out);
	struct sg_store_refresh r2 = r1;
	r2.digest[0] = 2;
	assert_int_equal(sg_store_refresh_put(st, &r2), SG_OK);
	/* Reuse of the rotated token is detected; the caller then revokes the family. */
	assert_int_equal(sg_store_refresh_consume(st, r1.digest, 32, now + 5, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_REPLAY);
	assert_string_equal(out.grant_id, "fam-1");
	sg_store_refresh_clear(&out);
	int rv = -1;
	assert_int_equal(sg_store_grant_is_revoked(st, "fam-1", &rv), SG_OK);
	assert_int_equal(rv, 0);
	assert_int_equal(sg_store_grant_revoke(st, "fam-1", now + 6, now + 600000), SG_OK);
	assert_int_equal(sg_store_grant_revoke(st, "fam-1", now + 7, now + 300000), SG_OK);
	assert_int_equal(sg_store_grant_is_revoked(st, "fam-1", &rv), SG_OK);
	assert_int_equal(rv, 1);
	assert_int_equal(sg_store_refresh_consume(st, r2.digest, 32, now + 8, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_REVOKED);
	sg_store_refresh_clear(&out);
	/* A token added to a revoked family after the revocation is refused as well. */
	struct sg_store_refresh r3 = r1;
	r3.digest[0] = 3;
	assert_int_equal(sg_store_refresh_put(st, &r3), SG_OK);
	assert_int_equal(sg_store_refresh_consume(st, r3.digest, 32, now + 9, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_REVOKED);
	sg_store_refresh_clear(&out);

	/* Expired token of another family. */
	struct sg_store_refresh r4 = r1;
	r4.digest[0] = 4;
	r4.grant_id = "fam-2";
	r4.expires_at = now - 1;
	assert_int_equal(sg_store_refresh_put(st, &r4), SG_OK);
	assert_int_equal(sg_store_refresh_consume(st, r4.digest, 32, now, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_EXPIRED);
	sg_store_refresh_clear(&out);
	unsigned char unk[32] = {9};
	assert_int_equal(sg_store_refresh_consume(st, unk, 32, now, &out, &use), SG_ERR_NOTFOUND);

	/* Revoked access tokens. */
	assert_int_equal(sg_store_jti_revoke(st, "jti-1", now + 10, now + 60000), SG_OK);
	assert_int_equal(sg_store_jti_revoke(st, "jti-1", now + 11, now + 60000), SG_OK);
	assert_int_equal(sg_store_jti_revoke(st, "jti-old", now - 10, now - 5), SG_OK);
	struct sg_store_revoked *rl = NULL;
	size_t n = 0;
	assert_int_equal(sg_store_revoked_list(st, 0, now, &rl, &n), SG_OK);
	assert_int_equal(n, 2);
	assert_int_equal(rl[0].kind, SG_STORE_REVOKED_GRANT);
	assert_string_equal(rl[0].id, "fam-1");
	assert_int_equal(rl[0].expires_at, now + 600000); /* the later expiry is kept */
	assert_int_equal(rl[1].kind, SG_STORE_REVOKED_JTI);
	assert_string_equal(rl[1].id, "jti-1");
	assert_int_equal(rl[1].revoked_at, now + 10);
	sg_store_revoked_list_free(rl, n);
	assert_int_equal(sg_store_revoked_list(st, now + 10, now, &rl, &n), SG_OK);
	assert_int_equal(n, 1);
	sg_store_revoked_list_free(rl, n);

	/* fam-3 refreshes on: rA rotated (its own expiry is near), rB alive for three days */
	struct sg_store_refresh ra = r1, rb = r1;
	ra.digest[0] = 0xa;
	ra.grant_id = rb.grant_id = "fam-3";
	ra.expires_at = now + 1000;
	rb.digest[0] = 0xb;
	rb.expires_at = now + 3 * 86400000LL;
	assert_int_equal(sg_store_refresh_put(st, &ra), SG_OK);
	assert_int_equal(sg_store_refresh_consume(st, ra.digest, 32, now, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_OK);
	sg_store_refresh_clear(&out);
	assert_int_equal(sg_store_refresh_put(st, &rb), SG_OK);

	uint64_t purged = 0;
	assert_int_equal(sg_store_purge(st, now, 0, &purged), SG_OK);
	assert_int_equal(purged, 1); /* jti-old; r4 stays a day, for replay detection */
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM revoked", NULL), 2);
	assert_int_equal(sg_store_purge(st, now - 1 + 86400000, 0, &purged), SG_OK);
	assert_int_equal(purged, 2); /* r4 (fam-2 has no other token) and jti-1 */
	assert_int_equal(
	    raw_int(f->path, "SELECT count(*) FROM refresh_tokens WHERE grant_id = 'fam-2'", NULL),
	    0);
	/* fam-1's tokens live: they and the grant's revocation (which refuses r3) stay */
	assert_int_equal(
	    raw_int(f->path, "SELECT count(*) FROM refresh_tokens WHERE grant_id = 'fam-1'", NULL),
	    3);
	assert_int_equal(
	    sg_store_refresh_consume(st, r3.digest, 32, now + 86400000 - 2, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_REVOKED);
	sg_store_refresh_clear(&out);
	/* rA's replay is detected up to a day past its own expiry; then it is deleted although
	 * its grant lives on (a grant that keeps refreshing does not keep every token it
	 * rotated), and a replay finds nothing */
	assert_int_equal(
	    sg_store_refresh_consume(st, ra.digest, 32, now + 1000 + 86400000 - 1, &out, &use),
	    SG_OK);
	assert_int_equal(use, SG_STORE_USE_REPLAY);
	sg_store_refresh_clear(&out);
	assert_int_equal(sg_store_purge(st, now + 1000 + 86400000, 0, &purged), SG_OK);
	assert_int_equal(purged, 1);
	assert_int_equal(
	    sg_store_refresh_consume(st, ra.digest, 32, now + 1000 + 86400000, &out, &use),
	    SG_ERR_NOTFOUND);
	assert_int_equal(
	    raw_int(f->path, "SELECT count(*) FROM refresh_tokens WHERE grant_id = 'fam-3'", NULL),
	    1);
	assert_int_equal(sg_store_purge(st, now + 2 * 86400000, 0, &purged), SG_OK);
	assert_int_equal(purged, 4); /* fam-1's three tokens, then its revocation */
	assert_int_equal(
	    sg_store_refresh_consume(st, rb.digest, 32, now + 2 * 86400000, &out, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_OK);
	sg_store_refresh_clear(&out);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM revoked", NULL), 0);
	sg_store_close(st);
}

/* ---- grants of a client or of a user ---- */

static struct sg_store_code mk_code(unsigned char tag, const char *client_id, const char *sub,
                                    const char *grant_id, int64_t expires_at)
{
	struct sg_store_code c = {.client_id = (char *)client_id,
	                          .sub = (char *)sub,
	                          .redirect_uri = "https://app/cb",
	                          .scope = "openid",
	                          .code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
	                          .acr = "3gpp:acr:password",
	                          .expires_at = expires_at,
	                          .grant_id = (char *)grant_id};
	memset(c.digest, tag, 32);
	c.digest_len = 32;
	return c;
}

static void put_code(struct sg_store *st, unsigned char tag, const char *client_id, const char *sub,
                     const char *grant_id, int64_t expires_at)
{
	struct sg_store_code c = mk_code(tag, client_id, sub, grant_id, expires_at);
	assert_int_equal(sg_store_code_put(st, &c), SG_OK);
}

static struct sg_store_refresh mk_refresh(unsigned char tag, const char *client_id, const char *sub,
                                          const char *grant_id, int64_t expires_at)
{
	struct sg_store_refresh r = {.grant_id = (char *)grant_id,
	                             .client_id = (char *)client_id,
	                             .sub = (char *)sub,
	                             .scope = "openid seal:km",
	                             .expires_at = expires_at};
	memset(r.digest, tag, 32);
	r.digest_len = 32;
	return r;
}

static void put_refresh(struct sg_store *st, unsigned char tag, const char *client_id,
                        const char *sub, const char *grant_id, int64_t expires_at)
{
	struct sg_store_refresh r = mk_refresh(tag, client_id, sub, grant_id, expires_at);
	assert_int_equal(sg_store_refresh_put(st, &r), SG_OK);
}

/* Consumes the code tagged tag; checks the outcome and, when used_at is non-zero, when it was
 * marked used. */
static void expect_code(struct sg_store *st, unsigned char tag, int64_t now, enum sg_store_use want,
                        int64_t used_at, const char *grant_id)
{
	unsigned char d[32];
	memset(d, tag, sizeof d);
	struct sg_store_code out;
	enum sg_store_use use = (enum sg_store_use) - 1;
	assert_int_equal(sg_store_code_consume(st, d, 32, now, &out, &use), SG_OK);
	assert_int_equal(use, want);
	assert_string_equal(out.grant_id, grant_id);
	if (used_at)
		assert_int_equal(out.used_at, used_at);
	sg_store_code_clear(&out);
}

static void expect_refresh(struct sg_store *st, unsigned char tag, int64_t now,
                           enum sg_store_use want, const char *grant_id)
{
	unsigned char d[32];
	memset(d, tag, sizeof d);
	struct sg_store_refresh out;
	enum sg_store_use use = (enum sg_store_use) - 1;
	assert_int_equal(sg_store_refresh_consume(st, d, 32, now, &out, &use), SG_OK);
	assert_int_equal(use, want);
	assert_string_equal(out.grant_id, grant_id);
	sg_store_refresh_clear(&out);
}

static int64_t raw_code_used_at(const char *path, unsigned char tag)
{
	char sql[128];
	snprintf(sql, sizeof sql, "SELECT used_at FROM auth_codes WHERE hex(digest) LIKE '%02X%%'",
	         tag);
	return raw_int(path, sql, NULL);
}

static int64_t raw_refresh_revoked(const char *path, unsigned char tag)
{
	char sql[128];
	snprintf(sql, sizeof sql,
	         "SELECT revoked FROM refresh_tokens WHERE hex(digest) LIKE '%02X%%'", tag);
	return raw_int(path, sql, NULL);
}

static int is_revoked(struct sg_store *st, const char *grant_id)
{
	int rv = -1;
	assert_int_equal(sg_store_grant_is_revoked(st, grant_id, &rv), SG_OK);
	return rv;
}

/* Two clients (cli-a, cli-b), two users (alice, bob), grants spread over both. */
struct grants_fx {
	char alice[SG_STORE_SUB_LEN + 1], bob[SG_STORE_SUB_LEN + 1];
	int64_t now;
};

enum {
	T_A_ALICE1_CODE = 0x11, /* g-a-alice-1: unused code + refresh token */
	T_A_ALICE1_RT = 0x12,
	T_A_ALICE2_CODE = 0x21, /* g-a-alice-2: code already used + refresh token */
	T_A_ALICE2_RT = 0x22,
	T_A_BOB_RT = 0x31, /* g-a-bob: refresh tokens only (two rotations) */
	T_A_BOB_RT2 = 0x32,
	T_A_BOB_CODE = 0x41,   /* g-a-bob-code: unused code only */
	T_B_ALICE_CODE = 0x51, /* g-b-alice: unused code + refresh token */
	T_B_ALICE_RT = 0x52,
	T_B_BOB_CODE = 0x61, /* g-b-bob: unused code + refresh token */
	T_B_BOB_RT = 0x62,
};

static void grants_setup(struct sg_store *st, struct grants_fx *g)
{
	char *uris[] = {"https://app/cb"};
	struct sg_store_client ca = mk_client("cli-a", uris, 1);
	struct sg_store_client cb = mk_client("cli-b", uris, 1);
	assert_int_equal(sg_store_client_add(st, &ca), SG_OK);
	assert_int_equal(sg_store_client_add(st, &cb), SG_OK);
	struct sg_store_user ua = {.name = "alice", .password_hash = "h"};
	struct sg_store_user ub = {.name = "bob", .password_hash = "h"};
	assert_int_equal(sg_store_user_add(st, &ua, g->alice), SG_OK);
	assert_int_equal(sg_store_user_add(st, &ub, g->bob), SG_OK);
	int64_t now = g->now = sg_now_ms();
	int64_t cexp = now + 60000, rexp = now + 86400000;

	put_code(st, T_A_ALICE1_CODE, "cli-a", g->alice, "g-a-alice-1", cexp);
	put_refresh(st, T_A_ALICE1_RT, "cli-a", g->alice, "g-a-alice-1", rexp);
	put_code(st, T_A_ALICE2_CODE, "cli-a", g->alice, "g-a-alice-2", cexp);
	expect_code(st, T_A_ALICE2_CODE, now, SG_STORE_USE_OK, now, "g-a-alice-2");
	put_refresh(st, T_A_ALICE2_RT, "cli-a", g->alice, "g-a-alice-2", rexp);
	put_refresh(st, T_A_BOB_RT, "cli-a", g->bob, "g-a-bob", rexp);
	expect_refresh(st, T_A_BOB_RT, now, SG_STORE_USE_OK, "g-a-bob"); /* rotated */
	put_refresh(st, T_A_BOB_RT2, "cli-a", g->bob, "g-a-bob", rexp);
	put_code(st, T_A_BOB_CODE, "cli-a", g->bob, "g-a-bob-code", cexp);
	put_code(st, T_B_ALICE_CODE, "cli-b", g->alice, "g-b-alice", cexp);
	put_refresh(st, T_B_ALICE_RT, "cli-b", g->alice, "g-b-alice", rexp);
	put_code(st, T_B_BOB_CODE, "cli-b", g->bob, "g-b-bob", cexp);
	put_refresh(st, T_B_BOB_RT, "cli-b", g->bob, "g-b-bob", rexp);
}

static void test_grants_revoke_of_client(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	struct grants_fx g;
	grants_setup(st, &g);
	int64_t now = g.now, at = now + 10, until = now + 3600000;

	size_t n = 99;
	assert_int_equal(sg_store_grants_revoke_of(st, "cli-a", NULL, at, until, &n), SG_OK);
	assert_int_equal(n, 4);

	/* Exactly cli-a's grants are on the revocation list, as grants, until `until`. */
	struct sg_store_revoked *rl = NULL;
	size_t nl = 0;
	assert_int_equal(sg_store_revoked_list(st, 0, now, &rl, &nl), SG_OK);
	assert_int_equal(nl, 4);
	static const char *const want[] = {"g-a-alice-1", "g-a-alice-2", "g-a-bob",
	                                   "g-a-bob-code"}; /* ordered by id */
	for (size_t i = 0; i < nl; i++) {
		assert_int_equal(rl[i].kind, SG_STORE_REVOKED_GRANT);
		assert_string_equal(rl[i].id, want[i]);
		assert_int_equal(rl[i].revoked_at, at);
		assert_int_equal(rl[i].expires_at, until);
	}
	sg_store_revoked_list_free(rl, nl);
	assert_int_equal(is_revoked(st, "g-b-alice"), 0);
	assert_int_equal(is_revoked(st, "g-b-bob"), 0);

	/* cli-b is untouched: refresh tokens not revoked, codes unused. */
	assert_int_equal(raw_refresh_revoked(f->path, T_B_ALICE_RT), 0);
	assert_int_equal(raw_refresh_revoked(f->path, T_B_BOB_RT), 0);
	assert_int_equal(raw_code_used_at(f->path, T_B_ALICE_CODE), 0);
	assert_int_equal(raw_code_used_at(f->path, T_B_BOB_CODE), 0);
	assert_int_equal(raw_int(f->path,
	                         "SELECT count(*) FROM refresh_tokens WHERE revoked = 1 "
	                         "AND client_id = 'cli-b'",
	                         NULL),
	                 0);

	/* cli-a's refresh tokens (rotated ones too) are refused as revoked. */
	expect_refresh(st, T_A_ALICE1_RT, at + 1, SG_STORE_USE_REVOKED, "g-a-alice-1");
	expect_refresh(st, T_A_ALICE2_RT, at + 1, SG_STORE_USE_REVOKED, "g-a-alice-2");
	expect_refresh(st, T_A_BOB_RT, at + 1, SG_STORE_USE_REVOKED, "g-a-bob");
	expect_refresh(st, T_A_BOB_RT2, at + 1, SG_STORE_USE_REVOKED, "g-a-bob");
	/* Its unused codes were marked used at the revocation; a used one keeps its first use. */
	expect_code(st, T_A_ALICE1_CODE, at + 1, SG_STORE_USE_REPLAY, at, "g-a-alice-1");
	expect_code(st, T_A_BOB_CODE, at + 1, SG_STORE_USE_REPLAY, at, "g-a-bob-code");
	expect_code(st, T_A_ALICE2_CODE, at + 1, SG_STORE_USE_REPLAY, now, "g-a-alice-2");

	/* Consuming cli-b's credentials still works. */
	expect_code(st, T_B_ALICE_CODE, at + 2, SG_STORE_USE_OK, at + 2, "g-b-alice");
	expect_refresh(st, T_B_ALICE_RT, at + 2, SG_STORE_USE_OK, "g-b-alice");
	expect_code(st, T_B_BOB_CODE, at + 2, SG_STORE_USE_OK, at + 2, "g-b-bob");
	expect_refresh(st, T_B_BOB_RT, at + 2, SG_STORE_USE_OK, "g-b-bob");
	sg_store_close(st);
}

static void test_grants_revoke_of_user(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	struct grants_fx g;
	grants_setup(st, &g);
	int64_t now = g.now, at = now + 10, until = now + 3600000;

	size_t n = 99;
	assert_int_equal(sg_store_grants_revoke_of(st, NULL, g.alice, at, until, &n), SG_OK);
	assert_int_equal(n, 3);
	struct sg_store_revoked *rl = NULL;
	size_t nl = 0;
	assert_int_equal(sg_store_revoked_list(st, 0, now, &rl, &nl), SG_OK);
	assert_int_equal(nl, 3);
	static const char *const want[] = {"g-a-alice-1", "g-a-alice-2", "g-b-alice"};
	for (size_t i = 0; i < nl; i++) {
		assert_int_equal(rl[i].kind, SG_STORE_REVOKED_GRANT);
		assert_string_equal(rl[i].id, want[i]);
		assert_int_equal(rl[i].revoked_at, at);
		assert_int_equal(rl[i].expires_at, until);
	}
	sg_store_revoked_list_free(rl, nl);

	/* bob's grants, at either client, are untouched. */
	assert_int_equal(is_revoked(st, "g-a-bob"), 0);
	assert_int_equal(is_revoked(st, "g-a-bob-code"), 0);
	assert_int_equal(is_revoked(st, "g-b-bob"), 0);
	assert_int_equal(raw_refresh_revoked(f->path, T_A_BOB_RT2), 0);
	assert_int_equal(raw_refresh_revoked(f->path, T_B_BOB_RT), 0);
	assert_int_equal(raw_code_used_at(f->path, T_A_BOB_CODE), 0);
	assert_int_equal(raw_code_used_at(f->path, T_B_BOB_CODE), 0);

	/* alice's credentials at both clients are dead. */
	expect_refresh(st, T_A_ALICE1_RT, at + 1, SG_STORE_USE_REVOKED, "g-a-alice-1");
	expect_refresh(st, T_A_ALICE2_RT, at + 1, SG_STORE_USE_REVOKED, "g-a-alice-2");
	expect_refresh(st, T_B_ALICE_RT, at + 1, SG_STORE_USE_REVOKED, "g-b-alice");
	expect_code(st, T_A_ALICE1_CODE, at + 1, SG_STORE_USE_REPLAY, at, "g-a-alice-1");
	expect_code(st, T_B_ALICE_CODE, at + 1, SG_STORE_USE_REPLAY, at, "g-b-alice");
	expect_code(st, T_A_ALICE2_CODE, at + 1, SG_STORE_USE_REPLAY, now, "g-a-alice-2");

	/* bob's still work. */
	expect_refresh(st, T_A_BOB_RT2, at + 2, SG_STORE_USE_OK, "g-a-bob");
	expect_code(st, T_A_BOB_CODE, at + 2, SG_STORE_USE_OK, at + 2, "g-a-bob-code");
	expect_code(st, T_B_BOB_CODE, at + 2, SG_STORE_USE_OK, at + 2, "g-b-bob");
	expect_refresh(st, T_B_BOB_RT, at + 2, SG_STORE_USE_OK, "g-b-bob");
	sg_store_close(st);
}

static void test_grants_revoke_of_again_and_overlap(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	struct grants_fx g;
	grants_setup(st, &g);
	int64_t now = g.now, at = now + 10, until = now + 3600000;
	size_t n = 99;
	assert_int_equal(sg_store_grants_revoke_of(st, "cli-a", NULL, at, until, &n), SG_OK);
	assert_int_equal(n, 4);

	/* Again, later and with an earlier expiry: harmless. The grants are recorded again (the
	 * count is of the grants found, as for sg_store_grant_revoke, idempotent), the first
	 * revocation time and the later expiry are kept, used codes keep their used_at. */
	n = 99;
	assert_int_equal(sg_store_grants_revoke_of(st, "cli-a", NULL, at + 5, until - 1000, &n),
	                 SG_OK);
	assert_int_equal(n, 4);
	struct sg_store_revoked *rl = NULL;
	size_t nl = 0;
	assert_int_equal(sg_store_revoked_list(st, 0, now, &rl, &nl), SG_OK);
	assert_int_equal(nl, 4);
	for (size_t i = 0; i < nl; i++) {
		assert_int_equal(rl[i].kind, SG_STORE_REVOKED_GRANT);
		assert_int_equal(rl[i].revoked_at, at);
		assert_int_equal(rl[i].expires_at, until);
	}
	sg_store_revoked_list_free(rl, nl);
	assert_int_equal(raw_code_used_at(f->path, T_A_ALICE1_CODE), at);
	assert_int_equal(raw_code_used_at(f->path, T_A_ALICE2_CODE), now);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM revoked", NULL), 4);

	/* Then alice, overlapping cli-a: only g-b-alice is new; the later expiry wins. */
	n = 99;
	assert_int_equal(sg_store_grants_revoke_of(st, NULL, g.alice, at + 20, until + 5000, &n),
	                 SG_OK);
	assert_int_equal(n, 3);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM revoked", NULL), 5);
	assert_int_equal(
	    raw_int(f->path, "SELECT expires_at FROM revoked WHERE id = ?", "g-a-alice-1"),
	    until + 5000);
	assert_int_equal(
	    raw_int(f->path, "SELECT revoked_at FROM revoked WHERE id = ?", "g-a-alice-1"), at);
	assert_int_equal(raw_int(f->path, "SELECT expires_at FROM revoked WHERE id = ?", "g-a-bob"),
	                 until);
	assert_int_equal(
	    raw_int(f->path, "SELECT revoked_at FROM revoked WHERE id = ?", "g-b-alice"), at + 20);
	expect_refresh(st, T_B_ALICE_RT, at + 21, SG_STORE_USE_REVOKED, "g-b-alice");
	assert_int_equal(is_revoked(st, "g-b-bob"), 0);

	/* In the caller's transaction: rolled back with it. */
	assert_int_equal(sg_store_tx_begin(st), SG_OK);
	assert_int_equal(sg_store_grants_revoke_of(st, NULL, g.bob, at + 30, until, &n), SG_OK);
	assert_int_equal(n, 3); /* g-a-bob, g-a-bob-code, g-b-bob */
	assert_int_equal(sg_store_tx_rollback(st), SG_OK);
	assert_int_equal(is_revoked(st, "g-b-bob"), 0);
	assert_int_equal(raw_refresh_revoked(f->path, T_B_BOB_RT), 0);
	assert_int_equal(raw_code_used_at(f->path, T_B_BOB_CODE), 0);
	expect_refresh(st, T_B_BOB_RT, at + 31, SG_STORE_USE_OK, "g-b-bob");
	sg_store_close(st);
}

static void test_grants_revoke_of_nothing(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	int64_t now = sg_now_ms();
	size_t n = 99;
	/* Empty store. */
	assert_int_equal(sg_store_grants_revoke_of(st, "cli-a", NULL, now, now + 60000, &n), SG_OK);
	assert_int_equal(n, 0);
	n = 99;
	assert_int_equal(sg_store_grants_revoke_of(st, NULL, "no-such-sub", now, now + 60000, &n),
	                 SG_OK);
	assert_int_equal(n, 0);
	assert_int_equal(sg_store_grants_revoke_of(st, "cli-a", NULL, now, now + 60000, NULL),
	                 SG_OK);

	/* A store with grants, but none of this client or user. */
	struct grants_fx g;
	grants_setup(st, &g);
	char *uris[] = {"https://app/cb"};
	struct sg_store_client cc = mk_client("cli-c", uris, 1);
	assert_int_equal(sg_store_client_add(st, &cc), SG_OK);
	struct sg_store_user uc = {.name = "carol", .password_hash = "h"};
	char carol[SG_STORE_SUB_LEN + 1];
	assert_int_equal(sg_store_user_add(st, &uc, carol), SG_OK);
	n = 99;
	assert_int_equal(sg_store_grants_revoke_of(st, "cli-c", NULL, now, now + 60000, &n), SG_OK);
	assert_int_equal(n, 0);
	n = 99;
	assert_int_equal(sg_store_grants_revoke_of(st, NULL, carol, now, now + 60000, &n), SG_OK);
	assert_int_equal(n, 0);
	struct sg_store_revoked *rl = NULL;
	size_t nl = 9;
	assert_int_equal(sg_store_revoked_list(st, 0, now, &rl, &nl), SG_OK);
	assert_int_equal(nl, 0);
	sg_store_revoked_list_free(rl, nl);
	assert_int_equal(
	    raw_int(f->path, "SELECT count(*) FROM refresh_tokens WHERE revoked = 1", NULL), 0);
	assert_int_equal(
	    raw_int(f->path, "SELECT count(*) FROM auth_codes WHERE used_at = 0", NULL),
	    4); /* g-a-alice-2's was used before */

	/* Exactly one of client_id and sub. */
	n = 99;
	assert_int_equal(sg_store_grants_revoke_of(st, "cli-a", g.alice, now, now + 60000, &n),
	                 SG_ERR_INVALID);
	assert_int_equal(n, 0);
	assert_int_equal(sg_store_grants_revoke_of(st, NULL, NULL, now, now + 60000, &n),
	                 SG_ERR_INVALID);
	assert_int_equal(sg_store_grants_revoke_of(st, "", "", now, now + 60000, &n),
	                 SG_ERR_INVALID);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM revoked", NULL), 0);
	sg_store_close(st);
}

static void test_audit_append_only(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	struct sg_store_audit a = {.ts = 5,
	                           .actor = "cli",
	                           .action = "user.add",
	                           .object = "user:alice",
	                           .refpoint = NULL,
	                           .detail = "{\"val_ids\":1}"};
	assert_int_equal(sg_store_audit_append(st, &a), SG_OK);
	a.action = "client.add";
	a.refpoint = "SEAL-UU";
	assert_int_equal(sg_store_audit_append(st, &a), SG_OK);
	struct sg_store_audit *v = NULL;
	size_t n = 0;
	assert_int_equal(sg_store_audit_list(st, 0, 0, &v, &n), SG_OK);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].ts, 5);
	assert_string_equal(v[0].action, "user.add");
	assert_null(v[0].refpoint);
	assert_string_equal(v[1].refpoint, "SEAL-UU");
	int64_t first = v[0].id;
	sg_store_audit_list_free(v, n);
	assert_int_equal(sg_store_audit_list(st, first, 10, &v, &n), SG_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].action, "client.add");
	sg_store_audit_list_free(v, n);
	assert_int_not_equal(raw_exec(f->path, "UPDATE audit SET detail = 'x'"), SQLITE_OK);
	assert_int_not_equal(raw_exec(f->path, "DELETE FROM audit"), SQLITE_OK);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit", NULL), 2);
	sg_store_close(st);
}

/* Retention: the oldest rows by age or beyond a cap, in batches; no other delete gets through. */
static void test_audit_prune(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	struct sg_store_audit a = {.actor = "cli", .action = "user.add"};
	for (int i = 1; i <= 10; i++) {
		a.ts = i * 1000;
		assert_int_equal(sg_store_audit_append(st, &a), SG_OK);
	}
	uint64_t n = 99;
	assert_int_equal(sg_store_audit_prune(st, 0, 0, 0, &n), SG_OK);
	assert_int_equal(n, 0); /* no rule: nothing */
	assert_int_equal(sg_store_audit_prune(st, 4000, 0, 0, &n), SG_OK);
	assert_int_equal(n, 3); /* ts 1000..3000 */
	assert_int_equal(sg_store_audit_prune(st, 0, 5, 1, &n), SG_OK);
	assert_int_equal(n, 1); /* 7 rows over a cap of 5, one batch of 1 */
	assert_int_equal(sg_store_audit_prune(st, 0, 5, 0, &n), SG_OK);
	assert_int_equal(n, 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit", NULL), 5);
	assert_int_equal(raw_int(f->path, "SELECT min(ts) FROM audit", NULL), 6000);
	/* both rules: the further cut wins */
	assert_int_equal(sg_store_audit_prune(st, 7000, 4, 0, &n), SG_OK);
	assert_int_equal(n, 1);
	assert_int_equal(sg_store_audit_prune(st, 8000, 0, 0, &n), SG_OK);
	assert_int_equal(n, 1);
	assert_int_equal(raw_int(f->path, "SELECT min(ts) FROM audit", NULL), 8000);
	/* everything older: all go; new rows go on with higher ids */
	assert_int_equal(sg_store_audit_prune(st, 20000, 0, 0, &n), SG_OK);
	assert_int_equal(n, 3);
	int64_t last =
	    raw_int(f->path, "SELECT seq FROM sqlite_sequence WHERE name = 'audit'", NULL);
	/* a prefix of the id order: a row older than the cut behind a newer one stays with it */
	const int64_t ts[] = {100000, 5000, 200000};
	for (size_t i = 0; i < 3; i++) {
		a.ts = ts[i];
		assert_int_equal(sg_store_audit_append(st, &a), SG_OK);
	}
	assert_int_equal(raw_int(f->path, "SELECT min(id) FROM audit", NULL), last + 1);
	assert_int_equal(sg_store_audit_prune(st, 50000, 0, 0, &n), SG_OK);
	assert_int_equal(n, 0);
	assert_int_equal(sg_store_audit_prune(st, 150000, 0, 0, &n), SG_OK);
	assert_int_equal(n, 2);
	/* the flag never outlives the prune, and other deletes are still refused */
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit_prune", NULL), 0);
	assert_int_not_equal(raw_exec(f->path, "DELETE FROM audit"), SQLITE_OK);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit", NULL), 1);
	sg_store_close(st);
}

static void test_transactions(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	struct sg_store_user u = {.name = "a", .password_hash = "h"};
	assert_int_equal(sg_store_tx_begin(st), SG_OK);
	assert_int_equal(sg_store_user_add(st, &u, NULL), SG_OK);
	u.name = "b";
	assert_int_equal(sg_store_user_add(st, &u, NULL), SG_OK);
	assert_int_equal(sg_store_tx_rollback(st), SG_OK);
	struct sg_store_user *l = NULL;
	size_t n = 9;
	assert_int_equal(sg_store_user_list(st, &l, &n), SG_OK);
	assert_int_equal(n, 0);
	/* Nested: a failed inner level rolls back alone. */
	assert_int_equal(sg_store_tx_begin(st), SG_OK);
	assert_int_equal(sg_store_user_add(st, &u, NULL), SG_OK);
	assert_int_equal(sg_store_tx_begin(st), SG_OK);
	u.name = "c";
	assert_int_equal(sg_store_user_add(st, &u, NULL), SG_OK);
	assert_int_equal(sg_store_tx_rollback(st), SG_OK);
	u.name = "b";
	assert_int_equal(sg_store_user_add(st, &u, NULL), SG_ERR_EXISTS); /* op failure */
	assert_int_equal(sg_store_tx_commit(st), SG_OK);
	assert_int_equal(sg_store_user_list(st, &l, &n), SG_OK);
	assert_int_equal(n, 1);
	assert_string_equal(l[0].name, "b");
	sg_store_user_list_free(l, n);
	assert_int_equal(sg_store_tx_commit(st), SG_ERR_INVALID);
	sg_store_close(st);
}

static void test_migrations_idempotent_and_newer_refused(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	struct sg_store_user u = {.name = "keep", .password_hash = "h"};
	assert_int_equal(sg_store_user_add(st, &u, NULL), SG_OK);
	sg_store_close(st);
	for (int i = 0; i < 2; i++) {
		st = open_ok(f->path);
		int v = 0;
		assert_int_equal(sg_store_schema_version(st, &v), SG_OK);
		assert_int_equal(v, SG_STORE_SCHEMA_VERSION);
		struct sg_store_user g;
		assert_int_equal(sg_store_user_get_by_name(st, "keep", &g), SG_OK);
		sg_store_user_clear(&g);
		sg_store_close(st);
	}
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_version", NULL), 1);

	assert_int_equal(raw_exec(f->path, "UPDATE schema_version SET version = 999"), SQLITE_OK);
	char err[512] = "";
	st = NULL;
	assert_int_equal(sg_store_open("sqlite", f->path, &st, err, sizeof err), SG_ERR_CONFIG);
	assert_null(st);
	assert_non_null(strstr(err, "999"));
	assert_non_null(strstr(err, "newer"));
	/* Refusing changed nothing. */
	assert_int_equal(raw_int(f->path, "SELECT version FROM schema_version", NULL), 999);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM users", NULL), 1);
}

/* Migration 6 rebuilt auth_codes and refresh_tokens as rowid tables: a state dir written
 * before it keeps its codes and refresh tokens, single use included. */
static void test_migration_6_keeps_codes_and_refresh_tokens(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	add_simc(st);
	int64_t now = sg_now_ms();
	struct sg_store_code code = mk_code(0x61, "simc", "SUB", "grant-M", now + 60000);
	assert_int_equal(sg_store_code_put(st, &code), SG_OK);
	struct sg_store_refresh rt = mk_refresh(0x62, "simc", "SUB", "grant-M", now + 60000);
	assert_int_equal(sg_store_refresh_put(st, &rt), SG_OK);
	sg_store_close(st);
	/* back to the shape of schema 5 (migration 1's tables), rows kept */
	assert_int_equal(
	    raw_exec(
	        f->path,
	        "BEGIN;"
	        "CREATE TABLE ac5 (digest BLOB PRIMARY KEY, client_id TEXT NOT NULL,"
	        " sub TEXT NOT NULL, redirect_uri TEXT NOT NULL, scope TEXT NOT NULL,"
	        " nonce TEXT, code_challenge TEXT NOT NULL, acr TEXT,"
	        " auth_time INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
	        " used_at INTEGER NOT NULL DEFAULT 0, grant_id TEXT NOT NULL) WITHOUT ROWID;"
	        "INSERT INTO ac5 SELECT digest, client_id, sub, redirect_uri, scope, nonce,"
	        " code_challenge, acr, auth_time, expires_at, used_at, grant_id FROM auth_codes;"
	        "DROP TABLE auth_codes; ALTER TABLE ac5 RENAME TO auth_codes;"
	        "CREATE TABLE rt5 (digest BLOB PRIMARY KEY, grant_id TEXT NOT NULL,"
	        " client_id TEXT NOT NULL, sub TEXT NOT NULL, scope TEXT NOT NULL,"
	        " expires_at INTEGER NOT NULL, rotated_at INTEGER NOT NULL DEFAULT 0,"
	        " revoked INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
	        "INSERT INTO rt5 SELECT digest, grant_id, client_id, sub, scope, expires_at,"
	        " rotated_at, revoked FROM refresh_tokens;"
	        "DROP TABLE refresh_tokens; ALTER TABLE rt5 RENAME TO refresh_tokens;"
	        "DROP INDEX sdd_subsc_expires; ALTER TABLE sdd_subsc DROP COLUMN identity;"
	        "ALTER TABLE sdd_subsc DROP COLUMN expires_at;"
	        "DROP TRIGGER audit_no_delete; DROP TABLE audit_prune;"
	        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
	        " BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
	        "DROP INDEX gm_docs_owner; ALTER TABLE gm_docs DROP COLUMN size;"
	        "DROP INDEX km_keys_superseded; DROP INDEX km_keys_not_after;"
	        "DROP INDEX km_keys_current;"
	        "UPDATE schema_version SET version = 5; COMMIT;"),
	    SQLITE_OK);
	assert_int_equal(
	    raw_int(f->path, "SELECT count(*) FROM pragma_table_info('auth_codes') WHERE name='id'",
	            NULL),
	    0);
	st = open_ok(f->path);
	int v = 0;
	assert_int_equal(sg_store_schema_version(st, &v), SG_OK);
	assert_int_equal(v, SG_STORE_SCHEMA_VERSION);
	expect_code(st, 0x61, now, SG_STORE_USE_OK, now, "grant-M");
	expect_code(st, 0x61, now, SG_STORE_USE_REPLAY, now, "grant-M");
	assert_int_equal(sg_store_code_put(st, &code), SG_ERR_EXISTS); /* the digest stays unique */
	enum sg_store_use use = -1;
	struct sg_store_refresh ro;
	assert_int_equal(sg_store_refresh_consume(st, rt.digest, 32, now, &ro, &use), SG_OK);
	assert_int_equal(use, SG_STORE_USE_OK);
	assert_string_equal(ro.sub, "SUB");
	sg_store_refresh_clear(&ro);
	assert_int_equal(sg_store_refresh_put(st, &rt), SG_ERR_EXISTS);
	sg_store_close(st);
	assert_int_equal(
	    raw_int(f->path,
	            "SELECT count(*) FROM pragma_table_info('refresh_tokens') WHERE name='id'",
	            NULL),
	    1);
	assert_int_equal(
	    raw_int(f->path,
	            "SELECT count(*) FROM sqlite_master WHERE name IN ('auth_codes_expires',"
	            " 'auth_codes_client', 'refresh_tokens_grant', 'refresh_tokens_expires',"
	            " 'refresh_tokens_client')",
	            NULL),
	    5);
	/* migration 8: the audit's rows stay, deletes are refused but for a prune */
	st = open_ok(f->path);
	struct sg_store_audit a = {.ts = 1, .actor = "cli", .action = "user.add"};
	assert_int_equal(sg_store_audit_append(st, &a), SG_OK);
	assert_int_not_equal(raw_exec(f->path, "DELETE FROM audit"), SQLITE_OK);
	uint64_t pruned = 0;
	assert_int_equal(sg_store_audit_prune(st, 2, 0, 0, &pruned), SG_OK);
	assert_int_equal(pruned, 1);
	sg_store_close(st);
}

static void test_generation_sees_other_connection(void **state)
{
	struct fx *f = *state;
	struct sg_store *server = open_ok(f->path);
	struct sg_store *cli = open_ok(f->path); /* simulates the CLI on a running server's dir */
	uint64_t g0 = 0, g1 = 0, g2 = 0, g3 = 0;
	assert_int_equal(sg_store_generation(server, &g0), SG_OK);
	add_simc(cli);
	assert_int_equal(sg_store_generation(server, &g1), SG_OK);
	assert_true(g1 != g0);
	/* Non-registry writes do not invalidate registry caches. */
	int64_t now = sg_now_ms();
	struct sg_store_code code = {.digest = {7},
	                             .digest_len = 16,
	                             .client_id = "simc",
	                             .sub = "s",
	                             .redirect_uri = "https://app/cb",
	                             .scope = "openid",
	                             .code_challenge = "x",
	                             .expires_at = now + 1000,
	                             .grant_id = "g"};
	assert_int_equal(sg_store_code_put(cli, &code), SG_OK);
	struct sg_store_audit a = {.actor = "cli", .action = "x"};
	assert_int_equal(sg_store_audit_append(cli, &a), SG_OK);
	assert_int_equal(sg_store_generation(server, &g2), SG_OK);
	assert_true(g2 == g1);
	/* A write by a plain sqlite3 connection counts too (triggers). */
	assert_int_equal(raw_exec(f->path, "UPDATE clients SET scopes = 'openid'"), SQLITE_OK);
	assert_int_equal(sg_store_generation(server, &g3), SG_OK);
	assert_true(g3 != g2);
	/* A rolled-back write does not. */
	assert_int_equal(sg_store_tx_begin(cli), SG_OK);
	struct sg_store_user u = {.name = "x", .password_hash = "h"};
	assert_int_equal(sg_store_user_add(cli, &u, NULL), SG_OK);
	assert_int_equal(sg_store_tx_rollback(cli), SG_OK);
	assert_int_equal(sg_store_generation(server, &g2), SG_OK);
	assert_true(g2 == g3);
	sg_store_close(cli);
	sg_store_close(server);
}

/* ---- pool ---- */

struct pool_ctx {
	struct event_base *base;
	pthread_t loop_thread;
	int done, expected, wrong_thread, failures;
};

struct pool_arg {
	struct pool_ctx *ctx;
	int i;
	int fail;
};

static sg_err job_write(struct sg_store *st, void *arg)
{
	struct pool_arg *a = arg;
	char obj[32];
	snprintf(obj, sizeof obj, "row-%d", a->i);
	struct sg_store_audit au = {.actor = "pool", .action = "job", .object = obj};
	sg_err e = sg_store_audit_append(st, &au);
	if (e == SG_OK && a->fail)
		return SG_ERR_INVALID; /* after writing: the write must be rolled back */
	return e;
}

static sg_err job_read(struct sg_store *st, void *arg)
{
	(void)arg;
	uint64_t g;
	return sg_store_generation(st, &g);
}

/* A completion: on the loop's thread, failed exactly when the job was made to fail; the last
 * one stops the loop. */
static void pool_done(struct pool_ctx *c, sg_err rc, int fail)
{
	if (!pthread_equal(pthread_self(), c->loop_thread))
		c->wrong_thread++;
	if ((rc != SG_OK) != (fail != 0))
		c->failures++;
	if (++c->done == c->expected)
		event_base_loopbreak(c->base);
}

static void job_done(sg_err rc, void *arg)
{
	struct pool_arg *a = arg;
	pool_done(a->ctx, rc, a->fail);
}

static void watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* A pool of `threads` on path and a loop in c that expects `expected` completions. */
static struct sg_store_pool *pool_with_loop(const char *path, unsigned threads, struct pool_ctx *c,
                                            int expected)
{
	struct sg_store_pool *pool = NULL;
	char err[256] = "";
	assert_int_equal(sg_store_pool_create("sqlite", path, threads, &pool, err, sizeof err),
	                 SG_OK);
	*c = (struct pool_ctx){
	    .base = event_base_new(), .loop_thread = pthread_self(), .expected = expected};
	assert_non_null(c->base);
	return pool;
}

/* Runs c's loop until its jobs are all done (job_done/early_done break it) or 10 s have passed,
 * then what is still queued on it (ran notices overtaken by done free their jobs there). */
static void run_loop(struct pool_ctx *c)
{
	struct timeval tv = {10, 0};
	struct event *wd = evtimer_new(c->base, watchdog, c->base);
	assert_non_null(wd);
	evtimer_add(wd, &tv);
	event_base_loop(c->base, EVLOOP_NO_EXIT_ON_EMPTY);
	event_base_loop(c->base, EVLOOP_NONBLOCK);
	event_free(wd);
	assert_int_equal(c->done, c->expected);
	assert_int_equal(c->wrong_thread, 0);
	assert_int_equal(c->failures, 0);
}

static void test_pool_completions_on_loop(void **state)
{
	struct fx *f = *state;
	enum { NJOBS = 200 };
	struct pool_ctx ctx;
	struct sg_store_pool *pool = pool_with_loop(f->path, 3, &ctx, NJOBS);
	static struct pool_arg args[NJOBS];
	for (int i = 0; i < NJOBS; i++) {
		args[i] = (struct pool_arg){.ctx = &ctx, .i = i, .fail = (i % 50 == 7)};
		if (i % 10 == 3)
			assert_int_equal(sg_store_pool_submit_read(pool, job_read, &args[i],
			                                           job_done, &args[i], ctx.base),
			                 SG_OK);
		else
			assert_int_equal(sg_store_pool_submit(pool, job_write, &args[i], job_done,
			                                      &args[i], ctx.base),
			                 SG_OK);
	}
	run_loop(&ctx);
	sg_store_pool_destroy(pool);
	event_base_free(ctx.base);

	/* Every successful write job committed; the failed ones left nothing. */
	int writes = 0, failed = 0;
	for (int i = 0; i < NJOBS; i++)
		if (i % 10 != 3) {
			writes++;
			failed += i % 50 == 7;
		}
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit", NULL), writes - failed);
	assert_int_equal(
	    raw_int(f->path, "SELECT count(*) FROM audit WHERE object = 'row-7'", NULL), 0);
}

/* A batch in which SQLite rolls the whole transaction back by itself (as it may on
 * SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM or SQLITE_BUSY in a statement; here the job says
 * ROLLBACK on the handle): the batch's jobs all fail and none of them is in the store. Before,
 * the jobs after that one ran with no transaction around them, each committed at once, and
 * were answered as failed all the same. */
static sg_err job_gate(struct sg_store *st, void *arg)
{
	(void)st;
	int *gate = arg; /* holds the writer until the batch behind it is queued */
	for (int t = 0; t < 1000 && !__atomic_load_n(gate, __ATOMIC_SEQ_CST); t++)
		usleep(1000);
	return SG_OK;
}

/* job_write that succeeds (its arg's fail is what the completion expects) */
static sg_err job_append(struct sg_store *st, void *arg)
{
	struct pool_arg a = *(struct pool_arg *)arg;
	a.fail = 0;
	return job_write(st, &a);
}

static sg_err job_lose_tx(struct sg_store *st, void *arg)
{
	sg_err e = job_append(st, arg);
	if (e == SG_OK)
		sqlite3_exec(sg_store_sqlite_handle(st), "ROLLBACK", NULL, NULL, NULL);
	return e == SG_OK ? SG_ERR_IO : e;
}

static void test_pool_lost_transaction(void **state)
{
	struct fx *f = *state;
	struct pool_ctx ctx;
	struct sg_store_pool *pool = pool_with_loop(f->path, 1, &ctx, 5);
	static struct pool_arg args[5];
	static int gate;
	for (int i = 0; i < 5; i++)
		args[i] = (struct pool_arg){.ctx = &ctx, .i = i, .fail = i > 0};
	assert_int_equal(sg_store_pool_submit(pool, job_gate, &gate, job_done, &args[0], ctx.base),
	                 SG_OK);
	usleep(50000); /* the gate runs: jobs 1-4 queue behind it, one batch */
	assert_int_equal(
	    sg_store_pool_submit(pool, job_append, &args[1], job_done, &args[1], ctx.base), SG_OK);
	assert_int_equal(
	    sg_store_pool_submit(pool, job_lose_tx, &args[2], job_done, &args[2], ctx.base), SG_OK);
	for (int i = 3; i < 5; i++)
		assert_int_equal(
		    sg_store_pool_submit(pool, job_append, &args[i], job_done, &args[i], ctx.base),
		    SG_OK);
	__atomic_store_n(&gate, 1, __ATOMIC_SEQ_CST);
	run_loop(&ctx); /* every job of the batch failed (args[i].fail) */
	sg_store_pool_destroy(pool);
	event_base_free(ctx.base);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit", NULL), 0);
}

static void done_on_worker(sg_err rc, void *arg)
{
	int *flag = arg;
	__atomic_store_n(flag, rc == SG_OK ? 1 : 2, __ATOMIC_SEQ_CST);
}

static void test_pool_without_loop_and_bad_args(void **state)
{
	struct fx *f = *state;
	struct sg_store_pool *pool = NULL;
	char err[256] = "";
	assert_int_equal(sg_store_pool_create("sqlite", f->path, 0, &pool, err, sizeof err),
	                 SG_ERR_INVALID);
	char bad[200];
	snprintf(bad, sizeof bad, "%s/missing/x.db", f->dir);
	assert_int_equal(sg_store_pool_create("sqlite", bad, 2, &pool, err, sizeof err), SG_ERR_IO);
	assert_int_equal(sg_store_pool_create("sqlite", f->path, 1, &pool, err, sizeof err), SG_OK);
	int flag = 0;
	struct pool_arg a = {.i = 1};
	assert_int_equal(sg_store_pool_submit(pool, job_write, &a, done_on_worker, &flag, NULL),
	                 SG_OK);
	assert_int_equal(sg_store_pool_submit(pool, NULL, NULL, NULL, NULL, NULL), SG_ERR_INVALID);
	sg_store_pool_destroy(pool); /* drains the queue first */
	assert_int_equal(__atomic_load_n(&flag, __ATOMIC_SEQ_CST), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit", NULL), 1);
}

static void wait_count(int *n, int want)
{
	for (int t = 0; t < 3000 && __atomic_load_n(n, __ATOMIC_SEQ_CST) < want; t++)
		usleep(10000);
	assert_int_equal(__atomic_load_n(n, __ATOMIC_SEQ_CST), want);
}

/* Early hand-off: ran comes on the loop with the job's own result, before done or not at all;
 * done always comes, once; a ran without a loop is refused. */
struct early_arg {
	struct pool_ctx *ctx;
	int i, fail;
	int ran, done, ran_after_done, ran_rc_wrong;
};

static sg_err job_early(struct sg_store *st, void *arg)
{
	struct early_arg *a = arg;
	struct pool_arg pa = {.i = a->i, .fail = a->fail};
	return job_write(st, &pa);
}

static void early_ran(sg_err rc, void *arg)
{
	struct early_arg *a = arg;
	if (!pthread_equal(pthread_self(), a->ctx->loop_thread))
		a->ctx->wrong_thread++;
	a->ran++;
	a->ran_after_done += a->done != 0;
	a->ran_rc_wrong += (rc != SG_OK) != (a->fail != 0);
}

static void early_done(sg_err rc, void *arg)
{
	struct early_arg *a = arg;
	a->done++;
	pool_done(a->ctx, rc, a->fail);
}

static void test_pool_early_handoff(void **state)
{
	struct fx *f = *state;
	enum { NJOBS = 150 };
	struct pool_ctx ctx;
	struct sg_store_pool *pool = pool_with_loop(f->path, 2, &ctx, NJOBS);
	static struct early_arg args[NJOBS];
	for (int i = 0; i < NJOBS; i++) {
		args[i] = (struct early_arg){.ctx = &ctx, .i = i, .fail = i % 9 == 4};
		/* every third one without ran: mixed in the same batches */
		assert_int_equal(sg_store_pool_submit_early(pool, job_early, &args[i],
		                                            i % 3 ? early_ran : NULL, early_done,
		                                            &args[i], ctx.base),
		                 SG_OK);
	}
	struct early_arg lone = {.ctx = &ctx};
	assert_int_equal(
	    sg_store_pool_submit_early(pool, job_early, &lone, early_ran, early_done, &lone, NULL),
	    SG_ERR_INVALID);
	run_loop(&ctx);
	int rans = 0;
	for (int i = 0; i < NJOBS; i++) {
		assert_int_equal(args[i].done, 1);
		assert_true(args[i].ran <= (i % 3 ? 1 : 0));
		assert_int_equal(args[i].ran_after_done, 0);
		assert_int_equal(args[i].ran_rc_wrong, 0);
		rans += args[i].ran;
	}
	assert_true(rans > 0); /* the loop idles while the writer commits: notices do arrive */
	sg_store_pool_destroy(pool);
	event_base_free(ctx.base);
	int failed = 0;
	for (int i = 0; i < NJOBS; i++)
		failed += args[i].fail;
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit", NULL), NJOBS - failed);
	assert_int_equal(lone.ran + lone.done, 0);
}

/* Lazy jobs: one alone runs by itself; one queued before a durable job has run when that job
 * is acknowledged (it rides along, or ran earlier); one queued at destroy runs before the pool
 * is gone. */
static sg_err job_lazy(struct sg_store *st, void *arg)
{
	struct pool_arg *a = arg;
	sg_err e = job_write(st, a);
	if (e == SG_OK)
		__atomic_add_fetch(&a->ctx->done, 1, __ATOMIC_SEQ_CST);
	return e;
}

static void test_pool_lazy_jobs(void **state)
{
	struct fx *f = *state;
	struct sg_store_pool *pool = NULL;
	char err[256] = "";
	assert_int_equal(sg_store_pool_create("sqlite", f->path, 1, &pool, err, sizeof err), SG_OK);
	struct pool_ctx ctx = {0};
	struct pool_arg l1 = {.ctx = &ctx, .i = 1}, l2 = {.ctx = &ctx, .i = 2},
	                l3 = {.ctx = &ctx, .i = 3}, d = {.i = 4};
	assert_int_equal(sg_store_pool_submit_lazy(pool, job_lazy, &l1), SG_OK);
	wait_count(&ctx.done, 1);
	int flag = 0;
	assert_int_equal(sg_store_pool_submit_lazy(pool, job_lazy, &l2), SG_OK);
	assert_int_equal(sg_store_pool_submit(pool, job_write, &d, done_on_worker, &flag, NULL),
	                 SG_OK);
	for (int t = 0; t < 3000 && !__atomic_load_n(&flag, __ATOMIC_SEQ_CST); t++)
		usleep(1000);
	assert_int_equal(__atomic_load_n(&flag, __ATOMIC_SEQ_CST), 1);
	assert_int_equal(__atomic_load_n(&ctx.done, __ATOMIC_SEQ_CST), 2);
	assert_int_equal(sg_store_pool_submit_lazy(pool, job_lazy, &l3), SG_OK);
	assert_int_equal(sg_store_pool_submit_lazy(pool, NULL, NULL), SG_ERR_INVALID);
	sg_store_pool_destroy(pool);
	assert_int_equal(__atomic_load_n(&ctx.done, __ATOMIC_SEQ_CST), 3);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit", NULL), 4);
}

/* ---- WAL checkpoints off the writer ---- */

enum { BIG_DETAIL = 3000 }; /* an audit row of about one 4 KiB page */

static sg_err job_big(struct sg_store *st, void *arg)
{
	int i = (int)(intptr_t)arg;
	char obj[32], detail[BIG_DETAIL];
	snprintf(obj, sizeof obj, "big-%d", i);
	memset(detail, 'a' + i % 26, sizeof detail - 1);
	detail[sizeof detail - 1] = '\0';
	struct sg_store_audit au = {
	    .actor = "pool", .action = "big", .object = obj, .detail = detail};
	return sg_store_audit_append(st, &au);
}

static void count_done(sg_err rc, void *arg)
{
	if (rc == SG_OK)
		__atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
}

static off_t file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? sb.st_size : -1;
}

/* The writer's connection never checkpoints below 8,000 WAL pages; the pool's checkpointer
 * copies the pages into the database file while the pool runs: with ~2,500 pages written the
 * database file must grow before the pool is closed (a close checkpoints anyway). */
static void test_pool_checkpoints_off_the_writer(void **state)
{
	struct fx *f = *state;
	struct sg_store_pool *pool = NULL;
	char err[256] = "";
	assert_int_equal(sg_store_pool_create("sqlite", f->path, 2, &pool, err, sizeof err), SG_OK);
	off_t before = file_size(f->path);
	enum { NJOBS = 2500 };
	int ok = 0;
	for (int i = 0; i < NJOBS; i++)
		assert_int_equal(
		    sg_store_pool_submit(pool, job_big, (void *)(intptr_t)i, count_done, &ok, NULL),
		    SG_OK);
	wait_count(&ok, NJOBS);
	off_t want = before + (off_t)1000 * BIG_DETAIL;
	for (int t = 0; t < 500 && file_size(f->path) < want; t++)
		usleep(10000);
	if (file_size(f->path) < want)
		fail_msg("the database file did not grow while the pool ran (%lld -> %lld bytes): "
		         "no checkpoint",
		         (long long)before, (long long)file_size(f->path));
	/* every row is there, read by another connection while the pool still runs */
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit WHERE action = 'big'", NULL),
	                 NJOBS);
	sg_store_pool_destroy(pool);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit WHERE action = 'big'", NULL),
	                 NJOBS);
}

/* ---- durability ---- */

static int g_ack_fd = -1;

/* Acknowledges job i on the writer thread, after its batch committed. */
static void ack_done(sg_err rc, void *arg)
{
	int i = (int)(intptr_t)arg;
	if (rc != SG_OK)
		_exit(5);
	if (write(g_ack_fd, &i, sizeof i) != (ssize_t)sizeof i)
		_exit(4);
}

/* Group commit through the pool with the checkpointer running (rows of a page each, so that
 * checkpoints run during the test): every job acknowledged before the SIGKILL is in the
 * database afterwards. */
static void test_pool_acknowledged_writes_survive_sigkill(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	sg_store_close(st);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		g_ack_fd = fds[1];
		struct sg_store_pool *pool = NULL;
		if (sg_store_pool_create("sqlite", f->path, 2, &pool, NULL, 0) != SG_OK)
			_exit(2);
		for (int i = 0;; i++) {
			if (sg_store_pool_submit(pool, job_big, (void *)(intptr_t)i, ack_done,
			                         (void *)(intptr_t)i, NULL) != SG_OK)
				_exit(3);
			if (i % 64 == 63)
				usleep(1000); /* let batches form, as under load */
		}
	}
	close(fds[1]);
	int last = -1, v, ordered = 1;
	while (last < 1500 && read(fds[0], &v, sizeof v) == (ssize_t)sizeof v) {
		ordered &= v == last + 1;
		last = v;
	}
	kill(pid, SIGKILL);
	while (read(fds[0], &v, sizeof v) == (ssize_t)sizeof v) {
		ordered &= v == last + 1;
		last = v;
	}
	close(fds[0]);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_true(last >= 1500);
	assert_true(ordered); /* one writer: acknowledgements in submission order */
	char sql[160];
	snprintf(sql, sizeof sql,
	         "SELECT count(*) FROM audit WHERE action = 'big' AND "
	         "CAST(substr(object, 5) AS INTEGER) <= %d",
	         last);
	assert_int_equal(raw_int(f->path, sql, NULL), last + 1);
}

static void test_acknowledged_writes_survive_sigkill(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path); /* create + migrate before the race */
	sg_store_close(st);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		struct sg_store *cs = NULL;
		if (sg_store_open("sqlite", f->path, &cs, NULL, 0) != SG_OK)
			_exit(2);
		for (int i = 0;; i++) {
			char name[32];
			snprintf(name, sizeof name, "user-%d", i);
			struct sg_store_user u = {.name = name, .password_hash = "h"};
			if (sg_store_user_add(cs, &u, NULL) != SG_OK)
				_exit(3);
			/* Acknowledge only after the commit returned. */
			if (write(fds[1], &i, sizeof i) != (ssize_t)sizeof i)
				_exit(4);
		}
	}
	close(fds[1]);
	int last = -1, v;
	while (last < 40 && read(fds[0], &v, sizeof v) == (ssize_t)sizeof v)
		last = v;
	kill(pid, SIGKILL);
	/* Acks already in the pipe were sent before the kill: they count too. */
	while (read(fds[0], &v, sizeof v) == (ssize_t)sizeof v)
		last = v;
	close(fds[0]);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_true(last >= 40);

	st = open_ok(f->path);
	for (int i = 0; i <= last; i++) {
		char name[32];
		snprintf(name, sizeof name, "user-%d", i);
		struct sg_store_user g;
		if (sg_store_user_get_by_name(st, name, &g) != SG_OK)
			fail_msg("acknowledged row %s lost", name);
		sg_store_user_clear(&g);
	}
	sg_store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_file_mode_and_drivers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_users_crud, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_clients_and_valservers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_signing_keys_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_code_single_use, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refresh_rotation_and_revocation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_grants_revoke_of_client, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_grants_revoke_of_user, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_grants_revoke_of_again_and_overlap, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_grants_revoke_of_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_audit_append_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_audit_prune, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrations_idempotent_and_newer_refused, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_generation_sees_other_connection, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_6_keeps_codes_and_refresh_tokens, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_pool_completions_on_loop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pool_lost_transaction, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pool_without_loop_and_bad_args, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pool_early_handoff, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pool_lazy_jobs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_acknowledged_writes_survive_sigkill, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_pool_checkpoints_off_the_writer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pool_acknowledged_writes_survive_sigkill, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
