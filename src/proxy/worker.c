/*
 * Worker threads and the shared proxy object: listening sockets, generation
 * hand-over between threads, the session reaper, and the stop sequence.
 */
#include "proxy/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/thread.h>
#include <openssl/rand.h>

#include "conf/conf.h"
#include "core/log.h"
#include "guard/rules.h"
#include "proxy/accesslog.h"
#include "upstream/cas.h"
#include "upstream/control.h"
#include "proxy/dir.h"
#include "proxy/fleet.h"
#include "ldap/ldap_src.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"
#include "proxy/session.h"
#include "proxy/shields.h"
#include "proxy/buckets.h"
#include "proxy/stats.h"
#include "upstream/upstream.h"

static struct gen *proxy_current(struct proxy *p);

/* Wakes a worker from another thread. */
static void worker_poke(struct worker *w)
{
	if (w->wakeup_fd >= 0)
		eventfd_write(w->wakeup_fd, 1);
}

static char *errdup(const char *what, const char *arg)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "listen %s: %s: %s", arg, what, strerror(errno));
	return strdup(buf);
}

struct proxy *proxy_new(unsigned n_workers, char **err)
{
	struct proxy *p;

	if (evthread_use_pthreads() != 0) {
		*err = strdup("libevent: no pthread support");
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		goto fail;
	p->workers = calloc(n_workers, sizeof(*p->workers));
	if (p->workers == NULL)
		goto fail;
	p->n_workers = n_workers;
	p->shields = shields_new();
	p->buckets = buckets_new();
	p->polls = polls_new();
	if (p->shields == NULL || p->buckets == NULL || p->polls == NULL ||
	    RAND_bytes(p->fp_key, sizeof(p->fp_key)) != 1)
		goto fail;
	pthread_mutex_init(&p->lock, NULL);
	limits_init(&p->limits);
	for (unsigned i = 0; i < n_workers; i++) {
		p->workers[i].p = p;
		p->workers[i].idx = i;
		p->workers[i].wakeup_fd = -1;
		pthread_mutex_init(&p->workers[i].poll_lock, NULL);
	}
	return p;
fail:
	if (p != NULL) {
		free(p->workers);
		shields_free(p->shields);
		buckets_free(p->buckets);
		polls_free(p->polls);
	}
	free(p);
	*err = strdup("out of memory");
	return NULL;
}

/* One listening socket; SO_REUSEPORT lets the kernel spread connections over
 * the workers' sockets for the same address. */
static int open_listener(const char *addr, char **err)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *why = NULL;
	char buf[512];
	int fd, one = 1;

	/* conf_load checked it already: this only says why again. */
	if (conf_addr_parse(addr, &ss, &len, &why) != 0) {
		snprintf(buf, sizeof(buf), "listen %s: %s", addr, why);
		*err = strdup(buf);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		*err = errdup("socket", addr);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) != 0 ||
	    listen(fd, 4096) != 0) {
		*err = errdup("bind", addr);
		close(fd);
		return -1;
	}
	return fd;
}

int proxy_listen(struct proxy *p, const struct conf *c, char **err)
{
	for (unsigned i = 0; i < p->n_workers; i++) {
		struct worker *w = &p->workers[i];

		w->lfd = calloc(c->n_listen, sizeof(int));
		if (w->lfd == NULL) {
			*err = strdup("out of memory");
			return -1;
		}
		for (unsigned j = 0; j < c->n_listen; j++) {
			w->lfd[j] = open_listener(c->listen[j].address, err);
			if (w->lfd[j] < 0)
				return -1;
			w->n_lev++;
		}
	}
	return 0;
}

struct cas_entry *proxy_cas(struct proxy *p, const char *url)
{
	struct cas_entry *e;

	pthread_mutex_lock(&p->lock);
	e = cas_registry_get(&p->cas, url);
	pthread_mutex_unlock(&p->lock);
	return e;
}

/* The control loop follows the generation: the CAS it names are in use,
 * each with the health settings of the first site that names it. */
