/*
 * The site map's storage, key normaliser and lookup. Built for a million
 * users: every key goes into one arena (offsets, not pointers, so it may
 * move while it grows), each table is open addressing with linear probing
 * over 16-byte slots, and a hit costs two cache misses (slot, key). After
 * sitemap_load returns nothing is written again, which is what lets the
 * workers share one map without locks.
 */
#include "site/sitemap.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/str.h"
#include "site/sitemap_int.h"

static unsigned char sm_lower(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch + 32) : ch;
}

static bool sm_eq_ci(const char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (sm_lower((unsigned char)a[i]) !=
		    sm_lower((unsigned char)b[i]))
			return false;
	return true;
}

/* FNV-1a mixes its low bits poorly, and the table index is the low bits. */
uint64_t sm_hash(const char *p, size_t len)
{
	uint64_t h = str_hash_ci((struct str){p, len});

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* Memory for the big tables: 2 MiB aligned and marked for transparent huge
 * pages, because lookups land on random pages and a TLB miss per lookup
 * would cost more than the probe itself. Small sizes use plain malloc. */
static void *sm_big_alloc(size_t size, bool zero)
{
	const size_t huge = 2UL * 1024 * 1024;
	void *p;

	if (size < huge)
		return zero ? calloc(1, size) : malloc(size);
	size = (size + huge - 1) & ~(huge - 1);
	if (posix_memalign(&p, huge, size) != 0)
		return NULL;
	(void)madvise(p, size, MADV_HUGEPAGE);
	if (zero)
		memset(p, 0, size);
	return p;
}

/* ---- tables ---- */

/* Returns the slot holding key, or the empty slot where it belongs. The table
 * must have slots; it is never full, so the probe ends. */
struct sm_slot *sm_tab_find(const struct sm_table *t, const char *arena,
                            const char *key, size_t len, uint64_t h)
{
	uint32_t tag = (uint32_t)(h >> 32);
	size_t i = (size_t)h & t->mask;

	for (;;) {
		struct sm_slot *s = &t->slots[i];

		if (s->len == 0)
			return s;
		if (s->tag == tag && s->len == len &&
		    sm_eq_ci(arena + s->off, key, len))
			return s;
		i = (i + 1) & t->mask;
	}
}

const struct sm_slot *sm_tab_get(const struct sm_table *t, const char *arena,
                                 const char *key, size_t len)
{
	const struct sm_slot *s;

	if (t->n == 0 || len == 0 || len > UINT16_MAX)
		return NULL;
	s = sm_tab_find(t, arena, key, len, sm_hash(key, len));
	return s->len != 0 ? s : NULL;
}

/* Makes room for need keys at a load of at most 0.7; rehashes from the arena
 * when the table has to move. Returns -1 when out of memory. */
int sm_tab_reserve(struct sm_table *t, const char *arena, size_t need)
{
	size_t cap = 8, old_cap = t->slots ? t->mask + 1 : 0;
	struct sm_slot *slots;

	if (need > SIZE_MAX / 16)
		return -1;
	while (cap / 10 * 7 < need)
		cap *= 2;
	if (cap <= old_cap)
		return 0;
	slots = sm_big_alloc(cap * sizeof(*slots), true);
	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < old_cap; i++) {
		struct sm_slot *o = &t->slots[i], *s;
		struct sm_table nt = {slots, cap - 1, 0};

		if (o->len == 0)
			continue;
		s = sm_tab_find(&nt, arena, arena + o->off, o->len,
		                sm_hash(arena + o->off, o->len));
		*s = *o;
	}
	free(t->slots);
	t->slots = slots;
	t->mask = cap - 1;
	return 0;
}

/* ---- the map's storage ---- */

/* Makes room for extra more bytes in one block, so that a big map's arena is
 * allocated once. Returns -1 when out of memory or past 4 GiB. */
int sm_arena_reserve(struct sitemap *m, size_t extra)
{
	char *p;
	size_t cap;

	if (extra <= m->arena_cap - m->arena_len)
		return 0;
	if (extra > (size_t)UINT32_MAX + 1 - m->arena_len)
		return -1;
	cap = m->arena_len + extra;
	/* past the estimate, grow geometrically all the same */
	if (m->arena_cap > 0 && cap < m->arena_cap * 2)
		cap = m->arena_cap * 2;
	if (cap > (size_t)UINT32_MAX + 1)
		cap = (size_t)UINT32_MAX + 1;
	p = sm_big_alloc(cap, false);
	if (p == NULL)
		return -1;
	if (m->arena_len > 0)
		memcpy(p, m->arena, m->arena_len);
	free(m->arena);
	m->arena = p;
	m->arena_cap = cap;
	return 0;
}

