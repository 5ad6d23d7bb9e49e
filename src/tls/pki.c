/* tls/pki.c: the development PKI behind `sealguard pki` (see pki.h for the directory layout).
 *
 * Every certificate follows the TS 33.310 §6.1.3a profile that tls/ enforces (REQUIREMENTS T5):
 * X.509v3, ECDSA P-256 keys, SHA-256 signatures, the identity in subjectAltName, keyUsage
 * digitalSignature, extendedKeyUsage per role, and a cRLDistributionPoints URI. The CRL
 * (RFC 5280 §5, v2) is always rebuilt from index.json, so index.json is the one record of what
 * was issued and revoked.
 *
 * On success, sg_pki_revoke writes a one-line summary into err ("revoked ..." or "... was
 * already revoked ..."), so the CLI can report it; on failure err holds the reason. */
#include "tls/pki.h"

#include "base/clock.h"
#include "base/file.h"
#include "base/rand.h"

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define SG_PKI_DEFAULT_CRL_URI "http://127.0.0.1:9090/pki/ca.crl"
#define SG_PKI_CA_CN           "sealguard development CA"
#define SG_PKI_CA_DAYS         3650 /* 10 years */
#define SG_PKI_CRL_DAYS        30
#define SG_PKI_MAX_FILE        (1024 * 1024)
#define SG_PKI_PATH_MAX        4096
#define SG_PKI_NAME_MAX        239

/* One leaf certificate to issue (the single code path of sg_pki_init and sg_pki_issue). */
struct pki_leaf {
	const char *cn;  /* informational only: the identity is the SAN (TS 33.310 §6.1.3a) */
	const char *san; /* "DNS:x,IP:1.2.3.4,URI:..." */
	int server_auth, client_auth;
	long not_before_s, not_after_s; /* offsets from now */
	const char *crl_uri;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static sg_err ossl_fail(char *err, size_t errlen, const char *what)
{
	sg_fail(err, errlen, SG_ERR_TLS, "%s failed", what);
	sg_fail_append_openssl(err, errlen);
	return SG_ERR_TLS;
}

static sg_err join(char *out, const char *dir, const char *name, char *err, size_t errlen)
{
	if (sg_path_join(out, SG_PKI_PATH_MAX, dir, name) != SG_OK)
		return sg_fail(err, errlen, SG_ERR_LIMIT, "path too long: %s/%s", dir, name);
	return SG_OK;
}

/* Names become file names and dNSName SANs: letters, digits, '-', '.' (RFC 1035 §2.3.1), labels
 * of 1 to 63 characters, never a path ("/", "..") or a hidden file / option ('.' or '-' first).
 * At most 239 characters rather than DNS's 253: NAME.key plus the atomic writer's temporary
 * suffix ".tmp.PID" (PID <= 4194304 on Linux) must fit in NAME_MAX (255). */
static sg_err pki_check_name(const char *name, char *err, size_t errlen)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > SG_PKI_NAME_MAX)
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "invalid name \"%.40s\": 1 to %d characters", name ? name : "",
		               SG_PKI_NAME_MAX);
	if (name[0] == '.' || name[0] == '-' || name[n - 1] == '.' || strstr(name, ".."))
		return sg_fail(
		    err, errlen, SG_ERR_INVALID,
		    "invalid name \"%s\": must not start with '.' or '-', end with '.' or "
		    "contain \"..\"",
		    name);
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return sg_fail(err, errlen, SG_ERR_INVALID,
			               "invalid name \"%s\": only letters, digits, '-' and '.'",
			               name);
		label = c == '.' ? 0 : label + 1;
		if (label > 63)
			return sg_fail(
			    err, errlen, SG_ERR_INVALID,
			    "invalid name \"%.40s...\": a DNS label has at most 63 characters",
			    name);
	}
	return SG_OK;
}

/* TS 33.310 §6.1.3a: the identity is a dNSName, URI or IP address SAN; nothing else accepted. */
static sg_err pki_check_san(const char *san, char *err, size_t errlen)
{
	if (!san || !*san)
		return sg_fail(err, errlen, SG_ERR_INVALID, "subjectAltName is required");
	const char *p = san;
	while (*p) {
		while (*p == ' ')
			p++;
		size_t len = strcspn(p, ",");
		if (!((len > 4 && strncmp(p, "DNS:", 4) == 0) ||
		      (len > 3 && strncmp(p, "IP:", 3) == 0) ||
		      (len > 4 && strncmp(p, "URI:", 4) == 0)))
			return sg_fail(
			    err, errlen, SG_ERR_INVALID,
			    "subjectAltName \"%s\": each entry must be DNS:, IP: or URI:", san);
		p += len;
		if (*p == ',')
			p++;
	}
	return SG_OK;
}

