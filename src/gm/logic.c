/* gm/logic.c: validation, merge patch, filters, membership and problems of ss-gm
 * (TS 29.549 SS_GroupManagement; TS 23.434 §10.3 group management). No I/O here. */
#include "gm/logic.h"

#include "base/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void bad(struct sg_gm_check *chk, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bad(struct sg_gm_check *chk, const char *param, const char *fmt, ...)
{
	if (chk->n < SG_GM_MAX_INVALID) {
		struct sg_gm_invalid *p = &chk->v[chk->n];
		snprintf(p->param, sizeof p->param, "%s", param);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->reason, sizeof p->reason, fmt, ap);
		va_end(ap);
	}
	chk->n++;
}

static int is_nonempty_string(const json_t *v)
{
	return json_is_string(v) && json_string_length(v) > 0;
}

/* A string attribute: present and a string (empty allowed where the schema says only string). */
static void want_string(struct sg_gm_check *chk, const json_t *v, const char *param)
{
	if (v && !json_is_string(v))
		bad(chk, param, "must be a string");
}

/* TS 29.549 ValTargetUe (SS_UserProfileRetrieval): oneOf required [valUserId] / [valUeId]. */
static void check_target_ue(struct sg_gm_check *chk, const json_t *m, const char *param)
{
	if (!json_is_object(m)) {
		bad(chk, param, "a ValTargetUe must be an object");
		return;
	}
	const json_t *u = json_object_get(m, "valUserId"), *e = json_object_get(m, "valUeId");
	if ((u != NULL) == (e != NULL))
		bad(chk, param, "a ValTargetUe has exactly one of valUserId, valUeId");
	else if ((u && !is_nonempty_string(u)) || (e && !is_nonempty_string(e)))
		bad(chk, param, "valUserId / valUeId must be a non-empty string");
}

/* TS 29.122 LocationInfo (MonitoringEvent): the scalar attributes are checked; structured ones
 * must be objects (their inner schemas belong to the location services). */
static void check_loc_info(struct sg_gm_check *chk, const json_t *v, const char *param)
{
	static const char *const strs[] = {"cellId",         "enodeBId",      "routingAreaId",
	                                   "trackingAreaId", "plmnId",        "twanId",
	                                   "positionMethod", "qosFulfilInd",  "ldrType",
	                                   "relAppLayerId",  "rangeDirection"};
	static const char *const objs[] = {"userLocation", "geographicArea", "civicAddress",
	                                   "ueVelocity",   "achievedQos",    "twoDRelLoc",
	                                   "threeDRelLoc", "relVelocity",    "upCumEvtRep"};
	char p[160];
	if (!json_is_object(v)) {
		bad(chk, param, "a LocationInfo must be an object");
		return;
	}
	for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
		snprintf(p, sizeof p, "%s/%s", param, strs[i]);
		want_string(chk, json_object_get(v, strs[i]), p);
	}
	for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) {
		const json_t *o = json_object_get(v, objs[i]);
		snprintf(p, sizeof p, "%s/%s", param, objs[i]);
		if (o && !json_is_object(o))
			bad(chk, p, "must be an object");
	}
	const json_t *age = json_object_get(v, "ageOfLocationInfo");
	/* DurationMin: integer, int32, minimum 0 */
	if (age && (!json_is_integer(age) || json_integer_value(age) < 0 ||
	            json_integer_value(age) > 2147483647))
		bad(chk, "/locInfo/ageOfLocationInfo",
		    "must be an integer from 0 to 2^31-1 (minutes)");
}

