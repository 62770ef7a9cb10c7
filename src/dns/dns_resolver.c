/*
 * The asynchronous side of dns/: queries over UDP and TCP on libevent, the
 * A + AAAA merge, and watches that keep a name fresh.
 *
 * One query (struct dns_query) runs two transfers (struct dns_xfer), one per
 * record type, each going through attempts: one server, one random ID, one
 * fresh UDP socket (so a random source port), and TCP to the same server when
 * the reply is truncated. Completion frees the query before its callback
 * runs, so a callback may free anything, the resolver included; every path
 * that may complete a query returns right after doing so.
 */
#include "dns/dns.h"

#include "core/log.h"
#include "core/str.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#define DNS_TIMEOUT_MS 2000 /* per attempt: libc's 5 s is too slow */
#define DNS_TRIES 2         /* per server */
#define DNS_UDP_BURST 32    /* datagrams read per wake-up before yielding */
#define DNS_BACKOFF_MAX 60  /* seconds between retries of a failing watch */
#define DNS_RESOLV_CONF "/etc/resolv.conf"

struct dns_server {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[128]; /* for logs */
};

/* The phases of one transfer; what holds in each: */
enum xfer_state {
	XFER_IDLE, /* nothing armed: between attempts or not started */
	XFER_UDP,  /* fd, io and timer armed; waiting for a datagram */
	XFER_TCP,  /* bev connecting or waiting for the reply; timer armed */
	XFER_DONE, /* nothing armed; status and addrs final */
};

static const char *xfer_state_str(enum xfer_state s)
{
	switch (s) {
	case XFER_IDLE:
		return "idle";
	case XFER_UDP:
		return "udp";
	case XFER_TCP:
		return "tcp";
	case XFER_DONE:
		return "done";
	}
	return "?";
}

struct dns_xfer {
	struct dns_query *q; /* owner of this transfer */
	uint16_t qtype;
	uint16_t id; /* ID of the current attempt */
	enum xfer_state state;
	bool tcp_next;         /* the next attempt is TCP to the same server */
	unsigned attempt;      /* attempts started so far */
	unsigned max_attempts; /* servers x tries, fixed at start */
	unsigned first;        /* server of the first attempt */
	unsigned server;       /* server of the current attempt */
	int fd;                /* owned: UDP socket, -1 when none */
	struct event *io;      /* owned: read event on fd, or NULL */
	struct bufferevent *bev; /* owned: TCP connection (owns its fd) */
	struct event *timer;     /* owned: deadline of the current attempt */
	uint8_t *wire;           /* owned: the query; bytes 0-1 are the ID */
	size_t wire_len;
	int status; /* once XFER_DONE: enum dns_answer OK/NXDOMAIN, or -1 */
	struct dns_addrs addrs;
};

struct dns_query {
	struct dns_resolver *r; /* not owned; r->queries lists this query */
	TAILQ_ENTRY(dns_query) link;
	dns_cb cb;
	void *arg;
	char name[DNS_NAME_MAX];
	struct event *defer; /* owned: starts the query from the loop */
	struct dns_addrs literal;
	unsigned pending; /* transfers not done yet */
	struct dns_xfer x[2];
};

struct dns_watch {
	struct dns_resolver *r; /* not owned; r->watches lists this watch */
	TAILQ_ENTRY(dns_watch) link;
	char name[DNS_NAME_MAX];
	unsigned min_ttl, max_ttl;
	dns_watch_cb on_change;
	void *arg;
	struct dns_query *q; /* owned: resolution in flight, or NULL */
	struct event *timer; /* owned: next resolution */
	unsigned fails;      /* failed resolutions in a row */
	bool have;           /* addrs holds a good answer */
	struct dns_addrs addrs;
};

struct dns_resolver {
	struct event_base *base; /* not owned */
	struct dns_server servers[DNS_MAX_SERVERS];
	unsigned n_servers;
	unsigned preferred; /* the server that answered last */
	unsigned timeout_ms;
	unsigned tries;
	TAILQ_HEAD(, dns_query) queries; /* owned: queries in flight */
	TAILQ_HEAD(, dns_watch) watches; /* owned: watches not yet freed */
	unsigned long n_dropped;         /* replies dropped as bad or forged */
	uint8_t rx[65536];               /* UDP receive buffer, one thread */
};

static void xfer_next(struct dns_xfer *x);

/* Sets *err to a malloc'd copy of msg when err is not NULL. */
static void set_err(char **err, const char *msg)
{
	if (err != NULL)
		*err = strdup(msg);
}

