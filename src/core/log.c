#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static enum log_level log_level = LOG_L_INFO;

void log_init(int fd, enum log_level level)
{
	log_fd = fd;
	log_level = level;
}

enum log_level log_get_level(void)
{
	return log_level;
}

int log_level_parse(const char *s)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

/* Formats "TIME LEVEL message[: strerror]\n" and writes it in one call, so that
 * lines from different threads never mix. */
__attribute__((format(printf, 3, 0)))
static void log_vwrite(enum log_level level, int errnum, const char *fmt,
		       va_list ap)
{
	static const char *const tags[] = {"error", "warn", "info", "debug"};
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ",
		     ts.tv_nsec / 1000000, tags[level]);
	if (r > 0)
		n += (size_t)r;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r;
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	if (errnum != 0) {
		r = snprintf(line + n, sizeof(line) - n, ": %s",
			     strerror(errnum));
		if (r > 0)
			n += (size_t)r;
		if (n >= sizeof(line) - 1)
			n = sizeof(line) - 2;
	}
	line[n++] = '\n';
	/* A log write that fails has nowhere to be reported. */
	if (write(log_fd, line, n) < 0)
		return;
}

#define LOG_BODY(level, errnum)                                                \
	do {                                                                   \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		log_vwrite(level, errnum, fmt, ap);                            \
		va_end(ap);                                                    \
	} while (0)

void log_warn(const char *fmt, ...)
{
	int e = errno;

	LOG_BODY(LOG_L_WARN, e);
	errno = e;
}

void log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_L_WARN, 0);
}

void log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_L_INFO, 0);
}

void log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_L_DEBUG, 0);
}

void fatal(const char *fmt, ...)
{
	int e = errno;

	LOG_BODY(LOG_L_ERROR, e);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_L_ERROR, 0);
	exit(1);
}
