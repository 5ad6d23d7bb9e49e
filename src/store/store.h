/* store/store.h: the one storage interface of sealguard (registry of users, SIM-C clients, VAL
 * servers and signing keys; authorization codes, refresh-token families, revocations; audit).
 * A backend is a function table (struct sg_store_ops, store/backend.h); SQLite is the embedded
 * default (store/sqlite.c), PostgreSQL can follow without touching callers. store/pool.c runs
 * store jobs on worker threads so that an event loop never waits on the disk.
 *
 * Conventions:
 * - Times are milliseconds since the Unix epoch (sg_now_ms()).
 * - The store holds only digests of secrets (codes, refresh tokens, client secrets) and opaque
 *   password hash strings; it never sees a raw token. Private key blobs are opaque (the caller
 *   encrypts them) and are wiped with OPENSSL_cleanse when freed.
 * - Every function returns an sg_err; on failure sg_store_last_error() gives a message for the
 *   calling thread. SG_ERR_NOTFOUND: no such object; SG_ERR_EXISTS: a unique key is taken;
 *   SG_ERR_IO: the database failed (disk, lock timeout); SG_ERR_INVALID: bad argument.
 * - Structs returned by *_get and *_list are owned by the caller and released with the
 *   matching *_clear (one struct) or *_list_free (an array). Structs passed as input are only
 *   read. Every op is atomic (its own transaction, or a savepoint inside sg_store_tx_begin()).
 * - A struct sg_store is one database connection; its ops are serialized by a recursive mutex,
 *   so it may be shared by threads, but a transaction opened with sg_store_tx_begin() belongs to
 *   the calling thread until sg_store_tx_commit/rollback. For parallelism use sg_store_pool.
 */
#ifndef SG_STORE_STORE_H
#define SG_STORE_STORE_H

#include "base/err.h"
#include <stddef.h>
#include <stdint.h>

struct sg_store;
struct event_base;

#define SG_STORE_SCHEMA_VERSION 10 /* the newest schema this build knows */
#define SG_STORE_DIGEST_MAX     64 /* bytes of a code / refresh token / client secret digest */
#define SG_STORE_SUB_LEN        22 /* base64url of 128 random bits, without NUL */

/* ---- opening ---------------------------------------------------------------------------- */

/* Opens (creating when absent) a store. driver: "sqlite" (path_or_url: a file path; the file is
 * created 0600; WAL, synchronous=FULL, busy_timeout, foreign keys; schema migrations applied in
 * one transaction; a database written by a newer sealguard is refused with SG_ERR_CONFIG).
 * "postgres" is reserved and answers SG_ERR_CONFIG until its backend exists.
 * *out is owned by the caller: release with sg_store_close(). */
sg_err sg_store_open(const char *driver, const char *path_or_url, struct sg_store **out, char *err,
                     size_t errlen);
/* Closes the connection and frees the store (NULL is fine). */
void sg_store_close(struct sg_store *st);
/* The message of the last failed store op on the calling thread ("" when none). Static,
 * thread-local storage: valid until the next store op on this thread. */
const char *sg_store_last_error(void);
/* The schema version of the open database. */
sg_err sg_store_schema_version(struct sg_store *st, int *version);

/* ---- change detection for caches -------------------------------------------------------- */

/* Writes a counter that changes whenever any connection of any process (the server's own, or
 * the CLI working on the state dir of a running server) commits a write to a registry table:
 * users (incl. VAL user ids), clients, VAL servers, signing keys. Codes, refresh tokens,
 * revocations and audit rows do not change it. It is bumped in the same transaction as the
 * write, so a reader that sees the new value also sees the write.
 * How to use: a cache of the registry remembers the generation it was loaded at; at most every
 * N ms (e.g. 500 ms, from a timer) it calls this (a single read of one row: no disk wait in
 * WAL mode once the page is cached; run it on the pool if in doubt) and reloads when the value
 * differs. */
sg_err sg_store_generation(struct sg_store *st, uint64_t *gen);

/* ---- transactions ----------------------------------------------------------------------- */

/* Groups several ops into one atomic, durable transaction (nests: inner levels are savepoints).
 * The calling thread holds the connection until the matching commit or rollback. */
sg_err sg_store_tx_begin(struct sg_store *st);
sg_err sg_store_tx_commit(struct sg_store *st);
sg_err sg_store_tx_rollback(struct sg_store *st);

/* ---- users ------------------------------------------------------------------------------ */

struct sg_store_val_id {
	char *service;     /* VAL service id */
	char *val_user_id; /* the user's VAL user id for that service */
};

