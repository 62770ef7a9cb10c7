/*
 * Phase 3 of a load: what a schema cannot say. Names that must match a
 * site, URLs and addresses that must parse, values that must agree with
 * each other. Every problem is recorded with the line conf_scan indexed.
 */
#include "conf/conf_int.h"

#include <arpa/inet.h>
#include <regex.h>
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

/* A site named by key (at line) that must have a CAS pool: this front
 * end's own site, a fallback. A cloud site has none to proxy to. */
static void not_cloud(struct conf_ctx *c, const struct conf *cf,
                      const char *key, const char *name, unsigned line)
{
	const struct conf_site *s = conf_site_find(cf, name);

	if (s != NULL && s->cloud)
		conf_err(c, line,
		         "%s: '%s' is a cloud site, which has no CAS to "
		         "proxy to",
		         key, s->name);
}

/* What a cloud site is (an external URL, nothing of ours) and what every
 * other site needs (a CAS pool). */
static void cloud_check(struct conf_ctx *c, const struct conf *cf, unsigned i)
{
	const struct conf_site *s = &cf->sites[i];
	unsigned line = conf_line(c, "sites[%u].name", i);
	char key[64];

	snprintf(key, sizeof(key), "sites[%u].fallback", i);
	if (s->fallback != NULL)
		not_cloud(c, cf, key, s->fallback, conf_line(c, "%s", key));
	if (!s->cloud) {
		if (s->n_cas == 0)
			conf_err(c, line,
			         "sites[%u]: cas is required (only a site with "
			         "cloud: true has none)",
			         i);
		if (s->min_version != 0)
			conf_err(c, conf_line(c, "sites[%u].min_version", i),
			         "sites[%u].min_version: only a cloud site has "
			         "one",
			         i);
		return;
	}
	if (s->n_cas > 0)
		conf_err(c, conf_line(c, "sites[%u].cas", i),
		         "sites[%u].cas: a cloud site has no CAS of ours", i);
	if (s->fallback != NULL)
		conf_err(c, conf_line(c, "%s", key),
		         "%s: a cloud site has no fallback (it is never down)",
		         key);
	if (s->external_url == NULL)
		conf_err(c, line,
		         "sites[%u]: a cloud site needs external_url (where "
		         "its users are sent)",
		         i);
}

/* sitemap.ldap.cloud: a cloud site, and domains a targetAddress can end
 * with. */
static void ldap_cloud_check(struct conf_ctx *c, const struct conf *cf)
{
	const struct conf_ldap *l = cf->ldap;
	const struct conf_site *s;
	char shown[64];
	unsigned line;

	if (l == NULL || l->cloud_site == NULL)
		return;
	line = conf_line(c, "sitemap.ldap.cloud.site");
	s = conf_site_find(cf, l->cloud_site);
	if (s == NULL)
		ref_check(c, cf, "sitemap.ldap.cloud.site", l->cloud_site, line);
	else if (!s->cloud)
		conf_err(c, line,
		         "sitemap.ldap.cloud.site: '%s' is not a cloud site "
		         "(cloud: true)",
		         s->name);
	for (unsigned i = 0; i < l->n_cloud_domains; i++) {
		const char *d = l->cloud_domains[i];

		if (strpbrk(d, " \\@/") != NULL || has_ctl(d) || d[0] == '.')
			conf_err(c,
			         conf_line(c, "sitemap.ldap.cloud.target_domains[%u]",
			                   i),
			         "sitemap.ldap.cloud.target_domains[%u]: '%s' is "
			         "not a domain name",
			         i, show(shown, sizeof(shown), d));
	}
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
	    {"guard.key_file", cf->guard_key_file},
	    {"guard.store_password_file", cf->guard_store_password_file},
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

/* Largest regex accepted, in the units of regex_size: a device rule needs
 * a few dozen; glibc takes seconds to compile a few million. */
#define REGEX_SIZE_MAX 10000
#define REGEX_DEPTH_MAX 64

/* The count of an interval "{m}", "{m,}" or "{m,n}" at *pp (just past the
 * '{'): the copies glibc makes of the atom before it. *pp is left on the
 * '}'. 0 when this is no interval (glibc then refuses it or reads '{'). */
static uint64_t interval_count(const char **pp)
{
	const char *p = *pp;
	uint64_t m = 0, n = 0;
	bool comma = false, has_n = false;

	for (; *p >= '0' && *p <= '9'; p++)
		m = m < 100000 ? m * 10 + (uint64_t)(*p - '0') : m;
	if (*p == ',') {
		comma = true;
		for (p++; *p >= '0' && *p <= '9'; p++, has_n = true)
			n = n < 100000 ? n * 10 + (uint64_t)(*p - '0') : n;
	}
	if (*p != '}')
		return 0;
	*pp = p;
	if (!comma)
		return m > 0 ? m : 1;
	return has_n ? (n > m ? n : m) : m + 1;
}

/* Skips a bracket expression from its '['; returns its ']' or NULL. */
static const char *bracket_end(const char *p)
{
	p++;
	if (*p == '^')
		p++;
	if (*p == ']')
		p++;
	for (; *p != '\0' && *p != ']'; p++)
		if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
			const char *end = strchr(p + 2, p[1]);

			while (end != NULL && end[1] != ']')
				end = strchr(end + 1, p[1]);
			if (end == NULL)
				return NULL;
			p = end + 1;
		}
	return *p == ']' ? p : NULL;
}