/* Parses "IP", "IP:PORT", "[IPv6]:PORT" or a bare IPv6 (with an optional
 * %scope) without any lookup. Returns 0 or -1. */
static int server_parse(const char *s, struct dns_server *out)
{
	char host[INET6_ADDRSTRLEN + 32];
	const char *port = "53", *colon = strchr(s, ':');
	size_t hlen = strlen(s);
	struct addrinfo hints, *ai = NULL;
	uint64_t pn;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return -1;
		s++;
		hlen = (size_t)(end - s);
		if (end[1] == ':')
			port = end + 2;
	} else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
		/* One colon: IPv4 with a port; more: a bare IPv6. */
		hlen = (size_t)(colon - s);
		port = colon + 1;
	}
	/* getaddrinfo() takes "99999" as a port: check the range here. */
	if (hlen == 0 || hlen >= sizeof(host) ||
	    !str_to_u64(str_from(port), &pn) || pn == 0 || pn > 65535)
		return -1;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	hints.ai_socktype = SOCK_DGRAM;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	if (ai->ai_addrlen > sizeof(out->ss)) {
		freeaddrinfo(ai);
		return -1;
	}
	memcpy(&out->ss, ai->ai_addr, ai->ai_addrlen);
	out->len = ai->ai_addrlen;
	freeaddrinfo(ai);
	snprintf(out->text, sizeof(out->text), "%s%s%s:%s",
	         out->ss.ss_family == AF_INET6 ? "[" : "", host,
	         out->ss.ss_family == AF_INET6 ? "]" : "", port);
	return 0;
}

/* Adds the nameserver lines of path to r, as libc reads them. A missing file
 * is no error: the caller falls back to the local server. */
static void servers_from_resolv_conf(struct dns_resolver *r, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;

	if (f == NULL)
		return;
	while (getline(&line, &cap, f) > 0 && r->n_servers < DNS_MAX_SERVERS) {
		char *save = NULL, *key = strtok_r(line, " \t\r\n", &save);
		char *val = strtok_r(NULL, " \t\r\n", &save);

		if (key == NULL || val == NULL ||
		    strcmp(key, "nameserver") != 0)
			continue;
		/* A port is not resolv.conf syntax: "a:b" there is IPv6. */
		if (strchr(val, ':') != NULL && val[0] != '[') {
			char v6[INET6_ADDRSTRLEN + 40];

			snprintf(v6, sizeof(v6), "[%s]", val);
			if (server_parse(v6, &r->servers[r->n_servers]) == 0)
				r->n_servers++;
		} else if (server_parse(val, &r->servers[r->n_servers]) == 0) {
			r->n_servers++;
		} else {
			log_warnx("dns: %s: ignoring nameserver %s", path, val);
		}
	}
	free(line);
	fclose(f);
}

struct dns_resolver *dns_resolver_new(struct event_base *base,
                                      char *const *servers, unsigned n_servers,
                                      char **err)
{
	struct dns_resolver *r;

	if (err != NULL)
		*err = NULL;
	if (base == NULL || (n_servers > 0 && servers == NULL)) {
		set_err(err, "dns: no event base or no server list");
		return NULL;
	}
	if (n_servers > DNS_MAX_SERVERS) {
		set_err(err, "dns: too many name servers (at most 8)");
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		set_err(err, "dns: out of memory");
		return NULL;
	}
	r->base = base;
	r->timeout_ms = DNS_TIMEOUT_MS;
	r->tries = DNS_TRIES;
	TAILQ_INIT(&r->queries);
	TAILQ_INIT(&r->watches);
	for (unsigned i = 0; i < n_servers; i++) {
		if (servers[i] == NULL ||
		    server_parse(servers[i], &r->servers[i]) != 0) {
			char msg[300];

			snprintf(msg, sizeof(msg),
			         "dns: invalid name server \"%.200s\" (IP, "
			         "IP:PORT or [IPv6]:PORT)",
			         servers[i] != NULL ? servers[i] : "");
			set_err(err, msg);
			free(r);
			return NULL;
		}
		r->n_servers++;
	}
	if (n_servers == 0)
		servers_from_resolv_conf(r, DNS_RESOLV_CONF);
	if (r->n_servers == 0 && server_parse("127.0.0.1", &r->servers[0]) == 0)
		r->n_servers = 1;
	return r;
}

void dns_resolver_set_timeout(struct dns_resolver *r, unsigned timeout_ms,
                              unsigned tries)
{
	r->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
	r->tries = tries > 0 ? tries : 1;
}

