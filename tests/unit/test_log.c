/*
 * test_log.c - what reaches standard error: one line per message, whatever
 * bytes the message holds (a peer's socket path may hold any), in both the
 * text and the JSON format.
 *
 * Standard error is pointed at a temporary file for each call, so the tests
 * read back exactly what was written.
 */
#include "log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

enum { LINE_MAX_BYTES = 1024 }; /* LOG_LINE_MAX in log.c, newline included */

/* Logs msg (passed as an argument, never as the format) and returns what was written. */
static size_t capture(bool json, const char *msg, char *out, size_t cap)
{
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	assert_non_null(f);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fileno(f), STDERR_FILENO), STDERR_FILENO);
	log_setup("echod", LOGL_DEBUG, json);
	log_info("%s", msg);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(out, 1, cap - 1, f);
	out[n] = '\0';
	fclose(f);
	return n;
}

/* Exactly one line: a single newline, at the end. */
static void assert_one_line(const char *out, size_t n)
{
	assert_true(n > 0 && n <= LINE_MAX_BYTES);
	assert_int_equal(out[n - 1], '\n');
	assert_ptr_equal(memchr(out, '\n', n), out + n - 1);
}

/* Undoes the text format's escapes (\\ and \xNN) in place; returns the length. */
static size_t unescape_text(char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\') {
			s[o++] = s[i];
		} else if (s[i + 1] == '\\') {
			s[o++] = '\\';
			i++;
		} else {
			unsigned v;

			assert_int_equal(s[i + 1], 'x');
			assert_int_equal(sscanf(s + i + 2, "%2x", &v), 1);
			s[o++] = (char)v;
			i += 3;
		}
	}
	return o;
}

static void test_text_escapes_every_byte_but_printable_ascii(void **state)
{
	char msg[256], out[4096];
	size_t n;

	(void)state;
	for (int i = 1; i < 256; i++)
		msg[i - 1] = (char)i;
	msg[255] = '\0';
	n = capture(false, msg, out, sizeof(out));
	assert_one_line(out, n);
	for (size_t i = 0; i < n - 1; i++)
		assert_true(out[i] >= 0x20 && out[i] < 0x7f);
	assert_memory_equal(out, "echod: \\x01\\x02", 15);
	/* Nothing lost, nothing ambiguous: the escapes undo to the message. */
	n = unescape_text(out + 7, n - 8);
	assert_int_equal(n, 255);
	assert_memory_equal(out + 7, msg, 255);
}

static void test_text_forged_line_stays_on_its_line(void **state)
{
	char out[4096];
	size_t n;

	(void)state;
	n = capture(false, "connection from /tmp/c\necho: listening on tcp 1.2.3.4:1", out,
		    sizeof(out));
	assert_one_line(out, n);
	assert_string_equal(out,
			    "echod: connection from /tmp/c\\x0aecho: listening on tcp 1.2.3.4:1\n");
}

static void test_json_escapes(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"plain", "plain"},
		{"q\"b\\", "q\\\"b\\\\"},
		{"a\nb\tc\x1b[2J", "a\\u000ab\\u0009c\\u001b[2J"},
		{"\x7f", "\\u007f"},
		{"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
		 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
		{"\xc2\x9b", "\\u009b"},			      /* C1 control, valid UTF-8 */
		{"\xff\xfe", "\\u00ff\\u00fe"},			      /* never UTF-8 */
		{"\xc0\xaf", "\\u00c0\\u00af"},			      /* overlong "/" */
		{"\xed\xa0\x80", "\\u00ed\\u00a0\\u0080"},	      /* a surrogate */
		{"\xf4\x90\x80\x80", "\\u00f4\\u0090\\u0080\\u0080"}, /* beyond U+10FFFF */
		{"x\xe2\x82", "x\\u00e2\\u0082"},		      /* cut short by the end */
		{"\xe2\x82x", "\\u00e2\\u0082x"},		      /* cut short by ASCII */
	};
	char out[4096];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = capture(true, cases[i].in, out, sizeof(out));
		const char *msg = strstr(out, "\"msg\":\"");

		assert_one_line(out, n);
		assert_non_null(msg);
		msg += 7;
		if (strlen(msg) != strlen(cases[i].want) + 3 ||
		    memcmp(msg, cases[i].want, strlen(cases[i].want)) ||
		    strcmp(msg + strlen(cases[i].want), "\"}\n"))
			fail_msg("case %zu: got %s", i, msg);
	}
}

