/* test_pki.c: the development PKI (tls/pki.c). Every certificate field of the TS 33.310
 * §6.1.3a profile (REQUIREMENTS T5) is checked with OpenSSL, and chains are verified with
 * X509_verify_cert, including the CRL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/file.h"
#include "tls/pki.h"

#include <ftw.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CDP "http://127.0.0.1:9090/pki/ca.crl"

struct fx {
	char root[64]; /* mkdtemp dir */
	char dir[128]; /* root/pki */
};

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	snprintf(f->root, sizeof f->root, "/tmp/sg-test-pki-XXXXXX");
	if (!mkdtemp(f->root))
		return -1;
	snprintf(f->dir, sizeof f->dir, "%s/pki", f->root);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	nftw(f->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void path_in(char *out, size_t n, const char *dir, const char *rel)
{
	snprintf(out, n, "%s/%s", dir, rel);
}

static X509 *load_cert(const char *dir, const char *rel)
{
	char p[512];
	path_in(p, sizeof p, dir, rel);
	FILE *fp = fopen(p, "r");
	assert_non_null(fp);
	X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(x);
	return x;
}

static X509_CRL *load_crl(const char *dir)
{
	char p[512];
	path_in(p, sizeof p, dir, "crl.pem");
	FILE *fp = fopen(p, "r");
	assert_non_null(fp);
	X509_CRL *c = PEM_read_X509_CRL(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(c);
	return c;
}

static char *read_all(const char *dir, const char *rel, size_t *len)
{
	char p[512], *data = NULL;
	path_in(p, sizeof p, dir, rel);
	assert_int_equal(sg_file_read(p, 1 << 20, &data, len), SG_OK);
	return data;
}

static sg_err init_dir(const char *dir, const char **vals, size_t nv, const char **seals, size_t ns,
                       const char *crl_uri, int days, char *err, size_t errlen)
{
	struct sg_pki_opts o = {.dir = dir,
	                        .crl_uri = crl_uri,
	                        .val_servers = vals,
	                        .n_val_servers = nv,
	                        .seal_servers = seals,
	                        .n_seal_servers = ns,
	                        .days = days};
	return sg_pki_init(&o, err, errlen);
}

/* Verifies cert against ca (and the CRL when given) for the purpose; returns the X509_V_ code. */
static int verify(X509 *ca, X509_CRL *crl, X509 *cert, int purpose)
{
	X509_STORE *st = X509_STORE_new();
	assert_non_null(st);
	assert_int_equal(X509_STORE_add_cert(st, ca), 1);
	if (crl) {
		assert_int_equal(X509_STORE_add_crl(st, crl), 1);
		X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
	}
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_CTX_init(ctx, st, cert, NULL), 1);
	X509_STORE_CTX_set_purpose(ctx, purpose);
	int ok = X509_verify_cert(ctx);
	int code = X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	ERR_clear_error();
	if (ok == 1)
		assert_int_equal(code, X509_V_OK);
	else
		assert_int_not_equal(code, X509_V_OK);
	return code;
}

static void assert_p256_sha256(X509 *x)
{
	EVP_PKEY *pk = X509_get0_pubkey(x);
	assert_non_null(pk);
	assert_true(EVP_PKEY_is_a(pk, "EC"));
	char group[64];
	size_t glen = 0;
	assert_int_equal(EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof group, &glen),
	                 1);
	assert_string_equal(group, "prime256v1");
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
}

static int ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);
	assert_true(i >= 0);
	return X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

/* The SAN as "DNS:a,IP:1.2.3.4,URI:u" (only the types we issue). */
static void san_string(X509 *x, char *out, size_t n)
{
	out[0] = '\0';
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(gens);
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		char item[300];
		if (g->type == GEN_DNS)
			snprintf(item, sizeof item, "DNS:%s",
			         (const char *)ASN1_STRING_get0_data(g->d.dNSName));
		else if (g->type == GEN_URI)
			snprintf(
			    item, sizeof item, "URI:%s",
			    (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier));
		else if (g->type == GEN_IPADD && ASN1_STRING_length(g->d.iPAddress) == 4) {
			const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
			snprintf(item, sizeof item, "IP:%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
		} else
			snprintf(item, sizeof item, "OTHER");
		if (out[0])
			strncat(out, ",", n - strlen(out) - 1);
		strncat(out, item, n - strlen(out) - 1);
	}
	GENERAL_NAMES_free(gens);
}

