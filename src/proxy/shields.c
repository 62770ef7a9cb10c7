/*
 * The process's password shield: guard/shield.c's table behind a mutex,
 * with the names of held users beside it. The lock is held for a table
 * lookup or update only (a few cache lines), never across I/O or hashing.
 */
#include "proxy/shields.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/str.h"
#include "proxy/buckets.h"
#include "proxy/fleet.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"
#include "site/sitemap.h"

/* A user with a hold begun lately, by name. */
struct held_name {
	char user[128];
	uint8_t id[SHIELD_ID_LEN];
	uint64_t pass_until;   /* s: the last password hold ends */
	unsigned passwords;    /* password holds begun before pass_until */
	uint64_t user_until;   /* s: the guessing hold ends */
};

struct shields {
	pthread_mutex_t lock;
	struct shield *table;	/* NULL until guard.passwords is first on */
	struct shield_conf conf;
	bool on;
	size_t max;
	unsigned char key_fp[32];
	bool keyed;
	struct held_name *names; /* SHIELDS_NAMES_MAX entries */
	size_t n_names;
	uint64_t log_window;	/* s: when the current log window began */
	unsigned logged;	/* hold lines written in it */
	shields_wake_cb wake;   /* NULL: the fleet is not told */
	void *wake_arg;         /* not owned: the fleet's */
	struct shields_event *outbox; /* owned: n_out of cap_out events */
	size_t n_out, cap_out;
	uint64_t dropped;      /* events the full outbox left out */
	uint64_t shared_holds; /* holds begun here by the fleet's word */
};

/* Hold lines written per LOG_WINDOW seconds: a flood begins thousands of
 * holds, and the log must stay readable (the list has them all). */
#define LOG_LINES 10
#define LOG_WINDOW 10

/* What a new hold may say in the log: 1 its line, 2 that lines are being
 * left out from now on, 0 nothing. */
static int log_quota(struct shields *sh, uint64_t now)
{
	if (now - sh->log_window >= LOG_WINDOW) {
		sh->log_window = now;
		sh->logged = 0;
	}
	if (sh->logged > LOG_LINES)
		return 0;
	return ++sh->logged <= LOG_LINES ? 1 : 2;
}

static uint64_t now_s(void)
{
	return clock_mono_us() / 1000000;
}

struct shields *shields_new(void)
{
	struct shields *sh = calloc(1, sizeof(*sh));

	if (sh == NULL)
		return NULL;
	sh->names = calloc(SHIELDS_NAMES_MAX, sizeof(*sh->names));
	if (sh->names == NULL) {
		free(sh);
		return NULL;
	}
	pthread_mutex_init(&sh->lock, NULL);
	return sh;
}

void shields_free(struct shields *sh)
{
	if (sh == NULL)
		return;
	shield_free(sh->table);
	free(sh->names);
	free(sh->outbox);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}

/* A table of max entries with what the old one held; the old one stays
 * when there is no memory for the new. */
static void resize(struct shields *sh, size_t max)
{
	struct shield *t = shield_new(max);
	size_t lost;

	if (t == NULL) {
		log_warnx("guard: no memory for a table of %zu entries; "
			  "keeping %zu", max, sh->max);
		return;
	}
	if (sh->table != NULL) {
		lost = shield_copy(t, sh->table, now_s());
		if (lost > 0)
			log_warnx("guard: guard.max_entries %zu: %zu entries "
				  "did not fit", max, lost);
		shield_free(sh->table);
	}
	sh->table = t;
	sh->max = max;
}

void shields_configure(struct shields *sh, const struct gen *g)
{
	const struct conf *c = g->conf;

	pthread_mutex_lock(&sh->lock);
	sh->on = c->guard_passwords_on && g->guard_key != NULL;
	if (sh->on) {
		sh->conf = (struct shield_conf){
		    .password_failures = c->guard_passwords.password_failures,
		    .user_failures = c->guard_passwords.user_failures,
		    .window = c->guard_passwords.window,
		    .hold = c->guard_passwords.hold,
		};
		if (sh->keyed &&
		    memcmp(sh->key_fp, g->guard_key_fp, sizeof(sh->key_fp))) {
			log_info("guard: guard.key_file changed: the shield "
				  "starts empty");
			shield_free(sh->table);
			sh->table = NULL;
			sh->n_names = 0;
		}
		memcpy(sh->key_fp, g->guard_key_fp, sizeof(sh->key_fp));
		sh->keyed = true;
		if (sh->table == NULL || sh->max != c->guard_max_entries)
			resize(sh, c->guard_max_entries);
		if (sh->table == NULL)
			sh->on = false;
	}
	pthread_mutex_unlock(&sh->lock);
}