struct sg_store_user {
	char sub[SG_STORE_SUB_LEN + 1]; /* stable opaque id, assigned by the store, never reused */
	char *name;                     /* unique login name */
	char *password_hash;            /* PHC-style string, opaque to the store */
	int disabled;
	int64_t created_at;
	struct sg_store_val_id *val_ids; /* VAL user id per VAL service (absent: caller defaults) */
	size_t n_val_ids;
};

/* Adds a user: u->name, u->password_hash, u->disabled and u->val_ids are read; the store draws
 * a fresh sub (128 random bits, base64url) never given before, even to a deleted user (a
 * tombstone keeps every sub ever assigned). sub_out (SG_STORE_SUB_LEN + 1 bytes, may be NULL)
 * receives it. SG_ERR_EXISTS when the name is taken. */
sg_err sg_store_user_add(struct sg_store *st, const struct sg_store_user *u, char *sub_out);
/* Looks a user up by name or by sub; *out (with its val_ids) is owned by the caller:
 * sg_store_user_clear(). */
sg_err sg_store_user_get_by_name(struct sg_store *st, const char *name, struct sg_store_user *out);
sg_err sg_store_user_get_by_sub(struct sg_store *st, const char *sub, struct sg_store_user *out);
/* All users, ordered by name; *out (n entries) owned by the caller: sg_store_user_list_free. */
sg_err sg_store_user_list(struct sg_store *st, struct sg_store_user **out, size_t *n);
sg_err sg_store_user_set_password(struct sg_store *st, const char *name, const char *hash);
sg_err sg_store_user_set_disabled(struct sg_store *st, const char *name, int disabled);
/* Deletes the user and its VAL user ids; its sub stays reserved forever. */
sg_err sg_store_user_delete(struct sg_store *st, const char *name);
/* Sets (insert or replace) / deletes the VAL user id of a user for one VAL service. */
sg_err sg_store_user_val_id_set(struct sg_store *st, const char *name, const char *service,
                                const char *val_user_id);
sg_err sg_store_user_val_id_delete(struct sg_store *st, const char *name, const char *service);
void sg_store_user_clear(struct sg_store_user *u);
void sg_store_user_list_free(struct sg_store_user *v, size_t n);

/* ---- SIM-C clients ---------------------------------------------------------------------- */

struct sg_store_client {
	char *client_id;
	unsigned char secret_digest[SG_STORE_DIGEST_MAX]; /* e.g. HMAC-SHA-256 of the secret */
	size_t secret_digest_len;
	char **redirect_uris; /* registered redirect URIs, compared exactly by the caller */
	size_t n_redirect_uris;
	char *scopes; /* allowed scopes, space separated */
	int64_t created_at;
};

/* Adds a client; SG_ERR_EXISTS when the client_id is taken by a client or a VAL server. */
sg_err sg_store_client_add(struct sg_store *st, const struct sg_store_client *c);
/* *out owned by the caller: sg_store_client_clear(). */
sg_err sg_store_client_get(struct sg_store *st, const char *client_id, struct sg_store_client *out);
/* All clients by client_id; *out owned by the caller: sg_store_client_list_free(). */
sg_err sg_store_client_list(struct sg_store *st, struct sg_store_client **out, size_t *n);
sg_err sg_store_client_set_secret(struct sg_store *st, const char *client_id,
                                  const unsigned char *digest, size_t len);
/* Deletes the client with its codes and refresh tokens. */
sg_err sg_store_client_delete(struct sg_store *st, const char *client_id);
void sg_store_client_clear(struct sg_store_client *c);
void sg_store_client_list_free(struct sg_store_client *v, size_t n);

/* ---- VAL servers ------------------------------------------------------------------------ */

struct sg_store_valserver {
	char *name;     /* = its OAuth client_id */
	char *identity; /* certificate identity (SAN), e.g. "DNS:v2x-app" */
	char **val_services;
	size_t n_val_services;
	char *scopes;         /* allowed scopes, space separated */
	int key_provisioning; /* may provision keys (seal:kp, SKeyProv) */
	int disabled;
	int64_t created_at;
};

/* Adds a VAL server; SG_ERR_EXISTS when the name is taken by a VAL server or a client. */
sg_err sg_store_valserver_add(struct sg_store *st, const struct sg_store_valserver *v);
/* *out owned by the caller: sg_store_valserver_clear(). */
sg_err sg_store_valserver_get(struct sg_store *st, const char *name,
                              struct sg_store_valserver *out);