/* Closes whatever the current attempt of x holds open. */
static void xfer_close(struct dns_xfer *x)
{
	if (x->state != XFER_DONE)
		x->state = XFER_IDLE;
	if (x->io != NULL) {
		event_free(x->io);
		x->io = NULL;
	}
	if (x->fd >= 0) {
		close(x->fd);
		x->fd = -1;
	}
	if (x->bev != NULL) {
		bufferevent_free(x->bev);
		x->bev = NULL;
	}
	if (x->timer != NULL)
		evtimer_del(x->timer);
}

/* Releases everything x owns; x itself lives inside its query. */
static void xfer_release(struct dns_xfer *x)
{
	xfer_close(x);
	if (x->timer != NULL)
		event_free(x->timer);
	x->timer = NULL;
	free(x->wire);
	x->wire = NULL;
}

/* Unlinks q from its resolver and frees it; no callback. */
static void query_free(struct dns_query *q)
{
	TAILQ_REMOVE(&q->r->queries, q, link);
	for (int i = 0; i < 2; i++)
		xfer_release(&q->x[i]);
	if (q->defer != NULL)
		event_free(q->defer);
	free(q);
}

/* Appends the addresses of src to dst while there is room; lowers the TTL. */
static void addrs_merge(struct dns_addrs *dst, const struct dns_addrs *src)
{
	for (unsigned i = 0; i < src->n && dst->n < DNS_MAX_ADDRS; i++)
		dst->addr[dst->n++] = src->addr[i];
	if (src->ttl < dst->ttl)
		dst->ttl = src->ttl;
	if (dst->n_cname == 0 && src->n_cname > 0) {
		memcpy(dst->cname_chain, src->cname_chain,
		       sizeof(dst->cname_chain));
		dst->n_cname = src->n_cname;
	}
}

/* The status of the whole query: addresses from either type win; else a
 * failure of either (we cannot tell there are none); else NXDOMAIN; else an
 * empty NOERROR. */
static int query_merge(const struct dns_query *q, struct dns_addrs *out)
{
	bool failed = false, nx = false;

	memset(out, 0, sizeof(*out));
	out->ttl = UINT32_MAX;
	for (int i = 0; i < 2; i++) {
		const struct dns_xfer *x = &q->x[i];

		if (x->status == DNS_ANSWER_OK)
			addrs_merge(out, &x->addrs);
		else if (x->status == DNS_ANSWER_NXDOMAIN)
			nx = true;
		else
			failed = true;
	}
	if (out->ttl == UINT32_MAX)
		out->ttl = 0;
	if (out->n > 0)
		return 0;
	if (failed)
		return -1;
	return nx ? 1 : 0;
}

/* Marks x done with status; when it was the last transfer, frees the query
 * and runs its callback. The query may be gone on return. */
static void xfer_done(struct dns_xfer *x, int status)
{
	struct dns_query *q = x->q;
	struct dns_addrs res;
	dns_cb cb;
	void *arg;
	int st;

	xfer_close(x);
	x->state = XFER_DONE;
	x->status = status;
	if (--q->pending > 0)
		return;
	st = query_merge(q, &res);
	cb = q->cb;
	arg = q->arg;
	log_debug("dns: %s: status %d, %u addresses, ttl %u", q->name, st,
	          res.n, (unsigned)res.ttl);
	query_free(q);
	cb(st, &res, arg);
}

/* Handles one reply of the current attempt. Returns false when the reply is
 * to be ignored (keep waiting); true when x moved on, in which case the query
 * may be gone. */
static bool xfer_reply(struct dns_xfer *x, const uint8_t *pkt, size_t len,
                       bool tcp)
{
	struct dns_resolver *r = x->q->r;
	const struct dns_server *s = &r->servers[x->server];
	enum dns_answer a =
	    dns_answer_parse(pkt, len, x->id, x->q->name, x->qtype, &x->addrs);

	switch (a) {
	case DNS_ANSWER_BAD:
		r->n_dropped++;
		log_debug("dns: %s: dropped a bad reply from %s (%lu so far)",
		          x->q->name, s->text, r->n_dropped);
		return false;
	case DNS_ANSWER_TRUNCATED:
	case DNS_ANSWER_SERVER_ERR:
		log_debug("dns: %s: %s from %s%s", x->q->name,
		          dns_answer_str(a), s->text, tcp ? " over TCP" : "");
		if (a == DNS_ANSWER_TRUNCATED && !tcp) {
			x->tcp_next = true;
			x->attempt--; /* TCP is the same attempt again */
		}
		xfer_next(x);
		return true;
	case DNS_ANSWER_OK:
	case DNS_ANSWER_NXDOMAIN:
		r->preferred = x->server;
		xfer_done(x, a);
		return true;
	}
	return false;
}

