/* client/simc.c: the SIM-C (TS 33.434 §5.2, Annex A): OIDC authorization code flow with PKCE
 * against the SIM-S, the I4 state check, and ID token validation (OIDC Core §3.1.3.7). */
#include "client/simc.h"

#include "auth/secret.h"
#include "base/b64.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/rand.h"
#include "http/client.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct sg_simc {
	char *issuer, *client_id, *client_secret, *redirect_uri, *ca, *crl;
	struct sg_http_client *http;
	json_t *meta;               /* provider metadata, after discovery */
	struct sg_jws_keyset *keys; /* the JWKS, after discovery */
	int64_t keys_fetched_ms;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static void free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* Overwrites every string value of a JSON object (a token response holds tokens). */
static void wipe_json_strings(json_t *o)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		if (json_is_string(v))
			OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
	}
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Appends "name=value" (application/x-www-form-urlencoded, RFC 6749 Appendix B) to b. */
static sg_err form_add(struct sg_buf *b, const char *name, const char *value)
{
	char *enc = curl_easy_escape(NULL, value, 0);
	if (!enc)
		return SG_ERR_NOMEM;
	sg_err e = sg_buf_printf(b, "%s%s=%s", b->len ? "&" : "", name, enc);
	OPENSSL_cleanse(enc, strlen(enc));
	curl_free(enc);
	return e;
}

/* Decodes one form-urlencoded component ('+' is a space, then %XX). */
static char *form_decode(const char *s, size_t n)
{
	char *tmp = malloc(n + 1);
	if (!tmp)
		return NULL;
	for (size_t i = 0; i < n; i++)
		tmp[i] = s[i] == '+' ? ' ' : s[i];
	tmp[n] = '\0';
	int outlen = 0;
	char *dec = curl_easy_unescape(NULL, tmp, (int)n, &outlen);
	OPENSSL_cleanse(tmp, n);
	free(tmp);
	if (!dec)
		return NULL;
	char *out = NULL;
	if (memchr(dec, '\0', (size_t)outlen) == NULL)
		out = strdup(dec);
	OPENSSL_cleanse(dec, (size_t)outlen);
	curl_free(dec);
	return out;
}

/* ---- request ---------------------------------------------------------------------------- */

sg_err sg_simc_request_new(struct sg_simc_request *r)
{
	memset(r, 0, sizeof *r);
	sg_err e = sg_random_token(r->state, sizeof r->state, 32);
	if (e == SG_OK)
		e = sg_random_token(r->nonce, sizeof r->nonce, 32);
	if (e == SG_OK) /* RFC 7636 §4.1: 43 characters from 32 random octets */
		e = sg_pkce_generate(r->verifier, sizeof r->verifier, r->challenge,
		                     sizeof r->challenge);
	if (e != SG_OK)
		sg_simc_request_wipe(r);
	return e;
}

void sg_simc_request_wipe(struct sg_simc_request *r)
{
	OPENSSL_cleanse(r, sizeof *r);
}

/* ---- authorization response ------------------------------------------------------------- */

void sg_simc_response_clear(struct sg_simc_response *r)
{
	free_secret(r->code);
	free(r->state);
	free(r->error);
	free(r->error_description);
	free(r->iss);
	memset(r, 0, sizeof *r);
}

sg_err sg_simc_parse_redirect(const char *location, const char *redirect_uri,
                              struct sg_simc_response *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (!location || !redirect_uri || !*redirect_uri)
		return sg_fail(err, errlen, SG_ERR_INVALID, "no redirect to parse");
	size_t rl = strlen(redirect_uri);
	/* RFC 6749 §3.1.2: the response parameters are added to the query of the redirect URI */
	char sep = strchr(redirect_uri, '?') ? '&' : '?';
	if (strncmp(location, redirect_uri, rl) != 0 || location[rl] != sep)
		return sg_fail(err, errlen, SG_ERR_PROTO,
		               "the redirect does not go to the redirect URI %s", redirect_uri);
	const char *q = location + rl + 1;
	if (strchr(q, '#'))
		return sg_fail(err, errlen, SG_ERR_PROTO,
		               "the redirect carries a fragment (response_mode query expected)");
	static const char *names[] = {"code", "state", "error", "error_description", "iss"};
	char **slots[] = {&out->code, &out->state, &out->error, &out->error_description, &out->iss};
	while (*q) {
		size_t n = strcspn(q, "&");
		const char *eq = memchr(q, '=', n);
		size_t kl = eq ? (size_t)(eq - q) : n;
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
			if (strlen(names[i]) != kl || strncmp(q, names[i], kl) != 0)
				continue;
			if (*slots[i]) { /* RFC 6749 §3.1: parameters MUST NOT repeat */
				sg_simc_response_clear(out);
				return sg_fail(err, errlen, SG_ERR_PROTO,
				               "the redirect repeats parameter %s", names[i]);
			}
			const char *v = eq ? eq + 1 : q + n;
			if (!(*slots[i] = form_decode(v, (size_t)(q + n - v)))) {
				sg_simc_response_clear(out);
				return sg_fail(err, errlen, SG_ERR_PROTO,
				               "the redirect has a malformed %s", names[i]);
			}
		}
		q += n;
		if (*q == '&')
			q++;
	}
	return SG_OK;
}

