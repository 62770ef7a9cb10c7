/*
 * Asynchronous resolution of CAS host names.
 *
 * ldns only builds and parses packets; libevent moves them over UDP (and TCP
 * after a truncated reply), so nothing here ever blocks the event loop. Every
 * name is taken as absolute: no search list, no ndots, no /etc/hosts, because
 * the config names CAS hosts by their fully qualified names.
 *
 * dns_answer_parse() is pure (no I/O, no globals) and fuzzed; the rest runs on
 * the caller's event_base and must be used from that base's thread only.
 */
#ifndef EF_DNS_DNS_H
#define EF_DNS_DNS_H

#include <stdint.h>
#include <sys/socket.h>

struct event_base;

#define DNS_MAX_ADDRS 16  /* addresses kept from one answer (A + AAAA) */
#define DNS_MAX_CNAME 8   /* CNAME hops followed before a reply is refused */
#define DNS_NAME_MAX 256  /* presentation form, NUL included */
#define DNS_MAX_SERVERS 8 /* name servers one resolver asks */
#define DNS_QTYPE_A 1     /* RFC 1035 */
#define DNS_QTYPE_AAAA 28 /* RFC 3596 */

/* The addresses one name resolved to. Ports are the caller's: every address
 * comes back with port 0. */
struct dns_addrs {
	unsigned n;
	struct sockaddr_storage addr[DNS_MAX_ADDRS];
	/* Smallest TTL (seconds) along the CNAME chain and the addresses; for
	 * an answer without addresses, the negative TTL of the SOA if the
	 * server sent one. */
	uint32_t ttl;
	/* Targets of the CNAME chain in order, without the final dot:
	 * cname_chain[n_cname - 1] is the name the addresses belong to. */
	char cname_chain[DNS_MAX_CNAME][DNS_NAME_MAX];
	unsigned n_cname;
};

/* What one reply says; the values of the first four are stable. */
enum dns_answer {
	DNS_ANSWER_BAD = -1,       /* malformed or not a reply to our query:
	                              drop it, keep waiting, never trust it */
	DNS_ANSWER_OK = 0,         /* NOERROR; out->n may be 0 (NODATA) */
	DNS_ANSWER_NXDOMAIN = 1,   /* the name (or the chain's end) does
	                              not exist */
	DNS_ANSWER_TRUNCATED = 2,  /* TC set: ask again over TCP; never
	                              read as an empty answer */
	DNS_ANSWER_SERVER_ERR = 3, /* a genuine reply with SERVFAIL,
	                              REFUSED, FORMERR...: ask another server */
};

/* Validates pkt[0..len) as the reply to the query (id, qname, IN, qtype):
 * header (ID, QR set, opcode QUERY, one question), the question echoed
 * (names compared ignoring ASCII case) and the RCODE. For NOERROR it follows
 * the CNAME chain from qname inside the answer section (at most DNS_MAX_CNAME
 * hops, loops refused) and collects the qtype records (A or AAAA) of the
 * final name into *out (at most DNS_MAX_ADDRS, duplicates dropped, port 0).
 * *out is always cleared first and is meaningful only for OK and NXDOMAIN.
 * Pure: no I/O, no globals, safe on hostile bytes. */
enum dns_answer dns_answer_parse(const uint8_t *pkt, size_t len, uint16_t id,
                                 const char *qname, uint16_t qtype,
                                 struct dns_addrs *out);

/* Returns a printable name for a, for logs. */
const char *dns_answer_str(enum dns_answer a);

/* Builds the wire form of a recursive query (RD set, no EDNS) for (qname, IN,
 * qtype) with the given ID. Returns a malloc'd buffer the caller frees and
 * its length in *len, or NULL when qname is not a valid domain name. */
uint8_t *dns_query_build(const char *qname, uint16_t qtype, uint16_t id,
                         size_t *len);

/* True when a and b hold the same set of addresses, whatever their order. */
int dns_addrs_same(const struct dns_addrs *a, const struct dns_addrs *b);

struct dns_resolver;
struct dns_query;
struct dns_watch;

/* Creates a resolver on base (not owned; it must outlive the resolver) that
 * asks servers[0..n_servers) in turn: "IP", "IP:PORT" or "[IPv6]:PORT", at
 * most DNS_MAX_SERVERS. With n_servers 0 the nameserver lines of
 * /etc/resolv.conf are read (127.0.0.1 when there are none, as libc does);
 * that read is the only blocking I/O here and happens once, at start-up.
 * Returns NULL with a malloc'd reason in *err (when err is not NULL). */
struct dns_resolver *dns_resolver_new(struct event_base *base,
                                      char *const *servers, unsigned n_servers,
                                      char **err);

/* Sets how long one attempt waits for a reply (default 2000 ms) and how many
 * times each server is tried (default 2) for queries started afterwards. */
void dns_resolver_set_timeout(struct dns_resolver *r, unsigned timeout_ms,
                              unsigned tries);

/* Frees r, cancelling its pending queries without calling their callbacks and
 * freeing the watches still attached to it (their pointers become invalid).
 * Accepts NULL. Safe to call from a dns_cb or an on_change callback. */
void dns_resolver_free(struct dns_resolver *r);

/* Called once per query with status 0 (ok: addrs holds the A and AAAA
 * answers merged, A first, possibly none), 1 (NXDOMAIN) or -1 (every server
 * failed or timed out). addrs is only valid during the call. The query handle
 * is already freed when this runs: never cancel it from here. */
typedef void (*dns_cb)(int status, const struct dns_addrs *addrs, void *arg);

/* Resolves the A and AAAA records of name in parallel over UDP, each with a
 * random ID from its own socket (a random source port), connected to the
 * server so that only its replies are read. Each attempt waits the timeout,
 * then the next server is asked (starting from the last one that answered),
 * each server `tries` times; SERVFAIL or an ICMP refusal moves on at once; a
 * truncated reply is asked again over TCP to the same server. An IP literal
 * (v4 or v6, optionally in brackets) is answered from a deferred callback,
 * never from inside this call. Returns a handle for dns_cancel(), valid until
 * cb runs, or NULL (invalid name, no memory). */
struct dns_query *dns_resolve(struct dns_resolver *r, const char *name,
                              dns_cb cb, void *arg);

/* Cancels q: its sockets are closed and its callback is never called. q must
 * be a handle whose callback has not run yet. Accepts NULL. */
void dns_cancel(struct dns_query *q);

/* Called when a watch's address set changes (the first good answer
 * included); addrs stays valid until the next change or dns_watch_free().
 * The callback may free the watch. */
typedef void (*dns_watch_cb)(const struct dns_addrs *addrs, void *arg);

/* Keeps name resolved: asked now, then again when the answer's TTL, clamped
 * to [min_ttl, max_ttl] seconds (min_ttl at least 1), runs out. A failed
 * resolution, NXDOMAIN or an answer without addresses keeps the last good
 * answer and is retried with exponential back-off (1 s, doubling, at most
 * 60 s or max_ttl if smaller). on_change (may be NULL) runs from the event
 * loop, never from inside this call. Returns NULL on an invalid name or no
 * memory. */
struct dns_watch *dns_watch_new(struct dns_resolver *r, const char *name,
                                unsigned min_ttl, unsigned max_ttl,
                                dns_watch_cb on_change, void *arg);

/* Returns the last good answer of w (owned by w), NULL before the first. */
const struct dns_addrs *dns_watch_addrs(const struct dns_watch *w);

/* Stops and frees w without calling on_change. Accepts NULL. */
void dns_watch_free(struct dns_watch *w);

#endif
