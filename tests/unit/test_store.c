/*
 * store/: the URL and password file, then the store against a real
 * redis-server (Debian's, started here on 127.0.0.1 at a free port with a
 * password, no persistence) and against in-process fake servers that never
 * answer, answer garbage or answer too much. Every wait is bounded in time;
 * a loop turn that takes long is a failure (the store must never block).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PASSWORD "t3st-pässword"

extern char **environ;

/* ---- redis-server ----------------------------------------------------- */

static struct {
	char dir[64];
	char url[64];
	int port;
	pid_t pid;
	int log_fd; /* our log lines, read back by the tests */
} env = {.pid = -1, .log_fd = -1};

static int free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static bool port_accepts(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Starts redis-server on env.port and waits (at most 5 s) until it
 * accepts. */
static int redis_start(void)
{
	char port[16];
	char *argv[] = {"redis-server",
	                "--port",
	                port,
	                "--bind",
	                "127.0.0.1",
	                "--save",
	                "",
	                "--appendonly",
	                "no",
	                "--requirepass",
	                PASSWORD,
	                "--dir",
	                env.dir,
	                "--logfile",
	                "",
	                "--daemonize",
	                "no",
	                NULL};
	posix_spawn_file_actions_t fa;
	int rc;

	snprintf(port, sizeof(port), "%d", env.port);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawnp(&env.pid, "redis-server", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		fprintf(stderr, "cannot start redis-server: %s\n",
		        strerror(rc));
		return -1;
	}
	for (int i = 0; i < 500; i++) {
		if (port_accepts(env.port))
			return 0;
		usleep(10000);
	}
	return -1;
}

static void redis_kill(void)
{
	if (env.pid > 0) {
		kill(env.pid, SIGKILL);
		waitpid(env.pid, NULL, 0);
	}
	env.pid = -1;
}

static int group_setup(void **state)
{
	char logpath[] = "/tmp/ef-store-log-XXXXXX";

	signal(SIGPIPE, SIG_IGN);
	snprintf(env.dir, sizeof(env.dir), "/tmp/ef-store-XXXXXX");
	if (mkdtemp(env.dir) == NULL || (env.port = free_port()) < 0)
		return -1;
	snprintf(env.url, sizeof(env.url), "redis://127.0.0.1:%d/0", env.port);
	env.log_fd = mkstemp(logpath);
	if (env.log_fd < 0)
		return -1;
	unlink(logpath);
	log_init(env.log_fd, LOG_L_INFO);
	return redis_start();
}

static int group_teardown(void **state)
{
	char path[128];

	redis_kill();
	/* EF_STORE_LOG=1 shows what the store logged, for a failing run. */
	if (getenv("EF_STORE_LOG") != NULL) {
		char buf[65536];
		ssize_t n = pread(env.log_fd, buf, sizeof(buf), 0);

		if (n > 0 && write(2, buf, (size_t)n) < 0)
			return -1;
	}
	snprintf(path, sizeof(path), "%s/dump.rdb", env.dir);
	unlink(path);
	rmdir(env.dir);
	log_init(2, LOG_L_INFO);
	if (env.log_fd >= 0)
		close(env.log_fd);
	return 0;
}

/* Lines of our log written since mark (a file offset) that hold needle. */
static int log_count(off_t mark, const char *needle)
{
	char buf[65536];
	ssize_t n = pread(env.log_fd, buf, sizeof(buf) - 1, mark);
	int count = 0;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (char *p = buf; (p = strstr(p, needle)) != NULL; p++)
		count++;
	return count;
}

static off_t log_mark(void)
{
	return lseek(env.log_fd, 0, SEEK_END);
}

/* ---- loops ------------------------------------------------------------ */

typedef bool (*cond_fn)(void *arg);

/* Turns every base until cond(arg) holds or ms pass; returns cond's last
 * answer. A store that blocked its loop would hang here on the fake
 * servers, which never answer: the test's time limit fails it, with no
 * timed assertion that a busy machine could trip (one did, at 400 ms, under
 * ASan with the whole suite running). */
static bool run_until(struct event_base **bases, int n, cond_fn cond, void *arg,
                      unsigned ms)
{
	uint64_t deadline = clock_mono_us() + (uint64_t)ms * 1000;

	while (!cond(arg)) {
		if (clock_mono_us() > deadline)
			return false;
		for (int i = 0; i < n; i++)
			event_base_loop(bases[i], EVLOOP_NONBLOCK);
		usleep(1000);
	}
	return true;
}

static bool never(void *arg)
{
	return false;
}

static void run_for(struct event_base **bases, int n, unsigned ms)
{
	run_until(bases, n, never, NULL, ms);
}

static bool is_up(void *arg)
{
	return store_up(arg);
}

static bool is_down(void *arg)
{
	return !store_up(arg);
}

static bool sub_is_up(void *arg)
{
	struct store_stats st;

	store_get_stats(arg, &st);
	return st.sub_up;
}

static struct store *new_store(struct event_base *base, const char *url,
                               const char *pw, unsigned max_inflight)
{
	struct store_conf c = {.url = url,
	                       .password = pw,
	                       .max_inflight = max_inflight,
	                       .keepalive_ms = 200,
	                       .prefix = "eftest:"};
	char *err = NULL;
	struct store *s = store_new(base, &c, &err);

	if (s == NULL)
		fprintf(stderr, "store_new: %s\n", err ? err : "?");
	free(err);
	assert_non_null(s);
	return s;
}

/* ---- what callbacks saw ----------------------------------------------- */

struct seen {
	int calls;
	int fails;
	long long total;
	int msgs;
	int op;
	char key[64];
	unsigned ttl_s;
	int scan_keys;
	long long scan_ttl;
	int scan_end; /* 1: complete, -1: incomplete */
};

static void on_total(void *arg, int status, long long total)
{
	struct seen *w = arg;

	w->calls++;
	if (status != 0)
		w->fails++;
	else
		w->total = total;
}

static void on_done(void *arg, int status)
{
	on_total(arg, status, 0);
}

static void on_msg(void *arg, enum store_msg_op op, const void *key,
                   size_t klen, unsigned ttl_s)
{
	struct seen *w = arg;

	w->msgs++;
	w->op = op;
	w->ttl_s = ttl_s;
	snprintf(w->key, sizeof(w->key), "%.*s", (int)klen, (const char *)key);
}

static void on_scan(void *arg, int status, const void *key, size_t klen,
                    long long ttl_ms)
{
	struct seen *w = arg;

	if (key == NULL) {
		w->scan_end = status == 0 ? 1 : -1;
		return;
	}
	w->scan_keys++;
	w->scan_ttl = ttl_ms;
}

/* Waits for w->calls to reach n. */
static void wait_calls(struct event_base **b, int nb, struct seen *w, int n)
{
	for (uint64_t end = clock_mono_us() + 3000000;
	     w->calls < n && clock_mono_us() < end;)
		run_for(b, nb, 5);
	assert_int_equal(w->calls, n);
}

static bool scan_done(void *arg)
{
	return ((struct seen *)arg)->scan_end != 0;
}

/* Walks the holds of kind; returns how many keys were found (the walk must
 * complete). */
static int scan_all(struct event_base *base, struct store *s, const char *kind,
                    struct seen *w)
{
	w->scan_end = 0;
	w->scan_keys = 0;
	assert_int_equal(store_scan_holds(s, kind, strlen(kind), on_scan, w),
	                 0);
	assert_true(run_until(&base, 1, scan_done, w, 3000));
	assert_int_equal(w->scan_end, 1);
	return w->scan_keys;
}

/* Waits for w->msgs to reach n. */
static void wait_msgs(struct event_base **b, int nb, struct seen *w, int n)
{
	for (uint64_t end = clock_mono_us() + 3000000;
	     w->msgs < n && clock_mono_us() < end;)
		run_for(b, nb, 5);
	assert_int_equal(w->msgs, n);
}

/* ---- pure parts ------------------------------------------------------- */

static void test_url(void **state)
{
	static const struct {
		const char *url;
		int ok;
		const char *host;
		unsigned port, db;
	} t[] = {
	    {"redis://10.0.0.7:6379/0", 1, "10.0.0.7", 6379, 0},
	    {"REDIS://redis.example.com", 1, "redis.example.com", 6379, 0},
	    {"redis://[::1]:7000/3", 1, "::1", 7000, 3},
	    {"redis://h/", 1, "h", 6379, 0},
	    {"rediss://10.0.0.7:6379/0", 0, NULL, 0, 0},
	    {"http://10.0.0.7", 0, NULL, 0, 0},
	    {"redis://", 0, NULL, 0, 0},
	    {"redis://:pw@h", 0, NULL, 0, 0},
	    {"redis://user@h", 0, NULL, 0, 0},
	    {"redis://h:0", 0, NULL, 0, 0},
	    {"redis://h:65536", 0, NULL, 0, 0},
	    {"redis://h:99999999999999999999", 0, NULL, 0, 0},
	    {"redis://h/10000", 0, NULL, 0, 0},
	    {"redis://h/1?x", 0, NULL, 0, 0},
	    {"redis://[zz]:1", 0, NULL, 0, 0},
	    {"redis://h x", 0, NULL, 0, 0},
	};
	struct store_addr a;
	const char *why;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		why = NULL;
		assert_int_equal(store_url_parse(t[i].url, &a, &why),
		                 t[i].ok ? 0 : -1);
		if (!t[i].ok) {
			assert_non_null(why);
			continue;
		}
		assert_string_equal(a.host, t[i].host);
		assert_int_equal(a.port, t[i].port);
		assert_int_equal(a.db, t[i].db);
	}
}

