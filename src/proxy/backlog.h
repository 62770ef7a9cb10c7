/*
 * The fleet's news kept while its store is down (proxy/fleet.c): the
 * refusals, clears and known-good marks a front end saw then are told when
 * the store is back, so that a stale password replayed to one front end
 * during an outage counts fleet-wide afterwards, instead of the fleet
 * allowing it again from nothing. A FIFO of fixed size in which the
 * oldest news gives way: an outage under a flood of random users costs
 * bounded memory, and the newest news is what is still worth telling.
 * Control loop only; internal to proxy/.
 */
#ifndef EF_PROXY_BACKLOG_H
#define EF_PROXY_BACKLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/shields.h"

/* One piece of news and when it was seen. */
struct backlog_item {
	struct shields_event ev;
	uint64_t at; /* s (Unix) */
};

struct backlog;

/* A backlog of cap (> 0) items; NULL without memory. */
struct backlog *backlog_new(size_t cap);
/* NULL is accepted. */
void backlog_free(struct backlog *b);

/* Keeps ev, seen at at; returns true when the oldest item was given up to
 * make room. */
bool backlog_push(struct backlog *b, const struct shields_event *ev,
		  uint64_t at);
/* Moves the oldest item into *out; false when there is none. */
bool backlog_pop(struct backlog *b, struct backlog_item *out);
size_t backlog_len(const struct backlog *b);
/* Forgets every item. */
void backlog_empty(struct backlog *b);

#endif
