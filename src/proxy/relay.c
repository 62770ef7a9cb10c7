/*
 * Proxying one request: the forwarded head, bodies streamed both ways with
 * back-pressure, the response head and its framing, upstream failures.
 * One body relay serves both directions; the side tells which.
 */
#include "proxy/session.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "conf/conf.h"
#include "core/log.h"
#include "proxy/forward.h"
#include "proxy/gen.h"
#include "proxy/stats.h"
#include "upstream/upstream.h"
#include "proxy/worker.h"

/* A side's output above this pauses reading from its peer. */
#define RELAY_HIGH_WATER (64 * 1024)
/* ... and reading resumes once it drains below this. */
#define RELAY_LOW_WATER (16 * 1024)

/* The head towards the CAS. fixed_len >= 0: the body was collected whole
 * (and de-chunked), so it goes up with that Content-Length instead of the
 * client's framing. */
static size_t build_request_head(struct session *s,
				 const struct http_request *req,
				 const struct gen_site *gs, int64_t fixed_len)
{
	struct forward_req fr = {
		.proxy_path = gs->proxy_path,
		.default_host = gs->cas[0].host,
		.client_ip = s->client_ip,
		.fixed_len = fixed_len,
	};

	return forward_request_head(s->w->scratch, sizeof(s->w->scratch), req,
				    &fr);
}

static size_t build_response_head(struct session *s,
				  const struct http_response *resp)
{
	struct forward_resp fr = {
		.dechunk = s->up.body.dechunk,
		.close = (s->flags & SESSION_F_CLOSE) != 0,
		.http10 = (s->flags & SESSION_F_HTTP10) != 0,
		.hsts = s->g->hsts[0] ? s->g->hsts : NULL,
	};

	return forward_response_head(s->w->scratch, sizeof(s->w->scratch),
				     resp, &fr);
}

/* Moves (or drops, with out == NULL) n bytes from in to out. */
static void move_bytes(struct evbuffer *in, struct evbuffer *out, size_t n)
{
	if (n == 0)
		return;
	if (out != NULL)
		evbuffer_remove_buffer(in, out, n);
	else
		evbuffer_drain(in, n);
}

/* Walks a chunked body through the first chain of in at a time, so no byte
 * is copied twice. */
static int relay_chunked(struct body *b, struct evbuffer *in,
			 struct evbuffer *out, uint64_t *moved)
{
	while (!b->done && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		size_t used, off, dlen;
		enum http_chunk_result r;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		r = http_chunked_step(&b->ch, &http_default_limits,
				      v.iov_base, v.iov_len, &used, &off,
				      &dlen);
		if (r == HTTP_CHUNK_ERROR)
			return -1;
		if (r == HTTP_CHUNK_DONE)
			b->done = true;
		*moved += used;
		if (!b->dechunk) {
			move_bytes(in, out, used);
			continue;
		}
		if (r == HTTP_CHUNK_DATA) {
			evbuffer_drain(in, off);
			move_bytes(in, out, dlen);
			evbuffer_drain(in, used - off - dlen);
		} else {
			evbuffer_drain(in, used);
		}
	}
	return 0;
}

static int body_move(struct side *from, struct evbuffer *out);

int relay_body(struct side *from)
{
	struct session *s = from->s;
	struct evbuffer *out = NULL;
	int r;

	if (from->peer->conn != NULL &&
	    !(from == &s->client && (s->txn.flags & TXN_F_DISCARD)))
		out = conn_output(from->peer->conn);
	r = body_move(from, out);
	conn_kick(from->conn);
	return r;
}

int relay_body_into(struct side *from, struct evbuffer *out)
{
	int r = body_move(from, out);

	conn_kick(from->conn);
	return r;
}

