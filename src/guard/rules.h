/*
 * Device rules (guard.devices, DESIGN.md "Edge protection"): an ordered list
 * of block and allow rules, first match wins, default allow. Compiled once
 * per generation from the config; matching is pure and thread-safe.
 *
 * A rule matches a request when every field it names matches: device_id,
 * device_type and user_agent are POSIX extended regular expressions,
 * case-insensitive, searched (not anchored: write ^ and $ to anchor); user
 * and cmd are compared whole, case-insensitively; version is an inclusive
 * range of EAS versions x 10 and never matches a request whose version is
 * unknown. A field a rule names never matches an absent value (an empty
 * string) unless its regex matches "".
 *
 * Regexes are costly (glibc's regexec is a few microseconds each) and a phone
 * sends the same DeviceId, DeviceType and User-Agent on every request: a
 * rules_memo (one per worker) remembers, for a few recent devices, which
 * rules' regexes matched, so a request of a known device runs none.
 */
#ifndef EF_GUARD_RULES_H
#define EF_GUARD_RULES_H

#include <stddef.h>

#include "conf/conf.h"

/* Most rules a config may hold (conf_check refuses more). */
#define RULES_MAX CONF_GUARD_RULES_MAX

/* What a rule is matched against; every string NUL-terminated, "" when the
 * request has none (never NULL). */
struct rules_facts {
	const char *device_id;
	const char *device_type;
	const char *user_agent;
	const char *user;    /* normalised as routing does */
	const char *cmd;     /* "Sync", "OPTIONS"...; "" none */
	unsigned version;    /* x10; 0 unknown */
};

struct rules;
struct rules_memo;

/* Compiles n rules (REG_EXTENDED | REG_ICASE | REG_NOSUB). Returns NULL
 * with *err (malloc'd, "rule at line N: reason") when a regex does not
 * compile or memory runs out. n == 0 gives a valid empty set. */
struct rules *rules_new(const struct conf_device_rule *r, unsigned n,
			char **err);
/* NULL is accepted. */
void rules_free(struct rules *rs);
unsigned rules_count(const struct rules *rs);
/* The conf rule i was compiled from (its action and line); i < count. The
 * conf passed to rules_new must outlive rs. */
const struct conf_device_rule *rules_rule(const struct rules *rs, unsigned i);

/* The index of the first rule matching f, or -1 when none does. */
int rules_match(const struct rules *rs, const struct rules_facts *f);

/* The same answer as rules_match, with the regex results of recent devices
 * remembered in m (which may serve several rule sets in turn: a memo
 * entry made under another set is not used). m is used by one thread at a
 * time. */
int rules_match_memo(const struct rules *rs, struct rules_memo *m,
		     const struct rules_facts *f);

/* A memo of a few hundred devices (bounded, a few hundred KiB). NULL when
 * out of memory. */
struct rules_memo *rules_memo_new(void);
/* NULL is accepted. */
void rules_memo_free(struct rules_memo *m);

#endif
