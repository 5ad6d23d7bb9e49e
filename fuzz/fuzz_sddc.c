/* fuzz/fuzz_sddc.c: the SEALDD client library (client/sddc.c) against a hostile SEALDD server.
 * A UE app links the library, and everything a server sends reaches its frame reader: this
 * target plays that server. Each input is a script: the first byte picks one or two (URLLC)
 * data channels, the size of the client's receives and its receive bound (rx_queue_max); the
 * rest are operations a server thread performs on real TLS 1.3 channels over loopback, after
 * the usual AUTH_OK and ATTACHED for two flows (A and B): DATA frames of A, B or a flow
 * nobody attached, with chosen sequence numbers and lengths (over the maximum too); END and
 * ERROR for a flow or the whole channel; frames of any type; raw bytes; the size of the TLS
 * records the frames are cut into (1 byte up to 64 KiB, several frames in one record); a
 * frame cut short. The client meanwhile receives from A and B in turn (and, if the first byte
 * says so, sends on A), until both say the flow or the channel ended.
 * Properties, besides no crash, leak or undefined behaviour:
 *  - the client sees the end: once the server has closed, the receives report it within 2 s
 *    of the last byte they delivered;
 *  - one channel: each flow received exactly the payloads of the DATA frames the protocol
 *    accepts (attached flow, not ended, sequence number not yet seen, in the order sent),
 *    up to the first raw bytes or cut frame, and nothing else before that point; with no raw
 *    bytes, exactly those and nothing more (docs/sdd-protocol.md §3, §6);
 *  - URLLC: a flow never receives more bytes than DATA frames of it carried. */
#include "fuzz.h"

#include "base/buf.h"
#include "base/clock.h"
#include "client/sddc.h"
#include "sdd/proto.h"
#include "tls/pki.h"
#include "tls/tls.h"
#include "../tests/sdd_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* payload bytes one script may send, all frames together: enough to reach the largest receive
 * bound (70,000) twice; a sixteenth of that when the client receives a few bytes at a time */
#define MAX_DATA  (160u << 10)
#define MAX_SMALL (4u << 10) /* bytes in records of less than 1,000 bytes (then 16 KiB ones) */

static const char *g_dir;
static char g_ca[128];
static struct sg_tls_server *g_tls;
static int g_lfd = -1, g_port;
static uint8_t g_id[3][SG_SDD_FLOW_ID_LEN]; /* A, B, a flow nobody attached */
static char g_text[2][SG_SDD_FLOW_TEXT_LEN + 1];

/* Once: a development PKI, the server's TLS context, a listening socket on loopback. */
static void init(void)
{
	char err[256] = "", crt[128], key[128];
	signal(SIGPIPE, SIG_IGN);
	g_dir = fuzz_tmpdir("sddc");
	struct sg_pki_opts po = {.dir = g_dir};
	FUZZ_CHECK(sg_pki_init(&po, err, sizeof err) == SG_OK);
	snprintf(g_ca, sizeof g_ca, "%s/ca.crt", g_dir);
	snprintf(crt, sizeof crt, "%s/server.crt", g_dir);
	snprintf(key, sizeof key, "%s/server.key", g_dir);
	struct sg_tls_conf tc = {.mode = SG_TLS_SERVER_AUTH, .cert = crt, .key = key};
	FUZZ_CHECK(sg_tls_server_new(&tc, 0, &g_tls, err, sizeof err) == SG_OK);
	g_lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	FUZZ_CHECK(g_lfd >= 0 && bind(g_lfd, (struct sockaddr *)&a, sizeof a) == 0 &&
	           listen(g_lfd, 4) == 0 && getsockname(g_lfd, (struct sockaddr *)&a, &al) == 0);
	g_port = ntohs(a.sin_port);
	for (int i = 0; i < 3; i++) {
		memset(g_id[i], 0x31 + 0x22 * i, SG_SDD_FLOW_ID_LEN);
		g_id[i][0] = (uint8_t)i;
	}
	sg_sdd_flow_to_text(g_id[0], g_text[0]);
	sg_sdd_flow_to_text(g_id[1], g_text[1]);
}

/* What the protocol delivers of a flow, as the server thread's script goes. */
struct model {
	struct sg_sdd_dedup dd;
	int ended;
	uint64_t seq; /* of the last DATA frame sent */
	struct sg_buf want;
	size_t sent; /* DATA payload bytes sent, duplicates and all */
};

