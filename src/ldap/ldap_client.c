/*
 * The asynchronous client: one per worker event base, one LDAP connection.
 *
 * A lookup the cache cannot answer waits on a search (struct search), which
 * every lookup of the same user joins. A search is QUEUED until one of the
 * max_inflight slots is free, then SENT with ldap_search_ext() and answered
 * by ldap_result() with a zero timeout, called when libevent finds the
 * (non-blocking) socket readable. Each search has a deadline; a connection
 * that fails a search or is lost fails every search, whose waiters get the
 * cache's fallback (the last answer past its TTL, else an error), and the
 * connection is made again from a helper thread (ldap_conn.c) with
 * exponential back-off. While that back-off runs, lookups are answered from
 * the fallback at once rather than left to stall.
 *
 * Waiters are told from the loop only, one at a time, from a search already
 * unlinked from every list, so a callback may start and cancel lookups.
 */
#include "ldap/ldap_int.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/str.h"

#include <assert.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define READ_BURST 256 /* messages read per wake-up before yielding */
#define DEAD_AFTER 3   /* searches in a row without an answer: reconnect */
#define SHORT_LIVED_US 1000000 /* a connection lost sooner is a failure */

/* The connection's phases; what holds in each: */
enum conn_state {
	CONN_DOWN,       /* no handle, no attempt; the retry timer is armed
	                    and lookups are answered from the fallback */
	CONN_CONNECTING, /* a helper thread is connecting; searches queue
	                    (only while no attempt has failed yet) */
	CONN_UP,         /* ld bound and read event armed; searches flow */
};

static const char *conn_state_str(enum conn_state s)
{
	switch (s) {
	case CONN_DOWN:
		return "down";
	case CONN_CONNECTING:
		return "connecting";
	case CONN_UP:
		return "up";
	}
	return "?";
}

/* A search's phases: */
enum search_state {
	SEARCH_QUEUED, /* in lc->queue and lc->table; deadline armed */
	SEARCH_SENT,   /* in lc->inflight and lc->table, msgid valid */
	SEARCH_DONE,   /* unlinked from everything; waiters being told */
};

struct ldap_lookup {
	struct search *s; /* not owned: the search this waits on */
	TAILQ_ENTRY(ldap_lookup) link;
	ldap_cb cb;
	void *arg;
};

struct search {
	struct ldap_client *lc;   /* not owned */
	TAILQ_ENTRY(search) link; /* in lc->queue or lc->inflight */
	struct search *hnext;     /* next in the same lc->table bucket */
	uint64_t hash;
	enum search_state state;
	int msgid;
	struct event *deadline;            /* owned */
	TAILQ_HEAD(, ldap_lookup) waiters; /* owned */
	bool have_db;                      /* an entry gave a database */
	bool moved;                        /* none did, and an entry said
	                                      the mailbox moved: db holds
	                                      the evidence */
	char db[LDAP_SRC_DB_MAX];
	char user[LDAP_SRC_USER_MAX + 1]; /* lower case */
};

TAILQ_HEAD(search_list, search);

struct ldap_client {
	struct event_base *base;    /* not owned */
	struct ldap_cache *cache;   /* not owned, shared */
	struct ldap_src_conf *conf; /* owned copy, defaults applied */
	enum conn_state state;
	LDAP *ld;                     /* owned while CONN_UP */
	struct event *rd;             /* owned: the socket, persistent */
	struct event *wr;             /* owned: one-shot, a write to finish */
	struct ldap_attempt *attempt; /* owned while CONN_CONNECTING */
	struct event *attempt_ev;     /* owned: the attempt's eventfd */
	struct event *retry;          /* owned: back-off timer */
	struct event *pump;           /* owned: deferred sending/reading */
	const struct timeval *common; /* libevent's shared deadline */
	unsigned fails;               /* failed attempts in a row */
	unsigned uri;                 /* the URI that worked last */
	unsigned silent;              /* searches in a row timed out */
	uint64_t up_since_us;         /* when the connection came up */
	unsigned n_queued, n_inflight;
	struct search_list queue, inflight;
	struct search **table; /* owned array; the searches are in the lists */
	size_t mask;
	int dispatching; /* callbacks running: free is forbidden */
	bool warned;     /* a failure was logged as a warning */
	struct ldap_client_stats st;
};

