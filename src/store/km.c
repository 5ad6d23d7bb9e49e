/* store/km.c: key management records (TS 33.434 §5.3, §5.8; TS 29.549 ss-kpp, ss-kir): the
 * SKM-C public keys and the versions of provisioned keys. A store extension like store/gm.c:
 * its SQL runs on the SQLite connection inside sg_store_tx_begin() (which serializes the
 * connection). Key bytes only ever reach this file sealed by the caller (km/), and the sealed
 * blobs are wiped when released. */
#include "store/backend.h"

#include "base/clock.h"

#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

static sg_err km_fail(sqlite3 *db, int rc, const char *what)
{
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		return sg_store_fail(SG_ERR_EXISTS, "store: %s: already exists", what);
	return sg_store_fail(SG_ERR_IO, "store: %s: %s", what, sqlite3_errmsg(db));
}

static sg_err km_begin(struct sg_store *st, sqlite3 **db)
{
	if (!st)
		return sg_store_fail(SG_ERR_INVALID, "store: NULL store");
	*db = sg_store_sqlite_handle(st);
	if (!*db)
		return sg_store_fail(SG_ERR_CONFIG,
		                     "store: key management needs the sqlite backend");
	return sg_store_tx_begin(st);
}

static sg_err km_end(struct sg_store *st, sg_err e)
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
	sqlite3 *db;
	sg_err e = km_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db,
	                            "INSERT OR REPLACE INTO km_clients (owner, client_id, kid, jwk,"
	                            " skmc_uri, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	                            -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, c->owner, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, c->client_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, c->kid, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 4, c->jwk, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 5, c->skmc_uri, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 6, c->created_at ? c->created_at : sg_now_ms());
		rc = sqlite3_step(q);
	}
	if (rc != SQLITE_DONE)
		e = km_fail(db, rc, "SKM-C key");
	sqlite3_finalize(q);
	return km_end(st, e);
}

