/*
 * Phase 1 of a load: libyaml's event stream walked against the libcyaml
 * schema. libcyaml stops at its first problem and names no line; this walk
 * reports every problem with its line, and only a document it passes is
 * handed to libcyaml. The walk recurses only along the schema (a few levels);
 * anything else is skipped iteratively, and nesting beyond CONF_DEPTH_MAX
 * ends the walk, so hostile input costs time linear in its size.
 */
#include "conf/conf_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "core/str.h"

#define PATH_MAX_LEN 160

struct scan {
	struct conf_ctx *c;
	yaml_parser_t parser;
	yaml_event_t ev; /* the current event, valid while have_ev */
	bool have_ev;
	bool bad;       /* the document does not match the schema */
	unsigned depth; /* collections open around the current event */
	bool netbios_full;
};

static unsigned ev_line(const yaml_event_t *ev)
{
	return (unsigned)ev->start_mark.line + 1;
}

/* Line of a reader error, which libyaml gives as a byte offset. */
static unsigned offset_line(const char *yaml, size_t len, size_t off)
{
	unsigned line = 1;

	for (size_t i = 0; i < off && i < len; i++)
		if (yaml[i] == '\n')
			line++;
	return line;
}

static void syntax_error(struct scan *s, const char *yaml, size_t len)
{
	const yaml_parser_t *p = &s->parser;
	const char *problem = p->problem ? p->problem : "malformed YAML";

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		s->c->oom = true;
		break;
	case YAML_READER_ERROR:
		conf_err(s->c, offset_line(yaml, len, p->problem_offset),
		         "not valid YAML text: %s", problem);
		break;
	default:
		if (p->context != NULL)
			conf_err(s->c, (unsigned)p->problem_mark.line + 1,
			         "YAML syntax: %s (%s at line %u)", problem,
			         p->context,
			         (unsigned)p->context_mark.line + 1);
		else
			conf_err(s->c, (unsigned)p->problem_mark.line + 1,
			         "YAML syntax: %s", problem);
		break;
	}
}

/* Moves to the next event; -1 ends the walk (syntax error recorded, or
 * nesting too deep). */
static int next(struct scan *s, const char *yaml, size_t len)
{
	if (s->have_ev) {
		yaml_event_delete(&s->ev);
		s->have_ev = false;
	}
	if (!yaml_parser_parse(&s->parser, &s->ev)) {
		syntax_error(s, yaml, len);
		s->bad = true;
		return -1;
	}
	s->have_ev = true;
	switch (s->ev.type) {
	case YAML_MAPPING_START_EVENT:
	case YAML_SEQUENCE_START_EVENT:
		if (++s->depth > CONF_DEPTH_MAX) {
			conf_err(s->c, ev_line(&s->ev),
			         "nested deeper than %d levels",
			         CONF_DEPTH_MAX);
			s->bad = true;
			return -1;
		}
		break;
	case YAML_MAPPING_END_EVENT:
	case YAML_SEQUENCE_END_EVENT:
		s->depth--;
		break;
	default:
		break;
	}
	return 0;
}

/* The walk threads the input through for syntax_error's line count. */
struct walk {
	struct scan *s;
	const char *yaml;
	size_t len;
};

static int walk_next(struct walk *w)
{
	return next(w->s, w->yaml, w->len);
}

static void bad(struct walk *w, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bad(struct walk *w, unsigned line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_err(w->s->c, line, "%s", msg);
	w->s->bad = true;
}

/* Skips the value starting at the current event, however deep. */
static int skip(struct walk *w)
{
	unsigned depth = w->s->depth;
	yaml_event_type_t t = w->s->ev.type;

	if (t != YAML_MAPPING_START_EVENT && t != YAML_SEQUENCE_START_EVENT)
		return 0;
	while (w->s->depth >= depth)
		if (walk_next(w) < 0)
			return -1;
	return 0;
}

static bool is_null(const yaml_event_t *ev)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	const char *v = (const char *)ev->data.scalar.value;

	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (strcmp(v, nulls[i]) == 0)
			return true;
	return false;
}

