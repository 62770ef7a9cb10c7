#include "admin/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include <event2/buffer.h>

#include "admin/admin.h"
#include "admin/status.h"
#include "conf/conf.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"
#include "store/store.h"
#include "tls/tls.h"
#include "upstream/cas.h"

static void family(struct evbuffer *out, const char *name, const char *type,
		   const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
			    name, type);
}

static void sample(struct evbuffer *out, const char *name, uint64_t v)
{
	evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)v);
}

static void one(struct evbuffer *out, const char *name, const char *type,
		const char *help, uint64_t v)
{
	family(out, name, type, help);
	sample(out, name, v);
}

/* Label values come from the config (site names): escape what the text
 * format requires. */
static void label_value(struct evbuffer *out, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			evbuffer_add_printf(out, "\\%c", *v);
		else if (*v == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, v, 1);
	}
}

/* A counter family with one sample per slot, labelled label="NAME" where
 * NAME is name_of(slot); a slot without a name is left out. */
static void by_label(struct evbuffer *out, const char *name, const char *help,
		     const char *label, const char *(*name_of)(unsigned),
		     const uint64_t *v, unsigned n)
{
	family(out, name, "counter", help);
	for (unsigned i = 0; i < n; i++)
		if (name_of(i) != NULL)
			evbuffer_add_printf(out, "%s{%s=\"%s\"} %llu\n", name,
					    label, name_of(i),
					    (unsigned long long)v[i]);
}

/* A counter family by HTTP status (slots 100..599), the statuses seen
 * only. */
static void by_status(struct evbuffer *out, const char *name,
		      const char *help, const uint64_t *v)
{
	family(out, name, "counter", help);
	for (unsigned i = 0; i < STATS_STATUS; i++)
		if (v[i] != 0)
			evbuffer_add_printf(out, "%s{status=\"%u\"} %llu\n",
					    name, i + 100,
					    (unsigned long long)v[i]);
}

static void requests(struct evbuffer *out, const struct stats_snapshot *s,
		     const struct gen *g)
{
	by_label(out, "easfront_requests_total", "Requests by EAS command.",
		 "cmd", stats_cmd_name, s->requests_cmd, STATS_CMDS);
	by_label(out, "easfront_requests_by_version_total",
		 "Requests by EAS protocol version.", "version",
		 stats_version_name, s->requests_version, STATS_VERSIONS);
	by_label(out, "easfront_requests_by_decision_total",
		 "Requests by routing decision.", "decision",
		 stats_decision_name, s->requests_decision, STATS_DECISIONS);
	family(out, "easfront_requests_by_site_total", "counter",
	       "Requests by the site whose CAS pool or URL served them.");
	for (unsigned i = 0; g != NULL && i < g->conf->n_sites && i < STATS_SITES;
	     i++) {
		evbuffer_add_printf(out, "easfront_requests_by_site_total{site=\"");
		label_value(out, g->conf->sites[i].name);
		evbuffer_add_printf(out, "\"} %llu\n",
				    (unsigned long long)s->requests_site[i]);
	}
	by_status(out, "easfront_responses_total", "Responses by HTTP status.",
		  s->responses_status);
	by_status(out, "easfront_own_responses_total",
		  "Responses easfront wrote itself (its own errors, redirects, "
		  "guard answers, health page), by HTTP status; the rest of "
		  "easfront_responses_total came from a CAS.",
		  s->own_responses);
}

/* Every answer and version is always there, like the guard's reasons. */
static void cloud(struct evbuffer *out, const struct stats_snapshot *s)
{
	static const char *const answers[2] = {"redirect", "refused"};

	family(out, "easfront_cloud_answers_total", "counter",
	       "Requests of users on a cloud site (Exchange Online): 451 to "
	       "it (redirect) or 403 cloud-min-version (refused), by EAS "
	       "version.");
	for (unsigned k = 0; k < 2; k++)
		for (unsigned v = 0; v < STATS_VERSIONS; v++)
			evbuffer_add_printf(
			    out,
			    "easfront_cloud_answers_total{answer=\"%s\","
			    "version=\"%s\"} %llu\n",
			    answers[k], stats_version_name(v),
			    (unsigned long long)
				s->cloud_answers[k * STATS_VERSIONS + v]);
}

