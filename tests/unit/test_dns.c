/*
 * dns/: the reply parser on packets built with ldns, and the resolver against
 * small in-process name servers on 127.0.0.1 (UDP and TCP on libevent) that
 * drop, forge, truncate or refuse on demand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/clock.h"
#include "dns/dns.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QNAME "cas1.site1.test"

/* ---- packets ---------------------------------------------------------- */

struct reply_spec {
	uint16_t id;
	const char *qname; /* question; NULL: none */
	uint16_t qtype;
	uint16_t qclass; /* 0: IN */
	bool no_qr;
	bool tc;
	uint8_t opcode;
	uint8_t rcode;
	const char *an[40]; /* answer RRs in zone-file form, NULL-ended */
	const char *ns[4];  /* authority RRs */
};

/* Builds the wire form of s with ldns; the caller frees it. */
static uint8_t *build(const struct reply_spec *s, size_t *len)
{
	ldns_pkt *p = ldns_pkt_new();
	uint8_t *wire = NULL;
	ldns_rr *rr;

	assert_non_null(p);
	ldns_pkt_set_id(p, s->id);
	ldns_pkt_set_qr(p, !s->no_qr);
	ldns_pkt_set_rd(p, true);
	ldns_pkt_set_ra(p, true);
	ldns_pkt_set_tc(p, s->tc);
	ldns_pkt_set_opcode(p, (ldns_pkt_opcode)s->opcode);
	ldns_pkt_set_rcode(p, s->rcode);
	if (s->qname != NULL) {
		rr = ldns_rr_new();
		assert_non_null(rr);
		ldns_rr_set_owner(rr, ldns_dname_new_frm_str(s->qname));
		ldns_rr_set_type(rr, (ldns_rr_type)s->qtype);
		ldns_rr_set_class(rr, s->qclass ? (ldns_rr_class)s->qclass
		                                : LDNS_RR_CLASS_IN);
		ldns_rr_set_question(rr, true);
		ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, rr);
	}
	for (int i = 0; s->an[i] != NULL; i++) {
		assert_int_equal(
		    ldns_rr_new_frm_str(&rr, s->an[i], 3600, NULL, NULL),
		    LDNS_STATUS_OK);
		ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, rr);
	}
	for (int i = 0; s->ns[i] != NULL; i++) {
		assert_int_equal(
		    ldns_rr_new_frm_str(&rr, s->ns[i], 3600, NULL, NULL),
		    LDNS_STATUS_OK);
		ldns_pkt_push_rr(p, LDNS_SECTION_AUTHORITY, rr);
	}
	assert_int_equal(ldns_pkt2wire(&wire, p, len), LDNS_STATUS_OK);
	ldns_pkt_free(p);
	return wire;
}

static enum dns_answer parse_spec(const struct reply_spec *s, uint16_t id,
                                  const char *qname, uint16_t qtype,
                                  struct dns_addrs *out)
{
	size_t len;
	uint8_t *w = build(s, &len);
	enum dns_answer a = dns_answer_parse(w, len, id, qname, qtype, out);

	free(w);
	return a;
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf,
                            size_t cap)
{
	const void *src =
	    ss->ss_family == AF_INET
	        ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
	        : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;

	return inet_ntop(ss->ss_family, src, buf, (socklen_t)cap);
}

static void assert_addr(const struct dns_addrs *a, unsigned i, const char *want)
{
	char buf[INET6_ADDRSTRLEN];

	assert_true(i < a->n);
	assert_string_equal(addr_str(&a->addr[i], buf, sizeof(buf)), want);
	/* Ports are the caller's. */
	assert_int_equal(((const struct sockaddr_in *)&a->addr[i])->sin_port,
	                 0);
}

static void test_parse_a(void **state)
{
	struct reply_spec s = {
	    .id = 0x1234,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_A,
	    .an = {QNAME ". 300 IN A 192.0.2.1", QNAME ". 120 IN A 192.0.2.2"},
	};
	struct dns_addrs a;

	assert_int_equal(parse_spec(&s, 0x1234, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_OK);
	assert_int_equal(a.n, 2);
	assert_addr(&a, 0, "192.0.2.1");
	assert_addr(&a, 1, "192.0.2.2");
	assert_int_equal(a.ttl, 120);
	assert_int_equal(a.n_cname, 0);
	/* A trailing dot names the same thing. */
	assert_int_equal(parse_spec(&s, 0x1234, QNAME ".", DNS_QTYPE_A, &a),
	                 DNS_ANSWER_OK);
	assert_int_equal(a.n, 2);
}

static void test_parse_aaaa(void **state)
{
	struct reply_spec s = {
	    .id = 7,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_AAAA,
	    .an = {QNAME ". 60 IN AAAA 2001:db8::1",
	           /* Records of another type are not the answer. */
	           QNAME ". 60 IN A 192.0.2.1"},
	};
	struct dns_addrs a;

	assert_int_equal(parse_spec(&s, 7, QNAME, DNS_QTYPE_AAAA, &a),
	                 DNS_ANSWER_OK);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.addr[0].ss_family, AF_INET6);
	assert_addr(&a, 0, "2001:db8::1");
	assert_int_equal(a.ttl, 60);
}

