/* tests/sdd_peer.h: blocking SEALDD frame I/O on an OpenSSL connection, for the test peers
 * that play a SEALDD server against the client library (tests/unit/test_sddc_stream.c,
 * fuzz/fuzz_sddc.c). Header-only: each program takes the few lines it uses. */
#ifndef SG_TESTS_SDD_PEER_H
#define SG_TESTS_SDD_PEER_H

#include "sdd/proto.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

/* All n bytes (0), or -1. */
static inline int peer_wr(SSL *ssl, const void *p, size_t n)
{
	size_t w;
	return n == 0 || (SSL_write_ex(ssl, p, n, &w) == 1 && w == n) ? 0 : -1;
}

static inline int peer_rd(SSL *ssl, void *p, size_t n)
{
	for (size_t got = 0, k; got < n; got += k)
		if (SSL_read_ex(ssl, (uint8_t *)p + got, n - got, &k) != 1)
			return -1;
	return 0;
}

/* One whole frame, its payload into payload (at most cap bytes): 0, or -1 when the
 * connection ended or the frame is malformed or larger. */
static inline int peer_rd_frame(SSL *ssl, struct sg_sdd_frame *f, uint8_t *payload, size_t cap)
{
	uint8_t h[SG_SDD_HDR_LEN];
	if (peer_rd(ssl, h, sizeof h) || sg_sdd_frame_parse_header(h, f) != 0 || f->len > cap)
		return -1;
	f->payload = payload;
	return peer_rd(ssl, payload, f->len);
}

#endif