/* All VAL servers by name; *out owned by the caller: sg_store_valserver_list_free(). */
sg_err sg_store_valserver_list(struct sg_store *st, struct sg_store_valserver **out, size_t *n);
sg_err sg_store_valserver_set_disabled(struct sg_store *st, const char *name, int disabled);
sg_err sg_store_valserver_delete(struct sg_store *st, const char *name);
void sg_store_valserver_clear(struct sg_store_valserver *v);
void sg_store_valserver_list_free(struct sg_store_valserver *v, size_t n);
/* The VAL server called name in v[0..n), sorted by name in strcmp order; NULL when absent or
 * when name is NULL. */
const struct sg_store_valserver *sg_store_valserver_find(const struct sg_store_valserver *v,
                                                         size_t n, const char *name);

/* A reference-counted snapshot of the VAL server registry, sorted by name, as the services
 * cache it (readers keep a reference while a newer snapshot is swapped in). gen is the store
 * generation it was loaded at. *out (one reference) owned by the caller: sg_store_vals_unref. */
struct sg_store_vals;
sg_err sg_store_vals_load(struct sg_store *st, uint64_t gen, struct sg_store_vals **out);
struct sg_store_vals *sg_store_vals_ref(struct sg_store_vals *s); /* NULL is fine */
void sg_store_vals_unref(struct sg_store_vals *s);                /* NULL is fine */
uint64_t sg_store_vals_gen(const struct sg_store_vals *s);
size_t sg_store_vals_count(const struct sg_store_vals *s);
/* The VAL server called name, or NULL (also when s or name is NULL). */
const struct sg_store_valserver *sg_store_vals_find(const struct sg_store_vals *s,
                                                    const char *name);

/* ---- signing keys ----------------------------------------------------------------------- */

struct sg_store_key {
	char *kid;
	char *alg;           /* "ES256" */
	unsigned char *priv; /* opaque blob (encrypted by the caller); wiped when cleared */
	size_t priv_len;
	char *public_jwk; /* JSON */
	int64_t created_at;
	int64_t not_after_use; /* when it stopped signing (0: still signing) */
	int64_t retire_at;     /* when it may leave the JWKS (0: not scheduled) */
	int active;            /* the key that signs new tokens */
};

/* Adds a key (k->created_at is used when non-zero, else now). When k->active is set, the
 * previously active keys are deactivated in the same transaction, their not_after_use set to
 * now and retire_at to now + retire_after_ms (rotation). SG_ERR_EXISTS on a kid collision. */
sg_err sg_store_key_add(struct sg_store *st, const struct sg_store_key *k, int64_t retire_after_ms);
/* *out owned by the caller: sg_store_key_clear() (wipes priv). */
sg_err sg_store_key_get(struct sg_store *st, const char *kid, struct sg_store_key *out);
/* Every key, newest first; *out owned by the caller: sg_store_key_list_free(). */
sg_err sg_store_key_list(struct sg_store *st, struct sg_store_key **out, size_t *n);
/* Stops a key from signing: active=0, not_after_use=now (if unset), retire_at as given. */
sg_err sg_store_key_retire(struct sg_store *st, const char *kid, int64_t retire_at);
sg_err sg_store_key_delete(struct sg_store *st, const char *kid);
void sg_store_key_clear(struct sg_store_key *k);
void sg_store_key_list_free(struct sg_store_key *v, size_t n);

/* ---- authorization codes ---------------------------------------------------------------- */

struct sg_store_code {
	unsigned char digest[SG_STORE_DIGEST_MAX]; /* digest of the code (primary key) */
	size_t digest_len;
	char *client_id;
	char *sub;
	char *redirect_uri;
	char *scope;
	char *nonce;          /* may be NULL */
	char *code_challenge; /* S256 challenge */
	char *acr;
	int64_t auth_time;
	int64_t expires_at;
	int64_t used_at; /* 0 while unused */
	char *grant_id;  /* the token family the code starts */
};

/* Outcome of consuming a single-use credential. */
enum sg_store_use {
	SG_STORE_USE_OK = 0,  /* first use: now marked used */
	SG_STORE_USE_REPLAY,  /* already used (code) or already rotated (refresh token) */
	SG_STORE_USE_EXPIRED, /* past expires_at; unchanged */
	SG_STORE_USE_REVOKED, /* refresh token of a revoked family */
};

/* Stores a new code (client_id must name a client). SG_ERR_EXISTS on a digest collision. */
sg_err sg_store_code_put(struct sg_store *st, const struct sg_store_code *c);
/* Atomically consumes a code: when unused and unexpired (expires_at > now) it is marked used in
 * the same transaction and *use = SG_STORE_USE_OK; a second consume gives SG_STORE_USE_REPLAY
 * (then out->grant_id names what the first use issued, for the caller to revoke); an expired
 * code gives SG_STORE_USE_EXPIRED. SG_ERR_NOTFOUND for an unknown digest. *out is filled
 * whenever SG_OK is returned and is owned by the caller: sg_store_code_clear(). */
