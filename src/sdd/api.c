/* sdd/api.c: SEALDD-S sdd-trans and connection status subscriptions (TS 29.548), their
 * notifications, and SEALDD-UU flow signalling (docs/sdd-protocol.md §2). */
#include "sdd/internal.h"

#include "base/json.h"

#include <time.h>

/* ---- notifications (TS 29.548 ConnStatusNotif over mutual TLS; 204 expected) ----
 * SEALDD-S is protected as SEAL-S (TS 33.434 Rel-18 G6, R3): each notification is POSTed to the
 * subscription's notifUri with this server's own certificate. What one VAL server subscribes to
 * cannot take delivery from the others (G4): the pending notifications are bounded in all and
 * per VAL server (s->nq, NOTIF_MAX_QUEUED / NOTIF_MAX_PER_OWNER; the excess is dropped, counted
 * and summarized in the log), NOTIF_WORKERS threads deliver them, one VAL server's one at a time
 * and in order, and only a transport failure, 5xx or 429 is retried. A worker makes one try and
 * moves on: the retry waits in the queue (sg_sdd_notifq_retry), so VAL servers whose endpoints
 * do not answer take one try's time each from the workers, in turn with the others, never a
 * worker for a whole backoff. docs/sdd-protocol.md §1. */

static struct subsc *subsc_find_locked(struct sg_sdd *s, const char *id, const char *owner,
                                       const char *identity, int64_t now_ms);
static const char *registered_identity_locked(struct sg_sdd *s, const char *owner,
                                              const char **why);
static const char *val_identity_locked(struct sg_sdd *s, struct sg_http_req *r,
                                       const struct sg_principal *p, const char **why);

/* Called with nmu held: one more notification dropped by a bound of the queue. Logged as one
 * summary line at most every NOTIF_DROP_LOG_MS, never once per notification. */
static void notif_drop_nlocked(struct sg_sdd *s, const char *owner, const char *why)
{
	atomic_fetch_add(&s->notif_dropped, 1);
	s->ndrop_unlogged++;
	int64_t now = sg_now_ms();
	if (now < s->ndrop_next_log_ms)
		return;
	sg_log_warn(
	    "sdd: notification queue bound %s reached: %llu notifications dropped since the "
	    "last report (the latest for VAL server %s); %zu pending, %llu dropped in all",
	    why, s->ndrop_unlogged, owner, s->nq.n,
	    (unsigned long long)atomic_load(&s->notif_dropped));
	s->ndrop_unlogged = 0;
	s->ndrop_next_log_ms = now + NOTIF_DROP_LOG_MS;
}

/* Called with mu held: 1 when a notification for owner would be queued, else counts it dropped
 * (so that one that would be dropped is not even built). */
static int notif_admits_locked(struct sg_sdd *s, const char *owner)
{
	pthread_mutex_lock(&s->nmu);
	int ok = sg_sdd_notifq_admits(&s->nq, owner);
	if (!ok)
		notif_drop_nlocked(s, owner,
		                   s->nq.n >= s->nq.max_total ? "max_total" : "max_per_owner");
	pthread_mutex_unlock(&s->nmu);
	return ok;
}

/* Called with mu held. O(1) under nmu while the queue has room (a full one looks through its
 * owners for a suspect one's notification to drop, proto.h). The entry holds the body and the
 * subscription id only: the notifUri is read at each try. */
static void notif_enqueue_locked(struct sg_sdd *s, const struct subsc *sub, json_t *reports)
{
	json_t *n = json_pack("{s:s, s:O}", "subscriptionId", sub->id, "reports", reports);
	char *text = n ? json_dumps(n, JSON_COMPACT) : NULL;
	json_decref(n);
	if (!text) {
		atomic_fetch_add(&s->notif_failed, 1);
		return;
	}
	const char *why = NULL;
	pthread_mutex_lock(&s->nmu);
	uint64_t evicted = s->nq.evicted;
	int rc = sg_sdd_notifq_push(&s->nq, sub->owner, sub->id, text, &why);
	if (rc == 0 && s->nq.evicted != evicted)
		notif_drop_nlocked(
		    s, s->nq.evicted_owner,
		    "max_total, room made by dropping a notification of a VAL server "
		    "whose endpoint does not answer");
	if (rc == 0)
		pthread_cond_broadcast(&s->ncv); /* idle workers wait on ncv */
	else if (rc > 0)
		notif_drop_nlocked(s, sub->owner, why);
	pthread_mutex_unlock(&s->nmu);
	if (rc != 0)
		free(text);
	if (rc < 0)
		atomic_fetch_add(&s->notif_failed, 1);
}

static int str_in_array(const json_t *a, const char *s)
{
	size_t i;
	const json_t *e;
	json_array_foreach(a, i, e) if (json_is_string(e) &&
	                                strcmp(json_string_value(e), s) == 0) return 1;
	return 0;
}

/* The reports of a ConnStatusNotif for event on rt's flow (the same for every subscription). */
static json_t *notif_reports(const struct sg_sdd *s, const struct frt *rt, const char *event)
{
	json_t *rep = json_pack("{s:s, s:{s:s}, s:s}", "event", event, "valTgtUe", "valUserId",
	                        rt->val_user_id, "valServiceId", rt->f->val_service_id);
	if (rep && strcmp(event, "ESTABLISHED") == 0) {
		int64_t left = (rt->f->expires_ms - sg_now_ms()) / 1000;
		json_object_set_new(rep, "connEstData",
		                    json_pack("{s:o, s:I}", "ddServerConnInfo",
		                              sg_sdd_conninfo(s->host, (unsigned)s->port),
		                              "comLifetime", (json_int_t)(left > 0 ? left : 0)));
	}
	json_t *reports = json_array();
	if (!rep || !reports || json_array_append_new(reports, rep) != 0) {
		json_decref(reports);
		return NULL;
	}
	return reports;
}

/* Called with mu held: every subscription of the transmission's VAL server that matches. Each
 * subscription has at most SG_SDD_SUBSC_MAX_EVENTS events (proto.c), so this is O(subscriptions)
 * with a small constant. */
void sdd_notify_locked(struct sg_sdd *s, const struct frt *rt, const char *event)
{
	json_t *reports = NULL; /* built at the first match */
	int64_t now = sg_now_ms();
	const char *why = NULL;
	const char *identity = registered_identity_locked(s, rt->owner, &why);
	/* a flow relayed for another certificate identity of that name (removed and added again
	 * with another one since) is not the registered principal's business */
	if (identity && strcmp(identity, rt->identity) != 0)
		identity = NULL;
	for (struct subsc *sub = s->subs; sub && identity; sub = sub->next) {
		/* only the live subscriptions of the VAL server as it is registered now, and as its
		 * flow's transmission was bound */
		if (strcmp(sub->owner, rt->owner) != 0 || sub->expires_ms <= now ||
		    strcmp(sub->identity, identity) != 0)
			continue;
		const json_t *b = sub->body;
		if (!str_in_array(json_object_get(b, "events"), event))
			continue;
		const char *svc = json_string_value(json_object_get(b, "valServiceId"));
		if (svc && strcmp(svc, rt->f->val_service_id) != 0)
			continue;
		const json_t *tu = json_object_get(b, "valTgtUe");
		const char *uid = json_string_value(json_object_get(tu, "valUserId"));
		if (tu && (!uid || strcmp(uid, rt->val_user_id) != 0))
			continue;
		if (!notif_admits_locked(s, sub->owner))
			continue;
		if (!reports && !(reports = notif_reports(s, rt, event))) {
			atomic_fetch_add(&s->notif_failed, 1);
			continue;
		}
		notif_enqueue_locked(s, sub, reports);
	}
	json_decref(reports);
}

enum notif_result { NOTIF_SENT, NOTIF_FAILED, NOTIF_RETRY, NOTIF_CANCELLED };

