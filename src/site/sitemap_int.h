/*
 * Private to src/site: the site map's storage, shared by the lookup side
 * (sitemap.c) and the loader (sitemap_load.c). Keys live in one arena and
 * are found through open-addressing tables of 16-byte slots (linear probing,
 * power-of-two capacity, at most 70 % full); sites and databases are small
 * indices. Nothing here is written once sitemap_load has returned.
 */
#ifndef EF_SITE_SITEMAP_INT_H
#define EF_SITE_SITEMAP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"
#include "site/sitemap.h"

/* A user slot's value names a database (index in db[]) rather than a site. */
#define SM_VAL_DB 0x8000U
/* Sites and databases are stored in 15 bits. */
#define SM_INDEX_MAX 0x7fffU

/* One key of a table. len == 0 marks an empty slot: keys are never empty. */
struct sm_slot {
	uint32_t tag;  /* high half of the key's hash: most misses stop here */
	uint32_t off;  /* key in the arena (NUL-terminated) */
	uint32_t line; /* map line that defined it */
	uint16_t len;  /* key length */
	uint16_t val;  /* users: site, or SM_VAL_DB | database; domains: site;
	                  databases: index in db[] */
};

struct sm_table {
	struct sm_slot *slots; /* owned; NULL while the table is empty */
	size_t mask;           /* capacity - 1 */
	size_t n;
};

struct sm_db {
	uint32_t off; /* name in the arena, as written in the map */
	uint32_t line;
	int site;
};

struct sitemap {
	char *name;  /* owned: path or name given to the loader */
	char *arena; /* owned: every key, NUL-terminated */
	size_t arena_len;
	size_t arena_cap;
	struct sm_table users;
	struct sm_table domains;
	struct sm_table dbs;
	struct sm_db *db; /* owned: databases by index */
	size_t n_db;
	size_t db_cap;
};

/* The table hash of len bytes at p, ignoring ASCII case, well mixed. */
uint64_t sm_hash(const char *p, size_t len);

/* Returns the slot of t holding key (compared ignoring ASCII case), or the
 * empty slot where it belongs; h is sm_hash(key). t must have slots. */
struct sm_slot *sm_tab_find(const struct sm_table *t, const char *arena,
                            const char *key, size_t len, uint64_t h);

/* Returns the slot of t holding key, or NULL. */
const struct sm_slot *sm_tab_get(const struct sm_table *t, const char *arena,
                                 const char *key, size_t len);

/* Sizes t for need keys (load <= 0.7), rehashing what it holds. Returns 0, or
 * -1 when out of memory. */
int sm_tab_reserve(struct sm_table *t, const char *arena, size_t need);

/* Makes room for extra more bytes in m's arena. Returns 0, or -1 when out of
 * memory or past the 4 GiB that 32-bit offsets reach. */
int sm_arena_reserve(struct sitemap *m, size_t extra);

/* Copies key into the arena and stores it, line and val in s, the empty
 * slot of t found for it with hash h. Returns 0, or -1 when out of memory. */
int sm_slot_fill(struct sitemap *m, struct sm_table *t, struct sm_slot *s,
                 struct str key, uint64_t h, unsigned line, unsigned val);

/* Index in c->sites of the site called name (exact match first, then
 * ignoring ASCII case), or -1. */
int sm_site_index(const struct conf *c, struct str name);

/* The slot of database name (ignoring ASCII case), or NULL; its val is the
 * index in m->db. */
const struct sm_slot *sm_db_get(const struct sitemap *m, struct str name);

/* Adds database name in site, defined on line, unless the name is known
 * already (the first definition stays). Returns 0, or -1 when out of memory
 * or past SM_INDEX_MAX databases. */
int sm_db_add(struct sitemap *m, struct str name, int site, unsigned line);

/* Writes a lowered, then '@' and b lowered when b.p is not NULL, into out
 * (cap bytes, NUL-terminated). Returns the length, 0 if empty or it does not
 * fit. */
size_t sm_put_lower(char *out, size_t cap, struct str a, struct str b);

#endif
