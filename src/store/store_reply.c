/*
 * Reading Redis's answers without trusting them: a RESP reader with a budget
 * per reply, the checks every reply goes through before the store acts on
 * it, and the payload format of published holds and clears.
 */
#include "store/store_reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A reader's budget: hiredis's own object functions (the defaults, reached
 * through each task's privdata) and what the reply being read has used. */
struct budget {
	redisReplyObjectFunctions *orig;
	size_t objects; /* values and array slots of the current reply */
	size_t bytes;   /* string bytes of the current reply */
};

/* Charges n objects and len string bytes to the reply task t belongs to;
 * a task without a parent starts a new reply. Returns false when the reply
 * is over budget: the caller then returns NULL, which hiredis turns into a
 * reader error. */
static bool charge(const redisReadTask *t, size_t n, size_t len)
{
	struct budget *b = t->privdata;

	if (t->parent == NULL) {
		b->objects = 0;
		b->bytes = 0;
	}
	b->objects += n;
	b->bytes += len;
	return b->objects <= STORE_REPLY_MAX_OBJECTS &&
	       b->bytes <= STORE_REPLY_MAX_BYTES;
}

static void *budget_string(const redisReadTask *t, char *s, size_t len)
{
	struct budget *b = t->privdata;

	return charge(t, 1, len) ? b->orig->createString(t, s, len) : NULL;
}

static void *budget_array(const redisReadTask *t, int elements)
{
	struct budget *b = t->privdata;

	if (elements < 0 || !charge(t, 1 + (size_t)elements, 0))
		return NULL;
	return b->orig->createArray(t, elements);
}

static void *budget_integer(const redisReadTask *t, long long v)
{
	struct budget *b = t->privdata;

	return charge(t, 1, 0) ? b->orig->createInteger(t, v) : NULL;
}

static void *budget_nil(const redisReadTask *t)
{
	struct budget *b = t->privdata;

	return charge(t, 1, 0) ? b->orig->createNil(t) : NULL;
}

/* Never written: hiredis wants a non-const pointer. */
static redisReplyObjectFunctions budget_fns = {
    .createString = budget_string,
    .createArray = budget_array,
    .createInteger = budget_integer,
    .createNil = budget_nil,
    .freeObject = freeReplyObject,
};

redisReader *store_reader_new(void)
{
	redisReader *r = redisReaderCreate();
	struct budget *b = calloc(1, sizeof(*b));

	if (r == NULL || b == NULL || r->fn == NULL) {
		free(b);
		if (r != NULL)
			redisReaderFree(r);
		return NULL;
	}
	b->orig = r->fn;
	r->fn = &budget_fns;
	r->privdata = b;
	return r;
}

void store_reader_free(redisReader *r)
{
	if (r == NULL)
		return;
	free(r->privdata);
	redisReaderFree(r);
}

int store_reader_feed(redisReader *r, const char *buf, size_t len)
{
	if (redisReaderFeed(r, buf, len) != REDIS_OK)
		return -1;
	return r->len - r->pos > STORE_REPLY_MAX_BYTES ? -1 : 0;
}

int store_reply_total(const redisReply *r, long long *total)
{
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		return -1;
	*total = r->integer;
	return 0;
}

/* True when r is a string-like reply of the given type equal to lit,
 * ignoring ASCII case. */
static bool is_text(const redisReply *r, int type, const char *lit)
{
	size_t n = strlen(lit);

	return r != NULL && r->type == type && r->str != NULL && r->len == n &&
	       strncasecmp(r->str, lit, n) == 0;
}

bool store_reply_ok(const redisReply *r)
{
	return is_text(r, REDIS_REPLY_STATUS, "OK");
}

/* True when r is an array of n elements whose first is the string lit. */
static bool is_push(const redisReply *r, size_t n, const char *lit)
{
	return r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == n &&
	       r->element != NULL && r->element[0] != NULL &&
	       is_text(r->element[0], REDIS_REPLY_STRING, lit);
}

bool store_reply_pong(const redisReply *r)
{
	return is_text(r, REDIS_REPLY_STATUS, "PONG") || is_push(r, 2, "pong");
}

