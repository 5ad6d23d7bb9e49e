/* store/pool.c: store jobs on worker threads, each with its own connection, so that an event
 * loop never waits on the disk (DESIGN.md §6). Completions go back to the submitting loop.
 *
 * One writer, several readers: write jobs go to one queue served by a single writer thread
 * (worker 0), read jobs to another served by the other workers (by worker 0 too when the pool
 * has one thread). With a single writer the pool's connections never compete for the
 * database's write lock (no busy-handler sleeps), and while the writer waits for an fsync the
 * next writes queue up behind it.
 * Group commit: the writer takes every queued write job (up to SG_POOL_BATCH) and runs them in
 * one transaction, each inside its own savepoint, so a burst of durable writes pays one fsync;
 * no completion is delivered before that transaction committed. Completions of a batch that go
 * to the same event loop are handed over together (one wake-up of that loop per batch).
 * Early hand-off: a job submitted with a ran callback hears, on its loop, that its body ran
 * while the batch's COMMIT and fsync are still under way, so the loop can prepare the answer
 * (sign the tokens of a code exchange) in parallel with the disk instead of after it.
 * Lazy jobs (no completion, an audit trail) wait up to SG_STORE_LAZY_MS for a batch to ride
 * along with, so a stream of them costs one commit per interval instead of one each.
 *
 * WAL checkpoints off the commit path (SQLite backend): SQLite's automatic checkpoint runs
 * inside the COMMIT that crosses 1,000 WAL pages, so one batch in every few hundred waited
 * for the copy of the pages into the database file and two more fsyncs. The writer's
 * connection has no automatic checkpoint; its WAL hook wakes a checkpointer thread with a
 * connection of its own, which runs PASSIVE checkpoints (they never block the writer or the
 * readers). Durability is unchanged: a commit is durable once its WAL frames are synced
 * (synchronous=FULL), whoever copies them later. Should the checkpointer fall behind (a reader
 * holding an old snapshot, a slow disk), the writer checkpoints itself past SG_POOL_CKPT_FORCE
 * pages, so the WAL stays bounded as before. */
#include "store/backend.h"

#include "base/clock.h"
#include "base/log.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SG_POOL_BATCH         64
#define SG_POOL_CKPT_PAGES    1000 /* wake the checkpointer (SQLite's default threshold) */
#define SG_POOL_CKPT_FORCE    8000 /* the writer checkpoints itself (~32 MB of WAL) */
#define SG_POOL_CKPT_PAUSE_MS 5    /* between two checkpoints: a few batches each, not one */

struct pool_job {
	struct pool_job *next;
	sg_store_job_fn fn;
	void *arg;
	sg_store_done_fn done;
	void *done_arg;
	struct event_base *notify;
	int read;
	sg_err rc;
	/* early hand-off: ran is called on notify's loop before the commit; the two flags are
	 * touched on that loop only, to call ran before done or not at all, and to free the job
	 * after the later of the two deliveries */
	sg_store_ran_fn ran;
	struct pool_job *ran_next;
	sg_err ran_rc;  /* the body's result as ran hears it (rc may still change) */
	int ran_posted; /* worker side */
	int ran_seen, done_seen;
	int64_t due_us; /* lazy jobs: run by then (sg_mono_us) */
};

struct pool_queue {
	struct pool_job *head, *tail;
};

struct pool_worker {
	struct sg_store_pool *pool;
	struct sg_store *st;
	pthread_t thread;
	int started;
	int writer; /* serves the write queue (worker 0) */
	int reader; /* serves the read queue (workers 1.., or worker 0 when alone) */
};

struct sg_store_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv_w; /* the writer waits here (and reads, when it is the only worker) */
	pthread_cond_t cv_r; /* the readers wait here */
	struct pool_queue wq, rq;
	struct pool_queue lq; /* lazy write jobs, in submission order */
	int stopping;
	unsigned n;
	struct pool_worker *workers;
	/* the WAL checkpointer (SQLite backend only) */
	char *ckpt_path; /* the database file, opened by the checkpointer when first needed */
	sqlite3 *ckpt_db;
	pthread_t ckpt_thread;
	int ckpt_started;
	pthread_mutex_t ckpt_mu;
	pthread_cond_t ckpt_cv;
	int ckpt_wanted, ckpt_stopping;
};

