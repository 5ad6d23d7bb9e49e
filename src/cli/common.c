/* cli/common.c: what the subcommands share: error printing, configuration loading, the CRL. */
#include "cli/cli.h"
#include "base/err.h"
#include "base/file.h"
#include "conf/conf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int sg_cli_fail(const char *fmt, ...)
{
	/* one line of printable text whatever a peer put in what it quotes (sg_str_printable) */
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "sealguard: %s\n", sg_str_printable(msg));
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

void sg_cli_crl(const struct sg_conf *c, const char *crl_opt, const char *cacert_opt, char *out,
                size_t outlen)
{
	out[0] = '\0';
	if (crl_opt)
		snprintf(out, outlen, "%s", crl_opt);
	else if (!cacert_opt && (sg_path_join(out, outlen, c->pki_dir, "crl.pem") != SG_OK ||
	                         access(out, R_OK) != 0))
		out[0] = '\0';
}

int sg_cli_dispatch(int argc, char **argv, const struct sg_cli_global *g, const char *cmd,
                    const char *usage, const struct sg_cli_sub *subs)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	for (; subs->name; subs++)
		if (strcmp(sub, subs->name) == 0)
			return subs->run(argc - 1, argv + 1, g);
	sg_cli_fail("unknown %s command '%s' (try `sealguard %s --help`)", cmd, sub, cmd);
	return 2;
}

int sg_cli_scopes_add(const char *s, const char *const *names, size_t n, int *have, const char *why)
{
	while (*s) {
		size_t len = strcspn(s, " ");
		if (len) {
			size_t i = 0;
			while (i < n &&
			       !(strlen(names[i]) == len && strncmp(s, names[i], len) == 0))
				i++;
			if (i == n)
				return sg_cli_fail("scope '%.*s' %s", (int)len, s, why), 2;
			have[i] = 1;
		}
		s += len;
		s += *s == ' ';
	}
	return 0;
}
