/* http/client.h: the HTTP client (libcurl, OpenSSL flavour) with the same TLS profile as the
 * servers: server verification against our trust anchors, mutual TLS, TLS-PSK, HTTP/2 by ALPN.
 * Used for server-to-server reference points (SEAL-E, X1, X2) and by the client SDK. */
#ifndef SG_HTTP_CLIENT_H
#define SG_HTTP_CLIENT_H

#include <stdatomic.h>

#include "base/buf.h"
#include "base/err.h"
#include "tls/tls.h"

struct sg_http_client_conf {
	struct sg_tls_conf tls;    /* ca required for https; cert/key for mutual; psk_* for PSK */
	int http2;                 /* 1 = offer h2 (falls back to http/1.1 when refused) */
	long connect_timeout_ms;   /* default 5000 */
	long timeout_ms;           /* whole request; default 30000 */
	size_t max_response_bytes; /* default 8 MiB */
};

struct sg_http_response {
	long status;
	struct sg_buf body;
	char content_type[128];
	char location[512];
	char www_authenticate[512];
	char etag[128];
	char http_version[8]; /* "1.1" or "2" */
};
void sg_http_response_free(struct sg_http_response *r);

/* One client = one connection pool; not shared between threads. Caller frees. */
struct sg_http_client;
sg_err sg_http_client_new(const struct sg_http_client_conf *conf, struct sg_http_client **out,
                          char *err, size_t errlen);
void sg_http_client_free(struct sg_http_client *c);
/* From now on the server of every request must also present a certificate carrying this
 * subjectAltName ("DNS:v2x-app", as sg_tls_principal writes it), checked in the handshake
 * before anything is sent; each request then opens a fresh connection without session
 * resumption, so no connection or session verified for another identity is reused. NULL: no
 * such check (connections and sessions kept alive again). */
sg_err sg_http_client_set_peer_identity(struct sg_http_client *c, const char *identity);

/* From now on a request in flight ends (a transport failure, "cancelled") soon after *flag
 * becomes non-zero: within about a second while the peer is silent. NULL: never. */
sg_err sg_http_client_set_cancel(struct sg_http_client *c, const atomic_int *flag);

/* Sends one request. headers: NULL-terminated array of "Name: value" (may be NULL). body may be
 * NULL. On transport failure returns an error with the reason in err (e.g. the TLS alert). */
sg_err sg_http_client_request(struct sg_http_client *c, const char *method, const char *url,
                              const char *const *headers, const void *body, size_t body_len,
                              struct sg_http_response *resp, char *err, size_t errlen);

#endif