/* TS 29.122 LocationArea5G. */
static void check_loc_area(struct sg_gm_check *chk, const json_t *v, const char *param)
{
	char p[160];
	if (!json_is_object(v)) {
		bad(chk, param, "a LocationArea5G must be an object");
		return;
	}
	const char *arrs[] = {"geographicAreas", "civicAddresses"};
	for (size_t i = 0; i < 2; i++) {
		const json_t *a = json_object_get(v, arrs[i]);
		snprintf(p, sizeof p, "%s/%s", param, arrs[i]);
		if (a && !json_is_array(a)) {
			bad(chk, p, "must be an array");
		} else if (a) {
			size_t k;
			const json_t *x;
			json_array_foreach(a, k, x) if (!json_is_object(x))
			{
				snprintf(p, sizeof p, "%s/%s/%zu", param, arrs[i], k);
				bad(chk, p, "must be an object");
			}
		}
	}
	const json_t *nw = json_object_get(v, "nwAreaInfo");
	snprintf(p, sizeof p, "%s/nwAreaInfo", param);
	if (nw && !json_is_object(nw))
		bad(chk, p, "must be an object");
}

/* The attributes of VALGroupDocument, in schema order. */
static const char *const DOC_ATTRS[] = {"valGroupId",    "grpDesc",    "members",      "valGrpConf",
                                        "valServiceIds", "valSvcInf",  "suppFeat",     "resUri",
                                        "locInfo",       "addLocInfo", "valSvcAreaId", "extGrpId",
                                        "com5GLanType"};
#define N_DOC_ATTRS (sizeof DOC_ATTRS / sizeof DOC_ATTRS[0])
/* VALGroupDocumentPatch leaves these out. */
static const char *const NOT_PATCHABLE[] = {"valGroupId", "valSvcInf", "suppFeat", "resUri"};

static int in_list(const char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

int sg_gm_doc_validate(const json_t *doc, json_t **canon, struct sg_gm_check *chk)
{
	memset(chk, 0, sizeof *chk);
	if (canon)
		*canon = NULL;
	if (!json_is_object(doc)) {
		bad(chk, "/", "a VALGroupDocument must be a JSON object");
		return -1;
	}
	const json_t *v = json_object_get(doc, "valGroupId");
	if (!v)
		bad(chk, "/valGroupId", "required");
	else if (!is_nonempty_string(v))
		bad(chk, "/valGroupId", "must be a non-empty string");
	static const char *const plain[] = {"grpDesc", "valGrpConf",   "valSvcInf",
	                                    "resUri",  "valSvcAreaId", "com5GLanType"};
	for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
		char p[64];
		snprintf(p, sizeof p, "/%s", plain[i]);
		want_string(chk, json_object_get(doc, plain[i]), p);
	}
	if ((v = json_object_get(doc, "members"))) {
		if (!json_is_array(v) || json_array_size(v) == 0) {
			bad(chk, "/members",
			    "must be an array of ValTargetUe with at least 1 item");
		} else {
			size_t i;
			const json_t *m;
			json_array_foreach(v, i, m)
			{
				char p[64];
				snprintf(p, sizeof p, "/members/%zu", i);
				check_target_ue(chk, m, p);
			}
		}
	}
	if ((v = json_object_get(doc, "valServiceIds"))) {
		if (!json_is_array(v) || json_array_size(v) == 0) {
			bad(chk, "/valServiceIds",
			    "must be an array of strings with at least 1 item");
		} else {
			size_t i;
			const json_t *s;
			json_array_foreach(v, i, s) if (!is_nonempty_string(s))
			{
				char p[64];
				snprintf(p, sizeof p, "/valServiceIds/%zu", i);
				bad(chk, p, "must be a non-empty string");
			}
		}
	}
	/* TS 29.571 SupportedFeatures: ^[A-Fa-f0-9]*$ */
	if ((v = json_object_get(doc, "suppFeat")) &&
	    (!json_is_string(v) ||
	     strspn(json_string_value(v), "0123456789abcdefABCDEF") != json_string_length(v)))
		bad(chk, "/suppFeat", "must be a hexadecimal string (SupportedFeatures)");
	/* TS 29.122 ExternalGroupId: "local@domain", neither part containing "@" */
	if ((v = json_object_get(doc, "extGrpId"))) {
		const char *s = json_is_string(v) ? json_string_value(v) : NULL;
		const char *at = s ? strchr(s, '@') : NULL;
		if (!s || !at || at == s || !at[1] || strchr(at + 1, '@'))
			bad(chk, "/extGrpId",
			    "must be an ExternalGroupId: local identifier@domain");
	}
	if ((v = json_object_get(doc, "locInfo")))
		check_loc_info(chk, v, "/locInfo");
	if ((v = json_object_get(doc, "addLocInfo")))
		check_loc_area(chk, v, "/addLocInfo");
	if (chk->n)
		return -1;
	if (canon) {
		json_t *c = json_object();
		for (size_t i = 0; c && i < N_DOC_ATTRS; i++)
			if ((v = json_object_get(doc, DOC_ATTRS[i])) &&
			    json_object_set_new(c, DOC_ATTRS[i], json_deep_copy(v)) != 0) {
				json_decref(c);
				c = NULL;
			}
		if (!c) {
			bad(chk, "/", "out of memory");
			return -1;
		}
		*canon = c;
	}
	return 0;
}

