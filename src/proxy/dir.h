/*
 * The directory (sitemap.ldap) as seen by the data path: one cache per
 * process, one asynchronous client per worker, and the session's wait for
 * an answer. A lookup never blocks the loop: a session whose user is not
 * cached waits in TXN_ROUTE and is dispatched again when the answer
 * comes.
 */
#ifndef EF_PROXY_DIR_H
#define EF_PROXY_DIR_H

#include <stdbool.h>
#include <stddef.h>

#include "site/route.h"

struct proxy;
struct worker;
struct session;
struct gen;
struct ldap_cache;

/* Creates the process's cache when g uses a directory and sets its TTLs;
 * main thread, before the workers see g. */
void dir_publish(struct proxy *p, const struct gen *g);

/* Makes w's client match its current generation (a new one when the
 * directory settings changed); sessions waiting on a dropped client are
 * dispatched again as "directory down". Worker thread. */
void dir_worker_sync(struct worker *w);

/* Frees w's client. */
void dir_worker_free(struct worker *w);

/*
 * Asks the directory about the normalised user key for s. Returns true with
 * *dir and *db (valid until the request ends) set when the route can be
 * decided now; false when s now waits for the answer (TXN_ROUTE).
 */
bool dir_lookup(struct session *s, const char *key, enum route_dir *dir,
		const char **db);

/* Forgets the answer a session carried into its re-dispatch; cancels a
 * pending lookup. */
void dir_session_end(struct session *s);

struct conf_ldap;
struct ldap_src_conf;

/* The ldap library's view of sitemap.ldap; strings point into c. */
void dir_src_conf(const struct conf_ldap *c, struct ldap_src_conf *s);

/* Asks the directory once, blocking (commands only, never a worker):
 * what it says of the user key, with the database in db. */
enum route_dir dir_lookup_once(const struct conf_ldap *l, const char *key,
			       char *db, size_t cap);

/* The process's cache, or NULL without a directory (admin: counters and
 * flushes). */
struct ldap_cache *dir_cache(struct proxy *p);

#endif
