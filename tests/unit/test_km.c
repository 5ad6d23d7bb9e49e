/* Unit tests of key management's pure parts (km/logic.h), the SKM-C key helpers
 * (client/skmc.h) and the key records of the store (store/km.c): JWE to a P-256 key and its
 * refusal with another key, sealing at rest bound to record id and version, validation of
 * VALKeyPpReq / SEAL KM Request / ValTargetUe / SKM-C JWKs, the ErrorCode mapping. */
#include "base/clock.h"
#include "client/skmc.h"
#include "km/logic.h"
#include "store/store.h"

#include <openssl/rand.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static json_t *J(const char *s)
{
	json_t *j = json_loads(s, 0, NULL);
	assert_non_null(j);
	return j;
}

static char *pub_text(const char *priv)
{
	json_t *p = sg_skmc_key_public(priv);
	assert_non_null(p);
	assert_null(json_object_get(p, "d"));
	char *s = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	return s;
}

/* R2: what the SKM-S encrypts to a registered public key opens with that private key only. */
static void test_jwe_round_trip(void **state)
{
	(void)state;
	char *a = NULL, *b = NULL;
	assert_int_equal(sg_skmc_key_generate(&a), SG_OK);
	assert_int_equal(sg_skmc_key_generate(&b), SG_OK);
	char *pa = pub_text(a);
	const char msg[] = "{\"payloadId\":\"k1\",\"key\":\"c2VjcmV0LWtleS1ieXRlcy0xMjM0NTY3OA\"}";
	char *jwe = NULL, err[256] = "";
	assert_int_equal(sg_km_jwe_encrypt(pa, msg, strlen(msg), &jwe, err, sizeof err), SG_OK);
	/* compact serialization: five parts, the plaintext nowhere */
	int dots = 0;
	for (const char *p = jwe; *p; p++)
		dots += *p == '.';
	assert_int_equal(dots, 4);
	assert_null(strstr(jwe, "c2VjcmV0"));
	unsigned char *pt = NULL;
	size_t n = 0;
	assert_int_equal(sg_km_jwe_decrypt(a, jwe, &pt, &n, err, sizeof err), SG_OK);
	assert_int_equal(n, strlen(msg));
	assert_memory_equal(pt, msg, n);
	free(pt);
	/* another SKM-C's key does not open it */
	assert_int_equal(sg_km_jwe_decrypt(b, jwe, &pt, &n, err, sizeof err), SG_ERR_DENIED);
	assert_null(pt);
	/* nor does a tampered ciphertext */
	char *dup = strdup(jwe);
	char *ct = strchr(strchr(strchr(dup, '.') + 1, '.') + 1, '.') + 1;
	ct[0] = ct[0] == 'A' ? 'B' : 'A';
	assert_int_not_equal(sg_km_jwe_decrypt(a, dup, &pt, &n, err, sizeof err), SG_OK);
	free(dup);
	/* the public key alone cannot decrypt */
	assert_int_not_equal(sg_km_jwe_decrypt(pa, jwe, &pt, &n, err, sizeof err), SG_OK);
	/* a JWE with another alg is refused before any decryption (no substitution) */
	assert_int_equal(
	    sg_km_jwe_decrypt(a, "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..AAAA.AAAA.AAAA", &pt, &n,
	                      err, sizeof err),
	    SG_ERR_PROTO);
	free(jwe);
	free(pa);
	sg_skmc_secret_free(a);
	sg_skmc_secret_free(b);
}

