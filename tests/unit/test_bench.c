/*
 * test_bench.c - the load generator's verifier, as pure functions.
 *
 * bench_fill() defines what a connection sends; bench_verify() must accept
 * exactly that and point at the first byte that differs from it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "bench_pattern.h"

#include <stdint.h>
#include <string.h>

#define STREAM 20000

/* Stream layouts: message size and where the stream is cut into pieces. */
static const struct layout {
	size_t size;
	size_t cut;
} layouts[] = {
	{1, 7}, {7, 3}, {8, 8}, {16, 5}, {64, 64}, {100, 33}, {4096, 4095}, {65536, 9000},
};

static const size_t flips[] = {0, 1, 7, 8, 9, 63, 64, 4095, 4096, 4097, STREAM - 1};

static void test_fill_in_pieces_equals_fill_at_once(void **state)
{
	static uint8_t whole[STREAM], pieces[STREAM];

	(void)state;
	for (size_t l = 0; l < sizeof(layouts) / sizeof(layouts[0]); l++) {
		const struct layout *t = &layouts[l];

		bench_fill(whole, STREAM, 42, 0, t->size);
		for (size_t off = 0; off < STREAM; off += t->cut) {
			size_t n = STREAM - off < t->cut ? STREAM - off : t->cut;

			bench_fill(pieces + off, n, 42, off, t->size);
		}
		assert_memory_equal(whole, pieces, STREAM);
		assert_int_equal(bench_verify(pieces, STREAM, 42, 0, t->size), STREAM);
	}
}

static void test_verify_points_at_the_flipped_byte(void **state)
{
	static uint8_t buf[STREAM];

	(void)state;
	for (size_t l = 0; l < sizeof(layouts) / sizeof(layouts[0]); l++) {
		for (size_t f = 0; f < sizeof(flips) / sizeof(flips[0]); f++) {
			bench_fill(buf, STREAM, 7, 1000, layouts[l].size);
			buf[flips[f]] ^= 0x01;
			assert_int_equal(bench_verify(buf, STREAM, 7, 1000, layouts[l].size),
					 flips[f]);
		}
	}
}

/* Two streams must differ in most bytes, else a mix-up could pass unnoticed. */
static size_t equal_bytes(uint64_t key_a, uint64_t off_a, uint64_t key_b, uint64_t off_b,
			  size_t size)
{
	uint8_t a[4096], b[4096];
	size_t same = 0;

	bench_fill(a, sizeof(a), key_a, off_a, size);
	bench_fill(b, sizeof(b), key_b, off_b, size);
	for (size_t i = 0; i < sizeof(a); i++)
		same += a[i] == b[i];
	return same;
}

static void test_pattern_unique_to_connection_and_message(void **state)
{
	static const struct {
		uint64_t key_a, off_a, key_b, off_b;
	} pairs[] = {
		{1, 0, 2, 0},				/* two connections */
		{(1ull << 32), 0, (1ull << 32) | 1, 0}, /* two connrate generations */
		{5, 0, 5, 64},				/* consecutive messages of one connection */
		{5, 0, 5, 64 * 1000},			/* distant messages */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
		assert_true(equal_bytes(pairs[i].key_a, pairs[i].off_a, pairs[i].key_b,
					pairs[i].off_b, 64) < 4096 / 64);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill_in_pieces_equals_fill_at_once),
		cmocka_unit_test(test_verify_points_at_the_flipped_byte),
		cmocka_unit_test(test_pattern_unique_to_connection_and_message),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
