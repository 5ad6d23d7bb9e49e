/* store/km.c: key management records (TS 33.434 §5.3, §5.8; TS 29.549 ss-kpp, ss-kir): the
 * SKM-C public keys and the versions of provisioned keys. A store extension like store/gm.c:
 * its SQL runs on the SQLite connection inside sg_store_tx_begin() (which serializes the
 * connection). Key bytes only ever reach this file sealed by the caller (km/), and the sealed
 * blobs are wiped when released. */
#include "store/sqlutil.h"

#include "base/clock.h"

#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

/* ---- SKM-C keys ------------------------------------------------------------------------- */

void sg_store_km_client_clear(struct sg_store_km_client *c)
{
	if (!c)
		return;
	free(c->owner);
	free(c->client_id);
	free(c->kid);
	free(c->jwk);
	free(c->skmc_uri);
	memset(c, 0, sizeof *c);
}

sg_err sg_store_km_client_put(struct sg_store *st, const struct sg_store_km_client *c)
{
	if (!c || !c->owner || !*c->owner || !c->client_id || !c->kid || !c->jwk || !c->skmc_uri)
		return sg_store_fail(SG_ERR_INVALID,
		                     "store: an SKM-C key needs owner, kid, jwk, uri");
	return sg_sql_write(st, "key management", "SKM-C key", NULL,
	                    "INSERT OR REPLACE INTO km_clients (owner, client_id, kid, jwk,"
	                    " skmc_uri, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	                    "ttttti", c->owner, c->client_id, c->kid, c->jwk, c->skmc_uri,
	                    c->created_at ? c->created_at : sg_now_ms());
}

static sg_err read_client(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_km_client *c = elem;
	(void)ctx;
	c->owner = sg_sql_dup_col(q, 0);
	c->client_id = sg_sql_dup_col(q, 1);
	c->kid = sg_sql_dup_col(q, 2);
	c->jwk = sg_sql_dup_col(q, 3);
	c->skmc_uri = sg_sql_dup_col(q, 4);
	c->created_at = sqlite3_column_int64(q, 5);
	if (!c->owner || !c->client_id || !c->kid || !c->jwk || !c->skmc_uri) {
		sg_store_km_client_clear(c);
		return sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
	}
	return SG_OK;
}

