#include "proxy/gen.h"

#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "guard/rules.h"
#include "guard/shield.h"
#include "upstream/cas.h"
#include "site/sitemap.h"
#include "tls/tls.h"

bool gen_site_down(const struct gen *g, int site)
{
	const struct gen_site *gs = &g->sites[site];

	/* A cloud site has no CAS of ours and is never down. */
	if (gs->n_cas == 0)
		return false;
	for (unsigned i = 0; i < gs->n_cas; i++) {
		const struct cas_entry *e = gs->cas[i].entry;

		if (e == NULL || atomic_load_explicit(&e->n_up,
						      memory_order_relaxed) > 0)
			return false;
	}
	return true;
}

struct gen *gen_hold(struct gen *g)
{
	atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
	return g;
}

static void gen_free(struct gen *g)
{
	if (g->sites != NULL) {
		for (unsigned i = 0; i < g->conf->n_sites; i++) {
			for (unsigned j = 0; j < g->sites[i].n_cas; j++)
				free(g->sites[i].cas[j].url);
			free(g->sites[i].cas);
		}
		free(g->sites);
	}
	shield_key_free(g->guard_key);
	if (g->store_password != NULL)
		explicit_bzero(g->store_password, strlen(g->store_password));
	free(g->store_password);
	rules_free(g->rules);
	free(g->rule_blocks);
	sitemap_free(g->map);
	tls_server_free(g->tls);
	SSL_CTX_free(g->client_ctx);
	conf_free(g->conf);
	free(g);
}

void gen_release(struct gen *g)
{
	if (g == NULL)
		return;
	/* acq_rel: the freeing thread must see every write made under the
	 * references dropped before it. */
	if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
		gen_free(g);
}