enum shield_verdict shields_check(struct shields *sh,
				  const uint8_t user[SHIELD_ID_LEN],
				  const uint8_t pass[SHIELD_ID_LEN])
{
	enum shield_verdict v = SHIELD_PASS;
	uint64_t now = now_s();

	pthread_mutex_lock(&sh->lock);
	if (sh->on)
		v = shield_check(sh->table, &sh->conf, user, pass, now);
	pthread_mutex_unlock(&sh->lock);
	return v;
}

/* When the last hold of a named user ends. */
static uint64_t name_end(const struct held_name *n)
{
	return n->pass_until > n->user_until ? n->pass_until : n->user_until;
}

/* The name entry of user id, made when absent: an expired one is reused,
 * else the one whose holds end first. */
static struct held_name *name_for(struct shields *sh, const char *user,
				  const uint8_t id[SHIELD_ID_LEN],
				  uint64_t now)
{
	struct held_name *pick = NULL;

	for (size_t i = 0; i < sh->n_names; i++) {
		struct held_name *n = &sh->names[i];

		if (memcmp(n->id, id, SHIELD_ID_LEN) == 0) {
			/* A user first heard of from the store, by id,
			 * now seen by name. */
			if (n->user[0] == '#' && user[0] != '#')
				str_copy(n->user, sizeof(n->user),
				         str_from(user));
			return n;
		}
		if (name_end(n) <= now)
			pick = n;
	}
	if (pick == NULL && sh->n_names < SHIELDS_NAMES_MAX)
		pick = &sh->names[sh->n_names++];
	if (pick == NULL) {
		pick = &sh->names[0];
		for (size_t i = 1; i < sh->n_names; i++)
			if (name_end(&sh->names[i]) < name_end(pick))
				pick = &sh->names[i];
	}
	memset(pick, 0, sizeof(*pick));
	str_copy(pick->user, sizeof(pick->user), str_from(user));
	memcpy(pick->id, id, SHIELD_ID_LEN);
	return pick;
}

/* Appends ev to the outbox, waking the fleet when it was empty. Under the
 * lock, with sharing on. */
static void post(struct shields *sh, const struct shields_event *ev)
{
	if (sh->n_out == sh->cap_out) {
		size_t cap = sh->cap_out ? sh->cap_out * 2 : 64;
		struct shields_event *o;

		if (cap > SHIELDS_OUTBOX_MAX)
			cap = SHIELDS_OUTBOX_MAX;
		o = cap > sh->cap_out ? realloc(sh->outbox, cap * sizeof(*o))
		                      : NULL;
		if (o == NULL) {
			sh->dropped++;
			return;
		}
		sh->outbox = o;
		sh->cap_out = cap;
	}
	sh->outbox[sh->n_out++] = *ev;
	if (sh->n_out == 1)
		sh->wake(sh->wake_arg);
}

/* The fleet hears of a refusal: the password's, and whether the user
 * counts one more different password (its first refusal in its window). */
static void post_refusal(struct shields *sh,
                         const uint8_t user_id[SHIELD_ID_LEN],
                         const uint8_t pass_id[SHIELD_ID_LEN], uint64_t now)
{
	struct shields_event ev = {.kind = SHIELDS_REFUSED};

	if (sh->wake == NULL)
		return;
	ev.first =
	    shield_pass_refusals(sh->table, &sh->conf, pass_id, now) <= 1;
	memcpy(ev.user, user_id, SHIELD_ID_LEN);
	memcpy(ev.pass, pass_id, SHIELD_ID_LEN);
	post(sh, &ev);
}

/* The fleet hears that a password worked: where a guessing hold of its
 * user is reached, the owner's password still passes. */
