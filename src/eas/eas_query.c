/*
 * The query string of an EAS request, in either of its two forms
 * (MS-ASHTTP 2.2.1.1.1): plain "Cmd=...&User=...&DeviceId=...&DeviceType="
 * in any order, or the base64 byte layout. Both are bounded by the input and
 * by the fixed buffers of struct eas_query; any inconsistency is a 400,
 * since a proxy that guesses may route differently from the CAS that
 * finally reads the same bytes.
 */
#include "eas/eas.h"

#include <string.h>

#include "eas/eas_int.h"

static const struct {
	int code;
	const char *name;
} eas_cmds[] = {
    {EAS_CMD_SYNC, "Sync"},
    {EAS_CMD_SENDMAIL, "SendMail"},
    {EAS_CMD_SMARTFORWARD, "SmartForward"},
    {EAS_CMD_SMARTREPLY, "SmartReply"},
    {EAS_CMD_GETATTACHMENT, "GetAttachment"},
    {EAS_CMD_FOLDERSYNC, "FolderSync"},
    {EAS_CMD_FOLDERCREATE, "FolderCreate"},
    {EAS_CMD_FOLDERDELETE, "FolderDelete"},
    {EAS_CMD_FOLDERUPDATE, "FolderUpdate"},
    {EAS_CMD_MOVEITEMS, "MoveItems"},
    {EAS_CMD_GETITEMESTIMATE, "GetItemEstimate"},
    {EAS_CMD_MEETINGRESPONSE, "MeetingResponse"},
    {EAS_CMD_SEARCH, "Search"},
    {EAS_CMD_SETTINGS, "Settings"},
    {EAS_CMD_PING, "Ping"},
    {EAS_CMD_ITEMOPERATIONS, "ItemOperations"},
    {EAS_CMD_PROVISION, "Provision"},
    {EAS_CMD_RESOLVERECIPIENTS, "ResolveRecipients"},
    {EAS_CMD_VALIDATECERT, "ValidateCert"},
    {EAS_CMD_FIND, "Find"},
    {EAS_CMD_GETHIERARCHY, "GetHierarchy"},
    {EAS_CMD_CREATECOLLECTION, "CreateCollection"},
    {EAS_CMD_DELETECOLLECTION, "DeleteCollection"},
    {EAS_CMD_MOVECOLLECTION, "MoveCollection"},
};

#define NCMDS (sizeof(eas_cmds) / sizeof(eas_cmds[0]))

const char *eas_cmd_name(int cmd)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (eas_cmds[i].code == cmd)
			return eas_cmds[i].name;
	return "";
}

int eas_cmd_from_name(struct str name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (str_eq_ci_lit(name, eas_cmds[i].name))
			return eas_cmds[i].code;
	return EAS_CMD_NONE;
}

unsigned eas_version_parse(struct str s)
{
	static const struct {
		const char *text;
		unsigned v;
	} vers[] = {
	    {"2.5", 25},   {"12.0", 120}, {"12.1", 121}, {"14.0", 140},
	    {"14.1", 141}, {"16.0", 160}, {"16.1", 161},
	};

	for (size_t i = 0; i < sizeof(vers) / sizeof(vers[0]); i++)
		if (str_eq(s, str_from(vers[i].text)))
			return vers[i].v;
	return 0;
}

unsigned eas_version_from_byte(uint8_t b)
{
	switch (b) {
	case 121:
	case 140:
	case 141:
	case 160:
	case 161:
		return b;
	}
	return 0;
}

void eas_device_id_format(const uint8_t *id, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	bool alnum = true;
	size_t w = 0;

	if (cap == 0)
		return;
	for (size_t i = 0; i < len; i++)
		if (!eas_is_alnum(id[i]))
			alnum = false;
	if (alnum) {
		for (size_t i = 0; i < len && w + 1 < cap; i++)
			out[w++] = (char)id[i];
	} else {
		for (size_t i = 0; i < len && w + 2 < cap; i++) {
			out[w++] = hex[id[i] >> 4];
			out[w++] = hex[id[i] & 0x0f];
		}
	}
	out[w] = '\0';
}

