/* cli/main.c: the `sealguard` command: global options, then one subcommand. */
#include "cli/cli.h"

#include "base/json.h"

#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "usage: sealguard [--state-dir DIR] [--config FILE] COMMAND [ARGS]\n"
    "\n"
    "sealguard implements the security of 3GPP SEAL and SEALDD (TS 33.434): every reference\n"
    "point protected by the TLS profile of TS 33.210, identity and key management, and\n"
    "authorization of VAL servers.\n"
    "\n"
    "commands:\n"
    "  serve        run SEAL functions behind their reference-point listeners\n"
    "  pki          development PKI: CA, server and VAL/SEAL server certificates, CRL\n"
    "  config       print the embedded default configuration, or check a file\n"
    "  user         VAL users of identity management (add, list, disable, passwd...)\n"
    "  client       SIM-C clients registered with identity management\n"
    "  valserver    VAL servers registered with identity management\n"
    "  login        log a VAL user in as a SIM-C (OIDC code flow + PKCE), cache the tokens\n"
    "  token        show or refresh the cached tokens\n"
    "  keys         identity management signing keys (rotate, list)\n"
    "  audit        the audit trail, as text or JSON Lines (list)\n"
    "  call         one SEAL API request as a VAL server (mutual TLS + its access token)\n"
    "  key          SKM-C: register a key, get/list keys (UE); provision, rotate, info,\n"
    "               revoke (VAL server)\n"
    "  dd           SEALDD client: open, send, recv, close flows; a VAL echo endpoint\n"
    "  version      print the version\n"
    "\n"
    "global options (accepted before or after the command):\n"
    "  --state-dir DIR   where the database, the PKI and runtime files live (default ./var)\n"
    "  --config FILE     YAML configuration (default: the embedded one, see `sealguard config "
    "show`)\n"
    "  -h, --help        this text; `sealguard COMMAND --help` explains a command\n"
    "\n"
    "quick start: `sealguard serve` starts SEAL-UU on 127.0.0.1:9443, SEAL-S on :9444 (mutual\n"
    "TLS), SEAL-E on :9445 (mutual TLS) and the admin listener on 127.0.0.1:9090, creating a\n"
    "development PKI in ./var/pki on the first start.\n";

/* Takes --state-dir and --config out of argv wherever they stand (both "--opt VAL" and
 * "--opt=VAL"), so that every subcommand accepts them. Returns the new argc, or -1. */
static int take_globals(int argc, char **argv, struct sg_cli_global *g)
{
	int out = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		const char *name = NULL;
		if (strncmp(a, "--state-dir", 11) == 0 && (a[11] == '\0' || a[11] == '=')) {
			slot = &g->state_dir;
			name = "--state-dir";
		} else if (strncmp(a, "--config", 8) == 0 && (a[8] == '\0' || a[8] == '=')) {
			slot = &g->config;
			name = "--config";
		}
		if (strcmp(a, "--") == 0) {
			while (i < argc)
				argv[out++] = argv[i++];
			break;
		}
		if (!slot) {
			argv[out++] = argv[i];
			continue;
		}
		const char *eq = strchr(a, '=');
		if (eq) {
			*slot = eq + 1;
		} else if (i + 1 < argc) {
			*slot = argv[++i];
		} else {
			sg_cli_fail("%s needs a value", name);
			return -1;
		}
		if (slot == &g->state_dir)
			g->state_dir_set = 1;
		if (!**slot) {
			sg_cli_fail("%s needs a non-empty value", name);
			return -1;
		}
	}
	argv[out] = NULL;
	return out;
}

int main(int argc, char **argv)
{
	struct sg_cli_global g = {.state_dir = "./var", .config = NULL};
	sg_json_wipe_on_free(); /* before any thread: key material passes through JSON */
	argc = take_globals(argc, argv, &g);
	if (argc < 0)
		return 2;
	if (argc < 2) {
		fputs(USAGE, stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		fputs(USAGE, stdout);
		return 0;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("sealguard %s\n", SG_VERSION);
		return 0;
	}
	static const struct {
		const char *name;
		int (*fn)(int, char **, const struct sg_cli_global *);
	} cmds[] = {
	    {"serve", sg_cli_serve},     {"pki", sg_cli_pki},       {"config", sg_cli_config},
	    {"user", sg_cli_user},       {"client", sg_cli_client}, {"valserver", sg_cli_valserver},
	    {"login", sg_cli_login},     {"token", sg_cli_token},   {"keys", sg_cli_keys},
	    {"call", sg_cli_call},       {"key", sg_cli_key},       {"dd", sg_cli_dd},
	    {"audit", sg_cli_audit_cmd},
	};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (strcmp(cmd, cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1, &g);
	sg_cli_fail("unknown command '%s' (try `sealguard --help`)", cmd);
	return 2;
}
