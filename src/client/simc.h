/* client/simc.h: the SIM-C, the identity management client of a UE (TS 33.434 §5.2, Annex A):
 * an OpenID Connect native client using the authorization code grant with PKCE S256 (I1),
 * toward the SIM-S over IM-UU (HTTPS with the T profile, I12). Used in-process by UE software
 * and by SEAL clients (SEAL-C is an in-process API, R5) and by `sealguard login`.
 *
 * The flow (sg_simc_login does it all):
 *   1. discovery (OIDC Discovery 1.0 §4): the provider metadata at
 *      ISSUER/.well-known/openid-configuration; its "issuer" must equal ISSUER exactly (§4.3);
 *   2. a fresh state, nonce and PKCE verifier per request (RFC 6749 §10.12, OIDC Core §3.1.2.1,
 *      RFC 7636 §4.1);
 *   3. the authorization request (I2) answered by a login page whose form carries a login
 *      transaction `tx`; the SIM-C POSTs tx + username + password (I3) and takes the 302 to the
 *      redirect URI without following it (the redirect URI is never dereferenced);
 *   4. the authorization response is accepted only when its state is the one sent: anything
 *      else is silently dropped (I4): no error is shown to the page, no code is exchanged;
 *   5. the code exchange at the token endpoint with client_secret_basic and the verifier (I5);
 *   6. ID token validation per OIDC Core §3.1.3.7 (ES256 signature with a key of the JWKS,
 *      iss, aud, azp, exp, iat with at most 30 s leeway, nonce), at_hash when present (§3.1.3.8).
 * Refresh (I9, OIDC Core §12) rotates the refresh token: the caller keeps the new one.
 *
 * Secrets (client secret, password, tokens, verifier) are wiped with OPENSSL_cleanse when the
 * objects holding them are released; nothing here logs. Not thread-safe: one struct sg_simc per
 * thread. */
#ifndef SG_CLIENT_SIMC_H
#define SG_CLIENT_SIMC_H

#include "auth/jws.h"
#include "base/err.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define SG_SIMC_ACR      "3gpp:acr:password" /* I2: acr_values sealguard requests */
#define SG_SIMC_LEEWAY_S 30                  /* I7: clock-skew leeway */
#define SG_SIMC_RANDOM   44                  /* state, nonce, verifier: 43 chars + NUL */

/* ---- building blocks (pure functions, unit-tested) ------------------------------------ */

/* What a client remembers about one authorization request until the response comes back. */
struct sg_simc_request {
	char state[SG_SIMC_RANDOM];     /* RFC 6749 §10.12: CSRF protection, checked by I4 */
	char nonce[SG_SIMC_RANDOM];     /* OIDC Core §3.1.2.1: bound into the ID token */
	char verifier[SG_SIMC_RANDOM];  /* RFC 7636 §4.1: code_verifier (secret) */
	char challenge[SG_SIMC_RANDOM]; /* RFC 7636 §4.2: S256(verifier) */
};

/* Fills r with fresh random state, nonce (each 256 bits, base64url) and a PKCE pair. */
sg_err sg_simc_request_new(struct sg_simc_request *r);
/* Wipes r (the verifier is a secret). */
void sg_simc_request_wipe(struct sg_simc_request *r);

/* The parameters of an authorization response (RFC 6749 §4.1.2 / §4.1.2.1, RFC 9207). Every
 * field is a malloc'd string or NULL when absent. */
struct sg_simc_response {
	char *code;
	char *state;
	char *error;
	char *error_description;
	char *iss; /* RFC 9207 issuer identifier, when the SIM-S sends it */
};
void sg_simc_response_clear(struct sg_simc_response *r); /* wipes the code, frees, zeroes */

/* Parses the Location of the redirect that ends the login: it must be redirect_uri itself
 * followed by a query ("?" or "&" when redirect_uri has one already), RFC 6749 §3.1.2; the query
 * parameters are form-decoded into out (owned by the caller: sg_simc_response_clear). A
 * Location to anywhere else, a fragment, or a repeated parameter (RFC 6749 §3.1) is
 * SG_ERR_PROTO. */
sg_err sg_simc_parse_redirect(const char *location, const char *redirect_uri,
                              struct sg_simc_response *out, char *err, size_t errlen);

/* I4: decides whether an authorization response belongs to the request: SG_OK when its state
 * equals req->state (constant-time comparison) and, when the response names an issuer
 * (RFC 9207 §2.4), that is the expected one. Anything else is SG_ERR_DENIED: the caller drops
 * the response silently (it must neither show an error to the page nor exchange the code), and
 * err stays empty on purpose. */
sg_err sg_simc_accept_response(const struct sg_simc_request *req, const char *issuer,
                               const struct sg_simc_response *resp);

/* Finds the value of <input ... name="NAME" ... value="..."> in an HTML page (the login page's
 * hidden login transaction, NAME "tx"); attributes in any order, quoted with " or ' or
 * unquoted, names case-insensitive; the character references &amp; &lt; &gt; &quot; &#39;
 * &#NN; &#xHH; are decoded. *out (malloc'd) is owned by the caller. SG_ERR_NOTFOUND when the
 * page has no such input (e.g. an error page). */
sg_err sg_simc_html_input(const char *html, size_t len, const char *name, char **out);
/* Finds the action attribute of the first <form> in the page. *out (malloc'd, decoded as
 * above) is owned by the caller; SG_ERR_NOTFOUND when absent. */
sg_err sg_simc_html_form_action(const char *html, size_t len, char **out);

