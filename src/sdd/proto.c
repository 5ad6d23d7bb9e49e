/* sdd/proto.c: SEALDD-UU frame codec, sddFlowId text form, duplicate elimination, the flow
 * table, the TS 29.548 schema checks and the notification queue (see proto.h). */
#include "sdd/proto.h"

#include "base/b64.h"
#include "base/rand.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- frames ---- */

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

const char *sg_sdd_perr_str(int perr)
{
	switch (perr) {
	case SG_SDD_PERR_VERSION:
		return "unknown frame version";
	case SG_SDD_PERR_TYPE:
		return "unknown frame type";
	case SG_SDD_PERR_RESERVED:
		return "reserved header bits set";
	case SG_SDD_PERR_TOO_LARGE:
		return "frame larger than allowed";
	case SG_SDD_PERR_FLOW:
		return "flow id missing or misplaced";
	default:
		return "malformed frame";
	}
}

int sg_sdd_flow_is_zero(const uint8_t flow[SG_SDD_FLOW_ID_LEN])
{
	uint8_t acc = 0;
	for (size_t i = 0; i < SG_SDD_FLOW_ID_LEN; i++)
		acc |= flow[i];
	return acc == 0;
}

void sg_sdd_frame_header(uint8_t hdr[SG_SDD_HDR_LEN], uint8_t type, uint32_t len, uint64_t seq,
                         const uint8_t *flow)
{
	hdr[0] = SG_SDD_VERSION;
	hdr[1] = type;
	hdr[2] = hdr[3] = 0;
	put32(hdr + 4, len);
	put64(hdr + 8, seq);
	if (flow)
		memcpy(hdr + 16, flow, SG_SDD_FLOW_ID_LEN);
	else
		memset(hdr + 16, 0, SG_SDD_FLOW_ID_LEN);
}

int sg_sdd_frame_parse_header(const uint8_t *buf, struct sg_sdd_frame *f)
{
	if (buf[0] != SG_SDD_VERSION)
		return SG_SDD_PERR_VERSION;
	if (buf[1] == 0 || buf[1] > SG_SDD_FTYPE_MAX)
		return SG_SDD_PERR_TYPE;
	if (buf[2] || buf[3])
		return SG_SDD_PERR_RESERVED;
	uint32_t plen = get32(buf + 4);
	uint32_t max = buf[1] == SG_SDD_AUTH ? SG_SDD_MAX_TOKEN : SG_SDD_MAX_PAYLOAD;
	if (plen > max)
		return SG_SDD_PERR_TOO_LARGE;
	int zero = sg_sdd_flow_is_zero(buf + 16);
	switch (buf[1]) {
	case SG_SDD_AUTH:
	case SG_SDD_AUTH_OK:
		if (!zero)
			return SG_SDD_PERR_FLOW;
		break;
	case SG_SDD_ERROR:
		break; /* channel-level (zero) or flow-level */
	default:
		if (zero)
			return SG_SDD_PERR_FLOW;
	}
	f->type = buf[1];
	f->len = plen;
	f->seq = get64(buf + 8);
	memcpy(f->flow, buf + 16, SG_SDD_FLOW_ID_LEN);
	f->payload = NULL;
	return 0;
}

int sg_sdd_frame_parse(const uint8_t *buf, size_t len, struct sg_sdd_frame *f)
{
	if (len < SG_SDD_HDR_LEN)
		return 0;
	struct sg_sdd_frame h;
	int r = sg_sdd_frame_parse_header(buf, &h);
	if (r < 0)
		return r;
	if (len < SG_SDD_HDR_LEN + (size_t)h.len)
		return 0;
	*f = h;
	f->payload = buf + SG_SDD_HDR_LEN;
	return (int)(SG_SDD_HDR_LEN + h.len);
}

void sg_sdd_flow_to_text(const uint8_t flow[SG_SDD_FLOW_ID_LEN], char out[SG_SDD_FLOW_TEXT_LEN + 1])
{
	sg_b64url_encode(flow, SG_SDD_FLOW_ID_LEN, out);
}

int sg_sdd_flow_from_text(const char *text, uint8_t flow[SG_SDD_FLOW_ID_LEN])
{
	size_t n = 0;
	if (!text || strlen(text) != SG_SDD_FLOW_TEXT_LEN)
		return -1;
	if (sg_b64url_decode(text, SG_SDD_FLOW_TEXT_LEN, flow, SG_SDD_FLOW_ID_LEN, &n) != SG_OK ||
	    n != SG_SDD_FLOW_ID_LEN)
		return -1;
	/* canonical form only: the last character carries 2 unused bits that must be zero */
	char back[SG_SDD_FLOW_TEXT_LEN + 1];
	sg_sdd_flow_to_text(flow, back);
	return strcmp(back, text) == 0 ? 0 : -1;
}

/* ---- duplicate elimination ---- */

#define WBITS SG_SDD_WINDOW

static int bit_get(const struct sg_sdd_dedup *d, uint64_t seq)
{
	uint64_t i = seq % WBITS;
	return (int)((d->bits[i / 64] >> (i % 64)) & 1);
}

static void bit_set(struct sg_sdd_dedup *d, uint64_t seq, int v)
{
	uint64_t i = seq % WBITS;
	if (v)
		d->bits[i / 64] |= (uint64_t)1 << (i % 64);
	else
		d->bits[i / 64] &= ~((uint64_t)1 << (i % 64));
}

int sg_sdd_dedup_accept(struct sg_sdd_dedup *d, uint64_t seq)
{
	if (seq == 0)
		return 0;
	if (seq > d->top) {
		uint64_t adv = seq - d->top;
		if (adv >= WBITS) {
			memset(d->bits, 0, sizeof d->bits);
		} else {
			/* counted by the advance, not up to seq: for seq = UINT64_MAX a loop
			 * "s <= seq" never ends (a peer's two frames would stop the data plane) */
			for (uint64_t k = 1; k <= adv; k++)
				bit_set(d, d->top + k, 0);
		}
		d->top = seq;
		bit_set(d, seq, 1);
		return 1;
	}
	if (d->top - seq >= WBITS)
		return 0; /* too old to tell: treated as a duplicate */
	if (bit_get(d, seq))
		return 0;
	bit_set(d, seq, 1);
	return 1;
}

