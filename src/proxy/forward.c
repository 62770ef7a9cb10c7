/*
 * The forwarded heads (forward.h). Whatever leaves here is framed by exactly
 * the fields easfront's own parser framed the message by: the parser refuses
 * a message whose Connection header would take one of them away, and the
 * fuzz harness fuzz_forward re-parses what these functions write.
 */
#include "proxy/forward.h"

#include <stdio.h>
#include <string.h>

#define EAS_VDIR "/Microsoft-Server-ActiveSync"

/* Appends into a fixed buffer; an overflow is remembered, not written. */
struct outbuf {
	char *p;
	size_t len, cap;
	bool overflow;
};

static void ob_add(struct outbuf *ob, const char *s, size_t n)
{
	if (ob->overflow || ob->cap - ob->len < n) {
		ob->overflow = true;
		return;
	}
	memcpy(ob->p + ob->len, s, n);
	ob->len += n;
}

static void ob_str(struct outbuf *ob, struct str s)
{
	ob_add(ob, s.p, s.len);
}

static void ob_lit(struct outbuf *ob, const char *s)
{
	ob_add(ob, s, strlen(s));
}

static void ob_field(struct outbuf *ob, const char *name, struct str value)
{
	ob_lit(ob, name);
	ob_add(ob, ": ", 2);
	ob_str(ob, value);
	ob_add(ob, "\r\n", 2);
}

static void ob_header(struct outbuf *ob, const struct http_header *h)
{
	ob_str(ob, h->name);
	ob_add(ob, ": ", 2);
	ob_str(ob, h->value);
	ob_add(ob, "\r\n", 2);
}

/* Request headers a client must never be able to hand to a CAS: Exchange
 * trusts them between its own servers. */
static bool exchange_internal(struct str name)
{
	static const char *const names[] = {
		"X-CommonAccessToken", "X-IsFromCafe", "X-SourceCafeServer",
		"msExchProxyUri", "X-MSExchangeActivityCtx",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (str_eq_ci_lit(name, names[i]))
			return true;
	return false;
}

/* True when a header must not cross the proxy. Chunked framing itself
 * passes unless the body is re-framed; fields named by Connection are only
 * looked for when the parser saw such an option (HTTP_F_CONN_OPTIONS). */
static bool hop_header(const struct http_header *hs, unsigned n,
		       const struct http_header *h, unsigned flags,
		       bool keep_te)
{
	if (keep_te && str_eq_ci_lit(h->name, "Transfer-Encoding"))
		return false;
	if (http_header_is_hop_by_hop(h->name))
		return true;
	return (flags & HTTP_F_CONN_OPTIONS) &&
	       http_connection_names(hs, n, h->name);
}

/* The codec accepts repeated identical Content-Length headers; the next hop
 * gets one, so no parser downstream has to decide what two mean. */
static bool repeated_length(struct str name, bool *seen)
{
	if (!str_eq_ci_lit(name, "Content-Length"))
		return false;
	if (*seen)
		return true;
	*seen = true;
	return false;
}

/* The request line towards the CAS: the EAS virtual directory becomes the
 * site's proxy_path, everything else is kept. */
static void ob_request_line(struct outbuf *ob, const struct http_request *req,
			    struct str proxy_path)
{
	struct str path = req->path;
	struct str vdir = STR_LIT(EAS_VDIR);

	ob_str(ob, req->method_str);
	ob_add(ob, " ", 1);
	/* RFC 9112 3.2.1, 3.2.4: an absolute-form target without a path. */
	if (path.len == 0)
		path = req->method == HTTP_M_OPTIONS && req->query.len == 0
			       ? STR_LIT("*")
			       : STR_LIT("/");
	if (str_prefix_ci(path, vdir) &&
	    (path.len == vdir.len || path.p[vdir.len] == '/')) {
		ob_str(ob, proxy_path);
		ob_add(ob, path.p + vdir.len, path.len - vdir.len);
	} else {
		ob_str(ob, path);
	}
	if (req->query.len > 0) {
		ob_add(ob, "?", 1);
		ob_str(ob, req->query);
	}
	ob_lit(ob, " HTTP/1.1\r\n");
}

/* Whether one of the client's headers stays behind. */
static bool request_drops(const struct http_request *req,
			  const struct http_header *h,
			  const struct forward_req *fr, bool *cl_seen)
{
	struct str name = h->name;

	if (fr->fixed_len >= 0 && (str_eq_ci_lit(name, "Content-Length") ||
				   str_eq_ci_lit(name, "Transfer-Encoding")))
		return true;
	/* RFC 9112 3.2.2: the authority of an absolute-form target is the
	 * Host; the CAS must see the host easfront routed by. */
	if ((req->flags & HTTP_F_ABSOLUTE_FORM) && str_eq_ci_lit(name, "Host"))
		return true;
	return hop_header(req->headers, req->nheaders, h, req->flags, true) ||
	       exchange_internal(name) || repeated_length(name, cl_seen) ||
	       str_eq_ci_lit(name, "Expect") ||
	       str_eq_ci_lit(name, "X-Forwarded-For") ||
	       str_eq_ci_lit(name, "X-Forwarded-Proto");
}

size_t forward_request_head(char *out, size_t cap,
			    const struct http_request *req,
			    const struct forward_req *fr)
{
	struct outbuf ob = {out, 0, cap, false};
	bool cl_seen = false;
	char len[48];

	ob_request_line(&ob, req, fr->proxy_path);
	for (unsigned i = 0; i < req->nheaders; i++)
		if (!request_drops(req, &req->headers[i], fr, &cl_seen))
			ob_header(&ob, &req->headers[i]);
	if (req->flags & HTTP_F_ABSOLUTE_FORM)
		ob_field(&ob, "Host", req->host);
	else if (!(req->flags & HTTP_F_HAS_HOST))
		ob_field(&ob, "Host", str_from(fr->default_host));
	if (fr->fixed_len >= 0) {
		snprintf(len, sizeof(len), "Content-Length: %lld\r\n",
			 (long long)fr->fixed_len);
		ob_lit(&ob, len);
	}
	/* The edge is where the client's address is known; anything a client
	 * sent under these names is replaced, never trusted. */
	ob_field(&ob, "X-Forwarded-For", str_from(fr->client_ip));
	ob_lit(&ob, "X-Forwarded-Proto: https\r\n\r\n");
	return ob.overflow ? 0 : ob.len;
}

size_t forward_response_head(char *out, size_t cap,
			     const struct http_response *resp,
			     const struct forward_resp *fr)
{
	struct outbuf ob = {out, 0, cap, false};
	bool cl_seen = false, hsts_seen = false;

	ob_str(&ob, resp->status_line);
	ob_lit(&ob, "\r\n");
	for (unsigned i = 0; i < resp->nheaders; i++) {
		const struct http_header *h = &resp->headers[i];

		if (hop_header(resp->headers, resp->nheaders, h, resp->flags,
			       !fr->dechunk) ||
		    repeated_length(h->name, &cl_seen))
			continue;
		if (fr->hsts != NULL &&
		    str_eq_ci_lit(h->name, "Strict-Transport-Security"))
			hsts_seen = true;
		ob_header(&ob, h);
	}
	if (fr->hsts != NULL && !hsts_seen)
		ob_field(&ob, "Strict-Transport-Security", str_from(fr->hsts));
	if (fr->close)
		ob_lit(&ob, "Connection: close\r\n");
	else if (fr->http10)
		ob_lit(&ob, "Connection: keep-alive\r\n");
	ob_lit(&ob, "\r\n");
	return ob.overflow ? 0 : ob.len;
}
