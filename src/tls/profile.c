/* tls/profile.c: the 3GPP TLS profile (TS 33.210 §6.2, referenced by TS 33.310 Annex E) applied
 * to OpenSSL contexts: versions, suites, groups, signature schemes, options, certificate checks
 * (TS 33.310 §6.1.3a), CRLs and TLS-PSK (T6), plus the client context builder.
 *
 * Sources checked for the suite lists (search of stored public pages, tech-invite.com copy of
 * TS 33.210 V17.0.0/V17.1.0/V18.1.0 clause 6.2):
 *  - §6.2.1: SSL 1.0/2.0/3.0, TLS 1.0, TLS 1.1 and DTLS 1.0 shall not be supported; TLS 1.2
 *    (RFC 5246) and TLS 1.3 (RFC 8446) shall be supported; no RFC 2817 upgrade.
 *  - §6.2.2 (TLS 1.3): RFC 8446 §9.1/§9.2 followed (TLS_AES_128_GCM_SHA256 and secp256r1
 *    mandatory, rsa_pss_rsae_sha256 / ecdsa_secp256r1_sha256 signatures); in addition
 *    secp384r1 and ecdsa_secp384r1_sha384 should be supported.
 *  - §6.2.3 (TLS 1.2): the text of this clause was NOT available in the stored pages (only the
 *    6.2.1/6.2.2 part of the page could be read). The list below therefore follows REQUIREMENTS
 *    T3: ECDHE with AES-GCM only (TLS_ECDHE_ECDSA/RSA_WITH_AES_128_GCM_SHA256 mandatory, the
 *    AES_256_GCM_SHA384 variants), extended master secret (RFC 7627), renegotiation indication
 *    (RFC 5746), no compression, no CBC/RC4/NULL/anonymous/export suites. For PSK (T6) the
 *    AEAD suites with ephemeral Diffie-Hellman that OpenSSL implements are used:
 *    TLS_DHE_PSK_WITH_AES_128_GCM_SHA256 and TLS_DHE_PSK_WITH_AES_256_GCM_SHA384 (RFC 5487);
 *    plain PSK (no forward secrecy) is left out per T3 "only ECDHE or DHE", and OpenSSL 3.0 has
 *    no ECDHE-PSK AES-GCM suite (RFC 8442). To be re-verified against the clause text. */
#include "tls/tls.h"

#include "base/err.h"
#include "base/file.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* TS 33.210 §6.2.2 / RFC 8446 §9.1: AES-128-GCM mandatory, AES-256-GCM supported. */
const char SG_TLS13_SUITES[] = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";
/* TS 33.210 §6.2.3 (see the note above): ECDHE + AES-GCM only, mandatory ones first. */
const char SG_TLS12_CIPHERS[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
/* T6: TLS 1.2 PSK suites of the same profile (DHE for forward secrecy, AEAD). */
static const char SG_TLS12_PSK_CIPHERS[] = "DHE-PSK-AES128-GCM-SHA256:DHE-PSK-AES256-GCM-SHA384";
/* TS 33.210 §6.2.2: secp256r1 mandatory (RFC 8446 §9.1), x25519, secp384r1 should. */
const char SG_TLS_GROUPS[] = "P-256:X25519:P-384";
/* RFC 8446 §9.1 + TS 33.210 §6.2.2: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256,
 * ecdsa_secp384r1_sha384. */
const char SG_TLS_SIGALGS[] = "ECDSA+SHA256:rsa_pss_rsae_sha256:ECDSA+SHA384";

/* Names operators may use in conf (OpenSSL accepts all of them). */
static const char *const allowed_groups[] = {"P-256",  "prime256v1", "secp256r1", "X25519",
                                             "x25519", "P-384",      "secp384r1", NULL};
static const char *const allowed_sigalgs[] = {"ECDSA+SHA256",           "ecdsa_secp256r1_sha256",
                                              "rsa_pss_rsae_sha256",    "ECDSA+SHA384",
                                              "ecdsa_secp384r1_sha384", NULL};

#define SG_PSK_MIN_KEY 16 /* 128-bit keys at least */
#define SG_PSK_MAX_KEY 64

/* ---- ex_data indexes ------------------------------------------------------------------ */

struct psk_entry {
	char *identity;
	unsigned char key[SG_PSK_MAX_KEY];
	size_t keylen;
};

struct psk_table {
	struct psk_entry *e;
	size_t n;
	const struct psk_entry *client; /* client side: the entry for psk_identity */
};

static void psk_table_free(struct psk_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->e[i].identity);
		OPENSSL_cleanse(t->e[i].key, sizeof t->e[i].key);
	}
	free(t->e);
	free(t);
}

