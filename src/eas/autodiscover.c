/*
 * Autodiscover requests: the XML body of a POST to autodiscover.xml turned
 * into struct ad_request.
 *
 * libxml2 2.9 has no XML_PARSE_NO_XXE (2.13 adds it, and it is used there),
 * so the hostile-input guard is built from what 2.9 does have and stays
 * correct on later versions:
 * - the body must be strict UTF-8 without NUL, and libxml2 is told to read
 *   it as UTF-8 ignoring any encoding declaration, so no byte can mean
 *   anything but what it looks like (no UTF-16, UTF-7 or EBCDIC tricks);
 * - this context's SAX handler stops the parser the moment a DOCTYPE is
 *   reported, before its internal subset is read: no entity is ever
 *   declared, so there is nothing to expand (billion laughs) and nothing
 *   external to load (XXE); the other DTD and entity callbacks refuse too,
 *   should a libxml2 version ever reach them;
 * - no XML_PARSE_NOENT, DTDLOAD, DTDATTR, DTDVALID, XINCLUDE or HUGE;
 *   XML_PARSE_NONET on top;
 * - errors go to a per-context structured handler, so no thread touches
 *   libxml2's global error state and nothing is printed.
 */
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "eas/autodiscover.h"
#include "eas/eas_int.h"

/* XML_PARSE_NO_XXE is an enum from 2.13 on, so only the version tells. */
#if LIBXML_VERSION >= 21300
#define AD_XML_NO_XXE XML_PARSE_NO_XXE
#else
#define AD_XML_NO_XXE 0
#endif

#define AD_XML_OPTIONS                                                         \
	(XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |           \
	 XML_PARSE_IGNORE_ENC | XML_PARSE_NOCDATA | AD_XML_NO_XXE)

/* Raw text of a value before trimming: room for generous indentation. */
#define AD_RAW_TEXT_MAX 1024

/* What the SAX guard saw; lives on ad_request_parse()'s stack and is
 * reached through the context's _private. */
struct ad_guard {
	bool refused; /* a DTD or entity declaration: the parse was stopped */
};

/* What the Request element of a body holds. */
struct ad_fields {
	unsigned requests;       /* Request children of the root */
	unsigned emails;         /* EMailAddress children of the Request */
	unsigned schemas;        /* AcceptableResponseSchema children */
	const xmlNode *email;    /* the first of each, owned by the doc */
	const xmlNode *accepted; /* AcceptableResponseSchema */
};

const char *ad_schema_str(enum ad_schema s)
{
	switch (s) {
	case AD_SCHEMA_NONE:
		return "none";
	case AD_SCHEMA_MOBILESYNC:
		return "mobilesync";
	case AD_SCHEMA_OUTLOOK:
		return "outlook";
	case AD_SCHEMA_OTHER:
		return "other";
	}
	return "none";
}

void ad_init(void)
{
	/* libxml2 2.9 initialises its globals (dictionary lock, encoding
	 * handlers, thread keys) unlocked: this must happen before threads. */
	xmlInitParser();
}

void ad_cleanup(void)
{
	xmlCleanupParser();
}

/* Strict UTF-8 (no overlong forms, no surrogates, at most U+10FFFF) with
 * no NUL byte. */
static bool ad_utf8_valid(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = eas_utf8_next(p + i, n - i, &cp);

		if (l == 0 || cp == 0)
			return false;
		i += l;
	}
	return true;
}

/* ---- the SAX guard ---- */

static void ad_refuse(void *ctx)
{
	xmlParserCtxtPtr ctxt = ctx;
	struct ad_guard *g = ctxt->_private;

	g->refused = true;
	xmlStopParser(ctxt);
}

/* Called once the DOCTYPE's name and external id are read, before the
 * internal subset: stopping here means no declaration is ever parsed. */
static void ad_sax_subset(void *ctx, const xmlChar *name,
                          const xmlChar *external_id, const xmlChar *system_id)
{
	ad_refuse(ctx);
}

static void ad_sax_entity_decl(void *ctx, const xmlChar *name, int type,
                               const xmlChar *public_id,
                               const xmlChar *system_id, xmlChar *content)
{
	ad_refuse(ctx);
}

