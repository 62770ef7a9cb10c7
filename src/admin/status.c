/*
 * GET /status: one JSON object with every figure the status page shows.
 * Runs on the daemon's loop, the thread that also runs the health checks,
 * so a member's last check is read as it was written; the members array
 * itself is read under its entry's lock, as the workers read it.
 */
#include "admin/status.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "admin/admin.h"
#include "admin/history.h"
#include "conf/conf.h"
#include "ldap/ldap_src.h"
#include "proxy/dir.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"
#include "site/route.h"
#include "site/sitemap.h"
#include "store/store.h"
#include "tls/tls.h"
#include "upstream/cas.h"

void status_json_str(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, "\"", 1);
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			evbuffer_add_printf(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			evbuffer_add_printf(b, "\\u%04x", c);
		else
			evbuffer_add(b, s, 1);
	}
	evbuffer_add(b, "\"", 1);
}

static const char *json_bool(bool v)
{
	return v ? "true" : "false";
}

/* A string, or null when s is NULL. */
static void json_str_or_null(struct evbuffer *b, const char *s)
{
	if (s == NULL)
		evbuffer_add_printf(b, "null");
	else
		status_json_str(b, s);
}

int status_serving_site(const struct gen *g, int site)
{
	unsigned n = g->conf->n_sites;
	unsigned char *down = calloc(n ? n : 1, 1);
	int serving;

	if (down == NULL)
		return site;
	for (unsigned i = 0; i < n; i++)
		down[i] = gen_site_down(g, (int)i);
	serving = route_fallback(g->conf, down, site, NULL);
	free(down);
	return serving;
}

static void status_member(struct evbuffer *b, const struct cas_member *m)
{
	evbuffer_add_printf(b, "{\"address\":");
	status_json_str(b, m->name);
	evbuffer_add_printf(
	    b, ",\"up\":%s,\"check\":", json_bool(atomic_load(&m->up)));
	if (m->last.at == 0) {
		evbuffer_add_printf(b, "null}");
		return;
	}
	evbuffer_add_printf(b,
	                    "{\"at\":%lld,\"ok\":%s,\"latency_ms\":%u,"
	                    "\"error\":",
	                    (long long)m->last.at, json_bool(m->last.ok),
	                    m->last.latency_ms);
	status_json_str(b, m->last.why);
	evbuffer_add_printf(b, "}}");
}

/* One CAS URL of a site: its members (addresses from DNS) and the
 * connections the workers hold to it. */
static void status_server(struct evbuffer *b, const struct cas_target *t,
                          const struct stats_snapshot *snap)
{
	struct cas_entry *e = t->entry;
	bool counted = t->id < STATS_CAS;
	uint64_t open = counted ? snap->cas_open[t->id] : 0;
	uint64_t idle = counted ? snap->cas_idle[t->id] : 0;

	evbuffer_add_printf(b, "{\"url\":");
	status_json_str(b, t->url);
	/* Workers' gauges are read one after the other: clamp what a
	 * connection moving meanwhile would make negative. */
	evbuffer_add_printf(b,
	                    ",\"connections_counted\":%s,\"active\":%llu,"
	                    "\"idle\":%llu,\"members_up\":%u,\"members\":[",
	                    json_bool(counted),
	                    (unsigned long long)(open > idle ? open - idle : 0),
	                    (unsigned long long)idle,
	                    e ? atomic_load(&e->n_up) : 0);
	if (e != NULL) {
		pthread_mutex_lock(&e->lock);
		for (unsigned k = 0; k < e->n_members; k++) {
			if (k > 0)
				evbuffer_add(b, ",", 1);
			status_member(b, e->members[k]);
		}
		pthread_mutex_unlock(&e->lock);
	}
	evbuffer_add_printf(b, "]}");
}

static void status_site(struct evbuffer *b, const struct gen *g, unsigned i,
                        const struct stats_snapshot *snap)
{
	const struct conf *c = g->conf;
	const struct conf_site *s = &c->sites[i];
	int serving = status_serving_site(g, (int)i);
	bool down = gen_site_down(g, (int)i);

	evbuffer_add_printf(b, "{\"name\":");
	status_json_str(b, s->name);
	evbuffer_add_printf(b, ",\"own\":%s,\"cloud\":%s,\"external_url\":",
	                    json_bool((int)i == g->own_site),
	                    json_bool(s->cloud));
	json_str_or_null(b, s->external_url);
	evbuffer_add_printf(b, ",\"cas\":[");
	for (unsigned j = 0; j < s->n_cas; j++) {
		if (j > 0)
			evbuffer_add(b, ",", 1);
		status_json_str(b, s->cas[j]);
	}
	evbuffer_add_printf(b, "],\"up\":%s,\"fallback\":", json_bool(!down));
	json_str_or_null(b, s->fallback);
	evbuffer_add_printf(
	    b, ",\"fallback_in_use\":%s,\"served_by\":",
	    json_bool(down && serving >= 0 && serving != (int)i));
	json_str_or_null(b, serving >= 0 ? c->sites[serving].name : NULL);
	evbuffer_add_printf(
	    b, ",\"requests\":%llu,\"servers\":[",
	    (unsigned long long)(i < STATS_SITES ? snap->requests_site[i] : 0));
	for (unsigned j = 0; j < g->sites[i].n_cas; j++) {
		if (j > 0)
			evbuffer_add(b, ",", 1);
		status_server(b, &g->sites[i].cas[j], snap);
	}
	evbuffer_add_printf(b, "]}");
}