static void post_good(struct shields *sh, const uint8_t user_id[SHIELD_ID_LEN],
		      const uint8_t pass_id[SHIELD_ID_LEN])
{
	struct shields_event ev = {.kind = SHIELDS_GOOD};

	if (sh->wake == NULL)
		return;
	memcpy(ev.user, user_id, SHIELD_ID_LEN);
	memcpy(ev.pass, pass_id, SHIELD_ID_LEN);
	post(sh, &ev);
}

void shields_share(struct shields *sh, shields_wake_cb wake, void *arg)
{
	pthread_mutex_lock(&sh->lock);
	sh->wake = wake;
	sh->wake_arg = arg;
	if (wake == NULL) {
		free(sh->outbox);
		sh->outbox = NULL;
		sh->n_out = sh->cap_out = 0;
	}
	pthread_mutex_unlock(&sh->lock);
}

size_t shields_drain(struct shields *sh, struct shields_event *out, size_t cap)
{
	size_t n;

	pthread_mutex_lock(&sh->lock);
	n = sh->n_out < cap ? sh->n_out : cap;
	memcpy(out, sh->outbox, n * sizeof(*out));
	memmove(sh->outbox, sh->outbox + n, (sh->n_out - n) * sizeof(*out));
	sh->n_out -= n;
	pthread_mutex_unlock(&sh->lock);
	return n;
}

void shields_note_dropped(struct shields *sh, uint64_t n)
{
	pthread_mutex_lock(&sh->lock);
	sh->dropped += n;
	pthread_mutex_unlock(&sh->lock);
}

void shields_post_clear(struct shields *sh, const uint8_t *user_id)
{
	struct shields_event ev = {.kind = SHIELDS_CLEARED};

	ev.all = user_id == NULL;
	if (user_id != NULL)
		memcpy(ev.user, user_id, SHIELD_ID_LEN);
	pthread_mutex_lock(&sh->lock);
	if (sh->wake != NULL)
		post(sh, &ev);
	pthread_mutex_unlock(&sh->lock);
}

/* The list's name of a user this front end knows only by id: '#' and the
 * id's first bytes in hex, the same on every front end of the fleet. */
static void id_name(const uint8_t id[SHIELD_ID_LEN], char *buf, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	buf[n++] = '#';
	for (size_t i = 0; i < 8 && n + 2 < cap; i++) {
		buf[n++] = hex[id[i] >> 4];
		buf[n++] = hex[id[i] & 15];
	}
	buf[n] = '\0';
}

/* Notes a new hold of user id in its name entry (made when absent). */
static void name_hold(struct shields *sh, const char *user,
                      const uint8_t id[SHIELD_ID_LEN], unsigned news,
                      uint64_t until, uint64_t now)
{
	struct held_name *n = name_for(sh, user, id, now);

	if (news & SHIELD_NEW_PASSWORD_HOLD) {
		n->passwords = n->pass_until > now ? n->passwords + 1 : 1;
		if (n->pass_until < until)
			n->pass_until = until;
	}
	if ((news & SHIELD_NEW_USER_HOLD) && n->user_until < until)
		n->user_until = until;
}

void shields_apply_hold(struct shields *sh,
                        const uint8_t user_id[SHIELD_ID_LEN],
                        const uint8_t *pass, unsigned ttl_s)
{
	uint64_t now = now_s();
	unsigned news = 0;
	char name[20];

	id_name(user_id, name, sizeof(name));
	pthread_mutex_lock(&sh->lock);
	if (sh->on)
		news =
		    shield_set_hold(sh->table, user_id, pass, now + ttl_s, now);
	if (news != 0) {
		name_hold(sh, name, user_id, news, now + ttl_s, now);
		sh->shared_holds++;
	}
	pthread_mutex_unlock(&sh->lock);
	if (news != 0)
		log_debug("guard: a hold of %s for %u s from the store", name,
		          ttl_s);
}

void shields_apply_good(struct shields *sh,
			const uint8_t user_id[SHIELD_ID_LEN],
			const uint8_t pass_id[SHIELD_ID_LEN], unsigned ttl_s)
{
	uint64_t now = now_s();

	pthread_mutex_lock(&sh->lock);
	if (sh->on)
		shield_set_good(sh->table, user_id, pass_id, now + ttl_s, now);
	pthread_mutex_unlock(&sh->lock);
}

