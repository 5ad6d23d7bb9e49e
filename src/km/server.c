/* km/server.c: the SKM-S routes and operations (TS 33.434 §5.3 SEAL KM Request/Response, §5.8
 * key provisioning; TS 29.549 ss-kpp/v1, ss-kir/v1; docs/km-protocol.md). Transport and token
 * security are the auth/ policy's (R1/R3, I10: audience sealguard:km, the route's scope, and on
 * SEAL-S the certificate binding); the rules here are key management's own:
 *   - every operation runs on the store pool: the authorization against the registry snapshot,
 *     the record, and its audit row commit in one transaction before the answer (K3: an
 *     acknowledged provisioning is durable);
 *   - key bytes exist in memory only inside a job, between unsealing (master key) and the JWE
 *     to the requester's registered SKM-C key (R2), and are wiped there; they are never
 *     logged, never in a response in clear, never in the database in clear;
 *   - a revoked, superseded, expired or not yet valid key is never released. */
#include "km/km.h"

#include "auth/keyfile.h"
#include "auth/policy.h"
#include "base/b64.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/rand.h"
#include "conf/conf.h"
#include "http/http.h"
#include "km/group.h"
#include "km/logic.h"
#include "store/store.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KM_POOL_THREADS   2
#define KM_REGISTER       "/km/v1/skmc-keys"
#define KM_CHALLENGE      "/km/v1/skmc-keys/challenge" /* R2 key continuity */
#define KM_REQUEST        "/km/v1/key-requests"
#define KM_REVOKE         "/km/v1/keys/{valServiceId}/{payloadId}"
#define KPP_REQUEST       "/ss-kpp/v1/request"
#define KIR_RECORDS       "/ss-kir/v1/key-records"
#define KM_GROUP_REQ_PATH "/km/v1/group-key-requests"      /* KM-UU, members (K5) */
#define KM_GROUP_X1_PATH  "/km/v1/group-keys/{valGroupId}" /* SEAL-X1, the GM server (K5) */
#define KM_GM_POLL_MS     500

struct km_mount {
	struct sg_km *km;
	const struct sg_conf_refpoint *rp;
	int ue; /* 1: KM-UU (SEAL-UU); 0: KM-S (SEAL-S); 2: SEAL-X1 (SEAL-E, SEAL servers) */
};

struct sg_km {
	const struct sg_conf *conf;
	struct sg_store_pool *pool;
	unsigned char mk[SG_KEY_LEN]; /* master key: never leaves this struct */
	unsigned char pk[32];         /* SKM-C key replacement proofs: derived from mk */
	pthread_mutex_t mu;
	struct sg_store_vals *vals; /* the VAL servers of the registry */
	atomic_int busy;
	struct km_mount **mounts;
	size_t nmounts;
	struct km_gm_reader *gmr; /* K5: VAL group membership from the GM server, or NULL */
};

/* ---- registry snapshot ------------------------------------------------------------------ */

static struct sg_store_vals *vals_get(struct sg_km *km)
{
	pthread_mutex_lock(&km->mu);
	struct sg_store_vals *s = sg_store_vals_ref(km->vals);
	pthread_mutex_unlock(&km->mu);
	return s;
}

static int serves(const struct sg_store_valserver *v, const char *svc)
{
	for (size_t i = 0; v && i < v->n_val_services; i++)
		if (!strcmp(v->val_services[i], svc))
			return 1;
	return 0;
}

static sg_err upkeep(struct sg_km *km, struct sg_store *st)
{
	uint64_t gen = 0;
	sg_err e = sg_store_generation(st, &gen);
	if (e != SG_OK)
		return e;
	pthread_mutex_lock(&km->mu);
	int reload = !km->vals || sg_store_vals_gen(km->vals) != gen;
	pthread_mutex_unlock(&km->mu);
	if (!reload)
		return SG_OK;
	struct sg_store_vals *s = NULL;
	if ((e = sg_store_vals_load(st, gen, &s)) != SG_OK)
		return e;
	pthread_mutex_lock(&km->mu);
	struct sg_store_vals *old = km->vals;
	km->vals = s;
	pthread_mutex_unlock(&km->mu);
	sg_store_vals_unref(old);
	return SG_OK;
}

static sg_err tick_job(struct sg_store *st, void *arg)
{
	sg_err e = upkeep(arg, st);
	if (e != SG_OK)
		sg_log_warn("km: registry refresh failed, keeping the previous snapshot: %s",
		            sg_store_last_error());
	return e;
}

static void tick_done(sg_err rc, void *arg)
{
	(void)rc;
	atomic_store(&((struct sg_km *)arg)->busy, 0);
}

void sg_km_tick(struct sg_km *km)
{
	int expected = 0;
	if (!km || !atomic_compare_exchange_strong(&km->busy, &expected, 1))
		return;
	if (sg_store_pool_submit_read(km->pool, tick_job, km, tick_done, km, NULL) != SG_OK)
		atomic_store(&km->busy, 0);
}

/* ---- responses -------------------------------------------------------------------------- */

