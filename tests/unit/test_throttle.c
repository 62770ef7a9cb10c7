/*
 * Token buckets: a burst of exactly `requests`, then one token every
 * per/requests seconds, the wait it says is the wait there is, keys apart,
 * a bucket with requests 0 never empty, clocks at their extremes, and a
 * flood of new keys that cannot push out a bucket being throttled.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "guard/throttle.h"

#define S 1000000ULL /* us */

static void test_burst_then_rate(void **state)
{
	struct throttle *t = throttle_new(1000);
	const struct conf_bucket b = {.requests = 120, .per = 60};
	uint64_t now = 1000 * S, wait;

	(void)state;
	for (unsigned i = 0; i < 120; i++)
		assert_int_equal(throttle_take(t, &b, 42, now), 0);
	wait = throttle_take(t, &b, 42, now);
	/* one token every 0.5 s */
	assert_int_equal(wait, S / 2);
	assert_true(throttle_take(t, &b, 42, now + wait - 1) > 0);
	assert_int_equal(throttle_take(t, &b, 42, now + wait), 0);
	assert_true(throttle_take(t, &b, 42, now + wait) > 0);
	/* other keys are untouched */
	assert_int_equal(throttle_take(t, &b, 43, now), 0);
	/* a minute later the bucket is full again: a whole burst */
	for (unsigned i = 0; i < 120; i++)
		assert_int_equal(throttle_take(t, &b, 42, now + 61 * S), 0);
	assert_true(throttle_take(t, &b, 42, now + 61 * S) > 0);
	throttle_free(t);
}

static void test_off_and_peek(void **state)
{
	struct throttle *t = throttle_new(64);
	const struct conf_bucket off = {.requests = 0, .per = 60},
				 one = {.requests = 1, .per = 10};

	(void)state;
	for (unsigned i = 0; i < 1000; i++)
		assert_int_equal(throttle_take(t, &off, 7, S), 0);
	assert_int_equal(throttle_peek(t, &one, 7, S), 0);
	assert_int_equal(throttle_take(t, &one, 7, S), 0);
	assert_int_equal(throttle_peek(t, &one, 7, S), 10 * S);
	assert_int_equal(throttle_peek(t, &one, 7, 11 * S), 0);
	/* key 0 is a key like any other */
	assert_int_equal(throttle_take(t, &one, 0, S), 0);
	assert_true(throttle_take(t, &one, 0, S) > 0);
	throttle_free(t);
}

/* At the clock's end the arithmetic saturates rather than wrapping a
 * bucket back to full; the largest configured rates stay exact. */
static void test_extremes(void **state)
{
	struct throttle *t = throttle_new(64);
	const struct conf_bucket slow = {.requests = 1, .per = 86400},
				 fast = {.requests = 1000000, .per = 1},
				 big = {.requests = 1000000, .per = 86400};

	(void)state;
	assert_int_equal(throttle_take(t, &slow, 1, UINT64_MAX - 5), 0);
	assert_true(throttle_take(t, &slow, 1, UINT64_MAX - 5) > 0);
	assert_true(throttle_take(t, &slow, 1, UINT64_MAX - 4) > 0);
	for (unsigned i = 0; i < 1000000; i++)
		assert_int_equal(throttle_take(t, &fast, 2, 5 * S), 0);
	assert_int_equal(throttle_take(t, &fast, 2, 5 * S), 1);
	assert_int_equal(throttle_take(t, &big, 3, 0), 0);
	assert_int_equal(throttle_peek(t, &big, 3, 0), 0);
	throttle_free(t);
}

/* A hold from the fleet empties a full bucket until its end, after which
 * one token comes back per interval; a hold shorter than what the bucket
 * already owes changes nothing. */
static void test_hold(void **state)
{
	struct throttle *t = throttle_new(64);
	const struct conf_bucket b = {.requests = 4, .per = 4};

	(void)state;
	throttle_hold(t, &b, 7, 10 * S, 2 * S);
	assert_int_equal(throttle_peek(t, &b, 7, 2 * S), 8 * S);
	assert_int_equal(throttle_take(t, &b, 7, 10 * S - 1), 1);
	assert_int_equal(throttle_take(t, &b, 7, 10 * S), 0);
	assert_int_equal(throttle_take(t, &b, 7, 10 * S), S);
	assert_int_equal(throttle_take(t, &b, 7, 11 * S), 0);
	/* Already emptier than a short hold asks. */
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(throttle_take(t, &b, 8, 20 * S), 0);
	throttle_hold(t, &b, 8, 20 * S + 1, 20 * S);
	assert_int_equal(throttle_peek(t, &b, 8, 20 * S), S);
	/* A hold in the past, or of a bucket that is off, does nothing. */
	throttle_hold(t, &b, 9, S, 2 * S);
	assert_int_equal(throttle_peek(t, &b, 9, 2 * S), 0);
	throttle_hold(t, &(struct conf_bucket){0}, 9, 5 * S, 2 * S);
	assert_int_equal(throttle_take(t, &(struct conf_bucket){0}, 9, 2 * S),
			 0);
	throttle_free(t);
}

