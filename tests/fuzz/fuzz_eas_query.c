/*
 * Fuzzes eas_query_parse() twice per input: the bytes as a raw query string
 * (plain form, base64 shape detection, escapes) and the bytes base64-encoded
 * (so that random input reaches every branch of the byte layout).
 */
#include <stdint.h>
#include <stdlib.h>

#include "eas/eas.h"
#include "fuzz_eas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_query(const struct eas_query *q, int rc)
{
	char id[EAS_DEVICE_ID_MAX];

	fuzz_check(rc == 0 || rc == -1);
	fuzz_check_text(q->cmd_name, sizeof(q->cmd_name));
	fuzz_check_text(q->user, sizeof(q->user));
	fuzz_check_text(q->device_type, sizeof(q->device_type));
	fuzz_check(q->device_id_len <= sizeof(q->device_id));
	fuzz_check(q->cmd == EAS_CMD_NONE || eas_cmd_name(q->cmd)[0] != '\0');
	fuzz_check(q->version == 0 || q->version == q->version_byte);
	if (rc != 0)
		fuzz_check(!q->base64 && q->device_id_len == 0 &&
		           q->user[0] == '\0' && q->cmd == EAS_CMD_NONE);
	eas_device_id_format(q->device_id, q->device_id_len, id, sizeof(id));
	fuzz_check_text(id, sizeof(id));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char enc[EAS_QUERY_MAX + 4];
	struct eas_query q;
	int rc;

	rc = eas_query_parse((struct str){(const char *)data, size}, &q);
	check_query(&q, rc);
	if (size > 0 && size <= EAS_QUERY_MAX / 4 * 3) {
		size_t n = fuzz_b64(data, size, false, true, enc);

		rc = eas_query_parse((struct str){enc, n}, &q);
		check_query(&q, rc);
		/* Any 5+ bytes are base64-shaped once encoded. */
		fuzz_check(size < 5 || rc != 0 || q.base64);
	}
	return 0;
}
