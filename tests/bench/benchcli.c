/*
 * benchcli: the benchmark's TLS load clients, one thread, epoll, OpenSSL.
 * Every mode is bounded in count and time and talks to 127.0.0.1 only.
 *
 *   benchcli port [N]             N free TCP ports on 127.0.0.1
 *   benchcli ctl PORT CMD         one line to the backend's control port
 *   benchcli hs -p PORT -d SECS [-c CONC] [-r] [-m MAX]
 *       TLS 1.3 handshakes in a loop, CONC at a time: full ones, or with -r
 *       resumed from the newest ticket. Each waits for the server's first
 *       session ticket, sends close_notify and closes. Prints
 *       "handshakes=N resumed=R failed=F secs=S".
 *   benchcli hold -p PORT -n N -d SECS [-c CONC]
 *       opens N TLS connections (CONC handshakes at a time), sends a Ping
 *       on each and waits for the answers. Prints "sent=N failed=F" once
 *       every Ping is out, then "ok=K failed=F" at the end.
 *   benchcli big -p PORT -n N -s BYTES -d SECS
 *       N connections at once, each uploads BYTES (SendMail) and then
 *       downloads BYTES (X-Bench-Size); "ok=K failed=F up=U down=D secs=S".
 * Requests carry Host and SNI eas.contoso.test and the Basic credentials of
 * $BENCH_AUTH (base64 of user:password; a default local user otherwise).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/epoll.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench_common.h"

#define SNI "eas.contoso.test"

enum cst { S_CONNECT, S_HS, S_TICKET, S_SEND, S_RECV, S_DONE };

struct cc {
	int fd;
	SSL *ssl;
	enum cst st;
	int req;     /* index in the plan */
	uint64_t t0; /* ns: when this connection started */
	bool got_ticket;
	/* sending */
	char head[1024];
	size_t head_len, head_off;
	uint64_t body_left;
	/* receiving */
	char rbuf[16384];
	size_t rlen;
	bool rhead;
	int status;
	bool rchunked;
	struct chunk_dec cd;
	uint64_t rleft, rgot;
};

static int ep;
static SSL_CTX *ctx;
static int port;
static const char *auth = "dTFAY29udG9zby50ZXN0OlBhc3N3MHJk"; /* u1@... */
static char zeros[65536];
static SSL_SESSION *saved; /* hs -r: newest ticket */
static bool resume_mode;
/* counters */
static unsigned long n_target, n_started, n_active, n_connecting;
static unsigned long n_ok, n_fail, n_sent, n_resumed;
static unsigned long n_fail_unsent; /* failed before the request was out */
static uint64_t up_bytes, down_bytes, big_size;
static enum { M_HS, M_HOLD, M_BIG } mode;
static int ex_idx;

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct cc *c = SSL_get_ex_data(ssl, ex_idx);

	if (c != NULL)
		c->got_ticket = true;
	if (!resume_mode)
		return 0;
	SSL_SESSION_free(saved);
	saved = sess;
	return 1; /* we keep the reference */
}

