/*
 * GET /status: the JSON the status page draws, every number of it
 * (README.md "The admin endpoint's /status" lists the fields).
 */
#ifndef EF_ADMIN_STATUS_H
#define EF_ADMIN_STATUS_H

struct admin_hooks;
struct evbuffer;
struct gen;
struct history;
struct proxy;

/* Appends s to b as a JSON string: quotes, backslashes and control bytes
 * escaped (s comes from the config or from clients). NULL gives "". */
void status_json_str(struct evbuffer *b, const char *s);

/* The site that serves site's users now, as routing sees it: site
 * itself while it is up, else its fallback followed along the chain past
 * down sites; -1 when none is up. */
int status_serving_site(const struct gen *g, int site);

/* Appends the whole /status object for generation g (held by the caller)
 * of p to b. history may be NULL (no decisions are shown then). */
void status_render(struct evbuffer *b, struct proxy *p, const struct gen *g,
                   const struct admin_hooks *hooks, const struct history *h);

#endif
