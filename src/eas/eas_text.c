/*
 * User text: every user name that leaves this part is valid UTF-8 without
 * control characters, whatever encoding the client used, so that routing
 * keys compare byte for byte and log lines cannot be forged.
 */
#include "eas/eas_int.h"

/* Decodes one strict UTF-8 sequence (no overlongs, no surrogates, at most
 * U+10FFFF) at p[0..n); returns its length, or 0 when invalid. */
size_t eas_utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
	uint8_t c = p[0];
	size_t len;
	uint32_t v, min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		v = c & 0x1fU;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		v = c & 0x0fU;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		v = c & 0x07U;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3fU);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

static bool utf8_valid(const uint8_t *p, size_t n)
{
	uint32_t cp;

	for (size_t i = 0; i < n;) {
		size_t l = p[i] < 0x80 ? 1 : eas_utf8_next(p + i, n - i, &cp);

		if (l == 0)
			return false;
		i += l;
	}
	return true;
}

/* C0, DEL and C1 could end a log line or hide part of a name. */
static bool cp_printable(uint32_t cp)
{
	return cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp < 0xa0);
}

int eas_utf8_put(uint32_t cp, char *out, size_t cap, size_t *pos)
{
	uint8_t b[4];
	size_t len;

	if (cp < 0x80) {
		b[0] = (uint8_t)cp;
		len = 1;
	} else if (cp < 0x800) {
		b[0] = (uint8_t)(0xc0 | (cp >> 6));
		b[1] = (uint8_t)(0x80 | (cp & 0x3f));
		len = 2;
	} else if (cp < 0x10000) {
		b[0] = (uint8_t)(0xe0 | (cp >> 12));
		b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (uint8_t)(0x80 | (cp & 0x3f));
		len = 3;
	} else {
		b[0] = (uint8_t)(0xf0 | (cp >> 18));
		b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (uint8_t)(0x80 | (cp & 0x3f));
		len = 4;
	}
	if (cap == 0 || *pos >= cap || cap - *pos <= len)
		return -1;
	for (size_t i = 0; i < len; i++)
		out[(*pos)++] = (char)b[i];
	return 0;
}

/* Reads the next code point of p[*i..n) in enc; false when invalid. */
static bool text_next(const uint8_t *p, size_t n, enum eas_text_enc enc,
                      size_t *i, uint32_t *cp)
{
	uint32_t u, lo;
	size_t l;

	switch (enc) {
	case EAS_TEXT_UTF8:
		l = eas_utf8_next(p + *i, n - *i, cp);
		*i += l;
		return l > 0;
	case EAS_TEXT_UTF8_LATIN1:
		*cp = p[(*i)++];
		return true;
	case EAS_TEXT_UTF16LE:
		if (n - *i < 2)
			return false;
		u = p[*i] | ((uint32_t)p[*i + 1] << 8);
		*i += 2;
		if (u >= 0xdc00 && u <= 0xdfff)
			return false;
		if (u >= 0xd800 && u <= 0xdbff) {
			if (n - *i < 2)
				return false;
			lo = p[*i] | ((uint32_t)p[*i + 1] << 8);
			if (lo < 0xdc00 || lo > 0xdfff)
				return false;
			*i += 2;
			u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
		}
		*cp = u;
		return true;
	}
	return false;
}

int eas_text_append(const uint8_t *p, size_t n, enum eas_text_enc enc,
                    char *out, size_t cap, size_t *pos)
{
	size_t w = *pos;
	uint32_t cp;

	if (cap == 0 || *pos >= cap)
		return -1;
	/* Valid UTF-8 is taken as UTF-8 even when Latin-1 is allowed: a
	 * Latin-1 name is almost never valid UTF-8 by accident. */
	if (enc == EAS_TEXT_UTF8_LATIN1 && utf8_valid(p, n))
		enc = EAS_TEXT_UTF8;
	for (size_t i = 0; i < n;) {
		/* Printable ASCII, nearly every byte of a user or device name,
		 * is itself in UTF-8 and Latin-1 alike. */
		if (enc != EAS_TEXT_UTF16LE && p[i] >= 0x20 && p[i] < 0x7f &&
		    cap - w > 1) {
			out[w++] = (char)p[i++];
			continue;
		}
		if (!text_next(p, n, enc, &i, &cp) || !cp_printable(cp) ||
		    eas_utf8_put(cp, out, cap, &w) != 0) {
			out[*pos] = '\0';
			return -1;
		}
	}
	out[w] = '\0';
	*pos = w;
	return 0;
}
