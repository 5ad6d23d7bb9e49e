/* Unit tests of base/: base64url, buffers, JSON escaping, durable file writes, address tables,
 * request rate limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/addrtab.h"
#include "base/b64.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/file.h"
#include "base/log.h"
#include "base/rand.h"
#include "base/ratelimit.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void test_b64url_rfc4648_vectors(void **state)
{
	(void)state;
	/* RFC 4648 §10 vectors, in the URL-safe alphabet without padding. */
	static const struct {
		const char *in, *out;
	} v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
	         {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char out[32];
		sg_b64url_encode(v[i].in, strlen(v[i].in), out);
		assert_string_equal(out, v[i].out);
		assert_int_equal(sg_b64url_len(strlen(v[i].in)), strlen(v[i].out));
		unsigned char back[32];
		size_t n = 0;
		assert_int_equal(sg_b64url_decode(out, strlen(out), back, sizeof back, &n), SG_OK);
		assert_int_equal(n, strlen(v[i].in));
		assert_memory_equal(back, v[i].in, n);
	}
	/* The URL-safe alphabet: 0xfb 0xff -> "-_8". */
	unsigned char raw[] = {0xfb, 0xff};
	char out[8];
	sg_b64url_encode(raw, 2, out);
	assert_string_equal(out, "-_8");
}

static void test_b64url_rejects(void **state)
{
	(void)state;
	unsigned char out[16];
	size_t n;
	assert_int_equal(sg_b64url_decode("Zm9v+", 5, out, sizeof out, &n), SG_ERR_INVALID);
	assert_int_equal(sg_b64url_decode("Zm9v/A", 6, out, sizeof out, &n), SG_ERR_INVALID);
	assert_int_equal(sg_b64url_decode("Zm9=", 4, out, sizeof out, &n), SG_ERR_INVALID);
	assert_int_equal(sg_b64url_decode("Z", 1, out, sizeof out, &n), SG_ERR_INVALID);
	/* Non-canonical: trailing bits set ("Zh" would decode to 'f' with leftover bits). */
	assert_int_equal(sg_b64url_decode("Zh", 2, out, sizeof out, &n), SG_ERR_INVALID);
	assert_int_equal(sg_b64url_decode("Zm9vYmFy", 8, out, 3, &n), SG_ERR_LIMIT);
}

static void test_buf(void **state)
{
	(void)state;
	struct sg_buf b = SG_BUF_INIT;
	for (int i = 0; i < 1000; i++)
		assert_int_equal(sg_buf_printf(&b, "%d,", i), SG_OK);
	assert_true(b.len > 3000);
	assert_int_equal(strncmp(b.data, "0,1,2,", 6), 0);
	assert_int_equal(b.data[b.len], '\0');
	sg_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(sg_buf_appends(&b, "abc"), SG_OK);
	char *s = sg_buf_steal(&b);
	assert_string_equal(s, "abc");
	assert_null(b.data);
	free(s);
	sg_buf_wipe(&b);
}

static void test_json_escape(void **state)
{
	(void)state;
	char out[64];
	sg_json_escape(out, sizeof out, "a\"b\\c\nd\x01");
	assert_string_equal(out, "a\\\"b\\\\c\\nd\\u0001");
	/* Truncation never splits an escape and always terminates. */
	char small[4];
	sg_json_escape(small, sizeof small, "ab\"c");
	assert_string_equal(small, "ab");
}

/* sg_fail writes one printable line whatever the quoted text holds (a server's ProblemDetails
 * or END reason with terminal escapes, newlines, DEL); UTF-8 passes unchanged. */
static void test_fail_printable(void **state)
{
	(void)state;
	char err[64];
	assert_int_equal(sg_fail(err, sizeof err, SG_ERR_PROTO, "403 %s",
	                         "a\x1b]0;t\x07"
	                         "b\nc\x7f\xc3\xa9"),
	                 SG_ERR_PROTO);
	assert_string_equal(err, "403 a?]0;t?b?c?\xc3\xa9");
	char s[] = "\t x";
	assert_string_equal(sg_str_printable(s), "? x");
	assert_null(sg_str_printable(NULL));
}

