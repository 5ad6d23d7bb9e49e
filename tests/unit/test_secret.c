/* Unit tests of auth/secret: scrypt (RFC 7914 vectors), PHC password strings, peppered HMAC
 * digests, PKCE S256 (RFC 7636 Appendix B), RFC 8705 thumbprints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth/secret.h"

#include <stdio.h>
#include <string.h>

static void hex(const char *h, unsigned char *out)
{
	for (size_t i = 0; h[2 * i]; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		out[i] = (unsigned char)v;
	}
}

static void test_scrypt_rfc7914_vectors(void **state)
{
	(void)state;
	unsigned char want[64], got[64];
	/* RFC 7914 §12, second vector: P="password", S="NaCl", N=1024, r=8, p=16, dkLen=64. */
	hex("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
	    "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640",
	    want);
	assert_int_equal(sg_scrypt("password", 8, "NaCl", 4, 1024, 8, 16, got, 64), SG_OK);
	assert_memory_equal(got, want, 64);
	/* First vector: empty password and salt, N=16, r=1, p=1. */
	hex("77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
	    "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906",
	    want);
	assert_int_equal(sg_scrypt("", 0, "", 0, 16, 1, 1, got, 64), SG_OK);
	assert_memory_equal(got, want, 64);
	/* N not a power of two, r = 0, absurd memory: refused. */
	assert_int_equal(sg_scrypt("a", 1, "b", 1, 1000, 8, 1, got, 32), SG_ERR_INVALID);
	assert_int_equal(sg_scrypt("a", 1, "b", 1, 1024, 0, 1, got, 32), SG_ERR_INVALID);
	assert_int_equal(sg_scrypt("a", 1, "b", 1, 1ull << 40, 8, 1, got, 32), SG_ERR_LIMIT);
}

static void test_password_round_trip(void **state)
{
	(void)state;
	/* Cheap parameters keep the test fast; the default path is exercised once below. */
	struct sg_password_params fast = {.ln = 10, .r = 8, .p = 1};
	char phc[SG_PASSWORD_PHC_MAX], phc2[SG_PASSWORD_PHC_MAX];
	assert_int_equal(sg_password_hash("correct horse", &fast, phc, sizeof phc), SG_OK);
	assert_int_equal(strncmp(phc, "$scrypt$ln=10,r=8,p=1$", 22), 0);
	assert_int_equal(sg_password_verify("correct horse", phc), SG_OK);
	assert_int_equal(sg_password_verify("correct horsE", phc), SG_ERR_DENIED);
	assert_int_equal(sg_password_verify("", phc), SG_ERR_DENIED);
	/* Per-user salt: the same password hashes differently. */
	assert_int_equal(sg_password_hash("correct horse", &fast, phc2, sizeof phc2), SG_OK);
	assert_string_not_equal(phc, phc2);
	assert_int_equal(sg_password_verify("correct horse", phc2), SG_OK);
	/* Rehash when the policy moves on. */
	assert_true(sg_password_needs_rehash(phc, NULL));
	assert_false(sg_password_needs_rehash(phc, &fast));
	struct sg_password_params def = sg_password_params_default();
	assert_int_equal(def.ln, SG_PASSWORD_LN_DEFAULT);
	assert_int_equal(sg_password_hash("pw", NULL, phc, sizeof phc), SG_OK);
	assert_int_equal(strncmp(phc, "$scrypt$ln=14,r=8,p=1$", 22), 0);
	assert_false(sg_password_needs_rehash(phc, NULL));
	assert_int_equal(sg_password_verify("pw", phc), SG_OK);
	/* Bad arguments. */
	assert_int_equal(sg_password_hash("", &fast, phc, sizeof phc), SG_ERR_INVALID);
	assert_int_equal(sg_password_hash("x", &fast, phc, 20), SG_ERR_INVALID);
	struct sg_password_params weak = {.ln = 4, .r = 8, .p = 1};
	assert_int_equal(sg_password_hash("x", &weak, phc, sizeof phc), SG_ERR_INVALID);
}

static void test_password_known_string(void **state)
{
	(void)state;
	/* A PHC string built from the RFC 7914 vector's parameters: salt "NaCl" is too short for
	 * our format (≥ 8 bytes), so this one uses salt "NaClNaCl" and is checked against the
	 * KDF directly: the string format and the KDF agree. */
	unsigned char dk[32];
	assert_int_equal(sg_scrypt("password", 8, "NaClNaCl", 8, 1024, 8, 1, dk, 32), SG_OK);
	/* Standard base64 without padding, as the PHC format says. */
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char h[48];
	size_t o = 0;
	for (size_t i = 0; i < 32; i += 3) {
		uint32_t v = (uint32_t)dk[i] << 16 | (i + 1 < 32 ? (uint32_t)dk[i + 1] << 8 : 0) |
		             (i + 2 < 32 ? dk[i + 2] : 0);
		size_t chars = i + 2 < 32 ? 4 : (i + 1 < 32 ? 3 : 2);
		for (size_t k = 0; k < chars; k++)
			h[o++] = b64[(v >> (18 - 6 * k)) & 63];
	}
	h[o] = '\0';
	char phc[160];
	snprintf(phc, sizeof phc, "$scrypt$ln=10,r=8,p=1$TmFDbE5hQ2w$%s", h);
	assert_int_equal(sg_password_verify("password", phc), SG_OK);
	assert_int_equal(sg_password_verify("passwore", phc), SG_ERR_DENIED);
}