static void latency(struct evbuffer *out, const struct stats_snapshot *s)
{
	uint64_t cum = 0;

	family(out, "easfront_upstream_first_byte_seconds", "histogram",
	       "Time from sending a request to a CAS to its first response "
	       "byte (held Ping/Sync excluded).");
	for (unsigned b = 0; b < STATS_BUCKETS; b++) {
		cum += s->upstream_latency[b];
		evbuffer_add_printf(out,
				    "easfront_upstream_first_byte_seconds_bucket"
				    "{le=\"%g\"} %llu\n",
				    stats_bucket_ms[b] / 1000.0,
				    (unsigned long long)cum);
	}
	cum += s->upstream_latency[STATS_BUCKETS];
	evbuffer_add_printf(out,
			    "easfront_upstream_first_byte_seconds_bucket{le=\"+"
			    "Inf\"} %llu\n"
			    "easfront_upstream_first_byte_seconds_sum %.6f\n"
			    "easfront_upstream_first_byte_seconds_count %llu\n",
			    (unsigned long long)cum,
			    s->upstream_latency_sum_us / 1e6,
			    (unsigned long long)s->upstream_latency_count);
}

static void connections(struct evbuffer *out, const struct stats_snapshot *s)
{
	one(out, "easfront_client_connections", "gauge",
	    "Open client connections.", s->client_connections);
	one(out, "easfront_upstream_connections", "gauge",
	    "Open connections to CAS servers.", s->upstream_connections);
	one(out, "easfront_held_requests", "gauge",
	    "Ping and Sync requests a CAS is holding now.", s->held_requests);
	one(out, "easfront_tls_handshakes_total", "counter",
	    "Completed client TLS handshakes.", s->tls_handshakes);
	one(out, "easfront_tls_resumed_total", "counter",
	    "Client TLS handshakes that resumed a session.", s->tls_resumed);
	one(out, "easfront_tls_handshake_failures_total", "counter",
	    "Client TLS handshakes that failed.", s->tls_failures);
	one(out, "easfront_upstream_connects_total", "counter",
	    "Connections opened to CAS servers.", s->upstream_connects);
	one(out, "easfront_upstream_connect_failures_total", "counter",
	    "Connections to CAS servers that failed.",
	    s->upstream_connect_failures);
	one(out, "easfront_upstream_reused_total", "counter",
	    "Requests sent over a kept-alive CAS connection.",
	    s->upstream_reused);
	one(out, "easfront_received_bytes_total", "counter",
	    "Request body bytes received from clients.", s->bytes_in);
	one(out, "easfront_sent_bytes_total", "counter",
	    "Response bytes sent to clients.", s->bytes_out);
}

/* Every reason is always there, so a rate over it never starts from a
 * missing series. */
static void guard(struct evbuffer *out, const struct stats_snapshot *s,
		  const struct guard_counts *gc)
{
	by_label(out, "easfront_guard_answers_total",
		 "Requests the guard answered itself, by reason.", "reason",
		 stats_guard_reason, s->guard_answers, STATS_GUARD_REASONS);
	one(out, "easfront_guard_held_passwords", "gauge",
	    "Passwords the password shield answers 401 itself now "
	    "(stale-password).",
	    gc->held_passwords);
	one(out, "easfront_guard_held_users", "gauge",
	    "Users in a guessing hold now (password-guessing).",
	    gc->held_users);
	one(out, "easfront_guard_entries", "gauge",
	    "Entries in the password shield's table.", gc->entries);
	one(out, "easfront_guard_max_entries", "gauge",
	    "Entries the password shield's table holds at the most "
	    "(guard.max_entries).",
	    gc->max_entries);
	one(out, "easfront_guard_evictions_total", "counter",
	    "Entries pushed out of the password shield's full table.",
	    gc->evictions);
	one(out, "easfront_guard_turned_away_total", "counter",
	    "Failures and successes not recorded: the password shield's "
	    "table was full of holds and known-good passwords "
	    "(guard.max_entries too small, or a flood).",
	    gc->turned_away);
	one(out, "easfront_guard_throttled_keys", "gauge",
	    "Throttle buckets (devices, users, client addresses) not full "
	    "again now: the keys being limited or about to be.",
	    gc->throttled_keys);
	one(out, "easfront_guard_throttle_evictions_total", "counter",
	    "Throttle buckets given up for room (guard.max_entries).",
	    gc->throttle_evictions);
	one(out, "easfront_guard_shared_holds_total", "counter",
	    "Holds begun here because another front end reached them "
	    "(guard.store).",
	    gc->shared_holds);
	one(out, "easfront_guard_shared_dropped_total", "counter",
	    "Refusals, clears and known-good marks never told to the store: "
	    "more were waiting, or kept while it was down, than the control "
	    "loop keeps.",
	    gc->shared_dropped);
	one(out, "easfront_guard_throttle_shared_dropped_total", "counter",
	    "Throttle tokens never told to the store: more buckets were "
	    "spent between two of its flushes than its tally holds, or "
	    "while it was down than the control loop keeps.",
	    gc->throttle_shared_dropped);
	one(out, "easfront_guard_shared_waiting", "gauge",
	    "Refusals, clears, known-good marks and lifts kept while the "
	    "store was down and not told to it yet.",
	    gc->shared_waiting);
	one(out, "easfront_guard_throttle_shared_waiting", "gauge",
	    "Throttle buckets' tallies kept while the store was down and not "
	    "told to it yet.",
	    gc->throttle_shared_waiting);
	one(out, "easfront_guard_rules", "gauge",
	    "Device rules of the configuration serving new requests "
	    "(guard.devices).",
	    gc->rules);
}