/* At rest: AES-256-GCM under the master key, AAD = record id + version. */
static void test_seal_bound_to_record(void **state)
{
	(void)state;
	unsigned char mk[SG_KEY_LEN], mk2[SG_KEY_LEN], key[32], out[64];
	RAND_bytes(mk, sizeof mk);
	RAND_bytes(mk2, sizeof mk2);
	RAND_bytes(key, sizeof key);
	unsigned char sealed[SG_SEALED_LEN(32)];
	size_t n = 0;
	assert_int_equal(sg_km_seal(mk, "v2x", "k1", 1, key, sizeof key, sealed), SG_OK);
	assert_null(memmem(sealed, sizeof sealed, key, sizeof key));
	assert_int_equal(sg_km_unseal(mk, "v2x", "k1", 1, sealed, sizeof sealed, out, &n), SG_OK);
	assert_int_equal(n, 32);
	assert_memory_equal(out, key, 32);
	assert_int_equal(sg_km_unseal(mk, "v2x", "k1", 2, sealed, sizeof sealed, out, &n),
	                 SG_ERR_DENIED); /* another version */
	assert_int_equal(sg_km_unseal(mk, "v2x", "k2", 1, sealed, sizeof sealed, out, &n),
	                 SG_ERR_DENIED); /* another record */
	assert_int_equal(sg_km_unseal(mk, "kiosk", "k1", 1, sealed, sizeof sealed, out, &n),
	                 SG_ERR_DENIED); /* another VAL service */
	/* the NUL separators keep ("v2", "xk1") apart from ("v2x", "k1") */
	assert_int_equal(sg_km_unseal(mk, "v2", "xk1", 1, sealed, sizeof sealed, out, &n),
	                 SG_ERR_DENIED);
	assert_int_equal(sg_km_unseal(mk2, "v2x", "k1", 1, sealed, sizeof sealed, out, &n),
	                 SG_ERR_DENIED); /* another master key */
	sealed[20] ^= 1;
	assert_int_equal(sg_km_unseal(mk, "v2x", "k1", 1, sealed, sizeof sealed, out, &n),
	                 SG_ERR_DENIED);
}

struct vcase {
	const char *json;
	int ok;
	const char *param; /* expected invalidParams param when refused */
};

static void test_pp_req_validation(void **state)
{
	(void)state;
	static const struct vcase cases[] = {
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v2x\"}", 1, NULL},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v2x\",\"payloadId\":\"k-1.a_b~\","
	     "\"payload\":\"AAECAwQFBgcICQoLDA0ODw==\",\"valTgtUe\":{\"valUeId\":\"ue1\"}}",
	     1, NULL},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v2x\",\"payload\":"
	     "\"AAECAwQFBgcICQoLDA0ODw\"}",
	     1, NULL}, /* base64url without padding is accepted */
	    {"[]", 0, "/"},
	    {"{\"valServiceId\":\"v2x\"}", 0, "/skmcUri"},
	    {"{\"skmcUri\":\"no-scheme\",\"valServiceId\":\"v2x\"}", 0, "/skmcUri"},
	    {"{\"skmcUri\":\"urn:x\"}", 0, "/valServiceId"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"\"}", 0, "/valServiceId"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"a/b\"}", 0, "/valServiceId"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":7}", 0, "/valServiceId"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v\",\"payloadId\":\"a b\"}", 0,
	     "/payloadId"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v\",\"payload\":\"AAEC\"}", 0, "/payload"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v\",\"payload\":\"!!!!\"}", 0, "/payload"},
	    /* nothing but padding after padding */
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v\",\"payload\":"
	     "\"AAECAwQFBgcICQoLDA0ODw=garbage\"}",
	     0, "/payload"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v\",\"payload\":"
	     "\"AAECAwQFBgcICQoLDA0ODw===\"}",
	     0, "/payload"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v\",\"valTgtUe\":{}}", 0, "/valTgtUe"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v\",\"valTgtUe\":{\"valUserId\":\"a\","
	     "\"valUeId\":\"b\"}}",
	     0, "/valTgtUe"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v\",\"valTgtUe\":{\"valUserId\":\"\"}}", 0,
	     "/valTgtUe/valUserId"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v\",\"validFrom\":\"2024-01-01\"}", 0,
	     "/validFrom"},
	    {"{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v\",\"validFrom\":\"2024-01-02T00:00:00Z\","
	     "\"validUntil\":\"2024-01-01T00:00:00Z\"}",
	     0, "/validUntil"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *j = J(cases[i].json);
		struct sg_km_pp_req r;
		struct sg_km_invalid why = {{0}, {0}};
		int rc = sg_km_parse_pp_req(j, &r, &why);
		if (cases[i].ok != (rc == 0))
			fail_msg("case %zu (%s): rc %d, %s %s", i, cases[i].json, rc, why.param,
			         why.reason);
		if (!cases[i].ok)
			assert_string_equal(why.param, cases[i].param);
		if (rc == 0 && strstr(cases[i].json, "payload\""))
			assert_int_equal(r.payload_len, 16);
		sg_km_pp_req_wipe(&r);
		json_decref(j);
	}
}

