/* sdd/proto.h (private to sdd/ and client/sddc): the pure parts of SEALDD (TS 23.433; TS 33.434
 * Rel-18 with G6): the SEALDD-UU user-plane frame codec (docs/sdd-protocol.md), sddFlowId
 * encoding, duplicate elimination by sequence number (URLLC redundant transmission, TS 23.433
 * §9.x), the flow table, the TS 29.548 TransReq / ConnStatusSubsc validation and the connection
 * status notification queue. No I/O here:
 * everything is unit-tested (tests/unit/test_sdd.c). */
#ifndef SG_SDD_PROTO_H
#define SG_SDD_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* ---- frames (docs/sdd-protocol.md §3) ------------------------------------------------- */

#define SG_SDD_VERSION     1
#define SG_SDD_HDR_LEN     32
#define SG_SDD_FLOW_ID_LEN 16          /* 128 random bits: unguessable (RFC 4086) */
#define SG_SDD_MAX_PAYLOAD (64 * 1024) /* larger frames are a protocol error */
#define SG_SDD_MAX_TOKEN   8192        /* AUTH payload bound */

enum sg_sdd_ftype {
	SG_SDD_AUTH = 1,     /* c->s channel: access token (first frame; again to renew) */
	SG_SDD_AUTH_OK = 2,  /* s->c channel: seq = token exp (epoch s) */
	SG_SDD_ATTACH = 3,   /* c->s flow: bind this channel to the flow */
	SG_SDD_ATTACHED = 4, /* s->c flow: relay ready; seq = next uplink seq expected */
	SG_SDD_DATA = 5,     /* both: VAL application data */
	SG_SDD_DETACH = 6,   /* c->s flow: unbind this channel (the flow lives on) */
	SG_SDD_END = 7,      /* s->c flow: the flow ended; payload = reason code */
	SG_SDD_ERROR = 8,    /* s->c: payload = "CODE: text"; zero flow id = channel error */
};
#define SG_SDD_FTYPE_MAX 8

struct sg_sdd_frame {
	uint8_t type;
	uint32_t len; /* payload length */
	uint64_t seq;
	uint8_t flow[SG_SDD_FLOW_ID_LEN];
	const uint8_t *payload; /* points into the parsed buffer */
};

/* Why a frame is refused (negative returns of sg_sdd_frame_parse). */
enum sg_sdd_perr {
	SG_SDD_PERR_VERSION = -1,  /* unknown version */
	SG_SDD_PERR_TYPE = -2,     /* unknown frame type */
	SG_SDD_PERR_RESERVED = -3, /* reserved bits set */
	SG_SDD_PERR_TOO_LARGE = -4,
	SG_SDD_PERR_FLOW = -5, /* flow id zero where one is needed, or set where none is */
};
const char *sg_sdd_perr_str(int perr);

/* Parses one frame from buf: returns the bytes it takes (header + payload), 0 when more bytes
 * are needed, or a negative sg_sdd_perr. The header is checked as soon as it is complete (an
 * oversized length is refused before its payload arrives). */
int sg_sdd_frame_parse(const uint8_t *buf, size_t len, struct sg_sdd_frame *f);
/* Checks a complete 32-byte header alone (the same checks as sg_sdd_frame_parse) and fills f
 * with payload NULL: 0, or a negative sg_sdd_perr. A receiver that streams payloads to their
 * destination (client/sddc.c) judges each frame by it before any payload byte is read. */
int sg_sdd_frame_parse_header(const uint8_t *buf, struct sg_sdd_frame *f);
/* Writes the 32-byte header for a frame; flow may be NULL (zero). */
void sg_sdd_frame_header(uint8_t hdr[SG_SDD_HDR_LEN], uint8_t type, uint32_t len, uint64_t seq,
                         const uint8_t *flow);
int sg_sdd_flow_is_zero(const uint8_t flow[SG_SDD_FLOW_ID_LEN]);

/* sddFlowId as text: base64url without padding, 22 characters. */
#define SG_SDD_FLOW_TEXT_LEN 22
void sg_sdd_flow_to_text(const uint8_t flow[SG_SDD_FLOW_ID_LEN],
                         char out[SG_SDD_FLOW_TEXT_LEN + 1]);
/* 0 on success; -1 unless text is exactly 22 base64url characters of 16 bytes. */
int sg_sdd_flow_from_text(const char *text, uint8_t flow[SG_SDD_FLOW_ID_LEN]);

