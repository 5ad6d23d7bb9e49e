/* client/sddc.c: the SEALDD client (see sddc.h; docs/sdd-protocol.md). Signalling through the
 * HTTP client (libcurl with the TLS profile); the user plane on non-blocking OpenSSL sockets.
 * A DATA frame takes as few TLS records as its bytes allow: its first record (header and the
 * first payload bytes) is built in one buffer, the rest goes to SSL_write from the caller's
 * buffer, a small record gathered with the next into one sendmsg() by the channel's write BIO;
 * received payloads go from SSL_read straight into the buffer of the waiting sg_sddc_recv. poll()
 * only when neither direction can move, and a sender reads whenever it has to wait, so a peer
 * echoing back never blocks it. */
#include "client/sddc.h"

#include "base/buf.h"
#include "base/clock.h"
#include "http/client.h"
#include "sdd/proto.h"
#include "tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define OUT_HWM (1u << 20) /* send() pumps while more than this is queued */
#define CHUNK   (32u << 10)
#define RECORD  16384u /* TLS 1.3 maximum record plaintext (RFC 8446 §5.1) */
/* uplink DATA frames: a send of up to SG_SDD_MAX_PAYLOAD bytes is one frame; a longer one is
 * cut into frames whose header + payload fill four records exactly, the rest one frame */
#define FRAME_FULL  (4 * RECORD - SG_SDD_HDR_LEN)
#define RD_BATCH    (256u << 10) /* bytes read from a channel before its frames are taken */
#define QCHUNK      (64u << 10)  /* a flow's queue grows by this much at most per SSL_read */
#define RXQ_DEFAULT (4u << 20)   /* sg_sddc_conf.rx_queue_max when 0 */

/* ---- signalling ---- */

/* Timeouts are poll()'s int milliseconds at most (24.8 days): a longer one would wrap to a
 * negative wait, which is forever. */
static long clamp_ms(long ms)
{
	return ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : ms;
}

static long tmo(const struct sg_sddc_conf *c)
{
	return c->timeout_ms > 0 ? clamp_ms(c->timeout_ms) : 10000;
}

static sg_err call(const struct sg_sddc_conf *c, const char *method, const char *path,
                   const char *body, json_t **out, long want, char *err, size_t errlen)
{
	if (!c->url || !c->ca || !c->token)
		return sg_fail(err, errlen, SG_ERR_INVALID, "url, ca and token are required");
	struct sg_http_client_conf hc = {
	    .tls = {.mode = SG_TLS_SERVER_AUTH, .ca = c->ca, .crl = c->crl},
	    .timeout_ms = tmo(c),
	    .connect_timeout_ms = tmo(c)};
	struct sg_http_client *cl = NULL;
	sg_err e = sg_http_client_new(&hc, &cl, err, errlen);
	if (e != SG_OK)
		return e;
	struct sg_buf url = SG_BUF_INIT, auth = SG_BUF_INIT;
	size_t ul = strlen(c->url);
	while (ul && c->url[ul - 1] == '/')
		ul--;
	if (sg_buf_append(&url, c->url, ul) || sg_buf_appends(&url, path) ||
	    sg_buf_printf(&auth, "Authorization: Bearer %s", c->token)) {
		e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		goto out;
	}
	const char *h[] = {auth.data, "Content-Type: application/json", "Accept: application/json",
	                   NULL};
	struct sg_http_response resp = {0};
	e = sg_http_client_request(cl, method, url.data, h, body, body ? strlen(body) : 0, &resp,
	                           err, errlen);
	if (e == SG_OK && resp.status != want) {
		json_t *p =
		    json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
		const char *cause = json_string_value(json_object_get(p, "cause"));
		const char *detail = json_string_value(json_object_get(p, "detail"));
		e = resp.status == 401 || resp.status == 403 ? SG_ERR_DENIED
		    : resp.status == 404                     ? SG_ERR_NOTFOUND
		    : resp.status == 429                     ? SG_ERR_LIMIT
		                                             : SG_ERR_PROTO;
		sg_fail(err, errlen, e, "%ld %s%s%s", resp.status, cause ? cause : "",
		        detail ? ": " : "", detail ? detail : "");
		json_decref(p);
	} else if (e == SG_OK && out) {
		*out = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
		if (!json_is_object(*out)) {
			json_decref(*out);
			*out = NULL;
			e = sg_fail(err, errlen, SG_ERR_PROTO, "the answer is not a JSON object");
		}
	}
	sg_http_response_free(&resp);
out:
	sg_buf_free(&url);
	sg_buf_wipe(&auth);
	sg_http_client_free(cl);
	return e;
}

static sg_err flow_from_json(const json_t *j, struct sg_sddc_flow *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	const char *id = json_string_value(json_object_get(j, "sddFlowId"));
	const json_t *ci = json_object_get(j, "ddServerConnInfo");
	const char *host = json_string_value(json_object_get(ci, "ipv4Addr"));
	if (!host)
		host = json_string_value(json_object_get(ci, "ipv6Addr"));
	json_int_t port = json_integer_value(json_object_get(ci, "port"));
	uint8_t raw[SG_SDD_FLOW_ID_LEN];
	if (!id || sg_sdd_flow_from_text(id, raw) != 0 || port <= 0 || port > 65535)
		return sg_fail(err, errlen, SG_ERR_PROTO,
		               "the flow answer lacks sddFlowId or the "
		               "data endpoint");
	const char *uri = json_string_value(json_object_get(ci, "uri"));
	char uh[sizeof out->host]; /* the uri's host: out->host is written from host below */
	if (!host && uri && !strncmp(uri, "sealdd://", 9)) {
		snprintf(uh, sizeof uh, "%.*s", (int)strcspn(uri + 9, ":/"), uri + 9);
		host = uh;
	}
	if (!host)
		return sg_fail(err, errlen, SG_ERR_PROTO,
		               "the flow answer has no data endpoint host");
	snprintf(out->id, sizeof out->id, "%s", id);
	snprintf(out->host, sizeof out->host, "%s", host);
	out->port = (unsigned)port;
	snprintf(out->val_service_id, sizeof out->val_service_id, "%s",
	         json_string_value(json_object_get(j, "valServiceId")) ?: "");
	snprintf(out->trans_type, sizeof out->trans_type, "%s",
	         json_string_value(json_object_get(j, "transType")) ?: "regular");
	out->lifetime_s = (long)json_integer_value(json_object_get(j, "lifetime"));
	return SG_OK;
}

sg_err sg_sddc_flow_open(const struct sg_sddc_conf *c, const char *val_service_id,
                         struct sg_sddc_flow *out, char *err, size_t errlen)
{
	json_t *req = json_pack("{s:s}", "valServiceId", val_service_id ? val_service_id : "");
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	json_t *j = NULL;
	sg_err e = call(c, "POST", "/sdd-flows/v1/flows", body, &j, 201, err, errlen);
	free(body);
	if (e == SG_OK)
		e = flow_from_json(j, out, err, errlen);
	json_decref(j);
	return e;
}

