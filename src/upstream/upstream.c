#include "upstream/upstream.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include "core/clock.h"
#include "core/log.h"
#include "upstream/cas.h"
#include "tls/tls.h"

/* An idle connection reads nothing: any event means the CAS closed it or
 * broke the protocol, so it leaves the pool. */
/* Some servers (SOGo's sogod among them) close every connection right after
 * their response without saying Connection: close. A pooled connection to
 * such a CAS dies at once and a request sent into it in that instant fails;
 * so after two such closes in a row the pool stops keeping connections to
 * it for a while. */
#define POOL_FAST_CLOSE_US 2000000
#define POOL_FAST_CLOSES 2
#define POOL_NO_REUSE_US (300 * 1000000ULL)

/* Moves the per-CAS gauge g (cas_open or cas_idle) of pool's CAS by one,
 * up or down; CAS past the counted ones are not shown. */
static void count_cas(const struct upstream_pools *ps, stat_t *g,
		      const struct pool *pool, bool up)
{
	if (g == NULL || pool->id >= ps->n_cas_stats)
		return;
	if (up)
		stat_add(&g[pool->id], 1);
	else
		stat_sub(&g[pool->id], 1);
}

static void note_idle_close(struct upconn *uc, short what)
{
	struct pool *pool = uc->pool;
	uint64_t now = clock_mono_us();

	if (!(what & CONN_TIMEOUT))
		pool->peek = true;
	if ((what & CONN_TIMEOUT) ||
	    now - uc->released_at > POOL_FAST_CLOSE_US) {
		pool->fast_closes = 0;
		return;
	}
	if (++pool->fast_closes < POOL_FAST_CLOSES)
		return;
	if (pool->no_reuse_until < now)
		log_info("upstream %s closes connections after each response: "
			 "not keeping them for a while",
			 uc->addr);
	pool->no_reuse_until = now + POOL_NO_REUSE_US;
}

static void idle_event_cb(struct conn *c, short what, void *arg)
{
	struct upconn *uc = arg;
	struct pool *pool = uc->pool;
	struct upconn **pp;

	note_idle_close(uc, what);
	for (pp = &pool->idle; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == uc) {
			*pp = uc->next;
			pool->n_idle--;
			count_cas(uc->ps, uc->ps->cas_idle, pool, false);
			break;
		}
	}
	upstream_free(uc);
}

static void idle_read_cb(struct conn *c, void *arg)
{
	idle_event_cb(c, CONN_READING, arg);
}

/* True when the CAS closed an idle connection (or sent something nobody
 * asked for) and libevent has not told us yet: some servers close after
 * every response without saying so, and a request sent into that socket
 * would fail after the fact, when it can no longer be retried safely. */
