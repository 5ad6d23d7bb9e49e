/* idm/logic.h (private to idm/): the SIM-S's pure decisions, kept free of I/O so that unit
 * tests cover them directly: form/query parsing, authorization request validation (I2, RFC 6749
 * §4.1.2.1), scopes and audiences (I8a, RFC 8707), login throttling with exponential backoff
 * (G4). */
#ifndef SG_IDM_LOGIC_H
#define SG_IDM_LOGIC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* ---- application/x-www-form-urlencoded (also query strings) ---- */

struct sg_idm_kv {
	char *name, *value;
};
struct sg_idm_form {
	struct sg_idm_kv *kv;
	size_t n;
};
/* Parses s (len bytes; '+' is a space, %XX escapes; NUL bytes refused). 0 on success, -1 for a
 * malformed escape or no memory (f is then empty). Free with sg_idm_form_free (wipes values:
 * forms carry passwords and secrets). */
int sg_idm_form_parse(const char *s, size_t len, struct sg_idm_form *f);
/* The first value of name, or NULL. */
const char *sg_idm_form_get(const struct sg_idm_form *f, const char *name);
/* How many times name occurs (RFC 6749 §3.1: request parameters MUST NOT repeat). */
size_t sg_idm_form_count(const struct sg_idm_form *f, const char *name);
void sg_idm_form_free(struct sg_idm_form *f);
/* Decodes one form-encoded component of n bytes; NULL when malformed (caller frees). */
char *sg_idm_form_decode(const char *s, size_t n);
/* Appends name=value percent-encoded (RFC 3986 unreserved kept) to a URL/query in out. Returns
 * 0, or -1 when it does not fit. */
int sg_idm_url_append(char *out, size_t outlen, const char *name, const char *value);

/* ---- scopes (REQUIREMENTS I8a) and audiences ---- */

#define SG_IDM_SCOPES_UE_DEFAULT  "openid seal:gm seal:km sdd"
#define SG_IDM_SCOPES_VAL_DEFAULT "seal:gm seal:km seal:ipp sdd"
#define SG_IDM_SCOPES_ALL         "openid seal:gm seal:km seal:kp seal:ipp sdd"
#define SG_IDM_ACR_PASSWORD       "3gpp:acr:password"

/* 1 when every space-separated token of scope is a known scope and none repeats, and scope is
 * not empty. */
int sg_idm_scope_valid(const char *scope);
/* 1 when the space-separated list has the token. */
int sg_idm_scope_has(const char *list, const char *token);
/* 1 when every token of a is in b. */
int sg_idm_scope_subset(const char *a, const char *b);
/* The audience ("sealguard:gm", "sealguard:km", "sealguard:sdd", "sealguard:idm") of one
 * scope, or NULL for an unknown scope. */
const char *sg_idm_scope_audience(const char *scope);
/* The access token's aud: the distinct audiences of the scopes, in a fixed order. New
 * reference (json array). */
json_t *sg_idm_audiences(const char *scope);
/* RFC 8707 narrowing: writes into out the scopes of `scope` whose audience is resource. Returns
 * 0, or -1 when resource is not an audience of any of the scopes (invalid_target) or out is
 * too small. */
int sg_idm_scope_for_resource(const char *scope, const char *resource, char *out, size_t outlen);
/* The scopes a SIM-C client may hold: its registered list, or the UE default when empty. A VAL
 * server's: its registered list or the VAL default, plus seal:kp with the key-provisioning
 * right (and never seal:kp without it). out holds at least 128 bytes. */
void sg_idm_client_scopes(const char *registered, char *out, size_t outlen);
void sg_idm_valserver_scopes(const char *registered, int key_provisioning, char *out,
                             size_t outlen);

/* ---- grants of removed clients and disabled users ---- */

/* Until when a revoked grant stays on the revocation list: while an access token of it may
 * still be accepted (the longer of the access- and ID-token lifetimes, so a CLI whose
 * configuration differs a little from the server's still covers every token, plus the
 * leeway). */
int64_t sg_idm_grant_revoke_until(unsigned access_ttl_s, unsigned id_ttl_s, int64_t now);
/* The grant id of a VAL server's client_credentials tokens: derived from its name and
 * registration time (22 base64url characters + NUL in out), so that removing it revokes
 * every token it holds, and a VAL server registered again under the same name starts clean. Returns
 * 0, or -1 when libcrypto fails. */
#define SG_IDM_VALSERVER_GID_LEN 22
int sg_idm_valserver_gid(const char *name, int64_t created_at,
                         char out[SG_IDM_VALSERVER_GID_LEN + 1]);

/* ---- authorization request (I2) ---- */

struct sg_idm_authz_req {
	const char *response_type, *client_id, *redirect_uri, *scope, *state, *acr_values,
	    *code_challenge, *code_challenge_method, *nonce;
	int dup_client;             /* client_id or redirect_uri repeated */
	int dup_other;              /* another parameter repeated */
	int client_known;           /* client_id names a registered SIM-C client */
	int redirect_ok;            /* redirect_uri equals one of its registered URIs */
	const char *allowed_scopes; /* the client's (sg_idm_client_scopes) */
};
enum sg_idm_authz_outcome {
	SG_IDM_AUTHZ_OK = 0,
	SG_IDM_AUTHZ_PAGE,     /* error page, never a redirect (client or redirect_uri bad) */
	SG_IDM_AUTHZ_REDIRECT, /* redirect to redirect_uri with error (+ state) */
};
struct sg_idm_authz_result {
	enum sg_idm_authz_outcome outcome;
	const char *error;       /* RFC 6749 §4.1.2.1 code, or NULL */
	const char *description; /* static text for error_description / the page */
};
void sg_idm_authz_check(const struct sg_idm_authz_req *q, struct sg_idm_authz_result *out);

/* ---- login throttling (G4) ---- */

/* Backoff after `failures` consecutive failures: 0 while failures < free_attempts, then
 * base_ms * 2^(failures - free_attempts), at most max_ms. */
int64_t sg_idm_backoff_ms(unsigned failures, unsigned free_attempts, int64_t base_ms,
                          int64_t max_ms);

/* Failure counters by key (an account name or a source address), thread safe, bounded. */
struct sg_idm_throttle;
struct sg_idm_throttle *sg_idm_throttle_new(unsigned free_attempts, int64_t base_ms, int64_t max_ms,
                                            size_t max_entries);
void sg_idm_throttle_free(struct sg_idm_throttle *t);
/* Before an attempt: 0 when it may run now (it is then counted running until _end), else the
 * milliseconds to wait. With exclusive set, an attempt already running for key makes it wait
 * (one password check at a time per account); without (a source address), attempts may run at
 * once only as many as the free attempts left (one once they are used up). */
int64_t sg_idm_throttle_begin(struct sg_idm_throttle *t, const char *key, int exclusive,
                              int64_t now_ms);
/* After the attempt: success (1) resets an exclusive key and takes one failure back from a shared
 * one; failure (0) counts and schedules the backoff; -1: the attempt did not run (nothing
 * counts). */
void sg_idm_throttle_end(struct sg_idm_throttle *t, const char *key, int exclusive, int success,
                         int64_t now_ms);
/* Drops idle entries (no failure for max_ms and nothing running). */
void sg_idm_throttle_expire(struct sg_idm_throttle *t, int64_t now_ms);

#endif
