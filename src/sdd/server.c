/* sdd/server.c: the SEALDD server's lifecycle and registry snapshot (sdd.h, internal.h). */
#include "sdd/internal.h"

/* ---- registry snapshot (`sealguard valserver add NAME --val-service ID`) ---- */

/* Reloads the VAL servers when the registry generation moved. Runs on a store pool thread (and
 * once in sg_sdd_new), never on the data plane or HTTP loops. */
sg_err sdd_vals_refresh(struct sg_store *st, void *arg)
{
	struct sg_sdd *s = arg;
	uint64_t gen = 0;
	sg_err e = sg_store_generation(st, &gen);
	if (e != SG_OK)
		return e;
	pthread_mutex_lock(&s->mu);
	int same = s->vals && sg_store_vals_gen(s->vals) == gen;
	pthread_mutex_unlock(&s->mu);
	if (same)
		return SG_OK;
	struct sg_store_vals *v = NULL;
	if ((e = sg_store_vals_load(st, gen, &v)) != SG_OK)
		return e;
	pthread_mutex_lock(&s->mu);
	struct sg_store_vals *old = s->vals;
	s->vals = v;
	pthread_mutex_unlock(&s->mu);
	sg_store_vals_unref(old);
	return SG_OK;
}

static sg_err vals_job(struct sg_store *st, void *arg)
{
	sg_err e = sdd_vals_refresh(st, arg);
	if (e != SG_OK)
		sg_log_warn("sdd: registry refresh failed, keeping the previous snapshot: %s",
		            sg_store_last_error());
	return e;
}

static void vals_job_done(sg_err rc, void *arg)
{
	(void)rc;
	struct sg_sdd *s = arg;
	atomic_store(&s->vals_busy, 0);
}

int sdd_job_due(const struct sg_sdd *s, int64_t *next_ms, int64_t period_ms, atomic_int *busy)
{
	int64_t now = sg_now_ms();
	if (!s->pool || now < *next_ms)
		return 0;
	/* the next one is a period after this one runs: while the last is still in flight it
	 * stays due (the next tick tries again), not a whole period later */
	int expected = 0;
	if (!atomic_compare_exchange_strong(busy, &expected, 1))
		return 0;
	*next_ms = now + period_ms;
	return 1;
}

/* From the data plane's tick: queues a refresh (one at a time), never waits for the store. */
void sdd_vals_tick(struct sg_sdd *s)
{
	if (sdd_job_due(s, &s->next_vals_ms, REGISTRY_MS, &s->vals_busy) &&
	    sg_store_pool_submit_read(s->pool, vals_job, s, vals_job_done, s, NULL) != SG_OK)
		atomic_store(&s->vals_busy, 0);
}

/* Called with mu held: 0 when VAL server client_id is registered, enabled and serves svc;
 * else -1 with *why set. */
int sdd_vals_registered_locked(const struct sg_sdd *s, const char *client_id, const char **why)
{
	const struct sg_store_valserver *v = sg_store_vals_find(s->vals, client_id);
	if (!v || v->disabled) {
		*why = v ? "the VAL server is disabled in the registry"
		         : "the VAL server is not registered (sealguard valserver add)";
		return -1;
	}
	return 0;
}

int sdd_vals_serves_locked(const struct sg_sdd *s, const char *client_id, const char *svc,
                           const char **why)
{
	if (sdd_vals_registered_locked(s, client_id, why) != 0)
		return -1;
	const struct sg_store_valserver *v = sg_store_vals_find(s->vals, client_id);
	for (size_t i = 0; i < v->n_val_services; i++)
		if (strcmp(v->val_services[i], svc) == 0)
			return 0;
	*why = "the VAL server is not registered for this VAL service (valserver --val-service)";
	return -1;
}

/* ---- TLS files (T5): a renewed CRL or certificate reaches SEALDD as it reaches the listeners */

