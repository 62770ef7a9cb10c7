/*
 * The password shield (DESIGN.md "Edge protection"): what easfront knows of
 * the passwords a CAS refused, so that a phone replaying a stale password is
 * answered at the edge and the directory's bad-password count stays still.
 *
 * Pure state: no clock (the caller passes now, in seconds), no threads (the
 * caller serialises access), no password ever: users and passwords enter
 * only as keyed hashes (shield_ids). Memory is bounded by max_entries; when
 * the table is full the entry evicted is the least recently used plain one
 * (no hold, not known good) of a sample; when there is none, the newcomer
 * is turned away: a flood of random users cannot push out a hold or a
 * password that works, even once its own entries are holds.
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

/*
 * shield_ids with the key's HMAC pads absorbed once: per request only the
 * user and password are hashed. A shield_key is read-only after
 * shield_key_new and may be used by several threads at once.
 */
struct shield_key;

/* NULL when out of memory. */
struct shield_key *shield_key_new(const unsigned char *key, size_t key_len);
/* NULL is accepted. */
void shield_key_free(struct shield_key *k);
/* The same ids as shield_ids under the key k was made with; returns 0, or
 * -1 when libcrypto fails (the ids are then zero and must not be used). */
int shield_key_ids(const struct shield_key *k, const char *user,
		   const char *pass, size_t pass_len,
		   uint8_t user_id[SHIELD_ID_LEN], uint8_t pass_id[SHIELD_ID_LEN]);

/* What a request with these credentials gets before it is forwarded. */
enum shield_verdict shield_check(struct shield *sh, const struct shield_conf *c,
				 const uint8_t user[SHIELD_ID_LEN],
				 const uint8_t pass[SHIELD_ID_LEN], uint64_t now);

/* What shield_feed changed that an operator's list shows. */
#define SHIELD_NEW_PASSWORD_HOLD 0x1U /* a password is held from now */
#define SHIELD_NEW_USER_HOLD 0x2U     /* the user is held from now */
#define SHIELD_NEW_GOOD 0x4U /* a password is known good from now, or its
				mark was renewed past half its time: worth
				telling the fleet */
#define SHIELD_NEW_HOLDS (SHIELD_NEW_PASSWORD_HOLD | SHIELD_NEW_USER_HOLD)

/* The CAS's answer to such a request: refused (a 401) counts a failure of
 * the password, and of the user when the password is new in the window;
 * anything else clears the password's failures and marks it known good.
 * Returns SHIELD_NEW_* bits. */
unsigned shield_feed(struct shield *sh, const struct shield_conf *c,
		 const uint8_t user[SHIELD_ID_LEN],
		 const uint8_t pass[SHIELD_ID_LEN], bool refused,
		 uint64_t now);

/* Refusals of the password pass counted in its current window at now (0
 * when its window has passed or it is unknown): 1 right after shield_feed
 * means the password is new in its window, which the user's count of
 * different passwords goes by. */
unsigned shield_pass_refusals(const struct shield *sh,
                              const struct shield_conf *c,
                              const uint8_t pass[SHIELD_ID_LEN], uint64_t now);

/* A known-good mark made elsewhere (another front end saw the password
 * work): the password pass of user is known good until until, unless it
 * already is for longer. The entry is made when absent, as shield_set_hold
 * makes one; a hold is left as it is. */
void shield_set_good(struct shield *sh, const uint8_t user[SHIELD_ID_LEN],
		     const uint8_t pass[SHIELD_ID_LEN], uint64_t until,
		     uint64_t now);

/* How long a success keeps a password known good under c, s. */
unsigned shield_good_time(const struct shield_conf *c);

/*
 * A hold decided elsewhere (another front end, through the shared store):
 * holds the password pass of user, or the user itself when pass is NULL,
 * until until (s, the caller's clock). The entry is made when absent, as
 * shield_feed makes one (room is made by evicting a plain entry, never a
 * hold or a known-good password); a hold is lengthened, never shortened;
 * a password held this way stops being known good. Returns
 * SHIELD_NEW_PASSWORD_HOLD or SHIELD_NEW_USER_HOLD when a hold begins, 0
 * when one was already on or there was no room.
 */
unsigned shield_set_hold(struct shield *sh, const uint8_t user[SHIELD_ID_LEN],
                         const uint8_t *pass, uint64_t until, uint64_t now);

/* Forgets the user and every password of the user (an operator's `guard
 * clear`). Returns the entries removed. */
/* Seconds of the user's guessing hold left at now; 0 when none. */
unsigned shield_user_hold_left(const struct shield *sh,
			       const uint8_t user[SHIELD_ID_LEN], uint64_t now);

/* Moves every entry of src into dst (a table of another size), the ones
 * worth most first, so that a smaller dst keeps the holds. Returns the
 * entries that did not fit. src is left unchanged. */
size_t shield_copy(struct shield *dst, const struct shield *src, uint64_t now);

size_t shield_clear_user(struct shield *sh, const uint8_t user[SHIELD_ID_LEN]);

/* The entries and evictions of shield_get_stats, without its walk, and
 * the newcomers turned away because every entry was worth keeping. */
void shield_get_size(const struct shield *sh, size_t *entries,
		     uint64_t *evictions, uint64_t *turned_away);

/* Walks the whole table (max_entries * 4/3 slots). */
void shield_get_stats(const struct shield *sh, uint64_t now,
		      struct shield_stats *out);

#endif