static void status_sites(struct evbuffer *b, const struct gen *g,
                         const struct stats_snapshot *snap)
{
	evbuffer_add_printf(b, ",\"sites\":[");
	for (unsigned i = 0; i < g->conf->n_sites; i++) {
		if (i > 0)
			evbuffer_add(b, ",", 1);
		status_site(b, g, i, snap);
	}
	evbuffer_add_printf(b, "]");
}

static void status_directory(struct evbuffer *b, struct proxy *p)
{
	struct ldap_cache *cache = dir_cache(p);
	struct ldap_cache_stats st;
	uint64_t asked;

	evbuffer_add_printf(b, ",\"directory\":");
	if (cache == NULL) {
		evbuffer_add_printf(b, "null");
		return;
	}
	ldap_cache_stats(cache, &st);
	asked = st.hits + st.misses;
	evbuffer_add_printf(
	    b,
	    "{\"up\":%s,\"hits\":%llu,\"misses\":%llu,\"stale\":%llu,"
	    "\"errors\":%llu,\"entries\":%u,\"hit_rate\":%.4f}",
	    json_bool(!st.down), (unsigned long long)st.hits,
	    (unsigned long long)st.misses, (unsigned long long)st.stale,
	    (unsigned long long)st.errors, st.entries,
	    asked ? (double)st.hits / (double)asked : 0.0);
}

/* Most rules /status lists, those that blocked most since the reload. */
#define TOP_RULES 5

/* The rules of g that blocked most, most first, as JSON entries. */
static void status_top_rules(struct evbuffer *b, const struct gen *g)
{
	unsigned n = g->rule_blocks ? g->conf->n_guard_devices : 0;
	uint64_t shown_max = UINT64_MAX;
	int last = -1;

	evbuffer_add_printf(b, ",\"top_rules\":[");
	for (unsigned k = 0; k < TOP_RULES; k++) {
		uint64_t best_hits = 0;
		int best = -1;

		/* the next by hits (ties by order), below the one shown */
		for (unsigned i = 0; i < n; i++) {
			uint64_t h = atomic_load_explicit(&g->rule_blocks[i],
			                                  memory_order_relaxed);

			if (h == 0 || h > shown_max ||
			    (h == shown_max && (int)i <= last))
				continue;
			if (best < 0 || h > best_hits) {
				best = (int)i;
				best_hits = h;
			}
		}
		if (best < 0)
			break;
		evbuffer_add_printf(b, "%s{\"line\":%u,\"blocked\":%llu}",
		                    k ? "," : "",
		                    g->conf->guard_devices[best].line,
		                    (unsigned long long)best_hits);
		shown_max = best_hits;
		last = best;
	}
	evbuffer_add_printf(b, "]");
}

/* The fleet's shared store (guard.store): null without one. */
static void status_store(struct evbuffer *b, struct proxy *p)
{
	struct store_stats st;

	if (!proxy_store_stats(p, &st)) {
		evbuffer_add_printf(b, ",\"store\":null");
		return;
	}
	evbuffer_add_printf(b,
	                    ",\"store\":{\"up\":%s,\"rtt_ms\":%.3f,"
	                    "\"errors\":%llu,\"timeouts\":%llu}",
	                    json_bool(st.up && st.sub_up), st.rtt_us / 1000.0,
	                    (unsigned long long)st.errors,
	                    (unsigned long long)st.timeouts);
}

static void status_guard(struct evbuffer *b, struct proxy *p,
                         const struct stats_snapshot *snap,
                         const struct gen *g)
{
	struct guard_counts gc;

	proxy_guard_counts(p, &gc);
	evbuffer_add_printf(
	    b,
	    ",\"guard\":{\"passwords\":%s,\"held_passwords\":%zu,"
	    "\"held_users\":%zu,\"throttle\":%s,\"throttled_keys\":%zu,"
	    "\"rules\":%u,\"answers\":{",
	    json_bool(gc.passwords_on), gc.held_passwords, gc.held_users,
	    json_bool(gc.throttle_on), gc.throttled_keys, gc.rules);
	for (unsigned r = 0; r < STATS_GUARD_REASONS; r++)
		evbuffer_add_printf(b, "%s\"%s\":%llu", r ? "," : "",
		                    stats_guard_reason(r),
		                    (unsigned long long)snap->guard_answers[r]);
	evbuffer_add_printf(b, "}");
	status_top_rules(b, g);
	status_store(b, p);
	evbuffer_add_printf(b, "}");
}