/* ---- duplicate elimination (RFC 4303 §3.4.3-style sliding window) --------------------- */

#define SG_SDD_WINDOW 1024 /* sequence numbers remembered behind the highest one */

struct sg_sdd_dedup {
	uint64_t top; /* highest accepted (0: none yet) */
	uint64_t bits[SG_SDD_WINDOW / 64];
};
/* 1 when seq is new (and records it), 0 when it is a duplicate or older than the window.
 * seq 0 is never accepted. */
int sg_sdd_dedup_accept(struct sg_sdd_dedup *d, uint64_t seq);

/* ---- flow table ---------------------------------------------------------------------- */

/* The owner-visible parts of a flow; the server hangs its runtime state off `rt`. */
struct sg_sdd_flow {
	uint8_t id[SG_SDD_FLOW_ID_LEN];
	char *sub;            /* the VAL user (token sub) it is bound to */
	char *val_service_id; /* the VAL service */
	int urllc;            /* transType urllc: up to two redundant channels */
	int64_t created_ms, expires_ms;
	int released;     /* release requested or expired: the data plane frees it */
	char *end_reason; /* set with released: what END tells the client ("FLOW_RELOCATED: ..."),
	                   * NULL: FLOW_EXPIRED or FLOW_RELEASED (owned; freed with the flow) */
	void *rt;         /* runtime (data plane) */
	struct sg_sdd_flow *next;
	struct sg_sdd_user *user; /* the table's count of sub's flows (proto.c) */
};

struct sg_sdd_flowtab;
/* max_total / max_per_user bound the table (G4). NULL on allocation failure. */
struct sg_sdd_flowtab *sg_sdd_flowtab_new(size_t max_total, size_t max_per_user);
/* Frees the table and every flow in it (runtime state must be gone). */
void sg_sdd_flowtab_free(struct sg_sdd_flowtab *t);
/* Allocates a flow with a fresh random id for sub and val_service_id; the table owns it.
 * Returns NULL with *why = "limit" or "nomem". */
struct sg_sdd_flow *sg_sdd_flowtab_add(struct sg_sdd_flowtab *t, const char *sub,
                                       const char *val_service_id, int urllc, int64_t now_ms,
                                       unsigned lifetime_s, const char **why);
/* As sg_sdd_flowtab_add, with the given id (SEALDD-E context relocation: the flow keeps its
 * sddFlowId at the target SEALDD server). NULL with *why = "exists" when a flow (live or being
 * freed) has this id, or "limit" / "nomem". */
struct sg_sdd_flow *sg_sdd_flowtab_add_id(struct sg_sdd_flowtab *t,
                                          const uint8_t id[SG_SDD_FLOW_ID_LEN], const char *sub,
                                          const char *val_service_id, int urllc, int64_t now_ms,
                                          unsigned lifetime_s, const char **why);
/* The live (not released) flow with this id whose owner is sub, else NULL: a flow of another
 * user is indistinguishable from a flow that does not exist (no oracle). sub NULL: any owner. */
struct sg_sdd_flow *sg_sdd_flowtab_find(struct sg_sdd_flowtab *t, const uint8_t *id,
                                        const char *sub);
/* Unlinks and frees f (its rt must be gone). */
void sg_sdd_flowtab_remove(struct sg_sdd_flowtab *t, struct sg_sdd_flow *f);
/* Marks f released (release, relocation, end; the data plane frees it): it no longer counts
 * for its user's limit. Only this may set f->released. */
void sg_sdd_flowtab_release(struct sg_sdd_flowtab *t, struct sg_sdd_flow *f);
/* Marks flows whose lifetime ended as released; returns how many it marked. */
size_t sg_sdd_flowtab_expire(struct sg_sdd_flowtab *t, int64_t now_ms);
size_t sg_sdd_flowtab_count(const struct sg_sdd_flowtab *t);
/* Calls fn for every flow (released too); fn may not add or remove. */
void sg_sdd_flowtab_each(struct sg_sdd_flowtab *t, void (*fn)(struct sg_sdd_flow *, void *),
                         void *arg);

/* ---- TS 29.548 schemas --------------------------------------------------------------- */

#define SG_SDD_MAX_INVALID 16
struct sg_sdd_invalid {
	char param[128];
	char reason[160];
};
struct sg_sdd_check {
	struct sg_sdd_invalid v[SG_SDD_MAX_INVALID];
	size_t n;
};