static void conn_lost(struct ldap_client *lc, const char *why);

/* The only way the connection's state changes. */
static void set_state(struct ldap_client *lc, enum conn_state st)
{
	log_debug("ldap: connection %s -> %s", conn_state_str(lc->state),
	          conn_state_str(st));
	lc->state = st;
	lc->st.connected = st == CONN_UP;
}

static void connect_start(struct ldap_client *lc);
static void send_queued(struct ldap_client *lc);

/* ---- the coalescing table --------------------------------------------- */

static struct search **table_slot(struct ldap_client *lc, const char *user,
                                  uint64_t hash)
{
	struct search **slot = &lc->table[hash & lc->mask];

	while (*slot != NULL &&
	       ((*slot)->hash != hash || strcmp((*slot)->user, user) != 0))
		slot = &(*slot)->hnext;
	return slot;
}

static void table_remove(struct ldap_client *lc, struct search *s)
{
	struct search **slot = table_slot(lc, s->user, s->hash);

	if (*slot == s)
		*slot = s->hnext;
	s->hnext = NULL;
}

/* ---- searches --------------------------------------------------------- */

/* Takes s out of its list and the table; its deadline stops. */
static void search_unlink(struct search *s)
{
	struct ldap_client *lc = s->lc;

	if (s->state == SEARCH_QUEUED) {
		TAILQ_REMOVE(&lc->queue, s, link);
		lc->n_queued--;
	} else if (s->state == SEARCH_SENT) {
		TAILQ_REMOVE(&lc->inflight, s, link);
		lc->n_inflight--;
	}
	if (s->state != SEARCH_DONE)
		table_remove(lc, s);
	s->state = SEARCH_DONE;
	event_del(s->deadline);
}

static void search_free(struct search *s)
{
	struct ldap_lookup *w;

	while ((w = TAILQ_FIRST(&s->waiters)) != NULL) {
		TAILQ_REMOVE(&s->waiters, w, link);
		free(w);
	}
	event_free(s->deadline);
	free(s);
}

/* Tells every waiter of an unlinked search, then frees it. A waiter is
 * freed before its callback runs; one cancelled meanwhile is skipped. */
static void search_tell(struct search *s, enum ldap_answer a, const char *db)
{
	struct ldap_client *lc = s->lc;
	struct ldap_lookup *w;
	bool has_db = a == LDAP_ANS_FOUND || a == LDAP_ANS_STALE_FOUND ||
	              a == LDAP_ANS_CLOUD || a == LDAP_ANS_STALE_CLOUD;

	lc->dispatching++;
	while ((w = TAILQ_FIRST(&s->waiters)) != NULL) {
		ldap_cb cb = w->cb;
		void *arg = w->arg;

		TAILQ_REMOVE(&s->waiters, w, link);
		free(w);
		if (a != LDAP_ANS_FOUND && a != LDAP_ANS_NO_USER &&
		    a != LDAP_ANS_CLOUD)
			lc->st.failed++;
		cb(a, has_db ? db : NULL, arg);
	}
	lc->dispatching--;
	search_free(s);
}

/* Ends s with the cache's fallback for its user. */
static void search_fail(struct search *s)
{
	char db[LDAP_SRC_DB_MAX];
	enum ldap_answer a =
	    ldap_cache_fallback(s->lc->cache, s->user, db, sizeof(db));

	search_unlink(s);
	search_tell(s, a, db);
}

/* Fails every search, queued and sent. They are all unlinked first, so that
 * lookups made by the callbacks start afresh. */