static void time_iso(time_t t, char *out, size_t outlen)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void asn1_time_iso(const ASN1_TIME *t, char *out, size_t outlen)
{
	struct tm tm;
	if (!ASN1_TIME_to_tm(t, &tm)) {
		snprintf(out, outlen, "?");
		return;
	}
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Returns the serial as upper-case hex (OPENSSL_free it), or NULL. */
static char *serial_hex(const ASN1_INTEGER *serial)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	BN_free(bn);
	return hex;
}

/* ---- PEM in and out ----------------------------------------------------------------------- */

static sg_err write_cert(const char *path, X509 *cert, char *err, size_t errlen)
{
	BIO *b = BIO_new(BIO_s_mem());
	if (!b || !PEM_write_bio_X509(b, cert)) {
		BIO_free(b);
		return ossl_fail(err, errlen, "PEM_write_bio_X509");
	}
	char *data;
	long len = BIO_get_mem_data(b, &data);
	sg_err e = sg_file_write_atomic(path, data, (size_t)len, 0644);
	BIO_free(b);
	if (e)
		return sg_fail(err, errlen, e, "cannot write %s: %s", path, sg_err_str(e));
	return SG_OK;
}

/* Private keys: PKCS#8 PEM, mode 0600, the PEM buffer wiped before it is freed. */
static sg_err write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen)
{
	BIO *b = BIO_new(BIO_s_mem());
	if (!b || !PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)) {
		BIO_free(b);
		return ossl_fail(err, errlen, "PEM_write_bio_PrivateKey");
	}
	BUF_MEM *mem = NULL;
	BIO_get_mem_ptr(b, &mem);
	sg_err e = sg_file_write_atomic(path, mem->data, mem->length, 0600);
	OPENSSL_cleanse(mem->data, mem->max);
	BIO_free(b);
	if (e)
		return sg_fail(err, errlen, e, "cannot write %s: %s", path, sg_err_str(e));
	return SG_OK;
}

static sg_err read_cert(const char *path, X509 **out, char *err, size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	sg_err e = sg_file_read(path, SG_PKI_MAX_FILE, &data, &len);
	if (e)
		return sg_fail(err, errlen, e, "cannot read %s: %s", path, sg_err_str(e));
	BIO *b = BIO_new_mem_buf(data, (int)len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	free(data);
	if (!x) {
		sg_fail(err, errlen, SG_ERR_INVALID, "%s: not a PEM certificate", path);
		sg_fail_append_openssl(err, errlen);
		return SG_ERR_INVALID;
	}
	*out = x;
	return SG_OK;
}

static sg_err read_key(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	sg_err e = sg_file_read(path, SG_PKI_MAX_FILE, &data, &len);
	if (e)
		return sg_fail(err, errlen, e, "cannot read %s: %s", path, sg_err_str(e));
	BIO *b = BIO_new_mem_buf(data, (int)len);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	OPENSSL_cleanse(data, len);
	free(data);
	if (!k) {
		sg_fail(err, errlen, SG_ERR_INVALID, "%s: not a PEM private key", path);
		sg_fail_append_openssl(err, errlen);
		return SG_ERR_INVALID;
	}
	*out = k;
	return SG_OK;
}

static sg_err load_ca(const char *dir, X509 **ca, EVP_PKEY **key, char *err, size_t errlen)
{
	char crt[SG_PKI_PATH_MAX], kp[SG_PKI_PATH_MAX];
	sg_err e;
	if ((e = join(crt, dir, "ca.crt", err, errlen)) ||
	    (e = join(kp, dir, "ca.key", err, errlen)))
		return e;
	if ((e = read_cert(crt, ca, err, errlen)))
		return e;
	if ((e = read_key(kp, key, err, errlen))) {
		X509_free(*ca);
		*ca = NULL;
		return e;
	}
	if (X509_check_private_key(*ca, *key) != 1) {
		X509_free(*ca);
		EVP_PKEY_free(*key);
		*ca = NULL;
		*key = NULL;
		ERR_clear_error();
		return sg_fail(err, errlen, SG_ERR_INVALID, "%s does not match %s", kp, crt);
	}
	return SG_OK;
}

/* ---- certificate construction ------------------------------------------------------------- */

static sg_err add_ext(X509 *cert, X509 *issuer, int nid, const char *value, char *err,
                      size_t errlen)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (!ext || !X509_add_ext(cert, ext, -1)) {
		X509_EXTENSION_free(ext);
		sg_fail(err, errlen, SG_ERR_TLS, "cannot add %s = %s", OBJ_nid2sn(nid), value);
		sg_fail_append_openssl(err, errlen);
		return SG_ERR_TLS;
	}
	X509_EXTENSION_free(ext);
	return SG_OK;
}