/* Where the relay connects: from a ConnInfo (ipv4Addr | ipv6Addr | uri, with port). */
struct sg_sdd_target {
	char host[256];
	unsigned port;
};

/* Validates a TransReq strictly against TS29548_SDD_Transmission.yaml (types, the ConnInfo
 * oneOf, ValTargetUe oneOf, Ipv4Addr/Ipv6Addr/SupportedFeatures patterns, Port range,
 * Bandwidth minimum, QosInfo arrays), plus what sealguard needs to relay (docs/sdd-protocol.md):
 * valServiceId, and a port for valServerConnInfo (in `port` or in the uri). On success fills
 * tgt and returns 0; else -1 with the problems in chk. */
int sg_sdd_transreq_validate(const json_t *req, struct sg_sdd_target *tgt,
                             struct sg_sdd_check *chk);
/* Bounds on a ConnStatusSubsc (TS 29.548 leaves these sizes open). A subscription is stored
 * and held in memory, and its events are matched under the SEALDD server's lock at every flow
 * event, so its size is bounded (TS 33.434 Rel-18 G6: SEALDD-S is protected as SEAL-S, G4). */
#define SG_SDD_SUBSC_MAX_NOTIF_URI 2048        /* bytes of notifUri */
#define SG_SDD_SUBSC_MAX_EVENTS    8           /* entries of events, all different */
#define SG_SDD_SUBSC_MAX_EVENT_LEN 64          /* bytes of one ConnStatusEvent string */
#define SG_SDD_SUBSC_MAX_BYTES     (16 * 1024) /* the canonical JSON (sg_sdd_subsc_canon) */

/* Validates a ConnStatusSubsc (events minItems 1, ConnStatusEvent strings, valServerConnInfo,
 * notifUri an https URL, valTgtUe, valServiceId, suppFeat; expTime is readOnly and ignored) and
 * the bounds above: notifUri at most SG_SDD_SUBSC_MAX_NOTIF_URI bytes, events at most
 * SG_SDD_SUBSC_MAX_EVENTS different strings of at most SG_SDD_SUBSC_MAX_EVENT_LEN bytes (unknown
 * ConnStatusEvent values are accepted: the enumeration is extensible), and the canonical
 * subscription, compact JSON with sorted keys as it is stored, at most SG_SDD_SUBSC_MAX_BYTES. */
int sg_sdd_subsc_validate(const json_t *s, struct sg_sdd_check *chk);
/* The members of a ConnStatusSubsc that sealguard keeps (events, valServiceId, valTgtUe,
 * valServerConnInfo, notifUri, suppFeat): a new object sharing their values, NULL when out of
 * memory. */
json_t *sg_sdd_subsc_canon(const json_t *in);
/* Validates a TS 29.548 DdContext (SDD_DDContext: uuContext with sddFlowId and valServEndPoint,
 * sContext with valServerId and valServerConnInfo, optional trLayerContext with transProtoc;
 * member types, ConnInfo oneOf, ValTargetUe oneOf, DurationSec, bandwidths, QosInfo) found at
 * JSON pointer `param` (e.g. "/ddContext"). Problems are appended to chk (not reset); tgt gets
 * sContext.valServerConnInfo, which must carry a port. Returns 0 when nothing was added. */
int sg_sdd_ddcontext_validate(const json_t *ctx, const char *param, struct sg_sdd_target *tgt,
                              struct sg_sdd_check *chk);
/* A ConnInfo (TS 29.548) for host:port as this server announces it: ipv4Addr or ipv6Addr when
 * host is an address literal, else uri "sealdd://host:port". New reference. */
json_t *sg_sdd_conninfo(const char *host, unsigned port);
/* ProblemDetails with invalidParams (TS 29.122 §5.2.1.2.12). New reference. */
json_t *sg_sdd_problem(int status, const char *cause, const char *detail,
                       const struct sg_sdd_check *chk);