/* Reads the datagrams waiting on the socket of the current attempt. */
static void udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_xfer *x = arg;
	struct dns_resolver *r = x->q->r;

	for (int i = 0; i < DNS_UDP_BURST; i++) {
		ssize_t n = recv(fd, r->rx, sizeof(r->rx), 0);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return;
			/* ICMP unreachable and the like: this server will not
			 * answer, ask the next one now. */
			log_debug("dns: %s: %s: %s", x->q->name,
			          r->servers[x->server].text, strerror(errno));
			xfer_next(x);
			return;
		}
		if (xfer_reply(x, r->rx, (size_t)n, false))
			return;
	}
}

/* Reads the length-prefixed reply of RFC 1035 §4.2.2 once it is whole. */
static void tcp_read_cb(struct bufferevent *bev, void *arg)
{
	struct dns_xfer *x = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t have = evbuffer_get_length(in), need;
	uint8_t hdr[2];
	uint8_t *pkt;

	if (have < 2)
		return;
	evbuffer_copyout(in, hdr, 2);
	need = (size_t)hdr[0] << 8 | hdr[1];
	if (have < 2 + need)
		return;
	evbuffer_drain(in, 2);
	pkt = evbuffer_pullup(in, (ev_ssize_t)need);
	/* A connection carries our one query: a bad reply ends it. */
	if (pkt == NULL || !xfer_reply(x, pkt, need, true))
		xfer_next(x);
}

static void tcp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct dns_xfer *x = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;
	log_debug("dns: %s: TCP to %s: %s", x->q->name,
	          x->q->r->servers[x->server].text,
	          (what & BEV_EVENT_EOF) ? "closed" : "error");
	xfer_next(x);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_xfer *x = arg;

	log_debug("dns: %s: no answer from %s over %s", x->q->name,
	          x->q->r->servers[x->server].text, xfer_state_str(x->state));
	xfer_next(x);
}

