/*
 * The registry: a fixed array of hash chains of devices, each with its held
 * requests in the order they began. Bounded by the requests held, which
 * the connection caps bound.
 */
#include "proxy/polls.h"

#include <pthread.h>
#include <stdlib.h>

#define CHAINS 4096 /* a power of two */

struct held {
	struct poll_ref ref;
	bool marked; /* chosen to be ended; no longer counts */
	struct held *next;
};

struct device {
	uint64_t key;
	struct held *first, *last; /* oldest first */
	struct device *next;
};

struct polls {
	pthread_mutex_t lock;
	struct device *chain[CHAINS];
};

struct polls *polls_new(void)
{
	struct polls *p = calloc(1, sizeof(*p));

	if (p != NULL)
		pthread_mutex_init(&p->lock, NULL);
	return p;
}

void polls_free(struct polls *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < CHAINS; i++)
		while (p->chain[i] != NULL) {
			struct device *d = p->chain[i];

			p->chain[i] = d->next;
			while (d->first != NULL) {
				struct held *h = d->first;

				d->first = h->next;
				free(h);
			}
			free(d);
		}
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static struct device **slot_of(struct polls *p, uint64_t key)
{
	struct device **d = &p->chain[(key >> 20) & (CHAINS - 1)];

	while (*d != NULL && (*d)->key != key)
		d = &(*d)->next;
	return d;
}

static bool same(const struct poll_ref *a, const struct poll_ref *b)
{
	return a->s == b->s && a->serial == b->serial;
}

/* Unlinks r's entry from d; returns it (the caller frees it) or NULL. */
static struct held *unlink_ref(struct device *d, const struct poll_ref *r)
{
	struct held **h = &d->first, *prev = NULL, *got;

	while (*h != NULL && !same(&(*h)->ref, r)) {
		prev = *h;
		h = &(*h)->next;
	}
	got = *h;
	if (got == NULL)
		return NULL;
	*h = got->next;
	if (d->last == got)
		d->last = prev;
	return got;
}

/* Frees a device that has no request left. */
static void drop_if_empty(struct device **slot)
{
	struct device *d = *slot;

	if (d->first != NULL)
		return;
	*slot = d->next;
	free(d);
}

bool polls_begin(struct polls *p, uint64_t key, const struct poll_ref *r,
		 unsigned limit, struct poll_ref *victim)
{
	struct held *h = calloc(1, sizeof(*h));
	struct device **slot, *d;
	unsigned live = 0;
	bool found = false;

	if (h == NULL)
		return false;
	h->ref = *r;
	pthread_mutex_lock(&p->lock);
	slot = slot_of(p, key);
	if (*slot == NULL && (*slot = calloc(1, sizeof(**slot))) != NULL)
		(*slot)->key = key;
	d = *slot;
	if (d == NULL) {
		pthread_mutex_unlock(&p->lock);
		free(h);
		return false;
	}
	if (d->last != NULL)
		d->last->next = h;
	else
		d->first = h;
	d->last = h;
	for (struct held *x = d->first; x != NULL; x = x->next)
		live += !x->marked;
	/* The oldest not yet marked goes: its phone has most likely moved
	 * on to the newer connection already. */
	for (struct held *x = d->first; limit > 0 && live > limit && x != h;
	     x = x->next)
		if (!x->marked) {
			x->marked = true;
			*victim = x->ref;
			found = true;
			break;
		}
	pthread_mutex_unlock(&p->lock);
	return found;
}

void polls_end(struct polls *p, uint64_t key, const struct poll_ref *r)
{
	struct device **slot;
	struct held *h = NULL;

	pthread_mutex_lock(&p->lock);
	slot = slot_of(p, key);
	if (*slot != NULL) {
		h = unlink_ref(*slot, r);
		drop_if_empty(slot);
	}
	pthread_mutex_unlock(&p->lock);
	free(h);
}

bool polls_take_marked(struct polls *p, uint64_t key, const struct poll_ref *r)
{
	struct device **slot;
	struct held *h = NULL;
	bool marked = false;

	pthread_mutex_lock(&p->lock);
	slot = slot_of(p, key);
	for (struct held *x = *slot ? (*slot)->first : NULL; x != NULL;
	     x = x->next)
		if (same(&x->ref, r)) {
			marked = x->marked;
			break;
		}
	if (marked) {
		h = unlink_ref(*slot, r);
		drop_if_empty(slot);
	}
	pthread_mutex_unlock(&p->lock);
	free(h);
	return marked;
}