static void ctx_psk_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                            void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	psk_table_free(ptr);
}

static void ssl_str_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                            void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	free(ptr);
}

static int ctx_psk_idx = -1, ssl_pskid_idx = -1;
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

static void idx_init(void)
{
	ctx_psk_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_psk_free_cb);
	ssl_pskid_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_str_free_cb);
}

static void set_used_identity(SSL *ssl, const char *id)
{
	char *copy = strdup(id);
	if (!copy)
		return;
	char *old = SSL_get_ex_data(ssl, ssl_pskid_idx);
	if (SSL_set_ex_data(ssl, ssl_pskid_idx, copy) != 1) {
		free(copy);
		return;
	}
	free(old);
}

const char *sg_tls_psk_identity(SSL *ssl)
{
	pthread_once(&idx_once, idx_init);
	const char *id = SSL_get_psk_identity(ssl);
	if (id)
		return id;
	return SSL_get_ex_data(ssl, ssl_pskid_idx);
}

/* ---- profile checks --------------------------------------------------------------------- */

static int parse_version(const char *s, int dflt)
{
	if (!s || !*s)
		return dflt;
	if (!strcasecmp(s, "TLS1.2") || !strcasecmp(s, "TLSv1.2"))
		return TLS1_2_VERSION;
	if (!strcasecmp(s, "TLS1.3") || !strcasecmp(s, "TLSv1.3"))
		return TLS1_3_VERSION;
	return -1;
}

static int in_colon_list(const char *list, const char *item, size_t len)
{
	const char *p = list;
	while (*p) {
		const char *end = strchr(p, ':');
		size_t l = end ? (size_t)(end - p) : strlen(p);
		if (l == len && !strncmp(p, item, len))
			return 1;
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

static int in_array(const char *const *arr, const char *item, size_t len)
{
	for (; *arr; arr++)
		if (strlen(*arr) == len && !strncmp(*arr, item, len))
			return 1;
	return 0;
}

/* Each ':'-separated element of value must be allowed. */
static sg_err check_list(const char *field, const char *value, const char *allowed_list,
                         const char *const *allowed_arr, const char *extra_list, char *err,
                         size_t errlen)
{
	if (!value)
		return SG_OK;
	if (!*value)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "tls %s: empty list", field);
	const char *p = value;
	for (;;) {
		const char *end = strchr(p, ':');
		size_t l = end ? (size_t)(end - p) : strlen(p);
		if (l == 0)
			return sg_fail(err, errlen, SG_ERR_CONFIG, "tls %s \"%s\": empty element",
			               field, value);
		int ok = (allowed_list && in_colon_list(allowed_list, p, l)) ||
		         (allowed_arr && in_array(allowed_arr, p, l)) ||
		         (extra_list && in_colon_list(extra_list, p, l));
		if (!ok)
			return sg_fail(err, errlen, SG_ERR_CONFIG,
			               "tls %s: \"%.*s\" is outside the TS 33.210 §6.2 profile "
			               "(allowed: %s%s%s)",
			               field, (int)l, p,
			               allowed_list ? allowed_list
			                            : (allowed_arr == allowed_groups
			                                   ? SG_TLS_GROUPS
			                                   : "ECDSA+SHA256:rsa_pss_rsae_sha256:"
			                                     "ECDSA+SHA384"),
			               extra_list ? ":" : "", extra_list ? extra_list : "");
		if (!end)
			break;
		p = end + 1;
	}
	return SG_OK;
}

static sg_err check_profile(const struct sg_tls_conf *c, char *err, size_t errlen)
{
	/* TS 33.210 §6.2.1: only TLS 1.2 and TLS 1.3. */
	int minv = parse_version(c->min_version, TLS1_2_VERSION);
	if (minv < 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "tls min_version \"%s\": only TLS1.2 or TLS1.3 are allowed "
		               "(TS 33.210 §6.2.1)",
		               c->min_version);
	int maxv = parse_version(c->max_version, TLS1_3_VERSION);
	if (maxv < 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "tls max_version \"%s\": only TLS1.2 or TLS1.3 are allowed "
		               "(TS 33.210 §6.2.1)",
		               c->max_version);
	if (minv > maxv)
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "tls min_version \"%s\" is above max_version \"%s\"", c->min_version,
		               c->max_version);
	sg_err e;
	if ((e = check_list("ciphersuites", c->ciphersuites, SG_TLS13_SUITES, NULL, NULL, err,
	                    errlen)))
		return e;
	if ((e = check_list("ciphers", c->ciphers, SG_TLS12_CIPHERS, NULL,
	                    c->mode == SG_TLS_PSK ? SG_TLS12_PSK_CIPHERS : NULL, err, errlen)))
		return e;
	if ((e = check_list("groups", c->groups, NULL, allowed_groups, NULL, err, errlen)))
		return e;
	if ((e = check_list("sigalgs", c->sigalgs, NULL, allowed_sigalgs, NULL, err, errlen)))
		return e;
	if (c->ticket_rotate_s < 0 || c->ticket_rotate_s > 7 * 86400)
		return sg_fail(
		    err, errlen, SG_ERR_CONFIG,
		    "tls ticket_rotate_s %d: must be between 0 (default 3600) and 604800",
		    c->ticket_rotate_s);
	return SG_OK;
}

