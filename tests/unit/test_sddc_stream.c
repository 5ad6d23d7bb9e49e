/* test_sddc_stream.c: the SEALDD client's user plane (client/sddc.c) against a TLS 1.3 peer
 * that writes frames exactly as a test needs them (docs/sdd-protocol.md §3, §6): headers and
 * payloads split at every byte (one TLS record per byte), several frames in one record,
 * receives smaller than a frame, zero-length DATA, duplicates, DATA of a flow not attached,
 * END after data, every header rejection, and sends large enough to block while the peer
 * echoes (the gathering write BIO, the queue behind it, reading while blocked), and how sends
 * are cut into DATA frames and TLS records (as few records as the bytes allow), attaching again
 * after END or a refusal, uplink sequence numbers at the end of their space, and the data
 * endpoint in a flow answer (sddFlowId signalling, a peer that answers HTTP/1.1). The peer is a
 * real OpenSSL server with the sealguard TLS profile and the development PKI. Also: the output
 * memory of a long send to a slow peer, and a URLLC session losing one channel (stalled, closed).
 */
#include "client/sddc.h"
#include "sdd/proto.h"
#include "tls/pki.h"
#include "tls/tls.h"
#include "../sdd_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static char g_dir[64], g_ca[128];
static struct sg_tls_server *g_tls;
static uint8_t g_flow[SG_SDD_FLOW_ID_LEN], g_flow2[SG_SDD_FLOW_ID_LEN];
static char g_flow_text[SG_SDD_FLOW_TEXT_LEN + 1], g_flow2_text[SG_SDD_FLOW_TEXT_LEN + 1];

enum scenario {
	SC_SPLIT,
	SC_BADHDR,
	SC_ECHO,
	SC_AFTER_END,
	SC_REATTACH,
	SC_SEQ_END,
	SC_SEQ_MID, /* an ATTACHED in the middle of a send moves the numbers to the end */
	SC_AFTER_RECV,
	SC_FLOOD,  /* flood_main */
	SC_HTTP,   /* http_main */
	SC_SINK,   /* sink_main */
	SC_REFUSE, /* refuse_main */
};

/* SC_SINK: what the peer does with the channels once the flow is attached on them */
enum sink {
	SINK_SLOW,   /* one channel, read 16 KiB every 5 ms */
	SINK_STALL,  /* two channels (URLLC), the second never read again */
	SINK_REAUTH, /* two channels, the second closed; AUTH on the first answered */
	SINK_CLOSE,  /* one channel, closed at once */
};

#define SINK_TOTAL (32u << 20) /* SC_SINK: the bytes the client sends */
#define SLOW_TOTAL (8u << 20)  /* ... SINK_SLOW */

#define HTTP_REQS 3 /* SC_HTTP: flow answers the peer gives, one per connection */

#define FLOOD_TOTAL (48u << 20) /* SC_FLOOD: DATA bytes the peer sends */
#define FLOOD_RXQ   (1u << 20)  /* the client's rx_queue_max in that test */

struct peer {
	enum scenario sc;
	int bad; /* SC_BADHDR: which header defect */
	int lfd, port;
	pthread_t th;
	int ok; /* the peer saw what it expected */
	/* SC_ECHO: the DATA frames' payload lengths and the client's TLS records' plaintext
	 * lengths after ATTACH, as the peer received them */
	int count;
	size_t nfr, nrec;
	size_t fr[512], rec[1024];
	unsigned nconn;           /* SC_FLOOD: data channels (2: URLLC) */
	_Atomic size_t written;   /* SC_FLOOD: DATA bytes the client's sockets took */
	char req[HTTP_REQS][512]; /* SC_HTTP: the request heads as the peer received them */
	enum sink sink;           /* SC_SINK */
};

/* The record layer's callback: the 5-byte header of every received record (RFC 8446 §5.2):
 * plaintext = length - inner content type - AEAD tag. */
static void rec_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
	(void)version;
	struct peer *pe = arg;
	const uint8_t *b = buf;
	if (write_p || content_type != SSL3_RT_HEADER || len < 5 || !pe->count ||
	    b[0] != SSL3_RT_APPLICATION_DATA)
		return;
	const char *cn = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
	size_t tag = cn && strstr(cn, "CCM_8") ? 8 : 16;
	if (pe->nrec < sizeof pe->rec / sizeof pe->rec[0])
		pe->rec[pe->nrec] = ((size_t)b[3] << 8 | b[4]) - 1 - tag;
	pe->nrec++;
}

/* one frame (header + payload) in buf; returns its length */
static size_t frame(uint8_t *buf, uint8_t type, uint64_t seq, const uint8_t *flow, const void *p,
                    size_t n)
{
	sg_sdd_frame_header(buf, type, (uint32_t)n, seq, flow);
	if (n)
		memcpy(buf + SG_SDD_HDR_LEN, p, n);
	return SG_SDD_HDR_LEN + n;
}

static void pattern(uint8_t *p, size_t n, unsigned salt)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7u + salt + (i >> 9));
}

