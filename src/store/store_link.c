/*
 * One connection to Redis: connect, handshake (AUTH, SELECT, PING), the
 * queue of commands in flight, their timeout, keepalives, and the reconnect
 * with backoff after any failure.
 *
 * Redis answers in order, so the queue is a FIFO and the oldest command is
 * the only one whose deadline matters: one timer per link serves the
 * backoff (DOWN), the handshake (HANDSHAKE) and the oldest command or the
 * next keepalive (UP). Any failure drops the connection whole: with RESP
 * there is no way to tell which answer a late byte belongs to, so a link
 * that missed one answer can never be trusted with the next.
 */
#include "store/store_int.h"

#include "core/clock.h"
#include "core/log.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEED_CHUNK 65536 /* bytes handed to the reader at a time */

enum handshake_step { STEP_AUTH, STEP_SELECT, STEP_PING };

static void link_arm(struct store_link *l, uint64_t us)
{
	struct timeval tv = {(time_t)(us / 1000000),
	                     (suseconds_t)(us % 1000000)};

	evtimer_add(l->timer, &tv);
}

static void set_up(struct store_link *l, bool up)
{
	atomic_store_explicit(&l->up, up, memory_order_relaxed);
}

/* Logs a loss once per outage: a warning for the command link (the store
 * is down), info for the subscription link (holds arrive late until it is
 * back); the next failures of the same outage at debug level. */
static void log_down(struct store_link *l, const char *why)
{
	struct store *s = l->s;

	if (l->warned) {
		log_debug("store %s: %s: %s", s->url, l->name, why);
		return;
	}
	l->warned = true;
	if (l == &s->cmd)
		log_warnx("store %s: down (%s); counting locally until it is "
		          "back",
		          s->url, why);
	else
		log_info("store %s: %s lost (%s)", s->url, l->name, why);
}

static void log_up(struct store_link *l)
{
	struct store *s = l->s;

	if (l->warned)
		log_info("store %s: %s up again", s->url, l->name);
	else if (!l->ever_up)
		log_info("store %s: %s up", s->url, l->name);
	l->warned = false;
}

/* Frees the connection and its reader; the link is DOWN afterwards. Safe
 * inside a bufferevent callback: libevent holds a reference until it
 * returns. */
static void link_drop(struct store_link *l)
{
	if (l->bev != NULL)
		bufferevent_free(l->bev);
	l->bev = NULL;
	store_reader_free(l->reader);
	l->reader = NULL;
	l->state = LINK_DOWN;
	set_up(l, false);
}

/* Fails every pending command, oldest first. The link is DOWN already, so
 * a callback that sends again is refused at once. */
static void fail_pending(struct store_link *l)
{
	struct pending *p;

	while ((p = l->head) != NULL) {
		l->head = p->next;
		l->n_pending--;
		p->cb.fn(l, &p->cb, NULL);
		free(p);
	}
	l->tail = NULL;
}

/* Drops the connection, arms the next attempt, then fails what was in
 * flight (in that order: a callback that asks for a reconnect finds one
 * scheduled). */
static void link_down(struct store_link *l, const char *why)
{
	log_down(l, why);
	link_drop(l);
	link_arm(l, (uint64_t)l->backoff_ms * 1000);
	l->backoff_ms = l->backoff_ms * 2 > STORE_BACKOFF_MAX_MS
	                    ? STORE_BACKOFF_MAX_MS
	                    : l->backoff_ms * 2;
	fail_pending(l);
}

void link_fail(struct store_link *l, const char *why)
{
	stat_add(&l->s->st.errors, 1);
	link_down(l, why);
}

static void link_timeout(struct store_link *l, const char *what)
{
	char why[96];

	stat_add(&l->s->st.timeouts, 1);
	snprintf(why, sizeof(why), "no answer to %s within %u ms", what,
	         l->s->timeout_ms);
	link_down(l, why);
}

/* Formats and writes one command, queueing fn to receive its answer; no
 * state check (the handshake uses it before the link is up). */
