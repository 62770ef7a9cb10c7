#include "proxy/autodisc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "conf/conf.h"
#include "core/log.h"
#include "eas/autodiscover.h"
#include "eas/eas.h"
#include "proxy/gen.h"
#include "proxy/session.h"
#include "proxy/worker.h"
#include "site/route.h"
#include "site/sitemap.h"

struct autodisc {
	struct evbuffer *head; /* owned: the request head as received */
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
	if (ad->head != NULL)
		evbuffer_free(ad->head);
	if (ad->body != NULL)
		evbuffer_free(ad->body);
	free(ad);
}

static void drop(struct session *s)
{
	autodisc_free(s->ad);
	s->ad = NULL;
}

static void too_large(struct session *s)
{
	s->log.decision = "reject";
	s->log.reason = "body-too-large";
	session_respond_error(s, 413, TERM_LOCAL);
}

void autodisc_begin(struct session *s, const struct http_request *req,
		    const struct eas_facts *f, const char *head, size_t len)
{
	struct autodisc *ad;

	if (req->framing == HTTP_BODY_LENGTH &&
	    req->content_length > AD_MAX_BODY) {
		too_large(s);
		return;
	}
	ad = calloc(1, sizeof(*ad));
	if (ad == NULL || (ad->head = evbuffer_new()) == NULL ||
	    (ad->body = evbuffer_new()) == NULL ||
	    evbuffer_add(ad->head, head, len) != 0) {
		autodisc_free(ad);
		session_respond_error(s, 503, TERM_LOCAL);
		return;
	}
	if (f->user_src != EAS_USER_NONE && f->user_src != EAS_USER_QUERY)
		str_copy(ad->user, sizeof(ad->user), str_from(f->user));
	str_copy(ad->host, sizeof(ad->host), str_from(f->host));
	s->ad = ad;
	s->client.body.dechunk = true;
	s->log.decision = "local";
	s->log.reason = "autodiscover";
	session_set_state(s, SESSION_COLLECT);
}

static void route_user(struct session *s, const char *user,
		       struct route_decision *d)
{
	struct route_input in = {0};
	unsigned char down[SESSION_MAX_SITES];
	char key[256];

	in.conf = s->g->conf;
	in.map = s->g->map;
	in.user = sitemap_normalise(s->g->conf, user, key, sizeof(key)) ? key
									: NULL;
	in.host = s->ad->host[0] ? s->ad->host : NULL;
	if (s->g->conf->n_sites <= SESSION_MAX_SITES) {
		for (unsigned i = 0; i < s->g->conf->n_sites; i++)
			down[i] = gen_site_down(s->g, (int)i);
		in.site_down = down;
	}
	/* Autodiscover carries no EAS version: the decision names the site. */
	route_decide(&in, d);
	s->log.site = d->site;
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
	struct http_request *req = &s->w->req;
	size_t len = evbuffer_get_length(s->ad->head);
	const char *head = (const char *)evbuffer_pullup(s->ad->head, -1);
	unsigned status = 400;

	if (d->action == ROUTE_REJECT) {
		session_respond_error(s, d->status, TERM_LOCAL);
		return;
	}
	/* The head parsed once already; the views live in ad->head. */
	if (http_request_parse(head, len, &http_default_limits, req, &status) <=
	    0) {
		session_respond_error(s, 400, TERM_LOCAL);
		return;
	}
	s->log.decision = "proxy";
	s->log.reason = "autodiscover-proxied";
	relay_start_with_body(s, req, d->site, s->ad->body);
}

static void finish(struct session *s)
{
	struct ad_request r;
	struct route_decision d;
	size_t len = evbuffer_get_length(s->ad->body);
	const char *body = (const char *)evbuffer_pullup(s->ad->body, -1);
	const char *url;

	/* pullup fails only when memory does: then there is nothing to read */
	ad_request_parse(body ? body : "", body ? len : 0, &r);
	route_user(s, s->ad->user[0] ? s->ad->user : r.email, &d);
	str_copy(s->log.user, sizeof(s->log.user),
		 str_from(s->ad->user[0] ? s->ad->user : r.email));
	if (r.schema == AD_SCHEMA_MOBILESYNC && r.error_code == 0 &&
	    d.action != ROUTE_REJECT && (url = route_answer_url(s->g->conf, &d)) != NULL) {
		respond_xml(s, ad_response_settings(r.email[0] ? r.email
							       : s->ad->user,
						    NULL, url, &len));
	} else if (r.error_code != 0 && r.schema != AD_SCHEMA_OUTLOOK) {
		s->log.reason = "autodiscover-error";
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
	if (relay_body_into(&s->client, s->ad->body) != 0) {
		s->flags |= SESSION_F_CLOSE;
		drop(s);
		session_respond_error(s, 400, TERM_CLIENT_BODY);
		return;
	}
	if (evbuffer_get_length(s->ad->body) > AD_MAX_BODY) {
		s->flags |= SESSION_F_CLOSE;
		s->client.body.done = true;
		drop(s);
		too_large(s);
		return;
	}
	if (s->client.body.done)
		finish(s);
}
