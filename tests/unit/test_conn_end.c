/*
 * test_conn_end.c - one vocabulary for how connections end: each end counts
 * under its own counter and METRICS_CLOSED, each PROXY refusal under its
 * reason, and conn.c's "done" is eof or once as the connection was.
 */
#include "conn_end.h"

#include "log.h"
#include "proxy_stage.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_each_end_counts_once_under_its_counter(void **state)
{
	static const enum metrics_counter want[CONN_ENDS] = {
		[CONN_END_EOF] = METRICS_CLOSED_EOF,
		[CONN_END_RESET] = METRICS_CONN_ERRORS,
		[CONN_END_IDLE] = METRICS_IDLE_TIMEOUTS,
		[CONN_END_GRACE] = METRICS_CLOSED_GRACE,
		[CONN_END_ONCE] = METRICS_CLOSED_ONCE,
		[CONN_END_PROXY_MISSING] = METRICS_PROXY_MISSING,
		[CONN_END_PROXY_MALFORMED] = METRICS_PROXY_MALFORMED,
		[CONN_END_PROXY_OVERSIZED] = METRICS_PROXY_OVERSIZED,
		[CONN_END_PROXY_UNSUPPORTED] = METRICS_PROXY_UNSUPPORTED,
		[CONN_END_PROXY_TIMEOUT] = METRICS_PROXY_TIMEOUT,
		[CONN_END_PROXY_TRUNCATED] = METRICS_PROXY_TRUNCATED,
	};

	(void)state;
	log_setup("echod", LOGL_ERROR, false);
	for (int e = 0; e < CONN_ENDS; e++) {
		struct metrics m;
		struct conn_stats st;

		assert_int_equal(metrics_init(&m, 1), 0);
		conn_stats_start(&st, -1, 0);
		st.proxy = proxy_stage_new(
			0, PROXY_TIMEOUT_MS); /* freed by conn_ended (ASan checks) */
		conn_ended(&m.w[0], -1, &st, (enum conn_end)e);
		assert_null(st.proxy);
		for (int c = 0; c < METRICS_NCOUNTERS; c++)
			assert_int_equal(metrics_sum(&m, (enum metrics_counter)c),
					 c == METRICS_CLOSED || c == (int)want[e]);
		metrics_free(&m);
	}
}

static void test_names_are_distinct(void **state)
{
	(void)state;
	for (int a = 0; a < CONN_ENDS; a++)
		for (int b = a + 1; b < CONN_ENDS; b++)
			assert_string_not_equal(conn_end_name((enum conn_end)a),
						conn_end_name((enum conn_end)b));
	assert_string_equal(conn_end_name(CONN_END_IDLE), "idle-timeout");
	assert_string_equal(conn_end_name(CONN_END_PROXY_TIMEOUT), "proxy-timeout");
}

/* "proxy-" plus proxy.h's reason label, for every refusal. */
static void test_proxy_refusals_end_by_their_reason(void **state)
{
	(void)state;
	for (int r = PROXY_ERR_SIGNATURE; r < PROXY_RESULTS; r++) {
		const char *name = conn_end_name(conn_end_proxy((enum proxy_result)r));

		assert_memory_equal(name, "proxy-", 6);
		assert_string_equal(name + 6, proxy_result_name((enum proxy_result)r));
	}
}

static void test_done_is_once_only_after_the_chunk(void **state)
{
	struct conn c;
	unsigned char buf[16], *p;

	(void)state;
	conn_init(&c, buf, sizeof(buf), 0);
	assert_int_equal(conn_end_done(&c), CONN_END_EOF);
	conn_init(&c, buf, sizeof(buf), CONN_ONCE);
	assert_int_equal(conn_end_done(&c), CONN_END_EOF); /* EOF before any byte */
	conn_read_buf(&c, &p);
	conn_read_done(&c, 3);
	assert_int_equal(conn_end_done(&c), CONN_END_ONCE);
}

/* The header phase hands back exactly the bytes after the header. */
static void test_stage_keeps_the_bytes_after_the_header(void **state)
{
	static const char in[] = "PROXY TCP4 192.0.2.1 198.51.100.7 40000 7\r\nhello";
	struct proxy_stage *ps = proxy_stage_new(1000, PROXY_TIMEOUT_MS);
	const uint8_t *data;
	uint8_t *p;
	size_t room;

	(void)state;
	assert_non_null(ps);
	assert_int_equal(ps->deadline, 1000 + PROXY_TIMEOUT_MS);
	p = proxy_stage_room(ps, &room);
	assert_int_equal(room, PROXY_HEADER_MAX);
	memcpy(p, in, 10);
	assert_int_equal(proxy_stage_arrived(ps, 10), PROXY_NEED_MORE);
	p = proxy_stage_room(ps, &room);
	assert_int_equal(room, PROXY_HEADER_MAX - 10);
	memcpy(p, in + 10, sizeof(in) - 1 - 10);
	assert_int_equal(proxy_stage_arrived(ps, sizeof(in) - 1 - 10), PROXY_OK);
	assert_int_equal(proxy_stage_data(ps, &data), 5);
	assert_memory_equal(data, "hello", 5);
	assert_int_equal(ps->src.ss_family, AF_INET);
	proxy_stage_done(ps);
	assert_false(proxy_stage_pending(ps));
	assert_int_not_equal(ps->src_len, 0); /* the address outlives the buffer */
	proxy_stage_free(ps);
	ps = proxy_stage_new(0, PROXY_TIMEOUT_MS);
	assert_int_equal(proxy_stage_arrived(ps, 0), PROXY_ERR_TRUNCATED);
	proxy_stage_free(ps);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_end_counts_once_under_its_counter),
		cmocka_unit_test(test_names_are_distinct),
		cmocka_unit_test(test_proxy_refusals_end_by_their_reason),
		cmocka_unit_test(test_done_is_once_only_after_the_chunk),
		cmocka_unit_test(test_stage_keeps_the_bytes_after_the_header),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