static xmlParserInputPtr ad_sax_resolve(void *ctx, const xmlChar *public_id,
                                        const xmlChar *system_id)
{
	ad_refuse(ctx);
	return NULL;
}

/* Only the five predefined entities exist in a document without a DTD. */
static xmlEntityPtr ad_sax_get_entity(void *ctx, const xmlChar *name)
{
	return xmlGetPredefinedEntity(name);
}

static xmlEntityPtr ad_sax_get_pentity(void *ctx, const xmlChar *name)
{
	ad_refuse(ctx);
	return NULL;
}

/* Parse errors only mean "not well-formed", which the result already
 * says; the handler exists so that nothing reaches libxml2's per-thread
 * generic handler (stderr). */
#if LIBXML_VERSION >= 21200
static void ad_xml_error(void *ctx, const xmlError *err)
#else
static void ad_xml_error(void *ctx, xmlErrorPtr err)
#endif
{
}

/* A parser context whose SAX handler (a private copy) carries the guard. */
static xmlParserCtxtPtr ad_ctxt_new(struct ad_guard *g)
{
	xmlParserCtxtPtr ctxt = xmlNewParserCtxt();

	if (ctxt == NULL)
		return NULL;
	ctxt->_private = g;
	ctxt->sax->internalSubset = ad_sax_subset;
	ctxt->sax->externalSubset = ad_sax_subset;
	ctxt->sax->entityDecl = ad_sax_entity_decl;
	ctxt->sax->resolveEntity = ad_sax_resolve;
	ctxt->sax->getEntity = ad_sax_get_entity;
	ctxt->sax->getParameterEntity = ad_sax_get_pentity;
	ctxt->sax->serror = ad_xml_error;
	return ctxt;
}

/* The well-formed, DTD-free document in body, or NULL. */
static xmlDocPtr ad_read(const char *body, size_t len)
{
	struct ad_guard g = {false};
	xmlParserCtxtPtr ctxt;
	xmlDocPtr doc;

	if (!ad_utf8_valid((const unsigned char *)body, len))
		return NULL;
	ctxt = ad_ctxt_new(&g);
	if (ctxt == NULL)
		return NULL;
	doc = xmlCtxtReadMemory(ctxt, body, (int)len, NULL, "UTF-8",
	                        AD_XML_OPTIONS);
	/* A stopped parser may still hand back a (rootless) document and
	 * leave wellFormed set: the guard's flag is what counts. An undefined
	 * prefix only clears nsWellFormed. */
	if (doc != NULL &&
	    (g.refused || !ctxt->wellFormed || !ctxt->nsWellFormed ||
	     doc->intSubset != NULL || doc->extSubset != NULL ||
	     xmlDocGetRootElement(doc) == NULL)) {
		xmlFreeDoc(doc);
		doc = NULL;
	}
	xmlFreeParserCtxt(ctxt);
	return doc;
}

/* ---- the document ---- */

static bool ad_is(const xmlNode *n, const xmlNs *ns, const char *name)
{
	if (n->type != XML_ELEMENT_NODE ||
	    !xmlStrEqual(n->name, (const xmlChar *)name))
		return false;
	if (ns == NULL)
		return n->ns == NULL;
	return n->ns != NULL && xmlStrEqual(n->ns->href, ns->href);
}

static enum ad_schema ad_schema_of(const xmlNode *root)
{
	const xmlChar *href;

	if (root->type != XML_ELEMENT_NODE ||
	    !xmlStrEqual(root->name, (const xmlChar *)"Autodiscover"))
		return AD_SCHEMA_NONE;
	href = root->ns != NULL ? root->ns->href : NULL;
	if (xmlStrEqual(href, (const xmlChar *)AD_NS_MOBILESYNC_REQUEST))
		return AD_SCHEMA_MOBILESYNC;
	if (xmlStrEqual(href, (const xmlChar *)AD_NS_OUTLOOK_REQUEST))
		return AD_SCHEMA_OUTLOOK;
	return AD_SCHEMA_OTHER;
}

/* Counts the elements that matter, in the root's namespace: a request
 * document's elements all share it. */