static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void test_password_file(void **state)
{
	char path[] = "/tmp/ef-store-pw-XXXXXX";
	char buf[16];
	char *err = NULL;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	write_file(path, "secret\r\nnext\n", 13);
	assert_int_equal(store_password_read(path, buf, sizeof(buf), &err), 6);
	assert_string_equal(buf, "secret");
	assert_null(err);
	write_file(path, "\n", 1);
	assert_int_equal(store_password_read(path, buf, sizeof(buf), &err), -1);
	assert_non_null(strstr(err, "empty"));
	free(err);
	write_file(path, "0123456789abcdefXYZ", 19);
	assert_int_equal(store_password_read(path, buf, sizeof(buf), &err), -1);
	assert_non_null(strstr(err, "too long"));
	assert_null(strstr(err, "0123"));
	free(err);
	write_file(path, "0123456789abcde", 15); /* exactly cap - 1 */
	assert_int_equal(store_password_read(path, buf, sizeof(buf), &err), 15);
	unlink(path);
	assert_int_equal(store_password_read(path, buf, sizeof(buf), &err), -1);
	free(err);
}

static void test_new_refuses(void **state)
{
	struct event_base *base = event_base_new();
	struct store_conf c = {.url = "rediss://127.0.0.1:1/0"};
	char *err = NULL;

	assert_null(store_new(base, &c, &err));
	assert_non_null(strstr(err, "redis://"));
	free(err);
	c.url = "redis://no-such-host.invalid:6379/0";
	assert_null(store_new(base, &c, &err));
	assert_non_null(strstr(err, "resolve"));
	free(err);
	c.url = "redis://127.0.0.1:1/0";
	c.prefix = "01234567890123456789012345678901234567890123456789"
	           "01234567890123456789";
	assert_null(store_new(base, &c, &err));
	free(err);
	event_base_free(base);
}