/* Names what the current event starts, for "expected X, got Y". */
static const char *what(const yaml_event_t *ev, char *buf, size_t cap)
{
	char v[64];

	switch (ev->type) {
	case YAML_MAPPING_START_EVENT:
		return "a mapping";
	case YAML_SEQUENCE_START_EVENT:
		return "a list";
	case YAML_SCALAR_EVENT:
		if (is_null(ev))
			return "nothing";
		snprintf(buf, cap, "'%s'",
		         conf_show(v, sizeof(v),
		                   (const char *)ev->data.scalar.value,
		                   ev->data.scalar.length));
		return buf;
	case YAML_ALIAS_EVENT:
		return "an alias";
	default:
		return "something else";
	}
}

static void path_key(char *out, const char *path, const char *key)
{
	if (path[0] == '\0')
		snprintf(out, PATH_MAX_LEN, "%s", key);
	else
		snprintf(out, PATH_MAX_LEN, "%s.%s", path, key);
}

/* "in sites[1]" for messages, or nothing at the top. */
static const char *in_path(const char *path, char *buf, size_t cap)
{
	if (path[0] == '\0')
		return "";
	snprintf(buf, cap, " in %s", path);
	return buf;
}

static const char *anchor_of(const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		return (const char *)ev->data.scalar.anchor;
	case YAML_MAPPING_START_EVENT:
		return (const char *)ev->data.mapping_start.anchor;
	case YAML_SEQUENCE_START_EVENT:
		return (const char *)ev->data.sequence_start.anchor;
	default:
		return NULL;
	}
}

/* Anchors and aliases are refused: an alias can expand exponentially
 * ("billion laughs") and a config gains nothing from either. */
static bool refuse_alias(struct walk *w, const yaml_event_t *ev,
                         const char *path, unsigned line)
{
	const char *name = ev->type == YAML_ALIAS_EVENT
	                       ? (const char *)ev->data.alias.anchor
	                       : anchor_of(ev);
	const char *where = path[0] ? path : "the file";
	char shown[64];

	if (name == NULL)
		return false;
	conf_show(shown, sizeof(shown), name, strlen(name));
	if (ev->type == YAML_ALIAS_EVENT) {
		bad(w, line, "%s: aliases (*%s) are not supported", where,
		    shown);
		return true;
	}
	bad(w, line, "%s: anchors (&%s) are not supported", where, shown);
	return false;
}

static int walk_value(struct walk *w, const cyaml_schema_value_t *sv,
                      const char *path, unsigned line);

