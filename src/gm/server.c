/* gm/server.c: the group management server's ss-gm/v1 (TS 29.549 SS_GroupManagement, TS 23.434
 * §10.3): routes, the six operations, the in-memory snapshots and their coherence with the
 * store. Security of the transport and of the token is the auth/ policy's (TS 33.434 §5.1.1,
 * R1/R3, I10); the rules here are gm's own (docs/gm.md):
 *   - SEAL-S, VAL servers (principal client_id = VAL server name, its VAL services from the
 *     registry): read the groups of a VAL service they serve; create, replace, modify and
 *     delete only groups all of whose VAL services they serve (before and after the change).
 *   - SEAL-UU (GM-UU), UEs: read only the groups they are a member of (a member's valUserId
 *     equals the UE's VAL user id for one of the group's VAL services, from the token's
 *     val_user_ids); no writes (the write routes are not mounted there: 405).
 *   - SEAL-E as SEAL-X1 (TS 23.434 §10.3 / SEAL-X1 between the group management server and
 *     the key management server; TS 33.434 §5.1.1 R4: mutual TLS, the certificate is the
 *     credential), SEAL servers: RetrieveValGroupDocs only, read-only, every group - the key
 *     management server learns group membership there to rotate group keys (K5).
 * A group the caller may not read is answered as absent (404), so ids reveal nothing. */
#include "gm/gm.h"

#include "auth/policy.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/rand.h"
#include "conf/conf.h"
#include "gm/logic.h"
#include "http/http.h"
#include "store/store.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GM_POOL_THREADS 2
#define GM_BASE         "/ss-gm/v1/group-documents"

/* ---- snapshots -------------------------------------------------------------------------- */

/* One group document, immutable once built; shared by snapshots (refcounted). */
struct gm_doc {
	atomic_int refs;
	char *id, *owner;
	json_t *body; /* canonical VALGroupDocument (read-only) */
	char *text;   /* body serialized, served as is */
	size_t len;
	char *mtext; /* its membership view (sg_gm_doc_membership), serialized */
	size_t mlen;
};

/* Every group document, by id. */
struct gm_docs {
	atomic_int refs;
	uint64_t gen;    /* group-document generation it was loaded at */
	uint64_t serial; /* set when it becomes current: each current snapshot has its own */
	struct gm_doc **v;
	size_t n;
};

struct gm_mount {
	struct sg_gm *gm;
	const struct sg_conf_refpoint *rp;
	int ue; /* 1: SEAL-UU (UEs read); 0: SEAL-S (VAL servers); 2: SEAL-X1 (SEAL servers) */
};

struct sg_gm {
	const struct sg_conf *conf;
	struct sg_store_pool *pool;
	pthread_mutex_t mu;
	struct gm_docs *docs;
	struct sg_store_vals *vals; /* the VAL servers of the registry */
	uint64_t epoch;             /* bumped (under mu) whenever a write of ours changes docs */
	uint64_t serials;           /* the last snapshot serial handed out (under mu) */
	char etag_base[24];         /* random per start: ETags never repeat across restarts */
	atomic_int busy;
	struct gm_mount **mounts;
	size_t nmounts;
};

static void doc_put(struct gm_doc *d)
{
	if (d && atomic_fetch_sub(&d->refs, 1) == 1) {
		free(d->id);
		free(d->owner);
		json_decref(d->body);
		free(d->text);
		free(d->mtext);
		free(d);
	}
}

/* Takes the reference to body. */
static struct gm_doc *doc_new(const char *id, const char *owner, json_t *body)
{
	struct gm_doc *d = calloc(1, sizeof *d);
	if (!d) {
		json_decref(body);
		return NULL;
	}
	atomic_init(&d->refs, 1);
	d->body = body;
	d->id = strdup(id);
	d->owner = strdup(owner);
	d->text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_t *m = body ? sg_gm_doc_membership(body) : NULL;
	d->mtext = m ? json_dumps(m, JSON_COMPACT) : NULL;
	json_decref(m);
	if (!d->id || !d->owner || !d->text || !d->mtext) {
		doc_put(d);
		return NULL;
	}
	d->len = strlen(d->text);
	d->mlen = strlen(d->mtext);
	return d;
}

static void docs_put(struct gm_docs *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
		for (size_t i = 0; i < s->n; i++)
			doc_put(s->v[i]);
		free(s->v);
		free(s);
	}
}

static struct gm_docs *docs_get(struct sg_gm *gm)
{
	pthread_mutex_lock(&gm->mu);
	struct gm_docs *s = gm->docs;
	if (s)
		atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&gm->mu);
	return s;
}

static struct sg_store_vals *vals_get(struct sg_gm *gm)
{
	pthread_mutex_lock(&gm->mu);
	struct sg_store_vals *s = sg_store_vals_ref(gm->vals);
	pthread_mutex_unlock(&gm->mu);
	return s;
}

