/*
 * The fleet's password shield and throttle: the shields' outbox and the
 * buckets' tally drained into the store's counters, holds published and
 * heard, holds found again after every (re)connect. A front end always
 * counts locally too, so while the store is down each one limits alone,
 * and nothing here is on a request's path. What comes in that time (the
 * shields' news, the throttle's tokens, operators' lifts) is kept
 * (proxy/backlog.h) and told when the store is back.
 */
#include "proxy/fleet.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "conf/conf.h"
#include "core/log.h"
#include "proxy/backlog.h"
#include "proxy/buckets.h"
#include "proxy/gen.h"
#include "proxy/shields.h"
#include "store/store.h"

/* The channel of holds and clears ("easfront:holds" with the store's
 * prefix). */
#define CHANNEL "holds"
/* The longest hold applied (guard.passwords.hold's bound): a Redis that
 * says more is not believed further. */
#define HOLD_MAX_S (86400 * 7)
/* Events moved out of the outbox at a time. */
#define DRAIN_BATCH 256
/* How often the throttle's tally goes to the store: a device alternating
 * between front ends runs past its fleet budget by at most what it sends
 * in this time (and a round trip). */
#define TALLY_MS 250
/* How often the store's state is looked at (a (re)connect finds the holds
 * that exist). */
#define TICK_MS 1000
/* What is kept while the store is down (the newest: a piece of news is
 * 56 bytes, a bucket's tokens 24), and how much of it is told per
 * flush once it is back, well within the store's bound of commands in
 * flight. News and tokens are kept apart, so that a busy throttle never
 * pushes out a refusal. */
#define MISSED_NEWS_MAX 16384
#define MISSED_NEWS_BATCH 512
#define MISSED_TOKENS_MAX 65536
#define MISSED_TOKENS_BATCH 2048

struct fleet {
	struct event_base *base; /* not owned: the control loop */
	struct shields *sh;      /* not owned: the proxy's */
	struct buckets *bk;      /* not owned: the proxy's throttle */
	struct store *store;     /* owned; NULL without guard.store */
	char *url;               /* owned: the store's guard.store */
	char *password;          /* owned: its AUTH password, or NULL */
	struct shield_conf conf; /* the current generation's thresholds */
	struct event *wake;      /* owned: the workers' news is waiting */
	struct event *tick;      /* owned: every TICK_MS */
	struct event *flush;     /* owned: every TALLY_MS */
	struct bucket_tally *tally; /* owned: BUCKETS_TALLY_MAX, drained */
	struct backlog *news;    /* owned while sharing: struct missed_news
	                            the store has not heard yet */
	struct backlog *tokens;  /* owned while sharing: struct
	                            missed_tokens, likewise */
	struct conf_bucket budget[BUCKET_KINDS]; /* as of the last flush */
	bool was_up;             /* both its connections were up at the last
	                            tick */
	bool catching_up;        /* telling the store what it missed */
	uint64_t reconnects;     /* its reconnects at the last tick */
};

/* A bucket: its kind (enum bucket_kind) and name. */
struct bucket_ref {
	uint64_t key;
	uint8_t kind;
};

/* What a piece of news kept for the store is. */
enum missed_what {
	MISSED_SHIELDS, /* the shields' news: ev */
	MISSED_LIFT,    /* an operator's lift of a bucket: lift */
};

/* The news and the throttle's tokens, kept while the store is down, and
 * when they came (s, Unix). */
struct missed_news {
	uint64_t at;
	union {
		struct shields_event ev;
		struct bucket_ref lift;
	} u;
	uint8_t what; /* enum missed_what */
};

struct missed_tokens {
	struct bucket_tally t;
	uint64_t at;
};

/* A key: kind, then up to two ids (or a bucket's kind, key and
 * window). */
struct fkey {
	uint8_t b[1 + 2 * SHIELD_ID_LEN];
	size_t len;
};

/* A throttle key: 't' (a window's counter) or 'T' (a hold), the bucket's
 * kind and 64-bit key, and for a counter its window's number. */
#define TKEY_HOLD_LEN 10
#define TKEY_LEN 14