/* TS 33.310 §6.1.3a / TS 33.210 §6.2: ECDSA on P-256. */
static sg_err gen_key(EVP_PKEY **out, char *err, size_t errlen)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	if (!k)
		return ossl_fail(err, errlen, "EVP_EC_gen(P-256)");
	*out = k;
	return SG_OK;
}

/* RFC 5280 §4.1.2.2: positive, at most 20 octets; 16 random bytes (CA/B BR: >= 64 bits). */
static sg_err set_random_serial(X509 *cert, char *err, size_t errlen)
{
	unsigned char b[16];
	if (sg_random_bytes(b, sizeof b) != SG_OK)
		return ossl_fail(err, errlen, "RAND_bytes");
	b[0] = (unsigned char)((b[0] & 0x7f) | 0x40); /* positive, always 16 octets */
	BIGNUM *bn = BN_bin2bn(b, sizeof b, NULL);
	ASN1_INTEGER *ai = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
	int ok = ai && X509_set_serialNumber(cert, ai);
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	return ok ? SG_OK : ossl_fail(err, errlen, "X509_set_serialNumber");
}

static sg_err set_subject_cn(X509 *cert, const char *cn, char *err, size_t errlen)
{
	X509_NAME *n = X509_get_subject_name(cert);
	char buf[65]; /* RFC 5280 ub-common-name: 64 */
	snprintf(buf, sizeof buf, "%s", cn);
	if (!X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (unsigned char *)buf, -1,
	                                -1, 0))
		return ossl_fail(err, errlen, "X509_NAME_add_entry");
	return SG_OK;
}

static sg_err make_ca(X509 **out_ca, EVP_PKEY **out_key, char *err, size_t errlen)
{
	EVP_PKEY *key = NULL;
	X509 *ca = NULL;
	sg_err e = gen_key(&key, err, errlen);
	if (e)
		return e;
	ca = X509_new();
	if (!ca) {
		e = ossl_fail(err, errlen, "X509_new");
		goto out;
	}
	if (!X509_set_version(ca, X509_VERSION_3) || !X509_set_pubkey(ca, key)) {
		e = ossl_fail(err, errlen, "X509_set_version/pubkey");
		goto out;
	}
	if ((e = set_random_serial(ca, err, errlen)) ||
	    (e = set_subject_cn(ca, SG_PKI_CA_CN, err, errlen)))
		goto out;
	if (!X509_set_issuer_name(ca, X509_get_subject_name(ca)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(ca), -60) ||
	    !X509_time_adj_ex(X509_getm_notAfter(ca), SG_PKI_CA_DAYS, 0, NULL)) {
		e = ossl_fail(err, errlen, "X509 CA names/validity");
		goto out;
	}
	/* RFC 5280 §4.2.1.9 / §4.2.1.3: a CA certificate, used only to sign certificates and CRLs.
	 */
	if ((e = add_ext(ca, ca, NID_basic_constraints, "critical,CA:TRUE", err, errlen)) ||
	    (e = add_ext(ca, ca, NID_key_usage, "critical,keyCertSign,cRLSign", err, errlen)) ||
	    (e = add_ext(ca, ca, NID_subject_key_identifier, "hash", err, errlen)))
		goto out;
	if (!X509_sign(ca, key, EVP_sha256())) {
		e = ossl_fail(err, errlen, "X509_sign (CA)");
		goto out;
	}
	*out_ca = ca;
	*out_key = key;
	return SG_OK;
out:
	X509_free(ca);
	EVP_PKEY_free(key);
	return e;
}

/* The one function that issues a leaf certificate, for sg_pki_init and sg_pki_issue.
 * TS 33.310 §6.1.3a (T5): X.509v3, P-256, SHA-256, identity in subjectAltName, keyUsage
 * digitalSignature, extendedKeyUsage per role, cRLDistributionPoints (mandatory in TS 33.310). */
