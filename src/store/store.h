/*
 * The fleet's shared store: counters and holds kept in one Redis that every
 * front end talks to, so that a device's budget and a stale password's hold
 * are one fact across the fleet (DESIGN.md "Edge protection", issue 15).
 *
 * The contract:
 * - One struct store per event base, used from that base's thread only
 *   (store_get_stats() excepted). Each has two connections: one for
 *   commands, one for subscriptions (a subscribed Redis connection takes no
 *   other command); the second opens with the first store_subscribe().
 * - Nothing blocks the caller. Every call returns at once; an answer comes
 *   through its callback from the loop, never from inside the call. The only
 *   blocking step is store_new() resolving a host name, once, at start-up.
 * - While the store is down (not connected, handshake refused or
 *   unanswered, a command unanswered) every call returns -1 at once and
 *   queues nothing, store_up() is false, and a reconnect is tried after
 *   0.5 s, doubling to 10 s. A command without an answer within the timeout
 *   drops the connection and fails every command in flight; at most
 *   max_inflight commands are in flight, beyond which calls return -1, so a
 *   Redis that accepts and never answers costs bounded memory and time.
 *   The store logs once when it goes down and once when it is back.
 * - "Up" means the handshake was answered: AUTH (with a password), SELECT
 *   (for a database other than 0) and a PING, in one round trip. An idle
 *   connection is PINGed (after STORE_KEEPALIVE_MS by default, never sooner
 *   than the timeout after the last command) so that a dead Redis is
 *   noticed without traffic.
 * - Keys are binary-safe byte strings the caller makes (keyed hashes, never
 *   user names or passwords); the store puts its prefix before them, and
 *   before channel names, so fleets sharing a Redis stay apart.
 * - Replies are untrusted bytes: each is checked by store_reply.h before
 *   use; a reply that is malformed, too large, or not expected drops the
 *   connection like a timeout does.
 *
 * Why not hiredis's async layer and its libevent adapter: hiredis 0.14
 * (Debian 12) asserts, aborting the process, on a reply nobody waits for and
 * on a malformed pub/sub message, and buffers a reply of any announced size.
 * So the connection is ours (a libevent bufferevent with its own timeouts
 * and bounds), and hiredis does what it is good at: formatting commands and
 * reading RESP (store_reply.h).
 */
#ifndef EF_STORE_STORE_H
#define EF_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct event_base;
struct store;

#define STORE_PORT_DEFAULT 6379
#define STORE_TIMEOUT_MS_DEFAULT 500 /* a command's answer, a handshake */
#define STORE_INFLIGHT_DEFAULT 10000 /* commands without an answer yet */
#define STORE_PREFIX_DEFAULT "easfront:"
#define STORE_BACKOFF_MIN_MS 500   /* first reconnect after a failure */
#define STORE_BACKOFF_MAX_MS 10000 /* doubling stops here */
#define STORE_KEEPALIVE_MS 5000    /* PING a connection idle this long */
#define STORE_PREFIX_MAX 64        /* bytes of the key prefix */
#define STORE_KEY_MAX 256          /* bytes of a caller's key */
#define STORE_CHANNEL_MAX 64       /* bytes of a channel name */
#define STORE_SUBS_MAX 8           /* channels one store subscribes to */
#define STORE_PASSWORD_MAX 512     /* bytes of the AUTH password */
#define STORE_HOST_MAX 256         /* host of the URL, NUL included */

/* Where the store is: redis://HOST[:PORT][/DB] taken apart. */
struct store_addr {
	char host[STORE_HOST_MAX]; /* a name or an IP literal (IPv6 without
	                              brackets) */
	uint16_t port;             /* STORE_PORT_DEFAULT when not written */
	unsigned db;               /* 0 when not written */
};

/* What store_new() needs; every string is copied. */
struct store_conf {
	const char *url;       /* redis://HOST[:PORT][/DB]; plain TCP only */
	const char *password;  /* NULL or "": no AUTH */
	unsigned timeout_ms;   /* 0: STORE_TIMEOUT_MS_DEFAULT */
	unsigned max_inflight; /* 0: STORE_INFLIGHT_DEFAULT */
	unsigned keepalive_ms; /* 0: STORE_KEEPALIVE_MS */
	const char *prefix;    /* NULL: STORE_PREFIX_DEFAULT; "" allowed */
};

/* Counters of one store. Every field may be read from any thread through
 * store_get_stats(). */
struct store_stats {
	bool up;             /* commands are accepted */
	bool sub_up;         /* subscriptions are in place */
	uint64_t commands;   /* commands sent */
	uint64_t errors;     /* error replies, unexpected or malformed replies,
	                        failed connects, handshakes refused */
	uint64_t timeouts;   /* commands or handshakes without an answer */
	uint64_t refused;    /* calls refused: down, or too many in flight */
	uint64_t reconnects; /* connections made up again after a loss */
	uint64_t messages;   /* hold and clear messages received */
	uint64_t rtt_us;     /* round trip of the last answered command */
};

/* What a published message says (the first byte of its payload). */
enum store_msg_op {
	STORE_MSG_HOLD = 'H',  /* the key is held for ttl_s seconds */
	STORE_MSG_CLEAR = 'C', /* the key's hold is lifted */
};

