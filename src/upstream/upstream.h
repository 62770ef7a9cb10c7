/*
 * Connections to CAS servers: per worker, per CAS target, an idle list with a
 * cap and an idle timeout. A session takes a connection, uses it for one
 * request (or for its whole life when NTLM pins it) and gives it back.
 */
#ifndef EF_UPSTREAM_UPSTREAM_H
#define EF_UPSTREAM_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "core/stat.h"
#include "net/conn.h"

struct cas_target;

/* Most idle connections kept per CAS per worker. Closing one that is not
 * needed now costs a new connect later, and at tens of thousands of
 * requests a second the churn exhausts the local ports; an idle connection
 * costs a descriptor and a few hundred bytes. */
#define POOL_IDLE_MAX 1024
/* Seconds an idle upstream connection is kept. */
#define POOL_IDLE_SECONDS 60

struct upconn {
	struct conn *conn;	 /* owned */
	struct upstream_pools *ps; /* the worker's pools it belongs to */
	struct pool *pool;
	struct upconn *next;	 /* idle list */
	uint64_t released_at;	 /* us: when it last went back to the pool */
	bool counted;		 /* in the upstream_connections gauge */
	char addr[64];		 /* "IP:PORT" for logs */
	struct cas_entry *entry; /* whose member this connects to */
	struct sockaddr_storage sa; /* the member's address */
	socklen_t salen;
};

struct pool {
	unsigned id;	     /* the cas_target.id it serves */
	struct upconn *idle; /* owned */
	unsigned n_idle;
	unsigned next_addr;	 /* round-robin over the target's addresses */
	SSL_SESSION *tls_sess;	 /* owned: resumes the next handshake */
	unsigned fast_closes;	 /* idle connections the CAS closed at once,
				    in a row */
	uint64_t no_reuse_until; /* us: until then nothing is pooled */
	bool peek;		 /* the CAS has closed idle connections:
				    look before reusing one */
};

/* One worker's pools, one per CAS target id, and what they count. */
struct upstream_pools {
	struct pool **pools;	  /* owned, and each pool; indexed by
				     cas_target.id; a pool never moves */
	unsigned n;
	struct conn_loop *loop;	  /* the worker's */
	bool stopping;		  /* set when the worker stops: nothing more
				     is pooled */
	stat_t *connects;	  /* the worker's counters */
	stat_t *reused;
	stat_t *connections;	  /* gauge */
	stat_t *cas_open;	  /* gauges by cas_target.id, n_cas_stats */
	stat_t *cas_idle;	  /* of them: the open and the idle ones */
	unsigned n_cas_stats;
};

/* An idle connection to t, detached from the pool, or NULL. */
struct upconn *upstream_take(struct upstream_pools *ps,
			     const struct cas_target *t);

/* A new connection to an up member of t (connect under way;
 * CONN_CONNECTED or CONN_ERROR follows on the callbacks the caller sets).
 * NULL when no member is up or no socket can be had. */
struct upconn *upstream_connect(struct upstream_pools *ps, SSL_CTX *ctx,
				const struct cas_target *t);

/* Returns a finished connection to its pool, or frees it when the pool is
 * full. */
void upstream_release(struct upstream_pools *ps, struct upconn *uc);

/* Tells the CAS's health that this connection's member failed (connect
 * refused or timed out): passive ejection. */
void upstream_failed(struct upconn *uc);

/* Frees a connection (closing it). NULL is accepted. */
void upstream_free(struct upconn *uc);

/* Closes every idle connection of ps (the worker stops); connections in
 * use still belong to their pools. */
void upstream_pools_drop_idle(struct upstream_pools *ps);
/* Frees ps's pools and what they hold, once no connection is in use. */
void upstream_pools_free(struct upstream_pools *ps);

#endif
