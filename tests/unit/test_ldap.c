/*
 * ldap/: filter templating (the injection case included), DN parsing
 * (forms, escapes, garbage), the cache (TTLs on a fake clock, LRU bound,
 * stale answers, flushes, counters, four threads at once), the settings
 * check, and the client without a directory: a refused port and a server
 * that accepts but never speaks. The client against a real slapd is in
 * tests/integration/ldap.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/clock.h"
#include "ldap/ldap_src.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TEMPLATE "(|(userPrincipalName=%u)(mail=%u))"

/* ---- filters ---------------------------------------------------------- */

struct filter_case {
	const char *tmpl;
	const char *user;
	const char *out; /* NULL: refused */
};

static const struct filter_case filter_cases[] = {
    {TEMPLATE, "jdoe@contoso.com",
     "(|(userPrincipalName=jdoe@contoso.com)(mail=jdoe@contoso.com))"},
    {"(uid=%s)", "jdoe@contoso.com", "(uid=jdoe)"},
    {"(uid=%s)", "jdoe", "(uid=jdoe)"},
    {"(uid=%s)", "@contoso.com", "(uid=)"},
    {"(uid=%s)", "a@b@c", "(uid=a)"},
    {"(&(objectClass=user)(|(uid=%s)(mail=%u)))", "x@y",
     "(&(objectClass=user)(|(uid=x)(mail=x@y)))"},
    {"(cn=100%%)", "x", "(cn=100%)"},
    /* The injection: the value stays one literal assertion. */
    {TEMPLATE, "*)(uid=*",
     "(|(userPrincipalName=\\2a\\29\\28uid=\\2a)(mail=\\2a\\29\\28uid="
     "\\2a))"},
    {"(mail=%u)", "*", "(mail=\\2a)"},
    {"(mail=%u)", "a\\b", "(mail=a\\5cb)"},
    {"(mail=%u)", "a)(|(objectClass=*",
     "(mail=a\\29\\28|\\28objectClass=\\2a)"},
    {"(mail=%u)", "\xc3\xa9t\xc3\xa9@x", "(mail=\xc3\xa9t\xc3\xa9@x)"},
    /* The template's own escaped parenthesis is not one. */
    {"(cn=\\28%u)", "x", "(cn=\\28x)"},
    {"(uid=%x)", "x", NULL},
    {"(uid=%)", "x", NULL},
    {"(uid=%u", "x", NULL},
    {"uid=%u", "x", NULL},
    {"((uid=%u)", "x", NULL},
    {"(uid=%u))", "x", NULL},
    {"(a=1)(b=%u)", "x", NULL},
    {"", "x", NULL},
    {TEMPLATE, "", NULL},
};

static void test_filter_table(void **state)
{
	for (size_t i = 0; i < sizeof(filter_cases) / sizeof(filter_cases[0]);
	     i++) {
		const struct filter_case *c = &filter_cases[i];
		char out[LDAP_SRC_FILTER_MAX];
		int n = ldap_filter_build(c->tmpl, c->user, out, sizeof(out));

		if (c->out == NULL) {
			if (n != -1)
				fail_msg("case %zu: %s with %s gave %s", i,
				         c->tmpl, c->user, out);
			assert_string_equal(out, "");
			continue;
		}
		if (n < 0)
			fail_msg("case %zu: %s with %s refused", i, c->tmpl,
			         c->user);
		assert_string_equal(out, c->out);
		assert_int_equal(n, strlen(c->out));
	}
}

static void test_filter_bounds(void **state)
{
	char user[LDAP_SRC_USER_MAX + 2], out[LDAP_SRC_FILTER_MAX], small[16];

	memset(user, 'a', sizeof(user));
	user[LDAP_SRC_USER_MAX] = '\0';
	assert_int_equal(ldap_filter_build("(uid=%u)", user, out, sizeof(out)),
	                 LDAP_SRC_USER_MAX + 6);
	user[LDAP_SRC_USER_MAX] = 'a';
	user[LDAP_SRC_USER_MAX + 1] = '\0';
	assert_int_equal(ldap_filter_build("(uid=%u)", user, out, sizeof(out)),
	                 -1);
	/* Escaping triples a byte; every output stays within its buffer. */
	memset(user, '*', LDAP_SRC_USER_MAX);
	user[LDAP_SRC_USER_MAX] = '\0';
	assert_int_equal(ldap_filter_build("(a=%u)", user, out, sizeof(out)),
	                 3 * LDAP_SRC_USER_MAX + 4);
	assert_int_equal(
	    ldap_filter_build("(|(a=%u)(b=%u)(c=%u))", user, out, sizeof(out)),
	    -1);
	/* Exactly fitting, and one byte short. */
	assert_int_equal(
	    ldap_filter_build("(uid=%u)", "abcdefghi", small, sizeof(small)),
	    15);
	assert_string_equal(small, "(uid=abcdefghi)");
	assert_int_equal(
	    ldap_filter_build("(uid=%u)", "abcdefghij", small, sizeof(small)),
	    -1);
	assert_string_equal(small, "");
	assert_int_equal(ldap_filter_build(NULL, "x", out, sizeof(out)), -1);
	assert_int_equal(ldap_filter_build("(a=%u)", NULL, out, sizeof(out)),
	                 -1);
}

static void test_filter_check(void **state)
{
	char *err = NULL;

	assert_int_equal(ldap_filter_check(TEMPLATE, &err), 0);
	assert_null(err);
	assert_int_equal(ldap_filter_check("(uid=%d)", &err), -1);
	assert_non_null(strstr(err, "%d"));
	free(err);
	assert_int_equal(ldap_filter_check("(uid=%u", &err), -1);
	assert_non_null(strstr(err, "parenthes"));
	free(err);
	assert_int_equal(ldap_filter_check(NULL, &err), -1);
	free(err);
	assert_int_equal(ldap_filter_check("(x=%u", NULL), -1);
}

/* ---- DNs -------------------------------------------------------------- */

struct dn_case {
	const char *dn;
	const char *db; /* NULL: malformed */
};

#define EXCH_TAIL                                                              \
	",CN=Databases,CN=Exchange Administrative Group "                      \
	"(FYDIBOHF23SPDLT),CN=Administrative Groups,CN=Contoso,CN=Microsoft "  \
	"Exchange,CN=Services,CN=Configuration,DC=contoso,DC=com"

