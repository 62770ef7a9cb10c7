/*
 * The config reader: the shipped example, defaults, line numbers, and one
 * table row per kind of problem, each expected as "t.yaml:LINE: reason".
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "conf/conf.h"

#define CONF_NETBIOS_MAX_TEST 4096

/* Lines 1-10; rows append from line 11 on. */
#define MINIMAL                                                                \
	"site: a\n"                                                            \
	"listen:\n"                                                            \
	"  - address: \"127.0.0.1:8443\"\n"                                    \
	"tls:\n"                                                               \
	"  certificates:\n"                                                    \
	"    - cert: c.pem\n"                                                  \
	"      key: k.pem\n"                                                   \
	"sites:\n"                                                             \
	"  - name: a\n"                                                        \
	"    cas: [ \"https://cas.a\" ]\n"

static struct conf *load_ok(const char *yaml)
{
	struct conf *c = NULL;
	char *err = NULL;
	int r = conf_load_mem("t.yaml", yaml, strlen(yaml), &c, &err);

	if (r != 0)
		print_error("unexpected failure:\n%s\n", err ? err : "(null)");
	assert_int_equal(r, 0);
	assert_null(err);
	assert_non_null(c);
	return c;
}

static char *load_bad(const char *yaml, size_t len)
{
	struct conf *c = (struct conf *)1;
	char *err = NULL;

	assert_int_equal(conf_load_mem("t.yaml", yaml, len, &c, &err), -1);
	assert_null(c);
	assert_non_null(err);
	return err;
}

