/* bench/idm_load.c: the load client of bench/idm.sh. HTTP/1.1 over TLS, keep-alive, C connections
 * on one epoll thread, the same way against every server. Each request is
 *   METHOD PATH + the -H headers + a form body (-b, the same every time, or -f FILE, one body a
 *   line, line k sent on connection k % C, so a body bound to a connection, e.g. one user per
 *   connection, never runs on two at once).
 * With -f the run ends when the lines are used up (each is a single-use code or login
 * transaction); otherwise after -d seconds. A response is "ok" when its status is -s (200).
 * Prints: requests=N ok=N bad=N reconnects=N secs=S rps=R client_cpu=P% (rps counts ok responses
 * only; client_cpu is its own CPU time over the run, including the first handshakes).
 * usage: idm_load -a HOST:PORT -P PATH [-m POST] [-c 32] [-d 10] [-s 200] [-H "K: V"]...
 *                 [-b BODY | -f FILE] [-C CERT -K KEY]
 * build: cc -O2 -o idm_load idm_load.c -lssl -lcrypto */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum st { ST_HS, ST_WR, ST_RD };
struct conn {
	int fd, idx;
	SSL *ssl;
	enum st st;
	char *req;
	size_t reqlen, reqoff;
	char *buf;
	size_t len, cap;
	long next_line; /* -f: next line index for this connection */
	int busy;
};

static const char *method = "POST", *path, *host, *bodyarg, *bodyfile, *cert, *key;
static char *hdrs;
static int nconn = 32, dur = 10, want = 200, port;
static char **lines;
static long nlines;
static long n_req, n_ok, n_bad, n_reconn;
static int dumped;
static SSL_CTX *ctx;
static int ep;
static struct sockaddr_in sa;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *m)
{
	fprintf(stderr, "idm_load: %s: %s\n", m, strerror(errno));
	ERR_print_errors_fp(stderr);
	exit(2);
}