/* Long messages are cut at a whole escape, and JSON stays closed. */
static void test_long_messages_are_cut_cleanly(void **state)
{
	char msg[3000], out[4096];
	size_t n;

	(void)state;
	memset(msg, '\x01', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	n = capture(false, msg, out, sizeof(out));
	assert_one_line(out, n);
	assert_int_equal((n - 1 - strlen("echod: ")) % 4, 0);
	assert_memory_equal(out + n - 5, "\\x01\n", 5);

	n = capture(true, msg, out, sizeof(out));
	assert_one_line(out, n);
	assert_memory_equal(out + n - 9, "\\u0001\"}\n", 9);

	memset(msg, 'a', sizeof(msg) - 1);
	memcpy(msg + 1000, "\xe2\x82\xac", 3); /* a character across the cut */
	n = capture(true, msg, out, sizeof(out));
	assert_one_line(out, n);
	assert_memory_equal(out + n - 3, "\"}\n", 3);
}

static void test_log_always_is_escaped_too(void **state)
{
	char out[4096];
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	(void)state;
	assert_non_null(f);
	assert_int_equal(dup2(fileno(f), STDERR_FILENO), STDERR_FILENO);
	log_always("listening on unix %s", "/tmp/a\nb");
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	fclose(f);
	assert_string_equal(out, "echod: listening on unix /tmp/a\\x0ab\n");
}

/* log_fields' line for fields f, in the given format, into out. */
static size_t capture_fields(bool json, const struct log_field *f, int nf, char *out, size_t cap)
{
	FILE *file = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	assert_non_null(file);
	assert_int_equal(dup2(fileno(file), STDERR_FILENO), STDERR_FILENO);
	log_setup("echod", LOGL_DEBUG, json);
	log_fields(LOGL_DEBUG, "connection ended", f, nf);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	rewind(file);
	n = fread(out, 1, cap - 1, file);
	out[n] = '\0';
	fclose(file);
	return n;
}

static void test_fields_as_text_and_json(void **state)
{
	const struct log_field f[] = {
		{"end", "eof", 0},
		{"bytes_in", NULL, 18446744073709551615ull},
		{"peer", "/tmp/a\n\"b\xff", 0},
	};
	char out[4096];
	size_t n;

	(void)state;
	n = capture_fields(false, f, 3, out, sizeof(out));
	assert_one_line(out, n);
	/* Quoted: it holds a quote; the log's own escaping comes on top. */
	assert_string_equal(out, "echod: connection ended end=eof bytes_in=18446744073709551615 "
				 "peer=\"/tmp/a\\x0a\\\\\"b\\xff\"\n");
	n = capture_fields(true, f, 3, out, sizeof(out));
	assert_one_line(out, n);
	assert_non_null(strstr(out,
			       "\"level\":\"debug\",\"msg\":\"connection ended\",\"end\":\"eof\","
			       "\"bytes_in\":18446744073709551615,"
			       "\"peer\":\"/tmp/a\\u000a\\\"b\\u00ff\"}\n"));
}

/* A value with a space is quoted, so that key=value pairs split cleanly. */
static void test_text_values_with_spaces_are_quoted(void **state)
{
	const struct log_field f[] = {
		{"detail", "v1: bad port", 0},
		{"peer", "1.2.3.4:5", 0},
	};
	char out[4096];
	size_t n;

	(void)state;
	n = capture_fields(false, f, 2, out, sizeof(out));
	assert_one_line(out, n);
	assert_string_equal(out,
			    "echod: connection ended detail=\"v1: bad port\" peer=1.2.3.4:5\n");
}

/* Fields that do not fit are left out whole: the JSON line still parses. */
static void test_json_fields_that_do_not_fit_are_left_out(void **state)
{
	char big[3000], out[4096];
	const struct log_field f[] = {
		{"a", big, 0},
		{"number", NULL, 12345},
		{"b", "after", 0},
	};
	size_t n;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = capture_fields(true, f, 3, out, sizeof(out));
	assert_one_line(out, n);
	assert_memory_equal(out + n - 4, "x\"}\n", 4);
	assert_null(strstr(out, "number"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_escapes_every_byte_but_printable_ascii),
		cmocka_unit_test(test_text_forged_line_stays_on_its_line),
		cmocka_unit_test(test_json_escapes),
		cmocka_unit_test(test_long_messages_are_cut_cleanly),
		cmocka_unit_test(test_log_always_is_escaped_too),
		cmocka_unit_test(test_fields_as_text_and_json),
		cmocka_unit_test(test_text_values_with_spaces_are_quoted),
		cmocka_unit_test(test_json_fields_that_do_not_fit_are_left_out),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
