/*
 * Connection ends on raw events: see conn.h for why not bufferevents.
 */
#include "net/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/err.h>

#define US_PER_S 1000000ULL
/* Reads per readiness event, so one busy connection cannot starve the
 * others of the loop. */
#define CONN_READS_PER_EVENT 8

enum io_result { IO_DONE, IO_BLOCKED, IO_EOF, IO_ERROR };

/* Inside this file's callbacks one reading of the clock serves the whole
 * callback (a request moves its marks and stamps its log a dozen times);
 * outside them (an owner acting on some other event) it is read each
 * time. */
uint64_t conn_loop_now_us(struct conn_loop *l)
{
	struct timespec ts;

	if (l->depth > 0 && l->now != 0)
		return l->now;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec = ts.tv_sec * (time_t)US_PER_S + ts.tv_nsec / 1000;
	if (l->depth > 0)
		l->now = (uint64_t)ts.tv_sec;
	return (uint64_t)ts.tv_sec;
}

static void loop_enter(struct conn_loop *l)
{
	if (l->depth++ == 0)
		l->now = 0;
}

static void loop_leave(struct conn_loop *l)
{
	l->depth--;
}

static bool read_full(const struct conn *c)
{
	return c->read_high != 0 &&
	       evbuffer_get_length(c->in) >= c->read_high;
}

/* Bytes one read may take: up to the watermark, so a stalled owner
 * leaves the rest in the socket (or inside OpenSSL) where it costs
 * nothing. */
static int read_room(const struct conn *c)
{
	size_t have;

	if (c->read_high == 0)
		return CONN_IOBUF;
	have = evbuffer_get_length(c->in);
	if (have >= c->read_high)
		return 0;
	return c->read_high - have < CONN_IOBUF ? (int)(c->read_high - have)
						: CONN_IOBUF;
}

static bool rd_window_open(const struct conn *c)
{
	return c->state == CONN_S_HANDSHAKE ||
	       (c->state == CONN_S_OPEN && (c->want & EV_READ) &&
		!read_full(c));
}

/* Only a write the socket pushed back can time out: every other write
 * completes within the loop pass that queued it. */
static bool wr_window_open(const struct conn *c)
{
	return c->state == CONN_S_CONNECTING ||
	       c->state == CONN_S_HANDSHAKE ||
	       (c->state == CONN_S_OPEN &&
		(c->wr_blocked || c->tls_wr_wants_rd));
}

/* Makes sure the timer fires no later than the earliest open deadline. A
 * deadline that moved later is found when the timer fires early. */
static void tmo_arm(struct conn *c)
{
	uint64_t due = UINT64_MAX, now, d;
	struct timeval tv;

	if (c->rd_tmo && rd_window_open(c))
		due = c->rd_mark + c->rd_tmo * US_PER_S;
	if (c->wr_tmo && wr_window_open(c) &&
	    c->wr_mark + c->wr_tmo * US_PER_S < due)
		due = c->wr_mark + c->wr_tmo * US_PER_S;
	if (due == UINT64_MAX)
		return;
	if (c->tmo_pending && c->tmo_at <= due)
		return;
	now = conn_loop_now_us(c->loop);
	d = due > now ? due - now : 0;
	tv.tv_sec = (time_t)(d / US_PER_S);
	tv.tv_usec = (suseconds_t)(d % US_PER_S);
	evtimer_add(&c->ev_tmo, &tv);
	c->tmo_pending = true;
	c->tmo_at = due;
}

static void arm(struct event *ev, bool *armed, bool on)
{
	if (on == *armed)
		return;
	if (on)
		event_add(ev, NULL);
	else
		event_del(ev);
	*armed = on;
}

/* Registers with epoll exactly the readiness the connection waits for. */
static void update_events(struct conn *c)
{
	bool rd = false, wr = false;

	switch (c->state) {
	case CONN_S_CONNECTING:
		wr = true;
		break;
	case CONN_S_HANDSHAKE:
		rd = (c->hs_want & EV_READ) != 0;
		wr = (c->hs_want & EV_WRITE) != 0;
		break;
	case CONN_S_OPEN:
		if (c->broken)
			break;
		rd = ((c->want & EV_READ) && !read_full(c)) ||
		     c->tls_wr_wants_rd;
		wr = c->wr_blocked || c->tls_rd_wants_wr;
		break;
	case CONN_S_DEAD:
		break;
	}
	if (rd && !c->rd_armed && c->state == CONN_S_OPEN) {
		/* A read window starts when reading resumes. */
		c->rd_mark = conn_loop_now_us(c->loop);
		arm(&c->ev_rd, &c->rd_armed, true);
		tmo_arm(c);
	}
	arm(&c->ev_rd, &c->rd_armed, rd);
	arm(&c->ev_wr, &c->wr_armed, wr);
}

