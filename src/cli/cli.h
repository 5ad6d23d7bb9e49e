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

struct sg_conf;
/* Loads --config (or the embedded default) and finishes it with --state-dir and roles (may be
 * NULL). Prints the error and returns 1 on failure; *out is the caller's (sg_conf_free). */
int sg_cli_load_conf(const struct sg_cli_global *g, const char *roles, struct sg_conf **out);

/* Prints "sealguard: " + message to stderr; returns 1 (for `return sg_cli_fail(...)`). */
int sg_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
