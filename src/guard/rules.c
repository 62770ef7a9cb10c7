/*
 * Device rules: the conf's list compiled once per generation. A rule keeps
 * its cheap tests (version, user, cmd) in a small array walked on every
 * request and its regexes apart, consulted only when the cheap tests pass.
 *
 * The memo is a 2-way set-associative table keyed by copies of the three
 * strings the regexes read (DeviceId, DeviceType, User-Agent). An entry
 * holds, per rule, whether its regexes were run for that device and whether
 * they all matched; they are run lazily, in the order rules_match would
 * run them, so a miss costs what rules_match costs, and a hit skips the
 * rules known not to match 64 at a time and runs only the regexes of rules
 * this device never reached before. An entry also keeps its last answer
 * with the user, command and version it was for, and gives it again for
 * the same ones without walking anything.
 */
#include "guard/rules.h"

#include <limits.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/str.h"

/* The regex fields of a rule, and the bit of each in rule.regexes. */
enum re_field {
	RE_DEVICE_ID = 0,
	RE_DEVICE_TYPE,
	RE_USER_AGENT,
	RE_FIELDS,
};

/* Compiled like conf_check tries them, so a checked config always builds. */
#define RULES_REG_FLAGS (REG_EXTENDED | REG_ICASE | REG_NOSUB)
/* Rule bitmaps, of the set and of the memo: one bit per rule. */
#define RULES_WORDS ((RULES_MAX + 63) / 64)

/* What the per-request loop reads: small, so 100 rules fit in a few cache
 * lines. A rule without version has the range 0..UINT_MAX; with one, its
 * start is at least 1, so an unknown version (0) never matches it. */
struct rule {
	unsigned vmin, vmax;
	const char *user; /* the conf's; NULL: any */
	const char *cmd;  /* the conf's; NULL: any */
	unsigned user_len, cmd_len;
	unsigned regexes; /* bit RE_x: re[x] is compiled and must match */
};

/* A request's facts with the lengths the cheap tests compare first. */
struct probe {
	const struct rules_facts *f;
	size_t user_len, cmd_len;
};

struct rules {
	uint64_t serial; /* unique per rules_new, never 0 */
	unsigned n;
	unsigned words;             /* of live and of memo bitmaps in use */
	uint64_t live[RULES_WORDS]; /* bit i: rule i exists */
	bool any_regex;             /* some rule has one: the memo has a use */
	bool any_user, any_cmd;     /* some rule names a user, a command */
	struct rule *rule;          /* owned, n entries */
	regex_t (*re)[RE_FIELDS];   /* owned, n entries; only those in
	                                rule[i].regexes compiled */
	const struct conf_device_rule *src; /* the conf's, n entries */
};

/* Serials of rule sets: a memo entry made under a freed set whose memory
 * was reused by a new one is told apart by it. */
static atomic_uint_fast64_t rules_serials;


static int rule_compile(struct rules *rs, unsigned i, char **err)
{
	static const char *const names[RE_FIELDS] = {"device_id", "device_type",
	                                             "user_agent"};
	const struct conf_device_rule *c = &rs->src[i];
	const char *pat[RE_FIELDS] = {c->device_id, c->device_type,
	                              c->user_agent};
	struct rule *r = &rs->rule[i];
	char why[128];

	r->user = c->user;
	r->cmd = c->cmd;
	r->user_len = c->user ? (unsigned)strlen(c->user) : 0;
	r->cmd_len = c->cmd ? (unsigned)strlen(c->cmd) : 0;
	r->vmin = 0;
	r->vmax = UINT_MAX;
	if (c->has_version) {
		r->vmin = c->version_min > 0 ? c->version_min : 1;
		r->vmax = c->version_max;
	}
	for (unsigned k = 0; k < RE_FIELDS; k++) {
		int e;

		if (pat[k] == NULL)
			continue;
		e = regcomp(&rs->re[i][k], pat[k], RULES_REG_FLAGS);
		if (e != 0) {
			regerror(e, &rs->re[i][k], why, sizeof(why));
			str_errf(err, "rule at line %u: %s: %s", c->line,
			        names[k], why);
			return -1;
		}
		r->regexes |= 1U << k;
		rs->any_regex = true;
	}
	return 0;
}