static sg_err need_file(const char *field, const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (!path || !*path)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "tls %s: required", field);
	if (stat(path, &st) != 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "tls %s \"%s\": %s", field, path,
		               strerror(errno));
	if (!S_ISREG(st.st_mode))
		return sg_fail(err, errlen, SG_ERR_CONFIG, "tls %s \"%s\": not a regular file",
		               field, path);
	return SG_OK;
}

sg_err sg_tls_conf_check(const struct sg_tls_conf *conf, int is_server, char *err, size_t errlen)
{
	if (!conf)
		return sg_fail(err, errlen, SG_ERR_INVALID, "tls: no configuration");
	if (conf->mode != SG_TLS_SERVER_AUTH && conf->mode != SG_TLS_MUTUAL &&
	    conf->mode != SG_TLS_PSK)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "tls mode %d: unknown", (int)conf->mode);
	sg_err e = check_profile(conf, err, errlen);
	if (e)
		return e;
	if (conf->key && !conf->cert)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "tls key given without cert");
	int need_cert = is_server ? conf->mode != SG_TLS_PSK : conf->mode == SG_TLS_MUTUAL;
	if (need_cert || conf->cert) {
		if ((e = need_file("cert", conf->cert, err, errlen)))
			return e;
		if ((e = need_file("key", conf->key, err, errlen)))
			return e;
	}
	int need_ca = is_server ? conf->mode == SG_TLS_MUTUAL : conf->mode != SG_TLS_PSK;
	if (need_ca || conf->ca)
		if ((e = need_file("ca", conf->ca, err, errlen)))
			return e;
	if (conf->crl && (e = need_file("crl", conf->crl, err, errlen)))
		return e;
	if (conf->mode == SG_TLS_PSK) {
		if ((e = need_file("psk_file", conf->psk_file, err, errlen)))
			return e;
		struct stat st;
		if (stat(conf->psk_file, &st) == 0 && (st.st_mode & 077))
			return sg_fail(
			    err, errlen, SG_ERR_CONFIG,
			    "tls psk_file \"%s\": readable by group or others (mode %03o); "
			    "chmod 600 it",
			    conf->psk_file, (unsigned)(st.st_mode & 0777));
		if (!is_server && (!conf->psk_identity || !*conf->psk_identity))
			return sg_fail(err, errlen, SG_ERR_CONFIG,
			               "tls psk_identity: required for a PSK client");
	}
	return SG_OK;
}

/* ---- PSK (T6) ----------------------------------------------------------------------------- */

