/* km/group.h (private to km/): K5, the key management server's view of VAL group membership
 * (TS 33.434 §5.3 group keys; TS 23.434 §10.3 group management, SEAL-X1 between the group
 * management server and the key management server). The KM server never calls gm/ code: one
 * thread reads the group documents from the group management server over SEAL-E (mutual TLS,
 * this server's own certificate; the read-only ss-gm route gm/ serves to SEAL-server
 * principals there) and publishes an immutable snapshot, per valGroupId, of the group's VAL
 * services, its members' VAL user ids and a hash of that member list. A group key version is
 * bound to that hash: when it changes, the key is rotated (km/server.c). Event loops only read
 * the published snapshot; they never wait on the network. docs/km-protocol.md. */
#ifndef SG_KM_GROUP_H
#define SG_KM_GROUP_H

#include "base/err.h"
#include "tls/tls.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Group keys live in km_keys under this reserved VAL service id (never a registered one: the
 * ss-kpp, ss-kir, KM-UU and revocation routes refuse it), key id km_group_key_id(valGroupId),
 * target_kind "group", target = valGroupId, skmc_uri = KM_GROUP_MEMBERS_URN + member hash. */
#define KM_GROUP_NS          "sealguard:val-group"
#define KM_GROUP_TGT_KIND    "group"
#define KM_GROUP_MEMBERS_URN "urn:sealguard:km:group-members:sha256:"
#define KM_GROUP_KEY_LEN     32 /* a group master key: 256 random bits drawn by the SKM-S */

struct km_group {
	char *id;    /* valGroupId */
	char **svcs; /* valServiceIds, sorted */
	size_t nsvcs;
	char **uids; /* members' valUserIds, sorted, unique */
	size_t nuids;
	char hash[65]; /* hex SHA-256 of the canonical member list (km_group_hash) */
};

struct km_groups {
	atomic_int refs;
	struct km_group *v; /* by id (strcmp) */
	size_t n;
};

/* Parses a RetrieveValGroupDocs answer (a JSON array of VALGroupDocument) into a snapshot.
 * A valGroupId held by more than one document is left out (ambiguous membership: nobody gets
 * its key) and logged. -1 when the text is not an array of objects. */
int km_groups_parse(const char *json, size_t len, struct km_groups **out);
void km_groups_put(struct km_groups *s);
const struct km_group *km_groups_find(const struct km_groups *s, const char *id);
/* 1 when g has a member whose valUserId is uid_of(ctx, svc) for one of g's VAL services. */
int km_group_is_member(const struct km_group *g, const char *(*uid_of)(void *, const char *),
                       void *ctx);
/* The key id of a group's key: "grp-" + 32 hex digits of SHA-256(valGroupId) (RFC 3986
 * unreserved, fixed length whatever the valGroupId). */
void km_group_key_id(const char *val_group_id, char out[40]);

/* ---- the membership reader (a thread) --------------------------------------------------- */

struct km_gm_reader;
/* Called on the reader's thread after a new snapshot was published, with the groups whose
 * member hash is new or changed since the previous snapshot (the first snapshot: all), and
 * how many groups of the previous snapshot are gone from it (the first snapshot: 1, as groups
 * may have gone while nobody read them). */
typedef void (*km_gm_changed_fn)(void *arg, const struct km_groups *s, const size_t *changed,
                                 size_t n, size_t gone);
/* gm_url: https://host:port of the group management server's SEAL-E; tls: mode mutual with
 * this server's certificate, key and trust anchors (copied); max_bytes: the largest membership
 * answer read (larger: the fetch fails, the previous snapshot ages). Nothing is fetched before
 * km_gm_reader_start(). */
sg_err km_gm_reader_new(const char *gm_url, const struct sg_tls_conf *tls, unsigned poll_ms,
                        size_t max_bytes, km_gm_changed_fn cb, void *cb_arg,
                        struct km_gm_reader **out, char *err, size_t errlen);
sg_err km_gm_reader_start(struct km_gm_reader *g, char *err, size_t errlen);
void km_gm_reader_free(struct km_gm_reader *g);
/* The current snapshot (a reference: km_groups_put), or NULL when none was fetched yet or the
 * last successful fetch is older than km_gm_reader_stale_ms() (fail closed: a removed member
 * must not keep getting keys from a stale list). Any thread. */
struct km_groups *km_gm_reader_get(struct km_gm_reader *g);
unsigned km_gm_reader_stale_ms(const struct km_gm_reader *g);
/* Asks the thread to fetch now (e.g. a request named a group the snapshot lacks). */
void km_gm_reader_poke(struct km_gm_reader *g);

#endif
