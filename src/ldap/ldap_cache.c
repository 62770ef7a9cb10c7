/*
 * The per-process cache of directory answers: a chained hash table keyed by
 * user (ASCII case ignored) and a doubly linked LRU list, under one mutex.
 * Every operation is O(1) and short, so one lock serves a few worker
 * threads without contention worth striping for.
 */
#include "ldap/ldap_src.h"

#include "core/clock.h"
#include "core/str.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define CACHE_MAX_BUCKETS (1U << 22)

struct cache_entry {
	struct cache_entry *hnext;    /* next in the same bucket */
	TAILQ_ENTRY(cache_entry) lru; /* first is the most recently used */
	uint64_t hash;
	uint64_t expires_us; /* fresh until then, stale after */
	enum ldap_answer kind; /* FOUND, NO_USER or CLOUD */
	size_t user_len;
	char *db;    /* inside this allocation: the database (FOUND), the
	                evidence (CLOUD), "" (NO_USER) */
	char user[]; /* user, NUL, db, NUL */
};

struct ldap_cache {
	pthread_mutex_t mu;
	unsigned max;
	unsigned count;
	unsigned ttl, negative_ttl; /* seconds */
	uint64_t (*now_us)(void *); /* NULL: clock_mono_us() */
	void *now_arg;
	size_t mask;                  /* buckets - 1 */
	struct cache_entry **buckets; /* owned, with every entry */
	TAILQ_HEAD(cache_lru, cache_entry) lru;
	struct ldap_cache_stats st;
};

const char *ldap_answer_str(enum ldap_answer a)
{
	switch (a) {
	case LDAP_ANS_FOUND:
		return "found";
	case LDAP_ANS_NO_USER:
		return "no-user";
	case LDAP_ANS_STALE_FOUND:
		return "stale-found";
	case LDAP_ANS_STALE_NO_USER:
		return "stale-no-user";
	case LDAP_ANS_ERROR:
		return "error";
	case LDAP_ANS_CLOUD:
		return "cloud";
	case LDAP_ANS_STALE_CLOUD:
		return "stale-cloud";
	}
	return "?";
}

struct ldap_cache *ldap_cache_new(unsigned max, unsigned ttl,
                                  unsigned negative_ttl)
{
	struct ldap_cache *c = calloc(1, sizeof(*c));
	size_t n = 16;

	if (c == NULL)
		return NULL;
	c->max = max > 0 ? max : 1;
	while (n < c->max && n < CACHE_MAX_BUCKETS)
		n <<= 1;
	c->buckets = calloc(n, sizeof(*c->buckets));
	if (c->buckets == NULL || pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c->buckets);
		free(c);
		return NULL;
	}
	c->mask = n - 1;
	c->ttl = ttl;
	c->negative_ttl = negative_ttl;
	TAILQ_INIT(&c->lru);
	return c;
}

/* Frees every entry; the caller holds the lock or owns c alone. */
static void drop_all(struct ldap_cache *c)
{
	struct cache_entry *e;

	while ((e = TAILQ_FIRST(&c->lru)) != NULL) {
		TAILQ_REMOVE(&c->lru, e, lru);
		free(e);
	}
	memset(c->buckets, 0, (c->mask + 1) * sizeof(*c->buckets));
	c->count = 0;
}

void ldap_cache_free(struct ldap_cache *c)
{
	if (c == NULL)
		return;
	drop_all(c);
	pthread_mutex_destroy(&c->mu);
	free(c->buckets);
	free(c);
}

void ldap_cache_set_ttl(struct ldap_cache *c, unsigned ttl,
                        unsigned negative_ttl)
{
	pthread_mutex_lock(&c->mu);
	c->ttl = ttl;
	c->negative_ttl = negative_ttl;
	pthread_mutex_unlock(&c->mu);
}

void ldap_cache_set_clock(struct ldap_cache *c, uint64_t (*now_us)(void *),
                          void *arg)
{
	pthread_mutex_lock(&c->mu);
	c->now_us = now_us;
	c->now_arg = arg;
	pthread_mutex_unlock(&c->mu);
}

static uint64_t now(const struct ldap_cache *c)
{
	return c->now_us != NULL ? c->now_us(c->now_arg) : clock_mono_us();
}

/* Returns the slot that points at user's entry (or the bucket's last NULL
 * slot); the caller holds the lock. */
static struct cache_entry **find(struct ldap_cache *c, struct str user,
                                 uint64_t hash)
{
	struct cache_entry **slot = &c->buckets[hash & c->mask];

	while (
	    *slot != NULL &&
	    ((*slot)->hash != hash ||
	     !str_eq_ci((struct str){(*slot)->user, (*slot)->user_len}, user)))
		slot = &(*slot)->hnext;
	return slot;
}

/* Unlinks and frees the entry *slot points at; the caller holds the lock. */
static void unlink_at(struct ldap_cache *c, struct cache_entry **slot)
{
	struct cache_entry *e = *slot;

	*slot = e->hnext;
	TAILQ_REMOVE(&c->lru, e, lru);
	free(e);
	c->count--;
}