sg_err sg_store_code_consume(struct sg_store *st, const unsigned char *digest, size_t len,
                             int64_t now, struct sg_store_code *out, enum sg_store_use *use);
void sg_store_code_clear(struct sg_store_code *c);

/* ---- grants and refresh tokens ---------------------------------------------------------- */

struct sg_store_refresh {
	unsigned char digest[SG_STORE_DIGEST_MAX];
	size_t digest_len;
	char *grant_id; /* token family: every rotation keeps it */
	char *client_id;
	char *sub;
	char *scope;
	int64_t expires_at;
	int64_t rotated_at; /* 0 while it may be used */
	int revoked;
};

/* Stores a refresh token of family r->grant_id (client_id must name a client). */
sg_err sg_store_refresh_put(struct sg_store *st, const struct sg_store_refresh *r);
/* Atomically consumes a refresh token for rotation: SG_STORE_USE_OK marks it rotated (the caller
 * then puts its successor with the same grant_id); SG_STORE_USE_REPLAY means it was already
 * rotated: reuse, the caller revokes the family (sg_store_grant_revoke); SG_STORE_USE_REVOKED and
 * SG_STORE_USE_EXPIRED leave it unchanged. SG_ERR_NOTFOUND for an unknown digest. *out filled on
 * SG_OK, owned by the caller: sg_store_refresh_clear(). */
sg_err sg_store_refresh_consume(struct sg_store *st, const unsigned char *digest, size_t len,
                                int64_t now, struct sg_store_refresh *out, enum sg_store_use *use);
void sg_store_refresh_clear(struct sg_store_refresh *r);
/* Revokes a grant: every refresh token of the family is revoked, and the grant id is recorded
 * as revoked until expires_at (the latest expiry of an access token it may have issued) so that
 * access tokens carrying it are refused. Idempotent; an unknown grant id is recorded too. */
sg_err sg_store_grant_revoke(struct sg_store *st, const char *grant_id, int64_t now,
                             int64_t expires_at);
/* Revokes every grant of one client (client_id set, sub NULL) or of one user (sub set,
 * client_id NULL), for a removed client or a disabled or removed user: each grant id found in
 * its authorization codes and refresh tokens is recorded as revoked (as sg_store_grant_revoke,
 * until expires_at), its refresh tokens are revoked and its unused codes marked used, all in
 * one transaction (a savepoint inside the caller's). *n (may be NULL) receives the number of
 * grants revoked. */
sg_err sg_store_grants_revoke_of(struct sg_store *st, const char *client_id, const char *sub,
                                 int64_t now, int64_t expires_at, size_t *n);
sg_err sg_store_grant_is_revoked(struct sg_store *st, const char *grant_id, int *revoked);

/* ---- revoked access tokens -------------------------------------------------------------- */

enum sg_store_revoked_kind { SG_STORE_REVOKED_JTI = 1, SG_STORE_REVOKED_GRANT = 2 };

struct sg_store_revoked {
	enum sg_store_revoked_kind kind;
	char *id; /* jti or grant id */
	int64_t revoked_at;
	int64_t expires_at;
};

/* Records a revoked access token (RFC 7009) until it expires. Idempotent. */
sg_err sg_store_jti_revoke(struct sg_store *st, const char *jti, int64_t now, int64_t expires_at);
/* Revocation list: jtis and grant ids revoked at or after since and not yet expired at now;
 * *out owned by the caller: sg_store_revoked_list_free(). */
sg_err sg_store_revoked_list(struct sg_store *st, int64_t since, int64_t now,
                             struct sg_store_revoked **out, size_t *n);
void sg_store_revoked_list_free(struct sg_store_revoked *v, size_t n);
/* Deletes what expired at or before now and is no longer needed: unused codes and access token
 * revocations once expired; used codes and refresh tokens (rotated or not) a day after their
 * own expiry (until then a replay still revokes the grant's tokens); a grant's revocation once
 * it expired and no refresh token of the grant is left (a revoked grant's tokens stay
 * refused); key versions (km_keys) a day after they were superseded or after their
 * validUntil. Reads only rows it deletes, but for the used codes of the last day and the grants'
 * revocations whose grant still has tokens. At most batch rows of each kind (0: all).
 * *deleted (may be NULL) receives the number of rows removed. */
sg_err sg_store_purge(struct sg_store *st, int64_t now, size_t batch, uint64_t *deleted);

/* ---- audit ------------------------------------------------------------------------------ */

