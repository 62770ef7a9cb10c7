/*
 * The throttle's buckets of the process (DESIGN.md "Edge protection"): one
 * table behind one lock for every worker (a device's connections land on
 * any worker), kept across reloads. Internal to proxy/, but for enum
 * bucket_kind, which proxy.h's guard operations name.
 */
#ifndef EF_PROXY_BUCKETS_H
#define EF_PROXY_BUCKETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf_bucket;
struct gen;

/* The kinds of bucket, in the order a request meets them. */
enum bucket_kind {
	BUCKET_DEVICE = 0,
	BUCKET_USER,
	BUCKET_CLIENT,
	BUCKET_KINDS,
	BUCKET_NONE = -1,
};

struct buckets;

/* Empty and off until the first buckets_configure. NULL without memory. */
struct buckets *buckets_new(void);
/* NULL is accepted. */
void buckets_free(struct buckets *b);

/* Follows generation g: guard.throttle on or off, its table sized by
 * guard.max_entries (a new size starts the buckets full again). */
void buckets_configure(struct buckets *b, const struct gen *g);

/* The name of value's bucket of kind (a DeviceId, a normalised user, a
 * client address) under g's key, never 0: a kind's letter and the value,
 * so a device and a user of the same name never share a bucket, keyed by
 * the key a fleet shares, so a bucket has one name in the store. */
uint64_t buckets_name(const struct gen *g, enum bucket_kind kind,
		      const char *value);

/* Takes one token from each of the request's buckets, key[kind] (0: it has
 * none of that kind), when every one of them has one; else takes none and
 * returns the first kind that had none. BUCKET_NONE
 * when the request may go (or the throttle is off). */
enum bucket_kind buckets_take(struct buckets *b,
			      const uint64_t key[BUCKET_KINDS]);

/*
 * Sharing with the fleet (proxy/fleet.c, on the control loop): while it is
 * on, every token taken is also tallied by key, and the fleet drains the
 * tally into the store's per-window counters; a key over its budget
 * fleet-wide comes back as a hold. The request path only adds to a small
 * table under the lock it holds anyway; a tally that is full drops what
 * does not fit (counted), the local buckets still limiting.
 */
struct bucket_tally {
	uint64_t key;
	uint32_t count;                 /* tokens taken since the last drain */
	uint8_t kind;                   /* enum bucket_kind */
};

/* Keys one tally holds between two drains. */
#define BUCKETS_TALLY_MAX 16384

/* Starts (true) or stops (false: the tally is emptied) tallying. */
void buckets_share(struct buckets *b, bool on);

/* Moves the tally into out (cap entries; the rest is dropped, counted) and
 * empties it; returns the entries moved. */
size_t buckets_drain(struct buckets *b, struct bucket_tally *out, size_t cap);

/* The fleet's word: key's bucket of kind is empty for ttl_us from now. */
void buckets_hold(struct buckets *b, enum bucket_kind kind, uint64_t key,
		  uint64_t ttl_us);

/* The microseconds until key's bucket of kind has a token (0: it has one,
 * or the throttle is off), without taking any. */
uint64_t buckets_peek(struct buckets *b, enum bucket_kind kind, uint64_t key);

/* Fills key's bucket of kind again (an operator's clear, here or on
 * another front end); returns whether it was not full. */
bool buckets_lift(struct buckets *b, enum bucket_kind kind, uint64_t key);
/* Fills every bucket again; returns how many were not full. */
size_t buckets_lift_all(struct buckets *b);

/* The current budgets, out[kind] for each kind (requests 0: that bucket is off, as
 * is every bucket while guard.throttle is). */
void buckets_conf(struct buckets *b, struct conf_bucket *out);

/* Tokens the tally could not hold (full, or without memory), and those
 * the fleet gave up (buckets_note_dropped). */
uint64_t buckets_tally_dropped(struct buckets *b);
/* Counts n tokens the fleet drained but gave up without telling the
 * store. */
void buckets_note_dropped(struct buckets *b, uint64_t n);

/* Buckets not full again now, and buckets given up for room (walks the
 * table). */
void buckets_counts(struct buckets *b, size_t *active, uint64_t *evictions);

#endif
