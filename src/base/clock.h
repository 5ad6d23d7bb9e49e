/* base/clock.h: wall-clock and monotonic time in milliseconds, and RFC 3339 formatting. */
#ifndef SG_BASE_CLOCK_H
#define SG_BASE_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

int64_t sg_now_ms(void);  /* milliseconds since the Unix epoch (CLOCK_REALTIME) */
int64_t sg_mono_ms(void); /* milliseconds of CLOCK_MONOTONIC, for timeouts and durations */
int64_t sg_mono_us(void); /* microseconds of CLOCK_MONOTONIC, for latency measurement */
/* The time ms milliseconds from now on clock clk, for pthread_cond_timedwait (whose condition
 * variable uses clk). */
struct timespec sg_deadline_in_ms(clockid_t clk, unsigned ms);
/* Writes e.g. "2026-11-27T23:44:38.123Z" (UTC, RFC 3339). */
void sg_time_iso8601(char *out, size_t outlen, int64_t epoch_ms);
/* Parses an RFC 3339 §5.6 date-time in UTC, "YYYY-MM-DDThh:mm:ss[.fraction]Z": every field
 * with exactly its digits and within its range (second 60, a leap second, counts as second 59
 * of its minute: POSIX time has none), years 1970-9999, the fraction dropped. No offsets other
 * than Z, no lower-case t/z, no spaces. 0 with *epoch_s, or -1. */
int sg_time_parse_utc(const char *s, int64_t *epoch_s);

#endif
