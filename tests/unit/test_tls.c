/* tests/unit/test_tls.c: the TS 33.210 §6.2 profile with real in-process handshakes over a
 * socketpair (server and client SSL driven non-blocking), certificates from tls/pki. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tls/pki.h"
#include "tls/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64], other[256];
static char ca[512], crl[512], srv_crt[512], srv_key[512];
static char val1_crt[512], val1_key[512], other_crt[512], other_key[512];
static char exp_crt[512], exp_key[512], noeku_crt[512], noeku_key[512];
static char san_crt[512], san_key[512], rev_crt[512], rev_key[512];
static char psk_ok[512], psk_bad[512], psk_open[512];

static void path(char *out, const char *d, const char *name)
{
	snprintf(out, 512, "%s/%s", d, name);
}

static void issue(const char *name, const char *san, int sa, int cauth, long nb, long na, char *crt,
                  char *key)
{
	char err[512] = "";
	char n1[128], n2[128];
	snprintf(n1, sizeof n1, "%s.crt", name);
	snprintf(n2, sizeof n2, "%s.key", name);
	path(crt, dir, n1);
	path(key, dir, n2);
	struct sg_pki_issue req = {.ca_dir = dir,
	                           .san = san,
	                           .server_auth = sa,
	                           .client_auth = cauth,
	                           .not_before_offset_s = nb,
	                           .not_after_offset_s = na,
	                           .out_crt = crt,
	                           .out_key = key};
	sg_err e = sg_pki_issue(&req, err, sizeof err);
	if (e)
		fprintf(stderr, "issue %s: %s\n", name, err);
	assert_int_equal(e, SG_OK);
}

static void write_file(const char *p, const char *text, mode_t mode)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	fchmod(fd, mode);
	close(fd);
}

static int setup(void **state)
{
	(void)state;
	char err[512] = "";
	snprintf(dir, sizeof dir, "/tmp/sg_tls_XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(other, sizeof other, "%s/other", dir);
	const char *vals[] = {"val1"};
	struct sg_pki_opts o = {.dir = dir, .val_servers = vals, .n_val_servers = 1};
	if (sg_pki_init(&o, err, sizeof err)) {
		fprintf(stderr, "pki: %s\n", err);
		return -1;
	}
	struct sg_pki_opts o2 = {.dir = other, .val_servers = vals, .n_val_servers = 1};
	if (sg_pki_init(&o2, err, sizeof err)) {
		fprintf(stderr, "pki other: %s\n", err);
		return -1;
	}
	path(ca, dir, "ca.crt");
	path(crl, dir, "crl.pem");
	path(srv_crt, dir, "server.crt");
	path(srv_key, dir, "server.key");
	path(val1_crt, dir, "val-servers/val1.crt");
	path(val1_key, dir, "val-servers/val1.key");
	path(other_crt, other, "val-servers/val1.crt");
	path(other_key, other, "val-servers/val1.key");
	issue("expired", "DNS:expired", 0, 1, -2 * 86400, -86400, exp_crt, exp_key);
	issue("noeku", "DNS:noeku", 1, 0, 0, 86400, noeku_crt, noeku_key);
	issue("san", "DNS:val-san.example,URI:urn:sg:val-san,IP:10.1.2.3,IP:2001:db8::7", 0, 1, 0,
	      86400, san_crt, san_key);
	issue("revme", "DNS:revme", 0, 1, 0, 86400, rev_crt, rev_key);
	path(psk_ok, dir, "psk_ok");
	path(psk_bad, dir, "psk_bad");
	path(psk_open, dir, "psk_open");
	write_file(psk_ok,
	           "# test keys\n"
	           "other:ffeeddccbbaa99887766554433221100\n"
	           "dev1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
	           0600);
	write_file(psk_bad,
	           "dev1:01112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0600);
	write_file(psk_open, "dev1:00112233445566778899aabbccddeeff\n", 0644);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- handshake driver ------------------------------------------------------------------- */

struct conn {
	SSL *c, *s;
	int fd[2];
};

/* c: the client's SSL (owned by k from here on) */
static void conn_open_ssl(struct conn *k, SSL *c, struct sg_tls_server *srv)
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, k->fd), 0);
	for (int i = 0; i < 2; i++)
		fcntl(k->fd[i], F_SETFL, fcntl(k->fd[i], F_GETFL) | O_NONBLOCK);
	k->c = c;
	k->s = sg_tls_server_ssl_new(srv);
	assert_non_null(k->c);
	assert_non_null(k->s);
	SSL_set_fd(k->c, k->fd[0]);
	SSL_set_fd(k->s, k->fd[1]);
	SSL_set_connect_state(k->c);
	SSL_set_accept_state(k->s);
}