static void *peer_main(void *arg)
{
	struct peer *pe = arg;
	int fd = accept(pe->lfd, NULL, NULL);
	SSL *ssl = fd >= 0 ? sg_tls_server_ssl_new(g_tls) : NULL;
	static uint8_t buf[4u << 20], pl[SG_SDD_MAX_PAYLOAD];
	struct sg_sdd_frame f;
	if (!ssl || SSL_set_fd(ssl, fd) != 1)
		goto out;
	SSL_set_msg_callback(ssl, rec_cb);
	SSL_set_msg_callback_arg(ssl, pe);
	if (SSL_accept(ssl) != 1)
		goto out;
	/* AUTH (its token is not this test's business), then ATTACH of the flow */
	if (peer_rd_frame(ssl, &f, pl, sizeof pl) || f.type != SG_SDD_AUTH)
		goto out;
	size_t n = frame(buf, SG_SDD_AUTH_OK, 4000000000u, NULL, NULL, 0);
	if (peer_wr(ssl, buf, n) || peer_rd_frame(ssl, &f, pl, sizeof pl) ||
	    f.type != SG_SDD_ATTACH || memcmp(f.flow, g_flow, sizeof g_flow))
		goto out;
	/* SC_SEQ_END: the next uplink sequence number is the last but one */
	n = frame(buf, SG_SDD_ATTACHED, pe->sc == SC_SEQ_END ? UINT64_MAX - 1 : 1, g_flow, NULL, 0);
	pe->count = pe->sc == SC_ECHO; /* from here on the client sends DATA only */
	if (peer_wr(ssl, buf, n))
		goto out;
	if (pe->sc == SC_AFTER_RECV) {
		/* DATA for a receive; ATTACH of the second flow and AUTH answered after it; an
		 * ERROR ALREADY_ATTACHED of the first flow (an ATTACH repeated after a late
		 * ATTACHED) followed by more of its DATA; then an echo as SC_ECHO's */
		n = frame(buf, SG_SDD_DATA, 1, g_flow, "hi", 2);
		if (peer_wr(ssl, buf, n) || peer_rd_frame(ssl, &f, pl, sizeof pl) ||
		    f.type != SG_SDD_ATTACH || memcmp(f.flow, g_flow2, sizeof g_flow2))
			goto out;
		n = frame(buf, SG_SDD_ATTACHED, 1, g_flow2, NULL, 0);
		n += frame(buf + n, SG_SDD_ERROR, 0, g_flow, "ALREADY_ATTACHED", 16);
		n += frame(buf + n, SG_SDD_DATA, 2, g_flow, "after", 5);
		if (peer_wr(ssl, buf, n) || peer_rd_frame(ssl, &f, pl, sizeof pl) ||
		    f.type != SG_SDD_AUTH)
			goto out;
		n = frame(buf, SG_SDD_AUTH_OK, 4000000000u, NULL, NULL, 0);
		if (peer_wr(ssl, buf, n))
			goto out;
	}
	if (pe->sc == SC_AFTER_END) { /* the second flow */
		n = frame(buf, SG_SDD_ATTACHED, 1, g_flow2, NULL, 0);
		if (peer_rd_frame(ssl, &f, pl, sizeof pl) || f.type != SG_SDD_ATTACH ||
		    memcmp(f.flow, g_flow2, sizeof g_flow2) || peer_wr(ssl, buf, n))
			goto out;
	}
	if (pe->sc == SC_SPLIT) {
		uint8_t other[SG_SDD_FLOW_ID_LEN];
		memset(other, 0x5a, sizeof other);
		static uint8_t data[70000];
		pattern(data, sizeof data, 3);
		/* frame 1 (300 bytes of payload): one TLS record per byte */
		n = frame(buf, SG_SDD_DATA, 1, g_flow, data, 300);
		for (size_t i = 0; i < n; i++)
			if (peer_wr(ssl, buf + i, 1))
				goto out;
		/* then in one SSL_write: zero-length DATA, DATA of a flow not attached,
		 * 40,000 bytes (three records), a duplicate of seq 1, 29,700 bytes, END */
		size_t m = frame(buf, SG_SDD_DATA, 2, g_flow, NULL, 0);
		m += frame(buf + m, SG_SDD_DATA, 1, other, "ignored", 7);
		m += frame(buf + m, SG_SDD_DATA, 3, g_flow, data + 300, 40000);
		m += frame(buf + m, SG_SDD_DATA, 1, g_flow, data, 300);
		m += frame(buf + m, SG_SDD_DATA, 4, g_flow, data + 40300, 29700);
		m += frame(buf + m, SG_SDD_END, 0, g_flow, "FLOW_RELEASED", 13);
		if (peer_wr(ssl, buf, m))
			goto out;
		pe->ok = 1;
	} else if (pe->sc == SC_BADHDR) {
		n = frame(buf, SG_SDD_DATA, 1, g_flow, "abc", 3);
		switch (pe->bad) {
		case 0:
			buf[0] = 2; /* version */
			break;
		case 1:
			buf[1] = SG_SDD_FTYPE_MAX + 1; /* type */
			break;
		case 2:
			buf[3] = 1; /* reserved */
			break;
		case 3: /* a payload over the maximum, refused from the header alone */
			sg_sdd_frame_header(buf, SG_SDD_DATA, SG_SDD_MAX_PAYLOAD + 1, 1, g_flow);
			n = SG_SDD_HDR_LEN;
			break;
		default:
			memset(buf + 16, 0, SG_SDD_FLOW_ID_LEN); /* DATA without a flow */
		}
		/* good data first: what came before the bad header is still delivered */
		size_t m = frame(buf + n, SG_SDD_DATA, 1, g_flow, "ok", 2);
		memmove(buf + m, buf, n);
		frame(buf, SG_SDD_DATA, 1, g_flow, "ok", 2);
		if (peer_wr(ssl, buf, m + n))
			goto out;
		pe->ok = 1;
	} else if (pe->sc == SC_AFTER_END) {
		/* "a" on the first flow, its END, 200 KiB more of it, then "b" on the second */
		static uint8_t data[SG_SDD_MAX_PAYLOAD];
		pattern(data, sizeof data, 9);
		size_t m = frame(buf, SG_SDD_DATA, 1, g_flow, "a", 1);
		m += frame(buf + m, SG_SDD_END, 0, g_flow, "FLOW_RELEASED", 13);
		for (uint64_t seq = 2; seq < 6; seq++)
			m += frame(buf + m, SG_SDD_DATA, seq, g_flow, data, 50000);
		m += frame(buf + m, SG_SDD_DATA, 1, g_flow2, "b", 1);
		if (peer_wr(ssl, buf, m))
			goto out;
		pe->ok = 1;
	} else if (pe->sc == SC_REATTACH) {
		/* END of the flow; the next ATTACH of it is refused as a released flow's is
		 * (UNKNOWN_FLOW); the second flow is BUSY at first, then attached, and its DATA
		 * comes */
		n = frame(buf, SG_SDD_END, 0, g_flow, "FLOW_RELEASED", 13);
		if (peer_wr(ssl, buf, n) || peer_rd_frame(ssl, &f, pl, sizeof pl) ||
		    f.type != SG_SDD_ATTACH || memcmp(f.flow, g_flow, sizeof g_flow))
			goto out;
		n = frame(buf, SG_SDD_ERROR, 0, g_flow, "UNKNOWN_FLOW", 12);
		static const char busy[] = "BUSY: the flow is attached to another channel";
		size_t m = frame(buf + n, SG_SDD_ERROR, 0, g_flow2, busy, sizeof busy - 1);
		if (peer_wr(ssl, buf, n) || peer_rd_frame(ssl, &f, pl, sizeof pl) ||
		    f.type != SG_SDD_ATTACH || memcmp(f.flow, g_flow2, sizeof g_flow2) ||
		    peer_wr(ssl, buf + n, m))
			goto out;
		n = frame(buf, SG_SDD_ATTACHED, 1, g_flow2, NULL, 0);
		if (peer_rd_frame(ssl, &f, pl, sizeof pl) || f.type != SG_SDD_ATTACH ||
		    memcmp(f.flow, g_flow2, sizeof g_flow2) || peer_wr(ssl, buf, n) ||
		    peer_rd_frame(ssl, &f, pl, sizeof pl) || f.type != SG_SDD_DATA ||
		    memcmp(f.flow, g_flow2, sizeof g_flow2) || f.seq != 1 || f.len != 1 ||
		    pl[0] != 'z')
			goto out;
		pe->ok = 1;
	} else if (pe->sc == SC_SEQ_END) {
		/* the last two sequence numbers, then the client's raw end marker: no frame
		 * numbered 0 (or anything else) in between */
		static const struct {
			uint64_t seq;
			size_t len;
		} want[] = {{UINT64_MAX - 1, 65504}, {UINT64_MAX, 33}, {99, 0}};
		for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
			if (peer_rd_frame(ssl, &f, pl, sizeof pl) || f.type != SG_SDD_DATA ||
			    memcmp(f.flow, g_flow, sizeof g_flow) || f.seq != want[i].seq ||
			    f.len != want[i].len)
				goto out;
		pe->ok = 1;
	} else if (pe->sc == SC_SEQ_MID) {
		/* the client's send fills the connection while nothing is read here; then an
		 * ATTACHED that starts the uplink at 2^64 - 1 (the last number), and everything
		 * read up to the client's raw end marker (seq 99, no payload): no frame numbered
		 * 0, and one numbered 2^64 - 1 right before the marker */
		usleep(300000);
		n = frame(buf, SG_SDD_ATTACHED, UINT64_MAX, g_flow, NULL, 0);
		if (peer_wr(ssl, buf, n))
			goto out;
		uint64_t prev = 0;
		for (;;) {
			if (peer_rd_frame(ssl, &f, pl, sizeof pl) || f.type != SG_SDD_DATA ||
			    f.seq == 0)
				goto out;
			if (f.seq == 99 && !f.len)
				break;
			prev = f.seq;
		}
		pe->ok = prev == UINT64_MAX;
	} else { /* SC_ECHO, SC_AFTER_RECV: every DATA payload comes back, until 0-length DATA */
		uint64_t seq = pe->sc == SC_AFTER_RECV ? 2 : 0;
		for (;;) {
			if (peer_rd_frame(ssl, &f, pl, sizeof pl) || f.type != SG_SDD_DATA ||
			    memcmp(f.flow, g_flow, sizeof g_flow))
				goto out;
			if (!f.len)
				break;
			if (pe->nfr < sizeof pe->fr / sizeof pe->fr[0])
				pe->fr[pe->nfr] = f.len;
			pe->nfr++;
			n = frame(buf, SG_SDD_DATA, ++seq, g_flow, pl, f.len);
			if (peer_wr(ssl, buf, n))
				goto out;
		}
		pe->ok = 1;
	}
	/* hold the connection until the client closes it */
	while (SSL_read_ex(ssl, buf, sizeof buf, &n) == 1)
		;
out:
	if (ssl)
		SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* The SC_FLOOD and SC_SINK peers' start: pe->nconn channels accepted (TLS), AUTH answered by
 * AUTH_OK on each, then ATTACH of g_flow (and of g_flow2 when nflows is 2) by ATTACHED. buf
 * holds any frame (cap bytes). 0, or -1 when the client did otherwise. */
static int peer_open(struct peer *pe, int fd[2], SSL *ssl[2], unsigned nflows, uint8_t *buf,
                     size_t cap)
{
	for (unsigned i = 0; i < pe->nconn; i++)
		if ((fd[i] = accept(pe->lfd, NULL, NULL)) < 0 ||
		    !(ssl[i] = sg_tls_server_ssl_new(g_tls)) || SSL_set_fd(ssl[i], fd[i]) != 1 ||
		    SSL_accept(ssl[i]) != 1)
			return -1;
	static const uint8_t *const flows[] = {NULL, g_flow, g_flow2};
	for (unsigned k = 0; k <= nflows; k++)
		for (unsigned i = 0; i < pe->nconn; i++) {
			struct sg_sdd_frame f;
			if (peer_rd_frame(ssl[i], &f, buf, cap) ||
			    f.type != (k ? SG_SDD_ATTACH : SG_SDD_AUTH) ||
			    (k && memcmp(f.flow, flows[k], SG_SDD_FLOW_ID_LEN)))
				return -1;
			size_t n =
			    frame(buf, k ? SG_SDD_ATTACHED : SG_SDD_AUTH_OK, 1, flows[k], NULL, 0);
			if (peer_wr(ssl[i], buf, n))
				return -1;
		}
	return 0;
}

static void peer_close(int fd[2], SSL *ssl[2])
{
	for (unsigned i = 0; i < 2; i++) {
		SSL_free(ssl[i]);
		if (fd[i] >= 0)
			close(fd[i]);
	}
}

/* SC_FLOOD: nconn channels, each authenticated and attached to g_flow and g_flow2, then the
 * same DATA frames of g_flow on every channel (URLLC: the client drops the copies) as fast as
 * the client's sockets take them. */
static void *flood_main(void *arg)
{
	struct peer *pe = arg;
	int fd[2] = {-1, -1};
	SSL *ssl[2] = {NULL, NULL};
	static uint8_t buf[SG_SDD_HDR_LEN + SG_SDD_MAX_PAYLOAD];
	uint8_t *data = malloc(FLOOD_TOTAL);
	size_t n;
	if (!data || peer_open(pe, fd, ssl, 2, buf, sizeof buf))
		goto out;
	pattern(data, FLOOD_TOTAL, 5);
	uint64_t seq = 0;
	for (size_t off = 0; off < FLOOD_TOTAL; off += SG_SDD_MAX_PAYLOAD) {
		n = frame(buf, SG_SDD_DATA, ++seq, g_flow, data + off, SG_SDD_MAX_PAYLOAD);
		for (unsigned i = 0; i < pe->nconn; i++)
			if (peer_wr(ssl[i], buf, n))
				goto out;
		pe->written = off + SG_SDD_MAX_PAYLOAD;
	}
	pe->ok = 1;
	for (unsigned i = 0; i < pe->nconn; i++) /* until the client closes */
		while (SSL_read_ex(ssl[i], buf, sizeof buf, &n) == 1)
			;
out:
	peer_close(fd, ssl);
	free(data);
	return NULL;
}

/* SC_REFUSE: two channels (URLLC); ATTACH of g_flow answered ATTACHED on the first and, 200 ms
 * later, ERROR BUSY on the second; then DATA "u1" on the first, and the client's DATA "up"
 * read there. */
static void *refuse_main(void *arg)
{
	struct peer *pe = arg;
	int fd[2] = {-1, -1};
	SSL *ssl[2] = {NULL, NULL};
	static uint8_t buf[SG_SDD_HDR_LEN + SG_SDD_MAX_PAYLOAD], pl[SG_SDD_MAX_PAYLOAD];
	struct sg_sdd_frame f;
	for (unsigned i = 0; i < 2; i++)
		if ((fd[i] = accept(pe->lfd, NULL, NULL)) < 0 ||
		    !(ssl[i] = sg_tls_server_ssl_new(g_tls)) || SSL_set_fd(ssl[i], fd[i]) != 1 ||
		    SSL_accept(ssl[i]) != 1)
			goto out;
	for (unsigned i = 0; i < 2; i++) {
		size_t n = frame(buf, SG_SDD_AUTH_OK, 1, NULL, NULL, 0);
		if (peer_rd_frame(ssl[i], &f, pl, sizeof pl) || f.type != SG_SDD_AUTH ||
		    peer_wr(ssl[i], buf, n))
			goto out;
	}
	for (unsigned i = 0; i < 2; i++)
		if (peer_rd_frame(ssl[i], &f, pl, sizeof pl) || f.type != SG_SDD_ATTACH ||
		    memcmp(f.flow, g_flow, sizeof g_flow))
			goto out;
	static const char busy[] = "BUSY: the flow has two channels already";
	size_t n = frame(buf, SG_SDD_ATTACHED, 1, g_flow, NULL, 0);
	if (peer_wr(ssl[0], buf, n))
		goto out;
	usleep(200000);
	n = frame(buf, SG_SDD_ERROR, 0, g_flow, busy, sizeof busy - 1);
	if (peer_wr(ssl[1], buf, n))
		goto out;
	n = frame(buf, SG_SDD_DATA, 1, g_flow, "u1", 2);
	if (peer_wr(ssl[0], buf, n) || peer_rd_frame(ssl[0], &f, pl, sizeof pl) ||
	    f.type != SG_SDD_DATA || f.len != 2 || memcmp(pl, "up", 2))
		goto out;
	pe->ok = 1;
	while (SSL_read_ex(ssl[0], buf, sizeof buf, &n) == 1)
		;
out:
	peer_close(fd, ssl);
	return NULL;
}

/* SC_SINK: nconn channels, each authenticated and attached to g_flow; then what pe->sink says
 * (enum sink), and the DATA of channel 0 read until SINK_TOTAL bytes (SINK_REAUTH: 1 byte),
 * checked to be the pattern (salt 9) in order with consecutive sequence numbers. */
static void *sink_main(void *arg)
{
	struct peer *pe = arg;
	int fd[2] = {-1, -1};
	SSL *ssl[2] = {NULL, NULL};
	static uint8_t pl[SG_SDD_HDR_LEN + SG_SDD_MAX_PAYLOAD];
	struct sg_sdd_frame f;
	size_t n, total = pe->sink == SINK_REAUTH ? 1
	                  : pe->sink == SINK_SLOW ? SLOW_TOTAL
	                                          : SINK_TOTAL;
	uint8_t *want = malloc(SINK_TOTAL);
	if (!want)
		goto out;
	pattern(want, SINK_TOTAL, 9);
	if (peer_open(pe, fd, ssl, 1, pl, sizeof pl))
		goto out;
	if (pe->sink == SINK_CLOSE) { /* (peer_close: no close_notify, just the TCP close) */
		usleep(200000);       /* once the client has taken ATTACHED */
		pe->ok = 1;
		goto out;
	}
	if (pe->sink == SINK_REAUTH) {
		SSL_free(ssl[1]);
		ssl[1] = NULL;
		close(fd[1]);
		fd[1] = -1;
		/* the renewed AUTH, answered once the client has surely seen the close */
		if (peer_rd_frame(ssl[0], &f, pl, sizeof pl) || f.type != SG_SDD_AUTH)
			goto out;
		usleep(300000);
		n = frame(pl, SG_SDD_AUTH_OK, 1, NULL, NULL, 0);
		if (peer_wr(ssl[0], pl, n))
			goto out;
	}
	uint64_t seq = 1;
	for (size_t got = 0; got < total; got += f.len, seq++) {
		if (pe->sink == SINK_SLOW) { /* 16 KiB every 5 ms: about 3 MB/s */
			if (peer_rd(ssl[0], pl, SG_SDD_HDR_LEN) ||
			    sg_sdd_frame_parse_header(pl, &f) != 0)
				goto out;
			for (size_t k = 0, m; k < f.len && f.len <= SG_SDD_MAX_PAYLOAD; k += m) {
				m = f.len - k < 16384 ? f.len - k : 16384;
				usleep(5000);
				if (peer_rd(ssl[0], pl + k, m))
					goto out;
			}
		} else if (peer_rd_frame(ssl[0], &f, pl, sizeof pl)) {
			goto out;
		}
		if (f.type != SG_SDD_DATA || f.seq != seq || f.len > total - got ||
		    memcmp(pl, want + got, f.len))
			goto out;
	}
	pe->ok = 1;
	while (SSL_read_ex(ssl[0], pl, sizeof pl, &n) == 1) /* until the client closes */
		;
out:
	peer_close(fd, ssl);
	free(want);
	return NULL;
}

/* SC_HTTP: sdd-flows/v1 signalling, HTTP/1.1 over TLS: one connection per request, each
 * answered 200 with the next flow answer; the request heads are kept for the test. */
static void *http_main(void *arg)
{
	struct peer *pe = arg;
	char body[640], resp[1024];
	for (int k = 0; k < HTTP_REQS; k++) {
		int fd = accept(pe->lfd, NULL, NULL);
		SSL *ssl = fd >= 0 ? sg_tls_server_ssl_new(g_tls) : NULL;
		size_t got = 0, r;
		char *head = pe->req[k];
		int done = 0;
		if (ssl && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1) {
			while (got < sizeof pe->req[k] - 1 &&
			       SSL_read_ex(ssl, head + got, sizeof pe->req[k] - 1 - got, &r) == 1) {
				got += r;
				head[got] = '\0';
				if (strstr(head, "\r\n\r\n"))
					break;
			}
			/* the data endpoint: a sealdd:// uri (its host once at the longest, once
			 * beyond: cut to the 255 bytes of sg_sddc_flow.host), an ipv4Addr */
			char longhost[300];
			memset(longhost, 'h', sizeof longhost);
			int hl = k == 0 ? 11 : k == 1 ? 299 : 0;
			if (k == 0)
				memcpy(longhost, "sdd.example", 11);
			char cis[400];
			if (k < 2)
				snprintf(cis, sizeof cis,
				         "\"uri\":\"sealdd://%.*s:9446/x\",\"port\":9446", hl,
				         longhost);
			else
				snprintf(cis, sizeof cis, "\"ipv4Addr\":\"192.0.2.7\",\"port\":1");
			snprintf(body, sizeof body,
			         "{\"sddFlowId\":\"%s\",\"valServiceId\":\"v2x\","
			         "\"transType\":\"regular\",\"ddServerConnInfo\":{%s},"
			         "\"lifetime\":60}",
			         g_flow_text, cis);
			int n = snprintf(resp, sizeof resp,
			                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			                 strlen(body), body);
			done = strstr(head, "\r\n\r\n") && n > 0 && (size_t)n < sizeof resp &&
			       peer_wr(ssl, resp, (size_t)n) == 0;
			SSL_shutdown(ssl);
		}
		SSL_free(ssl);
		if (fd >= 0)
			close(fd);
		if (!done)
			return NULL;
	}
	pe->ok = 1;
	return NULL;
}

static void peer_listen(struct peer *pe)
{
	pe->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(pe->lfd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	assert_int_equal(bind(pe->lfd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(pe->lfd, 2), 0);
	assert_int_equal(getsockname(pe->lfd, (struct sockaddr *)&a, &al), 0);
	pe->port = ntohs(a.sin_port);
}

static void peer_start(struct peer *pe)
{
	peer_listen(pe);
	assert_int_equal(pthread_create(&pe->th, NULL,
	                                pe->sc == SC_FLOOD    ? flood_main
	                                : pe->sc == SC_HTTP   ? http_main
	                                : pe->sc == SC_SINK   ? sink_main
	                                : pe->sc == SC_REFUSE ? refuse_main
	                                                      : peer_main,
	                                pe),
	                 0);
}

static struct sg_sddc *open_session_t(struct peer *pe, unsigned nchan, size_t rx_queue_max,
                                      long timeout_ms)
{
	char url[64], err[256] = "";
	snprintf(url, sizeof url, "https://localhost:%d", pe->port);
	struct sg_sddc_conf c = {.url = url,
	                         .ca = g_ca,
	                         .token = "t",
	                         .timeout_ms = timeout_ms,
	                         .rx_queue_max = rx_queue_max};
	struct sg_sddc *s = NULL;
	if (sg_sddc_connect(&c, "127.0.0.1", (unsigned)pe->port, nchan, &s, err, sizeof err) !=
	    SG_OK)
		fail_msg("connect: %s", err);
	if (sg_sddc_attach(s, g_flow_text, 0, err, sizeof err) != SG_OK)
		fail_msg("attach: %s", err);
	return s;
}

static struct sg_sddc *open_session_n(struct peer *pe, unsigned nchan, size_t rx_queue_max)
{
	return open_session_t(pe, nchan, rx_queue_max, 5000);
}

static struct sg_sddc *open_session(struct peer *pe)
{
	return open_session_n(pe, 1, 0);
}

static void peer_end(struct peer *pe, struct sg_sddc *s)
{
	sg_sddc_close(s);
	pthread_join(pe->th, NULL);
	close(pe->lfd);
	assert_true(pe->ok);
}

/* Split headers and payloads, several frames per record, receives of 7 bytes and of 64 KiB:
 * the bytes come whole and in order, the duplicate and the other flow's DATA are dropped,
 * and END is reported after the data. */
static void test_split_and_batched(void **state)
{
	(void)state;
	static uint8_t want[70000], got[70000];
	pattern(want, sizeof want, 3);
	for (int round = 0; round < 2; round++) {
		struct peer pe = {.sc = SC_SPLIT};
		peer_start(&pe);
		struct sg_sddc *s = open_session(&pe);
		size_t have = 0, n = 0, cap = round == 0 ? 7 : 65536;
		char err[256] = "";
		sg_err e;
		while ((e = sg_sddc_recv(s, g_flow_text, got + have,
		                         sizeof got - have < cap ? sizeof got - have : cap, 5000,
		                         &n, err, sizeof err)) == SG_OK) {
			assert_true(n > 0 && n <= cap);
			have += n;
			if (have == sizeof got)
				break;
		}
		assert_int_equal(e, SG_OK);
		assert_int_equal(have, sizeof want);
		assert_memory_equal(got, want, sizeof want);
		/* then the flow's END */
		e = sg_sddc_recv(s, g_flow_text, got, 16, 5000, &n, err, sizeof err);
		assert_int_equal(e, SG_ERR_PROTO);
		assert_int_equal(n, 0);
		assert_non_null(strstr(err, "FLOW_RELEASED"));
		assert_int_equal(sg_sddc_duplicates(s), 1);
		peer_end(&pe, s);
	}
}

/* DATA of a flow after its END is dropped: the flow's queue stays empty, and with a bound of
 * 1,000 bytes the 200 KiB that follow do not hold the channel, so the other flow's data still
 * comes (before, they were queued to the bound and the second receive timed out). */
static void test_data_after_end(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_AFTER_END};
	peer_start(&pe);
	struct sg_sddc *s = open_session_n(&pe, 1, 1000);
	char buf[16], err[256] = "";
	assert_int_equal(sg_sddc_attach(s, g_flow2_text, 0, err, sizeof err), SG_OK);
	size_t n = 0;
	assert_int_equal(sg_sddc_recv(s, g_flow2_text, buf, sizeof buf, 5000, &n, err, sizeof err),
	                 SG_OK);
	assert_int_equal(n, 1);
	assert_int_equal(buf[0], 'b');
	assert_int_equal(sg_sddc_queued(s, g_flow_text), 1); /* "a", from before the END */
	assert_int_equal(sg_sddc_recv(s, g_flow_text, buf, sizeof buf, 5000, &n, err, sizeof err),
	                 SG_OK);
	assert_int_equal(n, 1);
	assert_int_equal(buf[0], 'a');
	assert_int_equal(sg_sddc_recv(s, g_flow_text, buf, sizeof buf, 5000, &n, err, sizeof err),
	                 SG_ERR_PROTO);
	assert_non_null(strstr(err, "FLOW_RELEASED"));
	assert_int_equal(sg_sddc_queued(s, g_flow_text), 0);
	peer_end(&pe, s);
}

/* Every header defect ends the channel with its reason; the frame before it was delivered. */
static void test_bad_headers(void **state)
{
	(void)state;
	static const int perr[] = {SG_SDD_PERR_VERSION, SG_SDD_PERR_TYPE, SG_SDD_PERR_RESERVED,
	                           SG_SDD_PERR_TOO_LARGE, SG_SDD_PERR_FLOW};
	for (int bad = 0; bad < 5; bad++) {
		struct peer pe = {.sc = SC_BADHDR, .bad = bad};
		peer_start(&pe);
		struct sg_sddc *s = open_session(&pe);
		char buf[16], err[256] = "";
		size_t n = 0;
		assert_int_equal(
		    sg_sddc_recv(s, g_flow_text, buf, sizeof buf, 5000, &n, err, sizeof err),
		    SG_OK);
		assert_int_equal(n, 2);
		assert_memory_equal(buf, "ok", 2);
		sg_err e = sg_sddc_recv(s, g_flow_text, buf, sizeof buf, 5000, &n, err, sizeof err);
		assert_int_equal(e, SG_ERR_PROTO);
		assert_string_equal(err, sg_sdd_perr_str(perr[bad]));
		/* the session is unusable now: a send says so too */
		assert_int_equal(sg_sddc_send(s, g_flow_text, "x", 1, err, sizeof err),
		                 SG_ERR_PROTO);
		peer_end(&pe, s);
	}
}

/* Sends of 5 bytes, around one TLS record (16 KiB - 32, - 1, 16 KiB, + 1), 32 KiB + 1, 64 KiB
 * (the largest frame), 64 KiB + 1 and 3 MiB (the socket fills: the rest is queued and the
 * client reads the echo while it waits) come back whole and in order. A send of up to 64 KiB
 * is one DATA frame, a longer one frames of 65,504 bytes (header + payload = four full
 * records) and the rest; each frame takes the fewest TLS records its bytes allow: the header
 * and the first payload bytes share the first record, every later record is full but the
 * last. */
static void test_send_echo(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_ECHO};
	peer_start(&pe);
	struct sg_sddc *s = open_session(&pe);
	static const size_t sizes[] = {5,     16352, 16383, 16384,   16385,
	                               32769, 65536, 65537, 3u << 20};
	size_t total = 0;
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		total += sizes[i];
	uint8_t *out = malloc(total), *in = malloc(total);
	assert_non_null(out);
	assert_non_null(in);
	pattern(out, total, 11);
	char err[256] = "";
	size_t off = 0;
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		if (sg_sddc_send(s, g_flow_text, out + off, sizes[i], err, sizeof err) != SG_OK)
			fail_msg("send: %s", err);
		off += sizes[i];
	}
	for (size_t got = 0, n = 0; got < total; got += n)
		if (sg_sddc_recv(s, g_flow_text, in + got, total - got, 5000, &n, err,
		                 sizeof err) != SG_OK)
			fail_msg("recv after %zu of %zu: %s", got, total, err);
	assert_memory_equal(in, out, total);
	assert_int_equal(sg_sddc_send(s, g_flow_text, "", 0, err, sizeof err), SG_OK);
	/* the end marker of this peer: a 0-length DATA frame (a 0-byte send sends none) */
	uint8_t end[SG_SDD_HDR_LEN];
	sg_sdd_frame_header(end, SG_SDD_DATA, 0, 99, g_flow);
	assert_int_equal(sg_sddc_send_raw(s, end, sizeof end, err, sizeof err), SG_OK);
	/* a flow id that is not attached, and one that is not an id at all */
	assert_int_equal(sg_sddc_send(s, "AAAAAAAAAAAAAAAAAAAAAA", "x", 1, err, sizeof err),
	                 SG_ERR_INVALID);
	assert_int_equal(sg_sddc_send(s, "not-an-id", "x", 1, err, sizeof err), SG_ERR_INVALID);
	/* the frames and records as the peer saw them: expected, written out */
	size_t fr[512], rec[1024], nfr = 0, nrec = 0;
	static const size_t fr0[] = {5, 16352, 16383, 16384, 16385, 32769, 65536, 65504, 33};
	static const size_t rec0[] = {37,    16384, 32,    16383, 32,    16384, 33,
	                              16384, 33,    16384, 16384, 32,    16384, 16384,
	                              16384, 16384, 16384, 16384, 16384, 16384, 65};
	memcpy(fr, fr0, sizeof fr0);
	nfr = sizeof fr0 / sizeof fr0[0];
	memcpy(rec, rec0, sizeof rec0);
	nrec = sizeof rec0 / sizeof rec0[0];
	for (int i = 0; i < 48; i++) { /* 3 MiB = 48 frames of 65,504 bytes + 1,536 */
		fr[nfr++] = 65504;
		for (int k = 0; k < 4; k++)
			rec[nrec++] = 16384;
	}
	fr[nfr++] = 1536;
	rec[nrec++] = 32 + 1536;
	rec[nrec++] = 32; /* the raw end marker */
	rec[nrec++] = 2;  /* close_notify (an alert, encrypted as application data in TLS 1.3) */
	peer_end(&pe, s);
	assert_int_equal(pe.nfr, nfr);
	assert_memory_equal(pe.fr, fr, nfr * sizeof fr[0]);
	assert_int_equal(pe.nrec, nrec);
	assert_memory_equal(pe.rec, rec, nrec * sizeof rec[0]);
	free(out);
	free(in);
}

