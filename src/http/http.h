/*
 * Strict HTTP/1.1 codec (RFC 9112), pure: bytes in, views out, no I/O.
 *
 * Every parser returns <0 on error (with an HTTP status to answer), 0 when it
 * needs more bytes, or >0: the number of bytes consumed. Parsed views point
 * into the caller's buffer and are valid only while that buffer is unchanged.
 * A head parser is given the whole unconsumed input each time and looks for
 * the end of the head first, so calling it again with more bytes is how it
 * resumes.
 */
#ifndef EF_HTTP_HTTP_H
#define EF_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"

/* Headers beyond this count get 431, whatever http_limits says. */
#define HTTP_MAX_HEADERS 128

enum http_method {
	HTTP_M_OTHER = 0, /* a valid token we do not know; still forwardable */
	HTTP_M_GET,
	HTTP_M_HEAD,
	HTTP_M_POST,
	HTTP_M_PUT,
	HTTP_M_DELETE,
	HTTP_M_OPTIONS,
	HTTP_M_CONNECT,
	HTTP_M_TRACE,
	HTTP_M_PATCH,
};

/* How the message body is delimited. */
enum http_framing {
	HTTP_BODY_NONE = 0, /* no body at all */
	HTTP_BODY_LENGTH,   /* exactly content_length bytes */
	HTTP_BODY_CHUNKED,  /* Transfer-Encoding: chunked */
	HTTP_BODY_EOF,      /* responses only: until the connection closes */
};

struct http_limits {
	size_t max_request_line; /* longer -> 414 */
	size_t max_head;	 /* whole head incl. final CRLF; longer -> 431 */
	unsigned max_headers;	 /* more -> 431; capped at HTTP_MAX_HEADERS */
};

/* Defaults: 8 KiB request line, 32 KiB head, 100 headers. */
extern const struct http_limits http_default_limits;

struct http_header {
	struct str name;  /* as received: spelling and case kept */
	struct str value; /* leading/trailing OWS removed */
};

/* Flags of a parsed request or response head. */
#define HTTP_F_KEEP_ALIVE 0x01U	 /* persistent after this message */
#define HTTP_F_EXPECT_100 0x02U	 /* Expect: 100-continue */
#define HTTP_F_HAS_HOST 0x04U	 /* a Host header was present */
#define HTTP_F_CONN_UPGRADE 0x08U /* Connection lists upgrade */
#define HTTP_F_CONN_OPTIONS 0x10U /* Connection lists a field beyond close,
				     keep-alive and upgrade: a forwarder must
				     drop that field too */
#define HTTP_F_ABSOLUTE_FORM 0x20U /* request-target in absolute-form: host
				      is its authority, above any Host */

struct http_request {
	enum http_method method;
	struct str method_str; /* the method token as received */
	struct str target;     /* request-target as received */
	struct str path;       /* origin-form: target up to '?' (absolute-form:
				  the path part after the authority) */
	struct str query;      /* after '?', without it; empty if none */
	struct str host;       /* Host header value (or authority of an
				  absolute-form target); empty if none */
	unsigned version;      /* minor version: 0 for HTTP/1.0, 1 for 1.1 */
	unsigned flags;	       /* HTTP_F_* */
	enum http_framing framing;   /* NONE, LENGTH or CHUNKED */
	uint64_t content_length;     /* valid when framing == LENGTH */
	size_t head_len;	     /* bytes of the head incl. final CRLF and
					any empty lines skipped before it */
	const char *error;	     /* after a refusal: a short reason for the
					log (static), or NULL */
	unsigned nheaders;
	struct http_header headers[HTTP_MAX_HEADERS];
};

struct http_response {
	unsigned status;      /* 100..599 */
	struct str reason;    /* reason phrase as received, may be empty */
	unsigned version;     /* minor version */
	unsigned flags;	      /* HTTP_F_* */
	enum http_framing framing;
	uint64_t content_length; /* valid when framing == LENGTH */
	size_t head_len;
	const char *error;	/* after a refusal: a short reason (static),
				   or NULL */
	struct str status_line; /* the whole status line without CRLF */
	unsigned nheaders;
	struct http_header headers[HTTP_MAX_HEADERS];
};

