/*
 * libFuzzer harness of the pure half of ldap/: the same bytes are read as a
 * home database DN and used as a user name in a filter template. Besides
 * memory safety it checks what the client relies on: a database name is
 * non-empty, bounded, free of control bytes, the same at every read, and
 * survives escaping and reading back; a built filter has exactly the
 * template's structure (no unescaped parenthesis or asterisk from the user)
 * and every backslash starts a hex pair.
 *
 * The bytes are also the three attributes that say a mailbox moved to
 * Exchange Online (split on the first two newlines: recipient type, remote
 * recipient type, targetAddress): the evidence is printable, bounded, the
 * same at every read, a prefix of itself in a smaller buffer, and empty
 * when the entry is not moved or has a home database.
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

static char *const domains[] = {"contoso.mail.onmicrosoft.com", "x"};

/* Cuts the next newline-separated field off *p (n bytes left). */
static const char *field(const char **p, size_t *n, size_t *len)
{
	const char *f = *p, *nl = *n > 0 ? memchr(f, '\n', *n) : NULL;

	*len = nl != NULL ? (size_t)(nl - f) : *n;
	*p += *len + (nl != NULL);
	*n -= *len + (nl != NULL);
	return f;
}

static void check_cloud(const char *data, size_t size)
{
	struct ldap_cloud_attrs a = {0};
	char why[LDAP_SRC_DB_MAX], again[LDAP_SRC_DB_MAX], small[24];
	const char *p = data;
	size_t n = size;
	int m, k;

	a.type = field(&p, &n, &a.type_len);
	a.remote = field(&p, &n, &a.remote_len);
	a.target = field(&p, &n, &a.target_len);
	m = ldap_cloud_moved(&a, domains, 2, why, sizeof(why));
	if (m != ldap_cloud_moved(&a, domains, 2, again, sizeof(again)) ||
	    strcmp(why, again) != 0 || (m != 0 && m != 1) ||
	    (m == 0) != (why[0] == '\0'))
		abort();
	for (const char *c = why; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			abort();
	k = ldap_cloud_moved(&a, domains, 2, small, sizeof(small));
	if (k != m || strncmp(small, why, strlen(small)) != 0)
		abort();
	a.has_home = true;
	if (ldap_cloud_moved(&a, domains, 2, why, sizeof(why)) != 0 ||
	    why[0] != '\0')
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
	check_cloud((const char *)data, size);
	return 0;
}