/* An operator's lift: the bucket has its whole burst again, held or
 * spent; the others are untouched; a bucket that was full says so. */
static void test_lift(void **state)
{
	struct throttle *t = throttle_new(64);
	const struct conf_bucket b = {.requests = 3, .per = 30};

	(void)state;
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(throttle_take(t, &b, 21, S), 0);
		assert_int_equal(throttle_take(t, &b, 22, S), 0);
	}
	throttle_hold(t, &b, 23, 100 * S, S);
	assert_true(throttle_take(t, &b, 21, S) > 0);
	assert_true(throttle_lift(t, 21, S));
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(throttle_take(t, &b, 21, S), 0);
	assert_true(throttle_take(t, &b, 21, S) > 0);
	assert_true(throttle_take(t, &b, 22, S) > 0);
	assert_true(throttle_lift(t, 23, S));
	assert_int_equal(throttle_take(t, &b, 23, S), 0);
	/* Full, or never seen: nothing to lift. */
	assert_false(throttle_lift(t, 24, S));
	assert_int_equal(throttle_take(t, &b, 25, S), 0);
	assert_false(throttle_lift(t, 25, 1000 * S));
	/* Everyone: 21 and 22 were spent, 23 had one token taken. */
	assert_int_equal(throttle_lift_all(t, S), 3);
	for (uint64_t k = 21; k <= 23; k++)
		assert_int_equal(throttle_peek(t, &b, k, S), 0);
	assert_int_equal(throttle_lift_all(t, S), 0);
	throttle_free(t);
}

/* Several buckets at once: all spend a token or none does, and the
 * answer names the first that had none. */
static void test_take_all(void **state)
{
	struct throttle *t = throttle_new(64);
	const struct conf_bucket dev = {.requests = 3, .per = 3},
				 user = {.requests = 1, .per = 60},
				 off = {0};
	const struct conf_bucket *b[3] = {&dev, &user, &off};
	const uint64_t key[3] = {11, 12, 13};

	(void)state;
	assert_int_equal(throttle_take_all(t, b, key, 3, S), 3);
	/* The user's bucket is empty: the device keeps its two tokens. */
	assert_int_equal(throttle_take_all(t, b, key, 3, S), 1);
	assert_int_equal(throttle_take_all(t, b, key, 3, S), 1);
	assert_int_equal(throttle_take(t, &dev, 11, S), 0);
	assert_int_equal(throttle_take(t, &dev, 11, S), 0);
	assert_int_equal(throttle_take_all(t, b, key, 1, S), 0);
	assert_int_equal(throttle_take_all(t, b, key, 0, S), 0);
	throttle_free(t);
}

/* 100,000 new keys with one request each through a table of 1,000: the
 * throttled device still is, and the table never grew. */
static void test_flood(void **state)
{
	struct throttle *t = throttle_new(1000);
	const struct conf_bucket b = {.requests = 10, .per = 60};
	size_t active;
	uint64_t evictions;

	(void)state;
	for (unsigned i = 0; i < 11; i++)
		throttle_take(t, &b, 0xdead0000beefULL, 5 * S);
	assert_true(throttle_take(t, &b, 0xdead0000beefULL, 5 * S) > 0);
	for (uint64_t k = 1; k <= 100000; k++)
		throttle_take(t, &b, k * 0x9e3779b97f4a7c15ULL, 6 * S);
	assert_true(throttle_take(t, &b, 0xdead0000beefULL, 7 * S) > 0);
	/* A sixteenth of the table a call: after sixteen, all of it, every
	 * slot a bucket not yet full again. */
	for (unsigned i = 0; i < 16; i++)
		throttle_get_stats(t, 7 * S, &active, &evictions);
	assert_int_equal(active, 1024);
	assert_true(evictions > 90000);
	throttle_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_burst_then_rate),
	    cmocka_unit_test(test_off_and_peek),
	    cmocka_unit_test(test_extremes),
	    cmocka_unit_test(test_flood),
	    cmocka_unit_test(test_hold),
	    cmocka_unit_test(test_take_all),
	    cmocka_unit_test(test_lift),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