int sg_gm_doc_patch(const json_t *doc, const json_t *patch, json_t **out, struct sg_gm_check *chk)
{
	memset(chk, 0, sizeof *chk);
	*out = NULL;
	if (!json_is_object(patch)) {
		bad(chk, "/", "a VALGroupDocumentPatch must be a JSON object");
		return -1;
	}
	json_t *p = json_object();
	const char *k;
	json_t *val;
	json_object_foreach((json_t *)patch, k, val)
	{
		char param[160];
		snprintf(param, sizeof param, "/%s", k);
		if (!strcmp(k, "valGroupId") && json_is_null(val))
			bad(chk, param, "valGroupId is required: the patch would remove it");
		else if (in_list(NOT_PATCHABLE, sizeof NOT_PATCHABLE / sizeof *NOT_PATCHABLE, k))
			bad(chk, param,
			    "not in VALGroupDocumentPatch: it cannot be modified with PATCH (use "
			    "PUT)");
		else if (in_list(DOC_ATTRS, N_DOC_ATTRS, k) && p)
			json_object_set(p, k, val);
		/* other names: not in the schema, which allows them; ignored */
	}
	if (!p)
		bad(chk, "/", "out of memory");
	if (chk->n) {
		json_decref(p);
		return -1;
	}
	json_t *merged = sg_json_merge_patch(doc, p);
	json_decref(p);
	if (!merged) {
		bad(chk, "/", "out of memory");
		return -1;
	}
	int rc = sg_gm_doc_validate(merged, out, chk);
	json_decref(merged);
	return rc;
}

static int array_has_string(const json_t *arr, const char *s)
{
	size_t i;
	const json_t *x;
	json_array_foreach(arr, i, x) if (json_is_string(x) &&
	                                  strcmp(json_string_value(x), s) == 0) return 1;
	return 0;
}

int sg_gm_doc_matches(const json_t *doc, const char *val_group_id, const char *val_service_id)
{
	if (val_group_id) {
		const char *g = json_string_value(json_object_get(doc, "valGroupId"));
		if (!g || strcmp(g, val_group_id) != 0)
			return 0;
	}
	if (val_service_id &&
	    !array_has_string(json_object_get(doc, "valServiceIds"), val_service_id))
		return 0;
	return 1;
}

