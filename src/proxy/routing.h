/*
 * The one builder of the routing decision's input (DESIGN.md, "Rules that
 * keep the house simple"): the data path, the admin's GET /route and
 * `easfront route` all fill their struct route_input here, from a
 * generation and the facts of a request, so the same facts always give the
 * same decision and the same explanation.
 *
 * The directory's word is the one part each gets its own way: a session
 * waits for its worker's client (dir.c), the admin asks through a
 * routing_dir on its own loop (below), a command asks once and blocks
 * (dir_lookup_once). All of them read the answer through routing_dir_of().
 */
#ifndef EF_PROXY_ROUTING_H
#define EF_PROXY_ROUTING_H

#include <stdbool.h>
#include <stddef.h>

#include "guard/rules.h"
#include "ldap/ldap_src.h"
#include "site/route.h"

struct event_base;
struct gen;
struct proxy;

/* Sites whose health routing sees: with more, every site counts as up. */
#define ROUTING_MAX_SITES 64

/* The storage a route_input points into; the caller's, and it must outlive
 * the input. */
struct routing_scratch {
	char key[256];                         /* the normalised user */
	unsigned char down[ROUTING_MAX_SITES]; /* 1: every CAS of site i is
	                                          down */
};

/*
 * Fills *in from g (conf, site map, and each site's live health from
 * gen_site_down: a generation of a command, which watches no CAS, has every
 * site up), the user as the request named it (normalised here with
 * sitemap_normalise; NULL, "" or a name that does not normalise: no user),
 * the EAS version x 10 (0 unknown) and the host the client used (NULL or
 * "": none). The directory fields stay ROUTE_DIR_NONE for the caller to
 * set. in points into g and sc afterwards. Reads g only.
 */
void routing_input(struct route_input *in, const struct gen *g,
                   const char *user, unsigned version, const char *host,
                   struct routing_scratch *sc);

/* True when the directory has a word on in: there is one (sitemap.ldap) and
 * in names a user. A user an operator's line in the map pins keeps the
 * route that line gives whatever the directory says (route_decide), so the
 * data path need not wait for it there; the explanation still says what the
 * directory answered. */
bool routing_wants_directory(const struct route_input *in);

/* True when the directory's word can change the decision on in: it has one
 * (routing_wants_directory) and no user line of the map pins the user. A
 * request waits for the directory only then. */
bool routing_needs_directory(const struct route_input *in);

/*
 * The guard's word on a request (DESIGN.md "Edge protection"), in the one
 * builder too so that `easfront route` and the admin's /route say the same.
 */

/* Fills *f for a request of in with these header and query fields (NULL:
 * the request has none); the user is in's, normalised. f points into in
 * and the strings afterwards. */
void routing_rules_facts(struct rules_facts *f, const struct route_input *in,
                         const char *device_id, const char *device_type,
                         const char *user_agent, const char *cmd);

/*
 * Writes to out (cap bytes, NUL-terminated when cap > 0) the "guard:" lines
 * of a request with facts f: the device rule of g it meets first (with its
 * FILE:LINE), and what the password shield of p holds for f's user now
 * (p NULL: a command without a running easfront, which cannot know the
 * holds). Never a password or a hash of one: users only. Returns the
 * length of the whole text (snprintf semantics).
 */
size_t routing_guard_explain(const struct gen *g, struct proxy *p,
                             const struct rules_facts *f, char *out,
                             size_t cap);

/* What a directory answer means to the routing decision. */
enum route_dir routing_dir_of(enum ldap_answer a);

/*
 * The directory as asked from one event loop outside the workers (the
 * admin's): an asynchronous client on that loop, answering from the
 * process's shared cache first, exactly as a worker's client answers a
 * session. The client follows the generation asked about and is made again
 * when it changes.
 */
struct routing_dir;

/* The answer of a routing_dir_ask() that had to wait: db is the database
 * for ROUTE_DIR_FOUND and ROUTE_DIR_STALE (valid during the call only),
 * NULL otherwise. */
typedef void (*routing_dir_cb)(enum route_dir dir, const char *db, void *arg);

/* A routing_dir on base (not owned; it must outlive the routing_dir) that
 * uses p's directory cache. NULL when out of memory. */
struct routing_dir *routing_dir_new(struct event_base *base, struct proxy *p);

/* Frees rd; every ask still waiting is answered ROUTE_DIR_DOWN first (as a
 * worker answers its sessions when it drops its client). Accepts NULL. */
void routing_dir_free(struct routing_dir *rd);

/*
 * Asks the directory of generation g about the normalised user key.
 * Returns 1 when answered at once (a fresh cached answer; the cache's
 * fallback while the directory is known to be down; ROUTE_DIR_DOWN when
 * there is no client to ask; ROUTE_DIR_NONE when g has no directory), with
 * *dir set and the database in db (cap bytes; "" unless FOUND or STALE).
 * Returns 0 when cb(arg) will bring the answer from the loop, never from
 * inside this call, within about sitemap.ldap.timeout_ms.
 */
int routing_dir_ask(struct routing_dir *rd, const struct gen *g,
                    const char *key, routing_dir_cb cb, void *arg,
                    enum route_dir *dir, char *db, size_t cap);

#endif