void sg_sdd_tls_reload(struct sg_sdd *s)
{
	char err[512] = "";
	if (!s)
		return;
	if (sg_tls_server_reload_if_changed(s->dtls, err, sizeof err) != SG_OK)
		sg_log_warn("sdd: TLS reload of the data endpoint failed, keeping the previous "
		            "files: %s",
		            err);
	if (sg_tls_client_reload_if_changed(s->val_tls, err, sizeof err) != SG_OK)
		sg_log_warn("sdd: TLS reload of the relay's client context failed, keeping the "
		            "previous files: %s",
		            err);
}

/* ---- lifecycle ---- */

static sg_err bind_data(struct sg_sdd *s, const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int sl = sizeof ss;
	/* libevent's parser refuses port 0 (any free port): parse it as 1, then zero it */
	char tmp[300];
	size_t al = strlen(addr);
	int any = al > 2 && al < sizeof tmp && !strcmp(addr + al - 2, ":0");
	if (any) {
		snprintf(tmp, sizeof tmp, "%.*s:1", (int)(al - 2), addr);
		addr = tmp;
	}
	if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sl) != 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "sdd.data_bind '%s': not host:port",
		               addr);
	if (any && ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else if (any)
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	s->lfd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (s->lfd < 0)
		return sg_fail(err, errlen, SG_ERR_IO, "socket: %s", strerror(errno));
	int one = 1;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(s->lfd, (struct sockaddr *)&ss, (socklen_t)sl) != 0 || listen(s->lfd, 1024) != 0)
		return sg_fail(err, errlen, SG_ERR_IO, "SEALDD data endpoint %s: %s", addr,
		               strerror(errno));
	evutil_make_socket_nonblocking(s->lfd);
	evutil_make_socket_closeonexec(s->lfd);
	sl = sizeof ss;
	getsockname(s->lfd, (struct sockaddr *)&ss, (socklen_t *)&sl);
	if (ss.ss_family == AF_INET) {
		s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, s->host,
		                 sizeof s->host);
	} else {
		s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, s->host,
		                 sizeof s->host);
	}
	return SG_OK;
}

/* What ddServerConnInfo names (s->host, s->port): the bound address, or sdd.data_advertise
 * ("host", "host:port", "[v6]:port" or a bare IPv6 address; the configuration requires it for
 * a wildcard data_bind, which names no address a client could reach). */
static sg_err advertise(struct sg_sdd *s, const char *adv, char *err, size_t errlen)
{
	if (!adv)
		return SG_OK;
	const char *h = adv, *colon = strrchr(adv, ':'), *port = NULL;
	size_t hl = strlen(adv);
	if (adv[0] == '[') { /* [v6] or [v6]:port */
		const char *rb = strchr(adv, ']');
		if (!rb || (rb[1] && rb[1] != ':'))
			return sg_fail(err, errlen, SG_ERR_CONFIG, "sdd.data_advertise '%s'", adv);
		h = adv + 1;
		hl = (size_t)(rb - h);
		port = rb[1] ? rb + 2 : NULL;
	} else if (colon && colon == strchr(adv, ':')) { /* one colon: host:port */
		hl = (size_t)(colon - adv);
		port = colon + 1;
	}
	if (!hl || hl >= sizeof s->host)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "sdd.data_advertise '%s': no host", adv);
	if (port) {
		char *end;
		unsigned long p = strtoul(port, &end, 10);
		if (!*port || *end || p < 1 || p > 65535)
			return sg_fail(err, errlen, SG_ERR_CONFIG,
			               "sdd.data_advertise '%s': the port must be 1..65535", adv);
		s->port = (int)p;
	}
	memcpy(s->host, h, hl);
	s->host[hl] = '\0';
	return SG_OK;
}

