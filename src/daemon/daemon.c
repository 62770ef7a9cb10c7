/*
 * `easfront run`: start-up, signals, reloads, stop. The only part that
 * touches process state (signals, pid file, privileges).
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin/admin.h"
#include "conf/conf.h"
#include "eas/autodiscover.h"
#include "core/log.h"
#include "daemon/generation.h"
#include "proxy/accesslog.h"
#include "proxy/gen.h"
#include "proxy/proxy.h"

struct daemon {
	const char *conf_path;
	struct proxy *proxy;
	struct event_base *base;
	unsigned next_gen;
	unsigned drain;		/* seconds, from the live config */
	char *pid_file;		/* owned */
	char *access_path;	/* owned; NULL: no access log */
	char *admin_listen;	/* owned; the address admin is bound to */
	struct admin *admin;	/* owned; NULL: no admin endpoint */
	struct admin_hooks hooks;
};

/* systemd's readiness protocol, spoken directly: one datagram to
 * $NOTIFY_SOCKET. Without systemd there is no socket and nothing to do. */
static void notify(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len;
	int fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return;
	len = strlen(path);
	if (len >= sizeof(sun.sun_path))
		return;
	memcpy(sun.sun_path, path, len);
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&sun,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) <
	    0)
		log_warn("sd_notify");
	close(fd);
}

static void print_errors(const char *err)
{
	/* Each line already reads "FILE:LINE: reason". */
	if (err != NULL)
		fprintf(stderr, "%s%s", err,
			err[0] && err[strlen(err) - 1] == '\n' ? "" : "\n");
}

static void log_errors(const char *what, const char *err)
{
	const char *p = err;

	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);

		log_warnx("%s: %.*s", what, n, p);
		p = nl ? nl + 1 : NULL;
	}
}

static int open_access_log(const char *path)
{
	int fd;

	if (path == NULL)
		return -1;
	if (strcmp(path, "-") == 0)
		return dup(STDOUT_FILENO);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		log_warn("access log %s", path);
	return fd;
}

static void reopen_access_log(struct daemon *d)
{
	int fd = open_access_log(d->access_path);
	int old = accesslog_get_fd();

	accesslog_set_fd(fd);
	/* A line being written to the old fd at this instant is lost at
	 * worst; logrotate's copy is complete up to here. */
	if (old >= 0)
		close(old);
}

static void apply_conf(struct daemon *d, const struct conf *c)
{
	int lvl = c->log_level ? log_level_parse(c->log_level) : LOG_L_INFO;

	log_init(STDERR_FILENO, lvl < 0 ? LOG_L_INFO : (enum log_level)lvl);
	d->drain = c->timeouts.drain;
	free(d->access_path);
	d->access_path = c->log_access ? strdup(c->log_access) : NULL;
}

static void admin_update(struct daemon *d, const struct conf *c);

struct build_job {
	struct daemon *d;
	struct gen *g;
	char *err;
};

/* Loading a large site map takes a fraction of a second of CPU; on a
 * machine where workers are busy (or pinned to the same core) that time
 * must come out of idle, not out of requests: the build runs under
 * SCHED_IDLE (a worker that wakes takes the core at once; nice 19 alone
 * still let the build finish its slice first, ~1 ms on p99), else at
 * nice 19. */
static void *build_thread(void *arg)
{
	struct build_job *j = arg;
	struct sched_param sp = {0};

	if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0 &&
	    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) != 0)
		log_debug("reload: cannot lower the build's priority");
	j->g = generation_build(j->d->proxy, j->d->conf_path, j->d->next_gen,
				&j->err);
	return NULL;
}

static struct gen *build_generation(struct daemon *d, char **err)
{
	struct build_job j = {.d = d};
	pthread_t t;

	if (pthread_create(&t, NULL, build_thread, &j) != 0)
		return generation_build(d->proxy, d->conf_path, d->next_gen,
					err);
	pthread_join(t, NULL);
	*err = j.err;
	return j.g;
}

