/*
 * The dns/ resolver against a real name server (Knot DNS, started by run.sh
 * on 127.0.0.1:EF_DNS_SERVER's port) serving site1.test. The cases run in
 * order and share one server: plain answers first, then the CNAME of cas1 is
 * re-pointed and a watch must follow it, then the server is stopped and the
 * watch must keep its last answer. `EF_DNS_CTL repoint|stop` changes the
 * server; `integ_dns --free-port` prints a port free for UDP and TCP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/log.h"
#include "dns/dns.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct event_base *base;
static struct dns_resolver *res;
static struct dns_watch *watch;

struct result {
	int calls;
	int status;
	struct dns_addrs addrs;
};

struct watch_seen {
	int changes;
	struct dns_addrs last;
	uint64_t at_us;
};

static struct watch_seen seen;

static void result_cb(int status, const struct dns_addrs *addrs, void *arg)
{
	struct result *r = arg;

	r->calls++;
	r->status = status;
	r->addrs = *addrs;
}

static void watch_cb(const struct dns_addrs *addrs, void *arg)
{
	struct watch_seen *ws = arg;

	ws->changes++;
	ws->last = *addrs;
	ws->at_us = clock_mono_us();
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs the loop until *flag >= want or ms pass; returns whether it got there.
 */
static bool run_until(const int *flag, int want, unsigned ms)
{
	bool expired = false;
	struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};
	struct event *t = evtimer_new(base, deadline_cb, &expired);

	evtimer_add(t, &tv);
	while (*flag < want && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return *flag >= want;
}

static void run_for(unsigned ms)
{
	static const int never = 0;

	run_until(&never, 1, ms);
}

static bool has_addr(const struct dns_addrs *a, const char *want)
{
	for (unsigned i = 0; i < a->n; i++) {
		char buf[INET6_ADDRSTRLEN];
		const struct sockaddr_storage *ss = &a->addr[i];
		const void *src =
		    ss->ss_family == AF_INET
		        ? (const void *)&((const struct sockaddr_in *)ss)
		              ->sin_addr
		        : (const void *)&((const struct sockaddr_in6 *)ss)
		              ->sin6_addr;

		if (inet_ntop(ss->ss_family, src, buf, sizeof(buf)) != NULL &&
		    strcmp(buf, want) == 0)
			return true;
	}
	return false;
}

/* Resolves name and waits (bounded) for the answer. */
static struct result resolve(const char *name)
{
	struct result r = {0};

	assert_non_null(dns_resolve(res, name, result_cb, &r));
	assert_true(run_until(&r.calls, 1, 10000));
	return r;
}

static void ctl(const char *what)
{
	const char *cmd = getenv("EF_DNS_CTL");
	char line[1024];

	assert_non_null(cmd);
	snprintf(line, sizeof(line), "%s %s", cmd, what);
	assert_int_equal(system(line), 0);
}

static void test_cname(void **state)
{
	/* The server may still be settling: allow a few attempts. */
	struct result r = {0};

	for (int i = 0; i < 20; i++) {
		r = resolve("cas1.site1.test");
		if (r.status == 0 && r.addrs.n > 0)
			break;
		run_for(100);
	}
	assert_int_equal(r.status, 0);
	assert_int_equal(r.addrs.n, 1);
	assert_true(has_addr(&r.addrs, "127.0.0.11"));
	assert_int_equal(r.addrs.n_cname, 1);
	assert_string_equal(r.addrs.cname_chain[0], "cas1-a.site1.test");
	/* The CNAME's TTL (2) is the smallest along the chain. */
	assert_int_equal(r.addrs.ttl, 2);
	/* Same answer whatever the case of the question. */
	r = resolve("CAS1.Site1.Test.");
	assert_int_equal(r.status, 0);
	assert_true(has_addr(&r.addrs, "127.0.0.11"));
}

static void test_chain_and_dual(void **state)
{
	struct result r = resolve("c3.site1.test");

	assert_int_equal(r.status, 0);
	assert_int_equal(r.addrs.n_cname, 3);
	assert_string_equal(r.addrs.cname_chain[2], "cas1-a.site1.test");
	assert_true(has_addr(&r.addrs, "127.0.0.11"));
	r = resolve("dual.site1.test");
	assert_int_equal(r.status, 0);
	assert_int_equal(r.addrs.n, 2);
	assert_int_equal(r.addrs.addr[0].ss_family, AF_INET);
	assert_true(has_addr(&r.addrs, "127.0.0.21"));
	assert_true(has_addr(&r.addrs, "2001:db8::21"));
	assert_int_equal(r.addrs.ttl, 60);
}

