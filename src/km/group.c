/* km/group.c: see km/group.h. K5 (TS 33.434 §5.3 group keys over SEAL-X1; TS 23.434 §10.3):
 * the group membership the key management server learns from the group management server over
 * SEAL-E with mutual TLS (R4), parsed into immutable snapshots by one thread, like the JWKS and
 * revocation reader of auth/remote.c. */
#include "km/group.h"

#include "base/clock.h"
#include "base/log.h"
#include "http/client.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_MS    250
#define MIN_POLL_MS 100
#define GM_PATH     "/ss-gm/v1/group-documents?group-members=true"

/* ---- snapshots -------------------------------------------------------------------------- */

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static void group_clear(struct km_group *g)
{
	free(g->id);
	strv_free(g->svcs, g->nsvcs);
	strv_free(g->uids, g->nuids);
}

void km_groups_put(struct km_groups *s)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (size_t i = 0; i < s->n; i++)
		group_clear(&s->v[i]);
	free(s->v);
	free(s);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_group(const void *a, const void *b)
{
	return strcmp(((const struct km_group *)a)->id, ((const struct km_group *)b)->id);
}

/* Sorts and removes duplicates in place. */
static size_t sort_uniq(char **v, size_t n)
{
	if (n < 2)
		return n;
	qsort(v, n, sizeof *v, cmp_str);
	size_t k = 1;
	for (size_t i = 1; i < n; i++) {
		if (!strcmp(v[i], v[k - 1]))
			free(v[i]);
		else
			v[k++] = v[i];
	}
	return k;
}

