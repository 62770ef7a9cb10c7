/*
 * The directory as a source of the site map: a user's home mailbox database
 * read over LDAP, so that every front end shares one source of truth.
 *
 * Three layers, lowest first:
 *  - pure helpers: the search filter built from a template with every
 *    substituted value escaped (RFC 4515), and the database name taken from
 *    the first RDN of the home database DN (RFC 4514). No I/O, fuzzed.
 *  - struct ldap_cache: one per process, shared by every worker thread
 *    (internally locked): user -> database or "no such user", with a TTL for
 *    each kind of answer, LRU-bounded, and the last answer past its TTL kept
 *    for when the directory cannot be reached.
 *  - struct ldap_client: one per worker event base, used from that base's
 *    thread only. Its LDAP connection is opened, upgraded with StartTLS and
 *    bound by a short-lived helper thread (libldap's connect, TLS handshake
 *    and bind block), then handed to the event loop, which only ever calls
 *    libldap's non-blocking paths: ldap_search_ext() and ldap_result() with a
 *    zero timeout on a non-blocking socket watched by libevent.
 *
 * The symbols keep libldap's `ldap_` prefix for the part's name; none of
 * them exists in libldap 2.5 (a CTest test checks it).
 */
#ifndef EF_LDAP_LDAP_SRC_H
#define EF_LDAP_LDAP_SRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

#define LDAP_SRC_USER_MAX 256    /* bytes of a user name, NUL excluded */
#define LDAP_SRC_DB_MAX 256      /* bytes of a database name, NUL included */
#define LDAP_SRC_FILTER_MAX 2048 /* bytes of a built filter, NUL included */
#define LDAP_SRC_ATTRIBUTE "homeMDB"
/* What tells a mailbox moved to Exchange Online (EAS.md 10). */
#define LDAP_SRC_ATTR_TYPE "msExchRecipientTypeDetails"
#define LDAP_SRC_ATTR_REMOTE "msExchRemoteRecipientType"
#define LDAP_SRC_ATTR_TARGET "targetAddress"

/* Where and how to ask the directory. Strings and the uris array belong to
 * the caller; ldap_client_new() and ldap_check() copy what they keep. */
struct ldap_src_conf {
	char **uris; /* ldap://, ldaps:// or ldapi:// URIs, tried in
	                order from the last one that worked */
	unsigned n_uris;
	bool starttls;       /* ldap:// URIs must be upgraded by StartTLS; a
	                        failed upgrade is a failed connection */
	char *ca_file;       /* PEM CAs that sign the server; NULL: libldap's
	                        default store. Certificates are always verified */
	char *cert_file;     /* client certificate and key (PEM) for SASL */
	char *key_file;      /* EXTERNAL over TLS; NULL: none */
	char *bind_dn;       /* simple bind DN; NULL: anonymous */
	char *password_file; /* first line is the bind password; re-read at
	                        every connection, so it may be rotated */
	bool sasl_external;  /* SASL EXTERNAL instead of a simple bind */
	char *base;          /* search base (subtree) */
	char *filter;        /* template: %u user, %s the part before '@',
	                        %% a percent sign */
	char *attribute;     /* the home database DN; NULL: homeMDB */
	unsigned timeout_ms; /* one lookup, queueing included; 0: 2000 */
	unsigned connect_timeout_ms; /* connect, StartTLS and bind, each, per
	                                URI; 0: 5000 */
	/* For whoever creates the process's cache (ldap_cache_new()); the
	 * client itself does not read them. */
	unsigned cache_ttl;    /* seconds a database answer is fresh */
	unsigned negative_ttl; /* seconds a "no such user" is fresh */
	unsigned cache_max;    /* entries of the process's cache */
	/* Searches sent and unanswered, per client; 0: 64, at most 4096.
	 * Servers have limits of their own: slapd drops a connection with
	 * more than 1000 operations waiting (conn_max_pending_auth). */
	unsigned max_inflight;
	unsigned max_queue;      /* searches waiting for a slot; 0: 4096 */
	unsigned backoff_max_ms; /* cap of the reconnection back-off;
	                            0: 30000 */
	/* Moved mailboxes (sitemap.ldap.cloud): when cloud is set, a user
	 * without a home database whose entry says its mailbox moved (see
	 * ldap_cloud_moved()) is answered LDAP_ANS_CLOUD. */
	bool cloud;
	char **cloud_domains; /* the tenant's routing domains */
	unsigned n_cloud_domains;
};

