/*
 * Pure DNS packet work: building queries and reading replies with ldns. No
 * I/O here, so that the parser can be fuzzed and tested on bytes alone.
 */
#include "dns/dns.h"

#include <ldns/ldns.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DNS_HDR_LEN 12
#define DNS_FLAG_QR 0x8000U
#define DNS_FLAG_TC 0x0200U
#define DNS_OPCODE(f) (((f) >> 11) & 0xfU)
#define DNS_RCODE(f) ((f)&0xfU)
#define DNS_CLASS_IN 1

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

/* Returns qname as an ldns dname (caller frees), made absolute first so that
 * "a.b" and "a.b." name the same thing. NULL when it is not a valid name. */
static ldns_rdf *dname_from_str(const char *qname)
{
	char abs[DNS_NAME_MAX + 1];
	size_t n = qname != NULL ? strlen(qname) : 0;
	ldns_rdf *d;

	if (n == 0 || n >= DNS_NAME_MAX - 1)
		return NULL;
	memcpy(abs, qname, n);
	if (abs[n - 1] != '.')
		abs[n++] = '.';
	abs[n] = '\0';
	/* The root alone is no host name. */
	if (n == 1)
		return NULL;
	d = ldns_dname_new_frm_str(abs);
	if (d != NULL && ldns_rdf_get_type(d) != LDNS_RDF_TYPE_DNAME) {
		ldns_rdf_deep_free(d);
		return NULL;
	}
	return d;
}

uint8_t *dns_query_build(const char *qname, uint16_t qtype, uint16_t id,
                         size_t *len)
{
	ldns_rdf *d = dname_from_str(qname);
	ldns_pkt *pkt;
	uint8_t *wire = NULL;

	if (d == NULL)
		return NULL;
	/* The packet owns d from here on. */
	pkt = ldns_pkt_query_new(d, (ldns_rr_type)qtype, LDNS_RR_CLASS_IN,
	                         LDNS_RD);
	if (pkt == NULL) {
		ldns_rdf_deep_free(d);
		return NULL;
	}
	ldns_pkt_set_id(pkt, id);
	if (ldns_pkt2wire(&wire, pkt, len) != LDNS_STATUS_OK) {
		free(wire);
		wire = NULL;
	}
	ldns_pkt_free(pkt);
	return wire;
}

/* Writes d in presentation form without the final dot into dst[DNS_NAME_MAX].
 * Returns false when it does not fit or cannot be printed. */
static bool dname_to_str(const ldns_rdf *d, char *dst)
{
	char *s = ldns_rdf2str(d);
	size_t n;

	if (s == NULL)
		return false;
	n = strlen(s);
	if (n > 1 && s[n - 1] == '.')
		n--;
	if (n >= DNS_NAME_MAX) {
		free(s);
		return false;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
	free(s);
	return true;
}

/* Checks the header and the question of a reply without trusting anything
 * past them, so that a truncated reply can be recognised even when its
 * records are cut. Returns OK, TRUNCATED, or BAD. */
static enum dns_answer check_head(const uint8_t *pkt, size_t len, uint16_t id,
                                  const ldns_rdf *want, uint16_t qtype,
                                  unsigned *rcode)
{
	unsigned flags;
	ldns_rdf *q = NULL;
	size_t pos = DNS_HDR_LEN;
	bool same;

	if (len < DNS_HDR_LEN || get16(pkt) != id)
		return DNS_ANSWER_BAD;
	flags = get16(pkt + 2);
	if (!(flags & DNS_FLAG_QR) || DNS_OPCODE(flags) != LDNS_PACKET_QUERY)
		return DNS_ANSWER_BAD;
	/* Every reply we accept echoes exactly our one question. */
	if (get16(pkt + 4) != 1)
		return DNS_ANSWER_BAD;
	if (ldns_wire2dname(&q, pkt, len, &pos) != LDNS_STATUS_OK)
		return DNS_ANSWER_BAD;
	same = ldns_dname_compare(q, want) == 0;
	ldns_rdf_deep_free(q);
	if (!same || pos + 4 > len || get16(pkt + pos) != qtype ||
	    get16(pkt + pos + 2) != DNS_CLASS_IN)
		return DNS_ANSWER_BAD;
	*rcode = DNS_RCODE(flags);
	return (flags & DNS_FLAG_TC) ? DNS_ANSWER_TRUNCATED : DNS_ANSWER_OK;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* Returns the single CNAME target owned by name in the answer section, NULL
 * when there is none, and sets *bad when the owner has several (a CNAME is a
 * singleton, RFC 2181 §10.1: a reply with two is not to be trusted). */
static const ldns_rr *cname_of(const ldns_rr_list *an, const ldns_rdf *name,
                               bool *bad)
{
	const ldns_rr *found = NULL;

	for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
		const ldns_rr *rr = ldns_rr_list_rr(an, i);

		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_CNAME ||
		    ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
		    ldns_dname_compare(ldns_rr_owner(rr), name) != 0)
			continue;
		if (found != NULL || ldns_rr_rd_count(rr) != 1 ||
		    ldns_rdf_get_type(ldns_rr_rdf(rr, 0)) !=
		        LDNS_RDF_TYPE_DNAME) {
			*bad = true;
			return NULL;
		}
		found = rr;
	}
	return found;
}