static struct fkey bucket_key_of(char what, uint8_t kind, uint64_t key,
				 uint32_t window)
{
	struct fkey k = {.b = {(uint8_t)what, kind}, .len = TKEY_HOLD_LEN};

	for (int i = 0; i < 8; i++)
		k.b[2 + i] = (uint8_t)(key >> (56 - 8 * i));
	if (what == 't') {
		for (int i = 0; i < 4; i++)
			k.b[10 + i] = (uint8_t)(window >> (24 - 8 * i));
		k.len = TKEY_LEN;
	}
	return k;
}

static uint64_t bucket_key_from(const uint8_t *k)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | k[2 + i];
	return v;
}

static struct fkey key_of(char kind, const uint8_t *a, const uint8_t *b)
{
	struct fkey k = {.b = {(uint8_t)kind}, .len = 1};

	if (a != NULL) {
		memcpy(k.b + k.len, a, SHIELD_ID_LEN);
		k.len += SHIELD_ID_LEN;
	}
	if (b != NULL) {
		memcpy(k.b + k.len, b, SHIELD_ID_LEN);
		k.len += SHIELD_ID_LEN;
	}
	return k;
}

/* ---- counters told, holds published ---- */

/* What a counter's answer needs: the hold it may begin. */
struct counted {
	struct fleet *f;
	struct fkey hold;     /* 'P' pass user, 'U' user, or 'T' bucket */
	long long threshold;  /* the total that begins the hold */
	uint64_t end;         /* s (Unix): the hold's end; 0: the shield's
	                         hold from the answer on */
};

static void counted_cb(void *arg, int status, long long total)
{
	struct counted *c = arg;
	struct fleet *f = c->f;
	uint64_t now = (uint64_t)time(NULL);
	uint64_t ttl = c->end == 0 ? f->conf.hold
	               : c->end > now ? c->end - now : 0;

	/* >= rather than ==: a hold whose publication was lost (the store
	 * went down in between) is published again by the next count. A
	 * bucket held everywhere stops being published: tokens refused are
	 * never tallied. */
	if (status == 0 && total >= c->threshold && ttl > 0 && f->store)
		store_hold(f->store, CHANNEL, c->hold.b, c->hold.len,
		           (unsigned)ttl, NULL, NULL);
	free(c);
}

/* Adds by to counter (expiring ttl_s after its first count), whose total
 * reaching what.threshold begins what.hold. */
static void count(struct fleet *f, struct fkey counter, long long by,
                  unsigned ttl_s, struct counted what)
{
	struct counted *c = malloc(sizeof(*c));

	if (c == NULL)
		return;
	*c = what;
	c->f = f;
	if (store_count(f->store, counter.b, counter.len, by, ttl_s,
	                counted_cb, c) != 0)
		free(c);
}

/* A refusal: one more for the password, and for the user when the
 * password is new in its window. A threshold of 0 is no limit. */
static void refused(struct fleet *f, const struct shields_event *ev)
{
	if (f->conf.password_failures > 0)
		count(f, key_of('p', ev->pass, ev->user), 1, f->conf.window,
		      (struct counted){
			  .hold = key_of('P', ev->pass, ev->user),
			  .threshold = f->conf.password_failures});
	if (ev->first && f->conf.user_failures > 0)
		count(f, key_of('u', ev->user, NULL), 1, f->conf.window,
		      (struct counted){.hold = key_of('U', ev->user, NULL),
				       .threshold = f->conf.user_failures});
}

/* Adds e's tokens, taken at at, to its key's counter of that window
 * (fixed windows of the bucket's per, on the fleet's shared wall clock),
 * unless the window is over by now; a bucket over its budget there is
 * held everywhere to the window's end. */
static void spend(struct fleet *f, const struct bucket_tally *e,
		  uint64_t at, uint64_t now)
{
	const struct conf_bucket *b = &f->budget[e->kind];
	uint64_t window, end;

	if (b->requests == 0 || b->per == 0)
		return;
	window = at / b->per;
	end = (window + 1) * b->per;
	if (end <= now)
		return;
	count(f, bucket_key_of('t', e->kind, e->key, (uint32_t)window),
	      e->count, (unsigned)(end - now) + 1,
	      (struct counted){.hold = bucket_key_of('T', e->kind, e->key, 0),
			       .threshold = (long long)b->requests + 1,
			       .end = end});
}

/* ---- holds found by a scan; an operator's clear ---- */

/* What a walk does with each key it finds. */
enum walk_mode {
	WALK_APPLY, /* a hold: applied here */
	WALK_CLEAR, /* a key of the user (all: every user): deleted */
	WALK_GOOD,  /* a known-good mark of a held user: applied here */
};

