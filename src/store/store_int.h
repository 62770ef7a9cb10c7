/*
 * Inside the store: a link is one connection to Redis with its queue of
 * commands waiting for an answer, its handshake, timeouts and reconnects
 * (store_link.c); the store owns two links and the subscriptions (store.c);
 * the commands are built and answered in store_cmd.c and store_sub.c.
 */
#ifndef EF_STORE_STORE_INT_H
#define EF_STORE_STORE_INT_H

#include "core/stat.h"
#include "store/store.h"
#include "store/store_reply.h"

#include <stdatomic.h>
#include <sys/socket.h>

struct bufferevent;
struct event;
struct store_link;

struct link_cb;

/* Answers one command: r is the reply (checked by the callee), or NULL when
 * the command failed (timeout, connection lost, store freed). Called from
 * the loop only, with the link in a state where sending is allowed again
 * or refused at once. */
typedef void (*link_reply_fn)(struct store_link *l, const struct link_cb *cb,
                              const redisReply *r);

/* Who receives an answer: the store's handler, and what it passes on. */
struct link_cb {
	link_reply_fn fn;
	void (*user)(void); /* the caller's callback, cast back by fn; or
	                       NULL */
	void *arg;          /* user's argument, or fn's own */
};

/* One command waiting for its answer, oldest first. */
struct pending {
	struct pending *next; /* owned by the queue */
	struct link_cb cb;
	uint64_t sent_us; /* monotonic */
};

enum link_state {
	LINK_DOWN,      /* no socket; the timer is the next attempt (or idle
	                   for a subscription link without channels) */
	LINK_HANDSHAKE, /* connecting, then AUTH/SELECT/PING in flight; only
	                   handshake commands are queued; the timer bounds it */
	LINK_UP,        /* the PING was answered; commands flow; the timer
	                   watches the oldest pending command and keepalives */
};

struct store_link {
	struct store *s;  /* the owner */
	const char *name; /* "commands" or "subscriptions", for logs */
	enum link_state state;
	struct bufferevent *bev;     /* owned; NULL while DOWN */
	redisReader *reader;         /* owned; NULL while DOWN */
	struct event *timer;         /* owned */
	struct pending *head, *tail; /* owned */
	unsigned n_pending;
	unsigned backoff_ms;   /* wait before the next attempt */
	uint64_t last_send_us; /* for keepalives */
	bool ever_up;          /* reconnects count from the second "up" */
	bool warned;           /* the loss was logged; log the return */
	_Atomic bool up;       /* state == LINK_UP, for other threads */
	/* Called when the link comes up (store.c subscribes there). */
	void (*on_up)(struct store_link *l);
	/* Offered every reply first: returns 0 when it took it (a pub/sub
	 * message), -1 when the reply answers the oldest command. NULL:
	 * every reply answers a command. */
	int (*on_push)(struct store_link *l, const redisReply *r);
};

/* One channel subscribed to. */
struct store_sub {
	char channel[STORE_PREFIX_MAX + STORE_CHANNEL_MAX]; /* prefixed */
	size_t chlen;
	store_msg_cb cb;
	void *arg; /* cb's */
};

struct store {
	struct event_base *base; /* not owned */
	struct store_addr addr;
	struct sockaddr_storage sa; /* resolved once in store_new */
	socklen_t salen;
	char url[STORE_HOST_MAX + 32];     /* for logs: redis://host:port/db */
	char password[STORE_PASSWORD_MAX]; /* "" for none; wiped in free */
	char prefix[STORE_PREFIX_MAX + 1];
	size_t prefix_len;
	unsigned timeout_ms;
	unsigned max_inflight;
	unsigned keepalive_ms;
	struct store_link cmd; /* commands */
	struct store_link sub; /* SUBSCRIBE, then messages */
	struct store_sub subs[STORE_SUBS_MAX];
	unsigned n_subs;
	struct {
		stat_t commands, errors, timeouts, refused, reconnects,
		    messages, rtt_us;
	} st;
};

/* store_link.c */

/* Sets l up as a link of s, DOWN, with its timer on s->base. Returns 0 or
 * -1 (out of memory). */
int link_init(struct store_link *l, struct store *s, const char *name);
/* Closes l and fails its pending commands (fn with NULL). */
void link_close(struct store_link *l);
/* Starts connecting from the loop now, unless l is already up, on its way,
 * or waiting out a backoff. */
void link_start(struct store_link *l);
/* Sends argv[0..argc) on an UP link; cb->fn(l, cb, reply) follows from the
 * loop. Returns 0, or -1 at once (not up, too many in flight, out of
 * memory) without calling it. */
int link_send(struct store_link *l, int argc, const char **argv,
              const size_t *lens, const struct link_cb *cb);
/* Drops l's connection for why (logged once per outage), fails its pending
 * commands and schedules the next attempt. */
void link_fail(struct store_link *l, const char *why);

/* store_cmd.c */

/* Builds prefix + part[0..len) into buf (cap bytes). Returns the length,
 * or 0 when part is empty or it does not fit. */
size_t store_name(const struct store *s, const void *part, size_t len,
                  char *buf, size_t cap);

/* store_sub.c */

/* Sends SUBSCRIBE for every channel of s (the link just came up). */
void store_sub_on_up(struct store_link *l);
/* Delivers a pub/sub message to its channel's callback. */
int store_sub_on_push(struct store_link *l, const redisReply *r);

#endif