static sg_err psk_load(const char *path, const char *want_id, struct psk_table **out, char *err,
                       size_t errlen)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "tls psk_file \"%s\": %s", path,
		               strerror(errno));
	if (st.st_mode & 077)
		return sg_fail(err, errlen, SG_ERR_CONFIG,
		               "tls psk_file \"%s\": readable by group or others (mode %03o); "
		               "chmod 600 it",
		               path, (unsigned)(st.st_mode & 0777));
	char *data = NULL;
	size_t len = 0;
	sg_err e = sg_file_read(path, 1 << 20, &data, &len);
	if (e)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "tls psk_file \"%s\": %s", path,
		               sg_err_str(e));
	struct psk_table *t = calloc(1, sizeof *t);
	if (!t) {
		OPENSSL_cleanse(data, len);
		free(data);
		return SG_ERR_NOMEM;
	}
	e = SG_OK;
	unsigned lineno = 0;
	char *save = NULL;
	for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		size_t l = strlen(line);
		while (l && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t'))
			line[--l] = 0;
		while (*line == ' ' || *line == '\t')
			line++;
		if (!*line || *line == '#')
			continue;
		char *colon = strrchr(line, ':');
		if (!colon || colon == line) {
			e = sg_fail(err, errlen, SG_ERR_CONFIG,
			            "tls psk_file \"%s\" line %u: expected identity:hexkey", path,
			            lineno);
			break;
		}
		*colon = 0;
		const char *hex = colon + 1;
		size_t hl = strlen(hex);
		if (hl % 2 || hl / 2 < SG_PSK_MIN_KEY || hl / 2 > SG_PSK_MAX_KEY) {
			e = sg_fail(
			    err, errlen, SG_ERR_CONFIG,
			    "tls psk_file \"%s\" line %u: key must be %d to %d bytes of hex", path,
			    lineno, SG_PSK_MIN_KEY, SG_PSK_MAX_KEY);
			break;
		}
		struct psk_entry *ne = realloc(t->e, (t->n + 1) * sizeof *ne);
		if (!ne) {
			e = SG_ERR_NOMEM;
			break;
		}
		t->e = ne;
		struct psk_entry *en = &t->e[t->n];
		memset(en, 0, sizeof *en);
		int bad = 0;
		for (size_t i = 0; i < hl / 2; i++) {
			int hi = OPENSSL_hexchar2int((unsigned char)hex[2 * i]);
			int lo = OPENSSL_hexchar2int((unsigned char)hex[2 * i + 1]);
			if (hi < 0 || lo < 0) {
				bad = 1;
				break;
			}
			en->key[i] = (unsigned char)(hi << 4 | lo);
		}
		if (bad) {
			OPENSSL_cleanse(en->key, sizeof en->key);
			e = sg_fail(err, errlen, SG_ERR_CONFIG,
			            "tls psk_file \"%s\" line %u: key is not hex", path, lineno);
			break;
		}
		en->keylen = hl / 2;
		en->identity = strdup(line);
		if (!en->identity) {
			OPENSSL_cleanse(en->key, sizeof en->key);
			e = SG_ERR_NOMEM;
			break;
		}
		t->n++;
	}
	OPENSSL_cleanse(data, len);
	free(data);
	if (!e && t->n == 0)
		e = sg_fail(err, errlen, SG_ERR_CONFIG, "tls psk_file \"%s\": no keys", path);
	if (!e && want_id) {
		for (size_t i = 0; i < t->n; i++)
			if (!strcmp(t->e[i].identity, want_id))
				t->client = &t->e[i];
		if (!t->client)
			e = sg_fail(err, errlen, SG_ERR_CONFIG,
			            "tls psk_identity \"%s\": not in psk_file \"%s\"", want_id,
			            path);
	}
	if (e) {
		psk_table_free(t);
		return e;
	}
	*out = t;
	return SG_OK;
}

static const struct psk_entry *psk_find(SSL *ssl, const unsigned char *id, size_t idlen)
{
	struct psk_table *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_psk_idx);
	if (!t)
		return NULL;
	for (size_t i = 0; i < t->n; i++)
		if (strlen(t->e[i].identity) == idlen && !memcmp(t->e[i].identity, id, idlen))
			return &t->e[i];
	return NULL;
}