void shields_feed(struct shields *sh, const char *user,
		  const uint8_t user_id[SHIELD_ID_LEN],
		  const uint8_t pass_id[SHIELD_ID_LEN], bool refused)
{
	uint64_t now = now_s();
	unsigned news;
	int say = 0;

	pthread_mutex_lock(&sh->lock);
	if (!sh->on) {
		pthread_mutex_unlock(&sh->lock);
		return;
	}
	news = shield_feed(sh->table, &sh->conf, user_id, pass_id, refused,
			   now);
	if (refused)
		post_refusal(sh, user_id, pass_id, now);
	else if (news & SHIELD_NEW_GOOD)
		post_good(sh, user_id, pass_id);
	news &= SHIELD_NEW_HOLDS;
	if (news != 0) {
		name_hold(sh, user, user_id, news, now + sh->conf.hold, now);
		say = log_quota(sh, now);
	}
	pthread_mutex_unlock(&sh->lock);
	if (say == 2)
		log_warnx("guard: more holds begin than the log shows (at most "
			  "%d in %d s); `easfront guard list` has them all",
			  LOG_LINES, LOG_WINDOW);
	if (say != 1)
		return;
	if (news & SHIELD_NEW_PASSWORD_HOLD)
		log_info("guard: a password of %s is held for %u s "
			  "(stale-password)", user, sh->conf.hold);
	if (news & SHIELD_NEW_USER_HOLD)
		log_info("guard: %s is held for %u s (password-guessing)",
			  user, sh->conf.hold);
}

static int by_user(const void *a, const void *b)
{
	return strcmp(((const struct guard_hold *)a)->user,
		      ((const struct guard_hold *)b)->user);
}

size_t shields_holds(struct shields *sh, const uint8_t *user_id,
		     struct guard_hold *out, size_t cap)
{
	uint64_t now = now_s();
	size_t n = 0;

	pthread_mutex_lock(&sh->lock);
	for (size_t i = 0; i < sh->n_names; i++) {
		const struct held_name *h = &sh->names[i];
		unsigned user_left =
		    sh->table ? shield_user_hold_left(sh->table, h->id, now) : 0;
		unsigned pass_left =
		    h->pass_until > now ? (unsigned)(h->pass_until - now) : 0;

		if (user_id != NULL && memcmp(h->id, user_id, SHIELD_ID_LEN))
			continue;
		if (user_left == 0 && pass_left == 0)
			continue;
		if (n < cap) {
			str_copy(out[n].user, sizeof(out[n].user),
				 str_from(h->user));
			out[n].held_passwords = pass_left ? h->passwords : 0;
			out[n].password_left = pass_left;
			out[n].user_left = user_left;
		}
		n++;
	}
	pthread_mutex_unlock(&sh->lock);
	qsort(out, n < cap ? n : cap, sizeof(*out), by_user);
	return n;
}

size_t shields_clear(struct shields *sh, const uint8_t *user_id)
{
	size_t cleared = 0;

	pthread_mutex_lock(&sh->lock);
	if (user_id == NULL) {
		cleared = sh->n_names;
		if (sh->table != NULL) {
			struct shield *t = shield_new(sh->max);

			/* Without memory for an empty table the old one
			 * stays: clearing must not turn the shield off. */
			if (t != NULL) {
				shield_free(sh->table);
				sh->table = t;
			}
		}
		sh->n_names = 0;
	} else {
		if (sh->table != NULL &&
		    shield_clear_user(sh->table, user_id) > 0)
			cleared = 1;
		for (size_t i = 0; i < sh->n_names; i++)
			if (memcmp(sh->names[i].id, user_id, SHIELD_ID_LEN) ==
			    0) {
				sh->names[i] = sh->names[--sh->n_names];
				cleared = 1;
				break;
			}
	}
	pthread_mutex_unlock(&sh->lock);
	return cleared;
}

void shields_counts(struct shields *sh, struct guard_counts *out)
{
	uint64_t now = now_s();

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&sh->lock);
	out->passwords_on = sh->on;
	out->shared_holds = sh->shared_holds;
	out->shared_dropped = sh->dropped;
	out->max_entries = sh->max;
	if (sh->table != NULL)
		shield_get_size(sh->table, &out->entries, &out->evictions,
				&out->turned_away);
	/* From the names, not a walk of the table: a scrape must not hold
	 * every worker's lookups for a walk of a million entries. */
	for (size_t i = 0; i < sh->n_names; i++) {
		if (sh->names[i].pass_until > now)
			out->held_passwords += sh->names[i].passwords;
		if (sh->names[i].user_until > now)
			out->held_users++;
	}
	pthread_mutex_unlock(&sh->lock);
}