static void fail_all(struct ldap_client *lc)
{
	struct search_list doomed = TAILQ_HEAD_INITIALIZER(doomed);
	struct search *s;

	while ((s = TAILQ_FIRST(&lc->inflight)) != NULL ||
	       (s = TAILQ_FIRST(&lc->queue)) != NULL) {
		search_unlink(s);
		TAILQ_INSERT_TAIL(&doomed, s, link);
	}
	while ((s = TAILQ_FIRST(&doomed)) != NULL) {
		TAILQ_REMOVE(&doomed, s, link);
		search_fail(s);
	}
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct search *s = arg;
	struct ldap_client *lc = s->lc;
	bool sent = s->state == SEARCH_SENT;

	lc->st.timeouts++;
	log_debug("ldap: %s: no answer within %u ms (%s)", s->user,
	          lc->conf->timeout_ms, sent ? "sent" : "queued");
	if (sent) {
		/* The answer, should it come, is dropped by libldap. */
		ldap_abandon_ext(lc->ld, s->msgid, NULL, NULL);
		lc->silent++;
	}
	search_fail(s);
	if (sent && lc->state == CONN_UP && lc->silent >= DEAD_AFTER) {
		conn_lost(lc, "searches go unanswered");
		return;
	}
	send_queued(lc);
}

static struct search *search_new(struct ldap_client *lc, const char *user,
                                 uint64_t hash)
{
	struct search *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->lc = lc;
	s->hash = hash;
	s->msgid = -1;
	TAILQ_INIT(&s->waiters);
	snprintf(s->user, sizeof(s->user), "%s", user);
	s->deadline = evtimer_new(lc->base, deadline_cb, s);
	if (s->deadline == NULL || evtimer_add(s->deadline, lc->common) != 0) {
		if (s->deadline != NULL)
			event_free(s->deadline);
		free(s);
		return NULL;
	}
	s->state = SEARCH_QUEUED;
	TAILQ_INSERT_TAIL(&lc->queue, s, link);
	lc->n_queued++;
	s->hnext = lc->table[hash & lc->mask];
	lc->table[hash & lc->mask] = s;
	return s;
}

/* ---- the connection --------------------------------------------------- */

/* Tells that a write of libldap's must be finished when the socket can
 * take it: ldap_search_ext() leaves LDAP_BUSY behind when the request did
 * not fit in the socket. */
static bool write_pending(struct ldap_client *lc)
{
	int rc = LDAP_SUCCESS;

	ldap_get_option(lc->ld, LDAP_OPT_RESULT_CODE, &rc);
	return rc == LDAP_BUSY;
}

/* Sends one queued search. Returns 0 when sent, 1 when the socket is full
 * (s stays queued), -1 when the connection failed (it is then lost). */
static int search_send(struct ldap_client *lc, struct search *s)
{
	char filter[LDAP_SRC_FILTER_MAX];
	char *attrs[] = {lc->conf->attribute, LDAP_SRC_ATTR_TYPE,
	                 LDAP_SRC_ATTR_REMOTE, LDAP_SRC_ATTR_TARGET, NULL};
	struct timeval limit = {.tv_sec = (lc->conf->timeout_ms + 999) / 1000};
	int rc, msgid = -1;

	if (ldap_filter_build(lc->conf->filter, s->user, filter,
	                      sizeof(filter)) < 0) {
		log_debug("ldap: %s: the filter does not fit", s->user);
		search_fail(s);
		return 0;
	}
	/* Size limit 2: one entry is the answer, a second one is only
	 * noticed. */
	/* The cloud's attributes only when asked to read them. */
	if (!lc->conf->cloud)
		attrs[1] = NULL;
	rc = ldap_search_ext(lc->ld, lc->conf->base, LDAP_SCOPE_SUBTREE, filter,
	                     attrs, 0, NULL, NULL, &limit, 2, &msgid);
	if (rc == LDAP_BUSY)
		return 1;
	if (rc != LDAP_SUCCESS) {
		char why[LDAP_SRC_ERR_MAX];

		ldap_conn_err(lc->ld, rc, "search", why, sizeof(why));
		conn_lost(lc, why);
		return -1;
	}
	TAILQ_REMOVE(&lc->queue, s, link);
	lc->n_queued--;
	s->state = SEARCH_SENT;
	s->msgid = msgid;
	TAILQ_INSERT_TAIL(&lc->inflight, s, link);
	lc->n_inflight++;
	lc->st.searches++;
	if (lc->n_inflight > lc->st.inflight_max)
		lc->st.inflight_max = lc->n_inflight;
	return write_pending(lc) ? 1 : 0;
}

