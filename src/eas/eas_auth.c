/*
 * Who the credentials of an Authorization header name (EAS.md 2.1): the
 * user of Basic, of an NTLM AUTHENTICATE message (bare or in SPNEGO) or of a
 * Bearer JWT. Only routing reads this: the CAS authenticates, so nothing
 * here verifies a password, a challenge response or a signature. Decode
 * buffers that held secrets are wiped before returning.
 */
#include "eas/eas.h"

#include <string.h>

#include "eas/eas_int.h"

/* Largest decoded Basic credentials, NTLM/SPNEGO token and JWT payload.
 * Larger ones (Kerberos tickets with a big PAC) name no user here. */
#define BASIC_MAX 2048
#define TOKEN_MAX 8192

const char *eas_auth_str(enum eas_auth a)
{
	switch (a) {
	case EAS_AUTH_NONE:
		return "none";
	case EAS_AUTH_BASIC:
		return "basic";
	case EAS_AUTH_NTLM:
		return "ntlm";
	case EAS_AUTH_NEGOTIATE:
		return "negotiate";
	case EAS_AUTH_BEARER:
		return "bearer";
	case EAS_AUTH_OTHER:
		return "other";
	}
	return "?";
}

const char *eas_user_src_str(enum eas_user_src s)
{
	switch (s) {
	case EAS_USER_NONE:
		return "none";
	case EAS_USER_BASIC:
		return "basic";
	case EAS_USER_NTLM:
		return "ntlm";
	case EAS_USER_BEARER:
		return "bearer";
	case EAS_USER_QUERY:
		return "query";
	}
	return "?";
}

static void user_clear(char *user, size_t cap)
{
	if (cap > 0)
		user[0] = '\0';
}

