/*
 * Tests of the request lifecycle (proxy/txn.c with session.c, relay.c,
 * autodisc.c, respond.c) without the daemon process. One test process holds
 * a real proxy: proxy_new(), a generation built by generation_build() from a
 * config written here, proxy_listen() on 127.0.0.1 at a port picked here,
 * proxy_publish(), proxy_start() with one worker, and proxy_stop(). Around
 * it: a certificate made with the OpenSSL API, a scripted CAS (a thread with
 * a plain listening socket that answers each complete request with the
 * bytes a row gives, then keeps the connection, closes it, or stays silent)
 * and a blocking TLS client in the test thread.
 *
 * Each row gives what the client sends and what the CAS answers, and
 * expects: the bytes the client receives, what the CAS received, the
 * request's states as txn_set_state() logs them at debug level ("none ->
 * head -> ..."), and the termination code of each access-log line. Rows run
 * in order on the one proxy, each on its own client connection, and leave it
 * as they found it: every CAS answer but the one a pipelined request
 * reuses says Connection: close, so no row meets another's pooled
 * connection, and a row ends only once the CAS holds no connection. The
 * drain row stops the proxy and comes last.
 *
 * The world: site1 is this front end's site; its one CAS is a port where
 * nothing listens (a bound socket that never listens holds it), with
 * fallback site2, whose CAS is the scripted one. local@ lives in site1,
 * remote@ in site2. Proxied rows speak for remote@ at EAS 12.1, which cannot
 * follow a 451, so they go to site2 over the internal link. No control loop
 * runs (DNS watches, health checks): the CAS are IP literals and stay up as
 * seeded, so the scripted CAS sees only the rows' requests.
 *
 * Not here: a request waiting for the directory (state route) needs an LDAP
 * server; tests/integration/test_directory.py covers it with slapd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "conf/conf.h"
#include "core/log.h"
#include "daemon/generation.h"
#include "eas/autodiscover.h"
#include "proxy/accesslog.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"

/* Every wait is bounded by this many milliseconds. */
#define WAIT_MS 5000

#define HOST "eas.contoso.test"
#define AD_HOST "autodiscover.contoso.test"
#define EXT1 "https://site1-eas.contoso.test/Microsoft-Server-ActiveSync"
#define EXT2 "https://site2-eas.contoso.test/Microsoft-Server-ActiveSync"
/* Basic remote@contoso.test:Passw0rd and local@contoso.test:Passw0rd */
#define AUTH_REMOTE                                                            \
	"Authorization: Basic cmVtb3RlQGNvbnRvc28udGVzdDpQYXNzdzByZA==\r\n"
#define AUTH_LOCAL                                                             \
	"Authorization: Basic bG9jYWxAY29udG9zby50ZXN0OlBhc3N3MHJk\r\n"
#define Q_REMOTE "User=remote%40contoso.test&DeviceId=TXN0001&DeviceType=iPhone"
#define Q_LOCAL "User=local%40contoso.test&DeviceId=TXN0002&DeviceType=iPhone"
/* An EAS command's request line and Host. */
#define EAS_POST(cmd, q)                                                       \
	"POST /Microsoft-Server-ActiveSync?Cmd=" cmd "&" q " HTTP/1.1\r\n"     \
	"Host: " HOST "\r\n"
/* What the CAS sees first of a proxied command. */
#define CAS_POST(cmd) "POST /Microsoft-Server-ActiveSync?Cmd=" cmd "&"
#define V121 "MS-ASProtocolVersion: 12.1\r\n"

#define AD_BODY                                                                \
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>"                           \
	"<Autodiscover xmlns=\"" AD_NS_MOBILESYNC_REQUEST "\">"                \
	"<Request><EMailAddress>remote@contoso.test</EMailAddress>"            \
	"<AcceptableResponseSchema>" AD_NS_MOBILESYNC_RESPONSE                 \
	"</AcceptableResponseSchema></Request></Autodiscover>"
/* The Autodiscover request of remote@ for that body. */
#define AD_POST                                                                \
	"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: " AD_HOST       \
	"\r\n" AUTH_REMOTE                                                     \
	"Content-Type: text/xml\r\nContent-Length: 357\r\n\r\n" AD_BODY
_Static_assert(sizeof(AD_BODY) - 1 == 357, "AD_POST's Content-Length");

/* ------------------------------------------------------------ the CAS */

/* The CAS's answer to one complete request. */
struct cas_answer {
	const char *bytes; /* written as they are; NULL: stay silent */
	bool close;        /* then close the connection */
};

#define CAS_CONNS 8

struct cas_conn {
	int fd; /* -1: slot free */
	char buf[16384];
	size_t n;
};

/* The scripted CAS. Counters and got are per row (cas_script resets
 * them). */
