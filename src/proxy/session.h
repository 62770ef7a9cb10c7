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

#include "eas/eas.h"
#include "http/http.h"
#include "proxy/limits.h"
#include "proxy/term.h"
#include "site/route.h"

struct worker;
struct gen;
struct upconn;
struct ldap_lookup;
struct autodisc;

/*
 * The client connection's phase (the request on it has its own, below).
 * Each phase owns a set of timeouts, set by session_set_state() and nowhere
 * else.
 */
enum session_state {
	SESSION_HANDSHAKE, /* TLS handshake: hs_gen held, g NULL, no request */
	SESSION_IDLE,	   /* between requests: no byte of the next yet; g
			      NULL; only a pinned upstream may be attached */
	SESSION_ACTIVE,	   /* a request is open: txn.state is not TXN_NONE */
	SESSION_CLOSING,   /* flushing the last output, then close; no
			      request, no upstream */
};

/*
 * The phase of the request on a connection (struct txn). A request moves
 * HEAD -> (ROUTE) -> (COLLECT) -> CONNECT -> EXCHANGE, or from any of them
 * but EXCHANGE with a response head sent to LOCAL, and ends in txn_done()
 * or with the connection. txn_set_state() is the only writer; it sets the
 * phase's timeouts and logs the move at debug level.
 */
enum txn_state {
	TXN_NONE = 0, /* no request open */
	TXN_HEAD,     /* a part of a head has arrived: log.t_start set; g
			 NULL; nothing parsed yet */
	TXN_ROUTE,    /* head parsed, g held; lookup set: the directory is
			 asked where the mailbox is; head set (the head kept,
			 dispatched again with the answer); body bytes wait in
			 the client's input (reading paused) */
	TXN_COLLECT,  /* g held; ad and head set: an Autodiscover body is read
			 whole before deciding */
	TXN_CONNECT,  /* g held, site chosen; uc set and connecting; the
			 forwarded head waits in uc's output */
	TXN_EXCHANGE, /* g held; uc attached and connected (until the
			 response ends): request up, response down */
	TXN_LOCAL,    /* g held; no uc but a pinned one: an answer easfront
			 made is being written (the rest of the request body,
			 if any, is read and dropped) */
};

/* Names of the states, for logs. */
const char *session_state_str(enum session_state st);
const char *txn_state_str(enum txn_state st);

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

/* Connection flags (session.flags). */
#define SESSION_F_CLOSE 0x001U	   /* close the client after this response */
#define SESSION_F_PINNED 0x002U	   /* NTLM/Negotiate: upstream owned for life */
#define SESSION_F_HTTP10 0x004U	   /* client spoke HTTP/1.0 */
#define SESSION_F_DEAD 0x040U	   /* closed; freed by the reaper */
#define SESSION_F_OVERLIMIT 0x800U  /* beyond a connection cap: 503 only */

/* Request flags (txn.flags), cleared when a request ends. */
#define TXN_F_HELD 0x001U	  /* request may be held (Ping, Sync) */
#define TXN_F_RESP_HEAD 0x002U	  /* response head was sent to the client */
#define TXN_F_REQ_SENT 0x004U	  /* some request byte went to the CAS */
#define TXN_F_HEAD_REQ 0x008U	  /* request method is HEAD */
#define TXN_F_UP_REUSE 0x010U	  /* upstream may go back to the pool */
#define TXN_F_DISCARD 0x020U	  /* request body is read and dropped */
#define TXN_F_HELD_GAUGE 0x040U  /* counted in the held_requests gauge */
#define TXN_F_UP_POOLED 0x080U	  /* the upstream came from the pool */
#define TXN_F_LOCAL_FAIL 0x100U  /* the last connect failed for want of a
				    local resource, not the CAS's fault */
#define TXN_F_POLL 0x400U	  /* registered as one of its device's
				    long-polls (txn.poll_key, poll_serial) */
#define TXN_F_OWN 0x800U	  /* easfront wrote the answer itself */
#define TXN_F_SHIELD 0x200U	  /* Basic credentials went up: the CAS's
				    answer is fed to the password shield
				    (txn.shield_user/pass) */

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
	unsigned rule_line;   /* the guard.devices rule that blocked it */
	enum term term;	      /* who ended it, in which phase */
	int site;
	unsigned status;
	uint64_t bytes_out;   /* to the client */
	char upstream[64];
};