/* Moves what from's input holds of its body into out (NULL: dropped). */
static int body_move(struct side *from, struct evbuffer *out)
{
	struct body *b = &from->body;
	struct evbuffer *in = conn_input(from->conn);
	size_t n;

	switch (b->framing) {
	case HTTP_BODY_NONE:
		b->done = true;
		return 0;
	case HTTP_BODY_LENGTH:
		n = evbuffer_get_length(in);
		if (n > b->left)
			n = (size_t)b->left;
		move_bytes(in, out, n);
		b->left -= n;
		from->bytes += n;
		b->done = b->left == 0;
		return 0;
	case HTTP_BODY_CHUNKED:
		return relay_chunked(b, in, out, &from->bytes);
	case HTTP_BODY_EOF:
		n = evbuffer_get_length(in);
		move_bytes(in, out, n);
		from->bytes += n;
		return 0;
	}
	return 0;
}

/* Back-pressure: stop reading from a side whose peer has too much queued. */
static void throttle(struct side *from)
{
	struct conn *to = from->peer->conn;

	if (to != NULL && conn_output_length(to) >
				  RELAY_HIGH_WATER)
		conn_disable(from->conn, EV_READ);
}

static void up_read_cb(struct conn *c, void *arg);
static void up_write_cb(struct conn *c, void *arg);
static void up_event_cb(struct conn *c, short what, void *arg);

static void attach_upstream(struct session *s, struct upconn *uc)
{
	s->uc = uc;
	s->up.conn = uc->conn;
	conn_setcb(uc->conn, up_read_cb, up_write_cb, up_event_cb, s);
	conn_set_watermarks(uc->conn, RELAY_HIGH_WATER, RELAY_LOW_WATER);
	str_copy(s->txn.log.upstream, sizeof(s->txn.log.upstream), str_from(uc->addr));
}

/* Finds a connection for the current request, round-robin over the site's
 * CAS from the worker's cursor: an idle one, else a new one to an up
 * member. */
static struct upconn *pick_upstream(struct session *s, bool *pooled)
{
	struct worker *w = s->w;
	const struct gen_site *gs = &s->g->sites[s->txn.site];
	unsigned start = w->rr;

	for (unsigned k = 0; k < gs->n_cas; k++) {
		unsigned i = (start + k) % gs->n_cas;
		const struct cas_target *t = &gs->cas[i];
		struct upconn *uc;

		w->rr = i + 1;
		uc = upstream_take(&w->pools, t);
		*pooled = uc != NULL;
		if (uc == NULL)
			uc = upstream_connect(&w->pools, s->g->client_ctx, t);
		if (uc != NULL)
			return uc;
	}
	return NULL;
}

/* Connect attempts at one site before its fallback: each CAS once, a lone
 * CAS twice (a refused connect may be a restart). */
static unsigned site_attempts(const struct gen_site *gs)
{
	return gs->n_cas > 1 ? gs->n_cas : 2;
}

/* The head queued for one site's CAS goes to another's: of what easfront
 * wrote, only the request line's proxy_path names the site (the Host it
 * adds for an HTTP/1.0 client without one stays: the CAS ignores it). */
static void readdress_head(struct evbuffer *out, struct str from,
			   struct str to)
{
	struct evbuffer_ptr eol = evbuffer_search_eol(out, NULL, NULL,
						      EVBUFFER_EOL_CRLF_STRICT);
	struct evbuffer *line;
	const char *p, *sp;
	size_t len, head;

	if (str_eq(from, to) || eol.pos < 0)
		return;
	len = (size_t)eol.pos;
	p = (const char *)evbuffer_pullup(out, (ssize_t)len);
	sp = memchr(p, ' ', len);
	if (sp == NULL)
		return;
	head = (size_t)(sp - p) + 1; /* the method and its SP */
	if (!str_prefix_ci((struct str){p + head, len - head}, from))
		return;
	line = evbuffer_new();
	if (line == NULL)
		return;
	evbuffer_add(line, p, head);
	evbuffer_add(line, to.p, to.len);
	evbuffer_add(line, p + head + from.len, len - head - from.len);
	evbuffer_drain(out, len);
	evbuffer_prepend_buffer(out, line);
	evbuffer_free(line);
}

/*
 * Every CAS of the request's site failed to connect and nothing was sent:
 * the request goes where the users of a down site go (its fallback, proxied,
 * never redirected), at once rather than after the health checks agree.
 * queued (may be NULL) holds the head already built for the old site.
 * Returns false when no site is left to try.
 */
