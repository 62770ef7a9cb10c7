/*
 * Unit tests of Autodiscover XML: mobilesync requests in the spellings
 * clients use, Outlook and foreign schemas, every 600/601 case, hostile
 * documents (XXE, external DTD, billion laughs, encodings) refused without
 * expansion or file access, the Settings and error responses parsed back
 * with libxml2 element by element, and four threads parsing at once.
 * EF_BIG_TESTS=0 (valgrind runs) makes the thread test shorter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>

#include <cmocka.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "eas/autodiscover.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

#define MS_REQ_NS AD_NS_MOBILESYNC_REQUEST
#define MS_RESP_NS AD_NS_MOBILESYNC_RESPONSE
#define OL_RESP_NS                                                             \
	"http://schemas.microsoft.com/exchange/autodiscover/outlook/"          \
	"responseschema/2006a"

/* The request of EAS.md 6.2 for a given e-mail address text, and the
 * same without its XML declaration (to follow a DOCTYPE). */
#define MS_REQ(email)                                                          \
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n" MS_BODY(email)
#define MS_BODY(email)                                                         \
	"<Autodiscover xmlns=\"" MS_REQ_NS "\">\n"                             \
	"  <Request>\n"                                                        \
	"    <EMailAddress>" email "</EMailAddress>\n"                         \
	"    <AcceptableResponseSchema>" MS_RESP_NS                            \
	"</AcceptableResponseSchema>\n"                                        \
	"  </Request>\n"                                                       \
	"</Autodiscover>\n"

/* ---- helpers ---- */

static void parse(const char *body, struct ad_request *r)
{
	ad_request_parse(body, strlen(body), r);
}

/* Counts every attempt of libxml2 to open an external entity or DTD. */
static int loader_calls;

static xmlParserInputPtr counting_loader(const char *url, const char *id,
                                         xmlParserCtxtPtr ctxt)
{
	loader_calls++;
	return NULL;
}

static long rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The only element child of n in namespace ns named name, checked to be
 * the only one of that name. */
static xmlNodePtr child(xmlNodePtr n, const char *ns, const char *name)
{
	xmlNodePtr found = NULL;

	for (xmlNodePtr c = n->children; c != NULL; c = c->next) {
		if (c->type != XML_ELEMENT_NODE ||
		    !xmlStrEqual(c->name, (const xmlChar *)name))
			continue;
		assert_null(found);
		found = c;
	}
	assert_non_null(found);
	assert_non_null(found->ns);
	assert_string_equal((const char *)found->ns->href, ns);
	return found;
}

static unsigned element_children(xmlNodePtr n)
{
	unsigned k = 0;

	for (xmlNodePtr c = n->children; c != NULL; c = c->next)
		k += c->type == XML_ELEMENT_NODE;
	return k;
}

/* Checks that n's text is exactly want. */
static void text_is(xmlNodePtr n, const char *want)
{
	xmlChar *t = xmlNodeGetContent(n);

	assert_non_null(t);
	assert_string_equal((const char *)t, want);
	xmlFree(t);
}

/* Parses a produced document strictly and returns it. */
static xmlDocPtr reparse(const char *doc, size_t len)
{
	static const char decl[] =
	    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n";
	xmlDocPtr d;

	assert_non_null(doc);
	assert_int_equal(strlen(doc), len);
	assert_true(strncmp(doc, decl, strlen(decl)) == 0);
	d = xmlReadMemory(doc, (int)len, NULL, NULL,
	                  XML_PARSE_NONET | XML_PARSE_NOBLANKS);
	assert_non_null(d);
	assert_null(d->intSubset);
	return d;
}

/* ---- requests ---- */

struct req_case {
	const char *name;
	const char *body;
	enum ad_schema schema;
	const char *email;
	bool acceptable_ok;
	int error_code;
};

static void run_cases(const struct req_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct ad_request r;

		print_message("case %s\n", c[i].name);
		memset(&r, 0x5a, sizeof(r));
		parse(c[i].body, &r);
		assert_int_equal(r.schema, c[i].schema);
		assert_string_equal(r.email, c[i].email);
		assert_int_equal(r.acceptable_ok, c[i].acceptable_ok);
		assert_int_equal(r.error_code, c[i].error_code);
	}
}