/* What a request that waits (for the directory, for its Autodiscover body)
 * keeps of its head, so that nothing is parsed twice: the bytes, the parse
 * moved onto them, the facts read from it. */
struct txn_head {
	struct http_request req; /* views into bytes */
	struct eas_facts facts;
	char bytes[];
};

/* One request on the connection: everything that dies with it. */
struct txn {
	enum txn_state state;
	unsigned flags;		 /* TXN_F_* */
	enum http_method method;
	int site;		 /* site whose pool serves this request */
	unsigned tried;		 /* connects tried at this site */
	uint64_t failed_sites;	 /* sites none of whose CAS took this
				    request's connection (bit = index) */
	struct ldap_lookup *lookup; /* the directory lookup waited on */
	char *dir_db;		 /* owned: the directory's database for this
				    request's user, kept for the re-dispatch */
	bool dir_answered;	 /* dir_answer holds the directory's word */
	enum route_dir dir_answer;
	struct autodisc *ad;	 /* owned: an Autodiscover request being
				    collected, or NULL */
	struct txn_head *head;	 /* owned: the head kept while the request
				    waits (ROUTE, COLLECT), else NULL */
	struct evbuffer *replay; /* owned: the head of an idempotent request
				    without a body sent over a pooled
				    connection, kept until the first response
				    byte in case that connection was already
				    dead; else NULL */
	uint64_t poll_key;	 /* TXN_F_POLL: its device's keyed hash */
	uint64_t poll_serial;	 /* TXN_F_POLL: this request, in the process */
	uint8_t shield_user[16]; /* TXN_F_SHIELD: the keyed ids of the */
	uint8_t shield_pass[16]; /* user and of the password it sent */
	struct reqlog log;	 /* its access-log line, written at its end */
};

/* A phone sends the same credentials, device and command again and again
 * on one connection, and the guard's work for a request (the device rules'
 * answer, the password shield's ids, the throttle's bucket names) depends
 * on those alone: it is kept with what it was made from, and reused while
 * a request reads the same under the same generation. The Authorization
 * value is kept as a keyed fingerprint only (never the value: it carries
 * the password); the other facts as they were, which compares faster than
 * hashing them. */
enum {
	SCREEN_M_RULE = 1 << 0, /* rule is known */
	SCREEN_M_IDS = 1 << 1,  /* has_ids (and user, pass) are known */
	SCREEN_M_KEYS = 1 << 2, /* bucket[] is known */
};

struct screen_memo {
	unsigned gen_id;   /* generation whose rules and keys made it;
			      0: none */
	uint64_t auth_fp;  /* siphash24 of the Authorization value */
	uint8_t *facts;    /* owned: the other facts screening read, packed */
	uint16_t facts_len, facts_cap;
	uint8_t known;	   /* SCREEN_M_* */
	bool has_ids;	   /* Basic credentials the shield hashed */
	int rule;	   /* the first device rule met, -1 none */
	uint64_t bucket[3]; /* the throttle's bucket names, by enum
			       bucket_kind (0: that kind has none) */
	uint8_t user[16];
	uint8_t pass[16];
};

struct session {
	struct worker *w;
	struct gen *g; /* held for the current request; NULL between them */
	struct gen *hs_gen; /* held during the TLS handshake: its SNI callback
			       reads that generation's certificates */
	enum session_state state;
	unsigned flags;		 /* SESSION_F_* */
	struct side client;
	struct side up;
	struct upconn *uc;	 /* attached upstream connection, or NULL */
	struct txn txn;		 /* the request, while state is ACTIVE */
	struct screen_memo memo; /* the guard's work for the last request
				    screened on this connection */
	char client_ip[46];
	const char *sni;	 /* owned by the client's SSL */
	struct limits_ticket ticket; /* this connection's place in the caps */
	struct session *prev, *next; /* worker's list of live sessions */
	struct session *dead_next;   /* reaper's list */
};

/* Creates a session for an accepted socket fd (owned from now on). */
void session_accept(struct worker *w, int fd, const struct sockaddr *sa,
		    int salen);