/* An upper bound of the size glibc's regcomp gives re: it copies a
 * repeated atom once per count, so nested counts multiply ("(a{99}){99}"
 * is ten thousand atoms). Malformed parts count as small: regcomp refuses
 * them anyway. Anything above REGEX_SIZE_MAX is REGEX_SIZE_MAX + 1. */
static uint64_t regex_size(const char *re)
{
	uint64_t group[REGEX_DEPTH_MAX + 1] = {0}, last = 0, k;
	unsigned d = 0;
	const char *end;

	for (const char *p = re; *p != '\0'; p++) {
		switch (*p) {
		case '(':
			if (d == REGEX_DEPTH_MAX)
				return REGEX_SIZE_MAX + 1;
			group[++d] = 0;
			break;
		case ')':
			last = d > 0 ? group[d--] + 1 : 1;
			group[d] += last;
			break;
		case '{':
			end = p + 1;
			k = interval_count(&end);
			if (k == 0) {
				group[d] += last = 1;
				break;
			}
			p = end;
			/* the atom is counted once already */
			group[d] += last * (k - 1);
			last *= k;
			break;
		case '+': /* glibc writes a+ as aa* */
			group[d] += last;
			last *= 2;
			break;
		case '*':
		case '?': /* one node; the atom stays what a count repeats */
			group[d]++;
			break;
		case '[':
			end = bracket_end(p);
			p = end != NULL ? end : p;
			group[d] += last = 1;
			break;
		case '\\':
			p += p[1] != '\0';
			group[d] += last = 1;
			break;
		default:
			group[d] += last = 1;
			break;
		}
		/* last <= MAX too keeps every product above in range */
		if (group[d] > REGEX_SIZE_MAX || last > REGEX_SIZE_MAX)
			return REGEX_SIZE_MAX + 1;
	}
	return group[0];
}

/* Compiled as guard/rules.c will, so that a reload never reaches a rule
 * set that cannot be built, nor spends seconds building one. */
static void regex_check(struct conf_ctx *c, const char *key, const char *re)
{
	regex_t rx;
	char why[128];
	int e;

	if (regex_size(re) > REGEX_SIZE_MAX) {
		conf_err(c, conf_line(c, "%s", key),
		         "%s: regular expression too large once its repetition "
		         "counts are expanded (nested counts multiply)",
		         key);
		return;
	}
	e = regcomp(&rx, re, REG_EXTENDED | REG_ICASE | REG_NOSUB);
	if (e == 0) {
		regfree(&rx);
		return;
	}
	regerror(e, &rx, why, sizeof(why));
	conf_err(c, conf_line(c, "%s", key), "%s: bad regular expression: %s",
	         key, why);
}

static void rule_check(struct conf_ctx *c, unsigned i,
                       const struct conf_device_rule *d)
{
	const char *act = d->action == CONF_RULE_ALLOW ? "allow" : "block";
	const struct {
		const char *name;
		const char *re;
	} res[] = {
	    {"device_id", d->device_id},
	    {"device_type", d->device_type},
	    {"user_agent", d->user_agent},
	};
	char key[64];

	/* No block: nor allow: was already said (conf.c). */
	if (d->value_line == 0)
		return;
	if (!d->device_id && !d->device_type && !d->user_agent && !d->user &&
	    !d->cmd && !d->has_version) {
		conf_err(
		    c, d->value_line,
		    "guard.devices[%u].%s: a rule must name at least one "
		    "field (device_id, device_type, user_agent, user, cmd, "
		    "version): this one would match every request",
		    i, act);
		return;
	}
	for (size_t k = 0; k < sizeof(res) / sizeof(res[0]); k++) {
		if (res[k].re == NULL)
			continue;
		snprintf(key, sizeof(key), "guard.devices[%u].%s.%s", i, act,
		         res[k].name);
		regex_check(c, key, res[k].re);
	}
}

/* A number present in the file and above max; min is numbers()' (1). */
static void at_most(struct conf_ctx *c, const char *key, unsigned v,
                    unsigned max, const char *unit)
{
	if (v > max)
		conf_err(c, conf_line(c, "%s", key), "%s: at most %u%s", key,
		         max, unit);
}

