/*
 * libFuzzer harness of http_request_parse(): besides memory safety it checks
 * that a result never depends on how the input was cut: a complete head is
 * the same head in every longer input, an error stays an error, and every
 * view points inside the consumed head.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct http_limits small = {64, 256, 8};

static void in_head(struct str v, const char *buf, int rc)
{
	if (v.len > 0 && (v.p < buf || v.p + v.len > buf + rc))
		abort();
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Independent of the codec's tables: RFC 9110 5.6.2 and 5.5. */
static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') ||
	       ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
	       (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool all(struct str v, bool (*ok)(unsigned char))
{
	for (size_t i = 0; i < v.len; i++)
		if (!ok((unsigned char)v.p[i]))
			return false;
	return true;
}

static bool is_field(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_target(unsigned char c)
{
	return c > 0x20 && c != 0x7f;
}

static void check_ok(const char *buf, int rc, const struct http_request *r,
                     const struct http_limits *lim)
{
	if (r->head_len != (size_t)rc || r->version > 1 ||
	    r->nheaders > lim->max_headers || r->method_str.len == 0 ||
	    r->target.len == 0)
		abort();
	if (!all(r->method_str, is_tchar) || !all(r->target, is_target))
		abort();
	in_head(r->method_str, buf, rc);
	in_head(r->target, buf, rc);
	in_head(r->path, buf, rc);
	in_head(r->query, buf, rc);
	in_head(r->host, buf, rc);
	for (unsigned i = 0; i < r->nheaders; i++) {
		struct str n = r->headers[i].name, v = r->headers[i].value;

		in_head(n, buf, rc);
		in_head(v, buf, rc);
		if (n.len == 0 || !all(n, is_tchar) || !all(v, is_field))
			abort();
		if (v.len > 0 && (memchr(v.p, '\r', v.len) != NULL ||
		                  memchr(v.p, '\n', v.len) != NULL ||
		                  memchr(v.p, '\0', v.len) != NULL ||
		                  is_ows(v.p[0]) || is_ows(v.p[v.len - 1])))
			abort();
	}
	/* The framing facts a smuggling defence must guarantee. */
	if (r->framing == HTTP_BODY_CHUNKED &&
	    (r->version != 1 ||
	     http_header_find(r->headers, r->nheaders, "Content-Length")))
		abort();
	if (r->version == 1 && !(r->flags & HTTP_F_HAS_HOST))
		abort();
	if (r->framing == HTTP_BODY_NONE &&
	    (http_header_find(r->headers, r->nheaders, "Content-Length") ||
	     http_header_find(r->headers, r->nheaders, "Transfer-Encoding")))
		abort();
}

static int parse(const char *buf, size_t len, const struct http_limits *lim,
                 unsigned *status)
{
	static struct http_request req;
	int rc;

	*status = 0;
	rc = http_request_parse(buf, len, lim, &req, status);
	if (rc > 0 && (size_t)rc > len)
		abort();
	if (rc > 0)
		check_ok(buf, rc, &req, lim);
	if (rc < 0 && *status != 400 && *status != 414 && *status != 431 &&
	    *status != 501 && *status != 505)
		abort();
	return rc;
}

/* What a prefix of the input said must still hold for the whole input. */
static void check_prefix(const char *buf, size_t len, size_t plen,
                         const struct http_limits *lim, int rc, unsigned status)
{
	unsigned pst;
	int prc;

	if (plen >= len)
		return;
	prc = parse(buf, plen, lim, &pst);
	if (prc > 0 && prc != rc)
		abort();
	if (prc < 0 && (rc >= 0 || pst != status))
		abort();
}

static void run(const char *buf, size_t len, const struct http_limits *lim)
{
	unsigned status;
	int rc = parse(buf, len, lim, &status);

	check_prefix(buf, len, len / 2, lim, rc, status);
	check_prefix(buf, len, len - (len > 0), lim, rc, status);
	if (rc > 0) {
		/* The head alone is complete; one byte less is not. */
		check_prefix(buf, len, (size_t)rc, lim, rc, status);
		if (parse(buf, (size_t)rc - 1, lim, &status) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes lets ASan catch any read past it. */
	char *buf = malloc(size ? size : 1);

	if (buf == NULL)
		return 0;
	if (size > 0)
		memcpy(buf, data, size);
	run(buf, size, &http_default_limits);
	run(buf, size, &small);
	free(buf);
	return 0;
}
