/*
 * A store's life: its settings (the URL taken apart, the password read from
 * its file, the address resolved once), its two links, its counters, and
 * its end.
 */
#include "store/store_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/str.h"

static int fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return -1;
}

/* Reads decimal digits at *p, at least one, into *out (at most max);
 * advances *p past them. */
static int digits_parse(const char **p, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;
	const char *q = *p;

	if (*q < '0' || *q > '9')
		return -1;
	for (; *q >= '0' && *q <= '9'; q++) {
		v = v * 10 + (unsigned long)(*q - '0');
		if (v > max)
			return -1;
	}
	*p = q;
	*out = v;
	return 0;
}

/* Takes the host off *p: "[v6]" or a run of name characters. */
static int host_parse(const char **p, struct store_addr *out, const char **why)
{
	const char *h = *p, *end;
	unsigned char scratch[sizeof(struct in6_addr)];

	if (*h == '[') {
		end = strchr(++h, ']');
		if (end == NULL)
			return fail(why, "'[' without ']' around the host");
		*p = end + 1;
	} else {
		end = h + strspn(h, "abcdefghijklmnopqrstuvwxyz"
		                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._");
		*p = end;
	}
	if (end == h || (size_t)(end - h) >= sizeof(out->host))
		return fail(why, "no host, or a host too long");
	memcpy(out->host, h, (size_t)(end - h));
	out->host[end - h] = '\0';
	if (h[-1] == '[' && inet_pton(AF_INET6, out->host, scratch) != 1)
		return fail(why, "not an IPv6 address inside [ ]");
	return 0;
}

int store_url_parse(const char *url, struct store_addr *out, const char **why)
{
	const char *p;
	unsigned long v;

	*out = (struct store_addr){.port = STORE_PORT_DEFAULT};
	if (url == NULL || strncasecmp(url, "redis://", 8) != 0)
		return fail(why, "must start with redis:// (plain TCP; "
		                 "rediss:// is not supported)");
	p = url + 8;
	if (host_parse(&p, out, why) < 0)
		return -1;
	if (*p == ':') {
		p++;
		if (digits_parse(&p, 65535, &v) < 0 || v == 0)
			return fail(why, "the port must be a number from 1 "
			                 "to 65535");
		out->port = (uint16_t)v;
	}
	if (*p == '/' && p[1] != '\0') {
		p++;
		if (digits_parse(&p, 9999, &v) < 0)
			return fail(why, "the database must be a number from 0 "
			                 "to 9999");
		out->db = (unsigned)v;
	} else if (*p == '/') {
		p++;
	}
	if (*p != '\0')
		return fail(why, "unexpected text after host, port and "
		                 "database (no user info, query or fragment)");
	return 0;
}

int store_password_read(const char *path, char *buf, size_t cap, char **err)
{
	FILE *f;
	size_t n, len;
	bool more;

	if (err != NULL)
		*err = NULL;
	if (path == NULL || cap < 2 || (f = fopen(path, "re")) == NULL) {
		str_errf(err, "store password file %s: %s",
		        path ? path : "(none)",
		        strerror(path ? errno : EINVAL));
		return -1;
	}
	n = fread(buf, 1, cap - 1, f);
	more = n == cap - 1 && fgetc(f) != EOF;
	fclose(f);
	for (len = 0; len < n && buf[len] != '\n' && buf[len] != '\r'; len++)
		;
	buf[len] = '\0';
	if (len == 0 || (len == n && more) || memchr(buf, '\0', len) != NULL) {
		str_errf(err, "store password file %s: %s", path,
		        len == 0                 ? "empty first line"
		        : memchr(buf, '\0', len) ? "a NUL byte in the password"
		                                 : "the password is too long");
		explicit_bzero(buf, cap);
		return -1;
	}
	return (int)len;
}

/* Resolves the host once (the only blocking step: start-up). */
static int resolve(struct store *s, char **err)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char port[8];
	int rc;

	snprintf(port, sizeof(port), "%u", s->addr.port);
	rc = getaddrinfo(s->addr.host, port, &hints, &res);
	if (rc != 0 || res == NULL || res->ai_addrlen > sizeof(s->sa)) {
		str_errf(err, "store %s: cannot resolve %s: %s", s->url,
		        s->addr.host,
		        rc != 0 ? gai_strerror(rc) : "no address");
		if (res != NULL)
			freeaddrinfo(res);
		return -1;
	}
	memcpy(&s->sa, res->ai_addr, res->ai_addrlen);
	s->salen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* Copies the strings and numbers of c into s. */
static int settings(struct store *s, const struct store_conf *c, char **err)
{
	const char *prefix = c->prefix ? c->prefix : STORE_PREFIX_DEFAULT;
	const char *pw = c->password ? c->password : "";
	const char *why;

	if (store_url_parse(c->url, &s->addr, &why) < 0) {
		str_errf(err, "store URL: %s", why);
		return -1;
	}
	snprintf(s->url, sizeof(s->url), "redis://%s%s%s:%u/%u",
	         strchr(s->addr.host, ':') ? "[" : "", s->addr.host,
	         strchr(s->addr.host, ':') ? "]" : "", s->addr.port,
	         s->addr.db);
	s->prefix_len = strlen(prefix);
	if (s->prefix_len > STORE_PREFIX_MAX ||
	    strlen(pw) >= sizeof(s->password)) {
		str_errf(err,
		        "store %s: the key prefix (at most %d bytes) or "
		        "the password (at most %d) is too long",
		        s->url, STORE_PREFIX_MAX, STORE_PASSWORD_MAX - 1);
		return -1;
	}
	memcpy(s->prefix, prefix, s->prefix_len + 1);
	memcpy(s->password, pw, strlen(pw) + 1);
	s->timeout_ms =
	    c->timeout_ms ? c->timeout_ms : STORE_TIMEOUT_MS_DEFAULT;
	s->max_inflight =
	    c->max_inflight ? c->max_inflight : STORE_INFLIGHT_DEFAULT;
	s->keepalive_ms =
	    c->keepalive_ms ? c->keepalive_ms : STORE_KEEPALIVE_MS;
	return 0;
}

struct store *store_new(struct event_base *base, const struct store_conf *c,
                        char **err)
{
	struct store *s = calloc(1, sizeof(*s));

	if (err != NULL)
		*err = NULL;
	if (s == NULL) {
		str_errf(err, "store: out of memory");
		return NULL;
	}
	s->base = base;
	if (settings(s, c, err) < 0 || resolve(s, err) < 0)
		goto fail;
	if (link_init(&s->cmd, s, "commands") < 0 ||
	    link_init(&s->sub, s, "subscriptions") < 0) {
		str_errf(err, "store: out of memory");
		goto fail;
	}
	s->sub.on_up = store_sub_on_up;
	s->sub.on_push = store_sub_on_push;
	link_start(&s->cmd);
	return s;
fail:
	store_free(s);
	return NULL;
}

void store_free(struct store *s)
{
	if (s == NULL)
		return;
	link_close(&s->sub);
	link_close(&s->cmd);
	explicit_bzero(s->password, sizeof(s->password));
	free(s);
}

bool store_up(const struct store *s)
{
	return atomic_load_explicit(&s->cmd.up, memory_order_relaxed);
}

void store_get_stats(const struct store *s, struct store_stats *st)
{
#define LOAD(f) atomic_load_explicit(&s->st.f, memory_order_relaxed)
	*st = (struct store_stats){
	    .up = store_up(s),
	    .sub_up = atomic_load_explicit(&s->sub.up, memory_order_relaxed),
	    .commands = LOAD(commands),
	    .errors = LOAD(errors),
	    .timeouts = LOAD(timeouts),
	    .refused = LOAD(refused),
	    .reconnects = LOAD(reconnects),
	    .messages = LOAD(messages),
	    .rtt_us = LOAD(rtt_us),
	};
#undef LOAD
}