static bool fall_back(struct session *s, struct evbuffer *queued)
{
	const struct conf *c = s->g->conf;
	unsigned char down[SESSION_MAX_SITES];
	int next;

	if (c->n_sites > SESSION_MAX_SITES)
		return false;
	s->txn.failed_sites |= UINT64_C(1) << s->txn.site;
	for (unsigned i = 0; i < c->n_sites; i++)
		down[i] = gen_site_down(s->g, (int)i) ||
			  (s->txn.failed_sites & (UINT64_C(1) << i));
	next = route_fallback(c, down, s->txn.site, NULL);
	if (next < 0)
		return false;
	log_debug("site %s: no CAS took the connection; trying %s",
		  c->sites[s->txn.site].name, c->sites[next].name);
	if (queued != NULL)
		readdress_head(queued, s->g->sites[s->txn.site].proxy_path,
			       s->g->sites[next].proxy_path);
	s->txn.site = next;
	s->txn.tried = 0;
	s->txn.log.site = next;
	s->txn.log.decision = "proxy";
	s->txn.log.reason = "fallback";
	return true;
}

/* Connects, or reconnects after a failed connect (nothing was sent, so a
 * retry cannot duplicate a command): the site's other CAS, then its
 * fallback. The queued request bytes are carried over. Returns -1 when no
 * CAS is left to try. */
static int connect_upstream(struct session *s)
{
	struct evbuffer *queued = NULL;
	struct upconn *old = s->uc, *uc = NULL;
	bool pooled = false;

	if (old != NULL && !(s->txn.flags & TXN_F_LOCAL_FAIL))
		upstream_failed(old);
	s->txn.flags &= ~TXN_F_LOCAL_FAIL;
	if (old != NULL)
		queued = conn_output(old->conn);
	while (uc == NULL) {
		if (s->txn.tried < site_attempts(&s->g->sites[s->txn.site])) {
			s->txn.tried++;
			uc = pick_upstream(s, &pooled);
		} else if (!fall_back(s, queued)) {
			return -1;
		}
	}
	if (old != NULL) {
		/* Nothing reached the old CAS: it never connected. */
		evbuffer_add_buffer(conn_output(uc->conn), queued);
		s->uc = NULL;
		s->up.conn = NULL;
		upstream_free(old);
	}
	attach_upstream(s, uc);
	conn_enable(uc->conn, EV_READ | EV_WRITE);
	if (pooled)
		s->txn.flags |= TXN_F_UP_POOLED;
	else
		s->txn.flags &= ~TXN_F_UP_POOLED;
	if (pooled)
		relay_upstream_ready(s);
	else
		txn_set_state(s, TXN_CONNECT);
	return 0;
}

void relay_upstream_ready(struct session *s)
{
	s->txn.log.t_connected = conn_loop_now_us(&s->w->loop);
	s->txn.flags |= TXN_F_REQ_SENT;
	session_held_begin(s);
	txn_set_state(s, TXN_EXCHANGE);
}

/* A pooled connection may have died in the instant before it was reused.
 * Only a request that can safely run twice (no body, a method without side
 * effects) keeps its head to be sent again on a new connection. */
static void keep_for_replay(struct session *s, const struct http_request *req,
			    size_t n)
{
	bool safe = req->method == HTTP_M_OPTIONS ||
		    req->method == HTTP_M_GET || req->method == HTTP_M_HEAD;

	if (!(s->txn.flags & TXN_F_UP_POOLED) || !safe ||
	    req->framing != HTTP_BODY_NONE)
		return;
	s->txn.replay = evbuffer_new();
	if (s->txn.replay != NULL)
		evbuffer_add(s->txn.replay, s->w->scratch, n);
}

/* The CAS answered something: the head will not be sent again. */
static void drop_replay(struct session *s)
{
	if (s->txn.replay != NULL) {
		evbuffer_free(s->txn.replay);
		s->txn.replay = NULL;
	}
}

