/*
 * The routing decision and its explanation. Everything here is a function of
 * its arguments: sites are looked up by name in the conf on each call (a
 * handful of sites, cheaper than keeping an index that could go stale).
 */
#include "site/route.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/str.h"

/* Index of the site called name, exact match first, then ignoring ASCII case
 * (the same rule as the site map); -1 when there is none. */
static int site_find(const struct conf *c, const char *name)
{
	struct str n = str_from(name);

	if (name == NULL)
		return -1;
	for (unsigned i = 0; i < c->n_sites; i++)
		if (c->sites[i].name && str_eq(str_from(c->sites[i].name), n))
			return (int)i;
	for (unsigned i = 0; i < c->n_sites; i++)
		if (c->sites[i].name &&
		    str_eq_ci(str_from(c->sites[i].name), n))
			return (int)i;
	return -1;
}

static int default_site(const struct conf *c)
{
	return site_find(c, c->default_site ? c->default_site : c->site);
}

static bool site_down(const struct route_input *in, int site)
{
	return in->site_down != NULL && in->site_down[site] != 0;
}

static int fallback_of(const struct conf *c, int site)
{
	return site_find(c, c->sites[site].fallback);
}

int route_fallback(const struct conf *c, const unsigned char *site_down,
		   int site, unsigned *hops)
{
	unsigned n = 0;

	while (site >= 0 && site_down != NULL && site_down[site]) {
		if (n >= c->n_sites) {
			site = -1;
			break;
		}
		if ((site = fallback_of(c, site)) < 0)
			break;
		n++;
	}
	if (hops != NULL)
		*hops = n;
	return site;
}

static const char *site_name(const struct conf *c, int site)
{
	if (site < 0 || (unsigned)site >= c->n_sites || !c->sites[site].name)
		return "(none)";
	return c->sites[site].name;
}

/* A host without a port (unless it is a bare IPv6 address) and without the
 * trailing dot of an absolute name: the forms a client may send. */
static struct str host_clean(struct str h)
{
	const char *colon;

	if (h.len > 0 && h.p[0] == '[') {
		const char *close = memchr(h.p, ']', h.len);

		if (close != NULL)
			return (struct str){h.p, (size_t)(close + 1 - h.p)};
	} else if ((colon = memchr(h.p, ':', h.len)) != NULL &&
	           memchr(colon + 1, ':', h.len - (size_t)(colon + 1 - h.p)) ==
	               NULL) {
		h.len = (size_t)(colon - h.p);
	}
	if (h.len > 0 && h.p[h.len - 1] == '.')
		h.len--;
	return h;
}

/* The host part of an absolute URL ("scheme://[userinfo@]host[:port]/..."),
 * empty when url has no "://". */
static struct str url_host(const char *url)
{
	const char *p = strstr(url, "://"), *at;
	size_t len;

	if (p == NULL)
		return STR_NULL;
	p += 3;
	len = strcspn(p, "/?#");
	at = memrchr(p, '@', len);
	if (at != NULL) {
		len -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	return host_clean((struct str){p, len});
}

/* True when the client reached us by the host name of url. */
static bool host_is_url_host(const char *host, const char *url)
{
	struct str h = host_clean(str_from(host)), u = url_host(url);

	return h.len > 0 && str_eq_ci(h, u);
}

bool route_version_redirects(unsigned version)
{
	return version == 140 || version == 141 || version == 160 ||
	       version == 161;
}

static bool version_legacy(unsigned version)
{
	return version == 25 || version == 120 || version == 121;
}

bool route_cloud_takes(const struct conf_site *s, unsigned version)
{
	return route_version_redirects(version) && version >= s->min_version;
}

static void proxy(struct route_decision *d, int site, const char *reason)
{
	d->action = ROUTE_PROXY;
	d->site = site;
	d->url = NULL;
	d->status = 0;
	d->reason = reason;
}

/* Rows 3 to 8: the home site can serve; proxy or redirect. */
static void decide_up(const struct route_input *in, struct route_decision *d)
{
	const struct conf_site *s = &in->conf->sites[d->home_site];

	if (d->home_site == d->own_site)
		proxy(d, d->home_site, "local");
	else if (s->external_url == NULL || s->external_url[0] == '\0')
		proxy(d, d->home_site, "proxy-no-external-url");
	else if (in->host != NULL &&
	         host_is_url_host(in->host, s->external_url))
		proxy(d, d->home_site, "proxy-loop-guard");
	else if (route_version_redirects(in->version)) {
		d->action = ROUTE_REDIRECT;
		d->site = d->home_site;
		d->url = s->external_url;
		d->status = 0;
		d->reason = "redirect";
	} else if (version_legacy(in->version))
		proxy(d, d->home_site, "proxy-legacy-version");
	else
		proxy(d, d->home_site, "proxy-unknown-version");
}

/* A user line of the map decided: the directory has no say. */
static bool pinned(const struct route_decision *d)
{
	return d->match.how == SITEMAP_USER_SITE ||
	       d->match.how == SITEMAP_USER_DB;
}

/* Rows C1 and C2: this front end's site serves, or its fallback. */
static void serve_own(const struct route_input *in, struct route_decision *d,
		      const char *reason)
{
	int serve = route_fallback(in->conf, in->site_down, d->own_site,
				   &d->hops);

	if (serve >= 0)
		proxy(d, serve, reason);
}

/* Rows C1 to C4: a cloud home site, never proxied to. */
static void decide_cloud(const struct route_input *in,
			 struct route_decision *d)
{
	const struct conf_site *s = &in->conf->sites[d->home_site];