static void ad_fields_find(const xmlNode *root, struct ad_fields *f)
{
	const xmlNode *req = NULL;

	memset(f, 0, sizeof(*f));
	for (const xmlNode *n = root->children; n != NULL; n = n->next) {
		if (ad_is(n, root->ns, "Request") && f->requests++ == 0)
			req = n;
	}
	if (req == NULL)
		return;
	for (const xmlNode *n = req->children; n != NULL; n = n->next) {
		if (ad_is(n, root->ns, "EMailAddress") && f->emails++ == 0)
			f->email = n;
		if (ad_is(n, root->ns, "AcceptableResponseSchema") &&
		    f->schemas++ == 0)
			f->accepted = n;
	}
}

static bool ad_xml_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * The text content of element el with XML whitespace trimmed, into
 * buf[0..cap) (NUL-terminated), *n_out its length. Comments and processing
 * instructions are skipped; a child element, or more than cap - 1 bytes
 * of raw text, is -1.
 */
static int ad_text(const xmlNode *el, char *buf, size_t cap, size_t *n_out)
{
	size_t w = 0, start = 0;

	for (const xmlNode *n = el->children; n != NULL; n = n->next) {
		size_t len;

		if (n->type == XML_COMMENT_NODE || n->type == XML_PI_NODE)
			continue;
		if (n->type != XML_TEXT_NODE &&
		    n->type != XML_CDATA_SECTION_NODE)
			return -1;
		len = n->content != NULL ? strlen((const char *)n->content) : 0;
		if (len >= cap - w)
			return -1;
		memcpy(buf + w, n->content, len);
		w += len;
	}
	while (w > 0 && ad_xml_space((unsigned char)buf[w - 1]))
		w--;
	while (start < w && ad_xml_space((unsigned char)buf[start]))
		start++;
	memmove(buf, buf + start, w - start);
	*n_out = w - start;
	buf[*n_out] = '\0';
	return 0;
}

/* Copies the EMailAddress into out->email; -1 when it is unusable (empty,
 * not text, too long, control characters). */
static int ad_email(const xmlNode *el, struct ad_request *out)
{
	char raw[AD_RAW_TEXT_MAX];
	size_t n, pos = 0;

	if (ad_text(el, raw, sizeof(raw), &n) != 0 || n == 0)
		return -1;
	return eas_text_append((const uint8_t *)raw, n, EAS_TEXT_UTF8,
	                       out->email, sizeof(out->email), &pos);
}

/* Fills out from the root of a well-formed document. */
static void ad_judge(const xmlNode *root, struct ad_request *out)
{
	struct ad_fields f;
	char accepted[AD_RAW_TEXT_MAX];
	size_t n;
	bool accepted_text = false, email_ok = false;

	out->schema = ad_schema_of(root);
	if (out->schema == AD_SCHEMA_NONE) {
		out->error_code = AD_ERR_INVALID;
		return;
	}
	ad_fields_find(root, &f);
	if (f.requests == 1 && f.schemas == 1 &&
	    ad_text(f.accepted, accepted, sizeof(accepted), &n) == 0) {
		accepted_text = true;
		out->acceptable_ok =
		    strcmp(accepted, AD_NS_MOBILESYNC_RESPONSE) == 0;
	}
	if (f.requests == 1 && f.emails == 1)
		email_ok = ad_email(f.email, out) == 0;
	if (out->schema != AD_SCHEMA_MOBILESYNC)
		return;
	if (!email_ok || !accepted_text) {
		out->error_code = AD_ERR_INVALID;
		out->email[0] = '\0';
		out->acceptable_ok = false;
	} else if (!out->acceptable_ok) {
		out->error_code = AD_ERR_NO_SCHEMA;
	}
}

void ad_request_parse(const char *body, size_t len, struct ad_request *out)
{
	xmlDocPtr doc;

	memset(out, 0, sizeof(*out));
	out->schema = AD_SCHEMA_NONE;
	out->error_code = AD_ERR_INVALID;
	if (body == NULL || len == 0 || len > AD_MAX_BODY)
		return;
	doc = ad_read(body, len);
	if (doc == NULL)
		return;
	out->error_code = 0;
	ad_judge(xmlDocGetRootElement(doc), out);
	xmlFreeDoc(doc);
}
