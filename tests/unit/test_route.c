/*
 * The routing decision, one table row per case: every row of the DESIGN.md
 * table and its edges, then the explanation text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "site/route.h"

#define URL(h) "https://" h "/Microsoft-Server-ActiveSync"

static struct conf_netbios netbios[] = {
    {.name = "CONTOSO", .domain = "contoso.com"}};

static struct conf_site sites[] = {
    {.name = "site1",
     .external_url = URL("site1-eas.contoso.com"),
     .fallback = "site2"},
    {.name = "site2",
     .external_url = URL("site2-eas.contoso.com"),
     .fallback = "site3"},
    {.name = "site3", .fallback = "SITE1"},
    {.name = "site4", .external_url = URL("eas4.contoso.com:8443")},
    {.name = "site5",
     .external_url = URL("site5.contoso.com"),
     .fallback = "site6"},
    {.name = "site6",
     .external_url = URL("site6.contoso.com"),
     .fallback = "site5"},
    {.name = "site7", .external_url = ""},
};
#define N_SITES (sizeof(sites) / sizeof(sites[0]))

static struct conf conf = {
    .path = "test.yaml",
    .site = "site1",
    .sites = sites,
    .n_sites = N_SITES,
    .default_site = "site1",
    .netbios = netbios,
    .n_netbios = 1,
};

static const char map_text[] = "database DB01 site1\n"          /* 1 */
                               "database DB02 site2\n"          /* 2 */
                               "database DB03 site3\n"          /* 3 */
                               "database DB04 site4\n"          /* 4 */
                               "user local@contoso.com DB01\n"  /* 5 */
                               "user alice@contoso.com DB02\n"  /* 6 */
                               "user CONTOSO\\bob site1\n"      /* 7 */
                               "user carol@contoso.com site2\n" /* 8 */
                               "user dave@contoso.com DB03\n"   /* 9 */
                               "user erin@contoso.com DB04\n"   /* 10 */
                               "user frank@contoso.com site5\n" /* 11 */
                               "user gina@contoso.com site7\n"  /* 12 */
                               "domain fabrikam.com site2\n";   /* 13 */

static struct sitemap *map;

#define S1 0x01U
#define S2 0x02U
#define S3 0x04U
#define S4 0x08U
#define S5 0x10U
#define S6 0x20U
#define S7 0x40U

#define P ROUTE_PROXY
#define R ROUTE_REDIRECT
#define X ROUTE_REJECT

struct row {
	const char *name;
	const char *user; /* as a client sends it; NULL: none */
	unsigned version;
	const char *host;
	unsigned down;    /* S1...: sites whose CAS are all down */
	const char *dflt; /* default_site; NULL: site1; "-": not set */
	int nomap;        /* run without a site map */
	/* expected */
	enum route_action action;
	int site;
	const char *reason;
	const char *source;
	int home;
	unsigned line;
};