sg_err sg_store_km_client_get(struct sg_store *st, const char *owner, const char *client_id,
                              struct sg_store_km_client *out)
{
	if (!owner || !client_id || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: owner and client_id required");
	memset(out, 0, sizeof *out);
	sqlite3 *db;
	sg_err e = km_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db,
	                            "SELECT owner, client_id, kid, jwk, skmc_uri, created_at FROM"
	                            " km_clients WHERE owner = ?1 AND client_id = ?2",
	                            -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, owner, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, client_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	if (rc == SQLITE_ROW) {
		out->owner = dup_col(q, 0);
		out->client_id = dup_col(q, 1);
		out->kid = dup_col(q, 2);
		out->jwk = dup_col(q, 3);
		out->skmc_uri = dup_col(q, 4);
		out->created_at = sqlite3_column_int64(q, 5);
		if (!out->owner || !out->client_id || !out->kid || !out->jwk || !out->skmc_uri) {
			sg_store_km_client_clear(out);
			e = sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
		}
	} else if (rc == SQLITE_DONE) {
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no SKM-C key registered");
	} else {
		e = km_fail(db, rc, "SKM-C key");
	}
	sqlite3_finalize(q);
	return km_end(st, e);
}

sg_err sg_store_km_client_delete(struct sg_store *st, const char *owner, const char *client_id)
{
	if (!owner || !client_id)
		return sg_store_fail(SG_ERR_INVALID, "store: owner and client_id required");
	sqlite3 *db;
	sg_err e = km_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(
	    db, "DELETE FROM km_clients WHERE owner = ?1 AND client_id = ?2", -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, owner, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, client_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	if (rc != SQLITE_DONE)
		e = km_fail(db, rc, "SKM-C key");
	else if (sqlite3_changes(db) == 0)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no SKM-C key registered");
	sqlite3_finalize(q);
	return km_end(st, e);
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

static sg_err read_key(sqlite3_stmt *q, struct sg_store_km_key *k)
{
	memset(k, 0, sizeof *k);
	k->val_service = dup_col(q, 0);
	k->key_id = dup_col(q, 1);
	k->version = sqlite3_column_int64(q, 2);
	k->target_kind = dup_col(q, 3);
	k->target = dup_col(q, 4);
	k->provider = dup_col(q, 5);
	k->skmc_uri = dup_col(q, 6);
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
	sg_err e = km_begin(st, &db);
	if (e != SG_OK)
		return e;
	int64_t now = sg_now_ms();
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db,
	                            "INSERT INTO km_keys (" KM_COLS ") VALUES (?1, ?2, ?3, ?4, ?5,"
	                            " ?6, ?7, ?8, ?9, ?10, ?11, 0, 0)",
	                            -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, k->val_service, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, k->key_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 3, k->version);
		sqlite3_bind_text(q, 4, k->target_kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 5, k->target, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 6, k->provider, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 7, k->skmc_uri, -1, SQLITE_STATIC);
		sqlite3_bind_blob(q, 8, k->sealed, (int)k->sealed_len, SQLITE_STATIC);
		sqlite3_bind_int64(q, 9, k->not_before);
		sqlite3_bind_int64(q, 10, k->not_after);
		sqlite3_bind_int64(q, 11, k->created_at ? k->created_at : now);
		rc = sqlite3_step(q);
	}
	if (rc != SQLITE_DONE)
		e = km_fail(db, rc, "key");
	sqlite3_finalize(q);
	q = NULL;
	if (e == SG_OK) {
		rc = sqlite3_prepare_v2(
		    db,
		    "UPDATE km_keys SET superseded_at = ?4 WHERE val_service = ?1"
		    " AND key_id = ?2 AND version < ?3 AND superseded_at = 0",
		    -1, &q, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_text(q, 1, k->val_service, -1, SQLITE_STATIC);
			sqlite3_bind_text(q, 2, k->key_id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(q, 3, k->version);
			sqlite3_bind_int64(q, 4, now);
			rc = sqlite3_step(q);
		}
		if (rc != SQLITE_DONE)
			e = km_fail(db, rc, "key");
		sqlite3_finalize(q);
	}
	return km_end(st, e);
}

sg_err sg_store_km_key_latest(struct sg_store *st, const char *val_service, const char *key_id,
                              struct sg_store_km_key *out)
{
	if (!val_service || !key_id || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: VAL service and key id required");
	memset(out, 0, sizeof *out);
	sqlite3 *db;
	sg_err e = km_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db,
	                            "SELECT " KM_COLS " FROM km_keys WHERE val_service = ?1 AND"
	                            " key_id = ?2 ORDER BY version DESC LIMIT 1",
	                            -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, val_service, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, key_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	if (rc == SQLITE_ROW)
		e = read_key(q, out);
	else if (rc == SQLITE_DONE)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no such key");
	else
		e = km_fail(db, rc, "key");
	sqlite3_finalize(q);
	return km_end(st, e);
}

sg_err sg_store_km_key_list(struct sg_store *st, const char *val_service, const char *target_kind,
                            const char *target, struct sg_store_km_key **out, size_t *n)
{
	if (!val_service || !out || !n || (target_kind && !target))
		return sg_store_fail(SG_ERR_INVALID, "store: VAL service and output required");
	*out = NULL;
	*n = 0;
	sqlite3 *db;
	sg_err e = km_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(
	    db,
	    target_kind ? "SELECT " KM_COLS " FROM km_keys WHERE val_service = ?1 AND"
	                  " superseded_at = 0 AND target_kind = ?2 AND target = ?3 ORDER BY key_id"
	                : "SELECT " KM_COLS " FROM km_keys WHERE val_service = ?1 AND"
	                  " superseded_at = 0 ORDER BY key_id",
	    -1, &q, NULL);
	struct sg_store_km_key *v = NULL;
	size_t cnt = 0, cap = 0;
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, val_service, -1, SQLITE_STATIC);
		if (target_kind) {
			sqlite3_bind_text(q, 2, target_kind, -1, SQLITE_STATIC);
			sqlite3_bind_text(q, 3, target, -1, SQLITE_STATIC);
		}
		while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
			if (cnt == cap) {
				size_t nc = cap ? cap * 2 : 8;
				struct sg_store_km_key *nv = realloc(v, nc * sizeof *nv);
				if (!nv) {
					e = sg_store_fail(SG_ERR_NOMEM, "store: out of memory");
					break;
				}
				v = nv;
				cap = nc;
			}
			if ((e = read_key(q, &v[cnt])) != SG_OK)
				break;
			cnt++;
		}
	}
	if (e == SG_OK && rc != SQLITE_DONE)
		e = km_fail(db, rc, "keys");
	sqlite3_finalize(q);
	e = km_end(st, e);
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
	sqlite3 *db;
	sg_err e = km_begin(st, &db);
	if (e != SG_OK)
		return e;
	sqlite3_stmt *q = NULL;
	int rc =
	    sqlite3_prepare_v2(db,
	                       "UPDATE km_keys SET revoked_at = CASE WHEN revoked_at = 0 THEN"
	                       " ?3 ELSE revoked_at END WHERE val_service = ?1 AND key_id = ?2",
	                       -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, val_service, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, key_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 3, now);
		rc = sqlite3_step(q);
	}
	if (rc != SQLITE_DONE)
		e = km_fail(db, rc, "key");
	else if (sqlite3_changes(db) == 0)
		e = sg_store_fail(SG_ERR_NOTFOUND, "store: no such key");
	sqlite3_finalize(q);
	return km_end(st, e);
}
