/* Unit tests of store/sdd.c (SEALDD-S state, TS 29.548) on real SQLite files: one transmission
 * per VAL service (a later put replaces it, created_at kept), subscriptions scoped by owner,
 * the refusals (bad arguments, unknown ids, another owner's id, id collisions), the count, the
 * registry generation left alone, subscriptions bound to a certificate identity and an expiry
 * (and purged by them), and the migrations of databases of earlier schema versions (4, 6) that
 * already hold data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/schema.h"
#include "store/store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fx {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/sg_store_sdd_XXXXXX");
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
	if (sg_store_open("sqlite", path, &st, err, sizeof err) != SG_OK)
		fail_msg("open: %s", err);
	return st;
}

static int64_t raw_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	int64_t v = -1;
	if (sqlite3_open(path, &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
		v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return v;
}

/* Writes at path a database of schema version (its migrations applied, as that release left
 * it) holding the rows that sql inserts. */
static void old_db(const char *path, int version, const char *sql)
{
	sqlite3 *db = NULL;
	char v[96];
	snprintf(v, sizeof v,
	         "CREATE TABLE schema_version (version INTEGER NOT NULL);"
	         "INSERT INTO schema_version VALUES (%d);",
	         version);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < version; i++)
		assert_int_equal(sqlite3_exec(db, sg_store_sqlite_migrations[i], NULL, NULL, NULL),
		                 SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, v, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void test_trans_one_per_service(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	uint64_t g0 = 0, g1 = 0;
	assert_int_equal(sg_store_generation(st, &g0), SG_OK);
	struct sg_store_sdd_trans t = {.val_service = "v2x",
	                               .client_id = "v2x-app",
	                               .identity = "DNS:v2x-app",
	                               .trans_type = "regular",
	                               .body = "{\"valServiceId\":\"v2x\"}"};
	assert_int_equal(sg_store_sdd_trans_put(st, &t), SG_OK);
	struct sg_store_sdd_trans got;
	assert_int_equal(sg_store_sdd_trans_get(st, "v2x", &got), SG_OK);
	assert_string_equal(got.client_id, "v2x-app");
	assert_string_equal(got.identity, "DNS:v2x-app");
	assert_string_equal(got.trans_type, "regular");
	assert_string_equal(got.body, "{\"valServiceId\":\"v2x\"}");
	int64_t created = got.created_at;
	assert_true(created > 0);
	sg_store_sdd_trans_clear(&got);
	usleep(2000);
	/* a later request (another VAL server registered for it) replaces it */
	t.client_id = "other-app";
	t.identity = "DNS:other-app";
	t.trans_type = "urllc";
	t.body = "{\"valServiceId\":\"v2x\",\"x\":1}";
	assert_int_equal(sg_store_sdd_trans_put(st, &t), SG_OK);
	struct sg_store_sdd_trans b = {.val_service = "b-svc",
	                               .client_id = "v2x-app",
	                               .identity = "DNS:v2x-app",
	                               .trans_type = "regular",
	                               .body = "{}"};
	assert_int_equal(sg_store_sdd_trans_put(st, &b), SG_OK);
	struct sg_store_sdd_trans *v = NULL;
	size_t n = 0;
	assert_int_equal(sg_store_sdd_trans_list(st, &v, &n), SG_OK);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].val_service, "b-svc");
	assert_string_equal(v[1].val_service, "v2x");
	assert_string_equal(v[1].client_id, "other-app");
	assert_string_equal(v[1].trans_type, "urllc");
	assert_int_equal(v[1].created_at, created); /* kept */
	assert_true(v[1].updated_at > created);
	sg_store_sdd_trans_list_free(v, n);
	/* not a registry table: caches of the registry are not reloaded for it */
	assert_int_equal(sg_store_generation(st, &g1), SG_OK);
	assert_int_equal(g0, g1);
	assert_int_equal(sg_store_sdd_trans_delete(st, "b-svc"), SG_OK);
	assert_int_equal(sg_store_sdd_trans_delete(st, "b-svc"), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_sdd_trans_get(st, "b-svc", &got), SG_ERR_NOTFOUND);
	sg_store_close(st);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sdd_trans"), 1);
}