sg_err sg_sdd_new(const struct sg_conf *conf, struct sg_policy *policy, struct sg_sdd **out,
                  char *err, size_t errlen)
{
	const struct sg_conf_refpoint *uu = NULL;
	for (unsigned i = 0; i < conf->n_refpoints && !uu; i++) {
		const struct sg_conf_refpoint *rp = &conf->refpoints[i];
		for (unsigned j = 0; j < rp->n_services; j++)
			if (!strcmp(rp->services[j], "sdd") && rp->auth_mode == SG_AUTH_BEARER)
				uu = rp;
	}
	if (!uu)
		return sg_fail(
		    err, errlen, SG_ERR_CONFIG,
		    "the sdd role needs a bearer reference point serving sdd (SEALDD-UU)");
	struct sg_sdd *s = calloc(1, sizeof *s);
	if (!s)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	s->conf = conf;
	s->policy = policy;
	s->lfd = -1;
	pthread_mutex_init(&s->mu, NULL);
	/* notifications: bounded queue (NOTIF_MAX_*), where VAL servers whose endpoints did not
	 * answer never take the last worker; ncv on the monotonic clock (retries fall due) */
	sg_sdd_notifq_init(&s->nq, NOTIF_MAX_QUEUED, NOTIF_MAX_PER_OWNER, NOTIF_WORKERS - 1);
	pthread_mutex_init(&s->nmu, NULL);
	pthread_condattr_t nca;
	pthread_condattr_init(&nca);
	pthread_condattr_setclock(&nca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->ncv, &nca);
	pthread_condattr_destroy(&nca);
	sg_ratelimit_init(&s->chan_rate, conf->sdd.channels_per_second_per_addr,
	                  2 * conf->sdd.channels_per_second_per_addr, SG_RATELIMIT_MAX_KEYS);
	sg_err e;
	if (!(s->flows = sg_sdd_flowtab_new(MAX_FLOWS, MAX_FLOWS_USER))) {
		e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if ((e = sdd_ddc_new(s, err, errlen)) != SG_OK) /* SEALDD-E (TS 33.434 Rel-18 D3) */
		goto fail;
	/* SEALDD-UU user plane as R1: the SEAL-UU server certificate and profile, TLS 1.3 only */
	struct sg_tls_conf tc = uu->tls;
	tc.min_version = "TLS1.3";
	tc.max_version = "TLS1.3";
	char why[256];
	if ((e = sg_tls_server_new(&tc, 0, &s->dtls, why, sizeof why)) != SG_OK) {
		sg_fail(err, errlen, e, "SEALDD data endpoint TLS: %s", why);
		goto fail;
	}
	/* SEALDD-S user plane as R3: mutual TLS with this server's own certificate */
	struct sg_tls_conf vc = {.mode = SG_TLS_MUTUAL,
	                         .cert = conf->resource.client_cert,
	                         .key = conf->resource.client_key,
	                         .ca = conf->resource.ca,
	                         .crl = conf->resource.crl};
	if ((e = sg_tls_client_new(&vc, &s->val_tls, why, sizeof why)) != SG_OK) {
		sg_fail(err, errlen, e, "SEALDD relay TLS: %s", why);
		goto fail;
	}
	/* the registry snapshot: loaded now, then refreshed on this pool's thread, whose writer
	 * also stores the SEALDD-S state (api.c) */
	const char *driver = conf->store_driver ? conf->store_driver : "sqlite";
	const char *where = !strcmp(driver, "postgres") ? conf->store_url : conf->store_path;
	if ((e = sg_store_pool_create(driver, where, 1, &s->pool, err, errlen)) != SG_OK)
		goto fail;
	struct sg_store *st = NULL;
	if ((e = sg_store_open(driver, where, &st, err, errlen)) != SG_OK)
		goto fail;
	e = sdd_vals_refresh(st, s);
	if (e != SG_OK) {
		sg_store_close(st);
		sg_fail(err, errlen, e, "sdd: loading the VAL servers: %s", sg_store_last_error());
		goto fail;
	}
	/* acknowledged SEALDD-S writes survive a restart or crash (DESIGN.md §5): the
	 * transmissions and subscriptions the store holds; flows and data channels are bound to
	 * live TLS connections and are not kept (clients re-establish them) */
	e = sdd_state_load(s, st, err, errlen);
	sg_store_close(st);
	if (e != SG_OK)
		goto fail;
	if (conf->sdd.data_bind) {
		if ((e = bind_data(s, conf->sdd.data_bind, err, errlen)) != SG_OK)
			goto fail;
	} else if (bind_data(s, "127.0.0.1:9446", why, sizeof why) != SG_OK) {
		/* the default port is taken (another instance, a test): any free loopback port */
		if (s->lfd >= 0)
			close(s->lfd);
		s->lfd = -1;
		if ((e = bind_data(s, "127.0.0.1:0", err, errlen)) != SG_OK)
			goto fail;
	}
	if ((e = advertise(s, conf->sdd.data_advertise, err, errlen)) != SG_OK)
		goto fail;
	*out = s;
	return SG_OK;
fail:
	sg_sdd_free(s);
	return e;
}

sg_err sg_sdd_start(struct sg_sdd *s, char *err, size_t errlen)
{
	/* After DISPATCH_CALLBACKS callbacks the loop polls again and runs its timers. A connection
	 * that read its budget (RBUDGET) with more buffered activates itself again, and libevent
	 * runs events activated during a pass in that same pass: without the limit, one client
	 * keeping its socket full (frames that need no answer) held the loop, so no other
	 * connection, the accept, nor the tick (expiry, revocation, stall bounds) ran. */
	struct event_config *cfg = event_config_new();
	if (cfg && event_config_set_max_dispatch_interval(cfg, NULL, DISPATCH_CALLBACKS, 0) == 0)
		s->base = event_base_new_with_config(cfg);
	if (cfg)
		event_config_free(cfg);
	if (!s->base)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "event base");
	s->dns = evdns_base_new(s->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (!s->dns && (s->dns = evdns_base_new(s->base, 0)))
		evdns_base_load_hosts(s->dns, NULL);
	if (!s->dns)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "resolver");
	s->lis = evconnlistener_new(s->base, sdd_accept_cb, s, LEV_OPT_CLOSE_ON_FREE, 0, s->lfd);
	if (!s->lis)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "listener");
	s->lfd = -1; /* the listener owns it */
	evconnlistener_set_error_cb(s->lis, sdd_accept_error_cb);
	s->tick = event_new(s->base, -1, EV_PERSIST, sdd_tick_cb, s);
	struct timeval tv = {0, SWEEP_MS * 1000};
	if (!s->tick || event_add(s->tick, &tv) != 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "timer");
	if (pthread_create(&s->th, NULL, sdd_dp_main, s) != 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "thread");
	s->started = 1;
	for (; s->nstarted < NOTIF_WORKERS; s->nstarted++)
		if (pthread_create(&s->nth[s->nstarted], NULL, sdd_notif_main, s) != 0)
			return sg_fail(err, errlen, SG_ERR_INTERNAL, "thread");
	if (sdd_ddc_start(s, err, errlen) != SG_OK)
		return SG_ERR_INTERNAL;
	sg_log_info("SEALDD-UU data endpoint listening on %s, clients sent to %s:%d (TLS 1.3; "
	            "docs/sdd-protocol.md)",
	            s->conf->sdd.data_bind ? s->conf->sdd.data_bind : "loopback", s->host, s->port);
	return SG_OK;
}

