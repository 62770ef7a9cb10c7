/*
 * `easfront preflight`: checks the namespace before it is trusted with
 * phones. Every external and CAS name must resolve (through the same
 * resolver the daemon uses, so CNAME chains and TTLs are the real ones) and
 * every name a phone may use must be on a configured certificate whose chain
 * is complete and not about to expire. One line per finding; exit 1 when
 * anything is wrong.
 */
#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "conf/conf.h"
#include "dns/dns.h"
#include "tls/tls.h"

/* A certificate expiring sooner than this is a finding. */
#define PREFLIGHT_EXPIRY_DAYS 21

struct lookup {
	char name[256];
	const char *role; /* "external", "cas", "autodiscover", "cloud" */
	const char *site;
	int status;	  /* -2: pending */
	struct dns_addrs addrs;
	struct event_base *base;
	unsigned *pending;
};

static void lookup_done(int status, const struct dns_addrs *a, void *arg)
{
	struct lookup *l = arg;

	l->status = status;
	if (a != NULL)
		l->addrs = *a;
	if (--*l->pending == 0)
		event_base_loopexit(l->base, NULL);
}

static void addrs_print(const struct dns_addrs *a)
{
	for (unsigned i = 0; i < a->n_cname; i++)
		printf(" -> CNAME %s", a->cname_chain[i]);
	for (unsigned i = 0; i < a->n; i++) {
		char ip[INET6_ADDRSTRLEN] = "?";
		const struct sockaddr_storage *ss = &a->addr[i];

		if (ss->ss_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
				  ip, sizeof(ip));
		else
			inet_ntop(AF_INET6,
				  &((const struct sockaddr_in6 *)ss)->sin6_addr, ip,
				  sizeof(ip));
		printf("%s%s", i ? ", " : " -> ", ip);
	}
	/* An address literal answers itself: it has no TTL to show. */
	if (a->ttl != UINT32_MAX)
		printf(" (TTL %u)", a->ttl);
}

static void add_lookup(struct lookup *ls, unsigned *n, unsigned cap,
		       const char *url, const char *role, const char *site)
{
	struct conf_url u;

	if (url == NULL || *n >= cap || conf_url_parse(url, &u, NULL) != 0 ||
	    u.host.len >= sizeof(ls[0].name))
		return;
	memset(&ls[*n], 0, sizeof(ls[*n]));
	memcpy(ls[*n].name, u.host.p, u.host.len);
	ls[*n].role = role;
	ls[*n].site = site;
	ls[*n].status = -2;
	(*n)++;
}

/* A cloud site: its URL's name must resolve (phones are sent there), but
 * it is Microsoft's, on Microsoft's certificate, with no autodiscover name
 * of ours. Without min_version every 14.0+ client is sent there, whether
 * the cloud takes it or not: worth a warning. */
static void cloud_lookup(struct lookup *ls, unsigned *n, unsigned cap,
			 const struct conf_site *s)
{
	add_lookup(ls, n, cap, s->external_url, "cloud", s->name);
	if (s->min_version == 0)
		printf("warn %s %-12s no min_version: EAS 14.0 to 16.0 "
		       "clients get a 451 to %s, which Exchange Online refuses "
		       "below 16.1 since March 2026\n",
		       s->name, "cloud", s->external_url);
}

/* Resolves every lookup at once, bounded by the resolver's own timeouts. */
static int resolve_all(const struct conf *c, struct lookup *ls, unsigned n)
{
	struct event_base *base = event_base_new();
	struct dns_resolver *r;
	unsigned pending = 0;
	char *err = NULL;

	if (base == NULL)
		return -1;
	r = dns_resolver_new(base, c->dns_servers, c->n_dns_servers, &err);
	if (r == NULL) {
		printf("FAIL dns: %s\n", err ? err : "no resolver");
		free(err);
		event_base_free(base);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		ls[i].base = base;
		ls[i].pending = &pending;
		pending++;
		if (dns_resolve(r, ls[i].name, lookup_done, &ls[i]) == NULL) {
			pending--;
			ls[i].status = -1;
		}
	}
	if (pending > 0)
		event_base_dispatch(base);
	dns_resolver_free(r);
	event_base_free(base);
	return 0;
}