/* status: 0 with the counter's new total, or -1 (error reply, timeout,
 * connection lost, store freed) with total 0. */
typedef void (*store_total_cb)(void *arg, int status, long long total);
/* status: 0 when Redis did it, -1 as above. */
typedef void (*store_done_cb)(void *arg, int status);
/* Called once per held key found (status 0, key without the store prefix,
 * its remaining time in ms), then once at the end with key NULL and status
 * 0 (the whole key space was walked) or -1 (it was not). */
typedef void (*store_scan_cb)(void *arg, int status, const void *key,
                              size_t klen, long long ttl_ms);
/* A hold or clear published by any front end (this one included) on a
 * channel this store subscribed to; key without the store prefix; ttl_s is
 * 0 for a clear. */
typedef void (*store_msg_cb)(void *arg, enum store_msg_op op, const void *key,
                             size_t klen, unsigned ttl_s);

/*
 * Takes apart url, "redis://HOST[:PORT][/DB]" (scheme in any case; HOST a
 * name, an IPv4 address or a bracketed IPv6 address; PORT 1-65535; DB
 * 0-9999; no user info, query or fragment) into *out. rediss:// and every
 * other scheme are refused. Returns 0, or -1 with *why (when not NULL) set
 * to a static reason. Pure.
 */
int store_url_parse(const char *url, struct store_addr *out, const char **why);

/*
 * Reads the password from the first line of path (guard.store_password_file)
 * into buf (NUL-terminated, at most cap - 1 bytes; a longer line is refused
 * rather than cut). Returns its length, or -1 with a malloc'd reason in *err
 * (when err is not NULL); the reason never holds the password. Blocking file
 * I/O: start-up and reload only.
 */
int store_password_read(const char *path, char *buf, size_t cap, char **err);

/*
 * Creates a store on base (not owned; it must outlive the store) as c says,
 * and starts connecting from the loop. Resolves a host name with
 * getaddrinfo() here, once (the only blocking step; start-up only). Returns
 * NULL with a malloc'd reason in *err (when err is not NULL) for a bad URL,
 * prefix or password, or a name that does not resolve.
 */
struct store *store_new(struct event_base *base, const struct store_conf *c,
                        char **err);

/* Closes both connections and frees s, calling every pending callback with
 * status -1 (and a scan's end) so that what they own can be freed; so the
 * callbacks' arguments must still be alive. Accepts NULL. Never call it from
 * a store callback. */
void store_free(struct store *s);

/* True while commands are accepted (the command connection is up). */
bool store_up(const struct store *s);

/* Copies the counters into *st. Any thread. */
void store_get_stats(const struct store *s, struct store_stats *st);

/*
 * Adds by to the counter at key[0..klen) (1 to STORE_KEY_MAX bytes); a new
 * counter expires ttl_s (> 0) seconds after its creation, atomically with it
 * (a Lua script: INCRBY, then EXPIRE NX). cb(arg, status, total) follows
 * from the loop. Returns 0, or -1 at once (down, too many in flight, bad
 * arguments) without ever calling cb.
 */
int store_count(struct store *s, const void *key, size_t klen, long long by,
                unsigned ttl_s, store_total_cb cb, void *arg);

/*
 * Holds key for ttl_s (> 0) seconds: SET key 1 EX ttl_s and PUBLISH of the
 * hold on channel, atomically (a Lua script), so that a front end that
 * (re)starts finds it with store_scan_holds() and a running one hears it.
 * done (may be NULL) follows from the loop. Returns 0 or -1 as store_count.
 */
int store_hold(struct store *s, const char *channel, const void *key,
               size_t klen, unsigned ttl_s, store_done_cb done, void *arg);

/* Marks key for ttl_s (> 0) seconds (SET key 1 EX ttl_s) without telling
 * anyone: a front end finds it with store_scan_holds() when it needs it.
 * Returns 0 or -1 as store_hold. */
int store_mark(struct store *s, const void *key, size_t klen, unsigned ttl_s,
               store_done_cb done, void *arg);

/* Lifts a hold: DEL key and PUBLISH of the clear on channel, atomically.
 * Returns 0 or -1 as store_hold. */
int store_clear(struct store *s, const char *channel, const void *key,
                size_t klen, store_done_cb done, void *arg);

/*
 * Walks the keys that start with kind[0..kindlen) (SCAN MATCH over the store
 * prefix and kind, glob characters escaped) and reads each one's remaining
 * time (PTTL); cb is called as store_scan_cb says. Keys without a time left
 * (gone meanwhile, or without expiry) are skipped. Returns 0, or -1 at once
 * without calling cb.
 */
int store_scan_holds(struct store *s, const void *kind, size_t kindlen,
                     store_scan_cb cb, void *arg);

/*
 * Subscribes to channel (1 to STORE_CHANNEL_MAX bytes, at most
 * STORE_SUBS_MAX channels per store, each once): cb(arg, ...) is called for
 * every hold or clear published there, from the loop, as long as the store
 * lives. The subscription is made again after every reconnect; messages
 * published while it was down are lost (store_scan_holds() catches up).
 * Returns 0, or -1 for a bad or duplicate channel or a full table. Works
 * while the store is down.
 */
int store_subscribe(struct store *s, const char *channel, store_msg_cb cb,
                    void *arg);

#endif
