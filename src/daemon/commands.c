/*
 * The one-shot commands: check, reload, route, preflight. They build what
 * `run` would build and report on it, serving nothing.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "eas/eas.h"
#include "ldap/ldap_src.h"
#include "proxy/dir.h"
#include "daemon/generation.h"
#include "proxy/gen.h"
#include "site/route.h"
#include "site/sitemap.h"
#include "tls/tls.h"

static void print_err(const char *err)
{
	if (err == NULL || err[0] == '\0')
		return;
	fputs(err, stderr);
	if (err[strlen(err) - 1] != '\n')
		fputc('\n', stderr);
}

/* Binds to the directory and searches once, as the daemon will. */
static int check_directory(const struct conf *c)
{
	const struct conf_ldap *l = c->ldap;
	struct ldap_src_conf sc;
	char *err = NULL;

	dir_src_conf(l, &sc);
	if (ldap_check(&sc, &err) == 0)
		return 0;
	fprintf(stderr, "%s:%u: sitemap.ldap: %s\n", c->path, l->line,
		err ? err : "the directory cannot be used");
	free(err);
	return 1;
}

int daemon_check(const char *conf_path)
{
	struct conf *c = NULL;
	struct sitemap *m = NULL;
	char *err = NULL;
	int rc = 0;

	if (conf_load(conf_path, &c, &err) != 0) {
		print_err(err);
		free(err);
		return 1;
	}
	if (tls_check_certs(c, &err) != 0) {
		print_err(err);
		rc = 1;
	}
	free(err);
	err = NULL;
	if (c->ldap != NULL && check_directory(c) != 0)
		rc = 1;
	if (c->sitemap_file != NULL) {
		m = sitemap_load(c, c->sitemap_file, &err);
		if (m == NULL) {
			print_err(err);
			rc = 1;
		}
		free(err);
	}
	if (rc == 0)
		printf("%s: OK (%u sites, %zu users in the site map)\n",
		       conf_path, c->n_sites, m ? sitemap_users(m) : 0);
	sitemap_free(m);
	conf_free(c);
	return rc;
}

int daemon_reload(const char *conf_path)
{
	struct conf *c = NULL;
	char *err = NULL;
	long pid = 0;
	FILE *f;

	if (conf_load(conf_path, &c, &err) != 0) {
		print_err(err);
		free(err);
		return 1;
	}
	f = fopen(c->pid_file, "r");
	if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
		fprintf(stderr, "%s: no running easfront (%s)\n", c->pid_file,
			f ? "bad pid file" : strerror(errno));
		if (f)
			fclose(f);
		conf_free(c);
		return 1;
	}
	fclose(f);
	conf_free(c);
	if (kill((pid_t)pid, SIGHUP) != 0) {
		fprintf(stderr, "pid %ld: %s\n", pid, strerror(errno));
		return 1;
	}
	printf("reload requested (pid %ld)\n", pid);
	return 0;
}

int daemon_route(const char *conf_path, const char *user, const char *version,
		 const char *host)
{
	struct route_input in = {0};
	struct route_decision d;
	struct gen *g;
	char key[256], text[4096], db[256] = "";
	char *err = NULL;

	g = generation_build(NULL, conf_path, 0, &err);
	if (g == NULL) {
		print_err(err);
		free(err);
		return 1;
	}
	in.conf = g->conf;
	in.map = g->map;
	in.user = sitemap_normalise(g->conf, user, key, sizeof(key)) ? key
								      : NULL;
	in.version = eas_version_parse(str_from(version));
	in.host = host;
	if (g->conf->ldap != NULL && in.user != NULL)
		in.dir = dir_lookup_once(g->conf->ldap, in.user, db, sizeof(db));
	in.dir_database = db[0] ? db : NULL;
	route_decide(&in, &d);
	route_explain(&in, &d, text, sizeof(text));
	fputs(text, stdout);
	if (text[0] && text[strlen(text) - 1] != '\n')
		fputc('\n', stdout);
	route_explain_autodiscover(&in, text, sizeof(text));
	fputs(text, stdout);
	gen_release(g);
	return 0;
}

