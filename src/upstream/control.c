/*
 * The control loop, on the daemon's thread: DNS watches that keep each CAS
 * name's members current, active health checks of every member (GET
 * healthcheck.htm: any status below 500, or with health.expect a 200 whose
 * body starts with that text), and passive ejection from the failures the
 * workers report. Workers only read what this writes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>

#include "conf/conf.h"
#include "core/clock.h"
#include "core/log.h"
#include "dns/dns.h"
#include "http/http.h"
#include "net/conn.h"
#include "upstream/cas.h"
#include "upstream/control.h"
#include "site/health.h"
#include "tls/tls.h"

/* Bytes of a health response head read before judging it. */
#define HCHECK_READ_MAX 4096
/* Room for what a failed check saw, as the log says it. */
#define HCHECK_WHY_MAX 128

struct control {
	struct cas_registry *reg;	/* not owned: the proxy's */
	struct event_base *base;	/* the daemon's */
	struct dns_resolver *resolver;	/* owned */
	struct event *tick;		/* owned: passive failures, 1 s */
	SSL_CTX *ssl_ctx;		/* one reference: TLS to CAS */
	struct http_response resp;	/* scratch */
	struct conn_loop loop;		/* the checks' connections, on base */
};

struct hcheck {
	struct control *c;
	struct cas_entry *e;
	struct cas_member *m;
	/* owned: while no check is under way, when the next one starts;
	 * while one is, its deadline (health.timeout, for connect, TLS
	 * handshake and answer together) */
	struct event *timer;
	struct conn *conn; /* owned: the check under way, or NULL */
	uint64_t started_us; /* monotonic: when the check under way began */
};

static void hcheck_arm(struct hcheck *hc, unsigned seconds)
{
	struct timeval tv = {seconds, 0};

	evtimer_add(hc->timer, &tv);
}

static void hcheck_finish(struct hcheck *hc, bool ok, const char *why)
{
	struct cas_entry *e = hc->e;
	struct cas_member *m = hc->m;

	conn_free(hc->conn);
	hc->conn = NULL;
	/* Kept for the admin's status page: an operator asks "why down"
	 * before reading the log. */
	m->last.at = time(NULL);
	m->last.ok = ok;
	m->last.latency_ms =
	    (unsigned)((clock_mono_us() - hc->started_us) / 1000);
	snprintf(m->last.why, sizeof(m->last.why), "%s", ok ? "" : why);
	if (!ok)
		log_debug("CAS %s (%s): health check failed: %s", e->url,
		          m->name, why);
	if (health_feed(&m->h, ok, e->rise, e->fall)) {
		cas_member_set_up(e, m, m->h.up);
		if (m->h.up)
			log_info("CAS %s (%s) is up", e->url, m->name);
		else
			log_warnx("CAS %s (%s) is down: %s", e->url, m->name,
				  why);
	}
	hcheck_arm(hc, e->interval);
}

/* The verdict on a final answer with status and the body bytes seen so far
 * (body, n; all of them when eof). Without expect (health.expect absent) any
 * status below 500 is up: Exchange 2010, SOGo and Z-Push have no
 * healthcheck.htm and answer 401 or 404, while Exchange 2013+ answers 503
 * when Managed Availability takes ActiveSync out. With expect, only a 200
 * whose body starts with it is up ("" takes any 200). Returns 1 up, 0
 * undecided (more body may come), -1 down with what was seen in why. */
static int hcheck_verdict(const char *expect, unsigned status, const char *body,
                          size_t n, bool eof, char *why, size_t why_len)
{
	size_t wl;

	if (expect == NULL && status < 500)
		return 1;
	if (expect == NULL || status != 200) {
		snprintf(why, why_len, "health check answered %u%s", status,
		         expect == NULL ? "" : ", expected 200");
		return -1;
	}
	wl = strlen(expect);
	if (memcmp(body, expect, n < wl ? n : wl) == 0) {
		if (n >= wl)
			return 1;
		if (!eof)
			return 0;
	}
	snprintf(why, why_len,
	         "health check answered 200 without the expected body");
	return -1;
}

/* Judges what arrived: skips interim 1xx heads, then gives the final head
 * (and, with expect, the body) to hcheck_verdict. Returns 1 ok, 0 undecided
 * (more bytes may come), -1 failed with the reason in why. */
