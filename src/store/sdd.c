/* store/sdd.c: SEALDD-S state (TS 29.548 SDD_Transmission): the transmissions VAL servers
 * requested (RequestTrans, one per VAL service) and their connection status subscriptions, so
 * that an acknowledged request survives a restart or a crash of the SEALDD server. A store
 * extension like store/gm.c: its SQL runs on the SQLite connection inside sg_store_tx_begin()
 * (which serializes the connection), so the backend's function table stays as it is. Other
 * backends answer SG_ERR_CONFIG until they implement it. */
#include "store/sqlutil.h"

#include "base/clock.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define FEATURE "SEALDD"

/* ---- transmissions ---------------------------------------------------------------------- */

#define TRANS_COLS "val_service, client_id, identity, trans_type, body, created_at, updated_at"

static sg_err read_trans(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_sdd_trans *t = elem;
	(void)ctx;
	memset(t, 0, sizeof *t);
	t->val_service = sg_sql_dup_col(q, 0);
	t->client_id = sg_sql_dup_col(q, 1);
	t->identity = sg_sql_dup_col(q, 2);
	t->trans_type = sg_sql_dup_col(q, 3);
	t->body = sg_sql_dup_col(q, 4);
	t->created_at = sqlite3_column_int64(q, 5);
	t->updated_at = sqlite3_column_int64(q, 6);
	if (!t->val_service || !t->client_id || !t->identity || !t->trans_type || !t->body) {
		sg_store_sdd_trans_clear(t);
		return sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
	}
	return SG_OK;
}

sg_err sg_store_sdd_trans_put(struct sg_store *st, const struct sg_store_sdd_trans *t)
{
	if (!t || !t->val_service || !*t->val_service || !t->client_id || !*t->client_id ||
	    !t->identity || !*t->identity || !t->body || !t->trans_type ||
	    (strcmp(t->trans_type, "regular") != 0 && strcmp(t->trans_type, "urllc") != 0))
		return sg_store_fail(
		    SG_ERR_INVALID,
		    "store: a transmission needs VAL service, VAL server, identity, "
		    "transType regular|urllc, body");
	/* one transmission per VAL service: a later request replaces the earlier one */
	return sg_sql_write(st, FEATURE, "transmission", NULL,
	                    "INSERT INTO sdd_trans (" TRANS_COLS ")"
	                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
	                    " ON CONFLICT (val_service) DO UPDATE SET client_id = ?2,"
	                    " identity = ?3, trans_type = ?4, body = ?5, updated_at = ?6",
	                    "ttttti", t->val_service, t->client_id, t->identity, t->trans_type,
	                    t->body, sg_now_ms());
}

