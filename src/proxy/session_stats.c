/*
 * What a session tells the counters: one update per request at its end, and
 * the gauge of requests held by a CAS.
 */

#include <string.h>

#include "proxy/session.h"
#include "proxy/stats.h"
#include "proxy/worker.h"

/* The decisions are four fixed words, told apart by their first letters
 * (this runs once per request). */
static unsigned decision_slot(const char *d)
{
	if (d == NULL)
		return 2;
	if (d[0] == 'p')
		return 0; /* proxy */
	if (d[0] == 'r' && d[1] == 'e' && d[2] == 'd')
		return 1; /* redirect, not reject */
	if (d[0] == 'l')
		return 3; /* local */
	return 2;
}

static void count_latency(struct stats *st, const struct reqlog *l)
{
	uint64_t us, ms;
	unsigned b = 0;

	if (l->t_first == 0 || l->t_connected == 0 || l->t_first < l->t_connected)
		return;
	us = l->t_first - l->t_connected;
	ms = us / 1000;
	while (b < STATS_BUCKETS && ms >= stats_bucket_ms[b])
		b++;
	stat_add(&st->upstream_latency[b], 1);
	stat_add(&st->upstream_latency_sum_us, us);
	stat_add(&st->upstream_latency_count, 1);
}

/* A cloud site's 451 (reason "cloud") or 403 ("cloud-min-version"), by
 * the version that got it. */
static void count_cloud(struct stats *st, const struct reqlog *l)
{
	unsigned kind;

	if (l->reason == NULL || strncmp(l->reason, "cloud", 5) != 0)
		return;
	if (l->reason[5] == '\0')
		kind = 0;
	else if (strcmp(l->reason + 5, "-min-version") == 0)
		kind = 1;
	else
		return;
	stat_add(&st->cloud_answers[kind * STATS_VERSIONS +
				    stats_version_slot(l->version)],
		 1);
}

void session_count_request(struct session *s)
{
	struct stats *st = &s->w->stats;
	const struct reqlog *l = &s->txn.log;

	stat_add(&st->requests_cmd[l->cmd_slot < STATS_CMDS ? l->cmd_slot
							       : STATS_CMD_OTHER],
		 1);
	stat_add(&st->requests_version[stats_version_slot(l->version)], 1);
	stat_add(&st->requests_decision[decision_slot(l->decision)], 1);
	if (l->site >= 0)
		stat_add(&st->requests_site[l->site < STATS_SITES
						    ? l->site
						    : STATS_SITES - 1],
			 1);
	if (l->status >= 100 && l->status < 600) {
		stat_add(&st->responses_status[l->status - 100], 1);
		/* Apart, so that an alert can tell easfront's own 5xx from
		 * the CAS's. */
		if (s->txn.flags & TXN_F_OWN)
			stat_add(&st->own_responses[l->status - 100], 1);
	}
	count_cloud(st, l);
	stat_add(&st->bytes_in, s->client.bytes);
	stat_add(&st->bytes_out, l->bytes_out + s->up.bytes);
	/* A held request's wait is the client's heartbeat, not latency. */
	if (!(s->txn.flags & TXN_F_HELD))
		count_latency(st, l);
}

void session_held_begin(struct session *s)
{
	if ((s->txn.flags & TXN_F_HELD) && !(s->txn.flags & TXN_F_HELD_GAUGE)) {
		s->txn.flags |= TXN_F_HELD_GAUGE;
		stat_add(&s->w->stats.held_requests, 1);
		screen_poll_begin(s);
	}
}

void session_held_end(struct session *s)
{
	if (s->txn.flags & TXN_F_HELD_GAUGE) {
		s->txn.flags &= ~TXN_F_HELD_GAUGE;
		stat_sub(&s->w->stats.held_requests, 1);
		screen_poll_end(s);
	}
}