struct run {
	const uint8_t *p;
	size_t n, off;
	unsigned nchan;
	SSL *ssl[2];
	int fd[2];
	struct sg_buf out[2]; /* frames not yet written, cut into records of `chunk` bytes */
	size_t chunk, small;
	struct model m[2];
	int exact; /* no raw bytes or cut frame yet: the model knows what the client takes */
	int gone;  /* the client will take nothing more (the model said the channel dies) */
	size_t data, max_data;
	_Atomic int done;
};

static int next(struct run *r)
{
	return r->off < r->n ? r->p[r->off++] : -1;
}

static void pattern(uint8_t *p, size_t n, unsigned salt)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 13u + salt + (i >> 8));
}

/* Writes the records that are full; all of it with all set. */
static int flush(struct run *r, unsigned ch, int all)
{
	struct sg_buf *b = &r->out[ch];
	size_t off = 0;
	size_t ck = r->chunk < 1000 && r->small > MAX_SMALL ? 16384 : r->chunk;
	while (b->len - off >= ck || (all && off < b->len)) {
		size_t k = b->len - off < ck ? b->len - off : ck;
		if (peer_wr(r->ssl[ch], b->data + off, k))
			return -1;
		off += k;
		r->small += ck < 1000 ? k : 0;
	}
	if (off) {
		memmove(b->data, b->data + off, b->len - off);
		b->len -= off;
	}
	return 0;
}

/* One frame into channel ch's output, and what the client makes of it into the model. */
static int frame(struct run *r, unsigned ch, uint8_t type, uint32_t len, uint64_t seq, int who,
                 const uint8_t *payload)
{
	uint8_t h[SG_SDD_HDR_LEN];
	sg_sdd_frame_header(h, type, len, seq, who < 3 ? g_id[who] : NULL);
	if (sg_buf_append(&r->out[ch], h, sizeof h) != SG_OK ||
	    (len && sg_buf_append(&r->out[ch], payload, len) != SG_OK))
		return -1;
	struct model *m = who < 2 ? &r->m[who] : NULL;
	if (m && type == SG_SDD_DATA)
		m->sent += len;
	struct sg_sdd_frame f;
	if (r->gone || !r->exact)
		return flush(r, ch, 0);
	if (sg_sdd_frame_parse_header(h, &f) < 0)
		r->gone = 1; /* refused from the header: the channel is closed */
	else if (type == SG_SDD_DATA) {
		if (m && !m->ended && sg_sdd_dedup_accept(&m->dd, seq) &&
		    sg_buf_append(&m->want, payload, len) != SG_OK)
			return -1;
	} else if (type == SG_SDD_END || type == SG_SDD_ERROR) {
		if (who == 3)
			r->gone = 1; /* a channel error */
		else if (m)
			m->ended = 1;
	} else if (type != SG_SDD_AUTH_OK && type != SG_SDD_ATTACHED) {
		r->gone = 1; /* a frame a client does not take */
	}
	return flush(r, ch, 0);
}

static const size_t chunks[] = {1, 2, 7, 31, 32, 33, 100, 1000, 4096, 16383, 16384, 16385, 65536};

/* The server's script (the input after its first byte), then close_notify, then it reads
 * what the client still sends until the client closes. */