struct cas {
	int lfd;
	uint16_t port;
	pthread_t thread;
	pthread_mutex_t mu; /* guards everything below */
	bool stop;
	struct cas_answer script[2]; /* for the row's 1st and 2nd request */
	unsigned next;               /* requests answered (or not) so far */
	unsigned accepted;           /* connections accepted */
	unsigned requests;           /* complete requests */
	unsigned eofs;               /* connections the proxy closed */
	unsigned open;               /* connections open now */
	char got[16384];             /* every byte received, in order */
	size_t n_got;
	struct cas_conn conn[CAS_CONNS];
};

/* The temporary directory and the files made in it, removed at the end;
 * apart from fx, which gcc's -Wrestrict would see as one object. */
static char tmp_dir[200];
static char tmp_files[8][256];
static unsigned n_tmp_files;

/* Everything else the tests share. */
static struct {
	const char *conf_path, *debug_path, *access_path;
	int debug_fd, access_fd;
	int listen_hold; /* reserves the proxy's port until it binds it */
	int dead_hold;   /* holds site1's CAS port, never listening */
	uint16_t port, dead_port;
	struct proxy *p;
	SSL_CTX *client_ctx;
	struct cas cas;
} fx = {.debug_fd = -1, .access_fd = -1, .listen_hold = -1, .dead_hold = -1};

/* Bounded polling: cond is tried every 10 ms for up to WAIT_MS. */
#define WAIT_UNTIL(cond)                                                       \
	do {                                                                   \
		for (int i_ = 0; i_ < WAIT_MS / 10 && !(cond); i_++)           \
			usleep(10000);                                         \
	} while (0)

/* Finds header name (lower case, with its colon) in the head p[0..n). */
static const char *header_in(const char *p, size_t n, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 2; i + len <= n; i++)
		if (p[i - 2] == '\r' && p[i - 1] == '\n' &&
		    strncasecmp(p + i, name, len) == 0)
			return p + i;
	return NULL;
}

/* Length of the whole HTTP message at the start of p[0..n): its head and a
 * Content-Length body, or a chunked body up to its last chunk; 0 while it
 * is incomplete. */
static size_t message_len(const char *p, size_t n)
{
	const char *end = memmem(p, n, "\r\n\r\n", 4), *v;
	size_t head, body = 0;

	if (end == NULL)
		return 0;
	head = (size_t)(end - p) + 4;
	if (header_in(p, head, "transfer-encoding: chunked") != NULL) {
		v = memmem(p + head - 2, n - head + 2, "\r\n0\r\n\r\n", 7);
		return v ? (size_t)(v - p) + 7 : 0;
	}
	v = header_in(p, head, "content-length:");
	if (v != NULL)
		body = strtoul(v + 15, NULL, 10);
	return head + body <= n ? head + body : 0;
}

static void cas_close_conn(struct cas *c, struct cas_conn *k)
{
	close(k->fd);
	k->fd = -1;
	k->n = 0;
	c->open--;
}

/* Answers every complete request buffered on k, per the script. */
static void cas_answer_requests(struct cas *c, struct cas_conn *k)
{
	size_t len;

	while ((len = message_len(k->buf, k->n)) > 0) {
		const struct cas_answer *a =
		    c->next < 2 ? &c->script[c->next] : NULL;

		c->next++;
		c->requests++;
		memmove(k->buf, k->buf + len, k->n - len);
		k->n -= len;
		if (a == NULL || a->bytes == NULL)
			continue;
		if (send(k->fd, a->bytes, strlen(a->bytes), MSG_NOSIGNAL) < 0 ||
		    a->close) {
			cas_close_conn(c, k);
			return;
		}
	}
}

static void cas_read(struct cas *c, struct cas_conn *k)
{
	ssize_t r =
	    recv(k->fd, k->buf + k->n, sizeof(k->buf) - k->n, MSG_DONTWAIT);

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	/* The proxy closed it (or sent more than a row ever does). */
	if (r <= 0 || k->n + (size_t)r == sizeof(k->buf)) {
		c->eofs++;
		cas_close_conn(c, k);
		return;
	}
	if (c->n_got + (size_t)r < sizeof(c->got)) {
		memcpy(c->got + c->n_got, k->buf + k->n, (size_t)r);
		c->n_got += (size_t)r;
	}
	k->n += (size_t)r;
	cas_answer_requests(c, k);
}

static void cas_accept(struct cas *c)
{
	int fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	c->accepted++;
	for (unsigned i = 0; i < CAS_CONNS; i++)
		if (c->conn[i].fd < 0) {
			c->conn[i].fd = fd;
			c->open++;
			return;
		}
	close(fd);
}

