/* cli/cli.h: the `sealguard` command's subcommands. Each takes the arguments after its own
 * name and the global options, and returns the process exit status (0 ok, 1 failure,
 * 2 usage error). */
#ifndef SG_CLI_CLI_H
#define SG_CLI_CLI_H

#include "base/err.h"

#include <stddef.h>

struct sg_cli_global {
	const char *state_dir; /* --state-dir DIR (default "./var") */
	const char *config;    /* --config FILE, or NULL for the embedded default */
	int state_dir_set;     /* 1 when --state-dir was given (it then wins over the config) */
};

int sg_cli_serve(int argc, char **argv, const struct sg_cli_global *g);
int sg_cli_pki(int argc, char **argv, const struct sg_cli_global *g);
int sg_cli_config(int argc, char **argv, const struct sg_cli_global *g);
/* Registry (cmd_user.c, cmd_client.c, cmd_valserver.c) and SIM-C (cmd_login.c) commands. */
int sg_cli_user(int argc, char **argv, const struct sg_cli_global *g);
int sg_cli_client(int argc, char **argv, const struct sg_cli_global *g);
int sg_cli_valserver(int argc, char **argv, const struct sg_cli_global *g);
int sg_cli_login(int argc, char **argv, const struct sg_cli_global *g);
int sg_cli_token(int argc, char **argv, const struct sg_cli_global *g);
int sg_cli_keys(int argc, char **argv, const struct sg_cli_global *g); /* cmd_keys.c */
/* `sealguard audit list` (cmd_audit.c): the audit trail, as text or JSON Lines. */
int sg_cli_audit_cmd(int argc, char **argv, const struct sg_cli_global *g);

/* `sealguard call` (cmd_call.c): one SEAL API request as a VAL server, over SEAL-S. */
int sg_cli_call(int argc, char **argv, const struct sg_cli_global *g);
/* `sealguard dd` (cmd_dd.c): the SEALDD client (flows, data) and a VAL echo endpoint. */
int sg_cli_dd(int argc, char **argv, const struct sg_cli_global *g);
/* `sealguard key` (cmd_key.c): the SKM-C, for UEs (KM-UU) and VAL servers (KM-S). */
int sg_cli_key(int argc, char **argv, const struct sg_cli_global *g);

/* The VAL-server options `call` and `valserver token` share (cmd_call.c): a VAL server's
 * credentials, by default from the state dir's PKI (val-servers/NAME.crt|key, ca.crt), and
 * where its tokens come from (by default discovery at the configuration's issuer). */
struct sg_cli_valsrv_args {
	const char *name, *scope, *resource, *cert, *key, *cacert, *crl, *token_url, *issuer;
};
enum {
	SG_CLI_OPT_NAME = 1900,
	SG_CLI_OPT_SCOPE,
	SG_CLI_OPT_RESOURCE,
	SG_CLI_OPT_CERT,
	SG_CLI_OPT_KEY,
	SG_CLI_OPT_CACERT,
	SG_CLI_OPT_CRL,
	SG_CLI_OPT_TOKEN_URL,
	SG_CLI_OPT_ISSUER
};
#define SG_CLI_VALSRV_LONGOPTS                                                                     \
	{"name", required_argument, NULL, SG_CLI_OPT_NAME},                                        \
	    {"scope", required_argument, NULL, SG_CLI_OPT_SCOPE},                                  \
	    {"resource", required_argument, NULL, SG_CLI_OPT_RESOURCE},                            \
	    {"cert", required_argument, NULL, SG_CLI_OPT_CERT},                                    \
	    {"key", required_argument, NULL, SG_CLI_OPT_KEY},                                      \
	    {"cacert", required_argument, NULL, SG_CLI_OPT_CACERT},                                \
	    {"crl", required_argument, NULL, SG_CLI_OPT_CRL},                                      \
	    {"token-url", required_argument, NULL, SG_CLI_OPT_TOKEN_URL},                          \
	{                                                                                          \
		"issuer", required_argument, NULL, SG_CLI_OPT_ISSUER                               \
	}
