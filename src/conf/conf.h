/*
 * The configuration: read from YAML with libcyaml against a schema, validated
 * whole, then immutable. Key names are the operators' interface (DESIGN.md):
 * they may grow, never change.
 */
#ifndef EF_CONF_CONF_H
#define EF_CONF_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/str.h"

/* Largest config accepted, in bytes: a real one is a few KiB; more is a
 * mistake or an attack on the parser. */
#define CONF_MAX_BYTES (1024 * 1024)
/* Problems listed in *err; beyond, one last line counts the rest. */
#define CONF_ERR_MAX 100
/* Upper bound for workers (0 means one per online CPU). */
#define CONF_WORKERS_MAX 256
/* Most guard.devices rules (guard/rules.h's RULES_MAX is this): a list
 * checked on every request should stay short. */
#define CONF_GUARD_RULES_MAX 1024

enum conf_autodiscover {
	CONF_AUTODISCOVER_PROXY = 0, /* default */
	CONF_AUTODISCOVER_ANSWER,
};

enum conf_log_format {
	CONF_LOG_JSON = 0, /* default */
	CONF_LOG_TEXT,
};

struct conf_listen {
	char *address;	/* "IP:PORT" or "[IPv6]:PORT", as written */
	unsigned line;	/* line of the entry in the config file */
};

struct conf_cert {
	char *cert;	/* PEM chain, leaf first */
	char *key;	/* PEM private key */
	unsigned line;
};

struct conf_health {
	char *path;	   /* default /Microsoft-Server-ActiveSync/healthcheck.htm */
	unsigned interval; /* s, default 5 */
	unsigned timeout;  /* s, default 2 */
	unsigned rise;	   /* default 2 */
	unsigned fall;	   /* default 3 */
	char *expect;	   /* NULL (default): any status below 500 is
			      healthy; else a 200 whose body starts with
			      this ("" accepts any 200) */
};

struct conf_site {
	char *name;
	char *external_url; /* NULL: the site has no external URL */
	char **cas;	    /* n_cas URLs, http:// or https://; none for a
			       cloud site */
	unsigned n_cas;
	bool cloud;	    /* Exchange Online (DESIGN.md "Mailboxes in
			       Exchange Online"): 451 or 403, never proxied */
	unsigned min_version; /* cloud: lowest EAS version x 10 it takes
				 (161 for "16.1"); 0: none */
	char *fallback;	    /* NULL: none */
	char *proxy_path;   /* default /Microsoft-Server-ActiveSync */
	struct conf_health health;
	unsigned line;
};

struct conf_netbios {
	char *name;   /* NetBIOS domain, e.g. CONTOSO */
	char *domain; /* DNS domain, e.g. contoso.com */
	unsigned line;
};

/* sitemap.ldap: the directory that answers user -> home database. */
struct conf_ldap {
	char **uris;	     /* ldap:// (StartTLS), ldaps:// or ldapi:// */
	unsigned n_uris;
	bool starttls;	     /* default true for ldap:// */
	char *ca_file;	     /* NULL: libldap's default store */
	char *bind_dn;	     /* NULL: anonymous (or SASL EXTERNAL) */
	char *password_file; /* first line: the bind password */
	bool sasl_external;
	char *base;	     /* search base, required */
	char *filter;	     /* default (|(userPrincipalName=%u)(mail=%u)) */
	char *attribute;     /* default homeMDB */
	unsigned timeout_ms;   /* one lookup, default 2000 */
	unsigned cache_ttl;    /* s, default 300 */
	unsigned negative_ttl; /* s, default 60 */
	unsigned cache_size;   /* entries, default 100000 */
	unsigned max_inflight; /* searches per worker, default 64 */
	char *cloud_site;      /* cloud.site: where moved mailboxes go (a
				  cloud site); NULL: no cloud lookup */
	char **cloud_domains;  /* cloud.target_domains: the tenant's
				  routing domains */
	unsigned n_cloud_domains;
	unsigned line;
};