static const struct dn_case dn_cases[] = {
    {"CN=DB01" EXCH_TAIL, "DB01"},
    {"cn=DB01,cn=databases,dc=contoso,dc=com", "DB01"},
    {"Cn=db02", "db02"},
    {"commonName=DB03,O=x", "DB03"},
    {"2.5.4.3=DB04,O=x", "DB04"},
    {"CN=Mailbox Database 0123456789" EXCH_TAIL, "Mailbox Database 0123456789"},
    {"CN=DB\\,01,O=x", "DB,01"},
    {"CN=DB\\2C05,O=x", "DB,05"},
    {"CN=DB\\2c05,O=x", "DB,05"},
    {"CN=A\\+B,O=x", "A+B"},
    {"CN=\\\"q\\\",O=x", "\"q\""},
    {"CN=a\\\\b,O=x", "a\\b"},
    {"CN=\\<x\\>,O=x", "<x>"},
    {"CN=\\;\\=\\#,O=x", ";=#"},
    {"CN=\\#1,O=x", "#1"},
    {"CN=\\C3\\A9t\\C3\\A9,O=x", "\xc3\xa9t\xc3\xa9"},
    {"CN=\xc3\xa9t\xc3\xa9,O=x", "\xc3\xa9t\xc3\xa9"},
    {"CN=\\ lead,O=x", " lead"},
    {"CN=trail\\ ,O=x", "trail "},
    {"CN=DB01  ,  O=x", "DB01"},
    {"  CN = DB01,O=x", "DB01"},
    {"CN=a=b,O=x", "a=b"},
    {"OU=x+CN=DB05,O=y", "DB05"},
    {"CN=DB06+OU=x,O=y", "DB06"},
    {"CN=DB07+CN=other,O=y", "DB07"},
    {"CN=DB08;O=x", "DB08"},
    {"CN=DB09,O=#04024869", "DB09"},
    {"CN=DB10,O=,DC=x", "DB10"},
    {"", NULL},
    {"DB01", NULL},
    {"CN", NULL},
    {"CN=", NULL},
    {"CN=,O=x", NULL},
    {"CN=   ,O=x", NULL},
    {"OU=DB01,CN=x", NULL},
    {"CN=DB01,", NULL},
    {"CN=DB01,O", NULL},
    {"CN=DB01,,O=x", NULL},
    {"CN=DB01,=x", NULL},
    {"=DB01", NULL},
    {"1CN=DB01", NULL},
    {"2..5=DB01", NULL},
    {"C_N=DB01", NULL},
    {"CN=a\\", NULL},
    {"CN=a\\2", NULL},
    {"CN=a\\zz", NULL},
    {"CN=a\\2G", NULL},
    {"CN=#04024869,O=x", NULL},
    {"CN=DB01,O=#", NULL},
    {"CN=DB01,O=#123", NULL},
    {"CN=a\\00b", NULL},
    {"CN=a\\0Ab", NULL},
    {"CN=a\x01"
     "b",
     NULL},
    {"CN=a\"b", NULL},
    {"CN=a<b", NULL},
    {"CN=a>b", NULL},
    {"CN=DB01 x=y", "DB01 x=y"},
    {"CN=DB01,O=x y,O=a\\,b", "DB01"},
};

static void test_dn_table(void **state)
{
	for (size_t i = 0; i < sizeof(dn_cases) / sizeof(dn_cases[0]); i++) {
		const struct dn_case *c = &dn_cases[i];
		char out[LDAP_SRC_DB_MAX];
		int n =
		    ldap_dn_database(c->dn, strlen(c->dn), out, sizeof(out));

		if (c->db == NULL) {
			if (n != -1)
				fail_msg("case %zu: \"%s\" gave \"%s\"", i,
				         c->dn, out);
			assert_string_equal(out, "");
			continue;
		}
		if (n < 0)
			fail_msg("case %zu: \"%s\" refused", i, c->dn);
		assert_string_equal(out, c->db);
		assert_int_equal(n, strlen(c->db));
	}
}

static void test_dn_bounds(void **state)
{
	static const char dn[] = "CN=DB01\0,O=x";
	char out[8];

	/* The length rules, not a NUL: an embedded NUL is garbage. */
	assert_int_equal(ldap_dn_database(dn, sizeof(dn) - 1, out, sizeof(out)),
	                 -1);
	assert_int_equal(ldap_dn_database(dn, 7, out, sizeof(out)), 4);
	assert_string_equal(out, "DB01");
	assert_int_equal(ldap_dn_database("CN=1234567,O=x", 14, out, 8), 7);
	assert_int_equal(ldap_dn_database("CN=12345678,O=x", 15, out, 8), -1);
	assert_int_equal(ldap_dn_database(NULL, 0, out, 8), -1);
}

static void test_dn_escape_roundtrip(void **state)
{
	static const char *const values[] = {
	    "DB01",  "a,b+c",    "\"quoted\"", "back\\slash",       "<>;=",
	    "#hash", " spaces ", "mid # hash", "\xc3\xa9t\xc3\xa9",
	};

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		char esc[256], dn[300], out[256];

		assert_true(ldap_dn_escape_value(values[i], strlen(values[i]),
		                                 esc, sizeof(esc)) > 0);
		snprintf(dn, sizeof(dn), "cn=%s,dc=x", esc);
		assert_int_equal(
		    ldap_dn_database(dn, strlen(dn), out, sizeof(out)),
		    strlen(values[i]));
		assert_string_equal(out, values[i]);
	}
	assert_int_equal(ldap_dn_escape_value("a,b", 3, (char[4]){0}, 4), -1);
}

/* ---- moved mailboxes ----------------------------------------------------- */

static char *const tenant[] = {"contoso.mail.onmicrosoft.com",
                               "Fabrikam.mail.onmicrosoft.com"};

struct cloud_row {
	bool home;
	const char *type, *remote, *target; /* NULL: absent */
	int moved;
	const char *why; /* expected evidence, "" when not moved */
};