/* TLS 1.3 external PSK (RFC 8446 §4.2.11) with the SHA-256 suite TLS_AES_128_GCM_SHA256. */
static SSL_SESSION *psk_session(SSL *ssl, const struct psk_entry *en)
{
	static const unsigned char aes128gcm[2] = {0x13, 0x01};
	const SSL_CIPHER *c = SSL_CIPHER_find(ssl, aes128gcm);
	if (!c)
		return NULL;
	SSL_SESSION *s = SSL_SESSION_new();
	if (!s)
		return NULL;
	if (!SSL_SESSION_set1_master_key(s, en->key, en->keylen) || !SSL_SESSION_set_cipher(s, c) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static int psk_find_session_cb(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	*sess = NULL;
	const struct psk_entry *en = psk_find(ssl, id, idlen);
	if (!en)
		return 1; /* unknown identity: continue without PSK (certificate, if any) */
	*sess = psk_session(ssl, en);
	if (!*sess)
		return 0;
	set_used_identity(ssl, en->identity);
	return 1;
}

static unsigned int psk_server_cb(SSL *ssl, const char *id, unsigned char *psk,
                                  unsigned int max_psk_len)
{
	const struct psk_entry *en = psk_find(ssl, (const unsigned char *)id, strlen(id));
	if (!en || en->keylen > max_psk_len)
		return 0;
	memcpy(psk, en->key, en->keylen);
	return (unsigned int)en->keylen;
}

static int psk_use_session_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                              SSL_SESSION **sess)
{
	*sess = NULL;
	struct psk_table *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_psk_idx);
	if (!t || !t->client)
		return 1;
	if (md && EVP_MD_get_type(md) != NID_sha256)
		return 1; /* HRR with another hash: no PSK */
	*sess = psk_session(ssl, t->client);
	if (!*sess)
		return 0;
	*id = (const unsigned char *)t->client->identity;
	*idlen = strlen(t->client->identity);
	set_used_identity(ssl, t->client->identity);
	return 1;
}

static unsigned int psk_client_cb(SSL *ssl, const char *hint, char *identity,
                                  unsigned int max_identity_len, unsigned char *psk,
                                  unsigned int max_psk_len)
{
	(void)hint;
	struct psk_table *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_psk_idx);
	if (!t || !t->client)
		return 0;
	size_t il = strlen(t->client->identity);
	if (il + 1 > max_identity_len || t->client->keylen > max_psk_len)
		return 0;
	memcpy(identity, t->client->identity, il + 1);
	memcpy(psk, t->client->key, t->client->keylen);
	set_used_identity(ssl, t->client->identity);
	return (unsigned int)t->client->keylen;
}

/* ---- certificate checks (T5, TS 33.310 §6.1.3a) ----------------------------------------- */

#ifndef X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE
#define X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE X509_V_ERR_INVALID_PURPOSE
#endif

/* Returns X509_V_OK or the verification error for an end-entity certificate. */
static int leaf_check(X509 *x, int need_client_auth)
{
	uint32_t fl = X509_get_extension_flags(x);
	if (X509_get_version(x) != 2)
		return X509_V_ERR_INVALID_EXTENSION; /* X.509v3 only */
	/* keyUsage, when present, must allow digitalSignature (TLS handshake signatures). */
	if ((fl & EXFLAG_KUSAGE) && !(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE))
		return X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE;
	/* extendedKeyUsage is required and must name the role (TS 33.310 §6.1.3a). */
	if (!(fl & EXFLAG_XKUSAGE))
		return X509_V_ERR_INVALID_PURPOSE;
	uint32_t xku = X509_get_extended_key_usage(x);
	if (!(xku & (need_client_auth ? XKU_SSL_CLIENT : XKU_SSL_SERVER)))
		return X509_V_ERR_INVALID_PURPOSE;
	/* Key: ECDSA P-256 / P-384 or RSA >= 2048. */
	EVP_PKEY *pk = X509_get0_pubkey(x);
	if (!pk)
		return X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY;
	int id = EVP_PKEY_get_base_id(pk);
	if (id == EVP_PKEY_EC) {
		char g[64];
		if (!EVP_PKEY_get_group_name(pk, g, sizeof g, NULL) ||
		    (strcmp(g, "prime256v1") && strcmp(g, "secp384r1")))
			return X509_V_ERR_EE_KEY_TOO_SMALL;
	} else if (id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS) {
		if (EVP_PKEY_get_bits(pk) < 2048)
			return X509_V_ERR_EE_KEY_TOO_SMALL;
	} else {
		return X509_V_ERR_EE_KEY_TOO_SMALL;
	}
	/* Signature with SHA-256 or stronger (128-bit security). */
	int mdnid = 0, pknid = 0, secbits = 0;
	uint32_t sflags = 0;
	if (!X509_get_signature_info(x, &mdnid, &pknid, &secbits, &sflags) || secbits < 128)
		return X509_V_ERR_CA_MD_TOO_WEAK;
	return X509_V_OK;
}

