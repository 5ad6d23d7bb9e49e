/* client/valsrv.c: the VAL-server SDK (TS 33.434 §5.1.1 R3, I10): client credentials over
 * mutual TLS (RFC 6749 §4.4, RFC 8705 tls_client_auth), the token cached and renewed, SEAL API
 * calls with it. */
#include "client/valsrv.h"

#include "base/buf.h"
#include "base/clock.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RENEW_MAX_MS 60000 /* renew at most this long before expiry */

struct sg_valsrv {
	char *name, *cert, *key, *ca, *crl, *token_url, *issuer, *scope, *resource;
	struct sg_http_client *http;
	char *token;        /* the cached access token (secret) */
	char *granted;      /* its scope */
	int64_t expires_ms; /* its expiry */
	int64_t renew_ms;   /* when to get a new one */
};

static void free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

static int dup_opt(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return !src || *dst;
}

sg_err sg_valsrv_new(const struct sg_valsrv_conf *conf, struct sg_valsrv **out, char *err,
                     size_t errlen)
{
	*out = NULL;
	if (!conf || !conf->name || !*conf->name || !conf->cert || !conf->key || !conf->ca)
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "VAL server client: name, certificate, key and CA are required");
	if (!conf->token_url && !conf->issuer)
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "VAL server client: a token endpoint or an issuer is required");
	const char *u = conf->token_url ? conf->token_url : conf->issuer;
	if (strncmp(u, "https://", 8) != 0)
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "VAL server client: %s is not an https URL (R3: TLS is mandatory)",
		               u);
	struct sg_valsrv *v = calloc(1, sizeof *v);
	if (!v)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	if (!dup_opt(&v->name, conf->name) || !dup_opt(&v->cert, conf->cert) ||
	    !dup_opt(&v->key, conf->key) || !dup_opt(&v->ca, conf->ca) ||
	    !dup_opt(&v->crl, conf->crl) || !dup_opt(&v->token_url, conf->token_url) ||
	    !dup_opt(&v->issuer, conf->issuer) || !dup_opt(&v->scope, conf->scope) ||
	    !dup_opt(&v->resource, conf->resource)) {
		sg_valsrv_free(v);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	/* R3: the T profile with the VAL server's certificate on every connection */
	struct sg_http_client_conf hc = {
	    .tls =
	        {.mode = SG_TLS_MUTUAL, .cert = v->cert, .key = v->key, .ca = v->ca, .crl = v->crl},
	    .http2 = conf->http2,
	    .timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 30000,
	};
	sg_err e = sg_http_client_new(&hc, &v->http, err, errlen);
	if (e != SG_OK) {
		sg_valsrv_free(v);
		return e;
	}
	*out = v;
	return SG_OK;
}

void sg_valsrv_forget(struct sg_valsrv *v)
{
	if (!v)
		return;
	free_secret(v->token);
	v->token = NULL;
	free(v->granted);
	v->granted = NULL;
	v->expires_ms = v->renew_ms = 0;
}

void sg_valsrv_free(struct sg_valsrv *v)
{
	if (!v)
		return;
	sg_valsrv_forget(v);
	sg_http_client_free(v->http);
	free(v->name);
	free(v->cert);
	free(v->key);
	free(v->ca);
	free(v->crl);
	free(v->token_url);
	free(v->issuer);
	free(v->scope);
	free(v->resource);
	free(v);
}

const char *sg_valsrv_token_endpoint(const struct sg_valsrv *v)
{
	return v ? v->token_url : NULL;
}

/* OIDC Discovery §4 + RFC 8705 §5: the mutual-TLS alias of the token endpoint, else the token
 * endpoint itself. */
