/*
 * The process: serving (`run`) and the one-shot commands of the command line.
 * Each returns the process exit code.
 */
#ifndef EF_DAEMON_DAEMON_H
#define EF_DAEMON_DAEMON_H

/* Serves in the foreground until SIGTERM/SIGINT. */
int daemon_run(const char *conf_path);
/* Validates config, site map and certificates; prints FILE:LINE: reason. */
int daemon_check(const char *conf_path);
/* Signals the running easfront (pid_file of the config) to reload. */
int daemon_reload(const char *conf_path);
/* What `route` asks about: the user and the facts of a request; NULL where
 * the command line gives none. */
struct daemon_route_ask {
	const char *user;
	const char *version;     /* "14.1" */
	const char *host;        /* the name the client used */
	const char *device_id;   /* DeviceId */
	const char *device_type; /* DeviceType */
	const char *user_agent;  /* User-Agent */
	const char *cmd;         /* "Sync", "OPTIONS"... */
};

/* Prints the decision a request q would get, and why, with the guard's
 * word on it: from the running easfront's admin endpoint when one answers,
 * else from the config alone. */
int daemon_route(const char *conf_path, const struct daemon_route_ask *q);
/* `guard list|clear [USER] [--device-id ID]` (op "list" or "clear"; user
 * and device NULL: everyone; device for clear only): asks the running
 * easfront's admin endpoint, where the tables live, and prints its answer;
 * 1 with the reason on stderr when none answers. */
int daemon_guard(const char *conf_path, const char *op, const char *user,
		 const char *device);
/* Checks the namespace: names resolve, served names are on a certificate. */
int daemon_preflight(const char *conf_path);

#endif