/* Appends key (NUL-terminated) to the arena; returns its offset, or -1 when
 * out of memory or past the 4 GiB that 32-bit offsets reach. */
static int64_t sm_arena_add(struct sitemap *m, const char *key, size_t len)
{
	size_t off = m->arena_len;

	if (len + 1 > m->arena_cap - m->arena_len) {
		size_t cap = m->arena_cap ? m->arena_cap : 4096;
		char *p;

		while (cap - m->arena_len < len + 1)
			cap *= 2;
		if (cap > (size_t)UINT32_MAX + 1)
			cap = (size_t)UINT32_MAX + 1;
		if (cap - m->arena_len < len + 1)
			return -1;
		p = realloc(m->arena, cap);
		if (p == NULL)
			return -1;
		m->arena = p;
		m->arena_cap = cap;
	}
	memcpy(m->arena + off, key, len);
	m->arena[off + len] = '\0';
	m->arena_len += len + 1;
	return (int64_t)off;
}

/* Stores key in the empty slot s found for it. Returns -1 on no memory. */
int sm_slot_fill(struct sitemap *m, struct sm_table *t, struct sm_slot *s,
                 struct str key, uint64_t h, unsigned line, unsigned val)
{
	int64_t off = sm_arena_add(m, key.p, key.len);

	if (off < 0)
		return -1;
	s->tag = (uint32_t)(h >> 32);
	s->off = (uint32_t)off;
	s->line = line;
	s->len = (uint16_t)key.len;
	s->val = (uint16_t)val;
	t->n++;
	return 0;
}

/* Index of the site called name: an exact match first, then ignoring ASCII
 * case. -1 when the conf has no such site. */
int sm_site_index(const struct conf *c, struct str name)
{
	if (c == NULL)
		return -1;
	for (unsigned i = 0; i < c->n_sites; i++)
		if (c->sites[i].name &&
		    str_eq(str_from(c->sites[i].name), name))
			return (int)i;
	for (unsigned i = 0; i < c->n_sites; i++)
		if (c->sites[i].name &&
		    str_eq_ci(str_from(c->sites[i].name), name))
			return (int)i;
	return -1;
}

const struct sm_slot *sm_db_get(const struct sitemap *m, struct str name)
{
	return sm_tab_get(&m->dbs, m->arena, name.p, name.len);
}

/* Adds database name -> site unless the name is already there (first wins;
 * pass 2 reports conflicts). Returns -1 on no memory or too many databases. */
int sm_db_add(struct sitemap *m, struct str name, int site, unsigned line)
{
	uint64_t h = sm_hash(name.p, name.len);
	struct sm_slot *s;

	if (sm_tab_reserve(&m->dbs, m->arena, m->dbs.n + 1) != 0)
		return -1;
	s = sm_tab_find(&m->dbs, m->arena, name.p, name.len, h);
	if (s->len != 0)
		return 0;
	if (m->n_db >= SM_INDEX_MAX)
		return -1;
	if (m->n_db == m->db_cap) {
		size_t cap = m->db_cap ? m->db_cap * 2 : 16;
		struct sm_db *p = realloc(m->db, cap * sizeof(*p));

		if (p == NULL)
			return -1;
		m->db = p;
		m->db_cap = cap;
	}
	if (sm_slot_fill(m, &m->dbs, s, name, h, line, (unsigned)m->n_db) != 0)
		return -1;
	m->db[m->n_db].off = s->off;
	m->db[m->n_db].line = line;
	m->db[m->n_db].site = site;
	m->n_db++;
	return 0;
}

/* ---- normalisation ---- */

static const char *netbios_domain(const struct conf *c, struct str nb)
{
	if (c == NULL)
		return NULL;
	for (unsigned i = 0; i < c->n_netbios; i++) {
		const struct conf_netbios *n = &c->netbios[i];

		if (n->name && n->domain && n->domain[0] != '\0' &&
		    str_eq_ci(str_from(n->name), nb))
			return n->domain;
	}
	return NULL;
}

