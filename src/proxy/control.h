/*
 * The control loop: DNS watches and health checks of every CAS the current
 * generation names. Runs on one event base (the daemon's); internal to
 * proxy/.
 */
#ifndef EF_PROXY_CONTROL_H
#define EF_PROXY_CONTROL_H

struct control;
struct proxy;
struct gen;
struct event_base;

/* Starts watching and checking the CAS of g on base. NULL with *err. */
struct control *control_new(struct proxy *p, struct event_base *base,
			    const struct gen *g, char **err);
/* A new generation: start what it names, stop what it no longer names. */
void control_sync(struct control *c, const struct gen *g);
/* Stops everything; NULL is accepted. */
void control_free(struct control *c);

#endif
