/*
 * Fuzzes the Authorization decoders. The first byte picks what the rest is:
 * 0 a whole header value, 1 a raw NTLM/SPNEGO token, 2 a JWT payload,
 * 3 Basic credentials; 1..3 are also encoded into a header value so that
 * both paths must agree.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "eas/eas.h"
#include "fuzz_eas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs encoded beyond this would exceed the decoders' own buffers. */
#define ENC_MAX 6000

static char value[ENC_MAX * 2];

static void check_auth(const struct eas_auth_user *au)
{
	fuzz_check_text(au->user, sizeof(au->user));
	fuzz_check((au->src == EAS_USER_NONE) == (au->user[0] == '\0'));
	fuzz_check(au->scheme != EAS_AUTH_NONE);
}

static void fuzz_ntlm(const uint8_t *p, size_t n)
{
	char user[EAS_USER_MAX];
	struct eas_auth_user au;
	unsigned type;
	size_t k;
	int rc;

	rc = eas_ntlm_user(p, n, user, sizeof(user), &type);
	fuzz_check_text(user, sizeof(user));
	fuzz_check(rc == 0 ? user[0] != '\0' && type == 3 : user[0] == '\0');
	if (n > ENC_MAX)
		return;
	k = (size_t)snprintf(value, sizeof(value), "Negotiate ");
	fuzz_b64(p, n, false, true, value + k);
	eas_auth_parse(str_from(value), &au);
	check_auth(&au);
	fuzz_check(au.scheme == EAS_AUTH_NEGOTIATE);
	fuzz_check((rc == 0) == (au.src == EAS_USER_NTLM));
	fuzz_check(strcmp(au.user, user) == 0);
}

static void fuzz_jwt(const uint8_t *p, size_t n)
{
	char user[EAS_USER_MAX];
	struct eas_auth_user au;
	size_t k;
	int rc;

	rc = eas_jwt_claims_user((struct str){(const char *)p, n}, user,
	                         sizeof(user));
	fuzz_check_text(user, sizeof(user));
	fuzz_check((rc == 0) == (user[0] != '\0'));
	if (n > ENC_MAX)
		return;
	k = (size_t)snprintf(value, sizeof(value), "Bearer e30.");
	k += fuzz_b64(p, n, true, false, value + k);
	snprintf(value + k, sizeof(value) - k, ".c2ln");
	eas_auth_parse(str_from(value), &au);
	check_auth(&au);
	fuzz_check(n == 0 || (rc == 0) == (au.src == EAS_USER_BEARER));
	fuzz_check(strcmp(au.user, user) == 0);
}

/* The password the shield hashes is exactly what follows the first colon,
 * and only for credentials that name a user. */
static void fuzz_basic_password(struct str token, const uint8_t *p, size_t n,
				const uint8_t *colon)
{
	uint8_t pass[256];
	size_t len = 99;
	int rc = eas_basic_password(token, pass, sizeof(pass), &len);

	if (rc != 0) {
		fuzz_check(len == 0);
		return;
	}
	fuzz_check(colon != NULL && colon > p);
	fuzz_check(len == n - (size_t)(colon + 1 - p));
	fuzz_check(memcmp(pass, colon + 1, len) == 0);
}

static void fuzz_basic(const uint8_t *p, size_t n)
{
	struct eas_auth_user au;
	const uint8_t *colon;
	size_t k;

	if (n > ENC_MAX)
		return;
	k = (size_t)snprintf(value, sizeof(value), "bAsIc ");
	fuzz_b64(p, n, false, true, value + k);
	eas_auth_parse(str_from(value), &au);
	check_auth(&au);
	fuzz_check(au.scheme == EAS_AUTH_BASIC);
	colon = memchr(p, ':', n);
	/* Never the password: the user ends before the first colon. */
	if (au.src == EAS_USER_BASIC)
		fuzz_check(colon != NULL && strchr(au.user, ':') == NULL);
	if (colon != NULL && colon > p && memchr(p, '\0', n) == NULL &&
	    au.src == EAS_USER_BASIC)
		fuzz_check(strlen(au.user) >= (size_t)(colon - p));
	fuzz_basic_password(str_from(value + k), p, n, colon);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct eas_auth_user au;

	if (size == 0)
		return 0;
	switch (data[0] % 4) {
	case 0:
		eas_auth_parse((struct str){(const char *)data + 1, size - 1},
		               &au);
		check_auth(&au);
		break;
	case 1:
		fuzz_ntlm(data + 1, size - 1);
		break;
	case 2:
		fuzz_jwt(data + 1, size - 1);
		break;
	case 3:
		fuzz_basic(data + 1, size - 1);
		break;
	}
	return 0;
}
