/* store/pool.c: store jobs on worker threads, each with its own connection, so that an event
 * loop never waits on the disk (DESIGN.md §6). Completions go back to the submitting loop.
 * Group commit: a worker takes every queued write job (up to SG_POOL_BATCH) and runs them in one
 * transaction, each inside its own savepoint, so a burst of durable writes pays one fsync. */
#include "store/backend.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define SG_POOL_BATCH 64

struct pool_job {
	struct pool_job *next;
	sg_store_job_fn fn;
	void *arg;
	sg_store_done_fn done;
	void *done_arg;
	struct event_base *notify;
	int read;
	sg_err rc;
};

struct pool_worker {
	struct sg_store_pool *pool;
	struct sg_store *st;
	pthread_t thread;
	int started;
};

struct sg_store_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pool_job *head, *tail;
	int stopping;
	unsigned n;
	struct pool_worker *workers;
};

static pthread_once_t g_evthread_once = PTHREAD_ONCE_INIT;
static void evthread_init(void)
{
	evthread_use_pthreads();
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct pool_job *j = arg;
	j->done(j->rc, j->done_arg);
	free(j);
}

static void deliver(struct pool_job *j)
{
	if (!j->done) {
		free(j);
		return;
	}
	if (j->notify) {
		/* Thread safe: evthread locking is on, and the base wakes up for the new timer. */
		struct timeval zero = {0, 0};
		if (event_base_once(j->notify, -1, EV_TIMEOUT, deliver_cb, j, &zero) == 0)
			return;
		/* Out of memory in libevent: better late on this thread than never. */
	}
	j->done(j->rc, j->done_arg);
	free(j);
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
	e = sg_store_tx_commit(st);
	if (e != SG_OK)
		for (struct pool_job *j = batch; j; j = j->next)
			if (j->rc == SG_OK)
				j->rc = e;
}

static void *worker_main(void *arg)
{
	struct pool_worker *w = arg;
	struct sg_store_pool *p = w->pool;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (!p->head) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		struct pool_job *batch = p->head, *last = batch;
		p->head = batch->next;
		int n = 1;
		if (!batch->read)
			while (p->head && !p->head->read && n < SG_POOL_BATCH) {
				last = p->head;
				p->head = p->head->next;
				n++;
			}
		last->next = NULL;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->mu);

		run_batch(w->st, batch);
		while (batch) {
			struct pool_job *next = batch->next;
			deliver(batch);
			batch = next;
		}
	}
	return NULL;
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
	pthread_cond_init(&p->cv, NULL);
	p->workers = calloc(nthreads, sizeof *p->workers);
	if (!p->workers) {
		sg_store_pool_destroy(p);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "store pool: out of memory");
	}
	p->n = nthreads;
	/* Connections are opened one after another: the first one creates and migrates. */
	for (unsigned i = 0; i < nthreads; i++) {
		p->workers[i].pool = p;
		sg_err e = sg_store_open(driver, path_or_url, &p->workers[i].st, err, errlen);
		if (e != SG_OK) {
			sg_store_pool_destroy(p);
			return e;
		}
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

static sg_err submit(struct sg_store_pool *p, int read, sg_store_job_fn fn, void *arg,
                     sg_store_done_fn done, void *done_arg, struct event_base *notify)
{
	if (!p || !fn)
		return sg_store_fail(SG_ERR_INVALID, "store pool: a job function is required");
	struct pool_job *j = calloc(1, sizeof *j);
	if (!j)
		return sg_store_fail(SG_ERR_NOMEM, "store pool: out of memory");
	j->fn = fn;
	j->arg = arg;
	j->done = done;
	j->done_arg = done_arg;
	j->notify = notify;
	j->read = read;
	pthread_mutex_lock(&p->mu);
	if (p->stopping) {
		pthread_mutex_unlock(&p->mu);
		free(j);
		return sg_store_fail(SG_ERR_INVALID, "store pool: shutting down");
	}
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return SG_OK;
}

sg_err sg_store_pool_submit(struct sg_store_pool *pool, sg_store_job_fn job, void *arg,
                            sg_store_done_fn done, void *done_arg, struct event_base *notify)
{
	return submit(pool, 0, job, arg, done, done_arg, notify);
}

sg_err sg_store_pool_submit_read(struct sg_store_pool *pool, sg_store_job_fn job, void *arg,
                                 sg_store_done_fn done, void *done_arg, struct event_base *notify)
{
	return submit(pool, 1, job, arg, done, done_arg, notify);
}

void sg_store_pool_destroy(struct sg_store_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; p->workers && i < p->n; i++) {
		if (p->workers[i].started)
			pthread_join(p->workers[i].thread, NULL);
		sg_store_close(p->workers[i].st);
	}
	free(p->workers);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