/* ---- flow table ---- */

#define NBUCKETS 4096
#define UBUCKETS 1024

/* The flows of one user (token sub) in the table: the per-user limit (G4) is checked without
 * walking the table, which flow creation does under the lock the data plane also takes. */
struct sg_sdd_user {
	struct sg_sdd_user *next;
	size_t live; /* not released: what the limit counts */
	size_t held; /* in the table, released ones too: the entry goes with the last */
	char sub[];
};

struct sg_sdd_flowtab {
	struct sg_sdd_flow *b[NBUCKETS];
	struct sg_sdd_user *u[UBUCKETS];
	size_t n, max_total, max_per_user;
};

/* FNV-1a of a string: the buckets of the per-user counts and of the notification owners */
static uint32_t str_hash(const char *str)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)str; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static size_t ubucket(const char *sub)
{
	return str_hash(sub) % UBUCKETS;
}

static struct sg_sdd_user **user_slot(struct sg_sdd_flowtab *t, const char *sub)
{
	struct sg_sdd_user **pp = &t->u[ubucket(sub)];
	while (*pp && strcmp((*pp)->sub, sub) != 0)
		pp = &(*pp)->next;
	return pp;
}

static size_t bucket(const uint8_t *id)
{
	return ((size_t)id[0] << 8 | id[1]) % NBUCKETS;
}

struct sg_sdd_flowtab *sg_sdd_flowtab_new(size_t max_total, size_t max_per_user)
{
	struct sg_sdd_flowtab *t = calloc(1, sizeof *t);
	if (t) {
		t->max_total = max_total;
		t->max_per_user = max_per_user;
	}
	return t;
}

static void flow_free(struct sg_sdd_flow *f)
{
	free(f->sub);
	free(f->val_service_id);
	free(f->end_reason);
	OPENSSL_cleanse(f->id, sizeof f->id);
	free(f);
}

void sg_sdd_flowtab_free(struct sg_sdd_flowtab *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < NBUCKETS; i++)
		while (t->b[i]) {
			struct sg_sdd_flow *f = t->b[i];
			t->b[i] = f->next;
			flow_free(f);
		}
	for (size_t i = 0; i < UBUCKETS; i++)
		while (t->u[i]) {
			struct sg_sdd_user *u = t->u[i];
			t->u[i] = u->next;
			free(u);
		}
	free(t);
}

void sg_sdd_flowtab_release(struct sg_sdd_flowtab *t, struct sg_sdd_flow *f)
{
	(void)t;
	if (!f->released) {
		f->released = 1;
		f->user->live--;
	}
}

/* One flow of u left the table: the entry goes with the last. */
static void user_drop(struct sg_sdd_flowtab *t, struct sg_sdd_user *u)
{
	if (--u->held)
		return;
	for (struct sg_sdd_user **pp = &t->u[ubucket(u->sub)]; *pp; pp = &(*pp)->next)
		if (*pp == u) {
			*pp = u->next;
			free(u);
			return;
		}
}

/* Both adds: id NULL draws a fresh one. */
static struct sg_sdd_flow *flowtab_insert(struct sg_sdd_flowtab *t, const uint8_t *id,
                                          const char *sub, const char *val_service_id, int urllc,
                                          int64_t now_ms, unsigned lifetime_s, const char **why)
{
	*why = "limit";
	if (t->n >= t->max_total)
		return NULL;
	struct sg_sdd_user **up = user_slot(t, sub);
	if (*up && (*up)->live >= t->max_per_user)
		return NULL;
	*why = "nomem";
	size_t sl = strlen(sub) + 1;
	if (!*up && (*up = calloc(1, sizeof **up + sl)))
		memcpy((*up)->sub, sub, sl);
	struct sg_sdd_flow *f = *up ? calloc(1, sizeof *f) : NULL;
	if (!f) {
		if (*up && !(*up)->held) {
			free(*up);
			*up = NULL;
		}
		return NULL;
	}
	f->user = *up;
	f->user->held++;
	f->user->live++;
	f->sub = strdup(sub);
	f->val_service_id = strdup(val_service_id);
	if (!f->sub || !f->val_service_id)
		goto fail;
	if (id) {
		memcpy(f->id, id, SG_SDD_FLOW_ID_LEN);
	} else {
		/* 128 bits from the DRBG; a collision with a live flow (2^-128) is simply redrawn
		 */
		do {
			if (sg_random_bytes(f->id, sizeof f->id) != SG_OK)
				goto fail;
		} while (sg_sdd_flow_is_zero(f->id) || sg_sdd_flowtab_find(t, f->id, NULL));
	}
	f->urllc = urllc;
	f->created_ms = now_ms;
	f->expires_ms = now_ms + (int64_t)lifetime_s * 1000;
	size_t b = bucket(f->id);
	f->next = t->b[b];
	t->b[b] = f;
	t->n++;
	*why = NULL;
	return f;
fail:
	sg_sdd_flowtab_release(t, f);
	user_drop(t, f->user);
	flow_free(f);
	return NULL;
}

struct sg_sdd_flow *sg_sdd_flowtab_add(struct sg_sdd_flowtab *t, const char *sub,
                                       const char *val_service_id, int urllc, int64_t now_ms,
                                       unsigned lifetime_s, const char **why)
{
	return flowtab_insert(t, NULL, sub, val_service_id, urllc, now_ms, lifetime_s, why);
}

struct sg_sdd_flow *sg_sdd_flowtab_add_id(struct sg_sdd_flowtab *t,
                                          const uint8_t id[SG_SDD_FLOW_ID_LEN], const char *sub,
                                          const char *val_service_id, int urllc, int64_t now_ms,
                                          unsigned lifetime_s, const char **why)
{
	*why = "nomem";
	if (sg_sdd_flow_is_zero(id))
		return NULL;
	*why = "exists";
	for (struct sg_sdd_flow *f = t->b[bucket(id)]; f; f = f->next)
		if (CRYPTO_memcmp(f->id, id, SG_SDD_FLOW_ID_LEN) == 0)
			return NULL;
	return flowtab_insert(t, id, sub, val_service_id, urllc, now_ms, lifetime_s, why);
}