static void test_trans_refusals_change_nothing(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	struct sg_store_sdd_trans ok = {.val_service = "v2x",
	                                .client_id = "v2x-app",
	                                .identity = "DNS:v2x-app",
	                                .trans_type = "regular",
	                                .body = "{}"};
	assert_int_equal(sg_store_sdd_trans_put(st, &ok), SG_OK);
	struct sg_store_sdd_trans bad = ok;
	bad.trans_type = "bulk";
	assert_int_equal(sg_store_sdd_trans_put(st, &bad), SG_ERR_INVALID);
	bad = ok;
	bad.val_service = "";
	assert_int_equal(sg_store_sdd_trans_put(st, &bad), SG_ERR_INVALID);
	bad = ok;
	bad.client_id = NULL;
	assert_int_equal(sg_store_sdd_trans_put(st, &bad), SG_ERR_INVALID);
	bad = ok;
	bad.identity = "";
	assert_int_equal(sg_store_sdd_trans_put(st, &bad), SG_ERR_INVALID);
	bad = ok;
	bad.body = NULL;
	assert_int_equal(sg_store_sdd_trans_put(st, &bad), SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_trans_put(st, NULL), SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_trans_get(st, NULL, NULL), SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_trans_list(st, NULL, NULL), SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_trans_delete(st, NULL), SG_ERR_INVALID);
	struct sg_store_sdd_trans got;
	assert_int_equal(sg_store_sdd_trans_get(st, "v2x", &got), SG_OK);
	assert_string_equal(got.trans_type, "regular");
	assert_string_equal(got.client_id, "v2x-app");
	sg_store_sdd_trans_clear(&got);
	sg_store_close(st);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sdd_trans"), 1);
}

