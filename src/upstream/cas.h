/*
 * The CAS servers the process knows, one entry per configured URL, kept for
 * the process's life so that health and pools survive reloads. An entry's
 * members are its addresses (from DNS, or the literal); each member is up or
 * down. The control thread (DNS watches, health checks) writes members;
 * workers pick from them under the entry's lock and report failures.
 * cas_target is what a generation keeps of each CAS URL of a site.
 */
#ifndef EF_UPSTREAM_CAS_H
#define EF_UPSTREAM_CAS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "conf/conf.h"
#include "site/health.h"

struct hcheck;
struct control;
struct dns_watch;

/* The last active health check of a member, for the operators' view. */
struct cas_check_result {
	time_t at;		/* when it ended; 0: none yet */
	bool ok;
	unsigned latency_ms;	/* from its start to its verdict */
	char why[128];		/* what failed; "" when ok */
};

struct cas_member {
	struct sockaddr_storage addr;
	socklen_t len;
	char name[64];		     /* "IP:PORT" for logs */
	atomic_bool up;
	atomic_uint passive_fails;   /* workers' failures since the last tick */
	struct health h;	     /* control thread only */
	struct hcheck *check;	     /* control thread only; owned */
	struct cas_check_result last; /* control thread only (the admin
					 endpoint runs on it too) */
};

struct cas_entry {
	unsigned id;
	char *url;		/* owned */
	char host[256];
	uint16_t port;
	bool tls;
	bool literal;		/* host is an IP address: no DNS */
	pthread_mutex_t lock;	/* guards members and n_members */
	struct cas_member **members; /* owned */
	unsigned n_members;
	atomic_uint n_up;	/* members up; 0: this CAS cannot serve */
	/* control thread only */
	struct dns_watch *watch;
	struct control *watch_ctx; /* the control loop the watch reports to */
	bool in_use;		/* named by the current generation */
	char *check_path;	/* owned */
	char *check_expect;	/* owned: body prefix of a healthy answer */
	unsigned interval, timeout, rise, fall;
};

/* One CAS base URL of a site. */
struct cas_target {
	char *url;	/* as configured; owned */
	bool tls;	/* https:// */
	char host[256]; /* host part without brackets, for SNI and checks */
	uint16_t port;
	unsigned id; /* index of this target's pools in every worker; equal
			URLs share an id across generations */
	struct cas_entry *entry; /* the process-wide state of this URL: its
				    addresses and their health; NULL in
				    commands that serve nothing */
};

/* Every CAS the process knows, by id; only grows, entries live as long as
 * the process (health and pools survive reloads). */
struct cas_registry {
	struct cas_entry **cas; /* owned */
	unsigned n;
};

/* The entry for url, made (and its members seeded) on first use. NULL
 * without memory or for a URL that does not parse. Callers serialise. */
struct cas_entry *cas_registry_get(struct cas_registry *reg, const char *url);
/* Frees every entry. */
void cas_registry_free(struct cas_registry *reg);

/* Takes the health settings of the first site that names e (h), and marks
 * it in use by the current generation. Control thread. */
void cas_entry_configure(struct cas_entry *e, const struct conf_health *h);

/* Splits a CAS URL (http[s]://host[:port][/...]) into e's host, port, tls.
 * Returns 0 or -1. */
int cas_url_parse(const char *url, struct cas_entry *e);

/* A new entry for url with members seeded from a blocking lookup (start-up
 * and reload only, never on a worker). NULL on failure. */
struct cas_entry *cas_entry_new(unsigned id, const char *url);
void cas_entry_free(struct cas_entry *e);

/* Copies the address of an up member into *out, round-robin from *cursor.
 * Returns -1 when no member is up. Any thread. */
int cas_pick(struct cas_entry *e, unsigned *cursor,
	     struct sockaddr_storage *out, socklen_t *len, char *name,
	     size_t name_cap);

/* True when addr is still a member of e and up: an idle pooled connection
 * to anything else must not carry new requests. Any thread. */
bool cas_member_usable(struct cas_entry *e, const struct sockaddr *addr,
		       socklen_t len);

/* A worker could not connect to (or was timed out by) addr. Any thread. */
void cas_report_failure(struct cas_entry *e, const struct sockaddr *addr,
			socklen_t len);

/* Replaces the members with addrs (n of them, port set from e), keeping
 * the health of addresses that stay. Control thread. The removed members
 * are handed to drop (their checks must be cancelled) before being freed. */
void cas_set_members(struct cas_entry *e, const struct sockaddr_storage *addrs,
		     unsigned n, void (*drop)(struct cas_member *m));

/* Sets a member's state and keeps n_up right. Control thread. */
void cas_member_set_up(struct cas_entry *e, struct cas_member *m, bool up);

#endif
