/* http/client.c: the HTTP client on libcurl (OpenSSL flavour). One easy handle per client, so
 * connections (and TLS sessions) are kept alive between requests. Every TLS context curl makes
 * gets the sealguard profile through CURLOPT_SSL_CTX_FUNCTION (sg_tls_apply_profile), and
 * server verification (chain + hostname) is always on. */
#include "http/client.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 5000L
#define DEFAULT_TIMEOUT_MS         30000L
#define DEFAULT_MAX_RESPONSE       (8u * 1024 * 1024)

typedef int (*verify_cb_fn)(int, X509_STORE_CTX *);

struct sg_http_client {
	CURL *curl;
	struct sg_http_client_conf conf; /* strings below are our copies */
	char *s_cert, *s_key, *s_ca, *s_crl, *s_minv, *s_maxv, *s_suites, *s_ciphers, *s_groups,
	    *s_sigalgs, *s_psk_file, *s_psk_identity;
	char curl_err[CURL_ERROR_SIZE];
	char tls_err[256];        /* set when the profile could not be applied */
	char *peer_identity;      /* sg_http_client_set_peer_identity */
	const atomic_int *cancel; /* sg_http_client_set_cancel */
	verify_cb_fn prev_verify;
	/* the request in flight */
	struct sg_http_response *resp;
	int over_limit;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void sg_http_response_free(struct sg_http_response *r)
{
	if (!r)
		return;
	sg_buf_free(&r->body);
	memset(r, 0, sizeof *r);
}

/* --- TLS --- */

/* PSK mode: the server authenticates with the pre-shared key, never with a certificate. Any
 * certificate-based handshake (a server that ignored our PSK) is refused here, so turning off
 * curl's certificate checks for PSK cannot let an unauthenticated server through. */
static int reject_any_cert(int ok, X509_STORE_CTX *sctx)
{
	(void)ok;
	X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

static int client_ex_idx = -1;
static pthread_once_t client_ex_once = PTHREAD_ONCE_INIT;

static void client_ex_init(void)
{
	client_ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* The chain and name checks first (curl's, OpenSSL's), then the leaf must carry the expected
 * identity: a server that does not is refused inside the handshake, before the request. */
static int identity_verify_cb(int ok, X509_STORE_CTX *sctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct sg_http_client *c =
	    ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), client_ex_idx) : NULL;
	if (!c || !c->peer_identity)
		return 0;
	if (c->prev_verify)
		ok = c->prev_verify(ok, sctx);
	if (!ok || X509_STORE_CTX_get_error_depth(sctx) != 0)
		return ok;
	if (!sg_tls_cert_has_san(X509_STORE_CTX_get_current_cert(sctx), c->peer_identity)) {
		snprintf(c->tls_err, sizeof c->tls_err,
		         "the server's certificate does not carry %s", c->peer_identity);
		X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return 1;
}

static CURLcode ssl_ctx_cb(CURL *curl, void *sslctx, void *arg)
{
	(void)curl;
	struct sg_http_client *c = arg;
	SSL_CTX *ctx = sslctx;
	if (sg_tls_apply_profile(ctx, &c->conf.tls, 0, c->tls_err, sizeof c->tls_err) != SG_OK)
		return CURLE_SSL_CERTPROBLEM;
	if (c->conf.tls.mode == SG_TLS_PSK) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, reject_any_cert);
	} else if (c->peer_identity) {
		pthread_once(&client_ex_once, client_ex_init);
		c->prev_verify = SSL_CTX_get_verify_callback(ctx);
		if (client_ex_idx < 0 || SSL_CTX_set_ex_data(ctx, client_ex_idx, c) != 1)
			return CURLE_SSL_CERTPROBLEM;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, identity_verify_cb);
	}
	return CURLE_OK;
}

/* --- response capture --- */

static size_t write_cb(char *p, size_t size, size_t n, void *arg)
{
	struct sg_http_client *c = arg;
	size_t len = size * n;
	if (c->resp->body.len + len > c->conf.max_response_bytes) {
		c->over_limit = 1;
		return 0; /* aborts the transfer (CURLE_WRITE_ERROR) */
	}
	if (sg_buf_append(&c->resp->body, p, len) != SG_OK)
		return 0;
	return len;
}

static void copy_header_value(char *out, size_t outlen, const char *v, size_t len)
{
	while (len && (*v == ' ' || *v == '\t'))
		v++, len--;
	while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
		len--;
	if (len >= outlen)
		len = outlen - 1;
	memcpy(out, v, len);
	out[len] = '\0';
}

