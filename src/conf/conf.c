/*
 * Loading a config: the three phases of conf_int.h, the problem list and
 * line index they share, and the copy from libcyaml's structures into a
 * plain struct conf that nothing after the load ties to libcyaml.
 */
#include "conf/conf_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define DEFAULT_PROXY_PATH "/Microsoft-Server-ActiveSync"
#define DEFAULT_HEALTH_PATH "/Microsoft-Server-ActiveSync/healthcheck.htm"
#define DEFAULT_PID_FILE "/run/easfront.pid"
#define DEFAULT_LOG_LEVEL "info"
#define DEFAULT_GUARD_MAX_ENTRIES 1000000

void conf_err(struct conf_ctx *c, unsigned line, const char *fmt, ...)
{
	struct conf_err *e;
	va_list ap;
	char *msg;

	if (c->n_errs >= CONF_ERR_MAX) {
		c->dropped++;
		return;
	}
	if (c->n_errs == c->cap_errs) {
		unsigned cap = c->cap_errs ? 2 * c->cap_errs : 8;

		e = realloc(c->errs, cap * sizeof(*e));
		if (e == NULL) {
			c->oom = true;
			return;
		}
		c->errs = e;
		c->cap_errs = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0) {
		va_end(ap);
		c->oom = true;
		return;
	}
	va_end(ap);
	c->errs[c->n_errs] = (struct conf_err){line, c->n_errs, msg};
	c->n_errs++;
}

void conf_mark(struct conf_ctx *c, const char *path, unsigned line)
{
	struct conf_line *l;

	if (c->n_lines == c->cap_lines) {
		size_t cap = c->cap_lines ? 2 * c->cap_lines : 64;

		l = realloc(c->lines, cap * sizeof(*l));
		if (l == NULL) {
			c->oom = true;
			return;
		}
		c->lines = l;
		c->cap_lines = cap;
	}
	l = &c->lines[c->n_lines];
	l->path = strdup(path);
	if (l->path == NULL) {
		c->oom = true;
		return;
	}
	l->line = line;
	c->n_lines++;
	c->lines_sorted = false;
}

static int line_cmp(const void *a, const void *b)
{
	return strcmp(((const struct conf_line *)a)->path,
	              ((const struct conf_line *)b)->path);
}