static int hcheck_judge(struct hcheck *hc, bool eof, char *why, size_t why_len)
{
	struct evbuffer *in = conn_input(hc->conn);
	struct http_response *resp = &hc->c->resp;
	unsigned status = 502;
	const char *buf = NULL;
	size_t len;
	int r;

	for (;;) {
		len = evbuffer_get_length(in);
		if (len == 0) {
			r = 0;
			break;
		}
		buf = (const char *)evbuffer_pullup(in, (ssize_t)len);
		r = http_response_parse(buf, len, &http_default_limits,
		                        HTTP_M_GET, resp, &status);
		if (r <= 0 || resp->status >= 200)
			break;
		/* 100 Continue, 103 Early Hints: the answer comes after. */
		evbuffer_drain(in, (size_t)r);
	}
	if (r < 0) {
		snprintf(why, why_len, "malformed health response");
		return -1;
	}
	if (r == 0 && eof) {
		snprintf(why, why_len, "connection closed before an answer");
		return -1;
	}
	if (r == 0 && len >= HCHECK_READ_MAX) {
		snprintf(why, why_len, "health response head over %d bytes",
		         HCHECK_READ_MAX);
		return -1;
	}
	if (r == 0)
		return 0;
	return hcheck_verdict(hc->e->check_expect, resp->status, buf + r,
	                      len - (size_t)r, eof, why, why_len);
}

static void hcheck_read_cb(struct conn *conn, void *arg)
{
	struct hcheck *hc = arg;
	char why[HCHECK_WHY_MAX] = "";
	int v = hcheck_judge(hc, false, why, sizeof(why));

	if (v != 0)
		hcheck_finish(hc, v > 0, why);
}

/* Says why the check's connection failed: the TLS error if OpenSSL gave
 * one, else the socket error. */
static void hcheck_conn_error(struct hcheck *hc, char *why, size_t why_len)
{
	int err = conn_errno(hc->conn);
	unsigned long tls_err = conn_tls_error(hc->conn);
	const char *reason = tls_err ? ERR_reason_error_string(tls_err) : NULL;

	if (tls_err != 0)
		snprintf(why, why_len, "TLS failed: %s",
		         reason ? reason : "unknown error");
	else if (err != 0)
		snprintf(why, why_len, "connection failed: %s", strerror(err));
	else
		snprintf(why, why_len, "connection failed");
}

static void hcheck_event_cb(struct conn *conn, short what, void *arg)
{
	struct hcheck *hc = arg;
	char why[HCHECK_WHY_MAX] = "";
	int v;

	if (what & CONN_CONNECTED)
		return;
	/* A reset reads as the end of input, with its errno kept: it is a
	 * failed connection, as when it breaks a write. */
	if ((what & CONN_ERROR) || conn_errno(conn) != 0) {
		hcheck_conn_error(hc, why, sizeof(why));
		hcheck_finish(hc, false, why);
		return;
	}
	v = hcheck_judge(hc, true, why, sizeof(why));
	hcheck_finish(hc, v > 0, why);
}

/* A connection to the member, with TLS (SNI and the name check for the
 * entry's host) when the entry is https; NULL with the reason in why. */
static struct conn *hcheck_connect(struct hcheck *hc, char *why, size_t why_len)
{
	struct control *c = hc->c;
	SSL *ssl = NULL;
	struct conn *conn;

	if (hc->e->tls) {
		ssl = c->ssl_ctx ? tls_client_ssl_new(c->ssl_ctx, hc->e->host)
		                 : NULL;
		if (ssl == NULL) {
			snprintf(why, why_len, "cannot set up a connection");
			return NULL;
		}
	}
	conn = conn_connect(&c->loop, (struct sockaddr *)&hc->m->addr,
	                    hc->m->len, ssl);
	if (conn == NULL)
		snprintf(why, why_len, "connection failed: %s",
		         strerror(errno));
	return conn;
}

static void hcheck_start(struct hcheck *hc)
{
	char why[HCHECK_WHY_MAX] = "";

	hc->started_us = clock_mono_us();
	hc->conn = hcheck_connect(hc, why, sizeof(why));
	if (hc->conn == NULL) {
		hcheck_finish(hc, false, why);
		return;
	}
	conn_setcb(hc->conn, hcheck_read_cb, NULL, hcheck_event_cb, hc);
	/* Written once connected (and through TLS). */
	evbuffer_add_printf(conn_output(hc->conn),
	                    "GET %s HTTP/1.1\r\nHost: %s\r\n"
	                    "User-Agent: easfront-health\r\n"
	                    "Connection: close\r\n\r\n",
	                    hc->e->check_path ? hc->e->check_path : "/",
	                    hc->e->host);
	conn_enable(hc->conn, EV_READ);
	hcheck_arm(hc, hc->e->timeout);
}

static void hcheck_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hcheck *hc = arg;

	if (hc->conn != NULL)
		hcheck_finish(hc, false, "health check timed out");
	else
		hcheck_start(hc);
}

static void hcheck_free(struct hcheck *hc)
{
	if (hc == NULL)
		return;
	conn_free(hc->conn);
	if (hc->timer != NULL)
		event_free(hc->timer);
	free(hc);
}

