#include "proxy/routing.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/queue.h>

#include "conf/conf.h"
#include "core/log.h"
#include "proxy/dir.h"
#include "proxy/gen.h"
#include "site/sitemap.h"

void routing_input(struct route_input *in, const struct gen *g,
                   const char *user, unsigned version, const char *host,
                   struct routing_scratch *sc)
{
	const struct conf *c = g->conf;

	*in =
	    (struct route_input){.conf = c, .map = g->map, .version = version};
	if (sitemap_normalise(c, user, sc->key, sizeof(sc->key)) != 0)
		in->user = sc->key;
	if (host != NULL && host[0] != '\0')
		in->host = host;
	/* route_input wants all n_sites flags or none: past the bound, every
	 * site counts as up rather than some being misread. */
	if (c->n_sites <= ROUTING_MAX_SITES) {
		for (unsigned i = 0; i < c->n_sites; i++)
			sc->down[i] = gen_site_down(g, (int)i);
		in->site_down = sc->down;
	}
}

bool routing_wants_directory(const struct route_input *in)
{
	return in->conf->ldap != NULL && in->user != NULL &&
	       in->user[0] != '\0';
}

bool routing_needs_directory(const struct route_input *in)
{
	struct sitemap_match m;

	if (!routing_wants_directory(in))
		return false;
	sitemap_lookup(in->map, in->user, &m);
	return m.how != SITEMAP_USER_SITE && m.how != SITEMAP_USER_DB;
}

enum route_dir routing_dir_of(enum ldap_answer a)
{
	switch (a) {
	case LDAP_ANS_FOUND:
		return ROUTE_DIR_FOUND;
	case LDAP_ANS_STALE_FOUND:
		return ROUTE_DIR_STALE;
	case LDAP_ANS_NO_USER:
	case LDAP_ANS_STALE_NO_USER:
		return ROUTE_DIR_NO_USER;
	case LDAP_ANS_ERROR:
		break;
	}
	return ROUTE_DIR_DOWN;
}

/* ---- the directory from a loop outside the workers ---- */

/* One routing_dir_ask() waiting for its answer. */
struct routing_ask {
	struct routing_dir *rd;
	routing_dir_cb cb;
	void *arg;
	TAILQ_ENTRY(routing_ask) link;
};

struct routing_dir {
	struct event_base *base; /* not owned */
	struct proxy *p;         /* not owned: its cache is the one asked */
	struct ldap_client *lc;  /* owned; NULL: none could be made */
	unsigned gen_id;         /* the generation lc was made for; 0: none */
	TAILQ_HEAD(, routing_ask) asks; /* owned: waiting for lc */
};

struct routing_dir *routing_dir_new(struct event_base *base, struct proxy *p)
{
	struct routing_dir *rd = calloc(1, sizeof(*rd));

	if (rd == NULL)
		return NULL;
	rd->base = base;
	rd->p = p;
	TAILQ_INIT(&rd->asks);
	return rd;
}

/* Drops the client; the asks it held get "directory down", as sessions do
 * when their worker drops its client. */
static void drop_client(struct routing_dir *rd)
{
	struct routing_ask *a;

	ldap_client_free(rd->lc);
	rd->lc = NULL;
	rd->gen_id = 0;
	while ((a = TAILQ_FIRST(&rd->asks)) != NULL) {
		TAILQ_REMOVE(&rd->asks, a, link);
		a->cb(ROUTE_DIR_DOWN, NULL, a->arg);
		free(a);
	}
}

void routing_dir_free(struct routing_dir *rd)
{
	if (rd == NULL)
		return;
	drop_client(rd);
	free(rd);
}

/* A client for g's sitemap.ldap, made once per generation (a reload may
 * change where and how to ask), on the shared cache. */
static void sync_client(struct routing_dir *rd, const struct gen *g)
{
	struct ldap_cache *cache = dir_cache(rd->p);
	struct ldap_src_conf sc;
	char *err = NULL;

	if (rd->gen_id == g->id)
		return;
	drop_client(rd);
	rd->gen_id = g->id;
	if (cache == NULL)
		return;
	dir_src_conf(g->conf->ldap, &sc);
	rd->lc = ldap_client_new(rd->base, &sc, cache, &err);
	if (rd->lc == NULL) {
		log_warnx("sitemap.ldap (admin): %s", err ? err : "no client");
		free(err);
	}
}

static void ask_answered(enum ldap_answer a, const char *db, void *arg)
{
	struct routing_ask *ask = arg;

	TAILQ_REMOVE(&ask->rd->asks, ask, link);
	ask->cb(routing_dir_of(a), db, ask->arg);
	free(ask);
}

int routing_dir_ask(struct routing_dir *rd, const struct gen *g,
                    const char *key, routing_dir_cb cb, void *arg,
                    enum route_dir *dir, char *db, size_t cap)
{
	struct routing_ask *ask;
	struct ldap_reply now;
	int r = -1;

	*dir = g->conf->ldap != NULL ? ROUTE_DIR_DOWN : ROUTE_DIR_NONE;
	snprintf(db, cap, "%s", "");
	if (g->conf->ldap == NULL)
		return 1;
	sync_client(rd, g);
	ask = rd->lc != NULL ? calloc(1, sizeof(*ask)) : NULL;
	if (ask != NULL)
		r = ldap_lookup(rd->lc, key, ask_answered, ask, NULL, &now);
	if (r == 0) {
		ask->rd = rd;
		ask->cb = cb;
		ask->arg = arg;
		TAILQ_INSERT_TAIL(&rd->asks, ask, link);
		return 0;
	}
	free(ask);
	if (r == 1) {
		*dir = routing_dir_of(now.answer);
		snprintf(db, cap, "%s", now.database);
	}
	return 1;
}
