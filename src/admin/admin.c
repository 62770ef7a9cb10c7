/*
 * The admin endpoint over libevent's evhttp: small, loopback, one thread.
 */
#include "admin/admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "admin/history.h"
#include "admin/metrics.h"
#include "admin/page.h"
#include "admin/status.h"
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
#include "store/store.h"

struct admin {
	struct evhttp *http; /* owned */
	struct proxy *p;
	struct admin_hooks *hooks;
	struct routing_dir *dir; /* owned: the directory, for /route */
	struct history *history; /* owned: the last minute's decisions */
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
		"easfront_directory_cache_entries %u\n"
		"# HELP easfront_directory_up 0 when the directory failed the "
		"last lookup sent to it, else 1.\n"
		"# TYPE easfront_directory_up gauge\n"
		"easfront_directory_up %d\n",
		(unsigned long long)st.hits, (unsigned long long)st.misses,
		(unsigned long long)st.stale, (unsigned long long)st.errors,
		st.entries, !st.down);
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct stats_snapshot snap;
	struct guard_counts gc;
	struct store_stats st;
	struct evbuffer *b;
	struct gen *g;

	if (!method_is(req, EVHTTP_REQ_GET))
		return;
	b = evbuffer_new();
	if (b == NULL)
		return reply_text(req, 503, "out of memory");
	proxy_stats(a->p, &snap);
	proxy_guard_counts(a->p, &gc);
	g = proxy_gen_hold(a->p);
	metrics_render(b, &snap, &gc, g, a->hooks);
	if (proxy_store_stats(a->p, &st))
		metrics_store(b, &st);
	directory_metrics(b, dir_cache(a->p));
	gen_release(g);
	reply(req, 200, "text/plain; version=0.0.4", b);
	evbuffer_free(b);
}

static void status_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
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
	status_render(b, a->p, g, a->hooks, a->history);
	gen_release(g);
	/* The page polls this: never a cached answer. */
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Cache-Control", "no-store");
	reply(req, 200, "application/json", b);
	evbuffer_free(b);
}

/* GET /: the status page, a fixed document that draws /status. */
static void page_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *b;

	(void)arg;
	if (!method_is(req, EVHTTP_REQ_GET))
		return;
	b = evbuffer_new();
	if (b == NULL || page_render(b, evhttp_request_get_output_headers(req)) != 0) {
		if (b != NULL)
			evbuffer_free(b);
		return reply_text(req, 503, "out of memory");
	}
	reply(req, 200, "text/html; charset=utf-8", b);
	evbuffer_free(b);
}

/* The request's query parameters into q (left empty without a query).
 * Returns 0, or -1 when the query is malformed; the caller clears q. */
static int query_of(struct evhttp_request *req, struct evkeyvalq *q)
{
	const char *query =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));

	return query != NULL ? evhttp_parse_query_str(query, q) : 0;
}

/* The user an operation names with ?user=U, normalised into key (cap
 * bytes) as routing and the tables know users: *user is key, or NULL when
 * the query names none (the operation is on everyone). Returns 0, or -1
 * after answering 400 itself (usage: the text of that answer for a bad
 * query). */
static int query_user(struct admin *a, struct evhttp_request *req,
                      struct evkeyvalq *q, const char *usage, char *key,
                      size_t cap, const char **user)
{
	struct gen *g;
	size_t n = 0;

	if (query_of(req, q) != 0) {
		reply_text(req, 400, usage);
		return -1;
	}
	*user = evhttp_find_header(q, "user");
	if (*user == NULL)
		return 0;
	g = proxy_gen_hold(a->p);
	if (g != NULL)
		n = sitemap_normalise(g->conf, *user, key, cap);
	gen_release(g);
	if (n == 0) {
		reply_text(req, 400, "not a user name");
		return -1;
	}
	*user = key;
	return 0;
}

/* POST /cache/flush?user=U forgets what the directory said of U (a mailbox
 * just moved); without user, of everyone. */