struct sg_store_audit {
	int64_t id; /* assigned by the store, increasing */
	int64_t ts;
	char *actor;  /* principal, e.g. "cli", "user:alice", "valserver:v2x" */
	char *action; /* e.g. "user.add" */
	char *object;
	char *refpoint; /* reference point, may be NULL */
	char *detail;   /* never a secret */
};

/* Appends an audit row (append-only: no update, and no delete but sg_store_audit_prune). a->id
 * is ignored. */
sg_err sg_store_audit_append(struct sg_store *st, const struct sg_store_audit *a);
/* Rows with id > after_id in id order, at most limit; *out owned by the caller:
 * sg_store_audit_list_free(). */
sg_err sg_store_audit_list(struct sg_store *st, int64_t after_id, size_t limit,
                           struct sg_store_audit **out, size_t *n);
void sg_store_audit_list_free(struct sg_store_audit *v, size_t n);
/* Audit retention: deletes the oldest rows, in id order, up to the first one with ts >= before
 * (ms; 0: no age limit) or beyond the newest max_rows (0: no cap), whichever reaches further;
 * at most batch rows (0: all). Rows are taken as a prefix of the id order, so a row older than
 * before behind a newer one (another host's clock) goes with the rows around it. *deleted (may
 * be NULL) receives the number of rows removed. */
sg_err sg_store_audit_prune(struct sg_store *st, int64_t before, uint64_t max_rows, size_t batch,
                            uint64_t *deleted);

/* ---- upkeep: expired rows and audit retention (store/upkeep.c; `sealguard serve`) -------- */

struct sg_store_upkeep_conf {
	const char *driver, *path;  /* the store, as for sg_store_open */
	int64_t audit_retention_ms; /* audit rows older than this go; 0: none for their age */
	uint64_t audit_max_rows;    /* at most this many audit rows stay; 0: no cap */
	unsigned first_ms;          /* the first run this long after the start */
	unsigned interval_ms;       /* then one every interval_ms */
};
struct sg_store_upkeep;
/* Starts the upkeep thread: sg_store_purge and sg_store_audit_prune in batches, each run until
 * nothing is left to delete. *out owned by the caller: sg_store_upkeep_stop(). */
sg_err sg_store_upkeep_start(const struct sg_store_upkeep_conf *c, struct sg_store_upkeep **out,
                             char *err, size_t errlen);
/* The rows deleted so far: expired codes, refresh tokens and revocations; audit rows. */
void sg_store_upkeep_totals(struct sg_store_upkeep *u, uint64_t *expired, uint64_t *audit);
/* Stops it (a run in progress stops after its current batch) and frees it; NULL is fine. */
void sg_store_upkeep_stop(struct sg_store_upkeep *u);

/* ---- worker pool: store work off the event loop ----------------------------------------- */

struct sg_store_pool;

/* A job runs on a worker thread with that worker's own connection. Return SG_OK to commit. */
typedef sg_err (*sg_store_job_fn)(struct sg_store *st, void *arg);
/* The completion: rc is the job's result, or SG_ERR_IO when the commit failed. */
typedef void (*sg_store_done_fn)(sg_err rc, void *done_arg);

/* Starts nthreads workers, each with its own connection opened with driver/path_or_url.
 * Calls evthread_use_pthreads() (once per process): event bases that receive completions must
 * be created after that (or after net/ did it). *out owned by the caller:
 * sg_store_pool_destroy(). */
sg_err sg_store_pool_create(const char *driver, const char *path_or_url, unsigned nthreads,
                            struct sg_store_pool **out, char *err, size_t errlen);
/* Queues a job. Group commit: a worker takes every queued write job (up to 64) and runs them in
 * one transaction, each job inside its own savepoint (a failed job rolls back alone), so a burst
 * of durable writes costs one fsync. done (may be NULL) is called with done_arg once the
 * transaction committed: on the loop of notify (through event_base_once with a zero timeout,
 * thread safe with evthread), or on the worker thread when notify is NULL. */
sg_err sg_store_pool_submit(struct sg_store_pool *pool, sg_store_job_fn job, void *arg,
                            sg_store_done_fn done, void *done_arg, struct event_base *notify);
/* Called on notify's loop once the job has run, before its transaction commits: rc is the
 * job's own result. Lets the submitter prepare its answer (sign tokens, say) while the commit's
 * fsync runs; nothing may be disclosed before done, which always follows and alone says whether
 * the write is durable. */
typedef void (*sg_store_ran_fn)(sg_err rc, void *done_arg);
/* sg_store_pool_submit with a ran callback (notify required; ran and done run on that loop, in
 * that order unless the loop is slower than the commit: done must not assume ran came first). */
