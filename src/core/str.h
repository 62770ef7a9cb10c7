/*
 * Bounded string helpers shared by every part. Parsers hand out views into
 * their input (pointer + length); these compare, trim and copy such views
 * without ever needing a terminating NUL.
 */
#ifndef EF_CORE_STR_H
#define EF_CORE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A view into someone else's bytes; valid only while that buffer lives. */
struct str {
	const char *p;
	size_t len;
};

#define STR_LIT(s) ((struct str){(s), sizeof(s) - 1})
#define STR_NULL ((struct str){NULL, 0})

/* Returns a view of the NUL-terminated s (NULL gives an empty view). */
struct str str_from(const char *s);
/* True when a and b hold the same bytes. */
bool str_eq(struct str a, struct str b);
/* True when a and b are equal ignoring ASCII case. */
bool str_eq_ci(struct str a, struct str b);
/* True when a and the NUL-terminated lit are equal ignoring ASCII case.
 * Inline so the literal's length is known when compiling: most calls (one
 * per header and name on the hot path) end at the length. */
static inline bool str_eq_ci_lit(struct str a, const char *lit)
{
	size_t n = strlen(lit);

	return a.len == n && str_eq_ci(a, (struct str){lit, n});
}
/* True when s starts with prefix, ignoring ASCII case. */
bool str_prefix_ci(struct str s, struct str prefix);
/* Returns s without leading and trailing spaces and tabs. */
struct str str_trim(struct str s);
/* Copies s into dst (size cap, always NUL-terminated when cap > 0); returns
 * false when s did not fit. */
bool str_copy(char *dst, size_t cap, struct str s);
/* Returns a malloc'd NUL-terminated copy of s, or NULL on allocation failure. */
char *str_dup(struct str s);
/* Parses all of s as an unsigned decimal without overflow; false otherwise
 * (empty, sign, space or any non-digit). */
bool str_to_u64(struct str s, uint64_t *out);
/* FNV-1a over s folded to ASCII lower case: the hash every case-insensitive
 * table of easfront uses. */
uint64_t str_hash_ci(struct str s);

/* Sets *err (when err is not NULL) to a malloc'd message formatted from
 * fmt; to NULL when even that cannot be allocated. */
void str_errf(char **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
