/* km/logic.c: see km/logic.h. TS 33.434 §5.3 (SEAL KM Request/Response), §5.8 (key
 * provisioning, K3), TS 29.549 VALKeyPpReq / ValKeyInfo / ValTargetUe; R2 end-to-end
 * protection with JWE (RFC 7516) ECDH-ES + A256GCM (RFC 7518 §4.6, §5.3). */
#include "km/logic.h"

#include "base/b64.h"
#include "base/clock.h"

#include <cjose/cjose.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- ErrorCode -------------------------------------------------------------------------- */

static const struct {
	int status;
	const char *cause;
} ERRS[SG_KM_NERRORS] = {
    [SG_KM_OK] = {200, "OK"},
    [SG_KM_INVALID_MSG_FORMAT] = {400, "INVALID_MSG_FORMAT"},
    [SG_KM_INVALID_QUERY_PARAM] = {400, "INVALID_QUERY_PARAM"},
    [SG_KM_INVALID_SKMC_KEY] = {400, "INVALID_SKMC_KEY"},
    [SG_KM_UNSUPPORTED_MEDIA_TYPE] = {415, "UNSUPPORTED_MEDIA_TYPE"},
    [SG_KM_PAYLOAD_TOO_LARGE] = {413, "PAYLOAD_TOO_LARGE"},
    [SG_KM_OPERATION_NOT_ALLOWED] = {403, "OPERATION_NOT_ALLOWED"},
    [SG_KM_SKMC_KEY_NOT_REGISTERED] = {403, "SKMC_KEY_NOT_REGISTERED"},
    [SG_KM_PROVISIONING_NOT_AUTHORIZED] = {403, "KEY_PROVISIONING_NOT_AUTHORIZED"},
    [SG_KM_VAL_SERVICE_NOT_ALLOWED] = {403, "VAL_SERVICE_NOT_ALLOWED"},
    [SG_KM_TARGET_NOT_ALLOWED] = {403, "TARGET_NOT_ALLOWED"},
    [SG_KM_PAYLOAD_ID_CONFLICT] = {409, "PAYLOAD_ID_CONFLICT"},
    [SG_KM_SKMC_KEY_CONFLICT] = {409, "SKMC_KEY_CONFLICT"},
    [SG_KM_KEY_NOT_FOUND] = {404, "KEY_NOT_FOUND"},
    [SG_KM_KEY_REVOKED] = {404, "KEY_REVOKED"},
    [SG_KM_KEY_EXPIRED] = {404, "KEY_EXPIRED"},
    [SG_KM_TOO_MANY_KEYS] = {429, "TOO_MANY_REQUESTS"},
    [SG_KM_SERVICE_UNAVAILABLE] = {503, "SERVICE_UNAVAILABLE"},
};

int sg_km_error_status(enum sg_km_error e)
{
	return (unsigned)e < SG_KM_NERRORS ? ERRS[e].status : 500;
}

const char *sg_km_error_cause(enum sg_km_error e)
{
	return (unsigned)e < SG_KM_NERRORS ? ERRS[e].cause : "SYSTEM_FAILURE";
}

enum sg_km_error sg_km_error_from_cause(const char *s)
{
	for (int i = 0; s && i < SG_KM_NERRORS; i++)
		if (!strcmp(ERRS[i].cause, s))
			return (enum sg_km_error)i;
	return SG_KM_NERRORS;
}

/* ---- identifiers and targets ------------------------------------------------------------ */

static int bad(struct sg_km_invalid *why, const char *param, const char *reason)
{
	if (why) {
		snprintf(why->param, sizeof why->param, "%s", param);
		snprintf(why->reason, sizeof why->reason, "%s", reason);
	}
	return -1;
}

int sg_km_id_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > SG_KM_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f || c == '/' || c == '\\' || c == '"')
			return 0;
	}
	return 1;
}

int sg_km_payload_id_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n > 0 && n <= SG_KM_ID_MAX &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") == n;
}