static void flush_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct ldap_cache *c = dir_cache(a->p);
	struct evkeyvalq q = {0};
	const char *user;
	char key[256];

	if (!method_is(req, EVHTTP_REQ_POST))
		return;
	if (c == NULL)
		return reply_text(req, 404, "no directory (sitemap.ldap)");
	if (query_user(a, req, &q, "usage: /cache/flush[?user=U]", key,
	               sizeof(key), &user) == 0) {
		if (user == NULL) {
			ldap_cache_flush_all(c);
			reply_text(req, 200, "flushed every user");
		} else {
			reply_text(req, 200,
			           ldap_cache_flush(c, key) ? "flushed"
			                                    : "not cached");
		}
	}
	evhttp_clear_headers(&q);
}

/* ---- the guard's tables (DESIGN.md "Edge protection") ---- */

/* Held users one GET /guard lists at the most; it says how many more. */
#define GUARD_LIST_MAX 1000

/* What one GET /guard shows: the shield's figures and its holds. */
struct guard_view {
	struct guard_counts counts;
	struct guard_hold *holds; /* owned: shown entries */
	size_t shown;
	size_t total; /* users with a hold now; may exceed shown */
};

/* Fills v from p for user (normalised; NULL: everyone). Returns 0, or -1
 * when out of memory. */
static int guard_view_fetch(struct proxy *p, const char *user,
                            struct guard_view *v)
{
	v->holds = calloc(GUARD_LIST_MAX, sizeof(*v->holds));
	if (v->holds == NULL)
		return -1;
	proxy_guard_counts(p, &v->counts);
	v->total = proxy_guard_holds(p, user, v->holds, GUARD_LIST_MAX);
	v->shown = v->total < GUARD_LIST_MAX ? v->total : GUARD_LIST_MAX;
	return 0;
}

static void guard_json(struct evbuffer *b, const struct guard_view *v)
{
	const struct guard_counts *c = &v->counts;

	evbuffer_add_printf(
	    b,
	    "{\"passwords\":%s,\"rules\":%u,\"entries\":%zu,"
	    "\"max_entries\":%zu,\"held_passwords\":%zu,\"held_users\":%zu,"
	    "\"evictions\":%llu,\"turned_away\":%llu,\"throttle\":%s,"
	    "\"throttled_keys\":%zu,\"holds\":[",
	    c->passwords_on ? "true" : "false", c->rules, c->entries,
	    c->max_entries, c->held_passwords, c->held_users,
	    (unsigned long long)c->evictions,
	    (unsigned long long)c->turned_away,
	    c->throttle_on ? "true" : "false", c->throttled_keys);
	for (size_t i = 0; i < v->shown; i++) {
		const struct guard_hold *h = &v->holds[i];

		evbuffer_add_printf(b, "%s{\"user\":", i ? "," : "");
		status_json_str(b, h->user);
		evbuffer_add_printf(
		    b,
		    ",\"held_passwords\":%u,\"password_left\":%u,"
		    "\"user_left\":%u}",
		    h->held_passwords, h->password_left, h->user_left);
	}
	evbuffer_add_printf(b, "],\"more\":%zu}\n", v->total - v->shown);
}

/* A user name for an operator's terminal: a name came from a client's
 * credentials, so control bytes are shown as '?' rather than sent to it. */
static void text_user(struct evbuffer *b, const char *s)
{
	for (; *s != '\0'; s++)
		evbuffer_add(
		    b, (unsigned char)*s < 0x20 || *s == 0x7f ? "?" : s, 1);
}

/* A time left for the list: "-" when there is no such hold. */
static void text_left(struct evbuffer *b, unsigned n, unsigned left)
{
	if (left == 0)
		evbuffer_add_printf(b, "-");
	else if (n > 0)
		evbuffer_add_printf(b, "%u (%u s left)", n, left);
	else
		evbuffer_add_printf(b, "%u s left", left);
}

/* The list `easfront guard list` prints as is: a line per held user, then
 * the figures. */