static void *cas_main(void *arg)
{
	struct cas *c = arg;

	for (;;) {
		struct pollfd pfd[1 + CAS_CONNS];
		struct cas_conn *of[1 + CAS_CONNS];
		nfds_t n = 1;

		pthread_mutex_lock(&c->mu);
		if (c->stop) {
			pthread_mutex_unlock(&c->mu);
			break;
		}
		pfd[0] = (struct pollfd){c->lfd, POLLIN, 0};
		for (unsigned i = 0; i < CAS_CONNS; i++)
			if (c->conn[i].fd >= 0) {
				of[n] = &c->conn[i];
				pfd[n++] =
				    (struct pollfd){c->conn[i].fd, POLLIN, 0};
			}
		pthread_mutex_unlock(&c->mu);
		/* Short, so that a stop is seen soon. */
		if (poll(pfd, n, 50) <= 0)
			continue;
		pthread_mutex_lock(&c->mu);
		for (nfds_t i = 1; i < n; i++)
			if (pfd[i].revents != 0)
				cas_read(c, of[i]);
		if (pfd[0].revents & POLLIN)
			cas_accept(c);
		pthread_mutex_unlock(&c->mu);
	}
	for (unsigned i = 0; i < CAS_CONNS; i++)
		if (c->conn[i].fd >= 0)
			close(c->conn[i].fd);
	return NULL;
}

/* A bound TCP socket on 127.0.0.1 at a port the kernel picks; listening
 * when listen_too. With reuse, another SO_REUSEPORT socket may bind the
 * port while this one holds it. */
static int bound_socket(bool listen_too, bool reuse, uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (reuse)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (listen_too)
		assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void cas_start(struct cas *c)
{
	c->lfd = bound_socket(true, false, &c->port);
	pthread_mutex_init(&c->mu, NULL);
	for (unsigned i = 0; i < CAS_CONNS; i++)
		c->conn[i].fd = -1;
	assert_int_equal(pthread_create(&c->thread, NULL, cas_main, c), 0);
}

static void cas_stop(struct cas *c)
{
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	close(c->lfd);
	pthread_mutex_destroy(&c->mu);
}

/* The CAS's answers for the next row; its counters start again. */
static void cas_script(struct cas *c, const struct cas_answer *script)
{
	pthread_mutex_lock(&c->mu);
	memcpy(c->script, script, sizeof(c->script));
	c->next = c->accepted = c->requests = c->eofs = 0;
	c->n_got = 0;
	pthread_mutex_unlock(&c->mu);
}

/* A copy of what the CAS saw this row. */
struct cas_seen {
	unsigned accepted, requests, eofs, open;
	char got[sizeof(fx.cas.got) + 1]; /* NUL-terminated */
	size_t n_got;
};

static void cas_look(struct cas *c, struct cas_seen *out)
{
	pthread_mutex_lock(&c->mu);
	out->accepted = c->accepted;
	out->requests = c->requests;
	out->eofs = c->eofs;
	out->open = c->open;
	memcpy(out->got, c->got, c->n_got);
	out->got[c->n_got] = '\0';
	out->n_got = c->n_got;
	pthread_mutex_unlock(&c->mu);
}

/* True when the CAS holds no connection and none waits to be accepted. */
static bool cas_settled(struct cas *c)
{
	struct pollfd pfd = {c->lfd, POLLIN, 0};
	bool quiet;

	pthread_mutex_lock(&c->mu);
	quiet = c->open == 0 && poll(&pfd, 1, 0) == 0;
	pthread_mutex_unlock(&c->mu);
	return quiet;
}

/* --------------------------------------------------------- the client */

struct client {
	int fd;
	SSL *ssl;
	char got[16384]; /* NUL-terminated */
	size_t n;
	bool eof; /* the proxy ended the connection */
};

static void client_open(struct client *cl, const char *sni)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(fx.port)};
	struct timeval tv = {WAIT_MS / 1000, 0};

	memset(cl, 0, sizeof(*cl));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(cl->fd >= 0);
	setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(cl->fd, (struct sockaddr *)&sa, sizeof(sa)),
	                 0);
	cl->ssl = SSL_new(fx.client_ctx);
	assert_non_null(cl->ssl);
	SSL_set_fd(cl->ssl, cl->fd);
	SSL_set_tlsext_host_name(cl->ssl, sni);
	assert_int_equal(SSL_connect(cl->ssl), 1);
}

/* Sends bytes in one TLS record, so the proxy reads them in one go. */
static void client_send(struct client *cl, const char *bytes)
{
	int len = (int)strlen(bytes);

	assert_true(len < 16384);
	assert_int_equal(SSL_write(cl->ssl, bytes, len), len);
}

/* Complete responses at the start of what the client got. */
static unsigned client_responses(const struct client *cl)
{
	unsigned k = 0;
	size_t off = 0, len;

	while ((len = message_len(cl->got + off, cl->n - off)) > 0) {
		off += len;
		k++;
	}
	return k;
}

/* Reads until responses whole responses are in, or with want_eof until
 * the proxy ends the connection; bounded by the socket's timeout. */
