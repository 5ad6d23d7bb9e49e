/* net/server.c: worker threads (one libevent loop each), listeners with one SO_REUSEPORT socket
 * per worker, accept with the per-listener connection limit, signals, graceful drain, the
 * buffered access log and the Prometheus metrics. */
#include "net/server.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/rand.h"
#include "http/req.h"
#include "net/conn.h"

#include <errno.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const double sg_hist_bounds[SG_HIST_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                0.01,   0.025,   0.05,   0.1,   0.5,    1.0};
char sg_server_id_prefix[8];

struct sg_timer {
	struct sg_timer *next;
	struct event *ev;
	void (*fn)(void *);
	void *arg;
};

struct sg_server {
	unsigned nworkers;
	struct sg_worker *workers[SG_MAX_WORKERS];
	struct sg_listener *listeners[SG_MAX_LISTENERS];
	unsigned nlisteners;
	struct event_base *main;
	int stop_pipe[2];
	struct event *stop_ev, *sig_ev[3], *drain_timer, *done_ev;
	struct sg_timer *timers;
	unsigned drain_ms;
	_Atomic unsigned workers_left;
	int draining, running;
};

void sg_limits_default(struct sg_limits *l)
{
	l->max_header_bytes = 16 * 1024;
	l->max_body_bytes = 1024 * 1024;
	l->max_connections = 20000;
	l->max_handshakes_per_address = 256;
	l->handshake_timeout_ms = 10000;
	l->header_timeout_ms = 10000;
	l->body_timeout_ms = 30000;
	l->idle_timeout_ms = 60000;
	l->h2_max_streams = 100;
	l->requests_per_second = 1000;
	l->request_burst = 2000;
	l->handshakes_per_second = 200;
	l->handshake_burst = 400;
}

static pthread_once_t g_evthread_once = PTHREAD_ONCE_INIT;
static void evthread_init(void)
{
	evthread_use_pthreads();
}

static void on_flush(evutil_socket_t fd, short what, void *arg);
static void on_drain(evutil_socket_t fd, short what, void *arg);

