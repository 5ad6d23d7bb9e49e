/* store/ipp.c: VAL services configurations provisioned over ss-ipp (TS 29.549
 * SS_IdmParameterProvisioning, REQUIREMENTS I11). A store extension: it runs its SQL on the
 * SQLite connection inside a transaction opened with sg_store_tx_begin() (which serializes the
 * connection), so the backend's function table stays as it is. Other backends answer
 * SG_ERR_CONFIG until they implement it. */
#include "store/backend.h"

#include "base/clock.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

static sg_err ipp_fail(sqlite3 *db, int rc, const char *what)
{
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		return sg_store_fail(SG_ERR_EXISTS, "store: %s: already exists", what);
	return sg_store_fail(SG_ERR_IO, "store: %s: %s", what, sqlite3_errmsg(db));
}

/* Opens a transaction and hands out the handle; SG_ERR_CONFIG for a non-SQLite backend. */
static sg_err ipp_begin(struct sg_store *st, sqlite3 **db)
{
	if (!st)
		return sg_store_fail(SG_ERR_INVALID, "store: NULL store");
	*db = sg_store_sqlite_handle(st);
	if (!*db)
		return sg_store_fail(SG_ERR_CONFIG, "store: ss-ipp needs the sqlite backend");
	return sg_store_tx_begin(st);
}

static sg_err ipp_end(struct sg_store *st, sg_err e)
{
	if (e == SG_OK)
		return sg_store_tx_commit(st);
	sg_store_tx_rollback(st);
	return e;
}

static char *dup_col(sqlite3_stmt *q, int i)
{
	const unsigned char *t = sqlite3_column_text(q, i);
	return strdup(t ? (const char *)t : "");
}

static sg_err read_row(sqlite3_stmt *q, struct sg_store_ipp_conf *c)
{
	memset(c, 0, sizeof *c);
	c->conf_id = dup_col(q, 0);
	c->val_server = dup_col(q, 1);
	c->body = dup_col(q, 2);
	c->created_at = sqlite3_column_int64(q, 3);
	c->updated_at = sqlite3_column_int64(q, 4);
	if (!c->conf_id || !c->val_server || !c->body) {
		sg_store_ipp_clear(c);
		return sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
	}
	return SG_OK;
}

sg_err sg_store_ipp_put(struct sg_store *st, const struct sg_store_ipp_conf *c, int create)
{
	if (!c || !c->conf_id || !*c->conf_id || !c->val_server || !c->body)
		return sg_store_fail(SG_ERR_INVALID,
		                     "store: a configuration needs id, owner, body");
	sqlite3 *db;
	sg_err e = ipp_begin(st, &db);
	if (e != SG_OK)
		return e;
	int64_t now = sg_now_ms();
	sqlite3_stmt *q = NULL;
	const char *sql = create ? "INSERT INTO ipp_configs (conf_id, val_server, body, created_at,"
	                           " updated_at) VALUES (?1, ?2, ?3, ?4, ?4)"
	                         : "UPDATE ipp_configs SET body = ?3, updated_at = ?4"
	                           " WHERE conf_id = ?1 AND val_server = ?2";
	int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, c->conf_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, c->val_server, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, c->body, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 4, now);
		rc = sqlite3_step(q);
	}
	if (rc != SQLITE_DONE)
		e = ipp_fail(db, rc, "ipp configuration");
	else if (!create && sqlite3_changes(db) == 0)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no such configuration");
	sqlite3_finalize(q);
	return ipp_end(st, e);
}

sg_err sg_store_ipp_get(struct sg_store *st, const char *conf_id, struct sg_store_ipp_conf *out)
{
	if (!conf_id || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: conf_id required");
	sqlite3 *db;
	sg_err e = ipp_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db,
	                            "SELECT conf_id, val_server, body, created_at, updated_at"
	                            " FROM ipp_configs WHERE conf_id = ?1",
	                            -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, conf_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	if (rc == SQLITE_ROW)
		e = read_row(q, out);
	else if (rc == SQLITE_DONE)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no such configuration");
	else
		e = ipp_fail(db, rc, "ipp configuration");
	sqlite3_finalize(q);
	return ipp_end(st, e);
}

sg_err sg_store_ipp_list(struct sg_store *st, const char *val_server,
                         struct sg_store_ipp_conf **out, size_t *n)
{
	if (!out || !n)
		return sg_store_fail(SG_ERR_INVALID, "store: output required");
	*out = NULL;
	*n = 0;
	sqlite3 *db;
	sg_err e = ipp_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db,
	                            "SELECT conf_id, val_server, body, created_at, updated_at"
	                            " FROM ipp_configs WHERE ?1 IS NULL OR val_server = ?1"
	                            " ORDER BY conf_id",
	                            -1, &q, NULL);
	struct sg_store_ipp_conf *v = NULL;
	size_t cnt = 0, cap = 0;
	if (rc == SQLITE_OK) {
		if (val_server)
			sqlite3_bind_text(q, 1, val_server, -1, SQLITE_STATIC);
		while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
			if (cnt == cap) {
				size_t nc = cap ? cap * 2 : 8;
				struct sg_store_ipp_conf *nv = realloc(v, nc * sizeof *nv);
				if (!nv) {
					e = sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
					break;
				}
				v = nv;
				cap = nc;
			}
			if ((e = read_row(q, &v[cnt])) != SG_OK)
				break;
			cnt++;
		}
	}
	if (e == SG_OK && rc != SQLITE_DONE)
		e = ipp_fail(db, rc, "ipp configurations");
	sqlite3_finalize(q);
	e = ipp_end(st, e);
	if (e != SG_OK) {
		sg_store_ipp_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

sg_err sg_store_ipp_delete(struct sg_store *st, const char *conf_id)
{
	if (!conf_id)
		return sg_store_fail(SG_ERR_INVALID, "store: conf_id required");
	sqlite3 *db;
	sg_err e = ipp_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db, "DELETE FROM ipp_configs WHERE conf_id = ?1", -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, conf_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	if (rc != SQLITE_DONE)
		e = ipp_fail(db, rc, "ipp configuration");
	else if (sqlite3_changes(db) == 0)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no such configuration");
	sqlite3_finalize(q);
	return ipp_end(st, e);
}

void sg_store_ipp_clear(struct sg_store_ipp_conf *c)
{
	if (!c)
		return;
	free(c->conf_id);
	free(c->val_server);
	free(c->body);
	memset(c, 0, sizeof *c);
}

void sg_store_ipp_list_free(struct sg_store_ipp_conf *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sg_store_ipp_clear(&v[i]);
	free(v);
}
