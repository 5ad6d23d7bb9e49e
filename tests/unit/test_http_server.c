/* The server end to end on loopback: a TLS listener (HTTP/1.1 and HTTP/2 by ALPN) driven by the
 * real curl and nghttp binaries and by raw OpenSSL clients; limits (431, 413, 400, slowloris,
 * max connections), ProblemDetails bodies, access log, metrics and the graceful drain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "http/http.h"
#include "net/server.h"
#include "tls/pki.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char g_dir[64], g_ca[128], g_logpath[128];
static struct sg_server *g_srv;
static struct sg_tls_server *g_tls;
static struct sg_router *g_rt;
static pthread_t g_th;
static int g_port, g_plain_port, g_lim_port;
static sg_err g_run_rc = SG_ERR_INTERNAL;
static FILE *g_log;

/* --- handlers --- */
static enum sg_http_result h_health(struct sg_http_req *r, void *arg)
{
	(void)arg;
	sg_http_resp_body(r, "ok", 2, "text/plain");
	return SG_HTTP_DONE;
}

static enum sg_http_result h_echo(struct sg_http_req *r, void *arg)
{
	(void)arg;
	json_t *j = sg_http_req_json(r);
	if (!j)
		return SG_HTTP_DONE;
	json_t *o =
	    json_pack("{s:o,s:s,s:i}", "echo", j, "proto",
	              sg_http_req_version(r) == 20 ? "h2" : "h1", "tls", sg_http_req_is_tls(r));
	sg_http_resp_json(r, 200, o);
	return SG_HTTP_DONE;
}

static enum sg_http_result h_size(struct sg_http_req *r, void *arg)
{
	(void)arg;
	size_t n;
	sg_http_req_body(r, &n);
	char b[32];
	snprintf(b, sizeof b, "%zu", n);
	sg_http_resp_body(r, b, strlen(b), "text/plain");
	return SG_HTTP_DONE;
}

static enum sg_http_result h_item(struct sg_http_req *r, void *arg)
{
	(void)arg;
	const char *id = sg_http_req_param(r, "id");
	const char *q = sg_http_req_query_param(r, "q");
	char b[256];
	snprintf(b, sizeof b, "%s|%s", id, q ? q : "-");
	sg_http_resp_body(r, b, strlen(b), "text/plain");
	return SG_HTTP_DONE;
}

static void slow_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sg_http_req *r = arg;
	sg_http_resp_body(r, "late", 4, "text/plain");
	sg_http_req_finish(r);
}

/* Completes 700 ms later on the same loop (SG_HTTP_ASYNC). */
static enum sg_http_result h_slow(struct sg_http_req *r, void *arg)
{
	(void)arg;
	struct timeval tv = {0, 700000};
	event_base_once(sg_http_req_loop(r), -1, EV_TIMEOUT, slow_done, r, &tv);
	return SG_HTTP_ASYNC;
}

static int pre_deny(struct sg_http_req *r, void *arg)
{
	(void)arg;
	if (sg_http_req_header(r, "x-deny")) {
		sg_http_resp_problem(r, 403, "NOT_AUTHORIZED", "denied by pre-handler");
		return SG_HTTP_DONE;
	}
	return -1;
}

static void *run_thread(void *arg)
{
	(void)arg;
	g_run_rc = sg_server_run(g_srv);
	return NULL;
}

