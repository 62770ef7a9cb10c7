/*
 * Termination codes: the access log's `term`, who ended a request and in
 * which phase, in two letters after HAProxy's (doc/configuration.txt 8.5).
 * First letter: C the client, S the CAS, P easfront's own decision, K
 * easfront stopping; lower case (c, s) when a timeout ended it. Second: the
 * phase: R request head or body, C connect, H response head, D data (body
 * either way, or the wait for it), I idle, W writing, L a limit. README.md
 * lists them with the same words as the table in term.c.
 */
#ifndef EF_PROXY_TERM_H
#define EF_PROXY_TERM_H

enum term {
	TERM_UNSET = 0,	      /* nothing ended the request yet */
	TERM_OK,	      /* -- completed: answered and written */
	TERM_CLIENT_GONE,     /* CD the client closed or broke the connection */
	TERM_CLIENT_BODY,     /* CR a request body easfront cannot frame */
	TERM_LOCAL,	      /* PR easfront refused or answered with an error */
	TERM_LIMIT,	      /* PL beyond a connection cap */
	TERM_CAS_CONNECT,     /* SC no CAS took the connection */
	TERM_CAS_HEAD,	      /* SH the CAS closed or sent no valid head */
	TERM_CAS_DATA,	      /* SD the CAS broke the response body */
	TERM_CAS_IDLE,	      /* SI a pinned CAS spoke or closed between
				 requests */
	TERM_CLIENT_T_HEAD,   /* cR the request head did not arrive in time */
	TERM_CLIENT_T_DATA,   /* cD the client stalled its body or reading */
	TERM_CLIENT_T_IDLE,   /* cI idle or handshake timeout */
	TERM_CLIENT_T_WRITE,  /* cW the client stopped reading */
	TERM_CAS_T_CONNECT,   /* sC every connect timed out */
	TERM_CAS_T_HEAD,      /* sH the CAS did not answer in time */
	TERM_CAS_T_DATA,      /* sD the CAS stalled its body */
	TERM_STOP,	      /* KS easfront stopped with the request open */
	TERM_DRAIN,	      /* KD the drain deadline passed with it open */
	TERM_COUNT
};

/* The two letters of t for the log ("--" for TERM_UNSET and TERM_OK). */
const char *term_code(enum term t);

/* What t means, in the words README.md uses. */
const char *term_meaning(enum term t);

#endif