static void mod(struct conn *c, unsigned ev)
{
	struct epoll_event e = {.events = ev, .data.ptr = c};
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void open_conn(struct conn *c)
{
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		die("socket");
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
		die("connect");
	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_connect_state(c->ssl);
	SSL_set_tlsext_host_name(c->ssl, "localhost");
	c->st = ST_HS;
	c->len = 0;
	struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
}

static void close_conn(struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	SSL_free(c->ssl);
	close(c->fd);
	c->ssl = NULL;
	c->fd = -1;
}

/* builds the next request; 0 when this connection has no more work */
static int build(struct conn *c)
{
	const char *body = bodyarg ? bodyarg : "";
	if (lines) {
		if (c->next_line >= nlines)
			return 0;
		body = lines[c->next_line];
		c->next_line += nconn;
	}
	free(c->req);
	size_t bl = strlen(body);
	size_t cap = strlen(path) + strlen(hdrs) + bl + 256;
	c->req = malloc(cap);
	if (strcmp(method, "GET") == 0)
		c->reqlen =
		    (size_t)snprintf(c->req, cap, "GET %s HTTP/1.1\r\nHost: localhost:%d\r\n%s\r\n",
		                     path, port, hdrs);
	else
		c->reqlen =
		    (size_t)snprintf(c->req, cap,
		                     "%s %s HTTP/1.1\r\nHost: localhost:%d\r\nContent-Type: "
		                     "application/x-www-form-urlencoded\r\n"
		                     "Content-Length: %zu\r\n%s\r\n%s",
		                     method, path, port, bl, hdrs, body);
	c->reqoff = 0;
	c->st = ST_WR;
	c->busy = 1;
	return 1;
}

/* length of a complete response in buf, or 0 */
static size_t complete(struct conn *c, int *status, int *close_after)
{
	if (c->len < 12)
		return 0;
	char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
	if (!end)
		return 0;
	size_t hl = (size_t)(end - c->buf) + 4;
	*status = atoi(c->buf + 9);
	*close_after = 0;
	long clen = -1;
	int chunked = 0;
	for (char *p = memchr(c->buf, '\n', hl); p && p < end;
	     p = memchr(p + 1, '\n', hl - (size_t)(p + 1 - c->buf))) {
		char *h = p + 1;
		if (strncasecmp(h, "content-length:", 15) == 0)
			clen = atol(h + 15);
		else if (strncasecmp(h, "transfer-encoding:", 18) == 0 &&
		         strncasecmp(h + 18, " chunked", 8) == 0)
			chunked = 1;
		else if (strncasecmp(h, "connection:", 11) == 0 &&
		         strncasecmp(h + 11, " close", 6) == 0)
			*close_after = 1;
	}
	if (chunked) {
		char *z = memmem(c->buf + hl - 2, c->len - hl + 2, "\r\n0\r\n\r\n", 7);
		return z ? (size_t)(z - c->buf) + 7 : 0;
	}
	if (clen < 0)
		clen = 0;
	return c->len >= hl + (size_t)clen ? hl + (size_t)clen : 0;
}

int main(int argc, char **argv)
{
	size_t hcap = 4096;
	hdrs = calloc(1, hcap);
	const char *addr = NULL;
	int o;
	while ((o = getopt(argc, argv, "a:P:m:c:d:s:H:b:f:C:K:")) != -1) {
		switch (o) {
		case 'a':
			addr = optarg;
			break;
		case 'P':
			path = optarg;
			break;
		case 'm':
			method = optarg;
			break;
		case 'c':
			nconn = atoi(optarg);
			break;
		case 'd':
			dur = atoi(optarg);
			break;
		case 's':
			want = atoi(optarg);
			break;
		case 'H':
			if (strlen(hdrs) + strlen(optarg) + 3 >= hcap)
				return 2;
			strcat(hdrs, optarg);
			strcat(hdrs, "\r\n");
			break;
		case 'b':
			bodyarg = optarg;
			break;
		case 'f':
			bodyfile = optarg;
			break;
		case 'C':
			cert = optarg;
			break;
		case 'K':
			key = optarg;
			break;
		default:
			fprintf(stderr, "usage: see the header of idm_load.c\n");
			return 2;
		}
	}
	if (!addr || !path)
		return 2;
	char hostbuf[64];
	snprintf(hostbuf, sizeof hostbuf, "%s", addr);
	char *colon = strrchr(hostbuf, ':');
	if (!colon)
		return 2;
	*colon = 0;
	host = hostbuf;
	port = atoi(colon + 1);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	inet_pton(AF_INET, host, &sa.sin_addr);
	if (bodyfile) {
		FILE *f = fopen(bodyfile, "r");
		if (!f)
			die(bodyfile);
		char *l = NULL;
		size_t n = 0;
		ssize_t r;
		long cap = 1024;
		lines = malloc(sizeof *lines * (size_t)cap);
		while ((r = getline(&l, &n, f)) > 0) {
			while (r > 0 && (l[r - 1] == '\n' || l[r - 1] == '\r'))
				l[--r] = 0;
			if (!r)
				continue;
			if (nlines == cap)
				lines = realloc(lines, sizeof *lines * (size_t)(cap *= 2));
			lines[nlines++] = strdup(l);
		}
		fclose(f);
		if (nlines < nconn)
			nconn = (int)nlines;
		if (!nlines) {
			printf("requests=0 ok=0 bad=0 reconnects=0 secs=0 rps=0\n");
			return 0;
		}
	}
	ctx = SSL_CTX_new(TLS_client_method());
	/* a load generator against servers the bench itself started on loopback (three products,
	 * each with its own TLS stack); connections are kept alive, so verifying would only add a
	 * client-side cost to the handshakes. Never a pattern for a real client. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	             SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1))
		die("client certificate");
	ep = epoll_create1(0);
	struct conn *cs = calloc((size_t)nconn, sizeof *cs);
	for (int i = 0; i < nconn; i++) {
		cs[i].idx = i;
		cs[i].next_line = i;
		cs[i].cap = 65536;
		cs[i].buf = malloc(cs[i].cap);
		open_conn(&cs[i]);
	}
	double t0 = now(), tend = t0 + dur;
	int active = nconn;
	struct epoll_event evs[256];
	while (active > 0) {
		if (!lines && now() >= tend)
			break;
		int n = epoll_wait(ep, evs, 256, 100);
		for (int k = 0; k < n; k++) {
			struct conn *c = evs[k].data.ptr;
			if (c->fd < 0)
				continue;
			for (;;) {
				if (c->st == ST_HS) {
					int r = SSL_do_handshake(c->ssl);
					if (r == 1) {
						if (!c->busy && !build(c)) {
							close_conn(c);
							active--;
							break;
						}
						c->st = ST_WR;
						continue;
					}
					int err = SSL_get_error(c->ssl, r);
					if (err == SSL_ERROR_WANT_READ) {
						mod(c, EPOLLIN);
						break;
					}
					if (err == SSL_ERROR_WANT_WRITE) {
						mod(c, EPOLLOUT);
						break;
					}
					die("TLS handshake");
				}
				if (c->st == ST_WR) {
					int r = SSL_write(c->ssl, c->req + c->reqoff,
					                  (int)(c->reqlen - c->reqoff));
					if (r > 0) {
						c->reqoff += (size_t)r;
						if (c->reqoff == c->reqlen) {
							c->st = ST_RD;
							c->len = 0;
						}
						continue;
					}
					int err = SSL_get_error(c->ssl, r);
					if (err == SSL_ERROR_WANT_READ) {
						mod(c, EPOLLIN);
						break;
					}
					if (err == SSL_ERROR_WANT_WRITE) {
						mod(c, EPOLLOUT);
						break;
					}
					goto reconnect;
				}
				/* ST_RD */
				if (c->cap - c->len < 16384)
					c->buf = realloc(c->buf, c->cap *= 2);
				int r =
				    SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len - 1));
				if (r <= 0) {
					int err = SSL_get_error(c->ssl, r);
					if (err == SSL_ERROR_WANT_READ) {
						mod(c, EPOLLIN);
						break;
					}
					if (err == SSL_ERROR_WANT_WRITE) {
						mod(c, EPOLLOUT);
						break;
					}
					goto reconnect;
				}
				c->len += (size_t)r;
				int status, cl;
				size_t got = complete(c, &status, &cl);
				if (!got)
					continue;
				n_req++;
				if (status == want)
					n_ok++;
				else {
					n_bad++;
					if (dumped++ < 2) {
						c->buf[c->len] = 0;
						fprintf(stderr,
						        "idm_load: unexpected response (want %d): "
						        "%.600s\n",
						        want, c->buf);
					}
				}
				c->busy = 0;
				if (cl)
					goto reconnect;
				if (!build(c)) {
					close_conn(c);
					active--;
					break;
				}
				continue;
			reconnect:
				/* the server closed: a lost request with a single-use body stays
				 * lost */
				close_conn(c);
				n_reconn++;
				if (!lines && now() >= tend) {
					active--;
					break;
				}
				c->busy = 0;
				open_conn(c);
				break;
			}
		}
	}
	double secs = now() - t0;
	/* its own CPU: on a shared 2-core machine a load client near 100 % of a core is the limit
	 */
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	             ru.ru_stime.tv_usec / 1e6;
	printf("requests=%ld ok=%ld bad=%ld reconnects=%ld secs=%.2f rps=%.0f client_cpu=%.0f%%\n",
	       n_req, n_ok, n_bad, n_reconn, secs, n_ok / secs, 100.0 * cpu / secs);
	return 0;
}