static int queue_command(struct store_link *l, int argc, const char **argv,
                         const size_t *lens, const struct link_cb *cb)
{
	struct pending *p = malloc(sizeof(*p));
	uint64_t now = clock_mono_us();
	char *cmd = NULL;
	int len;

	if (p == NULL)
		return -1;
	len = redisFormatCommandArgv(&cmd, argc, argv, lens);
	if (len < 0 || bufferevent_write(l->bev, cmd, (size_t)len) != 0) {
		redisFreeCommand(cmd);
		free(p);
		return -1;
	}
	redisFreeCommand(cmd);
	*p = (struct pending){NULL, *cb, now};
	if (l->tail != NULL)
		l->tail->next = p;
	else
		l->head = p;
	l->tail = p;
	/* The oldest command's deadline is the timer's, once UP. */
	if (l->n_pending++ == 0 && l->state == LINK_UP)
		link_arm(l, (uint64_t)l->s->timeout_ms * 1000);
	l->last_send_us = now;
	stat_add(&l->s->st.commands, 1);
	return 0;
}

int link_send(struct store_link *l, int argc, const char **argv,
              const size_t *lens, const struct link_cb *cb)
{
	if (l->state != LINK_UP || l->n_pending >= l->s->max_inflight ||
	    queue_command(l, argc, argv, lens, cb) < 0) {
		stat_add(&l->s->st.refused, 1);
		return -1;
	}
	return 0;
}

static void link_up(struct store_link *l)
{
	if (l->ever_up)
		stat_add(&l->s->st.reconnects, 1);
	log_up(l);
	l->ever_up = true;
	l->state = LINK_UP;
	l->backoff_ms = STORE_BACKOFF_MIN_MS;
	set_up(l, true);
	link_arm(l, (uint64_t)l->s->keepalive_ms * 1000);
	if (l->on_up != NULL)
		l->on_up(l);
}

/* The answers to AUTH and SELECT must be +OK, the PING's +PONG: only then
 * is the link up. */
static void handshake_reply(struct store_link *l, const struct link_cb *cb,
                            const redisReply *r)
{
	enum handshake_step step = (enum handshake_step)(uintptr_t)cb->arg;
	char text[80], why[128];

	if (r == NULL)
		return;
	if (step == STEP_PING && store_reply_pong(r)) {
		link_up(l);
		return;
	}
	if (step != STEP_PING && store_reply_ok(r))
		return;
	snprintf(why, sizeof(why), "%s refused: %s",
	         step == STEP_AUTH     ? "AUTH"
	         : step == STEP_SELECT ? "SELECT"
	                               : "PING",
	         store_reply_text(r, text, sizeof(text)));
	link_fail(l, why);
}

/* Pipelines the handshake: one round trip whatever it holds. */
static int handshake_send(struct store_link *l)
{
	struct store *s = l->s;
	char db[16];
	const char *auth[2] = {"AUTH", s->password};
	size_t auth_len[2] = {4, strlen(s->password)};
	const char *sel[2] = {"SELECT", db};
	size_t sel_len[2] = {6, 0};
	const char *ping[1] = {"PING"};
	size_t ping_len[1] = {4};
	const struct link_cb cb[3] = {
	    {handshake_reply, NULL, (void *)(uintptr_t)STEP_AUTH},
	    {handshake_reply, NULL, (void *)(uintptr_t)STEP_SELECT},
	    {handshake_reply, NULL, (void *)(uintptr_t)STEP_PING},
	};

	sel_len[1] = (size_t)snprintf(db, sizeof(db), "%u", s->addr.db);
	if (s->password[0] != '\0' &&
	    queue_command(l, 2, auth, auth_len, &cb[STEP_AUTH]) < 0)
		return -1;
	if (s->addr.db != 0 &&
	    queue_command(l, 2, sel, sel_len, &cb[STEP_SELECT]) < 0)
		return -1;
	return queue_command(l, 1, ping, ping_len, &cb[STEP_PING]);
}

/* Hands a reply to the pending command it answers, or to on_push when it
 * is a pub/sub message. */
static void dispatch(struct store_link *l, const redisReply *r)
{
	struct pending *p = l->head;

	if (l->on_push != NULL && l->on_push(l, r) == 0)
		return;
	if (p == NULL) {
		link_fail(l, "an answer to no command");
		return;
	}
	l->head = p->next;
	if (l->head == NULL)
		l->tail = NULL;
	l->n_pending--;
	atomic_store_explicit(&l->s->st.rtt_us, clock_mono_us() - p->sent_us,
	                      memory_order_relaxed);
	p->cb.fn(l, &p->cb, r);
	free(p);
}

/* Takes every complete reply out of the reader. Returns 0, or -1 when the
 * link failed meanwhile (the reader is gone then). */