static void test_subsc_owner_scoped(void **state)
{
	struct fx *f = *state;
	struct sg_store *st = open_ok(f->path);
	const int64_t now = 1000000, later = now + 60000;
	struct sg_store_sdd_subsc a = {.subsc_id = "s1",
	                               .owner = "v2x-app",
	                               .identity = "DNS:v2x-app",
	                               .body = "{\"a\":1}",
	                               .expires_at = later};
	struct sg_store_sdd_subsc b = {.subsc_id = "s2",
	                               .owner = "evil-app",
	                               .identity = "DNS:evil-app",
	                               .body = "{\"b\":1}",
	                               .expires_at = later};
	assert_int_equal(sg_store_sdd_subsc_put(st, &a, 1), SG_OK);
	assert_int_equal(sg_store_sdd_subsc_put(st, &b, 1), SG_OK);
	size_t n = 0;
	assert_int_equal(sg_store_sdd_subsc_count(st, NULL, &n), SG_OK);
	assert_int_equal(n, 2);
	assert_int_equal(sg_store_sdd_subsc_count(st, "v2x-app", &n), SG_OK);
	assert_int_equal(n, 1);
	assert_int_equal(sg_store_sdd_subsc_count(st, "nobody", &n), SG_OK);
	assert_int_equal(n, 0);
	/* an id collision is refused, the first one stays */
	struct sg_store_sdd_subsc dup = b;
	dup.subsc_id = "s1";
	assert_int_equal(sg_store_sdd_subsc_put(st, &dup, 1), SG_ERR_EXISTS);
	struct sg_store_sdd_subsc got;
	assert_int_equal(sg_store_sdd_subsc_get(st, "s1", "v2x-app", "DNS:v2x-app", now, &got),
	                 SG_OK);
	assert_string_equal(got.body, "{\"a\":1}");
	assert_string_equal(got.owner, "v2x-app");
	assert_string_equal(got.identity, "DNS:v2x-app");
	assert_int_equal(got.expires_at, later);
	int64_t created = got.created_at;
	sg_store_sdd_subsc_clear(&got);
	/* another owner's subscription is as absent as an unknown one; so is the owner's under
	 * another certificate identity, and one expired */
	assert_int_equal(sg_store_sdd_subsc_get(st, "s1", "evil-app", NULL, now, &got),
	                 SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_sdd_subsc_get(st, "s1", "v2x-app", "DNS:new-v2x", now, &got),
	                 SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_sdd_subsc_get(st, "s1", "v2x-app", "DNS:v2x-app", later, &got),
	                 SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_sdd_subsc_get(st, "nope", NULL, NULL, 0, &got), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_sdd_subsc_get(st, "s1", NULL, NULL, 0, &got), SG_OK);
	sg_store_sdd_subsc_clear(&got);
	struct sg_store_sdd_subsc upd = b;
	upd.subsc_id = "s1";
	upd.body = "{\"x\":1}";
	assert_int_equal(sg_store_sdd_subsc_put(st, &upd, 0), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_sdd_subsc_delete(st, "s1", "evil-app", "DNS:evil-app", now),
	                 SG_ERR_NOTFOUND);
	upd.owner = "v2x-app";
	upd.identity = "DNS:new-v2x"; /* the same name, another certificate */
	assert_int_equal(sg_store_sdd_subsc_put(st, &upd, 0), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_sdd_subsc_delete(st, "s1", "v2x-app", "DNS:new-v2x", now),
	                 SG_ERR_NOTFOUND);
	upd.identity = "DNS:v2x-app";
	upd.subsc_id = "nope";
	assert_int_equal(sg_store_sdd_subsc_put(st, &upd, 0), SG_ERR_NOTFOUND);
	/* the owner replaces it, and its expiry with it */
	usleep(2000);
	upd.subsc_id = "s1";
	upd.expires_at = later + 1000;
	assert_int_equal(sg_store_sdd_subsc_put(st, &upd, 0), SG_OK);
	assert_int_equal(sg_store_sdd_subsc_get(st, "s1", "v2x-app", "DNS:v2x-app", later, &got),
	                 SG_OK);
	assert_string_equal(got.body, "{\"x\":1}");
	assert_int_equal(got.expires_at, later + 1000);
	assert_int_equal(got.created_at, created);
	assert_true(got.updated_at > created);
	sg_store_sdd_subsc_clear(&got);
	struct sg_store_sdd_subsc *v = NULL;
	assert_int_equal(sg_store_sdd_subsc_list(st, "v2x-app", &v, &n), SG_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].subsc_id, "s1");
	sg_store_sdd_subsc_list_free(v, n);
	assert_int_equal(sg_store_sdd_subsc_list(st, NULL, &v, &n), SG_OK);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].subsc_id, "s1");
	assert_string_equal(v[1].subsc_id, "s2");
	sg_store_sdd_subsc_list_free(v, n);
	/* bad arguments */
	struct sg_store_sdd_subsc bad = a;
	bad.subsc_id = "";
	assert_int_equal(sg_store_sdd_subsc_put(st, &bad, 1), SG_ERR_INVALID);
	bad.subsc_id = "s9";
	bad.owner = NULL;
	assert_int_equal(sg_store_sdd_subsc_put(st, &bad, 1), SG_ERR_INVALID);
	bad.owner = "x";
	bad.body = NULL;
	assert_int_equal(sg_store_sdd_subsc_put(st, &bad, 1), SG_ERR_INVALID);
	bad.body = "{}";
	bad.identity = "";
	assert_int_equal(sg_store_sdd_subsc_put(st, &bad, 1), SG_ERR_INVALID);
	bad.identity = "DNS:x";
	bad.expires_at = 0;
	assert_int_equal(sg_store_sdd_subsc_put(st, &bad, 1), SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_subsc_delete(st, "s1", NULL, "DNS:v2x-app", now),
	                 SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_subsc_delete(st, "s1", "v2x-app", NULL, now), SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_subsc_purge(st, now, "v2x-app", NULL, &n), SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_subsc_count(st, NULL, NULL), SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_subsc_list(st, NULL, NULL, NULL), SG_ERR_INVALID);
	/* the owner deletes it */
	assert_int_equal(sg_store_sdd_subsc_delete(st, "s1", "v2x-app", "DNS:v2x-app", now), SG_OK);
	assert_int_equal(sg_store_sdd_subsc_delete(st, "s1", "v2x-app", "DNS:v2x-app", now),
	                 SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_sdd_subsc_count(st, NULL, &n), SG_OK);
	assert_int_equal(n, 1);
	assert_int_equal(sg_store_sdd_subsc_count(st, "v2x-app", &n), SG_OK);
	assert_int_equal(n, 0);

	/* purge: what expired, and an owner's of another identity; nothing else */
	struct sg_store_sdd_subsc rows[] = {
	    {.subsc_id = "p1", .owner = "v2x-app", .identity = "DNS:v2x-app", .expires_at = later},
	    {.subsc_id = "p2", .owner = "v2x-app", .identity = "DNS:old-v2x", .expires_at = later},
	    {.subsc_id = "p3", .owner = "v2x-app", .identity = "DNS:v2x-app", .expires_at = now},
	    {.subsc_id = "p4", .owner = "c-app", .identity = "DNS:c-old", .expires_at = later},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		rows[i].body = "{}";
		assert_int_equal(sg_store_sdd_subsc_put(st, &rows[i], 1), SG_OK);
	}
	assert_int_equal(sg_store_sdd_subsc_purge(st, now, NULL, NULL, &n), SG_OK);
	assert_int_equal(n, 1); /* p3 */
	assert_int_equal(sg_store_sdd_subsc_purge(st, now, "v2x-app", "DNS:v2x-app", &n), SG_OK);
	assert_int_equal(n, 1); /* p2 */
	assert_int_equal(sg_store_sdd_subsc_list(st, NULL, &v, &n), SG_OK);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].subsc_id, "p1");
	assert_string_equal(v[1].subsc_id, "p4");
	assert_string_equal(v[2].subsc_id, "s2");
	sg_store_sdd_subsc_list_free(v, n);
	/* a removed VAL server's: every one of that owner, nobody else's */
	assert_int_equal(sg_store_sdd_subsc_delete_owner(st, NULL, &n), SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_subsc_delete_owner(st, "c-app", &n), SG_OK);
	assert_int_equal(n, 1); /* p4 */
	assert_int_equal(sg_store_sdd_subsc_delete_owner(st, "c-app", &n), SG_OK);
	assert_int_equal(n, 0);
	assert_int_equal(sg_store_sdd_subsc_count(st, "v2x-app", &n), SG_OK);
	assert_int_equal(n, 1); /* p1 */
	assert_int_equal(sg_store_sdd_subsc_purge(st, later, NULL, NULL, NULL), SG_OK);
	assert_int_equal(sg_store_sdd_subsc_count(st, NULL, &n), SG_OK);
	assert_int_equal(n, 0);
	sg_store_close(st);
}