static void client_read(struct client *cl, unsigned responses, bool want_eof)
{
	while (!cl->eof && (want_eof || client_responses(cl) < responses)) {
		int r, e;

		errno = 0;
		r = SSL_read(cl->ssl, cl->got + cl->n,
		             (int)(sizeof(cl->got) - 1 - cl->n));
		if (r <= 0) {
			/* An end (with or without close_notify) or a reset;
			 * only the socket's timeout is none. */
			e = SSL_get_error(cl->ssl, r);
			cl->eof = !(e == SSL_ERROR_SYSCALL &&
			            (errno == EAGAIN || errno == EWOULDBLOCK));
			ERR_clear_error();
			break;
		}
		cl->n += (size_t)r;
		cl->got[cl->n] = '\0';
	}
}

/* Ends the client's side: with close_notify, or (abort) by just closing
 * the socket, as a phone that loses its network does. */
static void client_close(struct client *cl, bool abort)
{
	if (!abort && !cl->eof)
		SSL_shutdown(cl->ssl);
	SSL_free(cl->ssl);
	ERR_clear_error();
	close(cl->fd);
}

/* ----------------------------------------------------------- the logs */

/* The file's bytes from off on, NUL-terminated (caller frees). */
static char *read_from(const char *path, off_t off)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc(st.st_size > off ? (size_t)(st.st_size - off) + 1 : 1);
	assert_non_null(buf);
	n = st.st_size > off ? pread(fd, buf, (size_t)(st.st_size - off), off)
	                     : 0;
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : 0;
}

/* The request states logged since off, as "none -> head -> ...": the
 * first move's origin, then every destination ("~ X" where a move does
 * not start where the last one ended). */
static void trace_since(off_t off, char *out, size_t cap)
{
	static const char tag[] = "127.0.0.1: request ";
	char *text = read_from(fx.debug_path, off), *p = text, last[16] = "";
	size_t n = 0;

	out[0] = '\0';
	while ((p = strstr(p, tag)) != NULL) {
		char from[16], to[16];

		p += sizeof(tag) - 1;
		if (sscanf(p, "%15s -> %15s", from, to) != 2)
			continue;
		if (strcmp(from, last) != 0)
			n += (size_t)snprintf(out + n, cap - n, "%s%s",
			                      n ? " ~ " : "", from);
		n += (size_t)snprintf(out + n, cap - n, " -> %s", to);
		snprintf(last, sizeof(last), "%s", to);
		if (n >= cap)
			break;
	}
	free(text);
}

static bool trace_is(off_t off, const char *want)
{
	char t[512];

	trace_since(off, t, sizeof(t));
	return strcmp(t, want) == 0;
}

static unsigned count_of(const char *text, const char *what)
{
	unsigned k = 0;

	for (const char *p = text; (p = strstr(p, what)) != NULL; p++)
		k++;
	return k;
}

static unsigned access_lines(off_t off)
{
	char *text = read_from(fx.access_path, off);
	unsigned k = count_of(text, "\n");

	free(text);
	return k;
}

/* The term of every access-log line since off, comma separated. */
static void terms_since(off_t off, char *out, size_t cap)
{
	char *text = read_from(fx.access_path, off);
	size_t n = 0;

	out[0] = '\0';
	for (const char *p = text; (p = strstr(p, "\"term\":\"")) != NULL; p++)
		n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%.2s",
		                      n ? "," : "", p + 8);
	free(text);
}

/* ----------------------------------------------------------- the rows */

enum row_how {
	ROW_ANSWERED,    /* send, then read what comes back */
	ROW_CLIENT_GONE, /* send, then vanish once the CAS has every cas_got */
	ROW_DRAIN,       /* send, then stop the proxy once the CAS has the
	                    request */
};

struct row {
	const char *name;
	const char *sni;
	const char *send; /* the client's bytes, one write */
	enum row_how how;
	struct cas_answer cas[2];
	/* what the client gets: whole responses, whether the connection then
	 * ends, strings in this order (the first where it starts; none:
	 * nothing at all), strings it must not get */
	unsigned responses;
	bool client_eof;
	const char *client[8];
	const char *client_not[2];
	/* what the CAS gets: connections (-1: any), complete requests, how
	 * many of its connections the proxy closed (-1: any), strings in this
	 * order (the first where it starts; none: not a byte) */
	int cas_conns;
	unsigned cas_requests;
	int cas_eofs;
	const char *cas_got[6];
	/* the logs: the states, the terms of the access-log lines, more
	 * fields of the last line, "connect failed" lines, more debug lines */
	const char *trace;
	const char *terms;
	const char *access[4];
	unsigned connect_failed;
	const char *debug[2];
};

/* True when the strings of want (up to max, or to a NULL) stand in text in
 * that order, each after the end of the one before, the first at its
 * start. */
static bool in_order(const char *text, const char *const *want, size_t max)
{
	const char *at = text;

	for (size_t i = 0; i < max && want[i] != NULL; i++) {
		const char *p = strstr(at, want[i]);

		if (p == NULL || (i == 0 && p != text))
			return false;
		at = p + strlen(want[i]);
	}
	return true;
}

static bool cas_has(const struct row *r)
{
	struct cas_seen *seen = malloc(sizeof(*seen));
	bool ok;

	assert_non_null(seen);
	cas_look(&fx.cas, seen);
	ok = in_order(seen->got, r->cas_got, 6);
	free(seen);
	return ok;
}

