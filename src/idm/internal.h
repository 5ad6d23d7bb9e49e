/* idm/internal.h (private to idm/): the SIM-S object shared by its endpoint files: registry
 * snapshot (refcounted, swapped when the store generation changes), signing keys, login
 * transactions, revocations, throttles, and the helpers every endpoint uses. */
#ifndef SG_IDM_INTERNAL_H
#define SG_IDM_INTERNAL_H

#include "auth/jws.h"
#include "auth/secret.h"
#include "base/addrtab.h"
#include "conf/conf.h"
#include "http/http.h"
#include "idm/idm.h"
#include "idm/logic.h"
#include "store/store.h"

#include <pthread.h>
#include <stdatomic.h>

/* Immutable snapshot of the registry: readers take a reference (idm_reg_get/put). */
struct idm_reg {
	atomic_int refs;
	uint64_t gen;
	struct sg_store_client *clients; /* by client_id */
	size_t nclients;
	struct sg_store_valserver *vals; /* by name */
	size_t nvals;
	struct sg_store_user *users; /* by name; password hashes dropped */
	size_t nusers;
	size_t *by_sub;  /* indices of users, by sub */
	char **services; /* every VAL service id served by a VAL server (sorted, distinct) */
	size_t nservices;
	struct sg_jws_key *signer; /* the active signing key */
	int64_t next_retire;       /* earliest future retire_at of a published key (0: none) */
};

struct idm_tx;        /* a login transaction (authorization request waiting for the user) */
struct idm_audit_row; /* an audit row on its way to the store (core.c) */

struct idm_mount {
	struct sg_idm *idm;
	const struct sg_conf_refpoint *rp;
	int mtls; /* the listener authenticates clients by certificate */
};

#define IDM_TX_BUCKETS  256
#define IDM_REV_BUCKETS 1024

struct idm_rev {
	struct idm_rev *next;
	int kind; /* SG_STORE_REVOKED_JTI or _GRANT */
	char *id;
	int64_t exp_ms;
};

struct sg_idm {
	const struct sg_conf *conf;
	char issuer[256];
	char mtls_base[256]; /* https URL of the SEAL-S token endpoint alias ("" when none) */
	struct sg_store_pool *pool;
	unsigned char pepper[32], master[32];
	char dummy_phc[SG_PASSWORD_PHC_MAX]; /* verified for unknown users: same cost */
	struct sg_password_params pw;
	pthread_mutex_t reg_mu;
	struct idm_reg *reg;
	struct sg_jws_keyset *keys; /* published keys; long-lived (its generation guards the
	                              cache) */
	struct sg_jws_cache *cache;
	atomic_int busy; /* a refresh job is in flight */
	int64_t rev_since;
	int64_t rev_full_mono; /* when the whole revocation list was last read (rev_poll) */
	int64_t last_upkeep;
	pthread_mutex_t tx_mu;
	struct idm_tx *tx[IDM_TX_BUCKETS];
	size_t ntx;
	struct sg_addrtab tx_addr; /* pending logins per client address (under tx_mu) */
	pthread_mutex_t rev_mu;
	struct idm_rev *rev[IDM_REV_BUCKETS];
	struct sg_idm_throttle *thr_user, *thr_addr;
	/* audit rows waiting for the store writer: one pool job writes all that queued (idm_audit)
	 */
	pthread_mutex_t audit_mu;
	struct idm_audit_row *audit_head, *audit_tail;
	int audit_queued; /* a job to write them is queued and has not taken them yet */
	struct idm_mount **mounts;
	size_t nmounts;
};

/* ---- registry ---- */
struct idm_reg *idm_reg_get(struct sg_idm *idm);
void idm_reg_put(struct idm_reg *reg);
const struct sg_store_client *idm_client_find(const struct idm_reg *reg, const char *id);
const struct sg_store_valserver *idm_val_find(const struct idm_reg *reg, const char *name);
const struct sg_store_user *idm_user_by_sub(const struct idm_reg *reg, const char *sub);

/* ---- login transactions ---- */
struct idm_tx {
	struct idm_tx *next;
	char id[SG_SECRET_STR_LEN];
	int64_t expires_ms;
	char *client_id, *redirect_uri, *scope, *state, *nonce, *code_challenge;
	uint8_t addr[16]; /* the client's address key (sg_addr_key: IPv6 by its /64) */
	int has_addr;
};
#define IDM_TX_TTL_MS   (10 * 60 * 1000)
#define IDM_TX_MAX      100000
#define IDM_TX_PER_ADDR 256 /* G4: one client cannot fill the table and stop everyone's logins */
/* Stores a copy of t under a fresh id (written to t->id). 0, or -1 (no memory, full, or its
 * client address holds IDM_TX_PER_ADDR pending already). */
