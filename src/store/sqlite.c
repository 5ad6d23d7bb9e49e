/* store/sqlite.c: the embedded SQLite backend of the store interface.
 * One struct sq_store is one connection: WAL (readers never wait for the writer),
 * synchronous=FULL (an acknowledged commit survives a crash or power loss), busy_timeout (the
 * CLI and the server share the file), foreign keys on, prepared statements cached. Ops are
 * serialized by a recursive mutex; every op is a transaction (BEGIN IMMEDIATE for writes, so
 * a read never has to be upgraded) or a savepoint inside a caller's transaction. */
#include "store/backend.h"
#include "store/schema.h"
#include "store/sqlutil.h"

#include "base/clock.h"
#include "base/rand.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof sg_store_sqlite_migrations / sizeof sg_store_sqlite_migrations[0] ==
                   SG_STORE_SCHEMA_VERSION,
               "one migration per schema version");

#define SQ_BUSY_TIMEOUT_MS 5000
#define SQ_MAX_STMTS       128

struct sq_stmt {
	const char *sql; /* identity of the statement: a string literal */
	sqlite3_stmt *q;
};

struct sq_store {
	struct sg_store base;
	sqlite3 *db;
	pthread_mutex_t mu; /* recursive: held from tx_begin to tx_end */
	int depth;          /* transaction nesting; 0: none */
	struct sq_stmt stmts[SQ_MAX_STMTS];
	size_t nstmts;
};

static struct sq_store *SQ(struct sg_store *st)
{
	return (struct sq_store *)st;
}

/* ---- errors ---- */

static sg_err sq_fail(struct sq_store *s, int rc, const char *what)
{
	const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return sg_store_fail(SG_ERR_EXISTS, "store: %s: already exists", what);
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return sg_store_fail(SG_ERR_NOTFOUND, "store: %s: refers to an unknown object",
		                     what);
	case SQLITE_NOMEM:
		return sg_store_fail(SG_ERR_NOMEM, "store: %s: out of memory", what);
	case SQLITE_BUSY:
	case SQLITE_BUSY_SNAPSHOT:
	case SQLITE_LOCKED:
		return sg_store_fail(SG_ERR_IO, "store: %s: database is locked (busy for %d ms)",
		                     what, SQ_BUSY_TIMEOUT_MS);
	default:
		return sg_store_fail(SG_ERR_IO, "store: %s: %s (sqlite %d)", what, msg, rc);
	}
}

/* ---- statements ---- */

/* Returns the cached prepared statement for sql, bound with the arguments described by fmt:
 * 't' const char * (NULL binds NULL), 'i' int64_t, 'b' const void *, size_t (blob). */
/* Inside a transaction (depth > 0) SQLite may have rolled the whole of it back by itself on an
 * error (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM, SQLITE_BUSY: "Response To Errors Within A
 * Transaction" in SQLite's documentation). A statement run after that would be a transaction of
 * its own, committed at once, under a batch that is about to report failure: refused instead.
 * This is what keeps the store pool's "a failed batch changed nothing" true (store/pool.c). */
static sg_err sq_tx_lost(struct sq_store *s)
{
	if (s->depth > 0 && sqlite3_get_autocommit(s->db))
		return sg_store_fail(SG_ERR_IO,
		                     "store: the transaction was rolled back by an error");
	return SG_OK;
}

static sg_err sq_vprep(struct sq_store *s, sqlite3_stmt **out, const char *sql, const char *fmt,
                       va_list ap)
{
	sg_err lost = sq_tx_lost(s);
	if (lost != SG_OK)
		return lost;
	sqlite3_stmt *q = NULL;
	for (size_t i = 0; i < s->nstmts; i++)
		if (s->stmts[i].sql == sql) {
			q = s->stmts[i].q;
			break;
		}
	if (!q) {
		int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q, NULL);
		if (rc != SQLITE_OK)
			return sq_fail(s, rc, "prepare");
		if (s->nstmts < SQ_MAX_STMTS) {
			s->stmts[s->nstmts].sql = sql;
			s->stmts[s->nstmts].q = q;
			s->nstmts++;
		} else {
			sqlite3_finalize(q);
			return sg_store_fail(SG_ERR_INTERNAL, "store: statement cache full");
		}
	}
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	int rc = SQLITE_OK;
	for (int i = 1; fmt && *fmt && rc == SQLITE_OK; fmt++, i++) {
		if (*fmt == 't') {
			const char *t = va_arg(ap, const char *);
			rc = t ? sqlite3_bind_text(q, i, t, -1, SQLITE_STATIC)
			       : sqlite3_bind_null(q, i);
		} else if (*fmt == 'i') {
			rc = sqlite3_bind_int64(q, i, va_arg(ap, int64_t));
		} else if (*fmt == 'b') {
			const void *p = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);
			rc = p ? sqlite3_bind_blob(q, i, n ? p : "", (int)n, SQLITE_STATIC)
			       : sqlite3_bind_null(q, i);
		}
	}
	if (rc != SQLITE_OK)
		return sq_fail(s, rc, "bind");
	*out = q;
	return SG_OK;
}

static sg_err sq_prep(struct sq_store *s, sqlite3_stmt **out, const char *sql, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sg_err e = sq_vprep(s, out, sql, fmt, ap);
	va_end(ap);
	return e;
}

/* Steps a statement that returns no rows; resets it. */
static sg_err sq_done(struct sq_store *s, sqlite3_stmt *q, const char *what)
{
	int rc = sqlite3_step(q);
	sg_err e = rc == SQLITE_DONE ? SG_OK : sq_fail(s, rc, what);
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	return e;
}

/* Prepares, binds (as sq_prep) and runs a statement returning no rows. */
static sg_err sq_run(struct sq_store *s, const char *what, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *q;
	va_list ap;
	va_start(ap, fmt);
	sg_err e = sq_vprep(s, &q, sql, fmt, ap);
	va_end(ap);
	return e == SG_OK ? sq_done(s, q, what) : e;
}