/* One try of n (nmu not held). The subscription must still exist, else the notification is
 * cancelled (a deleted subscription gets nothing more), and its current notifUri is used
 * (PUT/PATCH may have changed it); mu is taken for that, never with nmu held. 204 is success
 * (TS 29.548); a transport failure, 5xx or 429 may be tried again (NOTIF_RETRY); any other
 * status fails at once (a 4xx will not change by retrying). */
static enum notif_result notif_try(struct sg_sdd *s, struct sg_http_client *cl,
                                   struct sg_sdd_notif *n, long *status, char *err, size_t errlen)
{
	static const char *const H[] = {"Content-Type: application/json", NULL};
	*status = 0; /* 0: transport failure (err says why) */
	err[0] = '\0';
	pthread_mutex_lock(&s->mu);
	const struct subsc *sub =
	    subsc_find_locked(s, n->sid, sg_sdd_notif_owner(n), NULL, sg_now_ms());
	const char *u = sub ? json_string_value(json_object_get(sub->body, "notifUri")) : NULL;
	int exists = sub != NULL;
	char *url = u ? strdup(u) : NULL;
	/* R3 both ways: the notifUri's server must authenticate as the subscribing VAL server
	 * (the certificate identity it subscribed with, still its registered one), so this
	 * server's client certificate is never presented to, nor the notification sent to,
	 * anyone else */
	const char *why = NULL;
	const char *reg =
	    exists ? registered_identity_locked(s, sg_sdd_notif_owner(n), &why) : NULL;
	if (reg && strcmp(reg, sub->identity) != 0) {
		reg = NULL;
		why = "the VAL server is registered with another certificate identity now";
	}
	char *identity = reg ? strdup(reg) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!exists) {
		free(url);
		free(identity);
		return NOTIF_CANCELLED;
	}
	if (!url || !cl || !identity || sg_http_client_set_peer_identity(cl, identity) != SG_OK) {
		snprintf(err, errlen, "%s",
		         !cl         ? "no notification client"
		         : why       ? why
		         : !identity ? "the VAL server has no certificate identity"
		                     : "out of memory");
		free(url);
		free(identity);
		return NOTIF_FAILED;
	}
	free(identity);
	n->tries++;
	struct sg_http_response resp = {0};
	if (sg_http_client_request(cl, "POST", url, H, n->body, strlen(n->body), &resp, err,
	                           errlen) == SG_OK)
		*status = resp.status;
	sg_http_response_free(&resp);
	free(url);
	if (*status == 204)
		return NOTIF_SENT;
	if (*status && *status != 429 && *status < 500)
		return NOTIF_FAILED;
	return NOTIF_RETRY;
}

/* Called with nmu held: the next notification to try, waiting for one (or for the soonest
 * retry to fall due); NULL once stop is set. */
static struct sg_sdd_notif *notif_next_nlocked(struct sg_sdd *s)
{
	for (;;) {
		if (atomic_load(&s->stop))
			return NULL;
		struct sg_sdd_notif *n = sg_sdd_notifq_take(&s->nq, sg_mono_ms());
		if (n)
			return n;
		int64_t due = sg_sdd_notifq_next_due(&s->nq);
		if (due < 0) {
			pthread_cond_wait(&s->ncv, &s->nmu);
		} else {
			int64_t wait = due - sg_mono_ms();
			struct timespec until =
			    sg_deadline_in_ms(CLOCK_MONOTONIC, wait > 0 ? (unsigned)wait : 0);
			pthread_cond_timedwait(&s->ncv, &s->nmu, &until);
		}
	}
}

void *sdd_notif_main(void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_conf *c = s->conf;
	struct sg_http_client_conf hc = {
	    .tls = {.mode = SG_TLS_MUTUAL,
	            .cert = c->resource.client_cert,
	            .key = c->resource.client_key,
	            .ca = c->resource.ca,
	            .crl = c->resource.crl},
	    .connect_timeout_ms = 3000,
	    .timeout_ms = 5000,
	    .max_response_bytes = 64 * 1024,
	};
	char err[256];
	struct sg_http_client *cl = NULL; /* one per worker: a client is not shared */
	if (sg_http_client_new(&hc, &cl, err, sizeof err) != SG_OK)
		sg_log_error("sdd: notification client: %s (notifications will fail)", err);
	else
		sg_http_client_set_cancel(cl, &s->stop); /* a try in flight ends with the server */
	for (;;) {
		pthread_mutex_lock(&s->nmu);
		struct sg_sdd_notif *n = notif_next_nlocked(s);
		pthread_mutex_unlock(&s->nmu);
		if (!n)
			break; /* stop: what is queued is freed by sg_sdd_free */
		long status;
		int before = n->tries;
		enum notif_result r = notif_try(s, cl, n, &status, err, sizeof err);
		/* the endpoint answered (1), did not (0), or was not tried (-1) */
		int answered = n->tries == before ? -1 : status && status != 429 && status < 500;
		if (r == NOTIF_RETRY && (n->tries >= NOTIF_TRIES || atomic_load(&s->stop)))
			r = NOTIF_FAILED;
		switch (r) {
		case NOTIF_SENT:
			atomic_fetch_add(&s->notif_sent, 1);
			break;
		case NOTIF_CANCELLED:
			atomic_fetch_add(&s->notif_cancelled, 1);
			break;
		case NOTIF_RETRY:
			break;
		case NOTIF_FAILED:
			atomic_fetch_add(&s->notif_failed, 1);
			if (!atomic_load(&s->stop))
				sg_log_warn(
				    "sdd: notification for subscription %s of VAL server %s "
				    "not delivered after %d tries (last status %ld%s%s); %llu "
				    "failed so far",
				    n->sid, sg_sdd_notif_owner(n), n->tries, status,
				    err[0] ? ": " : "", err,
				    (unsigned long long)atomic_load(&s->notif_failed));
			break;
		}
		pthread_mutex_lock(&s->nmu);
		if (r == NOTIF_RETRY) /* the owner waits out of the round robin; no worker waits */
			sg_sdd_notifq_retry(&s->nq, n,
			                    sg_mono_ms() +
			                        ((int64_t)NOTIF_BACKOFF_MS << (n->tries - 1)));
		else
			sg_sdd_notifq_done(&s->nq, n, answered); /* the owner's next is ready */
		pthread_cond_broadcast(&s->ncv);
		pthread_mutex_unlock(&s->nmu);
	}
	sg_http_client_free(cl);
	return NULL;
}

/* ---- HTTP: SEALDD-S sdd-trans (TS 29.548) ---- */

static void problem(struct sg_http_req *r, int status, const char *cause, const char *detail,
                    const struct sg_sdd_check *chk)
{
	json_t *p = sg_sdd_problem(status, cause, detail, chk);
	if (!p) {
		sg_http_resp_problem(r, 500, NULL, "out of memory");
		return;
	}
	char *text = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	if (!text) {
		sg_http_resp_problem(r, 500, NULL, "out of memory");
		return;
	}
	sg_http_resp_status(r, status);
	sg_http_resp_body(r, text, strlen(text), "application/problem+json");
	free(text);
}

