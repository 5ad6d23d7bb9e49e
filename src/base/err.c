#include "base/err.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *sg_err_str(sg_err e)
{
	switch (e) {
	case SG_OK:
		return "ok";
	case SG_ERR_NOMEM:
		return "out of memory";
	case SG_ERR_INVALID:
		return "invalid input";
	case SG_ERR_CONFIG:
		return "configuration error";
	case SG_ERR_IO:
		return "I/O error";
	case SG_ERR_TLS:
		return "TLS error";
	case SG_ERR_NOTFOUND:
		return "not found";
	case SG_ERR_EXISTS:
		return "already exists";
	case SG_ERR_DENIED:
		return "denied";
	case SG_ERR_LIMIT:
		return "limit exceeded";
	case SG_ERR_TIMEOUT:
		return "timed out";
	case SG_ERR_PROTO:
		return "protocol error";
	case SG_ERR_INTERNAL:
		return "internal error";
	}
	return "unknown error";
}

sg_err sg_fail(char *err, unsigned long errlen, sg_err code, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
		sg_str_printable(err);
	}
	return code;
}

char *sg_str_printable(char *s)
{
	/* an error may quote a peer (a server's ProblemDetails, a SEALDD END reason): its
	 * control bytes must not reach a terminal or split a log line */
	for (unsigned char *p = (unsigned char *)s; p && *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
	return s;
}

void sg_fail_append_openssl(char *err, unsigned long errlen)
{
	unsigned long e;
	while ((e = ERR_get_error()) != 0) {
		if (!err || !errlen)
			continue;
		size_t used = strlen(err);
		if (used + 3 >= errlen)
			continue;
		char reason[256];
		ERR_error_string_n(e, reason, sizeof reason);
		snprintf(err + used, errlen - used, "; %s", reason);
	}
}
