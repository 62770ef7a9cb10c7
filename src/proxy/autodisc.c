#include "proxy/autodisc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "conf/conf.h"
#include "core/log.h"
#include "eas/autodiscover.h"
#include "eas/eas.h"
#include "proxy/dir.h"
#include "proxy/gen.h"
#include "proxy/routing.h"
#include "proxy/session.h"
#include "proxy/worker.h"
#include "site/route.h"
#include "site/sitemap.h"

struct autodisc {
	struct evbuffer *body; /* owned: the body so far, de-chunked */
	char user[256];	       /* from the credentials; "" when none */
	char host[256];	       /* the host the client used */
};

bool autodisc_wanted(const struct session *s, const struct http_request *req,
		     const struct eas_facts *f)
{
	return f->path == EAS_PATH_AUTODISCOVER &&
	       req->method == HTTP_M_POST &&
	       s->g->conf->autodiscover == CONF_AUTODISCOVER_ANSWER;
}

void autodisc_free(struct autodisc *ad)
{
	if (ad == NULL)
		return;
	if (ad->body != NULL)
		evbuffer_free(ad->body);
	free(ad);
}

static void drop(struct session *s)
{
	autodisc_free(s->txn.ad);
	s->txn.ad = NULL;
}

static void too_large(struct session *s)
{
	s->txn.log.decision = "reject";
	s->txn.log.reason = "body-too-large";
	session_respond_error(s, 413, TERM_LOCAL);
}

void autodisc_begin(struct session *s, const struct http_request *req,
		    const struct eas_facts *f)
{
	struct autodisc *ad;

	if (req->framing == HTTP_BODY_LENGTH &&
	    req->content_length > AD_MAX_BODY) {
		too_large(s);
		return;
	}
	ad = calloc(1, sizeof(*ad));
	if (ad == NULL || (ad->body = evbuffer_new()) == NULL ||
	    !txn_keep_head(s, req, f)) {
		autodisc_free(ad);
		session_respond_error(s, 503, TERM_LOCAL);
		return;
	}
	if (f->user_src != EAS_USER_NONE && f->user_src != EAS_USER_QUERY)
		str_copy(ad->user, sizeof(ad->user), str_from(f->user));
	str_copy(ad->host, sizeof(ad->host), str_from(f->host));
	s->txn.ad = ad;
	s->client.body.dechunk = true;
	s->txn.log.decision = "local";
	s->txn.log.reason = "autodiscover";
	txn_set_state(s, TXN_COLLECT);
}

/* Routes the Autodiscover request of user, with the directory's word like
 * any request. Returns false while the directory is asked: autodisc_finish
 * runs again with its answer. */
static bool route_user(struct session *s, const char *user,
		       struct route_decision *d)
{
	struct route_input in;
	struct routing_scratch sc;

	/* Autodiscover carries no EAS version: the decision names the site. */
	routing_input(&in, s->g, user, 0, s->txn.ad->host, &sc);
	in.autodiscover = true;
	if (routing_needs_directory(&in) &&
	    !dir_lookup(s, in.user, &in.dir, &in.dir_database))
		return false;
	route_decide(&in, d);
	s->txn.log.site = d->site;
	return true;
}

static void respond_xml(struct session *s, char *xml)
{
	if (xml == NULL) {
		session_respond_error(s, 503, TERM_LOCAL);
		return;
	}
	session_respond(s, 200,
			"Content-Type: text/xml; charset=utf-8\r\n", xml);
	free(xml);
}

/* Sends the collected request on, as a proxied request of the site d names. */
static void proxy_collected(struct session *s, const struct route_decision *d)
{
	if (d->action == ROUTE_REJECT) {
		session_respond_error(s, d->status, TERM_LOCAL);
		return;
	}
	s->txn.log.decision = "proxy";
	s->txn.log.reason = "autodiscover-proxied";
	/* The head was parsed once; the views live in the kept copy. */
	relay_start_with_body(s, &s->txn.head->req, d->site, s->txn.ad->body);
}

void autodisc_finish(struct session *s)
{
	struct ad_request r;
	struct route_decision d;
	size_t len = evbuffer_get_length(s->txn.ad->body);
	const char *body = (const char *)evbuffer_pullup(s->txn.ad->body, -1);
	const char *url;

	/* pullup fails only when memory does: then there is nothing to read */
	ad_request_parse(body ? body : "", body ? len : 0, &r);
	if (!route_user(s, s->txn.ad->user[0] ? s->txn.ad->user : r.email,
			&d))
		return;
	str_copy(s->txn.log.user, sizeof(s->txn.log.user),
		 str_from(s->txn.ad->user[0] ? s->txn.ad->user : r.email));
	if (r.schema == AD_SCHEMA_MOBILESYNC && r.error_code == 0 &&
	    d.action != ROUTE_REJECT && (url = route_answer_url(s->g->conf, &d)) != NULL) {
		respond_xml(s, ad_response_settings(r.email[0] ? r.email
							       : s->txn.ad->user,
						    NULL, url, &len));
	} else if (r.error_code != 0 && r.schema != AD_SCHEMA_OUTLOOK) {
		s->txn.log.reason = "autodiscover-error";
		respond_xml(s, ad_response_error(r.error_code,
						 r.error_code == AD_ERR_NO_SCHEMA
							 ? "No provider for that response schema"
							 : "Invalid request",
						 NULL, &len));
	} else {
		proxy_collected(s, &d);
	}
	drop(s);
}

void autodisc_read(struct session *s)
{
	if (relay_body_into(&s->client, s->txn.ad->body) != 0) {
		s->flags |= SESSION_F_CLOSE;
		drop(s);
		session_respond_error(s, 400, TERM_CLIENT_BODY);
		return;
	}
	if (evbuffer_get_length(s->txn.ad->body) > AD_MAX_BODY) {
		s->flags |= SESSION_F_CLOSE;
		s->client.body.done = true;
		drop(s);
		too_large(s);
		return;
	}
	if (s->client.body.done)
		autodisc_finish(s);
}