sg_err sg_server_new(unsigned workers, struct sg_server **out)
{
	pthread_once(&g_evthread_once, evthread_init);
	if (workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		workers = n > 0 ? (unsigned)n : 1;
	}
	if (workers > SG_MAX_WORKERS)
		workers = SG_MAX_WORKERS;
	struct sg_server *s = calloc(1, sizeof *s);
	if (!s)
		return SG_ERR_NOMEM;
	s->nworkers = workers;
	s->drain_ms = 10000;
	s->stop_pipe[0] = s->stop_pipe[1] = -1;
	if (!sg_server_id_prefix[0] && sg_random_token(sg_server_id_prefix, 6, 3) != SG_OK)
		snprintf(sg_server_id_prefix, sizeof sg_server_id_prefix, "sg");
	s->main = event_base_new();
	if (!s->main || pipe2(s->stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
		goto fail;
	for (unsigned i = 0; i < workers; i++) {
		struct sg_worker *w = calloc(1, sizeof *w);
		if (!w)
			goto fail;
		s->workers[i] = w;
		w->srv = s;
		w->idx = i;
		w->base = event_base_new();
		if (!w->base)
			goto fail;
		w->drain_ev = event_new(w->base, -1, 0, on_drain, w);
		w->flush_ev = event_new(w->base, -1, EV_PERSIST, on_flush, w);
		if (!w->drain_ev || !w->flush_ev)
			goto fail;
	}
	*out = s;
	return SG_OK;
fail:
	sg_server_free(s);
	return SG_ERR_NOMEM;
}

void sg_server_set_drain_ms(struct sg_server *s, unsigned drain_ms)
{
	s->drain_ms = drain_ms;
}

static int parse_bind(const char *bind, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	if (bind[0] == '[') {
		const char *end = strchr(bind, ']');
		if (!end || end[1] != ':')
			return -1;
		snprintf(host, hostlen, "%.*s", (int)(end - bind - 1), bind + 1);
		colon = end + 1;
	} else {
		colon = strrchr(bind, ':');
		if (!colon)
			return -1;
		snprintf(host, hostlen, "%.*s", (int)(colon - bind), bind);
	}
	snprintf(port, portlen, "%s", colon + 1);
	return *port ? 0 : -1;
}

static void on_accept(evutil_socket_t fd, short what, void *arg);

struct accept_arg {
	struct sg_worker *w;
	struct sg_listener *l;
};

static void listener_free(struct sg_listener *l, unsigned nworkers)
{
	if (!l)
		return;
	for (unsigned i = 0; i < nworkers; i++)
		if (l->fds[i] >= 0)
			close(l->fds[i]);
	pthread_mutex_destroy(&l->hmu);
	sg_addrtab_free(&l->hs);
	if (l->rl_on)
		sg_ratelimit_free(&l->rl);
	if (l->hrl_on)
		sg_ratelimit_free(&l->hrl);
	free(l->name);
	free(l->bind);
	free(l);
}

sg_err sg_server_add_listener(struct sg_server *s, const struct sg_listener_conf *lc, char *err,
                              size_t errlen)
{
	if (!lc || !lc->name || !lc->bind)
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "listener needs a name and a bind address");
	if (s->nlisteners == SG_MAX_LISTENERS)
		return sg_fail(err, errlen, SG_ERR_LIMIT, "too many listeners");
	for (unsigned i = 0; i < s->nlisteners; i++)
		if (strcmp(s->listeners[i]->name, lc->name) == 0)
			return sg_fail(err, errlen, SG_ERR_EXISTS, "listener %s defined twice",
			               lc->name);
	char host[256], port[32];
	if (parse_bind(lc->bind, host, sizeof host, port, sizeof port) != 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "listener %s: bind \"%s\" is not host:port or [v6]:port", lc->name,
		               lc->bind);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (gai != 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "listener %s: %s: %s", lc->name,
		               lc->bind, gai_strerror(gai));
	/* SO_REUSEPORT would let a second listener of ours silently share a port: refuse it */
	for (unsigned i = 0; i < s->nlisteners; i++) {
		struct sockaddr_storage o;
		socklen_t ol = sizeof o;
		if (getsockname(s->listeners[i]->fds[0], (struct sockaddr *)&o, &ol) == 0 &&
		    ol == ai->ai_addrlen && memcmp(&o, ai->ai_addr, ol) == 0) {
			freeaddrinfo(ai);
			return sg_fail(
			    err, errlen, SG_ERR_IO,
			    "listener %s: bind %s: address already in use by listener %s", lc->name,
			    lc->bind, s->listeners[i]->name);
		}
	}
	/* ...and so would another process of the same user that sets SO_REUSEPORT too. A probe
	 * socket without SO_REUSEPORT cannot share the port with anyone: if it cannot bind, the
	 * address is taken, and the operator hears it now instead of losing half the traffic. */
	if (port[0] != '0' || port[1] != '\0') {
		int probe = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int one = 1;
		if (probe >= 0)
			setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (probe < 0 || bind(probe, ai->ai_addr, ai->ai_addrlen) != 0) {
			int e = errno;
			if (probe >= 0)
				close(probe);
			freeaddrinfo(ai);
			return sg_fail(err, errlen, SG_ERR_IO, "listener %s: bind %s: %s", lc->name,
			               lc->bind, strerror(e));
		}
		close(probe);
	}
	struct sg_listener *l = calloc(1, sizeof *l);
	if (!l) {
		freeaddrinfo(ai);
		return SG_ERR_NOMEM;
	}
	for (unsigned i = 0; i < SG_MAX_WORKERS; i++)
		l->fds[i] = -1;
	pthread_mutex_init(&l->hmu, NULL);
	l->name = strdup(lc->name);
	l->bind = strdup(lc->bind);
	l->tls = lc->tls;
	l->router = lc->router;
	l->pre = lc->pre;
	l->pre_arg = lc->pre_arg;
	l->limits = lc->limits;
	if (!l->limits.max_header_bytes) /* an all-zero limits struct means "defaults" */
		sg_limits_default(&l->limits);
	if (!l->limits.max_handshakes_per_address)
		l->limits.max_handshakes_per_address = 256;
	if (l->limits.requests_per_second) {
		sg_ratelimit_init(&l->rl, l->limits.requests_per_second, l->limits.request_burst,
		                  SG_RATELIMIT_MAX_KEYS);
		l->rl_on = 1;
	}
	if (l->tls && l->limits.handshakes_per_second) {
		sg_ratelimit_init(&l->hrl, l->limits.handshakes_per_second,
		                  l->limits.handshake_burst, SG_RATELIMIT_MAX_KEYS);
		l->hrl_on = 1;
	}
	l->access_log = lc->access_log;
	l->idx = (int)s->nlisteners;
	sg_json_escape(l->name_json, sizeof l->name_json, l->name);
	sg_err rc = SG_OK;
	struct sockaddr_storage ss;
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	socklen_t sslen = ai->ai_addrlen;
	for (unsigned i = 0; i < s->nworkers; i++) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int one = 1;
		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) {
			rc = sg_fail(err, errlen, SG_ERR_IO, "listener %s: socket: %s", lc->name,
			             strerror(errno));
			if (fd >= 0)
				close(fd);
			break;
		}
		l->fds[i] = fd;
		if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 4096) != 0) {
			rc = sg_fail(err, errlen, SG_ERR_IO, "listener %s: bind %s: %s", lc->name,
			             lc->bind, strerror(errno));
			break;
		}
		if (i == 0) {
			/* port 0: the others join the port the kernel chose for the first */
			sslen = sizeof ss;
			getsockname(fd, (struct sockaddr *)&ss, &sslen);
			l->port = ss.ss_family == AF_INET6
			              ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
			              : ntohs(((struct sockaddr_in *)&ss)->sin_port);
		}
	}
	freeaddrinfo(ai);
	if (rc == SG_OK && (!l->name || !l->bind))
		rc = SG_ERR_NOMEM;
	for (unsigned i = 0; rc == SG_OK && i < s->nworkers; i++) {
		struct sg_worker *w = s->workers[i];
		struct accept_arg *aa = malloc(sizeof *aa);
		if (!aa) {
			rc = SG_ERR_NOMEM;
			break;
		}
		aa->w = w;
		aa->l = l;
		w->accept_ev[l->idx] =
		    event_new(w->base, l->fds[i], EV_READ | EV_PERSIST, on_accept, aa);
		if (!w->accept_ev[l->idx]) {
			free(aa);
			rc = SG_ERR_NOMEM;
			break;
		}
		unsigned ms[4] = {l->limits.handshake_timeout_ms, l->limits.header_timeout_ms,
		                  l->limits.body_timeout_ms, l->limits.idle_timeout_ms};
		for (int k = 0; k < 4; k++) {
			struct timeval tv = {.tv_sec = ms[k] / 1000,
			                     .tv_usec = (ms[k] % 1000) * 1000};
			const struct timeval *ct = event_base_init_common_timeout(w->base, &tv);
			w->to[l->idx][k] = ct ? *ct : tv;
		}
	}
	if (rc != SG_OK) {
		for (unsigned i = 0; i < s->nworkers; i++) {
			struct event *ev = s->workers[i]->accept_ev[l->idx];
			if (ev) {
				free(event_get_callback_arg(ev));
				event_free(ev);
				s->workers[i]->accept_ev[l->idx] = NULL;
			}
		}
		listener_free(l, s->nworkers);
		return rc;
	}
	s->listeners[s->nlisteners++] = l;
	return SG_OK;
}

