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

/* See proxy_guard_holds, proxy_guard_clear and proxy_guard_counts;
 * user_id is the user's id under the current key (NULL: every user). */
size_t shields_holds(struct shields *sh, const uint8_t *user_id,
		     struct guard_hold *out, size_t cap);
size_t shields_clear(struct shields *sh, const uint8_t *user_id);
void shields_counts(struct shields *sh, struct guard_counts *out);

#endif
