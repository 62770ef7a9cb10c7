/*
 * libFuzzer harness of http_response_parse(), for the request methods whose
 * responses are framed differently: views inside the head, every error a 502,
 * and framing consistent with the status and the method.
 */
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

static void check_ok(const char *buf, int rc, enum http_method m,
                     const struct http_response *r,
                     const struct http_limits *lim)
{
	if (r->head_len != (size_t)rc || r->status < 100 || r->status > 599 ||
	    r->version > 1 || r->nheaders > lim->max_headers)
		abort();
	if (r->status_line.p != buf || r->status_line.len < 12)
		abort();
	in_head(r->status_line, buf, rc);
	in_head(r->reason, buf, rc);
	for (unsigned i = 0; i < r->nheaders; i++) {
		in_head(r->headers[i].name, buf, rc);
		in_head(r->headers[i].value, buf, rc);
		if (r->headers[i].name.len == 0)
			abort();
	}
	if ((m == HTTP_M_HEAD || r->status < 200 || r->status == 204 ||
	     r->status == 304) &&
	    r->framing != HTTP_BODY_NONE)
		abort();
	if (r->framing == HTTP_BODY_EOF && (r->flags & HTTP_F_KEEP_ALIVE))
		abort();
	if (r->framing == HTTP_BODY_CHUNKED && r->version != 1)
		abort();
}

static void run(const char *buf, size_t len, enum http_method m,
                const struct http_limits *lim)
{
	static struct http_response resp;
	unsigned status = 0;
	int rc = http_response_parse(buf, len, lim, m, &resp, &status);

	if (rc > 0 && (size_t)rc > len)
		abort();
	if (rc < 0 && status != 502)
		abort();
	if (rc <= 0)
		return;
	check_ok(buf, rc, m, &resp, lim);
	/* The head alone parses the same; one byte less is incomplete. */
	if (http_response_parse(buf, (size_t)rc, lim, m, &resp, &status) !=
	        rc ||
	    http_response_parse(buf, (size_t)rc - 1, lim, m, &resp, &status) !=
	        0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum http_method methods[] = {HTTP_M_POST, HTTP_M_HEAD,
	                                           HTTP_M_CONNECT};
	char *buf = malloc(size ? size : 1);

	if (buf == NULL)
		return 0;
	if (size > 0)
		memcpy(buf, data, size);
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		run(buf, size, methods[i], &http_default_limits);
		run(buf, size, methods[i], &small);
	}
	free(buf);
	return 0;
}