void sdd_trans_free(struct trans *t)
{
	if (!t)
		return;
	free(t->svc);
	free(t->client_id);
	free(t->identity);
	free(t->val_user_id);
	free(t->val_ue_id);
	free(t);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

void sdd_subsc_free(struct subsc *x)
{
	if (!x)
		return;
	free(x->owner);
	free(x->identity);
	json_decref(x->body);
	free(x);
}

/* A subscription as answered: its canonical body and its expTime (TS 29.548 ConnStatusSubsc,
 * readOnly: set by this server). NULL when out of memory. */
static json_t *subsc_json(const json_t *body, int64_t expires_ms)
{
	char t[40];
	sg_time_iso8601(t, sizeof t, expires_ms);
	json_t *o = json_deep_copy(body);
	if (o && json_object_set_new(o, "expTime", json_string(t)) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The in-memory transmission of a TransReq (TS 29.548) requested by VAL server client_id with
 * certificate identity: 0, 1 when req breaks the schema (chk says why), -1 out of memory. Used
 * for a request and for a stored TransReq at start. */
static int trans_build(const json_t *req, int urllc, const char *client_id, const char *identity,
                       struct trans **out, struct sg_sdd_check *chk)
{
	struct sg_sdd_target tgt;
	*out = NULL;
	if (sg_sdd_transreq_validate(req, &tgt, chk) != 0)
		return 1;
	const json_t *tu = json_object_get(req, "valTargetId");
	const char *uid = json_string_value(json_object_get(tu, "valUserId"));
	const char *ueid = json_string_value(json_object_get(tu, "valUeId"));
	struct trans *t = calloc(1, sizeof *t);
	if (!t)
		return -1;
	t->svc = strdup(json_string_value(json_object_get(req, "valServiceId")));
	t->client_id = strdup(client_id);
	t->identity = strdup(identity);
	t->val_user_id = dup_or_null(uid);
	t->val_ue_id = dup_or_null(ueid);
	t->urllc = urllc;
	t->tgt = tgt;
	if (!t->svc || !t->client_id || !t->identity || (uid && !t->val_user_id) ||
	    (ueid && !t->val_ue_id)) {
		sdd_trans_free(t);
		return -1;
	}
	*out = t;
	return 0;
}

/* Called with mu held: installs t as the transmission of its VAL service, replacing (and
 * freeing) the earlier one: one transmission per VAL service. */
static void trans_install_locked(struct sg_sdd *s, struct trans *t)
{
	struct trans **pp = &s->trans;
	while (*pp && strcmp((*pp)->svc, t->svc) != 0)
		pp = &(*pp)->next;
	if (*pp && strcmp((*pp)->client_id, t->client_id) != 0)
		sg_log_info("sdd: VAL server %s takes over VAL service %s from VAL server %s",
		            t->client_id, t->svc, (*pp)->client_id);
	if (*pp) {
		t->next = (*pp)->next;
		sdd_trans_free(*pp);
		*pp = t;
	} else {
		t->next = s->trans;
		s->trans = t;
	}
}

/* ---- durable writes (acknowledged writes survive a crash: DESIGN.md §5) ----
 * Every create/replace/update/delete of a transmission or subscription runs on the store
 * pool's writer and is answered only after its transaction committed (SQLite WAL,
 * synchronous=FULL). The completion runs on the writer thread, in commit order, and applies
 * the change to the in-memory tables there (prepared beforehand, so applying cannot fail);
 * then the answer goes to the request's loop. A refused or failed write answers 4xx / 503 and
 * leaves both the store and the tables as they were. */

enum wop { W_TRANS, W_SUB_CREATE, W_SUB_PUT, W_SUB_PATCH, W_SUB_DELETE };

struct wjob {
	struct sg_sdd *s;
	struct sg_http_req *r;
	struct event *ev; /* on r's loop: the answer */
	enum wop op;
	char *owner;     /* the VAL server (client_id) */
	char *identity;  /* subscriptions: the VAL server's certificate identity they belong to */
	int64_t now;     /* subscriptions: when the request came (wall clock ms) */
	int64_t expires; /* create/PUT/PATCH: the new expiry (wall clock ms) */
	char id[32];     /* subscription id */
	char tt[8];      /* W_TRANS: transType */
	char *text;      /* W_TRANS: the TransReq as stored */
	struct trans *t; /* W_TRANS: installed once durable */
	struct subsc *x; /* W_SUB_CREATE: installed once durable (id and body set then) */
	json_t *body;    /* create/PUT: the canonical body; PATCH: the merge patch */
	json_t *next;    /* create/PUT/PATCH: the body installed once durable (then the old one) */
	const char *refpoint;
	/* result */
	int status;
	const char *cause, *detail;
	struct sg_sdd_check chk;
	json_t *out; /* the answer's body */
	char location[512];
};

static void wjob_free(struct wjob *j)
{
	if (j->ev)
		event_free(j->ev);
	free(j->owner);
	free(j->identity);
	free(j->text);
	sdd_trans_free(j->t);
	sdd_subsc_free(j->x);
	json_decref(j->body);
	json_decref(j->next);
	json_decref(j->out);
	free(j);
}

static sg_err wjob_refuse(struct wjob *j, int status, const char *cause, const char *detail)
{
	j->status = status;
	j->cause = cause;
	j->detail = detail;
	return SG_ERR_DENIED; /* rolls the job's savepoint back */
}

/* The new canonical body of subscription j->id: PUT takes j->body; PATCH merges j->body (RFC
 * 7396, ConnStatusSubscPatch members only) into the stored one, read in this transaction. */
static sg_err subsc_next(struct sg_store *st, struct wjob *j)
{
	struct sg_store_sdd_subsc row;
	sg_err e = sg_store_sdd_subsc_get(st, j->id, j->owner, j->identity, j->now, &row);
	if (e == SG_ERR_NOTFOUND)
		return wjob_refuse(j, 404, "RESOURCE_NOT_FOUND", "no such subscription");
	if (e != SG_OK)
		return e;
	json_t *next = NULL;
	if (j->op == W_SUB_PUT) {
		next = json_incref(j->body);
	} else {
		static const char *const PK[] = {"events", "valServiceId", "valTgtUe",
		                                 "valServerConnInfo", "notifUri"};
		/* RFC 7396 (merge-patch+json): members of valServerConnInfo and valTgtUe are
		 * merged too; members outside ConnStatusSubscPatch are ignored */
		json_t *stored = json_loads(row.body, 0, NULL), *patch = json_object();
		const char *k;
		json_t *v;
		json_object_foreach(j->body, k, v)
		{
			for (size_t i = 0; i < sizeof PK / sizeof PK[0]; i++)
				if (patch && strcmp(k, PK[i]) == 0 && json_object_set(patch, k, v))
					e = SG_ERR_NOMEM;
		}
		next = stored && patch ? sg_json_merge_patch(stored, patch) : NULL;
		json_decref(stored);
		json_decref(patch);
	}
	sg_store_sdd_subsc_clear(&row);
	if (!next || e != SG_OK) {
		json_decref(next);
		return SG_ERR_NOMEM;
	}
	if (sg_sdd_subsc_validate(next, &j->chk) != 0) {
		json_decref(next);
		return wjob_refuse(j, 400, "INVALID_MSG_FORMAT",
		                   "the subscription does not follow TS 29.548");
	}
	j->next = sg_sdd_subsc_canon(next);
	json_decref(next);
	return j->next ? SG_OK : SG_ERR_NOMEM;
}

static sg_err wjob_run(struct sg_store *st, void *arg)
{
	struct wjob *j = arg;
	sg_err e = SG_OK;
	char *text = NULL;
	switch (j->op) {
	case W_TRANS: {
		struct sg_store_sdd_trans row = {.val_service = j->t->svc,
		                                 .client_id = j->t->client_id,
		                                 .identity = j->t->identity,
		                                 .trans_type = j->tt,
		                                 .body = j->text};
		if ((e = sg_store_sdd_trans_put(st, &row)) == SG_OK)
			j->status = 200;
		break;
	}
	case W_SUB_CREATE: {
		/* the limits are checked in the write transaction that adds the row, so that
		 * concurrent creations cannot pass them together */
		const struct sg_conf_sdd *lim = &j->s->conf->sdd;
		size_t mine = 0, all = 0;
		/* what nobody can reach any more does not count: the expired, and this VAL
		 * server name's subscriptions of another certificate identity */
		if ((e = sg_store_sdd_subsc_purge(st, j->now, j->owner, j->identity, NULL)) !=
		        SG_OK ||
		    (e = sg_store_sdd_subsc_count(st, j->owner, &mine)) != SG_OK ||
		    (e = sg_store_sdd_subsc_count(st, NULL, &all)) != SG_OK)
			break;
		if (mine >= lim->max_subsc_per_server) {
			e = wjob_refuse(j, 429, "TOO_MANY_REQUESTS",
			                "this VAL server has as many subscriptions as it may have");
			break;
		}
		if (all >= lim->max_subsc) {
			e = wjob_refuse(
			    j, 429, "TOO_MANY_REQUESTS",
			    "the SEALDD server has as many subscriptions as it may have");
			break;
		}
		j->next = json_incref(j->body);
		if (!(text = json_dumps(j->next, JSON_COMPACT | JSON_SORT_KEYS))) {
			e = SG_ERR_NOMEM;
			break;
		}
		for (int tries = 0; tries < 3; tries++) {
			if ((e = sg_random_token(j->id, sizeof j->id, 16)) != SG_OK)
				break;
			struct sg_store_sdd_subsc row = {.subsc_id = j->id,
			                                 .owner = j->owner,
			                                 .identity = j->identity,
			                                 .body = text,
			                                 .expires_at = j->expires};
			if ((e = sg_store_sdd_subsc_put(st, &row, 1)) != SG_ERR_EXISTS)
				break;
		}
		if (e == SG_OK)
			j->status = 201;
		break;
	}
	case W_SUB_PUT:
	case W_SUB_PATCH:
		if ((e = subsc_next(st, j)) != SG_OK)
			break;
		if (!(text = json_dumps(j->next, JSON_COMPACT | JSON_SORT_KEYS))) {
			e = SG_ERR_NOMEM;
			break;
		}
		struct sg_store_sdd_subsc row = {.subsc_id = j->id,
		                                 .owner = j->owner,
		                                 .identity = j->identity,
		                                 .body = text,
		                                 .expires_at = j->expires};
		if ((e = sg_store_sdd_subsc_put(st, &row, 0)) == SG_ERR_NOTFOUND)
			e = wjob_refuse(j, 404, "RESOURCE_NOT_FOUND", "no such subscription");
		else if (e == SG_OK)
			j->status = 200;
		break;
	case W_SUB_DELETE:
		e = sg_store_sdd_subsc_delete(st, j->id, j->owner, j->identity, j->now);
		if (e == SG_ERR_NOTFOUND)
			e = wjob_refuse(j, 404, "RESOURCE_NOT_FOUND", "no such subscription");
		else if (e == SG_OK)
			j->status = 204;
		break;
	}
	free(text);
	/* the answer's body, prepared here so that applying the write cannot fail */
	if (e == SG_OK && (j->op == W_SUB_CREATE || j->op == W_SUB_PUT || j->op == W_SUB_PATCH) &&
	    !(j->out = subsc_json(j->next, j->expires)))
		e = SG_ERR_NOMEM;
	if (e == SG_OK) {
		static const char *const act[] = {"sdd.trans", "sdd.subsc.create",
		                                  "sdd.subsc.update", "sdd.subsc.modify",
		                                  "sdd.subsc.delete"};
		char actor[300];
		snprintf(actor, sizeof actor, "valserver:%s", j->owner);
		struct sg_store_audit a = {.ts = sg_now_ms(),
		                           .actor = actor,
		                           .action = (char *)act[j->op],
		                           .object = j->op == W_TRANS ? j->t->svc : j->id,
		                           .refpoint = (char *)j->refpoint};
		e = sg_store_audit_append(st, &a);
	}
	return e;
}

/* Called with mu held: the subscription id of owner (and of identity, unless NULL) live at
 * now_ms, or NULL. */
static struct subsc *subsc_find_locked(struct sg_sdd *s, const char *id, const char *owner,
                                       const char *identity, int64_t now_ms)
{
	for (struct subsc *x = s->subs; x; x = x->next)
		if (strcmp(x->id, id) == 0 && strcmp(x->owner, owner) == 0)
			return x->expires_ms > now_ms &&
			               (!identity || strcmp(x->identity, identity) == 0)
			           ? x
			           : NULL;
	return NULL;
}

/* Called with mu held: the certificate identity owner is registered (and enabled) with now,
 * or NULL (*why says why). */
static const char *registered_identity_locked(struct sg_sdd *s, const char *owner, const char **why)
{
	if (sdd_vals_registered_locked(s, owner, why) != 0)
		return NULL;
	const struct sg_store_valserver *v = sg_store_vals_find(s->vals, owner);
	if (!v || !v->identity) {
		*why = "the VAL server has no certificate identity";
		return NULL;
	}
	return v->identity;
}

#define SWEEP_OWNERS 16 /* removed VAL servers whose subscriptions one sweep deletes */

static int owner_in(const char *owner, char *const *owners, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(owners[i], owner) == 0)
			return 1;
	return 0;
}

/* Called with mu held: unlinks what sg_store_sdd_subsc_purge(now_ms, owner, identity) deleted
 * (expired at now_ms; owner given: owner's of another identity), and every subscription of the
 * removed VAL servers removed[0..nremoved) (sg_store_sdd_subsc_delete_owner), and returns them as a
 * list to free with subsc_free_list. */
static struct subsc *subsc_unlink_purged_locked(struct sg_sdd *s, int64_t now_ms, const char *owner,
                                                const char *identity, char *const *removed,
                                                size_t nremoved)
{
	struct subsc *gone = NULL;
	for (struct subsc **pp = &s->subs; *pp;) {
		struct subsc *x = *pp;
		if (x->expires_ms <= now_ms ||
		    (owner && strcmp(x->owner, owner) == 0 && strcmp(x->identity, identity) != 0) ||
		    owner_in(x->owner, removed, nremoved)) {
			*pp = x->next;
			x->next = gone;
			gone = x;
			s->nsubs--;
		} else {
			pp = &x->next;
		}
	}
	return gone;
}

static void subsc_free_list(struct subsc *gone)
{
	while (gone) {
		struct subsc *x = gone;
		gone = x->next;
		sdd_subsc_free(x);
	}
}

/* ---- subscriptions nobody can reach: deleted from the store, then from the table ----
 * Expired ones, and those of VAL servers removed from the registry (`valserver remove`): such
 * a VAL server has no token any more, so it can neither read nor delete them, and they would
 * count against sdd.max_subscriptions until they expire (up to a year). A disabled VAL server
 * stays in the registry and keeps them. */

struct sweepjob {
	struct sg_sdd *s;
	int64_t now;
	size_t nremoved;
	char *removed[SWEEP_OWNERS];
	size_t deleted[SWEEP_OWNERS]; /* the store's count, for the log */
};

static void sweepjob_free(struct sweepjob *j)
{
	for (size_t i = 0; j && i < j->nremoved; i++)
		free(j->removed[i]);
	free(j);
}

static sg_err sweep_run(struct sg_store *st, void *arg)
{
	struct sweepjob *j = arg;
	sg_err e = sg_store_sdd_subsc_purge(st, j->now, NULL, NULL, NULL);
	for (size_t i = 0; e == SG_OK && i < j->nremoved; i++)
		e = sg_store_sdd_subsc_delete_owner(st, j->removed[i], &j->deleted[i]);
	return e;
}

static void sweep_applied(sg_err rc, void *arg)
{
	struct sweepjob *j = arg;
	struct sg_sdd *s = j->s;
	struct subsc *gone = NULL;
	if (rc == SG_OK) { /* as the store deleted them (else both keep them, for the next) */
		pthread_mutex_lock(&s->mu);
		gone = subsc_unlink_purged_locked(s, j->now, NULL, NULL, j->removed, j->nremoved);
		pthread_mutex_unlock(&s->mu);
		for (size_t i = 0; i < j->nremoved; i++)
			sg_log_info("sdd: VAL server %s was removed from the registry: its %zu "
			            "subscriptions deleted",
			            j->removed[i], j->deleted[i]);
	}
	subsc_free_list(gone);
	atomic_store(&s->subsc_sweeping, 0);
	sweepjob_free(j);
}

void sdd_subsc_sweep(struct sg_sdd *s)
{
	pthread_mutex_lock(&s->mu);
	uint64_t gen = s->vals ? sg_store_vals_gen(s->vals) : 0;
	pthread_mutex_unlock(&s->mu);
	if (gen != s->subsc_swept_gen)
		s->next_subsc_sweep_ms = 0; /* the registry changed: a VAL server may be gone */
	if (!sdd_job_due(s, &s->next_subsc_sweep_ms, SUBSC_SWEEP_MS, &s->subsc_sweeping))
		return;
	int64_t now = sg_now_ms();
	int any = 0, more = 0;
	struct sweepjob *j = calloc(1, sizeof *j);
	pthread_mutex_lock(&s->mu);
	gen = s->vals ? sg_store_vals_gen(s->vals) : 0;
	for (const struct subsc *x = s->subs; x && j; x = x->next) {
		any |= x->expires_ms <= now;
		if (!s->vals || sg_store_vals_find(s->vals, x->owner) ||
		    owner_in(x->owner, j->removed, j->nremoved))
			continue;
		if (j->nremoved == SWEEP_OWNERS) {
			more = 1; /* the next tick goes on */
			continue;
		}
		if ((j->removed[j->nremoved] = strdup(x->owner)))
			j->nremoved++;
		else
			more = 1;
	}
	pthread_mutex_unlock(&s->mu);
	if (j && !more)
		s->subsc_swept_gen = gen;
	else
		s->next_subsc_sweep_ms = 0;
	if (j && (any || j->nremoved)) {
		j->s = s;
		j->now = now;
		if (sg_store_pool_submit(s->pool, sweep_run, j, sweep_applied, j, NULL) == SG_OK)
			return;
	}
	sweepjob_free(j);
	atomic_store(&s->subsc_sweeping, 0);
}

/* On the store writer, in commit order: applies a durable write to the tables (nothing here
 * allocates), then hands the answer to the request's loop. */
static void wjob_applied(sg_err rc, void *arg)
{
	struct wjob *j = arg;
	struct sg_sdd *s = j->s;
	struct subsc *gone = NULL;
	if (j->status >= 400) {
		/* refused: nothing was written */
	} else if (rc != SG_OK || !j->status) {
		sg_log_warn("sdd: a SEALDD-S write of VAL server %s failed, nothing changed: %s",
		            j->owner, sg_store_last_error());
		j->status = 503;
		j->cause = "SERVICE_UNAVAILABLE";
		j->detail = "the store is unavailable: nothing was changed";
	} else {
		pthread_mutex_lock(&s->mu);
		switch (j->op) {
		case W_TRANS:
			sg_log_info(
			    "sdd: VAL server %s requested %s transmission for VAL service %s",
			    j->owner, j->tt, j->t->svc);
			trans_install_locked(s, j->t);
			j->t = NULL;
			break;
		case W_SUB_CREATE:
			/* as the store purged them */
			gone =
			    subsc_unlink_purged_locked(s, j->now, j->owner, j->identity, NULL, 0);
			memcpy(j->x->id, j->id, sizeof j->x->id);
			j->x->body = j->next;
			j->x->expires_ms = j->expires;
			j->next = NULL;
			j->x->next = s->subs;
			s->subs = j->x;
			s->nsubs++;
			j->x = NULL;
			break;
		case W_SUB_PUT:
		case W_SUB_PATCH: {
			/* absent: a later delete committed and was applied before */
			struct subsc *x = subsc_find_locked(s, j->id, j->owner, j->identity, 0);
			if (x) {
				json_t *old = x->body;
				x->body = j->next;
				x->expires_ms = j->expires;
				j->next = old;
			}
			break;
		}
		case W_SUB_DELETE: {
			struct subsc **pp = &s->subs;
			while (*pp && !(strcmp((*pp)->id, j->id) == 0 &&
			                strcmp((*pp)->owner, j->owner) == 0))
				pp = &(*pp)->next;
			if ((gone = *pp)) {
				*pp = gone->next;
				gone->next = NULL;
				s->nsubs--;
			}
			break;
		}
		}
		pthread_mutex_unlock(&s->mu);
	}
	subsc_free_list(gone);
	/* thread safe (evthread is on: the pool turned it on): r's loop answers */
	event_active(j->ev, EV_TIMEOUT, 1);
}

/* On the request's loop: the answer. */
static void wjob_reply(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct wjob *j = arg;
	struct sg_http_req *r = j->r;
	if (j->status >= 400) {
		problem(r, j->status, j->cause, j->detail, j->chk.n ? &j->chk : NULL);
	} else if (j->status == 204) {
		sg_http_resp_status(r, 204);
		sg_http_resp_body(r, NULL, 0, NULL);
	} else if (j->op == W_TRANS) {
		json_t *resp = json_pack("{s:o}", "ddServerConnInfo",
		                         sg_sdd_conninfo(j->s->host, (unsigned)j->s->port));
		sg_http_resp_json(r, 200, resp);
	} else {
		if (j->status == 201) {
			/* TS 29.548: 201 with the URI of the new resource in Location */
			snprintf(j->location + strlen(j->location),
			         sizeof j->location - strlen(j->location), "/%s", j->id);
			sg_http_resp_header(r, "Location", j->location);
		}
		sg_http_resp_json(r, j->status, j->out);
		j->out = NULL;
	}
	wjob_free(j);
	sg_http_req_finish(r);
}

static struct wjob *wjob_new(struct sg_sdd *s, struct sg_http_req *r, enum wop op,
                             const struct sg_principal *p)
{
	struct wjob *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->s = s;
	j->r = r;
	j->op = op;
	j->refpoint = sg_http_req_refpoint(r);
	j->now = sg_now_ms();
	j->expires = j->now + (int64_t)s->conf->sdd.subscription_lifetime_s * 1000;
	j->ev = event_new(sg_http_req_loop(r), -1, 0, wjob_reply, j);
	if (!j->ev || !(j->owner = strdup(p->client_id))) {
		wjob_free(j);
		return NULL;
	}
	return j;
}

/* Queues j on the store writer; SG_HTTP_ASYNC, or the 503 answer when it cannot. */
static enum sg_http_result wjob_submit(struct wjob *j)
{
	struct sg_http_req *r = j->r;
	if (!j->s->pool ||
	    sg_store_pool_submit(j->s->pool, wjob_run, j, wjob_applied, j, NULL) != SG_OK) {
		wjob_free(j);
		problem(r, 503, "SERVICE_UNAVAILABLE", "the store is unavailable", NULL);
		return SG_HTTP_DONE;
	}
	return SG_HTTP_ASYNC;
}

static enum sg_http_result h_request_trans(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p = sg_principal_of(r);
	const char *tt = sg_http_req_param(r, "transType");
	if (!tt || (strcmp(tt, "regular") != 0 && strcmp(tt, "urllc") != 0)) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "transType must be regular or urllc", NULL);
		return SG_HTTP_DONE;
	}
	if (!p || p->kind != SG_PRINCIPAL_VAL_SERVER || !p->client_id || !p->cert_identity) {
		problem(r, 403, "UNAUTHORIZED_IDENTITY",
		        "only VAL servers may request transmission", NULL);
		return SG_HTTP_DONE;
	}
	json_t *req = sg_http_req_json(r);
	if (!req)
		return SG_HTTP_DONE;
	struct sg_sdd_check chk;
	struct trans *t = NULL;
	int rc =
	    trans_build(req, strcmp(tt, "urllc") == 0, p->client_id, p->cert_identity, &t, &chk);
	/* stored as received (validated), so that a restart rebuilds it with trans_build */
	char *text = rc == 0 ? json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(req);
	if (rc > 0) {
		problem(r, 400, "INVALID_MSG_FORMAT", "the TransReq does not follow TS 29.548",
		        &chk);
		return SG_HTTP_DONE;
	}
	struct wjob *j = rc == 0 && text ? wjob_new(s, r, W_TRANS, p) : NULL;
	if (!j) {
		sdd_trans_free(t);
		free(text);
		problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	j->t = t;
	j->text = text;
	snprintf(j->tt, sizeof j->tt, "%s", tt);
	/* D2: only a VAL server registered for the VAL service may have its data relayed (the
	 * registry snapshot, refreshed off the loops when the store's generation changes) */
	pthread_mutex_lock(&s->mu);
	const char *why = NULL;
	char *reg = NULL;
	int serves = sdd_vals_serves_locked(s, t->client_id, t->svc, &why);
	if (serves == 0) {
		/* the relay demands the registered identity, whatever SAN came first */
		const char *id = val_identity_locked(s, r, p, &why);
		serves = !id || !(reg = strdup(id)) ? -1 : 0;
	}
	pthread_mutex_unlock(&s->mu);
	if (serves != 0) {
		wjob_free(j);
		problem(r, 403, "OPERATION_NOT_ALLOWED", why ? why : "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	free(t->identity);
	t->identity = reg;
	/* one transmission per VAL service: the latest request of a VAL server registered for it
	 * replaces the earlier one (flows already established keep their relay); answered once
	 * stored */
	return wjob_submit(j);
}

/* ---- HTTP: connection status subscriptions ---- */

static int val_server_of(struct sg_http_req *r, const struct sg_principal **out)
{
	const struct sg_principal *p = sg_principal_of(r);
	if (!p || p->kind != SG_PRINCIPAL_VAL_SERVER || !p->client_id || !p->cert_identity) {
		problem(r, 403, "UNAUTHORIZED_IDENTITY",
		        "only VAL servers authenticated by their certificate may subscribe", NULL);
		return -1;
	}
	*out = p;
	return 0;
}

/* Called with mu held: the certificate identity VAL server p is registered (and enabled) with,
 * when r's client certificate carries it among its SANs (in any place, as the token endpoint
 * accepts it), else NULL and *why. Requests, transmissions and subscriptions are bound to this
 * identity, never to whichever SAN the certificate lists first. */
static const char *val_identity_locked(struct sg_sdd *s, struct sg_http_req *r,
                                       const struct sg_principal *p, const char **why)
{
	const char *reg = registered_identity_locked(s, p->client_id, why);
	if (reg && !sg_tls_principal_has_san(sg_http_req_tls_principal(r), reg)) {
		*why = "the client certificate does not carry the VAL server's registered identity";
		return NULL;
	}
	return reg;
}

/* Called with mu held: subscription id of VAL server p, live, and reachable by r: r's client
 * certificate carries the identity the subscription was made with and, to change it (live
 * = 1), that identity is still the VAL server's registered one (a VAL server removed or
 * disabled may still read and delete what it holds). NULL: 404 for the caller. */
static struct subsc *subsc_reachable_locked(struct sg_sdd *s, struct sg_http_req *r,
                                            const struct sg_principal *p, const char *id,
                                            int change)
{
	struct subsc *x = subsc_find_locked(s, id, p->client_id, NULL, sg_now_ms());
	if (!x || !sg_tls_principal_has_san(sg_http_req_tls_principal(r), x->identity))
		return NULL;
	const char *why = NULL;
	const char *reg = change ? registered_identity_locked(s, p->client_id, &why) : NULL;
	return !change || (reg && strcmp(reg, x->identity) == 0) ? x : NULL;
}

static enum sg_http_result h_subsc_create(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	/* only a VAL server registered and enabled creates; the subscription is bound to its
	 * registered identity */
	const char *why = NULL;
	pthread_mutex_lock(&s->mu);
	const char *reg = val_identity_locked(s, r, p, &why);
	char *identity = reg ? strdup(reg) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!reg) {
		problem(r, 403, "OPERATION_NOT_ALLOWED", why, NULL);
		return SG_HTTP_DONE;
	}
	json_t *body = sg_http_req_json(r);
	if (!body) {
		free(identity);
		return SG_HTTP_DONE;
	}
	struct sg_sdd_check chk;
	if (sg_sdd_subsc_validate(body, &chk) != 0) {
		json_decref(body);
		free(identity);
		problem(r, 400, "INVALID_MSG_FORMAT",
		        "the ConnStatusSubsc does not follow TS 29.548", &chk);
		return SG_HTTP_DONE;
	}
	struct wjob *j = wjob_new(s, r, W_SUB_CREATE, p);
	if (j) {
		j->identity = identity;
		identity = NULL;
		j->body = sg_sdd_subsc_canon(body);
		j->x = calloc(1, sizeof *j->x);
		if (j->x) {
			j->x->owner = strdup(p->client_id);
			j->x->identity = j->identity ? strdup(j->identity) : NULL;
		}
	}
	free(identity);
	json_decref(body);
	if (!j || !j->identity || !j->body || !j->x || !j->x->owner || !j->x->identity) {
		if (j)
			wjob_free(j);
		problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	/* {apiRoot}: the authority the VAL server addressed when it is a plain host[:port] of
	 * at most 255 bytes, so the id always fits (a long Host cut it off: the VAL server
	 * could not learn the id of a subscription that was stored) */
	snprintf(j->location, sizeof j->location, "https://%s/sdd-trans/v1/subscriptions",
	         sg_http_req_authority(r, "localhost"));
	return wjob_submit(j);
}

static enum sg_http_result h_subsc_get(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	const char *id = sg_http_req_param(r, "subscriptionId");
	pthread_mutex_lock(&s->mu);
	const struct subsc *x = id ? subsc_reachable_locked(s, r, p, id, 0) : NULL;
	json_t *out = x ? subsc_json(x->body, x->expires_ms) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!out) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such subscription", NULL);
		return SG_HTTP_DONE;
	}
	sg_http_resp_json(r, 200, out);
	return SG_HTTP_DONE;
}

/* PUT (replace), PATCH (RFC 7396 merge patch, ConnStatusSubscPatch members only) and DELETE.
 * The stored subscription is read, checked and written in one transaction on the writer. */
static enum sg_http_result subsc_change(struct sg_http_req *r, struct sg_sdd *s, enum wop op)
{
	const struct sg_principal *p;
	if (val_server_of(r, &p))
		return SG_HTTP_DONE;
	const char *id = sg_http_req_param(r, "subscriptionId");
	if (!id || strlen(id) >= sizeof((struct wjob *)0)->id) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such subscription", NULL);
		return SG_HTTP_DONE;
	}
	if (op != W_SUB_DELETE) { /* only a VAL server registered and enabled changes */
		const char *why = NULL;
		pthread_mutex_lock(&s->mu);
		int registered = registered_identity_locked(s, p->client_id, &why) != NULL;
		pthread_mutex_unlock(&s->mu);
		if (!registered) {
			problem(r, 403, "OPERATION_NOT_ALLOWED", why, NULL);
			return SG_HTTP_DONE;
		}
	}
	json_t *body = NULL;
	if (op != W_SUB_DELETE &&
	    !(body = sg_http_req_json_as(r, op == W_SUB_PATCH ? "application/merge-patch+json"
	                                                      : "application/json")))
		return SG_HTTP_DONE;
	struct sg_sdd_check chk = {0};
	if (op == W_SUB_PATCH && !json_is_object(body)) {
		chk.n = 1;
		snprintf(chk.v[0].param, sizeof chk.v[0].param, "/");
		snprintf(chk.v[0].reason, sizeof chk.v[0].reason, "must be a JSON object");
	}
	if (chk.n || (op == W_SUB_PUT && sg_sdd_subsc_validate(body, &chk) != 0)) {
		json_decref(body);
		problem(r, 400, "INVALID_MSG_FORMAT", "the subscription does not follow TS 29.548",
		        &chk);
		return SG_HTTP_DONE;
	}
	/* the identity it was made with, which the writer's transaction checks again */
	pthread_mutex_lock(&s->mu);
	const struct subsc *x = subsc_reachable_locked(s, r, p, id, op != W_SUB_DELETE);
	char *identity = x ? strdup(x->identity) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!x) {
		json_decref(body);
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such subscription", NULL);
		return SG_HTTP_DONE;
	}
	struct wjob *j = wjob_new(s, r, op, p);
	if (j) {
		snprintf(j->id, sizeof j->id, "%s", id);
		j->identity = identity;
		identity = NULL;
		j->body = op == W_SUB_PUT ? sg_sdd_subsc_canon(body) : json_incref(body);
	}
	free(identity);
	json_decref(body);
	if (!j || !j->identity || (op != W_SUB_DELETE && !j->body)) {
		if (j)
			wjob_free(j);
		problem(r, 503, "SERVICE_UNAVAILABLE", "out of memory", NULL);
		return SG_HTTP_DONE;
	}
	return wjob_submit(j);
}

