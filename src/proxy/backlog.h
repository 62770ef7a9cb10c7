/*
 * What the fleet could not tell its store while it was down (proxy/fleet.c),
 * kept to be told when it is back: the shields' refusals, clears and
 * known-good marks, so that a stale password replayed to one front end
 * during an outage counts fleet-wide afterwards instead of starting from
 * nothing, and the throttle's tokens of windows not over yet. A FIFO of
 * fixed size in which the oldest item gives way: an outage under a flood
 * of random users costs bounded memory, and the newest items are the ones
 * still worth telling. Items are the caller's fixed-size structs, copied
 * in and out. Control loop only; internal to proxy/.
 */
#ifndef EF_PROXY_BACKLOG_H
#define EF_PROXY_BACKLOG_H

#include <stdbool.h>
#include <stddef.h>

struct backlog;

/* A backlog of cap (> 0) items of size (> 0) bytes each; NULL without
 * memory. */
struct backlog *backlog_new(size_t cap, size_t size);
/* NULL is accepted. */
void backlog_free(struct backlog *b);

/* Keeps a copy of item; returns true when the oldest item was given up to
 * make room, and then copies it into given_up unless that is NULL. */
bool backlog_push(struct backlog *b, const void *item, void *given_up);
/* Moves the oldest item into out; false when there is none. */
bool backlog_pop(struct backlog *b, void *out);
size_t backlog_len(const struct backlog *b);
/* Forgets the items match(item, arg) says true of, keeping the others in
 * order; returns how many it forgot. */
size_t backlog_drop_if(struct backlog *b,
		       bool (*match)(const void *item, void *arg), void *arg);
/* Forgets every item. */
void backlog_empty(struct backlog *b);

#endif