int sg_sdd_data_port(const struct sg_sdd *s)
{
	return s->port;
}

sg_err sg_sdd_metrics(struct sg_sdd *s, struct sg_buf *out)
{
	if (!s)
		return SG_OK;
	pthread_mutex_lock(&s->mu);
	size_t flows = sg_sdd_flowtab_count(s->flows), trans = 0;
	for (const struct trans *t = s->trans; t; t = t->next)
		trans++;
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_lock(&s->nmu); /* not under mu: the lock order is mu, then nmu */
	size_t pending = s->nq.n;
	pthread_mutex_unlock(&s->nmu);
#define C(x) ((unsigned long long)atomic_load_explicit(&s->x, memory_order_relaxed))
	sg_err e = sg_buf_printf(
	    out,
	    "# HELP sealguard_sdd_channels_open SEALDD-UU data channels open.\n"
	    "# TYPE sealguard_sdd_channels_open gauge\n"
	    "sealguard_sdd_channels_open %llu\n"
	    "# HELP sealguard_sdd_channels_refused_total SEALDD-UU data channels refused by a "
	    "limit (G4), by limit.\n"
	    "# TYPE sealguard_sdd_channels_refused_total counter\n"
	    "sealguard_sdd_channels_refused_total{limit=\"max_channels\"} %llu\n"
	    "sealguard_sdd_channels_refused_total{limit=\"max_unauthenticated_per_address\"} "
	    "%llu\n"
	    "sealguard_sdd_channels_refused_total{limit=\"max_channels_per_user\"} %llu\n"
	    "sealguard_sdd_channels_refused_total{limit=\"channels_per_second_per_address\"} "
	    "%llu\n"
	    "# HELP sealguard_sdd_channels_stalled_total SEALDD-UU data channels closed because "
	    "their output made no write progress in sdd.channel_stall_s (G4).\n"
	    "# TYPE sealguard_sdd_channels_stalled_total counter\n"
	    "sealguard_sdd_channels_stalled_total %llu\n"
	    "# HELP sealguard_sdd_output_queued_bytes Bytes queued for the output of the SEALDD-UU "
	    "data channels (per user at most sdd.user_output_mib, G4), sampled every 250 ms.\n"
	    "# TYPE sealguard_sdd_output_queued_bytes gauge\n"
	    "sealguard_sdd_output_queued_bytes %llu\n"
	    "# HELP sealguard_sdd_relay_queued_bytes Bytes queued in the relays of attached flows "
	    "toward their VAL servers (per user at most about sdd.user_output_mib, G4), sampled "
	    "every 250 ms.\n"
	    "# TYPE sealguard_sdd_relay_queued_bytes gauge\n"
	    "sealguard_sdd_relay_queued_bytes %llu\n"
	    "# HELP sealguard_sdd_accept_failures_total Failed accepts on the data endpoint "
	    "(out of file descriptors: the endpoint pauses 1 s).\n"
	    "# TYPE sealguard_sdd_accept_failures_total counter\n"
	    "sealguard_sdd_accept_failures_total %llu\n"
	    "# HELP sealguard_sdd_flows_open SEALDD flows allocated (sdd-flows/v1), not yet "
	    "freed.\n"
	    "# TYPE sealguard_sdd_flows_open gauge\n"
	    "sealguard_sdd_flows_open %zu\n"
	    "# HELP sealguard_sdd_transmissions SEALDD-S transmissions requested (request-trans).\n"
	    "# TYPE sealguard_sdd_transmissions gauge\n"
	    "sealguard_sdd_transmissions %zu\n"
	    "# HELP sealguard_sdd_relayed_bytes_total VAL payload bytes relayed, by direction.\n"
	    "# TYPE sealguard_sdd_relayed_bytes_total counter\n"
	    "sealguard_sdd_relayed_bytes_total{direction=\"uplink\"} %llu\n"
	    "sealguard_sdd_relayed_bytes_total{direction=\"downlink\"} %llu\n"
	    "# HELP sealguard_sdd_duplicates_dropped_total Uplink DATA frames dropped as not new "
	    "(URLLC copies, repeated or stale sequence numbers).\n"
	    "# TYPE sealguard_sdd_duplicates_dropped_total counter\n"
	    "sealguard_sdd_duplicates_dropped_total %llu\n"
	    "# HELP sealguard_sdd_notifications_total Connection status notifications, by result "
	    "(dropped: over a queue bound; cancelled: subscription deleted before delivery).\n"
	    "# TYPE sealguard_sdd_notifications_total counter\n"
	    "sealguard_sdd_notifications_total{result=\"sent\"} %llu\n"
	    "sealguard_sdd_notifications_total{result=\"failed\"} %llu\n"
	    "sealguard_sdd_notifications_total{result=\"dropped\"} %llu\n"
	    "sealguard_sdd_notifications_total{result=\"cancelled\"} %llu\n"
	    "# HELP sealguard_sdd_notifications_pending Connection status notifications queued or "
	    "in delivery.\n"
	    "# TYPE sealguard_sdd_notifications_pending gauge\n"
	    "sealguard_sdd_notifications_pending %zu\n",
	    C(chans_open), C(refused_chans), C(refused_addr), C(refused_user), C(refused_rate),
	    C(chans_stalled), C(out_queued), C(relay_queued), C(accept_failed), flows, trans,
	    C(bytes_up), C(bytes_down), C(dup_dropped), C(notif_sent), C(notif_failed),
	    C(notif_dropped), C(notif_cancelled), pending);
	if (e == SG_OK)
		e = sg_buf_printf(out,
		                  "# HELP sealguard_sdd_flow_ends_total Flows ended on the data "
		                  "plane after their first ATTACH, by the END reason sent.\n"
		                  "# TYPE sealguard_sdd_flow_ends_total counter\n");
	for (size_t i = 0; e == SG_OK && i < SDD_N_ENDS; i++)
		e = sg_buf_printf(out, "sealguard_sdd_flow_ends_total{reason=\"%s\"} %llu\n",
		                  SDD_END_REASONS[i], C(flow_ends[i]));
	return e;
#undef C
}

