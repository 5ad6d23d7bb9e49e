/* base/addrtab.h: a value per client address, for limits on what one address may hold at once
 * (G4: connections still in their TLS handshake, channels not yet authenticated) and on how
 * fast it may ask (base/ratelimit.h).
 * A key is 16 bytes: an IPv4 address as ::ffff:a.b.c.d, an IPv6 address by its /64 prefix (one
 * host usually holds a whole /64). A value is a nonzero 64-bit number; 0 means "no entry".
 * Linear probing with a per-table random seed, growing; not thread-safe (callers lock or keep a
 * table to one thread). */
#ifndef SG_BASE_ADDRTAB_H
#define SG_BASE_ADDRTAB_H

#include <stddef.h>
#include <stdint.h>

struct sg_addrtab {
	struct sg_addrent *v;
	size_t cap, used;
	uint64_t seed;
};
/* The key of a socket address (AF_INET or AF_INET6); -1 for another family. */
int sg_addr_key(const void *sockaddr, size_t len, uint8_t key[16]);
/* The same from a peer's text, "1.2.3.4:5678" or "[2001:db8::1]:5678"; -1 when it is neither. */
int sg_addr_key_text(const char *peer, uint8_t key[16]);
uint64_t sg_addrtab_get(const struct sg_addrtab *t, const uint8_t key[16]); /* 0: none */
/* Sets key's value; 0 removes the entry. -1 when out of memory (nothing changed). */
int sg_addrtab_set(struct sg_addrtab *t, const uint8_t key[16], uint64_t v);
/* Removes every entry for which drop(value, arg) is true. */
void sg_addrtab_prune(struct sg_addrtab *t, int (*drop)(uint64_t v, void *arg), void *arg);
/* Counts: adds one to key's value and returns the new count, 0 when out of memory (nothing
 * added); takes one from it (the entry goes at zero). */
unsigned sg_addrtab_inc(struct sg_addrtab *t, const uint8_t key[16]);
void sg_addrtab_dec(struct sg_addrtab *t, const uint8_t key[16]);
void sg_addrtab_free(struct sg_addrtab *t);

#endif
