/*
 * SipHash-2-4 as specified in the paper ("SipHash: a fast short-input PRF",
 * 2012): two compression rounds per 8-byte word, four finalisation rounds,
 * words read little-endian whatever the machine.
 */
#include "core/siphash.h"

#include <endian.h>
#include <string.h>

static uint64_t rotl(uint64_t x, unsigned b)
{
	return (x << b) | (x >> (64 - b));
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static void rounds(uint64_t v[4], unsigned n)
{
	while (n-- > 0) {
		v[0] += v[1];
		v[1] = rotl(v[1], 13) ^ v[0];
		v[0] = rotl(v[0], 32);
		v[2] += v[3];
		v[3] = rotl(v[3], 16) ^ v[2];
		v[0] += v[3];
		v[3] = rotl(v[3], 21) ^ v[0];
		v[2] += v[1];
		v[1] = rotl(v[1], 17) ^ v[2];
		v[2] = rotl(v[2], 32);
	}
}

/* One 8-byte word into the state. */
static void compress(uint64_t v[4], uint64_t m)
{
	v[3] ^= m;
	rounds(v, 2);
	v[0] ^= m;
}

void siphash_init(struct siphash *h, const uint8_t key[SIPHASH_KEY_LEN])
{
	uint64_t k0 = le64(key), k1 = le64(key + 8);

	h->v[0] = k0 ^ 0x736f6d6570736575ULL;
	h->v[1] = k1 ^ 0x646f72616e646f6dULL;
	h->v[2] = k0 ^ 0x6c7967656e657261ULL;
	h->v[3] = k1 ^ 0x7465646279746573ULL;
	h->n = 0;
	h->len = 0;
}

void siphash_update(struct siphash *h, const void *data, size_t len)
{
	const uint8_t *p = data;

	h->len += len;
	if (h->n > 0) {
		size_t take = 8 - h->n < len ? 8 - h->n : len;

		memcpy(h->buf + h->n, p, take);
		h->n += take;
		p += take;
		len -= take;
		if (h->n < 8)
			return;
		compress(h->v, le64(h->buf));
		h->n = 0;
	}
	for (; len >= 8; p += 8, len -= 8)
		compress(h->v, le64(p));
	memcpy(h->buf, p, len);
	h->n = len;
}

uint64_t siphash_final(struct siphash *h)
{
	uint8_t last[8] = {0};

	/* The last word: the remaining bytes, the length's low byte on top. */
	memcpy(last, h->buf, h->n);
	last[7] = (uint8_t)h->len;
	compress(h->v, le64(last));
	h->v[2] ^= 0xff;
	rounds(h->v, 4);
	return h->v[0] ^ h->v[1] ^ h->v[2] ^ h->v[3];
}

uint64_t siphash24(const uint8_t key[SIPHASH_KEY_LEN], const void *data,
		   size_t len)
{
	/* The whole message at hand: words straight from it, no buffer
	 * (this runs on every screened request). */
	const uint8_t *p = data;
	struct siphash h;
	size_t i;

	siphash_init(&h, key);
	for (i = 0; i + 8 <= len; i += 8)
		compress(h.v, le64(p + i));
	memcpy(h.buf, p + i, len - i);
	h.n = len - i;
	h.len = len;
	return siphash_final(&h);
}
