/*
 * The fleet's backlog: items come out oldest first and whole, a full
 * backlog gives up its oldest for the newest (and says so), and wrapping
 * round the ring many times keeps the order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/backlog.h"

/* An item of an odd size, so that no slot is aligned by chance. */
struct item {
	uint64_t n;
	unsigned char fill[27];
};

static struct item item(uint64_t n)
{
	struct item it = {.n = n};

	memset(it.fill, (int)(n & 0xff), sizeof(it.fill));
	return it;
}

static void assert_item(const struct item *got, uint64_t n)
{
	struct item want = item(n);

	assert_memory_equal(got, &want, sizeof(want));
}

static void test_fifo(void **state)
{
	struct backlog *b = backlog_new(4, sizeof(struct item));
	struct item it;

	(void)state;
	assert_non_null(b);
	assert_false(backlog_pop(b, &it));
	for (uint64_t n = 1; n <= 3; n++) {
		it = item(n);
		assert_false(backlog_push(b, &it, NULL));
	}
	assert_int_equal(backlog_len(b), 3);
	for (uint64_t n = 1; n <= 3; n++) {
		assert_true(backlog_pop(b, &it));
		assert_item(&it, n);
	}
	assert_false(backlog_pop(b, &it));
	assert_int_equal(backlog_len(b), 0);
	backlog_free(b);
	backlog_free(NULL);
	assert_null(backlog_new(0, sizeof(it)));
	assert_null(backlog_new(4, 0));
	assert_null(backlog_new(SIZE_MAX / 2, 3));
}

static void test_full_gives_up_oldest(void **state)
{
	struct backlog *b = backlog_new(3, sizeof(struct item));
	struct item it, old;
	unsigned gave_up = 0;

	(void)state;
	for (uint64_t n = 1; n <= 5; n++) {
		it = item(n);
		if (backlog_push(b, &it, &old)) {
			/* the oldest, whole */
			assert_item(&old, ++gave_up);
		}
	}
	assert_int_equal(gave_up, 2);
	assert_int_equal(backlog_len(b), 3);
	for (uint64_t n = 3; n <= 5; n++) {
		assert_true(backlog_pop(b, &it));
		assert_item(&it, n);
	}
	assert_false(backlog_pop(b, &it));
	backlog_free(b);
}

/* Pushes and pops out of step, so that head and tail wrap round the ring
 * at every offset. */
static void test_wraps(void **state)
{
	struct backlog *b = backlog_new(7, sizeof(struct item));
	struct item it, old;
	uint64_t pushed = 0, popped = 0;

	(void)state;
	for (unsigned round = 0; round < 1000; round++) {
		for (unsigned i = 0; i < round % 5 + 1; i++) {
			it = item(pushed++);
			if (backlog_push(b, &it, &old))
				assert_item(&old, popped++); /* the oldest */
		}
		for (unsigned i = 0; i < round % 4 + 1; i++) {
			if (!backlog_pop(b, &it)) {
				assert_int_equal(popped, pushed);
				break;
			}
			assert_item(&it, popped++);
		}
		assert_int_equal(backlog_len(b), pushed - popped);
	}
	backlog_empty(b);
	assert_int_equal(backlog_len(b), 0);
	assert_false(backlog_pop(b, &it));
	backlog_free(b);
}

static bool is_odd(const void *it, void *arg)
{
	(void)arg;
	return ((const struct item *)it)->n & 1;
}

/* Dropping in the middle of a wrapped ring keeps the rest in order. */
static void test_drop_if(void **state)
{
	struct backlog *b = backlog_new(5, sizeof(struct item));
	struct item it;

	(void)state;
	for (uint64_t n = 0; n < 8; n++) {
		it = item(n);
		backlog_push(b, &it, NULL); /* 3..7 stay, wrapped */
	}
	assert_int_equal(backlog_drop_if(b, is_odd, NULL), 3);
	assert_int_equal(backlog_len(b), 2);
	it = item(8);
	assert_false(backlog_push(b, &it, NULL));
	for (uint64_t n = 4; n <= 8; n += 2) {
		assert_true(backlog_pop(b, &it));
		assert_item(&it, n);
	}
	assert_false(backlog_pop(b, &it));
	assert_int_equal(backlog_drop_if(b, is_odd, NULL), 0);
	backlog_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fifo),
	    cmocka_unit_test(test_full_gives_up_oldest),
	    cmocka_unit_test(test_wraps),
	    cmocka_unit_test(test_drop_if),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
