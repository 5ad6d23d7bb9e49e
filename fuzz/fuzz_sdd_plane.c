/* fuzz/fuzz_sdd_plane.c: the SEALDD server's data plane (src/sdd/plane.c) against a hostile
 * SEALDD client. The whole server runs in this process (`sealguard serve --roles idm,sdd` on
 * loopback, with a development PKI, a user, a VAL server, a transmission and a VAL echo
 * endpoint), so that libFuzzer sees the data plane's coverage. Each input is a script for one
 * data channel (real TLS 1.3): the first byte picks how it starts (AUTH with the user's token,
 * that and ATTACH of the user's flow, AUTH with a token from the input, or nothing), whether
 * the client reads the answers as it goes or not at all, and the size of its TLS records; the
 * rest are AUTH, ATTACH and DETACH of the flow or of flows nobody opened, DATA with chosen
 * sequence numbers and lengths (over the maximum too), headers of any bytes, raw bytes, pauses,
 * and the flow's release (`DELETE /sdd-flows/v1/flows/{id}`) with a new flow opened in its
 * place, while the channel may hold it. The channel ends with a close or a reset.
 * Properties, besides no crash, leak or undefined behaviour in the server:
 *  - the data plane goes on: after every input a new channel is authenticated within 2 s;
 *  - everything the server sends is a well-formed frame of a type the server may send;
 *  - DATA comes only for the user's flows, only after ATTACHED for that flow on this channel
 *    and never after its END; ATTACHED only for the user's flows. */
#include "fuzz.h"

#include "base/buf.h"
#include "base/clock.h"
#include "cli/cli.h"
#include "client/sddc.h"
#include "sdd/proto.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_OUT (1u << 20) /* bytes one script may write */

static const char *g_dir;
static char g_ca[160], g_token[4096], g_url[64];
static uint8_t g_flow[SG_SDD_FLOW_ID_LEN]; /* the user's flow (a new one after a release) */
/* flows nobody opened: one the scripts use, one for the probe that ends each script */
static const uint8_t g_other[SG_SDD_FLOW_ID_LEN] = {0x5c, 0x5c, 0x5c, 0x5c, 0x5c, 0x5c, 0x5c, 0x5c,
                                                    0x5c, 0x5c, 0x5c, 0x5c, 0x5c, 0x5c, 0x5c, 0x5c};
static const uint8_t g_probe[SG_SDD_FLOW_ID_LEN] = {0x6d, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d,
                                                    0x6d, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d, 0x6d};
static int g_data_port;
static SSL_CTX *g_ctx;
static struct sg_cli_global g_glob;

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	FUZZ_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	           getsockname(fd, (struct sockaddr *)&a, &al) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	FUZZ_CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

/* One sealguard command, in this process. */
#define CLI(fn, ...)                                                                               \
	do {                                                                                       \
		char *av_[] = {__VA_ARGS__, NULL};                                                 \
		FUZZ_CHECK(fn((int)(sizeof av_ / sizeof av_[0]) - 1, av_, &g_glob) == 0);          \
	} while (0)

static void *serve_main(void *arg)
{
	(void)arg;
	char *av[] = {"serve", "--roles", "idm,sdd", NULL};
	sg_cli_serve((int)(sizeof av / sizeof av[0]) - 1, av, &g_glob);
	return NULL;
}

static char g_echo_bind[32], g_echo_crt[160], g_echo_key[160];

static void *echo_main(void *arg)
{
	(void)arg;
	char *av[] = {"dd",    "echo-server", "--bind",   g_echo_bind, "--cert", g_echo_crt,
	              "--key", g_echo_key,    "--cacert", g_ca,        NULL};
	sg_cli_dd((int)(sizeof av / sizeof av[0]) - 1, av, &g_glob);
	return NULL;
}

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                        .sin_port = htons((uint16_t)port)};
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Opens a flow for the user: the new g_flow. */
static void flow_new(void)
{
	char err[256];
	struct sg_sddc_conf c = {.url = g_url, .ca = g_ca, .token = g_token};
	struct sg_sddc_flow f;
	FUZZ_CHECK(sg_sddc_flow_open(&c, "fz", &f, err, sizeof err) == SG_OK);
	FUZZ_CHECK(sg_sdd_flow_from_text(f.id, g_flow) == 0);
}

/* Releases the user's flow (it may already be gone: a relay that ended takes it along) and
 * opens a new one. */
static void flow_renew(void)
{
	char err[256], text[SG_SDD_FLOW_TEXT_LEN + 1];
	struct sg_sddc_conf c = {.url = g_url, .ca = g_ca, .token = g_token};
	sg_sdd_flow_to_text(g_flow, text);
	sg_sddc_flow_release(&c, text, err, sizeof err);
	flow_new();
}