/* Levenshtein distance, capped: enough to suggest a key for a typo. */
static unsigned distance(const char *a, const char *b)
{
	unsigned row[40], la = (unsigned)strlen(a), lb = (unsigned)strlen(b);

	if (la >= 40 || lb >= 40)
		return 99;
	for (unsigned j = 0; j <= lb; j++)
		row[j] = j;
	for (unsigned i = 1; i <= la; i++) {
		unsigned diag = row[0];

		row[0] = i;
		for (unsigned j = 1; j <= lb; j++) {
			unsigned up = row[j],
			         best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

static void unknown_key(struct walk *w, const cyaml_schema_field_t *fields,
                        const char *path, const yaml_event_t *key)
{
	char shown[64], in[PATH_MAX_LEN + 8];
	const char *k = (const char *)key->data.scalar.value;
	const char *near = NULL;

	for (const cyaml_schema_field_t *f = fields; f->key != NULL; f++)
		if (distance(k, f->key) <= 2) {
			near = f->key;
			break;
		}
	conf_show(shown, sizeof(shown), k, key->data.scalar.length);
	if (near != NULL)
		bad(w, ev_line(key), "unknown key '%s'%s (did you mean '%s'?)",
		    shown, in_path(path, in, sizeof(in)), near);
	else
		bad(w, ev_line(key), "unknown key '%s'%s", shown,
		    in_path(path, in, sizeof(in)));
}

static const cyaml_schema_field_t *find_field(const cyaml_schema_field_t *f,
                                              const yaml_event_t *key)
{
	const char *k = (const char *)key->data.scalar.value;

	/* A key holding a NUL byte must not match on its prefix. */
	if (strlen(k) != key->data.scalar.length)
		return NULL;
	for (; f->key != NULL; f++)
		if (strcmp(f->key, k) == 0)
			return f;
	return NULL;
}

/* Handles one "key: value" of a mapping, the key being the current event.
 * seen[i] holds the line where field i was first given. */
static int walk_entry(struct walk *w, const cyaml_schema_field_t *fields,
                      const char *path, unsigned *seen)
{
	const yaml_event_t *ev = &w->s->ev;
	const cyaml_schema_field_t *f;
	char sub[PATH_MAX_LEN];
	unsigned line = ev_line(ev);

	if (ev->type != YAML_SCALAR_EVENT) {
		bad(w, line, "a key must be a plain name, not %s",
		    ev->type == YAML_ALIAS_EVENT ? "an alias" : "a collection");
		/* Skip the key, then its value. */
		if (skip(w) < 0 || walk_next(w) < 0)
			return -1;
		return skip(w);
	}
	refuse_alias(w, ev, path, line);
	f = find_field(fields, ev);
	if (f == NULL)
		unknown_key(w, fields, path, ev);
	else if (seen[f - fields] != 0)
		bad(w, line, "'%s' given twice (first at line %u)", f->key,
		    seen[f - fields]);
	if (walk_next(w) < 0)
		return -1;
	if (f == NULL || seen[f - fields] != 0)
		return skip(w);
	seen[f - fields] = line;
	path_key(sub, path, f->key);
	return walk_value(w, &f->value, sub, line);
}

static int walk_mapping(struct walk *w, const cyaml_schema_field_t *fields,
                        const char *path, unsigned line)
{
	unsigned seen[32] = {0}, n = 0;
	char in[PATH_MAX_LEN + 8];

	while (fields[n].key != NULL)
		n++;
	/* The schema is ours: a wider mapping is a programming error. */
	if (n > 32) {
		bad(w, line, "internal: schema mapping too wide");
		return -1;
	}
	for (;;) {
		if (walk_next(w) < 0)
			return -1;
		if (w->s->ev.type == YAML_MAPPING_END_EVENT)
			break;
		if (walk_entry(w, fields, path, seen) < 0)
			return -1;
	}
	for (unsigned i = 0; i < n; i++)
		if (seen[i] == 0 &&
		    !(fields[i].value.flags & CYAML_FLAG_OPTIONAL))
			bad(w, line, "missing required key '%s'%s",
			    fields[i].key, in_path(path, in, sizeof(in)));
	return 0;
}

static int walk_sequence(struct walk *w, const cyaml_schema_value_t *sv,
                         const char *path, unsigned line)
{
	const yaml_event_t *ev = &w->s->ev;
	char sub[PATH_MAX_LEN];
	unsigned n = 0, min = sv->sequence.min, max = sv->sequence.max;

	for (;; n++) {
		if (walk_next(w) < 0)
			return -1;
		if (ev->type == YAML_SEQUENCE_END_EVENT)
			break;
		if (n == max)
			bad(w, ev_line(ev), "%s: more than %u entries", path,
			    max);
		if (n >= max) {
			if (skip(w) < 0)
				return -1;
			continue;
		}
		snprintf(sub, sizeof(sub), "%s[%u]", path, n);
		if (walk_value(w, sv->sequence.entry, sub, ev_line(ev)) < 0)
			return -1;
	}
	if (n < min)
		bad(w, line, "%s: needs at least %u %s", path, min,
		    min == 1 ? "entry" : "entries");
	return 0;
}

static int add_pair(struct conf_ctx *c, const yaml_event_t *key,
                    const yaml_event_t *val)
{
	struct conf_netbios *nb;

	if (c->n_netbios == c->cap_netbios) {
		unsigned cap = c->cap_netbios ? 2 * c->cap_netbios : 8;

		nb = realloc(c->netbios, cap * sizeof(*nb));
		if (nb == NULL)
			return -1;
		c->netbios = nb;
		c->cap_netbios = cap;
	}
	nb = &c->netbios[c->n_netbios];
	nb->name = str_dup((struct str){(const char *)key->data.scalar.value,
	                                key->data.scalar.length});
	nb->domain = str_dup((struct str){(const char *)val->data.scalar.value,
	                                  val->data.scalar.length});
	nb->line = ev_line(key);
	if (nb->name == NULL || nb->domain == NULL) {
		free(nb->name);
		free(nb->domain);
		return -1;
	}
	c->n_netbios++;
	return 0;
}

/* A scalar fit for a free key or value: no alias, no NUL, not null. */
static bool plain_text(const yaml_event_t *ev)
{
	return ev->type == YAML_SCALAR_EVENT && !is_null(ev) &&
	       strlen((const char *)ev->data.scalar.value) ==
	           ev->data.scalar.length;
}

/* One "NAME: domain" of a free mapping; the key is the current event. */
static int walk_pair(struct walk *w, const char *path)
{
	yaml_event_t key = w->s->ev;
	char got[80];
	int r = 0;

	/* Keep the key event alive past the next parse. */
	w->s->have_ev = false;
	if (refuse_alias(w, &key, path, ev_line(&key))) {
		r = walk_next(w) < 0 ? -1 : skip(w);
		goto out;
	}
	if (!plain_text(&key)) {
		bad(w, ev_line(&key), "%s: a key must be a plain name, not %s",
		    path, what(&key, got, sizeof(got)));
		if (skip(w) < 0 || walk_next(w) < 0)
			r = -1;
		else
			r = skip(w);
		goto out;
	}
	if (walk_next(w) < 0) {
		r = -1;
		goto out;
	}
	if (refuse_alias(w, &w->s->ev, path, ev_line(&key))) {
		r = 0;
	} else if (!plain_text(&w->s->ev)) {
		bad(w, ev_line(&key), "%s: expected a domain name, got %s",
		    path, what(&w->s->ev, got, sizeof(got)));
		r = skip(w);
	} else if (w->s->c->n_netbios >= CONF_NETBIOS_MAX) {
		/* Said once: the rest of a huge mapping adds nothing. */
		if (!w->s->netbios_full)
			bad(w, ev_line(&key), "%s: more than %d entries", path,
			    CONF_NETBIOS_MAX);
		w->s->netbios_full = true;
	} else if (add_pair(w->s->c, &key, &w->s->ev) < 0) {
		w->s->c->oom = true;
		r = -1;
	}
out:
	yaml_event_delete(&key);
	return r;
}

static int walk_pairs(struct walk *w, const char *path)
{
	for (;;) {
		if (walk_next(w) < 0)
			return -1;
		if (w->s->ev.type == YAML_MAPPING_END_EVENT)
			return 0;
		if (walk_pair(w, path) < 0)
			return -1;
	}
}

static bool parse_uint(const yaml_event_t *ev, uint64_t max, uint64_t *v,
                       const char **why)
{
	struct str s = {(const char *)ev->data.scalar.value,
	                ev->data.scalar.length};

	if (s.len > 0 && s.p[0] == '-') {
		*why = "must not be negative";
		return false;
	}
	if (!str_to_u64(s, v)) {
		*why = "expected a whole number";
		return false;
	}
	/* YAML 1.1 reads 010 as octal: refuse rather than guess. */
	if (s.len > 1 && s.p[0] == '0') {
		*why = "a number must not start with 0";
		return false;
	}
	if (*v > max) {
		*why = "number too large";
		return false;
	}
	return true;
}

static bool parse_bool(const char *v)
{
	static const char *const words[] = {"true", "false", "yes",
	                                    "no",   "on",    "off"};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasecmp(v, words[i]) == 0)
			return true;
	return false;
}

static bool parse_enum(const cyaml_schema_value_t *sv, const char *v)
{
	for (uint32_t i = 0; i < sv->enumeration.count; i++)
		if (strcmp(v, sv->enumeration.strings[i].str) == 0)
			return true;
	return false;
}

static void enum_names(const cyaml_schema_value_t *sv, char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < sv->enumeration.count && n < cap; i++) {
		int r = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "",
		                 sv->enumeration.strings[i].str);

		if (r < 0)
			break;
		n += (size_t)r;
	}
}