static const struct cloud_row cloud_rows[] = {
    {false, "2147483648", "4", NULL, 1,
     "msExchRecipientTypeDetails 2147483648 (RemoteUserMailbox); "
     "msExchRemoteRecipientType 4 (migrated)"},
    {false, "8589934592", NULL, NULL, 1,
     "msExchRecipientTypeDetails 8589934592 (RemoteRoomMailbox)"},
    {false, "17179869184", NULL, NULL, 1,
     "msExchRecipientTypeDetails 17179869184 (RemoteEquipmentMailbox)"},
    {false, "34359738368", "100", NULL, 1,
     "msExchRecipientTypeDetails 34359738368 (RemoteSharedMailbox); "
     "msExchRemoteRecipientType 100"},
    {false, "2147483648", "1", "SMTP:a@contoso.mail.onmicrosoft.com", 1,
     "msExchRecipientTypeDetails 2147483648 (RemoteUserMailbox); "
     "msExchRemoteRecipientType 1 (provisioned in the cloud)"},
    /* only a targetAddress in a tenant domain */
    {false, NULL, NULL, "SMTP:alice@contoso.mail.onmicrosoft.com", 1,
     "targetAddress SMTP:alice@contoso.mail.onmicrosoft.com (tenant domain "
     "contoso.mail.onmicrosoft.com)"},
    {false, NULL, NULL, "smtp:b@CONTOSO.mail.onmicrosoft.COM", 1,
     "targetAddress smtp:b@CONTOSO.mail.onmicrosoft.COM (tenant domain "
     "contoso.mail.onmicrosoft.com)"},
    {false, NULL, NULL, "c@fabrikam.mail.onmicrosoft.com", 1,
     "targetAddress c@fabrikam.mail.onmicrosoft.com (tenant domain "
     "Fabrikam.mail.onmicrosoft.com)"},
    {false, "1", NULL, "x\"y@contoso.mail.onmicrosoft.com", 1,
     "targetAddress x?y@contoso.mail.onmicrosoft.com (tenant domain "
     "contoso.mail.onmicrosoft.com)"},
    /* a homeMDB: on premises whatever the rest says */
    {true, "2147483648", "4", "SMTP:a@contoso.mail.onmicrosoft.com", 0, ""},
    /* not moved */
    {false, "1", NULL, NULL, 0, ""},                 /* UserMailbox */
    {false, "2147483649", NULL, NULL, 0, ""},
    {false, "02147483648x", NULL, NULL, 0, ""},
    {false, "", NULL, NULL, 0, ""},
    {false, "99999999999999999999999", NULL, NULL, 0, ""},
    {false, NULL, "4", NULL, 0, ""},                 /* decides nothing */
    {false, NULL, NULL, "SMTP:a@contoso.com", 0, ""},
    {false, NULL, NULL, "SMTP:a@sub.contoso.mail.onmicrosoft.com", 0, ""},
    {false, NULL, NULL, "SMTP:contoso.mail.onmicrosoft.com", 0, ""},
    {false, NULL, NULL, "SMTP:a@contoso.mail.onmicrosoft.com.", 0, ""},
    {false, NULL, NULL, "X500:/o=a@contoso.mail.onmicrosoft.com", 1,
     "targetAddress X500:/o=a@contoso.mail.onmicrosoft.com (tenant domain "
     "contoso.mail.onmicrosoft.com)"},
    {false, NULL, NULL, "SMTP:", 0, ""},
    {false, NULL, NULL, "@", 0, ""},
};

static struct ldap_cloud_attrs attrs_of(const struct cloud_row *r)
{
	return (struct ldap_cloud_attrs){
	    .has_home = r->home,
	    .type = r->type,
	    .type_len = r->type ? strlen(r->type) : 0,
	    .remote = r->remote,
	    .remote_len = r->remote ? strlen(r->remote) : 0,
	    .target = r->target,
	    .target_len = r->target ? strlen(r->target) : 0,
	};
}

static void test_cloud_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cloud_rows) / sizeof(cloud_rows[0]); i++) {
		const struct cloud_row *r = &cloud_rows[i];
		struct ldap_cloud_attrs a = attrs_of(r);
		char why[LDAP_SRC_DB_MAX];
		int m = ldap_cloud_moved(&a, tenant, 2, why, sizeof(why));

		if (m != r->moved || strcmp(why, r->why) != 0)
			fail_msg("row %zu: %d \"%s\"", i, m, why);
	}
}

/* Bytes the directory may send: NUL inside, control bytes, no terminator,
 * an evidence longer than the buffer. */
static void test_cloud_bounds(void **state)
{
	static const char nul_target[] = "SMTP:a\0b@contoso.mail.onmicrosoft.com";
	char long_target[600], why[LDAP_SRC_DB_MAX], small[16];
	struct ldap_cloud_attrs a = {
	    .target = nul_target, .target_len = sizeof(nul_target) - 1};

	(void)state;
	assert_int_equal(ldap_cloud_moved(&a, tenant, 2, why, sizeof(why)), 1);
	assert_non_null(strstr(why, "SMTP:a?b@"));
	memset(long_target, '\x01', sizeof(long_target));
	memcpy(long_target + sizeof(long_target) - 29,
	       "@contoso.mail.onmicrosoft.com", 29);
	a.target = long_target;
	a.target_len = sizeof(long_target);
	assert_int_equal(ldap_cloud_moved(&a, tenant, 2, why, sizeof(why)), 1);
	assert_true(strlen(why) < sizeof(why));
	assert_null(strchr(why, '\x01'));
	assert_non_null(strstr(why, "..."));
	assert_int_equal(ldap_cloud_moved(&a, tenant, 2, small, sizeof(small)),
	                 1);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	/* no domains configured: only the recipient type counts */
	assert_int_equal(ldap_cloud_moved(&a, NULL, 0, why, sizeof(why)), 0);
	assert_string_equal(why, "");
}

/* ---- the cache -------------------------------------------------------- */

static uint64_t fake_now;

static uint64_t fake_clock(void *arg)
{
	return *(uint64_t *)arg;
}

static struct ldap_cache *fake_cache(unsigned max, unsigned ttl, unsigned neg)
{
	struct ldap_cache *c = ldap_cache_new(max, ttl, neg);

	assert_non_null(c);
	fake_now = 1000000000;
	ldap_cache_set_clock(c, fake_clock, &fake_now);
	return c;
}

