/*
 * The process's token buckets: guard/throttle.c's table behind a mutex,
 * configured at each publish. A request's buckets are all looked at before
 * any token is taken, so a request refused by its user's bucket does not
 * also spend its device's token.
 */
#include "proxy/buckets.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/siphash.h"
#include "eas/eas.h"
#include "guard/throttle.h"
#include "proxy/gen.h"

/* The tally's slots: open addressing at most half full, so a probe is
 * short; used[] lists the slots in use, so a drain costs what it moves. */
#define TALLY_SLOTS (2 * BUCKETS_TALLY_MAX)

struct tally {
	struct bucket_tally slot[TALLY_SLOTS]; /* key 0: free */
	uint32_t used[BUCKETS_TALLY_MAX];
	size_t n_used;
};

struct buckets {
	pthread_mutex_t lock;
	struct throttle *table; /* NULL until guard.throttle is first on */
	size_t max;
	bool on;
	struct conf_bucket conf[BUCKET_KINDS];
	struct tally *tally;    /* owned: NULL while the fleet is not told */
	uint64_t tally_dropped; /* tokens the tally had no room for */
};

struct buckets *buckets_new(void)
{
	struct buckets *b = calloc(1, sizeof(*b));

	if (b != NULL)
		pthread_mutex_init(&b->lock, NULL);
	return b;
}

