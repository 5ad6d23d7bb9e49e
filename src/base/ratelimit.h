/* base/ratelimit.h: request rate limits per key (G4): a client address (sg_addr_key), or the
 * first 16 bytes of a digest of an authenticated identity. The generic cell rate algorithm
 * (GCRA, the token bucket kept as one "theoretical arrival time" per key): a key may make
 * `burst` requests at once and then `rate` per second. Thread-safe. Memory is bounded: at most
 * max_keys keys are tracked; keys whose allowance is whole again are forgotten when room is
 * needed, and while more than max_keys keys are all busy at once a new one is let through
 * untracked (counted by the caller), so that the table never refuses a key it knows nothing
 * about. */
#ifndef SG_BASE_RATELIMIT_H
#define SG_BASE_RATELIMIT_H

#include "base/addrtab.h"

#include <pthread.h>
#include <stdint.h>

struct sg_ratelimit {
	pthread_mutex_t mu;
	struct sg_addrtab t;   /* address key -> theoretical arrival time, µs */
	uint64_t interval_us;  /* 1 s / rate */
	uint64_t tolerance_us; /* (burst - 1) * interval */
	size_t max_keys;
	uint64_t next_prune_us; /* no sweep for idle addresses before */
};

/* keys one table tracks at once in the server (about 3 MiB at most) */
#define SG_RATELIMIT_MAX_KEYS 65536u

enum sg_rl_verdict { SG_RL_OK = 0, SG_RL_LIMITED, SG_RL_UNTRACKED };

/* rate > 0 requests per second; burst >= 1 (0: rate, at least 1). */
void sg_ratelimit_init(struct sg_ratelimit *rl, unsigned rate, unsigned burst, size_t max_keys);
void sg_ratelimit_free(struct sg_ratelimit *rl);
/* One request of key at now_us (a monotonic clock). SG_RL_LIMITED: refused, and
 * *retry_us says when the next one would pass. */
enum sg_rl_verdict sg_ratelimit_take(struct sg_ratelimit *rl, const uint8_t key[16],
                                     uint64_t now_us, uint64_t *retry_us);

#endif
