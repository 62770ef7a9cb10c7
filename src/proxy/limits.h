/*
 * Connection caps: limits.connections for the whole process and
 * limits.connections_per_client per client address. A connection beyond a
 * cap is still accepted and answered (503 with Retry-After after the TLS
 * handshake), never reset, so the client backs off instead of retrying at
 * once.
 */
#ifndef EF_PROXY_LIMITS_H
#define EF_PROXY_LIMITS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define LIMITS_BUCKETS 4096

struct limits_client;

/* Counts shared by every worker. */
struct limits {
	atomic_uint total;
	pthread_mutex_t lock; /* guards the buckets */
	struct limits_client *buckets[LIMITS_BUCKETS];
};

/* What a session keeps to give its place back. */
struct limits_ticket {
	uint8_t addr[16];
	uint8_t len; /* 0: nothing counted */
};

void limits_init(struct limits *l);
void limits_destroy(struct limits *l);

/* Counts a new connection from sa into t; returns false when it exceeds
 * max_total or max_per_client (0 means no cap). Always counted: release
 * with limits_release either way. */
bool limits_admit(struct limits *l, const struct sockaddr *sa,
		  unsigned max_total, unsigned max_per_client,
		  struct limits_ticket *t);

/* Gives back what limits_admit counted; a zeroed ticket is accepted. */
void limits_release(struct limits *l, struct limits_ticket *t);

#endif
