/*
 * The access log: one JSON (or text) line per request, never a credential.
 */
#ifndef EF_PROXY_ACCESSLOG_H
#define EF_PROXY_ACCESSLOG_H

/* Where lines go: an fd opened by the daemon (-1: nowhere). The daemon may
 * swap it (SIGUSR1) at any time; writers read it once per line. */
void accesslog_set_fd(int fd);
int accesslog_get_fd(void);

struct worker;
/* Lines are gathered per worker and written at the end of each loop pass,
 * one write(2) for all of them, before that pass's responses leave: whole
 * lines only, so lines of different workers never interleave. */
int accesslog_worker_init(struct worker *w);
/* Writes what w gathered and releases it. */
void accesslog_worker_done(struct worker *w);

#endif