static sg_err sq_exec(struct sq_store *s, const char *sql, const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		return SG_OK;
	sg_err e = rc == SQLITE_NOMEM ? SG_ERR_NOMEM : SG_ERR_IO;
	sg_store_fail(e, "store: %s: %s", what, msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return e;
}

static char *col_dup(sqlite3_stmt *q, int i, int *oom)
{
	const unsigned char *t = sqlite3_column_text(q, i);
	if (!t)
		return NULL;
	char *d = strdup((const char *)t);
	if (!d)
		*oom = 1;
	return d;
}

static size_t col_blob(sqlite3_stmt *q, int i, unsigned char *out, size_t cap)
{
	const void *p = sqlite3_column_blob(q, i);
	size_t n = (size_t)sqlite3_column_bytes(q, i);
	if (!p || n > cap)
		return 0;
	memcpy(out, p, n);
	return n;
}

/* ---- transactions ---- */

/* The transaction statements, prepared once per connection (sq_ctl): sqlite3_exec() parses
 * them on every call, and the writer of the store pool runs four of them per job (a savepoint
 * per job, one per op inside it) besides BEGIN and COMMIT per batch. */
static const char SQL_BEGIN[] = "BEGIN", SQL_BEGIN_IMMEDIATE[] = "BEGIN IMMEDIATE",
                  SQL_COMMIT[] = "COMMIT", SQL_SAVEPOINT[] = "SAVEPOINT sg",
                  SQL_RELEASE[] = "RELEASE sg";

static sg_err sq_ctl(struct sq_store *s, const char *sql, const char *what)
{
	sqlite3_stmt *q;
	sg_err e = sq_prep(s, &q, sql, NULL);
	return e == SG_OK ? sq_done(s, q, what) : e;
}

static sg_err tx_begin_mode(struct sq_store *s, int write)
{
	pthread_mutex_lock(&s->mu);
	sg_err e;
	if (s->depth == 0)
		e = sq_ctl(s, write ? SQL_BEGIN_IMMEDIATE : SQL_BEGIN, "begin");
	else
		e = sq_ctl(s, SQL_SAVEPOINT, "savepoint");
	if (e != SG_OK) {
		pthread_mutex_unlock(&s->mu);
		return e;
	}
	s->depth++;
	return SG_OK;
}

/* Ends the innermost level: commits when e is SG_OK, else rolls back; returns the result. */
static sg_err tx_end(struct sq_store *s, sg_err e)
{
	s->depth--;
	if (s->depth == 0) {
		if (e == SG_OK) {
			e = sq_ctl(s, SQL_COMMIT, "commit");
			if (e != SG_OK && !sqlite3_get_autocommit(s->db))
				sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		} else if (!sqlite3_get_autocommit(s->db)) {
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		}
	} else if (e == SG_OK) {
		e = sq_ctl(s, SQL_RELEASE, "release");
	} else if (sq_tx_lost(s) == SG_OK) {
		sqlite3_exec(s->db, "ROLLBACK TO sg", NULL, NULL, NULL);
		sqlite3_exec(s->db, "RELEASE sg", NULL, NULL, NULL);
	}
	pthread_mutex_unlock(&s->mu);
	return e;
}

static sg_err op_tx_begin(struct sg_store *st)
{
	return tx_begin_mode(SQ(st), 1);
}

static sg_err op_tx_commit(struct sg_store *st)
{
	struct sq_store *s = SQ(st);
	if (s->depth == 0)
		return sg_store_fail(SG_ERR_INVALID, "store: commit without a transaction");
	return tx_end(s, SG_OK);
}

static sg_err op_tx_rollback(struct sg_store *st)
{
	struct sq_store *s = SQ(st);
	if (s->depth == 0)
		return sg_store_fail(SG_ERR_INVALID, "store: rollback without a transaction");
	tx_end(s, SG_ERR_INTERNAL);
	return SG_OK;
}

#define WRITE_BEGIN(s)                                                                             \
	do {                                                                                       \
		sg_err eb_ = tx_begin_mode((s), 1);                                                \
		if (eb_ != SG_OK)                                                                  \
			return eb_;                                                                \
	} while (0)
#define READ_BEGIN(s)                                                                              \
	do {                                                                                       \
		sg_err eb_ = tx_begin_mode((s), 0);                                                \
		if (eb_ != SG_OK)                                                                  \
			return eb_;                                                                \
	} while (0)

/* Runs one INSERT: inside a caller's transaction (the store pool's batch, a job's savepoint)
 * without a savepoint of its own, since a statement is atomic by itself (a failing one leaves
 * the transaction as it was, or rolls all of it back: sq_tx_lost); otherwise as its own
 * transaction. Saves the writer two
 * statements per row in every batch. */
static sg_err sq_insert1(struct sq_store *s, const char *what, const char *sql, const char *fmt,
                         ...)
{
	va_list ap;
	sqlite3_stmt *q;
	pthread_mutex_lock(&s->mu); /* recursive: depth is this thread's when > 0 */
	int inner = s->depth > 0;
	if (!inner) {
		pthread_mutex_unlock(&s->mu);
		WRITE_BEGIN(s);
	}
	va_start(ap, fmt);
	sg_err e = sq_vprep(s, &q, sql, fmt, ap);
	va_end(ap);
	if (e == SG_OK)
		e = sq_done(s, q, what);
	if (!inner)
		return tx_end(s, e);
	pthread_mutex_unlock(&s->mu);
	return e;
}

/* Runs one UPDATE/DELETE in its own transaction; SG_ERR_NOTFOUND when no row matched. */
#define WRITE_ONE(s, what, notfound, sql, ...)                                                     \
	do {                                                                                       \
		WRITE_BEGIN(s);                                                                    \
		sg_err e1_ = sq_run((s), (what), (sql), __VA_ARGS__);                              \
		if (e1_ == SG_OK && sqlite3_changes((s)->db) == 0)                                 \
			e1_ = sg_store_fail(SG_ERR_NOTFOUND, "store: %s", (notfound));             \
		return tx_end((s), e1_);                                                           \
	} while (0)

/* Prepares and binds a statement (as sq_prep) and collects its rows (sg_sql_collect()) into
 * *v, *cnt, which the caller frees on error; resets it. */
static sg_err sq_list(struct sq_store *s, const char *what, size_t sz, sg_sql_read_fn read,
                      void **v, size_t *cnt, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *q;
	va_list ap;
	va_start(ap, fmt);
	sg_err e = sq_vprep(s, &q, sql, fmt, ap);
	va_end(ap);
	if (e != SG_OK)
		return e;
	int rc = SQLITE_DONE;
	e = sg_sql_collect(q, sz, read, s, v, cnt, &rc);
	if (e == SG_OK && rc != SQLITE_DONE)
		e = sq_fail(s, rc, what);
	sqlite3_reset(q);
	return e;
}

/* One row by a text key: SG_ERR_NOTFOUND "store: no NOUN \"ID\"" when there is none. */
static sg_err sq_get(struct sq_store *s, const char *noun, sg_sql_read_fn read, void *out,
                     const char *sql, const char *id)
{
	sqlite3_stmt *q;
	sg_err e = sq_prep(s, &q, sql, "t", id);
	if (e != SG_OK)
		return e;
	int rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		e = read(s, q, out);
	else if (rc == SQLITE_DONE)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no %s \"%s\"", noun, id);
	else
		e = sq_fail(s, rc, noun);
	sqlite3_reset(q);
	return e;
}

/* ---- meta ---- */

static sg_err op_schema_version(struct sg_store *st, int *version)
{
	struct sq_store *s = SQ(st);
	READ_BEGIN(s);
	sqlite3_stmt *q;
	sg_err e = sq_prep(s, &q, "SELECT max(version) FROM schema_version", NULL);
	if (e == SG_OK) {
		int rc = sqlite3_step(q);
		if (rc == SQLITE_ROW)
			*version = sqlite3_column_int(q, 0);
		else
			e = sq_fail(s, rc, "schema version");
		sqlite3_reset(q);
	}
	return tx_end(s, e);
}

static sg_err op_generation(struct sg_store *st, uint64_t *gen)
{
	struct sq_store *s = SQ(st);
	READ_BEGIN(s);
	sqlite3_stmt *q;
	sg_err e = sq_prep(s, &q, "SELECT value FROM meta WHERE key = 'generation'", NULL);
	if (e == SG_OK) {
		int rc = sqlite3_step(q);
		if (rc == SQLITE_ROW)
			*gen = (uint64_t)sqlite3_column_int64(q, 0);
		else
			e = rc == SQLITE_DONE
			        ? sg_store_fail(SG_ERR_INTERNAL, "store: no generation")
			        : sq_fail(s, rc, "generation");
		sqlite3_reset(q);
	}
	return tx_end(s, e);
}

/* ---- users ---- */

static sg_err user_sub_of(struct sq_store *s, const char *name, char *sub)
{
	sqlite3_stmt *q;
	sg_err e = sq_prep(s, &q, "SELECT sub FROM users WHERE name = ?", "t", name);
	if (e != SG_OK)
		return e;
	int rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(q, 0);
		snprintf(sub, SG_STORE_SUB_LEN + 1, "%s", t ? (const char *)t : "");
	} else {
		e = rc == SQLITE_DONE
		        ? sg_store_fail(SG_ERR_NOTFOUND, "store: no user \"%s\"", name)
		        : sq_fail(s, rc, "user lookup");
	}
	sqlite3_reset(q);
	return e;
}

