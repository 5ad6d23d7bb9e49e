/* conf/conf.h: the configuration file (YAML, via libcyaml), its schema, defaults and checks,
 * and the embedded default used when no file is given. */
#ifndef SG_CONF_CONF_H
#define SG_CONF_CONF_H

#include "base/err.h"
#include "net/server.h"
#include "tls/tls.h"

#include <stddef.h>

enum sg_auth_mode {
	SG_AUTH_NONE = 0,   /* anything on the listener is public (admin, health) */
	SG_AUTH_BEARER,     /* OAuth 2.0 bearer token (SEAL-UU) */
	SG_AUTH_MTLS,       /* certificate identity only (SEAL-E, X1, X2) */
	SG_AUTH_MTLS_BEARER /* certificate identity and token (SEAL-S, KM-S, SEALDD-S) */
};

struct sg_conf_refpoint {
	char *name; /* "SEAL-UU" */
	char *bind; /* "127.0.0.1:9443" */
	/* TLS; file paths are resolved relative to the state dir's pki/ when not absolute */
	char *tls_mode; /* "server-auth" | "mutual" | "psk" */
	char *cert, *key, *ca, *crl, *psk_file;
	char *min_version, *max_version, *ciphersuites, *ciphers, *groups, *sigalgs;
	char *auth;      /* "none" | "bearer" | "mtls" | "mtls+bearer" */
	char **services; /* e.g. "idm", "gm", "km", "sdd" */
	unsigned n_services;
	char **allowed_identities; /* optional allow-list of certificate SANs (mutual) */
	unsigned n_allowed_identities;
	struct sg_limits limits; /* parsed; defaults where absent */
	/* derived, filled by sg_conf_finish() */
	struct sg_tls_conf tls;
	enum sg_auth_mode auth_mode;
};

/* Identity management (SIM-S), used where the idm role runs. TS 33.434 A.4: lifetimes. */
struct sg_conf_idm {
	char *issuer;           /* https URL; default https://localhost:PORT of the first
	                         * server-auth reference point serving idm */
	unsigned access_ttl_s;  /* default 600; shorter than the ID token's (I8) */
	unsigned id_ttl_s;      /* default 3600 */
	unsigned refresh_ttl_s; /* default 30 days */
	unsigned code_ttl_s;    /* default 60 (single use, short-lived: I5) */
	unsigned scrypt_ln;     /* log2 of scrypt N for new password hashes; default 14 */
};

/* How resource servers (gm, km, sdd) reach identity management: over SEAL-E with mutual TLS,
 * also when both run in one process (DESIGN §2). */
struct sg_conf_resource {
	char *idm_url; /* default https://localhost:PORT of the first mutual
	                * reference point serving idm with auth mtls (SEAL-E) */
	unsigned
	    revocation_poll_ms; /* default 2000: revocations reach resource servers within it */
	unsigned jwks_min_refresh_ms; /* default 10000: unknown-kid refetches are rate-limited */
	unsigned token_cache_entries; /* default 100000; 0 disables the verified-token cache */
	/* SEAL-E client credentials toward identity management (R4); relative to pki_dir;
	 * default server.crt, server.key (this server's own certificate) and ca.crt. crl
	 * (default crl.pem): checked for every server this server connects to as a client (T5):
	 * identity management, group management, VAL server endpoints and notification URIs,
	 * peer SEALDD servers */
	char *client_cert, *client_key, *ca, *crl;
};

/* Group management (TS 23.434 §10.3), where the gm role runs: what one VAL server may keep
 * (G4). Together they bound the membership the key management server reads (km.gm_max_mib). */
struct sg_conf_gm {
	unsigned max_docs_per_server;  /* group documents of one VAL server, default 1000 */
	unsigned max_bytes_per_server; /* their JSON text together, default 4 MiB */
	unsigned max_members;          /* members of one group document, default 10000 */
};

/* Key management (TS 33.434 §5.3), where the km role runs: where the group management server's
 * SEAL-E is, for VAL group membership and group keys (SEAL-X1, docs/km-protocol.md). */
struct sg_conf_km {
	char *gm_url;        /* default https://localhost:PORT of the first mutual reference point
	                      * serving gm with auth mtls (SEAL-E); NULL: none (no group keys) */
	unsigned gm_max_mib; /* largest membership answer read from it (MiB), default 64 */
	/* G4: keys (current versions, until the upkeep deletes them) of one VAL service, and of
	 * one target of it (a VAL user, a UE, or the service itself); default 10000 and 100 */
	unsigned max_keys_per_service, max_keys_per_target;
};