static const struct row rows[] = {
    /* own site: proxied locally, whatever the version */
    {"own site, 14.1", "local@contoso.com", 141, NULL, 0, NULL, 0, P, 0,
     "local", "user-db", 0, 5},
    {"own site, 2.5", "local@contoso.com", 25, NULL, 0, NULL, 0, P, 0, "local",
     "user-db", 0, 5},
    {"own site, no version", "local@contoso.com", 0, NULL, 0, NULL, 0, P, 0,
     "local", "user-db", 0, 5},
    {"own site by NetBIOS user", "CONTOSO\\Bob", 161, NULL, 0, NULL, 0, P, 0,
     "local", "user-site", 0, 7},
    {"own site, host is its own name", "local@contoso.com", 141,
     "site1-eas.contoso.com", 0, NULL, 0, P, 0, "local", "user-db", 0, 5},
    /* remote site with an external URL, 14.0+: 451 */
    {"remote 14.0", "alice@contoso.com", 140, NULL, 0, NULL, 0, R, 1,
     "redirect", "user-db", 1, 6},
    {"remote 14.1", "alice@contoso.com", 141, NULL, 0, NULL, 0, R, 1,
     "redirect", "user-db", 1, 6},
    {"remote 16.0", "alice@contoso.com", 160, NULL, 0, NULL, 0, R, 1,
     "redirect", "user-db", 1, 6},
    {"remote 16.1", "alice@contoso.com", 161, NULL, 0, NULL, 0, R, 1,
     "redirect", "user-db", 1, 6},
    {"remote by user-site line", "carol@contoso.com", 141, NULL, 0, NULL, 0, R,
     1, "redirect", "user-site", 1, 8},
    {"remote by domain line", "x@FABRIKAM.com", 141, NULL, 0, NULL, 0, R, 1,
     "redirect", "domain", 1, 13},
    /* remote, older or unknown versions: proxied */
    {"remote 2.5", "alice@contoso.com", 25, NULL, 0, NULL, 0, P, 1,
     "proxy-legacy-version", "user-db", 1, 6},
    {"remote 12.0", "alice@contoso.com", 120, NULL, 0, NULL, 0, P, 1,
     "proxy-legacy-version", "user-db", 1, 6},
    {"remote 12.1", "alice@contoso.com", 121, NULL, 0, NULL, 0, P, 1,
     "proxy-legacy-version", "user-db", 1, 6},
    {"remote, no version (OPTIONS)", "alice@contoso.com", 0, NULL, 0, NULL, 0,
     P, 1, "proxy-unknown-version", "user-db", 1, 6},
    {"remote, version 13.0", "alice@contoso.com", 130, NULL, 0, NULL, 0, P, 1,
     "proxy-unknown-version", "user-db", 1, 6},
    {"remote, version 17.0", "alice@contoso.com", 170, NULL, 0, NULL, 0, P, 1,
     "proxy-unknown-version", "user-db", 1, 6},
    /* remote without external URL: proxied */
    {"remote, no external_url", "dave@contoso.com", 141, NULL, 0, NULL, 0, P, 2,
     "proxy-no-external-url", "user-db", 2, 9},
    {"remote, empty external_url", "gina@contoso.com", 161, NULL, 0, NULL, 0, P,
     6, "proxy-no-external-url", "user-site", 6, 12},
    {"remote, no external_url, 2.5", "dave@contoso.com", 25, NULL, 0, NULL, 0,
     P, 2, "proxy-no-external-url", "user-db", 2, 9},
    /* the client already used the remote site's own name */
    {"loop guard", "alice@contoso.com", 141, "site2-eas.contoso.com", 0, NULL,
     0, P, 1, "proxy-loop-guard", "user-db", 1, 6},
    {"loop guard, host case", "alice@contoso.com", 141, "SITE2-EAS.Contoso.COM",
     0, NULL, 0, P, 1, "proxy-loop-guard", "user-db", 1, 6},
    {"loop guard, trailing dot", "alice@contoso.com", 160,
     "site2-eas.contoso.com.", 0, NULL, 0, P, 1, "proxy-loop-guard", "user-db",
     1, 6},
    {"loop guard, host with port", "alice@contoso.com", 160,
     "site2-eas.contoso.com:443", 0, NULL, 0, P, 1, "proxy-loop-guard",
     "user-db", 1, 6},
    {"loop guard, URL with port", "erin@contoso.com", 141, "eas4.contoso.com",
     0, NULL, 0, P, 3, "proxy-loop-guard", "user-db", 3, 10},
    {"loop guard before version", "alice@contoso.com", 25,
     "site2-eas.contoso.com", 0, NULL, 0, P, 1, "proxy-loop-guard", "user-db",
     1, 6},
    {"shared name: no loop", "alice@contoso.com", 141, "eas.contoso.com", 0,
     NULL, 0, R, 1, "redirect", "user-db", 1, 6},
    {"own site's name: no loop", "alice@contoso.com", 141,
     "site1-eas.contoso.com", 0, NULL, 0, R, 1, "redirect", "user-db", 1, 6},
    {"longer name is not the name", "alice@contoso.com", 141,
     "site2-eas.contoso.com.evil", 0, NULL, 0, R, 1, "redirect", "user-db", 1,
     6},
    {"empty host", "alice@contoso.com", 141, "", 0, NULL, 0, R, 1, "redirect",
     "user-db", 1, 6},
    /* no user / unknown user: default_site, then the rows above */
    {"no user", NULL, 141, NULL, 0, NULL, 0, P, 0, "local", "no-user", 0, 0},
    {"OPTIONS, no user, no version", "", 0, NULL, 0, NULL, 0, P, 0, "local",
     "no-user", 0, 0},
    {"OPTIONS, no user, default remote", NULL, 0, NULL, 0, "site2", 0, P, 1,
     "proxy-unknown-version", "no-user", 1, 0},
    {"base64 query without User, 14.1, default remote", NULL, 141, NULL, 0,
     "site2", 0, R, 1, "redirect", "no-user", 1, 0},
    {"unknown user, default remote, 14.1", "zed@contoso.com", 141, NULL, 0,
     "site2", 0, R, 1, "redirect", "default", 1, 0},
    {"unknown user, default remote, 12.1", "zed@contoso.com", 121, NULL, 0,
     "site2", 0, P, 1, "proxy-legacy-version", "default", 1, 0},
    {"unknown user, default is own site", "zed@contoso.com", 141, NULL, 0, NULL,
     0, P, 0, "local", "default", 0, 0},
    {"unknown user, default not set", "zed@contoso.com", 141, NULL, 0, "-", 0,
     P, 0, "local", "default", 0, 0},
    {"unknown user, default names a site in other case", "zed@contoso.com", 141,
     NULL, 0, "SITE2", 0, R, 1, "redirect", "default", 1, 0},
    {"no map", "alice@contoso.com", 141, NULL, 0, NULL, 1, P, 0, "local",
     "default", 0, 0},
    {"no map, default remote", "alice@contoso.com", 141, NULL, 0, "site2", 1, R,
     1, "redirect", "default", 1, 0},
    /* the home site is down: its fallback, proxied, any version */
    {"down: fallback, 14.1", "alice@contoso.com", 141, NULL, S2, NULL, 0, P, 2,
     "fallback", "user-db", 1, 6},
    {"down: fallback, 2.5", "alice@contoso.com", 25, NULL, S2, NULL, 0, P, 2,
     "fallback", "user-db", 1, 6},
    {"down: fallback with external_url still proxied", "frank@contoso.com", 161,
     NULL, S5, NULL, 0, P, 5, "fallback", "user-site", 4, 11},
    {"down: fallback to own site", "dave@contoso.com", 141, NULL, S3, NULL, 0,
     P, 0, "fallback", "user-db", 2, 9},
    {"down: chain of two", "alice@contoso.com", 141, NULL, S2 | S3, NULL, 0, P,
     0, "fallback", "user-db", 1, 6},
    {"down: own site, fallback remote", "local@contoso.com", 141, NULL, S1,
     NULL, 0, P, 1, "fallback", "user-db", 0, 5},
    {"down: no user, default down", NULL, 0, NULL, S1, NULL, 0, P, 1,
     "fallback", "no-user", 0, 0},
    {"down: no fallback", "erin@contoso.com", 141, NULL, S4, NULL, 0, X, -1,
     "no-site-available", "user-db", 3, 10},
    {"down: empty url, no fallback", "gina@contoso.com", 141, NULL, S7, NULL, 0,
     X, -1, "no-site-available", "user-site", 6, 12},
    {"down: fallback down too, loop", "frank@contoso.com", 141, NULL, S5 | S6,
     NULL, 0, X, -1, "no-site-available", "user-site", 4, 11},
    {"down: the whole ring", "alice@contoso.com", 141, NULL, S1 | S2 | S3, NULL,
     0, X, -1, "no-site-available", "user-db", 1, 6},
    {"down: other sites do not matter", "alice@contoso.com", 141, NULL,
     S1 | S3 | S4, NULL, 0, R, 1, "redirect", "user-db", 1, 6},
};