static enum sg_http_result h_subsc_put(struct sg_http_req *r, void *arg)
{
	return subsc_change(r, arg, W_SUB_PUT);
}

static enum sg_http_result h_subsc_patch(struct sg_http_req *r, void *arg)
{
	return subsc_change(r, arg, W_SUB_PATCH);
}

static enum sg_http_result h_subsc_delete(struct sg_http_req *r, void *arg)
{
	return subsc_change(r, arg, W_SUB_DELETE);
}

/* ---- state at start: what the store holds (sdd_state_load) ---- */

sg_err sdd_state_load(struct sg_sdd *s, struct sg_store *st, char *err, size_t errlen)
{
	struct sg_store_sdd_trans *tv = NULL;
	struct sg_store_sdd_subsc *sv = NULL;
	size_t tn = 0, sn = 0, ntrans = 0, skipped = 0, expired = 0, settled = 0;
	int64_t now = sg_now_ms();
	/* subscriptions from before expiries (schema 7) get the configured lifetime from now;
	 * those that expired while the server was down are deleted */
	sg_err e = sg_store_sdd_subsc_settle(
	    st, now + (int64_t)s->conf->sdd.subscription_lifetime_s * 1000, &settled);
	if (e == SG_OK)
		e = sg_store_sdd_subsc_purge(st, now, NULL, NULL, &expired);
	if (e == SG_OK)
		e = sg_store_sdd_trans_list(st, &tv, &tn);
	if (e == SG_OK)
		e = sg_store_sdd_subsc_list(st, NULL, &sv, &sn);
	if (e != SG_OK) {
		sg_store_sdd_trans_list_free(tv, tn);
		return sg_fail(err, errlen, e, "sdd: loading transmissions and subscriptions: %s",
		               sg_store_last_error());
	}
	for (size_t i = 0; e == SG_OK && i < tn; i++) {
		json_t *req = json_loads(tv[i].body, 0, NULL);
		struct sg_sdd_check chk;
		struct trans *t = NULL;
		int rc = req ? trans_build(req, strcmp(tv[i].trans_type, "urllc") == 0,
		                           tv[i].client_id, tv[i].identity, &t, &chk)
		             : 1;
		json_decref(req);
		if (rc < 0) {
			e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		} else if (rc > 0 || strcmp(t->svc, tv[i].val_service) != 0) {
			/* written by hand, not by sealguard: it authorizes nothing */
			sg_log_warn(
			    "sdd: the stored transmission for VAL service %s is not a valid "
			    "TransReq; ignored",
			    tv[i].val_service);
			sdd_trans_free(t);
			skipped++;
		} else {
			trans_install_locked(s, t);
			ntrans++;
		}
	}
	for (size_t i = 0; e == SG_OK && i < sn; i++) {
		json_t *b = json_loads(sv[i].body, 0, NULL);
		struct sg_sdd_check chk;
		if (!b || sg_sdd_subsc_validate(b, &chk) != 0 || !*sv[i].identity ||
		    strlen(sv[i].subsc_id) >= sizeof s->subs->id) {
			sg_log_warn(
			    "sdd: the stored subscription %s is not a valid ConnStatusSubsc of a "
			    "VAL server's certificate identity; ignored",
			    sv[i].subsc_id);
			json_decref(b);
			skipped++;
			continue;
		}
		if (sv[i].expires_at <= now) { /* expired since the purge above */
			json_decref(b);
			continue;
		}
		struct subsc *x = calloc(1, sizeof *x);
		if (!x || !(x->owner = strdup(sv[i].owner)) ||
		    !(x->identity = strdup(sv[i].identity))) {
			sdd_subsc_free(x);
			json_decref(b);
			e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
			break;
		}
		snprintf(x->id, sizeof x->id, "%s", sv[i].subsc_id);
		x->body = b;
		x->expires_ms = sv[i].expires_at;
		x->next = s->subs;
		s->subs = x;
		s->nsubs++;
	}
	if (e == SG_OK)
		sg_log_info("sdd: %zu transmissions and %zu subscriptions loaded (%zu expired "
		            "ones deleted, %zu given their first expiry)%s",
		            ntrans, s->nsubs, expired, settled,
		            skipped ? " (some ignored, see above)" : "");
	sg_store_sdd_trans_list_free(tv, tn);
	sg_store_sdd_subsc_list_free(sv, sn);
	return e;
}