static int flow_id_ok(const char *id)
{
	uint8_t raw[SG_SDD_FLOW_ID_LEN];
	return sg_sdd_flow_from_text(id, raw) == 0;
}

sg_err sg_sddc_flow_get(const struct sg_sddc_conf *c, const char *flow_id, struct sg_sddc_flow *out,
                        char *err, size_t errlen)
{
	if (!flow_id_ok(flow_id))
		return sg_fail(err, errlen, SG_ERR_INVALID, "not a sddFlowId");
	char path[96];
	snprintf(path, sizeof path, "/sdd-flows/v1/flows/%s", flow_id);
	json_t *j = NULL;
	sg_err e = call(c, "GET", path, NULL, &j, 200, err, errlen);
	if (e == SG_OK)
		e = flow_from_json(j, out, err, errlen);
	json_decref(j);
	return e;
}

sg_err sg_sddc_flow_release(const struct sg_sddc_conf *c, const char *flow_id, char *err,
                            size_t errlen)
{
	if (!flow_id_ok(flow_id))
		return sg_fail(err, errlen, SG_ERR_INVALID, "not a sddFlowId");
	char path[96];
	snprintf(path, sizeof path, "/sdd-flows/v1/flows/%s", flow_id);
	return call(c, "DELETE", path, NULL, NULL, 204, err, errlen);
}

/* ---- user plane ---- */

struct cflow {
	struct cflow *next;
	uint8_t id[SG_SDD_FLOW_ID_LEN];
	char text[SG_SDD_FLOW_TEXT_LEN + 1];
	uint64_t next_seq; /* of the next uplink DATA frame; 0: all 2^64 - 1 are used up */
	struct sg_sdd_dedup down;
	struct sg_buf in; /* DATA that came while no receive of this flow was waiting */
	size_t in_off;
	/* the server holds the flow attached on channel i (its ATTACHED came, and no END of the
	 * flow, ERROR detaching it there, or the channel's end since): sg_sddc_attach sends ATTACH
	 * on every live channel where this is 0 */
	int attached[2];
	/* ended: END, or an ERROR that left the flow attached on no channel (sends and receives
	 * fail with reason); refused: an ERROR that took it off one channel while another still
	 * carries it (the attach in progress fails with reason, the flow goes on) */
	int ended, refused;
	char reason[200];
};

struct cchan {
	struct sg_sddc *s; /* the session, and this channel's index in it */
	unsigned idx;
	int fd;
	SSL *ssl;
	struct sg_buf out; /* what SSL_write has not taken yet */
	size_t out_off;
	/* the frame being received: its header, then its payload read straight to where it goes
	 * (docs/sdd-protocol.md §6) */
	uint8_t hdr[SG_SDD_HDR_LEN];
	size_t hgot;
	int in_payload;
	struct sg_sdd_frame cur; /* the checked header (payload NULL) */
	size_t rem;              /* payload bytes still to read */
	struct cflow *dst;       /* DATA read to this flow (one channel: no duplicates) */
	struct cflow *qf;        /* DATA whose payload may end in this flow's queue (held) */
	int drop;                /* DATA nobody takes (duplicate, unknown flow): read, discarded */
	struct sg_buf fb;        /* a payload taken whole: control frames, URLLC DATA */
	int dead, authed;
	char why[200];
	int64_t moved_ms; /* when its output last moved or had nothing to send (drop_laggard) */
};

struct sg_sddc {
	SSL_CTX *ctx;
	struct cchan ch[2];
	unsigned n;
	long timeout_ms;
	size_t rxq_max; /* bytes a flow queues for sg_sddc_recv before its channel stops reading */
	struct cflow *flows;
	struct cflow *last; /* the flow of the last call: its text id is compared, not decoded */
	unsigned long long dups;
	char *token;
	/* the receive in progress (sg_sddc_recv): DATA of this flow is read from TLS straight
	 * into the caller's buffer, not through the flow's queue */
	struct cflow *rx_flow;
	uint8_t *rx_buf;
	size_t rx_cap, rx_got;
	/* the first record of the DATA frame being sent: header + first payload bytes */
	uint8_t rec[RECORD];
};

static void chan_dead(struct cchan *c, const char *why)
{
	if (c->dead)
		return;
	c->dead = 1;
	snprintf(c->why, sizeof c->why, "%s", why);
	/* the server detaches the channel's flows when it closes (they live on) */
	for (struct cflow *f = c->s ? c->s->flows : NULL; f; f = f->next)
		f->attached[c->idx] = 0;
}

/* Whether an ERROR payload ("CODE" or "CODE: text") has this code. */
static int err_code_is(const char *text, const char *code)
{
	size_t n = strlen(code);
	return !strncmp(text, code, n) && (text[n] == '\0' || text[n] == ':');
}

static size_t chan_pending(const struct cchan *c);

/* Starts the clock of a channel whose output is about to wait for the socket (drop_laggard). */
static void out_starts(struct cchan *c)
{
	if (!chan_pending(c))
		c->moved_ms = sg_mono_ms();
}

/* Appends to the channel's output queue. Once more than half of the queue has gone out, the
 * bytes still unsent move to its front first: the queue is emptied whole only when the socket
 * takes everything, which a peer slower than the sender never lets happen, and it would
 * otherwise keep every byte of a long send (the memory stays near OUT_HWM and a frame). The
 * record OpenSSL keeps for a retried SSL_write is found again at its new place
 * (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). -1: out of memory. */
static int out_append(struct cchan *c, const void *p, size_t n)
{
	if (c->out_off && c->out_off >= c->out.len / 2) {
		size_t left = c->out.len - c->out_off;
		memmove(c->out.data, c->out.data + c->out_off, left);
		c->out.len = left;
		c->out_off = 0;
	}
	return sg_buf_append(&c->out, p, n) == SG_OK ? 0 : -1;
}

/* Queues a frame (copied) behind what waits in the channel's output. */
static int queue_frame(struct cchan *c, uint8_t type, const uint8_t *flow, uint64_t seq,
                       const void *p, size_t n)
{
	uint8_t hdr[SG_SDD_HDR_LEN];
	sg_sdd_frame_header(hdr, type, (uint32_t)n, seq, flow);
	out_starts(c);
	if (out_append(c, hdr, sizeof hdr) || (n && out_append(c, p, n)))
		return -1;
	return 0;
}

/* Hands a frame to TLS in two parts: head, then rest (either may be empty). When nothing waits
 * before it, each part goes to SSL_write from where it is; what OpenSSL does not take (the
 * socket is full) is queued (copied). sg_sddc_send lays a DATA frame out so that its records
 * are as few as the bytes allow (frame_headn). -1: out of memory. */