static void conn_open(struct conn *k, SSL_CTX *cctx, struct sg_tls_server *srv)
{
	conn_open_ssl(k, SSL_new(cctx), srv);
}

static void conn_close(struct conn *k)
{
	/* a clean close_notify keeps the session resumable (OpenSSL drops sessions of
	 * connections freed without one) */
	if (SSL_is_init_finished(k->c))
		SSL_shutdown(k->c);
	if (SSL_is_init_finished(k->s))
		SSL_shutdown(k->s);
	SSL_free(k->c);
	SSL_free(k->s);
	close(k->fd[0]);
	close(k->fd[1]);
}

static int step(SSL *ssl, int *done)
{
	if (*done)
		return 0;
	ERR_clear_error();
	int r = SSL_do_handshake(ssl);
	if (r == 1) {
		*done = 1;
		return 0;
	}
	int e = SSL_get_error(ssl, r);
	return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? 0 : -1;
}

static int xfer(SSL *from, SSL *to)
{
	char buf[16];
	if (SSL_write(from, "ping", 4) != 4)
		return -1;
	for (int i = 0; i < 200; i++) {
		int r = SSL_read(to, buf, sizeof buf);
		if (r == 4)
			return memcmp(buf, "ping", 4) ? -1 : 0;
		int e = SSL_get_error(to, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			return -1;
		/* let the other side process (e.g. TLS 1.3 post-handshake messages) */
		char tmp[16];
		int r2 = SSL_read(from, tmp, sizeof tmp);
		if (r2 <= 0) {
			int e2 = SSL_get_error(from, r2);
			if (e2 != SSL_ERROR_WANT_READ && e2 != SSL_ERROR_WANT_WRITE)
				return -1;
		}
	}
	return -1;
}

/* 0 when both sides completed and application data flows both ways, -1 client failed,
 * -2 server failed. */
static int handshake(struct conn *k)
{
	int cd = 0, sd = 0;
	for (int i = 0; i < 200 && !(cd && sd); i++) {
		if (step(k->c, &cd))
			return -1;
		if (step(k->s, &sd)) {
			sg_tls_stats_count(k->s, 0);
			return -2;
		}
	}
	if (!(cd && sd))
		return -3;
	sg_tls_stats_count(k->s, 1);
	if (xfer(k->s, k->c)) /* also delivers TLS 1.3 tickets to the client */
		return -1;
	if (xfer(k->c, k->s))
		return -2;
	return 0;
}

static struct sg_tls_server *server(enum sg_tls_mode mode, int alpn_h2, const char *crlp)
{
	char err[512] = "";
	struct sg_tls_conf c = {.mode = mode, .cert = srv_crt, .key = srv_key, .crl = crlp};
	if (mode == SG_TLS_MUTUAL)
		c.ca = ca;
	if (mode == SG_TLS_PSK)
		c.psk_file = psk_ok;
	struct sg_tls_server *s = NULL;
	sg_err e = sg_tls_server_new(&c, alpn_h2, &s, err, sizeof err);
	if (e)
		fprintf(stderr, "server: %s\n", err);
	assert_int_equal(e, SG_OK);
	return s;
}

static SSL_CTX *client(enum sg_tls_mode mode, const char *crt, const char *key, const char *maxv)
{
	char err[512] = "";
	struct sg_tls_conf c = {
	    .mode = mode, .cert = crt, .key = key, .ca = ca, .max_version = maxv};
	SSL_CTX *ctx = NULL;
	sg_err e = sg_tls_client_ctx_new(&c, &ctx, err, sizeof err);
	if (e)
		fprintf(stderr, "client: %s\n", err);
	assert_int_equal(e, SG_OK);
	return ctx;
}

static long last_verify; /* the server's verify result of the last try_mutual */

static int try_mutual(const char *crt, const char *key, struct sg_tls_server *srv)
{
	SSL_CTX *cc = client(crt ? SG_TLS_MUTUAL : SG_TLS_SERVER_AUTH, crt, key, NULL);
	struct conn k;
	conn_open(&k, cc, srv);
	int r = handshake(&k);
	last_verify = SSL_get_verify_result(k.s);
	conn_close(&k);
	SSL_CTX_free(cc);
	return r;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_tls13_profile(void **state)
{
	(void)state;
	struct sg_tls_server *srv = server(SG_TLS_SERVER_AUTH, 0, NULL);
	SSL_CTX *cc = client(SG_TLS_SERVER_AUTH, NULL, NULL, NULL);
	struct conn k;
	conn_open(&k, cc, srv);
	assert_int_equal(handshake(&k), 0);
	assert_int_equal(SSL_version(k.s), TLS1_3_VERSION);
	assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(k.s)),
	                    "TLS_AES_128_GCM_SHA256");
	assert_int_equal(SSL_get_negotiated_group(k.s), NID_X9_62_prime256v1);
	assert_int_equal(sg_tls_check_negotiated(k.s), SG_OK);
	assert_int_equal(SSL_get_verify_result(k.c), X509_V_OK);
	/* server-auth mode: no client certificate requested */
	assert_null(SSL_get0_peer_certificate(k.s));
	struct sg_tls_principal p;
	assert_int_equal(sg_tls_principal_from_ssl(k.s, &p), SG_OK);
	assert_int_equal(p.authenticated, 0);
	assert_string_equal(p.version, "TLSv1.3");
	sg_tls_principal_clear(&p);
	conn_close(&k);
	SSL_CTX_free(cc);
	sg_tls_server_free(srv);
}