static void decide_row(const struct row *t, struct route_input *in,
                       struct route_decision *d, unsigned char *down, char *key,
                       size_t cap)
{
	for (unsigned i = 0; i < N_SITES; i++)
		down[i] = (t->down >> i) & 1U;
	conf.default_site = t->dflt == NULL             ? "site1"
	                    : strcmp(t->dflt, "-") == 0 ? NULL
	                                                : (char *)t->dflt;
	key[0] = '\0';
	if (t->user != NULL && t->user[0] != '\0')
		assert_true(sitemap_normalise(&conf, t->user, key, cap) > 0);
	*in = (struct route_input){
	    .conf = &conf,
	    .map = t->nomap ? NULL : map,
	    .user = t->user ? key : NULL,
	    .version = t->version,
	    .host = t->host,
	    .site_down = t->down ? down : NULL,
	};
	route_decide(in, d);
}

static void test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *t = &rows[i];
		unsigned char down[N_SITES];
		char key[SITEMAP_KEY_MAX + 1], text[2048];
		struct route_input in;
		struct route_decision d;
		size_t n;

		decide_row(t, &in, &d, down, key, sizeof(key));
		if (d.action != t->action || d.site != t->site ||
		    strcmp(d.reason, t->reason) != 0 ||
		    strcmp(d.source, t->source) != 0 ||
		    d.home_site != t->home || d.match.line != t->line)
			fail_msg("row \"%s\": action %d site %d reason %s "
			         "source %s home %d line %u",
			         t->name, d.action, d.site, d.reason, d.source,
			         d.home_site, d.match.line);
		assert_int_equal(d.own_site, 0);
		/* the URL is the configured string itself, never rebuilt */
		if (d.action == ROUTE_REDIRECT)
			assert_ptr_equal(d.url, sites[d.site].external_url);
		else
			assert_null(d.url);
		assert_int_equal(d.status, d.action == ROUTE_REJECT ? 503 : 0);
		/* every row can be explained, and the text ends the same way */
		n = route_explain(&in, &d, text, sizeof(text));
		assert_true(n > 0 && n < sizeof(text));
		assert_int_equal(strlen(text), n);
		assert_non_null(strstr(text, t->reason));
	}
	conf.default_site = "site1";
}