const char *sg_km_tgt_kind_str(enum sg_km_tgt_kind k)
{
	return k == SG_KM_TGT_USER ? "user" : k == SG_KM_TGT_UE ? "ue" : "";
}

int sg_km_parse_target(const json_t *j, const char *at, struct sg_km_target *out,
                       struct sg_km_invalid *why)
{
	memset(out, 0, sizeof *out);
	char p[64];
	if (!json_is_object(j))
		return bad(why, at, "must be a ValTargetUe object");
	const json_t *u = json_object_get(j, "valUserId"), *e = json_object_get(j, "valUeId");
	if ((u != NULL) == (e != NULL))
		return bad(why, at, "exactly one of valUserId and valUeId");
	const json_t *v = u ? u : e;
	snprintf(p, sizeof p, "%s/%s", at, u ? "valUserId" : "valUeId");
	if (!json_is_string(v) || !sg_km_id_ok(json_string_value(v)))
		return bad(why, p, "must be a non-empty identifier of at most 128 bytes");
	out->kind = u ? SG_KM_TGT_USER : SG_KM_TGT_UE;
	snprintf(out->id, sizeof out->id, "%s", json_string_value(v));
	return 0;
}

json_t *sg_km_target_json(const struct sg_km_target *t)
{
	if (!t || t->kind == SG_KM_TGT_NONE)
		return NULL;
	return json_pack("{s:s}", t->kind == SG_KM_TGT_USER ? "valUserId" : "valUeId", t->id);
}

/* ---- time ------------------------------------------------------------------------------- */

void sg_km_time_format(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "1970-01-01T00:00:00Z");
}

int sg_km_time_parse(const char *s, int64_t *ms)
{
	int64_t t;
	if (sg_time_parse_utc(s, &t))
		return -1;
	*ms = t * 1000;
	return 0;
}

/* ---- messages --------------------------------------------------------------------------- */

static int get_str(const json_t *j, const char *name, int required, char *out, size_t cap,
                   int (*ok)(const char *), struct sg_km_invalid *why)
{
	char p[64];
	snprintf(p, sizeof p, "/%s", name);
	const json_t *v = json_object_get(j, name);
	out[0] = '\0';
	if (!v)
		return required ? bad(why, p, "is required") : 0;
	if (!json_is_string(v) || (ok && !ok(json_string_value(v))))
		return bad(why, p, "must be a non-empty identifier of at most 128 bytes");
	if (json_string_length(v) >= cap || !json_string_length(v))
		return bad(why, p, "is empty or too long");
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int uri_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > SG_KM_URI_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return strchr(s, ':') != NULL; /* RFC 3986: a scheme */
}

