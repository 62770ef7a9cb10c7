/*
 * The one-shot commands: check, reload, route, preflight, guard. They build
 * what `run` would build and report on it, serving nothing; `route` asks the
 * running easfront first, when there is one, and `guard` only asks it: the
 * guard's tables live there.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "conf/conf.h"
#include "eas/eas.h"
#include "ldap/ldap_src.h"
#include "proxy/dir.h"
#include "daemon/generation.h"
#include "proxy/gen.h"
#include "proxy/routing.h"
#include "site/route.h"
#include "site/sitemap.h"
#include "tls/tls.h"

static void print_err(const char *err)
{
	if (err == NULL || err[0] == '\0')
		return;
	fputs(err, stderr);
	if (err[strlen(err) - 1] != '\n')
		fputc('\n', stderr);
}

/* Binds to the directory and searches once, as the daemon will. */
static int check_directory(const struct conf *c)
{
	const struct conf_ldap *l = c->ldap;
	struct ldap_src_conf sc;
	char *err = NULL;

	dir_src_conf(l, &sc);
	if (ldap_check(&sc, &err) == 0)
		return 0;
	fprintf(stderr, "%s:%u: sitemap.ldap: %s\n", c->path, l->line,
		err ? err : "the directory cannot be used");
	free(err);
	return 1;
}

int daemon_check(const char *conf_path)
{
	struct conf *c = NULL;
	struct sitemap *m = NULL;
	char *err = NULL;
	int rc = 0;

	if (conf_load(conf_path, &c, &err) != 0) {
		print_err(err);
		free(err);
		return 1;
	}
	if (tls_check_certs(c, &err) != 0) {
		print_err(err);
		rc = 1;
	}
	free(err);
	err = NULL;
	if (c->ldap != NULL && check_directory(c) != 0)
		rc = 1;
	if (c->sitemap_file != NULL) {
		m = sitemap_load(c, c->sitemap_file, &err);
		if (m == NULL) {
			print_err(err);
			rc = 1;
		}
		free(err);
	}
	if (rc == 0)
		printf("%s: OK (%u sites, %zu users in the site map)\n",
		       conf_path, c->n_sites, m ? sitemap_users(m) : 0);
	sitemap_free(m);
	conf_free(c);
	return rc;
}

int daemon_reload(const char *conf_path)
{
	struct conf *c = NULL;
	char *err = NULL;
	long pid = 0;
	FILE *f;

	if (conf_load(conf_path, &c, &err) != 0) {
		print_err(err);
		free(err);
		return 1;
	}
	f = fopen(c->pid_file, "r");
	if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
		fprintf(stderr, "%s: no running easfront (%s)\n", c->pid_file,
			f ? "bad pid file" : strerror(errno));
		if (f)
			fclose(f);
		conf_free(c);
		return 1;
	}
	fclose(f);
	conf_free(c);
	if (kill((pid_t)pid, SIGHUP) != 0) {
		fprintf(stderr, "pid %ld: %s\n", pid, strerror(errno));
		return 1;
	}
	printf("reload requested (pid %ld)\n", pid);
	return 0;
}

/* How long a command waits for the running easfront's admin endpoint: a
 * connect on loopback, then an answer that may wait for the directory
 * (sitemap.ldap.timeout_ms, for /route) plus a margin. */
#define ADMIN_CONNECT_MS 2000
#define ADMIN_ANSWER_MARGIN_MS 3000
#define ADMIN_ANSWER_MAX 262144 /* bytes of an answer read at the most */

