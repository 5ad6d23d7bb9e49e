/* base/log.h: structured logging as JSON lines (one object per line) on stderr or a file.
 * Secrets are never passed to these functions: log identities and ids, not tokens or keys. */
#ifndef SG_BASE_LOG_H
#define SG_BASE_LOG_H

#include <stdio.h>

enum sg_log_level { SG_LOG_DEBUG, SG_LOG_INFO, SG_LOG_WARN, SG_LOG_ERROR, SG_LOG_OFF };

/* Sets the minimum level written (default INFO) and the stream (default stderr). */
void sg_log_set_level(enum sg_log_level level);
void sg_log_set_stream(FILE *f);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 when unknown. */
int sg_log_level_parse(const char *s);
int sg_log_enabled(enum sg_log_level level);

/* Writes {"ts":..,"level":..,"msg":..} plus extra fields. `fields` is either NULL or a string
 * of already-encoded JSON members without braces, e.g. "\"listener\":\"SEAL-UU\"". */
void sg_log_json(enum sg_log_level level, const char *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define sg_log_debug(...) sg_log_json(SG_LOG_DEBUG, NULL, __VA_ARGS__)
#define sg_log_info(...)  sg_log_json(SG_LOG_INFO, NULL, __VA_ARGS__)
#define sg_log_warn(...)  sg_log_json(SG_LOG_WARN, NULL, __VA_ARGS__)
#define sg_log_error(...) sg_log_json(SG_LOG_ERROR, NULL, __VA_ARGS__)

/* Writes one complete, pre-formatted line (newline appended) atomically. Used by the access log. */
void sg_log_raw_line(const char *line, size_t len);

/* Appends s to out as a JSON string body (without quotes), escaping as RFC 8259 requires.
 * Returns the number of bytes written (truncated at outlen - 1, always NUL-terminated). */
size_t sg_json_escape(char *out, size_t outlen, const char *s);

#endif
