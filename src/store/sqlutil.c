/* store/sqlutil.c: SQLite helpers shared by the SQLite backend and the store extensions. */
#include "store/sqlutil.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *sg_sql_grow(void *v, size_t *cap, size_t n, size_t sz)
{
	if (n < *cap)
		return v;
	size_t ncap = *cap ? *cap * 2 : 8;
	char *nv = realloc(v, ncap * sz);
	if (!nv)
		return NULL;
	memset(nv + n * sz, 0, (ncap - n) * sz);
	*cap = ncap;
	return nv;
}

sg_err sg_sql_collect(sqlite3_stmt *q, size_t sz, sg_sql_read_fn read, void *ctx, void **v,
                      size_t *cnt, int *rc)
{
	size_t cap = *cnt;
	sg_err e = SG_OK;
	while (e == SG_OK && (*rc = sqlite3_step(q)) == SQLITE_ROW) {
		char *nv = sg_sql_grow(*v, &cap, *cnt, sz);
		if (!nv)
			return sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
		*v = nv;
		e = read(ctx, q, nv + (*cnt)++ * sz);
	}
	return e;
}

/* ---- store extensions ---- */

sg_err sg_sql_fail(sqlite3 *db, int rc, const char *what)
{
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		return sg_store_fail(SG_ERR_EXISTS, "store: %s: already exists", what);
	return sg_store_fail(SG_ERR_IO, "store: %s: %s", what, sqlite3_errmsg(db));
}

sg_err sg_sql_begin(struct sg_store *st, const char *feature, sqlite3 **db)
{
	if (!st)
		return sg_store_fail(SG_ERR_INVALID, "store: NULL store");
	*db = sg_store_sqlite_handle(st);
	if (!*db)
		return sg_store_fail(SG_ERR_CONFIG, "store: %s needs the sqlite backend", feature);
	return sg_store_tx_begin(st);
}

sg_err sg_sql_end(struct sg_store *st, sg_err e)
{
	if (e == SG_OK)
		return sg_store_tx_commit(st);
	sg_store_tx_rollback(st);
	return e;
}

sg_err sg_sql_read_int2(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_sql_int2 *v = elem;
	(void)ctx;
	v->a = sqlite3_column_int64(q, 0);
	v->b = sqlite3_column_int64(q, 1);
	return SG_OK;
}

char *sg_sql_dup_col(sqlite3_stmt *q, int i)
{
	const unsigned char *t = sqlite3_column_text(q, i);
	return strdup(t ? (const char *)t : "");
}

/* Prepares sql into *q and binds it as fmt describes; returns the sqlite3_prepare_v2() code.
 * Parameters past the statement's last one are consumed but not bound. */
static int vprep(sqlite3 *db, sqlite3_stmt **q, const char *sql, const char *fmt, va_list ap)
{
	*q = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, q, NULL);
	if (rc != SQLITE_OK)
		return rc;
	int np = sqlite3_bind_parameter_count(*q);
	for (int i = 1; fmt && *fmt; fmt++, i++) {
		if (*fmt == 't') {
			const char *t = va_arg(ap, const char *);
			if (i <= np)
				sqlite3_bind_text(*q, i, t, -1, SQLITE_STATIC);
		} else if (*fmt == 'i') {
			int64_t v = va_arg(ap, int64_t);
			if (i <= np)
				sqlite3_bind_int64(*q, i, v);
		} else if (*fmt == 'b') {
			const void *p = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);
			if (i <= np)
				sqlite3_bind_blob(*q, i, p, (int)n, SQLITE_STATIC);
		}
	}
	return SQLITE_OK;
}

static sg_err vexec(sqlite3 *db, const char *what, const char *sql, const char *fmt, va_list ap)
{
	sqlite3_stmt *q;
	int rc = vprep(db, &q, sql, fmt, ap);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(q);
	sg_err e = rc == SQLITE_DONE ? SG_OK : sg_sql_fail(db, rc, what);
	sqlite3_finalize(q);
	return e;
}

sg_err sg_sql_exec(sqlite3 *db, const char *what, const char *sql, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sg_err e = vexec(db, what, sql, fmt, ap);
	va_end(ap);
	return e;
}

static sg_err vwrite(struct sg_store *st, const char *feature, const char *what,
                     const char *notfound, size_t *changed, const char *sql, const char *fmt,
                     va_list ap)
{
	sqlite3 *db;
	sg_err e = sg_sql_begin(st, feature, &db);
	if (e != SG_OK)
		return e;
	e = vexec(db, what, sql, fmt, ap);
	size_t n = e == SG_OK ? (size_t)sqlite3_changes(db) : 0;
	if (changed)
		*changed = n;
	if (e == SG_OK && notfound && n == 0)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: %s", notfound);
	return sg_sql_end(st, e);
}

sg_err sg_sql_write(struct sg_store *st, const char *feature, const char *what,
                    const char *notfound, const char *sql, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sg_err e = vwrite(st, feature, what, notfound, NULL, sql, fmt, ap);
	va_end(ap);
	return e;
}

sg_err sg_sql_write_count(struct sg_store *st, const char *feature, const char *what,
                          size_t *changed, const char *sql, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sg_err e = vwrite(st, feature, what, NULL, changed, sql, fmt, ap);
	va_end(ap);
	return e;
}

sg_err sg_sql_get(struct sg_store *st, const char *feature, const char *what, const char *notfound,
                  sg_sql_read_fn read, void *out, const char *sql, const char *fmt, ...)
{
	sqlite3 *db;
	sg_err e = sg_sql_begin(st, feature, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q;
	va_list ap;
	va_start(ap, fmt);
	int rc = vprep(db, &q, sql, fmt, ap);
	va_end(ap);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		e = read(NULL, q, out);
	else if (rc == SQLITE_DONE)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: %s", notfound);
	else
		e = sg_sql_fail(db, rc, what);
	sqlite3_finalize(q);
	return sg_sql_end(st, e);
}

sg_err sg_sql_list(struct sg_store *st, const char *feature, const char *what, size_t sz,
                   sg_sql_read_fn read, void **v, size_t *cnt, const char *sql, const char *fmt,
                   ...)
{
	*v = NULL;
	*cnt = 0;
	sqlite3 *db;
	sg_err e = sg_sql_begin(st, feature, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q;
	va_list ap;
	va_start(ap, fmt);
	int rc = vprep(db, &q, sql, fmt, ap);
	va_end(ap);
	if (rc == SQLITE_OK)
		e = sg_sql_collect(q, sz, read, NULL, v, cnt, &rc);
	if (e == SG_OK && rc != SQLITE_DONE)
		e = sg_sql_fail(db, rc, what);
	sqlite3_finalize(q);
	return sg_sql_end(st, e);
}
