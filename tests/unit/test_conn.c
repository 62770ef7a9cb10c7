/*
 * Tests of src/proxy/conn.c over real loopback sockets: connect, writes
 * leaving at the end of a pass, reads, end of stream, refused connects,
 * timeouts, the read watermark with its resume, back-pressure from a peer
 * that does not read, freeing from inside a callback, and TLS both ways
 * with read-ahead holding several records when reading stops.
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
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/conn.h"

/* Everything one test case watches. */
struct probe {
	struct event_base *base;
	struct conn_loop loop;
	struct conn *c;
	short events;	    /* every what seen by the event callback */
	unsigned reads;	    /* read callbacks */
	unsigned writes;    /* write callbacks */
	size_t consume;	    /* bytes a read callback drains, SIZE_MAX: all */
	bool free_on_event; /* conn_free() from inside the event callback */
	char got[1 << 16];
	size_t n_got;
};

static struct probe *probe_new(void)
{
	struct probe *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	p->base = event_base_new();
	assert_non_null(p->base);
	assert_int_equal(conn_loop_init(&p->loop, p->base), 0);
	p->consume = SIZE_MAX;
	return p;
}

static void probe_free(struct probe *p)
{
	conn_free(p->c);
	/* Let deferred work end before the loop goes. */
	event_base_loop(p->base, EVLOOP_NONBLOCK);
	conn_loop_done(&p->loop);
	event_base_free(p->base);
	free(p);
}

static void read_cb(struct conn *c, void *arg)
{
	struct probe *p = arg;
	struct evbuffer *in = conn_input(c);
	size_t n = evbuffer_get_length(in);

	if (p->consume < n)
		n = p->consume;
	if (n > sizeof(p->got) - p->n_got)
		n = sizeof(p->got) - p->n_got;
	evbuffer_remove(in, p->got + p->n_got, n);
	p->n_got += n;
	p->reads++;
}

static void write_cb(struct conn *c, void *arg)
{
	struct probe *p = arg;

	(void)c;
	p->writes++;
}

static void event_cb(struct conn *c, short what, void *arg)
{
	struct probe *p = arg;

	p->events |= what;
	if (p->free_on_event) {
		conn_free(c);
		p->c = NULL;
	}
}

/* Runs the loop until cond holds or about two seconds pass. */
#define RUN_UNTIL(p, cond)                                                     \
	do {                                                                   \
		for (int i_ = 0; i_ < 200 && !(cond); i_++) {                  \
			struct timeval tv_ = {0, 10000};                       \
			event_base_loopexit((p)->base, &tv_);                  \
			event_base_dispatch((p)->base);                        \
		}                                                              \
	} while (0)

/* Lets the loop run 200 ms: for what must not happen. */
#define SETTLE(p)                                                              \
	do {                                                                   \
		struct timeval tv_ = {0, 200000};                              \
		event_base_loopexit((p)->base, &tv_);                          \
		event_base_dispatch((p)->base);                                \
	} while (0)

static int listener(struct sockaddr_in *sa)
{
	socklen_t len = sizeof(*sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)sa, sizeof(*sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)sa, &len), 0);
	return fd;
}

static int accept_one(int lfd)
{
	struct pollfd pfd = {lfd, POLLIN, 0};
	int fd;

	assert_int_equal(poll(&pfd, 1, 2000), 1);
	fd = accept(lfd, NULL, NULL);
	assert_true(fd >= 0);
	return fd;
}

/* A plain connection from p to a fresh listener; *peer: the accepted end
 * (blocking). */
static void plain_pair(struct probe *p, int *peer)
{
	struct sockaddr_in sa;
	int lfd = listener(&sa);

	p->c = conn_connect(&p->loop, (struct sockaddr *)&sa, sizeof(sa),
			    NULL);
	assert_non_null(p->c);
	conn_setcb(p->c, read_cb, write_cb, event_cb, p);
	conn_enable(p->c, EV_READ | EV_WRITE);
	*peer = accept_one(lfd);
	close(lfd);
	RUN_UNTIL(p, p->events & CONN_CONNECTED);
	assert_true(p->events & CONN_CONNECTED);
}