/* ---- against redis-server --------------------------------------------- */

static void test_count_expiry(void **state)
{
	struct event_base *base = event_base_new();
	struct store *s = new_store(base, env.url, PASSWORD, 0);
	struct seen w = {0};
	long long by = 3;

	/* Down until the handshake is answered: refused at once. */
	assert_false(store_up(s));
	assert_int_equal(store_count(s, "c1", 2, 1, 1, on_total, &w), -1);
	assert_true(run_until(&base, 1, is_up, s, 3000));
	assert_int_equal(store_count(s, "c1", 2, by, 1, on_total, &w), 0);
	/* Never from inside the call. */
	assert_int_equal(w.calls, 0);
	wait_calls(&base, 1, &w, 1);
	assert_int_equal(w.fails, 0);
	assert_int_equal(w.total, 3);
	assert_int_equal(store_count(s, "c1", 2, 4, 1, on_total, &w), 0);
	wait_calls(&base, 1, &w, 2);
	assert_int_equal(w.total, 7);

	/* The counter's time left, seen through the holds walk. */
	assert_int_equal(scan_all(base, s, "c1", &w), 1);
	assert_true(w.scan_ttl > 0 && w.scan_ttl <= 1000);

	/* Expired: a new counter starts from the addition alone. */
	run_for(&base, 1, 1100);
	assert_int_equal(store_count(s, "c1", 2, 5, 1, on_total, &w), 0);
	wait_calls(&base, 1, &w, 3);
	assert_int_equal(w.total, 5);
	/* Freed with a command in flight: its callback says so. */
	assert_int_equal(store_count(s, "c1", 2, 1, 1, on_total, &w), 0);
	store_free(s);
	assert_int_equal(w.calls, 4);
	assert_int_equal(w.fails, 1);
	event_base_free(base);
}