int sg_km_parse_pp_req(const json_t *j, struct sg_km_pp_req *out, struct sg_km_invalid *why)
{
	memset(out, 0, sizeof *out);
	if (!json_is_object(j))
		return bad(why, "/", "must be a VALKeyPpReq object");
	if (get_str(j, "skmcUri", 1, out->skmc_uri, sizeof out->skmc_uri, uri_ok, why) ||
	    get_str(j, "valServiceId", 1, out->val_service, sizeof out->val_service, sg_km_id_ok,
	            why) ||
	    get_str(j, "payloadId", 0, out->payload_id, sizeof out->payload_id, sg_km_payload_id_ok,
	            why))
		return -1;
	const json_t *t = json_object_get(j, "valTgtUe");
	if (t && sg_km_parse_target(t, "/valTgtUe", &out->tgt, why))
		return -1;
	const json_t *p = json_object_get(j, "payload");
	if (p) {
		/* TS 29.571 Bytes: base64 (RFC 4648 §4); base64url is accepted too */
		const char *s = json_string_value(p);
		size_t n = s ? strlen(s) : 0;
		if (!s || !n || n > 4 * ((SG_KM_KEY_MAX + 2) / 3))
			return bad(why, "/payload", "must be base64 of 16 to 512 bytes");
		char *u = malloc(n + 1);
		if (!u)
			return bad(why, "/payload", "out of memory");
		size_t m = 0, pad = 0;
		for (size_t i = 0; i < n; i++) {
			char c = s[i];
			if (c == '=') { /* padding ends it: only more padding may follow */
				pad = n - i;
				break;
			}
			u[m++] = c == '+' ? '-' : c == '/' ? '_' : c;
		}
		sg_err e = pad > 2 || strspn(s + m, "=") != pad
		               ? SG_ERR_INVALID
		               : sg_b64url_decode(u, m, out->payload, sizeof out->payload,
		                                  &out->payload_len);
		OPENSSL_cleanse(u, n + 1);
		free(u);
		if (e != SG_OK || out->payload_len < SG_KM_KEY_MIN) {
			sg_km_pp_req_wipe(out);
			return bad(why, "/payload", "must be base64 of 16 to 512 bytes");
		}
	}
	/* sealguard extension (docs/km-protocol.md): validity of the provisioned key */
	const json_t *vf = json_object_get(j, "validFrom"), *vu = json_object_get(j, "validUntil");
	if (vf &&
	    (!json_is_string(vf) || sg_km_time_parse(json_string_value(vf), &out->valid_from_ms))) {
		sg_km_pp_req_wipe(out);
		return bad(why, "/validFrom", "must be an RFC 3339 UTC date-time");
	}
	if (vu && (!json_is_string(vu) ||
	           sg_km_time_parse(json_string_value(vu), &out->valid_until_ms))) {
		sg_km_pp_req_wipe(out);
		return bad(why, "/validUntil", "must be an RFC 3339 UTC date-time");
	}
	if (out->valid_until_ms && out->valid_from_ms &&
	    out->valid_until_ms <= out->valid_from_ms) {
		sg_km_pp_req_wipe(out);
		return bad(why, "/validUntil", "must be later than validFrom");
	}
	return 0;
}

void sg_km_pp_req_wipe(struct sg_km_pp_req *r)
{
	if (r)
		OPENSSL_cleanse(r->payload, sizeof r->payload);
	if (r)
		r->payload_len = 0;
}

int sg_km_parse_uu_req(const json_t *j, struct sg_km_uu_req *out, struct sg_km_invalid *why)
{
	memset(out, 0, sizeof *out);
	if (!json_is_object(j))
		return bad(why, "/", "must be a SEAL KM Request object");
	if (get_str(j, "valServiceId", 1, out->val_service, sizeof out->val_service, sg_km_id_ok,
	            why))
		return -1;
	const json_t *t = json_object_get(j, "valTgtUe");
	if (t && sg_km_parse_target(t, "/valTgtUe", &out->tgt, why))
		return -1;
	const json_t *ids = json_object_get(j, "payloadIds");
	if (ids) {
		if (!json_is_array(ids) || !json_array_size(ids))
			return bad(why, "/payloadIds",
			           "must be a non-empty array (absent: all current)");
		if (json_array_size(ids) > SG_KM_MAX_IDS)
			return bad(why, "/payloadIds", "at most 32 payloadIds");
		size_t i;
		const json_t *v;
		json_array_foreach(ids, i, v)
		{
			char p[64];
			snprintf(p, sizeof p, "/payloadIds/%zu", i);
			if (!json_is_string(v) || !sg_km_payload_id_ok(json_string_value(v)))
				return bad(why, p, "must be a payloadId (RFC 3986 unreserved)");
			snprintf(out->ids[out->nids++], SG_KM_ID_MAX + 1, "%s",
			         json_string_value(v));
		}
	}
	return 0;
}

/* ---- SKM-C public keys ------------------------------------------------------------------ */

static int b64_32(const json_t *v, unsigned char out[32])
{
	size_t n = 0;
	const char *s = json_string_value(v);
	return s && strlen(s) == 43 && sg_b64url_decode(s, 43, out, 32, &n) == SG_OK && n == 32
	           ? 0
	           : -1;
}

