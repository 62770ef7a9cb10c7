/*
 * A ring: head is the oldest item, len the items kept from it on.
 */
#include "proxy/backlog.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct backlog {
	unsigned char *items; /* owned: cap items of size bytes */
	size_t cap;
	size_t size;
	size_t head;
	size_t len;
};

/* The i-th item from the oldest. */
static unsigned char *slot(const struct backlog *b, size_t i)
{
	return b->items + (b->head + i) % b->cap * b->size;
}

struct backlog *backlog_new(size_t cap, size_t size)
{
	struct backlog *b;

	if (cap == 0 || size == 0 || cap > SIZE_MAX / size)
		return NULL;
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	b->items = calloc(cap, size);
	if (b->items == NULL) {
		free(b);
		return NULL;
	}
	b->cap = cap;
	b->size = size;
	return b;
}

void backlog_free(struct backlog *b)
{
	if (b == NULL)
		return;
	free(b->items);
	free(b);
}

bool backlog_push(struct backlog *b, const void *item, void *given_up)
{
	bool gave_up = b->len == b->cap;

	if (gave_up) {
		if (given_up != NULL)
			memcpy(given_up, slot(b, 0), b->size);
		b->head = (b->head + 1) % b->cap;
		b->len--;
	}
	memcpy(slot(b, b->len), item, b->size);
	b->len++;
	return gave_up;
}

bool backlog_pop(struct backlog *b, void *out)
{
	if (b->len == 0)
		return false;
	memcpy(out, slot(b, 0), b->size);
	b->head = (b->head + 1) % b->cap;
	b->len--;
	return true;
}

size_t backlog_len(const struct backlog *b)
{
	return b->len;
}

size_t backlog_drop_if(struct backlog *b,
		       bool (*match)(const void *item, void *arg), void *arg)
{
	size_t kept = 0;

	for (size_t i = 0; i < b->len; i++) {
		unsigned char *from = slot(b, i);

		if (match(from, arg))
			continue;
		if (kept != i)
			memcpy(slot(b, kept), from, b->size);
		kept++;
	}
	kept = b->len - kept;
	b->len -= kept;
	return kept;
}

void backlog_empty(struct backlog *b)
{
	b->head = 0;
	b->len = 0;
}
