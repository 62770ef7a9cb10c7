/*
 * libFuzzer harness of the pure half of ldap/: the same bytes are read as a
 * home database DN and used as a user name in a filter template. Besides
 * memory safety it checks what the client relies on: a database name is
 * non-empty, bounded, free of control bytes, the same at every read, and
 * survives escaping and reading back; a built filter has exactly the
 * template's structure (no unescaped parenthesis or asterisk from the user)
 * and every backslash starts a hex pair.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ldap/ldap_src.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TMPL "(|(userPrincipalName=%u)(mail=%u)(uid=%s))"

static void check_dn(const char *dn, size_t size)
{
	char out[LDAP_SRC_DB_MAX], again[LDAP_SRC_DB_MAX], small[8];
	char esc[4 * LDAP_SRC_DB_MAX], wrapped[4 * LDAP_SRC_DB_MAX + 16];
	int n = ldap_dn_database(dn, size, out, sizeof(out));
	int m = ldap_dn_database(dn, size, again, sizeof(again));
	int k = ldap_dn_database(dn, size, small, sizeof(small));

	if (n != m || (n >= 0 && strcmp(out, again) != 0))
		abort();
	/* A smaller buffer refuses, or gives the same name. */
	if (k >= 0 && (k != n || strcmp(small, out) != 0))
		abort();
	if (n < 0) {
		if (out[0] != '\0')
			abort();
		return;
	}
	if (n == 0 || (size_t)n >= sizeof(out) || strlen(out) != (size_t)n)
		abort();
	for (int i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			abort();
	if (ldap_dn_escape_value(out, (size_t)n, esc, sizeof(esc)) < 0)
		abort();
	memcpy(wrapped, "cn=", 3);
	memcpy(wrapped + 3, esc, strlen(esc));
	memcpy(wrapped + 3 + strlen(esc), ",o=x", 5);
	if (ldap_dn_database(wrapped, strlen(wrapped), again, sizeof(again)) !=
	        n ||
	    strcmp(again, out) != 0)
		abort();
}

static int hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void check_filter(const char *user)
{
	char out[LDAP_SRC_FILTER_MAX];
	int n = ldap_filter_build(TMPL, user, out, sizeof(out));
	int open = 0, close = 0;

	if (n < 0)
		return;
	if ((size_t)n != strlen(out))
		abort();
	for (int i = 0; i < n; i++) {
		if (out[i] == '\\') {
			if (i + 2 >= n || !hex(out[i + 1]) || !hex(out[i + 2]))
				abort();
			i += 2;
		} else if (out[i] == '(') {
			open++;
		} else if (out[i] == ')') {
			close++;
		} else if (out[i] == '*') {
			abort();
		}
	}
	if (open != 4 || close != 4)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char user[LDAP_SRC_USER_MAX + 1];
	size_t n = size < LDAP_SRC_USER_MAX ? size : LDAP_SRC_USER_MAX;

	check_dn((const char *)data, size);
	memcpy(user, data, n);
	user[n] = '\0';
	check_filter(user);
	return 0;
}
