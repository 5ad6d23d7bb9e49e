/* store/store.c: the public sg_store_* calls dispatched through the backend's function table,
 * the thread-local error message, and the destructors of the entity structs. */
#include "store/backend.h"

#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_last_error[512];

sg_err sg_store_fail(sg_err code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
	va_end(ap);
	return code;
}

void sg_store_clear_error(void)
{
	g_last_error[0] = '\0';
}

const char *sg_store_last_error(void)
{
	return g_last_error;
}

sg_err sg_store_open(const char *driver, const char *path_or_url, struct sg_store **out, char *err,
                     size_t errlen)
{
	if (!driver || !path_or_url || !out)
		return sg_fail(err, errlen, SG_ERR_INVALID, "store: driver and path are required");
	*out = NULL;
	if (!strcmp(driver, "sqlite") || !strcmp(driver, "sqlite3"))
		return sg_store_sqlite_open(path_or_url, out, err, errlen);
	if (!strcmp(driver, "postgres") || !strcmp(driver, "postgresql"))
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "store: the PostgreSQL backend is not built into this sealguard; "
		               "use driver \"sqlite\"");
	return sg_fail(err, errlen, SG_ERR_CONFIG,
	               "store: unknown driver \"%s\" (known: sqlite, postgres)", driver);
}

void sg_store_close(struct sg_store *st)
{
	if (st)
		st->ops->close(st);
}

#define CHECK_ST(st)                                                                               \
	do {                                                                                       \
		if (!(st))                                                                         \
			return sg_store_fail(SG_ERR_INVALID, "store: NULL store");                 \
		sg_store_clear_error();                                                            \
	} while (0)

sg_err sg_store_schema_version(struct sg_store *st, int *version)
{
	CHECK_ST(st);
	return st->ops->schema_version(st, version);
}

sg_err sg_store_generation(struct sg_store *st, uint64_t *gen)
{
	CHECK_ST(st);
	return st->ops->generation(st, gen);
}

sg_err sg_store_tx_begin(struct sg_store *st)
{
	CHECK_ST(st);
	return st->ops->tx_begin(st);
}

sg_err sg_store_tx_commit(struct sg_store *st)
{
	CHECK_ST(st);
	return st->ops->tx_commit(st);
}

sg_err sg_store_tx_rollback(struct sg_store *st)
{
	CHECK_ST(st);
	return st->ops->tx_rollback(st);
}

/* ---- users ---- */

sg_err sg_store_user_add(struct sg_store *st, const struct sg_store_user *u, char *sub_out)
{
	CHECK_ST(st);
	if (!u || !u->name || !*u->name || !u->password_hash)
		return sg_store_fail(SG_ERR_INVALID,
		                     "store: a user needs a name and a password hash");
	for (size_t i = 0; i < u->n_val_ids; i++)
		if (!u->val_ids[i].service || !u->val_ids[i].val_user_id)
			return sg_store_fail(SG_ERR_INVALID, "store: incomplete VAL user id");
	return st->ops->user_add(st, u, sub_out);
}