static void control_follow(struct proxy *p, const struct gen *g)
{
	const struct conf *c = g->conf;

	for (unsigned i = 0; i < p->cas.n; i++)
		p->cas.cas[i]->in_use = false;
	for (unsigned i = 0; i < c->n_sites; i++)
		for (unsigned j = 0; j < g->sites[i].n_cas; j++) {
			struct cas_entry *e = g->sites[i].cas[j].entry;

			if (e != NULL && !e->in_use)
				cas_entry_configure(e, &c->sites[i].health);
		}
	control_sync(p->control, g->client_ctx, c->dns_min_ttl, c->dns_max_ttl);
}

int proxy_control_start(struct proxy *p, struct event_base *base, char **err)
{
	if (p->gen == NULL) {
		*err = strdup("no generation to watch");
		return -1;
	}
	/* Before the CAS: a front end whose DNS servers fail still shares
	 * its holds. */
	p->fleet = fleet_new(base, p->shields, p->buckets);
	if (p->fleet != NULL)
		fleet_follow(p->fleet, p->gen);
	p->control = control_new(&p->cas, base, p->gen->conf->dns_servers,
				 p->gen->conf->n_dns_servers, err);
	if (p->control == NULL)
		return -1;
	control_follow(p, p->gen);
	return 0;
}

void proxy_control_stop(struct proxy *p)
{
	fleet_free(p->fleet);
	p->fleet = NULL;
	control_free(p->control);
	p->control = NULL;
}

void proxy_publish(struct proxy *p, struct gen *g)
{
	struct gen *old;

	pthread_mutex_lock(&p->lock);
	old = p->gen;
	p->gen = g;
	pthread_mutex_unlock(&p->lock);
	if (p->control != NULL)
		control_follow(p, g);
	dir_publish(p, g);
	shields_configure(p->shields, g);
	if (p->fleet != NULL)
		fleet_follow(p->fleet, g);
	buckets_configure(p->buckets, g);
	gen_release(old);
	if (!p->started)
		return;
	for (unsigned i = 0; i < p->n_workers; i++)
		worker_poke(&p->workers[i]);
}

bool proxy_store_stats(struct proxy *p, struct store_stats *out)
{
	return fleet_stats(p->fleet, out);
}

void proxy_stats(struct proxy *p, struct stats_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < p->n_workers; i++)
		stats_accumulate(&p->workers[i].stats, out);
}

struct gen *proxy_gen_hold(struct proxy *p)
{
	return proxy_current(p);
}

static struct gen *proxy_current(struct proxy *p)
{
	struct gen *g;

	pthread_mutex_lock(&p->lock);
	g = p->gen ? gen_hold(p->gen) : NULL;
	pthread_mutex_unlock(&p->lock);
	return g;
}

void worker_session_add(struct worker *w, struct session *s)
{
	s->next = w->sessions;
	if (w->sessions != NULL)
		w->sessions->prev = s;
	w->sessions = s;
	w->n_sessions++;
}

void worker_session_dead(struct worker *w, struct session *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	w->n_sessions--;
	s->dead_next = w->dead;
	w->dead = s;
	event_active(w->reaper, EV_READ, 0);
}

static void worker_maybe_exit(struct worker *w)
{
	if (w->stopping && w->n_sessions == 0)
		event_base_loopexit(w->base, NULL);
}

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	while (w->dead != NULL) {
		struct session *s = w->dead;

		w->dead = s->dead_next;
		screen_free(s);
		free(s);
	}
	worker_maybe_exit(w);
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	session_accept(arg, fd, sa, salen);
}

/* Out of descriptors (EMFILE, ENFILE, ENOMEM): the connection stays in the
 * kernel's queue and the listener would report it again at once, spinning;
 * so stop accepting for a moment and serve the connections we have. */
static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct worker *w = arg;
	struct timeval tv = {0, 250000};

	log_warn("accept");
	for (unsigned i = 0; i < w->n_lev; i++)
		if (w->lev[i] != NULL)
			evconnlistener_disable(w->lev[i]);
	evtimer_add(w->accept_pause, &tv);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	for (unsigned i = 0; !w->stopping && i < w->n_lev; i++)
		if (w->lev[i] != NULL)
			evconnlistener_enable(w->lev[i]);
}

/* Idle keep-alive sessions hold no request: close them so the drain does
 * not wait for clients that will never send another. */