/* The id of user (normalised) under the current generation's key; false
 * when the shield has no key (guard.passwords off). */
static bool user_id_now(struct proxy *p, const char *user,
			uint8_t id[SHIELD_ID_LEN])
{
	struct gen *g = proxy_gen_hold(p);
	uint8_t pass[SHIELD_ID_LEN];
	char key[256];
	bool ok = false;

	if (g != NULL && g->guard_key != NULL &&
	    sitemap_normalise(g->conf, user, key, sizeof(key)) > 0)
		ok = shield_key_ids(g->guard_key, key, "", 0, id, pass) == 0;
	gen_release(g);
	return ok;
}

size_t proxy_guard_holds(struct proxy *p, const char *user,
			 struct guard_hold *out, size_t cap)
{
	uint8_t id[SHIELD_ID_LEN];

	if (user == NULL)
		return shields_holds(p->shields, NULL, out, cap);
	if (!user_id_now(p, user, id))
		return 0;
	return shields_holds(p->shields, id, out, cap);
}

/* The name of value's bucket of kind under the current generation's
 * key; 0 while guard.throttle is off. */
static uint64_t bucket_now(struct proxy *p, enum bucket_kind kind,
			   const char *value)
{
	struct gen *g = proxy_gen_hold(p);
	uint64_t key = 0;

	if (g != NULL && g->conf->guard_throttle_on)
		key = buckets_name(g, kind, value);
	gen_release(g);
	return key;
}

uint64_t proxy_guard_throttle_wait(struct proxy *p, enum bucket_kind kind,
				   const char *value)
{
	uint64_t key = bucket_now(p, kind, value);

	return key != 0 ? buckets_peek(p->buckets, kind, key) : 0;
}

/* Fills value's bucket of kind again, here and (with guard.store) on
 * every front end; true when it was not full here. */
static bool lift(struct proxy *p, enum bucket_kind kind, const char *value)
{
	uint64_t key = bucket_now(p, kind, value);

	if (key == 0)
		return false;
	fleet_lift(p->fleet, kind, key);
	return buckets_lift(p->buckets, kind, key);
}

void proxy_guard_clear(struct proxy *p, const char *user, const char *device,
		       struct guard_cleared *out)
{
	uint8_t id[SHIELD_ID_LEN];

	*out = (struct guard_cleared){0};
	if (user == NULL && device == NULL) {
		out->users = shields_clear(p->shields, NULL);
		/* Every front end clears, its buckets too. */
		shields_post_clear(p->shields, NULL);
		out->refilled = buckets_lift_all(p->buckets);
	}
	if (user != NULL && user_id_now(p, user, id)) {
		out->users = shields_clear(p->shields, id);
		/* Every front end clears, even when this one knew nothing
		 * of the user. */
		shields_post_clear(p->shields, id);
	}
	if (user != NULL)
		out->refilled += lift(p, BUCKET_USER, user);
	if (device != NULL)
		out->refilled += lift(p, BUCKET_DEVICE, device);
	log_info("guard: cleared %s%s%s by the operator (%zu user(s), %zu "
		 "throttle bucket(s) refilled)",
		 user != NULL ? user : device != NULL ? "" : "everyone",
		 device != NULL ? (user != NULL ? ", device " : "device ") : "",
		 device != NULL ? device : "", out->users, out->refilled);
}

void proxy_guard_counts(struct proxy *p, struct guard_counts *out)
{
	struct gen *g = proxy_gen_hold(p);

	shields_counts(p->shields, out);
	buckets_counts(p->buckets, &out->throttled_keys,
		       &out->throttle_evictions);
	out->throttle_shared_dropped = buckets_tally_dropped(p->buckets);
	fleet_waiting(p->fleet, &out->shared_waiting,
		      &out->throttle_shared_waiting);
	if (g != NULL) {
		out->rules = g->conf->n_guard_devices;
		out->throttle_on = g->conf->guard_throttle_on;
	}
	gen_release(g);
}