/* Device types only ever reach logs and keys: keep them printable ASCII. */
static int set_device_type(const uint8_t *p, size_t n, struct eas_query *out)
{
	if (n >= sizeof(out->device_type))
		return -1;
	for (size_t i = 0; i < n; i++)
		out->device_type[i] =
		    (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	out->device_type[n] = '\0';
	return 0;
}

static void set_cmd_code(int code, struct eas_query *out)
{
	const char *name = eas_cmd_name(code);

	out->cmd = name[0] != '\0' ? code : EAS_CMD_NONE;
	str_copy(out->cmd_name, sizeof(out->cmd_name), str_from(name));
}

/* ---- base64 form ---- */

/*
 * Undoes %2B %2F %3D and checks the strict shape of EAS.md 1.6
 * (^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$, non-empty)
 * into b[0..cap). True with *blen set when q is base64.
 */
static bool b64_shape(struct str q, char *b, size_t cap, size_t *blen)
{
	size_t w = 0;

	for (size_t i = 0; i < q.len; i++) {
		char c = q.p[i];

		if (c == '%') {
			if (q.len - i < 3)
				return false;
			int hi = eas_hexval((unsigned char)q.p[i + 1]);
			int lo = eas_hexval((unsigned char)q.p[i + 2]);
			int v = hi < 0 || lo < 0 ? -1 : hi * 16 + lo;

			if (v != '+' && v != '/' && v != '=')
				return false;
			c = (char)v;
			i += 2;
		}
		if (!eas_is_alnum((unsigned char)c) && c != '+' && c != '/' &&
		    c != '=')
			return false;
		if (w >= cap)
			return false;
		b[w++] = c;
	}
	if (w == 0 || w % 4 != 0)
		return false;
	for (size_t i = 0; i < w; i++) {
		if (b[i] != '=')
			continue;
		if (i < w - 2 || (i == w - 2 && b[w - 1] != '='))
			return false;
	}
	*blen = w;
	return true;
}

/* Tagged parameters (tag, length, value) up to the end of the buffer. */
static int b64_params(const uint8_t *b, size_t n, size_t pos,
                      struct eas_query *out)
{
	bool user_seen = false;

	while (pos < n) {
		uint8_t tag, len;
		size_t w = 0;

		if (n - pos < 2)
			return -1;
		tag = b[pos];
		len = b[pos + 1];
		pos += 2;
		if (n - pos < len)
			return -1;
		if (tag == 7 && len == 1) {
			out->has_options = true;
			out->options = b[pos];
		} else if (tag == 8) {
			/* Two users in one request would let the proxy and
			 * the CAS each pick a different one. */
			if (user_seen)
				return -1;
			user_seen = true;
			if (eas_text_append(b + pos, len, EAS_TEXT_UTF8_LATIN1,
			                    out->user, sizeof(out->user),
			                    &w) != 0)
				return -1;
		}
		pos += len;
	}
	return 0;
}

/* The byte layout of MS-ASHTTP 2.2.1.1.1.1 (EAS.md 1.3), little-endian;
 * every length is checked against what is left of b[0..n). */
static int b64_layout(const uint8_t *b, size_t n, struct eas_query *out)
{
	size_t pos, idl, pkl, tl;

	if (n < 5)
		return -1;
	out->base64 = true;
	out->version_byte = b[0];
	out->version = eas_version_from_byte(b[0]);
	set_cmd_code(b[1], out);
	out->locale = (uint16_t)(b[2] | (b[3] << 8));
	idl = b[4];
	pos = 5;
	/* The id plus the policy key length byte. */
	if (idl == 0 || n - pos < idl + 1)
		return -1;
	memcpy(out->device_id, b + pos, idl);
	out->device_id_len = idl;
	pos += idl;
	pkl = b[pos++];
	/* The policy key plus the device type length byte. */
	if ((pkl != 0 && pkl != 4) || n - pos < pkl + 1)
		return -1;
	if (pkl == 4) {
		out->has_policy_key = true;
		out->policy_key =
		    (uint32_t)b[pos] | ((uint32_t)b[pos + 1] << 8) |
		    ((uint32_t)b[pos + 2] << 16) | ((uint32_t)b[pos + 3] << 24);
	}
	pos += pkl;
	tl = b[pos++];
	if (n - pos < tl || set_device_type(b + pos, tl, out) != 0)
		return -1;
	pos += tl;
	return b64_params(b, n, pos, out);
}

static int b64_parse(const char *text, size_t len, struct eas_query *out)
{
	uint8_t dec[EAS_QUERY_MAX / 4 * 3];
	size_t n;

	if (eas_base64_decode((struct str){text, len}, EAS_B64_PAD, dec,
	                      sizeof(dec), &n) != 0)
		return -1;
	return b64_layout(dec, n, out);
}

/* ---- plain form ---- */

enum plain_param { P_CMD, P_USER, P_DEVICE_ID, P_DEVICE_TYPE, P_N };

static const char *const plain_names[P_N] = {"Cmd", "User", "DeviceId",
                                             "DeviceType"};

/* Percent-decodes v into out[0..cap), '+' as space (form encoding, plain
 * form only); -1 on a bad escape or when it does not fit. */
static int pct_decode(struct str v, uint8_t *out, size_t cap, size_t *n)
{
	size_t w = 0;

	for (size_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.p[i];

		if (c == '%') {
			int hi, lo;

			if (v.len - i < 3)
				return -1;
			hi = eas_hexval((unsigned char)v.p[i + 1]);
			lo = eas_hexval((unsigned char)v.p[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		if (w >= cap)
			return -1;
		out[w++] = c;
	}
	*n = w;
	return 0;
}

static int plain_cmd(const uint8_t *p, size_t n, struct eas_query *out)
{
	struct str name = {(const char *)p, n};

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'A' && p[i] <= 'Z') ||
		      (p[i] >= 'a' && p[i] <= 'z')))
			return -1;
	out->cmd = eas_cmd_from_name(name);
	if (out->cmd != EAS_CMD_NONE)
		name = str_from(eas_cmd_name(out->cmd));
	str_copy(out->cmd_name, sizeof(out->cmd_name), name);
	return 0;
}

static int plain_value(enum plain_param k, struct str v, struct eas_query *out)
{
	uint8_t buf[EAS_USER_MAX - 1];
	size_t n, w = 0;

	switch (k) {
	case P_CMD:
		if (pct_decode(v, buf, EAS_CMD_NAME_MAX - 1, &n) != 0)
			return -1;
		return plain_cmd(buf, n, out);
	case P_USER:
		if (pct_decode(v, buf, sizeof(buf), &n) != 0)
			return -1;
		return eas_text_append(buf, n, EAS_TEXT_UTF8_LATIN1, out->user,
		                       sizeof(out->user), &w);
	case P_DEVICE_ID:
		if (pct_decode(v, out->device_id, sizeof(out->device_id),
		               &out->device_id_len) != 0 ||
		    out->device_id_len == 0)
			return -1;
		return 0;
	case P_DEVICE_TYPE:
		if (pct_decode(v, buf, EAS_DEVICE_TYPE_MAX - 1, &n) != 0)
			return -1;
		return set_device_type(buf, n, out);
	case P_N:
		break;
	}
	return -1;
}

/* One name[=value] segment of a plain query. */
static int plain_segment(struct str seg, bool seen[P_N], struct eas_query *out)
{
	const char *eq = memchr(seg.p, '=', seg.len);
	struct str name = {seg.p, eq ? (size_t)(eq - seg.p) : seg.len};
	struct str value = STR_NULL;

	if (eq != NULL)
		value = (struct str){eq + 1, seg.len - name.len - 1};
	for (int k = 0; k < P_N; k++) {
		if (!str_eq_ci_lit(name, plain_names[k]))
			continue;
		/* A second Cmd or User would let the proxy and the CAS each
		 * act on a different one. */
		if (eq == NULL || seen[k])
			return -1;
		seen[k] = true;
		return plain_value((enum plain_param)k, value, out);
	}
	return 0;
}

static int plain_parse(struct str q, struct eas_query *out)
{
	bool seen[P_N] = {false, false, false, false};
	size_t start = 0;

	while (start < q.len) {
		const char *amp = memchr(q.p + start, '&', q.len - start);
		size_t end = amp ? (size_t)(amp - q.p) : q.len;

		if (end > start &&
		    plain_segment((struct str){q.p + start, end - start}, seen,
		                  out) != 0)
			return -1;
		start = end + 1;
	}
	/* Neither base64 nor any EAS parameter: nothing a CAS could use. */
	for (int k = 0; k < P_N; k++)
		if (seen[k])
			return 0;
	return -1;
}

int eas_query_parse(struct str query, struct eas_query *out)
{
	char b64[EAS_QUERY_MAX];
	size_t blen;
	int rc;

	memset(out, 0, sizeof(*out));
	out->cmd = EAS_CMD_NONE;
	if (query.len == 0)
		return 0;
	if (b64_shape(query, b64, sizeof(b64), &blen))
		rc = b64_parse(b64, blen, out);
	else
		rc = plain_parse(query, out);
	if (rc != 0) {
		/* Half-filled facts must not be mistaken for parsed ones. */
		memset(out, 0, sizeof(*out));
		out->cmd = EAS_CMD_NONE;
	}
	return rc;
}