sg_err sg_store_user_get_by_name(struct sg_store *st, const char *name, struct sg_store_user *out)
{
	CHECK_ST(st);
	if (!name || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: user name required");
	return st->ops->user_get(st, name, NULL, out);
}

sg_err sg_store_user_get_by_sub(struct sg_store *st, const char *sub, struct sg_store_user *out)
{
	CHECK_ST(st);
	if (!sub || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: sub required");
	return st->ops->user_get(st, NULL, sub, out);
}

sg_err sg_store_user_list(struct sg_store *st, struct sg_store_user **out, size_t *n)
{
	CHECK_ST(st);
	return st->ops->user_list(st, out, n);
}

sg_err sg_store_user_set_password(struct sg_store *st, const char *name, const char *hash)
{
	CHECK_ST(st);
	if (!name || !hash)
		return sg_store_fail(SG_ERR_INVALID, "store: name and hash required");
	return st->ops->user_set_password(st, name, hash);
}

sg_err sg_store_user_set_disabled(struct sg_store *st, const char *name, int disabled)
{
	CHECK_ST(st);
	if (!name)
		return sg_store_fail(SG_ERR_INVALID, "store: name required");
	return st->ops->user_set_disabled(st, name, disabled);
}

sg_err sg_store_user_delete(struct sg_store *st, const char *name)
{
	CHECK_ST(st);
	if (!name)
		return sg_store_fail(SG_ERR_INVALID, "store: name required");
	return st->ops->user_delete(st, name);
}

sg_err sg_store_user_val_id_set(struct sg_store *st, const char *name, const char *service,
                                const char *val_user_id)
{
	CHECK_ST(st);
	if (!name || !service || !*service || !val_user_id || !*val_user_id)
		return sg_store_fail(SG_ERR_INVALID,
		                     "store: name, service and VAL user id required");
	return st->ops->user_val_id_set(st, name, service, val_user_id);
}

sg_err sg_store_user_val_id_delete(struct sg_store *st, const char *name, const char *service)
{
	CHECK_ST(st);
	if (!name || !service)
		return sg_store_fail(SG_ERR_INVALID, "store: name and service required");
	return st->ops->user_val_id_delete(st, name, service);
}

void sg_store_user_clear(struct sg_store_user *u)
{
	if (!u)
		return;
	free(u->name);
	if (u->password_hash) {
		OPENSSL_cleanse(u->password_hash, strlen(u->password_hash));
		free(u->password_hash);
	}
	for (size_t i = 0; i < u->n_val_ids; i++) {
		free(u->val_ids[i].service);
		free(u->val_ids[i].val_user_id);
	}
	free(u->val_ids);
	memset(u, 0, sizeof *u);
}

void sg_store_user_list_free(struct sg_store_user *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		sg_store_user_clear(&v[i]);
	free(v);
}

/* ---- clients ---- */

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

sg_err sg_store_client_add(struct sg_store *st, const struct sg_store_client *c)
{
	CHECK_ST(st);
	if (!c || !c->client_id || !*c->client_id || c->secret_digest_len > SG_STORE_DIGEST_MAX)
		return sg_store_fail(SG_ERR_INVALID, "store: a client needs a client_id");
	for (size_t i = 0; i < c->n_redirect_uris; i++)
		if (!c->redirect_uris[i] || !*c->redirect_uris[i])
			return sg_store_fail(SG_ERR_INVALID, "store: empty redirect URI");
	return st->ops->client_add(st, c);
}

sg_err sg_store_client_get(struct sg_store *st, const char *client_id, struct sg_store_client *out)
{
	CHECK_ST(st);
	if (!client_id || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: client_id required");
	return st->ops->client_get(st, client_id, out);
}

sg_err sg_store_client_list(struct sg_store *st, struct sg_store_client **out, size_t *n)
{
	CHECK_ST(st);
	return st->ops->client_list(st, out, n);
}

sg_err sg_store_client_set_secret(struct sg_store *st, const char *client_id,
                                  const unsigned char *digest, size_t len)
{
	CHECK_ST(st);
	if (!client_id || (!digest && len) || len > SG_STORE_DIGEST_MAX)
		return sg_store_fail(SG_ERR_INVALID, "store: bad client secret digest");
	return st->ops->client_set_secret(st, client_id, digest, len);
}

sg_err sg_store_client_delete(struct sg_store *st, const char *client_id)
{
	CHECK_ST(st);
	if (!client_id)
		return sg_store_fail(SG_ERR_INVALID, "store: client_id required");
	return st->ops->client_delete(st, client_id);
}

void sg_store_client_clear(struct sg_store_client *c)
{
	if (!c)
		return;
	free(c->client_id);
	free_strv(c->redirect_uris, c->n_redirect_uris);
	free(c->scopes);
	OPENSSL_cleanse(c, sizeof *c);
}

void sg_store_client_list_free(struct sg_store_client *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		sg_store_client_clear(&v[i]);
	free(v);
}

/* ---- VAL servers ---- */

sg_err sg_store_valserver_add(struct sg_store *st, const struct sg_store_valserver *v)
{
	CHECK_ST(st);
	if (!v || !v->name || !*v->name || !v->identity || !*v->identity)
		return sg_store_fail(SG_ERR_INVALID,
		                     "store: a VAL server needs a name and a certificate identity");
	for (size_t i = 0; i < v->n_val_services; i++)
		if (!v->val_services[i] || !*v->val_services[i])
			return sg_store_fail(SG_ERR_INVALID, "store: empty VAL service id");
	return st->ops->valserver_add(st, v);
}

sg_err sg_store_valserver_get(struct sg_store *st, const char *name, struct sg_store_valserver *out)
{
	CHECK_ST(st);
	if (!name || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: VAL server name required");
	return st->ops->valserver_get(st, name, out);
}

sg_err sg_store_valserver_list(struct sg_store *st, struct sg_store_valserver **out, size_t *n)
{
	CHECK_ST(st);
	return st->ops->valserver_list(st, out, n);
}

sg_err sg_store_valserver_set_disabled(struct sg_store *st, const char *name, int disabled)
{
	CHECK_ST(st);
	if (!name)
		return sg_store_fail(SG_ERR_INVALID, "store: VAL server name required");
	return st->ops->valserver_set_disabled(st, name, disabled);
}

sg_err sg_store_valserver_delete(struct sg_store *st, const char *name)
{
	CHECK_ST(st);
	if (!name)
		return sg_store_fail(SG_ERR_INVALID, "store: VAL server name required");
	return st->ops->valserver_delete(st, name);
}

void sg_store_valserver_clear(struct sg_store_valserver *v)
{
	if (!v)
		return;
	free(v->name);
	free(v->identity);
	free_strv(v->val_services, v->n_val_services);
	free(v->scopes);
	memset(v, 0, sizeof *v);
}

void sg_store_valserver_list_free(struct sg_store_valserver *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		sg_store_valserver_clear(&v[i]);
	free(v);
}

const struct sg_store_valserver *sg_store_valserver_find(const struct sg_store_valserver *v,
                                                         size_t n, const char *name)
{
	size_t lo = 0, hi = n;
	while (name && lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(name, v[mid].name);
		if (c == 0)
			return &v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* ---- signing keys ---- */

sg_err sg_store_key_add(struct sg_store *st, const struct sg_store_key *k, int64_t retire_after_ms)
{
	CHECK_ST(st);
	if (!k || !k->kid || !*k->kid || !k->alg || !k->public_jwk || (!k->priv && k->priv_len))
		return sg_store_fail(SG_ERR_INVALID, "store: a key needs kid, alg and public JWK");
	return st->ops->key_add(st, k, retire_after_ms);
}

sg_err sg_store_key_get(struct sg_store *st, const char *kid, struct sg_store_key *out)
{
	CHECK_ST(st);
	if (!kid || !out)
		return sg_store_fail(SG_ERR_INVALID, "store: kid required");
	return st->ops->key_get(st, kid, out);
}

sg_err sg_store_key_list(struct sg_store *st, struct sg_store_key **out, size_t *n)
{
	CHECK_ST(st);
	return st->ops->key_list(st, out, n);
}

sg_err sg_store_key_retire(struct sg_store *st, const char *kid, int64_t retire_at)
{
	CHECK_ST(st);
	if (!kid)
		return sg_store_fail(SG_ERR_INVALID, "store: kid required");
	return st->ops->key_retire(st, kid, retire_at);
}

sg_err sg_store_key_delete(struct sg_store *st, const char *kid)
{
	CHECK_ST(st);
	if (!kid)
		return sg_store_fail(SG_ERR_INVALID, "store: kid required");
	return st->ops->key_delete(st, kid);
}

void sg_store_key_clear(struct sg_store_key *k)
{
	if (!k)
		return;
	free(k->kid);
	free(k->alg);
	if (k->priv) {
		OPENSSL_cleanse(k->priv, k->priv_len);
		free(k->priv);
	}
	free(k->public_jwk);
	memset(k, 0, sizeof *k);
}

void sg_store_key_list_free(struct sg_store_key *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		sg_store_key_clear(&v[i]);
	free(v);
}

/* ---- codes, refresh tokens, revocations ---- */

static int digest_ok(const unsigned char *d, size_t len)
{
	return d && len > 0 && len <= SG_STORE_DIGEST_MAX;
}

sg_err sg_store_code_put(struct sg_store *st, const struct sg_store_code *c)
{
	CHECK_ST(st);
	if (!c || !digest_ok(c->digest, c->digest_len) || !c->client_id || !c->sub ||
	    !c->redirect_uri || !c->scope || !c->code_challenge || !c->grant_id)
		return sg_store_fail(SG_ERR_INVALID, "store: incomplete authorization code");
	return st->ops->code_put(st, c);
}

sg_err sg_store_code_consume(struct sg_store *st, const unsigned char *digest, size_t len,
                             int64_t now, struct sg_store_code *out, enum sg_store_use *use)
{
	CHECK_ST(st);
	if (!digest_ok(digest, len) || !out || !use)
		return sg_store_fail(SG_ERR_INVALID, "store: bad code digest");
	memset(out, 0, sizeof *out);
	return st->ops->code_consume(st, digest, len, now, out, use);
}

void sg_store_code_clear(struct sg_store_code *c)
{
	if (!c)
		return;
	free(c->client_id);
	free(c->sub);
	free(c->redirect_uri);
	free(c->scope);
	free(c->nonce);
	free(c->code_challenge);
	free(c->acr);
	free(c->grant_id);
	OPENSSL_cleanse(c, sizeof *c);
}

sg_err sg_store_refresh_put(struct sg_store *st, const struct sg_store_refresh *r)
{
	CHECK_ST(st);
	if (!r || !digest_ok(r->digest, r->digest_len) || !r->grant_id || !r->client_id ||
	    !r->sub || !r->scope)
		return sg_store_fail(SG_ERR_INVALID, "store: incomplete refresh token");
	return st->ops->refresh_put(st, r);
}

sg_err sg_store_refresh_consume(struct sg_store *st, const unsigned char *digest, size_t len,
                                int64_t now, struct sg_store_refresh *out, enum sg_store_use *use)
{
	CHECK_ST(st);
	if (!digest_ok(digest, len) || !out || !use)
		return sg_store_fail(SG_ERR_INVALID, "store: bad refresh token digest");
	memset(out, 0, sizeof *out);
	return st->ops->refresh_consume(st, digest, len, now, out, use);
}

void sg_store_refresh_clear(struct sg_store_refresh *r)
{
	if (!r)
		return;
	free(r->grant_id);
	free(r->client_id);
	free(r->sub);
	free(r->scope);
	OPENSSL_cleanse(r, sizeof *r);
}

sg_err sg_store_grant_revoke(struct sg_store *st, const char *grant_id, int64_t now,
                             int64_t expires_at)
{
	CHECK_ST(st);
	if (!grant_id || !*grant_id)
		return sg_store_fail(SG_ERR_INVALID, "store: grant id required");
	return st->ops->grant_revoke(st, grant_id, now, expires_at);
}

sg_err sg_store_grants_revoke_of(struct sg_store *st, const char *client_id, const char *sub,
                                 int64_t now, int64_t expires_at, size_t *n)
{
	CHECK_ST(st);
	if (n)
		*n = 0;
	if ((client_id && *client_id) == (sub && *sub))
		return sg_store_fail(SG_ERR_INVALID, "store: a client id or a sub, not both");
	return st->ops->grants_revoke_of(st, client_id && *client_id ? client_id : NULL,
	                                 sub && *sub ? sub : NULL, now, expires_at, n);
}

sg_err sg_store_grant_is_revoked(struct sg_store *st, const char *grant_id, int *revoked)
{
	CHECK_ST(st);
	if (!grant_id || !revoked)
		return sg_store_fail(SG_ERR_INVALID, "store: grant id required");
	return st->ops->grant_is_revoked(st, grant_id, revoked);
}

sg_err sg_store_jti_revoke(struct sg_store *st, const char *jti, int64_t now, int64_t expires_at)
{
	CHECK_ST(st);
	if (!jti || !*jti)
		return sg_store_fail(SG_ERR_INVALID, "store: jti required");
	return st->ops->jti_revoke(st, jti, now, expires_at);
}

sg_err sg_store_revoked_list(struct sg_store *st, int64_t since, int64_t now,
                             struct sg_store_revoked **out, size_t *n)
{
	CHECK_ST(st);
	if (!out || !n)
		return sg_store_fail(SG_ERR_INVALID, "store: out parameters required");
	return st->ops->revoked_list(st, since, now, out, n);
}

void sg_store_revoked_list_free(struct sg_store_revoked *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].id);
	free(v);
}

sg_err sg_store_purge(struct sg_store *st, int64_t now, size_t batch, uint64_t *deleted)
{
	CHECK_ST(st);
	return st->ops->purge(st, now, batch, deleted);
}

/* ---- audit ---- */

sg_err sg_store_audit_prune(struct sg_store *st, int64_t before, uint64_t max_rows, size_t batch,
                            uint64_t *deleted)
{
	CHECK_ST(st);
	return st->ops->audit_prune(st, before, max_rows, batch, deleted);
}

sg_err sg_store_audit_append(struct sg_store *st, const struct sg_store_audit *a)
{
	CHECK_ST(st);
	if (!a || !a->actor || !a->action)
		return sg_store_fail(SG_ERR_INVALID, "store: an audit row needs actor and action");
	return st->ops->audit_append(st, a);
}

sg_err sg_store_audit_list(struct sg_store *st, int64_t after_id, size_t limit,
                           struct sg_store_audit **out, size_t *n)
{
	CHECK_ST(st);
	if (!out || !n)
		return sg_store_fail(SG_ERR_INVALID, "store: out parameters required");
	return st->ops->audit_list(st, after_id, limit, out, n);
}

void sg_store_audit_list_free(struct sg_store_audit *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].actor);
		free(v[i].action);
		free(v[i].object);
		free(v[i].refpoint);
		free(v[i].detail);
	}
	free(v);
}

struct sg_store_vals {
	atomic_int refs;
	uint64_t gen;
	struct sg_store_valserver *v;
	size_t n;
};

static int cmp_valserver(const void *a, const void *b)
{
	return strcmp(((const struct sg_store_valserver *)a)->name,
	              ((const struct sg_store_valserver *)b)->name);
}

sg_err sg_store_vals_load(struct sg_store *st, uint64_t gen, struct sg_store_vals **out)
{
	struct sg_store_vals *s = calloc(1, sizeof *s);
	if (!s)
		return SG_ERR_NOMEM;
	atomic_init(&s->refs, 1);
	s->gen = gen;
	sg_err e = sg_store_valserver_list(st, &s->v, &s->n);
	if (e != SG_OK) {
		free(s);
		return e;
	}
	if (s->n > 1) /* lookups need strcmp order, whatever the backend's collation */
		qsort(s->v, s->n, sizeof *s->v, cmp_valserver);
	*out = s;
	return SG_OK;
}

struct sg_store_vals *sg_store_vals_ref(struct sg_store_vals *s)
{
	if (s)
		atomic_fetch_add(&s->refs, 1);
	return s;
}

void sg_store_vals_unref(struct sg_store_vals *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
		sg_store_valserver_list_free(s->v, s->n);
		free(s);
	}
}

uint64_t sg_store_vals_gen(const struct sg_store_vals *s)
{
	return s ? s->gen : 0;
}

size_t sg_store_vals_count(const struct sg_store_vals *s)
{
	return s ? s->n : 0;
}

const struct sg_store_valserver *sg_store_vals_find(const struct sg_store_vals *s, const char *name)
{
	return s ? sg_store_valserver_find(s->v, s->n, name) : NULL;
}