struct rules *rules_new(const struct conf_device_rule *r, unsigned n,
                        char **err)
{
	struct rules *rs;

	if (err != NULL)
		*err = NULL;
	if (n > RULES_MAX) {
		str_errf(err, "%u rules: at most %d", n, RULES_MAX);
		return NULL;
	}
	rs = calloc(1, sizeof(*rs));
	if (rs == NULL)
		goto oom;
	rs->src = r;
	rs->n = n;
	rs->rule = calloc(n ? n : 1, sizeof(*rs->rule));
	rs->re = calloc(n ? n : 1, sizeof(*rs->re));
	if (rs->rule == NULL || rs->re == NULL)
		goto oom;
	rs->words = (n + 63) / 64;
	for (unsigned i = 0; i < n; i++) {
		if (rule_compile(rs, i, err) < 0)
			goto fail;
		rs->live[i / 64] |= 1ULL << (i % 64);
		rs->any_user |= rs->rule[i].user != NULL;
		rs->any_cmd |= rs->rule[i].cmd != NULL;
	}
	rs->serial = atomic_fetch_add(&rules_serials, 1) + 1;
	return rs;
oom:
	str_errf(err, "out of memory");
fail:
	rules_free(rs);
	return NULL;
}

void rules_free(struct rules *rs)
{
	if (rs == NULL)
		return;
	for (unsigned i = 0; rs->rule != NULL && i < rs->n; i++)
		for (unsigned k = 0; k < RE_FIELDS; k++)
			if (rs->rule[i].regexes & (1U << k))
				regfree(&rs->re[i][k]);
	free(rs->rule);
	free(rs->re);
	free(rs);
}

unsigned rules_count(const struct rules *rs)
{
	return rs->n;
}

const struct conf_device_rule *rules_rule(const struct rules *rs, unsigned i)
{
	return &rs->src[i];
}

static struct probe probe_of(const struct rules_facts *f)
{
	return (struct probe){f, strlen(f->user), strlen(f->cmd)};
}

/* word equals fact ignoring case. Length and first letter go first: most
 * rules differ there, and strcasecmp would be most of a request's walk.
 * Two bytes equal ignoring case differ at most in bit 0x20. */
static inline bool same_word(const char *word, unsigned word_len,
                             const char *fact, size_t fact_len)
{
	return word_len == fact_len && ((word[0] ^ fact[0]) & ~0x20) == 0 &&
	       strcasecmp(word, fact) == 0;
}

static inline bool cheap_match(const struct rule *r, const struct probe *p)
{
	return p->f->version >= r->vmin && p->f->version <= r->vmax &&
	       (r->user == NULL ||
	        same_word(r->user, r->user_len, p->f->user, p->user_len)) &&
	       (r->cmd == NULL ||
	        same_word(r->cmd, r->cmd_len, p->f->cmd, p->cmd_len));
}

/* Whether every regex of rule i matches; true for a rule without any. */
static bool regex_match(const struct rules *rs, unsigned i,
                        const struct rules_facts *f)
{
	const char *v[RE_FIELDS] = {f->device_id, f->device_type,
	                            f->user_agent};
	unsigned bits = rs->rule[i].regexes;

	for (unsigned k = 0; k < RE_FIELDS; k++)
		if ((bits & (1U << k)) &&
		    regexec(&rs->re[i][k], v[k], 0, NULL, 0) != 0)
			return false;
	return true;
}

int rules_match(const struct rules *rs, const struct rules_facts *f)
{
	struct probe p = probe_of(f);

	for (unsigned i = 0; i < rs->n; i++)
		if (cheap_match(&rs->rule[i], &p) && regex_match(rs, i, f))
			return (int)i;
	return -1;
}

/* A phone's strings are short (a DeviceId is at most 32 characters in
 * practice); longer ones bypass the memo rather than grow it. */
#define MEMO_ID_MAX 64
#define MEMO_TYPE_MAX 64
#define MEMO_UA_MAX 512
#define MEMO_KEY_MAX (MEMO_ID_MAX + MEMO_TYPE_MAX + MEMO_UA_MAX)
#define MEMO_SETS 256 /* a power of two */
#define MEMO_WAYS 2

