/*
 * Fuzzes the whole chain a request goes through: a request head parsed by
 * http_request_parse(), then eas_facts_parse(). An optional first line
 * "SNI:<name>\n" gives the TLS server name.
 */
#include <stdint.h>
#include <string.h>

#include "eas/eas.h"
#include "fuzz_eas.h"
#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_request req;
	const char *buf = (const char *)data;
	char sni[256];
	const char *sni_p = NULL;
	struct eas_facts f;
	unsigned status = 0;

	if (size >= 4 && memcmp(buf, "SNI:", 4) == 0) {
		const char *nl = memchr(buf, '\n', size);
		size_t n;

		if (nl == NULL)
			return 0;
		n = (size_t)(nl - buf) - 4;
		if (n >= sizeof(sni) || memchr(buf + 4, '\0', n) != NULL)
			return 0;
		memcpy(sni, buf + 4, n);
		sni[n] = '\0';
		sni_p = sni;
		size -= (size_t)(nl - buf) + 1;
		buf = nl + 1;
	}
	if (http_request_parse(buf, size, &http_default_limits, &req,
	                       &status) <= 0)
		return 0;
	status = 0;
	if (eas_facts_parse(&req, sni_p, &f, &status) != 0) {
		fuzz_check(status == 400 || status == 421);
		return 0;
	}
	fuzz_check(status == 0);
	fuzz_check_text(f.cmd_name, sizeof(f.cmd_name));
	fuzz_check_text(f.user, sizeof(f.user));
	fuzz_check_text(f.device_id, sizeof(f.device_id));
	fuzz_check_text(f.device_type, sizeof(f.device_type));
	fuzz_check_text(f.host, sizeof(f.host));
	fuzz_check((f.user_src == EAS_USER_NONE) == (f.user[0] == '\0'));
	fuzz_check(f.user_src != EAS_USER_QUERY || f.auth == EAS_AUTH_NONE);
	fuzz_check(f.held == (f.cmd == EAS_CMD_SYNC || f.cmd == EAS_CMD_PING));
	fuzz_check(f.path == EAS_PATH_ACTIVESYNC || !f.base64_query);
	return 0;
}