static pthread_once_t g_evthread_once = PTHREAD_ONCE_INIT;
static void evthread_init(void)
{
	evthread_use_pthreads();
}

static void q_push(struct pool_queue *q, struct pool_job *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
}

/* Takes up to max jobs off the front of q as a NULL-terminated list. */
static struct pool_job *q_take(struct pool_queue *q, int max)
{
	struct pool_job *first = q->head, *last = first;
	if (!first)
		return NULL;
	for (int n = 1; n < max && last->next; n++)
		last = last->next;
	q->head = last->next;
	if (!q->head)
		q->tail = NULL;
	last->next = NULL;
	return first;
}

/* Runs a chain of completions (linked by next) on the loop they were sent to. */
static void deliver_chain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	for (struct pool_job *j = arg, *next; j; j = next) {
		next = j->next;
		j->done(j->rc, j->done_arg);
		j->done_seen = 1;
		if (!j->ran || j->ran_seen)
			free(j); /* else the ran chain, still queued on this loop, frees it */
	}
}

/* Runs a chain of early hand-offs (linked by ran_next) on their loop: ran only when done has
 * not come first (the loop was slower than the commit), then frees the jobs done is through
 * with. */
static void ran_chain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	for (struct pool_job *j = arg, *next; j; j = next) {
		next = j->ran_next;
		j->ran_seen = 1;
		if (j->done_seen)
			free(j);
		else
			j->ran(j->ran_rc, j->done_arg);
	}
}

/* Hands the jobs of a batch that asked for it their early notice, one chain per loop, before
 * the batch commits. A notice that cannot be posted (libevent out of memory) is dropped: the
 * job then hears only done, which its submitter must handle anyway. */
static void deliver_ran(struct pool_job *batch)
{
	for (struct pool_job *j = batch; j; j = j->next) {
		if (!j->ran || j->ran_posted)
			continue; /* none asked, or already on a chain */
		struct pool_job *tail = j;
		j->ran_posted = 1;
		j->ran_rc = j->rc;
		for (struct pool_job *k = j->next; k; k = k->next)
			if (k->ran && !k->ran_posted && k->notify == j->notify) {
				k->ran_posted = 1;
				k->ran_rc = k->rc;
				tail->ran_next = k;
				tail = k;
			}
		tail->ran_next = NULL;
		/* from here the loop may run the chain: only worker-side fields are touched below
		 */
		struct timeval zero = {0, 0};
		if (event_base_once(j->notify, -1, EV_TIMEOUT, ran_chain_cb, j, &zero) != 0)
			for (struct pool_job *k = j; k; k = k->ran_next)
				k->ran = NULL; /* nothing was posted: done alone, as without ran */
	}
}

/* Delivers the completions of a finished batch: those for one event loop as one chain (one
 * event_base_once, one wake-up), those without a loop here on the worker. */
static void deliver(struct pool_job *batch)
{
	while (batch) {
		struct pool_job *j = batch;
		batch = j->next;
		j->next = NULL;
		if (!j->done) {
			free(j);
			continue;
		}
		if (!j->notify) {
			j->done(j->rc, j->done_arg);
			free(j);
			continue;
		}
		/* move the later jobs for the same loop behind j, keeping their order */
		struct pool_job *tail = j, **pp = &batch;
		while (*pp) {
			struct pool_job *k = *pp;
			if (k->done && k->notify == j->notify) {
				*pp = k->next;
				k->next = NULL;
				tail->next = k;
				tail = k;
			} else {
				pp = &k->next;
			}
		}
		/* Thread safe: evthread locking is on, and the base wakes up for the new timer.
		 * Out of memory in libevent: try again for a while rather than run the completions
		 * here, off their loop (where an early hand-off of the same jobs may be running).
		 */
		struct timeval zero = {0, 0};
		int tries = 0;
		while (event_base_once(j->notify, -1, EV_TIMEOUT, deliver_chain_cb, j, &zero) !=
		       0) {
			if (++tries == 1000) {
				sg_log_error("store pool: cannot hand completions to their loop");
				deliver_chain_cb(-1, 0,
				                 j); /* better late on this thread than never */
				break;
			}
			struct timespec ms = {0, 1000000};
			nanosleep(&ms, NULL);
		}
	}
}