static sg_err issue_leaf(X509 *ca, EVP_PKEY *ca_key, const struct pki_leaf *p, X509 **out_cert,
                         EVP_PKEY **out_key, char *err, size_t errlen)
{
	sg_err e = pki_check_san(p->san, err, errlen);
	if (e)
		return e;
	if (p->not_after_s <= p->not_before_s)
		return sg_fail(err, errlen, SG_ERR_INVALID, "notAfter must be after notBefore");
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	if ((e = gen_key(&key, err, errlen)))
		return e;
	x = X509_new();
	if (!x) {
		e = ossl_fail(err, errlen, "X509_new");
		goto out;
	}
	if (!X509_set_version(x, X509_VERSION_3) || !X509_set_pubkey(x, key) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(ca))) {
		e = ossl_fail(err, errlen, "X509 version/pubkey/issuer");
		goto out;
	}
	if ((e = set_random_serial(x, err, errlen)) || (e = set_subject_cn(x, p->cn, err, errlen)))
		goto out;
	if (!X509_gmtime_adj(X509_getm_notBefore(x), p->not_before_s) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), p->not_after_s)) {
		e = ossl_fail(err, errlen, "X509 validity");
		goto out;
	}
	char eku[32] = "";
	if (p->server_auth)
		strcat(eku, "serverAuth");
	if (p->client_auth)
		strcat(eku, p->server_auth ? ",clientAuth" : "clientAuth");
	char cdp[1100];
	if ((size_t)snprintf(cdp, sizeof cdp, "URI:%s", p->crl_uri) >= sizeof cdp) {
		e = sg_fail(err, errlen, SG_ERR_INVALID, "CRL URI too long");
		goto out;
	}
	if ((e = add_ext(x, ca, NID_basic_constraints, "CA:FALSE", err, errlen)) ||
	    (e = add_ext(x, ca, NID_key_usage, "critical,digitalSignature", err, errlen)) ||
	    (eku[0] && (e = add_ext(x, ca, NID_ext_key_usage, eku, err, errlen))) ||
	    (e = add_ext(x, ca, NID_subject_alt_name, p->san, err, errlen)) ||
	    (e = add_ext(x, ca, NID_subject_key_identifier, "hash", err, errlen)) ||
	    (e = add_ext(x, ca, NID_authority_key_identifier, "keyid:always", err, errlen)) ||
	    (e = add_ext(x, ca, NID_crl_distribution_points, cdp, err, errlen)))
		goto out;
	if (!X509_sign(x, ca_key, EVP_sha256())) {
		e = ossl_fail(err, errlen, "X509_sign");
		goto out;
	}
	*out_cert = x;
	*out_key = key;
	return SG_OK;
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return e;
}

/* Writes the key first (0600) then the certificate, so a certificate never exists without its
 * key. */
static sg_err write_pair(const char *crt, const char *kp, X509 *x, EVP_PKEY *k, char *err,
                         size_t errlen)
{
	sg_err e = write_key(kp, k, err, errlen);
	return e ? e : write_cert(crt, x, err, errlen);
}

/* ---- index.json and the CRL --------------------------------------------------------------- */

