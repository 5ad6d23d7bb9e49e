/* store/gm.c: VAL group documents of ss-gm (TS 29.549 SS_GroupManagement; TS 23.434 §10.3
 * group management). A store extension like store/ipp.c: it runs its SQL on the SQLite
 * connection inside a transaction opened with sg_store_tx_begin() (which serializes the
 * connection), so the backend's function table stays as it is. Other backends answer
 * SG_ERR_CONFIG until they implement it. */
#include "store/sqlutil.h"

#include "base/clock.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define GM_COLS "doc_id, owner, val_group_id, body, created_at, updated_at"

static sg_err read_row(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_gm_doc *d = elem;
	(void)ctx;
	memset(d, 0, sizeof *d);
	d->doc_id = sg_sql_dup_col(q, 0);
	d->owner = sg_sql_dup_col(q, 1);
	d->val_group_id = sg_sql_dup_col(q, 2);
	d->body = sg_sql_dup_col(q, 3);
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
	return sg_sql_write(
	    st, "ss-gm", "group document", create ? NULL : "no such group document",
	    create ? "INSERT INTO gm_docs (doc_id, owner, val_group_id, body,"
	             " created_at, updated_at, size)"
	             " VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)"
	           : "UPDATE gm_docs SET val_group_id = ?3, body = ?4, updated_at = ?5,"
	             " size = ?6 WHERE doc_id = ?1",
	    "ttttii", d->doc_id, d->owner, d->val_group_id, d->body, sg_now_ms(),
	    (int64_t)strlen(d->body));
}

static sg_err read_nothing(void *ctx, sqlite3_stmt *q, void *elem)
{
	(void)ctx;
	(void)q;
	(void)elem;
	return SG_OK;
}

sg_err sg_store_gm_group_taken(struct sg_store *st, const char *val_group_id, const char *doc_id,
                               int *taken)
{
	*taken = 0;
	if (!val_group_id || !doc_id)
		return sg_store_fail(SG_ERR_INVALID, "store: valGroupId and doc_id required");
	sg_err e =
	    sg_sql_get(st, "ss-gm", "group document", "no other group document", read_nothing, NULL,
	               "SELECT doc_id FROM gm_docs WHERE val_group_id = ?1 AND doc_id != ?2"
	               " LIMIT 1",
	               "tt", val_group_id, doc_id);
	if (e == SG_OK)
		*taken = 1;
	return e == SG_ERR_NOTFOUND ? SG_OK : e;
}

sg_err sg_store_gm_owner_usage(struct sg_store *st, const char *owner, const char *doc_id,
                               uint64_t *docs, uint64_t *bytes)
{
	*docs = *bytes = 0;
	if (!owner || !doc_id)
		return sg_store_fail(SG_ERR_INVALID, "store: owner and doc_id required");
	struct sg_sql_int2 u = {0, 0};
	sg_err e = sg_sql_get(st, "ss-gm", "group document usage", "no usage", sg_sql_read_int2, &u,
	                      "SELECT count(*), coalesce(sum(size), 0) FROM gm_docs"
	                      " WHERE owner = ?1 AND doc_id != ?2",
	                      "tt", owner, doc_id);
	*docs = (uint64_t)u.a;
	*bytes = (uint64_t)u.b;
	return e;
}

sg_err sg_store_gm_get(struct sg_store *st, const char *doc_id, struct sg_store_gm_doc *out)
{
	if (!doc_id || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: doc_id required");
	return sg_sql_get(st, "ss-gm", "group document", "no such group document", read_row, out,
	                  "SELECT " GM_COLS " FROM gm_docs WHERE doc_id = ?1", "t", doc_id);
}

sg_err sg_store_gm_list(struct sg_store *st, struct sg_store_gm_doc **out, size_t *n)
{
	if (!out || !n)
		return sg_store_fail(SG_ERR_INVALID, "store: output required");
	*out = NULL;
	*n = 0;
	void *v;
	size_t cnt;
	sg_err e =
	    sg_sql_list(st, "ss-gm", "group documents", sizeof(struct sg_store_gm_doc), read_row,
	                &v, &cnt, "SELECT " GM_COLS " FROM gm_docs ORDER BY doc_id", NULL);
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
	return sg_sql_write(st, "ss-gm", "group document", "no such group document",
	                    "DELETE FROM gm_docs WHERE doc_id = ?1", "t", doc_id);
}

sg_err sg_store_gm_generation(struct sg_store *st, uint64_t *gen)
{
	if (!gen)
		return sg_store_fail(SG_ERR_INVALID, "store: output required");
	sqlite3 *db;
	sg_err e = sg_sql_begin(st, "ss-gm", &db);
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
		e = sg_sql_fail(db, rc, "group-document generation");
	sqlite3_finalize(q);
	return sg_sql_end(st, e);
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
