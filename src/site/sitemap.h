/*
 * The site map: which site holds a user's mailbox, read from the operators'
 * tab-separated file (DESIGN.md "Configuration"):
 *
 *   # comment
 *   database   NAME       SITE
 *   user       KEY        DATABASE-or-SITE
 *   domain     DOMAIN     SITE
 *
 * File format, as this loader reads it:
 * - Fields are separated by runs of tabs; a line without any tab is split on
 *   runs of spaces instead (hand-aligned files). Spaces around a field are
 *   trimmed, so a tab-separated key may hold inner spaces ("john smith").
 * - Blank lines and lines whose first non-blank byte is '#' are ignored;
 *   CRLF line ends and a leading UTF-8 BOM are accepted.
 * - The kind (database, user, domain) is matched ignoring ASCII case; so are
 *   database and site names (an exact match wins over a case-folded one).
 * - A user's value names a database or a site; a name that is both is taken
 *   as the database. Databases may be defined after the users naming them.
 * - A key repeated with the same value is accepted (the first line counts);
 *   with a different value it is an error.
 * - Every problem (unknown kind, wrong field count, unknown site or database,
 *   conflicting duplicate, field over SITEMAP_FIELD_MAX bytes, user key over
 *   SITEMAP_KEY_MAX bytes once normalised, NUL or other control byte, a domain
 *   holding '@' or '\') fails the whole load with "FILE:LINE: reason".
 *
 * The loaded map is immutable: built once, then shared read-only by every
 * worker thread without locks. Sites are indices into the conf's sites[]; the
 * map must not outlive the conf it was loaded against.
 */
#ifndef EF_SITE_SITEMAP_H
#define EF_SITE_SITEMAP_H

#include <stddef.h>

#include "conf/conf.h"

/* Longest field of a map line, in bytes. */
#define SITEMAP_FIELD_MAX 512
/* Longest normalised user key the map stores; a buffer of
 * SITEMAP_KEY_MAX + 1 bytes holds any key a lookup can match. */
#define SITEMAP_KEY_MAX 512
/* Problems listed in *err before the loader only counts the rest. */
#define SITEMAP_ERR_MAX 20
/* Largest map file accepted (a 1,000,000-user map is about 40 MB). */
#define SITEMAP_FILE_MAX (1024UL * 1024 * 1024)

struct sitemap;

/* Which kind of map line decided the site. */
enum sitemap_how {
	SITEMAP_NONE = 0,  /* no line matched: the caller uses default_site */
	SITEMAP_USER_SITE, /* user line naming a site */
	SITEMAP_USER_DB,   /* user line naming a database, whose line names
	                      the site */
	SITEMAP_DOMAIN,    /* domain line for the part after '@' */
	SITEMAP_DIRECTORY, /* the directory named the database, whose line
			      names the site */
	SITEMAP_DIRECTORY_CLOUD, /* the directory said the mailbox moved to
				    Exchange Online: sitemap.ldap.cloud.site */
};

/* The answer of a lookup; plain data, no ownership. */
struct sitemap_match {
	int site; /* index into conf->sites, -1 when none */
	enum sitemap_how how;
	unsigned line;        /* line of the user or domain entry, 0 if none */
	unsigned db_line;     /* SITEMAP_USER_DB: line of the database */
	const char *database; /* SITEMAP_USER_DB: database name as written in
	                         the map, valid while the map lives; NULL
	                         otherwise */
};

/*
 * Reads the site map at path against c (site names, NetBIOS domains). Returns
 * a new map owned by the caller (sitemap_free), or NULL with *err (when err
 * is not NULL) set to a malloc'd text of "FILE:LINE: reason" lines, at most
 * SITEMAP_ERR_MAX of them plus a count of the rest. c must outlive the map.
 */
struct sitemap *sitemap_load(const struct conf *c, const char *path,
                             char **err);

/*
 * Same as sitemap_load, from the len bytes at buf (not NUL-terminated, may
 * hold anything). name is used in messages only. buf is not kept.
 */
struct sitemap *sitemap_load_mem(const struct conf *c, const char *name,
                                 const char *buf, size_t len, char **err);

/* Frees a map; NULL is accepted. */
void sitemap_free(struct sitemap *m);

/*
 * Writes the lookup key of the user name user into out (cap bytes, NUL-
 * terminated) and returns its length: ASCII letters lowered, other bytes kept;
 * "DOMAIN\user" (split on the last '\') becomes "user@domain" when DOMAIN is
 * one of c's NetBIOS names (ignoring case) and stays "domain\user" otherwise;
 * "DOMAIN\user@x" drops DOMAIN (the UPN is more precise); "\user" is "user";
 * "user@domain" and a bare "user" are only lowered. Returns 0 when user is
 * NULL or empty, has an empty user part ("DOMAIN\"), holds a NUL byte (the
 * _len form), or the key does not fit in cap. c may be NULL (no NetBIOS
 * names). The same function makes the map's keys, so lookups must use it.
 */
size_t sitemap_normalise(const struct conf *c, const char *user, char *out,
                         size_t cap);

/* sitemap_normalise for the len bytes at user (not NUL-terminated). */
size_t sitemap_normalise_len(const struct conf *c, const char *user, size_t len,
                             char *out, size_t cap);

/*
 * Looks up the normalised key (from sitemap_normalise): its user line (the
 * site directly, or through its database), else the domain line for the part
 * after its last '@'. Fills *out; out->site is -1 and out->how SITEMAP_NONE
 * when nothing matches, when m is NULL (no map configured) or key is NULL or
 * empty. Safe from any thread.
 */
void sitemap_lookup(const struct sitemap *m, const char *key,
                    struct sitemap_match *out);

/* Number of distinct user keys in the map (0 for NULL). */
/* The site of database db (ASCII case ignored) as the map's database lines
 * say: the second half of a lookup whose first half, user -> database, the
 * directory answered. out->site is -1 when the map does not know db. */
void sitemap_database(const struct sitemap *m, const char *db,
		      struct sitemap_match *out);

size_t sitemap_users(const struct sitemap *m);

/* Number of databases in the map (0 for NULL). */
size_t sitemap_databases(const struct sitemap *m);

/* Number of domain lines in the map (0 for NULL). */
size_t sitemap_domains(const struct sitemap *m);

/* The name the map was loaded under (path or name given), for messages; ""
 * for NULL. Valid while the map lives. */
const char *sitemap_name(const struct sitemap *m);

#endif
