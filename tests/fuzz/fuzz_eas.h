/*
 * Checks shared by the eas harnesses: what eas.h promises about every text
 * it hands out (NUL-terminated inside its buffer, valid UTF-8, no control
 * characters), turned into crashes that libFuzzer reports.
 */
#ifndef EF_FUZZ_EAS_H
#define EF_FUZZ_EAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void fuzz_check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

/* buf[0..cap) holds a NUL-terminated, printable UTF-8 string. */
static inline void fuzz_check_text(const char *buf, size_t cap)
{
	const uint8_t *p = (const uint8_t *)buf;
	const uint8_t *end = memchr(buf, '\0', cap);

	fuzz_check(end != NULL);
	while (p < end) {
		uint32_t cp;
		size_t len;

		if (*p < 0x80) {
			cp = *p;
			len = 1;
		} else if (*p >= 0xc2 && *p <= 0xdf) {
			cp = *p & 0x1fU;
			len = 2;
		} else if (*p >= 0xe0 && *p <= 0xef) {
			cp = *p & 0x0fU;
			len = 3;
		} else {
			fuzz_check(*p >= 0xf0 && *p <= 0xf4);
			cp = *p & 0x07U;
			len = 4;
		}
		fuzz_check((size_t)(end - p) >= len);
		for (size_t i = 1; i < len; i++) {
			fuzz_check((p[i] & 0xc0) == 0x80);
			cp = (cp << 6) | (p[i] & 0x3fU);
		}
		fuzz_check(len == 1 || cp >= (len == 2   ? 0x80U
		                              : len == 3 ? 0x800U
		                                         : 0x10000U));
		fuzz_check(cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff));
		fuzz_check(cp >= 0x20 && cp != 0x7f &&
		           !(cp >= 0x80 && cp < 0xa0));
		p += len;
	}
}

/* Standard or url base64 with or without padding, for building inputs
 * that reach past the decoders. Returns the length (NUL-terminated). */
static inline size_t fuzz_b64(const uint8_t *in, size_t n, bool url, bool pad,
                              char *out)
{
	const char *a = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
	                      "wxyz0123456789-_"
	                    : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
	                      "wxyz0123456789+/";
	size_t w = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t rem = n - i;

		if (rem > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (rem > 2)
			v |= in[i + 2];
		out[w++] = a[(v >> 18) & 63];
		out[w++] = a[(v >> 12) & 63];
		if (rem > 1)
			out[w++] = a[(v >> 6) & 63];
		else if (pad)
			out[w++] = '=';
		if (rem > 2)
			out[w++] = a[v & 63];
		else if (pad)
			out[w++] = '=';
	}
	out[w] = '\0';
	return w;
}

#endif
