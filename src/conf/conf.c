/* conf/conf.c: loads the YAML configuration onto struct sg_conf.
 *
 * Two passes over the same text, driven by one schema:
 *  1. libyaml builds a node tree; a walk of that tree against the libcyaml schema reports
 *     syntax errors, unknown keys, missing keys and wrong value types with file:line (libcyaml's
 *     own messages carry no line numbers);
 *  2. libcyaml maps the (now known good) document onto the loaded-form structs below, which
 *     are copied into struct sg_conf. Semantic checks then look up the line of the offending
 *     value in the node tree by its path ("reference_points[1].tls.mode"). */
#include "conf/conf.h"

#include "base/file.h"

#include <cyaml/cyaml.h>
#include <yaml.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONF_MAX_BYTES (1024 * 1024)

/* --- the loaded form (what libcyaml fills) --- */

struct y_tls {
	char *mode, *cert, *key, *ca, *crl, *psk_file;
	char *min_version, *max_version, *ciphersuites, *ciphers, *groups, *sigalgs;
};

struct y_limits {
	uint64_t *max_header_bytes, *max_body_bytes, *max_connections, *handshake_timeout_ms,
	    *header_timeout_ms, *body_timeout_ms, *idle_timeout_ms, *h2_max_streams,
	    *max_handshakes_per_address, *requests_per_second, *request_burst,
	    *requests_per_second_per_identity, *request_burst_per_identity, *handshakes_per_second,
	    *handshake_burst;
};

struct y_refpoint {
	char *name, *bind;
	struct y_tls *tls;
	char *auth;
	char **services;
	unsigned services_count;
	char **allowed_identities;
	unsigned allowed_identities_count;
	struct y_limits *limits;
};

struct y_store {
	char *driver, *path, *url;
};

struct y_audit {
	uint32_t *retention_days, *max_rows;
};

struct y_admin {
	char *bind;
};

struct y_idm {
	char *issuer;
	uint32_t *access_token_ttl_s, *id_token_ttl_s, *refresh_token_ttl_s, *code_ttl_s,
	    *scrypt_ln;
};

struct y_resource {
	char *idm_url;
	char *client_cert, *client_key, *ca, *crl;
	uint32_t *revocation_poll_ms, *jwks_min_refresh_ms, *token_cache_entries;
};

struct y_gm {
	uint32_t *max_documents_per_server, *max_bytes_per_server, *max_members;
};

struct y_km {
	char *gm_url;
	uint32_t *gm_max_mib, *max_keys_per_service, *max_keys_per_target;
};

struct y_sdd {
	char *data_bind;
	char *data_advertise;
	uint32_t *flow_lifetime_s;
	uint32_t *channel_stall_s;
	uint32_t *subscription_lifetime_s;
	uint32_t *user_output_mib;
	uint32_t *max_subscriptions;
	uint32_t *max_subscriptions_per_server;
	uint32_t *max_channels;
	uint32_t *max_channels_per_user;
	uint32_t *max_unauthenticated_per_address;
	uint32_t *channels_per_second_per_address;
	char **peers;
	unsigned peers_count;
};

struct y_conf {
	char *state_dir;
	uint32_t *workers;
	char *log_level;
	bool *access_log;
	struct y_store *store;
	char *pki_dir;
	struct y_admin *admin;
	char **roles;
	unsigned roles_count;
	struct y_refpoint *reference_points;
	unsigned reference_points_count;
	struct y_idm *idm;
	struct y_resource *resource;
	struct y_gm *gm;
	struct y_km *km;
	struct y_sdd *sdd;
	struct y_audit *audit;
};

/* --- the schema --- */

#define OPT CYAML_FLAG_OPTIONAL
#define STR(key, flags, type, member)                                                              \
	CYAML_FIELD_STRING_PTR(key, flags, type, member, 0, CYAML_UNLIMITED)

static const cyaml_schema_value_t str_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};

static const cyaml_schema_field_t tls_fields[] = {
    STR("mode", CYAML_FLAG_DEFAULT, struct y_tls, mode),
    STR("cert", OPT, struct y_tls, cert),
    STR("key", OPT, struct y_tls, key),
    STR("ca", OPT, struct y_tls, ca),
    STR("crl", OPT, struct y_tls, crl),
    STR("psk_file", OPT, struct y_tls, psk_file),
    STR("min_version", OPT, struct y_tls, min_version),
    STR("max_version", OPT, struct y_tls, max_version),
    STR("ciphersuites", OPT, struct y_tls, ciphersuites),
    STR("ciphers", OPT, struct y_tls, ciphers),
    STR("groups", OPT, struct y_tls, groups),
    STR("sigalgs", OPT, struct y_tls, sigalgs),
    CYAML_FIELD_END,
};

