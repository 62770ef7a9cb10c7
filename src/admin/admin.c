/*
 * The admin endpoint over libevent's evhttp: small, loopback, one thread.
 */
#include "admin/admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "admin/metrics.h"
#include "conf/conf.h"
#include "eas/eas.h"
#include "ldap/ldap_src.h"
#include "proxy/dir.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"
#include "proxy/routing.h"
#include "proxy/stats.h"
#include "site/route.h"
#include "site/sitemap.h"

struct admin {
	struct evhttp *http; /* owned */
	struct proxy *p;
	struct admin_hooks *hooks;
	struct routing_dir *dir; /* owned: the directory, for /route */
};

static void reply(struct evhttp_request *req, int code, const char *type,
		  struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", type);
	evhttp_send_reply(req, code, NULL, body);
}

static void reply_text(struct evhttp_request *req, int code, const char *text)
{
	struct evbuffer *b = evbuffer_new();

	if (b != NULL)
		evbuffer_add_printf(b, "%s\n", text);
	reply(req, code, "text/plain", b);
	if (b != NULL)
		evbuffer_free(b);
}

static bool method_is(struct evhttp_request *req, enum evhttp_cmd_type m)
{
	if (evhttp_request_get_command(req) == m)
		return true;
	reply_text(req, 405, "method not allowed");
	return false;
}

/* The directory cache's counters, when there is a directory. */
static void directory_metrics(struct evbuffer *b, struct ldap_cache *c)
{
	struct ldap_cache_stats st;

	if (c == NULL)
		return;
	ldap_cache_stats(c, &st);
	evbuffer_add_printf(
		b,
		"# HELP easfront_directory_lookups_total Directory lookups by "
		"how the cache answered.\n"
		"# TYPE easfront_directory_lookups_total counter\n"
		"easfront_directory_lookups_total{result=\"hit\"} %llu\n"
		"easfront_directory_lookups_total{result=\"miss\"} %llu\n"
		"easfront_directory_lookups_total{result=\"stale\"} %llu\n"
		"easfront_directory_lookups_total{result=\"error\"} %llu\n"
		"# HELP easfront_directory_cache_entries Users the directory "
		"cache holds.\n"
		"# TYPE easfront_directory_cache_entries gauge\n"
		"easfront_directory_cache_entries %u\n",
		(unsigned long long)st.hits, (unsigned long long)st.misses,
		(unsigned long long)st.stale, (unsigned long long)st.errors,
		st.entries);
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct stats_snapshot snap;
	struct evbuffer *b;
	struct gen *g;

	if (!method_is(req, EVHTTP_REQ_GET))
		return;
	b = evbuffer_new();
	if (b == NULL)
		return reply_text(req, 503, "out of memory");
	proxy_stats(a->p, &snap);
	g = proxy_gen_hold(a->p);
	metrics_render(b, &snap, g, a->hooks);
	directory_metrics(b, dir_cache(a->p));
	gen_release(g);
	reply(req, 200, "text/plain; version=0.0.4", b);
	evbuffer_free(b);
}

/* A JSON string from config text: quotes, backslashes and controls escaped. */
static void json_str(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, "\"", 1);
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			evbuffer_add_printf(b, "\\%c", c);
		else if (c < 0x20)
			evbuffer_add_printf(b, "\\u%04x", c);
		else
			evbuffer_add(b, s, 1);
	}
	evbuffer_add(b, "\"", 1);
}

static void status_sites(struct evbuffer *b, const struct conf *c)
{
	evbuffer_add_printf(b, "\"sites\":[");
	for (unsigned i = 0; i < c->n_sites; i++) {
		const struct conf_site *s = &c->sites[i];

		evbuffer_add_printf(b, "%s{\"name\":", i ? "," : "");
		json_str(b, s->name);
		evbuffer_add_printf(b, ",\"own\":%s,\"external_url\":",
				    strcmp(s->name, c->site) == 0 ? "true"
								  : "false");
		if (s->external_url != NULL)
			json_str(b, s->external_url);
		else
			evbuffer_add_printf(b, "null");
		evbuffer_add_printf(b, ",\"cas\":[");
		for (unsigned j = 0; j < s->n_cas; j++) {
			if (j > 0)
				evbuffer_add(b, ",", 1);
			json_str(b, s->cas[j]);
		}
		evbuffer_add_printf(b, "]}");
	}
	evbuffer_add_printf(b, "]");
}

