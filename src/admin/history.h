/*
 * The last minute of routing decisions, second by second, for the status
 * page's charts: a timer on the admin's loop reads the summed counters once
 * a second and keeps the differences in a ring. The page draws what /status
 * gives; it keeps no history of its own, so a page opened now shows the
 * whole minute at once.
 */
#ifndef EF_ADMIN_HISTORY_H
#define EF_ADMIN_HISTORY_H

#include <stdint.h>

#include "proxy/stats.h"

#define HISTORY_SECONDS 60

struct event_base;
struct evbuffer;
struct proxy;
struct history;

/* A history of p's decisions sampled on base. NULL when out of memory. */
struct history *history_new(struct event_base *base, struct proxy *p);
/* Stops sampling; NULL is accepted. */
void history_free(struct history *h);

/* Appends "decisions":{"seconds":60,"proxy":[...],...} (oldest second
 * first, the one under way left out) to b. */
void history_json(const struct history *h, struct evbuffer *b);

#endif