/* Follows the CNAME chain from qname, filling out->cname_chain and lowering
 * out->ttl. Returns the final name (points into pkt or is qname) or NULL
 * when the chain loops, is longer than DNS_MAX_CNAME or is malformed. */
static const ldns_rdf *follow_chain(const ldns_pkt *pkt, const ldns_rdf *qname,
                                    struct dns_addrs *out)
{
	const ldns_rr_list *an = ldns_pkt_answer(pkt);
	const ldns_rdf *seen[DNS_MAX_CNAME + 1];
	const ldns_rdf *name = qname;
	bool bad = false;

	seen[0] = qname;
	for (unsigned hop = 0;; hop++) {
		const ldns_rr *rr = cname_of(an, name, &bad);

		if (bad)
			return NULL;
		if (rr == NULL)
			return name;
		if (hop == DNS_MAX_CNAME)
			return NULL;
		name = ldns_rr_rdf(rr, 0);
		for (unsigned i = 0; i <= hop; i++)
			if (ldns_dname_compare(seen[i], name) == 0)
				return NULL;
		seen[hop + 1] = name;
		if (!dname_to_str(name, out->cname_chain[hop]))
			return NULL;
		out->n_cname = hop + 1;
		out->ttl = min_u32(out->ttl, ldns_rr_ttl(rr));
	}
}

/* Appends the address of rr (A or AAAA, already checked to be of qtype) to
 * out unless it is there already or out is full. Returns false when the
 * rdata does not have the size of its type. */
static bool add_addr(const ldns_rr *rr, uint16_t qtype, struct dns_addrs *out)
{
	const ldns_rdf *rd =
	    ldns_rr_rd_count(rr) == 1 ? ldns_rr_rdf(rr, 0) : NULL;
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (qtype == DNS_QTYPE_A) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		if (rd == NULL || ldns_rdf_size(rd) != 4)
			return false;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, ldns_rdf_data(rd), 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		if (rd == NULL || ldns_rdf_size(rd) != 16)
			return false;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, ldns_rdf_data(rd), 16);
	}
	for (unsigned i = 0; i < out->n; i++)
		if (memcmp(&out->addr[i], &ss, sizeof(ss)) == 0)
			return true;
	if (out->n < DNS_MAX_ADDRS)
		out->addr[out->n++] = ss;
	return true;
}

/* Collects the qtype records of name. Returns false on a malformed one. */
static bool collect(const ldns_pkt *pkt, const ldns_rdf *name, uint16_t qtype,
                    struct dns_addrs *out)
{
	const ldns_rr_list *an = ldns_pkt_answer(pkt);

	for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
		const ldns_rr *rr = ldns_rr_list_rr(an, i);

		if (ldns_rr_get_type(rr) != qtype ||
		    ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
		    ldns_dname_compare(ldns_rr_owner(rr), name) != 0)
			continue;
		if (!add_addr(rr, qtype, out))
			return false;
		out->ttl = min_u32(out->ttl, ldns_rr_ttl(rr));
	}
	return true;
}

/* The negative-caching TTL of RFC 2308 §5: the smaller of the SOA's own TTL
 * and its MINIMUM field, or UINT32_MAX when the authority has no SOA. */
