/*
 * Exchange ActiveSync request facts (MS-ASHTTP, see shared/EAS.md): what one
 * parsed HTTP request says about the command, the user, the device, the
 * protocol version and the host name the client used. Routing decides on
 * these facts alone.
 *
 * Pure: bytes in, structs out. Nothing here allocates, keeps state or does
 * I/O; every decoder is bounded by its input and by the fixed buffers below,
 * and each one is exposed so that it can be unit tested and fuzzed alone.
 * Text handed out is always NUL-terminated, UTF-8 and free of control
 * characters, so that callers may log it as is.
 */
#ifndef EF_EAS_EAS_H
#define EF_EAS_EAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"
#include "http/http.h"

/* Buffer sizes, each including the terminating NUL. */
#define EAS_USER_MAX 256       /* user name in UTF-8 */
#define EAS_DEVICE_ID_MAX 80   /* normalised device id */
#define EAS_DEVICE_TYPE_MAX 64 /* device type */
#define EAS_CMD_NAME_MAX 32    /* command name */
#define EAS_HOST_MAX 256       /* host name the client used */
/* Raw device id bytes: the base64 layout has a one-byte length. */
#define EAS_RAW_DEVICE_ID_MAX 255
/* Longest query accepted as base64 (a request line is at most 8 KiB). */
#define EAS_QUERY_MAX 8192

/* Which served path a request is for. */
enum eas_path {
	EAS_PATH_OTHER = 0,    /* anything else: easfront answers 4xx */
	EAS_PATH_ACTIVESYNC,   /* /Microsoft-Server-ActiveSync[/] */
	EAS_PATH_AUTODISCOVER, /* /autodiscover/autodiscover.xml */
	EAS_PATH_HEALTHCHECK, /* /Microsoft-Server-ActiveSync/healthcheck.htm */
};

/* Scheme of the Authorization header. */
enum eas_auth {
	EAS_AUTH_NONE = 0, /* no Authorization header */
	EAS_AUTH_BASIC,
	EAS_AUTH_NTLM,
	EAS_AUTH_NEGOTIATE,
	EAS_AUTH_BEARER,
	EAS_AUTH_OTHER, /* present, but another scheme (or empty) */
};

/* Where eas_facts.user came from. */
enum eas_user_src {
	EAS_USER_NONE = 0, /* no user known: route to the default site */
	EAS_USER_BASIC,    /* Authorization: Basic */
	EAS_USER_NTLM,     /* NTLM AUTHENTICATE message (NTLM or Negotiate) */
	EAS_USER_BEARER,   /* claim of a Bearer JWT */
	EAS_USER_QUERY, /* User= or base64 tag 8; only without Authorization */
};

/* Command codes: 0..23 are the base64 codes of MS-ASHTTP 2.2.1.1.1.1.2; the
 * legacy commands without a base64 code get codes from 100 on. */
enum eas_cmd {
	EAS_CMD_NONE = -1, /* unknown command or no command */
	EAS_CMD_SYNC = 0,
	EAS_CMD_SENDMAIL = 1,
	EAS_CMD_SMARTFORWARD = 2,
	EAS_CMD_SMARTREPLY = 3,
	EAS_CMD_GETATTACHMENT = 4,
	EAS_CMD_FOLDERSYNC = 9,
	EAS_CMD_FOLDERCREATE = 10,
	EAS_CMD_FOLDERDELETE = 11,
	EAS_CMD_FOLDERUPDATE = 12,
	EAS_CMD_MOVEITEMS = 13,
	EAS_CMD_GETITEMESTIMATE = 14,
	EAS_CMD_MEETINGRESPONSE = 15,
	EAS_CMD_SEARCH = 16,
	EAS_CMD_SETTINGS = 17,
	EAS_CMD_PING = 18,
	EAS_CMD_ITEMOPERATIONS = 19,
	EAS_CMD_PROVISION = 20,
	EAS_CMD_RESOLVERECIPIENTS = 21,
	EAS_CMD_VALIDATECERT = 22,
	EAS_CMD_FIND = 23,
	EAS_CMD_GETHIERARCHY = 100,
	EAS_CMD_CREATECOLLECTION = 101,
	EAS_CMD_DELETECOLLECTION = 102,
	EAS_CMD_MOVECOLLECTION = 103,
};

/* Base64 query tag 7 (Options) bits. */
#define EAS_OPT_SAVE_IN_SENT 0x01U     /* SendMail, SmartForward, SmartReply */
#define EAS_OPT_ACCEPT_MULTIPART 0x02U /* ItemOperations */