/* Fails unless err has a line starting with want. */
static void assert_has_line(const char *err, const char *want)
{
	size_t n = strlen(want);

	for (const char *p = err; p != NULL && *p != '\0';) {
		if (strncmp(p, want, n) == 0)
			return;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	print_error("no line starting with\n  %s\nin\n%s\n", want, err ? err : "(no error)");
	fail();
}

static unsigned count_lines(const char *s)
{
	unsigned n = *s ? 1 : 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void test_example_file(void **state)
{
	const char *path = EF_EXAMPLE_CONF;
	struct conf *c = NULL;
	char *err = NULL;
	const struct conf_site *s1;

	if (conf_load(path, &c, &err) != 0)
		print_error("%s\n", err);
	assert_null(err);
	assert_non_null(c);
	assert_string_equal(c->path, path);
	assert_string_equal(c->site, "site1");
	assert_int_equal(c->n_listen, 2);
	assert_string_equal(c->listen[1].address, "[2001:db8:1::10]:443");
	assert_int_equal(c->n_certs, 2);
	assert_int_equal(c->n_sites, 2);
	s1 = conf_site_find(c, "site1");
	assert_ptr_equal(s1, &c->sites[0]);
	assert_string_equal(s1->fallback, "site2");
	assert_int_equal(s1->n_cas, 2);
	assert_int_equal(c->sites[1].n_cas, 2);
	assert_string_equal(c->sites[1].cas[1], "https://10.2.0.12:8443");
	assert_int_equal(c->n_netbios, 2);
	assert_string_equal(c->netbios[1].name, "FABRIKAM");
	assert_string_equal(c->netbios[1].domain, "fabrikam.com");
	assert_int_equal(c->n_dns_servers, 2);
	assert_int_equal(c->autodiscover, CONF_AUTODISCOVER_PROXY);
	assert_string_equal(c->admin_listen, "127.0.0.1:9090");
	assert_string_equal(c->sitemap_file, "/etc/easfront/sitemap.tsv");
	assert_string_equal(c->user, "easfront");
	assert_int_equal(c->timeouts.long_poll, 3660);
	assert_int_equal(c->n_guard_devices, 3);
	assert_int_equal(c->guard_devices[0].action, CONF_RULE_ALLOW);
	assert_true(c->guard_passwords_on);
	assert_int_equal(c->guard_passwords.password_failures, 3);
	assert_int_equal(c->guard_max_entries, 1000000);
	conf_free(c);
}

static void test_minimal_defaults(void **state)
{
	struct conf *c = load_ok(MINIMAL);
	const struct conf_site *s = &c->sites[0];

	assert_string_equal(c->path, "t.yaml");
	assert_string_equal(c->default_site, "a");
	assert_null(s->external_url);
	assert_null(s->fallback);
	assert_string_equal(s->proxy_path, "/Microsoft-Server-ActiveSync");
	assert_string_equal(s->health.path,
	                    "/Microsoft-Server-ActiveSync/healthcheck.htm");
	assert_int_equal(s->health.interval, 5);
	assert_int_equal(s->health.timeout, 2);
	assert_int_equal(s->health.rise, 2);
	assert_int_equal(s->health.fall, 3);
	assert_null(c->upstream_ca_file);
	assert_null(c->dns_servers);
	assert_int_equal(c->n_dns_servers, 0);
	assert_null(c->sitemap_file);
	assert_null(c->netbios);
	assert_null(c->admin_listen);
	assert_null(c->log_access);
	assert_null(c->user);
	assert_int_equal(c->log_format, CONF_LOG_JSON);
	assert_false(c->log_hash_identities);
	assert_string_equal(c->log_level, "info");
	assert_string_equal(c->pid_file, "/run/easfront.pid");
	assert_int_equal(c->workers, 0);
	assert_int_equal(c->tls_hsts, 0);
	assert_int_equal(c->autodiscover, CONF_AUTODISCOVER_PROXY);
	assert_int_equal(c->timeouts.handshake, 10);
	assert_int_equal(c->timeouts.client_header, 15);
	assert_int_equal(c->timeouts.client_body, 60);
	assert_int_equal(c->timeouts.idle, 120);
	assert_int_equal(c->timeouts.upstream_connect, 5);
	assert_int_equal(c->timeouts.upstream_response, 120);
	assert_int_equal(c->timeouts.long_poll, 3660);
	assert_int_equal(c->timeouts.drain, 30);
	assert_int_equal(c->limits.connections, 200000);
	assert_int_equal(c->limits.connections_per_client, 512);
	assert_null(c->guard_devices);
	assert_int_equal(c->n_guard_devices, 0);
	assert_false(c->guard_passwords_on);
	assert_null(c->guard_key_file);
	assert_int_equal(c->guard_max_entries, 1000000);
	assert_null(c->guard_store);
	assert_null(c->guard_store_password_file);
	conf_free(c);
}

/* 0 is "no cap", for either limit, and neither then bounds the other. */
static void test_limits_zero(void **state)
{
	struct conf *c = load_ok(
	    "site: a\n"
	    "listen: [{address: \"127.0.0.1:443\"}]\n"
	    "tls: {certificates: [{cert: c.pem, key: k.pem}]}\n"
	    "sites: [{name: a, cas: [\"http://cas.a\"]}]\n"
	    "limits: {connections: 0, connections_per_client: 0}\n");

	(void)state;
	assert_int_equal(c->limits.connections, 0);
	assert_int_equal(c->limits.connections_per_client, 0);
	conf_free(c);
}

static void test_tls_hsts(void **state)
{
	struct conf *c = load_ok(
	    "site: a\n"
	    "listen: [{address: \"127.0.0.1:443\"}]\n"
	    "tls: {certificates: [{cert: c.pem, key: k.pem}], hsts: 31536000}\n"
	    "sites: [{name: a, cas: [\"http://cas.a\"]}]\n");

	(void)state;
	assert_int_equal(c->tls_hsts, 31536000);
	conf_free(c);
}

static void test_values_and_lines(void **state)
{
	struct conf *c = load_ok(
	    "# comment\n"
	    "site: b\n"
	    "listen:\n"
	    "  - address: \"127.0.0.1:8443\"\n"
	    "  - {address: \"[::1]:8443\"}\n"
	    "tls:\n"
	    "  certificates:\n"
	    "    - cert: c.pem\n"
	    "      key: k.pem\n"
	    "    - {cert: c2.pem, key: k2.pem}\n"
	    "sites:\n"
	    "  - name: a\n"
	    "    cas: [ \"http://cas.a:8080/x\" ]\n"
	    "    health: {interval: 7, timeout: 1, rise: 1, fall: 9,\n"
	    "             path: /h, expect: \"\"}\n"
	    "  -\n"
	    "    name: b\n"
	    "    fallback: a\n"
	    "    external_url: HTTPS://b.example\n"
	    "    cas:\n"
	    "      - https://[2001:db8::1]:444\n"
	    "sitemap: {default_site: a, netbios: {CORP: corp.example}}\n"
	    "log: {level: error, format: text, hash_identities: Yes}\n"
	    "autodiscover: answer\n"
	    "workers: 256\n"
	    "timeouts: {long_poll: 4000, drain: 1}\n"
	    "limits: {connections: 10, connections_per_client: 10}\n");

	assert_int_equal(c->listen[0].line, 4);
	assert_int_equal(c->listen[1].line, 5);
	assert_int_equal(c->certs[0].line, 8);
	assert_int_equal(c->certs[1].line, 10);
	assert_int_equal(c->sites[0].line, 12);
	assert_int_equal(c->sites[1].line, 17);
	assert_int_equal(c->netbios[0].line, 22);
	assert_string_equal(c->certs[1].key, "k2.pem");
	assert_int_equal(c->sites[0].health.interval, 7);
	assert_int_equal(c->sites[0].health.fall, 9);
	assert_string_equal(c->sites[0].health.path, "/h");
	assert_string_equal(c->sites[0].health.expect, "");
	assert_int_equal(c->sites[1].health.interval, 5);
	/* absent: any status below 500 is up (Exchange 2010, SOGo) */
	assert_null(c->sites[1].health.expect);
	assert_string_equal(c->default_site, "a");
	assert_string_equal(c->log_level, "error");
	assert_int_equal(c->log_format, CONF_LOG_TEXT);
	assert_true(c->log_hash_identities);
	assert_int_equal(c->autodiscover, CONF_AUTODISCOVER_ANSWER);
	assert_int_equal(c->workers, 256);
	assert_int_equal(c->timeouts.long_poll, 4000);
	assert_int_equal(c->timeouts.drain, 1);
	assert_int_equal(c->timeouts.idle, 120);
	assert_int_equal(c->limits.connections, 10);
	assert_null(conf_site_find(c, "B"));
	assert_null(conf_site_find(c, NULL));
	assert_ptr_equal(conf_site_find(c, "b"), &c->sites[1]);
	conf_free(c);
	conf_free(NULL);
}

static void test_guard_values(void **state)
{
	struct conf *c = load_ok(
	    MINIMAL /* lines 1-10 */
	    "guard:\n"
	    "  devices:\n"
	    "    - block: { device_type: \"^SAMSUNGSGHI337$\" }\n"
	    "    - block: { user_agent: \"^Apple-iPhone.*/1002\\\\.\" }\n"
	    "    - allow: { user: \"ceo@contoso.com\", device_type: "
	    "\"^iPhone$\" }\n"
	    "    - block: { version: \"-12.1\", cmd: \"Sync\" }\n"
	    "    -\n"
	    "      allow:\n"
	    "        device_id: \"^ApplF\"\n"
	    "  passwords:\n"
	    "    password_failures: 0\n"
	    "    user_failures: 5\n"
	    "    window: 900\n"
	    "    hold: 604800\n"
	    "  key_file: /etc/easfront/guard.key\n"
	    "  max_entries: 16\n"
	    "  store: REDIS://10.0.0.5:6380/2\n"
	    "  store_password_file: /etc/easfront/redis.pw\n");
	const struct conf_device_rule *r = c->guard_devices;

	(void)state;
	assert_int_equal(c->n_guard_devices, 5);
	assert_int_equal(r[0].action, CONF_RULE_BLOCK);
	assert_string_equal(r[0].device_type, "^SAMSUNGSGHI337$");
	assert_null(r[0].device_id);
	assert_null(r[0].user_agent);
	assert_null(r[0].user);
	assert_null(r[0].cmd);
	assert_false(r[0].has_version);
	assert_int_equal(r[0].line, 13);
	assert_int_equal(r[0].value_line, 13);
	assert_string_equal(r[1].user_agent, "^Apple-iPhone.*/1002\\.");
	assert_int_equal(r[2].action, CONF_RULE_ALLOW);
	assert_string_equal(r[2].user, "ceo@contoso.com");
	assert_string_equal(r[2].device_type, "^iPhone$");
	assert_int_equal(r[2].line, 15);
	assert_string_equal(r[3].cmd, "Sync");
	assert_true(r[3].has_version);
	assert_int_equal(r[3].version_min, 0);
	assert_int_equal(r[3].version_max, 121);
	assert_int_equal(r[4].action, CONF_RULE_ALLOW);
	assert_string_equal(r[4].device_id, "^ApplF");
	assert_int_equal(r[4].line, 18);
	assert_int_equal(r[4].value_line, 18);
	assert_true(c->guard_passwords_on);
	assert_int_equal(c->guard_passwords.password_failures, 0);
	assert_int_equal(c->guard_passwords.user_failures, 5);
	assert_int_equal(c->guard_passwords.window, 900);
	assert_int_equal(c->guard_passwords.hold, 604800);
	assert_string_equal(c->guard_key_file, "/etc/easfront/guard.key");
	assert_int_equal(c->guard_max_entries, 16);
	assert_string_equal(c->guard_store, "REDIS://10.0.0.5:6380/2");
	assert_string_equal(c->guard_store_password_file,
	                    "/etc/easfront/redis.pw");
	conf_free(c);

	/* An empty passwords mapping: on, every default. */
	c = load_ok(MINIMAL "guard:\n  devices: []\n  passwords: {}\n"
	                    "  max_entries: 100000000\n");
	assert_int_equal(c->n_guard_devices, 0);
	assert_null(c->guard_devices);
	assert_true(c->guard_passwords_on);
	assert_int_equal(c->guard_passwords.password_failures, 3);
	assert_int_equal(c->guard_passwords.user_failures, 10);
	assert_int_equal(c->guard_passwords.window, 1800);
	assert_int_equal(c->guard_passwords.hold, 1800);
	assert_null(c->guard_key_file);
	assert_int_equal(c->guard_max_entries, 100000000);
	conf_free(c);

	/* A guard without passwords leaves the shield off. */
	c = load_ok(MINIMAL "guard: {}\n");
	assert_false(c->guard_passwords_on);
	assert_false(c->guard_throttle_on);
	assert_int_equal(c->guard_max_entries, 1000000);
	conf_free(c);
}

/* guard.throttle: every default from an empty mapping; a bucket named
 * with only one of its numbers keeps the other's default; 0 requests
 * turns a bucket off. */
static void test_guard_throttle(void **state)
{
	struct conf *c;
	const struct conf_guard_throttle *t;

	(void)state;
	c = load_ok(MINIMAL "guard:\n  throttle: {}\n");
	t = &c->guard_throttle;
	assert_true(c->guard_throttle_on);
	assert_int_equal(t->device.requests, 120);
	assert_int_equal(t->device.per, 60);
	assert_int_equal(t->user.requests, 600);
	assert_int_equal(t->user.per, 60);
	assert_int_equal(t->client.requests, 0);
	assert_int_equal(t->long_polls_per_device, 2);
	assert_int_equal(t->retry_after, 300);
	conf_free(c);

	c = load_ok(MINIMAL "guard:\n  throttle:\n"
	                    "    device: { requests: 30 }\n"
	                    "    user: { per: 10 }\n"
	                    "    client: { requests: 1000, per: 1 }\n"
	                    "    long_polls_per_device: 0\n"
	                    "    retry_after: 60\n");
	t = &c->guard_throttle;
	assert_int_equal(t->device.requests, 30);
	assert_int_equal(t->device.per, 60);
	assert_int_equal(t->user.requests, 600);
	assert_int_equal(t->user.per, 10);
	assert_int_equal(t->client.requests, 1000);
	assert_int_equal(t->client.per, 1);
	assert_int_equal(t->long_polls_per_device, 0);
	assert_int_equal(t->retry_after, 60);
	conf_free(c);

	c = load_ok(MINIMAL "guard:\n  throttle:\n    device: {requests: 0}\n");
	assert_int_equal(c->guard_throttle.device.requests, 0);
	conf_free(c);
}

/* The four forms of a version range, quoted or not, x10. */
static void test_guard_versions(void **state)
{
	static const struct {
		const char *v;
		unsigned min, max;
	} rows[] = {
	    {"\"14.0\"", 140, 140},       {"2.5", 25, 25},
	    {"\"12.0-14.1\"", 120, 141},  {"12.1-12.1", 121, 121},
	    {"\"14.0-\"", 140, UINT_MAX}, {"\"-12.1\"", 0, 121},
	    {"99.9", 999, 999},           {"1.0-99.9", 10, 999},
	};
	char yaml[1024];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct conf *c;

		snprintf(yaml, sizeof(yaml),
		         "%sguard: {devices: [{block: {version: %s}}]}\n",
		         MINIMAL, rows[i].v);
		c = load_ok(yaml);
		assert_true(c->guard_devices[0].has_version);
		assert_int_equal(c->guard_devices[0].version_min, rows[i].min);
		assert_int_equal(c->guard_devices[0].version_max, rows[i].max);
		conf_free(c);
	}
}

struct bad_row {
	const char *yaml; /* appended to MINIMAL unless whole is set */
	bool whole;
	const char *want; /* start of one line of *err */
};

static const struct bad_row bad_rows[] = {
    /* unknown keys, at every level */
    {"lisen: x\n", 0,
     "t.yaml:11: unknown key 'lisen' (did you mean 'listen'?)"},
    {"log: {acces: x}\n", 0,
     "t.yaml:11: unknown key 'acces' in log (did you mean 'access'?)"},
    {"timeouts:\n  idle: 5\n  nap: 3\n", 0,
     "t.yaml:13: unknown key 'nap' in timeouts"},
    {"site: a\nlisten:\n  - address: \"1.2.3.4:1\"\n    port: 3\n"
     "tls: {certificates: [{cert: c, key: k}]}\n"
     "sites: [{name: a, cas: [http://x]}]\n",
     1, "t.yaml:4: unknown key 'port' in listen[0]"},
    {"site: a\nlisten: [{address: \"1.2.3.4:1\"}]\n"
     "tls: {certificates: [{cert: c, key: k, chain: z}]}\n"
     "sites: [{name: a, cas: [http://x], health: {intervall: 3}}]\n",
     1, "t.yaml:3: unknown key 'chain' in tls.certificates[0]"},
    {"site: a\nlisten: [{address: \"1.2.3.4:1\"}]\n"
     "tls: {certificates: [{cert: c, key: k}]}\n"
     "sites: [{name: a, cas: [http://x], health: {intervall: 3}}]\n",
     1,
     "t.yaml:4: unknown key 'intervall' in sites[0].health (did you mean "
     "'interval'?)"},
    {"site: b\n", 0, "t.yaml:11: 'site' given twice (first at line 1)"},
    /* wrong types */
    {"dns: {servers: 10.0.0.1}\n", 0,
     "t.yaml:11: dns.servers: expected a list, got '10.0.0.1'"},
    {"dns: [1]\n", 0, "t.yaml:11: dns: expected a mapping, got a list"},
    {"user: [a]\n", 0, "t.yaml:11: user: expected a single value, got a list"},
    {"workers: many\n", 0,
     "t.yaml:11: workers: expected a whole number, got 'many'"},
    {"workers: -1\n", 0, "t.yaml:11: workers: must not be negative, got '-1'"},
    {"workers: 2.5\n", 0, "t.yaml:11: workers: expected a whole number"},
    {"workers: 0x10\n", 0, "t.yaml:11: workers: expected a whole number"},
    {"workers: 010\n", 0, "t.yaml:11: workers: a number must not start with 0"},
    {"workers: 4294967296\n", 0, "t.yaml:11: workers: number too large"},
    {"workers: 99999999999999999999999\n", 0,
     "t.yaml:11: workers: expected a whole number"},
    {"workers:\n", 0,
     "t.yaml:11: workers: expected a whole number, got nothing"},
    {"log: {hash_identities: maybe}\n", 0,
     "t.yaml:11: log.hash_identities: expected true or false, got 'maybe'"},
    {"log: {format: xml}\n", 0,
     "t.yaml:11: log.format: expected one of json, text, got 'xml'"},
    {"log: {level: verbose}\n", 0,
     "t.yaml:11: log.level: expected one of error, warn, info, debug, got "
     "'verbose'"},
    {"log: {level: INFO}\n", 0, "t.yaml:11: log.level: expected one of"},
    {"autodiscover: redirect\n", 0,
     "t.yaml:11: autodiscover: expected one of proxy, answer, got 'redirect'"},
    {"user:\n", 0, "t.yaml:11: user: expected a value, got nothing"},
    {"user: ~\n", 0, "t.yaml:11: user: expected a value, got nothing"},
    {"user: \"\"\n", 0, "t.yaml:11: user: must not be empty"},
    {"user: \"a\\0b\"\n", 0, "t.yaml:11: user: holds a NUL byte"},
    {"admin:\n", 0, "t.yaml:11: admin: expected a mapping, got nothing"},
    {"[a]: b\n", 0, "t.yaml:11: a key must be a plain name, not a collection"},
    /* missing required keys and empty lists */
    {"listen: []\n", 1, "t.yaml:1: listen: needs at least 1 entry"},
    {"listen: []\n", 1, "t.yaml:1: missing required key 'site'"},
    {"listen: []\n", 1, "t.yaml:1: missing required key 'tls'"},
    {"listen: []\n", 1, "t.yaml:1: missing required key 'sites'"},
    {"site: a\nlisten: [{}]\ntls: {}\nsites: [{cas: []}]\n", 1,
     "t.yaml:2: missing required key 'address' in listen[0]"},
    {"site: a\nlisten: [{}]\ntls: {}\nsites: [{cas: []}]\n", 1,
     "t.yaml:3: missing required key 'certificates' in tls"},
    {"site: a\nlisten: [{}]\ntls: {}\nsites: [{cas: []}]\n", 1,
     "t.yaml:4: missing required key 'name' in sites[0]"},
    {"site: a\nlisten: [{}]\ntls: {}\nsites: [{cas: []}]\n", 1,
     "t.yaml:4: sites[0].cas: needs at least 1 entry"},
    {"site: a\nlisten: [{address: \"1.2.3.4:1\"}]\n"
     "tls: {certificates: [{cert: c}]}\nsites: [{name: a, cas: [http://x]}]\n",
     1, "t.yaml:3: missing required key 'key' in tls.certificates[0]"},
    {"admin: {}\n", 0, "t.yaml:11: missing required key 'listen' in admin"},
    /* cloud sites (DESIGN.md "Mailboxes in Exchange Online") */
    {"  - name: exo\n    cloud: true\n", 0,
     "t.yaml:11: sites[1]: a cloud site needs external_url"},
    {"  - name: exo\n    cloud: true\n    external_url: https://o.example/x\n"
     "    cas: [http://y]\n",
     0, "t.yaml:14: sites[1].cas: a cloud site has no CAS of ours"},
    {"  - name: exo\n    cloud: true\n    external_url: https://o.example/x\n"
     "    fallback: a\n",
     0, "t.yaml:14: sites[1].fallback: a cloud site has no fallback"},
    {"  - name: exo\n    cloud: true\n    external_url: https://o.example/x\n"
     "    min_version: \"16.x\"\n",
     0, "t.yaml:14: sites[1].min_version: '16.x' is not an EAS version"},
    {"  - name: b\n", 0,
     "t.yaml:11: sites[1]: cas is required (only a site with cloud: true "
     "has none)"},
    {"  - name: b\n    cas: [http://y]\n    min_version: \"16.1\"\n", 0,
     "t.yaml:13: sites[1].min_version: only a cloud site has one"},
    {"site: a\nlisten: [{address: \"1.2.3.4:1\"}]\n"
     "tls: {certificates: [{cert: c, key: k}]}\nsites:\n"
     "  - {name: a, cas: [http://x], fallback: exo}\n"
     "  - {name: exo, cloud: true, external_url: \"https://o.example/x\"}\n",
     1,
     "t.yaml:5: sites[0].fallback: 'exo' is a cloud site, which has no "
     "CAS to proxy to"},
    {"site: exo\nlisten: [{address: \"1.2.3.4:1\"}]\n"
     "tls: {certificates: [{cert: c, key: k}]}\nsites:\n"
     "  - {name: a, cas: [http://x]}\n"
     "  - {name: exo, cloud: true, external_url: \"https://o.example/x\"}\n",
     1, "t.yaml:1: site: 'exo' is a cloud site"},
    {"sitemap:\n  ldap:\n    uris: [ldap://x]\n    base: dc=x\n"
     "    cloud: {site: a}\n",
     0, "t.yaml:15: sitemap.ldap.cloud.site: 'a' is not a cloud site"},
    {"sitemap:\n  ldap:\n    uris: [ldap://x]\n    base: dc=x\n"
     "    cloud: {site: nope}\n",
     0,
     "t.yaml:15: sitemap.ldap.cloud.site: 'nope' is not the name of any "
     "site"},
    {"sitemap:\n  ldap:\n    uris: [ldap://x]\n    base: dc=x\n"
     "    cloud: {target_domains: [x.example]}\n",
     0, "t.yaml:15: missing required key 'site' in sitemap.ldap.cloud"},
    {"  - name: exo\n    cloud: true\n    external_url: https://o.example/x\n"
     "sitemap:\n  ldap:\n    uris: [ldap://x]\n    base: dc=x\n    cloud:\n"
     "      site: exo\n      target_domains: [\"a@b\"]\n",
     0,
     "t.yaml:20: sitemap.ldap.cloud.target_domains[0]: 'a@b' is not a "
     "domain name"},
    /* names */
    {"  - name: a\n    cas: [http://y]\n", 0,
     "t.yaml:11: duplicate site name 'a' (first at line 9)"},
    {"  - name: A\n    cas: [http://y]\n", 0,
     "t.yaml:11: duplicate site name 'A' (first at line 9)"},
    {"  - name: \"b c\"\n    cas: [http://y]\n", 0,
     "t.yaml:11: sites[1].name: 'b c' may hold only letters"},
    {"site: z\nlisten: [{address: \"1.2.3.4:1\"}]\n"
     "tls: {certificates: [{cert: c, key: k}]}\nsites: [{name: a, cas: "
     "[http://x]}]\n",
     1, "t.yaml:1: site: 'z' is not the name of any site"},
    {"site: A\nlisten: [{address: \"1.2.3.4:1\"}]\n"
     "tls: {certificates: [{cert: c, key: k}]}\nsites: [{name: a, cas: "
     "[http://x]}]\n",
     1, "t.yaml:1: site: 'A' names no site (did you mean 'a'?)"},
    {"    fallback: b\n", 0,
     "t.yaml:11: sites[0].fallback: 'b' is not the name of any site"},
    {"    fallback: a\n", 0,
     "t.yaml:11: sites[0].fallback: a site cannot fall back to itself"},
    {"sitemap: {default_site: q}\n", 0,
     "t.yaml:11: sitemap.default_site: 'q' is not the name of any site"},
    /* URLs */
    {"    external_url: http://a.example/eas\n", 0,
     "t.yaml:11: sites[0].external_url: must be https:// (phones are sent "
     "there)"},
    {"    external_url: a.example\n", 0,
     "t.yaml:11: sites[0].external_url: must start with http:// or https://"},
    {"    external_url: https:///x\n", 0,
     "t.yaml:11: sites[0].external_url: no host after the scheme"},
    {"    external_url: https://a.example:0/x\n", 0,
     "t.yaml:11: sites[0].external_url: the port must be a number from 1 to "
     "65535"},
    {"    external_url: https://a.example:65536\n", 0,
     "t.yaml:11: sites[0].external_url: the port must be"},
    {"    external_url: \"https://a.example:\"\n", 0,
     "t.yaml:11: sites[0].external_url: the port must be"},
    {"    external_url: https://u:p@a.example/\n", 0,
     "t.yaml:11: sites[0].external_url: user info"},
    {"    external_url: https://a.example/?x=1\n", 0,
     "t.yaml:11: sites[0].external_url: a query or fragment"},
    {"    external_url: \"https://a .example/\"\n", 0,
     "t.yaml:11: sites[0].external_url: holds spaces"},
    {"  - name: b\n    cas:\n      - ftp://x\n", 0,
     "t.yaml:13: sites[1].cas[0]: must start with http:// or https://"},
    {"  - name: b\n    cas:\n      - https://x\n      - http://[::1\n", 0,
     "t.yaml:14: sites[1].cas[1]: '[' without ']'"},
    {"  - name: b\n    cas:\n      - https://x\n      - https://x\n", 0,
     "t.yaml:14: sites[1].cas[1]: 'https://x' is listed twice"},
    {"  - name: b\n    cas: [\"https://bad_host!\"]\n", 0,
     "t.yaml:12: sites[1].cas[0]: not a valid host name"},
    {"    proxy_path: eas\n", 0,
     "t.yaml:11: sites[0].proxy_path: must start with '/'"},
    {"    health: {path: x}\n", 0,
     "t.yaml:11: sites[0].health.path: must start with '/'"},
    {"    health: {interval: 0}\n", 0,
     "t.yaml:11: sites[0].health.interval: must be at least 1"},
    /* addresses */
    {"admin: {listen: \"127.0.0.1:8443\"}\n", 0,
     "t.yaml:11: admin.listen: same address as listen[0] (line 3)"},
    {"admin: {listen: \"127.0.0.1\"}\n", 0, "t.yaml:11: admin.listen: no port"},
    {"dns: {servers: [\"10.0.0.1\", \"::1\", \"[::1]:53\", ns1]}\n", 0,
     "t.yaml:11: dns.servers[3]: expected an IP address"},
    /* numbers and values */
    {"timeouts: {idle: 0}\n", 0,
     "t.yaml:11: timeouts.idle: must be at least 1"},
    {"timeouts:\n  handshake: 0\n", 0,
     "t.yaml:12: timeouts.handshake: must be at least 1"},
    {"workers: 257\n", 0, "t.yaml:11: workers: at most 256"},
    {"timeouts: {idle: 0}\n", 0,
     "t.yaml:11: timeouts.idle: must be at least 1"},
    {"limits: {connections: 100}\n", 0,
     "t.yaml:11: limits.connections_per_client (512) is more than "
     "limits.connections (100)"},
    {"sitemap:\n  netbios:\n    CONTOSO: contoso.com\n    contoso: c.example\n",
     0, "t.yaml:14: sitemap.netbios: 'contoso' given twice (first at line 13)"},
    {"sitemap:\n  netbios:\n    TOOLONGNETBIOSNAME: x.example\n", 0,
     "t.yaml:13: sitemap.netbios: 'TOOLONGNETBIOSNAME' is not a NetBIOS"},
    {"sitemap:\n  netbios:\n    A: [x]\n", 0,
     "t.yaml:13: sitemap.netbios: expected a domain name, got a list"},
    {"sitemap:\n  netbios:\n    A:\n", 0,
     "t.yaml:13: sitemap.netbios: expected a domain name, got nothing"},
    {"sitemap:\n  netbios: [A]\n", 0,
     "t.yaml:12: sitemap.netbios: expected a mapping, got a list"},
    {"pid_file: \"/run/x\\ny\"\n", 0,
     "t.yaml:11: pid_file: holds a control character"},
    /* guard */
    {"guard:\n  devices:\n    - block: {user: a}\n      allow: {user: b}\n", 0,
     "t.yaml:13: guard.devices[0]: both block and allow: a rule has one "
     "action"},
    {"guard:\n  devices:\n    - {}\n", 0,
     "t.yaml:13: guard.devices[0]: expected block: or allow:"},
    {"guard:\n  devices:\n    - block: {cmd: Ping}\n    - block: {}\n", 0,
     "t.yaml:14: guard.devices[1].block: a rule must name at least one "
     "field"},
    {"guard:\n  devices:\n    - deny: {user: x}\n", 0,
     "t.yaml:13: unknown key 'deny' in guard.devices[0]"},
    {"guard:\n  devices:\n    - block: {user_agnt: x}\n", 0,
     "t.yaml:13: unknown key 'user_agnt' in guard.devices[0].block (did you "
     "mean 'user_agent'?)"},
    {"guard:\n  devices:\n    - block:\n        cmd: Sync\n"
     "        device_id: \"(ab\"\n",
     0,
     "t.yaml:15: guard.devices[0].block.device_id: bad regular "
     "expression: "},
    {"guard:\n  devices:\n    - allow: {device_type: \"a{2,1}\"}\n", 0,
     "t.yaml:13: guard.devices[0].allow.device_type: bad regular "
     "expression: "},
    {"guard:\n  devices:\n    - block: {user: x}\n"
     "    - block: {user_agent: \"[[:nope:]]\"}\n",
     0,
     "t.yaml:14: guard.devices[1].block.user_agent: bad regular "
     "expression: "},
    {"guard:\n  devices:\n    - block: {user_agent: \"(a{99}){200}\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.user_agent: regular expression "
     "too large"},
    {"guard:\n  devices:\n    - block: {version: \"14\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.version: '14' is not a version "
     "range (14.0, 12.0-14.1, 14.0- or -12.1)"},
    {"guard:\n  devices:\n    - block: {version: \"-\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.version: '-' is not a version "
     "range"},
    {"guard:\n  devices:\n    - block: {version: \"12.10\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.version: '12.10' is not"},
    {"guard:\n  devices:\n    - block: {version: \"100.0\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.version: '100.0' is not"},
    {"guard:\n  devices:\n    - block: {version: \"0.5\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.version: '0.5' is not"},
    {"guard:\n  devices:\n    - block: {version: \"012.1\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.version: '012.1' is not"},
    {"guard:\n  devices:\n    - block: {version: \"12.0-14.1-\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.version: '12.0-14.1-' is not"},
    {"guard:\n  devices:\n    - block: {version: \" 14.0\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.version: ' 14.0' is not"},
    {"guard:\n  devices:\n    - block: {version: \"14.1-12.0\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.version: '14.1-12.0' is empty: its "
     "start is above its end"},
    {"guard:\n  devices:\n    - block: {user: \"\"}\n", 0,
     "t.yaml:13: guard.devices[0].block.user: must not be empty"},
    {"guard:\n  devices:\n    - allow:\n        cmd: \"\"\n", 0,
     "t.yaml:14: guard.devices[0].allow.cmd: must not be empty"},
    {"guard:\n  devices:\n    - block: {cmd: [Sync]}\n", 0,
     "t.yaml:13: guard.devices[0].block.cmd: expected a single value"},
    {"guard:\n  devices: {block: {cmd: Sync}}\n", 0,
     "t.yaml:12: guard.devices: expected a list, got a mapping"},
    {"guard:\n  passwords:\n    password_failures: 0\n"
     "    user_failures: 0\n",
     0,
     "t.yaml:12: guard.passwords: password_failures and user_failures "
     "both 0 turns the shield off: remove guard.passwords instead"},
    {"guard:\n  passwords: {window: 0}\n", 0,
     "t.yaml:12: guard.passwords.window: must be at least 1"},
    {"guard:\n  passwords:\n    hold: 0\n", 0,
     "t.yaml:13: guard.passwords.hold: must be at least 1"},
    {"guard:\n  passwords:\n    window: 604801\n", 0,
     "t.yaml:13: guard.passwords.window: at most 604800 (a week)"},
    {"guard:\n  passwords:\n    hold: 604801\n", 0,
     "t.yaml:13: guard.passwords.hold: at most 604800 (a week)"},
    {"guard:\n  passwords:\n    password_failures: 1001\n", 0,
     "t.yaml:13: guard.passwords.password_failures: at most 1000"},
    {"guard:\n  passwords:\n    user_failures: 1001\n", 0,
     "t.yaml:13: guard.passwords.user_failures: at most 1000"},
    {"guard:\n  throttle:\n    device: {per: 0}\n", 0,
     "t.yaml:13: guard.throttle.device.per: must be at least 1"},
    {"guard:\n  throttle:\n    user:\n      requests: 1000001\n", 0,
     "t.yaml:14: guard.throttle.user.requests: at most 1000000"},
    {"guard:\n  throttle:\n    client:\n      per: 86401\n", 0,
     "t.yaml:14: guard.throttle.client.per: at most 86400 (a day)"},
    {"guard:\n  throttle:\n    retry_after: 0\n", 0,
     "t.yaml:13: guard.throttle.retry_after: must be at least 1"},
    {"guard:\n  throttle:\n    long_polls_per_device: 101\n", 0,
     "t.yaml:13: guard.throttle.long_polls_per_device: at most 100"},
    {"guard:\n  throttle:\n    device: {burst: 5}\n", 0,
     "t.yaml:13: unknown key 'burst' in guard.throttle.device"},
    {"guard:\n  passwords:\n    user_failures: -1\n", 0,
     "t.yaml:13: guard.passwords.user_failures: must not be negative"},
    {"guard:\n  max_entries: 15\n", 0,
     "t.yaml:12: guard.max_entries: from 16 to 100000000"},
    {"guard:\n  max_entries: 100000001\n", 0,
     "t.yaml:12: guard.max_entries: from 16 to 100000000"},
    {"guard:\n  key_file: \"/etc/x\\ty\"\n", 0,
     "t.yaml:12: guard.key_file: holds a control character"},
    {"guard:\n  store: rediss://x\n", 0,
     "t.yaml:12: guard.store: must be redis://HOST[:PORT][/DB]"},
    {"guard:\n  store: http://redis:6379\n", 0,
     "t.yaml:12: guard.store: must be redis://HOST[:PORT][/DB]"},
    {"guard:\n  store: redis:///1\n", 0,
     "t.yaml:12: guard.store: names no host"},
    {"guard:\n  store: redis://:secret@redis\n", 0,
     "t.yaml:12: guard.store: no user, query, fragment"},
    {"guard:\n  store: redis://r\n", 0,
     "t.yaml:12: guard.store: needs guard.key_file, the same file on every"},
    {"guard:\n  store_password_file: /etc/easfront/redis.pw\n", 0,
     "t.yaml:12: guard.store_password_file: without guard.store"},
    {"guard:\n  store: redis://r\n  store_password_file: \"/a\\tb\"\n", 0,
     "t.yaml:13: guard.store_password_file: holds a control character"},
    {"guard:\n", 0, "t.yaml:11: guard: expected a mapping, got nothing"},
    /* the document as a whole */
    {"", 1, "t.yaml:1: the file holds no settings"},
    {"# only a comment\n", 1, "t.yaml:1: the file holds no settings"},
    {"---\n", 1, "t.yaml:1: the file holds no settings"},
    {"just text\n", 1,
     "t.yaml:1: the file must be a mapping of keys (site:, listen:, ...), not "
     "'just text'"},
    {"- a\n- b\n", 1,
     "t.yaml:1: the file must be a mapping of keys (site:, listen:, ...), not "
     "a list"},
    {"---\nuser: x\n", 0,
     "t.yaml:11: a second YAML document ('---'): only one is read"},
    {"user: &u x\n", 0, "t.yaml:11: user: anchors (&u) are not supported"},
    {"&k user: x\n", 0, "t.yaml:11: the file: anchors (&k) are not supported"},
    {"sitemap:\n  netbios:\n    A: &x b.example\n", 0,
     "t.yaml:13: sitemap.netbios: anchors (&x) are not supported"},
    {"sitemap:\n  netbios:\n    A: *x\n", 0,
     "t.yaml:13: sitemap.netbios: aliases (*x) are not supported"},
    {"sitemap:\n  netbios:\n    *x : b\n", 0,
     "t.yaml:13: sitemap.netbios: aliases (*x) are not supported"},
    {"user: *u\n", 0, "t.yaml:11: user: aliases (*u) are not supported"},
    {"log: &l {format: json}\nadmin: *l\n", 0,
     "t.yaml:12: admin: aliases (*l) are not supported"},
    /* YAML syntax */
    {"user: [a\n", 0,
     "t.yaml:12: YAML syntax: did not find expected ',' or ']' (while parsing "
     "a flow sequence at line 11)"},
    {"site: a\n  listen: x\n", 1,
     "t.yaml:2: YAML syntax: mapping values are not allowed in this context"},
    {"site: \"a\n", 1,
     "t.yaml:2: YAML syntax: found unexpected end of stream (while scanning a "
     "quoted scalar at line 1)"},
    {"site: a\n\tlisten: x\n", 1, "t.yaml:2: YAML syntax"},
    {"site: a\nuser: \xff\xfe\n", 1,
     "t.yaml:2: not valid YAML text: invalid leading UTF-8 octet"},
    {"site: a\nuser: \x01\n", 1,
     "t.yaml:2: not valid YAML text: control characters are not allowed"},
};

/* A cloud site and the directory's cloud keys, read whole. */
static void test_cloud_ok(void **state)
{
	struct conf *c = load_ok(
	    MINIMAL "  - name: exo\n"                                /* 11 */
	            "    cloud: true\n"                              /* 12 */
	            "    external_url: https://outlook.office365.com/"
	            "Microsoft-Server-ActiveSync\n"                 /* 13 */
	            "    min_version: \"16.1\"\n"                    /* 14 */
	            "sitemap:\n"
	            "  ldap:\n"
	            "    uris: [ldap://dc1]\n"
	            "    base: dc=contoso,dc=com\n"
	            "    cloud:\n"
	            "      site: exo\n"
	            "      target_domains: [contoso.mail.onmicrosoft.com]\n");

	(void)state;
	assert_int_equal(c->n_sites, 2);
	assert_false(c->sites[0].cloud);
	assert_int_equal(c->sites[0].min_version, 0);
	assert_true(c->sites[1].cloud);
	assert_int_equal(c->sites[1].n_cas, 0);
	assert_int_equal(c->sites[1].min_version, 161);
	assert_string_equal(c->ldap->cloud_site, "exo");
	assert_int_equal(c->ldap->n_cloud_domains, 1);
	assert_string_equal(c->ldap->cloud_domains[0],
	                    "contoso.mail.onmicrosoft.com");
	conf_free(c);
}

static void test_bad_rows(void **state)
{
	for (size_t i = 0; i < sizeof(bad_rows) / sizeof(bad_rows[0]); i++) {
		const struct bad_row *r = &bad_rows[i];
		char yaml[2048];
		char *err;

		snprintf(yaml, sizeof(yaml), "%s%s", r->whole ? "" : MINIMAL,
		         r->yaml);
		err = load_bad(yaml, strlen(yaml));
		assert_has_line(err, r->want);
		free(err);
	}
}

static void test_all_problems_listed(void **state)
{
	const char *yaml = "site: nowhere\n"                /* 1 */
	                   "listen:\n"                      /* 2 */
	                   "  - address: \"1.2.3.4\"\n"     /* 3 */
	                   "  - address: \"[::1]:70000\"\n" /* 4 */
	                   "tls:\n"                         /* 5 */
	                   "  certificates:\n"              /* 6 */
	                   "    - cert: c\n"                /* 7 */
	                   "      key: k\n"                 /* 8 */
	                   "sites:\n"                       /* 9 */
	                   "  - name: a\n"                  /* 10 */
	                   "    cas: [ftp://x]\n"           /* 11 */
	                   "    fallback: a\n"              /* 12 */
	                   "  - name: a\n"                  /* 13 */
	                   "    cas: [http://y]\n"          /* 14 */
	                   "timeouts: {idle: 0}\n"          /* 15 */
	                   "workers: 1000\n";               /* 16 */
	char *err = load_bad(yaml, strlen(yaml));

	assert_has_line(
	    err, "t.yaml:1: site: 'nowhere' is not the name of any site");
	assert_has_line(err, "t.yaml:3: listen[0].address: no port");
	assert_has_line(err, "t.yaml:4: listen[1].address: the port must be");
	assert_has_line(err, "t.yaml:11: sites[0].cas[0]: must start with");
	assert_has_line(err, "t.yaml:12: sites[0].fallback: a site cannot");
	assert_has_line(err, "t.yaml:13: duplicate site name 'a'");
	assert_has_line(err, "t.yaml:15: timeouts.idle: must be at least 1");
	assert_has_line(err, "t.yaml:16: workers: at most 256");
	assert_int_equal(count_lines(err), 8);
	/* Sorted by line, no trailing newline. */
	assert_true(strncmp(err, "t.yaml:1:", 9) == 0);
	assert_true(err[strlen(err) - 1] != '\n');
	free(err);
}

static void test_schema_problems_listed(void **state)
{
	const char *yaml = "site: a\n"
	                   "lisen: []\n"
	                   "tls: {certificates: [{cert: c, key: k, x: 1}]}\n"
	                   "sites: [{name: a, cas: [http://x]}]\n"
	                   "workers: -3\n"
	                   "log: {level: loud}\n";
	char *err = load_bad(yaml, strlen(yaml));

	assert_has_line(err, "t.yaml:1: missing required key 'listen'");
	assert_has_line(err, "t.yaml:2: unknown key 'lisen'");
	assert_has_line(err,
	                "t.yaml:3: unknown key 'x' in tls.certificates[0]");
	assert_has_line(err, "t.yaml:5: workers: must not be negative");
	assert_has_line(err, "t.yaml:6: log.level: expected one of");
	assert_int_equal(count_lines(err), 5);
	free(err);
}

static void test_listen_problems(void **state)
{
	const char *yaml = "site: a\n"
	                   "listen:\n"
	                   "  - address: \"localhost:443\"\n"
	                   "  - address: \"1.2.3.4\"\n"
	                   "  - address: \"::1:443\"\n"
	                   "  - address: \"[::1]\"\n"
	                   "  - address: \"[::1]:x\"\n"
	                   "  - address: \"1.2.3.4:1\"\n"
	                   "  - address: \"1.2.3.4:1\"\n"
	                   "  - address: \"[::0]:1\"\n"
	                   "  - address: \"[::]:1\"\n"
	                   "tls: {certificates: [{cert: c, key: k}]}\n"
	                   "sites: [{name: a, cas: [http://x]}]\n";
	char *err = load_bad(yaml, strlen(yaml));

	assert_has_line(err,
	                "t.yaml:3: listen[0].address: not an IPv4 address");
	assert_has_line(err, "t.yaml:4: listen[1].address: no port");
	assert_has_line(err, "t.yaml:5: listen[2].address: an IPv6 address is "
	                     "written [ADDRESS]:PORT");
	assert_has_line(err, "t.yaml:6: listen[3].address: no port");
	assert_has_line(err, "t.yaml:7: listen[4].address: the port must be");
	assert_has_line(err, "t.yaml:9: listen[6].address: same address as "
	                     "line 8");
	assert_has_line(err, "t.yaml:11: listen[8].address: same address as "
	                     "line 10");
	assert_int_equal(count_lines(err), 7);
	free(err);
}

static void test_too_many_problems(void **state)
{
	size_t cap = 200 * 16, n = 0;
	char *yaml = malloc(cap), *err;

	assert_non_null(yaml);
	n += (size_t)snprintf(yaml, cap, "%s", MINIMAL);
	for (int i = 0; i < 150; i++)
		n += (size_t)snprintf(yaml + n, cap - n, "k%03d: 1\n", i);
	err = load_bad(yaml, n);
	assert_int_equal(count_lines(err), CONF_ERR_MAX + 1);
	assert_has_line(err, "t.yaml:110: 50 more problems not listed");
	free(err);
	free(yaml);
}

static void test_hostile(void **state)
{
	static const char *const laughs =
	    "a: &a [x, x, x, x, x, x, x, x, x]\n"
	    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
	    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
	    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
	    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
	    "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
	size_t big = CONF_MAX_BYTES + 1;
	char *buf = malloc(big), *err;
	unsigned char bin[512];

	assert_non_null(buf);
	free(load_bad(laughs, strlen(laughs)));
	/* deep nesting, block and flow */
	memset(buf, '[', 100000);
	err = load_bad(buf, 100000);
	assert_has_line(err, "t.yaml:1: nested deeper than 32 levels");
	free(err);
	/* too big */
	memset(buf, '#', big);
	err = load_bad(buf, big);
	assert_string_equal(err, "t.yaml:1: larger than 1048576 bytes: not a "
	                         "config");
	free(err);
	/* binary garbage, and NUL bytes inside valid text */
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (unsigned char)(i * 131 + 7);
	free(load_bad((const char *)bin, sizeof(bin)));
	free(load_bad(MINIMAL "\0user: x\n", sizeof(MINIMAL) + 8));
	free(load_bad(NULL, 0));
	free(buf);
}

static void test_deep_block(void **state)
{
	char yaml[8192];
	size_t n = 0;
	char *err;

	n += (size_t)snprintf(yaml, sizeof(yaml), "%s", MINIMAL);
	for (int i = 0; i < 60; i++)
		n += (size_t)snprintf(yaml + n, sizeof(yaml) - n, "%*sx%d:\n",
		                      i, "", i);
	err = load_bad(yaml, n);
	assert_has_line(err, "t.yaml:11: unknown key 'x0'");
	assert_has_line(err, "t.yaml:43: nested deeper than 32 levels");
	free(err);
}

static void test_list_limits(void **state)
{
	size_t cap = 200000, n = 0;
	char *yaml = malloc(cap), *err;

	assert_non_null(yaml);
	n += (size_t)snprintf(yaml, cap, "%s", MINIMAL);
	n += (size_t)snprintf(yaml + n, cap - n, "sitemap:\n  netbios:\n");
	for (int i = 0; i < CONF_NETBIOS_MAX_TEST + 2; i++)
		n += (size_t)snprintf(yaml + n, cap - n, "    N%d: d.example\n",
		                      i);
	err = load_bad(yaml, n);
	assert_string_equal(err, "t.yaml:4109: sitemap.netbios: more than "
	                         "4096 entries");
	free(err);

	n = (size_t)snprintf(yaml, cap, "%s", MINIMAL);
	n += (size_t)snprintf(yaml + n, cap - n, "dns:\n  servers:\n");
	for (int i = 0; i < 18; i++)
		n += (size_t)snprintf(yaml + n, cap - n, "    - ::1\n");
	err = load_bad(yaml, n);
	assert_string_equal(err, "t.yaml:29: dns.servers: more than 16 "
	                         "entries");
	free(err);

	n = (size_t)snprintf(yaml, cap, "%s", MINIMAL);
	n += (size_t)snprintf(yaml + n, cap - n, "guard:\n  devices:\n");
	for (int i = 0; i < CONF_GUARD_RULES_MAX + 1; i++)
		n += (size_t)snprintf(yaml + n, cap - n,
		                      "    - block: {user: u%d}\n", i);
	err = load_bad(yaml, n);
	assert_string_equal(err, "t.yaml:1037: guard.devices: more than 1024 "
	                         "entries");
	free(err);

	n = (size_t)snprintf(yaml, cap, "%s", MINIMAL);
	n += (size_t)snprintf(yaml + n, cap - n, "    cas: [http://b]\n");
	err = load_bad(yaml, n);
	assert_string_equal(err, "t.yaml:11: 'cas' given twice (first at "
	                         "line 10)");
	free(err);
	free(yaml);
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/test_conf_XXXXXX";
	int fd = mkstemp(path);
	struct conf *c = NULL;
	char *err = NULL, *big;
	size_t n = CONF_MAX_BYTES + 100;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, MINIMAL, strlen(MINIMAL)),
	                 (ssize_t)strlen(MINIMAL));
	assert_int_equal(conf_load(path, &c, &err), 0);
	assert_string_equal(c->path, path);
	conf_free(c);
	big = malloc(n);
	assert_non_null(big);
	memset(big, '#', n);
	assert_int_equal(write(fd, big, n), (ssize_t)n);
	free(big);
	close(fd);
	assert_int_equal(conf_load(path, &c, &err), -1);
	assert_null(c);
	assert_non_null(strstr(err, ":1: larger than 1048576 bytes"));
	free(err);
	unlink(path);
	assert_int_equal(conf_load(path, &c, &err), -1);
	assert_non_null(strstr(err, ":0: cannot read: No such file"));
	free(err);
	assert_int_equal(conf_load("/", &c, NULL), -1);
}