sg_err sg_store_pool_submit_early(struct sg_store_pool *pool, sg_store_job_fn job, void *arg,
                                  sg_store_ran_fn ran, sg_store_done_fn done, void *done_arg,
                                  struct event_base *notify);
/* A write job nobody waits for (no completion; an audit trail, say): it rides along with the
 * next batch of durable writes, or runs on its own at most SG_STORE_LAZY_MS after it was
 * queued, so a stream of such jobs costs one commit per interval rather than one each.
 * sg_store_pool_destroy runs it at once. */
#define SG_STORE_LAZY_MS 10
sg_err sg_store_pool_submit_lazy(struct sg_store_pool *pool, sg_store_job_fn job, void *arg);
/* Same for a read-only job: never batched, no write transaction around it. */
sg_err sg_store_pool_submit_read(struct sg_store_pool *pool, sg_store_job_fn job, void *arg,
                                 sg_store_done_fn done, void *done_arg, struct event_base *notify);
/* Runs what is queued, stops the workers, closes their connections and frees the pool. Event
 * bases waiting for completions must still be alive and run afterwards to deliver them. */
void sg_store_pool_destroy(struct sg_store_pool *pool);

/* ---- ss-ipp: VAL services configurations (store/ipp.c; TS 29.549, I11) ------------------ */

struct sg_store_ipp_conf {
	char *conf_id;    /* resource id (confId) */
	char *val_server; /* the VAL server that provisioned it (owner) */
	char *body;       /* the VALServicesConfig as JSON text */
	int64_t created_at;
	int64_t updated_at;
};

/* Stores a configuration: create = 1 inserts (SG_ERR_EXISTS on a conf_id collision), create = 0
 * replaces body and updated_at of an existing one (SG_ERR_NOTFOUND when absent). Timestamps are
 * set by the store. Not a registry table: the generation does not change. */
sg_err sg_store_ipp_put(struct sg_store *st, const struct sg_store_ipp_conf *c, int create);
/* *out owned by the caller: sg_store_ipp_clear(). SG_ERR_NOTFOUND when absent. */
sg_err sg_store_ipp_get(struct sg_store *st, const char *conf_id, struct sg_store_ipp_conf *out);
/* Configurations of one VAL server (NULL: all), by conf_id; *out owned by the caller:
 * sg_store_ipp_list_free(). */
sg_err sg_store_ipp_list(struct sg_store *st, const char *val_server,
                         struct sg_store_ipp_conf **out, size_t *n);
sg_err sg_store_ipp_delete(struct sg_store *st, const char *conf_id);
void sg_store_ipp_clear(struct sg_store_ipp_conf *c);
void sg_store_ipp_list_free(struct sg_store_ipp_conf *v, size_t n);

/* ---- ss-gm: VAL group documents (store/gm.c; TS 29.549 SS_GroupManagement) -------------- */

struct sg_store_gm_doc {
	char *doc_id;       /* resource id (groupDocId) */
	char *owner;        /* the VAL server that created it */
	char *val_group_id; /* the document's valGroupId (for the val-group-id filter) */
	char *body;         /* the VALGroupDocument as JSON text */
	int64_t created_at;
	int64_t updated_at;
};

/* Stores a group document: create = 1 inserts (SG_ERR_EXISTS on a doc_id collision), create = 0
 * replaces val_group_id, body and updated_at of an existing one (SG_ERR_NOTFOUND when absent;
 * the owner never changes). Timestamps are set by the store. Not a registry table: the
 * registry generation does not change, the group-document generation does. */
sg_err sg_store_gm_put(struct sg_store *st, const struct sg_store_gm_doc *d, int create);
/* *out owned by the caller: sg_store_gm_clear(). SG_ERR_NOTFOUND when absent. */
sg_err sg_store_gm_get(struct sg_store *st, const char *doc_id, struct sg_store_gm_doc *out);
/* Every group document by doc_id; *out owned by the caller: sg_store_gm_list_free(). */
sg_err sg_store_gm_list(struct sg_store *st, struct sg_store_gm_doc **out, size_t *n);
sg_err sg_store_gm_delete(struct sg_store *st, const char *doc_id);
/* *taken = 1 when a group document other than doc_id ("" for none) has val_group_id, else 0. */
sg_err sg_store_gm_group_taken(struct sg_store *st, const char *val_group_id, const char *doc_id,
                               int *taken);
/* The group documents of owner other than doc_id ("" for none): how many, and their JSON text
 * in bytes together (the VAL server's quota, gm/server.c). */
sg_err sg_store_gm_owner_usage(struct sg_store *st, const char *owner, const char *doc_id,
                               uint64_t *docs, uint64_t *bytes);
