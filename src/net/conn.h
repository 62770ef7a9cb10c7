/*
 * One end of a proxied connection on a worker's loop: a socket, plain or
 * TLS, with an input and an output evbuffer, callbacks and per-direction
 * timeouts; what a libevent bufferevent offers, cut to what the hot path
 * needs and shaped to spend as few system calls as possible on it:
 *
 * - reading stays armed for a connection's whole life and writing is armed
 *   only when the socket pushed back, so a request costs no epoll_ctl;
 * - output is written at the end of the loop pass that produced it, as one
 *   TLS record and one write (a response head and body together), never
 *   waiting for the socket to report writable first;
 * - TLS reads one whole record per read (read-ahead) into a per-worker
 *   buffer, so an idle connection keeps no buffer of its own;
 * - timeouts are deadlines checked when a per-connection timer fires; the
 *   timer is moved only when a deadline comes earlier, not per request;
 * - the worker's event base takes no locks (one thread per base).
 *
 * The data path's sessions and, below them, anything that speaks to a CAS
 * use it.
 */
#ifndef EF_NET_CONN_H
#define EF_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>

struct evbuffer;
struct conn;

/* Bits of the event callback's what (the values of libevent's
 * BEV_EVENT_*). */
#define CONN_READING 0x01U
#define CONN_WRITING 0x02U
#define CONN_EOF 0x10U
#define CONN_ERROR 0x20U
#define CONN_TIMEOUT 0x40U
#define CONN_CONNECTED 0x80U /* TCP connect, and TLS handshake if any */

/* One whole TLS record of plaintext. */
#define CONN_IOBUF 16384

typedef void (*conn_cb)(struct conn *c, void *arg);
typedef void (*conn_event_cb)(struct conn *c, short what, void *arg);

/* Per worker: the base and what every connection of it shares. */
struct conn_loop {
	struct event_base *base;   /* not owned */
	struct event flush_ev;	   /* writes queued output, end of a pass */
	struct conn *flush_head;   /* connections with output to write */
	void (*before_flush)(void *arg); /* run first, or NULL */
	void *before_flush_arg;
	unsigned depth;	 /* callbacks of this file on the stack */
	uint64_t now;	 /* us: the clock as read in the outermost one */
	unsigned char rbuf[CONN_IOBUF];
	unsigned char wbuf[CONN_IOBUF];
};

/* What a connection is doing. */
enum conn_state {
	CONN_S_CONNECTING, /* TCP connect under way */
	CONN_S_HANDSHAKE,  /* TLS handshake under way (either role) */
	CONN_S_OPEN,	   /* bytes flow */
	CONN_S_DEAD,	   /* freed by its owner; memory goes when unused */
};

struct conn {
	struct conn_loop *loop;
	int fd;	  /* owned */
	SSL *ssl; /* owned, or NULL for plain TCP */
	enum conn_state state;
	struct evbuffer *in, *out; /* owned */
	conn_cb read_cb, write_cb;
	conn_event_cb event_cb;
	void *arg;
	struct event ev_rd, ev_wr, ev_tmo;
	short want;	   /* EV_READ / EV_WRITE as the owner enabled them */
	short hs_want;	   /* what the TLS handshake waits for */
	bool broken;	   /* failed: nothing more is read or written */
	bool rd_armed, wr_armed;
	bool wr_blocked;   /* the socket pushed back: wait for writable */
	bool tls_rd_wants_wr; /* SSL_read needs the socket writable */
	bool tls_wr_wants_rd; /* SSL_write needs the socket readable */
	bool rd_starved;   /* the last TLS read found only part of a record */
	bool queued;	   /* on the loop's flush list */
	bool tmo_pending;  /* ev_tmo is added */
	unsigned busy;	   /* callbacks of this connection on the stack */
	int err;	   /* errno of the last failure, 0 if none */
	int wlen;	   /* length of a TLS write to be retried, else 0 */
	unsigned long tls_err; /* OpenSSL's error of a failed TLS call, or 0 */
	size_t read_high;  /* input at or above this stops reading; 0: none */
	size_t write_low;  /* write_cb once output drains to this */
	unsigned rd_tmo, wr_tmo;  /* seconds, 0: none */
	uint64_t rd_mark, wr_mark; /* us: when each timeout window began */
	uint64_t tmo_at;	   /* us: when ev_tmo is due, if pending */
	struct conn *flush_next;
};

/* Sets up l on base. Returns 0, or -1. */
int conn_loop_init(struct conn_loop *l, struct event_base *base);
/* Releases l's event; every connection of l must be freed first. */
void conn_loop_done(struct conn_loop *l);

/* A TLS server connection on the accepted socket fd, handshake started on
 * the first event; CONN_CONNECTED when it is done. Takes fd and ssl, also
 * on failure (NULL). */
struct conn *conn_accept_tls(struct conn_loop *l, int fd, SSL *ssl);
/* A connection to sa, with TLS when ssl is not NULL (taken, also on
 * failure); CONN_CONNECTED follows, or CONN_ERROR with conn_errno(). NULL
 * when no socket can be had (errno says why). */
struct conn *conn_connect(struct conn_loop *l, const struct sockaddr *sa,
			  socklen_t salen, SSL *ssl);
/* Closes the socket now; the memory goes once no callback of c is on the
 * stack. NULL is accepted. */
void conn_free(struct conn *c);

void conn_setcb(struct conn *c, conn_cb read_cb, conn_cb write_cb,
		conn_event_cb event_cb, void *arg);
void conn_enable(struct conn *c, short what);
void conn_disable(struct conn *c, short what);
short conn_enabled(const struct conn *c);
/* Seconds without read / write progress before CONN_TIMEOUT; 0: none.
 * Both windows start again now. */
void conn_set_timeouts(struct conn *c, unsigned rd, unsigned wr);
void conn_set_watermarks(struct conn *c, size_t read_high, size_t write_low);

static inline struct evbuffer *conn_input(const struct conn *c)
{
	return c->in;
}
/* The output, to add to: it is written at the end of this loop pass.
 * (Asking for it queues the write, so no callback on the buffer has to
 * watch every change.) */
struct evbuffer *conn_output(struct conn *c);
/* Bytes waiting to be written. */
size_t conn_output_length(const struct conn *c);
static inline SSL *conn_ssl(const struct conn *c)
{
	return c->ssl;
}
static inline int conn_fd(const struct conn *c)
{
	return c->fd;
}
static inline int conn_errno(const struct conn *c)
{
	return c->err;
}
/* OpenSSL's error code (ERR_peek_last_error()'s) of the TLS handshake,
 * read or write that failed the connection, for ERR_reason_error_string();
 * 0 when no TLS call failed or OpenSSL gave no reason (then conn_errno()
 * says why). */
static inline unsigned long conn_tls_error(const struct conn *c)
{
	return c->tls_err;
}

/* Microseconds on the monotonic clock (clock_mono_us()'s), read once per
 * callback of this loop. */
uint64_t conn_loop_now_us(struct conn_loop *l);

/* Appends to the output; it is written at the end of this loop pass. */
int conn_write(struct conn *c, const void *data, size_t len);
/* After the owner consumed input: reads again now when TLS holds a whole
 * record the socket will never announce. */
void conn_kick(struct conn *c);

#endif