/* Once: the server, its registry, a transmission for VAL service "fz" to the echo endpoint, the
 * user's access token and flow. */
static void init(void)
{
	signal(SIGPIPE, SIG_IGN);
	g_dir = fuzz_tmpdir("plane");
	char p[12][192], yaml[2048];
	int uu = free_port(), s = free_port(), e = free_port(), admin = free_port(),
	    echo = free_port();
	g_data_port = free_port();
	snprintf(p[0], sizeof p[0], "%s/pki", g_dir);
	snprintf(p[1], sizeof p[1], "%s/sg.yaml", g_dir);
	snprintf(p[2], sizeof p[2], "%s/u.pw", g_dir);
	snprintf(p[3], sizeof p[3], "%s/ue.secret", g_dir);
	snprintf(p[4], sizeof p[4], "%s/tokens", g_dir);
	snprintf(p[5], sizeof p[5], "%s/tr.json", g_dir);
	snprintf(g_url, sizeof g_url, "https://localhost:%d", uu);
	snprintf(p[6], sizeof p[6], "%s", g_url);
	snprintf(p[7], sizeof p[7], "https://localhost:%d/sdd-trans/v1/regular/request-trans", s);
	snprintf(g_ca, sizeof g_ca, "%s/pki/ca.crt", g_dir);
	snprintf(g_echo_crt, sizeof g_echo_crt, "%s/pki/seal-servers/echo-app.crt", g_dir);
	snprintf(g_echo_key, sizeof g_echo_key, "%s/pki/seal-servers/echo-app.key", g_dir);
	snprintf(g_echo_bind, sizeof g_echo_bind, "127.0.0.1:%d", echo);
	/* the SEALDD limits at their largest: this client opens two channels per input */
	snprintf(yaml, sizeof yaml,
	         "state_dir: %s/sg\npki_dir: %s\nworkers: 1\nlog_level: error\naccess_log: 0\n"
	         "admin: {bind: 127.0.0.1:%d}\n"
	         "idm: {scrypt_ln: 10, access_token_ttl_s: 3000, id_token_ttl_s: 3600}\n"
	         "sdd: {data_bind: 127.0.0.1:%d, flow_lifetime_s: 86400,\n"
	         "      channels_per_second_per_address: 1000000}\n"
	         "reference_points:\n"
	         "  - {name: SEAL-UU, bind: 127.0.0.1:%d, tls: {mode: server-auth}, auth: bearer,"
	         " services: [idm, sdd]}\n"
	         "  - {name: SEAL-S, bind: 127.0.0.1:%d, tls: {mode: mutual}, auth: mtls+bearer,"
	         " services: [idm, sdd]}\n"
	         "  - {name: SEAL-E, bind: 127.0.0.1:%d, tls: {mode: mutual}, auth: mtls,"
	         " services: [idm]}\n",
	         g_dir, p[0], admin, g_data_port, uu, s, e);
	put(p[1], yaml);
	put(p[2], "fuzz-pass-1\n");
	g_glob.config = p[1];
	g_glob.state_dir = g_dir;
	CLI(sg_cli_pki, "pki", "init", "--dir", p[0], "--seal-server", "echo-app");
	CLI(sg_cli_user, "user", "add", "fz", "--password-file", p[2]);
	CLI(sg_cli_client, "client", "add", "ue-app", "--redirect-uri", "http://127.0.0.1/callback",
	    "--secret-file", p[3]);
	CLI(sg_cli_valserver, "valserver", "add", "echo-app", "--identity", "DNS:echo-app",
	    "--val-service", "fz");
	pthread_t th;
	FUZZ_CHECK(pthread_create(&th, NULL, serve_main, NULL) == 0);
	pthread_detach(th);
	int fd = -1;
	for (int i = 0; i < 300 && fd < 0; i++)
		if ((fd = connect_to(g_data_port)) < 0)
			usleep(20000);
	FUZZ_CHECK(fd >= 0);
	close(fd);
	usleep(200000); /* the other listeners and the policy's key set */
	FUZZ_CHECK(pthread_create(&th, NULL, echo_main, NULL) == 0);
	pthread_detach(th);
	for (int i = 0; i < 300 && (fd = connect_to(echo)) < 0; i++)
		usleep(20000);
	FUZZ_CHECK(fd >= 0);
	close(fd);
	snprintf(yaml, sizeof yaml,
	         "{\"valServiceId\":\"fz\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\","
	         "\"port\":%d}}",
	         echo);
	put(p[5], yaml);
	CLI(sg_cli_call, "call", "POST", p[7], "--name", "echo-app", "--cert", g_echo_crt, "--key",
	    g_echo_key, "--body", p[5]);
	CLI(sg_cli_login, "login", "--issuer", p[6], "--client-id", "ue-app",
	    "--client-secret-file", p[3], "--username", "fz", "--password-file", p[2], "--cacert",
	    g_ca, "--token-cache", p[4], "--scope", "openid sdd");
	json_t *t = json_load_file(p[4], 0, NULL);
	const char *at = json_string_value(json_object_get(t, "access_token"));
	FUZZ_CHECK(at && strlen(at) < sizeof g_token);
	strcpy(g_token, at);
	json_decref(t);
	flow_new();
	FUZZ_CHECK((g_ctx = SSL_CTX_new(TLS_client_method())) != NULL);
	SSL_CTX_set_min_proto_version(g_ctx, TLS1_3_VERSION);
	FUZZ_CHECK(SSL_CTX_load_verify_locations(g_ctx, g_ca, NULL) == 1);
	SSL_CTX_set_verify(g_ctx, SSL_VERIFY_PEER, NULL);
}