/* One walk of the keys that begin with a prefix. */
struct walk {
	struct fleet *f;
	enum walk_mode mode;
	bool all;
	uint8_t user[SHIELD_ID_LEN];
};

static void walk(struct fleet *f, const uint8_t *prefix, size_t plen,
		 enum walk_mode mode, bool all, const uint8_t *user);

/* The known-good marks of user's passwords ('G' user pass): a user held
 * for guessing still gets in with a password that worked anywhere in the
 * fleet. Walked when the hold is heard: marks are many and only matter
 * then. */
static void walk_goods(struct fleet *f, const uint8_t user[SHIELD_ID_LEN])
{
	struct fkey k = key_of('G', user, NULL);

	walk(f, k.b, k.len, WALK_GOOD, false, NULL);
}

/* Applies a hold key ('P' pass user, 'U' user, or 'T' bucket) for ttl_s;
 * any other key (Redis's bytes are not trusted) changes nothing. */
static void apply(struct fleet *f, const uint8_t *k, size_t klen,
                  long long ttl_s)
{
	if (klen == 0)
		return;
	if (ttl_s > HOLD_MAX_S)
		ttl_s = HOLD_MAX_S;
	if (k[0] == 'P' && klen == 1 + 2 * SHIELD_ID_LEN)
		shields_apply_hold(f->sh, k + 1 + SHIELD_ID_LEN, k + 1,
		                   (unsigned)ttl_s);
	else if (k[0] == 'U' && klen == 1 + SHIELD_ID_LEN) {
		shields_apply_hold(f->sh, k + 1, NULL, (unsigned)ttl_s);
		walk_goods(f, k + 1);
	} else if (k[0] == 'T' && klen == TKEY_HOLD_LEN && k[1] < BUCKET_KINDS)
		buckets_hold(f->bk, (enum bucket_kind)k[1],
			     bucket_key_from(k), (uint64_t)ttl_s * 1000000);
}

static void walk_cb(void *arg, int status, const void *key, size_t klen,
                    long long ttl_ms)
{
	struct walk *w = arg;
	const uint8_t *k = key;
	long long ttl_s = ttl_ms / 1000 + 1;

	(void)status;
	if (ttl_s > HOLD_MAX_S)
		ttl_s = HOLD_MAX_S;
	if (key == NULL) {
		free(w);
		return;
	}
	switch (w->mode) {
	case WALK_APPLY:
		apply(w->f, k, klen, ttl_s);
		break;
	case WALK_GOOD:
		if (klen == 1 + 2 * SHIELD_ID_LEN && k[0] == 'G')
			shields_apply_good(w->f->sh, k + 1,
					   k + 1 + SHIELD_ID_LEN,
					   (unsigned)ttl_s);
		break;
	case WALK_CLEAR:
		/* Every key of a user ends with the user's id. */
		if (w->all || (klen > SHIELD_ID_LEN &&
			       memcmp(k + klen - SHIELD_ID_LEN, w->user,
				      SHIELD_ID_LEN) == 0))
			store_clear(w->f->store, CHANNEL, key, klen, NULL,
				    NULL);
		break;
	}
}

static void walk(struct fleet *f, const uint8_t *prefix, size_t plen,
		 enum walk_mode mode, bool all, const uint8_t *user)
{
	struct walk *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return;
	*w = (struct walk){.f = f, .mode = mode, .all = all};
	if (user != NULL)
		memcpy(w->user, user, SHIELD_ID_LEN);
	if (f->store == NULL ||
	    store_scan_holds(f->store, prefix, plen, walk_cb, w) != 0)
		free(w);
}

/* A password that worked, marked in the store for ttl_s seconds: as long
 * as it is known good here. */
static void good(struct fleet *f, const struct shields_event *ev,
		 unsigned ttl_s)
{
	struct fkey k = key_of('G', ev->user, ev->pass);

	store_mark(f->store, k.b, k.len, ttl_s, NULL, NULL);
}

/* Every front end clears the user (the 'C' message), and the user's
 * counters and holds leave the store, so that one that (re)starts does
 * not learn them again and the next refusal starts from one. */