static sg_err index_load(const char *dir, json_t **out, char *err, size_t errlen)
{
	char path[SG_PKI_PATH_MAX];
	sg_err e = join(path, dir, "index.json", err, errlen);
	if (e)
		return e;
	char *data = NULL;
	e = sg_file_read(path, 64 * SG_PKI_MAX_FILE, &data, NULL);
	if (e == SG_ERR_NOTFOUND) {
		*out = json_array();
		return *out ? SG_OK : sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	if (e)
		return sg_fail(err, errlen, e, "cannot read %s: %s", path, sg_err_str(e));
	json_error_t jerr;
	json_t *j = json_loads(data, 0, &jerr);
	free(data);
	if (!j || !json_is_array(j)) {
		json_decref(j);
		return sg_fail(err, errlen, SG_ERR_INVALID, "%s: not a JSON array (%s)", path,
		               j ? "wrong type" : jerr.text);
	}
	*out = j;
	return SG_OK;
}

static sg_err index_save(const char *dir, json_t *idx, char *err, size_t errlen)
{
	char path[SG_PKI_PATH_MAX];
	sg_err e = join(path, dir, "index.json", err, errlen);
	if (e)
		return e;
	char *s = json_dumps(idx, JSON_INDENT(2));
	if (!s)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	size_t n = strlen(s);
	char *s2 = realloc(s, n + 2);
	if (!s2) {
		free(s);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	s2[n] = '\n';
	e = sg_file_write_atomic(path, s2, n + 1, 0644);
	free(s2);
	if (e)
		return sg_fail(err, errlen, e, "cannot write %s: %s", path, sg_err_str(e));
	return SG_OK;
}

static json_t *index_find(json_t *idx, const char *serial)
{
	size_t i;
	json_t *v;
	json_array_foreach(idx, i, v)
	{
		const char *s = json_string_value(json_object_get(v, "serial"));
		if (s && strcasecmp(s, serial) == 0)
			return v;
	}
	return NULL;
}

static sg_err index_add(json_t *idx, X509 *x, const char *kind, const char *name,
                        const char *relpath, char *err, size_t errlen)
{
	char *hex = serial_hex(X509_get0_serialNumber(x));
	if (!hex)
		return ossl_fail(err, errlen, "serial to hex");
	char na[32];
	asn1_time_iso(X509_get0_notAfter(x), na, sizeof na);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:n}", "serial", hex, "kind", kind, "name",
	                      name, "cert", relpath, "not_after", na, "revoked_at");
	OPENSSL_free(hex);
	if (!o || json_array_append_new(idx, o))
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	return SG_OK;
}

/* Reads the crlNumber of DIR/crl.pem, or 0 when there is none yet. */
static long crl_number_of(const char *path)
{
	char *data = NULL;
	size_t len = 0;
	if (sg_file_read(path, SG_PKI_MAX_FILE, &data, &len) != SG_OK)
		return 0;
	BIO *b = BIO_new_mem_buf(data, (int)len);
	X509_CRL *crl = b ? PEM_read_bio_X509_CRL(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	free(data);
	long n = 0;
	if (crl) {
		ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
		if (num)
			n = ASN1_INTEGER_get(num);
		ASN1_INTEGER_free(num);
		X509_CRL_free(crl);
	}
	ERR_clear_error();
	return n < 0 ? 0 : n;
}

static sg_err add_revoked(X509_CRL *crl, const char *serial, time_t when, char *err, size_t errlen)
{
	BIGNUM *bn = NULL;
	ASN1_INTEGER *ai = NULL;
	ASN1_TIME *t = NULL;
	X509_REVOKED *r = X509_REVOKED_new();
	int ok = r && BN_hex2bn(&bn, serial) && (ai = BN_to_ASN1_INTEGER(bn, NULL)) &&
	         X509_REVOKED_set_serialNumber(r, ai) && (t = ASN1_TIME_set(NULL, when)) &&
	         X509_REVOKED_set_revocationDate(r, t);
	/* RFC 5280 §5.3.1: the reason is "unspecified", expressed by omitting the reasonCode
	 * entry extension ("SHOULD be absent instead of using the unspecified (0) value"). */
	if (ok && X509_CRL_add0_revoked(crl, r))
		r = NULL;
	else
		ok = 0;
	X509_REVOKED_free(r);
	ASN1_TIME_free(t);
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	return ok ? SG_OK : ossl_fail(err, errlen, "adding a revoked entry");
}

/* RFC 5280 §5: a v2 CRL signed by the CA, rebuilt from index.json on every change, with
 * crlNumber (§5.2.3) one more than the previous CRL's and authorityKeyIdentifier (§5.2.1). */
static sg_err write_crl(const char *dir, X509 *ca, EVP_PKEY *ca_key, json_t *idx, char *err,
                        size_t errlen)
{
	char path[SG_PKI_PATH_MAX];
	sg_err e = join(path, dir, "crl.pem", err, errlen);
	if (e)
		return e;
	long number = crl_number_of(path) + 1;
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *last = ASN1_TIME_set(NULL, time(NULL));
	ASN1_TIME *next = X509_time_adj_ex(NULL, SG_PKI_CRL_DAYS, 0, NULL);
	ASN1_INTEGER *num = ASN1_INTEGER_new();
	BIO *b = NULL;
	if (!crl || !last || !next || !num || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) ||
	    !X509_CRL_set1_lastUpdate(crl, last) || !X509_CRL_set1_nextUpdate(crl, next) ||
	    !ASN1_INTEGER_set(num, number) ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0)) {
		e = ossl_fail(err, errlen, "building the CRL");
		goto out;
	}
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, ca, NULL, NULL, crl, 0);
	X509_EXTENSION *akid =
	    X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
	if (!akid || !X509_CRL_add_ext(crl, akid, -1)) {
		X509_EXTENSION_free(akid);
		e = ossl_fail(err, errlen, "CRL authorityKeyIdentifier");
		goto out;
	}
	X509_EXTENSION_free(akid);
	size_t i;
	json_t *v;
	json_array_foreach(idx, i, v)
	{
		const char *serial = json_string_value(json_object_get(v, "serial"));
		const char *at = json_string_value(json_object_get(v, "revoked_at"));
		if (!serial || !at)
			continue;
		int64_t when;
		if (sg_time_parse_utc(at, &when) != 0) {
			e = sg_fail(err, errlen, SG_ERR_INVALID,
			            "index.json: bad revoked_at \"%s\"", at);
			goto out;
		}
		if ((e = add_revoked(crl, serial, (time_t)when, err, errlen)))
			goto out;
	}
	if (!X509_CRL_sort(crl) || !X509_CRL_sign(crl, ca_key, EVP_sha256())) {
		e = ossl_fail(err, errlen, "X509_CRL_sign");
		goto out;
	}
	b = BIO_new(BIO_s_mem());
	if (!b || !PEM_write_bio_X509_CRL(b, crl)) {
		e = ossl_fail(err, errlen, "PEM_write_bio_X509_CRL");
		goto out;
	}
	char *data;
	long len = BIO_get_mem_data(b, &data);
	e = sg_file_write_atomic(path, data, (size_t)len, 0644);
	if (e)
		sg_fail(err, errlen, e, "cannot write %s: %s", path, sg_err_str(e));