static void test_file_atomic(void **state)
{
	(void)state;
	char dir[] = "/tmp/sg-base-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char sub[256], path[300];
	snprintf(sub, sizeof sub, "%s/a/b/c", dir);
	assert_int_equal(sg_mkdirs(sub, 0700), SG_OK);
	assert_int_equal(sg_path_join(path, sizeof path, sub, "f"), SG_OK);
	assert_int_equal(sg_file_write_atomic(path, "one", 3, 0600), SG_OK);
	assert_int_equal(sg_file_write_atomic(path, "two!", 4, 0600), SG_OK);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char *data = NULL;
	size_t n = 0;
	assert_int_equal(sg_file_read(path, 100, &data, &n), SG_OK);
	assert_int_equal(n, 4);
	assert_string_equal(data, "two!");
	free(data);
	assert_int_equal(sg_file_read(path, 2, &data, &n), SG_ERR_LIMIT);
	assert_int_equal(sg_file_read("/nonexistent/x", 10, &data, &n), SG_ERR_NOTFOUND);
	char small[8];
	assert_int_equal(sg_path_join(small, sizeof small, "abcdef", "gh"), SG_ERR_LIMIT);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_random_token(void **state)
{
	(void)state;
	char a[64], b[64];
	assert_int_equal(sg_random_token(a, sizeof a, 32), SG_OK);
	assert_int_equal(sg_random_token(b, sizeof b, 32), SG_OK);
	assert_int_equal(strlen(a), 43);
	assert_string_not_equal(a, b);
	assert_int_equal(sg_random_token(a, 10, 32), SG_ERR_INVALID);
}

/* G4: the per-address counts of the pre-authentication limits (listeners, SEALDD), against a plain
 * array under random increments and decrements (few distinct keys, long probe runs, growth and
 * removals in the middle of runs). */
/* A peer's text as every limit keys it: IPv4 whole, IPv6 by its /64, anything else refused. */
static void test_addr_key_text(void **state)
{
	(void)state;
	uint8_t a[16], b[16];
	assert_int_equal(sg_addr_key_text("192.0.2.7:443", a), 0);
	assert_int_equal(sg_addr_key_text("192.0.2.8:443", b), 0);
	assert_memory_not_equal(a, b, 16);
	assert_int_equal(sg_addr_key_text("[2001:db8:1:2::1]:5", a), 0);
	assert_int_equal(sg_addr_key_text("[2001:db8:1:2:ffff::9]:6", b), 0);
	assert_memory_equal(a, b, 16); /* the same /64 */
	assert_int_equal(sg_addr_key_text("[2001:db8:1:3::1]:5", b), 0);
	assert_memory_not_equal(a, b, 16);
	assert_int_equal(sg_addr_key_text("example.com:443", a), -1);
	assert_int_equal(sg_addr_key_text("[not-an-address]:1", a), -1);
	assert_int_equal(sg_addr_key_text("192.0.2.7", a), -1);
	assert_int_equal(sg_addr_key_text(NULL, a), -1);
}

static void test_addrtab(void **state)
{
	(void)state;
	struct sg_addrtab t = {0};
	enum { K = 300 };
	unsigned ref[K] = {0};
	uint8_t key[16];
	srand(7);
	for (int op = 0; op < 200000; op++) {
		unsigned k = (unsigned)rand() % K;
		memset(key, 0, sizeof key);
		key[3] = (uint8_t)(k >> 8);
		key[15] = (uint8_t)k;
		if (ref[k] && rand() % 2) {
			sg_addrtab_dec(&t, key);
			ref[k]--;
		} else {
			assert_int_equal(sg_addrtab_inc(&t, key), ++ref[k]);
		}
		if (op % 997 == 0)
			for (unsigned j = 0; j < K; j++) {
				key[3] = (uint8_t)(j >> 8);
				key[15] = (uint8_t)j;
				assert_int_equal(sg_addrtab_get(&t, key), ref[j]);
			}
	}
	size_t live = 0;
	for (unsigned j = 0; j < K; j++)
		live += ref[j] != 0;
	assert_int_equal(t.used, live);
	/* draining every count leaves an empty table */
	for (unsigned j = 0; j < K; j++) {
		key[3] = (uint8_t)(j >> 8);
		key[15] = (uint8_t)j;
		while (ref[j]--)
			sg_addrtab_dec(&t, key);
	}
	assert_int_equal(t.used, 0);
	sg_addrtab_dec(&t, key); /* absent: nothing happens */
	sg_addrtab_free(&t);

	/* keys: IPv4 as v4-mapped, IPv6 by its /64, v4-mapped IPv6 like the IPv4 address */
	struct sockaddr_in a4 = {.sin_family = AF_INET};
	inet_pton(AF_INET, "192.0.2.7", &a4.sin_addr);
	uint8_t k4[16], k6a[16], k6b[16], k6c[16], km[16];
	assert_int_equal(sg_addr_key(&a4, sizeof a4, k4), 0);
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
	inet_pton(AF_INET6, "2001:db8:1:2::1", &a6.sin6_addr);
	assert_int_equal(sg_addr_key(&a6, sizeof a6, k6a), 0);
	inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &a6.sin6_addr);
	assert_int_equal(sg_addr_key(&a6, sizeof a6, k6b), 0);
	inet_pton(AF_INET6, "2001:db8:1:3::1", &a6.sin6_addr);
	assert_int_equal(sg_addr_key(&a6, sizeof a6, k6c), 0);
	inet_pton(AF_INET6, "::ffff:192.0.2.7", &a6.sin6_addr);
	assert_int_equal(sg_addr_key(&a6, sizeof a6, km), 0);
	assert_memory_equal(k6a, k6b, 16);
	assert_memory_not_equal(k6a, k6c, 16);
	assert_memory_equal(k4, km, 16);
	struct sockaddr un = {.sa_family = AF_UNIX};
	assert_int_equal(sg_addr_key(&un, sizeof un, k4), -1);
	assert_int_equal(sg_addr_key(&a4, 4, k4), -1);
}