static void cleared(struct fleet *f, const struct shields_event *ev)
{
	struct fkey c = key_of('C', ev->all ? NULL : ev->user, NULL);
	/* Everyone's clear fills every bucket too. */
	static const char kinds[] = "PpUuTt";
	size_t n = ev->all ? 6 : 4;

	store_clear(f->store, CHANNEL, c.b, c.len, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		walk(f, (const uint8_t *)&kinds[i], 1, WALK_CLEAR, ev->all,
		     ev->user);
}

/* An operator's lift of a bucket: every front end fills it again (the
 * clear of its hold, published whether or not there is one), and its
 * windows' counters leave the store, so that the next flush does not hold
 * it again at once. */
static void lifted(struct fleet *f, uint8_t kind, uint64_t key)
{
	struct fkey hold = bucket_key_of('T', kind, key, 0);
	struct fkey counters = bucket_key_of('t', kind, key, 0);

	store_clear(f->store, CHANNEL, hold.b, hold.len, NULL, NULL);
	walk(f, counters.b, TKEY_HOLD_LEN, WALK_CLEAR, true, NULL);
}

/* ---- the loop's side ---- */

/* Tells the store ev, seen at at: what has aged past its time by now
 * (a refusal out of its window, a mark no longer known good) is not. */
static void tell(struct fleet *f, const struct shields_event *ev,
		 uint64_t at, uint64_t now)
{
	uint64_t age = now > at ? now - at : 0;
	unsigned good_s = shield_good_time(&f->conf);

	if (ev->kind == SHIELDS_REFUSED && age < f->conf.window)
		refused(f, ev);
	else if (ev->kind == SHIELDS_CLEARED)
		cleared(f, ev);
	else if (ev->kind == SHIELDS_GOOD && age < good_s)
		good(f, ev, (unsigned)(good_s - age));
}

/* Tells the store m, kept while it was down. */
static void tell_kept(struct fleet *f, const struct missed_news *m,
		      uint64_t now)
{
	if (m->what == MISSED_LIFT)
		lifted(f, m->u.lift.kind, m->u.lift.key);
	else
		tell(f, &m->u.ev, m->at, now);
}

static bool tokens_of(const void *item, void *arg)
{
	const struct missed_tokens *m = item;
	const struct bucket_ref *r = arg;

	return m->t.kind == r->kind && m->t.key == r->key;
}

/* A lift of bucket (kind, key), made here or heard: the tokens it took
 * before, not told yet, never will be, lest they hold it again. */
static void forget_tokens(struct fleet *f, uint8_t kind, uint64_t key)
{
	struct bucket_ref r = {.key = key, .kind = kind};

	if (f->tokens != NULL)
		backlog_drop_if(f->tokens, tokens_of, &r);
}

/* Keeps ev for when the store is back; the oldest gives way. */
static void keep_news(struct fleet *f, const struct shields_event *ev,
		      uint64_t now)
{
	struct missed_news m = {.at = now, .u.ev = *ev, .what = MISSED_SHIELDS};

	if (backlog_push(f->news, &m, NULL))
		shields_note_dropped(f->sh, 1);
}

/* Keeps the flush's n tallies for when the store is back; the oldest
 * give way, their tokens counted as dropped. */
static void keep_tokens(struct fleet *f, size_t n, uint64_t now)
{
	struct missed_tokens m = {.at = now};
	struct missed_tokens old;

	for (size_t i = 0; i < n; i++) {
		m.t = f->tally[i];
		if (backlog_push(f->tokens, &m, &old))
			buckets_note_dropped(f->bk, old.t.count);
	}
}

/* The workers' news, drained whole: told to the store while it is up,
 * kept while it is down (each front end counts locally anyway), and kept
 * behind older news not told yet, so that the store hears it in order. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	struct shields_event ev[DRAIN_BATCH];
	uint64_t now = (uint64_t)time(NULL);
	size_t n;

	(void)fd;
	(void)what;
	while ((n = shields_drain(f->sh, ev, DRAIN_BATCH)) > 0) {
		if (f->store == NULL)
			continue;
		for (size_t i = 0; i < n; i++) {
			/* Everyone's clear lifts every bucket: no token
			 * taken before it is told. */
			if (ev[i].kind == SHIELDS_CLEARED && ev[i].all)
				backlog_empty(f->tokens);
			if (store_up(f->store) && backlog_len(f->news) == 0)
				tell(f, &ev[i], now, now);
			else
				keep_news(f, &ev[i], now);
		}
	}
}

