/*
 * Autodiscover responses easfront writes itself: built as a libxml2 tree
 * and serialised by libxml2, so that every value is escaped by the library
 * and namespaces are declared where they belong, never pasted as text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/tree.h>

#include "eas/autodiscover.h"
#include "eas/eas_int.h"

/* A response under construction; every node belongs to doc. */
struct ad_out {
	xmlDocPtr doc;
	xmlNodePtr response; /* Autodiscover/Response */
	xmlNsPtr ns;         /* namespace of Response and its content */
};

/* True when s is 1..cap-1 bytes of UTF-8 made of XML characters without
 * control characters: libxml2 escapes markup but passes bad encoding, C0
 * bytes and the non-characters U+FFFE/U+FFFF on, making a document no
 * client can parse. */
static bool ad_value_ok(const char *s, size_t cap)
{
	char check[AD_URL_MAX];
	size_t len, pos = 0;

	if (s == NULL || cap > sizeof(check))
		return false;
	len = strnlen(s, cap);
	if (len == 0 || len == cap)
		return false;
	if (eas_text_append((const uint8_t *)s, len, EAS_TEXT_UTF8, check, cap,
	                    &pos) != 0)
		return false;
	/* In valid UTF-8 these bytes are exactly U+FFFE and U+FFFF. */
	return memmem(s, len, "\xef\xbf\xbe", 3) == NULL &&
	       memmem(s, len, "\xef\xbf\xbf", 3) == NULL;
}

/* Starts <Autodiscover xmlns=AD_NS_RESPONSE><Response xmlns=resp_ns>;
 * resp_ns NULL keeps Response in the outer namespace. Returns 0 or -1
 * (out of memory; nothing left to free). */
static int ad_out_start(struct ad_out *o, const char *resp_ns)
{
	xmlNodePtr root;
	xmlNsPtr outer;

	memset(o, 0, sizeof(*o));
	o->doc = xmlNewDoc((const xmlChar *)"1.0");
	if (o->doc == NULL)
		return -1;
	root =
	    xmlNewDocNode(o->doc, NULL, (const xmlChar *)"Autodiscover", NULL);
	if (root == NULL)
		goto fail;
	xmlDocSetRootElement(o->doc, root);
	outer = xmlNewNs(root, (const xmlChar *)AD_NS_RESPONSE, NULL);
	if (outer == NULL)
		goto fail;
	xmlSetNs(root, outer);
	o->response =
	    xmlNewChild(root, outer, (const xmlChar *)"Response", NULL);
	if (o->response == NULL)
		goto fail;
	o->ns = outer;
	if (resp_ns != NULL) {
		o->ns = xmlNewNs(o->response, (const xmlChar *)resp_ns, NULL);
		if (o->ns == NULL)
			goto fail;
		xmlSetNs(o->response, o->ns);
	}
	return 0;
fail:
	xmlFreeDoc(o->doc);
	o->doc = NULL;
	return -1;
}

/* Adds <name>text</name> (escaped) under parent in the response's
 * namespace; text NULL makes an empty element. NULL on allocation
 * failure. */
static xmlNodePtr ad_out_add(struct ad_out *o, xmlNodePtr parent,
                             const char *name, const char *text)
{
	return xmlNewTextChild(parent, o->ns, (const xmlChar *)name,
	                       (const xmlChar *)text);
}

/* Serialises and frees o->doc. Returns the malloc'd document, or NULL. */
static char *ad_out_finish(struct ad_out *o, size_t *len)
{
	xmlChar *mem = NULL;
	char *out = NULL;
	int n = 0;

	/* "utf-8" as Exchange writes it; libxml2 puts it in the declaration
	 * as given. */
	xmlDocDumpFormatMemoryEnc(o->doc, &mem, &n, "utf-8", 1);
	xmlFreeDoc(o->doc);
	o->doc = NULL;
	/* Copied so that the caller frees with free() whatever allocator
	 * libxml2 was set up with. */
	if (mem != NULL && n > 0)
		out = malloc((size_t)n + 1);
	if (out != NULL) {
		memcpy(out, mem, (size_t)n);
		out[n] = '\0';
		*len = (size_t)n;
	}
	xmlFree(mem);
	return out;
}