out:
	BIO_free(b);
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(last);
	ASN1_TIME_free(next);
	X509_CRL_free(crl);
	return e;
}

/* ---- sg_pki_init -------------------------------------------------------------------------- */

/* Issues DIR/REL.crt and DIR/REL.key unless the certificate exists; never overwrites a key. */
static sg_err ensure_leaf(const char *dir, X509 *ca, EVP_PKEY *ca_key, json_t *idx,
                          const char *kind, const char *name, const char *rel,
                          const struct pki_leaf *leaf, char *err, size_t errlen)
{
	char relcrt[SG_PKI_PATH_MAX], relkey[SG_PKI_PATH_MAX];
	char crt[SG_PKI_PATH_MAX], kp[SG_PKI_PATH_MAX];
	snprintf(relcrt, sizeof relcrt, "%s.crt", rel);
	snprintf(relkey, sizeof relkey, "%s.key", rel);
	sg_err e;
	if ((e = join(crt, dir, relcrt, err, errlen)) || (e = join(kp, dir, relkey, err, errlen)))
		return e;
	int have_crt = sg_file_exists(crt), have_key = sg_file_exists(kp);
	if (have_crt && have_key)
		return SG_OK;
	if (have_crt || have_key)
		return sg_fail(err, errlen, SG_ERR_EXISTS,
		               "%s exists without its %s; remove it or restore the pair",
		               have_crt ? crt : kp, have_crt ? "key" : "certificate");
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	if ((e = issue_leaf(ca, ca_key, leaf, &x, &k, err, errlen)))
		return e;
	if (!(e = write_pair(crt, kp, x, k, err, errlen)) &&
	    !(e = index_add(idx, x, kind, name, relcrt, err, errlen)))
		e = index_save(dir, idx, err, errlen);
	X509_free(x);
	EVP_PKEY_free(k);
	return e;
}

