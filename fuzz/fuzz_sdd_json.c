/* fuzz/fuzz_sdd_json.c: SEALDD-S and SEALDD-E request bodies (TS 29.548 TransReq,
 * ConnStatusSubsc, DdContext) as the server reads them: JSON with duplicate members refused,
 * then the strict schema checks of sdd/proto.c, then the ProblemDetails a refusal answers
 * with. A body is either accepted with a usable relay target, or refused with at least one
 * invalidParams entry, never both; the answer is valid JSON. */
#include "fuzz.h"

#include "sdd/proto.h"

#include <jansson.h>
#include <string.h>

static void answer(int bad, const struct sg_sdd_check *chk)
{
	FUZZ_CHECK(bad ? chk->n > 0 : chk->n == 0);
	if (!bad)
		return;
	/* chk->n counts every problem; the first SG_SDD_MAX_INVALID are kept and answered */
	size_t kept = chk->n < SG_SDD_MAX_INVALID ? chk->n : SG_SDD_MAX_INVALID;
	for (size_t i = 0; i < kept; i++)
		FUZZ_CHECK(memchr(chk->v[i].param, '\0', sizeof chk->v[i].param) &&
		           memchr(chk->v[i].reason, '\0', sizeof chk->v[i].reason));
	json_t *p = sg_sdd_problem(400, "INVALID_MSG_FORMAT", "the body violates the schema", chk);
	FUZZ_CHECK(p != NULL);
	char *s = json_dumps(p, JSON_COMPACT);
	FUZZ_CHECK(s != NULL);
	json_t *back = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
	FUZZ_CHECK(back && json_array_size(json_object_get(back, "invalidParams")) == kept);
	json_decref(back);
	free(s);
	json_decref(p);
}

static void target_ok(const struct sg_sdd_target *t)
{
	FUZZ_CHECK(t->host[0] && memchr(t->host, '\0', sizeof t->host));
	FUZZ_CHECK(t->port >= 1 && t->port <= 65535);
	json_t *ci = sg_sdd_conninfo(t->host, t->port);
	FUZZ_CHECK(ci != NULL);
	json_decref(ci);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return 0;
	struct sg_sdd_check chk;
	struct sg_sdd_target tgt;

	memset(&chk, 0, sizeof chk);
	memset(&tgt, 0, sizeof tgt);
	int bad = sg_sdd_transreq_validate(j, &tgt, &chk) != 0;
	answer(bad, &chk);
	if (!bad)
		target_ok(&tgt);

	memset(&chk, 0, sizeof chk);
	answer(sg_sdd_subsc_validate(j, &chk) != 0, &chk);

	memset(&chk, 0, sizeof chk);
	memset(&tgt, 0, sizeof tgt);
	bad = sg_sdd_ddcontext_validate(j, "/ddContext", &tgt, &chk) != 0;
	answer(bad, &chk);
	if (!bad)
		target_ok(&tgt);

	json_decref(j);
	return 0;
}
