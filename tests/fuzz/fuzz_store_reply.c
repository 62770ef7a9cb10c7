/*
 * libFuzzer harness of the store's reply handling: arbitrary bytes go through
 * the bounded RESP reader (in two feeds, so that replies cut anywhere are
 * exercised), and every reply it yields through each interpretation the
 * store uses (store_reply.h). Besides memory safety it checks what the store
 * relies on: each function says yes only to the type it reads, results point
 * into the reply, a reader that accepted bytes holds no more than its bound,
 * log text is printable, and a decoded message encodes back to itself. The
 * seeds are replies captured from redis-server 7 (tests/fuzz/corpus/
 * store_reply/).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msg(const void *payload, size_t len)
{
	struct store_msg m;
	char again[STORE_MSG_MAX];
	size_t n;

	if (store_msg_decode(payload, len, &m) < 0)
		return;
	if ((m.op != STORE_MSG_HOLD && m.op != STORE_MSG_CLEAR) ||
	    m.klen == 0 || m.klen > STORE_MSG_MAX - 5 ||
	    (const char *)m.key != (const char *)payload + 5 ||
	    (m.op == STORE_MSG_HOLD) != (m.ttl_s != 0))
		abort();
	n = store_msg_encode(m.op, m.ttl_s, m.key, m.klen, again,
	                     sizeof(again));
	if (n != len || again[0] != ((const char *)payload)[0] ||
	    memcmp(again + 5, m.key, m.klen) != 0 ||
	    (m.op == STORE_MSG_HOLD && memcmp(again, payload, len) != 0))
		abort();
}

static void check_scan(const redisReply *r)
{
	unsigned long long cursor;
	const redisReply *pairs = NULL;
	int n = store_reply_scan(r, &cursor, &pairs);

	if (n < 0)
		return;
	if (r->type != REDIS_REPLY_ARRAY || pairs != r->element[1] ||
	    pairs->elements != 2 * (size_t)n)
		abort();
	for (int i = 0; i < n; i++)
		if (pairs->element[2 * i]->type != REDIS_REPLY_STRING ||
		    pairs->element[2 * i + 1]->integer < 0)
			abort();
}

static void check_reply(const redisReply *r)
{
	struct store_push_msg pm;
	long long v;
	char text[32];

	if ((store_reply_total(r, &v) == 0) !=
	        (r->type == REDIS_REPLY_INTEGER) ||
	    (store_reply_ttl(r, &v) == 0 && v < 0) ||
	    (store_reply_ok(r) && r->type != REDIS_REPLY_STATUS) ||
	    (store_reply_subscribed(r) && r->type != REDIS_REPLY_ARRAY))
		abort();
	(void)store_reply_pong(r);
	check_scan(r);
	if (store_reply_message(r, &pm) == 0) {
		if (pm.channel != r->element[1]->str ||
		    pm.chlen != r->element[1]->len ||
		    pm.payload != r->element[2]->str)
			abort();
		check_msg(pm.payload, pm.len);
	}
	store_reply_text(r, text, sizeof(text));
	for (size_t i = 0; text[i] != '\0'; i++)
		if (i >= sizeof(text) - 1 || text[i] < 0x20 || text[i] > 0x7e)
			abort();
	if (r->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i < r->elements; i++)
			check_reply(r->element[i]);
}

/* Takes every complete reply out of rd. Returns -1 once rd failed. */
static int drain(redisReader *rd)
{
	void *reply;

	for (;;) {
		if (redisReaderGetReply(rd, &reply) != REDIS_OK)
			return -1;
		if (reply == NULL)
			return 0;
		check_reply(reply);
		freeReplyObject(reply);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	redisReader *rd = store_reader_new();
	size_t half = size / 2;

	if (rd == NULL)
		return 0;
	check_msg(data, size);
	if (store_reader_feed(rd, (const char *)data, half) == 0 &&
	    rd->len - rd->pos <= STORE_REPLY_MAX_BYTES && drain(rd) == 0 &&
	    store_reader_feed(rd, (const char *)data + half, size - half) == 0)
		drain(rd);
	store_reader_free(rd);
	return 0;
}