/* ---- connection status notification queue (TS 29.548 ConnStatusNotif) ----------------
 * The notifications waiting for delivery, bounded in total and per owner (the VAL server that
 * owns the subscription) and served fairly: each owner has its own FIFO, owners with queued
 * notifications and none in delivery wait in a round-robin list, and a worker takes the head
 * of the owner that waited longest and holds that owner for one try. So an owner's
 * notifications are delivered in order, one at a time.
 * A try that must be repeated (no answer, 5xx, 429) goes back to the front of its owner's FIFO
 * and the owner waits, out of the round robin, until the retry is due (sg_sdd_notifq_retry):
 * no worker waits for a backoff. Such an owner is suspect until one of its tries is answered,
 * and at most max_suspect_busy suspect owners are in delivery at once: with fewer than that
 * many workers, the others always have one once the dead endpoints are known. (Endpoints that
 * die all at once, before any of them is suspect, can still hold every worker for one try.)
 * Not thread safe: the caller locks. push, take and done are O(1) expected (owners are hashed);
 * retry is O(owners waiting for a retry); nothing else scans. A suspect owner is remembered
 * (a few bytes) until it answers or the queue is cleared. */
#define SG_SDD_NOTIF_OWNER_BUCKETS 256

struct sg_sdd_nowner;
struct sg_sdd_notif {
	struct sg_sdd_notif *next;
	struct sg_sdd_nowner *owner;
	char *body;   /* the ConnStatusNotif, JSON text (owned) */
	char sid[32]; /* the subscription it is for */
	int tries;    /* tries made so far (the caller counts) */
};
struct sg_sdd_notifq {
	struct sg_sdd_nowner *b[SG_SDD_NOTIF_OWNER_BUCKETS]; /* owners with notifications */
	struct sg_sdd_nowner *ready, *ready_tail;   /* queued, none in delivery: round robin */
	struct sg_sdd_nowner *sready, *sready_tail; /* the same, suspect owners */
	struct sg_sdd_nowner *wait;                 /* waiting for a retry, soonest first */
	uint64_t seq;                               /* orders the two ready lists */
	size_t n;                                   /* notifications, those in delivery too */
	size_t suspect_busy;                        /* suspect owners in delivery */
	size_t max_total, max_per_owner, max_suspect_busy;
	uint64_t evicted;          /* suspect owners' notifications dropped to make room (push) */
	const char *evicted_owner; /* whose was the last (valid until the next call) */
};
/* An empty queue with these bounds (each counts the notifications in delivery too). */
void sg_sdd_notifq_init(struct sg_sdd_notifq *q, size_t max_total, size_t max_per_owner,
                        size_t max_suspect_busy);
/* 1 when a notification for owner would be queued now (sg_sdd_notifq_push would not refuse it
 * for a bound): lets the caller skip building one that would be dropped. */
int sg_sdd_notifq_admits(const struct sg_sdd_notifq *q, const char *owner);
/* Queues body (taken over on success) for subscription sid of owner: 0; 1 when a bound refuses
 * it (*why = "max_total" or "max_per_owner"; body stays the caller's); -1 out of memory. When
 * the queue is full, a notification of an owner that is not suspect still goes in if a suspect
 * owner has at least two queued: the newest of the suspect owner with the most is dropped
 * (ties: the smallest id), counted in q->evicted. */
int sg_sdd_notifq_push(struct sg_sdd_notifq *q, const char *owner, const char *sid, char *body,
                       const char **why);
/* The next notification to try at now_ms (monotonic), NULL when none may be tried now: owners
 * whose retry is due by now_ms rejoin the round robin first. Its owner gets nothing else until
 * sg_sdd_notifq_done(n) or sg_sdd_notifq_retry(n). */
struct sg_sdd_notif *sg_sdd_notifq_take(struct sg_sdd_notifq *q, int64_t now_ms);
/* When the soonest retry is due (monotonic ms), -1 when no owner waits for one. */
int64_t sg_sdd_notifq_next_due(const struct sg_sdd_notifq *q);
const char *sg_sdd_notif_owner(const struct sg_sdd_notif *n);
/* n (from take) is delivered or given up: frees it, and its owner's next becomes ready.
 * answered: 1 the owner's endpoint answered (no longer suspect), 0 it did not (suspect),
 * -1 no try was made (unchanged). */
void sg_sdd_notifq_done(struct sg_sdd_notifq *q, struct sg_sdd_notif *n, int answered);
/* n (from take) got no usable answer and is to be tried again at due_ms (monotonic): it goes
 * back to the front of its owner's FIFO, still counted, and the owner, now suspect, waits
 * until then. */
void sg_sdd_notifq_retry(struct sg_sdd_notifq *q, struct sg_sdd_notif *n, int64_t due_ms);
/* Frees every queued notification (none may be in delivery); returns how many there were. */
size_t sg_sdd_notifq_clear(struct sg_sdd_notifq *q);

#endif
