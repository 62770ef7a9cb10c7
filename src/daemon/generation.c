#include "daemon/generation.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "conf/conf.h"
#include "core/log.h"
#include "guard/rules.h"
#include "guard/shield.h"
#include "upstream/cas.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"
#include "site/sitemap.h"
#include "store/store.h"
#include "tls/tls.h"

static unsigned char random_key[32];

static void random_process_key(void)
{
	if (RAND_bytes(random_key, sizeof(random_key)) != 1)
		log_warnx("no random bytes for the log hash key");
}

/* One random key per process, drawn once whichever part asks first. */
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

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
		/* a cloud site has none */
		if (gs->cas == NULL && cs->n_cas > 0)
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
	const char *path = g->conf->log_hash_key_file;
	char buf[1024];
	FILE *f;
	size_t n;

	if (!g->conf->log_hash_identities)
		return 0;
	if (path == NULL) {
		pthread_once(&key_once, random_process_key);
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

/* Reads a secret file whole into buf; returns its length (0 unreadable). */
static size_t read_secret(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	size_t n = f ? fread(buf, 1, cap, f) : 0;

	if (f != NULL)
		fclose(f);
	return n;
}

/* A 32-byte key for one use of guard.key_file (the same file on every
 * front end, so a fleet's ids agree), or of the process's random key
 * when there is none (kept across reloads like the tables it keys):
 * SHA-256 of the use's label and the secret, so two uses never share a
 * key. */
static int derive_guard_key(struct gen *g, const char *label,
			    unsigned char out[SHA256_DIGEST_LENGTH], char **err)
{
	const char *path = g->conf->guard_key_file;
	size_t l = strlen(label), n;
	char buf[4096];

	memcpy(buf, label, l);
	if (path != NULL) {
		n = read_secret(path, buf + l, sizeof(buf) - l);
		if (n < 32) {
			snprintf(buf, sizeof(buf),
				 "%s: guard.key_file %s: unreadable or shorter "
				 "than 32 bytes\n",
				 g->conf->path, path);
			*err = strdup(buf);
			return -1;
		}
	} else {
		pthread_once(&key_once, random_process_key);
		memcpy(buf + l, process_key_get(), 32);
		n = 32;
	}
	SHA256((unsigned char *)buf, l + n, out);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

/* The password shield's HMAC key, when guard.passwords is on. */
static int load_guard_key(struct gen *g, char **err)
{
	unsigned char key[SHA256_DIGEST_LENGTH];

	if (!g->conf->guard_passwords_on)
		return 0;
	if (derive_guard_key(g, "easfront guard.key_file", key, err) != 0)
		return -1;
	SHA256(key, sizeof(key), g->guard_key_fp);
	g->guard_key = shield_key_new(key, sizeof(key));
	explicit_bzero(key, sizeof(key));
	return g->guard_key != NULL ? 0 : -1;
}

/* The throttle's SipHash key of DeviceIds, users and addresses: a fleet
 * sharing a store must name a device's bucket alike. */
static int load_bucket_key(struct gen *g, char **err)
{
	unsigned char key[SHA256_DIGEST_LENGTH];

	if (derive_guard_key(g, "easfront throttle keys", key, err) != 0)
		return -1;
	memcpy(g->bucket_key, key, sizeof(g->bucket_key));
	explicit_bzero(key, sizeof(key));
	return 0;
}

/* guard.store taken apart (conf_load checked its scheme, at its line) and
 * its password read: a reload with a store that cannot be used is
 * refused, and the running one keeps sharing. */
static int load_store(struct gen *g, char **err)
{
	const struct conf *c = g->conf;
	char pw[STORE_PASSWORD_MAX + 1], buf[1024];
	struct store_addr a;
	const char *why = NULL;
	char *perr = NULL;

	if (c->guard_store == NULL)
		return 0;
	if (store_url_parse(c->guard_store, &a, &why) != 0) {
		snprintf(buf, sizeof(buf), "%s: guard.store %s: %s\n", c->path,
		         c->guard_store, why);
		*err = strdup(buf);
		return -1;
	}
	if (c->guard_store_password_file == NULL)
		return 0;
	if (store_password_read(c->guard_store_password_file, pw, sizeof(pw),
	                        &perr) < 0) {
		snprintf(buf, sizeof(buf),
		         "%s: guard.store_password_file: %s\n", c->path,
		         perr ? perr : "unreadable");
		free(perr);
		*err = strdup(buf);
		return -1;
	}
	g->store_password = strdup(pw);
	explicit_bzero(pw, sizeof(pw));
	return g->store_password != NULL ? 0 : -1;
}

/* guard.devices compiled; conf_load refused every regex that would not. */
static int load_rules(struct gen *g, char **err)
{
	char *why = NULL, buf[1024];

	if (g->conf->n_guard_devices == 0)
		return 0;
	g->rules = rules_new(g->conf->guard_devices,
			     g->conf->n_guard_devices, &why);
	g->rule_blocks = calloc(g->conf->n_guard_devices,
				sizeof(*g->rule_blocks));
	if (g->rules != NULL && g->rule_blocks != NULL)
		return 0;
	if (why != NULL) {
		snprintf(buf, sizeof(buf), "%s: %s\n", g->conf->path, why);
		*err = strdup(buf);
		free(why);
	}
	return -1;
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
	g->loaded_at = time(NULL);
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
	if (build_sites(p, g, err) != 0 || load_log_key(g, err) != 0 ||
	    load_guard_key(g, err) != 0 || load_bucket_key(g, err) != 0 ||
	    load_rules(g, err) != 0 ||
	    load_store(g, err) != 0)
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
