/*
 * The part of head parsing that requests and responses share: finding the end
 * of the head under the limits, and the header fields with the framing and
 * connection facts they carry (RFC 9112 2, 5, 6; RFC 9110 5, 7.6.1).
 */
#include "http/http.h"
#include "http/http_int.h"

#include <string.h>

/* Leading empty lines: returns the offset of the start line, or 0 through
 * *rc when more bytes are needed or the input is bad. */
static size_t skip_empty_lines(const char *buf, size_t len, unsigned max,
                               int *rc, unsigned *status)
{
	size_t pos = 0;
	unsigned n = 0;

	*rc = 1;
	while (pos < len && buf[pos] == '\r') {
		if (len - pos < 2) {
			*rc = 0;
			return 0;
		}
		if (buf[pos + 1] != '\n' || ++n > max) {
			*status = 400;
			*rc = -1;
			return 0;
		}
		pos += 2;
	}
	return pos;
}

/* An incomplete start line of avail bytes, the last one last, is too long
 * when even a CRLF right now could not bring it under max. */
static bool line_too_long(size_t avail, char last, size_t max)
{
	return avail > max + 1 || (avail == max + 1 && last != '\r');
}

/*
 * The walk goes from LF to LF with memchr, which is what makes rescanning the
 * whole input on every call cheap; every LF must close a CRLF. The walk never
 * looks past max_head bytes, so a flood of header bytes costs no more than
 * one maximal head.
 */
int http_head_scan(const char *buf, size_t len,
                   const struct http_scan_limits *sl, struct http_scan *s,
                   unsigned *status)
{
	size_t line, limit;
	unsigned nfields = 0;
	bool first = true;
	int rc;

	s->start = skip_empty_lines(buf, len, sl->max_skip, &rc, status);
	if (rc <= 0)
		return rc;
	/* Skipped empty lines count toward max_head like they count in
	 * head_len, so max_head + 1 bytes always suffice for an answer. */
	line = s->start;
	limit = len > sl->max_head ? sl->max_head : len;
	if (limit < line)
		limit = line;
	for (;;) {
		const char *lf = memchr(buf + line, '\n', limit - line);
		size_t i;

		if (lf == NULL)
			break;
		i = (size_t)(lf - buf);
		/* Length first: a start line gets the answer it got while it
		 * was incomplete, whatever ends it. */
		if (first && i > line &&
		    line_too_long(i - line, buf[i - 1], sl->max_line)) {
			*status = sl->line_status;
			return -1;
		}
		if (i == line || buf[i - 1] != '\r') {
			*status = 400;
			return -1;
		}
		if (first) {
			s->line_end = i - 1;
			first = false;
		} else if (i - 1 == line) {
			s->end = i + 1;
			return 1;
		} else if (++nfields > sl->max_fields) {
			*status = 431;
			return -1;
		}
		line = i + 1;
	}
	if (first && limit > line &&
	    line_too_long(limit - line, buf[limit - 1], sl->max_line)) {
		*status = sl->line_status;
		return -1;
	}
	/* Without its final LF in the first max_head bytes, the head can only
	 * end up longer than max_head. */
	if (len >= sl->max_head) {
		*status = 431;
		return -1;
	}
	return 0;
}

/*
 * Content-Length is all digits (no sign, no list, RFC 9110 8.6); repeats must
 * agree. Values above INT64_MAX are refused so that no signed consumer of the
 * length (off_t, ev_ssize_t) downstream can see it negative.
 */
static int content_length(struct http_fields *f, struct str v)
{
	uint64_t n;

	if (!str_to_u64(v, &n) || n > (uint64_t)INT64_MAX)
		return -1;
	if (f->ncl++ > 0 && n != f->content_length)
		return -1;
	f->content_length = n;
	return 0;
}

/* A token or a checked field value against a literal of lower-case letters,
 * digits and '-': OR-ing 0x20 folds case exactly here, since the only other
 * bytes it maps onto those are CTLs, which neither can hold. */
static bool name_is(struct str n, const char *lower, size_t len)
{
	if (n.len != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)n.p[i] | 0x20) != (unsigned char)lower[i])
			return false;
	return true;
}

#define NAME_IS(n, lit) name_is((n), (lit), sizeof(lit) - 1)