/* ---- HTTP: SEALDD-UU flow signalling (docs/sdd-protocol.md §2) ---- */

/* Called with mu held: 1 when the registry still lets t's VAL server relay its VAL service
 * (registered, enabled, serving it, with the certificate identity that requested it). */
static int trans_authorized_locked(const struct sg_sdd *s, const struct trans *t)
{
	const char *why = NULL;
	if (sdd_vals_serves_locked(s, t->client_id, t->svc, &why) != 0)
		return 0;
	const struct sg_store_valserver *v = sg_store_vals_find(s->vals, t->client_id);
	return v && v->identity && strcmp(v->identity, t->identity) == 0;
}

static json_t *flow_json(const struct sg_sdd *s, const struct sg_sdd_flow *f)
{
	char id[SG_SDD_FLOW_TEXT_LEN + 1], exp[40];
	sg_sdd_flow_to_text(f->id, id);
	sg_time_iso8601(exp, sizeof exp, f->expires_ms);
	int64_t left = (f->expires_ms - sg_now_ms() + 999) / 1000;
	return json_pack("{s:s, s:s, s:s, s:o, s:I, s:s}", "sddFlowId", id, "valServiceId",
	                 f->val_service_id, "transType", f->urllc ? "urllc" : "regular",
	                 "ddServerConnInfo", sg_sdd_conninfo(s->host, (unsigned)s->port),
	                 "lifetime", (json_int_t)(left > 0 ? left : 0), "expiresAt", exp);
}