static void guard_text(struct evbuffer *b, const struct guard_view *v)
{
	const struct guard_counts *c = &v->counts;

	for (size_t i = 0; i < v->shown; i++) {
		const struct guard_hold *h = &v->holds[i];

		text_user(b, h->user);
		evbuffer_add_printf(b, "  held passwords: ");
		text_left(b, h->held_passwords, h->password_left);
		evbuffer_add_printf(b, "  guessing hold: ");
		text_left(b, 0, h->user_left);
		evbuffer_add_printf(b, "\n");
	}
	if (v->total > v->shown)
		evbuffer_add_printf(b, "... and %zu more\n",
		                    v->total - v->shown);
	if (!c->passwords_on) {
		evbuffer_add_printf(
		    b, "password shield off; device rules: %u\n", c->rules);
		return;
	}
	evbuffer_add_printf(b,
	                    "users with a hold: %zu; passwords held: %zu; "
	                    "users in a guessing hold: %zu; table: %zu of %zu "
	                    "entries, %llu evictions; device rules: %u\n",
	                    v->total, c->held_passwords, c->held_users,
	                    c->entries, c->max_entries,
	                    (unsigned long long)c->evictions, c->rules);
}

/* GET /guard[?user=U][&format=text]: the password shield's figures and
 * who it holds now (users only: never a password or a hash of one); JSON,
 * or the text `easfront guard list` prints. */
static void guard_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct evkeyvalq q = {0};
	struct guard_view v = {0};
	struct evbuffer *b = NULL;
	const char *user, *format;
	char key[256];

	if (!method_is(req, EVHTTP_REQ_GET))
		return;
	if (query_user(a, req, &q, "usage: /guard[?user=U][&format=text]", key,
	               sizeof(key), &user) != 0)
		goto done;
	format = evhttp_find_header(&q, "format");
	b = evbuffer_new();
	if (b == NULL || guard_view_fetch(a->p, user, &v) != 0) {
		reply_text(req, 503, "out of memory");
	} else if (format != NULL && strcmp(format, "text") == 0) {
		guard_text(b, &v);
		reply(req, 200, "text/plain", b);
	} else {
		guard_json(b, &v);
		reply(req, 200, "application/json", b);
	}
done:
	free(v.holds);
	if (b != NULL)
		evbuffer_free(b);
	evhttp_clear_headers(&q);
}

/* A DeviceId as the access log shows it: 1 to EAS_DEVICE_ID_MAX - 1
 * printable ASCII characters. */