/* Moves the connection to state and sets that state's timeouts. */
void session_set_state(struct session *s, enum session_state state);
/* Moves the request to state (the connection to ACTIVE) and sets that
 * state's timeouts on both sides. */
void txn_set_state(struct session *s, enum txn_state state);
/* Closes both sides at once; the memory is freed later by the reaper, so
 * callers up the stack may still test SESSION_F_DEAD. */
void session_close(struct session *s, enum term term);
/* Closes after a TLS close_notify; for closes easfront chose. */
void session_close_tls(struct session *s);
/* Writes the rest of the output, then closes. */
void session_close_after_flush(struct session *s);
/* Detaches the upstream connection: back to the pool when reuse is set
 * and it is not pinned, closed otherwise. */
void session_drop_upstream(struct session *s, bool reuse);

/* What happens to a request (txn_step). */
enum txn_event {
	TXN_EV_CLIENT_DATA,    /* the client sent bytes */
	TXN_EV_CLIENT_DRAINED, /* the client's output fell below its mark */
	TXN_EV_CLIENT_TIMEOUT, /* a client timeout (CONN_READING/WRITING) */
	TXN_EV_UP_DATA,	       /* the CAS sent bytes */
	TXN_EV_UP_DRAINED,     /* the CAS took what was queued */
	TXN_EV_UP_EVENT,       /* the CAS connected, closed, failed or timed
				  out (CONN_* in what) */
	TXN_EV_DIRECTORY,      /* the directory answered (dir.c) */
};

/* txn.c: the one step function: every event of an open request (or of a
 * connection between requests) goes through it. */
void txn_step(struct session *s, enum txn_event ev, short what);
/* txn.c: the request completed: its end, then the next request or the
 * close. */
void txn_done(struct session *s);
/* txn.c: the one end of a request, wherever it ends: the term (the first
 * one given wins), the access-log line, the counters, the generation
 * released. Nothing to do when no request head was parsed. */
void txn_end(struct session *s, enum term term);
/* txn.c: parses and dispatches the request heads buffered in the client's
 * input (state NONE or HEAD). */
void txn_read_head(struct session *s);
/* txn.c: keeps the head being dispatched (req and f parsed from it in this
 * pass of txn_read_head) in s->txn.head for a request that must wait;
 * nothing when it is kept already. Returns false when out of memory. */
bool txn_keep_head(struct session *s, const struct http_request *req,
		   const struct eas_facts *f);
/* txn.c: frees what a request owns (the kept head, the replay head, the
 * Autodiscover collection, the directory lookup). */
void txn_release(struct session *s);

/* respond.c: a response easfront makes itself. extra: more header lines,
 * each ending in CRLF, or NULL. */
void session_respond(struct session *s, unsigned status, const char *extra,
		     const char *body);
/* respond.c: the error answer for status (502/503/504/4xx/501), short. */
void session_respond_error(struct session *s, unsigned status,
			   enum term term);

/* screen.c: the guard's word on a request about to be routed (user: as
 * routing normalised it, or NULL): device rules, then the password
 * shield. Returns true when it answered the request itself. */
bool screen_request(struct session *s, const struct http_request *req,
		    const struct eas_facts *f, const char *user);
/* screen.c: the CAS answered status to a request whose credentials the
 * shield follows: a 401 counts against the password, a success clears it.
 * Once per request; nothing for other requests. */
void screen_feed(struct session *s, unsigned status);
/* Frees what the connection's screening kept (its memo). */
void screen_free(struct session *s);

/* screen.c: a Ping is now held by the CAS / no longer is: it counts
 * among its device's long-polls (guard.throttle), and one too many ends
 * the oldest, on whichever worker it lives. */
void screen_poll_begin(struct session *s);
void screen_poll_end(struct session *s);
/* screen.c: ends s's held Ping, chosen as the oldest of its device's
 * long-polls, with the answer that makes a client simply re-issue it. */
void screen_poll_supersede(struct session *s);

/* respond.c: session_respond with a body of len bytes (may hold NUL). */
void session_respond_bytes(struct session *s, unsigned status,
			   const char *extra, const void *body, size_t len);

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
/* relay.c: the events of the upstream connection while attached. */
void relay_up_read(struct session *s);
void relay_up_drained(struct session *s);
void relay_up_event(struct session *s, short what);
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