static size_t header_cb(char *p, size_t size, size_t n, void *arg)
{
	struct sg_http_client *c = arg;
	struct sg_http_response *r = c->resp;
	size_t len = size * n;
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		/* a new response head (after 1xx, or a retry): forget the previous one */
		r->content_type[0] = r->location[0] = r->www_authenticate[0] = r->etag[0] = '\0';
		return len;
	}
	static const struct {
		const char *name;
		size_t off, size;
	} want[] = {
	    {"content-type", offsetof(struct sg_http_response, content_type),
	     sizeof r->content_type},
	    {"location", offsetof(struct sg_http_response, location), sizeof r->location},
	    {"www-authenticate", offsetof(struct sg_http_response, www_authenticate),
	     sizeof r->www_authenticate},
	    {"etag", offsetof(struct sg_http_response, etag), sizeof r->etag},
	};
	const char *colon = memchr(p, ':', len);
	if (!colon)
		return len;
	size_t nlen = (size_t)(colon - p);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (strlen(want[i].name) == nlen && strncasecmp(p, want[i].name, nlen) == 0)
			copy_header_value((char *)r + want[i].off, want[i].size, colon + 1,
			                  len - nlen - 1);
	return len;
}

/* --- client --- */

static int dup_opt(char **dst, const char **field)
{
	*dst = NULL;
	if (*field && !(*dst = strdup(*field)))
		return 0;
	*field = *dst;
	return 1;
}

void sg_http_client_free(struct sg_http_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	char *s[] = {c->s_cert,   c->s_key,     c->s_ca,       c->s_crl,
	             c->s_minv,   c->s_maxv,    c->s_suites,   c->s_ciphers,
	             c->s_groups, c->s_sigalgs, c->s_psk_file, c->s_psk_identity};
	for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
		free(s[i]);
	free(c->peer_identity);
	OPENSSL_cleanse(c, sizeof *c);
	free(c);
}

sg_err sg_http_client_new(const struct sg_http_client_conf *conf, struct sg_http_client **out,
                          char *err, size_t errlen)
{
	*out = NULL;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "http client: curl_global_init: %s",
		               curl_easy_strerror(global_rc));
	if (!conf)
		return sg_fail(err, errlen, SG_ERR_INVALID, "http client: no configuration");
	if (conf->tls.mode == SG_TLS_PSK && (!conf->tls.psk_file || !conf->tls.psk_identity))
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "http client: tls mode psk needs psk_file and psk_identity");
	if (conf->tls.mode == SG_TLS_MUTUAL && !conf->tls.cert)
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "http client: mutual TLS needs a client certificate (tls.cert)");
	struct sg_http_client *c = calloc(1, sizeof *c);
	if (!c)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "http client: out of memory");
	c->conf = *conf;
	struct sg_tls_conf *t = &c->conf.tls;
	if (!dup_opt(&c->s_cert, &t->cert) || !dup_opt(&c->s_key, &t->key) ||
	    !dup_opt(&c->s_ca, &t->ca) || !dup_opt(&c->s_crl, &t->crl) ||
	    !dup_opt(&c->s_minv, &t->min_version) || !dup_opt(&c->s_maxv, &t->max_version) ||
	    !dup_opt(&c->s_suites, &t->ciphersuites) || !dup_opt(&c->s_ciphers, &t->ciphers) ||
	    !dup_opt(&c->s_groups, &t->groups) || !dup_opt(&c->s_sigalgs, &t->sigalgs) ||
	    !dup_opt(&c->s_psk_file, &t->psk_file) ||
	    !dup_opt(&c->s_psk_identity, &t->psk_identity)) {
		sg_http_client_free(c);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "http client: out of memory");
	}
	if (c->conf.connect_timeout_ms <= 0)
		c->conf.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	if (c->conf.timeout_ms <= 0)
		c->conf.timeout_ms = DEFAULT_TIMEOUT_MS;
	if (c->conf.max_response_bytes == 0)
		c->conf.max_response_bytes = DEFAULT_MAX_RESPONSE;

	/* Catch a bad profile (TLS 1.1, a CBC suite...) now rather than on the first request. */
	SSL_CTX *probe = SSL_CTX_new(TLS_client_method());
	if (!probe) {
		sg_http_client_free(c);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "http client: SSL_CTX_new failed");
	}
	sg_err e = sg_tls_apply_profile(probe, t, 0, err, errlen);
	SSL_CTX_free(probe);
	if (e != SG_OK) {
		sg_http_client_free(c);
		return e;
	}

	CURL *h = c->curl = curl_easy_init();
	if (!h) {
		sg_http_client_free(c);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "http client: curl_easy_init failed");
	}
	const int psk = t->mode == SG_TLS_PSK;
	CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(h, opt, val);                                        \
	} while (0)
	SET(CURLOPT_ERRORBUFFER, c->curl_err);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "https,http");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, c->conf.connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, c->conf.timeout_ms);
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->conf.max_response_bytes);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, c);
	SET(CURLOPT_HEADERFUNCTION, header_cb);
	SET(CURLOPT_HEADERDATA, c);
	SET(CURLOPT_HTTP_VERSION,
	    c->conf.http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	/* TS 33.310: the server is always verified (chain to our anchors + its name). In PSK
	 * mode the PSK authenticates it and certificates are refused outright (reject_any_cert). */
	SET(CURLOPT_SSL_VERIFYPEER, psk ? 0L : 1L);
	SET(CURLOPT_SSL_VERIFYHOST, psk ? 0L : 2L);
	SET(CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
	SET(CURLOPT_SSL_CTX_DATA, c);
	if (t->ca)
		SET(CURLOPT_CAINFO, t->ca);
	SET(CURLOPT_CAPATH, NULL);
	if (t->crl)
		SET(CURLOPT_CRLFILE, t->crl);
#if CURL_AT_LEAST_VERSION(7, 87, 0)
	/* every connection builds its trust store from the files as they are now (the profile
	 * callback loads the CA and CRL into it): a store cached by libcurl for a day would keep
	 * an old CRL, and the callback would add the new one to it beside the old (T5) */
	SET(CURLOPT_CA_CACHE_TIMEOUT, 0L);
#endif
	if (t->mode == SG_TLS_MUTUAL) {
		SET(CURLOPT_SSLCERT, t->cert);
		SET(CURLOPT_SSLKEY, t->key ? t->key : t->cert);
	}
#undef SET
	if (rc != CURLE_OK) {
		sg_http_client_free(c);
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "http client: curl option: %s",
		               curl_easy_strerror(rc));
	}
	*out = c;
	return SG_OK;
}

