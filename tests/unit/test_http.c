/*
 * Unit tests of the HTTP/1.1 codec: one table per parser, each row a head or
 * body and what the parser must make of it. Smuggling cases are rows too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

#define CHECK(c, name)                                                         \
	do {                                                                   \
		if (!(c))                                                      \
			fail_msg("case \"%s\": %s", (name), #c);               \
	} while (0)

/* Expected results of a table row. */
#define OK 1   /* complete: rc is head_len (strlen(in) unless given) */
#define MORE 0 /* needs more bytes */
#define ERR -1 /* error with status */
#define NOCHECK ((const char *)1)

static const struct http_limits small_limits = {
    .max_request_line = 32,
    .max_head = 96,
    .max_headers = 3,
};

#define EAS_SYNC                                                               \
	"POST /Microsoft-Server-ActiveSync?Cmd=Sync&User=jdoe&DeviceId=ABC"    \
	"&DeviceType=iPhone HTTP/1.1\r\n"                                      \
	"Host: eas.contoso.com\r\n"                                            \
	"Authorization: Basic Q09OVE9TT1xqZG9lOnBhc3M=\r\n"                    \
	"MS-ASProtocolVersion: 14.1\r\n"                                       \
	"Content-Type: application/vnd.ms-sync.wbxml\r\n"                      \
	"User-Agent: Apple-iPhone9C1/1402.100\r\n"                             \
	"Content-Length: 13\r\n"                                               \
	"\r\n"

/* Rows that check only an outcome name only what they need. */
#define R_MORE(n, s)                                                           \
	{                                                                      \
		.name = (n), .in = (s), .want = MORE                           \
	}
#define R_MORE_LIM(n, s, l)                                                    \
	{                                                                      \
		.name = (n), .in = (s), .want = MORE, .lim = (l)               \
	}
#define R_ERR(n, s, st)                                                        \
	{                                                                      \
		.name = (n), .in = (s), .want = ERR, .status = (st)            \
	}
#define R_ERR_LEN(n, s, st)                                                    \
	{                                                                      \
		.name = (n), .in = (s), .len = sizeof(s) - 1, .want = ERR,     \
		.status = (st)                                                 \
	}
#define R_ERR_LIM(n, s, st, l)                                                 \
	{                                                                      \
		.name = (n), .in = (s), .want = ERR, .status = (st),           \
		.lim = (l)                                                     \
	}
#define P_MORE(n, s, m)                                                        \
	{                                                                      \
		.name = (n), .in = (s), .method = (m), .want = MORE            \
	}
#define P_ERR(n, s, m)                                                         \
	{                                                                      \
		.name = (n), .in = (s), .method = (m), .want = ERR             \
	}
#define P_ERR_LIM(n, s, m, l)                                                  \
	{                                                                      \
		.name = (n), .in = (s), .method = (m), .want = ERR, .lim = (l) \
	}
#define C_ROW(n, s, w, d)                                                      \
	{                                                                      \
		.name = (n), .in = (s), .want = (w), .data = (d)               \
	}
#define C_END(n, s, w, d, c)                                                   \
	{                                                                      \
		.name = (n), .in = (s), .want = (w), .data = (d),              \
		.consumed = (c)                                                \
	}
#define C_LIM(n, s, w, d, l)                                                   \
	{                                                                      \
		.name = (n), .in = (s), .want = (w), .data = (d), .lim = (l)   \
	}

struct req_case {
	const char *name;
	const char *in;
	size_t len; /* 0: strlen(in) */
	int want;
	unsigned status;               /* ERR */
	const struct http_limits *lim; /* NULL: defaults */
	size_t head_len;               /* OK; 0: len */
	enum http_method method;
	const char *target, *path, *query, *host; /* NULL: empty */
	unsigned version, flags;
	enum http_framing framing;
	uint64_t cl;
	unsigned nheaders;
};

#define H11 "Host: a\r\n"
#define PIPE1 "GET /1 HTTP/1.1\r\n" H11 "\r\n"
/* Inputs with a NUL inside give their length explicitly. */
#define NUL_TARGET "GET /a\0b HTTP/1.1\r\n" H11 "\r\n"
#define NUL_VALUE "GET / HTTP/1.1\r\nX: a\0b\r\n" H11 "\r\n"
#define KA HTTP_F_KEEP_ALIVE
#define HH HTTP_F_HAS_HOST
#define AF HTTP_F_ABSOLUTE_FORM