/* The directory answers user -> database; the map places the database;
 * a map user line still pins; a directory that is down never yields a 451
 * on a guess. */
static void test_directory(void **state)
{
	static const struct {
		const char *user;
		enum route_dir dir;
		const char *db;
		enum route_action action;
		int site;
		const char *reason, *source;
	} cases[] = {
	    /* a user the map does not know, placed by the directory */
	    {"zed@nowhere.example", ROUTE_DIR_FOUND, "DB02", ROUTE_REDIRECT, 1,
	     "redirect", "directory"},
	    {"zed@nowhere.example", ROUTE_DIR_STALE, "db02", ROUTE_REDIRECT, 1,
	     "redirect", "directory-stale"},
	    {"zed@nowhere.example", ROUTE_DIR_FOUND, "DB01", ROUTE_PROXY, 0,
	     "local", "directory"},
	    /* a database the map does not place: default site */
	    {"zed@nowhere.example", ROUTE_DIR_FOUND, "DB99", ROUTE_PROXY, 0,
	     "local", "default"},
	    /* the map's user line pins alice to DB02 whatever the directory */
	    {"alice@contoso.com", ROUTE_DIR_FOUND, "DB01", ROUTE_REDIRECT, 1,
	     "redirect", "user-db"},
	    /* directory down: alice's pin still redirects ... */
	    {"alice@contoso.com", ROUTE_DIR_DOWN, NULL, ROUTE_REDIRECT, 1,
	     "redirect", "user-db"},
	    {"zed@nowhere.example", ROUTE_DIR_NO_USER, NULL, ROUTE_PROXY, 0,
	     "local", "default"},
	};
	struct conf c2 = conf;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct route_input in = {.conf = &conf, .map = map,
					 .user = cases[i].user, .version = 141,
					 .dir = cases[i].dir,
					 .dir_database = cases[i].db};
		struct route_decision d;

		route_decide(&in, &d);
		assert_int_equal(d.action, cases[i].action);
		assert_int_equal(d.site, cases[i].site);
		assert_string_equal(d.reason, cases[i].reason);
		assert_string_equal(d.source, cases[i].source);
	}
	/* ... but a guess does not: default site remote, directory down */
	c2.default_site = "site2";
	{
		struct route_input in = {.conf = &c2, .map = map,
					 .user = "zed@nowhere.example",
					 .version = 141, .dir = ROUTE_DIR_DOWN};
		struct route_decision d;

		route_decide(&in, &d);
		assert_int_equal(d.action, ROUTE_PROXY);
		assert_int_equal(d.site, 1);
		assert_string_equal(d.reason, "directory-down");
		{
			char text[2048];

			route_explain(&in, &d, text, sizeof(text));
			assert_non_null(strstr(text, "never a 451 on a guess"));
			assert_null(strstr(text, "no fallback site is up"));
		}
		in.dir = ROUTE_DIR_NO_USER;
		route_decide(&in, &d);
		assert_int_equal(d.action, ROUTE_REDIRECT);
	}
}

