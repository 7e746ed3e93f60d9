/*
 * fuzz_http.c - the --metrics request parser on arbitrary bytes, as the
 * first bytes a client sends, arriving in any number of pieces.
 *
 * The target judges the input whole and some of its prefixes (every line
 * end, the middle, all but the last byte), each from a buffer of exactly
 * that many bytes so AddressSanitizer sees any read past len, and checks what
 * metrics_http.h promises:
 * - a verdict is final: a prefix that is not HTTP_NEED_MORE has the verdict
 *   of the whole input;
 * - HTTP_NEED_MORE only below HTTP_REQUEST_MAX bytes;
 * - 200 only for GET or HEAD of /metrics, exactly;
 * - every verdict has a response head that fits a small buffer.
 * The /proc/self/stat parser gets the same bytes: it must never crash.
 */
#include "metrics_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

/* http_parse_request on an exact-size copy of the first n bytes. */
static enum http_verdict parse_prefix(const uint8_t *data, size_t n)
{
	char *copy = malloc(n ? n : 1);
	enum http_verdict v;

	CHECK(copy);
	memcpy(copy, data, n);
	v = http_parse_request(copy, n);
	free(copy);
	return v;
}

static void check_prefix(const uint8_t *data, size_t n, enum http_verdict whole)
{
	enum http_verdict v = parse_prefix(data, n);

	CHECK(v == HTTP_NEED_MORE || v == whole);
}

static bool starts_with(const uint8_t *data, size_t size, const char *s)
{
	size_t n = strlen(s);

	return size >= n && !memcmp(data, s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum http_verdict whole = parse_prefix(data, size);
	char head[512];
	struct proc_stat st;
	int lines = 0;

	CHECK(whole != HTTP_NEED_MORE || size < HTTP_REQUEST_MAX);
	if (whole == HTTP_GET)
		CHECK(starts_with(data, size, "GET /metrics ") ||
		      starts_with(data, size, "GET /metrics?"));
	if (whole == HTTP_HEAD)
		CHECK(starts_with(data, size, "HEAD /metrics ") ||
		      starts_with(data, size, "HEAD /metrics?"));
	if (size) {
		check_prefix(data, size - 1, whole);
		check_prefix(data, size / 2, whole);
	}
	for (size_t i = 0; i < size && lines < 64; i++)
		if (data[i] == '\n') {
			check_prefix(data, i, whole);
			check_prefix(data, i + 1, whole);
			lines++;
		}
	if (whole != HTTP_NEED_MORE) {
		int n = http_format_head(whole, 16384, head, sizeof(head));

		CHECK(n > 0 && !memcmp(head, "HTTP/1.1 ", 9));
		CHECK(http_error_body(whole)[0]);
	}
	metrics_parse_proc_stat((const char *)data, size, &st);
	return 0;
}