static int drop_below(uint64_t v, void *cut)
{
	return v < *(uint64_t *)cut;
}

static void key_of(uint8_t key[16], unsigned k)
{
	memset(key, 0, 16);
	key[3] = (uint8_t)(k >> 8);
	key[15] = (uint8_t)k;
}

/* Values other than counts (the rate limiter's arrival times): set, remove by set(0), and prune
 * by a predicate in the middle of probe runs and across the table's wrap-around, against a plain
 * array. */
static void test_addrtab_prune(void **state)
{
	(void)state;
	struct sg_addrtab t = {0};
	enum { K = 2000 };
	static uint64_t ref[K];
	uint8_t key[16];
	srand(11);
	for (int round = 0; round < 40; round++) {
		for (int op = 0; op < 3000; op++) {
			unsigned k = (unsigned)rand() % K;
			uint64_t v = rand() % 5 ? (uint64_t)rand() + 1 : 0; /* 1 in 5 removes */
			key_of(key, k);
			assert_int_equal(sg_addrtab_set(&t, key, v), 0);
			ref[k] = v;
		}
		uint64_t cut = (uint64_t)rand();
		sg_addrtab_prune(&t, drop_below, &cut);
		size_t live = 0;
		for (unsigned j = 0; j < K; j++) {
			if (ref[j] < cut)
				ref[j] = 0;
			live += ref[j] != 0;
			key_of(key, j);
			assert_int_equal(sg_addrtab_get(&t, key), ref[j]);
		}
		assert_int_equal(t.used, live);
	}
	sg_addrtab_free(&t);
}

