/* tls/tls.h: the TLS profile of TS 33.210 §6.2 (referenced by TS 33.310 Annex E) as SSL_CTX
 * builders for servers and clients, certificate/PSK principals, and live reload of
 * certificates and CRLs. Every reference point gets its TLS from here; nothing else in
 * sealguard calls SSL_CTX_set_* for protocol parameters. */
#ifndef SG_TLS_TLS_H
#define SG_TLS_TLS_H

#include "base/err.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

enum sg_tls_mode {
	SG_TLS_SERVER_AUTH = 0, /* server certificate only (SEAL-UU, IM-UU, KM-UU, SEALDD-UU) */
	SG_TLS_MUTUAL,          /* both sides present certificates (SEAL-S, SEAL-E, X1, X2) */
	SG_TLS_PSK,             /* pre-shared key (T6: SIM-S A.9, CAPIF-2e method 1) */
};

/* What a configuration says about one TLS endpoint. Strings are borrowed (not copied) by the
 * functions below; NULL means "the default". The profile fields may only narrow the profile:
 * anything outside it (TLS 1.1, a CBC suite, an unknown group) is rejected with a message. */
struct sg_tls_conf {
	enum sg_tls_mode mode;
	const char *cert; /* PEM certificate chain (leaf first) */
	const char *key;  /* PEM private key */
	const char *ca;   /* PEM trust anchors for the peer's certificate (mutual; client side) */
	const char *crl;  /* PEM or DER CRL(s) checked for the peer's chain; NULL = none */
	const char *min_version;  /* "TLS1.2" (default) or "TLS1.3" */
	const char *max_version;  /* "TLS1.3" (default) or "TLS1.2" */
	const char *ciphersuites; /* TLS 1.3 suites, ':'-separated, subset of T2 */
	const char *ciphers;      /* TLS 1.2 suites (OpenSSL names), ':'-separated, subset of T3 */
	const char *groups;       /* ':'-separated, subset of T2 */
	const char *sigalgs;      /* ':'-separated, subset of T2 */
	const char *psk_file;     /* PSK mode: lines "identity:hex-key" (0600 file) */
	const char *psk_identity; /* client side PSK: identity to present */
	int session_tickets; /* server: 1 = stateless resumption with rotating keys (default) */
	int ticket_rotate_s; /* ticket key lifetime in seconds (default 3600) */
};

/* The profile in OpenSSL's names, exposed for tests and documentation. */
extern const char SG_TLS13_SUITES[]; /* "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384" */
extern const char SG_TLS12_CIPHERS[];
extern const char SG_TLS_GROUPS[];  /* "P-256:X25519:P-384" */
extern const char SG_TLS_SIGALGS[]; /* "ECDSA+SHA256:rsa_pss_rsae_sha256:ECDSA+SHA384" */

/* Checks that conf stays inside the profile (versions, suites, groups, sigalgs) and that the
 * files it names exist. Writes the first problem into err. */
sg_err sg_tls_conf_check(const struct sg_tls_conf *conf, int is_server, char *err, size_t errlen);

/* Applies the profile (and conf's narrowing) to an existing context: versions, suites, groups,
 * sigalgs, no compression, no renegotiation, no 0-RTT, EMS required for TLS 1.2, and for a
 * client: chain + CRL verification of the server and hostname checking by the caller.
 * Used on contexts made elsewhere too (libcurl's, via CURLOPT_SSL_CTX_FUNCTION). */
sg_err sg_tls_apply_profile(SSL_CTX *ctx, const struct sg_tls_conf *conf, int is_server, char *err,
                            size_t errlen);

/* A server-side TLS endpoint whose certificate, key, CA and CRL can be reloaded while
 * connections are being accepted on other threads. */
struct sg_tls_server;

/* Builds the server endpoint (certificates loaded, profile applied, ALPN h2/http1.1 selection
 * when alpn_h2 is set, session tickets). *out is owned by the caller: sg_tls_server_free. */
sg_err sg_tls_server_new(const struct sg_tls_conf *conf, int alpn_h2, struct sg_tls_server **out,
                         char *err, size_t errlen);
/* Re-reads certificate, key, CA and CRL; on failure keeps the old context and reports why.
 * Safe to call from any thread. New connections use the new context. */