static int send_parts(struct cchan *c, const uint8_t *head, size_t hlen, const uint8_t *rest,
                      size_t rlen)
{
	const uint8_t *part[2] = {head, rest};
	size_t len[2] = {hlen, rlen};
	out_starts(c);
	for (int i = 0; i < 2; i++) {
		const uint8_t *b = part[i];
		size_t l = len[i];
		while (l && !c->dead && c->out_off == c->out.len) {
			int r = SSL_write(c->ssl, b, (int)l);
			if (r > 0) {
				b += r;
				l -= (size_t)r;
				continue;
			}
			int e = SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				chan_dead(c, "the SEALDD server closed the data channel");
				ERR_clear_error();
				return 0;
			}
			/* OpenSSL holds the first record of these bytes: the retry passes them
			 * again from the queue (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) */
			break;
		}
		if (l && !c->dead && out_append(c, b, l))
			return -1;
	}
	return 0;
}

/* The layout of a DATA frame of n payload bytes (n <= SG_SDD_MAX_PAYLOAD) in TLS records of at
 * most RECORD bytes of plaintext (RFC 8446 §5.1): the frame needs m = ceil((32 + n) / RECORD)
 * records, and gets exactly that many. The first record holds the 32-byte header and the first
 * frame_headn(n) payload bytes (copied into one contiguous buffer: OpenSSL 3.0 has no gather
 * write), every later one is RECORD bytes of the caller's buffer, the last possibly fewer
 * (docs/sdd-protocol.md §6). A frame of up to RECORD - 32 bytes is one record; 16 KiB is the
 * header's small record and one full record, gathered into one sendmsg() by the write BIO (and
 * the relay forwards it as one record, as the payload of one frame); FRAME_FULL is exactly
 * four full records, a quarter of them copied. */
static size_t frame_headn(size_t n)
{
	size_t m = (SG_SDD_HDR_LEN + n + RECORD - 1) / RECORD;
	return n > (m - 1) * RECORD ? n - (m - 1) * RECORD : 0;
}

static struct cflow *find_flow(struct sg_sddc *s, const uint8_t *id)
{
	for (struct cflow *f = s->flows; f; f = f->next)
		if (!memcmp(f->id, id, SG_SDD_FLOW_ID_LEN))
			return f;
	return NULL;
}

static size_t queued(const struct cflow *fl)
{
	return fl->in.len - fl->in_off;
}

/* Drops what sg_sddc_recv took from the front of a flow's queue before more is appended (a
 * queue that is never emptied whole would otherwise only grow). Moves at most as many bytes
 * as were taken since the last time. */
static void q_compact(struct cflow *fl)
{
	size_t left = queued(fl);
	if (!fl->in_off || left > fl->in_off)
		return;
	memmove(fl->in.data, fl->in.data + fl->in_off, left);
	fl->in.len = left;
	fl->in.data[left] = '\0';
	fl->in_off = 0;
}

/* Backpressure toward the server (docs/sdd-protocol.md §3): the payload of a DATA frame whose
 * flow already queues rxq_max bytes that no sg_sddc_recv has taken stays in TLS and TCP, and
 * the SEALDD server, its channel output full, stops reading from the VAL server. The channel
 * reads nothing more until a receive takes from that queue, so a peer that sends more than
 * the application takes cannot grow the client's memory. */
static int held(const struct sg_sddc *s, const struct cchan *c)
{
	return c->in_payload && c->qf && queued(c->qf) >= s->rxq_max;
}

/* A whole frame other than streamed DATA (f->payload holds its payload). */
static void handle(struct sg_sddc *s, unsigned ci, const struct sg_sdd_frame *f)
{
	struct cchan *c = &s->ch[ci];
	struct cflow *fl = find_flow(s, f->flow);
	char text[200];
	switch (f->type) {
	case SG_SDD_AUTH_OK:
		c->authed = 1;
		break;
	case SG_SDD_ATTACHED:
		if (fl) {
			fl->attached[ci] = 1;
			/* the server's next uplink sequence number; never back (nor out of 0, all
			 * used up: from there on a server's window takes no frame of ours) */
			if (fl->next_seq && f->seq > fl->next_seq)
				fl->next_seq = f->seq;
		}
		break;
	case SG_SDD_DATA:
		if (!fl || fl->ended)
			break; /* not attached, or after the flow's END / ERROR: nobody takes it */
		if (!sg_sdd_dedup_accept(&fl->down, f->seq)) {
			s->dups++; /* URLLC: the copy from the other channel came first */
			break;
		}
		q_compact(fl);
		const uint8_t *p = f->payload;
		size_t n = f->len;
		if (fl == s->rx_flow && !queued(fl) && s->rx_got < s->rx_cap) {
			/* a receive is waiting and nothing is queued before this */
			size_t k = s->rx_cap - s->rx_got < n ? s->rx_cap - s->rx_got : n;
			memcpy(s->rx_buf + s->rx_got, p, k);
			s->rx_got += k;
			p += k;
			n -= k;
		}
		if (n && sg_buf_append(&fl->in, p, n) != SG_OK)
			chan_dead(c, "out of memory");
		break;
	case SG_SDD_END:
	case SG_SDD_ERROR:
		snprintf(text, sizeof text, "%.*s", (int)(f->len < 199 ? f->len : 199),
		         (const char *)f->payload);
		if (sg_sdd_flow_is_zero(f->flow)) {
			chan_dead(c, text); /* channel-level: the server closes it */
			break;
		}
		if (!fl)
			break;
		/* where the server holds the flow attached now (src/sdd/plane.c): END detaches it
		 * from every channel; ALREADY_ATTACHED says it is attached on this one (an ATTACH
		 * repeated after a late ATTACHED): nothing failed. Any other flow ERROR
		 * (UNKNOWN_FLOW, BUSY, LIMIT, INTERNAL on ATTACH, UNKNOWN_FLOW on DATA) means it is
		 * not attached on this channel; the flow ends only when no live channel carries
		 * it any more (URLLC: a refusal on one channel leaves the other's data flowing). A
		 * later sg_sddc_attach asks again. */
		if (f->type == SG_SDD_ERROR && err_code_is(text, "ALREADY_ATTACHED")) {
			fl->attached[ci] = 1;
			break;
		}
		if (f->type == SG_SDD_END)
			fl->attached[0] = fl->attached[1] = 0;
		else
			fl->attached[ci] = 0;
		int elsewhere = 0;
		for (unsigned i = 0; i < s->n; i++)
			elsewhere |= fl->attached[i] && !s->ch[i].dead;
		if (!fl->ended && !fl->refused)
			snprintf(fl->reason, sizeof fl->reason, "%s", text);
		if (elsewhere)
			fl->refused = 1;
		else
			fl->ended = 1;
		break;
	default:
		chan_dead(c, "the server sent a frame a client does not take");
	}
}