static unsigned cas_requests(void)
{
	unsigned k;

	pthread_mutex_lock(&fx.cas.mu);
	k = fx.cas.requests;
	pthread_mutex_unlock(&fx.cas.mu);
	return k;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Stops the proxy as the daemon does on SIGTERM (timeouts.drain of the
 * current generation) and frees it. */
static void stop_proxy(void)
{
	struct gen *g = proxy_gen_hold(fx.p);
	unsigned drain = g->conf->timeouts.drain;

	gen_release(g);
	proxy_stop(fx.p, drain);
	proxy_free(fx.p);
	fx.p = NULL;
}

static void check_client(const struct row *r, const struct client *cl)
{
	if (r->client[0] == NULL)
		assert_int_equal(cl->n, 0);
	if (!in_order(cl->got, r->client, 8))
		fail_msg("the client got:\n%s", cl->got);
	for (size_t i = 0; i < 2 && r->client_not[i] != NULL; i++)
		if (strstr(cl->got, r->client_not[i]) != NULL)
			fail_msg("the client got %s:\n%s", r->client_not[i],
			         cl->got);
	assert_int_equal(client_responses(cl), r->responses);
	assert_int_equal(cl->eof, r->client_eof);
}

static void check_cas(const struct row *r)
{
	struct cas_seen *seen = malloc(sizeof(*seen));

	assert_non_null(seen);
	cas_look(&fx.cas, seen);
	if (r->cas_got[0] == NULL && seen->n_got != 0)
		fail_msg("the CAS got:\n%s", seen->got);
	if (!in_order(seen->got, r->cas_got, 6))
		fail_msg("the CAS got:\n%s", seen->got);
	if (r->cas_conns >= 0)
		assert_int_equal(seen->accepted, r->cas_conns);
	assert_int_equal(seen->requests, r->cas_requests);
	if (r->cas_eofs >= 0)
		assert_int_equal(seen->eofs, r->cas_eofs);
	free(seen);
}

static void check_logs(const struct row *r, off_t dbg0, off_t acc0)
{
	char *debug = read_from(fx.debug_path, dbg0);
	char *access = read_from(fx.access_path, acc0);
	char terms[64], trace[512];
	const char *last = access;

	trace_since(dbg0, trace, sizeof(trace));
	assert_string_equal(trace, r->trace);
	terms_since(acc0, terms, sizeof(terms));
	assert_string_equal(terms, r->terms);
	for (const char *p = access; (p = strchr(p, '\n')) != NULL && p[1];)
		last = ++p;
	for (size_t i = 0; i < 4 && r->access[i] != NULL; i++)
		if (strstr(last, r->access[i]) == NULL)
			fail_msg("no %s in the access-log line %s",
			         r->access[i], last);
	assert_int_equal(count_of(debug, ": connect failed"),
	                 r->connect_failed);
	for (size_t i = 0; i < 2 && r->debug[i] != NULL; i++)
		if (strstr(debug, r->debug[i]) == NULL)
			fail_msg("no debug line with %s", r->debug[i]);
	free(debug);
	free(access);
}

static void run_row(const struct row *r)
{
	off_t dbg0 = file_size(fx.debug_path), acc0 = file_size(fx.access_path);
	unsigned n_terms = count_of(r->terms, ",") + 1;
	struct client cl;
	uint64_t t0;

	assert_non_null(fx.p);
	cas_script(&fx.cas, r->cas);
	client_open(&cl, r->sni);
	client_send(&cl, r->send);
	switch (r->how) {
	case ROW_ANSWERED:
		client_read(&cl, r->responses, r->client_eof);
		break;
	case ROW_CLIENT_GONE:
		WAIT_UNTIL(cas_has(r));
		assert_true(cas_has(r));
		break;
	case ROW_DRAIN:
		WAIT_UNTIL(cas_requests() >= r->cas_requests);
		assert_int_equal(cas_requests(), r->cas_requests);
		t0 = now_ms();
		stop_proxy();
		/* The held request kept the drain waiting to its deadline. */
		assert_true(now_ms() - t0 >= 900);
		client_read(&cl, 0, true);
		break;
	}
	client_close(&cl, r->how == ROW_CLIENT_GONE);
	/* Everything the row causes is over before a word of it is judged,
	 * so that a row that fails leaves nothing behind for the next. */
	WAIT_UNTIL(access_lines(acc0) >= n_terms && trace_is(dbg0, r->trace));
	WAIT_UNTIL(cas_settled(&fx.cas));
	assert_true(cas_settled(&fx.cas));
	if (r->how != ROW_CLIENT_GONE)
		check_client(r, &cl);
	check_logs(r, dbg0, acc0);
	check_cas(r);
}

#define PIPE_ONE                                                               \
	EAS_POST("Sync", Q_REMOTE)                                             \
	AUTH_REMOTE V121 "X-Test-Mark: one\r\nContent-Length: 4\r\n\r\nabcd"
#define PIPE_TWO                                                               \
	EAS_POST("FolderSync", Q_REMOTE)                                       \
	AUTH_REMOTE V121 "X-Test-Mark: two\r\nContent-Length: 0\r\n\r\n"

/* The rows, in the order they run: the drain row ends the proxy. */
static const struct row rows[] = {
    /* Two requests in one write: the second waits in the client's input until
     * the first is answered, then goes over the connection the first one gave
     * back to the pool (no connect in its trace). */
    {
        .name = "pipelined",
        .sni = HOST,
        .send = PIPE_ONE PIPE_TWO,
        .cas = {{"HTTP/1.1 200 OK\r\nX-Answer: one\r\n"
                 "Content-Length: 3\r\n\r\nAAA",
                 false},
                {"HTTP/1.1 200 OK\r\nX-Answer: two\r\n"
                 "Content-Length: 3\r\nConnection: close\r\n\r\nBBB",
                 true}},
        .responses = 2,
        .client = {"HTTP/1.1 200 OK\r\n", "X-Answer: one\r\n", "\r\n\r\nAAA",
                   "HTTP/1.1 200 OK\r\n", "X-Answer: two\r\n", "\r\n\r\nBBB"},
        .cas_conns = 1,
        .cas_requests = 2,
        .cas_got = {CAS_POST("Sync"), "X-Test-Mark: one\r\n", "\r\n\r\nabcd",
                    CAS_POST("FolderSync"), "X-Test-Mark: two\r\n"},
        .trace = "none -> head -> connect -> exchange -> none -> head "
                 "-> exchange -> none",
        .terms = "--,--",
        .access = {"\"cmd\":\"FolderSync\"", "\"decision\":\"proxy\"",
                   "\"site\":\"site2\"", "\"status\":200"},
    },
    /* A user of site2 at EAS 14.1 (Basic credentials): redirected, the CAS
     * never asked; the body is read and dropped, the connection kept. */
    {
        .name = "redirect_451",
        .sni = HOST,
        .send = EAS_POST("Sync", Q_REMOTE) AUTH_REMOTE
        "MS-ASProtocolVersion: 14.1\r\n"
        "Content-Length: 4\r\n\r\nabcd",
        .responses = 1,
        .client = {"HTTP/1.1 451 ", "Content-Length: 0\r\n",
                   "Cache-Control: private\r\n", "X-MS-Location: " EXT2 "\r\n"},
        .client_not = {"X-MS-ASThrottle", "Connection: close"},
        .cas_conns = 0,
        .trace = "none -> head -> local -> none",
        .terms = "--",
        .access = {"\"decision\":\"redirect\"", "\"site\":\"site2\"",
                   "\"status\":451"},
    },
    /* A path easfront does not serve: its own 404, never forwarded. */
    {
        .name = "local_404",
        .sni = HOST,
        .send = "GET /owa/ HTTP/1.1\r\nHost: " HOST "\r\n\r\n",
        .responses = 1,
        .client = {"HTTP/1.1 404 Not Found\r\n",
                   "Cache-Control: private, no-store\r\n",
                   "\r\n\r\n404 Not Found\n"},
        .client_not = {"Retry-After", "Connection: close"},
        .cas_conns = 0,
        .trace = "none -> head -> local -> none",
        .terms = "PR",
        .access = {"\"method\":\"GET\"", "\"decision\":\"reject\"",
                   "\"reason\":\"not-served\"", "\"status\":404"},
    },
    /* autodiscover: answer: the body is collected whole, then answered with
     * the external URL of the user's mailbox site; no CAS. */
    {
        .name = "autodiscover_collect",
        .sni = AD_HOST,
        .send = AD_POST,
        .responses = 1,
        .client = {"HTTP/1.1 200 OK\r\n",
                   "Content-Type: text/xml; charset=utf-8\r\n",
                   "<Url>" EXT2 "</Url>"},
        .cas_conns = 0,
        .trace = "none -> head -> collect -> local -> none",
        .terms = "--",
        .access = {"\"decision\":\"local\"", "\"reason\":\"autodiscover\"",
                   "\"site\":\"site2\"", "\"status\":200"},
    },
    /* site1's only CAS refuses: tried twice (a lone CAS may be restarting),
     * then the request goes to site1's fallback, site2, and is served there
     * as if nothing had happened. */
    {
        .name = "connect_fallback",
        .sni = HOST,
        .send = EAS_POST("Sync", Q_LOCAL) AUTH_LOCAL
        "MS-ASProtocolVersion: 14.1\r\n"
        "Content-Length: 4\r\n\r\nabcd",
        .cas = {{"HTTP/1.1 200 OK\r\nX-Answer: fallback\r\n"
                 "Content-Length: 2\r\nConnection: close\r\n\r\nok",
                 true}},
        .responses = 1,
        .client = {"HTTP/1.1 200 OK\r\n", "X-Answer: fallback\r\n",
                   "\r\n\r\nok"},
        .cas_conns = 1,
        .cas_requests = 1,
        .cas_got = {CAS_POST("Sync") Q_LOCAL " HTTP/1.1\r\n", "\r\n\r\nabcd"},
        .trace = "none -> head -> connect -> exchange -> none",
        .terms = "--",
        .access = {"\"decision\":\"proxy\"", "\"reason\":\"fallback\"",
                   "\"site\":\"site2\"", "\"status\":200"},
        .connect_failed = 2,
        .debug = {"site site1: no CAS took the connection; trying "
                  "site2"},
    },
    /* The CAS sends a head promising 100 bytes, 10 of them, and closes: the
     * client has the head already, so its connection is cut too. */
    {
        .name = "cas_gone_mid_body",
        .sni = HOST,
        .send = EAS_POST("Sync", Q_REMOTE) AUTH_REMOTE V121
        "Content-Length: 4\r\n\r\nabcd",
        .cas = {{"HTTP/1.1 200 OK\r\nX-Answer: cut\r\n"
                 "Content-Length: 100\r\n\r\n0123456789",
                 true}},
        .client_eof = true,
        .client = {"HTTP/1.1 200 OK\r\n", "X-Answer: cut\r\n",
                   "Content-Length: 100\r\n\r\n0123456789"},
        .cas_conns = 1,
        .cas_requests = 1,
        .cas_got = {CAS_POST("Sync"), "\r\n\r\nabcd"},
        .trace = "none -> head -> connect -> exchange",
        .terms = "SD",
        .access = {"\"decision\":\"proxy\"", "\"status\":200"},
    },
    /* A chunked body with a bad chunk size, in the same record as the head:
     * the connect has begun, nothing has reached the CAS; a 400 and the
     * connection closed. */
    {
        .name = "client_bad_chunk",
        .sni = HOST,
        .send = EAS_POST("Sync", Q_REMOTE) AUTH_REMOTE V121
        "Transfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n",
        .responses = 1,
        .client_eof = true,
        .client = {"HTTP/1.1 400 Bad Request\r\n", "Connection: close\r\n"},
        .cas_conns = -1, /* the connect may or may not be accepted */
        .cas_eofs = -1,
        .trace = "none -> head -> connect -> local -> none",
        .terms = "CR",
        .access = {"\"decision\":\"proxy\"", "\"status\":400"},
    },
    /* The client sends a head and part of its body, then vanishes while the
     * CAS waits for the rest: the CAS's connection is closed too. */
    {
        .name = "client_gone_mid_body",
        .sni = HOST,
        .send = EAS_POST("Sync", Q_REMOTE) AUTH_REMOTE V121
        "Content-Length: 1000\r\n\r\nPARTIAL BODY",
        .how = ROW_CLIENT_GONE,
        .cas_conns = 1,
        .cas_eofs = 1,
        .cas_got = {CAS_POST("Sync"), "\r\n\r\nPARTIAL BODY"},
        .trace = "none -> head -> connect -> exchange",
        .terms = "CD",
        .access = {"\"decision\":\"proxy\"", "\"site\":\"site2\""},
    },
    /* A Ping the CAS holds (it never answers) when easfront stops: the drain
     * waits timeouts.drain for it, then ends it. Last: the proxy is gone. */
    {
        .name = "held_ping_drain",
        .sni = HOST,
        .send = EAS_POST("Ping", Q_REMOTE) AUTH_REMOTE V121
        "Content-Length: 4\r\n\r\nping",
        .how = ROW_DRAIN,
        .cas = {{NULL, false}}, /* silent: the Ping is held */
        .client_eof = true,
        .cas_conns = 1,
        .cas_requests = 1,
        .cas_eofs = 1,
        .cas_got = {CAS_POST("Ping"), "\r\n\r\nping"},
        .trace = "none -> head -> connect -> exchange",
        .terms = "KD",
        .access = {"\"cmd\":\"Ping\"", "\"decision\":\"proxy\""},
    },
};

/* One row; its state is its entry in rows[]. */
static void test_row(void **state)
{
	run_row(*state);
}

/* ---------------------------------------------------------- the world */

static const char *fx_file(const char *name)
{
	char *p;

	assert_true(n_tmp_files < sizeof(tmp_files) / sizeof(tmp_files[0]));
	p = tmp_files[n_tmp_files++];
	snprintf(p, sizeof(tmp_files[0]), "%s/%s", tmp_dir, name);
	return p;
}

static const char *write_file(const char *name, const char *text)
{
	const char *path = fx_file(name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* The front end's certificate and key as PEM files: self-signed ECDSA
 * P-256 for both host names the rows use (the client does not verify it;
 * the proxy only has to load and serve it). */
static void make_certificate(const char **cert, const char **key)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_get_subject_name(x);
	X509_EXTENSION *san = X509V3_EXT_conf_nid(
	    NULL, NULL, NID_subject_alt_name, "DNS:" HOST ",DNS:" AD_HOST);
	FILE *f;

	assert_true(pk != NULL && x != NULL && san != NULL);
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 13);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                           (const unsigned char *)HOST, -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, pk);
	X509_add_ext(x, san, -1);
	assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
	*cert = fx_file("eas.pem");
	f = fopen(*cert, "w");
	assert_true(f != NULL && PEM_write_X509(f, x) == 1);
	fclose(f);
	*key = fx_file("eas.key");
	f = fopen(*key, "w");
	assert_true(f != NULL && PEM_write_PrivateKey(f, pk, NULL, NULL, 0,
	                                              NULL, NULL) == 1);
	fclose(f);
	X509_EXTENSION_free(san);
	X509_free(x);
	EVP_PKEY_free(pk);
}

