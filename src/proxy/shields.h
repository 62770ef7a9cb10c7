/*
 * The password shield of the process (DESIGN.md "Edge protection"): one
 * table behind one lock for every worker, because a phone's connections
 * land on any worker, and kept across reloads, because a reload must not
 * let a stale phone at the directory again. Beside the table, the names of
 * the users with a hold, for the operators' list: the table itself knows
 * users only by keyed hash. Internal to proxy/.
 */
#ifndef EF_PROXY_SHIELDS_H
#define EF_PROXY_SHIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guard/shield.h"

struct gen;
struct guard_hold;
struct guard_counts;

/* Users whose holds the list remembers by name; beyond, the holds still
 * work, the oldest names are forgotten. */
#define SHIELDS_NAMES_MAX 4096

struct shields;

/* Empty and off until the first shields_configure. NULL without memory. */
struct shields *shields_new(void);
/* NULL is accepted. */
void shields_free(struct shields *sh);

/* Follows generation g (start-up and every reload): its guard.passwords
 * thresholds, its table size (the entries move over, holds first) and its
 * key (a new key empties the table: its ids mean nothing under it). */
void shields_configure(struct shields *sh, const struct gen *g);

/* What credentials with these ids get now (SHIELD_PASS while off). */
enum shield_verdict shields_check(struct shields *sh,
				  const uint8_t user[SHIELD_ID_LEN],
				  const uint8_t pass[SHIELD_ID_LEN]);

/* The CAS refused (refused) or accepted credentials with these ids of the
 * user named user (normalised; kept only when a hold begins). */
void shields_feed(struct shields *sh, const char *user,
		  const uint8_t user_id[SHIELD_ID_LEN],
		  const uint8_t pass_id[SHIELD_ID_LEN], bool refused);

/*
 * What the workers tell the fleet's sharing (proxy/fleet.c, on the control
 * loop): the store is never touched on a worker, so shields_feed leaves
 * its news in an outbox, under the lock it holds anyway, and wakes the
 * control loop, which drains it.
 */
enum shields_news {
	SHIELDS_REFUSED = 1, /* the CAS refused pass of user */
	SHIELDS_CLEARED,     /* an operator cleared user (all: everyone) */
	SHIELDS_GOOD,        /* the CAS accepted pass of user: known good */
};

struct shields_event {
	uint8_t kind; /* enum shields_news */
	bool first;   /* REFUSED: the password's first refusal in its
	                 window (one more different password of user) */
	bool all;     /* CLEARED: every user */
	uint8_t user[SHIELD_ID_LEN];
	uint8_t pass[SHIELD_ID_LEN];
};

/* Events the outbox keeps for the control loop; beyond, they are dropped
 * and counted (a control loop that stalls must not grow the process). */
#define SHIELDS_OUTBOX_MAX 100000

/* Called, under the shields' lock, when the outbox gets its first event
 * since the last drain: it must only wake a loop (event_active). */
typedef void (*shields_wake_cb)(void *arg);

/* Starts (wake not NULL) or stops (NULL: the outbox is emptied and fills
 * no more) telling the fleet. Once this returns with NULL, wake is never
 * called again. */
void shields_share(struct shields *sh, shields_wake_cb wake, void *arg);

/* Moves up to cap events out of the outbox, oldest first; returns how
 * many. */
size_t shields_drain(struct shields *sh, struct shields_event *out, size_t cap);

/* Counts n events the fleet gave up without telling the store
 * (easfront_guard_shared_dropped_total), as the outbox counts its own. */
void shields_note_dropped(struct shields *sh, uint64_t n);

/* Tells the fleet that an operator cleared user_id (NULL: every user);
 * the local clear is shields_clear's. */
void shields_post_clear(struct shields *sh, const uint8_t *user_id);

/* A hold that the fleet's store announced: the password pass of user_id
 * (pass NULL: the user's guessing hold) is held for ttl_s seconds from
 * now (shield_set_hold). A hold that begins here is counted (shared_holds)
 * and named in the list by the name this front end knows, or by its id's
 * first bytes when it never saw the user. */
void shields_apply_hold(struct shields *sh,
                        const uint8_t user_id[SHIELD_ID_LEN],
                        const uint8_t *pass, unsigned ttl_s);

/* A known-good mark the fleet's store had: the password pass_id of
 * user_id worked on a front end and is known good for ttl_s seconds from
 * now (shield_set_good). */
void shields_apply_good(struct shields *sh,
			const uint8_t user_id[SHIELD_ID_LEN],
			const uint8_t pass_id[SHIELD_ID_LEN], unsigned ttl_s);

/* See proxy_guard_holds, proxy_guard_clear and proxy_guard_counts;
 * user_id is the user's id under the current key (NULL: every user). */
size_t shields_holds(struct shields *sh, const uint8_t *user_id,
		     struct guard_hold *out, size_t cap);
size_t shields_clear(struct shields *sh, const uint8_t *user_id);
void shields_counts(struct shields *sh, struct guard_counts *out);

#endif
