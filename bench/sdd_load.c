/* bench/sdd_load.c: the load client of bench/sdd.sh. Drives N flows in N threads (one TLS
 * connection each, set up before the clock starts) and measures the same way on both paths:
 *   sdd: through the SEALDD server: sdd-flows/v1 flow per thread, then a TLS 1.3 data channel
 *        (src/client/sddc.h, the SEALDD client library as a VAL client uses it);
 *   tls: a plain TLS 1.3 byte stream (OpenSSL directly): the baseline relay, or the VAL echo
 *        endpoint itself (with --cert/--key: mutual TLS) for the direct round trip.
 * Workloads, both against an echo behind the path:
 *   thr: each flow sends --bytes in writes of --write bytes (default 16 KiB), at most --window
 *        bytes in flight, and reads the echo back; prints the aggregate MB/s (echoed bytes /
 *        wall time, 1 MB = 10^6 B), cpu_s, the load client's CPU seconds while the data
 *        moved (no setup, teardown), and the machine's CPU time over the same window
 *        (/proc/stat) as shares of all CPUs: busy, and within it sys, softirq and steal;
 *   lat: each flow does --count round trips of --size bytes (write, then read until all came
 *        back) after 200 warm-up ones; prints p50/p99/max in microseconds over all flows.
 * Output: one line of key=value pairs. Built by bench/sdd.sh against libsealguard_core.a. */
#include "client/sddc.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 200

struct opts {
	const char *mode, *work;
	const char *host, *url, *ca, *cert, *key, *token, *service, *sni;
	unsigned port, flows;
	size_t bytes, window, size, write;
	unsigned count;
};

static struct opts O = {.flows = 1,
                        .bytes = 64u << 20,
                        .window = 256u << 10,
                        .write = 16u << 10,
                        .size = 1024,
                        .count = 2000,
                        .sni = "localhost"};
static SSL_CTX *ctx;
static pthread_barrier_t start_bar, end_bar;

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 +
	       (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

/* The machine's CPU time so far, in clock ticks (/proc/stat "cpu"): all, idle (with iowait),
 * stolen by the hypervisor, system and softirq. */
struct mstat {
	unsigned long long all, idle, steal, sys, sirq;
};

static struct mstat mstat(void)
{
	struct mstat m = {0, 0, 0, 0, 0};
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
	                &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
		for (int i = 0; i < 8; i++)
			m.all += v[i];
		m.idle = v[3] + v[4];
		m.steal = v[7];
		m.sys = v[2];
		m.sirq = v[6];
	}
	if (f)
		fclose(f);
	return m;
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "sdd_load: %s: %s\n", what, why);
	exit(1);
}

/* One connection, either kind, with the same blocking write/read interface. */
struct conn {
	SSL *ssl;
	int fd;
	struct sg_sddc *dd;
	char flow[32];
};

static void conn_open(struct conn *c)
{
	char err[512];
	memset(c, 0, sizeof *c);
	if (!strcmp(O.mode, "sdd")) {
		struct sg_sddc_conf cf = {
		    .url = O.url, .ca = O.ca, .token = O.token, .timeout_ms = 30000};
		struct sg_sddc_flow f;
		if (sg_sddc_flow_open(&cf, O.service, &f, err, sizeof err) != SG_OK)
			die("flow open", err);
		snprintf(c->flow, sizeof c->flow, "%s", f.id);
		if (sg_sddc_connect(&cf, f.host, f.port, 1, &c->dd, err, sizeof err) != SG_OK)
			die("data channel", err);
		if (sg_sddc_attach(c->dd, c->flow, 0, err, sizeof err) != SG_OK)
			die("attach", err);
		return;
	}
	char ps[8];
	snprintf(ps, sizeof ps, "%u", O.port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	if (getaddrinfo(O.host, ps, &hints, &ai) != 0 || !ai)
		die("resolve", O.host);
	c->fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0)
		die("connect", strerror(errno));
	freeaddrinfo(ai);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, O.sni);
	SSL_set1_host(c->ssl, O.sni);
	if (SSL_connect(c->ssl) != 1)
		die("TLS handshake", ERR_reason_error_string(ERR_get_error()));
}