/* Opens a sample of name with site="S" (and a comma when more labels
 * follow). */
static void site_sample(struct evbuffer *out, const char *name,
			const char *site, bool more)
{
	evbuffer_add_printf(out, "%s{site=\"", name);
	label_value(out, site);
	evbuffer_add_printf(out, "\"%s", more ? "," : "} ");
}

static void sites_health(struct evbuffer *out, const struct gen *g)
{
	const struct conf *c = g->conf;

	family(out, "easfront_site_up", "gauge",
	       "1 while some CAS of the site is up (a cloud site always is).");
	for (unsigned i = 0; i < c->n_sites; i++) {
		site_sample(out, "easfront_site_up", c->sites[i].name, false);
		evbuffer_add_printf(out, "%d\n", !gen_site_down(g, (int)i));
	}
	family(out, "easfront_site_fallback_active", "gauge",
	       "1 while the site is down and its fallback serves its users.");
	for (unsigned i = 0; i < c->n_sites; i++) {
		int serving = status_serving_site(g, (int)i);

		if (c->sites[i].fallback == NULL)
			continue;
		site_sample(out, "easfront_site_fallback_active",
			    c->sites[i].name, false);
		evbuffer_add_printf(out, "%d\n",
				    serving >= 0 && serving != (int)i);
	}
}

/* Opens a sample of name labelled with site, CAS URL t and, when addr is
 * not NULL, member address. */
static void cas_sample(struct evbuffer *out, const char *name,
		       const char *site, const struct cas_target *t,
		       const char *addr)
{
	site_sample(out, name, site, true);
	evbuffer_add_printf(out, "cas=\"");
	label_value(out, t->url);
	if (addr != NULL) {
		evbuffer_add_printf(out, "\",address=\"");
		label_value(out, addr);
	}
	evbuffer_add_printf(out, "\"");
}

static void cas_members(struct evbuffer *out, const struct gen *g)
{
	family(out, "easfront_cas_up", "gauge",
	       "1 while the CAS address (from DNS) passes its health checks.");
	for (unsigned i = 0; i < g->conf->n_sites; i++)
		for (unsigned j = 0; j < g->sites[i].n_cas; j++) {
			const struct cas_target *t = &g->sites[i].cas[j];
			struct cas_entry *e = t->entry;

			if (e == NULL)
				continue;
			pthread_mutex_lock(&e->lock);
			for (unsigned k = 0; k < e->n_members; k++) {
				cas_sample(out, "easfront_cas_up",
					   g->conf->sites[i].name, t,
					   e->members[k]->name);
				evbuffer_add_printf(
				    out, "} %d\n",
				    atomic_load(&e->members[k]->up) ? 1 : 0);
			}
			pthread_mutex_unlock(&e->lock);
		}
}

