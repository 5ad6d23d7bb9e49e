/* auth/remote.c: the resource servers' client of identity management over SEAL-E (R4): one
 * thread fetches the JWKS (RFC 7517) and polls the revocation list, and publishes both to the
 * event-loop workers through the key set's lock and the revocation set's mutex. Workers never
 * wait on the network: an unknown kid only wakes the thread. See remote.h for the delay bound. */
#include "auth/remote.h"

#include "base/clock.h"
#include "base/log.h"
#include "http/client.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REV_BUCKETS        1024
#define RETRY_MS           250    /* first fetches, and after a failure */
#define JWKS_PERIOD_MS     300000 /* retired keys disappear within 5 minutes */
#define REV_OVERLAP_MS     5000   /* a revocation committed late is not missed */
#define REV_FULL_POLLS     30     /* ... nor one stamped before it: a whole list (60 s) */
#define REV_KEEP_AFTER_MS  (SG_JWS_MAX_LEEWAY * 1000 + 5000) /* exp + leeway */
#define MAX_RESPONSE_BYTES (4u << 20)

struct rev {
	struct rev *next;
	int kind; /* 0 jti, 1 gid */
	int64_t exp_ms;
	char id[];
};

struct sg_idm_remote {
	char *url_jwks, *url_rev_base;
	struct sg_http_client_conf cc;
	char *cert, *key, *ca, *crl; /* owned copies of the TLS file names */
	unsigned poll_ms, min_refresh_ms;
	struct sg_jws_keyset *ks;
	struct sg_jws_cache *cache;

	pthread_mutex_t rev_mu;
	struct rev *rev[REV_BUCKETS];

	pthread_mutex_t mu; /* guards the fields below and the condition */
	pthread_cond_t cond;
	int stop, started, want_jwks;
	int64_t jwks_fetched_mono; /* last JWKS fetch attempt (monotonic ms): unknown kids
	                            * refetch at most every min_refresh_ms, failing or not */
	pthread_t thread;

	_Atomic int jwks_ok;
	_Atomic int64_t rev_ok_mono; /* last successful revocation poll (monotonic ms), 0 never */
	int64_t rev_since;           /* the `now` of the previous answer (thread only) */
	int64_t rev_full_mono;       /* when the last whole list came (thread only) */
};

