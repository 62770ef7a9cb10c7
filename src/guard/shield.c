/*
 * The shield's table: open addressing with linear probing over a power of
 * two of slots (at most three quarters full), backward-shift deletion, so a
 * lookup is a few cache lines and the memory is fixed at creation: about 60
 * bytes per entry of max_entries.
 */
#include "guard/shield.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/str.h"

/* Longest user ‖ NUL ‖ password hashed; longer ones are cut (an EAS
 * password is far shorter). */
#define SHIELD_INPUT_MAX 512

enum kind {
	K_EMPTY = 0,
	K_PASS, /* a (user, password) pair */
	K_USER, /* a user */
};

/* Times are seconds of the caller's clock, kept in 32 bits. */
struct entry {
	uint8_t id[SHIELD_ID_LEN];
	uint8_t user[8];       /* K_PASS: its user's id, for clearing */
	uint8_t kind;	       /* enum kind */
	uint16_t count;	       /* refusals in the current window */
	union {
		uint32_t window_start; /* count > 0: when the window of its
					  refusals began */
		uint32_t told_until;   /* count 0, K_PASS: when the mark of it
					  being known good that the fleet was
					  told of ends */
	};
	uint32_t hold_until;   /* answered locally until then */
	uint32_t good_until;   /* K_PASS: known good until then */
	uint32_t last;	       /* last touched, for eviction */
};

struct shield {
	struct entry *slot; /* owned: mask + 1 slots */
	size_t mask;
	size_t n, max;
	uint64_t evictions;
	uint64_t turned_away; /* newcomers not kept: the table was full of
				 holds and known-good passwords */
	uint64_t rng; /* where eviction samples next */
};

/* Entries looked at for each eviction. */
#define SHIELD_SAMPLE 8

struct shield *shield_new(size_t max_entries)
{
	struct shield *sh = calloc(1, sizeof(*sh));
	size_t cap = 16;

	if (max_entries < 16)
		max_entries = 16;
	while (cap < max_entries + max_entries / 3)
		cap <<= 1;
	if (sh == NULL || (sh->slot = calloc(cap, sizeof(*sh->slot))) == NULL) {
		free(sh);
		return NULL;
	}
	sh->mask = cap - 1;
	sh->max = max_entries;
	sh->rng = 0x9e3779b97f4a7c15ULL;
	return sh;
}

void shield_free(struct shield *sh)
{
	if (sh == NULL)
		return;
	free(sh->slot);
	free(sh);
}

void shield_ids(const unsigned char *key, size_t key_len, const char *user,
		const char *pass, size_t pass_len,
		uint8_t user_id[SHIELD_ID_LEN], uint8_t pass_id[SHIELD_ID_LEN])
{
	unsigned char mac[EVP_MAX_MD_SIZE], buf[SHIELD_INPUT_MAX];
	size_t ul = strlen(user);
	unsigned int n = 0;

	/* "u" + user, and user + NUL + password: the two never collide. */
	buf[0] = 'u';
	if (ul > sizeof(buf) - 1)
		ul = sizeof(buf) - 1;
	memcpy(buf + 1, user, ul);
	memset(mac, 0, sizeof(mac));
	HMAC(EVP_sha256(), key, (int)key_len, buf, ul + 1, mac, &n);
	memcpy(user_id, mac, SHIELD_ID_LEN);
	if (pass_len > sizeof(buf) - ul - 1)
		pass_len = sizeof(buf) - ul - 1;
	memcpy(buf, user, ul);
	buf[ul] = '\0';
	memcpy(buf + ul + 1, pass, pass_len);
	memset(mac, 0, sizeof(mac));
	HMAC(EVP_sha256(), key, (int)key_len, buf, ul + 1 + pass_len, mac, &n);
	memcpy(pass_id, mac, SHIELD_ID_LEN);
	OPENSSL_cleanse(buf, sizeof(buf));
}

struct shield_key {
	EVP_MD_CTX *inner; /* SHA-256 having absorbed key ^ ipad */
	EVP_MD_CTX *outer; /* ... key ^ opad */
};

void shield_key_free(struct shield_key *k)
{
	if (k == NULL)
		return;
	EVP_MD_CTX_free(k->inner);
	EVP_MD_CTX_free(k->outer);
	free(k);
}

/* RFC 2104 with B = 64: a longer key is hashed first. */
struct shield_key *shield_key_new(const unsigned char *key, size_t key_len)
{
	struct shield_key *k = calloc(1, sizeof(*k));
	unsigned char block[64], ipad[64], opad[64];
	unsigned int n = 0;
	bool ok;

