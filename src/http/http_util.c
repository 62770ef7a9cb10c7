/*
 * Shared pieces of the codec: character classes, limits, authority and list
 * syntax, and the small lookups a proxy needs around a parsed head.
 */
#include "http/http.h"
#include "http/http_int.h"

#include <string.h>

const struct http_limits http_default_limits = {
    .max_request_line = 8192,
    .max_head = 32768,
    .max_headers = 100,
};

/* One table lookup per byte instead of a chain of comparisons: the parsers'
 * inner loops are "while (http_is(*p, CLASS)) p++". */
const uint8_t http_ctype[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x00 */
    0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x08 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x10 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x18 */
    0x02, 0x07, 0x06, 0x07, 0x07, 0x07, 0x07, 0x07, /* 0x20 */
    0x06, 0x06, 0x07, 0x07, 0x06, 0x17, 0x17, 0x06, /* 0x28 */
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, /* 0x30 */
    0x1f, 0x1f, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0x38 */
    0x06, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x17, /* 0x40 */
    0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, /* 0x48 */
    0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, /* 0x50 */
    0x17, 0x17, 0x17, 0x06, 0x06, 0x06, 0x07, 0x17, /* 0x58 */
    0x07, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x17, /* 0x60 */
    0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, /* 0x68 */
    0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, 0x17, /* 0x70 */
    0x17, 0x17, 0x17, 0x06, 0x07, 0x06, 0x17, 0x00, /* 0x78 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0x80 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0x88 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0x90 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0x98 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xa0 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xa8 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xb0 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xb8 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xc0 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xc8 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xd0 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xd8 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xe0 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xe8 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xf0 */
    0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06, /* 0xf8 */
};

unsigned http_version_parse(const char *p, size_t n, unsigned *minor)
{
	if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' ||
	    p[5] > '9' || p[7] < '0' || p[7] > '9')
		return 400;
	if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
		return 505;
	*minor = (unsigned)(p[7] - '0');
	return 0;
}

/* An IP-literal without its brackets: hex digits, colons and the dots of an
 * embedded IPv4 address; IPvFuture and zone identifiers are not accepted. */
static bool ip_literal_valid(const char *p, size_t n)
{
	bool colon = false;

	if (n < 2 || n > 45)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == ':')
			colon = true;
		else if (p[i] != '.' && !http_is(p[i], HTTP_C_HEX))
			return false;
	}
	return colon;
}

static bool port_valid(const char *p, size_t n)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	return v <= 65535;
}

bool http_authority_valid(struct str a, bool need_port)
{
	size_t h = 0;

	if (a.len == 0)
		return false;
	if (a.p[0] == '[') {
		const char *rb = memchr(a.p, ']', a.len);

		if (rb == NULL ||
		    !ip_literal_valid(a.p + 1, (size_t)(rb - a.p) - 1))
			return false;
		h = (size_t)(rb - a.p) + 1;
	} else {
		/* ':' and '@' are not host characters, so userinfo and a
		 * second port never get past this loop. */
		while (h < a.len && http_is(a.p[h], HTTP_C_HOST))
			h++;
		if (h == 0 || h > 255)
			return false;
	}
	if (h == a.len)
		return !need_port;
	if (a.p[h] != ':')
		return false;
	return port_valid(a.p + h + 1, a.len - h - 1);
}

bool http_list_next(struct str *rest, struct str *elem)
{
	const char *comma;
	size_t n;

	if (rest->p == NULL)
		return false;
	comma = rest->len > 0 ? memchr(rest->p, ',', rest->len) : NULL;
	n = comma != NULL ? (size_t)(comma - rest->p) : rest->len;
	*elem = str_trim((struct str){rest->p, n});
	if (comma != NULL) {
		rest->p = comma + 1;
		rest->len -= n + 1;
	} else {
		*rest = STR_NULL;
	}
	return true;
}

bool http_header_is_hop_by_hop(struct str name)
{
	switch (name.len) {
	case 2:
		return str_eq_ci_lit(name, "TE");
	case 7:
		return str_eq_ci_lit(name, "Upgrade") ||
		       str_eq_ci_lit(name, "Trailer");
	case 10:
		return str_eq_ci_lit(name, "Connection") ||
		       str_eq_ci_lit(name, "Keep-Alive");
	case 16:
		return str_eq_ci_lit(name, "Proxy-Connection");
	case 17:
		return str_eq_ci_lit(name, "Transfer-Encoding");
	case 18:
		return str_eq_ci_lit(name, "Proxy-Authenticate");
	case 19:
		return str_eq_ci_lit(name, "Proxy-Authorization");
	default:
		return false;
	}
}

bool http_connection_lists(struct str connection_value, struct str name)
{
	struct str rest = connection_value, tok;

	if (name.len == 0 || rest.len == 0)
		return false;
	while (http_list_next(&rest, &tok))
		if (str_eq_ci(tok, name))
			return true;
	return false;
}

bool http_connection_names(const struct http_header *h, unsigned n,
                           struct str name)
{
	for (unsigned i = 0; i < n; i++)
		if (str_eq_ci_lit(h[i].name, "Connection") &&
		    http_connection_lists(h[i].value, name))
			return true;
	return false;
}

const struct http_header *http_header_find(const struct http_header *h,
                                           unsigned n, const char *name)
{
	struct str want = str_from(name);

	for (unsigned i = 0; i < n; i++)
		if (h[i].name.len == want.len && str_eq_ci(h[i].name, want))
			return &h[i];
	return NULL;
}

/* Sorted by code; only phrases a proxy may have to write itself. */
static const struct {
	unsigned short code;
	const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    /* Exchange's re-provision code. 451 is deliberately absent: in EAS it
     * is Exchange's redirect, not RFC 7725's "Unavailable For Legal
     * Reasons", and the proxy never rewrites an upstream phrase anyway. */
    {449, "Retry With"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {507, "Insufficient Storage"},
};

const char *http_reason(unsigned status)
{
	size_t lo = 0, hi = sizeof(reasons) / sizeof(reasons[0]);

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (reasons[mid].code == status)
			return reasons[mid].reason;
		if (reasons[mid].code < status)
			lo = mid + 1;
		else
			hi = mid;
	}
	return "";
}

static const char *const method_names[] = {
    [HTTP_M_OTHER] = "OTHER",     [HTTP_M_GET] = "GET",
    [HTTP_M_HEAD] = "HEAD",       [HTTP_M_POST] = "POST",
    [HTTP_M_PUT] = "PUT",         [HTTP_M_DELETE] = "DELETE",
    [HTTP_M_OPTIONS] = "OPTIONS", [HTTP_M_CONNECT] = "CONNECT",
    [HTTP_M_TRACE] = "TRACE",     [HTTP_M_PATCH] = "PATCH",
};

const char *http_method_str(enum http_method m)
{
	if ((unsigned)m >= sizeof(method_names) / sizeof(method_names[0]))
		return "OTHER";
	return method_names[m];
}