static int verify_cb(int ok, X509_STORE_CTX *sctx)
{
	if (!ok)
		return 0;
	if (X509_STORE_CTX_get_error_depth(sctx) != 0)
		return 1;
	X509 *x = X509_STORE_CTX_get_current_cert(sctx);
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	if (!x)
		return 0;
	/* A server verifies a client (clientAuth); a client verifies a server (serverAuth). */
	int e = leaf_check(x, ssl ? SSL_is_server(ssl) : 0);
	if (e != X509_V_OK) {
		X509_STORE_CTX_set_error(sctx, e);
		return 0;
	}
	return 1;
}

static sg_err load_crls(X509_STORE *st, const char *path, char *err, size_t errlen)
{
	BIO *b = BIO_new_file(path, "rb");
	if (!b) {
		sg_fail(err, errlen, SG_ERR_CONFIG, "tls crl \"%s\": cannot open", path);
		sg_fail_append_openssl(err, errlen);
		return SG_ERR_CONFIG;
	}
	int n = 0;
	X509_CRL *crl;
	while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
		int ok = X509_STORE_add_crl(st, crl);
		X509_CRL_free(crl);
		if (!ok) {
			BIO_free(b);
			sg_fail(err, errlen, SG_ERR_CONFIG, "tls crl \"%s\": cannot add", path);
			sg_fail_append_openssl(err, errlen);
			return SG_ERR_CONFIG;
		}
		n++;
	}
	ERR_clear_error();
	if (n == 0) { /* DER */
		(void)BIO_reset(b);
		crl = d2i_X509_CRL_bio(b, NULL);
		if (crl) {
			if (X509_STORE_add_crl(st, crl))
				n++;
			X509_CRL_free(crl);
		}
	}
	BIO_free(b);
	if (n == 0) {
		sg_fail(err, errlen, SG_ERR_CONFIG, "tls crl \"%s\": no CRL (PEM or DER) found",
		        path);
		sg_fail_append_openssl(err, errlen);
		return SG_ERR_CONFIG;
	}
	return SG_OK;
}

sg_err sg_tls_crl_seconds_left(const char *path, int64_t *left, char *err, size_t errlen)
{
	X509_STORE *st = X509_STORE_new();
	if (!st)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	sg_err e = load_crls(st, path, err, errlen);
	int found = 0;
	int64_t min = 0;
	STACK_OF(X509_OBJECT) *objs = e ? NULL : X509_STORE_get0_objects(st);
	for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
		X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
		const ASN1_TIME *next = crl ? X509_CRL_get0_nextUpdate(crl) : NULL;
		int days, secs;
		if (!next || !ASN1_TIME_diff(&days, &secs, NULL, next))
			continue;
		int64_t l = (int64_t)days * 86400 + secs;
		if (!found || l < min)
			min = l;
		found = 1;
	}
	if (!e && !found)
		e = sg_fail(err, errlen, SG_ERR_CONFIG, "tls crl \"%s\": no next update", path);
	X509_STORE_free(st);
	if (!e)
		*left = min;
	return e;
}

static sg_err ossl_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sg_err ossl_fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	sg_fail_append_openssl(err, errlen);
	return SG_ERR_TLS;
}

/* ---- applying the profile ----------------------------------------------------------------- */

