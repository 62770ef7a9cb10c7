/*
 * GET /: the status page, one self-contained document (src/admin/page/:
 * its HTML, CSS and script, compiled in) that draws /status.
 */
#ifndef EF_ADMIN_PAGE_H
#define EF_ADMIN_PAGE_H

struct evbuffer;
struct evkeyvalq;

/* Appends the page to b and its headers to headers: a
 * Content-Security-Policy that allows its own inline style and script (by
 * their SHA-256) and fetches from this origin only, nothing else. Returns
 * 0, or -1 when out of memory. */
int page_render(struct evbuffer *b, struct evkeyvalq *headers);

#endif