static void ctx_init(bool tls13_only)
{
	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (tls13_only)
		SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	                                        SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* Builds the head of request c->req of the plan. */
static void plan_request(struct cc *c)
{
	static const char ping_body[] = "\x03\x01\x6a\x00\x00\x0d\x45\x48\x03"
	                                "600\x00\x01\x01";
	int n = 0;

	c->body_left = 0;
	if (mode == M_HOLD) {
		n = snprintf(
		    c->head, sizeof(c->head),
		    "POST /Microsoft-Server-ActiveSync?Cmd=Ping&User=u1"
		    "&DeviceId=H%lu&DeviceType=iPhone HTTP/1.1\r\n"
		    "Host: " SNI "\r\n"
		    "Authorization: Basic %s\r\n"
		    "MS-ASProtocolVersion: 14.1\r\n"
		    "Content-Type: application/vnd.ms-sync.wbxml\r\n"
		    "Content-Length: %zu\r\n\r\n",
		    n_started, auth, sizeof(ping_body) - 1);
		memcpy(c->head + n, ping_body, sizeof(ping_body) - 1);
		n += (int)sizeof(ping_body) - 1;
	} else if (c->req == 0) {
		n = snprintf(
		    c->head, sizeof(c->head),
		    "POST /Microsoft-Server-ActiveSync?Cmd=SendMail"
		    "&User=u1&DeviceId=B1&DeviceType=iPhone HTTP/1.1\r\n"
		    "Host: " SNI "\r\n"
		    "Authorization: Basic %s\r\n"
		    "MS-ASProtocolVersion: 14.1\r\n"
		    "Content-Type: message/rfc822\r\n"
		    "Content-Length: %llu\r\n\r\n",
		    auth, (unsigned long long)big_size);
		c->body_left = big_size;
	} else {
		n = snprintf(
		    c->head, sizeof(c->head),
		    "POST /Microsoft-Server-ActiveSync?Cmd=ItemOperations"
		    "&User=u1&DeviceId=B1&DeviceType=iPhone HTTP/1.1\r\n"
		    "Host: " SNI "\r\n"
		    "Authorization: Basic %s\r\n"
		    "MS-ASProtocolVersion: 14.1\r\n"
		    "X-Bench-Size: %llu\r\n"
		    "Content-Length: 0\r\n\r\n",
		    auth, (unsigned long long)big_size);
	}
	c->head_len = (size_t)n;
	c->head_off = 0;
	c->rlen = 0;
	c->rhead = false;
	c->rchunked = false;
	c->rleft = 0;
	c->rgot = 0;
	memset(&c->cd, 0, sizeof(c->cd));
}

static int plan_len(void)
{
	return mode == M_BIG ? 2 : 1;
}

static void cc_start(void);

/* hold: says once that every Ping is out (or failed). */
static void check_sent(void)
{
	static bool said;

	if (mode != M_HOLD || said || n_sent + n_fail_unsent < n_target)
		return;
	said = true;
	printf("sent=%lu failed=%lu\n", n_sent, n_fail_unsent);
	fflush(stdout);
}

static void cc_finish(struct cc *c, bool ok)
{
	if (c->st == S_DONE)
		return;
	if (c->st == S_CONNECT || c->st == S_HS || c->st == S_TICKET)
		n_connecting--;
	if (ok)
		n_ok++;
	else
		n_fail++;
	if (!ok && c->st != S_RECV) {
		n_fail_unsent++;
		check_sent();
	}
	c->st = S_DONE;
	if (c->ssl) {
		if (ok)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	n_active--;
	free(c);
}

/* -1 error, 0 would block, >0 bytes. */
static long cc_ssl_result(struct cc *c, int n)
{
	if (n > 0)
		return n;
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	default:
		ERR_clear_error();
		return -1;
	}
}

/* Parses what is buffered of a response; true when it is complete. */
static int cc_parse_response(struct cc *c, const char *p, size_t n)
{
	if (!c->rhead) {
		size_t room = sizeof(c->rbuf) - c->rlen, h, vl;
		const char *v;

		if (n > room)
			return -1;
		memcpy(c->rbuf + c->rlen, p, n);
		c->rlen += n;
		h = head_end(c->rbuf, c->rlen);
		if (h == 0)
			return c->rlen == sizeof(c->rbuf) ? -1 : 0;
		c->rhead = true;
		c->status = (int)parse_u64(c->rbuf + 9, 3);
		v = head_value(c->rbuf, h, "Transfer-Encoding", &vl);
		if (v != NULL && vl >= 7 &&
		    strncasecmp(v + vl - 7, "chunked", 7) == 0)
			c->rchunked = true;
		else if ((v = head_value(c->rbuf, h, "Content-Length", &vl)))
			c->rleft = parse_u64(v, vl);
		p = c->rbuf + h;
		n = c->rlen - h;
	}
	if (c->rchunked) {
		uint64_t d;

		if (chunk_step(&c->cd, p, n, &d) < 0)
			return -1;
		c->rgot += d;
		return c->cd.st == 4;
	}
	c->rgot += n;
	if (n > c->rleft)
		return -1; /* more than announced: nothing pipelined here */
	c->rleft -= n;
	return c->rleft == 0;
}

static void cc_drive(struct cc *c)
{
	for (;;) {
		switch (c->st) {
		case S_CONNECT: {
			int err = 0;
			socklen_t el = sizeof(err);

			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
			if (err == EINPROGRESS)
				return;
			if (err != 0) {
				cc_finish(c, false);
				return;
			}
			c->st = S_HS;
			break;
		}
		case S_HS: {
			int r = SSL_connect(c->ssl);

			if (r != 1) {
				if (cc_ssl_result(c, r) < 0)
					cc_finish(c, false);
				return;
			}
			if (mode == M_HS) {
				c->st = S_TICKET;
				if (SSL_session_reused(c->ssl))
					n_resumed++;
				break;
			}
			n_connecting--;
			c->st = S_SEND;
			plan_request(c);
			break;
		}
		case S_TICKET: {
			char b[256];
			long r;

			/* Tickets arrive after the handshake; reading runs
			 * them through new_session_cb. */
			r = cc_ssl_result(c, SSL_read(c->ssl, b, sizeof(b)));
			if (c->got_ticket) {
				cc_finish(c, true);
				return;
			}
			if (r < 0) {
				cc_finish(c, false);
				return;
			}
			if (r == 0)
				return;
			break;
		}
		case S_SEND: {
			long r;

			if (c->head_off < c->head_len) {
				r = cc_ssl_result(
				    c, SSL_write(
				           c->ssl, c->head + c->head_off,
				           (int)(c->head_len - c->head_off)));
				if (r <= 0) {
					if (r < 0)
						cc_finish(c, false);
					return;
				}
				c->head_off += (size_t)r;
				continue;
			}
			if (c->body_left > 0) {
				size_t w = c->body_left < sizeof(zeros)
				               ? (size_t)c->body_left
				               : sizeof(zeros);

				r = cc_ssl_result(
				    c, SSL_write(c->ssl, zeros, (int)w));
				if (r <= 0) {
					if (r < 0)
						cc_finish(c, false);
					return;
				}
				c->body_left -= (uint64_t)r;
				up_bytes += (uint64_t)r;
				continue;
			}
			c->st = S_RECV;
			n_sent++;
			check_sent();
			break;
		}
		case S_RECV: {
			char b[65536];
			long r =
			    cc_ssl_result(c, SSL_read(c->ssl, b, sizeof(b)));
			int done;

			if (r <= 0) {
				if (r < 0)
					cc_finish(c, false);
				return;
			}
			done = cc_parse_response(c, b, (size_t)r);
			if (done < 0) {
				cc_finish(c, false);
				return;
			}
			if (!done)
				continue;
			if (mode == M_BIG && c->req == 1)
				down_bytes += c->rgot;
			if (c->status != 200 || (mode == M_BIG && c->req == 1 &&
			                         c->rgot != big_size)) {
				cc_finish(c, false);
				return;
			}
			if (++c->req < plan_len()) {
				c->st = S_SEND;
				plan_request(c);
				continue;
			}
			cc_finish(c, true);
			return;
		}
		case S_DONE:
			return;
		}
	}
}

static void cc_start(void)
{
	struct sockaddr_in sa;
	struct epoll_event ev;
	struct cc *c = calloc(1, sizeof(*c));

	loopback_addr(&sa, port);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	n_started++;
	n_active++;
	n_connecting++;
	c->t0 = now_ns();
	if (c->fd < 0) {
		n_fail++;
		n_fail_unsent++;
		n_active--;
		n_connecting--;
		free(c);
		return;
	}
	set_nodelay(c->fd);
	c->ssl = SSL_new(ctx);
	SSL_set_ex_data(c->ssl, ex_idx, c);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, SNI);
	SSL_set_connect_state(c->ssl);
	if (resume_mode && saved != NULL)
		SSL_set_session(c->ssl, saved);
	c->st = S_CONNECT;
	ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
	ev.data.ptr = c;
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
	    errno != EINPROGRESS) {
		cc_finish(c, false);
		return;
	}
}