/* Index of id in s, or of where it would go (*found = 0). */
static size_t docs_find(const struct gm_docs *s, const char *id, int *found)
{
	size_t lo = 0, hi = s ? s->n : 0;
	*found = 0;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(id, s->v[mid]->id);
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Replaces (d != NULL) or removes (d == NULL) document id in the current snapshot: a new
 * snapshot, swapped in; readers holding the old one keep it. Takes the reference to d. The
 * snapshot keeps its generation, so the next tick reloads from the store once (other
 * processes' writes in between are then picked up too). */
static void docs_apply(struct sg_gm *gm, const char *id, struct gm_doc *d)
{
	pthread_mutex_lock(&gm->mu);
	struct gm_docs *cur = gm->docs;
	struct gm_docs *s = calloc(1, sizeof *s);
	size_t n = cur ? cur->n : 0;
	if (s)
		s->v = calloc(n + 1, sizeof *s->v);
	if (!s || !s->v) {
		/* no memory: drop the snapshot's claim so that the next tick reloads */
		free(s);
		if (cur)
			cur->gen = 0;
		pthread_mutex_unlock(&gm->mu);
		doc_put(d);
		return;
	}
	atomic_init(&s->refs, 1);
	s->gen = cur ? cur->gen : 0;
	int found;
	size_t at = docs_find(cur, id, &found);
	for (size_t i = 0; i < n; i++) {
		if (i == at && found)
			continue;
		atomic_fetch_add(&cur->v[i]->refs, 1);
		s->v[s->n++] = cur->v[i];
	}
	if (d) {
		/* insert at its sorted place among the copied entries */
		size_t pos = at;
		memmove(&s->v[pos + 1], &s->v[pos], (s->n - pos) * sizeof *s->v);
		s->v[pos] = d;
		s->n++;
	}
	s->serial = ++gm->serials;
	gm->docs = s;
	gm->epoch++;
	pthread_mutex_unlock(&gm->mu);
	docs_put(cur);
}

static int cmp_doc(const void *a, const void *b)
{
	return strcmp((*(struct gm_doc *const *)a)->id, (*(struct gm_doc *const *)b)->id);
}

static sg_err docs_load(struct sg_store *st, uint64_t gen, struct gm_docs **out)
{
	struct sg_store_gm_doc *v = NULL;
	size_t n = 0;
	sg_err e = sg_store_gm_list(st, &v, &n);
	if (e != SG_OK)
		return e;
	struct gm_docs *s = calloc(1, sizeof *s);
	if (s)
		s->v = calloc(n + 1, sizeof *s->v);
	if (!s || !s->v) {
		free(s);
		sg_store_gm_list_free(v, n);
		return SG_ERR_NOMEM;
	}
	atomic_init(&s->refs, 1);
	s->gen = gen;
	for (size_t i = 0; i < n; i++) {
		json_t *b = json_loads(v[i].body, 0, NULL);
		struct gm_doc *d = b ? doc_new(v[i].doc_id, v[i].owner, b) : NULL;
		if (!d) {
			sg_log_warn("gm: group document %s is unreadable, skipped", v[i].doc_id);
			continue;
		}
		s->v[s->n++] = d;
	}
	sg_store_gm_list_free(v, n);
	if (s->n > 1) /* docs_find needs strcmp order, whatever the backend's collation */
		qsort(s->v, s->n, sizeof *s->v, cmp_doc);
	*out = s;
	return SG_OK;
}

/* Reloads what changed in the store. */
static sg_err upkeep(struct sg_gm *gm, struct sg_store *st)
{
	uint64_t dgen = 0, rgen = 0;
	sg_err e = sg_store_gm_generation(st, &dgen);
	if (e == SG_OK)
		e = sg_store_generation(st, &rgen);
	if (e != SG_OK)
		return e;
	pthread_mutex_lock(&gm->mu);
	uint64_t epoch = gm->epoch;
	int reload_docs = !gm->docs || gm->docs->gen != dgen;
	int reload_vals = !gm->vals || sg_store_vals_gen(gm->vals) != rgen;
	pthread_mutex_unlock(&gm->mu);
	struct gm_docs *d = NULL;
	struct sg_store_vals *v = NULL;
	if (reload_docs && (e = docs_load(st, dgen, &d)) != SG_OK)
		return e;
	if (reload_vals && (e = sg_store_vals_load(st, rgen, &v)) != SG_OK) {
		docs_put(d);
		return e;
	}
	struct gm_docs *old_d = NULL;
	struct sg_store_vals *old_v = NULL;
	pthread_mutex_lock(&gm->mu);
	if (d && gm->epoch == epoch) {
		old_d = gm->docs;
		d->serial = ++gm->serials;
		gm->docs = d;
		d = NULL;
	} /* else a write of ours landed meanwhile: keep it, reload on the next tick */
	if (v) {
		old_v = gm->vals;
		gm->vals = v;
	}
	pthread_mutex_unlock(&gm->mu);
	docs_put(d);
	docs_put(old_d);
	sg_store_vals_unref(old_v);
	return SG_OK;
}

static sg_err tick_job(struct sg_store *st, void *arg)
{
	sg_err e = upkeep(arg, st);
	if (e != SG_OK)
		sg_log_warn("gm: refresh from the store failed, keeping the previous snapshot: %s",
		            sg_store_last_error());
	return e;
}

static void tick_done(sg_err rc, void *arg)
{
	(void)rc;
	struct sg_gm *gm = arg;
	atomic_store(&gm->busy, 0);
}

void sg_gm_tick(struct sg_gm *gm)
{
	int expected = 0;
	if (!gm || !atomic_compare_exchange_strong(&gm->busy, &expected, 1))
		return;
	if (sg_store_pool_submit_read(gm->pool, tick_job, gm, tick_done, gm, NULL) != SG_OK)
		atomic_store(&gm->busy, 0);
}

/* ---- responses -------------------------------------------------------------------------- */

static void problem(struct sg_http_req *r, int status, const char *cause,
                    const struct sg_gm_check *chk, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void problem(struct sg_http_req *r, int status, const char *cause,
                    const struct sg_gm_check *chk, const char *fmt, ...)
{
	char detail[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	json_t *j = sg_gm_problem(status, cause, detail, chk);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	sg_http_resp_status(r, status);
	if (s) {
		sg_http_resp_body(r, s, strlen(s), "application/problem+json");
		free(s);
	}
}

static void not_found(struct sg_http_req *r)
{
	problem(r, 404, "RESOURCE_NOT_FOUND", NULL, "no such VAL group document");
}

/* ---- who is asking ---------------------------------------------------------------------- */

static const char *uid_of(void *ctx, const char *svc)
{
	return sg_principal_val_user_id(ctx, svc);
}

/* The services of the requesting VAL server (copied into *svcs, a NULL-terminated array owned
 * by the caller) or -1 with the 403 answered. */
static int val_server_services(struct sg_gm *gm, struct sg_http_req *r,
                               const struct sg_principal *p, char ***svcs, size_t *n)
{
	*svcs = NULL;
	*n = 0;
	if (!p || p->kind != SG_PRINCIPAL_VAL_SERVER || !p->client_id) {
		problem(r, 403, "OPERATION_NOT_ALLOWED", NULL,
		        "ss-gm on this reference point is for VAL servers");
		return -1;
	}
	struct sg_store_vals *vals = vals_get(gm);
	const struct sg_store_valserver *v = sg_store_vals_find(vals, p->client_id);
	int rc = 0;
	if (!v || v->disabled) {
		problem(r, 403, "OPERATION_NOT_ALLOWED", NULL,
		        "VAL server %.128s is not registered", p->client_id);
		rc = -1;
	} else if (!(*svcs = calloc(v->n_val_services + 1, sizeof **svcs))) {
		problem(r, 503, "SERVICE_UNAVAILABLE", NULL, "out of memory");
		rc = -1;
	} else {
		for (size_t i = 0; i < v->n_val_services; i++) {
			if (!((*svcs)[i] = strdup(v->val_services[i]))) {
				problem(r, 503, "SERVICE_UNAVAILABLE", NULL, "out of memory");
				rc = -1;
				break;
			}
			(*n)++;
		}
	}
	sg_store_vals_unref(vals);
	return rc;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* Read visibility of one document for the caller (docs/gm.md). */
struct gm_reader {
	int ue;
	const struct sg_principal *p;
	char **svcs; /* VAL server: its VAL services */
	size_t nsvcs;
};

static int visible(const struct gm_reader *rd, const json_t *doc)
{
	if (rd->ue == 2)
		return 1; /* SEAL-X1: the KM server keys every group */
	if (rd->ue)
		return sg_gm_is_member(doc, uid_of, (void *)rd->p);
	return sg_gm_services_overlap(doc, rd->svcs, rd->nsvcs);
}

/* Fills rd for the request, or -1 with the refusal answered. */
static int reader_init(struct gm_mount *m, struct sg_http_req *r, struct gm_reader *rd)
{
	memset(rd, 0, sizeof *rd);
	rd->ue = m->ue;
	rd->p = sg_principal_of(r);
	if (m->ue == 2) {
		/* the SEAL-E policy admitted only a certificate with an allowed SAN */
		if (!rd->p || rd->p->kind != SG_PRINCIPAL_SEAL_SERVER) {
			problem(r, 403, "OPERATION_NOT_ALLOWED", NULL,
			        "group documents are read here by SEAL servers (SEAL-X1)");
			return -1;
		}
		return 0;
	}
	if (m->ue) {
		if (!rd->p || rd->p->kind != SG_PRINCIPAL_UE) {
			problem(r, 403, "OPERATION_NOT_ALLOWED", NULL,
			        "group documents are read here by VAL users' clients (GM-UU)");
			return -1;
		}
		return 0;
	}
	return val_server_services(m->gm, r, rd->p, &rd->svcs, &rd->nsvcs);
}

/* ---- reads (from the snapshot, on the loop) --------------------------------------------- */

/* A query parameter that, when present, must not be empty. -1 with the 400 answered. */
static int query_opt(struct sg_http_req *r, const char *name, const char **out)
{
	*out = sg_http_req_query_param(r, name);
	if (*out && !**out) {
		struct sg_gm_check chk = {0};
		snprintf(chk.v[0].param, sizeof chk.v[0].param, "%s", name);
		snprintf(chk.v[0].reason, sizeof chk.v[0].reason, "must not be empty");
		chk.n = 1;
		problem(r, 400, "INVALID_QUERY_PARAM", &chk, "query parameter %s is empty", name);
		return -1;
	}
	return 0;
}

static int query_bool(struct sg_http_req *r, const char *name, int *out)
{
	const char *v = sg_http_req_query_param(r, name);
	*out = 0;
	if (!v || !strcmp(v, "false"))
		return 0;
	if (!strcmp(v, "true")) {
		*out = 1;
		return 0;
	}
	struct sg_gm_check chk = {0};
	snprintf(chk.v[0].param, sizeof chk.v[0].param, "%s", name);
	snprintf(chk.v[0].reason, sizeof chk.v[0].reason, "must be true or false");
	chk.n = 1;
	problem(r, 400, "INVALID_QUERY_PARAM", &chk, "query parameter %s must be a boolean", name);
	return -1;
}

/* RFC 9110 §13.1.2: If-None-Match names etag (or is "*"). */
static int etag_matches(const char *inm, const char *etag)
{
	if (!inm)
		return 0;
	while (*inm == ' ' || *inm == '\t')
		inm++;
	return !strcmp(inm, "*") || strstr(inm, etag) != NULL;
}

/* RetrieveValGroupDocs: GET /group-documents[?val-group-id=&val-service-id=]. sealguard also
 * takes group-members=true here, as on one document: each document then as its membership
 * view (valGroupId, valServiceIds, members by valUserId / valUeId only), which is what the key
 * management server reads over SEAL-X1 (K5). There the answer carries an ETag of the snapshot,
 * and a poll naming it in If-None-Match gets 304 while nothing changed (docs/gm.md). */
static enum sg_http_result h_list(struct sg_http_req *r, void *arg)
{
	struct gm_mount *m = arg;
	const char *gid, *sid;
	int members;
	if (query_opt(r, "val-group-id", &gid) || query_opt(r, "val-service-id", &sid) ||
	    query_bool(r, "group-members", &members))
		return SG_HTTP_DONE;
	struct gm_reader rd;
	if (reader_init(m, r, &rd))
		return SG_HTTP_DONE;
	struct gm_docs *s = docs_get(m->gm);
	/* the snapshot, and which view of it: the filters and the flag (an ETag names one
	 * representation, RFC 9110 §8.8.3) */
	char etag[96] = "";
	if (m->ue == 2 && s) {
		uint64_t h = 1469598103934665603ull;
		const char *parts[] = {gid ? gid : "", "\n", sid ? sid : ""};
		for (size_t i = 0; i < 3; i++)
			for (const char *c = parts[i]; *c; c++)
				h = (h ^ (unsigned char)*c) * 1099511628211ull;
		snprintf(etag, sizeof etag, "\"%s-%llu-%c%016llx\"", m->gm->etag_base,
		         (unsigned long long)s->serial, members ? 'm' : 'd', (unsigned long long)h);
	}
	if (*etag && etag_matches(sg_http_req_header(r, "if-none-match"), etag)) {
		docs_put(s);
		sg_http_resp_header(r, "ETag", etag);
		sg_http_resp_status(r, 304);
		sg_http_resp_body(r, NULL, 0, NULL);
		return SG_HTTP_DONE;
	}
	struct sg_buf b = SG_BUF_INIT;
	sg_err e = sg_buf_appends(&b, "[");
	size_t cnt = 0;
	for (size_t i = 0; s && e == SG_OK && i < s->n; i++) {
		const struct gm_doc *d = s->v[i];
		if (!sg_gm_doc_matches(d->body, gid, sid) || !visible(&rd, d->body))
			continue;
		if (cnt++)
			e = sg_buf_append(&b, ",", 1);
		if (e == SG_OK)
			e = members ? sg_buf_append(&b, d->mtext, d->mlen)
			            : sg_buf_append(&b, d->text, d->len);
	}
	if (e == SG_OK)
		e = sg_buf_append(&b, "]", 1);
	docs_put(s);
	strv_free(rd.svcs, rd.nsvcs);
	if (e != SG_OK) {
		problem(r, 503, "SERVICE_UNAVAILABLE", NULL, "out of memory");
	} else {
		if (*etag)
			sg_http_resp_header(r, "ETag", etag);
		sg_http_resp_status(r, 200);
		sg_http_resp_body(r, b.data, b.len, "application/json");
	}
	sg_buf_free(&b);
	return SG_HTTP_DONE;
}

/* RetrieveIndValGroupDoc: GET /group-documents/{groupDocId}[?group-members=&group-configuration=]
 */
static enum sg_http_result h_get(struct sg_http_req *r, void *arg)
{
	struct gm_mount *m = arg;
	int members, configuration;
	if (query_bool(r, "group-members", &members) ||
	    query_bool(r, "group-configuration", &configuration))
		return SG_HTTP_DONE;
	struct gm_reader rd;
	if (reader_init(m, r, &rd))
		return SG_HTTP_DONE;
	const char *id = sg_http_req_param(r, "groupDocId");
	struct gm_docs *s = docs_get(m->gm);
	int found = 0;
	size_t at = id ? docs_find(s, id, &found) : 0;
	const struct gm_doc *d = found ? s->v[at] : NULL;
	if (!d || !visible(&rd, d->body)) {
		not_found(r);
	} else if (!members && !configuration) {
		sg_http_resp_status(r, 200);
		sg_http_resp_body(r, d->text, d->len, "application/json");
	} else {
		json_t *j = sg_gm_doc_project(d->body, members, configuration);
		if (j)
			sg_http_resp_json(r, 200, j); /* takes the reference */
		else
			problem(r, 503, "SERVICE_UNAVAILABLE", NULL, "out of memory");
	}
	docs_put(s);
	strv_free(rd.svcs, rd.nsvcs);
	return SG_HTTP_DONE;
}

/* ---- writes (on the pool, durable before the answer) ------------------------------------ */

enum gm_op { GM_CREATE, GM_PUT, GM_PATCH, GM_DELETE };

struct gm_job {
	struct sg_http_req *r;
	struct gm_mount *m;
	enum gm_op op;
	char *id, *owner;   /* owner: the VAL server writing */
	char *stored_owner; /* PUT/PATCH/DELETE: the VAL server that created the document */
	size_t stored_size; /* ... and the size of its JSON now */
	char **svcs;        /* the VAL server's VAL services */
	size_t nsvcs;
	json_t *body; /* create/put: the validated document; patch: the merge patch */
	/* results */
	int status;
	const char *cause;
	char msg[256];
	struct sg_gm_check chk;
	struct gm_doc *out; /* the document as stored (create, put, patch) */
	char location[600];
};

static void job_free(struct gm_job *j)
{
	free(j->id);
	free(j->owner);
	free(j->stored_owner);
	strv_free(j->svcs, j->nsvcs);
	json_decref(j->body);
	doc_put(j->out);
	free(j);
}

static sg_err job_refuse(struct gm_job *j, int status, const char *cause, const char *msg)
{
	j->status = status;
	j->cause = cause;
	snprintf(j->msg, sizeof j->msg, "%s", msg);
	return SG_ERR_DENIED;
}

/* The stored document j->id as the VAL server may write it: 404 when absent or not one of its
 * VAL services' groups, 403 when it may read but not write it. */
static sg_err load_writable(struct sg_store *st, struct gm_job *j, json_t **doc)
{
	struct sg_store_gm_doc row = {0};
	sg_err e = sg_store_gm_get(st, j->id, &row);
	*doc = NULL;
	if (e == SG_ERR_NOTFOUND)
		return job_refuse(j, 404, "RESOURCE_NOT_FOUND", "no such VAL group document");
	if (e != SG_OK)
		return e;
	*doc = json_loads(row.body, 0, NULL);
	j->stored_size = strlen(row.body);
	free(j->stored_owner);
	j->stored_owner = row.owner;
	row.owner = NULL;
	sg_store_gm_clear(&row);
	if (!*doc)
		return SG_ERR_INTERNAL;
	if (!sg_gm_services_overlap(*doc, j->svcs, j->nsvcs))
		e = job_refuse(j, 404, "RESOURCE_NOT_FOUND", "no such VAL group document");
	else if (!sg_gm_services_within(*doc, j->svcs, j->nsvcs))
		e = job_refuse(j, 403, "OPERATION_NOT_ALLOWED",
		               "the group has VAL services this VAL server does not serve");
	if (e != SG_OK) {
		json_decref(*doc);
		*doc = NULL;
	}
	return e;
}

static sg_err store_doc(struct sg_store *st, struct gm_job *j, json_t *doc, int create)
{
	/* one group document per valGroupId: the key management server keys a group by it
	 * (docs/km-protocol.md), so a second document of the same id, of another VAL server's
	 * services say, would take that group's members their key */
	const char *vgid = json_string_value(json_object_get(doc, "valGroupId"));
	int taken = 0;
	sg_err e = sg_store_gm_group_taken(st, vgid, create ? "" : j->id, &taken);
	if (e != SG_OK)
		return e;
	if (taken)
		return job_refuse(j, 403, "OPERATION_NOT_ALLOWED",
		                  "another group document has this valGroupId");
	/* G4: what one VAL server keeps here is bounded, and with it what the key management
	 * server reads of every group's membership at once (km.gm_max_mib; docs/gm.md) */
	const struct sg_conf_gm *q = &j->m->gm->conf->gm;
	size_t nm = json_array_size(json_object_get(doc, "members"));
	if (nm > q->max_members) {
		memset(&j->chk, 0, sizeof j->chk);
		snprintf(j->chk.v[0].param, sizeof j->chk.v[0].param, "/members");
		snprintf(j->chk.v[0].reason, sizeof j->chk.v[0].reason,
		         "at most %u members per group document here", q->max_members);
		j->chk.n = 1;
		return job_refuse(j, 400, "INVALID_MSG_FORMAT", "the group has too many members");
	}
	char *s = json_dumps(doc, JSON_COMPACT);
	if (!s)
		return SG_ERR_NOMEM;
	/* the quota is the owner's, the VAL server that created the document, whoever writes it
	 * (another VAL server serving all of its VAL services may: docs/gm.md rule 4); a change
	 * that does not grow the document is never refused for it */
	const char *owner = create ? j->owner : j->stored_owner;
	size_t len = strlen(s);
	uint64_t docs = 0, bytes = 0;
	e = owner ? sg_store_gm_owner_usage(st, owner, create ? "" : j->id, &docs, &bytes)
	          : SG_ERR_INTERNAL;
	if (e == SG_OK && create && docs >= q->max_docs_per_server)
		e = job_refuse(j, 429, "TOO_MANY_REQUESTS",
		               "this VAL server has as many group documents as it may have");
	else if (e == SG_OK && bytes + len > q->max_bytes_per_server &&
	         (create || len > j->stored_size))
		e = job_refuse(j, 429, "TOO_MANY_REQUESTS",
		               "the group documents of the VAL server that created this one would "
		               "exceed its size quota");
	if (e != SG_OK) {
		free(s);
		return e;
	}
	struct sg_store_gm_doc row = {
	    .doc_id = j->id, .owner = (char *)owner, .val_group_id = (char *)vgid, .body = s};
	e = sg_store_gm_put(st, &row, create);
	free(s);
	if (e == SG_OK && !(j->out = doc_new(j->id, owner, json_incref(doc))))
		e = SG_ERR_NOMEM;
	return e;
}

static sg_err job_run(struct sg_store *st, void *arg)
{
	struct gm_job *j = arg;
	sg_err e = SG_OK;
	json_t *doc = NULL, *next = NULL;
	switch (j->op) {
	case GM_CREATE:
		for (int tries = 0; tries < 3; tries++) {
			char id[32];
			if ((e = sg_random_token(id, sizeof id, 16)) != SG_OK)
				return e;
			free(j->id);
			if (!(j->id = strdup(id)))
				return SG_ERR_NOMEM;
			if ((e = store_doc(st, j, j->body, 1)) != SG_ERR_EXISTS)
				break;
		}
		if (e == SG_OK)
			j->status = 201;
		break;
	case GM_PUT:
		if ((e = load_writable(st, j, &doc)) == SG_OK &&
		    (e = store_doc(st, j, j->body, 0)) == SG_OK)
			j->status = 200;
		break;
	case GM_PATCH:
		if ((e = load_writable(st, j, &doc)) != SG_OK)
			break;
		if (sg_gm_doc_patch(doc, j->body, &next, &j->chk) != 0) {
			/* nothing is written: the patch would leave an invalid document */
			e = job_refuse(j, 400, "INVALID_MSG_FORMAT",
			               "the merge patch would leave an invalid VALGroupDocument");
		} else if (!sg_gm_services_within(next, j->svcs, j->nsvcs)) {
			e = job_refuse(j, 403, "OPERATION_NOT_ALLOWED",
			               "valServiceIds may name only VAL services this VAL server "
			               "serves");
		} else if ((e = store_doc(st, j, next, 0)) == SG_OK) {
			j->status = 200;
		}
		break;
	case GM_DELETE:
		if ((e = load_writable(st, j, &doc)) == SG_OK &&
		    (e = sg_store_gm_delete(st, j->id)) == SG_OK)
			j->status = 204;
		break;
	}
	json_decref(doc);
	json_decref(next);
	if (e == SG_OK) {
		static const char *const act[] = {"gm.create", "gm.update", "gm.modify",
		                                  "gm.delete"};
		char actor[300];
		snprintf(actor, sizeof actor, "valserver:%s", j->owner);
		struct sg_store_audit a = {.ts = sg_now_ms(),
		                           .actor = actor,
		                           .action = (char *)act[j->op],
		                           .object = j->id,
		                           .refpoint = j->m->rp->name};
		e = sg_store_audit_append(st, &a);
	}
	return e;
}

static void job_done(sg_err rc, void *arg)
{
	struct gm_job *j = arg;
	struct sg_http_req *r = j->r;
	if (j->status >= 400) {
		problem(r, j->status, j->cause, j->chk.n ? &j->chk : NULL, "%s", j->msg);
	} else if (rc != SG_OK || !j->status) {
		problem(r, 503, "SERVICE_UNAVAILABLE", NULL, "the store is unavailable");
	} else {
		/* durable: the snapshot follows at once (read-your-writes on this server) */
		if (j->op == GM_DELETE) {
			docs_apply(j->m->gm, j->id, NULL);
		} else {
			atomic_fetch_add(&j->out->refs, 1);
			docs_apply(j->m->gm, j->id, j->out);
		}
		if (j->status == 204) {
			sg_http_resp_status(r, 204);
			sg_http_resp_body(r, NULL, 0, NULL);
		} else {
			if (j->status == 201) {
				/* TS 29.549: 201 with the URI of the new resource in Location */
				snprintf(j->location + strlen(j->location),
				         sizeof j->location - strlen(j->location), "/%s", j->id);
				sg_http_resp_header(r, "Location", j->location);
			}
			sg_http_resp_status(r, j->status);
			sg_http_resp_body(r, j->out->text, j->out->len, "application/json");
		}
	}
	job_free(j);
	sg_http_req_finish(r);
}

/* {apiRoot}/ss-gm/v1/group-documents for Location (TS 29.549 §6.5 apiRoot): the authority
 * the client used (Host, or :authority on HTTP/2) when it is a plain host[:port], else the
 * listener's bind address. */
static void collection_uri(struct gm_mount *m, struct sg_http_req *r, char *out, size_t len)
{
	snprintf(out, len, "https://%s" GM_BASE, sg_http_req_authority(r, m->rp->bind));
}

/* CreateValGroupDoc (POST), UpdateIndValGroupDoc (PUT), ModifyIndValGroupDoc (PATCH),
 * DeleteIndValGroupDoc (DELETE). */
static enum sg_http_result h_write(struct sg_http_req *r, void *arg)
{
	struct gm_mount *m = arg;
	const char *method = sg_http_req_method(r);
	const char *id = sg_http_req_param(r, "groupDocId");
	struct gm_job *j = calloc(1, sizeof *j);
	if (!j) {
		problem(r, 503, "SERVICE_UNAVAILABLE", NULL, "out of memory");
		return SG_HTTP_DONE;
	}
	j->r = r;
	j->m = m;
	j->op = !strcmp(method, "POST")    ? GM_CREATE
	        : !strcmp(method, "PUT")   ? GM_PUT
	        : !strcmp(method, "PATCH") ? GM_PATCH
	                                   : GM_DELETE;
	const struct sg_principal *p = sg_principal_of(r);
	if (val_server_services(m->gm, r, p, &j->svcs, &j->nsvcs))
		goto done;
	if (!(j->owner = strdup(p->client_id)) || (id && !(j->id = strdup(id)))) {
		problem(r, 503, "SERVICE_UNAVAILABLE", NULL, "out of memory");
		goto done;
	}
	if (id && !sg_gm_doc_id_ok(id)) {
		not_found(r);
		goto done;
	}
	if (j->op != GM_DELETE) {
		json_t *b = sg_http_req_json_as(
		    r, j->op == GM_PATCH ? "application/merge-patch+json" : "application/json");
		if (!b)
			goto done; /* answered: 415 or 400 */
		if (j->op == GM_PATCH) {
			j->body = b;
		} else {
			int rc = sg_gm_doc_validate(b, &j->body, &j->chk);
			json_decref(b);
			if (rc) {
				problem(r, 400, "INVALID_MSG_FORMAT", &j->chk,
				        "the body is not a valid VALGroupDocument");
				goto done;
			}
			if (!sg_gm_services_within(j->body, j->svcs, j->nsvcs)) {
				problem(r, 403, "OPERATION_NOT_ALLOWED", NULL,
				        "a VAL server manages the groups of the VAL services it "
				        "serves: valServiceIds must list only those (and at least "
				        "one)");
				goto done;
			}
		}
	}
	if (j->op == GM_CREATE)
		collection_uri(m, r, j->location, sizeof j->location);
	if (sg_store_pool_submit(m->gm->pool, job_run, j, job_done, j, sg_http_req_loop(r)) !=
	    SG_OK) {
		problem(r, 503, "SERVICE_UNAVAILABLE", NULL, "the store is unavailable");
		goto done;
	}
	return SG_HTTP_ASYNC;
done:
	job_free(j);
	return SG_HTTP_DONE;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

sg_err sg_gm_new(const struct sg_conf *conf, struct sg_gm **out, char *err, size_t errlen)
{
	*out = NULL;
	struct sg_gm *gm = calloc(1, sizeof *gm);
	if (!gm)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	gm->conf = conf;
	if (sg_random_token(gm->etag_base, sizeof gm->etag_base, 9) != SG_OK) {
		free(gm);
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "gm: no random bytes");
	}
	pthread_mutex_init(&gm->mu, NULL);
	atomic_init(&gm->busy, 0);
	const char *driver = conf->store_driver ? conf->store_driver : "sqlite";
	const char *where = !strcmp(driver, "postgres") ? conf->store_url : conf->store_path;
	sg_err e = sg_store_pool_create(driver, where, GM_POOL_THREADS, &gm->pool, err, errlen);
	struct sg_store *st = NULL;
	if (e == SG_OK)
		e = sg_store_open(driver, where, &st, err, errlen);
	if (e == SG_OK && (e = upkeep(gm, st)) != SG_OK)
		sg_fail(err, errlen, e, "gm: loading group documents: %s", sg_store_last_error());
	sg_store_close(st);
	if (e != SG_OK) {
		sg_gm_free(gm);
		return e;
	}
	sg_log_info("gm: %zu group documents loaded", gm->docs ? gm->docs->n : 0);
	*out = gm;
	return SG_OK;
}

void sg_gm_free(struct sg_gm *gm)
{
	if (!gm)
		return;
	sg_store_pool_destroy(gm->pool);
	docs_put(gm->docs);
	sg_store_vals_unref(gm->vals);
	for (size_t i = 0; i < gm->nmounts; i++)
		free(gm->mounts[i]);
	free(gm->mounts);
	pthread_mutex_destroy(&gm->mu);
	free(gm);
}

sg_err sg_gm_mount(struct sg_gm *gm, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                   char *err, size_t errlen)
{
	int ue;
	if (rp->auth_mode == SG_AUTH_BEARER)
		ue = 1; /* SEAL-UU (GM-UU): UEs, reads only */
	else if (rp->auth_mode == SG_AUTH_MTLS_BEARER)
		ue = 0; /* SEAL-S: VAL servers */
	else if (rp->auth_mode == SG_AUTH_MTLS)
		ue = 2; /* SEAL-E as SEAL-X1: SEAL servers (the KM server), one read-only route */
	else
		return SG_OK; /* nothing on auth none */
	struct gm_mount *m = calloc(1, sizeof *m);
	struct gm_mount **v = m ? realloc(gm->mounts, (gm->nmounts + 1) * sizeof *v) : NULL;
	if (!v) {
		free(m);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	gm->mounts = v;
	v[gm->nmounts++] = m;
	m->gm = gm;
	m->rp = rp;
	m->ue = ue;
	const struct {
		const char *method, *path;
		sg_http_handler h;
		int write;
	} routes[] = {
	    {"GET", GM_BASE, h_list, 0},
	    {"GET", GM_BASE "/{groupDocId}", h_get, 0},
	    {"POST", GM_BASE, h_write, 1},
	    {"PUT", GM_BASE "/{groupDocId}", h_write, 1},
	    {"PATCH", GM_BASE "/{groupDocId}", h_write, 1},
	    {"DELETE", GM_BASE "/{groupDocId}", h_write, 1},
	};
	if (ue == 2) {
		/* RetrieveValGroupDocs only; certificate only (no token on SEAL-E) */
		sg_err e = sg_policy_route(rt, "GET", GM_BASE, NULL, NULL, h_list, m);
		return e == SG_OK ? SG_OK
		                  : sg_fail(err, errlen, e, "gm: route GET %s on %s: %s", GM_BASE,
		                            rp->name, sg_err_str(e));
	}
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		if (routes[i].write && ue)
			continue;
		sg_err e = sg_policy_route(rt, routes[i].method, routes[i].path, SG_GM_AUDIENCE,
		                           SG_GM_SCOPE, routes[i].h, m);
		if (e != SG_OK)
			return sg_fail(err, errlen, e, "gm: route %s %s on %s: %s",
			               routes[i].method, routes[i].path, rp->name, sg_err_str(e));
	}
	return SG_OK;
}