sg_err sg_http_client_set_peer_identity(struct sg_http_client *c, const char *identity)
{
	char *id = identity ? strdup(identity) : NULL;
	if (identity && !id)
		return SG_ERR_NOMEM;
	free(c->peer_identity);
	c->peer_identity = id;
	long on = id != NULL;
	CURLcode rc = curl_easy_setopt(c->curl, CURLOPT_FRESH_CONNECT, on);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(c->curl, CURLOPT_FORBID_REUSE, on);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(c->curl, CURLOPT_SSL_SESSIONID_CACHE, !on);
	return rc == CURLE_OK ? SG_OK : SG_ERR_INTERNAL;
}

/* libcurl calls this about once a second while the transfer is idle, more often otherwise;
 * non-zero aborts it (CURLE_ABORTED_BY_CALLBACK). */
static int xferinfo_cb(void *arg, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
	(void)dlt, (void)dln, (void)ult, (void)uln;
	const struct sg_http_client *c = arg;
	return c->cancel && atomic_load(c->cancel) != 0;
}

sg_err sg_http_client_set_cancel(struct sg_http_client *c, const atomic_int *flag)
{
	c->cancel = flag;
	CURLcode rc = curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, flag ? 0L : 1L);
	return rc == CURLE_OK ? SG_OK : SG_ERR_INTERNAL;
}

/* 1 when host (as curl_url returns it) is a loopback address or localhost. */
static int is_loopback(const char *host)
{
	if (strcasecmp(host, "localhost") == 0)
		return 1;
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	size_t n = strlen(host);
	if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
		char v6[64];
		struct in6_addr a6;
		if (n - 2 >= sizeof v6)
			return 0;
		memcpy(v6, host + 1, n - 2);
		v6[n - 2] = '\0';
		return inet_pton(AF_INET6, v6, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
	}
	return 0;
}

/* Only https, and plain http to loopback (the admin listener). T4: never an upgrade. */
static sg_err check_url(struct sg_http_client *c, const char *url, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	sg_err e = SG_OK;
	if (!u)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "http client: out of memory");
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
	if (uc != CURLUE_OK) {
		e = sg_fail(err, errlen, SG_ERR_INVALID, "http client: bad URL '%s': %s", url,
		            curl_url_strerror(uc));
	} else if (strcasecmp(scheme, "https") == 0) {
		if (c->conf.tls.mode != SG_TLS_PSK && !c->conf.tls.ca)
			e = sg_fail(err, errlen, SG_ERR_CONFIG,
			            "http client: %s: https needs trust anchors (tls.ca)", url);
	} else if (strcasecmp(scheme, "http") == 0) {
		if (!is_loopback(host))
			e = sg_fail(err, errlen, SG_ERR_DENIED,
			            "http client: refusing plain http to %s: only https, or http "
			            "to a loopback address",
			            host);
	} else {
		e = sg_fail(err, errlen, SG_ERR_INVALID,
		            "http client: unsupported scheme '%s' (https only)", scheme);
	}
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return e;
}