/* Once the store is back, what it missed, a batch at a time. */
static void catch_up(struct fleet *f, uint64_t now)
{
	struct missed_news mn;
	struct missed_tokens mt;
	size_t news = backlog_len(f->news), tokens = backlog_len(f->tokens);

	if (news + tokens == 0)
		return;
	if (!f->catching_up) {
		log_info("guard: telling guard.store what came while it was "
			 "away: %zu refusal(s), clear(s) and mark(s), %zu "
			 "bucket(s)' tokens",
			 news, tokens);
		f->catching_up = true;
	}
	for (size_t i = 0;
	     i < MISSED_NEWS_BATCH && backlog_pop(f->news, &mn); i++)
		tell_kept(f, &mn, now);
	for (size_t i = 0;
	     i < MISSED_TOKENS_BATCH && backlog_pop(f->tokens, &mt); i++)
		spend(f, &mt.t, mt.at, now);
	if (backlog_len(f->news) + backlog_len(f->tokens) == 0)
		f->catching_up = false;
}

/* The throttle's tally since the last flush, told to the store while it
 * is up and kept while it is down; then what the store missed. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	uint64_t now = (uint64_t)time(NULL);
	size_t n;

	(void)fd;
	(void)what;
	n = buckets_drain(f->bk, f->tally, BUCKETS_TALLY_MAX);
	if (f->store == NULL)
		return;
	if (!store_up(f->store)) {
		keep_tokens(f, n, now);
		return;
	}
	buckets_conf(f->bk, f->budget);
	for (size_t i = 0; i < n; i++)
		spend(f, &f->tally[i], now, now);
	catch_up(f, now);
}

/* Runs under the shields' lock on a worker: only wakes the loop. */
static void wake(void *arg)
{
	event_active(((struct fleet *)arg)->wake, EV_READ, 0);
}

/* A hold or a clear published by a front end of the fleet (this one's
 * own come back too, and change nothing). */
static void msg_cb(void *arg, enum store_msg_op op, const void *key,
                   size_t klen, unsigned ttl_s)
{
	struct fleet *f = arg;
	const uint8_t *k = key;

	if (klen == 0)
		return;
	if (op == STORE_MSG_HOLD)
		apply(f, k, klen, ttl_s);
	else if (op == STORE_MSG_CLEAR && k[0] == 'C' && klen == 1) {
		shields_clear(f->sh, NULL);
		buckets_lift_all(f->bk);
		if (f->tokens != NULL)
			backlog_empty(f->tokens);
	} else if (op == STORE_MSG_CLEAR && k[0] == 'T' &&
		   klen == TKEY_HOLD_LEN && k[1] < BUCKET_KINDS) {
		buckets_lift(f->bk, (enum bucket_kind)k[1],
			     bucket_key_from(k));
		forget_tokens(f, k[1], bucket_key_from(k));
	}
	else if (op == STORE_MSG_CLEAR && k[0] == 'C' &&
	         klen == 1 + SHIELD_ID_LEN)
		shields_clear(f->sh, k + 1);
}

/* After each (re)connect of either connection, the holds that exist: what
 * was published while this front end was away, starting, or not
 * subscribed. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	struct store_stats st;
	bool up;

	(void)fd;
	(void)what;
	if (f->store == NULL)
		return;
	store_get_stats(f->store, &st);
	up = st.up && st.sub_up;
	if (up && (!f->was_up || st.reconnects != f->reconnects)) {
		static const uint8_t kinds[] = {'P', 'U', 'T'};

		for (size_t i = 0; i < sizeof(kinds); i++)
			walk(f, &kinds[i], 1, WALK_APPLY, false, NULL);
	}
	f->was_up = up;
	f->reconnects = st.reconnects;
}

struct fleet *fleet_new(struct event_base *base, struct shields *sh,
		       struct buckets *bk)
{
	struct fleet *f = calloc(1, sizeof(*f));
	struct timeval tv = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
	struct timeval ftv = {TALLY_MS / 1000, (TALLY_MS % 1000) * 1000};

	if (f == NULL)
		return NULL;
	f->base = base;
	f->sh = sh;
	f->bk = bk;
	f->wake = event_new(base, -1, 0, wake_cb, f);
	f->tick = event_new(base, -1, EV_PERSIST, tick_cb, f);
	f->flush = event_new(base, -1, EV_PERSIST, flush_cb, f);
	f->tally = malloc(BUCKETS_TALLY_MAX * sizeof(*f->tally));
	if (f->wake == NULL || f->tick == NULL || f->flush == NULL ||
	    f->tally == NULL || event_add(f->tick, &tv) != 0 ||
	    event_add(f->flush, &ftv) != 0) {
		fleet_free(f);
		return NULL;
	}
	return f;
}

static bool same(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Frees the store and forgets its settings; the workers stop telling. */
static void stop_sharing(struct fleet *f)
{
	shields_share(f->sh, NULL, NULL);
	buckets_share(f->bk, false);
	store_free(f->store);
	f->store = NULL;
	backlog_free(f->news);
	f->news = NULL;
	backlog_free(f->tokens);
	f->tokens = NULL;
	f->catching_up = false;
	free(f->url);
	f->url = NULL;
	if (f->password != NULL)
		explicit_bzero(f->password, strlen(f->password));
	free(f->password);
	f->password = NULL;
	f->was_up = false;
}

