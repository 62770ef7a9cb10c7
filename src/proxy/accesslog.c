#include "proxy/accesslog.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>

#include "conf/conf.h"
#include "core/clock.h"
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

void accesslog_write(struct session *s)
{
	int fd = accesslog_get_fd();
	char line[2048], user[256], dev[96], devt[64], sni[300], ts[32];
	const char *site = "-";
	uint64_t now;
	struct timespec rt;
	struct tm tm;
	int n;

	if (fd < 0 || s->g == NULL)
		return;
	now = clock_mono_us();
	if (s->log.site >= 0 && (unsigned)s->log.site < s->g->conf->n_sites)
		site = s->g->conf->sites[s->log.site].name;
	json_str(user, sizeof(user), s->log.user);
	json_str(dev, sizeof(dev), s->log.device);
	json_str(devt, sizeof(devt), s->log.device_type);
	json_str(sni, sizeof(sni), s->sni ? s->sni : "");
	clock_gettime(CLOCK_REALTIME, &rt);
	gmtime_r(&rt.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line),
		     "{\"time\":\"%s.%03ldZ\",\"client\":\"%s\",\"sni\":\"%s\","
		     "\"method\":\"%s\",\"cmd\":\"%s\",\"version\":%u,"
		     "\"user\":\"%s\",\"device\":\"%s\",\"device_type\":\"%s\","
		     "\"decision\":\"%s\",\"reason\":\"%s\",\"site\":\"%s\","
		     "\"upstream\":\"%s\",\"status\":%u,\"bytes_in\":%llu,"
		     "\"bytes_out\":%llu,\"ms_head\":%ld,\"ms_connect\":%ld,"
		     "\"ms_first_byte\":%ld,\"ms_total\":%ld,\"term\":\"%s\"}\n",
		     ts, rt.tv_nsec / 1000000, s->client_ip, sni,
		     s->log.method, s->log.cmd, s->log.version, user, dev, devt,
		     s->log.decision ? s->log.decision : "-",
		     s->log.reason ? s->log.reason : "-", site,
		     s->log.upstream[0] ? s->log.upstream : "-", s->log.status,
		     (unsigned long long)s->client.bytes,
		     (unsigned long long)(s->log.bytes_out + s->up.bytes),
		     since_ms(s->log.t_start, s->log.t_head),
		     since_ms(s->log.t_head, s->log.t_connected),
		     since_ms(s->log.t_head, s->log.t_first),
		     since_ms(s->log.t_start, now),
		     s->log.term ? s->log.term : "--");
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	/* One write per line keeps lines whole across worker threads. */
	if (write(fd, line, (size_t)n) < 0)
		return;
}
