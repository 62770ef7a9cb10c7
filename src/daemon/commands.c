/*
 * The one-shot commands: check, reload, route, preflight. They build what
 * `run` would build and report on it, serving nothing; `route` asks the
 * running easfront first, when there is one.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <signal.h>
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

/* How long `route` waits for the running easfront: a connect on loopback,
 * then an answer that may wait for the directory (sitemap.ldap.timeout_ms)
 * plus a margin. */
#define ROUTE_CONNECT_MS 2000
#define ROUTE_ANSWER_MARGIN_MS 3000
#define ROUTE_ANSWER_MAX 65536 /* bytes of an answer read at the most */

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
static int route_connect(const char *addr, unsigned answer_ms, char *why,
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
	sock_timeout(fd, SO_SNDTIMEO, ROUTE_CONNECT_MS);
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
static int route_exchange(int fd, struct evbuffer *req, struct evbuffer *resp,
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
		if (evbuffer_get_length(resp) > ROUTE_ANSWER_MAX) {
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

/*
 * Asks the easfront answering on c's admin.listen for the route of user
 * (GET /route) and writes its answer to standard output as it is. Returns
 * 0, or -1 with the reason nothing usable came in why (cap bytes).
 */
static int route_ask_running(const struct conf *c, const char *user,
                             const char *version, const char *host, char *why,
                             size_t cap)
{
	struct evbuffer *req = evbuffer_new(), *resp = evbuffer_new();
	unsigned wait_ms =
	    (c->ldap ? c->ldap->timeout_ms : 0) + ROUTE_ANSWER_MARGIN_MS;
	struct evbuffer_ptr end;
	const char *text;
	int fd = -1, rc = -1;

	snprintf(why, cap, "out of memory");
	if (req == NULL || resp == NULL ||
	    evbuffer_add_printf(req, "GET /route") < 0 ||
	    add_param(req, "?user=", user) != 0 ||
	    add_param(req, "&version=", version) != 0 ||
	    add_param(req, "&host=", host) != 0 ||
	    evbuffer_add_printf(req,
	                        " HTTP/1.1\r\nHost: %s\r\n"
	                        "Connection: close\r\n\r\n",
	                        c->admin_listen) < 0)
		goto done;
	fd = route_connect(c->admin_listen, wait_ms, why, cap);
	if (fd < 0 || route_exchange(fd, req, resp, why, cap) != 0)
		goto done;
	end = evbuffer_search(resp, "\r\n\r\n", 4, NULL);
	text = (const char *)evbuffer_pullup(resp, -1);
	if (end.pos < 0 || strncmp(text, "HTTP/1.", 7) != 0 ||
	    strncmp(text + 8, " 200 ", 5) != 0) {
		snprintf(why, cap, "answered %.12s", text);
		goto done;
	}
	fputs(text + end.pos + 4, stdout);
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	if (req != NULL)
		evbuffer_free(req);
	if (resp != NULL)
		evbuffer_free(resp);
	return rc;
}

/* What the config alone says, with every site up and the directory asked
 * once from here. */
static void route_offline(const struct gen *g, const char *user,
                          const char *version, const char *host)
{
	struct route_input in;
	struct routing_scratch sc;
	struct route_decision d;
	char text[4096], db[LDAP_SRC_DB_MAX] = "";

	routing_input(&in, g, user, eas_version_parse(str_from(version)), host,
	              &sc);
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
}

int daemon_route(const char *conf_path, const char *user, const char *version,
                 const char *host)
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
	} else if (route_ask_running(g->conf, user, version, host, why,
	                             sizeof(why)) != 0) {
		printf("offline view: no easfront answers at %s (%s): site "
		       "health is not known\n",
		       g->conf->admin_listen, why);
	} else {
		gen_release(g);
		return 0;
	}
	route_offline(g, user, version, host);
	gen_release(g);
	return 0;
}
