/*
 * One client connection and, while it has one, its upstream connection: two
 * symmetric sides, each a connection end (conn.h) with its own counters and a pointer to
 * its peer. Internal to proxy/.
 */
#ifndef EF_PROXY_SESSION_H
#define EF_PROXY_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/conn.h"

#include "http/http.h"
#include "proxy/limits.h"
#include "proxy/term.h"
#include "site/route.h"

struct worker;
struct gen;
struct upconn;
struct ldap_lookup;
struct autodisc;
struct eas_facts;

/*
 * The client connection's phase. Each phase owns a set of timeouts, set by
 * session_set_state() and nowhere else.
 */
enum session_state {
	SESSION_HANDSHAKE, /* TLS handshake in progress */
	SESSION_IDLE,	   /* between requests, no byte of the next one yet */
	SESSION_HEAD,	   /* part of a request head has arrived */
	SESSION_CONNECT,   /* request accepted; upstream connect under way */
	SESSION_EXCHANGE,  /* request going up and/or response coming down */
	SESSION_LOCAL,	   /* writing a response easfront made itself */
	SESSION_COLLECT,   /* reading a small request body whole before
			      deciding (Autodiscover answered here) */
	SESSION_ROUTE,	   /* head parsed; waiting for the directory to say
			      where the mailbox is (the head stays in the
			      input and is parsed again then) */
	SESSION_CLOSING,   /* flushing the last output, then close */
};

/* How one message body is delimited and how far it has got. */
struct body {
	enum http_framing framing;
	uint64_t left;		/* LENGTH: bytes still to come */
	struct http_chunked ch; /* CHUNKED: parser state */
	bool dechunk;		/* forward only the data (HTTP/1.0 client) */
	bool done;
};

/* One direction's end: a connection plus what flows from it. */
struct side {
	struct conn *conn; /* owned by the session (upstream: on loan from
			      the pool while attached) */
	struct side *peer;
	struct session *s;
	struct body body; /* the body this side is sending to us */
	uint64_t bytes;	  /* bytes read from this side for this request */
};

/* Sites whose health routing can see (more are always taken as up). */
#define SESSION_MAX_SITES 64

/* Session flags. */
#define SESSION_F_CLOSE 0x001U	   /* close the client after this response */
#define SESSION_F_PINNED 0x002U	   /* NTLM/Negotiate: upstream owned for life */
#define SESSION_F_HTTP10 0x004U	   /* client spoke HTTP/1.0 */
#define SESSION_F_HELD 0x008U	   /* request may be held (Ping, Sync) */
#define SESSION_F_RESP_HEAD 0x010U /* response head was sent to the client */
#define SESSION_F_REQ_SENT 0x020U  /* some request byte went to the CAS */
#define SESSION_F_DEAD 0x040U	   /* closed; freed by the reaper */
#define SESSION_F_HEAD_REQ 0x080U  /* request method is HEAD */
#define SESSION_F_UP_REUSE 0x100U  /* upstream may go back to the pool */
#define SESSION_F_DISCARD 0x200U   /* request body is read and dropped */
#define SESSION_F_HELD_GAUGE 0x400U /* counted in the held_requests gauge */
#define SESSION_F_OVERLIMIT 0x800U  /* beyond a connection cap: 503 only */
#define SESSION_F_UP_POOLED 0x1000U /* the upstream came from the pool */
#define SESSION_F_LOCAL_FAIL 0x2000U /* the last connect failed for want of
					a local resource, not the CAS's fault */

/* What one request leaves for the access log. */
struct reqlog {
	uint64_t t_start;     /* us, monotonic: first byte of the head */
	uint64_t t_head;      /* head parsed */
	uint64_t t_connected; /* upstream connected or taken from the pool */
	uint64_t t_first;     /* first response byte */
	char method[12];
	char cmd[24];
	char user[128];
	char device[48];
	char device_type[32];
	unsigned version;
	unsigned cmd_slot;    /* stats slot of the command */
	const char *decision; /* static strings */
	const char *reason;
	enum term term;	      /* who ended it, in which phase */
	int site;
	unsigned status;
	uint64_t bytes_out;   /* to the client */
	char upstream[64];
};

