/*
 * libFuzzer harness of the forwarded heads (proxy/forward.c): a request or a
 * response that easfront's parser accepts is built again for the next hop,
 * and that head is parsed once more. The next hop must read exactly one
 * head, framing the body as easfront framed it (the same Content-Length, or
 * chunked, or de-chunked to a close), with the host easfront routed by and
 * none of the fields Connection took away or easfront strips.
 *
 * Input: one mode byte (bit 0: response; bits 1-2: the request method a
 * response answers; bit 3: the request body was collected whole; bit 4: the
 * client speaks HTTP/1.0 so a chunked response is de-chunked), then the
 * message head.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "proxy/forward.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next hop's parser: easfront's, without the count limit the forwarded
 * head may exceed by the few fields easfront adds. */
static const struct http_limits next_hop = {1 << 16, 1 << 17,
					    HTTP_MAX_HEADERS};

static char out[1 << 17];

static bool has_field(const struct http_header *h, unsigned n,
		      const char *name)
{
	return http_header_find(h, n, name) != NULL;
}

/* No field that some Connection header of the original named survives. */
static void check_connection_obeyed(const struct http_header *orig,
				    unsigned norig,
				    const struct http_header *fwd,
				    unsigned nfwd, bool allow_host)
{
	for (unsigned i = 0; i < norig; i++) {
		if (!str_eq_ci_lit(orig[i].name, "Connection"))
			continue;
		for (unsigned k = 0; k < nfwd; k++)
			if (http_connection_lists(orig[i].value,
						  fwd[k].name) &&
			    !(allow_host && str_eq_ci_lit(fwd[k].name, "Host")))
				abort();
	}
}

static void check_request(const struct http_request *req, bool collected)
{
	static struct http_request again;
	struct forward_req fr = {
		.proxy_path = STR_LIT("/Microsoft-Server-ActiveSync"),
		.default_host = "cas1.site1.test",
		.client_ip = "192.0.2.1",
		.fixed_len = collected ? 5 : -1,
	};
	unsigned status;
	size_t n;
	int rc;

	/* The data path answers CONNECT (and every other method it does not
	 * proxy) itself. */
	if (req->method == HTTP_M_CONNECT)
		return;
	n = forward_request_head(out, sizeof(out), req, &fr);
	if (n == 0)
		return;
	rc = http_request_parse(out, n, &next_hop, &again, &status);
	/* One complete head and nothing after it. */
	if (rc <= 0 || (size_t)rc != n)
		abort();
	if (collected) {
		if (again.framing != HTTP_BODY_LENGTH ||
		    again.content_length != 5)
			abort();
	} else if (again.framing != req->framing ||
		   again.content_length != req->content_length) {
		abort();
	}
	if (req->host.len > 0 && !str_eq_ci(again.host, req->host))
		abort();
	if (has_field(again.headers, again.nheaders, "X-CommonAccessToken") ||
	    has_field(again.headers, again.nheaders, "Expect"))
		abort();
	check_connection_obeyed(req->headers, req->nheaders, again.headers,
				again.nheaders, !(req->flags & HTTP_F_HAS_HOST));
}

static void check_response(const struct http_response *resp,
			   enum http_method m, bool dechunk)
{
	static struct http_response again;
	struct forward_resp fr = {
		.dechunk = dechunk && resp->framing == HTTP_BODY_CHUNKED,
		.close = dechunk,
		.http10 = dechunk,
		.hsts = "max-age=60",
	};
	unsigned status;
	size_t n;
	int rc;

	n = forward_response_head(out, sizeof(out), resp, &fr);
	if (n == 0)
		return;
	rc = http_response_parse(out, n, &next_hop, m, &again, &status);
	if (rc <= 0 || (size_t)rc != n || again.status != resp->status)
		abort();
	if (fr.dechunk) {
		if (again.framing != HTTP_BODY_EOF)
			abort();
	} else if (again.framing != resp->framing ||
		   again.content_length != resp->content_length) {
		abort();
	}
	check_connection_obeyed(resp->headers, resp->nheaders, again.headers,
				again.nheaders, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum http_method methods[] = {
		HTTP_M_POST, HTTP_M_GET, HTTP_M_HEAD, HTTP_M_OPTIONS,
	};
	static struct http_request req;
	static struct http_response resp;
	const char *buf = (const char *)data + 1;
	unsigned status;
	uint8_t mode;

	if (size < 1)
		return 0;
	mode = data[0];
	size--;
	if (mode & 1) {
		enum http_method m = methods[(mode >> 1) & 3];

		if (http_response_parse(buf, size, NULL, m, &resp, &status) > 0)
			check_response(&resp, m, (mode & 0x10) != 0);
	} else if (http_request_parse(buf, size, NULL, &req, &status) > 0) {
		check_request(&req, (mode & 0x08) != 0);
	}
	return 0;
}