static void run_batch(struct sg_store *st, struct pool_job *batch)
{
	if (batch->read) {
		batch->rc = batch->fn(st, batch->arg);
		return;
	}
	sg_err e = sg_store_tx_begin(st);
	if (e != SG_OK) {
		for (struct pool_job *j = batch; j; j = j->next)
			j->rc = e;
		return;
	}
	for (struct pool_job *j = batch; j; j = j->next) {
		/* A savepoint per job: a failing job rolls back alone, the others still commit. */
		j->rc = sg_store_tx_begin(st);
		if (j->rc != SG_OK)
			continue;
		j->rc = j->fn(st, j->arg);
		if (j->rc == SG_OK)
			j->rc = sg_store_tx_commit(st);
		else
			sg_store_tx_rollback(st);
	}
	deliver_ran(batch);
	/* Durable here (synchronous=FULL): nothing is acknowledged before this returns. */
	e = sg_store_tx_commit(st);
	if (e != SG_OK)
		for (struct pool_job *j = batch; j; j = j->next)
			if (j->rc == SG_OK)
				j->rc = e;
}

/* The writer's next batch: the queued durable jobs (up to SG_POOL_BATCH) with every lazy job
 * riding along, or the lazy jobs alone once the oldest is due or the pool stops. With nothing
 * to run yet, *wait_us is the time (sg_mono_us, CLOCK_MONOTONIC) the oldest lazy job falls due, 0
 * when there is none. Called with p->mu held. */
static struct pool_job *take_writes(struct sg_store_pool *p, int64_t *wait_us)
{
	*wait_us = 0;
	struct pool_job *batch = q_take(&p->wq, SG_POOL_BATCH);
	if (!batch && p->lq.head && !p->stopping && sg_mono_us() < p->lq.head->due_us) {
		*wait_us = p->lq.head->due_us;
		return NULL;
	}
	struct pool_job *lazy = q_take(&p->lq, 1 << 30);
	if (!batch)
		return lazy;
	struct pool_job *last = batch;
	while (last->next)
		last = last->next;
	last->next = lazy;
	return batch;
}

static void *worker_main(void *arg)
{
	struct pool_worker *w = arg;
	struct sg_store_pool *p = w->pool;
	pthread_cond_t *cv = w->writer ? &p->cv_w : &p->cv_r;
	/* named for top -H, perf and bench/idm.sh's per-thread CPU accounting */
	pthread_setname_np(pthread_self(), w->writer ? "sg-store-w" : "sg-store-r");
	for (;;) {
		pthread_mutex_lock(&p->mu);
		struct pool_job *batch = NULL;
		for (;;) {
			int64_t due = 0;
			if (w->writer && (batch = take_writes(p, &due)))
				break;
			if (w->reader && (batch = q_take(&p->rq, 1)))
				break;
			if (p->stopping)
				break;
			if (due) {
				struct timespec ts = {(time_t)(due / 1000000),
				                      (long)(due % 1000000) * 1000};
				pthread_cond_timedwait(cv, &p->mu, &ts);
			} else {
				pthread_cond_wait(cv, &p->mu);
			}
		}
		pthread_mutex_unlock(&p->mu);
		if (!batch)
			break; /* stopping, and nothing of ours is queued */
		run_batch(w->st, batch);
		deliver(batch);
	}
	return NULL;
}

/* SQLite's WAL hook on the writer's connection, called after each commit with the WAL's size
 * in pages (on the writer thread, inside the commit's store op). */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct sg_store_pool *p = arg;
	if (pages >= SG_POOL_CKPT_FORCE) {
		/* the checkpointer fell behind: catch up here, as SQLite's autocheckpoint would */
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	} else if (pages >= SG_POOL_CKPT_PAGES) {
		pthread_mutex_lock(&p->ckpt_mu);
		if (!p->ckpt_wanted) {
			p->ckpt_wanted = 1;
			pthread_cond_signal(&p->ckpt_cv);
		}
		pthread_mutex_unlock(&p->ckpt_mu);
	}
	return SQLITE_OK;
}

/* The checkpointer's connection: a plain one to the same file, opened on the thread's first
 * checkpoint (not at start-up, where processes sharing the file already take turns for the
 * migration check). It runs nothing but checkpoints, never a store op or a transaction.
 * synchronous=FULL: the checkpoint syncs the WAL before copying and the database file before
 * the WAL may be reused. NULL (logged) when it cannot be opened: the next wake-up retries, and
 * meanwhile the writer's SG_POOL_CKPT_FORCE bound holds. */
