/*
 * Helpers shared by the files of the eas part only: turning credential and
 * query bytes into the UTF-8 user text that eas.h promises.
 */
#ifndef EF_EAS_EAS_INT_H
#define EF_EAS_EAS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How the bytes given to eas_text_append() are encoded. */
enum eas_text_enc {
	EAS_TEXT_UTF8,        /* strict UTF-8 */
	EAS_TEXT_UTF8_LATIN1, /* UTF-8 when valid, else ISO-8859-1 */
	EAS_TEXT_UTF16LE,     /* UTF-16LE with surrogate pairs */
};

/*
 * Appends the text p[0..n) in enc to out at *pos as UTF-8, keeping out
 * NUL-terminated within cap. Refuses (returns -1, *pos and out[*pos]
 * unchanged) invalid encoding, C0/C1 control characters and DEL, and text
 * that does not fit. Returns 0 on success.
 */
int eas_text_append(const uint8_t *p, size_t n, enum eas_text_enc enc,
                    char *out, size_t cap, size_t *pos);

/* Appends one code point as UTF-8 to out at *pos if it fits (leaving room
 * for the NUL); returns 0 or -1. Does not write the NUL. */
int eas_utf8_put(uint32_t cp, char *out, size_t cap, size_t *pos);

/* Decodes one strict UTF-8 character (no overlong forms, no surrogates, at
 * most U+10FFFF) from p[0..n) into *cp; returns its length, 0 when the bytes
 * are not one. */
size_t eas_utf8_next(const uint8_t *p, size_t n, uint32_t *cp);

/* True for the ASCII letters and digits. */
static inline bool eas_is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
	       (c >= 'a' && c <= 'z');
}

/* Value of a hex digit, or -1. */
static inline int eas_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