static void test_route_hops(void **state)
{
	unsigned char down[N_SITES] = {1, 1, 1, 0, 0, 0, 0};
	char key[] = "alice@contoso.com";
	struct route_input in = {.conf = &conf,
	                         .map = map,
	                         .user = key,
	                         .version = 141,
	                         .site_down = down};
	struct route_decision d;

	(void)state;
	/* the ring site2 -> site3 -> site1 -> site2 ends after n_sites hops */
	route_decide(&in, &d);
	assert_int_equal(d.action, ROUTE_REJECT);
	assert_int_equal(d.hops, N_SITES);
	down[0] = 0;
	route_decide(&in, &d);
	assert_int_equal(d.action, ROUTE_PROXY);
	assert_int_equal(d.site, 0);
	assert_int_equal(d.hops, 2);
}

static void test_broken_conf(void **state)
{
	struct conf c = conf;
	struct route_input in = {.conf = &c, .version = 141};
	struct route_decision d;
	char buf[1024];

	(void)state;
	/* a conf the validator would refuse: no own site, no default */
	c.site = "nowhere";
	c.default_site = NULL;
	route_decide(&in, &d);
	assert_int_equal(d.action, ROUTE_REJECT);
	assert_int_equal(d.status, 503);
	assert_int_equal(d.home_site, -1);
	assert_int_equal(d.own_site, -1);
	route_explain(&in, &d, buf, sizeof(buf));
	assert_non_null(strstr(buf, "no usable site"));
	/* own site unknown, default known: every site is remote */
	c.default_site = "site1";
	route_decide(&in, &d);
	assert_int_equal(d.action, ROUTE_REDIRECT);
	assert_int_equal(d.site, 0);
	/* a fallback naming no site ends the chain */
	struct conf_site s[2] = {sites[0], sites[1]};
	unsigned char down[2] = {1, 0};

	s[0].fallback = "gone";
	c = conf;
	c.sites = s;
	c.n_sites = 2;
	in.site_down = down;
	route_decide(&in, &d);
	assert_int_equal(d.action, ROUTE_REJECT);
	assert_string_equal(d.reason, "no-site-available");
}

/* The explanation names the lines and sites a person needs to check. */
struct explain_case {
	const char *row; /* name of a row above */
	const char *want[4];
};

static const struct explain_case explain_cases[] = {
    {"remote 14.1",
     {"user:     alice@contoso.com\n",
      "map:      t.tsv:6: user -> database DB02; t.tsv:2: database DB02 "
      "-> site site2\n",
      "decision: REDIRECT 451 X-MS-Location: "
      "https://site2-eas.contoso.com/Microsoft-Server-ActiveSync\n",
      "version:  14.1 (follows a 451)\n"}},
    {"remote by domain line",
     {"map:      t.tsv:13: domain fabrikam.com -> site site2\n",
      "home:     site2\nhere:     site1 (this front end's site)\n"}},
    {"own site by NetBIOS user",
     {"map:      t.tsv:7: user -> site site1\n",
      "decision: PROXY to the CAS pool of site1\n",
      "reason:   local: the mailbox is in this front end's site\n"}},
    {"no user", {"user:     none", "home:     site1 (default_site)\n"}},
    {"unknown user, default not set",
     {"map:      t.tsv: no user line, no domain line\n",
      "home:     site1 (default_site, which defaults to site)\n"}},
    {"no map", {"map:      no site map configured\n"}},
    {"remote 2.5", {"version:  2.5 (cannot follow a 451)\n", "KB 2751417"}},
    {"remote, version 13.0", {"version:  13.0 (not known to easfront)\n"}},
    {"remote, no version (OPTIONS)",
     {"version:  none given\n", "host:     (none)\n"}},
    {"loop guard", {"host:     site2-eas.contoso.com\n", "could loop"}},
    {"down: chain of two",
     {"health:   every CAS of site2 is down; fallback site3 is down too; "
      "fallback site1 is up\n",
      "decision: PROXY to the CAS pool of site1\n"}},
    {"down: no fallback",
     {"health:   every CAS of site4 is down\n", "decision: REJECT 503\n",
      "site4 is down and no fallback site is up"}},
};