/* What a lookup learned; the values are stable. */
enum ldap_answer {
	LDAP_ANS_FOUND = 0,         /* database is the user's */
	LDAP_ANS_NO_USER = 1,       /* no such user, or one without a
	                               mailbox database */
	LDAP_ANS_STALE_FOUND = 2,   /* the directory failed; the last
	                               answer, past its TTL, is a database */
	LDAP_ANS_STALE_NO_USER = 3, /* the directory failed; the last answer,
	                               past its TTL, was "no such user" */
	LDAP_ANS_ERROR = 4,         /* the directory failed and nothing is
	                               known: the caller falls back */
	LDAP_ANS_CLOUD = 5,         /* no home database: the mailbox moved to
	                               Exchange Online; database holds what
	                               the entry said (ldap_cloud_moved()) */
	LDAP_ANS_STALE_CLOUD = 6,   /* the directory failed; the last
	                               answer, past its TTL, was CLOUD */
};

/* Returns a printable name for a, for logs. */
const char *ldap_answer_str(enum ldap_answer a);

/* ---- pure helpers ------------------------------------------------------ */

/* Checks a filter template: only %u, %s and %% as conversions, parentheses
 * balanced, at most LDAP_SRC_FILTER_MAX - 1 bytes. Returns 0, or -1 with a
 * malloc'd reason in *err (when err is not NULL). */
int ldap_filter_check(const char *tmpl, char **err);

/* Writes tmpl into out (cap bytes, NUL-terminated) with %u replaced by user,
 * %s by the part of user before its first '@' (all of it without one), and
 * %% by '%', every substituted byte escaped per RFC 4515 (`*` `(` `)` `\`
 * and NUL become \2a \28 \29 \5c \00), so that a user name can never widen
 * the search. Returns the length written, or -1 when tmpl is invalid, user
 * is empty or longer than LDAP_SRC_USER_MAX, or the result does not fit. */
int ldap_filter_build(const char *tmpl, const char *user, char *out,
                      size_t cap);

/* Reads the database name from the home database DN dn[0..len): the value of
 * the cn (commonName, 2.5.4.3, any case) of the DN's first RDN, RFC 4514
 * escapes (`\,` `\+` `\"` `\\` `\<` ... and hex pairs like `\2C`) decoded.
 * The whole DN must be well-formed (every RDN type=value, no unescaped
 * special in a value, ';' accepted as a separator as RFC 2253 readers do);
 * a value that decodes to an empty string or to a control byte is refused.
 * Writes the name into out (cap bytes, NUL-terminated) and returns its
 * length, or -1 for a malformed DN or a name that does not fit. Pure. */
int ldap_dn_database(const char *dn, size_t len, char *out, size_t cap);

/* Escapes v[0..len) as an RFC 4514 attribute value into out (cap bytes,
 * NUL-terminated): specials and leading/trailing spaces with a backslash,
 * control bytes as hex pairs. Returns the length written, or -1 when it does
 * not fit. Pure; ldap_dn_database() reads back what it writes. */
int ldap_dn_escape_value(const char *v, size_t len, char *out, size_t cap);

/* The attributes of one entry that tell a moved mailbox, as the directory
 * sent them: untrusted bytes, not NUL-terminated (NULL: absent). */
struct ldap_cloud_attrs {
	bool has_home;      /* the entry has a home database */
	const char *type;   /* msExchRecipientTypeDetails, decimal */
	size_t type_len;
	const char *remote; /* msExchRemoteRecipientType, decimal */
	size_t remote_len;
	const char *target; /* targetAddress, "[SMTP:]user@domain" */
	size_t target_len;
};

