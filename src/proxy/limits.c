#include "proxy/limits.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"

struct limits_client {
	struct limits_client *next;
	uint8_t addr[16];
	uint8_t len;
	unsigned count;
};

void limits_init(struct limits *l)
{
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
}

void limits_destroy(struct limits *l)
{
	for (unsigned i = 0; i < LIMITS_BUCKETS; i++) {
		while (l->buckets[i] != NULL) {
			struct limits_client *c = l->buckets[i];

			l->buckets[i] = c->next;
			free(c);
		}
	}
	pthread_mutex_destroy(&l->lock);
}

static unsigned bucket(const uint8_t *addr, unsigned len)
{
	return (unsigned)(str_hash_ci((struct str){(const char *)addr, len}) %
			  LIMITS_BUCKETS);
}

/* The client's address bytes; a v4-mapped v6 address counts as its v4. */
static void ticket_addr(const struct sockaddr *sa, struct limits_ticket *t)
{
	if (sa->sa_family == AF_INET) {
		memcpy(t->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		t->len = 4;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
			&((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(t->addr, a->s6_addr + 12, 4);
			t->len = 4;
		} else {
			memcpy(t->addr, a->s6_addr, 16);
			t->len = 16;
		}
	} else {
		t->len = 0;
	}
}

/* The count of t's address, created at 0 when absent (NULL when memory
 * runs out: that client is then not capped). Called under the lock. */
static struct limits_client *client_get(struct limits *l,
					const struct limits_ticket *t)
{
	unsigned b = bucket(t->addr, t->len);
	struct limits_client *c;

	for (c = l->buckets[b]; c != NULL; c = c->next)
		if (c->len == t->len && memcmp(c->addr, t->addr, t->len) == 0)
			return c;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	memcpy(c->addr, t->addr, t->len);
	c->len = t->len;
	c->next = l->buckets[b];
	l->buckets[b] = c;
	return c;
}

bool limits_admit(struct limits *l, const struct sockaddr *sa,
		  unsigned max_total, unsigned max_per_client,
		  struct limits_ticket *t)
{
	unsigned total = atomic_fetch_add(&l->total, 1) + 1;
	unsigned mine = 0;
	struct limits_client *c;

	ticket_addr(sa, t);
	if (t->len > 0) {
		pthread_mutex_lock(&l->lock);
		c = client_get(l, t);
		if (c != NULL)
			mine = ++c->count;
		else
			t->len = 0;
		pthread_mutex_unlock(&l->lock);
	}
	if (max_total != 0 && total > max_total)
		return false;
	return max_per_client == 0 || mine <= max_per_client;
}

void limits_release(struct limits *l, struct limits_ticket *t)
{
	unsigned b;
	struct limits_client **pp;

	atomic_fetch_sub(&l->total, 1);
	if (t->len == 0)
		return;
	b = bucket(t->addr, t->len);
	pthread_mutex_lock(&l->lock);
	for (pp = &l->buckets[b]; *pp != NULL; pp = &(*pp)->next) {
		struct limits_client *c = *pp;

		if (c->len != t->len || memcmp(c->addr, t->addr, t->len) != 0)
			continue;
		if (--c->count == 0) {
			*pp = c->next;
			free(c);
		}
		break;
	}
	pthread_mutex_unlock(&l->lock);
	t->len = 0;
}