int sg_server_listener_port(const struct sg_server *s, const char *name)
{
	for (unsigned i = 0; i < s->nlisteners; i++)
		if (strcmp(s->listeners[i]->name, name) == 0)
			return s->listeners[i]->port;
	return -1;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	(void)what;
	struct accept_arg *aa = arg;
	struct sg_worker *w = aa->w;
	struct sg_listener *l = aa->l;
	for (int i = 0; i < 64 && !w->draining; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE)
				sg_log_warn("listener %s: accept: %s", l->name, strerror(errno));
			break;
		}
		/* G4: over the per-listener limit the connection is closed at once */
		if (atomic_fetch_add(&l->nconns, 1) >= l->limits.max_connections) {
			atomic_fetch_sub(&l->nconns, 1);
			SG_CNT_ADD(w->stats[l->idx].refused, 1);
			close(fd);
			continue;
		}
		/* G4: so are connections of an address that already has as many TLS handshakes in
		 * progress as it may: clients that connect and never finish a handshake cannot take
		 * the listener from other addresses; and those of an address over its rate of new
		 * connections: each costs a handshake (public-key operations), the dearest thing a
		 * client can make the server do before it has authenticated */
		uint8_t key[16];
		int keyed = sg_addr_key(&ss, len, key) == 0, counted = 0, over = 0;
		uint64_t retry;
		if (l->hrl_on && keyed)
			over = sg_ratelimit_take(&l->hrl, key, (uint64_t)sg_mono_us(), &retry) ==
			       SG_RL_LIMITED;
		if (l->tls && keyed && !over) {
			pthread_mutex_lock(&l->hmu);
			over = sg_addrtab_get(&l->hs, key) >= l->limits.max_handshakes_per_address;
			counted = !over && sg_addrtab_inc(&l->hs, key) != 0;
			pthread_mutex_unlock(&l->hmu);
		}
		if (over) {
			atomic_fetch_sub(&l->nconns, 1);
			SG_CNT_ADD(w->stats[l->idx].refused, 1);
			close(fd);
			continue;
		}
		SG_CNT_ADD(w->stats[l->idx].accepted, 1);
		sg_conn_accepted(w, l, fd, (struct sockaddr *)&ss, len, keyed ? key : NULL,
		                 counted);
	}
}