/* Listening sockets are bound once, as root, before privileges are
 * dropped: a reload keeps them, and a changed `listen` needs a restart. */
static void warn_listen_changes(struct daemon *d, const struct conf *next)
{
	struct gen *cur = proxy_gen_hold(d->proxy);
	bool same = cur != NULL && cur->conf->n_listen == next->n_listen;

	for (unsigned i = 0; same && i < next->n_listen; i++)
		same = strcmp(cur->conf->listen[i].address,
			      next->listen[i].address) == 0;
	if (!same)
		log_warnx("%s: listen addresses changed; they take effect at "
			  "the next restart",
			  next->path);
	gen_release(cur);
}

/* Builds and publishes a new generation; a refused one leaves the old one
 * serving. Returns 0, or -1 with *err (the FILE:LINE: reason lines). */
static int reload_apply(void *arg, char **err)
{
	struct daemon *d = arg;
	struct gen *g;

	notify("RELOADING=1");
	g = build_generation(d, err);
	d->hooks.last_reload = time(NULL);
	d->hooks.last_reload_ok = g != NULL;
	snprintf(d->hooks.last_reload_error,
		 sizeof(d->hooks.last_reload_error), "%s",
		 g == NULL && *err != NULL ? *err : "");
	if (g == NULL) {
		log_errors("reload refused", *err);
		d->hooks.reloads_failed++;
		notify("READY=1");
		return -1;
	}
	d->next_gen++;
	warn_listen_changes(d, g->conf);
	apply_conf(d, g->conf);
	reopen_access_log(d);
	admin_update(d, g->conf);
	log_info("reloaded %s: generation %u", d->conf_path, g->id);
	proxy_publish(d->proxy, g);
	d->hooks.reloads_ok++;
	notify("READY=1");
	return 0;
}

static void reload(struct daemon *d)
{
	char *err = NULL;

	reload_apply(d, &err);
	free(err);
}

/* (Re)opens the admin endpoint when admin.listen is new or changed; an
 * unchanged one keeps its socket. */
static void admin_update(struct daemon *d, const struct conf *c)
{
	char *err = NULL;

	if (d->admin_listen != NULL && c->admin_listen != NULL &&
	    strcmp(d->admin_listen, c->admin_listen) == 0)
		return;
	/* The health checks go on: they belong to the proxy, not to this
	 * endpoint. */
	admin_free(d->admin);
	d->admin = NULL;
	free(d->admin_listen);
	d->admin_listen = NULL;
	if (c->admin_listen == NULL || d->base == NULL)
		return;
	d->admin = admin_new(d->base, c->admin_listen, d->proxy, &d->hooks,
			     &err);
	if (d->admin == NULL) {
		log_warnx("%s", err ? err : "admin endpoint failed");
		free(err);
		return;
	}
	d->admin_listen = strdup(c->admin_listen);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	switch (sig) {
	case SIGHUP:
		reload(d);
		break;
	case SIGUSR1:
		reopen_access_log(d);
		break;
	default:
		log_info("signal %d: stopping", (int)sig);
		event_base_loopexit(d->base, NULL);
		break;
	}
}

static int write_pid_file(const char *path)
{
	char buf[32];
	int fd, n;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_warn("pid file %s", path);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n)
		log_warn("pid file %s", path);
	close(fd);
	return 0;
}

static int drop_privileges(const char *user)
{
	struct passwd *pw;

	if (user == NULL)
		return 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		log_warnx("user %s does not exist", user);
		return -1;
	}
	if (setgroups(1, &pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		log_warn("cannot become %s", user);
		return -1;
	}
	return 0;
}

/* Every connection costs a socket or two; ask for enough descriptors and
 * say so when the system gives less than the configured cap needs. */