/* A database of schema 6 holding subscriptions: migration 7 binds each to its owner's
 * registered certificate identity, deletes those of an owner no longer registered (nobody can
 * reach them), and leaves the expiry unset (0) until the SEALDD server settles it with its
 * configured lifetime; an unset expiry is never purged as expired. */
static void test_migration_7_subscriptions(void **state)
{
	struct fx *f = *state;
	old_db(f->path, 6,
	       "INSERT INTO valservers (name, identity, created_at)"
	       " VALUES ('v2x-app', 'DNS:v2x-app', 1);"
	       "INSERT INTO sdd_subsc (subsc_id, owner, body, created_at, updated_at)"
	       " VALUES ('s1', 'v2x-app', '{}', 5, 7), ('s2', 'gone-app', '{}', 5, 9);");
	struct sg_store *st = open_ok(f->path);
	struct sg_store_sdd_subsc *v = NULL;
	size_t n = 0;
	assert_int_equal(sg_store_sdd_subsc_list(st, NULL, &v, &n), SG_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].subsc_id, "s1");
	assert_string_equal(v[0].identity, "DNS:v2x-app");
	assert_int_equal(v[0].expires_at, 0);
	sg_store_sdd_subsc_list_free(v, n);
	/* not set is not expired */
	assert_int_equal(sg_store_sdd_subsc_purge(st, 1000000, NULL, NULL, &n), SG_OK);
	assert_int_equal(n, 0);
	assert_int_equal(sg_store_sdd_subsc_settle(st, 0, &n), SG_ERR_INVALID);
	assert_int_equal(sg_store_sdd_subsc_settle(st, 5000, &n), SG_OK);
	assert_int_equal(n, 1);
	assert_int_equal(sg_store_sdd_subsc_settle(st, 9000, &n), SG_OK);
	assert_int_equal(n, 0); /* once only */
	struct sg_store_sdd_subsc got;
	assert_int_equal(sg_store_sdd_subsc_get(st, "s1", "v2x-app", "DNS:v2x-app", 4999, &got),
	                 SG_OK);
	assert_int_equal(got.expires_at, 5000);
	sg_store_sdd_subsc_clear(&got);
	sg_store_close(st);
	assert_int_equal(raw_int(f->path, "SELECT version FROM schema_version"),
	                 SG_STORE_SCHEMA_VERSION);
}