sg_err sg_tls_apply_profile(SSL_CTX *ctx, const struct sg_tls_conf *conf, int is_server, char *err,
                            size_t errlen)
{
	if (!ctx || !conf)
		return sg_fail(err, errlen, SG_ERR_INVALID, "tls: no context or configuration");
	pthread_once(&idx_once, idx_init);
	if (ctx_psk_idx < 0 || ssl_pskid_idx < 0)
		return sg_fail(err, errlen, SG_ERR_INTERNAL, "tls: no ex_data index");
	sg_err e = check_profile(conf, err, errlen);
	if (e)
		return e;
	ERR_clear_error();

	/* TS 33.210 §6.2.1: TLS 1.2 and TLS 1.3 only. */
	int minv = parse_version(conf->min_version, TLS1_2_VERSION);
	int maxv = parse_version(conf->max_version, TLS1_3_VERSION);
	if (!SSL_CTX_set_min_proto_version(ctx, minv) || !SSL_CTX_set_max_proto_version(ctx, maxv))
		return ossl_fail(err, errlen, "tls: cannot set protocol versions");
	/* Level 2: >= 112-bit security for keys, groups and signatures, on top of the explicit
	 * leaf checks in verify_cb. */
	SSL_CTX_set_security_level(ctx, 2);

	/* TS 33.210 §6.2.3: no compression, no renegotiation (and so no client-initiated one),
	 * the renegotiation indication (RFC 5746) is always sent by OpenSSL and legacy peers
	 * without it are refused; the server's suite order wins. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                             SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_clear_options(ctx, SSL_OP_LEGACY_SERVER_CONNECT |
	                               SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION |
	                               SSL_OP_ALLOW_CLIENT_RENEGOTIATION |
	                               SSL_OP_NO_EXTENDED_MASTER_SECRET | SSL_OP_ALLOW_NO_DHE_KEX);
	/* TS 33.210 §6.2.2 / T2: no 0-RTT early data. */
	SSL_CTX_set_max_early_data(ctx, 0);
	SSL_CTX_set_recv_max_early_data(ctx, 0);

	const char *suites = conf->ciphersuites ? conf->ciphersuites : SG_TLS13_SUITES;
	if (!SSL_CTX_set_ciphersuites(ctx, suites))
		return ossl_fail(err, errlen, "tls ciphersuites \"%s\" rejected by OpenSSL",
		                 suites);
	char cbuf[512];
	if (conf->ciphers)
		snprintf(cbuf, sizeof cbuf, "%s", conf->ciphers);
	else if (conf->mode == SG_TLS_PSK)
		snprintf(cbuf, sizeof cbuf, "%s:%s", SG_TLS12_PSK_CIPHERS, SG_TLS12_CIPHERS);
	else
		snprintf(cbuf, sizeof cbuf, "%s", SG_TLS12_CIPHERS);
	if (!SSL_CTX_set_cipher_list(ctx, cbuf))
		return ossl_fail(err, errlen, "tls ciphers \"%s\" rejected by OpenSSL", cbuf);
	const char *groups = conf->groups ? conf->groups : SG_TLS_GROUPS;
	if (!SSL_CTX_set1_groups_list(ctx, groups))
		return ossl_fail(err, errlen, "tls groups \"%s\" rejected by OpenSSL", groups);
	const char *sigalgs = conf->sigalgs ? conf->sigalgs : SG_TLS_SIGALGS;
	if (!SSL_CTX_set1_sigalgs_list(ctx, sigalgs))
		return ossl_fail(err, errlen, "tls sigalgs \"%s\" rejected by OpenSSL", sigalgs);
	if (conf->mode == SG_TLS_PSK) {
		/* DHE-PSK: groups sized from the suite strength (>= 2048 bits, T3). Mode 2 is
		 * OpenSSL's "size from the cipher" auto mode (the PSK default of 1 would pick a
		 * 1024-bit group for 128-bit suites). */
		SSL_CTX_ctrl(ctx, SSL_CTRL_SET_DH_AUTO, 2, NULL);
	}

	/* Own certificate (server; client in mutual mode). */
	if (conf->cert) {
		if (SSL_CTX_use_certificate_chain_file(ctx, conf->cert) != 1)
			return ossl_fail(err, errlen, "tls cert \"%s\": cannot load", conf->cert);
		const char *key = conf->key ? conf->key : conf->cert;
		if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
			return ossl_fail(err, errlen, "tls key \"%s\": cannot load", key);
		if (SSL_CTX_check_private_key(ctx) != 1)
			return ossl_fail(err, errlen,
			                 "tls key \"%s\" does not match the certificate", key);
	}

	/* Trust anchors and CRLs for the peer's chain (T5). */
	if (conf->ca) {
		if (SSL_CTX_load_verify_locations(ctx, conf->ca, NULL) != 1)
			return ossl_fail(err, errlen, "tls ca \"%s\": cannot load", conf->ca);
		if (is_server && conf->mode == SG_TLS_MUTUAL) {
			STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(conf->ca);
			if (names)
				SSL_CTX_set_client_CA_list(ctx, names);
		}
	}
	if (conf->crl) {
		X509_STORE *st = SSL_CTX_get_cert_store(ctx);
		if ((e = load_crls(st, conf->crl, err, errlen)))
			return e;
		X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	}
	SSL_CTX_set_verify_depth(ctx, 6);
	/* Our own chain is built once, here, not on every handshake: without an explicit chain
	 * OpenSSL runs X509_verify_cert (signatures, CRL lookups) over our certificate against
	 * the trust store for each Certificate message it sends, which was a third of the CPU of
	 * a full handshake. The chain file's extra certificates are kept (UNTRUSTED), the trust
	 * anchor is left out (RFC 8446 §4.4.2: the peer must have it anyway), and a chain that
	 * cannot be completed from the store is sent as far as it goes, as before. */
	if (conf->cert) {
		ERR_clear_error();
		if (SSL_CTX_build_cert_chain(ctx, SSL_BUILD_CHAIN_FLAG_UNTRUSTED |
		                                      SSL_BUILD_CHAIN_FLAG_NO_ROOT |
		                                      SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR |
		                                      SSL_BUILD_CHAIN_FLAG_CLEAR_ERROR) <= 0)
			return ossl_fail(err, errlen, "tls cert \"%s\": cannot build the chain",
			                 conf->cert);
		/* an empty chain (leaf issued by the anchor) is dropped: every SSL would copy
		 * the empty stack, ~170 bytes per idle connection */
		STACK_OF(X509) *chain = NULL;
		if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain && sk_X509_num(chain) == 0)
			SSL_CTX_clear_chain_certs(ctx);
		SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
	}
	if (is_server) {
		if (conf->mode == SG_TLS_MUTUAL)
			SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			                   verify_cb);
		else /* server-auth/PSK: no client certificate is asked for (R1: a token is) */
			SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		static const unsigned char sid_ctx[] = "sealguard";
		SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
	}

	/* T6: TLS-PSK. */
	if (conf->mode == SG_TLS_PSK && conf->psk_file) {
		struct psk_table *t = NULL;
		if ((e = psk_load(conf->psk_file, is_server ? NULL : conf->psk_identity, &t, err,
		                  errlen)))
			return e;
		struct psk_table *old = SSL_CTX_get_ex_data(ctx, ctx_psk_idx);
		if (SSL_CTX_set_ex_data(ctx, ctx_psk_idx, t) != 1) {
			psk_table_free(t);
			return ossl_fail(err, errlen, "tls psk_file: cannot attach");
		}
		psk_table_free(old);
		if (is_server) {
			SSL_CTX_set_psk_find_session_callback(ctx, psk_find_session_cb);
			SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
		} else {
			SSL_CTX_set_psk_use_session_callback(ctx, psk_use_session_cb);
			SSL_CTX_set_psk_client_callback(ctx, psk_client_cb);
		}
	} else if (conf->mode == SG_TLS_PSK && !is_server) {
		return sg_fail(err, errlen, SG_ERR_CONFIG, "tls psk_file: required for PSK");
	}
	return SG_OK;
}

