/*
 * The data path: worker threads (one libevent base each, SO_REUSEPORT
 * listeners), client sessions over two bufferevents, upstream pools. The
 * daemon creates it, publishes generations into it and stops it.
 */
#ifndef EF_PROXY_PROXY_H
#define EF_PROXY_PROXY_H

#include <stdbool.h>

struct conf;
struct gen;
struct proxy;

/* A proxy with n_workers worker threads (not started). NULL on failure. */
struct proxy *proxy_new(unsigned n_workers, char **err);

/* Opens one SO_REUSEPORT listening socket per worker and listen address of c.
 * Call before dropping privileges. Returns 0, or -1 with *err. */
int proxy_listen(struct proxy *p, const struct conf *c, char **err);

/* The pool index of a CAS URL: equal URLs get equal ids in every generation,
 * so a reload keeps the idle upstream connections of unchanged CAS. */
unsigned proxy_cas_id(struct proxy *p, const char *url);

/* Makes g the generation new requests use; takes over the caller's reference.
 * Workers pick it up asynchronously; requests in flight keep theirs. */
void proxy_publish(struct proxy *p, struct gen *g);

struct stats_snapshot;

/* The current generation with a reference for the caller, or NULL. */
struct gen *proxy_gen_hold(struct proxy *p);

/* Sums every worker's counters into *out (zeroed first). Any thread. */
void proxy_stats(struct proxy *p, struct stats_snapshot *out);

/* Starts the worker threads. Returns 0 or -1 with *err. */
int proxy_start(struct proxy *p, char **err);

/* Stops accepting, lets requests in flight finish for up to drain_seconds,
 * closes what is left and joins the workers. */
void proxy_stop(struct proxy *p, unsigned drain_seconds);

/* Frees a stopped (or never started) proxy. NULL is accepted. */
void proxy_free(struct proxy *p);

#endif