unsigned conf_line(struct conf_ctx *c, const char *fmt, ...)
{
	struct conf_line key, *hit;
	char path[192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	if (!c->lines_sorted) {
		if (c->n_lines > 0)
			qsort(c->lines, c->n_lines, sizeof(*c->lines),
			      line_cmp);
		c->lines_sorted = true;
	}
	key.path = path;
	hit = c->n_lines == 0 ? NULL
	                      : bsearch(&key, c->lines, c->n_lines,
	                                sizeof(*c->lines), line_cmp);
	return hit ? hit->line : 0;
}

const char *conf_show(char *buf, size_t cap, const char *s, size_t len)
{
	size_t n = 0, keep = cap > 4 ? cap - 4 : 0;

	if (cap == 0)
		return "";
	for (size_t i = 0; i < len && n < keep; i++) {
		unsigned char ch = (unsigned char)s[i];

		buf[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	if (n < len && cap >= 4) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n < cap ? n : cap - 1] = '\0';
	return buf;
}

static int err_cmp(const void *a, const void *b)
{
	const struct conf_err *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The problems as "FILE:LINE: reason" lines, sorted by line; NULL when even
 * that cannot be allocated. */
static char *errs_join(struct conf_ctx *c)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	const char *sep = "";

	if (f == NULL)
		return NULL;
	qsort(c->errs, c->n_errs, sizeof(*c->errs), err_cmp);
	for (unsigned i = 0; i < c->n_errs; i++, sep = "\n")
		fprintf(f, "%s%s:%u: %s", sep, c->path, c->errs[i].line,
		        c->errs[i].msg);
	if (c->dropped > 0)
		fprintf(f, "%s%s:%u: %u more problems not listed", sep, c->path,
		        c->errs[c->n_errs - 1].line, c->dropped);
	else if (c->oom)
		fprintf(f, "%s%s:0: out of memory", sep, c->path);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

static void ctx_free(struct conf_ctx *c)
{
	for (unsigned i = 0; i < c->n_errs; i++)
		free(c->errs[i].msg);
	free(c->errs);
	for (size_t i = 0; i < c->n_lines; i++)
		free(c->lines[i].path);
	free(c->lines);
	for (unsigned i = 0; i < c->n_netbios; i++) {
		free(c->netbios[i].name);
		free(c->netbios[i].domain);
	}
	free(c->netbios);
}

static char *copy(struct conf_ctx *c, const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		c->oom = true;
	return d;
}

/* Copies n strings; *count is set only with the array, so that conf_free
 * never walks what was not allocated. */
static char **dup_list(struct conf_ctx *c, char *const *v, unsigned n,
                       unsigned *count)
{
	char **d;

	*count = 0;
	if (n == 0)
		return NULL;
	d = calloc(n, sizeof(*d));
	if (d == NULL) {
		c->oom = true;
		return NULL;
	}
	for (unsigned i = 0; i < n; i++)
		d[i] = copy(c, v[i]);
	*count = n;
	return d;
}

/* A number key: its default when absent; when present it must be >= 1,
 * unless 0 has a meaning of its own (zero_ok). */
struct num_key {
	const char *key;
	size_t off;
	unsigned def;
	bool zero_ok;
};

static const struct num_key health_keys[] = {
    {"interval", offsetof(struct conf_health, interval), 5, false},
    {"timeout", offsetof(struct conf_health, timeout), 2, false},
    {"rise", offsetof(struct conf_health, rise), 2, false},
    {"fall", offsetof(struct conf_health, fall), 3, false},
};

static const struct num_key timeout_keys[] = {
    {"handshake", offsetof(struct conf_timeouts, handshake), 10, false},
    {"client_header", offsetof(struct conf_timeouts, client_header), 15, false},
    {"client_body", offsetof(struct conf_timeouts, client_body), 60, false},
    {"idle", offsetof(struct conf_timeouts, idle), 120, false},
    {"upstream_connect", offsetof(struct conf_timeouts, upstream_connect), 5, false},
    {"upstream_response", offsetof(struct conf_timeouts, upstream_response),
     120, false},
    {"long_poll", offsetof(struct conf_timeouts, long_poll), 3660, false},
    {"drain", offsetof(struct conf_timeouts, drain), 30, false},
};

static const struct num_key limit_keys[] = {
    /* 0: no cap */
    {"connections", offsetof(struct conf_limits, connections), 200000, true},
    {"connections_per_client",
     offsetof(struct conf_limits, connections_per_client), 512, true},
};

static void numbers(struct conf_ctx *c, const char *prefix, void *base,
                    const struct num_key *k, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned *v = (unsigned *)((char *)base + k[i].off);
		unsigned line = conf_line(c, "%s.%s", prefix, k[i].key);

		if (line == 0)
			*v = k[i].def;
		else if (*v == 0 && !k[i].zero_ok)
			conf_err(c, line, "%s.%s: must be at least 1", prefix,
			         k[i].key);
	}
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct num_key ldap_keys[] = {
    {"timeout_ms", offsetof(struct conf_ldap, timeout_ms), 2000, false},
    {"cache_ttl", offsetof(struct conf_ldap, cache_ttl), 300, false},
    /* 0: a "no such user" is not remembered */
    {"negative_ttl", offsetof(struct conf_ldap, negative_ttl), 60, true},
    {"cache_size", offsetof(struct conf_ldap, cache_size), 100000, false},
    {"max_inflight", offsetof(struct conf_ldap, max_inflight), 64, false},
};

static struct conf_ldap *copy_ldap(struct conf_ctx *c,
                                   const struct conf_raw_ldap *r)
{
	struct conf_ldap *l = calloc(1, sizeof(*l));
	unsigned line = conf_line(c, "sitemap.ldap");

	if (l == NULL)
		return NULL;
	l->uris = dup_list(c, r->uris, r->uris_count, &l->n_uris);
	/* An ldap:// URI without StartTLS would send the bind password in
	 * the clear: on unless turned off. */
	l->starttls = conf_line(c, "sitemap.ldap.starttls") ? r->starttls
	                                                     : true;
	l->ca_file = copy(c, r->ca_file);
	l->bind_dn = copy(c, r->bind_dn);
	l->password_file = copy(c, r->password_file);
	l->sasl_external = r->sasl_external;
	l->base = copy(c, r->base);
	l->filter = copy(c, r->filter ? r->filter
	                              : "(|(userPrincipalName=%u)(mail=%u))");
	l->attribute = copy(c, r->attribute ? r->attribute : "homeMDB");
	l->timeout_ms = r->timeout_ms;
	l->cache_ttl = r->cache_ttl;
	l->negative_ttl = r->negative_ttl;
	l->cache_size = r->cache_size;
	l->max_inflight = r->max_inflight;
	numbers(c, "sitemap.ldap", l, ldap_keys, N(ldap_keys));
	l->line = line;
	l->cloud_site = copy(c, r->cloud.site);
	l->cloud_domains = dup_list(c, r->cloud.target_domains,
	                            r->cloud.target_domains_count,
	                            &l->n_cloud_domains);
	if (l->n_uris == 0)
		conf_err(c, line, "sitemap.ldap: uris is required");
	if (l->base == NULL)
		conf_err(c, line, "sitemap.ldap: base is required");
	return l;
}

static void free_ldap(struct conf_ldap *l)
{
	if (l == NULL)
		return;
	for (unsigned i = 0; i < l->n_uris; i++)
		free(l->uris[i]);
	free(l->uris);
	free(l->ca_file);
	free(l->bind_dn);
	free(l->password_file);
	free(l->base);
	free(l->filter);
	free(l->attribute);
	free(l->cloud_site);
	for (unsigned i = 0; i < l->n_cloud_domains; i++)
		free(l->cloud_domains[i]);
	free(l->cloud_domains);
	free(l);
}

static unsigned version_x10(const char *s, size_t len);

/* sites[i].min_version: an EAS version, as guard rules write one. */
static void copy_min_version(struct conf_ctx *c, unsigned i, const char *v,
                             struct conf_site *s)
{
	char shown[64];

	if (v == NULL)
		return;
	s->min_version = version_x10(v, strlen(v));
	if (s->min_version == 0)
		conf_err(c, conf_line(c, "sites[%u].min_version", i),
		         "sites[%u].min_version: '%s' is not an EAS version "
		         "(16.1, 14.0...)",
		         i, conf_show(shown, sizeof(shown), v, strlen(v)));
}

static void copy_site(struct conf_ctx *c, unsigned i,
                      const struct conf_raw_site *r, struct conf_site *s)
{
	char prefix[48];
	const char *hp = r->health.path;

	s->name = copy(c, r->name);
	s->external_url = copy(c, r->external_url);
	s->cas = dup_list(c, r->cas, r->cas_count, &s->n_cas);
	s->fallback = copy(c, r->fallback);
	s->proxy_path =
	    copy(c, r->proxy_path ? r->proxy_path : DEFAULT_PROXY_PATH);
	s->health = r->health;
	s->health.path = copy(c, hp ? hp : DEFAULT_HEALTH_PATH);
	/* Absent stays NULL (any status below 500 is up); "" is kept. */
	s->health.expect = copy(c, r->health.expect);
	snprintf(prefix, sizeof(prefix), "sites[%u].health", i);
	numbers(c, prefix, &s->health, health_keys, N(health_keys));
	s->line = conf_line(c, "sites[%u]", i);
	s->cloud = r->cloud;
	copy_min_version(c, i, r->min_version, s);
}

/* Allocates n zeroed elements of size sz into *v and sets *count; both stay
 * empty when n is 0 or memory runs out. */
static void *array(struct conf_ctx *c, unsigned n, size_t sz, unsigned *count)
{
	void *v = n ? calloc(n, sz) : NULL;

	*count = v ? n : 0;
	if (n && v == NULL)
		c->oom = true;
	return v;
}

static void copy_lists(struct conf_ctx *c, const struct conf_raw *r,
                       struct conf *cf)
{
	cf->listen =
	    array(c, r->listen_count, sizeof(*cf->listen), &cf->n_listen);
	for (unsigned i = 0; i < cf->n_listen; i++) {
		cf->listen[i].address = copy(c, r->listen[i].address);
		cf->listen[i].line = conf_line(c, "listen[%u]", i);
	}
	cf->certs = array(c, r->tls.certificates_count, sizeof(*cf->certs),
	                  &cf->n_certs);
	for (unsigned i = 0; i < cf->n_certs; i++) {
		cf->certs[i].cert = copy(c, r->tls.certificates[i].cert);
		cf->certs[i].key = copy(c, r->tls.certificates[i].key);
		cf->certs[i].line = conf_line(c, "tls.certificates[%u]", i);
	}
	cf->tls_hsts = r->tls.hsts;
	cf->sites = array(c, r->sites_count, sizeof(*cf->sites), &cf->n_sites);
	for (unsigned i = 0; i < cf->n_sites; i++)
		copy_site(c, i, &r->sites[i], &cf->sites[i]);
	cf->dns_servers = dup_list(c, r->dns.servers, r->dns.servers_count,
	                           &cf->n_dns_servers);
	/* How long a CAS name's answer is trusted, whatever its TTL says: an
	 * operator re-pointing a CNAME wants the low end honoured. */
	cf->dns_min_ttl = conf_line(c, "dns.min_ttl") ? r->dns.min_ttl : 1;
	cf->dns_max_ttl = conf_line(c, "dns.max_ttl") ? r->dns.max_ttl : 300;
	if (cf->dns_min_ttl == 0 || cf->dns_max_ttl < cf->dns_min_ttl)
		conf_err(c, conf_line(c, "dns.max_ttl") ? conf_line(c, "dns.max_ttl")
		                                        : conf_line(c, "dns.min_ttl"),
		         "dns: need 1 <= min_ttl <= max_ttl");
	/* The netbios pairs were read by conf_scan: move them. */
	cf->netbios = c->netbios;
	cf->n_netbios = c->n_netbios;
	c->netbios = NULL;
	c->n_netbios = c->cap_netbios = 0;
}

static void copy_scalars(struct conf_ctx *c, const struct conf_raw *r,
                         struct conf *cf)
{
	static const char *const levels[] = {"error", "warn", "info", "debug"};
	const char *def_site = r->sitemap.default_site;

	cf->path = copy(c, c->path);
	cf->site = copy(c, r->site);
	cf->upstream_ca_file = copy(c, r->upstream.ca_file);
	cf->autodiscover = r->autodiscover;
	cf->sitemap_file = copy(c, r->sitemap.file);
	if (conf_line(c, "sitemap.ldap") != 0)
		cf->ldap = copy_ldap(c, &r->sitemap.ldap);
	cf->default_site = copy(c, def_site ? def_site : r->site);
	cf->timeouts = r->timeouts;
	numbers(c, "timeouts", &cf->timeouts, timeout_keys, N(timeout_keys));
	cf->admin_listen = copy(c, r->admin.listen);
	cf->log_access = copy(c, r->log.access);
	cf->log_hash_key_file = copy(c, r->log.hash_key_file);
	cf->log_format = r->log.format;
	cf->log_hash_identities = r->log.hash_identities;
	/* error is 0, like an absent level: presence is in the index. */
	if (conf_line(c, "log.level") != 0 && r->log.level >= 0 &&
	    (size_t)r->log.level < N(levels))
		cf->log_level = copy(c, levels[r->log.level]);
	else
		cf->log_level = copy(c, DEFAULT_LOG_LEVEL);
	cf->user = copy(c, r->user);
	cf->pid_file = copy(c, r->pid_file ? r->pid_file : DEFAULT_PID_FILE);
	cf->workers = r->workers;
	cf->limits = r->limits;
	numbers(c, "limits", &cf->limits, limit_keys, N(limit_keys));
}

static const struct num_key password_keys[] = {
    /* 0 turns that half of the shield off; both 0 is conf_check's */
    {"password_failures",
     offsetof(struct conf_guard_passwords, password_failures), 3, true},
    {"user_failures", offsetof(struct conf_guard_passwords, user_failures), 10,
     true},
    {"window", offsetof(struct conf_guard_passwords, window), 1800, false},
    {"hold", offsetof(struct conf_guard_passwords, hold), 1800, false},
};

static const struct num_key throttle_keys[] = {
    /* 0: the long-polls of a device are not limited */
    {"long_polls_per_device",
     offsetof(struct conf_guard_throttle, long_polls_per_device), 2, true},
    {"retry_after", offsetof(struct conf_guard_throttle, retry_after), 300,
     false},
};

/* The buckets of guard.throttle and their defaults: the client's is off
 * unless asked for (a NAT or Exchange Online's hybrid sync puts many
 * phones behind one address). */
static const struct {
	const char *key;
	size_t off;
	struct conf_bucket def;
} buckets[] = {
    {"device", offsetof(struct conf_guard_throttle, device), {120, 60}},
    {"user", offsetof(struct conf_guard_throttle, user), {600, 60}},
    {"client", offsetof(struct conf_guard_throttle, client), {0, 60}},
};

static const struct num_key bucket_keys[] = {
    {"requests", offsetof(struct conf_bucket, requests), 0, true},
    {"per", offsetof(struct conf_bucket, per), 60, false},
};

static void copy_throttle(struct conf_ctx *c, const struct conf_raw_guard *r,
                          struct conf *cf)
{
	struct conf_guard_throttle *t = &cf->guard_throttle;
	char key[64];

	cf->guard_throttle_on = true;
	*t = r->throttle;
	numbers(c, "guard.throttle", t, throttle_keys, N(throttle_keys));
	for (size_t i = 0; i < N(buckets); i++) {
		struct conf_bucket *b =
		    (struct conf_bucket *)((char *)t + buckets[i].off);

		snprintf(key, sizeof(key), "guard.throttle.%s", buckets[i].key);
		if (conf_line(c, "%s", key) == 0) {
			*b = buckets[i].def;
			continue;
		}
		numbers(c, key, b, bucket_keys, N(bucket_keys));
		/* A bucket named without requests keeps its default size. */
		if (conf_line(c, "%s.requests", key) == 0)
			b->requests = buckets[i].def.requests;
	}
}

/* An EAS version "N.D" (N 1-99 without a leading zero, D one digit) in
 * s[0..len), times ten; 0 when it is not one. */
static unsigned version_x10(const char *s, size_t len)
{
	unsigned major = 0;

	if (len < 3 || len > 4 || s[0] == '0' || s[len - 2] != '.' ||
	    s[len - 1] < '0' || s[len - 1] > '9')
		return 0;
	for (size_t i = 0; i + 2 < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		major = major * 10 + (unsigned)(s[i] - '0');
	}
	return major * 10 + (unsigned)(s[len - 1] - '0');
}

/* "14.0", "12.0-14.1", "14.0-" or "-12.1" into inclusive bounds, an open
 * end being 0 or UINT_MAX. Returns -1 when s is none of these (a lone "-"
 * neither: it would say nothing). */
static int version_range(const char *s, unsigned *min, unsigned *max)
{
	const char *dash = strchr(s, '-');

	if (dash == NULL) {
		*min = *max = version_x10(s, strlen(s));
		return *min != 0 ? 0 : -1;
	}
	if (dash == s && dash[1] == '\0')
		return -1;
	*min = dash == s ? 0 : version_x10(s, (size_t)(dash - s));
	*max = dash[1] == '\0' ? UINT_MAX
	                       : version_x10(dash + 1, strlen(dash + 1));
	return (dash != s && *min == 0) || *max == 0 ? -1 : 0;
}

static void copy_version(struct conf_ctx *c, const char *key, const char *v,
                         struct conf_device_rule *d)
{
	unsigned line = conf_line(c, "%s", key);
	char shown[64];

	conf_show(shown, sizeof(shown), v, strlen(v));
	if (version_range(v, &d->version_min, &d->version_max) < 0)
		conf_err(c, line,
		         "%s: '%s' is not a version range (14.0, 12.0-14.1, "
		         "14.0- or -12.1)",
		         key, shown);
	else if (d->version_min > d->version_max)
		conf_err(c, line,
		         "%s: '%s' is empty: its start is above its end", key,
		         shown);
	d->has_version = true;
}

/* Which of block and allow the entry gives is known from the index only:
 * libcyaml leaves an absent mapping as zeros, like an empty one. */
static void copy_rule(struct conf_ctx *c, unsigned i,
                      const struct conf_raw_rule *r, struct conf_device_rule *d)
{
	unsigned block = conf_line(c, "guard.devices[%u].block", i);
	unsigned allow = conf_line(c, "guard.devices[%u].allow", i);
	const struct conf_raw_rule_match *m = allow ? &r->allow : &r->block;
	char key[64];

	d->line = conf_line(c, "guard.devices[%u]", i);
	if (block != 0 && allow != 0)
		conf_err(c, d->line,
		         "guard.devices[%u]: both block and allow: a rule "
		         "has one action",
		         i);
	else if (block == 0 && allow == 0)
		conf_err(c, d->line,
		         "guard.devices[%u]: expected block: or allow:", i);
	d->action = allow ? CONF_RULE_ALLOW : CONF_RULE_BLOCK;
	d->value_line = allow ? allow : block;
	d->device_id = copy(c, m->device_id);
	d->device_type = copy(c, m->device_type);
	d->user_agent = copy(c, m->user_agent);
	d->user = copy(c, m->user);
	d->cmd = copy(c, m->cmd);
	d->version_max = UINT_MAX;
	if (m->version == NULL)
		return;
	snprintf(key, sizeof(key), "guard.devices[%u].%s.version", i,
	         allow ? "allow" : "block");
	copy_version(c, key, m->version, d);
}

static void copy_guard(struct conf_ctx *c, const struct conf_raw_guard *r,
                       struct conf *cf)
{
	cf->guard_devices =
	    array(c, r->devices_count, sizeof(*cf->guard_devices),
	          &cf->n_guard_devices);
	for (unsigned i = 0; i < cf->n_guard_devices; i++)
		copy_rule(c, i, &r->devices[i], &cf->guard_devices[i]);
	/* An empty mapping turns the shield on with every default. */
	if (conf_line(c, "guard.passwords") != 0) {
		cf->guard_passwords_on = true;
		cf->guard_passwords = r->passwords;
		numbers(c, "guard.passwords", &cf->guard_passwords,
		        password_keys, N(password_keys));
	}
	if (conf_line(c, "guard.throttle") != 0)
		copy_throttle(c, r, cf);
	cf->guard_key_file = copy(c, r->key_file);
	cf->guard_store = copy(c, r->store);
	cf->guard_store_password_file = copy(c, r->store_password_file);
	cf->guard_max_entries = conf_line(c, "guard.max_entries")
	                            ? r->max_entries
	                            : DEFAULT_GUARD_MAX_ENTRIES;
}

static void free_rules(struct conf_device_rule *r, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		free(r[i].device_id);
		free(r[i].device_type);
		free(r[i].user_agent);
		free(r[i].user);
		free(r[i].cmd);
	}
	free(r);
}

static void cyaml_capture(cyaml_log_t level, void *ctx, const char *fmt,
                          va_list args) __attribute__((format(printf, 3, 0)));

static void cyaml_capture(cyaml_log_t level, void *ctx, const char *fmt,
                          va_list args)
{
	struct conf_ctx *c = ctx;
	size_t n;

	/* The first error is the cause; the rest is libcyaml's backtrace. */
	if (level < CYAML_LOG_ERROR || c->cyaml_msg[0] != '\0')
		return;
	vsnprintf(c->cyaml_msg, sizeof(c->cyaml_msg), fmt, args);
	n = strlen(c->cyaml_msg);
	while (n > 0 && c->cyaml_msg[n - 1] == '\n')
		c->cyaml_msg[--n] = '\0';
}

/* Phase 2: libcyaml's typed read, copied into a new conf. Returns NULL when
 * libcyaml refuses what conf_scan passed, or memory runs out. */
static struct conf *load_typed(struct conf_ctx *c, const char *yaml, size_t len)
{
	const cyaml_config_t cfg = {
	    .log_fn = cyaml_capture,
	    .log_ctx = c,
	    .mem_fn = cyaml_mem,
	    .log_level = CYAML_LOG_ERROR,
	    .flags = CYAML_CFG_NO_ALIAS,
	};
	struct conf_raw *raw = NULL;
	struct conf *cf;
	cyaml_err_t e;

	e = cyaml_load_data((const uint8_t *)yaml, len, &cfg, &conf_schema,
	                    (cyaml_data_t **)&raw, NULL);
	if (e != CYAML_OK) {
		/* conf_scan mirrors libcyaml's rules; reaching this is a bug
		 * in that mirror, still reported as a problem of the file. */
		conf_err(c, 1, "libcyaml: %s%s%s", cyaml_strerror(e),
		         c->cyaml_msg[0] ? ": " : "", c->cyaml_msg);
		return NULL;
	}
	cf = calloc(1, sizeof(*cf));
	if (cf == NULL)
		c->oom = true;
	else {
		copy_scalars(c, raw, cf);
		copy_lists(c, raw, cf);
		copy_guard(c, &raw->guard, cf);
	}
	cyaml_free(&cfg, &conf_schema, raw, 0);
	return cf;
}

int conf_load_mem(const char *path, const char *yaml, size_t len,
                  struct conf **out, char **err)
{
	struct conf_ctx c = {.path = path ? path : "-"};
	struct conf *cf = NULL;
	int r = -1;

	*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (yaml == NULL)
		yaml = "";
	if (len > CONF_MAX_BYTES)
		conf_err(&c, 1, "larger than %d bytes: not a config",
		         CONF_MAX_BYTES);
	else if (conf_scan(&c, yaml, len) == 0 && !c.oom)
		cf = load_typed(&c, yaml, len);
	if (cf != NULL && !c.oom)
		conf_check(&c, cf);
	if (cf != NULL && c.n_errs == 0 && c.dropped == 0 && !c.oom) {
		*out = cf;
		r = 0;
	} else {
		conf_free(cf);
		if (err != NULL)
			*err = errs_join(&c);
	}
	ctx_free(&c);
	return r;
}

/* Reads at most CONF_MAX_BYTES + 1 bytes: enough to know a file is too big
 * without reading all of it. Returns -1 with errno set. */
static int read_capped(const char *path, char **buf, size_t *len)
{
	size_t cap = 16384, n = 0;
	char *b = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int saved;

	if (b == NULL || fd < 0)
		goto fail;
	while (n <= CONF_MAX_BYTES) {
		size_t want;
		ssize_t r;

		if (n == cap) {
			char *nb = realloc(b, cap * 2);

			if (nb == NULL)
				goto fail;
			b = nb;
			cap *= 2;
		}
		want = cap - n;
		if (want > CONF_MAX_BYTES + 1 - n)
			want = CONF_MAX_BYTES + 1 - n;
		r = read(fd, b + n, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto fail;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*buf = b;
	*len = n;
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	free(b);
	errno = saved;
	return -1;
}

int conf_load(const char *path, struct conf **out, char **err)
{
	char *buf = NULL;
	size_t len = 0;
	int r;

	*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (read_capped(path, &buf, &len) < 0) {
		if (err != NULL && asprintf(err, "%s:0: cannot read: %s", path,
		                            strerror(errno)) < 0)
			*err = NULL;
		return -1;
	}
	r = conf_load_mem(path, buf, len, out, err);
	free(buf);
	return r;
}

void conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->site);
	for (unsigned i = 0; i < c->n_listen; i++)
		free(c->listen[i].address);
	free(c->listen);
	for (unsigned i = 0; i < c->n_certs; i++) {
		free(c->certs[i].cert);
		free(c->certs[i].key);
	}
	free(c->certs);
	for (unsigned i = 0; i < c->n_sites; i++) {
		struct conf_site *s = &c->sites[i];

		free(s->name);
		free(s->external_url);
		for (unsigned j = 0; j < s->n_cas; j++)
			free(s->cas[j]);
		free(s->cas);
		free(s->fallback);
		free(s->proxy_path);
		free(s->health.path);
		free(s->health.expect);
	}
	free(c->sites);
	free(c->upstream_ca_file);
	for (unsigned i = 0; i < c->n_dns_servers; i++)
		free(c->dns_servers[i]);
	free(c->dns_servers);
	free(c->sitemap_file);
	free_ldap(c->ldap);
	free(c->default_site);
	for (unsigned i = 0; i < c->n_netbios; i++) {
		free(c->netbios[i].name);
		free(c->netbios[i].domain);
	}
	free(c->netbios);
	free(c->admin_listen);
	free(c->log_access);
	free(c->log_hash_key_file);
	free(c->log_level);
	free(c->user);
	free(c->pid_file);
	free_rules(c->guard_devices, c->n_guard_devices);
	free(c->guard_key_file);
	free(c->guard_store);
	free(c->guard_store_password_file);
	free(c);
}

const struct conf_site *conf_site_find(const struct conf *c, const char *name)
{
	if (c == NULL || name == NULL)
		return NULL;
	for (unsigned i = 0; i < c->n_sites; i++)
		if (strcmp(c->sites[i].name, name) == 0)
			return &c->sites[i];
	return NULL;
}
