/*
 * The process's token buckets: guard/throttle.c's table behind a mutex,
 * configured at each publish. A request's buckets are all looked at before
 * any token is taken, so a request refused by its user's bucket does not
 * also spend its device's token.
 */
#include "proxy/buckets.h"

#include <pthread.h>
#include <stdlib.h>

#include "conf/conf.h"
#include "core/clock.h"
#include "core/log.h"
#include "guard/throttle.h"
#include "proxy/gen.h"

struct buckets {
	pthread_mutex_t lock;
	struct throttle *table; /* NULL until guard.throttle is first on */
	size_t max;
	bool on;
	struct conf_bucket conf[BUCKET_KINDS];
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

enum bucket_kind buckets_take(struct buckets *b, const struct bucket_keys *k)
{
	uint64_t now = clock_mono_us();
	enum bucket_kind refused = BUCKET_NONE;

	pthread_mutex_lock(&b->lock);
	for (int i = 0; b->on && i < BUCKET_KINDS && refused == BUCKET_NONE;
	     i++)
		if (k->has[i] &&
		    throttle_peek(b->table, &b->conf[i], k->key[i], now) > 0)
			refused = (enum bucket_kind)i;
	for (int i = 0; b->on && refused == BUCKET_NONE && i < BUCKET_KINDS;
	     i++)
		if (k->has[i])
			throttle_take(b->table, &b->conf[i], k->key[i], now);
	pthread_mutex_unlock(&b->lock);
	return refused;
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
