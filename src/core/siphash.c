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

uint64_t siphash24(const uint8_t key[SIPHASH_KEY_LEN], const void *data,
		   size_t len)
{
	const uint8_t *p = data;
	uint64_t k0 = le64(key), k1 = le64(key + 8), m;
	uint64_t v[4] = {
	    k0 ^ 0x736f6d6570736575ULL,
	    k1 ^ 0x646f72616e646f6dULL,
	    k0 ^ 0x6c7967656e657261ULL,
	    k1 ^ 0x7465646279746573ULL,
	};
	uint8_t last[8] = {0};
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		m = le64(p + i);
		v[3] ^= m;
		rounds(v, 2);
		v[0] ^= m;
	}
	/* The last word: the remaining bytes, the length's low byte on top. */
	memcpy(last, p + i, len - i);
	last[7] = (uint8_t)len;
	m = le64(last);
	v[3] ^= m;
	rounds(v, 2);
	v[0] ^= m;
	v[2] ^= 0xff;
	rounds(v, 4);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}
