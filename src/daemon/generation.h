/*
 * Building a generation from a config file: config, site map, certificates,
 * CAS targets. Used at start-up and by every reload; a failure leaves
 * nothing behind and says why in "FILE:LINE: reason" lines.
 */
#ifndef EF_DAEMON_GENERATION_H
#define EF_DAEMON_GENERATION_H

struct gen;
struct proxy;

/* Builds generation id from the config at path, CAS pool ids taken from p
 * (NULL: every target gets id 0, for commands that serve nothing). Returns
 * it with one reference, or NULL with *err (malloc'd). */
struct gen *generation_build(struct proxy *p, const char *path, unsigned id,
			     char **err);

#endif
