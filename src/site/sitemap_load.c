/*
 * Reading the site map: the file in one read(2), cut into lines and fields
 * with memchr and one loop over the bytes, checked and stored in two passes
 * (databases first, so that a user may name a database defined further
 * down). Every problem is collected as "FILE:LINE: reason", in line order.
 */
#include "site/sitemap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/str.h"
#include "site/sitemap_int.h"

#define SM_STR(x) #x
#define SM_XSTR(x) SM_STR(x)

/* One map line cut into fields; the views point into the loader's buffer. */
struct sm_line {
	unsigned no;
	unsigned n; /* fields found; only the first three are kept */
	struct str f[3];
};

/* A user key written to the arena, waiting for its slot: pass 2 queues a
 * few and prefetches their slots, so that the cache misses of a big table
 * overlap instead of following each other. */
struct sm_pending {
	uint64_t h;
	uint32_t off;
	uint32_t line;
	uint16_t len;
	uint16_t val;
};

#define SM_BATCH 16

struct sm_load {
	const struct conf *c;
	const char *name;
	struct sitemap *m;
	char *err; /* owned until handed to the caller */
	size_t err_len;
	size_t err_cap;
	unsigned n_err;
	bool oom;
	size_t user_lines; /* pass 1 counts, to size the tables once */
	size_t domain_lines;
	size_t arena_need; /* pass 1: bytes the keys of pass 2 may take */
	size_t nb_grow;    /* most a NetBIOS key can grow when normalised */
	struct sm_pending pend[SM_BATCH];
	unsigned n_pend;
};

enum sm_kind { SM_K_DATABASE, SM_K_USER, SM_K_DOMAIN, SM_K_UNKNOWN };

/* ---- problems ---- */

