#include "daemon/generation.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "conf/conf.h"
#include "core/log.h"
#include "upstream/cas.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"
#include "site/sitemap.h"
#include "tls/tls.h"

static unsigned char random_key[32];

static void random_process_key(void)
{
	if (RAND_bytes(random_key, sizeof(random_key)) != 1)
		log_warnx("no random bytes for the log hash key");
}

static const unsigned char *process_key_get(void)
{
	return random_key;
}

static char *cas_error(const char *path, const char *url)
{
	char buf[1024];

	snprintf(buf, sizeof(buf), "%s: CAS URL %s cannot be used\n", path,
		 url);
	return strdup(buf);
}

/* A site's CAS URL as a target; with a proxy, tied to the process-wide
 * entry that carries its addresses and health. */
static int cas_target_init(struct proxy *p, struct cas_target *t,
			   const char *url)
{
	struct cas_entry tmp = {0};

	t->url = strdup(url);
	if (t->url == NULL || cas_url_parse(url, &tmp) != 0)
		return -1;
	t->tls = tmp.tls;
	t->port = tmp.port;
	memcpy(t->host, tmp.host, sizeof(t->host));
	if (p == NULL)
		return 0;
	t->entry = proxy_cas(p, url);
	if (t->entry == NULL)
		return -1;
	t->id = t->entry->id;
	return 0;
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

			if (cas_target_init(p, t, cs->cas[j]) != 0) {
				*err = cas_error(c->path, cs->cas[j]);
				return -1;
			}
		}
		if (strcmp(cs->name, c->site) == 0)
			g->own_site = (int)i;
	}
	return 0;
}

/* The hash key of log.hash_identities: the operator's file, or one random
 * key for the life of the process so hashes stay comparable across
 * reloads. */
static int load_log_key(struct gen *g, char **err)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const char *path = g->conf->log_hash_key_file;
	char buf[1024];
	FILE *f;
	size_t n;

	if (!g->conf->log_hash_identities)
		return 0;
	if (path == NULL) {
		pthread_once(&once, random_process_key);
		memcpy(g->log_key, process_key_get(), sizeof(g->log_key));
		g->log_key_len = sizeof(g->log_key);
		return 0;
	}
	f = fopen(path, "rb");
	n = f ? fread(buf, 1, sizeof(buf), f) : 0;
	if (f != NULL)
		fclose(f);
	if (n < 16) {
		snprintf(buf, sizeof(buf),
			 "%s: log.hash_key_file %s: unreadable or shorter than "
			 "16 bytes\n",
			 g->conf->path, path);
		*err = strdup(buf);
		return -1;
	}
	/* Any length of secret becomes a 32-byte key. */
	SHA256((unsigned char *)buf, n, g->log_key);
	g->log_key_len = sizeof(g->log_key);
	explicit_bzero(buf, sizeof(buf));
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
	if (build_sites(p, g, err) != 0 || load_log_key(g, err) != 0)
		goto fail;
	if (gethostname(g->hostname, sizeof(g->hostname)) != 0)
		str_copy(g->hostname, sizeof(g->hostname), STR_LIT("easfront"));
	if (g->conf->tls_hsts > 0)
		snprintf(g->hsts, sizeof(g->hsts), "max-age=%u",
			 g->conf->tls_hsts);
	return g;
fail:
	if (*err == NULL)
		*err = strdup("out of memory\n");
	gen_release(g);
	return NULL;
}
