/*
 * test_spill.c - the uring engine's spill buffers: bytes stay in echo
 * order whatever the buffer does, bytes a send in flight reads never move,
 * and the pool keeps its bounds.
 */
#include "spill.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

enum { UNIT = 16 };

static void assert_next(struct spill *s, const char *want)
{
	const unsigned char *p;
	size_t n = spill_next(s, &p);

	assert_int_equal(n, strlen(want));
	assert_memory_equal(p, want, n);
}

static int append(struct spill_pool *p, struct spill *s, const char *data, bool in_flight)
{
	return spill_append(p, s, (const unsigned char *)data, strlen(data), in_flight);
}

static void test_bytes_come_out_in_order(void **state)
{
	struct spill_pool pool;
	struct spill s = {0};

	(void)state;
	spill_pool_init(&pool, UNIT);
	assert_int_equal(append(&pool, &s, "hello ", false), 0);
	assert_int_equal(append(&pool, &s, "world", false), 0);
	assert_next(&s, "hello world");
	spill_sent(&pool, &s, 6); /* a short send */
	assert_next(&s, "world");
	assert_int_equal(spill_prepend(&pool, &s, (const unsigned char *)">> ", 3), 0);
	assert_next(&s, ">> world");
	spill_free(&pool, &s);
	spill_pool_drain(&pool);
}

static void test_an_empty_spill_gives_its_buffer_to_the_pool(void **state)
{
	struct spill_pool pool;
	struct spill s = {0};

	(void)state;
	spill_pool_init(&pool, UNIT);
	assert_int_equal(append(&pool, &s, "abc", false), 0);
	assert_int_equal(s.cap, UNIT);
	spill_sent(&pool, &s, 3);
	assert_null(s.buf);
	assert_int_equal(pool.n, 1);
	assert_int_equal(pool.bytes, UNIT);
	/* The next spill reuses it. */
	assert_int_equal(append(&pool, &s, "def", false), 0);
	assert_int_equal(pool.n, 0);
	spill_free(&pool, &s);
	spill_pool_drain(&pool);
}

static void test_bytes_a_send_reads_do_not_move(void **state)
{
	struct spill_pool pool;
	struct spill s = {0};
	const unsigned char *sending;
	size_t n;
	char big[UNIT + 1];

	(void)state;
	spill_pool_init(&pool, UNIT);
	assert_int_equal(append(&pool, &s, "0123456789", false), 0);
	n = spill_next(&s, &sending); /* a send reads these 10 bytes now */
	/* More than fits: the bytes move to a new buffer, the old one retires. */
	memset(big, 'x', UNIT);
	big[UNIT] = '\0';
	assert_int_equal(append(&pool, &s, big, true), 0);
	assert_non_null(s.retired);
	assert_ptr_equal(s.retired, sending);
	assert_memory_equal(sending, "0123456789", n);
	assert_int_equal(s.len, 10 + UNIT);
	assert_int_equal(s.cap, 2 * UNIT); /* whole units */
	/* The send lands: the retired buffer goes, the rest is next. */
	spill_sent(&pool, &s, n);
	assert_null(s.retired);
	assert_next(&s, big);
	spill_free(&pool, &s);
	spill_pool_drain(&pool);
}

static void test_the_pool_keeps_its_bounds(void **state)
{
	struct spill_pool pool;
	struct spill s[SPILL_POOL_MAX + 2];
	char big[3 * UNIT + 1];

	(void)state;
	memset(s, 0, sizeof(s));
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	spill_pool_init(&pool, UNIT);
	for (int i = 0; i < SPILL_POOL_MAX + 2; i++)
		assert_int_equal(append(&pool, &s[i], i == 0 ? big : "z", false), 0);
	for (int i = 0; i < SPILL_POOL_MAX + 2; i++)
		spill_free(&pool, &s[i]);
	assert_true(pool.n <= SPILL_POOL_MAX);
	assert_true(pool.bytes <= (size_t)SPILL_POOL_MAX * UNIT);
	spill_pool_drain(&pool);
	assert_int_equal(pool.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes_come_out_in_order),
		cmocka_unit_test(test_an_empty_spill_gives_its_buffer_to_the_pool),
		cmocka_unit_test(test_bytes_a_send_reads_do_not_move),
		cmocka_unit_test(test_the_pool_keeps_its_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