static void frame_done(struct sg_sddc *s, unsigned ci)
{
	struct cchan *c = &s->ch[ci];
	c->in_payload = 0;
	if (c->dst || c->drop)
		return; /* streamed DATA: already where it goes */
	c->cur.payload = c->fb.data ? (const uint8_t *)c->fb.data : (const uint8_t *)"";
	handle(s, ci, &c->cur);
}

/* A header is complete: judge it, and decide where its payload goes. */
static void header_done(struct sg_sddc *s, unsigned ci)
{
	struct cchan *c = &s->ch[ci];
	c->hgot = 0;
	int r = sg_sdd_frame_parse_header(c->hdr, &c->cur);
	if (r < 0) {
		chan_dead(c, sg_sdd_perr_str(r));
		return;
	}
	c->rem = c->cur.len;
	c->dst = c->qf = NULL;
	c->drop = 0;
	sg_buf_reset(&c->fb);
	/* DATA of a flow that ended (END / ERROR came before it) is read and dropped: a
	 * server that goes on sending must neither grow that flow's queue nor, once the
	 * queue is at its bound, hold the channel and with it the flows still running */
	struct cflow *fl = c->cur.type == SG_SDD_DATA ? find_flow(s, c->cur.flow) : NULL;
	if (fl && fl->ended)
		fl = NULL;
	if (c->cur.type == SG_SDD_DATA && s->n == 2)
		c->qf = fl;
	if (c->cur.type == SG_SDD_DATA && s->n == 1) {
		/* one channel: no copy can come from elsewhere, so the payload is streamed and
		 * its sequence number judged now. With two (URLLC) a DATA frame is taken whole
		 * (handle), so that a channel failing mid-frame never leaves half a frame
		 * accepted while the other channel's copy is dropped as a duplicate. */
		if (!fl)
			c->drop = 1;
		else if (!sg_sdd_dedup_accept(&fl->down, c->cur.seq)) {
			s->dups++;
			c->drop = 1;
		} else
			c->dst = c->qf = fl;
	}
	if (c->rem)
		c->in_payload = 1;
	else
		frame_done(s, ci);
}

/* Where the next payload bytes of the current frame go: a buffer with room for *want bytes
 * (*into_rx: the waiting receive's), or NULL to stop reading (that receive is full, or out of
 * memory). */
static uint8_t *payload_dst(struct sg_sddc *s, struct cchan *c, size_t *want, int *into_rx)
{
	*into_rx = 0;
	size_t w = c->rem < QCHUNK ? c->rem : QCHUNK;
	if (c->dst) {
		struct cflow *fl = c->dst;
		q_compact(fl);
		if (fl == s->rx_flow && !queued(fl)) {
			if (s->rx_got == s->rx_cap)
				return NULL; /* the rest waits in TLS for the next receive */
			*into_rx = 1;
			*want = s->rx_cap - s->rx_got < c->rem ? s->rx_cap - s->rx_got : c->rem;
			return s->rx_buf + s->rx_got;
		}
		if (sg_buf_reserve(&fl->in, w) != SG_OK)
			return NULL;
		*want = w;
		return (uint8_t *)fl->in.data + fl->in.len;
	}
	if (c->drop) {
		sg_buf_reset(&c->fb); /* scratch */
		if (sg_buf_reserve(&c->fb, w) != SG_OK)
			return NULL;
		*want = w;
		return (uint8_t *)c->fb.data;
	}
	if (sg_buf_reserve(&c->fb, c->rem) != SG_OK)
		return NULL;
	*want = c->rem;
	return (uint8_t *)c->fb.data + c->fb.len;
}

/* Reads frames from the channel: each header (32 bytes), then its payload with SSL_read
 * straight into the buffer of a waiting sg_sddc_recv (or the flow's queue when none waits).
 * Stops when OpenSSL needs the socket, when the waiting receive's buffer is full (the rest
 * stays in TLS for the next call), or after RD_BATCH bytes. Returns the bytes read. */
static size_t chan_read(struct sg_sddc *s, unsigned ci)
{
	struct cchan *c = &s->ch[ci];
	size_t total = 0;
	while (!c->dead && total < RD_BATCH && !held(s, c)) {
		if (s->rx_got && !c->in_payload)
			break; /* a receive got data and a frame ended: the caller takes it now */
		uint8_t *p;
		size_t want;
		int into_rx = 0;
		if (!c->in_payload) {
			p = c->hdr + c->hgot;
			want = SG_SDD_HDR_LEN - c->hgot;
		} else if (!(p = payload_dst(s, c, &want, &into_rx))) {
			if (!(c->dst && c->dst == s->rx_flow && s->rx_got == s->rx_cap))
				chan_dead(c, "out of memory");
			break;
		}
		int n = SSL_read(c->ssl, p, (int)want);
		if (n <= 0) {
			int e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				break;
			chan_dead(c, e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL
			                 ? "the SEALDD server closed the data channel"
			                 : "TLS error on the data channel");
			ERR_clear_error();
			break;
		}
		total += (size_t)n;
		if (!c->in_payload) {
			if ((c->hgot += (size_t)n) == SG_SDD_HDR_LEN)
				header_done(s, ci);
			continue;
		}
		if (into_rx) {
			s->rx_got += (size_t)n;
		} else if (c->dst) {
			c->dst->in.len += (size_t)n;
			c->dst->in.data[c->dst->in.len] = '\0';
		} else if (!c->drop) {
			c->fb.len += (size_t)n;
			c->fb.data[c->fb.len] = '\0';
		}
		if ((c->rem -= (size_t)n) == 0)
			frame_done(s, ci);
	}
	return total;
}

/* Bytes not yet on the socket: frames queued, and records kept back by the write BIO. */
static size_t chan_pending(const struct cchan *c)
{
	return c->out.len - c->out_off + (c->ssl ? BIO_wpending(SSL_get_wbio(c->ssl)) : 0);
}

/* Writes what is queued and flushes the records the write BIO keeps back. Returns 1 when
 * bytes went out. */
static int chan_write(struct cchan *c)
{
	size_t before = chan_pending(c);
	while (!c->dead && c->out_off < c->out.len) {
		size_t left = c->out.len - c->out_off;
		int n = SSL_write(c->ssl, c->out.data + c->out_off,
		                  (int)(left > CHUNK * 2 ? CHUNK * 2 : left));
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		chan_dead(c, "the SEALDD server closed the data channel");
		ERR_clear_error();
		return 1;
	}
	BIO *wb = c->dead ? NULL : SSL_get_wbio(c->ssl);
	if (wb && BIO_wpending(wb) > 0 && BIO_flush(wb) <= 0 && !BIO_should_retry(wb)) {
		chan_dead(c, "the SEALDD server closed the data channel");
		ERR_clear_error();
		return 1;
	}
	size_t after = chan_pending(c);
	int progress = after != before;
	if (progress || !after)
		c->moved_ms = sg_mono_ms();
	if (c->out_off == c->out.len) {
		sg_buf_reset(&c->out);
		c->out_off = 0;
	}
	return progress;
}

