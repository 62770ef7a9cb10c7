/*
 * libFuzzer harness for the config reader: any bytes must give a conf or a
 * list of problems, never a crash, a hang or a leak. A conf that loads is
 * walked so that every pointer it hands out is read at least once.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t walk(const struct conf *c)
{
	size_t n = strlen(c->site) + strlen(c->default_site);

	for (unsigned i = 0; i < c->n_sites; i++) {
		const struct conf_site *s = &c->sites[i];
		struct conf_url u;

		n += conf_site_find(c, s->name) == s;
		for (unsigned j = 0; j < s->n_cas; j++)
			if (conf_url_parse(s->cas[j], &u, NULL) == 0)
				n += u.host.len + u.path.len;
		n += strlen(s->proxy_path) + strlen(s->health.path);
	}
	for (unsigned i = 0; i < c->n_listen; i++)
		n += conf_addr_parse(c->listen[i].address, NULL, NULL, NULL);
	for (unsigned i = 0; i < c->n_netbios; i++)
		n += strlen(c->netbios[i].domain);
	return n;
}

/*
 * Every line of err is "fuzz.yaml:LINE: reason" (file content reaches a
 * reason only through conf_show, so never as a line break), and no reason
 * comes from libcyaml: conf_scan must refuse whatever libcyaml would, so
 * that each problem has its own line. NULL (out of memory) is accepted.
 */
static bool well_formed(const char *err)
{
	static const char prefix[] = "fuzz.yaml:";

	if (err == NULL)
		return true;
	for (const char *p = err; p != NULL; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, prefix, sizeof(prefix) - 1) != 0)
			return false;
		p += sizeof(prefix) - 1;
		if (*p < '0' || *p > '9')
			return false;
		p += strspn(p, "0123456789");
		if (strncmp(p, ": ", 2) != 0 ||
		    strncmp(p + 2, "libcyaml: ", 10) == 0)
			return false;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf *c = NULL;
	char *err = NULL;

	if (conf_load_mem("fuzz.yaml", (const char *)data, size, &c, &err) ==
	    0) {
		/* A loaded conf must name its own site. */
		if (conf_site_find(c, c->site) == NULL || err != NULL)
			abort();
		walk(c);
	} else if (c != NULL || !well_formed(err)) {
		abort();
	}
	conf_free(c);
	free(err);
	return 0;
}