static void close_idle_sessions(struct worker *w)
{
	struct session *s = w->sessions, *next;

	for (; s != NULL; s = next) {
		next = s->next;
		if (s->state == SESSION_IDLE || s->state == SESSION_HANDSHAKE)
			session_close(s, TERM_STOP);
	}
}

static void drain_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct session *s = w->sessions, *next;

	for (; s != NULL; s = next) {
		next = s->next;
		session_close(s, TERM_DRAIN);
	}
	event_base_loopexit(w->base, NULL);
}

static void worker_begin_stop(struct worker *w)
{
	struct timeval tv = {w->drain_seconds, 0};

	w->stopping = true;
	w->pools.stopping = true;
	for (unsigned i = 0; i < w->n_lev; i++) {
		evconnlistener_free(w->lev[i]);
		w->lev[i] = NULL;
	}
	close_idle_sessions(w);
	/* Requests still in flight keep their connections (and the pools
	 * those point to) until they end. */
	upstream_pools_drop_idle(&w->pools);
	evtimer_add(w->drain_timer, &tv);
	worker_maybe_exit(w);
}

/* Other threads poke a worker here: a new generation or the stop. */
void worker_end_poll(struct worker *w, const struct poll_ref *r,
		     uint64_t key)
{
	struct poll_msg *m;

	pthread_mutex_lock(&w->poll_lock);
	if (w->n_poll_msgs == w->cap_poll_msgs) {
		size_t cap = w->cap_poll_msgs ? 2 * w->cap_poll_msgs : 16;

		m = realloc(w->poll_msgs, cap * sizeof(*m));
		if (m == NULL) {
			/* The old long-poll then lasts its heartbeat, as
			 * without the limit. */
			pthread_mutex_unlock(&w->poll_lock);
			return;
		}
		w->poll_msgs = m;
		w->cap_poll_msgs = cap;
	}
	w->poll_msgs[w->n_poll_msgs++] = (struct poll_msg){*r, key};
	pthread_mutex_unlock(&w->poll_lock);
	worker_poke(w);
}

/* Ends the long-polls other threads chose, those still held (polls.h). */
static void end_polls(struct worker *w)
{
	struct poll_msg *m;
	size_t n;

	pthread_mutex_lock(&w->poll_lock);
	m = w->poll_msgs;
	n = w->n_poll_msgs;
	w->poll_msgs = NULL;
	w->n_poll_msgs = w->cap_poll_msgs = 0;
	pthread_mutex_unlock(&w->poll_lock);
	for (size_t i = 0; i < n; i++)
		if (polls_take_marked(w->p->polls, m[i].key, &m[i].ref))
			screen_poll_supersede(m[i].ref.s);
	free(m);
}

static void wakeup_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct gen *g, *old;
	eventfd_t n;

	eventfd_read(fd, &n);
	end_polls(w);

	if (atomic_load(&w->p->stopping)) {
		if (!w->stopping)
			worker_begin_stop(w);
		return;
	}
	g = proxy_current(w->p);
	old = w->gen;
	w->gen = g;
	/* The directory client compares the new sitemap.ldap with the one it
	 * was made from, which lives in the old generation: release it only
	 * after. */
	dir_worker_sync(w);
	gen_release(old);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	event_base_dispatch(w->base);
	return NULL;
}