static int live(const struct sg_sddc *s)
{
	int n = 0;
	for (unsigned i = 0; i < s->n; i++)
		n += !s->ch[i].dead;
	return n;
}

static size_t max_out(const struct sg_sddc *s)
{
	size_t m = 0;
	for (unsigned i = 0; i < s->n; i++)
		if (!s->ch[i].dead && chan_pending(&s->ch[i]) > m)
			m = chan_pending(&s->ch[i]);
	return m;
}

/* One round: write what is queued and read what is there without waiting; only when neither
 * moved a byte, poll up to wait_ms and then read everything readable, write what is queued.
 * Records already in OpenSSL's read-ahead buffer wake no poll(): SSL_has_pending. */
static void pump(struct sg_sddc *s, long wait_ms)
{
	int moved = 0;
	for (unsigned i = 0; i < s->n; i++) {
		struct cchan *c = &s->ch[i];
		if (!c->dead && chan_pending(c))
			moved |= chan_write(c);
		if (!c->dead)
			moved |= chan_read(s, i) > 0;
	}
	if (moved)
		return;
	if (!live(s))
		return;
	/* a held channel (held()) is not polled for reading, nor at all when it has nothing to
	 * write: a hang-up would wake every poll while its bytes wait for a receive */
	struct pollfd pf[2];
	unsigned map[2], np = 0;
	for (unsigned i = 0; i < s->n; i++) {
		struct cchan *c = &s->ch[i];
		short ev = (short)((held(s, c) ? 0 : POLLIN) | (chan_pending(c) ? POLLOUT : 0));
		if (c->dead || !ev)
			continue;
		if (ev & POLLIN && SSL_has_pending(c->ssl))
			wait_ms = 0;
		pf[np].fd = c->fd;
		pf[np].events = ev;
		pf[np].revents = 0;
		map[np++] = i;
	}
	int r = poll(pf, np, (int)clamp_ms(wait_ms));
	if (r < 0 && errno != EINTR)
		return;
	for (unsigned k = 0; k < np; k++) {
		struct cchan *c = &s->ch[map[k]];
		if (pf[k].revents & (POLLIN | POLLHUP | POLLERR) || SSL_has_pending(c->ssl))
			chan_read(s, map[k]);
		if (!c->dead && chan_pending(c))
			chan_write(c);
	}
}

static sg_err dead_err(const struct sg_sddc *s, char *err, size_t errlen)
{
	const char *why = "the data channel is closed";
	for (unsigned i = 0; i < s->n; i++)
		if (s->ch[i].dead && s->ch[i].why[0])
			why = s->ch[i].why;
	return sg_fail(err, errlen, SG_ERR_PROTO, "%s", why);
}

static int tcp_connect(const char *host, unsigned port, long timeout_ms, char *err, size_t errlen)
{
	char ps[8];
	snprintf(ps, sizeof ps, "%u", port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	int rc = getaddrinfo(host, ps, &hints, &ai);
	if (rc != 0) {
		sg_fail(err, errlen, SG_ERR_IO, "%s: %s", host, gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
			sg_fail(err, errlen, SG_ERR_IO, "connect %s:%u: %s", host, port,
			        strerror(errno));
			close(fd);
			fd = -1;
			continue;
		}
		struct pollfd pf = {.fd = fd, .events = POLLOUT};
		int soerr = 0;
		socklen_t sl = sizeof soerr;
		if (poll(&pf, 1, (int)timeout_ms) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
			sg_fail(err, errlen, SG_ERR_IO, "connect %s:%u: %s", host, port,
			        soerr ? strerror(soerr) : "timed out");
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (fd >= 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	return fd;
}

/* ---- the write side of a data channel: a gathering socket BIO ----
 * OpenSSL writes each TLS record to its BIO separately. A DATA frame handed to SSL_write as
 * header, then payload, is a 54-byte record and a 16 KiB one: written one by one, the first
 * would be a packet (and a server wake-up) of its own; through BIO_f_buffer every ciphertext
 * byte would be copied once more. This BIO keeps small records (GB_SMALL) back and sends them
 * with the next large one in one sendmsg(), the large one from OpenSSL's own buffer. BIO_flush
 * sends what is kept back. */
#define GB_SMALL 2048

struct gbio {
	int fd;
	size_t len;
	uint8_t b[GB_SMALL];
};

static int gbio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int gbio_destroy(BIO *b)
{
	struct gbio *g = BIO_get_data(b);
	if (g) {
		OPENSSL_cleanse(g, sizeof *g);
		free(g);
	}
	BIO_set_data(b, NULL);
	return 1;
}

/* writev() that never raises SIGPIPE: a server that closed the channel is an error to report
 * (EPIPE), not a signal that would end the application using this library. */
static ssize_t gb_send(int fd, struct iovec *v, int n)
{
	struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)n};
	return sendmsg(fd, &m, MSG_NOSIGNAL);
}

static int gbio_write(BIO *b, const char *in, int inl)
{
	struct gbio *g = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (inl <= 0)
		return 0;
	if ((size_t)inl <= GB_SMALL - g->len && inl < GB_SMALL / 2) {
		memcpy(g->b + g->len, in, (size_t)inl); /* a small record waits for company */
		g->len += (size_t)inl;
		return inl;
	}
	struct iovec v[2] = {{g->b, g->len}, {(void *)in, (size_t)inl}};
	ssize_t n = g->len ? gb_send(g->fd, v, 2) : gb_send(g->fd, v + 1, 1);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_write(b);
		return -1;
	}
	if ((size_t)n < g->len) { /* only part of what was kept back went */
		memmove(g->b, g->b + n, g->len - (size_t)n);
		g->len -= (size_t)n;
		BIO_set_retry_write(b);
		return -1;
	}
	n -= (ssize_t)g->len;
	g->len = 0;
	if (n == 0) {
		BIO_set_retry_write(b);
		return -1;
	}
	return (int)n;
}

static long gbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)num;
	(void)ptr;
	struct gbio *g = BIO_get_data(b);
	switch (cmd) {
	case BIO_CTRL_WPENDING:
		return (long)g->len;
	case BIO_CTRL_PENDING:
		return 0;
	case BIO_CTRL_FLUSH:
		BIO_clear_retry_flags(b);
		while (g->len) {
			struct iovec v = {g->b, g->len};
			ssize_t n = gb_send(g->fd, &v, 1);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					BIO_set_retry_write(b);
				return 0;
			}
			memmove(g->b, g->b + n, g->len - (size_t)n);
			g->len -= (size_t)n;
		}
		return 1;
	default:
		return 0;
	}
}

static BIO_METHOD *gbio_method;
static pthread_once_t gbio_once = PTHREAD_ONCE_INIT;

static void gbio_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sddc-gather");
	if (m && BIO_meth_set_write(m, gbio_write) && BIO_meth_set_ctrl(m, gbio_ctrl) &&
	    BIO_meth_set_create(m, gbio_create) && BIO_meth_set_destroy(m, gbio_destroy))
		gbio_method = m;
	else
		BIO_meth_free(m);
}