static bool is_token(struct str t)
{
	for (size_t i = 0; i < t.len; i++)
		if (!http_is(t.p[i], HTTP_C_TCHAR))
			return false;
	return true;
}

/*
 * Connection options (RFC 9110 7.6.1) are tokens; anything else could be
 * read as a different list by the next parser, so it is refused. Naming a
 * field that frames the message or names its target is recorded: a proxy
 * that obeyed it would hand the next hop a message framed differently from
 * the one it read (request smuggling), so the callers refuse those too.
 */
static int connection_tokens(struct http_fields *f, struct str v)
{
	struct str tok;

	while (http_list_next(&v, &tok)) {
		if (tok.len == 0)
			continue; /* empty list elements are allowed */
		if (!is_token(tok))
			return -1;
		if (NAME_IS(tok, "close"))
			f->conn_close = true;
		else if (NAME_IS(tok, "keep-alive"))
			f->conn_keep_alive = true;
		else if (NAME_IS(tok, "upgrade"))
			f->conn_upgrade = true;
		else if (NAME_IS(tok, "content-length") ||
		         NAME_IS(tok, "transfer-encoding"))
			f->conn_framing = true;
		else if (NAME_IS(tok, "host"))
			f->conn_host = true;
		else
			f->conn_other = true;
	}
	return 0;
}

/* Records what one field means for framing and the connection; the switch on
 * the name length keeps the common case (any other field) to one compare. */
static int field_apply(struct http_fields *f, const struct http_header *h)
{
	switch (h->name.len) {
	case 4:
		if (NAME_IS(h->name, "host") && f->nhost++ == 0)
			f->host = h->value;
		break;
	case 6:
		if (NAME_IS(h->name, "expect") &&
		    NAME_IS(h->value, "100-continue"))
			f->expect_100 = true;
		break;
	case 10:
		if (NAME_IS(h->name, "connection") &&
		    connection_tokens(f, h->value) < 0) {
			f->error = "bad-connection-header";
			return -1;
		}
		break;
	case 14:
		if (NAME_IS(h->name, "content-length") &&
		    content_length(f, h->value) < 0) {
			f->error = "bad-content-length";
			return -1;
		}
		break;
	case 17:
		if (NAME_IS(h->name, "transfer-encoding") && f->nte++ == 0)
			f->te_chunked = NAME_IS(h->value, "chunked");
		break;
	default:
		break;
	}
	return 0;
}

/* The end of a field value: the first byte that is not VCHAR, obs-text, SP
 * or HTAB. Never runs off the head, whose last line ends in CR. */
static const char *value_end(const char *p, const char *head_end)
{
	for (;;) {
		p = http_skip_words(p, head_end, 0x20);
		for (int i = 0; i < 8; i++, p++)
			if (!http_is(*p, HTTP_C_FIELD))
				return p;
	}
}

/*
 * The head is known to end in CRLFCRLF and to hold no bare LF, so every loop
 * stops at the latest on the CR ending its line: CR is neither a token nor a
 * field-value character. A line starting with SP or HTAB (obs-fold) and
 * whitespace before the colon both fail the "token then ':'" test.
 */
int http_fields_parse(const char *buf, size_t from, size_t to, unsigned max,
                      struct http_fields *f, unsigned *status)
{
	const char *p = buf + from, *end = buf + to;

	while (p < end) {
		struct http_header *h;
		const char *name = p, *v, *q;

		if (f->n >= max) {
			*status = 431;
			return -1;
		}
		h = &f->hdr[f->n];
		while (http_is(*p, HTTP_C_TCHAR))
			p++;
		if (p == name || *p != ':')
			goto bad;
		h->name = (struct str){name, (size_t)(p - name)};
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		v = p;
		p = value_end(p, end + 2);
		if (p[0] != '\r' || p[1] != '\n')
			goto bad;
		for (q = p; q > v && (q[-1] == ' ' || q[-1] == '\t'); q--)
			;
		h->value = (struct str){v, (size_t)(q - v)};
		p += 2;
		f->n++;
		if (field_apply(f, h) < 0)
			goto bad;
	}
	return 0;
bad:
	*status = 400;
	return -1;
}
