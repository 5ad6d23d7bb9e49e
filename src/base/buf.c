#include "base/buf.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sg_err sg_buf_reserve(struct sg_buf *b, size_t extra)
{
	if (extra > SIZE_MAX - b->len - 1)
		return SG_ERR_NOMEM;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return SG_OK;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *p = realloc(b->data, cap);
	if (!p)
		return SG_ERR_NOMEM;
	b->data = p;
	b->cap = cap;
	return SG_OK;
}

sg_err sg_buf_append(struct sg_buf *b, const void *p, size_t n)
{
	sg_err e = sg_buf_reserve(b, n);
	if (e)
		return e;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return SG_OK;
}

sg_err sg_buf_appends(struct sg_buf *b, const char *s)
{
	return sg_buf_append(b, s, strlen(s));
}

sg_err sg_buf_printf(struct sg_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return SG_ERR_INVALID;
	sg_err e = sg_buf_reserve(b, (size_t)n);
	if (e)
		return e;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return SG_OK;
}

void sg_buf_reset(struct sg_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void sg_buf_free(struct sg_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void sg_buf_wipe(struct sg_buf *b)
{
	if (b->data)
		OPENSSL_cleanse(b->data, b->cap);
	sg_buf_free(b);
}

char *sg_buf_steal(struct sg_buf *b)
{
	char *p = b->data;
	if (!p)
		p = calloc(1, 1);
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}