static void test_password_malformed(void **state)
{
	(void)state;
	char good[SG_PASSWORD_PHC_MAX];
	struct sg_password_params fast = {.ln = 10, .r = 8, .p = 1};
	assert_int_equal(sg_password_hash("pw", &fast, good, sizeof good), SG_OK);
	const char *salt = good + 22; /* after "$scrypt$ln=10,r=8,p=1$" */
	char bad[20][200];
	int n = 0;
	snprintf(bad[n++], 200, "%s", "");
	snprintf(bad[n++], 200, "%s", "$scrypt$");
	snprintf(bad[n++], 200, "$argon2id$v=19$m=65536,t=3,p=4$%s", salt);
	snprintf(bad[n++], 200, "$scrypt$ln=10,r=8$%s", salt);           /* p missing */
	snprintf(bad[n++], 200, "$scrypt$r=8,ln=10,p=1$%s", salt);       /* order */
	snprintf(bad[n++], 200, "$scrypt$ln=010,r=8,p=1$%s", salt);      /* leading zero */
	snprintf(bad[n++], 200, "$scrypt$ln=0,r=8,p=1$%s", salt);        /* ln out of range */
	snprintf(bad[n++], 200, "$scrypt$ln=40,r=8,p=1$%s", salt);       /* absurd memory */
	snprintf(bad[n++], 200, "$scrypt$ln=10,r=8,p=99$%s", salt);      /* p out of range */
	snprintf(bad[n++], 200, "$scrypt$ln=1x,r=8,p=1$%s", salt);       /* not a number */
	snprintf(bad[n++], 200, "$scrypt$ln=10,r=8,p=1$%s$x", salt);     /* extra part */
	snprintf(bad[n++], 200, "$scrypt$ln=10,r=8,p=1$%.22s", salt);    /* hash missing */
	snprintf(bad[n++], 200, "$scrypt$ln=10,r=8,p=1$$%s", salt + 23); /* empty salt */
	snprintf(bad[n++], 200, "%s", good);
	bad[n - 1][30] = '-';                 /* base64url character in a standard-base64 field */
	snprintf(bad[n++], 200, "%s=", good); /* padding */
	snprintf(bad[n++], 200, "%s", good);  /* non-canonical: unused low bits of the hash set */
	{
		static const char a[] =
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		char *last = &bad[n - 1][strlen(good) - 1];
		*last = a[(strchr(a, *last) - a) ^ 1];
	}
	snprintf(bad[n++], 200, "$scrypt$ln=10,r=8,p=1$AAAA$%s", salt + 23); /* salt 3 bytes */
	snprintf(bad[n++], 200, "%.*s", (int)strlen(good) - 24, good);       /* hash too short */
	for (int i = 0; i < n; i++) {
		if (sg_password_verify("pw", bad[i]) != SG_ERR_INVALID)
			fail_msg("malformed PHC string accepted: \"%s\"", bad[i]);
		assert_true(sg_password_needs_rehash(bad[i], &fast));
	}
	assert_int_equal(sg_password_verify("pw", NULL), SG_ERR_INVALID);
	assert_int_equal(sg_password_verify("pw", good), SG_OK);
}

static void test_secret_digest(void **state)
{
	(void)state;
	const unsigned char pepper1[32] = "pepper-one-0123456789abcdef0123";
	const unsigned char pepper2[32] = "pepper-two-0123456789abcdef0123";
	char s[SG_SECRET_STR_LEN], s2[SG_SECRET_STR_LEN];
	assert_int_equal(sg_secret_generate(s, sizeof s), SG_OK);
	assert_int_equal(strlen(s), 43);
	assert_int_equal(sg_secret_generate(s2, sizeof s2), SG_OK);
	assert_string_not_equal(s, s2);
	assert_int_equal(sg_secret_generate(s2, 43), SG_ERR_INVALID);
	unsigned char a[32], b[32], c[32];
	assert_int_equal(sg_secret_digest(pepper1, 32, s, a), SG_OK);
	assert_int_equal(sg_secret_digest(pepper1, 32, s, b), SG_OK);
	assert_memory_equal(a, b, 32); /* deterministic under one pepper */
	assert_int_equal(sg_secret_digest(pepper2, 32, s, c), SG_OK);
	assert_memory_not_equal(a, c, 32); /* another pepper, another digest */
	assert_true(sg_secret_check(pepper1, 32, s, a));
	assert_false(sg_secret_check(pepper2, 32, s, a));
	assert_false(sg_secret_check(pepper1, 32, s2, a));
	assert_int_equal(sg_secret_digest(pepper1, 8, s, a), SG_ERR_INVALID); /* short pepper */
	/* RFC 4231 test case 2 (HMAC-SHA-256, key "Jefe") is below our pepper minimum; use test
	 * case 6's 131-byte 0xaa key instead. */
	unsigned char key[131], want[32];
	memset(key, 0xaa, sizeof key);
	hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", want);
	assert_int_equal(sg_secret_digest(key, sizeof key,
	                                  "Test Using Larger Than Block-Size Key - Hash Key First",
	                                  a),
	                 SG_OK);
	assert_memory_equal(a, want, 32);
	assert_true(sg_secret_equal("abc", "abc", 3));
	assert_false(sg_secret_equal("abc", "abd", 3));
}

