/*
 * easfront's command line: run, check, reload, route, preflight, guard.
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
	      "  easfront route     -c FILE USER [--version V] [--host H]\n"
	      "                     [--device-id ID] [--device-type T] "
	      "[--user-agent UA] [--cmd C]\n"
	      "                               print the decision a request "
	      "would get, and why,\n"
	      "                               with the device rule and the "
	      "holds it would meet\n"
	      "  easfront preflight -c FILE   check names and certificates\n"
	      "  easfront guard     -c FILE list|clear [USER]\n"
	      "                               show or clear the password "
	      "shield's holds (of USER,\n"
	      "                               or everyone) in the running "
	      "easfront; clear also\n"
	      "                               fills their throttle buckets "
	      "again\n"
	      "  easfront guard     -c FILE clear --device-id ID [USER]\n"
	      "                               fill the throttle bucket of "
	      "device ID again\n",
	      stderr);
	return 2;
}

struct args {
	const char *conf;
	const char *pos[2]; /* positional arguments: route's USER; guard's
	                       list|clear and USER */
	struct daemon_route_ask route;
};

/* The slot of option name in a, NULL when it is not one. */
static const char **option(struct args *a, const char *name)
{
	const struct {
		const char *name;
		const char **slot;
	} opts[] = {
	    {"-c", &a->conf},
	    {"--config", &a->conf},
	    {"--version", &a->route.version},
	    {"--host", &a->route.host},
	    {"--device-id", &a->route.device_id},
	    {"--device-type", &a->route.device_type},
	    {"--user-agent", &a->route.user_agent},
	    {"--cmd", &a->route.cmd},
	};

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strcmp(name, opts[i].name) == 0)
			return opts[i].slot;
	return NULL;
}

/* Options may come in any order after the command; at most two positional
 * arguments. */
static int parse_args(int argc, char **argv, struct args *a)
{
	size_t n_pos = 0;

	for (int i = 2; i < argc; i++) {
		const char **slot = option(a, argv[i]);

		if (slot != NULL) {
			if (++i >= argc)
				return -1;
			*slot = argv[i];
		} else if (argv[i][0] == '-' || n_pos == 2) {
			return -1;
		} else {
			a->pos[n_pos++] = argv[i];
		}
	}
	return a->conf != NULL ? 0 : -1;
}

/* `guard list|clear [USER]`, `guard clear --device-id ID [USER]`; route's
 * other options are not guard's. */
static int guard(const struct args *a)
{
	const char *op = a->pos[0];
	const struct daemon_route_ask *r = &a->route;

	if (op == NULL || (strcmp(op, "list") != 0 && strcmp(op, "clear") != 0))
		return usage();
	if (r->version != NULL || r->host != NULL || r->device_type != NULL ||
	    r->user_agent != NULL || r->cmd != NULL ||
	    (r->device_id != NULL && strcmp(op, "clear") != 0))
		return usage();
	return daemon_guard(a->conf, op, a->pos[1], r->device_id);
}

int main(int argc, char **argv)
{
	struct args a = {0};
	const char *cmd = argc > 1 ? argv[1] : "";

	if (parse_args(argc, argv, &a) != 0)
		return usage();
	if (strcmp(cmd, "guard") == 0)
		return guard(&a);
	if (a.pos[1] != NULL)
		return usage();
	a.route.user = a.pos[0];
	if (strcmp(cmd, "run") == 0 && a.route.user == NULL)
		return daemon_run(a.conf);
	if (strcmp(cmd, "check") == 0 && a.route.user == NULL)
		return daemon_check(a.conf);
	if (strcmp(cmd, "reload") == 0 && a.route.user == NULL)
		return daemon_reload(a.conf);
	if (strcmp(cmd, "preflight") == 0 && a.route.user == NULL)
		return daemon_preflight(a.conf);
	if (strcmp(cmd, "route") == 0 && a.route.user != NULL)
		return daemon_route(a.conf, &a.route);
	return usage();
}
