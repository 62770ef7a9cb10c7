/*
 * Logging for every part: one write(2) per line so that worker threads never
 * interleave. Levels follow relayd: warnings (with and without errno), info,
 * debug; fatal only at start-up.
 */
#ifndef EF_CORE_LOG_H
#define EF_CORE_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_L_ERROR = 0,
	LOG_L_WARN = 1,
	LOG_L_INFO = 2,
	LOG_L_DEBUG = 3,
};

/* Sets where lines go (an fd, stderr by default) and the least important level
 * written. Call before threads start. */
void log_init(int fd, enum log_level level);
/* Current threshold; lets callers skip building expensive debug text. */
enum log_level log_get_level(void);
/* Returns the level named by s ("error", "warn", "info", "debug") or -1. */
int log_level_parse(const char *s);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs with errno and exits 1; start-up only. */
void fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
/* Logs and exits 1; start-up only. */
void fatalx(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