static enum sg_http_result h_flow_create(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	const struct sg_principal *p = sg_principal_of(r);
	if (!p || p->kind != SG_PRINCIPAL_UE || !p->sub) {
		problem(r, 403, "UNAUTHORIZED_IDENTITY", "a VAL user's token is required", NULL);
		return SG_HTTP_DONE;
	}
	json_t *body = sg_http_req_json(r);
	if (!body)
		return SG_HTTP_DONE;
	struct sg_sdd_check chk = {0};
	const json_t *sv = json_object_get(body, "valServiceId");
	if (!json_is_object(body) || !json_is_string(sv) || json_string_length(sv) == 0 ||
	    json_string_length(sv) > 255) {
		chk.n = 1;
		snprintf(chk.v[0].param, sizeof chk.v[0].param, "/valServiceId");
		snprintf(chk.v[0].reason, sizeof chk.v[0].reason,
		         "is required: a string of 1 to 255 characters");
		json_decref(body);
		problem(r, 400, "INVALID_MSG_FORMAT", "a flow request names its VAL service", &chk);
		return SG_HTTP_DONE;
	}
	char svc[256];
	snprintf(svc, sizeof svc, "%s", json_string_value(sv));
	json_decref(body);
	const char *uid = sg_principal_val_user_id(p, svc);
	pthread_mutex_lock(&s->mu);
	struct trans *t = s->trans;
	while (t && strcmp(t->svc, svc) != 0)
		t = t->next;
	int status = 0;
	const char *cause = NULL, *detail = NULL;
	if (!t) {
		status = 404, cause = "TRANSMISSION_NOT_REQUESTED";
		detail = "no VAL server requested SEALDD transmission for this VAL service";
	} else if (!trans_authorized_locked(s, t)) {
		/* D2 at every flow, not only at request-trans: a transmission (also one loaded from
		 * the store) whose VAL server was since removed, disabled, unregistered for the VAL
		 * service or registered with another certificate identity authorizes nothing */
		status = 404, cause = "TRANSMISSION_NOT_REQUESTED";
		detail = "the VAL server that requested transmission for this VAL service is no "
		         "longer registered for it";
	} else if (t->val_ue_id || (t->val_user_id && (!uid || strcmp(uid, t->val_user_id) != 0))) {
		/* TransReq.valTargetId limits the transmission to one VAL user (a valUeId target
		 * cannot be proven by a token, which carries VAL user ids only) */
		status = 403, cause = "OPERATION_NOT_ALLOWED";
		detail = "the transmission is for another VAL user";
	}
	struct frt *rt = status ? NULL : calloc(1, sizeof *rt);
	if (rt) {
		rt->s = s;
		rt->from_trans = 1;
		rt->tgt = t->tgt;
		rt->identity = strdup(t->identity);
		rt->owner = strdup(t->client_id);
		rt->val_user_id = strdup(uid ? uid : p->sub);
	}
	if (!status && (!rt || !rt->identity || !rt->owner || !rt->val_user_id))
		status = 503, cause = "SERVICE_UNAVAILABLE", detail = "out of memory";
	const char *why = NULL;
	struct sg_sdd_flow *f =
	    status ? NULL
	           : sg_sdd_flowtab_add(s->flows, p->sub, svc, t->urllc, sg_now_ms(),
	                                s->conf->sdd.flow_lifetime_s, &why);
	if (!status && !f) {
		if (why && !strcmp(why, "limit"))
			status = 429, cause = "TOO_MANY_FLOWS", detail = "flow limit reached";
		else
			status = 503, cause = "SERVICE_UNAVAILABLE", detail = "out of memory";
	}
	json_t *out = NULL;
	if (!status) {
		rt->f = f;
		f->rt = rt;
		rt = NULL;
		out = flow_json(s, f);
	}
	pthread_mutex_unlock(&s->mu);
	sdd_frt_free(rt);
	if (status) {
		problem(r, status, cause, detail, NULL);
		return SG_HTTP_DONE;
	}
	char loc[512];
	snprintf(loc, sizeof loc, "https://%s/sdd-flows/v1/flows/%s",
	         sg_http_req_authority(r, "localhost"),
	         json_string_value(json_object_get(out, "sddFlowId")));
	sg_http_resp_header(r, "Location", loc);
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_json(r, 201, out);
	return SG_HTTP_DONE;
}

