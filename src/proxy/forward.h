/*
 * The heads easfront sends on: a client's request towards a CAS and a CAS's
 * response towards the client, built from the parsed heads. Pure: no I/O, no
 * session, so a fuzzer can check that what goes out frames the body exactly
 * as easfront read it.
 */
#ifndef EF_PROXY_FORWARD_H
#define EF_PROXY_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"
#include "http/http.h"

/* How a request goes up. */
struct forward_req {
	struct str proxy_path;	  /* the site's path for the EAS vdir */
	const char *default_host; /* Host for a request that had none (1.0) */
	const char *client_ip;	  /* for X-Forwarded-For */
	int64_t fixed_len;	  /* >= 0: the body was collected whole and
				     goes up with this Content-Length instead
				     of the client's framing; -1: as read */
};

/* How a response goes down. */
struct forward_resp {
	bool dechunk;	  /* the body is de-chunked (HTTP/1.0 client): no
			     Transfer-Encoding, delimited by the close */
	bool close;	  /* the client connection closes after it */
	bool http10;	  /* the client spoke HTTP/1.0 */
	const char *hsts; /* Strict-Transport-Security value to add when the
			     CAS sent none, or NULL */
};

/*
 * Writes the head for the CAS into out[0..cap): the request line with the
 * EAS virtual directory mapped onto proxy_path, every end-to-end header in
 * the client's order and spelling, less hop-by-hop ones (those Connection
 * names in any Connection header too), Exchange-internal ones and repeats of
 * Content-Length; Host from an absolute-form target; X-Forwarded-For and
 * -Proto of our own. Returns its length, or 0 when it does not fit.
 */
size_t forward_request_head(char *out, size_t cap,
			    const struct http_request *req,
			    const struct forward_req *fr);

/*
 * Writes the head for the client into out[0..cap): the CAS's status line and
 * end-to-end headers as sent, less hop-by-hop ones and repeats of
 * Content-Length, then the connection's own Connection header. Returns its
 * length, or 0 when it does not fit.
 */
size_t forward_response_head(char *out, size_t cap,
			     const struct http_response *resp,
			     const struct forward_resp *fr);

#endif
