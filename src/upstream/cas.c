#include "upstream/cas.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

int cas_url_parse(const char *url, struct cas_entry *e)
{
	const char *h, *end, *colon;
	size_t hl;

	if (strncmp(url, "https://", 8) == 0) {
		e->tls = true;
		h = url + 8;
		e->port = 443;
	} else if (strncmp(url, "http://", 7) == 0) {
		h = url + 7;
		e->port = 80;
	} else {
		return -1;
	}
	end = h + strcspn(h, "/?#");
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));

		if (rb == NULL)
			return -1;
		hl = (size_t)(rb - h - 1);
		h++;
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		hl = (size_t)((colon ? colon : end) - h);
	}
	if (hl == 0 || hl >= sizeof(e->host))
		return -1;
	memcpy(e->host, h, hl);
	e->host[hl] = '\0';
	if (colon != NULL) {
		char *pe;
		long port = strtol(colon + 1, &pe, 10);

		if (pe != end || port <= 0 || port > 65535)
			return -1;
		e->port = (uint16_t)port;
	}
	return 0;
}

static void member_name(struct cas_member *m)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (m->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)&m->addr;

		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		snprintf(m->name, sizeof(m->name), "[%s]:%u", ip,
			 ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const void *)&m->addr;

		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		snprintf(m->name, sizeof(m->name), "%s:%u", ip,
			 ntohs(a->sin_port));
	}
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static bool same_addr(const struct sockaddr_storage *a,
		      const struct sockaddr *b, socklen_t blen)
{
	if (a->ss_family != b->sa_family)
		return false;
	if (a->ss_family == AF_INET)
		return blen >= sizeof(struct sockaddr_in) &&
		       memcmp(&((const struct sockaddr_in *)a)->sin_addr,
			      &((const struct sockaddr_in *)b)->sin_addr,
			      4) == 0 &&
		       ((const struct sockaddr_in *)a)->sin_port ==
			       ((const struct sockaddr_in *)b)->sin_port;
	return blen >= sizeof(struct sockaddr_in6) &&
	       memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0 &&
	       ((const struct sockaddr_in6 *)a)->sin6_port ==
		       ((const struct sockaddr_in6 *)b)->sin6_port;
}

/* Seeds the members with the system resolver so the first requests after a
 * start or reload have somewhere to go; the DNS watch takes over from
 * there. */
static void seed_members(struct cas_entry *e)
{
	struct addrinfo hints = {0}, *res, *ai;
	struct sockaddr_storage addrs[16];
	unsigned n = 0;

	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = e->literal ? AI_NUMERICHOST : 0;
	if (getaddrinfo(e->host, NULL, &hints, &res) != 0) {
		log_info("CAS %s: %s does not resolve yet", e->url, e->host);
		return;
	}
	for (ai = res; ai != NULL && n < 16; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(addrs[0]))
			continue;
		memset(&addrs[n], 0, sizeof(addrs[n]));
		memcpy(&addrs[n], ai->ai_addr, ai->ai_addrlen);
		n++;
	}
	freeaddrinfo(res);
	cas_set_members(e, addrs, n, NULL);
}

struct cas_entry *cas_entry_new(unsigned id, const char *url)
{
	struct cas_entry *e = calloc(1, sizeof(*e));
	unsigned char tmp[16];

	if (e == NULL)
		return NULL;
	e->id = id;
	e->url = strdup(url);
	if (e->url == NULL || cas_url_parse(url, e) != 0) {
		free(e->url);
		free(e);
		return NULL;
	}
	e->literal = inet_pton(AF_INET, e->host, tmp) == 1 ||
		     inet_pton(AF_INET6, e->host, tmp) == 1;
	pthread_mutex_init(&e->lock, NULL);
	seed_members(e);
	return e;
}

void cas_entry_free(struct cas_entry *e)
{
	if (e == NULL)
		return;
	for (unsigned i = 0; i < e->n_members; i++)
		free(e->members[i]);
	free(e->members);
	free(e->check_path);
	free(e->check_expect);
	pthread_mutex_destroy(&e->lock);
	free(e->url);
	free(e);
}

struct cas_entry *cas_registry_get(struct cas_registry *reg, const char *url)
{
	struct cas_entry *e, **n;

	for (unsigned id = 0; id < reg->n; id++)
		if (strcmp(reg->cas[id]->url, url) == 0)
			return reg->cas[id];
	n = realloc(reg->cas, (reg->n + 1) * sizeof(*n));
	if (n == NULL)
		return NULL;
	reg->cas = n;
	e = cas_entry_new(reg->n, url);
	if (e != NULL)
		reg->cas[reg->n++] = e;
	return e;
}