/* The pooled connection died before a single response byte: send the kept
 * head once more over a new connection. Returns false when there is nothing
 * to replay or no connection to be had. */
static bool replay_on_new_connection(struct session *s)
{
	struct evbuffer *head = s->txn.replay;
	int site = s->txn.site;

	if (head == NULL || (s->txn.flags & TXN_F_RESP_HEAD))
		return false;
	s->txn.replay = NULL;
	log_debug("upstream %s: pooled connection was closed; sending again",
		  s->txn.log.upstream);
	/* A connection the CAS closed while idle is no mark against it. */
	upstream_free(s->uc);
	s->uc = NULL;
	s->up.conn = NULL;
	s->txn.tried = 0;
	if (connect_upstream(s) != 0) {
		evbuffer_free(head);
		return false;
	}
	if (s->txn.site != site)
		readdress_head(head, s->g->sites[site].proxy_path,
			       s->g->sites[s->txn.site].proxy_path);
	evbuffer_add_buffer(conn_output(s->up.conn), head);
	evbuffer_free(head);
	return true;
}

void relay_start(struct session *s, const struct http_request *req, int site)
{
	relay_start_with_body(s, req, site, NULL);
}

void relay_start_with_body(struct session *s, const struct http_request *req,
			   int site, struct evbuffer *body)
{
	int64_t fixed = body ? (int64_t)evbuffer_get_length(body) : -1;
	size_t n;

	s->txn.site = site;
	s->txn.log.site = site;
	n = build_request_head(s, req, &s->g->sites[site], fixed);
	if (n == 0) {
		s->flags |= SESSION_F_CLOSE;
		session_respond_error(s, 431, TERM_LOCAL);
		return;
	}
	if (s->uc == NULL) {
		/* Queue the head in a fresh connection's output; it leaves when
		 * the connect completes. */
		if (connect_upstream(s) != 0) {
			session_respond_error(s, 503, TERM_CAS_CONNECT);
			return;
		}
		/* No CAS of the site could even be asked: its fallback's. */
		if (s->txn.site != site)
			n = build_request_head(s, req, &s->g->sites[s->txn.site],
					       fixed);
	} else {
		conn_setcb(s->uc->conn, up_read_cb, up_write_cb, up_event_cb, s);
		relay_upstream_ready(s);
	}
	evbuffer_add(conn_output(s->up.conn), s->w->scratch, n);
	if (body != NULL) {
		/* The client's body was read whole before the decision. */
		evbuffer_add_buffer(conn_output(s->up.conn), body);
		s->client.body.done = true;
		return;
	}
	keep_for_replay(s, req, n);
	if ((req->flags & HTTP_F_EXPECT_100) && !s->client.body.done &&
	    !(s->flags & SESSION_F_HTTP10))
		conn_write(s->client.conn, "HTTP/1.1 100 Continue\r\n\r\n",
			   25);
}

/* The response is complete: hand the connection back and end the request,
 * unless the client is still sending a body nobody wants any more. */
static void response_done(struct session *s, bool up_keep)
{
	if (!s->client.body.done)
		s->flags |= SESSION_F_CLOSE;
	else if (up_keep)
		s->txn.flags |= TXN_F_UP_REUSE;
	if (s->txn.log.term == TERM_UNSET)
		s->txn.log.term = TERM_OK;
	txn_done(s);
}

/* A failure of the CAS: an error response when the client has seen nothing
 * yet, else the client connection is cut, as the response already is. */
static void fail_exchange(struct session *s, unsigned status,
			    enum term term)
{
	if (s->txn.flags & TXN_F_RESP_HEAD) {
		session_close(s, term);
		return;
	}
	s->flags |= SESSION_F_CLOSE;
	session_respond_error(s, status, term);
}

static void forward_interim(struct session *s, const char *buf, size_t len)
{
	/* 100 Continue was ours to send; other 1xx go to HTTP/1.1 clients. */
	if (s->w->resp.status != 100 && !(s->flags & SESSION_F_HTTP10))
		conn_write(s->client.conn, buf, len);
}

