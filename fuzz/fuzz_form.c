/* fuzz/fuzz_form.c: application/x-www-form-urlencoded and query strings as identity management
 * reads them (token, authorization and login requests; RFC 6749 §4.1, Appendix B). What
 * parses must survive encoding again (sg_idm_url_append) and parsing back unchanged, and a
 * parsed value never holds a NUL byte. */
#include "fuzz.h"

#include "idm/logic.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sg_idm_form f, g;
	if (sg_idm_form_parse((const char *)data, size, &f) != 0)
		return 0;
	/* every pair, percent-encoded: at most three bytes per input byte, plus separators */
	size_t cap = 3 * size + 2 * f.n + 2;
	char *q = calloc(1, cap);
	FUZZ_CHECK(q != NULL);
	for (size_t i = 0; i < f.n; i++) {
		FUZZ_CHECK(f.kv[i].name && f.kv[i].value);
		FUZZ_CHECK(sg_idm_url_append(q, cap, f.kv[i].name, f.kv[i].value) == 0);
	}
	FUZZ_CHECK(f.n == 0 || q[0] == '?');
	FUZZ_CHECK(sg_idm_form_parse(q + (f.n ? 1 : 0), strlen(q) - (f.n ? 1 : 0), &g) == 0);
	FUZZ_CHECK(g.n == f.n);
	for (size_t i = 0; i < f.n; i++) {
		FUZZ_CHECK(strcmp(f.kv[i].name, g.kv[i].name) == 0);
		FUZZ_CHECK(strcmp(f.kv[i].value, g.kv[i].value) == 0);
		FUZZ_CHECK(sg_idm_form_count(&f, f.kv[i].name) >= 1);
		FUZZ_CHECK(sg_idm_form_get(&f, f.kv[i].name) != NULL);
	}
	sg_idm_form_free(&f);
	sg_idm_form_free(&g);
	free(q);
	return 0;
}
