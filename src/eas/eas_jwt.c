/*
 * A small strict JSON scanner for JWT payloads (RFC 8259, RFC 7519): one
 * object whose members are looked at by name; nested values are validated
 * and skipped to a bounded depth. Strict, because a lax scanner could read
 * a claim that the token's real consumer would not see.
 */
#include "eas/eas.h"

#include <string.h>

#include "eas/eas_int.h"

/* Arrays and objects nested deeper than this are refused. */
#define JSON_DEPTH_MAX 32

/* The claims naming the user, most specific first (EAS.md 2.1). */
static const char *const claims[] = {"upn", "preferred_username", "unique_name",
                                     "email"};
#define NCLAIMS (sizeof(claims) / sizeof(claims[0]))

struct json {
	const char *p;
	size_t n;
	size_t i;
};

static void json_ws(struct json *j)
{
	while (j->i < j->n && (j->p[j->i] == ' ' || j->p[j->i] == '\t' ||
	                       j->p[j->i] == '\n' || j->p[j->i] == '\r'))
		j->i++;
}

static bool json_eat(struct json *j, char c)
{
	json_ws(j);
	if (j->i < j->n && j->p[j->i] == c) {
		j->i++;
		return true;
	}
	return false;
}

/* Scans a string at j->i (the opening quote) and sets *raw to what is
 * between the quotes, escapes still in; -1 when malformed. */
static int json_string(struct json *j, struct str *raw)
{
	size_t start;

	if (j->i >= j->n || j->p[j->i] != '"')
		return -1;
	start = ++j->i;
	while (j->i < j->n) {
		unsigned char c = (unsigned char)j->p[j->i];

		if (c == '"') {
			*raw = (struct str){j->p + start, j->i - start};
			j->i++;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c != '\\') {
			j->i++;
			continue;
		}
		if (j->n - j->i < 2)
			return -1;
		c = (unsigned char)j->p[j->i + 1];
		if (c == 'u') {
			if (j->n - j->i < 6)
				return -1;
			for (size_t k = 2; k < 6; k++)
				if (eas_hexval((unsigned char)j->p[j->i + k]) <
				    0)
					return -1;
			j->i += 6;
		} else if (strchr("\"\\/bfnrt", c) != NULL && c != '\0') {
			j->i += 2;
		} else {
			return -1;
		}
	}
	return -1;
}

static unsigned hex4(const char *p)
{
	unsigned v = 0;

	for (int k = 0; k < 4; k++)
		v = v * 16 + (unsigned)eas_hexval((unsigned char)p[k]);
	return v;
}

/* Unescapes a string already checked by json_string() into out[0..cap) as
 * UTF-8 bytes (NUL-terminated); -1 for a lone surrogate or no room. */
static int json_unescape(struct str raw, char *out, size_t cap, size_t *n)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	size_t w = 0;

	for (size_t i = 0; i < raw.len;) {
		uint32_t cp;

		if (raw.p[i] != '\\') {
			if (cap - w < 2)
				return -1;
			out[w++] = raw.p[i++];
			continue;
		}
		if (raw.p[i + 1] != 'u') {
			if (cap - w < 2)
				return -1;
			out[w++] = to[strchr(from, raw.p[i + 1]) - from];
			i += 2;
			continue;
		}
		cp = hex4(raw.p + i + 2);
		i += 6;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return -1;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			uint32_t lo;

			if (raw.len - i < 6 || raw.p[i] != '\\' ||
			    raw.p[i + 1] != 'u')
				return -1;
			lo = hex4(raw.p + i + 2);
			if (lo < 0xdc00 || lo > 0xdfff)
				return -1;
			i += 6;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		}
		if (eas_utf8_put(cp, out, cap, &w) != 0)
			return -1;
	}
	out[w] = '\0';
	*n = w;
	return 0;
}