static int read_replies(struct store_link *l)
{
	void *reply;

	for (;;) {
		if (redisReaderGetReply(l->reader, &reply) != REDIS_OK) {
			log_debug("store %s: %s: %s", l->s->url, l->name,
			          l->reader->errstr);
			link_fail(l, "a malformed or oversized reply");
			return -1;
		}
		if (reply == NULL)
			return 0;
		dispatch(l, reply);
		freeReplyObject(reply);
		if (l->state == LINK_DOWN)
			return -1;
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct store_link *l = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;

	while ((n = evbuffer_get_contiguous_space(in)) > 0) {
		if (n > FEED_CHUNK)
			n = FEED_CHUNK;
		if (store_reader_feed(
		        l->reader,
		        (const char *)evbuffer_pullup(in, (ssize_t)n), n) < 0) {
			link_fail(l, "a reply larger than allowed");
			return;
		}
		evbuffer_drain(in, n);
		if (read_replies(l) < 0)
			return;
	}
}

static void on_connected(struct store_link *l)
{
	evutil_socket_t fd = bufferevent_getfd(l->bev);
	int one = 1;

	/* Commands are small and latency-bound; keepalive probes find a
	 * peer that vanished without a word. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	if (bufferevent_enable(l->bev, EV_READ) != 0 || handshake_send(l) < 0)
		link_fail(l, "cannot start the handshake");
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct store_link *l = arg;
	char why[96];

	if (what & BEV_EVENT_CONNECTED) {
		on_connected(l);
		return;
	}
	if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed by the server");
	else
		snprintf(why, sizeof(why), "%s",
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	link_fail(l, why);
}

static void link_connect(struct store_link *l)
{
	struct store *s = l->s;

	l->state = LINK_HANDSHAKE;
	link_arm(l, (uint64_t)s->timeout_ms * 1000);
	l->bev = bufferevent_socket_new(s->base, -1, BEV_OPT_CLOSE_ON_FREE);
	l->reader = store_reader_new();
	if (l->bev == NULL || l->reader == NULL) {
		link_fail(l, "out of memory");
		return;
	}
	bufferevent_setcb(l->bev, on_read, NULL, on_event, l);
	/* Non-blocking: a refusal comes back through on_event. */
	if (bufferevent_socket_connect(l->bev, (struct sockaddr *)&s->sa,
	                               (int)s->salen) != 0)
		link_fail(l, "cannot start a connection");
}

static void keepalive_reply(struct store_link *l, const struct link_cb *cb,
                            const redisReply *r)
{
	if (r != NULL && !store_reply_pong(r))
		link_fail(l, "PING not answered by PONG");
}

/* UP: fails the link when the oldest command is overdue, PINGs it when it
 * has been idle for keepalive_ms, and re-arms for the next of both. */
static void up_tick(struct store_link *l)
{
	const char *ping[1] = {"PING"};
	size_t ping_len[1] = {4};
	uint64_t now = clock_mono_us();
	uint64_t timeout = (uint64_t)l->s->timeout_ms * 1000;
	uint64_t idle = (uint64_t)l->s->keepalive_ms * 1000;
	const struct link_cb cb = {keepalive_reply, NULL, NULL};

	if (l->head != NULL) {
		if (now - l->head->sent_us >= timeout)
			link_timeout(l, "a command");
		else
			link_arm(l, l->head->sent_us + timeout - now);
		return;
	}
	if (now - l->last_send_us < idle)
		link_arm(l, l->last_send_us + idle - now);
	else if (link_send(l, 1, ping, ping_len, &cb) < 0)
		link_fail(l, "cannot send a keepalive");
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct store_link *l = arg;

	switch (l->state) {
	case LINK_DOWN:
		link_connect(l);
		break;
	case LINK_HANDSHAKE:
		link_timeout(l, "the connect and handshake");
		break;
	case LINK_UP:
		up_tick(l);
		break;
	}
}

int link_init(struct store_link *l, struct store *s, const char *name)
{
	*l = (struct store_link){.s = s, .name = name, .state = LINK_DOWN};
	l->backoff_ms = STORE_BACKOFF_MIN_MS;
	l->timer = evtimer_new(s->base, on_timer, l);
	return l->timer != NULL ? 0 : -1;
}

void link_start(struct store_link *l)
{
	if (l->timer != NULL && l->state == LINK_DOWN &&
	    !evtimer_pending(l->timer, NULL))
		link_arm(l, 0);
}

void link_close(struct store_link *l)
{
	link_drop(l);
	if (l->timer != NULL)
		event_free(l->timer);
	l->timer = NULL;
	fail_pending(l);
}
