/*
 * The password shield and the throttle shared by a fleet of front ends
 * through the store (DESIGN.md "Edge protection", guard.store): every
 * refusal a CAS gives, and every throttle token taken, is counted in Redis
 * too, and a hold reached there is published to every front end, which
 * then answers it locally. Internal to proxy/.
 *
 * Everything here runs on the control loop (the daemon's thread: DNS,
 * health checks, the admin endpoint); workers only leave news in the
 * shields' outbox (proxy/shields.h) and never wait for the store. What
 * comes while the store is down is kept (proxy/backlog.h) and told when it
 * is back: the shields' news, and the throttle's tokens of windows not
 * over by then. Keys,
 * all keyed hashes (the store puts its prefix, "easfront:", before them):
 *
 *   'p' pass_id user_id   refusals of a password in its window (counter)
 *   'u' user_id           different passwords refused in the window
 *   'P' pass_id user_id   a password's hold (SET EX), published on "holds"
 *   'U' user_id           a user's guessing hold, published likewise
 *   'C' [user_id]         an operator's clear of a user (none: everyone,
 *                         and every throttle bucket), published only
 *   't' kind key window   tokens of a throttle bucket (kind: enum
 *                         bucket_kind; key: its 64-bit keyed hash) taken
 *                         in one fixed window of its per seconds, on the
 *                         fleet's wall clock (counter)
 *   'T' kind key          a bucket over its budget fleet-wide, held to the
 *                         window's end (SET EX), published on "holds";
 *                         its clear, an operator's lift of the bucket
 *
 * The password keys carry the whole user id (16 bytes), not the 8 the
 * shield's table keeps, so that a hold learned from the store is listed
 * and cleared by user like a local one.
 */
#ifndef EF_PROXY_FLEET_H
#define EF_PROXY_FLEET_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/buckets.h"

struct buckets;
struct event_base;
struct fleet;
struct gen;
struct shields;
struct store_stats;

/* Sharing for shields and the throttle's buckets bk on base (the control loop; both outlive it), off
 * until fleet_follow names a store. NULL without memory. */
struct fleet *fleet_new(struct event_base *base, struct shields *sh,
		       struct buckets *bk);

/* Follows generation g (start-up and every reload, on the control loop):
 * its thresholds, and its guard.store with its password; a changed store
 * is replaced (what was in flight to the old one is dropped), none turns
 * sharing off. */
void fleet_follow(struct fleet *f, const struct gen *g);

/* An operator lifted key's bucket of kind here: every front end fills it
 * again and the store forgets its counts (when the store is back, while it
 * is down). On the control loop; nothing without a store. */
void fleet_lift(struct fleet *f, enum bucket_kind kind, uint64_t key);

/* What is kept for the store, not told yet: the shields' news and lifts,
 * and the buckets' tallies (0 and 0 without a store). On the control
 * loop. */
void fleet_waiting(const struct fleet *f, size_t *news, size_t *tokens);

/* Copies the store's counters into *st; false (and *st zeroed) without a
 * store. On the control loop. */
bool fleet_stats(const struct fleet *f, struct store_stats *st);

/* Stops sharing and frees f; NULL is accepted. On the control loop, never
 * from a store callback. */
void fleet_free(struct fleet *f);

#endif
