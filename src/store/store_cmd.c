/*
 * The store's commands and their answers: counters, holds, and the walk
 * over the holds a front end finds when it (re)starts. Each operation that
 * must be atomic is one small Lua script, so that a counter never lives
 * without its expiry and a hold is never published without its key.
 */
#include "store/store_int.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* INCRBY, then an expiry only if the key has none (a new counter): Redis 7's
 * EXPIRE ... NX. */
static const char count_lua[] =
    "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) "
    "redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX') return n";
/* ARGV: channel, message, TTL. Returns the number of receivers. */
static const char hold_lua[] = "redis.call('SET', KEYS[1], '1', 'EX', ARGV[3]) "
                               "return redis.call('PUBLISH', ARGV[1], ARGV[2])";
/* A mark that only needs to be found (by a walk), never heard at once. */
static const char mark_lua[] =
    "redis.call('SET', KEYS[1], '1', 'EX', ARGV[1]) return 1";
static const char clear_lua[] =
    "redis.call('DEL', KEYS[1]) "
    "return redis.call('PUBLISH', ARGV[1], ARGV[2])";
/* One page of the walk: ARGV cursor, pattern. Returns [cursor, [key, ms,
 * ...]] with only the keys that still have a time left. */
static const char scan_lua[] =
    "local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 100) "
    "local out = {} "
    "for _, k in ipairs(r[2]) do "
    "local t = redis.call('PTTL', k) "
    "if t >= 0 then out[#out + 1] = k; out[#out + 1] = t end "
    "end "
    "return {r[1], out}";

size_t store_name(const struct store *s, const void *part, size_t len,
                  char *buf, size_t cap)
{
	if (len == 0 || s->prefix_len + len > cap)
		return 0;
	memcpy(buf, s->prefix, s->prefix_len);
	memcpy(buf + s->prefix_len, part, len);
	return s->prefix_len + len;
}

/* Sends EVAL script with key (NULL: no key) and argv[0..n), n <= 3, on the
 * command link. */
static int eval(struct store *s, const char *script, const char *key,
                size_t klen, int n, const char **argv, const size_t *lens,
                const struct link_cb *cb)
{
	const char *av[7] = {"EVAL", script, key ? "1" : "0", key};
	size_t al[7] = {4, strlen(script), 1, klen};
	int at = key ? 4 : 3;

	for (int i = 0; i < n && i < 3; i++) {
		av[at + i] = argv[i];
		al[at + i] = lens[i];
	}
	return link_send(&s->cmd, at + (n < 3 ? n : 3), av, al, cb);
}

/* The integer answer of a script: 0 with *total, or -1 when r is NULL (the
 * command failed) or not an integer (counted, logged at debug level). */
static int script_total(struct store_link *l, const redisReply *r,
                        const char *what, long long *total)
{
	char text[80];

	if (r == NULL)
		return -1;
	if (store_reply_total(r, total) == 0)
		return 0;
	stat_add(&l->s->st.errors, 1);
	log_debug("store %s: %s failed: %s", l->s->url, what,
	          store_reply_text(r, text, sizeof(text)));
	return -1;
}

static void count_reply(struct store_link *l, const struct link_cb *cb,
                        const redisReply *r)
{
	store_total_cb done = (store_total_cb)cb->user;
	long long total = 0;
	int status = script_total(l, r, "a count", &total);

	done(cb->arg, status, status == 0 ? total : 0);
}

int store_count(struct store *s, const void *key, size_t klen, long long by,
                unsigned ttl_s, store_total_cb cb, void *arg)
{
	char name[STORE_PREFIX_MAX + STORE_KEY_MAX];
	char nby[24], nttl[16];
	const char *av[2] = {nby, nttl};
	size_t al[2];
	size_t n;
	const struct link_cb lcb = {count_reply, (void (*)(void))cb, arg};

	if (klen > STORE_KEY_MAX || ttl_s == 0 || cb == NULL ||
	    (n = store_name(s, key, klen, name, sizeof(name))) == 0)
		return -1;
	al[0] = (size_t)snprintf(nby, sizeof(nby), "%lld", by);
	al[1] = (size_t)snprintf(nttl, sizeof(nttl), "%u", ttl_s);
	return eval(s, count_lua, name, n, 2, av, al, &lcb);
}

static void done_reply(struct store_link *l, const struct link_cb *cb,
                       const redisReply *r)
{
	store_done_cb done = (store_done_cb)cb->user;
	long long receivers;
	int status = script_total(l, r, "a hold, mark or clear", &receivers);

	if (done != NULL)
		done(cb->arg, status);
}

/* A hold (ttl_s > 0) or a clear (ttl_s 0): the key, then the message on
 * channel, in one script. */