static void sock_timeout(int fd, int opt, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000,
	                     .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	(void)setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/* Appends sep, then value URL-encoded, to b; nothing when value is NULL. */
static int add_param(struct evbuffer *b, const char *sep, const char *value)
{
	char *enc;

	if (value == NULL)
		return 0;
	enc = evhttp_uriencode(value, -1, 0);
	if (enc == NULL)
		return -1;
	evbuffer_add_printf(b, "%s%s", sep, enc);
	free(enc);
	return 0;
}

/* Connects to addr (an admin.listen address) with the timeouts above.
 * Returns the socket, or -1 with a reason in why. */
static int admin_connect(const char *addr, unsigned answer_ms, char *why,
                         size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *bad = NULL;
	int fd;

	if (conf_addr_parse(addr, &ss, &len, &bad) != 0) {
		snprintf(why, cap, "%s", bad ? bad : "not an address");
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(why, cap, "%s", strerror(errno));
		return -1;
	}
	/* On Linux SO_SNDTIMEO bounds connect() too. */
	sock_timeout(fd, SO_SNDTIMEO, ADMIN_CONNECT_MS);
	sock_timeout(fd, SO_RCVTIMEO, answer_ms);
	if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
		snprintf(why, cap, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Sends the request in req over fd, then reads the whole answer (the server
 * closes after it: Connection: close) into resp, NUL-terminated. Returns 0,
 * or -1 with a reason in why. */
static int admin_exchange(int fd, struct evbuffer *req, struct evbuffer *resp,
                          char *why, size_t cap)
{
	size_t len = evbuffer_get_length(req), off = 0;
	const char *p = (const char *)evbuffer_pullup(req, -1);
	int n;

	while (off < len) {
		ssize_t w = send(fd, p + off, len - off, MSG_NOSIGNAL);

		if (w <= 0)
			goto fail;
		off += (size_t)w;
	}
	while ((n = evbuffer_read(resp, fd, 4096)) > 0)
		if (evbuffer_get_length(resp) > ADMIN_ANSWER_MAX) {
			snprintf(why, cap, "answer too long");
			return -1;
		}
	if (n < 0)
		goto fail;
	evbuffer_add(resp, "", 1);
	return 0;
fail:
	snprintf(why, cap, "%s",
	         errno == EAGAIN ? "no answer in time" : strerror(errno));
	return -1;
}

/* The status of the HTTP answer text and its body (*body, inside text);
 * 0 when text is not one. */
static unsigned admin_status(const char *text, const char **body)
{
	const char *end = strstr(text, "\r\n\r\n");
	unsigned status = 0;

	if (end == NULL || strncmp(text, "HTTP/1.", 7) != 0 ||
	    sscanf(text + 8, " %3u ", &status) != 1)
		return 0;
	*body = end + 4;
	return status;
}

/*
 * One exchange with the easfront answering on c's admin.listen: req holds
 * the start of the request line ("GET /route?user=..."), which this
 * completes; the answer may take wait_ms. Returns the answer's HTTP status
 * with its body NUL-terminated at *body (inside resp), or 0 with the reason
 * nobody answered in why (cap bytes).
 */
static unsigned admin_ask(const struct conf *c, struct evbuffer *req,
                          unsigned wait_ms, struct evbuffer *resp,
                          const char **body, char *why, size_t cap)
{
	unsigned status = 0;
	int fd;

	if (evbuffer_add_printf(req,
	                        " HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n"
	                        "Connection: close\r\n\r\n",
	                        c->admin_listen) < 0) {
		snprintf(why, cap, "out of memory");
		return 0;
	}
	fd = admin_connect(c->admin_listen, wait_ms, why, cap);
	if (fd < 0)
		return 0;
	if (admin_exchange(fd, req, resp, why, cap) == 0) {
		status =
		    admin_status((const char *)evbuffer_pullup(resp, -1), body);
		if (status == 0)
			snprintf(why, cap, "not an HTTP answer");
	}
	close(fd);
	return status;
}

/* The request target of `route`'s GET /route, appended to req. */
static int route_target(struct evbuffer *req, const struct daemon_route_ask *q)
{
	return evbuffer_add_printf(req, "GET /route") < 0 ||
	               add_param(req, "?user=", q->user) != 0 ||
	               add_param(req, "&version=", q->version) != 0 ||
	               add_param(req, "&host=", q->host) != 0 ||
	               add_param(req, "&device_id=", q->device_id) != 0 ||
	               add_param(req, "&device_type=", q->device_type) != 0 ||
	               add_param(req, "&user_agent=", q->user_agent) != 0 ||
	               add_param(req, "&cmd=", q->cmd) != 0
	           ? -1
	           : 0;
}

/*
 * Asks the easfront answering on c's admin.listen for the route of q
 * (GET /route) and writes its answer to standard output as it is. Returns
 * 0, or -1 with the reason nothing usable came in why (cap bytes).
 */
static int route_ask_running(const struct conf *c,
                             const struct daemon_route_ask *q, char *why,
                             size_t cap)
{
	struct evbuffer *req = evbuffer_new(), *resp = evbuffer_new();
	unsigned wait_ms =
	    (c->ldap ? c->ldap->timeout_ms : 0) + ADMIN_ANSWER_MARGIN_MS;
	const char *body = NULL;
	unsigned status = 0;

	snprintf(why, cap, "out of memory");
	if (req != NULL && resp != NULL && route_target(req, q) == 0)
		status = admin_ask(c, req, wait_ms, resp, &body, why, cap);
	if (status == 200)
		fputs(body, stdout);
	else if (status != 0)
		snprintf(why, cap, "answered %u", status);
	if (req != NULL)
		evbuffer_free(req);
	if (resp != NULL)
		evbuffer_free(resp);
	return status == 200 ? 0 : -1;
}

/* What the config alone says, with every site up, the directory asked
 * once from here and the shield's holds unknown. */
static void route_offline(const struct gen *g, const struct daemon_route_ask *q)
{
	struct route_input in;
	struct routing_scratch sc;
	struct route_decision d;
	struct rules_facts f;
	char text[4096], db[LDAP_SRC_DB_MAX] = "";

	routing_input(&in, g, q->user, eas_version_parse(str_from(q->version)),
	              q->host, &sc);
	if (routing_wants_directory(&in))
		in.dir =
		    dir_lookup_once(g->conf->ldap, in.user, db, sizeof(db));
	in.dir_database = db[0] ? db : NULL;
	route_decide(&in, &d);
	route_explain(&in, &d, text, sizeof(text));
	fputs(text, stdout);
	if (text[0] && text[strlen(text) - 1] != '\n')
		fputc('\n', stdout);
	route_explain_autodiscover(&in, text, sizeof(text));
	fputs(text, stdout);
	routing_rules_facts(&f, &in, q->device_id, q->device_type,
	                    q->user_agent, q->cmd);
	routing_guard_explain(g, NULL, &f, text, sizeof(text));
	fputs(text, stdout);
}

int daemon_route(const char *conf_path, const struct daemon_route_ask *q)
{
	struct gen *g;
	char *err = NULL, why[128];

	g = generation_build(NULL, conf_path, 0, &err);
	if (g == NULL) {
		print_err(err);
		free(err);
		return 1;
	}
	if (g->conf->admin_listen == NULL) {
		printf("offline view: no admin.listen: site health is not "
		       "known\n");
	} else if (route_ask_running(g->conf, q, why, sizeof(why)) != 0) {
		printf("offline view: no easfront answers at %s (%s): site "
		       "health is not known\n",
		       g->conf->admin_listen, why);
	} else {
		gen_release(g);
		return 0;
	}
	route_offline(g, q);
	gen_release(g);
	return 0;
}

/* `guard list|clear`: the request target of the operation, appended to
 * req; -1 for an operation there is none of. */
static int guard_target(struct evbuffer *req, const char *op, const char *user,
			const char *device)
{
	if (strcmp(op, "list") == 0)
		return evbuffer_add_printf(req, "GET /guard?format=text") < 0 ||
		               add_param(req, "&user=", user) != 0
		           ? -1
		           : 0;
	if (strcmp(op, "clear") == 0)
		return evbuffer_add_printf(req, "POST /guard/clear") < 0 ||
		               add_param(req, "?user=", user) != 0 ||
		               add_param(req, user ? "&device=" : "?device=",
		                         device) != 0
		           ? -1
		           : 0;
	return -1;
}

/* Prints what the admin answered to `guard op`: the list as it is, or
 * "cleared N" from {"cleared":N,"refilled":M}, a line for the throttle when
 * it filled buckets again or a device was named, and one more when the
 * fleet hears of it only once its store is back. Returns the exit code. */
static int guard_print(const char *op, const char *body, bool device)
{
	const char *n = strstr(body, "\"cleared\":");
	const char *r = strstr(body, "\"refilled\":");
	unsigned long long cleared, refilled = 0;

	if (strcmp(op, "list") == 0) {
		fputs(body, stdout);
		return 0;
	}
	if (n == NULL || sscanf(n + 10, "%llu", &cleared) != 1) {
		fprintf(stderr, "unexpected answer: %.200s\n", body);
		return 1;
	}
	printf("cleared %llu\n", cleared);
	if (r != NULL && sscanf(r + 11, "%llu", &refilled) == 1 &&
	    (refilled > 0 || device))
		printf("refilled %llu throttle bucket(s)\n", refilled);
	if (strstr(body, "\"fleet\":\"when-back\"") != NULL)
		printf("guard.store is down: the other front ends clear when "
		       "it is back\n");
	return 0;
}

/* Asks c's admin endpoint for `guard op` and prints the outcome. Returns
 * the exit code. */
static int guard_ask(const struct conf *c, const char *op, const char *user,
		     const char *device)
{
	struct evbuffer *req = evbuffer_new(), *resp = evbuffer_new();
	const char *body = NULL;
	char why[256] = "out of memory";
	unsigned status = 0;
	int rc = 1;

	if (req != NULL && resp != NULL &&
	    guard_target(req, op, user, device) == 0)
		status = admin_ask(c, req, ADMIN_ANSWER_MARGIN_MS, resp, &body,
		                   why, sizeof(why));
	if (status == 200)
		rc = guard_print(op, body, device != NULL);
	else if (status != 0)
		fprintf(stderr, "easfront at %s answered %u: %s",
		        c->admin_listen, status, body);
	else
		fprintf(stderr,
		        "the guard's tables live in the running easfront; none "
		        "answers at %s: %s\n",
		        c->admin_listen, why);
	if (req != NULL)
		evbuffer_free(req);
	if (resp != NULL)
		evbuffer_free(resp);
	return rc;
}

int daemon_guard(const char *conf_path, const char *op, const char *user,
		 const char *device)
{
	struct conf *c = NULL;
	char *err = NULL;
	int rc = 1;

	/* The config alone, no generation: only admin.listen is needed, the
	 * tables being the running easfront's. */
	if (conf_load(conf_path, &c, &err) != 0)
		print_err(err);
	else if (c->admin_listen == NULL)
		fprintf(stderr,
		        "the guard's tables live in the running easfront; "
		        "%s names no admin.listen to ask it at\n",
		        conf_path);
	else
		rc = guard_ask(c, op, user, device);
	free(err);
	conf_free(c);
	return rc;
}