static void test_uu_req_validation(void **state)
{
	(void)state;
	static const struct vcase cases[] = {
	    {"{\"valServiceId\":\"v2x\"}", 1, NULL},
	    {"{\"valServiceId\":\"v2x\",\"payloadIds\":[\"a\",\"b\"],\"valTgtUe\":{\"valUserId\":"
	     "\"alice@v2x\"}}",
	     1, NULL},
	    {"{}", 0, "/valServiceId"},
	    {"{\"valServiceId\":\"v2x\",\"payloadIds\":[]}", 0, "/payloadIds"},
	    {"{\"valServiceId\":\"v2x\",\"payloadIds\":\"all\"}", 0, "/payloadIds"},
	    {"{\"valServiceId\":\"v2x\",\"payloadIds\":[\"ok\",\"no/slash\"]}", 0, "/payloadIds/1"},
	    {"{\"valServiceId\":\"v2x\",\"valTgtUe\":\"alice\"}", 0, "/valTgtUe"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *j = J(cases[i].json);
		struct sg_km_uu_req *r = calloc(1, sizeof *r);
		struct sg_km_invalid why = {{0}, {0}};
		int rc = sg_km_parse_uu_req(j, r, &why);
		if (cases[i].ok != (rc == 0))
			fail_msg("case %zu (%s): rc %d, %s", i, cases[i].json, rc, why.param);
		if (!cases[i].ok)
			assert_string_equal(why.param, cases[i].param);
		free(r);
		json_decref(j);
	}
	/* more than SG_KM_MAX_IDS ids */
	json_t *ids = json_array();
	for (int i = 0; i <= SG_KM_MAX_IDS; i++)
		json_array_append_new(ids, json_sprintf("k%d", i));
	json_t *j = json_pack("{s:s,s:o}", "valServiceId", "v", "payloadIds", ids);
	struct sg_km_uu_req *r = calloc(1, sizeof *r);
	struct sg_km_invalid why;
	assert_int_equal(sg_km_parse_uu_req(j, r, &why), -1);
	free(r);
	json_decref(j);
}

static void test_error_codes(void **state)
{
	(void)state;
	static const struct {
		enum sg_km_error e;
		int status;
		const char *cause;
	} want[] = {
	    {SG_KM_INVALID_MSG_FORMAT, 400, "INVALID_MSG_FORMAT"},
	    {SG_KM_INVALID_QUERY_PARAM, 400, "INVALID_QUERY_PARAM"},
	    {SG_KM_INVALID_SKMC_KEY, 400, "INVALID_SKMC_KEY"},
	    {SG_KM_UNSUPPORTED_MEDIA_TYPE, 415, "UNSUPPORTED_MEDIA_TYPE"},
	    {SG_KM_PAYLOAD_TOO_LARGE, 413, "PAYLOAD_TOO_LARGE"},
	    {SG_KM_OPERATION_NOT_ALLOWED, 403, "OPERATION_NOT_ALLOWED"},
	    {SG_KM_SKMC_KEY_NOT_REGISTERED, 403, "SKMC_KEY_NOT_REGISTERED"},
	    {SG_KM_PROVISIONING_NOT_AUTHORIZED, 403, "KEY_PROVISIONING_NOT_AUTHORIZED"},
	    {SG_KM_VAL_SERVICE_NOT_ALLOWED, 403, "VAL_SERVICE_NOT_ALLOWED"},
	    {SG_KM_TARGET_NOT_ALLOWED, 403, "TARGET_NOT_ALLOWED"},
	    {SG_KM_PAYLOAD_ID_CONFLICT, 409, "PAYLOAD_ID_CONFLICT"},
	    {SG_KM_SKMC_KEY_CONFLICT, 409, "SKMC_KEY_CONFLICT"},
	    {SG_KM_KEY_NOT_FOUND, 404, "KEY_NOT_FOUND"},
	    {SG_KM_KEY_REVOKED, 404, "KEY_REVOKED"},
	    {SG_KM_KEY_EXPIRED, 404, "KEY_EXPIRED"},
	    {SG_KM_TOO_MANY_KEYS, 429, "TOO_MANY_REQUESTS"},
	    {SG_KM_SERVICE_UNAVAILABLE, 503, "SERVICE_UNAVAILABLE"},
	};
	assert_int_equal(sizeof want / sizeof want[0], SG_KM_NERRORS - 1);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		assert_int_equal(sg_km_error_status(want[i].e), want[i].status);
		assert_string_equal(sg_km_error_cause(want[i].e), want[i].cause);
		assert_int_equal(sg_km_error_from_cause(want[i].cause), want[i].e);
	}
	assert_int_equal(sg_km_error_from_cause("NO_SUCH_CAUSE"), SG_KM_NERRORS);
	assert_int_equal(sg_km_error_status(SG_KM_NERRORS), 500);
}