static void status_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct stats_snapshot snap;
	struct evbuffer *b;
	struct gen *g;

	if (!method_is(req, EVHTTP_REQ_GET))
		return;
	b = evbuffer_new();
	g = proxy_gen_hold(a->p);
	if (b == NULL || g == NULL) {
		gen_release(g);
		if (b != NULL)
			evbuffer_free(b);
		return reply_text(req, 503, "not serving yet");
	}
	proxy_stats(a->p, &snap);
	evbuffer_add_printf(b, "{\"generation\":%u,\"uptime_seconds\":%lld,"
			       "\"site\":",
			    g->id, (long long)(time(NULL) - a->hooks->started));
	json_str(b, g->conf->site);
	evbuffer_add_printf(b,
			    ",\"client_connections\":%llu,\"held_requests\":%llu,"
			    "\"site_map_users\":%zu,",
			    (unsigned long long)snap.client_connections,
			    (unsigned long long)snap.held_requests,
			    g->map ? sitemap_users(g->map) : (size_t)0);
	status_sites(b, g->conf);
	evbuffer_add_printf(b, "}\n");
	gen_release(g);
	reply(req, 200, "application/json", b);
	evbuffer_free(b);
}

/* POST /cache/flush?user=U forgets what the directory said of U (a mailbox
 * just moved); without user, of everyone. */
static void flush_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct ldap_cache *c = dir_cache(a->p);
	struct evkeyvalq q = {0};
	const char *query = evhttp_uri_get_query(
		evhttp_request_get_evhttp_uri(req));
	const char *user;
	struct gen *g;
	char key[256];

	if (!method_is(req, EVHTTP_REQ_POST))
		return;
	if (c == NULL)
		return reply_text(req, 404, "no directory (sitemap.ldap)");
	if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
		evhttp_clear_headers(&q);
		return reply_text(req, 400, "usage: /cache/flush[?user=U]");
	}
	user = evhttp_find_header(&q, "user");
	if (user == NULL) {
		ldap_cache_flush_all(c);
		reply_text(req, 200, "flushed every user");
	} else {
		g = proxy_gen_hold(a->p);
		if (g != NULL &&
		    sitemap_normalise(g->conf, user, key, sizeof(key)) != 0)
			reply_text(req, 200, ldap_cache_flush(c, key)
						     ? "flushed"
						     : "not cached");
		else
			reply_text(req, 400, "not a user name");
		gen_release(g);
	}
	evhttp_clear_headers(&q);
}

static void reload_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	char *err = NULL;

	if (!method_is(req, EVHTTP_REQ_POST))
		return;
	if (a->hooks->reload(a->hooks->arg, &err) == 0) {
		reply_text(req, 200, "reloaded");
		return;
	}
	reply_text(req, 422, err ? err : "reload refused");
	free(err);
}

/* One GET /route on its way: the facts it asked about, decided on the
 * generation that was current when it came. */
struct route_query {
	struct evhttp_request *req; /* evhttp's; answered once, by
	                               route_answer */
	struct gen *g;              /* one reference */
	struct route_input in;      /* points into g, sc, host and db */
	struct routing_scratch sc;
	char *host;               /* owned; NULL: none given */
	char db[LDAP_SRC_DB_MAX]; /* the database the directory named */
};

/* Decides q, answers its request with the explanation (the text `easfront
 * route` prints, as is) and frees q. */
static void route_answer(struct route_query *q)
{
	struct route_decision d;
	struct evbuffer *b = evbuffer_new();
	char text[4096];
	size_t n;

	q->in.dir_database = q->db[0] ? q->db : NULL;
	route_decide(&q->in, &d);
	n = route_explain(&q->in, &d, text, sizeof(text));
	if (n < sizeof(text))
		route_explain_autodiscover(&q->in, text + n, sizeof(text) - n);
	if (b != NULL)
		evbuffer_add(b, text, strlen(text));
	reply(q->req, b ? 200 : 503, "text/plain", b);
	if (b != NULL)
		evbuffer_free(b);
	gen_release(q->g);
	free(q->host);
	free(q);
}

static void route_dir_answered(enum route_dir dir, const char *db, void *arg)
{
	struct route_query *q = arg;

	q->in.dir = dir;
	snprintf(q->db, sizeof(q->db), "%s", db ? db : "");
	route_answer(q);
}