/*
 * Parses a request head from buf[0..len). Returns >0 (head_len) when the head
 * is complete and valid, 0 when more bytes are needed (and none of the limits
 * is exceeded yet), <0 on error with *status set to the answer: 400 (syntax,
 * whitespace before colon, obs-fold, CTLs in values, bad or conflicting
 * Content-Length, Content-Length with Transfer-Encoding, missing Host in 1.1,
 * several Host headers, a Connection option that is no token, a Connection
 * header naming Content-Length, Transfer-Encoding or Host), 414 (request
 * line too long), 431 (head or header count too large), 501
 * (Transfer-Encoding other than exactly "chunked"), 505 (version other than
 * HTTP/1.0 and HTTP/1.1). req->error then names some of these for the log.
 */
int http_request_parse(const char *buf, size_t len,
		       const struct http_limits *lim, struct http_request *req,
		       unsigned *status);

/*
 * Moves every view of req from the head at from to an identical copy of it
 * at to (req->head_len bytes), so that the parse outlives the buffer it was
 * made from without being made again.
 */
void http_request_rebase(struct http_request *req, const char *from,
			 const char *to);

/*
 * Parses a response head to a request whose method was req_method (a response
 * to HEAD, 1xx, 204 and 304 have no body; no length and no chunked means
 * HTTP_BODY_EOF). Returns as http_request_parse; on error *status is 502.
 * A Connection header naming Content-Length or Transfer-Encoding is an error
 * here too: the body would reach the client unframed.
 */
int http_response_parse(const char *buf, size_t len,
			const struct http_limits *lim,
			enum http_method req_method, struct http_response *resp,
			unsigned *status);

/* Streaming state of one chunked body; zero it before the first call. */
struct http_chunked {
	unsigned state;	       /* internal */
	uint64_t left;	       /* data bytes left in the current chunk */
	unsigned line_len;     /* bytes of the current size or trailer line */
	unsigned trailer_len;  /* bytes of trailers so far */
	unsigned ntrailers;
};

enum http_chunk_result {
	HTTP_CHUNK_ERROR = -1, /* malformed: bad size, overflow, bad CRLF,
				  trailers too large */
	HTTP_CHUNK_MORE = 0,   /* all input consumed, body not finished */
	HTTP_CHUNK_DATA = 1,   /* *data_off, *data_len: a span of body data */
	HTTP_CHUNK_DONE = 2,   /* last chunk and trailers consumed */
};

/*
 * Walks a chunked body. Consumes bytes from buf[0..len) and sets *consumed.
 * Stops after each span of body data (HTTP_CHUNK_DATA, the span being
 * buf[*data_off .. *data_off + *data_len), inside the consumed bytes), at the
 * end of the body (HTTP_CHUNK_DONE, nothing after it is consumed), or when the
 * input runs out (HTTP_CHUNK_MORE). Chunk extensions are accepted and skipped;
 * trailers are checked like header fields and bounded by lim->max_head.
 * A pass-through caller forwards the consumed bytes as they are; a decoding
 * caller forwards only the data spans.
 */
enum http_chunk_result http_chunked_step(struct http_chunked *c,
					 const struct http_limits *lim,
					 const char *buf, size_t len,
					 size_t *consumed, size_t *data_off,
					 size_t *data_len);

/* True when the header must not be forwarded by a proxy (RFC 9110 7.6.1):
 * Connection, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade,
 * Proxy-Authenticate, Proxy-Authorization, Trailer. */
bool http_header_is_hop_by_hop(struct str name);

/* True when name is one of the comma-separated tokens of a Connection header
 * value (case-insensitive): the sender marked that header hop-by-hop. */
bool http_connection_lists(struct str connection_value, struct str name);

/* True when any Connection header among h[0..n) names name: a second
 * Connection header binds the next hop as much as the first. */
bool http_connection_names(const struct http_header *h, unsigned n,
			   struct str name);

/* Finds the first header called name (case-insensitive) or returns NULL. */
const struct http_header *http_header_find(const struct http_header *h,
					   unsigned n, const char *name);

/* The standard reason phrase of status, "" for unknown codes. */
const char *http_reason(unsigned status);

/* Name of a method for logs. */
const char *http_method_str(enum http_method m);

#endif
