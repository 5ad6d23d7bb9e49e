#include "base/clock.h"

#include <stdio.h>
#include <time.h>

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sg_now_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

struct timespec sg_deadline_in_ms(clockid_t clk, unsigned ms)
{
	struct timespec t;
	clock_gettime(clk, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

int64_t sg_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

int64_t sg_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void sg_time_iso8601(char *out, size_t outlen, int64_t epoch_ms)
{
	time_t secs = (time_t)(epoch_ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (int)(epoch_ms % 1000));
}

static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil: eras of 400 years, years starting in March). */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int era = y / 400; /* y >= 1969 here: no negative division */
	int yoe = y - era * 400;
	int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (int64_t)era * 146097 + doe - 719468;
}

int sg_time_parse_utc(const char *s, int64_t *epoch_s)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:dd";
	if (!s)
		return -1;
	for (size_t i = 0; i < sizeof pat - 1; i++) /* a NUL fails both: no read past it */
		if (pat[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != pat[i])
			return -1;
	int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
	int h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (y < 1970 || mo < 1 || mo > 12 || h > 23 || mi > 59 || se > 60)
		return -1;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d < 1 || d > mdays[mo - 1] + (mo == 2 && leap))
		return -1;
	const char *p = s + sizeof pat - 1;
	if (*p == '.') {
		size_t n = 0;
		while (p[1 + n] >= '0' && p[1 + n] <= '9')
			n++;
		if (!n)
			return -1;
		p += 1 + n;
	}
	if (p[0] != 'Z' || p[1])
		return -1;
	*epoch_s = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (se == 60 ? 59 : se);
	return 0;
}
