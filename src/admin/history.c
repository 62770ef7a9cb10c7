#include "admin/history.h"

#include <stdbool.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "proxy/proxy.h"

struct history {
	struct proxy *p;                /* not owned */
	struct event *tick;             /* owned: once a second */
	uint64_t last[STATS_DECISIONS]; /* the counters at the last tick */
	bool primed;                    /* last holds a reading */
	/* requests per second per decision slot; slot next is the oldest */
	uint32_t ring[HISTORY_SECONDS][STATS_DECISIONS];
	unsigned next;
};

static void history_tick(evutil_socket_t fd, short what, void *arg)
{
	struct history *h = arg;
	struct stats_snapshot *snap = malloc(sizeof(*snap));

	(void)fd;
	(void)what;
	/* The snapshot is large (every status of every counter): off the
	 * stack, and skipping a second when memory is short is harmless. */
	if (snap == NULL)
		return;
	proxy_stats(h->p, snap);
	for (unsigned d = 0; d < STATS_DECISIONS; d++) {
		uint64_t now = snap->requests_decision[d];

		h->ring[h->next][d] =
		    h->primed ? (uint32_t)(now - h->last[d]) : 0;
		h->last[d] = now;
	}
	h->primed = true;
	h->next = (h->next + 1) % HISTORY_SECONDS;
	free(snap);
}

struct history *history_new(struct event_base *base, struct proxy *p)
{
	struct history *h = calloc(1, sizeof(*h));
	struct timeval sec = {1, 0};

	if (h == NULL)
		return NULL;
	h->p = p;
	h->tick = event_new(base, -1, EV_PERSIST, history_tick, h);
	if (h->tick == NULL || event_add(h->tick, &sec) != 0) {
		history_free(h);
		return NULL;
	}
	history_tick(-1, 0, h);
	return h;
}

void history_free(struct history *h)
{
	if (h == NULL)
		return;
	if (h->tick != NULL)
		event_free(h->tick);
	free(h);
}

void history_json(const struct history *h, struct evbuffer *b)
{
	evbuffer_add_printf(b, "\"decisions\":{\"seconds\":%d",
	                    HISTORY_SECONDS);
	for (unsigned d = 0; d < STATS_DECISIONS; d++) {
		evbuffer_add_printf(b, ",\"%s\":[", stats_decision_name(d));
		for (unsigned k = 0; k < HISTORY_SECONDS; k++)
			evbuffer_add_printf(
			    b, "%s%u", k ? "," : "",
			    h->ring[(h->next + k) % HISTORY_SECONDS][d]);
		evbuffer_add(b, "]", 1);
	}
	evbuffer_add(b, "}", 1);
}