/* --- access log and request metrics --- */
static void alog_flush(struct sg_worker *w)
{
	if (w->alog.len == 0)
		return;
	/* sg_log_raw_line appends the final newline */
	sg_log_raw_line(w->alog.data, w->alog.len - 1);
	sg_buf_reset(&w->alog);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	alog_flush(arg);
}

void sg_server_log_request(struct sg_conn *c, struct sg_http_req *r)
{
	struct sg_worker *w = c->w;
	struct sg_listener *l = c->l;
	struct sg_wstats *st = &w->stats[l->idx];
	int64_t dur = sg_mono_us() - r->t0_us;
	if (dur < 0)
		dur = 0;
	int code = r->status >= 100 && r->status < 600 ? r->status : 0;
	SG_CNT_ADD(st->codes[code], 1);
	unsigned b = 0;
	while (b < SG_HIST_BUCKETS && (double)dur > sg_hist_bounds[b] * 1e6)
		b++;
	SG_CNT_ADD(st->hist[b], 1);
	SG_CNT_ADD(st->dur_us_sum, (uint64_t)dur);
	SG_CNT_ADD(st->count, 1);
	if (!l->access_log)
		return;
	char ts[40], peer[100], princ[300], method[40], path[600];
	sg_time_iso8601(ts, sizeof ts, sg_now_ms());
	sg_json_escape(peer, sizeof peer, c->peer);
	const char *p = NULL;
	if (c->principal)
		p = c->principal->is_psk  ? c->principal->psk_identity
		    : c->principal->nsans ? c->principal->sans[0]
		                          : NULL;
	sg_json_escape(princ, sizeof princ, p ? p : "");
	sg_json_escape(method, sizeof method, r->method ? r->method : "-");
	sg_json_escape(path, sizeof path, r->path ? r->path : "");
	sg_buf_printf(&w->alog,
	              "{\"ts\":\"%s\",\"id\":\"%s\",\"listener\":\"%s\",\"peer\":\"%s\","
	              "\"principal\":\"%s\",\"proto\":\"%s\",\"method\":\"%s\",\"path\":\"%s\","
	              "\"status\":%d,\"bytes\":%zu,\"dur_us\":%lld}\n",
	              ts, sg_http_req_id(r), l->name_json, peer, princ,
	              r->version == 20 ? "HTTP/2" : "HTTP/1.1", method, path, r->status,
	              r->bytes_out, (long long)dur);
	if (w->alog.len > 32768)
		alog_flush(w);
}

