/* store/gm.c: VAL group documents of ss-gm (TS 29.549 SS_GroupManagement; TS 23.434 §10.3
 * group management). A store extension like store/ipp.c: it runs its SQL on the SQLite
 * connection inside a transaction opened with sg_store_tx_begin() (which serializes the
 * connection), so the backend's function table stays as it is. Other backends answer
 * SG_ERR_CONFIG until they implement it. */
#include "store/backend.h"

#include "base/clock.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

static sg_err gm_fail(sqlite3 *db, int rc, const char *what)
{
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		return sg_store_fail(SG_ERR_EXISTS, "store: %s: already exists", what);
	return sg_store_fail(SG_ERR_IO, "store: %s: %s", what, sqlite3_errmsg(db));
}

static sg_err gm_begin(struct sg_store *st, sqlite3 **db)
{
	if (!st)
		return sg_store_fail(SG_ERR_INVALID, "store: NULL store");
	*db = sg_store_sqlite_handle(st);
	if (!*db)
		return sg_store_fail(SG_ERR_CONFIG, "store: ss-gm needs the sqlite backend");
	return sg_store_tx_begin(st);
}

static sg_err gm_end(struct sg_store *st, sg_err e)
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

#define GM_COLS "doc_id, owner, val_group_id, body, created_at, updated_at"

static sg_err read_row(sqlite3_stmt *q, struct sg_store_gm_doc *d)
{
	memset(d, 0, sizeof *d);
	d->doc_id = dup_col(q, 0);
	d->owner = dup_col(q, 1);
	d->val_group_id = dup_col(q, 2);
	d->body = dup_col(q, 3);
	d->created_at = sqlite3_column_int64(q, 4);
	d->updated_at = sqlite3_column_int64(q, 5);
	if (!d->doc_id || !d->owner || !d->val_group_id || !d->body) {
		sg_store_gm_clear(d);
		return sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
	}
	return SG_OK;
}

sg_err sg_store_gm_put(struct sg_store *st, const struct sg_store_gm_doc *d, int create)
{
	if (!d || !d->doc_id || !*d->doc_id || !d->val_group_id || !d->body ||
	    (create && (!d->owner || !*d->owner)))
		return sg_store_fail(SG_ERR_INVALID,
		                     "store: a group document needs id, owner, valGroupId, body");
	sqlite3 *db;
	sg_err e = gm_begin(st, &db);
	if (e != SG_OK)
		return e;
	int64_t now = sg_now_ms();
	sqlite3_stmt *q = NULL;
	const char *sql = create
	                      ? "INSERT INTO gm_docs (doc_id, owner, val_group_id, body,"
	                        " created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)"
	                      : "UPDATE gm_docs SET val_group_id = ?3, body = ?4, updated_at = ?5"
	                        " WHERE doc_id = ?1";
	int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, d->doc_id, -1, SQLITE_STATIC);
		if (create)
			sqlite3_bind_text(q, 2, d->owner, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, d->val_group_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 4, d->body, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 5, now);
		rc = sqlite3_step(q);
	}
	if (rc != SQLITE_DONE)
		e = gm_fail(db, rc, "group document");
	else if (!create && sqlite3_changes(db) == 0)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no such group document");
	sqlite3_finalize(q);
	return gm_end(st, e);
}

sg_err sg_store_gm_get(struct sg_store *st, const char *doc_id, struct sg_store_gm_doc *out)
{
	if (!doc_id || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: doc_id required");
	sqlite3 *db;
	sg_err e = gm_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT " GM_COLS " FROM gm_docs WHERE doc_id = ?1", -1, &q,
	                            NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, doc_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	if (rc == SQLITE_ROW)
		e = read_row(q, out);
	else if (rc == SQLITE_DONE)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no such group document");
	else
		e = gm_fail(db, rc, "group document");
	sqlite3_finalize(q);
	return gm_end(st, e);
}

sg_err sg_store_gm_list(struct sg_store *st, struct sg_store_gm_doc **out, size_t *n)
{
	if (!out || !n)
		return sg_store_fail(SG_ERR_INVALID, "store: output required");
	*out = NULL;
	*n = 0;
	sqlite3 *db;
	sg_err e = gm_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc =
	    sqlite3_prepare_v2(db, "SELECT " GM_COLS " FROM gm_docs ORDER BY doc_id", -1, &q, NULL);
	struct sg_store_gm_doc *v = NULL;
	size_t cnt = 0, cap = 0;
	if (rc == SQLITE_OK) {
		while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
			if (cnt == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct sg_store_gm_doc *nv = realloc(v, nc * sizeof *nv);
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
		e = gm_fail(db, rc, "group documents");
	sqlite3_finalize(q);
	e = gm_end(st, e);
	if (e != SG_OK) {
		sg_store_gm_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

sg_err sg_store_gm_delete(struct sg_store *st, const char *doc_id)
{
	if (!doc_id)
		return sg_store_fail(SG_ERR_INVALID, "store: doc_id required");
	sqlite3 *db;
	sg_err e = gm_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db, "DELETE FROM gm_docs WHERE doc_id = ?1", -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, doc_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	if (rc != SQLITE_DONE)
		e = gm_fail(db, rc, "group document");
	else if (sqlite3_changes(db) == 0)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no such group document");
	sqlite3_finalize(q);
	return gm_end(st, e);
}

sg_err sg_store_gm_generation(struct sg_store *st, uint64_t *gen)
{
	if (!gen)
		return sg_store_fail(SG_ERR_INVALID, "store: output required");
	sqlite3 *db;
	sg_err e = gm_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'gm_generation'", -1,
	                            &q, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		*gen = (uint64_t)sqlite3_column_int64(q, 0);
	else if (rc == SQLITE_DONE)
		e = sg_store_fail(SG_ERR_INTERNAL, "store: no group-document generation");
	else
		e = gm_fail(db, rc, "group-document generation");
	sqlite3_finalize(q);
	return gm_end(st, e);
}

void sg_store_gm_clear(struct sg_store_gm_doc *d)
{
	if (!d)
		return;
	free(d->doc_id);
	free(d->owner);
	free(d->val_group_id);
	free(d->body);
	memset(d, 0, sizeof *d);
}

void sg_store_gm_list_free(struct sg_store_gm_doc *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sg_store_gm_clear(&v[i]);
	free(v);
}