/* True when r is a non-NULL string element. */
static bool is_string(const redisReply *r)
{
	return r != NULL && r->type == REDIS_REPLY_STRING && r->str != NULL;
}

bool store_reply_subscribed(const redisReply *r)
{
	return is_push(r, 3, "subscribe") && is_string(r->element[1]) &&
	       r->element[2] != NULL &&
	       r->element[2]->type == REDIS_REPLY_INTEGER;
}

int store_reply_ttl(const redisReply *r, long long *ttl_ms)
{
	if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < 0)
		return -1;
	*ttl_ms = r->integer;
	return 0;
}

/* Parses a SCAN cursor: decimal digits only, no sign, no overflow. */
static int cursor_parse(const redisReply *r, unsigned long long *cursor)
{
	unsigned long long v = 0;

	if (!is_string(r) || r->len == 0 || r->len > 20)
		return -1;
	for (size_t i = 0; i < r->len; i++) {
		unsigned d = (unsigned char)r->str[i] - '0';

		if (d > 9 || v > (~0ULL - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*cursor = v;
	return 0;
}

int store_reply_scan(const redisReply *r, unsigned long long *cursor,
                     const redisReply **pairs)
{
	const redisReply *k;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element == NULL || cursor_parse(r->element[0], cursor) < 0)
		return -1;
	k = r->element[1];
	if (k == NULL || k->type != REDIS_REPLY_ARRAY || k->elements % 2 != 0 ||
	    (k->elements > 0 && k->element == NULL))
		return -1;
	for (size_t i = 0; i < k->elements; i += 2)
		if (!is_string(k->element[i]) ||
		    store_reply_ttl(k->element[i + 1], &(long long){0}) < 0)
			return -1;
	*pairs = k;
	return (int)(k->elements / 2);
}

int store_reply_message(const redisReply *r, struct store_push_msg *m)
{
	if (!is_push(r, 3, "message") || !is_string(r->element[1]) ||
	    !is_string(r->element[2]))
		return -1;
	m->channel = r->element[1]->str;
	m->chlen = r->element[1]->len;
	m->payload = r->element[2]->str;
	m->len = r->element[2]->len;
	return 0;
}

const char *store_reply_text(const redisReply *r, char *buf, size_t cap)
{
	size_t n = 0;

	if (r == NULL ||
	    (r->type != REDIS_REPLY_ERROR && r->type != REDIS_REPLY_STATUS) ||
	    r->str == NULL) {
		snprintf(buf, cap, "(type %d)", r != NULL ? r->type : -1);
		return buf;
	}
	/* Only printable ASCII reaches a log line: the bytes are Redis's,
	 * or a stranger's. */
	for (size_t i = 0; i < r->len && n + 1 < cap; i++) {
		unsigned char ch = (unsigned char)r->str[i];

		buf[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	buf[n] = '\0';
	return buf;
}

size_t store_msg_encode(int op, unsigned ttl_s, const void *key, size_t klen,
                        char *buf, size_t cap)
{
	if (klen == 0 || klen > STORE_MSG_MAX - 5 || cap < 5 + klen)
		return 0;
	buf[0] = (char)op;
	buf[1] = (char)(ttl_s >> 24);
	buf[2] = (char)(ttl_s >> 16);
	buf[3] = (char)(ttl_s >> 8);
	buf[4] = (char)ttl_s;
	memcpy(buf + 5, key, klen);
	return 5 + klen;
}

int store_msg_decode(const void *payload, size_t len, struct store_msg *m)
{
	const unsigned char *p = payload;

	if (len < 6 || len > STORE_MSG_MAX ||
	    (p[0] != STORE_MSG_HOLD && p[0] != STORE_MSG_CLEAR))
		return -1;
	m->op = p[0];
	m->ttl_s = (unsigned)p[1] << 24 | (unsigned)p[2] << 16 |
	           (unsigned)p[3] << 8 | p[4];
	if (m->op == STORE_MSG_CLEAR)
		m->ttl_s = 0;
	else if (m->ttl_s == 0)
		return -1;
	m->key = p + 5;
	m->klen = len - 5;
	return 0;
}