static void conn_write(struct conn *c, const void *p, size_t n)
{
	char err[512];
	if (c->dd) {
		if (sg_sddc_send(c->dd, c->flow, p, n, err, sizeof err) != SG_OK)
			die("send", err);
		return;
	}
	size_t ww;
	if (SSL_write_ex(c->ssl, p, n, &ww) != 1 || ww != n)
		die("write", "TLS write failed");
}

static size_t conn_read(struct conn *c, void *p, size_t cap)
{
	char err[512];
	size_t n = 0;
	if (c->dd) {
		if (sg_sddc_recv(c->dd, c->flow, p, cap, 30000, &n, err, sizeof err) != SG_OK)
			die("recv", err);
		return n;
	}
	if (SSL_read_ex(c->ssl, p, cap, &n) != 1)
		die("read", "TLS read failed or closed");
	return n;
}

static void conn_close(struct conn *c)
{
	char err[512];
	if (c->dd) {
		sg_sddc_close(c->dd);
		struct sg_sddc_conf cf = {
		    .url = O.url, .ca = O.ca, .token = O.token, .timeout_ms = 30000};
		sg_sddc_flow_release(&cf, c->flow, err, sizeof err);
		return;
	}
	SSL_shutdown(c->ssl);
	SSL_free(c->ssl);
	close(c->fd);
}

struct job {
	pthread_t th;
	double t0, t1;
	size_t echoed;
	double *lat; /* microseconds, count entries */
};