/* Backpressure toward the server: a flow whose data the application does not take queues
 * rx_queue_max bytes (plus at most one 64 KiB frame), then the client reads nothing more from
 * that channel, so the peer's writes stop (TCP) instead of the client's memory growing; once
 * receives take it, everything arrives whole and in order, the queue still bounded while
 * small receives take it a little at a time. With two channels (URLLC) both are held, and
 * every frame's second copy is dropped. */
static void backpressure(unsigned nchan)
{
	struct peer pe = {.sc = SC_FLOOD, .nconn = nchan};
	peer_start(&pe);
	struct sg_sddc *s = open_session_n(&pe, nchan, FLOOD_RXQ);
	char err[256] = "";
	if (sg_sddc_attach(s, g_flow2_text, 0, err, sizeof err) != SG_OK)
		fail_msg("attach: %s", err);
	/* receives of the other flow read the channel; the first flow's queue fills to its bound,
	 * and a second wait reads no more */
	static uint8_t buf[SG_SDD_MAX_PAYLOAD];
	size_t n = 0;
	assert_int_equal(sg_sddc_recv(s, g_flow2_text, buf, 16, 1000, &n, err, sizeof err),
	                 SG_ERR_TIMEOUT);
	size_t q = sg_sddc_queued(s, g_flow_text);
	assert_true(q >= FLOOD_RXQ && q <= FLOOD_RXQ + SG_SDD_MAX_PAYLOAD);
	assert_int_equal(sg_sddc_recv(s, g_flow2_text, buf, 16, 300, &n, err, sizeof err),
	                 SG_ERR_TIMEOUT);
	assert_int_equal(sg_sddc_queued(s, g_flow_text), q);
	/* the peer is held back by TCP: its socket and ours take a few MiB, not 48 */
	size_t w = pe.written;
	assert_true(w < FLOOD_TOTAL / 2);
	uint8_t *want = malloc(FLOOD_TOTAL);
	assert_non_null(want);
	pattern(want, FLOOD_TOTAL, 5);
	size_t got = 0, most = 0;
	for (unsigned i = 0; got < FLOOD_TOTAL; i++) {
		size_t cap = i % 2 ? 1000 : sizeof buf; /* small ones too: the queue is compacted */
		if (sg_sddc_recv(s, g_flow_text, buf, cap, 5000, &n, err, sizeof err) != SG_OK)
			fail_msg("recv after %zu: %s", got, err);
		if (memcmp(buf, want + got, n))
			fail_msg("bytes %zu..%zu differ", got, got + n);
		got += n;
		size_t now = sg_sddc_queued(s, g_flow_text);
		most = now > most ? now : most;
	}
	assert_true(most <= FLOOD_RXQ + SG_SDD_MAX_PAYLOAD);
	assert_int_equal(sg_sddc_queued(s, g_flow_text), 0);
	assert_int_equal(sg_sddc_queued(s, "not-attached"), 0);
	/* the other channel's copies still on their way are read and dropped */
	for (int i = 0;
	     i < 100 && sg_sddc_duplicates(s) < FLOOD_TOTAL / SG_SDD_MAX_PAYLOAD && nchan == 2; i++)
		assert_int_equal(sg_sddc_recv(s, g_flow2_text, buf, 16, 100, &n, err, sizeof err),
		                 SG_ERR_TIMEOUT);
	assert_int_equal(sg_sddc_queued(s, g_flow_text), 0);
	assert_int_equal(sg_sddc_duplicates(s), nchan == 2 ? FLOOD_TOTAL / SG_SDD_MAX_PAYLOAD : 0);
	free(want);
	peer_end(&pe, s);
	print_message("%u channel(s): the peer had written %zu of %u bytes when held\n", nchan, w,
	              FLOOD_TOTAL);
}

