#include "proxy/accesslog.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "conf/conf.h"
#include "core/clock.h"
#include "core/log.h"
#include "proxy/gen.h"
#include "proxy/session.h"
#include "proxy/worker.h"
#include "tls/tls.h"

static atomic_int access_fd = -1;

void accesslog_set_fd(int fd)
{
	atomic_store(&access_fd, fd);
}

int accesslog_get_fd(void)
{
	return atomic_load(&access_fd);
}

/* Appends s as a JSON string body: quotes, backslashes and control bytes
 * escaped, so a hostile user name cannot forge log fields. */
static size_t json_str(char *out, size_t cap, const char *s)
{
	size_t n = 0;

	for (; *s != '\0' && n + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	out[n] = '\0';
	return n;
}

static long since_ms(uint64_t from, uint64_t to)
{
	return (from == 0 || to < from) ? -1 : (long)((to - from) / 1000);
}

/* A keyed hash in place of a user or device id: the same input gives the
 * same 16 hex digits, so one device's requests can still be followed, but
 * the log holds no identity. */
static void hash_identity(const struct gen *g, char *v, size_t cap)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (v[0] == '\0' || cap < 17)
		return;
	if (HMAC(EVP_sha256(), g->log_key, (int)g->log_key_len,
		 (const unsigned char *)v, strlen(v), mac, &n) == NULL ||
	    n < 8) {
		v[0] = '\0';
		return;
	}
	for (unsigned i = 0; i < 8; i++)
		snprintf(v + 2 * i, cap - 2 * i, "%02x", mac[i]);
}

/* Everything one line says, already escaped for JSON (text lines use the
 * same escaping: a quote or a control byte never reaches the log raw). */
struct logline {
	char ts[40], user[256], dev[96], devt[64], sni[300];
	const char *site;
	long ms_head, ms_connect, ms_first, ms_total;
};

