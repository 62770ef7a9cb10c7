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

/* With password_failures 1 every flooding password becomes a hold itself:
 * still none of them pushes out an older hold or a known-good password;
 * the newcomers that find no plain entry to replace are turned away. */
static void test_flood_of_holds(void **state)
{
	static const struct shield_conf one = {
	    .password_failures = 1, .user_failures = 10, .window = 1800,
	    .hold = 1800};
	struct shield *sh = shield_new(1000);
	struct cred held = cred("alice@contoso.com", "old"),
		    good = cred("alice@contoso.com", "new");
	size_t entries;
	uint64_t evictions, turned;
	char user[64];

	(void)state;
	shield_feed(sh, &one, held.user, held.pass, true, 10);
	shield_feed(sh, &one, good.user, good.pass, false, 10);
	for (unsigned i = 0; i < 100000; i++) {
		struct cred c;

		snprintf(user, sizeof(user), "random-%u@example.com", i);
		c = cred(user, "wrong");
		shield_feed(sh, &one, c.user, c.pass, true, 20 + i / 1000);
	}
	shield_get_size(sh, &entries, &evictions, &turned);
	assert_true(entries <= 1000);
	assert_true(turned > 90000);
	assert_int_equal(shield_check(sh, &one, held.user, held.pass, 200),
			 SHIELD_STALE_PASSWORD);
	/* A hold ends when its time is up, flood or not. */
	assert_int_equal(shield_check(sh, &one, held.user, held.pass, 1810),
			 SHIELD_PASS);
	shield_free(sh);
}

/* The precomputed key gives the one-shot HMAC's ids, for short and long
 * keys and inputs cut at the same length. */
