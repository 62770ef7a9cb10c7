/*
 * The control loop: DNS watches and health checks of every CAS entry of a
 * registry that is in use (cas_entry_configure). Runs on one event base
 * (the daemon's); workers only read what it writes.
 */
#ifndef EF_UPSTREAM_CONTROL_H
#define EF_UPSTREAM_CONTROL_H

#include <openssl/ssl.h>

struct control;
struct cas_registry;
struct event_base;

/* A control loop over reg (not owned; it must outlive the loop) on base,
 * resolving names with dns_servers (NULL: /etc/resolv.conf). Nothing is
 * watched or checked before control_sync. NULL with *err. */
struct control *control_new(struct cas_registry *reg, struct event_base *base,
			    char *const *dns_servers, unsigned n_dns_servers,
			    char **err);
/* The entries in use changed (a new generation): starts watching and
 * checking those in use, over ctx (a reference is taken) with DNS answers
 * trusted between min_ttl and max_ttl seconds, and stops the others. */
void control_sync(struct control *c, SSL_CTX *ctx, unsigned min_ttl,
		  unsigned max_ttl);
/* Stops everything; NULL is accepted. */
void control_free(struct control *c);

#endif
