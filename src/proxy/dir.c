#include "proxy/dir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "conf/conf.h"
#include "core/log.h"
#include "ldap/ldap_src.h"
#include "proxy/gen.h"
#include "proxy/routing.h"
#include "proxy/session.h"
#include "proxy/worker.h"

/* The library's view of sitemap.ldap; strings point into c (copied by the
 * client). */
void dir_src_conf(const struct conf_ldap *c, struct ldap_src_conf *s)
{
	memset(s, 0, sizeof(*s));
	s->uris = c->uris;
	s->n_uris = c->n_uris;
	s->starttls = c->starttls;
	s->ca_file = c->ca_file;
	s->bind_dn = c->bind_dn;
	s->password_file = c->password_file;
	s->sasl_external = c->sasl_external;
	s->base = c->base;
	s->filter = c->filter;
	s->attribute = c->attribute;
	s->timeout_ms = c->timeout_ms;
	s->cache_ttl = c->cache_ttl;
	s->negative_ttl = c->negative_ttl;
	s->cache_max = c->cache_size;
	s->max_inflight = c->max_inflight;
	s->cloud = c->cloud_site != NULL;
	s->cloud_domains = c->cloud_domains;
	s->n_cloud_domains = c->n_cloud_domains;
}

void dir_publish(struct proxy *p, const struct gen *g)
{
	const struct conf_ldap *l = g->conf->ldap;

	if (l == NULL)
		return;
	if (p->ldap_cache == NULL)
		p->ldap_cache = ldap_cache_new(l->cache_size, l->cache_ttl,
					       l->negative_ttl);
	else
		ldap_cache_set_ttl(p->ldap_cache, l->cache_ttl,
				   l->negative_ttl);
}

struct ldap_cache *dir_cache(struct proxy *p)
{
	return p->ldap_cache;
}

static bool same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	       (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Whether a reload changed what the client connects to and asks. */
static bool ldap_changed(const struct conf_ldap *a, const struct conf_ldap *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	if (a->n_uris != b->n_uris || a->starttls != b->starttls ||
	    a->sasl_external != b->sasl_external ||
	    a->timeout_ms != b->timeout_ms ||
	    a->max_inflight != b->max_inflight)
		return true;
	for (unsigned i = 0; i < a->n_uris; i++)
		if (strcmp(a->uris[i], b->uris[i]) != 0)
			return true;
	/* What a search asks for, and how an entry is read. */
	if ((a->cloud_site == NULL) != (b->cloud_site == NULL) ||
	    a->n_cloud_domains != b->n_cloud_domains)
		return true;
	for (unsigned i = 0; i < a->n_cloud_domains; i++)
		if (strcmp(a->cloud_domains[i], b->cloud_domains[i]) != 0)
			return true;
	return !same_str(a->ca_file, b->ca_file) ||
	       !same_str(a->bind_dn, b->bind_dn) ||
	       !same_str(a->password_file, b->password_file) ||
	       !same_str(a->base, b->base) ||
	       !same_str(a->filter, b->filter) ||
	       !same_str(a->attribute, b->attribute);
}

/* The answer came: keep it on the request, which is dispatched again from
 * its kept head (txn.c). */
static void answered(enum ldap_answer a, const char *db, void *arg)
{
	struct session *s = arg;

	s->txn.lookup = NULL;
	s->txn.dir_answered = true;
	s->txn.dir_answer = routing_dir_of(a);
	free(s->txn.dir_db);
	s->txn.dir_db = db ? strdup(db) : NULL;
	txn_step(s, TXN_EV_DIRECTORY, 0);
}

void dir_worker_free(struct worker *w)
{
	struct session *s, *next;

	if (w->ldap == NULL)
		return;
	ldap_client_free(w->ldap);
	w->ldap = NULL;
	w->ldap_conf = NULL;
	/* Their lookups died with the client: "directory down" for them. */
	for (s = w->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->txn.lookup != NULL)
			answered(LDAP_ANS_ERROR, NULL, s);
	}
}

