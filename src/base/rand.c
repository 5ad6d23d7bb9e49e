#include "base/rand.h"
#include "base/b64.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

sg_err sg_random_bytes(void *out, size_t n)
{
	if (n > 0x7fffffff || RAND_bytes(out, (int)n) != 1)
		return SG_ERR_INTERNAL;
	return SG_OK;
}

sg_err sg_random_token(char *out, size_t outlen, size_t nbytes)
{
	unsigned char raw[64];
	if (nbytes > sizeof raw || outlen < sg_b64url_len(nbytes) + 1)
		return SG_ERR_INVALID;
	sg_err e = sg_random_bytes(raw, nbytes);
	if (e)
		return e;
	sg_b64url_encode(raw, nbytes, out);
	OPENSSL_cleanse(raw, sizeof raw);
	return SG_OK;
}