#define LIM(key) CYAML_FIELD_UINT_PTR(#key, OPT, struct y_limits, key)
static const cyaml_schema_field_t limits_fields[] = {
    LIM(max_header_bytes),
    LIM(max_body_bytes),
    LIM(max_connections),
    LIM(handshake_timeout_ms),
    LIM(header_timeout_ms),
    LIM(body_timeout_ms),
    LIM(idle_timeout_ms),
    LIM(h2_max_streams),
    LIM(max_handshakes_per_address),
    LIM(requests_per_second),
    LIM(request_burst),
    LIM(requests_per_second_per_identity),
    LIM(request_burst_per_identity),
    LIM(handshakes_per_second),
    LIM(handshake_burst),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t refpoint_fields[] = {
    STR("name", CYAML_FLAG_DEFAULT, struct y_refpoint, name),
    STR("bind", CYAML_FLAG_DEFAULT, struct y_refpoint, bind),
    CYAML_FIELD_MAPPING_PTR("tls", CYAML_FLAG_POINTER, struct y_refpoint, tls, tls_fields),
    STR("auth", CYAML_FLAG_DEFAULT, struct y_refpoint, auth),
    CYAML_FIELD_SEQUENCE("services", CYAML_FLAG_POINTER, struct y_refpoint, services, &str_entry, 1,
                         CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("allowed_identities", CYAML_FLAG_POINTER | OPT, struct y_refpoint,
                         allowed_identities, &str_entry, 0, CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING_PTR("limits", CYAML_FLAG_POINTER | OPT, struct y_refpoint, limits,
                            limits_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t refpoint_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct y_refpoint, refpoint_fields),
};

static const cyaml_schema_field_t store_fields[] = {
    STR("driver", OPT, struct y_store, driver),
    STR("path", OPT, struct y_store, path),
    STR("url", OPT, struct y_store, url),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t audit_fields[] = {
    CYAML_FIELD_UINT_PTR("retention_days", OPT, struct y_audit, retention_days),
    CYAML_FIELD_UINT_PTR("max_rows", OPT, struct y_audit, max_rows),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t admin_fields[] = {
    STR("bind", OPT, struct y_admin, bind),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t idm_fields[] = {
    STR("issuer", OPT, struct y_idm, issuer),
    CYAML_FIELD_UINT_PTR("access_token_ttl_s", OPT, struct y_idm, access_token_ttl_s),
    CYAML_FIELD_UINT_PTR("id_token_ttl_s", OPT, struct y_idm, id_token_ttl_s),
    CYAML_FIELD_UINT_PTR("refresh_token_ttl_s", OPT, struct y_idm, refresh_token_ttl_s),
    CYAML_FIELD_UINT_PTR("code_ttl_s", OPT, struct y_idm, code_ttl_s),
    CYAML_FIELD_UINT_PTR("scrypt_ln", OPT, struct y_idm, scrypt_ln),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t resource_fields[] = {
    STR("idm_url", OPT, struct y_resource, idm_url),
    STR("client_cert", OPT, struct y_resource, client_cert),
    STR("client_key", OPT, struct y_resource, client_key),
    STR("ca", OPT, struct y_resource, ca),
    STR("crl", OPT, struct y_resource, crl),
    CYAML_FIELD_UINT_PTR("revocation_poll_ms", OPT, struct y_resource, revocation_poll_ms),
    CYAML_FIELD_UINT_PTR("jwks_min_refresh_ms", OPT, struct y_resource, jwks_min_refresh_ms),
    CYAML_FIELD_UINT_PTR("token_cache_entries", OPT, struct y_resource, token_cache_entries),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t gm_fields[] = {
    CYAML_FIELD_UINT_PTR("max_documents_per_server", OPT, struct y_gm, max_documents_per_server),
    CYAML_FIELD_UINT_PTR("max_bytes_per_server", OPT, struct y_gm, max_bytes_per_server),
    CYAML_FIELD_UINT_PTR("max_members", OPT, struct y_gm, max_members),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t km_fields[] = {
    STR("gm_url", OPT, struct y_km, gm_url),
    CYAML_FIELD_UINT_PTR("gm_max_mib", OPT, struct y_km, gm_max_mib),
    CYAML_FIELD_UINT_PTR("max_keys_per_service", OPT, struct y_km, max_keys_per_service),
    CYAML_FIELD_UINT_PTR("max_keys_per_target", OPT, struct y_km, max_keys_per_target),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t sdd_fields[] = {
    STR("data_bind", OPT, struct y_sdd, data_bind),
    STR("data_advertise", OPT, struct y_sdd, data_advertise),
    CYAML_FIELD_UINT_PTR("flow_lifetime_s", OPT, struct y_sdd, flow_lifetime_s),
    CYAML_FIELD_UINT_PTR("channel_stall_s", OPT, struct y_sdd, channel_stall_s),
    CYAML_FIELD_UINT_PTR("subscription_lifetime_s", OPT, struct y_sdd, subscription_lifetime_s),
    CYAML_FIELD_UINT_PTR("user_output_mib", OPT, struct y_sdd, user_output_mib),
    CYAML_FIELD_UINT_PTR("max_subscriptions", OPT, struct y_sdd, max_subscriptions),
    CYAML_FIELD_UINT_PTR("max_subscriptions_per_server", OPT, struct y_sdd,
                         max_subscriptions_per_server),
    CYAML_FIELD_UINT_PTR("max_channels", OPT, struct y_sdd, max_channels),
    CYAML_FIELD_UINT_PTR("max_channels_per_user", OPT, struct y_sdd, max_channels_per_user),
    CYAML_FIELD_UINT_PTR("max_unauthenticated_per_address", OPT, struct y_sdd,
                         max_unauthenticated_per_address),
    CYAML_FIELD_UINT_PTR("channels_per_second_per_address", OPT, struct y_sdd,
                         channels_per_second_per_address),
    CYAML_FIELD_SEQUENCE("peers", CYAML_FLAG_POINTER | OPT, struct y_sdd, peers, &str_entry, 0,
                         CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t top_fields[] = {
    STR("state_dir", OPT, struct y_conf, state_dir),
    CYAML_FIELD_UINT_PTR("workers", OPT, struct y_conf, workers),
    STR("log_level", OPT, struct y_conf, log_level),
    CYAML_FIELD_BOOL_PTR("access_log", OPT, struct y_conf, access_log),
    CYAML_FIELD_MAPPING_PTR("store", CYAML_FLAG_POINTER | OPT, struct y_conf, store, store_fields),
    STR("pki_dir", OPT, struct y_conf, pki_dir),
    CYAML_FIELD_MAPPING_PTR("admin", CYAML_FLAG_POINTER | OPT, struct y_conf, admin, admin_fields),
    CYAML_FIELD_SEQUENCE("roles", CYAML_FLAG_POINTER | OPT, struct y_conf, roles, &str_entry, 0,
                         CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("reference_points", CYAML_FLAG_POINTER, struct y_conf, reference_points,
                         &refpoint_entry, 1, CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING_PTR("idm", CYAML_FLAG_POINTER | OPT, struct y_conf, idm, idm_fields),
    CYAML_FIELD_MAPPING_PTR("resource", CYAML_FLAG_POINTER | OPT, struct y_conf, resource,
                            resource_fields),
    CYAML_FIELD_MAPPING_PTR("gm", CYAML_FLAG_POINTER | OPT, struct y_conf, gm, gm_fields),
    CYAML_FIELD_MAPPING_PTR("km", CYAML_FLAG_POINTER | OPT, struct y_conf, km, km_fields),
    CYAML_FIELD_MAPPING_PTR("sdd", CYAML_FLAG_POINTER | OPT, struct y_conf, sdd, sdd_fields),
    CYAML_FIELD_MAPPING_PTR("audit", CYAML_FLAG_POINTER | OPT, struct y_conf, audit, audit_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t top_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct y_conf, top_fields),
};

/* --- error reporting --- */

struct ctx {
	const char *name; /* file name for messages */
	yaml_document_t doc;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 4, 0))) static sg_err
failv(struct ctx *x, unsigned long line, const char *path, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (path && *path)
		return sg_fail(x->err, x->errlen, SG_ERR_CONFIG, "%s:%lu: %s: %s", x->name, line,
		               path, msg);
	return sg_fail(x->err, x->errlen, SG_ERR_CONFIG, "%s:%lu: %s", x->name, line, msg);
}

__attribute__((format(printf, 4, 5))) static sg_err fail_at(struct ctx *x, const yaml_node_t *n,
                                                            const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sg_err e = failv(x, n ? (unsigned long)n->start_mark.line + 1 : 1, path, fmt, ap);
	va_end(ap);
	return e;
}

/* The node whose line best names path ("a.b[2].c"): the key of the last mapping step (a block
 * mapping value starts on the line after its key), or the deepest node that exists. */
static yaml_node_t *node_at(struct ctx *x, const char *path)
{
	yaml_node_t *n = yaml_document_get_root_node(&x->doc), *at = n;
	const char *p = path;
	while (n && *p) {
		if (*p == '.') {
			p++;
			continue;
		}
		if (*p == '[') {
			char *end;
			unsigned long i = strtoul(p + 1, &end, 10);
			p = *end == ']' ? end + 1 : end;
			if (n->type != YAML_SEQUENCE_NODE ||
			    i >= (unsigned long)(n->data.sequence.items.top -
			                         n->data.sequence.items.start))
				return at;
			n = at = yaml_document_get_node(&x->doc, n->data.sequence.items.start[i]);
			continue;
		}
		size_t len = strcspn(p, ".[");
		if (n->type != YAML_MAPPING_NODE)
			return at;
		yaml_node_t *next = NULL;
		for (yaml_node_pair_t *pr = n->data.mapping.pairs.start;
		     pr < n->data.mapping.pairs.top; pr++) {
			yaml_node_t *k = yaml_document_get_node(&x->doc, pr->key);
			if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == len &&
			    memcmp(k->data.scalar.value, p, len) == 0) {
				next = yaml_document_get_node(&x->doc, pr->value);
				at = k;
				break;
			}
		}
		if (!next)
			return at;
		n = next;
		p += len;
	}
	return at;
}

/* Fails with the line of the node at path (the format's path argument is printf'd first). */
__attribute__((format(printf, 3, 4))) static sg_err fail_path(struct ctx *x, const char *path,
                                                              const char *fmt, ...)
{
	yaml_node_t *n = node_at(x, path);
	va_list ap;
	va_start(ap, fmt);
	sg_err e = failv(x, n ? (unsigned long)n->start_mark.line + 1 : 1, path, fmt, ap);
	va_end(ap);
	return e;
}

/* --- pass 1: structure, against the cyaml schema --- */

static const char *node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a scalar";
	}
}

static sg_err walk(struct ctx *x, yaml_node_t *n, const cyaml_schema_value_t *s, char *path,
                   size_t pathlen);

static int scalar_is_uint(const yaml_node_t *n, uint32_t size)
{
	const char *v = (const char *)n->data.scalar.value;
	if (!isdigit((unsigned char)v[0]))
		return 0;
	errno = 0;
	char *end;
	unsigned long long u = strtoull(v, &end, 10);
	if (errno || *end)
		return 0;
	return size >= 8 || u < (1ULL << (size * 8));
}

static int scalar_is_bool(const yaml_node_t *n)
{
	static const char *const ok[] = {"true", "false", "yes", "no", "on", "off", "1", "0"};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (strcasecmp((const char *)n->data.scalar.value, ok[i]) == 0)
			return 1;
	return 0;
}

static sg_err walk_mapping(struct ctx *x, yaml_node_t *n, const cyaml_schema_field_t *fields,
                           char *path, size_t pathlen)
{
	size_t base = strlen(path);
	unsigned nfields = 0;
	while (fields[nfields].key)
		nfields++;
	unsigned char seen[32] = {0};
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = yaml_document_get_node(&x->doc, pr->key);
		yaml_node_t *v = yaml_document_get_node(&x->doc, pr->value);
		if (!k || k->type != YAML_SCALAR_NODE)
			return fail_at(x, k, path, "keys must be plain names");
		const char *key = (const char *)k->data.scalar.value;
		snprintf(path + base, pathlen - base, "%s%s", base ? "." : "", key);
		unsigned i = 0;
		while (i < nfields && strcmp(fields[i].key, key) != 0)
			i++;
		if (i == nfields) {
			char known[512] = "";
			for (unsigned j = 0; j < nfields; j++)
				snprintf(known + strlen(known), sizeof known - strlen(known),
				         "%s%s", j ? ", " : "", fields[j].key);
			return fail_at(x, k, path, "unknown key (expected one of %s)", known);
		}
		if (seen[i])
			return fail_at(x, k, path, "duplicate key");
		seen[i] = 1;
		sg_err e = walk(x, v, &fields[i].value, path, pathlen);
		if (e != SG_OK)
			return e;
	}
	path[base] = '\0';
	for (unsigned i = 0; i < nfields; i++)
		if (!seen[i] && !(fields[i].value.flags & CYAML_FLAG_OPTIONAL))
			return fail_at(x, n, path, "missing required key '%s'", fields[i].key);
	return SG_OK;
}

static sg_err walk(struct ctx *x, yaml_node_t *n, const cyaml_schema_value_t *s, char *path,
                   size_t pathlen)
{
	switch (s->type) {
	case CYAML_MAPPING:
		if (n->type != YAML_MAPPING_NODE)
			return fail_at(x, n, path, "expected a mapping, got %s", node_kind(n));
		return walk_mapping(x, n, s->mapping.fields, path, pathlen);
	case CYAML_SEQUENCE: {
		if (n->type != YAML_SEQUENCE_NODE)
			return fail_at(x, n, path, "expected a list, got %s", node_kind(n));
		size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
		if (count < s->sequence.min)
			return fail_at(x, n, path, "needs at least %u entr%s", s->sequence.min,
			               s->sequence.min == 1 ? "y" : "ies");
		size_t base = strlen(path);
		for (size_t i = 0; i < count; i++) {
			snprintf(path + base, pathlen - base, "[%zu]", i);
			yaml_node_t *item =
			    yaml_document_get_node(&x->doc, n->data.sequence.items.start[i]);
			sg_err e = walk(x, item, s->sequence.entry, path, pathlen);
			if (e != SG_OK)
				return e;
		}
		path[base] = '\0';
		return SG_OK;
	}
	case CYAML_STRING:
		if (n->type != YAML_SCALAR_NODE)
			return fail_at(x, n, path, "expected a string, got %s", node_kind(n));
		return SG_OK;
	case CYAML_UINT:
		if (n->type != YAML_SCALAR_NODE || !scalar_is_uint(n, s->data_size))
			return fail_at(x, n, path, "expected a non-negative integer (at most %llu)",
			               s->data_size >= 8 ? (unsigned long long)UINT64_MAX
			                                 : (1ULL << (s->data_size * 8)) - 1);
		return SG_OK;
	case CYAML_BOOL:
		if (n->type != YAML_SCALAR_NODE || !scalar_is_bool(n))
			return fail_at(x, n, path, "expected true or false");
		return SG_OK;
	default:
		return fail_at(x, n, path, "unsupported schema type");
	}
}

/* --- semantic checks --- */

static const char *const ROLES[] = {"idm", "gm", "km", "sdd"};
#define N_ROLES (sizeof ROLES / sizeof ROLES[0])

static int one_of(const char *v, const char *const *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v, set[i]) == 0)
			return 1;
	return 0;
}

static void join(char *out, size_t outlen, const char *const *set, size_t n)
{
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		snprintf(out + strlen(out), outlen - strlen(out), "%s%s", i ? ", " : "", set[i]);
}

/* "host:port", "[v6]:port"; host non-empty, port 0..65535. Returns NULL or the problem. */
static const char *bind_problem(const char *b)
{
	const char *colon;
	if (b[0] == '[') {
		const char *close = strchr(b, ']');
		if (!close || close == b + 1)
			return "an IPv6 address goes in brackets: [::1]:9443";
		if (close[1] != ':')
			return "expected host:port";
		colon = close + 1;
	} else {
		colon = strrchr(b, ':');
		if (!colon || colon == b)
			return "expected host:port";
		if (memchr(b, ':', (size_t)(colon - b)))
			return "an IPv6 address goes in brackets: [::1]:9443";
	}
	const char *p = colon + 1;
	if (!*p || strlen(p) > 5)
		return "the port must be a number from 0 to 65535";
	for (const char *q = p; *q; q++)
		if (!isdigit((unsigned char)*q))
			return "the port must be a number from 0 to 65535";
	if (atol(p) > 65535)
		return "the port must be a number from 0 to 65535";
	return NULL;
}

static sg_err check_enum(struct ctx *x, const char *path, const char *v, const char *const *set,
                         size_t n)
{
	if (one_of(v, set, n))
		return SG_OK;
	char list[256];
	join(list, sizeof list, set, n);
	return fail_path(x, path, "'%s' is not one of %s", v, list);
}

static sg_err check_roles(struct ctx *x, const char *path, char **v, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char p[128];
		snprintf(p, sizeof p, "%s[%u]", path, i);
		sg_err e = check_enum(x, p, v[i], ROLES, N_ROLES);
		if (e != SG_OK)
			return e;
		for (unsigned j = 0; j < i; j++)
			if (strcmp(v[i], v[j]) == 0)
				return fail_path(x, p, "'%s' is listed twice", v[i]);
	}
	return SG_OK;
}

static sg_err check_refpoint(struct ctx *x, const struct y_conf *y, unsigned i)
{
	static const char *const modes[] = {"server-auth", "mutual", "psk"};
	static const char *const auths[] = {"none", "bearer", "mtls", "mtls+bearer"};
	static const char *const versions[] = {"TLS1.2", "TLS1.3"};
	const struct y_refpoint *r = &y->reference_points[i];
	char p[128];
	sg_err e;
#define P(...) (snprintf(p, sizeof p, __VA_ARGS__), p)
	if (!*r->name)
		return fail_path(x, P("reference_points[%u].name", i), "must not be empty");
	for (unsigned j = 0; j < i; j++)
		if (strcmp(y->reference_points[j].name, r->name) == 0)
			return fail_path(x, P("reference_points[%u].name", i),
			                 "'%s' is already used by reference_points[%u]", r->name,
			                 j);
	const char *bp = bind_problem(r->bind);
	if (bp)
		return fail_path(x, P("reference_points[%u].bind", i), "'%s': %s", r->bind, bp);
	if ((e = check_enum(x, P("reference_points[%u].tls.mode", i), r->tls->mode, modes, 3)))
		return e;
	if ((e = check_enum(x, P("reference_points[%u].auth", i), r->auth, auths, 4)))
		return e;
	if (r->tls->min_version && (e = check_enum(x, P("reference_points[%u].tls.min_version", i),
	                                           r->tls->min_version, versions, 2)))
		return e;
	if (r->tls->max_version && (e = check_enum(x, P("reference_points[%u].tls.max_version", i),
	                                           r->tls->max_version, versions, 2)))
		return e;
	/* R3/R4: certificate identities need the peer to present a certificate. */
	if (strncmp(r->auth, "mtls", 4) == 0 && strcmp(r->tls->mode, "mutual") != 0)
		return fail_path(x, P("reference_points[%u].auth", i),
		                 "'%s' needs tls.mode mutual (tls.mode is %s)", r->auth,
		                 r->tls->mode);
	if (strcmp(r->tls->mode, "psk") == 0 && (!r->tls->psk_file || !*r->tls->psk_file))
		return fail_path(x, P("reference_points[%u].tls", i), "mode psk needs psk_file");
	for (unsigned j = 0; j < r->services_count; j++) {
		if ((e = check_enum(x, P("reference_points[%u].services[%u]", i, j), r->services[j],
		                    ROLES, N_ROLES)))
			return e;
	}
	if (r->allowed_identities_count && strcmp(r->tls->mode, "mutual") != 0)
		return fail_path(x, P("reference_points[%u].allowed_identities", i),
		                 "needs tls.mode mutual (identities come from certificates)");
	if (r->limits) {
		static const char *const names[] = {
		    "max_header_bytes",     "max_body_bytes",    "max_connections",
		    "handshake_timeout_ms", "header_timeout_ms", "body_timeout_ms",
		    "idle_timeout_ms",      "h2_max_streams",    "max_handshakes_per_address"};
		uint64_t *const vals[] = {
		    r->limits->max_header_bytes,          r->limits->max_body_bytes,
		    r->limits->max_connections,           r->limits->handshake_timeout_ms,
		    r->limits->header_timeout_ms,         r->limits->body_timeout_ms,
		    r->limits->idle_timeout_ms,           r->limits->h2_max_streams,
		    r->limits->max_handshakes_per_address};
		for (unsigned j = 0; j < sizeof vals / sizeof vals[0]; j++) {
			uint64_t max = j < 2 ? SIZE_MAX : UINT_MAX;
			if (vals[j] && (*vals[j] == 0 || *vals[j] > max))
				return fail_path(x,
				                 P("reference_points[%u].limits.%s", i, names[j]),
				                 "must be from 1 to %llu", (unsigned long long)max);
		}
		/* G4 request and handshake rates: 0 turns a limit off; a microsecond per request
		 * at most */
		static const char *const rnames[] = {"requests_per_second",
		                                     "request_burst",
		                                     "requests_per_second_per_identity",
		                                     "request_burst_per_identity",
		                                     "handshakes_per_second",
		                                     "handshake_burst"};
		uint64_t *const rvals[] = {r->limits->requests_per_second,
		                           r->limits->request_burst,
		                           r->limits->requests_per_second_per_identity,
		                           r->limits->request_burst_per_identity,
		                           r->limits->handshakes_per_second,
		                           r->limits->handshake_burst};
		for (unsigned j = 0; j < sizeof rvals / sizeof rvals[0]; j++) {
			unsigned burst = j % 2; /* a burst of 0 means nothing */
			if (rvals[j] && (*rvals[j] > 1000000 || (burst && *rvals[j] == 0)))
				return fail_path(x,
				                 P("reference_points[%u].limits.%s", i, rnames[j]),
				                 burst ? "must be from 1 to 1000000"
				                       : "must be from 0 (no limit) to 1000000");
		}
	}
#undef P
	return SG_OK;
}

static sg_err check(struct ctx *x, const struct y_conf *y)
{
	static const char *const levels[] = {"debug", "info", "warn", "error"};
	static const char *const drivers[] = {"sqlite", "postgres"};
	sg_err e;
	if (y->state_dir && !*y->state_dir)
		return fail_path(x, "state_dir", "must not be empty");
	if (y->workers && *y->workers > 1024)
		return fail_path(x, "workers", "must be from 0 to 1024");
	if (y->log_level && (e = check_enum(x, "log_level", y->log_level, levels, 4)))
		return e;
	if (y->store && y->store->driver &&
	    (e = check_enum(x, "store.driver", y->store->driver, drivers, 2)))
		return e;
	if (y->store && y->store->driver && strcmp(y->store->driver, "postgres") == 0 &&
	    (!y->store->url || !*y->store->url))
		return fail_path(x, "store", "driver postgres needs url");
	if (y->admin && y->admin->bind && *y->admin->bind) {
		const char *bp = bind_problem(y->admin->bind);
		if (bp)
			return fail_path(x, "admin.bind", "'%s': %s", y->admin->bind, bp);
	}
	if ((e = check_roles(x, "roles", y->roles, y->roles_count)))
		return e;
	if (y->idm) {
		const struct y_idm *d = y->idm;
		if (d->issuer && strncmp(d->issuer, "https://", 8) != 0)
			return fail_path(x, "idm.issuer", "'%s' must be an https URL (I7)",
			                 d->issuer);
		if (d->access_token_ttl_s &&
		    (*d->access_token_ttl_s < 10 || *d->access_token_ttl_s > 86400))
			return fail_path(x, "idm.access_token_ttl_s", "must be from 10 to 86400");
		if (d->id_token_ttl_s && (*d->id_token_ttl_s < 10 || *d->id_token_ttl_s > 86400))
			return fail_path(x, "idm.id_token_ttl_s", "must be from 10 to 86400");
		if (d->code_ttl_s && (*d->code_ttl_s < 5 || *d->code_ttl_s > 600))
			return fail_path(x, "idm.code_ttl_s", "must be from 5 to 600");
		if (d->scrypt_ln && (*d->scrypt_ln < 10 || *d->scrypt_ln > 20))
			return fail_path(x, "idm.scrypt_ln", "must be from 10 to 20");
		unsigned at = d->access_token_ttl_s ? *d->access_token_ttl_s : 600;
		unsigned it = d->id_token_ttl_s ? *d->id_token_ttl_s : 3600;
		if (at >= it)
			return fail_path(x, "idm.access_token_ttl_s",
			                 "must be shorter than id_token_ttl_s (%u), as TS 33.434 "
			                 "requires",
			                 it);
	}
	if (y->resource && y->resource->idm_url &&
	    strncmp(y->resource->idm_url, "https://", 8) != 0)
		return fail_path(x, "resource.idm_url", "'%s' must be an https URL",
		                 y->resource->idm_url);
	if (y->km && y->km->gm_url && strncmp(y->km->gm_url, "https://", 8) != 0)
		return fail_path(x, "km.gm_url", "'%s' must be an https URL", y->km->gm_url);
	if (y->sdd && y->sdd->data_bind) {
		const char *bp = bind_problem(y->sdd->data_bind);
		if (bp)
			return fail_path(x, "sdd.data_bind", "'%s': %s", y->sdd->data_bind, bp);
		/* ddServerConnInfo names the data endpoint: a wildcard names none a client reaches
		 */
		if ((!strncmp(y->sdd->data_bind, "0.0.0.0:", 8) ||
		     !strncmp(y->sdd->data_bind, "[::]:", 5)) &&
		    !y->sdd->data_advertise)
			return fail_path(
			    x, "sdd.data_bind",
			    "'%s' listens on every address, which names none a client can "
			    "reach: set sdd.data_advertise to the host (and port) clients "
			    "connect to",
			    y->sdd->data_bind);
	}
	if (y->sdd && y->sdd->data_advertise) {
		const char *a = y->sdd->data_advertise;
		size_t n = strlen(a);
		int bad = n == 0 || n > 253 + 6;
		for (size_t i = 0; i < n && !bad; i++)
			bad = !isalnum((unsigned char)a[i]) && !strchr(".-:[]", a[i]);
		if (bad)
			return fail_path(
			    x, "sdd.data_advertise",
			    "'%s' must be a host name or address, with an optional :port", a);
	}
	if (y->audit && y->audit->retention_days && *y->audit->retention_days > 36500)
		return fail_path(x, "audit.retention_days", "must be from 0 (keep) to 36500");
	if (y->audit && y->audit->max_rows && *y->audit->max_rows && *y->audit->max_rows < 1000)
		return fail_path(x, "audit.max_rows", "must be 0 (no cap) or at least 1000");
		/* numbers with a range; G4: the SEALDD, group and key management limits */
#define SDD(f) (y->sdd ? y->sdd->f : NULL)
#define GM(f)  (y->gm ? y->gm->f : NULL)
#define KM(f)  (y->km ? y->km->f : NULL)
	const struct {
		const char *name;
		const uint32_t *v;
		uint32_t min, max;
	} rng[] = {
	    {"sdd.flow_lifetime_s", SDD(flow_lifetime_s), 60, 86400},
	    {"sdd.channel_stall_s", SDD(channel_stall_s), 1, 3600},
	    {"sdd.subscription_lifetime_s", SDD(subscription_lifetime_s), 60, 31536000},
	    {"sdd.user_output_mib", SDD(user_output_mib), 1, 4096},
	    {"sdd.max_subscriptions", SDD(max_subscriptions), 1, 1000000},
	    {"sdd.max_subscriptions_per_server", SDD(max_subscriptions_per_server), 1, 1000000},
	    {"sdd.max_channels", SDD(max_channels), 1, 1000000},
	    {"sdd.max_channels_per_user", SDD(max_channels_per_user), 1, 1000000},
	    {"sdd.max_unauthenticated_per_address", SDD(max_unauthenticated_per_address), 1,
	     1000000},
	    {"sdd.channels_per_second_per_address", SDD(channels_per_second_per_address), 1,
	     1000000},
	    {"gm.max_documents_per_server", GM(max_documents_per_server), 1, 1000000},
	    {"gm.max_bytes_per_server", GM(max_bytes_per_server), 4096, 1u << 30},
	    {"gm.max_members", GM(max_members), 1, 1000000},
	    {"km.gm_max_mib", KM(gm_max_mib), 1, 4096},
	    {"km.max_keys_per_service", KM(max_keys_per_service), 1, 10000000},
	    {"km.max_keys_per_target", KM(max_keys_per_target), 1, 100000},
	};
#undef SDD
#undef GM
#undef KM
	for (size_t i = 0; i < sizeof rng / sizeof rng[0]; i++)
		if (rng[i].v && (*rng[i].v < rng[i].min || *rng[i].v > rng[i].max))
			return fail_path(x, rng[i].name, "must be from %u to %u",
			                 (unsigned)rng[i].min, (unsigned)rng[i].max);
	/* SEALDD-E peers (TS 33.434 Rel-18 D3 / R4): certificate identities, as SANs are written */
	for (unsigned i = 0; y->sdd && i < y->sdd->peers_count; i++) {
		const char *v = y->sdd->peers[i];
		char p[64];
		snprintf(p, sizeof p, "sdd.peers[%u]", i);
		if (!((!strncmp(v, "DNS:", 4) || !strncmp(v, "URI:", 4)) && v[4]) &&
		    !(!strncmp(v, "IP:", 3) && v[3]))
			return fail_path(x, p,
			                 "'%s' is not a certificate identity: DNS:name, URI:uri or "
			                 "IP:address",
			                 v);
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(v, y->sdd->peers[j]))
				return fail_path(x, p, "'%s' is listed twice", v);
	}
	for (unsigned i = 0; i < y->reference_points_count; i++)
		if ((e = check_refpoint(x, y, i)))
			return e;
	return SG_OK;
}

/* --- copy into struct sg_conf --- */

/* strdup that maps NULL and "" (an empty YAML value) to NULL. */
static int dup_opt(char **out, const char *s)
{
	*out = NULL;
	if (!s || !*s)
		return 1;
	return (*out = strdup(s)) != NULL;
}

static int dup_list(char ***out, unsigned *n, char **v, unsigned count)
{
	*out = calloc(count ? count : 1, sizeof **out);
	if (!*out)
		return 0;
	for (*n = 0; *n < count; (*n)++)
		if (!((*out)[*n] = strdup(v[*n])))
			return 0;
	return 1;
}

static int copy_refpoint(struct sg_conf_refpoint *d, const struct y_refpoint *s)
{
	const struct y_tls *t = s->tls;
	if (!(d->name = strdup(s->name)) || !(d->bind = strdup(s->bind)) ||
	    !(d->tls_mode = strdup(t->mode)) || !(d->auth = strdup(s->auth)))
		return 0;
	if (!dup_opt(&d->cert, t->cert) || !dup_opt(&d->key, t->key) || !dup_opt(&d->ca, t->ca) ||
	    !dup_opt(&d->crl, t->crl) || !dup_opt(&d->psk_file, t->psk_file) ||
	    !dup_opt(&d->min_version, t->min_version) ||
	    !dup_opt(&d->max_version, t->max_version) ||
	    !dup_opt(&d->ciphersuites, t->ciphersuites) || !dup_opt(&d->ciphers, t->ciphers) ||
	    !dup_opt(&d->groups, t->groups) || !dup_opt(&d->sigalgs, t->sigalgs))
		return 0;
	if (!dup_list(&d->services, &d->n_services, s->services, s->services_count) ||
	    !dup_list(&d->allowed_identities, &d->n_allowed_identities, s->allowed_identities,
	              s->allowed_identities_count))
		return 0;
	sg_limits_default(&d->limits);
	const struct y_limits *l = s->limits;
	if (l) {
		if (l->max_header_bytes)
			d->limits.max_header_bytes = (size_t)*l->max_header_bytes;
		if (l->max_body_bytes)
			d->limits.max_body_bytes = (size_t)*l->max_body_bytes;
		if (l->max_connections)
			d->limits.max_connections = (unsigned)*l->max_connections;
		if (l->handshake_timeout_ms)
			d->limits.handshake_timeout_ms = (unsigned)*l->handshake_timeout_ms;
		if (l->header_timeout_ms)
			d->limits.header_timeout_ms = (unsigned)*l->header_timeout_ms;
		if (l->body_timeout_ms)
			d->limits.body_timeout_ms = (unsigned)*l->body_timeout_ms;
		if (l->idle_timeout_ms)
			d->limits.idle_timeout_ms = (unsigned)*l->idle_timeout_ms;
		if (l->h2_max_streams)
			d->limits.h2_max_streams = (unsigned)*l->h2_max_streams;
		if (l->max_handshakes_per_address)
			d->limits.max_handshakes_per_address =
			    (unsigned)*l->max_handshakes_per_address;
		if (l->requests_per_second) {
			d->limits.requests_per_second = (unsigned)*l->requests_per_second;
			d->limits.request_burst = 2 * d->limits.requests_per_second;
		}
		if (l->request_burst)
			d->limits.request_burst = (unsigned)*l->request_burst;
		if (l->requests_per_second_per_identity) {
			d->limits.requests_per_second_per_identity =
			    (unsigned)*l->requests_per_second_per_identity;
			d->limits.request_burst_per_identity =
			    2 * d->limits.requests_per_second_per_identity;
		}
		if (l->request_burst_per_identity)
			d->limits.request_burst_per_identity =
			    (unsigned)*l->request_burst_per_identity;
		if (l->handshakes_per_second) {
			d->limits.handshakes_per_second = (unsigned)*l->handshakes_per_second;
			d->limits.handshake_burst = 2 * d->limits.handshakes_per_second;
		}
		if (l->handshake_burst)
			d->limits.handshake_burst = (unsigned)*l->handshake_burst;
	}
	return 1;
}

static int copy_conf(struct sg_conf *c, const struct y_conf *y)
{
	if (!(c->state_dir = strdup(y->state_dir && *y->state_dir ? y->state_dir : "./var")))
		return 0;
	c->workers = y->workers ? *y->workers : 0;
	if (!(c->log_level = strdup(y->log_level ? y->log_level : "info")))
		return 0;
	c->access_log = y->access_log ? *y->access_log : 1;
	const struct y_store *st = y->store;
	if (!(c->store_driver = strdup(st && st->driver ? st->driver : "sqlite")))
		return 0;
	if (!dup_opt(&c->store_path, st ? st->path : NULL) ||
	    !dup_opt(&c->store_url, st ? st->url : NULL) || !dup_opt(&c->pki_dir, y->pki_dir))
		return 0;
	/* admin.bind: "" disables the admin listener */
	const char *ab = y->admin && y->admin->bind ? y->admin->bind : "127.0.0.1:9090";
	if (!(c->admin_bind = strdup(ab)))
		return 0;
	if (y->roles) {
		if (!dup_list(&c->roles, &c->n_roles, y->roles, y->roles_count))
			return 0;
	} else if (!dup_list(&c->roles, &c->n_roles, (char **)ROLES, N_ROLES)) {
		return 0;
	}
	const struct y_idm *d = y->idm;
	if (!dup_opt(&c->idm.issuer, d ? d->issuer : NULL))
		return 0;
	c->idm.access_ttl_s = d && d->access_token_ttl_s ? *d->access_token_ttl_s : 600;
	c->idm.id_ttl_s = d && d->id_token_ttl_s ? *d->id_token_ttl_s : 3600;
	c->idm.refresh_ttl_s = d && d->refresh_token_ttl_s ? *d->refresh_token_ttl_s : 30 * 86400;
	c->idm.code_ttl_s = d && d->code_ttl_s ? *d->code_ttl_s : 60;
	c->idm.scrypt_ln = d && d->scrypt_ln ? *d->scrypt_ln : 14;
	const struct y_resource *rs = y->resource;
	if (!dup_opt(&c->resource.idm_url, rs ? rs->idm_url : NULL) ||
	    !dup_opt(&c->resource.client_cert, rs ? rs->client_cert : NULL) ||
	    !dup_opt(&c->resource.client_key, rs ? rs->client_key : NULL) ||
	    !dup_opt(&c->resource.ca, rs ? rs->ca : NULL) ||
	    !dup_opt(&c->resource.crl, rs ? rs->crl : NULL))
		return 0;
	c->resource.revocation_poll_ms =
	    rs && rs->revocation_poll_ms ? *rs->revocation_poll_ms : 2000;
	c->resource.jwks_min_refresh_ms =
	    rs && rs->jwks_min_refresh_ms ? *rs->jwks_min_refresh_ms : 10000;
	c->resource.token_cache_entries =
	    rs && rs->token_cache_entries ? *rs->token_cache_entries : 100000;
	if (!dup_opt(&c->km.gm_url, y->km ? y->km->gm_url : NULL))
		return 0;
#define KM_LIMIT(field, def) (y->km && y->km->field ? *y->km->field : (def))
	c->km.gm_max_mib = KM_LIMIT(gm_max_mib, 64);
	c->km.max_keys_per_service = KM_LIMIT(max_keys_per_service, 10000);
	c->km.max_keys_per_target = KM_LIMIT(max_keys_per_target, 100);
#undef KM_LIMIT
#define GM_LIMIT(field, def) (y->gm && y->gm->field ? *y->gm->field : (def))
	c->gm.max_docs_per_server = GM_LIMIT(max_documents_per_server, 1000);
	c->gm.max_bytes_per_server = GM_LIMIT(max_bytes_per_server, 4u << 20);
	c->gm.max_members = GM_LIMIT(max_members, 10000);
#undef GM_LIMIT
	if (!dup_opt(&c->sdd.data_advertise, y->sdd ? y->sdd->data_advertise : NULL))
		return 0;
	if (!dup_opt(&c->sdd.data_bind, y->sdd ? y->sdd->data_bind : NULL))
		return 0;
	c->sdd.flow_lifetime_s =
	    y->sdd && y->sdd->flow_lifetime_s ? *y->sdd->flow_lifetime_s : 3600;
	/* an explicit 0 keeps every row (no age limit, no cap) */
	c->audit.retention_days =
	    y->audit && y->audit->retention_days ? *y->audit->retention_days : 365;
	c->audit.max_rows = y->audit && y->audit->max_rows ? *y->audit->max_rows : 10000000;
#define SDD_LIMIT(field, def) (y->sdd && y->sdd->field ? *y->sdd->field : (def))
	c->sdd.channel_stall_s = SDD_LIMIT(channel_stall_s, 30);
	c->sdd.subscription_lifetime_s = SDD_LIMIT(subscription_lifetime_s, 86400);
	c->sdd.user_output_mib = SDD_LIMIT(user_output_mib, 64);
	c->sdd.max_subsc = SDD_LIMIT(max_subscriptions, 10000);
	c->sdd.max_subsc_per_server = SDD_LIMIT(max_subscriptions_per_server, 1000);
	c->sdd.max_channels = SDD_LIMIT(max_channels, 10000);
	c->sdd.max_channels_per_user = SDD_LIMIT(max_channels_per_user, 512);
	c->sdd.max_unauth_per_addr = SDD_LIMIT(max_unauthenticated_per_address, 256);
	c->sdd.channels_per_second_per_addr = SDD_LIMIT(channels_per_second_per_address, 200);
#undef SDD_LIMIT
	if (!dup_list(&c->sdd.peers, &c->sdd.n_peers, y->sdd ? y->sdd->peers : NULL,
	              y->sdd ? y->sdd->peers_count : 0))
		return 0;
	c->refpoints = calloc(y->reference_points_count, sizeof *c->refpoints);
	if (!c->refpoints)
		return 0;
	for (; c->n_refpoints < y->reference_points_count; c->n_refpoints++)
		if (!copy_refpoint(&c->refpoints[c->n_refpoints],
		                   &y->reference_points[c->n_refpoints]))
			return c->n_refpoints++, 0;
	return 1;
}

/* --- loading --- */

struct cyaml_log_ctx {
	char msg[256];
};

__attribute__((format(printf, 3, 0))) static void cyaml_log_capture(cyaml_log_t level, void *vctx,
                                                                    const char *fmt, va_list args)
{
	struct cyaml_log_ctx *lc = vctx;
	if (level < CYAML_LOG_ERROR || lc->msg[0])
		return;
	vsnprintf(lc->msg, sizeof lc->msg, fmt, args);
	lc->msg[strcspn(lc->msg, "\n")] = '\0';
}

sg_err sg_conf_load_string(const char *yaml, const char *name, struct sg_conf **out, char *err,
                           size_t errlen)
{
	*out = NULL;
	if (!name)
		name = "<config>";
	struct ctx x = {.name = name, .err = err, .errlen = errlen};
	size_t len = strlen(yaml);

	/* pass 1: syntax and structure, with lines */
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		return sg_fail(err, errlen, SG_ERR_NOMEM, "%s: out of memory", name);
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&parser, &x.doc)) {
		sg_err e = sg_fail(err, errlen, SG_ERR_CONFIG, "%s:%lu: syntax error: %s%s%s", name,
		                   (unsigned long)parser.problem_mark.line + 1,
		                   parser.problem ? parser.problem : "malformed YAML",
		                   parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		return e;
	}
	yaml_parser_delete(&parser);
	yaml_node_t *root = yaml_document_get_root_node(&x.doc);
	sg_err e;
	char path[512] = "";
	if (!root)
		e = sg_fail(err, errlen, SG_ERR_CONFIG, "%s:1: the configuration is empty", name);
	else
		e = walk(&x, root, &top_schema, path, sizeof path);
	if (e != SG_OK) {
		yaml_document_delete(&x.doc);
		return e;
	}

	/* pass 2: libcyaml maps the document onto the loaded form */
	struct cyaml_log_ctx lc = {.msg = ""};
	const cyaml_config_t cfg = {
	    .log_fn = cyaml_log_capture,
	    .log_ctx = &lc,
	    .mem_fn = cyaml_mem,
	    .log_level = CYAML_LOG_ERROR,
	    .flags = CYAML_CFG_DEFAULT,
	};
	struct y_conf *y = NULL;
	cyaml_err_t ce = cyaml_load_data((const uint8_t *)yaml, len, &cfg, &top_schema,
	                                 (cyaml_data_t **)&y, NULL);
	if (ce != CYAML_OK) {
		e = sg_fail(err, errlen, SG_ERR_CONFIG, "%s: %s%s%s", name, cyaml_strerror(ce),
		            lc.msg[0] ? ": " : "", lc.msg);
		yaml_document_delete(&x.doc);
		return e;
	}

	/* semantic checks, with the line of the value looked up by path */
	e = check(&x, y);
	struct sg_conf *c = NULL;
	if (e == SG_OK) {
		c = calloc(1, sizeof *c);
		if (!c || !(c->source = strdup(name)) || !copy_conf(c, y)) {
			sg_conf_free(c);
			c = NULL;
			e = sg_fail(err, errlen, SG_ERR_NOMEM, "%s: out of memory", name);
		}
	}
	cyaml_free(&cfg, &top_schema, y, 0);
	yaml_document_delete(&x.doc);
	*out = c;
	return e;
}

sg_err sg_conf_load_file(const char *path, struct sg_conf **out, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	*out = NULL;
	sg_err e = sg_file_read(path, CONF_MAX_BYTES, &text, &len);
	if (e == SG_ERR_LIMIT)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "%s: larger than %d bytes", path,
		               CONF_MAX_BYTES);
	if (e != SG_OK)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "%s: cannot read: %s", path,
		               strerror(errno));
	if (strlen(text) != len) {
		free(text);
		return sg_fail(err, errlen, SG_ERR_CONFIG, "%s: contains a NUL byte", path);
	}
	e = sg_conf_load_string(text, path, out, err, errlen);
	free(text);
	return e;
}

/* --- finishing: overrides, defaults, derived fields --- */

static int set_str(char **field, const char *v)
{
	char *n = strdup(v);
	if (!n)
		return 0;
	free(*field);
	*field = n;
	return 1;
}

static int set_path(char **field, const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (!p)
		return 0;
	snprintf(p, n, "%s/%s", dir, name);
	free(*field);
	*field = p;
	return 1;
}

/* Sets *field to dir + "/" + deflt when unset, or prefixes dir when it is relative. */
static int resolve(char **field, const char *dir, const char *deflt)
{
	if (!*field)
		return deflt ? set_path(field, dir, deflt) : 1;
	if ((*field)[0] == '/')
		return 1;
	char *rel = *field;
	*field = NULL;
	int ok = set_path(field, dir, rel);
	if (ok)
		free(rel);
	else
		*field = rel;
	return ok;
}

static sg_err apply_roles(struct sg_conf *c, const char *list, char *err, size_t errlen)
{
	char *copy = strdup(list);
	char **roles = calloc(N_ROLES, sizeof *roles);
	unsigned n = 0;
	sg_err e = SG_OK;
	char *save = NULL;
	char roleset[64];
	join(roleset, sizeof roleset, ROLES, N_ROLES);
	if (!copy || !roles) {
		e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		t[strcspn(t, " ")] = '\0';
		if (!one_of(t, ROLES, N_ROLES)) {
			e = sg_fail(err, errlen, SG_ERR_CONFIG, "--roles: '%s' is not one of %s", t,
			            roleset);
			goto out;
		}
		for (unsigned j = 0; j < n; j++)
			if (strcmp(roles[j], t) == 0) {
				e = sg_fail(err, errlen, SG_ERR_CONFIG,
				            "--roles: '%s' is listed twice", t);
				goto out;
			}
		if (!(roles[n++] = strdup(t))) {
			e = sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (n == 0) {
		e = sg_fail(err, errlen, SG_ERR_CONFIG, "--roles: empty (expected some of %s)",
		            roleset);
		goto out;
	}
	for (unsigned i = 0; i < c->n_roles; i++)
		free(c->roles[i]);
	free(c->roles);
	c->roles = roles;
	c->n_roles = n;
	roles = NULL;
out:
	if (roles) {
		for (unsigned i = 0; i < N_ROLES; i++)
			free(roles[i]);
		free(roles);
	}
	free(copy);
	return e;
}

static enum sg_auth_mode auth_mode_of(const char *a)
{
	if (strcmp(a, "bearer") == 0)
		return SG_AUTH_BEARER;
	if (strcmp(a, "mtls") == 0)
		return SG_AUTH_MTLS;
	if (strcmp(a, "mtls+bearer") == 0)
		return SG_AUTH_MTLS_BEARER;
	return SG_AUTH_NONE;
}

/* The https URL of the first reference point serving idm with the given TLS mode and auth:
 * "https://localhost:PORT" for loopback binds (the development certificate's name), else
 * "https://HOST:PORT". Leaves *out NULL when there is none; returns 0 only on allocation failure.
 */
static int derive_url(char **out, const struct sg_conf *c, const char *service,
                      enum sg_tls_mode mode, enum sg_auth_mode auth)
{
	for (unsigned i = 0; i < c->n_refpoints; i++) {
		const struct sg_conf_refpoint *r = &c->refpoints[i];
		int serves = 0;
		for (unsigned j = 0; j < r->n_services; j++)
			serves |= strcmp(r->services[j], service) == 0;
		if (!serves || r->tls.mode != mode || r->auth_mode != auth)
			continue;
		const char *colon = strrchr(r->bind, ':');
		size_t hostlen = colon ? (size_t)(colon - r->bind) : 0;
		const char *port = colon ? colon + 1 : "443";
		char host[256];
		snprintf(host, sizeof host, "%.*s", (int)hostlen, r->bind);
		if (!*host || strcmp(host, "127.0.0.1") == 0 || strcmp(host, "[::1]") == 0 ||
		    strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0)
			snprintf(host, sizeof host, "localhost");
		char url[300];
		snprintf(url, sizeof url, "https://%s:%s", host, port);
		return (*out = strdup(url)) != NULL;
	}
	return 1;
}

sg_err sg_conf_finish(struct sg_conf *c, const char *state_dir_override, const char *roles_override,
                      char *err, size_t errlen)
{
	const char *src = c->source ? c->source : "<config>";
	if (state_dir_override) {
		if (!*state_dir_override)
			return sg_fail(err, errlen, SG_ERR_CONFIG,
			               "--state-dir: must not be empty");
		if (!set_str(&c->state_dir, state_dir_override))
			goto nomem;
	}
	if (roles_override) {
		sg_err e = apply_roles(c, roles_override, err, errlen);
		if (e != SG_OK)
			return e;
	}
	if (!c->pki_dir && !set_path(&c->pki_dir, c->state_dir, "pki"))
		goto nomem;
	if (strcmp(c->store_driver, "sqlite") == 0 && !c->store_path &&
	    !set_path(&c->store_path, c->state_dir, "sealguard.db"))
		goto nomem;
	if (c->n_refpoints == 0)
		return sg_fail(err, errlen, SG_ERR_CONFIG, "%s: no reference point is configured",
		               src);

	for (unsigned i = 0; i < c->n_refpoints; i++) {
		struct sg_conf_refpoint *r = &c->refpoints[i];
		enum sg_tls_mode mode;
		if (strcmp(r->tls_mode, "mutual") == 0)
			mode = SG_TLS_MUTUAL;
		else if (strcmp(r->tls_mode, "psk") == 0)
			mode = SG_TLS_PSK;
		else if (strcmp(r->tls_mode, "server-auth") == 0)
			mode = SG_TLS_SERVER_AUTH;
		else
			return sg_fail(err, errlen, SG_ERR_CONFIG, "%s: %s: unknown tls.mode '%s'",
			               src, r->name, r->tls_mode);
		r->auth_mode = auth_mode_of(r->auth);
		if ((r->auth_mode == SG_AUTH_MTLS || r->auth_mode == SG_AUTH_MTLS_BEARER) &&
		    mode != SG_TLS_MUTUAL)
			return sg_fail(err, errlen, SG_ERR_CONFIG,
			               "%s: %s: auth %s needs tls.mode mutual", src, r->name,
			               r->auth);
		if (mode == SG_TLS_PSK && !r->psk_file)
			return sg_fail(err, errlen, SG_ERR_CONFIG,
			               "%s: %s: tls.mode psk needs psk_file", src, r->name);
		const int certs = mode != SG_TLS_PSK;
		if (!resolve(&r->cert, c->pki_dir, certs ? "server.crt" : NULL) ||
		    !resolve(&r->key, c->pki_dir, certs ? "server.key" : NULL) ||
		    !resolve(&r->ca, c->pki_dir, certs ? "ca.crt" : NULL) ||
		    !resolve(&r->crl, c->pki_dir, certs ? "crl.pem" : NULL) ||
		    !resolve(&r->psk_file, c->pki_dir, NULL))
			goto nomem;
		r->tls = (struct sg_tls_conf){
		    .mode = mode,
		    .cert = r->cert,
		    .key = r->key,
		    .ca = r->ca,
		    .crl = r->crl,
		    .min_version = r->min_version,
		    .max_version = r->max_version,
		    .ciphersuites = r->ciphersuites,
		    .ciphers = r->ciphers,
		    .groups = r->groups,
		    .sigalgs = r->sigalgs,
		    .psk_file = r->psk_file,
		    .psk_identity = NULL,
		    .session_tickets = 1,
		    .ticket_rotate_s = 3600,
		};
	}
	if (!c->idm.issuer &&
	    !derive_url(&c->idm.issuer, c, "idm", SG_TLS_SERVER_AUTH, SG_AUTH_BEARER))
		goto nomem;
	if (!c->resource.idm_url &&
	    !derive_url(&c->resource.idm_url, c, "idm", SG_TLS_MUTUAL, SG_AUTH_MTLS))
		goto nomem;
	if (!c->km.gm_url && !derive_url(&c->km.gm_url, c, "gm", SG_TLS_MUTUAL, SG_AUTH_MTLS))
		goto nomem;
	/* R4: the SEAL-E client certificate of a resource server is its own server certificate
	 * unless configured otherwise (it carries clientAuth in the development PKI) */
	if (!resolve(&c->resource.client_cert, c->pki_dir, "server.crt") ||
	    !resolve(&c->resource.client_key, c->pki_dir, "server.key") ||
	    !resolve(&c->resource.ca, c->pki_dir, "ca.crt") ||
	    !resolve(&c->resource.crl, c->pki_dir, "crl.pem"))
		goto nomem;
	return SG_OK;
nomem:
	return sg_fail(err, errlen, SG_ERR_NOMEM, "%s: out of memory", src);
}

static void free_list(char **v, unsigned n)
{
	if (!v)
		return;
	for (unsigned i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void sg_conf_free(struct sg_conf *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n_refpoints; i++) {
		struct sg_conf_refpoint *r = &c->refpoints[i];
		char *s[] = {r->name,        r->bind,        r->tls_mode,     r->cert,
		             r->key,         r->ca,          r->crl,          r->psk_file,
		             r->min_version, r->max_version, r->ciphersuites, r->ciphers,
		             r->groups,      r->sigalgs,     r->auth};
		for (size_t j = 0; j < sizeof s / sizeof s[0]; j++)
			free(s[j]);
		free_list(r->services, r->n_services);
		free_list(r->allowed_identities, r->n_allowed_identities);
	}
	free(c->refpoints);
	free(c->state_dir);
	free(c->log_level);
	free(c->store_driver);
	free(c->store_path);
	free(c->store_url);
	free(c->pki_dir);
	free(c->admin_bind);
	free(c->idm.issuer);
	free(c->resource.idm_url);
	free(c->resource.client_cert);
	free(c->resource.client_key);
	free(c->resource.ca);
	free(c->resource.crl);
	free(c->km.gm_url);
	free(c->sdd.data_bind);
	free(c->sdd.data_advertise);
	free_list(c->sdd.peers, c->sdd.n_peers);
	free_list(c->roles, c->n_roles);
	free((char *)c->source);
	free(c);
}
