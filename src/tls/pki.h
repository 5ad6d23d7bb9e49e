/* tls/pki.h: the development PKI (`sealguard pki`): a P-256 CA, server and client certificates
 * with the TS 33.310 fields (SAN identity, keyUsage, extendedKeyUsage, cRLDistributionPoints),
 * and a CRL. Made with OpenSSL's APIs, never by running the openssl tool. For development and
 * tests; production deployments bring their operator's PKI. */
#ifndef SG_TLS_PKI_H
#define SG_TLS_PKI_H

#include "base/err.h"
#include <stddef.h>

/* Directory layout (DIR = the PKI directory):
 *   DIR/ca.crt, DIR/ca.key (0600)           the CA
 *   DIR/crl.pem                              the CRL (PEM; served DER at the admin listener)
 *   DIR/index.json                           issued certificates: serial, kind, name, revoked
 *   DIR/server.crt, DIR/server.key           this host's server cert: DNS:localhost, IP:127.0.0.1
 *                                            (EKU serverAuth + clientAuth, for SEAL-E peers)
 *   DIR/val-servers/NAME.crt|.key            VAL server client cert, SAN DNS:NAME, EKU clientAuth
 *   DIR/seal-servers/NAME.crt|.key           SEAL server cert, SAN DNS:NAME, EKU server+client
 */
struct sg_pki_opts {
	const char *dir;
	const char
	    *crl_uri; /* cRLDistributionPoints URI; default http://127.0.0.1:9090/pki/ca.crl */
	const char **val_servers; /* names, may be NULL */
	size_t n_val_servers;
	const char **seal_servers;
	size_t n_seal_servers;
	int days; /* leaf validity (default 365); CA: 10 years */
};

/* Creates the CA, CRL and server certificate when absent, then every named certificate that
 * does not exist yet. Run again on an existing DIR, it adds certificates under the same CA. */
sg_err sg_pki_init(const struct sg_pki_opts *opts, char *err, size_t errlen);

/* Adds the certificate in cert_path (issued by DIR's CA) to the CRL and re-signs it. */
sg_err sg_pki_revoke(const char *dir, const char *cert_path, char *err, size_t errlen);

/* Issues one certificate with explicit fields, for tests that need unusual certificates
 * (expired, wrong EKU, other CA...). kind: "server", "val-server", "seal-server", or
 * "client-noeku"/"server-only" variants as documented in pki.c. Writes out_crt/out_key. */
struct sg_pki_issue {
	const char *ca_dir;           /* CA to sign with */
	const char *san;              /* e.g. "DNS:foo" or "DNS:localhost,IP:127.0.0.1" */
	int server_auth, client_auth; /* EKU bits */
	long not_before_offset_s;     /* relative to now; negative = in the past */
	long not_after_offset_s;
	const char *out_crt, *out_key;
};
sg_err sg_pki_issue(const struct sg_pki_issue *req, char *err, size_t errlen);

#endif
