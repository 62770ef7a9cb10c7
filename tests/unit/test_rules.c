/*
 * Device rules: first match wins and the default is allow; each field alone
 * and together, case-insensitive, searched unless anchored; the four forms
 * of a version range as the config writes them, an unknown version never
 * matching; absent facts; and the memo, which must answer exactly as
 * rules_match whatever it evicts and whichever rule set it serves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "guard/rules.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct rules *make(const struct conf_device_rule *r, unsigned n)
{
	char *err = NULL;
	struct rules *rs = rules_new(r, n, &err);

	if (rs == NULL)
		print_error("rules_new: %s\n", err ? err : "(null)");
	assert_non_null(rs);
	assert_null(err);
	assert_int_equal(rules_count(rs), n);
	return rs;
}

/* Facts with every string present but empty unless given. */
static struct rules_facts facts(const char *id, const char *type,
                                const char *ua, const char *user,
                                const char *cmd, unsigned version)
{
	return (struct rules_facts){
	    .device_id = id ? id : "",
	    .device_type = type ? type : "",
	    .user_agent = ua ? ua : "",
	    .user = user ? user : "",
	    .cmd = cmd ? cmd : "",
	    .version = version,
	};
}

/* rules_match's answer, checked against the memo's on a fresh memo and
 * on a warm one. */
static int match(const struct rules *rs, const struct rules_facts *f)
{
	struct rules_memo *m = rules_memo_new();
	int want = rules_match(rs, f);

	assert_non_null(m);
	assert_int_equal(rules_match_memo(rs, m, f), want);
	assert_int_equal(rules_match_memo(rs, m, f), want);
	rules_memo_free(m);
	return want;
}

static void test_first_match_default_allow(void **state)
{
	const struct conf_device_rule r[] = {
	    {.action = CONF_RULE_BLOCK, .device_type = "^iPhone$", .line = 3},
	    {.action = CONF_RULE_ALLOW, .device_type = "iPhone", .line = 4},
	    {.action = CONF_RULE_BLOCK, .device_type = "Android", .line = 5},
	};
	struct rules *rs = make(r, N(r));
	struct rules_facts f = facts("A1", "iPhone", NULL, NULL, NULL, 141);

	assert_int_equal(match(rs, &f), 0);
	assert_ptr_equal(rules_rule(rs, 0), &r[0]);
	assert_int_equal(rules_rule(rs, 2)->line, 5);
	f.device_type = "iPhoneX";
	assert_int_equal(match(rs, &f), 1);
	f.device_type = "SAMSUNGSM";
	assert_int_equal(match(rs, &f), -1);
	rules_free(rs);
	rs = make(NULL, 0);
	assert_int_equal(match(rs, &f), -1);
	rules_free(rs);
	rules_free(NULL);
	rules_memo_free(NULL);
}

/* An allow listed first wins over a block below it that also matches. */
static void test_allow_before_block(void **state)
{
	const struct conf_device_rule r[] = {
	    {.action = CONF_RULE_ALLOW,
	     .user = "ceo@contoso.com",
	     .device_type = "^iPhone$"},
	    {.action = CONF_RULE_BLOCK, .device_type = "^iPhone$"},
	};
	struct rules *rs = make(r, N(r));
	struct rules_facts f =
	    facts("A1", "iPhone", NULL, "ceo@contoso.com", "Sync", 141);

	assert_int_equal(match(rs, &f), 0);
	assert_int_equal(rules_rule(rs, 0)->action, CONF_RULE_ALLOW);
	f.user = "bob@contoso.com";
	assert_int_equal(match(rs, &f), 1);
	f.device_type = "Android";
	assert_int_equal(match(rs, &f), -1);
	rules_free(rs);
}

struct field_row {
	struct conf_device_rule rule;
	struct rules_facts yes, no;
};