/* What ID token validation expects (OIDC Core §3.1.3.7). */
struct sg_simc_id_expect {
	const char *issuer;       /* the discovered issuer: iss must equal it exactly (item 2) */
	const char *client_id;    /* aud must contain it; azp, when present, must equal it (3-5) */
	const char *nonce;        /* the nonce sent (item 11); NULL when none was sent (refresh) */
	const char *access_token; /* when set and the token has at_hash, it must match (§3.1.3.8) */
	const char *sub;          /* when set (refresh, §12.2): sub must be the same */
	int64_t now;              /* seconds since the epoch; 0 = the real clock */
};

/* Validates an ID token: the ES256 signature with a key of ks (items 6-7; alg none, HS*, keys
 * embedded in the header and unknown kids are refused by auth/jws), an access token ("typ"
 * at+jwt) presented as an ID token is refused (RFC 8725 §3.11), iss (2), aud (3), azp when
 * several audiences or present (4, 5), exp and iat with SG_SIMC_LEEWAY_S leeway (9, 10), sub
 * present, at most 255 bytes (I7), nonce (11), acr when present = SG_SIMC_ACR (12). On SG_OK
 * *claims (may be NULL) gets a new reference (json_decref). On failure SG_ERR_DENIED with the
 * reason in err (never the token). */
sg_err sg_simc_validate_id_token(const struct sg_jws_keyset *ks, const char *id_token,
                                 const struct sg_simc_id_expect *exp, json_t **claims, char *err,
                                 size_t errlen);

/* ---- the client ----------------------------------------------------------------------- */

struct sg_simc_conf {
	const char *issuer;        /* the SIM-S issuer URL (https) */
	const char *client_id;     /* registered SIM-C client */
	const char *client_secret; /* its secret (copied, wiped on free) */
	const char *redirect_uri;  /* a registered redirect URI (exact match, I2) */
	const char *ca;            /* PEM trust anchors for the SIM-S certificate (I12) */
	const char *crl;           /* CRLs checked for its chain (T5); NULL: none */
	long timeout_ms;           /* per HTTP request; 0 = 30000 */
};

/* Tokens from a token response (I6), validated. Strings malloc'd (NULL when absent). */
struct sg_simc_tokens {
	char *access_token;
	char *token_type; /* "bearer" (compared case-insensitively, RFC 6749 §5.1) */
	char *id_token;
	char *refresh_token;
	char *scope;        /* granted scope (the requested one when the response omits it) */
	int64_t expires_at; /* access token expiry, seconds since the epoch (now + expires_in) */
	json_t *id_claims;  /* the validated ID token's claims (NULL when no id_token) */
};
/* Wipes the tokens, frees them and zeroes t. */
void sg_simc_tokens_clear(struct sg_simc_tokens *t);

struct sg_simc;

/* Creates a client (no network yet). *out owned by the caller: sg_simc_free. */
sg_err sg_simc_new(const struct sg_simc_conf *conf, struct sg_simc **out, char *err, size_t errlen);
void sg_simc_free(struct sg_simc *c);

/* Fetches the provider metadata (once; later calls reuse it) and the JWKS. Needs issuer,
 * authorization_endpoint, token_endpoint and jwks_uri (https); "S256" must be among
 * code_challenge_methods_supported when the metadata lists any. */
sg_err sg_simc_discover(struct sg_simc *c, char *err, size_t errlen);
/* A discovered endpoint ("authorization_endpoint", "token_endpoint", "jwks_uri",
 * "userinfo_endpoint", "issuer"...), owned by c; NULL when absent or before discovery. */
const char *sg_simc_metadata(const struct sg_simc *c, const char *name);

/* Builds the authorization request URL (I2) for req and scope ("openid" is added when
 * missing). *url (malloc'd) is owned by the caller. Needs discovery. */
sg_err sg_simc_authorization_url(struct sg_simc *c, const struct sg_simc_request *req,
                                 const char *scope, char **url, char *err, size_t errlen);

/* The whole login: discovery, authorization request, credentials POST (I3), I4 state check,
 * code exchange (I5) and ID token validation. On SG_OK *out holds validated tokens (owned by
 * the caller: sg_simc_tokens_clear). Errors: SG_ERR_DENIED for refused credentials (the login
 * page came back) or a refused grant, SG_ERR_LIMIT when the SIM-S throttles logins (HTTP 429),
 * SG_ERR_PROTO for a provider answer outside the contract, including an authorization response
 * that was dropped by I4 ("no valid authorization response"). */
sg_err sg_simc_login(struct sg_simc *c, const char *scope, const char *username,
                     const char *password, struct sg_simc_tokens *out, char *err, size_t errlen);

/* Step 5 alone: exchanges code for tokens and validates the ID token against req's nonce. */
sg_err sg_simc_exchange_code(struct sg_simc *c, const struct sg_simc_request *req, const char *code,
                             const char *scope, struct sg_simc_tokens *out, char *err,
                             size_t errlen);

/* RFC 6749 §6 / I9: trades refresh_token (scope NULL: the same as granted) for new tokens. A new
 * ID token, when returned, is validated per OIDC Core §12.2 (same iss and sub as prev_sub when
 * given, no nonce). The response's refresh_token replaces the old one (rotation); when the
 * response has none, out->refresh_token is NULL and the old one stays valid. */
sg_err sg_simc_refresh(struct sg_simc *c, const char *refresh_token, const char *scope,
                       const char *prev_sub, struct sg_simc_tokens *out, char *err, size_t errlen);

/* GET userinfo_endpoint with the access token (OIDC Core §5.3). *claims owned by the caller. */
sg_err sg_simc_userinfo(struct sg_simc *c, const char *access_token, json_t **claims, char *err,
                        size_t errlen);

#endif