int idm_tx_put(struct sg_idm *idm, struct idm_tx *t);
/* Removes and returns the transaction (single use), or NULL when unknown or expired. */
struct idm_tx *idm_tx_take(struct sg_idm *idm, const char *id);
void idm_tx_free(struct idm_tx *t);

/* ---- revocations ---- */
int idm_is_revoked(struct sg_idm *idm, const char *jti, const char *gid);
void idm_revoked_add(struct sg_idm *idm, int kind, const char *id, int64_t exp_ms);

/* ---- helpers ---- */
/* Appends an audit row through the store pool, without waiting for it (no secret in it,
 * ever). Rows that queue while the writer is busy are written by one job. */
void idm_audit(struct sg_idm *idm, const char *actor, const char *action, const char *object,
               const char *refpoint, const char *detail);
/* RFC 6749 §5.2 error response (JSON, no-store); 401 adds WWW-Authenticate: Basic. */
void idm_oauth_error(struct sg_http_req *r, int status, const char *error, const char *desc);
/* RFC 6750 §3 error: WWW-Authenticate: Bearer with error (NULL: none). */
void idm_bearer_error(struct sg_http_req *r, int status, const char *error, const char *desc);
/* Parses the request body as a form; -1 (response set: 400 invalid_request) when the content
 * type is not application/x-www-form-urlencoded or the body is malformed. */
int idm_body_form(struct sg_http_req *r, struct sg_idm_form *f, int oauth_errors);
/* client_secret_basic (RFC 6749 §2.3.1): *out is the authenticated SIM-C client. On failure
 * the 401 invalid_client answer is set and -1 returned. */
int idm_client_basic(struct sg_idm *idm, const struct idm_reg *reg, struct sg_http_req *r,
                     const struct sg_idm_form *f, const struct sg_store_client **out);
/* RFC 8705 §2.1.2 tls_client_auth on a mutual-TLS listener: the VAL server named by client_id
 * whose registered identity is one of the certificate's SANs. -1 with the 401 set on failure. */
int idm_client_tls(struct idm_mount *m, const struct idm_reg *reg, struct sg_http_req *r,
                   const struct sg_idm_form *f, const struct sg_store_valserver **out);
/* The bearer token of the Authorization header, or NULL. */
const char *idm_bearer_token(struct sg_http_req *r);
/* Verifies one of our access tokens (typ at+jwt, iss, exp, aud when non-NULL, not revoked). */
sg_jws_status idm_verify_access(struct sg_idm *idm, const char *token, const char *aud,
                                json_t **claims, char *err, size_t errlen);
/* val_user_ids claim: every known VAL service id -> the user's VAL user id (the user name when
 * none is set). New reference. */
json_t *idm_val_user_ids(const struct idm_reg *reg, const struct sg_store_user *u);

/* Access token (RFC 9068 at+jwt). extra (may be NULL) is merged in (cnf, SKeyProv,
 * val_user_ids). *token owned by the caller. */
sg_err idm_mint_access(struct sg_idm *idm, const struct idm_reg *reg, const char *sub,
                       const char *client_id, const char *scope, const char *resource,
                       const char *gid, json_t *extra, char **token, char *jti_out);
/* ID token (OIDC Core §2). nonce and auth_time (0: none) optional. */
sg_err idm_mint_id(struct sg_idm *idm, const struct idm_reg *reg, const char *sub,
                   const char *client_id, const char *nonce, int64_t auth_time_s, char **token);

/* ---- endpoint handlers ---- */
enum sg_http_result idm_h_discovery(struct sg_http_req *r, void *arg);
enum sg_http_result idm_h_jwks(struct sg_http_req *r, void *arg);
enum sg_http_result idm_h_authorize(struct sg_http_req *r, void *arg);
enum sg_http_result idm_h_login(struct sg_http_req *r, void *arg);
enum sg_http_result idm_h_token(struct sg_http_req *r, void *arg);
enum sg_http_result idm_h_userinfo(struct sg_http_req *r, void *arg);
enum sg_http_result idm_h_introspect(struct sg_http_req *r, void *arg);
enum sg_http_result idm_h_revoke(struct sg_http_req *r, void *arg);
enum sg_http_result idm_h_revocations(struct sg_http_req *r, void *arg);
enum sg_http_result idm_h_ipp(struct sg_http_req *r, void *arg);

#endif