/* Attaching again after the flow's END goes to the server (before, the channel was still taken
 * for attached: no ATTACH, SG_OK, and then receives only timed out): its answer for a released
 * flow, UNKNOWN_FLOW, is the attach's error and then the flow's, for sends and receives too. A
 * refusal (BUSY) leaves the flow unattached on the channel: the next attach asks again. */
static void test_reattach_after_end(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_REATTACH};
	peer_start(&pe);
	struct sg_sddc *s = open_session(&pe);
	char buf[16], err[256] = "";
	size_t n = 0;
	assert_int_equal(sg_sddc_recv(s, g_flow_text, buf, sizeof buf, 5000, &n, err, sizeof err),
	                 SG_ERR_PROTO);
	assert_string_equal(err, "FLOW_RELEASED");
	assert_int_equal(sg_sddc_attach(s, g_flow_text, 0, err, sizeof err), SG_ERR_DENIED);
	assert_string_equal(err, "UNKNOWN_FLOW");
	assert_int_equal(sg_sddc_send(s, g_flow_text, "x", 1, err, sizeof err), SG_ERR_PROTO);
	assert_string_equal(err, "UNKNOWN_FLOW");
	assert_int_equal(sg_sddc_recv(s, g_flow_text, buf, sizeof buf, 5000, &n, err, sizeof err),
	                 SG_ERR_PROTO);
	assert_string_equal(err, "UNKNOWN_FLOW");
	assert_int_equal(sg_sddc_attach(s, g_flow2_text, 0, err, sizeof err), SG_ERR_DENIED);
	assert_string_equal(err, "BUSY: the flow is attached to another channel");
	if (sg_sddc_attach(s, g_flow2_text, 0, err, sizeof err) != SG_OK)
		fail_msg("attach: %s", err);
	if (sg_sddc_send(s, g_flow2_text, "z", 1, err, sizeof err) != SG_OK)
		fail_msg("send: %s", err);
	peer_end(&pe, s);
}