static void cdp_uri(X509 *x, char *out, size_t n)
{
	CRL_DIST_POINTS *dps = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
	assert_non_null(dps);
	assert_int_equal(sk_DIST_POINT_num(dps), 1);
	DIST_POINT *dp = sk_DIST_POINT_value(dps, 0);
	assert_non_null(dp->distpoint);
	assert_int_equal(dp->distpoint->type, 0);
	GENERAL_NAMES *names = dp->distpoint->name.fullname;
	assert_int_equal(sk_GENERAL_NAME_num(names), 1);
	GENERAL_NAME *g = sk_GENERAL_NAME_value(names, 0);
	assert_int_equal(g->type, GEN_URI);
	snprintf(out, n, "%s", (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier));
	CRL_DIST_POINTS_free(dps);
}

static long days_from_now(const ASN1_TIME *t)
{
	int days = 0, secs = 0;
	assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, t), 1);
	return days;
}

/* Checks a leaf certificate against the TS 33.310 §6.1.3a profile. */
static void assert_leaf(X509 *ca, X509 *x, const char *san, int server, int client, const char *cdp,
                        long days)
{
	char buf[1024];
	assert_p256_sha256(x);
	/* serial: positive, 16 octets */
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
	assert_non_null(bn);
	assert_false(BN_is_negative(bn));
	assert_int_equal(BN_num_bytes(bn), 16);
	BN_free(bn);
	/* subjectAltName is the identity */
	san_string(x, buf, sizeof buf);
	assert_string_equal(buf, san);
	/* basicConstraints CA:FALSE, keyUsage critical digitalSignature only */
	assert_int_equal(X509_check_ca(x), 0);
	assert_true(ext_critical(x, NID_key_usage));
	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	/* extendedKeyUsage per role */
	uint32_t xku = X509_get_extended_key_usage(x);
	assert_int_equal(!!(xku & XKU_SSL_SERVER), server);
	assert_int_equal(!!(xku & XKU_SSL_CLIENT), client);
	assert_int_equal(xku & ~(uint32_t)(XKU_SSL_SERVER | XKU_SSL_CLIENT), 0);
	/* AKID = CA's SKID; SKID present */
	const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
	assert_non_null(akid);
	assert_int_equal(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(ca)), 0);
	assert_non_null(X509_get0_subject_key_id(x));
	/* CDP (TS 33.310 makes it mandatory) */
	cdp_uri(x, buf, sizeof buf);
	assert_string_equal(buf, cdp);
	/* validity: notBefore in the past (now-60s), notAfter = now + days */
	assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
	long d = days_from_now(X509_get0_notAfter(x));
	assert_true(d == days || d == days - 1);
	/* issuer and signature */
	assert_int_equal(X509_check_issued(ca, x), X509_V_OK);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(ca)), 1);
}

static json_t *load_index(const char *dir)
{
	char p[512];
	path_in(p, sizeof p, dir, "index.json");
	json_error_t je;
	json_t *j = json_load_file(p, 0, &je);
	assert_non_null(j);
	assert_true(json_is_array(j));
	return j;
}

static long crl_number(X509_CRL *crl)
{
	ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
	assert_non_null(n);
	long v = ASN1_INTEGER_get(n);
	ASN1_INTEGER_free(n);
	return v;
}

static int n_revoked(X509_CRL *crl)
{
	STACK_OF(X509_REVOKED) *r = X509_CRL_get_REVOKED(crl);
	return r ? sk_X509_REVOKED_num(r) : 0;
}