	if (k == NULL)
		return NULL;
	memset(block, 0, sizeof(block));
	if (key_len > sizeof(block))
		ok = EVP_Digest(key, key_len, block, &n, EVP_sha256(), NULL) == 1;
	else {
		memcpy(block, key, key_len);
		ok = true;
	}
	for (size_t i = 0; i < sizeof(block); i++) {
		ipad[i] = block[i] ^ 0x36;
		opad[i] = block[i] ^ 0x5c;
	}
	k->inner = EVP_MD_CTX_new();
	k->outer = EVP_MD_CTX_new();
	ok = ok && k->inner != NULL && k->outer != NULL &&
	     EVP_DigestInit_ex(k->inner, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(k->inner, ipad, sizeof(ipad)) == 1 &&
	     EVP_DigestInit_ex(k->outer, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(k->outer, opad, sizeof(opad)) == 1;
	OPENSSL_cleanse(block, sizeof(block));
	OPENSSL_cleanse(ipad, sizeof(ipad));
	OPENSSL_cleanse(opad, sizeof(opad));
	if (!ok) {
		shield_key_free(k);
		return NULL;
	}
	return k;
}

/* HMAC of a ‖ b ‖ c under k into id, through the scratch context x. */
static bool key_mac(const struct shield_key *k, EVP_MD_CTX *x,
		    const struct str a, const struct str b, const struct str c,
		    uint8_t id[SHIELD_ID_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	bool ok = EVP_MD_CTX_copy_ex(x, k->inner) == 1 &&
		  EVP_DigestUpdate(x, a.p, a.len) == 1 &&
		  EVP_DigestUpdate(x, b.p, b.len) == 1 &&
		  EVP_DigestUpdate(x, c.p, c.len) == 1 &&
		  EVP_DigestFinal_ex(x, md, &n) == 1 &&
		  EVP_MD_CTX_copy_ex(x, k->outer) == 1 &&
		  EVP_DigestUpdate(x, md, n) == 1 &&
		  EVP_DigestFinal_ex(x, md, &n) == 1 && n >= SHIELD_ID_LEN;

	memcpy(id, md, SHIELD_ID_LEN);
	OPENSSL_cleanse(md, sizeof(md));
	return ok;
}

int shield_key_ids(const struct shield_key *k, const char *user,
		   const char *pass, size_t pass_len,
		   uint8_t user_id[SHIELD_ID_LEN], uint8_t pass_id[SHIELD_ID_LEN])
{
	EVP_MD_CTX *x = EVP_MD_CTX_new();
	size_t ul = strlen(user);
	bool ok;

	/* Cut where shield_ids cuts, so both give the same ids. */
	if (ul > SHIELD_INPUT_MAX - 1)
		ul = SHIELD_INPUT_MAX - 1;
	if (pass_len > SHIELD_INPUT_MAX - ul - 1)
		pass_len = SHIELD_INPUT_MAX - ul - 1;
	ok = x != NULL &&
	     key_mac(k, x, STR_LIT("u"), (struct str){user, ul}, STR_LIT(""),
		     user_id) &&
	     key_mac(k, x, (struct str){user, ul}, (struct str){"", 1},
		     (struct str){pass, pass_len}, pass_id);
	EVP_MD_CTX_free(x);
	if (!ok) {
		memset(user_id, 0, SHIELD_ID_LEN);
		memset(pass_id, 0, SHIELD_ID_LEN);
		return -1;
	}
	return 0;
}

/* The ids are HMAC output: their first bytes are as good as any hash. */
static size_t home(const struct shield *sh, enum kind k, const uint8_t *id)
{
	uint64_t h;

	memcpy(&h, id, sizeof(h));
	return (size_t)(h ^ (uint64_t)k) & sh->mask;
}

static struct entry *find(const struct shield *sh, enum kind k,
			  const uint8_t *id)
{
	for (size_t i = home(sh, k, id);; i = (i + 1) & sh->mask) {
		struct entry *e = &sh->slot[i];

		if (e->kind == K_EMPTY)
			return NULL;
		if (e->kind == k && memcmp(e->id, id, SHIELD_ID_LEN) == 0)
			return e;
	}
}

/* Empties slot i and moves later entries of its run back, so that every
 * entry stays reachable from its home slot. */
static void remove_at(struct shield *sh, size_t i)
{
	size_t j = i;

	for (;;) {
		size_t k;

		j = (j + 1) & sh->mask;
		if (sh->slot[j].kind == K_EMPTY)
			break;
		k = home(sh, sh->slot[j].kind, sh->slot[j].id);
		/* Move j back to i unless its home lies cyclically in
		 * (i, j]. */
		if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
			sh->slot[i] = sh->slot[j];
			i = j;
		}
	}
	memset(&sh->slot[i], 0, sizeof(sh->slot[i]));
	sh->n--;
}

/* 0 plain, 1 a known-good password, 2 a hold: evicted in that order. */
static int worth(const struct entry *e, uint32_t now)
{
	if (e->hold_until > now)
		return 2;
	if (e->good_until > now)
		return 1;
	return 0;
}

/* Makes room by dropping a plain entry (no hold, not known good), the
 * least recently used of those sampled. Returns false when none is found:
 * a newcomer never pushes out a hold or a password that works, or a flood
 * of made-up users would, once its own entries became holds. */
static bool evict_one(struct shield *sh, uint32_t now)
{
	size_t i, best = SIZE_MAX, seen = 0;

	sh->rng ^= sh->rng << 13;
	sh->rng ^= sh->rng >> 7;
	sh->rng ^= sh->rng << 17;
	i = (size_t)sh->rng & sh->mask;
	for (size_t k = 0; k <= sh->mask && seen < SHIELD_SAMPLE; k++) {
		const struct entry *e = &sh->slot[(i + k) & sh->mask];

		if (e->kind == K_EMPTY || worth(e, now) != 0)
			continue;
		seen++;
		if (best == SIZE_MAX || e->last < sh->slot[best].last)
			best = (i + k) & sh->mask;
	}
	if (best == SIZE_MAX)
		return false;
	remove_at(sh, best);
	sh->evictions++;
	return true;
}

static struct entry *find_or_add(struct shield *sh, enum kind k,
				 const uint8_t *id, uint32_t now)
{
	struct entry *e = find(sh, k, id);
	size_t i;

	if (e != NULL)
		return e;
	if (sh->n >= sh->max && !evict_one(sh, now)) {
		sh->turned_away++;
		return NULL;
	}
	for (i = home(sh, k, id); sh->slot[i].kind != K_EMPTY;
	     i = (i + 1) & sh->mask)
		;
	e = &sh->slot[i];
	memset(e, 0, sizeof(*e));
	e->kind = (uint8_t)k;
	memcpy(e->id, id, SHIELD_ID_LEN);
	e->window_start = now;
	sh->n++;
	return e;
}

/* One more refusal within the window (a new window when it has passed);
 * returns true when it is the first of its window. */
static bool count_refusal(struct entry *e, const struct shield_conf *c,
			  uint32_t now)
{
	if (e->count == 0 || now - e->window_start >= c->window) {
		e->count = 0;
		e->window_start = now;
	}
	if (e->count < UINT16_MAX)
		e->count++;
	return e->count == 1;
}

enum shield_verdict shield_check(struct shield *sh, const struct shield_conf *c,
				 const uint8_t user[SHIELD_ID_LEN],
				 const uint8_t pass[SHIELD_ID_LEN], uint64_t now)
{
	uint32_t t = (uint32_t)now;
	const struct entry *p = find(sh, K_PASS, pass);
	const struct entry *u;

	if (p != NULL && p->hold_until > t)
		return SHIELD_STALE_PASSWORD;
	if (c->user_failures == 0)
		return SHIELD_PASS;
	u = find(sh, K_USER, user);
	if (u == NULL || u->hold_until <= t)
		return SHIELD_PASS;
	/* A password that worked lately still does: the owner is not the
	 * one guessing. */
	return p != NULL && p->good_until > t ? SHIELD_PASS : SHIELD_GUESSING;
}

unsigned shield_feed(struct shield *sh, const struct shield_conf *c,
		     const uint8_t user[SHIELD_ID_LEN],
		     const uint8_t pass[SHIELD_ID_LEN], bool refused,
		     uint64_t now)
{
	uint32_t t = (uint32_t)now;
	struct entry *p = find_or_add(sh, K_PASS, pass, t);
	struct entry *u;
	unsigned news = 0;
	bool first;

	if (p == NULL)
		return 0;
	memcpy(p->user, user, sizeof(p->user));
	p->last = t;
	if (!refused) {
		uint32_t good = shield_good_time(c);

		/* Renewed here on every success; news for the fleet only
		 * when its mark is missing or past half its time, so that
		 * a phone's every request is not. */
		if (p->count > 0 || p->told_until <= t ||
		    p->told_until - t < good / 2) {
			news = SHIELD_NEW_GOOD;
			p->told_until = t + good;
		}
		p->count = 0;
		p->hold_until = 0;
		p->good_until = t + good;
		return news;
	}
	p->good_until = 0;
	first = count_refusal(p, c, t);
	if (c->password_failures > 0 && p->count >= c->password_failures) {
		if (p->hold_until <= t)
			news |= SHIELD_NEW_PASSWORD_HOLD;
		p->hold_until = t + c->hold;
	}
	if (!first || c->user_failures == 0)
		return news;
	/* A password refused for the first time in its window: one more
	 * different password tried for the user. */
	u = find_or_add(sh, K_USER, user, t);
	if (u == NULL)
		return news;
	u->last = t;
	count_refusal(u, c, t);
	if (u->count >= c->user_failures) {
		if (u->hold_until <= t)
			news |= SHIELD_NEW_USER_HOLD;
		u->hold_until = t + c->hold;
	}
	return news;
}

unsigned shield_good_time(const struct shield_conf *c)
{
	/* As long as a hold would last, at least a window. */
	return c->hold > c->window ? c->hold : c->window;
}

void shield_set_good(struct shield *sh, const uint8_t user[SHIELD_ID_LEN],
		     const uint8_t pass[SHIELD_ID_LEN], uint64_t until,
		     uint64_t now)
{
	uint32_t t = (uint32_t)now, u = (uint32_t)until;
	struct entry *e;

	if (u <= t || (e = find_or_add(sh, K_PASS, pass, t)) == NULL)
		return;
	e->last = t;
	memcpy(e->user, user, sizeof(e->user));
	if (e->good_until < u)
		e->good_until = u;
	/* The fleet has this mark: not news when it works here too. */
	if (e->count == 0 && e->told_until < u)
		e->told_until = u;
}

unsigned shield_pass_refusals(const struct shield *sh,
                              const struct shield_conf *c,
                              const uint8_t pass[SHIELD_ID_LEN], uint64_t now)
{
	const struct entry *p = find(sh, K_PASS, pass);
	uint32_t t = (uint32_t)now;

	if (p == NULL || t - p->window_start >= c->window)
		return 0;
	return p->count;
}

unsigned shield_set_hold(struct shield *sh, const uint8_t user[SHIELD_ID_LEN],
                         const uint8_t *pass, uint64_t until, uint64_t now)
{
	uint32_t t = (uint32_t)now, u = (uint32_t)until;
	unsigned news =
	    pass != NULL ? SHIELD_NEW_PASSWORD_HOLD : SHIELD_NEW_USER_HOLD;
	struct entry *e;

	if (u <= t)
		return 0;
	e = pass != NULL ? find_or_add(sh, K_PASS, pass, t)
	                 : find_or_add(sh, K_USER, user, t);
	if (e == NULL)
		return 0;
	e->last = t;
	if (pass != NULL) {
		memcpy(e->user, user, sizeof(e->user));
		e->good_until = 0;
	}
	if (e->hold_until > t)
		news = 0;
	if (e->hold_until < u)
		e->hold_until = u;
	return news;
}

unsigned shield_user_hold_left(const struct shield *sh,
			       const uint8_t user[SHIELD_ID_LEN], uint64_t now)
{
	const struct entry *u = find(sh, K_USER, user);
	uint32_t t = (uint32_t)now;

	return u != NULL && u->hold_until > t ? u->hold_until - t : 0;
}

size_t shield_copy(struct shield *dst, const struct shield *src, uint64_t now)
{
	uint32_t t = (uint32_t)now;
	size_t lost = 0;

	/* Holds first, then known-good passwords, then the rest: when dst
	 * is smaller, what is dropped is what eviction would drop. */
	for (int w = 2; w >= 0; w--) {
		for (size_t i = 0; i <= src->mask; i++) {
			const struct entry *e = &src->slot[i];
			struct entry *d;

			if (e->kind == K_EMPTY || worth(e, t) != w)
				continue;
			if (dst->n >= dst->max ||
			    find(dst, (enum kind)e->kind, e->id) != NULL) {
				lost++;
				continue;
			}
			d = find_or_add(dst, (enum kind)e->kind, e->id, t);
			if (d == NULL) {
				lost++;
				continue;
			}
			*d = *e;
		}
	}
	return lost;
}

size_t shield_clear_user(struct shield *sh, const uint8_t user[SHIELD_ID_LEN])
{
	size_t removed = 0, i = 0;

	while (i <= sh->mask) {
		const struct entry *e = &sh->slot[i];

		if ((e->kind == K_USER &&
		     memcmp(e->id, user, SHIELD_ID_LEN) == 0) ||
		    (e->kind == K_PASS &&
		     memcmp(e->user, user, sizeof(e->user)) == 0)) {
			/* The entry moved into slot i is looked at next. */
			remove_at(sh, i);
			removed++;
			continue;
		}
		i++;
	}
	return removed;
}

void shield_get_size(const struct shield *sh, size_t *entries,
		     uint64_t *evictions, uint64_t *turned_away)
{
	*entries = sh->n;
	*evictions = sh->evictions;
	*turned_away = sh->turned_away;
}

void shield_get_stats(const struct shield *sh, uint64_t now,
		      struct shield_stats *out)
{
	uint32_t t = (uint32_t)now;

	memset(out, 0, sizeof(*out));
	out->entries = sh->n;
	out->evictions = sh->evictions;
	for (size_t i = 0; i <= sh->mask; i++) {
		const struct entry *e = &sh->slot[i];

		if (e->hold_until <= t)
			continue;
		if (e->kind == K_PASS)
			out->held_passwords++;
		else if (e->kind == K_USER)
			out->held_users++;
	}
}