static void fire(struct conn *c, short what)
{
	if (c->state != CONN_S_DEAD && c->event_cb != NULL)
		c->event_cb(c, what, c->arg);
}

/* A failure after which the socket is useless: nothing is waited for. */
static void fail(struct conn *c, short what, int err)
{
	c->err = err ? err : EPROTO;
	c->broken = true;
	c->want = 0;
	if (c->state == CONN_S_CONNECTING || c->state == CONN_S_HANDSHAKE)
		c->state = CONN_S_OPEN;
	update_events(c);
	fire(c, (short)(CONN_ERROR | what));
}

static void reap(struct conn *c)
{
	if (c->state != CONN_S_DEAD || c->busy > 0 || c->queued)
		return;
	evbuffer_free(c->in);
	evbuffer_free(c->out);
	free(c);
}

static void queue_flush(struct conn *c)
{
	struct conn_loop *l = c->loop;

	if (c->queued || c->state == CONN_S_DEAD)
		return;
	c->queued = true;
	c->flush_next = l->flush_head;
	l->flush_head = c;
	event_active(&l->flush_ev, EV_WRITE, 1);
}

/* The next TLS record's plaintext, contiguous: in place when the first
 * chain holds it, else copied into the loop's buffer. */
static const void *out_span(struct conn *c, size_t n)
{
	struct evbuffer_iovec v;

	if (evbuffer_peek(c->out, (ssize_t)n, NULL, &v, 1) == 1 &&
	    v.iov_len >= n)
		return v.iov_base;
	evbuffer_copyout(c->out, c->loop->wbuf, n);
	return c->loop->wbuf;
}

/* Keeps OpenSSL's reason for the TLS call that failed c, then empties the
 * thread's error queue (see read_tls_once). */
static void tls_error_keep(struct conn *c)
{
	c->tls_err = ERR_peek_last_error();
	ERR_clear_error();
}

static enum io_result write_tls(struct conn *c)
{
	size_t len;

	while ((len = evbuffer_get_length(c->out)) > 0) {
		/* A retried SSL_write must be given the same bytes again. */
		int n = c->wlen ? c->wlen
				: (int)(len < CONN_IOBUF ? len : CONN_IOBUF);
		int r;

		r = SSL_write(c->ssl, out_span(c, (size_t)n), n);
		if (r > 0) {
			c->wlen = 0;
			evbuffer_drain(c->out, (size_t)r);
			continue;
		}
		c->wlen = n;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_WRITE:
			return IO_BLOCKED;
		case SSL_ERROR_WANT_READ:
			c->tls_wr_wants_rd = true;
			return IO_BLOCKED;
		default:
			c->err = errno ? errno : EPROTO;
			tls_error_keep(c);
			return IO_ERROR;
		}
	}
	return IO_DONE;
}

static enum io_result write_plain(struct conn *c)
{
	size_t len;

	while ((len = evbuffer_get_length(c->out)) > 0) {
		int r = evbuffer_write(c->out, c->fd);

		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
			      errno == EINTR))
			return IO_BLOCKED;
		if (r < 0) {
			c->err = errno;
			return IO_ERROR;
		}
		/* Short: the socket is full; asking again would only hear
		 * EAGAIN. */
		if ((size_t)r < len)
			return IO_BLOCKED;
	}
	return IO_DONE;
}

static void do_write(struct conn *c)
{
	size_t before = evbuffer_get_length(c->out), after;
	bool was_blocked = c->wr_blocked || c->tls_wr_wants_rd;
	enum io_result r;

	if (before == 0 || c->broken)
		return;
	c->wr_blocked = false;
	c->tls_wr_wants_rd = false;
	r = c->ssl ? write_tls(c) : write_plain(c);
	if (r == IO_ERROR) {
		fail(c, CONN_WRITING, c->err);
		return;
	}
	after = evbuffer_get_length(c->out);
	c->wr_blocked = r == IO_BLOCKED && !c->tls_wr_wants_rd;
	update_events(c);
	/* The write window is open only while the socket pushes back. */
	if (c->wr_blocked || c->tls_wr_wants_rd) {
		if (after < before || !was_blocked)
			c->wr_mark = conn_loop_now_us(c->loop);
		tmo_arm(c);
	}
	if (after < before && after <= c->write_low && c->write_cb != NULL)
		c->write_cb(c, c->arg);
}

