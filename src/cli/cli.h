/* cli/cli.h: the `sealguard` command's subcommands. Each takes the arguments after its own
 * name and the global options, and returns the process exit status (0 ok, 1 failure,
 * 2 usage error). */
#ifndef SG_CLI_CLI_H
#define SG_CLI_CLI_H

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

struct sg_conf;
/* Loads --config (or the embedded default) and finishes it with --state-dir and roles (may be
 * NULL). Prints the error and returns 1 on failure; *out is the caller's (sg_conf_free). */
int sg_cli_load_conf(const struct sg_cli_global *g, const char *roles, struct sg_conf **out);

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

#endif
