/*
 * The operators' endpoint on admin.listen (loopback by default):
 * GET / (the status page), GET /metrics (Prometheus text), GET /status
 * (JSON, what the page draws), POST /reload,
 * GET /route?user=...&version=...&host=...&device_id=...&device_type=...
 * &user_agent=...&cmd=..., POST /cache/flush[?user=...], and the guard's
 * tables: GET /guard[?user=...][&format=text] (JSON, or the text
 * `easfront guard list` prints), POST /guard/clear[?user=...]. Runs on the
 * daemon's event base.
 */
#ifndef EF_ADMIN_ADMIN_H
#define EF_ADMIN_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct event_base;
struct proxy;

/* What the daemon shares with the endpoint; owned by the daemon, read and
 * called on the same thread. */
struct admin_hooks {
	/* Reloads; returns 0, or -1 with *err (malloc'd FILE:LINE lines). */
	int (*reload)(void *arg, char **err);
	void *arg;
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	time_t started;
	time_t last_reload;	  /* when the last reload was asked; 0: none */
	bool last_reload_ok;	  /* its outcome */
	char last_reload_error[512]; /* why it was refused (first lines) */
};

struct admin;

/* Listens on address ("IP:PORT") and serves p's figures. NULL with *err. */
struct admin *admin_new(struct event_base *base, const char *address,
			struct proxy *p, struct admin_hooks *hooks, char **err);
/* Stops listening; NULL is accepted. */
void admin_free(struct admin *a);

#endif
