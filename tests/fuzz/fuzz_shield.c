/*
 * libFuzzer harness of the password shield: random sequences of checks,
 * refusals, successes, clears, known-good marks from the fleet and the
 * passing of time, over a few users and
 * passwords. With a table large enough never to evict, every verdict must
 * equal that of a plain model of DESIGN.md's rules; with a tiny table, the
 * table must stay within its bound whatever happens.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/shield.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define USERS 4
#define PASSES 4 /* per user */

struct model_pass {
	unsigned count;
	uint64_t start, hold, good;
};

struct model_user {
	unsigned count;
	uint64_t start, hold;
};

static struct model_pass mp[USERS][PASSES];
static struct model_user mu[USERS];

static bool refusal(unsigned *count, uint64_t *start, uint64_t now,
		    unsigned window)
{
	if (*count == 0 || now - *start >= window) {
		*count = 0;
		*start = now;
	}
	(*count)++;
	return *count == 1;
}

static enum shield_verdict model_check(const struct shield_conf *c,
				       unsigned u, unsigned p, uint64_t now)
{
	if (mp[u][p].hold > now)
		return SHIELD_STALE_PASSWORD;
	if (c->user_failures == 0 || mu[u].hold <= now)
		return SHIELD_PASS;
	return mp[u][p].good > now ? SHIELD_PASS : SHIELD_GUESSING;
}

static void model_feed(const struct shield_conf *c, unsigned u, unsigned p,
		       bool refused, uint64_t now)
{
	struct model_pass *e = &mp[u][p];

	if (!refused) {
		e->count = 0;
		e->hold = 0;
		e->good = now + (c->hold > c->window ? c->hold : c->window);
		return;
	}
	e->good = 0;
	if (refusal(&e->count, &e->start, now, c->window) &&
	    c->user_failures > 0) {
		refusal(&mu[u].count, &mu[u].start, now, c->window);
		if (mu[u].count >= c->user_failures)
			mu[u].hold = now + c->hold;
	}
	if (c->password_failures > 0 && e->count >= c->password_failures)
		e->hold = now + c->hold;
}

/* The keyed hashes of every (user, password) of the run, made once. */
static uint8_t uids[USERS][SHIELD_ID_LEN], pids[USERS][PASSES][SHIELD_ID_LEN];

static void make_ids(void)
{
	static const unsigned char key[] = "fuzz-key";
	static bool made;
	char user[3] = "u0", pass[3] = "p0";

	if (made)
		return;
	made = true;
	for (unsigned u = 0; u < USERS; u++)
		for (unsigned p = 0; p < PASSES; p++) {
			user[1] = (char)('0' + u);
			pass[1] = (char)('0' + p);
			shield_ids(key, sizeof(key) - 1, user, pass, 2,
				   uids[u], pids[u][p]);
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shield_conf c;
	struct shield *big, *tiny;
	struct shield_stats st;
	uint64_t now = 1000;

	if (size < 4)
		return 0;
	c.password_failures = data[0] % 5;
	c.user_failures = data[1] % 6;
	c.window = 1 + data[2] % 50;
	c.hold = 1 + data[3] % 50;
	memset(mp, 0, sizeof(mp));
	memset(mu, 0, sizeof(mu));
	make_ids();
	/* 20 ids at most: this one never evicts. */
	big = shield_new(256);
	tiny = shield_new(16);
	if (big == NULL || tiny == NULL)
		abort();
	for (size_t i = 4; i + 1 < size; i += 2) {
		unsigned op = data[i] & 7, u = (data[i] >> 3) % USERS,
			 p = (data[i] >> 5) % PASSES;
		const uint8_t *uid = uids[u], *pid = pids[u][p];

		switch (op) {
		case 0:
		case 1:
			if (shield_check(big, &c, uid, pid, now) !=
			    model_check(&c, u, p, now))
				abort();
			shield_check(tiny, &c, uid, pid, now);
			break;
		case 2:
		case 3:
		case 4:
			shield_feed(big, &c, uid, pid, op != 4, now);
			shield_feed(tiny, &c, uid, pid, op != 4, now);
			model_feed(&c, u, p, op != 4, now);
			break;
		case 6:
			if (data[i + 1] & 0x80) {
				/* A known-good mark from the fleet, up to
				 * 63 s ahead. */
				uint64_t until = now + (data[i + 1] & 63);

				shield_set_good(big, uid, pid, until, now);
				shield_set_good(tiny, uid, pid, until, now);
				if (until > now && mp[u][p].good < until)
					mp[u][p].good = until;
				break;
			}
			now += data[i + 1] % 64;
			break;
		case 5:
			shield_clear_user(big, uid);
			shield_clear_user(tiny, uid);
			memset(mp[u], 0, sizeof(mp[u]));
			memset(&mu[u], 0, sizeof(mu[u]));
			break;
		default:
			now += data[i + 1] % 64;
			break;
		}
		shield_get_stats(tiny, now, &st);
		if (st.entries > 16)
			abort();
	}
	shield_get_stats(big, now, &st);
	if (st.evictions != 0)
		abort();
	shield_free(big);
	shield_free(tiny);
	return 0;
}
