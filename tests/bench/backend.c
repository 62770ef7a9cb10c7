/*
 * backend: the benchmark's stand-in CAS. One thread, epoll, HTTP/1.1
 * keep-alive, optionally TLS (OpenSSL) on a second port for the "direct TLS
 * backend" limit row.
 *
 *   backend [-l PORT] [-s TLSPORT -c CERT -k KEY] [-C CTLPORT]
 *           [-H HOLD_MAX_S] [-T LIFETIME_S]
 *
 * Requests:
 *   Cmd=Ping in the target      held until "release" on the control port
 *                               (or HOLD_MAX_S), then 200 + Ping WBXML
 *   X-Bench-Size: N             200 with an N-byte body, streamed
 *   .../healthcheck.htm         200 "200 OK<br/>bench-cas" (Exchange's page)
 *   anything else               200 + a small Sync WBXML body, EAS headers
 * Request bodies of any size (Content-Length or chunked) are read and
 * dropped as they arrive; memory per connection is bounded.
 *
 * Control port (plain text lines, 127.0.0.1): "count" -> "held=H requests=R
 * conns=C", "release" -> answers every held request, "quit" -> exits.
 * Only 127.0.0.1 is ever bound. The process exits by itself after
 * LIFETIME_S seconds (default 3600).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/epoll.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench_common.h"

#define IN_CAP 16384
#define OUT_CAP 1024

enum kind { K_LISTEN, K_LISTEN_TLS, K_LISTEN_CTL, K_CONN, K_CTL };

enum cstate {
	C_HEAD,  /* reading a request head */
	C_BODY,  /* dropping the request body */
	C_HELD,  /* Ping held until released */
	C_WRITE, /* writing a response */
};

struct conn {
	enum kind kind;
	int fd;
	SSL *ssl;
	enum cstate st;
	char *in;
	size_t in_len, in_cap;
	bool chunked;
	struct chunk_dec cd;
	uint64_t body_left;
	bool is_ping, is_health, close_after;
	uint64_t reply_size;
	char out[OUT_CAP];
	size_t out_len, out_off;
	uint64_t stream_left;
	bool pollout;
	bool dead;
	uint64_t held_since;
	struct conn *dead_next;
	struct conn *hprev, *hnext;
};

struct lsock {
	enum kind kind;
	int fd;
};

static int ep;
static SSL_CTX *tls_ctx;
static struct conn *held_head, *held_tail;
static struct conn *dead_list; /* closed; freed after the event batch */
static unsigned long n_held, n_conns;
static unsigned long long n_requests;
static char zeros[65536];

/* A Sync response with status 1 and one empty collection, WBXML-ish. */
static const unsigned char sync_body[] = {
    0x03, 0x01, 0x6a, 0x00, 0x45, 0x5c, 0x4f, 0x4b, 0x03,
    0x31, 0x00, 0x01, 0x52, 0x03, 0x31, 0x00, 0x01, 0x4e,
    0x03, 0x31, 0x00, 0x01, 0x01, 0x01, 0x01};
/* A Ping response with status 1. */
static const unsigned char ping_body[] = {0x03, 0x01, 0x6a, 0x00, 0x00,
                                          0x0d, 0x45, 0x47, 0x03, 0x31,
                                          0x00, 0x01, 0x01};

static void conn_close(struct conn *c);
static void conn_handle(struct conn *c);

static void ep_mod(struct conn *c, bool out)
{
	/* While output is pending only writability matters: level-triggered
	 * input (or an EOF) would otherwise wake the loop for nothing. */
	struct epoll_event ev = {.events = out ? EPOLLOUT : EPOLLIN,
	                         .data.ptr = c};

	if (c->pollout == out)
		return;
	c->pollout = out;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int listen_on(int port, enum kind kind)
{
	struct sockaddr_in sa;
	struct epoll_event ev;
	struct lsock *l;
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	loopback_addr(&sa, port);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 4096) != 0) {
		fprintf(stderr, "backend: listen 127.0.0.1:%d: %s\n", port,
		        strerror(errno));
		exit(1);
	}
	l = calloc(1, sizeof(*l));
	l->kind = kind;
	l->fd = fd;
	ev.events = EPOLLIN;
	ev.data.ptr = l;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	return fd;
}

