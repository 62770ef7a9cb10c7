/*
 * Chunked transfer coding (RFC 9112 7.1), walked as a byte-driven state
 * machine so that any split of the input gives the same result: every fact
 * needed to resume lives in struct http_chunked, nothing is rescanned.
 */
#include "http/http.h"
#include "http/http_int.h"

/* States of struct http_chunked.state; zero is the start of a body. */
enum chunk_state {
	CS_SIZE0 = 0, /* start of a chunk-size line, no digit yet */
	CS_SIZE,      /* in the hex digits; left holds the value so far */
	CS_SIZE_WS,   /* BWS after the digits: only ';' may follow */
	CS_EXT,       /* in chunk extensions, skipped up to CR */
	CS_SIZE_LF,   /* CR of the size line seen; left is the chunk size */
	CS_DATA,      /* left > 0 data bytes still to come */
	CS_DATA_CR,   /* data done, the CR closing it comes next */
	CS_DATA_LF,   /* ... then its LF */
	CS_TRAILER,   /* start of a trailer line, or of the final CRLF */
	CS_TNAME,     /* in a trailer field name */
	CS_TVALUE,    /* in a trailer field value, up to CR */
	CS_TLF,       /* CR of a trailer line seen */
	CS_FINAL_LF,  /* CR of the last line seen */
	CS_DONE,      /* body complete; nothing more is consumed */
	CS_ERROR,     /* malformed; sticky */
};

static unsigned hex_value(char ch)
{
	return ch <= '9' ? (unsigned)(ch - '0')
	                 : (unsigned)((ch | 0x20) - 'a') + 10;
}

/* One byte of the chunk-size line: digits, BWS, extensions, CR, LF. */
static int size_byte(struct http_chunked *c, char ch)
{
	switch (c->state) {
	case CS_SIZE0:
		if (!http_is(ch, HTTP_C_HEX))
			return -1;
		c->left = hex_value(ch);
		c->state = CS_SIZE;
		break;
	case CS_SIZE:
		if (http_is(ch, HTTP_C_HEX)) {
			/* Sizes are bounded like Content-Length: at most 16
			 * digits and INT64_MAX, so that no signed or wrapping
			 * reader downstream frames this chunk differently. */
			if (c->line_len >= 16 ||
			    c->left > ((uint64_t)INT64_MAX - hex_value(ch)) >> 4)
				return -1;
			c->left = c->left << 4 | hex_value(ch);
		} else if (ch == ' ' || ch == '\t') {
			c->state = CS_SIZE_WS;
		} else if (ch == ';') {
			c->state = CS_EXT;
		} else if (ch == '\r') {
			c->state = CS_SIZE_LF;
			return 0;
		} else {
			return -1;
		}
		break;
	case CS_SIZE_WS:
		if (ch == ';')
			c->state = CS_EXT;
		else if (ch != ' ' && ch != '\t')
			return -1;
		break;
	case CS_EXT:
		if (ch == '\r') {
			c->state = CS_SIZE_LF;
			return 0;
		}
		if (!http_is(ch, HTTP_C_FIELD))
			return -1;
		break;
	default: /* CS_SIZE_LF */
		if (ch != '\n')
			return -1;
		c->state = c->left > 0 ? CS_DATA : CS_TRAILER;
		c->line_len = 0;
		return 0;
	}
	/* The CR and LF are not counted: the bound is on what precedes them. */
	if (++c->line_len > HTTP_MAX_CHUNK_LINE)
		return -1;
	return 0;
}

/* One byte of the trailer section, checked like a header field; the section
 * as a whole (final CRLF included) is bounded by max_head. Returns 1 when the
 * final LF completed the body. */
static int trailer_byte(struct http_chunked *c, const struct http_limits *lim,
                        char ch)
{
	if (c->trailer_len >= http_head_cap(lim->max_head))
		return -1;
	c->trailer_len++;
	switch (c->state) {
	case CS_TRAILER:
		if (ch == '\r') {
			c->state = CS_FINAL_LF;
		} else if (http_is(ch, HTTP_C_TCHAR) &&
		           c->ntrailers < http_max_fields(lim)) {
			c->ntrailers++;
			c->state = CS_TNAME;
		} else {
			return -1;
		}
		return 0;
	case CS_TNAME:
		if (ch == ':')
			c->state = CS_TVALUE;
		else if (!http_is(ch, HTTP_C_TCHAR))
			return -1;
		return 0;
	case CS_TVALUE:
		if (ch == '\r')
			c->state = CS_TLF;
		else if (!http_is(ch, HTTP_C_FIELD))
			return -1;
		return 0;
	case CS_TLF:
		if (ch != '\n')
			return -1;
		c->state = CS_TRAILER;
		return 0;
	default: /* CS_FINAL_LF */
		if (ch != '\n')
			return -1;
		c->state = CS_DONE;
		return 1;
	}
}

/* One byte outside chunk data; returns -1 on error, 1 when the body is done. */
static int control_byte(struct http_chunked *c, const struct http_limits *lim,
                        char ch)
{
	switch (c->state) {
	case CS_SIZE0:
	case CS_SIZE:
	case CS_SIZE_WS:
	case CS_EXT:
	case CS_SIZE_LF:
		return size_byte(c, ch);
	case CS_DATA_CR:
		if (ch != '\r')
			return -1;
		c->state = CS_DATA_LF;
		return 0;
	case CS_DATA_LF:
		if (ch != '\n')
			return -1;
		c->state = CS_SIZE0;
		return 0;
	case CS_TRAILER:
	case CS_TNAME:
	case CS_TVALUE:
	case CS_TLF:
	case CS_FINAL_LF:
		return trailer_byte(c, lim, ch);
	default:
		return -1;
	}
}

enum http_chunk_result http_chunked_step(struct http_chunked *c,
                                         const struct http_limits *lim,
                                         const char *buf, size_t len,
                                         size_t *consumed, size_t *data_off,
                                         size_t *data_len)
{
	size_t i = 0;

	lim = http_limits_or_default(lim);
	*data_off = 0;
	*data_len = 0;
	while (i < len && c->state != CS_DONE && c->state != CS_ERROR) {
		if (c->state == CS_DATA) {
			size_t n =
			    len - i < c->left ? len - i : (size_t)c->left;

			c->left -= n;
			if (c->left == 0)
				c->state = CS_DATA_CR;
			*data_off = i;
			*data_len = n;
			*consumed = i + n;
			return HTTP_CHUNK_DATA;
		}
		if (control_byte(c, lim, buf[i]) < 0) {
			c->state = CS_ERROR;
			break;
		}
		i++;
	}
	*consumed = i;
	if (c->state == CS_ERROR)
		return HTTP_CHUNK_ERROR;
	return c->state == CS_DONE ? HTTP_CHUNK_DONE : HTTP_CHUNK_MORE;
}