/* SEALDD server (TS 23.433; TS 33.434 Rel-18 G6), where the sdd role runs: the SEALDD-UU
 * user-plane data endpoint (TLS 1.3, server-auth, token in the first frame; docs/sdd-protocol.md)
 * and how long an established flow lives before it must be re-established. */
struct sg_conf_sdd {
	char *data_bind;          /* NULL (not set): 127.0.0.1:9446, or an ephemeral port on
	                           * 127.0.0.1 when 9446 is taken (clients learn the endpoint
	                           * from the flow answer); set: exactly there or fail */
	char *data_advertise;     /* NULL: the bound address; else what ddServerConnInfo names:
	                           * "host" (the bound port) or "host:port"; required when
	                           * data_bind is a wildcard (0.0.0.0, [::]) */
	unsigned flow_lifetime_s; /* default 3600 (60..86400) */
	unsigned channel_stall_s; /* a data channel whose output makes no progress this long
	                           * is closed (the client stopped reading), default 30 */
	/* a connection status subscription lives this long after its creation or last PUT/PATCH
	 * (its expTime), default 86400 (60..31536000) */
	unsigned subscription_lifetime_s;
	unsigned user_output_mib;       /* output queued on the data channels of one user (MiB),
	                                 * default 64: each channel's share, from 64 KiB to 1 MiB */
	unsigned max_subsc;             /* connection status subscriptions in all, default 10000 */
	unsigned max_subsc_per_server;  /* of one VAL server (client_id), default 1000; one VAL
	                                 * server cannot take the others' share */
	unsigned max_channels;          /* SEALDD-UU data channels in all, default 10000 */
	unsigned max_channels_per_user; /* authenticated channels of one user, default 512 */
	unsigned max_unauth_per_addr;   /* channels of one client address (IPv6: /64) not yet
	                                 * authenticated (TLS handshake, AUTH), default 256 */
	unsigned channels_per_second_per_addr; /* new channels of one client address per second
	                                        * (twice as many at once), default 200 */
	char **peers; /* SEALDD-E: certificate identities (SANs, "DNS:sdd2.example.com")
	               * of the peer SEALDD servers that may push or pull DD contexts
	               * and that this server pushes to; none: SEALDD-E refused (403) */
	unsigned n_peers;
};

struct sg_conf {
	char *state_dir;    /* default "./var" */
	unsigned workers;   /* 0 = number of cores */
	char *log_level;    /* debug|info|warn|error */
	int access_log;     /* default 1 */
	char *store_driver; /* "sqlite" (default) | "postgres" */
	char *store_path;   /* sqlite file, default STATE/sealguard.db */
	char *store_url;    /* postgres conninfo */
	char *pki_dir;      /* default STATE/pki */
	char *admin_bind;   /* default "127.0.0.1:9090"; "" disables */
	char **roles;       /* default all: idm, gm, km, sdd */
	unsigned n_roles;
	struct sg_conf_refpoint *refpoints;
	unsigned n_refpoints;
	struct sg_conf_idm idm;
	struct sg_conf_resource resource;
	struct sg_conf_gm gm;
	struct sg_conf_km km;
	struct sg_conf_sdd sdd;
	struct {
		unsigned retention_days; /* audit rows older than this are deleted; 0: kept */
		uint64_t max_rows;       /* the newest this many are kept; 0: no cap */
	} audit;
	const char *source; /* file name, or "<embedded default>" */
};

/* The embedded default configuration, as YAML text (also printed by `sealguard config show`). */
extern const char SG_CONF_DEFAULT_YAML[];

/* Loads and checks a YAML file. Errors name the file and line and what is wrong.
 * *out is owned by the caller: sg_conf_free. */
sg_err sg_conf_load_file(const char *path, struct sg_conf **out, char *err, size_t errlen);
/* Same, from text (name is used in error messages). */
sg_err sg_conf_load_string(const char *yaml, const char *name, struct sg_conf **out, char *err,
                           size_t errlen);
/* Applies overrides (state dir, roles) and derives the rest: resolves paths, fills each
 * refpoint's tls and auth_mode. Certificate files are not checked here (the server creates the
 * development PKI after this, then runs sg_tls_conf_check per reference point). */
sg_err sg_conf_finish(struct sg_conf *c, const char *state_dir_override, const char *roles_override,
                      char *err, size_t errlen);
void sg_conf_free(struct sg_conf *c);

#endif