static void do_accept(struct lsock *l)
{
	for (;;) {
		int fd =
		    accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev;
		struct conn *c;

		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		c->fd = fd;
		c->kind = l->kind == K_LISTEN_CTL ? K_CTL : K_CONN;
		c->in_cap = IN_CAP;
		c->in = malloc(c->in_cap);
		if (c->kind == K_CONN)
			set_nodelay(fd);
		if (l->kind == K_LISTEN_TLS) {
			c->ssl = SSL_new(tls_ctx);
			SSL_set_fd(c->ssl, fd);
			SSL_set_accept_state(c->ssl);
		}
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		n_conns++;
	}
}

static void held_unlink(struct conn *c)
{
	if (c->hprev)
		c->hprev->hnext = c->hnext;
	else
		held_head = c->hnext;
	if (c->hnext)
		c->hnext->hprev = c->hprev;
	else
		held_tail = c->hprev;
	c->hprev = c->hnext = NULL;
	n_held--;
}

/* Closes now, frees after the current batch of events, which may still
 * name c. */
static void conn_close(struct conn *c)
{
	if (c->dead)
		return;
	if (c->st == C_HELD)
		held_unlink(c);
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	c->dead = true;
	c->dead_next = dead_list;
	dead_list = c;
	n_conns--;
}

static void reap(void)
{
	while (dead_list != NULL) {
		struct conn *c = dead_list;

		dead_list = c->dead_next;
		free(c->in);
		free(c);
	}
}

/* Reads into c->in; >0 bytes, 0 EOF, -1 nothing now, -2 error. */
static long io_read(struct conn *c, char *buf, size_t cap)
{
	if (c->ssl) {
		int n = SSL_read(c->ssl, buf, (int)cap);

		if (n > 0)
			return n;
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_READ:
			return -1;
		case SSL_ERROR_WANT_WRITE:
			ep_mod(c, true);
			return -1;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		default:
			ERR_clear_error();
			return -2;
		}
	}
	ssize_t n = read(c->fd, buf, cap);

	if (n > 0)
		return n;
	if (n == 0)
		return 0;
	return errno == EAGAIN || errno == EINTR ? -1 : -2;
}

static long io_write(struct conn *c, const void *buf, size_t len)
{
	if (c->ssl) {
		int n = SSL_write(c->ssl, buf, (int)len);

		if (n > 0)
			return n;
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return -1;
		default:
			ERR_clear_error();
			return -2;
		}
	}
	ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);

	if (n >= 0)
		return n;
	return errno == EAGAIN || errno == EINTR ? -1 : -2;
}

static void queue_response(struct conn *c)
{
	const unsigned char *body = sync_body;
	size_t blen = sizeof(sync_body);
	const char *ctype = "application/vnd.ms-sync.wbxml";
	int n;

	if (c->is_ping) {
		body = ping_body;
		blen = sizeof(ping_body);
	}
	if (c->is_health) {
		/* What Exchange answers and easfront's health checks want. */
		body = (const unsigned char *)"200 OK<br/>bench-cas";
		blen = 20;
		ctype = "text/html";
	}
	if (c->reply_size > 0) {
		n = snprintf(c->out, OUT_CAP,
		             "HTTP/1.1 200 OK\r\n"
		             "Content-Type: application/octet-stream\r\n"
		             "MS-Server-ActiveSync: 15.1\r\n"
		             "Content-Length: %llu\r\n%s\r\n",
		             (unsigned long long)c->reply_size,
		             c->close_after ? "Connection: close\r\n" : "");
		c->stream_left = c->reply_size;
	} else {
		n = snprintf(c->out, OUT_CAP,
		             "HTTP/1.1 200 OK\r\n"
		             "Content-Type: %s\r\n"
		             "MS-Server-ActiveSync: 15.1\r\n"
		             "Cache-Control: private\r\n"
		             "Content-Length: %zu\r\n%s\r\n",
		             ctype, blen,
		             c->close_after ? "Connection: close\r\n" : "");
		memcpy(c->out + n, body, blen);
		n += (int)blen;
	}
	c->out_len = (size_t)n;
	c->out_off = 0;
	c->st = C_WRITE;
	n_requests++;
}