static void test_pkce(void **state)
{
	(void)state;
	/* RFC 7636 Appendix B. */
	const char *v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
	const char *ch = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
	char out[SG_PKCE_CHALLENGE_LEN + 1];
	assert_int_equal(sg_pkce_s256_challenge(v, out, sizeof out), SG_OK);
	assert_string_equal(out, ch);
	assert_int_equal(sg_pkce_s256_check(v, ch), SG_OK);
	assert_int_equal(sg_pkce_s256_check(v, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"),
	                 SG_ERR_DENIED);
	assert_int_equal(sg_pkce_s256_check(v, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"),
	                 SG_ERR_DENIED);
	assert_int_equal(sg_pkce_s256_check(v, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cMx"),
	                 SG_ERR_DENIED);
	assert_int_equal(sg_pkce_s256_check(v, v), SG_ERR_DENIED); /* "plain" is not a thing */
	assert_int_equal(sg_pkce_s256_check("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl", ch),
	                 SG_ERR_DENIED);
	/* Verifier shape, RFC 7636 §4.1. */
	char s42[43], s43[44], s128[129], s129[130];
	memset(s42, 'a', 42);
	s42[42] = '\0';
	memset(s43, 'a', 43);
	s43[43] = '\0';
	memset(s128, '~', 128);
	s128[128] = '\0';
	memset(s129, 'a', 129);
	s129[129] = '\0';
	assert_false(sg_pkce_verifier_valid(s42));
	assert_true(sg_pkce_verifier_valid(s43));
	assert_true(sg_pkce_verifier_valid(s128));
	assert_false(sg_pkce_verifier_valid(s129));
	assert_int_equal(sg_pkce_s256_check(s42, ch), SG_ERR_INVALID);
	assert_int_equal(sg_pkce_s256_check(s129, ch), SG_ERR_INVALID);
	static const char *badchars[] = {"dBjftJeZ4CVP+mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
	                                 "dBjftJeZ4CVP/mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
	                                 "dBjftJeZ4CVP mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
	                                 "dBjftJeZ4CVP=mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
	                                 "dBjftJeZ4CVP%mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
	                                 "dBjftJeZ4CVP\xc3\xa9mB92K27uhbUJU1p1r_wW1gFWFOEjX"};
	for (size_t i = 0; i < sizeof badchars / sizeof badchars[0]; i++) {
		assert_false(sg_pkce_verifier_valid(badchars[i]));
		assert_int_equal(sg_pkce_s256_check(badchars[i], ch), SG_ERR_INVALID);
	}
	assert_int_equal(sg_pkce_s256_check(NULL, ch), SG_ERR_INVALID);
	assert_int_equal(sg_pkce_s256_check(v, NULL), SG_ERR_INVALID);
	/* Client side. */
	char gv[SG_SECRET_STR_LEN], gc[SG_PKCE_CHALLENGE_LEN + 1];
	assert_int_equal(sg_pkce_generate(gv, sizeof gv, gc, sizeof gc), SG_OK);
	assert_true(sg_pkce_verifier_valid(gv));
	assert_int_equal(sg_pkce_s256_check(gv, gc), SG_OK);
}

static void test_x5t(void **state)
{
	(void)state;
	/* SHA-256("abc") (FIPS 180-2) as a certificate digest, base64url without padding. */
	unsigned char d[32];
	hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d);
	char out[SG_X5T_S256_LEN];
	sg_secret_x5t_s256(d, out);
	assert_string_equal(out, "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
	char out2[SG_X5T_S256_LEN];
	assert_int_equal(sg_secret_x5t_s256_der((const unsigned char *)"abc", 3, out2), SG_OK);
	assert_string_equal(out2, out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scrypt_rfc7914_vectors),
	    cmocka_unit_test(test_password_round_trip),
	    cmocka_unit_test(test_password_known_string),
	    cmocka_unit_test(test_password_malformed),
	    cmocka_unit_test(test_secret_digest),
	    cmocka_unit_test(test_pkce),
	    cmocka_unit_test(test_x5t),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