void cas_registry_free(struct cas_registry *reg)
{
	for (unsigned i = 0; i < reg->n; i++)
		cas_entry_free(reg->cas[i]);
	free(reg->cas);
	reg->cas = NULL;
	reg->n = 0;
}

void cas_entry_configure(struct cas_entry *e, const struct conf_health *h)
{
	free(e->check_path);
	e->check_path = h->path ? strdup(h->path) : NULL;
	free(e->check_expect);
	e->check_expect = h->expect ? strdup(h->expect) : NULL;
	e->interval = h->interval ? h->interval : 5;
	e->timeout = h->timeout ? h->timeout : 2;
	e->rise = h->rise;
	e->fall = h->fall;
	e->in_use = true;
}

int cas_pick(struct cas_entry *e, unsigned *cursor,
	     struct sockaddr_storage *out, socklen_t *len, char *name,
	     size_t name_cap)
{
	int rc = -1;

	pthread_mutex_lock(&e->lock);
	for (unsigned k = 0; k < e->n_members; k++) {
		struct cas_member *m = e->members[(*cursor + k) % e->n_members];

		if (!atomic_load_explicit(&m->up, memory_order_relaxed))
			continue;
		*out = m->addr;
		*len = m->len;
		snprintf(name, name_cap, "%s", m->name);
		*cursor += k + 1;
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&e->lock);
	return rc;
}

bool cas_member_usable(struct cas_entry *e, const struct sockaddr *addr,
		       socklen_t len)
{
	bool ok = false;

	pthread_mutex_lock(&e->lock);
	for (unsigned i = 0; i < e->n_members && !ok; i++)
		if (same_addr(&e->members[i]->addr, addr, len))
			ok = atomic_load(&e->members[i]->up);
	pthread_mutex_unlock(&e->lock);
	return ok;
}

void cas_report_failure(struct cas_entry *e, const struct sockaddr *addr,
			socklen_t len)
{
	pthread_mutex_lock(&e->lock);
	for (unsigned i = 0; i < e->n_members; i++)
		if (same_addr(&e->members[i]->addr, addr, len))
			atomic_fetch_add(&e->members[i]->passive_fails, 1);
	pthread_mutex_unlock(&e->lock);
}

static struct cas_member *member_new(const struct sockaddr_storage *a,
				     uint16_t port)
{
	struct cas_member *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->addr = *a;
	set_port(&m->addr, port);
	m->len = a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					  : sizeof(struct sockaddr_in);
	atomic_init(&m->up, true);
	m->h.up = true;
	member_name(m);
	return m;
}

void cas_set_members(struct cas_entry *e, const struct sockaddr_storage *addrs,
		     unsigned n, void (*drop)(struct cas_member *m))
{
	struct cas_member **nm = calloc(n ? n : 1, sizeof(*nm));
	struct cas_member **old;
	unsigned n_old, up = 0, k = 0;

	if (nm == NULL)
		return;
	pthread_mutex_lock(&e->lock);
	old = e->members;
	n_old = e->n_members;
	for (unsigned i = 0; i < n; i++) {
		struct sockaddr_storage a = addrs[i];
		struct cas_member *m = NULL;

		set_port(&a, e->port);
		for (unsigned j = 0; j < n_old && m == NULL; j++)
			if (old[j] != NULL &&
			    same_addr(&old[j]->addr, (struct sockaddr *)&a,
				      sizeof(a))) {
				m = old[j];
				old[j] = NULL;
			}
		if (m == NULL)
			m = member_new(&a, e->port);
		if (m == NULL)
			continue;
		nm[k++] = m;
		up += atomic_load(&m->up) ? 1 : 0;
	}
	e->members = nm;
	e->n_members = k;
	atomic_store(&e->n_up, up);
	pthread_mutex_unlock(&e->lock);
	for (unsigned j = 0; j < n_old; j++) {
		if (old[j] == NULL)
			continue;
		if (drop != NULL)
			drop(old[j]);
		free(old[j]);
	}
	free(old);
}

void cas_member_set_up(struct cas_entry *e, struct cas_member *m, bool up)
{
	pthread_mutex_lock(&e->lock);
	if (atomic_load(&m->up) != up) {
		atomic_store(&m->up, up);
		if (up)
			atomic_fetch_add(&e->n_up, 1);
		else
			atomic_fetch_sub(&e->n_up, 1);
	}
	pthread_mutex_unlock(&e->lock);
}