static enum io_result read_tls_once(struct conn *c, size_t *got)
{
	int r, e;

	/* No ERR_clear_error() first, on the hot path: every failure clears
	 * the queue after itself (here, in write_tls, after handshakes and
	 * shutdowns), so it is empty whenever SSL_get_error() looks. */
	r = SSL_read(c->ssl, c->loop->rbuf, read_room(c));
	if (r > 0) {
		evbuffer_add(c->in, c->loop->rbuf, (size_t)r);
		*got += (size_t)r;
		/* Read-ahead may have taken more records off the socket
		 * than this one: they are read now, the socket will not
		 * announce them again. */
		return SSL_has_pending(c->ssl) ? IO_DONE : IO_BLOCKED;
	}
	e = SSL_get_error(c->ssl, r);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		c->rd_starved = true;
		return IO_BLOCKED;
	case SSL_ERROR_WANT_WRITE:
		c->tls_rd_wants_wr = true;
		return IO_BLOCKED;
	case SSL_ERROR_ZERO_RETURN:
		return IO_EOF;
	case SSL_ERROR_SYSCALL:
		c->err = errno;
		ERR_clear_error();
		if (c->err == 0 || c->err == ECONNRESET || c->err == EPIPE)
			return IO_EOF;
		return IO_ERROR;
	default:
		c->err = EPROTO;
		tls_error_keep(c);
		return IO_ERROR;
	}
}

static enum io_result read_plain_once(struct conn *c, size_t *got)
{
	int room = read_room(c);
	ssize_t r = read(c->fd, c->loop->rbuf, (size_t)room);

	if (r > 0) {
		evbuffer_add(c->in, c->loop->rbuf, (size_t)r);
		*got += (size_t)r;
		/* Short: the socket is drained; asking again would only hear
		 * EAGAIN. */
		return r < room ? IO_BLOCKED : IO_DONE;
	}
	if (r == 0)
		return IO_EOF;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return IO_BLOCKED;
	c->err = errno;
	return errno == ECONNRESET ? IO_EOF : IO_ERROR;
}

static void do_read(struct conn *c)
{
	enum io_result r = IO_BLOCKED;
	size_t got = 0;

	for (int i = 0; i < CONN_READS_PER_EVENT; i++) {
		if (!(c->want & EV_READ) || c->broken || read_full(c))
			break;
		r = c->ssl ? read_tls_once(c, &got) : read_plain_once(c, &got);
		if (r != IO_DONE)
			break;
	}
	if (got > 0) {
		c->rd_mark = conn_loop_now_us(c->loop);
		if (c->read_cb != NULL)
			c->read_cb(c, c->arg);
		if (c->state == CONN_S_DEAD)
			return;
	}
	if (r == IO_EOF) {
		/* Writing may go on; reading is over. */
		c->want &= (short)~EV_READ;
		update_events(c);
		fire(c, (short)(CONN_EOF | CONN_READING));
		return;
	}
	if (r == IO_ERROR) {
		fail(c, CONN_READING, c->err);
		return;
	}
	update_events(c);
	/* Stopped short of a full pass with records already decrypted: come
	 * back after the loop's other work. */
	if (r == IO_DONE)
		conn_kick(c);
}

static void do_handshake(struct conn *c)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		/* Callbacks run inside the handshake may have left errors. */
		ERR_clear_error();
		c->state = CONN_S_OPEN;
		c->hs_want = 0;
		update_events(c);
		fire(c, CONN_CONNECTED);
		if (c->state == CONN_S_DEAD)
			return;
		if (evbuffer_get_length(c->out) > 0)
			queue_flush(c);
		/* The first request may have come with the handshake's last
		 * flight and sit decrypted-ready inside OpenSSL. */
		conn_kick(c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->hs_want = EV_READ;
		break;
	case SSL_ERROR_WANT_WRITE:
		c->hs_want = EV_WRITE;
		break;
	default:
		r = errno;
		tls_error_keep(c);
		fail(c, 0, r ? r : EPROTO);
		return;
	}
	update_events(c);
}

