/*
 * Fuzzes ad_request_parse() with arbitrary bytes, checks what autodiscover.h
 * promises about the result, and, whenever a parse yields an address,
 * builds both responses around it and parses them back with libxml2: a
 * response easfront builds from any request must always be well-formed
 * and carry the address unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "eas/autodiscover.h"
#include "fuzz_eas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The first element child of n named name, or NULL. */
static xmlNodePtr fuzz_child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n != NULL ? n->children : NULL; c != NULL;
	     c = c->next) {
		if (c->type == XML_ELEMENT_NODE &&
		    xmlStrEqual(c->name, (const xmlChar *)name))
			return c;
	}
	return NULL;
}

/* Parses doc back and checks the text at the end of path. */
static void fuzz_reparse(const char *doc, size_t len, const char *const *path,
                         const char *want)
{
	xmlDocPtr d;
	xmlNodePtr n;
	xmlChar *t;

	fuzz_check(doc != NULL && strlen(doc) == len);
	d = xmlReadMemory(doc, (int)len, NULL, NULL, XML_PARSE_NONET);
	fuzz_check(d != NULL);
	n = xmlDocGetRootElement(d);
	fuzz_check(n != NULL && n->ns != NULL &&
	           xmlStrEqual(n->ns->href, (const xmlChar *)AD_NS_RESPONSE));
	for (size_t i = 0; path[i] != NULL; i++)
		n = fuzz_child(n, path[i]);
	fuzz_check(n != NULL);
	t = xmlNodeGetContent(n);
	fuzz_check(t != NULL && strcmp((const char *)t, want) == 0);
	xmlFree(t);
	xmlFreeDoc(d);
}

static void fuzz_responses(const char *email)
{
	static const char *const email_path[] = {"Response", "User",
	                                         "EMailAddress", NULL};
	static const char *const name_path[] = {"Response", "User",
	                                        "DisplayName", NULL};
	static const char *const msg_path[] = {"Response", "Error", "Message",
	                                       NULL};
	size_t len = 0;
	char *doc;

	doc = ad_response_settings(email, email, "https://eas.example/x", &len);
	fuzz_reparse(doc, len, email_path, email);
	fuzz_reparse(doc, len, name_path, email);
	free(doc);
	/* An address fits a Message always, an Id only when short. */
	doc = ad_response_error(AD_ERR_INVALID, email,
	                        strlen(email) < AD_ID_MAX ? email : NULL, &len);
	fuzz_reparse(doc, len, msg_path, email);
	free(doc);
}

/* What autodiscover.h promises about any parse, then the responses. */
static void fuzz_request(const char *body, size_t len)
{
	struct ad_request r;

	ad_request_parse(body, len, &r);
	fuzz_check_text(r.email, sizeof(r.email));
	fuzz_check(r.error_code == 0 || r.error_code == AD_ERR_INVALID ||
	           r.error_code == AD_ERR_NO_SCHEMA);
	fuzz_check(r.schema >= AD_SCHEMA_NONE && r.schema <= AD_SCHEMA_OTHER);
	if (r.schema == AD_SCHEMA_NONE)
		fuzz_check(r.error_code == AD_ERR_INVALID &&
		           r.email[0] == '\0' && !r.acceptable_ok);
	if (r.error_code == AD_ERR_INVALID)
		fuzz_check(r.email[0] == '\0');
	if (r.error_code == AD_ERR_NO_SCHEMA)
		fuzz_check(r.schema == AD_SCHEMA_MOBILESYNC &&
		           r.email[0] != '\0' && !r.acceptable_ok);
	if (r.schema == AD_SCHEMA_MOBILESYNC && r.error_code == 0)
		fuzz_check(r.email[0] != '\0' && r.acceptable_ok);
	if (r.email[0] != '\0')
		fuzz_responses(r.email);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char head[] =
	    "<Autodiscover xmlns=\"" AD_NS_MOBILESYNC_REQUEST
	    "\"><Request><EMailAddress>";
	static const char tail[] =
	    "</EMailAddress>"
	    "<AcceptableResponseSchema>" AD_NS_MOBILESYNC_RESPONSE
	    "</AcceptableResponseSchema>"
	    "</Request></Autodiscover>";
	static char body[sizeof(head) + sizeof(tail) + 1024];
	static bool ready;

	if (!ready) {
		ad_init();
		ready = true;
	}
	fuzz_request((const char *)data, size);

	/* The bytes as the address of a valid request, so that random input
	 * reaches the text checks and not only the XML parser's errors. */
	if (size <= 1024) {
		size_t n = sizeof(head) - 1;

		memcpy(body, head, n);
		memcpy(body + n, data, size);
		n += size;
		memcpy(body + n, tail, sizeof(tail) - 1);
		fuzz_request(body, n + sizeof(tail) - 1);
	}

	/* The raw bytes as a value: refused or escaped, never broken. */
	if (size > 0 && size < AD_MESSAGE_MAX) {
		static const char *const url_path[] = {
		    "Response", "Action", "Settings", "Server", "Url", NULL};
		char value[AD_MESSAGE_MAX];
		size_t len = 0;
		char *doc;

		memcpy(value, data, size);
		value[size] = '\0';
		doc = ad_response_settings(value, NULL, value, &len);
		if (doc != NULL) {
			fuzz_reparse(doc, len, url_path, value);
			free(doc);
		}
	}
	return 0;
}
