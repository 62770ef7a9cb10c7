/*
 * The data path: worker threads (one libevent base each, SO_REUSEPORT
 * listeners), client sessions over two connection ends (net/conn.c: raw events,
 * one write per response, no locks), upstream pools. The
 * daemon creates it, publishes generations into it and stops it.
 */
#ifndef EF_PROXY_PROXY_H
#define EF_PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buckets.h" /* enum bucket_kind */

struct conf;
struct gen;
struct proxy;

/* A proxy with n_workers worker threads (not started). NULL on failure. */
struct proxy *proxy_new(unsigned n_workers, char **err);

/* Opens one SO_REUSEPORT listening socket per worker and listen address of c.
 * Call before dropping privileges. Returns 0, or -1 with *err. */
int proxy_listen(struct proxy *p, const struct conf *c, char **err);

struct cas_entry;

/* The process-wide entry of a CAS URL, created on first use: equal URLs get
 * the same entry (and pool id) in every generation, so a reload keeps the
 * idle connections and the health of unchanged CAS. NULL when url cannot be
 * used. Start-up and reload only: a new entry resolves its name. */
struct cas_entry *proxy_cas(struct proxy *p, const char *url);

/* Makes g the generation new requests use; takes over the caller's reference.
 * Workers pick it up asynchronously; requests in flight keep theirs. */
void proxy_publish(struct proxy *p, struct gen *g);

struct stats_snapshot;

/* The current generation with a reference for the caller, or NULL. */
struct gen *proxy_gen_hold(struct proxy *p);

/* Sums every worker's counters into *out (zeroed first). Any thread. */
void proxy_stats(struct proxy *p, struct stats_snapshot *out);

struct event_base;

/* Starts DNS watches and health checks of the CAS on base (the caller's
 * thread, which must also be the one that calls proxy_publish). Returns 0
 * or -1 with *err. */
int proxy_control_start(struct proxy *p, struct event_base *base, char **err);

/* Stops them; call before base goes away. */
void proxy_control_stop(struct proxy *p);

/* Starts the worker threads. Returns 0 or -1 with *err. */
int proxy_start(struct proxy *p, char **err);

/* Stops accepting, lets requests in flight finish for up to drain_seconds,
 * closes what is left and joins the workers. */
void proxy_stop(struct proxy *p, unsigned drain_seconds);

/*
 * The edge protection's process-wide tables (the password shield), shared by
 * every worker and kept across reloads. What they show never holds a
 * password or a hash of one: users only.
 */
struct guard_hold {
	char user[128];		 /* normalised as routing does */
	unsigned held_passwords; /* passwords of the user answered 401 by
				    easfront now (stale-password) */
	unsigned password_left;	 /* s until the last of those holds ends */
	unsigned user_left;	 /* s of the guessing hold left; 0: none */
};

struct guard_counts {
	bool passwords_on;	/* guard.passwords configured */
	unsigned rules;		/* guard.devices entries */
	size_t entries;		/* in the shield's table */
	size_t max_entries;
	size_t held_passwords;	/* passwords answered locally now */
	size_t held_users;	/* users in a guessing hold now */
	uint64_t evictions;	/* entries pushed out by a full table */
	uint64_t turned_away;	/* newcomers not kept: the table was full of
				   holds and known-good passwords */
	bool throttle_on;	/* guard.throttle configured */
	size_t throttled_keys;	/* buckets not full again now */
	uint64_t throttle_evictions; /* buckets given up for room */
	uint64_t shared_holds;       /* holds begun here by the store's word */
	uint64_t shared_dropped;     /* refusals, clears and marks never told
	                                to the store: the outbox or the
	                                backlog was full */
	uint64_t throttle_shared_dropped; /* throttle tokens never told to
	                                     the store: its tally or the
	                                     backlog was full */
	size_t shared_waiting;       /* refusals, clears, marks and lifts
	                                kept while the store was down, not
	                                told yet */
	size_t throttle_shared_waiting; /* buckets' tallies likewise */
};

/* The users with a hold now (user: that one only, normalised as routing
 * does; NULL: all), sorted by name, at most cap into out. Returns how many
 * there are (may exceed cap). Any thread. */
size_t proxy_guard_holds(struct proxy *p, const char *user,
			 struct guard_hold *out, size_t cap);

/* The microseconds until value's bucket of kind (a DeviceId, a normalised
 * user, a client address) has a token again; 0 when it has one or the
 * throttle is off. Any thread. */
uint64_t proxy_guard_throttle_wait(struct proxy *p, enum bucket_kind kind,
				   const char *value);

/* What an operator's clear did. */
struct guard_cleared {
	size_t users;  /* users the shield forgot */
	size_t refilled; /* throttle buckets filled again that were not
	                    full (a token or more had been taken) */
};

/* Forgets what the shield knows of user (normalised): its failures, holds
 * and known-good passwords, and fills the user's throttle bucket again;
 * fills device's (a DeviceId) bucket again; with neither, forgets
 * everyone and fills every bucket. With guard.store, every front end does
 * the same. On the control loop. */
void proxy_guard_clear(struct proxy *p, const char *user, const char *device,
		       struct guard_cleared *out);

/* The guard's figures. On the control loop (what waits for the store is
 * its). */
void proxy_guard_counts(struct proxy *p, struct guard_counts *out);

struct store_stats;

/* The shared store's counters (store/store.h) into *out; false (*out
 * zeroed) without guard.store. On the control loop's thread (the admin
 * endpoint's), where the store lives. */
bool proxy_store_stats(struct proxy *p, struct store_stats *out);

/* Frees a stopped (or never started) proxy. NULL is accepted. */
void proxy_free(struct proxy *p);

#endif