static void connect_done(struct conn *c)
{
	int err = c->err;
	socklen_t len = sizeof(err);

	if (err == 0 &&
	    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		fail(c, 0, err);
		return;
	}
	if (c->ssl != NULL) {
		c->state = CONN_S_HANDSHAKE;
		SSL_set_connect_state(c->ssl);
		do_handshake(c);
		return;
	}
	c->state = CONN_S_OPEN;
	update_events(c);
	fire(c, CONN_CONNECTED);
	if (c->state != CONN_S_DEAD && evbuffer_get_length(c->out) > 0)
		queue_flush(c);
}

static void on_readable(struct conn *c)
{
	switch (c->state) {
	case CONN_S_HANDSHAKE:
		do_handshake(c);
		break;
	case CONN_S_OPEN:
		c->rd_starved = false;
		if (c->tls_wr_wants_rd) {
			do_write(c);
			if (c->state == CONN_S_DEAD)
				return;
		}
		do_read(c);
		break;
	case CONN_S_CONNECTING:
	case CONN_S_DEAD:
		break;
	}
}

static void on_writable(struct conn *c)
{
	switch (c->state) {
	case CONN_S_CONNECTING:
		connect_done(c);
		break;
	case CONN_S_HANDSHAKE:
		do_handshake(c);
		break;
	case CONN_S_OPEN:
		if (c->tls_rd_wants_wr) {
			c->tls_rd_wants_wr = false;
			do_read(c);
			if (c->state == CONN_S_DEAD)
				return;
		}
		if (evbuffer_get_length(c->out) > 0)
			do_write(c);
		else
			c->wr_blocked = false;
		update_events(c);
		break;
	case CONN_S_DEAD:
		break;
	}
}

/* Both readiness events of a connection (and event_active() on them). */
static void io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	loop_enter(c->loop);
	c->busy++;
	if (what & EV_READ)
		on_readable(c);
	else
		on_writable(c);
	c->busy--;
	loop_leave(c->loop);
	reap(c);
}

static void tmo_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	uint64_t now;
	short hit = 0;

	c->tmo_pending = false;
	loop_enter(c->loop);
	now = conn_loop_now_us(c->loop);
	if (c->rd_tmo && rd_window_open(c) &&
	    now >= c->rd_mark + c->rd_tmo * US_PER_S)
		hit = CONN_READING;
	else if (c->wr_tmo && wr_window_open(c) &&
		 now >= c->wr_mark + c->wr_tmo * US_PER_S)
		hit = CONN_WRITING;
	if (hit == 0) {
		tmo_arm(c);
		loop_leave(c->loop);
		return;
	}
	/* As a bufferevent does: the direction that timed out stops. */
	if (hit == CONN_READING)
		c->want &= (short)~EV_READ;
	c->busy++;
	update_events(c);
	fire(c, (short)(CONN_TIMEOUT | hit));
	c->busy--;
	loop_leave(c->loop);
	reap(c);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn_loop *l = arg;
	struct conn *c;

	loop_enter(l);
	if (l->before_flush != NULL)
		l->before_flush(l->before_flush_arg);
	while ((c = l->flush_head) != NULL) {
		l->flush_head = c->flush_next;
		c->flush_next = NULL;
		c->queued = false;
		c->busy++;
		if (c->state == CONN_S_OPEN && !c->wr_blocked &&
		    !c->tls_wr_wants_rd)
			do_write(c);
		c->busy--;
		reap(c);
	}
	loop_leave(l);
}


static struct conn *conn_new(struct conn_loop *l, int fd, SSL *ssl,
			     enum conn_state state)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (c != NULL) {
		c->in = evbuffer_new();
		c->out = evbuffer_new();
	}
	if (c == NULL || c->in == NULL || c->out == NULL ||
	    (ssl != NULL && SSL_set_fd(ssl, fd) != 1)) {
		int saved = errno;

		if (c != NULL) {
			if (c->in != NULL)
				evbuffer_free(c->in);
			if (c->out != NULL)
				evbuffer_free(c->out);
			free(c);
		}
		SSL_free(ssl);
		close(fd);
		errno = saved ? saved : ENOMEM;
		return NULL;
	}
	c->loop = l;
	c->fd = fd;
	c->ssl = ssl;
	c->state = state;
	event_assign(&c->ev_rd, l->base, fd, EV_READ | EV_PERSIST, io_cb, c);
	event_assign(&c->ev_wr, l->base, fd, EV_WRITE | EV_PERSIST, io_cb, c);
	evtimer_assign(&c->ev_tmo, l->base, tmo_cb, c);
	if (ssl != NULL) {
		/* One read takes a whole record, header and body. */
		SSL_set_read_ahead(ssl, 1);
		SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		/* A peer that closes without close_notify has ended, not
		 * attacked: HTTP framing tells a cut message apart. */
		SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	}
	return c;
}

