/*
 * The guard on the data path (DESIGN.md "Edge protection"): asked once a
 * request's facts are read and before it is routed, device rules first,
 * then the password shield, then the throttle, each either letting the
 * request pass or answering it here; and the CAS's answer fed back to the
 * shield.
 *
 * A password enters here only to be hashed at once (on the stack, wiped);
 * the request keeps the ids, never the credentials.
 */
#include "proxy/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "core/log.h"
#include "core/siphash.h"
#include "guard/rules.h"
#include "guard/shield.h"
#include "proxy/buckets.h"
#include "proxy/gen.h"
#include "proxy/polls.h"
#include "proxy/shields.h"
#include "proxy/stats.h"
#include "proxy/worker.h"
#include "site/sitemap.h"

/* Slots of stats.guard_answers, in stats_guard_reason's order. */
enum {
	ANSWER_DEVICE_BLOCKED = 0,
	ANSWER_STALE_PASSWORD,
	ANSWER_PASSWORD_GUESSING,
	ANSWER_THROTTLED, /* + enum bucket_kind */
};

/* Longest User-Agent matched from the stack; longer ones are copied to
 * the heap (a head is at most 32 KiB). */
#define UA_STACK 1024

static void answer_403(struct session *s, unsigned rule)
{
	s->txn.log.decision = "reject";
	s->txn.log.reason = "device-blocked";
	s->txn.log.rule_line = rules_rule(s->g->rules, rule)->line;
	stat_add(&s->w->stats.guard_answers[ANSWER_DEVICE_BLOCKED], 1);
	/* Blocks are rare and shared by the workers: one atomic add. */
	atomic_fetch_add_explicit(&s->g->rule_blocks[rule], 1,
				  memory_order_relaxed);
	session_respond_error(s, 403, TERM_LOCAL);
}

/* The answer a phone understands as "ask the user for the password":
 * the challenge the CAS itself would send, for the name the phone used. */
static void answer_401(struct session *s, const struct eas_facts *f,
		       enum shield_verdict v)
{
	char extra[EAS_HOST_MAX + 96];
	bool stale = v == SHIELD_STALE_PASSWORD;

	snprintf(extra, sizeof(extra),
		 "Content-Type: text/plain\r\n"
		 "WWW-Authenticate: Basic realm=\"%s\"\r\n",
		 f->host[0] != '\0' ? f->host : s->g->hostname);
	s->txn.log.decision = "reject";
	s->txn.log.reason = stale ? "stale-password" : "password-guessing";
	s->txn.log.term = TERM_LOCAL;
	stat_add(&s->w->stats.guard_answers[stale ? ANSWER_STALE_PASSWORD
						  : ANSWER_PASSWORD_GUESSING],
		 1);
	session_respond(s, 401, extra, "401 Unauthorized\n");
}

/* Exchange's own answer to a device over its budget (MS-ASHTTP 3.1.5.2.3,
 * EAS.md 10), which EAS clients honour by waiting Retry-After. */
static void answer_503(struct session *s, enum bucket_kind k)
{
	static const char *const reasons[BUCKET_KINDS] = {
	    "throttled-device", "throttled-user", "throttled-client"};
	char extra[160];

	snprintf(extra, sizeof(extra),
		 "Content-Type: text/plain\r\n"
		 "X-MS-ASThrottle: CommandFrequency\r\n"
		 "Retry-After: %u\r\n",
		 s->g->conf->guard_throttle.retry_after);
	s->txn.log.decision = "reject";
	s->txn.log.reason = reasons[k];
	s->txn.log.term = TERM_LOCAL;
	stat_add(&s->w->stats.guard_answers[ANSWER_THROTTLED + k], 1);
	session_respond(s, 503, extra, "503 Service Unavailable\n");
}

/* The registry's key of the request's device: its device bucket's. */
static uint64_t device_key(const struct session *s)
{
	return buckets_name(s->g, BUCKET_DEVICE, s->txn.log.device);
}