sg_err sg_pki_init(const struct sg_pki_opts *opts, char *err, size_t errlen)
{
	if (!opts || !opts->dir || !*opts->dir)
		return sg_fail(err, errlen, SG_ERR_INVALID, "no PKI directory given");
	if (opts->days < 0 || opts->days > 36500)
		return sg_fail(err, errlen, SG_ERR_INVALID, "days must be between 1 and 36500");
	sg_err e;
	for (size_t i = 0; i < opts->n_val_servers; i++)
		if ((e = pki_check_name(opts->val_servers[i], err, errlen)))
			return e;
	for (size_t i = 0; i < opts->n_seal_servers; i++)
		if ((e = pki_check_name(opts->seal_servers[i], err, errlen)))
			return e;
	const char *dir = opts->dir;
	const char *crl_uri =
	    opts->crl_uri && *opts->crl_uri ? opts->crl_uri : SG_PKI_DEFAULT_CRL_URI;
	int days = opts->days > 0 ? opts->days : 365;

	char sub[SG_PKI_PATH_MAX], cacrt[SG_PKI_PATH_MAX], cakey[SG_PKI_PATH_MAX];
	char crlp[SG_PKI_PATH_MAX];
	if ((e = sg_mkdirs(dir, 0700)))
		return sg_fail(err, errlen, e, "cannot create %s: %s", dir, sg_err_str(e));
	if ((e = join(sub, dir, "val-servers", err, errlen)))
		return e;
	if ((e = sg_mkdirs(sub, 0700)))
		return sg_fail(err, errlen, e, "cannot create %s: %s", sub, sg_err_str(e));
	if ((e = join(sub, dir, "seal-servers", err, errlen)))
		return e;
	if ((e = sg_mkdirs(sub, 0700)))
		return sg_fail(err, errlen, e, "cannot create %s: %s", sub, sg_err_str(e));
	if ((e = join(cacrt, dir, "ca.crt", err, errlen)) ||
	    (e = join(cakey, dir, "ca.key", err, errlen)) ||
	    (e = join(crlp, dir, "crl.pem", err, errlen)))
		return e;

	X509 *ca = NULL;
	EVP_PKEY *ca_key = NULL;
	json_t *idx = NULL;
	int have_crt = sg_file_exists(cacrt), have_key = sg_file_exists(cakey);
	if (have_crt && have_key) {
		if ((e = load_ca(dir, &ca, &ca_key, err, errlen)))
			return e;
	} else if (have_crt || have_key) {
		return sg_fail(err, errlen, SG_ERR_EXISTS,
		               "%s exists without %s; refusing to replace it",
		               have_crt ? cacrt : cakey, have_crt ? cakey : cacrt);
	} else {
		if ((e = make_ca(&ca, &ca_key, err, errlen)))
			return e;
		if ((e = write_pair(cacrt, cakey, ca, ca_key, err, errlen)))
			goto out;
	}
	if ((e = index_load(dir, &idx, err, errlen)))
		goto out;
	if (!sg_file_exists(crlp) && (e = write_crl(dir, ca, ca_key, idx, err, errlen)))
		goto out;

	long nb = -60, na = (long)days * 86400;
	struct pki_leaf leaf = {.cn = "localhost",
	                        .san = "DNS:localhost,IP:127.0.0.1",
	                        .server_auth = 1,
	                        .client_auth = 1,
	                        .not_before_s = nb,
	                        .not_after_s = na,
	                        .crl_uri = crl_uri};
	if ((e = ensure_leaf(dir, ca, ca_key, idx, "server", "localhost", "server", &leaf, err,
	                     errlen)))
		goto out;
	for (int role = 0; role < 2; role++) {
		const char **names = role == 0 ? opts->val_servers : opts->seal_servers;
		size_t n = role == 0 ? opts->n_val_servers : opts->n_seal_servers;
		for (size_t i = 0; i < n; i++) {
			char san[300], rel[300];
			snprintf(san, sizeof san, "DNS:%s", names[i]);
			snprintf(rel, sizeof rel, "%s/%s",
			         role == 0 ? "val-servers" : "seal-servers", names[i]);
			leaf.cn = names[i];
			leaf.san = san;
			/* VAL servers are TLS clients on SEAL-S (TS 33.434 §5.1.1, R3); SEAL
			 * servers are both ends of SEAL-E / SEAL-X (R4). */
			leaf.server_auth = role == 1;
			leaf.client_auth = 1;
			if ((e = ensure_leaf(dir, ca, ca_key, idx,
			                     role == 0 ? "val-server" : "seal-server", names[i],
			                     rel, &leaf, err, errlen)))
				goto out;
		}
	}
	e = index_save(dir, idx, err, errlen);
out:
	json_decref(idx);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return e;
}

/* ---- sg_pki_revoke ------------------------------------------------------------------------ */