/* autodiscover.<domain> for an external host "name.domain": the name
 * phones try first when set up with an address at that domain. */
static void autodiscover_name(const char *host, char *out, size_t cap)
{
	const char *dot = strchr(host, '.');

	out[0] = '\0';
	if (dot != NULL && strchr(dot + 1, '.') != NULL)
		snprintf(out, cap, "autodiscover%s", dot);
}

static int check_names(const struct conf *c, const struct lookup *ls,
		       unsigned n, const struct tls_server *ts)
{
	int bad = 0;

	for (unsigned i = 0; i < n; i++) {
		const struct lookup *l = &ls[i];
		bool ok = l->status == 0 && l->addrs.n > 0;

		printf("%s %s %-12s %s", ok ? "ok  " : "FAIL", l->site, l->role,
		       l->name);
		if (ok)
			addrs_print(&l->addrs);
		else
			printf(": does not resolve%s",
			       l->status == 1 ? " (no such name)" : "");
		printf("\n");
		bad |= !ok;
		if (strcmp(l->role, "cas") == 0 || strcmp(l->role, "cloud") == 0 ||
		    ts == NULL)
			continue;
		/* What phones connect to must be on a certificate. */
		if (!tls_server_covers(ts, l->name)) {
			printf("FAIL %s %-12s %s is on no configured "
			       "certificate\n",
			       l->site, "certificate", l->name);
			bad = 1;
		}
	}
	(void)c;
	return bad;
}

int daemon_preflight(const char *conf_path)
{
	struct conf *c = NULL;
	struct tls_server *ts;
	struct lookup *ls;
	char *err = NULL, ad[300];
	unsigned n = 0, cap;
	int bad = 0;

	if (conf_load(conf_path, &c, &err) != 0) {
		fprintf(stderr, "%s\n", err ? err : "cannot read the config");
		free(err);
		return 1;
	}
	cap = 4 * c->n_sites;
	for (unsigned i = 0; i < c->n_sites; i++)
		cap += c->sites[i].n_cas;
	ls = calloc(cap ? cap : 1, sizeof(*ls));
	ts = tls_server_new(c, &err);
	if (ts == NULL) {
		printf("FAIL certificates: %s\n", err ? err : "cannot load");
		free(err);
		err = NULL;
		bad = 1;
	}
	for (unsigned i = 0; ls != NULL && i < c->n_sites; i++) {
		const struct conf_site *s = &c->sites[i];

		if (s->cloud) {
			cloud_lookup(ls, &n, cap, s);
			continue;
		}
		add_lookup(ls, &n, cap, s->external_url, "external", s->name);
		if (n > 0 && strcmp(ls[n - 1].role, "external") == 0 &&
		    strcmp(ls[n - 1].site, s->name) == 0) {
			char url[400];

			autodiscover_name(ls[n - 1].name, ad, sizeof(ad));
			snprintf(url, sizeof(url), "https://%s/", ad);
			if (ad[0] != '\0')
				add_lookup(ls, &n, cap, url, "autodiscover",
					   s->name);
		}
		for (unsigned j = 0; j < s->n_cas; j++)
			add_lookup(ls, &n, cap, s->cas[j], "cas", s->name);
	}
	if (ls == NULL || resolve_all(c, ls, n) != 0)
		bad = 1;
	else
		bad |= check_names(c, ls, n, ts);
	if (tls_preflight_certs(c, PREFLIGHT_EXPIRY_DAYS, &err) != 0) {
		printf("FAIL %s\n", err ? err : "certificates");
		bad = 1;
	} else {
		printf("ok   certificates: chains complete, none expires "
		       "within %u days\n",
		       PREFLIGHT_EXPIRY_DAYS);
	}
	free(err);
	tls_server_free(ts);
	free(ls);
	conf_free(c);
	printf("%s\n", bad ? "preflight: problems found" : "preflight: ok");
	return bad ? 1 : 0;
}
