/*
 * The client connection (struct session): accept, TLS handshake, the
 * phases' timeouts, its callbacks (each an event of the request on it, see
 * txn.c, or of the connection between requests), closing.
 */
#include "proxy/session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "conf/conf.h"
#include "core/log.h"
#include "proxy/gen.h"
#include "proxy/stats.h"
#include "upstream/upstream.h"
#include "proxy/worker.h"
#include "tls/tls.h"

/* Output above this stops the producing side until it drains. */
#define SESSION_HIGH_WATER (64 * 1024)

static void client_read_cb(struct conn *c, void *arg);
static void client_write_cb(struct conn *c, void *arg);
static void client_event_cb(struct conn *c, short what, void *arg);

static void set_timeouts(struct conn *c, unsigned rd, unsigned wr)
{
	if (c != NULL)
		conn_set_timeouts(c, rd, wr);
}

const char *session_state_str(enum session_state st)
{
	static const char *const names[] = {"handshake", "idle", "active",
					    "closing"};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st]
							       : "?";
}

const char *txn_state_str(enum txn_state st)
{
	static const char *const names[] = {"none",    "head",	   "route",
					    "collect", "connect", "exchange",
					    "local"};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st]
							       : "?";
}

static const struct conf_timeouts *timeouts_of(const struct session *s)
{
	return s->g != NULL ? &s->g->conf->timeouts
			    : &s->w->gen->conf->timeouts;
}

void session_set_state(struct session *s, enum session_state state)
{
	const struct conf_timeouts *t = timeouts_of(s);

	s->state = state;
	switch (state) {
	case SESSION_HANDSHAKE:
		set_timeouts(s->client.conn, t->handshake, t->handshake);
		break;
	case SESSION_IDLE:
		set_timeouts(s->client.conn, t->idle, t->client_body);
		/* A pinned upstream idles as long as its client may. */
		set_timeouts(s->up.conn, 0, 0);
		break;
	case SESSION_ACTIVE:
		/* The request's phase sets them (txn_set_state). */
		break;
	case SESSION_CLOSING:
		set_timeouts(s->client.conn, t->client_body, t->client_body);
		break;
	}
}

void txn_set_state(struct session *s, enum txn_state state)
{
	const struct conf_timeouts *t = timeouts_of(s);
	unsigned wait_up;

	if (state != s->txn.state && log_get_level() >= LOG_L_DEBUG)
		log_debug("%s: request %s -> %s", s->client_ip,
			  txn_state_str(s->txn.state), txn_state_str(state));
	s->txn.state = state;
	/* With no request the connection's own state follows (idle or
	 * closing), set by the caller. */
	if (state == TXN_NONE)
		return;
	s->state = SESSION_ACTIVE;
	switch (state) {
	case TXN_NONE:
		break;
	case TXN_HEAD:
		set_timeouts(s->client.conn, t->client_header, t->client_body);
		break;
	case TXN_CONNECT:
		set_timeouts(s->client.conn, t->client_body, t->client_body);
		set_timeouts(s->up.conn, 0, t->upstream_connect);
		break;
	case TXN_EXCHANGE:
		/* Once the request is up, the client owes us nothing: a held
		 * Ping may keep it silent for up to an hour. */
		set_timeouts(s->client.conn,
			     s->client.body.done ? 0 : t->client_body,
			     t->client_body);
		wait_up = (s->txn.flags & TXN_F_HELD) ? t->long_poll
						       : t->upstream_response;
		if (s->txn.flags & TXN_F_RESP_HEAD)
			wait_up = t->upstream_response;
		/* A CAS owes no answer before it has the whole request; a
		 * slow upload is the client's timeout to enforce. */
		else if (!s->client.body.done)
			wait_up = 0;
		set_timeouts(s->up.conn, wait_up, t->client_body);
		break;
	case TXN_LOCAL:
	case TXN_COLLECT:
		set_timeouts(s->client.conn, t->client_body, t->client_body);
		break;
	case TXN_ROUTE:
		/* The lookup answers within its own timeout. */
		set_timeouts(s->client.conn, 0, t->client_body);
		break;
	}
}

static void client_ip_format(struct session *s, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
			  s->client_ip, sizeof(s->client_ip));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)sa)->sin6_addr,
			  s->client_ip, sizeof(s->client_ip));
	else
		str_copy(s->client_ip, sizeof(s->client_ip), STR_LIT("-"));
}