static void test_tls12_profile(void **state)
{
	(void)state;
	struct sg_tls_server *srv = server(SG_TLS_SERVER_AUTH, 0, NULL);
	SSL_CTX *cc = client(SG_TLS_SERVER_AUTH, NULL, NULL, "TLS1.2");
	struct conn k;
	conn_open(&k, cc, srv);
	assert_int_equal(handshake(&k), 0);
	assert_int_equal(SSL_version(k.s), TLS1_2_VERSION);
	assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(k.s)),
	                    "ECDHE-ECDSA-AES128-GCM-SHA256");
	assert_int_equal(SSL_get_negotiated_group(k.s), NID_X9_62_prime256v1);
	assert_int_equal(SSL_get_extms_support(k.s), 1);
	assert_int_equal(sg_tls_check_negotiated(k.s), SG_OK);
	conn_close(&k);
	SSL_CTX_free(cc);

	/* a TLS 1.2 client without the extended master secret: check_negotiated refuses */
	SSL_CTX *raw = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_max_proto_version(raw, TLS1_2_VERSION);
	SSL_CTX_set_options(raw, SSL_OP_NO_EXTENDED_MASTER_SECRET);
	conn_open(&k, raw, srv);
	assert_int_equal(handshake(&k), 0);
	assert_int_equal(SSL_get_extms_support(k.s), 0);
	assert_int_equal(sg_tls_check_negotiated(k.s), SG_ERR_PROTO);
	conn_close(&k);
	SSL_CTX_free(raw);
	sg_tls_server_free(srv);
}

static void test_old_and_cbc_refused(void **state)
{
	(void)state;
	struct sg_tls_server *srv = server(SG_TLS_SERVER_AUTH, 0, NULL);
	struct conn k;
	SSL_CTX *raw = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_security_level(raw, 0);
	SSL_CTX_set_min_proto_version(raw, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(raw, TLS1_1_VERSION);
	conn_open(&k, raw, srv);
	assert_true(handshake(&k) < 0);
	conn_close(&k);
	SSL_CTX_free(raw);

	raw = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_max_proto_version(raw, TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_set_cipher_list(raw, "ECDHE-ECDSA-AES128-SHA256"), 1);
	conn_open(&k, raw, srv);
	assert_true(handshake(&k) < 0);
	conn_close(&k);
	/* the same client with a profile suite works: the refusal was about CBC */
	assert_int_equal(SSL_CTX_set_cipher_list(raw, "ECDHE-ECDSA-AES256-GCM-SHA384"), 1);
	conn_open(&k, raw, srv);
	assert_int_equal(handshake(&k), 0);
	assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(k.s)),
	                    "ECDHE-ECDSA-AES256-GCM-SHA384");
	conn_close(&k);
	SSL_CTX_free(raw);
	sg_tls_server_free(srv);
}

