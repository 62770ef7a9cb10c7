#include "daemon/generation.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "core/log.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"
#include "site/sitemap.h"
#include "tls/tls.h"

static char *cas_error(const char *path, const char *url)
{
	char buf[1024];

	snprintf(buf, sizeof(buf), "%s: CAS URL %s cannot be used\n", path,
		 url);
	return strdup(buf);
}

/* Splits a CAS URL (http[s]://host[:port][/...]) into its target. The config
 * reader has checked the shape already; this only takes it apart. */
static int cas_parse(const char *url, struct cas_target *t)
{
	const char *h, *end, *colon;
	size_t hl;
	long port;

	if (strncmp(url, "https://", 8) == 0) {
		t->tls = true;
		h = url + 8;
		t->port = 443;
	} else if (strncmp(url, "http://", 7) == 0) {
		h = url + 7;
		t->port = 80;
	} else {
		return -1;
	}
	end = h + strcspn(h, "/?#");
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));

		if (rb == NULL)
			return -1;
		hl = (size_t)(rb - h - 1);
		if (hl == 0 || hl >= sizeof(t->host))
			return -1;
		memcpy(t->host, h + 1, hl);
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		hl = (size_t)((colon ? colon : end) - h);
		if (hl == 0 || hl >= sizeof(t->host))
			return -1;
		memcpy(t->host, h, hl);
	}
	t->host[hl] = '\0';
	if (colon != NULL) {
		char *pe;

		port = strtol(colon + 1, &pe, 10);
		if (pe != end || port <= 0 || port > 65535)
			return -1;
		t->port = (uint16_t)port;
	}
	return 0;
}

/* Resolves a target's addresses once, at load time. A name that does not
 * resolve is not fatal: the target simply has no member until it does. */
static void cas_resolve(struct cas_target *t)
{
	struct addrinfo hints = {0}, *res, *ai;
	char port[8];

	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", t->port);
	if (getaddrinfo(t->host, port, &hints, &res) != 0) {
		log_warnx("CAS %s: %s does not resolve", t->url, t->host);
		return;
	}
	for (ai = res; ai != NULL && t->naddr < GEN_MAX_ADDRS;
	     ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(t->addr[0]))
			continue;
		memcpy(&t->addr[t->naddr], ai->ai_addr, ai->ai_addrlen);
		t->addrlen[t->naddr++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
}

static int build_sites(struct proxy *p, struct gen *g, char **err)
{
	const struct conf *c = g->conf;

	g->sites = calloc(c->n_sites, sizeof(*g->sites));
	if (g->sites == NULL)
		return -1;
	for (unsigned i = 0; i < c->n_sites; i++) {
		const struct conf_site *cs = &c->sites[i];
		struct gen_site *gs = &g->sites[i];

		gs->proxy_path = str_from(cs->proxy_path);
		gs->cas = calloc(cs->n_cas, sizeof(*gs->cas));
		if (gs->cas == NULL)
			return -1;
		gs->n_cas = cs->n_cas;
		for (unsigned j = 0; j < cs->n_cas; j++) {
			struct cas_target *t = &gs->cas[j];

			t->url = strdup(cs->cas[j]);
			if (t->url == NULL || cas_parse(t->url, t) != 0) {
				*err = cas_error(c->path, cs->cas[j]);
				return -1;
			}
			t->id = p ? proxy_cas_id(p, t->url) : 0;
			cas_resolve(t);
		}
		if (strcmp(cs->name, c->site) == 0)
			g->own_site = (int)i;
	}
	return 0;
}

struct gen *generation_build(struct proxy *p, const char *path, unsigned id,
			     char **err)
{
	struct gen *g = calloc(1, sizeof(*g));

	*err = NULL;
	if (g == NULL) {
		*err = strdup("out of memory\n");
		return NULL;
	}
	atomic_init(&g->refs, 1);
	g->id = id;
	if (conf_load(path, &g->conf, err) != 0)
		goto fail;
	if (g->conf->sitemap_file != NULL) {
		g->map = sitemap_load(g->conf, g->conf->sitemap_file, err);
		if (g->map == NULL)
			goto fail;
	}
	g->tls = tls_server_new(g->conf, err);
	if (g->tls == NULL)
		goto fail;
	g->client_ctx = tls_client_ctx_new(g->conf->upstream_ca_file, err);
	if (g->client_ctx == NULL)
		goto fail;
	if (build_sites(p, g, err) != 0)
		goto fail;
	if (gethostname(g->hostname, sizeof(g->hostname)) != 0)
		str_copy(g->hostname, sizeof(g->hostname), STR_LIT("easfront"));
	return g;
fail:
	if (*err == NULL)
		*err = strdup("out of memory\n");
	gen_release(g);
	return NULL;
}