static void test_jwk_check(void **state)
{
	(void)state;
	char *priv = NULL;
	assert_int_equal(sg_skmc_key_generate(&priv), SG_OK);
	json_t *pj = J(priv), *canon = NULL;
	char kid[64];
	struct sg_km_invalid why = {{0}, {0}};
	/* a private key is refused and never echoed */
	assert_int_equal(sg_km_jwk_check(pj, &canon, kid, &why), -1);
	assert_string_equal(why.param, "/jwk/d");
	assert_null(canon);
	json_object_del(pj, "d");
	assert_int_equal(sg_km_jwk_check(pj, &canon, kid, &why), 0);
	/* kid: the RFC 7638 thumbprint, as the SKM-C computed it */
	assert_string_equal(kid, json_string_value(json_object_get(pj, "kid")));
	assert_string_equal(json_string_value(json_object_get(canon, "alg")), "ECDH-ES");
	json_decref(canon);
	/* off the curve */
	json_t *bad = json_deep_copy(pj);
	const char *y = json_string_value(json_object_get(bad, "y"));
	char y2[64];
	snprintf(y2, sizeof y2, "%s", y);
	y2[5] = y2[5] == 'A' ? 'B' : 'A';
	json_object_set_new(bad, "y", json_string(y2));
	assert_int_equal(sg_km_jwk_check(bad, &canon, kid, &why), -1);
	assert_string_equal(why.param, "/jwk");
	json_decref(bad);
	bad = json_deep_copy(pj);
	json_object_set_new(bad, "crv", json_string("P-384"));
	assert_int_equal(sg_km_jwk_check(bad, &canon, kid, &why), -1);
	assert_string_equal(why.param, "/jwk/crv");
	json_decref(bad);
	bad = json_deep_copy(pj);
	json_object_set_new(bad, "use", json_string("sig"));
	assert_int_equal(sg_km_jwk_check(bad, &canon, kid, &why), -1);
	json_decref(bad);
	json_decref(pj);
	sg_skmc_secret_free(priv);
}

static void test_time(void **state)
{
	(void)state;
	int64_t ms = 0;
	assert_int_equal(sg_km_time_parse("2024-02-29T12:34:56Z", &ms), 0);
	assert_int_equal(ms, 1709210096000LL);
	assert_int_equal(sg_km_time_parse("2024-02-29T12:34:56.250Z", &ms), 0);
	char out[32];
	sg_km_time_format(1709210096000LL, out);
	assert_string_equal(out, "2024-02-29T12:34:56Z");
	assert_int_equal(sg_km_time_parse("2024-02-29T12:34:56+01:00", &ms), -1);
	assert_int_equal(sg_km_time_parse("2024-02-29", &ms), -1);
	assert_int_equal(sg_km_time_parse("", &ms), -1);
	/* strict RFC 3339 (what strptime let through before) */
	assert_int_equal(sg_km_time_parse(" 2024-2-9T1:2:3Z", &ms), -1);
	assert_int_equal(sg_km_time_parse("2024-02-30T00:00:00Z", &ms), -1);
}

/* R2 key continuity: a replacement proof holds for exactly the names it was made for, until it
 * expires. */