/* A store for g's guard.store, subscribed to the holds; false when it
 * cannot be made (logged; the front end counts alone). */
static bool start_sharing(struct fleet *f, const struct gen *g)
{
	struct store_conf sc = {.url = g->conf->guard_store,
	                        .password = g->store_password};
	char *err = NULL;

	f->url = strdup(g->conf->guard_store);
	f->password = g->store_password ? strdup(g->store_password) : NULL;
	f->store = store_new(f->base, &sc, &err);
	f->news = backlog_new(MISSED_NEWS_MAX, sizeof(struct missed_news));
	f->tokens =
	    backlog_new(MISSED_TOKENS_MAX, sizeof(struct missed_tokens));
	if (f->url == NULL || f->store == NULL || f->news == NULL ||
	    f->tokens == NULL ||
	    (g->store_password != NULL && f->password == NULL) ||
	    store_subscribe(f->store, CHANNEL, msg_cb, f) != 0) {
		log_warnx("guard: guard.store %s: %s; each front end counts "
		          "alone",
		          g->conf->guard_store, err ? err : "out of memory");
		free(err);
		stop_sharing(f);
		return false;
	}
	shields_share(f->sh, wake, f);
	buckets_share(f->bk, true);
	return true;
}

void fleet_follow(struct fleet *f, const struct gen *g)
{
	const struct conf *c = g->conf;

	f->conf = (struct shield_conf){
	    .password_failures = c->guard_passwords.password_failures,
	    .user_failures = c->guard_passwords.user_failures,
	    .window = c->guard_passwords.window,
	    .hold = c->guard_passwords.hold,
	};
	if (!c->guard_passwords_on)
		f->conf.password_failures = f->conf.user_failures = 0;
	if (f->store != NULL && same(f->url, c->guard_store) &&
	    same(f->password, g->store_password))
		return;
	stop_sharing(f);
	if (c->guard_store != NULL)
		start_sharing(f, g);
}

void fleet_lift(struct fleet *f, enum bucket_kind kind, uint64_t key)
{
	struct missed_news m = {.at = (uint64_t)time(NULL),
				.u.lift = {.key = key, .kind = (uint8_t)kind},
				.what = MISSED_LIFT};

	if (f == NULL || f->store == NULL)
		return;
	forget_tokens(f, (uint8_t)kind, key);
	if (store_up(f->store) && backlog_len(f->news) == 0)
		lifted(f, (uint8_t)kind, key);
	else if (backlog_push(f->news, &m, NULL))
		shields_note_dropped(f->sh, 1);
}

void fleet_waiting(const struct fleet *f, size_t *news, size_t *tokens)
{
	*news = f != NULL && f->news != NULL ? backlog_len(f->news) : 0;
	*tokens = f != NULL && f->tokens != NULL ? backlog_len(f->tokens) : 0;
}

bool fleet_stats(const struct fleet *f, struct store_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (f == NULL || f->store == NULL)
		return false;
	store_get_stats(f->store, st);
	return true;
}

void fleet_free(struct fleet *f)
{
	if (f == NULL)
		return;
	stop_sharing(f);
	if (f->wake != NULL)
		event_free(f->wake);
	if (f->tick != NULL)
		event_free(f->tick);
	if (f->flush != NULL)
		event_free(f->flush);
	free(f->tally);
	free(f);
}