static size_t recv_all(int fd, char *buf, size_t want)
{
	size_t got = 0;

	while (got < want) {
		struct pollfd pfd = {fd, POLLIN, 0};
		ssize_t r;

		if (poll(&pfd, 1, 2000) != 1)
			break;
		r = recv(fd, buf + got, want - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

static void test_plain_exchange(void **state)
{
	struct probe *p = probe_new();
	char buf[64];
	int peer;

	(void)state;
	plain_pair(p, &peer);
	/* Two writes in one pass leave together, at the end of the pass. */
	conn_write(p->c, "HTTP/1.1 200 OK\r\n", 17);
	conn_write(p->c, "\r\n", 2);
	assert_int_equal(conn_output_length(p->c), 19);
	RUN_UNTIL(p, conn_output_length(p->c) == 0);
	assert_int_equal(recv_all(peer, buf, 19), 19);
	assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n\r\n", 19);
	assert_true(p->writes >= 1);
	/* Bytes from the peer reach the read callback. */
	assert_int_equal(send(peer, "ping", 4, 0), 4);
	RUN_UNTIL(p, p->n_got == 4);
	assert_int_equal(p->n_got, 4);
	assert_memory_equal(p->got, "ping", 4);
	/* The peer's close is an end of stream, once. */
	close(peer);
	RUN_UNTIL(p, p->events & CONN_EOF);
	assert_true(p->events & CONN_EOF);
	assert_true(p->events & CONN_READING);
	assert_false(conn_enabled(p->c) & EV_READ);
	probe_free(p);
}

static void test_refused(void **state)
{
	struct probe *p = probe_new();
	struct sockaddr_in sa;
	int lfd = listener(&sa);

	(void)state;
	close(lfd); /* nobody listens there now */
	p->c = conn_connect(&p->loop, (struct sockaddr *)&sa, sizeof(sa),
			    NULL);
	assert_non_null(p->c);
	conn_setcb(p->c, read_cb, write_cb, event_cb, p);
	conn_write(p->c, "lost", 4);
	RUN_UNTIL(p, p->events & CONN_ERROR);
	assert_true(p->events & CONN_ERROR);
	assert_false(p->events & CONN_CONNECTED);
	assert_int_equal(conn_errno(p->c), ECONNREFUSED);
	probe_free(p);
}

static void test_read_timeout(void **state)
{
	struct probe *p = probe_new();
	int peer;

	(void)state;
	plain_pair(p, &peer);
	conn_set_timeouts(p->c, 1, 0);
	RUN_UNTIL(p, p->events & CONN_TIMEOUT);
	assert_true(p->events & CONN_TIMEOUT);
	assert_true(p->events & CONN_READING);
	/* Reading stopped, as after any timeout; nothing fires again. */
	assert_false(conn_enabled(p->c) & EV_READ);
	p->events = 0;
	SETTLE(p);
	assert_int_equal(p->events, 0);
	close(peer);
	probe_free(p);
}

/* Reading while a peer keeps sending postpones the timeout. */
static void test_timeout_moves_with_reads(void **state)
{
	struct probe *p = probe_new();
	int peer;

	(void)state;
	plain_pair(p, &peer);
	conn_set_timeouts(p->c, 1, 0);
	for (int i = 0; i < 6; i++) {
		struct timeval tv = {0, 300000};

		assert_int_equal(send(peer, "x", 1, 0), 1);
		event_base_loopexit(p->base, &tv);
		event_base_dispatch(p->base);
	}
	assert_int_equal(p->n_got, 6);
	assert_false(p->events & CONN_TIMEOUT);
	close(peer);
	probe_free(p);
}

static void test_watermark_and_resume(void **state)
{
	struct probe *p = probe_new();
	static char data[200000];
	int peer;

	(void)state;
	memset(data, 'w', sizeof(data));
	plain_pair(p, &peer);
	conn_set_watermarks(p->c, 1000, 0);
	p->consume = 0; /* the owner takes nothing for now */
	assert_int_equal(send(peer, data, 5000, 0), 5000);
	RUN_UNTIL(p, evbuffer_get_length(conn_input(p->c)) >= 1000);
	SETTLE(p);
	/* Reading stopped near the mark; the rest waits in the socket. */
	assert_true(evbuffer_get_length(conn_input(p->c)) >= 1000);
	assert_true(evbuffer_get_length(conn_input(p->c)) < 5000);
	/* The owner consumes and says so: reading resumes. */
	p->consume = SIZE_MAX;
	evbuffer_drain(conn_input(p->c), 1000);
	conn_kick(p->c);
	RUN_UNTIL(p, p->n_got + 1000 >= 5000);
	assert_int_equal(p->n_got + 1000, 5000);
	close(peer);
	probe_free(p);
}

static void test_backpressure(void **state)
{
	struct probe *p = probe_new();
	size_t total = 16 << 20, got = 0;
	char *blob = malloc(total);
	static char sink[1 << 16];
	int peer;

	(void)state;
	assert_non_null(blob);
	memset(blob, 'b', total);
	plain_pair(p, &peer);
	conn_set_watermarks(p->c, 0, 4096);
	conn_write(p->c, blob, total);
	SETTLE(p);
	/* The peer reads nothing: the socket pushed back, output waits. */
	assert_true(conn_output_length(p->c) > 0);
	p->writes = 0;
	while (got < total) {
		ssize_t r;

		event_base_loop(p->base, EVLOOP_NONBLOCK);
		r = recv(peer, sink, sizeof(sink), MSG_DONTWAIT);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0 || (errno != EAGAIN && errno != EINTR))
			break;
	}
	assert_int_equal(got, total);
	RUN_UNTIL(p, p->writes > 0 &&
			     conn_output_length(p->c) == 0);
	assert_int_equal(conn_output_length(p->c), 0);
	assert_true(p->writes >= 1);
	close(peer);
	free(blob);
	probe_free(p);
}

static void test_free_inside_callback(void **state)
{
	struct probe *p = probe_new();
	int peer;

	(void)state;
	plain_pair(p, &peer);
	p->free_on_event = true;
	conn_write(p->c, "bye", 3); /* queued for a flush that finds it gone */
	close(peer);
	RUN_UNTIL(p, p->c == NULL);
	assert_null(p->c);
	probe_free(p);
}

/* ---------------------------------------------------------------- TLS */

static SSL_CTX *server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *crt = X509_new();

	assert_non_null(ctx);
	assert_non_null(key);
	ASN1_INTEGER_set(X509_get_serialNumber(crt), 1);
	X509_gmtime_adj(X509_getm_notBefore(crt), -60);
	X509_gmtime_adj(X509_getm_notAfter(crt), 3600);
	X509_set_pubkey(crt, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(crt), "CN",
				   MBSTRING_ASC,
				   (const unsigned char *)"conn.test", -1, -1,
				   0);
	X509_set_issuer_name(crt, X509_get_subject_name(crt));
	assert_true(X509_sign(crt, key, EVP_sha256()) > 0);
	assert_int_equal(SSL_CTX_use_certificate(ctx, crt), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	X509_free(crt);
	EVP_PKEY_free(key);
	return ctx;
}

/* Two TLS ends on one loop: a server accepted by conn_accept_tls and a
 * client made by conn_connect, joined over loopback. */
static void test_tls_both_ways(void **state)
{
	struct probe *sp = probe_new(), *cp = calloc(1, sizeof(*cp));
	SSL_CTX *sctx = server_ctx();
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	struct sockaddr_in sa;
	int lfd = listener(&sa), fd;
	char rec[100];

	(void)state;
	assert_non_null(cp);
	cp->base = sp->base; /* one loop, two probes */
	cp->consume = SIZE_MAX;
	cp->c = conn_connect(&sp->loop, (struct sockaddr *)&sa, sizeof(sa),
			     SSL_new(cctx));
	assert_non_null(cp->c);
	conn_setcb(cp->c, read_cb, write_cb, event_cb, cp);
	conn_enable(cp->c, EV_READ | EV_WRITE);
	fd = accept_one(lfd);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	sp->c = conn_accept_tls(&sp->loop, fd, SSL_new(sctx));
	assert_non_null(sp->c);
	conn_setcb(sp->c, read_cb, write_cb, event_cb, sp);
	conn_enable(sp->c, EV_READ | EV_WRITE);
	RUN_UNTIL(sp, (sp->events & CONN_CONNECTED) &&
			      (cp->events & CONN_CONNECTED));
	assert_true(sp->events & CONN_CONNECTED);
	assert_true(cp->events & CONN_CONNECTED);

	/* Ten records from the client in one pass; the server reads none
	 * (watermark of one record), so read-ahead leaves whole records
	 * inside OpenSSL that the socket will never announce again. */
	memset(rec, 'r', sizeof(rec));
	conn_set_watermarks(sp->c, 1, 0);
	sp->consume = 0;
	for (int i = 0; i < 10; i++) {
		RUN_UNTIL(sp, conn_output_length(cp->c) == 0);
		conn_write(cp->c, rec, sizeof(rec));
	}
	RUN_UNTIL(sp, conn_output_length(cp->c) == 0);
	SETTLE(sp);
	assert_true(evbuffer_get_length(conn_input(sp->c)) < 1000);
	/* Consuming and kicking brings every record in. */
	sp->consume = SIZE_MAX;
	conn_set_watermarks(sp->c, 0, 0);
	read_cb(sp->c, sp);
	conn_kick(sp->c);
	RUN_UNTIL(sp, sp->n_got == 1000);
	assert_int_equal(sp->n_got, 1000);

	/* And back, through the write path. */
	conn_write(sp->c, "pong", 4);
	RUN_UNTIL(sp, cp->n_got == 4);
	assert_memory_equal(cp->got, "pong", 4);

	/* A close_notify ends the stream on the other side. */
	SSL_shutdown(conn_ssl(cp->c));
	RUN_UNTIL(sp, sp->events & CONN_EOF);
	assert_true(sp->events & CONN_EOF);

	conn_free(cp->c);
	free(cp);
	close(lfd);
	probe_free(sp);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_exchange),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_read_timeout),
		cmocka_unit_test(test_timeout_moves_with_reads),
		cmocka_unit_test(test_watermark_and_resume),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_free_inside_callback),
		cmocka_unit_test(test_tls_both_ways),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