static void test_explain(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(explain_cases) / sizeof(explain_cases[0]);
	     i++) {
		const struct explain_case *e = &explain_cases[i];
		const struct row *t = NULL;
		unsigned char down[N_SITES];
		char key[SITEMAP_KEY_MAX + 1], text[2048];
		struct route_input in;
		struct route_decision d;

		for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
			if (strcmp(rows[r].name, e->row) == 0)
				t = &rows[r];
		assert_non_null(t);
		decide_row(t, &in, &d, down, key, sizeof(key));
		route_explain(&in, &d, text, sizeof(text));
		for (size_t w = 0; w < 4 && e->want[w]; w++)
			if (strstr(text, e->want[w]) == NULL)
				fail_msg("%s: no \"%s\" in:\n%s", e->row,
				         e->want[w], text);
	}
	conf.default_site = "site1";
}

static void test_explain_truncates(void **state)
{
	unsigned char down[N_SITES];
	char key[SITEMAP_KEY_MAX + 1], full[2048], small[2048];
	struct route_input in;
	struct route_decision d;
	size_t n;

	(void)state;
	decide_row(&rows[6], &in, &d, down, key, sizeof(key));
	n = route_explain(&in, &d, full, sizeof(full));
	assert_int_equal(route_explain(&in, &d, NULL, 0), n);
	for (size_t cap = 1; cap <= n + 1; cap++) {
		memset(small, 'Z', sizeof(small));
		assert_int_equal(route_explain(&in, &d, small, cap), n);
		assert_int_equal(strlen(small), cap - 1);
		assert_memory_equal(small, full, cap - 1);
		assert_int_equal(small[cap], 'Z');
	}
}

/* ---- cloud sites (rows C1 to C4) ---- */

#define EXO URL("outlook.office365.com")
#define EXO2 URL("cloud2.example")

static struct conf_site csites[] = {
    {.name = "site1", .external_url = URL("site1-eas.contoso.com"),
     .fallback = "site2"},
    {.name = "site2", .external_url = URL("site2-eas.contoso.com")},
    {.name = "exo", .cloud = true, .external_url = EXO, .min_version = 161},
    {.name = "exo2", .cloud = true, .external_url = EXO2},
};

static struct conf_ldap cldap = {.cloud_site = "exo"};

static struct conf cconf = {
    .path = "c.yaml",
    .site = "site1",
    .sites = csites,
    .n_sites = sizeof(csites) / sizeof(csites[0]),
    .default_site = "site1",
    .ldap = &cldap,
};

static const char cmap_text[] = "database DB01 site1\n"        /* 1 */
                                "user tsv@contoso.com exo\n"   /* 2 */
                                "user old@contoso.com EXO2\n"  /* 3 */
                                "user pin@contoso.com DB01\n"  /* 4 */
                                "domain cloudy.com exo\n";     /* 5 */

#define WHY "msExchRecipientTypeDetails 2147483648 (RemoteUserMailbox)"

struct cloud_row {
	const char *name;
	const char *user;
	unsigned version;
	enum route_dir dir;
	bool autodiscover;
	unsigned down;    /* S1...: sites whose CAS are all down */
	bool no_cloud;    /* sitemap.ldap.cloud absent */
	/* expected */
	enum route_action action;
	int site;
	unsigned status;
	const char *reason;
	const char *source;
	bool cloud;
};

#define D0 ROUTE_DIR_NONE
#define DC ROUTE_DIR_CLOUD