static int worker_setup(struct worker *w, char **err)
{
	struct event_config *cfg = event_config_new();

	/* Only this worker's thread touches its base: no locks, and other
	 * threads reach it through wakeup_fd. */
	if (cfg != NULL)
		event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	w->base = cfg ? event_base_new_with_config(cfg) : NULL;
	event_config_free(cfg);
	w->wakeup_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->pools = (struct upstream_pools){
		.loop = &w->loop,
		.connects = &w->stats.upstream_connects,
		.reused = &w->stats.upstream_reused,
		.connections = &w->stats.upstream_connections,
		.cas_open = w->stats.cas_open,
		.cas_idle = w->stats.cas_idle,
		.n_cas_stats = STATS_CAS,
	};
	if (w->base == NULL || w->wakeup_fd < 0 ||
	    conn_loop_init(&w->loop, w->base) != 0)
		goto fail;
	w->wakeup = event_new(w->base, w->wakeup_fd, EV_READ | EV_PERSIST,
			      wakeup_cb, w);
	if (w->wakeup == NULL || event_add(w->wakeup, NULL) != 0 ||
	    accesslog_worker_init(w) != 0)
		goto fail;
	w->reaper = event_new(w->base, -1, 0, reaper_cb, w);
	w->drain_timer = evtimer_new(w->base, drain_timer_cb, w);
	w->accept_pause = evtimer_new(w->base, accept_resume_cb, w);
	w->lev = calloc(w->n_lev ? w->n_lev : 1, sizeof(*w->lev));
	w->rules_memo = rules_memo_new();
	if (w->wakeup == NULL || w->reaper == NULL || w->drain_timer == NULL ||
	    w->lev == NULL || w->rules_memo == NULL)
		goto fail;
	w->gen = proxy_current(w->p);
	dir_worker_sync(w);
	for (unsigned i = 0; i < w->n_lev; i++) {
		w->lev[i] = evconnlistener_new(w->base, accept_cb, w,
					       LEV_OPT_CLOSE_ON_FREE, -1,
					       w->lfd[i]);
		if (w->lev[i] == NULL)
			goto fail;
		w->lfd[i] = -1;
		evconnlistener_set_error_cb(w->lev[i], accept_error_cb);
	}
	return 0;
fail:
	*err = strdup("cannot set up a worker's event loop");
	return -1;
}

int proxy_start(struct proxy *p, char **err)
{
	for (unsigned i = 0; i < p->n_workers; i++)
		if (worker_setup(&p->workers[i], err) != 0)
			return -1;
	p->started = true;
	for (unsigned i = 0; i < p->n_workers; i++) {
		if (pthread_create(&p->workers[i].thread, NULL, worker_main,
				   &p->workers[i]) != 0) {
			*err = strdup("cannot start a worker thread");
			return -1;
		}
	}
	return 0;
}

void proxy_stop(struct proxy *p, unsigned drain_seconds)
{
	if (!p->started)
		return;
	atomic_store(&p->stopping, true);
	for (unsigned i = 0; i < p->n_workers; i++) {
		p->workers[i].drain_seconds = drain_seconds;
		worker_poke(&p->workers[i]);
	}
	for (unsigned i = 0; i < p->n_workers; i++)
		pthread_join(p->workers[i].thread, NULL);
	p->started = false;
}

static void worker_free(struct worker *w)
{
	/* Sessions closed by the drain are freed here, after their callbacks
	 * have returned. */
	reaper_cb(-1, 0, w);
	for (unsigned i = 0; i < w->n_lev; i++) {
		if (w->lev != NULL && w->lev[i] != NULL)
			evconnlistener_free(w->lev[i]);
		if (w->lfd != NULL && w->lfd[i] >= 0)
			close(w->lfd[i]);
	}
	free(w->lev);
	free(w->lfd);
	rules_memo_free(w->rules_memo);
	free(w->poll_msgs);
	pthread_mutex_destroy(&w->poll_lock);
	upstream_pools_free(&w->pools);
	dir_worker_free(w);
	gen_release(w->gen);
	if (w->wakeup)
		event_free(w->wakeup);
	if (w->wakeup_fd >= 0)
		close(w->wakeup_fd);
	accesslog_worker_done(w);
	conn_loop_done(&w->loop);
	if (w->reaper)
		event_free(w->reaper);
	if (w->drain_timer)
		event_free(w->drain_timer);
	if (w->accept_pause)
		event_free(w->accept_pause);
	if (w->base)
		event_base_free(w->base);
}

void proxy_free(struct proxy *p)
{
	if (p == NULL)
		return;
	proxy_control_stop(p);
	for (unsigned i = 0; i < p->n_workers; i++)
		worker_free(&p->workers[i]);
	free(p->workers);
	gen_release(p->gen);
	cas_registry_free(&p->cas);
	limits_destroy(&p->limits);
	ldap_cache_free(p->ldap_cache);
	shields_free(p->shields);
	buckets_free(p->buckets);
	polls_free(p->polls);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