struct url_row {
	const char *url;
	int ok;
	bool https;
	const char *host;
	unsigned port;
	const char *path;
};

static const struct url_row url_rows[] = {
    {"https://cas1.site1.contoso.local", 1, true, "cas1.site1.contoso.local",
     443, ""},
    {"http://cas:8080/x/y", 1, false, "cas", 8080, "/x/y"},
    {"HTTP://10.0.0.1", 1, false, "10.0.0.1", 80, ""},
    {"https://[2001:db8::1]:8443/", 1, true, "2001:db8::1", 8443, "/"},
    {"https://[2001:db8::1]", 1, true, "2001:db8::1", 443, ""},
    {"https://host.example./eas", 1, true, "host.example.", 443, "/eas"},
    {"https://", 0, 0, NULL, 0, NULL},
    {"https://:443", 0, 0, NULL, 0, NULL},
    {"https://a..b", 0, 0, NULL, 0, NULL},
    {"https://.a", 0, 0, NULL, 0, NULL},
    {"https://a:99999", 0, 0, NULL, 0, NULL},
    {"https://a:44x", 0, 0, NULL, 0, NULL},
    {"https://[::1]x", 0, 0, NULL, 0, NULL},
    {"https://[nope]", 0, 0, NULL, 0, NULL},
    {"https://a/b c", 0, 0, NULL, 0, NULL},
    {"https://a#f", 0, 0, NULL, 0, NULL},
    {"https://u@a", 0, 0, NULL, 0, NULL},
    {"ftp://a", 0, 0, NULL, 0, NULL},
    {"", 0, 0, NULL, 0, NULL},
    {NULL, 0, 0, NULL, 0, NULL},
};

