/* base/err.h: the error codes every sealguard function returns, and their names. */
#ifndef SG_BASE_ERR_H
#define SG_BASE_ERR_H

typedef enum sg_err {
	SG_OK = 0,
	SG_ERR_NOMEM,    /* allocation failed */
	SG_ERR_INVALID,  /* bad argument or bad input */
	SG_ERR_CONFIG,   /* configuration rejected */
	SG_ERR_IO,       /* file or socket error (errno is meaningful) */
	SG_ERR_TLS,      /* OpenSSL reported an error */
	SG_ERR_NOTFOUND, /* no such object */
	SG_ERR_EXISTS,   /* object already exists */
	SG_ERR_DENIED,   /* authentication or authorization refused */
	SG_ERR_LIMIT,    /* a size, rate or count limit was hit */
	SG_ERR_TIMEOUT,  /* the operation took too long */
	SG_ERR_PROTO,    /* the peer broke the protocol */
	SG_ERR_INTERNAL, /* a bug or an unexpected library failure */
} sg_err;

/* Returns a static, human-readable name for an error code. */
const char *sg_err_str(sg_err e);

/* Writes a formatted message into err (of errlen bytes, may be NULL) and returns code.
 * Lets a function fail with one line: return sg_fail(err, errlen, SG_ERR_CONFIG, "..."). */
sg_err sg_fail(char *err, unsigned long errlen, sg_err code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends OpenSSL's queued errors (most recent last) to err as "; reason", and clears them. */
void sg_fail_append_openssl(char *err, unsigned long errlen);
/* Replaces every control byte of s (below 0x20, and 0x7f) with '?', in place; returns s. sg_fail
 * does this to every message it writes. */
char *sg_str_printable(char *s);

#endif
