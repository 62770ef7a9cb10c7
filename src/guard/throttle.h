/*
 * Throttling (guard.throttle, DESIGN.md "Edge protection"): token buckets
 * by key (a DeviceId, a user, a client address), kept as the generic cell
 * rate algorithm keeps them: one number per key, the time at which the
 * bucket would be full again (its "theoretical arrival time"). A request
 * takes one token; a bucket holds requests tokens and gets requests back
 * every per seconds.
 *
 * Pure state: no clock (the caller passes now, in microseconds), no
 * threads (the caller serialises access), keys as 64-bit keyed hashes made
 * by the caller. Memory is fixed at creation: a set-associative table whose
 * full sets give up the bucket closest to full, which is the one that
 * matters least: a flood of new keys cannot push out a device being
 * throttled.
 */
#ifndef EF_GUARD_THROTTLE_H
#define EF_GUARD_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

struct throttle;

/* A table of about max_entries buckets (at least 64). NULL without
 * memory. */
struct throttle *throttle_new(size_t max_entries);
/* NULL is accepted. */
void throttle_free(struct throttle *t);

/* Takes a token of the bucket of key under b at now (us). Returns 0 when
 * there was one, else the microseconds until there is one again (at least
 * 1). A bucket with requests 0 always has one. */
uint64_t throttle_take(struct throttle *t, const struct conf_bucket *b,
		       uint64_t key, uint64_t now);

/* Takes a token of each of n buckets (key[i] under b[i]) at now when
 * every one has one, else none: returns n then, or the index of the first
 * that had none. One lookup per bucket and one claim per token taken,
 * where peeking all then taking all looks each bucket up three times. */
size_t throttle_take_all(struct throttle *t, const struct conf_bucket *const *b,
			 const uint64_t *key, size_t n, uint64_t now);

/* Whether key's bucket under b has a token at now, without taking it. */
uint64_t throttle_peek(const struct throttle *t, const struct conf_bucket *b,
		       uint64_t key, uint64_t now);

/* Empties the bucket of key under b until until (us): its next token comes
 * then, and the bucket fills again from there at its rate. A bucket already
 * emptier stays as it is. This is how a limit reached elsewhere (the fleet,
 * through the store) is enforced here. */
void throttle_hold(struct throttle *t, const struct conf_bucket *b,
		   uint64_t key, uint64_t until, uint64_t now);

/* Fills key's bucket again (an operator's word, or the fleet's): it has
 * its whole burst at once. Returns whether it was not full at now. */
bool throttle_lift(struct throttle *t, uint64_t key, uint64_t now);

/* Fills every bucket again; returns how many were not full at now. Walks
 * the whole table: an operator's action, not a request's. */
size_t throttle_lift_all(struct throttle *t, uint64_t now);

/* Buckets not yet full again (the keys being limited or about to be), and
 * the buckets given up for room. Each call walks a sixteenth of the table
 * at now and adds the other sixteenths as last walked: the count lags by
 * up to fifteen calls. */
void throttle_get_stats(struct throttle *t, uint64_t now, size_t *active,
			uint64_t *evictions);

#endif