static struct sg_sdd_flow *flow_of_req_locked(struct sg_sdd *s, struct sg_http_req *r)
{
	const struct sg_principal *p = sg_principal_of(r);
	uint8_t id[SG_SDD_FLOW_ID_LEN];
	if (!p || !p->sub || sg_sdd_flow_from_text(sg_http_req_param(r, "sddFlowId"), id) != 0)
		return NULL;
	return sg_sdd_flowtab_find(s->flows, id, p->sub);
}

static enum sg_http_result h_flow_get(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	pthread_mutex_lock(&s->mu);
	struct sg_sdd_flow *f = flow_of_req_locked(s, r);
	json_t *out = f ? flow_json(s, f) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!out) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such flow", NULL);
		return SG_HTTP_DONE;
	}
	sg_http_resp_header(r, "Cache-Control", "no-store");
	sg_http_resp_json(r, 200, out);
	return SG_HTTP_DONE;
}

static enum sg_http_result h_flow_delete(struct sg_http_req *r, void *arg)
{
	struct sg_sdd *s = arg;
	pthread_mutex_lock(&s->mu);
	struct sg_sdd_flow *f = flow_of_req_locked(s, r);
	if (f)
		sg_sdd_flowtab_release(s->flows, f); /* the data plane ends it within SWEEP_MS */
	pthread_mutex_unlock(&s->mu);
	if (!f) {
		problem(r, 404, "RESOURCE_NOT_FOUND", "no such flow", NULL);
		return SG_HTTP_DONE;
	}
	sg_http_resp_status(r, 204);
	return SG_HTTP_DONE;
}