sg_err sg_simc_accept_response(const struct sg_simc_request *req, const char *issuer,
                               const struct sg_simc_response *resp)
{
	/* I4 / RFC 6749 §10.12: only the state this client sent binds the response to the
	 * request; the comparison is constant time. A mismatch is dropped without a word. */
	size_t want = strlen(req->state);
	if (!resp->state || want == 0 || strlen(resp->state) != want ||
	    CRYPTO_memcmp(resp->state, req->state, want) != 0)
		return SG_ERR_DENIED;
	/* RFC 9207 §2.4: an iss parameter, when present, must be the expected issuer (mix-up) */
	if (resp->iss && (!issuer || strcmp(resp->iss, issuer) != 0))
		return SG_ERR_DENIED;
	return SG_OK;
}

/* ---- HTML ------------------------------------------------------------------------------- */

/* Decodes the character references an attribute value may hold (HTML §13.1.4). */
static char *html_decode(const char *s, size_t n)
{
	char *out = malloc(n * 4 + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		if (s[i] != '&') {
			*o++ = s[i++];
			continue;
		}
		static const struct {
			const char *ent;
			char c;
		} named[] = {{"&amp;", '&'},
		             {"&lt;", '<'},
		             {"&gt;", '>'},
		             {"&quot;", '"'},
		             {"&apos;", '\''}};
		int done = 0;
		for (size_t k = 0; !done && k < sizeof named / sizeof named[0]; k++) {
			size_t l = strlen(named[k].ent);
			if (i + l <= n && strncmp(s + i, named[k].ent, l) == 0) {
				*o++ = named[k].c;
				i += l;
				done = 1;
			}
		}
		if (!done && i + 2 < n && s[i + 1] == '#') {
			size_t j = i + 2;
			int hex = s[j] == 'x' || s[j] == 'X';
			j += (size_t)hex;
			unsigned long cp = 0;
			size_t digits = 0;
			while (
			    j < n && digits < 7 &&
			    (hex ? isxdigit((unsigned char)s[j]) : isdigit((unsigned char)s[j]))) {
				char d = s[j++];
				cp = cp * (hex ? 16 : 10) +
				     (unsigned long)(isdigit((unsigned char)d)
				                         ? d - '0'
				                         : tolower((unsigned char)d) - 'a' + 10);
				digits++;
			}
			if (digits && j < n && s[j] == ';' && cp > 0 && cp < 0x110000) {
				/* UTF-8 encode */
				if (cp < 0x80) {
					*o++ = (char)cp;
				} else if (cp < 0x800) {
					*o++ = (char)(0xC0 | (cp >> 6));
					*o++ = (char)(0x80 | (cp & 0x3F));
				} else if (cp < 0x10000) {
					*o++ = (char)(0xE0 | (cp >> 12));
					*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
					*o++ = (char)(0x80 | (cp & 0x3F));
				} else {
					*o++ = (char)(0xF0 | (cp >> 18));
					*o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
					*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
					*o++ = (char)(0x80 | (cp & 0x3F));
				}
				i = j + 1;
				done = 1;
			}
		}
		if (!done)
			*o++ = s[i++];
	}
	*o = '\0';
	return out;
}

struct html_attr {
	const char *name, *value;
	size_t nlen, vlen;
};

/* Parses the attributes of a start tag from p (just after the tag name) up to its '>'.
 * Calls back for each; returns where the tag ends (after '>'), or NULL if it never ends. */
static const char *html_attrs(const char *p, const char *end,
                              int (*cb)(const struct html_attr *, void *), void *arg)
{
	while (p < end) {
		while (p < end && (isspace((unsigned char)*p) || *p == '/'))
			p++;
		if (p >= end)
			return NULL;
		if (*p == '>')
			return p + 1;
		struct html_attr a = {.name = p};
		while (p < end && !isspace((unsigned char)*p) && *p != '=' && *p != '>' &&
		       *p != '/')
			p++;
		a.nlen = (size_t)(p - a.name);
		while (p < end && isspace((unsigned char)*p))
			p++;
		if (p < end && *p == '=') {
			p++;
			while (p < end && isspace((unsigned char)*p))
				p++;
			if (p < end && (*p == '"' || *p == '\'')) {
				char qc = *p++;
				a.value = p;
				while (p < end && *p != qc)
					p++;
				if (p >= end)
					return NULL;
				a.vlen = (size_t)(p - a.value);
				p++;
			} else {
				a.value = p;
				while (p < end && !isspace((unsigned char)*p) && *p != '>')
					p++;
				a.vlen = (size_t)(p - a.value);
			}
		}
		if (a.nlen && cb(&a, arg))
			return p; /* the callback has what it wanted */
	}
	return NULL;
}

struct input_scan {
	const char *want_name;
	const char *tag;
	const struct html_attr *name_attr;
	struct html_attr name, value;
	int have_name, have_value;
};

static int attr_is(const struct html_attr *a, const char *n)
{
	return a->nlen == strlen(n) && strncasecmp(a->name, n, a->nlen) == 0;
}

static int input_cb(const struct html_attr *a, void *arg)
{
	struct input_scan *s = arg;
	if (attr_is(a, "name") && a->value) {
		s->name = *a;
		s->have_name = 1;
	} else if (attr_is(a, s->tag[0] == 'f' ? "action" : "value") && a->value) {
		s->value = *a;
		s->have_value = 1;
	}
	return 0;
}

