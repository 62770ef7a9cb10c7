/*
 * A small strict base64 decoder (RFC 4648): the query, Basic credentials,
 * NTLM tokens and JWT parts all come from hostile clients, so it reads only
 * what it is given and writes only what fits.
 */
#include "eas/eas.h"

/* Value of one base64 character in the chosen alphabet, or -1. */
static int b64_val(unsigned char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

int eas_base64_decode(struct str in, unsigned flags, uint8_t *out, size_t cap,
                      size_t *outlen)
{
	bool url = (flags & EAS_B64_URL) != 0;
	size_t n = in.len, pad = 0, need, w = 0;
	uint32_t acc = 0;
	unsigned bits = 0;

	while (n > 0 && pad < 2 && in.p[n - 1] == '=') {
		n--;
		pad++;
	}
	if (pad > 0 && ((flags & EAS_B64_NOPAD) || (n + pad) % 4 != 0))
		return -1;
	if (pad == 0 && (flags & EAS_B64_PAD) && n % 4 != 0)
		return -1;
	/* One character of a final group carries only 6 bits: not a byte. */
	if (n % 4 == 1)
		return -1;
	need = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
	if (need > cap)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = b64_val((unsigned char)in.p[i], url);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[w++] = (uint8_t)(acc >> bits);
		}
	}
	*outlen = w;
	return 0;
}