/* The strings of a JSON array of strings (others skipped), sorted, unique. */
static int str_array(const json_t *a, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	size_t cap = json_array_size(a), i;
	const json_t *v;
	if (!cap)
		return 0;
	if (!(*out = calloc(cap, sizeof **out)))
		return -1;
	json_array_foreach(a, i, v)
	{
		if (!json_is_string(v))
			continue;
		if (!((*out)[*n] = strdup(json_string_value(v))))
			return -1;
		(*n)++;
	}
	*n = sort_uniq(*out, *n);
	return 0;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* The member-list hash: SHA-256 over "sealguard-km-group-v1\n", then "s:<valServiceId>\n" per
 * VAL service and "u:<valUserId>\n" / "e:<valUeId>\n" per member, each list sorted and unique
 * (the order of a document's arrays does not matter; any change of who is a member does). */
static int group_hash(const struct km_group *g, char **ues, size_t nues, char out[65])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
	         EVP_DigestUpdate(c, "sealguard-km-group-v1\n", 22);
	for (int k = 0; k < 3 && ok; k++) {
		char **v = k == 0 ? g->svcs : k == 1 ? g->uids : ues;
		size_t n = k == 0 ? g->nsvcs : k == 1 ? g->nuids : nues;
		const char *pre = k == 0 ? "s:" : k == 1 ? "u:" : "e:";
		for (size_t i = 0; i < n && ok; i++)
			ok = EVP_DigestUpdate(c, pre, 2) &&
			     EVP_DigestUpdate(c, v[i], strlen(v[i])) &&
			     EVP_DigestUpdate(c, "\n", 1);
	}
	unsigned char md[32];
	unsigned mdlen = 0;
	ok = ok && EVP_DigestFinal_ex(c, md, &mdlen) && mdlen == 32;
	EVP_MD_CTX_free(c);
	if (ok)
		hex(md, 32, out);
	return ok ? 0 : -1;
}

void km_group_key_id(const char *val_group_id, char out[40])
{
	unsigned char md[32];
	unsigned mdlen = 0;
	if (!EVP_Digest(val_group_id, strlen(val_group_id), md, &mdlen, EVP_sha256(), NULL))
		memset(md, 0, sizeof md);
	memcpy(out, "grp-", 4);
	hex(md, 16, out + 4);
}

/* One VALGroupDocument into g (valGroupId, valServiceIds, members). -1: unusable. */
static int group_from_doc(const json_t *doc, struct km_group *g)
{
	memset(g, 0, sizeof *g);
	const char *id = json_string_value(json_object_get(doc, "valGroupId"));
	const json_t *members = json_object_get(doc, "members"), *m;
	if (!id || !*id || !(g->id = strdup(id)))
		return -1;
	if (str_array(json_object_get(doc, "valServiceIds"), &g->svcs, &g->nsvcs))
		return -1;
	size_t nm = json_array_size(members), i;
	char **ues = nm ? calloc(nm, sizeof *ues) : NULL;
	size_t nues = 0;
	g->uids = nm ? calloc(nm, sizeof *g->uids) : NULL;
	if (nm && (!ues || !g->uids)) {
		free(ues);
		return -1;
	}
	int rc = 0;
	json_array_foreach(members, i, m)
	{
		const char *u = json_string_value(json_object_get(m, "valUserId"));
		const char *e = json_string_value(json_object_get(m, "valUeId"));
		if (u && !(g->uids[g->nuids++] = strdup(u)))
			rc = -1;
		else if (!u && e && !(ues[nues++] = strdup(e)))
			rc = -1;
	}
	g->nuids = sort_uniq(g->uids, g->nuids);
	nues = sort_uniq(ues, nues);
	if (rc == 0)
		rc = group_hash(g, ues, nues, g->hash);
	strv_free(ues, nues);
	return rc;
}

int km_groups_parse(const char *json, size_t len, struct km_groups **out)
{
	*out = NULL;
	json_t *a = json_loadb(json, len, 0, NULL);
	if (!json_is_array(a)) {
		json_decref(a);
		return -1;
	}
	struct km_groups *s = calloc(1, sizeof *s);
	size_t n = json_array_size(a), i;
	if (s)
		s->v = calloc(n + 1, sizeof *s->v);
	if (!s || !s->v) {
		free(s);
		json_decref(a);
		return -1;
	}
	atomic_init(&s->refs, 1);
	const json_t *d;
	int rc = 0;
	json_array_foreach(a, i, d)
	{
		if (!json_is_object(d)) {
			rc = -1;
			break;
		}
		if (group_from_doc(d, &s->v[s->n]) != 0) {
			group_clear(&s->v[s->n]);
			continue;
		}
		s->n++;
	}
	json_decref(a);
	if (rc) {
		km_groups_put(s);
		return -1;
	}
	if (s->n > 1)
		qsort(s->v, s->n, sizeof *s->v, cmp_group);
	/* a valGroupId held by two documents: ambiguous membership, leave it out */
	size_t k = 0;
	for (size_t j = 0; j < s->n;) {
		size_t e = j + 1;
		while (e < s->n && !strcmp(s->v[e].id, s->v[j].id))
			e++;
		if (e - j > 1) {
			sg_log_warn(
			    "km: VAL group %.128s is held by %zu group documents: no group key "
			    "is released for it until one remains",
			    s->v[j].id, e - j);
			for (size_t x = j; x < e; x++)
				group_clear(&s->v[x]);
		} else {
			s->v[k++] = s->v[j];
		}
		j = e;
	}
	s->n = k;
	*out = s;
	return 0;
}

const struct km_group *km_groups_find(const struct km_groups *s, const char *id)
{
	size_t lo = 0, hi = s ? s->n : 0;
	while (id && lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(id, s->v[mid].id);
		if (c == 0)
			return &s->v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int km_group_is_member(const struct km_group *g, const char *(*uid_of)(void *, const char *),
                       void *ctx)
{
	for (size_t i = 0; g && i < g->nsvcs; i++) {
		const char *uid = uid_of(ctx, g->svcs[i]);
		if (uid && bsearch(&uid, g->uids, g->nuids, sizeof *g->uids, cmp_str))
			return 1;
	}
	return 0;
}

/* ---- the reader thread ------------------------------------------------------------------ */

struct km_gm_reader {
	char *url, *cert, *key, *ca, *crl;
	struct sg_http_client_conf cc;
	unsigned poll_ms;
	km_gm_changed_fn cb;
	void *cb_arg;
	pthread_mutex_t mu; /* guards snap, stop, poke and the condition */
	pthread_cond_t cond;
	struct km_groups *snap;
	int stop, poke, started;
	pthread_t thread;
	_Atomic int64_t ok_mono; /* last successful fetch (monotonic ms), 0 never */
	char etag[128];          /* of snap, "" none (the reader thread's) */
};

unsigned km_gm_reader_stale_ms(const struct km_gm_reader *g)
{
	unsigned s = 5 * g->poll_ms;
	return s > 10000 ? s : 10000;
}

struct km_groups *km_gm_reader_get(struct km_gm_reader *g)
{
	int64_t ok = atomic_load(&g->ok_mono);
	if (!ok || sg_mono_ms() - ok > (int64_t)km_gm_reader_stale_ms(g))
		return NULL;
	pthread_mutex_lock(&g->mu);
	struct km_groups *s = g->snap;
	if (s)
		atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&g->mu);
	return s;
}

void km_gm_reader_poke(struct km_gm_reader *g)
{
	pthread_mutex_lock(&g->mu);
	g->poke = 1;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->mu);
}

/* One fetch; publishes and notifies on success. The membership view (GM_PATH) is read again
 * only when it changed: a poll naming the snapshot's ETag gets 304 while nothing did. */
static int fetch(struct km_gm_reader *g, struct sg_http_client *hc, int *warned)
{
	struct sg_http_response resp = {0};
	char err[512] = "", inm[160] = "";
	if (*g->etag)
		snprintf(inm, sizeof inm, "If-None-Match: %s", g->etag);
	const char *hdr[] = {"Accept: application/json", *inm ? inm : NULL, NULL};
	sg_err e = sg_http_client_request(hc, "GET", g->url, hdr, NULL, 0, &resp, err, sizeof err);
	struct km_groups *s = NULL;
	if (e == SG_OK && resp.status == 304 && *g->etag) {
		sg_http_response_free(&resp);
		*warned = 0;
		atomic_store(&g->ok_mono, sg_mono_ms());
		return 0;
	}
	if (e == SG_OK && resp.status == 200 &&
	    km_groups_parse(resp.body.data ? (const char *)resp.body.data : "", resp.body.len,
	                    &s) == 0) {
		snprintf(g->etag, sizeof g->etag, "%s", resp.etag);
		sg_http_response_free(&resp);
	} else {
		if (!*warned)
			sg_log_warn(
			    "km: reading VAL groups from %s failed (%s%ld)%s: group keys wait",
			    g->url, e == SG_OK ? "HTTP " : err, e == SG_OK ? resp.status : 0L,
			    e == SG_ERR_LIMIT ? "; raise km.gm_max_mib, or lower the gm "
			                        "quotas (docs/configuration.md)"
			                      : "");
		*warned = 1;
		sg_http_response_free(&resp);
		return -1;
	}
	*warned = 0;
	pthread_mutex_lock(&g->mu);
	struct km_groups *old = g->snap;
	g->snap = s;
	pthread_mutex_unlock(&g->mu);
	atomic_store(&g->ok_mono, sg_mono_ms());
	size_t *changed = s->n ? calloc(s->n, sizeof *changed) : NULL, nc = 0, gone = 0;
	for (size_t i = 0; changed && i < s->n; i++) {
		const struct km_group *o = km_groups_find(old, s->v[i].id);
		if (!o || strcmp(o->hash, s->v[i].hash))
			changed[nc++] = i;
	}
	for (size_t i = 0; old && i < old->n; i++)
		gone += !km_groups_find(s, old->v[i].id);
	if (!old)
		gone = 1; /* groups may have gone while this server did not read */
	if ((nc || gone) && g->cb)
		g->cb(g->cb_arg, s, changed, nc, gone);
	free(changed);
	km_groups_put(old);
	return 0;
}

static void *reader_main(void *arg)
{
	struct km_gm_reader *g = arg;
	struct sg_http_client *hc = NULL;
	char err[512] = "";
	int warned = 0;
	pthread_mutex_lock(&g->mu);
	while (!g->stop) {
		pthread_mutex_unlock(&g->mu);
		int ok = -1;
		if (!hc && sg_http_client_new(&g->cc, &hc, err, sizeof err) != SG_OK) {
			if (!warned)
				sg_log_warn("km: SEAL-E client for %s: %s", g->url, err);
			warned = 1;
			hc = NULL;
		} else {
			ok = fetch(g, hc, &warned);
		}
		unsigned wait_ms = ok == 0 ? g->poll_ms : RETRY_MS;
		struct timespec ts = sg_deadline_in_ms(CLOCK_REALTIME, wait_ms);
		pthread_mutex_lock(&g->mu);
		while (!g->stop && !g->poke)
			if (pthread_cond_timedwait(&g->cond, &g->mu, &ts) != 0)
				break;
		g->poke = 0;
	}
	pthread_mutex_unlock(&g->mu);
	sg_http_client_free(hc);
	return NULL;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

sg_err km_gm_reader_new(const char *gm_url, const struct sg_tls_conf *tls, unsigned poll_ms,
                        size_t max_bytes, km_gm_changed_fn cb, void *cb_arg,
                        struct km_gm_reader **out, char *err, size_t errlen)
{
	*out = NULL;
	struct km_gm_reader *g = calloc(1, sizeof *g);
	if (!g)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	size_t ul = strlen(gm_url);
	while (ul > 8 && gm_url[ul - 1] == '/')
		ul--;
	g->url = malloc(ul + sizeof GM_PATH);
	if (g->url)
		snprintf(g->url, ul + sizeof GM_PATH, "%.*s" GM_PATH, (int)ul, gm_url);
	g->cert = dup_or_null(tls->cert);
	g->key = dup_or_null(tls->key);
	g->ca = dup_or_null(tls->ca);
	g->crl = dup_or_null(tls->crl);
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cond, NULL);
	atomic_init(&g->ok_mono, 0);
	if (!g->url || (tls->cert && !g->cert) || (tls->key && !g->key) || (tls->ca && !g->ca) ||
	    (tls->crl && !g->crl)) {
		km_gm_reader_free(g);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	g->cc.tls.mode = SG_TLS_MUTUAL;
	g->cc.tls.cert = g->cert;
	g->cc.tls.key = g->key;
	g->cc.tls.ca = g->ca;
	g->cc.tls.crl = g->crl;
	g->cc.connect_timeout_ms = 2000;
	g->cc.timeout_ms = 5000;
	g->cc.max_response_bytes = max_bytes;
	g->poll_ms = poll_ms < MIN_POLL_MS ? MIN_POLL_MS : poll_ms;
	g->cb = cb;
	g->cb_arg = cb_arg;
	*out = g;
	return SG_OK;
}

sg_err km_gm_reader_start(struct km_gm_reader *g, char *err, size_t errlen)
{
	if (pthread_create(&g->thread, NULL, reader_main, g) != 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL,
		               "km: cannot start the VAL group reader");
	g->started = 1;
	return SG_OK;
}

void km_gm_reader_free(struct km_gm_reader *g)
{
	if (!g)
		return;
	if (g->started) {
		pthread_mutex_lock(&g->mu);
		g->stop = 1;
		pthread_cond_signal(&g->cond);
		pthread_mutex_unlock(&g->mu);
		pthread_join(g->thread, NULL);
	}
	km_groups_put(g->snap);
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cond);
	free(g->url);
	free(g->cert);
	free(g->key);
	free(g->ca);
	free(g->crl);
	free(g);
}