sg_err sg_pki_revoke(const char *dir, const char *cert_path, char *err, size_t errlen)
{
	if (!dir || !cert_path)
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "no PKI directory or certificate given");
	X509 *ca = NULL, *x = NULL;
	EVP_PKEY *ca_key = NULL, *ca_pub;
	json_t *idx = NULL;
	char *hex = NULL;
	sg_err e;
	if ((e = load_ca(dir, &ca, &ca_key, err, errlen)))
		return e;
	if ((e = read_cert(cert_path, &x, err, errlen)))
		goto out;
	/* Only this CA's certificates can be put on its CRL: issuer name, AKID and signature. */
	ca_pub = X509_get0_pubkey(ca);
	if (X509_check_issued(ca, x) != X509_V_OK || !ca_pub || X509_verify(x, ca_pub) != 1) {
		ERR_clear_error();
		e = sg_fail(err, errlen, SG_ERR_DENIED, "%s was not issued by the CA in %s",
		            cert_path, dir);
		goto out;
	}
	if (X509_cmp(ca, x) == 0) {
		e = sg_fail(err, errlen, SG_ERR_INVALID,
		            "refusing to revoke the CA certificate itself");
		goto out;
	}
	hex = serial_hex(X509_get0_serialNumber(x));
	if (!hex) {
		e = ossl_fail(err, errlen, "serial to hex");
		goto out;
	}
	if ((e = index_load(dir, &idx, err, errlen)))
		goto out;
	json_t *entry = index_find(idx, hex);
	if (!entry) {
		/* Issued by sg_pki_issue (not recorded): record it now so the CRL keeps it. */
		char cn[256] = "";
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
		if ((e = index_add(idx, x, "issued", cn, cert_path, err, errlen)))
			goto out;
		entry = index_find(idx, hex);
	}
	const char *already = json_string_value(json_object_get(entry, "revoked_at"));
	char now[32], prev[32] = "";
	if (already) {
		snprintf(prev, sizeof prev, "%s", already);
	} else {
		time_iso(time(NULL), now, sizeof now);
		if (json_object_set_new(entry, "revoked_at", json_string(now))) {
			e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
			goto out;
		}
		if ((e = index_save(dir, idx, err, errlen)))
			goto out;
	}
	if ((e = write_crl(dir, ca, ca_key, idx, err, errlen)))
		goto out;
	if (prev[0])
		sg_fail(err, errlen, SG_OK, "serial %s was already revoked at %s; CRL re-signed",
		        hex, prev);
	else
		sg_fail(err, errlen, SG_OK, "revoked serial %s (%s); CRL re-signed", hex,
		        cert_path);
out:
	OPENSSL_free(hex);
	json_decref(idx);
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return e;
}

/* ---- sg_pki_issue ------------------------------------------------------------------------- */

/* Issues one certificate under ca_dir's CA with the fields given, through the same issue_leaf
 * as sg_pki_init. EKU: server_auth/client_auth bits ("server-only" = server_auth only,
 * "client-noeku" = neither, which omits the extension). not_after_offset_s == 0 means 365 days.
 * Overwrites out_crt/out_key (callers choose fresh paths); not recorded in index.json until
 * revoked. */
sg_err sg_pki_issue(const struct sg_pki_issue *req, char *err, size_t errlen)
{
	if (!req || !req->ca_dir || !req->out_crt || !req->out_key)
		return sg_fail(err, errlen, SG_ERR_INVALID,
		               "ca_dir, out_crt and out_key are required");
	sg_err e = pki_check_san(req->san, err, errlen);
	if (e)
		return e;
	/* CN: the first SAN value, informational only. */
	char cn[65];
	const char *colon = strchr(req->san, ':');
	snprintf(cn, sizeof cn, "%.*s", (int)strcspn(colon + 1, ","), colon + 1);
	struct pki_leaf leaf = {
	    .cn = cn,
	    .san = req->san,
	    .server_auth = req->server_auth,
	    .client_auth = req->client_auth,
	    .not_before_s = req->not_before_offset_s,
	    .not_after_s = req->not_after_offset_s ? req->not_after_offset_s : 365L * 86400,
	    .crl_uri = SG_PKI_DEFAULT_CRL_URI,
	};
	X509 *ca = NULL, *x = NULL;
	EVP_PKEY *ca_key = NULL, *k = NULL;
	if ((e = load_ca(req->ca_dir, &ca, &ca_key, err, errlen)))
		return e;
	if (!(e = issue_leaf(ca, ca_key, &leaf, &x, &k, err, errlen)))
		e = write_pair(req->out_crt, req->out_key, x, k, err, errlen);
	X509_free(x);
	EVP_PKEY_free(k);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return e;
}
