/*
 * Request heads (RFC 9112 3, 6, 9.3): the request line and its target, Host,
 * and the framing rules that stop request smuggling at the edge.
 */
#include "http/http.h"
#include "http/http_int.h"

#include <string.h>

#define LIT_IS(s, lit)                                                         \
	((s).len == sizeof(lit) - 1 && memcmp((s).p, lit, sizeof(lit) - 1) == 0)

/* Methods are case-sensitive (RFC 9110 9.1). */
static enum http_method method_lookup(struct str m)
{
	switch (m.len) {
	case 3:
		return LIT_IS(m, "GET")   ? HTTP_M_GET
		       : LIT_IS(m, "PUT") ? HTTP_M_PUT
		                          : HTTP_M_OTHER;
	case 4:
		return LIT_IS(m, "POST")   ? HTTP_M_POST
		       : LIT_IS(m, "HEAD") ? HTTP_M_HEAD
		                           : HTTP_M_OTHER;
	case 5:
		return LIT_IS(m, "TRACE")   ? HTTP_M_TRACE
		       : LIT_IS(m, "PATCH") ? HTTP_M_PATCH
		                            : HTTP_M_OTHER;
	case 6:
		return LIT_IS(m, "DELETE") ? HTTP_M_DELETE : HTTP_M_OTHER;
	case 7:
		return LIT_IS(m, "OPTIONS")   ? HTTP_M_OPTIONS
		       : LIT_IS(m, "CONNECT") ? HTTP_M_CONNECT
		                              : HTTP_M_OTHER;
	default:
		return HTTP_M_OTHER;
	}
}

/* Splits a path-and-query at the first '?'. */
static void split_query(struct str pq, struct http_request *req)
{
	const char *q = pq.len > 0 ? memchr(pq.p, '?', pq.len) : NULL;

	if (q == NULL) {
		req->path = pq;
		req->query = (struct str){pq.p + pq.len, 0};
		return;
	}
	req->path = (struct str){pq.p, (size_t)(q - pq.p)};
	req->query = (struct str){q + 1, pq.len - req->path.len - 1};
}

/* absolute-form with an http or https authority; the authority becomes
 * req->host, which RFC 9112 3.2.2 puts above any Host field. */
static int absolute_form(struct str t, struct http_request *req)
{
	size_t skip, a = 0;
	struct str rest;

	if (str_prefix_ci(t, STR_LIT("http://")))
		skip = 7;
	else if (str_prefix_ci(t, STR_LIT("https://")))
		skip = 8;
	else
		return -1;
	rest = (struct str){t.p + skip, t.len - skip};
	while (a < rest.len && rest.p[a] != '/' && rest.p[a] != '?')
		a++;
	req->host = (struct str){rest.p, a};
	if (!http_authority_valid(req->host, false))
		return -1;
	split_query((struct str){rest.p + a, rest.len - a}, req);
	req->flags |= HTTP_F_ABSOLUTE_FORM;
	return 0;
}

/* Which of the four forms of RFC 9112 3.2 the target takes, and whether the
 * method allows it. */
static int target_parse(struct http_request *req)
{
	struct str t = req->target;

	if (req->method == HTTP_M_CONNECT) {
		/* authority-form, and nothing else, is CONNECT's. */
		if (!http_authority_valid(t, true))
			return -1;
		req->host = t;
		req->path = (struct str){t.p + t.len, 0};
		req->query = req->path;
		return 0;
	}
	if (t.p[0] == '/') {
		split_query(t, req);
		return 0;
	}
	if (t.len == 1 && t.p[0] == '*') {
		if (req->method != HTTP_M_OPTIONS)
			return -1;
		req->path = t;
		req->query = (struct str){t.p + 1, 0};
		return 0;
	}
	return absolute_form(t, req);
}

/* method SP request-target SP HTTP-version, in p[0..e), nothing more. */
static int request_line(const char *p, const char *e, struct http_request *req,
                        unsigned *status)
{
	const char *m = p, *t;
	unsigned st;

	while (p < e && http_is(*p, HTTP_C_TCHAR))
		p++;
	if (p == m || p == e || *p != ' ')
		goto bad;
	req->method_str = (struct str){m, (size_t)(p - m)};
	req->method = method_lookup(req->method_str);
	t = ++p;
	p = http_skip_words(p, e, 0x21);
	while (p < e && http_is(*p, HTTP_C_TARGET))
		p++;
	if (p == t || p == e || *p != ' ')
		goto bad;
	req->target = (struct str){t, (size_t)(p - t)};
	p++;
	st = http_version_parse(p, (size_t)(e - p), &req->version);
	if (st != 0) {
		*status = st;
		return -1;
	}
	if (target_parse(req) < 0)
		goto bad;
	return 0;
bad:
	*status = 400;
	return -1;
}