struct session {
	struct worker *w;
	struct gen *g; /* held for the current request; NULL between them */
	struct gen *hs_gen; /* held during the TLS handshake: its SNI callback
			       reads that generation's certificates */
	enum session_state state;
	unsigned flags;
	struct side client;
	struct side up;
	struct upconn *uc;	 /* attached upstream connection, or NULL */
	struct ldap_lookup *lookup; /* the directory lookup waited on */
	char *dir_db;		 /* owned: the directory's database for this
				    request's user, kept for the re-dispatch */
	bool dir_answered;	 /* dir_answer holds the directory's word */
	enum route_dir dir_answer;
	struct autodisc *ad;	 /* owned: an Autodiscover request being
				    collected, or NULL */
	struct evbuffer *replay; /* owned: the head of an idempotent request
				    without a body sent over a pooled
				    connection, kept until the first response
				    byte in case that connection was already
				    dead; else NULL */
	int site;		 /* site whose pool serves this request */
	unsigned tried;		 /* connects tried at this site for this
				    request */
	uint64_t failed_sites;	 /* sites none of whose CAS took this
				    request's connection (bit = index) */
	enum http_method method;
	char client_ip[46];
	const char *sni;	 /* owned by the client's SSL */
	struct reqlog log;
	struct limits_ticket ticket; /* this connection's place in the caps */
	struct session *prev, *next; /* worker's list of live sessions */
	struct session *dead_next;   /* reaper's list */
};

/* Creates a session for an accepted socket fd (owned from now on). */
void session_accept(struct worker *w, int fd, const struct sockaddr *sa,
		    int salen);
/* Moves to state and sets that state's timeouts on both sides. */
void session_set_state(struct session *s, enum session_state state);
/* Closes both sides at once; the memory is freed later by the reaper, so
 * callers up the stack may still test SESSION_F_DEAD. */
void session_close(struct session *s, enum term term);
/* Closes after a TLS close_notify; for closes easfront chose. */
void session_close_tls(struct session *s);
/* Writes the rest of the output, then closes. */
void session_close_after_flush(struct session *s);
/* Ends the current request: access log, release the generation, then either
 * the next request or close. */
void session_request_done(struct session *s);
/* Parses and dispatches buffered request heads while in IDLE/HEAD. */
void session_read_head(struct session *s);

/* respond.c: a response easfront makes itself. extra: more header lines,
 * each ending in CRLF, or NULL. */
void session_respond(struct session *s, unsigned status, const char *extra,
		     const char *body);
/* respond.c: the error answer for status (502/503/504/4xx/501), short. */
void session_respond_error(struct session *s, unsigned status,
			   enum term term);

/* relay.c: starts proxying the parsed request req to site. */
void relay_start(struct session *s, const struct http_request *req, int site);
/* relay.c: upstream connected (or taken from the pool): send the request. */
void relay_upstream_ready(struct session *s);
/* relay.c: as relay_start, with a body collected whole beforehand (sent
 * with its length, not the client's framing); body is emptied. */
void relay_start_with_body(struct session *s, const struct http_request *req,
			   int site, struct evbuffer *body);
/* relay.c: moves body bytes from side from to its peer per from->body. */
int relay_body(struct side *from);
/* relay.c: the same into out (NULL drops them); chunked bodies arrive
 * de-chunked only when from->body.dechunk is set. */
int relay_body_into(struct side *from, struct evbuffer *out);
/* relay.c: callbacks of the upstream connection while attached. */
void relay_up_read_cb(struct conn *c, void *arg);
void relay_up_write_cb(struct conn *c, void *arg);
void relay_up_event_cb(struct conn *c, short what, void *arg);
/* relay.c: the client's body data while a request is being proxied. */
void relay_client_read(struct session *s);
/* relay.c: the client's output drained below its low-water mark. */
void relay_client_drained(struct session *s);

/* stats: counts the request that just ended. */
void session_count_request(struct session *s);
/* stats: a held request went up / its wait ended. */
void session_held_begin(struct session *s);
void session_held_end(struct session *s);

/* accesslog.c: one line for the request that just ended. */
void accesslog_write(struct session *s);

#endif