static void test_skmc_proof(void **state)
{
	(void)state;
	unsigned char pk[32], other[32];
	memset(pk, 7, sizeof pk);
	memset(other, 8, sizeof other);
	int64_t now = 1700000000000;
	char p[SG_KM_PROOF_LEN + 1];
	sg_km_skmc_proof_make(pk, "ue:s1", "app", "old", "new", now + 1000, p);
	assert_int_equal(strlen(p), SG_KM_PROOF_LEN);
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1", "app", "old", "new", p, now), 0);
	assert_int_equal(sg_km_skmc_proof_check(other, "ue:s1", "app", "old", "new", p, now), -1);
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s2", "app", "old", "new", p, now), -1);
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1", "app2", "old", "new", p, now), -1);
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1", "app", "old2", "new", p, now), -1);
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1", "app", "old", "new2", p, now), -1);
	/* names are NUL-separated: no shifting of bytes between them */
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1a", "pp", "old", "new", p, now), -1);
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1", "app", "old", "new", p, now + 1000),
	                 -1); /* expired */
	sg_km_skmc_proof_make(pk, "ue:s1", "app", "old", "new", now + SG_KM_PROOF_TTL_MS + 1, p);
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1", "app", "old", "new", p, now),
	                 -1); /* longer-lived than a challenge gives */
	sg_km_skmc_proof_make(pk, "ue:s1", "app", "old", "new", now + 1000, p);
	p[20] = p[20] == 'A' ? 'B' : 'A';
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1", "app", "old", "new", p, now), -1);
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1", "app", "old", "new", "", now), -1);
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1", "app", "old", "new", NULL, now), -1);
	assert_int_equal(sg_km_skmc_proof_check(pk, "ue:s1", "app", "old", "new", "!!", now), -1);
}

