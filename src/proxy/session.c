/*
 * The client side of a session: accept, TLS handshake, per-phase timeouts,
 * reading request heads, deciding what to do with each request, closing.
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
#include "eas/eas.h"
#include "proxy/autodisc.h"
#include "proxy/dir.h"
#include "proxy/gen.h"
#include "proxy/stats.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"
#include "site/route.h"
#include "site/sitemap.h"
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

void session_set_state(struct session *s, enum session_state state)
{
	const struct conf_timeouts *t = &s->w->gen->conf->timeouts;
	unsigned wait_up;

	if (s->g != NULL)
		t = &s->g->conf->timeouts;
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
	case SESSION_HEAD:
		set_timeouts(s->client.conn, t->client_header, t->client_body);
		break;
	case SESSION_CONNECT:
		set_timeouts(s->client.conn, t->client_body, t->client_body);
		set_timeouts(s->up.conn, 0, t->upstream_connect);
		break;
	case SESSION_EXCHANGE:
		/* Once the request is up, the client owes us nothing: a held
		 * Ping may keep it silent for up to an hour. */
		set_timeouts(s->client.conn,
			     s->client.body.done ? 0 : t->client_body,
			     t->client_body);
		wait_up = (s->flags & SESSION_F_HELD) ? t->long_poll
						      : t->upstream_response;
		if (s->flags & SESSION_F_RESP_HEAD)
			wait_up = t->upstream_response;
		/* A CAS owes no answer before it has the whole request; a
		 * slow upload is the client's timeout to enforce. */
		else if (!s->client.body.done)
			wait_up = 0;
		set_timeouts(s->up.conn, wait_up, t->client_body);
		break;
	case SESSION_LOCAL:
	case SESSION_CLOSING:
	case SESSION_COLLECT:
		set_timeouts(s->client.conn, t->client_body, t->client_body);
		break;
	case SESSION_ROUTE:
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
	s->site = -1;
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
static void session_drop_upstream(struct session *s, bool reuse)
{
	struct upconn *uc = s->uc;

	if (uc == NULL)
		return;
	s->uc = NULL;
	s->up.conn = NULL;
	if (reuse && !(s->flags & SESSION_F_PINNED))
		upstream_release(s->w, uc);
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
	session_held_end(s);
	/* A request cut short still gets its access log line. */
	if (s->g != NULL) {
		if (s->log.term == TERM_UNSET)
			s->log.term = term;
		accesslog_write(s);
		session_count_request(s);
		gen_release(s->g);
		s->g = NULL;
	}
	session_drop_upstream(s, false);
	conn_free(s->client.conn);
	s->client.conn = NULL;
	gen_release(s->hs_gen);
	s->hs_gen = NULL;
	if (s->replay != NULL) {
		evbuffer_free(s->replay);
		s->replay = NULL;
	}
	autodisc_free(s->ad);
	s->ad = NULL;
	dir_session_end(s);
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

/* Clears what one request left behind so the next starts clean. */
static void session_reset_request(struct session *s)
{
	memset(&s->log, 0, sizeof(s->log));
	memset(&s->client.body, 0, sizeof(s->client.body));
	memset(&s->up.body, 0, sizeof(s->up.body));
	s->client.bytes = 0;
	s->up.bytes = 0;
	if (s->replay != NULL) {
		evbuffer_free(s->replay);
		s->replay = NULL;
	}
	dir_session_end(s);
	/* A pinned upstream belongs to one site for the connection's life. */
	if (!(s->flags & SESSION_F_PINNED))
		s->site = -1;
	s->tried = 0;
	s->failed_sites = 0;
	s->flags &= SESSION_F_PINNED | SESSION_F_HTTP10;
}

void session_request_done(struct session *s)
{
	bool close_it = (s->flags & SESSION_F_CLOSE) || s->w->stopping;
	bool reuse = (s->flags & SESSION_F_UP_REUSE) != 0;

	session_held_end(s);
	accesslog_write(s);
	session_count_request(s);
	gen_release(s->g);
	s->g = NULL;
	if (s->flags & SESSION_F_PINNED) {
		/* A pinned upstream stays with this client; only a broken one
		 * is dropped, and then the client goes too. */
		if (!reuse)
			close_it = true;
	} else {
		session_drop_upstream(s, reuse);
	}
	session_reset_request(s);
	if (close_it) {
		session_close_after_flush(s);
		return;
	}
	session_set_state(s, SESSION_IDLE);
	conn_enable(s->client.conn, EV_READ);
	if (evbuffer_get_length(conn_input(s->client.conn)) > 0)
		session_read_head(s);
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
		s->log.decision = "local";
		s->log.reason = "healthcheck-down";
		session_respond(s, 503, "Content-Type: text/plain\r\n",
				"503 no Client Access Server reachable\n");
		return;
	}

	snprintf(body, sizeof(body), "200 OK<br/>%s", s->g->hostname);
	s->log.decision = "local";
	s->log.reason = "healthcheck";
	session_respond(s, 200, "Content-Type: text/html\r\n", body);
}