/* After a receive that got data, reads outside receives go on: the answers to ATTACH and AUTH
 * are taken (before, the session stopped reading at every frame's end once one receive had got
 * data: attach and reauth timed out, and a send that had to wait while the peer echoed spun on
 * poll() without reading, until its timeout). An ERROR ALREADY_ATTACHED says the flow is
 * attached: nothing ends, and its DATA after it is delivered. */
static void test_after_recv(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_AFTER_RECV};
	peer_start(&pe);
	struct sg_sddc *s = open_session_t(&pe, 1, 16u << 20, 3000);
	char buf[16], err[256] = "";
	size_t n = 0;
	if (sg_sddc_recv(s, g_flow_text, buf, sizeof buf, 3000, &n, err, sizeof err) != SG_OK)
		fail_msg("recv: %s", err);
	assert_int_equal(n, 2);
	assert_memory_equal(buf, "hi", 2);
	if (sg_sddc_attach(s, g_flow2_text, 0, err, sizeof err) != SG_OK)
		fail_msg("attach after a receive: %s", err);
	if (sg_sddc_recv(s, g_flow_text, buf, sizeof buf, 3000, &n, err, sizeof err) != SG_OK)
		fail_msg("recv after ALREADY_ATTACHED: %s", err);
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "after", 5);
	if (sg_sddc_reauth(s, "t2", err, sizeof err) != SG_OK)
		fail_msg("reauth after a receive: %s", err);
	/* 8 MiB to a peer that echoes everything: the send reads the echo while it waits */
	size_t total = 8u << 20;
	uint8_t *out = malloc(total), *in = malloc(total);
	assert_non_null(out);
	assert_non_null(in);
	pattern(out, total, 17);
	if (sg_sddc_send(s, g_flow_text, out, total, err, sizeof err) != SG_OK)
		fail_msg("send to an echoing peer: %s", err);
	for (size_t got = 0; got < total; got += n)
		if (sg_sddc_recv(s, g_flow_text, in + got, total - got, 3000, &n, err,
		                 sizeof err) != SG_OK)
			fail_msg("recv after %zu of %zu: %s", got, total, err);
	assert_memory_equal(in, out, total);
	uint8_t end[SG_SDD_HDR_LEN]; /* the peer's end marker */
	sg_sdd_frame_header(end, SG_SDD_DATA, 0, 99, g_flow);
	assert_int_equal(sg_sddc_send_raw(s, end, sizeof end, err, sizeof err), SG_OK);
	peer_end(&pe, s);
	free(out);
	free(in);
}