static void test_nxdomain_nodata(void **state)
{
	struct result r = resolve("nonexistent.site1.test");

	assert_int_equal(r.status, 1);
	assert_int_equal(r.addrs.n, 0);
	/* A name with records, none of them addresses. */
	r = resolve("site1.test");
	assert_int_equal(r.status, 0);
	assert_int_equal(r.addrs.n, 0);
}

static void test_truncated_tcp(void **state)
{
	/* 40 A records do not fit 512 bytes: knot sets TC, TCP brings them;
	 * 16 are kept. */
	struct result r = resolve("big.site1.test");

	assert_int_equal(r.status, 0);
	assert_int_equal(r.addrs.n, DNS_MAX_ADDRS);
}

static void test_cname_loop(void **state)
{
	/* Knot answers with the looping chain: never trusted, so the query
	 * fails once its attempts are spent. */
	struct result r = resolve("loop1.site1.test");

	assert_int_equal(r.status, -1);
	assert_int_equal(r.addrs.n, 0);
}

static void test_watch_follows_cname(void **state)
{
	uint64_t t0;

	watch = dns_watch_new(res, "cas1.site1.test", 1, 60, watch_cb, &seen);
	assert_non_null(watch);
	assert_true(run_until(&seen.changes, 1, 5000));
	assert_true(has_addr(&seen.last, "127.0.0.11"));
	ctl("repoint");
	t0 = clock_mono_us();
	/* TTL 2 s plus a margin. */
	assert_true(run_until(&seen.changes, 2, 2000 + 3000));
	fprintf(stderr,
	        "integ_dns: watch saw the new address %llu ms after "
	        "the reload\n",
	        (unsigned long long)(seen.at_us - t0) / 1000);
	assert_int_equal(seen.last.n, 1);
	assert_true(has_addr(&seen.last, "127.0.0.12"));
	assert_string_equal(seen.last.cname_chain[0], "cas1-b.site1.test");
	assert_true(has_addr(dns_watch_addrs(watch), "127.0.0.12"));
}

static void test_watch_keeps_last_answer(void **state)
{
	struct result r;

	ctl("stop");
	/* Several refreshes fail meanwhile (TTL 2, then back-off). */
	run_for(6000);
	assert_int_equal(seen.changes, 2);
	assert_non_null(dns_watch_addrs(watch));
	assert_int_equal(dns_watch_addrs(watch)->n, 1);
	assert_true(has_addr(dns_watch_addrs(watch), "127.0.0.12"));
	/* A plain query now fails, and says so. */
	r = resolve("cas1.site1.test");
	assert_int_equal(r.status, -1);
	dns_watch_free(watch);
	watch = NULL;
}

/* Prints a port on 127.0.0.1 free for both UDP and TCP right now. */
static int free_port(void)
{
	for (int i = 0; i < 50; i++) {
		struct sockaddr_in sin = {.sin_family = AF_INET};
		socklen_t len = sizeof(sin);
		int t = socket(AF_INET, SOCK_STREAM, 0);
		int u = socket(AF_INET, SOCK_DGRAM, 0);
		bool ok;

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ok = t >= 0 && u >= 0 &&
		     bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
		     getsockname(t, (struct sockaddr *)&sin, &len) == 0 &&
		     bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		close(t);
		close(u);
		if (ok) {
			printf("%u\n", ntohs(sin.sin_port));
			return 0;
		}
	}
	return 1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cname),
	    cmocka_unit_test(test_chain_and_dual),
	    cmocka_unit_test(test_nxdomain_nodata),
	    cmocka_unit_test(test_truncated_tcp),
	    cmocka_unit_test(test_cname_loop),
	    cmocka_unit_test(test_watch_follows_cname),
	    cmocka_unit_test(test_watch_keeps_last_answer),
	};
	char *server = getenv("EF_DNS_SERVER");
	char *err = NULL;
	int rc;

	if (argc > 1 && strcmp(argv[1], "--free-port") == 0)
		return free_port();
	if (server == NULL || getenv("EF_DNS_CTL") == NULL) {
		fprintf(stderr, "integ_dns: run me through run.sh\n");
		return 1;
	}
	if (getenv("EF_DNS_DEBUG") != NULL)
		log_init(2, LOG_L_DEBUG);
	base = event_base_new();
	res = dns_resolver_new(base, &server, 1, &err);
	if (res == NULL) {
		fprintf(stderr, "integ_dns: %s\n", err);
		return 1;
	}
	/* Short attempts keep the failure cases quick. */
	dns_resolver_set_timeout(res, 500, 2);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	dns_watch_free(watch);
	dns_resolver_free(res);
	event_base_free(base);
	return rc;
}
