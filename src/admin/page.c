#include "admin/page.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/evp.h>

/* Generated at build time from page/ by page/embed.cmake. */
static const char page_body[] = {
#include "page_html.inc"
};
static const char page_css[] = {
#include "page_css.inc"
};
static const char page_js[] = {
#include "page_js.inc"
};

/* 'sha256-BASE64' of text, as CSP names an inline element it allows;
 * returns 0 or -1. */
static int csp_hash(const char *text, char *out, size_t cap)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned char b64[2 * EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL) != 1)
		return -1;
	EVP_EncodeBlock(b64, md, (int)len);
	return snprintf(out, cap, "'sha256-%s'", b64) < (int)cap ? 0 : -1;
}

int page_render(struct evbuffer *b, struct evkeyvalq *headers)
{
	char script[80], style[80], csp[320];

	/* The hashes are made per request rather than kept: the page is
	 * asked for once per visit, and nothing global is needed. */
	if (csp_hash(page_js, script, sizeof(script)) != 0 ||
	    csp_hash(page_css, style, sizeof(style)) != 0)
		return -1;
	snprintf(csp, sizeof(csp),
	         "default-src 'none'; script-src %s; style-src %s; "
	         "connect-src 'self'; img-src data:; base-uri 'none'; "
	         "form-action 'none'; frame-ancestors 'none'",
	         script, style);
	if (evhttp_add_header(headers, "Content-Security-Policy", csp) != 0 ||
	    evhttp_add_header(headers, "X-Content-Type-Options", "nosniff") ||
	    evhttp_add_header(headers, "Referrer-Policy", "no-referrer") ||
	    evhttp_add_header(headers, "Cache-Control", "no-store"))
		return -1;
	return evbuffer_add_printf(
	           b,
	           "<!DOCTYPE html>\n<html lang=\"en\"><head>"
	           "<meta charset=\"utf-8\">"
	           "<meta name=\"viewport\" "
	           "content=\"width=device-width, initial-scale=1\">"
	           "<title>easfront status</title>"
	           /* No favicon request: an empty data: icon. */
	           "<link rel=\"icon\" href=\"data:,\">"
	           "<style>%s</style></head>\n<body>\n%s<script>%s</script>"
	           "</body></html>\n",
	           page_css, page_body, page_js) < 0
	           ? -1
	           : 0;
}
