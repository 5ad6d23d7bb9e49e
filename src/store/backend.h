/* store/backend.h: the function table a storage backend implements (private to store/).
 * store.c dispatches the public sg_store_* calls through it; sqlite.c is the embedded backend,
 * a libpq backend adds a second table and a branch in sg_store_open(). */
#ifndef SG_STORE_BACKEND_H
#define SG_STORE_BACKEND_H

#include "store/store.h"

struct sg_store_ops {
	const char *name;
	void (*close)(struct sg_store *st);
	sg_err (*schema_version)(struct sg_store *st, int *version);
	sg_err (*generation)(struct sg_store *st, uint64_t *gen);
	sg_err (*tx_begin)(struct sg_store *st);
	sg_err (*tx_commit)(struct sg_store *st);
	sg_err (*tx_rollback)(struct sg_store *st);

	sg_err (*user_add)(struct sg_store *st, const struct sg_store_user *u, char *sub_out);
	sg_err (*user_get)(struct sg_store *st, const char *name, const char *sub,
	                   struct sg_store_user *out);
	sg_err (*user_list)(struct sg_store *st, struct sg_store_user **out, size_t *n);
	sg_err (*user_set_password)(struct sg_store *st, const char *name, const char *hash);
	sg_err (*user_set_disabled)(struct sg_store *st, const char *name, int disabled);
	sg_err (*user_delete)(struct sg_store *st, const char *name);
	sg_err (*user_val_id_set)(struct sg_store *st, const char *name, const char *service,
	                          const char *val_user_id);
	sg_err (*user_val_id_delete)(struct sg_store *st, const char *name, const char *service);

	sg_err (*client_add)(struct sg_store *st, const struct sg_store_client *c);
	sg_err (*client_get)(struct sg_store *st, const char *client_id,
	                     struct sg_store_client *out);
	sg_err (*client_list)(struct sg_store *st, struct sg_store_client **out, size_t *n);
	sg_err (*client_set_secret)(struct sg_store *st, const char *client_id,
	                            const unsigned char *digest, size_t len);
	sg_err (*client_delete)(struct sg_store *st, const char *client_id);

	sg_err (*valserver_add)(struct sg_store *st, const struct sg_store_valserver *v);
	sg_err (*valserver_get)(struct sg_store *st, const char *name,
	                        struct sg_store_valserver *out);
	sg_err (*valserver_list)(struct sg_store *st, struct sg_store_valserver **out, size_t *n);
	sg_err (*valserver_set_disabled)(struct sg_store *st, const char *name, int disabled);
	sg_err (*valserver_delete)(struct sg_store *st, const char *name);

	sg_err (*key_add)(struct sg_store *st, const struct sg_store_key *k,
	                  int64_t retire_after_ms);
	sg_err (*key_get)(struct sg_store *st, const char *kid, struct sg_store_key *out);
	sg_err (*key_list)(struct sg_store *st, struct sg_store_key **out, size_t *n);
	sg_err (*key_retire)(struct sg_store *st, const char *kid, int64_t retire_at);
	sg_err (*key_delete)(struct sg_store *st, const char *kid);

	sg_err (*code_put)(struct sg_store *st, const struct sg_store_code *c);
	sg_err (*code_consume)(struct sg_store *st, const unsigned char *digest, size_t len,
	                       int64_t now, struct sg_store_code *out, enum sg_store_use *use);
	sg_err (*refresh_put)(struct sg_store *st, const struct sg_store_refresh *r);
	sg_err (*refresh_consume)(struct sg_store *st, const unsigned char *digest, size_t len,
	                          int64_t now, struct sg_store_refresh *out,
	                          enum sg_store_use *use);
	sg_err (*grant_revoke)(struct sg_store *st, const char *grant_id, int64_t now,
	                       int64_t expires_at);
	sg_err (*grants_revoke_of)(struct sg_store *st, const char *client_id, const char *sub,
	                           int64_t now, int64_t expires_at, size_t *n);
	sg_err (*grant_is_revoked)(struct sg_store *st, const char *grant_id, int *revoked);
	sg_err (*jti_revoke)(struct sg_store *st, const char *jti, int64_t now, int64_t expires_at);
	sg_err (*revoked_list)(struct sg_store *st, int64_t since, int64_t now,
	                       struct sg_store_revoked **out, size_t *n);
	sg_err (*purge)(struct sg_store *st, int64_t now, size_t batch, uint64_t *deleted);

	sg_err (*audit_append)(struct sg_store *st, const struct sg_store_audit *a);
	sg_err (*audit_list)(struct sg_store *st, int64_t after_id, size_t limit,
	                     struct sg_store_audit **out, size_t *n);
	sg_err (*audit_prune)(struct sg_store *st, int64_t before, uint64_t max_rows, size_t batch,
	                      uint64_t *deleted);
};

/* Every backend's connection struct starts with this. */
struct sg_store {
	const struct sg_store_ops *ops;
};

/* Records the calling thread's last error message and returns code. */
sg_err sg_store_fail(sg_err code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sg_store_clear_error(void);

/* The SQLite backend's constructor (sqlite.c). *out owned by the caller: ops->close(). */
sg_err sg_store_sqlite_open(const char *path, struct sg_store **out, char *err, size_t errlen);

/* The SQLite handle of a connection of the SQLite backend (NULL for any other backend), for the
 * store extensions in other files of store/ (ipp.c). Use it only between sg_store_tx_begin()
 * and sg_store_tx_commit()/rollback(), which hold the connection's mutex. */
void *sg_store_sqlite_handle(struct sg_store *st);

#endif