/* Looks for NTLM or Negotiate among the CAS's challenges: from then on the
 * connection is authenticated, not the request, so it is pinned. */
static bool connection_auth(const struct http_response *resp)
{
	for (unsigned i = 0; i < resp->nheaders; i++) {
		const struct http_header *h = &resp->headers[i];

		if (str_eq_ci_lit(h->name, "WWW-Authenticate") &&
		    (str_prefix_ci(h->value, STR_LIT("NTLM")) ||
		     str_prefix_ci(h->value, STR_LIT("Negotiate"))))
			return true;
	}
	return false;
}

/* Parses response heads from the CAS until a final one is forwarded.
 * Returns 1 when the final head went out, 0 for more input, -1 when the
 * session was failed. */
static int read_response_head(struct session *s)
{
	struct evbuffer *in = conn_input(s->up.conn);
	struct http_response *resp = &s->w->resp;

	drop_replay(s);
	for (;;) {
		size_t avail = evbuffer_get_length(in);
		size_t want = avail < http_default_limits.max_head + 1
				      ? avail
				      : http_default_limits.max_head + 1;
		unsigned status = 502;
		const char *buf = (const char *)evbuffer_pullup(in,
								(ssize_t)want);
		int r = avail ? http_response_parse(buf, want,
						    &http_default_limits,
						    s->txn.method, resp, &status)
			      : 0;
		size_t n;

		if (r == 0)
			return 0;
		if (r < 0 || resp->status == 101) {
			log_debug("upstream %s: malformed response (%s)",
				  s->txn.log.upstream,
				  resp->error ? resp->error : "syntax");
			fail_exchange(s, 502, TERM_CAS_HEAD);
			return -1;
		}
		if (s->txn.log.t_first == 0)
			s->txn.log.t_first = conn_loop_now_us(&s->w->loop);
		if (resp->status < 200) {
			forward_interim(s, buf, (size_t)r);
			evbuffer_drain(in, (size_t)r);
			continue;
		}
		s->up.body.framing = resp->framing;
		s->up.body.left = resp->content_length;
		s->up.body.dechunk = resp->framing == HTTP_BODY_CHUNKED &&
				     (s->flags & SESSION_F_HTTP10);
		if (resp->framing == HTTP_BODY_EOF || s->up.body.dechunk)
			s->flags |= SESSION_F_CLOSE;
		if (connection_auth(resp))
			s->flags |= SESSION_F_PINNED;
		n = build_response_head(s, resp);
		if (n == 0) {
			fail_exchange(s, 502, TERM_CAS_HEAD);
			return -1;
		}
		s->txn.log.status = resp->status;
		screen_feed(s, resp->status);
		s->up.body.done = resp->framing == HTTP_BODY_NONE ||
				  (resp->framing == HTTP_BODY_LENGTH &&
				   resp->content_length == 0);
		s->txn.log.bytes_out += n;
		conn_write(s->client.conn, s->w->scratch, n);
		s->txn.flags |= TXN_F_RESP_HEAD;
		session_held_end(s);
		if (resp->flags & HTTP_F_KEEP_ALIVE &&
		    resp->framing != HTTP_BODY_EOF)
			s->txn.flags |= TXN_F_UP_REUSE;
		evbuffer_drain(in, (size_t)r);
		conn_kick(s->up.conn);
		txn_set_state(s, TXN_EXCHANGE);
		return 1;
	}
}

/* The upstream connection's callbacks: each is an event of the request's
 * (txn_step). */
static void up_read_cb(struct conn *c, void *arg)
{
	txn_step(arg, TXN_EV_UP_DATA, 0);
}

static void up_write_cb(struct conn *c, void *arg)
{
	txn_step(arg, TXN_EV_UP_DRAINED, 0);
}

static void up_event_cb(struct conn *c, short what, void *arg)
{
	txn_step(arg, TXN_EV_UP_EVENT, what);
}

