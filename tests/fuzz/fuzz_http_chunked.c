/*
 * libFuzzer harness of http_chunked_step(): the input is a chunked body fed
 * all at once, one byte at a time, and in pieces whose sizes come from the
 * input itself; every way must give the same result, the same number of
 * consumed bytes and the same decoded data.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct http_limits small = {64, 64, 4};

struct outcome {
	enum http_chunk_result r;
	size_t consumed;
	size_t ndata;
	char *data; /* owned, size of the input */
};

/* Piece sizes cycle through sizes[] (0 there means "all that is left"). */
static void feed(const char *buf, size_t len, const struct http_limits *lim,
                 const size_t *sizes, size_t nsizes, struct outcome *o)
{
	struct http_chunked c = {0};
	size_t pos = 0, avail = 0, k = 0;

	o->r = HTTP_CHUNK_MORE;
	o->ndata = 0;
	while (pos < len) {
		size_t used, off, dlen;

		if (pos == avail) {
			size_t step = sizes[k++ % nsizes];

			avail =
			    step == 0 || step > len - pos ? len : pos + step;
		}
		o->r = http_chunked_step(&c, lim, buf + pos, avail - pos, &used,
		                         &off, &dlen);
		if (used > avail - pos)
			abort();
		if (o->r == HTTP_CHUNK_DATA) {
			if (dlen == 0 || off + dlen > used)
				abort();
			memcpy(o->data + o->ndata, buf + pos + off, dlen);
			o->ndata += dlen;
		} else if (o->r == HTTP_CHUNK_MORE && used != avail - pos) {
			abort();
		}
		pos += used;
		if (o->r == HTTP_CHUNK_DONE || o->r == HTTP_CHUNK_ERROR)
			break;
	}
	if (o->r == HTTP_CHUNK_DATA)
		o->r = HTTP_CHUNK_MORE;
	o->consumed = pos;
}

static void same(const struct outcome *a, const struct outcome *b)
{
	if (a->r != b->r || a->ndata != b->ndata ||
	    (a->ndata > 0 && memcmp(a->data, b->data, a->ndata) != 0))
		abort();
	/* Even an error is found at the same byte, whatever the pieces. */
	if (a->consumed != b->consumed)
		abort();
}

static void run(const char *buf, size_t len, const struct http_limits *lim,
                const uint8_t *seed, size_t nseed, struct outcome *o)
{
	static const size_t all = 0, one = 1;
	size_t sizes[4];

	feed(buf, len, lim, &all, 1, &o[0]);
	feed(buf, len, lim, &one, 1, &o[1]);
	same(&o[0], &o[1]);
	for (size_t i = 0; i < 4; i++)
		sizes[i] = i < nseed ? (size_t)seed[i] % 17 + 1 : 3;
	feed(buf, len, lim, sizes, 4, &o[2]);
	same(&o[0], &o[2]);
	if (o[0].r == HTTP_CHUNK_DONE && o[0].consumed > len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome o[3];
	char *buf = malloc(size ? size : 1);
	int ok = buf != NULL;

	for (size_t i = 0; i < 3; i++) {
		o[i].data = malloc(size ? size : 1);
		ok = ok && o[i].data != NULL;
	}
	if (ok) {
		if (size > 0)
			memcpy(buf, data, size);
		/* The last bytes pick the odd piece sizes: they are rarely
		 * reached in a body, so they do not steer the parse. */
		run(buf, size, &http_default_limits,
		    data + (size > 4 ? size - 4 : 0), size > 4 ? 4 : size, o);
		run(buf, size, &small, data, 0, o);
	}
	for (size_t i = 0; i < 3; i++)
		free(o[i].data);
	free(buf);
	return 0;
}
