/*
 * The request on a client connection (struct txn): from its first byte to
 * its one end. txn_step() is where every event of its life arrives (the
 * client's data, drain and timeouts, the CAS's, the directory's answer);
 * the state says what the event means. txn_end() writes its access-log line,
 * wherever it ends.
 */
#include "proxy/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "conf/conf.h"
#include "core/log.h"
#include "eas/eas.h"
#include "proxy/autodisc.h"
#include "proxy/dir.h"
#include "proxy/gen.h"
#include "proxy/routing.h"
#include "proxy/stats.h"
#include "upstream/upstream.h"
#include "proxy/worker.h"
#include "site/route.h"
#include "site/sitemap.h"

void txn_end(struct session *s, enum term term)
{
	session_held_end(s);
	/* A request not past its head holds no generation and is no
	 * request yet: nothing to log. */
	if (s->g == NULL)
		return;
	if (s->txn.log.term == TERM_UNSET)
		s->txn.log.term = term;
	accesslog_write(s);
	session_count_request(s);
	gen_release(s->g);
	s->g = NULL;
}

bool txn_keep_head(struct session *s, const struct http_request *req,
		   const struct eas_facts *f)
{
	struct txn_head *h;

	if (s->txn.head != NULL)
		return true;
	h = malloc(sizeof(*h) + s->w->head_len);
	if (h == NULL)
		return false;
	memcpy(h->bytes, s->w->head_buf, s->w->head_len);
	h->req = *req;
	http_request_rebase(&h->req, s->w->head_buf, h->bytes);
	h->facts = *f;
	s->txn.head = h;
	return true;
}

void txn_release(struct session *s)
{
	free(s->txn.head);
	s->txn.head = NULL;
	if (s->txn.replay != NULL) {
		evbuffer_free(s->txn.replay);
		s->txn.replay = NULL;
	}
	autodisc_free(s->txn.ad);
	s->txn.ad = NULL;
	dir_session_end(s);
}

/* Clears what one request left behind so the next starts clean. */
static void txn_reset(struct session *s)
{
	memset(&s->txn.log, 0, sizeof(s->txn.log));
	memset(&s->client.body, 0, sizeof(s->client.body));
	memset(&s->up.body, 0, sizeof(s->up.body));
	s->client.bytes = 0;
	s->up.bytes = 0;
	txn_release(s);
	/* A pinned upstream belongs to one site for the connection's life. */
	if (!(s->flags & SESSION_F_PINNED))
		s->txn.site = -1;
	s->txn.tried = 0;
	s->txn.failed_sites = 0;
	s->txn.flags = 0;
	s->flags &= SESSION_F_PINNED | SESSION_F_HTTP10;
	txn_set_state(s, TXN_NONE);
}

void txn_done(struct session *s)
{
	bool close_it = (s->flags & SESSION_F_CLOSE) || s->w->stopping;
	bool reuse = (s->txn.flags & TXN_F_UP_REUSE) != 0;

	txn_end(s, TERM_OK);
	if (s->flags & SESSION_F_PINNED) {
		/* A pinned upstream stays with this client; only a broken one
		 * is dropped, and then the client goes too. */
		if (!reuse)
			close_it = true;
	} else {
		session_drop_upstream(s, reuse);
	}
	txn_reset(s);
	if (close_it) {
		session_close_after_flush(s);
		return;
	}
	session_set_state(s, SESSION_IDLE);
	conn_enable(s->client.conn, EV_READ);
	if (evbuffer_get_length(conn_input(s->client.conn)) > 0)
		txn_read_head(s);
}

/* The load balancer or DNS health checker in front asks whether sending
 * clients here helps: only while this site, or its fallback, has a CAS. */
static bool front_end_healthy(const struct gen *g)
{
	const char *fb = g->conf->sites[g->own_site].fallback;

	if (!gen_site_down(g, g->own_site))
		return true;
	for (unsigned i = 0; fb != NULL && i < g->conf->n_sites; i++)
		if (strcmp(g->conf->sites[i].name, fb) == 0)
			return !gen_site_down(g, (int)i);
	return false;
}