static void test_url_parse(void **state)
{
	for (size_t i = 0; i < sizeof(url_rows) / sizeof(url_rows[0]); i++) {
		const struct url_row *r = &url_rows[i];
		struct conf_url u;
		const char *why = NULL;
		int got = conf_url_parse(r->url, &u, &why);

		if (got != (r->ok ? 0 : -1))
			print_error("row %zu: %s\n", i, r->url);
		assert_int_equal(got, r->ok ? 0 : -1);
		if (!r->ok) {
			assert_non_null(why);
			continue;
		}
		assert_int_equal(u.https, r->https);
		assert_int_equal(u.host.len, strlen(r->host));
		assert_memory_equal(u.host.p, r->host, u.host.len);
		assert_int_equal(u.port, r->port);
		assert_int_equal(u.path.len, strlen(r->path));
		assert_memory_equal(u.path.p, r->path, u.path.len);
	}
}

static void test_addr_parse(void **state)
{
	/* The last row: no zone (scope) on an IPv6 address. A zone names an
	 * interface of one host, and listen and admin.listen bind what this
	 * gives; a link-local listener is not a front end's. */
	static const char *const bad[] = {
	    "",      "1.2.3.4",    "1.2.3.4:", "1.2.3.4:0",  "1.2.3.4:65536",
	    "a.b:1", "::1:443",    "[::1]",    "[::1]:",     "[::1:443",
	    "[x]:1", "1.2.3.4:1x", "1.2.3:1",  " 1.2.3.4:1", "1.2.3.4: 1",
	    "[::1%1]:1", "[::1%lo]:1", "[fe80::1%2]:1", "[fe80::1%eth0]:443",
	    NULL,
	};
	struct sockaddr_storage ss;
	socklen_t len = 0;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
	const char *why = NULL;

	assert_int_equal(conf_addr_parse("10.1.2.3:443", &ss, &len, &why), 0);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 443);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x0a010203);
	assert_int_equal(conf_addr_parse("[::]:65535", &ss, &len, &why), 0);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 65535);
	assert_int_equal(conf_addr_parse("[::1]:1", &ss, &len, &why), 0);
	assert_int_equal(sin6->sin6_scope_id, 0);
	assert_memory_equal(&sin6->sin6_addr, &in6addr_loopback,
	                    sizeof(in6addr_loopback));
	assert_int_equal(conf_addr_parse("[::1]:1", NULL, NULL, NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (conf_addr_parse(bad[i], &ss, &len, &why) != -1)
			print_error("accepted '%s'\n", bad[i]);
		assert_int_equal(conf_addr_parse(bad[i], &ss, &len, &why), -1);
		assert_non_null(why);
	}
}

