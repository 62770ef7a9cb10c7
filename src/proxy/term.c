#include "proxy/term.h"

static const struct {
	char code[3];
	const char *meaning;
} terms[TERM_COUNT] = {
    [TERM_UNSET] = {"--", "not ended by anything worth a code"},
    [TERM_OK] = {"--", "completed: answered and written"},
    [TERM_CLIENT_GONE] = {"CD", "the client closed or broke the connection"},
    [TERM_CLIENT_BODY] = {"CR", "the client sent a body easfront cannot "
				"frame (a bad chunk)"},
    [TERM_LOCAL] = {"PR", "easfront refused the request or answered it "
			  "with an error of its own"},
    [TERM_LIMIT] = {"PL", "the connection was beyond a connection cap"},
    [TERM_CAS_CONNECT] = {"SC", "no CAS of the site (nor of its fallback) "
				"took the connection"},
    [TERM_CAS_HEAD] = {"SH", "the CAS closed, or sent no valid response "
			     "head"},
    [TERM_CAS_DATA] = {"SD", "the CAS broke off the response body"},
    [TERM_CAS_IDLE] = {"SI", "a pinned (NTLM) CAS connection spoke or "
			     "closed between requests"},
    [TERM_CLIENT_T_HEAD] = {"cR", "the request head did not arrive within "
				  "timeouts.client_header"},
    [TERM_CLIENT_T_DATA] = {"cD", "the client stalled its upload, or its "
				  "reading, past timeouts.client_body"},
    [TERM_CLIENT_T_IDLE] = {"cI", "idle or handshake timeout"},
    [TERM_CLIENT_T_WRITE] = {"cW", "the client stopped reading the answer"},
    [TERM_CAS_T_CONNECT] = {"sC", "every connect timed out "
				  "(timeouts.upstream_connect)"},
    [TERM_CAS_T_HEAD] = {"sH", "the CAS did not answer within "
			       "timeouts.upstream_response (long_poll for a "
			       "held Ping or Sync)"},
    [TERM_CAS_T_DATA] = {"sD", "the CAS stalled its response body"},
    [TERM_STOP] = {"KS", "easfront stopped with the request open"},
    [TERM_DRAIN] = {"KD", "the drain deadline (timeouts.drain) passed with "
			  "the request open"},
};

const char *term_code(enum term t)
{
	return (unsigned)t < TERM_COUNT ? terms[t].code : "--";
}

const char *term_meaning(enum term t)
{
	return (unsigned)t < TERM_COUNT ? terms[t].meaning : "";
}
