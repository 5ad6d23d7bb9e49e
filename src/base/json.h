/* base/json.h: JSON helpers shared by the services. */
#ifndef SG_BASE_JSON_H
#define SG_BASE_JSON_H

#include <jansson.h>

/* RFC 7396 §2 MergePatch(target, patch): a new value (target is not changed); NULL when out of
 * memory. Members of nested objects are merged, null removes a member, anything else replaces.
 * The recursion follows the patch's nesting, which jansson's parser bounds. */
json_t *sg_json_merge_patch(const json_t *target, const json_t *patch);

#endif