void session_accept(struct worker *w, int fd, const struct sockaddr *sa,
		    int salen)
{
	struct session *s;
	SSL *ssl;
	int one = 1;

	if (w->stopping || w->gen == NULL) {
		close(fd);
		return;
	}
	s = calloc(1, sizeof(*s));
	ssl = SSL_new(tls_server_ctx(w->gen->tls));
	if (s == NULL || ssl == NULL) {
		free(s);
		SSL_free(ssl);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->w = w;
	s->hs_gen = gen_hold(w->gen);
	s->txn.site = -1;
	s->client.s = s;
	s->up.s = s;
	s->client.peer = &s->up;
	s->up.peer = &s->client;
	client_ip_format(s, sa);
	if (!limits_admit(&w->p->limits, sa, w->gen->conf->limits.connections,
			  w->gen->conf->limits.connections_per_client,
			  &s->ticket))
		s->flags |= SESSION_F_OVERLIMIT;
	s->client.conn = conn_accept_tls(&w->loop, fd, ssl);
	if (s->client.conn == NULL) {
		limits_release(&w->p->limits, &s->ticket);
		gen_release(s->hs_gen);
		free(s);
		return;
	}
	conn_setcb(s->client.conn, client_read_cb, client_write_cb,
		   client_event_cb, s);
	conn_set_watermarks(s->client.conn, SESSION_HIGH_WATER, 0);
	worker_session_add(w, s);
	stat_add(&w->stats.client_connections, 1);
	session_set_state(s, SESSION_HANDSHAKE);
	conn_enable(s->client.conn, EV_READ | EV_WRITE);
}

/* Detaches and disposes of the upstream connection: back to the pool when
 * the exchange ended cleanly, closed otherwise. */
void session_drop_upstream(struct session *s, bool reuse)
{
	struct upconn *uc = s->uc;

	if (uc == NULL)
		return;
	s->uc = NULL;
	s->up.conn = NULL;
	if (reuse && !(s->flags & SESSION_F_PINNED))
		upstream_release(&s->w->pools, uc);
	else
		upstream_free(uc);
}

void session_close(struct session *s, enum term term)
{
	if (s->flags & SESSION_F_DEAD)
		return;
	s->flags |= SESSION_F_DEAD;
	stat_sub(&s->w->stats.client_connections, 1);
	limits_release(&s->w->p->limits, &s->ticket);
	/* A request cut short still gets its access log line. */
	txn_end(s, term);
	session_drop_upstream(s, false);
	conn_free(s->client.conn);
	s->client.conn = NULL;
	gen_release(s->hs_gen);
	s->hs_gen = NULL;
	txn_release(s);
	worker_session_dead(s->w, s);
}

/* A close we chose, with everything written: TLS says so (close_notify),
 * so the client can tell a complete answer from a cut connection and its
 * session stays resumable. */
void session_close_tls(struct session *s)
{
	SSL *ssl = s->client.conn ? conn_ssl(s->client.conn) : NULL;

	if (ssl != NULL && SSL_is_init_finished(ssl))
		SSL_shutdown(ssl);
	session_close(s, TERM_UNSET);
}

void session_close_after_flush(struct session *s)
{
	session_drop_upstream(s, false);
	session_set_state(s, SESSION_CLOSING);
	conn_disable(s->client.conn, EV_READ);
	if (conn_output_length(s->client.conn) == 0)
		session_close_tls(s);
}

static void client_read_cb(struct conn *c, void *arg)
{
	struct session *s = arg;

	switch (s->state) {
	case SESSION_IDLE:
	case SESSION_ACTIVE:
		txn_step(s, TXN_EV_CLIENT_DATA, 0);
		break;
	case SESSION_CLOSING:
		evbuffer_drain(conn_input(c),
			       evbuffer_get_length(conn_input(c)));
		break;
	case SESSION_HANDSHAKE:
		break;
	}
}

static void client_write_cb(struct conn *c, void *arg)
{
	struct session *s = arg;

	if (s->state == SESSION_CLOSING)
		session_close_tls(s);
	else if (s->state == SESSION_ACTIVE)
		txn_step(s, TXN_EV_CLIENT_DRAINED, 0);
}

static void handshake_done(struct session *s)
{
	SSL *ssl = conn_ssl(s->client.conn);

	s->sni = ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)
		     : NULL;
	/* The SNI callback has run; the certificates it chose are kept alive
	 * by OpenSSL's own references from here on. */
	gen_release(s->hs_gen);
	s->hs_gen = NULL;
	stat_add(&s->w->stats.tls_handshakes, 1);
	if (ssl != NULL && SSL_session_reused(ssl))
		stat_add(&s->w->stats.tls_resumed, 1);
	if (s->flags & SESSION_F_OVERLIMIT) {
		/* Over a cap: one answer that makes the client back off, no
		 * request read. */
		s->g = gen_hold(s->w->gen);
		s->txn.log.site = -1;
		s->txn.log.reason = "connection-limit";
		s->flags |= SESSION_F_CLOSE;
		s->client.body.done = true;
		session_respond_error(s, 503, TERM_LIMIT);
		return;
	}
	session_set_state(s, SESSION_IDLE);
}

static void client_event_cb(struct conn *c, short what, void *arg)
{
	struct session *s = arg;

	if (what & CONN_CONNECTED) {
		handshake_done(s);
		return;
	}
	if (what & CONN_TIMEOUT) {
		if (s->state == SESSION_ACTIVE)
			txn_step(s, TXN_EV_CLIENT_TIMEOUT, what);
		else
			session_close(s, (what & CONN_WRITING)
						 ? TERM_CLIENT_T_WRITE
						 : TERM_CLIENT_T_IDLE);
		return;
	}
	/* EOF or error: the client has gone; nothing can be answered. */
	if (s->state == SESSION_HANDSHAKE) {
		stat_add(&s->w->stats.tls_failures, 1);
		log_debug("%s: TLS handshake failed", s->client_ip);
	}
	session_close(s, s->state == SESSION_IDLE ? TERM_UNSET
						  : TERM_CLIENT_GONE);
}