static void free_rt(struct sg_sdd_flow *f, void *arg)
{
	(void)arg;
	sdd_frt_free(f->rt);
	f->rt = NULL;
}

void sg_sdd_free(struct sg_sdd *s)
{
	if (!s)
		return;
	atomic_store(&s->stop, 1);
	sdd_ddc_free(s); /* first: a relocation in flight still reads the flow table */
	if (s->started)
		pthread_join(s->th, NULL);
	if (s->nstarted) {
		pthread_mutex_lock(&s->nmu);
		pthread_cond_broadcast(&s->ncv);
		pthread_mutex_unlock(&s->nmu);
		for (int i = 0; i < s->nstarted; i++)
			pthread_join(s->nth[i], NULL);
	}
	/* no refresh is queued after this (the data plane has stopped) */
	sg_store_pool_destroy(s->pool);
	s->pool = NULL;
	/* the loop has stopped: everything below runs on this thread alone */
	while (s->chans)
		sdd_chan_free(s->chans);
	sg_addrtab_free(&s->unauth);
	sg_ratelimit_free(&s->chan_rate);
	if (s->flows) {
		sg_sdd_flowtab_each(s->flows, free_rt, NULL);
		sg_sdd_flowtab_free(s->flows);
	}
	if (s->lis)
		evconnlistener_free(s->lis);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->tick)
		event_free(s->tick);
	if (s->dns)
		evdns_base_free(s->dns, 0);
	if (s->base)
		event_base_free(s->base);
	while (s->trans) {
		struct trans *t = s->trans;
		s->trans = t->next;
		sdd_trans_free(t);
	}
	while (s->subs) {
		struct subsc *x = s->subs;
		s->subs = x->next;
		sdd_subsc_free(x);
	}
	/* the workers are joined: none holds a notification */
	size_t unsent = sg_sdd_notifq_clear(&s->nq);
	if (s->notif_sent || s->notif_failed || s->notif_dropped || s->notif_cancelled || unsent ||
	    s->dup_dropped)
		sg_log_info(
		    "sdd: notifications sent %llu, failed %llu, dropped %llu, cancelled %llu, "
		    "%zu not sent at shutdown; duplicates dropped %llu",
		    (unsigned long long)s->notif_sent, (unsigned long long)s->notif_failed,
		    (unsigned long long)s->notif_dropped, (unsigned long long)s->notif_cancelled,
		    unsent, (unsigned long long)s->dup_dropped);
	sg_store_vals_unref(s->vals);
	sg_tls_client_free(s->val_tls);
	sg_tls_server_free(s->dtls);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->nmu);
	pthread_cond_destroy(&s->ncv);
	free(s);
}
