/*
 * test_hist.c - the histogram's percentiles against a sorted array.
 *
 * Each case fills a histogram and an array with the same values; every
 * percentile must lie within the stated relative error above the exact
 * value, never below it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hist.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVALUES 20000

/* Relative error bound promised by hist.h. */
static const double max_rel_error = 1.0 / (1 << HIST_SUB_BITS);

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint64_t gen_constant(size_t i)
{
	(void)i;
	return 42000;
}

static uint64_t gen_uniform_us(size_t i)
{
	(void)i;
	return 1000 + rng() % 1000000; /* 1 us to 1 ms */
}

/* Log-uniform from 1 us to 10 minutes: every octave equally likely. */
static uint64_t gen_log_wide(size_t i)
{
	double e = 10.0 + (double)(rng() % 1000000) / 1000000.0 * 29.0;

	(void)i;
	return (uint64_t)pow(2.0, e);
}

/* Mostly fast with a few slow outliers: the shape a stalled server gives. */
static uint64_t gen_tail(size_t i)
{
	return i % 997 == 0 ? 5000000000ull + rng() % 1000 : 20000 + rng() % 5000;
}

static uint64_t gen_tiny(size_t i)
{
	return i % 1500; /* exact buckets */
}

static const struct gen_case {
	const char *name;
	uint64_t (*gen)(size_t i);
} gens[] = {
	{"constant", gen_constant}, {"uniform_us", gen_uniform_us},
	{"log_wide", gen_log_wide}, {"tail", gen_tail},
	{"tiny", gen_tiny},
};

static const double pcts[] = {0, 1, 25, 50, 75, 90, 99, 99.5, 99.9, 99.99, 100};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t exact_percentile(const uint64_t *sorted, size_t n, double pct)
{
	double r = ceil(pct / 100.0 * (double)n);
	size_t rank = r < 1 ? 1 : (size_t)r;

	return sorted[(rank > n ? n : rank) - 1];
}

static void check_case(const struct gen_case *g)
{
	uint64_t *vals = malloc(NVALUES * sizeof(*vals));
	struct hist h;

	assert_non_null(vals);
	assert_int_equal(hist_init(&h), 0);
	for (size_t i = 0; i < NVALUES; i++) {
		vals[i] = g->gen(i);
		hist_record(&h, vals[i]);
	}
	qsort(vals, NVALUES, sizeof(*vals), cmp_u64);
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
		uint64_t want = exact_percentile(vals, NVALUES, pcts[i]);
		uint64_t got = hist_percentile(&h, pcts[i]);

		if (got < want || (double)got > (double)want * (1 + max_rel_error))
			fail_msg("%s p%g: got %llu, exact %llu", g->name, pcts[i],
				 (unsigned long long)got, (unsigned long long)want);
	}
	assert_int_equal(hist_percentile(&h, 100), vals[NVALUES - 1]);
	assert_int_equal(h.min, vals[0]);
	hist_free(&h);
	free(vals);
}

static void test_percentiles_within_relative_error(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(gens) / sizeof(gens[0]); i++)
		check_case(&gens[i]);
}

static void test_merge_equals_single_histogram(void **state)
{
	struct hist a, b, all;

	(void)state;
	assert_int_equal(hist_init(&a), 0);
	assert_int_equal(hist_init(&b), 0);
	assert_int_equal(hist_init(&all), 0);
	for (size_t i = 0; i < NVALUES; i++) {
		uint64_t v = gen_log_wide(i);

		hist_record(i % 2 ? &a : &b, v);
		hist_record(&all, v);
	}
	hist_merge(&a, &b);
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
		assert_int_equal(hist_percentile(&a, pcts[i]), hist_percentile(&all, pcts[i]));
	assert_int_equal(a.total, all.total);
	hist_free(&a);
	hist_free(&b);
	hist_free(&all);
}

static void test_values_beyond_range_keep_exact_max(void **state)
{
	uint64_t huge = HIST_MAX_NS * 4;
	struct hist h;

	(void)state;
	assert_int_equal(hist_init(&h), 0);
	hist_record(&h, 1000);
	hist_record(&h, huge);
	assert_int_equal(hist_percentile(&h, 100), huge);
	assert_int_equal(hist_percentile(&h, 50), 1000);
	hist_reset(&h);
	assert_int_equal(h.total, 0);
	assert_int_equal(hist_percentile(&h, 50), 0);
	hist_free(&h);
}

static void test_hdr_text_format(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	struct hist h;

	(void)state;
	assert_non_null(out);
	assert_int_equal(hist_init(&h), 0);
	for (uint64_t v = 1000; v <= 1000000; v += 1000)
		hist_record(&h, v);
	assert_int_equal(hist_write_percentiles(&h, out, 1000.0), 0);
	fclose(out);
	assert_non_null(strstr(text, "Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
	assert_non_null(strstr(text, "    1000.000 1.000000000000       1000\n"));
	assert_non_null(strstr(text, "#[Mean    =      500.500, StdDeviation   ="));
	assert_non_null(strstr(text, "#[Max     =     1000.000, Total count    =         1000]"));
	assert_non_null(strstr(text, "#[Buckets ="));
	free(text);
	hist_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_percentiles_within_relative_error),
		cmocka_unit_test(test_merge_equals_single_histogram),
		cmocka_unit_test(test_values_beyond_range_keep_exact_max),
		cmocka_unit_test(test_hdr_text_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