static int crl_has(X509_CRL *crl, X509 *x)
{
	X509_REVOKED *r = NULL;
	return X509_CRL_get0_by_serial(crl, &r, (ASN1_INTEGER *)X509_get0_serialNumber(x)) == 1;
}

static void test_init_fields(void **state)
{
	struct fx *f = *state;
	char err[512] = "";
	const char *vals[] = {"v2x-app"};
	const char *seals[] = {"gm-1.example"};
	assert_int_equal(init_dir(f->dir, vals, 1, seals, 1, NULL, 0, err, sizeof err), SG_OK);

	/* CA */
	X509 *ca = load_cert(f->dir, "ca.crt");
	assert_p256_sha256(ca);
	assert_int_equal(X509_check_ca(ca), 1);
	assert_true(ext_critical(ca, NID_basic_constraints));
	assert_true(ext_critical(ca, NID_key_usage));
	assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_non_null(X509_get0_subject_key_id(ca));
	assert_int_equal(X509_check_issued(ca, ca), X509_V_OK);
	assert_int_equal(X509_verify(ca, X509_get0_pubkey(ca)), 1);
	char cn[128];
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn,
	                                      sizeof cn) > 0);
	assert_string_equal(cn, "sealguard development CA");
	long cadays = days_from_now(X509_get0_notAfter(ca));
	assert_true(cadays >= 3649 && cadays <= 3650);

	/* modes: private keys 0600, directories 0700 */
	char p[512];
	struct stat sb;
	const char *keys[] = {"ca.key", "server.key", "val-servers/v2x-app.key",
	                      "seal-servers/gm-1.example.key"};
	for (size_t i = 0; i < 4; i++) {
		path_in(p, sizeof p, f->dir, keys[i]);
		assert_int_equal(stat(p, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
	}
	assert_int_equal(stat(f->dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);

	/* leaves */
	X509 *srv = load_cert(f->dir, "server.crt");
	X509 *val = load_cert(f->dir, "val-servers/v2x-app.crt");
	X509 *seal = load_cert(f->dir, "seal-servers/gm-1.example.crt");
	assert_leaf(ca, srv, "DNS:localhost,IP:127.0.0.1", 1, 1, DEFAULT_CDP, 365);
	assert_leaf(ca, val, "DNS:v2x-app", 0, 1, DEFAULT_CDP, 365);
	assert_leaf(ca, seal, "DNS:gm-1.example", 1, 1, DEFAULT_CDP, 365);

	/* CRL: v2, empty, crlNumber 1, AKID, nextUpdate +30 days, signed by the CA */
	X509_CRL *crl = load_crl(f->dir);
	assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
	assert_int_equal(n_revoked(crl), 0);
	assert_int_equal(crl_number(crl), 1);
	assert_true(X509_CRL_get_ext_by_NID(crl, NID_authority_key_identifier, -1) >= 0);
	long nd = days_from_now(X509_CRL_get0_nextUpdate(crl));
	assert_true(nd == 29 || nd == 30);
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);

	/* chains verify with the CRL check, for the role's purpose */
	assert_int_equal(verify(ca, crl, srv, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	assert_int_equal(verify(ca, crl, srv, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	assert_int_equal(verify(ca, crl, val, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	assert_int_equal(verify(ca, crl, seal, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	/* a VAL server certificate is not a server certificate */
	assert_int_equal(verify(ca, crl, val, X509_PURPOSE_SSL_SERVER), X509_V_ERR_INVALID_PURPOSE);

	/* index.json */
	json_t *idx = load_index(f->dir);
	assert_int_equal(json_array_size(idx), 3);
	json_t *e1 = json_array_get(idx, 1);
	assert_string_equal(json_string_value(json_object_get(e1, "kind")), "val-server");
	assert_string_equal(json_string_value(json_object_get(e1, "name")), "v2x-app");
	assert_string_equal(json_string_value(json_object_get(e1, "cert")),
	                    "val-servers/v2x-app.crt");
	assert_true(json_is_null(json_object_get(e1, "revoked_at")));
	assert_non_null(json_string_value(json_object_get(e1, "not_after")));
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(val), NULL);
	char *hex = BN_bn2hex(bn);
	assert_string_equal(json_string_value(json_object_get(e1, "serial")), hex);
	OPENSSL_free(hex);
	BN_free(bn);
	json_decref(idx);

	X509_CRL_free(crl);
	X509_free(srv);
	X509_free(val);
	X509_free(seal);
	X509_free(ca);
}

static void test_rerun_keeps_ca(void **state)
{
	struct fx *f = *state;
	char err[512] = "";
	const char *vals[] = {"v2x-app"};
	assert_int_equal(init_dir(f->dir, vals, 1, NULL, 0, NULL, 0, err, sizeof err), SG_OK);
	size_t klen1, klen2, clen1, clen2;
	char *key1 = read_all(f->dir, "ca.key", &klen1);
	char *crt1 = read_all(f->dir, "val-servers/v2x-app.crt", &clen1);

	const char *vals2[] = {"v2x-app", "v2x-b"};
	assert_int_equal(
	    init_dir(f->dir, vals2, 2, NULL, 0, "https://crl.example/ca.crl", 10, err, sizeof err),
	    SG_OK);
	char *key2 = read_all(f->dir, "ca.key", &klen2);
	char *crt2 = read_all(f->dir, "val-servers/v2x-app.crt", &clen2);
	assert_int_equal(klen1, klen2);
	assert_memory_equal(key1, key2, klen1);
	assert_int_equal(clen1, clen2);
	assert_memory_equal(crt1, crt2, clen1);
	free(key1);
	free(key2);
	free(crt1);
	free(crt2);

	X509 *ca = load_cert(f->dir, "ca.crt");
	X509 *b = load_cert(f->dir, "val-servers/v2x-b.crt");
	assert_leaf(ca, b, "DNS:v2x-b", 0, 1, "https://crl.example/ca.crl", 10);
	X509_CRL *crl = load_crl(f->dir);
	assert_int_equal(verify(ca, crl, b, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	json_t *idx = load_index(f->dir);
	assert_int_equal(json_array_size(idx), 3); /* server, v2x-app, v2x-b */
	json_decref(idx);
	X509_CRL_free(crl);
	X509_free(b);
	X509_free(ca);
}

static void test_revoke(void **state)
{
	struct fx *f = *state;
	char err[512] = "";
	const char *vals[] = {"v2x-app"};
	assert_int_equal(init_dir(f->dir, vals, 1, NULL, 0, NULL, 0, err, sizeof err), SG_OK);
	char p[512];
	path_in(p, sizeof p, f->dir, "val-servers/v2x-app.crt");
	assert_int_equal(sg_pki_revoke(f->dir, p, err, sizeof err), SG_OK);
	assert_non_null(strstr(err, "revoked serial"));

	X509 *ca = load_cert(f->dir, "ca.crt");
	X509 *val = load_cert(f->dir, "val-servers/v2x-app.crt");
	X509 *srv = load_cert(f->dir, "server.crt");
	X509_CRL *crl = load_crl(f->dir);
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
	assert_int_equal(crl_number(crl), 2);
	assert_int_equal(n_revoked(crl), 1);
	assert_true(crl_has(crl, val));
	assert_false(crl_has(crl, srv));
	assert_int_equal(verify(ca, crl, val, X509_PURPOSE_SSL_CLIENT), X509_V_ERR_CERT_REVOKED);
	assert_int_equal(verify(ca, crl, srv, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	X509_CRL_free(crl);

	/* twice: fine, reported, still one entry, CRL re-signed with the next number */
	assert_int_equal(sg_pki_revoke(f->dir, p, err, sizeof err), SG_OK);
	assert_non_null(strstr(err, "already revoked"));
	crl = load_crl(f->dir);
	assert_int_equal(crl_number(crl), 3);
	assert_int_equal(n_revoked(crl), 1);
	X509_CRL_free(crl);

	json_t *idx = load_index(f->dir);
	assert_true(json_is_string(json_object_get(json_array_get(idx, 1), "revoked_at")));
	assert_true(json_is_null(json_object_get(json_array_get(idx, 0), "revoked_at")));
	json_decref(idx);

	/* a re-run of init keeps the revocation (CRL rebuilt from the index only on change) */
	assert_int_equal(init_dir(f->dir, vals, 1, NULL, 0, NULL, 0, err, sizeof err), SG_OK);
	crl = load_crl(f->dir);
	assert_int_equal(verify(ca, crl, val, X509_PURPOSE_SSL_CLIENT), X509_V_ERR_CERT_REVOKED);
	X509_CRL_free(crl);
	X509_free(srv);
	X509_free(val);
	X509_free(ca);
}

static void test_revoke_other_ca(void **state)
{
	struct fx *f = *state;
	char err[512] = "", other[256], p[512];
	assert_int_equal(init_dir(f->dir, NULL, 0, NULL, 0, NULL, 0, err, sizeof err), SG_OK);
	snprintf(other, sizeof other, "%s/other", f->root);
	assert_int_equal(init_dir(other, NULL, 0, NULL, 0, NULL, 0, err, sizeof err), SG_OK);
	size_t l1, l2;
	char *crl1 = read_all(f->dir, "crl.pem", &l1);
	path_in(p, sizeof p, other, "server.crt");
	err[0] = '\0';
	assert_int_equal(sg_pki_revoke(f->dir, p, err, sizeof err), SG_ERR_DENIED);
	assert_non_null(strstr(err, "not issued by"));
	/* nor the CA certificate, nor a missing file */
	path_in(p, sizeof p, f->dir, "ca.crt");
	assert_int_not_equal(sg_pki_revoke(f->dir, p, err, sizeof err), SG_OK);
	path_in(p, sizeof p, f->dir, "nope.crt");
	assert_int_equal(sg_pki_revoke(f->dir, p, err, sizeof err), SG_ERR_NOTFOUND);
	char *crl2 = read_all(f->dir, "crl.pem", &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(crl1, crl2, l1);
	free(crl1);
	free(crl2);
}

static void test_bad_names(void **state)
{
	struct fx *f = *state;
	char err[512] = "";
	char longname[300], longlabel[80];
	for (int i = 0; i < 240; i++) /* 240 characters, labels of 9 */
		longname[i] = i % 10 == 9 ? '.' : 'a';
	longname[240] = '\0';
	memset(longlabel, 'b', 64);
	longlabel[64] = '\0';
	const char *bad[] = {"",     "../x", "a/b",       "..", ".hidden", "-opt",   "a b",
	                     "a..b", "x_y",  "trailing.", "é",  longname,  longlabel};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *v[] = {bad[i]};
		assert_int_equal(init_dir(f->dir, v, 1, NULL, 0, NULL, 0, err, sizeof err),
		                 SG_ERR_INVALID);
		assert_int_equal(init_dir(f->dir, NULL, 0, v, 1, NULL, 0, err, sizeof err),
		                 SG_ERR_INVALID);
	}
	/* rejected before anything is created */
	assert_false(sg_file_exists(f->dir));
	longname[239] = '\0';
	longlabel[63] = '\0';
	const char *ok[] = {longname, longlabel, "A-1.b"};
	assert_int_equal(init_dir(f->dir, ok, 3, NULL, 0, NULL, 0, err, sizeof err), SG_OK);
}

static void test_issue(void **state)
{
	struct fx *f = *state;
	char err[512] = "", crt[512], key[512];
	assert_int_equal(init_dir(f->dir, NULL, 0, NULL, 0, NULL, 0, err, sizeof err), SG_OK);
	X509 *ca = load_cert(f->dir, "ca.crt");
	X509_CRL *crl = load_crl(f->dir);

	/* expired */
	snprintf(crt, sizeof crt, "%s/expired.crt", f->root);
	snprintf(key, sizeof key, "%s/expired.key", f->root);
	struct sg_pki_issue rq = {.ca_dir = f->dir,
	                          .san = "DNS:old.example",
	                          .server_auth = 1,
	                          .client_auth = 1,
	                          .not_before_offset_s = -2 * 86400,
	                          .not_after_offset_s = -86400,
	                          .out_crt = crt,
	                          .out_key = key};
	assert_int_equal(sg_pki_issue(&rq, err, sizeof err), SG_OK);
	X509 *x = load_cert(f->root, "expired.crt");
	assert_int_equal(verify(ca, crl, x, X509_PURPOSE_SSL_SERVER), X509_V_ERR_CERT_HAS_EXPIRED);
	X509_free(x);
	struct stat sb;
	assert_int_equal(stat(key, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);

	/* not yet valid */
	rq.not_before_offset_s = 86400;
	rq.not_after_offset_s = 2 * 86400;
	assert_int_equal(sg_pki_issue(&rq, err, sizeof err), SG_OK);
	x = load_cert(f->root, "expired.crt");
	assert_int_equal(verify(ca, crl, x, X509_PURPOSE_SSL_SERVER),
	                 X509_V_ERR_CERT_NOT_YET_VALID);
	X509_free(x);

	/* wrong EKU: client only, used as a server; URI + IP SAN */
	snprintf(crt, sizeof crt, "%s/client.crt", f->root);
	snprintf(key, sizeof key, "%s/client.key", f->root);
	rq.san = "URI:https://val.example/app,IP:10.0.0.1";
	rq.server_auth = 0;
	rq.not_before_offset_s = -60;
	rq.not_after_offset_s = 3600;
	assert_int_equal(sg_pki_issue(&rq, err, sizeof err), SG_OK);
	x = load_cert(f->root, "client.crt");
	assert_leaf(ca, x, "URI:https://val.example/app,IP:10.0.0.1", 0, 1, DEFAULT_CDP, 0);
	assert_int_equal(verify(ca, crl, x, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	assert_int_equal(verify(ca, crl, x, X509_PURPOSE_SSL_SERVER), X509_V_ERR_INVALID_PURPOSE);

	/* an issued certificate can be revoked too */
	assert_int_equal(sg_pki_revoke(f->dir, crt, err, sizeof err), SG_OK);
	X509_CRL_free(crl);
	crl = load_crl(f->dir);
	assert_int_equal(verify(ca, crl, x, X509_PURPOSE_SSL_CLIENT), X509_V_ERR_CERT_REVOKED);
	X509_free(x);

	/* no EKU at all */
	rq.client_auth = 0;
	rq.san = "DNS:noeku";
	assert_int_equal(sg_pki_issue(&rq, err, sizeof err), SG_OK);
	x = load_cert(f->root, "client.crt");
	assert_true(X509_get_ext_by_NID(x, NID_ext_key_usage, -1) < 0);
	X509_free(x);

	/* refused: other SAN types, empty SAN, inverted validity, missing CA */
	rq.san = "email:a@b.example";
	assert_int_equal(sg_pki_issue(&rq, err, sizeof err), SG_ERR_INVALID);
	rq.san = "";
	assert_int_equal(sg_pki_issue(&rq, err, sizeof err), SG_ERR_INVALID);
	rq.san = "DNS:x";
	rq.not_before_offset_s = 100;
	rq.not_after_offset_s = 50;
	assert_int_equal(sg_pki_issue(&rq, err, sizeof err), SG_ERR_INVALID);
	rq.not_before_offset_s = 0;
	rq.ca_dir = f->root;
	assert_int_equal(sg_pki_issue(&rq, err, sizeof err), SG_ERR_NOTFOUND);

	X509_CRL_free(crl);
	X509_free(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_init_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rerun_keeps_ca, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_revoke_other_ca, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_issue, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