/* Arms the deadline of the current attempt. */
static int timer_arm(struct dns_xfer *x)
{
	unsigned ms = x->q->r->timeout_ms;
	struct timeval tv = {.tv_sec = ms / 1000,
	                     .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	return evtimer_add(x->timer, &tv);
}

/* Opens a fresh connected UDP socket to the attempt's server and sends the
 * query. Returns 0, or -1 when this attempt cannot even start. */
static int udp_start(struct dns_xfer *x)
{
	struct dns_resolver *r = x->q->r;
	const struct dns_server *s = &r->servers[x->server];

	x->fd = socket(s->ss.ss_family,
	               SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (x->fd < 0)
		return -1;
	/* connect(): the kernel drops datagrams from anyone else, and the
	 * implicit bind picks a random source port. */
	if (connect(x->fd, (const struct sockaddr *)&s->ss, s->len) != 0 ||
	    send(x->fd, x->wire, x->wire_len, 0) != (ssize_t)x->wire_len) {
		log_debug("dns: %s: sending to %s: %s", x->q->name, s->text,
		          strerror(errno));
		return -1;
	}
	x->io = event_new(r->base, x->fd, EV_READ | EV_PERSIST, udp_read_cb, x);
	if (x->io == NULL || event_add(x->io, NULL) != 0 || timer_arm(x) != 0)
		return -1;
	x->state = XFER_UDP;
	return 0;
}

/* Connects to the attempt's server over TCP and queues the query with its
 * length prefix. Returns 0, or -1 when this attempt cannot even start. */
static int tcp_start(struct dns_xfer *x)
{
	struct dns_resolver *r = x->q->r;
	const struct dns_server *s = &r->servers[x->server];
	uint8_t hdr[2] = {(uint8_t)(x->wire_len >> 8), (uint8_t)x->wire_len};
	int fd;

	fd = socket(s->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	            0);
	if (fd < 0)
		return -1;
	/* Connecting here rather than in libevent keeps an immediate
	 * failure synchronous and free of callbacks. */
	if (connect(fd, (const struct sockaddr *)&s->ss, s->len) != 0 &&
	    errno != EINPROGRESS) {
		log_debug("dns: %s: TCP to %s: %s", x->q->name, s->text,
		          strerror(errno));
		close(fd);
		return -1;
	}
	x->bev = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (x->bev == NULL) {
		close(fd);
		return -1;
	}
	bufferevent_setcb(x->bev, tcp_read_cb, NULL, tcp_event_cb, x);
	if (bufferevent_socket_connect(x->bev, NULL, 0) != 0 ||
	    bufferevent_write(x->bev, hdr, 2) != 0 ||
	    bufferevent_write(x->bev, x->wire, x->wire_len) != 0 ||
	    bufferevent_enable(x->bev, EV_READ | EV_WRITE) != 0 ||
	    timer_arm(x) != 0)
		return -1;
	x->state = XFER_TCP;
	return 0;
}

/* Starts the next attempt of x (TCP when a truncated reply asked for it), or
 * ends x as a failure once every attempt has been made. The query may be
 * gone on return. */
static void xfer_next(struct dns_xfer *x)
{
	struct dns_resolver *r = x->q->r;
	bool tcp = x->tcp_next;

	x->tcp_next = false;
	xfer_close(x);
	while (x->attempt < x->max_attempts) {
		if (!tcp)
			x->server = (x->first + x->attempt) % r->n_servers;
		x->attempt++;
		x->id = (uint16_t)arc4random();
		x->wire[0] = (uint8_t)(x->id >> 8);
		x->wire[1] = (uint8_t)x->id;
		if ((tcp ? tcp_start(x) : udp_start(x)) == 0)
			return;
		xfer_close(x);
		tcp = false;
	}
	xfer_done(x, -1);
}

/* Fills a with the address of an IP literal ("192.0.2.1", "2001:db8::1",
 * "[2001:db8::1]"). Returns false for anything else. */
static bool literal_parse(const char *name, struct dns_addrs *a)
{
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(name);
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->addr[0];
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->addr[0];

	if (n >= 2 && name[0] == '[' && name[n - 1] == ']') {
		name++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, name, n);
	buf[n] = '\0';
	memset(a, 0, sizeof(*a));
	/* A literal never expires. */
	a->ttl = UINT32_MAX;
	if (inet_pton(AF_INET, buf, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
	} else if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
	} else {
		return false;
	}
	a->n = 1;
	return true;
}

/* Starts q from the event loop, so that neither an answer nor a failure
 * ever reaches the callback from inside dns_resolve(). */
static void query_start_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;

	if (q->pending == 0) {
		struct dns_addrs res = q->literal;
		dns_cb cb = q->cb;
		void *cb_arg = q->arg;

		query_free(q);
		cb(0, &res, cb_arg);
		return;
	}
	/* The first transfer cannot complete the query while the second
	 * is still pending, so q is alive for the second call. */
	xfer_next(&q->x[0]);
	xfer_next(&q->x[1]);
}

/* Prepares transfer i of q for qtype. Returns 0 or -1 (no memory). */
static int xfer_init(struct dns_query *q, int i, uint16_t qtype)
{
	struct dns_xfer *x = &q->x[i];

	x->q = q;
	x->qtype = qtype;
	x->fd = -1;
	x->status = -1;
	x->state = XFER_IDLE;
	x->max_attempts = q->r->n_servers * q->r->tries;
	x->first = q->r->preferred % q->r->n_servers;
	x->wire = dns_query_build(q->name, qtype, 0, &x->wire_len);
	x->timer = evtimer_new(q->r->base, timer_cb, x);
	return x->wire != NULL && x->wire_len >= 12 && x->timer != NULL ? 0
	                                                                : -1;
}

struct dns_query *dns_resolve(struct dns_resolver *r, const char *name,
                              dns_cb cb, void *arg)
{
	static const struct timeval now = {0, 0};
	struct dns_query *q;
	size_t n = name != NULL ? strlen(name) : 0;

	if (r == NULL || cb == NULL || n == 0 || n >= DNS_NAME_MAX)
		return NULL;
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return NULL;
	q->r = r;
	q->cb = cb;
	q->arg = arg;
	memcpy(q->name, name, n + 1);
	q->x[0].fd = q->x[1].fd = -1;
	TAILQ_INSERT_TAIL(&r->queries, q, link);
	if (!literal_parse(name, &q->literal)) {
		if (xfer_init(q, 0, DNS_QTYPE_A) != 0 ||
		    xfer_init(q, 1, DNS_QTYPE_AAAA) != 0)
			goto fail;
		q->pending = 2;
	}
	q->defer = evtimer_new(r->base, query_start_cb, q);
	if (q->defer == NULL || evtimer_add(q->defer, &now) != 0)
		goto fail;
	return q;
fail:
	query_free(q);
	return NULL;
}

void dns_cancel(struct dns_query *q)
{
	if (q != NULL)
		query_free(q);
}

static void watch_start(struct dns_watch *w);

/* Arms the watch's timer for secs seconds from now. */
static void watch_arm(struct dns_watch *w, unsigned secs)
{
	struct timeval tv = {.tv_sec = secs, .tv_usec = 0};

	if (evtimer_add(w->timer, &tv) != 0)
		log_warnx("dns: %s: cannot arm the refresh timer", w->name);
}

static void watch_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	watch_start(arg);
}