static void script(struct run *r)
{
	uint8_t *pl = malloc(2 * SG_SDD_MAX_PAYLOAD + 2);
	int o;
	while (pl && (o = next(r)) >= 0) {
		unsigned ch = r->nchan == 2 ? (unsigned)o >> 7 : 0;
		int a, b, c;
		switch (o & 7) {
		case 0: /* DATA: flow A, B, or (bit 3) one nobody attached */
		case 1: {
			int who = o & 8 ? 2 : o & 1;
			if ((a = next(r)) < 0 || (b = next(r)) < 0 || (c = next(r)) < 0)
				goto done;
			struct model *m = who < 2 ? &r->m[who] : NULL;
			uint64_t prev = m ? m->seq : 0, seq;
			if (a == 0xff)
				seq = 0; /* not a sequence number */
			else if (a >= 0xf0)
				seq = prev + 1500u * (unsigned)(a - 0xef); /* past the window */
			else
				seq = prev +
				      (uint64_t)(int64_t)(a - 4); /* 1 ahead at 5; back to -4 */
			uint32_t len = (uint32_t)(b << 8 | c);
			if (o & 0x20)
				len = len * 2 + 2; /* up to twice the maximum */
			if (r->data + len > r->max_data)
				len = 0;
			r->data += len;
			pattern(pl, len, (unsigned)seq * 7u + (unsigned)who);
			if (m)
				m->seq = seq;
			if (frame(r, ch, SG_SDD_DATA, len, seq, who, pl))
				goto done;
			break;
		}
		case 2: { /* END or (bit 3) ERROR: of A, B, nobody's flow, or the channel */
			int who = (o >> 4) & 3;
			if ((a = next(r)) < 0)
				goto done;
			size_t k = (size_t)a % 64;
			if (r->n - r->off < k)
				k = r->n - r->off;
			memcpy(pl, r->p + r->off, k);
			r->off += k;
			if (frame(r, ch, o & 8 ? SG_SDD_ERROR : SG_SDD_END, (uint32_t)k, 0, who,
			          pl))
				goto done;
			break;
		}
		case 3: /* a frame of any type, flow and sequence number, zeros as payload */
			if ((a = next(r)) < 0 || (b = next(r)) < 0 || (c = next(r)) < 0)
				goto done;
			memset(pl, 0, (size_t)c);
			if (frame(r, ch, (uint8_t)a, (uint32_t)c, (uint64_t)b, (o >> 3) & 3, pl))
				goto done;
			break;
		case 4: /* raw bytes */
			if ((a = next(r)) < 0)
				goto done;
			a = (size_t)a > r->n - r->off ? (int)(r->n - r->off) : a;
			r->exact = 0;
			if (sg_buf_append(&r->out[ch], r->p + r->off, (size_t)a) != SG_OK ||
			    flush(r, ch, 0))
				goto done;
			r->off += (size_t)a;
			break;
		case 5: /* the record size from here on */
			if ((a = next(r)) < 0)
				goto done;
			for (unsigned i = 0; i < r->nchan; i++)
				if (flush(r, i, 1))
					goto done;
			r->chunk = chunks[(size_t)a % (sizeof chunks / sizeof chunks[0])];
			break;
		case 6: /* what is gathered goes out now */
			if (flush(r, ch, 1))
				goto done;
			break;
		default: /* a DATA frame of A cut short, and the end of the script */
			if ((a = next(r)) < 0)
				goto done;
			r->exact = 0;
			sg_sdd_frame_header(pl, SG_SDD_DATA, 1000, r->m[0].seq + 1, g_id[0]);
			memset(pl + SG_SDD_HDR_LEN, 0x77, 1000);
			if (sg_buf_append(&r->out[ch], pl, (size_t)a * 4 % (SG_SDD_HDR_LEN + 1000)))
				goto done;
			r->off = r->n;
		}
	}
done:
	free(pl);
}