static void logline_fill(struct session *s, struct logline *l)
{
	char user[128], dev[48];
	struct timespec rt;
	struct tm tm;
	uint64_t now = clock_mono_us();
	size_t n;

	memcpy(user, s->txn.log.user, sizeof(user));
	memcpy(dev, s->txn.log.device, sizeof(dev));
	if (s->g->conf->log_hash_identities) {
		hash_identity(s->g, user, sizeof(user));
		hash_identity(s->g, dev, sizeof(dev));
	}
	json_str(l->user, sizeof(l->user), user);
	json_str(l->dev, sizeof(l->dev), dev);
	json_str(l->devt, sizeof(l->devt), s->txn.log.device_type);
	json_str(l->sni, sizeof(l->sni), s->sni ? s->sni : "");
	l->site = "-";
	if (s->txn.log.site >= 0 && (unsigned)s->txn.log.site < s->g->conf->n_sites)
		l->site = s->g->conf->sites[s->txn.log.site].name;
	clock_gettime(CLOCK_REALTIME, &rt);
	gmtime_r(&rt.tv_sec, &tm);
	n = strftime(l->ts, sizeof(l->ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(l->ts + n, sizeof(l->ts) - n, ".%03ldZ",
		 rt.tv_nsec / 1000000);
	l->ms_head = since_ms(s->txn.log.t_start, s->txn.log.t_head);
	l->ms_connect = since_ms(s->txn.log.t_head, s->txn.log.t_connected);
	l->ms_first = since_ms(s->txn.log.t_head, s->txn.log.t_first);
	l->ms_total = since_ms(s->txn.log.t_start, now);
}

static int format_json(const struct session *s, const struct logline *l,
		       char *line, size_t cap)
{
	return snprintf(
		line, cap,
		"{\"time\":\"%s\",\"client\":\"%s\",\"sni\":\"%s\","
		"\"method\":\"%s\",\"cmd\":\"%s\",\"version\":%u,"
		"\"user\":\"%s\",\"device\":\"%s\",\"device_type\":\"%s\","
		"\"decision\":\"%s\",\"reason\":\"%s\",\"rule\":%u,"
		"\"site\":\"%s\","
		"\"upstream\":\"%s\",\"status\":%u,\"bytes_in\":%llu,"
		"\"bytes_out\":%llu,\"ms_head\":%ld,\"ms_connect\":%ld,"
		"\"ms_first_byte\":%ld,\"ms_total\":%ld,\"term\":\"%s\"}\n",
		l->ts, s->client_ip, l->sni, s->txn.log.method, s->txn.log.cmd,
		s->txn.log.version, l->user, l->dev, l->devt,
		s->txn.log.decision ? s->txn.log.decision : "-",
		s->txn.log.reason ? s->txn.log.reason : "-",
		s->txn.log.rule_line, l->site,
		s->txn.log.upstream[0] ? s->txn.log.upstream : "-", s->txn.log.status,
		(unsigned long long)s->client.bytes,
		(unsigned long long)(s->txn.log.bytes_out + s->up.bytes), l->ms_head,
		l->ms_connect, l->ms_first, l->ms_total,
		term_code(s->txn.log.term));
}

/* The text form, for operators who grep: fixed order, '-' for empty. */
static int format_text(const struct session *s, const struct logline *l,
		       char *line, size_t cap)
{
#define DASH(x) ((x) && (x)[0] ? (x) : "-")
	return snprintf(line, cap,
			"%s %s %s \"%s %s\" %u user=%s device=%s type=%s "
			"%s/%s rule=%u site=%s upstream=%s %u in=%llu out=%llu "
			"ms=%ld/%ld/%ld/%ld %s\n",
			l->ts, s->client_ip, DASH(l->sni), DASH(s->txn.log.method),
			DASH(s->txn.log.cmd), s->txn.log.version, DASH(l->user),
			DASH(l->dev), DASH(l->devt), DASH(s->txn.log.decision),
			DASH(s->txn.log.reason), s->txn.log.rule_line, l->site,
			DASH(s->txn.log.upstream),
			s->txn.log.status, (unsigned long long)s->client.bytes,
			(unsigned long long)(s->txn.log.bytes_out + s->up.bytes),
			l->ms_head, l->ms_connect, l->ms_first, l->ms_total,
			term_code(s->txn.log.term));
#undef DASH
}

/* Bytes of lines a worker gathers before writing them out early. */
#define ALOG_BUF (32 * 1024)
#define ALOG_LINE 2048

/* Writes what the worker gathered: at the end of each loop pass (its own
 * event), before that pass's responses leave (the connection loop's hook),
 * and when the buffer is full. A failed write (a full disk) loses lines,
 * never requests. */
static void alog_flush(void *arg)
{
	struct worker *w = arg;
	int fd = accesslog_get_fd();

	if (w->alog_len > 0 && fd >= 0 && write(fd, w->alog, w->alog_len) < 0)
		log_debug("access log: write failed");
	w->alog_len = 0;
}

static void alog_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	alog_flush(arg);
}

int accesslog_worker_init(struct worker *w)
{
	w->alog = malloc(ALOG_BUF);
	w->alog_ev = event_new(w->base, -1, 0, alog_flush_cb, w);
	w->loop.before_flush = alog_flush;
	w->loop.before_flush_arg = w;
	return w->alog != NULL && w->alog_ev != NULL ? 0 : -1;
}

void accesslog_worker_done(struct worker *w)
{
	if (w->alog != NULL)
		alog_flush(w);
	if (w->alog_ev != NULL)
		event_free(w->alog_ev);
	free(w->alog);
	w->alog = NULL;
	w->alog_ev = NULL;
}

void accesslog_write(struct session *s)
{
	struct worker *w = s->w;
	struct logline l;
	char *line;
	int n;

	if (accesslog_get_fd() < 0 || s->g == NULL || w->alog == NULL)
		return;
	if (w->alog_len + ALOG_LINE > ALOG_BUF)
		alog_flush(w);
	line = w->alog + w->alog_len;
	logline_fill(s, &l);
	n = s->g->conf->log_format == CONF_LOG_TEXT
		    ? format_text(s, &l, line, ALOG_LINE)
		    : format_json(s, &l, line, ALOG_LINE);
	if (n < 0)
		return;
	if (n >= ALOG_LINE) {
		n = ALOG_LINE - 1;
		line[n - 1] = '\n';
	}
	if (w->alog_len == 0)
		event_active(w->alog_ev, EV_WRITE, 1);
	w->alog_len += (size_t)n;
}
