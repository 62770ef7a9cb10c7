/*
 * The two address forms of the config, taken apart without the network:
 * URLs (cas, external_url) and listen addresses (listen, admin.listen).
 * Strict on purpose: what passes here is what the proxy and the phones get.
 */
#include "conf/conf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* Parses s[0..len) as a port 1-65535. */
static bool port_parse(const char *s, size_t len, uint16_t *port)
{
	uint64_t v;

	if (len == 0 || len > 5 || !str_to_u64((struct str){s, len}, &v) ||
	    v == 0 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* inet_pton over a bounded, not NUL-terminated view. */
static bool ip_parse(int af, const char *s, size_t len, void *out)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char scratch[sizeof(struct in6_addr)];

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(af, buf, out ? out : scratch) == 1;
}

static bool host_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_';
}

/* A DNS name or an IPv4 address: labels of letters, digits, '-', '_',
 * separated by single dots, an optional final dot. */
static bool host_ok(const char *h, size_t len)
{
	if (len == 0 || len > 253 || h[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!host_char((unsigned char)h[i]))
			return false;
		if (h[i] == '.' && i + 1 < len && h[i + 1] == '.')
			return false;
	}
	return true;
}

static bool has_ctl_or_space(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f)
			return true;
	return false;
}

static int fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return -1;
}

/* Splits "host[:port]" or "[v6][:port]" (the authority without user info)
 * into u->host and u->port. */
static int authority_parse(const char *a, size_t len, struct conf_url *u,
                           const char **why)
{
	const char *after;

	if (len == 0)
		return fail(why, "no host after the scheme");
	if (a[0] == '[') {
		const char *close = memchr(a, ']', len);

		if (close == NULL)
			return fail(why, "'[' without ']' around the host");
		u->host = (struct str){a + 1, (size_t)(close - a - 1)};
		if (!ip_parse(AF_INET6, u->host.p, u->host.len, NULL))
			return fail(why, "not an IPv6 address inside [ ]");
		after = close + 1;
	} else {
		const char *colon = memchr(a, ':', len);

		after = colon ? colon : a + len;
		u->host = (struct str){a, (size_t)(after - a)};
		if (!host_ok(u->host.p, u->host.len))
			return fail(why, "not a valid host name");
	}
	if (after == a + len)
		return 0;
	if (*after != ':')
		return fail(why, "unexpected text after the host");
	if (!port_parse(after + 1, (size_t)(a + len - after - 1), &u->port))
		return fail(why, "the port must be a number from 1 to 65535");
	return 0;
}

int conf_url_parse(const char *s, struct conf_url *u, const char **why)
{
	const char *p, *end, *slash;

	*u = (struct conf_url){0};
	if (s == NULL || has_ctl_or_space(s))
		return fail(why, "holds spaces or control characters");
	if (str_prefix_ci(str_from(s), STR_LIT("https://"))) {
		u->https = true;
		p = s + 8;
	} else if (str_prefix_ci(str_from(s), STR_LIT("http://"))) {
		p = s + 7;
	} else {
		return fail(why, "must start with http:// or https://");
	}
	if (strpbrk(p, "?#") != NULL)
		return fail(why, "a query or fragment (? or #) is not allowed");
	end = p + strlen(p);
	slash = strchr(p, '/');
	if (slash == NULL)
		slash = end;
	if (memchr(p, '@', (size_t)(slash - p)) != NULL)
		return fail(why, "user info (user@host) is not allowed");
	if (authority_parse(p, (size_t)(slash - p), u, why) < 0)
		return -1;
	if (u->port == 0)
		u->port = u->https ? 443 : 80;
	u->path = (struct str){slash, (size_t)(end - slash)};
	return 0;
}

static void fill4(struct sockaddr_storage *ss, socklen_t *len,
                  const struct in_addr *a, uint16_t port)
{
	struct sockaddr_in sin = {0};

	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr = *a;
	if (ss != NULL) {
		memset(ss, 0, sizeof(*ss));
		memcpy(ss, &sin, sizeof(sin));
	}
	if (len != NULL)
		*len = sizeof(sin);
}

static void fill6(struct sockaddr_storage *ss, socklen_t *len,
                  const struct in6_addr *a, uint16_t port)
{
	struct sockaddr_in6 sin6 = {0};

	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(port);
	sin6.sin6_addr = *a;
	if (ss != NULL) {
		memset(ss, 0, sizeof(*ss));
		memcpy(ss, &sin6, sizeof(sin6));
	}
	if (len != NULL)
		*len = sizeof(sin6);
}

static int addr6_parse(const char *s, struct sockaddr_storage *ss,
                       socklen_t *len, const char **why)
{
	const char *close = strchr(s, ']');
	struct in6_addr a;
	uint16_t port;

	if (close == NULL)
		return fail(why, "'[' without ']'");
	if (!ip_parse(AF_INET6, s + 1, (size_t)(close - s - 1), &a))
		return fail(why, "not an IPv6 address inside [ ]");
	if (close[1] != ':')
		return fail(why, "no port: expected [IPv6]:PORT");
	if (!port_parse(close + 2, strlen(close + 2), &port))
		return fail(why, "the port must be a number from 1 to 65535");
	fill6(ss, len, &a, port);
	return 0;
}

int conf_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                    const char **why)
{
	const char *colon;
	struct in_addr a;
	uint16_t port;

	if (s == NULL || s[0] == '\0')
		return fail(why, "empty address");
	if (s[0] == '[')
		return addr6_parse(s, ss, len, why);
	colon = strrchr(s, ':');
	if (colon == NULL)
		return fail(why, "no port: expected IPv4:PORT or [IPv6]:PORT");
	if (memchr(s, ':', (size_t)(colon - s)) != NULL)
		return fail(why, "an IPv6 address is written [ADDRESS]:PORT");
	if (!ip_parse(AF_INET, s, (size_t)(colon - s), &a))
		return fail(why, "not an IPv4 address (names are not looked "
		                 "up here)");
	if (!port_parse(colon + 1, strlen(colon + 1), &port))
		return fail(why, "the port must be a number from 1 to 65535");
	fill4(ss, len, &a, port);
	return 0;
}
