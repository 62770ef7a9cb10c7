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
/* Prints the decision a request of user would get, and why. */
int daemon_route(const char *conf_path, const char *user, const char *version,
		 const char *host);
/* Checks the namespace: names resolve, served names are on a certificate. */
int daemon_preflight(const char *conf_path);

#endif
