/*
 * The routing decision of DESIGN.md: one pure function from the facts of a
 * request (user, protocol version, host name used), the site map and the
 * sites' health to what easfront does with it. No I/O, no globals, no clock:
 * the same input always gives the same decision, so every row of the design
 * table is a unit test, and `easfront route` prints exactly what a request
 * would get.
 *
 * The rows, in the order they are tried:
 * 1. The home site is the user's map entry (user, then domain); with no user,
 *    or a user the map does not know, it is default_site (default: site).
 * 2. If every CAS of the home site is down, the request is proxied to its
 *    fallback site (followed along a chain of at most n_sites hops, skipping
 *    down sites), whatever the version, never redirected: "fallback". With
 *    no fallback left: REJECT 503, "no-site-available".
 * 3. Home site == this front end's site: PROXY, "local".
 * 4. Remote site without external_url: PROXY, "proxy-no-external-url".
 * 5. The client came in by the host name of the home site's external_url:
 *    PROXY, "proxy-loop-guard" (a 451 would send it back here).
 * 6. EAS 14.0, 14.1, 16.0, 16.1: REDIRECT to external_url, "redirect".
 * 7. EAS 2.5, 12.0, 12.1: PROXY, "proxy-legacy-version" (KB 2751417).
 * 8. No version, or one not listed above: PROXY, "proxy-unknown-version".
 *
 * A cloud home site (cloud: true, Exchange Online) takes none of rows 2 to
 * 8: it has no CAS of ours and is never down.
 * C1. An Autodiscover request: PROXY to this front end's site (its
 *     fallback while it is down), "cloud-autodiscover": its CAS knows the
 *     user as a remote mailbox.
 * C2. The directory is down and the home site a guess (domain line,
 *     default): PROXY as C1, "directory-down".
 * C3. EAS 14.0+ at or above the site's min_version: REDIRECT to its
 *     external_url, "cloud".
 * C4. Any other version (<= 12.1 cannot follow a 451, below min_version
 *     the cloud refuses it, none or unknown): REJECT 403,
 *     "cloud-min-version". Never proxied.
 */
#ifndef EF_SITE_ROUTE_H
#define EF_SITE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "site/sitemap.h"

enum route_action {
	ROUTE_PROXY = 0, /* send to the CAS pool of decision.site */
	ROUTE_REDIRECT,  /* answer 451 with X-MS-Location: decision.url */
	ROUTE_REJECT,    /* answer decision.status from easfront itself */
};

/* The facts of one request. Nothing is owned; all must outlive the call. */
/* What the directory (sitemap.ldap) said of the user, when one is used. */
enum route_dir {
	ROUTE_DIR_NONE = 0, /* no directory, or not asked */
	ROUTE_DIR_FOUND,    /* dir_database is the user's home database */
	ROUTE_DIR_STALE,    /* the same, from a cached answer past its TTL:
			       the directory is unreachable */
	ROUTE_DIR_NO_USER,  /* the directory knows no such user */
	ROUTE_DIR_DOWN,     /* unreachable and nothing cached: a guess must
			       not become a 451 */
	ROUTE_DIR_CLOUD,    /* no home database: the mailbox moved to
			       Exchange Online (sitemap.ldap.cloud.site);
			       dir_database holds the evidence */
	ROUTE_DIR_CLOUD_STALE, /* the same, from a cached answer past its
				  TTL */
};

struct route_input {
	const struct conf *conf;
	const struct sitemap *map; /* may be NULL: no site map */
	const char *user;          /* normalised key (sitemap_normalise);
	                              NULL or "" = no user */
	unsigned version;          /* 0 unknown, 25, 120, 121, 140, 141, 160,
	                              161 (MS-ASProtocolVersion x 10) */
	const char *host;          /* host name the client used (no port),
	                              may be NULL */
	const unsigned char *site_down; /* n_sites flags: 1 = every CAS of that
	                                   site is down; NULL = all up */
	enum route_dir dir;         /* the directory's answer */
	const char *dir_database;   /* FOUND/STALE: the database it named;
				       CLOUD/CLOUD_STALE: what the entry
				       said (ldap_cloud_moved()) */
	bool autodiscover;          /* an Autodiscover request (version 0):
				       row C1 */
};

/* What to do with the request. Pointers are static strings or point into the
 * conf or the map of the input, valid while those live. */
struct route_decision {
	enum route_action action;
	int site;           /* PROXY: the site whose CAS pool gets the request;
	                       REDIRECT: the target site; REJECT: -1 */
	const char *url;    /* REDIRECT: that site's external_url, exactly as
	                       configured; NULL otherwise */
	unsigned status;    /* REJECT: HTTP status (503); 0 otherwise */
	const char *reason; /* short code for the access log (rows above) */
	const char *source; /* where the home site came from: "user-db",
	                       "user-site", "domain", "default", "no-user" */
	int home_site;      /* the mailbox's site before any fallback; -1 only
	                       when the conf names no usable site */
	int own_site;       /* this front end's site (conf->site), -1 if the
	                       conf does not define it */
	unsigned hops;      /* fallback hops taken (0 without fallback) */
	bool cloud;         /* home_site is a cloud site, known for sure
			       (rows C1, C3, C4; not C2's guess) */
	struct sitemap_match match; /* the map's answer (site -1 if none) */
};

/*
 * Decides what happens to the request described by in (see the rows above)
 * and fills *out. in->conf must not be NULL. Pure and thread-safe.
 */
void route_decide(const struct route_input *in, struct route_decision *out);

/*
 * Writes for `easfront route` a human-readable chain of reasons for d (made
 * by route_decide from in): the user, which map line matched, the home site,
 * the fallback path, the version and host considered, and the outcome.
 * Returns the length of the whole text (snprintf semantics: a value >= cap
 * means it was truncated); buf is always NUL-terminated when cap > 0.
 */
size_t route_explain(const struct route_input *in,
                     const struct route_decision *d, char *buf, size_t cap);

/*
 * The site that serves site's users: site itself while site_down (n_sites
 * flags, NULL: all up) does not mark it, else its fallback, followed along
 * the chain past down sites (row 2 above). Returns -1 when the chain ends
 * without an up site; *hops (may be NULL) gets the hops taken.
 */
int route_fallback(const struct conf *c, const unsigned char *site_down,
		   int site, unsigned *hops);

/* True when version (x 10) is one whose clients follow a 451 redirect. */
bool route_version_redirects(unsigned version);

/* True when a client at version (x 10) is sent to cloud site s (row C3)
 * rather than refused (C4). */
bool route_cloud_takes(const struct conf_site *s, unsigned version);

/* The URL Autodiscover hands a phone whose requests d routes: the cloud
 * site's external_url when d.cloud, else that site's, else this front
 * end's own (it proxies for such a site); NULL when none has one. */
const char *route_answer_url(const struct conf *c,
			     const struct route_decision *d);

/* One line saying what Autodiscover would do for in's user: answered here
 * with the external URL of the mailbox's site (`autodiscover: answer`), or
 * proxied. Returns bytes written (snprintf semantics). */
size_t route_explain_autodiscover(const struct route_input *in, char *buf,
				  size_t cap);

#endif