/* A state dir written by the previous release (schema 4, with a user) gains the SEALDD
 * tables at the next open and keeps its data. */
static void test_migration_from_schema_4(void **state)
{
	struct fx *f = *state;
	old_db(f->path, 4,
	       "INSERT INTO subs (sub, created_at) VALUES ('AAAAAAAAAAAAAAAAAAAAAA', 1);"
	       "INSERT INTO users (sub, name, password_hash, created_at)"
	       " VALUES ('AAAAAAAAAAAAAAAAAAAAAA', 'old', 'h', 1);");
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = "
	                                  "'sdd_trans'"),
	                 0);
	struct sg_store *st = open_ok(f->path);
	int v = 0;
	assert_int_equal(sg_store_schema_version(st, &v), SG_OK);
	assert_int_equal(v, SG_STORE_SCHEMA_VERSION); /* 5 (SEALDD), then every later one */
	struct sg_store_user u;
	assert_int_equal(sg_store_user_get_by_name(st, "old", &u), SG_OK);
	sg_store_user_clear(&u);
	struct sg_store_sdd_trans t = {.val_service = "v2x",
	                               .client_id = "v2x-app",
	                               .identity = "DNS:v2x-app",
	                               .trans_type = "urllc",
	                               .body = "{}"};
	assert_int_equal(sg_store_sdd_trans_put(st, &t), SG_OK);
	struct sg_store_sdd_subsc s = {.subsc_id = "s1",
	                               .owner = "v2x-app",
	                               .identity = "DNS:v2x-app",
	                               .body = "{}",
	                               .expires_at = 1};
	assert_int_equal(sg_store_sdd_subsc_put(st, &s, 1), SG_OK);
	sg_store_close(st);
	/* reopening does not migrate again */
	st = open_ok(f->path);
	struct sg_store_sdd_trans got;
	assert_int_equal(sg_store_sdd_trans_get(st, "v2x", &got), SG_OK);
	assert_string_equal(got.trans_type, "urllc");
	sg_store_sdd_trans_clear(&got);
	sg_store_close(st);
	assert_int_equal(raw_int(f->path, "SELECT version FROM schema_version"),
	                 SG_STORE_SCHEMA_VERSION);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_trans_one_per_service, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trans_refusals_change_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_subsc_owner_scoped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_7_subscriptions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_from_schema_4, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