static void test_each_field_alone(void **state)
{
	const struct field_row rows[] = {
	    {{.device_id = "^ABC123$"},
	     facts("abc123", NULL, NULL, NULL, NULL, 0),
	     facts("ABC1234", NULL, NULL, NULL, NULL, 0)},
	    {{.device_type = "^SAMSUNGSGHI337$"},
	     facts(NULL, "SAMSUNGSGHI337", NULL, NULL, NULL, 0),
	     facts(NULL, "SAMSUNGSGHI3370", NULL, NULL, NULL, 0)},
	    {{.user_agent = "^Apple-iPhone.*/1002\\."},
	     facts(NULL, NULL, "Apple-iPhone4C1/1002.329", NULL, NULL, 0),
	     facts(NULL, NULL, "Apple-iPhone4C1/1102.55", NULL, NULL, 0)},
	    {{.user = "alice@contoso.com"},
	     facts(NULL, NULL, NULL, "ALICE@Contoso.com", NULL, 0),
	     facts(NULL, NULL, NULL, "alice@contoso.co", NULL, 0)},
	    {{.cmd = "Sync"},
	     facts(NULL, NULL, NULL, NULL, "sync", 0),
	     facts(NULL, NULL, NULL, NULL, "SyncX", 0)},
	    {{.has_version = true, .version_min = 140, .version_max = 141},
	     facts(NULL, NULL, NULL, NULL, NULL, 140),
	     facts(NULL, NULL, NULL, NULL, NULL, 160)},
	};

	for (size_t i = 0; i < N(rows); i++) {
		struct rules *rs = make(&rows[i].rule, 1);

		if (match(rs, &rows[i].yes) != 0 ||
		    match(rs, &rows[i].no) != -1)
			print_error("row %zu\n", i);
		assert_int_equal(match(rs, &rows[i].yes), 0);
		assert_int_equal(match(rs, &rows[i].no), -1);
		rules_free(rs);
	}
}

static void test_all_fields_must_match(void **state)
{
	const struct conf_device_rule r[] = {
	    {.device_id = "^A",
	     .device_type = "iPhone",
	     .user_agent = "iOS",
	     .user = "u@x",
	     .cmd = "Ping",
	     .has_version = true,
	     .version_min = 120,
	     .version_max = 141},
	};
	struct rules *rs = make(r, 1);
	const struct rules_facts all =
	    facts("A1", "iPhone", "iOS/16", "u@x", "Ping", 121);
	struct rules_facts f = all;

	assert_int_equal(match(rs, &f), 0);
	f.device_id = "B1";
	assert_int_equal(match(rs, &f), -1);
	f = all;
	f.device_type = "iPad";
	assert_int_equal(match(rs, &f), -1);
	f = all;
	f.user_agent = "Android";
	assert_int_equal(match(rs, &f), -1);
	f = all;
	f.user = "v@x";
	assert_int_equal(match(rs, &f), -1);
	f = all;
	f.cmd = "Sync";
	assert_int_equal(match(rs, &f), -1);
	f = all;
	f.version = 160;
	assert_int_equal(match(rs, &f), -1);
	rules_free(rs);
}

static void test_case_and_anchors(void **state)
{
	const struct conf_device_rule r[] = {
	    {.device_type = "^iphone$"},
	    {.device_type = "IPAD"},
	    {.user_agent = "android"},
	};
	struct rules *rs = make(r, N(r));
	struct rules_facts f = facts(NULL, "IPHONE", NULL, NULL, NULL, 0);

	assert_int_equal(match(rs, &f), 0);
	/* anchored: no more, no less */
	f.device_type = "iPhone6";
	assert_int_equal(match(rs, &f), -1);
	/* unanchored: found anywhere */
	f.device_type = "AppleiPad3C1";
	assert_int_equal(match(rs, &f), 1);
	f.device_type = "";
	f.user_agent = "Mozilla/5.0 (Linux; ANDROID 13) Gmail";
	assert_int_equal(match(rs, &f), 2);
	rules_free(rs);
}

/* Absent facts are "": a named field does not match them unless its
 * regex matches the empty string. */
static void test_empty_facts(void **state)
{
	const struct conf_device_rule r[] = {
	    {.device_type = "x"},
	    {.user = "u@x"},
	    {.cmd = "Sync"},
	    {.user_agent = "^$"},
	};
	struct rules *rs = make(r, N(r));
	struct rules_facts f = facts(NULL, NULL, NULL, NULL, NULL, 0);

	assert_int_equal(match(rs, &f), 3);
	f.user_agent = "x";
	assert_int_equal(match(rs, &f), -1);
	rules_free(rs);
}

#define MINIMAL                                                                \
	"site: a\n"                                                            \
	"listen: [{address: \"127.0.0.1:443\"}]\n"                             \
	"tls: {certificates: [{cert: c.pem, key: k.pem}]}\n"                   \
	"sites: [{name: a, cas: [\"https://cas.a\"]}]\n"

