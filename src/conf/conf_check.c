/*
 * Phase 3 of a load: what a schema cannot say. Names that must match a
 * site, URLs and addresses that must parse, values that must agree with
 * each other. Every problem is recorded with the line conf_scan indexed.
 */
#include "conf/conf_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool has_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return true;
	return false;
}

static const char *show(char *buf, size_t cap, const char *s)
{
	return conf_show(buf, cap, s, strlen(s));
}

/* Site names end up in the site map, logs and metric labels. */
static bool name_ok(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
		      ch == '.'))
			return false;
	}
	return true;
}

/* Checks that name (given at line for key) names a site; suggests the
 * spelling of a site that differs only in case. */
static void ref_check(struct conf_ctx *c, const struct conf *cf,
                      const char *key, const char *name, unsigned line)
{
	char shown[64];

	if (conf_site_find(cf, name) != NULL)
		return;
	show(shown, sizeof(shown), name);
	for (unsigned i = 0; i < cf->n_sites; i++)
		if (strcasecmp(cf->sites[i].name, name) == 0) {
			conf_err(c, line,
			         "%s: '%s' names no site (did you mean '%s'?)",
			         key, shown, cf->sites[i].name);
			return;
		}
	conf_err(c, line, "%s: '%s' is not the name of any site", key, shown);
}

static void path_check(struct conf_ctx *c, const char *key, const char *p,
                       unsigned line)
{
	if (p[0] != '/')
		conf_err(c, line, "%s: must start with '/'", key);
	else if (strpbrk(p, " ?#") != NULL || has_ctl(p))
		conf_err(c, line,
		         "%s: no spaces, control characters, "
		         "'?' or '#' allowed",
		         key);
}

static void url_check(struct conf_ctx *c, const char *key, const char *url,
                      bool need_https, unsigned line)
{
	struct conf_url u;
	const char *why;

	if (conf_url_parse(url, &u, &why) < 0)
		conf_err(c, line, "%s: %s", key, why);
	else if (need_https && !u.https)
		conf_err(c, line,
		         "%s: must be https:// (phones are sent there)", key);
}

static void cas_check(struct conf_ctx *c, unsigned i, const struct conf_site *s)
{
	char key[64], shown[64];

	for (unsigned k = 0; k < s->n_cas; k++) {
		unsigned line = conf_line(c, "sites[%u].cas[%u]", i, k);

		snprintf(key, sizeof(key), "sites[%u].cas[%u]", i, k);
		url_check(c, key, s->cas[k], false, line);
		for (unsigned j = 0; j < k; j++)
			if (strcmp(s->cas[j], s->cas[k]) == 0) {
				conf_err(c, line, "%s: '%s' is listed twice",
				         key,
				         show(shown, sizeof(shown), s->cas[k]));
				break;
			}
	}
}

static void site_check(struct conf_ctx *c, const struct conf *cf, unsigned i)
{
	const struct conf_site *s = &cf->sites[i];
	char key[64], shown[64];
	unsigned line = conf_line(c, "sites[%u].name", i);

	if (!name_ok(s->name))
		conf_err(c, line,
		         "sites[%u].name: '%s' may hold only letters, "
		         "digits, '-', '_' and '.'",
		         i, show(shown, sizeof(shown), s->name));
	/* The site map matches site names ignoring case. */
	for (unsigned j = 0; j < i; j++)
		if (strcasecmp(cf->sites[j].name, s->name) == 0) {
			conf_err(c, line,
			         "duplicate site name '%s' (first at line %u)",
			         show(shown, sizeof(shown), s->name),
			         cf->sites[j].line);
			break;
		}
	if (s->external_url != NULL) {
		snprintf(key, sizeof(key), "sites[%u].external_url", i);
		url_check(c, key, s->external_url, true,
		          conf_line(c, "%s", key));
	}
	cas_check(c, i, s);
	snprintf(key, sizeof(key), "sites[%u].proxy_path", i);
	path_check(c, key, s->proxy_path, conf_line(c, "%s", key));
	snprintf(key, sizeof(key), "sites[%u].health.path", i);
	path_check(c, key, s->health.path, conf_line(c, "%s", key));
	if (s->fallback == NULL)
		return;
	snprintf(key, sizeof(key), "sites[%u].fallback", i);
	line = conf_line(c, "%s", key);
	if (strcmp(s->fallback, s->name) == 0)
		conf_err(c, line, "%s: a site cannot fall back to itself", key);
	else
		ref_check(c, cf, key, s->fallback, line);
}