/* URLLC: ATTACH refused on one channel (BUSY) while the other carries the flow: the attach
 * fails with the refusal, and the flow goes on over the channel that has it (before, any
 * flow ERROR ended the flow: its DATA was read and dropped, sends and receives failed). */
static void test_urllc_refused_one(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_REFUSE};
	peer_start(&pe);
	char url[64], buf[16], err[256] = "";
	snprintf(url, sizeof url, "https://localhost:%d", pe.port);
	struct sg_sddc_conf c = {.url = url, .ca = g_ca, .token = "t", .timeout_ms = 3000};
	struct sg_sddc *s = NULL;
	if (sg_sddc_connect(&c, "127.0.0.1", (unsigned)pe.port, 2, &s, err, sizeof err) != SG_OK)
		fail_msg("connect: %s", err);
	assert_int_equal(sg_sddc_attach(s, g_flow_text, 0, err, sizeof err), SG_ERR_DENIED);
	assert_string_equal(err, "BUSY: the flow has two channels already");
	size_t n = 0;
	if (sg_sddc_recv(s, g_flow_text, buf, sizeof buf, 3000, &n, err, sizeof err) != SG_OK)
		fail_msg("recv: %s", err);
	assert_int_equal(n, 2);
	assert_memory_equal(buf, "u1", 2);
	if (sg_sddc_send(s, g_flow_text, "up", 2, err, sizeof err) != SG_OK)
		fail_msg("send: %s", err);
	peer_end(&pe, s);
}