static void status_certificates(struct evbuffer *b, const struct gen *g,
                                time_t now)
{
	unsigned n = g->tls != NULL ? tls_server_n_certs(g->tls) : 0;

	evbuffer_add_printf(b, ",\"certificates\":[");
	for (unsigned i = 0; i < n && i < g->conf->n_certs; i++) {
		struct tls_cert_info ci;

		tls_server_cert_info(g->tls, i, &ci);
		evbuffer_add_printf(b, "%s{\"file\":", i ? "," : "");
		status_json_str(b, g->conf->certs[i].cert);
		evbuffer_add_printf(b, ",\"key_type\":\"%s\",\"names\":[",
		                    ci.key_type);
		for (size_t k = 0; k < ci.n_names; k++) {
			if (k > 0)
				evbuffer_add(b, ",", 1);
			status_json_str(b, ci.names[k]);
		}
		/* Whole days left, rounded down: 0 is "expires today". */
		evbuffer_add_printf(b,
		                    "],\"not_after\":%lld,\"days_left\":%lld}",
		                    (long long)ci.not_after,
		                    (long long)((ci.not_after - now) / 86400));
	}
	evbuffer_add_printf(b, "]");
}

/* The files a generation was read from, each once. */
static void status_files(struct evbuffer *b, const struct conf *c)
{
	evbuffer_add_printf(b, "\"files\":[");
	status_json_str(b, c->path);
	if (c->sitemap_file != NULL) {
		evbuffer_add(b, ",", 1);
		status_json_str(b, c->sitemap_file);
	}
	for (unsigned i = 0; i < c->n_certs; i++) {
		evbuffer_add(b, ",", 1);
		status_json_str(b, c->certs[i].cert);
		if (c->certs[i].key != NULL &&
		    strcmp(c->certs[i].key, c->certs[i].cert) != 0) {
			evbuffer_add(b, ",", 1);
			status_json_str(b, c->certs[i].key);
		}
	}
	if (c->upstream_ca_file != NULL) {
		evbuffer_add(b, ",", 1);
		status_json_str(b, c->upstream_ca_file);
	}
	if (c->guard_key_file != NULL) {
		evbuffer_add(b, ",", 1);
		status_json_str(b, c->guard_key_file);
	}
	evbuffer_add_printf(b, "]");
}

static void status_loaded(struct evbuffer *b, const struct gen *g,
                          const struct admin_hooks *hooks)
{
	evbuffer_add_printf(b, ",\"loaded\":{\"at\":%lld,",
	                    (long long)g->loaded_at);
	status_files(b, g->conf);
	evbuffer_add_printf(
	    b,
	    "},\"last_reload\":{\"at\":%lld,\"ok\":%s,"
	    "\"error\":",
	    (long long)hooks->last_reload,
	    json_bool(hooks->last_reload == 0 || hooks->last_reload_ok));
	status_json_str(b, hooks->last_reload_error);
	evbuffer_add_printf(b, ",\"ok_total\":%llu,\"failed_total\":%llu}",
	                    (unsigned long long)hooks->reloads_ok,
	                    (unsigned long long)hooks->reloads_failed);
}

void status_render(struct evbuffer *b, struct proxy *p, const struct gen *g,
                   const struct admin_hooks *hooks, const struct history *h)
{
	struct stats_snapshot *snap = calloc(1, sizeof(*snap));
	time_t now = time(NULL);

	if (snap == NULL) {
		evbuffer_add_printf(b, "{\"error\":\"out of memory\"}\n");
		return;
	}
	proxy_stats(p, snap);
	evbuffer_add_printf(b,
	                    "{\"generation\":%u,\"now\":%lld,"
	                    "\"uptime_seconds\":%lld,\"site\":",
	                    g->id, (long long)now,
	                    (long long)(now - hooks->started));
	status_json_str(b, g->conf->site);
	evbuffer_add_printf(b,
	                    ",\"client_connections\":%llu,"
	                    "\"upstream_connections\":%llu,"
	                    "\"held_requests\":%llu,\"site_map_users\":%zu",
	                    (unsigned long long)snap->client_connections,
	                    (unsigned long long)snap->upstream_connections,
	                    (unsigned long long)snap->held_requests,
	                    g->map ? sitemap_users(g->map) : (size_t)0);
	status_loaded(b, g, hooks);
	status_sites(b, g, snap);
	if (h != NULL) {
		evbuffer_add(b, ",", 1);
		history_json(h, b);
	}
	status_directory(b, p);
	status_guard(b, p, snap, g);
	status_certificates(b, g, now);
	evbuffer_add_printf(b, "}\n");
	free(snap);
}