/* Host (RFC 9112 3.2): exactly one in HTTP/1.1, at most one in 1.0, and
 * always a plausible authority. */
static int host_check(struct http_request *req, const struct http_fields *f)
{
	if (f->nhost > 1)
		return -1;
	if (f->nhost == 0)
		return req->version == 1 ? -1 : 0;
	if (!http_authority_valid(f->host, false))
		return -1;
	req->flags |= HTTP_F_HAS_HOST;
	if (req->host.p == NULL)
		req->host = f->host;
	return 0;
}

/*
 * RFC 9112 6.1-6.3 for requests, stricter where a proxy must be: a message
 * that two parsers could frame differently is refused, never repaired.
 */
static int framing(struct http_request *req, const struct http_fields *f,
                   unsigned *status)
{
	/* A next hop that drops what Connection names would read no framing
	 * (or no Host) where this parser read one. */
	if (f->conn_framing || f->conn_host) {
		req->error = "connection-lists-framing";
		*status = 400;
		return -1;
	}
	if (f->nte > 0) {
		if (req->version == 0 || f->ncl > 0) {
			*status = 400;
			return -1;
		}
		if (f->nte > 1 || !f->te_chunked) {
			*status = 501;
			return -1;
		}
		req->framing = HTTP_BODY_CHUNKED;
	} else if (f->ncl > 0) {
		req->framing = HTTP_BODY_LENGTH;
		req->content_length = f->content_length;
	}
	return 0;
}

static void connection_flags(struct http_request *req,
                             const struct http_fields *f)
{
	if (!f->conn_close && (req->version == 1 || f->conn_keep_alive))
		req->flags |= HTTP_F_KEEP_ALIVE;
	if (f->conn_upgrade)
		req->flags |= HTTP_F_CONN_UPGRADE;
	if (f->conn_other)
		req->flags |= HTTP_F_CONN_OPTIONS;
	/* RFC 9110 10.1.1: a 100-continue in HTTP/1.0 is ignored. */
	if (f->expect_100 && req->version == 1)
		req->flags |= HTTP_F_EXPECT_100;
}

static void request_reset(struct http_request *req)
{
	req->method = HTTP_M_OTHER;
	req->method_str = STR_NULL;
	req->target = STR_NULL;
	req->path = STR_NULL;
	req->query = STR_NULL;
	req->host = STR_NULL;
	req->version = 0;
	req->flags = 0;
	req->framing = HTTP_BODY_NONE;
	req->content_length = 0;
	req->head_len = 0;
	req->error = NULL;
	req->nheaders = 0;
}

/* A view inside [from, from + len] moves with the bytes; any other (an
 * empty constant) stays. */
static void rebase(struct str *v, const char *from, size_t len,
                   const char *to)
{
	if (v->p != NULL && v->p >= from && v->p <= from + len)
		v->p = to + (v->p - from);
}

void http_request_rebase(struct http_request *req, const char *from,
                         const char *to)
{
	size_t len = req->head_len;

	rebase(&req->method_str, from, len, to);
	rebase(&req->target, from, len, to);
	rebase(&req->path, from, len, to);
	rebase(&req->query, from, len, to);
	rebase(&req->host, from, len, to);
	for (unsigned i = 0; i < req->nheaders; i++) {
		rebase(&req->headers[i].name, from, len, to);
		rebase(&req->headers[i].value, from, len, to);
	}
}

/* head_len counts skipped leading empty lines too, so that buf + head_len is
 * always where the body starts. */
int http_request_parse(const char *buf, size_t len,
                       const struct http_limits *lim, struct http_request *req,
                       unsigned *status)
{
	struct http_fields f = {.hdr = req->headers};
	struct http_scan_limits sl;
	struct http_scan s;
	int rc;

	lim = http_limits_or_default(lim);
	sl = (struct http_scan_limits){
	    .max_line = lim->max_request_line,
	    .max_head = http_head_cap(lim->max_head),
	    .max_fields = http_max_fields(lim),
	    .max_skip = HTTP_MAX_EMPTY_LINES,
	    .line_status = 414,
	};
	request_reset(req);
	rc = http_head_scan(buf, len, &sl, &s, status);
	if (rc <= 0)
		return rc;
	if (request_line(buf + s.start, buf + s.line_end, req, status) < 0)
		return -1;
	if (http_fields_parse(buf, s.line_end + 2, s.end - 2, sl.max_fields, &f,
	                      status) < 0) {
		req->error = f.error;
		return -1;
	}
	req->nheaders = f.n;
	if (host_check(req, &f) < 0) {
		*status = 400;
		return -1;
	}
	if (framing(req, &f, status) < 0)
		return -1;
	connection_flags(req, &f);
	req->head_len = s.end;
	return (int)s.end;
}