static bool device_id_ok(const char *d)
{
	size_t n = strlen(d);

	if (n == 0 || n >= EAS_DEVICE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (d[i] <= ' ' || d[i] > '~')
			return false;
	return true;
}

/* Whether q names only "user" and "device": a clear that misspelt one
 * must not clear everyone. */
static bool clear_query_ok(const struct evkeyvalq *q)
{
	const struct evkeyval *kv;

	TAILQ_FOREACH(kv, q, next) {
		if (strcmp(kv->key, "user") != 0 &&
		    strcmp(kv->key, "device") != 0)
			return false;
	}
	return true;
}

/* The answer to a clear: what it did, and with guard.store whether the
 * other front ends are told now or when the store is back. */
static void clear_answer(struct admin *a, struct evhttp_request *req,
			 const struct guard_cleared *done)
{
	struct evbuffer *b = evbuffer_new();
	struct store_stats st;
	bool shared = proxy_store_stats(a->p, &st);

	if (b != NULL)
		evbuffer_add_printf(b, "{\"cleared\":%zu,\"refilled\":%zu%s}\n",
				    done->users, done->refilled,
				    !shared ? ""
				    : st.up ? ",\"fleet\":\"told\""
					    : ",\"fleet\":\"when-back\"");
	reply(req, b ? 200 : 503, "application/json", b);
	if (b != NULL)
		evbuffer_free(b);
}

/* POST /guard/clear[?user=U][&device=ID]: the shield forgets U (a user who
 * typed the new password on the phone) and the throttle fills U's bucket
 * and ID's again; with neither, everyone's. */
static void guard_clear_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct evkeyvalq q = {0};
	struct guard_cleared done;
	const char *user, *device;
	char key[256];

	if (!method_is(req, EVHTTP_REQ_POST))
		return;
	if (query_user(a, req, &q, "usage: /guard/clear[?user=U][&device=ID]",
		       key, sizeof(key), &user) == 0) {
		device = evhttp_find_header(&q, "device");
		if (!clear_query_ok(&q)) {
			reply_text(req, 400,
				   "usage: /guard/clear[?user=U][&device=ID]");
		} else if (device != NULL && !device_id_ok(device)) {
			reply_text(req, 400, "not a DeviceId");
		} else {
			proxy_guard_clear(a->p, user, device, &done);
			clear_answer(a, req, &done);
		}
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
	char guard[1024];         /* the guard's lines, made when asked: the
	                             shield's holds as they were then */
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
	if (b != NULL) {
		evbuffer_add(b, text, strlen(text));
		evbuffer_add(b, q->guard, strlen(q->guard));
	}
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

/* The guard's lines for rq, from the request fields q names. */
static void route_guard(struct admin *a, struct route_query *rq,
                        struct evkeyvalq *q)
{
	struct rules_facts f;

	routing_rules_facts(&f, &rq->in, evhttp_find_header(q, "device_id"),
	                    evhttp_find_header(q, "device_type"),
	                    evhttp_find_header(q, "user_agent"),
	                    evhttp_find_header(q, "cmd"));
	routing_guard_explain(rq->g, a->p, &f, rq->guard, sizeof(rq->guard));
}

/* A route_query for the facts q names, on the current generation; NULL
 * after answering 503 itself. */
static struct route_query *route_query_new(struct admin *a,
                                           struct evhttp_request *req,
                                           struct evkeyvalq *q)
{
	const char *host = evhttp_find_header(q, "host");
	struct gen *g = proxy_gen_hold(a->p);
	struct route_query *rq = g != NULL ? calloc(1, sizeof(*rq)) : NULL;

	if (rq == NULL || (host != NULL && (rq->host = strdup(host)) == NULL)) {
		gen_release(g);
		free(rq);
		reply_text(req, 503, g ? "out of memory" : "not serving yet");
		return NULL;
	}
	rq->req = req;
	rq->g = g;
	routing_input(
	    &rq->in, g, evhttp_find_header(q, "user"),
	    eas_version_parse(str_from(evhttp_find_header(q, "version"))),
	    rq->host, &rq->sc);
	route_guard(a, rq, q);
	return rq;
}

/* GET /route?user=U[&version=V][&host=H][&device_id=ID][&device_type=T]
 * [&user_agent=UA][&cmd=C]: the decision a request of U would get now,
 * from the same input the data path builds (routing_input): live site
 * health, the directory's word as a worker would get it (the shared cache,
 * else a search on this loop, which the request waits for without
 * blocking the loop), and the guard's word with the shield's live holds. */
static void route_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct evkeyvalq q = {0};
	struct route_query *rq;

	if (!method_is(req, EVHTTP_REQ_GET))
		return;
	if (query_of(req, &q) != 0 || evhttp_find_header(&q, "user") == NULL) {
		evhttp_clear_headers(&q);
		return reply_text(req, 400,
		                  "usage: /route?user=U[&version=V][&host=H]"
		                  "[&device_id=ID][&device_type=T]"
		                  "[&user_agent=UA][&cmd=C]");
	}
	rq = route_query_new(a, req, &q);
	evhttp_clear_headers(&q);
	if (rq == NULL)
		return;
	if (routing_wants_directory(&rq->in) &&
	    routing_dir_ask(a->dir, rq->g, rq->in.user, route_dir_answered, rq,
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
	a->history = history_new(base, p);
	a->http = evhttp_new(base);
	if (a->dir == NULL || a->history == NULL || a->http == NULL)
		goto fail;
	evhttp_set_max_headers_size(a->http, 16384);
	evhttp_set_max_body_size(a->http, 4096);
	evhttp_set_timeout(a->http, 10);
	evhttp_set_cb(a->http, "/", page_cb, a);
	evhttp_set_cb(a->http, "/metrics", metrics_cb, a);
	evhttp_set_cb(a->http, "/status", status_cb, a);
	evhttp_set_cb(a->http, "/reload", reload_cb, a);
	evhttp_set_cb(a->http, "/route", route_cb, a);
	evhttp_set_cb(a->http, "/cache/flush", flush_cb, a);
	evhttp_set_cb(a->http, "/guard", guard_cb, a);
	evhttp_set_cb(a->http, "/guard/clear", guard_clear_cb, a);
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
	history_free(a->history);
	free(a);
}