static void test_err_null_ok(void **state)
{
	struct conf *c = (struct conf *)1;

	assert_int_equal(conf_load_mem(NULL, "x: 1\n", 5, &c, NULL), -1);
	assert_null(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_example_file),
	    cmocka_unit_test(test_minimal_defaults),
	    cmocka_unit_test(test_values_and_lines),
	    cmocka_unit_test(test_limits_zero),
	    cmocka_unit_test(test_tls_hsts),
	    cmocka_unit_test(test_guard_values),
	    cmocka_unit_test(test_guard_throttle),
	    cmocka_unit_test(test_guard_versions),
	    cmocka_unit_test(test_cloud_ok),
	    cmocka_unit_test(test_bad_rows),
	    cmocka_unit_test(test_all_problems_listed),
	    cmocka_unit_test(test_schema_problems_listed),
	    cmocka_unit_test(test_listen_problems),
	    cmocka_unit_test(test_too_many_problems),
	    cmocka_unit_test(test_hostile),
	    cmocka_unit_test(test_deep_block),
	    cmocka_unit_test(test_list_limits),
	    cmocka_unit_test(test_load_file),
	    cmocka_unit_test(test_url_parse),
	    cmocka_unit_test(test_addr_parse),
	    cmocka_unit_test(test_err_null_ok),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
