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

#endif
