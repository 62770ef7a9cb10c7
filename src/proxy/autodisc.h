/*
 * `autodiscover: answer`: easfront answers mobilesync Autodiscover requests
 * itself with the external URL of the user's mailbox site, so a phone set up
 * through it never needs a 451. What it cannot answer (Outlook's schema, a
 * site with no external URL anywhere) is proxied like any request, and what
 * is malformed gets Autodiscover's own error document with HTTP 200.
 */
#ifndef EF_PROXY_AUTODISC_H
#define EF_PROXY_AUTODISC_H

#include <stdbool.h>
#include <stddef.h>

struct session;
struct http_request;
struct eas_facts;
struct autodisc;

/* True when this request is one easfront answers itself. */
bool autodisc_wanted(const struct session *s, const struct http_request *req,
		     const struct eas_facts *f);

/* Starts collecting the body of req (its head kept: txn_keep_head); answers
 * 413 at once when the body is announced larger than Autodiscover allows. */
void autodisc_begin(struct session *s, const struct http_request *req,
		    const struct eas_facts *f);

/* Client bytes arrived while collecting. */
void autodisc_read(struct session *s);
/* Decides on the collected request (asking the directory first when it has
 * a word: then it returns and runs again with the answer) and answers it or
 * proxies it. */
void autodisc_finish(struct session *s);

/* Frees a collection; NULL is accepted. */
void autodisc_free(struct autodisc *ad);

#endif