/* Checks a scalar the way libcyaml will read it, but stricter, so that
 * libcyaml never meets a value it would refuse or misread. */
static void walk_scalar(struct walk *w, const cyaml_schema_value_t *sv,
                        const char *path, unsigned line)
{
	const yaml_event_t *ev = &w->s->ev;
	const char *v = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	char got[80], names[128];
	const char *why = NULL;
	uint64_t n;

	if (strlen(v) != len) {
		bad(w, line, "%s: holds a NUL byte", path);
		return;
	}
	switch (sv->type) {
	case CYAML_STRING:
		if (is_null(ev))
			bad(w, line, "%s: expected a value, got nothing", path);
		else if (len < sv->string.min)
			bad(w, line, "%s: must not be empty", path);
		else if (len > sv->string.max)
			bad(w, line, "%s: longer than %u bytes", path,
			    (unsigned)sv->string.max);
		break;
	case CYAML_UINT:
		if (!parse_uint(ev, UINT64_MAX >> (64 - 8 * sv->data_size), &n,
		                &why))
			bad(w, line, "%s: %s, got %s", path, why,
			    what(ev, got, sizeof(got)));
		break;
	case CYAML_BOOL:
		if (!parse_bool(v))
			bad(w, line, "%s: expected true or false, got %s", path,
			    what(ev, got, sizeof(got)));
		break;
	case CYAML_ENUM:
		if (!parse_enum(sv, v)) {
			enum_names(sv, names, sizeof(names));
			bad(w, line, "%s: expected one of %s, got %s", path,
			    names, what(ev, got, sizeof(got)));
		}
		break;
	default:
		bad(w, line, "%s: not readable (schema type %d)", path,
		    (int)sv->type);
		break;
	}
}

