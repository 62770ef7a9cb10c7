/*
 * The password shield's decisions and table: a stale password held after
 * password_failures refusals and only that one, guessing held after
 * user_failures different passwords while a known-good one passes, windows
 * and holds that end, clearing, and a flood of random users that cannot
 * evict a hold or a known-good password from a full table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "guard/shield.h"

static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
static const struct shield_conf conf = {
    .password_failures = 3, .user_failures = 10, .window = 1800,
    .hold = 1800};

struct cred {
	uint8_t user[SHIELD_ID_LEN], pass[SHIELD_ID_LEN];
};

static struct cred cred(const char *user, const char *pass)
{
	struct cred c;

	shield_ids(key, sizeof(key) - 1, user, pass, strlen(pass), c.user,
		   c.pass);
	return c;
}

static enum shield_verdict check(struct shield *sh, struct cred c,
				 uint64_t now)
{
	return shield_check(sh, &conf, c.user, c.pass, now);
}

static void feed(struct shield *sh, struct cred c, bool refused, uint64_t now)
{
	shield_feed(sh, &conf, c.user, c.pass, refused, now);
}

/* What a CAS that refuses old and accepts new sees of a phone's attempts:
 * each attempt the shield lets through is one the CAS answers. */
static unsigned replay(struct shield *sh, struct cred c, bool refused,
		       unsigned times, uint64_t now)
{
	unsigned reached = 0;

	for (unsigned i = 0; i < times; i++) {
		if (check(sh, c, now + i) != SHIELD_PASS)
			continue;
		reached++;
		feed(sh, c, refused, now + i);
	}
	return reached;
}

static void test_ids(void **state)
{
	struct cred a = cred("alice@contoso.com", "old"),
		    b = cred("alice@contoso.com", "new"),
		    c = cred("bob@contoso.com", "old");

	(void)state;
	assert_memory_equal(a.user, b.user, SHIELD_ID_LEN);
	assert_memory_not_equal(a.pass, b.pass, SHIELD_ID_LEN);
	assert_memory_not_equal(a.user, c.user, SHIELD_ID_LEN);
	assert_memory_not_equal(a.pass, c.pass, SHIELD_ID_LEN);
	/* The user id is not the id of the password "" */
	assert_memory_not_equal(cred("u", "").pass, cred("u", "").user,
				SHIELD_ID_LEN);
}

static void test_stale_password(void **state)
{
	struct shield *sh = shield_new(1000);
	struct cred old = cred("alice@contoso.com", "old"),
		    cur = cred("alice@contoso.com", "new");

	(void)state;
	/* 50 replays of the old password: the CAS sees exactly 3. */
	assert_int_equal(replay(sh, old, true, 50, 100), 3);
	assert_int_equal(check(sh, old, 200), SHIELD_STALE_PASSWORD);
	/* The same user's other device, with the current password. */
	assert_int_equal(replay(sh, cur, false, 20, 100), 20);
	/* The hold ends after `hold`; the next refusals start over. */
	assert_int_equal(check(sh, old, 102 + 1800), SHIELD_PASS);
	assert_int_equal(replay(sh, old, true, 10, 2000), 3);
	shield_free(sh);
}

static void test_window(void **state)
{
	struct shield *sh = shield_new(1000);
	struct cred old = cred("alice@contoso.com", "old");

	(void)state;
	/* Two refusals, then the window passes: two more are not three. */
	feed(sh, old, true, 0);
	feed(sh, old, true, 10);
	feed(sh, old, true, 10 + 1800);
	feed(sh, old, true, 11 + 1800);
	assert_int_equal(check(sh, old, 12 + 1800), SHIELD_PASS);
	feed(sh, old, true, 12 + 1800);
	assert_int_equal(check(sh, old, 13 + 1800), SHIELD_STALE_PASSWORD);
	/* A success of that password clears it at once. */
	feed(sh, old, false, 14 + 1800);
	assert_int_equal(check(sh, old, 15 + 1800), SHIELD_PASS);
	shield_free(sh);
}

static void test_guessing(void **state)
{
	struct shield *sh = shield_new(1000);
	struct cred good = cred("bob@contoso.com", "Correct1");
	unsigned reached = 0;
	char pw[32];

	(void)state;
	feed(sh, good, false, 50);
	for (unsigned i = 0; i < 30; i++) {
		snprintf(pw, sizeof(pw), "guess-%u", i);
		reached += replay(sh, cred("bob@contoso.com", pw), true, 1,
				  100 + i);
	}
	assert_int_equal(reached, 10);
	assert_int_equal(check(sh, cred("bob@contoso.com", "guess-99"), 200),
			 SHIELD_GUESSING);
	/* The owner's known-good password still passes. */
	assert_int_equal(check(sh, good, 200), SHIELD_PASS);
	/* Other users are untouched. */
	assert_int_equal(check(sh, cred("carol@contoso.com", "x"), 200),
			 SHIELD_PASS);
	/* An operator clears the user: everything passes again. */
	assert_true(shield_clear_user(sh, good.user) >= 11);
	assert_int_equal(check(sh, cred("bob@contoso.com", "guess-99"), 201),
			 SHIELD_PASS);
	shield_free(sh);
}

static void test_thresholds_off(void **state)
{
	struct shield_conf off = {0, 0, 60, 60};
	struct shield *sh = shield_new(16);
	struct cred c = cred("u", "p");

	(void)state;
	for (unsigned i = 0; i < 100; i++)
		shield_feed(sh, &off, c.user, c.pass, true, i);
	assert_int_equal(shield_check(sh, &off, c.user, c.pass, 100),
			 SHIELD_PASS);
	shield_free(sh);
}

/* 100,000 random users with wrong passwords into a table of 1,000: the
 * held password and the known-good one are still there, the table never
 * grows past its bound. */
static void test_flood(void **state)
{
	struct shield *sh = shield_new(1000);
	struct cred held = cred("alice@contoso.com", "old"),
		    good = cred("alice@contoso.com", "new");
	struct shield_stats st;
	char user[64];

	(void)state;
	replay(sh, held, true, 3, 10);
	feed(sh, good, false, 10);
	for (unsigned i = 0; i < 100000; i++) {
		snprintf(user, sizeof(user), "random-%u@example.com", i);
		feed(sh, cred(user, "wrong"), true, 20 + i / 1000);
	}
	shield_get_stats(sh, 200, &st);
	assert_true(st.entries <= 1000);
	assert_true(st.evictions >= 199000);
	assert_int_equal(st.held_passwords, 1);
	assert_int_equal(check(sh, held, 200), SHIELD_STALE_PASSWORD);
	/* good survived too: with alice held for guessing it would pass */
	for (unsigned i = 0; i < 10; i++) {
		snprintf(user, sizeof(user), "g%u", i);
		feed(sh, cred("alice@contoso.com", user), true, 300 + i);
	}
	assert_int_equal(check(sh, cred("alice@contoso.com", "z"), 400),
			 SHIELD_GUESSING);
	assert_int_equal(check(sh, good, 400), SHIELD_PASS);
	shield_free(sh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ids),
	    cmocka_unit_test(test_stale_password),
	    cmocka_unit_test(test_window),
	    cmocka_unit_test(test_guessing),
	    cmocka_unit_test(test_thresholds_off),
	    cmocka_unit_test(test_flood),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