/* Writes the lowered a, then '@' and the lowered b when b.p is set. */
size_t sm_put_lower(char *out, size_t cap, struct str a, struct str b)
{
	size_t len = a.len + (b.p ? 1 + b.len : 0), o = 0;

	if (len == 0 || len >= cap)
		return 0;
	for (size_t i = 0; i < a.len; i++)
		out[o++] = (char)sm_lower((unsigned char)a.p[i]);
	if (b.p) {
		out[o++] = '@';
		for (size_t i = 0; i < b.len; i++)
			out[o++] = (char)sm_lower((unsigned char)b.p[i]);
	}
	out[o] = '\0';
	return o;
}

size_t sitemap_normalise_len(const struct conf *c, const char *user, size_t len,
                             char *out, size_t cap)
{
	const char *bs;
	struct str dom, name;
	const char *dns;

	if (user == NULL || len == 0 || out == NULL || cap == 0 ||
	    memchr(user, '\0', len) != NULL)
		return 0;
	bs = memrchr(user, '\\', len);
	if (bs == NULL)
		return sm_put_lower(out, cap, (struct str){user, len},
		                    STR_NULL);
	dom = (struct str){user, (size_t)(bs - user)};
	name = (struct str){bs + 1, len - dom.len - 1};
	if (name.len == 0)
		return 0;
	if (dom.len == 0 || memchr(name.p, '@', name.len) != NULL)
		return sm_put_lower(out, cap, name, STR_NULL);
	dns = netbios_domain(c, dom);
	if (dns == NULL)
		return sm_put_lower(out, cap, (struct str){user, len},
		                    STR_NULL);
	return sm_put_lower(out, cap, name, str_from(dns));
}

size_t sitemap_normalise(const struct conf *c, const char *user, char *out,
                         size_t cap)
{
	if (user == NULL)
		return 0;
	return sitemap_normalise_len(c, user, strlen(user), out, cap);
}

void sitemap_free(struct sitemap *m)
{
	if (m == NULL)
		return;
	free(m->users.slots);
	free(m->domains.slots);
	free(m->dbs.slots);
	free(m->db);
	free(m->arena);
	free(m->name);
	free(m);
}

/* ---- lookup ---- */

void sitemap_lookup(const struct sitemap *m, const char *key,
                    struct sitemap_match *out)
{
	const struct sm_slot *s;
	const char *at;
	size_t len;

	*out = (struct sitemap_match){.site = -1, .how = SITEMAP_NONE};
	if (m == NULL || key == NULL || key[0] == '\0')
		return;
	len = strlen(key);
	s = sm_tab_get(&m->users, m->arena, key, len);
	if (s != NULL) {
		out->line = s->line;
		if (s->val & SM_VAL_DB) {
			const struct sm_db *d = &m->db[s->val & ~SM_VAL_DB];

			out->site = d->site;
			out->how = SITEMAP_USER_DB;
			out->db_line = d->line;
			out->database = m->arena + d->off;
		} else {
			out->site = s->val;
			out->how = SITEMAP_USER_SITE;
		}
		return;
	}
	at = memrchr(key, '@', len);
	if (at == NULL)
		return;
	s = sm_tab_get(&m->domains, m->arena, at + 1,
	               len - (size_t)(at + 1 - key));
	if (s != NULL) {
		out->site = s->val;
		out->how = SITEMAP_DOMAIN;
		out->line = s->line;
	}
}

void sitemap_database(const struct sitemap *m, const char *db,
		      struct sitemap_match *out)
{
	const struct sm_slot *s;

	*out = (struct sitemap_match){.site = -1, .how = SITEMAP_NONE};
	if (m == NULL || db == NULL || db[0] == '\0')
		return;
	s = sm_tab_get(&m->dbs, m->arena, db, strlen(db));
	if (s == NULL)
		return;
	out->site = m->db[s->val].site;
	out->how = SITEMAP_USER_DB;
	out->db_line = m->db[s->val].line;
	out->line = m->db[s->val].line;
	out->database = m->arena + m->db[s->val].off;
}

size_t sitemap_users(const struct sitemap *m)
{
	return m ? m->users.n : 0;
}

size_t sitemap_databases(const struct sitemap *m)
{
	return m ? m->n_db : 0;
}

size_t sitemap_domains(const struct sitemap *m)
{
	return m ? m->domains.n : 0;
}

const char *sitemap_name(const struct sitemap *m)
{
	return m ? m->name : "";
}