	d->cloud = true;
	if (in->autodiscover) {
		serve_own(in, d, "cloud-autodiscover");
	} else if (in->dir == ROUTE_DIR_DOWN && !pinned(d)) {
		d->cloud = false;
		serve_own(in, d, "directory-down");
	} else if (route_cloud_takes(s, in->version)) {
		d->action = ROUTE_REDIRECT;
		d->site = d->home_site;
		d->url = s->external_url;
		d->status = 0;
		d->reason = "cloud";
	} else {
		d->status = 403;
		d->reason = "cloud-min-version";
	}
}

static const char *source_of(enum sitemap_how how)
{
	switch (how) {
	case SITEMAP_USER_DB:
		return "user-db";
	case SITEMAP_USER_SITE:
		return "user-site";
	case SITEMAP_DOMAIN:
		return "domain";
	case SITEMAP_DIRECTORY:
		return "directory";
	case SITEMAP_DIRECTORY_CLOUD:
		return "directory-cloud";
	default:
		return "default";
	}
}

/* The directory answers user -> database where the map has no user line
 * (an operator's line pins a user); the map's database lines give the site.
 * A database the map does not know leaves the domain or default rule. */
static bool dir_cloud(enum route_dir dir)
{
	return dir == ROUTE_DIR_CLOUD || dir == ROUTE_DIR_CLOUD_STALE;
}

static bool dir_stale(enum route_dir dir)
{
	return dir == ROUTE_DIR_STALE || dir == ROUTE_DIR_CLOUD_STALE;
}

/* The site sitemap.ldap.cloud names for moved mailboxes: a cloud site
 * (conf_check), or -1 when there is none (a reload took it away while
 * the cache still holds such answers). */
static int cloud_site(const struct conf *c)
{
	int i = c->ldap != NULL ? site_find(c, c->ldap->cloud_site) : -1;

	return i >= 0 && c->sites[i].cloud ? i : -1;
}

static void directory_home(const struct route_input *in,
			   struct route_decision *out)
{
	struct sitemap_match dm;