static void healthcheck(struct session *s)
{
	char body[300];

	if (!front_end_healthy(s->g)) {
		s->txn.log.decision = "local";
		s->txn.log.reason = "healthcheck-down";
		session_respond(s, 503, "Content-Type: text/plain\r\n",
				"503 no Client Access Server reachable\n");
		return;
	}

	snprintf(body, sizeof(body), "200 OK<br/>%s", s->g->hostname);
	s->txn.log.decision = "local";
	s->txn.log.reason = "healthcheck";
	session_respond(s, 200, "Content-Type: text/html\r\n", body);
}

static void redirect(struct session *s, const char *url)
{
	char hdr[1200];

	/* A 451 is an answer, not a refusal. */
	s->txn.log.term = TERM_OK;
	snprintf(hdr, sizeof(hdr), "X-MS-Location: %s\r\n", url);
	session_respond(s, 451, hdr, NULL);
}

/* Copies the request facts the access log wants before the head's bytes are
 * drained. */
static void log_facts(struct session *s, const struct http_request *req,
		      const struct eas_facts *f)
{
	str_copy(s->txn.log.method, sizeof(s->txn.log.method), req->method_str);
	str_copy(s->txn.log.cmd, sizeof(s->txn.log.cmd), str_from(f->cmd_name));
	str_copy(s->txn.log.user, sizeof(s->txn.log.user), str_from(f->user));
	str_copy(s->txn.log.device, sizeof(s->txn.log.device), str_from(f->device_id));
	str_copy(s->txn.log.device_type, sizeof(s->txn.log.device_type),
		 str_from(f->device_type));
	s->txn.log.version = f->version;
	if (f->path == EAS_PATH_AUTODISCOVER)
		s->txn.log.cmd_slot = STATS_CMD_AUTODISCOVER;
	else if (req->method == HTTP_M_OPTIONS)
		s->txn.log.cmd_slot = STATS_CMD_OPTIONS;
	else
		s->txn.log.cmd_slot = stats_cmd_slot(f->cmd);
}

/* Routes an EAS or Autodiscover request and carries out the decision. */
static void dispatch_eas(struct session *s, const struct http_request *req,
			 const struct eas_facts *f)
{
	struct route_input in;
	struct route_decision d;
	struct routing_scratch sc;

	if (req->method != HTTP_M_POST && req->method != HTTP_M_OPTIONS &&
	    req->method != HTTP_M_GET && req->method != HTTP_M_HEAD) {
		session_respond_error(s, 501, TERM_LOCAL);
		return;
	}
	/* A 451 names an EAS URL: an Autodiscover request (whatever version
	 * header it carries) is routed to its site, never redirected. */
	routing_input(&in, s->g, f->user,
		      f->path == EAS_PATH_AUTODISCOVER ? 0 : f->version, f->host,
		      &sc);
	in.autodiscover = f->path == EAS_PATH_AUTODISCOVER;
	/* The guard before anything of the request goes anywhere, the
	 * directory included. A request dispatched again with the
	 * directory's answer passed it already. */
	if (s->txn.state != TXN_ROUTE && screen_request(s, req, f, in.user))
		return;
	if (routing_needs_directory(&in) &&
	    !dir_lookup(s, in.user, &in.dir, &in.dir_database)) {
		/* Dispatched again when the directory answers, from the head
		 * kept here rather than parsed again. */
		if (!txn_keep_head(s, req, f)) {
			dir_session_end(s);
			session_respond_error(s, 503, TERM_LOCAL);
		}
		return;
	}
	route_decide(&in, &d);
	s->txn.log.decision = d.action == ROUTE_PROXY	 ? "proxy"
			  : d.action == ROUTE_REDIRECT ? "redirect"
						       : "reject";
	s->txn.log.reason = d.reason;
	s->txn.log.site = d.site;
	if (autodisc_wanted(s, req, f) && s->uc == NULL) {
		autodisc_begin(s, req, f);
		return;
	}
	if (f->auth == EAS_AUTH_NTLM || f->auth == EAS_AUTH_NEGOTIATE)
		s->flags |= SESSION_F_PINNED;
	if (s->flags & SESSION_F_PINNED && s->uc != NULL) {
		/* NTLM authenticated this connection with one CAS: moving it
		 * would break the handshake, so the map is not consulted. */
		s->txn.log.decision = "proxy";
		s->txn.log.reason = "pinned";
		relay_start(s, req, s->txn.site >= 0 ? s->txn.site : d.site);
		return;
	}
	switch (d.action) {
	case ROUTE_PROXY:
		relay_start(s, req, d.site);
		break;
	case ROUTE_REDIRECT:
		redirect(s, d.url);
		break;
	case ROUTE_REJECT:
		session_respond_error(s, d.status, TERM_LOCAL);
		break;
	}
}