static void test_cache_ttl(void **state)
{
	struct ldap_cache *c = fake_cache(10, 60, 5);
	struct ldap_cache_stats st;
	enum ldap_answer a;
	char db[LDAP_SRC_DB_MAX];

	assert_false(ldap_cache_get(c, "jdoe@contoso.com", &a, db, sizeof(db)));
	ldap_cache_stats(c, &st);
	assert_false(st.down);
	assert_int_equal(
	    ldap_cache_fallback(c, "jdoe@contoso.com", db, sizeof(db)),
	    LDAP_ANS_ERROR);
	/* The status page's "directory down": a fallback after the last
	 * answer, until the next answer. */
	ldap_cache_stats(c, &st);
	assert_true(st.down);
	ldap_cache_put(c, "jdoe@contoso.com", "DB01");
	ldap_cache_stats(c, &st);
	assert_false(st.down);
	ldap_cache_put(c, "ghost@contoso.com", NULL);
	/* Case is ignored. */
	assert_true(ldap_cache_get(c, "JDoe@Contoso.COM", &a, db, sizeof(db)));
	assert_int_equal(a, LDAP_ANS_FOUND);
	assert_string_equal(db, "DB01");
	assert_true(ldap_cache_get(c, "ghost@contoso.com", &a, db, sizeof(db)));
	assert_int_equal(a, LDAP_ANS_NO_USER);
	assert_string_equal(db, "");
	/* 4.9 s: both fresh; 5 s: the negative one is stale. */
	fake_now += 4900000;
	assert_true(ldap_cache_get(c, "ghost@contoso.com", &a, db, sizeof(db)));
	fake_now += 100000;
	assert_false(
	    ldap_cache_get(c, "ghost@contoso.com", &a, db, sizeof(db)));
	assert_int_equal(
	    ldap_cache_fallback(c, "ghost@contoso.com", db, sizeof(db)),
	    LDAP_ANS_STALE_NO_USER);
	assert_true(ldap_cache_get(c, "jdoe@contoso.com", &a, db, sizeof(db)));
	/* A fallback with a fresh entry is that entry, not stale. */
	assert_int_equal(
	    ldap_cache_fallback(c, "jdoe@contoso.com", db, sizeof(db)),
	    LDAP_ANS_FOUND);
	fake_now += 55000000;
	assert_false(ldap_cache_get(c, "jdoe@contoso.com", &a, db, sizeof(db)));
	assert_int_equal(
	    ldap_cache_fallback(c, "jdoe@contoso.com", db, sizeof(db)),
	    LDAP_ANS_STALE_FOUND);
	assert_string_equal(db, "DB01");
	/* A new answer makes it fresh again. */
	ldap_cache_put(c, "jdoe@contoso.com", "DB02");
	assert_true(ldap_cache_get(c, "jdoe@contoso.com", &a, db, sizeof(db)));
	assert_string_equal(db, "DB02");
	ldap_cache_stats(c, &st);
	assert_int_equal(st.hits, 5);
	assert_int_equal(st.misses, 3);
	assert_int_equal(st.stale, 2);
	assert_int_equal(st.errors, 1);
	assert_int_equal(st.inserts, 3);
	assert_int_equal(st.entries, 2);
	ldap_cache_free(c);
}

static void test_cache_set_ttl(void **state)
{
	struct ldap_cache *c = fake_cache(10, 60, 60);
	enum ldap_answer a;
	char db[LDAP_SRC_DB_MAX];

	ldap_cache_set_ttl(c, 0, 0);
	/* TTL 0: stored for the fallback only. */
	ldap_cache_put(c, "u@x", "DB01");
	assert_false(ldap_cache_get(c, "u@x", &a, db, sizeof(db)));
	assert_int_equal(ldap_cache_fallback(c, "u@x", db, sizeof(db)),
	                 LDAP_ANS_STALE_FOUND);
	ldap_cache_free(c);
}

/* A moved mailbox is kept like a database: the TTL of positive answers,
 * stale past it. */
static void test_cache_cloud(void **state)
{
	struct ldap_cache *c = fake_cache(10, 60, 5);
	enum ldap_answer a;
	char db[LDAP_SRC_DB_MAX];

	(void)state;
	ldap_cache_put_cloud(c, "moved@contoso.com", "targetAddress x");
	assert_true(ldap_cache_get(c, "Moved@contoso.com", &a, db, sizeof(db)));
	assert_int_equal(a, LDAP_ANS_CLOUD);
	assert_string_equal(db, "targetAddress x");
	fake_now += 30 * 1000000ULL;
	assert_true(ldap_cache_get(c, "moved@contoso.com", &a, db, sizeof(db)));
	fake_now += 31 * 1000000ULL;
	assert_false(ldap_cache_get(c, "moved@contoso.com", &a, db, sizeof(db)));
	assert_int_equal(ldap_cache_fallback(c, "moved@contoso.com", db,
	                                     sizeof(db)),
	                 LDAP_ANS_STALE_CLOUD);
	assert_string_equal(db, "targetAddress x");
	assert_string_equal(ldap_answer_str(LDAP_ANS_STALE_CLOUD),
	                    "stale-cloud");
	/* back on premises */
	ldap_cache_put(c, "moved@contoso.com", "DB01");
	assert_true(ldap_cache_get(c, "moved@contoso.com", &a, db, sizeof(db)));
	assert_int_equal(a, LDAP_ANS_FOUND);
	assert_string_equal(db, "DB01");
	ldap_cache_free(c);
}

static void test_cache_lru(void **state)
{
	struct ldap_cache *c = fake_cache(3, 60, 60);
	struct ldap_cache_stats st;
	enum ldap_answer a;
	char db[LDAP_SRC_DB_MAX];

	ldap_cache_put(c, "a", "DBa");
	ldap_cache_put(c, "b", "DBb");
	ldap_cache_put(c, "c", "DBc");
	/* a becomes the most recently used: b is the oldest now. */
	assert_true(ldap_cache_get(c, "a", &a, db, sizeof(db)));
	ldap_cache_put(c, "d", "DBd");
	assert_false(ldap_cache_get(c, "b", &a, db, sizeof(db)));
	assert_true(ldap_cache_get(c, "a", &a, db, sizeof(db)));
	assert_true(ldap_cache_get(c, "c", &a, db, sizeof(db)));
	assert_true(ldap_cache_get(c, "d", &a, db, sizeof(db)));
	/* Replacing keeps one entry per user. */
	ldap_cache_put(c, "d", "DBd2");
	ldap_cache_stats(c, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.evictions, 1);
	/* Stale entries count towards the bound too. */
	fake_now += 61000000;
	for (int i = 0; i < 100; i++) {
		char u[16];

		snprintf(u, sizeof(u), "u%d", i);
		ldap_cache_put(c, u, i % 2 ? "DB" : NULL);
	}
	ldap_cache_stats(c, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.evictions, 101);
	assert_true(ldap_cache_get(c, "u99", &a, db, sizeof(db)));
	assert_false(ldap_cache_get(c, "u96", &a, db, sizeof(db)));
	ldap_cache_free(c);
}