static void redirect(struct session *s, const char *url)
{
	char hdr[1200];

	/* A 451 is an answer, not a refusal. */
	s->log.term = TERM_OK;
	snprintf(hdr, sizeof(hdr), "X-MS-Location: %s\r\n", url);
	session_respond(s, 451, hdr, NULL);
}

/* Copies the request facts the access log wants before the head's bytes are
 * drained. */
static void log_facts(struct session *s, const struct http_request *req,
		      const struct eas_facts *f)
{
	str_copy(s->log.method, sizeof(s->log.method), req->method_str);
	str_copy(s->log.cmd, sizeof(s->log.cmd), str_from(f->cmd_name));
	str_copy(s->log.user, sizeof(s->log.user), str_from(f->user));
	str_copy(s->log.device, sizeof(s->log.device), str_from(f->device_id));
	str_copy(s->log.device_type, sizeof(s->log.device_type),
		 str_from(f->device_type));
	s->log.version = f->version;
	if (f->path == EAS_PATH_AUTODISCOVER)
		s->log.cmd_slot = STATS_CMD_AUTODISCOVER;
	else if (req->method == HTTP_M_OPTIONS)
		s->log.cmd_slot = STATS_CMD_OPTIONS;
	else
		s->log.cmd_slot = stats_cmd_slot(f->cmd);
}

/* An operator's user line in the map decides before the directory is
 * asked, so a pinned user never waits on it. */
static bool map_pins_user(const struct sitemap *map, const char *key)
{
	struct sitemap_match m;

	if (key == NULL)
		return false;
	sitemap_lookup(map, key, &m);
	return m.how == SITEMAP_USER_SITE || m.how == SITEMAP_USER_DB;
}

/* Routes an EAS or Autodiscover request and carries out the decision. */
static void dispatch_eas(struct session *s, const struct http_request *req,
			 const struct eas_facts *f)
{
	struct route_input in = {0};
	struct route_decision d;
	unsigned char down[SESSION_MAX_SITES];
	char key[256];

	if (req->method != HTTP_M_POST && req->method != HTTP_M_OPTIONS &&
	    req->method != HTTP_M_GET && req->method != HTTP_M_HEAD) {
		session_respond_error(s, 501, TERM_LOCAL);
		return;
	}
	in.conf = s->g->conf;
	in.map = s->g->map;
	in.user = sitemap_normalise(s->g->conf, f->user, key, sizeof(key))
			  ? key
			  : NULL;
	/* A 451 names an EAS URL: an Autodiscover request (whatever version
	 * header it carries) is routed to its site, never redirected. */
	in.version = f->path == EAS_PATH_AUTODISCOVER ? 0 : f->version;
	in.host = f->host[0] ? f->host : NULL;
	if (!map_pins_user(s->g->map, in.user) &&
	    !dir_lookup(s, in.user, &in.dir, &in.dir_database))
		return; /* dispatched again when the directory answers */
	if (s->g->conf->n_sites <= SESSION_MAX_SITES) {
		for (unsigned i = 0; i < s->g->conf->n_sites; i++)
			down[i] = gen_site_down(s->g, (int)i);
		in.site_down = down;
	}
	route_decide(&in, &d);
	s->log.decision = d.action == ROUTE_PROXY	 ? "proxy"
			  : d.action == ROUTE_REDIRECT ? "redirect"
						       : "reject";
	s->log.reason = d.reason;
	s->log.site = d.site;
	if (autodisc_wanted(s, req, f) && s->uc == NULL) {
		autodisc_begin(s, req, f, s->w->head_buf, s->w->head_len);
		return;
	}
	if (f->auth == EAS_AUTH_NTLM || f->auth == EAS_AUTH_NEGOTIATE)
		s->flags |= SESSION_F_PINNED;
	if (s->flags & SESSION_F_PINNED && s->uc != NULL) {
		/* NTLM authenticated this connection with one CAS: moving it
		 * would break the handshake, so the map is not consulted. */
		s->log.decision = "proxy";
		s->log.reason = "pinned";
		relay_start(s, req, s->site >= 0 ? s->site : d.site);
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
static void session_dispatch(struct session *s, const struct http_request *req)
{
	struct eas_facts f;
	unsigned status = 400;

	s->method = req->method;
	if (req->method == HTTP_M_HEAD)
		s->flags |= SESSION_F_HEAD_REQ;
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
		str_copy(s->log.method, sizeof(s->log.method),
			 req->method_str);
		s->log.reason = f.error;
		session_respond_error(s, status, TERM_LOCAL);
		return;
	}
	log_facts(s, req, &f);
	if (f.held)
		s->flags |= SESSION_F_HELD;
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

	while (n < len && n < sizeof(s->log.method) - 1 && buf[n] >= 'A' &&
	       buf[n] <= 'Z')
		n++;
	if (n < len && buf[n] == ' ')
		str_copy(s->log.method, sizeof(s->log.method),
			 (struct str){buf, n});
}

void session_read_head(struct session *s)
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
	if (s->state == SESSION_IDLE) {
		s->log.t_start = conn_loop_now_us(&s->w->loop);
		session_set_state(s, SESSION_HEAD);
	}
	buf = evbuffer_pullup(in, (ssize_t)want);
	r = http_request_parse((const char *)buf, want, lim, req, &status);
	if (r == 0)
		return;
	/* From here on the request belongs to the current generation. */
	s->g = gen_hold(s->w->gen);
	s->log.t_head = conn_loop_now_us(&s->w->loop);
	s->log.site = -1;
	s->log.cmd_slot = STATS_CMD_OTHER;
	if (r < 0) {
		log_method_token(s, (const char *)buf, want);
		s->log.reason = req->error;
		s->flags |= SESSION_F_CLOSE;
		s->client.body.done = true;
		session_respond_error(s, status, TERM_LOCAL);
		return;
	}
	s->w->head_buf = (const char *)buf;
	s->w->head_len = (size_t)r;
	session_dispatch(s, req);
	/* Waiting for the directory: the head stays in the input, to be
	 * parsed again with the answer. */
	if ((s->flags & SESSION_F_DEAD) || s->state == SESSION_ROUTE)
		return;
	/* The views into buf die here: whoever needed bytes copied them. */
	evbuffer_drain(in, (size_t)r);
	conn_kick(s->client.conn);
	if (s->state == SESSION_CONNECT || s->state == SESSION_EXCHANGE ||
	    s->state == SESSION_LOCAL)
		relay_client_read(s);
	else if (s->state == SESSION_COLLECT)
		autodisc_read(s);
}

