/*
 * Termination codes: two letters each, one meaning each, and README.md's
 * table says exactly what the code's table says (operators read the one,
 * the access log writes the other).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/term.h"

static void test_codes_distinct(void **state)
{
	(void)state;
	assert_string_equal(term_code(TERM_UNSET), "--");
	assert_string_equal(term_code(TERM_OK), "--");
	assert_string_equal(term_code(TERM_COUNT), "--");
	for (int a = TERM_CLIENT_GONE; a < TERM_COUNT; a++) {
		assert_int_equal(strlen(term_code((enum term)a)), 2);
		assert_true(strlen(term_meaning((enum term)a)) > 10);
		for (int b = a + 1; b < TERM_COUNT; b++)
			assert_string_not_equal(term_code((enum term)a),
						term_code((enum term)b));
	}
}

static char *read_readme(void)
{
	FILE *f = fopen(EF_README, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_readme_lists_every_code(void **state)
{
	char *readme = read_readme();
	char row[512];

	(void)state;
	for (int t = TERM_OK; t < TERM_COUNT; t++) {
		snprintf(row, sizeof(row), "| `%s` | %s |\n",
			 term_code((enum term)t), term_meaning((enum term)t));
		if (strstr(readme, row) == NULL)
			fail_msg("README.md has no row %s", row);
	}
	free(readme);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codes_distinct),
	    cmocka_unit_test(test_readme_lists_every_code),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