static sqlite3 *ckpt_open(const char *path)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 5000);
		rc = sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		sg_log_warn("store: the WAL checkpointer cannot open %s: %s", path,
		            db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static void *ckpt_main(void *arg)
{
	struct sg_store_pool *p = arg;
	pthread_setname_np(pthread_self(), "sg-ckpt");
	pthread_mutex_lock(&p->ckpt_mu);
	for (;;) {
		while (!p->ckpt_wanted && !p->ckpt_stopping)
			pthread_cond_wait(&p->ckpt_cv, &p->ckpt_mu);
		if (p->ckpt_stopping)
			break;
		p->ckpt_wanted = 0;
		pthread_mutex_unlock(&p->ckpt_mu);
		if (!p->ckpt_db)
			p->ckpt_db = ckpt_open(p->ckpt_path);
		if (p->ckpt_db) {
			int rc = sqlite3_wal_checkpoint_v2(p->ckpt_db, NULL,
			                                   SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
			if (rc != SQLITE_OK && rc != SQLITE_BUSY)
				sg_log_warn("store: WAL checkpoint of %s: %s", p->ckpt_path,
				            sqlite3_errmsg(p->ckpt_db));
		}
		/* a short pause: under a steady stream of commits the next checkpoint then copies
		 * the frames of several batches at the price of one pair of fsyncs */
		struct timespec ts = {0, SG_POOL_CKPT_PAUSE_MS * 1000000L};
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&p->ckpt_mu);
	}
	pthread_mutex_unlock(&p->ckpt_mu);
	return NULL;
}

/* Moves the WAL checkpoints of the writer's connection to a thread of their own (see the top of
 * this file). Nothing to do for a backend other than SQLite. */
static sg_err ckpt_start(struct sg_store_pool *p, char *err, size_t errlen)
{
	sqlite3 *wdb = sg_store_sqlite_handle(p->workers[0].st);
	if (!wdb)
		return SG_OK;
	const char *file = sqlite3_db_filename(wdb, "main");
	if (!file || !*file || !(p->ckpt_path = strdup(file)))
		return sg_fail(err, errlen, SG_ERR_NOMEM, "store pool: out of memory");
	if (pthread_create(&p->ckpt_thread, NULL, ckpt_main, p) != 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL,
		               "store pool: cannot start the checkpointer thread");
	p->ckpt_started = 1;
	/* No thread uses the writer's connection yet. sqlite3_wal_hook replaces the hook that
	 * sqlite3_wal_autocheckpoint installed: from here on this hook decides. */
	sqlite3_wal_hook(wdb, wal_hook, p);
	return SG_OK;
}

sg_err sg_store_pool_create(const char *driver, const char *path_or_url, unsigned nthreads,
                            struct sg_store_pool **out, char *err, size_t errlen)
{
	if (!out || nthreads == 0 || nthreads > 256)
		return sg_fail(err, errlen, SG_ERR_INVALID, "store pool: 1 to 256 threads");
	pthread_once(&g_evthread_once, evthread_init);
	struct sg_store_pool *p = calloc(1, sizeof *p);
	if (!p)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "store pool: out of memory");
	pthread_mutex_init(&p->mu, NULL);
	/* the writer's waits for lazy jobs are timed on the monotonic clock */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv_w, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&p->cv_r, NULL);
	pthread_mutex_init(&p->ckpt_mu, NULL);
	pthread_cond_init(&p->ckpt_cv, NULL);
	p->workers = calloc(nthreads, sizeof *p->workers);
	if (!p->workers) {
		sg_store_pool_destroy(p);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "store pool: out of memory");
	}
	p->n = nthreads;
	/* Connections are opened one after another: the first one creates and migrates. */
	for (unsigned i = 0; i < nthreads; i++) {
		p->workers[i].pool = p;
		p->workers[i].writer = i == 0;
		p->workers[i].reader = i > 0 || nthreads == 1;
		sg_err e = sg_store_open(driver, path_or_url, &p->workers[i].st, err, errlen);
		if (e != SG_OK) {
			sg_store_pool_destroy(p);
			return e;
		}
	}
	sg_err ce = ckpt_start(p, err, errlen);
	if (ce != SG_OK) {
		sg_store_pool_destroy(p);
		return ce;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
			sg_store_pool_destroy(p);
			return sg_fail(err, errlen, SG_ERR_INTERNAL,
			               "store pool: cannot start a thread");
		}
		p->workers[i].started = 1;
	}
	*out = p;
	return SG_OK;
}