/* Sends queued searches while slots are free and the socket takes them. */
static void send_queued(struct ldap_client *lc)
{
	struct search *s;

	while (lc->state == CONN_UP &&
	       lc->n_inflight < lc->conf->max_inflight &&
	       (s = TAILQ_FIRST(&lc->queue)) != NULL) {
		int rc = search_send(lc, s);

		if (rc < 0)
			return;
		if (rc > 0) {
			event_add(lc->wr, NULL);
			return;
		}
	}
}

static struct search *inflight_find(struct ldap_client *lc, int msgid)
{
	struct search *s;

	TAILQ_FOREACH(s, &lc->inflight, link)
	if (s->msgid == msgid)
		return s;
	return NULL;
}

/* The first value of attribute attr of entry e; NULL when there is none.
 * The caller frees *vals with ldap_value_free_len(). */
static const struct berval *first_value(struct ldap_client *lc, LDAPMessage *e,
                                        const char *attr,
                                        struct berval ***vals)
{
	*vals = ldap_get_values_len(lc->ld, e, attr);
	return *vals != NULL ? (*vals)[0] : NULL;
}

/* Whether entry e, which has no home database, says its mailbox moved to
 * Exchange Online; the evidence then goes to s->db. */
static void take_moved(struct ldap_client *lc, struct search *s, LDAPMessage *e)
{
	struct berval **tv, **rv, **av;
	const struct berval *t = first_value(lc, e, LDAP_SRC_ATTR_TYPE, &tv);
	const struct berval *r = first_value(lc, e, LDAP_SRC_ATTR_REMOTE, &rv);
	const struct berval *a = first_value(lc, e, LDAP_SRC_ATTR_TARGET, &av);
	struct ldap_cloud_attrs at = {
	    .has_home = false,
	    .type = t ? t->bv_val : NULL,
	    .type_len = t ? t->bv_len : 0,
	    .remote = r ? r->bv_val : NULL,
	    .remote_len = r ? r->bv_len : 0,
	    .target = a ? a->bv_val : NULL,
	    .target_len = a ? a->bv_len : 0,
	};

	s->moved = ldap_cloud_moved(&at, lc->conf->cloud_domains,
	                            lc->conf->n_cloud_domains, s->db,
	                            sizeof(s->db)) > 0;
	ldap_value_free_len(tv);
	ldap_value_free_len(rv);
	ldap_value_free_len(av);
}

/* Takes the database from an entry; the first entry with one wins. */
static void take_entry(struct ldap_client *lc, struct search *s, LDAPMessage *e)
{
	struct berval **vals;

	if (s->have_db)
		return;
	vals = ldap_get_values_len(lc->ld, e, lc->conf->attribute);
	if ((vals == NULL || vals[0] == NULL) && lc->conf->cloud && !s->moved)
		take_moved(lc, s, e);
	if (vals != NULL && vals[0] != NULL) {
		s->moved = false;
		if (ldap_dn_database(vals[0]->bv_val, vals[0]->bv_len, s->db,
		                     sizeof(s->db)) > 0)
			s->have_db = true;
		else
			log_debug("ldap: %s: unusable %s \"%.*s\"", s->user,
			          lc->conf->attribute,
			          (int)(vals[0]->bv_len < 200 ? vals[0]->bv_len
			                                      : 200),
			          vals[0]->bv_val);
	}
	ldap_value_free_len(vals);
}