static void client_read_cb(struct conn *c, void *arg)
{
	struct session *s = arg;

	switch (s->state) {
	case SESSION_IDLE:
	case SESSION_HEAD:
		session_read_head(s);
		break;
	case SESSION_CONNECT:
	case SESSION_EXCHANGE:
	case SESSION_LOCAL:
		relay_client_read(s);
		break;
	case SESSION_COLLECT:
		autodisc_read(s);
		break;
	case SESSION_CLOSING:
		evbuffer_drain(conn_input(c),
			       evbuffer_get_length(conn_input(c)));
		break;
	case SESSION_HANDSHAKE:
	case SESSION_ROUTE: /* the head waits in the input for the answer */
		break;
	}
}

static void client_write_cb(struct conn *c, void *arg)
{
	struct session *s = arg;

	switch (s->state) {
	case SESSION_CLOSING:
		session_close_tls(s);
		break;
	case SESSION_LOCAL:
	case SESSION_EXCHANGE:
	case SESSION_CONNECT:
		relay_client_drained(s);
		break;
	default:
		break;
	}
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
		s->log.site = -1;
		s->log.reason = "connection-limit";
		s->flags |= SESSION_F_CLOSE;
		s->client.body.done = true;
		session_respond_error(s, 503, TERM_LIMIT);
		return;
	}
	session_set_state(s, SESSION_IDLE);
}

static void client_timeout(struct session *s, short what)
{
	switch (s->state) {
	case SESSION_HEAD:
		s->flags |= SESSION_F_CLOSE;
		s->client.body.done = true;
		s->g = gen_hold(s->w->gen);
		session_respond_error(s, 408, TERM_CLIENT_T_HEAD);
		break;
	case SESSION_COLLECT:
		autodisc_free(s->ad);
		s->ad = NULL;
		s->flags |= SESSION_F_CLOSE;
		s->client.body.done = true;
		session_respond_error(s, 408, TERM_CLIENT_T_DATA);
		break;
	case SESSION_EXCHANGE:
	case SESSION_CONNECT:
		if (!(s->flags & SESSION_F_RESP_HEAD) &&
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

static void client_event_cb(struct conn *c, short what, void *arg)
{
	struct session *s = arg;

	if (what & CONN_CONNECTED) {
		handshake_done(s);
		return;
	}
	if (what & CONN_TIMEOUT) {
		client_timeout(s, what);
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