int eas_basic_user(struct str token68, char *user, size_t cap)
{
	uint8_t buf[BASIC_MAX];
	size_t n = 0, pos = 0;
	const uint8_t *colon;
	int rc = -1;

	user_clear(user, cap);
	if (eas_base64_decode(token68, 0, buf, sizeof(buf), &n) != 0)
		goto out;
	colon = memchr(buf, ':', n);
	if (colon == NULL || colon == buf)
		goto out;
	rc = eas_text_append(buf, (size_t)(colon - buf), EAS_TEXT_UTF8_LATIN1,
	                     user, cap, &pos);
out:
	/* The password was in there. */
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

int eas_basic_password(struct str token68, uint8_t *pass, size_t cap,
                       size_t *len)
{
	uint8_t buf[BASIC_MAX];
	size_t n = 0, plen;
	const uint8_t *colon;
	int rc = -1;

	*len = 0;
	if (eas_base64_decode(token68, 0, buf, sizeof(buf), &n) != 0)
		goto out;
	colon = memchr(buf, ':', n);
	if (colon == NULL || colon == buf)
		goto out;
	plen = n - (size_t)(colon + 1 - buf);
	if (plen > cap)
		goto out;
	memcpy(pass, colon + 1, plen);
	*len = plen;
	rc = 0;
out:
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

/* Offsets in an NTLM AUTHENTICATE message (MS-NLMP 2.2.1.3). */
#define NTLM_SIG_LEN 8
#define NTLM_TYPE_OFF 8
#define NTLM_DOMAIN_OFF 28
#define NTLM_USER_OFF 36
#define NTLM_FLAGS_OFF 60
#define NTLM_AUTH_MIN 64
#define NTLM_F_UNICODE 0x00000001U

/* Appends the text of the security buffer at hdr of message m[0..mlen). */
static int ntlm_field(const uint8_t *m, size_t mlen, size_t hdr, bool unicode,
                      char *user, size_t cap, size_t *pos)
{
	size_t len = le16(m + hdr);
	size_t off = le32(m + hdr + 4);

	if (off > mlen || len > mlen - off)
		return -1;
	if (unicode && len % 2 != 0)
		return -1;
	return eas_text_append(
	    m + off, len, unicode ? EAS_TEXT_UTF16LE : EAS_TEXT_UTF8_LATIN1,
	    user, cap, pos);
}

int eas_ntlm_user(const uint8_t *tok, size_t len, char *user, size_t cap,
                  unsigned *msg_type)
{
	static const uint8_t sig[NTLM_SIG_LEN] = "NTLMSSP";
	const uint8_t *m;
	size_t mlen, pos = 0, dom_end;
	bool unicode;

	user_clear(user, cap);
	*msg_type = 0;
	/* SPNEGO (RFC 4178) only wraps the NTLM message in DER: the message
	 * starts at its signature and its buffers point from there. */
	m = memmem(tok, len, sig, sizeof(sig));
	if (m == NULL)
		return -1;
	mlen = len - (size_t)(m - tok);
	if (mlen < NTLM_TYPE_OFF + 4)
		return -1;
	*msg_type = le32(m + NTLM_TYPE_OFF);
	if (*msg_type != 3 || mlen < NTLM_AUTH_MIN)
		return -1;
	unicode = (le32(m + NTLM_FLAGS_OFF) & NTLM_F_UNICODE) != 0;
	if (ntlm_field(m, mlen, NTLM_DOMAIN_OFF, unicode, user, cap, &pos) != 0)
		goto fail;
	dom_end = pos;
	if (dom_end > 0 && eas_text_append((const uint8_t *)"\\", 1,
	                                   EAS_TEXT_UTF8, user, cap, &pos) != 0)
		goto fail;
	if (ntlm_field(m, mlen, NTLM_USER_OFF, unicode, user, cap, &pos) != 0)
		goto fail;
	/* Anonymous NTLM names nobody. */
	if (pos == dom_end + (dom_end > 0))
		goto fail;
	return 0;
fail:
	user_clear(user, cap);
	return -1;
}

int eas_jwt_user(struct str token, char *user, size_t cap)
{
	uint8_t buf[TOKEN_MAX];
	const char *d1, *d2, *end = token.p + token.len;
	size_t n = 0;
	int rc = -1;

	user_clear(user, cap);
	if (token.len == 0)
		return -1;
	d1 = memchr(token.p, '.', token.len);
	if (d1 == NULL)
		return -1;
	d2 = memchr(d1 + 1, '.', (size_t)(end - d1 - 1));
	/* Exactly three parts: five would be an encrypted JWE. */
	if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) != NULL)
		return -1;
	if (eas_base64_decode((struct str){d1 + 1, (size_t)(d2 - d1 - 1)},
	                      EAS_B64_URL | EAS_B64_NOPAD, buf, sizeof(buf),
	                      &n) == 0)
		rc = eas_jwt_claims_user((struct str){(const char *)buf, n},
		                         user, cap);
	/* A bearer token is a credential too. */
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

/* NTLM and Negotiate: the user of a type 3 message, if any. */
static void auth_ntlm(struct str cred, struct eas_auth_user *out)
{
	uint8_t buf[TOKEN_MAX];
	size_t n = 0;

	if (eas_base64_decode(cred, 0, buf, sizeof(buf), &n) == 0 &&
	    eas_ntlm_user(buf, n, out->user, sizeof(out->user),
	                  &out->ntlm_type) == 0)
		out->src = EAS_USER_NTLM;
	explicit_bzero(buf, sizeof(buf));
}

enum eas_auth eas_auth_parse(struct str value, struct eas_auth_user *out)
{
	struct str scheme, cred;
	size_t i = 0;

	memset(out, 0, sizeof(*out));
	value = str_trim(value);
	while (i < value.len && value.p[i] != ' ' && value.p[i] != '\t')
		i++;
	scheme = (struct str){value.p, i};
	cred = str_trim((struct str){value.p + i, value.len - i});
	if (str_eq_ci_lit(scheme, "Basic"))
		out->scheme = EAS_AUTH_BASIC;
	else if (str_eq_ci_lit(scheme, "NTLM"))
		out->scheme = EAS_AUTH_NTLM;
	else if (str_eq_ci_lit(scheme, "Negotiate"))
		out->scheme = EAS_AUTH_NEGOTIATE;
	else if (str_eq_ci_lit(scheme, "Bearer"))
		out->scheme = EAS_AUTH_BEARER;
	else
		out->scheme = EAS_AUTH_OTHER;

	switch (out->scheme) {
	case EAS_AUTH_BASIC:
		if (eas_basic_user(cred, out->user, sizeof(out->user)) == 0)
			out->src = EAS_USER_BASIC;
		break;
	case EAS_AUTH_NTLM:
	case EAS_AUTH_NEGOTIATE:
		auth_ntlm(cred, out);
		break;
	case EAS_AUTH_BEARER:
		if (eas_jwt_user(cred, out->user, sizeof(out->user)) == 0)
			out->src = EAS_USER_BEARER;
		break;
	case EAS_AUTH_NONE:
	case EAS_AUTH_OTHER:
		break;
	}
	return out->scheme;
}