static int setup(void **state)
{
	(void)state;
	char err[256] = "";
	strcpy(g_dir, "/tmp/sg-srv-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	struct sg_pki_opts po = {.dir = g_dir};
	assert_int_equal(sg_pki_init(&po, err, sizeof err), SG_OK);
	snprintf(g_ca, sizeof g_ca, "%s/ca.crt", g_dir);
	char crt[128], key[128];
	snprintf(crt, sizeof crt, "%s/server.crt", g_dir);
	snprintf(key, sizeof key, "%s/server.key", g_dir);
	struct sg_tls_conf tc = {
	    .mode = SG_TLS_SERVER_AUTH, .cert = crt, .key = key, .session_tickets = 1};
	if (sg_tls_server_new(&tc, 1, &g_tls, err, sizeof err) != SG_OK)
		fail_msg("tls: %s", err);
	snprintf(g_logpath, sizeof g_logpath, "%s/access.log", g_dir);
	g_log = fopen(g_logpath, "w+");
	assert_non_null(g_log);
	sg_log_set_stream(g_log);

	g_rt = sg_router_new();
	sg_router_add(g_rt, "GET", "/healthz", h_health, NULL);
	sg_router_add(g_rt, "POST", "/echo", h_echo, NULL);
	sg_router_add(g_rt, "POST", "/size", h_size, NULL);
	sg_router_add(g_rt, "GET", "/items/{id}", h_item, NULL);
	sg_router_add(g_rt, "DELETE", "/items/{id}", h_item, NULL);
	sg_router_add(g_rt, "GET", "/slow", h_slow, NULL);

	assert_int_equal(sg_server_new(2, &g_srv), SG_OK);
	struct sg_listener_conf lc = {.name = "SEAL-UU",
	                              .bind = "127.0.0.1:0",
	                              .tls = g_tls,
	                              .router = g_rt,
	                              .pre = pre_deny,
	                              .access_log = 1};
	sg_limits_default(&lc.limits);
	lc.limits.max_body_bytes = 64 * 1024;
	lc.limits.header_timeout_ms = 1500;
	if (sg_server_add_listener(g_srv, &lc, err, sizeof err) != SG_OK)
		fail_msg("listener: %s", err);
	struct sg_listener_conf pc = {.name = "ADMIN", .bind = "127.0.0.1:0", .router = g_rt};
	sg_limits_default(&pc.limits);
	assert_int_equal(sg_server_add_listener(g_srv, &pc, err, sizeof err), SG_OK);
	struct sg_listener_conf mc = {.name = "LIMITED", .bind = "127.0.0.1:0", .router = g_rt};
	sg_limits_default(&mc.limits);
	mc.limits.max_connections = 2;
	assert_int_equal(sg_server_add_listener(g_srv, &mc, err, sizeof err), SG_OK);
	/* a taken port fails at add time with a message */
	char busy[64];
	g_port = sg_server_listener_port(g_srv, "SEAL-UU");
	assert_true(g_port > 0);
	snprintf(busy, sizeof busy, "127.0.0.1:%d", g_port);
	struct sg_listener_conf bc = {.name = "BUSY", .bind = busy, .router = g_rt};
	sg_limits_default(&bc.limits);
	assert_int_not_equal(sg_server_add_listener(g_srv, &bc, err, sizeof err), SG_OK);
	assert_non_null(strstr(err, "BUSY"));
	g_plain_port = sg_server_listener_port(g_srv, "ADMIN");
	g_lim_port = sg_server_listener_port(g_srv, "LIMITED");
	assert_int_equal(sg_server_listener_port(g_srv, "nope"), -1);
	assert_int_equal(pthread_create(&g_th, NULL, run_thread, NULL), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sg_server_free(g_srv);
	sg_router_free(g_rt);
	sg_tls_server_free(g_tls);
	sg_log_set_stream(NULL);
	if (g_log)
		fclose(g_log);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
	if (system(cmd) != 0)
		return -1;
	return 0;
}

/* Runs a shell command, returns its stdout (caller frees). */
static char *sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	struct sg_buf b = SG_BUF_INIT;
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, p)) > 0)
		sg_buf_append(&b, tmp, n);
	pclose(p);
	sg_buf_appends(&b, "");
	return b.data;
}

#define CURL "curl -s --max-time 10 --cacert %s "

