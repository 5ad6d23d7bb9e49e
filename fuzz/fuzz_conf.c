/* fuzz/fuzz_conf.c: the YAML configuration loader (src/conf/conf.c) as `sealguard serve`
 * runs it: sg_conf_load_string (libyaml, the schema walk that names file and line, then
 * libcyaml), and for what loads, sg_conf_finish with a state directory override. Properties,
 * besides no crash, leak or undefined behaviour:
 *  - a load either gives a configuration or an error message that names the file, never both;
 *  - the same text loads the same way twice (same result, same message);
 *  - what loads either finishes or is refused with a message, and then has at least one role
 *    and only reference points with a bind address. */
#include "fuzz.h"

#include "conf/conf.h"

#include <string.h>

static sg_err load(const char *text, struct sg_conf **c, char *err, size_t errlen)
{
	err[0] = '\0';
	sg_err e = sg_conf_load_string(text, "fz.yaml", c, err, errlen);
	FUZZ_CHECK((e == SG_OK) == (*c != NULL));
	FUZZ_CHECK(e == SG_OK || strncmp(err, "fz.yaml", 7) == 0);
	return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	char *text = malloc(size + 1);
	FUZZ_CHECK(text != NULL);
	memcpy(text, data, size);
	text[size] = '\0';
	struct sg_conf *c = NULL, *again = NULL;
	char err[512], err2[512];
	sg_err e = load(text, &c, err, sizeof err), e2 = load(text, &again, err2, sizeof err2);
	FUZZ_CHECK(e == e2 && strcmp(err, err2) == 0);
	sg_conf_free(again);
	if (e == SG_OK) {
		err[0] = '\0';
		if (sg_conf_finish(c, "/nonexistent/sg-fuzz-state", NULL, err, sizeof err) !=
		    SG_OK) {
			FUZZ_CHECK(err[0] != '\0');
		} else {
			FUZZ_CHECK(c->n_roles >= 1);
			for (unsigned i = 0; i < c->n_refpoints; i++)
				FUZZ_CHECK(c->refpoints[i].bind && c->refpoints[i].bind[0]);
		}
	}
	sg_conf_free(c);
	free(text);
	return 0;
}