static void test_key_ids(void **state)
{
	static const unsigned char long_key[100] = {1, 2, 3};
	const unsigned char *keys[] = {key, long_key};
	size_t lens[] = {sizeof(key) - 1, sizeof(long_key)};
	char big[700];

	(void)state;
	memset(big, 'p', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (unsigned k = 0; k < 2; k++) {
		struct shield_key *sk = shield_key_new(keys[k], lens[k]);
		const char *users[] = {"alice@contoso.com", "", big};
		const char *passes[] = {"secret", "", big};

		assert_non_null(sk);
		for (unsigned u = 0; u < 3; u++)
			for (unsigned p = 0; p < 3; p++) {
				uint8_t u1[SHIELD_ID_LEN], p1[SHIELD_ID_LEN],
				    u2[SHIELD_ID_LEN], p2[SHIELD_ID_LEN];

				shield_ids(keys[k], lens[k], users[u],
					   passes[p], strlen(passes[p]), u1,
					   p1);
				assert_int_equal(
				    shield_key_ids(sk, users[u], passes[p],
						   strlen(passes[p]), u2, p2),
				    0);
				assert_memory_equal(u1, u2, SHIELD_ID_LEN);
				assert_memory_equal(p1, p2, SHIELD_ID_LEN);
			}
		shield_key_free(sk);
	}
}

/* feed says when a hold begins (once), which an operator's list follows;
 * the user's guessing hold can be read back. */
static void test_new_holds(void **state)
{
	struct shield *sh = shield_new(100);
	struct cred old = cred("alice@contoso.com", "old");
	char pw[16];
	unsigned news = 0;

	(void)state;
	assert_int_equal(shield_feed(sh, &conf, old.user, old.pass, true, 1), 0);
	assert_int_equal(shield_feed(sh, &conf, old.user, old.pass, true, 2), 0);
	assert_int_equal(shield_feed(sh, &conf, old.user, old.pass, true, 3),
			 SHIELD_NEW_PASSWORD_HOLD);
	/* Fed again while held (another front end let it through): the hold
	 * goes on, it does not begin again. */
	assert_int_equal(shield_feed(sh, &conf, old.user, old.pass, true, 4), 0);
	assert_int_equal(shield_user_hold_left(sh, old.user, 4), 0);
	for (unsigned i = 0; i < 9; i++) {
		snprintf(pw, sizeof(pw), "g%u", i);
		struct cred g = cred("alice@contoso.com", pw);

		news |= shield_feed(sh, &conf, g.user, g.pass, true, 10);
	}
	assert_int_equal(news, SHIELD_NEW_USER_HOLD);
	assert_int_equal(shield_user_hold_left(sh, old.user, 10), 1800);
	assert_int_equal(shield_user_hold_left(sh, old.user, 1809), 1);
	assert_int_equal(shield_user_hold_left(sh, old.user, 1810), 0);
	shield_free(sh);
}

/* A table moved into a smaller one keeps its holds and known-good
 * passwords before the plain entries; into a larger one, everything. */
static void test_copy(void **state)
{
	struct shield *big = shield_new(2000), *small = shield_new(16),
		      *bigger = shield_new(4000);
	struct cred held = cred("alice@contoso.com", "old"),
		    good = cred("alice@contoso.com", "new");
	struct shield_stats st;
	char user[32];

	(void)state;
	for (unsigned i = 0; i < 500; i++) {
		snprintf(user, sizeof(user), "u%u", i);
		feed(big, cred(user, "wrong"), true, 5);
	}
	replay(big, held, true, 3, 10);
	feed(big, good, false, 10);
	/* 500 users and their passwords, alice, her two passwords */
	assert_int_equal(shield_copy(small, big, 20), 1003 - 16);
	assert_int_equal(check(small, held, 20), SHIELD_STALE_PASSWORD);
	shield_get_stats(small, 20, &st);
	assert_int_equal(st.entries, 16);
	assert_int_equal(shield_copy(bigger, big, 20), 0);
	shield_get_stats(bigger, 20, &st);
	assert_int_equal(st.entries, 1003);
	assert_int_equal(check(bigger, held, 20), SHIELD_STALE_PASSWORD);
	shield_free(big);
	shield_free(small);
	shield_free(bigger);
}

/* A hold learned from the fleet: made without refusals, enforced like a
 * local one, lengthened and never shortened, new only once, kept by a full
 * table, and cleared with its user. */
static void test_set_hold(void **state)
{
	struct shield *sh = shield_new(16);
	struct cred old = cred("alice", "old"), good = cred("alice", "good");
	struct cred bob = cred("bob", "x");

	(void)state;
	assert_int_equal(shield_set_hold(sh, old.user, old.pass, 100, 100), 0);
	assert_int_equal(check(sh, old, 100), SHIELD_PASS);
	assert_int_equal(shield_set_hold(sh, old.user, old.pass, 200, 100),
	                 SHIELD_NEW_PASSWORD_HOLD);
	assert_int_equal(shield_set_hold(sh, old.user, old.pass, 150, 101), 0);
	assert_int_equal(check(sh, old, 199), SHIELD_STALE_PASSWORD);
	assert_int_equal(check(sh, old, 200), SHIELD_PASS);
	assert_int_equal(check(sh, good, 150), SHIELD_PASS);

	/* A user hold: only a known-good password passes. */
	feed(sh, good, false, 100);
	assert_int_equal(shield_set_hold(sh, old.user, NULL, 300, 110),
	                 SHIELD_NEW_USER_HOLD);
	assert_int_equal(shield_user_hold_left(sh, old.user, 110), 190);
	assert_int_equal(check(sh, cred("alice", "guess"), 120),
	                 SHIELD_GUESSING);
	assert_int_equal(check(sh, good, 120), SHIELD_PASS);

	/* A full table of holds turns a newcomer away but keeps them. */
	for (int i = 0; i < 40; i++) {
		char p[16];
		struct cred c;

		snprintf(p, sizeof(p), "p%d", i);
		c = cred("carol", p);
		shield_set_hold(sh, c.user, c.pass, 1000, 120);
	}
	assert_int_equal(check(sh, old, 150), SHIELD_STALE_PASSWORD);
	assert_int_equal(shield_set_hold(sh, bob.user, bob.pass, 1000, 120), 0);

	assert_true(shield_clear_user(sh, old.user) >= 2);
	assert_int_equal(check(sh, old, 150), SHIELD_PASS);
	assert_int_equal(shield_user_hold_left(sh, old.user, 150), 0);
	shield_free(sh);
}

/* The refusals of a password in its window: what tells a first refusal. */
static void test_pass_refusals(void **state)
{
	struct shield *sh = shield_new(16);
	struct cred old = cred("alice", "old");

	(void)state;
	assert_int_equal(shield_pass_refusals(sh, &conf, old.pass, 10), 0);
	feed(sh, old, true, 10);
	assert_int_equal(shield_pass_refusals(sh, &conf, old.pass, 10), 1);
	feed(sh, old, true, 11);
	assert_int_equal(shield_pass_refusals(sh, &conf, old.pass, 11), 2);
	assert_int_equal(
	    shield_pass_refusals(sh, &conf, old.pass, 10 + conf.window), 0);
	feed(sh, old, true, 10 + conf.window);
	assert_int_equal(
	    shield_pass_refusals(sh, &conf, old.pass, 10 + conf.window), 1);
	shield_free(sh);
}

/* A success is news for the fleet when the password becomes known good,
 * and again only once its mark is past half its time; a mark made
 * elsewhere lets the owner through a guessing hold, as a local success
 * does, and never shortens one made here. */
static void test_good_marks(void **state)
{
	struct shield *sh = shield_new(1000);
	struct cred good = cred("bob@contoso.com", "Correct1");
	unsigned good_s = shield_good_time(&conf);
	char pw[32];

	(void)state;
	assert_int_equal(good_s, 1800);
	assert_int_equal(shield_feed(sh, &conf, good.user, good.pass, false, 10),
			 SHIELD_NEW_GOOD);
	assert_int_equal(shield_feed(sh, &conf, good.user, good.pass, false, 11),
			 0);
	assert_int_equal(shield_feed(sh, &conf, good.user, good.pass, false,
				     10 + good_s / 2),
			 0);
	assert_int_equal(shield_feed(sh, &conf, good.user, good.pass, false,
				     11 + good_s / 2),
			 SHIELD_NEW_GOOD);
	/* Good again after refusals: news at once. */
	feed(sh, good, true, 1000);
	assert_int_equal(shield_feed(sh, &conf, good.user, good.pass, false,
				     1001),
			 SHIELD_NEW_GOOD);
	/* A mark the fleet already has is not news. */
	shield_set_good(sh, cred("bob@contoso.com", "Other2").user,
			cred("bob@contoso.com", "Other2").pass, 1000 + good_s,
			1000);
	assert_int_equal(shield_feed(sh, &conf,
				     cred("bob@contoso.com", "Other2").user,
				     cred("bob@contoso.com", "Other2").pass,
				     false, 1001),
			 0);
	shield_free(sh);

	/* Another front end's mark, on a table that never saw the password
	 * work: the owner passes the guessing hold. */
	sh = shield_new(1000);
	for (unsigned i = 0; i < 10; i++) {
		snprintf(pw, sizeof(pw), "guess-%u", i);
		feed(sh, cred("bob@contoso.com", pw), true, 100 + i);
	}
	assert_int_equal(check(sh, good, 200), SHIELD_GUESSING);
	shield_set_good(sh, good.user, good.pass, 200 + 60, 200);
	assert_int_equal(check(sh, good, 201), SHIELD_PASS);
	assert_int_equal(check(sh, good, 260), SHIELD_GUESSING);
	/* A shorter mark leaves a longer one; one in the past does nothing. */
	shield_set_good(sh, good.user, good.pass, 200 + 600, 200);
	shield_set_good(sh, good.user, good.pass, 200 + 10, 200);
	assert_int_equal(check(sh, good, 700), SHIELD_PASS);
	shield_set_good(sh, cred("bob@contoso.com", "x").user,
			cred("bob@contoso.com", "x").pass, 150, 200);
	assert_int_equal(check(sh, cred("bob@contoso.com", "x"), 201),
			 SHIELD_GUESSING);
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
	    cmocka_unit_test(test_flood_of_holds),
	    cmocka_unit_test(test_key_ids),
	    cmocka_unit_test(test_new_holds),
	    cmocka_unit_test(test_copy),
	    cmocka_unit_test(test_set_hold),
	    cmocka_unit_test(test_pass_refusals),
	    cmocka_unit_test(test_good_marks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