static const struct cloud_row cloud_rows[] = {
    /* the TSV map puts a user on a cloud site */
    {"tsv 16.1", "tsv@contoso.com", 161, D0, 0, 0, 0, R, 2, 0, "cloud",
     "user-site", 1},
    {"tsv 16.0", "tsv@contoso.com", 160, D0, 0, 0, 0, X, -1, 403,
     "cloud-min-version", "user-site", 1},
    {"tsv 14.1", "tsv@contoso.com", 141, D0, 0, 0, 0, X, -1, 403,
     "cloud-min-version", "user-site", 1},
    {"tsv 14.0", "tsv@contoso.com", 140, D0, 0, 0, 0, X, -1, 403,
     "cloud-min-version", "user-site", 1},
    {"tsv 12.1", "tsv@contoso.com", 121, D0, 0, 0, 0, X, -1, 403,
     "cloud-min-version", "user-site", 1},
    {"tsv 2.5", "tsv@contoso.com", 25, D0, 0, 0, 0, X, -1, 403,
     "cloud-min-version", "user-site", 1},
    {"tsv, no version", "tsv@contoso.com", 0, D0, 0, 0, 0, X, -1, 403,
     "cloud-min-version", "user-site", 1},
    {"tsv, unknown 17.0", "tsv@contoso.com", 170, D0, 0, 0, 0, X, -1, 403,
     "cloud-min-version", "user-site", 1},
    /* a cloud site never falls back, even if flagged down */
    {"tsv 16.1, cloud flagged down", "tsv@contoso.com", 161, D0, 0, S3, 0, R,
     2, 0, "cloud", "user-site", 1},
    /* no min_version: every client that follows a 451 */
    {"no min_version, 14.0", "old@contoso.com", 140, D0, 0, 0, 0, R, 3, 0,
     "cloud", "user-site", 1},
    {"no min_version, 12.1", "old@contoso.com", 121, D0, 0, 0, 0, X, -1, 403,
     "cloud-min-version", "user-site", 1},
    /* the directory says the mailbox moved */
    {"directory 16.1", "zed@nowhere.example", 161, DC, 0, 0, 0, R, 2, 0,
     "cloud", "directory-cloud", 1},
    {"directory stale 14.1", "zed@nowhere.example", 141,
     ROUTE_DIR_CLOUD_STALE, 0, 0, 0, X, -1, 403, "cloud-min-version",
     "directory-cloud-stale", 1},
    {"directory, a user line pins", "pin@contoso.com", 161, DC, 0, 0, 0, P, 0,
     0, "local", "user-db", 0},
    {"directory, no cloud site configured", "zed@nowhere.example", 161, DC, 0,
     0, 1, P, 0, 0, "local", "default", 0},
    /* Autodiscover: this site's CAS, or its fallback */
    {"autodiscover", "zed@nowhere.example", 0, DC, 1, 0, 0, P, 0, 0,
     "cloud-autodiscover", "directory-cloud", 1},
    {"autodiscover, own site down", "tsv@contoso.com", 0, D0, 1, S1, 0, P, 1,
     0, "cloud-autodiscover", "user-site", 1},
    /* directory down: a domain line's guess is proxied, never answered */
    {"directory down, guess", "x@cloudy.com", 161, ROUTE_DIR_DOWN, 0, 0, 0, P,
     0, 0, "directory-down", "domain", 0},
    {"directory down, guess, 12.1", "x@cloudy.com", 121, ROUTE_DIR_DOWN, 0, 0,
     0, P, 0, 0, "directory-down", "domain", 0},
    {"directory down, pinned", "tsv@contoso.com", 161, ROUTE_DIR_DOWN, 0, 0, 0,
     R, 2, 0, "cloud", "user-site", 1},
};

static void decide_cloud_row(const struct cloud_row *t, struct sitemap *m,
                             struct route_input *in, struct route_decision *d,
                             unsigned char *down)
{
	for (unsigned i = 0; i < cconf.n_sites; i++)
		down[i] = (t->down >> i) & 1U;
	cconf.ldap = t->no_cloud ? NULL : &cldap;
	*in = (struct route_input){
	    .conf = &cconf,
	    .map = m,
	    .user = t->user,
	    .version = t->version,
	    .site_down = down,
	    .dir = t->dir,
	    .dir_database = t->dir == DC || t->dir == ROUTE_DIR_CLOUD_STALE
	                        ? WHY
	                        : NULL,
	    .autodiscover = t->autodiscover,
	};
	route_decide(in, d);
}