/* Decides what one parsed request gets. */
static void txn_dispatch(struct session *s, const struct http_request *req)
{
	struct eas_facts f;
	unsigned status = 400;

	s->txn.method = req->method;
	if (req->method == HTTP_M_HEAD)
		s->txn.flags |= TXN_F_HEAD_REQ;
	if (req->version == 0)
		s->flags |= SESSION_F_HTTP10;
	if (!(req->flags & HTTP_F_KEEP_ALIVE))
		s->flags |= SESSION_F_CLOSE;
	s->client.body.framing = req->framing;
	s->client.body.left = req->content_length;
	s->client.body.done = req->framing == HTTP_BODY_NONE ||
			      (req->framing == HTTP_BODY_LENGTH &&
			       req->content_length == 0);
	if (eas_facts_parse(req, s->sni, &f, &status) != 0) {
		str_copy(s->txn.log.method, sizeof(s->txn.log.method),
			 req->method_str);
		s->txn.log.reason = f.error;
		session_respond_error(s, status, TERM_LOCAL);
		return;
	}
	log_facts(s, req, &f);
	if (f.held)
		s->txn.flags |= TXN_F_HELD;
	switch (f.path) {
	case EAS_PATH_HEALTHCHECK:
		if (req->method == HTTP_M_GET || req->method == HTTP_M_HEAD)
			healthcheck(s);
		else
			session_respond_error(s, 405, TERM_LOCAL);
		break;
	case EAS_PATH_ACTIVESYNC:
	case EAS_PATH_AUTODISCOVER:
		dispatch_eas(s, req, &f);
		break;
	default:
		session_respond_error(s, 404, TERM_LOCAL);
		break;
	}
}

/* For the log of a request that failed to parse: its first token, when it
 * looks like a method. */
static void log_method_token(struct session *s, const char *buf, size_t len)
{
	size_t n = 0;

	while (n < len && n < sizeof(s->txn.log.method) - 1 && buf[n] >= 'A' &&
	       buf[n] <= 'Z')
		n++;
	if (n < len && buf[n] == ' ')
		str_copy(s->txn.log.method, sizeof(s->txn.log.method),
			 (struct str){buf, n});
}

/* Body bytes that came with the head go where the request's state says;
 * while the directory is asked they wait in the input (reading paused). */
static void body_bytes(struct session *s)
{
	if (s->txn.state == TXN_CONNECT || s->txn.state == TXN_EXCHANGE ||
	    s->txn.state == TXN_LOCAL)
		relay_client_read(s);
	else if (s->txn.state == TXN_COLLECT)
		autodisc_read(s);
}

void txn_read_head(struct session *s)
{
	struct evbuffer *in = conn_input(s->client.conn);
	struct http_request *req = &s->w->req;
	const struct http_limits *lim = &http_default_limits;
	size_t avail = evbuffer_get_length(in);
	size_t want = avail < lim->max_head + 1 ? avail : lim->max_head + 1;
	unsigned status = 400;
	unsigned char *buf;
	int r;

	if (avail == 0)
		return;
	if (s->txn.state == TXN_NONE) {
		s->txn.log.t_start = conn_loop_now_us(&s->w->loop);
		txn_set_state(s, TXN_HEAD);
	}
	buf = evbuffer_pullup(in, (ssize_t)want);
	r = http_request_parse((const char *)buf, want, lim, req, &status);
	if (r == 0)
		return;
	/* From here on the request belongs to the current generation. */
	s->g = gen_hold(s->w->gen);
	s->txn.log.t_head = conn_loop_now_us(&s->w->loop);
	s->txn.log.site = -1;
	s->txn.log.cmd_slot = STATS_CMD_OTHER;
	if (r < 0) {
		log_method_token(s, (const char *)buf, want);
		s->txn.log.reason = req->error;
		s->flags |= SESSION_F_CLOSE;
		s->client.body.done = true;
		session_respond_error(s, status, TERM_LOCAL);
		return;
	}
	s->w->head_buf = (const char *)buf;
	s->w->head_len = (size_t)r;
	txn_dispatch(s, req);
	if (s->flags & SESSION_F_DEAD)
		return;
	/* The views into buf die here: whoever needed the head later kept
	 * it (txn_keep_head). */
	evbuffer_drain(in, (size_t)r);
	conn_kick(s->client.conn);
	body_bytes(s);
}

