/*
 * The fleet's backlog: news comes out oldest first and whole, a full
 * backlog gives up its oldest for the newest (and says so), and wrapping
 * round the ring many times keeps the order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/backlog.h"

static struct shields_event refusal(uint8_t n)
{
	struct shields_event ev = {.kind = SHIELDS_REFUSED, .first = n & 1};

	memset(ev.user, n, sizeof(ev.user));
	memset(ev.pass, 0xff - n, sizeof(ev.pass));
	return ev;
}

static void test_fifo(void **state)
{
	struct backlog *b = backlog_new(4);
	struct backlog_item it;
	struct shields_event ev;

	(void)state;
	assert_non_null(b);
	assert_false(backlog_pop(b, &it));
	for (uint8_t n = 1; n <= 3; n++) {
		ev = refusal(n);
		assert_false(backlog_push(b, &ev, 100 + n));
	}
	assert_int_equal(backlog_len(b), 3);
	for (uint8_t n = 1; n <= 3; n++) {
		ev = refusal(n);
		assert_true(backlog_pop(b, &it));
		assert_memory_equal(&it.ev, &ev, sizeof(ev));
		assert_int_equal(it.at, 100 + n);
	}
	assert_false(backlog_pop(b, &it));
	assert_int_equal(backlog_len(b), 0);
	backlog_free(b);
	backlog_free(NULL);
	assert_null(backlog_new(0));
}

static void test_full_gives_up_oldest(void **state)
{
	struct backlog *b = backlog_new(3);
	struct backlog_item it;
	struct shields_event ev;
	unsigned gave_up = 0;

	(void)state;
	for (uint8_t n = 1; n <= 5; n++) {
		ev = refusal(n);
		gave_up += backlog_push(b, &ev, n);
	}
	assert_int_equal(gave_up, 2);
	assert_int_equal(backlog_len(b), 3);
	for (uint8_t n = 3; n <= 5; n++) {
		assert_true(backlog_pop(b, &it));
		assert_int_equal(it.at, n);
		assert_int_equal(it.ev.user[0], n);
	}
	assert_false(backlog_pop(b, &it));
	backlog_free(b);
}

/* Pushes and pops out of step, so that head and tail wrap round the ring
 * at every offset. */
static void test_wraps(void **state)
{
	struct backlog *b = backlog_new(7);
	struct backlog_item it;
	struct shields_event ev;
	uint64_t pushed = 0, popped = 0;

	(void)state;
	for (unsigned round = 0; round < 1000; round++) {
		for (unsigned i = 0; i < round % 5 + 1; i++) {
			ev = refusal((uint8_t)pushed);
			if (backlog_push(b, &ev, pushed++))
				popped++; /* the oldest, given up */
		}
		for (unsigned i = 0; i < round % 4 + 1; i++) {
			if (!backlog_pop(b, &it)) {
				assert_int_equal(popped, pushed);
				break;
			}
			assert_int_equal(it.at, popped);
			assert_int_equal(it.ev.user[0], (uint8_t)popped);
			popped++;
		}
		assert_int_equal(backlog_len(b), pushed - popped);
	}
	backlog_empty(b);
	assert_int_equal(backlog_len(b), 0);
	assert_false(backlog_pop(b, &it));
	backlog_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fifo),
	    cmocka_unit_test(test_full_gives_up_oldest),
	    cmocka_unit_test(test_wraps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