/* --- run, drain, stop --- */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sg_worker *w = arg;
	w->draining = 1;
	for (unsigned i = 0; i < SG_MAX_LISTENERS; i++)
		if (w->accept_ev[i])
			event_del(w->accept_ev[i]);
	for (struct sg_conn *c = w->conns, *n; c; c = n) {
		n = c->next;
		sg_conn_drain(c);
	}
	if (w->nconns == 0)
		event_base_loopexit(w->base, NULL);
}

static void *worker_main(void *arg)
{
	struct sg_worker *w = arg;
	struct timeval sec = {1, 0};
	event_add(w->flush_ev, &sec);
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	event_del(w->flush_ev);
	alog_flush(w);
	if (atomic_fetch_sub(&w->srv->workers_left, 1) == 1)
		event_active(w->srv->done_ev, 0, 0);
	return NULL;
}

static void start_drain(struct sg_server *s)
{
	if (s->draining)
		return;
	s->draining = 1;
	sg_log_info("draining: no new connections, waiting up to %u ms for requests in flight",
	            s->drain_ms);
	for (unsigned i = 0; i < s->nworkers; i++)
		event_active(s->workers[i]->drain_ev, 0, 0);
	struct timeval tv = {.tv_sec = s->drain_ms / 1000, .tv_usec = (s->drain_ms % 1000) * 1000};
	event_add(s->drain_timer, &tv);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	char b[64];
	while (read(fd, b, sizeof b) > 0)
		;
	start_drain(arg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct sg_server *s = arg;
	if (sig == SIGHUP) {
		/* reload: run every registered upkeep timer now (certificate/CRL reload checks) */
		for (struct sg_timer *t = s->timers; t; t = t->next)
			t->fn(t->arg);
		return;
	}
	start_drain(s);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sg_server *s = arg;
	sg_log_warn("drain: %u ms passed, closing remaining connections", s->drain_ms);
	for (unsigned i = 0; i < s->nworkers; i++)
		event_base_loopbreak(s->workers[i]->base);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopexit(((struct sg_server *)arg)->main, NULL);
}

static void on_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sg_timer *t = arg;
	t->fn(t->arg);
}

sg_err sg_server_add_timer(struct sg_server *s, unsigned period_ms, void (*fn)(void *), void *arg)
{
	if (!fn || !period_ms)
		return SG_ERR_INVALID;
	struct sg_timer *t = calloc(1, sizeof *t);
	if (!t)
		return SG_ERR_NOMEM;
	t->fn = fn;
	t->arg = arg;
	t->ev = event_new(s->main, -1, EV_PERSIST, on_timer_cb, t);
	if (!t->ev) {
		free(t);
		return SG_ERR_NOMEM;
	}
	struct timeval tv = {.tv_sec = period_ms / 1000, .tv_usec = (period_ms % 1000) * 1000};
	event_add(t->ev, &tv);
	t->next = s->timers;
	s->timers = t;
	return SG_OK;
}

sg_err sg_server_run(struct sg_server *s)
{
	signal(SIGPIPE, SIG_IGN);
	s->stop_ev = event_new(s->main, s->stop_pipe[0], EV_READ | EV_PERSIST, on_stop, s);
	s->drain_timer = evtimer_new(s->main, on_drain_timeout, s);
	s->done_ev = event_new(s->main, -1, 0, on_done, s);
	int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
	for (int i = 0; i < 3; i++) {
		s->sig_ev[i] = evsignal_new(s->main, sigs[i], on_signal, s);
		if (s->sig_ev[i])
			event_add(s->sig_ev[i], NULL);
	}
	if (!s->stop_ev || !s->drain_timer || !s->done_ev)
		return SG_ERR_NOMEM;
	event_add(s->stop_ev, NULL);
	s->running = 1;
	for (unsigned i = 0; i < s->nworkers; i++)
		for (unsigned k = 0; k < s->nlisteners; k++)
			event_add(s->workers[i]->accept_ev[k], NULL);
	atomic_store(&s->workers_left, s->nworkers);
	unsigned started = 0;
	for (; started < s->nworkers; started++)
		if (pthread_create(&s->workers[started]->th, NULL, worker_main,
		                   s->workers[started]) != 0)
			break;
	if (started < s->nworkers) {
		atomic_fetch_sub(&s->workers_left, s->nworkers - started);
		start_drain(s);
	}
	event_base_dispatch(s->main);
	for (unsigned i = 0; i < started; i++)
		pthread_join(s->workers[i]->th, NULL);
	/* the loops are gone: connections left after the drain deadline are closed here */
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct sg_worker *w = s->workers[i];
		w->draining = 0;
		while (w->conns)
			sg_conn_close(w->conns);
		alog_flush(w);
	}
	for (int i = 0; i < 3; i++)
		if (s->sig_ev[i]) {
			event_free(s->sig_ev[i]);
			s->sig_ev[i] = NULL;
		}
	event_del(s->drain_timer);
	s->running = 0;
	return started == s->nworkers ? SG_OK : SG_ERR_INTERNAL;
}