	if (pinned(out))
		return;
	if (dir_cloud(in->dir)) {
		out->match = (struct sitemap_match){
		    .site = cloud_site(in->conf),
		    .how = SITEMAP_DIRECTORY_CLOUD,
		};
		if (out->match.site < 0)
			out->match.how = SITEMAP_NONE;
		return;
	}
	if ((in->dir != ROUTE_DIR_FOUND && in->dir != ROUTE_DIR_STALE) ||
	    in->dir_database == NULL)
		return;
	sitemap_database(in->map, in->dir_database, &dm);
	if (dm.site < 0)
		return;
	dm.how = SITEMAP_DIRECTORY;
	dm.line = 0;
	out->match = dm;
}

void route_decide(const struct route_input *in, struct route_decision *out)
{
	const struct conf *c = in->conf;
	int serve;

	assert(c != NULL);
	*out = (struct route_decision){
	    .action = ROUTE_REJECT,
	    .site = -1,
	    .status = 503,
	    .reason = "no-site-available",
	    .source = "no-user",
	    .home_site = -1,
	    .own_site = site_find(c, c->site),
	    .match = {.site = -1, .how = SITEMAP_NONE},
	};
	if (in->user != NULL && in->user[0] != '\0') {
		sitemap_lookup(in->map, in->user, &out->match);
		directory_home(in, out);
		out->source = source_of(out->match.how);
		if (in->dir == ROUTE_DIR_STALE &&
		    out->match.how == SITEMAP_DIRECTORY)
			out->source = "directory-stale";
		else if (in->dir == ROUTE_DIR_CLOUD_STALE &&
		         out->match.how == SITEMAP_DIRECTORY_CLOUD)
			out->source = "directory-cloud-stale";
	}
	if (out->match.site >= 0 && (unsigned)out->match.site < c->n_sites)
		out->home_site = out->match.site;
	else if ((out->home_site = default_site(c)) < 0)
		out->home_site = out->own_site;
	if (out->home_site < 0)
		return;
	if (c->sites[out->home_site].cloud) {
		decide_cloud(in, out);
		return;
	}
	/* a down site's users go to its fallback, proxied: the fallback's
	 * front end would only send a redirected client back */
	serve = route_fallback(c, in->site_down, out->home_site, &out->hops);
	if (serve < 0)
		return;
	if (serve != out->home_site)
		proxy(out, serve, "fallback");
	else
		decide_up(in, out);
	/* Without the directory the home site is a guess (domain line or
	 * default): proxying a wrong guess still works, a 451 would not. */
	if (in->dir == ROUTE_DIR_DOWN && out->action == ROUTE_REDIRECT &&
	    !pinned(out))
		proxy(out, out->site, "directory-down");
}

const char *route_answer_url(const struct conf *c,
			     const struct route_decision *d)
{
	int own = site_find(c, c->site);

	if (d->cloud)
		return c->sites[d->home_site].external_url;
	if (d->site >= 0 && c->sites[d->site].external_url != NULL)
		return c->sites[d->site].external_url;
	return own >= 0 ? c->sites[own].external_url : NULL;
}

size_t route_explain_autodiscover(const struct route_input *in, char *buf,
				  size_t cap)
{
	const struct conf *c = in->conf;
	struct route_input ad = *in;
	struct route_decision d;
	const char *url;
	int n;

	/* Autodiscover carries no EAS version. */
	ad.version = 0;
	ad.autodiscover = true;
	route_decide(&ad, &d);
	url = route_answer_url(c, &d);
	if (c->autodiscover != CONF_AUTODISCOVER_ANSWER)
		n = snprintf(buf, cap,
			     "autodiscover: proxied to the CAS of %s "
			     "(autodiscover: proxy)\n",
			     site_name(c, d.site));
	else if (url != NULL)
		n = snprintf(buf, cap,
			     "autodiscover: answered here with Url %s\n", url);
	else
		n = snprintf(buf, cap, "autodiscover: proxied (no site has "
				       "an external_url)\n");
	return n < 0 ? 0 : (size_t)n;
}

/* ---- explanation ---- */

/* An snprintf that appends and keeps counting past the end of the buffer. */
struct explain {
	char *buf;
	size_t cap;
	size_t len; /* what the whole text needs, excluding the NUL */
};

static void say(struct explain *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(struct explain *e, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	if (e->len < e->cap)
		n = vsnprintf(e->buf + e->len, e->cap - e->len, fmt, ap);
	else
		n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		e->len += (size_t)n;
}

static void explain_match(struct explain *e, const struct route_input *in,
                          const struct route_decision *d)
{
	const struct conf *c = in->conf;
	const struct sitemap_match *m = &d->match;
	const char *map = sitemap_name(in->map);

	if (in->user == NULL || in->user[0] == '\0') {
		say(e,
		    "user:     none (no credentials and no User parameter)\n");
		say(e, "map:      not consulted\n");
		return;
	}
	say(e, "user:     %s\n", in->user);
	if (in->map == NULL)
		say(e, "map:      no site map configured\n");
	else if (m->how == SITEMAP_USER_DB)
		say(e,
		    "map:      %s:%u: user -> database %s; %s:%u: database "
		    "%s -> site %s\n",
		    map, m->line, m->database, map, m->db_line, m->database,
		    site_name(c, m->site));
	else if (m->how == SITEMAP_USER_SITE)
		say(e, "map:      %s:%u: user -> site %s\n", map, m->line,
		    site_name(c, m->site));
	else if (m->how == SITEMAP_DOMAIN)
		say(e, "map:      %s:%u: domain %s -> site %s\n", map, m->line,
		    strrchr(in->user, '@') + 1, site_name(c, m->site));
	else if (m->how == SITEMAP_DIRECTORY)
		say(e, "map:      directory: user -> database %s; %s:%u: "
		    "database %s -> site %s\n",
		    m->database, map, m->db_line, m->database,
		    site_name(c, m->site));
	else if (m->how == SITEMAP_DIRECTORY_CLOUD)
		say(e, "map:      directory: the mailbox moved to Exchange "
		    "Online (%s) -> sitemap.ldap.cloud.site %s\n",
		    in->dir_database ? in->dir_database : "",
		    site_name(c, m->site));
	else
		say(e, "map:      %s: no user line, no domain line\n", map);
	if (dir_stale(in->dir))
		say(e, "directory: unreachable; its last answer, past its TTL, "
		    "was used\n");
	else if (in->dir == ROUTE_DIR_NO_USER)
		say(e, "directory: no such user\n");
	else if (in->dir == ROUTE_DIR_DOWN)
		say(e, "directory: unreachable and the user is not cached: "
		    "never a 451 on a guess\n");
	else if (in->dir == ROUTE_DIR_FOUND && m->how != SITEMAP_DIRECTORY)
		say(e, "directory: database %s, which the map does not place "
		    "(or a map line pins the user)\n",
		    in->dir_database);
	else if (dir_cloud(in->dir) && m->how != SITEMAP_DIRECTORY_CLOUD)
		say(e, "directory: the mailbox moved to Exchange Online (%s), "
		    "but %s\n",
		    in->dir_database ? in->dir_database : "",
		    pinned(d) ? "a map line pins the user"
		              : "sitemap.ldap.cloud names no cloud site");
}

/* Why version gets what it gets from cloud site s (rows C3, C4). */
static const char *cloud_why(const struct conf_site *s, unsigned version)
{
	if (route_cloud_takes(s, version))
		return "";
	if (version_legacy(version))
		return " (cannot follow a 451)";
	if (route_version_redirects(version))
		return " (below min_version)";
	return " (no version known to follow a 451)";
}

/* For a cloud home site: what a client of each version gets there. */
static void explain_cloud(struct explain *e, const struct route_input *in,
			  const struct route_decision *d)
{
	static const unsigned versions[] = {0, 25, 120, 121, 140, 141, 160, 161};
	const struct conf_site *s;

	if (d->home_site < 0 || !in->conf->sites[d->home_site].cloud)
		return;
	s = &in->conf->sites[d->home_site];
	if (s->min_version != 0)
		say(e, "cloud:    %s is Exchange Online, min_version %u.%u\n",
		    s->name, s->min_version / 10, s->min_version % 10);
	else
		say(e, "cloud:    %s is Exchange Online, no min_version\n",
		    s->name);
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		unsigned v = versions[i];

		if (v == 0)
			say(e, "cloud:    no version: ");
		else
			say(e, "cloud:    %u.%u: ", v / 10, v % 10);
		if (route_cloud_takes(s, v))
			say(e, "451 to %s\n", s->external_url);
		else
			say(e, "403 cloud-min-version%s\n", cloud_why(s, v));
	}
}

static void explain_home(struct explain *e, const struct route_input *in,
                         const struct route_decision *d)
{
	const struct conf *c = in->conf;

	if (d->match.site < 0)
		say(e, "home:     %s (default_site%s)\n",
		    site_name(c, d->home_site),
		    c->default_site ? "" : ", which defaults to site");
	else
		say(e, "home:     %s\n", site_name(c, d->home_site));
	say(e, "here:     %s (this front end's site)\n",
	    site_name(c, d->own_site));
	if (d->home_site < 0 || !site_down(in, d->home_site))
		return;
	say(e, "health:   every CAS of %s is down", site_name(c, d->home_site));
	for (unsigned i = 0, s = (unsigned)d->home_site; i < d->hops; i++) {
		int f = fallback_of(c, (int)s);

		if (f < 0)
			break;
		s = (unsigned)f;
		say(e, "; fallback %s is %s", site_name(c, f),
		    site_down(in, f) ? "down too" : "up");
	}
	say(e, "\n");
}

static void explain_version(struct explain *e, const struct route_input *in)
{
	if (in->version == 0)
		say(e, "version:  none given\n");
	else
		say(e, "version:  %u.%u%s\n", in->version / 10,
		    in->version % 10,
		    route_version_redirects(in->version) ? " (follows a 451)"
		    : version_legacy(in->version) ? " (cannot follow a 451)"
		                                  : " (not known to easfront)");
	say(e, "host:     %s\n", in->host && in->host[0] ? in->host : "(none)");
}

/* The sentence behind each reason code. */
static void explain_why(struct explain *e, const struct route_input *in,
                        const struct route_decision *d)
{
	const struct conf *c = in->conf;
	const char *home = site_name(c, d->home_site);
	const char *r = d->reason;

	if (strcmp(r, "local") == 0)
		say(e, "the mailbox is in this front end's site");
	else if (strcmp(r, "redirect") == 0)
		say(e,
		    "the mailbox is in %s, which has an external URL, and "
		    "the client follows a 451",
		    home);
	else if (strcmp(r, "proxy-legacy-version") == 0)
		say(e,
		    "the mailbox is in %s, but EAS 12.1 and older clients "
		    "cannot follow a 451 (KB 2751417)",
		    home);
	else if (strcmp(r, "proxy-unknown-version") == 0)
		say(e,
		    "the mailbox is in %s, but without a known protocol "
		    "version a 451 is not safe",
		    home);
	else if (strcmp(r, "proxy-no-external-url") == 0)
		say(e, "the mailbox is in %s, which has no external URL", home);
	else if (strcmp(r, "proxy-loop-guard") == 0)
		say(e,
		    "the client already used %s's own host name; a 451 "
		    "could loop",
		    home);
	else if (strcmp(r, "fallback") == 0)
		say(e,
		    "%s is down; its fallback serves, proxied (never "
		    "redirected)",
		    home);
	else if (strcmp(r, "cloud") == 0)
		say(e,
		    "the mailbox is in %s (Exchange Online), which takes this "
		    "client: 451, never proxied",
		    home);
	else if (strcmp(r, "cloud-min-version") == 0)
		say(e,
		    "the mailbox is in %s (Exchange Online), which this client "
		    "cannot reach%s: 403, never proxied",
		    home, cloud_why(&c->sites[d->home_site], in->version));
	else if (strcmp(r, "cloud-autodiscover") == 0)
		say(e,
		    "the mailbox is in %s (Exchange Online); Autodiscover goes "
		    "to this site's CAS, which knows it as a remote mailbox",
		    home);
	else if (strcmp(r, "directory-down") == 0)
		say(e,
		    "the directory cannot be reached, so %s is a guess: "
		    "proxied, never a 451 on a guess",
		    home);
	else if (d->home_site < 0)
		say(e, "the config names no usable site");
	else
		say(e, "%s is down and no fallback site is up", home);
}

size_t route_explain(const struct route_input *in,
                     const struct route_decision *d, char *buf, size_t cap)
{
	struct explain e = {buf, cap, 0};
	const struct conf *c = in->conf;

	if (cap > 0)
		buf[0] = '\0';
	explain_match(&e, in, d);
	explain_home(&e, in, d);
	explain_cloud(&e, in, d);
	explain_version(&e, in);
	if (d->action == ROUTE_REDIRECT)
		say(&e, "decision: REDIRECT 451 X-MS-Location: %s\n", d->url);
	else if (d->action == ROUTE_PROXY)
		say(&e, "decision: PROXY to the CAS pool of %s\n",
		    site_name(c, d->site));
	else
		say(&e, "decision: REJECT %u\n", d->status);
	say(&e, "reason:   %s: ", d->reason);
	explain_why(&e, in, d);
	say(&e, "\n");
	return e.len;
}