static void test_get_h1_h2(void **state)
{
	(void)state;
	char *o =
	    sh(CURL "--http1.1 -w ' %%{http_code} %%{http_version}' https://127.0.0.1:%d/healthz",
	       g_ca, g_port);
	assert_string_equal(o, "ok 200 1.1");
	free(o);
	o = sh(CURL "--http2 -w ' %%{http_code} %%{http_version}' https://127.0.0.1:%d/healthz",
	       g_ca, g_port);
	assert_string_equal(o, "ok 200 2");
	free(o);
	/* headers: Cache-Control no-store, Content-Length; HEAD has no body */
	o = sh(CURL "--http1.1 -I https://127.0.0.1:%d/healthz", g_ca, g_port);
	assert_non_null(strstr(o, "HTTP/1.1 200"));
	assert_non_null(strstr(o, "Cache-Control: no-store"));
	assert_non_null(strstr(o, "Content-Length: 2"));
	free(o);
	o = sh(CURL "--http2 -I https://127.0.0.1:%d/healthz", g_ca, g_port);
	assert_non_null(strstr(o, "HTTP/2 200"));
	assert_non_null(strstr(o, "cache-control: no-store"));
	free(o);
	/* params and query */
	o = sh(CURL "--http2 'https://127.0.0.1:%d/items/a%%20b?q=x%%26y'", g_ca, g_port);
	assert_string_equal(o, "a b|x&y");
	free(o);
	/* plain admin listener */
	o = sh("curl -s --max-time 5 -w ' %%{http_code}' http://127.0.0.1:%d/healthz",
	       g_plain_port);
	assert_string_equal(o, "ok 200");
	free(o);
	/* nghttp (HTTP/2 client of nghttp2) */
	o = sh("nghttp -v https://127.0.0.1:%d/items/n1 2>&1", g_port);
	assert_non_null(strstr(o, ":status: 200"));
	assert_non_null(strstr(o, "n1|-"));
	assert_non_null(strstr(o, "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100"));
	free(o);
}

static void test_keepalive_and_bodies(void **state)
{
	(void)state;
	/* two requests, one connection */
	char *o = sh(CURL "--http1.1 -w '[%%{num_connects}]' https://127.0.0.1:%d/healthz "
	                  "https://127.0.0.1:%d/items/2",
	             g_ca, g_port, g_port);
	assert_string_equal(o, "ok[1]2|-[0]");
	free(o);
	const char *vers[2] = {"--http1.1", "--http2"};
	for (int i = 0; i < 2; i++) {
		o = sh(CURL "%s -H 'Content-Type: application/json' -d '{\"a\":[1,2]}' "
		            "https://127.0.0.1:%d/echo",
		       g_ca, vers[i], g_port);
		assert_non_null(strstr(o, "\"echo\":{\"a\":[1,2]}"));
		assert_non_null(strstr(o, i ? "\"proto\":\"h2\"" : "\"proto\":\"h1\""));
		free(o);
		/* bad JSON: 400 ProblemDetails; wrong type: 415 */
		o = sh(CURL "%s -w ' %%{http_code} %%{content_type}' -H 'Content-Type: "
		            "application/json' -d '{bad' https://127.0.0.1:%d/echo",
		       g_ca, vers[i], g_port);
		assert_non_null(strstr(o, "\"status\":400"));
		assert_non_null(strstr(o, " 400 application/problem+json"));
		free(o);
		o = sh(CURL "%s -w ' %%{http_code}' -H 'Content-Type: text/plain' -d 'x' "
		            "https://127.0.0.1:%d/echo",
		       g_ca, vers[i], g_port);
		assert_non_null(strstr(o, " 415"));
		free(o);
	}
	/* chunked upload of 40000 bytes */
	char path[160];
	snprintf(path, sizeof path, "%s/body40k", g_dir);
	FILE *f = fopen(path, "w");
	for (int i = 0; i < 40000; i++)
		fputc('a' + i % 26, f);
	fclose(f);
	o = sh(CURL "--http1.1 -H 'Transfer-Encoding: chunked' --data-binary @%s "
	            "https://127.0.0.1:%d/size",
	       g_ca, path, g_port);
	assert_string_equal(o, "40000");
	free(o);
	o = sh(CURL "--http2 --data-binary @%s https://127.0.0.1:%d/size", g_ca, path, g_port);
	assert_string_equal(o, "40000");
	free(o);
}

