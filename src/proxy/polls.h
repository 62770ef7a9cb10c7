/*
 * The long-polls of each device (guard.throttle.long_polls_per_device,
 * DESIGN.md "Edge protection"): every Ping or Sync a CAS holds, by the
 * keyed hash of its DeviceId, across the workers of the process. A phone
 * whose connection died behind a NAT re-issues its Ping on a new one; the
 * old Ping stays held at the CAS until its heartbeat, one more connection
 * and one more CAS thread a time. When a device starts one more than
 * allowed, the oldest is ended. Internal to proxy/.
 *
 * Ending crosses threads: the request to end may live on another worker.
 * It is marked in the registry and its worker is told (worker_end_poll);
 * that worker ends it only if the mark is still there when it looks, which
 * it does on its own thread, where the request's own end would have
 * removed it: a request that ended meanwhile is never touched.
 */
#ifndef EF_PROXY_POLLS_H
#define EF_PROXY_POLLS_H

#include <stdbool.h>
#include <stdint.h>

struct session;

/* One held request: where it lives and which one it is. */
struct poll_ref {
	struct session *s;
	uint64_t serial; /* the request's, unique in the process */
	unsigned worker;
};

struct polls;

/* NULL without memory. */
struct polls *polls_new(void);
/* NULL is accepted. */
void polls_free(struct polls *p);

/* Records that request r of device key is held, limit at most per device
 * (0: none). Returns true with *victim set when that makes one too many:
 * the oldest other request of the device, now marked to be ended. */
bool polls_begin(struct polls *p, uint64_t key, const struct poll_ref *r,
		 unsigned limit, struct poll_ref *victim);

/* The held request r of device key is over (answered, closed, ended). */
void polls_end(struct polls *p, uint64_t key, const struct poll_ref *r);

/* On r's worker: true when r is still held and marked to be ended, and
 * then forgets it (the caller ends it). */
bool polls_take_marked(struct polls *p, uint64_t key, const struct poll_ref *r);

#endif