static void expect_reject(struct sg_tls_conf *c, const char *needle)
{
	char err[512] = "";
	assert_int_equal(sg_tls_conf_check(c, 1, err, sizeof err), SG_ERR_CONFIG);
	if (!strstr(err, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

static void test_conf_check(void **state)
{
	(void)state;
	char err[512] = "";
	struct sg_tls_conf base = {.mode = SG_TLS_SERVER_AUTH, .cert = srv_crt, .key = srv_key};
	assert_int_equal(sg_tls_conf_check(&base, 1, err, sizeof err), SG_OK);

	struct sg_tls_conf c = base;
	c.min_version = "TLS1.1";
	expect_reject(&c, "min_version \"TLS1.1\"");
	c = base;
	c.max_version = "SSLv3";
	expect_reject(&c, "max_version");
	c = base;
	c.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA256";
	expect_reject(&c, "ciphers: \"ECDHE-RSA-AES128-SHA256\"");
	c = base;
	c.ciphers = "RC4-SHA";
	expect_reject(&c, "RC4-SHA");
	c = base;
	c.ciphers = "ADH-AES128-GCM-SHA256";
	expect_reject(&c, "ADH-AES128-GCM-SHA256");
	c = base;
	c.ciphers = "DHE-PSK-AES128-GCM-SHA256"; /* PSK suites only in PSK mode */
	expect_reject(&c, "DHE-PSK-AES128-GCM-SHA256");
	c = base;
	c.ciphersuites = "TLS_CHACHA20_POLY1305_SHA256";
	expect_reject(&c, "ciphersuites");
	c = base;
	c.groups = "P-256:brainpoolP256r1";
	expect_reject(&c, "groups: \"brainpoolP256r1\"");
	c = base;
	c.sigalgs = "RSA+SHA1";
	expect_reject(&c, "sigalgs");
	c = base;
	c.cert = "/nonexistent/cert.pem";
	expect_reject(&c, "cert");
	c = base;
	c.mode = SG_TLS_MUTUAL; /* mutual server needs trust anchors */
	expect_reject(&c, "ca");
	c = base;
	c.mode = SG_TLS_PSK;
	c.psk_file = psk_open;
	expect_reject(&c, "psk_file");

	/* narrowing is accepted */
	c = base;
	c.min_version = "TLS1.3";
	c.ciphersuites = "TLS_AES_128_GCM_SHA256";
	c.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
	c.groups = "P-256";
	c.sigalgs = "ECDSA+SHA256";
	assert_int_equal(sg_tls_conf_check(&c, 1, err, sizeof err), SG_OK);
	c = base;
	c.max_version = "TLS1.2";
	c.groups = "P-384:X25519";
	assert_int_equal(sg_tls_conf_check(&c, 1, err, sizeof err), SG_OK);
	c = base;
	c.mode = SG_TLS_PSK;
	c.psk_file = psk_ok;
	c.ciphers = "DHE-PSK-AES256-GCM-SHA384";
	assert_int_equal(sg_tls_conf_check(&c, 1, err, sizeof err), SG_OK);

	/* a narrowed server refuses what it no longer allows */
	c = base;
	c.min_version = "TLS1.3";
	struct sg_tls_server *srv = NULL;
	assert_int_equal(sg_tls_server_new(&c, 0, &srv, err, sizeof err), SG_OK);
	SSL_CTX *cc = client(SG_TLS_SERVER_AUTH, NULL, NULL, "TLS1.2");
	struct conn k;
	conn_open(&k, cc, srv);
	assert_true(handshake(&k) < 0);
	conn_close(&k);
	SSL_CTX_free(cc);
	sg_tls_server_free(srv);
}

static void test_mutual_failures(void **state)
{
	(void)state;
	struct sg_tls_server *srv = server(SG_TLS_MUTUAL, 1, crl);
	assert_int_equal(try_mutual(val1_crt, val1_key, srv), 0);
	assert_true(try_mutual(NULL, NULL, srv) < 0);           /* no client certificate */
	assert_true(try_mutual(other_crt, other_key, srv) < 0); /* another CA */
	assert_int_equal(last_verify, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	assert_true(try_mutual(exp_crt, exp_key, srv) < 0); /* expired */
	assert_int_equal(last_verify, X509_V_ERR_CERT_HAS_EXPIRED);
	assert_true(try_mutual(noeku_crt, noeku_key, srv) < 0); /* EKU serverAuth only */
	assert_int_equal(last_verify, X509_V_ERR_INVALID_PURPOSE);
	struct sg_tls_stats st;
	sg_tls_stats_get(&st);
	assert_true(st.handshake_failures >= 4);
	assert_true(st.handshakes_full >= 1);
	sg_tls_server_free(srv);
}

static void test_principal(void **state)
{
	(void)state;
	struct sg_tls_server *srv = server(SG_TLS_MUTUAL, 1, crl);
	SSL_CTX *cc = client(SG_TLS_MUTUAL, san_crt, san_key, NULL);
	struct conn k;
	conn_open(&k, cc, srv);
	assert_int_equal(handshake(&k), 0);
	struct sg_tls_principal p;
	assert_int_equal(sg_tls_principal_from_ssl(k.s, &p), SG_OK);
	assert_int_equal(p.authenticated, 1);
	assert_int_equal(p.is_psk, 0);
	assert_int_equal(p.nsans, 4);
	assert_string_equal(p.sans[0], "DNS:val-san.example");
	assert_string_equal(p.sans[1], "URI:urn:sg:val-san");
	assert_string_equal(p.sans[2], "IP:10.1.2.3");
	assert_string_equal(p.sans[3], "IP:2001:db8::7");
	assert_true(sg_tls_principal_has_san(&p, "DNS:val-san.example"));
	assert_false(sg_tls_principal_has_san(&p, "DNS:val-san"));
	assert_string_equal(p.cipher, "TLS_AES_128_GCM_SHA256");
	assert_int_equal(p.resumed, 0);

	/* SHA-256 over the DER of the certificate file, computed independently */
	FILE *f = fopen(san_crt, "r");
	assert_non_null(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	unsigned char *der = NULL;
	int dl = i2d_X509(x, &der);
	assert_true(dl > 0);
	unsigned char md[32];
	unsigned int ml = 0;
	assert_int_equal(EVP_Digest(der, (size_t)dl, md, &ml, EVP_sha256(), NULL), 1);
	assert_memory_equal(md, p.cert_sha256, 32);
	OPENSSL_free(der);
	X509_free(x);
	sg_tls_principal_clear(&p);
	assert_int_equal(p.nsans, 0);

	/* the client sees the server's identity */
	assert_int_equal(sg_tls_principal_from_ssl(k.c, &p), SG_OK);
	assert_true(sg_tls_principal_has_san(&p, "DNS:localhost"));
	assert_true(sg_tls_principal_has_san(&p, "IP:127.0.0.1"));
	sg_tls_principal_clear(&p);
	conn_close(&k);
	SSL_CTX_free(cc);
	sg_tls_server_free(srv);
}

static const char *alpn_of(SSL *ssl, char *buf)
{
	const unsigned char *d = NULL;
	unsigned int l = 0;
	SSL_get0_alpn_selected(ssl, &d, &l);
	memcpy(buf, d ? (const char *)d : "", l);
	buf[l] = 0;
	return buf;
}

static void test_alpn(void **state)
{
	(void)state;
	char b[32];
	struct sg_tls_server *h2 = server(SG_TLS_SERVER_AUTH, 1, NULL);
	struct sg_tls_server *h1 = server(SG_TLS_SERVER_AUTH, 0, NULL);
	SSL_CTX *cc = client(SG_TLS_SERVER_AUTH, NULL, NULL, NULL);
	static const unsigned char both[] = "\x08http/1.1\x02h2";
	static const unsigned char spdy[] = "\x06spdy/3";
	struct conn k;

	conn_open(&k, cc, h2);
	SSL_set_alpn_protos(k.c, both, sizeof both - 1);
	assert_int_equal(handshake(&k), 0);
	assert_string_equal(alpn_of(k.s, b), "h2");
	assert_string_equal(alpn_of(k.c, b), "h2");
	conn_close(&k);

	conn_open(&k, cc, h1);
	SSL_set_alpn_protos(k.c, both, sizeof both - 1);
	assert_int_equal(handshake(&k), 0);
	assert_string_equal(alpn_of(k.s, b), "http/1.1");
	conn_close(&k);

	conn_open(&k, cc, h2); /* no ALPN offered: nothing selected (= HTTP/1.1) */
	assert_int_equal(handshake(&k), 0);
	assert_string_equal(alpn_of(k.s, b), "");
	conn_close(&k);

	conn_open(&k, cc, h2); /* neither protocol: no_application_protocol */
	SSL_set_alpn_protos(k.c, spdy, sizeof spdy - 1);
	assert_true(handshake(&k) < 0);
	conn_close(&k);

	SSL_CTX_free(cc);
	sg_tls_server_free(h1);
	sg_tls_server_free(h2);
}

static void resumption(const char *maxv)
{
	struct sg_tls_server *srv = server(SG_TLS_MUTUAL, 1, crl);
	SSL_CTX *cc = client(SG_TLS_MUTUAL, val1_crt, val1_key, maxv);
	struct conn k;
	conn_open(&k, cc, srv);
	assert_int_equal(handshake(&k), 0);
	assert_int_equal(SSL_session_reused(k.s), 0);
	SSL_SESSION *sess = SSL_get1_session(k.c);
	assert_non_null(sess);
	assert_int_equal(SSL_SESSION_is_resumable(sess), 1);
	assert_int_equal(SSL_SESSION_has_ticket(sess), 1);
	conn_close(&k);

	/* a reload in between keeps the ticket keys of the endpoint */
	char err[512] = "";
	assert_int_equal(sg_tls_server_reload(srv, err, sizeof err), SG_OK);

	struct sg_tls_stats before, after;
	sg_tls_stats_get(&before);
	conn_open(&k, cc, srv);
	assert_int_equal(SSL_set_session(k.c, sess), 1);
	assert_int_equal(handshake(&k), 0);
	assert_int_equal(SSL_session_reused(k.s), 1);
	assert_int_equal(SSL_session_reused(k.c), 1);
	sg_tls_stats_get(&after);
	assert_int_equal(after.handshakes_resumed, before.handshakes_resumed + 1);
	struct sg_tls_principal p;
	assert_int_equal(sg_tls_principal_from_ssl(k.s, &p), SG_OK);
	assert_int_equal(p.resumed, 1);
	assert_int_equal(p.authenticated, 1);
	assert_true(sg_tls_principal_has_san(&p, "DNS:val1"));
	sg_tls_principal_clear(&p);
	conn_close(&k);
	SSL_SESSION_free(sess);
	SSL_CTX_free(cc);
	sg_tls_server_free(srv);
}

static void test_resumption13(void **state)
{
	(void)state;
	resumption(NULL);
}

static void test_resumption12(void **state)
{
	(void)state;
	resumption("TLS1.2");
}

static void test_ticket_rotation(void **state)
{
	(void)state;
	char err[512] = "";
	struct sg_tls_conf c = {
	    .mode = SG_TLS_SERVER_AUTH, .cert = srv_crt, .key = srv_key, .ticket_rotate_s = 1};
	struct sg_tls_server *srv = NULL;
	assert_int_equal(sg_tls_server_new(&c, 0, &srv, err, sizeof err), SG_OK);
	SSL_CTX *cc = client(SG_TLS_SERVER_AUTH, NULL, NULL, "TLS1.2");
	struct conn k;
	conn_open(&k, cc, srv);
	assert_int_equal(handshake(&k), 0);
	SSL_SESSION *sess = SSL_get1_session(k.c);
	conn_close(&k);
	usleep(1300 * 1000); /* key rotated: the old key still decrypts */
	conn_open(&k, cc, srv);
	SSL_set_session(k.c, sess);
	assert_int_equal(handshake(&k), 0);
	assert_int_equal(SSL_session_reused(k.s), 1);
	conn_close(&k);
	usleep(2300 * 1000); /* two periods later the old key is gone: full handshake */
	conn_open(&k, cc, srv);
	SSL_set_session(k.c, sess);
	assert_int_equal(handshake(&k), 0);
	assert_int_equal(SSL_session_reused(k.s), 0);
	conn_close(&k);
	SSL_SESSION_free(sess);
	SSL_CTX_free(cc);
	sg_tls_server_free(srv);

	/* tickets off: no resumption */
	c.session_tickets = -1;
	assert_int_equal(sg_tls_server_new(&c, 0, &srv, err, sizeof err), SG_OK);
	cc = client(SG_TLS_SERVER_AUTH, NULL, NULL, NULL);
	conn_open(&k, cc, srv);
	assert_int_equal(handshake(&k), 0);
	sess = SSL_get1_session(k.c);
	conn_close(&k);
	conn_open(&k, cc, srv);
	SSL_set_session(k.c, sess);
	assert_int_equal(handshake(&k), 0);
	assert_int_equal(SSL_session_reused(k.s), 0);
	conn_close(&k);
	SSL_SESSION_free(sess);
	SSL_CTX_free(cc);
	sg_tls_server_free(srv);
}

static void test_crl_reload(void **state)
{
	(void)state;
	char err[512] = "";
	struct sg_tls_server *srv = server(SG_TLS_MUTUAL, 1, crl);
	assert_int_equal(try_mutual(rev_crt, rev_key, srv), 0);
	/* nothing changed: no reload needed, still accepted */
	assert_int_equal(sg_tls_server_reload_if_changed(srv, err, sizeof err), SG_OK);
	assert_int_equal(sg_pki_revoke(dir, rev_crt, err, sizeof err), SG_OK);
	/* the old context still has the old CRL */
	assert_int_equal(try_mutual(rev_crt, rev_key, srv), 0);
	assert_int_equal(sg_tls_server_reload_if_changed(srv, err, sizeof err), SG_OK);
	assert_true(try_mutual(rev_crt, rev_key, srv) < 0); /* revoked */
	assert_int_equal(last_verify, X509_V_ERR_CERT_REVOKED);
	assert_int_equal(try_mutual(val1_crt, val1_key, srv), 0);

	/* a broken CRL on reload keeps the current context */
	char bad[512];
	path(bad, dir, "bad-crl.pem");
	write_file(bad, "not a crl\n", 0644);
	struct sg_tls_conf c = {
	    .mode = SG_TLS_MUTUAL, .cert = srv_crt, .key = srv_key, .ca = ca, .crl = bad};
	struct sg_tls_server *s2 = NULL;
	assert_int_equal(sg_tls_server_new(&c, 0, &s2, err, sizeof err), SG_ERR_CONFIG);
	assert_null(s2);
	sg_tls_server_free(srv);
}

/* 0 when a client of c completes a handshake with srv; else the client's verify result */
static long try_client(struct sg_tls_client *c, struct sg_tls_server *srv)
{
	struct conn k;
	conn_open_ssl(&k, sg_tls_client_ssl_new(c), srv);
	long r = handshake(&k) == 0 ? 0 : SSL_get_verify_result(k.c);
	conn_close(&k);
	return r;
}

/* A long-lived client context (the SEALDD relay's, T5): the server's certificate revoked, the
 * client refuses it once it noticed the new CRL; a CRL it cannot read keeps the last good one. */
static void test_client_crl_reload(void **state)
{
	(void)state;
	char err[512] = "", crt[512], key[512], ccrl[512];
	issue("revsrv", "DNS:revsrv", 1, 0, 0, 86400, crt, key);
	struct sg_tls_conf sc = {.mode = SG_TLS_SERVER_AUTH, .cert = crt, .key = key};
	struct sg_tls_server *srv = NULL;
	assert_int_equal(sg_tls_server_new(&sc, 0, &srv, err, sizeof err), SG_OK);
	path(ccrl, dir, "client-crl.pem"); /* the client's own copy of the CRL */
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "cp '%s' '%s'", crl, ccrl);
	assert_int_equal(system(cmd), 0);
	struct sg_tls_conf cc = {.mode = SG_TLS_SERVER_AUTH, .ca = ca, .crl = ccrl};
	struct sg_tls_client *c = NULL;
	assert_int_equal(sg_tls_client_new(&cc, &c, err, sizeof err), SG_OK);
	assert_int_equal(try_client(c, srv), 0);
	assert_int_equal(sg_tls_client_reload_if_changed(c, err, sizeof err), SG_OK);

	assert_int_equal(sg_pki_revoke(dir, crt, err, sizeof err), SG_OK);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(try_client(c, srv), 0); /* not noticed yet: the old CRL */
	assert_int_equal(sg_tls_client_reload_if_changed(c, err, sizeof err), SG_OK);
	assert_int_equal(try_client(c, srv), X509_V_ERR_CERT_REVOKED);

	write_file(ccrl, "not a crl\n", 0644);
	assert_int_not_equal(sg_tls_client_reload_if_changed(c, err, sizeof err), SG_OK);
	assert_int_equal(try_client(c, srv), X509_V_ERR_CERT_REVOKED); /* the last good CRL */
	sg_tls_client_free(c);

	struct sg_tls_client *c2 = NULL; /* and a new context refuses the broken file */
	assert_int_equal(sg_tls_client_new(&cc, &c2, err, sizeof err), SG_ERR_CONFIG);
	assert_null(c2);
	sg_tls_server_free(srv);
}

/* The time left until a CRL's next update (the /metrics gauge and the hourly warning): the
 * development CA's 30 days; a CRL past it negative; a file without a CRL an error. */
static void test_crl_seconds_left(void **state)
{
	(void)state;
	char err[512] = "", cakey[512], old[512];
	int64_t left = 0;
	assert_int_equal(sg_tls_crl_seconds_left(crl, &left, err, sizeof err), SG_OK);
	assert_true(left > 29 * 86400 && left <= 30 * 86400);

	/* a CRL of the same CA whose next update was an hour ago */
	path(cakey, dir, "ca.key");
	path(old, dir, "old-crl.pem");
	FILE *f = fopen(ca, "r");
	X509 *cax = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	f = fopen(cakey, "r");
	EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	assert_non_null(cax);
	assert_non_null(k);
	X509_CRL *c = X509_CRL_new();
	ASN1_TIME *last = X509_gmtime_adj(NULL, -7200), *next = X509_gmtime_adj(NULL, -3600);
	assert_int_equal(X509_CRL_set_version(c, 1), 1);
	assert_int_equal(X509_CRL_set_issuer_name(c, X509_get_subject_name(cax)), 1);
	assert_int_equal(X509_CRL_set1_lastUpdate(c, last), 1);
	assert_int_equal(X509_CRL_set1_nextUpdate(c, next), 1);
	assert_true(X509_CRL_sign(c, k, EVP_sha256()) > 0);
	f = fopen(old, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509_CRL(f, c), 1);
	fclose(f);
	ASN1_TIME_free(last);
	ASN1_TIME_free(next);
	X509_CRL_free(c);
	EVP_PKEY_free(k);
	X509_free(cax);
	assert_int_equal(sg_tls_crl_seconds_left(old, &left, err, sizeof err), SG_OK);
	assert_true(left <= -3600 && left > -3700);

	path(old, dir, "psk_ok"); /* no CRL in it */
	assert_int_equal(sg_tls_crl_seconds_left(old, &left, err, sizeof err), SG_ERR_CONFIG);
	assert_non_null(strstr(err, "no CRL"));
}

static void psk_case(const char *maxv, const char *pskfile, int expect_ok)
{
	char err[512] = "";
	struct sg_tls_server *srv = server(SG_TLS_PSK, 0, NULL);
	assert_int_equal(sg_tls_server_mode(srv), SG_TLS_PSK);
	struct sg_tls_conf c = {
	    .mode = SG_TLS_PSK, .psk_file = pskfile, .psk_identity = "dev1", .max_version = maxv};
	SSL_CTX *cc = NULL;
	assert_int_equal(sg_tls_client_ctx_new(&c, &cc, err, sizeof err), SG_OK);
	struct conn k;
	conn_open(&k, cc, srv);
	int r = handshake(&k);
	if (!expect_ok) {
		assert_true(r < 0);
	} else {
		assert_int_equal(r, 0);
		assert_int_equal(sg_tls_check_negotiated(k.s), SG_OK);
		struct sg_tls_principal p;
		assert_int_equal(sg_tls_principal_from_ssl(k.s, &p), SG_OK);
		assert_int_equal(p.is_psk, 1);
		assert_int_equal(p.authenticated, 1);
		assert_string_equal(p.psk_identity, "dev1");
		assert_int_equal(p.nsans, 0);
		if (maxv) {
			assert_string_equal(p.version, "TLSv1.2");
			assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(k.s)),
			                    "DHE-PSK-AES128-GCM-SHA256");
		} else {
			assert_string_equal(p.version, "TLSv1.3");
			assert_string_equal(p.cipher, "TLS_AES_128_GCM_SHA256");
			/* PSK with (EC)DHE: a key share group was negotiated */
			assert_int_equal(SSL_get_negotiated_group(k.s), NID_X9_62_prime256v1);
			assert_null(SSL_get0_peer_certificate(k.c));
		}
		sg_tls_principal_clear(&p);
	}
	conn_close(&k);
	SSL_CTX_free(cc);
	sg_tls_server_free(srv);
}

static void test_psk13(void **state)
{
	(void)state;
	psk_case(NULL, psk_ok, 1);
	psk_case(NULL, psk_bad, 0);
}

static void test_psk12(void **state)
{
	(void)state;
	psk_case("TLS1.2", psk_ok, 1);
	psk_case("TLS1.2", psk_bad, 0);
}

static void test_psk_conf(void **state)
{
	(void)state;
	char err[512] = "";
	struct sg_tls_conf c = {.mode = SG_TLS_PSK, .psk_file = psk_open, .psk_identity = "dev1"};
	SSL_CTX *cc = NULL;
	assert_int_equal(sg_tls_client_ctx_new(&c, &cc, err, sizeof err), SG_ERR_CONFIG);
	assert_non_null(strstr(err, "psk_file"));
	c.psk_file = psk_ok;
	c.psk_identity = "nobody";
	assert_int_equal(sg_tls_client_ctx_new(&c, &cc, err, sizeof err), SG_ERR_CONFIG);
	assert_non_null(strstr(err, "nobody"));
	assert_null(cc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tls13_profile),
	    cmocka_unit_test(test_tls12_profile),
	    cmocka_unit_test(test_old_and_cbc_refused),
	    cmocka_unit_test(test_conf_check),
	    cmocka_unit_test(test_mutual_failures),
	    cmocka_unit_test(test_principal),
	    cmocka_unit_test(test_alpn),
	    cmocka_unit_test(test_resumption13),
	    cmocka_unit_test(test_resumption12),
	    cmocka_unit_test(test_ticket_rotation),
	    cmocka_unit_test(test_crl_reload),
	    cmocka_unit_test(test_client_crl_reload),
	    cmocka_unit_test(test_crl_seconds_left),
	    cmocka_unit_test(test_psk13),
	    cmocka_unit_test(test_psk12),
	    cmocka_unit_test(test_psk_conf),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
