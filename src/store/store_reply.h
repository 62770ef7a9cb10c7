/*
 * What goes over the wire to and from Redis, without a connection: the
 * bounded RESP reader, the interpretation of every reply the store acts on,
 * and the payload of a hold or clear message. Replies are untrusted (a Redis,
 * or something pretending, may answer anything): each function checks types
 * and sizes before it reads, and says no rather than guess. Pure apart from
 * the reader's allocations; fuzzed by tests/fuzz/fuzz_store_reply.c.
 */
#ifndef EF_STORE_STORE_REPLY_H
#define EF_STORE_STORE_REPLY_H

#include "store/store.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#define STORE_REPLY_MAX_OBJECTS                                                \
	8192 /* values (and array slots) of one                                \
	        reply */
#define STORE_REPLY_MAX_BYTES                                                  \
	(1U << 20)                        /* string bytes of one reply; unread \
	                                     bytes the reader holds */
#define STORE_MSG_MAX (5 + STORE_KEY_MAX) /* op, TTL, key */

/* A message received on a subscribed connection. Points into the reply. */
struct store_push_msg {
	const char *channel;
	size_t chlen;
	const char *payload;
	size_t len;
};

/* A decoded hold or clear. key points into the payload. */
struct store_msg {
	int op; /* enum store_msg_op */
	unsigned ttl_s;
	const void *key;
	size_t klen;
};

/* A RESP reader that refuses a reply of more than STORE_REPLY_MAX_OBJECTS
 * values or STORE_REPLY_MAX_BYTES of strings (hiredis allocates whatever a
 * reply announces): the reader then fails with an error. Its replies are
 * freed with freeReplyObject(). NULL when out of memory. */
redisReader *store_reader_new(void);

/* Frees a reader made by store_reader_new(). Accepts NULL. */
void store_reader_free(redisReader *r);

/* Feeds buf[0..len) to r. Returns 0, or -1 when r now holds more than
 * STORE_REPLY_MAX_BYTES unread bytes (a reply that large is not one the
 * store asked for) or cannot take them. */
int store_reader_feed(redisReader *r, const char *buf, size_t len);

/* An integer reply (INCRBY, PUBLISH, a script's result): 0 with *total, or
 * -1. */
int store_reply_total(const redisReply *r, long long *total);

/* True for the status reply +OK (AUTH, SELECT). */
bool store_reply_ok(const redisReply *r);

/* True for +PONG, or ["pong", ...] on a subscribed connection. */
bool store_reply_pong(const redisReply *r);

/* True for the confirmation ["subscribe", channel, count]. */
bool store_reply_subscribed(const redisReply *r);

/* A PTTL reply: 0 with *ttl_ms (>= 0), or -1 for -2 (no such key), -1 (no
 * expiry) or anything that is not an integer. */
int store_reply_ttl(const redisReply *r, long long *ttl_ms);

/* A page of the holds walk (store_cmd.c's script): [cursor, [key, ms, key,
 * ms...]], every key a string, every ms an integer >= 0. Returns the number
 * of pairs and sets *cursor and *pairs (the inner array), or -1. */
int store_reply_scan(const redisReply *r, unsigned long long *cursor,
                     const redisReply **pairs);

/* A pub/sub message ["message", channel, payload]: 0 with *m pointing into
 * r, or -1. */
int store_reply_message(const redisReply *r, struct store_push_msg *m);

/* Copies the printable ASCII of an error or status reply into buf (cap > 0,
 * NUL-terminated, cut to fit), for a log line; "(type N)" for other
 * types. Returns buf. */
const char *store_reply_text(const redisReply *r, char *buf, size_t cap);

/* Builds the payload of a hold or clear into buf (cap >= STORE_MSG_MAX):
 * the op byte, ttl_s as 4 bytes big-endian, the key. Returns its length,
 * or 0 when the key is empty or longer than STORE_MSG_MAX - 5. */
size_t store_msg_encode(int op, unsigned ttl_s, const void *key, size_t klen,
                        char *buf, size_t cap);

/* Decodes a payload built by store_msg_encode(): 0 with *m (a known op, a
 * key of 1 to STORE_MSG_MAX - 5 bytes, ttl_s 0 for a clear), or -1. */
int store_msg_decode(const void *payload, size_t len, struct store_msg *m);

#endif
