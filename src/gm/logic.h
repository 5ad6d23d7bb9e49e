/* gm/logic.h (private to gm/): the pure parts of the group management server, unit-tested
 * without a network: VALGroupDocument / VALGroupDocumentPatch validation (TS 29.549
 * SS_GroupManagement schemas), document patches, the RetrieveValGroupDocs filters, the
 * projection of RetrieveIndValGroupDoc, membership (GM-UU reads) and the VAL-server service
 * rules, and ProblemDetails with invalidParams (TS 29.122 §5.2.1.2.12). */
#ifndef SG_GM_LOGIC_H
#define SG_GM_LOGIC_H

#include <jansson.h>
#include <stddef.h>

#define SG_GM_MAX_INVALID 16

/* TS 29.122 InvalidParam: a JSON pointer to the attribute and the reason. */
struct sg_gm_invalid {
	char param[128];
	char reason[192];
};
struct sg_gm_check {
	struct sg_gm_invalid v[SG_GM_MAX_INVALID];
	size_t n; /* problems found (only the first SG_GM_MAX_INVALID are kept) */
};

/* Validates a VALGroupDocument (POST, PUT, and the result of a PATCH): valGroupId required,
 * every known attribute with its type, minItems, the ValTargetUe oneOf, the SupportedFeatures
 * pattern. Attributes the schema does not name are allowed by it (no additionalProperties) and
 * are ignored: *canon (new reference, on success) holds only the known attributes.
 * Returns 0, or -1 with the problems in chk. */
int sg_gm_doc_validate(const json_t *doc, json_t **canon, struct sg_gm_check *chk);

/* ModifyIndValGroupDoc: checks the patch against VALGroupDocumentPatch (an object; members of
 * VALGroupDocument that the patch schema leaves out - valGroupId, valSvcInf, suppFeat, resUri -
 * cannot be patched; a null valGroupId would remove the required attribute), applies it to doc
 * (RFC 7396) and validates the result as a whole document. Returns 0 with *out (new reference,
 * canonical), or -1 with the problems in chk: doc is never changed. */
int sg_gm_doc_patch(const json_t *doc, const json_t *patch, json_t **out, struct sg_gm_check *chk);

/* RetrieveValGroupDocs filters (NULL: no filter): valGroupId equals val_group_id, and
 * valServiceIds contains val_service_id. 1 when doc matches. */
int sg_gm_doc_matches(const json_t *doc, const char *val_group_id, const char *val_service_id);

/* RetrieveIndValGroupDoc: with group-members and/or group-configuration set, valGroupId plus
 * members and/or valGrpConf; with neither, the whole document. New reference. */
json_t *sg_gm_doc_project(const json_t *doc, int members, int configuration);

/* The membership view of a document: valGroupId, valServiceIds and members, each member by its
 * valUserId or, without one, its valUeId (other member attributes left out). A partial
 * VALGroupDocument; what the key management server keys groups by (K5). New reference, NULL
 * when out of memory. */
json_t *sg_gm_doc_membership(const json_t *doc);

/* The VAL user id of the requesting UE for a VAL service (the token's val_user_ids), or NULL. */
typedef const char *(*sg_gm_uid_fn)(void *ctx, const char *val_service_id);
/* GM-UU read rule: 1 when one of doc's members has valUserId equal to the UE's VAL user id for
 * one of doc's valServiceIds. A group without valServiceIds has no UE member (no VAL user id
 * applies); members named only by valUeId are not matched (tokens carry VAL user ids). */
int sg_gm_is_member(const json_t *doc, sg_gm_uid_fn uid_of, void *ctx);

/* VAL-server rules (docs/gm.md). within: doc has valServiceIds and each is one of services
 * (a VAL server writes only groups of the VAL services it serves); overlap: one of doc's
 * valServiceIds is one of services (it reads those). */
int sg_gm_services_within(const json_t *doc, char *const *services, size_t n);
int sg_gm_services_overlap(const json_t *doc, char *const *services, size_t n);

/* A ProblemDetails object: title, status, detail, cause (may be NULL), invalidParams from chk
 * (may be NULL). New reference. */
json_t *sg_gm_problem(int status, const char *cause, const char *detail,
                      const struct sg_gm_check *chk);

/* A groupDocId as this server draws them (base64url, 1..64 chars). */
int sg_gm_doc_id_ok(const char *id);

#endif
