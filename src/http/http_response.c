/*
 * Response heads from a CAS (RFC 9112 4, 6.3). Anything a second parser could
 * frame differently is a 502: the proxy would rather fail one exchange than
 * let an upstream desynchronise a pooled connection.
 */
#include "http/http.h"
#include "http/http_int.h"

/* HTTP-version SP 3DIGIT [SP reason-phrase], in p[0..e). The strict grammar
 * wants the SP even before an empty phrase; servers that omit it are common
 * enough to accept. */
static int status_line(const char *p, const char *e, struct http_response *resp)
{
	const char *r;

	if (e - p < 12 || p[8] != ' ' ||
	    http_version_parse(p, 8, &resp->version) != 0)
		return -1;
	if (p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' ||
	    p[11] < '0' || p[11] > '9')
		return -1;
	resp->status = (unsigned)(p[9] - '0') * 100 +
	               (unsigned)(p[10] - '0') * 10 + (unsigned)(p[11] - '0');
	r = p + 12;
	if (r < e && *r++ != ' ')
		return -1;
	resp->reason = (struct str){r, (size_t)(e - r)};
	for (; r < e; r++)
		if (!http_is(*r, HTTP_C_FIELD))
			return -1;
	resp->status_line = (struct str){p, (size_t)(e - p)};
	return 0;
}

/* RFC 9112 6.3, in its order. Transfer-Encoding and Content-Length are
 * checked whatever the status, so that a bad head is refused even when its
 * body would have been empty anyway. */
static int framing(struct http_response *resp, enum http_method req_method,
                   const struct http_fields *f)
{
	unsigned st = resp->status;

	/* Forwarded without the field it names, the body would be unframed. */
	if (f->conn_framing) {
		resp->error = "connection-lists-framing";
		return -1;
	}
	if (f->nte > 0 &&
	    (resp->version == 0 || f->ncl > 0 || f->nte > 1 || !f->te_chunked))
		return -1;
	if (req_method == HTTP_M_HEAD || st < 200 || st == 204 || st == 304)
		resp->framing = HTTP_BODY_NONE;
	else if (req_method == HTTP_M_CONNECT && st < 300)
		resp->framing = HTTP_BODY_NONE;
	else if (f->nte > 0)
		resp->framing = HTTP_BODY_CHUNKED;
	else if (f->ncl > 0)
		resp->framing = HTTP_BODY_LENGTH;
	else
		resp->framing = HTTP_BODY_EOF;
	/* Kept for every status: a HEAD response's length is the GET's. */
	resp->content_length = f->content_length;
	return 0;
}

static void connection_flags(struct http_response *resp,
                             enum http_method req_method,
                             const struct http_fields *f)
{
	bool tunnel = req_method == HTTP_M_CONNECT && resp->status >= 200 &&
	              resp->status < 300;

	if (!f->conn_close && resp->framing != HTTP_BODY_EOF && !tunnel &&
	    (resp->version == 1 || f->conn_keep_alive))
		resp->flags |= HTTP_F_KEEP_ALIVE;
	if (f->conn_upgrade)
		resp->flags |= HTTP_F_CONN_UPGRADE;
	if (f->conn_other || f->conn_host)
		resp->flags |= HTTP_F_CONN_OPTIONS;
}

static void response_reset(struct http_response *resp)
{
	resp->status = 0;
	resp->reason = STR_NULL;
	resp->version = 0;
	resp->flags = 0;
	resp->framing = HTTP_BODY_NONE;
	resp->content_length = 0;
	resp->head_len = 0;
	resp->error = NULL;
	resp->status_line = STR_NULL;
	resp->nheaders = 0;
}

int http_response_parse(const char *buf, size_t len,
                        const struct http_limits *lim,
                        enum http_method req_method, struct http_response *resp,
                        unsigned *status)
{
	struct http_fields f = {.hdr = resp->headers};
	struct http_scan_limits sl;
	struct http_scan s;
	int rc;

	lim = http_limits_or_default(lim);
	sl = (struct http_scan_limits){
	    .max_head = http_head_cap(lim->max_head),
	    .max_fields = http_max_fields(lim),
	    .max_skip = 0,
	    .line_status = 502,
	};
	/* The status line is bounded by the head limit alone. */
	sl.max_line = sl.max_head;
	response_reset(resp);
	rc = http_head_scan(buf, len, &sl, &s, status);
	if (rc == 0)
		return 0;
	if (rc < 0 || status_line(buf + s.start, buf + s.line_end, resp) < 0)
		goto bad;
	if (http_fields_parse(buf, s.line_end + 2, s.end - 2, sl.max_fields, &f,
	                      status) < 0) {
		resp->error = f.error;
		goto bad;
	}
	resp->nheaders = f.n;
	if (framing(resp, req_method, &f) < 0)
		goto bad;
	connection_flags(resp, req_method, &f);
	resp->head_len = s.end;
	return (int)s.end;
bad:
	*status = 502;
	return -1;
}