/* Scans start tags named tag; for each, collects name and value/action. */
static sg_err html_find(const char *html, size_t len, const char *tag, const char *want_name,
                        char **out)
{
	*out = NULL;
	const char *p = html, *end = html + len;
	size_t tl = strlen(tag);
	while (p < end) {
		const char *lt = memchr(p, '<', (size_t)(end - p));
		if (!lt)
			break;
		p = lt + 1;
		if ((size_t)(end - p) >= 3 && strncmp(p, "!--", 3) == 0) { /* comment */
			const char *q = p + 3;
			while (q + 3 <= end && strncmp(q, "-->", 3) != 0)
				q++;
			p = q + 3 <= end ? q + 3 : end;
			continue;
		}
		if ((size_t)(end - p) <= tl || strncasecmp(p, tag, tl) != 0 ||
		    !(isspace((unsigned char)p[tl]) || p[tl] == '>' || p[tl] == '/'))
			continue;
		struct input_scan s = {.want_name = want_name, .tag = tag};
		const char *after = html_attrs(p + tl, end, input_cb, &s);
		if (!after)
			break;
		p = after;
		int match = want_name ? s.have_name && s.name.vlen == strlen(want_name) &&
		                            strncmp(s.name.value, want_name, s.name.vlen) == 0
		                      : 1;
		if (match && s.have_value) {
			*out = html_decode(s.value.value, s.value.vlen);
			return *out ? SG_OK : SG_ERR_NOMEM;
		}
		if (match && !want_name)
			return SG_ERR_NOTFOUND; /* the first form has no action */
	}
	return SG_ERR_NOTFOUND;
}

sg_err sg_simc_html_input(const char *html, size_t len, const char *name, char **out)
{
	return html_find(html, len, "input", name, out);
}

sg_err sg_simc_html_form_action(const char *html, size_t len, char **out)
{
	return html_find(html, len, "form", NULL, out);
}

/* ---- ID token validation ---------------------------------------------------------------- */

/* The "typ" of a compact JWS's header (malloc'd) or NULL. */
static char *jws_header_typ(const char *token)
{
	const char *dot = strchr(token, '.');
	if (!dot || dot == token || (size_t)(dot - token) > 2048)
		return NULL;
	unsigned char hdr[2048];
	size_t n = 0;
	if (sg_b64url_decode(token, (size_t)(dot - token), hdr, sizeof hdr, &n) != SG_OK)
		return NULL;
	json_t *h = json_loadb((const char *)hdr, n, 0, NULL);
	char *typ = xstrdup(json_string_value(json_object_get(h, "typ")));
	json_decref(h);
	return typ;
}

sg_err sg_simc_validate_id_token(const struct sg_jws_keyset *ks, const char *id_token,
                                 const struct sg_simc_id_expect *x, json_t **claims_out, char *err,
                                 size_t errlen)
{
	if (claims_out)
		*claims_out = NULL;
	if (!ks || !id_token || !x || !x->issuer || !x->client_id)
		return sg_fail(err, errlen, SG_ERR_INVALID, "ID token: bad arguments");
	/* RFC 8725 §3.11: an access token (typ at+jwt, RFC 9068) is not an ID token */
	char *typ = jws_header_typ(id_token);
	int is_at =
	    typ && (strcasecmp(typ, "at+jwt") == 0 || strcasecmp(typ, "application/at+jwt") == 0);
	free(typ);
	if (is_at)
		return sg_fail(err, errlen, SG_ERR_DENIED, "ID token: it is an access token (typ)");
	/* OIDC Core §3.1.3.7 items 2, 3, 6, 7, 9, 10: signature with a JWKS key (ES256 only:
	 * the alg registered for sealguard), iss exact, aud contains client_id, exp and iat */
	struct sg_jws_policy pol = {
	    .iss = x->issuer, .aud = x->client_id, .leeway = SG_SIMC_LEEWAY_S, .now = x->now};
	json_t *claims = NULL;
	char why[256] = "";
	sg_jws_status st = sg_jws_verify(ks, id_token, &pol, &claims, why, sizeof why);
	if (st != SG_JWS_OK)
		return sg_fail(err, errlen, st == SG_JWS_INTERNAL ? SG_ERR_INTERNAL : SG_ERR_DENIED,
		               "ID token: %s (%s)", sg_jws_status_str(st), why);
	sg_err e = SG_OK;
	const json_t *aud = json_object_get(claims, "aud");
	const json_t *azp = json_object_get(claims, "azp");
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	const json_t *nonce = json_object_get(claims, "nonce");
	const json_t *acr = json_object_get(claims, "acr");
	const char *at_hash = json_string_value(json_object_get(claims, "at_hash"));
	if (azp && (!json_is_string(azp) || strcmp(json_string_value(azp), x->client_id) != 0)) {
		/* item 5: azp, when present, is our client_id */
		e = sg_fail(err, errlen, SG_ERR_DENIED, "ID token: azp is not this client");
	} else if (!azp && json_is_array(aud) && json_array_size(aud) > 1) {
		/* item 4: several audiences need an azp */
		e = sg_fail(err, errlen, SG_ERR_DENIED,
		            "ID token: several audiences and no azp claim");
	} else if (!sub || !*sub || strlen(sub) > 255) {
		/* OIDC Core §2, I7: sub is REQUIRED, at most 255 ASCII characters */
		e = sg_fail(err, errlen, SG_ERR_DENIED, "ID token: sub missing or too long");
	} else if (x->sub && strcmp(sub, x->sub) != 0) {
		/* OIDC Core §12.2: a refreshed ID token is about the same subject */
		e = sg_fail(err, errlen, SG_ERR_DENIED, "ID token: sub differs from the login's");
	} else if (x->nonce &&
	           (!json_is_string(nonce) ||
	            strlen(json_string_value(nonce)) != strlen(x->nonce) ||
	            CRYPTO_memcmp(json_string_value(nonce), x->nonce, strlen(x->nonce)) != 0)) {
		/* item 11: the nonce sent in the authorization request must come back */
		e = sg_fail(err, errlen, SG_ERR_DENIED,
		            nonce ? "ID token: nonce mismatch" : "ID token: nonce missing");
	} else if (acr && (!json_is_string(acr) || strcmp(json_string_value(acr), SG_SIMC_ACR))) {
		/* item 12: the acr requested with acr_values */
		e = sg_fail(err, errlen, SG_ERR_DENIED, "ID token: acr is not %s", SG_SIMC_ACR);
	} else if (at_hash && x->access_token) {
		/* §3.1.3.8 / §3.2.2.9: left half of SHA-256 (ES256) of the access token */
		unsigned char h[SHA256_DIGEST_LENGTH];
		char want[SG_SIMC_RANDOM];
		SHA256((const unsigned char *)x->access_token, strlen(x->access_token), h);
		sg_b64url_encode(h, sizeof h / 2, want);
		if (strcmp(want, at_hash) != 0)
			e = sg_fail(err, errlen, SG_ERR_DENIED,
			            "ID token: at_hash does not match the access token");
	}
	if (e == SG_OK && claims_out)
		*claims_out = json_incref(claims);
	json_decref(claims);
	return e;
}

