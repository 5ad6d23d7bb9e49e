/* cli/cmd_audit.c: `sealguard audit list`: the audit trail of the state dir's store, in the
 * order it was written, as text or JSON Lines, for reading and for exporting it before the
 * store upkeep's retention deletes it (audit.retention_days, audit.max_rows). */
#include "base/clock.h"
#include "cli/cli.h"
#include "conf/conf.h"
#include "store/store.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: sealguard [--state-dir DIR] [--config FILE] audit list [--after-id N] [--limit N]\n"
    "                                                             [--json]\n"
    "\n"
    "The audit trail of identity, group, key and SEALDD management: who did what, when, over\n"
    "which reference point (never a secret). Rows come oldest first, in the order they were\n"
    "written; `sealguard serve` deletes those past audit.retention_days or beyond\n"
    "audit.max_rows, so export what must be kept longer, e.g. hourly:\n"
    "  sealguard audit list --after-id LAST --limit 0 --json >>audit.jsonl\n"
    "with LAST the id of the last line already exported (0 the first time).\n"
    "\n"
    "options:\n"
    "  --after-id N   only rows with an id above N (default 0: from the oldest kept)\n"
    "  --limit N      at most N rows (default 1000; 0: all)\n"
    "  --json         one JSON object per line: id, ts (ms since the epoch), time, actor,\n"
    "                 action, object, refpoint, detail (null when absent)\n"
    "\n"
    "Ids have no holes but where the retention deleted rows: when the first row after\n"
    "--after-id N is not N + 1, the rows in between were deleted before this export. They are\n"
    "named on stderr and the exit status is 3 (the rows that are kept are still printed).\n";

#define PAGE 1000

static int print_row(const struct sg_store_audit *a, int json)
{
	char when[40];
	sg_time_iso8601(when, sizeof when, a->ts);
	if (!json)
		return printf("%lld  %s  %s  %s  %s  %s  %s\n", (long long)a->id, when, a->actor,
		              a->action, a->object ? a->object : "-",
		              a->refpoint ? a->refpoint : "-", a->detail ? a->detail : "-") < 0;
	json_t *o = json_pack("{sI sI ss ss ss so so so}", "id", (json_int_t)a->id, "ts",
	                      (json_int_t)a->ts, "time", when, "actor", a->actor, "action",
	                      a->action, "object", a->object ? json_string(a->object) : json_null(),
	                      "refpoint", a->refpoint ? json_string(a->refpoint) : json_null(),
	                      "detail", a->detail ? json_string(a->detail) : json_null());
	char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
	int bad = !line || printf("%s\n", line) < 0;
	free(line);
	json_decref(o);
	return bad;
}

static int audit_list(int argc, char **argv, const struct sg_cli_global *g)
{
	enum { O_AFTER = 1, O_LIMIT, O_JSON };
	static const struct option opts[] = {
	    {"after-id", required_argument, NULL, O_AFTER},
	    {"limit", required_argument, NULL, O_LIMIT},
	    {"json", no_argument, NULL, O_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	long long after = 0, limit = 1000;
	int json = 0, ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		char *end = NULL;
		switch (ch) {
		case O_AFTER:
		case O_LIMIT: {
			long long v = strtoll(optarg, &end, 10);
			if (!*optarg || *end || v < 0)
				return sg_cli_fail("--%s takes a number of 0 or more",
				                   ch == O_AFTER ? "after-id" : "limit"),
				       2;
			*(ch == O_AFTER ? &after : &limit) = v;
			break;
		}
		case O_JSON:
			json = 1;
			break;
		case 'h':
			fputs(USAGE, stdout);
			return 0;
		default:
			fputs(USAGE, stderr);
			return 2;
		}
	}
	if (optind != argc)
		return sg_cli_fail("audit list takes no arguments ('%s')", argv[optind]), 2;
	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	if (sg_cli_open_store(g, &conf, &st) != 0)
		return 1;
	int rc = 0, gap = 0;
	long long first_after = after;
	if (!json)
		printf("ID  TIME  ACTOR  ACTION  OBJECT  REFERENCE-POINT  DETAIL\n");
	/* page by page: an export of millions of rows never holds more than a page */
	for (long long left = limit ? limit : -1; left != 0 && rc == 0;) {
		size_t want = left < 0 || left > PAGE ? PAGE : (size_t)left, n = 0;
		struct sg_store_audit *v = NULL;
		if (sg_store_audit_list(st, after, want, &v, &n) != SG_OK) {
			rc = sg_cli_fail("cannot read the audit trail: %s", sg_store_last_error());
			break;
		}
		/* an incremental export that fell behind the retention: say what it missed */
		if (n && after == first_after && first_after > 0 && v[0].id > first_after + 1) {
			fprintf(stderr,
			        "sealguard: audit rows %lld to %lld are no longer in the store "
			        "(deleted "
			        "by the retention before this export)\n",
			        first_after + 1, (long long)v[0].id - 1);
			gap = 1;
		}
		for (size_t i = 0; i < n && rc == 0; i++)
			if (print_row(&v[i], json))
				rc = sg_cli_fail("cannot write the output");
		if (n)
			after = v[n - 1].id;
		sg_store_audit_list_free(v, n);
		if (n < want)
			break;
		if (left > 0)
			left -= (long long)n;
	}
	if (rc == 0 && fflush(stdout) != 0)
		rc = sg_cli_fail("cannot write the output");
	if (rc == 0 && gap)
		rc = 3;
	sg_store_close(st);
	sg_conf_free(conf);
	return rc;
}

int sg_cli_audit_cmd(int argc, char **argv, const struct sg_cli_global *g)
{
	static const struct sg_cli_sub subs[] = {{"list", audit_list}, {NULL, NULL}};
	return sg_cli_dispatch(argc, argv, g, "audit", USAGE, subs);
}
