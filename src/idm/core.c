/* idm/core.c: the SIM-S object: creation (store pool, secrets, signing key), the registry
 * caches kept coherent with the store generation, signing keys and their retirement, login
 * transactions, the in-memory revocation set, mounting the endpoints, and the helpers shared by
 * the endpoint files (OAuth errors, client authentication, minting and verifying tokens). */
#include "idm/internal.h"

#include "auth/keyfile.h"
#include "base/b64.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/rand.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IDM_POOL_THREADS 4
#define IDM_LEEWAY_S     5

/* ---- registry snapshot ---- */

static void reg_free(struct idm_reg *g)
{
	if (!g)
		return;
	sg_store_client_list_free(g->clients, g->nclients);
	sg_store_valserver_list_free(g->vals, g->nvals);
	sg_store_user_list_free(g->users, g->nusers);
	free(g->by_sub);
	for (size_t i = 0; i < g->nservices; i++)
		free(g->services[i]);
	free(g->services);
	sg_jws_key_free(g->signer);
	free(g);
}

struct idm_reg *idm_reg_get(struct sg_idm *idm)
{
	pthread_mutex_lock(&idm->reg_mu);
	struct idm_reg *g = idm->reg;
	if (g)
		atomic_fetch_add(&g->refs, 1);
	pthread_mutex_unlock(&idm->reg_mu);
	return g;
}

void idm_reg_put(struct idm_reg *g)
{
	if (g && atomic_fetch_sub(&g->refs, 1) == 1)
		reg_free(g);
}

