/* cli/cmd_config.c: `sealguard config show|check`. */
#include "cli/cli.h"
#include "conf/conf.h"

#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "usage: sealguard config show            print the embedded default configuration\n"
    "       sealguard --config FILE config check   load and check FILE, print the listeners\n";

int sg_cli_config(int argc, char **argv, const struct sg_cli_global *g)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(USAGE, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "show") == 0) {
		fputs(SG_CONF_DEFAULT_YAML, stdout);
		return 0;
	}
	if (strcmp(argv[1], "check") != 0)
		return sg_cli_fail("unknown config command '%s'", argv[1]), 2;
	struct sg_conf *c = NULL;
	if (sg_cli_load_conf(g, NULL, &c) != 0)
		return 1;
	printf("%s: ok (state dir %s)\n", c->source, c->state_dir);
	for (unsigned i = 0; i < c->n_refpoints; i++) {
		const struct sg_conf_refpoint *rp = &c->refpoints[i];
		printf("  %-10s %-22s tls %-12s auth %s\n", rp->name, rp->bind, rp->tls_mode,
		       rp->auth);
	}
	if (c->admin_bind && *c->admin_bind)
		printf("  %-10s %-22s plain HTTP (loopback admin)\n", "admin", c->admin_bind);
	sg_conf_free(c);
	return 0;
}