enum job_kind { JOB_WRITE, JOB_READ, JOB_LAZY };

static sg_err submit(struct sg_store_pool *p, enum job_kind kind, sg_store_job_fn fn, void *arg,
                     sg_store_ran_fn ran, sg_store_done_fn done, void *done_arg,
                     struct event_base *notify)
{
	if (!p || !fn)
		return sg_store_fail(SG_ERR_INVALID, "store pool: a job function is required");
	if (ran && !notify)
		return sg_store_fail(SG_ERR_INVALID, "store pool: an early hand-off needs a loop");
	struct pool_job *j = calloc(1, sizeof *j);
	if (!j)
		return sg_store_fail(SG_ERR_NOMEM, "store pool: out of memory");
	int read = kind == JOB_READ;
	j->fn = fn;
	j->arg = arg;
	j->ran = ran;
	j->done = done;
	j->done_arg = done_arg;
	j->notify = notify;
	j->read = read;
	if (kind == JOB_LAZY)
		j->due_us = sg_mono_us() + (int64_t)SG_STORE_LAZY_MS * 1000;
	pthread_mutex_lock(&p->mu);
	if (p->stopping) {
		pthread_mutex_unlock(&p->mu);
		free(j);
		return sg_store_fail(SG_ERR_INVALID, "store pool: shutting down");
	}
	/* A lazy job behind another one changes nothing for the writer: it already waits until
	 * the older one is due. */
	int wake = kind != JOB_LAZY || !p->lq.head;
	q_push(kind == JOB_READ ? &p->rq : kind == JOB_LAZY ? &p->lq : &p->wq, j);
	/* Wakes a waiting worker of the right kind (a futex call only when one waits; a busy
	 * writer finds the job when it comes back for the next batch). */
	if (wake)
		pthread_cond_signal(read && p->n > 1 ? &p->cv_r : &p->cv_w);
	pthread_mutex_unlock(&p->mu);
	return SG_OK;
}

sg_err sg_store_pool_submit(struct sg_store_pool *pool, sg_store_job_fn job, void *arg,
                            sg_store_done_fn done, void *done_arg, struct event_base *notify)
{
	return submit(pool, JOB_WRITE, job, arg, NULL, done, done_arg, notify);
}

sg_err sg_store_pool_submit_early(struct sg_store_pool *pool, sg_store_job_fn job, void *arg,
                                  sg_store_ran_fn ran, sg_store_done_fn done, void *done_arg,
                                  struct event_base *notify)
{
	return submit(pool, JOB_WRITE, job, arg, ran, done, done_arg, notify);
}

sg_err sg_store_pool_submit_lazy(struct sg_store_pool *pool, sg_store_job_fn job, void *arg)
{
	return submit(pool, JOB_LAZY, job, arg, NULL, NULL, NULL, NULL);
}

sg_err sg_store_pool_submit_read(struct sg_store_pool *pool, sg_store_job_fn job, void *arg,
                                 sg_store_done_fn done, void *done_arg, struct event_base *notify)
{
	return submit(pool, JOB_READ, job, arg, NULL, done, done_arg, notify);
}

void sg_store_pool_destroy(struct sg_store_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv_w);
	pthread_cond_broadcast(&p->cv_r);
	pthread_mutex_unlock(&p->mu);
	pthread_mutex_lock(&p->ckpt_mu);
	p->ckpt_stopping = 1;
	pthread_cond_signal(&p->ckpt_cv);
	pthread_mutex_unlock(&p->ckpt_mu);
	if (p->ckpt_started)
		pthread_join(p->ckpt_thread, NULL);
	sqlite3_close(p->ckpt_db);
	free(p->ckpt_path);
	for (unsigned i = 0; p->workers && i < p->n; i++) {
		if (p->workers[i].started)
			pthread_join(p->workers[i].thread, NULL);
		sg_store_close(p->workers[i].st);
	}
	free(p->workers);
	pthread_cond_destroy(&p->cv_w);
	pthread_cond_destroy(&p->cv_r);
	pthread_cond_destroy(&p->ckpt_cv);
	pthread_mutex_destroy(&p->ckpt_mu);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