const struct sg_store_client *idm_client_find(const struct idm_reg *g, const char *id)
{
	size_t lo = 0, hi = g ? g->nclients : 0;
	while (id && lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(id, g->clients[mid].client_id);
		if (c == 0)
			return &g->clients[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const struct sg_store_valserver *idm_val_find(const struct idm_reg *g, const char *name)
{
	size_t lo = 0, hi = g ? g->nvals : 0;
	while (name && lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(name, g->vals[mid].name);
		if (c == 0)
			return &g->vals[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const struct sg_store_user *idm_user_by_sub(const struct idm_reg *g, const char *sub)
{
	size_t lo = 0, hi = g ? g->nusers : 0;
	while (sub && lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(sub, g->users[g->by_sub[mid]].sub);
		if (c == 0)
			return &g->users[g->by_sub[mid]];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static const struct sg_store_user *g_sort_users; /* qsort context (load runs on one thread) */
static int cmp_sub(const void *a, const void *b)
{
	return strcmp(g_sort_users[*(const size_t *)a].sub, g_sort_users[*(const size_t *)b].sub);
}
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}
static int cmp_client(const void *a, const void *b)
{
	return strcmp(((const struct sg_store_client *)a)->client_id,
	              ((const struct sg_store_client *)b)->client_id);
}
static int cmp_val(const void *a, const void *b)
{
	return strcmp(((const struct sg_store_valserver *)a)->name,
	              ((const struct sg_store_valserver *)b)->name);
}

/* Opens the sealed private key of k (AAD "sigkey:" kid). */
static sg_err key_open(struct sg_idm *idm, const struct sg_store_key *k, struct sg_jws_key **out,
                       char *err, size_t errlen)
{
	if (!k->priv || k->priv_len <= SG_SEALED_LEN(0))
		return sg_fail(err, errlen, SG_ERR_INVALID, "signing key %s has no private part",
		               k->kid);
	char aad[8 + SG_JWS_KID_MAX + 1];
	snprintf(aad, sizeof aad, "sigkey:%s", k->kid);
	size_t n = k->priv_len - SG_SEALED_LEN(0), got = 0;
	unsigned char *pem = malloc(n + 1);
	if (!pem)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	sg_err e = sg_unseal(idm->master, aad, strlen(aad), k->priv, k->priv_len, pem, &got);
	if (e != SG_OK) {
		free(pem);
		return sg_fail(err, errlen, e,
		               "signing key %s does not open with this master key (%s)", k->kid,
		               sg_err_str(e));
	}
	pem[got] = '\0';
	e = sg_jws_key_from_pem((const char *)pem, got, k->kid, out, err, errlen);
	OPENSSL_cleanse(pem, n + 1);
	free(pem);
	return e;
}

/* Brings the published key set in line with the store: keys not yet retired are published,
 * retired ones leave (RFC 7517; rotation keeps a key until its tokens expired). */
static sg_err keys_sync(struct sg_idm *idm, struct sg_store *st, struct idm_reg *g, char *err,
                        size_t errlen)
{
	struct sg_store_key *keys = NULL;
	size_t n = 0;
	sg_err e = sg_store_key_list(st, &keys, &n);
	if (e != SG_OK)
		return sg_fail(err, errlen, e, "signing keys: %s", sg_store_last_error());
	int64_t now = sg_now_ms();
	json_t *pub = json_array();
	for (size_t i = 0; i < n && e == SG_OK; i++) {
		const struct sg_store_key *k = &keys[i];
		if (k->retire_at && k->retire_at <= now)
			continue;
		if (k->retire_at && (!g->next_retire || k->retire_at < g->next_retire))
			g->next_retire = k->retire_at;
		json_array_append_new(pub, json_string(k->kid));
		if (!sg_jws_keyset_has(idm->keys, k->kid)) {
			json_t *jwk = json_loads(k->public_jwk, 0, NULL);
			char kerr[256] = "";
			if (!jwk ||
			    sg_jws_keyset_add_jwk(idm->keys, jwk, kerr, sizeof kerr) != SG_OK)
				sg_log_warn("signing key %s: unusable public key: %s", k->kid,
				            kerr);
			json_decref(jwk);
		}
		if (k->active && !g->signer)
			e = key_open(idm, k, &g->signer, err, errlen);
	}
	/* unpublish what is no longer in the list */
	json_t *doc = sg_jws_keyset_to_jwks(idm->keys);
	json_t *arr = json_object_get(doc, "keys"), *jwk;
	size_t idx;
	json_array_foreach(arr, idx, jwk)
	{
		const char *kid = json_string_value(json_object_get(jwk, "kid"));
		int keep = 0;
		json_t *p;
		size_t j;
		json_array_foreach(pub, j, p) keep |= kid && !strcmp(kid, json_string_value(p));
		if (kid && !keep) {
			sg_jws_keyset_remove(idm->keys, kid);
			sg_log_info("signing key %s retired from the JWKS", kid);
		}
	}
	json_decref(doc);
	json_decref(pub);
	sg_store_key_list_free(keys, n);
	return e;
}

static sg_err reg_load(struct sg_idm *idm, struct sg_store *st, uint64_t gen, struct idm_reg **out,
                       char *err, size_t errlen)
{
	struct idm_reg *g = calloc(1, sizeof *g);
	if (!g)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	atomic_init(&g->refs, 1);
	g->gen = gen;
	sg_err e;
	if ((e = sg_store_client_list(st, &g->clients, &g->nclients)) != SG_OK ||
	    (e = sg_store_valserver_list(st, &g->vals, &g->nvals)) != SG_OK ||
	    (e = sg_store_user_list(st, &g->users, &g->nusers)) != SG_OK) {
		sg_fail(err, errlen, e, "registry: %s", sg_store_last_error());
		reg_free(g);
		return e;
	}
	/* the lists come sorted by SQLite's BINARY collation; sort again to be independent */
	if (g->nclients > 1)
		qsort(g->clients, g->nclients, sizeof *g->clients, cmp_client);
	if (g->nvals > 1)
		qsort(g->vals, g->nvals, sizeof *g->vals, cmp_val);
	for (size_t i = 0; i < g->nusers; i++) {
		/* the cache never needs password hashes: logins read the store */
		if (g->users[i].password_hash) {
			OPENSSL_cleanse(g->users[i].password_hash,
			                strlen(g->users[i].password_hash));
			free(g->users[i].password_hash);
			g->users[i].password_hash = NULL;
		}
	}
	g->by_sub = calloc(g->nusers + 1, sizeof *g->by_sub);
	size_t ns = 0;
	for (size_t i = 0; i < g->nvals; i++)
		ns += g->vals[i].n_val_services;
	g->services = calloc(ns + 1, sizeof *g->services);
	if (!g->by_sub || !g->services) {
		reg_free(g);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < g->nusers; i++)
		g->by_sub[i] = i;
	g_sort_users = g->users;
	if (g->nusers > 1)
		qsort(g->by_sub, g->nusers, sizeof *g->by_sub, cmp_sub);
	for (size_t i = 0; i < g->nvals; i++)
		for (size_t j = 0; j < g->vals[i].n_val_services; j++) {
			int seen = 0;
			for (size_t k = 0; k < g->nservices && !seen; k++)
				seen = !strcmp(g->services[k], g->vals[i].val_services[j]);
			if (!seen &&
			    !(g->services[g->nservices] = strdup(g->vals[i].val_services[j]))) {
				reg_free(g);
				return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
			}
			g->nservices += !seen;
		}
	if (g->nservices > 1)
		qsort(g->services, g->nservices, sizeof *g->services, cmp_str);
	if ((e = keys_sync(idm, st, g, err, errlen)) != SG_OK) {
		reg_free(g);
		return e;
	}
	*out = g;
	return SG_OK;
}

static void reg_swap(struct sg_idm *idm, struct idm_reg *g)
{
	pthread_mutex_lock(&idm->reg_mu);
	struct idm_reg *old = idm->reg;
	idm->reg = g;
	pthread_mutex_unlock(&idm->reg_mu);
	idm_reg_put(old);
	/* clients, VAL servers or users may have gone: cached verifications re-run */
	sg_jws_cache_bump(idm->cache);
}

/* ---- signing keys ---- */

int64_t sg_idm_key_retire_after_ms(const struct sg_conf *conf)
{
	unsigned ttl = conf->idm.access_ttl_s > conf->idm.id_ttl_s ? conf->idm.access_ttl_s
	                                                           : conf->idm.id_ttl_s;
	return ((int64_t)ttl + SG_JWS_MAX_LEEWAY) * 1000;
}

sg_err sg_idm_key_create(struct sg_store *st, const unsigned char master[32],
                         int64_t retire_after_ms, char *kid_out, char *err, size_t errlen)
{
	struct sg_jws_key *k = NULL;
	char *pem = NULL, *jwk_s = NULL;
	size_t pemlen = 0;
	unsigned char *sealed = NULL;
	json_t *jwk = NULL;
	sg_err e = sg_jws_key_generate(&k);
	if (e == SG_OK)
		e = sg_jws_key_private_pem(k, &pem, &pemlen);
	if (e != SG_OK) {
		sg_fail(err, errlen, e, "cannot generate a signing key");
		goto out;
	}
	const char *kid = sg_jws_key_kid(k);
	char aad[8 + SG_JWS_KID_MAX + 1];
	snprintf(aad, sizeof aad, "sigkey:%s", kid);
	sealed = malloc(SG_SEALED_LEN(pemlen));
	jwk = sg_jws_key_public_jwk(k);
	jwk_s = jwk ? json_dumps(jwk, JSON_COMPACT) : NULL;
	if (!sealed || !jwk_s) {
		e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* the private key at rest is sealed with the master key, bound to its kid */
	if ((e = sg_seal(master, aad, strlen(aad), pem, pemlen, sealed)) != SG_OK) {
		sg_fail(err, errlen, e, "cannot seal the signing key");
		goto out;
	}
	struct sg_store_key sk = {
	    .kid = (char *)kid,
	    .alg = "ES256",
	    .priv = sealed,
	    .priv_len = SG_SEALED_LEN(pemlen),
	    .public_jwk = jwk_s,
	    .active = 1,
	};
	if ((e = sg_store_key_add(st, &sk, retire_after_ms)) != SG_OK) {
		sg_fail(err, errlen, e, "cannot store the signing key: %s", sg_store_last_error());
		goto out;
	}
	if (kid_out)
		snprintf(kid_out, SG_JWS_KID_MAX + 1, "%s", kid);
out:
	sg_jws_secret_free(pem, pemlen);
	free(sealed);
	free(jwk_s);
	json_decref(jwk);
	sg_jws_key_free(k);
	return e;
}

/* ---- login transactions ---- */

static size_t str_hash(const char *s, size_t buckets)
{
	size_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h % buckets;
}

void idm_tx_free(struct idm_tx *t)
{
	if (!t)
		return;
	free(t->client_id);
	free(t->redirect_uri);
	free(t->scope);
	free(t->state);
	free(t->nonce);
	free(t->code_challenge);
	OPENSSL_cleanse(t->id, sizeof t->id);
	free(t);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int idm_tx_put(struct sg_idm *idm, struct idm_tx *src)
{
	struct idm_tx *t = calloc(1, sizeof *t);
	if (!t)
		return -1;
	t->client_id = dup_or_null(src->client_id);
	t->redirect_uri = dup_or_null(src->redirect_uri);
	t->scope = dup_or_null(src->scope);
	t->state = dup_or_null(src->state);
	t->nonce = dup_or_null(src->nonce);
	t->code_challenge = dup_or_null(src->code_challenge);
	t->expires_ms = sg_now_ms() + IDM_TX_TTL_MS;
	if (!t->client_id || !t->redirect_uri || !t->scope || !t->state || !t->code_challenge ||
	    (src->nonce && !t->nonce) || sg_secret_generate(t->id, sizeof t->id) != SG_OK) {
		idm_tx_free(t);
		return -1;
	}
	t->has_addr = src->has_addr;
	memcpy(t->addr, src->addr, sizeof t->addr);
	pthread_mutex_lock(&idm->tx_mu);
	if (idm->ntx >= IDM_TX_MAX ||
	    (t->has_addr && (sg_addrtab_get(&idm->tx_addr, t->addr) >= IDM_TX_PER_ADDR ||
	                     !sg_addrtab_inc(&idm->tx_addr, t->addr)))) {
		pthread_mutex_unlock(&idm->tx_mu);
		idm_tx_free(t);
		return -1;
	}
	size_t h = str_hash(t->id, IDM_TX_BUCKETS);
	t->next = idm->tx[h];
	idm->tx[h] = t;
	idm->ntx++;
	pthread_mutex_unlock(&idm->tx_mu);
	memcpy(src->id, t->id, sizeof t->id);
	return 0;
}

struct idm_tx *idm_tx_take(struct sg_idm *idm, const char *id)
{
	if (!id || strlen(id) != SG_SECRET_STR_LEN - 1)
		return NULL;
	struct idm_tx *found = NULL;
	pthread_mutex_lock(&idm->tx_mu);
	for (struct idm_tx **pp = &idm->tx[str_hash(id, IDM_TX_BUCKETS)]; *pp; pp = &(*pp)->next)
		if (sg_secret_equal((*pp)->id, id, SG_SECRET_STR_LEN - 1)) {
			found = *pp;
			*pp = found->next;
			idm->ntx--;
			if (found->has_addr)
				sg_addrtab_dec(&idm->tx_addr, found->addr);
			break;
		}
	pthread_mutex_unlock(&idm->tx_mu);
	if (found && found->expires_ms <= sg_now_ms()) {
		idm_tx_free(found);
		return NULL;
	}
	return found;
}

static void tx_expire(struct sg_idm *idm, int64_t now)
{
	pthread_mutex_lock(&idm->tx_mu);
	for (size_t i = 0; i < IDM_TX_BUCKETS; i++) {
		struct idm_tx **pp = &idm->tx[i];
		while (*pp) {
			struct idm_tx *t = *pp;
			if (t->expires_ms <= now) {
				*pp = t->next;
				idm->ntx--;
				if (t->has_addr)
					sg_addrtab_dec(&idm->tx_addr, t->addr);
				idm_tx_free(t);
			} else {
				pp = &t->next;
			}
		}
	}
	pthread_mutex_unlock(&idm->tx_mu);
}

/* ---- revocations ---- */

int idm_is_revoked(struct sg_idm *idm, const char *jti, const char *gid)
{
	int hit = 0;
	pthread_mutex_lock(&idm->rev_mu);
	for (int k = 0; k < 2 && !hit; k++) {
		const char *id = k == 0 ? jti : gid;
		int kind = k == 0 ? SG_STORE_REVOKED_JTI : SG_STORE_REVOKED_GRANT;
		if (!id)
			continue;
		for (struct idm_rev *r = idm->rev[str_hash(id, IDM_REV_BUCKETS)]; r; r = r->next)
			if (r->kind == kind && !strcmp(r->id, id)) {
				hit = 1;
				break;
			}
	}
	pthread_mutex_unlock(&idm->rev_mu);
	return hit;
}

void idm_revoked_add(struct sg_idm *idm, int kind, const char *id, int64_t exp_ms)
{
	if (!id)
		return;
	int added = 0;
	pthread_mutex_lock(&idm->rev_mu);
	size_t h = str_hash(id, IDM_REV_BUCKETS);
	struct idm_rev *r;
	for (r = idm->rev[h]; r; r = r->next)
		if (r->kind == kind && !strcmp(r->id, id))
			break;
	if (r) {
		if (exp_ms > r->exp_ms)
			r->exp_ms = exp_ms;
	} else if ((r = calloc(1, sizeof *r)) && (r->id = strdup(id))) {
		r->kind = kind;
		r->exp_ms = exp_ms;
		r->next = idm->rev[h];
		idm->rev[h] = r;
		added = 1;
	} else {
		free(r);
	}
	pthread_mutex_unlock(&idm->rev_mu);
	if (added)
		sg_jws_cache_bump(idm->cache);
}

static void rev_expire(struct sg_idm *idm, int64_t now)
{
	pthread_mutex_lock(&idm->rev_mu);
	for (size_t i = 0; i < IDM_REV_BUCKETS; i++) {
		struct idm_rev **pp = &idm->rev[i];
		while (*pp) {
			struct idm_rev *r = *pp;
			if (r->exp_ms <= now) {
				*pp = r->next;
				free(r->id);
				free(r);
			} else {
				pp = &r->next;
			}
		}
	}
	pthread_mutex_unlock(&idm->rev_mu);
}

static sg_err rev_poll(struct sg_idm *idm, struct sg_store *st)
{
	int64_t now = sg_now_ms(), mono = sg_mono_ms();
	struct sg_store_revoked *v = NULL;
	size_t n = 0;
	/* a little overlap: a revocation committed late with an earlier revoked_at is not lost;
	 * and the whole list every minute, for one committed later still or stamped by a clock
	 * set back (as the resource servers' poll, auth/remote.c) */
	int full = mono - idm->rev_full_mono >= 60000;
	sg_err e = sg_store_revoked_list(st, idm->rev_since && !full ? idm->rev_since - 5000 : 0,
	                                 now, &v, &n);
	if (e != SG_OK)
		return e;
	for (size_t i = 0; i < n; i++)
		idm_revoked_add(idm, v[i].kind, v[i].id, v[i].expires_at);
	sg_store_revoked_list_free(v, n);
	idm->rev_since = now;
	if (full)
		idm->rev_full_mono = mono;
	return SG_OK;
}

/* ---- upkeep ---- */

static sg_err upkeep(struct sg_idm *idm, struct sg_store *st, int force, char *err, size_t errlen)
{
	uint64_t gen = 0;
	sg_err e = sg_store_generation(st, &gen);
	if (e != SG_OK)
		return sg_fail(err, errlen, e, "store generation: %s", sg_store_last_error());
	struct idm_reg *cur = idm_reg_get(idm);
	int64_t now = sg_now_ms();
	int reload = force || !cur || cur->gen != gen || !cur->signer ||
	             (cur->next_retire && cur->next_retire <= now);
	idm_reg_put(cur);
	if (reload) {
		struct idm_reg *g = NULL;
		if ((e = reg_load(idm, st, gen, &g, err, errlen)) != SG_OK)
			return e;
		reg_swap(idm, g);
	}
	if ((e = rev_poll(idm, st)) != SG_OK)
		return sg_fail(err, errlen, e, "revocations: %s", sg_store_last_error());
	if (now - idm->last_upkeep >= 5000) {
		idm->last_upkeep = now;
		rev_expire(idm, now);
		tx_expire(idm, now);
		sg_idm_throttle_expire(idm->thr_user, now);
		sg_idm_throttle_expire(idm->thr_addr, now);
	}
	return SG_OK;
}

static sg_err tick_job(struct sg_store *st, void *arg)
{
	struct sg_idm *idm = arg;
	char err[512] = "";
	sg_err e = upkeep(idm, st, 0, err, sizeof err);
	if (e != SG_OK)
		sg_log_warn("idm: registry refresh failed, keeping the previous one: %s", err);
	return e;
}

static void tick_done(sg_err rc, void *arg)
{
	(void)rc;
	struct sg_idm *idm = arg;
	atomic_store(&idm->busy, 0);
}

void sg_idm_tick(struct sg_idm *idm)
{
	int expected = 0;
	if (!idm || !atomic_compare_exchange_strong(&idm->busy, &expected, 1))
		return;
	if (sg_store_pool_submit_read(idm->pool, tick_job, idm, tick_done, idm, NULL) != SG_OK)
		atomic_store(&idm->busy, 0);
}

/* ---- creation ---- */

/* The https URL of the first mutual-TLS reference point with bearer auth serving idm (SEAL-S),
 * with the host of the issuer (RFC 8705 §5 mtls_endpoint_aliases). */
static void derive_mtls_base(struct sg_idm *idm)
{
	const struct sg_conf *c = idm->conf;
	for (unsigned i = 0; i < c->n_refpoints; i++) {
		const struct sg_conf_refpoint *r = &c->refpoints[i];
		int serves = 0;
		for (unsigned j = 0; j < r->n_services; j++)
			serves |= !strcmp(r->services[j], "idm");
		if (!serves || r->tls.mode != SG_TLS_MUTUAL || r->auth_mode != SG_AUTH_MTLS_BEARER)
			continue;
		const char *port = strrchr(r->bind, ':');
		const char *host = idm->issuer + 8; /* after https:// */
		size_t hl = strcspn(host, "/");
		const char *hc = memchr(host, ']', hl) ? memchr(host, ']', hl) + 1 : host;
		const char *colon = memchr(hc, ':', hl - (size_t)(hc - host));
		if (colon)
			hl = (size_t)(colon - host);
		snprintf(idm->mtls_base, sizeof idm->mtls_base, "https://%.*s:%s", (int)hl, host,
		         port ? port + 1 : "443");
		return;
	}
}

sg_err sg_idm_new(const struct sg_conf *conf, struct sg_idm **out, char *err, size_t errlen)
{
	*out = NULL;
	char derived[256] = "";
	if (!conf->idm.issuer) {
		/* no server-auth listener serves idm (e.g. PSK-TLS only, I12): the first non-mutual
		 * one that does names the issuer */
		for (unsigned i = 0; i < conf->n_refpoints && !*derived; i++) {
			const struct sg_conf_refpoint *r = &conf->refpoints[i];
			int serves = 0;
			for (unsigned k = 0; k < r->n_services; k++)
				serves |= !strcmp(r->services[k], "idm");
			const char *port = strrchr(r->bind, ':');
			if (serves && r->tls.mode != SG_TLS_MUTUAL && port)
				snprintf(derived, sizeof derived, "https://localhost:%s", port + 1);
		}
		if (!*derived)
			return sg_fail(err, errlen, SG_ERR_CONFIG,
			               "idm: no issuer: configure idm.issuer or a server-auth "
			               "reference point serving idm");
	}
	struct sg_idm *idm = calloc(1, sizeof *idm);
	if (!idm)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	idm->conf = conf;
	pthread_mutex_init(&idm->reg_mu, NULL);
	pthread_mutex_init(&idm->tx_mu, NULL);
	pthread_mutex_init(&idm->rev_mu, NULL);
	pthread_mutex_init(&idm->audit_mu, NULL);
	atomic_init(&idm->busy, 0);
	snprintf(idm->issuer, sizeof idm->issuer, "%s",
	         conf->idm.issuer ? conf->idm.issuer : derived);
	size_t il = strlen(idm->issuer);
	while (il > 8 && idm->issuer[il - 1] == '/')
		idm->issuer[--il] = '\0';
	derive_mtls_base(idm);
	idm->pw = sg_password_params_default();
	idm->pw.ln = conf->idm.scrypt_ln;
	/* G4: per account 3 free attempts then 1 s, 2 s, 4 s... up to 15 min; per source
	 * address 20 free attempts (NAT, shared hosts) with the same doubling. */
	idm->thr_user = sg_idm_throttle_new(3, 1000, 15 * 60 * 1000, 200000);
	idm->thr_addr = sg_idm_throttle_new(20, 1000, 15 * 60 * 1000, 200000);
	idm->keys = sg_jws_keyset_new();
	idm->cache = sg_jws_cache_new(20000);
	sg_err e = SG_OK;
	if (!idm->thr_user || !idm->thr_addr || !idm->keys || !idm->cache) {
		e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if ((e = sg_keyfile_load(conf->state_dir, "pepper", 1, idm->pepper, err, errlen)) ||
	    (e = sg_keyfile_load(conf->state_dir, "master", 1, idm->master, err, errlen)))
		goto fail;
	/* unknown users cost one scrypt too (no user enumeration by timing) */
	if ((e = sg_password_hash("sealguard-dummy-password", &idm->pw, idm->dummy_phc,
	                          sizeof idm->dummy_phc)) != SG_OK) {
		sg_fail(err, errlen, e, "idm: scrypt unavailable");
		goto fail;
	}
	if ((e = sg_store_pool_create(conf->store_driver ? conf->store_driver : "sqlite",
	                              conf->store_driver && !strcmp(conf->store_driver, "postgres")
	                                  ? conf->store_url
	                                  : conf->store_path,
	                              IDM_POOL_THREADS, &idm->pool, err, errlen)) != SG_OK)
		goto fail;
	/* the first load runs here, synchronously, on a connection of our own */
	struct sg_store *st = NULL;
	if ((e = sg_store_open(conf->store_driver ? conf->store_driver : "sqlite", conf->store_path,
	                       &st, err, errlen)) != SG_OK)
		goto fail;
	struct sg_store_key *keys = NULL;
	size_t nkeys = 0;
	int have_active = 0;
	if ((e = sg_store_key_list(st, &keys, &nkeys)) == SG_OK) {
		for (size_t i = 0; i < nkeys; i++)
			have_active |= keys[i].active;
		sg_store_key_list_free(keys, nkeys);
	}
	if (e == SG_OK && !have_active) {
		char kid[SG_JWS_KID_MAX + 1];
		e = sg_idm_key_create(st, idm->master, sg_idm_key_retire_after_ms(conf), kid, err,
		                      errlen);
		if (e == SG_OK) {
			sg_log_info("idm: created signing key %s", kid);
			struct sg_store_audit a = {.actor = "idm",
			                           .action = "key.create",
			                           .object = kid,
			                           .detail = "first start"};
			sg_store_audit_append(st, &a);
		}
	}
	if (e == SG_OK)
		e = upkeep(idm, st, 1, err, errlen);
	sg_store_close(st);
	if (e != SG_OK)
		goto fail;
	*out = idm;
	sg_log_info("idm: issuer %s%s%s", idm->issuer,
	            *idm->mtls_base ? ", mTLS token endpoint " : "", idm->mtls_base);
	return SG_OK;
fail:
	sg_idm_free(idm);
	return e;
}

static void audit_rows_free(struct idm_audit_row *r, const char *why);

void sg_idm_free(struct sg_idm *idm)
{
	if (!idm)
		return;
	sg_store_pool_destroy(idm->pool); /* runs the queued audit job, if any */
	audit_rows_free(idm->audit_head, "the server stopped");
	idm_reg_put(idm->reg);
	sg_jws_keyset_free(idm->keys);
	sg_jws_cache_free(idm->cache);
	tx_expire(idm, INT64_MAX);
	sg_addrtab_free(&idm->tx_addr);
	rev_expire(idm, INT64_MAX);
	sg_idm_throttle_free(idm->thr_user);
	sg_idm_throttle_free(idm->thr_addr);
	for (size_t i = 0; i < idm->nmounts; i++)
		free(idm->mounts[i]);
	free(idm->mounts);
	OPENSSL_cleanse(idm->pepper, sizeof idm->pepper);
	OPENSSL_cleanse(idm->master, sizeof idm->master);
	pthread_mutex_destroy(&idm->reg_mu);
	pthread_mutex_destroy(&idm->tx_mu);
	pthread_mutex_destroy(&idm->rev_mu);
	pthread_mutex_destroy(&idm->audit_mu);
	free(idm);
}

/* ---- mounting ---- */

sg_err sg_idm_mount(struct sg_idm *idm, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                    char *err, size_t errlen)
{
	struct idm_mount *m = calloc(1, sizeof *m);
	struct idm_mount **v = m ? realloc(idm->mounts, (idm->nmounts + 1) * sizeof *v) : NULL;
	if (!v) {
		free(m);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	idm->mounts = v;
	v[idm->nmounts++] = m;
	m->idm = idm;
	m->rp = rp;
	m->mtls = rp->tls.mode == SG_TLS_MUTUAL;
	struct {
		const char *method, *path;
		sg_http_handler h;
		int when; /* 0 all, 1 server-auth/psk, 2 mtls+bearer, 3 mtls only, 4 any mtls */
	} routes[] = {
	    {"GET", "/.well-known/openid-configuration", idm_h_discovery, 0},
	    {"GET", "/oauth2/jwks", idm_h_jwks, 0},
	    {"GET", "/oauth2/authorize", idm_h_authorize, 1},
	    {"POST", "/oauth2/login", idm_h_login, 1},
	    {"POST", "/oauth2/token", idm_h_token, 1},
	    {"GET", "/oauth2/userinfo", idm_h_userinfo, 1},
	    {"POST", "/oauth2/userinfo", idm_h_userinfo, 1},
	    {"POST", "/oauth2/revoke", idm_h_revoke, 1},
	    /* RFC 8705 §5: the same token endpoint over mutual TLS (SEAL-S) */
	    {"POST", "/oauth2/token", idm_h_token, 2},
	    {"POST", "/oauth2/revoke", idm_h_revoke, 2},
	    {"POST", "/oauth2/introspect", idm_h_introspect, 4},
	    {"GET", "/oauth2/revocations", idm_h_revocations, 3},
	    /* TS 29.549 ss-ipp over SEAL-S (I11) */
	    {"POST", "/ss-ipp/v1/configurations", idm_h_ipp, 2},
	    {"GET", "/ss-ipp/v1/configurations", idm_h_ipp, 2},
	    {"GET", "/ss-ipp/v1/configurations/{confId}", idm_h_ipp, 2},
	    {"PUT", "/ss-ipp/v1/configurations/{confId}", idm_h_ipp, 2},
	    {"PATCH", "/ss-ipp/v1/configurations/{confId}", idm_h_ipp, 2},
	    {"DELETE", "/ss-ipp/v1/configurations/{confId}", idm_h_ipp, 2},
	};
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		int w = routes[i].when, ok;
		switch (w) {
		case 0:
			ok = 1;
			break;
		case 1:
			ok = !m->mtls;
			break;
		case 2:
			ok = m->mtls && rp->auth_mode == SG_AUTH_MTLS_BEARER;
			break;
		case 3:
			ok = m->mtls && rp->auth_mode == SG_AUTH_MTLS;
			break;
		default:
			ok = m->mtls;
			break;
		}
		if (!ok)
			continue;
		sg_err e = sg_router_add(rt, routes[i].method, routes[i].path, routes[i].h, m);
		if (e != SG_OK)
			return sg_fail(err, errlen, e, "idm: cannot add route %s %s on %s",
			               routes[i].method, routes[i].path, rp->name);
	}
	return SG_OK;
}

/* ---- helpers ---- */

/* Audit rows of the SIM-S. A client_credentials token costs one row, so the per-row overhead
 * counts: one allocation holds a row and its strings, and the rows are not a pool job each:
 * they queue on the idm, and one lazy job (queued when the first row arrives) writes every row
 * that queued until the writer ran it: with the next batch of durable writes, or on its own
 * SG_STORE_LAZY_MS after the first row, so a stream of tokens costs one commit per interval
 * (never waited for, see client_credentials() in token.c). The job refers to the
 * idm: sg_idm_free() destroys (drains) the pool first. */
struct idm_audit_row {
	struct idm_audit_row *next;
	struct sg_store_audit a;
	char text[];
};

static void audit_rows_free(struct idm_audit_row *r, const char *why)
{
	for (struct idm_audit_row *next; r; r = next) {
		next = r->next;
		if (why)
			sg_log_error("idm: audit append failed (%s): %s %s", why, r->a.action,
			             r->a.object ? r->a.object : "");
		free(r);
	}
}

static sg_err audit_job(struct sg_store *st, void *arg)
{
	struct sg_idm *idm = arg;
	pthread_mutex_lock(&idm->audit_mu);
	struct idm_audit_row *rows = idm->audit_head;
	idm->audit_head = idm->audit_tail = NULL;
	idm->audit_queued = 0; /* a row from now on queues a new job */
	pthread_mutex_unlock(&idm->audit_mu);
	for (struct idm_audit_row *r = rows, *next; r; r = next) {
		next = r->next;
		/* one INSERT: a failing one changes nothing, the others still go in */
		sg_err e = sg_store_audit_append(st, &r->a);
		if (e != SG_OK)
			sg_log_error("idm: audit append failed (%s): %s %s", sg_err_str(e),
			             r->a.action, r->a.object ? r->a.object : "");
		free(r);
	}
	return SG_OK;
}

/* Copies s (NULL stays NULL) to *p and advances it. */
static char *audit_put(char **p, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *d = memcpy(*p, s, n);
	*p += n;
	return d;
}

void idm_audit(struct sg_idm *idm, const char *actor, const char *action, const char *object,
               const char *refpoint, const char *detail)
{
	if (!actor)
		actor = "idm";
	size_t n = strlen(actor) + strlen(action) + (object ? strlen(object) : 0) +
	           (refpoint ? strlen(refpoint) : 0) + (detail ? strlen(detail) : 0) + 5;
	struct idm_audit_row *r = malloc(sizeof *r + n);
	if (!r)
		return;
	char *p = r->text;
	r->next = NULL;
	r->a = (struct sg_store_audit){.ts = sg_now_ms()};
	r->a.actor = audit_put(&p, actor);
	r->a.action = audit_put(&p, action);
	r->a.object = audit_put(&p, object);
	r->a.refpoint = audit_put(&p, refpoint);
	r->a.detail = audit_put(&p, detail);
	pthread_mutex_lock(&idm->audit_mu);
	if (idm->audit_tail)
		idm->audit_tail->next = r;
	else
		idm->audit_head = r;
	idm->audit_tail = r;
	int submit = !idm->audit_queued;
	idm->audit_queued = 1;
	pthread_mutex_unlock(&idm->audit_mu);
	if (submit && sg_store_pool_submit_lazy(idm->pool, audit_job, idm) != SG_OK) {
		pthread_mutex_lock(&idm->audit_mu);
		struct idm_audit_row *rows = idm->audit_head;
		idm->audit_head = idm->audit_tail = NULL;
		idm->audit_queued = 0;
		pthread_mutex_unlock(&idm->audit_mu);
		audit_rows_free(rows, "store pool unavailable");
	}
}

static void no_store(struct sg_http_req *r)
{
	/* RFC 6749 §5.1: token responses and errors are never cached */
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_header(r, "Pragma", "no-cache");
}

void idm_oauth_error(struct sg_http_req *r, int status, const char *error, const char *desc)
{
	no_store(r);
	if (status == 401)
		sg_http_resp_header(r, "WWW-Authenticate", "Basic realm=\"sealguard\"");
	json_t *j = json_pack("{s:s}", "error", error);
	if (j && desc)
		json_object_set_new(j, "error_description", json_string(desc));
	sg_http_resp_json(r, status, j);
}

void idm_bearer_error(struct sg_http_req *r, int status, const char *error, const char *desc)
{
	char h[512];
	if (error)
		/* RFC 6750 §3: error_description is a quoted string without '"' or '\' */
		snprintf(h, sizeof h, "Bearer realm=\"sealguard\", error=\"%s\"%s%s%s", error,
		         desc ? ", error_description=\"" : "", desc ? desc : "", desc ? "\"" : "");
	else
		snprintf(h, sizeof h, "Bearer realm=\"sealguard\"");
	no_store(r);
	sg_http_resp_header(r, "WWW-Authenticate", h);
	json_t *j = json_object();
	if (error)
		json_object_set_new(j, "error", json_string(error));
	if (error && desc)
		json_object_set_new(j, "error_description", json_string(desc));
	sg_http_resp_json(r, status, j);
}

int idm_body_form(struct sg_http_req *r, struct sg_idm_form *f, int oauth_errors)
{
	const char *ct = sg_http_req_header(r, "content-type");
	size_t len = 0;
	const unsigned char *body = sg_http_req_body(r, &len);
	static const char FORM[] = "application/x-www-form-urlencoded";
	if (!ct || strncasecmp(ct, FORM, sizeof FORM - 1) != 0 ||
	    (ct[sizeof FORM - 1] && ct[sizeof FORM - 1] != ';' && ct[sizeof FORM - 1] != ' ')) {
		if (oauth_errors)
			idm_oauth_error(r, 400, "invalid_request",
			                "the body must be application/x-www-form-urlencoded");
		else
			sg_http_resp_problem(r, 415, "UNSUPPORTED_MEDIA_TYPE",
			                     "the body must be application/x-www-form-urlencoded");
		return -1;
	}
	if (sg_idm_form_parse((const char *)body, len, f) != 0) {
		if (oauth_errors)
			idm_oauth_error(r, 400, "invalid_request", "malformed form body");
		else
			sg_http_resp_problem(r, 400, "INVALID_MSG_FORMAT", "malformed form body");
		return -1;
	}
	return 0;
}

int idm_client_basic(struct sg_idm *idm, const struct idm_reg *reg, struct sg_http_req *r,
                     const struct sg_idm_form *f, const struct sg_store_client **out)
{
	const char *h = sg_http_req_header(r, "authorization");
	if (sg_idm_form_get(f, "client_secret")) {
		/* TS 33.434 A.4: client_secret_basic only; one method per request (RFC 6749 §2.3)
		 */
		idm_oauth_error(r, 401, "invalid_client",
		                "client authentication must use HTTP Basic (client_secret_basic)");
		return -1;
	}
	if (!h || strncasecmp(h, "Basic ", 6) != 0) {
		idm_oauth_error(r, 401, "invalid_client", "client authentication required");
		return -1;
	}
	const char *b = h + 6;
	while (*b == ' ')
		b++;
	size_t bl = strlen(b);
	unsigned char *dec = bl <= 2048 ? malloc(bl + 1) : NULL;
	int n = -1, pad = 0;
	if (dec && bl && bl % 4 == 0) {
		n = EVP_DecodeBlock(dec, (const unsigned char *)b, (int)bl);
		pad = (b[bl - 1] == '=') + (bl > 1 && b[bl - 2] == '=');
	}
	char *id = NULL, *secret = NULL;
	int ok = 0;
	if (n > pad) {
		n -= pad;
		dec[n] = '\0';
		unsigned char *colon = memchr(dec, ':', (size_t)n);
		if (colon && !memchr(dec, '\0', (size_t)n)) {
			/* RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding */
			id = sg_idm_form_decode((const char *)dec, (size_t)(colon - dec));
			secret = sg_idm_form_decode((const char *)colon + 1,
			                            (size_t)(n - (colon - dec) - 1));
		}
		OPENSSL_cleanse(dec, (size_t)n);
	}
	free(dec);
	const struct sg_store_client *c = id ? idm_client_find(reg, id) : NULL;
	const char *form_id = sg_idm_form_get(f, "client_id");
	if (c && secret && (!form_id || !strcmp(form_id, id)) &&
	    c->secret_digest_len == SG_SECRET_DIGEST &&
	    sg_secret_check(idm->pepper, sizeof idm->pepper, secret, c->secret_digest))
		ok = 1;
	free(id);
	if (secret) {
		OPENSSL_cleanse(secret, strlen(secret));
		free(secret);
	}
	if (!ok) {
		idm_oauth_error(r, 401, "invalid_client", "client authentication failed");
		return -1;
	}
	*out = c;
	return 0;
}

int idm_client_tls(struct idm_mount *m, const struct idm_reg *reg, struct sg_http_req *r,
                   const struct sg_idm_form *f, const struct sg_store_valserver **out)
{
	const struct sg_tls_principal *p = sg_http_req_tls_principal(r);
	const char *id = sg_idm_form_get(f, "client_id");
	const struct sg_store_valserver *v = idm_val_find(reg, id);
	/* RFC 8705 §2.1.2: the registered subject (here a SAN) must be in the certificate */
	if (!m->mtls || !p || !p->authenticated || p->is_psk || !v || v->disabled ||
	    !sg_tls_principal_has_san(p, v->identity)) {
		idm_oauth_error(
		    r, 401, "invalid_client",
		    !m->mtls || !p || !p->authenticated
		        ? "a client certificate is required (tls_client_auth)"
		        : "the client certificate does not authenticate this client_id");
		return -1;
	}
	*out = v;
	return 0;
}

const char *idm_bearer_token(struct sg_http_req *r)
{
	const char *h = sg_http_req_header(r, "authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return *h ? h : NULL;
}

static bool revoked_cb(void *arg, const json_t *claims)
{
	return idm_is_revoked(arg, json_string_value(json_object_get(claims, "jti")),
	                      json_string_value(json_object_get(claims, "gid")));
}

sg_jws_status idm_verify_access(struct sg_idm *idm, const char *token, const char *aud,
                                json_t **claims, char *err, size_t errlen)
{
	struct sg_jws_policy pol = {
	    .iss = idm->issuer, .aud = aud, .typ = SG_JWS_TYP_AT, .leeway = IDM_LEEWAY_S};
	return sg_jws_verify_cached(idm->cache, idm->keys, token, &pol, revoked_cb, idm, claims,
	                            err, errlen);
}

json_t *idm_val_user_ids(const struct idm_reg *reg, const struct sg_store_user *u)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < reg->nservices; i++)
		json_object_set_new(o, reg->services[i], json_string(u->name));
	for (size_t i = 0; o && i < u->n_val_ids; i++)
		json_object_set_new(o, u->val_ids[i].service,
		                    json_string(u->val_ids[i].val_user_id));
	return o;
}

sg_err idm_mint_access(struct sg_idm *idm, const struct idm_reg *reg, const char *sub,
                       const char *client_id, const char *scope, const char *resource,
                       const char *gid, json_t *extra, char **token, char *jti_out)
{
	if (!reg || !reg->signer)
		return SG_ERR_INTERNAL;
	char jti[32];
	if (sg_random_token(jti, sizeof jti, 16) != SG_OK)
		return SG_ERR_INTERNAL;
	int64_t now = sg_now_ms() / 1000;
	json_t *aud = resource ? json_pack("[s]", resource) : sg_idm_audiences(scope);
	/* I8 / RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti, scope */
	json_t *c = json_pack(
	    "{s:s,s:s,s:o,s:I,s:I,s:s,s:s,s:s,s:s}", "iss", idm->issuer, "sub", sub, "aud", aud,
	    "exp", (json_int_t)(now + idm->conf->idm.access_ttl_s), "iat", (json_int_t)now, "jti",
	    jti, "scope", scope, "client_id", client_id, "gid", gid);
	if (!c)
		return SG_ERR_NOMEM;
	if (extra)
		json_object_update(c, extra);
	sg_err e = sg_jws_sign_typ(reg->signer, SG_JWS_TYP_AT, c, token);
	json_decref(c);
	if (jti_out)
		memcpy(jti_out, jti, strlen(jti) + 1);
	return e;
}

sg_err idm_mint_id(struct sg_idm *idm, const struct idm_reg *reg, const char *sub,
                   const char *client_id, const char *nonce, int64_t auth_time_s, char **token)
{
	if (!reg || !reg->signer)
		return SG_ERR_INTERNAL;
	int64_t now = sg_now_ms() / 1000;
	/* I7, OIDC Core §2: iss, sub, aud, exp, iat (+ auth_time, nonce, acr) */
	json_t *c = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "iss", idm->issuer, "sub", sub, "aud",
	                      client_id, "exp", (json_int_t)(now + idm->conf->idm.id_ttl_s), "iat",
	                      (json_int_t)now, "acr", SG_IDM_ACR_PASSWORD);
	if (!c)
		return SG_ERR_NOMEM;
	if (auth_time_s)
		json_object_set_new(c, "auth_time", json_integer(auth_time_s));
	if (nonce)
		json_object_set_new(c, "nonce", json_string(nonce));
	sg_err e = sg_jws_sign(reg->signer, c, token);
	json_decref(c);
	return e;
}
