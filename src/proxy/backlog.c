/*
 * A ring: head is the oldest item, len the items kept after it.
 */
#include "proxy/backlog.h"

#include <stdlib.h>

struct backlog {
	struct backlog_item *items; /* owned: cap of them */
	size_t cap;
	size_t head;
	size_t len;
};

struct backlog *backlog_new(size_t cap)
{
	struct backlog *b;

	if (cap == 0)
		return NULL;
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	b->items = calloc(cap, sizeof(*b->items));
	if (b->items == NULL) {
		free(b);
		return NULL;
	}
	b->cap = cap;
	return b;
}

void backlog_free(struct backlog *b)
{
	if (b == NULL)
		return;
	free(b->items);
	free(b);
}

bool backlog_push(struct backlog *b, const struct shields_event *ev,
		  uint64_t at)
{
	bool gave_up = b->len == b->cap;

	if (gave_up) {
		b->head = (b->head + 1) % b->cap;
		b->len--;
	}
	b->items[(b->head + b->len) % b->cap] =
	    (struct backlog_item){.ev = *ev, .at = at};
	b->len++;
	return gave_up;
}

bool backlog_pop(struct backlog *b, struct backlog_item *out)
{
	if (b->len == 0)
		return false;
	*out = b->items[b->head];
	b->head = (b->head + 1) % b->cap;
	b->len--;
	return true;
}

size_t backlog_len(const struct backlog *b)
{
	return b->len;
}

void backlog_empty(struct backlog *b)
{
	b->head = 0;
	b->len = 0;
}
