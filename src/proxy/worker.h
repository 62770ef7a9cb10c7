/*
 * A worker thread: its event base, listeners, upstream pools and sessions.
 * Everything here is touched by its own thread only, except the fields
 * marked otherwise.
 */
#ifndef EF_PROXY_WORKER_H
#define EF_PROXY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "http/http.h"
#include "net/conn.h"
#include "proxy/limits.h"
#include "proxy/polls.h"
#include "proxy/stats.h"
#include "upstream/cas.h"
#include "upstream/upstream.h"

struct proxy;
struct gen;
struct session;
struct ldap_client;
struct ldap_cache;
struct conf_ldap;
struct rules_memo;
struct shields;
struct buckets;

/* Bytes of the per-worker scratch buffer for building forwarded heads: the
 * largest accepted head plus the headers easfront adds. */
#define WORKER_SCRATCH (32768 + 4096)

struct worker {
	struct proxy *p;
	unsigned idx;
	pthread_t thread;
	struct event_base *base;	 /* owned */
	struct evconnlistener **lev;	 /* owned; n_lev entries */
	int *lfd;			 /* listening fds until the thread
					    wraps them; owned */
	unsigned n_lev;
	struct gen *gen;		 /* current generation; one ref */
	struct event *wakeup;		 /* owned; fires on wakeup_fd */
	int wakeup_fd;			 /* owned: an eventfd other threads
					    write to (the base takes no
					    locks) */
	struct event *reaper;		 /* owned; frees closed sessions */
	struct event *drain_timer;	 /* owned; stop deadline */
	struct session *sessions;	 /* live sessions */
	struct session *dead;		 /* closed, to be freed */
	unsigned n_sessions;
	struct upstream_pools pools;	 /* owned: idle CAS connections */
	unsigned rr;			 /* round-robin cursor over CAS */
	struct ldap_client *ldap;	 /* owned: the directory, or NULL */
	const struct conf_ldap *ldap_conf; /* what ldap was made from (in
					      w->gen's conf) */
	bool stopping;
	struct event *accept_pause;	 /* owned: resumes accepting */
	unsigned drain_seconds;
	struct stats stats;		 /* written by this thread only */		 /* set before stop is signalled */
	/* scratch, reused by every request of this worker */
	struct http_request req;
	struct http_response resp;
	const char *head_buf;		 /* the head req was parsed from */
	size_t head_len;
	char scratch[WORKER_SCRATCH];
	struct conn_loop loop;		 /* the connections' shared part */
	char *alog;			 /* owned: access-log lines not yet
					    written */
	size_t alog_len;
	struct event *alog_ev;		 /* owned: writes alog, end of pass */
	struct rules_memo *rules_memo;	 /* owned: device rules' regex
					    results of recent devices */
	uint64_t poll_serials;		 /* requests registered as
					    long-polls by this worker */
	/* Long-polls of this worker other threads chose to end (polls.h):
	 * posted under poll_lock, taken on this thread at its wakeup. */
	pthread_mutex_t poll_lock;
	struct poll_msg *poll_msgs;	 /* owned */
	size_t n_poll_msgs, cap_poll_msgs;
};

/* One long-poll to end, for the worker it lives on. */
struct poll_msg {
	struct poll_ref ref;
	uint64_t key;
};

/* Asks worker w (any thread may) to end its long-poll r of device key. */
void worker_end_poll(struct worker *w, const struct poll_ref *r,
		     uint64_t key);

/* The shared part of the proxy. */
struct proxy {
	struct worker *workers; /* owned; n_workers entries */
	unsigned n_workers;
	pthread_mutex_t lock;	/* guards gen and the cas registry */
	struct gen *gen;	/* the published generation; one ref */
	struct cas_registry cas; /* id -> entry; owned; only grows */
	struct control *control; /* DNS and health checks; owned */
	struct limits limits;	/* connection caps, shared */
	struct ldap_cache *ldap_cache; /* owned: the directory's answers,
					  shared by every worker */
	struct shields *shields; /* owned: the password shield, shared by
				    every worker, kept across reloads */
	struct fleet *fleet;     /* owned: the shield shared through the
	                            store; on the control loop, NULL outside
	                            proxy_control_start..stop */
	uint8_t fp_key[16];	/* random: the key of the screening memo's
				   Authorization fingerprint */
	struct buckets *buckets; /* owned: the throttle's, shared by every
				    worker, kept across reloads */
	struct polls *polls;	/* owned: every worker's long-polls by
				   device */
	atomic_bool stopping;
	bool started;
};

/* Adds s to the worker's session list / removes and schedules its free. */
void worker_session_add(struct worker *w, struct session *s);
void worker_session_dead(struct worker *w, struct session *s);

#endif