/* GET /route?user=U[&version=V][&host=H]: the decision a request of U
 * would get now, from the same input the data path builds (routing_input):
 * live site health, and the directory's word as a worker would get it (the
 * shared cache, else a search on this loop, which the request waits for
 * without blocking the loop). */
static void route_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct evkeyvalq q = {0};
	const char *query =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	const char *host;
	struct route_query *rq;
	struct gen *g;

	if (!method_is(req, EVHTTP_REQ_GET))
		return;
	if (query == NULL || evhttp_parse_query_str(query, &q) != 0 ||
	    evhttp_find_header(&q, "user") == NULL) {
		evhttp_clear_headers(&q);
		return reply_text(req, 400,
		                  "usage: /route?user=U[&version=V][&host=H]");
	}
	g = proxy_gen_hold(a->p);
	rq = g != NULL ? calloc(1, sizeof(*rq)) : NULL;
	host = evhttp_find_header(&q, "host");
	if (rq == NULL || (host != NULL && (rq->host = strdup(host)) == NULL)) {
		gen_release(g);
		free(rq);
		evhttp_clear_headers(&q);
		return reply_text(req, 503,
		                  g ? "out of memory" : "not serving yet");
	}
	rq->req = req;
	rq->g = g;
	routing_input(
	    &rq->in, g, evhttp_find_header(&q, "user"),
	    eas_version_parse(str_from(evhttp_find_header(&q, "version"))),
	    rq->host, &rq->sc);
	evhttp_clear_headers(&q);
	if (routing_wants_directory(&rq->in) &&
	    routing_dir_ask(a->dir, g, rq->in.user, route_dir_answered, rq,
	                    &rq->in.dir, rq->db, sizeof(rq->db)) == 0)
		return; /* route_dir_answered answers it */
	route_answer(rq);
}

/* The listening socket of address, bound with the sockaddr conf/ parsed
 * (IPv6 too): NULL with a reason in why. */
static struct evconnlistener *admin_listener(struct event_base *base,
                                             const char *address, char *why,
                                             size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *bad = NULL;
	struct evconnlistener *lev;

	if (conf_addr_parse(address, &ss, &len, &bad) != 0) {
		snprintf(why, cap, "%s", bad);
		return NULL;
	}
	/* What evhttp_bind_socket did: SO_REUSEADDR, listen(128). */
	errno = 0;
	lev = evconnlistener_new_bind(
	    base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
	    -1, (struct sockaddr *)&ss, (int)len);
	if (lev == NULL)
		snprintf(why, cap, "cannot listen%s%s", errno ? ": " : "",
		         errno ? strerror(errno) : "");
	return lev;
}

struct admin *admin_new(struct event_base *base, const char *address,
			struct proxy *p, struct admin_hooks *hooks, char **err)
{
	struct admin *a = calloc(1, sizeof(*a));
	struct evconnlistener *lev = NULL;
	char why[256] = "out of memory";

	if (a == NULL)
		goto fail;
	a->p = p;
	a->hooks = hooks;
	a->dir = routing_dir_new(base, p);
	a->http = evhttp_new(base);
	if (a->dir == NULL || a->http == NULL)
		goto fail;
	evhttp_set_max_headers_size(a->http, 16384);
	evhttp_set_max_body_size(a->http, 4096);
	evhttp_set_timeout(a->http, 10);
	evhttp_set_cb(a->http, "/metrics", metrics_cb, a);
	evhttp_set_cb(a->http, "/status", status_cb, a);
	evhttp_set_cb(a->http, "/reload", reload_cb, a);
	evhttp_set_cb(a->http, "/route", route_cb, a);
	evhttp_set_cb(a->http, "/cache/flush", flush_cb, a);
	lev = admin_listener(base, address, why, sizeof(why));
	if (lev == NULL)
		goto fail;
	/* From here evhttp owns lev (evhttp_free frees it). */
	if (evhttp_bind_listener(a->http, lev) == NULL) {
		evconnlistener_free(lev);
		snprintf(why, sizeof(why), "cannot listen");
		goto fail;
	}
	return a;
fail:
	*err = malloc(300);
	if (*err != NULL)
		snprintf(*err, 300, "admin.listen %s: %s", address, why);
	admin_free(a);
	return NULL;
}

void admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	/* First: a /route still waiting for the directory is answered (its
	 * request freed) before evhttp_free frees its connection. */
	routing_dir_free(a->dir);
	if (a->http != NULL)
		evhttp_free(a->http);
	free(a);
}