/* Whether the entry a says its mailbox moved to Exchange Online: it has no
 * home database (with one it is on premises whatever else it says), and
 * its recipient type is a remote mailbox (RemoteUserMailbox 2147483648,
 * RemoteRoomMailbox 8589934592, RemoteEquipmentMailbox 17179869184,
 * RemoteSharedMailbox 34359738368) or its targetAddress, an optional
 * "SMTP:" prefix in any case aside, ends in '@' and one of the n domains
 * (ASCII case ignored). msExchRemoteRecipientType decides nothing; it is
 * added to the evidence. Writes the evidence ("msExchRecipientTypeDetails
 * 2147483648 (RemoteUserMailbox); msExchRemoteRecipientType 4
 * (migrated)"), printable ASCII only, into why (cap bytes, NUL-terminated,
 * truncated to fit; "" when not moved). Returns 1 moved, 0 not. Pure. */
int ldap_cloud_moved(const struct ldap_cloud_attrs *a, char *const *domains,
                     unsigned n, char *why, size_t cap);

/* ---- the cache ---------------------------------------------------------- */

struct ldap_cache;

/* Counters of a cache since it was created. */
struct ldap_cache_stats {
	uint64_t hits;      /* fresh answers given by ldap_cache_get() */
	uint64_t misses;    /* ldap_cache_get() without a fresh answer */
	uint64_t stale;     /* fallbacks answered past the TTL */
	uint64_t errors;    /* fallbacks with nothing to answer */
	uint64_t inserts;   /* answers stored */
	uint64_t evictions; /* entries dropped to stay within the bound */
	unsigned entries;   /* entries held now, fresh and stale */
	bool down;          /* the directory failed the last lookup that went
	                       to it (a fallback came after the last answer
	                       stored); false before any */
};

/* Creates an empty cache of at most max entries (at least 1) whose database
 * answers are fresh for ttl seconds and "no such user" answers for
 * negative_ttl seconds. Safe to share between threads. Returns NULL when out
 * of memory. */
struct ldap_cache *ldap_cache_new(unsigned max, unsigned ttl,
                                  unsigned negative_ttl);

/* Frees c and its entries. Accepts NULL. No other thread may be using c. */
void ldap_cache_free(struct ldap_cache *c);

/* Changes the TTLs for answers stored from now on (a reload). */
void ldap_cache_set_ttl(struct ldap_cache *c, unsigned ttl,
                        unsigned negative_ttl);

/* Replaces the monotonic clock (microseconds) the cache reads, for tests;
 * now_us NULL restores clock_mono_us(). Call before sharing c. */
void ldap_cache_set_clock(struct ldap_cache *c, uint64_t (*now_us)(void *),
                          void *arg);

/* Looks user up (ASCII case ignored). A fresh entry counts as a hit, makes
 * the entry the most recently used, sets *a to LDAP_ANS_FOUND (database
 * copied into db, cap bytes) or LDAP_ANS_NO_USER (db set to ""), and
 * returns true. Anything else counts as a miss and returns false. */
bool ldap_cache_get(struct ldap_cache *c, const char *user, enum ldap_answer *a,
                    char *db, size_t cap);

/* The answer for user when the directory failed: a fresh entry as
 * ldap_cache_get() gives it (another worker may have stored it meanwhile),
 * an entry past its TTL as LDAP_ANS_STALE_FOUND / LDAP_ANS_STALE_NO_USER
 * (counted as stale), or LDAP_ANS_ERROR with db "" (counted as an error). */
enum ldap_answer ldap_cache_fallback(struct ldap_cache *c, const char *user,
                                     char *db, size_t cap);

/* Stores the directory's answer for user: database db, or "no such user"
 * when db is NULL; the least recently used entry goes when c is full. A user
 * or database too long is not stored. */
void ldap_cache_put(struct ldap_cache *c, const char *user, const char *db);

/* Stores the answer "moved to Exchange Online" for user with its evidence
 * why (ldap_cloud_moved()); kept for the database answers' TTL, given back
 * as LDAP_ANS_CLOUD (LDAP_ANS_STALE_CLOUD) with why as the database. */
void ldap_cache_put_cloud(struct ldap_cache *c, const char *user,
                          const char *why);

/* Forgets user; returns whether it was held. */
bool ldap_cache_flush(struct ldap_cache *c, const char *user);

/* Forgets every user. Counters are kept. */
void ldap_cache_flush_all(struct ldap_cache *c);

/* Copies the counters of c into *out. */
void ldap_cache_stats(struct ldap_cache *c, struct ldap_cache_stats *out);