static sg_err op_user_add(struct sg_store *st, const struct sg_store_user *u, char *sub_out)
{
	struct sq_store *s = SQ(st);
	char sub[SG_STORE_SUB_LEN + 1];
	int64_t now = u->created_at ? u->created_at : sg_now_ms();
	WRITE_BEGIN(s);
	sg_err e = SG_ERR_INTERNAL;
	/* A fresh sub: 128 random bits; a collision with any sub ever given (the tombstones
	 * included) is refused by the primary key and redrawn. */
	for (int tries = 0; tries < 4; tries++) {
		e = sg_random_token(sub, sizeof sub, 16);
		if (e != SG_OK) {
			sg_store_fail(e, "store: no random bytes for a sub");
			break;
		}
		e = sq_run(s, "user sub", "INSERT INTO subs (sub, created_at) VALUES (?, ?)", "ti",
		           sub, now);
		if (e != SG_ERR_EXISTS)
			break;
	}
	if (e == SG_OK) {
		e = sq_run(s, "user",
		           "INSERT INTO users (sub, name, password_hash, disabled, created_at) "
		           "VALUES (?, ?, ?, ?, ?)",
		           "tttii", sub, u->name, u->password_hash, (int64_t)(u->disabled != 0),
		           now);
		if (e == SG_ERR_EXISTS)
			sg_store_fail(e, "store: user \"%s\" already exists", u->name);
	}
	for (size_t i = 0; e == SG_OK && i < u->n_val_ids; i++)
		e = sq_run(s, "VAL user id",
		           "INSERT OR REPLACE INTO user_val_ids (sub, service, val_user_id) "
		           "VALUES (?, ?, ?)",
		           "ttt", sub, u->val_ids[i].service, u->val_ids[i].val_user_id);
	e = tx_end(s, e);
	if (e == SG_OK && sub_out)
		memcpy(sub_out, sub, sizeof sub);
	return e;
}

static sg_err read_user(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_user *u = elem;
	int oom = 0;
	memset(u, 0, sizeof *u);
	const unsigned char *sub = sqlite3_column_text(q, 0);
	snprintf(u->sub, sizeof u->sub, "%s", sub ? (const char *)sub : "");
	u->name = col_dup(q, 1, &oom);
	u->password_hash = col_dup(q, 2, &oom);
	u->disabled = sqlite3_column_int(q, 3);
	u->created_at = sqlite3_column_int64(q, 4);
	(void)ctx;
	return oom ? sg_store_fail(SG_ERR_NOMEM, "store: out of memory") : SG_OK;
}

static sg_err load_val_ids(struct sq_store *s, struct sg_store_user *u)
{
	sqlite3_stmt *q;
	sg_err e = sq_prep(s, &q,
	                   "SELECT service, val_user_id FROM user_val_ids WHERE sub = ? "
	                   "ORDER BY service",
	                   "t", u->sub);
	if (e != SG_OK)
		return e;
	size_t cap = 0;
	int rc, oom = 0;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct sg_store_val_id *nv =
		    sg_sql_grow(u->val_ids, &cap, u->n_val_ids, sizeof *nv);
		if (!nv) {
			oom = 1;
			break;
		}
		u->val_ids = nv;
		struct sg_store_val_id *v = &u->val_ids[u->n_val_ids++];
		v->service = col_dup(q, 0, &oom);
		v->val_user_id = col_dup(q, 1, &oom);
	}
	if (oom)
		e = sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
	else if (rc != SQLITE_DONE)
		e = sq_fail(s, rc, "VAL user ids");
	sqlite3_reset(q);
	return e;
}

#define USER_COLS "SELECT sub, name, password_hash, disabled, created_at FROM users "

static sg_err op_user_get(struct sg_store *st, const char *name, const char *sub,
                          struct sg_store_user *out)
{
	struct sq_store *s = SQ(st);
	memset(out, 0, sizeof *out);
	READ_BEGIN(s);
	sg_err e = sq_get(s, "user", read_user, out,
	                  name ? USER_COLS "WHERE name = ?" : USER_COLS "WHERE sub = ?",
	                  name ? name : sub);
	if (e == SG_OK)
		e = load_val_ids(s, out);
	e = tx_end(s, e);
	if (e != SG_OK)
		sg_store_user_clear(out);
	return e;
}

