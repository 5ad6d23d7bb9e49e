/* base/rand.h: cryptographically secure random bytes and tokens (OpenSSL's DRBG). */
#ifndef SG_BASE_RAND_H
#define SG_BASE_RAND_H

#include "base/err.h"
#include <stddef.h>

sg_err sg_random_bytes(void *out, size_t n);
/* Writes a base64url token made of nbytes random bytes into out (sg_b64url_len(nbytes)+1). */
sg_err sg_random_token(char *out, size_t outlen, size_t nbytes);

#endif
