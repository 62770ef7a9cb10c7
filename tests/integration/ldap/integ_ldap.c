/*
 * The ldap/ client against a real slapd (started by run.sh on 127.0.0.1 with
 * 3,000 users: userNNNN on DB0(NNNN % 5 + 1), user0007 on "DB,07" written
 * with a hex escape, user0008 on a lower-case "cn=db08", plus nomailbox,
 * alias and st*r). The cases run in order and share one server: checks,
 * answers, injection, changes seen after the TTL or a flush, 1,000
 * lookups at once, 100 lookups of one user, the other transports, a server
 * that stalls, one that stops and comes back, and two worker threads.
 * `EF_LDAP_CTL modify|stop|start|pause|resume|searches` drives the server;
 * `integ_ldap --free-port` prints a free TCP port.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/log.h"
#include "ldap/ldap_src.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEMPLATE "(|(userPrincipalName=%u)(mail=%u))"
#define BASE "dc=contoso,dc=test"
#define TTL 2
#define INFLIGHT 16
#define MANY 1000
#define SAME 100

static struct event_base *base;
static struct ldap_cache *cache;
static struct ldap_client *client;
static char uri_tls[64], uri_ldaps[64], uri_ldapi[300], ca[256], pw[256],
    bad_pw[256];
static char *uris_tls[] = {uri_tls}, *uris_ldaps[] = {uri_ldaps},
            *uris_ldapi[] = {uri_ldapi};

/* The settings every case starts from: StartTLS, CA, simple bind. */
static struct ldap_src_conf conf_tls(void)
{
	return (struct ldap_src_conf){
	    .uris = uris_tls,
	    .n_uris = 1,
	    .starttls = true,
	    .ca_file = ca,
	    .bind_dn = "cn=svc," BASE,
	    .password_file = pw,
	    .base = BASE,
	    .filter = TEMPLATE,
	    .timeout_ms = 1000,
	    .connect_timeout_ms = 2000,
	    .max_inflight = INFLIGHT,
	    .backoff_max_ms = 1000,
	};
}

struct result {
	int calls;
	enum ldap_answer a;
	char db[LDAP_SRC_DB_MAX];
	uint64_t at_us;
};

static void result_cb(enum ldap_answer a, const char *db, void *arg)
{
	struct result *r = arg;

	r->calls++;
	r->a = a;
	snprintf(r->db, sizeof(r->db), "%s", db != NULL ? db : "");
	r->at_us = clock_mono_us();
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs b's loop until *flag >= want or ms pass. */
static bool run_until_on(struct event_base *b, const int *flag, int want,
                         unsigned ms)
{
	bool expired = false;
	struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};
	struct event *t = evtimer_new(b, deadline_cb, &expired);

	evtimer_add(t, &tv);
	while (*flag < want && !expired)
		event_base_loop(b, EVLOOP_ONCE);
	event_free(t);
	return *flag >= want;
}

static bool run_until(const int *flag, int want, unsigned ms)
{
	return run_until_on(base, flag, want, ms);
}

static void run_for(unsigned ms)
{
	static const int never = 0;

	run_until(&never, 1, ms);
}

/* Runs the loop until lc is connected (bounded). */
static bool wait_connected(struct ldap_client *lc, unsigned ms)
{
	uint64_t end = clock_mono_us() + (uint64_t)ms * 1000;
	struct ldap_client_stats st;

	for (;;) {
		ldap_client_stats(lc, &st);
		if (st.connected)
			return true;
		if (clock_mono_us() > end)
			return false;
		run_for(20);
	}
}

/* Looks user up on lc and waits for the answer, whichever way it comes. */
static struct result lookup_on(struct ldap_client *lc, const char *user)
{
	struct result r = {0};
	struct ldap_reply now;
	int rc = ldap_lookup(lc, user, result_cb, &r, NULL, &now);

	assert_int_not_equal(rc, -1);
	if (rc == 1) {
		r.a = now.answer;
		snprintf(r.db, sizeof(r.db), "%s", now.database);
		r.calls = -1; /* answered at once */
		return r;
	}
	assert_true(run_until(&r.calls, 1, 10000));
	return r;
}

static struct result lookup(const char *user)
{
	return lookup_on(client, user);
}

/* The database run.sh gave user i. */
static void db_of(unsigned i, char *out, size_t cap)
{
	if (i == 7)
		snprintf(out, cap, "DB,07");
	else if (i == 8)
		snprintf(out, cap, "db08");
	else
		snprintf(out, cap, "DB%02u", i % 5 + 1);
}