static void write_config(void)
{
	const char *cert, *key, *map;
	char yaml[4096];

	make_certificate(&cert, &key);
	map = write_file("sitemap.tsv", "database\tDB01\tsite1\n"
	                                "database\tDB02\tsite2\n"
	                                "user\tlocal@contoso.test\tDB01\n"
	                                "user\tremote@contoso.test\tDB02\n");
	fx.access_path = fx_file("access.log");
	snprintf(yaml, sizeof(yaml),
	         "site: site1\n"
	         "workers: 1\n"
	         "listen:\n"
	         "  - address: \"127.0.0.1:%u\"\n"
	         "tls:\n"
	         "  certificates:\n"
	         "    - cert: %s\n"
	         "      key: %s\n"
	         "sites:\n"
	         "  - name: site1\n"
	         "    external_url: " EXT1 "\n"
	         "    cas: [ \"http://127.0.0.1:%u\" ]\n"
	         "    fallback: site2\n"
	         "  - name: site2\n"
	         "    external_url: " EXT2 "\n"
	         "    cas: [ \"http://127.0.0.1:%u\" ]\n"
	         "autodiscover: answer\n"
	         "sitemap:\n"
	         "  file: %s\n"
	         "timeouts: { handshake: 5, client_header: 5, client_body: 5,"
	         " idle: 30, upstream_connect: 2, upstream_response: 10,"
	         " long_poll: 60, drain: 1 }\n"
	         "log:\n"
	         "  access: %s\n"
	         "  format: json\n",
	         fx.port, cert, key, fx.dead_port, fx.cas.port, map,
	         fx.access_path);
	fx.conf_path = write_file("easfront.yaml", yaml);
}