/* G4: GCRA per address: a burst at once, then one request per interval; addresses apart; an idle
 * address has its burst again; a full table lets new addresses through untracked and makes room
 * from idle ones (not more often than its sweep gap). */
static void test_ratelimit(void **state)
{
	(void)state;
	struct sg_ratelimit rl;
	uint8_t a[16], b[16], c[16];
	key_of(a, 1);
	key_of(b, 2);
	key_of(c, 3);
	uint64_t now = 5000000000ull, retry = 0;
	const uint64_t I = 100000; /* 10 per second */
	sg_ratelimit_init(&rl, 10, 3, 2);
	for (int i = 0; i < 3; i++)
		assert_int_equal(sg_ratelimit_take(&rl, a, now, &retry), SG_RL_OK);
	assert_int_equal(sg_ratelimit_take(&rl, a, now, &retry), SG_RL_LIMITED);
	assert_int_equal(retry, I);
	assert_int_equal(sg_ratelimit_take(&rl, b, now, &retry), SG_RL_OK); /* another address */
	assert_int_equal(sg_ratelimit_take(&rl, a, now + I - 1, &retry), SG_RL_LIMITED);
	assert_int_equal(retry, 1);
	assert_int_equal(sg_ratelimit_take(&rl, a, now + I, &retry), SG_RL_OK);
	assert_int_equal(sg_ratelimit_take(&rl, a, now + I, &retry), SG_RL_LIMITED);
	/* a refusal costs nothing: the next interval still lets one through */
	assert_int_equal(sg_ratelimit_take(&rl, a, now + 2 * I, &retry), SG_RL_OK);
	/* the table holds 2 addresses, both busy: a third passes untracked, never refused */
	assert_int_equal(sg_ratelimit_take(&rl, b, now + 2 * I, &retry), SG_RL_OK);
	for (int i = 0; i < 10; i++)
		assert_int_equal(sg_ratelimit_take(&rl, c, now + 2 * I, &retry), SG_RL_UNTRACKED);
	/* later, a and b are idle (their whole burst back): the sweep makes room for c */
	now += 10 * I;
	for (int i = 0; i < 3; i++)
		assert_int_equal(sg_ratelimit_take(&rl, c, now, &retry), SG_RL_OK);
	assert_int_equal(sg_ratelimit_take(&rl, c, now, &retry), SG_RL_LIMITED);
	for (int i = 0; i < 3; i++)
		assert_int_equal(sg_ratelimit_take(&rl, a, now, &retry), SG_RL_OK);
	assert_int_equal(rl.t.used, 2);
	/* full of busy addresses again: b goes untracked until c and a are idle */
	assert_int_equal(sg_ratelimit_take(&rl, b, now, &retry), SG_RL_UNTRACKED);
	assert_int_equal(sg_ratelimit_take(&rl, b, now + 4 * I, &retry), SG_RL_OK);
	sg_ratelimit_free(&rl);
	/* a sweep that found nothing to drop is not repeated before 10 ms, even once a is idle */
	sg_ratelimit_init(&rl, 1000, 1, 1);
	assert_int_equal(sg_ratelimit_take(&rl, a, now, &retry), SG_RL_OK);
	assert_int_equal(sg_ratelimit_take(&rl, b, now, &retry), SG_RL_UNTRACKED);
	assert_int_equal(sg_ratelimit_take(&rl, b, now + 2000, &retry), SG_RL_UNTRACKED);
	assert_int_equal(sg_ratelimit_take(&rl, b, now + 10000, &retry), SG_RL_OK);
	sg_ratelimit_free(&rl);

	/* burst 0 means the rate; a rate above 1e6/s still advances time */
	sg_ratelimit_init(&rl, 4, 0, 16);
	for (int i = 0; i < 4; i++)
		assert_int_equal(sg_ratelimit_take(&rl, a, now, &retry), SG_RL_OK);
	assert_int_equal(sg_ratelimit_take(&rl, a, now, &retry), SG_RL_LIMITED);
	assert_int_equal(retry, 250000);
	sg_ratelimit_free(&rl);
	sg_ratelimit_init(&rl, 2000000, 1, 16);
	assert_int_equal(sg_ratelimit_take(&rl, a, now, &retry), SG_RL_OK);
	assert_int_equal(sg_ratelimit_take(&rl, a, now, &retry), SG_RL_LIMITED);
	assert_int_equal(sg_ratelimit_take(&rl, a, now + 1, &retry), SG_RL_OK);
	sg_ratelimit_free(&rl);
}