#define SG_CLI_VALSRV_OPTIONS                                                                      \
	"VAL server options:\n"                                                                    \
	"  --name NAME          the VAL server (client_id); default: the only one with a\n"        \
	"                       certificate in STATE/pki/val-servers\n"                            \
	"  --scope S            scopes to ask for (default: all it is registered for)\n"           \
	"  --resource AUD       RFC 8707 audience, e.g. sealguard:gm (call: from the URL path)\n"  \
	"  --cert F --key F     its certificate and key (default STATE/pki/val-servers/NAME.*)\n"  \
	"  --cacert F           trust anchors for the SEAL servers (default STATE/pki/ca.crt)\n"   \
	"  --crl F              CRLs checked for their chains (default STATE/pki/crl.pem when\n"   \
	"                       it exists and --cacert is not given; \"\" checks none)\n"          \
	"  --token-url URL      the token endpoint on SEAL-S, e.g. https://localhost:9444/oauth2/" \
	"token\n"                                                                                  \
	"  --issuer URL         else discover it there (mtls_endpoint_aliases); default: the\n"    \
	"                       issuer of the configuration\n"
struct sg_valsrv;
/* Takes one of the options above into a; 1 when opt was one of them. */
int sg_cli_valsrv_opt(struct sg_cli_valsrv_args *a, int opt, const char *arg);
/* The VAL-server client for a (prints the error and returns 1 or 2 on failure). *out is the
 * caller's: sg_valsrv_free(). */
int sg_cli_valsrv_open(const struct sg_cli_global *g, const struct sg_cli_valsrv_args *a, int http2,
                       struct sg_valsrv **out);

struct sg_conf;
/* Loads --config (or the embedded default) and finishes it with --state-dir and roles (may be
 * NULL). Prints the error and returns 1 on failure; *out is the caller's (sg_conf_free). */
int sg_cli_load_conf(const struct sg_cli_global *g, const char *roles, struct sg_conf **out);
/* T5 for the CLI's clients: the CRL to check the servers' chains against into out: crl_opt
 * (--crl) when given ("" checks none), else, when no cacert_opt (--cacert) was given, the state
 * dir's crl.pem when it exists, else "" (none). */
void sg_cli_crl(const struct sg_conf *c, const char *crl_opt, const char *cacert_opt, char *out,
                size_t outlen);

/* Prints "sealguard: " + message to stderr; returns 1 (for `return sg_cli_fail(...)`). */
int sg_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Shared by the registry and login commands (cmd_user.c). Each prints its error and returns
 * non-zero on failure. sg_cli_open_store: the configuration and the store of the state dir,
 * both the caller's (sg_store_close, sg_conf_free). sg_cli_read_secret: a secret from a file
 * ("-" = stdin), one trailing newline removed; *out wiped by sg_cli_secret_free.
 * sg_cli_audit: an audit row by actor "cli" (never a secret in detail). sg_cli_store_fail:
 * rolls back and reports the store's last error. */
struct sg_store;
int sg_cli_open_store(const struct sg_cli_global *g, struct sg_conf **conf, struct sg_store **st);
int sg_cli_read_secret(const char *path, const char *what, char **out);
void sg_cli_secret_free(char *s);
int sg_cli_audit(struct sg_store *st, const char *action, const char *object, const char *detail);
int sg_cli_store_fail(struct sg_store *st, const char *what);
/* Ends the transaction of a registry change to object: SG_ERR_NOTFOUND rolls back and fails
 * with "no <noun> '<object>'", another error as sg_cli_store_fail(st, what); SG_OK writes the
 * audit row (action, object, detail) and commits. Returns 0 when committed (the caller prints
 * its result), else the exit status. */
int sg_cli_tx_finish(struct sg_store *st, sg_err e, const char *noun, const char *what,
                     const char *action, const char *object, const char *detail);

/* One subcommand of a command: run gets the arguments from the subcommand's name on. */
struct sg_cli_sub {
	const char *name;
	int (*run)(int argc, char **argv, const struct sg_cli_global *g);
};
/* Runs subcommand argv[1] of `sealguard <cmd>` from subs (ended by a NULL name): without one,
 * usage on stderr (2); -h, --help, help: usage on stdout (0); an unknown one fails (2). */
int sg_cli_dispatch(int argc, char **argv, const struct sg_cli_global *g, const char *cmd,
                    const char *usage, const struct sg_cli_sub *subs);

/* Marks in have[] each of the space-separated scopes of s among names[0..n); an unknown one
 * fails with "scope '<scope>' <why>" (2). */
int sg_cli_scopes_add(const char *s, const char *const *names, size_t n, int *have,
                      const char *why);

#endif
