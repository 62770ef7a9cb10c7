/*
 * Responses easfront writes itself: errors, the 451 redirect, the health
 * page, the guard's answers. Short, always with Content-Length, never 500,
 * never X-MS-ASThrottle but on the throttle's own 503 (screen.c), never
 * cached, never sniffed.
 */
#include "proxy/session.h"

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include <event2/buffer.h>

#include "core/log.h"
#include "proxy/gen.h"
#include "upstream/upstream.h"
#include "proxy/worker.h"

/* A request body nobody will read: drop it and keep the connection, unless
 * the client waits for 100 Continue (it may never send the body) or the
 * body's end cannot be found. */
static void settle_request_body(struct session *s, bool expect_100)
{
	if (s->client.body.done)
		return;
	if (expect_100 || (s->txn.flags & TXN_F_REQ_SENT))
		s->flags |= SESSION_F_CLOSE;
	else
		s->txn.flags |= TXN_F_DISCARD;
}

/* Nothing easfront answers itself may be kept by a cache on the way; the
 * 451 keeps the exact header Exchange sends with it (EAS.md 3). */
static const char *cache_control(unsigned status)
{
	return status == 451 ? "private" : "private, no-store";
}

/* The header lines every answer of easfront's own carries. */
static void own_headers(const struct session *s, unsigned status, char *out,
			size_t cap)
{
	const struct gen *g = s->g != NULL ? s->g : s->w->gen;
	int n = snprintf(out, cap,
			 "Cache-Control: %s\r\n"
			 "X-Content-Type-Options: nosniff\r\n",
			 cache_control(status));

	if (n > 0 && (size_t)n < cap && g != NULL && g->hsts[0] != '\0')
		snprintf(out + n, cap - (size_t)n,
			 "Strict-Transport-Security: %s\r\n", g->hsts);
}

void session_respond(struct session *s, unsigned status, const char *extra,
		     const char *body)
{
	session_respond_bytes(s, status, extra, body, body ? strlen(body) : 0);
}

void session_respond_bytes(struct session *s, unsigned status,
			   const char *extra, const void *body, size_t blen)
{
	char head[2048], own[160];
	int n;

	/* Whatever the CAS was doing for this request is over. */
	if (s->uc != NULL && !(s->flags & SESSION_F_PINNED)) {
		upstream_free(s->uc);
		s->uc = NULL;
		s->up.conn = NULL;
	}
	settle_request_body(s, false);
	/* Closing after this answer: the rest of the request is not read. */
	if (s->flags & SESSION_F_CLOSE) {
		s->client.body.done = true;
		s->txn.flags &= ~TXN_F_DISCARD;
	}
	own_headers(s, status, own, sizeof(own));
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %u %s\r\nContent-Length: %zu\r\n%s%s%s\r\n",
		     status, http_reason(status), blen, own, extra ? extra : "",
		     (s->flags & SESSION_F_CLOSE) ? "Connection: close\r\n"
						  : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %u %s\r\nContent-Length: 0\r\n%s"
			     "Connection: close\r\n\r\n",
			     status, http_reason(status), own);
	s->txn.log.status = status;
	s->txn.flags |= TXN_F_OWN;
	if (s->txn.log.term == TERM_UNSET)
		s->txn.log.term = status >= 400 ? TERM_LOCAL : TERM_OK;
	conn_write(s->client.conn, head, (size_t)n);
	s->txn.log.bytes_out += (size_t)n;
	if (body != NULL && !(s->txn.flags & TXN_F_HEAD_REQ)) {
		conn_write(s->client.conn, body, blen);
		s->txn.log.bytes_out += blen;
	}
	txn_set_state(s, TXN_LOCAL);
	conn_enable(s->client.conn, EV_READ | EV_WRITE);
}

/* The access log's reason for an answer easfront made: what an operator
 * greps for. */
static const char *error_reason(unsigned status)
{
	switch (status) {
	case 400: return "bad-request";
	case 404: return "not-served";
	case 405: return "method-not-allowed";
	case 408: return "client-timeout";
	case 413: return "body-too-large";
	case 414: return "uri-too-long";
	case 421: return "misdirected";
	case 431: return "headers-too-large";
	case 501: return "not-implemented";
	case 502: return "cas-failed";
	case 503: return "no-cas";
	case 504: return "cas-timeout";
	case 505: return "version";
	default: return "error";
	}
}

void session_respond_error(struct session *s, unsigned status,
			   enum term term)
{
	char body[64];
	const char *extra = "Content-Type: text/plain\r\n";

	if (s->txn.flags & TXN_F_RESP_HEAD) {
		session_close(s, term);
		return;
	}
	if (s->txn.log.decision == NULL)
		s->txn.log.decision = "reject";
	if (s->txn.log.reason == NULL)
		s->txn.log.reason = error_reason(status);
	s->txn.log.term = term;
	/* A retry helps only when the trouble is ours or the CAS's. */
	if (status == 502 || status == 503 || status == 504)
		extra = "Content-Type: text/plain\r\nRetry-After: 30\r\n";
	if (status == 400 || status == 408 || status == 414 ||
	    status == 431 || status == 501 || status == 505)
		s->flags |= SESSION_F_CLOSE;
	snprintf(body, sizeof(body), "%u %s\n", status, http_reason(status));
	session_respond(s, status, extra, body);
}
