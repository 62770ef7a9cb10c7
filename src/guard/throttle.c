/*
 * The buckets' table: sets of WAYS entries chosen by the key's low bits, no
 * probing, no deletion: an entry whose bucket is full again is as good as
 * empty and is simply reused. 16 bytes an entry.
 */
#include "guard/throttle.h"

#include <stdbool.h>
#include <stdlib.h>

#define WAYS 4

struct slot {
	uint64_t key; /* 0: never used (key 0 is stored as 1) */
	uint64_t tat; /* us: when the bucket is full again */
};

/* throttle_get_stats walks one REGIONS-th of the table a call: a full walk
 * of a million buckets would hold every worker's requests for
 * milliseconds, at each scrape. */
#define REGIONS 16

struct throttle {
	struct slot *slot; /* owned: (mask + 1) * WAYS */
	size_t mask;
	uint64_t evictions;
	size_t region_active[REGIONS]; /* as last walked */
	unsigned next_region;
};

struct throttle *throttle_new(size_t max_entries)
{
	struct throttle *t = calloc(1, sizeof(*t));
	size_t sets = 16;

	while (sets * WAYS < max_entries)
		sets <<= 1;
	if (t == NULL || (t->slot = calloc(sets * WAYS, sizeof(*t->slot))) ==
			     NULL) {
		free(t);
		return NULL;
	}
	t->mask = sets - 1;
	return t;
}

void throttle_free(struct throttle *t)
{
	if (t == NULL)
		return;
	free(t->slot);
	free(t);
}

/* The time one token stands for, and how far ahead of now the bucket may
 * run before it is empty: (requests - 1) tokens. Within conf_check's
 * bounds (per <= 86400 s, requests <= 10^6) both fit easily in 64 bits. */
static uint64_t interval_us(const struct conf_bucket *b)
{
	return (uint64_t)b->per * 1000000 / b->requests;
}

static uint64_t tolerance_us(const struct conf_bucket *b)
{
	return interval_us(b) * (b->requests - 1);
}

static struct slot *set_of(const struct throttle *t, uint64_t key)
{
	/* The high bits: the caller's keys are keyed hashes, every bit as
	 * good, and the low ones stay for the slots' own comparisons. */
	return &t->slot[((key >> 32) & t->mask) * WAYS];
}

static const struct slot *lookup(const struct throttle *t, uint64_t key)
{
	const struct slot *s = set_of(t, key);

	for (unsigned w = 0; w < WAYS; w++)
		if (s[w].key == key)
			return &s[w];
	return NULL;
}

/* key's slot, made when absent from the way whose bucket is fullest (the
 * smallest tat: a full one is the same as none at all). */
static struct slot *claim(struct throttle *t, uint64_t key, uint64_t now)
{
	struct slot *s = set_of(t, key), *pick = &s[0];

	for (unsigned w = 0; w < WAYS; w++) {
		if (s[w].key == key)
			return &s[w];
		if (s[w].tat < pick->tat)
			pick = &s[w];
	}
	if (pick->key != 0 && pick->tat > now)
		t->evictions++;
	pick->key = key;
	pick->tat = 0;
	return pick;
}

uint64_t throttle_peek(const struct throttle *t, const struct conf_bucket *b,
		       uint64_t key, uint64_t now)
{
	const struct slot *s;
	uint64_t tat;

	if (b->requests == 0)
		return 0;
	s = lookup(t, key ? key : 1);
	tat = s != NULL && s->tat > now ? s->tat : now;
	return tat - now > tolerance_us(b) ? tat - now - tolerance_us(b) : 0;
}

/* a + b, at most UINT64_MAX: a clock near its end must not wrap a bucket
 * around to full. */
static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Spends a token of key's bucket under b, known to have one. */
static void spend(struct throttle *t, const struct conf_bucket *b,
		  uint64_t key, uint64_t now)
{
	struct slot *s;

	if (b->requests == 0)
		return;
	s = claim(t, key ? key : 1, now);
	s->tat = sat_add(s->tat > now ? s->tat : now, interval_us(b));
}

uint64_t throttle_take(struct throttle *t, const struct conf_bucket *b,
		       uint64_t key, uint64_t now)
{
	uint64_t wait = throttle_peek(t, b, key, now);

	if (wait == 0)
		spend(t, b, key, now);
	return wait;
}

size_t throttle_take_all(struct throttle *t, const struct conf_bucket *const *b,
			 const uint64_t *key, size_t n, uint64_t now)
{
	for (size_t i = 0; i < n; i++)
		if (throttle_peek(t, b[i], key[i], now) > 0)
			return i;
	/* Claims only now: a claim may give up another way of the set, one
	 * just looked at among them. */
	for (size_t i = 0; i < n; i++)
		spend(t, b[i], key[i], now);
	return n;
}

void throttle_hold(struct throttle *t, const struct conf_bucket *b,
		   uint64_t key, uint64_t until, uint64_t now)
{
	uint64_t tat = sat_add(until, b->requests ? tolerance_us(b) : 0);
	struct slot *s;

	if (b->requests == 0 || until <= now)
		return;
	s = claim(t, key ? key : 1, now);
	if (s->tat < tat)
		s->tat = tat;
}

bool throttle_lift(struct throttle *t, uint64_t key, uint64_t now)
{
	struct slot *s = set_of(t, key ? key : 1);
	bool limited = false;

	for (unsigned w = 0; w < WAYS; w++)
		if (s[w].key == (key ? key : 1)) {
			limited = s[w].tat > now;
			s[w].tat = 0;
		}
	return limited;
}

size_t throttle_lift_all(struct throttle *t, uint64_t now)
{
	size_t n = (t->mask + 1) * WAYS, limited = 0;

	for (size_t i = 0; i < n; i++) {
		if (t->slot[i].key != 0 && t->slot[i].tat > now)
			limited++;
		t->slot[i].tat = 0;
	}
	return limited;
}

void throttle_get_stats(struct throttle *t, uint64_t now, size_t *active,
			uint64_t *evictions)
{
	size_t n = (t->mask + 1) * WAYS, per = n / REGIONS;
	size_t from = t->next_region * per, count = 0;

	for (size_t i = from; i < from + per; i++)
		if (t->slot[i].key != 0 && t->slot[i].tat > now)
			count++;
	t->region_active[t->next_region] = count;
	t->next_region = (t->next_region + 1) % REGIONS;
	*active = 0;
	for (unsigned r = 0; r < REGIONS; r++)
		*active += t->region_active[r];
	*evictions = t->evictions;
}