/* The four forms as the config writes them, through conf_load. */
static void test_version_ranges(void **state)
{
	static const char yaml[] =
	    MINIMAL "guard:\n"
	            "  devices:\n"
	            "    - block: { version: \"14.0\" }\n"
	            "    - block: { version: \"12.0-12.1\" }\n"
	            "    - block: { version: \"16.0-\" }\n"
	            "    - block: { version: \"-2.5\" }\n";
	static const struct {
		unsigned version;
		int want;
	} rows[] = {
	    {140, 0}, {141, -1}, {120, 1}, {121, 1}, {119, -1},
	    {160, 2}, {161, 2},  {990, 2}, {25, 3},  {20, 3},
	    {26, -1}, {0, -1}, /* unknown: not even by "-2.5" */
	};
	struct conf *c = NULL;
	char *err = NULL;
	struct rules *rs;

	assert_int_equal(conf_load_mem("t.yaml", yaml, strlen(yaml), &c, &err),
	                 0);
	rs = make(c->guard_devices, c->n_guard_devices);
	assert_int_equal(rules_rule(rs, 3)->line, 10);
	for (size_t i = 0; i < N(rows); i++) {
		struct rules_facts f =
		    facts("A", "iPhone", NULL, NULL, NULL, rows[i].version);

		if (match(rs, &f) != rows[i].want)
			print_error("version %u\n", rows[i].version);
		assert_int_equal(match(rs, &f), rows[i].want);
	}
	rules_free(rs);
	conf_free(c);
}

static void test_bad_regex(void **state)
{
	const struct conf_device_rule r[] = {
	    {.device_type = "^ok$", .line = 4},
	    {.device_type = "fine", .user_agent = "(", .line = 7},
	};
	char *err = NULL;

	assert_null(rules_new(r, N(r), &err));
	assert_non_null(err);
	assert_true(strncmp(err, "rule at line 7: user_agent: ", 28) == 0);
	free(err);
	assert_null(rules_new(r, RULES_MAX + 1, &err));
	assert_non_null(err);
	free(err);
	assert_null(rules_new(r, N(r), NULL));
}

/* A small population of phones: more devices than the memo holds. */
static struct rules_facts device(unsigned i, char *id, size_t cap)
{
	static const char *const types[] = {
	    "iPhone",  "iPad",        "SAMSUNGSMG991B", "SAMSUNGSGHI337",
	    "Android", "WindowsMail", "Outlook",        ""};
	static const char *const uas[] = {"Apple-iPhone4C1/1002.329",
	                                  "Apple-iPhone9C1/1402.72",
	                                  "Apple-iPad13C1/2001.5",
	                                  "Android-SAMSUNG-SM-G991B/101.30901",
	                                  "Outlook-iOS/2.0",
	                                  "Microsoft.Outlook.15",
	                                  "",
	                                  "TouchDown(MSRPC)"};
	static const char *const users[] = {"ceo@contoso.com", "a@contoso.com",
	                                    "b@contoso.com", ""};
	static const char *const cmds[] = {"Sync", "Ping", "FolderSync",
	                                   "OPTIONS", ""};
	static const unsigned versions[] = {0,   25,  120, 121,
	                                    140, 141, 160, 161};

	snprintf(id, cap, "%s%u", i % 3 ? "DEV" : "ApplF", i);
	return facts(id, types[i % N(types)], uas[(i / 3) % N(uas)],
	             users[(i / 7) % N(users)], cmds[(i / 5) % N(cmds)],
	             versions[(i / 11) % N(versions)]);
}

static const struct conf_device_rule set_a[] = {
    {.action = CONF_RULE_ALLOW,
     .user = "ceo@contoso.com",
     .device_type = "^iPhone$"},
    {.device_type = "^SAMSUNGSGHI337$"},
    {.user_agent = "^Apple-iPhone.*/1002\\."},
    {.cmd = "Sync", .has_version = true, .version_min = 0, .version_max = 121},
    {.device_id = "^ApplF.*7$", .cmd = "Ping"},
    {.action = CONF_RULE_ALLOW, .device_id = "5$"},
    {.user_agent = "outlook", .device_type = "Outlook|WindowsMail"},
    {.has_version = true,
     .version_min = 160,
     .version_max = 999,
     .device_type = "^$"},
    {.user = "b@contoso.com"},
};

