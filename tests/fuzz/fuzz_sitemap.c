/*
 * Loads the input as a site map against a fixed two-site conf, then looks up
 * every line of it as a user and routes it. Checks what must hold whatever
 * the input: a failed load explains itself, a match names a real site, the
 * normaliser is idempotent, and the explanation fits and is terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "site/route.h"
#include "site/sitemap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct conf_netbios netbios[] = {
    {.name = "CONTOSO", .domain = "contoso.com"}};

static struct conf_site sites[] = {
    {.name = "site1",
     .external_url = "https://site1-eas.contoso.com/Microsoft-Server-"
                     "ActiveSync",
     .fallback = "site2"},
    {.name = "site2",
     .external_url = "https://site2-eas.contoso.com/Microsoft-Server-"
                     "ActiveSync",
     .fallback = "site1"},
};

static const struct conf conf = {
    .path = "fuzz.yaml",
    .site = "site1",
    .sites = sites,
    .n_sites = 2,
    .default_site = "site2",
    .netbios = netbios,
    .n_netbios = 1,
};

static void check_match(const struct sitemap_match *r)
{
	if (r->site < -1 || r->site >= (int)conf.n_sites)
		abort();
	if ((r->site < 0) != (r->how == SITEMAP_NONE))
		abort();
	if ((r->database != NULL) != (r->how == SITEMAP_USER_DB))
		abort();
}

/* Normalises [p, p+len) as a user, checks it, then looks it up and routes. */
static void probe(const struct sitemap *m, const char *p, size_t len,
                  unsigned version)
{
	char key[SITEMAP_KEY_MAX + 1], again[SITEMAP_KEY_MAX + 1], text[256];
	size_t n = sitemap_normalise_len(&conf, p, len, key, sizeof(key));
	static const unsigned char down[2] = {1, 0};
	struct route_input in = {.conf = &conf,
	                         .map = m,
	                         .user = key,
	                         .version = version,
	                         .host = key,
	                         .site_down = version == 25 ? down : NULL};
	struct route_decision d;
	struct sitemap_match r;
	size_t t;

	if (n == 0)
		key[0] = '\0';
	else if (n != strlen(key) ||
	         sitemap_normalise(&conf, key, again, sizeof(again)) != n ||
	         memcmp(key, again, n) != 0)
		abort();
	sitemap_lookup(m, key, &r);
	check_match(&r);
	route_decide(&in, &d);
	if (d.action != ROUTE_REJECT && (d.site < 0 || d.site >= 2))
		abort();
	t = route_explain(&in, &d, text, sizeof(text));
	if (strlen(text) != (t < sizeof(text) ? t : sizeof(text) - 1))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned versions[] = {0, 25, 121, 141, 161};
	const char *buf = (const char *)data, *p = buf, *end = buf + size;
	char *err = NULL;
	struct sitemap *m = sitemap_load_mem(&conf, "fuzz", buf, size, &err);
	unsigned i = 0;

	if (m == NULL && (err == NULL || strncmp(err, "fuzz", 4) != 0))
		abort();
	if (m != NULL && err != NULL)
		abort();
	free(err);
	/* every line, every field of it, as a user of the map just built */
	while (p < end && i < 256) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *f = p, *fe;

		probe(m, p, len, versions[i++ % 5]);
		while ((fe = memchr(f, '\t', (size_t)(p + len - f))) != NULL) {
			probe(m, f, (size_t)(fe - f), versions[i++ % 5]);
			f = fe + 1;
		}
		probe(m, f, (size_t)(p + len - f), versions[i++ % 5]);
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	sitemap_free(m);
	return 0;
}