struct conf_timeouts {		/* all in seconds */
	unsigned handshake;	/* TLS handshake, default 10 */
	unsigned client_header; /* request head after the first byte, 15 */
	unsigned client_body;	/* gap between request body reads, 60 */
	unsigned idle;		/* keep-alive between requests, 120 */
	unsigned upstream_connect; /* 5 */
	unsigned upstream_response; /* first response byte, non-held, 120 */
	unsigned long_poll;	/* first response byte, held commands, 3660 */
	unsigned drain;		/* SIGTERM: in-flight requests, 30 */
};

/* One entry of guard.devices: `- block: {...}` or `- allow: {...}`. A field
 * left NULL (version: has_version false) matches anything; a rule matches
 * when every field it names matches. */
enum conf_rule_action {
	CONF_RULE_BLOCK = 0,
	CONF_RULE_ALLOW,
};

struct conf_device_rule {
	enum conf_rule_action action;
	char *device_id;   /* POSIX extended regex, case-insensitive, against
			      the DeviceId as the access log writes it */
	char *device_type; /* regex, against the DeviceType */
	char *user_agent;  /* regex, against the User-Agent header */
	char *user;	   /* the user as routing normalises it (what `easfront
			      route` prints), compared case-insensitively */
	char *cmd;	   /* an EAS command name ("Sync", "Ping", "OPTIONS"),
			      compared case-insensitively */
	bool has_version;  /* version: "14.0", "12.0-14.1", "14.0-", "-12.1" */
	unsigned version_min; /* x10 (121 for 12.1), inclusive */
	unsigned version_max; /* x10, inclusive; UINT_MAX when open */
	unsigned line;	      /* line of the entry ("- block: ...") */
	unsigned value_line;  /* line of the block/allow mapping's value */
};

/* A token bucket of guard.throttle: requests tokens at the most (the
 * burst), refilled at requests every per seconds. requests 0: off. */
struct conf_bucket {
	unsigned requests;
	unsigned per; /* s */
};

/* guard.throttle (DESIGN.md "Edge protection"). */
struct conf_guard_throttle {
	struct conf_bucket device; /* per DeviceId, default 120 per 60 */
	struct conf_bucket user;   /* per user, default 600 per 60 */
	struct conf_bucket client; /* per client address, default off */
	unsigned long_polls_per_device; /* Pings held at once by the CAS
					   for one DeviceId, default 2; 0: no
					   limit */
	unsigned retry_after;	   /* s, Retry-After of a 503, default 300 */
};

/* guard.passwords: the password shield (DESIGN.md "Edge protection"). */
struct conf_guard_passwords {
	unsigned password_failures; /* default 3; 0: off */
	unsigned user_failures;	    /* default 10; 0: no guessing hold */
	unsigned window;	    /* s, default 1800 */
	unsigned hold;		    /* s, default 1800 */
};

struct conf_limits {
	unsigned connections;		/* default 200000 */
	unsigned connections_per_client; /* default 512 */
};

/* Every pointer below is owned by the conf and freed by conf_free; nothing
 * refers to libcyaml's or libyaml's memory. */
