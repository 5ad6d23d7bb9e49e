/* base/json.c: JSON helpers shared by the services. */
#include "base/json.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void wipe_free(void *p)
{
	if (p) {
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

static void wipe_install(void)
{
	/* only over jansson's own malloc/free: a program's allocators are its business, and
	 * memory they handed out must go back to them */
	json_malloc_t m = NULL;
	json_free_t f = NULL;
	json_get_alloc_funcs(&m, &f);
	if (m == malloc && f == free)
		json_set_alloc_funcs(malloc, wipe_free);
}

void sg_json_wipe_on_free(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, wipe_install);
}

json_t *sg_json_merge_patch(const json_t *target, const json_t *patch)
{
	/* RFC 7396 §2 */
	if (!json_is_object(patch))
		return json_deep_copy(patch);
	json_t *t = json_is_object(target) ? json_deep_copy(target) : json_object();
	const char *k;
	json_t *val;
	json_object_foreach((json_t *)patch, k, val)
	{
		if (!t)
			break;
		if (json_is_null(val)) {
			json_object_del(t, k);
		} else {
			json_t *m = sg_json_merge_patch(json_object_get(t, k), val);
			if (!m || json_object_set_new(t, k, m) != 0) {
				json_decref(t);
				t = NULL;
			}
		}
	}
	return t;
}