sg_err sg_store_sdd_trans_get(struct sg_store *st, const char *val_service,
                              struct sg_store_sdd_trans *out)
{
	if (!val_service || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: val_service required");
	memset(out, 0, sizeof *out);
	return sg_sql_get(
	    st, FEATURE, "transmission", "no transmission for this VAL service", read_trans, out,
	    "SELECT " TRANS_COLS " FROM sdd_trans WHERE val_service = ?1", "t", val_service);
}

sg_err sg_store_sdd_trans_list(struct sg_store *st, struct sg_store_sdd_trans **out, size_t *n)
{
	if (!out || !n)
		return sg_store_fail(SG_ERR_INVALID, "store: output required");
	*out = NULL;
	*n = 0;
	void *v;
	size_t cnt;
	sg_err e = sg_sql_list(st, FEATURE, "transmissions", sizeof(struct sg_store_sdd_trans),
	                       read_trans, &v, &cnt,
	                       "SELECT " TRANS_COLS " FROM sdd_trans ORDER BY val_service", NULL);
	if (e != SG_OK) {
		sg_store_sdd_trans_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

sg_err sg_store_sdd_trans_delete(struct sg_store *st, const char *val_service)
{
	if (!val_service)
		return sg_store_fail(SG_ERR_INVALID, "store: val_service required");
	return sg_sql_write(st, FEATURE, "transmission", "no transmission for this VAL service",
	                    "DELETE FROM sdd_trans WHERE val_service = ?1", "t", val_service);
}

void sg_store_sdd_trans_clear(struct sg_store_sdd_trans *t)
{
	if (!t)
		return;
	free(t->val_service);
	free(t->client_id);
	free(t->identity);
	free(t->trans_type);
	free(t->body);
	memset(t, 0, sizeof *t);
}

void sg_store_sdd_trans_list_free(struct sg_store_sdd_trans *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sg_store_sdd_trans_clear(&v[i]);
	free(v);
}

/* ---- connection status subscriptions ---------------------------------------------------- */

#define SUBSC_COLS "subsc_id, owner, identity, body, expires_at, created_at, updated_at"

static sg_err read_subsc(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_sdd_subsc *s = elem;
	(void)ctx;
	memset(s, 0, sizeof *s);
	s->subsc_id = sg_sql_dup_col(q, 0);
	s->owner = sg_sql_dup_col(q, 1);
	s->identity = sg_sql_dup_col(q, 2);
	s->body = sg_sql_dup_col(q, 3);
	s->expires_at = sqlite3_column_int64(q, 4);
	s->created_at = sqlite3_column_int64(q, 5);
	s->updated_at = sqlite3_column_int64(q, 6);
	if (!s->subsc_id || !s->owner || !s->identity || !s->body) {
		sg_store_sdd_subsc_clear(s);
		return sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
	}
	return SG_OK;
}

sg_err sg_store_sdd_subsc_put(struct sg_store *st, const struct sg_store_sdd_subsc *s, int create)
{
	if (!s || !s->subsc_id || !*s->subsc_id || !s->owner || !*s->owner || !s->identity ||
	    !*s->identity || !s->body || s->expires_at <= 0)
		return sg_store_fail(
		    SG_ERR_INVALID,
		    "store: a subscription needs id, owner, identity, body, expiry");
	int64_t now = sg_now_ms();
	return sg_sql_write(st, FEATURE, "subscription", create ? NULL : "no such subscription",
	                    create ? "INSERT INTO sdd_subsc (" SUBSC_COLS ")"
	                             " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
	                           : "UPDATE sdd_subsc SET body = ?4, expires_at = ?5,"
	                             " updated_at = ?6 WHERE subsc_id = ?1 AND owner = ?2"
	                             " AND identity = ?3",
	                    "ttttii", s->subsc_id, s->owner, s->identity, s->body, s->expires_at,
	                    now);
}

sg_err sg_store_sdd_subsc_get(struct sg_store *st, const char *subsc_id, const char *owner,
                              const char *identity, int64_t now_ms, struct sg_store_sdd_subsc *out)
{
	if (!subsc_id || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: subsc_id required");
	memset(out, 0, sizeof *out);
	return sg_sql_get(st, FEATURE, "subscription", "no such subscription", read_subsc, out,
	                  "SELECT " SUBSC_COLS " FROM sdd_subsc WHERE subsc_id = ?1"
	                  " AND (?2 IS NULL OR owner = ?2) AND (?3 IS NULL OR identity = ?3)"
	                  " AND expires_at > ?4",
	                  "ttti", subsc_id, owner, identity, now_ms);
}

sg_err sg_store_sdd_subsc_list(struct sg_store *st, const char *owner,
                               struct sg_store_sdd_subsc **out, size_t *n)
{
	if (!out || !n)
		return sg_store_fail(SG_ERR_INVALID, "store: output required");
	*out = NULL;
	*n = 0;
	void *v;
	size_t cnt;
	sg_err e = sg_sql_list(st, FEATURE, "subscriptions", sizeof(struct sg_store_sdd_subsc),
	                       read_subsc, &v, &cnt,
	                       "SELECT " SUBSC_COLS " FROM sdd_subsc"
	                       " WHERE ?1 IS NULL OR owner = ?1 ORDER BY subsc_id",
	                       "t", owner);
	if (e != SG_OK) {
		sg_store_sdd_subsc_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

static sg_err read_count(void *ctx, sqlite3_stmt *q, void *elem)
{
	(void)ctx;
	*(size_t *)elem = (size_t)sqlite3_column_int64(q, 0);
	return SG_OK;
}

sg_err sg_store_sdd_subsc_count(struct sg_store *st, const char *owner, size_t *n)
{
	if (!n)
		return sg_store_fail(SG_ERR_INVALID, "store: output required");
	*n = 0;
	if (!owner)
		return sg_sql_get(st, FEATURE, "subscriptions", "no count", read_count, n,
		                  "SELECT count(*) FROM sdd_subsc", NULL);
	return sg_sql_get(st, FEATURE, "subscriptions", "no count", read_count, n,
	                  "SELECT count(*) FROM sdd_subsc WHERE owner = ?1", "t", owner);
}

sg_err sg_store_sdd_subsc_delete(struct sg_store *st, const char *subsc_id, const char *owner,
                                 const char *identity, int64_t now_ms)
{
	if (!subsc_id || !owner || !identity)
		return sg_store_fail(SG_ERR_INVALID,
		                     "store: subsc_id, owner and identity required");
	return sg_sql_write(st, FEATURE, "subscription", "no such subscription",
	                    "DELETE FROM sdd_subsc WHERE subsc_id = ?1 AND owner = ?2"
	                    " AND identity = ?3 AND expires_at > ?4",
	                    "ttti", subsc_id, owner, identity, now_ms);
}

sg_err sg_store_sdd_subsc_purge(struct sg_store *st, int64_t now_ms, const char *owner,
                                const char *identity, size_t *n)
{
	if (n)
		*n = 0;
	if (owner && !identity)
		return sg_store_fail(SG_ERR_INVALID, "store: an owner needs its identity");
	return sg_sql_write_count(
	    st, FEATURE, "subscriptions", n,
	    "DELETE FROM sdd_subsc WHERE (expires_at > 0 AND expires_at <= ?1)"
	    " OR (owner = ?2 AND identity <> ?3)",
	    "itt", now_ms, owner, identity);
}

sg_err sg_store_sdd_subsc_delete_owner(struct sg_store *st, const char *owner, size_t *n)
{
	if (n)
		*n = 0;
	if (!owner)
		return sg_store_fail(SG_ERR_INVALID, "store: an owner is required");
	return sg_sql_write_count(st, FEATURE, "subscriptions", n,
	                          "DELETE FROM sdd_subsc WHERE owner = ?1", "t", owner);
}

sg_err sg_store_sdd_subsc_settle(struct sg_store *st, int64_t expires_at, size_t *n)
{
	if (n)
		*n = 0;
	if (expires_at <= 0)
		return sg_store_fail(SG_ERR_INVALID, "store: an expiry is required");
	return sg_sql_write_count(st, FEATURE, "subscriptions", n,
	                          "UPDATE sdd_subsc SET expires_at = ?1 WHERE expires_at = 0", "i",
	                          expires_at);
}

void sg_store_sdd_subsc_clear(struct sg_store_sdd_subsc *s)
{
	if (!s)
		return;
	free(s->subsc_id);
	free(s->owner);
	free(s->identity);
	free(s->body);
	memset(s, 0, sizeof *s);
}

void sg_store_sdd_subsc_list_free(struct sg_store_sdd_subsc *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sg_store_sdd_subsc_clear(&v[i]);
	free(v);
}