/* A gathering write BIO on fd (not closed by it); NULL when out of memory. */
static BIO *gbio_new(int fd)
{
	pthread_once(&gbio_once, gbio_init);
	struct gbio *g = gbio_method ? calloc(1, sizeof *g) : NULL;
	BIO *b = g ? BIO_new(gbio_method) : NULL;
	if (!b) {
		free(g);
		return NULL;
	}
	g->fd = fd;
	BIO_set_data(b, g);
	return b;
}

static sg_err chan_open(struct sg_sddc *s, struct cchan *c, const char *host, unsigned port,
                        const char *verify_host, char *err, size_t errlen)
{
	c->fd = tcp_connect(host, port, s->timeout_ms, err, errlen);
	if (c->fd < 0)
		return SG_ERR_IO;
	if (!(c->ssl = SSL_new(s->ctx)))
		return sg_fail(err, errlen, SG_ERR_TLS, "SSL_new");
	BIO *rb = BIO_new_socket(c->fd, BIO_NOCLOSE), *wb = gbio_new(c->fd);
	if (!rb || !wb) {
		BIO_free(rb);
		BIO_free(wb);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	SSL_set_bio(c->ssl, rb, wb); /* the SSL owns them */
	c->dead = 0;
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* one read() per record instead of a header read and a body read; OpenSSL's default
	 * buffer size (one record): larger, every record start moves the rest of the buffer */
	SSL_set_read_ahead(c->ssl, 1);
	/* R1: the SEALDD server is authenticated by its certificate: the same identity as the
	 * SEALDD-UU signalling URL's host, or the server_name given (a relocation's target) */
	unsigned char ip[16];
	int named;
	if (inet_pton(AF_INET, verify_host, ip) == 1 || inet_pton(AF_INET6, verify_host, ip) == 1)
		named = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), verify_host) == 1;
	else
		named = SSL_set1_host(c->ssl, verify_host) == 1 &&
		        SSL_set_tlsext_host_name(c->ssl, verify_host) == 1;
	if (!named)
		return sg_fail(err, errlen, SG_ERR_TLS, "cannot check the server's name '%s'",
		               verify_host);
	int64_t end = sg_mono_ms() + s->timeout_ms;
	for (;;) {
		int r = SSL_connect(c->ssl);
		if (r == 1)
			break;
		int e = SSL_get_error(c->ssl, r);
		long left = (long)(end - sg_mono_ms());
		if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || left <= 0) {
			sg_err x = sg_fail(err, errlen, SG_ERR_TLS,
			                   "TLS handshake with %s:%u failed", host, port);
			long vr = SSL_get_verify_result(c->ssl);
			if (vr != X509_V_OK) {
				size_t l = strlen(err);
				snprintf(err + l, errlen - l, ": %s",
				         X509_verify_cert_error_string(vr));
			} else {
				sg_fail_append_openssl(err, errlen);
			}
			return x;
		}
		struct pollfd pf = {.fd = c->fd,
		                    .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
		poll(&pf, 1, (int)left);
	}
	if (SSL_version(c->ssl) != TLS1_3_VERSION)
		return sg_fail(err, errlen, SG_ERR_TLS, "the data channel must be TLS 1.3");
	if (queue_frame(c, SG_SDD_AUTH, NULL, 0, s->token, strlen(s->token)))
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	return SG_OK;
}

/* Waits until every live channel has its AUTH_OK. every: a channel that dies (or is dead) is an
 * error (connect); otherwise (reauth) the channels still alive are enough, as for the data: a
 * URLLC session that lost one channel renews its authentication on the other. */
static sg_err wait_auth(struct sg_sddc *s, int every, char *err, size_t errlen)
{
	int64_t end = sg_mono_ms() + s->timeout_ms;
	for (;;) {
		int all = 1;
		for (unsigned i = 0; i < s->n; i++)
			all &= s->ch[i].authed || s->ch[i].dead;
		for (unsigned i = 0; i < s->n; i++)
			if (s->ch[i].dead && every)
				return dead_err(s, err, errlen);
		if (!live(s))
			return dead_err(s, err, errlen);
		if (all)
			return SG_OK;
		long left = (long)(end - sg_mono_ms());
		if (left <= 0)
			return sg_fail(err, errlen, SG_ERR_TIMEOUT, "no answer to AUTH");
		pump(s, left);
	}
}

sg_err sg_sddc_connect(const struct sg_sddc_conf *c, const char *host, unsigned port,
                       unsigned nchan, struct sg_sddc **out, char *err, size_t errlen)
{
	if (!c->ca || !c->token || !c->url || !host || nchan < 1 || nchan > 2)
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "ca, token, url, host and 1 or 2 "
		               "channels are required");
	struct sg_sddc *s = calloc(1, sizeof *s);
	if (!s)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	s->timeout_ms = tmo(c);
	s->rxq_max = c->rx_queue_max ? c->rx_queue_max : RXQ_DEFAULT;
	s->n = nchan;
	for (unsigned i = 0; i < 2; i++) {
		s->ch[i].s = s;
		s->ch[i].idx = i;
		s->ch[i].fd = -1;
		s->ch[i].dead = 1; /* until opened */
	}
	sg_err e;
	if (!(s->token = strdup(c->token))) {
		e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		goto fail;
	}
	/* the TLS profile (T1-T3), narrowed to TLS 1.3 for the user plane */
	struct sg_tls_conf tc = {.mode = SG_TLS_SERVER_AUTH,
	                         .ca = c->ca,
	                         .crl = c->crl,
	                         .min_version = "TLS1.3",
	                         .max_version = "TLS1.3"};
	if ((e = sg_tls_client_ctx_new(&tc, &s->ctx, err, errlen)) != SG_OK)
		goto fail;
	char vh[256] = "";
	const char *u = strstr(c->url, "://");
	u = u ? u + 3 : c->url;
	if (c->server_name)
		snprintf(vh, sizeof vh, "%s", c->server_name);
	else if (*u == '[')
		snprintf(vh, sizeof vh, "%.*s", (int)strcspn(u + 1, "]"), u + 1);
	else
		snprintf(vh, sizeof vh, "%.*s", (int)strcspn(u, ":/"), u);
	/* an empty name turns OpenSSL's name check off: any certificate of the CA would pass */
	if (!vh[0]) {
		e = sg_fail(err, errlen, SG_ERR_INVALID, "no server name to check: url '%s'%s",
		            c->url, c->server_name ? ", empty server_name" : "");
		goto fail;
	}
	for (unsigned i = 0; i < nchan; i++)
		if ((e = chan_open(s, &s->ch[i], host, port, vh, err, errlen)) != SG_OK)
			goto fail;
	if ((e = wait_auth(s, 1, err, errlen)) != SG_OK)
		goto fail;
	*out = s;
	return SG_OK;
