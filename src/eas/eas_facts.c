/*
 * The EAS facts of one request: path, command, user, device, protocol
 * version and the host the client used, put together from the request
 * line, the query, the headers and the TLS SNI by the decoders of the
 * other files.
 */
#include "eas/eas.h"

#include <string.h>

#include "eas/eas_int.h"

static bool host_char(unsigned char c)
{
	return eas_is_alnum(c) || c == '-' || c == '.' || c == '_';
}

static bool ipv6_char(unsigned char c)
{
	return eas_hexval(c) >= 0 || c == ':' || c == '.';
}

int eas_host_normalize(struct str host, char *out, size_t cap)
{
	size_t end, keep;

	if (cap > 0)
		out[0] = '\0';
	if (host.len == 0)
		return -1;
	if (host.p[0] == '[') {
		const char *rb = memchr(host.p, ']', host.len);

		if (rb == NULL || rb - host.p < 2)
			return -1;
		end = keep = (size_t)(rb - host.p) + 1;
		for (size_t i = 1; i + 1 < end; i++)
			if (!ipv6_char((unsigned char)host.p[i]))
				return -1;
	} else {
		const char *colon = memchr(host.p, ':', host.len);

		end = keep = colon ? (size_t)(colon - host.p) : host.len;
		for (size_t i = 0; i < end; i++)
			if (!host_char((unsigned char)host.p[i]))
				return -1;
		/* "host." is the same name as "host"; SNI never has it. */
		if (keep > 0 && host.p[keep - 1] == '.')
			keep--;
		if (keep == 0)
			return -1;
	}
	if (end < host.len) {
		if (host.p[end] != ':' || host.len - end - 1 > 5)
			return -1;
		for (size_t i = end + 1; i < host.len; i++)
			if (host.p[i] < '0' || host.p[i] > '9')
				return -1;
	}
	if (keep >= cap)
		return -1;
	for (size_t i = 0; i < keep; i++) {
		char c = host.p[i];

		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	out[keep] = '\0';
	return 0;
}

/* The first header called name and how many there are. */
static const struct http_header *header_find(const struct http_request *req,
                                             const char *name, unsigned *count)
{
	const struct http_header *first = NULL;
	unsigned n =
	    req->nheaders < HTTP_MAX_HEADERS ? req->nheaders : HTTP_MAX_HEADERS;

	*count = 0;
	for (unsigned i = 0; i < n; i++) {
		if (!str_eq_ci_lit(req->headers[i].name, name))
			continue;
		if (first == NULL)
			first = &req->headers[i];
		(*count)++;
	}
	return first;
}

/* Host from the Host header, else from SNI; 421 when they disagree, since a
 * connection set up for one name must not be used for another. */
static int facts_host(const struct http_request *req, const char *sni,
                      struct eas_facts *f, unsigned *status)
{
	char name[EAS_HOST_MAX];
	bool has_sni = sni != NULL && sni[0] != '\0';
	int sni_rc = -1;

	if (has_sni)
		sni_rc = eas_host_normalize(str_from(sni), name, sizeof(name));
	if (req->host.len == 0) {
		if (sni_rc == 0)
			memcpy(f->host, name, sizeof(f->host));
		return 0;
	}
	if (eas_host_normalize(req->host, f->host, sizeof(f->host)) != 0) {
		*status = 400;
		return -1;
	}
	/* An SNI that is no host name matches no Host either. */
	if (has_sni && (sni_rc != 0 || strcmp(name, f->host) != 0)) {
		*status = 421;
		return -1;
	}
	return 0;
}

/* Version and policy key: the headers beat the base64 query. */
static void facts_version(const struct http_request *req,
                          const struct eas_query *q, struct eas_facts *f)
{
	const struct http_header *h;
	unsigned count;
	uint64_t pk;

	h = header_find(req, "MS-ASProtocolVersion", &count);
	if (count == 0)
		f->version = q->version;
	else if (count == 1)
		f->version = eas_version_parse(h->value);
	/* Two versions are no version: 0 is proxied, which is always safe. */

	f->has_policy_key = q->has_policy_key;
	f->policy_key = q->policy_key;
	h = header_find(req, "X-MS-PolicyKey", &count);
	if (count == 1 && str_to_u64(h->value, &pk) && pk <= UINT32_MAX) {
		f->has_policy_key = true;
		f->policy_key = (uint32_t)pk;
	}
}

/* The credentials name the user; the query only when there are none. */
static void facts_user(const struct http_request *req,
                       const struct eas_query *q, struct eas_facts *f)
{
	struct eas_auth_user au;
	const struct http_header *h;
	unsigned count;

	h = header_find(req, "Authorization", &count);
	if (count == 0) {
		f->auth = EAS_AUTH_NONE;
		if (q->user[0] != '\0') {
			memcpy(f->user, q->user, sizeof(f->user));
			f->user_src = EAS_USER_QUERY;
		}
		return;
	}
	f->auth = eas_auth_parse(h->value, &au);
	/* With two Authorization headers the CAS may read either one. */
	if (count == 1 && au.src != EAS_USER_NONE) {
		memcpy(f->user, au.user, sizeof(f->user));
		f->user_src = au.src;
	}
}

/* True when a Connection header names a field the facts come from: a proxy
 * obeying it would route by credentials or a version the CAS never sees. */
static bool connection_hides_facts(const struct http_request *req)
{
	static const char *const read[] = {
		"Authorization", "MS-ASProtocolVersion", "X-MS-PolicyKey",
	};

	unsigned n =
	    req->nheaders < HTTP_MAX_HEADERS ? req->nheaders : HTTP_MAX_HEADERS;

	if (!(req->flags & HTTP_F_CONN_OPTIONS))
		return false;
	for (size_t k = 0; k < sizeof(read) / sizeof(read[0]); k++)
		if (http_connection_names(req->headers, n, str_from(read[k])))
			return true;
	return false;
}

int eas_facts_parse(const struct http_request *req, const char *sni,
                    struct eas_facts *f, unsigned *status)
{
	struct eas_query q;

	memset(f, 0, sizeof(*f));
	f->cmd = EAS_CMD_NONE;
	if (connection_hides_facts(req)) {
		f->error = "connection-lists-routing";
		*status = 400;
		return -1;
	}
	f->path = eas_path_classify(req->path);
	if (facts_host(req, sni, f, status) != 0)
		return -1;
	/* Other paths have queries of their own (autodiscover.json). */
	if (eas_query_parse(f->path == EAS_PATH_ACTIVESYNC ? req->query
	                                                   : STR_NULL,
	                    &q) != 0) {
		*status = 400;
		return -1;
	}
	f->base64_query = q.base64;
	f->cmd = q.cmd;
	memcpy(f->cmd_name, q.cmd_name, sizeof(f->cmd_name));
	eas_device_id_format(q.device_id, q.device_id_len, f->device_id,
	                     sizeof(f->device_id));
	memcpy(f->device_type, q.device_type, sizeof(f->device_type));
	facts_version(req, &q, f);
	facts_user(req, &q, f);
	if (req->method == HTTP_M_OPTIONS) {
		f->cmd = EAS_CMD_NONE;
		str_copy(f->cmd_name, sizeof(f->cmd_name), STR_LIT("OPTIONS"));
	}
	f->held = f->cmd == EAS_CMD_SYNC || f->cmd == EAS_CMD_PING;
	return 0;
}