struct memo_key {
	const char *s[RE_FIELDS];
	uint16_t len[RE_FIELDS];
	uint64_t hash;
};

/* The rest of the facts an answer was given for: those of them the rule
 * set reads (a set without cmd rules answers Ping and Sync alike). */
#define MEMO_USER_MAX 128
#define MEMO_CMD_MAX 32

struct memo_answer {
	bool valid;
	int answer;	 /* rules_match's for these facts */
	unsigned version;
	uint8_t user_len, cmd_len;
	char user[MEMO_USER_MAX];
	char cmd[MEMO_CMD_MAX];
};

struct memo_entry {
	uint64_t serial; /* of the rule set it was made under; 0: empty */
	uint64_t hash;
	uint16_t len[RE_FIELDS];
	char key[MEMO_KEY_MAX];    /* the three strings, end to end */
	uint64_t ran[RULES_WORDS]; /* rules whose regexes were run */
	uint64_t hit[RULES_WORDS]; /* of those, the ones all matched */
	struct memo_answer last;   /* a phone comes back with the same user,
				      command and version: then not even the
				      bitmaps are walked */
};

struct rules_memo {
	struct memo_entry e[MEMO_SETS][MEMO_WAYS];
	uint8_t last[MEMO_SETS]; /* the way used last in each set */
};

struct rules_memo *rules_memo_new(void)
{
	return calloc(1, sizeof(struct rules_memo));
}

void rules_memo_free(struct rules_memo *m)
{
	free(m);
}

/* Eight bytes at a time: this runs on every request, and a collision only
 * costs a string compare (the key is always compared whole). */