fail:
	sg_sddc_close(s);
	return e;
}

static struct cflow *flow_of(struct sg_sddc *s, const char *id, char *err, size_t errlen)
{
	if (s->last && id && !strcmp(s->last->text, id))
		return s->last; /* the same flow as the last call: no base64url decoding */
	uint8_t raw[SG_SDD_FLOW_ID_LEN];
	if (sg_sdd_flow_from_text(id, raw) != 0) {
		sg_fail(err, errlen, SG_ERR_INVALID, "not a sddFlowId");
		return NULL;
	}
	struct cflow *f = find_flow(s, raw);
	if (!f)
		sg_fail(err, errlen, SG_ERR_INVALID, "the flow is not attached");
	else
		s->last = f;
	return f;
}

sg_err sg_sddc_attach(struct sg_sddc *s, const char *flow_id, unsigned flags, char *err,
                      size_t errlen)
{
	uint8_t raw[SG_SDD_FLOW_ID_LEN];
	if (sg_sdd_flow_from_text(flow_id, raw) != 0)
		return sg_fail(err, errlen, SG_ERR_INVALID, "not a sddFlowId");
	struct cflow *f = find_flow(s, raw);
	if (!f) {
		if (!(f = calloc(1, sizeof *f)))
			return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		memcpy(f->id, raw, sizeof raw);
		snprintf(f->text, sizeof f->text, "%s", flow_id);
		f->next_seq = 1;
		f->next = s->flows;
		s->flows = f;
	}
	/* ATTACH goes on every live channel the flow is not attached on: after an END of the
	 * flow on all of them, so the server answers for an ended flow (ERROR UNKNOWN_FLOW once
	 * it is released), and this call fails with that answer */
	f->ended = f->refused = 0;
	f->reason[0] = '\0';
	for (unsigned i = 0; i < s->n; i++)
		if (!s->ch[i].dead && !f->attached[i] &&
		    queue_frame(&s->ch[i], SG_SDD_ATTACH, raw, flags & SG_SDDC_SEND_ONLY ? 1 : 0,
		                NULL, 0))
			return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	int64_t end = sg_mono_ms() + s->timeout_ms;
	for (;;) {
		if (f->ended || f->refused)
			return sg_fail(err, errlen, SG_ERR_DENIED, "%s", f->reason);
		if (!live(s))
			return dead_err(s, err, errlen);
		int all = 1;
		for (unsigned i = 0; i < s->n; i++)
			all &= f->attached[i] || s->ch[i].dead;
		if (all)
			return SG_OK;
		long left = (long)(end - sg_mono_ms());
		if (left <= 0)
			return sg_fail(err, errlen, SG_ERR_TIMEOUT, "no answer to ATTACH");
		pump(s, left);
	}
}

/* URLLC (docs/sdd-protocol.md §3): a send waits while either channel has OUT_HWM queued, so a
 * channel whose output stops moving (its path went dark without a reset, or the server stopped
 * reading it) would hold the flow's uplink on both. Once it has not moved for the timeout while
 * the other one has sent everything, it is given up: shut down, so that the server detaches its
 * flows, and the send goes on over the other channel, which carries every frame as well.
 * Returns 1 when a channel was dropped. */
static int drop_laggard(struct sg_sddc *s)
{
	if (live(s) < 2)
		return 0;
	int64_t now = sg_mono_ms();
	for (unsigned i = 0; i < 2; i++) {
		struct cchan *c = &s->ch[i], *o = &s->ch[1 - i];
		if (chan_pending(c) && now - c->moved_ms > s->timeout_ms && !chan_pending(o)) {
			char why[200];
			snprintf(why, sizeof why,
			         "the data channel took no data for %ld ms while the other one did",
			         s->timeout_ms);
			chan_dead(c, why);
			shutdown(c->fd, SHUT_RDWR);
			return 1;
		}
	}
	return 0;
}

/* The DATA frames sg_sddc_send cuts len bytes into. */
static uint64_t frames_of(size_t len)
{
	if (len <= SG_SDD_MAX_PAYLOAD)
		return len ? 1 : 0;
	return (len - SG_SDD_MAX_PAYLOAD + FRAME_FULL - 1) / FRAME_FULL + 1;
}

sg_err sg_sddc_send(struct sg_sddc *s, const char *flow_id, const void *data, size_t len, char *err,
                    size_t errlen)
{
	return sg_sddc_send_ex(s, flow_id, data, len, NULL, err, errlen);
}

sg_err sg_sddc_send_ex(struct sg_sddc *s, const char *flow_id, const void *data, size_t len,
                       size_t *taken, char *err, size_t errlen)
{
	if (taken)
		*taken = 0;
	struct cflow *f = flow_of(s, flow_id, err, errlen);
	if (!f)
		return SG_ERR_INVALID;
	/* sequence numbers run from 1 to 2^64 - 1 (an ATTACHED may start them near the end): a
	 * frame numbered 0 after the wrap would be dropped by the server (sg_sdd_dedup_accept),
	 * and every later one as too old, while the send reported success */
	uint64_t nfr = frames_of(len);
	if (!f->ended && nfr && (!f->next_seq || nfr - 1 > UINT64_MAX - f->next_seq))
		return sg_fail(err, errlen, SG_ERR_PROTO,
		               "the flow's uplink sequence numbers are used up");
	const uint8_t *p = data;
	int64_t last_progress = sg_mono_ms();
	for (;;) {
		if (f->ended)
			return sg_fail(err, errlen, SG_ERR_PROTO, "%s", f->reason);
		if (!live(s))
			return dead_err(s, err, errlen);
		while (len && max_out(s) < OUT_HWM) {
			/* an ATTACHED read while this send waited may have moved the numbers up
			 * to the end of their space: never a frame numbered 0 */
			if (!f->next_seq)
				return sg_fail(err, errlen, SG_ERR_PROTO,
				               "the flow's uplink sequence numbers are used up");
			/* one frame, in as few TLS records as its bytes allow (frame_headn); the
			 * same records on every channel (URLLC) */
			size_t n = len > SG_SDD_MAX_PAYLOAD ? FRAME_FULL : len;
			size_t hn = frame_headn(n);
			sg_sdd_frame_header(s->rec, SG_SDD_DATA, (uint32_t)n, f->next_seq, f->id);
			memcpy(s->rec + SG_SDD_HDR_LEN, p, hn);
			for (unsigned i = 0; i < s->n; i++)
				if (!s->ch[i].dead &&
				    send_parts(&s->ch[i], s->rec, SG_SDD_HDR_LEN + hn, p + hn,
				               n - hn))
					return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
			f->next_seq++;
			p += n;
			len -= n;
			if (taken)
				*taken += n;
		}
		/* the records gathered in the write buffer go out; the socket reads only when
		 * this has to wait (a peer echoing back must not block us) */
		for (unsigned i = 0; i < s->n; i++)
			if (!s->ch[i].dead && chan_pending(&s->ch[i]))
				chan_write(&s->ch[i]);
		if (!len && !max_out(s))
			break;
		size_t before = max_out(s);
		pump(s, 200);
		if (max_out(s) != before || drop_laggard(s))
			last_progress = sg_mono_ms();
		else if (sg_mono_ms() - last_progress > s->timeout_ms)
			return sg_fail(err, errlen, SG_ERR_TIMEOUT,
			               "the SEALDD server took no data for %ld ms", s->timeout_ms);
	}
	if (!live(s))
		return dead_err(s, err, errlen);
	return SG_OK;
}

