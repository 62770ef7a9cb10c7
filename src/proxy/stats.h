/*
 * Counters of the data path. Each worker owns one struct stats and is its
 * only writer; the admin thread reads them with relaxed atomic loads and
 * sums them, so counting costs a plain add on the hot path.
 */
#ifndef EF_PROXY_STATS_H
#define EF_PROXY_STATS_H

#include <stdint.h>

#include "core/stat.h"

/* Command slots: EAS codes 0..23, then the four legacy commands, then
 * OPTIONS, Autodiscover, anything else. */
#define STATS_CMD_OPTIONS 28
#define STATS_CMD_AUTODISCOVER 29
#define STATS_CMD_OTHER 30
#define STATS_CMDS 31
/* Versions: unknown, 2.5, 12.0, 12.1, 14.0, 14.1, 16.0, 16.1. */
#define STATS_VERSIONS 8
#define STATS_DECISIONS 4 /* proxy, redirect, reject, local */
#define STATS_SITES 32	  /* sites beyond the 32nd count in the last slot */
#define STATS_STATUS 500  /* 100..599 */
/* Upstream first-byte latency buckets, upper bounds in ms; held requests
 * are not counted (their latency is the client's heartbeat). */
#define STATS_BUCKETS 12
/* Answers of the guard: device-blocked, stale-password, password-guessing,
 * throttled-device, throttled-user, throttled-client. */
#define STATS_GUARD_REASONS 6
/* Answers for cloud sites, by kind (redirect, refused) then version slot:
 * slot kind * STATS_VERSIONS + version slot. */
#define STATS_CLOUD_ANSWERS (2 * STATS_VERSIONS)
/* CAS whose connections are counted one by one (cas_target.id below it);
 * the status page shows them, and a front end names far fewer CAS. */
#define STATS_CAS 64
extern const unsigned stats_bucket_ms[STATS_BUCKETS];

struct stats {
	stat_t requests_cmd[STATS_CMDS];
	stat_t requests_version[STATS_VERSIONS];
	stat_t requests_decision[STATS_DECISIONS];
	stat_t requests_site[STATS_SITES];
	stat_t responses_status[STATS_STATUS];
	stat_t upstream_latency[STATS_BUCKETS + 1]; /* last: +Inf */
	stat_t upstream_latency_sum_us;
	stat_t upstream_latency_count;
	stat_t bytes_in;
	stat_t bytes_out;
	stat_t tls_handshakes;
	stat_t tls_resumed;
	stat_t tls_failures;
	stat_t upstream_connects;
	stat_t upstream_connect_failures;
	stat_t upstream_reused;
	stat_t guard_answers[STATS_GUARD_REASONS];
	stat_t cloud_answers[STATS_CLOUD_ANSWERS];
	stat_t own_responses[STATS_STATUS]; /* answers easfront wrote itself,
					       by status (100..599) */
	/* gauges */
	stat_t client_connections;
	stat_t upstream_connections;
	stat_t held_requests;
	stat_t cas_open[STATS_CAS]; /* connections to each CAS, by id */
	stat_t cas_idle[STATS_CAS]; /* of those, idle in the pool */
};

/* The slot of a command code (enum eas_cmd, -1 none). */
unsigned stats_cmd_slot(int cmd);
/* The name of a command slot, for labels. */
const char *stats_cmd_name(unsigned slot);
/* The slot of a version code (0, 25, 120...). */
unsigned stats_version_slot(unsigned version);
/* The label of a version slot ("unknown", "2.5"...). */
const char *stats_version_name(unsigned slot);
/* The label of a decision slot. */
const char *stats_decision_name(unsigned slot);

/* The reason label of a guard answer slot ("device-blocked"...). */
const char *stats_guard_reason(unsigned slot);

/* Plain numbers summed over every worker, for the admin endpoint. */
struct stats_snapshot {
	uint64_t requests_cmd[STATS_CMDS];
	uint64_t requests_version[STATS_VERSIONS];
	uint64_t requests_decision[STATS_DECISIONS];
	uint64_t requests_site[STATS_SITES];
	uint64_t responses_status[STATS_STATUS];
	uint64_t upstream_latency[STATS_BUCKETS + 1];
	uint64_t upstream_latency_sum_us;
	uint64_t upstream_latency_count;
	uint64_t bytes_in, bytes_out;
	uint64_t tls_handshakes, tls_resumed, tls_failures;
	uint64_t upstream_connects, upstream_connect_failures, upstream_reused;
	uint64_t guard_answers[STATS_GUARD_REASONS];
	uint64_t cloud_answers[STATS_CLOUD_ANSWERS];
	uint64_t own_responses[STATS_STATUS];
	uint64_t client_connections, upstream_connections, held_requests;
	uint64_t cas_open[STATS_CAS], cas_idle[STATS_CAS];
};

/* Adds the counters of s into snap. */
void stats_accumulate(const struct stats *s, struct stats_snapshot *snap);

#endif