/* One data channel. */
struct ch {
	int fd;
	SSL *ssl;
	struct sg_buf in; /* what came, frames not yet taken */
	int first;        /* the type of the first frame that came (0: none yet) */
	struct {          /* the user's flows during this channel: the first, then renewed ones */
		uint8_t id[SG_SDD_FLOW_ID_LEN];
		int attached, ended; /* ATTACHED, END for it came on this channel */
	} flows[4];
	int nflows;
	int flow_answers;  /* frames about the user's flows that came: ATTACHED, ERROR, END */
	int probed;        /* the probe's answer came */
	int closed;        /* the server closed or the connection failed */
	struct sg_buf out; /* frames written in records of `chunk` bytes */
	size_t chunk, written;
};

static int ch_open(struct ch *c)
{
	memset(c, 0, sizeof *c);
	memcpy(c->flows[0].id, g_flow, sizeof g_flow);
	c->nflows = 1;
	if ((c->fd = connect_to(g_data_port)) < 0)
		return -1;
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct timeval tv = {0, 200000}; /* a server that stops reading ends the script */
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	c->ssl = SSL_new(g_ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, "localhost");
	SSL_set1_host(c->ssl, "localhost");
	c->chunk = 16384;
	return SSL_connect(c->ssl) == 1 ? 0 : -1;
}

/* Closes the channel: a FIN, or with reset set an RST. */
static void ch_close(struct ch *c, int reset)
{
	SSL_free(c->ssl);
	if (c->fd >= 0) {
		struct linger l = {1, 0};
		if (reset)
			setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
		close(c->fd);
	}
	sg_buf_free(&c->in);
	sg_buf_free(&c->out);
}

static int ch_flow(struct ch *c, const uint8_t *id)
{
	for (int i = 0; i < c->nflows; i++)
		if (!memcmp(c->flows[i].id, id, SG_SDD_FLOW_ID_LEN))
			return i;
	return -1;
}

/* Takes the complete frames that came: each must be well-formed and one the server sends. */
static void ch_take(struct ch *c)
{
	size_t off = 0;
	while (c->in.len - off >= SG_SDD_HDR_LEN) {
		struct sg_sdd_frame f;
		const uint8_t *h = (const uint8_t *)c->in.data + off;
		FUZZ_CHECK(sg_sdd_frame_parse_header(h, &f) == 0);
		FUZZ_CHECK(f.type == SG_SDD_AUTH_OK || f.type == SG_SDD_ATTACHED ||
		           f.type == SG_SDD_DATA || f.type == SG_SDD_END || f.type == SG_SDD_ERROR);
		if (c->in.len - off < SG_SDD_HDR_LEN + f.len)
			break;
		if (!c->first)
			c->first = f.type;
		int i = ch_flow(c, f.flow);
		if (f.type == SG_SDD_ATTACHED) { /* only the user's flows can be attached */
			FUZZ_CHECK(i >= 0);
			c->flows[i].attached = 1;
		}
		if (f.type == SG_SDD_END && i >= 0)
			c->flows[i].ended = 1;
		if (f.type != SG_SDD_DATA && i >= 0)
			c->flow_answers++;
		if (f.type == SG_SDD_ERROR && !memcmp(f.flow, g_probe, sizeof g_probe))
			c->probed = 1;
		if (f.type == SG_SDD_DATA) /* flow isolation: only an attached flow's data */
			FUZZ_CHECK(i >= 0 && c->flows[i].attached && !c->flows[i].ended);
		off += SG_SDD_HDR_LEN + f.len;
	}
	if (off) {
		memmove(c->in.data, c->in.data + off, c->in.len - off);
		c->in.len -= off;
	}
}