static void member_drop(struct cas_member *m)
{
	hcheck_free(m->check);
	m->check = NULL;
}

/* Gives every member of e a check; the first runs soon, spread out so a
 * reload does not fire every check in the same instant. */
static void ensure_checks(struct control *c, struct cas_entry *e)
{
	for (unsigned i = 0; i < e->n_members; i++) {
		struct cas_member *m = e->members[i];
		struct hcheck *hc;

		if (m->check != NULL)
			continue;
		hc = calloc(1, sizeof(*hc));
		if (hc == NULL)
			return;
		hc->c = c;
		hc->e = e;
		hc->m = m;
		hc->timer = evtimer_new(c->base, hcheck_timer_cb, hc);
		if (hc->timer == NULL) {
			free(hc);
			return;
		}
		m->check = hc;
		hcheck_arm(hc, 1 + (i % (e->interval ? e->interval : 1)));
	}
}

static void stop_checks(struct cas_entry *e)
{
	for (unsigned i = 0; i < e->n_members; i++)
		member_drop(e->members[i]);
}

static void watch_changed(const struct dns_addrs *a, void *arg)
{
	struct cas_entry *e = arg;
	struct control *c = e->in_use ? e->watch_ctx : NULL;

	cas_set_members(e, a->addr, a->n, member_drop);
	log_info("CAS %s: %s resolves to %u address%s (TTL %u)", e->url,
		 e->host, e->n_members, e->n_members == 1 ? "" : "es", a->ttl);
	if (c != NULL)
		ensure_checks(c, e);
}

/* Passive ejection: each failure a worker saw counts as a failed check. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control *c = arg;

	for (unsigned i = 0; i < c->reg->n; i++) {
		struct cas_entry *e = c->reg->cas[i];

		for (unsigned j = 0; e->in_use && j < e->n_members; j++) {
			struct cas_member *m = e->members[j];
			unsigned n = atomic_exchange(&m->passive_fails, 0);

			for (; n > 0 && m->h.up; n--)
				if (health_feed(&m->h, false, e->rise, e->fall)) {
					cas_member_set_up(e, m, false);
					log_warnx("CAS %s (%s) is down: "
						  "requests failed",
						  e->url, m->name);
				}
		}
	}
}

void control_sync(struct control *c, SSL_CTX *ctx, unsigned min_ttl,
		  unsigned max_ttl)
{
	if (c->ssl_ctx != NULL)
		SSL_CTX_free(c->ssl_ctx);
	c->ssl_ctx = ctx;
	SSL_CTX_up_ref(c->ssl_ctx);
	for (unsigned i = 0; i < c->reg->n; i++) {
		struct cas_entry *e = c->reg->cas[i];

		if (!e->in_use) {
			/* No longer named: nothing to check or follow. */
			stop_checks(e);
			dns_watch_free(e->watch);
			e->watch = NULL;
			continue;
		}
		e->watch_ctx = c;
		if (!e->literal && e->watch == NULL && c->resolver != NULL)
			e->watch = dns_watch_new(c->resolver, e->host, min_ttl,
						 max_ttl, watch_changed, e);
		ensure_checks(c, e);
	}
}

struct control *control_new(struct cas_registry *reg, struct event_base *base,
			    char *const *dns_servers, unsigned n_dns_servers,
			    char **err)
{
	struct control *c = calloc(1, sizeof(*c));
	struct timeval sec = {1, 0};

	if (c == NULL)
		return NULL;
	c->reg = reg;
	c->base = base;
	if (conn_loop_init(&c->loop, base) != 0) {
		*err = strdup("cannot set up the health checks' loop");
		free(c);
		return NULL;
	}
	c->resolver = dns_resolver_new(base, dns_servers, n_dns_servers, err);
	if (c->resolver == NULL) {
		/* Without a resolver the seeded addresses still serve; the
		 * names are just not followed. */
		log_warnx("DNS: %s", *err ? *err : "no resolver");
		free(*err);
		*err = NULL;
	}
	c->tick = event_new(base, -1, EV_PERSIST, tick_cb, c);
	if (c->tick == NULL || event_add(c->tick, &sec) != 0) {
		control_free(c);
		return NULL;
	}
	return c;
}

void control_free(struct control *c)
{
	if (c == NULL)
		return;
	for (unsigned i = 0; i < c->reg->n; i++) {
		struct cas_entry *e = c->reg->cas[i];

		stop_checks(e);
		dns_watch_free(e->watch);
		e->watch = NULL;
		e->in_use = false;
	}
	/* After the checks: their connections are freed. */
	conn_loop_done(&c->loop);
	if (c->tick != NULL)
		event_free(c->tick);
	dns_resolver_free(c->resolver);
	SSL_CTX_free(c->ssl_ctx);
	free(c);
}