static void test_errors(void **state)
{
	(void)state;
	char *o =
	    sh(CURL "--http1.1 -w ' %%{http_code}' https://127.0.0.1:%d/nothing", g_ca, g_port);
	assert_non_null(strstr(o, "\"title\":\"Not Found\""));
	assert_non_null(strstr(o, "\"status\":404"));
	assert_non_null(strstr(o, " 404"));
	free(o);
	o = sh(CURL "--http2 -i -X PUT https://127.0.0.1:%d/items/1", g_ca, g_port);
	assert_non_null(strstr(o, "HTTP/2 405"));
	assert_non_null(strstr(o, "allow: GET, DELETE"));
	assert_non_null(strstr(o, "\"cause\":\"METHOD_NOT_ALLOWED\""));
	free(o);
	o = sh(CURL "--http1.1 -w ' %%{http_code}' -H 'X-Deny: 1' https://127.0.0.1:%d/healthz",
	       g_ca, g_port);
	assert_non_null(strstr(o, "denied by pre-handler"));
	assert_non_null(strstr(o, " 403"));
	free(o);

	/* 431: a 32 KiB header (limit 16 KiB), HTTP/1.1 and HTTP/2 */
	char hpath[160];
	snprintf(hpath, sizeof hpath, "%s/bighdr", g_dir);
	FILE *f = fopen(hpath, "w");
	fputs("X-Big: ", f);
	for (int i = 0; i < 32768; i++)
		fputc('h', f);
	fputs("\n", f);
	fclose(f);
	o = sh(CURL "--http1.1 -w ' %%{http_code}' -H @%s https://127.0.0.1:%d/healthz", g_ca,
	       hpath, g_port);
	assert_non_null(strstr(o, " 431"));
	assert_non_null(strstr(o, "\"status\":431"));
	free(o);
	o = sh(CURL "--http2 -w ' %%{http_code}' -H @%s https://127.0.0.1:%d/healthz", g_ca, hpath,
	       g_port);
	assert_non_null(strstr(o, " 431"));
	free(o);

	/* 413: 100 KB body over the 64 KiB limit, with and without Expect */
	char bpath[160];
	snprintf(bpath, sizeof bpath, "%s/body100k", g_dir);
	f = fopen(bpath, "w");
	for (int i = 0; i < 100000; i++)
		fputc('b', f);
	fclose(f);
	const char *variants[] = {"--http1.1 -H 'Expect: 100-continue'", "--http1.1 -H 'Expect:'",
	                          "--http1.1 -H 'Expect:' -H 'Transfer-Encoding: chunked'",
	                          "--http2"};
	for (int i = 0; i < 4; i++) {
		o = sh(CURL "%s -w ' %%{http_code}' --data-binary @%s https://127.0.0.1:%d/size",
		       g_ca, variants[i], bpath, g_port);
		if (!strstr(o, " 413"))
			fail_msg("variant %s: %s", variants[i], o);
		free(o);
	}
	/* the server still serves */
	o = sh(CURL "--http1.1 https://127.0.0.1:%d/healthz", g_ca, g_port);
	assert_string_equal(o, "ok");
	free(o);
}

/* --- raw TLS client --- */
static int tcp_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

static SSL *tls_connect(SSL_CTX **ctxp, int *fdp)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, g_ca, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int fd = tcp_connect(g_port);
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	assert_int_equal(SSL_connect(ssl), 1);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	*ctxp = ctx;
	*fdp = fd;
	return ssl;
}

