/*
 * easfront's command line: run, check, reload, route, preflight.
 */
#include <stdio.h>
#include <string.h>

#include "daemon/daemon.h"

static int usage(void)
{
	fputs("usage:\n"
	      "  easfront run       -c FILE   serve in the foreground\n"
	      "  easfront check     -c FILE   validate config, site map and "
	      "certificates\n"
	      "  easfront reload    -c FILE   ask the running easfront to "
	      "reload\n"
	      "  easfront route     -c FILE USER [--version V] [--host H] "
	      "[--cmd C]\n"
	      "                               print the decision a request "
	      "would get, and why\n"
	      "  easfront preflight -c FILE   check names and certificates\n",
	      stderr);
	return 2;
}

struct args {
	const char *conf;
	const char *user;
	const char *version;
	const char *host;
	const char *cmd;
};

/* Options may come in any order after the command; one positional argument
 * (the user of `route`). */
static int parse_args(int argc, char **argv, struct args *a)
{
	for (int i = 2; i < argc; i++) {
		const char **slot = NULL;

		if (strcmp(argv[i], "-c") == 0 ||
		    strcmp(argv[i], "--config") == 0)
			slot = &a->conf;
		else if (strcmp(argv[i], "--version") == 0)
			slot = &a->version;
		else if (strcmp(argv[i], "--host") == 0)
			slot = &a->host;
		else if (strcmp(argv[i], "--cmd") == 0)
			slot = &a->cmd;
		if (slot != NULL) {
			if (++i >= argc)
				return -1;
			*slot = argv[i];
		} else if (argv[i][0] == '-' || a->user != NULL) {
			return -1;
		} else {
			a->user = argv[i];
		}
	}
	return a->conf != NULL ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct args a = {0};
	const char *cmd = argc > 1 ? argv[1] : "";

	if (parse_args(argc, argv, &a) != 0)
		return usage();
	if (strcmp(cmd, "run") == 0 && a.user == NULL)
		return daemon_run(a.conf);
	if (strcmp(cmd, "check") == 0 && a.user == NULL)
		return daemon_check(a.conf);
	if (strcmp(cmd, "reload") == 0 && a.user == NULL)
		return daemon_reload(a.conf);
	if (strcmp(cmd, "preflight") == 0 && a.user == NULL)
		return daemon_preflight(a.conf);
	if (strcmp(cmd, "route") == 0 && a.user != NULL)
		return daemon_route(a.conf, a.user, a.version, a.host);
	return usage();
}