/* ---- client ----------------------------------------------------------------------------- */

sg_err sg_simc_new(const struct sg_simc_conf *conf, struct sg_simc **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!conf || !conf->issuer || !conf->client_id || !conf->client_secret ||
	    !conf->redirect_uri)
		return sg_fail(
		    err, errlen, SG_ERR_INVALID,
		    "SIM-C: issuer, client id, client secret and redirect URI are needed");
	if (strncmp(conf->issuer, "https://", 8) != 0) /* I12, OIDC Core §2: iss is https */
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "SIM-C: the issuer must be an https URL");
	struct sg_simc *c = calloc(1, sizeof *c);
	if (!c)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "SIM-C: out of memory");
	c->issuer = strdup(conf->issuer);
	c->client_id = strdup(conf->client_id);
	c->client_secret = strdup(conf->client_secret);
	c->redirect_uri = strdup(conf->redirect_uri);
	c->ca = xstrdup(conf->ca);
	c->crl = xstrdup(conf->crl);
	if (!c->issuer || !c->client_id || !c->client_secret || !c->redirect_uri ||
	    (conf->ca && !c->ca) || (conf->crl && !c->crl)) {
		sg_simc_free(c);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "SIM-C: out of memory");
	}
	struct sg_http_client_conf hc = {
	    .tls = {.mode = SG_TLS_SERVER_AUTH, .ca = c->ca, .crl = c->crl}, /* I12, T5 */
	    .http2 = 1,
	    .timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 30000,
	    .max_response_bytes = 1 << 20,
	};
	sg_err e = sg_http_client_new(&hc, &c->http, err, errlen);
	if (e != SG_OK) {
		sg_simc_free(c);
		return e;
	}
	*out = c;
	return SG_OK;
}

void sg_simc_free(struct sg_simc *c)
{
	if (!c)
		return;
	sg_http_client_free(c->http);
	json_decref(c->meta);
	sg_jws_keyset_free(c->keys);
	free(c->issuer);
	free(c->client_id);
	free_secret(c->client_secret);
	free(c->redirect_uri);
	free(c->ca);
	free(c->crl);
	free(c);
}

const char *sg_simc_metadata(const struct sg_simc *c, const char *name)
{
	return c && c->meta ? json_string_value(json_object_get(c->meta, name)) : NULL;
}

/* The error for an answer other than 200 from what at url. */
static sg_err status_fail(char *err, size_t errlen, const char *what, const char *url, long st)
{
	return sg_fail(err, errlen,
	               st == 401   ? SG_ERR_DENIED
	               : st == 429 ? SG_ERR_LIMIT
	                           : SG_ERR_PROTO,
	               "%s %s answered HTTP %ld%s", what, url, st,
	               st == 429 ? " (too many requests from this address; try again later)" : "");
}

/* GET url expecting 200 with a JSON object; *out owned by the caller. */
static sg_err get_json(struct sg_simc *c, const char *what, const char *url,
                       const char *const *headers, json_t **out, char *err, size_t errlen)
{
	*out = NULL;
	struct sg_http_response r;
	sg_err e = sg_http_client_request(c->http, "GET", url, headers, NULL, 0, &r, err, errlen);
	if (e != SG_OK)
		return e;
	if (r.status != 200) {
		long st = r.status;
		sg_http_response_free(&r); /* (zeroes r) */
		return status_fail(err, errlen, what, url, st);
	}
	json_error_t je;
	json_t *j = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, &je);
	sg_http_response_free(&r);
	if (!json_is_object(j)) {
		json_decref(j);
		return sg_fail(err, errlen, SG_ERR_PROTO, "%s %s: not a JSON object", what, url);
	}
	*out = j;
	return SG_OK;
}

static sg_err fetch_jwks(struct sg_simc *c, char *err, size_t errlen)
{
	const char *uri = sg_simc_metadata(c, "jwks_uri");
	struct sg_http_response r;
	sg_err e = sg_http_client_request(c->http, "GET", uri, NULL, NULL, 0, &r, err, errlen);
	if (e != SG_OK)
		return e;
	if (r.status != 200) {
		long st = r.status;
		sg_http_response_free(&r); /* (zeroes r) */
		return status_fail(err, errlen, "JWKS", uri, st);
	}
	struct sg_jws_keyset *ks = NULL;
	char why[256] = "";
	e = sg_jws_keyset_parse(r.body.data ? r.body.data : "", r.body.len, &ks, why, sizeof why);
	sg_http_response_free(&r);
	if (e != SG_OK)
		return sg_fail(err, errlen, SG_ERR_PROTO, "JWKS %s: %s", uri, why);
	sg_jws_keyset_free(c->keys);
	c->keys = ks;
	c->keys_fetched_ms = sg_now_ms();
	return SG_OK;
}

