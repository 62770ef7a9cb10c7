/*
 * Prometheus text exposition of easfront's counters.
 */
#ifndef EF_ADMIN_METRICS_H
#define EF_ADMIN_METRICS_H

struct evbuffer;
struct stats_snapshot;
struct guard_counts;
struct gen;
struct admin_hooks;

/* Appends the whole /metrics page for snap and the password shield's
 * figures guard (site labels from g, which may be NULL) to out. */
void metrics_render(struct evbuffer *out, const struct stats_snapshot *snap,
		    const struct guard_counts *guard, const struct gen *g,
		    const struct admin_hooks *hooks);

struct store_stats;

/* Appends the shared store's families (guard.store; only when it is set:
 * a lone front end has no store to be down). */
void metrics_store(struct evbuffer *out, const struct store_stats *st);

#endif