int sg_km_jwk_check(const json_t *jwk, json_t **canon, char kid[64], struct sg_km_invalid *why)
{
	*canon = NULL;
	if (!json_is_object(jwk))
		return bad(why, "/jwk", "must be a JWK object");
	if (json_object_get(jwk, "d"))
		return bad(why, "/jwk/d", "a private key is never sent: register the public half");
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	const json_t *use = json_object_get(jwk, "use");
	if (!kty || strcmp(kty, "EC"))
		return bad(why, "/jwk/kty", "must be EC");
	if (!crv || strcmp(crv, "P-256"))
		return bad(why, "/jwk/crv", "must be P-256");
	if (use && (!json_is_string(use) || strcmp(json_string_value(use), "enc")))
		return bad(why, "/jwk/use", "must be enc when present");
	unsigned char pt[65];
	pt[0] = 0x04;
	if (b64_32(json_object_get(jwk, "x"), pt + 1))
		return bad(why, "/jwk/x", "must be base64url of 32 bytes");
	if (b64_32(json_object_get(jwk, "y"), pt + 33))
		return bad(why, "/jwk/y", "must be base64url of 32 bytes");
	/* the point must be on P-256 (invalid-curve attacks on ECDH, RFC 7518 §4.6 note) */
	int ok = 0;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pk = NULL;
	if (bld && ctx &&
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt) &&
	    (params = OSSL_PARAM_BLD_to_param(bld)) && EVP_PKEY_fromdata_init(ctx) == 1 &&
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) == 1) {
		EVP_PKEY_CTX *c2 = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
		ok = c2 && EVP_PKEY_public_check(c2) == 1;
		EVP_PKEY_CTX_free(c2);
	}
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	if (!ok)
		return bad(why, "/jwk", "not a point on P-256");
	const char *x = json_string_value(json_object_get(jwk, "x"));
	const char *y = json_string_value(json_object_get(jwk, "y"));
	/* RFC 7638 §3.2: the thumbprint input has the required members in lexicographic order */
	char tp[200];
	snprintf(tp, sizeof tp, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x,
	         y);
	unsigned char h[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)tp, strlen(tp), h);
	sg_b64url_encode(h, sizeof h, kid);
	*canon = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-256", "x", x,
	                   "y", y, "kid", kid, "use", "enc", "alg", "ECDH-ES");
	return *canon ? 0 : bad(why, "/jwk", "out of memory");
}

/* ---- at rest ---------------------------------------------------------------------------- */