static void test_cloud(void **state)
{
	char *err = NULL;
	struct sitemap *m = sitemap_load_mem(&cconf, "c.tsv", cmap_text,
	                                     strlen(cmap_text), &err);

	(void)state;
	assert_non_null(m);
	for (size_t i = 0; i < sizeof(cloud_rows) / sizeof(cloud_rows[0]); i++) {
		const struct cloud_row *t = &cloud_rows[i];
		unsigned char down[8];
		struct route_input in;
		struct route_decision d;
		char text[4096];
		size_t n;

		decide_cloud_row(t, m, &in, &d, down);
		if (d.action != t->action || d.site != t->site ||
		    d.status != t->status || strcmp(d.reason, t->reason) != 0 ||
		    strcmp(d.source, t->source) != 0 || d.cloud != t->cloud)
			fail_msg("row \"%s\": action %d site %d status %u reason "
			         "%s source %s cloud %d",
			         t->name, d.action, d.site, d.status, d.reason,
			         d.source, d.cloud);
		if (d.action == ROUTE_REDIRECT)
			assert_ptr_equal(d.url, csites[d.site].external_url);
		n = route_explain(&in, &d, text, sizeof(text));
		assert_true(n > 0 && n < sizeof(text));
		assert_non_null(strstr(text, t->reason));
	}
	cconf.ldap = &cldap;
	sitemap_free(m);
}

/* The explanation says which attribute moved the user and what every
 * version gets; Autodiscover answers with the cloud URL. */
static void test_cloud_explain(void **state)
{
	char *err = NULL;
	struct sitemap *m = sitemap_load_mem(&cconf, "c.tsv", cmap_text,
	                                     strlen(cmap_text), &err);
	unsigned char down[8];
	struct route_input in;
	struct route_decision d;
	char text[4096];

	(void)state;
	assert_non_null(m);
	decide_cloud_row(&cloud_rows[11], m, &in, &d, down);
	in.version = 141;
	route_decide(&in, &d);
	route_explain(&in, &d, text, sizeof(text));
	assert_non_null(strstr(text, "directory: the mailbox moved to Exchange "
	                             "Online (" WHY ") -> "
	                             "sitemap.ldap.cloud.site exo\n"));
	assert_non_null(strstr(text, "cloud:    exo is Exchange Online, "
	                             "min_version 16.1\n"));
	assert_non_null(strstr(text, "cloud:    12.1: 403 cloud-min-version "
	                             "(cannot follow a 451)\n"));
	assert_non_null(strstr(text, "cloud:    14.0: 403 cloud-min-version "
	                             "(below min_version)\n"));
	assert_non_null(strstr(text, "cloud:    16.1: 451 to " EXO "\n"));
	assert_non_null(strstr(text, "decision: REJECT 403\n"));
	/* Autodiscover: answered with the cloud URL, or proxied here */
	cconf.autodiscover = CONF_AUTODISCOVER_ANSWER;
	route_explain_autodiscover(&in, text, sizeof(text));
	assert_string_equal(text, "autodiscover: answered here with Url " EXO
	                          "\n");
	cconf.autodiscover = CONF_AUTODISCOVER_PROXY;
	route_explain_autodiscover(&in, text, sizeof(text));
	assert_string_equal(text, "autodiscover: proxied to the CAS of site1 "
	                          "(autodiscover: proxy)\n");
	/* no min_version: said so */
	decide_cloud_row(&cloud_rows[9], m, &in, &d, down);
	route_explain(&in, &d, text, sizeof(text));
	assert_non_null(strstr(text, "exo2 is Exchange Online, no min_version"));
	assert_non_null(strstr(text, "cloud:    14.0: 451 to " EXO2 "\n"));
	sitemap_free(m);
}

static int setup(void **state)
{
	char *err = NULL;

	(void)state;
	map =
	    sitemap_load_mem(&conf, "t.tsv", map_text, strlen(map_text), &err);
	if (map == NULL) {
		fprintf(stderr, "%s\n", err);
		free(err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sitemap_free(map);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rows),
	    cmocka_unit_test(test_route_hops),
	    cmocka_unit_test(test_directory),
	    cmocka_unit_test(test_broken_conf),
	    cmocka_unit_test(test_explain),
	    cmocka_unit_test(test_explain_truncates),
	    cmocka_unit_test(test_cloud),
	    cmocka_unit_test(test_cloud_explain),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