static int json_number(struct json *j)
{
	size_t d;

	if (j->i < j->n && j->p[j->i] == '-')
		j->i++;
	if (j->i >= j->n)
		return -1;
	if (j->p[j->i] == '0') {
		j->i++;
	} else {
		for (d = 0;
		     j->i < j->n && j->p[j->i] >= '0' && j->p[j->i] <= '9'; d++)
			j->i++;
		if (d == 0)
			return -1;
	}
	if (j->i < j->n && j->p[j->i] == '.') {
		j->i++;
		for (d = 0;
		     j->i < j->n && j->p[j->i] >= '0' && j->p[j->i] <= '9'; d++)
			j->i++;
		if (d == 0)
			return -1;
	}
	if (j->i < j->n && (j->p[j->i] == 'e' || j->p[j->i] == 'E')) {
		j->i++;
		if (j->i < j->n && (j->p[j->i] == '+' || j->p[j->i] == '-'))
			j->i++;
		for (d = 0;
		     j->i < j->n && j->p[j->i] >= '0' && j->p[j->i] <= '9'; d++)
			j->i++;
		if (d == 0)
			return -1;
	}
	return 0;
}

static int json_literal(struct json *j, const char *lit)
{
	size_t l = strlen(lit);

	if (j->n - j->i < l || memcmp(j->p + j->i, lit, l) != 0)
		return -1;
	j->i += l;
	return 0;
}

static int json_value(struct json *j, int depth);

/* The members or elements of an object or array whose opening bracket was
 * just eaten. */
static int json_container(struct json *j, bool object, int depth)
{
	char close = object ? '}' : ']';
	struct str key;

	if (depth > JSON_DEPTH_MAX)
		return -1;
	if (json_eat(j, close))
		return 0;
	do {
		if (object) {
			json_ws(j);
			if (json_string(j, &key) != 0 || !json_eat(j, ':'))
				return -1;
		}
		if (json_value(j, depth) != 0)
			return -1;
	} while (json_eat(j, ','));
	return json_eat(j, close) ? 0 : -1;
}

static int json_value(struct json *j, int depth)
{
	struct str raw;

	json_ws(j);
	if (j->i >= j->n)
		return -1;
	switch (j->p[j->i]) {
	case '"':
		return json_string(j, &raw);
	case '{':
		j->i++;
		return json_container(j, true, depth + 1);
	case '[':
		j->i++;
		return json_container(j, false, depth + 1);
	case 't':
		return json_literal(j, "true");
	case 'f':
		return json_literal(j, "false");
	case 'n':
		return json_literal(j, "null");
	default:
		return json_number(j);
	}
}

/* Index in claims[] of the key raw, or -1. */
static int claim_index(struct str raw)
{
	char key[24];
	size_t n;

	if (json_unescape(raw, key, sizeof(key), &n) != 0)
		return -1;
	for (size_t c = 0; c < NCLAIMS; c++)
		if (str_eq((struct str){key, n}, str_from(claims[c])))
			return (int)c;
	return -1;
}

/* Walks the top-level object, noting the raw value of each wanted claim
 * whose first occurrence is a string. */
static int json_claims(struct json *j, struct str found[NCLAIMS])
{
	bool seen[NCLAIMS] = {false};
	struct str key, val;

	if (!json_eat(j, '{'))
		return -1;
	if (!json_eat(j, '}')) {
		do {
			int c;

			json_ws(j);
			if (json_string(j, &key) != 0 || !json_eat(j, ':'))
				return -1;
			c = claim_index(key);
			json_ws(j);
			if (c >= 0 && !seen[c] && j->i < j->n &&
			    j->p[j->i] == '"') {
				if (json_string(j, &val) != 0)
					return -1;
				found[c] = val;
			} else if (json_value(j, 1) != 0) {
				return -1;
			}
			if (c >= 0)
				seen[c] = true;
		} while (json_eat(j, ','));
		if (!json_eat(j, '}'))
			return -1;
	}
	json_ws(j);
	return j->i == j->n ? 0 : -1;
}

int eas_jwt_claims_user(struct str json, char *user, size_t cap)
{
	struct json j = {json.p, json.len, 0};
	struct str found[NCLAIMS];
	char tmp[EAS_USER_MAX];

	if (cap > 0)
		user[0] = '\0';
	memset(found, 0, sizeof(found));
	if (json.len == 0 || json_claims(&j, found) != 0)
		return -1;
	for (size_t c = 0; c < NCLAIMS; c++) {
		size_t n, pos = 0;

		if (found[c].p == NULL ||
		    json_unescape(found[c], tmp, sizeof(tmp), &n) != 0)
			continue;
		if (n > 0 &&
		    eas_text_append((const uint8_t *)tmp, n, EAS_TEXT_UTF8,
		                    user, cap, &pos) == 0)
			return 0;
	}
	return -1;
}