static void *server(void *arg)
{
	struct run *r = arg;
	static _Thread_local uint8_t buf[4096];
	struct sg_sdd_frame f;
	int one = 1;
	for (unsigned i = 0; i < r->nchan; i++)
		if ((r->fd[i] = accept(g_lfd, NULL, NULL)) < 0 ||
		    setsockopt(r->fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ||
		    !(r->ssl[i] = sg_tls_server_ssl_new(g_tls)) ||
		    SSL_set_fd(r->ssl[i], r->fd[i]) != 1 || SSL_accept(r->ssl[i]) != 1)
			goto out;
	/* the usual start: AUTH -> AUTH_OK, ATTACH A -> ATTACHED, ATTACH B -> ATTACHED */
	static const uint8_t want[] = {SG_SDD_AUTH, SG_SDD_ATTACH, SG_SDD_ATTACH};
	static const uint8_t reply[] = {SG_SDD_AUTH_OK, SG_SDD_ATTACHED, SG_SDD_ATTACHED};
	for (int k = 0; k < 3; k++)
		for (unsigned i = 0; i < r->nchan; i++) {
			uint8_t h[SG_SDD_HDR_LEN];
			if (peer_rd_frame(r->ssl[i], &f, buf, sizeof buf) || f.type != want[k])
				goto out;
			sg_sdd_frame_header(h, reply[k], 0, 1, k ? g_id[k - 1] : NULL);
			if (peer_wr(r->ssl[i], h, sizeof h))
				goto out;
		}
	script(r);
	for (unsigned i = 0; i < r->nchan; i++)
		if (!flush(r, i, 1))
			SSL_shutdown(r->ssl[i]); /* close_notify */
	r->done = 1;
	for (unsigned i = 0; i < r->nchan; i++) { /* until the client closes */
		size_t n;
		while (SSL_read_ex(r->ssl[i], buf, sizeof buf, &n) == 1)
			;
	}
out:
	r->done = 1;
	for (unsigned i = 0; i < r->nchan; i++) {
		SSL_free(r->ssl[i]);
		if (r->fd[i] >= 0)
			close(r->fd[i]);
	}
	return NULL;
}

static const size_t caps[] = {1, 7, 1000, 16384, 65536, 262144, 33, 4096};
static const size_t rxqs[] = {0, 1, 1000, 70000};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	if (!inited) {
		init();
		inited = 1;
	}
	if (size < 1)
		return 0;
	struct run r = {.p = data, .n = size, .off = 1, .fd = {-1, -1}, .chunk = 16384, .exact = 1};
	r.nchan = (data[0] & 1) + 1;
	size_t cap = caps[(data[0] >> 1) & 7];
	r.max_data = cap < 64 ? MAX_DATA / 16 : MAX_DATA;
	int sends = data[0] & 0x40;
	pthread_t th;
	FUZZ_CHECK(pthread_create(&th, NULL, server, &r) == 0);

	char url[64], err[256] = "";
	snprintf(url, sizeof url, "https://localhost:%d", g_port);
	struct sg_sddc_conf c = {.url = url,
	                         .ca = g_ca,
	                         .token = "t",
	                         .timeout_ms = 5000,
	                         .rx_queue_max = rxqs[(data[0] >> 4) & 3]};
	struct sg_sddc *s = NULL;
	FUZZ_CHECK(sg_sddc_connect(&c, "127.0.0.1", (unsigned)g_port, r.nchan, &s, err,
	                           sizeof err) == SG_OK);
	FUZZ_CHECK(sg_sddc_attach(s, g_text[0], 0, err, sizeof err) == SG_OK);
	/* the script follows B's ATTACHED at once: what it does to the channel or to B may be
	 * what this attach sees first */
	sg_err ae = sg_sddc_attach(s, g_text[1], 0, err, sizeof err);
	FUZZ_CHECK(ae == SG_OK || ae == SG_ERR_PROTO || ae == SG_ERR_DENIED);

	struct sg_buf got[2] = {{0}};
	uint8_t *buf = malloc(cap);
	FUZZ_CHECK(buf != NULL);
	int64_t quiet_since = -1;
	int moved = 0;
	for (;;) {
		int over = 0, was = moved;
		moved = 0;
		for (int k = 0; k < 2; k++) {
			size_t n = 0;
			/* no waiting while data moves, nor while the other flow's queue may be
			 * what holds the channel */
			long wait = was || moved || sg_sddc_queued(s, g_text[!k]) ? 0 : 10;
			sg_err e = sg_sddc_recv(s, g_text[k], buf, cap, wait, &n, err, sizeof err);
			if (e == SG_OK) {
				FUZZ_CHECK(n > 0 && n <= cap);
				FUZZ_CHECK(sg_buf_append(&got[k], buf, n) == SG_OK);
				moved = 1;
			} else {
				FUZZ_CHECK(n == 0 && (e == SG_ERR_TIMEOUT || e == SG_ERR_PROTO));
				over += e == SG_ERR_PROTO && sg_sddc_queued(s, g_text[k]) == 0;
			}
		}
		if (over == 2)
			break; /* both flows, or the channels, ended, and nothing is left */
		if (sends)
			sg_sddc_send(s, g_text[0], "up", 2, err, sizeof err);
		/* liveness: once the server has closed, the client sees the end */
		if (!r.done || moved)
			quiet_since = -1;
		else if (quiet_since < 0)
			quiet_since = sg_mono_ms();
		else
			FUZZ_CHECK(sg_mono_ms() - quiet_since < 2000);
	}
	sg_sddc_close(s);
	pthread_join(th, NULL);

	for (int k = 0; k < 2; k++) {
		const struct model *m = &r.m[k];
		if (r.exact) /* raw bytes may hold DATA frames of their own */
			FUZZ_CHECK(got[k].len <= m->sent);
		if (r.nchan == 1) {
			/* what the protocol accepted before the first raw bytes came first and
			 * whole */
			FUZZ_CHECK(got[k].len >= m->want.len);
			FUZZ_CHECK(!m->want.len || !memcmp(got[k].data, m->want.data, m->want.len));
			if (r.exact) /* and, with no raw bytes, nothing else */
				FUZZ_CHECK(got[k].len == m->want.len);
		}
		sg_buf_free(&got[k]);
		sg_buf_free(&r.m[k].want);
	}
	sg_buf_free(&r.out[0]);
	sg_buf_free(&r.out[1]);
	free(buf);
	return 0;
}