/* ---- after the handshake ------------------------------------------------------------------ */

sg_err sg_tls_check_negotiated(SSL *ssl)
{
	if (!ssl)
		return SG_ERR_INVALID;
	int v = SSL_version(ssl);
	if (v != TLS1_2_VERSION && v != TLS1_3_VERSION)
		return SG_ERR_PROTO; /* TS 33.210 §6.2.1 */
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	if (!c || !SSL_CIPHER_is_aead(c))
		return SG_ERR_PROTO;
	const char *name = SSL_CIPHER_get_name(c);
	if (v == TLS1_3_VERSION)
		return in_colon_list(SG_TLS13_SUITES, name, strlen(name)) ? SG_OK : SG_ERR_PROTO;
	/* TS 33.210 §6.2.3: TLS 1.2 only with the extended master secret (RFC 7627). */
	if (SSL_get_extms_support(ssl) != 1)
		return SG_ERR_PROTO;
	if (!in_colon_list(SG_TLS12_CIPHERS, name, strlen(name)) &&
	    !in_colon_list(SG_TLS12_PSK_CIPHERS, name, strlen(name)))
		return SG_ERR_PROTO;
	return SG_OK;
}

sg_err sg_tls_client_ctx_new(const struct sg_tls_conf *conf, SSL_CTX **out, char *err,
                             size_t errlen)
{
	if (!conf || !out)
		return sg_fail(err, errlen, SG_ERR_INVALID, "tls: no configuration");
	*out = NULL;
	sg_err e = sg_tls_conf_check(conf, 0, err, errlen);
	if (e)
		return e;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return ossl_fail(err, errlen, "tls: cannot create a client context");
	e = sg_tls_apply_profile(ctx, conf, 0, err, errlen);
	if (e) {
		SSL_CTX_free(ctx);
		return e;
	}
	*out = ctx;
	return SG_OK;
}