static void test_cache_flush(void **state)
{
	struct ldap_cache *c = fake_cache(100, 60, 60);
	struct ldap_cache_stats st;
	enum ldap_answer a;
	char db[LDAP_SRC_DB_MAX], big[LDAP_SRC_USER_MAX + 2];

	ldap_cache_put(c, "a@x", "DB1");
	ldap_cache_put(c, "b@x", "DB2");
	ldap_cache_put(c, "c@x", NULL);
	assert_true(ldap_cache_flush(c, "A@X"));
	assert_false(ldap_cache_flush(c, "a@x"));
	assert_false(ldap_cache_get(c, "a@x", &a, db, sizeof(db)));
	/* Flushed is forgotten: no stale answer either. */
	assert_int_equal(ldap_cache_fallback(c, "a@x", db, sizeof(db)),
	                 LDAP_ANS_ERROR);
	assert_true(ldap_cache_get(c, "b@x", &a, db, sizeof(db)));
	ldap_cache_flush_all(c);
	ldap_cache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_false(ldap_cache_get(c, "b@x", &a, db, sizeof(db)));
	assert_false(ldap_cache_get(c, "c@x", &a, db, sizeof(db)));
	/* Still usable after a flush; absurd keys are not stored. */
	ldap_cache_put(c, "b@x", "DB3");
	assert_true(ldap_cache_get(c, "b@x", &a, db, sizeof(db)));
	assert_string_equal(db, "DB3");
	memset(big, 'x', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	ldap_cache_put(c, big, "DB");
	ldap_cache_put(c, "", "DB");
	ldap_cache_stats(c, &st);
	assert_int_equal(st.entries, 1);
	ldap_cache_free(c);
	ldap_cache_free(NULL);
}

#define THREADS 4
#define USERS 500
#define OPS 40000

struct worker {
	struct ldap_cache *c;
	unsigned seed;
	uint64_t gets, fallbacks, wrong;
};

/* The database every thread stores for user i: a thread reading another's
 * answer can check it. */
static void db_of(unsigned i, char *out, size_t cap)
{
	snprintf(out, cap, "DB%02u", i % 13);
}

static void *cache_worker(void *arg)
{
	struct worker *w = arg;

	for (int n = 0; n < OPS; n++) {
		unsigned r = (unsigned)rand_r(&w->seed);
		unsigned i = r % USERS, op = (r >> 16) % 10;
		char user[32], want[16], db[LDAP_SRC_DB_MAX];
		enum ldap_answer a;

		snprintf(user, sizeof(user), "user%u@contoso.com", i);
		db_of(i, want, sizeof(want));
		if (op < 3) {
			ldap_cache_put(w->c, user, i % 5 ? want : NULL);
		} else if (op < 8) {
			w->gets++;
			if (ldap_cache_get(w->c, user, &a, db, sizeof(db)) &&
			    strcmp(db, a == LDAP_ANS_FOUND ? want : "") != 0)
				w->wrong++;
		} else if (op < 9) {
			w->fallbacks++;
			a = ldap_cache_fallback(w->c, user, db, sizeof(db));
			if (a != LDAP_ANS_ERROR && a != LDAP_ANS_NO_USER &&
			    a != LDAP_ANS_STALE_NO_USER &&
			    strcmp(db, want) != 0)
				w->wrong++;
		} else if (r % 97 == 0) {
			ldap_cache_flush_all(w->c);
		} else {
			ldap_cache_flush(w->c, user);
		}
	}
	return NULL;
}

static void test_cache_threads(void **state)
{
	struct ldap_cache *c = ldap_cache_new(256, 60, 60);
	struct worker w[THREADS];
	pthread_t t[THREADS];
	struct ldap_cache_stats st;
	uint64_t gets = 0, fallbacks = 0;

	assert_non_null(c);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.c = c, .seed = 7u + (unsigned)i};
		assert_int_equal(
		    pthread_create(&t[i], NULL, cache_worker, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].wrong, 0);
		gets += w[i].gets;
		fallbacks += w[i].fallbacks;
	}
	ldap_cache_stats(c, &st);
	assert_true(st.entries <= 256);
	assert_int_equal(st.hits + st.misses, gets);
	assert_int_equal(st.stale + st.errors <= fallbacks, true);
	assert_true(st.hits > 0 && st.misses > 0 && st.evictions > 0);
	ldap_cache_free(c);
}

/* ---- settings --------------------------------------------------------- */

static char *good_uris[] = {"ldap://127.0.0.1:1", "ldaps://dc1.contoso.com",
                            "ldapi://%2Frun%2Fslapd%2Fldapi"};

static struct ldap_src_conf good_conf(void)
{
	return (struct ldap_src_conf){
	    .uris = good_uris,
	    .n_uris = 3,
	    .base = "DC=contoso,DC=com",
	    .filter = TEMPLATE,
	};
}

