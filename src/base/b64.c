#include "base/b64.h"

#include <stdint.h>

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t sg_b64url_len(size_t n)
{
	return (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0);
}

void sg_b64url_encode(const void *in, size_t n, char *out)
{
	const unsigned char *p = in;
	size_t o = 0, i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = ALPHABET[v >> 18 & 63];
		out[o++] = ALPHABET[v >> 12 & 63];
		out[o++] = ALPHABET[v >> 6 & 63];
		out[o++] = ALPHABET[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		out[o++] = ALPHABET[v >> 18 & 63];
		out[o++] = ALPHABET[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		out[o++] = ALPHABET[v >> 18 & 63];
		out[o++] = ALPHABET[v >> 12 & 63];
		out[o++] = ALPHABET[v >> 6 & 63];
	}
	out[o] = '\0';
}

static int val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

sg_err sg_b64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap,
                        size_t *outlen)
{
	if (inlen % 4 == 1)
		return SG_ERR_INVALID;
	size_t need = inlen / 4 * 3 + (inlen % 4 ? inlen % 4 - 1 : 0);
	if (need > outcap)
		return SG_ERR_LIMIT;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < inlen; i++) {
		int v = val((unsigned char)in[i]);
		if (v < 0)
			return SG_ERR_INVALID;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Leftover bits must be zero: a canonical encoding has exactly one form. */
	if (acc != 0)
		return SG_ERR_INVALID;
	*outlen = o;
	return SG_OK;
}