sg_err sg_simc_discover(struct sg_simc *c, char *err, size_t errlen)
{
	if (c->meta && c->keys)
		return SG_OK;
	/* OIDC Discovery §4.1: ISSUER (without a trailing '/') + /.well-known/openid-configuration
	 */
	struct sg_buf url = SG_BUF_INIT;
	size_t il = strlen(c->issuer);
	while (il && c->issuer[il - 1] == '/')
		il--;
	if (sg_buf_printf(&url, "%.*s/.well-known/openid-configuration", (int)il, c->issuer) !=
	    SG_OK)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	json_t *m = NULL;
	sg_err e = get_json(c, "discovery", url.data, NULL, &m, err, errlen);
	sg_buf_free(&url);
	if (e != SG_OK)
		return e;
	const char *iss = json_string_value(json_object_get(m, "issuer"));
	if (!iss || strcmp(iss, c->issuer) != 0) {
		/* OIDC Discovery §4.3: the issuer MUST be identical to the one asked */
		e = sg_fail(err, errlen, SG_ERR_PROTO,
		            "discovery: the provider calls itself '%s', not '%s'", iss ? iss : "",
		            c->issuer);
		json_decref(m);
		return e;
	}
	static const char *need[] = {"authorization_endpoint", "token_endpoint", "jwks_uri"};
	for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
		const char *v = json_string_value(json_object_get(m, need[i]));
		if (!v || strncmp(v, "https://", 8) != 0) {
			json_decref(m);
			return sg_fail(err, errlen, SG_ERR_PROTO,
			               "discovery: %s missing or not https", need[i]);
		}
	}
	const json_t *ccm = json_object_get(m, "code_challenge_methods_supported");
	if (json_is_array(ccm)) {
		int s256 = 0;
		size_t i;
		json_t *v;
		json_array_foreach(ccm, i, v) s256 |=
		    json_is_string(v) && strcmp(json_string_value(v), "S256") == 0;
		if (!s256) {
			json_decref(m);
			return sg_fail(err, errlen, SG_ERR_PROTO,
			               "discovery: the provider does not support PKCE S256");
		}
	}
	json_decref(c->meta);
	c->meta = m;
	return fetch_jwks(c, err, errlen);
}