void dir_worker_sync(struct worker *w)
{
	const struct conf_ldap *l = w->gen ? w->gen->conf->ldap : NULL;
	struct ldap_src_conf sc;
	char *err = NULL;

	if (w->ldap != NULL && !ldap_changed(w->ldap_conf, l)) {
		w->ldap_conf = l;
		return;
	}
	dir_worker_free(w);
	if (l == NULL || w->p->ldap_cache == NULL)
		return;
	dir_src_conf(l, &sc);
	w->ldap = ldap_client_new(w->base, &sc, w->p->ldap_cache, &err);
	if (w->ldap == NULL) {
		log_warnx("sitemap.ldap: %s", err ? err : "no client");
		free(err);
		return;
	}
	w->ldap_conf = l;
}

/* One blocking lookup for `easfront route`: its own loop, client and
 * cache, gone when it returns. */
struct one_answer {
	struct event_base *base;
	enum ldap_answer a;
	char db[LDAP_SRC_DB_MAX];
};

static void one_answered(enum ldap_answer a, const char *db, void *arg)
{
	struct one_answer *o = arg;

	o->a = a;
	snprintf(o->db, sizeof(o->db), "%s", db ? db : "");
	event_base_loopbreak(o->base);
}

enum route_dir dir_lookup_once(const struct conf_ldap *l, const char *key,
			       char *db, size_t cap)
{
	struct one_answer o = {.a = LDAP_ANS_ERROR};
	struct ldap_src_conf sc;
	struct ldap_cache *cache = ldap_cache_new(4, 1, 1);
	struct ldap_client *lc = NULL;
	struct ldap_reply now;

	o.base = event_base_new();
	dir_src_conf(l, &sc);
	if (o.base != NULL && cache != NULL)
		lc = ldap_client_new(o.base, &sc, cache, NULL);
	if (lc != NULL) {
		int r = ldap_lookup(lc, key, one_answered, &o, NULL, &now);

		if (r == 1) {
			o.a = now.answer;
			snprintf(o.db, sizeof(o.db), "%s", now.database);
		} else if (r == 0) {
			event_base_dispatch(o.base);
		}
	}
	ldap_client_free(lc);
	ldap_cache_free(cache);
	if (o.base != NULL)
		event_base_free(o.base);
	snprintf(db, cap, "%s", o.db);
	return routing_dir_of(o.a);
}

bool dir_lookup(struct session *s, const char *key, enum route_dir *dir,
		const char **db)
{
	struct ldap_reply now;
	int r;

	*dir = ROUTE_DIR_NONE;
	*db = NULL;
	if (s->g->conf->ldap == NULL || key == NULL)
		return true;
	if (s->txn.dir_answered) {
		*dir = s->txn.dir_answer;
		*db = s->txn.dir_db;
		return true;
	}
	if (s->w->ldap == NULL) {
		*dir = ROUTE_DIR_DOWN;
		return true;
	}
	r = ldap_lookup(s->w->ldap, key, answered, s, &s->txn.lookup, &now);
	if (r == 0) {
		/* Nothing more is read until the answer: the caller keeps
		 * the head (txn_keep_head), the body waits in the input. */
		conn_disable(s->client.conn, EV_READ);
		txn_set_state(s, TXN_ROUTE);
		return false;
	}
	s->txn.lookup = NULL;
	if (r < 0) {
		*dir = ROUTE_DIR_DOWN;
		return true;
	}
	s->txn.dir_answered = true;
	s->txn.dir_answer = routing_dir_of(now.answer);
	free(s->txn.dir_db);
	s->txn.dir_db = now.database[0] ? strdup(now.database) : NULL;
	*dir = s->txn.dir_answer;
	*db = s->txn.dir_db;
	return true;
}

void dir_session_end(struct session *s)
{
	if (s->txn.lookup != NULL) {
		ldap_lookup_cancel(s->txn.lookup);
		s->txn.lookup = NULL;
	}
	free(s->txn.dir_db);
	s->txn.dir_db = NULL;
	s->txn.dir_answered = false;
}