/* Listen addresses must parse and differ: two equal ones cannot both bind. */
static void listen_check(struct conf_ctx *c, const struct conf *cf)
{
	struct sockaddr_storage ss[64], admin;
	socklen_t len[64], alen;
	const char *why;
	unsigned n = cf->n_listen < 64 ? cf->n_listen : 64;

	for (unsigned i = 0; i < n; i++) {
		unsigned line = conf_line(c, "listen[%u].address", i);

		if (conf_addr_parse(cf->listen[i].address, &ss[i], &len[i],
		                    &why) < 0) {
			conf_err(c, line, "listen[%u].address: %s", i, why);
			len[i] = 0;
			continue;
		}
		for (unsigned j = 0; j < i; j++)
			if (len[j] == len[i] &&
			    memcmp(&ss[j], &ss[i], len[i]) == 0) {
				conf_err(c, line,
				         "listen[%u].address: same address as "
				         "line %u",
				         i, cf->listen[j].line);
				break;
			}
	}
	if (cf->admin_listen == NULL)
		return;
	if (conf_addr_parse(cf->admin_listen, &admin, &alen, &why) < 0) {
		conf_err(c, conf_line(c, "admin.listen"), "admin.listen: %s",
		         why);
		return;
	}
	for (unsigned j = 0; j < n; j++)
		if (len[j] == alen && memcmp(&ss[j], &admin, alen) == 0)
			conf_err(c, conf_line(c, "admin.listen"),
			         "admin.listen: same address as listen[%u] "
			         "(line %u)",
			         j, cf->listen[j].line);
}

static void dns_check(struct conf_ctx *c, const struct conf *cf)
{
	unsigned char a[sizeof(struct in6_addr)];

	for (unsigned i = 0; i < cf->n_dns_servers; i++) {
		const char *s = cf->dns_servers[i];

		if (inet_pton(AF_INET, s, a) == 1 ||
		    inet_pton(AF_INET6, s, a) == 1 ||
		    conf_addr_parse(s, NULL, NULL, NULL) == 0)
			continue;
		conf_err(c, conf_line(c, "dns.servers[%u]", i),
		         "dns.servers[%u]: expected an IP address, "
		         "IPv4:PORT or [IPv6]:PORT",
		         i);
	}
}

/* NetBIOS domain names: 1-15 characters, none of the separators a user
 * name is split on. */
static void netbios_check(struct conf_ctx *c, const struct conf *cf)
{
	char shown[64];

	for (unsigned i = 0; i < cf->n_netbios; i++) {
		const struct conf_netbios *nb = &cf->netbios[i];

		if (strlen(nb->name) > 15 || strpbrk(nb->name, " \\@./") ||
		    has_ctl(nb->name))
			conf_err(c, nb->line,
			         "sitemap.netbios: '%s' is not a NetBIOS "
			         "domain name (1-15 characters, no spaces, "
			         "'\\', '@', '.', '/')",
			         show(shown, sizeof(shown), nb->name));
		if (strpbrk(nb->domain, " \\@/") || has_ctl(nb->domain) ||
		    nb->domain[0] == '.')
			conf_err(c, nb->line,
			         "sitemap.netbios: '%s' is not a domain name",
			         show(shown, sizeof(shown), nb->domain));
		for (unsigned j = 0; j < i; j++)
			if (strcasecmp(cf->netbios[j].name, nb->name) == 0) {
				conf_err(c, nb->line,
				         "sitemap.netbios: '%s' given twice "
				         "(first at line %u)",
				         show(shown, sizeof(shown), nb->name),
				         cf->netbios[j].line);
				break;
			}
	}
}

/* File names and the user name: a control byte there is always a slip. */
static void text_check(struct conf_ctx *c, const struct conf *cf)
{
	const struct {
		const char *key;
		const char *val;
	} keys[] = {
	    {"upstream.ca_file", cf->upstream_ca_file},
	    {"sitemap.file", cf->sitemap_file},
	    {"log.access", cf->log_access},
	    {"user", cf->user},
	    {"pid_file", cf->pid_file},
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (keys[i].val != NULL && has_ctl(keys[i].val))
			conf_err(c, conf_line(c, "%s", keys[i].key),
			         "%s: holds a control character", keys[i].key);
	for (unsigned i = 0; i < cf->n_certs; i++)
		if (has_ctl(cf->certs[i].cert) || has_ctl(cf->certs[i].key))
			conf_err(c, cf->certs[i].line,
			         "tls.certificates[%u]: a file name holds a "
			         "control character",
			         i);
}

void conf_check(struct conf_ctx *c, const struct conf *cf)
{
	for (unsigned i = 0; i < cf->n_sites; i++)
		site_check(c, cf, i);
	ref_check(c, cf, "site", cf->site, conf_line(c, "site"));
	/* An absent default_site is site, checked just above. */
	if (conf_line(c, "sitemap.default_site") != 0)
		ref_check(c, cf, "sitemap.default_site", cf->default_site,
		          conf_line(c, "sitemap.default_site"));
	listen_check(c, cf);
	dns_check(c, cf);
	netbios_check(c, cf);
	text_check(c, cf);
	if (cf->workers > CONF_WORKERS_MAX)
		conf_err(c, conf_line(c, "workers"),
		         "workers: at most %d (0: one per online CPU)",
		         CONF_WORKERS_MAX);
	/* 0 means no cap, for either. */
	if (cf->limits.connections != 0 &&
	    cf->limits.connections_per_client > cf->limits.connections) {
		unsigned line = conf_line(c, "limits.connections_per_client");

		conf_err(c, line ? line : conf_line(c, "limits.connections"),
		         "limits.connections_per_client (%u) is more than "
		         "limits.connections (%u)",
		         cf->limits.connections_per_client,
		         cf->limits.connections);
	}
}
