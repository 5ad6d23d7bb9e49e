/* store/ipp.c: VAL services configurations provisioned over ss-ipp (TS 29.549
 * SS_IdmParameterProvisioning, REQUIREMENTS I11). A store extension: it runs its SQL on the
 * SQLite connection inside a transaction opened with sg_store_tx_begin() (which serializes the
 * connection), so the backend's function table stays as it is. Other backends answer
 * SG_ERR_CONFIG until they implement it. */
#include "store/sqlutil.h"

#include "base/clock.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

static sg_err read_row(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_ipp_conf *c = elem;
	(void)ctx;
	memset(c, 0, sizeof *c);
	c->conf_id = sg_sql_dup_col(q, 0);
	c->val_server = sg_sql_dup_col(q, 1);
	c->body = sg_sql_dup_col(q, 2);
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
	return sg_sql_write(
	    st, "ss-ipp", "ipp configuration", create ? NULL : "no such configuration",
	    create ? "INSERT INTO ipp_configs (conf_id, val_server, body, created_at,"
	             " updated_at) VALUES (?1, ?2, ?3, ?4, ?4)"
	           : "UPDATE ipp_configs SET body = ?3, updated_at = ?4"
	             " WHERE conf_id = ?1 AND val_server = ?2",
	    "ttti", c->conf_id, c->val_server, c->body, sg_now_ms());
}

sg_err sg_store_ipp_get(struct sg_store *st, const char *conf_id, struct sg_store_ipp_conf *out)
{
	if (!conf_id || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: conf_id required");
	return sg_sql_get(st, "ss-ipp", "ipp configuration", "no such configuration", read_row, out,
	                  "SELECT conf_id, val_server, body, created_at, updated_at"
	                  " FROM ipp_configs WHERE conf_id = ?1",
	                  "t", conf_id);
}

sg_err sg_store_ipp_list(struct sg_store *st, const char *val_server,
                         struct sg_store_ipp_conf **out, size_t *n)
{
	if (!out || !n)
		return sg_store_fail(SG_ERR_INVALID, "store: output required");
	*out = NULL;
	*n = 0;
	void *v;
	size_t cnt;
	sg_err e = sg_sql_list(st, "ss-ipp", "ipp configurations", sizeof(struct sg_store_ipp_conf),
	                       read_row, &v, &cnt,
	                       "SELECT conf_id, val_server, body, created_at, updated_at"
	                       " FROM ipp_configs WHERE ?1 IS NULL OR val_server = ?1"
	                       " ORDER BY conf_id",
	                       "t", val_server);
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
	return sg_sql_write(st, "ss-ipp", "ipp configuration", "no such configuration",
	                    "DELETE FROM ipp_configs WHERE conf_id = ?1", "t", conf_id);
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
