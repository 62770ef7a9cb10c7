/*
 * SipHash-2-4 against the reference vectors of the paper's implementation
 * (key 00..0f, message 00..len-1), at every length around the 8-byte
 * words.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/siphash.h"

static void test_vectors(void **state)
{
	/* vectors.h of the reference implementation, as 64-bit words. */
	static const uint64_t want[] = {
	    0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL,
	    0x0d6c8009d9a94f5aULL, 0x85676696d7fb7e2dULL,
	    0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL,
	    0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL,
	    0x93f5f5799a932462ULL, 0x9e0082df0ba9e4b0ULL,
	    0x7a5dbbc594ddb9f3ULL, 0xf4b32f46226bada7ULL,
	    0x751e8fbc860ee5fbULL, 0x14ea5627c0843d90ULL,
	    0xf723ca908e7af2eeULL, 0xa129ca6149be45e5ULL,
	    0x3f2acc7f57c29bdbULL,
	};
	uint8_t key[SIPHASH_KEY_LEN], msg[sizeof(want) / sizeof(want[0])];

	(void)state;
	for (unsigned i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)i;
	for (unsigned i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	for (unsigned len = 0; len < sizeof(msg); len++)
		assert_int_equal(siphash24(key, msg, len), want[len]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
