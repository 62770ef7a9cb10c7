#include "core/str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline unsigned char lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

struct str str_from(const char *s)
{
	return s ? (struct str){s, strlen(s)} : STR_NULL;
}

bool str_eq(struct str a, struct str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

bool str_eq_ci(struct str a, struct str b)
{
	size_t i = 0;

	if (a.len != b.len)
		return false;
	/* Names compared on the hot path (paths, query keys, headers) mostly
	 * match byte for byte: eight at a time until a word differs. */
	for (; i + 8 <= a.len; i += 8) {
		uint64_t x, y;

		memcpy(&x, a.p + i, 8);
		memcpy(&y, b.p + i, 8);
		if (x != y)
			break;
	}
	for (; i < a.len; i++) {
		unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];

		if (x != y && lower(x) != lower(y))
			return false;
	}
	return true;
}

bool str_prefix_ci(struct str s, struct str prefix)
{
	if (s.len < prefix.len)
		return false;
	return str_eq_ci((struct str){s.p, prefix.len}, prefix);
}

struct str str_trim(struct str s)
{
	while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
		s.p++;
		s.len--;
	}
	while (s.len > 0 && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
		s.len--;
	return s;
}

bool str_copy(char *dst, size_t cap, struct str s)
{
	if (cap == 0)
		return false;
	if (s.len >= cap) {
		memcpy(dst, s.p, cap - 1);
		dst[cap - 1] = '\0';
		return false;
	}
	if (s.len > 0)
		memcpy(dst, s.p, s.len);
	dst[s.len] = '\0';
	return true;
}

char *str_dup(struct str s)
{
	char *d = malloc(s.len + 1);

	if (d == NULL)
		return NULL;
	if (s.len > 0)
		memcpy(d, s.p, s.len);
	d[s.len] = '\0';
	return d;
}

bool str_to_u64(struct str s, uint64_t *out)
{
	uint64_t v = 0;

	if (s.len == 0)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		unsigned d = (unsigned char)s.p[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

uint64_t str_hash_ci(struct str s)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < s.len; i++) {
		h ^= lower((unsigned char)s.p[i]);
		h *= 1099511628211ULL;
	}
	return h;
}

void str_errf(char **err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) < 0)
		*err = NULL;
	va_end(ap);
}