static bool idle_conn_dead(struct upconn *uc)
{
	int fd = conn_fd(uc->conn);
	char c;
	ssize_t r;

	/* A CAS that never closed an idle connection is not asked: the
	 * look costs a system call per request. */
	if (!uc->pool->peek)
		return false;
	if (fd < 0)
		return true;
	r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

/* The pool of target id, made on first use. Each pool stays where it was
 * made, for the connections that point to it. NULL without memory. */
static struct pool *pool_of(struct upstream_pools *ps, unsigned id)
{
	if (id >= ps->n) {
		unsigned n = id + 1;
		struct pool **np = realloc(ps->pools, n * sizeof(*np));

		if (np == NULL)
			return NULL;
		memset(np + ps->n, 0, (n - ps->n) * sizeof(*np));
		ps->pools = np;
		ps->n = n;
	}
	if (ps->pools[id] == NULL) {
		ps->pools[id] = calloc(1, sizeof(*ps->pools[id]));
		if (ps->pools[id] != NULL)
			ps->pools[id]->id = id;
	}
	return ps->pools[id];
}

struct upconn *upstream_take(struct upstream_pools *ps,
			     const struct cas_target *t)
{
	struct pool *pool = pool_of(ps, t->id);
	struct upconn *uc;

	while (pool != NULL && pool->idle != NULL) {
		uc = pool->idle;
		pool->idle = uc->next;
		pool->n_idle--;
		count_cas(ps, ps->cas_idle, pool, false);
		uc->next = NULL;
		/* DNS or health may have moved traffic away from this
		 * member since the connection went idle. */
		if (idle_conn_dead(uc) ||
		    (uc->entry != NULL &&
		     !cas_member_usable(uc->entry, (struct sockaddr *)&uc->sa,
					uc->salen))) {
			upstream_free(uc);
			continue;
		}
		stat_add(ps->reused, 1);
		return uc;
	}
	return NULL;
}

/* The TLS half of a new connection to t, or NULL for plain TCP; *ok is
 * false when TLS was wanted and cannot be had. */
static SSL *connect_ssl(SSL_CTX *ctx, struct pool *pool,
			const struct cas_target *t, bool *ok)
{
	SSL *ssl;

	*ok = true;
	if (!t->tls)
		return NULL;
	ssl = tls_client_ssl_new(ctx, t->host);
	if (ssl == NULL) {
		*ok = false;
		return NULL;
	}
	if (pool->tls_sess != NULL)
		SSL_set_session(ssl, pool->tls_sess);
	return ssl;
}

struct upconn *upstream_connect(struct upstream_pools *ps, SSL_CTX *ctx,
				const struct cas_target *t)
{
	struct pool *pool = pool_of(ps, t->id);
	struct upconn *uc;
	bool ok;
	SSL *ssl;

	if (pool == NULL || t->entry == NULL)
		return NULL;
	uc = calloc(1, sizeof(*uc));
	if (uc == NULL)
		return NULL;
	uc->pool = pool;
	uc->ps = ps;
	uc->entry = t->entry;
	if (cas_pick(t->entry, &pool->next_addr, &uc->sa, &uc->salen, uc->addr,
		     sizeof(uc->addr)) != 0) {
		free(uc);
		return NULL;
	}
	ssl = connect_ssl(ctx, pool, t, &ok);
	if (ok)
		uc->conn = conn_connect(ps->loop, (struct sockaddr *)&uc->sa,
					uc->salen, ssl);
	if (uc->conn == NULL) {
		log_debug("upstream %s: no socket: %s", uc->addr,
			  ok ? strerror(errno) : "TLS");
		free(uc);
		return NULL;
	}
	stat_add(ps->connects, 1);
	stat_add(ps->connections, 1);
	count_cas(ps, ps->cas_open, pool, true);
	uc->counted = true;
	return uc;
}

/* Keeps the newest TLS session of the pool so the next connection to this
 * CAS resumes instead of doing a full handshake. */
static void keep_tls_session(struct upconn *uc)
{
	SSL *ssl = conn_ssl(uc->conn);
	SSL_SESSION *sess;

	if (ssl == NULL)
		return;
	sess = SSL_get1_session(ssl);
	if (sess == NULL)
		return;
	if (!SSL_SESSION_is_resumable(sess)) {
		SSL_SESSION_free(sess);
		return;
	}
	SSL_SESSION_free(uc->pool->tls_sess);
	uc->pool->tls_sess = sess;
}

void upstream_release(struct upstream_pools *ps, struct upconn *uc)
{
	struct pool *pool = uc->pool;

	if (ps->stopping || pool->n_idle >= POOL_IDLE_MAX ||
	    conn_loop_now_us(ps->loop) < pool->no_reuse_until ||
	    evbuffer_get_length(conn_input(uc->conn)) != 0 ||
	    conn_output_length(uc->conn) != 0) {
		upstream_free(uc);
		return;
	}
	keep_tls_session(uc);
	uc->released_at = conn_loop_now_us(ps->loop);
	conn_setcb(uc->conn, idle_read_cb, NULL, idle_event_cb, uc);
	conn_set_timeouts(uc->conn, POOL_IDLE_SECONDS, 0);
	conn_set_watermarks(uc->conn, 0, 0);
	conn_enable(uc->conn, EV_READ);
	uc->next = pool->idle;
	pool->idle = uc;
	pool->n_idle++;
	count_cas(ps, ps->cas_idle, pool, true);
}

void upstream_failed(struct upconn *uc)
{
	if (uc->entry != NULL)
		cas_report_failure(uc->entry, (struct sockaddr *)&uc->sa,
				   uc->salen);
}

void upstream_free(struct upconn *uc)
{
	if (uc == NULL)
		return;
	if (uc->conn != NULL) {
		SSL *ssl = conn_ssl(uc->conn);

		/* Freed without a shutdown, OpenSSL would mark the session
		 * this pool keeps for resumption unusable. */
		if (ssl != NULL && SSL_is_init_finished(ssl)) {
			SSL_set_quiet_shutdown(ssl, 1);
			SSL_shutdown(ssl);
		}
		conn_free(uc->conn);
	}
	if (uc->counted) {
		stat_sub(uc->ps->connections, 1);
		count_cas(uc->ps, uc->ps->cas_open, uc->pool, false);
	}
	free(uc);
}

void upstream_pools_drop_idle(struct upstream_pools *ps)
{
	for (unsigned i = 0; i < ps->n; i++) {
		struct pool *pool = ps->pools[i];

		if (pool == NULL)
			continue;
		while (pool->idle != NULL) {
			struct upconn *uc = pool->idle;

			pool->idle = uc->next;
			count_cas(ps, ps->cas_idle, pool, false);
			upstream_free(uc);
		}
		pool->n_idle = 0;
		SSL_SESSION_free(pool->tls_sess);
		pool->tls_sess = NULL;
	}
}

void upstream_pools_free(struct upstream_pools *ps)
{
	upstream_pools_drop_idle(ps);
	for (unsigned i = 0; i < ps->n; i++)
		free(ps->pools[i]);
	free(ps->pools);
	ps->pools = NULL;
	ps->n = 0;
}
