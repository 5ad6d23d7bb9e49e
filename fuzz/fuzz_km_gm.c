/* fuzz/fuzz_km_gm.c: the request bodies of key management (TS 29.549 VALKeyPpReq, the KM-UU
 * SEAL KM Request, SKM-C public keys) and group management (VALGroupDocument and its RFC 7396
 * patch) as the servers read them: JSON with duplicate members refused, then km/logic.c and
 * gm/logic.c. Properties:
 *   - an accepted KM request holds only identifiers that pass the identifier checks again, a
 *     key of 16..512 bytes or none, a validity that ends after it starts; a refused one names a
 *     JSON pointer and keeps no key bytes;
 *   - an accepted SKM-C key is a public P-256 key whose canonical form is accepted again with
 *     the same kid (its RFC 7638 thumbprint);
 *   - every RFC 3339 date-time accepted survives formatting and parsing unchanged;
 *   - a group document accepted is accepted again in its canonical form, unchanged; a patch
 *     never changes the document it applies to, and what it yields is a valid document;
 *     RFC 7396 merge patch is idempotent; refusals carry invalidParams in valid JSON. */
#include "fuzz.h"

#include "base/clock.h"
#include "base/json.h"
#include "gm/logic.h"
#include "km/logic.h"

#include <jansson.h>
#include <string.h>

static int zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void refused(const struct sg_km_invalid *why)
{
	FUZZ_CHECK(memchr(why->param, '\0', sizeof why->param) && why->param[0] == '/');
	FUZZ_CHECK(memchr(why->reason, '\0', sizeof why->reason) && why->reason[0]);
}

static void target_ok(const struct sg_km_target *t)
{
	FUZZ_CHECK(t->kind == SG_KM_TGT_NONE || sg_km_id_ok(t->id));
	json_t *j = sg_km_target_json(t);
	FUZZ_CHECK((t->kind == SG_KM_TGT_NONE) == (j == NULL));
	if (j) { /* it reads back as itself */
		struct sg_km_target back;
		struct sg_km_invalid why;
		FUZZ_CHECK(sg_km_parse_target(j, "/t", &back, &why) == 0);
		FUZZ_CHECK(back.kind == t->kind && !strcmp(back.id, t->id));
		json_decref(j);
	}
}

static void km(const json_t *j)
{
	struct sg_km_invalid why;
	struct sg_km_pp_req pp;
	memset(&why, 0, sizeof why);
	if (sg_km_parse_pp_req(j, &pp, &why) == 0) {
		FUZZ_CHECK(pp.skmc_uri[0] && strchr(pp.skmc_uri, ':'));
		FUZZ_CHECK(sg_km_id_ok(pp.val_service));
		FUZZ_CHECK(!pp.payload_id[0] || sg_km_payload_id_ok(pp.payload_id));
		FUZZ_CHECK(pp.payload_len == 0 ||
		           (pp.payload_len >= SG_KM_KEY_MIN && pp.payload_len <= SG_KM_KEY_MAX));
		FUZZ_CHECK(!pp.valid_from_ms || !pp.valid_until_ms ||
		           pp.valid_until_ms > pp.valid_from_ms);
		target_ok(&pp.tgt);
		sg_km_pp_req_wipe(&pp);
		FUZZ_CHECK(pp.payload_len == 0 && zero(pp.payload, sizeof pp.payload));
	} else {
		refused(&why);
		FUZZ_CHECK(pp.payload_len == 0 && zero(pp.payload, sizeof pp.payload));
	}

	struct sg_km_uu_req uu;
	memset(&why, 0, sizeof why);
	if (sg_km_parse_uu_req(j, &uu, &why) == 0) {
		FUZZ_CHECK(sg_km_id_ok(uu.val_service));
		FUZZ_CHECK(uu.nids <= SG_KM_MAX_IDS);
		FUZZ_CHECK(uu.nids == json_array_size(json_object_get(j, "payloadIds")));
		for (size_t i = 0; i < uu.nids; i++)
			FUZZ_CHECK(sg_km_payload_id_ok(uu.ids[i]));
		target_ok(&uu.tgt);
	} else {
		refused(&why);
	}

	json_t *canon = NULL;
	char kid[64];
	memset(&why, 0, sizeof why);
	if (sg_km_jwk_check(j, &canon, kid, &why) == 0) {
		FUZZ_CHECK(canon && !json_object_get(j, "d") && !json_object_get(canon, "d"));
		FUZZ_CHECK(!strcmp(json_string_value(json_object_get(canon, "kty")), "EC"));
		FUZZ_CHECK(!strcmp(json_string_value(json_object_get(canon, "crv")), "P-256"));
		FUZZ_CHECK(strlen(kid) == 43); /* base64url of a SHA-256 thumbprint */
		json_t *again = NULL;
		char kid2[64];
		FUZZ_CHECK(sg_km_jwk_check(canon, &again, kid2, &why) == 0);
		FUZZ_CHECK(!strcmp(kid, kid2) && json_equal(canon, again));
		json_decref(again);
		json_decref(canon);
	} else {
		FUZZ_CHECK(canon == NULL);
		refused(&why);
	}
}