/* Builds the world and starts the proxy the way daemon_run() does. */
static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char *err = NULL;
	struct gen *g;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	ad_init();
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/ef_test_txn_XXXXXX",
	         tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(tmp_dir));
	fx.listen_hold = bound_socket(false, true, &fx.port);
	fx.dead_hold = bound_socket(false, false, &fx.dead_port);
	cas_start(&fx.cas);
	write_config();
	fx.debug_path = fx_file("debug.log");
	fx.debug_fd = open(fx.debug_path,
	                   O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	assert_true(fx.debug_fd >= 0);
	log_init(fx.debug_fd, LOG_L_DEBUG);
	fx.p = proxy_new(1, &err);
	assert_non_null(fx.p);
	g = generation_build(fx.p, fx.conf_path, 1, &err);
	if (g == NULL)
		fail_msg("generation_build: %s", err);
	fx.access_fd = open(g->conf->log_access,
	                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	assert_true(fx.access_fd >= 0);
	accesslog_set_fd(fx.access_fd);
	if (proxy_listen(fx.p, g->conf, &err) != 0)
		fail_msg("proxy_listen: %s", err);
	close(fx.listen_hold);
	fx.listen_hold = -1;
	proxy_publish(fx.p, g);
	if (proxy_start(fx.p, &err) != 0)
		fail_msg("proxy_start: %s", err);
	fx.client_ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(fx.client_ctx);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (fx.p != NULL) {
		proxy_stop(fx.p, 0);
		proxy_free(fx.p);
		fx.p = NULL;
	}
	cas_stop(&fx.cas);
	SSL_CTX_free(fx.client_ctx);
	if (fx.listen_hold >= 0)
		close(fx.listen_hold);
	close(fx.dead_hold);
	accesslog_set_fd(-1);
	log_init(STDERR_FILENO, LOG_L_INFO);
	if (fx.access_fd >= 0)
		close(fx.access_fd);
	if (fx.debug_fd >= 0)
		close(fx.debug_fd);
	for (unsigned i = 0; i < n_tmp_files; i++)
		unlink(tmp_files[i]);
	rmdir(tmp_dir);
	ad_cleanup();
	return 0;
}

int main(void)
{
	struct CMUnitTest tests[sizeof(rows) / sizeof(rows[0])];

	/* One test a row, named after it, in the table's order. */
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		tests[i] = (struct CMUnitTest){rows[i].name, test_row, NULL,
		                               NULL, (void *)&rows[i]};
	return cmocka_run_group_tests(tests, setup, teardown);
}
