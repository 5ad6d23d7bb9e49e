/* base/ratelimit.c: request rate limits per address or identity (base/ratelimit.h). */
#include "base/ratelimit.h"

#include <string.h>

#define PRUNE_GAP_US 10000u

void sg_ratelimit_init(struct sg_ratelimit *rl, unsigned rate, unsigned burst, size_t max_keys)
{
	memset(rl, 0, sizeof *rl);
	pthread_mutex_init(&rl->mu, NULL);
	rl->interval_us = 1000000u / (rate ? rate : 1);
	if (!rl->interval_us)
		rl->interval_us = 1;
	if (!burst)
		burst = rate ? rate : 1;
	rl->tolerance_us = (uint64_t)(burst - 1) * rl->interval_us;
	rl->max_keys = max_keys ? max_keys : 1;
}

void sg_ratelimit_free(struct sg_ratelimit *rl)
{
	sg_addrtab_free(&rl->t);
	pthread_mutex_destroy(&rl->mu);
}

/* a key whose theoretical arrival time has passed has its whole burst again: it is the same as
 * a key never seen */
static int idle(uint64_t tat, void *now)
{
	return tat <= *(uint64_t *)now;
}

enum sg_rl_verdict sg_ratelimit_take(struct sg_ratelimit *rl, const uint8_t key[16],
                                     uint64_t now_us, uint64_t *retry_us)
{
	enum sg_rl_verdict v = SG_RL_OK;
	pthread_mutex_lock(&rl->mu);
	uint64_t tat = sg_addrtab_get(&rl->t, key);
	if (tat > now_us + rl->tolerance_us) {
		*retry_us = tat - now_us - rl->tolerance_us;
		v = SG_RL_LIMITED;
		goto out;
	}
	if (!tat && rl->t.used >= rl->max_keys) {
		/* a sweep looks at every slot: at most one per PRUNE_GAP_US, so that many busy
		 * addresses cannot make every request pay for one */
		if (now_us >= rl->next_prune_us) {
			sg_addrtab_prune(&rl->t, idle, &now_us);
			rl->next_prune_us = now_us + PRUNE_GAP_US;
		}
		if (rl->t.used >= rl->max_keys) {
			v = SG_RL_UNTRACKED;
			goto out;
		}
	}
	if (tat < now_us)
		tat = now_us;
	if (sg_addrtab_set(&rl->t, key, tat + rl->interval_us) != 0)
		v = SG_RL_UNTRACKED; /* out of memory: let it through */
out:
	pthread_mutex_unlock(&rl->mu);
	return v;
}