/* guard.store's scheme and shape. The host, port and database are taken
 * apart by store/ when the generation is built (store_url_parse), which
 * conf/ must not include; rediss:// is refused here because the store
 * speaks plain TCP only, and a TLS URL taken for plain would send the
 * password in clear. */
static void store_check(struct conf_ctx *c, const struct conf *cf)
{
	static const char scheme[] = "redis://";
	const char *u = cf->guard_store;
	unsigned line = conf_line(c, "guard.store");

	if (u == NULL) {
		if (cf->guard_store_password_file != NULL)
			conf_err(
			    c, conf_line(c, "guard.store_password_file"),
			    "guard.store_password_file: without guard.store");
		return;
	}
	if (strncasecmp(u, scheme, sizeof(scheme) - 1) != 0)
		conf_err(c, line,
		         "guard.store: must be redis://HOST[:PORT][/DB] (Redis "
		         "over plain TCP on the internal network)");
	else if (u[sizeof(scheme) - 1] == '\0' || u[sizeof(scheme) - 1] == '/')
		conf_err(c, line, "guard.store: names no host");
	else if (strpbrk(u, " @?#") != NULL || has_ctl(u))
		conf_err(c, line,
		         "guard.store: no user, query, fragment, spaces or "
		         "control characters (the password goes in "
		         "guard.store_password_file)");
	else if (cf->guard_key_file == NULL)
		/* Without it each front end hashes under its own random key
		 * and the fleet's counts never meet. */
		conf_err(c, line,
		         "guard.store: needs guard.key_file, the same file on "
		         "every front end");
}

static void guard_check(struct conf_ctx *c, const struct conf *cf)
{
	const struct conf_guard_passwords *p = &cf->guard_passwords;
	unsigned line = conf_line(c, "guard.max_entries");

	for (unsigned i = 0; i < cf->n_guard_devices; i++)
		rule_check(c, i, &cf->guard_devices[i]);
	if (line != 0 &&
	    (cf->guard_max_entries < 16 || cf->guard_max_entries > 100000000))
		conf_err(c, line,
		         "guard.max_entries: from 16 to 100000000 (about 90 "
		         "bytes each)");
	store_check(c, cf);
	if (!cf->guard_passwords_on)
		return;
	at_most(c, "guard.passwords.password_failures", p->password_failures,
	        1000, "");
	at_most(c, "guard.passwords.user_failures", p->user_failures, 1000, "");
	at_most(c, "guard.passwords.window", p->window, 86400 * 7, " (a week)");
	at_most(c, "guard.passwords.hold", p->hold, 86400 * 7, " (a week)");
	if (p->password_failures == 0 && p->user_failures == 0)
		conf_err(c, conf_line(c, "guard.passwords"),
		         "guard.passwords: password_failures and user_failures "
		         "both 0 turns the shield off: remove guard.passwords "
		         "instead");
}

/* guard.throttle's numbers: a bucket's arithmetic (guard/throttle.c) is
 * exact within these bounds. */
static void throttle_check(struct conf_ctx *c, const struct conf *cf)
{
	static const char *const names[] = {"device", "user", "client"};
	const struct conf_guard_throttle *t = &cf->guard_throttle;
	const struct conf_bucket *b[] = {&t->device, &t->user, &t->client};
	char key[64];

	if (!cf->guard_throttle_on)
		return;
	for (unsigned i = 0; i < 3; i++) {
		snprintf(key, sizeof(key), "guard.throttle.%s.requests",
		         names[i]);
		at_most(c, key, b[i]->requests, 1000000, "");
		snprintf(key, sizeof(key), "guard.throttle.%s.per", names[i]);
		at_most(c, key, b[i]->per, 86400, " (a day)");
	}
	at_most(c, "guard.throttle.long_polls_per_device",
	        t->long_polls_per_device, 100, "");
	at_most(c, "guard.throttle.retry_after", t->retry_after, 86400,
	        " (a day)");
}

void conf_check(struct conf_ctx *c, const struct conf *cf)
{
	throttle_check(c, cf);
	for (unsigned i = 0; i < cf->n_sites; i++) {
		site_check(c, cf, i);
		cloud_check(c, cf, i);
	}
	ref_check(c, cf, "site", cf->site, conf_line(c, "site"));
	not_cloud(c, cf, "site", cf->site, conf_line(c, "site"));
	ldap_cloud_check(c, cf);
	/* An absent default_site is site, checked just above. */
	if (conf_line(c, "sitemap.default_site") != 0)
		ref_check(c, cf, "sitemap.default_site", cf->default_site,
		          conf_line(c, "sitemap.default_site"));
	listen_check(c, cf);
	dns_check(c, cf);
	guard_check(c, cf);
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