/* Uplink sequence numbers end at 2^64 - 1 (an ATTACHED may start them near there): a send that
 * needs more frames than are left fails before sending any (numbered 0 after the wrap, the
 * server would drop them and every later one, while the send reported success); one that fits
 * takes the last ones; after that every send fails, and a send of nothing still succeeds. */
static void test_seq_end(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_SEQ_END};
	peer_start(&pe);
	struct sg_sddc *s = open_session(&pe);
	static uint8_t data[3 * 65504];
	char err[256] = "";
	assert_int_equal(sg_sddc_send(s, g_flow_text, data, sizeof data, err, sizeof err),
	                 SG_ERR_PROTO); /* three frames, two numbers left */
	assert_non_null(strstr(err, "sequence numbers are used up"));
	if (sg_sddc_send(s, g_flow_text, data, 65537, err, sizeof err) != SG_OK) /* two frames */
		fail_msg("send: %s", err);
	assert_int_equal(sg_sddc_send(s, g_flow_text, "x", 1, err, sizeof err), SG_ERR_PROTO);
	assert_int_equal(sg_sddc_send(s, g_flow_text, "", 0, err, sizeof err), SG_OK);
	uint8_t end[SG_SDD_HDR_LEN]; /* the peer's end marker */
	sg_sdd_frame_header(end, SG_SDD_DATA, 0, 99, g_flow);
	assert_int_equal(sg_sddc_send_raw(s, end, sizeof end, err, sizeof err), SG_OK);
	peer_end(&pe, s);
}

/* The same when an ATTACHED read while a send waits for the connection (a URLLC channel's,
 * say) moves the numbers to the last one: the send takes it and then fails, no frame numbered 0
 * goes out (the server would drop it and every later one while the send reported success). */
static void test_seq_mid_send(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_SEQ_MID};
	peer_start(&pe);
	struct sg_sddc *s = open_session(&pe);
	static uint8_t data[32u << 20]; /* more than the connection holds unread */
	char err[256] = "";
	assert_int_equal(sg_sddc_send(s, g_flow_text, data, sizeof data, err, sizeof err),
	                 SG_ERR_PROTO);
	assert_non_null(strstr(err, "sequence numbers are used up"));
	uint8_t end[SG_SDD_HDR_LEN];
	sg_sdd_frame_header(end, SG_SDD_DATA, 0, 99, g_flow);
	assert_int_equal(sg_sddc_send_raw(s, end, sizeof end, err, sizeof err), SG_OK);
	peer_end(&pe, s);
}

/* The data endpoint of a flow answer: a sealdd:// uri's host (copied through a buffer of its
 * own: it was formatted into sg_sddc_flow.host from itself), cut to 255 bytes when longer, and
 * an ipv4Addr. */
static void test_flow_answer_host(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_HTTP};
	peer_start(&pe);
	char url[64], err[256] = "", longhost[256];
	snprintf(url, sizeof url, "https://localhost:%d", pe.port);
	struct sg_sddc_conf c = {.url = url, .ca = g_ca, .token = "t", .timeout_ms = 5000};
	struct sg_sddc_flow fl;
	memset(longhost, 'h', 255);
	longhost[255] = '\0';
	static const struct {
		const char *host;
		unsigned port;
	} want[HTTP_REQS] = {{"sdd.example", 9446}, {NULL, 9446}, {"192.0.2.7", 1}};
	for (int k = 0; k < HTTP_REQS; k++) {
		memset(&fl, 0x55, sizeof fl);
		if (sg_sddc_flow_get(&c, g_flow_text, &fl, err, sizeof err) != SG_OK)
			fail_msg("flow_get %d: %s", k, err);
		assert_string_equal(fl.host, want[k].host ? want[k].host : longhost);
		assert_int_equal(fl.port, want[k].port);
		assert_string_equal(fl.id, g_flow_text);
		assert_string_equal(fl.val_service_id, "v2x");
		assert_int_equal(fl.lifetime_s, 60);
	}
	pthread_join(pe.th, NULL);
	close(pe.lfd);
	assert_true(pe.ok);
	char line[128];
	snprintf(line, sizeof line, "GET /sdd-flows/v1/flows/%s HTTP/1.1\r\n", g_flow_text);
	for (int k = 0; k < HTTP_REQS; k++) {
		assert_memory_equal(pe.req[k], line, strlen(line));
		assert_non_null(strstr(pe.req[k], "\r\nAuthorization: Bearer t\r\n"));
	}
}

static void test_backpressure(void **state)
{
	(void)state;
	backpressure(1);
}

static void test_backpressure_urllc(void **state)
{
	(void)state;
	backpressure(2);
}

/* One send of the first n bytes of the SC_SINK pattern; fails the test unless it succeeds. */
static void send_pattern(struct sg_sddc *s, size_t n)
{
	uint8_t *data = malloc(n);
	assert_non_null(data);
	pattern(data, n, 9);
	char err[256] = "";
	size_t taken = 0;
	if (sg_sddc_send_ex(s, g_flow_text, data, n, &taken, err, sizeof err) != SG_OK)
		fail_msg("send after %zu of %zu bytes: %s", taken, n, err);
	assert_int_equal(taken, n);
	free(data);
}

/* One send of 8 MiB to a peer that reads 3 MB/s: the channel's output queue keeps about what is
 * unsent (OUT_HWM and a frame: 2 MiB of memory), not what went out (8 MiB before it was
 * compacted: it was emptied only when the socket took everything at once). */
static void test_slow_peer_memory(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_SINK, .nconn = 1, .sink = SINK_SLOW};
	peer_start(&pe);
	struct sg_sddc *s = open_session(&pe);
	send_pattern(s, SLOW_TOTAL);
	size_t mem = sg_sddc_out_memory(s);
	if (mem > (4u << 20))
		fail_msg("the session holds %zu bytes of output memory", mem);
	peer_end(&pe, s);
}

/* URLLC: the peer stops reading the second channel. A send of 32 MiB (more than its socket
 * buffers and OUT_HWM) gives that channel up after the timeout (1 s) and completes over the
 * first, which gets every byte in order; it used to fail with a timeout, and so did every later
 * send. */
