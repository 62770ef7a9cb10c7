/*
 * Small helpers shared by the benchmark's stand-in CAS (backend.c) and its
 * load clients (benchcli.c): time, sockets, a tiny HTTP/1.1 head reader and
 * a chunked-body walker. Header-only on purpose: each tool is one cc call.
 */
#ifndef EF_BENCH_COMMON_H
#define EF_BENCH_COMMON_H

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

/* Largest request or response head either tool accepts. */
#define BENCH_HEAD_MAX (64 * 1024)

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static inline void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static inline void loopback_addr(struct sockaddr_in *sa, int port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* Offset just past "\r\n\r\n" in buf, or 0 when the head is not complete. */
static inline size_t head_end(const char *buf, size_t len)
{
	for (size_t i = 3; i < len; i++)
		if (buf[i] == '\n' && buf[i - 1] == '\r' &&
		    buf[i - 2] == '\n' && buf[i - 3] == '\r')
			return i + 1;
	return 0;
}

/* The value of header name (case-insensitive) in the head [buf, buf+len),
 * trimmed; NULL when absent. *vlen gets its length. */
static inline const char *head_value(const char *buf, size_t len,
                                     const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p = memchr(buf, '\n', len), *end = buf + len;

	while (p != NULL && p + 1 < end) {
		const char *line = p + 1, *eol = memchr(line, '\n', end - line);

		if (eol == NULL)
			break;
		if ((size_t)(eol - line) > nl && line[nl] == ':' &&
		    strncasecmp(line, name, nl) == 0) {
			const char *v = line + nl + 1, *e = eol;

			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v &&
			       (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
				e--;
			*vlen = (size_t)(e - v);
			return v;
		}
		p = eol;
	}
	return NULL;
}

static inline uint64_t parse_u64(const char *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n && isdigit((unsigned char)p[i]); i++)
		v = v * 10 + (uint64_t)(p[i] - '0');
	return v;
}

/* A chunked body walked in place. */
struct chunk_dec {
	int st;        /* 0 size line, 1 data, 2 CRLF after data, 3 trailer,
	                  4 done */
	uint64_t left; /* data bytes left in the current chunk */
	int ext;       /* inside a chunk extension */
	int tr_blank;  /* trailer: the current line is still empty */
};

/* Consumes up to len bytes of chunked framing; returns bytes consumed, sets
 * *data to the payload bytes among them; -1 on a framing error. */
static inline long chunk_step(struct chunk_dec *d, const char *p, size_t len,
                              uint64_t *data)
{
	size_t i = 0;

	*data = 0;
	while (i < len && d->st != 4) {
		char c = p[i];

		switch (d->st) {
		case 0:
			i++;
			if (c == '\n') {
				d->st = d->left ? 1 : 3;
				d->tr_blank = 1;
				d->ext = 0;
			} else if (c == ';') {
				d->ext = 1;
			} else if (!d->ext && isxdigit((unsigned char)c)) {
				d->left =
				    d->left * 16 +
				    (uint64_t)(isdigit((unsigned char)c)
				                   ? c - '0'
				                   : (tolower(c) - 'a' + 10));
			} else if (!d->ext && c != '\r' && c != ' ') {
				return -1;
			}
			break;
		case 1: {
			size_t n = len - i;

			if (n > d->left)
				n = (size_t)d->left;
			d->left -= n;
			*data += n;
			i += n;
			if (d->left == 0)
				d->st = 2;
			break;
		}
		case 2:
			i++;
			if (c == '\n')
				d->st = 0;
			break;
		case 3:
			i++;
			if (c == '\n') {
				if (d->tr_blank)
					d->st = 4;
				d->tr_blank = 1;
			} else if (c != '\r') {
				d->tr_blank = 0;
			}
			break;
		}
	}
	return (long)i;
}

#endif