static uint32_t negative_ttl(const ldns_pkt *pkt)
{
	const ldns_rr_list *ns = ldns_pkt_authority(pkt);

	for (size_t i = 0; i < ldns_rr_list_rr_count(ns); i++) {
		const ldns_rr *rr = ldns_rr_list_rr(ns, i);
		const ldns_rdf *min;

		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA ||
		    ldns_rr_rd_count(rr) != 7)
			continue;
		min = ldns_rr_rdf(rr, 6);
		if (ldns_rdf_size(min) != 4)
			continue;
		return min_u32(ldns_rr_ttl(rr), ldns_rdf2native_int32(min));
	}
	return UINT32_MAX;
}

/* Reads the records of a reply whose head was checked. */
static enum dns_answer parse_body(const uint8_t *wire, size_t len,
                                  const ldns_rdf *qname, uint16_t qtype,
                                  unsigned rcode, struct dns_addrs *out)
{
	ldns_pkt *pkt = NULL;
	const ldns_rdf *last;
	enum dns_answer res = DNS_ANSWER_BAD;

	if (ldns_wire2pkt(&pkt, wire, len) != LDNS_STATUS_OK)
		return DNS_ANSWER_BAD;
	out->ttl = UINT32_MAX;
	last = follow_chain(pkt, qname, out);
	if (last == NULL)
		goto done;
	if (rcode == LDNS_RCODE_NOERROR && !collect(pkt, last, qtype, out))
		goto done;
	if (out->n == 0)
		out->ttl = min_u32(out->ttl, negative_ttl(pkt));
	if (out->ttl == UINT32_MAX)
		out->ttl = 0;
	res = rcode == LDNS_RCODE_NOERROR ? DNS_ANSWER_OK : DNS_ANSWER_NXDOMAIN;
done:
	ldns_pkt_free(pkt);
	return res;
}

enum dns_answer dns_answer_parse(const uint8_t *pkt, size_t len, uint16_t id,
                                 const char *qname, uint16_t qtype,
                                 struct dns_addrs *out)
{
	ldns_rdf *want;
	unsigned rcode = 0;
	enum dns_answer res;

	memset(out, 0, sizeof(*out));
	if (pkt == NULL || (qtype != DNS_QTYPE_A && qtype != DNS_QTYPE_AAAA))
		return DNS_ANSWER_BAD;
	want = dname_from_str(qname);
	if (want == NULL)
		return DNS_ANSWER_BAD;
	res = check_head(pkt, len, id, want, qtype, &rcode);
	if (res == DNS_ANSWER_OK) {
		if (rcode == LDNS_RCODE_NOERROR || rcode == LDNS_RCODE_NXDOMAIN)
			res = parse_body(pkt, len, want, qtype, rcode, out);
		else
			res = DNS_ANSWER_SERVER_ERR;
	}
	ldns_rdf_deep_free(want);
	if (res != DNS_ANSWER_OK && res != DNS_ANSWER_NXDOMAIN)
		memset(out, 0, sizeof(*out));
	return res;
}

const char *dns_answer_str(enum dns_answer a)
{
	switch (a) {
	case DNS_ANSWER_BAD:
		return "bad";
	case DNS_ANSWER_OK:
		return "ok";
	case DNS_ANSWER_NXDOMAIN:
		return "nxdomain";
	case DNS_ANSWER_TRUNCATED:
		return "truncated";
	case DNS_ANSWER_SERVER_ERR:
		return "server-error";
	}
	return "?";
}

/* Compares two addresses as family + address (ports are not part of an
 * answer). */
static bool addr_eq(const struct sockaddr_storage *a,
                    const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
		              &((const struct sockaddr_in *)b)->sin_addr,
		              4) == 0;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		              &((const struct sockaddr_in6 *)b)->sin6_addr,
		              16) == 0;
	return false;
}

/* True when every address of a is in b. */
static bool addrs_within(const struct dns_addrs *a, const struct dns_addrs *b)
{
	for (unsigned i = 0; i < a->n; i++) {
		bool found = false;

		for (unsigned j = 0; j < b->n && !found; j++)
			found = addr_eq(&a->addr[i], &b->addr[j]);
		if (!found)
			return false;
	}
	return true;
}

int dns_addrs_same(const struct dns_addrs *a, const struct dns_addrs *b)
{
	return a->n == b->n && addrs_within(a, b) && addrs_within(b, a);
}