/* The store keeps versions, supersedes the older ones, revokes all of them. */
static void test_store_versions(void **state)
{
	(void)state;
	char dir[] = "/tmp/sg-test-km.XXXXXX", path[128], err[256] = "";
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/km.db", dir);
	struct sg_store *st = NULL;
	assert_int_equal(sg_store_open("sqlite", path, &st, err, sizeof err), SG_OK);
	int v = 0;
	assert_int_equal(sg_store_schema_version(st, &v), SG_OK);
	assert_true(v >= 4); /* key management is migration 4 */
	unsigned char blob[40] = {1, 2, 3};
	struct sg_store_km_key k = {.val_service = "v2x",
	                            .key_id = "k1",
	                            .version = 1,
	                            .target_kind = "user",
	                            .target = "alice",
	                            .provider = "v2x-app",
	                            .skmc_uri = "urn:x",
	                            .sealed = blob,
	                            .sealed_len = sizeof blob,
	                            .not_before = 1,
	                            .not_after = 2};
	assert_int_equal(sg_store_km_key_add(st, &k), SG_OK);
	assert_int_equal(sg_store_km_key_add(st, &k), SG_ERR_EXISTS);
	k.version = 2;
	assert_int_equal(sg_store_km_key_add(st, &k), SG_OK);
	struct sg_store_km_key *list = NULL;
	size_t n = 0;
	assert_int_equal(sg_store_km_key_list(st, "v2x", "user", "alice", &list, &n), SG_OK);
	assert_int_equal(n, 1); /* version 1 is superseded */
	assert_int_equal(list[0].version, 2);
	assert_memory_equal(list[0].sealed, blob, sizeof blob);
	sg_store_km_key_list_free(list, n);
	assert_int_equal(sg_store_km_key_list(st, "v2x", "user", "bob", &list, &n), SG_OK);
	assert_int_equal(n, 0);
	sg_store_km_key_list_free(list, n);
	struct sg_store_km_key cur;
	assert_int_equal(sg_store_km_key_latest(st, "v2x", "k1", &cur), SG_OK);
	assert_int_equal(cur.version, 2);
	assert_int_equal(cur.revoked_at, 0);
	sg_store_km_key_clear(&cur);
	assert_int_equal(sg_store_km_key_revoke(st, "v2x", "k1", 77), SG_OK);
	assert_int_equal(sg_store_km_key_revoke(st, "v2x", "k1", 99), SG_OK);
	assert_int_equal(sg_store_km_key_latest(st, "v2x", "k1", &cur), SG_OK);
	assert_int_equal(cur.revoked_at, 77); /* the first revocation stays */
	sg_store_km_key_clear(&cur);
	assert_int_equal(sg_store_km_key_revoke(st, "v2x", "nope", 1), SG_ERR_NOTFOUND);
	assert_int_equal(sg_store_km_key_latest(st, "kiosk", "k1", &cur), SG_ERR_NOTFOUND);
	struct sg_store_km_client c = {
	    .owner = "ue:abc", .client_id = "app", .kid = "kid1", .jwk = "{}", .skmc_uri = "urn:a"};
	assert_int_equal(sg_store_km_client_put(st, &c), SG_OK);
	c.kid = "kid2";
	assert_int_equal(sg_store_km_client_put(st, &c), SG_OK); /* re-registration replaces */
	struct sg_store_km_client got;
	assert_int_equal(sg_store_km_client_get(st, "ue:abc", "app", &got), SG_OK);
	assert_string_equal(got.kid, "kid2");
	sg_store_km_client_clear(&got);
	assert_int_equal(sg_store_km_client_get(st, "ue:abc", "other", &got), SG_ERR_NOTFOUND);

	/* the key quotas' counts: current versions, of the service and of one target */
	uint64_t nsvc = 9, ntgt = 9;
	struct sg_store_km_key s1 = k;
	s1.key_id = "svc-1";
	s1.version = 1;
	s1.target_kind = "";
	s1.target = "";
	s1.not_after = INT64_MAX / 2;
	assert_int_equal(sg_store_km_key_add(st, &s1), SG_OK);
	assert_int_equal(sg_store_km_key_count(st, "v2x", "user", "alice", &nsvc, &ntgt), SG_OK);
	assert_int_equal(nsvc, 2); /* k1 (version 2; version 1 superseded) and svc-1 */
	assert_int_equal(ntgt, 1);
	assert_int_equal(sg_store_km_key_count(st, "v2x", "", "", &nsvc, &ntgt), SG_OK);
	assert_int_equal(nsvc * 10 + ntgt, 21);
	assert_int_equal(sg_store_km_key_count(st, "kiosk", "", "", &nsvc, &ntgt), SG_OK);
	assert_int_equal(nsvc + ntgt, 0);

	/* the upkeep deletes key versions a day after they were superseded or expired (k1: both
	 * versions expired at 2, version 1 superseded now), never a current valid one (svc-1) */
	int64_t now = sg_now_ms(), day = 86400000;
	uint64_t purged = 0;
	assert_int_equal(sg_store_purge(st, 2 + day - 1, 0, &purged), SG_OK);
	assert_int_equal(purged, 0);
	assert_int_equal(sg_store_purge(st, 2 + day, 0, &purged), SG_OK);
	assert_int_equal(purged, 2); /* k1 versions 1 and 2: past validUntil for a day */
	assert_int_equal(sg_store_km_key_latest(st, "v2x", "k1", &cur), SG_ERR_NOTFOUND);
	s1.version = 2; /* a rotation of svc-1: version 1 superseded now, valid for ever */
	assert_int_equal(sg_store_km_key_add(st, &s1), SG_OK);
	assert_int_equal(sg_store_purge(st, now + day - 1000, 0, &purged), SG_OK);
	assert_int_equal(purged, 0);
	assert_int_equal(sg_store_purge(st, now + day + 1000, 0, &purged), SG_OK);
	assert_int_equal(purged, 1);
	assert_int_equal(sg_store_km_key_latest(st, "v2x", "svc-1", &cur), SG_OK);
	assert_int_equal(cur.version, 2); /* the current version stays */
	sg_store_km_key_clear(&cur);
	/* a key without an end (not_after 0: the group keys) stays however late it is */
	struct sg_store_km_key g = s1;
	g.key_id = "grp-1";
	g.version = 1;
	g.not_after = 0;
	assert_int_equal(sg_store_km_key_add(st, &g), SG_OK);
	assert_int_equal(sg_store_purge(st, now + 400 * day, 0, &purged), SG_OK);
	assert_int_equal(sg_store_km_key_latest(st, "v2x", "grp-1", &cur), SG_OK);
	sg_store_km_key_clear(&cur);
	sg_store_close(st);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_jwe_round_trip),
	    cmocka_unit_test(test_seal_bound_to_record),
	    cmocka_unit_test(test_pp_req_validation),
	    cmocka_unit_test(test_uu_req_validation),
	    cmocka_unit_test(test_error_codes),
	    cmocka_unit_test(test_jwk_check),
	    cmocka_unit_test(test_time),
	    cmocka_unit_test(test_skmc_proof),
	    cmocka_unit_test(test_store_versions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