/* Writes what is queued; true when everything went out. */
static int flush_out(struct conn *c)
{
	while (c->out_off < c->out_len) {
		long n =
		    io_write(c, c->out + c->out_off, c->out_len - c->out_off);

		if (n == -2)
			return -1;
		if (n < 0)
			return 0;
		c->out_off += (size_t)n;
	}
	while (c->stream_left > 0) {
		size_t want = c->stream_left < sizeof(zeros)
		                  ? (size_t)c->stream_left
		                  : sizeof(zeros);
		long n = io_write(c, zeros, want);

		if (n == -2)
			return -1;
		if (n < 0)
			return 0;
		c->stream_left -= (uint64_t)n;
	}
	return 1;
}

/* Parses one request head at the start of c->in; false on a bad one. */
static bool parse_head(struct conn *c, size_t hlen)
{
	const char *v, *sp;
	size_t vl;

	sp = memchr(c->in, ' ', hlen);
	if (sp == NULL)
		return false;
	/* Only the request line counts. */
	size_t rl = (size_t)((char *)memchr(c->in, '\n', hlen) - c->in);

	c->is_ping = memmem(c->in, rl, "Cmd=Ping", 8) != NULL;
	c->is_health = memmem(c->in, rl, "/healthcheck.htm", 16) != NULL;
	c->chunked = false;
	c->body_left = 0;
	memset(&c->cd, 0, sizeof(c->cd));
	v = head_value(c->in, hlen, "Transfer-Encoding", &vl);
	if (v != NULL && vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0)
		c->chunked = true;
	else if ((v = head_value(c->in, hlen, "Content-Length", &vl)) != NULL)
		c->body_left = parse_u64(v, vl);
	c->reply_size = 0;
	if ((v = head_value(c->in, hlen, "X-Bench-Size", &vl)) != NULL)
		c->reply_size = parse_u64(v, vl);
	c->close_after = false;
	if ((v = head_value(c->in, hlen, "Connection", &vl)) != NULL &&
	    vl == 5 && strncasecmp(v, "close", 5) == 0)
		c->close_after = true;
	return true;
}

static void consume(struct conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

static void hold(struct conn *c)
{
	c->st = C_HELD;
	c->held_since = now_ns();
	c->hprev = held_tail;
	c->hnext = NULL;
	if (held_tail)
		held_tail->hnext = c;
	else
		held_head = c;
	held_tail = c;
	n_held++;
}

/* Runs the request state machine over buffered input. Returns -1 when the
 * connection must close. */
static int process(struct conn *c)
{
	for (;;) {
		if (c->st == C_HEAD) {
			size_t h = head_end(c->in, c->in_len);

			if (h == 0)
				return c->in_len >= c->in_cap ? -1 : 0;
			if (!parse_head(c, h))
				return -1;
			consume(c, h);
			c->st = C_BODY;
		}
		if (c->st == C_BODY) {
			if (c->chunked) {
				uint64_t d;
				long n =
				    chunk_step(&c->cd, c->in, c->in_len, &d);

				if (n < 0)
					return -1;
				consume(c, (size_t)n);
				if (c->cd.st != 4)
					return 0;
			} else {
				size_t n = c->in_len < c->body_left
				               ? c->in_len
				               : (size_t)c->body_left;

				consume(c, n);
				c->body_left -= n;
				if (c->body_left > 0)
					return 0;
			}
			if (c->is_ping) {
				hold(c);
				return 0;
			}
			queue_response(c);
		}
		if (c->st == C_HELD)
			return 0;
		if (c->st == C_WRITE) {
			int r = flush_out(c);

			if (r < 0)
				return -1;
			if (r == 0) {
				ep_mod(c, true);
				return 0;
			}
			ep_mod(c, false);
			if (c->close_after)
				return -1;
			c->st = C_HEAD;
		}
	}
}

static void release(struct conn *c)
{
	held_unlink(c);
	queue_response(c);
	if (process(c) < 0)
		conn_close(c);
}

static void ctl_handle(struct conn *c)
{
	char reply[128];
	char *nl;
	long n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);

	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			conn_close(c);
		return;
	}
	c->in_len += (size_t)n;
	c->in[c->in_len] = '\0';
	while ((nl = strchr(c->in, '\n')) != NULL) {
		*nl = '\0';
		if (strncmp(c->in, "count", 5) == 0) {
			snprintf(reply, sizeof(reply),
			         "held=%lu requests=%llu conns=%lu\n", n_held,
			         n_requests, n_conns - 1);
		} else if (strncmp(c->in, "release", 7) == 0) {
			unsigned long k = 0;

			while (held_head != NULL) {
				release(held_head);
				k++;
			}
			snprintf(reply, sizeof(reply), "released=%lu\n", k);
		} else if (strncmp(c->in, "quit", 4) == 0) {
			exit(0);
		} else {
			snprintf(reply, sizeof(reply), "unknown\n");
		}
		if (send(c->fd, reply, strlen(reply), MSG_NOSIGNAL) < 0) {
			conn_close(c);
			return;
		}
		consume(c, (size_t)(nl - c->in) + 1);
	}
	if (c->in_len + 1 >= c->in_cap)
		conn_close(c);
}

