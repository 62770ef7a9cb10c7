#include "tls/tls_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

void tls_err_add(char **err, const char *fmt, ...)
{
	char line[1024];
	size_t old, add;
	char *p;
	va_list ap;
	int r;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	r = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	add = strlen(line);
	old = *err ? strlen(*err) : 0;
	/* Lines are joined by '\n' with none after the last, so the text can go
	 * to log_warnx("%s") as well as to stderr with a newline. */
	p = realloc(*err, old + (old ? 1 : 0) + add + 1);
	if (p == NULL)
		return;
	if (old)
		p[old++] = '\n';
	memcpy(p + old, line, add + 1);
	*err = p;
}

void tls_err_ssl(char *why, size_t cap, const char *fmt, ...)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;
	size_t n;
	va_list ap;
	int r;

	if (cap == 0)
		return;
	va_start(ap, fmt);
	r = vsnprintf(why, cap, fmt, ap);
	va_end(ap);
	if (r < 0)
		why[0] = '\0';
	n = strnlen(why, cap);
	snprintf(why + n, cap - n, ": %s", reason ? reason : "unknown error");
	ERR_clear_error();
}