static int publish(struct store *s, const char *script, const char *channel,
                   const void *key, size_t klen, unsigned ttl_s,
                   store_done_cb done, void *arg)
{
	char name[STORE_PREFIX_MAX + STORE_KEY_MAX];
	char chan[STORE_PREFIX_MAX + STORE_CHANNEL_MAX];
	char msg[STORE_MSG_MAX], nttl[16];
	const char *av[3] = {chan, msg, nttl};
	size_t al[3];
	size_t n;
	const struct link_cb lcb = {done_reply, (void (*)(void))done, arg};

	if (channel == NULL || klen > STORE_KEY_MAX ||
	    strlen(channel) > STORE_CHANNEL_MAX ||
	    (n = store_name(s, key, klen, name, sizeof(name))) == 0 ||
	    (al[0] = store_name(s, channel, strlen(channel), chan,
	                        sizeof(chan))) == 0)
		return -1;
	al[1] = store_msg_encode(ttl_s ? STORE_MSG_HOLD : STORE_MSG_CLEAR,
	                         ttl_s, key, klen, msg, sizeof(msg));
	al[2] = (size_t)snprintf(nttl, sizeof(nttl), "%u", ttl_s);
	if (al[1] == 0)
		return -1;
	return eval(s, script, name, n, ttl_s ? 3 : 2, av, al, &lcb);
}

int store_hold(struct store *s, const char *channel, const void *key,
               size_t klen, unsigned ttl_s, store_done_cb done, void *arg)
{
	if (ttl_s == 0)
		return -1;
	return publish(s, hold_lua, channel, key, klen, ttl_s, done, arg);
}

int store_mark(struct store *s, const void *key, size_t klen, unsigned ttl_s,
               store_done_cb done, void *arg)
{
	char name[STORE_PREFIX_MAX + STORE_KEY_MAX], nttl[16];
	const char *av[1] = {nttl};
	size_t al[1], n;
	const struct link_cb lcb = {done_reply, (void (*)(void))done, arg};

	if (klen > STORE_KEY_MAX || ttl_s == 0 ||
	    (n = store_name(s, key, klen, name, sizeof(name))) == 0)
		return -1;
	al[0] = (size_t)snprintf(nttl, sizeof(nttl), "%u", ttl_s);
	return eval(s, mark_lua, name, n, 1, av, al, &lcb);
}

int store_clear(struct store *s, const char *channel, const void *key,
                size_t klen, store_done_cb done, void *arg)
{
	return publish(s, clear_lua, channel, key, klen, 0, done, arg);
}

/* A walk over the holds: one page in flight at a time. */
struct scan {
	store_scan_cb cb;
	void *arg; /* cb's */
	size_t plen;
	char pattern[2 * (STORE_PREFIX_MAX + STORE_KEY_MAX) + 2];
};

static int scan_page(struct store *s, struct scan *sc, unsigned long long cur);

/* Hands one page's keys to the caller, without the store prefix; a key
 * outside the prefix (a Redis that answers what it was not asked) is
 * skipped. */
static void scan_deliver(struct store *s, struct scan *sc,
                         const redisReply *pairs)
{
	for (size_t i = 0; i + 1 < pairs->elements; i += 2) {
		const redisReply *k = pairs->element[i];
		long long ms = pairs->element[i + 1]->integer;

		if (k->len <= s->prefix_len ||
		    memcmp(k->str, s->prefix, s->prefix_len) != 0) {
			stat_add(&s->st.errors, 1);
			continue;
		}
		sc->cb(sc->arg, 0, k->str + s->prefix_len,
		       k->len - s->prefix_len, ms);
	}
}

static void scan_reply(struct store_link *l, const struct link_cb *cb,
                       const redisReply *r)
{
	struct scan *sc = cb->arg;
	unsigned long long cursor = 0;
	const redisReply *pairs = NULL;
	int status = -1;

	if (r != NULL && store_reply_scan(r, &cursor, &pairs) < 0) {
		stat_add(&l->s->st.errors, 1);
		r = NULL;
	}
	if (r != NULL) {
		scan_deliver(l->s, sc, pairs);
		if (cursor != 0 && scan_page(l->s, sc, cursor) == 0)
			return;
		status = cursor == 0 ? 0 : -1;
	}
	sc->cb(sc->arg, status, NULL, 0, 0);
	free(sc);
}

static int scan_page(struct store *s, struct scan *sc, unsigned long long cur)
{
	char ncur[24];
	const char *av[2] = {ncur, sc->pattern};
	size_t al[2] = {0, sc->plen};
	const struct link_cb lcb = {scan_reply, NULL, sc};

	al[0] = (size_t)snprintf(ncur, sizeof(ncur), "%llu", cur);
	/* No key of its own: the script reads the keys SCAN finds. */
	return eval(s, scan_lua, NULL, 0, 2, av, al, &lcb);
}

/* Appends src[0..len) to the glob pattern, each glob character escaped. */
static size_t glob_escape(char *dst, size_t at, const void *src, size_t len)
{
	const unsigned char *p = src;

	for (size_t i = 0; i < len; i++) {
		if (strchr("*?[]\\", p[i]) != NULL && p[i] != '\0')
			dst[at++] = '\\';
		dst[at++] = (char)p[i];
	}
	return at;
}

int store_scan_holds(struct store *s, const void *kind, size_t kindlen,
                     store_scan_cb cb, void *arg)
{
	struct scan *sc;

	if (cb == NULL || kindlen > STORE_KEY_MAX ||
	    (sc = calloc(1, sizeof(*sc))) == NULL)
		return -1;
	sc->cb = cb;
	sc->arg = arg;
	sc->plen = glob_escape(sc->pattern, 0, s->prefix, s->prefix_len);
	sc->plen = glob_escape(sc->pattern, sc->plen, kind, kindlen);
	sc->pattern[sc->plen++] = '*';
	if (scan_page(s, sc, 0) < 0) {
		free(sc);
		return -1;
	}
	return 0;
}