sg_err sg_sdd_mount(struct sg_sdd *s, struct sg_router *rt, const struct sg_conf_refpoint *rp,
                    char *err, size_t errlen)
{
	sg_err e = SG_OK;
	if (rp->auth_mode == SG_AUTH_MTLS_BEARER) {
		/* SEALDD-S = SEAL-S (G6, D3, R3) */
		const struct {
			const char *m, *t;
			sg_http_handler h;
		} R[] = {
		    {"POST", "/sdd-trans/v1/{transType}/request-trans", h_request_trans},
		    {"POST", "/sdd-trans/v1/subscriptions", h_subsc_create},
		    {"GET", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_get},
		    {"PUT", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_put},
		    {"PATCH", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_patch},
		    {"DELETE", "/sdd-trans/v1/subscriptions/{subscriptionId}", h_subsc_delete},
		};
		for (size_t i = 0; e == SG_OK && i < sizeof R / sizeof R[0]; i++)
			e = sg_policy_route(rt, R[i].m, R[i].t, SG_SDD_AUDIENCE, SG_SDD_SCOPE,
			                    R[i].h, s);
	} else if (rp->auth_mode == SG_AUTH_MTLS) {
		e = sdd_ddc_mount(s, rt, rp, err, errlen); /* SEALDD-E = SEAL-E (D3, R4) */
	} else if (rp->auth_mode == SG_AUTH_BEARER) {
		/* SEALDD-UU = SEAL-UU (G6, D3, R1) */
		e = sg_policy_route(rt, "POST", "/sdd-flows/v1/flows", SG_SDD_AUDIENCE,
		                    SG_SDD_SCOPE, h_flow_create, s);
		if (e == SG_OK)
			e = sg_policy_route(rt, "GET", "/sdd-flows/v1/flows/{sddFlowId}",
			                    SG_SDD_AUDIENCE, SG_SDD_SCOPE, h_flow_get, s);
		if (e == SG_OK)
			e = sg_policy_route(rt, "DELETE", "/sdd-flows/v1/flows/{sddFlowId}",
			                    SG_SDD_AUDIENCE, SG_SDD_SCOPE, h_flow_delete, s);
	}
	if (e != SG_OK)
		return sg_fail(err, errlen, e, "%s: cannot add the SEALDD routes: %s", rp->name,
		               sg_err_str(e));
	return SG_OK;
}