static void expect_user(unsigned i)
{
	char user[64], want[16];
	struct result r;

	snprintf(user, sizeof(user), "user%04u@contoso.test", i);
	db_of(i, want, sizeof(want));
	r = lookup(user);
	assert_int_equal(r.a, LDAP_ANS_FOUND);
	assert_string_equal(r.db, want);
}

static void ctl(const char *what)
{
	const char *cmd = getenv("EF_LDAP_CTL");
	char line[1024];

	assert_non_null(cmd);
	snprintf(line, sizeof(line), "%s %s", cmd, what);
	assert_int_equal(system(line), 0);
}

/* Runs a ctl command and returns the number it prints. */
static long ctl_number(const char *what)
{
	const char *cmd = getenv("EF_LDAP_CTL");
	char line[1024], out[64] = "";
	FILE *p;

	snprintf(line, sizeof(line), "%s %s", cmd, what);
	p = popen(line, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, sizeof(out), p));
	assert_int_equal(pclose(p), 0);
	return strtol(out, NULL, 10);
}

static uint64_t ms_since(uint64_t t0)
{
	return (clock_mono_us() - t0) / 1000;
}

/* ---- cases ------------------------------------------------------------ */

static void expect_check_fails(struct ldap_src_conf c, const char *why)
{
	char *err = NULL;

	assert_int_equal(ldap_check(&c, &err), -1);
	assert_non_null(err);
	fprintf(stderr, "integ_ldap: check says: %s\n", err);
	if (strstr(err, why) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", err, why);
	free(err);
}

static void test_check(void **state)
{
	struct ldap_src_conf c = conf_tls();
	char *err = NULL;

	assert_int_equal(ldap_check(&c, &err), 0);
	assert_null(err);
	c.password_file = bad_pw;
	expect_check_fails(c, "Invalid credentials");
	c = conf_tls();
	c.base = "ou=nowhere," BASE;
	expect_check_fails(c, "No such object");
	/* The certificate is verified: without our CA, no TLS. */
	c = conf_tls();
	c.ca_file = NULL;
	expect_check_fails(c, "StartTLS");
	c = conf_tls();
	c.password_file = "/nonexistent/pw";
	expect_check_fails(c, "password file");
}

static void test_found(void **state)
{
	struct ldap_client_stats st;
	struct result r;

	assert_true(wait_connected(client, 5000));
	for (unsigned i = 1; i <= 10; i++)
		expect_user(i);
	/* Case and the mail attribute work too. */
	r = lookup("USER0003@Contoso.Test");
	assert_int_equal(r.a, LDAP_ANS_FOUND);
	assert_string_equal(r.db, "DB04");
	assert_int_equal(r.calls, -1); /* user0003 is cached now */
	r = lookup("a.lias@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_FOUND);
	assert_string_equal(r.db, "DB03");
	ldap_client_stats(client, &st);
	assert_int_equal(st.searches, 11);
	assert_int_equal(st.answered, 11);
}

static void test_no_user(void **state)
{
	struct result r = lookup("nobody@contoso.test");

	assert_int_equal(r.a, LDAP_ANS_NO_USER);
	assert_true(r.calls == 1);
	r = lookup("nobody@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_NO_USER);
	assert_int_equal(r.calls, -1);
	/* An entry without a mailbox database is no mailbox user. */
	r = lookup("nomailbox@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_NO_USER);
}

static void test_injection(void **state)
{
	struct result r = lookup("*)(uid=*");

	assert_int_equal(r.a, LDAP_ANS_NO_USER);
	r = lookup("*");
	assert_int_equal(r.a, LDAP_ANS_NO_USER);
	r = lookup("user0001@contoso.test)(uid=*");
	assert_int_equal(r.a, LDAP_ANS_NO_USER);
	/* A literal asterisk matches only itself. */
	r = lookup("s*@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_NO_USER);
	r = lookup("st*r@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_FOUND);
	assert_string_equal(r.db, "DB04");
}

static void test_change_after_ttl_or_flush(void **state)
{
	struct result r;
	uint64_t t0 = clock_mono_us();

	expect_user(100);
	ctl("modify user0100 DB09");
	r = lookup("user0100@contoso.test");
	/* Still the cached answer (unless this machine is so slow that the
	 * TTL ran out meanwhile). */
	if (ms_since(t0) < TTL * 1000) {
		assert_int_equal(r.calls, -1);
		assert_string_equal(r.db, "DB01");
	}
	/* A flush makes the change visible at once. */
	assert_true(ldap_cache_flush(cache, "user0100@contoso.test"));
	r = lookup("user0100@contoso.test");
	assert_int_equal(r.calls, 1);
	assert_string_equal(r.db, "DB09");

	t0 = clock_mono_us();
	expect_user(101);
	ctl("modify user0101 DB10");
	r = lookup("user0101@contoso.test");
	if (ms_since(t0) < TTL * 1000)
		assert_string_equal(r.db, "DB02");
	/* And the TTL without one. */
	while (ms_since(t0) < TTL * 1000 + 100)
		run_for(50);
	r = lookup("user0101@contoso.test");
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.a, LDAP_ANS_FOUND);
	assert_string_equal(r.db, "DB10");
}

static void test_thousand_users(void **state)
{
	static struct result res[MANY];
	struct ldap_client_stats before, after;
	struct ldap_reply now;
	int done = 0;
	uint64_t t0 = clock_mono_us();

	ldap_client_stats(client, &before);
	memset(res, 0, sizeof(res));
	for (unsigned i = 0; i < MANY; i++) {
		char user[64];

		snprintf(user, sizeof(user), "user%04u@contoso.test", 1001 + i);
		assert_int_equal(
		    ldap_lookup(client, user, result_cb, &res[i], NULL, &now),
		    0);
	}
	ldap_client_stats(client, &after);
	assert_int_equal(after.queued, MANY);
	while (done < MANY && ms_since(t0) < 30000) {
		event_base_loop(base, EVLOOP_ONCE);
		ldap_client_stats(client, &after);
		assert_true(after.inflight <= INFLIGHT);
		done = 0;
		for (unsigned i = 0; i < MANY; i++)
			done += res[i].calls;
	}
	assert_int_equal(done, MANY);
	for (unsigned i = 0; i < MANY; i++) {
		char want[16];

		db_of(1001 + i, want, sizeof(want));
		assert_int_equal(res[i].calls, 1);
		assert_int_equal(res[i].a, LDAP_ANS_FOUND);
		assert_string_equal(res[i].db, want);
	}
	ldap_client_stats(client, &after);
	assert_int_equal(after.searches - before.searches, MANY);
	assert_true(after.inflight_max <= INFLIGHT);
	assert_int_equal(after.inflight_max, INFLIGHT);
	fprintf(
	    stderr,
	    "integ_ldap: %d lookups of different users answered in %llu ms, "
	    "at most %u searches in flight\n",
	    MANY, (unsigned long long)ms_since(t0), after.inflight_max);
}

static void test_hundred_same_user(void **state)
{
	static struct result res[SAME];
	struct ldap_client_stats before, after;
	struct ldap_reply now;
	int done = 0;

	ldap_client_stats(client, &before);
	memset(res, 0, sizeof(res));
	for (unsigned i = 0; i < SAME; i++)
		assert_int_equal(ldap_lookup(client, "user2500@contoso.test",
		                             result_cb, &res[i], NULL, &now),
		                 0);
	for (unsigned i = 0; i < SAME; i++) {
		assert_true(run_until(&res[i].calls, 1, 10000));
		done += res[i].calls;
		assert_int_equal(res[i].a, LDAP_ANS_FOUND);
		assert_string_equal(res[i].db, "DB01");
	}
	assert_int_equal(done, SAME);
	ldap_client_stats(client, &after);
	assert_int_equal(after.searches - before.searches, 1);
	assert_int_equal(after.coalesced - before.coalesced, SAME - 1);
	/* slapd saw one search for that user, too. */
	assert_int_equal(ctl_number("searches user2500@"), 1);
}

static void test_other_transports(void **state)
{
	struct ldap_cache *own = ldap_cache_new(100, TTL, TTL);
	struct ldap_src_conf c = conf_tls();
	struct ldap_client *lc;
	struct result r;

	/* ldaps:// */
	c.uris = uris_ldaps;
	c.starttls = false;
	lc = ldap_client_new(base, &c, own, NULL);
	assert_non_null(lc);
	assert_true(wait_connected(lc, 5000));
	r = lookup_on(lc, "user0002@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_FOUND);
	assert_string_equal(r.db, "DB03");
	ldap_client_free(lc);
	/* ldapi:// with SASL EXTERNAL */
	ldap_cache_flush_all(own);
	c = conf_tls();
	c.uris = uris_ldapi;
	c.bind_dn = NULL;
	c.password_file = NULL;
	c.sasl_external = true;
	lc = ldap_client_new(base, &c, own, NULL);
	assert_non_null(lc);
	assert_true(wait_connected(lc, 5000));
	r = lookup_on(lc, "user0002@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_FOUND);
	assert_string_equal(r.db, "DB03");
	ldap_client_free(lc);
	/* A wrong password never connects: lookups fail at once, after
	 * the first attempt. */
	ldap_cache_flush_all(own);
	c = conf_tls();
	c.password_file = bad_pw;
	lc = ldap_client_new(base, &c, own, NULL);
	assert_non_null(lc);
	r = lookup_on(lc, "user0002@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_ERROR);
	r = lookup_on(lc, "user0002@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_ERROR);
	assert_int_equal(r.calls, -1);
	ldap_client_free(lc);
	ldap_cache_free(own);
}

static void test_stalled_server(void **state)
{
	struct ldap_client_stats st;
	struct result r = {0};
	struct ldap_reply now;
	uint64_t t0;

	expect_user(2600);
	ctl("pause");
	t0 = clock_mono_us();
	assert_int_equal(ldap_lookup(client, "user2601@contoso.test", result_cb,
	                             &r, NULL, &now),
	                 0);
	assert_true(run_until(&r.calls, 1, 5000));
	fprintf(stderr, "integ_ldap: stalled server: error after %llu ms\n",
	        (unsigned long long)(r.at_us - t0) / 1000);
	assert_int_equal(r.a, LDAP_ANS_ERROR);
	assert_true(r.at_us - t0 < 2000000);
	/* A cached user is still answered. */
	r = lookup("user2600@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_FOUND);
	ctl("resume");
	/* One search unanswered does not condemn the connection. */
	expect_user(2602);
	ldap_client_stats(client, &st);
	assert_int_equal(st.disconnects, 0);
	assert_true(st.timeouts >= 1);
}

static void test_server_down_and_back(void **state)
{
	struct ldap_client_stats st, before;
	struct result r;
	uint64_t t0;

	expect_user(2700);
	expect_user(2703);
	/* Let both answers go past their TTL. */
	run_for(TTL * 1000 + 100);
	ldap_client_stats(client, &before);
	ctl("stop");
	/* Straight away, before the client has noticed: no stall. */
	t0 = clock_mono_us();
	r = lookup("user2703@contoso.test");
	fprintf(stderr, "integ_ldap: server just stopped: %s after %llu ms\n",
	        ldap_answer_str(r.a), (unsigned long long)ms_since(t0));
	assert_int_equal(r.a, LDAP_ANS_STALE_FOUND);
	assert_string_equal(r.db, "DB04");
	assert_true(ms_since(t0) < 1500);
	/* Once the client has failed to reconnect, it knows the directory is
	 * down: a cached user gets the stale answer, a new one an error,
	 * both at once. */
	t0 = clock_mono_us();
	do {
		run_for(20);
		ldap_client_stats(client, &st);
	} while (st.connect_fails == before.connect_fails &&
	         ms_since(t0) < 5000);
	assert_true(st.connect_fails > before.connect_fails);
	t0 = clock_mono_us();
	r = lookup("user2700@contoso.test");
	assert_int_equal(r.calls, -1);
	assert_int_equal(r.a, LDAP_ANS_STALE_FOUND);
	assert_string_equal(r.db, "DB01");
	r = lookup("user2701@contoso.test");
	assert_int_equal(r.calls, -1);
	assert_int_equal(r.a, LDAP_ANS_ERROR);
	assert_true(ms_since(t0) < 250);
	ldap_client_stats(client, &st);
	assert_false(st.connected);
	assert_int_equal(st.disconnects, 1);
	/* Back: the client reconnects by itself within its back-off. */
	ctl("start");
	t0 = clock_mono_us();
	assert_true(wait_connected(client, 5000));
	fprintf(stderr, "integ_ldap: reconnected %llu ms after the restart\n",
	        (unsigned long long)ms_since(t0));
	r = lookup("user2701@contoso.test");
	assert_int_equal(r.a, LDAP_ANS_FOUND);
	assert_string_equal(r.db, "DB02");
	r = lookup("user2700@contoso.test");
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.a, LDAP_ANS_FOUND);
}

struct worker {
	unsigned first;
	int wrong;
	int done;
};

/* A worker thread: its own event base and client on the shared cache. */
static void *worker_main(void *arg)
{
	static struct result res[2][300];
	struct worker *w = arg;
	struct result *r = res[w->first == 201 ? 0 : 1];
	struct ldap_src_conf c = conf_tls();
	struct event_base *b = event_base_new();
	struct ldap_client *lc = ldap_client_new(b, &c, cache, NULL);
	struct ldap_reply now;

	for (unsigned i = 0; lc != NULL && i < 300; i++) {
		char user[64], want[16];
		int rc;

		snprintf(user, sizeof(user), "user%04u@contoso.test",
		         w->first + i);
		db_of(w->first + i, want, sizeof(want));
		rc = ldap_lookup(lc, user, result_cb, &r[i], NULL, &now);
		if (rc == 1 && now.answer == LDAP_ANS_FOUND) {
			w->wrong += strcmp(now.database, want) != 0;
			w->done++;
			continue;
		}
		if (rc != 0 || !run_until_on(b, &r[i].calls, 1, 10000) ||
		    r[i].a != LDAP_ANS_FOUND || strcmp(r[i].db, want) != 0) {
			fprintf(stderr,
			        "integ_ldap: worker: %s: rc %d, %s %s\n", user,
			        rc, ldap_answer_str(r[i].a), r[i].db);
			w->wrong++;
		}
		w->done++;
	}
	ldap_client_free(lc);
	event_base_free(b);
	return NULL;
}

static void test_two_workers(void **state)
{
	/* Overlapping ranges: each worker finds some users in the cache the
	 * other one filled. */
	struct worker w[2] = {{.first = 201}, {.first = 351}};
	pthread_t t[2];
	struct ldap_cache_stats st;

	ldap_cache_flush_all(cache);
	for (int i = 0; i < 2; i++)
		assert_int_equal(
		    pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(w[i].done, 300);
		assert_int_equal(w[i].wrong, 0);
	}
	ldap_cache_stats(cache, &st);
	fprintf(stderr,
	        "integ_ldap: cache: %llu hits, %llu misses, %llu stale, "
	        "%llu errors, %u entries\n",
	        (unsigned long long)st.hits, (unsigned long long)st.misses,
	        (unsigned long long)st.stale, (unsigned long long)st.errors,
	        st.entries);
}

/* Prints a TCP port on 127.0.0.1 free right now. */
static int free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	int t = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (t < 0 || bind(t, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    getsockname(t, (struct sockaddr *)&sin, &len) != 0)
		return 1;
	printf("%u\n", ntohs(sin.sin_port));
	close(t);
	return 0;
}

/* Fills the URIs and paths from run.sh's environment. */
static int setup_env(void)
{
	const char *dir = getenv("EF_LDAP_DIR"), *port = getenv("EF_LDAP_PORT"),
	           *sport = getenv("EF_LDAPS_PORT");
	size_t n = 0;

	if (dir == NULL || port == NULL || sport == NULL ||
	    getenv("EF_LDAP_CTL") == NULL)
		return -1;
	snprintf(uri_tls, sizeof(uri_tls), "ldap://127.0.0.1:%s", port);
	snprintf(uri_ldaps, sizeof(uri_ldaps), "ldaps://127.0.0.1:%s", sport);
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(pw, sizeof(pw), "%s/svc.pw", dir);
	snprintf(bad_pw, sizeof(bad_pw), "%s/bad.pw", dir);
	n = (size_t)snprintf(uri_ldapi, sizeof(uri_ldapi), "ldapi://");
	for (const char *p = dir; *p != '\0' && n + 4 < sizeof(uri_ldapi); p++)
		n += (size_t)snprintf(uri_ldapi + n, sizeof(uri_ldapi) - n,
		                      *p == '/' ? "%%2F" : "%c", *p);
	snprintf(uri_ldapi + n, sizeof(uri_ldapi) - n, "%%2Fldapi");
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_check),
	    cmocka_unit_test(test_found),
	    cmocka_unit_test(test_no_user),
	    cmocka_unit_test(test_injection),
	    cmocka_unit_test(test_change_after_ttl_or_flush),
	    cmocka_unit_test(test_thousand_users),
	    cmocka_unit_test(test_hundred_same_user),
	    cmocka_unit_test(test_other_transports),
	    cmocka_unit_test(test_stalled_server),
	    cmocka_unit_test(test_server_down_and_back),
	    cmocka_unit_test(test_two_workers),
	};
	struct ldap_src_conf c;
	char *err = NULL;
	int rc;

	if (argc > 1 && strcmp(argv[1], "--free-port") == 0)
		return free_port();
	if (setup_env() != 0) {
		fprintf(stderr, "integ_ldap: run me through run.sh\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if (getenv("EF_LDAP_DEBUG") != NULL)
		log_init(2, LOG_L_DEBUG);
	base = event_base_new();
	cache = ldap_cache_new(10000, TTL, TTL);
	c = conf_tls();
	client = ldap_client_new(base, &c, cache, &err);
	if (client == NULL) {
		fprintf(stderr, "integ_ldap: %s\n", err);
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	ldap_client_free(client);
	ldap_cache_free(cache);
	event_base_free(base);
	return rc;
}