static int free_ports(int n)
{
	int fds[64];

	if (n < 1 || n > 64)
		n = 1;
	for (int i = 0; i < n; i++) {
		struct sockaddr_in sa;
		socklen_t l = sizeof(sa);

		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		loopback_addr(&sa, 0);
		if (bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    getsockname(fds[i], (struct sockaddr *)&sa, &l) != 0)
			return 1;
		printf("%d\n", ntohs(sa.sin_port));
	}
	for (int i = 0; i < n; i++)
		close(fds[i]);
	return 0;
}

static int ctl(int p, const char *cmd)
{
	struct sockaddr_in sa;
	char buf[256];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = {5, 0};
	size_t got = 0;

	loopback_addr(&sa, p);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		perror("benchcli ctl: connect");
		return 1;
	}
	snprintf(buf, sizeof(buf), "%s\n", cmd);
	if (write(fd, buf, strlen(buf)) < 0)
		return 1;
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(buf, '\n', got))
			break;
	}
	buf[got] = '\0';
	fputs(buf, stdout);
	close(fd);
	return got > 0 ? 0 : 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: benchcli port [N] | ctl PORT CMD | "
	                "hs -p PORT -d SECS [-c CONC] [-r] | "
	                "hold -p PORT -n N -d SECS [-c CONC] | "
	                "big -p PORT -n N -s BYTES -d SECS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	double secs = 10;
	unsigned long conc = 16;
	struct epoll_event evs[512];
	uint64_t t0, deadline;
	int opt;

	if (argc < 2)
		usage();
	if (strcmp(argv[1], "port") == 0)
		return free_ports(argc > 2 ? atoi(argv[2]) : 1);
	if (strcmp(argv[1], "ctl") == 0) {
		if (argc != 4)
			usage();
		return ctl(atoi(argv[2]), argv[3]);
	}
	if (strcmp(argv[1], "hs") == 0)
		mode = M_HS;
	else if (strcmp(argv[1], "hold") == 0)
		mode = M_HOLD;
	else if (strcmp(argv[1], "big") == 0)
		mode = M_BIG;
	else
		usage();
	n_target = 0;
	optind = 2;
	while ((opt = getopt(argc, argv, "p:d:c:rn:s:")) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'd':
			secs = atof(optarg);
			break;
		case 'c':
			conc = strtoul(optarg, NULL, 10);
			break;
		case 'r':
			resume_mode = true;
			break;
		case 'n':
			n_target = strtoul(optarg, NULL, 10);
			break;
		case 's':
			big_size = strtoull(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (port <= 0 || secs <= 0 || secs > 3600 || conc == 0)
		usage();
	if (mode != M_HS && (n_target == 0 || n_target > 1000000))
		usage();
	if (mode == M_BIG && big_size == 0)
		usage();
	if (getenv("BENCH_AUTH"))
		auth = getenv("BENCH_AUTH");
	signal(SIGPIPE, SIG_IGN);
	ctx_init(mode == M_HS);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (mode == M_BIG)
		conc = n_target;
	t0 = now_ns();
	deadline = t0 + (uint64_t)(secs * 1e9);
	/* hs -r: one full handshake first, for the ticket to resume. */
	for (;;) {
		uint64_t now = now_ns();
		int n;

		if (now >= deadline)
			break;
		if (mode == M_HS) {
			unsigned long want =
			    resume_mode && saved == NULL ? 1 : conc;

			while (n_active < want)
				cc_start();
		} else {
			while (n_started < n_target && n_connecting < conc)
				cc_start();
			if (n_started == n_target && n_active == 0)
				break;
		}
		n = epoll_wait(ep, evs, 512, 100);
		for (int i = 0; i < n; i++)
			cc_drive(evs[i].data.ptr);
	}
	secs = (double)(now_ns() - t0) / 1e9;
	switch (mode) {
	case M_HS:
		printf("handshakes=%lu resumed=%lu failed=%lu secs=%.3f\n",
		       n_ok, n_resumed, n_fail, secs);
		break;
	case M_HOLD:
		if (n_sent + n_fail_unsent < n_target)
			printf("sent=%lu failed=%lu (incomplete)\n", n_sent,
			       n_fail_unsent);
		printf("ok=%lu failed=%lu unfinished=%lu secs=%.3f\n", n_ok,
		       n_fail, n_active, secs);
		break;
	case M_BIG:
		printf("ok=%lu failed=%lu unfinished=%lu up=%llu down=%llu "
		       "secs=%.3f\n",
		       n_ok, n_fail, n_active, (unsigned long long)up_bytes,
		       (unsigned long long)down_bytes, secs);
		break;
	}
	return 0;
}