sg_err sg_store_km_client_get(struct sg_store *st, const char *owner, const char *client_id,
                              struct sg_store_km_client *out)
{
	if (!owner || !client_id || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: owner and client_id required");
	memset(out, 0, sizeof *out);
	return sg_sql_get(st, "key management", "SKM-C key", "no SKM-C key registered", read_client,
	                  out,
	                  "SELECT owner, client_id, kid, jwk, skmc_uri, created_at FROM"
	                  " km_clients WHERE owner = ?1 AND client_id = ?2",
	                  "tt", owner, client_id);
}

sg_err sg_store_km_client_delete(struct sg_store *st, const char *owner, const char *client_id)
{
	if (!owner || !client_id)
		return sg_store_fail(SG_ERR_INVALID, "store: owner and client_id required");
	return sg_sql_write(st, "key management", "SKM-C key", "no SKM-C key registered",
	                    "DELETE FROM km_clients WHERE owner = ?1 AND client_id = ?2", "tt",
	                    owner, client_id);
}

/* ---- keys ------------------------------------------------------------------------------- */

void sg_store_km_key_clear(struct sg_store_km_key *k)
{
	if (!k)
		return;
	free(k->val_service);
	free(k->key_id);
	free(k->target_kind);
	free(k->target);
	free(k->provider);
	free(k->skmc_uri);
	if (k->sealed)
		OPENSSL_cleanse(k->sealed, k->sealed_len);
	free(k->sealed);
	memset(k, 0, sizeof *k);
}

void sg_store_km_key_list_free(struct sg_store_km_key *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		sg_store_km_key_clear(&v[i]);
	free(v);
}

#define KM_COLS                                                                                    \
	"val_service, key_id, version, target_kind, target, provider, skmc_uri, sealed,"           \
	" not_before, not_after, created_at, revoked_at, superseded_at"

static sg_err read_key(void *ctx, sqlite3_stmt *q, void *elem)
{
	struct sg_store_km_key *k = elem;
	(void)ctx;
	memset(k, 0, sizeof *k);
	k->val_service = sg_sql_dup_col(q, 0);
	k->key_id = sg_sql_dup_col(q, 1);
	k->version = sqlite3_column_int64(q, 2);
	k->target_kind = sg_sql_dup_col(q, 3);
	k->target = sg_sql_dup_col(q, 4);
	k->provider = sg_sql_dup_col(q, 5);
	k->skmc_uri = sg_sql_dup_col(q, 6);
	int n = sqlite3_column_bytes(q, 7);
	const void *b = sqlite3_column_blob(q, 7);
	k->sealed_len = n > 0 ? (size_t)n : 0;
	k->sealed = malloc(k->sealed_len + 1);
	if (k->sealed && b && n > 0)
		memcpy(k->sealed, b, k->sealed_len);
	k->not_before = sqlite3_column_int64(q, 8);
	k->not_after = sqlite3_column_int64(q, 9);
	k->created_at = sqlite3_column_int64(q, 10);
	k->revoked_at = sqlite3_column_int64(q, 11);
	k->superseded_at = sqlite3_column_int64(q, 12);
	if (!k->val_service || !k->key_id || !k->target_kind || !k->target || !k->provider ||
	    !k->skmc_uri || !k->sealed) {
		sg_store_km_key_clear(k);
		return sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
	}
	return SG_OK;
}

sg_err sg_store_km_key_add(struct sg_store *st, const struct sg_store_km_key *k)
{
	if (!k || !k->val_service || !*k->val_service || !k->key_id || !*k->key_id ||
	    k->version < 1 || !k->target_kind || !k->target || !k->provider || !k->skmc_uri ||
	    !k->sealed || !k->sealed_len)
		return sg_store_fail(SG_ERR_INVALID, "store: incomplete key record");
	sqlite3 *db;
	sg_err e = sg_sql_begin(st, "key management", &db);
	if (e != SG_OK)
		return e;
	int64_t now = sg_now_ms();
	e = sg_sql_exec(db, "key",
	                "INSERT INTO km_keys (" KM_COLS ") VALUES (?1, ?2, ?3, ?4, ?5,"
	                " ?6, ?7, ?8, ?9, ?10, ?11, 0, 0)",
	                "ttittttbiii", k->val_service, k->key_id, k->version, k->target_kind,
	                k->target, k->provider, k->skmc_uri, (const void *)k->sealed, k->sealed_len,
	                k->not_before, k->not_after, k->created_at ? k->created_at : now);
	if (e == SG_OK)
		e = sg_sql_exec(db, "key",
		                "UPDATE km_keys SET superseded_at = ?4 WHERE val_service = ?1"
		                " AND key_id = ?2 AND version < ?3 AND superseded_at = 0",
		                "ttii", k->val_service, k->key_id, k->version, now);
	return sg_sql_end(st, e);
}

sg_err sg_store_km_key_latest(struct sg_store *st, const char *val_service, const char *key_id,
                              struct sg_store_km_key *out)
{
	if (!val_service || !key_id || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: VAL service and key id required");
	memset(out, 0, sizeof *out);
	return sg_sql_get(st, "key management", "key", "no such key", read_key, out,
	                  "SELECT " KM_COLS " FROM km_keys WHERE val_service = ?1 AND"
	                  " key_id = ?2 ORDER BY version DESC LIMIT 1",
	                  "tt", val_service, key_id);
}

sg_err sg_store_km_key_retire(struct sg_store *st, const char *val_service, const char *key_id,
                              int64_t now)
{
	if (!val_service || !key_id)
		return sg_store_fail(SG_ERR_INVALID, "store: VAL service and key id required");
	return sg_sql_write(st, "key management", "key", NULL,
	                    "UPDATE km_keys SET superseded_at = ?3 WHERE val_service = ?1 AND"
	                    " key_id = ?2 AND superseded_at = 0",
	                    "tti", val_service, key_id, now);
}

sg_err sg_store_km_key_count(struct sg_store *st, const char *val_service, const char *target_kind,
                             const char *target, uint64_t *service, uint64_t *target_n)
{
	*service = *target_n = 0;
	if (!val_service || !target_kind || !target)
		return sg_store_fail(SG_ERR_INVALID, "store: VAL service and target required");
	struct sg_sql_int2 c = {0, 0};
	sg_err e = sg_sql_get(st, "key management", "key count", "no count", sg_sql_read_int2, &c,
	                      "SELECT count(*), coalesce(sum(target_kind = ?2 AND target = ?3), 0)"
	                      " FROM km_keys WHERE val_service = ?1 AND superseded_at = 0",
	                      "ttt", val_service, target_kind, target);
	*service = (uint64_t)c.a;
	*target_n = (uint64_t)c.b;
	return e;
}

sg_err sg_store_km_key_list(struct sg_store *st, const char *val_service, const char *target_kind,
                            const char *target, struct sg_store_km_key **out, size_t *n)
{
	if (!val_service || !out || !n || (target_kind && !target))
		return sg_store_fail(SG_ERR_INVALID, "store: VAL service and output required");
	*out = NULL;
	*n = 0;
	void *v;
	size_t cnt;
	sg_err e = sg_sql_list(
	    st, "key management", "keys", sizeof(struct sg_store_km_key), read_key, &v, &cnt,
	    target_kind ? "SELECT " KM_COLS " FROM km_keys WHERE val_service = ?1 AND"
	                  " superseded_at = 0 AND target_kind = ?2 AND target = ?3 ORDER BY key_id"
	                : "SELECT " KM_COLS " FROM km_keys WHERE val_service = ?1 AND"
	                  " superseded_at = 0 ORDER BY key_id",
	    "ttt", val_service, target_kind, target);
	if (e != SG_OK) {
		sg_store_km_key_list_free(v, cnt);
		return e;
	}
	*out = v;
	*n = cnt;
	return SG_OK;
}

sg_err sg_store_km_key_revoke(struct sg_store *st, const char *val_service, const char *key_id,
                              int64_t now)
{
	if (!val_service || !key_id)
		return sg_store_fail(SG_ERR_INVALID, "store: VAL service and key id required");
	return sg_sql_write(st, "key management", "key", "no such key",
	                    "UPDATE km_keys SET revoked_at = CASE WHEN revoked_at = 0 THEN"
	                    " ?3 ELSE revoked_at END WHERE val_service = ?1 AND key_id = ?2",
	                    "tti", val_service, key_id, now);
}