void buckets_free(struct buckets *b)
{
	if (b == NULL)
		return;
	throttle_free(b->table);
	free(b->tally);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

void buckets_configure(struct buckets *b, const struct gen *g)
{
	const struct conf *c = g->conf;
	struct throttle *t = NULL;

	pthread_mutex_lock(&b->lock);
	b->on = c->guard_throttle_on;
	if (b->on) {
		b->conf[BUCKET_DEVICE] = c->guard_throttle.device;
		b->conf[BUCKET_USER] = c->guard_throttle.user;
		b->conf[BUCKET_CLIENT] = c->guard_throttle.client;
		if (b->table == NULL || b->max != c->guard_max_entries)
			t = throttle_new(c->guard_max_entries);
		if (t != NULL) {
			throttle_free(b->table);
			b->table = t;
			b->max = c->guard_max_entries;
		}
		if (b->table == NULL) {
			log_warnx("guard: no memory for the throttle's table: "
				  "throttling off");
			b->on = false;
		}
	}
	pthread_mutex_unlock(&b->lock);
}

/* One more token of key (kind k) for the fleet. Under the lock. */
static void tally_add(struct buckets *b, enum bucket_kind k, uint64_t key)
{
	struct tally *t = b->tally;
	uint64_t h = key ? key : 1;
	size_t i = (size_t)(h >> 32) & (TALLY_SLOTS - 1);

	for (;; i = (i + 1) & (TALLY_SLOTS - 1)) {
		struct bucket_tally *e = &t->slot[i];

		if (e->key == h && e->kind == k) {
			e->count++;
			return;
		}
		if (e->key != 0)
			continue;
		if (t->n_used == BUCKETS_TALLY_MAX) {
			b->tally_dropped++;
			return;
		}
		*e = (struct bucket_tally){.key = h, .count = 1, .kind = k};
		t->used[t->n_used++] = (uint32_t)i;
		return;
	}
}

enum bucket_kind buckets_take(struct buckets *b,
			      const uint64_t keys[BUCKET_KINDS])
{
	const struct conf_bucket *conf[BUCKET_KINDS];
	uint64_t key[BUCKET_KINDS];
	int kind[BUCKET_KINDS];
	size_t n = 0, took;
	uint64_t now;

	for (int i = 0; i < BUCKET_KINDS; i++)
		if (keys[i] != 0) {
			key[n] = keys[i];
			kind[n++] = i;
		}
	if (n == 0)
		return BUCKET_NONE;
	now = clock_mono_us();
	pthread_mutex_lock(&b->lock);
	if (!b->on) {
		pthread_mutex_unlock(&b->lock);
		return BUCKET_NONE;
	}
	for (size_t i = 0; i < n; i++)
		conf[i] = &b->conf[kind[i]];
	took = throttle_take_all(b->table, conf, key, n, now);
	for (size_t i = 0; took == n && b->tally != NULL && i < n; i++)
		tally_add(b, (enum bucket_kind)kind[i], key[i]);
	pthread_mutex_unlock(&b->lock);
	return took == n ? BUCKET_NONE : (enum bucket_kind)kind[took];
}

void buckets_counts(struct buckets *b, size_t *active, uint64_t *evictions)
{
	*active = 0;
	*evictions = 0;
	pthread_mutex_lock(&b->lock);
	if (b->table != NULL)
		throttle_get_stats(b->table, clock_mono_us(), active,
				   evictions);
	pthread_mutex_unlock(&b->lock);
}

void buckets_share(struct buckets *b, bool on)
{
	struct tally *t = on ? calloc(1, sizeof(*t)) : NULL, *old;

	pthread_mutex_lock(&b->lock);
	old = b->tally;
	if (on && old != NULL) {
		/* Already on: keep what is tallied. */
		old = t;
	} else
		b->tally = t;
	pthread_mutex_unlock(&b->lock);
	free(old);
	if (on && t == NULL)
		log_warnx("guard: no memory for the throttle's tally: each "
			  "front end throttles alone");
}

size_t buckets_drain(struct buckets *b, struct bucket_tally *out, size_t cap)
{
	struct tally *t;
	size_t n = 0;

	pthread_mutex_lock(&b->lock);
	t = b->tally;
	for (size_t i = 0; t != NULL && i < t->n_used; i++) {
		struct bucket_tally *e = &t->slot[t->used[i]];

		if (n < cap)
			out[n++] = *e;
		else
			b->tally_dropped += e->count;
		*e = (struct bucket_tally){0};
	}
	if (t != NULL)
		t->n_used = 0;
	pthread_mutex_unlock(&b->lock);
	return n;
}

void buckets_hold(struct buckets *b, enum bucket_kind kind, uint64_t key,
		  uint64_t ttl_us)
{
	uint64_t now = clock_mono_us();

	if (kind < 0 || kind >= BUCKET_KINDS)
		return;
	pthread_mutex_lock(&b->lock);
	if (b->on)
		throttle_hold(b->table, &b->conf[kind], key, now + ttl_us,
			      now);
	pthread_mutex_unlock(&b->lock);
}

void buckets_conf(struct buckets *b, struct conf_bucket *out)
{
	pthread_mutex_lock(&b->lock);
	for (int i = 0; i < BUCKET_KINDS; i++)
		out[i] = b->on ? b->conf[i] : (struct conf_bucket){0};
	pthread_mutex_unlock(&b->lock);
}

uint64_t buckets_name(const struct gen *g, enum bucket_kind kind,
		      const char *value)
{
	static const char letter[BUCKET_KINDS] = {'d', 'u', 'c'};
	char buf[EAS_USER_MAX + 2];
	size_t n = strlen(value);
	uint64_t h;

	if (n > sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	buf[0] = letter[kind];
	memcpy(buf + 1, value, n);
	h = siphash24(g->bucket_key, buf, n + 1);
	return h != 0 ? h : 1;
}

uint64_t buckets_peek(struct buckets *b, enum bucket_kind kind, uint64_t key)
{
	uint64_t wait = 0;

	if (kind < 0 || kind >= BUCKET_KINDS)
		return 0;
	pthread_mutex_lock(&b->lock);
	if (b->on && b->table != NULL)
		wait = throttle_peek(b->table, &b->conf[kind], key,
				     clock_mono_us());
	pthread_mutex_unlock(&b->lock);
	return wait;
}

bool buckets_lift(struct buckets *b, enum bucket_kind kind, uint64_t key)
{
	bool limited = false;

	if (kind < 0 || kind >= BUCKET_KINDS)
		return false;
	pthread_mutex_lock(&b->lock);
	if (b->table != NULL)
		limited = throttle_lift(b->table, key, clock_mono_us());
	pthread_mutex_unlock(&b->lock);
	return limited;
}

size_t buckets_lift_all(struct buckets *b)
{
	size_t n = 0;

	pthread_mutex_lock(&b->lock);
	if (b->table != NULL)
		n = throttle_lift_all(b->table, clock_mono_us());
	pthread_mutex_unlock(&b->lock);
	return n;
}

void buckets_note_dropped(struct buckets *b, uint64_t n)
{
	pthread_mutex_lock(&b->lock);
	b->tally_dropped += n;
	pthread_mutex_unlock(&b->lock);
}

uint64_t buckets_tally_dropped(struct buckets *b)
{
	uint64_t n;

	pthread_mutex_lock(&b->lock);
	n = b->tally_dropped;
	pthread_mutex_unlock(&b->lock);
	return n;
}
