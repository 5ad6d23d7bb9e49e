/* base/addrtab.h: counts per client address, for limits on what one address may hold at once
 * (G4: connections still in their TLS handshake, channels not yet authenticated).
 * A key is 16 bytes: an IPv4 address as ::ffff:a.b.c.d, an IPv6 address by its /64 prefix (one
 * host usually holds a whole /64). Linear probing with a per-table random seed, growing; not
 * thread-safe (callers lock or keep a table to one thread). */
#ifndef SG_BASE_ADDRTAB_H
#define SG_BASE_ADDRTAB_H

#include <stddef.h>
#include <stdint.h>

struct sg_addrtab {
	struct sg_addrcnt *v;
	size_t cap, used;
	uint64_t seed;
};
/* The key of a socket address (AF_INET or AF_INET6); -1 for another family. */
int sg_addr_key(const void *sockaddr, size_t len, uint8_t key[16]);
/* Adds one to key's count and returns the new count; 0 when out of memory (nothing added). */
unsigned sg_addrtab_inc(struct sg_addrtab *t, const uint8_t key[16]);
/* Takes one from key's count (the entry goes at zero). */
void sg_addrtab_dec(struct sg_addrtab *t, const uint8_t key[16]);
unsigned sg_addrtab_get(const struct sg_addrtab *t, const uint8_t key[16]);
void sg_addrtab_free(struct sg_addrtab *t);

#endif