/* Every string member: a date-time accepted is one of 1970-9999 and formats back to the same
 * instant; the KM form agrees. */
static void times(const json_t *j)
{
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)j, k, v)
	{
		const char *s = json_string_value(v);
		int64_t t, ms;
		if (!s || sg_time_parse_utc(s, &t))
			continue;
		FUZZ_CHECK(t >= 0 && t <= 253402300799LL); /* 9999-12-31T23:59:59Z */
		FUZZ_CHECK(sg_km_time_parse(s, &ms) == 0 && ms == t * 1000);
		char out[32];
		sg_km_time_format(ms, out);
		int64_t back;
		FUZZ_CHECK(sg_time_parse_utc(out, &back) == 0 && back == t);
	}
}

static void gm_refused(const struct sg_gm_check *chk)
{
	FUZZ_CHECK(chk->n > 0);
	json_t *p = sg_gm_problem(400, "INVALID_MSG_FORMAT", "the body violates the schema", chk);
	FUZZ_CHECK(p != NULL);
	char *s = json_dumps(p, JSON_COMPACT);
	FUZZ_CHECK(s != NULL);
	json_t *back = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
	size_t kept = chk->n < SG_GM_MAX_INVALID ? chk->n : SG_GM_MAX_INVALID;
	FUZZ_CHECK(back && json_array_size(json_object_get(back, "invalidParams")) == kept);
	json_decref(back);
	free(s);
	json_decref(p);
}

/* A document gm/logic.c produced (canonical) is valid and validates to itself; consumes doc. */
static void gm_fixed_point(json_t *doc)
{
	struct sg_gm_check chk;
	json_t *again = NULL;
	memset(&chk, 0, sizeof chk);
	FUZZ_CHECK(doc && sg_gm_doc_validate(doc, &again, &chk) == 0 && json_equal(doc, again));
	json_decref(again);
	json_decref(doc);
}

static void gm(const json_t *j)
{
	struct sg_gm_check chk;
	json_t *canon = NULL;
	memset(&chk, 0, sizeof chk);
	if (sg_gm_doc_validate(j, &canon, &chk) == 0) {
		FUZZ_CHECK(chk.n == 0);
		gm_fixed_point(canon);
	} else {
		FUZZ_CHECK(canon == NULL);
		gm_refused(&chk);
	}

	/* the input as a patch of a valid document */
	json_t *doc = json_loads("{\"valGroupId\":\"g1\",\"grpDesc\":\"d\",\"members\":[{"
	                         "\"valUserId\":\"a\"}],\"valServiceIds\":[\"v2x\"]}",
	                         0, NULL);
	FUZZ_CHECK(doc != NULL);
	json_t *copy = json_deep_copy(doc), *out = NULL;
	memset(&chk, 0, sizeof chk);
	if (sg_gm_doc_patch(doc, j, &out, &chk) == 0) {
		gm_fixed_point(out);
	} else {
		FUZZ_CHECK(out == NULL);
		gm_refused(&chk);
	}
	FUZZ_CHECK(json_equal(doc, copy));

	/* RFC 7396: applying a patch twice is applying it once; a non-object patch replaces */
	json_t *once = sg_json_merge_patch(doc, j);
	FUZZ_CHECK(once != NULL);
	json_t *twice = sg_json_merge_patch(once, j);
	FUZZ_CHECK(twice && json_equal(once, twice));
	if (!json_is_object(j))
		FUZZ_CHECK(json_equal(once, j));
	FUZZ_CHECK(json_equal(doc, copy));
	json_decref(twice);
	json_decref(once);
	json_decref(copy);
	json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > SG_KM_MAX_BODY)
		return 0; /* the servers refuse larger bodies before parsing (413) */
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return 0;
	km(j);
	if (json_is_object(j))
		times(j);
	gm(j);
	json_decref(j);
	return 0;
}