void screen_poll_begin(struct session *s)
{
	const struct conf *c = s->g != NULL ? s->g->conf : NULL;
	struct poll_ref r, victim;

	/* Pings only: a Sync with Wait cannot be told from a plain Sync
	 * without reading its body, and counting every Sync made each one
	 * pay for the registry (an eighth more instructions a request). */
	if (c == NULL || !c->guard_throttle_on ||
	    c->guard_throttle.long_polls_per_device == 0 ||
	    s->txn.log.device[0] == '\0' ||
	    s->txn.log.cmd_slot != stats_cmd_slot(EAS_CMD_PING))
		return;
	s->txn.poll_key = device_key(s);
	s->txn.poll_serial =
	    ++s->w->poll_serials << 8 | (s->w->idx & 0xff);
	s->txn.flags |= TXN_F_POLL;
	r = (struct poll_ref){s, s->txn.poll_serial, s->w->idx};
	if (polls_begin(s->w->p->polls, s->txn.poll_key, &r,
			c->guard_throttle.long_polls_per_device, &victim))
		worker_end_poll(&s->w->p->workers[victim.worker], &victim,
				s->txn.poll_key);
}

void screen_poll_end(struct session *s)
{
	struct poll_ref r = {s, s->txn.poll_serial, s->w->idx};

	if (!(s->txn.flags & TXN_F_POLL))
		return;
	s->txn.flags &= ~TXN_F_POLL;
	polls_end(s->w->p->polls, s->txn.poll_key, &r);
}

/* A Ping answered "the heartbeat expired, nothing changed" (MS-ASCMD
 * 2.2.3.177.11, Status 1): the client re-issues it. */
static const unsigned char ping_status_1[] = {
    0x03, 0x01, 0x6a, 0x00,	  /* WBXML 1.3, UTF-8 */
    0x00, 0x0d,			  /* code page 13: Ping */
    0x45, 0x47, 0x03, '1', 0x00, /* <Ping><Status>1 */
    0x01, 0x01,			  /* </Status></Ping> */
};

void screen_poll_supersede(struct session *s)
{
	s->txn.flags &= ~TXN_F_POLL;
	s->txn.log.reason = "superseded-long-poll";
	/* An NTLM connection's CAS keeps answering the old request on the
	 * same connection: only closing both ends it. */
	if (s->flags & SESSION_F_PINNED) {
		session_close(s, TERM_LOCAL);
		return;
	}
	session_respond_bytes(s, 200,
			      "Content-Type: application/vnd.ms-sync.wbxml\r\n",
			      ping_status_1, sizeof(ping_status_1));
}

/* The names of the request's buckets: its device's, its user's, its
 * client address's, each when the request has that key and the bucket is
 * on (0 otherwise). */
static void bucket_names(struct session *s, const struct eas_facts *f,
			 const char *user, uint64_t out[BUCKET_KINDS])
{
	const struct conf_guard_throttle *t = &s->g->conf->guard_throttle;

	out[BUCKET_DEVICE] =
	    f->device_id[0] != '\0' && t->device.requests > 0
		? buckets_name(s->g, BUCKET_DEVICE, f->device_id)
		: 0;
	out[BUCKET_USER] =
	    user != NULL && user[0] != '\0' && t->user.requests > 0
		? buckets_name(s->g, BUCKET_USER, user)
		: 0;
	out[BUCKET_CLIENT] =
	    t->client.requests > 0
		? buckets_name(s->g, BUCKET_CLIENT, s->client_ip)
		: 0;
}

/* Spends a token of each of the request's buckets (named in the memo). */
static enum bucket_kind throttle(struct session *s, const struct eas_facts *f,
				 const char *user)
{
	struct screen_memo *m = &s->memo;

	if (!(m->known & SCREEN_M_KEYS)) {
		bucket_names(s, f, user, m->bucket);
		m->known |= SCREEN_M_KEYS;
	}
	return buckets_take(s->w->p->buckets, m->bucket);
}

/* The first rule the request meets, -1 for none (default allow). */
static int device_rule(struct session *s, const struct http_header *h,
		       const struct eas_facts *f, const char *user)
{
	char stack[UA_STACK], *ua = stack;
	struct rules_facts rf;
	int hit;

	if (h != NULL && h->value.len >= sizeof(stack) &&
	    (ua = malloc(h->value.len + 1)) == NULL)
		return -2;
	/* The codec refused NUL in values: the copy is the whole value. */
	if (h != NULL)
		memcpy(ua, h->value.p, h->value.len);
	ua[h != NULL ? h->value.len : 0] = '\0';
	rf = (struct rules_facts){
	    .device_id = f->device_id,
	    .device_type = f->device_type,
	    .user_agent = ua,
	    .user = user != NULL ? user : "",
	    .cmd = f->cmd_name,
	    .version = f->version,
	};
	hit = rules_match_memo(s->g->rules, s->w->rules_memo, &rf);
	if (ua != stack)
		free(ua);
	return hit;
}

