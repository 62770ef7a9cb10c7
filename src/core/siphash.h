/*
 * SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed 64-bit hash that is
 * fast on short inputs and whose collisions nobody without the key can
 * find. For remembering that a value seen before is the same again without
 * keeping the value (the guard's credentials of a connection).
 */
#ifndef EF_CORE_SIPHASH_H
#define EF_CORE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_LEN 16

uint64_t siphash24(const uint8_t key[SIPHASH_KEY_LEN], const void *data,
		   size_t len);

/* The same hash over pieces given one after another (init, update as
 * often as needed, final): siphash24 of their concatenation, without
 * copying them together. */
struct siphash {
	uint64_t v[4];
	uint8_t buf[8]; /* a word begun, n bytes of it */
	size_t n;
	size_t len; /* bytes so far */
};

void siphash_init(struct siphash *h, const uint8_t key[SIPHASH_KEY_LEN]);
void siphash_update(struct siphash *h, const void *data, size_t len);
uint64_t siphash_final(struct siphash *h);

#endif
