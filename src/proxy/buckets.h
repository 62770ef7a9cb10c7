/*
 * The throttle's buckets of the process (DESIGN.md "Edge protection"): one
 * table behind one lock for every worker (a device's connections land on
 * any worker), kept across reloads. Internal to proxy/.
 */
#ifndef EF_PROXY_BUCKETS_H
#define EF_PROXY_BUCKETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gen;

/* The kinds of bucket, in the order a request meets them. */
enum bucket_kind {
	BUCKET_DEVICE = 0,
	BUCKET_USER,
	BUCKET_CLIENT,
	BUCKET_KINDS,
	BUCKET_NONE = -1,
};

/* One request's keys: key[k] is used when has[k]. */
struct bucket_keys {
	uint64_t key[BUCKET_KINDS];
	bool has[BUCKET_KINDS];
};

struct buckets;

/* Empty and off until the first buckets_configure. NULL without memory. */
struct buckets *buckets_new(void);
/* NULL is accepted. */
void buckets_free(struct buckets *b);

/* Follows generation g: guard.throttle on or off, its table sized by
 * guard.max_entries (a new size starts the buckets full again). */
void buckets_configure(struct buckets *b, const struct gen *g);

/* Takes one token from each bucket of k when every one of them has one;
 * else takes none and returns the first kind that had none. BUCKET_NONE
 * when the request may go (or the throttle is off). */
enum bucket_kind buckets_take(struct buckets *b, const struct bucket_keys *k);

/* Buckets not full again now, and buckets given up for room (walks the
 * table). */
void buckets_counts(struct buckets *b, size_t *active, uint64_t *evictions);

#endif