void sg_server_stop(struct sg_server *s)
{
	/* async-signal-safe: one write() to the self-pipe */
	if (s && s->stop_pipe[1] >= 0) {
		ssize_t n = write(s->stop_pipe[1], "x", 1);
		(void)n;
	}
}

void sg_server_free(struct sg_server *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct sg_worker *w = s->workers[i];
		if (!w)
			continue;
		while (w->conns)
			sg_conn_close(w->conns);
		for (unsigned k = 0; k < SG_MAX_LISTENERS; k++)
			if (w->accept_ev[k]) {
				free(event_get_callback_arg(w->accept_ev[k]));
				event_free(w->accept_ev[k]);
			}
		if (w->drain_ev)
			event_free(w->drain_ev);
		if (w->flush_ev)
			event_free(w->flush_ev);
		alog_flush(w);
		sg_buf_free(&w->alog);
		sg_worker_free_spare(w);
		if (w->base)
			event_base_free(w->base);
		free(w);
	}
	for (unsigned i = 0; i < s->nlisteners; i++)
		listener_free(s->listeners[i], s->nworkers);
	for (struct sg_timer *t = s->timers, *n; t; t = n) {
		n = t->next;
		event_free(t->ev);
		free(t);
	}
	if (s->stop_ev)
		event_free(s->stop_ev);
	if (s->drain_timer)
		event_free(s->drain_timer);
	if (s->done_ev)
		event_free(s->done_ev);
	for (int i = 0; i < 3; i++)
		if (s->sig_ev[i])
			event_free(s->sig_ev[i]);
	if (s->main)
		event_base_free(s->main);
	if (s->stop_pipe[0] >= 0)
		close(s->stop_pipe[0]);
	if (s->stop_pipe[1] >= 0)
		close(s->stop_pipe[1]);
	free(s);
}