static void sm_err_append(struct sm_load *ld, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void sm_err_append(struct sm_load *ld, const char *fmt, va_list ap)
{
	va_list aq;
	int n;

	if (ld->oom)
		return;
	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		return;
	if (ld->err_len + (size_t)n + 2 > ld->err_cap) {
		size_t cap = (ld->err_len + (size_t)n + 2) * 2;
		char *p = realloc(ld->err, cap);

		if (p == NULL) {
			ld->oom = true;
			return;
		}
		ld->err = p;
		ld->err_cap = cap;
	}
	if (ld->err_len > 0)
		ld->err[ld->err_len++] = '\n';
	vsnprintf(ld->err + ld->err_len, ld->err_cap - ld->err_len, fmt, ap);
	ld->err_len += (size_t)n;
}

static void sm_err_raw(struct sm_load *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sm_err_raw(struct sm_load *ld, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sm_err_append(ld, fmt, ap);
	va_end(ap);
}

/* Records "NAME:LINE: reason"; past SITEMAP_ERR_MAX problems only counts. */
static void sm_err(struct sm_load *ld, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sm_err(struct sm_load *ld, unsigned line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (ld->n_err++ >= SITEMAP_ERR_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		sm_err_raw(ld, "%s:%u: %s", ld->name, line, msg);
	else
		sm_err_raw(ld, "%s: %s", ld->name, msg);
}

/* ---- parsing ---- */

/* Checks that [p, p+len) holds no NUL or other control byte but tabs. */
static const char *bytes_check(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch == 0)
			return "NUL byte";
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return "control character";
	}
	return NULL;
}

/* Ends the field [start, end) of l; spaces inside a tab-separated field are
 * kept, those at its end dropped. */
static const char *field_end(const char *p, size_t start, size_t end,
                             struct sm_line *l)
{
	while (end > start && p[end - 1] == ' ')
		end--;
	if (end - start > SITEMAP_FIELD_MAX)
		return "field longer than " SM_XSTR(SITEMAP_FIELD_MAX) " bytes";
	if (l->n < 3)
		l->f[l->n] = (struct str){p + start, end - start};
	l->n++;
	return NULL;
}

/* Cuts the line [p, p+len) (no '\n') into fields. Returns NULL, or the reason
 * the line is unreadable. A blank or comment line gives l->n == 0. One loop
 * over the bytes, the common ones tested first: a big map is 40 MB read
 * twice. */
static const char *line_split(const char *p, size_t len, struct sm_line *l)
{
	bool tabs, in = false;
	size_t start = 0;
	const char *bad;

	l->n = 0;
	if (len > 0 && p[len - 1] == '\r')
		len--;
	tabs = memchr(p, '\t', len) != NULL;
	for (size_t i = 0; i <= len; i++) {
		/* a tab after the last byte ends the last field */
		unsigned char ch = i < len ? (unsigned char)p[i] : '\t';

		if (ch > ' ' && ch != 0x7f) {
			if (in)
				continue;
			if (l->n == 0 && ch == '#')
				return bytes_check(p + i, len - i);
			start = i;
			in = true;
		} else if (ch == '\t' || (ch == ' ' && !tabs)) {
			if (in && (bad = field_end(p, start, i, l)) != NULL)
				return bad;
			in = false;
		} else if (ch != ' ') {
			return ch == 0 ? "NUL byte" : "control character";
		}
	}
	return NULL;
}

static enum sm_kind line_kind(struct str k)
{
	if (str_eq_ci_lit(k, "user"))
		return SM_K_USER;
	if (str_eq_ci_lit(k, "database"))
		return SM_K_DATABASE;
	if (str_eq_ci_lit(k, "domain"))
		return SM_K_DOMAIN;
	return SM_K_UNKNOWN;
}

/* Calls fn for each line of buf; the loader makes two passes with it. */
typedef int (*sm_line_cb)(struct sm_load *ld, struct sm_line *l,
                          const char *bad);

static int for_each_line(struct sm_load *ld, const char *buf, size_t len,
                         sm_line_cb fn)
{
	const char *p = buf, *end = buf + len;
	unsigned no = 0;

	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct sm_line l = {.no = ++no};
		const char *bad = line_split(p, ll, &l);

		if (fn(ld, &l, bad) != 0)
			return -1;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return 0;
}

/* ---- pass 1: databases, and the sizes of the other tables ---- */

static int pass1_line(struct sm_load *ld, struct sm_line *l, const char *bad)
{
	int site;

	if (bad != NULL || l->n != 3)
		return 0;
	switch (line_kind(l->f[0])) {
	case SM_K_USER:
		ld->user_lines++;
		ld->arena_need += l->f[1].len + 1;
		if (memchr(l->f[1].p, '\\', l->f[1].len) != NULL)
			ld->arena_need += ld->nb_grow;
		return 0;
	case SM_K_DOMAIN:
		ld->domain_lines++;
		ld->arena_need += l->f[1].len + 1;
		return 0;
	case SM_K_DATABASE:
		site = sm_site_index(ld->c, l->f[2]);
		if (site < 0)
			return 0;
		if (ld->m->n_db >= SM_INDEX_MAX && !sm_db_get(ld->m, l->f[1])) {
			sm_err(ld, l->no, "more than %u databases",
			       SM_INDEX_MAX);
			return -1;
		}
		if (sm_db_add(ld->m, l->f[1], site, l->no) != 0) {
			ld->oom = true;
			return -1;
		}
		return 0;
	default:
		return 0;
	}
}

/* ---- pass 2: every line checked, users and domains stored ---- */

/* Describes a stored value for messages: "database \"DB03\"". */
static void val_name(const struct sm_load *ld, unsigned val, char *buf,
                     size_t cap)
{
	const struct sitemap *m = ld->m;

	if (val & SM_VAL_DB)
		snprintf(buf, cap, "database \"%s\"",
		         m->arena + m->db[val & ~SM_VAL_DB].off);
	else
		snprintf(buf, cap, "site \"%s\"", ld->c->sites[val].name);
}

/* Stores key -> val in t, or reports a conflicting earlier line. Returns -1
 * only when out of memory. */
static int pass2_put(struct sm_load *ld, struct sm_table *t, const char *what,
                     struct str key, unsigned val, unsigned line)
{
	struct sitemap *m = ld->m;
	uint64_t h = sm_hash(key.p, key.len);
	struct sm_slot *s;

	/* pass 1 sized the table; this only guards against a miscount */
	if (t->slots == NULL || (t->n + 1) * 10 > (t->mask + 1) * 7) {
		if (sm_tab_reserve(t, m->arena, t->n + 1) != 0)
			return -1;
	}
	s = sm_tab_find(t, m->arena, key.p, key.len, h);
	if (s->len == 0)
		return sm_slot_fill(m, t, s, key, h, line, val);
	if (s->val != val) {
		char had[SITEMAP_FIELD_MAX + 32];

		val_name(ld, s->val, had, sizeof(had));
		sm_err(ld, line,
		       "%s \"%.*s\" is already mapped to %s on line %u", what,
		       (int)key.len, key.p, had, s->line);
	}
	return 0;
}

static int pass2_database(struct sm_load *ld, const struct sm_line *l)
{
	int site = sm_site_index(ld->c, l->f[2]);
	const struct sm_slot *s;
	const struct sm_db *d;

	if (site < 0) {
		sm_err(ld, l->no, "unknown site \"%.*s\"", (int)l->f[2].len,
		       l->f[2].p);
		return 0;
	}
	s = sm_db_get(ld->m, l->f[1]);
	if (s == NULL) /* cannot happen: pass 1 stored every such line */
		return -1;
	d = &ld->m->db[s->val];
	if (d->site != site)
		sm_err(ld, l->no,
		       "database \"%.*s\" is already in site \"%s\" on line %u",
		       (int)l->f[1].len, l->f[1].p, ld->c->sites[d->site].name,
		       d->line);
	return 0;
}

/* Gives the queued user keys their slots, in line order, reporting keys
 * already mapped elsewhere. Returns -1 only when out of memory. */
static int pend_flush(struct sm_load *ld)
{
	struct sitemap *m = ld->m;
	struct sm_table *t = &m->users;

	for (unsigned i = 0; i < ld->n_pend; i++) {
		const struct sm_pending *p = &ld->pend[i];
		const char *key = m->arena + p->off;
		struct sm_slot *s;

		/* pass 1 sized the table; this guards against a miscount */
		if (t->slots == NULL || (t->n + 1) * 10 > (t->mask + 1) * 7) {
			if (sm_tab_reserve(t, m->arena, t->n + 1) != 0)
				return -1;
		}
		s = sm_tab_find(t, m->arena, key, p->len, p->h);
		if (s->len == 0) {
			*s = (struct sm_slot){(uint32_t)(p->h >> 32), p->off,
			                      p->line, p->len, p->val};
			t->n++;
		} else if (s->val != p->val) {
			char had[SITEMAP_FIELD_MAX + 32];

			val_name(ld, s->val, had, sizeof(had));
			sm_err(ld, p->line,
			       "user \"%s\" is already mapped to %s on line %u",
			       key, had, s->line);
		}
	}
	ld->n_pend = 0;
	return 0;
}

/* The value of a user line: SM_VAL_DB | database, or a site; -1 if none. */
static int user_value(struct sm_load *ld, struct str name)
{
	const struct sm_slot *db = sm_db_get(ld->m, name);

	/* a name that is both a database and a site is the database: the map
	 * defines databases, so that is the more specific meaning */
	if (db != NULL)
		return (int)(SM_VAL_DB | db->val);
	return sm_site_index(ld->c, name);
}

static int pass2_user(struct sm_load *ld, const struct sm_line *l)
{
	struct sitemap *m = ld->m;
	struct sm_pending *p;
	size_t len;
	int val;

	/* the key is normalised straight into the arena, kept if it is good */
	if (sm_arena_reserve(m, SITEMAP_KEY_MAX + 1) != 0)
		return -1;
	len =
	    sitemap_normalise_len(ld->c, l->f[1].p, l->f[1].len,
	                          m->arena + m->arena_len, SITEMAP_KEY_MAX + 1);
	val = len ? user_value(ld, l->f[2]) : -1;
	if (val < 0) {
		if (pend_flush(ld) != 0)
			return -1;
		if (len == 0)
			sm_err(ld, l->no,
			       "user \"%.*s\" has an empty user part or is "
			       "longer than %d bytes once normalised",
			       (int)l->f[1].len, l->f[1].p, SITEMAP_KEY_MAX);
		else
			sm_err(ld, l->no, "unknown database or site \"%.*s\"",
			       (int)l->f[2].len, l->f[2].p);
		return 0;
	}
	p = &ld->pend[ld->n_pend++];
	*p = (struct sm_pending){sm_hash(m->arena + m->arena_len, len),
	                         (uint32_t)m->arena_len, l->no, (uint16_t)len,
	                         (uint16_t)val};
	m->arena_len += len + 1;
	__builtin_prefetch(&m->users.slots[p->h & m->users.mask]);
	return ld->n_pend == SM_BATCH ? pend_flush(ld) : 0;
}

static int pass2_domain(struct sm_load *ld, const struct sm_line *l)
{
	char key[SITEMAP_FIELD_MAX + 1];
	size_t len;
	int site;

	if (memchr(l->f[1].p, '@', l->f[1].len) ||
	    memchr(l->f[1].p, '\\', l->f[1].len)) {
		sm_err(ld, l->no,
		       "domain \"%.*s\" must be a bare DNS domain (no '@' or "
		       "'\\')",
		       (int)l->f[1].len, l->f[1].p);
		return 0;
	}
	site = sm_site_index(ld->c, l->f[2]);
	if (site < 0) {
		sm_err(ld, l->no, "unknown site \"%.*s\"", (int)l->f[2].len,
		       l->f[2].p);
		return 0;
	}
	len = sm_put_lower(key, sizeof(key), l->f[1], STR_NULL);
	return pass2_put(ld, &ld->m->domains, "domain", (struct str){key, len},
	                 (unsigned)site, l->no);
}

static int pass2_line(struct sm_load *ld, struct sm_line *l, const char *bad)
{
	enum sm_kind kind;
	static const char *const names[] = {"database", "user", "domain"};

	if (l->n == 0 && bad == NULL)
		return 0;
	kind = l->n > 0 ? line_kind(l->f[0]) : SM_K_UNKNOWN;
	if (bad == NULL && l->n == 3 && kind == SM_K_USER)
		return pass2_user(ld, l);
	/* anything else may report a problem: queued users' first */
	if (pend_flush(ld) != 0)
		return -1;
	if (bad != NULL) {
		sm_err(ld, l->no, "%s", bad);
		return 0;
	}
	if (kind == SM_K_UNKNOWN) {
		sm_err(ld, l->no,
		       "unknown kind \"%.*s\" (database, user or domain)",
		       (int)l->f[0].len, l->f[0].p);
		return 0;
	}
	if (l->n != 3) {
		sm_err(ld, l->no, "%s line needs 3 fields, found %u",
		       names[kind], l->n);
		return 0;
	}
	if (kind == SM_K_DATABASE)
		return pass2_database(ld, l);
	return pass2_domain(ld, l);
}

/* ---- loading ---- */

/* Hands the collected problems to the caller (or drops them). */
static void load_finish_err(struct sm_load *ld, char **err)
{
	if (ld->n_err > SITEMAP_ERR_MAX)
		sm_err_raw(ld, "%s: %u more problems not shown", ld->name,
		           ld->n_err - SITEMAP_ERR_MAX);
	if (ld->oom || ld->err == NULL) {
		free(ld->err);
		ld->err = NULL;
		if (err != NULL) {
			size_t n = strlen(ld->name) + 32;

			*err = malloc(n);
			if (*err != NULL)
				snprintf(*err, n, "%s: out of memory",
				         ld->name);
		}
		return;
	}
	if (err != NULL)
		*err = ld->err;
	else
		free(ld->err);
	ld->err = NULL;
}

static int load_passes(struct sm_load *ld, const char *buf, size_t len)
{
	struct sitemap *m = ld->m;

	if (ld->c == NULL || (ld->c->n_sites > 0 && ld->c->sites == NULL)) {
		sm_err(ld, 0, "no configuration to check the map against");
		return -1;
	}
	if (ld->c->n_sites > SM_INDEX_MAX) {
		sm_err(ld, 0, "more than %u sites", SM_INDEX_MAX);
		return -1;
	}
	if (len > SITEMAP_FILE_MAX) {
		sm_err(ld, 0, "larger than %lu bytes", SITEMAP_FILE_MAX);
		return -1;
	}
	for (unsigned i = 0; i < ld->c->n_netbios; i++)
		if (ld->c->netbios[i].domain &&
		    strlen(ld->c->netbios[i].domain) + 1 > ld->nb_grow)
			ld->nb_grow = strlen(ld->c->netbios[i].domain) + 1;
	if (for_each_line(ld, buf, len, pass1_line) != 0)
		return -1;
	/* pass 2 normalises each key in place, wanting room for the longest */
	if (sm_arena_reserve(m, ld->arena_need + SITEMAP_KEY_MAX + 1) != 0 ||
	    sm_tab_reserve(&m->users, m->arena, ld->user_lines) != 0 ||
	    sm_tab_reserve(&m->domains, m->arena, ld->domain_lines) != 0) {
		ld->oom = true;
		return -1;
	}
	if (for_each_line(ld, buf, len, pass2_line) != 0 ||
	    pend_flush(ld) != 0) {
		ld->oom = true;
		return -1;
	}
	return ld->n_err == 0 ? 0 : -1;
}

struct sitemap *sitemap_load_mem(const struct conf *c, const char *name,
                                 const char *buf, size_t len, char **err)
{
	struct sm_load ld = {.c = c, .name = name ? name : "sitemap"};

	if (err != NULL)
		*err = NULL;
	if (buf == NULL)
		len = 0;
	ld.m = calloc(1, sizeof(*ld.m));
	if (ld.m == NULL || (ld.m->name = strdup(ld.name)) == NULL) {
		ld.oom = true;
		goto fail;
	}
	/* the arena is sized from an upper bound; its unused tail is never
	 * touched, so it costs address space, not memory */
	if (load_passes(&ld, buf, len) != 0)
		goto fail;
	return ld.m;
fail:
	load_finish_err(&ld, err);
	sitemap_free(ld.m);
	return NULL;
}

/* Reads the whole file in one read(2) when its size holds still. Returns 0,
 * or -1 with the reason recorded in ld. */
static int read_file(struct sm_load *ld, char **out, size_t *out_len)
{
	struct stat st;
	size_t cap, len = 0;
	char *buf = NULL;
	int fd = open(ld->name, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) != 0)
		goto fail_errno;
	if ((uint64_t)st.st_size > SITEMAP_FILE_MAX)
		goto fail_size;
	/* one byte more than the size, so that EOF is seen without growing */
	cap = (size_t)st.st_size + 1;
	if ((buf = malloc(cap)) == NULL)
		goto fail_errno;
	for (;;) {
		ssize_t n = read(fd, buf + len, cap - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail_errno;
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == cap) {
			char *p;

			if (cap > SITEMAP_FILE_MAX)
				goto fail_size;
			if ((p = realloc(buf, cap * 2)) == NULL)
				goto fail_errno;
			buf = p;
			cap *= 2;
		}
	}
	close(fd);
	*out = buf;
	*out_len = len;
	return 0;
fail_size:
	sm_err(ld, 0, "larger than %lu bytes", SITEMAP_FILE_MAX);
	goto fail;
fail_errno : {
	char eb[128];

	sm_err(ld, 0, "cannot read: %s", strerror_r(errno, eb, sizeof(eb)));
}
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return -1;
}

struct sitemap *sitemap_load(const struct conf *c, const char *path, char **err)
{
	struct sm_load ld = {.c = c, .name = path ? path : "sitemap"};
	struct sitemap *m;
	char *buf;
	size_t len;

	if (err != NULL)
		*err = NULL;
	if (path == NULL) {
		sm_err(&ld, 0, "no site map file given");
		load_finish_err(&ld, err);
		return NULL;
	}
	if (read_file(&ld, &buf, &len) != 0) {
		load_finish_err(&ld, err);
		return NULL;
	}
	m = sitemap_load_mem(c, path, buf, len, err);
	free(buf);
	return m;
}