static void test_two_stores(void **state)
{
	struct event_base *b[2] = {event_base_new(), event_base_new()};
	struct store *s1 = new_store(b[0], env.url, PASSWORD, 0);
	struct store *s2 = new_store(b[1], env.url, PASSWORD, 0);
	struct seen w1 = {0}, w2 = {0}, m2 = {0};
	struct store_stats st;
	uint64_t commands;

	assert_int_equal(store_subscribe(s2, "holds", on_msg, &m2), 0);
	assert_int_equal(store_subscribe(s2, "holds", on_msg, &m2), -1);
	assert_true(run_until(b, 2, is_up, s1, 3000));
	assert_true(run_until(b, 2, sub_is_up, s2, 3000));
	run_for(b, 2, 50); /* the SUBSCRIBE's confirmation */

	assert_int_equal(store_count(s1, "dev\0x", 5, 2, 60, on_total, &w1), 0);
	wait_calls(b, 2, &w1, 1);
	assert_int_equal(store_count(s2, "dev\0x", 5, 3, 60, on_total, &w2), 0);
	wait_calls(b, 2, &w2, 1);
	assert_int_equal(w2.total, 5);

	assert_int_equal(store_hold(s1, "holds", "pw:abc", 6, 30, on_done, &w1),
	                 0);
	wait_msgs(b, 2, &m2, 1);
	assert_int_equal(m2.op, STORE_MSG_HOLD);
	assert_string_equal(m2.key, "pw:abc");
	assert_int_equal(m2.ttl_s, 30);
	/* Idle links are PINGed (every 200 ms here, but no sooner than
	 * the last answer's timeout: 500 ms) and stay up, the subscribed
	 * one too. */
	store_get_stats(s2, &st);
	commands = st.commands;
	run_for(b, 2, 1000);
	store_get_stats(s2, &st);
	assert_true(st.up && st.sub_up);
	assert_true(st.commands >= commands + 3);
	assert_int_equal(st.errors, 0);
	assert_int_equal(store_clear(s1, "holds", "pw:abc", 6, NULL, NULL), 0);
	wait_msgs(b, 2, &m2, 2);
	assert_int_equal(m2.op, STORE_MSG_CLEAR);
	assert_int_equal(m2.ttl_s, 0);
	wait_calls(b, 2, &w1, 2);
	assert_int_equal(w1.fails, 0);
	store_free(s1);
	store_free(s2);
	event_base_free(b[0]);
	event_base_free(b[1]);
}