/* RFC 3339 date-times in UTC: strict digits and ranges; every day of 1970-9999 (every 13th,
 * at a time of day that moves) agrees with the C library's timegm. */
static void test_time_parse(void **state)
{
	(void)state;
	int64_t t = -1;
	assert_int_equal(sg_time_parse_utc("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(sg_time_parse_utc("2024-02-29T12:34:56.250Z", &t), 0);
	assert_int_equal(t, 1709210096);
	assert_int_equal(sg_time_parse_utc("2016-12-31T23:59:60Z", &t), 0); /* a leap second */
	assert_int_equal(t, 1483228799);
	assert_int_equal(sg_time_parse_utc("9999-12-31T23:59:59Z", &t), 0);
	assert_int_equal(t, 253402300799LL);
	static const char *const bad[] = {"",
	                                  "2024-02-29",
	                                  "2024-02-29T12:34:56",
	                                  "2024-02-29T12:34:56+01:00",
	                                  "2024-02-29t12:34:56z",
	                                  " 2024-02-29T12:34:56Z",
	                                  "2024-2-29T12:34:56Z",
	                                  "2024-02-29T12:34:56.Z",
	                                  "2024-02-29T12:34:56ZZ",
	                                  "2023-02-29T00:00:00Z",
	                                  "2024-13-01T00:00:00Z",
	                                  "2024-00-01T00:00:00Z",
	                                  "2024-04-31T00:00:00Z",
	                                  "2024-01-00T00:00:00Z",
	                                  "2024-01-01T24:00:00Z",
	                                  "2024-01-01T00:60:00Z",
	                                  "2024-01-01T00:00:61Z",
	                                  "1969-12-31T23:59:59Z",
	                                  "+2024-01-01T00:00:00Z",
	                                  "10000-01-01T00:00:00Z",
	                                  "2100-02-29T00:00:00Z"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		t = -1;
		if (sg_time_parse_utc(bad[i], &t) != -1 || t != -1)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	assert_int_equal(sg_time_parse_utc(NULL, &t), -1);
	for (int64_t day = 0; day < 2932897; day += 13) { /* through 9999-12-31 */
		time_t want = (time_t)(day * 86400 + (day * 7919) % 86400);
		struct tm tm;
		assert_non_null(gmtime_r(&want, &tm));
		char s[32];
		strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (sg_time_parse_utc(s, &t) != 0 || t != (int64_t)want)
			fail_msg("%s: %lld, want %lld", s, (long long)t, (long long)want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_b64url_rfc4648_vectors),
	    cmocka_unit_test(test_b64url_rejects),
	    cmocka_unit_test(test_buf),
	    cmocka_unit_test(test_json_escape),
	    cmocka_unit_test(test_fail_printable),
	    cmocka_unit_test(test_file_atomic),
	    cmocka_unit_test(test_random_token),
	    cmocka_unit_test(test_addrtab),
	    cmocka_unit_test(test_addr_key_text),
	    cmocka_unit_test(test_addrtab_prune),
	    cmocka_unit_test(test_ratelimit),
	    cmocka_unit_test(test_time_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