static yaml_event_type_t wanted(const cyaml_schema_value_t *sv,
                                const char **name)
{
	switch (sv->type) {
	case CYAML_MAPPING:
	case CYAML_IGNORE:
		*name = "a mapping";
		return YAML_MAPPING_START_EVENT;
	case CYAML_SEQUENCE:
		*name = "a list";
		return YAML_SEQUENCE_START_EVENT;
	default:
		*name = "a single value";
		return YAML_SCALAR_EVENT;
	}
}

/* Walks the value starting at the current event; line is where its key or
 * list entry is, the line messages and the index give for it. */
static int walk_value(struct walk *w, const cyaml_schema_value_t *sv,
                      const char *path, unsigned line)
{
	const yaml_event_t *ev = &w->s->ev;
	const char *want_name;
	yaml_event_type_t want = wanted(sv, &want_name);
	char got[80];

	if (refuse_alias(w, ev, path, line))
		return 0;
	if (path[0] != '\0')
		conf_mark(w->s->c, path, line);
	if (ev->type != want) {
		if (path[0] == '\0')
			bad(w, line,
			    "the file must be a mapping of keys "
			    "(site:, listen:, ...), not %s",
			    what(ev, got, sizeof(got)));
		else
			bad(w, line, "%s: expected %s, got %s", path, want_name,
			    what(ev, got, sizeof(got)));
		return skip(w);
	}
	switch (sv->type) {
	case CYAML_MAPPING:
		return walk_mapping(w, sv->mapping.fields, path, ev_line(ev));
	case CYAML_SEQUENCE:
		return walk_sequence(w, sv, path, line);
	case CYAML_IGNORE:
		return walk_pairs(w, path);
	default:
		walk_scalar(w, sv, path, line);
		return 0;
	}
}

static int walk_stream(struct walk *w)
{
	const yaml_event_t *ev = &w->s->ev;
	unsigned doc_line;

	/* STREAM-START, then DOCUMENT-START or STREAM-END */
	if (walk_next(w) < 0 || walk_next(w) < 0)
		return -1;
	if (ev->type == YAML_STREAM_END_EVENT) {
		bad(w, 1, "the file holds no settings");
		return 0;
	}
	doc_line = ev_line(ev);
	if (walk_next(w) < 0)
		return -1;
	if (ev->type == YAML_SCALAR_EVENT && is_null(ev)) {
		bad(w, doc_line, "the file holds no settings");
	} else if (walk_value(w, &conf_schema, "", ev_line(ev)) < 0) {
		return -1;
	}
	/* DOCUMENT-END, then STREAM-END or another document */
	if (walk_next(w) < 0 || walk_next(w) < 0)
		return -1;
	if (ev->type == YAML_DOCUMENT_START_EVENT)
		bad(w, ev_line(ev),
		    "a second YAML document ('---'): "
		    "only one is read");
	return 0;
}

int conf_scan(struct conf_ctx *c, const char *yaml, size_t len)
{
	struct scan s = {.c = c};
	struct walk w = {&s, yaml, len};
	int r;

	if (!yaml_parser_initialize(&s.parser)) {
		c->oom = true;
		return -1;
	}
	yaml_parser_set_input_string(&s.parser, (const unsigned char *)yaml,
	                             len);
	r = walk_stream(&w);
	if (s.have_ev)
		yaml_event_delete(&s.ev);
	yaml_parser_delete(&s.parser);
	return (r < 0 || s.bad) ? -1 : 0;
}