static void raise_fd_limit(const struct conf *c)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)c->limits.connections * 2 + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* Information, not a fault: the caps still hold, they are just met
	 * earlier. */
	if (rl.rlim_cur < want)
		log_info("file descriptor limit %llu is below the %llu that "
			  "limits.connections needs",
			  (unsigned long long)rl.rlim_cur,
			  (unsigned long long)want);
}

static unsigned worker_count(const struct conf *c)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (c->workers > 0)
		return c->workers;
	return n > 0 ? (unsigned)n : 1;
}

static int serve(struct daemon *d)
{
	static const int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
	struct event *ev[4] = {0};
	int rc = 0;

	d->base = event_base_new();
	if (d->base == NULL)
		return 1;
	for (int i = 0; i < 4; i++) {
		ev[i] = evsignal_new(d->base, sigs[i], signal_cb, d);
		if (ev[i] == NULL || event_add(ev[i], NULL) != 0)
			rc = 1;
	}
	if (rc == 0) {
		struct gen *g = proxy_gen_hold(d->proxy);
		char *err = NULL;

		if (g != NULL)
			admin_update(d, g->conf);
		gen_release(g);
		if (proxy_control_start(d->proxy, d->base, &err) != 0) {
			log_warnx("health checks: %s", err ? err : "failed");
			free(err);
		}
		notify("READY=1");
		event_base_dispatch(d->base);
		notify("STOPPING=1");
	}
	for (int i = 0; i < 4; i++)
		if (ev[i] != NULL)
			event_free(ev[i]);
	proxy_control_stop(d->proxy);
	admin_free(d->admin);
	d->admin = NULL;
	free(d->admin_listen);
	d->admin_listen = NULL;
	event_base_free(d->base);
	d->base = NULL;
	return rc;
}

int daemon_run(const char *conf_path)
{
	struct daemon d = {.conf_path = conf_path, .next_gen = 1};
	struct conf *c = NULL;
	char *err = NULL;
	struct gen *g = NULL;
	unsigned workers;
	int rc = 1;

	d.hooks.reload = reload_apply;
	d.hooks.arg = &d;
	d.hooks.started = time(NULL);

	signal(SIGPIPE, SIG_IGN);
	/* libxml2's globals, once, before any worker parses Autodiscover. */
	ad_init();
	/* The worker count must be known before the proxy that gives CAS
	 * targets their pool ids exists, so the config is read once first. */
	if (conf_load(conf_path, &c, &err) != 0) {
		print_errors(err);
		free(err);
		return 1;
	}
	workers = worker_count(c);
	raise_fd_limit(c);
	conf_free(c);
	d.proxy = proxy_new(workers, &err);
	if (d.proxy != NULL)
		g = generation_build(d.proxy, conf_path, d.next_gen++, &err);
	if (g == NULL) {
		print_errors(err);
		free(err);
		proxy_free(d.proxy);
		return 1;
	}
	apply_conf(&d, g->conf);
	if (proxy_listen(d.proxy, g->conf, &err) != 0)
		goto out;
	d.pid_file = strdup(g->conf->pid_file);
	reopen_access_log(&d);
	if (drop_privileges(g->conf->user) != 0)
		goto out;
	if (d.pid_file != NULL)
		write_pid_file(d.pid_file);
	proxy_publish(d.proxy, g);
	g = NULL;
	if (proxy_start(d.proxy, &err) != 0)
		goto out;
	log_info("easfront serving with %u workers", workers);
	rc = serve(&d);
	proxy_stop(d.proxy, d.drain);
	log_info("stopped");
out:
	if (err != NULL) {
		log_errors("start", err);
		free(err);
	}
	gen_release(g);
	proxy_free(d.proxy);
	if (d.pid_file != NULL)
		unlink(d.pid_file);
	free(d.pid_file);
	free(d.access_path);
	if (accesslog_get_fd() >= 0)
		close(accesslog_get_fd());
	accesslog_set_fd(-1);
	return rc;
}
