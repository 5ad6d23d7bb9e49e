/* base/addrtab.c: a value per client address (base/addrtab.h). */
#include "base/addrtab.h"

#include "base/rand.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct sg_addrent {
	uint8_t key[16];
	uint64_t n; /* 0: free slot */
};

int sg_addr_key(const void *sockaddr, size_t len, uint8_t key[16])
{
	const struct sockaddr *sa = sockaddr;
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		memcpy(key, a, memcmp(a, mapped, 12) == 0 ? 16 : 8); /* v4-mapped whole, else /64 */
		return 0;
	}
	return -1;
}

int sg_addr_key_text(const char *peer, uint8_t key[16])
{
	const char *colon = peer ? strrchr(peer, ':') : NULL;
	size_t n = colon ? (size_t)(colon - peer) : 0;
	char a[INET6_ADDRSTRLEN + 1];
	if (n >= 2 && peer[0] == '[' && peer[n - 1] == ']' && n - 2 < sizeof a) {
		struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
		snprintf(a, sizeof a, "%.*s", (int)(n - 2), peer + 1);
		if (inet_pton(AF_INET6, a, &s6.sin6_addr) == 1)
			return sg_addr_key(&s6, sizeof s6, key);
	} else if (n && n < sizeof a) {
		struct sockaddr_in s4 = {.sin_family = AF_INET};
		snprintf(a, sizeof a, "%.*s", (int)n, peer);
		if (inet_pton(AF_INET, a, &s4.sin_addr) == 1)
			return sg_addr_key(&s4, sizeof s4, key);
	}
	return -1;
}

static size_t at_slot(const struct sg_addrtab *t, const uint8_t key[16])
{
	uint64_t h = t->seed;
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 0x100000001b3ull;
	h ^= h >> 29;
	return (size_t)h & (t->cap - 1);
}

/* The slot holding key, or the free slot where it would go. */
static size_t at_find(const struct sg_addrtab *t, const uint8_t key[16])
{
	size_t i = at_slot(t, key);
	while (t->v[i].n && memcmp(t->v[i].key, key, 16) != 0)
		i = (i + 1) & (t->cap - 1);
	return i;
}

/* Rehashes the live entries into a table of ncap slots (the seed is drawn once). */
static int at_rehash(struct sg_addrtab *t, size_t ncap)
{
	struct sg_addrent *nv = calloc(ncap, sizeof *nv);
	if (!nv)
		return -1;
	if (!t->cap && sg_random_bytes(&t->seed, sizeof t->seed) != SG_OK) {
		free(nv);
		return -1;
	}
	struct sg_addrtab n = {.v = nv, .cap = ncap, .used = t->used, .seed = t->seed};
	for (size_t i = 0; i < t->cap; i++)
		if (t->v[i].n)
			nv[at_find(&n, t->v[i].key)] = t->v[i];
	free(t->v);
	*t = n;
	return 0;
}

uint64_t sg_addrtab_get(const struct sg_addrtab *t, const uint8_t key[16])
{
	return t->cap ? t->v[at_find(t, key)].n : 0;
}

/* Empties slot i; later entries of the probe run move back into the gap unless their home
 * slot lies cyclically in (gap, their slot] (removal without tombstones). */
static void at_remove(struct sg_addrtab *t, size_t i)
{
	size_t mask = t->cap - 1;
	t->v[i].n = 0;
	t->used--;
	for (size_t j = (i + 1) & mask; t->v[j].n; j = (j + 1) & mask) {
		size_t k = at_slot(t, t->v[j].key);
		int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			t->v[i] = t->v[j];
			t->v[j].n = 0;
			i = j;
		}
	}
}

int sg_addrtab_set(struct sg_addrtab *t, const uint8_t key[16], uint64_t v)
{
	if (!v) {
		if (t->cap) {
			size_t i = at_find(t, key);
			if (t->v[i].n)
				at_remove(t, i);
		}
		return 0;
	}
	size_t i = t->cap ? at_find(t, key) : 0;
	if (!t->cap || !t->v[i].n) {
		/* load factor at most 1/2 */
		if ((t->used + 1) * 2 > t->cap && at_rehash(t, t->cap ? t->cap * 2 : 64) != 0)
			return -1;
		i = at_find(t, key);
		memcpy(t->v[i].key, key, 16);
		t->used++;
	}
	t->v[i].n = v;
	return 0;
}

void sg_addrtab_prune(struct sg_addrtab *t, int (*drop)(uint64_t v, void *arg), void *arg)
{
	/* in place: a removal may move a later entry into slot i, which is then looked at again;
	 * entries only move back into the gap, never past the slot being looked at */
	for (size_t i = 0; i < t->cap;)
		if (t->v[i].n && drop(t->v[i].n, arg))
			at_remove(t, i);
		else
			i++;
}

unsigned sg_addrtab_inc(struct sg_addrtab *t, const uint8_t key[16])
{
	uint64_t n = sg_addrtab_get(t, key) + 1;
	return sg_addrtab_set(t, key, n) == 0 ? (unsigned)n : 0;
}

void sg_addrtab_dec(struct sg_addrtab *t, const uint8_t key[16])
{
	uint64_t n = sg_addrtab_get(t, key);
	if (n)
		sg_addrtab_set(t, key, n - 1);
}

void sg_addrtab_free(struct sg_addrtab *t)
{
	free(t->v);
	memset(t, 0, sizeof *t);
}