/* Copies what e says into *a and db; the caller holds the lock. */
static void answer(const struct cache_entry *e, bool stale, enum ldap_answer *a,
                   char *db, size_t cap)
{
	if (e->kind == LDAP_ANS_FOUND)
		*a = stale ? LDAP_ANS_STALE_FOUND : LDAP_ANS_FOUND;
	else if (e->kind == LDAP_ANS_CLOUD)
		*a = stale ? LDAP_ANS_STALE_CLOUD : LDAP_ANS_CLOUD;
	else
		*a = stale ? LDAP_ANS_STALE_NO_USER : LDAP_ANS_NO_USER;
	if (db != NULL && cap > 0)
		str_copy(db, cap, str_from(e->db));
}

bool ldap_cache_get(struct ldap_cache *c, const char *user, enum ldap_answer *a,
                    char *db, size_t cap)
{
	struct str u = str_from(user);
	struct cache_entry *e;
	bool fresh;

	if (db != NULL && cap > 0)
		db[0] = '\0';
	pthread_mutex_lock(&c->mu);
	e = *find(c, u, str_hash_ci(u));
	fresh = e != NULL && now(c) < e->expires_us;
	if (fresh) {
		c->st.hits++;
		TAILQ_REMOVE(&c->lru, e, lru);
		TAILQ_INSERT_HEAD(&c->lru, e, lru);
		answer(e, false, a, db, cap);
	} else {
		c->st.misses++;
	}
	pthread_mutex_unlock(&c->mu);
	return fresh;
}

enum ldap_answer ldap_cache_fallback(struct ldap_cache *c, const char *user,
                                     char *db, size_t cap)
{
	struct str u = str_from(user);
	enum ldap_answer a = LDAP_ANS_ERROR;
	struct cache_entry *e;

	if (db != NULL && cap > 0)
		db[0] = '\0';
	pthread_mutex_lock(&c->mu);
	c->st.down = true;
	e = *find(c, u, str_hash_ci(u));
	if (e == NULL) {
		c->st.errors++;
	} else {
		bool stale = now(c) >= e->expires_us;

		/* A stale entry is not promoted in the LRU: only fresh
		 * answers say that a user is active. */
		if (stale)
			c->st.stale++;
		answer(e, stale, &a, db, cap);
	}
	pthread_mutex_unlock(&c->mu);
	return a;
}

/* Allocates an entry for user saying kind, with db (NULL: none). */
static struct cache_entry *entry_new(struct str user, enum ldap_answer kind,
                                     const char *db)
{
	size_t dlen = db != NULL ? strlen(db) : 0;
	struct cache_entry *e = malloc(sizeof(*e) + user.len + 1 + dlen + 1);

	if (e == NULL)
		return NULL;
	memset(e, 0, sizeof(*e));
	memcpy(e->user, user.p, user.len);
	e->user[user.len] = '\0';
	e->user_len = user.len;
	e->db = e->user + user.len + 1;
	if (dlen > 0)
		memcpy(e->db, db, dlen);
	e->db[dlen] = '\0';
	e->kind = kind;
	return e;
}

/* Stores kind (FOUND, NO_USER or CLOUD) with db for user. */
static void put(struct ldap_cache *c, const char *user, enum ldap_answer kind,
                const char *db)
{
	struct str u = str_from(user);
	uint64_t hash = str_hash_ci(u);
	struct cache_entry *e, **slot;

	if (u.len == 0 || u.len > LDAP_SRC_USER_MAX ||
	    (db != NULL && strnlen(db, LDAP_SRC_DB_MAX) >= LDAP_SRC_DB_MAX))
		return;
	e = entry_new(u, kind, db);
	if (e == NULL)
		return;
	e->hash = hash;
	pthread_mutex_lock(&c->mu);
	e->expires_us =
	    now(c) +
	    (uint64_t)(kind != LDAP_ANS_NO_USER ? c->ttl : c->negative_ttl) *
	        1000000U;
	slot = find(c, u, hash);
	if (*slot != NULL)
		unlink_at(c, slot);
	slot = &c->buckets[hash & c->mask];
	e->hnext = *slot;
	*slot = e;
	TAILQ_INSERT_HEAD(&c->lru, e, lru);
	c->count++;
	c->st.inserts++;
	c->st.down = false;
	while (c->count > c->max) {
		struct cache_entry *old = TAILQ_LAST(&c->lru, cache_lru);

		unlink_at(c, find(c, (struct str){old->user, old->user_len},
		                  old->hash));
		c->st.evictions++;
	}
	pthread_mutex_unlock(&c->mu);
}

void ldap_cache_put(struct ldap_cache *c, const char *user, const char *db)
{
	put(c, user, db != NULL ? LDAP_ANS_FOUND : LDAP_ANS_NO_USER, db);
}

void ldap_cache_put_cloud(struct ldap_cache *c, const char *user,
                          const char *why)
{
	put(c, user, LDAP_ANS_CLOUD, why != NULL ? why : "");
}

bool ldap_cache_flush(struct ldap_cache *c, const char *user)
{
	struct str u = str_from(user);
	struct cache_entry **slot;
	bool held;

	pthread_mutex_lock(&c->mu);
	slot = find(c, u, str_hash_ci(u));
	held = *slot != NULL;
	if (held)
		unlink_at(c, slot);
	pthread_mutex_unlock(&c->mu);
	return held;
}

void ldap_cache_flush_all(struct ldap_cache *c)
{
	pthread_mutex_lock(&c->mu);
	drop_all(c);
	pthread_mutex_unlock(&c->mu);
}

void ldap_cache_stats(struct ldap_cache *c, struct ldap_cache_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->st;
	out->entries = c->count;
	pthread_mutex_unlock(&c->mu);
}