/* Everything the query string says, plain or base64. */
struct eas_query {
	bool base64; /* the base64 layout of MS-ASHTTP 2.2.1.1.1.1 */
	int cmd;     /* enum eas_cmd, EAS_CMD_NONE when unknown/absent */
	char cmd_name[EAS_CMD_NAME_MAX]; /* canonical name for a known
	                                    command, the client's (letters
	                                    only) for an unknown plain Cmd,
	                                    "" otherwise */
	unsigned version;     /* base64 only: 121..161, 0 when the byte is
	                         not a version that may use base64 */
	uint8_t version_byte; /* base64 only: the byte as sent */
	uint16_t locale;      /* base64 only: LCID */
	uint8_t device_id[EAS_RAW_DEVICE_ID_MAX]; /* raw bytes */
	size_t device_id_len;                     /* 0: absent */
	char device_type[EAS_DEVICE_TYPE_MAX];    /* printable ASCII; any other
	                                             byte became '?' */
	bool has_policy_key;
	uint32_t policy_key;
	bool has_options;        /* base64 tag 7 */
	uint8_t options;         /* EAS_OPT_* */
	char user[EAS_USER_MAX]; /* User= or tag 8, UTF-8; "" when absent */
};

/* Everything routing needs from one request. Lives on the caller's stack. */
struct eas_facts {
	enum eas_path path;
	enum eas_auth auth; /* scheme of the first Authorization header */
	int cmd;            /* enum eas_cmd; EAS_CMD_NONE for OPTIONS too */
	char cmd_name[EAS_CMD_NAME_MAX]; /* "Sync", "Ping"; "OPTIONS" for
	                                    OPTIONS requests; "" none */
	unsigned version; /* 0 unknown; 25, 120, 121, 140, 141, 160, 161 */
	bool base64_query;
	char user[EAS_USER_MAX]; /* UTF-8 as the credentials (or, with no
	                            Authorization, the query) gave it:
	                            "CONTOSO\\jdoe", "jdoe@contoso.com" */
	enum eas_user_src user_src;
	char device_id[EAS_DEVICE_ID_MAX]; /* see eas_device_id_format() */
	char device_type[EAS_DEVICE_TYPE_MAX];
	bool has_policy_key;
	uint32_t policy_key;
	char host[EAS_HOST_MAX]; /* Host's host part lowercased without port
	                            (IPv6 literal with brackets), else SNI;
	                            "" when neither */
	bool held; /* Ping or Sync: may legitimately be held by the CAS for
	              up to its heartbeat */
	const char *error; /* after a refusal: a short reason for the log
	                      (static), or NULL */
};

/* What an Authorization header value says. */
struct eas_auth_user {
	enum eas_auth scheme;
	enum eas_user_src src;   /* EAS_USER_NONE when no user was found */
	unsigned ntlm_type;      /* NTLM message type seen (1, 2, 3), else 0 */
	char user[EAS_USER_MAX]; /* "" when src is EAS_USER_NONE */
};

/* Flags of eas_base64_decode(). */
#define EAS_B64_URL 0x01U   /* RFC 4648 base64url alphabet ('-', '_') */
#define EAS_B64_PAD 0x02U   /* '=' padding required */
#define EAS_B64_NOPAD 0x04U /* '=' padding forbidden */

/* Name of p for logs ("activesync", ...). */
const char *eas_path_str(enum eas_path p);
/* Name of a for logs ("basic", "ntlm", ...; "none"). */
const char *eas_auth_str(enum eas_auth a);
/* Name of s for logs ("basic", "query", ...; "none"). */
const char *eas_user_src_str(enum eas_user_src s);

/*
 * Classifies a request path (no query): /Microsoft-Server-ActiveSync with an
 * optional trailing '/', /autodiscover/autodiscover.xml and
 * /Microsoft-Server-ActiveSync/healthcheck.htm, each in any case; nothing is
 * percent-decoded, so an escaped spelling is EAS_PATH_OTHER.
 */
enum eas_path eas_path_classify(struct str path);

/* Canonical name of an enum eas_cmd value ("Sync"), "" for unknown codes. */
const char *eas_cmd_name(int cmd);
/* The enum eas_cmd of a plain Cmd= name (any case), EAS_CMD_NONE if
 * unknown. */
int eas_cmd_from_name(struct str name);

/* Protocol version of an MS-ASProtocolVersion value: exactly one of "2.5",
 * "12.0", "12.1", "14.0", "14.1", "16.0", "16.1" gives 25, 120, 121, 140,
 * 141, 160, 161; anything else 0 (unknown). */
unsigned eas_version_parse(struct str s);
/* Protocol version of byte 0 of a base64 query: 121, 140, 141, 160, 161 are
 * themselves; anything else (2.5 and 12.0 must not use base64) is 0. */
unsigned eas_version_from_byte(uint8_t b);

/*
 * Decodes base64 in (no whitespace, '=' only as final padding, trailing bits
 * ignored as .NET and PHP do) into out[0..cap). flags: EAS_B64_*; with
 * neither PAD nor NOPAD padding is optional but must be right when present.
 * Returns 0 with *outlen set, or -1 (bad character, bad length or padding,
 * output larger than cap). out may hold partial output after -1.
 */
int eas_base64_decode(struct str in, unsigned flags, uint8_t *out, size_t cap,
                      size_t *outlen);

