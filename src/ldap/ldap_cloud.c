/*
 * Which directory entries describe a mailbox moved to Exchange Online
 * (DESIGN.md "Mailboxes in Exchange Online", EAS.md 10). Pure: the values
 * are bytes the directory sent, read here and nowhere else, and fuzzed.
 */
#include "ldap/ldap_src.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/str.h"

/* Longest targetAddress shown in the evidence. */
#define SHOWN_MAX 120

/* msExchRecipientTypeDetails of the remote mailboxes. */
static const struct {
	unsigned long long value;
	const char *name;
} remote_types[] = {
    {2147483648ULL, "RemoteUserMailbox"},
    {8589934592ULL, "RemoteRoomMailbox"},
    {17179869184ULL, "RemoteEquipmentMailbox"},
    {34359738368ULL, "RemoteSharedMailbox"},
};

/* msExchRemoteRecipientType: shown only, never a reason. */
static const struct {
	unsigned long long value;
	const char *name;
} remote_kinds[] = {
    {1, "provisioned in the cloud"},
    {4, "migrated"},
};

/* A decimal AD integer: digits only, at most 19 of them (no overflow).
 * Returns -1 for anything else. */
static int decimal(const char *p, size_t len, unsigned long long *out)
{
	unsigned long long v = 0;

	if (p == NULL || len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (unsigned long long)(p[i] - '0');
	}
	*out = v;
	return 0;
}

/* The name of a remote mailbox's recipient type; NULL for another. */
static const char *remote_type(const char *p, size_t len)
{
	unsigned long long v;

	if (decimal(p, len, &v) < 0)
		return NULL;
	for (size_t i = 0; i < sizeof(remote_types) / sizeof(remote_types[0]);
	     i++)
		if (remote_types[i].value == v)
			return remote_types[i].name;
	return NULL;
}

/* The domain of a targetAddress, "SMTP:" prefix (any case) and all up to
 * the last '@' taken off; empty when there is no '@'. */
static struct str target_domain(const char *p, size_t len)
{
	struct str t = {p, len};
	const char *at;

	if (str_prefix_ci(t, str_from("smtp:"))) {
		t.p += 5;
		t.len -= 5;
	}
	at = t.len > 0 ? memrchr(t.p, '@', t.len) : NULL;
	if (at == NULL)
		return STR_NULL;
	return (struct str){at + 1, t.len - (size_t)(at + 1 - t.p)};
}

/* The tenant domain (one of domains) target ends in; NULL when none. */
static const char *tenant_domain(const char *p, size_t len,
                                 char *const *domains, unsigned n)
{
	struct str d;

	if (p == NULL || len == 0)
		return NULL;
	d = target_domain(p, len);
	if (d.len == 0)
		return NULL;
	for (unsigned i = 0; i < n; i++)
		if (domains[i] != NULL && str_eq_ci(d, str_from(domains[i])))
			return domains[i];
	return NULL;
}

/* An appending, truncating snprintf into why. */
struct why {
	char *buf;
	size_t cap;
	size_t len;
};

static void add(struct why *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add(struct why *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->len + 1 >= w->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		w->len += (size_t)n < w->cap - w->len ? (size_t)n
		                                       : w->cap - w->len - 1;
}

/* p[0..len) as printable ASCII ('?' for anything else), shortened. */
static void shown(char *out, size_t cap, const char *p, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n + 4 < cap; i++) {
		unsigned char c = (unsigned char)p[i];

		out[n++] = c >= 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
	}
	if (n < len && n + 3 < cap) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
}

/* Adds msExchRemoteRecipientType to the evidence, when there. */
static void add_remote_kind(struct why *w, const struct ldap_cloud_attrs *a)
{
	unsigned long long v;
	const char *name = NULL;

	if (decimal(a->remote, a->remote_len, &v) < 0)
		return;
	for (size_t i = 0; i < sizeof(remote_kinds) / sizeof(remote_kinds[0]);
	     i++)
		if (remote_kinds[i].value == v)
			name = remote_kinds[i].name;
	add(w, "; %s %llu%s%s%s", LDAP_SRC_ATTR_REMOTE, v, name ? " (" : "",
	    name ? name : "", name ? ")" : "");
}

int ldap_cloud_moved(const struct ldap_cloud_attrs *a, char *const *domains,
                     unsigned n, char *why, size_t cap)
{
	struct why w = {why, cap, 0};
	const char *type, *tenant;
	char text[SHOWN_MAX + 4];

	if (cap > 0)
		why[0] = '\0';
	if (a->has_home)
		return 0;
	type = a->type != NULL ? remote_type(a->type, a->type_len) : NULL;
	tenant = type == NULL ? tenant_domain(a->target, a->target_len,
	                                      domains, n)
	                      : NULL;
	if (type != NULL) {
		shown(text, sizeof(text), a->type, a->type_len);
		add(&w, "%s %s (%s)", LDAP_SRC_ATTR_TYPE, text, type);
	} else if (tenant != NULL) {
		shown(text, sizeof(text), a->target, a->target_len);
		add(&w, "%s %s (tenant domain %s)", LDAP_SRC_ATTR_TARGET, text,
		    tenant);
	} else {
		return 0;
	}
	add_remote_kind(&w, a);
	return 1;
}