static const struct req_case req_cases[] = {
    /* valid EAS traffic */
    {"eas sync", EAS_SYNC "\x03\x01j\x00", sizeof(EAS_SYNC) - 1 + 4, OK, 0,
     NULL, sizeof(EAS_SYNC) - 1, HTTP_M_POST, NOCHECK,
     "/Microsoft-Server-ActiveSync",
     "Cmd=Sync&User=jdoe&DeviceId=ABC&DeviceType=iPhone", "eas.contoso.com", 1,
     KA | HH, HTTP_BODY_LENGTH, 13, 6},
    {"eas options",
     "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: eas.contoso."
     "com\r\nAuthorization: Basic eDp5\r\nContent-Length: 0\r\n\r\n",
     0, OK, 0, NULL, 0, HTTP_M_OPTIONS, "/Microsoft-Server-ActiveSync",
     "/Microsoft-Server-ActiveSync", NULL, "eas.contoso.com", 1, KA | HH,
     HTTP_BODY_LENGTH, 0, 3},
    {"eas base64 query",
     "POST /Microsoft-Server-ActiveSync?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob2"
     "5l HTTP/1.1\r\nHost: eas.contoso.com\r\nTransfer-Encoding: chunked\r"
     "\n\r\n",
     0, OK, 0, NULL, 0, HTTP_M_POST, NOCHECK, "/Microsoft-Server-ActiveSync",
     "jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l", "eas.contoso.com", 1, KA | HH,
     HTTP_BODY_CHUNKED, 0, 2},
    {"healthcheck 1.0 no host",
     "GET /Microsoft-Server-ActiveSync/healthcheck.htm HTTP/1.0\r\n\r\n", 0, OK,
     0, NULL, 0, HTTP_M_GET, NOCHECK,
     "/Microsoft-Server-ActiveSync/healthcheck.htm", NULL, NULL, 0, 0,
     HTTP_BODY_NONE, 0, 0},
    {"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0,
     OK, 0, NULL, 0, HTTP_M_GET, "/", "/", NULL, NULL, 0, KA, HTTP_BODY_NONE, 0,
     1},
    {"1.0 close wins",
     "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0, OK, 0, NULL,
     0, HTTP_M_GET, "/", "/", NULL, NULL, 0, 0, HTTP_BODY_NONE, 0, 1},
    {"1.1 close", "GET / HTTP/1.1\r\n" H11 "Connection: CLOSE\r\n\r\n", 0, OK,
     0, NULL, 0, HTTP_M_GET, "/", "/", NULL, "a", 1, HH, HTTP_BODY_NONE, 0, 2},
    {"connection list upgrade",
     "GET / HTTP/1.1\r\n" H11 "Connection: ,Keep-Alive ,\tUpgrade\r\n"
     "Upgrade: websocket\r\n\r\n",
     0, OK, 0, NULL, 0, HTTP_M_GET, "/", "/", NULL, "a", 1,
     KA | HH | HTTP_F_CONN_UPGRADE, HTTP_BODY_NONE, 0, 3},
    {"two connection headers",
     "GET / HTTP/1.1\r\n" H11 "Connection: foo\r\nConnection: close\r\n\r\n", 0,
     OK, 0, NULL, 0, HTTP_M_GET, "/", "/", NULL, "a", 1,
     HH | HTTP_F_CONN_OPTIONS, HTTP_BODY_NONE, 0, 3},
    {"expect 100",
     "POST /x HTTP/1.1\r\n" H11 "Expect: 100-Continue\r\nContent-Length: "
     "5\r\n\r\n",
     0, OK, 0, NULL, 0, HTTP_M_POST, "/x", "/x", NULL, "a", 1,
     KA | HH | HTTP_F_EXPECT_100, HTTP_BODY_LENGTH, 5, 3},
    {"expect 100 ignored in 1.0",
     "POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", 0,
     OK, 0, NULL, 0, HTTP_M_POST, "/x", "/x", NULL, NULL, 0, 0,
     HTTP_BODY_LENGTH, 5, 2},
    {"te chunked any case",
     "POST /x HTTP/1.1\r\n" H11 "Transfer-Encoding:\tChunked \r\n\r\n", 0, OK,
     0, NULL, 0, HTTP_M_POST, "/x", "/x", NULL, "a", 1, KA | HH,
     HTTP_BODY_CHUNKED, 0, 2},
    {"cl repeated equal",
     "POST /x HTTP/1.1\r\n" H11 "Content-Length: 42\r\nContent-Length:  "
     "42 \r\n\r\n",
     0, OK, 0, NULL, 0, HTTP_M_POST, "/x", "/x", NULL, "a", 1, KA | HH,
     HTTP_BODY_LENGTH, 42, 3},
    {"cl leading zeros",
     "POST /x HTTP/1.1\r\n" H11 "Content-Length: 007\r\n\r\n", 0, OK, 0, NULL,
     0, HTTP_M_POST, "/x", "/x", NULL, "a", 1, KA | HH, HTTP_BODY_LENGTH, 7, 2},
    {"cl int64 max",
     "POST /x HTTP/1.1\r\n" H11 "Content-Length: 9223372036854775807\r\n\r\n",
     0, OK, 0, NULL, 0, HTTP_M_POST, "/x", "/x", NULL, "a", 1, KA | HH,
     HTTP_BODY_LENGTH, 9223372036854775807ULL, 2},
    {"absolute form",
     "POST http://mail.contoso.com/Microsoft-Server-ActiveSync?Cmd=Ping HT"
     "TP/1.1\r\nHost: other.example\r\n\r\n",
     0, OK, 0, NULL, 0, HTTP_M_POST, NOCHECK, "/Microsoft-Server-ActiveSync",
     "Cmd=Ping", "mail.contoso.com", 1, KA | HH | AF, HTTP_BODY_NONE, 0, 1},
    {"absolute form https no path",
     "OPTIONS HTTPS://Mail.Contoso.com:443 HTTP/1.1\r\n" H11 "\r\n", 0, OK, 0,
     NULL, 0, HTTP_M_OPTIONS, "HTTPS://Mail.Contoso.com:443", NULL, NULL,
     "Mail.Contoso.com:443", 1, KA | HH | AF, HTTP_BODY_NONE, 0, 1},
    {"absolute form query no path", "GET http://h?x=1 HTTP/1.1\r\n" H11 "\r\n",
     0, OK, 0, NULL, 0, HTTP_M_GET, NOCHECK, NULL, "x=1", "h", 1,
     KA | HH | AF, HTTP_BODY_NONE, 0, 1},
    {"asterisk options", "OPTIONS * HTTP/1.1\r\n" H11 "\r\n", 0, OK, 0, NULL, 0,
     HTTP_M_OPTIONS, "*", "*", NULL, "a", 1, KA | HH, HTTP_BODY_NONE, 0, 1},
    {"connect authority", "CONNECT cas1:443 HTTP/1.1\r\nHost: cas1:443\r\n\r\n",
     0, OK, 0, NULL, 0, HTTP_M_CONNECT, "cas1:443", NULL, NULL, "cas1:443", 1,
     KA | HH, HTTP_BODY_NONE, 0, 1},
    {"leading empty lines", "\r\n\r\nGET / HTTP/1.1\r\n" H11 "\r\n", 0, OK, 0,
     NULL, 0, HTTP_M_GET, "/", "/", NULL, "a", 1, KA | HH, HTTP_BODY_NONE, 0,
     1},
    {"host ipv4 port", "GET / HTTP/1.1\r\nHost: 10.0.0.1:8443\r\n\r\n", 0, OK,
     0, NULL, 0, HTTP_M_GET, "/", "/", NULL, "10.0.0.1:8443", 1, KA | HH,
     HTTP_BODY_NONE, 0, 1},
    {"host ipv6", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n", 0, OK, 0,
     NULL, 0, HTTP_M_GET, "/", "/", NULL, "[2001:db8::1]:443", 1, KA | HH,
     HTTP_BODY_NONE, 0, 1},
    {"unknown method", "PROPFIND /dav/ HTTP/1.1\r\n" H11 "\r\n", 0, OK, 0, NULL,
     0, HTTP_M_OTHER, "/dav/", "/dav/", NULL, "a", 1, KA | HH, HTTP_BODY_NONE,
     0, 1},
    {"method case matters", "get / HTTP/1.1\r\n" H11 "\r\n", 0, OK, 0, NULL, 0,
     HTTP_M_OTHER, "/", "/", NULL, "a", 1, KA | HH, HTTP_BODY_NONE, 0, 1},
    {"empty value and obs-text",
     "GET / HTTP/1.1\r\n" H11 "X-Empty:\r\nX-Name: J\xc3\xbcrgen\r\n\r\n", 0,
     OK, 0, NULL, 0, HTTP_M_GET, "/", "/", NULL, "a", 1, KA | HH,
     HTTP_BODY_NONE, 0, 3},
    {"pipelined", PIPE1 PIPE1, 0, OK, 0, NULL, sizeof(PIPE1) - 1, HTTP_M_GET,
     "/1", "/1", NULL, "a", 1, KA | HH, HTTP_BODY_NONE, 0, 1},
    {"empty query", "GET /p? HTTP/1.1\r\n" H11 "\r\n", 0, OK, 0, NULL, 0,
     HTTP_M_GET, "/p?", "/p", NULL, "a", 1, KA | HH, HTTP_BODY_NONE, 0, 1},
    {"transfer_encoding is another name",
     "POST / HTTP/1.1\r\n" H11 "Transfer_Encoding: chunked\r\n\r\n", 0, OK, 0,
     NULL, 0, HTTP_M_POST, "/", "/", NULL, "a", 1, KA | HH, HTTP_BODY_NONE, 0,
     2},
    {"small limits fit",
     "GET /123456789012345678 HTTP/1.1\r\n" H11 "B: 1\r\nC: 2\r\n\r\n", 0, OK,
     0, &small_limits, 0, HTTP_M_GET, NOCHECK, NOCHECK, NULL, "a", 1, KA | HH,
     HTTP_BODY_NONE, 0, 3},

    /* incomplete */
    R_MORE("empty", ""),
    R_MORE("method only", "GET"),
    R_MORE("line only", "GET / HTTP/1.1\r\n"),
    R_MORE("one header", "GET / HTTP/1.1\r\n" H11),
    R_MORE("last cr", "GET / HTTP/1.1\r\n" H11 "\r"),
    R_MORE("lone cr", "\r"),
    R_MORE("empty lines", "\r\n\r\n"),
    R_MORE_LIM("line at limit", "GET /123456789012345678 HTTP/1.1\r",
               &small_limits),
    R_MORE("header bad but incomplete", "GET / HTTP/1.1\r\nX : y\r\n"),

    /* request line */
    R_ERR("bare lf line", "GET / HTTP/1.1\n" H11 "\r\n", 400),
    R_ERR("bare lf end", "GET / HTTP/1.1\r\n" H11 "\n", 400),
    R_ERR("bare lf incomplete", "GET / HTTP/1.1\r\nHost: a\n", 400),
    R_ERR("lf only lines", "GET / HTTP/1.1\nHost: a\n\n", 400),
    R_ERR("leading bare lf", "\nGET / HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("leading bare cr", "\r\rGET / HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("too many empty lines",
          "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" H11 "\r\n",
          400),
    R_ERR("cr in line", "GET /\r HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("double sp", "GET  / HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("tab sep", "GET\t/ HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("trailing sp", "GET / HTTP/1.1 \r\n" H11 "\r\n", 400),
    R_ERR("no version", "GET /\r\n" H11 "\r\n", 400),
    R_ERR("lower version", "GET / http/1.1\r\n" H11 "\r\n", 400),
    R_ERR("version junk", "GET / HTTP/1.1x\r\n" H11 "\r\n", 400),
    R_ERR("version 1.10", "GET / HTTP/1.10\r\n" H11 "\r\n", 400),
    R_ERR("bad method char", "GE(T / HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("no method", " / HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("ctl in target", "GET /a\x01 HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("del in target", "GET /a\x7f HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR_LEN("nul in target", NUL_TARGET, 400),
    R_ERR("relative target", "GET a/b HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("asterisk with get", "GET * HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("ftp target", "GET ftp://h/x HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("userinfo target", "GET http://u:p@h/x HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("empty authority", "GET http:///x HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("authority form get", "GET h:443 HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("connect origin form", "CONNECT / HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("connect no port", "CONNECT h HTTP/1.1\r\n" H11 "\r\n", 400),
    R_ERR("http 2.0", "GET / HTTP/2.0\r\n" H11 "\r\n", 505),
    R_ERR("http 1.2", "GET / HTTP/1.2\r\n" H11 "\r\n", 505),
    R_ERR("http 0.9", "GET / HTTP/0.9\r\n\r\n", 505),

    /* header fields */
    R_ERR("space before colon", "GET / HTTP/1.1\r\n" H11 "X : y\r\n\r\n", 400),
    R_ERR("tab before colon", "GET / HTTP/1.1\r\n" H11 "X\t: y\r\n\r\n", 400),
    R_ERR("obs-fold", "GET / HTTP/1.1\r\n" H11 "X: a\r\n b\r\n\r\n", 400),
    R_ERR("obs-fold first", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    R_ERR("no colon", "GET / HTTP/1.1\r\n" H11 "Foo\r\n\r\n", 400),
    R_ERR("empty name", "GET / HTTP/1.1\r\n" H11 ": y\r\n\r\n", 400),
    R_ERR("bad name char", "GET / HTTP/1.1\r\n" H11 "X{y}: z\r\n\r\n", 400),
    R_ERR("bare cr in value", "GET / HTTP/1.1\r\n" H11 "X: a\rb\r\n\r\n", 400),
    R_ERR_LEN("nul in value", NUL_VALUE, 400),
    R_ERR("ctl in value", "GET / HTTP/1.1\r\n" H11 "X: a\x01\r\n\r\n", 400),
    R_ERR("del in value", "GET / HTTP/1.1\r\n" H11 "X: a\x7f\r\n\r\n", 400),
    R_ERR("vt before value",
          "GET / HTTP/1.1\r\n" H11 "X:\x0b"
          "a\r\n\r\n",
          400),

    /* Host */
    R_ERR("no host 1.1", "GET / HTTP/1.1\r\n\r\n", 400),
    R_ERR("no host absolute", "GET http://h/ HTTP/1.1\r\n\r\n", 400),
    R_ERR("two hosts", "GET / HTTP/1.1\r\n" H11 "host: b\r\n\r\n", 400),
    R_ERR("two hosts 1.0", "GET / HTTP/1.0\r\n" H11 H11 "\r\n", 400),
    R_ERR("empty host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
    R_ERR("host userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400),
    R_ERR("host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
    R_ERR("host space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    R_ERR("host path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    R_ERR("host no name", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
    R_ERR("host empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 400),
    R_ERR("host big port", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 400),
    R_ERR("host two ports", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400),
    R_ERR("host open bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    R_ERR("host zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", 400),

    /* Content-Length and Transfer-Encoding: the smuggling rows */
    R_ERR("cl plus", "POST / HTTP/1.1\r\n" H11 "Content-Length: +5\r\n\r\n",
          400),
    R_ERR("cl minus", "POST / HTTP/1.1\r\n" H11 "Content-Length: -1\r\n\r\n",
          400),
    R_ERR("cl list", "POST / HTTP/1.1\r\n" H11 "Content-Length: 5, 5\r\n\r\n",
          400),
    R_ERR("cl inner space",
          "POST / HTTP/1.1\r\n" H11 "Content-Length: 5 5\r\n\r\n", 400),
    R_ERR("cl empty", "POST / HTTP/1.1\r\n" H11 "Content-Length:\r\n\r\n", 400),
    R_ERR("cl hex", "POST / HTTP/1.1\r\n" H11 "Content-Length: 0x10\r\n\r\n",
          400),
    R_ERR("cl over int64",
          "POST / HTTP/1.1\r\n" H11
          "Content-Length: 9223372036854775808\r\n\r\n",
          400),
    R_ERR("cl overflow",
          "POST / HTTP/1.1\r\n" H11
          "Content-Length: 99999999999999999999\r\n\r\n",
          400),
    R_ERR("cl conflict",
          "POST / HTTP/1.1\r\n" H11
          "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
          400),
    R_ERR("cl and te",
          "POST / HTTP/1.1\r\n" H11
          "Content-Length: 5\r\nTransfer-Encoding: chun"
          "ked\r\n\r\n",
          400),
    R_ERR("te and cl",
          "POST / HTTP/1.1\r\n" H11
          "Transfer-Encoding: chunked\r\nContent-Lengt"
          "h: 5\r\n\r\n",
          400),
    R_ERR("te in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
          400),
    R_ERR("te space before colon",
          "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding : chunked\r\n\r\n", 400),
    R_ERR("te vt",
          "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding:\x0b"
          "chunked\r\n\r\n",
          400),
    R_ERR("te folded",
          "POST / HTTP/1.1\r\n" H11
          "X: a\r\n Transfer-Encoding: chunked\r\n\r\n",
          400),
    R_ERR("te gzip chunked",
          "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n",
          501),
    R_ERR("te chunked chunked",
          "POST / HTTP/1.1\r\n" H11
          "Transfer-Encoding: chunked, chunked\r\n\r\n",
          501),
    R_ERR("te identity",
          "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: identity\r\n\r\n", 501),
    R_ERR("te empty", "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding:\r\n\r\n",
          501),
    R_ERR("te xchunked",
          "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: xchunked\r\n\r\n", 501),
    R_ERR("te param",
          "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked;a=1\r\n\r\n",
          501),
    R_ERR("te twice",
          "POST / HTTP/1.1\r\n" H11
          "Transfer-Encoding: chunked\r\nTransfer-Enco"
          "ding: chunked\r\n\r\n",
          501),

    /* limits */
    R_ERR_LIM("414 complete",
              "GET /1234567890123456789 HTTP/1.1\r\n" H11 "\r\n", 414,
              &small_limits),
    R_ERR_LIM("414 incomplete", "GET /12345678901234567890123456789", 414,
              &small_limits),
    R_ERR_LIM("414 before bare lf",
              "GET /12345678901234567890123456789\n" H11 "\r\n", 414,
              &small_limits),
    R_ERR_LIM("414 incomplete exact", "GET /123456789012345678 HTTP/1.1x", 414,
              &small_limits),

    R_ERR_LIM("431 count",
              "GET / HTTP/1.1\r\n" H11 "B: 1\r\nC: 2\r\nD: 3\r\n\r\n", 431,
              &small_limits),
    R_ERR_LIM("431 count incomplete",
              "GET / HTTP/1.1\r\n" H11 "B: 1\r\nC: 2\r\nD: 3\r\n", 431,
              &small_limits),
    R_ERR_LIM("431 size",
              "GET / HTTP/1.1\r\n" H11 "B: 123456789012345678901234567890"
              "12345678901234567890123456789012345\r\n\r\n",
              431, &small_limits),
    R_ERR_LIM("431 size incomplete",
              "GET / HTTP/1.1\r\n" H11
              "B: 123456789012345678901234567890123456789012"
              "3456789012345678901234567890",
              431, &small_limits),
};

static void check_view(struct str v, const char *want, const char *name)
{
	if (want == NOCHECK)
		return;
	if (want == NULL) {
		CHECK(v.len == 0, name);
		return;
	}
	if (v.len != strlen(want) || memcmp(v.p, want, v.len) != 0)
		fail_msg("case \"%s\": view \"%.*s\" != \"%s\"", name,
		         (int)v.len, v.p, want);
}

static void check_req_ok(const struct req_case *c, const struct http_request *r,
                         size_t len)
{
	size_t hl = c->head_len ? c->head_len : len;

	CHECK(r->head_len == hl, c->name);
	CHECK(r->method == c->method, c->name);
	check_view(r->target, c->target, c->name);
	check_view(r->path, c->path, c->name);
	check_view(r->query, c->query, c->name);
	check_view(r->host, c->host, c->name);
	CHECK(r->version == c->version, c->name);
	CHECK(r->flags == c->flags, c->name);
	CHECK(r->framing == c->framing, c->name);
	if (c->framing == HTTP_BODY_LENGTH)
		CHECK(r->content_length == c->cl, c->name);
	CHECK(r->nheaders == c->nheaders, c->name);
}

static void test_request_table(void **state)
{
	static struct http_request req;

	for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
		const struct req_case *c = &req_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		const char *in = c->in;
		unsigned status = 0;
		int rc = http_request_parse(in, len, c->lim, &req, &status);

		if (c->want == OK) {
			if (rc <= 0)
				fail_msg("case \"%s\": rc %d status %u",
				         c->name, rc, status);
			CHECK((size_t)rc == (c->head_len ? c->head_len : len),
			      c->name);
			check_req_ok(c, &req, len);
		} else if (c->want == MORE) {
			if (rc != 0)
				fail_msg("case \"%s\": rc %d status %u",
				         c->name, rc, status);
		} else {
			if (rc >= 0 || status != c->status)
				fail_msg("case \"%s\": rc %d status %u, want "
				         "%u",
				         c->name, rc, status, c->status);
		}
	}
}

/* Every proper prefix of a complete head needs more bytes; the head then
 * parses the same whatever follows it. */
static void test_request_prefixes(void **state)
{
	static struct http_request req;
	const char *in = EAS_SYNC;
	size_t len = strlen(in);
	unsigned status;

	for (size_t n = 0; n < len; n++)
		assert_int_equal(http_request_parse(in, n, NULL, &req, &status),
		                 0);
	assert_int_equal(http_request_parse(in, len, NULL, &req, &status),
	                 (int)len);
	assert_int_equal(req.nheaders, 6);
	assert_true(str_eq_ci_lit(req.headers[1].name, "authorization"));
	assert_true(str_eq(req.headers[2].value, STR_LIT("14.1")));
}

static void test_request_header_limit(void **state)
{
	static struct http_request req;
	struct http_limits lim = {8192, 1 << 20, 1000};
	char buf[8192];
	size_t n = 0;
	unsigned status;

	n +=
	    (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 1; i < HTTP_MAX_HEADERS; i++)
		n +=
		    (size_t)snprintf(buf + n, sizeof(buf) - n, "X%d: y\r\n", i);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
	/* HTTP_MAX_HEADERS fits even though lim asks for more... */
	assert_int_equal(http_request_parse(buf, n, &lim, &req, &status),
	                 (int)n);
	assert_int_equal(req.nheaders, HTTP_MAX_HEADERS);
	/* ...and one more does not. */
	n -= 2;
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Z: 1\r\n\r\n");
	assert_int_equal(http_request_parse(buf, n, &lim, &req, &status), -1);
	assert_int_equal(status, 431);
	/* The default limits: 100 headers. */
	assert_int_equal(http_request_parse(buf, n, NULL, &req, &status), -1);
	assert_int_equal(status, 431);
}

/* The default limits, 8 KiB for the request line, 32 KiB for the head, both
 * reported before the head is complete. */
static void test_request_default_limits(void **state)
{
	static struct http_request req;
	static char buf[40000];
	unsigned status;
	size_t n;

	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', sizeof(buf) - 5);
	assert_int_equal(http_request_parse(buf, 8192, NULL, &req, &status), 0);
	assert_int_equal(http_request_parse(buf, 8193, NULL, &req, &status),
	                 -1);
	assert_int_equal(status, 414);

	n = (size_t)snprintf(buf, sizeof(buf),
	                     "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	memset(buf + n, 'b', sizeof(buf) - n);
	assert_int_equal(http_request_parse(buf, 32767, NULL, &req, &status),
	                 0);
	assert_int_equal(http_request_parse(buf, 32768, NULL, &req, &status),
	                 -1);
	assert_int_equal(status, 431);
	/* A head of exactly 32 KiB is still fine. */
	memcpy(buf + 32768 - 4, "\r\n\r\n", 4);
	assert_int_equal(
	    http_request_parse(buf, sizeof(buf), NULL, &req, &status), 32768);
	buf[32767] = 'b';
	assert_int_equal(
	    http_request_parse(buf, sizeof(buf), NULL, &req, &status), -1);
	assert_int_equal(status, 431);
}

/* "GET /" target " HTTP/1.1" ... "X: " value CRLF CRLF, each of the two
 * 40 bytes long with byte c at offset off of one of them. */
static size_t byte_at(char *buf, bool in_target, unsigned c, size_t off)
{
	static const char *const part[] = {
	    "GET /", " HTTP/1.1\r\nHost: a\r\nX: ", "\r\n\r\n"};
	size_t n = 0;

	for (int i = 0; i < 3; i++) {
		memcpy(buf + n, part[i], strlen(part[i]));
		n += strlen(part[i]);
		if (i == 2)
			break;
		memset(buf + n, i == 0 ? 'a' : 'v', 40);
		if ((i == 0) == in_target)
			buf[n + off] = (char)c;
		n += 40;
	}
	return n;
}

/* Every byte value at every offset of a long target and a long field value:
 * the word-at-a-time fast path must agree with the byte tables. Leading and
 * trailing OWS in the value is trimmed, not refused. */
static void test_request_byte_positions(void **state)
{
	static struct http_request req;
	char buf[160];
	unsigned status;

	for (unsigned c = 0; c < 256; c++) {
		bool tgt_ok = c > 0x20 && c != 0x7f;
		bool val_ok = c == '\t' || (c >= 0x20 && c != 0x7f);

		for (size_t off = 0; off < 40; off++) {
			size_t n = byte_at(buf, true, c, off);

			assert_int_equal(
			    http_request_parse(buf, n, NULL, &req, &status),
			    tgt_ok ? (int)n : -1);
			n = byte_at(buf, false, c, off);
			assert_int_equal(
			    http_request_parse(buf, n, NULL, &req, &status),
			    val_ok ? (int)n : -1);
		}
	}
}

/* Writes "\r\n" and a request head of total bytes into buf. */
static void leading_line_head(char *buf, size_t total)
{
	int n = snprintf(buf, total, "\r\nGET / HTTP/1.1\r\n" H11 "X: ");

	memset(buf + n, 'b', total - 4 - (size_t)n);
	memcpy(buf + total - 4, "\r\n\r\n", 4);
}

/* Skipped empty lines count toward max_head as they count in head_len. */
static void test_request_leading_lines(void **state)
{
	static struct http_request req;
	char buf[128];
	unsigned status;

	leading_line_head(buf, 96);
	assert_int_equal(
	    http_request_parse(buf, 96, &small_limits, &req, &status), 96);
	assert_int_equal(req.head_len, 96);
	assert_ptr_equal(req.method_str.p, buf + 2);
	leading_line_head(buf, 97);
	assert_int_equal(
	    http_request_parse(buf, 97, &small_limits, &req, &status), -1);
	assert_int_equal(status, 431);
}

static void test_request_views_in_input(void **state)
{
	static struct http_request req;
	const char *in = EAS_SYNC;
	size_t len = strlen(in);
	unsigned status;

	assert_int_equal(http_request_parse(in, len, NULL, &req, &status),
	                 (int)len);
	for (unsigned i = 0; i < req.nheaders; i++) {
		assert_true(req.headers[i].name.p >= in);
		assert_true(req.headers[i].value.p + req.headers[i].value.len <=
		            in + len);
	}
	assert_ptr_equal(req.method_str.p, in);
	assert_int_equal(req.method_str.len, 4);
	assert_string_equal(http_method_str(req.method), "POST");
}

/* A parse moved to a copy of its head reads the same, from the copy only,
 * while the original is overwritten. */
static void test_request_rebase(void **state)
{
	static const char *const heads[] = {
	    EAS_SYNC,
	    "OPTIONS HTTPS://Mail.Contoso.com:443 HTTP/1.1\r\nHost: a\r\n\r\n",
	    "\r\nGET http://h?x=1 HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n",
	};
	static struct http_request req, again;
	char orig[1024], copy[1024];
	unsigned status;

	(void)state;
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		size_t len = strlen(heads[i]);

		memcpy(orig, heads[i], len);
		assert_int_equal(http_request_parse(orig, len, NULL, &req,
		                                    &status),
		                 (int)len);
		memcpy(copy, orig, len);
		http_request_rebase(&req, orig, copy);
		memset(orig, 'x', len);
		assert_int_equal(http_request_parse(copy, len, NULL, &again,
		                                    &status),
		                 (int)len);
		assert_int_equal(req.nheaders, again.nheaders);
		assert_ptr_equal(req.method_str.p, again.method_str.p);
		assert_ptr_equal(req.target.p, again.target.p);
		assert_ptr_equal(req.path.p, again.path.p);
		assert_int_equal(req.path.len, again.path.len);
		assert_ptr_equal(req.query.p, again.query.p);
		assert_ptr_equal(req.host.p, again.host.p);
		for (unsigned k = 0; k < req.nheaders; k++) {
			assert_ptr_equal(req.headers[k].name.p,
			                 again.headers[k].name.p);
			assert_ptr_equal(req.headers[k].value.p,
			                 again.headers[k].value.p);
		}
	}
}

struct resp_case {
	const char *name;
	const char *in;
	enum http_method method;
	int want;
	const struct http_limits *lim;
	unsigned status;
	const char *reason;
	unsigned version, flags;
	enum http_framing framing;
	uint64_t cl;
	unsigned nheaders;
};

static const struct resp_case resp_cases[] = {
    {"200 length",
     "HTTP/1.1 200 OK\r\nContent-Length: 56\r\nContent-Type: "
     "application/vnd.ms-sync.wbxml\r\n\r\n",
     HTTP_M_POST, OK, NULL, 200, "OK", 1, KA, HTTP_BODY_LENGTH, 56, 2},
    {"no reason no sp", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
     HTTP_M_POST, OK, NULL, 200, NULL, 1, KA, HTTP_BODY_LENGTH, 0, 1},
    {"empty reason", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", HTTP_M_POST,
     OK, NULL, 200, NULL, 1, KA, HTTP_BODY_LENGTH, 0, 1},
    {"449 exchange reason",
     "HTTP/1.1 449 Retry after sending a PROVISION command\r\nContent-Len"
     "gth: 0\r\n\r\n",
     HTTP_M_POST, OK, NULL, 449, "Retry after sending a PROVISION command", 1,
     KA, HTTP_BODY_LENGTH, 0, 1},
    {"451 redirect",
     "HTTP/1.1 451\r\nX-MS-Location: https://site2-eas.contoso.com/Microsof"
     "t-Server-ActiveSync\r\nCache-Control: private\r\nContent-Length: 0\r"
     "\n\r\n",
     HTTP_M_POST, OK, NULL, 451, NULL, 1, KA, HTTP_BODY_LENGTH, 0, 3},
    {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     HTTP_M_POST, OK, NULL, 200, "OK", 1, KA, HTTP_BODY_CHUNKED, 0, 1},
    {"eof", "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n", HTTP_M_GET,
     OK, NULL, 200, "OK", 1, 0, HTTP_BODY_EOF, 0, 1},
    {"1.0 length", "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", HTTP_M_GET,
     OK, NULL, 200, "OK", 0, 0, HTTP_BODY_LENGTH, 3, 1},
    {"1.0 keep-alive",
     "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n",
     HTTP_M_GET, OK, NULL, 200, "OK", 0, KA, HTTP_BODY_LENGTH, 3, 2},
    {"1.0 keep-alive eof", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
     HTTP_M_GET, OK, NULL, 200, "OK", 0, 0, HTTP_BODY_EOF, 0, 1},
    {"close",
     "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nConn"
     "ection: close\r\nContent-Length: 0\r\n\r\n",
     HTTP_M_POST, OK, NULL, 503, "Service Unavailable", 1, 0, HTTP_BODY_LENGTH,
     0, 3},
    {"204", "HTTP/1.1 204 No Content\r\n\r\n", HTTP_M_POST, OK, NULL, 204,
     "No Content", 1, KA, HTTP_BODY_NONE, 0, 0},
    {"304 with length",
     "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", HTTP_M_GET, OK,
     NULL, 304, "Not Modified", 1, KA, HTTP_BODY_NONE, 0, 1},
    {"100 continue", "HTTP/1.1 100 Continue\r\n\r\n", HTTP_M_POST, OK, NULL,
     100, "Continue", 1, KA, HTTP_BODY_NONE, 0, 0},
    {"101 upgrade",
     "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
     "websocket\r\n\r\n",
     HTTP_M_GET, OK, NULL, 101, "Switching Protocols", 1,
     KA | HTTP_F_CONN_UPGRADE, HTTP_BODY_NONE, 0, 2},
    {"head", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", HTTP_M_HEAD, OK,
     NULL, 200, "OK", 1, KA, HTTP_BODY_NONE, 0, 1},
    {"head chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     HTTP_M_HEAD, OK, NULL, 200, "OK", 1, KA, HTTP_BODY_NONE, 0, 1},
    {"reason obs-text", "HTTP/1.1 200 D\xc3\xa9j\xc3\xa0 vu\r\n\r\n",
     HTTP_M_GET, OK, NULL, 200, "D\xc3\xa9j\xc3\xa0 vu", 1, 0, HTTP_BODY_EOF, 0,
     0},
    {"connect tunnel", "HTTP/1.1 200 Connection established\r\n\r\n",
     HTTP_M_CONNECT, OK, NULL, 200, "Connection established", 1, 0,
     HTTP_BODY_NONE, 0, 0},

    P_MORE("partial", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", HTTP_M_GET),
    P_MORE("partial line", "HTTP/1.1 2", HTTP_M_GET),

    P_ERR("status 99", "HTTP/1.1 099 X\r\n\r\n", HTTP_M_GET),
    P_ERR("status 600", "HTTP/1.1 600 X\r\n\r\n", HTTP_M_GET),
    P_ERR("status 2 digits", "HTTP/1.1 20 OK\r\n\r\n", HTTP_M_GET),
    P_ERR("status 4 digits", "HTTP/1.1 2000 OK\r\n\r\n", HTTP_M_GET),
    P_ERR("no sp after status", "HTTP/1.1 200OK\r\n\r\n", HTTP_M_GET),
    P_ERR("double sp", "HTTP/1.1  200 OK\r\n\r\n", HTTP_M_GET),
    P_ERR("http2", "HTTP/2 200 OK\r\n\r\n", HTTP_M_GET),
    P_ERR("http 1.2", "HTTP/1.2 200 OK\r\n\r\n", HTTP_M_GET),
    P_ERR("lower version", "http/1.1 200 OK\r\n\r\n", HTTP_M_GET),
    P_ERR("leading crlf", "\r\nHTTP/1.1 200 OK\r\n\r\n", HTTP_M_GET),
    P_ERR("bare lf", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", HTTP_M_GET),
    P_ERR("ctl in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", HTTP_M_GET),
    P_ERR("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\n\r\n", HTTP_M_GET),
    P_ERR("cl and te",
          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r"
          "\n\r\n",
          HTTP_M_GET),
    P_ERR("cl conflict",
          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
          HTTP_M_GET),
    P_ERR("cl conflict 204",
          "HTTP/1.1 204 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
          HTTP_M_GET),
    P_ERR("cl list", "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
          HTTP_M_GET),
    P_ERR("te gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
          HTTP_M_GET),
    P_ERR("te gzip chunked",
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
          HTTP_M_GET),
    P_ERR("te in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
          HTTP_M_GET),
    P_ERR("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
          HTTP_M_GET),
    P_ERR_LIM("too big",
              "HTTP/1.1 200 OK\r\nX: 123456789012345678901234567890123"
              "45678901234567890123456789012345678901234567890",
              HTTP_M_GET, &small_limits),
    P_ERR_LIM("too many",
              "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
              HTTP_M_GET, &small_limits),
};

static void test_response_table(void **state)
{
	static struct http_response resp;

	for (size_t i = 0; i < sizeof(resp_cases) / sizeof(resp_cases[0]);
	     i++) {
		const struct resp_case *c = &resp_cases[i];
		size_t len = strlen(c->in);
		unsigned status = 0;
		int rc = http_response_parse(c->in, len, c->lim, c->method,
		                             &resp, &status);

		if (c->want == MORE) {
			CHECK(rc == 0, c->name);
			continue;
		}
		if (c->want == ERR) {
			if (rc >= 0 || status != 502)
				fail_msg("case \"%s\": rc %d status %u",
				         c->name, rc, status);
			continue;
		}
		if (rc != (int)len)
			fail_msg("case \"%s\": rc %d status %u", c->name, rc,
			         status);
		CHECK(resp.head_len == len, c->name);
		CHECK(resp.status == c->status, c->name);
		check_view(resp.reason, c->reason, c->name);
		CHECK(resp.status_line.p == c->in, c->name);
		CHECK(resp.status_line.len ==
		          (size_t)(strchr(c->in, '\r') - c->in),
		      c->name);
		CHECK(resp.version == c->version, c->name);
		CHECK(resp.flags == c->flags, c->name);
		CHECK(resp.framing == c->framing, c->name);
		if (c->framing == HTTP_BODY_LENGTH)
			CHECK(resp.content_length == c->cl, c->name);
		CHECK(resp.nheaders == c->nheaders, c->name);
	}
}

struct chunk_case {
	const char *name;
	const char *in;
	enum http_chunk_result want; /* after all input */
	const char *data;            /* decoded body */
	size_t consumed;             /* DONE: body length; 0: strlen(in) */
	const struct http_limits *lim;
};

static const struct chunk_case chunk_cases[] = {
    C_ROW("empty body", "0\r\n\r\n", HTTP_CHUNK_DONE, ""),
    C_ROW("one chunk", "5\r\nhello\r\n0\r\n\r\n", HTTP_CHUNK_DONE, "hello"),
    C_ROW("two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
          HTTP_CHUNK_DONE, "hello world"),
    C_ROW("hex", "a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n",
          HTTP_CHUNK_DONE, "0123456789abcdefghijk"),
    C_ROW("leading zeros", "0005\r\nhello\r\n000\r\n\r\n", HTTP_CHUNK_DONE,
          "hello"),
    C_ROW("16 digits", "0000000000000005\r\nhello\r\n0\r\n\r\n",
          HTTP_CHUNK_DONE, "hello"),
    C_ROW("extensions", "5;name=val\r\nhello\r\n0;last;q=\"a b\"\r\n\r\n",
          HTTP_CHUNK_DONE, "hello"),
    C_ROW("bws before ext", "5 \t;x\r\nhello\r\n0\r\n\r\n", HTTP_CHUNK_DONE,
          "hello"),
    C_ROW("trailers", "3\r\nabc\r\n0\r\nX-Checksum: 1234\r\nX-Empty:\r\n\r\n",
          HTTP_CHUNK_DONE, "abc"),
    C_ROW("crlf in data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", HTTP_CHUNK_DONE,
          "\r\n\r\n"),
    C_END("next message after", "0\r\n\r\nGET / HTTP/1.1\r\n", HTTP_CHUNK_DONE,
          "", 5),

    C_ROW("mid data", "5\r\nhel", HTTP_CHUNK_MORE, "hel"),
    C_ROW("mid size", "1", HTTP_CHUNK_MORE, ""),
    C_ROW("after last chunk", "0\r\n", HTTP_CHUNK_MORE, ""),
    C_ROW("mid trailers", "0\r\nX: y\r\n", HTTP_CHUNK_MORE, ""),
    C_ROW("huge chunk", "7fffffffffffffff\r\nabc", HTTP_CHUNK_MORE, "abc"),
    /* Like Content-Length, nothing a signed 64-bit reader sees negative. */
    C_ROW("chunk over int64", "8000000000000000\r\nabc", HTTP_CHUNK_ERROR,
          ""),
    C_ROW("chunk all ones", "ffffffffffffffff\r\nabc", HTTP_CHUNK_ERROR, ""),

    C_ROW("bare lf size", "5\nhello\r\n0\r\n\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("bare lf data", "5\r\nhello\n0\r\n\r\n", HTTP_CHUNK_ERROR, "hello"),
    C_ROW("data too long", "5\r\nhelloX\r\n0\r\n\r\n", HTTP_CHUNK_ERROR,
          "hello"),
    C_ROW("data too short", "5\r\nhell\r\n0\r\n\r\n", HTTP_CHUNK_ERROR,
          "hell\r"),
    C_ROW("bare lf final", "0\r\n\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("cr cr final", "0\r\n\r\r", HTTP_CHUNK_ERROR, ""),
    C_ROW("no digits", "\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("not hex", "g\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("plus", "+5\r\nhello\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("minus", "-5\r\nhello\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("leading space", " 5\r\nhello\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("17 digits", "00000000000000005\r\nhello\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("overflow", "10000000000000000\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("ws no ext", "5 \r\nhello\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("ctl in ext", "5;a\x01\r\nhello\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("bare cr in ext", "5;a\rb\r\nhello\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("bare lf in ext", "5;a\nhello\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("trailer fold", "0\r\nX: a\r\n b\r\n\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("trailer ws colon", "0\r\nX : a\r\n\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("trailer no colon", "0\r\nfoo\r\n\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("trailer ctl", "0\r\nX: a\x01\r\n\r\n", HTTP_CHUNK_ERROR, ""),
    C_ROW("trailer bare lf", "0\r\nX: a\n\r\n", HTTP_CHUNK_ERROR, ""),
    {"trailer too big",
     "0\r\nX: 12345678901234567890123456789012345678901"
     "234567890123456789012345678901234567890123456789012345\r\n\r\n",
     HTTP_CHUNK_ERROR, "", 0, &small_limits},
    {"too many trailers", "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
     HTTP_CHUNK_ERROR, "", 0, &small_limits},
};

/* Feeds in to a fresh decoder in pieces of at most step bytes (0: all at
 * once), collecting data spans, until the decoder stops or input runs out. */
static enum http_chunk_result run_chunked(const struct chunk_case *c,
                                          size_t step, char *data,
                                          size_t *ndata, size_t *consumed)
{
	struct http_chunked ch = {0};
	size_t len = strlen(c->in), pos = 0, avail = step ? step : len;
	enum http_chunk_result r = HTTP_CHUNK_MORE;

	*ndata = 0;
	while (pos < len) {
		size_t n = avail - pos < len - pos ? avail - pos : len - pos;
		size_t used, off, dlen;

		r = http_chunked_step(&ch, c->lim, c->in + pos, n, &used, &off,
		                      &dlen);
		assert_true(used <= n);
		if (r == HTTP_CHUNK_DATA) {
			assert_true(dlen > 0 && off + dlen <= used);
			memcpy(data + *ndata, c->in + pos + off, dlen);
			*ndata += dlen;
		}
		pos += used;
		if (r == HTTP_CHUNK_DONE || r == HTTP_CHUNK_ERROR)
			break;
		if (pos == avail)
			avail += step ? step : len;
		if (r == HTTP_CHUNK_DATA && pos == len)
			r = HTTP_CHUNK_MORE;
	}
	*consumed = pos;
	return r;
}

static void test_chunked_table(void **state)
{
	static char data[512];

	for (size_t i = 0; i < sizeof(chunk_cases) / sizeof(chunk_cases[0]);
	     i++) {
		const struct chunk_case *c = &chunk_cases[i];
		size_t len = strlen(c->in);
		size_t want_used = c->consumed ? c->consumed : len;

		for (size_t step = 0; step <= len; step++) {
			size_t ndata, used;
			enum http_chunk_result r =
			    run_chunked(c, step, data, &ndata, &used);

			if (r != c->want)
				fail_msg("case \"%s\" step %zu: result %d",
				         c->name, step, r);
			if (r != HTTP_CHUNK_ERROR)
				CHECK(used == want_used, c->name);
			if (ndata != strlen(c->data) ||
			    memcmp(data, c->data, ndata) != 0)
				fail_msg("case \"%s\" step %zu: data \"%.*s\"",
				         c->name, step, (int)ndata, data);
		}
	}
}

static void test_chunked_sticky(void **state)
{
	struct http_chunked c = {0};
	size_t used, off, dlen;

	assert_int_equal(
	    http_chunked_step(&c, NULL, "0\r\n\r\nX", 6, &used, &off, &dlen),
	    HTTP_CHUNK_DONE);
	assert_int_equal(used, 5);
	assert_int_equal(
	    http_chunked_step(&c, NULL, "X", 1, &used, &off, &dlen),
	    HTTP_CHUNK_DONE);
	assert_int_equal(used, 0);

	memset(&c, 0, sizeof(c));
	assert_int_equal(
	    http_chunked_step(&c, NULL, "z", 1, &used, &off, &dlen),
	    HTTP_CHUNK_ERROR);
	assert_int_equal(
	    http_chunked_step(&c, NULL, "0\r\n\r\n", 5, &used, &off, &dlen),
	    HTTP_CHUNK_ERROR);
	assert_int_equal(used, 0);

	memset(&c, 0, sizeof(c));
	assert_int_equal(http_chunked_step(&c, NULL, "", 0, &used, &off, &dlen),
	                 HTTP_CHUNK_MORE);
	assert_int_equal(used, 0);
}

static void test_chunked_long_ext(void **state)
{
	static char buf[5000];
	struct http_chunked c = {0};
	size_t used, off, dlen;

	buf[0] = '1';
	buf[1] = ';';
	memset(buf + 2, 'x', 4094);
	memcpy(buf + 4096, "\r\n", 2);
	assert_int_equal(
	    http_chunked_step(&c, NULL, buf, 4098, &used, &off, &dlen),
	    HTTP_CHUNK_MORE);
	assert_int_equal(used, 4098);
	memset(&c, 0, sizeof(c));
	buf[4096] = 'x';
	assert_int_equal(
	    http_chunked_step(&c, NULL, buf, 4097, &used, &off, &dlen),
	    HTTP_CHUNK_ERROR);
}

static void test_hop_by_hop(void **state)
{
	static const char *const hop[] = {
	    "Connection", "keep-alive",         "Proxy-Connection",
	    "te",         "Transfer-Encoding",  "UPGRADE",
	    "Trailer",    "Proxy-Authenticate", "Proxy-Authorization",
	};
	static const char *const e2e[] = {
	    "Host",
	    "Content-Length",
	    "Authorization",
	    "X-MS-ASThrottle",
	    "Retry-After",
	    "WWW-Authenticate",
	    "Trailers",
	    "T",
	    "",
	};

	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		assert_true(http_header_is_hop_by_hop(str_from(hop[i])));
	for (size_t i = 0; i < sizeof(e2e) / sizeof(e2e[0]); i++)
		assert_false(http_header_is_hop_by_hop(str_from(e2e[i])));
}

static void test_connection_lists(void **state)
{
	struct str v = STR_LIT(" close ,X-Foo,, \tKeep-Alive");

	assert_true(http_connection_lists(v, STR_LIT("x-foo")));
	assert_true(http_connection_lists(v, STR_LIT("keep-alive")));
	assert_true(http_connection_lists(v, STR_LIT("Close")));
	assert_false(http_connection_lists(v, STR_LIT("X-Fo")));
	assert_false(http_connection_lists(v, STR_LIT("")));
	assert_false(http_connection_lists(STR_LIT(""), STR_LIT("close")));
	assert_false(http_connection_lists(STR_NULL, STR_LIT("close")));
}

static void test_header_find(void **state)
{
	static struct http_request req;
	const char *in = EAS_SYNC;
	const struct http_header *h;
	unsigned status;

	assert_true(http_request_parse(in, strlen(in), NULL, &req, &status) >
	            0);
	h = http_header_find(req.headers, req.nheaders, "ms-asprotocolversion");
	assert_non_null(h);
	assert_true(str_eq(h->value, STR_LIT("14.1")));
	assert_true(str_eq(h->name, STR_LIT("MS-ASProtocolVersion")));
	assert_null(http_header_find(req.headers, req.nheaders, "Cookie"));
	assert_null(http_header_find(req.headers, 0, "Host"));
}

static void test_reason_and_method(void **state)
{
	assert_string_equal(http_reason(200), "OK");
	assert_string_equal(http_reason(400), "Bad Request");
	assert_string_equal(http_reason(414), "URI Too Long");
	assert_string_equal(http_reason(431),
	                    "Request Header Fields Too Large");
	assert_string_equal(http_reason(449), "Retry With");
	assert_string_equal(http_reason(451), "");
	assert_string_equal(http_reason(501), "Not Implemented");
	assert_string_equal(http_reason(502), "Bad Gateway");
	assert_string_equal(http_reason(503), "Service Unavailable");
	assert_string_equal(http_reason(505), "HTTP Version Not Supported");
	assert_string_equal(http_reason(0), "");
	assert_string_equal(http_reason(999), "");
	assert_string_equal(http_method_str(HTTP_M_OPTIONS), "OPTIONS");
	assert_string_equal(http_method_str(HTTP_M_PATCH), "PATCH");
	assert_string_equal(http_method_str(HTTP_M_OTHER), "OTHER");
	assert_string_equal(http_method_str((enum http_method)99), "OTHER");
	assert_int_equal(http_default_limits.max_request_line, 8192);
	assert_int_equal(http_default_limits.max_head, 32768);
	assert_int_equal(http_default_limits.max_headers, 100);
}

/* What Connection may name (issue: smuggling by a Connection header that
 * takes the framing away): requests and responses, the reason, the flag. */
struct conn_case {
	const char *name;
	const char *fields; /* header lines after the start line */
	bool response;
	int want;	    /* OK or ERR */
	const char *error;  /* the reason on ERR, NULL when none is given */
	unsigned flags;	    /* HTTP_F_CONN_OPTIONS expected on OK */
};

#define CL5 "Content-Length: 5\r\n"

static const struct conn_case conn_cases[] = {
    {"close", "Connection: close\r\n" CL5, false, OK, NULL, 0},
    {"keep-alive upgrade", "Connection: keep-alive, Upgrade\r\n", false, OK,
     NULL, 0},
    {"empty elements", "Connection: ,, close ,\t,\r\n", false, OK, NULL, 0},
    {"other field", "Connection: X-Custom\r\nX-Custom: 1\r\n", false, OK,
     NULL, HTTP_F_CONN_OPTIONS},
    {"content-length", "Connection: Content-Length\r\n" CL5, false, ERR,
     "connection-lists-framing", 0},
    {"odd case and spacing", "Connection: close ,\tcOnTeNt-LeNgTh \r\n" CL5,
     false, ERR, "connection-lists-framing", 0},
    {"second connection header",
     "Connection: keep-alive\r\n" CL5 "Connection: content-length\r\n",
     false, ERR, "connection-lists-framing", 0},
    {"transfer-encoding",
     "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n",
     false, ERR, "connection-lists-framing", 0},
    {"host", "Connection: Host\r\n", false, ERR, "connection-lists-framing",
     0},
    {"not a token", "Connection: Content-Length;x\r\n" CL5, false, ERR,
     "bad-connection-header", 0},
    {"two words", "Connection: close x\r\n", false, ERR,
     "bad-connection-header", 0},
    {"quoted", "Connection: \"close\"\r\n", false, ERR,
     "bad-connection-header", 0},
    {"response other field", "Connection: X-Hop\r\n" CL5, true, OK, NULL,
     HTTP_F_CONN_OPTIONS},
    {"response content-length", "Connection: content-length\r\n" CL5, true,
     ERR, "connection-lists-framing", 0},
    {"response transfer-encoding",
     "Transfer-Encoding: chunked\r\nConnection: close, Transfer-Encoding\r\n",
     true, ERR, "connection-lists-framing", 0},
    {"response not a token", "Connection: a b\r\n" CL5, true, ERR,
     "bad-connection-header", 0},
};

static void test_connection_options(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(conn_cases) / sizeof(conn_cases[0]);
	     i++) {
		const struct conn_case *c = &conn_cases[i];
		static struct http_request req;
		static struct http_response resp;
		char buf[512];
		unsigned status = 0, flags;
		const char *error;
		int rc;

		snprintf(buf, sizeof(buf), "%s%s\r\n",
			 c->response ? "HTTP/1.1 200 OK\r\n"
				     : "POST /x HTTP/1.1\r\n" H11,
			 c->fields);
		if (c->response) {
			rc = http_response_parse(buf, strlen(buf), NULL,
						 HTTP_M_POST, &resp, &status);
			flags = resp.flags;
			error = resp.error;
		} else {
			rc = http_request_parse(buf, strlen(buf), NULL, &req,
						&status);
			flags = req.flags;
			error = req.error;
		}
		if (c->want == OK) {
			CHECK(rc == (int)strlen(buf), c->name);
			CHECK((flags & HTTP_F_CONN_OPTIONS) == c->flags,
			      c->name);
			continue;
		}
		CHECK(rc < 0, c->name);
		CHECK(status == (c->response ? 502U : 400U), c->name);
		CHECK(error != NULL && strcmp(error, c->error) == 0, c->name);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_table),
	    cmocka_unit_test(test_request_prefixes),
	    cmocka_unit_test(test_request_header_limit),
	    cmocka_unit_test(test_request_default_limits),
	    cmocka_unit_test(test_request_leading_lines),
	    cmocka_unit_test(test_request_byte_positions),
	    cmocka_unit_test(test_request_views_in_input),
	    cmocka_unit_test(test_request_rebase),
	    cmocka_unit_test(test_response_table),
	    cmocka_unit_test(test_chunked_table),
	    cmocka_unit_test(test_chunked_sticky),
	    cmocka_unit_test(test_chunked_long_ext),
	    cmocka_unit_test(test_hop_by_hop),
	    cmocka_unit_test(test_connection_lists),
	    cmocka_unit_test(test_connection_options),
	    cmocka_unit_test(test_header_find),
	    cmocka_unit_test(test_reason_and_method),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