static void test_hold_scan_clear(void **state)
{
	struct event_base *base = event_base_new();
	struct store *s = new_store(base, env.url, PASSWORD, 0);
	struct seen w = {0};
	const char *keys[] = {"h:*1", "h:[2]", "h:3\\"};

	assert_true(run_until(&base, 1, is_up, s, 3000));
	for (int i = 0; i < 3; i++)
		assert_int_equal(store_hold(s, "holds", keys[i],
		                            strlen(keys[i]), 60, on_done, &w),
		                 0);
	/* Another kind, and a near miss: no holds of kind "h:". */
	assert_int_equal(store_hold(s, "holds", "g:1", 3, 60, on_done, &w), 0);
	assert_int_equal(store_hold(s, "holds", "hx1", 3, 60, on_done, &w), 0);
	wait_calls(&base, 1, &w, 5);
	assert_int_equal(w.fails, 0);
	assert_int_equal(scan_all(base, s, "h:", &w), 3);
	assert_true(w.scan_ttl > 59000 && w.scan_ttl <= 60000);
	/* Glob characters of the kind are taken literally. */
	assert_int_equal(scan_all(base, s, "h:[", &w), 1);

	assert_int_equal(store_clear(s, "holds", "h:[2]", 5, on_done, &w), 0);
	wait_calls(&base, 1, &w, 6);
	assert_int_equal(scan_all(base, s, "h:", &w), 2);
	/* A mark is found by a walk like a hold, with its own time. */
	assert_int_equal(store_mark(s, "h:m", 3, 30, on_done, &w), 0);
	wait_calls(&base, 1, &w, 7);
	assert_int_equal(w.fails, 0);
	assert_int_equal(scan_all(base, s, "h:m", &w), 1);
	assert_true(w.scan_ttl > 29000 && w.scan_ttl <= 30000);
	assert_int_equal(store_mark(s, "k", 1, 0, NULL, NULL), -1);
	/* Bad arguments are refused at once. */
	assert_int_equal(store_hold(s, "holds", "k", 1, 0, NULL, NULL), -1);
	assert_int_equal(store_hold(s, "holds", "", 0, 5, NULL, NULL), -1);
	assert_int_equal(store_count(s, "k", 1, 1, 0, on_total, &w), -1);
	store_free(s);
	event_base_free(base);
}

static void test_wrong_password(void **state)
{
	struct event_base *base = event_base_new();
	off_t mark = log_mark();
	struct store *s = new_store(base, env.url, "wrong", 0);
	struct store_stats st;
	struct seen w = {0};

	run_for(&base, 1, 1800); /* attempts at 0, 0.5 and 1.5 s */
	assert_false(store_up(s));
	assert_int_equal(store_count(s, "k", 1, 1, 5, on_total, &w), -1);
	store_get_stats(s, &st);
	assert_true(st.errors >= 2);
	assert_int_equal(st.reconnects, 0);
	assert_int_equal(log_count(mark, " warn store "), 1);
	assert_int_equal(log_count(mark, "AUTH refused"), 1);
	assert_int_equal(log_count(mark, "wrong"), 0);
	store_free(s);
	event_base_free(base);
	assert_int_equal(w.calls, 0);
}

static void test_redis_killed(void **state)
{
	struct event_base *b[2] = {event_base_new(), event_base_new()};
	struct store *s1 = new_store(b[0], env.url, PASSWORD, 0);
	struct store *s2 = new_store(b[1], env.url, PASSWORD, 0);
	struct seen w = {0}, m = {0};
	struct store_stats st;
	off_t mark;
	uint64_t t0;

	assert_int_equal(store_subscribe(s2, "holds", on_msg, &m), 0);
	assert_true(run_until(b, 2, is_up, s1, 3000));
	assert_true(run_until(b, 2, sub_is_up, s2, 3000));
	mark = log_mark();
	/* In flight when Redis dies: failed, not lost. */
	assert_int_equal(store_count(s1, "k", 1, 1, 5, on_total, &w), 0);
	redis_kill();
	assert_true(run_until(b, 2, is_down, s1, 3000));
	wait_calls(b, 2, &w, 1);
	t0 = clock_mono_us();
	assert_int_equal(store_count(s1, "k", 1, 1, 5, on_total, &w), -1);
	assert_int_equal(store_hold(s1, "holds", "k", 1, 5, NULL, NULL), -1);
	/* Far below the 500 ms timeout, with room for valgrind. */
	assert_true(clock_mono_us() - t0 < 100000);
	run_for(b, 2, 700); /* a failed reconnect or two */
	assert_int_equal(log_count(mark, " warn store "), 2); /* one each */

	assert_int_equal(redis_start(), 0);
	assert_true(run_until(b, 2, is_up, s1, 5000));
	assert_true(run_until(b, 2, sub_is_up, s2, 5000));
	run_for(b, 2, 50);
	store_get_stats(s1, &st);
	assert_true(st.reconnects >= 1);
	assert_int_equal(log_count(mark, "up again"), 3); /* s1, s2, s2's sub */
	/* The subscription was made again. */
	assert_int_equal(store_hold(s1, "holds", "back", 4, 5, NULL, NULL), 0);
	wait_msgs(b, 2, &m, 1);
	assert_string_equal(m.key, "back");
	store_free(s1);
	store_free(s2);
	event_base_free(b[0]);
	event_base_free(b[1]);
}