static sg_err map_curl_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return SG_ERR_TIMEOUT;
	case CURLE_FILESIZE_EXCEEDED:
		return SG_ERR_LIMIT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_USE_SSL_FAILED:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
		return SG_ERR_TLS;
	case CURLE_OUT_OF_MEMORY:
		return SG_ERR_NOMEM;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return SG_ERR_INVALID;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_GOT_NOTHING:
		return SG_ERR_PROTO;
	default:
		return SG_ERR_IO;
	}
}

sg_err sg_http_client_request(struct sg_http_client *c, const char *method, const char *url,
                              const char *const *headers, const void *body, size_t body_len,
                              struct sg_http_response *resp, char *err, size_t errlen)
{
	if (!c || !method || !url || !resp)
		return sg_fail(err, errlen, SG_ERR_INVALID, "http client: bad arguments");
	memset(resp, 0, sizeof *resp);
	sg_err e = check_url(c, url, err, errlen);
	if (e != SG_OK)
		return e;

	CURL *h = c->curl;
	struct curl_slist *hl = NULL;
	/* no "Expect: 100-continue" round trip for bodies */
	struct curl_slist *tmp = curl_slist_append(hl, "Expect:");
	if (!tmp)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "http client: out of memory");
	hl = tmp;
	for (size_t i = 0; headers && headers[i]; i++) {
		if (strpbrk(headers[i], "\r\n")) {
			curl_slist_free_all(hl);
			return sg_fail(err, errlen, SG_ERR_INVALID,
			               "http client: header with a line break");
		}
		if (!(tmp = curl_slist_append(hl, headers[i]))) {
			curl_slist_free_all(hl);
			return sg_fail(err, errlen, SG_ERR_NOMEM, "http client: out of memory");
		}
		hl = tmp;
	}

	CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(h, opt, val);                                        \
	} while (0)
	/* the handle is reused: reset what the previous request may have set */
	SET(CURLOPT_HTTPGET, 1L);
	SET(CURLOPT_NOBODY, 0L);
	SET(CURLOPT_CUSTOMREQUEST, NULL);
	if (strcmp(method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
	           strcmp(method, "PATCH") == 0) {
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
		SET(CURLOPT_COPYPOSTFIELDS, body ? (const char *)body : "");
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
	    strcmp(method, "POST") != 0)
		SET(CURLOPT_CUSTOMREQUEST, method);
	SET(CURLOPT_URL, url);
	SET(CURLOPT_HTTPHEADER, hl);
#undef SET
	if (rc != CURLE_OK) {
		curl_slist_free_all(hl);
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "http client: curl option: %s",
		               curl_easy_strerror(rc));
	}

	c->resp = resp;
	c->over_limit = 0;
	c->curl_err[0] = c->tls_err[0] = '\0';
	rc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hl);
	c->resp = NULL;

	if (rc != CURLE_OK) {
		const char *why = c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc);
		if (c->over_limit || rc == CURLE_FILESIZE_EXCEEDED)
			e = sg_fail(err, errlen, SG_ERR_LIMIT,
			            "http client: %s %s: response larger than %zu bytes", method,
			            url, c->conf.max_response_bytes);
		else if (c->tls_err[0])
			e = sg_fail(err, errlen, SG_ERR_TLS, "http client: %s %s: %s", method, url,
			            c->tls_err);
		else
			e = sg_fail(err, errlen, map_curl_error(rc), "http client: %s %s: %s",
			            method, url, why);
		sg_http_response_free(resp);
		return e;
	}
	long status = 0, ver = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &ver);
	resp->status = status;
	snprintf(resp->http_version, sizeof resp->http_version, "%s",
	         ver == CURL_HTTP_VERSION_2_0   ? "2"
	         : ver == CURL_HTTP_VERSION_1_0 ? "1.0"
	                                        : "1.1");
	if (!resp->body.data && sg_buf_append(&resp->body, "", 0) != SG_OK) {
		sg_http_response_free(resp);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "http client: out of memory");
	}
	return SG_OK;
}