sg_err sg_simc_authorization_url(struct sg_simc *c, const struct sg_simc_request *req,
                                 const char *scope, char **url, char *err, size_t errlen)
{
	*url = NULL;
	const char *ep = sg_simc_metadata(c, "authorization_endpoint");
	if (!ep)
		return sg_fail(err, errlen, SG_ERR_INVALID, "SIM-C: discovery has not run");
	struct sg_buf sc = SG_BUF_INIT, q = SG_BUF_INIT;
	sg_err e = SG_OK;
	/* I2: scope must contain openid */
	int has_openid = 0;
	for (const char *p = scope ? scope : ""; *p;) {
		size_t n = strcspn(p, " ");
		has_openid |= n == 6 && strncmp(p, "openid", 6) == 0;
		p += n;
		p += *p == ' ';
	}
	if (!has_openid)
		e = sg_buf_appends(&sc, "openid");
	if (e == SG_OK && scope && *scope)
		e = sg_buf_printf(&sc, "%s%s", sc.len ? " " : "", scope);
	/* I2: every parameter REQUIRED; RFC 7636 §4.3 */
	if (e == SG_OK)
		e = form_add(&q, "response_type", "code");
	if (e == SG_OK)
		e = form_add(&q, "client_id", c->client_id);
	if (e == SG_OK)
		e = form_add(&q, "scope", sc.data ? sc.data : "openid");
	if (e == SG_OK)
		e = form_add(&q, "redirect_uri", c->redirect_uri);
	if (e == SG_OK)
		e = form_add(&q, "state", req->state);
	if (e == SG_OK)
		e = form_add(&q, "nonce", req->nonce);
	if (e == SG_OK)
		e = form_add(&q, "acr_values", SG_SIMC_ACR);
	if (e == SG_OK)
		e = form_add(&q, "code_challenge", req->challenge);
	if (e == SG_OK)
		e = form_add(&q, "code_challenge_method", "S256");
	struct sg_buf u = SG_BUF_INIT;
	if (e == SG_OK)
		e = sg_buf_printf(&u, "%s%c%s", ep, strchr(ep, '?') ? '&' : '?', q.data);
	sg_buf_free(&sc);
	sg_buf_free(&q);
	if (e != SG_OK) {
		sg_buf_free(&u);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	*url = sg_buf_steal(&u);
	return SG_OK;
}

void sg_simc_tokens_clear(struct sg_simc_tokens *t)
{
	free_secret(t->access_token);
	free(t->token_type);
	free_secret(t->id_token);
	free_secret(t->refresh_token);
	free(t->scope);
	json_decref(t->id_claims);
	memset(t, 0, sizeof *t);
}

/* RFC 6749 §2.3.1: client_secret_basic, id and secret form-urlencoded before base64. */
static sg_err basic_auth_header(const struct sg_simc *c, struct sg_buf *h)
{
	char *id = curl_easy_escape(NULL, c->client_id, 0);
	char *sec = curl_easy_escape(NULL, c->client_secret, 0);
	struct sg_buf plain = SG_BUF_INIT;
	sg_err e = id && sec ? sg_buf_printf(&plain, "%s:%s", id, sec) : SG_ERR_NOMEM;
	if (sec) {
		OPENSSL_cleanse(sec, strlen(sec));
		curl_free(sec);
	}
	curl_free(id);
	if (e == SG_OK)
		e = sg_buf_reserve(h, 4 * (plain.len / 3 + 1) + 32);
	if (e == SG_OK) {
		sg_buf_appends(h, "Authorization: Basic ");
		int n = EVP_EncodeBlock((unsigned char *)h->data + h->len,
		                        (const unsigned char *)plain.data, (int)plain.len);
		h->len += (size_t)n;
		h->data[h->len] = '\0';
	}
	sg_buf_wipe(&plain);
	return e;
}

/* POSTs a token request (form in body) and parses the token response (RFC 6749 §5.1) or
 * error (§5.2). On SG_OK *json is the response object (owned by the caller, holds tokens). */
static sg_err token_request(struct sg_simc *c, const struct sg_buf *body, json_t **json, char *err,
                            size_t errlen)
{
	*json = NULL;
	struct sg_buf auth = SG_BUF_INIT;
	if (basic_auth_header(c, &auth) != SG_OK)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	const char *headers[] = {auth.data, "Content-Type: application/x-www-form-urlencoded",
	                         "Accept: application/json", NULL};
	const char *ep = sg_simc_metadata(c, "token_endpoint");
	struct sg_http_response r;
	sg_err e = sg_http_client_request(c->http, "POST", ep, headers, body->data, body->len, &r,
	                                  err, errlen);
	sg_buf_wipe(&auth);
	if (e != SG_OK)
		return e;
	json_t *j = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
	long status = r.status;
	sg_buf_wipe(&r.body);
	sg_http_response_free(&r);
	if (!json_is_object(j)) {
		json_decref(j);
		return sg_fail(err, errlen, SG_ERR_PROTO,
		               "token endpoint answered HTTP %ld without a JSON object", status);
	}
	if (status == 429) { /* G4: the listener's per-address rate limit, a ProblemDetails */
		wipe_json_strings(j);
		json_decref(j);
		return status_fail(err, errlen, "token endpoint", ep, status);
	}
	if (status != 200) {
		/* RFC 6749 §5.2 */
		const char *error = json_string_value(json_object_get(j, "error"));
		const char *desc = json_string_value(json_object_get(j, "error_description"));
		e = sg_fail(err, errlen,
		            status == 400 || status == 401 ? SG_ERR_DENIED : SG_ERR_PROTO,
		            "token endpoint refused (HTTP %ld): %s%s%s", status,
		            error ? error : "no error code", desc ? ": " : "", desc ? desc : "");
		wipe_json_strings(j);
		json_decref(j);
		return e;
	}
	*json = j;
	return SG_OK;
}

/* Validates a token response (I6) into out; the ID token against x. */
static sg_err take_tokens(struct sg_simc *c, json_t *j, const char *req_scope, int need_id,
                          struct sg_simc_id_expect *x, struct sg_simc_tokens *out, char *err,
                          size_t errlen)
{
	const char *at = json_string_value(json_object_get(j, "access_token"));
	const char *tt = json_string_value(json_object_get(j, "token_type"));
	const json_t *ei = json_object_get(j, "expires_in");
	const char *idt = json_string_value(json_object_get(j, "id_token"));
	const char *rt = json_string_value(json_object_get(j, "refresh_token"));
	const char *sc = json_string_value(json_object_get(j, "scope"));
	/* I6: access_token, token_type "bearer" and expires_in are REQUIRED */
	if (!at || !*at)
		return sg_fail(err, errlen, SG_ERR_PROTO, "token response: no access_token");
	if (!tt || strcasecmp(tt, "bearer") != 0) /* RFC 6749 §7.1, case-insensitive */
		return sg_fail(err, errlen, SG_ERR_PROTO,
		               "token response: token_type is not bearer");
	if (!json_is_integer(ei) || json_integer_value(ei) <= 0)
		return sg_fail(err, errlen, SG_ERR_PROTO,
		               "token response: expires_in missing or not a positive integer");
	if (need_id && !idt) /* OIDC Core §3.1.3.3: id_token REQUIRED */
		return sg_fail(err, errlen, SG_ERR_PROTO, "token response: no id_token");
	json_t *claims = NULL;
	if (idt) {
		x->access_token = at;
		sg_err e = sg_simc_validate_id_token(c->keys, idt, x, &claims, err, errlen);
		if (e == SG_ERR_DENIED && strstr(err, "unknown_kid") &&
		    sg_now_ms() - c->keys_fetched_ms > 10000) {
			/* the SIM-S may have rotated its key: one JWKS refetch, rate-limited */
			if (fetch_jwks(c, err, errlen) == SG_OK)
				e = sg_simc_validate_id_token(c->keys, idt, x, &claims, err,
				                              errlen);
		}
		if (e != SG_OK)
			return e;
	}
	memset(out, 0, sizeof *out);
	out->access_token = strdup(at);
	out->token_type = strdup(tt);
	out->id_token = xstrdup(idt);
	out->refresh_token = xstrdup(rt);
	/* RFC 6749 §5.1: scope is omitted when identical to the requested one */
	out->scope = xstrdup(sc ? sc : req_scope);
	out->expires_at = sg_now_ms() / 1000 + json_integer_value(ei);
	out->id_claims = claims;
	if (!out->access_token || !out->token_type || (idt && !out->id_token) ||
	    (rt && !out->refresh_token) || ((sc || req_scope) && !out->scope)) {
		sg_simc_tokens_clear(out);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	return SG_OK;
}

sg_err sg_simc_exchange_code(struct sg_simc *c, const struct sg_simc_request *req, const char *code,
                             const char *scope, struct sg_simc_tokens *out, char *err,
                             size_t errlen)
{
	memset(out, 0, sizeof *out);
	sg_err e = sg_simc_discover(c, err, errlen);
	if (e != SG_OK)
		return e;
	/* I5: grant_type, code, client_id, redirect_uri (identical), code_verifier */
	struct sg_buf b = SG_BUF_INIT;
	e = form_add(&b, "grant_type", "authorization_code");
	if (e == SG_OK)
		e = form_add(&b, "code", code);
	if (e == SG_OK)
		e = form_add(&b, "redirect_uri", c->redirect_uri);
	if (e == SG_OK)
		e = form_add(&b, "code_verifier", req->verifier);
	if (e == SG_OK)
		e = form_add(&b, "client_id", c->client_id);
	if (e != SG_OK) {
		sg_buf_wipe(&b);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	json_t *j = NULL;
	e = token_request(c, &b, &j, err, errlen);
	sg_buf_wipe(&b);
	if (e != SG_OK)
		return e;
	struct sg_simc_id_expect x = {
	    .issuer = c->issuer, .client_id = c->client_id, .nonce = req->nonce};
	e = take_tokens(c, j, scope, 1, &x, out, err, errlen);
	wipe_json_strings(j);
	json_decref(j);
	return e;
}

sg_err sg_simc_refresh(struct sg_simc *c, const char *refresh_token, const char *scope,
                       const char *prev_sub, struct sg_simc_tokens *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	sg_err e = sg_simc_discover(c, err, errlen);
	if (e != SG_OK)
		return e;
	struct sg_buf b = SG_BUF_INIT;
	e = form_add(&b, "grant_type", "refresh_token");
	if (e == SG_OK)
		e = form_add(&b, "refresh_token", refresh_token);
	if (e == SG_OK && scope && *scope) /* I9: never wider than granted */
		e = form_add(&b, "scope", scope);
	if (e != SG_OK) {
		sg_buf_wipe(&b);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	json_t *j = NULL;
	e = token_request(c, &b, &j, err, errlen);
	sg_buf_wipe(&b);
	if (e != SG_OK)
		return e;
	/* OIDC Core §12.2: same iss, sub, aud; no nonce expected */
	struct sg_simc_id_expect x = {
	    .issuer = c->issuer, .client_id = c->client_id, .sub = prev_sub};
	e = take_tokens(c, j, scope, 0, &x, out, err, errlen);
	wipe_json_strings(j);
	json_decref(j);
	return e;
}

sg_err sg_simc_userinfo(struct sg_simc *c, const char *access_token, json_t **claims, char *err,
                        size_t errlen)
{
	*claims = NULL;
	sg_err e = sg_simc_discover(c, err, errlen);
	if (e != SG_OK)
		return e;
	const char *ep = sg_simc_metadata(c, "userinfo_endpoint");
	if (!ep)
		return sg_fail(err, errlen, SG_ERR_PROTO, "discovery: no userinfo_endpoint");
	struct sg_buf h = SG_BUF_INIT;
	if (sg_buf_printf(&h, "Authorization: Bearer %s", access_token) != SG_OK)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	const char *headers[] = {h.data, "Accept: application/json", NULL};
	e = get_json(c, "userinfo", ep, headers, claims, err, errlen);
	sg_buf_wipe(&h);
	return e;
}

/* Resolves the login form's action against the authorization endpoint; it must stay on the
 * same origin (credentials go nowhere else). *out malloc'd. */
static sg_err login_url(const char *authz_ep, const char *action, char **out, char *err,
                        size_t errlen)
{
	*out = NULL;
	CURLU *base = curl_url(), *u = NULL;
	char *s1 = NULL, *h1 = NULL, *p1 = NULL, *s2 = NULL, *h2 = NULL, *p2 = NULL, *full = NULL;
	sg_err e = SG_ERR_PROTO;
	if (!base || curl_url_set(base, CURLUPART_URL, authz_ep, 0) != CURLUE_OK)
		goto done;
	if (!(u = curl_url_dup(base)) ||
	    curl_url_set(u, CURLUPART_URL, action ? action : "/oauth2/login", 0) != CURLUE_OK)
		goto done;
	curl_url_get(base, CURLUPART_SCHEME, &s1, 0);
	curl_url_get(base, CURLUPART_HOST, &h1, 0);
	curl_url_get(base, CURLUPART_PORT, &p1, CURLU_DEFAULT_PORT);
	curl_url_get(u, CURLUPART_SCHEME, &s2, 0);
	curl_url_get(u, CURLUPART_HOST, &h2, 0);
	curl_url_get(u, CURLUPART_PORT, &p2, CURLU_DEFAULT_PORT);
	if (s1 && h1 && p1 && s2 && h2 && p2 && strcasecmp(s1, s2) == 0 &&
	    strcasecmp(h1, h2) == 0 && strcmp(p1, p2) == 0 &&
	    curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK) {
		*out = strdup(full);
		e = *out ? SG_OK : SG_ERR_NOMEM;
	}
done:
	curl_free(s1), curl_free(h1), curl_free(p1);
	curl_free(s2), curl_free(h2), curl_free(p2);
	curl_free(full);
	curl_url_cleanup(base);
	curl_url_cleanup(u);
	if (e != SG_OK)
		sg_fail(err, errlen, e,
		        "the login form posts to '%s', not to the SIM-S that served it",
		        action ? action : "/oauth2/login");
	return e;
}

#define NO_VALID_RESPONSE "no valid authorization response"

/* Takes a redirect to the redirect URI: parse, I4 check, error or code. */
static sg_err take_redirect(struct sg_simc *c, const struct sg_simc_request *req,
                            const char *location, struct sg_simc_response *resp, char *err,
                            size_t errlen)
{
	if (strlen(location) >= sizeof((struct sg_http_response *)0)->location - 1)
		return sg_fail(err, errlen, SG_ERR_PROTO, "the redirect URI is too long");
	sg_err e = sg_simc_parse_redirect(location, c->redirect_uri, resp, err, errlen);
	if (e != SG_OK)
		return e;
	if (sg_simc_accept_response(req, c->issuer, resp) != SG_OK) {
		/* I4: dropped silently; nothing of it is used or shown */
		sg_simc_response_clear(resp);
		return sg_fail(err, errlen, SG_ERR_PROTO, NO_VALID_RESPONSE);
	}
	if (resp->error) { /* RFC 6749 §4.1.2.1 */
		e = sg_fail(err, errlen, SG_ERR_DENIED, "authorization refused: %s%s%s",
		            resp->error, resp->error_description ? ": " : "",
		            resp->error_description ? resp->error_description : "");
		sg_simc_response_clear(resp);
		return e;
	}
	if (!resp->code || !*resp->code) {
		sg_simc_response_clear(resp);
		return sg_fail(err, errlen, SG_ERR_PROTO, NO_VALID_RESPONSE " (no code)");
	}
	return SG_OK;
}

static int is_redirect(long status)
{
	return status == 302 || status == 303 || status == 301 || status == 307;
}

sg_err sg_simc_login(struct sg_simc *c, const char *scope, const char *username,
                     const char *password, struct sg_simc_tokens *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (!username || !password)
		return sg_fail(err, errlen, SG_ERR_INVALID, "SIM-C: user name and password needed");
	sg_err e = sg_simc_discover(c, err, errlen);
	if (e != SG_OK)
		return e;
	struct sg_simc_request req;
	if ((e = sg_simc_request_new(&req)) != SG_OK)
		return sg_fail(err, errlen, e, "SIM-C: no randomness");
	char *url = NULL, *tx = NULL, *action = NULL, *post_url = NULL;
	struct sg_http_response r = {0};
	struct sg_simc_response resp = {0};
	struct sg_buf form = SG_BUF_INIT;
	if ((e = sg_simc_authorization_url(c, &req, scope, &url, err, errlen)) != SG_OK)
		goto out;
	/* I2: the authorization request; I3: the SIM-S answers with the login page */
	if ((e = sg_http_client_request(c->http, "GET", url, NULL, NULL, 0, &r, err, errlen)) !=
	    SG_OK)
		goto out;
	if (is_redirect(r.status) && r.location[0]) {
		/* an error redirect (RFC 6749 §4.1.2.1), subject to I4 as well */
		e = take_redirect(c, &req, r.location, &resp, err, errlen);
		if (e == SG_OK)
			e = sg_fail(err, errlen, SG_ERR_PROTO,
			            "the SIM-S issued a code without a login");
		goto out;
	}
	if (r.status != 200) {
		e = sg_fail(err, errlen, r.status == 429 ? SG_ERR_LIMIT : SG_ERR_PROTO,
		            "authorization endpoint answered HTTP %ld", r.status);
		goto out;
	}
	if (sg_simc_html_input(r.body.data ? r.body.data : "", r.body.len, "tx", &tx) != SG_OK) {
		e = sg_fail(err, errlen, SG_ERR_PROTO,
		            "the SIM-S answered without a login form (no tx field)");
		goto out;
	}
	if (sg_simc_html_form_action(r.body.data ? r.body.data : "", r.body.len, &action) ==
	    SG_ERR_NOMEM) {
		e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((e = login_url(url, action, &post_url, err, errlen)) != SG_OK)
		goto out;
	sg_http_response_free(&r);
	/* I3: POST tx + username + password */
	e = form_add(&form, "tx", tx);
	if (e == SG_OK)
		e = form_add(&form, "username", username);
	if (e == SG_OK)
		e = form_add(&form, "password", password);
	if (e != SG_OK) {
		e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		goto out;
	}
	const char *hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	e = sg_http_client_request(c->http, "POST", post_url, hdr, form.data, form.len, &r, err,
	                           errlen);
	sg_buf_wipe(&form);
	if (e != SG_OK)
		goto out;
	if (r.status == 429) {
		e = sg_fail(
		    err, errlen, SG_ERR_LIMIT,
		    "the SIM-S is throttling logins or requests from this address (HTTP 429); "
		    "try again later");
		goto out;
	}
	if (r.status == 200) { /* the login page again: generic failure, no user enumeration */
		e = sg_fail(err, errlen, SG_ERR_DENIED,
		            "login refused: wrong user name or password, or the account is "
		            "disabled");
		goto out;
	}
	if (!is_redirect(r.status) || !r.location[0]) {
		e = sg_fail(err, errlen, SG_ERR_PROTO, "the login POST answered HTTP %ld",
		            r.status);
		goto out;
	}
	/* the redirect is taken without following it: the redirect URI is never dereferenced */
	if ((e = take_redirect(c, &req, r.location, &resp, err, errlen)) != SG_OK)
		goto out;
	e = sg_simc_exchange_code(c, &req, resp.code, scope, out, err, errlen);
out:
	sg_http_response_free(&r);
	sg_simc_response_clear(&resp);
	sg_buf_wipe(&form);
	free_secret(tx);
	free(action);
	free(post_url);
	free(url);
	sg_simc_request_wipe(&req);
	return e;
}
