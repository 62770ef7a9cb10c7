/*
 * libFuzzer harness of dns_answer_parse(). The ID is taken from the input so
 * that mutations get past the first check; the question is matched against
 * the names the seeds ask (built with ldns and captured from Knot serving the
 * integration zone). Besides memory safety it checks what the resolver
 * relies on: a result in range, nothing filled in for a refused reply,
 * addresses of the asked family with port 0, bounded NUL-terminated CNAME
 * names, TRUNCATED only with TC set, and the same result twice.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
    "cas1.site1.test", "c3.site1.test",          "big.site1.test",
    "dual.site1.test", "nonexistent.site1.test", "loop1.site1.test",
};

static void check(const uint8_t *data, size_t size, enum dns_answer a,
                  uint16_t qtype, const struct dns_addrs *out)
{
	int family = qtype == DNS_QTYPE_A ? AF_INET : AF_INET6;

	if (a < DNS_ANSWER_BAD || a > DNS_ANSWER_SERVER_ERR)
		abort();
	if (a != DNS_ANSWER_OK && a != DNS_ANSWER_NXDOMAIN) {
		if (out->n != 0 || out->n_cname != 0)
			abort();
		if (a == DNS_ANSWER_TRUNCATED && (size < 3 || !(data[2] & 2)))
			abort();
		return;
	}
	if (out->n > DNS_MAX_ADDRS || out->n_cname > DNS_MAX_CNAME ||
	    (a == DNS_ANSWER_NXDOMAIN && out->n != 0))
		abort();
	for (unsigned i = 0; i < out->n; i++) {
		const struct sockaddr_in *sin =
		    (const struct sockaddr_in *)&out->addr[i];

		if (out->addr[i].ss_family != family || sin->sin_port != 0)
			abort();
	}
	for (unsigned i = 0; i < out->n_cname; i++)
		if (memchr(out->cname_chain[i], '\0', DNS_NAME_MAX) == NULL ||
		    out->cname_chain[i][0] == '\0')
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dns_addrs out, again;
	uint16_t id = size >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 0;

	for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
		for (int t = 0; t < 2; t++) {
			uint16_t qtype = t ? DNS_QTYPE_AAAA : DNS_QTYPE_A;
			enum dns_answer a = dns_answer_parse(
			    data, size, id, names[n], qtype, &out);

			check(data, size, a, qtype, &out);
			if (dns_answer_parse(data, size, id, names[n], qtype,
			                     &again) != a ||
			    memcmp(&out, &again, sizeof(out)) != 0)
				abort();
		}
	}
	return 0;
}
