/*
 * Private to src/conf: what the phases of one load share.
 *
 * A load runs in three phases over the same bytes:
 *   1. conf_scan (conf_scan.c) walks libyaml's events against the libcyaml
 *      schema below: YAML syntax, unknown keys, wrong types, missing keys,
 *      each with its line, and builds the line index (key path -> line) and
 *      the netbios pairs, which libcyaml cannot express;
 *   2. only when phase 1 found nothing, libcyaml loads the typed struct
 *      conf_raw, which conf.c copies into a plain struct conf;
 *   3. conf_check (conf_check.c) validates meaning, naming lines through
 *      the index.
 * One schema serves both readers, so they cannot drift apart.
 */
#ifndef EF_CONF_CONF_INT_H
#define EF_CONF_CONF_INT_H

#include <stdarg.h>

#include <cyaml/cyaml.h>

#include "conf/conf.h"

#define CONF_STR_MAX 4096 /* longest string value, in bytes */
#define CONF_DEPTH_MAX 32 /* deepest nesting walked before giving up */
#define CONF_NETBIOS_MAX 4096

/* What libcyaml fills; mirrors the YAML, not struct conf. Owned by libcyaml
 * (cyaml_free) once loaded. */
struct conf_raw_listen {
	char *address;
};

struct conf_raw_site {
	char *name;
	char *external_url;
	char **cas;
	unsigned cas_count;
	char *fallback;
	char *proxy_path;
	struct conf_health health;
	bool cloud;
	char *min_version; /* parsed by conf.c */
};

struct conf_raw_tls {
	struct conf_cert *certificates; /* line left 0 by libcyaml */
	unsigned certificates_count;
	unsigned hsts;
};

struct conf_raw_upstream {
	char *ca_file;
};

struct conf_raw_dns {
	char **servers;
	unsigned servers_count;
	unsigned min_ttl;
	unsigned max_ttl;
};

struct conf_raw_ldap {
	char **uris;
	unsigned uris_count;
	bool starttls;
	char *ca_file;
	char *bind_dn;
	char *password_file;
	bool sasl_external;
	char *base;
	char *filter;
	char *attribute;
	unsigned timeout_ms;
	unsigned cache_ttl;
	unsigned negative_ttl;
	unsigned cache_size;
	unsigned max_inflight;
	struct conf_raw_ldap_cloud {
		char *site;
		char **target_domains;
		unsigned target_domains_count;
	} cloud;
};

struct conf_raw_sitemap {
	char *file;
	char *default_site;
	struct conf_raw_ldap ldap;
	/* netbios is read by conf_scan: a mapping with free keys */
};

struct conf_raw_admin {
	char *listen;
};

struct conf_raw_log {
	char *access;
	enum conf_log_format format;
	bool hash_identities;
	char *hash_key_file;
	int level; /* enum log_level */
};

/* guard.devices[].block or .allow: the fields one rule names. */
struct conf_raw_rule_match {
	char *device_id;
	char *device_type;
	char *user_agent;
	char *user;
	char *cmd;
	char *version; /* parsed by conf.c into version_min/max */
};

/* One entry of guard.devices: exactly one of the two is given, which only
 * the line index tells (an absent mapping is all NULL). */
struct conf_raw_rule {
	struct conf_raw_rule_match block;
	struct conf_raw_rule_match allow;
};

struct conf_raw_guard {
	struct conf_raw_rule *devices;
	unsigned devices_count;
	struct conf_guard_passwords passwords;
	struct conf_guard_throttle throttle;
	char *key_file;
	unsigned max_entries;
	char *store;
	char *store_password_file;
};

struct conf_raw {
	char *site;
	struct conf_raw_listen *listen;
	unsigned listen_count;
	struct conf_raw_tls tls;
	struct conf_raw_site *sites;
	unsigned sites_count;
	struct conf_raw_upstream upstream;
	enum conf_autodiscover autodiscover;
	struct conf_raw_dns dns;
	struct conf_raw_sitemap sitemap;
	struct conf_timeouts timeouts;
	struct conf_raw_admin admin;
	struct conf_raw_log log;
	char *user;
	char *pid_file;
	unsigned workers;
	struct conf_limits limits;
	struct conf_raw_guard guard;
};

/* The top of the schema: a pointer to struct conf_raw. */
extern const cyaml_schema_value_t conf_schema;

struct conf_err {
	unsigned line;
	unsigned seq; /* order found, to keep the sort stable */
	char *msg;    /* owned */
};

struct conf_line {
	char *path; /* "sites[1].health.interval"; owned */
	unsigned line;
};

/* One load's state: the problems found and what phase 1 learnt. */
struct conf_ctx {
	const char *path; /* as given by the caller; not owned */
	struct conf_err *errs;
	unsigned n_errs, cap_errs;
	unsigned dropped; /* problems beyond CONF_ERR_MAX */
	bool oom;
	struct conf_line *lines; /* the line index */
	size_t n_lines, cap_lines;
	bool lines_sorted;
	struct conf_netbios *netbios; /* moved into the conf on success */
	unsigned n_netbios, cap_netbios;
	char cyaml_msg[256]; /* libcyaml's first error message */
};

/* Records a problem at line. */
void conf_err(struct conf_ctx *c, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records that the value at path (e.g. "sites[0].cas") starts at line. */
void conf_mark(struct conf_ctx *c, const char *path, unsigned line);
/* Returns the line of the value at the formatted path, 0 when absent. */
unsigned conf_line(struct conf_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Writes a printable, shortened copy of s[0..len) into buf for messages:
 * the file may hold anything, the terminal reading *err should not. */
const char *conf_show(char *buf, size_t cap, const char *s, size_t len);

/* Phase 1 over yaml[0..len); returns 0 when the document matches the schema,
 * -1 when it does not (problems recorded in c). */
int conf_scan(struct conf_ctx *c, const char *yaml, size_t len);
/* Phase 3: records every semantic problem of cf in c. */
void conf_check(struct conf_ctx *c, const struct conf *cf);

#endif
