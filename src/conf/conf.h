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