/* The token68 of a Basic Authorization value ("Basic  abc=" -> "abc="). */
static struct str basic_token(struct str v)
{
	size_t i = 0;

	v = str_trim(v);
	while (i < v.len && v.p[i] != ' ' && v.p[i] != '\t')
		i++;
	return str_trim((struct str){v.p + i, v.len - i});
}

/* Hashes the Basic credentials of Authorization value h into the memo's
 * ids; false when they are not Basic credentials of user. */
static bool credential_ids(struct session *s, const struct http_header *h,
			   const char *user)
{
	struct screen_memo *m = &s->memo;
	uint8_t pass[EAS_USER_MAX];
	size_t len = 0;
	int rc;

	if (h == NULL || eas_basic_password(basic_token(h->value), pass,
					    sizeof(pass), &len) != 0)
		return false;
	rc = shield_key_ids(s->g->guard_key, user, (const char *)pass, len,
			    m->user, m->pass);
	explicit_bzero(pass, sizeof(pass));
	return rc == 0;
}

/* The headers screening reads, found in one walk. */
struct screen_heads {
	const struct http_header *auth, *ua;
};

static struct screen_heads screen_heads(const struct http_request *req)
{
	struct screen_heads sh = {NULL, NULL};

	/* The length first: most headers are neither. */
	for (size_t i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];

		if (h->name.len == 13 && sh.auth == NULL &&
		    str_eq_ci(h->name, STR_LIT("Authorization")))
			sh.auth = h;
		else if (h->name.len == 10 && sh.ua == NULL &&
			 str_eq_ci(h->name, STR_LIT("User-Agent")))
			sh.ua = h;
	}
	return sh;
}

/* The longest User-Agent a memo keeps; a longer one is screened afresh
 * on every request. */
#define MEMO_UA_MAX 256
/* The packed facts: small numbers, then five length-prefixed strings. */
#define FACTS_MAX (8 + 5 * 2 + EAS_CMD_NAME_MAX + EAS_DEVICE_ID_MAX + \
		   EAS_DEVICE_TYPE_MAX + EAS_USER_MAX + MEMO_UA_MAX)

/* Appends a string, its length first, so that no two requests' facts run
 * together alike. */
static size_t facts_put(uint8_t *buf, size_t at, const char *p, size_t n)
{
	uint16_t len = (uint16_t)n;

	memcpy(buf + at, &len, sizeof(len));
	memcpy(buf + at + sizeof(len), p, n);
	return at + sizeof(len) + n;
}

/* Packs what screening reads of the request besides Authorization into
 * buf (FACTS_MAX); 0 when the User-Agent is too long to keep. The client
 * address is the connection's own. */
static size_t facts_pack(uint8_t *buf, const struct screen_heads *sh,
			 const struct eas_facts *f, const char *user)
{
	const uint32_t small[2] = {f->version,
				   (uint32_t)f->user_src |
				       (uint32_t)(sh->auth != NULL) << 8 |
				       (uint32_t)(sh->ua != NULL) << 9};
	size_t n = sizeof(small);

	if (sh->ua != NULL && sh->ua->value.len > MEMO_UA_MAX)
		return 0;
	memcpy(buf, small, sizeof(small));
	n = facts_put(buf, n, f->cmd_name,
		      strnlen(f->cmd_name, EAS_CMD_NAME_MAX));
	n = facts_put(buf, n, f->device_id,
		      strnlen(f->device_id, EAS_DEVICE_ID_MAX));
	n = facts_put(buf, n, f->device_type,
		      strnlen(f->device_type, EAS_DEVICE_TYPE_MAX));
	n = facts_put(buf, n, user ? user : "",
		      user ? strnlen(user, EAS_USER_MAX) : 0);
	if (sh->ua != NULL)
		n = facts_put(buf, n, sh->ua->value.p, sh->ua->value.len);
	return n;
}

/* Keeps facts[0..n) in the memo; false without memory. */
static bool facts_keep(struct screen_memo *m, const uint8_t *facts, size_t n)
{
	if (n > m->facts_cap) {
		uint8_t *p = realloc(m->facts, n);

		if (p == NULL)
			return false;
		m->facts = p;
		m->facts_cap = (uint16_t)n;
	}
	memcpy(m->facts, facts, n);
	m->facts_len = (uint16_t)n;
	return true;
}