/* Like sg_store_generation, for group documents only: changes with every committed write to
 * them, by any connection of any process. */
sg_err sg_store_gm_generation(struct sg_store *st, uint64_t *gen);
void sg_store_gm_clear(struct sg_store_gm_doc *d);
void sg_store_gm_list_free(struct sg_store_gm_doc *v, size_t n);

/* ---- key management (store/km.c; TS 33.434 §5.3, §5.8; TS 29.549 ss-kpp, ss-kir) -------- */

/* An SKM-C's registered public key (R2: key material is encrypted to it). */
struct sg_store_km_client {
	char *owner;     /* "ue:<sub>" for a UE, "vs:<name>" for a VAL server */
	char *client_id; /* the token's client_id (SIM-C app / VAL server name) */
	char *kid;       /* RFC 7638 thumbprint of the public key */
	char *jwk;       /* public JWK as JSON text (never a private member) */
	char *skmc_uri;  /* the SKM-C's URI (userUri of ValKeyInfo) */
	int64_t created_at;
};

/* Inserts or replaces the owner's key for client_id (re-registration rotates it). */
sg_err sg_store_km_client_put(struct sg_store *st, const struct sg_store_km_client *c);
/* *out owned by the caller: sg_store_km_client_clear(). SG_ERR_NOTFOUND when absent. */
sg_err sg_store_km_client_get(struct sg_store *st, const char *owner, const char *client_id,
                              struct sg_store_km_client *out);
sg_err sg_store_km_client_delete(struct sg_store *st, const char *owner, const char *client_id);
void sg_store_km_client_clear(struct sg_store_km_client *c);

/* One version of a provisioned key. The key bytes exist here only sealed (the caller seals
 * them under the master key with the record id and version as AAD); sealed is wiped when
 * cleared. target_kind: "user" (target = valUserId), "ue" (valUeId), "" (the VAL service). */
struct sg_store_km_key {
	char *val_service, *key_id;
	int64_t version;
	char *target_kind, *target;
	char *provider; /* the VAL server that provisioned it */
	char *skmc_uri; /* the provisioning SKM-C's skmcUri */
	unsigned char *sealed;
	size_t sealed_len;
	int64_t not_before, not_after;                 /* ms; not_after 0: no expiry */
	int64_t created_at, revoked_at, superseded_at; /* ms; 0: not revoked / current */
};

/* Adds version k->version of (val_service, key_id) and marks every older version superseded
 * (same transaction). SG_ERR_EXISTS when that version exists. created_at is set by the store
 * when 0. */
sg_err sg_store_km_key_add(struct sg_store *st, const struct sg_store_km_key *k);
/* The highest version of (val_service, key_id); *out owned by the caller. SG_ERR_NOTFOUND. */
sg_err sg_store_km_key_latest(struct sg_store *st, const char *val_service, const char *key_id,
                              struct sg_store_km_key *out);
/* Supersedes every current version of a key (never released again; the upkeep deletes it a
 * day later). SG_OK also when none was current. */
sg_err sg_store_km_key_retire(struct sg_store *st, const char *val_service, const char *key_id,
                              int64_t now);
/* How many keys (their current, not superseded, versions; revoked and expired ones included
 * until the upkeep deletes them) a VAL service has: in all (*service) and of target_kind/target
 * (*target; "", "" for the service's own keys). */
sg_err sg_store_km_key_count(struct sg_store *st, const char *val_service, const char *target_kind,
                             const char *target, uint64_t *service, uint64_t *target_n);
/* The current (not superseded) versions of a VAL service's keys, by key_id; target_kind NULL:
 * every target, else only that target_kind/target. Revoked and expired ones are included (the
 * caller decides: it never releases them). *out owned by the caller: sg_store_km_key_list_free.
 */
sg_err sg_store_km_key_list(struct sg_store *st, const char *val_service, const char *target_kind,
                            const char *target, struct sg_store_km_key **out, size_t *n);
/* Revokes every version of (val_service, key_id) at now (idempotent: the first time stays).
 * SG_ERR_NOTFOUND when there is no such key. */
sg_err sg_store_km_key_revoke(struct sg_store *st, const char *val_service, const char *key_id,
                              int64_t now);
void sg_store_km_key_clear(struct sg_store_km_key *k);
void sg_store_km_key_list_free(struct sg_store_km_key *v, size_t n);

/* ---- SEALDD-S state (store/sdd.c; TS 29.548 SDD_Transmission) ------------------------- */

