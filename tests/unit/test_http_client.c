/* Tests for http/client.c against a real TLS peer (openssl s_server), with certificates from
 * the development PKI: what must work works, and what the profile forbids is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/client.h"
#include "tls/pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[64];   /* our PKI */
static char other[96]; /* a second, unrelated CA */
static char path_buf[16][256];
static int n_paths;

static const char *P(const char *base, const char *name)
{
	char *p = path_buf[n_paths++ % 16];
	snprintf(p, 256, "%s/%s", base, name);
	return p;
}

struct peer {
	pid_t pid;
	int port;
};

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static int can_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

/* Starts `openssl s_server -www` on a free loopback port with extra arguments; waits until it
 * accepts connections. */
static struct peer start_server(const char *cert, const char *key, const char *const *extra)
{
	struct peer p = {.port = free_port()};
	char accept_arg[32];
	snprintf(accept_arg, sizeof accept_arg, "127.0.0.1:%d", p.port);
	const char *argv[32] = {"openssl", "s_server", "-www", "-accept",  accept_arg, "-cert",
	                        cert,      "-key",     key,    "-naccept", "100"};
	size_t n = 11;
	for (size_t i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	p.pid = fork();
	assert_true(p.pid >= 0);
	if (p.pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		execvp("openssl", (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		if (can_connect(p.port))
			return p;
		int st;
		if (waitpid(p.pid, &st, WNOHANG) == p.pid)
			fail_msg("openssl s_server exited early (status %d)", st);
		struct timespec ts = {0, 25 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	fail_msg("openssl s_server did not start on port %d", p.port);
	return p;
}

static void stop_server(struct peer *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGTERM);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
}

static int setup(void **state)
{
	(void)state;
	char err[512];
	snprintf(dir, sizeof dir, "/tmp/sg_http_clientXXXXXX");
	if (!mkdtemp(dir))
		return -1;
	const char *seal[] = {"peer.example"};
	struct sg_pki_opts o = {.dir = dir, .seal_servers = seal, .n_seal_servers = 1};
	if (sg_pki_init(&o, err, sizeof err) != SG_OK) {
		fprintf(stderr, "sg_pki_init: %s\n", err);
		return -1;
	}
	snprintf(other, sizeof other, "%s/other", dir);
	struct sg_pki_opts o2 = {.dir = other};
	if (sg_pki_init(&o2, err, sizeof err) != SG_OK) {
		fprintf(stderr, "sg_pki_init other: %s\n", err);
		return -1;
	}
	/* a certificate for this host without the serverAuth EKU */
	struct sg_pki_issue iss = {.ca_dir = dir,
	                           .san = "DNS:localhost,IP:127.0.0.1",
	                           .server_auth = 0,
	                           .client_auth = 1,
	                           .out_crt = P(dir, "noeku.crt"),
	                           .out_key = P(dir, "noeku.key")};
	if (sg_pki_issue(&iss, err, sizeof err) != SG_OK) {
		fprintf(stderr, "sg_pki_issue: %s\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct sg_http_client *client(const char *ca, const char *cert, const char *key, size_t max)
{
	struct sg_http_client_conf cc = {
	    .tls = {.mode = cert ? SG_TLS_MUTUAL : SG_TLS_SERVER_AUTH,
	            .ca = ca,
	            .cert = cert,
	            .key = key},
	    .max_response_bytes = max,
	    .connect_timeout_ms = 3000,
	    .timeout_ms = 10000,
	};
	struct sg_http_client *c = NULL;
	char err[512] = "";
	if (sg_http_client_new(&cc, &c, err, sizeof err) != SG_OK)
		fail_msg("sg_http_client_new: %s", err);
	return c;
}

static sg_err get(struct sg_http_client *c, int port, struct sg_http_response *r, char *err,
                  size_t errlen)
{
	char url[64];
	snprintf(url, sizeof url, "https://127.0.0.1:%d/", port);
	const char *hdrs[] = {"Accept: text/html", NULL};
	return sg_http_client_request(c, "GET", url, hdrs, NULL, 0, r, err, errlen);
}

static void test_tls13_get(void **state)
{
	(void)state;
	struct peer p = start_server(P(dir, "server.crt"), P(dir, "server.key"), NULL);
	struct sg_http_client *c = client(P(dir, "ca.crt"), NULL, NULL, 0);
	struct sg_http_response r;
	char err[512] = "";
	for (int i = 0; i < 2; i++) { /* the handle is reused */
		if (get(c, p.port, &r, err, sizeof err) != SG_OK)
			fail_msg("GET: %s", err);
		assert_int_equal(r.status, 200);
		assert_string_equal(r.content_type, "text/html");
		assert_string_equal(r.http_version, "1.0");
		assert_non_null(r.body.data);
		assert_non_null(strstr(r.body.data, "TLSv1.3"));
		sg_http_response_free(&r);
	}
	sg_http_client_free(c);
	stop_server(&p);
}

static void test_response_limit(void **state)
{
	(void)state;
	struct peer p = start_server(P(dir, "server.crt"), P(dir, "server.key"), NULL);
	struct sg_http_client *c = client(P(dir, "ca.crt"), NULL, NULL, 100);
	struct sg_http_response r;
	char err[512] = "";
	assert_int_equal(get(c, p.port, &r, err, sizeof err), SG_ERR_LIMIT);
	assert_non_null(strstr(err, "larger than 100 bytes"));
	assert_null(r.body.data);
	sg_http_client_free(c);
	stop_server(&p);
}

static void test_tls11_refused(void **state)
{
	(void)state;
	const char *extra[] = {"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", NULL};
	struct peer p = start_server(P(dir, "server.crt"), P(dir, "server.key"), extra);
	struct sg_http_client *c = client(P(dir, "ca.crt"), NULL, NULL, 0);
	struct sg_http_response r;
	char err[512] = "";
	assert_int_equal(get(c, p.port, &r, err, sizeof err), SG_ERR_TLS);
	print_message("TLS 1.1 server: %s\n", err);
	sg_http_client_free(c);
	stop_server(&p);
}

static void test_other_ca_refused(void **state)
{
	(void)state;
	struct peer p = start_server(P(other, "server.crt"), P(other, "server.key"), NULL);
	struct sg_http_client *c = client(P(dir, "ca.crt"), NULL, NULL, 0);
	struct sg_http_response r;
	char err[512] = "";
	assert_int_equal(get(c, p.port, &r, err, sizeof err), SG_ERR_TLS);
	print_message("other CA: %s\n", err);
	sg_http_client_free(c);
	/* sanity: the same server is accepted with its own CA */
	c = client(P(other, "ca.crt"), NULL, NULL, 0);
	if (get(c, p.port, &r, err, sizeof err) != SG_OK)
		fail_msg("GET with the right CA: %s", err);
	assert_int_equal(r.status, 200);
	sg_http_response_free(&r);
	sg_http_client_free(c);
	stop_server(&p);
}

static void test_no_server_eku_refused(void **state)
{
	(void)state;
	struct peer p = start_server(P(dir, "noeku.crt"), P(dir, "noeku.key"), NULL);
	struct sg_http_client *c = client(P(dir, "ca.crt"), NULL, NULL, 0);
	struct sg_http_response r;
	char err[512] = "";
	assert_int_equal(get(c, p.port, &r, err, sizeof err), SG_ERR_TLS);
	print_message("no serverAuth EKU: %s\n", err);
	sg_http_client_free(c);
	stop_server(&p);
}

static void test_wrong_name_refused(void **state)
{
	(void)state;
	/* valid chain and EKU, but the SAN (DNS:peer.example) does not name 127.0.0.1 */
	struct peer p = start_server(P(dir, "seal-servers/peer.example.crt"),
	                             P(dir, "seal-servers/peer.example.key"), NULL);
	struct sg_http_client *c = client(P(dir, "ca.crt"), NULL, NULL, 0);
	struct sg_http_response r;
	char err[512] = "";
	assert_int_equal(get(c, p.port, &r, err, sizeof err), SG_ERR_TLS);
	print_message("wrong name: %s\n", err);
	sg_http_client_free(c);
	stop_server(&p);
}

static void test_h2_fallback(void **state)
{
	(void)state;
	/* s_server offers no ALPN: a client offering h2 falls back to HTTP/1.x */
	struct peer p = start_server(P(dir, "server.crt"), P(dir, "server.key"), NULL);
	struct sg_http_client_conf cc = {
	    .tls = {.mode = SG_TLS_SERVER_AUTH, .ca = P(dir, "ca.crt")}, .http2 = 1};
	struct sg_http_client *c = NULL;
	char err[512] = "";
	assert_int_equal(sg_http_client_new(&cc, &c, err, sizeof err), SG_OK);
	struct sg_http_response r;
	if (get(c, p.port, &r, err, sizeof err) != SG_OK)
		fail_msg("h2 fallback GET: %s", err);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.http_version, "1.0");
	sg_http_response_free(&r);
	sg_http_client_free(c);
	stop_server(&p);
}

static void test_mutual(void **state)
{
	(void)state;
	const char *extra[] = {"-Verify", "1", "-CAfile", P(dir, "ca.crt"), NULL};
	struct peer p = start_server(P(dir, "server.crt"), P(dir, "server.key"), extra);
	struct sg_http_client *c = client(P(dir, "ca.crt"), P(dir, "seal-servers/peer.example.crt"),
	                                  P(dir, "seal-servers/peer.example.key"), 0);
	struct sg_http_response r;
	char err[512] = "";
	if (get(c, p.port, &r, err, sizeof err) != SG_OK)
		fail_msg("mutual GET: %s", err);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body.data, "TLSv1.3"));
	sg_http_response_free(&r);
	sg_http_client_free(c);

	/* without a client certificate the server refuses */
	c = client(P(dir, "ca.crt"), NULL, NULL, 0);
	assert_int_not_equal(get(c, p.port, &r, err, sizeof err), SG_OK);
	print_message("mutual without client cert: %s\n", err);
	sg_http_client_free(c);
	stop_server(&p);
}

static void test_plain_http(void **state)
{
	(void)state;
	struct sg_http_client *c = client(P(dir, "ca.crt"), NULL, NULL, 0);
	struct sg_http_response r;
	char err[512] = "";
	const char *bad[] = {"http://192.0.2.1/", "http://example.com:9090/x", "http://10.0.0.1/",
	                     "ftp://127.0.0.1/"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		time_t t0 = time(NULL);
		sg_err e =
		    sg_http_client_request(c, "GET", bad[i], NULL, NULL, 0, &r, err, sizeof err);
		if (e == SG_OK)
			fail_msg("%s accepted", bad[i]);
		assert_true(time(NULL) - t0 <= 1); /* refused before any connection attempt */
		if (i < 3 && !strstr(err, "refusing plain http"))
			fail_msg("%s: %s", bad[i], err);
	}
	/* plain http to loopback is allowed (admin listener): it reaches the peer, which here
	 * speaks TLS, so the exchange fails at the protocol level, not by policy */
	int port = free_port();
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
	sg_err e = sg_http_client_request(c, "GET", url, NULL, NULL, 0, &r, err, sizeof err);
	assert_int_equal(e, SG_ERR_IO); /* connection refused: nothing listens there */
	assert_null(strstr(err, "refusing"));
	sg_http_client_free(c);
}

static struct sg_http_client *psk_client(const char *psk_file, const char *identity)
{
	struct sg_http_client_conf cc = {
	    .tls = {.mode = SG_TLS_PSK, .psk_file = psk_file, .psk_identity = identity},
	    .timeout_ms = 10000};
	struct sg_http_client *c = NULL;
	char err[512] = "";
	if (sg_http_client_new(&cc, &c, err, sizeof err) != SG_OK)
		fail_msg("sg_http_client_new (psk): %s", err);
	return c;
}

static void test_psk(void **state)
{
	(void)state;
	static const char key[] =
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	const char *pf = P(dir, "client.psk");
	FILE *f = fopen(pf, "w");
	assert_non_null(f);
	fprintf(f, "val1:%s\n", key);
	fclose(f);
	assert_int_equal(chmod(pf, 0600), 0);
	const char *extra[] = {"-psk", key, "-psk_identity", "val1", "-nocert", NULL};
	struct peer p = start_server(P(dir, "server.crt"), P(dir, "server.key"), extra);
	struct sg_http_client *c = psk_client(pf, "val1");
	struct sg_http_response r;
	char err[512] = "";
	if (get(c, p.port, &r, err, sizeof err) != SG_OK)
		fail_msg("PSK GET: %s", err);
	assert_int_equal(r.status, 200);
	sg_http_response_free(&r);
	sg_http_client_free(c);
	stop_server(&p);

	/* a server that answers with a certificate instead of the PSK is refused, even one our
	 * CA would accept: in PSK mode only the key authenticates the server */
	p = start_server(P(dir, "server.crt"), P(dir, "server.key"), NULL);
	c = psk_client(pf, "val1");
	assert_int_equal(get(c, p.port, &r, err, sizeof err), SG_ERR_TLS);
	print_message("PSK client, certificate server: %s\n", err);
	sg_http_client_free(c);
	stop_server(&p);
}

static void test_bad_profile(void **state)
{
	(void)state;
	struct sg_http_client_conf cc = {
	    .tls = {.mode = SG_TLS_SERVER_AUTH, .ca = P(dir, "ca.crt"), .min_version = "TLS1.1"}};
	struct sg_http_client *c = NULL;
	char err[512] = "";
	assert_int_not_equal(sg_http_client_new(&cc, &c, err, sizeof err), SG_OK);
	assert_null(c);
	print_message("TLS1.1 profile: %s\n", err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tls13_get),
	    cmocka_unit_test(test_response_limit),
	    cmocka_unit_test(test_tls11_refused),
	    cmocka_unit_test(test_other_ca_refused),
	    cmocka_unit_test(test_no_server_eku_refused),
	    cmocka_unit_test(test_mutual),
	    cmocka_unit_test(test_wrong_name_refused),
	    cmocka_unit_test(test_h2_fallback),
	    cmocka_unit_test(test_plain_http),
	    cmocka_unit_test(test_psk),
	    cmocka_unit_test(test_bad_profile),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