/* Ends s with the directory's final word on it. */
static void take_result(struct ldap_client *lc, struct search *s,
                        LDAPMessage *res)
{
	int err = LDAP_OTHER;

	lc->st.answered++;
	lc->silent = 0;
	ldap_parse_result(lc->ld, res, &err, NULL, NULL, NULL, NULL, 0);
	search_unlink(s);
	if (err == LDAP_SUCCESS || err == LDAP_SIZELIMIT_EXCEEDED) {
		/* A user without the attribute has no mailbox here: as
		 * good as unknown, and cached as such, unless it moved. */
		if (s->moved) {
			ldap_cache_put_cloud(lc->cache, s->user, s->db);
			search_tell(s, LDAP_ANS_CLOUD, s->db);
			return;
		}
		ldap_cache_put(lc->cache, s->user, s->have_db ? s->db : NULL);
		search_tell(s, s->have_db ? LDAP_ANS_FOUND : LDAP_ANS_NO_USER,
		            s->db);
		return;
	}
	/* An error (noSuchObject is the base missing, not the user) is never
	 * cached as "no such user". Users stay out of warnings: the access
	 * log may be hashing identities. */
	if (!lc->warned)
		log_warnx("ldap: a search under \"%s\" failed: %s",
		          lc->conf->base, ldap_err2string(err));
	log_debug("ldap: %s: search failed: %s", s->user, ldap_err2string(err));
	lc->warned = true;
	search_fail(s);
}

/* Handles one message from ldap_result(). */
static void take_message(struct ldap_client *lc, LDAPMessage *msg)
{
	int type = ldap_msgtype(msg);
	struct search *s;

	if (ldap_msgid(msg) == 0) {
		/* An unsolicited notification: the server is about to
		 * close the connection (RFC 4511 §4.4.1). */
		conn_lost(lc, "notice of disconnection");
		return;
	}
	s = inflight_find(lc, ldap_msgid(msg));
	if (s == NULL)
		return;
	if (type == LDAP_RES_SEARCH_ENTRY)
		take_entry(lc, s, msg);
	else if (type == LDAP_RES_SEARCH_RESULT)
		take_result(lc, s, msg);
}

/* Reads what the connection has for us without blocking. */
static void read_results(struct ldap_client *lc)
{
	for (int n = 0; n < READ_BURST && lc->state == CONN_UP; n++) {
		struct timeval zero = {0, 0};
		LDAPMessage *msg = NULL;
		int rc = ldap_result(lc->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &zero,
		                     &msg);

		if (rc == 0)
			return;
		if (rc < 0) {
			char why[LDAP_SRC_ERR_MAX];

			ldap_get_option(lc->ld, LDAP_OPT_RESULT_CODE, &rc);
			ldap_conn_err(lc->ld, rc, "read", why, sizeof(why));
			ldap_msgfree(msg);
			conn_lost(lc, why);
			return;
		}
		take_message(lc, msg);
		ldap_msgfree(msg);
	}
	/* More may be buffered inside libldap, where the socket's readiness
	 * does not show: come back after the loop's other work. */
	if (lc->state == CONN_UP)
		event_active(lc->pump, EV_READ, 0);
}

static void rd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ldap_client *lc = arg;

	read_results(lc);
	send_queued(lc);
}

static void wr_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ldap_client *lc = arg;

	/* ldap_result() finishes a pending write once the socket takes it
	 * (what remains is less than one request, and a writable socket has
	 * room for more); the next search tells whether it is full again. */
	read_results(lc);
	send_queued(lc);
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ldap_client *lc = arg;

	if (what & EV_READ)
		read_results(lc);
	send_queued(lc);
}

/* Drops the handle and its events. */
static void conn_close(struct ldap_client *lc)
{
	if (lc->rd != NULL)
		event_free(lc->rd);
	if (lc->wr != NULL)
		event_free(lc->wr);
	lc->rd = lc->wr = NULL;
	if (lc->ld != NULL)
		ldap_unbind_ext(lc->ld, NULL, NULL);
	lc->ld = NULL;
	lc->silent = 0;
}