static sg_err discover(struct sg_valsrv *v, char *err, size_t errlen)
{
	struct sg_buf url = SG_BUF_INIT;
	size_t il = strlen(v->issuer);
	while (il && v->issuer[il - 1] == '/')
		il--;
	if (sg_buf_printf(&url, "%.*s/.well-known/openid-configuration", (int)il, v->issuer) !=
	    SG_OK)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	struct sg_http_response r;
	const char *hdrs[] = {"Accept: application/json", NULL};
	sg_err e = sg_http_client_request(v->http, "GET", url.data, hdrs, NULL, 0, &r, err, errlen);
	if (e != SG_OK) {
		sg_buf_free(&url);
		return e;
	}
	json_t *m = r.status == 200
	                ? json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL)
	                : NULL;
	if (!json_is_object(m)) {
		e = sg_fail(err, errlen, SG_ERR_PROTO, "discovery %s answered HTTP %ld%s", url.data,
		            r.status, r.status == 200 ? " without a JSON object" : "");
	} else {
		const char *iss = json_string_value(json_object_get(m, "issuer"));
		const char *alias = json_string_value(
		    json_object_get(json_object_get(m, "mtls_endpoint_aliases"), "token_endpoint"));
		const char *ep =
		    alias ? alias : json_string_value(json_object_get(m, "token_endpoint"));
		if (!iss || strlen(iss) != il || strncmp(iss, v->issuer, il) != 0)
			/* OIDC Discovery §4.3: the issuer must be the one asked */
			e = sg_fail(err, errlen, SG_ERR_PROTO,
			            "discovery: the provider calls itself '%s', not '%.*s'",
			            iss ? iss : "", (int)il, v->issuer);
		else if (!ep || strncmp(ep, "https://", 8) != 0)
			e = sg_fail(err, errlen, SG_ERR_PROTO,
			            "discovery: no https token endpoint for mutual TLS");
		else if (!(v->token_url = strdup(ep)))
			e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	json_decref(m);
	sg_http_response_free(&r);
	sg_buf_free(&url);
	return e;
}

static sg_err form_add(struct sg_buf *b, const char *name, const char *value)
{
	char *enc = curl_easy_escape(NULL, value, 0);
	if (!enc)
		return SG_ERR_NOMEM;
	sg_err e = sg_buf_printf(b, "%s%s=%s", b->len ? "&" : "", name, enc);
	curl_free(enc);
	return e;
}

/* RFC 6749 §4.4.2 access token request with RFC 8705 §2.1.2 tls_client_auth. */
static sg_err fetch_token(struct sg_valsrv *v, char *err, size_t errlen)
{
	sg_err e = SG_OK;
	if (!v->token_url && (e = discover(v, err, errlen)) != SG_OK)
		return e;
	struct sg_buf b = SG_BUF_INIT;
	e = form_add(&b, "grant_type", "client_credentials");
	if (e == SG_OK)
		e = form_add(&b, "client_id", v->name);
	if (e == SG_OK && v->scope)
		e = form_add(&b, "scope", v->scope);
	if (e == SG_OK && v->resource) /* RFC 8707: a token per SEAL service (I10) */
		e = form_add(&b, "resource", v->resource);
	if (e != SG_OK) {
		sg_buf_free(&b);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded",
	                      "Accept: application/json", NULL};
	struct sg_http_response r;
	int64_t sent_ms = sg_now_ms();
	e = sg_http_client_request(v->http, "POST", v->token_url, hdrs, b.data, b.len, &r, err,
	                           errlen);
	sg_buf_free(&b);
	if (e != SG_OK)
		return e;
	json_t *j = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
	long status = r.status;
	sg_buf_wipe(&r.body);
	sg_http_response_free(&r);
	if (!json_is_object(j)) {
		json_decref(j);
		return sg_fail(err, errlen, SG_ERR_PROTO,
		               "token endpoint %s answered HTTP %ld without a JSON object",
		               v->token_url, status);
	}
	const char *tok = json_string_value(json_object_get(j, "access_token"));
	const char *type = json_string_value(json_object_get(j, "token_type"));
	const char *scope = json_string_value(json_object_get(j, "scope"));
	json_t *ei = json_object_get(j, "expires_in");
	if (status != 200) {
		/* RFC 6749 §5.2 */
		const char *error = json_string_value(json_object_get(j, "error"));
		const char *desc = json_string_value(json_object_get(j, "error_description"));
		e = sg_fail(err, errlen,
		            status == 400 || status == 401 ? SG_ERR_DENIED : SG_ERR_PROTO,
		            "token endpoint refused (HTTP %ld): %s%s%s", status,
		            error ? error : "no error code", desc ? ": " : "", desc ? desc : "");
	} else if (!tok || !*tok || !type || strcasecmp(type, "bearer") != 0 ||
	           !json_is_integer(ei) || json_integer_value(ei) <= 0) {
		/* RFC 6749 §5.1: access_token, token_type, expires_in (I6) */
		e = sg_fail(err, errlen, SG_ERR_PROTO,
		            "token response without access_token, token_type bearer or expires_in");
	} else {
		sg_valsrv_forget(v);
		/* at most a year: a larger expires_in would overflow the milliseconds below */
		json_int_t secs = json_integer_value(ei);
		int64_t life = (int64_t)(secs > 31536000 ? 31536000 : secs) * 1000;
		int64_t margin = life / 10 < RENEW_MAX_MS ? life / 10 : RENEW_MAX_MS;
		v->token = strdup(tok);
		v->granted = strdup(scope ? scope : (v->scope ? v->scope : ""));
		/* counted from when the request left: the token cannot outlive that */
		v->expires_ms = sent_ms + life;
		v->renew_ms = v->expires_ms - margin;
		if (!v->token || !v->granted) {
			sg_valsrv_forget(v);
			e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		}
	}
	const char *k;
	json_t *val;
	json_object_foreach(j, k, val) if (json_is_string(val))
	    OPENSSL_cleanse((char *)json_string_value(val), json_string_length(val));
	json_decref(j);
	return e;
}

