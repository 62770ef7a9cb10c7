/*
 * Autodiscover for mobile sync (shared/EAS.md section 6): reading the XML
 * request a client POSTs to /autodiscover/autodiscover.xml and writing the
 * XML answers easfront gives itself, with libxml2.
 *
 * Pure: bytes in, structs or documents out; no I/O, no process state.
 * Requests are hostile input: a document with a DTD is refused before
 * libxml2 reads its internal subset, entities are never substituted, no
 * file or network is ever opened, and every text handed out is valid UTF-8
 * without control characters. Safe to call from several threads at once
 * once ad_init() has run.
 */
#ifndef EF_EAS_AUTODISCOVER_H
#define EF_EAS_AUTODISCOVER_H

#include <stdbool.h>
#include <stddef.h>

/* Largest request body parsed; the caller answers a larger one with 413. */
#define AD_MAX_BODY (64 * 1024)
/* Buffer sizes, each including the terminating NUL. */
#define AD_EMAIL_MAX 256   /* Request/EMailAddress, UTF-8 */
#define AD_NAME_MAX 256    /* DisplayName of a Settings response */
#define AD_URL_MAX 2048    /* Url of a Settings response */
#define AD_MESSAGE_MAX 256 /* Message of an error response */
#define AD_ID_MAX 64       /* Id attribute of an error response */

/* Framework-level error codes (MS-ASCMD 2.2.3.64). */
#define AD_ERR_INVALID 600   /* invalid request */
#define AD_ERR_NO_SCHEMA 601 /* no provider for AcceptableResponseSchema */

/* Namespaces of the request and response documents. */
#define AD_NS_RESPONSE                                                         \
	"http://schemas.microsoft.com/exchange/autodiscover/responseschema/"   \
	"2006"
#define AD_NS_MOBILESYNC_REQUEST                                               \
	"http://schemas.microsoft.com/exchange/autodiscover/mobilesync/"       \
	"requestschema/2006"
#define AD_NS_MOBILESYNC_RESPONSE                                              \
	"http://schemas.microsoft.com/exchange/autodiscover/mobilesync/"       \
	"responseschema/2006"
#define AD_NS_OUTLOOK_REQUEST                                                  \
	"http://schemas.microsoft.com/exchange/autodiscover/outlook/"          \
	"requestschema/2006"

/* Which request schema a body is in, from its root element. */
enum ad_schema {
	AD_SCHEMA_NONE = 0,   /* not an Autodiscover request at all: not
	                         well-formed, a DTD, not UTF-8, too large, or
	                         another root element; error_code is 600 */
	AD_SCHEMA_MOBILESYNC, /* Autodiscover in AD_NS_MOBILESYNC_REQUEST */
	AD_SCHEMA_OUTLOOK,    /* Autodiscover in AD_NS_OUTLOOK_REQUEST */
	AD_SCHEMA_OTHER,      /* Autodiscover in any other namespace, or none */
};

/* What one request body says. */
struct ad_request {
	enum ad_schema schema;
	char email[AD_EMAIL_MAX]; /* Request/EMailAddress, XML whitespace
	                             trimmed, UTF-8 without control
	                             characters; "" when absent, unusable, or
	                             error_code is 600 */
	bool acceptable_ok;       /* Request/AcceptableResponseSchema is
	                             AD_NS_MOBILESYNC_RESPONSE */
	int error_code;           /* 0, AD_ERR_INVALID or AD_ERR_NO_SCHEMA */
};

/* Name of s for logs ("mobilesync", "outlook", "other"; "none"). */
const char *ad_schema_str(enum ad_schema s);

/*
 * Prepares libxml2 for use by several threads. Call once, at start-up,
 * before any thread calls the functions below.
 */
void ad_init(void);

/*
 * Releases libxml2's process-wide state. Call at most once, at exit, after
 * every thread that used this part has finished; only leak checkers care.
 */
void ad_cleanup(void);

/*
 * Parses the request body[0..len). Never fails hard: *out is always filled.
 * The body must be UTF-8 (a BOM is allowed; an encoding declaration is
 * ignored, so the "utf-16" some .NET clients declare over UTF-8 bytes
 * works) with exactly one root element and no DTD.
 *
 * error_code is AD_ERR_INVALID for every AD_SCHEMA_NONE body, and for a
 * mobilesync one without exactly one Request, or whose Request lacks a
 * single usable EMailAddress (1..255 bytes, text only) or a single
 * AcceptableResponseSchema; it is AD_ERR_NO_SCHEMA for a mobilesync
 * request that is otherwise valid but asks for another response schema.
 * Outlook and other schemas are not judged (error_code 0: the CAS answers
 * them); their email is filled under the same rules when it can be.
 * Elements this part does not know are ignored.
 */
void ad_request_parse(const char *body, size_t len, struct ad_request *out);

/*
 * Builds the mobilesync Settings response of EAS.md 6.3 for email (the
 * user's primary SMTP address, 1..AD_EMAIL_MAX-1 bytes), display_name
 * (NULL or "" for none) and url (the EAS URL, 1..AD_URL_MAX-1 bytes), put
 * in both Url and Name of one MobileSync Server. Every value must be UTF-8
 * without control characters; it is escaped by libxml2. Returns a
 * malloc'd, NUL-terminated UTF-8 document with its XML declaration and its
 * length (without the NUL) in *len, or NULL (bad or too long value, out of
 * memory). The caller frees it with free().
 */
char *ad_response_settings(const char *email, const char *display_name,
                           const char *url, size_t *len);

/*
 * Builds the framework-level error response (EAS.md 6.3): Response/Error
 * with ErrorCode error_code (AD_ERR_INVALID or AD_ERR_NO_SCHEMA), Message
 * (message, or "Invalid Request" / "Provider is not available" when NULL),
 * an empty DebugData, a Time attribute "hh:mm:ss.fffffff" of the current
 * UTC time and, unless id is NULL or "", an Id attribute (the server's
 * id). The document is sent with HTTP 200. Returns a malloc'd document and
 * *len as ad_response_settings() does, or NULL (other code, bad or too
 * long message or id, out of memory).
 */
char *ad_response_error(int error_code, const char *message, const char *id,
                        size_t *len);

#endif