static void *run(void *arg)
{
	struct job *j = arg;
	struct conn c;
	conn_open(&c);
	size_t cap = O.window > O.size ? O.window : O.size;
	unsigned char *out = malloc(O.write > O.size ? O.write : O.size), *in = malloc(cap);
	if (!out || !in)
		die("memory", "out of memory");
	for (size_t i = 0; i < (O.write > O.size ? O.write : O.size); i++)
		out[i] = (unsigned char)(i * 131u + 7u);
	if (!strcmp(O.work, "lat")) {
		for (unsigned k = 0; k < WARMUP + O.count; k++) {
			if (k == WARMUP)
				pthread_barrier_wait(&start_bar);
			double a = now_s();
			conn_write(&c, out, O.size);
			for (size_t got = 0; got < O.size;)
				got += conn_read(&c, in + got, O.size - got);
			if (k >= WARMUP)
				j->lat[k - WARMUP] = (now_s() - a) * 1e6;
		}
		j->echoed = (size_t)O.count * O.size;
	} else {
		pthread_barrier_wait(&start_bar);
		j->t0 = now_s();
		size_t sent = 0, got = 0;
		while (got < O.bytes) {
			while (sent < O.bytes && sent - got < O.window) {
				size_t n = O.bytes - sent < O.write ? O.bytes - sent : O.write;
				conn_write(&c, out, n);
				sent += n;
			}
			got += conn_read(&c, in, cap);
		}
		j->t1 = now_s();
		j->echoed = got;
		pthread_barrier_wait(&end_bar); /* the CPU of the timed part is read here */
	}
	conn_close(&c);
	free(out);
	free(in);
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static char *slurp_token(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die(path, strerror(errno));
	static char tok[16384];
	size_t n = fread(tok, 1, sizeof tok - 1, f);
	fclose(f);
	while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
		n--;
	tok[n] = '\0';
	return tok;
}

static void usage(void)
{
	fputs("usage: sdd_load sdd|tls thr|lat [--url U --token-file F --service S] [--host H "
	      "--port P] --ca F [--cert F --key F] [--sni NAME] [--flows N] [--bytes B] "
	      "[--window B] [--write B] [--size B] [--count N]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	O.mode = argv[1];
	O.work = argv[2];
	if ((strcmp(O.mode, "sdd") && strcmp(O.mode, "tls")) ||
	    (strcmp(O.work, "thr") && strcmp(O.work, "lat")))
		usage();
	for (int i = 3; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--url"))
			O.url = v;
		else if (!strcmp(k, "--token-file"))
			O.token = slurp_token(v);
		else if (!strcmp(k, "--service"))
			O.service = v;
		else if (!strcmp(k, "--host"))
			O.host = v;
		else if (!strcmp(k, "--port"))
			O.port = (unsigned)atoi(v);
		else if (!strcmp(k, "--ca"))
			O.ca = v;
		else if (!strcmp(k, "--cert"))
			O.cert = v;
		else if (!strcmp(k, "--key"))
			O.key = v;
		else if (!strcmp(k, "--sni"))
			O.sni = v;
		else if (!strcmp(k, "--flows"))
			O.flows = (unsigned)atoi(v);
		else if (!strcmp(k, "--bytes"))
			O.bytes = strtoull(v, NULL, 10);
		else if (!strcmp(k, "--window"))
			O.window = strtoull(v, NULL, 10);
		else if (!strcmp(k, "--write"))
			O.write = strtoull(v, NULL, 10);
		else if (!strcmp(k, "--size"))
			O.size = strtoull(v, NULL, 10);
		else if (!strcmp(k, "--count"))
			O.count = (unsigned)atoi(v);
		else
			usage();
	}
	if (!O.ca || !O.flows || !O.size || !O.count || !O.window ||
	    (!strcmp(O.mode, "sdd") && (!O.url || !O.token || !O.service)) ||
	    (!strcmp(O.mode, "tls") && (!O.host || !O.port)))
		usage();
	/* the data endpoint's profile: TLS 1.3, the TS 33.210 suites; the same on both paths */
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384") != 1 ||
	    SSL_CTX_load_verify_locations(ctx, O.ca, NULL) != 1)
		die("TLS context", O.ca);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (O.cert && (SSL_CTX_use_certificate_chain_file(ctx, O.cert) != 1 ||
	               SSL_CTX_use_PrivateKey_file(ctx, O.key, SSL_FILETYPE_PEM) != 1))
		die("client certificate", O.cert);
	struct job *jobs = calloc(O.flows, sizeof *jobs);
	double *lat = calloc((size_t)O.flows * O.count, sizeof *lat);
	if (!jobs || !lat)
		die("memory", "out of memory");
	pthread_barrier_init(&start_bar, NULL, O.flows + 1);
	pthread_barrier_init(&end_bar, NULL, O.flows + 1);
	for (unsigned i = 0; i < O.flows; i++) {
		jobs[i].lat = lat + (size_t)i * O.count;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setstacksize(&at, 1u << 20);
		if (pthread_create(&jobs[i].th, &at, run, &jobs[i]) != 0)
			die("thread", strerror(errno));
		pthread_attr_destroy(&at);
	}
	pthread_barrier_wait(&start_bar); /* every flow is set up */
	double t0 = now_s(), cpu = 0;
	struct mstat m0 = mstat(), m1 = m0;
	if (!strcmp(O.work, "thr")) {
		/* this process's CPU seconds between start and end of the data (no setup, no
		 * teardown): what the client library costs per byte */
		double c0 = cpu_s();
		pthread_barrier_wait(&end_bar);
		cpu = cpu_s() - c0;
		m1 = mstat();
	}
	size_t total = 0;
	for (unsigned i = 0; i < O.flows; i++) {
		pthread_join(jobs[i].th, NULL);
		total += jobs[i].echoed;
	}
	double wall = now_s() - t0;
	if (!strcmp(O.work, "thr")) {
		/* from the first flow's start to the last flow's last byte (not the teardown) */
		double a = jobs[0].t0, b = jobs[0].t1;
		for (unsigned i = 1; i < O.flows; i++) {
			a = jobs[i].t0 < a ? jobs[i].t0 : a;
			b = jobs[i].t1 > b ? jobs[i].t1 : b;
		}
		wall = b - a;
		double all = m1.all > m0.all ? (double)(m1.all - m0.all) : 1;
		printf("mode=%s flows=%u bytes=%zu secs=%.3f mbps=%.1f cpu_s=%.2f busy=%.3f "
		       "sys=%.3f softirq=%.3f steal=%.3f\n",
		       O.mode, O.flows, total, wall, (double)total / 1e6 / wall, cpu,
		       1 - (double)(m1.idle - m0.idle) / all, (double)(m1.sys - m0.sys) / all,
		       (double)(m1.sirq - m0.sirq) / all, (double)(m1.steal - m0.steal) / all);
	} else {
		size_t n = (size_t)O.flows * O.count;
		qsort(lat, n, sizeof *lat, cmp_d);
		printf("mode=%s flows=%u size=%zu count=%zu p50_us=%.1f p99_us=%.1f max_us=%.1f\n",
		       O.mode, O.flows, O.size, n, lat[n / 2], lat[(n * 99) / 100], lat[n - 1]);
	}
	free(jobs);
	free(lat);
	SSL_CTX_free(ctx);
	return 0;
}
