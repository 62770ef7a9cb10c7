/*
 * libFuzzer harness of the device rules: from the input, two small rule
 * sets (fixed regexes, one regex taken from the input, users, commands and
 * version ranges) and a run of requests over many devices, each matched
 * with and without the memo. The memo outlives every run, so it meets rule
 * sets freed and made again at the same address; its answer must always be
 * rules_match's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "guard/rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define SET_MAX 12

static const char *const regexes[] = {
    "^iPhone$", "iP(hone|ad)", "android", "^Apple-.*/1[0-9]{3}\\.",
    "SAMSUNG",  "^$",          "a|b",     "[0-9]$",
    "^DEV1",    "x*",          "^.{6}$",  "outlook",
};
static const char *const types[] = {
    "iPhone", "iPad", "SAMSUNGSGHI337", "Android", "Outlook", "", "ab", "x"};
static const char *const uas[] = {"Apple-iPhone4C1/1002.329",
                                  "Apple-iPad13C1/2001.5",
                                  "Android-SAMSUNG-SM-G991B/101.30901",
                                  "Outlook-iOS/2.0",
                                  "",
                                  "TouchDown",
                                  NULL /* the long one */,
                                  "b"};
static const char *const users[] = {"ceo@contoso.com", "CEO@Contoso.com",
                                    "a@contoso.com", ""};
static const char *const cmds[] = {"Sync", "sync", "Ping", ""};
static const unsigned versions[] = {0, 25, 120, 121, 140, 141, 160, 161};

/* Pulls bytes from the input, zeros once it runs out. */
struct in {
	const uint8_t *p;
	size_t n;
};

static unsigned take(struct in *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

static void version_of(struct conf_device_rule *r, unsigned b)
{
	unsigned lo = versions[(b >> 2) % N(versions)],
	         hi = versions[(b >> 5) % N(versions)];

	r->has_version = true;
	switch (b & 3) {
	case 0: /* "14.0" */
		r->version_min = r->version_max = lo;
		break;
	case 1: /* "12.0-14.1", possibly empty: rules_new must cope */
		r->version_min = lo;
		r->version_max = hi;
		break;
	case 2: /* "14.0-" */
		r->version_min = lo;
		r->version_max = ~0U;
		break;
	default: /* "-12.1" */
		r->version_min = 0;
		r->version_max = hi;
		break;
	}
}

/* One rule from 4 bytes: which fields it names, and their values. */
static void rule_of(struct in *in, struct conf_device_rule *r, unsigned line,
                    const char *own_regex)
{
	unsigned use = take(in), a = take(in), b = take(in), c = take(in);

	memset(r, 0, sizeof(*r));
	r->action = use & 1 ? CONF_RULE_ALLOW : CONF_RULE_BLOCK;
	if (use & 2)
		r->device_id =
		    (char *)(a & 0x80 ? own_regex : regexes[a % N(regexes)]);
	if (use & 4)
		r->device_type = (char *)regexes[(a >> 4) % N(regexes)];
	if (use & 8)
		r->user_agent = (char *)regexes[b % N(regexes)];
	if (use & 16)
		r->user = (char *)users[(b >> 4) % 3];
	if (use & 32)
		r->cmd = (char *)cmds[(b >> 6) % 3];
	if (use & 64)
		version_of(r, c);
	r->line = line;
}

static struct rules *set_of(struct in *in, struct conf_device_rule *r,
                            unsigned *n, const char *own_regex)
{
	*n = 1 + take(in) % SET_MAX;
	for (unsigned i = 0; i < *n; i++)
		rule_of(in, &r[i], i + 1, own_regex);
	return rules_new(r, *n, NULL);
}

/* A request from 4 bytes; the id from two of them, so a run spans more
 * devices than the memo holds. */
static struct rules_facts facts_of(struct in *in, char *id, size_t cap,
                                   const char *long_ua)
{
	unsigned a = take(in), b = take(in), c = take(in), d = take(in);
	const char *ua = uas[(c >> 3) % N(uas)];

	snprintf(id, cap, "%s%u", a & 1 ? "DEV" : "ab", (a << 8 | b) >> 1);
	return (struct rules_facts){
	    .device_id = id,
	    .device_type = types[c % N(types)],
	    .user_agent = ua ? ua : long_ua,
	    .user = users[(d >> 2) % N(users)],
	    .cmd = cmds[(d >> 4) % N(cmds)],
	    .version = versions[((d >> 6) | (c & 0x40) >> 4) % N(versions)],
	};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rules_memo *memo;
	static char long_ua[700];
	struct conf_device_rule ra[SET_MAX], rb[SET_MAX];
	struct in in = {data, size};
	char own[9] = {0}, id[32];
	unsigned na, nb, remade = 0;
	struct rules *a, *b;

	if (memo == NULL) {
		memo = rules_memo_new();
		memset(long_ua, 'b', sizeof(long_ua) - 1);
		if (memo == NULL)
			abort();
	}
	/* Printable, so that it compiles often enough to be used. */
	for (size_t i = 0; i < sizeof(own) - 1; i++) {
		unsigned ch = take(&in);

		own[i] = (char)(ch >= 0x20 && ch < 0x7f ? ch : 'a');
	}
	a = set_of(&in, ra, &na, own);
	b = set_of(&in, rb, &nb, own);
	while (a != NULL && b != NULL && in.n > 0) {
		unsigned op = take(&in);
		struct rules_facts f = facts_of(&in, id, sizeof(id), long_ua);
		const struct rules *rs = op & 1 ? a : b;

		if (rules_match_memo(rs, memo, &f) != rules_match(rs, &f))
			abort();
		/* b made again, likely where the old one was, with the
		 * other set's rules every other time: what the memo holds
		 * under the old b must not be read under the new one. */
		if ((op & 0xfe) == 0xfe) {
			rules_free(b);
			b = ++remade % 2 ? rules_new(ra, na, NULL)
			                 : rules_new(rb, nb, NULL);
		}
	}
	rules_free(a);
	rules_free(b);
	return 0;
}
