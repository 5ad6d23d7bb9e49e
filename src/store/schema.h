/* store/schema.h: the SQL schema of the SQLite backend as numbered migrations (private).
 * Migration i (1-based) moves a database from version i-1 to i; a released migration is never
 * edited, a change is a new one appended here. */
#ifndef SG_STORE_SCHEMA_H
#define SG_STORE_SCHEMA_H

static const char *const sg_store_sqlite_migrations[] = {
    /* 1: the identity-management registry, codes, refresh-token families, revocations, audit. */
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT INTO meta (key, value) VALUES ('generation', 1);"
    /* Every sub ever assigned, never deleted: a sub is never reassigned (TS 33.434 via OIDC
     * Core §2: sub is locally unique and never reassigned). */
    "CREATE TABLE subs (sub TEXT PRIMARY KEY, created_at INTEGER NOT NULL,"
    "  deleted_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE users (sub TEXT PRIMARY KEY REFERENCES subs(sub),"
    "  name TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,"
    "  disabled INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);"
    "CREATE TABLE user_val_ids (sub TEXT NOT NULL REFERENCES users(sub) ON DELETE CASCADE,"
    "  service TEXT NOT NULL, val_user_id TEXT NOT NULL, PRIMARY KEY (sub, service));"
    "CREATE TABLE clients (client_id TEXT PRIMARY KEY, secret_digest BLOB,"
    "  scopes TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);"
    "CREATE TABLE client_redirect_uris (client_id TEXT NOT NULL"
    "  REFERENCES clients(client_id) ON DELETE CASCADE,"
    "  pos INTEGER NOT NULL, uri TEXT NOT NULL, PRIMARY KEY (client_id, pos));"
    "CREATE TABLE valservers (name TEXT PRIMARY KEY, identity TEXT NOT NULL,"
    "  scopes TEXT NOT NULL DEFAULT '', key_provisioning INTEGER NOT NULL DEFAULT 0,"
    "  disabled INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);"
    "CREATE TABLE valserver_services (name TEXT NOT NULL"
    "  REFERENCES valservers(name) ON DELETE CASCADE,"
    "  service TEXT NOT NULL, PRIMARY KEY (name, service));"
    "CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL, priv BLOB,"
    "  public_jwk TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  not_after_use INTEGER NOT NULL DEFAULT 0, retire_at INTEGER NOT NULL DEFAULT 0,"
    "  active INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE auth_codes (digest BLOB PRIMARY KEY, client_id TEXT NOT NULL"
    "  REFERENCES clients(client_id) ON DELETE CASCADE, sub TEXT NOT NULL,"
    "  redirect_uri TEXT NOT NULL, scope TEXT NOT NULL, nonce TEXT,"
    "  code_challenge TEXT NOT NULL, acr TEXT, auth_time INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL, used_at INTEGER NOT NULL DEFAULT 0,"
    "  grant_id TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX auth_codes_expires ON auth_codes (expires_at);"
    "CREATE INDEX auth_codes_client ON auth_codes (client_id);"
    "CREATE TABLE refresh_tokens (digest BLOB PRIMARY KEY, grant_id TEXT NOT NULL,"
    "  client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,"
    "  sub TEXT NOT NULL, scope TEXT NOT NULL, expires_at INTEGER NOT NULL,"
    "  rotated_at INTEGER NOT NULL DEFAULT 0, revoked INTEGER NOT NULL DEFAULT 0)"
    "  WITHOUT ROWID;"
    "CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);"
    "CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);"
    "CREATE INDEX refresh_tokens_client ON refresh_tokens (client_id);"
    /* kind 1: an access token's jti; kind 2: a grant id (token family). */
    "CREATE TABLE revoked (kind INTEGER NOT NULL, id TEXT NOT NULL,"
    "  revoked_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (kind, id))"
    "  WITHOUT ROWID;"
    "CREATE INDEX revoked_at ON revoked (revoked_at);"
    "CREATE INDEX revoked_expires ON revoked (expires_at);"
    "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL,"
    "  actor TEXT NOT NULL, action TEXT NOT NULL, object TEXT, refpoint TEXT, detail TEXT);"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
/* Change detection: any write to a registry table, by any connection of any process (the
 * server, the CLI, even the sqlite3 shell), bumps the generation in the same transaction. */
#define SG_GEN_TRIGGERS(t)                                                                         \
	"CREATE TRIGGER " t "_gen_ins AFTER INSERT ON " t                                          \
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'generation'; END;"                  \
	"CREATE TRIGGER " t "_gen_upd AFTER UPDATE ON " t                                          \
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'generation'; END;"                  \
	"CREATE TRIGGER " t "_gen_del AFTER DELETE ON " t                                          \
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'generation'; END;"
    SG_GEN_TRIGGERS("users") SG_GEN_TRIGGERS("user_val_ids") SG_GEN_TRIGGERS("clients")
        SG_GEN_TRIGGERS("client_redirect_uris") SG_GEN_TRIGGERS("valservers")
            SG_GEN_TRIGGERS("valserver_services") SG_GEN_TRIGGERS("signing_keys")
#undef SG_GEN_TRIGGERS
                ,
    /* 2: ss-ipp (TS 29.549 SS_IdmParameterProvisioning, I11): VAL services configurations
     * provisioned by VAL servers, one row per resource, the VALServicesConfig kept as JSON. */
    "CREATE TABLE ipp_configs (conf_id TEXT PRIMARY KEY, val_server TEXT NOT NULL,"
    "  body TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX ipp_configs_val_server ON ipp_configs (val_server);",
    /* 3: ss-gm (TS 29.549 SS_GroupManagement, TS 23.434 §10.3): VAL group documents, one row
     * per resource, the VALGroupDocument kept as JSON; owner = the VAL server that created it.
     * Its own change counter (meta 'gm_generation', bumped by triggers in the writing
     * transaction) keeps group-document caches coherent without reloading the registry. */
    "INSERT INTO meta (key, value) VALUES ('gm_generation', 1);"
    "CREATE TABLE gm_docs (doc_id TEXT PRIMARY KEY, owner TEXT NOT NULL,"
    "  val_group_id TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE INDEX gm_docs_val_group_id ON gm_docs (val_group_id);"
    "CREATE TRIGGER gm_docs_gen_ins AFTER INSERT ON gm_docs"
    " BEGIN UPDATE meta SET value = value + 1 WHERE key = 'gm_generation'; END;"
    "CREATE TRIGGER gm_docs_gen_upd AFTER UPDATE ON gm_docs"
    " BEGIN UPDATE meta SET value = value + 1 WHERE key = 'gm_generation'; END;"
    "CREATE TRIGGER gm_docs_gen_del AFTER DELETE ON gm_docs"
    " BEGIN UPDATE meta SET value = value + 1 WHERE key = 'gm_generation'; END;",
    /* 4: key management (TS 33.434 §5.3, §5.8; TS 29.549 ss-kpp/ss-kir; store/km.c).
     * km_clients: the SKM-C public keys (JWK, public half only) key material is encrypted to
     * (R2), one per owner ("ue:<sub>" / "vs:<name>") and OAuth client.
     * km_keys: every version of every provisioned key; the key bytes only as `sealed`
     * (AES-256-GCM under the master key kept outside the database, AAD = the record id and
     * version): never in plaintext here. */
    "CREATE TABLE km_clients (owner TEXT NOT NULL, client_id TEXT NOT NULL,"
    "  kid TEXT NOT NULL, jwk TEXT NOT NULL, skmc_uri TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, PRIMARY KEY (owner, client_id));"
    "CREATE TABLE km_keys (val_service TEXT NOT NULL, key_id TEXT NOT NULL,"
    "  version INTEGER NOT NULL, target_kind TEXT NOT NULL, target TEXT NOT NULL,"
    "  provider TEXT NOT NULL, skmc_uri TEXT NOT NULL, sealed BLOB NOT NULL,"
    "  not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    "  revoked_at INTEGER NOT NULL DEFAULT 0, superseded_at INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (val_service, key_id, version));"
    "CREATE INDEX km_keys_target ON km_keys (val_service, target_kind, target);",
    /* 5: SEALDD-S state (TS 29.548 SDD_Transmission; store/sdd.c), so that what a VAL server
     * was acknowledged survives a restart or a crash.
     * sdd_trans: one transmission per VAL service (a later RequestTrans replaces it): the
     * requesting VAL server (client_id and certificate SAN), the transType and the TransReq as
     * JSON. sdd_subsc: connection status subscriptions, the canonical ConnStatusSubsc as JSON,
     * owner = the VAL server's client_id. */
    "CREATE TABLE sdd_trans (val_service TEXT PRIMARY KEY, client_id TEXT NOT NULL,"
    "  identity TEXT NOT NULL, trans_type TEXT NOT NULL, body TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE sdd_subsc (subsc_id TEXT PRIMARY KEY, owner TEXT NOT NULL,"
    "  body TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX sdd_subsc_owner ON sdd_subsc (owner);",
    /* 6: authorization codes and refresh tokens as rowid tables (creation order) with a
     * unique index on the digest, instead of tables keyed by the digest. Keyed by a random
     * digest, every code consumed and every refresh token stored rewrote a random page of a
     * table of wide rows (and the refresh_tokens_client index, whose rows end with that key):
     * ~6 WAL pages per code exchange, in a batch of 15 hardly any shared. In creation order,
     * the rows a batch touches share pages and only the narrow digest index takes random
     * writes (~2–3 pages per exchange). Lookups still go by the digest; rows are kept. */
    "CREATE TABLE auth_codes_v6 (id INTEGER PRIMARY KEY, digest BLOB NOT NULL UNIQUE,"
    "  client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,"
    "  sub TEXT NOT NULL, redirect_uri TEXT NOT NULL, scope TEXT NOT NULL, nonce TEXT,"
    "  code_challenge TEXT NOT NULL, acr TEXT, auth_time INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL, used_at INTEGER NOT NULL DEFAULT 0,"
    "  grant_id TEXT NOT NULL);"
    "INSERT INTO auth_codes_v6 (digest, client_id, sub, redirect_uri, scope, nonce,"
    "  code_challenge, acr, auth_time, expires_at, used_at, grant_id)"
    "  SELECT digest, client_id, sub, redirect_uri, scope, nonce, code_challenge, acr,"
    "  auth_time, expires_at, used_at, grant_id FROM auth_codes ORDER BY auth_time;"
    "DROP TABLE auth_codes;"
    "ALTER TABLE auth_codes_v6 RENAME TO auth_codes;"
    "CREATE INDEX auth_codes_expires ON auth_codes (expires_at);"
    "CREATE INDEX auth_codes_client ON auth_codes (client_id);"
    "CREATE TABLE refresh_tokens_v6 (id INTEGER PRIMARY KEY, digest BLOB NOT NULL UNIQUE,"
    "  grant_id TEXT NOT NULL,"
    "  client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,"
    "  sub TEXT NOT NULL, scope TEXT NOT NULL, expires_at INTEGER NOT NULL,"
    "  rotated_at INTEGER NOT NULL DEFAULT 0, revoked INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO refresh_tokens_v6 (digest, grant_id, client_id, sub, scope, expires_at,"
    "  rotated_at, revoked) SELECT digest, grant_id, client_id, sub, scope, expires_at,"
    "  rotated_at, revoked FROM refresh_tokens ORDER BY expires_at;"
    "DROP TABLE refresh_tokens;"
    "ALTER TABLE refresh_tokens_v6 RENAME TO refresh_tokens;"
    "CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);"
    "CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);"
    "CREATE INDEX refresh_tokens_client ON refresh_tokens (client_id);",
    /* 7: connection status subscriptions bound to the certificate identity of the VAL server
     * that made them (its registered identity: a VAL server name registered again with
     * another certificate does not inherit them) and with an expiry (expires_at, ms; the
     * expTime of TS 29.548 ConnStatusSubsc). Existing rows take their owner's registered
     * identity and expires_at 0, "not set": the SEALDD server gives them its configured
     * lifetime from its next start (sg_store_sdd_subsc_settle), so an upgrade removes none
     * that the VAL server could still use. Those of a VAL server no longer registered are
     * deleted: no certificate can reach them. */
    "ALTER TABLE sdd_subsc ADD COLUMN identity TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sdd_subsc ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;"
    "UPDATE sdd_subsc SET identity = COALESCE((SELECT v.identity FROM valservers v"
    "  WHERE v.name = sdd_subsc.owner), '');"
    "DELETE FROM sdd_subsc WHERE identity = '';"
    "CREATE INDEX sdd_subsc_expires ON sdd_subsc (expires_at);",
    /* 8: audit retention (sg_store_audit_prune). The audit stays append-only for every other
     * path: its delete trigger refuses unless a row in audit_prune says a prune runs, which
     * the prune inserts and deletes inside its own transaction (no other connection ever
     * sees it). */
    "DROP TRIGGER audit_no_delete;"
    "CREATE TABLE audit_prune (active INTEGER NOT NULL);"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    "  WHEN NOT EXISTS (SELECT 1 FROM audit_prune)"
    "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;",
    /* 9: a grant's live refresh tokens found with one seek (the purge's check before it
     * deletes a grant's revocation; grant revocation itself) */
    ("DROP INDEX refresh_tokens_grant;"
     "CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id, expires_at);"),
    /* 10: group-management quotas per VAL server (gm/server.c): each group document's size
     * in bytes of its JSON text, and the documents of one owner counted and summed from one
     * covering index range (owner, doc_id, size). The key quotas (km/server.c) count current
     * versions from a covering partial index. Key versions that can never be released again
     * (superseded, or past their validUntil) found by the upkeep's purge without a scan. */
    "ALTER TABLE gm_docs ADD COLUMN size INTEGER NOT NULL DEFAULT 0;"
    "UPDATE gm_docs SET size = length(CAST(body AS BLOB));"
    "CREATE INDEX gm_docs_owner ON gm_docs (owner, doc_id, size);"
    "CREATE INDEX km_keys_current ON km_keys (val_service, target_kind, target,"
    "  superseded_at) WHERE superseded_at = 0;"
    "CREATE INDEX km_keys_superseded ON km_keys (superseded_at) WHERE superseded_at > 0;"
    "CREATE INDEX km_keys_not_after ON km_keys (not_after);",
};

#define SG_STORE_SQLITE_NMIGRATIONS                                                                \
	((int)(sizeof sg_store_sqlite_migrations / sizeof sg_store_sqlite_migrations[0]))

#endif
