#include "proxy/stats.h"

#include "eas/eas.h"

const unsigned stats_bucket_ms[STATS_BUCKETS] = {
	1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 30000,
};

unsigned stats_cmd_slot(int cmd)
{
	if (cmd >= 0 && cmd <= 23)
		return (unsigned)cmd;
	if (cmd >= EAS_CMD_GETHIERARCHY && cmd <= EAS_CMD_MOVECOLLECTION)
		return 24 + (unsigned)(cmd - EAS_CMD_GETHIERARCHY);
	return STATS_CMD_OTHER;
}

const char *stats_cmd_name(unsigned slot)
{
	if (slot < 24 || (slot >= 24 && slot < 28)) {
		const char *n = eas_cmd_name(slot < 24 ? (int)slot
						      : EAS_CMD_GETHIERARCHY +
								(int)(slot - 24));
		return n != NULL && n[0] != '\0' ? n : NULL;
	}
	if (slot == STATS_CMD_OPTIONS)
		return "OPTIONS";
	if (slot == STATS_CMD_AUTODISCOVER)
		return "Autodiscover";
	return "other";
}

unsigned stats_version_slot(unsigned version)
{
	static const unsigned codes[] = {25, 120, 121, 140, 141, 160, 161};

	for (unsigned i = 0; i < 7; i++)
		if (codes[i] == version)
			return i + 1;
	return 0;
}

const char *stats_version_name(unsigned slot)
{
	static const char *const names[STATS_VERSIONS] = {
		"unknown", "2.5", "12.0", "12.1", "14.0", "14.1", "16.0", "16.1",
	};

	return slot < STATS_VERSIONS ? names[slot] : "unknown";
}

const char *stats_decision_name(unsigned slot)
{
	static const char *const names[STATS_DECISIONS] = {
		"proxy", "redirect", "reject", "local",
	};

	return slot < STATS_DECISIONS ? names[slot] : "reject";
}

const char *stats_guard_reason(unsigned slot)
{
	static const char *const names[STATS_GUARD_REASONS] = {
		"device-blocked",   "stale-password", "password-guessing",
		"throttled-device", "throttled-user", "throttled-client",
	};

	return slot < STATS_GUARD_REASONS ? names[slot] : "other";
}

#define SUM(f) snap->f += atomic_load_explicit(&s->f, memory_order_relaxed)
#define SUM_ARRAY(f)                                                           \
	for (size_t i = 0; i < sizeof(s->f) / sizeof(s->f[0]); i++)            \
	snap->f[i] += atomic_load_explicit(&s->f[i], memory_order_relaxed)

void stats_accumulate(const struct stats *s, struct stats_snapshot *snap)
{
	SUM_ARRAY(requests_cmd);
	SUM_ARRAY(requests_version);
	SUM_ARRAY(requests_decision);
	SUM_ARRAY(requests_site);
	SUM_ARRAY(responses_status);
	SUM_ARRAY(upstream_latency);
	SUM(upstream_latency_sum_us);
	SUM(upstream_latency_count);
	SUM(bytes_in);
	SUM(bytes_out);
	SUM(tls_handshakes);
	SUM(tls_resumed);
	SUM(tls_failures);
	SUM(upstream_connects);
	SUM(upstream_connect_failures);
	SUM(upstream_reused);
	SUM_ARRAY(guard_answers);
	SUM_ARRAY(cloud_answers);
	SUM_ARRAY(own_responses);
	SUM(client_connections);
	SUM(upstream_connections);
	SUM(held_requests);
	SUM_ARRAY(cas_open);
	SUM_ARRAY(cas_idle);
}
