/* store/upkeep.c: what `sealguard serve` deletes on its own (store.h, "upkeep"): authorization
 * codes, refresh tokens and revocations no longer needed (sg_store_purge: once expired, and
 * those whose replay still revokes a grant a day after their own expiry), key versions never
 * released again, and audit rows past the retention (audit.retention_days, audit.max_rows).
 *
 * Runs on a thread of its own with its own connection, hourly (the first run shortly after the
 * start), in transactions of at most UPKEEP_BATCH rows with a pause between them, so that the
 * writers of the SEAL functions wait for the database's write lock at most one short batch at a
 * time, however much there is to delete (the first run after an upgrade, say). */
#include "base/clock.h"
#include "base/log.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define UPKEEP_BATCH    2000
#define UPKEEP_PAUSE_MS 20

struct sg_store_upkeep {
	struct sg_store_upkeep_conf c;
	char *driver, *path;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop; /* under mu */
	atomic_uint_fast64_t expired, audit;
};

/* Waits ms or until stopped; 1 when stopped. */
static int pause_ms(struct sg_store_upkeep *u, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&u->mu);
	while (!u->stop && pthread_cond_timedwait(&u->cv, &u->mu, &ts) != ETIMEDOUT)
		;
	int stop = u->stop;
	pthread_mutex_unlock(&u->mu);
	return stop;
}

/* One kind of deletion in batches until a batch comes back short; 1 when stopped. */
static int drain(struct sg_store_upkeep *u, struct sg_store *st, int audit, uint64_t *total)
{
	for (;;) {
		int64_t now = sg_now_ms();
		uint64_t n = 0;
		sg_err e =
		    audit ? sg_store_audit_prune(
		                st, u->c.audit_retention_ms ? now - u->c.audit_retention_ms : 0,
		                u->c.audit_max_rows, UPKEEP_BATCH, &n)
		          : sg_store_purge(st, now, UPKEEP_BATCH, &n);
		if (e != SG_OK) {
			sg_log_warn("store upkeep: %s failed, tried again in an hour: %s",
			            audit ? "audit retention" : "deleting expired rows",
			            sg_store_last_error());
			return 0;
		}
		*total += n;
		atomic_fetch_add(audit ? &u->audit : &u->expired, n);
		/* purge deletes up to a batch of each kind: n < a batch, all were drained */
		if (n < UPKEEP_BATCH)
			return 0;
		if (pause_ms(u, UPKEEP_PAUSE_MS))
			return 1;
	}
}

static void *upkeep_main(void *arg)
{
	struct sg_store_upkeep *u = arg;
	struct sg_store *st = NULL;
	char err[512] = "";
	for (int64_t wait = u->c.first_ms; !pause_ms(u, wait); wait = u->c.interval_ms) {
		if (!st && sg_store_open(u->driver, u->path, &st, err, sizeof err) != SG_OK) {
			sg_log_warn(
			    "store upkeep: cannot open the store, tried again in an hour: %s", err);
			continue;
		}
		uint64_t expired = 0, audit = 0;
		int stopped = drain(u, st, 0, &expired) || drain(u, st, 1, &audit);
		if (expired || audit)
			sg_log_info("store upkeep: deleted %llu expired codes, refresh tokens, "
			            "revocations and key versions, and %llu audit rows (retention "
			            "%lld days, at most "
			            "%llu rows)",
			            (unsigned long long)expired, (unsigned long long)audit,
			            (long long)(u->c.audit_retention_ms / 86400000),
			            (unsigned long long)u->c.audit_max_rows);
		if (stopped)
			break;
	}
	sg_store_close(st);
	return NULL;
}

sg_err sg_store_upkeep_start(const struct sg_store_upkeep_conf *c, struct sg_store_upkeep **out,
                             char *err, size_t errlen)
{
	*out = NULL;
	if (!c || !c->driver || !c->path || !c->interval_ms)
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "store upkeep: driver, path and interval are required");
	struct sg_store_upkeep *u = calloc(1, sizeof *u);
	if (!u)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "store upkeep: out of memory");
	u->c = *c;
	u->driver = strdup(c->driver);
	u->path = strdup(c->path);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int ok = u->driver && u->path && pthread_mutex_init(&u->mu, NULL) == 0;
	if (ok && pthread_cond_init(&u->cv, &ca) != 0) {
		pthread_mutex_destroy(&u->mu);
		ok = 0;
	}
	pthread_condattr_destroy(&ca);
	if (ok && pthread_create(&u->thread, NULL, upkeep_main, u) != 0) {
		pthread_cond_destroy(&u->cv);
		pthread_mutex_destroy(&u->mu);
		ok = 0;
	}
	if (!ok) {
		free(u->driver);
		free(u->path);
		free(u);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "store upkeep: cannot start its thread");
	}
	*out = u;
	return SG_OK;
}

void sg_store_upkeep_totals(struct sg_store_upkeep *u, uint64_t *expired, uint64_t *audit)
{
	*expired = u ? atomic_load(&u->expired) : 0;
	*audit = u ? atomic_load(&u->audit) : 0;
}

void sg_store_upkeep_stop(struct sg_store_upkeep *u)
{
	if (!u)
		return;
	pthread_mutex_lock(&u->mu);
	u->stop = 1;
	pthread_cond_signal(&u->cv);
	pthread_mutex_unlock(&u->mu);
	pthread_join(u->thread, NULL);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	free(u->driver);
	free(u->path);
	free(u);
}