sg_err sg_sddc_recv(struct sg_sddc *s, const char *flow_id, void *buf, size_t cap, long timeout_ms,
                    size_t *n, char *err, size_t errlen)
{
	*n = 0;
	struct cflow *f = flow_of(s, flow_id, err, errlen);
	if (!f)
		return SG_ERR_INVALID;
	int64_t end = sg_mono_ms() + clamp_ms(timeout_ms);
	for (;;) {
		size_t have = queued(f);
		if (have) {
			size_t k = have < cap ? have : cap;
			memcpy(buf, f->in.data + f->in_off, k);
			f->in_off += k;
			if (f->in_off == f->in.len) {
				sg_buf_reset(&f->in);
				f->in_off = 0;
			}
			*n = k;
			return SG_OK;
		}
		if (f->ended)
			return sg_fail(err, errlen, SG_ERR_PROTO, "%s", f->reason);
		if (!live(s))
			return dead_err(s, err, errlen);
		long left = (long)(end - sg_mono_ms());
		/* nothing queued: what this pump reads for the flow lands in buf directly (a
		 * zero-byte receive leaves it to the flow's queue, as a receive without a buffer)
		 */
		s->rx_flow = cap ? f : NULL;
		s->rx_buf = buf;
		s->rx_cap = cap;
		s->rx_got = 0;
		pump(s, left > 0 ? left : 0);
		/* no receive waits any more: reads outside a receive (sends, attach, AUTH) must
		 * not stop at the end of a frame for it */
		size_t got = s->rx_got;
		s->rx_flow = NULL;
		s->rx_buf = NULL;
		s->rx_cap = s->rx_got = 0;
		if (got) {
			*n = got;
			return SG_OK;
		}
		if (left <= 0 && !queued(f) && !f->ended && live(s))
			return sg_fail(err, errlen, SG_ERR_TIMEOUT, "no data within %ld ms",
			               timeout_ms);
	}
}

sg_err sg_sddc_reauth(struct sg_sddc *s, const char *token, char *err, size_t errlen)
{
	char *t = strdup(token);
	if (!t)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	OPENSSL_cleanse(s->token, strlen(s->token));
	free(s->token);
	s->token = t;
	for (unsigned i = 0; i < s->n; i++) {
		if (s->ch[i].dead)
			continue;
		s->ch[i].authed = 0;
		if (queue_frame(&s->ch[i], SG_SDD_AUTH, NULL, 0, t, strlen(t)))
			return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	return wait_auth(s, 0, err, errlen);
}

sg_err sg_sddc_send_raw(struct sg_sddc *s, const void *p, size_t n, char *err, size_t errlen)
{
	if (s->ch[0].dead)
		return dead_err(s, err, errlen);
	out_starts(&s->ch[0]);
	if (out_append(&s->ch[0], p, n))
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	int64_t end = sg_mono_ms() + s->timeout_ms;
	while (!s->ch[0].dead && chan_pending(&s->ch[0]) && sg_mono_ms() < end)
		pump(s, 100);
	if (s->ch[0].dead)
		return dead_err(s, err, errlen);
	if (chan_pending(&s->ch[0]))
		return sg_fail(err, errlen, SG_ERR_TIMEOUT,
		               "the SEALDD server took no data for %ld ms", s->timeout_ms);
	return SG_OK;
}

size_t sg_sddc_queued(const struct sg_sddc *s, const char *flow_id)
{
	for (const struct cflow *f = s->flows; f; f = f->next)
		if (!strcmp(f->text, flow_id))
			return queued(f);
	return 0;
}

size_t sg_sddc_out_memory(const struct sg_sddc *s)
{
	return s->ch[0].out.cap + s->ch[1].out.cap;
}

unsigned long long sg_sddc_duplicates(const struct sg_sddc *s)
{
	return s->dups;
}

void sg_sddc_close(struct sg_sddc *s)
{
	if (!s)
		return;
	/* what is still queued goes out first (bounded by the timeout) */
	int64_t end = sg_mono_ms() + s->timeout_ms;
	while (s->ctx && live(s) && max_out(s) && sg_mono_ms() < end)
		pump(s, 100);
	for (unsigned i = 0; i < 2; i++) {
		struct cchan *c = &s->ch[i];
		if (c->ssl) {
			if (!c->dead && SSL_shutdown(c->ssl) >= 0)
				BIO_flush(SSL_get_wbio(c->ssl)); /* close_notify, best effort */
			c->dead = 1;
			SSL_free(c->ssl);
			c->ssl = NULL;
		}
		if (c->fd >= 0)
			close(c->fd);
		sg_buf_wipe(&c->out); /* held the AUTH frame */
		sg_buf_free(&c->fb);
	}
	while (s->flows) {
		struct cflow *f = s->flows;
		s->flows = f->next;
		sg_buf_free(&f->in);
		free(f);
	}
	if (s->token) {
		OPENSSL_cleanse(s->token, strlen(s->token));
		free(s->token);
	}
	if (s->ctx)
		SSL_CTX_free(s->ctx);
	free(s);
}

/* ---- SEALDD-E: where a relocated flow went (separate from the data path) ---- */

int sg_sddc_relocated_to(const char *reason, char *host, size_t hostlen, unsigned *port)
{
	static const char code[] = "FLOW_RELOCATED: ";
	const char *p = reason ? strstr(reason, code) : NULL;
	if (!p || !hostlen)
		return 0;
	p += sizeof code - 1;
	const char *hs = p, *he, *colon;
	if (*p == '[') { /* [v6]:port */
		hs = p + 1;
		he = strchr(hs, ']');
		if (!he || he[1] != ':')
			return 0;
		colon = he + 1;
	} else {
		colon = NULL; /* the last ':' of the first word */
		for (const char *q = p; *q && *q != ' '; q++)
			if (*q == ':')
				colon = q;
		if (!colon)
			return 0;
		he = colon;
	}
	char *end;
	long v = strtol(colon + 1, &end, 10);
	size_t n = (size_t)(he - hs);
	if (end == colon + 1 || (*end && *end != ' ') || v < 1 || v > 65535 || n == 0 ||
	    n >= hostlen)
		return 0;
	memcpy(host, hs, n);
	host[n] = '\0';
	*port = (unsigned)v;
	return 1;
}