/* A client timeout while a request is open: its phase says what the
 * silence means. */
static void client_timeout(struct session *s, short what)
{
	switch (s->txn.state) {
	case TXN_HEAD:
		s->flags |= SESSION_F_CLOSE;
		s->client.body.done = true;
		s->g = gen_hold(s->w->gen);
		session_respond_error(s, 408, TERM_CLIENT_T_HEAD);
		break;
	case TXN_COLLECT:
		autodisc_free(s->txn.ad);
		s->txn.ad = NULL;
		s->flags |= SESSION_F_CLOSE;
		s->client.body.done = true;
		session_respond_error(s, 408, TERM_CLIENT_T_DATA);
		break;
	case TXN_EXCHANGE:
	case TXN_CONNECT:
		if (!(s->txn.flags & TXN_F_RESP_HEAD) &&
		    (what & CONN_READING)) {
			s->flags |= SESSION_F_CLOSE;
			session_respond_error(s, 408, TERM_CLIENT_T_DATA);
			break;
		}
		session_close(s, TERM_CLIENT_T_DATA);
		break;
	default:
		session_close(s, (what & CONN_WRITING) ? TERM_CLIENT_T_WRITE
							: TERM_CLIENT_T_IDLE);
		break;
	}
}

/* The directory answered (dir.c kept the answer on the request): the
 * request is dispatched again from its kept head, on the generation it
 * started with. */
static void directory_answered(struct session *s)
{
	struct txn_head *h = s->txn.head;

	conn_enable(s->client.conn, EV_READ);
	/* An Autodiscover request waited with its body read whole. */
	if (s->txn.ad != NULL) {
		txn_set_state(s, TXN_COLLECT);
		autodisc_finish(s);
		return;
	}
	dispatch_eas(s, &h->req, &h->facts);
	if (!(s->flags & SESSION_F_DEAD))
		body_bytes(s);
}

void txn_step(struct session *s, enum txn_event ev, short what)
{
	enum txn_state st = s->txn.state;

	switch (ev) {
	case TXN_EV_CLIENT_DATA:
		if (st == TXN_NONE || st == TXN_HEAD)
			txn_read_head(s);
		else if (st == TXN_COLLECT)
			autodisc_read(s);
		/* ROUTE: body bytes wait in the input for the answer. */
		else if (st != TXN_ROUTE)
			relay_client_read(s);
		break;
	case TXN_EV_CLIENT_DRAINED:
		if (st == TXN_LOCAL || st == TXN_EXCHANGE || st == TXN_CONNECT)
			relay_client_drained(s);
		break;
	case TXN_EV_CLIENT_TIMEOUT:
		client_timeout(s, what);
		break;
	case TXN_EV_DIRECTORY:
		directory_answered(s);
		break;
	case TXN_EV_UP_DRAINED:
		relay_up_drained(s);
		break;
	case TXN_EV_UP_DATA:
	case TXN_EV_UP_EVENT:
		/* Between requests (no generation held) only a pinned (NTLM)
		 * upstream stays attached; anything it says then, or its
		 * closing, ends the client connection with it. */
		if (s->g == NULL)
			session_close(s, TERM_CAS_IDLE);
		else if (ev == TXN_EV_UP_DATA)
			relay_up_read(s);
		else
			relay_up_event(s, what);
		break;
	}
}