static size_t km_aad(char *out, size_t cap, const char *svc, const char *id, int64_t version)
{
	int n = snprintf(out, cap, "sealguard-km-v1%c%s%c%s%c%lld", 0, svc, 0, id, 0,
	                 (long long)version);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void proof_mac(const unsigned char pk[32], const char *owner, const char *client_id,
                      const char *old_kid, const char *new_kid, const unsigned char exp[8],
                      unsigned char mac[32])
{
	static const char label[] = "sealguard-km-skmc-proof-v1";
	const char *parts[] = {label, owner, client_id, old_kid, new_kid};
	unsigned char buf[2048];
	size_t n = 0;
	int ok = 1;
	for (size_t i = 0; i < sizeof parts / sizeof parts[0] && ok; i++) {
		size_t l = strlen(parts[i]);
		ok = n + l + 1 + 8 <= sizeof buf;
		if (ok) {
			memcpy(buf + n, parts[i], l + 1); /* with its NUL */
			n += l + 1;
		}
	}
	memcpy(buf + n, exp, 8);
	unsigned mlen = 0;
	/* names too long for buf (none is: each is bounded far below) get no valid MAC */
	if (!ok || !HMAC(EVP_sha256(), pk, 32, buf, n + 8, mac, &mlen))
		RAND_bytes(mac, 32);
}

void sg_km_skmc_proof_make(const unsigned char pk[32], const char *owner, const char *client_id,
                           const char *old_kid, const char *new_kid, int64_t exp_ms,
                           char out[SG_KM_PROOF_LEN + 1])
{
	unsigned char raw[40];
	for (int i = 0; i < 8; i++)
		raw[i] = (unsigned char)((uint64_t)exp_ms >> (56 - 8 * i));
	proof_mac(pk, owner, client_id, old_kid, new_kid, raw, raw + 8);
	sg_b64url_encode(raw, sizeof raw, out);
}

int sg_km_skmc_proof_check(const unsigned char pk[32], const char *owner, const char *client_id,
                           const char *old_kid, const char *new_kid, const char *proof,
                           int64_t now_ms)
{
	unsigned char raw[41], mac[32];
	size_t n = 0;
	if (!proof || strlen(proof) != SG_KM_PROOF_LEN ||
	    sg_b64url_decode(proof, SG_KM_PROOF_LEN, raw, sizeof raw, &n) != SG_OK || n != 40)
		return -1;
	uint64_t exp = 0;
	for (int i = 0; i < 8; i++)
		exp = exp << 8 | raw[i];
	proof_mac(pk, owner, client_id, old_kid, new_kid, raw, mac);
	int same = CRYPTO_memcmp(mac, raw + 8, 32) == 0;
	OPENSSL_cleanse(mac, sizeof mac);
	return same && (int64_t)exp > now_ms && (int64_t)exp <= now_ms + SG_KM_PROOF_TTL_MS ? 0
	                                                                                    : -1;
}

sg_err sg_km_seal(const unsigned char mk[SG_KEY_LEN], const char *val_service, const char *key_id,
                  int64_t version, const unsigned char *plain, size_t n, unsigned char *out)
{
	char aad[400];
	size_t al = km_aad(aad, sizeof aad, val_service, key_id, version);
	if (!al)
		return SG_ERR_INVALID;
	return sg_seal(mk, aad, al, plain, n, out);
}

sg_err sg_km_unseal(const unsigned char mk[SG_KEY_LEN], const char *val_service, const char *key_id,
                    int64_t version, const unsigned char *sealed, size_t sealed_len,
                    unsigned char *out, size_t *outlen)
{
	char aad[400];
	size_t al = km_aad(aad, sizeof aad, val_service, key_id, version);
	if (!al)
		return SG_ERR_INVALID;
	return sg_unseal(mk, aad, al, sealed, sealed_len, out, outlen);
}

/* ---- end to end (R2) -------------------------------------------------------------------- */

static sg_err cj_fail(char *err, size_t errlen, sg_err code, const char *what, cjose_err *ce)
{
	return sg_fail(err, errlen, code, "%s: %s", what,
	               ce && ce->message ? ce->message : "failed");
}

sg_err sg_km_jwe_encrypt(const char *jwk_json, const void *plain, size_t n, char **compact,
                         char *err, size_t errlen)
{
	*compact = NULL;
	cjose_err ce = {0};
	cjose_jwk_t *jwk = cjose_jwk_import(jwk_json, strlen(jwk_json), &ce);
	if (!jwk)
		return cj_fail(err, errlen, SG_ERR_INVALID, "JWE: SKM-C key", &ce);
	sg_err e = SG_OK;
	cjose_header_t *h = cjose_header_new(&ce);
	const char *kid = cjose_jwk_get_kid(jwk, &ce);
	if (!h || !cjose_header_set(h, CJOSE_HDR_ALG, CJOSE_HDR_ALG_ECDH_ES, &ce) ||
	    !cjose_header_set(h, CJOSE_HDR_ENC, CJOSE_HDR_ENC_A256GCM, &ce) ||
	    !cjose_header_set(h, CJOSE_HDR_CTY, "sealguard-km+json", &ce) ||
	    (kid && !cjose_header_set(h, CJOSE_HDR_KID, kid, &ce))) {
		e = cj_fail(err, errlen, SG_ERR_NOMEM, "JWE header", &ce);
	} else {
		cjose_jwe_t *jwe = cjose_jwe_encrypt(jwk, h, plain, n, &ce);
		char *s = jwe ? cjose_jwe_export(jwe, &ce) : NULL;
		if (!s) {
			e = cj_fail(err, errlen, SG_ERR_INTERNAL, "JWE encrypt", &ce);
		} else {
			*compact = strdup(s);
			cjose_get_dealloc()(s);
			if (!*compact)
				e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		}
		cjose_jwe_release(jwe);
	}
	cjose_header_release(h);
	cjose_jwk_release(jwk);
	return e;
}

sg_err sg_km_jwe_decrypt(const char *jwk_json, const char *compact, unsigned char **plain,
                         size_t *n, char *err, size_t errlen)
{
	*plain = NULL;
	*n = 0;
	cjose_err ce = {0};
	cjose_jwk_t *jwk = cjose_jwk_import(jwk_json, strlen(jwk_json), &ce);
	if (!jwk)
		return cj_fail(err, errlen, SG_ERR_INVALID, "JWE: private key", &ce);
	sg_err e = SG_OK;
	cjose_jwe_t *jwe = cjose_jwe_import(compact, strlen(compact), &ce);
	cjose_header_t *h = jwe ? cjose_jwe_get_protected(jwe) : NULL;
	const char *alg = h ? cjose_header_get(h, CJOSE_HDR_ALG, &ce) : NULL;
	const char *enc = h ? cjose_header_get(h, CJOSE_HDR_ENC, &ce) : NULL;
	if (!jwe || !alg || !enc) {
		e = sg_fail(err, errlen, SG_ERR_PROTO, "not a compact JWE");
	} else if (strcmp(alg, CJOSE_HDR_ALG_ECDH_ES) || strcmp(enc, CJOSE_HDR_ENC_A256GCM)) {
		/* no algorithm substitution: only what sealguard sends (RFC 8725 §3.1) */
		e = sg_fail(err, errlen, SG_ERR_PROTO, "JWE alg/enc must be ECDH-ES/A256GCM");
	} else {
		size_t len = 0;
		uint8_t *p = cjose_jwe_decrypt(jwe, jwk, &len, &ce);
		if (!p) {
			e = sg_fail(err, errlen, SG_ERR_DENIED,
			            "the key material does not decrypt with this SKM-C key");
		} else {
			*plain = malloc(len + 1);
			if (*plain) {
				memcpy(*plain, p, len);
				(*plain)[len] = 0;
				*n = len;
			} else {
				e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
			}
			OPENSSL_cleanse(p, len);
			cjose_get_dealloc()(p);
		}
	}
	cjose_jwe_release(jwe);
	cjose_jwk_release(jwk);
	return e;
}

json_t *sg_km_record_json(const char *val_service, const char *key_id, int64_t version,
                          const char *target_kind, const char *target, int64_t not_before,
                          int64_t not_after, const unsigned char *key, size_t keylen)
{
	char from[32], until[32];
	sg_km_time_format(not_before, from);
	sg_km_time_format(not_after, until);
	char *k = malloc(sg_b64url_len(keylen) + 1);
	if (!k)
		return NULL;
	sg_b64url_encode(key, keylen, k);
	json_t *r =
	    json_pack("{s:s,s:I,s:s,s:s,s:s}", "payloadId", key_id, "version", (json_int_t)version,
	              "valServiceId", val_service, "validFrom", from, "validUntil", until);
	if (r && target_kind && *target_kind) {
		json_object_set_new(
		    r, "valTgtUe",
		    json_pack("{s:s}", !strcmp(target_kind, "user") ? "valUserId" : "valUeId",
		              target));
	}
	if (r && json_object_set_new(r, "key", json_string(k)) != 0) {
		json_decref(r);
		r = NULL;
	}
	OPENSSL_cleanse(k, strlen(k));
	free(k);
	return r;
}

void sg_km_record_wipe(json_t *rec)
{
	json_t *k = json_object_get(rec, "key");
	if (json_is_string(k))
		OPENSSL_cleanse((void *)json_string_value(k), json_string_length(k));
	json_decref(rec);
}
