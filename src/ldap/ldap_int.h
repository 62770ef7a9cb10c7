/*
 * What ldap_conn.c (connections, made blocking in a helper thread) and
 * ldap_client.c (the asynchronous client on the event loop) share.
 */
#ifndef EF_LDAP_LDAP_INT_H
#define EF_LDAP_LDAP_INT_H

#include "ldap/ldap_src.h"

#include <ldap.h>

#define LDAP_SRC_TIMEOUT_MS 2000
#define LDAP_SRC_CONNECT_TIMEOUT_MS 5000
#define LDAP_SRC_INFLIGHT 64
#define LDAP_SRC_INFLIGHT_MAX 4096
#define LDAP_SRC_QUEUE 4096
#define LDAP_SRC_QUEUE_MAX 1000000
#define LDAP_SRC_BACKOFF_MS 250 /* first retry after a failed attempt */
#define LDAP_SRC_BACKOFF_MAX_MS 30000
#define LDAP_SRC_ERR_MAX 512

struct ldap_attempt;

/* Returns a deep copy of c with the defaults applied (timeouts, bounds,
 * attribute), or NULL when out of memory. Free it with ldap_conf_free(). */
struct ldap_src_conf *ldap_conf_dup(const struct ldap_src_conf *c);

/* Frees a copy made by ldap_conf_dup(). Accepts NULL. */
void ldap_conf_free(struct ldap_src_conf *c);

/* Opens a bound connection, blocking: the URIs of c in turn from index
 * first, each connected, upgraded by StartTLS when asked and bound. Bounded
 * by c->connect_timeout_ms per URI and step. Returns the handle (the caller
 * unbinds it) and the URI's index in *uri, or NULL with the reason of the
 * last failure in err (cap bytes). */
LDAP *ldap_conn_open(const struct ldap_src_conf *c, unsigned first,
                     unsigned *uri, char *err, size_t cap);

/* Starts ldap_conn_open(c, first) in a detached helper thread. Returns the
 * attempt, whose ldap_attempt_fd() becomes readable when it is done, or NULL
 * (no memory, no thread). The caller then calls exactly one of
 * ldap_attempt_finish() (after the fd became readable) or
 * ldap_attempt_abandon(). */
struct ldap_attempt *ldap_attempt_start(const struct ldap_src_conf *c,
                                        unsigned first);

/* The descriptor that becomes readable once the attempt is done. */
int ldap_attempt_fd(const struct ldap_attempt *a);

/* Takes the outcome of a finished attempt and frees it: the bound handle
 * (the caller owns it) with its URI index in *uri, or NULL with the reason
 * in err (cap bytes). */
LDAP *ldap_attempt_finish(struct ldap_attempt *a, unsigned *uri, char *err,
                          size_t cap);

/* Gives a possibly unfinished attempt up: whichever of the caller and the
 * thread comes last frees it (and unbinds a handle it made). Accepts NULL. */
void ldap_attempt_abandon(struct ldap_attempt *a);

/* Writes "what: LDAP error (diagnostic)" for rc on ld (may be NULL). */
void ldap_conn_err(LDAP *ld, int rc, const char *what, char *err, size_t cap);

#endif