/* Schedules the retry of a failed resolution: 1 s, doubling, capped. */
static void watch_failed(struct dns_watch *w, int status)
{
	unsigned cap =
	    w->max_ttl < DNS_BACKOFF_MAX ? w->max_ttl : DNS_BACKOFF_MAX;
	unsigned delay = 1U << (w->fails < 16 ? w->fails : 16);

	w->fails++;
	if (w->fails == 1)
		log_warnx("dns: %s: resolution failed (%s)%s", w->name,
		          status == 1   ? "NXDOMAIN"
		          : status == 0 ? "no address"
		                        : "no answer",
		          w->have ? ", keeping the last answer" : "");
	watch_arm(w, delay < cap ? delay : cap);
}

static void watch_cb(int status, const struct dns_addrs *addrs, void *arg)
{
	struct dns_watch *w = arg;
	unsigned ttl;
	bool changed;

	w->q = NULL;
	if (status != 0 || addrs->n == 0) {
		watch_failed(w, status);
		return;
	}
	if (w->fails > 0)
		log_info("dns: %s: resolves again", w->name);
	w->fails = 0;
	changed = !w->have || !dns_addrs_same(&w->addrs, addrs);
	w->addrs = *addrs;
	w->have = true;
	ttl = addrs->ttl < w->min_ttl   ? w->min_ttl
	      : addrs->ttl > w->max_ttl ? w->max_ttl
	                                : (unsigned)addrs->ttl;
	watch_arm(w, ttl);
	if (changed) {
		log_info("dns: %s: %u address(es), next check in %u s", w->name,
		         w->addrs.n, ttl);
		/* Last: the callback may free w. */
		if (w->on_change != NULL)
			w->on_change(&w->addrs, w->arg);
	}
}

/* Starts one resolution of the watched name. */
static void watch_start(struct dns_watch *w)
{
	w->q = dns_resolve(w->r, w->name, watch_cb, w);
	if (w->q == NULL)
		watch_failed(w, -1);
}

struct dns_watch *dns_watch_new(struct dns_resolver *r, const char *name,
                                unsigned min_ttl, unsigned max_ttl,
                                dns_watch_cb on_change, void *arg)
{
	struct dns_watch *w;
	size_t n = name != NULL ? strlen(name) : 0;

	if (r == NULL || n == 0 || n >= DNS_NAME_MAX)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->r = r;
	memcpy(w->name, name, n + 1);
	w->min_ttl = min_ttl > 0 ? min_ttl : 1;
	w->max_ttl = max_ttl > w->min_ttl ? max_ttl : w->min_ttl;
	w->on_change = on_change;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&r->watches, w, link);
	w->timer = evtimer_new(r->base, watch_timer_cb, w);
	/* The first resolution also validates the name. */
	if (w->timer == NULL ||
	    (w->q = dns_resolve(r, name, watch_cb, w)) == NULL) {
		dns_watch_free(w);
		return NULL;
	}
	return w;
}

const struct dns_addrs *dns_watch_addrs(const struct dns_watch *w)
{
	return w->have ? &w->addrs : NULL;
}

void dns_watch_free(struct dns_watch *w)
{
	if (w == NULL)
		return;
	dns_cancel(w->q);
	if (w->timer != NULL)
		event_free(w->timer);
	TAILQ_REMOVE(&w->r->watches, w, link);
	free(w);
}

void dns_resolver_free(struct dns_resolver *r)
{
	struct dns_watch *w;
	struct dns_query *q;

	if (r == NULL)
		return;
	while ((w = TAILQ_FIRST(&r->watches)) != NULL)
		dns_watch_free(w);
	while ((q = TAILQ_FIRST(&r->queries)) != NULL)
		query_free(q);
	free(r);
}