/* Reads what the server sends for up to ms milliseconds (0: what is there now). */
static void ch_read(struct ch *c, int ms)
{
	int64_t end = sg_mono_ms() + ms;
	uint8_t b[16384];
	while (!c->closed) {
		if (!SSL_has_pending(c->ssl)) {
			long left = (long)(end - sg_mono_ms());
			struct pollfd pf = {.fd = c->fd, .events = POLLIN};
			if (poll(&pf, 1, left > 0 ? (int)left : 0) <= 0)
				return;
		}
		int n = SSL_read(c->ssl, b, sizeof b);
		if (n <= 0) {
			c->closed = 1;
			ERR_clear_error();
			return;
		}
		FUZZ_CHECK(sg_buf_append(&c->in, b, (size_t)n) == SG_OK);
		ch_take(c);
	}
}

/* Writes what is gathered in records of `chunk` bytes; all of it with all set. -1: the server
 * took nothing for 200 ms, or the channel is gone. */
static int ch_flush(struct ch *c, int all)
{
	size_t off = 0;
	int rc = 0;
	while (!c->closed && (c->out.len - off >= c->chunk || (all && off < c->out.len))) {
		size_t k = c->out.len - off < c->chunk ? c->out.len - off : c->chunk, w;
		if (SSL_write_ex(c->ssl, c->out.data + off, k, &w) != 1) {
			ERR_clear_error();
			rc = -1;
			break;
		}
		off += w;
	}
	if (off) {
		memmove(c->out.data, c->out.data + off, c->out.len - off);
		c->out.len -= off;
	}
	return c->closed ? -1 : rc;
}

static int ch_frame(struct ch *c, uint8_t type, const uint8_t *flow, uint64_t seq, const void *p,
                    size_t n)
{
	uint8_t h[SG_SDD_HDR_LEN];
	sg_sdd_frame_header(h, type, (uint32_t)n, seq, flow);
	FUZZ_CHECK(sg_buf_append(&c->out, h, sizeof h) == SG_OK &&
	           (!n || sg_buf_append(&c->out, p, n) == SG_OK));
	c->written += sizeof h + n;
	return ch_flush(c, 0);
}

/* Reads until *what is set (or the channel closed), for up to ms milliseconds. */
static void ch_wait(struct ch *c, const int *what, int ms)
{
	int64_t end = sg_mono_ms() + ms;
	while (!c->closed && !*what && sg_mono_ms() < end)
		ch_read(c, 10);
}

/* The data plane goes on: a new channel gets AUTH_OK for the user's token within 2 s. */
static void alive(void)
{
	struct ch c;
	FUZZ_CHECK(ch_open(&c) == 0);
	FUZZ_CHECK(ch_frame(&c, SG_SDD_AUTH, NULL, 0, g_token, strlen(g_token)) == 0);
	FUZZ_CHECK(ch_flush(&c, 1) == 0);
	int64_t end = sg_mono_ms() + 2000;
	while (!c.closed && sg_mono_ms() < end && !c.first)
		ch_read(&c, 50);
	FUZZ_CHECK(c.first == SG_SDD_AUTH_OK);
	ch_close(&c, 0);
}

