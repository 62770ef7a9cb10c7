/*
 * The password shield (DESIGN.md "Edge protection"): what easfront knows of
 * the passwords a CAS refused, so that a phone replaying a stale password is
 * answered at the edge and the directory's bad-password count stays still.
 *
 * Pure state: no clock (the caller passes now, in seconds), no threads (the
 * caller serialises access), no password ever: users and passwords enter
 * only as keyed hashes (shield_ids). Memory is bounded by max_entries; when
 * the table is full the entry evicted is found among a sample of entries,
 * plain ones first, known-good passwords next, holds last, the least
 * recently used of its class: a flood of random users cannot push out a
 * hold or a password that works.
 */
#ifndef EF_GUARD_SHIELD_H
#define EF_GUARD_SHIELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHIELD_ID_LEN 16

/* guard.passwords. A zero threshold turns that part off. */
struct shield_conf {
	unsigned password_failures; /* refusals of one password in window
				       before easfront answers it itself */
	unsigned user_failures;	    /* refusals with different passwords in
				       window before only known-good ones
				       pass */
	unsigned window;	    /* s */
	unsigned hold;		    /* s */
};

enum shield_verdict {
	SHIELD_PASS = 0,
	SHIELD_STALE_PASSWORD, /* 401: this password is held */
	SHIELD_GUESSING,       /* 401: the user is held and this password is
				  not known good */
};

struct shield_stats {
	size_t entries;		 /* in the table */
	size_t held_passwords;	 /* password entries with a hold now */
	size_t held_users;	 /* user entries with a hold now */
	uint64_t evictions;	 /* entries pushed out by a full table */
};

struct shield;

/* A table of at most max_entries (at least 16) entries; NULL without
 * memory. */
struct shield *shield_new(size_t max_entries);
/* Frees sh; NULL is accepted. */
void shield_free(struct shield *sh);

/* The keyed hashes of a user (user) and of that user's password (pass):
 * HMAC-SHA256 under key, truncated; the same on every front end with the
 * same key. */
void shield_ids(const unsigned char *key, size_t key_len, const char *user,
		const char *pass, size_t pass_len,
		uint8_t user_id[SHIELD_ID_LEN], uint8_t pass_id[SHIELD_ID_LEN]);

/* What a request with these credentials gets before it is forwarded. */
enum shield_verdict shield_check(struct shield *sh, const struct shield_conf *c,
				 const uint8_t user[SHIELD_ID_LEN],
				 const uint8_t pass[SHIELD_ID_LEN], uint64_t now);

/* The CAS's answer to such a request: refused (a 401) counts a failure of
 * the password, and of the user when the password is new in the window;
 * anything else clears the password's failures and marks it known good. */
void shield_feed(struct shield *sh, const struct shield_conf *c,
		 const uint8_t user[SHIELD_ID_LEN],
		 const uint8_t pass[SHIELD_ID_LEN], bool refused,
		 uint64_t now);

/* Forgets the user and every password of the user (an operator's `guard
 * clear`). Returns the entries removed. */
size_t shield_clear_user(struct shield *sh, const uint8_t user[SHIELD_ID_LEN]);

void shield_get_stats(const struct shield *sh, uint64_t now,
		      struct shield_stats *out);

#endif
