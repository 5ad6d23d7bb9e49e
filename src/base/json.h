/* base/json.h: JSON helpers shared by the services. */
#ifndef SG_BASE_JSON_H
#define SG_BASE_JSON_H

#include <jansson.h>

/* RFC 7396 §2 MergePatch(target, patch): a new value (target is not changed); NULL when out of
 * memory. Members of nested objects are merged, null removes a member, anything else replaces.
 * The recursion follows the patch's nesting, which jansson's parser bounds. */
json_t *sg_json_merge_patch(const json_t *target, const json_t *patch);

/* From now on jansson overwrites every buffer it frees (the whole allocation) first, so key
 * material that passed through JSON (a key record before its encryption, a plaintext after its
 * decryption, and the parser's and serializer's intermediate buffers, which the callers never
 * see) does not stay behind in freed memory. Allocation is plain malloc, so what jansson hands
 * out (json_dumps) is still released with free(): callers wipe those themselves. Only over
 * jansson's default allocators (a program that set its own keeps them). Once per process;
 * call it at the start, before other threads use jansson (`sealguard` does in main()). */
void sg_json_wipe_on_free(void);

#endif
