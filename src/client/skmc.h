/* client/skmc.h: the SEAL key management client, SKM-C (TS 33.434 §5.3, §5.8), for UEs (over
 * KM-UU with the SIM-C's access token) and for VAL servers (over KM-S with mutual TLS and a
 * certificate-bound token, client/valsrv.h). docs/km-protocol.md describes the messages.
 *
 * R2, end to end: the SKM-C generates its own P-256 key pair; only the public JWK is ever sent
 * (registration); the SKM-S encrypts key material to it (JWE compact, ECDH-ES + A256GCM), and
 * only this client can open it, whatever terminates TLS in between. The private JWK is kept in
 * a 0600 file by the caller (sg_skmc_key_save/load) and wiped from memory when released.
 * Not thread-safe: one set of objects per thread. */
#ifndef SG_CLIENT_SKMC_H
#define SG_CLIENT_SKMC_H

#include "base/err.h"

#include <jansson.h>
#include <stddef.h>

struct sg_valsrv;

/* ---- the SKM-C key pair ----------------------------------------------------------------- */

/* Generates a P-256 key pair; *priv_jwk (JSON text with "d", kid = RFC 7638 thumbprint) is
 * owned by the caller: sg_skmc_secret_free. */
sg_err sg_skmc_key_generate(char **priv_jwk);
/* Writes the private JWK to path atomically with mode 0600. */
sg_err sg_skmc_key_save(const char *path, const char *priv_jwk, char *err, size_t errlen);
/* Reads it back; refuses a file readable by group or others. *priv_jwk: sg_skmc_secret_free. */
sg_err sg_skmc_key_load(const char *path, char **priv_jwk, char *err, size_t errlen);
/* The public half {kty,crv,x,y,kid,use:"enc"} (new reference) or NULL. */
json_t *sg_skmc_key_public(const char *priv_jwk);
/* Wipes and frees a secret string from this module (NULL is fine). */
void sg_skmc_secret_free(char *s);

/* ---- opening responses (no network) ----------------------------------------------------- */

/* Decrypts every keyInfo of a SEAL KM Response (KM-UU) with the private JWK and checks that
 * each decrypted record names the payloadId, version and valServiceId of its envelope (no
 * swapping). *records (new reference) is an array of records with "key" (base64url): wipe with
 * sg_skmc_records_free. SG_ERR_DENIED when one does not decrypt with this key. */
sg_err sg_skmc_open_response(const char *priv_jwk, const json_t *response, json_t **records,
                             char *err, size_t errlen);
/* Same for the keyInfo of a ValKeyInfo (ss-kir): one JWE holding {"skmsId","keyRecords"}. */
sg_err sg_skmc_open_key_info(const char *priv_jwk, const json_t *val_key_info, json_t **records,
                             char *err, size_t errlen);
/* Wipes the "key" members and drops the array. */
void sg_skmc_records_free(json_t *records);

/* ---- UE over KM-UU ---------------------------------------------------------------------- */

struct sg_skmc_ue {
	const char *base_url;     /* the KM-UU (SEAL-UU) origin, e.g. https://localhost:9443 */
	const char *ca;           /* trust anchors for its certificate (PEM file) */
	const char *crl;          /* CRLs checked for its chain (T5); NULL: none */
	const char *access_token; /* the SIM-C's access token with seal:km */
	long timeout_ms;          /* 0 = 30000 */
};

/* Registers the public half of priv_jwk (skmc_uri may be NULL). Another key registered for
 * this client (or another skmcUri) is replaced only by the holder of the registered key (R2
 * key continuity): prev_jwk, the key registered until now (NULL: priv_jwk itself, e.g. a new
 * skmcUri), opens the SKM-S's challenge, and its proof goes along. Registering the key that is
 * registered already needs nothing (so a replacement whose answer was lost can be finished).
 * *resp (may be NULL) gets the answer {kid, skmcUri, registeredAt}. A refusal is SG_ERR_DENIED
 * with "STATUS CAUSE: detail" in err (409 SKMC_KEY_CONFLICT, or "the registered SKM-C key is
 * not the one kept here": the key was lost, the operator's `sealguard key forget` clears it);
 * the transport's failures keep their codes (the key may have been registered). Key material
 * is parsed by jansson here: call sg_json_wipe_on_free() (base/json.h) at the start of the
 * program so that its freed buffers are wiped. */
sg_err sg_skmc_ue_register(const struct sg_skmc_ue *c, const char *priv_jwk, const char *prev_jwk,
                           const char *skmc_uri, json_t **resp, char *err, size_t errlen);
/* SEAL KM Request for the VAL service: ids (n of them) or, when n is 0, all current keys of
 * the user. *response (may be NULL) gets the SEAL KM Response as received (JWEs only);
 * *records (may be NULL) the decrypted records (sg_skmc_records_free). */
sg_err sg_skmc_ue_request(const struct sg_skmc_ue *c, const char *priv_jwk, const char *val_service,
                          const char *const *ids, size_t n, json_t **response, json_t **records,
                          char *err, size_t errlen);

/* A member's group key request (POST /km/v1/group-key-requests {"valGroupId"}, K5): the
 * current group key of the VAL group. *response (may be NULL) as received; *records (may be
 * NULL) the decrypted records {payloadId, version, valGroupId, validFrom, key}, each checked
 * against its envelope (sg_skmc_records_free). Not a member / no such group: SG_ERR_DENIED. */
sg_err sg_skmc_ue_group_request(const struct sg_skmc_ue *c, const char *priv_jwk,
                                const char *val_group, json_t **response, json_t **records,
                                char *err, size_t errlen);

/* ---- VAL server over KM-S --------------------------------------------------------------- */

/* base_url: the KM-S (SEAL-S) origin, e.g. https://localhost:9444. v must ask for a token
 * with audience sealguard:km (scope seal:km, and seal:kp to provision or revoke). */
sg_err sg_skmc_vs_register(struct sg_valsrv *v, const char *base_url, const char *priv_jwk,
                           const char *prev_jwk, const char *skmc_uri, json_t **resp, char *err,
                           size_t errlen);
/* ss-kpp POST /request with a VALKeyPpReq; *resp (may be NULL) gets the VALKeyPpResp. */
sg_err sg_skmc_vs_provision(struct sg_valsrv *v, const char *base_url, const json_t *req,
                            json_t **resp, char *err, size_t errlen);
/* ss-kir GET /key-records; target (may be NULL) a ValTargetUe. *info (may be NULL) gets the
 * ValKeyInfo, *records (may be NULL) its decrypted records (sg_skmc_records_free). */
sg_err sg_skmc_vs_info(struct sg_valsrv *v, const char *base_url, const char *priv_jwk,
                       const char *val_service, const json_t *target, json_t **info,
                       json_t **records, char *err, size_t errlen);
/* Revokes every version of a key (DELETE /km/v1/keys/{valServiceId}/{payloadId}). */
sg_err sg_skmc_vs_revoke(struct sg_valsrv *v, const char *base_url, const char *val_service,
                         const char *payload_id, char *err, size_t errlen);

#endif