struct conf {
	char *path;	/* the file it was read from */
	char *site;	/* this front end's site */
	struct conf_listen *listen;
	unsigned n_listen;
	struct conf_cert *certs; /* tls.certificates; certs[0] is default */
	unsigned n_certs;
	unsigned tls_hsts;	 /* tls.hsts: Strict-Transport-Security
				    max-age in s; 0 (default): none */
	struct conf_site *sites;
	unsigned n_sites;
	char *upstream_ca_file;	 /* upstream.ca_file; NULL: system store */
	enum conf_autodiscover autodiscover;
	char **dns_servers;	 /* dns.servers; NULL: /etc/resolv.conf */
	unsigned n_dns_servers;
	unsigned dns_min_ttl;	 /* dns.min_ttl: s, default 1 */
	unsigned dns_max_ttl;	 /* dns.max_ttl: s, default 300 */
	char *sitemap_file;	 /* sitemap.file; NULL: none */
	char *default_site;	 /* sitemap.default_site; defaults to site */
	struct conf_netbios *netbios; /* sitemap.netbios */
	struct conf_ldap *ldap;	 /* sitemap.ldap; NULL: no directory */
	unsigned n_netbios;
	struct conf_timeouts timeouts;
	char *admin_listen;	 /* admin.listen; NULL: no admin endpoint */
	char *log_access;	 /* log.access; NULL: no access log, "-": stdout */
	enum conf_log_format log_format;
	bool log_hash_identities;
	char *log_hash_key_file; /* log.hash_key_file: secret for the hash;
				    NULL: a random key per start */
	char *log_level;	 /* log.level: error|warn|info|debug, default info */
	char *user;		 /* NULL: no privilege drop */
	char *pid_file;		 /* pid_file; default /run/easfront.pid */
	unsigned workers;	 /* 0 (default): one per online CPU */
	struct conf_limits limits;
	struct conf_device_rule *guard_devices; /* guard.devices, in order */
	unsigned n_guard_devices;
	bool guard_passwords_on;	 /* guard.passwords present */
	struct conf_guard_passwords guard_passwords;
	char *guard_key_file;	 /* guard.key_file; NULL: random per start */
	unsigned guard_max_entries; /* guard.max_entries, default 1000000 */
	char *guard_store;          /* guard.store: redis://HOST[:PORT][/DB];
	                               NULL: each front end counts alone */
	char *guard_store_password_file; /* guard.store_password_file: the
	                                    AUTH password; NULL: none */
	bool guard_throttle_on;	 /* guard.throttle present */
	struct conf_guard_throttle guard_throttle;
};

/*
 * Reads and validates the config at path. On success returns 0 and *out is a
 * new conf owned by the caller (free with conf_free). On failure returns -1
 * and, when err is not NULL, *err is a malloc'd text with one
 * "FILE:LINE: reason" line per problem (all of them, not just the first, up
 * to CONF_ERR_MAX), sorted by line, separated by '\n' without a final one.
 * LINE is 0 only when the file could not be read at all. *err is NULL on
 * success (and when even the message could not be allocated).
 * Checks: YAML syntax, unknown keys, wrong types, missing required keys
 * (site, listen, tls.certificates, sites with name, and cas unless cloud),
 * cloud sites with cas, fallback or no external_url, duplicate site
 * names, site / fallback / default_site naming no site, URLs that are not
 * http(s), listen addresses that do not parse. Files named (certificates,
 * site map) are not opened here. Also refused: files over CONF_MAX_BYTES,
 * more than one YAML document, anchors and aliases, numbers with a sign or
 * leading zero, timeouts and health values of 0, workers over
 * CONF_WORKERS_MAX, an http:// external_url; a guard.devices entry without
 * exactly one of block and allow, or naming no field, a regex regcomp
 * refuses (or too large once its counts are expanded), a version range
 * that does not parse, guard.passwords and guard.max_entries out of range.
 */
int conf_load(const char *path, struct conf **out, char **err);

/* Same as conf_load but from memory; path is used in messages only. */
int conf_load_mem(const char *path, const char *yaml, size_t len,
		  struct conf **out, char **err);

/* Frees a conf; NULL is accepted. */
void conf_free(struct conf *c);

/* Returns the site called name (exact match), or NULL. */
const struct conf_site *conf_site_find(const struct conf *c, const char *name);

/* An absolute http:// or https:// URL taken apart; views into the string
 * given to conf_url_parse, valid while it lives. */
struct conf_url {
	bool https;
	struct str host; /* name or address; an IPv6 literal without brackets */
	uint16_t port;	 /* as written, else 443 or 80 */
	struct str path; /* empty, or from the first '/' to the end */
};

/*
 * Splits s, an http:// or https:// URL (scheme in any case) with a non-empty
 * host, an optional port 1-65535 and an optional path; no user info, query,
 * fragment, spaces or control bytes. Returns 0, or -1 with *why (when not
 * NULL) set to a static reason. The checks conf_load applies to cas and
 * external_url, for the parts that connect to or print them.
 */
int conf_url_parse(const char *s, struct conf_url *u, const char **why);

/*
 * Parses a listen address, "IPv4:PORT" or "[IPv6]:PORT" with PORT 1-65535,
 * into *ss and *len (either may be NULL) with inet_pton: no name lookup, no
 * socket. Returns 0, or -1 with *why (when not NULL) set to a static reason.
 */
int conf_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len,
		    const char **why);

#endif
