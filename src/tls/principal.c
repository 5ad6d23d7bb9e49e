/* tls/principal.c: who is on the other side of a finished handshake (TS 33.310: the identity is
 * the subjectAltName of the verified end-entity certificate, or the PSK identity for T6), and
 * the process-wide handshake counters. */
#include "tls/tls.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic unsigned long long st_full, st_resumed, st_failures;

static int is_external_psk(SSL *ssl)
{
	return sg_tls_psk_identity(ssl) != NULL;
}

void sg_tls_stats_count(SSL *ssl, int ok)
{
	if (!ok || !ssl)
		atomic_fetch_add(&st_failures, 1);
	else if (SSL_session_reused(ssl) && !is_external_psk(ssl))
		atomic_fetch_add(&st_resumed, 1);
	else
		atomic_fetch_add(&st_full, 1);
}

void sg_tls_stats_get(struct sg_tls_stats *out)
{
	if (!out)
		return;
	out->handshakes_full = atomic_load(&st_full);
	out->handshakes_resumed = atomic_load(&st_resumed);
	out->handshake_failures = atomic_load(&st_failures);
}

static char *san_string(const GENERAL_NAME *gn)
{
	const char *prefix;
	char ipbuf[INET6_ADDRSTRLEN];
	const unsigned char *data;
	int len;
	switch (gn->type) {
	case GEN_DNS:
		prefix = "DNS:";
		data = ASN1_STRING_get0_data(gn->d.dNSName);
		len = ASN1_STRING_length(gn->d.dNSName);
		break;
	case GEN_URI:
		prefix = "URI:";
		data = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
		len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
		break;
	case GEN_IPADD: {
		int l = ASN1_STRING_length(gn->d.iPAddress);
		const unsigned char *ip = ASN1_STRING_get0_data(gn->d.iPAddress);
		if (l == 4)
			inet_ntop(AF_INET, ip, ipbuf, sizeof ipbuf);
		else if (l == 16)
			inet_ntop(AF_INET6, ip, ipbuf, sizeof ipbuf);
		else
			return NULL;
		prefix = "IP:";
		data = (const unsigned char *)ipbuf;
		len = (int)strlen(ipbuf);
		break;
	}
	default:
		return NULL;
	}
	if (!data || len <= 0 || memchr(data, 0, (size_t)len))
		return NULL; /* embedded NUL: never an identity */
	size_t pl = strlen(prefix);
	char *s = malloc(pl + (size_t)len + 1);
	if (!s)
		return NULL;
	memcpy(s, prefix, pl);
	memcpy(s + pl, data, (size_t)len);
	s[pl + (size_t)len] = 0;
	return s;
}

int sg_tls_cert_has_san(X509 *x, const char *identity)
{
	GENERAL_NAMES *gens = x ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
	int found = 0;
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
		char *s = san_string(sk_GENERAL_NAME_value(gens, i));
		found = s && strcmp(s, identity) == 0;
		free(s);
	}
	GENERAL_NAMES_free(gens);
	return found;
}

sg_err sg_tls_principal_from_ssl(SSL *ssl, struct sg_tls_principal *p)
{
	if (!ssl || !p)
		return SG_ERR_INVALID;
	memset(p, 0, sizeof *p);
	snprintf(p->version, sizeof p->version, "%s", SSL_get_version(ssl));
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	snprintf(p->cipher, sizeof p->cipher, "%s", c ? SSL_CIPHER_standard_name(c) : "");
	const char *pskid = sg_tls_psk_identity(ssl);
	p->resumed = SSL_session_reused(ssl) && !pskid;

	X509 *peer = SSL_get0_peer_certificate(ssl);
	if (peer && SSL_get_verify_result(ssl) == X509_V_OK) {
		unsigned int mdlen = 0;
		if (X509_digest(peer, EVP_sha256(), p->cert_sha256, &mdlen) != 1 || mdlen != 32) {
			sg_tls_principal_clear(p);
			return SG_ERR_TLS;
		}
		GENERAL_NAMES *gens = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
		for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
			if (p->nsans >= SG_TLS_MAX_SANS)
				break;
			char *s = san_string(sk_GENERAL_NAME_value(gens, i));
			if (s)
				p->sans[p->nsans++] = s;
		}
		GENERAL_NAMES_free(gens);
		p->authenticated = 1;
		X509 *own = SSL_get_certificate(ssl);
		for (size_t i = 0; own && i < p->nsans && !p->own_san; i++)
			if (sg_tls_cert_has_san(own, p->sans[i]))
				p->own_san = p->sans[i];
	}
	if (pskid) {
		p->is_psk = 1;
		p->psk_identity = strdup(pskid);
		if (!p->psk_identity) {
			sg_tls_principal_clear(p);
			return SG_ERR_NOMEM;
		}
		p->authenticated = 1;
	}
	return SG_OK;
}

void sg_tls_principal_clear(struct sg_tls_principal *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nsans && i < SG_TLS_MAX_SANS; i++)
		free(p->sans[i]);
	free(p->psk_identity);
	memset(p, 0, sizeof *p);
}

int sg_tls_principal_has_san(const struct sg_tls_principal *p, const char *identity)
{
	if (!p || !identity)
		return 0;
	for (size_t i = 0; i < p->nsans && i < SG_TLS_MAX_SANS; i++)
		if (p->sans[i] && !strcmp(p->sans[i], identity))
			return 1;
	return 0;
}