struct sg_sdd_flow *sg_sdd_flowtab_find(struct sg_sdd_flowtab *t, const uint8_t *id,
                                        const char *sub)
{
	for (struct sg_sdd_flow *f = t->b[bucket(id)]; f; f = f->next) {
		if (CRYPTO_memcmp(f->id, id, SG_SDD_FLOW_ID_LEN) != 0)
			continue;
		if (f->released || (sub && strcmp(f->sub, sub) != 0))
			return NULL;
		return f;
	}
	return NULL;
}

void sg_sdd_flowtab_remove(struct sg_sdd_flowtab *t, struct sg_sdd_flow *f)
{
	for (struct sg_sdd_flow **pp = &t->b[bucket(f->id)]; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			t->n--;
			sg_sdd_flowtab_release(t, f);
			user_drop(t, f->user);
			flow_free(f);
			return;
		}
}

size_t sg_sdd_flowtab_expire(struct sg_sdd_flowtab *t, int64_t now_ms)
{
	size_t n = 0;
	for (size_t i = 0; i < NBUCKETS; i++)
		for (struct sg_sdd_flow *f = t->b[i]; f; f = f->next)
			if (!f->released && f->expires_ms <= now_ms) {
				sg_sdd_flowtab_release(t, f);
				n++;
			}
	return n;
}

size_t sg_sdd_flowtab_count(const struct sg_sdd_flowtab *t)
{
	return t->n;
}

void sg_sdd_flowtab_each(struct sg_sdd_flowtab *t, void (*fn)(struct sg_sdd_flow *, void *),
                         void *arg)
{
	for (size_t i = 0; i < NBUCKETS; i++)
		for (struct sg_sdd_flow *f = t->b[i], *n; f; f = n) {
			n = f->next;
			fn(f, arg);
		}
}

/* ---- TS 29.548 schemas ---- */