/* ProblemDetails (TS 29.122) with the KM ErrorCode as cause and, when given, invalidParams. */
static void problem(struct sg_http_req *r, enum sg_km_error code, const struct sg_km_invalid *why,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void problem(struct sg_http_req *r, enum sg_km_error code, const struct sg_km_invalid *why,
                    const char *fmt, ...)
{
	char detail[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	int status = sg_km_error_status(code);
	json_t *j = json_pack("{s:s,s:i,s:s,s:s}", "title", sg_km_error_cause(code), "status",
	                      status, "detail", detail, "cause", sg_km_error_cause(code));
	if (j && why && why->param[0])
		json_object_set_new(
		    j, "invalidParams",
		    json_pack("[{s:s,s:s}]", "param", why->param, "reason", why->reason));
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	sg_http_resp_status(r, status);
	if (s) {
		sg_http_resp_body(r, s, strlen(s), "application/problem+json");
		free(s);
	}
}

/* ---- jobs ------------------------------------------------------------------------------- */

enum km_op {
	KM_REGISTER_KEY,
	KM_CHALLENGE_KEY,
	KM_PROVISION,
	KM_REVOKE_KEY,
	KM_RETRIEVE_UU,
	KM_RETRIEVE_KIR,
	KM_GROUP_UU,
	KM_GROUP_X1
};

struct km_job {
	struct sg_http_req *r;
	struct km_mount *m;
	enum km_op op;
	char owner[160];     /* "ue:<sub>" / "vs:<name>" */
	char client_id[160]; /* the token's client_id */
	char actor[200];     /* audit actor */
	char refpoint[64];
	/* register */
	char *jwk, kid[64], skmc_uri[SG_KM_URI_MAX + 1];
	char proof[SG_KM_PROOF_LEN + 1]; /* "" none */
	/* provision */
	struct sg_km_pp_req pp;
	/* retrieve / revoke */
	char svc[SG_KM_ID_MAX + 1];
	struct sg_km_uu_req *uu; /* KM-UU: the request (ids) */
	struct sg_km_target tgt; /* the keys' target (NONE on ss-kir: every target) */
	char payload_id[SG_KM_ID_MAX + 1];
	/* group keys (K5) */
	char *gid;    /* valGroupId */
	json_t *uids; /* KM-UU: the UE token's val_user_ids (copied on the loop) */
	/* results */
	enum sg_km_error code;
	char msg[256];
	int status;
	json_t *resp;
};

static void job_free(struct km_job *j)
{
	free(j->jwk);
	sg_km_pp_req_wipe(&j->pp);
	free(j->uu);
	free(j->gid);
	json_decref(j->uids);
	json_decref(j->resp);
	free(j);
}

static sg_err refuse(struct km_job *j, enum sg_km_error code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static sg_err refuse(struct km_job *j, enum sg_km_error code, const char *fmt, ...)
{
	j->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->msg, sizeof j->msg, fmt, ap);
	va_end(ap);
	return SG_ERR_DENIED; /* rolls the job's savepoint back: nothing stored */
}

static sg_err audit(struct sg_store *st, struct km_job *j, const char *action, const char *object,
                    const char *detail)
{
	struct sg_store_audit a = {.ts = sg_now_ms(),
	                           .actor = j->actor,
	                           .action = (char *)action,
	                           .object = (char *)object,
	                           .refpoint = j->refpoint,
	                           .detail = (char *)detail};
	return sg_store_audit_append(st, &a);
}

/* R2 key continuity: registering another key than the registered one, or the same key with
 * another skmcUri (the userUri of every answer), needs the proof from a challenge
 * (run_challenge), which only the registered key's holder can read. Registering the registered
 * key again changes nothing and needs none; nor does a first registration (or one after
 * `sealguard key forget`): trust on first use. */
static sg_err run_register(struct sg_store *st, struct km_job *j)
{
	struct sg_store_km_client cur;
	sg_err e = sg_store_km_client_get(st, j->owner, j->client_id, &cur);
	int other_key = 0, same = 0;
	int64_t since = 0;
	if (e == SG_OK) {
		other_key = strcmp(cur.kid, j->kid) != 0;
		same = !other_key && !strcmp(cur.skmc_uri, j->skmc_uri);
		since = other_key ? 0 : cur.created_at;
		if (!same && sg_km_skmc_proof_check(j->m->km->pk, j->owner, j->client_id, cur.kid,
		                                    j->kid, j->proof, sg_now_ms()))
			e = refuse(j, SG_KM_SKMC_KEY_CONFLICT,
			           other_key
			               ? "another SKM-C key (%.64s) is registered for this "
			                 "client: prove that you hold it (POST " KM_CHALLENGE
			                 ") or have it removed (sealguard key forget)"
			               : "SKM-C key %.64s is registered with another skmcUri: "
			                 "changing it takes a proof that you hold the key "
			                 "(POST " KM_CHALLENGE ")",
			           cur.kid);
		sg_store_km_client_clear(&cur);
		if (e != SG_OK)
			return e;
	} else if (e != SG_ERR_NOTFOUND) {
		return e;
	}
	struct sg_store_km_client c = {.owner = j->owner,
	                               .client_id = j->client_id,
	                               .kid = j->kid,
	                               .jwk = j->jwk,
	                               .skmc_uri = j->skmc_uri,
	                               .created_at = since ? since : sg_now_ms()};
	if (!same) {
		e = sg_store_km_client_put(st, &c);
		if (e == SG_OK)
			e = audit(st, j, other_key ? "km.skmc.replace" : "km.skmc.register", j->kid,
			          j->client_id);
	}
	if (e == SG_OK) {
		char at[32];
		sg_km_time_format(c.created_at, at);
		j->resp = json_pack("{s:s,s:s,s:s}", "kid", j->kid, "skmcUri", j->skmc_uri,
		                    "registeredAt", at);
		j->status = 201;
		if (!j->resp)
			e = SG_ERR_NOMEM;
	}
	return e;
}

/* K3: the VAL server is an authorized provisioning client for the VAL service: registered,
 * enabled, with the key-provisioning right, and serving it (the token's SKeyProv was checked
 * on the loop). */
static sg_err check_provisioner(struct sg_km *km, struct km_job *j, const char *svc)
{
	struct sg_store_vals *vals = vals_get(km);
	const struct sg_store_valserver *v = sg_store_vals_find(vals, j->client_id);
	sg_err e = SG_OK;
	if (!v || v->disabled)
		e = refuse(j, SG_KM_PROVISIONING_NOT_AUTHORIZED,
		           "VAL server %.128s is not registered", j->client_id);
	else if (!v->key_provisioning)
		e = refuse(j, SG_KM_PROVISIONING_NOT_AUTHORIZED,
		           "VAL server %.128s has no key-provisioning right", j->client_id);
	else if (!serves(v, svc))
		e = refuse(j, SG_KM_PROVISIONING_NOT_AUTHORIZED,
		           "VAL server %.128s is not a provisioning client of VAL service %.128s",
		           j->client_id, svc);
	sg_store_vals_unref(vals);
	return e;
}

static sg_err run_provision(struct sg_store *st, struct km_job *j)
{
	struct sg_km *km = j->m->km;
	struct sg_km_pp_req *p = &j->pp;
	sg_err e = check_provisioner(km, j, p->val_service);
	if (e != SG_OK)
		return e;
	int64_t now = sg_now_ms(), version = 1;
	const char *tk = sg_km_tgt_kind_str(p->tgt.kind);
	if (!p->payload_id[0]) {
		char id[32];
		if ((e = sg_random_token(id, sizeof id, 16)) != SG_OK)
			return e;
		snprintf(p->payload_id, sizeof p->payload_id, "%s", id);
	} else {
		struct sg_store_km_key cur;
		e = sg_store_km_key_latest(st, p->val_service, p->payload_id, &cur);
		if (e == SG_OK) {
			/* a new version of an existing key: rotation */
			if (strcmp(cur.target_kind, tk) || strcmp(cur.target, p->tgt.id))
				e = refuse(j, SG_KM_PAYLOAD_ID_CONFLICT,
				           "payloadId %s is a key of another target",
				           p->payload_id);
			else if (cur.revoked_at)
				e = refuse(j, SG_KM_PAYLOAD_ID_CONFLICT,
				           "payloadId %s is revoked and cannot be reused",
				           p->payload_id);
			version = cur.version + 1;
			sg_store_km_key_clear(&cur);
			if (e != SG_OK)
				return e;
		} else if (e != SG_ERR_NOTFOUND) {
			return e;
		}
	}
	if (version == 1) {
		/* G4: a new key; a rotation replaces one. Every retrieval of the target (or of
		 * the service, ss-kir) opens and encrypts each of its keys. */
		uint64_t nsvc = 0, ntgt = 0;
		if ((e = sg_store_km_key_count(st, p->val_service, tk, p->tgt.id, &nsvc, &ntgt)) !=
		    SG_OK)
			return e;
		const struct sg_conf_km *q = &km->conf->km;
		if (ntgt >= q->max_keys_per_target)
			return refuse(j, SG_KM_TOO_MANY_KEYS,
			              "the target has %u keys of VAL service %s, the most it may "
			              "have (a key counts until a day after its validUntil): "
			              "rotate one instead",
			              q->max_keys_per_target, p->val_service);
		if (nsvc >= q->max_keys_per_service)
			return refuse(j, SG_KM_TOO_MANY_KEYS,
			              "VAL service %s has %u keys, the most it may have",
			              p->val_service, q->max_keys_per_service);
	}
	unsigned char gen[SG_KM_GEN_KEY_LEN];
	const unsigned char *key = p->payload;
	size_t klen = p->payload_len;
	if (!klen) { /* no payload: the SKM-S generates the key */
		if ((e = sg_random_bytes(gen, sizeof gen)) != SG_OK)
			return e;
		key = gen;
		klen = sizeof gen;
	}
	unsigned char sealed[SG_SEALED_LEN(SG_KM_KEY_MAX)];
	e = sg_km_seal(km->mk, p->val_service, p->payload_id, version, key, klen, sealed);
	OPENSSL_cleanse(gen, sizeof gen);
	sg_km_pp_req_wipe(p);
	if (e != SG_OK)
		return e;
	int64_t from = p->valid_from_ms ? p->valid_from_ms : now;
	struct sg_store_km_key k = {.val_service = p->val_service,
	                            .key_id = p->payload_id,
	                            .version = version,
	                            .target_kind = (char *)tk,
	                            .target = p->tgt.id,
	                            .provider = j->client_id,
	                            .skmc_uri = p->skmc_uri,
	                            .sealed = sealed,
	                            .sealed_len = SG_SEALED_LEN(klen),
	                            .not_before = from,
	                            .not_after = p->valid_until_ms ? p->valid_until_ms
	                                                           : from + SG_KM_DEFAULT_TTL_MS,
	                            .created_at = now};
	e = sg_store_km_key_add(st, &k);
	if (e != SG_OK)
		return e;
	char obj[300], det[300];
	snprintf(obj, sizeof obj, "%s/%s", p->val_service, p->payload_id);
	snprintf(det, sizeof det, "version=%lld target=%s%s%s", (long long)version,
	         *tk ? tk : "service", *tk ? ":" : "", p->tgt.id);
	if ((e = audit(st, j, version > 1 ? "km.rotate" : "km.provision", obj, det)) != SG_OK)
		return e;
	/* VALKeyPpResp: the acknowledgement (never the key) */
	j->resp = json_pack("{s:s,s:s,s:s,s:s}", "skmcUri", p->skmc_uri, "valServiceId",
	                    p->val_service, "payloadId", p->payload_id, "skmsId", SG_KM_SKMS_ID);
	if (j->resp && p->tgt.kind)
		json_object_set_new(j->resp, "valTgtUe", sg_km_target_json(&p->tgt));
	j->status = 200;
	return j->resp ? SG_OK : SG_ERR_NOMEM;
}

static sg_err run_revoke(struct sg_store *st, struct km_job *j)
{
	sg_err e = check_provisioner(j->m->km, j, j->svc);
	if (e != SG_OK)
		return e;
	e = sg_store_km_key_revoke(st, j->svc, j->payload_id, sg_now_ms());
	if (e == SG_ERR_NOTFOUND)
		return refuse(j, SG_KM_KEY_NOT_FOUND, "no key %s of VAL service %s", j->payload_id,
		              j->svc);
	char obj[300];
	snprintf(obj, sizeof obj, "%s/%s", j->svc, j->payload_id);
	if (e == SG_OK && (e = audit(st, j, "km.revoke", obj, NULL)) == SG_OK)
		j->status = 204;
	return e;
}

/* Why a stored key version may not be released now (SG_KM_OK when it may). */
static enum sg_km_error releasable(const struct sg_store_km_key *k, int64_t now)
{
	if (k->revoked_at)
		return SG_KM_KEY_REVOKED;
	if (k->superseded_at)
		return SG_KM_KEY_NOT_FOUND;
	if (now < k->not_before || (k->not_after && now >= k->not_after))
		return SG_KM_KEY_EXPIRED;
	return SG_KM_OK;
}

/* Unseals k and returns its record JSON (with the key, to be encrypted then wiped), or NULL
 * when it does not open (logged without bytes: tampering or another master key). */
static json_t *open_record(struct sg_km *km, const struct sg_store_km_key *k)
{
	if (k->sealed_len < SG_SEALED_LEN(1) || k->sealed_len > SG_SEALED_LEN(SG_KM_KEY_MAX))
		return NULL;
	unsigned char key[SG_KM_KEY_MAX];
	size_t n = 0;
	if (sg_km_unseal(km->mk, k->val_service, k->key_id, k->version, k->sealed, k->sealed_len,
	                 key, &n) != SG_OK) {
		sg_log_error("km: key %s/%s version %lld does not open with the master key "
		             "(tampered, or another master key): not released",
		             k->val_service, k->key_id, (long long)k->version);
		return NULL;
	}
	json_t *rec = sg_km_record_json(k->val_service, k->key_id, k->version, k->target_kind,
	                                k->target, k->not_before, k->not_after, key, n);
	OPENSSL_cleanse(key, sizeof key);
	return rec;
}

/* Wipes the "key" members of a record or of an array of records in place. */
static void wipe_keys(json_t *o)
{
	size_t i;
	json_t *v;
	if (json_is_array(o)) {
		json_array_foreach(o, i, v) wipe_keys(v);
		return;
	}
	json_t *k = json_object_get(o, "key");
	if (json_is_string(k))
		OPENSSL_cleanse((void *)json_string_value(k), json_string_length(k));
}

/* Serializes o, encrypts it to jwk, wipes the serialized copy and o's key members, drops o. */
static char *seal_to(const char *jwk, json_t *o)
{
	char *pt = json_dumps(o, JSON_COMPACT), *jwe = NULL;
	json_t *recs = json_object_get(o, "keyRecords");
	wipe_keys(recs ? recs : o);
	json_decref(o);
	if (!pt)
		return NULL;
	char err[160];
	if (sg_km_jwe_encrypt(jwk, pt, strlen(pt), &jwe, err, sizeof err) != SG_OK)
		sg_log_error("km: JWE: %s", err);
	OPENSSL_cleanse(pt, strlen(pt));
	free(pt);
	return jwe;
}

/* The challenge for replacing the registered SKM-C key by j->kid: a proof bound to both keys,
 * the owner and the client, encrypted to the registered key. */
static sg_err run_challenge(struct sg_store *st, struct km_job *j)
{
	struct sg_store_km_client cur;
	sg_err e = sg_store_km_client_get(st, j->owner, j->client_id, &cur);
	if (e == SG_ERR_NOTFOUND)
		return refuse(
		    j, SG_KM_SKMC_KEY_NOT_REGISTERED,
		    "no SKM-C key is registered for this client: register without a proof");
	if (e != SG_OK)
		return e;
	int64_t exp = sg_now_ms() + SG_KM_PROOF_TTL_MS;
	char proof[SG_KM_PROOF_LEN + 1], until[32];
	sg_km_skmc_proof_make(j->m->km->pk, j->owner, j->client_id, cur.kid, j->kid, exp, proof);
	sg_km_time_format(exp, until);
	char *jwe = seal_to(
	    cur.jwk, json_pack("{s:s,s:s,s:s}", "proof", proof, "kid", j->kid, "expiresAt", until));
	OPENSSL_cleanse(proof, sizeof proof);
	sg_store_km_client_clear(&cur);
	if (!jwe)
		return SG_ERR_NOMEM;
	j->resp = json_pack("{s:s,s:s}", "challenge", jwe, "expiresAt", until);
	free(jwe);
	j->status = 200;
	return j->resp ? SG_OK : SG_ERR_NOMEM;
}

static sg_err audit_release(struct sg_store *st, struct km_job *j, const struct sg_store_km_key *k)
{
	char obj[300], det[64];
	snprintf(obj, sizeof obj, "%s/%s", k->val_service, k->key_id);
	snprintf(det, sizeof det, "version=%lld", (long long)k->version);
	return audit(st, j, "km.retrieve", obj, det);
}

/* KM-UU: the SEAL KM Request of a UE for the keys of its own VAL user id. */
static sg_err run_retrieve_uu(struct sg_store *st, struct km_job *j)
{
	struct sg_km *km = j->m->km;
	struct sg_store_km_client c;
	sg_err e = sg_store_km_client_get(st, j->owner, j->client_id, &c);
	if (e == SG_ERR_NOTFOUND)
		return refuse(j, SG_KM_SKMC_KEY_NOT_REGISTERED,
		              "register an SKM-C public key first (POST " KM_REGISTER ")");
	if (e != SG_OK)
		return e;
	int64_t now = sg_now_ms();
	const char *tk = sg_km_tgt_kind_str(j->tgt.kind);
	struct sg_store_km_key *v = NULL;
	size_t n = 0;
	if (j->uu->nids) {
		if (!(v = calloc(j->uu->nids, sizeof *v))) {
			sg_store_km_client_clear(&c);
			return SG_ERR_NOMEM;
		}
		for (size_t i = 0; i < j->uu->nids; i++) {
			const char *id = j->uu->ids[i];
			e = sg_store_km_key_latest(st, j->svc, id, &v[n]);
			if (e == SG_ERR_NOTFOUND) {
				e = refuse(j, SG_KM_KEY_NOT_FOUND, "no key %s for this VAL user",
				           id);
				break;
			}
			if (e != SG_OK)
				break;
			const struct sg_store_km_key *k = &v[n++];
			/* another target's key is answered as absent: ids reveal nothing */
			if (strcmp(k->target_kind, tk) || strcmp(k->target, j->tgt.id)) {
				e = refuse(j, SG_KM_KEY_NOT_FOUND, "no key %s for this VAL user",
				           id);
				break;
			}
			enum sg_km_error why = releasable(k, now);
			if (why != SG_KM_OK) {
				e = refuse(j, why, "key %s is %s", id,
				           why == SG_KM_KEY_REVOKED
				               ? "revoked"
				               : "outside its validity period");
				break;
			}
		}
	} else {
		e = sg_store_km_key_list(st, j->svc, tk, j->tgt.id, &v, &n);
	}
	json_t *recs = json_array();
	for (size_t i = 0; e == SG_OK && i < n; i++) {
		if (releasable(&v[i], now) != SG_KM_OK)
			continue; /* "all current": revoked and expired keys are left out */
		json_t *rec = open_record(km, &v[i]);
		if (!rec)
			continue;
		char *jwe = seal_to(c.jwk, rec);
		char from[32], until[32];
		sg_km_time_format(v[i].not_before, from);
		sg_km_time_format(v[i].not_after, until);
		json_t *o = jwe ? json_pack("{s:s,s:I,s:s,s:s,s:s,s:s}", "payloadId", v[i].key_id,
		                            "version", (json_int_t)v[i].version, "valServiceId",
		                            v[i].val_service, "validFrom", from, "validUntil",
		                            until, "keyInfo", jwe)
		                : NULL;
		free(jwe);
		if (!o || json_array_append_new(recs, o)) {
			e = SG_ERR_NOMEM;
			break;
		}
		e = audit_release(st, j, &v[i]);
	}
	sg_store_km_key_list_free(v, n);
	if (e == SG_OK && json_array_size(recs) == 0)
		e = refuse(j, SG_KM_KEY_NOT_FOUND,
		           "no current key of VAL service %s for this VAL user", j->svc);
	if (e == SG_OK) {
		char t[32];
		sg_km_time_format(now, t);
		/* SEAL KM Response (docs/km-protocol.md) */
		j->resp = json_pack("{s:s,s:s,s:s,s:s,s:o,s:O}", "userUri", c.skmc_uri, "skmsId",
		                    SG_KM_SKMS_ID, "time", t, "valServiceId", j->svc, "valTgtUe",
		                    sg_km_target_json(&j->tgt), "keyRecords", recs);
		j->status = 200;
		if (!j->resp)
			e = SG_ERR_NOMEM;
	}
	json_decref(recs);
	sg_store_km_client_clear(&c);
	return e;
}

/* KM-S ss-kir (K4): the current keys of a VAL service the VAL server serves, as ValKeyInfo
 * whose keyInfo is one JWE to the VAL server's SKM-C key. */
static sg_err run_retrieve_kir(struct sg_store *st, struct km_job *j)
{
	struct sg_km *km = j->m->km;
	struct sg_store_vals *vals = vals_get(km);
	const struct sg_store_valserver *vs = sg_store_vals_find(vals, j->client_id);
	int ok = vs && !vs->disabled && serves(vs, j->svc);
	sg_store_vals_unref(vals);
	if (!ok)
		return refuse(j, SG_KM_VAL_SERVICE_NOT_ALLOWED,
		              "VAL server %.128s does not serve VAL service %.128s", j->client_id,
		              j->svc);
	struct sg_store_km_client c;
	sg_err e = sg_store_km_client_get(st, j->owner, j->client_id, &c);
	if (e == SG_ERR_NOTFOUND)
		return refuse(j, SG_KM_SKMC_KEY_NOT_REGISTERED,
		              "register an SKM-C public key first (POST " KM_REGISTER ")");
	if (e != SG_OK)
		return e;
	int64_t now = sg_now_ms();
	struct sg_store_km_key *v = NULL;
	size_t n = 0;
	e = sg_store_km_key_list(st, j->svc, j->tgt.kind ? sg_km_tgt_kind_str(j->tgt.kind) : NULL,
	                         j->tgt.kind ? j->tgt.id : NULL, &v, &n);
	json_t *recs = json_array();
	for (size_t i = 0; e == SG_OK && i < n; i++) {
		if (releasable(&v[i], now) != SG_KM_OK)
			continue;
		json_t *rec = open_record(km, &v[i]);
		if (!rec)
			continue;
		if (json_array_append_new(recs, rec)) {
			e = SG_ERR_NOMEM;
			break;
		}
		e = audit_release(st, j, &v[i]);
	}
	sg_store_km_key_list_free(v, n);
	if (e == SG_OK && json_array_size(recs) == 0)
		e = refuse(j, SG_KM_KEY_NOT_FOUND, "no current key of VAL service %s matches",
		           j->svc);
	char *jwe = NULL;
	if (e == SG_OK) {
		json_t *pt = json_pack("{s:s,s:O}", "skmsId", SG_KM_SKMS_ID, "keyRecords", recs);
		jwe = pt ? seal_to(c.jwk, pt) : NULL; /* wipes the records' keys */
		if (!jwe)
			e = SG_ERR_INTERNAL;
	}
	wipe_keys(recs);
	json_decref(recs);
	if (e == SG_OK) {
		/* ValKeyInfo (TS 29.549 SS_KeyInfoRetrieval) */
		j->resp = json_pack("{s:s,s:s,s:s,s:s}", "userUri", c.skmc_uri, "skmsId",
		                    SG_KM_SKMS_ID, "valService", j->svc, "keyInfo", jwe);
		if (j->resp && j->tgt.kind)
			json_object_set_new(j->resp, "valTgtUe", sg_km_target_json(&j->tgt));
		j->status = 200;
		if (!j->resp)
			e = SG_ERR_NOMEM;
	}
	free(jwe);
	sg_store_km_client_clear(&c);
	return e;
}

/* ---- group keys (K5) -------------------------------------------------------------------- */

/* The UE's VAL user id for a VAL service, from the val_user_ids claim copied into the job. */
static const char *job_uid_of(void *ctx, const char *svc)
{
	return json_string_value(json_object_get(ctx, svc));
}

static const char *principal_uid_of(void *ctx, const char *svc)
{
	return sg_principal_val_user_id(ctx, svc);
}

/* The current key of group g, bound to its member hash: the latest stored version when its
 * hash is g's, else a new version (256 random bits drawn here, sealed under the master key,
 * audited as km.group.create / km.group.rotate) that supersedes the older ones. *out owned by
 * the caller (sg_store_km_key_clear). Runs inside the job's savepoint. */
static sg_err group_current(struct sg_km *km, struct sg_store *st, const struct km_group *g,
                            const char *actor, const char *refpoint, struct sg_store_km_key *out)
{
	char kid[40], urn[sizeof KM_GROUP_MEMBERS_URN + 64];
	km_group_key_id(g->id, kid);
	snprintf(urn, sizeof urn, "%s%s", KM_GROUP_MEMBERS_URN, g->hash);
	for (int tries = 0; tries < 3; tries++) {
		sg_err e = sg_store_km_key_latest(st, KM_GROUP_NS, kid, out);
		int64_t version = 1;
		if (e == SG_OK) {
			if (!out->revoked_at && !out->superseded_at &&
			    !strcmp(out->skmc_uri, urn) && !strcmp(out->target, g->id))
				return SG_OK;
			version = out->version + 1;
			sg_store_km_key_clear(out);
		} else if (e != SG_ERR_NOTFOUND) {
			return e;
		}
		unsigned char key[KM_GROUP_KEY_LEN], sealed[SG_SEALED_LEN(KM_GROUP_KEY_LEN)];
		if ((e = sg_random_bytes(key, sizeof key)) == SG_OK)
			e = sg_km_seal(km->mk, KM_GROUP_NS, kid, version, key, sizeof key, sealed);
		OPENSSL_cleanse(key, sizeof key);
		if (e != SG_OK)
			return e;
		int64_t now = sg_now_ms();
		struct sg_store_km_key k = {.val_service = KM_GROUP_NS,
		                            .key_id = kid,
		                            .version = version,
		                            .target_kind = KM_GROUP_TGT_KIND,
		                            .target = g->id,
		                            .provider = "skms",
		                            .skmc_uri = urn,
		                            .sealed = sealed,
		                            .sealed_len = sizeof sealed,
		                            .not_before = now,
		                            .not_after = 0,
		                            .created_at = now};
		e = sg_store_km_key_add(st, &k);
		if (e == SG_ERR_EXISTS)
			continue; /* another worker rotated meanwhile: look again */
		if (e != SG_OK)
			return e;
		char obj[200], det[120];
		snprintf(obj, sizeof obj, "group/%s", kid);
		snprintf(det, sizeof det, "version=%lld members=sha256:%.16s", (long long)version,
		         g->hash);
		struct sg_store_audit a = {.ts = now,
		                           .actor = (char *)actor,
		                           .action =
		                               version > 1 ? "km.group.rotate" : "km.group.create",
		                           .object = obj,
		                           .refpoint = (char *)refpoint,
		                           .detail = det};
		if ((e = sg_store_audit_append(st, &a)) != SG_OK)
			return e;
		sg_log_info("km: VAL group key %s version %lld (members sha256:%.16s)", kid,
		            (long long)version, g->hash);
	}
	return sg_store_km_key_latest(st, KM_GROUP_NS, kid, out);
}

/* The record of a group key with its bytes (to be encrypted or sent, then wiped), or NULL. */
static json_t *open_group_record(struct sg_km *km, const struct sg_store_km_key *k)
{
	if (k->sealed_len != SG_SEALED_LEN(KM_GROUP_KEY_LEN))
		return NULL;
	unsigned char key[KM_GROUP_KEY_LEN];
	size_t n = 0;
	if (sg_km_unseal(km->mk, k->val_service, k->key_id, k->version, k->sealed, k->sealed_len,
	                 key, &n) != SG_OK) {
		sg_log_error("km: group key %s version %lld does not open with the master key "
		             "(tampered, or another master key): not released",
		             k->key_id, (long long)k->version);
		return NULL;
	}
	char b64[64], from[32];
	sg_b64url_encode(key, n, b64);
	OPENSSL_cleanse(key, sizeof key);
	sg_km_time_format(k->not_before, from);
	json_t *r = json_pack("{s:s,s:I,s:s,s:s,s:s}", "payloadId", k->key_id, "version",
	                      (json_int_t)k->version, "valGroupId", k->target, "validFrom", from,
	                      "key", b64);
	OPENSSL_cleanse(b64, sizeof b64);
	return r;
}

/* The group of the job in the current snapshot, after checking the requester (KM-UU: a member
 * by its VAL user id; SEAL-X1: any SEAL server). NULL with the refusal in j. */
static const struct km_group *job_group(struct km_job *j, struct km_groups *s)
{
	const struct km_group *g = km_groups_find(s, j->gid);
	if (!s)
		refuse(j, SG_KM_SERVICE_UNAVAILABLE, "VAL group membership is not available");
	else if (!g || (j->op == KM_GROUP_UU && !km_group_is_member(g, job_uid_of, j->uids)))
		refuse(j, SG_KM_TARGET_NOT_ALLOWED, "not a member of VAL group %.128s", j->gid);
	else
		return g;
	return NULL;
}

/* KM-UU: a member's request for the current key of its VAL group, encrypted to its SKM-C key
 * (R2); SEAL-X1: the group management server's, over mutual TLS. Membership and the key's
 * member hash come from one snapshot, taken here: a member removed before this job runs is
 * refused, and never gets the key of the new membership. */
static sg_err run_group(struct sg_store *st, struct km_job *j)
{
	struct sg_km *km = j->m->km;
	struct sg_store_km_client c = {0};
	sg_err e = SG_OK;
	if (j->op == KM_GROUP_UU) {
		e = sg_store_km_client_get(st, j->owner, j->client_id, &c);
		if (e == SG_ERR_NOTFOUND)
			return refuse(j, SG_KM_SKMC_KEY_NOT_REGISTERED,
			              "register an SKM-C public key first (POST " KM_REGISTER ")");
		if (e != SG_OK)
			return e;
	}
	struct km_groups *s = km->gmr ? km_gm_reader_get(km->gmr) : NULL;
	const struct km_group *g = job_group(j, s);
	struct sg_store_km_key k = {0};
	json_t *rec = NULL;
	if (!g)
		e = SG_ERR_DENIED;
	else if ((e = group_current(km, st, g, j->actor, j->refpoint, &k)) == SG_OK &&
	         !(rec = open_group_record(km, &k)))
		e = refuse(j, SG_KM_KEY_NOT_FOUND, "the key of VAL group %.128s is unavailable",
		           j->gid);
	km_groups_put(s);
	char obj[200], det[64];
	snprintf(obj, sizeof obj, "group/%s", k.key_id ? k.key_id : "");
	snprintf(det, sizeof det, "version=%lld", (long long)k.version);
	if (e == SG_OK)
		e = audit(st, j, j->op == KM_GROUP_UU ? "km.group.retrieve" : "km.group.x1", obj,
		          det);
	if (e == SG_OK && j->op == KM_GROUP_X1) {
		/* SEAL-X1: the group master key to the GM server, protected by mutual TLS */
		json_object_set_new(rec, "skmsId", json_string(SG_KM_SKMS_ID));
		j->resp = rec;
		rec = NULL;
		j->status = 200;
	} else if (e == SG_OK) {
		char *jwe = NULL, from[32], t[32];
		sg_km_time_format(k.not_before, from);
		sg_km_time_format(sg_now_ms(), t);
		jwe = seal_to(c.jwk, rec); /* wipes and drops rec */
		rec = NULL;
		json_t *o = jwe ? json_pack("{s:s,s:I,s:s,s:s,s:s}", "payloadId", k.key_id,
		                            "version", (json_int_t)k.version, "valGroupId", j->gid,
		                            "validFrom", from, "keyInfo", jwe)
		                : NULL;
		free(jwe);
		j->resp =
		    o ? json_pack("{s:s,s:s,s:s,s:s,s:[o]}", "userUri", c.skmc_uri, "skmsId",
		                  SG_KM_SKMS_ID, "time", t, "valGroupId", j->gid, "keyRecords", o)
		      : NULL;
		j->status = 200;
		if (!j->resp)
			e = SG_ERR_NOMEM;
	}
	if (rec) {
		wipe_keys(rec);
		json_decref(rec);
	}
	sg_store_km_key_clear(&k);
	sg_store_km_client_clear(&c);
	return e;
}

/* A membership change seen by the reader: rotate now (not only at the next request), so the
 * audit shows the rotation when it happened. */
struct km_sync {
	struct sg_km *km;
	char *gid;
};

static sg_err sync_job(struct sg_store *st, void *arg)
{
	struct km_sync *y = arg;
	struct km_groups *s = km_gm_reader_get(y->km->gmr);
	const struct km_group *g = km_groups_find(s, y->gid);
	struct sg_store_km_key k = {0};
	sg_err e = g ? group_current(y->km, st, g, "skms", "SEAL-X1", &k) : SG_OK;
	sg_store_km_key_clear(&k);
	km_groups_put(s);
	return e;
}

static void sync_done(sg_err rc, void *arg)
{
	struct km_sync *y = arg;
	if (rc != SG_OK)
		sg_log_warn("km: rotating the key of VAL group %.128s failed (the next request "
		            "retries): %s",
		            y->gid, sg_err_str(rc));
	free(y->gid);
	free(y);
}

/* The keys of groups gone from the membership (deleted, or no longer unambiguous) are retired:
 * superseded, never released again, and deleted by the store upkeep a day later. A group
 * created again gets a new key (group_current). Judged against the snapshot when the job runs,
 * never against a stale one. */
static sg_err retire_job(struct sg_store *st, void *arg)
{
	struct sg_km *km = arg;
	struct km_groups *s = km_gm_reader_get(km->gmr);
	if (!s)
		return SG_OK;
	struct sg_store_km_key *v = NULL;
	size_t n = 0;
	sg_err e = sg_store_km_key_list(st, KM_GROUP_NS, NULL, NULL, &v, &n);
	int64_t now = sg_now_ms();
	for (size_t i = 0; e == SG_OK && i < n; i++) {
		if (km_groups_find(s, v[i].target))
			continue;
		e = sg_store_km_key_retire(st, KM_GROUP_NS, v[i].key_id, now);
		char obj[200];
		snprintf(obj, sizeof obj, "group/%s", v[i].key_id);
		struct sg_store_audit a = {.ts = now,
		                           .actor = "skms",
		                           .action = "km.group.retire",
		                           .object = obj,
		                           .refpoint = "SEAL-X1"};
		if (e == SG_OK)
			e = sg_store_audit_append(st, &a);
	}
	sg_store_km_key_list_free(v, n);
	km_groups_put(s);
	return e;
}

static void retire_done(sg_err rc, void *arg)
{
	(void)arg;
	if (rc != SG_OK)
		sg_log_warn("km: retiring the keys of deleted VAL groups failed (the next change "
		            "retries): %s",
		            sg_err_str(rc));
}

static void groups_changed(void *arg, const struct km_groups *s, const size_t *changed, size_t n,
                           size_t gone)
{
	struct sg_km *km = arg;
	if (gone && sg_store_pool_submit(km->pool, retire_job, km, retire_done, km, NULL) != SG_OK)
		sg_log_warn("km: cannot queue the retirement of deleted VAL groups' keys");
	for (size_t i = 0; i < n; i++) {
		struct km_sync *y = calloc(1, sizeof *y);
		if (y && (y->gid = strdup(s->v[changed[i]].id))) {
			y->km = km;
			if (sg_store_pool_submit(km->pool, sync_job, y, sync_done, y, NULL) ==
			    SG_OK)
				continue;
			free(y->gid);
		}
		free(y);
	}
}

static sg_err job_run(struct sg_store *st, void *arg)
{
	struct km_job *j = arg;
	switch (j->op) {
	case KM_REGISTER_KEY:
		return run_register(st, j);
	case KM_CHALLENGE_KEY:
		return run_challenge(st, j);
	case KM_PROVISION:
		return run_provision(st, j);
	case KM_REVOKE_KEY:
		return run_revoke(st, j);
	case KM_RETRIEVE_UU:
		return run_retrieve_uu(st, j);
	case KM_RETRIEVE_KIR:
		return run_retrieve_kir(st, j);
	case KM_GROUP_UU:
	case KM_GROUP_X1:
		return run_group(st, j);
	}
	return SG_ERR_INTERNAL;
}

static void job_done(sg_err rc, void *arg)
{
	struct km_job *j = arg;
	struct sg_http_req *r = j->r;
	if (j->code != SG_KM_OK) {
		problem(r, j->code, NULL, "%s", j->msg);
	} else if (rc != SG_OK || !j->status) {
		/* not committed: nothing was stored, nothing released */
		wipe_keys(j->resp);
		json_decref(j->resp);
		j->resp = NULL;
		problem(r, SG_KM_SERVICE_UNAVAILABLE, NULL, "the key store is unavailable");
	} else if (j->status == 204) {
		sg_http_resp_status(r, 204);
		sg_http_resp_body(r, NULL, 0, NULL);
	} else {
		sg_http_resp_header(r, "Cache-Control", "no-store");
		/* serialized here so that a clear key (SEAL-X1 only) is wiped after the copy */
		char *s = json_dumps(j->resp, JSON_COMPACT);
		if (s) {
			sg_http_resp_status(r, j->status);
			sg_http_resp_body(r, s, strlen(s), "application/json");
			OPENSSL_cleanse(s, strlen(s));
			free(s);
		} else {
			problem(r, SG_KM_SERVICE_UNAVAILABLE, NULL, "out of memory");
		}
	}
	wipe_keys(j->resp);
	job_free(j);
	sg_http_req_finish(r);
}

/* ---- handlers --------------------------------------------------------------------------- */

/* A new job for the request, or NULL with the refusal answered (principal of the wrong kind). */
static struct km_job *job_new(struct sg_http_req *r, struct km_mount *m, enum km_op op)
{
	const struct sg_principal *p = sg_principal_of(r);
	int ok = m->ue == 2   ? p && p->kind == SG_PRINCIPAL_SEAL_SERVER && p->cert_identity
	         : m->ue == 1 ? p && p->kind == SG_PRINCIPAL_UE && p->sub && p->client_id
	                      : p && p->kind == SG_PRINCIPAL_VAL_SERVER && p->client_id;
	if (!ok) {
		problem(r, SG_KM_OPERATION_NOT_ALLOWED, NULL,
		        m->ue == 2   ? "SEAL-X1 is for SEAL servers"
		        : m->ue == 1 ? "KM-UU is for VAL users' SKM-Cs"
		                     : "KM-S is for VAL servers' SKM-Cs");
		return NULL;
	}
	struct km_job *j = calloc(1, sizeof *j);
	if (!j) {
		problem(r, SG_KM_SERVICE_UNAVAILABLE, NULL, "out of memory");
		return NULL;
	}
	j->r = r;
	j->m = m;
	j->op = op;
	if (m->ue == 2) {
		if (strlen(p->cert_identity) >= 128) {
			problem(r, SG_KM_OPERATION_NOT_ALLOWED, NULL, "identity too long");
			free(j);
			return NULL;
		}
		snprintf(j->owner, sizeof j->owner, "ss:%.127s", p->cert_identity);
		snprintf(j->actor, sizeof j->actor, "sealserver:%.127s", p->cert_identity);
		snprintf(j->refpoint, sizeof j->refpoint, "SEAL-X1/%s", m->rp->name);
		return j;
	}
	const char *who = m->ue ? p->sub : p->client_id;
	if (strlen(who) >= 128 || strlen(p->client_id) >= sizeof j->client_id) {
		problem(r, SG_KM_OPERATION_NOT_ALLOWED, NULL, "identity too long");
		free(j);
		return NULL;
	}
	snprintf(j->owner, sizeof j->owner, "%s:%s", m->ue ? "ue" : "vs", who);
	snprintf(j->client_id, sizeof j->client_id, "%s", p->client_id);
	snprintf(j->actor, sizeof j->actor, "%s:%s", m->ue ? "user" : "valserver", who);
	snprintf(j->refpoint, sizeof j->refpoint, "%s%s", m->ue ? "KM-UU/" : "KM-S/", m->rp->name);
	return j;
}

static enum sg_http_result submit(struct km_job *j)
{
	struct sg_http_req *r = j->r;
	/* a challenge writes nothing: off the writer's queue */
	sg_err (*fn)(struct sg_store_pool *, sg_store_job_fn, void *, sg_store_done_fn, void *,
	             struct event_base *) =
	    j->op == KM_CHALLENGE_KEY ? sg_store_pool_submit_read : sg_store_pool_submit;
	if (fn(j->m->km->pool, job_run, j, job_done, j, sg_http_req_loop(r)) != SG_OK) {
		problem(r, SG_KM_SERVICE_UNAVAILABLE, NULL, "the key store is unavailable");
		job_free(j);
		return SG_HTTP_DONE;
	}
	return SG_HTTP_ASYNC;
}

static int ctype_json(const char *ct)
{
	static const char want[] = "application/json";
	size_t n = sizeof want - 1;
	return ct && !strncasecmp(ct, want, n) && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* The JSON body of a KM request: application/json, at most SG_KM_MAX_BODY bytes. */
static json_t *body_json(struct sg_http_req *r)
{
	size_t len = 0;
	sg_http_req_body(r, &len);
	if (!ctype_json(sg_http_req_header(r, "content-type"))) {
		problem(r, SG_KM_UNSUPPORTED_MEDIA_TYPE, NULL, "the body must be application/json");
		return NULL;
	}
	if (len > SG_KM_MAX_BODY) {
		problem(r, SG_KM_PAYLOAD_TOO_LARGE, NULL, "a KM request is at most %d bytes",
		        SG_KM_MAX_BODY);
		return NULL;
	}
	return sg_http_req_json(r); /* answers 400 itself */
}

/* POST /km/v1/skmc-keys {"jwk":{...},"skmcUri":"...","proof":"..."}: registers the SKM-C public
 * key; POST /km/v1/skmc-keys/challenge {"jwk":{...}}: the challenge for replacing the
 * registered one by it. */
static enum sg_http_result h_register(struct sg_http_req *r, void *arg)
{
	struct km_mount *m = arg;
	int challenge = !strcmp(sg_http_req_path(r), KM_CHALLENGE);
	struct km_job *j = job_new(r, m, challenge ? KM_CHALLENGE_KEY : KM_REGISTER_KEY);
	if (!j)
		return SG_HTTP_DONE;
	json_t *b = body_json(r), *canon = NULL;
	struct sg_km_invalid why = {{0}, {0}};
	if (!b)
		goto done;
	if (!json_is_object(b)) {
		snprintf(why.param, sizeof why.param, "/");
		snprintf(why.reason, sizeof why.reason, "must be an object");
		problem(r, SG_KM_INVALID_MSG_FORMAT, &why, "not an SKM-C key registration");
		goto done;
	}
	if (sg_km_jwk_check(json_object_get(b, "jwk"), &canon, j->kid, &why)) {
		problem(r, SG_KM_INVALID_SKMC_KEY, &why, "the SKM-C key is not usable");
		goto done;
	}
	const json_t *pf = json_object_get(b, "proof");
	if (pf && (challenge || !json_is_string(pf) || json_string_length(pf) != SG_KM_PROOF_LEN)) {
		snprintf(why.param, sizeof why.param, "/proof");
		snprintf(why.reason, sizeof why.reason,
		         challenge ? "not part of a challenge request"
		                   : "must be the proof of a challenge (" KM_CHALLENGE ")");
		problem(r, SG_KM_INVALID_MSG_FORMAT, &why, "proof is not a proof");
		goto done;
	}
	if (pf)
		snprintf(j->proof, sizeof j->proof, "%s", json_string_value(pf));
	const json_t *u = json_object_get(b, "skmcUri");
	if (u && challenge) {
		snprintf(why.param, sizeof why.param, "/skmcUri");
		snprintf(why.reason, sizeof why.reason, "not part of a challenge request");
		problem(r, SG_KM_INVALID_MSG_FORMAT, &why, "skmcUri goes with the registration");
		goto done;
	}
	if (u) {
		const char *s = json_string_value(u);
		if (!s || !*s || strlen(s) > SG_KM_URI_MAX || !strchr(s, ':') ||
		    strcspn(s, " \t\r\n\"\\") != strlen(s)) {
			snprintf(why.param, sizeof why.param, "/skmcUri");
			snprintf(why.reason, sizeof why.reason, "must be a URI");
			problem(r, SG_KM_INVALID_MSG_FORMAT, &why, "skmcUri is not a URI");
			goto done;
		}
		snprintf(j->skmc_uri, sizeof j->skmc_uri, "%s", s);
	} else {
		snprintf(j->skmc_uri, sizeof j->skmc_uri, "urn:sealguard:skmc:%s", j->owner);
	}
	if (!(j->jwk = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS))) {
		problem(r, SG_KM_SERVICE_UNAVAILABLE, NULL, "out of memory");
		goto done;
	}
	json_decref(canon);
	json_decref(b);
	return submit(j);
done:
	json_decref(canon);
	json_decref(b);
	job_free(j);
	return SG_HTTP_DONE;
}

/* The reserved VAL service id of group keys is not a VAL service: refused on the VAL-service
 * routes (answered like a VAL service the caller may not use). */
static int reserved_service(struct sg_http_req *r, const char *svc)
{
	if (!svc || strcmp(svc, KM_GROUP_NS))
		return 0;
	problem(r, SG_KM_VAL_SERVICE_NOT_ALLOWED, NULL,
	        "%s is reserved for VAL group keys (POST " KM_GROUP_REQ_PATH ")", KM_GROUP_NS);
	return 1;
}

/* K3: the token's SKeyProv lists the VAL service. */
static int skeyprov_has(const struct sg_principal *p, const char *svc)
{
	const json_t *a = p && p->claims ? json_object_get(p->claims, "SKeyProv") : NULL;
	size_t i;
	const json_t *v;
	json_array_foreach(a, i,
	                   v) if (json_is_string(v) && !strcmp(json_string_value(v), svc)) return 1;
	return 0;
}

/* ss-kpp POST /request: VALKeyPpReq -> VALKeyPpResp (TS 29.549; TS 33.434 §5.8). */
static enum sg_http_result h_kpp(struct sg_http_req *r, void *arg)
{
	struct km_mount *m = arg;
	struct km_job *j = job_new(r, m, KM_PROVISION);
	if (!j)
		return SG_HTTP_DONE;
	json_t *b = body_json(r);
	struct sg_km_invalid why = {{0}, {0}};
	if (!b)
		goto done;
	if (sg_km_parse_pp_req(b, &j->pp, &why)) {
		problem(r, SG_KM_INVALID_MSG_FORMAT, &why, "not a valid VALKeyPpReq");
		goto done;
	}
	if (j->pp.valid_until_ms && !j->pp.valid_from_ms && j->pp.valid_until_ms <= sg_now_ms()) {
		/* valid from now (no validFrom) until a time already past: never releasable */
		sg_km_pp_req_wipe(&j->pp);
		snprintf(why.param, sizeof why.param, "/validUntil");
		snprintf(why.reason, sizeof why.reason, "must be in the future");
		problem(r, SG_KM_INVALID_MSG_FORMAT, &why, "not a valid VALKeyPpReq");
		goto done;
	}
	if (reserved_service(r, j->pp.val_service))
		goto done;
	const struct sg_principal *p = sg_principal_of(r);
	if (!json_is_array(json_object_get(p->claims, "SKeyProv"))) {
		problem(r, SG_KM_PROVISIONING_NOT_AUTHORIZED, NULL,
		        "the access token carries no SKeyProv (TS 33.434 §5.8)");
		goto done;
	}
	if (!skeyprov_has(p, j->pp.val_service)) {
		problem(r, SG_KM_PROVISIONING_NOT_AUTHORIZED, NULL,
		        "SKeyProv of the access token does not list VAL service %.128s",
		        j->pp.val_service);
		goto done;
	}
	json_decref(b);
	return submit(j);
done:
	json_decref(b);
	job_free(j);
	return SG_HTTP_DONE;
}

/* DELETE /km/v1/keys/{valServiceId}/{payloadId}: revokes every version (sealguard). */
static enum sg_http_result h_revoke(struct sg_http_req *r, void *arg)
{
	struct km_mount *m = arg;
	struct km_job *j = job_new(r, m, KM_REVOKE_KEY);
	if (!j)
		return SG_HTTP_DONE;
	const char *svc = sg_http_req_param(r, "valServiceId");
	const char *id = sg_http_req_param(r, "payloadId");
	if (!sg_km_id_ok(svc) || !sg_km_payload_id_ok(id)) {
		problem(r, SG_KM_KEY_NOT_FOUND, NULL, "no such key");
		job_free(j);
		return SG_HTTP_DONE;
	}
	if (reserved_service(r, svc)) {
		job_free(j);
		return SG_HTTP_DONE;
	}
	snprintf(j->svc, sizeof j->svc, "%s", svc);
	snprintf(j->payload_id, sizeof j->payload_id, "%s", id);
	if (!skeyprov_has(sg_principal_of(r), svc)) {
		problem(r, SG_KM_PROVISIONING_NOT_AUTHORIZED, NULL,
		        "SKeyProv of the access token does not list VAL service %.128s", svc);
		job_free(j);
		return SG_HTTP_DONE;
	}
	return submit(j);
}

/* KM-UU POST /km/v1/key-requests: SEAL KM Request -> SEAL KM Response (TS 33.434 §5.3). */
static enum sg_http_result h_request(struct sg_http_req *r, void *arg)
{
	struct km_mount *m = arg;
	struct km_job *j = job_new(r, m, KM_RETRIEVE_UU);
	if (!j)
		return SG_HTTP_DONE;
	json_t *b = body_json(r);
	struct sg_km_invalid why = {{0}, {0}};
	if (!b)
		goto done;
	if (!(j->uu = calloc(1, sizeof *j->uu))) {
		problem(r, SG_KM_SERVICE_UNAVAILABLE, NULL, "out of memory");
		goto done;
	}
	if (sg_km_parse_uu_req(b, j->uu, &why)) {
		problem(r, SG_KM_INVALID_MSG_FORMAT, &why, "not a valid SEAL KM Request");
		goto done;
	}
	if (reserved_service(r, j->uu->val_service))
		goto done;
	snprintf(j->svc, sizeof j->svc, "%s", j->uu->val_service);
	/* the UE's own VAL user id for the VAL service (token claim val_user_ids) */
	const char *uid = sg_principal_val_user_id(sg_principal_of(r), j->svc);
	if (!uid || !sg_km_id_ok(uid)) {
		problem(r, SG_KM_TARGET_NOT_ALLOWED, NULL,
		        "the VAL user has no VAL user id for VAL service %.128s", j->svc);
		goto done;
	}
	if (j->uu->tgt.kind != SG_KM_TGT_NONE &&
	    (j->uu->tgt.kind != SG_KM_TGT_USER || strcmp(j->uu->tgt.id, uid))) {
		problem(r, SG_KM_TARGET_NOT_ALLOWED, NULL,
		        "a VAL user may request only the keys of its own VAL user id");
		goto done;
	}
	j->tgt.kind = SG_KM_TGT_USER;
	snprintf(j->tgt.id, sizeof j->tgt.id, "%s", uid);
	json_decref(b);
	return submit(j);
done:
	json_decref(b);
	job_free(j);
	return SG_HTTP_DONE;
}

/* ss-kir GET /key-records?val-service-id=&val-tgt-ue= -> ValKeyInfo (TS 29.549, K4). */
static enum sg_http_result h_kir(struct sg_http_req *r, void *arg)
{
	struct km_mount *m = arg;
	struct sg_km_invalid why = {{0}, {0}};
	const char *svc = sg_http_req_query_param(r, "val-service-id");
	const char *tgt = sg_http_req_query_param(r, "val-tgt-ue");
	if (!svc || !sg_km_id_ok(svc)) {
		snprintf(why.param, sizeof why.param, "val-service-id");
		snprintf(why.reason, sizeof why.reason,
		         svc ? "not a VAL service id" : "is required");
		problem(r, SG_KM_INVALID_QUERY_PARAM, &why, "val-service-id is required");
		return SG_HTTP_DONE;
	}
	if (reserved_service(r, svc))
		return SG_HTTP_DONE;
	struct km_job *j = job_new(r, m, KM_RETRIEVE_KIR);
	if (!j)
		return SG_HTTP_DONE;
	snprintf(j->svc, sizeof j->svc, "%s", svc);
	if (tgt) {
		/* an object-valued query parameter: JSON-encoded (3GPP practice) */
		json_t *t =
		    strlen(tgt) <= 1024 ? json_loads(tgt, JSON_REJECT_DUPLICATES, NULL) : NULL;
		int rc = sg_km_parse_target(t, "val-tgt-ue", &j->tgt, &why);
		json_decref(t);
		if (rc) {
			snprintf(why.param, sizeof why.param, "val-tgt-ue");
			problem(r, SG_KM_INVALID_QUERY_PARAM, &why,
			        "val-tgt-ue must be a JSON ValTargetUe");
			job_free(j);
			return SG_HTTP_DONE;
		}
	}
	return submit(j);
}

/* KM-UU POST /km/v1/group-key-requests {"valGroupId"}: a member's SEAL KM Request for the
 * current key of a VAL group (K5, TS 33.434 §5.3; docs/km-protocol.md). */
static enum sg_http_result h_group_request(struct sg_http_req *r, void *arg)
{
	struct km_mount *m = arg;
	struct km_job *j = job_new(r, m, KM_GROUP_UU);
	if (!j)
		return SG_HTTP_DONE;
	json_t *b = body_json(r);
	struct sg_km_invalid why = {{0}, {0}};
	if (!b)
		goto done;
	const char *gid = json_string_value(json_object_get(b, "valGroupId"));
	if (!json_is_object(b) || !gid || !*gid || strlen(gid) > SG_KM_ID_MAX * 2 ||
	    json_object_size(b) != 1) {
		snprintf(why.param, sizeof why.param, "/valGroupId");
		snprintf(why.reason, sizeof why.reason,
		         "required: a non-empty string (the only member)");
		problem(r, SG_KM_INVALID_MSG_FORMAT, &why, "not a valid group key request");
		goto done;
	}
	struct km_groups *s = m->km->gmr ? km_gm_reader_get(m->km->gmr) : NULL;
	const struct km_group *g = km_groups_find(s, gid);
	int member = g && km_group_is_member(g, principal_uid_of, (void *)sg_principal_of(r));
	km_groups_put(s);
	if (!s) {
		problem(r, SG_KM_SERVICE_UNAVAILABLE, NULL,
		        "VAL group membership is not available");
		goto done;
	}
	if (!member) {
		/* an unknown group and a group of others are answered alike */
		problem(r, SG_KM_TARGET_NOT_ALLOWED, NULL, "not a member of VAL group %.128s", gid);
		goto done;
	}
	const json_t *uids = json_object_get(sg_principal_of(r)->claims, "val_user_ids");
	if (!(j->gid = strdup(gid)) || !(j->uids = json_deep_copy(uids))) {
		problem(r, SG_KM_SERVICE_UNAVAILABLE, NULL, "out of memory");
		goto done;
	}
	json_decref(b);
	return submit(j);
done:
	json_decref(b);
	job_free(j);
	return SG_HTTP_DONE;
}

/* SEAL-X1 GET /km/v1/group-keys/{valGroupId}: the current group master key of a VAL group, to
 * the group management server (a SEAL-server principal: mutual TLS, a SAN the SEAL-E listener
 * allows; TS 23.434 SEAL-X1, TS 33.434 §5.1.1 R4). */
static enum sg_http_result h_group_x1(struct sg_http_req *r, void *arg)
{
	struct km_mount *m = arg;
	struct km_job *j = job_new(r, m, KM_GROUP_X1);
	if (!j)
		return SG_HTTP_DONE;
	const char *gid = sg_http_req_param(r, "valGroupId");
	if (!gid || !*gid || strlen(gid) > SG_KM_ID_MAX * 2 || !(j->gid = strdup(gid))) {
		problem(r, SG_KM_TARGET_NOT_ALLOWED, NULL, "no such VAL group");
		job_free(j);
		return SG_HTTP_DONE;
	}
	return submit(j);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static sg_err group_reader(struct sg_km *km, char *err, size_t errlen)
{
	/* K5: where the group management server's SEAL-E is: km.gm_url (default: this
	 * configuration's first mutual-TLS listener with auth mtls serving gm, conf.c). None: no
	 * group keys (their requests answer 503). */
	const char *url = km->conf->km.gm_url;
	if (!url) {
		sg_log_info("km: no group management SEAL-E known: VAL group keys are off (set "
		            "km.gm_url)");
		return SG_OK;
	}
	/* R4: this server's own certificate toward the GM server, as toward identity management */
	struct sg_tls_conf tls = {.mode = SG_TLS_MUTUAL,
	                          .cert = km->conf->resource.client_cert,
	                          .key = km->conf->resource.client_key,
	                          .ca = km->conf->resource.ca,
	                          .crl = km->conf->resource.crl};
	uint64_t cap = (uint64_t)km->conf->km.gm_max_mib << 20; /* at most 4 GiB (conf.c) */
	sg_err e =
	    km_gm_reader_new(url, &tls, KM_GM_POLL_MS, cap > SIZE_MAX ? SIZE_MAX : (size_t)cap,
	                     groups_changed, km, &km->gmr, err, errlen);
	if (e == SG_OK)
		e = km_gm_reader_start(km->gmr, err, errlen);
	if (e == SG_OK)
		sg_log_info("km: VAL group membership from %s/ss-gm/v1 over SEAL-E every %d ms",
		            url, KM_GM_POLL_MS);
	return e;
}

sg_err sg_km_new(const struct sg_conf *conf, struct sg_km **out, char *err, size_t errlen)
{
	*out = NULL;
	struct sg_km *km = calloc(1, sizeof *km);
	if (!km)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	km->conf = conf;
	pthread_mutex_init(&km->mu, NULL);
	atomic_init(&km->busy, 0);
	/* the master key lives outside the database (auth/keyfile.h) */
	sg_err e = sg_keyfile_load(conf->state_dir, "master", 1, km->mk, err, errlen);
	unsigned plen = 0;
	if (e == SG_OK &&
	    !HMAC(EVP_sha256(), km->mk, sizeof km->mk,
	          (const unsigned char *)"sealguard-km-skmc-proof-key-v1", 30, km->pk, &plen))
		e = sg_fail(err, errlen, SG_ERR_INTERNAL, "km: cannot derive the proof key");
	const char *driver = conf->store_driver ? conf->store_driver : "sqlite";
	const char *where = !strcmp(driver, "postgres") ? conf->store_url : conf->store_path;
	if (e == SG_OK)
		e = sg_store_pool_create(driver, where, KM_POOL_THREADS, &km->pool, err, errlen);
	struct sg_store *st = NULL;
	if (e == SG_OK)
		e = sg_store_open(driver, where, &st, err, errlen);
	if (e == SG_OK && (e = upkeep(km, st)) != SG_OK)
		sg_fail(err, errlen, e, "km: loading the registry: %s", sg_store_last_error());
	sg_store_close(st);
	if (e != SG_OK) {
		sg_km_free(km);
		return e;
	}
	if ((e = group_reader(km, err, errlen)) != SG_OK) {
		sg_km_free(km);
		return e;
	}
	sg_log_info("km: key management ready (%zu VAL servers)", sg_store_vals_count(km->vals));
	*out = km;
	return SG_OK;
}

void sg_km_free(struct sg_km *km)
{
	if (!km)
		return;
	km_gm_reader_free(km->gmr); /* first: its callbacks submit to the pool */
	sg_store_pool_destroy(km->pool);
	sg_store_vals_unref(km->vals);
	for (size_t i = 0; i < km->nmounts; i++)
		free(km->mounts[i]);
	free(km->mounts);
	OPENSSL_cleanse(km->mk, sizeof km->mk);
	OPENSSL_cleanse(km->pk, sizeof km->pk);
	pthread_mutex_destroy(&km->mu);
	free(km);
}

sg_err sg_km_mount(struct sg_km *km, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                   char *err, size_t errlen)
{
	int ue;
	if (rp->auth_mode == SG_AUTH_BEARER)
		ue = 1; /* SEAL-UU as KM-UU: UEs */
	else if (rp->auth_mode == SG_AUTH_MTLS_BEARER)
		ue = 0; /* SEAL-S as KM-S: VAL servers */
	else if (rp->auth_mode == SG_AUTH_MTLS)
		ue = 2; /* SEAL-E as SEAL-X1: the group management server (K5) */
	else
		return SG_OK; /* nothing on auth none */
	struct km_mount *m = calloc(1, sizeof *m);
	struct km_mount **v = m ? realloc(km->mounts, (km->nmounts + 1) * sizeof *v) : NULL;
	if (!v) {
		free(m);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	km->mounts = v;
	v[km->nmounts++] = m;
	m->km = km;
	m->rp = rp;
	m->ue = ue;
	const struct {
		int ue;
		const char *method, *path, *scope;
		sg_http_handler h;
	} routes[] = {
	    {1, "POST", KM_REGISTER, SG_KM_SCOPE, h_register},
	    {1, "POST", KM_CHALLENGE, SG_KM_SCOPE, h_register},
	    {1, "POST", KM_REQUEST, SG_KM_SCOPE, h_request},
	    {0, "POST", KM_REGISTER, SG_KM_SCOPE, h_register},
	    {0, "POST", KM_CHALLENGE, SG_KM_SCOPE, h_register},
	    {0, "POST", KPP_REQUEST, SG_KP_SCOPE, h_kpp},
	    {0, "GET", KIR_RECORDS, SG_KM_SCOPE, h_kir},
	    {0, "DELETE", KM_REVOKE, SG_KP_SCOPE, h_revoke},
	    {1, "POST", KM_GROUP_REQ_PATH, SG_KM_SCOPE, h_group_request},
	    /* SEAL-X1: certificate only (the policy admits SEAL-server principals alone) */
	    {2, "GET", KM_GROUP_X1_PATH, NULL, h_group_x1},
	};
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		if (routes[i].ue != ue)
			continue;
		sg_err e = sg_policy_route(rt, routes[i].method, routes[i].path,
		                           routes[i].scope ? SG_KM_AUDIENCE : NULL, routes[i].scope,
		                           routes[i].h, m);
		if (e != SG_OK)
			return sg_fail(err, errlen, e, "km: route %s %s on %s: %s",
			               routes[i].method, routes[i].path, rp->name, sg_err_str(e));
	}
	return SG_OK;
}