json_t *sg_gm_doc_membership(const json_t *doc)
{
	json_t *o = json_object(), *ms = NULL;
	const json_t *v, *m;
	size_t i;
	int ok = o != NULL;
	if (ok && (v = json_object_get(doc, "valGroupId")))
		ok = !json_object_set_new(o, "valGroupId", json_deep_copy(v));
	if (ok && (v = json_object_get(doc, "valServiceIds")))
		ok = !json_object_set_new(o, "valServiceIds", json_deep_copy(v));
	if (ok && (v = json_object_get(doc, "members")))
		ok = !json_object_set_new(o, "members", ms = json_array());
	json_array_foreach(json_object_get(doc, "members"), i, m)
	{
		if (!ok)
			break;
		const char *k = json_object_get(m, "valUserId") ? "valUserId" : "valUeId";
		const json_t *id = json_object_get(m, k);
		json_t *e = json_object();
		ok = e && (!id || !json_object_set_new(e, k, json_deep_copy(id)));
		if (!ok)
			json_decref(e);
		else
			ok = !json_array_append_new(ms, e);
	}
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *sg_gm_doc_project(const json_t *doc, int members, int configuration)
{
	if (!members && !configuration)
		return json_deep_copy(doc);
	/* valGroupId is required in every VALGroupDocument, also a partial one */
	json_t *o = json_object();
	const json_t *v;
	if (o && (v = json_object_get(doc, "valGroupId")))
		json_object_set_new(o, "valGroupId", json_deep_copy(v));
	if (o && members && (v = json_object_get(doc, "members")))
		json_object_set_new(o, "members", json_deep_copy(v));
	if (o && configuration && (v = json_object_get(doc, "valGrpConf")))
		json_object_set_new(o, "valGrpConf", json_deep_copy(v));
	return o;
}

int sg_gm_is_member(const json_t *doc, sg_gm_uid_fn uid_of, void *ctx)
{
	const json_t *svcs = json_object_get(doc, "valServiceIds");
	const json_t *members = json_object_get(doc, "members");
	size_t i, k;
	const json_t *s, *m;
	json_array_foreach(svcs, i, s)
	{
		if (!json_is_string(s))
			continue;
		const char *uid = uid_of(ctx, json_string_value(s));
		if (!uid || !*uid)
			continue;
		json_array_foreach(members, k, m)
		{
			const char *mu = json_string_value(json_object_get(m, "valUserId"));
			if (mu && strcmp(mu, uid) == 0)
				return 1;
		}
	}
	return 0;
}

static int served(char *const *services, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(services[i], s) == 0)
			return 1;
	return 0;
}

int sg_gm_services_within(const json_t *doc, char *const *services, size_t n)
{
	const json_t *svcs = json_object_get(doc, "valServiceIds");
	if (!json_is_array(svcs) || json_array_size(svcs) == 0)
		return 0;
	size_t i;
	const json_t *s;
	json_array_foreach(svcs, i, s) if (!json_is_string(s) ||
	                                   !served(services, n, json_string_value(s))) return 0;
	return 1;
}

int sg_gm_services_overlap(const json_t *doc, char *const *services, size_t n)
{
	size_t i;
	const json_t *s;
	json_array_foreach(json_object_get(doc, "valServiceIds"), i,
	                   s) if (json_is_string(s) &&
	                          served(services, n, json_string_value(s))) return 1;
	return 0;
}

static const char *reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 415:
		return "Unsupported Media Type";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

json_t *sg_gm_problem(int status, const char *cause, const char *detail,
                      const struct sg_gm_check *chk)
{
	/* TS 29.122 ProblemDetails (RFC 7807) with cause and invalidParams */
	json_t *j = json_pack("{s:s,s:i,s:s}", "title", reason(status), "status", status, "detail",
	                      detail ? detail : "");
	if (!j)
		return NULL;
	if (cause)
		json_object_set_new(j, "cause", json_string(cause));
	if (chk && chk->n) {
		json_t *a = json_array();
		size_t n = chk->n < SG_GM_MAX_INVALID ? chk->n : SG_GM_MAX_INVALID;
		for (size_t i = 0; a && i < n; i++)
			json_array_append_new(a, json_pack("{s:s,s:s}", "param", chk->v[i].param,
			                                   "reason", chk->v[i].reason));
		if (a)
			json_object_set_new(j, "invalidParams", a);
	}
	return j;
}

int sg_gm_doc_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > 64)
		return 0;
	return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}