void relay_up_read(struct session *s)
{
	struct conn *c = s->up.conn;
	bool keep;

	if (!(s->txn.flags & TXN_F_RESP_HEAD) && read_response_head(s) <= 0)
		return;
	if (relay_body(&s->up) != 0) {
		session_close(s, TERM_CAS_DATA);
		return;
	}
	throttle(&s->up);
	if (!s->up.body.done)
		return;
	keep = (s->txn.flags & TXN_F_UP_REUSE) &&
	       evbuffer_get_length(conn_input(c)) == 0;
	s->txn.flags &= ~TXN_F_UP_REUSE;
	response_done(s, keep);
}

void relay_up_drained(struct session *s)
{
	/* The CAS took what was queued: let the client's body flow again. */
	if (s->client.conn != NULL && !s->client.body.done) {
		conn_enable(s->client.conn, EV_READ);
		conn_kick(s->client.conn);
	}
}

static void up_timeout(struct session *s, short what)
{
	if (s->txn.state == TXN_CONNECT) {
		log_debug("upstream %s: connect timed out", s->txn.log.upstream);
		if (connect_upstream(s) == 0)
			return;
		fail_exchange(s, 503, TERM_CAS_T_CONNECT);
		return;
	}
	/* A CAS silent past the ordinary timeout counts against its health;
	 * a held Ping's silence is the protocol working. */
	if (!(s->txn.flags & (TXN_F_HELD | TXN_F_RESP_HEAD)) && s->uc)
		upstream_failed(s->uc);
	fail_exchange(s, 504,
		      (s->txn.flags & TXN_F_RESP_HEAD) ? TERM_CAS_T_DATA
							: TERM_CAS_T_HEAD);
}

void relay_up_event(struct session *s, short what)
{
	struct conn *c = s->up.conn;

	if (what & CONN_CONNECTED) {
		relay_upstream_ready(s);
		return;
	}
	if (what & CONN_TIMEOUT) {
		up_timeout(s, what);
		return;
	}
	if (s->txn.state == TXN_CONNECT) {
		int err = conn_errno(c);

		/* Out of ports or descriptors here: no mark against the CAS. */
		if (err == EADDRNOTAVAIL || err == EMFILE || err == ENFILE ||
		    err == ENOBUFS || err == ENOMEM)
			s->txn.flags |= TXN_F_LOCAL_FAIL;
		stat_add(&s->w->stats.upstream_connect_failures, 1);
		log_debug("upstream %s: connect failed", s->txn.log.upstream);
		if (connect_upstream(s) == 0)
			return;
		fail_exchange(s, 503, TERM_CAS_CONNECT);
		return;
	}
	if (replay_on_new_connection(s))
		return;
	if ((what & CONN_EOF) && (s->txn.flags & TXN_F_RESP_HEAD) &&
	    s->up.body.framing == HTTP_BODY_EOF) {
		relay_body(&s->up);
		s->up.body.done = true;
		response_done(s, false);
		return;
	}
	fail_exchange(s, 502,
		      (s->txn.flags & TXN_F_RESP_HEAD) ? TERM_CAS_DATA
							: TERM_CAS_HEAD);
}

void relay_client_read(struct session *s)
{
	if (s->client.body.done)
		return;
	if (relay_body(&s->client) != 0) {
		s->flags |= SESSION_F_CLOSE;
		if (s->txn.state == TXN_LOCAL)
			session_close(s, TERM_CLIENT_BODY);
		else
			fail_exchange(s, 400, TERM_CLIENT_BODY);
		return;
	}
	if (s->txn.state != TXN_LOCAL)
		throttle(&s->client);
	if (!s->client.body.done)
		return;
	if (s->txn.state == TXN_LOCAL) {
		if (conn_output_length(s->client.conn) == 0)
			txn_done(s);
		return;
	}
	/* The request is all up; the client's silence is now legitimate. */
	txn_set_state(s, s->txn.state);
}

void relay_client_drained(struct session *s)
{
	if (s->txn.state == TXN_LOCAL) {
		if (s->client.body.done)
			txn_done(s);
		return;
	}
	if (s->up.conn != NULL && (s->txn.flags & TXN_F_RESP_HEAD)) {
		conn_enable(s->up.conn, EV_READ);
		conn_kick(s->up.conn);
	}
}