static uint64_t hash_bytes(uint64_t h, const char *s, size_t n)
{
	uint64_t w;

	for (; n >= 8; s += 8, n -= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
		h ^= h >> 29;
	}
	w = (uint64_t)n << 56;
	memcpy(&w, s, n);
	h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

/* Fills k from f; false when a string is too long to remember. */
static bool memo_key(struct memo_key *k, const struct rules_facts *f)
{
	static const size_t max[RE_FIELDS] = {MEMO_ID_MAX, MEMO_TYPE_MAX,
	                                      MEMO_UA_MAX};
	uint64_t h = 0x243f6a8885a308d3ULL;

	k->s[RE_DEVICE_ID] = f->device_id;
	k->s[RE_DEVICE_TYPE] = f->device_type;
	k->s[RE_USER_AGENT] = f->user_agent;
	for (unsigned i = 0; i < RE_FIELDS; i++) {
		size_t n = strnlen(k->s[i], max[i] + 1);

		if (n > max[i])
			return false;
		k->len[i] = (uint16_t)n;
		h = hash_bytes(h, k->s[i], n);
	}
	k->hash = h;
	return true;
}

static bool entry_is(const struct memo_entry *e, uint64_t serial,
                     const struct memo_key *k)
{
	size_t off = 0;

	if (e->serial != serial || e->hash != k->hash)
		return false;
	for (unsigned i = 0; i < RE_FIELDS; i++) {
		if (e->len[i] != k->len[i] ||
		    memcmp(e->key + off, k->s[i], k->len[i]) != 0)
			return false;
		off += k->len[i];
	}
	return true;
}

/* Makes the set's older way the entry for k under rs, knowing nothing. */
static struct memo_entry *entry_take(struct rules_memo *m, unsigned set,
                                     const struct rules *rs,
                                     const struct memo_key *k)
{
	unsigned way = m->last[set] ^ 1U;
	struct memo_entry *e = &m->e[set][way];
	size_t off = 0;

	m->last[set] = (uint8_t)way;
	e->serial = rs->serial;
	e->hash = k->hash;
	for (unsigned i = 0; i < RE_FIELDS; i++) {
		e->len[i] = k->len[i];
		memcpy(e->key + off, k->s[i], k->len[i]);
		off += k->len[i];
	}
	/* Only the words this set's rules use are ever read. */
	memset(e->ran, 0, rs->words * sizeof(e->ran[0]));
	memset(e->hit, 0, rs->words * sizeof(e->hit[0]));
	e->last.valid = false;
	return e;
}

static struct memo_entry *memo_find(struct rules_memo *m,
                                    const struct rules *rs,
                                    const struct memo_key *k)
{
	unsigned set = (unsigned)(k->hash >> 32) & (MEMO_SETS - 1);

	for (unsigned way = 0; way < MEMO_WAYS; way++)
		if (entry_is(&m->e[set][way], rs->serial, k)) {
			m->last[set] = (uint8_t)way;
			return &m->e[set][way];
		}
	return entry_take(m, set, rs, k);
}

/* Rule i against f, its regex result taken from or added to e. */
static bool memo_rule(const struct rules *rs, struct memo_entry *e, unsigned i,
                      const struct probe *p)
{
	uint64_t bit = 1ULL << (i % 64);
	unsigned w = i / 64;

	if (!cheap_match(&rs->rule[i], p))
		return false;
	if (rs->rule[i].regexes == 0)
		return true;
	if (!(e->ran[w] & bit)) {
		e->ran[w] |= bit;
		if (regex_match(rs, i, p->f))
			e->hit[w] |= bit;
	}
	return (e->hit[w] & bit) != 0;
}

/* The facts of p as rs reads them: the empty string for a field no rule
 * names. */
static struct str fact_user(const struct rules *rs, const struct probe *p)
{
	return rs->any_user ? (struct str){p->f->user, p->user_len}
			    : (struct str){"", 0};
}

static struct str fact_cmd(const struct rules *rs, const struct probe *p)
{
	return rs->any_cmd ? (struct str){p->f->cmd, p->cmd_len}
			   : (struct str){"", 0};
}

static bool answer_is(const struct memo_answer *a, const struct rules *rs,
		      const struct probe *p)
{
	struct str u = fact_user(rs, p), c = fact_cmd(rs, p);

	return a->valid && a->version == p->f->version &&
	       a->user_len == u.len && a->cmd_len == c.len &&
	       memcmp(a->user, u.p, u.len) == 0 &&
	       memcmp(a->cmd, c.p, c.len) == 0;
}

static int answer_keep(struct memo_answer *a, const struct rules *rs,
		       const struct probe *p, int answer)
{
	struct str u = fact_user(rs, p), c = fact_cmd(rs, p);

	a->valid = u.len <= sizeof(a->user) && c.len <= sizeof(a->cmd);
	if (!a->valid)
		return answer;
	a->answer = answer;
	a->version = p->f->version;
	a->user_len = (uint8_t)u.len;
	a->cmd_len = (uint8_t)c.len;
	memcpy(a->user, u.p, u.len);
	memcpy(a->cmd, c.p, c.len);
	return answer;
}

/* The first rule matching, walking the rules the entry's bitmaps leave. */
static int memo_walk(const struct rules *rs, struct memo_entry *e,
		     const struct probe *p)
{
	/* Rules whose regexes are known not to match this device are
	 * skipped a word at a time: on a hit, most rules cost nothing. The
	 * rest (rules without regex never have their ran bit set) are tried
	 * in order, so the first match is rules_match's. */
	for (unsigned w = 0; w < rs->words; w++) {
		uint64_t maybe = (~e->ran[w] | e->hit[w]) & rs->live[w];

		for (; maybe != 0; maybe &= maybe - 1) {
			unsigned i = w * 64 + (unsigned)__builtin_ctzll(maybe);

			if (memo_rule(rs, e, i, p))
				return (int)i;
		}
	}
	return -1;
}

int rules_match_memo(const struct rules *rs, struct rules_memo *m,
                     const struct rules_facts *f)
{
	struct memo_entry *e;
	struct memo_key k;
	struct probe p;

	if (!rs->any_regex || !memo_key(&k, f))
		return rules_match(rs, f);
	e = memo_find(m, rs, &k);
	p = probe_of(f);
	if (answer_is(&e->last, rs, &p))
		return e->last.answer;
	return answer_keep(&e->last, rs, &p, memo_walk(rs, e, &p));
}
