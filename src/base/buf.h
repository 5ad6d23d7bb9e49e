/* base/buf.h: a growable byte buffer, always NUL-terminated so it can hold text. */
#ifndef SG_BASE_BUF_H
#define SG_BASE_BUF_H

#include "base/err.h"
#include <stddef.h>

struct sg_buf {
	char *data; /* owned; NULL until the first append */
	size_t len;
	size_t cap;
};

#define SG_BUF_INIT                                                                                \
	{                                                                                          \
		NULL, 0, 0                                                                         \
	}

sg_err sg_buf_reserve(struct sg_buf *b, size_t extra);
sg_err sg_buf_append(struct sg_buf *b, const void *p, size_t n);
sg_err sg_buf_appends(struct sg_buf *b, const char *s);
sg_err sg_buf_printf(struct sg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sg_buf_reset(struct sg_buf *b); /* len = 0, keeps the memory */
/* Frees the memory. Use sg_buf_wipe for buffers that held secrets. */
void sg_buf_free(struct sg_buf *b);
void sg_buf_wipe(struct sg_buf *b); /* OPENSSL_cleanse + free */
/* Hands the data over to the caller (who frees it with free()); the buffer is left empty. */
char *sg_buf_steal(struct sg_buf *b);

#endif
