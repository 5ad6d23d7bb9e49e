/* cli/common.c: what the subcommands share: error printing and configuration loading. */
#include "cli/cli.h"
#include "conf/conf.h"

#include <stdarg.h>
#include <stdio.h>

int sg_cli_fail(const char *fmt, ...)
{
	va_list ap;
	fputs("sealguard: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

int sg_cli_load_conf(const struct sg_cli_global *g, const char *roles, struct sg_conf **out)
{
	char err[1024] = "";
	struct sg_conf *c = NULL;
	sg_err e = g->config ? sg_conf_load_file(g->config, &c, err, sizeof err)
	                     : sg_conf_load_string(SG_CONF_DEFAULT_YAML, "<embedded default>", &c,
	                                           err, sizeof err);
	if (e == SG_OK)
		e = sg_conf_finish(c, g->state_dir_set ? g->state_dir : NULL, roles, err,
		                   sizeof err);
	if (e != SG_OK) {
		sg_conf_free(c);
		return sg_cli_fail("%s", err);
	}
	*out = c;
	return 0;
}