static void test_mobilesync_valid(void **state)
{
	static const struct req_case c[] = {
	    {"spec example", MS_REQ("chris@contoso.com"), AD_SCHEMA_MOBILESYNC,
	     "chris@contoso.com", true, 0},
	    {"no declaration",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request>"
	     "<EMailAddress>a@b.c</EMailAddress>"
	     "<AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "a@b.c", true, 0},
	    {"whitespace everywhere",
	     "<?xml version='1.0'?>\r\n<Autodiscover\n xmlns = '" MS_REQ_NS
	     "' >\r\n\t<Request >\n<EMailAddress>\r\n\t  a@b.c \t\r\n"
	     "</EMailAddress >\n\n<AcceptableResponseSchema>\n  " MS_RESP_NS
	     "\n</AcceptableResponseSchema>\t</Request>\n</Autodiscover >\n\n",
	     AD_SCHEMA_MOBILESYNC, "a@b.c", true, 0},
	    {"prefix",
	     "<a:Autodiscover xmlns:a=\"" MS_REQ_NS "\"><a:Request>"
	     "<a:EMailAddress>p@b.c</a:EMailAddress>"
	     "<a:AcceptableResponseSchema>" MS_RESP_NS
	     "</a:AcceptableResponseSchema></a:Request>"
	     "</a:Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "p@b.c", true, 0},
	    {"default namespace redeclared on a child",
	     "<x:Autodiscover xmlns:x=\"" MS_REQ_NS
	     "\"><Request xmlns=\"" MS_REQ_NS
	     "\"><EMailAddress>d@b.c</EMailAddress>"
	     "<x:AcceptableResponseSchema>" MS_RESP_NS
	     "</x:AcceptableResponseSchema></Request></x:Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "d@b.c", true, 0},
	    {"BOM", "\xef\xbb\xbf" MS_REQ("bom@b.c"), AD_SCHEMA_MOBILESYNC,
	     "bom@b.c", true, 0},
	    {"utf-16 declared over UTF-8 bytes",
	     "<?xml version=\"1.0\" encoding=\"utf-16\"?><Autodiscover "
	     "xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>j\xc3\xb6rg@b.c"
	     "</EMailAddress><AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "j\xc3\xb6rg@b.c", true, 0},
	    {"UTF-8 address", MS_REQ("\xe7\x94\xa8\xe6\x88\xb7@\xc3\xa9x.fr"),
	     AD_SCHEMA_MOBILESYNC, "\xe7\x94\xa8\xe6\x88\xb7@\xc3\xa9x.fr",
	     true, 0},
	    {"references and CDATA",
	     MS_REQ("<![CDATA[o'&]]>x&#64;b&amp;c.d<!-- hi --><?pi x?>"),
	     AD_SCHEMA_MOBILESYNC, "o'&x@b&c.d", true, 0},
	    {"extra elements and attributes ignored",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\" foo=\"1\"><Other/><Request>"
	     "<Other>x</Other><EMailAddress a=\"b\">e@b.c</EMailAddress>"
	     "<AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema><x:Request xmlns:x=\"urn:x\"/>"
	     "</Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "e@b.c", true, 0},
	};

	(void)state;
	run_cases(c, NELEM(c));
}

static void test_other_schemas(void **state)
{
	static const struct req_case c[] = {
	    {"outlook",
	     "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover "
	     "xmlns=\"" AD_NS_OUTLOOK_REQUEST "\"><Request><EMailAddress>o@b.c"
	     "</EMailAddress><AcceptableResponseSchema>" OL_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_OUTLOOK, "o@b.c", false, 0},
	    {"outlook with LegacyDN only",
	     "<Autodiscover xmlns=\"" AD_NS_OUTLOOK_REQUEST "\"><Request>"
	     "<LegacyDN>/o=x</LegacyDN><AcceptableResponseSchema>" OL_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_OUTLOOK, "", false, 0},
	    {"outlook with two Requests",
	     "<Autodiscover xmlns=\"" AD_NS_OUTLOOK_REQUEST "\"><Request>"
	     "<EMailAddress>a@b.c</EMailAddress></Request><Request>"
	     "<EMailAddress>x@y.z</EMailAddress></Request></Autodiscover>",
	     AD_SCHEMA_OUTLOOK, "", false, 0},
	    {"foreign namespace",
	     "<Autodiscover xmlns=\"urn:x\"><Request><EMailAddress>f@b.c"
	     "</EMailAddress></Request></Autodiscover>",
	     AD_SCHEMA_OTHER, "f@b.c", false, 0},
	    {"no namespace",
	     "<Autodiscover><Request><EMailAddress>n@b.c</EMailAddress>"
	     "<AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_OTHER, "n@b.c", true, 0},
	    {"mobilesync namespace with a trailing slash",
	     "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/"
	     "autodiscover/mobilesync/requestschema/2006/\"/>",
	     AD_SCHEMA_OTHER, "", false, 0},
	};

	(void)state;
	run_cases(c, NELEM(c));
}

static void test_mobilesync_errors(void **state)
{
	static const struct req_case c[] = {
	    {"outlook response schema asked",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>"
	     "a@b.c</EMailAddress><AcceptableResponseSchema>" OL_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "a@b.c", false, 601},
	    {"response schema with a trailing slash",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>"
	     "a@b.c</EMailAddress><AcceptableResponseSchema>" MS_RESP_NS
	     "/</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "a@b.c", false, 601},
	    {"empty response schema",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>"
	     "a@b.c</EMailAddress><AcceptableResponseSchema/></Request>"
	     "</Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "a@b.c", false, 601},
	    {"two Requests",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>"
	     "a@b.c</EMailAddress><AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema></Request><Request><EMailAddress>"
	     "x@y.z</EMailAddress><AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "", false, 600},
	    {"no Request", "<Autodiscover xmlns=\"" MS_REQ_NS "\"/>",
	     AD_SCHEMA_MOBILESYNC, "", false, 600},
	    {"Request in another namespace",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request xmlns=\"\">"
	     "<EMailAddress>a@b.c</EMailAddress>"
	     "<AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "", false, 600},
	    {"missing EMailAddress",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request>"
	     "<AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "", false, 600},
	    {"two EMailAddress",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>"
	     "a@b.c</EMailAddress><EMailAddress>x@y.z</EMailAddress>"
	     "<AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "", false, 600},
	    {"missing AcceptableResponseSchema",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>"
	     "a@b.c</EMailAddress></Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "", false, 600},
	    {"two AcceptableResponseSchema",
	     "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>"
	     "a@b.c</EMailAddress><AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema><AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_MOBILESYNC, "", false, 600},
	    {"empty address", MS_REQ(" \n "), AD_SCHEMA_MOBILESYNC, "", false,
	     600},
	    {"element inside the address", MS_REQ("a<b/>@b.c"),
	     AD_SCHEMA_MOBILESYNC, "", false, 600},
	    {"tab inside the address", MS_REQ("a\tb@b.c"), AD_SCHEMA_MOBILESYNC,
	     "", false, 600},
	    {"DEL as a reference", MS_REQ("a&#x7f;@b.c"), AD_SCHEMA_MOBILESYNC,
	     "", false, 600},
	    {"C1 control as a reference", MS_REQ("a&#x85;@b.c"),
	     AD_SCHEMA_MOBILESYNC, "", false, 600},
	};

	(void)state;
	run_cases(c, NELEM(c));
}

/* An address of n bytes ("a...a@b.c") with pad spaces on each side. */
static void parse_len(size_t n, size_t pad, struct ad_request *r, char *want)
{
	static const char head[] =
	    "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>";
	static const char tail[] =
	    "</EMailAddress><AcceptableResponseSchema>" MS_RESP_NS
	    "</AcceptableResponseSchema>"
	    "</Request></Autodiscover>";
	char body[4096];
	size_t w = 0;

	assert_true(n >= 4 &&
	            sizeof(head) + 2 * pad + n + sizeof(tail) < sizeof(body));
	memset(want, 'a', n - 4);
	memcpy(want + n - 4, "@b.c", 5);
	memcpy(body, head, sizeof(head) - 1);
	w = sizeof(head) - 1;
	memset(body + w, ' ', pad);
	w += pad;
	memcpy(body + w, want, n);
	w += n;
	memset(body + w, '\n', pad);
	w += pad;
	memcpy(body + w, tail, sizeof(tail) - 1);
	w += sizeof(tail) - 1;
	ad_request_parse(body, w, r);
}

static void test_email_length(void **state)
{
	char want[AD_EMAIL_MAX + 8];
	struct ad_request r;

	(void)state;
	parse_len(AD_EMAIL_MAX - 1, 0, &r, want);
	assert_int_equal(r.error_code, 0);
	assert_string_equal(r.email, want);
	/* Indentation does not count against the limit... */
	parse_len(AD_EMAIL_MAX - 1, 300, &r, want);
	assert_int_equal(r.error_code, 0);
	assert_string_equal(r.email, want);
	/* ...up to a point. */
	parse_len(AD_EMAIL_MAX - 1, 400, &r, want);
	assert_int_equal(r.error_code, 600);
	assert_string_equal(r.email, "");
	parse_len(AD_EMAIL_MAX, 0, &r, want);
	assert_int_equal(r.schema, AD_SCHEMA_MOBILESYNC);
	assert_int_equal(r.error_code, 600);
	assert_string_equal(r.email, "");
	parse_len(AD_EMAIL_MAX + 7, 0, &r, want);
	assert_int_equal(r.error_code, 600);
}

static void test_malformed(void **state)
{
	static const struct req_case c[] = {
	    {"empty", "", AD_SCHEMA_NONE, "", false, 600},
	    {"only whitespace", " \n", AD_SCHEMA_NONE, "", false, 600},
	    {"whitespace before the declaration", "\n" MS_REQ("a@b.c"),
	     AD_SCHEMA_NONE, "", false, 600},
	    {"not XML", "EMailAddress=a@b.c", AD_SCHEMA_NONE, "", false, 600},
	    {"unclosed", "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request>",
	     AD_SCHEMA_NONE, "", false, 600},
	    {"mismatched tags", MS_REQ("a@b.c</Request>"), AD_SCHEMA_NONE, "",
	     false, 600},
	    {"two roots", MS_REQ("a@b.c") "<Autodiscover/>", AD_SCHEMA_NONE, "",
	     false, 600},
	    {"trailing text", MS_REQ("a@b.c") "x", AD_SCHEMA_NONE, "", false,
	     600},
	    {"undefined prefix",
	     "<a:Autodiscover><a:Request/></a:Autodiscover>", AD_SCHEMA_NONE,
	     "", false, 600},
	    {"undeclared entity", MS_REQ("&xxe;"), AD_SCHEMA_NONE, "", false,
	     600},
	    {"NUL reference", MS_REQ("a&#0;@b.c"), AD_SCHEMA_NONE, "", false,
	     600},
	    {"other root", "<Discover xmlns=\"" MS_REQ_NS "\"/>",
	     AD_SCHEMA_NONE, "", false, 600},
	    {"root in lower case", "<autodiscover xmlns=\"" MS_REQ_NS "\"/>",
	     AD_SCHEMA_NONE, "", false, 600},
	    {"Latin-1 byte", MS_REQ("j\xf6rg@b.c"), AD_SCHEMA_NONE, "", false,
	     600},
	    {"Latin-1 declared",
	     "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Autodiscover "
	     "xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>j\xf6rg@b.c"
	     "</EMailAddress><AcceptableResponseSchema>" MS_RESP_NS
	     "</AcceptableResponseSchema></Request></Autodiscover>",
	     AD_SCHEMA_NONE, "", false, 600},
	    {"overlong UTF-8",
	     MS_REQ("a\xc0\xaf"
	            "b@b.c"),
	     AD_SCHEMA_NONE, "", false, 600},
	    {"UTF-8 surrogate", MS_REQ("a\xed\xa0\x80@b.c"), AD_SCHEMA_NONE, "",
	     false, 600},
	    {"U+FFFF", MS_REQ("a\xef\xbf\xbf@b.c"), AD_SCHEMA_NONE, "", false,
	     600},
	    {"U+FFFE as a reference", MS_REQ("a&#xfffe;@b.c"), AD_SCHEMA_NONE,
	     "", false, 600},
	    {"truncated UTF-8", MS_REQ("a@b.c\xe2\x82"), AD_SCHEMA_NONE, "",
	     false, 600},
	    {"UTF-16 BOM", "\xff\xfe<\0A\0/\0>\0", AD_SCHEMA_NONE, "", false,
	     600},
	    {"UTF-7 declared",
	     "<?xml version=\"1.0\" "
	     "encoding=\"UTF-7\"?>+ADw-Autodiscover/+AD4-",
	     AD_SCHEMA_NONE, "", false, 600},
	};

	(void)state;
	run_cases(c, NELEM(c));
}

/* Bodies with a NUL or over the size limit cannot be C strings. */
static void test_bytes(void **state)
{
	static const char nul[] = "<Autodiscover xmlns=\"" MS_REQ_NS
	                          "\"><Request><EMailAddress>a\0b@b.c"
	                          "</EMailAddress></Request></Autodiscover>";
	const char *ok = MS_REQ("a@b.c");
	struct ad_request r;
	char *big;

	(void)state;
	ad_request_parse(nul, sizeof(nul) - 1, &r);
	assert_int_equal(r.schema, AD_SCHEMA_NONE);
	assert_int_equal(r.error_code, 600);

	/* A valid request padded with whitespace to the limit, then one
	 * byte more. */
	big = malloc(AD_MAX_BODY + 1);
	assert_non_null(big);
	memset(big, ' ', AD_MAX_BODY + 1);
	memcpy(big, ok, strlen(ok));
	ad_request_parse(big, AD_MAX_BODY, &r);
	assert_int_equal(r.error_code, 0);
	assert_string_equal(r.email, "a@b.c");
	ad_request_parse(big, AD_MAX_BODY + 1, &r);
	assert_int_equal(r.schema, AD_SCHEMA_NONE);
	assert_int_equal(r.error_code, 600);
	free(big);

	ad_request_parse(NULL, 0, &r);
	assert_int_equal(r.error_code, 600);
	/* A prefix of a valid request is never taken for one. */
	for (size_t n = 1; n < strlen(ok) - 1; n++) {
		ad_request_parse(ok, n, &r);
		assert_int_equal(r.schema, AD_SCHEMA_NONE);
		assert_int_equal(r.error_code, 600);
	}
}

/* ---- hostile documents ---- */

#define LOL_DTD                                                                \
	"<!DOCTYPE Autodiscover [\n"                                           \
	" <!ENTITY lol \"lol\">\n"                                             \
	" <!ENTITY lol1 "                                                      \
	"\"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"              \
	"\n <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;"  \
	"&lol1;&lol1;\">\n"                                                    \
	" <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"    \
	"&lol2;&lol2;\">\n"                                                    \
	" <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;"    \
	"&lol3;&lol3;\">\n"                                                    \
	" <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;"    \
	"&lol4;&lol4;\">\n"                                                    \
	" <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;"    \
	"&lol5;&lol5;\">\n"                                                    \
	" <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;"    \
	"&lol6;&lol6;\">\n"                                                    \
	" <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;"    \
	"&lol7;&lol7;\">\n"                                                    \
	" <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;"    \
	"&lol8;&lol8;\">\n"                                                    \
	"]>\n"

static const char *const hostile[] = {
    /* classic XXE */
    "<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM "
    "\"file:///etc/passwd\">]>\n" MS_BODY("&xxe;"),
    /* XXE in the root element's name */
    "<!DOCTYPE Autodiscover [<!ENTITY xxe SYSTEM \"file:///etc/hostname\">]>"
    "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>&xxe;"
    "</EMailAddress><AcceptableResponseSchema>" MS_RESP_NS
    "</AcceptableResponseSchema></Request></Autodiscover>",
    /* parameter entity fetching an external DTD */
    "<!DOCTYPE x [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]>"
    "<Autodiscover xmlns=\"" MS_REQ_NS "\"/>",
    /* out-of-band exfiltration over the network */
    "<!DOCTYPE x [<!ENTITY % p SYSTEM \"http://127.0.0.1:9/x.dtd\"> %p;]>"
    "<Autodiscover xmlns=\"" MS_REQ_NS "\"/>",
    /* external DTD reference */
    "<!DOCTYPE Autodiscover SYSTEM \"file:///etc/passwd\">"
    "<Autodiscover xmlns=\"" MS_REQ_NS "\"/>",
    "<!DOCTYPE Autodiscover PUBLIC \"-//x//y\" \"http://127.0.0.1:9/x.dtd\">"
    "<Autodiscover xmlns=\"" MS_REQ_NS "\"/>",
    /* a harmless DTD is refused too */
    "<?xml version=\"1.0\"?><!DOCTYPE Autodiscover>" MS_BODY("a@b.c"),
    "<!DOCTYPE Autodiscover [<!ENTITY e \"a@b.c\">]>" MS_BODY("&e;"),
    /* default attributes from the internal subset */
    "<!DOCTYPE Autodiscover [<!ATTLIST Autodiscover xmlns CDATA #FIXED "
    "\"" MS_REQ_NS "\">]><Autodiscover><Request><EMailAddress>a@b.c"
    "</EMailAddress><AcceptableResponseSchema>" MS_RESP_NS
    "</AcceptableResponseSchema></Request></Autodiscover>",
    /* billion laughs */
    "<?xml version=\"1.0\"?>\n" LOL_DTD MS_BODY("&lol9;"),
    /* XInclude is not processed */
    "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>"
    "<xi:include xmlns:xi=\"http://www.w3.org/2001/XInclude\" "
    "href=\"file:///etc/hostname\" parse=\"text\"/></EMailAddress>"
    "<AcceptableResponseSchema>" MS_RESP_NS "</AcceptableResponseSchema>"
    "</Request></Autodiscover>",
};

static void test_hostile(void **state)
{
	xmlExternalEntityLoader old = xmlGetExternalEntityLoader();

	(void)state;
	/* Single-threaded here: the loader is process-wide. */
	xmlSetExternalEntityLoader(counting_loader);
	loader_calls = 0;
	for (size_t i = 0; i < NELEM(hostile); i++) {
		struct ad_request r;
		bool xinclude = strstr(hostile[i], "XInclude") != NULL;

		print_message("hostile %zu\n", i);
		parse(hostile[i], &r);
		assert_int_equal(r.schema, xinclude ? AD_SCHEMA_MOBILESYNC
		                                    : AD_SCHEMA_NONE);
		assert_int_equal(r.error_code, 600);
		assert_string_equal(r.email, "");
		assert_false(r.acceptable_ok);
	}
	assert_int_equal(loader_calls, 0);
	xmlSetExternalEntityLoader(old);
}

/* 10^9 "lol"s if expanded: refused at once, with no memory to speak of. */
static void test_billion_laughs_bounded(void **state)
{
	const char *doc = "<?xml version=\"1.0\"?>\n" LOL_DTD MS_BODY("&lol9;");
	struct ad_request r;
	long rss0, rss1;
	double t0, t1;

	(void)state;
	rss0 = rss_kb();
	t0 = now_s();
	for (int i = 0; i < 100; i++) {
		parse(doc, &r);
		assert_int_equal(r.error_code, 600);
	}
	t1 = now_s();
	rss1 = rss_kb();
	print_message("100 parses: %.3f ms, peak RSS +%ld KiB\n",
	              (t1 - t0) * 1e3, rss1 - rss0);
	/* Generous for valgrind; an expansion would take seconds and GiBs. */
	assert_true(t1 - t0 < 2.0);
	assert_true(rss1 - rss0 < 8 * 1024);
}

/* ---- responses ---- */

static void check_settings(const char *doc, size_t len, const char *email,
                           const char *name, const char *url)
{
	xmlDocPtr d = reparse(doc, len);
	xmlNodePtr root = xmlDocGetRootElement(d);
	xmlNodePtr resp, user, action, settings, server;

	assert_string_equal((const char *)root->name, "Autodiscover");
	assert_string_equal((const char *)root->ns->href, AD_NS_RESPONSE);
	assert_null(root->ns->prefix);
	assert_int_equal(element_children(root), 1);
	resp = child(root, MS_RESP_NS, "Response");
	assert_null(resp->ns->prefix);
	assert_int_equal(element_children(resp), 3);
	text_is(child(resp, MS_RESP_NS, "Culture"), "en:us");
	user = child(resp, MS_RESP_NS, "User");
	assert_int_equal(element_children(user), name != NULL ? 2 : 1);
	if (name != NULL)
		text_is(child(user, MS_RESP_NS, "DisplayName"), name);
	text_is(child(user, MS_RESP_NS, "EMailAddress"), email);
	action = child(resp, MS_RESP_NS, "Action");
	assert_int_equal(element_children(action), 1);
	settings = child(action, MS_RESP_NS, "Settings");
	assert_int_equal(element_children(settings), 1);
	server = child(settings, MS_RESP_NS, "Server");
	assert_int_equal(element_children(server), 3);
	text_is(child(server, MS_RESP_NS, "Type"), "MobileSync");
	text_is(child(server, MS_RESP_NS, "Url"), url);
	text_is(child(server, MS_RESP_NS, "Name"), url);
	/* Culture comes first, as in every example. */
	assert_ptr_equal(xmlFirstElementChild(resp),
	                 child(resp, MS_RESP_NS, "Culture"));
	xmlFreeDoc(d);
}

static void test_response_settings(void **state)
{
	const char *email = "o'n&e<\"x\">@b.c";
	const char *url = "https://eas.b.c/Microsoft-Server-ActiveSync?a=1&b=<>"
	                  "\"'";
	const char *name = "J\xc3\xb6rg & <Co> \"x\" 'y'";
	char *doc;
	size_t len = 0;

	(void)state;
	doc = ad_response_settings(email, name, url, &len);
	check_settings(doc, len, email, name, url);
	/* Markup characters never appear raw inside a value. */
	assert_null(strstr(doc, "n&e"));
	assert_null(strstr(doc, "<\"x\">"));
	assert_non_null(strstr(doc, "o'n&amp;e&lt;\"x\"&gt;@b.c"));
	free(doc);

	doc = ad_response_settings("\xef\xbf\xbd\xf0\x9f\x98\x80@b.c", NULL,
	                           "https://x/y", &len);
	check_settings(doc, len, "\xef\xbf\xbd\xf0\x9f\x98\x80@b.c", NULL,
	               "https://x/y");
	free(doc);
	doc = ad_response_settings("a@b.c", NULL, "https://x/y", &len);
	check_settings(doc, len, "a@b.c", NULL, "https://x/y");
	free(doc);
	doc = ad_response_settings("a@b.c", "", "https://x/y", &len);
	check_settings(doc, len, "a@b.c", NULL, "https://x/y");
	free(doc);
}

static void test_response_settings_refused(void **state)
{
	char long_email[AD_EMAIL_MAX + 1], long_url[AD_URL_MAX + 1];
	size_t len = 12345;
	char *doc;

	(void)state;
	memset(long_email, 'a', sizeof(long_email));
	long_email[AD_EMAIL_MAX] = '\0';
	memset(long_url, 'u', sizeof(long_url));
	long_url[AD_URL_MAX] = '\0';
	assert_null(ad_response_settings(NULL, NULL, "https://x", &len));
	assert_null(ad_response_settings("", NULL, "https://x", &len));
	assert_null(ad_response_settings("a@b.c", NULL, NULL, &len));
	assert_null(ad_response_settings("a@b.c", NULL, "", &len));
	assert_null(ad_response_settings(long_email, NULL, "https://x", &len));
	assert_null(ad_response_settings("a@b.c", NULL, long_url, &len));
	assert_null(ad_response_settings("a\xff@b.c", NULL, "https://x", &len));
	assert_null(ad_response_settings("a\n@b.c", NULL, "https://x", &len));
	assert_null(ad_response_settings("a@b.c", "x\x01", "https://x", &len));
	assert_null(ad_response_settings("a@b.c", NULL, "https://x\x7f", &len));
	assert_null(
	    ad_response_settings("a\xef\xbf\xbf@b.c", NULL, "https://x", &len));
	assert_null(
	    ad_response_settings("a@b.c", "\xef\xbf\xbe", "https://x", &len));
	assert_int_equal(len, 12345);

	/* The longest values that fit. */
	long_email[AD_EMAIL_MAX - 1] = '\0';
	long_url[AD_URL_MAX - 1] = '\0';
	doc = ad_response_settings(long_email, NULL, long_url, &len);
	check_settings(doc, len, long_email, NULL, long_url);
	free(doc);
}

/* "hh:mm:ss.fffffff" */
static void check_time(const char *t)
{
	static const char shape[] = "99:99:99.9999999";

	assert_int_equal(strlen(t), strlen(shape));
	for (size_t i = 0; shape[i] != '\0'; i++) {
		if (shape[i] == '9')
			assert_true(t[i] >= '0' && t[i] <= '9');
		else
			assert_int_equal(t[i], shape[i]);
	}
	assert_true((t[0] - '0') * 10 + (t[1] - '0') < 24);
	assert_true((t[3] - '0') * 10 + (t[4] - '0') < 60);
	assert_true((t[6] - '0') * 10 + (t[7] - '0') < 61);
}

static void check_error(const char *doc, size_t len, const char *code,
                        const char *message, const char *id)
{
	xmlDocPtr d = reparse(doc, len);
	xmlNodePtr root = xmlDocGetRootElement(d);
	xmlNodePtr resp, err;
	xmlChar *t;

	assert_string_equal((const char *)root->name, "Autodiscover");
	assert_string_equal((const char *)root->ns->href, AD_NS_RESPONSE);
	assert_int_equal(element_children(root), 1);
	resp = child(root, AD_NS_RESPONSE, "Response");
	assert_int_equal(element_children(resp), 1);
	err = child(resp, AD_NS_RESPONSE, "Error");
	assert_int_equal(element_children(err), 3);
	text_is(child(err, AD_NS_RESPONSE, "ErrorCode"), code);
	text_is(child(err, AD_NS_RESPONSE, "Message"), message);
	assert_null(child(err, AD_NS_RESPONSE, "DebugData")->children);
	t = xmlGetNoNsProp(err, (const xmlChar *)"Time");
	assert_non_null(t);
	check_time((const char *)t);
	xmlFree(t);
	t = xmlGetNoNsProp(err, (const xmlChar *)"Id");
	if (id == NULL) {
		assert_null(t);
	} else {
		assert_non_null(t);
		assert_string_equal((const char *)t, id);
		xmlFree(t);
	}
	xmlFreeDoc(d);
}

static void test_response_error(void **state)
{
	size_t len = 0;
	char *doc;

	(void)state;
	doc = ad_response_error(600, NULL, "4130155072", &len);
	check_error(doc, len, "600", "Invalid Request", "4130155072");
	free(doc);
	doc = ad_response_error(601, NULL, NULL, &len);
	check_error(doc, len, "601", "Provider is not available", NULL);
	free(doc);
	doc = ad_response_error(601, "no <such> & \"schema\"", "", &len);
	check_error(doc, len, "601", "no <such> & \"schema\"", NULL);
	assert_non_null(strstr(doc, "no &lt;such&gt; &amp; \"schema\""));
	free(doc);
	doc = ad_response_error(600, "m", "a\"b'c<d>&", &len);
	check_error(doc, len, "600", "m", "a\"b'c<d>&");
	assert_non_null(strstr(doc, "Id=\"a&quot;b'c&lt;d&gt;&amp;\""));
	free(doc);

	len = 7;
	assert_null(ad_response_error(500, NULL, NULL, &len));
	assert_null(ad_response_error(0, NULL, NULL, &len));
	assert_null(ad_response_error(600, "", NULL, &len));
	assert_null(ad_response_error(600, "a\r\nb", NULL, &len));
	assert_null(ad_response_error(600, "\xc3", NULL, &len));
	assert_null(ad_response_error(600, NULL, "\x1b[31m", &len));
	assert_int_equal(len, 7);
}

/* What a parsed request answers is what the next parse reads back. */
static void test_roundtrip(void **state)
{
	struct ad_request r;
	size_t len;
	char *doc;

	(void)state;
	parse(MS_REQ("&lt;x&gt;&amp;&quot;&apos;@b.c"), &r);
	assert_int_equal(r.error_code, 0);
	assert_string_equal(r.email, "<x>&\"'@b.c");
	doc = ad_response_settings(r.email, NULL, "https://e/eas", &len);
	check_settings(doc, len, "<x>&\"'@b.c", NULL, "https://e/eas");
	/* A response is no request. */
	ad_request_parse(doc, len, &r);
	assert_int_equal(r.schema, AD_SCHEMA_OTHER);
	assert_int_equal(r.error_code, 0);
	free(doc);
}

static void test_schema_str(void **state)
{
	(void)state;
	assert_string_equal(ad_schema_str(AD_SCHEMA_NONE), "none");
	assert_string_equal(ad_schema_str(AD_SCHEMA_MOBILESYNC), "mobilesync");
	assert_string_equal(ad_schema_str(AD_SCHEMA_OUTLOOK), "outlook");
	assert_string_equal(ad_schema_str(AD_SCHEMA_OTHER), "other");
	assert_string_equal(ad_schema_str((enum ad_schema)42), "none");
}

/* ---- threads ---- */

#define THREADS 4

struct worker {
	unsigned seed;
	unsigned iterations;
	unsigned wrong; /* results that differ from a single-threaded parse */
};

/* Requests of every outcome, with their expected results filled in by a
 * single-threaded parse first. */
static const char *const mixed[] = {
    MS_REQ("t1@b.c"),
    MS_REQ("  t2@b.c\n"),
    "<a:Autodiscover xmlns:a=\"" MS_REQ_NS "\"><a:Request><a:EMailAddress>"
    "t3@b.c</a:EMailAddress><a:AcceptableResponseSchema>" MS_RESP_NS
    "</a:AcceptableResponseSchema></a:Request></a:Autodiscover>",
    "<Autodiscover xmlns=\"" AD_NS_OUTLOOK_REQUEST "\"><Request>"
    "<EMailAddress>t4@b.c</EMailAddress></Request></Autodiscover>",
    "<Autodiscover xmlns=\"" MS_REQ_NS "\"><Request><EMailAddress>t5@b.c"
    "</EMailAddress><AcceptableResponseSchema>urn:x"
    "</AcceptableResponseSchema></Request></Autodiscover>",
    MS_REQ("t6@b.c</x>"),
    "<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>" MS_BODY(
        "&xxe;"),
    "<?xml version=\"1.0\"?>\n" LOL_DTD MS_BODY("&lol9;"),
};
static struct ad_request mixed_want[NELEM(mixed)];

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	unsigned x = w->seed;

	for (unsigned i = 0; i < w->iterations; i++) {
		struct ad_request r;
		size_t k;

		x = x * 1103515245U + 12345U;
		k = (x >> 8) % NELEM(mixed);
		parse(mixed[k], &r);
		if (r.schema != mixed_want[k].schema ||
		    r.error_code != mixed_want[k].error_code ||
		    r.acceptable_ok != mixed_want[k].acceptable_ok ||
		    strcmp(r.email, mixed_want[k].email) != 0)
			w->wrong++;
		/* Every so often build a response too. */
		if (i % 16 == 0 && r.email[0] != '\0') {
			size_t len;
			char *doc = ad_response_settings(r.email, NULL,
			                                 "https://e/x", &len);

			if (doc == NULL || strstr(doc, r.email) == NULL)
				w->wrong++;
			free(doc);
		}
	}
	return NULL;
}

static void test_threads(void **state)
{
	const char *big = getenv("EF_BIG_TESTS");
	unsigned iterations =
	    big != NULL && strcmp(big, "0") == 0 ? 500 : 10000;
	struct worker w[THREADS];
	pthread_t t[THREADS];

	(void)state;
	for (size_t k = 0; k < NELEM(mixed); k++)
		parse(mixed[k], &mixed_want[k]);
	assert_string_equal(mixed_want[0].email, "t1@b.c");
	assert_int_equal(mixed_want[3].schema, AD_SCHEMA_OUTLOOK);
	assert_int_equal(mixed_want[4].error_code, 601);
	assert_int_equal(mixed_want[5].error_code, 600);
	assert_int_equal(mixed_want[7].error_code, 600);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){(unsigned)i * 7919U + 1U, iterations, 0};
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]),
		                 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].wrong, 0);
	}
}

static int setup(void **state)
{
	(void)state;
	ad_init();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ad_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_schema_str),
	    cmocka_unit_test(test_mobilesync_valid),
	    cmocka_unit_test(test_other_schemas),
	    cmocka_unit_test(test_mobilesync_errors),
	    cmocka_unit_test(test_email_length),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_bytes),
	    cmocka_unit_test(test_hostile),
	    cmocka_unit_test(test_billion_laughs_bounded),
	    cmocka_unit_test(test_response_settings),
	    cmocka_unit_test(test_response_settings_refused),
	    cmocka_unit_test(test_response_error),
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