static void expect_bad(struct ldap_src_conf c, const char *why)
{
	char *err = NULL;

	assert_int_equal(ldap_src_conf_check(&c, &err), -1);
	assert_non_null(err);
	if (strstr(err, why) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", err, why);
	free(err);
}

static void test_conf_check(void **state)
{
	struct ldap_src_conf c = good_conf();
	char *bad_uri[] = {"http://dc1"}, *with_dn[] = {"ldap://dc1/dc=x??sub"};
	char *err = NULL;

	assert_int_equal(ldap_src_conf_check(&c, &err), 0);
	assert_null(err);
	c.bind_dn = "cn=svc,dc=contoso,dc=com";
	c.password_file = "/etc/easfront/ldap.pw";
	c.attribute = "msExchHomeMDB-2";
	assert_int_equal(ldap_src_conf_check(&c, NULL), 0);
	c.attribute = "1.2.840.113556.1.2.44";
	assert_int_equal(ldap_src_conf_check(&c, NULL), 0);

	c = good_conf();
	c.n_uris = 0;
	expect_bad(c, "no LDAP URI");
	c = good_conf();
	c.uris = bad_uri;
	c.n_uris = 1;
	expect_bad(c, "invalid LDAP URI \"http://dc1\"");
	c.uris = with_dn;
	expect_bad(c, "invalid LDAP URI");
	c = good_conf();
	c.base = "not a dn";
	expect_bad(c, "invalid search base");
	c.base = NULL;
	expect_bad(c, "invalid search base");
	c = good_conf();
	c.filter = "(uid=%d)";
	expect_bad(c, "%d");
	c.filter = NULL;
	expect_bad(c, "no filter");
	c = good_conf();
	c.bind_dn = "cn=svc";
	expect_bad(c, "bind_dn and password_file");
	c.password_file = "/x";
	c.sasl_external = true;
	expect_bad(c, "SASL EXTERNAL");
	c = good_conf();
	c.cert_file = "/x.pem";
	expect_bad(c, "cert_file and key_file");
	c = good_conf();
	c.attribute = "home MDB";
	expect_bad(c, "invalid attribute");
	c.attribute = "1..2";
	expect_bad(c, "invalid attribute");
	c.attribute = "-x";
	expect_bad(c, "invalid attribute");
	c.attribute = "";
	expect_bad(c, "invalid attribute");
}

/* ---- the client without a directory ----------------------------------- */

static struct event_base *base;

struct result {
	int calls;
	enum ldap_answer a;
	char db[LDAP_SRC_DB_MAX];
	uint64_t at_us;
};

static void result_cb(enum ldap_answer a, const char *db, void *arg)
{
	struct result *r = arg;

	r->calls++;
	r->a = a;
	snprintf(r->db, sizeof(r->db), "%s", db != NULL ? db : "");
	r->at_us = clock_mono_us();
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs the loop until *flag >= want or ms pass. */
static bool run_until(const int *flag, int want, unsigned ms)
{
	bool expired = false;
	struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};
	struct event *t = evtimer_new(base, deadline_cb, &expired);

	evtimer_add(t, &tv);
	while (*flag < want && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return *flag >= want;
}

static void run_for(unsigned ms)
{
	static const int never = 0;

	run_until(&never, 1, ms);
}

/* A TCP socket on 127.0.0.1: bound only (connections are refused) or
 * listening but never accepting (connections hang). */
static int tcp_socket(bool listening, char *uri, size_t cap)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	if (listening)
		assert_int_equal(listen(fd, 16), 0);
	snprintf(uri, cap, "ldap://127.0.0.1:%u", ntohs(sin.sin_port));
	return fd;
}

static void test_client_refused(void **state)
{
	char uri[64], *uris[] = {uri}, *err = NULL;
	int fd = tcp_socket(false, uri, sizeof(uri));
	struct ldap_src_conf c = good_conf();
	struct ldap_cache *cache = fake_cache(100, 60, 60);
	struct result r1 = {0}, r2 = {0}, r3 = {0};
	struct ldap_client_stats st;
	struct ldap_lookup *h = NULL;
	struct ldap_reply now;
	struct ldap_client *lc;
	uint64_t t0;

	c.uris = uris;
	c.n_uris = 1;
	c.timeout_ms = 3000;
	c.backoff_max_ms = 400;
	ldap_cache_put(cache, "cached@contoso.com", "DB01");
	ldap_cache_put(cache, "stale@contoso.com", "DB02");
	lc = ldap_client_new(base, &c, cache, &err);
	assert_non_null(lc);
	assert_null(err);
	/* Fresh: answered at once, whatever the directory. */
	assert_int_equal(
	    ldap_lookup(lc, "Cached@Contoso.com", result_cb, &r1, &h, &now), 1);
	assert_null(h);
	assert_int_equal(now.answer, LDAP_ANS_FOUND);
	assert_string_equal(now.database, "DB01");
	/* The first connection is under way: these wait, on one search. */
	assert_int_equal(
	    ldap_lookup(lc, "new@contoso.com", result_cb, &r1, &h, &now), 0);
	assert_non_null(h);
	assert_int_equal(
	    ldap_lookup(lc, "NEW@contoso.com", result_cb, &r2, NULL, &now), 0);
	assert_int_equal(
	    ldap_lookup(lc, "new@contoso.com", result_cb, &r3, &h, &now), 0);
	ldap_lookup_cancel(h);
	ldap_client_stats(lc, &st);
	assert_int_equal(st.coalesced, 2);
	assert_int_equal(st.queued, 1);
	/* Never from inside ldap_lookup(). */
	assert_int_equal(r1.calls + r2.calls, 0);
	assert_true(run_until(&r2.calls, 1, 5000));
	assert_int_equal(r1.calls, 1);
	assert_int_equal(r1.a, LDAP_ANS_ERROR);
	assert_int_equal(r2.a, LDAP_ANS_ERROR);
	assert_int_equal(r3.calls, 0);
	/* Known down: answered at once, stale when there is something. */
	t0 = clock_mono_us();
	assert_int_equal(
	    ldap_lookup(lc, "other@contoso.com", result_cb, &r1, NULL, &now),
	    1);
	assert_int_equal(now.answer, LDAP_ANS_ERROR);
	fake_now += 61000000;
	assert_int_equal(
	    ldap_lookup(lc, "stale@contoso.com", result_cb, &r1, NULL, &now),
	    1);
	assert_int_equal(now.answer, LDAP_ANS_STALE_FOUND);
	assert_string_equal(now.database, "DB02");
	assert_true(clock_mono_us() - t0 < 100000);
	/* It keeps trying, backing off. */
	run_for(1500);
	ldap_client_stats(lc, &st);
	assert_true(st.connect_fails >= 3);
	assert_false(st.connected);
	assert_int_equal(st.searches, 0);
	assert_int_equal(st.failed, 4);
	assert_int_equal(st.lookups, 6);
	assert_int_equal(ldap_lookup(lc, "", result_cb, &r1, NULL, &now), -1);
	ldap_client_free(lc);
	ldap_client_free(NULL);
	ldap_cache_free(cache);
	close(fd);
}

static void test_client_free_pending(void **state)
{
	char uri[64], *uris[] = {uri};
	int fd = tcp_socket(true, uri, sizeof(uri));
	struct ldap_src_conf c = good_conf();
	struct ldap_cache *cache = ldap_cache_new(100, 60, 60);
	struct result r = {0};
	struct ldap_reply now;
	struct ldap_client *lc;

	c.uris = uris;
	c.n_uris = 1;
	c.connect_timeout_ms = 300;
	lc = ldap_client_new(base, &c, cache, NULL);
	assert_non_null(lc);
	assert_int_equal(ldap_lookup(lc, "u@x", result_cb, &r, NULL, &now), 0);
	/* Freed with a lookup pending and its connection attempt hanging:
	 * no callback, and the helper thread cleans up after itself. */
	ldap_client_free(lc);
	run_for(50);
	assert_int_equal(r.calls, 0);
	usleep(800000);
	ldap_cache_free(cache);
	close(fd);
}

static void test_client_silent(void **state)
{
	char uri[64], *uris[] = {uri};
	int fd = tcp_socket(true, uri, sizeof(uri));
	struct ldap_src_conf c = good_conf();
	struct ldap_cache *cache = ldap_cache_new(100, 60, 60);
	struct result r = {0};
	struct ldap_client_stats st;
	struct ldap_reply now;
	struct ldap_client *lc;
	uint64_t t0 = clock_mono_us();

	c.uris = uris;
	c.n_uris = 1;
	c.timeout_ms = 200;
	c.connect_timeout_ms = 600;
	lc = ldap_client_new(base, &c, cache, NULL);
	assert_non_null(lc);
	assert_int_equal(ldap_lookup(lc, "u@x", result_cb, &r, NULL, &now), 0);
	/* The server accepted but says nothing: the lookup's own deadline
	 * answers it, not the connection attempt's. */
	assert_true(run_until(&r.calls, 1, 5000));
	assert_int_equal(r.a, LDAP_ANS_ERROR);
	assert_true(r.at_us - t0 >= 190000);
	assert_true(r.at_us - t0 < 580000);
	ldap_client_stats(lc, &st);
	assert_int_equal(st.timeouts, 1);
	/* Then the attempt gives up, and the next lookup is answered now. */
	run_for(900);
	ldap_client_stats(lc, &st);
	assert_true(st.connect_fails >= 1);
	assert_int_equal(ldap_lookup(lc, "u@x", result_cb, &r, NULL, &now), 1);
	assert_int_equal(now.answer, LDAP_ANS_ERROR);
	ldap_client_free(lc);
	usleep(800000);
	ldap_cache_free(cache);
	close(fd);
}

/* ---- the client against a fake directory ------------------------------- */

/* A minimal LDAP server in a thread, plain TCP: it answers the bind, then
 * answers every search with "success, no entry" (HOLD: only once released,
 * so that the client's socket fills up meanwhile), or breaks the protocol
 * (GARBAGE) or says goodbye (NOTICE) at the first search. */
enum fake_mode { FAKE_HOLD, FAKE_GARBAGE, FAKE_NOTICE };

struct fake {
	int lfd;
	int release[2]; /* a byte on [1] lets a holding server read */
	enum fake_mode mode;
	unsigned searches;
	pthread_t thread;
};

static bool read_full(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);

		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

/* Reads one LDAPMessage into buf; returns its length or 0. */
static size_t read_msg(int fd, uint8_t *buf, size_t cap)
{
	uint8_t hdr[2], ext[4];
	size_t len = 0;

	if (!read_full(fd, hdr, 2) || hdr[0] != 0x30)
		return 0;
	if (hdr[1] < 0x80) {
		len = hdr[1];
	} else {
		unsigned k = hdr[1] & 0x7f;

		if (k == 0 || k > 4 || !read_full(fd, ext, k))
			return 0;
		for (unsigned i = 0; i < k; i++)
			len = len << 8 | ext[i];
	}
	return len <= cap && read_full(fd, buf, len) ? len : 0;
}

static void send_raw(int fd, const uint8_t *p, size_t n)
{
	assert_int_equal(write(fd, p, n), (ssize_t)n);
}

/* Writes a response: the request's message ID (TLV at id, idlen bytes),
 * then op's bytes. */
static void write_msg(int fd, const uint8_t *id, size_t idlen,
                      const uint8_t *op, size_t oplen)
{
	uint8_t out[256];

	out[0] = 0x30;
	out[1] = (uint8_t)(idlen + oplen);
	memcpy(out + 2, id, idlen);
	memcpy(out + 2 + idlen, op, oplen);
	send_raw(fd, out, 2 + idlen + oplen);
}

/* Answers one request; false when the connection is to end. */
static bool fake_answer(struct fake *f, int fd, const uint8_t *m, size_t n)
{
	static const uint8_t bind_ok[] = {0x61, 7, 0x0a, 1, 0, 4, 0, 4, 0};
	static const uint8_t done_ok[] = {0x65, 7, 0x0a, 1, 0, 4, 0, 4, 0};
	static const uint8_t junk[] = {0x30, 0x84, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t notice[] = {
	    0x30, 0x24, 0x02, 0x01, 0x00, 0x78, 0x1f, 0x0a, 0x01, 0x34,
	    0x04, 0x00, 0x04, 0x00, 0x8a, 0x16, '1',  '.',  '3',  '.',
	    '6',  '.',  '1',  '.',  '4',  '.',  '1',  '.',  '1',  '4',
	    '6',  '6',  '.',  '2',  '0',  '0',  '3',  '6'};
	size_t idlen = n >= 2 ? (size_t)m[1] + 2 : 0;

	if (idlen < 3 || idlen >= n || m[0] != 0x02)
		return false;
	switch (m[idlen]) {
	case 0x60:
		write_msg(fd, m, idlen, bind_ok, sizeof(bind_ok));
		return true;
	case 0x63:
		f->searches++;
		if (f->mode == FAKE_GARBAGE) {
			send_raw(fd, junk, sizeof(junk));
			return false;
		}
		if (f->mode == FAKE_NOTICE) {
			send_raw(fd, notice, sizeof(notice));
			return false;
		}
		write_msg(fd, m, idlen, done_ok, sizeof(done_ok));
		return true;
	case 0x42: /* unbind */
		return false;
	default: /* abandon and the rest */
		return true;
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	static uint8_t buf[1 << 16];
	int fd = accept(f->lfd, NULL, NULL);
	size_t n;
	char go;

	if (fd < 0)
		return NULL;
	n = read_msg(fd, buf, sizeof(buf));
	if (n > 0 && fake_answer(f, fd, buf, n)) {
		if (f->mode == FAKE_HOLD && read(f->release[0], &go, 1) != 1)
			n = 0;
		while ((n = read_msg(fd, buf, sizeof(buf))) > 0 &&
		       fake_answer(f, fd, buf, n))
			;
	}
	/* Wait for the client to go, so it never sees an early close. */
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode, char *uri,
                       size_t cap)
{
	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->lfd = tcp_socket(true, uri, cap);
	assert_int_equal(pipe(f->release), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

/* Lets a holding server read on. */
static void fake_release(struct fake *f)
{
	char go = 1;

	assert_int_equal(write(f->release[1], &go, 1), 1);
}

/* Waits for the server to end (its client gone) and frees it. */
static void fake_join(struct fake *f)
{
	assert_int_equal(pthread_join(f->thread, NULL), 0);
	close(f->lfd);
	close(f->release[0]);
	close(f->release[1]);
}

#define FULL 3000

static void test_client_full_socket(void **state)
{
	static struct result res[FULL];
	static char filter[1900];
	char uri[64], *uris[] = {uri};
	struct ldap_src_conf c = good_conf();
	struct ldap_cache *cache = ldap_cache_new(FULL, 60, 60);
	struct ldap_client_stats st;
	struct ldap_reply now;
	struct ldap_client *lc;
	struct fake f;
	int done = 0;
	uint64_t t0;

	fake_start(&f, FAKE_HOLD, uri, sizeof(uri));
	/* Searches of nearly 2 KB, all in flight at once: megabytes that a
	 * server not reading cannot take. */
	snprintf(filter, sizeof(filter), "(|(mail=%%u)(description=%01800d))",
	         0);
	c.uris = uris;
	c.n_uris = 1;
	c.filter = filter;
	c.max_inflight = FULL;
	c.max_queue = FULL;
	c.timeout_ms = 30000;
	lc = ldap_client_new(base, &c, cache, NULL);
	assert_non_null(lc);
	for (unsigned i = 0; i < FULL; i++) {
		char user[32];

		snprintf(user, sizeof(user), "user%u@x", i);
		assert_int_equal(
		    ldap_lookup(lc, user, result_cb, &res[i], NULL, &now), 0);
	}
	run_for(1000);
	ldap_client_stats(lc, &st);
	assert_true(st.connected);
	fprintf(stderr,
	        "test_ldap: server not reading: %llu searches sent, %u queued "
	        "behind the full socket\n",
	        (unsigned long long)st.searches, st.queued);
	/* libldap said LDAP_BUSY: the rest waits in the queue. */
	assert_true(st.searches < FULL);
	assert_true(st.queued > 0);
	assert_true(st.queued + st.inflight == FULL);
	fake_release(&f);
	t0 = clock_mono_us();
	while (done < FULL && clock_mono_us() - t0 < 20000000) {
		event_base_loop(base, EVLOOP_ONCE);
		done = 0;
		for (unsigned i = 0; i < FULL; i++)
			done += res[i].calls;
	}
	assert_int_equal(done, FULL);
	for (unsigned i = 0; i < FULL; i++)
		assert_int_equal(res[i].a, LDAP_ANS_NO_USER);
	ldap_client_stats(lc, &st);
	assert_int_equal(st.searches, FULL);
	assert_int_equal(st.answered, FULL);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(st.disconnects, 0);
	assert_int_equal(f.searches, FULL);
	ldap_client_free(lc);
	fake_join(&f);
	ldap_cache_free(cache);
}

/* A server that breaks the protocol or announces its departure: the
 * lookup gets the fallback at once, the connection is dropped. */
static void broken_server(enum fake_mode mode)
{
	char uri[64], *uris[] = {uri};
	struct ldap_src_conf c = good_conf();
	struct ldap_cache *cache = fake_cache(10, 60, 60);
	struct ldap_client_stats st;
	struct result r = {0};
	struct ldap_reply now;
	struct ldap_client *lc;
	struct fake f;

	fake_start(&f, mode, uri, sizeof(uri));
	c.uris = uris;
	c.n_uris = 1;
	c.timeout_ms = 5000;
	ldap_cache_put(cache, "u@x", "DB01");
	fake_now += 61000000;
	lc = ldap_client_new(base, &c, cache, NULL);
	assert_non_null(lc);
	assert_int_equal(ldap_lookup(lc, "u@x", result_cb, &r, NULL, &now), 0);
	assert_true(run_until(&r.calls, 1, 3000));
	assert_int_equal(r.a, LDAP_ANS_STALE_FOUND);
	assert_string_equal(r.db, "DB01");
	ldap_client_stats(lc, &st);
	assert_int_equal(st.disconnects, 1);
	assert_int_equal(f.searches, 1);
	ldap_client_free(lc);
	fake_join(&f);
	ldap_cache_free(cache);
}

static void test_client_garbage(void **state)
{
	broken_server(FAKE_GARBAGE);
}

static void test_client_notice(void **state)
{
	broken_server(FAKE_NOTICE);
}

static void test_check_refused(void **state)
{
	char uri[64], *uris[] = {uri}, *err = NULL;
	int fd = tcp_socket(false, uri, sizeof(uri));
	struct ldap_src_conf c = good_conf();

	c.uris = uris;
	c.n_uris = 1;
	assert_int_equal(ldap_check(&c, &err), -1);
	assert_non_null(err);
	if (strstr(err, uri) == NULL || strstr(err, "contact") == NULL)
		fail_msg("unexpected: %s", err);
	free(err);
	c.filter = "(x=%q)";
	assert_int_equal(ldap_check(&c, &err), -1);
	free(err);
	close(fd);
}

static void test_client_bad_args(void **state)
{
	struct ldap_src_conf c = good_conf();
	struct ldap_cache *cache = ldap_cache_new(1, 1, 1);
	char *err = NULL;

	c.filter = "(uid=%u";
	assert_null(ldap_client_new(base, &c, cache, &err));
	assert_non_null(err);
	free(err);
	c = good_conf();
	assert_null(ldap_client_new(base, &c, NULL, &err));
	assert_non_null(err);
	free(err);
	assert_null(ldap_client_new(NULL, &c, cache, NULL));
	ldap_cache_free(cache);
	assert_string_equal(ldap_answer_str(LDAP_ANS_STALE_NO_USER),
	                    "stale-no-user");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_filter_table),
	    cmocka_unit_test(test_filter_bounds),
	    cmocka_unit_test(test_filter_check),
	    cmocka_unit_test(test_dn_table),
	    cmocka_unit_test(test_dn_bounds),
	    cmocka_unit_test(test_dn_escape_roundtrip),
	    cmocka_unit_test(test_cache_ttl),
	    cmocka_unit_test(test_cache_set_ttl),
	    cmocka_unit_test(test_cache_lru),
	    cmocka_unit_test(test_cache_flush),
	    cmocka_unit_test(test_cache_threads),
	    cmocka_unit_test(test_conf_check),
	    cmocka_unit_test(test_client_refused),
	    cmocka_unit_test(test_client_free_pending),
	    cmocka_unit_test(test_client_silent),
	    cmocka_unit_test(test_client_full_socket),
	    cmocka_unit_test(test_client_garbage),
	    cmocka_unit_test(test_client_notice),
	    cmocka_unit_test(test_check_refused),
	    cmocka_unit_test(test_client_bad_args),
	    cmocka_unit_test(test_cloud_table),
	    cmocka_unit_test(test_cloud_bounds),
	    cmocka_unit_test(test_cache_cloud),
	};
	int rc;

	/* libldap writes with write(2): a peer gone away must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	event_base_free(base);
	return rc;
}
