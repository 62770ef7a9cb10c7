#include "proxy/routing.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/queue.h>

#include "conf/conf.h"
#include "core/log.h"
#include "proxy/dir.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"
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
	case LDAP_ANS_CLOUD:
		return ROUTE_DIR_CLOUD;
	case LDAP_ANS_STALE_CLOUD:
		return ROUTE_DIR_CLOUD_STALE;
	case LDAP_ANS_ERROR:
		break;
	}
	return ROUTE_DIR_DOWN;
}

/* ---- the guard's word ---- */

void routing_rules_facts(struct rules_facts *f, const struct route_input *in,
                         const char *device_id, const char *device_type,
                         const char *user_agent, const char *cmd)
{
	/* A field a request lacks is "" to the rules, as on the data path. */
	*f = (struct rules_facts){
	    .device_id = device_id ? device_id : "",
	    .device_type = device_type ? device_type : "",
	    .user_agent = user_agent ? user_agent : "",
	    .user = in->user ? in->user : "",
	    .cmd = cmd ? cmd : "",
	    .version = in->version,
	};
}

/* The device rule f meets first, as screen_request asks it. */
static int guard_devices(const struct gen *g, const struct rules_facts *f,
                         char *out, size_t cap)
{
	const struct conf_device_rule *r;
	int hit;

	if (g->rules == NULL || rules_count(g->rules) == 0)
		return snprintf(out, cap, "guard:    no device rules\n");
	hit = rules_match(g->rules, f);
	if (hit < 0)
		return snprintf(out, cap,
		                "guard:    no device rule matches: "
		                "default allow\n");
	r = rules_rule(g->rules, (unsigned)hit);
	return snprintf(out, cap, "guard:    device rule at %s:%u (%s): %s\n",
	                g->conf->path, r->line,
	                r->action == CONF_RULE_BLOCK ? "block" : "allow",
	                r->action == CONF_RULE_BLOCK
	                    ? "403 device-blocked"
	                    : "passes the device rules");
}

/* The holds h of one user, a line for each kind it has. */
static int guard_hold_lines(const struct guard_hold *h, char *out, size_t cap)
{
	int n = 0, m = 0;

	if (h->held_passwords > 0)
		n = snprintf(out, cap,
		             "guard:    password shield: %u password%s of %s "
		             "held for %u s more (stale-password: those "
		             "passwords get 401 here)\n",
		             h->held_passwords,
		             h->held_passwords == 1 ? "" : "s", h->user,
		             h->password_left);
	if (n < 0)
		return n;
	if (h->user_left > 0)
		m = snprintf(
		    (size_t)n < cap ? out + n : NULL,
		    (size_t)n < cap ? cap - (size_t)n : 0,
		    "guard:    %s is in a guessing hold for %u s more: "
		    "passwords not known good get 401 here\n",
		    h->user, h->user_left);
	return m < 0 ? m : n + m;
}

/* What the password shield holds for user ("": none) now. */
static int guard_shield(const struct gen *g, struct proxy *p, const char *user,
                        char *out, size_t cap)
{
	struct guard_hold h;

	if (!g->conf->guard_passwords_on || g->guard_key == NULL)
		return snprintf(out, cap, "guard:    password shield off\n");
	if (p == NULL)
		return snprintf(out, cap,
		                "guard:    password shield: holds are known "
		                "only to a running easfront\n");
	if (user[0] == '\0')
		return snprintf(out, cap,
		                "guard:    password shield: no user, "
		                "nothing to hold\n");
	if (proxy_guard_holds(p, user, &h, 1) == 0)
		return snprintf(out, cap,
		                "guard:    password shield: no hold for %s\n",
		                user);
	return guard_hold_lines(&h, out, cap);
}

/* One bucket's budget, as the config gives it ("off" for none), and how
 * long it stays empty (wait_us; 0: it has a token, or nobody knows). */
static void budget(char *out, size_t cap, const char *name, bool applies,
		   const struct conf_bucket *b, uint64_t wait_us)
{
	if (b->requests == 0)
		snprintf(out, cap, "%s off", name);
	else if (!applies)
		snprintf(out, cap, "%s none (the request has no %s)", name,
		         name);
	else if (wait_us == 0)
		snprintf(out, cap, "%s %u per %u s", name, b->requests, b->per);
	else
		snprintf(out, cap,
			 "%s %u per %u s (empty now: %llu s to its next token)",
			 name, b->requests, b->per,
			 (unsigned long long)((wait_us + 999999) / 1000000));
}

/* How long value's bucket of kind stays empty in the running easfront
 * (p; NULL: the offline view, which cannot know). */
static uint64_t empty_for(struct proxy *p, enum bucket_kind kind,
			  const char *value)
{
	return p != NULL && value[0] != '\0'
		   ? proxy_guard_throttle_wait(p, kind, value)
		   : 0;
}

/* The throttle's buckets the request would spend a token of. */
static int guard_throttle(const struct gen *g, struct proxy *p,
			  const struct rules_facts *f, char *out, size_t cap)
{
	const struct conf_guard_throttle *t = &g->conf->guard_throttle;
	char d[160], u[160], c[160];

	if (!g->conf->guard_throttle_on)
		return snprintf(out, cap, "guard:    throttle off\n");
	budget(d, sizeof(d), "device", f->device_id[0] != '\0', &t->device,
	       empty_for(p, BUCKET_DEVICE, f->device_id));
	budget(u, sizeof(u), "user", f->user[0] != '\0', &t->user,
	       empty_for(p, BUCKET_USER, f->user));
	/* The client is where the request comes from: not known here. */
	budget(c, sizeof(c), "client", true, &t->client, 0);
	return snprintf(out, cap,
	                "guard:    throttle: %s, %s, %s; an empty bucket gets "
	                "503 (Retry-After %u); %s\n",
	                d, u, c, t->retry_after,
	                g->conf->guard_store != NULL
	                    ? "counted fleet-wide through guard.store"
	                    : "counted by this front end alone");
}

/* Appends what one part of the guard says at out + *n. */
static void explain_part(int (*part)(const struct gen *, const struct rules_facts *,
                                     char *, size_t),
                         const struct gen *g, const struct rules_facts *f,
                         char *out, size_t cap, size_t *n)
{
	int m = part(g, f, *n < cap ? out + *n : NULL,
	             *n < cap ? cap - *n : 0);

	*n += m < 0 ? 0 : (size_t)m;
}

size_t routing_guard_explain(const struct gen *g, struct proxy *p,
                             const struct rules_facts *f, char *out, size_t cap)
{
	size_t n = 0;
	int m;

	explain_part(guard_devices, g, f, out, cap, &n);
	m = guard_shield(g, p, f->user, n < cap ? out + n : NULL,
	                 n < cap ? cap - n : 0);
	n += m < 0 ? 0 : (size_t)m;
	m = guard_throttle(g, p, f, n < cap ? out + n : NULL,
			   n < cap ? cap - n : 0);
	n += m < 0 ? 0 : (size_t)m;
	return n;
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
