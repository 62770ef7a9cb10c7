/*
 * libFuzzer harness of the token buckets: random takes and peeks of a few
 * keys under random bucket sizes and rates (up to conf_check's bounds) at
 * random, also extreme, clock readings, with holds (the fleet's word),
 * operators' lifts of one bucket or all, and takes of two buckets at once
 * (all or none) among them. Each bucket must behave like a model computed
 * in 128-bit arithmetic: never more than `requests` tokens at once, a
 * refusal's wait exactly the time to the next token, a lift saying whether
 * the bucket was full, and no wrap-around whatever the clock says.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/throttle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEYS 4

static uint64_t take64(const uint8_t **p, size_t *n, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes && *n > 0; i++, (*p)++, (*n)--)
		v = v << 8 | **p;
	return v;
}

/* Whether the model's bucket (tat) runs near the clock's end at now, where
 * the table saturates and the model does not. */
static bool near_end(unsigned __int128 tat, uint64_t now, unsigned __int128 iv,
		     unsigned __int128 tol)
{
	unsigned __int128 at = tat > now ? tat : now;

	return at + 2 * iv + tol > UINT64_MAX;
}

/* The model's wait for a token of the bucket (tat) at now. */
static unsigned __int128 model_wait(unsigned __int128 tat, uint64_t now,
				    unsigned __int128 tol)
{
	unsigned __int128 at = tat > now ? tat : now;

	return at - now > tol ? at - now - tol : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct throttle *t = throttle_new(64);
	unsigned __int128 tat[KEYS] = {0};
	bool wild[KEYS] = {false};
	struct conf_bucket b;
	uint64_t now = 0;

	if (t == NULL)
		abort();
	b.requests = (unsigned)(take64(&data, &size, 3) % 1000001);
	b.per = (unsigned)(take64(&data, &size, 3) % 86400) + 1;
	while (size >= 2) {
		unsigned op = data[0] % 8, k = data[1] % KEYS;
		unsigned k2 = (k + 1) % KEYS;
		/* Keys apart in every bit the table looks at; never 0 or 1,
		 * which the table stores alike. */
		uint64_t key = (k + 2) * 0x9e3779b97f4a7c15ULL;
		unsigned __int128 at, iv, tol, want;
		uint64_t got;

		data += 2;
		size -= 2;
		if (op == 3) {
			/* Time moves on, a little or to near the clock's end. */
			uint64_t d = take64(&data, &size, 8);

			now = d >> 63 ? d : now + (d & 0xffffffffULL);
			continue;
		}
		if (op == 4) {
			/* A hold from the fleet: empty until a little later,
			 * or until near the clock's end. */
			uint64_t d = take64(&data, &size, 8), until;

			until = d >> 63 ? d : now + (d & 0xffffffffULL);
			throttle_hold(t, &b, key, until, now);
			if (b.requests == 0 || until <= now)
				continue;
			iv = (unsigned __int128)b.per * 1000000 / b.requests;
			tol = iv * (b.requests - 1);
			if ((unsigned __int128)until + tol > UINT64_MAX)
				wild[k] = true;
			else if (tat[k] < until + tol)
				tat[k] = until + tol;
			continue;
		}
		if (op == 6) {
			/* An operator's lift: full again, whatever it was. */
			bool limited = throttle_lift(t, key, now);

			if (!wild[k] && limited != (tat[k] > now))
				abort();
			tat[k] = 0;
			wild[k] = false;
			continue;
		}
		if (op == 7) {
			size_t limited = throttle_lift_all(t, now), want_n = 0;
			bool any_wild = false;

			for (unsigned i = 0; i < KEYS; i++) {
				any_wild |= wild[i];
				want_n += tat[i] > now;
				tat[i] = 0;
				wild[i] = false;
			}
			if (!any_wild && limited != want_n)
				abort();
			continue;
		}
		if (op == 5) {
			/* Two buckets at once: both spend a token or
			 * neither does. */
			const struct conf_bucket *bb[2] = {&b, &b};
			const uint64_t keys[2] = {
			    key, (k2 + 2) * 0x9e3779b97f4a7c15ULL};
			size_t took = throttle_take_all(t, bb, keys, 2, now), w;

			if (b.requests == 0) {
				if (took != 2)
					abort();
				continue;
			}
			iv = (unsigned __int128)b.per * 1000000 / b.requests;
			tol = iv * (b.requests - 1);
			if (wild[k] || wild[k2] || near_end(tat[k], now, iv, tol) ||
			    near_end(tat[k2], now, iv, tol)) {
				wild[k] = wild[k2] = true;
				continue;
			}
			w = model_wait(tat[k], now, tol) > 0	? 0
			    : model_wait(tat[k2], now, tol) > 0 ? 1
								: 2;
			if (took != w)
				abort();
			if (w == 2) {
				tat[k] = (tat[k] > now ? tat[k] : now) + iv;
				tat[k2] = (tat[k2] > now ? tat[k2] : now) + iv;
			}
			continue;
		}
		if (b.requests == 0) {
			if (throttle_take(t, &b, key, now) != 0)
				abort();
			continue;
		}
		iv = (unsigned __int128)b.per * 1000000 / b.requests;
		tol = iv * (b.requests - 1);
		at = tat[k] > now ? tat[k] : now;
		want = at - now > tol ? at - now - tol : 0;
		got = op == 0 ? throttle_peek(t, &b, key, now)
			      : throttle_take(t, &b, key, now);
		/* Near the clock's end the table saturates where the model
		 * runs beyond 2^64: from then on that key is only run, not
		 * compared. */
		if (wild[k] || at + 2 * iv + tol > UINT64_MAX) {
			wild[k] = true;
			continue;
		}
		if (got != (uint64_t)want)
			abort();
		if (op != 0 && want == 0)
			tat[k] = at + iv;
	}
	throttle_free(t);
	return 0;
}
