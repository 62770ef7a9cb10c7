/*
 * The database name inside a home database DN (RFC 4514). Pure: no I/O,
 * no globals; the input is hostile (whatever the directory holds).
 */
#include "ldap/ldap_src.h"

#include "core/str.h"

#include <string.h>

/* A cursor over the DN being read. */
struct dn_cursor {
	const char *p;
	size_t len;
	size_t i;
};

/* Where a decoded value goes; out NULL: only validate. */
struct dn_value {
	char *out;
	size_t cap;
	size_t n;
	bool overflow;
	bool ctrl; /* a control byte was decoded */
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool at_end(const struct dn_cursor *d)
{
	return d->i >= d->len;
}

static char cur(const struct dn_cursor *d)
{
	return d->i < d->len ? d->p[d->i] : '\0';
}

static void skip_spaces(struct dn_cursor *d)
{
	while (!at_end(d) && d->p[d->i] == ' ')
		d->i++;
}

static void value_put(struct dn_value *v, unsigned char c)
{
	if (c < 0x20 || c == 0x7f)
		v->ctrl = true;
	if (v->out == NULL)
		return;
	if (v->n + 1 >= v->cap) {
		v->overflow = true;
		return;
	}
	v->out[v->n++] = (char)c;
}

/* Reads an attribute type (descr or numericoid) and the '=' after it into
 * *type. Returns 0 or -1. */
static int read_type(struct dn_cursor *d, struct str *type)
{
	size_t start;

	skip_spaces(d);
	start = d->i;
	if (is_alpha(cur(d))) {
		while (is_alpha(cur(d)) || is_digit(cur(d)) || cur(d) == '-')
			d->i++;
	} else if (is_digit(cur(d))) {
		/* numericoid: number *( "." number ) */
		for (;;) {
			if (!is_digit(cur(d)))
				return -1;
			while (is_digit(cur(d)))
				d->i++;
			if (cur(d) != '.')
				break;
			d->i++;
		}
	} else {
		return -1;
	}
	*type = (struct str){d->p + start, d->i - start};
	skip_spaces(d);
	if (cur(d) != '=')
		return -1;
	d->i++;
	return 0;
}

/* Reads "#" 1*hexpair: the BER form of a value. Valid in a DN, but never a
 * database name, so it is only checked. */
static int read_hexstring(struct dn_cursor *d)
{
	size_t pairs = 0;

	d->i++;
	while (hexval(cur(d)) >= 0) {
		if (hexval(d->i + 1 < d->len ? d->p[d->i + 1] : '\0') < 0)
			return -1;
		d->i += 2;
		pairs++;
	}
	skip_spaces(d);
	return pairs > 0 ? 0 : -1;
}

/* Decodes the escape at the cursor (on the backslash). Returns 0 or -1. */
static int read_pair(struct dn_cursor *d, struct dn_value *v)
{
	char c;
	int hi, lo;

	d->i++;
	if (at_end(d))
		return -1;
	c = d->p[d->i];
	hi = hexval(c);
	if (hi >= 0) {
		lo = hexval(d->i + 1 < d->len ? d->p[d->i + 1] : '\0');
		if (lo < 0)
			return -1;
		value_put(v, (unsigned char)(hi << 4 | lo));
		d->i += 2;
		return 0;
	}
	if (strchr("\\\"+,;<>=# ", c) == NULL || c == '\0')
		return -1;
	value_put(v, (unsigned char)c);
	d->i++;
	return 0;
}

/* Reads a string value up to the next unescaped ',', ';', '+' or the end.
 * Unescaped trailing spaces are dropped (escaped ones are kept). */
static int read_string(struct dn_cursor *d, struct dn_value *v)
{
	size_t keep = v->n; /* length up to the last non-space byte */

	while (!at_end(d)) {
		char c = d->p[d->i];

		if (c == ',' || c == ';' || c == '+')
			break;
		if (c == '\\') {
			if (read_pair(d, v) != 0)
				return -1;
			keep = v->n;
			continue;
		}
		/* RFC 4514 wants these escaped; a NUL is never text. */
		if (c == '"' || c == '<' || c == '>' || c == '\0')
			return -1;
		value_put(v, (unsigned char)c);
		d->i++;
		if (c != ' ')
			keep = v->n;
	}
	if (v->out != NULL && !v->overflow)
		v->n = keep;
	return 0;
}

/* Reads one attribute value and decodes it into v (which may be a sink that
 * only validates). Returns 0 or -1; *hexform tells a "#..." value. */
static int read_value(struct dn_cursor *d, struct dn_value *v, bool *hexform)
{
	skip_spaces(d);
	*hexform = cur(d) == '#';
	if (*hexform)
		return read_hexstring(d);
	return read_string(d, v);
}

static bool is_cn(struct str type)
{
	return str_eq_ci_lit(type, "cn") || str_eq_ci_lit(type, "commonName") ||
	       str_eq(type, STR_LIT("2.5.4.3"));
}

/* Reads the first RDN; the value of its first cn goes into *out. */
static int read_first_rdn(struct dn_cursor *d, struct dn_value *out,
                          bool *found)
{
	*found = false;
	for (;;) {
		struct dn_value sink = {0};
		struct str type;
		bool take, hexform;

		if (read_type(d, &type) != 0)
			return -1;
		take = !*found && is_cn(type);
		if (read_value(d, take ? out : &sink, &hexform) != 0)
			return -1;
		if (take) {
			if (hexform)
				return -1;
			*found = true;
		}
		if (cur(d) != '+')
			return 0;
		d->i++;
	}
}

/* Checks the RDNs after the first. */
static int read_rest(struct dn_cursor *d)
{
	while (!at_end(d)) {
		struct dn_value sink = {0};
		struct str type;
		bool hexform;

		if (cur(d) != ',' && cur(d) != ';' && cur(d) != '+')
			return -1;
		d->i++;
		if (read_type(d, &type) != 0 ||
		    read_value(d, &sink, &hexform) != 0)
			return -1;
	}
	return 0;
}

int ldap_dn_database(const char *dn, size_t len, char *out, size_t cap)
{
	struct dn_cursor d = {dn, len, 0};
	struct dn_value v = {out, cap, 0, false, false};
	bool found;

	if (dn == NULL || out == NULL || cap == 0)
		return -1;
	out[0] = '\0';
	if (read_first_rdn(&d, &v, &found) != 0 || !found || v.overflow ||
	    v.ctrl || v.n == 0 || read_rest(&d) != 0) {
		out[0] = '\0';
		return -1;
	}
	out[v.n] = '\0';
	return (int)v.n;
}

int ldap_dn_escape_value(const char *v, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	if (out == NULL || cap == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];
		char buf[3];
		size_t k = 0;

		if (c < 0x20 || c == 0x7f) {
			buf[k++] = '\\';
			buf[k++] = hex[c >> 4];
			buf[k++] = hex[c & 15];
		} else {
			if (strchr("\\\"+,;<>=", c) != NULL ||
			    (c == '#' && i == 0) ||
			    (c == ' ' && (i == 0 || i + 1 == len)))
				buf[k++] = '\\';
			buf[k++] = (char)c;
		}
		if (k >= cap - n) {
			out[0] = '\0';
			return -1;
		}
		memcpy(out + n, buf, k);
		n += k;
	}
	out[n] = '\0';
	return (int)n;
}