int conn_loop_init(struct conn_loop *l, struct event_base *base)
{
	l->base = base;
	l->flush_head = NULL;
	l->before_flush = NULL;
	l->depth = 0;
	l->now = 0;
	return event_assign(&l->flush_ev, base, -1, 0, flush_cb, l);
}

void conn_loop_done(struct conn_loop *l)
{
	struct conn *c;

	if (l->base == NULL)
		return;
	event_del(&l->flush_ev);
	/* Freed connections still queued for a flush that will not run. */
	while ((c = l->flush_head) != NULL) {
		l->flush_head = c->flush_next;
		c->queued = false;
		reap(c);
	}
}

struct conn *conn_accept_tls(struct conn_loop *l, int fd, SSL *ssl)
{
	struct conn *c = conn_new(l, fd, ssl, CONN_S_HANDSHAKE);

	if (c == NULL)
		return NULL;
	SSL_set_accept_state(ssl);
	c->hs_want = EV_READ;
	update_events(c);
	return c;
}

struct conn *conn_connect(struct conn_loop *l, const struct sockaddr *sa,
			  socklen_t salen, SSL *ssl)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
					       SOCK_CLOEXEC, 0);
	int one = 1;
	struct conn *c;

	if (fd < 0) {
		SSL_free(ssl);
		return NULL;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = conn_new(l, fd, ssl, CONN_S_CONNECTING);
	if (c == NULL)
		return NULL;
	if (connect(fd, sa, salen) != 0 && errno != EINPROGRESS) {
		/* Told through the event callback, like a refusal that
		 * arrives later, so the caller has one path for both. */
		c->err = errno;
		event_active(&c->ev_wr, EV_WRITE, 1);
		return c;
	}
	update_events(c);
	return c;
}

void conn_free(struct conn *c)
{
	if (c == NULL || c->state == CONN_S_DEAD)
		return;
	c->state = CONN_S_DEAD;
	event_del(&c->ev_rd);
	event_del(&c->ev_wr);
	event_del(&c->ev_tmo);
	SSL_free(c->ssl);
	c->ssl = NULL;
	/* An owner's SSL_shutdown() may have failed on a dead socket. */
	ERR_clear_error();
	close(c->fd);
	c->fd = -1;
	reap(c);
}

void conn_setcb(struct conn *c, conn_cb read_cb, conn_cb write_cb,
		conn_event_cb event_cb, void *arg)
{
	c->read_cb = read_cb;
	c->write_cb = write_cb;
	c->event_cb = event_cb;
	c->arg = arg;
}

void conn_enable(struct conn *c, short what)
{
	short before = c->want;

	c->want |= what;
	if (c->want == before)
		return;
	update_events(c);
	if ((what & EV_READ) && !(before & EV_READ))
		conn_kick(c);
}

void conn_disable(struct conn *c, short what)
{
	c->want &= (short)~what;
	update_events(c);
}

short conn_enabled(const struct conn *c)
{
	return c->want;
}

void conn_set_timeouts(struct conn *c, unsigned rd, unsigned wr)
{
	uint64_t now = conn_loop_now_us(c->loop);
	bool same = c->rd_tmo == rd && c->wr_tmo == wr;

	c->rd_tmo = rd;
	c->wr_tmo = wr;
	c->rd_mark = now;
	c->wr_mark = now;
	/* Same values, later marks: a pending timer is early, never late. */
	if (!same || !c->tmo_pending)
		tmo_arm(c);
}

void conn_set_watermarks(struct conn *c, size_t read_high, size_t write_low)
{
	c->read_high = read_high;
	c->write_low = write_low;
}

struct evbuffer *conn_output(struct conn *c)
{
	queue_flush(c);
	return c->out;
}

size_t conn_output_length(const struct conn *c)
{
	return evbuffer_get_length(c->out);
}

int conn_write(struct conn *c, const void *data, size_t len)
{
	queue_flush(c);
	return evbuffer_add(c->out, data, len);
}

void conn_kick(struct conn *c)
{
	if (c == NULL || c->state != CONN_S_OPEN || c->broken)
		return;
	update_events(c);
	if (c->ssl != NULL && (c->want & EV_READ) && !c->rd_starved &&
	    !read_full(c) && SSL_has_pending(c->ssl))
		event_active(&c->ev_rd, EV_READ, 1);
}
