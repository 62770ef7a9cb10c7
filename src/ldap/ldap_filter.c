/*
 * Search filters from a template (RFC 4515). Pure: no I/O, no globals.
 */
#include "ldap/ldap_src.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends n bytes to out at *pos; false when they do not fit with a NUL. */
static bool put(char *out, size_t cap, size_t *pos, const char *p, size_t n)
{
	if (n >= cap - *pos)
		return false;
	memcpy(out + *pos, p, n);
	*pos += n;
	return true;
}

/* Appends v[0..len) escaped as an assertion value. Escaping every byte that
 * has a meaning in a filter keeps the value one literal assertion whatever a
 * client sends as its user name. */
static bool put_escaped(char *out, size_t cap, size_t *pos, const char *v,
                        size_t len)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '*' || c == '(' || c == ')' || c == '\\' || c == 0) {
			char esc[3] = {'\\', hex[c >> 4], hex[c & 15]};

			if (!put(out, cap, pos, esc, 3))
				return false;
		} else if (!put(out, cap, pos, v + i, 1)) {
			return false;
		}
	}
	return true;
}

/* Validates tmpl; on error writes the reason into why. */
static int check(const char *tmpl, char *why, size_t cap)
{
	int depth = 0;
	size_t n = strlen(tmpl);

	if (n == 0 || n >= LDAP_SRC_FILTER_MAX) {
		snprintf(why, cap, "filter template is empty or too long");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (tmpl[i] == '%') {
			char c = tmpl[i + 1];

			if (c != 'u' && c != 's' && c != '%') {
				snprintf(why, cap,
				         "filter template: unknown %%%c at "
				         "offset %zu (only %%u, %%s, %%%%)",
				         c != '\0' ? c : '?', i);
				return -1;
			}
			i++;
		} else if (tmpl[i] == '\\') {
			/* An escape of the template's own text: skip the pair
			 * so that \28 is never read as a parenthesis. */
			i += tmpl[i + 1] != '\0' ? 1 : 0;
		} else if (tmpl[i] == '(') {
			depth++;
		} else if (tmpl[i] == ')' &&
		           (--depth < 0 || (depth == 0 && i + 1 < n))) {
			/* Closed before the end: not one filter. */
			depth = -1;
			break;
		}
	}
	if (depth != 0 || tmpl[0] != '(' || tmpl[n - 1] != ')') {
		snprintf(why, cap,
		         "filter template: parentheses do not balance "
		         "(it must be one filter in parentheses)");
		return -1;
	}
	return 0;
}

int ldap_filter_check(const char *tmpl, char **err)
{
	char why[160];

	if (err != NULL)
		*err = NULL;
	if (tmpl == NULL) {
		if (err != NULL)
			*err = strdup("no filter template");
		return -1;
	}
	if (check(tmpl, why, sizeof(why)) != 0) {
		if (err != NULL)
			*err = strdup(why);
		return -1;
	}
	return 0;
}

int ldap_filter_build(const char *tmpl, const char *user, char *out, size_t cap)
{
	char why[160];
	size_t ulen, slen, pos = 0;
	const char *at;

	if (tmpl == NULL || user == NULL || out == NULL || cap == 0)
		return -1;
	out[0] = '\0';
	ulen = strnlen(user, LDAP_SRC_USER_MAX + 1);
	if (ulen == 0 || ulen > LDAP_SRC_USER_MAX ||
	    check(tmpl, why, sizeof(why)) != 0)
		return -1;
	at = memchr(user, '@', ulen);
	slen = at != NULL ? (size_t)(at - user) : ulen;
	for (const char *p = tmpl; *p != '\0'; p++) {
		bool ok;

		if (p[0] != '%')
			ok = put(out, cap, &pos, p, 1);
		else if (p[1] == 'u')
			ok = put_escaped(out, cap, &pos, user, ulen);
		else if (p[1] == 's')
			ok = put_escaped(out, cap, &pos, user, slen);
		else
			ok = put(out, cap, &pos, "%", 1);
		if (!ok) {
			out[0] = '\0';
			return -1;
		}
		p += p[0] == '%';
	}
	out[pos] = '\0';
	return (int)pos;
}