static const size_t chunks[] = {16384, 1, 7, 32, 100, 4096, 16383, 65536};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	if (!inited) {
		init();
		inited = 1;
	}
	if (size < 1)
		return 0;
	struct ch c;
	if (ch_open(&c) != 0) {
		ch_close(&c, 0);
		FUZZ_CHECK(!"a TLS handshake with the data endpoint failed");
	}
	const uint8_t *p = data + 1, *end = data + size;
	int start = data[0] & 3, reads = data[0] & 4, reset = data[0] & 0x40, renewed = 0;
	c.chunk = chunks[(data[0] >> 3) & 7];
	static uint8_t pl[2 * SG_SDD_MAX_PAYLOAD + 2];
	const uint8_t *other = g_other;
	int rc = 0;
	/* a start as a client makes it: each answer awaited (the token's check and the relay's
	 * connection take a while), so that the script meets an authenticated, attached channel */
	if (start == 0 || start == 1) {
		rc = ch_frame(&c, SG_SDD_AUTH, NULL, 0, g_token, strlen(g_token));
		if (!rc && !(rc = ch_flush(&c, 1)))
			ch_wait(&c, &c.first, 1000);
	}
	if (!rc && start == 1) {
		rc = ch_frame(&c, SG_SDD_ATTACH, g_flow, 0, NULL, 0);
		if (!rc && !(rc = ch_flush(&c, 1)))
			ch_wait(&c, &c.flow_answers, 1000);
	}
	if (!rc && start == 2) { /* a token from the input */
		size_t k = p < end ? *p++ % 64 : 0;
		k = k > (size_t)(end - p) ? (size_t)(end - p) : k;
		rc = ch_frame(&c, SG_SDD_AUTH, NULL, 0, p, k);
		p += k;
	}
	uint64_t seq = 0;
	while (!rc && p < end && c.written < MAX_OUT) {
		int o = *p++;
		int a = p < end ? *p++ : 0;
		switch (o & 7) {
		case 0: /* DATA of the flow, or (bit 3) of one nobody opened */
		case 1: {
			int b = p < end ? *p++ : 0;
			size_t n = (size_t)(a << 8 | b);
			if (o & 0x10)
				n = n * 2 + 2; /* up to twice the maximum */
			int m = (o >> 5) & 7;  /* the sequence number */
			seq = m == 0   ? seq + 1
			      : m == 1 ? seq
			      : m == 2 ? seq - 3
			      : m == 3 ? UINT64_MAX - (uint64_t)(a & 15)
			      : m == 4 ? 0
			      : m == 5 ? seq + 1000 + (uint64_t)b
			               : seq + 1;
			memset(pl, 0x33 + (int)(seq & 63), n);
			rc = ch_frame(&c, SG_SDD_DATA, o & 8 ? other : g_flow, seq, pl, n);
			break;
		}
		case 2: /* ATTACH (bit 3: send-only), of the flow or (bit 4) of one nobody opened */
			rc = ch_frame(&c, SG_SDD_ATTACH, o & 0x10 ? other : g_flow, (o >> 3) & 1,
			              NULL, 0);
			break;
		case 3: /* DETACH */
			rc = ch_frame(&c, SG_SDD_DETACH, o & 0x10 ? other : g_flow, 0, NULL, 0);
			break;
		case 4: /* AUTH again: the token, or a bytes of the input */
			if (o & 8) {
				size_t k =
				    (size_t)a > (size_t)(end - p) ? (size_t)(end - p) : (size_t)a;
				rc = ch_frame(&c, SG_SDD_AUTH, NULL, 0, p, k);
				p += k;
			} else {
				rc = ch_frame(&c, SG_SDD_AUTH, NULL, 0, g_token, strlen(g_token));
			}
			break;
		case 5: { /* a header of the input's bytes (the first 32 after this), a bytes of
			     payload */
			uint8_t h[SG_SDD_HDR_LEN] = {0};
			size_t k = (size_t)(end - p) < sizeof h ? (size_t)(end - p) : sizeof h;
			memcpy(h, p, k);
			p += k;
			FUZZ_CHECK(sg_buf_append(&c.out, h, sizeof h) == SG_OK);
			memset(pl, 0, (size_t)a);
			FUZZ_CHECK(sg_buf_append(&c.out, pl, (size_t)a) == SG_OK);
			c.written += sizeof h + (size_t)a;
			rc = ch_flush(&c, 0);
			break;
		}
		case 6: /* raw bytes */ {
			size_t k = (size_t)a > (size_t)(end - p) ? (size_t)(end - p) : (size_t)a;
			FUZZ_CHECK(sg_buf_append(&c.out, p, k) == SG_OK);
			p += k;
			c.written += k;
			rc = ch_flush(&c, 0);
			break;
		}
		default:
			if ((o & 0x38) == 0x38 && renewed < 2 && c.nflows < 4) {
				/* the flow released and a new one opened (the server ends the old
				 * one on this channel within its sweep period) */
				renewed++;
				flow_renew();
				memcpy(c.flows[c.nflows++].id, g_flow, sizeof g_flow);
				break;
			}
			/* what is gathered goes out; a pause */
			rc = ch_flush(&c, 1);
			ch_read(&c, a % 8);
		}
		if (reads)
			ch_read(&c, 0);
	}
	/* the probe: DATA of a flow nobody opened, answered once every frame before it was
	 * taken (or the channel closes, unauthenticated) */
	if (!rc && !ch_frame(&c, SG_SDD_DATA, g_probe, 1, NULL, 0) && !ch_flush(&c, 1))
		ch_wait(&c, &c.probed, 1000);
	ch_close(&c, reset);
	alive();
	return 0;
}