/* ---- the client --------------------------------------------------------- */

struct ldap_client;
struct ldap_lookup;

/* An answer given at once by ldap_lookup(). */
struct ldap_reply {
	enum ldap_answer answer;
	char database[LDAP_SRC_DB_MAX]; /* "" unless FOUND or STALE_FOUND;
	                                   the evidence for the CLOUD ones */
};

/* Counters and gauges of one client. */
struct ldap_client_stats {
	uint64_t lookups;       /* ldap_lookup() calls that were valid */
	uint64_t cached;        /* answered fresh from the cache */
	uint64_t coalesced;     /* joined a search already under way */
	uint64_t searches;      /* searches sent to the directory */
	uint64_t answered;      /* searches answered by the directory */
	uint64_t timeouts;      /* searches given up at their deadline */
	uint64_t failed;        /* lookups answered by the fallback */
	uint64_t queue_full;    /* lookups refused a place in the queue */
	uint64_t connects;      /* connections established */
	uint64_t connect_fails; /* connection attempts that failed */
	uint64_t disconnects;   /* established connections lost */
	unsigned inflight;      /* searches sent and unanswered now */
	unsigned inflight_max;  /* the most ever in flight at once */
	unsigned queued;        /* searches waiting for a slot now */
	bool connected;         /* a bound connection is up */
};

/* Called once per pending lookup, from the event loop: answer and, for
 * FOUND and STALE_FOUND, the database (for CLOUD and STALE_CLOUD, the
 * evidence; valid during the call only; NULL otherwise). The lookup handle is already freed when this runs. The
 * callback may start or cancel lookups but must not free the client. */
typedef void (*ldap_cb)(enum ldap_answer a, const char *database, void *arg);

/* Checks c without any network access (URIs, base, filter template,
 * attribute, credentials settings). Returns 0, or -1 with a malloc'd
 * reason in *err (when err is not NULL). */
int ldap_src_conf_check(const struct ldap_src_conf *c, char **err);

/* Creates a client on base (not owned; it must outlive the client) that
 * answers from cache (not owned; shared with other clients, it must outlive
 * them) and asks the directory described by c (copied). It starts
 * connecting at once, from a helper thread. Returns NULL with a malloc'd
 * reason in *err (when err is not NULL) for an invalid c or no memory. */
struct ldap_client *ldap_client_new(struct event_base *base,
                                    const struct ldap_src_conf *c,
                                    struct ldap_cache *cache, char **err);

/* Frees lc: pending lookups are dropped without their callbacks, the
 * connection is unbound, a connection attempt still running is left to end
 * on its own (its thread then cleans up). Accepts NULL. Never from an
 * ldap_cb. */
void ldap_client_free(struct ldap_client *lc);

/* Finds user's database. Returns 1 when answered at once into *now: a fresh
 * cache entry, or the fallback (stale entry or LDAP_ANS_ERROR) when the
 * directory is known to be unreachable or the queue is full; cb is never
 * called then. Returns 0 when the answer will come through cb(arg) from the
 * event loop, never from inside this call, within about timeout_ms; *handle
 * (when handle is not NULL) is then valid until cb runs. Lookups of the same
 * user share one search. Returns -1 for an empty or too long user, or when
 * out of memory. */
int ldap_lookup(struct ldap_client *lc, const char *user, ldap_cb cb, void *arg,
                struct ldap_lookup **handle, struct ldap_reply *now);

/* Cancels a pending lookup: its callback is never called. The search it
 * waited on still completes and fills the cache. Accepts NULL. */
void ldap_lookup_cancel(struct ldap_lookup *h);

/* Copies the counters and gauges of lc into *out. */
void ldap_client_stats(const struct ldap_client *lc,
                       struct ldap_client_stats *out);

/* Blocking, for `easfront check`: connects as a client would (every URI in
 * turn, StartTLS, bind), then searches for a user that cannot exist to prove
 * that the base is there and the filter is accepted. Returns 0, or -1 with a
 * malloc'd reason in *err (when err is not NULL) naming the URI and the
 * server's diagnostic. Never call it from an event loop. */
int ldap_check(const struct ldap_src_conf *c, char **err);

#endif