static const struct conf_device_rule set_b[] = {
    {.device_type = "iP(hone|ad)", .user_agent = "/20"},
    {.action = CONF_RULE_ALLOW, .device_id = "^DEV1"},
    {.device_id = "3$"},
    {.user_agent = "samsung",
     .has_version = true,
     .version_min = 140,
     .version_max = 141},
};

static void test_memo_evictions(void **state)
{
	struct rules *rs = make(set_a, N(set_a));
	struct rules_memo *m = rules_memo_new();
	unsigned seen[N(set_a) + 1] = {0};
	char id[32];

	assert_non_null(m);
	/* Three passes over 3000 devices (the memo holds 512), then the
	 * same devices in another order. */
	for (unsigned pass = 0; pass < 4; pass++)
		for (unsigned i = 0; i < 3000; i++) {
			unsigned d = pass == 3 ? (i * 7919) % 3000 : i;
			struct rules_facts f = device(d, id, sizeof(id));
			int want = rules_match(rs, &f);

			assert_int_equal(rules_match_memo(rs, m, &f), want);
			seen[want + 1]++;
		}
	/* the population reaches every rule, and no rule */
	for (size_t i = 0; i < N(seen); i++)
		assert_true(seen[i] > 0);
	rules_memo_free(m);
	rules_free(rs);
}

/* One memo serving two generations in turn, as during a reload, and a set
 * freed and made again (likely at the same address). */
static void test_memo_two_sets(void **state)
{
	struct rules *a = make(set_a, N(set_a)), *b = make(set_b, N(set_b));
	struct rules_memo *m = rules_memo_new();
	char id[32];

	assert_non_null(m);
	for (unsigned round = 0; round < 3; round++) {
		/* Few enough devices to stay in the memo: each is asked
		 * under both sets, in turn. */
		for (unsigned i = 0; i < 600; i++) {
			struct rules_facts f = device(i % 150, id, sizeof(id));

			for (unsigned j = 0; j < 2; j++) {
				const struct rules *rs =
				    (i + j + round) % 2 ? a : b;

				assert_int_equal(rules_match_memo(rs, m, &f),
				                 rules_match(rs, &f));
			}
		}
		rules_free(b);
		b = make(round % 2 ? set_b : set_a,
		         round % 2 ? N(set_b) : N(set_a));
		rules_free(a);
		a = make(round % 2 ? set_a : set_b,
		         round % 2 ? N(set_a) : N(set_b));
	}
	rules_memo_free(m);
	rules_free(a);
	rules_free(b);
}

/* Strings too long to remember bypass the memo, with the same answers. */
static void test_memo_long_strings(void **state)
{
	const struct conf_device_rule r[] = {
	    {.user_agent = "Z$"},
	    {.device_id = "^Q"},
	};
	struct rules *rs = make(r, N(r));
	struct rules_memo *m = rules_memo_new();
	char ua[2000], idv[200];

	assert_non_null(m);
	memset(ua, 'a', sizeof(ua));
	memset(idv, 'Q', sizeof(idv));
	for (size_t len = 500; len < 520; len++) {
		struct rules_facts f = facts("x", "t", ua, NULL, NULL, 141);

		ua[len] = '\0';
		assert_int_equal(rules_match_memo(rs, m, &f), -1);
		ua[len - 1] = 'Z';
		assert_int_equal(rules_match_memo(rs, m, &f), 0);
		ua[len - 1] = 'a';
		ua[len] = 'a';
	}
	for (size_t len = 60; len < 70; len++) {
		struct rules_facts f = facts(idv, "t", "u", NULL, NULL, 141);

		idv[len] = '\0';
		assert_int_equal(rules_match_memo(rs, m, &f), 1);
		idv[0] = 'R';
		assert_int_equal(rules_match_memo(rs, m, &f), -1);
		idv[0] = 'Q';
		idv[len] = 'Q';
	}
	rules_memo_free(m);
	rules_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_match_default_allow),
	    cmocka_unit_test(test_allow_before_block),
	    cmocka_unit_test(test_each_field_alone),
	    cmocka_unit_test(test_all_fields_must_match),
	    cmocka_unit_test(test_case_and_anchors),
	    cmocka_unit_test(test_empty_facts),
	    cmocka_unit_test(test_version_ranges),
	    cmocka_unit_test(test_bad_regex),
	    cmocka_unit_test(test_memo_evictions),
	    cmocka_unit_test(test_memo_two_sets),
	    cmocka_unit_test(test_memo_long_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