/* The connection's memo for this request: kept when the request reads
 * the same as the last one under the same generation, else emptied (and
 * made for this request when it can be). */
static struct screen_memo *memo_for(struct session *s,
				    const struct screen_heads *sh,
				    const struct eas_facts *f, const char *user)
{
	struct screen_memo *m = &s->memo;
	uint8_t facts[FACTS_MAX];
	size_t n = facts_pack(facts, sh, f, user);
	uint64_t fp = sh->auth != NULL ? siphash24(s->w->p->fp_key,
						   sh->auth->value.p,
						   sh->auth->value.len)
				       : 0;

	if (n != 0 && m->gen_id == s->g->id && m->auth_fp == fp &&
	    m->facts_len == n && memcmp(m->facts, facts, n) == 0)
		return m;
	m->gen_id = 0;
	m->known = 0;
	if (n != 0 && facts_keep(m, facts, n)) {
		m->gen_id = s->g->id;
		m->auth_fp = fp;
	}
	return m;
}

void screen_free(struct session *s)
{
	free(s->memo.facts);
	s->memo = (struct screen_memo){0};
}

bool screen_request(struct session *s, const struct http_request *req,
		    const struct eas_facts *f, const char *user)
{
	const struct gen *g = s->g;
	struct screen_heads sh;
	struct screen_memo *m;
	enum shield_verdict v;
	enum bucket_kind k;

	if (g->rules == NULL && g->guard_key == NULL &&
	    !g->conf->guard_throttle_on)
		return false;
	sh = screen_heads(req);
	m = memo_for(s, &sh, f, user);

	if (g->rules != NULL) {
		if (!(m->known & SCREEN_M_RULE)) {
			m->rule = device_rule(s, sh.ua, f, user);
			if (m->rule == -2) {
				session_respond_error(s, 503, TERM_LOCAL);
				return true;
			}
			m->known |= SCREEN_M_RULE;
		}
		if (m->rule >= 0 &&
		    rules_rule(g->rules, (unsigned)m->rule)->action ==
			CONF_RULE_BLOCK) {
			answer_403(s, (unsigned)m->rule);
			return true;
		}
	}
	/* Only Basic credentials are the CAS's to check against the
	 * directory per request; NTLM and Negotiate legs and Bearer probes
	 * never count (DESIGN.md). */
	if (g->guard_key != NULL && f->user_src == EAS_USER_BASIC &&
	    user != NULL && user[0] != '\0') {
		if (!(m->known & SCREEN_M_IDS)) {
			m->has_ids = credential_ids(s, sh.auth, user);
			m->known |= SCREEN_M_IDS;
		}
		if (m->has_ids) {
			memcpy(s->txn.shield_user, m->user, sizeof(m->user));
			memcpy(s->txn.shield_pass, m->pass, sizeof(m->pass));
			v = shields_check(s->w->p->shields, m->user, m->pass);
			if (v != SHIELD_PASS) {
				answer_401(s, f, v);
				return true;
			}
			s->txn.flags |= TXN_F_SHIELD;
		}
	}
	if (g->conf->guard_throttle_on &&
	    (k = throttle(s, f, user)) != BUCKET_NONE) {
		/* Nothing of it goes up: nothing to feed back. */
		s->txn.flags &= ~TXN_F_SHIELD;
		answer_503(s, k);
		return true;
	}
	return false;
}

/* What the CAS's status says of the credentials: 1 refused, 0 accepted,
 * -1 nothing (the CAS could not tell: it failed, throttled, or Autodiscover
 * answered 456/457 about the account, not the password). */
static int verdict_of(unsigned status)
{
	if (status == 401)
		return 1;
	if ((status >= 200 && status < 400) || status == 403 ||
	    status == 449 || status == 451)
		return 0;
	return -1;
}

void screen_feed(struct session *s, unsigned status)
{
	char user[256];
	int v;

	if (!(s->txn.flags & TXN_F_SHIELD) || status < 200)
		return;
	s->txn.flags &= ~TXN_F_SHIELD;
	v = verdict_of(status);
	if (v < 0)
		return;
	/* The name is wanted only when a refusal may begin a hold. */
	if (v != 1 || sitemap_normalise(s->g->conf, s->txn.log.user, user,
					sizeof(user)) == 0)
		user[0] = '\0';
	shields_feed(s->w->p->shields, user, s->txn.shield_user,
		     s->txn.shield_pass, v == 1);
}