static void cas_connections(struct evbuffer *out, const struct gen *g,
			    const struct stats_snapshot *s)
{
	family(out, "easfront_cas_connections", "gauge",
	       "Connections to a CAS now: active (carrying a request) or "
	       "idle (pooled).");
	for (unsigned i = 0; i < g->conf->n_sites; i++)
		for (unsigned j = 0; j < g->sites[i].n_cas; j++) {
			const struct cas_target *t = &g->sites[i].cas[j];
			uint64_t open, idle;

			if (t->id >= STATS_CAS)
				continue;
			open = s->cas_open[t->id];
			idle = s->cas_idle[t->id];
			cas_sample(out, "easfront_cas_connections",
				   g->conf->sites[i].name, t, NULL);
			evbuffer_add_printf(out, ",state=\"active\"} %llu\n",
					    (unsigned long long)(open > idle
								     ? open - idle
								     : 0));
			cas_sample(out, "easfront_cas_connections",
				   g->conf->sites[i].name, t, NULL);
			evbuffer_add_printf(out, ",state=\"idle\"} %llu\n",
					    (unsigned long long)idle);
		}
}

static void certificates(struct evbuffer *out, const struct gen *g)
{
	unsigned n = g->tls != NULL ? tls_server_n_certs(g->tls) : 0;

	family(out, "easfront_certificate_expiry_timestamp_seconds", "gauge",
	       "Unix time the served certificate expires (tls.certificates; "
	       "name: the first name it serves).");
	for (unsigned i = 0; i < n && i < g->conf->n_certs; i++) {
		struct tls_cert_info ci;

		tls_server_cert_info(g->tls, i, &ci);
		evbuffer_add_printf(
		    out, "easfront_certificate_expiry_timestamp_seconds{file=\"");
		label_value(out, g->conf->certs[i].cert);
		evbuffer_add_printf(out, "\",name=\"");
		label_value(out, ci.n_names > 0 ? ci.names[0] : "");
		evbuffer_add_printf(out, "\"} %lld\n", (long long)ci.not_after);
	}
}

/* What the status page shows of sites, CAS and certificates, as series an
 * alert can watch. */
static void live(struct evbuffer *out, const struct gen *g,
		 const struct stats_snapshot *s)
{
	sites_health(out, g);
	cas_members(out, g);
	cas_connections(out, g, s);
	certificates(out, g);
	one(out, "easfront_config_loaded_timestamp_seconds", "gauge",
	    "Unix time the configuration serving new requests was read.",
	    (uint64_t)g->loaded_at);
}

void metrics_store(struct evbuffer *out, const struct store_stats *st)
{
	one(out, "easfront_store_up", "gauge",
	    "1 while the shared store (guard.store) answers; 0: this front "
	    "end counts alone.",
	    st->up);
	one(out, "easfront_store_errors_total", "counter",
	    "Store connections refused or lost, error and malformed replies.",
	    st->errors);
	one(out, "easfront_store_timeouts_total", "counter",
	    "Store commands and handshakes without an answer in time.",
	    st->timeouts);
	one(out, "easfront_store_reconnects_total", "counter",
	    "Store connections made up again after a loss.", st->reconnects);
	one(out, "easfront_store_messages_total", "counter",
	    "Holds and clears heard from the fleet (this front end's own "
	    "included).",
	    st->messages);
	family(out, "easfront_store_rtt_seconds", "gauge",
	       "Round trip of the last command the store answered.");
	evbuffer_add_printf(out, "easfront_store_rtt_seconds %llu.%06llu\n",
	                    (unsigned long long)(st->rtt_us / 1000000),
	                    (unsigned long long)(st->rtt_us % 1000000));
}

void metrics_render(struct evbuffer *out, const struct stats_snapshot *snap,
		    const struct guard_counts *gc, const struct gen *g,
		    const struct admin_hooks *hooks)
{
	requests(out, snap, g);
	cloud(out, snap);
	latency(out, snap);
	connections(out, snap);
	guard(out, snap, gc);
	if (g != NULL)
		live(out, g, snap);
	family(out, "easfront_reloads_total", "counter",
	       "Configuration reloads by outcome.");
	evbuffer_add_printf(out,
			    "easfront_reloads_total{result=\"ok\"} %llu\n"
			    "easfront_reloads_total{result=\"failed\"} %llu\n",
			    (unsigned long long)hooks->reloads_ok,
			    (unsigned long long)hooks->reloads_failed);
	one(out, "easfront_config_last_reload_successful", "gauge",
	    "0 while the last reload was refused (the previous configuration "
	    "serves), else 1.",
	    hooks->last_reload == 0 || hooks->last_reload_ok);
	one(out, "easfront_config_generation", "gauge",
	    "Generation of the configuration serving new requests.",
	    g ? g->id : 0);
	one(out, "easfront_start_time_seconds", "gauge",
	    "Unix time easfront started.", (uint64_t)hooks->started);
}