sg_err sg_tls_server_reload(struct sg_tls_server *srv, char *err, size_t errlen);
/* Reloads only when one of the files changed since the last load (cheap stat() checks). */
sg_err sg_tls_server_reload_if_changed(struct sg_tls_server *srv, char *err, size_t errlen);
/* A new SSL for an accepted connection, from the current context. Caller frees it. */
SSL *sg_tls_server_ssl_new(struct sg_tls_server *srv);
enum sg_tls_mode sg_tls_server_mode(const struct sg_tls_server *srv);
void sg_tls_server_free(struct sg_tls_server *srv);

/* Builds a client context with the profile: trust anchors conf->ca (required), optional
 * client certificate (mutual), optional PSK (psk_file + psk_identity). Caller frees it. */
sg_err sg_tls_client_ctx_new(const struct sg_tls_conf *conf, SSL_CTX **out, char *err,
                             size_t errlen);

/* The seconds until the earliest next update of the CRLs in path (PEM or DER; negative: past
 * it, and chains checked against it are refused). */
sg_err sg_tls_crl_seconds_left(const char *path, int64_t *left, char *err, size_t errlen);

/* A long-lived client context (the profile as sg_tls_client_ctx_new) whose certificate, key,
 * CA and CRL files are reloaded like a server endpoint's: a renewed CRL or certificate applies
 * to the connections made after sg_tls_client_reload_if_changed() noticed it (T5). Thread-safe
 * as sg_tls_server. */
struct sg_tls_client;
sg_err sg_tls_client_new(const struct sg_tls_conf *conf, struct sg_tls_client **out, char *err,
                         size_t errlen);
sg_err sg_tls_client_reload_if_changed(struct sg_tls_client *c, char *err, size_t errlen);
/* A new SSL for an outgoing connection, from the current context. Caller frees it. */
SSL *sg_tls_client_ssl_new(struct sg_tls_client *c);
void sg_tls_client_free(struct sg_tls_client *c);

/* Who is on the other side of a finished handshake, as the policy engine sees it. */
#define SG_TLS_MAX_SANS 16
struct sg_tls_principal {
	int authenticated; /* 1 when a verified certificate or a PSK identified the peer */
	int is_psk;
	/* subjectAltName entries of the verified peer certificate, each as "DNS:name",
	 * "URI:uri" or "IP:addr" (TS 33.310: the identity is the SAN, never the CN). */
	char *sans[SG_TLS_MAX_SANS];
	size_t nsans;
	/* the first of sans that this side's own certificate carries too (this deployment's
	 * servers share their certificate identity), NULL when none */
	const char *own_san;
	char *psk_identity;            /* when is_psk */
	unsigned char cert_sha256[32]; /* SHA-256 of the DER certificate (RFC 8705 x5t#S256) */
	char version[16];              /* "TLSv1.3" */
	char cipher[64];               /* "TLS_AES_128_GCM_SHA256" */
	int resumed;                   /* session was resumed */
};

/* Fills p from a connection whose handshake completed (and whose chain OpenSSL verified).
 * Strings in p are owned by p: release with sg_tls_principal_clear. */
sg_err sg_tls_principal_from_ssl(SSL *ssl, struct sg_tls_principal *p);
void sg_tls_principal_clear(struct sg_tls_principal *p);
/* 1 when one of the certificate's SANs, written as in sg_tls_principal, equals identity. */
int sg_tls_cert_has_san(X509 *x, const char *identity);
/* 1 when one of p's SANs equals identity exactly (e.g. "DNS:v2x.example.com"). */
int sg_tls_principal_has_san(const struct sg_tls_principal *p, const char *identity);

/* The PSK identity a finished PSK handshake used (TLS 1.2 or TLS 1.3 external PSK), or NULL.
 * Owned by ssl. (OpenSSL's SSL_get_psk_identity does not report TLS 1.3 external PSKs.) */
const char *sg_tls_psk_identity(SSL *ssl);

/* Checks what a finished handshake negotiated against what the profile demands beyond OpenSSL's
 * own options (TS 33.210 §6.2.3: TLS 1.2 only with the extended master secret, RFC 7627).
 * net/ calls it right after every server handshake and drops the connection on failure. */
sg_err sg_tls_check_negotiated(SSL *ssl);

/* Process-wide counters for /metrics (summed over all endpoints). */
struct sg_tls_stats {
	unsigned long long handshakes_full, handshakes_resumed, handshake_failures;
};
void sg_tls_stats_get(struct sg_tls_stats *out);
void sg_tls_stats_count(SSL *ssl, int ok); /* called by net/ when a handshake ends */

#endif
