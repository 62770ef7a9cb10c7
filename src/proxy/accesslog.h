/*
 * The access log: one JSON (or text) line per request, never a credential.
 */
#ifndef EF_PROXY_ACCESSLOG_H
#define EF_PROXY_ACCESSLOG_H

/* Where lines go: an fd opened by the daemon (-1: nowhere). The daemon may
 * swap it (SIGUSR1) at any time; writers read it once per line. */
void accesslog_set_fd(int fd);
int accesslog_get_fd(void);

#endif