sg_err sg_valsrv_token(struct sg_valsrv *v, const char **token, int64_t *expires_at_ms,
                       const char **scope, char *err, size_t errlen)
{
	if (!v || !token)
		return sg_fail(err, errlen, SG_ERR_INVALID, "VAL server client: no client");
	*token = NULL;
	if (!v->token || sg_now_ms() >= v->renew_ms) {
		sg_err e = fetch_token(v, err, errlen);
		if (e != SG_OK)
			return e;
	}
	*token = v->token;
	if (expires_at_ms)
		*expires_at_ms = v->expires_ms;
	if (scope)
		*scope = v->granted;
	return SG_OK;
}

sg_err sg_valsrv_request(struct sg_valsrv *v, const char *method, const char *url,
                         const char *content_type, const void *body, size_t len,
                         struct sg_http_response *resp, char *err, size_t errlen)
{
	memset(resp, 0, sizeof *resp);
	if (!url || strncmp(url, "https://", 8) != 0)
		return sg_fail(err, errlen, SG_ERR_INVALID, "%s is not an https URL (R3)",
		               url ? url : "(null)");
	for (int attempt = 0; attempt < 2; attempt++) {
		const char *tok = NULL;
		sg_err e = sg_valsrv_token(v, &tok, NULL, NULL, err, errlen);
		if (e != SG_OK)
			return e;
		struct sg_buf auth = SG_BUF_INIT, ct = SG_BUF_INIT;
		if (sg_buf_printf(&auth, "Authorization: Bearer %s", tok) != SG_OK ||
		    (content_type &&
		     sg_buf_printf(&ct, "Content-Type: %s", content_type) != SG_OK)) {
			sg_buf_wipe(&auth);
			sg_buf_free(&ct);
			return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		}
		const char *hdrs[] = {auth.data,
		                      "Accept: application/json, application/problem+json",
		                      content_type ? ct.data : NULL, NULL};
		e = sg_http_client_request(v->http, method, url, hdrs, body, body ? len : 0, resp,
		                           err, errlen);
		sg_buf_wipe(&auth);
		sg_buf_free(&ct);
		if (e != SG_OK)
			return e;
		/* RFC 6750 §3.1: the token went stale (revoked, keys rotated): one fresh try */
		if (attempt == 0 && resp->status == 401 &&
		    strstr(resp->www_authenticate, "invalid_token")) {
			sg_http_response_free(resp);
			memset(resp, 0, sizeof *resp);
			sg_valsrv_forget(v);
			continue;
		}
		break;
	}
	return SG_OK;
}

const char *sg_valsrv_audience_of_url(const char *url)
{
	static const struct {
		const char *prefix, *aud;
	} map[] = {
	    {"/ss-gm/", "sealguard:gm"},   {"/ss-ipp/", "sealguard:idm"},
	    {"/oauth2/", "sealguard:idm"}, {"/ss-kpp/", "sealguard:km"},
	    {"/ss-kir/", "sealguard:km"},  {"/sdd-", "sealguard:sdd"},
	};
	if (!url)
		return NULL;
	const char *p = strstr(url, "://");
	p = p ? strchr(p + 3, '/') : NULL;
	for (size_t i = 0; p && i < sizeof map / sizeof map[0]; i++)
		if (strncmp(p, map[i].prefix, strlen(map[i].prefix)) == 0)
			return map[i].aud;
	return NULL;
}