char *ad_response_settings(const char *email, const char *display_name,
                           const char *url, size_t *len)
{
	struct ad_out o;
	xmlNodePtr user, server, settings, action;
	bool named = display_name != NULL && display_name[0] != '\0';

	if (!ad_value_ok(email, AD_EMAIL_MAX) ||
	    !ad_value_ok(url, AD_URL_MAX) ||
	    (named && !ad_value_ok(display_name, AD_NAME_MAX)))
		return NULL;
	if (ad_out_start(&o, AD_NS_MOBILESYNC_RESPONSE) != 0)
		return NULL;
	if (ad_out_add(&o, o.response, "Culture", "en:us") == NULL ||
	    (user = ad_out_add(&o, o.response, "User", NULL)) == NULL ||
	    (named &&
	     ad_out_add(&o, user, "DisplayName", display_name) == NULL) ||
	    ad_out_add(&o, user, "EMailAddress", email) == NULL ||
	    (action = ad_out_add(&o, o.response, "Action", NULL)) == NULL ||
	    (settings = ad_out_add(&o, action, "Settings", NULL)) == NULL ||
	    (server = ad_out_add(&o, settings, "Server", NULL)) == NULL ||
	    ad_out_add(&o, server, "Type", "MobileSync") == NULL ||
	    ad_out_add(&o, server, "Url", url) == NULL ||
	    ad_out_add(&o, server, "Name", url) == NULL) {
		xmlFreeDoc(o.doc);
		return NULL;
	}
	return ad_out_finish(&o, len);
}

/* Current UTC time of day as "hh:mm:ss.fffffff" (100 ns ticks, as .NET
 * writes it) into buf; -1 when the clock cannot be read. Plain arithmetic
 * rather than gmtime_r(), which would read /etc/localtime on first use. */
static int ad_time_of_day(char *buf, size_t cap)
{
	struct timespec ts;
	long long s;
	int n;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || ts.tv_sec < 0)
		return -1;
	s = (long long)(ts.tv_sec % 86400);
	n = snprintf(buf, cap, "%02lld:%02lld:%02lld.%07ld", s / 3600,
	             s / 60 % 60, s % 60, ts.tv_nsec / 100);
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

char *ad_response_error(int error_code, const char *message, const char *id,
                        size_t *len)
{
	struct ad_out o;
	xmlNodePtr err;
	char code[8], when[32];

	if (error_code != AD_ERR_INVALID && error_code != AD_ERR_NO_SCHEMA)
		return NULL;
	if (message == NULL)
		message = error_code == AD_ERR_INVALID
		              ? "Invalid Request"
		              : "Provider is not available";
	if (!ad_value_ok(message, AD_MESSAGE_MAX) ||
	    (id != NULL && id[0] != '\0' && !ad_value_ok(id, AD_ID_MAX)))
		return NULL;
	snprintf(code, sizeof(code), "%d", error_code);
	if (ad_time_of_day(when, sizeof(when)) != 0)
		return NULL;
	/* The framework answers before any provider is chosen, so Response
	 * stays in the outer namespace, as in Exchange's own error. */
	if (ad_out_start(&o, NULL) != 0)
		return NULL;
	if ((err = ad_out_add(&o, o.response, "Error", NULL)) == NULL ||
	    xmlNewProp(err, (const xmlChar *)"Time", (const xmlChar *)when) ==
	        NULL ||
	    (id != NULL && id[0] != '\0' &&
	     xmlNewProp(err, (const xmlChar *)"Id", (const xmlChar *)id) ==
	         NULL) ||
	    ad_out_add(&o, err, "ErrorCode", code) == NULL ||
	    ad_out_add(&o, err, "Message", message) == NULL ||
	    ad_out_add(&o, err, "DebugData", NULL) == NULL) {
		xmlFreeDoc(o.doc);
		return NULL;
	}
	return ad_out_finish(&o, len);
}