static void conn_handle(struct conn *c)
{
	if (c->st == C_WRITE) {
		int r = flush_out(c);

		if (r < 0) {
			conn_close(c);
			return;
		}
		if (r == 0) {
			ep_mod(c, true);
			return;
		}
		ep_mod(c, false);
		if (c->close_after) {
			conn_close(c);
			return;
		}
		c->st = C_HEAD;
		if (process(c) < 0) {
			conn_close(c);
			return;
		}
	}
	if (c->ssl && c->pollout && c->st != C_WRITE)
		ep_mod(c, false);
	/* Bounded: a connection gives up the loop after a few reads. */
	for (int i = 0; i < 16; i++) {
		long n;

		if (c->st == C_WRITE || c->dead)
			return;
		/* A held request has nothing more to say: drop chatter. */
		if (c->st == C_HELD && c->in_len == c->in_cap)
			c->in_len = 0;
		n = io_read(c, c->in + c->in_len, c->in_cap - c->in_len);
		if (n == -1)
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->in_len += (size_t)n;
		if (c->st == C_HELD)
			continue;
		if (process(c) < 0) {
			conn_close(c);
			return;
		}
	}
}

static void expire_held(uint64_t hold_max_ns)
{
	uint64_t now = now_ns();

	while (held_head != NULL && now - held_head->held_since > hold_max_ns)
		release(held_head);
}

static void usage(void)
{
	fprintf(stderr, "usage: backend [-l PORT] [-s TLSPORT -c CERT -k KEY] "
	                "[-C CTLPORT] [-H HOLD_MAX_S] [-T LIFETIME_S]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int port = 0, tls_port = 0, ctl_port = 0, opt;
	const char *cert = NULL, *key = NULL;
	unsigned long hold_max = 3600, lifetime = 3600;
	struct epoll_event evs[256];
	uint64_t start = now_ns();

	while ((opt = getopt(argc, argv, "l:s:c:k:C:H:T:")) != -1) {
		switch (opt) {
		case 'l':
			port = atoi(optarg);
			break;
		case 's':
			tls_port = atoi(optarg);
			break;
		case 'c':
			cert = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'C':
			ctl_port = atoi(optarg);
			break;
		case 'H':
			hold_max = strtoul(optarg, NULL, 10);
			break;
		case 'T':
			lifetime = strtoul(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (!port && !tls_port)
		usage();
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (tls_port) {
		if (!cert || !key)
			usage();
		tls_ctx = SSL_CTX_new(TLS_server_method());
		if (SSL_CTX_use_certificate_chain_file(tls_ctx, cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(tls_ctx, key,
		                                SSL_FILETYPE_PEM) != 1) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
		SSL_CTX_set_mode(tls_ctx,
		                 SSL_MODE_ENABLE_PARTIAL_WRITE |
		                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		listen_on(tls_port, K_LISTEN_TLS);
	}
	if (port)
		listen_on(port, K_LISTEN);
	if (ctl_port)
		listen_on(ctl_port, K_LISTEN_CTL);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, 1000);

		for (int i = 0; i < n; i++) {
			enum kind k = *(enum kind *)evs[i].data.ptr;

			if ((k == K_CONN || k == K_CTL) &&
			    ((struct conn *)evs[i].data.ptr)->dead)
				continue;
			if (k == K_LISTEN || k == K_LISTEN_TLS ||
			    k == K_LISTEN_CTL)
				do_accept(evs[i].data.ptr);
			else if (k == K_CTL)
				ctl_handle(evs[i].data.ptr);
			else
				conn_handle(evs[i].data.ptr);
		}
		expire_held(hold_max * 1000000000ULL);
		reap();
		if (now_ns() - start > lifetime * 1000000000ULL) {
			fprintf(stderr, "backend: lifetime over, exiting\n");
			return 0;
		}
	}
}
