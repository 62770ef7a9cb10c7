/*
 * Private to src/http: the character classes and the head scanning and header
 * field parsing shared by the request and response parsers.
 */
#ifndef EF_HTTP_HTTP_INT_H
#define EF_HTTP_HTTP_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/http.h"

/* Character classes of http_ctype[] (RFC 9110 5.6.2, 5.5; RFC 3986 3.2.2). */
#define HTTP_C_TCHAR 0x01U  /* token character */
#define HTTP_C_FIELD 0x02U  /* in a field value: VCHAR, obs-text, SP, HTAB */
#define HTTP_C_TARGET 0x04U /* request-target: VCHAR and obs-text */
#define HTTP_C_HEX 0x08U    /* HEXDIG */
#define HTTP_C_HOST 0x10U   /* what we accept in a reg-name or IPv4 address */

/* Empty lines (CRLF) skipped before a request line (RFC 9112 2.2). */
#define HTTP_MAX_EMPTY_LINES 8

/* Longest chunk-size line (digits and extensions, without CRLF). */
#define HTTP_MAX_CHUNK_LINE 4096

extern const uint8_t http_ctype[256];

static inline bool http_is(char c, unsigned cls)
{
	return (http_ctype[(unsigned char)c] & cls) != 0;
}

/*
 * The fast path over the long runs of printable ASCII in targets and field
 * values: skips eight bytes at a time while a whole word is at least lo and
 * holds no DEL (bytes from 0x80 pass too), stopping before a word that would
 * reach past end. Exact as a yes/no test per word (the "hasless" and
 * "haszero" tricks); the caller finishes byte by byte with http_ctype[].
 */
static inline const char *http_skip_words(const char *p, const char *end,
                                          unsigned char lo)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t highs = 0x8080808080808080ULL;

	while (end - p >= 8) {
		uint64_t x, d;

		memcpy(&x, p, sizeof(x));
		d = x ^ (ones * 0x7f);
		if ((((x - ones * lo) & ~x) | ((d - ones) & ~d)) & highs)
			break;
		p += 8;
	}
	return p;
}

/* Where the start line and the head end, found before anything is parsed. */
struct http_scan {
	size_t start;    /* first byte of the start line */
	size_t line_end; /* the CR that ends the start line */
	size_t end;      /* just past the final CRLF: the head length */
};

/* The bounds a scan enforces, with the status each one answers. */
struct http_scan_limits {
	size_t max_line;      /* longest start line without CRLF */
	size_t max_head;      /* longest head from the start line on */
	unsigned max_fields;  /* most header lines */
	unsigned max_skip;    /* empty lines allowed before the start line */
	unsigned line_status; /* answer to a start line that is too long */
};

/*
 * Finds the end of the head in buf[0..len): returns 1 with *s filled when it
 * is there, 0 when more bytes are needed, -1 with *status (400, 431 or
 * sl->line_status) on a bare LF or as soon as a limit is exceeded.
 */
int http_head_scan(const char *buf, size_t len,
                   const struct http_scan_limits *sl, struct http_scan *s,
                   unsigned *status);

/* What the header fields of one head say about framing and the connection. */
struct http_fields {
	struct http_header *hdr; /* the caller's array (not owned) */
	unsigned n;              /* fields stored in hdr */
	unsigned ncl;            /* Content-Length fields */
	unsigned nte;            /* Transfer-Encoding fields */
	unsigned nhost;          /* Host fields */
	uint64_t
	    content_length; /* the one value all Content-Lengths agree on */
	struct str host;    /* value of the first Host field */
	bool te_chunked;    /* the first Transfer-Encoding is exactly chunked */
	bool conn_close;    /* Connection lists close */
	bool conn_keep_alive; /* Connection lists keep-alive */
	bool conn_upgrade;    /* Connection lists upgrade */
	bool conn_other;      /* Connection lists some other option */
	bool conn_framing;    /* Connection lists Content-Length or
	                         Transfer-Encoding */
	bool conn_host;       /* Connection lists Host */
	const char *error;    /* why the fields were refused, for the log
	                         (static), or NULL */
	bool expect_100;      /* Expect: 100-continue */
};

/*
 * Parses the header lines buf[from..to), where to is the CR of the empty line
 * ending a head that http_head_scan() found complete. Stores at most max
 * fields. Returns 0, or -1 with *status 400 (syntax, bad or conflicting
 * Content-Length) or 431 (too many fields).
 */
int http_fields_parse(const char *buf, size_t from, size_t to, unsigned max,
                      struct http_fields *f, unsigned *status);

/*
 * Parses "HTTP/d.d" in p[0..8): returns 0 with *minor set for HTTP/1.0 and
 * HTTP/1.1, 505 for another well-formed version, 400 otherwise.
 */
unsigned http_version_parse(const char *p, size_t n, unsigned *minor);

/* True for host [":" port] with a reg-name, IPv4 or [IPv6] host, a port of
 * 1-5 digits up to 65535 and no userinfo; need_port makes the port required. */
bool http_authority_valid(struct str a, bool need_port);

/* Takes the next element of a comma-separated list off *rest into *elem,
 * trimmed of OWS (empty elements included); false when *rest is used up. */
bool http_list_next(struct str *rest, struct str *elem);

/* The limits to use when the caller passed none. */
static inline const struct http_limits *
http_limits_or_default(const struct http_limits *lim)
{
	return lim != NULL ? lim : &http_default_limits;
}

/* The parsers return a head length as an int; the few skipped empty lines
 * stay below the margin. */
static inline size_t http_head_cap(size_t max_head)
{
	return max_head < (size_t)INT_MAX - 64 ? max_head
	                                       : (size_t)INT_MAX - 64;
}

/* Header count a head may have under lim. */
static inline unsigned http_max_fields(const struct http_limits *lim)
{
	return lim->max_headers < HTTP_MAX_HEADERS ? lim->max_headers
	                                           : HTTP_MAX_HEADERS;
}

#endif