/* ---- fake servers ----------------------------------------------------- */

enum fake_mode {
	FAKE_SILENT,  /* reads and discards, never answers */
	FAKE_STALL,   /* answers the handshake's PING, then nothing */
	FAKE_GARBAGE, /* answers the PING, then bytes that are not RESP */
	FAKE_EXTRA,   /* answers the PING, then two answers per command */
	FAKE_HUGE,    /* answers the PING, then announces a 1 GB string */
};

struct fake {
	enum fake_mode mode;
	struct evconnlistener *lis;
	struct bufferevent *conns[64];
	bool ponged[64];
	int n_conns;
	char url[64];
};

static void fake_read(struct bufferevent *bev, void *arg)
{
	struct fake *f = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	static const char junk[] = "\x01garbage\r\n";
	static char zeros[65536];
	int i = 0;

	evbuffer_drain(in, evbuffer_get_length(in));
	while (i < f->n_conns && f->conns[i] != bev)
		i++;
	if (f->mode == FAKE_SILENT || i == f->n_conns)
		return;
	if (!f->ponged[i]) {
		f->ponged[i] = true;
		bufferevent_write(bev, "+PONG\r\n", 7);
		return;
	}
	switch (f->mode) {
	case FAKE_GARBAGE:
		bufferevent_write(bev, junk, sizeof(junk) - 1);
		break;
	case FAKE_EXTRA:
		bufferevent_write(bev, ":1\r\n:2\r\n", 8);
		break;
	case FAKE_HUGE:
		bufferevent_write(bev, "$1000000000\r\n", 13);
		for (int n = 0; n < 20; n++)
			bufferevent_write(bev, zeros, sizeof(zeros));
		break;
	default:
		break;
	}
}

static void fake_accept(struct evconnlistener *lis, evutil_socket_t fd,
                        struct sockaddr *sa, int len, void *arg)
{
	struct fake *f = arg;
	struct bufferevent *bev = bufferevent_socket_new(
	    evconnlistener_get_base(lis), fd, BEV_OPT_CLOSE_ON_FREE);

	if (f->n_conns == 64) {
		bufferevent_free(bev);
		return;
	}
	f->conns[f->n_conns++] = bev;
	bufferevent_setcb(bev, fake_read, NULL, NULL, f);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void fake_start(struct fake *f, struct event_base *base,
                       enum fake_mode mode)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);

	f->mode = mode;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lis = evconnlistener_new_bind(
	    base, fake_accept, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	    (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(f->lis);
	getsockname(evconnlistener_get_fd(f->lis), (struct sockaddr *)&sin,
	            &len);
	snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d",
	         ntohs(sin.sin_port));
}

static void fake_stop(struct fake *f)
{
	for (int i = 0; i < f->n_conns; i++)
		bufferevent_free(f->conns[i]);
	evconnlistener_free(f->lis);
}

/* A store talking to a fake server, both on one base. */
struct rig {
	struct event_base *base;
	struct fake f;
	struct store *s;
	struct store_stats st;
	struct seen w;
};

static void rig_start(struct rig *r, enum fake_mode mode, unsigned max_inflight)
{
	*r = (struct rig){.base = event_base_new()};
	fake_start(&r->f, r->base, mode);
	r->s = new_store(r->base, r->f.url, NULL, max_inflight);
}