static void connect_failed(struct ldap_client *lc, const char *why);

/* The connection went away: every search fails, and a new connection is
 * attempted at once, since it worked until now; unless it worked for less
 * than a second, which would make a server that closes every connection
 * after the bind a busy loop: that counts as a failed attempt. */
static void conn_lost(struct ldap_client *lc, const char *why)
{
	bool idle = lc->n_inflight == 0 && lc->n_queued == 0;
	bool brief = clock_mono_us() - lc->up_since_us < SHORT_LIVED_US;

	/* Directories close idle connections (Active Directory after 15
	 * minutes): nothing was lost, so no warning. */
	if (idle && !brief)
		log_info("ldap: %s: connection closed while idle (%s)",
		         lc->conf->uris[lc->uri], why);
	else
		log_warnx("ldap: %s: connection lost: %s",
		          lc->conf->uris[lc->uri], why);
	lc->st.disconnects++;
	conn_close(lc);
	if (brief) {
		connect_failed(lc, why);
		return;
	}
	set_state(lc, CONN_DOWN);
	connect_start(lc);
	fail_all(lc);
}

/* Takes over the bound handle from a finished attempt. */
static int conn_up(struct ldap_client *lc, LDAP *ld)
{
	int fd = -1, fl;

	lc->ld = ld;
	if (ldap_get_option(ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS ||
	    fd < 0 || (fl = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
		return -1;
	lc->rd = event_new(lc->base, fd, EV_READ | EV_PERSIST, rd_cb, lc);
	lc->wr = event_new(lc->base, fd, EV_WRITE, wr_cb, lc);
	if (lc->rd == NULL || lc->wr == NULL || event_add(lc->rd, NULL) != 0)
		return -1;
	set_state(lc, CONN_UP);
	lc->up_since_us = clock_mono_us();
	lc->st.connects++;
	return 0;
}

/* Arms the next attempt: 250 ms doubling up to the cap, minus up to a
 * quarter at random so that many workers and front ends do not retry in
 * step. */
static void retry_arm(struct ldap_client *lc)
{
	unsigned shift = lc->fails > 1 ? lc->fails - 1 : 0;
	uint64_t ms = (uint64_t)LDAP_SRC_BACKOFF_MS
	              << (shift < 20 ? shift : 20);
	struct timeval tv;

	if (ms > lc->conf->backoff_max_ms)
		ms = lc->conf->backoff_max_ms;
	ms -= arc4random_uniform((uint32_t)(ms / 4 + 1));
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(lc->retry, &tv);
}

static void connect_failed(struct ldap_client *lc, const char *why)
{
	lc->fails++;
	lc->st.connect_fails++;
	set_state(lc, CONN_DOWN);
	if (lc->fails == 1)
		log_warnx("ldap: cannot connect: %s; answering from the cache "
		          "until it can",
		          why);
	else
		log_debug("ldap: attempt %u: %s", lc->fails, why);
	retry_arm(lc);
	fail_all(lc);
}

static void attempt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ldap_client *lc = arg;
	char why[LDAP_SRC_ERR_MAX];
	unsigned uri = lc->uri;
	LDAP *ld;

	event_free(lc->attempt_ev);
	lc->attempt_ev = NULL;
	ld = ldap_attempt_finish(lc->attempt, &uri, why, sizeof(why));
	lc->attempt = NULL;
	if (ld == NULL) {
		connect_failed(lc, why);
		return;
	}
	lc->uri = uri;
	if (conn_up(lc, ld) != 0) {
		conn_close(lc);
		connect_failed(lc, "cannot watch the connection's socket");
		return;
	}
	log_info("ldap: connected to %s", lc->conf->uris[uri]);
	lc->fails = 0;
	lc->warned = false;
	send_queued(lc);
}

/* Starts a connection attempt in a helper thread. */
static void connect_start(struct ldap_client *lc)
{
	set_state(lc, CONN_CONNECTING);
	lc->attempt = ldap_attempt_start(lc->conf, lc->uri);
	if (lc->attempt != NULL) {
		lc->attempt_ev =
		    event_new(lc->base, ldap_attempt_fd(lc->attempt), EV_READ,
		              attempt_cb, lc);
		if (lc->attempt_ev != NULL &&
		    event_add(lc->attempt_ev, NULL) == 0)
			return;
		if (lc->attempt_ev != NULL)
			event_free(lc->attempt_ev);
		lc->attempt_ev = NULL;
		ldap_attempt_abandon(lc->attempt);
		lc->attempt = NULL;
	}
	/* Not connect_failed(): the caller fails the searches itself. */
	set_state(lc, CONN_DOWN);
	lc->fails++;
	lc->st.connect_fails++;
	retry_arm(lc);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	connect_start(arg);
}

/* ---- the interface ----------------------------------------------------- */

static int fail_new(char **err, const char *msg, struct ldap_client *lc)
{
	if (err != NULL && *err == NULL)
		*err = strdup(msg);
	ldap_client_free(lc);
	return -1;
}

/* Allocates the client's events and table. */
static int client_init(struct ldap_client *lc)
{
	size_t n = 64;
	struct timeval tv = {
	    .tv_sec = lc->conf->timeout_ms / 1000,
	    .tv_usec = (suseconds_t)(lc->conf->timeout_ms % 1000) * 1000};

	while (n < (size_t)lc->conf->max_inflight + lc->conf->max_queue &&
	       n < (1U << 20))
		n <<= 1;
	lc->table = calloc(n, sizeof(*lc->table));
	lc->mask = n - 1;
	lc->retry = evtimer_new(lc->base, retry_cb, lc);
	lc->pump = event_new(lc->base, -1, 0, pump_cb, lc);
	/* Every deadline has the same length: libevent keeps them in one
	 * queue instead of its heap. */
	lc->common = event_base_init_common_timeout(lc->base, &tv);
	return lc->table != NULL && lc->retry != NULL && lc->pump != NULL &&
	               lc->common != NULL
	           ? 0
	           : -1;
}

struct ldap_client *ldap_client_new(struct event_base *base,
                                    const struct ldap_src_conf *c,
                                    struct ldap_cache *cache, char **err)
{
	struct ldap_client *lc;

	if (err != NULL)
		*err = NULL;
	if (base == NULL || cache == NULL) {
		fail_new(err, "ldap: no event base or no cache", NULL);
		return NULL;
	}
	if (ldap_src_conf_check(c, err) != 0)
		return NULL;
	lc = calloc(1, sizeof(*lc));
	if (lc == NULL) {
		fail_new(err, "ldap: out of memory", NULL);
		return NULL;
	}
	lc->base = base;
	lc->cache = cache;
	TAILQ_INIT(&lc->queue);
	TAILQ_INIT(&lc->inflight);
	lc->conf = ldap_conf_dup(c);
	if (lc->conf == NULL || client_init(lc) != 0) {
		fail_new(err, "ldap: out of memory", lc);
		return NULL;
	}
	connect_start(lc);
	return lc;
}

void ldap_client_free(struct ldap_client *lc)
{
	struct search *s;

	if (lc == NULL)
		return;
	assert(lc->dispatching == 0);
	while ((s = TAILQ_FIRST(&lc->inflight)) != NULL ||
	       (s = TAILQ_FIRST(&lc->queue)) != NULL) {
		search_unlink(s);
		search_free(s);
	}
	conn_close(lc);
	if (lc->attempt_ev != NULL)
		event_free(lc->attempt_ev);
	ldap_attempt_abandon(lc->attempt);
	if (lc->retry != NULL)
		event_free(lc->retry);
	if (lc->pump != NULL)
		event_free(lc->pump);
	free(lc->table);
	ldap_conf_free(lc->conf);
	free(lc);
}

/* Copies user in lower case into key; false when empty or too long. */
static bool user_key(const char *user, char *key, size_t cap)
{
	size_t n = user != NULL ? strnlen(user, LDAP_SRC_USER_MAX + 1) : 0;

	if (n == 0 || n > LDAP_SRC_USER_MAX || n >= cap)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = user[i];

		key[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	key[n] = '\0';
	return true;
}

/* Answers at once with the fallback. */
static int answer_now(struct ldap_client *lc, const char *key,
                      struct ldap_reply *now)
{
	now->answer = ldap_cache_fallback(lc->cache, key, now->database,
	                                  sizeof(now->database));
	lc->st.failed++;
	return 1;
}

/* Adds a waiter for cb(arg) to s. */
static struct ldap_lookup *waiter_add(struct search *s, ldap_cb cb, void *arg)
{
	struct ldap_lookup *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->s = s;
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&s->waiters, w, link);
	return w;
}

/* Finds the search for key, joining one under way or queueing a new one.
 * Returns 0 with *out set, 1 when the fallback answered into *now (the
 * directory is known down, or the queue is full), -1 when out of memory. */
static int search_for(struct ldap_client *lc, const char *key,
                      struct ldap_reply *now, struct search **out)
{
	uint64_t hash = str_hash_ci(str_from(key));

	*out = *table_slot(lc, key, hash);
	if (*out != NULL) {
		lc->st.coalesced++;
		return 0;
	}
	/* A directory known to be down answers at once: better the last
	 * answer now than the same after a stall. */
	if (lc->state == CONN_DOWN ||
	    (lc->state == CONN_CONNECTING && lc->fails > 0))
		return answer_now(lc, key, now);
	if (lc->n_queued >= lc->conf->max_queue) {
		lc->st.queue_full++;
		return answer_now(lc, key, now);
	}
	*out = search_new(lc, key, hash);
	if (*out == NULL)
		return -1;
	if (lc->state == CONN_UP)
		event_active(lc->pump, EV_WRITE, 0);
	return 0;
}

int ldap_lookup(struct ldap_client *lc, const char *user, ldap_cb cb, void *arg,
                struct ldap_lookup **handle, struct ldap_reply *now)
{
	char key[LDAP_SRC_USER_MAX + 1];
	struct ldap_lookup *w;
	struct search *s;
	int rc;

	if (handle != NULL)
		*handle = NULL;
	if (lc == NULL || cb == NULL || now == NULL ||
	    !user_key(user, key, sizeof(key)))
		return -1;
	lc->st.lookups++;
	now->database[0] = '\0';
	if (ldap_cache_get(lc->cache, key, &now->answer, now->database,
	                   sizeof(now->database))) {
		lc->st.cached++;
		return 1;
	}
	rc = search_for(lc, key, now, &s);
	if (rc != 0)
		return rc;
	w = waiter_add(s, cb, arg);
	if (w == NULL) {
		if (TAILQ_EMPTY(&s->waiters) && s->state == SEARCH_QUEUED) {
			search_unlink(s);
			search_free(s);
		}
		return -1;
	}
	if (handle != NULL)
		*handle = w;
	return 0;
}

void ldap_lookup_cancel(struct ldap_lookup *h)
{
	struct search *s;

	if (h == NULL)
		return;
	s = h->s;
	TAILQ_REMOVE(&s->waiters, h, link);
	free(h);
	/* A search nobody waits for is dropped unless already sent: then
	 * its answer still fills the cache. */
	if (TAILQ_EMPTY(&s->waiters) && s->state == SEARCH_QUEUED) {
		search_unlink(s);
		search_free(s);
	}
}

void ldap_client_stats(const struct ldap_client *lc,
                       struct ldap_client_stats *out)
{
	*out = lc->st;
	out->inflight = lc->n_inflight;
	out->queued = lc->n_queued;
}
