#include "base/log.h"
#include "base/clock.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

static enum sg_log_level g_level = SG_LOG_INFO;
static FILE *g_stream;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void sg_log_set_level(enum sg_log_level level)
{
	g_level = level;
}

void sg_log_set_stream(FILE *f)
{
	g_stream = f;
}

int sg_log_enabled(enum sg_log_level level)
{
	return level >= g_level && g_level != SG_LOG_OFF;
}

int sg_log_level_parse(const char *s)
{
	static const char *names[] = {"debug", "info", "warn", "error", "off"};
	for (int i = 0; i < 5; i++)
		if (strcasecmp(s, names[i]) == 0)
			return i;
	return -1;
}

size_t sg_json_escape(char *out, size_t outlen, const char *s)
{
	size_t n = 0;
	if (!outlen)
		return 0;
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		char tmp[8];
		const char *piece = tmp;
		size_t plen;
		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			plen = 2;
		} else if (c == '\n') {
			piece = "\\n";
			plen = 2;
		} else if (c == '\r') {
			piece = "\\r";
			plen = 2;
		} else if (c == '\t') {
			piece = "\\t";
			plen = 2;
		} else if (c < 0x20 || c == 0x7f) {
			plen = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", c);
		} else {
			tmp[0] = (char)c;
			plen = 1;
		}
		if (n + plen >= outlen)
			break;
		memcpy(out + n, piece, plen);
		n += plen;
	}
	out[n] = '\0';
	return n;
}

void sg_log_raw_line(const char *line, size_t len)
{
	FILE *f = g_stream ? g_stream : stderr;
	pthread_mutex_lock(&g_lock);
	fwrite(line, 1, len, f);
	fputc('\n', f);
	fflush(f);
	pthread_mutex_unlock(&g_lock);
}

void sg_log_json(enum sg_log_level level, const char *fields, const char *fmt, ...)
{
	static const char *names[] = {"debug", "info", "warn", "error", "off"};
	if (!sg_log_enabled(level))
		return;
	char msg[1024], esc[2048], ts[40], line[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	sg_json_escape(esc, sizeof esc, msg);
	sg_time_iso8601(ts, sizeof ts, sg_now_ms());
	int n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"%s%s}",
	                 ts, names[level], esc, fields ? "," : "", fields ? fields : "");
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line)
		n = (int)strlen(line);
	sg_log_raw_line(line, (size_t)n);
}