/* Reads until EOF or timeout_ms; returns what arrived (caller frees). */
static char *read_all(SSL *ssl, int fd, int timeout_ms, int *eof)
{
	struct sg_buf b = SG_BUF_INIT;
	*eof = 0;
	int64_t end = sg_mono_ms() + timeout_ms;
	for (;;) {
		char tmp[4096];
		if (!SSL_pending(ssl)) {
			struct pollfd pfd = {.fd = fd, .events = POLLIN};
			int left = (int)(end - sg_mono_ms());
			if (left <= 0 || poll(&pfd, 1, left) <= 0)
				break;
		}
		int n = SSL_read(ssl, tmp, sizeof tmp);
		if (n <= 0) {
			/* the socket is non-blocking: a record that was only a ticket is no EOF */
			if (SSL_get_error(ssl, n) == SSL_ERROR_WANT_READ)
				continue;
			*eof = 1;
			break;
		}
		sg_buf_append(&b, tmp, (size_t)n);
	}
	sg_buf_appends(&b, "");
	return b.data;
}

static void test_malformed(void **state)
{
	(void)state;
	const char *bad[] = {"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", "GARBAGE\r\n\r\n",
	                     ("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	                      "Content-Length: 6\r\n\r\nhello!"),
	                     "GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n"};
	for (int i = 0; i < 4; i++) {
		SSL_CTX *ctx;
		int fd, eof;
		SSL *ssl = tls_connect(&ctx, &fd);
		assert_true(SSL_write(ssl, bad[i], (int)strlen(bad[i])) > 0);
		char *o = read_all(ssl, fd, 3000, &eof);
		if (!strstr(o, "HTTP/1.1 400 Bad Request\r\n"))
			fail_msg("case %d: %s", i, o);
		assert_non_null(strstr(o, "application/problem+json"));
		assert_non_null(strstr(o, "\"status\":400"));
		assert_true(eof); /* closed after the 400 */
		free(o);
		SSL_free(ssl);
		SSL_CTX_free(ctx);
		close(fd);
	}
	/* pipelining: two requests in one write, answered in order, then Connection: close */
	SSL_CTX *ctx;
	int fd, eof;
	SSL *ssl = tls_connect(&ctx, &fd);
	const char *two = "GET /items/p1 HTTP/1.1\r\nHost: x\r\n\r\n"
	                  "GET /items/p2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	SSL_write(ssl, two, (int)strlen(two));
	char *o = read_all(ssl, fd, 3000, &eof);
	char *a = strstr(o, "p1|-"), *b = strstr(o, "p2|-");
	assert_non_null(a);
	assert_non_null(b);
	assert_true(a < b);
	assert_non_null(strstr(o, "Connection: close"));
	assert_true(eof);
	free(o);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
}

static void test_slowloris(void **state)
{
	(void)state;
	SSL_CTX *ctx;
	int fd, eof = 0;
	SSL *ssl = tls_connect(&ctx, &fd);
	const char *head = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n\r\n";
	int64_t t0 = sg_mono_ms();
	char *got = NULL;
	int curl_ok = 0;
	for (size_t i = 0; i < strlen(head) && !eof; i++) {
		if (SSL_write(ssl, head + i, 1) <= 0)
			break; /* the server closed */
		if (i == 1) {
			/* meanwhile other clients are served */
			char *o = sh(CURL "--http1.1 https://127.0.0.1:%d/healthz", g_ca, g_port);
			curl_ok = strcmp(o, "ok") == 0;
			free(o);
		}
		char *more = read_all(ssl, fd, 1000, &eof);
		if (!got || !*got) {
			free(got);
			got = more;
		} else {
			free(more);
		}
	}
	int64_t el = sg_mono_ms() - t0;
	assert_true(curl_ok);
	assert_true(eof); /* cut off long before the head was complete */
	assert_true(el >= 1400 && el < 5000);
	if (!strstr(got, "408"))
		fail_msg("el=%lld got=[%s]", (long long)el, got);
	free(got);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
}

static void test_max_connections(void **state)
{
	(void)state;
	int a = tcp_connect(g_lim_port), b = tcp_connect(g_lim_port);
	usleep(200000);
	int c = tcp_connect(g_lim_port);
	struct pollfd pfd = {.fd = c, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	char tmp[64];
	assert_true(read(c, tmp, sizeof tmp) <= 0); /* closed at once */
	close(c);
	/* the two admitted connections work */
	const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_true(write(a, req, strlen(req)) > 0);
	pfd.fd = a;
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	ssize_t n = read(a, tmp, sizeof tmp - 1);
	assert_true(n > 12);
	tmp[n] = '\0';
	assert_non_null(strstr(tmp, "HTTP/1.1 200"));
	close(a);
	close(b);
	struct sg_buf m = SG_BUF_INIT;
	assert_int_equal(sg_server_metrics(g_srv, &m), SG_OK);
	assert_non_null(
	    strstr(m.data, "sealguard_connections_refused_total{listener=\"LIMITED\"} 1"));
	assert_non_null(
	    strstr(m.data, "sealguard_http_requests_total{listener=\"SEAL-UU\",code=\"200\"}"));
	assert_non_null(
	    strstr(m.data, "sealguard_http_requests_total{listener=\"SEAL-UU\",code=\"431\"}"));
	assert_non_null(strstr(m.data, "sealguard_tls_handshakes_total{result=\"full\"}"));
	assert_non_null(strstr(
	    m.data,
	    "sealguard_http_request_duration_seconds_bucket{listener=\"SEAL-UU\",le=\"+Inf\"}"));
	sg_buf_free(&m);
}

static void test_drain(void **state)
{
	(void)state;
	/* an in-flight async request finishes across sg_server_stop */
	char cmd[512];
	snprintf(cmd, sizeof cmd, CURL "--http1.1 -w ' %%{http_code}' https://127.0.0.1:%d/slow",
	         g_ca, g_port);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	/* and one over HTTP/2 (GOAWAY, then the stream completes) */
	snprintf(cmd, sizeof cmd, CURL "--http2 -w ' %%{http_code}' https://127.0.0.1:%d/slow",
	         g_ca, g_port);
	FILE *p2 = popen(cmd, "r");
	usleep(400000);
	sg_server_stop(g_srv);
	char out[256] = "", out2[256] = "";
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	n = fread(out2, 1, sizeof out2 - 1, p2);
	out2[n] = '\0';
	pclose(p);
	pclose(p2);
	assert_string_equal(out, "late 200");
	assert_string_equal(out2, "late 200");
	assert_int_equal(pthread_join(g_th, NULL), 0);
	assert_int_equal(g_run_rc, SG_OK);
	/* new connections are refused now */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	close(fd);
	(void)rc;
	/* access log: JSON lines with the fields, flushed at exit */
	fflush(g_log);
	char *log = sh("cat %s", g_logpath);
	assert_non_null(strstr(log, "\"listener\":\"SEAL-UU\""));
	assert_non_null(strstr(log, "\"path\":\"/slow\",\"status\":200"));
	assert_non_null(strstr(log, "\"proto\":\"HTTP/2\""));
	assert_non_null(strstr(log, "\"status\":431"));
	assert_non_null(strstr(log, "\"dur_us\":"));
	free(log);
}

/* The request media type of an operation: exactly it, whatever the case, with whitespace before
 * and parameters after it; never a prefix, another +json type or nothing. */
static void test_ctype(void **state)
{
	(void)state;
	assert_true(sg_http_ctype_is("application/json", "application/json"));
	assert_true(sg_http_ctype_is(" Application/JSON; charset=utf-8", "application/json"));
	assert_true(sg_http_ctype_is("\tapplication/merge-patch+json ;x=1",
	                             "application/merge-patch+json"));
	assert_false(sg_http_ctype_is("application/jsonx", "application/json"));
	assert_false(sg_http_ctype_is("application/merge-patch+json", "application/json"));
	assert_false(sg_http_ctype_is("application/problem+json", "application/json"));
	assert_false(sg_http_ctype_is("application/json", "application/merge-patch+json"));
	assert_false(sg_http_ctype_is("", "application/json"));
	assert_false(sg_http_ctype_is(NULL, "application/json"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_get_h1_h2), cmocka_unit_test(test_keepalive_and_bodies),
	    cmocka_unit_test(test_errors),    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_slowloris), cmocka_unit_test(test_max_connections),
	    cmocka_unit_test(test_drain),     cmocka_unit_test(test_ctype),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