static size_t str_hash(const char *s)
{
	size_t h = 1469598103934665603u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211u;
	return h % REV_BUCKETS;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* ---- revocation set ---- */

/* Returns 1 when (kind, id) was not there before. */
static int rev_add(struct sg_idm_remote *r, int kind, const char *id, int64_t exp_ms)
{
	int added = 0;
	size_t h = str_hash(id);
	pthread_mutex_lock(&r->rev_mu);
	struct rev *e;
	for (e = r->rev[h]; e; e = e->next)
		if (e->kind == kind && !strcmp(e->id, id))
			break;
	if (e) {
		if (exp_ms > e->exp_ms)
			e->exp_ms = exp_ms;
	} else if ((e = malloc(sizeof *e + strlen(id) + 1))) {
		e->kind = kind;
		e->exp_ms = exp_ms;
		strcpy(e->id, id);
		e->next = r->rev[h];
		r->rev[h] = e;
		added = 1;
	}
	pthread_mutex_unlock(&r->rev_mu);
	return added;
}

static void rev_expire(struct sg_idm_remote *r, int64_t now_ms)
{
	pthread_mutex_lock(&r->rev_mu);
	for (size_t i = 0; i < REV_BUCKETS; i++) {
		struct rev **pp = &r->rev[i];
		while (*pp) {
			struct rev *e = *pp;
			/* a token is accepted until exp + leeway: keep its revocation that long */
			if (e->exp_ms + REV_KEEP_AFTER_MS < now_ms) {
				*pp = e->next;
				free(e);
			} else {
				pp = &e->next;
			}
		}
	}
	pthread_mutex_unlock(&r->rev_mu);
}

bool sg_idm_remote_is_revoked(struct sg_idm_remote *r, const char *jti, const char *gid)
{
	bool hit = false;
	pthread_mutex_lock(&r->rev_mu);
	for (int k = 0; k < 2 && !hit; k++) {
		const char *id = k == 0 ? jti : gid;
		if (!id)
			continue;
		for (struct rev *e = r->rev[str_hash(id)]; e; e = e->next)
			if (e->kind == k && !strcmp(e->id, id)) {
				hit = true;
				break;
			}
	}
	pthread_mutex_unlock(&r->rev_mu);
	return hit;
}

/* {"now":ms,"jti":[{"id","exp"}],"gid":[{"id","exp"}]} (docs/scopes.md) */
static sg_err apply_revocations(struct sg_idm_remote *r, const char *json, size_t len,
                                int64_t *now_out, char *err, size_t errlen)
{
	json_error_t je;
	json_t *d = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	json_t *now = d ? json_object_get(d, "now") : NULL;
	if (!d || !json_is_object(d) || !json_is_integer(now)) {
		json_decref(d);
		return sg_fail(err, errlen, SG_ERR_PROTO,
		               "revocation list: not a revocation document");
	}
	int added = 0;
	static const char *const KINDS[2] = {"jti", "gid"};
	for (int k = 0; k < 2; k++) {
		json_t *a = json_object_get(d, KINDS[k]), *v;
		size_t i;
		if (a && !json_is_array(a)) {
			json_decref(d);
			return sg_fail(err, errlen, SG_ERR_PROTO,
			               "revocation list: %s is not an array", KINDS[k]);
		}
		json_array_foreach(a, i, v)
		{
			const char *id = json_string_value(json_object_get(v, "id"));
			json_t *exp = json_object_get(v, "exp");
			if (!id || !*id || !json_is_integer(exp))
				continue;
			added += rev_add(r, k, id, (int64_t)json_integer_value(exp));
		}
	}
	if (now_out)
		*now_out = (int64_t)json_integer_value(now);
	json_decref(d);
	/* cached verifications predate these revocations: drop them (one atomic increment) */
	if (added && r->cache)
		sg_jws_cache_bump(r->cache);
	if (added)
		sg_log_info("identity management: %d new revocation(s)", added);
	return SG_OK;
}

sg_err sg_idm_remote_apply_revocations(struct sg_idm_remote *r, const char *json, size_t len,
                                       char *err, size_t errlen)
{
	sg_err e = apply_revocations(r, json, len, NULL, err, errlen);
	if (e == SG_OK)
		atomic_store(&r->rev_ok_mono, sg_mono_ms());
	return e;
}

/* ---- JWKS ---- */

/* Makes r->ks hold exactly the usable keys of the document: adds new kids, removes kids the
 * SIM-S no longer publishes (removal bumps the key set's generation, so the cache stops
 * serving tokens they signed). A document without any usable key changes nothing. */
sg_err sg_idm_remote_apply_jwks(struct sg_idm_remote *r, const char *json, size_t len, char *err,
                                size_t errlen)
{
	struct sg_jws_keyset *fresh = NULL;
	sg_err e = sg_jws_keyset_parse(json, len, &fresh, err, errlen);
	if (e != SG_OK)
		return e;
	json_t *nj = sg_jws_keyset_to_jwks(fresh), *oj = sg_jws_keyset_to_jwks(r->ks);
	if (!nj || !oj) {
		e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		goto out;
	}
	json_t *nk = json_object_get(nj, "keys"), *ok = json_object_get(oj, "keys"), *k;
	size_t i;
	if (json_array_size(nk) == 0) {
		e = sg_fail(err, errlen, SG_ERR_PROTO, "JWKS without a usable ES256 key");
		goto out;
	}
	json_array_foreach(nk, i, k)
	{
		char kerr[128];
		sg_err ae = sg_jws_keyset_add_jwk(r->ks, k, kerr, sizeof kerr);
		if (ae != SG_OK && ae != SG_ERR_EXISTS)
			sg_log_warn("identity management JWKS: key skipped: %s", kerr);
	}
	json_array_foreach(ok, i, k)
	{
		const char *kid = json_string_value(json_object_get(k, "kid"));
		if (kid && !sg_jws_keyset_has(fresh, kid))
			sg_jws_keyset_remove(r->ks, kid);
	}
	atomic_store(&r->jwks_ok, 1);
out:
	json_decref(nj);
	json_decref(oj);
	sg_jws_keyset_free(fresh);
	return e;
}

/* ---- the thread ---- */

static sg_err fetch(struct sg_http_client *hc, const char *url, struct sg_http_response *resp,
                    char *err, size_t errlen)
{
	static const char *const hdr[] = {"Accept: application/json", NULL};
	memset(resp, 0, sizeof *resp);
	sg_err e = sg_http_client_request(hc, "GET", url, hdr, NULL, 0, resp, err, errlen);
	if (e == SG_OK && resp->status != 200)
		e = sg_fail(err, errlen, SG_ERR_PROTO, "HTTP status %ld", resp->status);
	return e;
}

static int fetch_jwks(struct sg_idm_remote *r, struct sg_http_client *hc)
{
	struct sg_http_response resp;
	char err[512] = "";
	sg_err e = fetch(hc, r->url_jwks, &resp, err, sizeof err);
	if (e == SG_OK)
		e = sg_idm_remote_apply_jwks(r, (const char *)resp.body.data, resp.body.len, err,
		                             sizeof err);
	sg_http_response_free(&resp);
	if (e != SG_OK)
		sg_log_warn("identity management: JWKS from %s: %s", r->url_jwks, err);
	return e == SG_OK;
}

static int poll_revocations(struct sg_idm_remote *r, struct sg_http_client *hc)
{
	char url[1024], err[512] = "";
	/* revoked_at is stamped by whoever revoked, before the commit: a row that committed more
	 * than the overlap after its stamp (a writer waiting for the store's lock), or stamped by a
	 * clock set back, falls before every later `since`. So the whole list (kept small by
	 * expiry) comes again every REV_FULL_POLLS polls (a minute with the default
	 * revocation_poll_ms): such a revocation takes that long at most. */
	int full = sg_mono_ms() - r->rev_full_mono >= (int64_t)REV_FULL_POLLS * r->poll_ms;
	int64_t since = full                            ? 0
	                : r->rev_since > REV_OVERLAP_MS ? r->rev_since - REV_OVERLAP_MS
	                                                : 0;
	snprintf(url, sizeof url, "%s%lld", r->url_rev_base, (long long)since);
	struct sg_http_response resp;
	int64_t now = 0;
	sg_err e = fetch(hc, url, &resp, err, sizeof err);
	if (e == SG_OK)
		e = apply_revocations(r, (const char *)resp.body.data, resp.body.len, &now, err,
		                      sizeof err);
	sg_http_response_free(&resp);
	if (e != SG_OK) {
		sg_log_warn("identity management: revocation list from %s: %s", r->url_rev_base,
		            err);
		return 0;
	}
	r->rev_since = now;
	if (full)
		r->rev_full_mono = sg_mono_ms();
	atomic_store(&r->rev_ok_mono, sg_mono_ms());
	rev_expire(r, sg_now_ms());
	return 1;
}

static void abs_deadline(struct timespec *ts, int64_t wait_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += wait_ms / 1000;
	ts->tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *thread_main(void *arg)
{
	struct sg_idm_remote *r = arg;
	char err[512] = "";
	struct sg_http_client *hc = NULL;
	if (sg_http_client_new(&r->cc, &hc, err, sizeof err) != SG_OK) {
		sg_log_error("identity management client: %s (tokens will be refused)", err);
		return NULL;
	}
	int64_t next_rev = 0, next_jwks = 0;
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		int64_t now = sg_mono_ms();
		int want = r->want_jwks && now - r->jwks_fetched_mono >= (int64_t)r->min_refresh_ms;
		int do_jwks = want || now >= next_jwks;
		int do_rev = now >= next_rev;
		if (do_jwks || do_rev) {
			r->want_jwks = want ? 0 : r->want_jwks;
			pthread_mutex_unlock(&r->mu);
			/* revocations first: a slow key set fetch must not hold them back */
			if (do_rev) {
				/* the period counts from the start of the poll: the bound of
				 * remote.h */
				int64_t started = sg_mono_ms();
				int rok = poll_revocations(r, hc);
				next_rev = started + (rok ? (int64_t)r->poll_ms : RETRY_MS);
			}
			if (do_jwks) {
				int jok = fetch_jwks(r, hc);
				next_jwks = sg_mono_ms() + (jok ? JWKS_PERIOD_MS : RETRY_MS);
			}
			pthread_mutex_lock(&r->mu);
			if (do_jwks)
				r->jwks_fetched_mono = sg_mono_ms();
			continue;
		}
		int64_t wake = next_rev < next_jwks ? next_rev : next_jwks;
		if (r->want_jwks) {
			int64_t w = r->jwks_fetched_mono + (int64_t)r->min_refresh_ms;
			if (w < wake)
				wake = w;
		}
		struct timespec ts;
		abs_deadline(&ts, wake > now ? wake - now : 1);
		pthread_cond_timedwait(&r->cond, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	sg_http_client_free(hc);
	return NULL;
}

/* ---- lifecycle ---- */

sg_err sg_idm_remote_new(const struct sg_idm_remote_conf *conf, struct sg_jws_keyset *ks,
                         struct sg_jws_cache *cache, struct sg_idm_remote **out, char *err,
                         size_t errlen)
{
	if (!conf->idm_url || strncmp(conf->idm_url, "https://", 8) != 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "resource.idm_url must be the https URL of identity management's "
		               "SEAL-E listener");
	struct sg_idm_remote *r = calloc(1, sizeof *r);
	if (!r)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&r->rev_mu, NULL);
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	size_t ul = strlen(conf->idm_url);
	while (ul > 8 && conf->idm_url[ul - 1] == '/')
		ul--;
	r->url_jwks = malloc(ul + 32);
	r->url_rev_base = malloc(ul + 40);
	r->cc.tls = conf->tls;
	r->cert = dup_or_null(conf->tls.cert);
	r->key = dup_or_null(conf->tls.key);
	r->ca = dup_or_null(conf->tls.ca);
	r->crl = dup_or_null(conf->tls.crl);
	if (!r->url_jwks || !r->url_rev_base || (conf->tls.cert && !r->cert) ||
	    (conf->tls.key && !r->key) || (conf->tls.ca && !r->ca) || (conf->tls.crl && !r->crl)) {
		sg_idm_remote_free(r);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	snprintf(r->url_jwks, ul + 32, "%.*s/oauth2/jwks", (int)ul, conf->idm_url);
	snprintf(r->url_rev_base, ul + 40, "%.*s/oauth2/revocations?since=", (int)ul,
	         conf->idm_url);
	/* R4: SEAL-E is mutual TLS with the T profile; the http client applies it */
	r->cc.tls.mode = SG_TLS_MUTUAL;
	r->cc.tls.cert = r->cert;
	r->cc.tls.key = r->key;
	r->cc.tls.ca = r->ca;
	r->cc.tls.crl = r->crl;
	r->cc.http2 = 0;
	r->cc.connect_timeout_ms = 2000;
	r->cc.timeout_ms = 5000;
	r->cc.max_response_bytes = MAX_RESPONSE_BYTES;
	r->poll_ms = conf->revocation_poll_ms < 100 ? 100 : conf->revocation_poll_ms;
	/* an unknown kid costs identity management a key set fetch: never more than one a
	 * second, whatever the configuration says */
	r->min_refresh_ms = conf->jwks_min_refresh_ms < 1000 ? 1000 : conf->jwks_min_refresh_ms;
	r->ks = ks;
	r->cache = cache;
	r->jwks_fetched_mono = INT64_MIN / 2;
	*out = r;
	return SG_OK;
}

sg_err sg_idm_remote_start(struct sg_idm_remote *r, char *err, size_t errlen)
{
	int rc = pthread_create(&r->thread, NULL, thread_main, r);
	if (rc != 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL,
		               "cannot start the identity management client thread: %s",
		               strerror(rc));
	r->started = 1;
	return SG_OK;
}

void sg_idm_remote_free(struct sg_idm_remote *r)
{
	if (!r)
		return;
	if (r->started) {
		pthread_mutex_lock(&r->mu);
		r->stop = 1;
		pthread_cond_signal(&r->cond);
		pthread_mutex_unlock(&r->mu);
		pthread_join(r->thread, NULL);
	}
	for (size_t i = 0; i < REV_BUCKETS; i++)
		for (struct rev *e = r->rev[i], *n; e; e = n) {
			n = e->next;
			free(e);
		}
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->mu);
	pthread_mutex_destroy(&r->rev_mu);
	free(r->url_jwks);
	free(r->url_rev_base);
	free(r->cert);
	free(r->key);
	free(r->ca);
	free(r->crl);
	free(r);
}

void sg_idm_remote_kid_miss(struct sg_idm_remote *r)
{
	pthread_mutex_lock(&r->mu);
	if (!r->want_jwks) {
		r->want_jwks = 1;
		pthread_cond_signal(&r->cond);
	}
	pthread_mutex_unlock(&r->mu);
}

unsigned sg_idm_remote_stale_ms(const struct sg_idm_remote *r)
{
	/* five missed polls, and never less than 10 s: a restart of identity management does not
	 * interrupt service, a longer outage does not leave revoked tokens usable */
	unsigned s = r->poll_ms * 5;
	return s < 10000 ? 10000 : s;
}

int sg_idm_remote_ready(struct sg_idm_remote *r)
{
	int64_t ok = atomic_load(&r->rev_ok_mono);
	return atomic_load(&r->jwks_ok) && ok &&
	       sg_mono_ms() - ok <= (int64_t)sg_idm_remote_stale_ms(r);
}
