/*
 * The rise/fall state of a CAS address.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "site/health.h"

/* Feeds a string of results ('+' ok, '-' failed) and returns the state seen
 * after each as a string of 'U'/'D'. */
static void run(const char *results, unsigned rise, unsigned fall, char *out)
{
	struct health h = {.up = true};

	for (; *results; results++, out++) {
		health_feed(&h, *results == '+', rise, fall);
		*out = h.up ? 'U' : 'D';
	}
	*out = '\0';
}

static void test_rise_fall(void **state)
{
	static const struct {
		const char *in;
		unsigned rise, fall;
		const char *want;
	} cases[] = {
		{"+++", 2, 3, "UUU"},
		{"--+---", 2, 3, "UUUUUD"}, /* a success resets the streak */
		{"---+-++", 2, 3, "UUDDDDU"}, /* rise needs two in a row */
		{"-", 0, 0, "D"},	     /* 0 acts as 1 */
		{"-+", 1, 1, "DU"},
		{"----++++", 3, 4, "UUUDDDUU"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char got[32];

		run(cases[i].in, cases[i].rise, cases[i].fall, got);
		assert_string_equal(got, cases[i].want);
	}
}

static void test_flip_reported_once(void **state)
{
	struct health h = {.up = true};

	(void)state;
	assert_false(health_feed(&h, false, 2, 2));
	assert_true(health_feed(&h, false, 2, 2));
	assert_false(health_feed(&h, false, 2, 2));
	assert_false(h.up);
	assert_false(health_feed(&h, true, 2, 2));
	assert_true(health_feed(&h, true, 2, 2));
	assert_true(h.up);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rise_fall),
		cmocka_unit_test(test_flip_reported_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