/*
 * Parses a query string (after '?', raw as received). The form is told apart
 * as EAS.md 1.6 says: strict base64 (RFC 2045 alphabet, padded; %2B %2F %3D
 * accepted for + / =) is the base64 layout, anything with a Cmd, User,
 * DeviceId or DeviceType parameter is plain. Plain parameters come in any
 * order with names in any case; others are ignored. Returns 0 with *out
 * filled (an empty query gives an empty *out), or -1 for a malformed query
 * (answer 400): neither form, base64 layout truncated or inconsistent
 * (zero device id length, policy key length not 0/4, parameter past the
 * end, User tag twice), bad percent-encoding, a duplicate Cmd, User,
 * DeviceId or DeviceType, an empty Cmd or DeviceId, a Cmd that is not
 * letters, a value longer than its buffer, control characters in User.
 */
int eas_query_parse(struct str query, struct eas_query *out);

/*
 * Formats a raw device id as a log- and key-safe string into out (cap
 * bytes, NUL-terminated): as is when every byte is [A-Za-z0-9] (cut at
 * cap - 1), otherwise lowercase hex of as many whole bytes as fit, so that
 * binary GUIDs and odd bytes never reach a log.
 */
void eas_device_id_format(const uint8_t *id, size_t len, char *out, size_t cap);

/*
 * Decodes an Authorization header value. Sets out->scheme from the scheme
 * token (any case) and, when the credentials name a user, out->user and
 * out->src:
 * - Basic: base64 of user:password; the user is everything before the first
 *   ':' (UTF-8, or ISO-8859-1 converted to UTF-8 when not valid UTF-8). The
 *   password is never copied out and the decode buffer is wiped.
 * - NTLM, Negotiate: base64 of a raw NTLMSSP message or of an SPNEGO token
 *   wrapping one; only an AUTHENTICATE (type 3) message names a user:
 *   "DOMAIN\user", or "user" when the domain is empty.
 * - Bearer: a JWT whose payload has a string claim upn, preferred_username,
 *   unique_name or email (first present in that order). The signature is not
 *   checked: the CAS authenticates, this only routes.
 * Malformed credentials are not an error, they just name no user. Returns
 * out->scheme.
 */
enum eas_auth eas_auth_parse(struct str value, struct eas_auth_user *out);

/* The user of Basic credentials token68 (see eas_auth_parse) into
 * user[0..cap). Returns 0, or -1 (bad base64, no ':', empty or unusable
 * user) with user "". */
int eas_basic_user(struct str token68, char *user, size_t cap);

/* The password of Basic credentials token68 (the bytes after the first
 * ':', as sent) into pass[0..cap) and *len, for the password shield, which
 * hashes it at once; the caller wipes pass. Returns 0, or -1 (what
 * eas_basic_user refuses, or a password longer than cap) with *len 0. */
int eas_basic_password(struct str token68, uint8_t *pass, size_t cap,
                       size_t *len);

/*
 * The user of an NTLM message found in tok[0..len) (raw NTLMSSP or inside
 * SPNEGO: the first "NTLMSSP\0" signature is taken; security buffers are
 * checked against the end of tok). *msg_type gets the message type (0 when
 * no signature). Returns 0 with "DOMAIN\user" or "user" in user[0..cap), or
 * -1 with user "" (not type 3, truncated, empty user name, bad UTF-16).
 */
int eas_ntlm_user(const uint8_t *tok, size_t len, char *user, size_t cap,
                  unsigned *msg_type);

/* The user of a compact JWT (header.payload.signature, base64url without
 * padding) into user[0..cap); see eas_auth_parse. Returns 0, or -1 with
 * user "". */
int eas_jwt_user(struct str token, char *user, size_t cap);

/*
 * Scans the JSON object json (a JWT payload) strictly: one object, nested
 * values skipped up to a bounded depth, strings with valid escapes. Copies
 * the first present of the string claims upn, preferred_username,
 * unique_name, email (this order; the first occurrence of a repeated claim)
 * into user[0..cap). Returns 0, or -1 with user "" (not strict JSON, no
 * usable claim).
 */
int eas_jwt_claims_user(struct str json, char *user, size_t cap);

/*
 * Normalises a Host header value or an SNI name into out[0..cap): host part
 * lowercased, port removed, one trailing dot removed, IPv6 literal kept with
 * its brackets. Returns 0, or -1 for an empty or malformed value (bad
 * characters, non-digit port, unclosed bracket) or one that does not fit.
 */
int eas_host_normalize(struct str host, char *out, size_t cap);

/*
 * Fills *f from a parsed request and the TLS SNI (NULL or "" if none). The
 * query is decoded only on the ActiveSync path. The version comes from the
 * MS-ASProtocolVersion header when there is one (a repeated header counts as
 * unknown) and from the base64 version byte otherwise; X-MS-PolicyKey beats
 * the base64 policy key likewise. The user comes from the first
 * Authorization header (none when the header is repeated); the query user
 * is used only when there is no Authorization header at all. Returns 0, or
 * -1 with *status: 400 for a malformed Host or query (see
 * eas_query_parse()) or a Connection header that names a field the facts
 * are read from (Authorization, MS-ASProtocolVersion, X-MS-PolicyKey: the
 * CAS would not see what the route was decided by; f->error says
 * "connection-lists-routing"), 421 when Host and SNI name different hosts.
 * *status is untouched on success.
 */
int eas_facts_parse(const struct http_request *req, const char *sni,
                    struct eas_facts *f, unsigned *status);

#endif