static void test_parse_cname_chain(void **state)
{
	struct reply_spec s = {
	    .id = 99,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_A,
	    .an = {"CAS1.site1.TEST. 300 IN CNAME cas1-a.site1.test.",
	           "cas1-a.site1.test. 30 IN CNAME edge.example.",
	           "edge.example. 600 IN A 192.0.2.7",
	           /* Not on the chain: ignored. */
	           "other.example. 5 IN A 192.0.2.99"},
	};
	struct dns_addrs a;

	assert_int_equal(parse_spec(&s, 99, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_OK);
	assert_int_equal(a.n, 1);
	assert_addr(&a, 0, "192.0.2.7");
	assert_int_equal(a.ttl, 30);
	assert_int_equal(a.n_cname, 2);
	assert_string_equal(a.cname_chain[0], "cas1-a.site1.test");
	assert_string_equal(a.cname_chain[1], "edge.example");
}

static void test_parse_question_case(void **state)
{
	struct reply_spec s = {
	    .id = 1,
	    .qname = "CaS1.SITE1.test.",
	    .qtype = LDNS_RR_TYPE_A,
	    .an = {"cas1.site1.test. 60 IN A 192.0.2.1"},
	};
	struct dns_addrs a;

	assert_int_equal(parse_spec(&s, 1, "cas1.Site1.TEST", DNS_QTYPE_A, &a),
	                 DNS_ANSWER_OK);
	assert_int_equal(a.n, 1);
}

static void test_parse_mismatch(void **state)
{
	struct reply_spec s = {
	    .id = 0x4242,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_A,
	    .an = {QNAME ". 60 IN A 192.0.2.1"},
	};
	struct dns_addrs a;

	/* Wrong ID. */
	assert_int_equal(parse_spec(&s, 0x4243, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	assert_int_equal(a.n, 0);
	/* Wrong question: name, type, class, none at all. */
	assert_int_equal(
	    parse_spec(&s, 0x4242, "cas2.site1.test", DNS_QTYPE_A, &a),
	    DNS_ANSWER_BAD);
	assert_int_equal(parse_spec(&s, 0x4242, QNAME, DNS_QTYPE_AAAA, &a),
	                 DNS_ANSWER_BAD);
	s.qclass = LDNS_RR_CLASS_CH;
	assert_int_equal(parse_spec(&s, 0x4242, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	s.qclass = 0;
	s.qname = NULL;
	assert_int_equal(parse_spec(&s, 0x4242, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	s.qname = QNAME ".";
	/* A query, not a reply. */
	s.no_qr = true;
	assert_int_equal(parse_spec(&s, 0x4242, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	s.no_qr = false;
	/* Another opcode (NOTIFY). */
	s.opcode = LDNS_PACKET_NOTIFY;
	assert_int_equal(parse_spec(&s, 0x4242, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	s.opcode = 0;
	/* Only A and AAAA are asked for; invalid query names refuse all. */
	assert_int_equal(parse_spec(&s, 0x4242, QNAME, 15, &a), DNS_ANSWER_BAD);
	assert_int_equal(parse_spec(&s, 0x4242, "a..b", DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	assert_int_equal(parse_spec(&s, 0x4242, "", DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	assert_int_equal(parse_spec(&s, 0x4242, ".", DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	/* Sanity: the untouched spec is accepted. */
	assert_int_equal(parse_spec(&s, 0x4242, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_OK);
}

static void test_parse_truncated(void **state)
{
	struct reply_spec s = {
	    .id = 5,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_A,
	    .tc = true,
	    .an = {QNAME ". 60 IN A 192.0.2.1", QNAME ". 60 IN A 192.0.2.2"},
	};
	struct dns_addrs a;
	size_t len;
	uint8_t *w = build(&s, &len);

	assert_int_equal(dns_answer_parse(w, len, 5, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_TRUNCATED);
	assert_int_equal(a.n, 0);
	/* Records cut in the middle: still a truncation, never an answer. */
	assert_int_equal(
	    dns_answer_parse(w, len - 7, 5, QNAME, DNS_QTYPE_A, &a),
	    DNS_ANSWER_TRUNCATED);
	/* The same cut without TC is malformed. */
	w[2] &= (uint8_t)~0x02;
	assert_int_equal(
	    dns_answer_parse(w, len - 7, 5, QNAME, DNS_QTYPE_A, &a),
	    DNS_ANSWER_BAD);
	/* TC with a forged question is still not ours. */
	w[2] |= 0x02;
	assert_int_equal(
	    dns_answer_parse(w, len, 5, "x.site1.test", DNS_QTYPE_A, &a),
	    DNS_ANSWER_BAD);
	free(w);
}

static void test_parse_nxdomain(void **state)
{
	struct reply_spec s = {
	    .id = 3,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_A,
	    .rcode = LDNS_RCODE_NXDOMAIN,
	    .ns = {"site1.test. 900 IN SOA ns.site1.test. h.site1.test. 1 "
	           "3600 600 86400 45"},
	};
	struct dns_addrs a;

	assert_int_equal(parse_spec(&s, 3, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_NXDOMAIN);
	assert_int_equal(a.n, 0);
	assert_int_equal(a.ttl, 45);
	/* NODATA: NOERROR without addresses, negative TTL from the SOA. */
	s.rcode = LDNS_RCODE_NOERROR;
	s.ns[0] = "site1.test. 30 IN SOA ns.site1.test. h.site1.test. 1 3600 "
	          "600 86400 45";
	assert_int_equal(parse_spec(&s, 3, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_OK);
	assert_int_equal(a.n, 0);
	assert_int_equal(a.ttl, 30);
	/* NODATA without SOA: nothing to cache. */
	s.ns[0] = NULL;
	assert_int_equal(parse_spec(&s, 3, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_OK);
	assert_int_equal(a.ttl, 0);
}

static void test_parse_server_errors(void **state)
{
	static const uint8_t rcodes[] = {LDNS_RCODE_SERVFAIL,
	                                 LDNS_RCODE_REFUSED, LDNS_RCODE_FORMERR,
	                                 LDNS_RCODE_NOTIMPL};
	struct reply_spec s = {
	    .id = 3,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_A,
	    /* Records in an error reply are never read. */
	    .an = {QNAME ". 60 IN A 192.0.2.1"},
	};
	struct dns_addrs a;

	for (size_t i = 0; i < sizeof(rcodes); i++) {
		s.rcode = rcodes[i];
		assert_int_equal(parse_spec(&s, 3, QNAME, DNS_QTYPE_A, &a),
		                 DNS_ANSWER_SERVER_ERR);
		assert_int_equal(a.n, 0);
	}
}

static void test_parse_cname_loop(void **state)
{
	struct reply_spec s = {
	    .id = 8,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_A,
	    .an = {QNAME ". 60 IN CNAME b.site1.test.",
	           "b.site1.test. 60 IN CNAME " QNAME ".",
	           "b.site1.test. 60 IN A 192.0.2.1"},
	};
	struct reply_spec self = {
	    .id = 8,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_A,
	    .an = {QNAME ". 60 IN CNAME " QNAME "."},
	};
	struct reply_spec two = {
	    .id = 8,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_A,
	    .an = {QNAME ". 60 IN CNAME a.site1.test.",
	           QNAME ". 60 IN CNAME b.site1.test.",
	           "a.site1.test. 60 IN A 192.0.2.1"},
	};
	struct dns_addrs a;

	assert_int_equal(parse_spec(&s, 8, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	assert_int_equal(parse_spec(&self, 8, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	/* Two CNAMEs for one owner: which one would be the truth? */
	assert_int_equal(parse_spec(&two, 8, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
}

/* Builds a chain of hops CNAMEs from QNAME ending at an A record. */
static enum dns_answer parse_chain(unsigned hops, struct dns_addrs *a)
{
	static char rrs[DNS_MAX_CNAME + 4][128];
	struct reply_spec s = {
	    .id = 11, .qname = QNAME ".", .qtype = LDNS_RR_TYPE_A};
	unsigned i;

	for (i = 0; i < hops; i++) {
		char owner[64];

		if (i == 0)
			snprintf(owner, sizeof(owner), "%s.", QNAME);
		else
			snprintf(owner, sizeof(owner), "h%u.example.", i);
		snprintf(rrs[i], sizeof(rrs[i]), "%s %u IN CNAME h%u.example.",
		         owner, 100 + i, i + 1);
		s.an[i] = rrs[i];
	}
	snprintf(rrs[i], sizeof(rrs[i]), "h%u.example. 500 IN A 192.0.2.%u",
	         hops, hops);
	s.an[i] = rrs[i];
	return parse_spec(&s, 11, QNAME, DNS_QTYPE_A, a);
}

static void test_parse_chain_bound(void **state)
{
	struct dns_addrs a;

	assert_int_equal(parse_chain(DNS_MAX_CNAME, &a), DNS_ANSWER_OK);
	assert_int_equal(a.n_cname, DNS_MAX_CNAME);
	assert_int_equal(a.ttl, 100);
	assert_string_equal(a.cname_chain[DNS_MAX_CNAME - 1], "h8.example");
	assert_int_equal(a.n, 1);
	assert_int_equal(parse_chain(DNS_MAX_CNAME + 1, &a), DNS_ANSWER_BAD);
	assert_int_equal(a.n, 0);
}

static void test_parse_many_and_duplicates(void **state)
{
	static char rrs[40][64];
	struct reply_spec s = {
	    .id = 12, .qname = QNAME ".", .qtype = LDNS_RR_TYPE_A};
	struct dns_addrs a;

	for (int i = 0; i < 30; i++) {
		snprintf(rrs[i], sizeof(rrs[i]), "%s. 60 IN A 192.0.2.%d",
		         QNAME, i + 1);
		s.an[i] = rrs[i];
	}
	assert_int_equal(parse_spec(&s, 12, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_OK);
	assert_int_equal(a.n, DNS_MAX_ADDRS);
	s.an[1] = s.an[0];
	s.an[2] = s.an[0];
	s.an[3] = NULL;
	assert_int_equal(parse_spec(&s, 12, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_OK);
	assert_int_equal(a.n, 1);
}

static void test_parse_garbage(void **state)
{
	/* Header of a good reply, question at 12, then hostile names. */
	static const uint8_t self_ptr[] = {
	    0x12, 0x34, 0x81, 0x80, 0, 1, 0,    1,  0, 0, 0, 0,
	    0xc0, 12,   0,    1,    0, 1, 0xc0, 12, 0, 1, 0, 1,
	    0,    0,    0,    60,   0, 4, 127,  0,  0, 1};
	static const uint8_t ptr_loop[] = {0x12, 0x34, 0x81, 0x80, 0, 1,    0,
	                                   0,    0,    0,    0,    0, 0xc0, 14,
	                                   0xc0, 12,   0,    1,    0, 1};
	static const uint8_t ptr_out[] = {0x12, 0x34, 0x81, 0x80, 0, 1,
	                                  0,    0,    0,    0,    0, 0,
	                                  0xc0, 0xff, 0,    1,    0, 1};
	/* The answer's owner loops through a pointer into itself. */
	static const uint8_t an_loop[] = {
	    0x12, 0x34, 0x81, 0x80, 0, 1,   0,   1,   0,   0,    0,  0,   4,
	    'c',  'a',  's',  '1',  5, 's', 'i', 't', 'e', '1',  4,  't', 'e',
	    's',  't',  0,    0,    1, 0,   1,   1,   'x', 0xc0, 33, 0,   1,
	    0,    1,    0,    0,    0, 60,  0,   4,   127, 0,    0,  1};
	/* A record whose RDLENGTH runs past the end. */
	static const uint8_t an_long[] = {
	    0x12, 0x34, 0x81, 0x80, 0, 1,   0,   1,    0,   0,   0, 0,   4,
	    'c',  'a',  's',  '1',  5, 's', 'i', 't',  'e', '1', 4, 't', 'e',
	    's',  't',  0,    0,    1, 0,   1,   0xc0, 12,  0,   1, 0,   1,
	    0,    0,    0,    60,   0, 200, 127, 0,    0,   1};
	/* A record whose RDATA has 3 bytes. */
	static const uint8_t an_short[] = {
	    0x12, 0x34, 0x81, 0x80, 0,   1, 0,   1,   0,   0,    0,   0,
	    4,    'c',  'a',  's',  '1', 5, 's', 'i', 't', 'e',  '1', 4,
	    't',  'e',  's',  't',  0,   0, 1,   0,   1,   0xc0, 12,  0,
	    1,    0,    1,    0,    0,   0, 60,  0,   3,   127,  0,   0};
	uint8_t rnd[512];
	struct dns_addrs a;

	assert_int_equal(dns_answer_parse(self_ptr, sizeof(self_ptr), 0x1234,
	                                  QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	assert_int_equal(dns_answer_parse(ptr_loop, sizeof(ptr_loop), 0x1234,
	                                  QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	assert_int_equal(dns_answer_parse(ptr_out, sizeof(ptr_out), 0x1234,
	                                  QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	assert_int_equal(dns_answer_parse(an_loop, sizeof(an_loop), 0x1234,
	                                  QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	assert_int_equal(dns_answer_parse(an_long, sizeof(an_long), 0x1234,
	                                  QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	assert_int_equal(dns_answer_parse(an_short, sizeof(an_short), 0x1234,
	                                  QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	/* The hand-made packets are well formed apart from what they test. */
	{
		uint8_t ok[sizeof(an_short) + 1];

		memcpy(ok, an_short, sizeof(an_short));
		ok[sizeof(an_short) - 4] = 4;
		ok[sizeof(an_short)] = 1;
		assert_int_equal(dns_answer_parse(ok, sizeof(ok), 0x1234, QNAME,
		                                  DNS_QTYPE_A, &a),
		                 DNS_ANSWER_OK);
		assert_int_equal(a.n, 1);
		assert_addr(&a, 0, "127.0.0.1");
	}
	assert_int_equal(
	    dns_answer_parse(self_ptr, 0, 0x1234, QNAME, DNS_QTYPE_A, &a),
	    DNS_ANSWER_BAD);
	assert_int_equal(
	    dns_answer_parse(self_ptr, 11, 0x1234, QNAME, DNS_QTYPE_A, &a),
	    DNS_ANSWER_BAD);
	assert_int_equal(dns_answer_parse(NULL, 0, 0, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_BAD);
	srand(1);
	for (int round = 0; round < 2000; round++) {
		size_t n = (size_t)rand() % sizeof(rnd);

		for (size_t i = 0; i < n; i++)
			rnd[i] = (uint8_t)rand();
		/* Make the header plausible half of the time. */
		if (n >= 12 && (round & 1)) {
			rnd[0] = 0x12;
			rnd[1] = 0x34;
			rnd[2] = 0x81;
			rnd[4] = 0;
			rnd[5] = 1;
		}
		assert_true(dns_answer_parse(rnd, n, 0x1234, QNAME, DNS_QTYPE_A,
		                             &a) != DNS_ANSWER_OK ||
		            a.n <= DNS_MAX_ADDRS);
	}
}

static void test_query_build(void **state)
{
	size_t len;
	uint8_t *w = dns_query_build(QNAME, DNS_QTYPE_AAAA, 0xbeef, &len);
	ldns_pkt *p = NULL;
	ldns_rr *q;

	assert_non_null(w);
	assert_int_equal(ldns_wire2pkt(&p, w, len), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt_id(p), 0xbeef);
	assert_false(ldns_pkt_qr(p));
	assert_true(ldns_pkt_rd(p));
	assert_int_equal(ldns_pkt_qdcount(p), 1);
	assert_int_equal(ldns_pkt_arcount(p), 0);
	q = ldns_rr_list_rr(ldns_pkt_question(p), 0);
	assert_int_equal(ldns_rr_get_type(q), LDNS_RR_TYPE_AAAA);
	assert_int_equal(ldns_rr_get_class(q), LDNS_RR_CLASS_IN);
	{
		char *owner = ldns_rdf2str(ldns_rr_owner(q));

		assert_string_equal(owner, QNAME ".");
		free(owner);
	}
	ldns_pkt_free(p);
	free(w);
	assert_null(dns_query_build("a..b", DNS_QTYPE_A, 1, &len));
	assert_null(dns_query_build("", DNS_QTYPE_A, 1, &len));
	{
		char longname[300];

		memset(longname, 'a', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = '\0';
		assert_null(dns_query_build(longname, DNS_QTYPE_A, 1, &len));
	}
}

static void test_addrs_same(void **state)
{
	struct dns_addrs a, b;
	struct reply_spec s = {
	    .id = 1,
	    .qname = QNAME ".",
	    .qtype = LDNS_RR_TYPE_A,
	    .an = {QNAME ". 60 IN A 192.0.2.1", QNAME ". 60 IN A 192.0.2.2"},
	};

	assert_int_equal(parse_spec(&s, 1, QNAME, DNS_QTYPE_A, &a),
	                 DNS_ANSWER_OK);
	s.an[0] = QNAME ". 10 IN A 192.0.2.2";
	s.an[1] = QNAME ". 10 IN A 192.0.2.1";
	assert_int_equal(parse_spec(&s, 1, QNAME, DNS_QTYPE_A, &b),
	                 DNS_ANSWER_OK);
	assert_true(dns_addrs_same(&a, &b));
	s.an[1] = QNAME ". 10 IN A 192.0.2.3";
	assert_int_equal(parse_spec(&s, 1, QNAME, DNS_QTYPE_A, &b),
	                 DNS_ANSWER_OK);
	assert_false(dns_addrs_same(&a, &b));
	s.an[1] = NULL;
	assert_int_equal(parse_spec(&s, 1, QNAME, DNS_QTYPE_A, &b),
	                 DNS_ANSWER_OK);
	assert_false(dns_addrs_same(&a, &b));
}

/* ---- an in-process name server ------------------------------------------ */

#define SRV_DROP_ALL 0x01U    /* never answer */
#define SRV_TC 0x02U          /* answer UDP with TC and no records */
#define SRV_SERVFAIL 0x04U    /* answer SERVFAIL */
#define SRV_FORGE_FIRST 0x08U /* send forged replies before the real one */
#define SRV_NXDOMAIN 0x10U    /* answer NXDOMAIN */
#define SRV_TCP_CLOSE 0x20U   /* close TCP connections without answering */

struct srv {
	struct event_base *base;
	int fd;
	struct event *ev;
	struct evconnlistener *lis;
	struct sockaddr_in sin;
	char addr[32];
	unsigned flags;
	unsigned drop_first; /* UDP queries ignored before answering */
	const char *rrs[8];  /* the zone: records in zone-file form */
	unsigned n_udp, n_tcp;
	unsigned n_a, n_aaaa;
	struct bufferevent *conns[64]; /* accepted, not yet closed */
};

static void srv_conn_free(struct srv *s, struct bufferevent *bev)
{
	for (int i = 0; i < 64; i++)
		if (s->conns[i] == bev)
			s->conns[i] = NULL;
	bufferevent_free(bev);
}

/* Builds the reply to the query q according to s's flags. */
static uint8_t *srv_reply(struct srv *s, const ldns_pkt *q, bool tcp,
                          size_t *len)
{
	const ldns_rr *qrr = ldns_rr_list_rr(ldns_pkt_question(q), 0);
	ldns_pkt *p = ldns_pkt_new();
	uint8_t *wire = NULL;

	ldns_pkt_set_id(p, ldns_pkt_id(q));
	ldns_pkt_set_qr(p, true);
	ldns_pkt_set_rd(p, ldns_pkt_rd(q));
	ldns_pkt_set_ra(p, true);
	ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, ldns_rr_clone(qrr));
	if (s->flags & SRV_SERVFAIL)
		ldns_pkt_set_rcode(p, LDNS_RCODE_SERVFAIL);
	else if (s->flags & SRV_NXDOMAIN)
		ldns_pkt_set_rcode(p, LDNS_RCODE_NXDOMAIN);
	else if ((s->flags & SRV_TC) && !tcp)
		ldns_pkt_set_tc(p, true);
	else
		for (int i = 0; s->rrs[i] != NULL; i++) {
			ldns_rr *rr;

			assert_int_equal(
			    ldns_rr_new_frm_str(&rr, s->rrs[i], 60, NULL, NULL),
			    LDNS_STATUS_OK);
			if (ldns_rr_get_type(rr) == ldns_rr_get_type(qrr) ||
			    ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME)
				ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, rr);
			else
				ldns_rr_free(rr);
		}
	assert_int_equal(ldns_pkt2wire(&wire, p, len), LDNS_STATUS_OK);
	ldns_pkt_free(p);
	return wire;
}

/* Parses a query and counts it; NULL when it is not one. */
static ldns_pkt *srv_query(struct srv *s, const uint8_t *buf, size_t n)
{
	ldns_pkt *q = NULL;
	const ldns_rr *qrr;

	if (ldns_wire2pkt(&q, buf, n) != LDNS_STATUS_OK)
		return NULL;
	assert_int_equal(ldns_pkt_qdcount(q), 1);
	assert_false(ldns_pkt_qr(q));
	qrr = ldns_rr_list_rr(ldns_pkt_question(q), 0);
	if (ldns_rr_get_type(qrr) == LDNS_RR_TYPE_A)
		s->n_a++;
	else if (ldns_rr_get_type(qrr) == LDNS_RR_TYPE_AAAA)
		s->n_aaaa++;
	return q;
}

static void srv_udp_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv *s = arg;
	uint8_t buf[1500];
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	ssize_t n =
	    recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
	ldns_pkt *q;
	uint8_t *wire;
	size_t len;

	if (n <= 0 || (q = srv_query(s, buf, (size_t)n)) == NULL)
		return;
	s->n_udp++;
	if ((s->flags & SRV_DROP_ALL) || s->drop_first > 0) {
		if (s->drop_first > 0)
			s->drop_first--;
		ldns_pkt_free(q);
		return;
	}
	wire = srv_reply(s, q, false, &len);
	if (s->flags & SRV_FORGE_FIRST) {
		/* Wrong ID, then a reply to another name, then garbage. */
		wire[0] ^= 0x5a;
		sendto(fd, wire, len, 0, (struct sockaddr *)&from, flen);
		wire[0] ^= 0x5a;
		wire[13] ^= 0x01;
		sendto(fd, wire, len, 0, (struct sockaddr *)&from, flen);
		wire[13] ^= 0x01;
		sendto(fd, "\x01\x02\x03", 3, 0, (struct sockaddr *)&from,
		       flen);
	}
	sendto(fd, wire, len, 0, (struct sockaddr *)&from, flen);
	free(wire);
	ldns_pkt_free(q);
}

static void srv_tcp_read_cb(struct bufferevent *bev, void *arg)
{
	struct srv *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t hdr[2], *wire;
	size_t need, len;
	ldns_pkt *q;

	if (evbuffer_get_length(in) < 2)
		return;
	evbuffer_copyout(in, hdr, 2);
	need = (size_t)hdr[0] << 8 | hdr[1];
	if (evbuffer_get_length(in) < 2 + need)
		return;
	evbuffer_drain(in, 2);
	q = srv_query(s, evbuffer_pullup(in, (ev_ssize_t)need), need);
	evbuffer_drain(in, need);
	s->n_tcp++;
	if (q == NULL || (s->flags & SRV_TCP_CLOSE)) {
		ldns_pkt_free(q);
		srv_conn_free(s, bev);
		return;
	}
	wire = srv_reply(s, q, true, &len);
	hdr[0] = (uint8_t)(len >> 8);
	hdr[1] = (uint8_t)len;
	bufferevent_write(bev, hdr, 2);
	bufferevent_write(bev, wire, len);
	free(wire);
	ldns_pkt_free(q);
}

static void srv_tcp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	srv_conn_free(arg, bev);
}

static void srv_accept_cb(struct evconnlistener *lis, evutil_socket_t fd,
                          struct sockaddr *sa, int salen, void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(
	    evconnlistener_get_base(lis), fd, BEV_OPT_CLOSE_ON_FREE);

	struct srv *s = arg;
	int i;

	for (i = 0; i < 64 && s->conns[i] != NULL; i++)
		;
	assert_true(i < 64);
	s->conns[i] = bev;
	bufferevent_setcb(bev, srv_tcp_read_cb, NULL, srv_tcp_event_cb, arg);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* Starts a server on 127.0.0.1 on a port picked by the kernel, UDP and TCP
 * on the same number. */
static void srv_start(struct srv *s, struct event_base *base, unsigned flags)
{
	socklen_t len = sizeof(s->sin);

	memset(s, 0, sizeof(*s));
	s->base = base;
	s->flags = flags;
	s->rrs[0] = QNAME ". 60 IN A 127.0.0.11";
	s->rrs[1] = QNAME ". 60 IN AAAA ::1";
	for (int tries = 0; tries < 50; tries++) {
		s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		assert_true(s->fd >= 0);
		s->sin.sin_family = AF_INET;
		s->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		s->sin.sin_port = 0;
		assert_int_equal(
		    bind(s->fd, (struct sockaddr *)&s->sin, sizeof(s->sin)), 0);
		assert_int_equal(
		    getsockname(s->fd, (struct sockaddr *)&s->sin, &len), 0);
		s->lis = evconnlistener_new_bind(
		    base, srv_accept_cb, s,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
		    (struct sockaddr *)&s->sin, sizeof(s->sin));
		if (s->lis != NULL)
			break;
		close(s->fd);
	}
	assert_non_null(s->lis);
	s->ev = event_new(base, s->fd, EV_READ | EV_PERSIST, srv_udp_cb, s);
	event_add(s->ev, NULL);
	snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%u",
	         ntohs(s->sin.sin_port));
}

static void srv_stop(struct srv *s)
{
	if (s->ev != NULL)
		event_free(s->ev);
	if (s->lis != NULL)
		evconnlistener_free(s->lis);
	for (int i = 0; i < 64; i++)
		if (s->conns[i] != NULL)
			srv_conn_free(s, s->conns[i]);
	if (s->fd >= 0)
		close(s->fd);
	s->ev = NULL;
	s->lis = NULL;
	s->fd = -1;
}

/* A port on 127.0.0.1 where nothing listens (UDP): asking it draws an ICMP
 * port unreachable. */
static void closed_port(char *buf, size_t cap)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	snprintf(buf, cap, "127.0.0.1:%u", ntohs(sin.sin_port));
}

/* ---- running the loop -----------------------------------------------------
 */

struct result {
	int calls;
	int status;
	struct dns_addrs addrs;
	uint64_t at_us;
};

static void result_cb(int status, const struct dns_addrs *addrs, void *arg)
{
	struct result *res = arg;

	res->calls++;
	res->status = status;
	res->addrs = *addrs;
	res->at_us = clock_mono_us();
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs base until *flag becomes non-zero or ms pass; returns *flag. */
static int run_until(struct event_base *base, const int *flag, unsigned ms)
{
	bool expired = false;
	struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};
	struct event *t = evtimer_new(base, deadline_cb, &expired);

	evtimer_add(t, &tv);
	while (*flag == 0 && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return *flag;
}

/* Runs base for ms whatever happens. */
static void run_for(struct event_base *base, unsigned ms)
{
	static const int never = 0;

	run_until(base, &never, ms);
}

struct fixture {
	struct event_base *base;
	struct srv srv[2];
	struct dns_resolver *r;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->base = event_base_new();
	f->srv[0].fd = f->srv[1].fd = -1;
	*state = f;
	return f->base != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	dns_resolver_free(f->r);
	srv_stop(&f->srv[0]);
	srv_stop(&f->srv[1]);
	event_base_free(f->base);
	free(f);
	return 0;
}

/* A resolver on the given server strings with a short timeout. */
static struct dns_resolver *resolver(struct fixture *f, const char *a,
                                     const char *b, unsigned timeout_ms,
                                     unsigned tries)
{
	char *srv[2] = {(char *)a, (char *)b};
	char *err = NULL;

	f->r = dns_resolver_new(f->base, srv, b != NULL ? 2 : 1, &err);
	assert_null(err);
	assert_non_null(f->r);
	dns_resolver_set_timeout(f->r, timeout_ms, tries);
	return f->r;
}

static void test_resolve_ok(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};
	struct dns_query *q;

	srv_start(&f->srv[0], f->base, 0);
	resolver(f, f->srv[0].addr, NULL, 1000, 2);
	q = dns_resolve(f->r, QNAME, result_cb, &res);
	assert_non_null(q);
	/* Never from inside dns_resolve(). */
	assert_int_equal(res.calls, 0);
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 0);
	assert_int_equal(res.addrs.n, 2);
	/* A first, then AAAA. */
	assert_addr(&res.addrs, 0, "127.0.0.11");
	assert_addr(&res.addrs, 1, "::1");
	assert_int_equal(res.addrs.ttl, 60);
	assert_int_equal(f->srv[0].n_a, 1);
	assert_int_equal(f->srv[0].n_aaaa, 1);
	run_for(f->base, 50);
	assert_int_equal(res.calls, 1);
}

static void test_resolve_cname_merge(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};

	srv_start(&f->srv[0], f->base, 0);
	f->srv[0].rrs[0] = QNAME ". 5 IN CNAME cas1-a.site1.test.";
	f->srv[0].rrs[1] = "cas1-a.site1.test. 60 IN A 127.0.0.11";
	f->srv[0].rrs[2] = "cas1-a.site1.test. 60 IN A 127.0.0.12";
	f->srv[0].rrs[3] = "cas1-a.site1.test. 30 IN AAAA 2001:db8::5";
	resolver(f, f->srv[0].addr, NULL, 1000, 2);
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 0);
	assert_int_equal(res.addrs.n, 3);
	assert_addr(&res.addrs, 2, "2001:db8::5");
	assert_int_equal(res.addrs.ttl, 5);
	assert_int_equal(res.addrs.n_cname, 1);
	assert_string_equal(res.addrs.cname_chain[0], "cas1-a.site1.test");
}

static void test_resolve_nxdomain(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};

	srv_start(&f->srv[0], f->base, SRV_NXDOMAIN);
	resolver(f, f->srv[0].addr, NULL, 1000, 2);
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 1);
	assert_int_equal(res.addrs.n, 0);
	/* NXDOMAIN is an answer: no other try. */
	assert_int_equal(f->srv[0].n_udp, 2);
}

/* libevent starts a timer added in a callback from the time the loop woke,
 * not from when that callback ran, and reads a coarse monotonic clock; under
 * valgrind or ASan a callback runs milliseconds late, so a wait can end that
 * much early by clock_mono_us() (seen in the valgrind and the ASan runs of
 * tests/run.sh). */
#define WAIT_SLACK_US 10000

static void test_resolve_retry_same_server(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};
	uint64_t t0 = clock_mono_us();

	srv_start(&f->srv[0], f->base, 0);
	f->srv[0].drop_first = 2; /* the first A and AAAA */
	resolver(f, f->srv[0].addr, NULL, 150, 2);
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 0);
	assert_int_equal(res.addrs.n, 2);
	assert_int_equal(f->srv[0].n_udp, 4);
	assert_true(res.at_us - t0 >= 150000 - WAIT_SLACK_US);
}

static void test_resolve_timeout_next_server(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};
	uint64_t t0 = clock_mono_us();

	srv_start(&f->srv[0], f->base, SRV_DROP_ALL);
	srv_start(&f->srv[1], f->base, 0);
	resolver(f, f->srv[0].addr, f->srv[1].addr, 150, 2);
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 0);
	assert_int_equal(res.addrs.n, 2);
	assert_int_equal(f->srv[0].n_udp, 2);
	assert_int_equal(f->srv[1].n_udp, 2);
	assert_true(res.at_us - t0 >= 150000 - WAIT_SLACK_US);
	assert_true(res.at_us - t0 < 1000000);
	/* The server that answered is asked first from now on. */
	memset(&res, 0, sizeof(res));
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 0);
	assert_int_equal(f->srv[0].n_udp, 2);
	assert_int_equal(f->srv[1].n_udp, 4);
}

static void test_resolve_all_silent(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};
	uint64_t t0 = clock_mono_us();

	srv_start(&f->srv[0], f->base, SRV_DROP_ALL);
	srv_start(&f->srv[1], f->base, SRV_DROP_ALL);
	resolver(f, f->srv[0].addr, f->srv[1].addr, 100, 2);
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 5000));
	assert_int_equal(res.status, -1);
	assert_int_equal(res.addrs.n, 0);
	/* Two tries on each server, for each type, in turn. */
	assert_int_equal(f->srv[0].n_a, 2);
	assert_int_equal(f->srv[1].n_a, 2);
	assert_int_equal(f->srv[0].n_aaaa, 2);
	assert_int_equal(f->srv[1].n_aaaa, 2);
	/* Four 100 ms waits one after another. */
	assert_true(res.at_us - t0 >= 400000 - 4 * WAIT_SLACK_US);
	assert_true(res.at_us - t0 < 2000000);
}

static void test_resolve_servfail_moves_on(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};
	uint64_t t0 = clock_mono_us();

	srv_start(&f->srv[0], f->base, SRV_SERVFAIL);
	srv_start(&f->srv[1], f->base, 0);
	resolver(f, f->srv[0].addr, f->srv[1].addr, 2000, 2);
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 0);
	assert_int_equal(res.addrs.n, 2);
	/* At once, not after the 2 s timeout. */
	assert_true(res.at_us - t0 < 1000000);
	assert_int_equal(f->srv[0].n_udp, 2);
}

static void test_resolve_refused_port(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};
	char closed[32];
	uint64_t t0 = clock_mono_us();

	closed_port(closed, sizeof(closed));
	srv_start(&f->srv[1], f->base, 0);
	resolver(f, closed, f->srv[1].addr, 2000, 2);
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 0);
	assert_true(res.at_us - t0 < 1000000);
}

static void test_resolve_forged_ignored(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};

	srv_start(&f->srv[0], f->base, SRV_FORGE_FIRST);
	resolver(f, f->srv[0].addr, NULL, 1000, 1);
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 0);
	assert_int_equal(res.addrs.n, 2);
	assert_int_equal(f->srv[0].n_udp, 2);
}

static void test_resolve_tc_tcp(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};

	srv_start(&f->srv[0], f->base, SRV_TC);
	resolver(f, f->srv[0].addr, NULL, 1000, 2);
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 0);
	assert_int_equal(res.addrs.n, 2);
	assert_int_equal(f->srv[0].n_udp, 2);
	assert_int_equal(f->srv[0].n_tcp, 2);
}

static void test_resolve_tc_tcp_fails(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};

	/* TC over UDP, then TCP closes: the truncated reply is never read as
	 * an answer; the next server is asked. */
	srv_start(&f->srv[0], f->base, SRV_TC | SRV_TCP_CLOSE);
	srv_start(&f->srv[1], f->base, 0);
	resolver(f, f->srv[0].addr, f->srv[1].addr, 1000, 1);
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, 0);
	assert_int_equal(res.addrs.n, 2);
	assert_int_equal(f->srv[0].n_tcp, 2);
	assert_int_equal(f->srv[1].n_udp, 2);
	/* With nobody else to ask, it is a failure. */
	dns_resolver_free(f->r);
	resolver(f, f->srv[0].addr, NULL, 1000, 2);
	memset(&res, 0, sizeof(res));
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	assert_true(run_until(f->base, &res.calls, 3000));
	assert_int_equal(res.status, -1);
	assert_int_equal(res.addrs.n, 0);
}

static void test_resolve_many(void **state)
{
	struct fixture *f = *state;
	struct result res[40];
	int done = 0;

	memset(res, 0, sizeof(res));
	srv_start(&f->srv[0], f->base, 0);
	resolver(f, f->srv[0].addr, NULL, 1000, 2);
	for (int i = 0; i < 40; i++)
		assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res[i]));
	for (int round = 0; round < 100 && done < 40; round++) {
		run_for(f->base, 20);
		done = 0;
		for (int i = 0; i < 40; i++)
			done += res[i].calls;
	}
	assert_int_equal(done, 40);
	for (int i = 0; i < 40; i++) {
		assert_int_equal(res[i].status, 0);
		assert_int_equal(res[i].addrs.n, 2);
	}
}

static void test_cancel_and_free(void **state)
{
	struct fixture *f = *state;
	struct result res = {0}, lit = {0}, other = {0};
	struct dns_query *q;

	srv_start(&f->srv[0], f->base, 0);
	resolver(f, f->srv[0].addr, NULL, 1000, 2);
	q = dns_resolve(f->r, QNAME, result_cb, &res);
	assert_non_null(q);
	dns_cancel(q);
	dns_cancel(NULL);
	q = dns_resolve(f->r, "192.0.2.1", result_cb, &lit);
	dns_cancel(q);
	run_for(f->base, 200);
	assert_int_equal(res.calls, 0);
	assert_int_equal(lit.calls, 0);
	/* Cancel once the query is on the wire. */
	q = dns_resolve(f->r, QNAME, result_cb, &res);
	f->srv[0].flags = SRV_DROP_ALL;
	run_for(f->base, 50);
	assert_int_equal(f->srv[0].n_a, 1);
	dns_cancel(q);
	run_for(f->base, 100);
	assert_int_equal(res.calls, 0);
	/* Pending queries die with the resolver, silently. */
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &res));
	run_for(f->base, 50);
	assert_non_null(dns_resolve(f->r, "::1", result_cb, &other));
	dns_resolver_free(f->r);
	f->r = NULL;
	run_for(f->base, 100);
	assert_int_equal(res.calls, 0);
	assert_int_equal(other.calls, 0);
}

static void test_literal(void **state)
{
	struct fixture *f = *state;
	struct result a = {0}, b = {0}, c = {0};

	/* Nothing listens: literals never touch the network. */
	resolver(f, "127.0.0.1:1", NULL, 100, 1);
	assert_non_null(dns_resolve(f->r, "192.0.2.44", result_cb, &a));
	assert_non_null(dns_resolve(f->r, "[2001:db8::7]", result_cb, &b));
	assert_non_null(dns_resolve(f->r, "2001:db8::8", result_cb, &c));
	assert_int_equal(a.calls + b.calls + c.calls, 0);
	assert_true(run_until(f->base, &c.calls, 1000));
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.status, 0);
	assert_int_equal(a.addrs.n, 1);
	assert_addr(&a.addrs, 0, "192.0.2.44");
	assert_addr(&b.addrs, 0, "2001:db8::7");
	assert_addr(&c.addrs, 0, "2001:db8::8");
}

static void test_invalid_names(void **state)
{
	struct fixture *f = *state;
	struct result res = {0};
	char longname[300];

	resolver(f, "127.0.0.1:1", NULL, 100, 1);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_null(dns_resolve(f->r, "a..b", result_cb, &res));
	assert_null(dns_resolve(f->r, "", result_cb, &res));
	assert_null(dns_resolve(f->r, NULL, result_cb, &res));
	assert_null(dns_resolve(f->r, longname, result_cb, &res));
	assert_null(dns_resolve(f->r, QNAME, NULL, &res));
	assert_null(dns_watch_new(f->r, "a..b", 1, 10, NULL, NULL));
	run_for(f->base, 20);
	assert_int_equal(res.calls, 0);
}

static void test_resolver_new(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
	    "foo",          "1.2.3.4:0",     "1.2.3.4:99999", "[::1",
	    "[::1]x",       "[::1]:",        "1.2.3.4:",      "",
	    "cas1.test:53", "1.2.3.4:53:53", "300.1.1.1",
	};
	static const char *const good[] = {
	    "127.0.0.1", "127.0.0.1:5353", "[::1]:53", "::1", "[::1]",
	};
	char *err = NULL;
	char *list[DNS_MAX_SERVERS + 1];
	struct dns_resolver *r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *one[1] = {(char *)bad[i]};

		assert_null(dns_resolver_new(f->base, one, 1, &err));
		assert_non_null(err);
		assert_non_null(strstr(err, "invalid name server"));
		free(err);
		err = NULL;
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char *one[1] = {(char *)good[i]};

		r = dns_resolver_new(f->base, one, 1, &err);
		assert_non_null(r);
		assert_null(err);
		dns_resolver_free(r);
	}
	for (int i = 0; i <= DNS_MAX_SERVERS; i++)
		list[i] = (char *)"127.0.0.1";
	assert_null(dns_resolver_new(f->base, list, DNS_MAX_SERVERS + 1, &err));
	free(err);
	r = dns_resolver_new(f->base, list, DNS_MAX_SERVERS, NULL);
	assert_non_null(r);
	dns_resolver_free(r);
	/* resolv.conf (or the 127.0.0.1 fallback): no query is sent here. */
	r = dns_resolver_new(f->base, NULL, 0, &err);
	assert_non_null(r);
	dns_resolver_free(r);
	dns_resolver_free(NULL);
}

/* ---- watches ------------------------------------------------------------ */

struct watch_seen {
	int changes;
	struct dns_addrs last;
	struct dns_watch **free_me; /* freed from the callback when set */
};

static void watch_cb(const struct dns_addrs *addrs, void *arg)
{
	struct watch_seen *ws = arg;

	ws->changes++;
	ws->last = *addrs;
	if (ws->free_me != NULL) {
		dns_watch_free(*ws->free_me);
		*ws->free_me = NULL;
	}
}

static void test_watch(void **state)
{
	struct fixture *f = *state;
	struct watch_seen ws = {0};
	struct dns_watch *w;
	int want;

	srv_start(&f->srv[0], f->base, 0);
	f->srv[0].rrs[0] = QNAME ". 0 IN A 127.0.0.11";
	f->srv[0].rrs[1] = NULL;
	resolver(f, f->srv[0].addr, NULL, 200, 1);
	w = dns_watch_new(f->r, QNAME, 1, 30, watch_cb, &ws);
	assert_non_null(w);
	assert_null(dns_watch_addrs(w));
	assert_int_equal(ws.changes, 0);
	assert_true(run_until(f->base, &ws.changes, 2000));
	assert_int_equal(ws.last.n, 1);
	assert_addr(&ws.last, 0, "127.0.0.11");
	assert_non_null(dns_watch_addrs(w));
	assert_addr(dns_watch_addrs(w), 0, "127.0.0.11");
	/* TTL 0 is clamped to min_ttl (1 s): the same answer again is no
	 * change. */
	run_for(f->base, 1300);
	assert_int_equal(ws.changes, 1);
	assert_int_equal(f->srv[0].n_a, 2);
	/* A new address is seen at the next refresh. */
	f->srv[0].rrs[0] = QNAME ". 0 IN A 127.0.0.12";
	want = 0;
	for (int i = 0; i < 30 && ws.changes < 2; i++)
		run_for(f->base, 100);
	assert_int_equal(ws.changes, 2);
	assert_addr(&ws.last, 0, "127.0.0.12");
	/* The server goes silent: the last answer stays, no change. */
	f->srv[0].flags = SRV_DROP_ALL;
	run_for(f->base, 2500);
	assert_int_equal(ws.changes, 2);
	assert_true(f->srv[0].n_a >= 4);
	assert_non_null(dns_watch_addrs(w));
	assert_addr(dns_watch_addrs(w), 0, "127.0.0.12");
	/* NXDOMAIN keeps it too. */
	f->srv[0].flags = SRV_NXDOMAIN;
	run_for(f->base, 2000);
	assert_int_equal(ws.changes, 2);
	assert_addr(dns_watch_addrs(w), 0, "127.0.0.12");
	/* And it comes back. */
	f->srv[0].flags = 0;
	f->srv[0].rrs[0] = QNAME ". 0 IN A 127.0.0.13";
	for (int i = 0; i < 60 && ws.changes < 3; i++)
		run_for(f->base, 100);
	assert_int_equal(ws.changes, 3);
	assert_addr(dns_watch_addrs(w), 0, "127.0.0.13");
	dns_watch_free(w);
	dns_watch_free(NULL);
	(void)want;
}

static void test_watch_free_in_callback(void **state)
{
	struct fixture *f = *state;
	struct watch_seen ws = {0};
	struct dns_watch *w, *kept;
	struct watch_seen ks = {0};

	srv_start(&f->srv[0], f->base, 0);
	resolver(f, f->srv[0].addr, NULL, 200, 1);
	w = dns_watch_new(f->r, QNAME, 1, 30, watch_cb, &ws);
	ws.free_me = &w;
	assert_true(run_until(f->base, &ws.changes, 2000));
	assert_null(w);
	/* A watch still attached dies with its resolver. */
	kept = dns_watch_new(f->r, QNAME, 1, 30, watch_cb, &ks);
	assert_non_null(kept);
	assert_true(run_until(f->base, &ks.changes, 2000));
	dns_resolver_free(f->r);
	f->r = NULL;
	run_for(f->base, 50);
}

struct free_in_cb {
	struct dns_resolver **r;
	int calls;
};

static void free_resolver_cb(int status, const struct dns_addrs *addrs,
                             void *arg)
{
	struct free_in_cb *c = arg;

	c->calls++;
	dns_resolver_free(*c->r);
	*c->r = NULL;
}

static void test_free_resolver_in_callback(void **state)
{
	struct fixture *f = *state;
	struct free_in_cb c = {&f->r, 0};
	struct result other = {0};

	srv_start(&f->srv[0], f->base, 0);
	resolver(f, f->srv[0].addr, NULL, 500, 1);
	assert_non_null(dns_resolve(f->r, "192.0.2.1", free_resolver_cb, &c));
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &other));
	assert_true(run_until(f->base, &c.calls, 2000));
	assert_null(f->r);
	run_for(f->base, 100);
	assert_int_equal(other.calls, 0);
	/* The same from the callback of a network answer. */
	resolver(f, f->srv[0].addr, NULL, 500, 1);
	c.calls = 0;
	assert_non_null(dns_resolve(f->r, QNAME, free_resolver_cb, &c));
	assert_non_null(dns_resolve(f->r, QNAME, result_cb, &other));
	assert_true(run_until(f->base, &c.calls, 2000));
	run_for(f->base, 100);
	assert_int_equal(c.calls, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_a),
	    cmocka_unit_test(test_parse_aaaa),
	    cmocka_unit_test(test_parse_cname_chain),
	    cmocka_unit_test(test_parse_question_case),
	    cmocka_unit_test(test_parse_mismatch),
	    cmocka_unit_test(test_parse_truncated),
	    cmocka_unit_test(test_parse_nxdomain),
	    cmocka_unit_test(test_parse_server_errors),
	    cmocka_unit_test(test_parse_cname_loop),
	    cmocka_unit_test(test_parse_chain_bound),
	    cmocka_unit_test(test_parse_many_and_duplicates),
	    cmocka_unit_test(test_parse_garbage),
	    cmocka_unit_test(test_query_build),
	    cmocka_unit_test(test_addrs_same),
	    cmocka_unit_test_setup_teardown(test_resolve_ok, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_cname_merge, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_nxdomain, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_retry_same_server,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_timeout_next_server,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_all_silent, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_servfail_moves_on,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_refused_port, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_forged_ignored, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_tc_tcp, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_tc_tcp_fails, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_many, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_and_free, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_literal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_names, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_resolver_new, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_watch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_watch_free_in_callback, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_free_resolver_in_callback,
	                                    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