static sg_err op_user_list(struct sg_store *st, struct sg_store_user **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	*out = NULL;
	*n = 0;
	READ_BEGIN(s);
	void *v = NULL;
	size_t cnt = 0;
	sg_err e = sq_list(s, "user list", sizeof(struct sg_store_user), read_user, &v, &cnt,
	                   USER_COLS "ORDER BY name", NULL);
	struct sg_store_user *u = v;
	for (size_t i = 0; e == SG_OK && i < cnt; i++)
		e = load_val_ids(s, &u[i]);
	e = tx_end(s, e);
	if (e != SG_OK) {
		sg_store_user_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

static sg_err op_user_set_password(struct sg_store *st, const char *name, const char *hash)
{
	WRITE_ONE(SQ(st), "user password", "no such user",
	          "UPDATE users SET password_hash = ? WHERE name = ?", "tt", hash, name);
}

static sg_err op_user_set_disabled(struct sg_store *st, const char *name, int disabled)
{
	WRITE_ONE(SQ(st), "user disabled", "no such user",
	          "UPDATE users SET disabled = ? WHERE name = ?", "it", (int64_t)(disabled != 0),
	          name);
}

static sg_err op_user_delete(struct sg_store *st, const char *name)
{
	struct sq_store *s = SQ(st);
	char sub[SG_STORE_SUB_LEN + 1];
	WRITE_BEGIN(s);
	sg_err e = user_sub_of(s, name, sub);
	if (e == SG_OK)
		e = sq_run(s, "user delete", "DELETE FROM users WHERE sub = ?", "t", sub);
	/* The tombstone: the sub stays in subs, so it is never drawn again. */
	if (e == SG_OK)
		e = sq_run(s, "user tombstone", "UPDATE subs SET deleted_at = ? WHERE sub = ?",
		           "it", sg_now_ms(), sub);
	return tx_end(s, e);
}

static sg_err op_user_val_id_set(struct sg_store *st, const char *name, const char *service,
                                 const char *val_user_id)
{
	struct sq_store *s = SQ(st);
	char sub[SG_STORE_SUB_LEN + 1];
	WRITE_BEGIN(s);
	sg_err e = user_sub_of(s, name, sub);
	if (e == SG_OK)
		e = sq_run(
		    s, "VAL user id",
		    "INSERT INTO user_val_ids (sub, service, val_user_id) VALUES (?, ?, ?) "
		    "ON CONFLICT (sub, service) DO UPDATE SET val_user_id = excluded.val_user_id",
		    "ttt", sub, service, val_user_id);
	return tx_end(s, e);
}

static sg_err op_user_val_id_delete(struct sg_store *st, const char *name, const char *service)
{
	struct sq_store *s = SQ(st);
	char sub[SG_STORE_SUB_LEN + 1];
	WRITE_BEGIN(s);
	sg_err e = user_sub_of(s, name, sub);
	if (e == SG_OK)
		e = sq_run(s, "VAL user id",
		           "DELETE FROM user_val_ids WHERE sub = ? AND service = ?", "tt", sub,
		           service);
	if (e == SG_OK && sqlite3_changes(s->db) == 0)
		e = sg_store_fail(SG_ERR_NOTFOUND,
		                  "store: user \"%s\" has no VAL user id for \"%s\"", name,
		                  service);
	return tx_end(s, e);
}

/* ---- string lists in child tables ---- */

static sg_err load_strv(struct sq_store *s, const char *sql, const char *key, char ***out,
                        size_t *n)
{
	sqlite3_stmt *q;
	sg_err e = sq_prep(s, &q, sql, "t", key);
	if (e != SG_OK)
		return e;
	size_t cap = 0;
	int rc, oom = 0;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		char **nv = sg_sql_grow(*out, &cap, *n, sizeof **out);
		if (!nv) {
			oom = 1;
			break;
		}
		*out = nv;
		(*out)[(*n)++] = col_dup(q, 0, &oom);
	}
	if (oom)
		e = sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
	else if (rc != SQLITE_DONE)
		e = sq_fail(s, rc, "list");
	sqlite3_reset(q);
	return e;
}

/* The OAuth client_id namespace is shared by SIM-C clients and VAL servers. */
static sg_err client_id_free(struct sq_store *s, const char *id)
{
	sqlite3_stmt *q;
	sg_err e = sq_prep(s, &q,
	                   "SELECT 1 FROM clients WHERE client_id = ?1 "
	                   "UNION ALL SELECT 1 FROM valservers WHERE name = ?1",
	                   "t", id);
	if (e != SG_OK)
		return e;
	int rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		e = sg_store_fail(SG_ERR_EXISTS, "store: client_id \"%s\" is already taken", id);
	else if (rc != SQLITE_DONE)
		e = sq_fail(s, rc, "client_id lookup");
	sqlite3_reset(q);
	return e;
}

/* ---- clients ---- */

static sg_err op_client_add(struct sg_store *st, const struct sg_store_client *c)
{
	struct sq_store *s = SQ(st);
	WRITE_BEGIN(s);
	sg_err e = client_id_free(s, c->client_id);
	if (e == SG_OK)
		e = sq_run(s, "client",
		           "INSERT INTO clients (client_id, secret_digest, scopes, created_at) "
		           "VALUES (?, ?, ?, ?)",
		           "tbti", c->client_id, c->secret_digest_len ? c->secret_digest : NULL,
		           c->secret_digest_len, c->scopes ? c->scopes : "",
		           c->created_at ? c->created_at : sg_now_ms());
	for (size_t i = 0; e == SG_OK && i < c->n_redirect_uris; i++)
		e = sq_run(
		    s, "redirect URI",
		    "INSERT INTO client_redirect_uris (client_id, pos, uri) VALUES (?, ?, ?)",
		    "tit", c->client_id, (int64_t)i, c->redirect_uris[i]);
	return tx_end(s, e);
}

#define CLIENT_COLS "SELECT client_id, secret_digest, scopes, created_at FROM clients "
#define CLIENT_URIS "SELECT uri FROM client_redirect_uris WHERE client_id = ? ORDER BY pos"

static sg_err read_client(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_client *c = elem;
	int oom = 0;
	memset(c, 0, sizeof *c);
	c->client_id = col_dup(q, 0, &oom);
	c->secret_digest_len = col_blob(q, 1, c->secret_digest, sizeof c->secret_digest);
	c->scopes = col_dup(q, 2, &oom);
	c->created_at = sqlite3_column_int64(q, 3);
	(void)ctx;
	return oom ? sg_store_fail(SG_ERR_NOMEM, "store: out of memory") : SG_OK;
}

static sg_err op_client_get(struct sg_store *st, const char *client_id, struct sg_store_client *out)
{
	struct sq_store *s = SQ(st);
	memset(out, 0, sizeof *out);
	READ_BEGIN(s);
	sg_err e =
	    sq_get(s, "client", read_client, out, CLIENT_COLS "WHERE client_id = ?", client_id);
	if (e == SG_OK)
		e = load_strv(s, CLIENT_URIS, client_id, &out->redirect_uris,
		              &out->n_redirect_uris);
	e = tx_end(s, e);
	if (e != SG_OK)
		sg_store_client_clear(out);
	return e;
}

static sg_err op_client_list(struct sg_store *st, struct sg_store_client **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	*out = NULL;
	*n = 0;
	READ_BEGIN(s);
	void *v = NULL;
	size_t cnt = 0;
	sg_err e = sq_list(s, "client list", sizeof(struct sg_store_client), read_client, &v, &cnt,
	                   CLIENT_COLS "ORDER BY client_id", NULL);
	struct sg_store_client *c = v;
	for (size_t i = 0; e == SG_OK && i < cnt; i++)
		e = load_strv(s, CLIENT_URIS, c[i].client_id, &c[i].redirect_uris,
		              &c[i].n_redirect_uris);
	e = tx_end(s, e);
	if (e != SG_OK) {
		sg_store_client_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

static sg_err op_client_set_secret(struct sg_store *st, const char *client_id,
                                   const unsigned char *digest, size_t len)
{
	WRITE_ONE(SQ(st), "client secret", "no such client",
	          "UPDATE clients SET secret_digest = ? WHERE client_id = ?", "bt",
	          len ? digest : NULL, len, client_id);
}

static sg_err op_client_delete(struct sg_store *st, const char *client_id)
{
	WRITE_ONE(SQ(st), "client delete", "no such client",
	          "DELETE FROM clients WHERE client_id = ?", "t", client_id);
}

/* ---- VAL servers ---- */

static sg_err op_valserver_add(struct sg_store *st, const struct sg_store_valserver *v)
{
	struct sq_store *s = SQ(st);
	WRITE_BEGIN(s);
	sg_err e = client_id_free(s, v->name);
	if (e == SG_OK)
		e = sq_run(
		    s, "VAL server",
		    "INSERT INTO valservers (name, identity, scopes, key_provisioning, disabled, "
		    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
		    "tttiii", v->name, v->identity, v->scopes ? v->scopes : "",
		    (int64_t)(v->key_provisioning != 0), (int64_t)(v->disabled != 0),
		    v->created_at ? v->created_at : sg_now_ms());
	for (size_t i = 0; e == SG_OK && i < v->n_val_services; i++)
		e = sq_run(s, "VAL service",
		           "INSERT OR IGNORE INTO valserver_services (name, service) VALUES (?, ?)",
		           "tt", v->name, v->val_services[i]);
	return tx_end(s, e);
}

#define VALSERVER_COLS                                                                             \
	"SELECT name, identity, scopes, key_provisioning, disabled, created_at FROM valservers "
#define VALSERVER_SERVICES "SELECT service FROM valserver_services WHERE name = ? ORDER BY service"

static sg_err read_valserver(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_valserver *v = elem;
	int oom = 0;
	(void)ctx;
	memset(v, 0, sizeof *v);
	v->name = col_dup(q, 0, &oom);
	v->identity = col_dup(q, 1, &oom);
	v->scopes = col_dup(q, 2, &oom);
	v->key_provisioning = sqlite3_column_int(q, 3);
	v->disabled = sqlite3_column_int(q, 4);
	v->created_at = sqlite3_column_int64(q, 5);
	return oom ? sg_store_fail(SG_ERR_NOMEM, "store: out of memory") : SG_OK;
}

static sg_err op_valserver_get(struct sg_store *st, const char *name,
                               struct sg_store_valserver *out)
{
	struct sq_store *s = SQ(st);
	memset(out, 0, sizeof *out);
	READ_BEGIN(s);
	sg_err e =
	    sq_get(s, "VAL server", read_valserver, out, VALSERVER_COLS "WHERE name = ?", name);
	if (e == SG_OK)
		e = load_strv(s, VALSERVER_SERVICES, name, &out->val_services,
		              &out->n_val_services);
	e = tx_end(s, e);
	if (e != SG_OK)
		sg_store_valserver_clear(out);
	return e;
}

static sg_err op_valserver_list(struct sg_store *st, struct sg_store_valserver **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	*out = NULL;
	*n = 0;
	READ_BEGIN(s);
	void *v = NULL;
	size_t cnt = 0;
	sg_err e = sq_list(s, "VAL server list", sizeof(struct sg_store_valserver), read_valserver,
	                   &v, &cnt, VALSERVER_COLS "ORDER BY name", NULL);
	struct sg_store_valserver *w = v;
	for (size_t i = 0; e == SG_OK && i < cnt; i++)
		e = load_strv(s, VALSERVER_SERVICES, w[i].name, &w[i].val_services,
		              &w[i].n_val_services);
	e = tx_end(s, e);
	if (e != SG_OK) {
		sg_store_valserver_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

static sg_err op_valserver_set_disabled(struct sg_store *st, const char *name, int disabled)
{
	WRITE_ONE(SQ(st), "VAL server disabled", "no such VAL server",
	          "UPDATE valservers SET disabled = ? WHERE name = ?", "it",
	          (int64_t)(disabled != 0), name);
}

static sg_err op_valserver_delete(struct sg_store *st, const char *name)
{
	WRITE_ONE(SQ(st), "VAL server delete", "no such VAL server",
	          "DELETE FROM valservers WHERE name = ?", "t", name);
}

/* ---- signing keys ---- */

static sg_err op_key_add(struct sg_store *st, const struct sg_store_key *k, int64_t retire_after_ms)
{
	struct sq_store *s = SQ(st);
	int64_t now = sg_now_ms();
	WRITE_BEGIN(s);
	sg_err e = SG_OK;
	if (k->active)
		/* Rotation: the signing key stops signing now, and stays in the JWKS until every
		 * token it signed has expired (retire_after_ms: the longest token lifetime). */
		e = sq_run(
		    s, "key rotation",
		    "UPDATE signing_keys SET active = 0, "
		    "not_after_use = CASE WHEN not_after_use = 0 THEN ?1 ELSE not_after_use END,"
		    " retire_at = CASE WHEN retire_at = 0 THEN ?2 ELSE retire_at END "
		    "WHERE active = 1",
		    "ii", now, now + retire_after_ms);
	if (e == SG_OK)
		e = sq_run(s, "signing key",
		           "INSERT INTO signing_keys (kid, alg, priv, public_jwk, created_at, "
		           "not_after_use, retire_at, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		           "ttbtiiii", k->kid, k->alg, k->priv, k->priv_len, k->public_jwk,
		           k->created_at ? k->created_at : now, k->not_after_use, k->retire_at,
		           (int64_t)(k->active != 0));
	return tx_end(s, e);
}

#define KEY_COLS                                                                                   \
	"SELECT kid, alg, priv, public_jwk, created_at, not_after_use, retire_at, active "         \
	"FROM signing_keys "

static sg_err read_key(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_key *k = elem;
	int oom = 0;
	(void)ctx;
	memset(k, 0, sizeof *k);
	k->kid = col_dup(q, 0, &oom);
	k->alg = col_dup(q, 1, &oom);
	const void *p = sqlite3_column_blob(q, 2);
	size_t n = (size_t)sqlite3_column_bytes(q, 2);
	if (p && n) {
		k->priv = malloc(n);
		if (k->priv) {
			memcpy(k->priv, p, n);
			k->priv_len = n;
		} else {
			oom = 1;
		}
	}
	k->public_jwk = col_dup(q, 3, &oom);
	k->created_at = sqlite3_column_int64(q, 4);
	k->not_after_use = sqlite3_column_int64(q, 5);
	k->retire_at = sqlite3_column_int64(q, 6);
	k->active = sqlite3_column_int(q, 7);
	return oom ? sg_store_fail(SG_ERR_NOMEM, "store: out of memory") : SG_OK;
}

static sg_err op_key_get(struct sg_store *st, const char *kid, struct sg_store_key *out)
{
	struct sq_store *s = SQ(st);
	memset(out, 0, sizeof *out);
	READ_BEGIN(s);
	sg_err e = sq_get(s, "signing key", read_key, out, KEY_COLS "WHERE kid = ?", kid);
	e = tx_end(s, e);
	if (e != SG_OK)
		sg_store_key_clear(out);
	return e;
}

static sg_err op_key_list(struct sg_store *st, struct sg_store_key **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	*out = NULL;
	*n = 0;
	READ_BEGIN(s);
	void *v = NULL;
	size_t cnt = 0;
	sg_err e = sq_list(s, "key list", sizeof(struct sg_store_key), read_key, &v, &cnt,
	                   KEY_COLS "ORDER BY created_at DESC, kid", NULL);
	e = tx_end(s, e);
	if (e != SG_OK) {
		sg_store_key_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

static sg_err op_key_retire(struct sg_store *st, const char *kid, int64_t retire_at)
{
	WRITE_ONE(SQ(st), "key retire", "no such signing key",
	          "UPDATE signing_keys SET active = 0, "
	          "not_after_use = CASE WHEN not_after_use = 0 THEN ?1 ELSE not_after_use END, "
	          "retire_at = ?2 WHERE kid = ?3",
	          "iit", sg_now_ms(), retire_at, kid);
}

static sg_err op_key_delete(struct sg_store *st, const char *kid)
{
	WRITE_ONE(SQ(st), "key delete", "no such signing key",
	          "DELETE FROM signing_keys WHERE kid = ?", "t", kid);
}

/* ---- authorization codes ---- */

static sg_err op_code_put(struct sg_store *st, const struct sg_store_code *c)
{
	return sq_insert1(
	    SQ(st), "authorization code",
	    "INSERT INTO auth_codes (digest, client_id, sub, redirect_uri, scope, nonce, "
	    "code_challenge, acr, auth_time, expires_at, used_at, grant_id) "
	    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
	    "btttttttiit", c->digest, c->digest_len, c->client_id, c->sub, c->redirect_uri,
	    c->scope, c->nonce, c->code_challenge, c->acr, c->auth_time, c->expires_at,
	    c->grant_id);
}

/* OAuth 2.0 (RFC 6749 §4.1.2, security BCP §4.5): a code is used at most once; the check and
 * the mark are one transaction, so two concurrent exchanges cannot both succeed. */
static sg_err op_code_consume(struct sg_store *st, const unsigned char *digest, size_t len,
                              int64_t now, struct sg_store_code *out, enum sg_store_use *use)
{
	struct sq_store *s = SQ(st);
	WRITE_BEGIN(s);
	sqlite3_stmt *q;
	sg_err e =
	    sq_prep(s, &q,
	            "SELECT client_id, sub, redirect_uri, scope, nonce, code_challenge, acr, "
	            "auth_time, expires_at, used_at, grant_id FROM auth_codes WHERE digest = ?",
	            "b", digest, len);
	if (e == SG_OK) {
		int rc = sqlite3_step(q), oom = 0;
		if (rc == SQLITE_ROW) {
			memcpy(out->digest, digest, len);
			out->digest_len = len;
			out->client_id = col_dup(q, 0, &oom);
			out->sub = col_dup(q, 1, &oom);
			out->redirect_uri = col_dup(q, 2, &oom);
			out->scope = col_dup(q, 3, &oom);
			out->nonce = col_dup(q, 4, &oom);
			out->code_challenge = col_dup(q, 5, &oom);
			out->acr = col_dup(q, 6, &oom);
			out->auth_time = sqlite3_column_int64(q, 7);
			out->expires_at = sqlite3_column_int64(q, 8);
			out->used_at = sqlite3_column_int64(q, 9);
			out->grant_id = col_dup(q, 10, &oom);
			if (oom)
				e = sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
		} else if (rc == SQLITE_DONE) {
			e = sg_store_fail(SG_ERR_NOTFOUND, "store: unknown authorization code");
		} else {
			e = sq_fail(s, rc, "authorization code");
		}
		sqlite3_reset(q);
	}
	if (e == SG_OK) {
		if (out->used_at) {
			*use = SG_STORE_USE_REPLAY;
		} else if (out->expires_at <= now) {
			*use = SG_STORE_USE_EXPIRED;
		} else {
			out->used_at = now > 0 ? now : 1;
			e = sq_run(s, "authorization code",
			           "UPDATE auth_codes SET used_at = ? WHERE digest = ?", "ib",
			           out->used_at, digest, len);
			*use = SG_STORE_USE_OK;
		}
	}
	e = tx_end(s, e);
	if (e != SG_OK)
		sg_store_code_clear(out);
	return e;
}

/* ---- refresh tokens and grants ---- */

static sg_err op_refresh_put(struct sg_store *st, const struct sg_store_refresh *r)
{
	return sq_insert1(SQ(st), "refresh token",
	                  "INSERT INTO refresh_tokens (digest, grant_id, client_id, sub, scope, "
	                  "expires_at, rotated_at, revoked) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
	                  "bttttii", r->digest, r->digest_len, r->grant_id, r->client_id, r->sub,
	                  r->scope, r->expires_at, (int64_t)(r->revoked != 0));
}

/* Refresh-token rotation with reuse detection (OAuth 2.0 security BCP §4.14.2). */
static sg_err op_refresh_consume(struct sg_store *st, const unsigned char *digest, size_t len,
                                 int64_t now, struct sg_store_refresh *out, enum sg_store_use *use)
{
	struct sq_store *s = SQ(st);
	WRITE_BEGIN(s);
	sqlite3_stmt *q;
	sg_err e =
	    sq_prep(s, &q,
	            "SELECT r.grant_id, r.client_id, r.sub, r.scope, r.expires_at, r.rotated_at,"
	            " r.revoked OR EXISTS (SELECT 1 FROM revoked v WHERE v.kind = 2 AND "
	            "v.id = r.grant_id) FROM refresh_tokens r WHERE r.digest = ?",
	            "b", digest, len);
	if (e == SG_OK) {
		int rc = sqlite3_step(q), oom = 0;
		if (rc == SQLITE_ROW) {
			memcpy(out->digest, digest, len);
			out->digest_len = len;
			out->grant_id = col_dup(q, 0, &oom);
			out->client_id = col_dup(q, 1, &oom);
			out->sub = col_dup(q, 2, &oom);
			out->scope = col_dup(q, 3, &oom);
			out->expires_at = sqlite3_column_int64(q, 4);
			out->rotated_at = sqlite3_column_int64(q, 5);
			out->revoked = sqlite3_column_int(q, 6);
			if (oom)
				e = sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
		} else if (rc == SQLITE_DONE) {
			e = sg_store_fail(SG_ERR_NOTFOUND, "store: unknown refresh token");
		} else {
			e = sq_fail(s, rc, "refresh token");
		}
		sqlite3_reset(q);
	}
	if (e == SG_OK) {
		if (out->revoked) {
			*use = SG_STORE_USE_REVOKED;
		} else if (out->rotated_at) {
			*use = SG_STORE_USE_REPLAY;
		} else if (out->expires_at <= now) {
			*use = SG_STORE_USE_EXPIRED;
		} else {
			out->rotated_at = now > 0 ? now : 1;
			e = sq_run(s, "refresh token",
			           "UPDATE refresh_tokens SET rotated_at = ? WHERE digest = ?",
			           "ib", out->rotated_at, digest, len);
			*use = SG_STORE_USE_OK;
		}
	}
	e = tx_end(s, e);
	if (e != SG_OK)
		sg_store_refresh_clear(out);
	return e;
}

static sg_err op_grant_revoke(struct sg_store *st, const char *grant_id, int64_t now,
                              int64_t expires_at)
{
	struct sq_store *s = SQ(st);
	WRITE_BEGIN(s);
	sg_err e =
	    sq_run(s, "grant revoke", "UPDATE refresh_tokens SET revoked = 1 WHERE grant_id = ?",
	           "t", grant_id);
	if (e == SG_OK)
		e = sq_run(
		    s, "grant revoke",
		    "INSERT INTO revoked (kind, id, revoked_at, expires_at) VALUES (2, ?, ?, ?) "
		    "ON CONFLICT (kind, id) DO UPDATE SET "
		    "expires_at = max(expires_at, excluded.expires_at)",
		    "tii", grant_id, now, expires_at);
	return tx_end(s, e);
}

/* Every grant of a client or of a user: removing a client, disabling or removing a user
 * revokes what they were issued, so resource servers refuse their access tokens (the
 * revocation list) before they expire. */
static sg_err op_grants_revoke_of(struct sg_store *st, const char *client_id, const char *sub,
                                  int64_t now, int64_t expires_at, size_t *n)
{
	struct sq_store *s = SQ(st);
	const char *who = client_id ? client_id : sub;
	WRITE_BEGIN(s);
	/* "WHERE true": SQLite's upsert after a SELECT needs it to parse ON CONFLICT */
	sg_err e = sq_run(s, "grants revoke",
	                  client_id ? "INSERT INTO revoked (kind, id, revoked_at, expires_at) "
	                              "SELECT 2, grant_id, ?1, ?2 FROM ("
	                              "SELECT grant_id FROM refresh_tokens WHERE client_id = ?3 "
	                              "UNION SELECT grant_id FROM auth_codes WHERE client_id = ?3) "
	                              "WHERE true ON CONFLICT (kind, id) DO UPDATE SET "
	                              "expires_at = max(expires_at, excluded.expires_at)"
	                            : "INSERT INTO revoked (kind, id, revoked_at, expires_at) "
	                              "SELECT 2, grant_id, ?1, ?2 FROM ("
	                              "SELECT grant_id FROM refresh_tokens WHERE sub = ?3 "
	                              "UNION SELECT grant_id FROM auth_codes WHERE sub = ?3) "
	                              "WHERE true ON CONFLICT (kind, id) DO UPDATE SET "
	                              "expires_at = max(expires_at, excluded.expires_at)",
	                  "iit", now, expires_at, who);
	if (e == SG_OK && n)
		*n = (size_t)sqlite3_changes(s->db);
	if (e == SG_OK)
		e = sq_run(s, "grants revoke",
		           client_id ? "UPDATE refresh_tokens SET revoked = 1 WHERE client_id = ?"
		                     : "UPDATE refresh_tokens SET revoked = 1 WHERE sub = ?",
		           "t", who);
	if (e == SG_OK)
		e = sq_run(
		    s, "grants revoke",
		    client_id
		        ? "UPDATE auth_codes SET used_at = ? WHERE client_id = ? AND used_at = 0"
		        : "UPDATE auth_codes SET used_at = ? WHERE sub = ? AND used_at = 0",
		    "it", now > 0 ? now : 1, who);
	return tx_end(s, e);
}

static sg_err op_grant_is_revoked(struct sg_store *st, const char *grant_id, int *revoked)
{
	struct sq_store *s = SQ(st);
	READ_BEGIN(s);
	sqlite3_stmt *q;
	sg_err e = sq_prep(s, &q, "SELECT 1 FROM revoked WHERE kind = 2 AND id = ?", "t", grant_id);
	if (e == SG_OK) {
		int rc = sqlite3_step(q);
		if (rc == SQLITE_ROW || rc == SQLITE_DONE)
			*revoked = rc == SQLITE_ROW;
		else
			e = sq_fail(s, rc, "grant");
		sqlite3_reset(q);
	}
	return tx_end(s, e);
}

static sg_err op_jti_revoke(struct sg_store *st, const char *jti, int64_t now, int64_t expires_at)
{
	struct sq_store *s = SQ(st);
	WRITE_BEGIN(s);
	sg_err e =
	    sq_run(s, "token revoke",
	           "INSERT INTO revoked (kind, id, revoked_at, expires_at) VALUES (1, ?, ?, ?) "
	           "ON CONFLICT (kind, id) DO NOTHING",
	           "tii", jti, now, expires_at);
	return tx_end(s, e);
}

static sg_err read_revoked(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_revoked *r = elem;
	int oom = 0;
	(void)ctx;
	r->kind = (enum sg_store_revoked_kind)sqlite3_column_int(q, 0);
	r->id = col_dup(q, 1, &oom);
	r->revoked_at = sqlite3_column_int64(q, 2);
	r->expires_at = sqlite3_column_int64(q, 3);
	return oom ? sg_store_fail(SG_ERR_NOMEM, "store: out of memory") : SG_OK;
}

static sg_err op_revoked_list(struct sg_store *st, int64_t since, int64_t now,
                              struct sg_store_revoked **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	*out = NULL;
	*n = 0;
	READ_BEGIN(s);
	void *v = NULL;
	size_t cnt = 0;
	sg_err e =
	    sq_list(s, "revocation list", sizeof(struct sg_store_revoked), read_revoked, &v, &cnt,
	            "SELECT kind, id, revoked_at, expires_at FROM revoked "
	            "WHERE revoked_at >= ? AND expires_at > ? ORDER BY revoked_at, kind, id",
	            "ii", since, now);
	e = tx_end(s, e);
	if (e != SG_OK) {
		sg_store_revoked_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

/* LIMIT of a batch: -1 is none in SQLite. */
static int64_t sq_batch(size_t batch)
{
	return batch && batch <= INT64_MAX ? (int64_t)batch : -1;
}

static sg_err op_purge(struct sg_store *st, int64_t now, size_t batch, uint64_t *deleted)
{
	struct sq_store *s = SQ(st);
	/* Each walks its expires_at index and reads only rows it may delete (at most batch of
	 * them, ?2), whatever else the table holds. A used code and a rotated refresh token stay
	 * a day past their own expiry, the longest an access token lives
	 * (idm.access_token_ttl_s): until then their replay still revokes the grant (RFC 6749
	 * §4.1.2, RFC 9700 §4.14.2); after that it finds nothing and is refused as unknown, as it
	 * was refused as expired. Not the grant's lifetime: a grant that keeps refreshing would
	 * keep every token it ever rotated, a row per refresh and device for ever. A grant's
	 * revocation (kind 2) stays while a refresh token of the grant is in the table: it also
	 * refuses a token of the grant stored after it (op_refresh_consume); that lookup is one
	 * seek in refresh_tokens_grant (grant_id, expires_at). */
	static const char *const sql[] = {
	    "DELETE FROM auth_codes WHERE rowid IN (SELECT rowid FROM auth_codes"
	    "  WHERE expires_at <= ?1 AND (used_at = 0 OR expires_at <= ?1 - 86400000) LIMIT ?2)",
	    "DELETE FROM refresh_tokens WHERE rowid IN (SELECT rowid FROM refresh_tokens"
	    "  WHERE expires_at <= ?1 - 86400000 LIMIT ?2)",
	    "DELETE FROM revoked WHERE (kind, id) IN (SELECT kind, id FROM revoked v"
	    "  WHERE expires_at <= ?1 AND (kind != 2 OR NOT EXISTS (SELECT 1 FROM refresh_tokens r"
	    "  WHERE r.grant_id = v.id AND r.expires_at > ?1 - 86400000)) LIMIT ?2)",
	    /* key versions never released again (km/server.c releasable): superseded ones, and
	     * those past their validUntil, a day later (not_after 0: no end, a group key's); a
	     * revoked key's id stays taken until then (PAYLOAD_ID_CONFLICT), and so do the key
	     * quotas it counts in */
	    "DELETE FROM km_keys WHERE rowid IN (SELECT rowid FROM km_keys WHERE superseded_at > 0"
	    "  AND superseded_at <= ?1 - 86400000 LIMIT ?2)",
	    "DELETE FROM km_keys WHERE rowid IN (SELECT rowid FROM km_keys"
	    "  WHERE not_after > 0 AND not_after <= ?1 - 86400000 LIMIT ?2)",
	};
	uint64_t total = 0;
	WRITE_BEGIN(s);
	sg_err e = SG_OK;
	for (size_t i = 0; e == SG_OK && i < sizeof sql / sizeof sql[0]; i++) {
		e = sq_run(s, "purge", sql[i], "ii", now, sq_batch(batch));
		if (e == SG_OK)
			total += (uint64_t)sqlite3_changes(s->db);
	}
	e = tx_end(s, e);
	if (e == SG_OK && deleted)
		*deleted = total;
	return e;
}

/* ---- audit ---- */

static sg_err op_audit_append(struct sg_store *st, const struct sg_store_audit *a)
{
	return sq_insert1(SQ(st), "audit",
	                  "INSERT INTO audit (ts, actor, action, object, refpoint, detail) "
	                  "VALUES (?, ?, ?, ?, ?, ?)",
	                  "ittttt", a->ts ? a->ts : sg_now_ms(), a->actor, a->action, a->object,
	                  a->refpoint, a->detail);
}

static sg_err read_audit(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_audit *a = elem;
	int oom = 0;
	(void)ctx;
	a->id = sqlite3_column_int64(q, 0);
	a->ts = sqlite3_column_int64(q, 1);
	a->actor = col_dup(q, 2, &oom);
	a->action = col_dup(q, 3, &oom);
	a->object = col_dup(q, 4, &oom);
	a->refpoint = col_dup(q, 5, &oom);
	a->detail = col_dup(q, 6, &oom);
	return oom ? sg_store_fail(SG_ERR_NOMEM, "store: out of memory") : SG_OK;
}

static sg_err op_audit_list(struct sg_store *st, int64_t after_id, size_t limit,
                            struct sg_store_audit **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	*out = NULL;
	*n = 0;
	READ_BEGIN(s);
	void *v = NULL;
	size_t cnt = 0;
	sg_err e = sq_list(s, "audit list", sizeof(struct sg_store_audit), read_audit, &v, &cnt,
	                   "SELECT id, ts, actor, action, object, refpoint, detail FROM audit "
	                   "WHERE id > ? ORDER BY id LIMIT ?",
	                   "ii", after_id, limit ? (int64_t)limit : (int64_t)-1);
	e = tx_end(s, e);
	if (e != SG_OK) {
		sg_store_audit_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

static sg_err op_audit_prune(struct sg_store *st, int64_t before, uint64_t max_rows, size_t batch,
                             uint64_t *deleted)
{
	struct sq_store *s = SQ(st);
	/* Within the oldest batch rows (w, read in id order: a batch reads what it deletes and
	 * no more, whatever the table holds), the cut is the first row not older than before (or
	 * the one past w when all are older), or the oldest of the newest max_rows (max(id) -
	 * max_rows + 1: ids may have gaps, so this keeps at most max_rows), whichever is further.
	 * The rows of w before it go. */
	int64_t cap = max_rows && max_rows < INT64_MAX ? (int64_t)max_rows : INT64_MAX;
	WRITE_BEGIN(s);
	sg_err e = sq_run(s, "audit prune", "INSERT INTO audit_prune (active) VALUES (1)", NULL);
	if (e == SG_OK)
		e = sq_run(s, "audit prune",
		           "WITH w AS (SELECT id, ts FROM audit ORDER BY id LIMIT ?3)"
		           " DELETE FROM audit WHERE id IN (SELECT id FROM w WHERE id < max("
		           "  coalesce((SELECT min(id) FROM w WHERE ts >= ?1),"
		           "           (SELECT coalesce(max(id), 0) + 1 FROM w)),"
		           "  (SELECT coalesce(max(id), 0) FROM audit) - ?2 + 1))",
		           "iii", before > 0 ? before : INT64_MIN, cap, sq_batch(batch));
	uint64_t n = e == SG_OK ? (uint64_t)sqlite3_changes(s->db) : 0;
	if (e == SG_OK)
		e = sq_run(s, "audit prune", "DELETE FROM audit_prune", NULL);
	e = tx_end(s, e);
	if (deleted)
		*deleted = e == SG_OK ? n : 0;
	return e;
}

/* ---- open / close ---- */

static void op_close(struct sg_store *st)
{
	struct sq_store *s = SQ(st);
	for (size_t i = 0; i < s->nstmts; i++)
		sqlite3_finalize(s->stmts[i].q);
	sqlite3_close_v2(s->db);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static const struct sg_store_ops sq_ops = {
    .name = "sqlite",
    .close = op_close,
    .schema_version = op_schema_version,
    .generation = op_generation,
    .tx_begin = op_tx_begin,
    .tx_commit = op_tx_commit,
    .tx_rollback = op_tx_rollback,
    .user_add = op_user_add,
    .user_get = op_user_get,
    .user_list = op_user_list,
    .user_set_password = op_user_set_password,
    .user_set_disabled = op_user_set_disabled,
    .user_delete = op_user_delete,
    .user_val_id_set = op_user_val_id_set,
    .user_val_id_delete = op_user_val_id_delete,
    .client_add = op_client_add,
    .client_get = op_client_get,
    .client_list = op_client_list,
    .client_set_secret = op_client_set_secret,
    .client_delete = op_client_delete,
    .valserver_add = op_valserver_add,
    .valserver_get = op_valserver_get,
    .valserver_list = op_valserver_list,
    .valserver_set_disabled = op_valserver_set_disabled,
    .valserver_delete = op_valserver_delete,
    .key_add = op_key_add,
    .key_get = op_key_get,
    .key_list = op_key_list,
    .key_retire = op_key_retire,
    .key_delete = op_key_delete,
    .code_put = op_code_put,
    .code_consume = op_code_consume,
    .refresh_put = op_refresh_put,
    .refresh_consume = op_refresh_consume,
    .grant_revoke = op_grant_revoke,
    .grant_is_revoked = op_grant_is_revoked,
    .grants_revoke_of = op_grants_revoke_of,
    .jti_revoke = op_jti_revoke,
    .revoked_list = op_revoked_list,
    .purge = op_purge,
    .audit_append = op_audit_append,
    .audit_list = op_audit_list,
    .audit_prune = op_audit_prune,
};

/* Applies the missing migrations in one transaction; refuses a database from a newer build. */
static sg_err migrate(struct sq_store *s, const char *path, char *err, size_t errlen)
{
	sg_err e = sq_exec(s, "BEGIN IMMEDIATE", "begin");
	if (e == SG_OK)
		e = sq_exec(s,
		            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
		            "schema_version");
	int version = 0;
	if (e == SG_OK) {
		sqlite3_stmt *q;
		int rc = sqlite3_prepare_v2(
		    s->db, "SELECT coalesce(max(version), 0) FROM schema_version", -1, &q, NULL);
		if (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
			version = sqlite3_column_int(q, 0);
		else
			e = sq_fail(s, rc, "schema version");
		sqlite3_finalize(q);
	}
	if (e == SG_OK && version > SG_STORE_SCHEMA_VERSION) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "store: %s has schema version %d, newer than the %d this sealguard "
		               "(%s) knows; it was written by a newer sealguard: upgrade, or use "
		               "another state dir",
		               path, version, SG_STORE_SCHEMA_VERSION, SG_VERSION);
	}
	for (int v = version; e == SG_OK && v < SG_STORE_SCHEMA_VERSION; v++) {
		e = sq_exec(s, sg_store_sqlite_migrations[v], "migration");
		if (e != SG_OK)
			sg_fail(err, errlen, e,
			        "store: %s: migration to schema version %d failed: %s", path, v + 1,
			        sg_store_last_error());
	}
	if (e == SG_OK && version < SG_STORE_SCHEMA_VERSION) {
		char sql[96];
		snprintf(sql, sizeof sql,
		         "DELETE FROM schema_version; INSERT INTO schema_version VALUES (%d)",
		         SG_STORE_SCHEMA_VERSION);
		e = sq_exec(s, sql, "schema_version");
	}
	if (e == SG_OK)
		e = sq_exec(s, "COMMIT", "commit");
	if (e != SG_OK) {
		if (!sqlite3_get_autocommit(s->db))
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		if (err && !*err)
			sg_fail(err, errlen, e, "store: %s: %s", path, sg_store_last_error());
	}
	return e;
}

static sg_err pragma_check(struct sq_store *s, const char *sql, const char *want, const char *path,
                           char *err, size_t errlen)
{
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
	sg_err e = SG_OK;
	if (rc != SQLITE_OK) {
		e = sg_fail(err, errlen, SG_ERR_IO, "store: %s: %s: %s", path, sql,
		            sqlite3_errmsg(s->db));
	} else {
		rc = sqlite3_step(q);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			e = sg_fail(err, errlen, SG_ERR_IO, "store: %s: %s: %s", path, sql,
			            sqlite3_errmsg(s->db));
		else if (want && (rc != SQLITE_ROW || !sqlite3_column_text(q, 0) ||
		                  strcmp((const char *)sqlite3_column_text(q, 0), want)))
			e = sg_fail(err, errlen, SG_ERR_IO, "store: %s: %s did not take effect",
			            path, sql);
	}
	sqlite3_finalize(q);
	return e;
}

sg_err sg_store_sqlite_open(const char *path, struct sg_store **out, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	/* The database holds password hashes and key material: created 0600, never through a
	 * symlink. SQLite gives its -wal and -shm files the mode of the database file. */
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (fchmod(fd, 0600) != 0) {
			int en = errno;
			close(fd);
			return sg_fail(err, errlen, SG_ERR_IO, "store: chmod %s: %s", path,
			               strerror(en));
		}
		close(fd);
	} else if (errno != EEXIST) {
		return sg_fail(err, errlen, SG_ERR_IO, "store: cannot create %s: %s", path,
		               strerror(errno));
	}

	struct sq_store *s = calloc(1, sizeof *s);
	if (!s)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "store: out of memory");
	s->base.ops = &sq_ops;
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&s->mu, &ma);
	pthread_mutexattr_destroy(&ma);

	/* NOMUTEX: the connection is serialized by s->mu. */
	int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	sg_err e = SG_OK;
	if (rc != SQLITE_OK) {
		e = sg_fail(err, errlen, SG_ERR_IO, "store: cannot open %s: %s", path,
		            s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, SQ_BUSY_TIMEOUT_MS);
	/* WAL: readers never wait for a writer; synchronous=FULL: a commit is fsynced before it
	 * returns, so an acknowledged write survives a crash (DESIGN.md §5). */
	if ((e = pragma_check(s, "PRAGMA journal_mode = WAL", "wal", path, err, errlen)) ||
	    (e = pragma_check(s, "PRAGMA synchronous = FULL", NULL, path, err, errlen)) ||
	    (e = pragma_check(s, "PRAGMA synchronous", "2", path, err, errlen)) ||
	    (e = pragma_check(s, "PRAGMA foreign_keys = ON", NULL, path, err, errlen)) ||
	    (e = pragma_check(s, "PRAGMA foreign_keys", "1", path, err, errlen)) ||
	    (e = pragma_check(s, "PRAGMA trusted_schema = OFF", NULL, path, err, errlen)))
		goto fail;
	if ((e = migrate(s, path, err, errlen)) != SG_OK)
		goto fail;
	*out = &s->base;
	return SG_OK;
fail:
	op_close(&s->base);
	return e;
}

void *sg_store_sqlite_handle(struct sg_store *st)
{
	return st && st->ops == &sq_ops ? SQ(st)->db : NULL;
}
