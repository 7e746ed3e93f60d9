/*
 * test_metrics.c - the --metrics exposition and its HTTP request parser,
 * both pure functions.
 *
 * The parser is checked from a table of whole requests with their verdicts.
 * For each entry every proper prefix must give HTTP_NEED_MORE unless the
 * prefix is already refused, and once a prefix has a verdict, every longer
 * one keeps it: a request that arrives a byte at a time is judged as one
 * that arrives at once.  Inputs are copied into buffers of exactly their
 * length, so ASan catches a read past len.
 */
#include "metrics_http.c"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

struct req_case {
	const char *text;
	enum http_verdict verdict;
};

static const struct req_case requests[] = {
	{"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n", HTTP_GET},
	{"GET /metrics HTTP/1.0\r\n\r\n", HTTP_GET},
	{"GET /metrics HTTP/1.1\n\n", HTTP_GET}, /* bare LF line ends */
	{"GET /metrics?name[]=x HTTP/1.1\r\n\r\n", HTTP_GET},
	{"HEAD /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n", HTTP_HEAD},
	{"GET /metrics HTTP/1.1\r\nUser-Agent: Prometheus/2.42.0\r\nAccept-Encoding: gzip\r\n"
	 "X-Prometheus-Scrape-Timeout-Seconds: 10\r\nX-Empty:\r\nX-Tab:\ta\tb\r\n\r\n",
	 HTTP_GET},
	{"GET / HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND},
	{"GET /metricsx HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND},
	{"GET /metric HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND},
	{"GET /METRICS HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND},
	{"GET http://h/metrics HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND},
	{"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", HTTP_BAD_METHOD},
	{"get /metrics HTTP/1.1\r\n\r\n", HTTP_BAD_METHOD}, /* methods are case-sensitive */
	{"DELETE /x HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND},
};

/* Refused as soon as the bad byte or line is complete. */
static const struct req_case refused[] = {
	{"GET /metrics HTTP/2.0\r\n", HTTP_BAD_REQUEST},
	{"GET /metrics HTTP/1.1 \r\n", HTTP_BAD_REQUEST},
	{"GET  /metrics HTTP/1.1\r\n", HTTP_BAD_REQUEST},
	{"GET /metrics\r\n", HTTP_BAD_REQUEST}, /* HTTP/0.9 */
	{"GET\r\n", HTTP_BAD_REQUEST},
	{"\r\n", HTTP_BAD_REQUEST},
	{" GET /metrics HTTP/1.1\r\n", HTTP_BAD_REQUEST},
	{"GET /metrics HTTP/1.1\r\nHost 127.0.0.1\r\n", HTTP_BAD_REQUEST},
	{"GET /metrics HTTP/1.1\r\n: empty-name\r\n", HTTP_BAD_REQUEST},
	{"GET /metrics HTTP/1.1\r\nHost : x\r\n", HTTP_BAD_REQUEST},
	{"GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n", HTTP_BAD_REQUEST},
	{"GET /metrics HTTP/1.1\rX", HTTP_BAD_REQUEST}, /* a bare CR */
	{"GET /metrics HTTP/1.1\r\nA: b\rc\r\n", HTTP_BAD_REQUEST},
	{"GE\x01", HTTP_BAD_REQUEST},
	{"GET /metrics HTTP/1.1\r\nA: \x7f", HTTP_BAD_REQUEST},
	{"\x16\x03\x01", HTTP_BAD_REQUEST}, /* a TLS client hello */
};

/* http_parse_request on an exact-size copy of text[0, len). */
static enum http_verdict parse_exact(const char *text, size_t len)
{
	char *copy = malloc(len ? len : 1);
	enum http_verdict v;

	assert_non_null(copy);
	memcpy(copy, text, len);
	v = http_parse_request(copy, len);
	free(copy);
	return v;
}

static void check_prefixes(const struct req_case *c)
{
	size_t len = strlen(c->text);
	enum http_verdict first = HTTP_NEED_MORE;

	for (size_t i = 0; i < len; i++) {
		enum http_verdict v = parse_exact(c->text, i);

		if (first != HTTP_NEED_MORE && v != first)
			fail_msg("\"%s\": %zu bytes give %d after %d", c->text, i, v, first);
		first = v;
	}
	if (first != HTTP_NEED_MORE && first != c->verdict)
		fail_msg("\"%s\": a prefix gives %d, the whole %d", c->text, first, c->verdict);
}

static void test_requests(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
		const struct req_case *c = &requests[i];
		char more[256];

		if (parse_exact(c->text, strlen(c->text)) != c->verdict)
			fail_msg("\"%s\": got %d, want %d", c->text,
				 parse_exact(c->text, strlen(c->text)), c->verdict);
		/* A whole request has a verdict only at its end. */
		for (size_t n = 0; n < strlen(c->text); n++)
			if (parse_exact(c->text, n) != HTTP_NEED_MORE)
				fail_msg("\"%s\": judged after %zu bytes", c->text, n);
		/* What follows the headers (a body, a second request) changes nothing. */
		snprintf(more, sizeof(more), "%sGARBAGE\x01\r\n", c->text);
		assert_int_equal(parse_exact(more, strlen(more)), c->verdict);
	}
}

static void test_refused(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		const struct req_case *c = &refused[i];
		size_t len = strlen(c->text);
		char more[256];

		if (parse_exact(c->text, len) != c->verdict)
			fail_msg("\"%s\": got %d, want %d", c->text, parse_exact(c->text, len),
				 c->verdict);
		check_prefixes(c);
		snprintf(more, sizeof(more), "%sHost: x\r\n\r\n", c->text);
		assert_int_equal(parse_exact(more, strlen(more)), c->verdict);
	}
}

/* Headers that never end: waiting up to the cap, 431 at it, even past it. */
static void test_oversized(void **state)
{
	static const char line[] = "GET /metrics HTTP/1.1\r\n";
	size_t cap = HTTP_REQUEST_MAX;
	char *big = malloc(cap + 100);

	(void)state;
	assert_non_null(big);
	memcpy(big, line, sizeof(line) - 1);
	for (size_t i = sizeof(line) - 1; i < cap + 100; i += 8)
		memcpy(big + i, "X-A: bb\n", i + 8 <= cap + 100 ? 8 : cap + 100 - i);
	assert_int_equal(parse_exact(big, cap - 1), HTTP_NEED_MORE);
	assert_int_equal(parse_exact(big, cap), HTTP_TOO_LARGE);
	assert_int_equal(parse_exact(big, cap + 100), HTTP_TOO_LARGE);
	/* A request line alone longer than the cap is the same. */
	memset(big, 'a', cap + 100);
	memcpy(big, "GET /", 5);
	assert_int_equal(parse_exact(big, cap), HTTP_TOO_LARGE);
	free(big);
}

static void test_heads(void **state)
{
	volatile size_t small = 20;
	char buf[512];
	int n;

	(void)state;
	n = http_format_head(HTTP_GET, 1234, buf, sizeof(buf));
	assert_true(n > 0);
	assert_string_equal(buf, "HTTP/1.1 200 OK\r\n"
				 "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
				 "Content-Length: 1234\r\n"
				 "Connection: close\r\n\r\n");
	n = http_format_head(HTTP_BAD_METHOD, 7, buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "HTTP/1.1 405 Method Not Allowed\r\n"));
	assert_non_null(strstr(buf, "\r\nAllow: GET, HEAD\r\n"));
	http_format_head(HTTP_NOT_FOUND, 1, buf, sizeof(buf));
	assert_memory_equal(buf, "HTTP/1.1 404 ", 13);
	http_format_head(HTTP_BAD_REQUEST, 1, buf, sizeof(buf));
	assert_memory_equal(buf, "HTTP/1.1 400 ", 13);
	http_format_head(HTTP_TOO_LARGE, 1, buf, sizeof(buf));
	assert_memory_equal(buf, "HTTP/1.1 431 ", 13);
	/* volatile: a constant size would have the compiler see the truncation coming */
	assert_int_equal(http_format_head(HTTP_GET, 1, buf, small), -1);
}

/* A snapshot where counter c holds 1000 + c, so each value names its counter. */
static void numbered_snapshot(struct metrics_snapshot *s)
{
	memset(s, 0, sizeof(*s));
	for (int c = 0; c < METRICS_NCOUNTERS; c++)
		s->counters[c] = 1000 + (unsigned long)c;
	s->active = 7;
	s->version = "1.2.3";
	s->engine = "epoll";
	s->process = (struct metrics_process){1.5, 4096, 8192, 12, 1024, 1700000000.25};
}

/* The text's line for the sample "name{labels}" (or "name"), or NULL. */
static const char *sample_line(const char *text, const char *sample)
{
	size_t n = strlen(sample);

	for (const char *p = text; p; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (!strncmp(p, sample, n) && p[n] == ' ')
			return p;
	return NULL;
}

static void expect_sample(const char *text, const char *sample, const char *value)
{
	const char *line = sample_line(text, sample);
	size_t n = strlen(sample), vn = strlen(value);

	if (!line)
		fail_msg("no sample %s in:\n%s", sample, text);
	if (strncmp(line + n + 1, value, vn) || line[n + 1 + vn] != '\n')
		fail_msg("%s: want %s, got %.30s", sample, value, line + n + 1);
}

static void test_render_counters(void **state)
{
	static const struct {
		enum metrics_counter c;
		const char *sample;
	} want[] = {
		{METRICS_ACCEPTED, "echod_connections_accepted_total"},
		{METRICS_CLOSED, "echod_connections_closed_total"},
		{METRICS_CLOSED_EOF, "echod_connections_closed_by_reason_total{reason=\"eof\"}"},
		{METRICS_CONN_ERRORS, "echod_connections_closed_by_reason_total{reason=\"reset\"}"},
		{METRICS_IDLE_TIMEOUTS,
		 "echod_connections_closed_by_reason_total{reason=\"idle_timeout\"}"},
		{METRICS_CLOSED_GRACE,
		 "echod_connections_closed_by_reason_total{reason=\"grace\"}"},
		{METRICS_CLOSED_ONCE, "echod_connections_closed_by_reason_total{reason=\"once\"}"},
		{METRICS_MAXCONNS_PAUSES, "echod_accept_pauses_total{reason=\"max_conns\"}"},
		{METRICS_ACCEPT_PAUSES, "echod_accept_pauses_total{reason=\"descriptors\"}"},
		{METRICS_PROXY_MISSING, "echod_proxy_header_errors_total{reason=\"missing\"}"},
		{METRICS_PROXY_MALFORMED, "echod_proxy_header_errors_total{reason=\"malformed\"}"},
		{METRICS_PROXY_OVERSIZED, "echod_proxy_header_errors_total{reason=\"oversized\"}"},
		{METRICS_PROXY_UNSUPPORTED,
		 "echod_proxy_header_errors_total{reason=\"unsupported\"}"},
		{METRICS_PROXY_TIMEOUT, "echod_proxy_header_errors_total{reason=\"timeout\"}"},
		{METRICS_PROXY_TRUNCATED, "echod_proxy_header_errors_total{reason=\"truncated\"}"},
		{METRICS_BYTES_IN, "echod_bytes_received_total"},
		{METRICS_BYTES_OUT, "echod_bytes_sent_total"},
		{METRICS_MSGS_IN, "echod_messages_received_total"},
		{METRICS_MSGS_OUT, "echod_messages_sent_total"},
		{METRICS_UDP_ECHOED, "echod_udp_datagrams_answered_total"},
		{METRICS_UDP_GUARD_DROPS,
		 "echod_udp_datagrams_dropped_total{reason=\"loop_guard\"}"},
		{METRICS_UDP_RATE_DROPS,
		 "echod_udp_datagrams_dropped_total{reason=\"rate_limit\"}"},
		{METRICS_UDP_TRUNCATED, "echod_udp_datagrams_dropped_total{reason=\"truncated\"}"},
		{METRICS_UDP_SEND_ERRORS,
		 "echod_udp_datagrams_dropped_total{reason=\"send_error\"}"},
	};
	struct metrics_snapshot s;
	static char text[METRICS_TEXT_MAX];
	char value[32];

	(void)state;
	/* Every counter of the enum is exposed: a new one needs a row here and in metrics.c. */
	assert_int_equal(sizeof(want) / sizeof(want[0]), METRICS_NCOUNTERS);
	numbered_snapshot(&s);
	assert_true(metrics_render(&s, text, sizeof(text)) > 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		snprintf(value, sizeof(value), "%lu", 1000 + (unsigned long)want[i].c);
		expect_sample(text, want[i].sample, value);
	}
}

static void test_render_gauges(void **state)
{
	struct metrics_snapshot s;
	static char text[METRICS_TEXT_MAX];

	(void)state;
	numbered_snapshot(&s);
	s.engine = "a\"b\\c\nd";
	assert_true(metrics_render(&s, text, sizeof(text)) > 0);
	expect_sample(text, "echod_connections_active", "7");
	expect_sample(text, "echod_info{version=\"1.2.3\",engine=\"a\\\"b\\\\c\\nd\"}", "1");
	expect_sample(text, "process_cpu_seconds_total", "1.5");
	expect_sample(text, "process_resident_memory_bytes", "4096");
	expect_sample(text, "process_virtual_memory_bytes", "8192");
	expect_sample(text, "process_open_fds", "12");
	expect_sample(text, "process_max_fds", "1024");
	expect_sample(text, "process_start_time_seconds", "1700000000.25");
	assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
	assert_non_null(strstr(text, "# TYPE echod_connections_active gauge\n"));
	/* What the process cannot tell is left out, HELP and TYPE too. */
	s.process.open_fds = -1;
	assert_true(metrics_render(&s, text, sizeof(text)) > 0);
	assert_null(strstr(text, "process_open_fds"));
}

/*
 * The text format's rules promtool checks too (the e2e test runs promtool):
 * every sample's family has exactly one HELP and one TYPE, before its
 * samples, and a family's samples are together.
 */
static void test_render_grouping(void **state)
{
	struct metrics_snapshot s;
	static char text[METRICS_TEXT_MAX];
	char seen[64][96] = {{0}}, current[96] = "";
	int nseen = 0;

	(void)state;
	numbered_snapshot(&s);
	assert_true(metrics_render(&s, text, sizeof(text)) > 0);
	assert_int_equal(text[strlen(text) - 1], '\n');
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char name[96];

		if (!strncmp(line, "# HELP ", 7)) {
			sscanf(line + 7, "%95s", name);
			for (int i = 0; i < nseen; i++)
				if (!strcmp(seen[i], name))
					fail_msg("%s: a second HELP", name);
			assert_true(nseen < 64);
			strcpy(seen[nseen++], name);
			strcpy(current, name);
			continue;
		}
		if (!strncmp(line, "# TYPE ", 7)) {
			sscanf(line + 7, "%95s", name);
			assert_string_equal(name, current);
			continue;
		}
		sscanf(line, "%95[^{ ]", name);
		if (strcmp(name, current))
			fail_msg("sample %s under the HELP of %s", name, current);
	}
	assert_true(nseen >= 18);
}

static void test_render_too_small(void **state)
{
	struct metrics_snapshot s;
	static char text[METRICS_TEXT_MAX];
	int n;

	(void)state;
	numbered_snapshot(&s);
	/* The largest values there are still fit METRICS_TEXT_MAX. */
	for (int c = 0; c < METRICS_NCOUNTERS; c++)
		s.counters[c] = ~0UL;
	s.active = LONG_MAX;
	n = metrics_render(&s, text, sizeof(text));
	assert_true(n > 0);
	assert_int_equal(metrics_render(&s, text, (size_t)n), -1);
	assert_int_equal(metrics_render(&s, text, (size_t)n + 1), n);
}

static void test_proc_stat(void **state)
{
	static const char line[] =
		"4242 (echod (x) y) S 1 4242 4242 0 -1 4194560 300 0 0 0 5 7 0 0 20 -5 3 0 "
		"123456 98765432 1500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n";
	struct proc_stat st;
	char buf[1024];
	int fd;
	ssize_t n;

	(void)state;
	assert_int_equal(metrics_parse_proc_stat(line, sizeof(line) - 1, &st), 0);
	assert_int_equal(st.starttime, 123456);
	assert_int_equal(st.vsize, 98765432);
	assert_int_equal(st.rss, 1500);
	assert_int_equal(metrics_parse_proc_stat("4242 (echod) S 1 2", 18, &st), -1);
	assert_int_equal(metrics_parse_proc_stat("no parenthesis", 14, &st), -1);
	/* And the real file of this process. */
	fd = open("/proc/self/stat", O_RDONLY);
	if (fd < 0)
		skip();
	n = pread(fd, buf, sizeof(buf), 0);
	close(fd);
	assert_true(n > 0);
	assert_int_equal(metrics_parse_proc_stat(buf, (size_t)n, &st), 0);
	assert_true(st.vsize > 0 && st.rss > 0 && st.starttime > 0);
}

/* The gauges read through descriptors kept open: the count moves with the table. */
static void test_open_fds(void **state)
{
	int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	double before, after;
	int extra;

	(void)state;
	if (dir < 0)
		skip();
	before = count_open_fds(dir);
	extra = dup(0);
	assert_true(extra >= 0);
	after = count_open_fds(dir);
	close(extra);
	close(dir);
	assert_true(before >= 4); /* 0, 1, 2 and dir itself */
	assert_true(after == before + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests),	cmocka_unit_test(test_refused),
		cmocka_unit_test(test_oversized),	cmocka_unit_test(test_heads),
		cmocka_unit_test(test_render_counters), cmocka_unit_test(test_render_gauges),
		cmocka_unit_test(test_render_grouping), cmocka_unit_test(test_render_too_small),
		cmocka_unit_test(test_proc_stat),	cmocka_unit_test(test_open_fds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