/* --- metrics --- */
sg_err sg_server_metrics(struct sg_server *s, struct sg_buf *out)
{
#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
	int e = 0;
	e |= sg_buf_appends(out, "# HELP sealguard_connections_open Open client connections.\n"
	                         "# TYPE sealguard_connections_open gauge\n");
	for (unsigned k = 0; k < s->nlisteners; k++) {
		uint64_t v = 0;
		for (unsigned i = 0; i < s->nworkers; i++)
			v += LD(s->workers[i]->stats[k].open);
		e |= sg_buf_printf(out, "sealguard_connections_open{listener=\"%s\"} %llu\n",
		                   s->listeners[k]->name_json, (unsigned long long)v);
	}
	e |= sg_buf_appends(out,
	                    "# HELP sealguard_http_requests_limited_total Requests refused with "
	                    "429 by the per-address rate limit (untracked: let through because "
	                    "the listener tracked as many addresses as it may).\n"
	                    "# TYPE sealguard_http_requests_limited_total counter\n");
	for (unsigned k = 0; k < s->nlisteners; k++) {
		uint64_t lim = 0, unt = 0;
		for (unsigned i = 0; i < s->nworkers; i++) {
			lim += LD(s->workers[i]->stats[k].limited);
			unt += LD(s->workers[i]->stats[k].untracked);
		}
		e |= sg_buf_printf(out,
		                   "sealguard_http_requests_limited_total{listener=\"%s\",result="
		                   "\"refused\"} %llu\n"
		                   "sealguard_http_requests_limited_total{listener=\"%s\",result="
		                   "\"untracked\"} %llu\n",
		                   s->listeners[k]->name_json, (unsigned long long)lim,
		                   s->listeners[k]->name_json, (unsigned long long)unt);
	}
	const char *cn[2] = {"accepted", "refused"};
	for (int m = 0; m < 2; m++) {
		e |= sg_buf_printf(out, "# TYPE sealguard_connections_%s_total counter\n", cn[m]);
		for (unsigned k = 0; k < s->nlisteners; k++) {
			uint64_t v = 0;
			for (unsigned i = 0; i < s->nworkers; i++)
				v += m ? LD(s->workers[i]->stats[k].refused)
				       : LD(s->workers[i]->stats[k].accepted);
			e |= sg_buf_printf(
			    out, "sealguard_connections_%s_total{listener=\"%s\"} %llu\n", cn[m],
			    s->listeners[k]->name_json, (unsigned long long)v);
		}
	}
	struct sg_tls_stats ts;
	sg_tls_stats_get(&ts);
	e |= sg_buf_printf(out,
	                   "# TYPE sealguard_tls_handshakes_total counter\n"
	                   "sealguard_tls_handshakes_total{result=\"full\"} %llu\n"
	                   "sealguard_tls_handshakes_total{result=\"resumed\"} %llu\n"
	                   "sealguard_tls_handshakes_total{result=\"failed\"} %llu\n",
	                   ts.handshakes_full, ts.handshakes_resumed, ts.handshake_failures);
	e |= sg_buf_appends(out, "# TYPE sealguard_http_requests_total counter\n");
	for (unsigned k = 0; k < s->nlisteners; k++)
		for (int code = 0; code < 600; code++) {
			uint64_t v = 0;
			for (unsigned i = 0; i < s->nworkers; i++)
				v += LD(s->workers[i]->stats[k].codes[code]);
			if (v)
				e |= sg_buf_printf(out,
				                   "sealguard_http_requests_total{listener=\"%s\","
				                   "code=\"%d\"} %llu\n",
				                   s->listeners[k]->name_json, code,
				                   (unsigned long long)v);
		}
	e |= sg_buf_appends(out, "# TYPE sealguard_http_request_duration_seconds histogram\n");
	for (unsigned k = 0; k < s->nlisteners; k++) {
		uint64_t cum = 0, sum = 0, cnt = 0;
		const char *ln = s->listeners[k]->name_json;
		for (int b = 0; b <= SG_HIST_BUCKETS; b++) {
			for (unsigned i = 0; i < s->nworkers; i++)
				cum += LD(s->workers[i]->stats[k].hist[b]);
			if (b < SG_HIST_BUCKETS)
				e |= sg_buf_printf(out,
				                   "sealguard_http_request_duration_seconds_bucket{"
				                   "listener=\"%s\",le=\"%g\"} %llu\n",
				                   ln, sg_hist_bounds[b], (unsigned long long)cum);
			else
				e |= sg_buf_printf(out,
				                   "sealguard_http_request_duration_seconds_bucket{"
				                   "listener=\"%s\",le=\"+Inf\"} %llu\n",
				                   ln, (unsigned long long)cum);
		}
		for (unsigned i = 0; i < s->nworkers; i++) {
			sum += LD(s->workers[i]->stats[k].dur_us_sum);
			cnt += LD(s->workers[i]->stats[k].count);
		}
		e |= sg_buf_printf(
		    out,
		    "sealguard_http_request_duration_seconds_sum{listener=\"%s\"} %.6f\n"
		    "sealguard_http_request_duration_seconds_count{listener=\"%s\"} "
		    "%llu\n",
		    ln, (double)sum / 1e6, ln, (unsigned long long)cnt);
	}
	return e ? SG_ERR_NOMEM : SG_OK;
#undef LD
}
