/* base/b64.h: base64url without padding (RFC 4648 §5), as JOSE and PKCE use it. */
#ifndef SG_BASE_B64_H
#define SG_BASE_B64_H

#include "base/err.h"
#include <stddef.h>

/* Encoded length for n input bytes, without the terminating NUL. */
size_t sg_b64url_len(size_t n);
/* Encodes n bytes into out (which holds sg_b64url_len(n) + 1 bytes), NUL-terminated. */
void sg_b64url_encode(const void *in, size_t n, char *out);
/* Decodes a base64url string (no padding, no whitespace) into out of outcap bytes.
 * Rejects any character outside the alphabet and impossible lengths. */
sg_err sg_b64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap,
                        size_t *outlen);

#endif