/* A transmission requested by a VAL server (RequestTrans), one per VAL service. */
struct sg_store_sdd_trans {
	char *val_service; /* valServiceId (primary key) */
	char *client_id;   /* the requesting VAL server (token client_id) */
	char *identity;    /* its certificate SAN, demanded from the relay target */
	char *trans_type;  /* "regular" or "urllc" */
	char *body;        /* the TransReq as JSON text */
	int64_t created_at;
	int64_t updated_at;
};

/* Inserts the transmission of t->val_service or replaces the one stored for it (client_id,
 * identity, trans_type, body; created_at is kept). Timestamps are set by the store. Not a
 * registry table: the generation does not change. */
sg_err sg_store_sdd_trans_put(struct sg_store *st, const struct sg_store_sdd_trans *t);
/* *out owned by the caller: sg_store_sdd_trans_clear(). SG_ERR_NOTFOUND when absent. */
sg_err sg_store_sdd_trans_get(struct sg_store *st, const char *val_service,
                              struct sg_store_sdd_trans *out);
/* Every transmission by val_service; *out owned by the caller: sg_store_sdd_trans_list_free. */
sg_err sg_store_sdd_trans_list(struct sg_store *st, struct sg_store_sdd_trans **out, size_t *n);
sg_err sg_store_sdd_trans_delete(struct sg_store *st, const char *val_service);
void sg_store_sdd_trans_clear(struct sg_store_sdd_trans *t);
void sg_store_sdd_trans_list_free(struct sg_store_sdd_trans *v, size_t n);

/* A connection status subscription (ConnStatusSubsc) of one VAL server. */
struct sg_store_sdd_subsc {
	char *subsc_id;     /* resource id (primary key) */
	char *owner;        /* the VAL server's client_id */
	char *identity;     /* the certificate identity (SAN) it was created with */
	char *body;         /* the canonical ConnStatusSubsc as JSON text */
	int64_t expires_at; /* ms since the epoch: gone from then on (its expTime); 0: not set
	                     * yet (a row from before schema 7, until settled) */
	int64_t created_at;
	int64_t updated_at;
};

/* create = 1 inserts (SG_ERR_EXISTS on a subsc_id collision); create = 0 replaces the body and
 * expires_at of the subscription subsc_id of owner and identity (SG_ERR_NOTFOUND when absent or
 * another's; whether it is still live is the caller's to check, with get, in the same
 * transaction). Timestamps are set by the store. */
sg_err sg_store_sdd_subsc_put(struct sg_store *st, const struct sg_store_sdd_subsc *s, int create);
/* The subscription subsc_id of owner and identity (both NULL: of anyone), live at now_ms (0:
 * expired or not); *out owned by the caller: sg_store_sdd_subsc_clear(). SG_ERR_NOTFOUND when
 * absent, expired or another's. */
sg_err sg_store_sdd_subsc_get(struct sg_store *st, const char *subsc_id, const char *owner,
                              const char *identity, int64_t now_ms, struct sg_store_sdd_subsc *out);
/* Subscriptions of one owner (NULL: all) by subsc_id, expired ones too; *out owned by the
 * caller: sg_store_sdd_subsc_list_free(). */
sg_err sg_store_sdd_subsc_list(struct sg_store *st, const char *owner,
                               struct sg_store_sdd_subsc **out, size_t *n);
/* The number of stored subscriptions of owner (NULL: of every owner). */
sg_err sg_store_sdd_subsc_count(struct sg_store *st, const char *owner, size_t *n);
/* Deletes the live subscription subsc_id of owner and identity at now_ms; SG_ERR_NOTFOUND when
 * absent, expired or another's. */
sg_err sg_store_sdd_subsc_delete(struct sg_store *st, const char *subsc_id, const char *owner,
                                 const char *identity, int64_t now_ms);
/* Gives every subscription without an expiry (expires_at 0: made before schema 7) this one.
 * *n: how many (may be NULL). */
sg_err sg_store_sdd_subsc_settle(struct sg_store *st, int64_t expires_at, size_t *n);
/* Deletes what nobody can reach any more: every subscription expired at now_ms and, owner
 * given, those of owner created with another identity than identity (the VAL server name now
 * belongs to another certificate). *n: how many went (may be NULL). */
sg_err sg_store_sdd_subsc_purge(struct sg_store *st, int64_t now_ms, const char *owner,
                                const char *identity, size_t *n);
/* Deletes every subscription of owner (a VAL server removed from the registry: nobody can read
 * or delete them any more). *n: how many went (may be NULL). */
sg_err sg_store_sdd_subsc_delete_owner(struct sg_store *st, const char *owner, size_t *n);
void sg_store_sdd_subsc_clear(struct sg_store_sdd_subsc *s);
void sg_store_sdd_subsc_list_free(struct sg_store_sdd_subsc *v, size_t n);

#endif