static void bad(struct sg_sdd_check *chk, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bad(struct sg_sdd_check *chk, const char *param, const char *fmt, ...)
{
	if (chk->n < SG_SDD_MAX_INVALID) {
		struct sg_sdd_invalid *v = &chk->v[chk->n];
		snprintf(v->param, sizeof v->param, "%s", param);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(v->reason, sizeof v->reason, fmt, ap);
		va_end(ap);
	}
	chk->n++;
}

/* The OpenAPI patterns (TS 29.571 / TS 29.122), as POSIX EREs (\d written [0-9]). */
enum { RX_IPV4, RX_IPV6A, RX_IPV6B, RX_SUPPFEAT, RX_BITRATE, RX_PER, RX_N };
static const char *const RX_SRC[RX_N] = {
    "^(([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])\\.){3}"
    "([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$",
    "^((:|(0?|([1-9a-f][0-9a-f]{0,3}))):)((0?|([1-9a-f][0-9a-f]{0,3})):){0,6}"
    "(:|(0?|([1-9a-f][0-9a-f]{0,3})))$",
    "^((([^:]+:){7}([^:]+))|((([^:]+:)*[^:]+)?::(([^:]+:)*[^:]+)?))$",
    "^[A-Fa-f0-9]*$",
    "^[0-9]+(\\.[0-9]+)? (bps|Kbps|Mbps|Gbps|Tbps)$",
    "^([0-9]E-[0-9])$",
};
static regex_t rx[RX_N];
static int rx_ok;
static pthread_once_t rx_once = PTHREAD_ONCE_INIT;

static void rx_init(void)
{
	rx_ok = 1;
	for (int i = 0; i < RX_N; i++)
		if (regcomp(&rx[i], RX_SRC[i], REG_EXTENDED | REG_NOSUB) != 0)
			rx_ok = 0;
}

static int match(int which, const char *s)
{
	pthread_once(&rx_once, rx_init);
	return rx_ok && regexec(&rx[which], s, 0, NULL, 0) == 0;
}

static int is_ipv4(const char *s)
{
	return match(RX_IPV4, s);
}

static int is_ipv6(const char *s)
{
	return match(RX_IPV6A, s) && match(RX_IPV6B, s);
}

static void want_string(struct sg_sdd_check *chk, const json_t *v, const char *param)
{
	if (v && !json_is_string(v))
		bad(chk, param, "must be a string");
}

static void want_uint(struct sg_sdd_check *chk, const json_t *v, const char *param, json_int_t min,
                      json_int_t max)
{
	if (!v)
		return;
	if (!json_is_integer(v))
		bad(chk, param, "must be an integer");
	else if (json_integer_value(v) < min || json_integer_value(v) > max)
		bad(chk, param, "must be from %lld to %lld", (long long)min, (long long)max);
}

static void want_pattern(struct sg_sdd_check *chk, const json_t *v, const char *param, int which,
                         const char *what)
{
	if (!v)
		return;
	if (!json_is_string(v))
		bad(chk, param, "must be a string");
	else if (!match(which, json_string_value(v)))
		bad(chk, param, "must be %s", what);
}

/* TS 29.549 ValTargetUe: oneOf valUserId | valUeId */
static void check_target_ue(struct sg_sdd_check *chk, const json_t *v, const char *param)
{
	if (!v)
		return;
	if (!json_is_object(v)) {
		bad(chk, param, "must be an object");
		return;
	}
	char p[128];
	const json_t *u = json_object_get(v, "valUserId"), *e = json_object_get(v, "valUeId");
	snprintf(p, sizeof p, "%s/valUserId", param);
	want_string(chk, u, p);
	snprintf(p, sizeof p, "%s/valUeId", param);
	want_string(chk, e, p);
	if ((u != NULL) == (e != NULL))
		bad(chk, param, "must have exactly one of valUserId and valUeId");
}

/* port 0..65535; the host part of a uri (scheme://host:port/..., or host:port) */
static int uri_host_port(const char *uri, struct sg_sdd_target *tgt)
{
	const char *s = strstr(uri, "://");
	s = s ? s + 3 : uri;
	const char *at = strpbrk(s, "@/?#");
	if (at && *at == '@')
		return -1; /* no userinfo */
	const char *hs = s, *he, *pc;
	if (*s == '[') {
		he = strchr(s, ']');
		if (!he)
			return -1;
		hs = s + 1;
		pc = he + 1;
	} else {
		he = s + strcspn(s, ":/?#");
		pc = he;
	}
	size_t hl = (size_t)(he - hs);
	if (hl == 0 || hl >= sizeof tgt->host)
		return -1;
	memcpy(tgt->host, hs, hl);
	tgt->host[hl] = '\0';
	if (*pc == ':') {
		char *end;
		long port = strtol(pc + 1, &end, 10);
		if (end == pc + 1 || port < 1 || port > 65535 || (*end && !strchr("/?#", *end)))
			return -1;
		tgt->port = (unsigned)port;
	}
	return 0;
}

/* TS 29.548 ConnInfo: oneOf required ipv4Addr | ipv6Addr | uri; port */
static void check_conninfo(struct sg_sdd_check *chk, const json_t *v, const char *param,
                           struct sg_sdd_target *tgt)
{
	if (!json_is_object(v)) {
		bad(chk, param, "must be an object");
		return;
	}
	char p[128];
	const json_t *v4 = json_object_get(v, "ipv4Addr"), *v6 = json_object_get(v, "ipv6Addr"),
	             *uri = json_object_get(v, "uri"), *port = json_object_get(v, "port");
	size_t before = chk->n;
	snprintf(p, sizeof p, "%s/ipv4Addr", param);
	want_pattern(chk, v4, p, RX_IPV4, "an IPv4 address in dotted decimal (TS 29.571 Ipv4Addr)");
	snprintf(p, sizeof p, "%s/ipv6Addr", param);
	if (v6 && (!json_is_string(v6) || !is_ipv6(json_string_value(v6))))
		bad(chk, p, "must be an IPv6 address per RFC 5952 clause 4 (TS 29.571 Ipv6Addr)");
	snprintf(p, sizeof p, "%s/uri", param);
	want_string(chk, uri, p);
	snprintf(p, sizeof p, "%s/port", param);
	want_uint(chk, port, p, 0, 65535);
	if ((v4 != NULL) + (v6 != NULL) + (uri != NULL) != 1)
		bad(chk, param, "must have exactly one of ipv4Addr, ipv6Addr and uri");
	if (chk->n != before || !tgt)
		return;
	memset(tgt, 0, sizeof *tgt);
	if (uri) {
		if (uri_host_port(json_string_value(uri), tgt) != 0) {
			snprintf(p, sizeof p, "%s/uri", param);
			bad(chk, p, "must name a host and optionally a port: scheme://host:port");
			return;
		}
	} else {
		snprintf(tgt->host, sizeof tgt->host, "%s", json_string_value(v4 ? v4 : v6));
	}
	if (port)
		tgt->port = (unsigned)json_integer_value(port);
	if (tgt->port == 0) {
		snprintf(p, sizeof p, "%s/port", param);
		bad(chk, p, "a port from 1 to 65535 is needed to reach the endpoint");
	}
}

static void check_bdw(struct sg_sdd_check *chk, const json_t *v, const char *param,
                      const char *const *req, size_t n)
{
	if (!v)
		return;
	if (!json_is_object(v)) {
		bad(chk, param, "must be an object");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char p[128];
		snprintf(p, sizeof p, "%s/%s", param, req[i]);
		const json_t *b = json_object_get(v, req[i]);
		if (!b)
			bad(chk, p, "is required");
		else
			want_uint(chk, b, p, 0, INT64_MAX);
	}
}

static void check_str_array(struct sg_sdd_check *chk, const json_t *v, const char *param)
{
	if (!v)
		return;
	if (!json_is_array(v) || json_array_size(v) == 0) {
		bad(chk, param, "must be an array of at least one string");
		return;
	}
	size_t i;
	const json_t *e;
	json_array_foreach(v, i, e)
	{
		char p[128];
		snprintf(p, sizeof p, "%s/%zu", param, i);
		want_string(chk, e, p);
	}
}

/* TS 29.548 QosInfo; its anyOf holds for every object (the last two alternatives cover every
 * combination the first three do not), so only the member types are checked. */
static void check_qos(struct sg_sdd_check *chk, const json_t *v)
{
	if (!v)
		return;
	if (!json_is_object(v)) {
		bad(chk, "/qosInfo", "must be an object");
		return;
	}
	want_string(chk, json_object_get(v, "qosReference"), "/qosInfo/qosReference");
	check_str_array(chk, json_object_get(v, "altQoSReferences"), "/qosInfo/altQoSReferences");
	const json_t *a = json_object_get(v, "altQosReqs");
	if (!a)
		return;
	if (!json_is_array(a) || json_array_size(a) == 0) {
		bad(chk, "/qosInfo/altQosReqs", "must be an array of at least one object");
		return;
	}
	size_t i;
	const json_t *e;
	json_array_foreach(a, i, e)
	{
		char p[128], q[160];
		snprintf(p, sizeof p, "/qosInfo/altQosReqs/%zu", i);
		if (!json_is_object(e)) {
			bad(chk, p, "must be an object");
			continue;
		}
		const json_t *ref = json_object_get(e, "altQosParamSetRef");
		snprintf(q, sizeof q, "%s/altQosParamSetRef", p);
		if (!ref)
			bad(chk, q, "is required");
		want_string(chk, ref, q);
		snprintf(q, sizeof q, "%s/gbrUl", p);
		want_pattern(chk, json_object_get(e, "gbrUl"), q, RX_BITRATE,
		             "a TS 29.571 BitRate");
		snprintf(q, sizeof q, "%s/gbrDl", p);
		want_pattern(chk, json_object_get(e, "gbrDl"), q, RX_BITRATE,
		             "a TS 29.571 BitRate");
		snprintf(q, sizeof q, "%s/pdb", p);
		want_uint(chk, json_object_get(e, "pdb"), q, 1, INT64_MAX);
		snprintf(q, sizeof q, "%s/per", p);
		want_pattern(chk, json_object_get(e, "per"), q, RX_PER,
		             "a TS 29.571 PacketErrRate");
	}
}

int sg_sdd_transreq_validate(const json_t *req, struct sg_sdd_target *tgt, struct sg_sdd_check *chk)
{
	memset(chk, 0, sizeof *chk);
	if (!json_is_object(req)) {
		bad(chk, "/", "TransReq must be a JSON object");
		return -1;
	}
	const json_t *svc = json_object_get(req, "valServiceId");
	want_string(chk, svc, "/valServiceId");
	check_target_ue(chk, json_object_get(req, "valTargetId"), "/valTargetId");
	const json_t *ci = json_object_get(req, "valServerConnInfo");
	if (!ci)
		bad(chk, "/valServerConnInfo", "is required");
	else
		check_conninfo(chk, ci, "/valServerConnInfo", tgt);
	check_qos(chk, json_object_get(req, "qosInfo"));
	static const char *const SRV[] = {"totalUlBdw", "totalDlBdw"};
	static const char *const USR[] = {"minUlBdw", "minDlBdw", "maxUlBdw", "maxDlBdw"};
	check_bdw(chk, json_object_get(req, "valServerBdw"), "/valServerBdw", SRV, 2);
	check_bdw(chk, json_object_get(req, "valUsersBdw"), "/valUsersBdw", USR, 4);
	want_pattern(chk, json_object_get(req, "suppFeat"), "/suppFeat", RX_SUPPFEAT,
	             "a hexadecimal string (TS 29.571 SupportedFeatures)");
	/* sealguard: flows are mapped from the VAL service id (TS 23.433; D2), so it is needed */
	if (!svc)
		bad(chk, "/valServiceId",
		    "is required by this SEALDD server: flows are mapped from it");
	else if (json_is_string(svc) && json_string_length(svc) == 0)
		bad(chk, "/valServiceId", "must not be empty");
	return chk->n ? -1 : 0;
}

/* TS 29.548 ConnStatusSubsc.events: minItems 1; ConnStatusEvent is anyOf(enum ESTABLISHED,
 * RELEASED; string), so unknown strings are accepted (forward compatibility), but bounded:
 * at most SG_SDD_SUBSC_MAX_EVENTS entries, each at most SG_SDD_SUBSC_MAX_EVENT_LEN bytes, none
 * twice. Every flow event scans these arrays under the server's lock (api.c). */
static void check_events(struct sg_sdd_check *chk, const json_t *v)
{
	if (!json_is_array(v) || json_array_size(v) == 0) {
		bad(chk, "/events", "must be an array of at least one string");
		return;
	}
	size_t n = json_array_size(v);
	if (n > SG_SDD_SUBSC_MAX_EVENTS) {
		/* not looked at one by one: the count alone refuses it */
		bad(chk, "/events", "must have at most %d entries (has %zu)",
		    SG_SDD_SUBSC_MAX_EVENTS, n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(v, i);
		char p[128];
		snprintf(p, sizeof p, "/events/%zu", i);
		if (!json_is_string(e)) {
			bad(chk, p, "must be a string");
			continue;
		}
		if (json_string_length(e) > SG_SDD_SUBSC_MAX_EVENT_LEN) {
			bad(chk, p, "must be at most %d bytes long (a ConnStatusEvent)",
			    SG_SDD_SUBSC_MAX_EVENT_LEN);
			continue;
		}
		for (size_t k = 0; k < i; k++)
			if (json_equal(e, json_array_get(v, k))) {
				bad(chk, p, "repeats /events/%zu: each event at most once", k);
				break;
			}
	}
}

json_t *sg_sdd_subsc_canon(const json_t *in)
{
	static const char *const K[] = {"events",   "valServiceId", "valTgtUe", "valServerConnInfo",
	                                "notifUri", "suppFeat"};
	json_t *o = json_object();
	for (size_t i = 0; o && i < sizeof K / sizeof K[0]; i++) {
		json_t *v = json_object_get(in, K[i]);
		if (v && json_object_set(o, K[i], v) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

struct dump_budget {
	size_t n, max;
};

/* json_dump_callback sink that only counts, and stops the dump once over the budget: measuring
 * an oversized subscription costs at most the budget, whatever its size. */
static int dump_count(const char *buf, size_t size, void *data)
{
	(void)buf;
	struct dump_budget *b = data;
	b->n += size;
	return b->n > b->max ? -1 : 0;
}

int sg_sdd_subsc_validate(const json_t *s, struct sg_sdd_check *chk)
{
	memset(chk, 0, sizeof *chk);
	if (!json_is_object(s)) {
		bad(chk, "/", "ConnStatusSubsc must be a JSON object");
		return -1;
	}
	const json_t *ev = json_object_get(s, "events");
	if (!ev)
		bad(chk, "/events", "is required");
	else
		check_events(chk, ev);
	want_string(chk, json_object_get(s, "valServiceId"), "/valServiceId");
	check_target_ue(chk, json_object_get(s, "valTgtUe"), "/valTgtUe");
	/* a subscription names the VAL server's endpoint but nothing connects to it: no port
	 * needed, unlike TransReq's */
	const json_t *ci = json_object_get(s, "valServerConnInfo");
	if (!ci)
		bad(chk, "/valServerConnInfo", "is required");
	else
		check_conninfo(chk, ci, "/valServerConnInfo", NULL);
	const json_t *nu = json_object_get(s, "notifUri");
	if (!nu)
		bad(chk, "/notifUri", "is required");
	else if (!json_is_string(nu))
		bad(chk, "/notifUri", "must be a string");
	else if (json_string_length(nu) > SG_SDD_SUBSC_MAX_NOTIF_URI)
		bad(chk, "/notifUri", "must be at most %d bytes long", SG_SDD_SUBSC_MAX_NOTIF_URI);
	else if (strncmp(json_string_value(nu), "https://", 8) != 0)
		bad(chk, "/notifUri", "must be an https URL (notifications go over mutual TLS)");
	want_string(chk, json_object_get(s, "expTime"), "/expTime");
	want_pattern(chk, json_object_get(s, "suppFeat"), "/suppFeat", RX_SUPPFEAT,
	             "a hexadecimal string (TS 29.571 SupportedFeatures)");
	/* the whole of what would be stored and held: valServerConnInfo, valTgtUe, valServiceId
	 * and suppFeat have no bound of their own */
	json_t *canon = sg_sdd_subsc_canon(s);
	struct dump_budget b = {0, SG_SDD_SUBSC_MAX_BYTES};
	if (!canon)
		bad(chk, "/", "could not be measured (out of memory)");
	else if (json_dump_callback(canon, dump_count, &b, JSON_COMPACT | JSON_SORT_KEYS) != 0 ||
	         b.n > b.max)
		bad(chk, "/",
		    "the subscription must take at most %d bytes as compact JSON (this SEALDD "
		    "server's bound)",
		    SG_SDD_SUBSC_MAX_BYTES);
	json_decref(canon);
	return chk->n ? -1 : 0;
}

/* TS 29.548 SDD_DDContext: DdContext, SddUuContext, SddSContext, TranspLayerContext. */
int sg_sdd_ddcontext_validate(const json_t *ctx, const char *param, struct sg_sdd_target *tgt,
                              struct sg_sdd_check *chk)
{
	size_t before = chk->n;
	char p[128];
	if (!json_is_object(ctx)) {
		bad(chk, param, "must be an object (DdContext)");
		return -1;
	}
	const json_t *uu = json_object_get(ctx, "uuContext"),
	             *sc = json_object_get(ctx, "sContext"),
	             *tl = json_object_get(ctx, "trLayerContext");
	snprintf(p, sizeof p, "%s/uuContext", param);
	if (!json_is_object(uu)) {
		bad(chk, p, uu ? "must be an object (SddUuContext)" : "is required");
	} else {
		static const char *const S[] = {"sddFlowId", "valServiceId", "valServerId"};
		for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
			snprintf(p, sizeof p, "%s/uuContext/%s", param, S[i]);
			want_string(chk, json_object_get(uu, S[i]), p);
		}
		snprintf(p, sizeof p, "%s/uuContext/sddFlowId", param);
		if (!json_object_get(uu, "sddFlowId"))
			bad(chk, p, "is required");
		static const char *const CI[] = {"valServEndPoint", "ddClientConnInfo",
		                                 "ddServConnInfo"};
		for (size_t i = 0; i < sizeof CI / sizeof CI[0]; i++) {
			const json_t *v = json_object_get(uu, CI[i]);
			snprintf(p, sizeof p, "%s/uuContext/%s", param, CI[i]);
			if (v)
				check_conninfo(chk, v, p, NULL);
			else if (i == 0)
				bad(chk, p, "is required");
		}
		snprintf(p, sizeof p, "%s/uuContext/valTgtUe", param);
		check_target_ue(chk, json_object_get(uu, "valTgtUe"), p);
		snprintf(p, sizeof p, "%s/uuContext/comLifetime", param);
		want_uint(chk, json_object_get(uu, "comLifetime"), p, 0, INT64_MAX);
		snprintf(p, sizeof p, "%s/uuContext/pendingTimer", param);
		want_uint(chk, json_object_get(uu, "pendingTimer"), p, 0, INT64_MAX);
		static const char *const USR[] = {"minUlBdw", "minDlBdw", "maxUlBdw", "maxDlBdw"};
		snprintf(p, sizeof p, "%s/uuContext/valUsersBdw", param);
		check_bdw(chk, json_object_get(uu, "valUsersBdw"), p, USR, 4);
	}
	snprintf(p, sizeof p, "%s/sContext", param);
	if (!json_is_object(sc)) {
		bad(chk, p, sc ? "must be an object (SddSContext)" : "is required");
	} else {
		const json_t *vs = json_object_get(sc, "valServerId");
		snprintf(p, sizeof p, "%s/sContext/valServerId", param);
		if (!vs)
			bad(chk, p, "is required");
		want_string(chk, vs, p);
		snprintf(p, sizeof p, "%s/sContext/valServiceId", param);
		want_string(chk, json_object_get(sc, "valServiceId"), p);
		snprintf(p, sizeof p, "%s/sContext/valTargetId", param);
		check_target_ue(chk, json_object_get(sc, "valTargetId"), p);
		const json_t *ci = json_object_get(sc, "valServerConnInfo");
		snprintf(p, sizeof p, "%s/sContext/valServerConnInfo", param);
		if (!ci)
			bad(chk, p, "is required");
		else
			check_conninfo(chk, ci, p, tgt);
		const json_t *dd = json_object_get(sc, "ddServerConnInfo");
		snprintf(p, sizeof p, "%s/sContext/ddServerConnInfo", param);
		if (dd)
			check_conninfo(chk, dd, p, NULL);
		const json_t *q = json_object_get(sc, "qosInfo");
		if (q) {
			/* check_qos names its members from the TransReq root: same types */
			struct sg_sdd_check qc = {0};
			check_qos(&qc, q);
			for (size_t i = 0; i < qc.n && i < SG_SDD_MAX_INVALID; i++) {
				snprintf(p, sizeof p, "%s/sContext%.96s", param, qc.v[i].param);
				bad(chk, p, "%s", qc.v[i].reason);
			}
		}
		static const char *const SRV[] = {"totalUlBdw", "totalDlBdw"};
		static const char *const USR[] = {"minUlBdw", "minDlBdw", "maxUlBdw", "maxDlBdw"};
		snprintf(p, sizeof p, "%s/sContext/valServerBdw", param);
		check_bdw(chk, json_object_get(sc, "valServerBdw"), p, SRV, 2);
		snprintf(p, sizeof p, "%s/sContext/valUsersBdw", param);
		check_bdw(chk, json_object_get(sc, "valUsersBdw"), p, USR, 4);
	}
	if (tl) {
		snprintf(p, sizeof p, "%s/trLayerContext", param);
		if (!json_is_object(tl)) {
			bad(chk, p, "must be an object (TranspLayerContext)");
		} else {
			const json_t *tp = json_object_get(tl, "transProtoc");
			snprintf(p, sizeof p, "%s/trLayerContext/transProtoc", param);
			if (!tp)
				bad(chk, p, "is required");
			/* TS 29.558 TransportProtocol: an open string enum */
			want_string(chk, tp, p);
		}
	}
	return chk->n != before ? -1 : 0;
}

json_t *sg_sdd_conninfo(const char *host, unsigned port)
{
	if (is_ipv4(host))
		return json_pack("{s:s, s:I}", "ipv4Addr", host, "port", (json_int_t)port);
	if (is_ipv6(host))
		return json_pack("{s:s, s:I}", "ipv6Addr", host, "port", (json_int_t)port);
	char uri[300];
	snprintf(uri, sizeof uri, "sealdd://%s:%u", host, port);
	return json_pack("{s:s, s:I}", "uri", uri, "port", (json_int_t)port);
}

static const char *reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 409:
		return "Conflict";
	case 429:
		return "Too Many Requests";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

json_t *sg_sdd_problem(int status, const char *cause, const char *detail,
                       const struct sg_sdd_check *chk)
{
	json_t *p = json_pack("{s:s, s:i, s:s}", "title", reason(status), "status", status,
	                      "detail", detail ? detail : "");
	if (!p)
		return NULL;
	if (cause)
		json_object_set_new(p, "cause", json_string(cause));
	if (chk && chk->n) {
		json_t *a = json_array();
		size_t n = chk->n < SG_SDD_MAX_INVALID ? chk->n : SG_SDD_MAX_INVALID;
		for (size_t i = 0; a && i < n; i++)
			json_array_append_new(a, json_pack("{s:s, s:s}", "param", chk->v[i].param,
			                                   "reason", chk->v[i].reason));
		if (a)
			json_object_set_new(p, "invalidParams", a);
	}
	return p;
}

/* ---- connection status notification queue ---- */

struct sg_sdd_nowner {
	struct sg_sdd_nowner *next;       /* hash chain */
	struct sg_sdd_nowner *rnext;      /* its ready list, or the wait list */
	struct sg_sdd_notif *head, *tail; /* queued, not in delivery, oldest first */
	size_t n;                         /* queued + in delivery */
	int busy;                         /* one of its notifications is in delivery */
	int suspect;                      /* its last try got no answer */
	int busy_suspect;                 /* in delivery, counted in q->suspect_busy */
	int64_t due_ms;                   /* > 0: on the wait list until then (monotonic) */
	uint64_t since;                   /* when it became ready (q->seq), for fairness */
	size_t bucket;
	char id[]; /* the VAL server's client_id */
};

static size_t owner_bucket(const char *id)
{
	return str_hash(id) % SG_SDD_NOTIF_OWNER_BUCKETS;
}

static struct sg_sdd_nowner *owner_find(const struct sg_sdd_notifq *q, const char *id, size_t b)
{
	for (struct sg_sdd_nowner *o = q->b[b]; o; o = o->next)
		if (strcmp(o->id, id) == 0)
			return o;
	return NULL;
}

/* o has queued notifications and none in delivery: it waits behind the ready ones of its
 * lane (suspect or not). */
static void ready_append(struct sg_sdd_notifq *q, struct sg_sdd_nowner *o)
{
	struct sg_sdd_nowner **head = o->suspect ? &q->sready : &q->ready;
	struct sg_sdd_nowner **tail = o->suspect ? &q->sready_tail : &q->ready_tail;
	o->rnext = NULL;
	o->since = q->seq++;
	if (*tail)
		(*tail)->rnext = o;
	else
		*head = o;
	*tail = o;
}

void sg_sdd_notifq_init(struct sg_sdd_notifq *q, size_t max_total, size_t max_per_owner,
                        size_t max_suspect_busy)
{
	memset(q, 0, sizeof *q);
	q->max_total = max_total;
	q->max_per_owner = max_per_owner;
	q->max_suspect_busy = max_suspect_busy;
}

/* When the queue is full, the suspect owner whose notifications may make room for an owner that
 * is not suspect: the one with the most queued (not in delivery), at least two, so that its
 * oldest and its place in the lists stay; ties go to the smallest id. NULL when none. */
static struct sg_sdd_nowner *evictable(const struct sg_sdd_notifq *q)
{
	struct sg_sdd_nowner *best = NULL;
	size_t most = 0;
	for (size_t b = 0; b < SG_SDD_NOTIF_OWNER_BUCKETS; b++)
		for (struct sg_sdd_nowner *o = q->b[b]; o; o = o->next) {
			size_t queued = o->n - (o->busy ? 1 : 0);
			if (!o->suspect || queued < 2)
				continue;
			if (!best || queued > most ||
			    (queued == most && strcmp(o->id, best->id) < 0)) {
				best = o;
				most = queued;
			}
		}
	return best;
}

/* Whether a notification for o (NULL: an owner with none) may be queued: 0 yes, else the bound
 * that refuses it. A full queue still takes one for an owner that is not suspect when a suspect
 * owner's newest can make room (*victim), so VAL servers whose endpoints do not answer cannot
 * keep the others' notifications out for as long as their retries last. */
static const char *notifq_refuses(const struct sg_sdd_notifq *q, const struct sg_sdd_nowner *o,
                                  struct sg_sdd_nowner **victim)
{
	*victim = NULL;
	if (q->n >= q->max_total) {
		if ((o && (o->suspect || o->n >= q->max_per_owner)) || !(*victim = evictable(q)))
			return "max_total";
		return NULL;
	}
	return o && o->n >= q->max_per_owner ? "max_per_owner" : NULL;
}

int sg_sdd_notifq_admits(const struct sg_sdd_notifq *q, const char *owner)
{
	struct sg_sdd_nowner *victim;
	return !notifq_refuses(q, owner_find(q, owner, owner_bucket(owner)), &victim);
}

int sg_sdd_notifq_push(struct sg_sdd_notifq *q, const char *owner, const char *sid, char *body,
                       const char **why)
{
	size_t b = owner_bucket(owner);
	struct sg_sdd_nowner *o = owner_find(q, owner, b), *victim;
	if ((*why = notifq_refuses(q, o, &victim)))
		return 1;
	struct sg_sdd_notif *x = calloc(1, sizeof *x);
	if (!x)
		return -1;
	if (victim) { /* its newest goes (not its head: its place in the lists stays) */
		struct sg_sdd_notif *p = victim->head;
		while (p->next != victim->tail)
			p = p->next;
		free(victim->tail->body);
		free(victim->tail);
		p->next = NULL;
		victim->tail = p;
		victim->n--;
		q->n--;
		q->evicted++;
		q->evicted_owner = victim->id;
	}
	if (!o) {
		size_t len = strlen(owner);
		if (!(o = calloc(1, sizeof *o + len + 1))) {
			free(x);
			return -1;
		}
		memcpy(o->id, owner, len + 1);
		o->bucket = b;
		o->next = q->b[b];
		q->b[b] = o;
	}
	x->owner = o;
	x->body = body;
	snprintf(x->sid, sizeof x->sid, "%s", sid);
	if (o->tail)
		o->tail->next = x;
	else
		o->head = x;
	o->tail = x;
	o->n++;
	q->n++;
	if (!o->busy && !o->due_ms && o->head == x)
		ready_append(q, o);
	return 0;
}

static struct sg_sdd_nowner *lane_pop(struct sg_sdd_nowner **head, struct sg_sdd_nowner **tail)
{
	struct sg_sdd_nowner *o = *head;
	if (!(*head = o->rnext))
		*tail = NULL;
	o->rnext = NULL;
	return o;
}

struct sg_sdd_notif *sg_sdd_notifq_take(struct sg_sdd_notifq *q, int64_t now_ms)
{
	while (q->wait && q->wait->due_ms <= now_ms) { /* due retries rejoin the round robin */
		struct sg_sdd_nowner *w = q->wait;
		q->wait = w->rnext;
		w->due_ms = 0;
		ready_append(q, w);
	}
	/* the owner that waited longest, but suspect owners only while fewer than
	 * max_suspect_busy of them are in delivery: the rest of the workers stay for the others */
	struct sg_sdd_nowner *g = q->ready;
	struct sg_sdd_nowner *b = q->suspect_busy < q->max_suspect_busy ? q->sready : NULL;
	struct sg_sdd_nowner *o;
	if (b && (!g || b->since < g->since)) {
		o = lane_pop(&q->sready, &q->sready_tail);
		o->busy_suspect = 1;
		q->suspect_busy++;
	} else if (g) {
		o = lane_pop(&q->ready, &q->ready_tail);
	} else {
		return NULL;
	}
	struct sg_sdd_notif *x = o->head;
	if (!(o->head = x->next))
		o->tail = NULL;
	x->next = NULL;
	o->busy = 1;
	return x;
}

int64_t sg_sdd_notifq_next_due(const struct sg_sdd_notifq *q)
{
	return q->wait ? q->wait->due_ms : -1;
}

const char *sg_sdd_notif_owner(const struct sg_sdd_notif *n)
{
	return n->owner->id;
}

/* n's try is over: its owner is no longer in delivery. */
static void owner_idle(struct sg_sdd_notifq *q, struct sg_sdd_nowner *o)
{
	o->busy = 0;
	if (o->busy_suspect) {
		o->busy_suspect = 0;
		q->suspect_busy--;
	}
}

static void owner_unlink(struct sg_sdd_notifq *q, struct sg_sdd_nowner *o)
{
	for (struct sg_sdd_nowner **pp = &q->b[o->bucket]; *pp; pp = &(*pp)->next)
		if (*pp == o) {
			*pp = o->next;
			break;
		}
	free(o);
}

void sg_sdd_notifq_done(struct sg_sdd_notifq *q, struct sg_sdd_notif *n, int answered)
{
	struct sg_sdd_nowner *o = n->owner;
	free(n->body);
	free(n);
	owner_idle(q, o);
	if (answered >= 0)
		o->suspect = !answered;
	o->n--;
	q->n--;
	if (o->head)
		ready_append(q, o); /* behind the owners that waited meanwhile: round robin */
	else if (!o->suspect)
		owner_unlink(q, o); /* nothing left (n is 0), nothing to remember */
}

void sg_sdd_notifq_retry(struct sg_sdd_notifq *q, struct sg_sdd_notif *n, int64_t due_ms)
{
	struct sg_sdd_nowner *o = n->owner;
	owner_idle(q, o);
	o->suspect = 1;
	if (!(n->next = o->head))
		o->tail = n;
	o->head = n;
	o->due_ms = due_ms > 0 ? due_ms : 1;
	struct sg_sdd_nowner **pp = &q->wait; /* behind those due no later: FIFO among equals */
	while (*pp && (*pp)->due_ms <= o->due_ms)
		pp = &(*pp)->rnext;
	o->rnext = *pp;
	*pp = o;
}

size_t sg_sdd_notifq_clear(struct sg_sdd_notifq *q)
{
	size_t gone = 0;
	for (size_t i = 0; i < SG_SDD_NOTIF_OWNER_BUCKETS; i++)
		while (q->b[i]) {
			struct sg_sdd_nowner *o = q->b[i];
			q->b[i] = o->next;
			while (o->head) {
				struct sg_sdd_notif *x = o->head;
				o->head = x->next;
				free(x->body);
				free(x);
				gone++;
			}
			free(o);
		}
	q->ready = q->ready_tail = q->sready = q->sready_tail = q->wait = NULL;
	q->n = q->suspect_busy = 0;
	return gone;
}
