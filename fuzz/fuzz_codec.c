/* fuzz/fuzz_codec.c: the SEALDD-UU codecs that read bytes from the network
 * (docs/sdd-protocol.md): a data channel's frame stream, sddFlowId text, base64url, and URLLC
 * duplicate elimination. The first input byte picks which; the rest is its input. */
#include "fuzz.h"

#include "base/b64.h"
#include "sdd/proto.h"

#include <string.h>

/* A byte stream as a data channel receives it: frames one after the other. Every frame the
 * parser accepts must be what its header says (payload in place, length = header + payload),
 * the header alone must judge it the same way, and writing the header again must give the
 * same 32 bytes (no field the parser ignores). */
static void frames(const uint8_t *d, size_t n)
{
	size_t off = 0;
	while (off < n) {
		struct sg_sdd_frame f, h;
		int r = sg_sdd_frame_parse(d + off, n - off, &f);
		if (n - off >= SG_SDD_HDR_LEN) {
			int rh = sg_sdd_frame_parse_header(d + off, &h);
			FUZZ_CHECK(r < 0 ? rh == r : rh == 0);
			FUZZ_CHECK(r <= 0 ||
			           (h.type == f.type && h.len == f.len && h.seq == f.seq &&
			            memcmp(h.flow, f.flow, SG_SDD_FLOW_ID_LEN) == 0 && !h.payload));
		}
		if (r < 0) {
			FUZZ_CHECK(strlen(sg_sdd_perr_str(r)) > 0);
			return;
		}
		if (r == 0) { /* more bytes needed: only when the payload is incomplete */
			FUZZ_CHECK(n - off < SG_SDD_HDR_LEN ||
			           n - off < SG_SDD_HDR_LEN + (size_t)h.len);
			return;
		}
		FUZZ_CHECK(f.type >= 1 && f.type <= SG_SDD_FTYPE_MAX);
		FUZZ_CHECK(f.len <= SG_SDD_MAX_PAYLOAD);
		FUZZ_CHECK(f.type != SG_SDD_AUTH || f.len <= SG_SDD_MAX_TOKEN);
		FUZZ_CHECK((size_t)r == SG_SDD_HDR_LEN + f.len && (size_t)r <= n - off);
		FUZZ_CHECK(f.payload == d + off + SG_SDD_HDR_LEN);
		uint8_t hdr[SG_SDD_HDR_LEN];
		sg_sdd_frame_header(hdr, f.type, f.len, f.seq, f.flow);
		FUZZ_CHECK(memcmp(hdr, d + off, SG_SDD_HDR_LEN) == 0);
		off += (size_t)r;
	}
}

/* sddFlowId text: accepted only in canonical form, so text -> id -> text is the identity. */
static void flow_text(const uint8_t *d, size_t n)
{
	char t[64];
	if (n >= sizeof t)
		n = sizeof t - 1;
	memcpy(t, d, n);
	t[n] = '\0';
	uint8_t id[SG_SDD_FLOW_ID_LEN];
	if (sg_sdd_flow_from_text(t, id) != 0)
		return;
	char back[SG_SDD_FLOW_TEXT_LEN + 1];
	sg_sdd_flow_to_text(id, back);
	FUZZ_CHECK(strcmp(back, t) == 0);
}

/* base64url: what decodes encodes back to the same length and decodes to the same bytes; what
 * is encoded decodes back. */
static void b64(const uint8_t *d, size_t n)
{
	uint8_t out[1024], again[1024];
	char enc[1400];
	size_t k = 0, k2 = 0;
	if (n <= 1300 && sg_b64url_decode((const char *)d, n, out, sizeof out, &k) == SG_OK) {
		FUZZ_CHECK(k <= sizeof out && sg_b64url_len(k) == n);
		sg_b64url_encode(out, k, enc);
		FUZZ_CHECK(sg_b64url_decode(enc, strlen(enc), again, sizeof again, &k2) == SG_OK);
		FUZZ_CHECK(k2 == k && memcmp(again, out, k) == 0);
	}
	if (n > sizeof out)
		n = sizeof out;
	sg_b64url_encode(d, n, enc);
	FUZZ_CHECK(strlen(enc) == sg_b64url_len(n));
	FUZZ_CHECK(sg_b64url_decode(enc, strlen(enc), again, sizeof again, &k2) == SG_OK);
	FUZZ_CHECK(k2 == n && memcmp(again, d, n) == 0);
}

/* URLLC duplicate elimination (D3) against a model: a sequence number is accepted exactly when
 * it is not 0, was not accepted before, and is within SG_SDD_WINDOW of the highest accepted so
 * far. The input is a list of 16-bit steps, so that inputs stay near the window's edge; they
 * start at 1, or (top) 60,000 below the largest sequence number, 2^64 - 1. */
static void dedup(const uint8_t *d, size_t n, int top_start)
{
	struct sg_sdd_dedup w;
	memset(&w, 0, sizeof w);
	static uint64_t seen[4096];
	size_t nseen = 0;
	uint64_t seq = top_start ? UINT64_MAX - 60000 : 1, top = 0;
	for (size_t i = 0; i + 2 <= n && nseen < sizeof seen / sizeof seen[0]; i += 2) {
		int16_t step = (int16_t)(d[i] << 8 | d[i + 1]);
		seq = step < 0 && (uint64_t)-step > seq ? 0 : seq + (uint64_t)(int64_t)step;
		int dup = 0;
		for (size_t j = 0; j < nseen && !dup; j++)
			dup = seen[j] == seq;
		int want = seq != 0 && !dup && (seq > top || top - seq < SG_SDD_WINDOW);
		FUZZ_CHECK(sg_sdd_dedup_accept(&w, seq) == want);
		if (want) {
			seen[nseen++] = seq;
			top = seq > top ? seq : top;
		}
		FUZZ_CHECK(w.top == top);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	switch (data[0] % 4) {
	case 0:
		frames(data + 1, size - 1);
		break;
	case 1:
		flow_text(data + 1, size - 1);
		break;
	case 2:
		b64(data + 1, size - 1);
		break;
	default:
		dedup(data + 1, size - 1, data[0] >> 2 & 1);
	}
	return 0;
}