static void rig_stop(struct rig *r)
{
	store_free(r->s);
	fake_stop(&r->f);
	event_base_free(r->base);
}

static void test_silent_server(void **state)
{
	struct rig r;

	rig_start(&r, FAKE_SILENT, 0);
	run_for(&r.base, 1, 1700); /* handshakes time out at 0.5 and 1.5 s */
	assert_false(store_up(r.s));
	assert_int_equal(store_count(r.s, "k", 1, 1, 5, on_total, &r.w), -1);
	store_get_stats(r.s, &r.st);
	assert_true(r.st.timeouts >= 1);
	assert_true(r.f.n_conns >= 2);
	rig_stop(&r);
}

static void test_stalled_server(void **state)
{
	struct rig r;
	int sent = 0;

	rig_start(&r, FAKE_STALL, 100);
	assert_true(run_until(&r.base, 1, is_up, r.s, 3000));
	/* At most 100 in flight; the rest refused at once. */
	for (int i = 0; i < 150; i++)
		if (store_count(r.s, "k", 1, 1, 5, on_total, &r.w) == 0)
			sent++;
	assert_int_equal(sent, 100);
	assert_int_equal(r.w.calls, 0);
	/* All time out together; the link is made again. */
	wait_calls(&r.base, 1, &r.w, 100);
	assert_int_equal(r.w.fails, 100);
	assert_false(store_up(r.s));
	assert_true(run_until(&r.base, 1, is_up, r.s, 3000));
	store_get_stats(r.s, &r.st);
	assert_int_equal(r.st.timeouts, 1);
	assert_int_equal(r.st.refused, 50);
	assert_int_equal(r.st.reconnects, 1);
	assert_int_equal(r.f.n_conns, 2);
	rig_stop(&r);
}

/* A server whose answers are wrong in mode's way: the command fails (or,
 * for an extra answer, the next one does), the link drops and comes back,
 * nothing crashes. */
static void bad_server(enum fake_mode mode)
{
	struct rig r;

	rig_start(&r, mode, 0);
	assert_true(run_until(&r.base, 1, is_up, r.s, 3000));
	assert_int_equal(store_count(r.s, "k", 1, 1, 5, on_total, &r.w), 0);
	wait_calls(&r.base, 1, &r.w, 1);
	if (mode != FAKE_EXTRA)
		assert_int_equal(r.w.fails, 1);
	assert_true(run_until(&r.base, 1, is_down, r.s, 1000) ||
	            r.f.n_conns > 1);
	store_get_stats(r.s, &r.st);
	assert_true(r.st.errors >= 1);
	assert_true(run_until(&r.base, 1, is_up, r.s, 3000));
	rig_stop(&r);
}

static void test_garbage_server(void **state)
{
	bad_server(FAKE_GARBAGE);
}

static void test_extra_answers(void **state)
{
	bad_server(FAKE_EXTRA);
}

static void test_huge_answer(void **state)
{
	bad_server(FAKE_HUGE);
}

int main(void)
{
	const struct CMUnitTest pure[] = {
	    cmocka_unit_test(test_url),
	    cmocka_unit_test(test_password_file),
	    cmocka_unit_test(test_new_refuses),
	};
	const struct CMUnitTest live[] = {
	    cmocka_unit_test(test_count_expiry),
	    cmocka_unit_test(test_two_stores),
	    cmocka_unit_test(test_hold_scan_clear),
	    cmocka_unit_test(test_wrong_password),
	    cmocka_unit_test(test_silent_server),
	    cmocka_unit_test(test_stalled_server),
	    cmocka_unit_test(test_garbage_server),
	    cmocka_unit_test(test_extra_answers),
	    cmocka_unit_test(test_huge_answer),
	    cmocka_unit_test(test_redis_killed),
	};
	int rc = cmocka_run_group_tests_name("store_pure", pure, NULL, NULL);

	return rc | cmocka_run_group_tests_name("store_live", live, group_setup,
	                                        group_teardown);
}