static void test_urllc_stalled_channel(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_SINK, .nconn = 2, .sink = SINK_STALL};
	peer_start(&pe);
	struct sg_sddc *s = open_session_t(&pe, 2, 0, 1000);
	send_pattern(s, SINK_TOTAL);
	peer_end(&pe, s);
}

/* URLLC: the server closed the second channel; renewing the authentication succeeds on the
 * first, and data goes on over it (the renewal used to fail whenever a channel had died). */
static void test_urllc_reauth_one_dead(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_SINK, .nconn = 2, .sink = SINK_REAUTH};
	peer_start(&pe);
	struct sg_sddc *s = open_session_n(&pe, 2, 0);
	char err[256] = "";
	if (sg_sddc_reauth(s, "t2", err, sizeof err) != SG_OK)
		fail_msg("reauth: %s", err);
	send_pattern(s, 1);
	peer_end(&pe, s);
}

/* The server closes the channel while the client only sends: the first write after the close
 * still goes (the server's kernel answers it with a reset), a later one fails with EPIPE. That
 * is an error of the send, not a SIGPIPE ending the application (the write BIO used write() and
 * writev(), which raise it). */
static void test_closed_channel_no_sigpipe(void **state)
{
	(void)state;
	struct peer pe = {.sc = SC_SINK, .nconn = 1, .sink = SINK_CLOSE};
	peer_start(&pe);
	struct sg_sddc *s = open_session(&pe);
	pthread_join(pe.th, NULL); /* closed */
	char err[256] = "";
	sg_err e = SG_OK;
	for (int i = 0; i < 50 && e == SG_OK; i++) {
		usleep(20000);
		e = sg_sddc_send(s, g_flow_text, "x", 1, err, sizeof err);
	}
	assert_int_equal(e, SG_ERR_PROTO);
	sg_sddc_close(s);
	close(pe.lfd);
	assert_true(pe.ok);
}

/* A TLS endpoint for one connection whose handshake the client gives up */
static void *accept_one(void *arg)
{
	struct peer *pe = arg;
	int fd = accept(pe->lfd, NULL, NULL);
	SSL *ssl = fd >= 0 ? sg_tls_server_ssl_new(g_tls) : NULL;
	if (ssl && SSL_set_fd(ssl, fd) == 1)
		pe->ok = SSL_accept(ssl) != 1; /* the client's alert ends it */
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* A handshake of a session of c with pe (listening) that the client gives up, naming why. */
static void refused_handshake(struct peer *pe, const struct sg_sddc_conf *c, const char *why)
{
	char err[256] = "";
	struct sg_sddc *s = NULL;
	pe->ok = 0;
	assert_int_equal(pthread_create(&pe->th, NULL, accept_one, pe), 0);
	assert_int_equal(
	    sg_sddc_connect(c, "127.0.0.1", (unsigned)pe->port, 1, &s, err, sizeof err),
	    SG_ERR_TLS);
	if (!strstr(err, why))
		fail_msg("'%s' not in: %s", why, err);
	assert_null(s);
	pthread_join(pe->th, NULL);
	assert_true(pe->ok);
}

/* server_name (R1; a relocation's target, docs/sdd-protocol.md §7): the data endpoint's
 * certificate is checked against it instead of the url's host; a name the certificate does not
 * carry fails the handshake, an empty one is refused before any connection. */
static void test_server_name(void **state)
{
	(void)state;
	char err[256] = "";
	struct sg_sddc *s = NULL;
	/* the development certificate names localhost and 127.0.0.1, not the url's host */
	struct sg_sddc_conf c = {.url = "https://sdd1.example.com:9443",
	                         .ca = g_ca,
	                         .token = "t",
	                         .timeout_ms = 5000,
	                         .server_name = ""};
	assert_int_equal(sg_sddc_connect(&c, "127.0.0.1", 9, 1, &s, err, sizeof err),
	                 SG_ERR_INVALID);
	assert_null(s);

	struct peer pe = {.sc = SC_SINK, .nconn = 1, .sink = SINK_CLOSE};
	peer_listen(&pe); /* one handshake to fail first, then the sink */
	c.server_name = "sdd2.example.com";
	refused_handshake(&pe, &c, "hostname mismatch");

	pe.ok = 0;
	assert_int_equal(pthread_create(&pe.th, NULL, sink_main, &pe), 0);
	c.server_name = "127.0.0.1";
	if (sg_sddc_connect(&c, "127.0.0.1", (unsigned)pe.port, 1, &s, err, sizeof err) != SG_OK)
		fail_msg("connect: %s", err);
	if (sg_sddc_attach(s, g_flow_text, 0, err, sizeof err) != SG_OK)
		fail_msg("attach: %s", err);
	peer_end(&pe, s);
}

/* crl (T5): the data endpoint's certificate revoked, the handshake fails (last: it revokes the
 * certificate every peer of this file presents) */
static void test_server_revoked(void **state)
{
	(void)state;
	char err[256] = "", crt[128], crl[128];
	snprintf(crt, sizeof crt, "%s/server.crt", g_dir);
	snprintf(crl, sizeof crl, "%s/crl.pem", g_dir);
	assert_int_equal(sg_pki_revoke(g_dir, crt, err, sizeof err), SG_OK);
	struct peer pe = {.sc = SC_SINK, .nconn = 1, .sink = SINK_CLOSE};
	peer_listen(&pe);
	struct sg_sddc_conf c = {.url = "https://localhost:9443",
	                         .ca = g_ca,
	                         .crl = crl,
	                         .token = "t",
	                         .timeout_ms = 5000};
	refused_handshake(&pe, &c, "certificate revoked");
	close(pe.lfd);
}

static int setup(void **state)
{
	(void)state;
	char err[256] = "", crt[128], key[128];
	strcpy(g_dir, "/tmp/sg-sddc-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	struct sg_pki_opts po = {.dir = g_dir};
	if (sg_pki_init(&po, err, sizeof err) != SG_OK)
		fail_msg("pki: %s", err);
	snprintf(g_ca, sizeof g_ca, "%s/ca.crt", g_dir);
	snprintf(crt, sizeof crt, "%s/server.crt", g_dir);
	snprintf(key, sizeof key, "%s/server.key", g_dir);
	struct sg_tls_conf tc = {.mode = SG_TLS_SERVER_AUTH, .cert = crt, .key = key};
	if (sg_tls_server_new(&tc, 0, &g_tls, err, sizeof err) != SG_OK)
		fail_msg("tls: %s", err);
	memset(g_flow, 0xa7, sizeof g_flow);
	g_flow[0] = 1;
	sg_sdd_flow_to_text(g_flow, g_flow_text);
	memset(g_flow2, 0x3c, sizeof g_flow2);
	sg_sdd_flow_to_text(g_flow2, g_flow2_text);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sg_tls_server_free(g_tls);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_split_and_batched),
	    cmocka_unit_test(test_bad_headers),
	    cmocka_unit_test(test_send_echo),
	    cmocka_unit_test(test_backpressure),
	    cmocka_unit_test(test_backpressure_urllc),
	    cmocka_unit_test(test_data_after_end),
	    cmocka_unit_test(test_reattach_after_end),
	    cmocka_unit_test(test_seq_end),
	    cmocka_unit_test(test_seq_mid_send),
	    cmocka_unit_test(test_after_recv),
	    cmocka_unit_test(test_urllc_refused_one),
	    cmocka_unit_test(test_flow_answer_host),
	    cmocka_unit_test(test_slow_peer_memory),
	    cmocka_unit_test(test_urllc_stalled_channel),
	    cmocka_unit_test(test_urllc_reauth_one_dead),
	    cmocka_unit_test(test_closed_channel_no_sigpipe),
	    cmocka_unit_test(test_server_name),
	    cmocka_unit_test(test_server_revoked), /* last: revokes the server certificate */
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
