/*
 * test_cpus.c - CPU lists (--cpu-affinity, echoc bench --cpus): what the
 * parser takes, in which order, what it refuses and why; formatting back;
 * the allowed set and pinning of this very thread.
 */
#include "cpus.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sched.h>
#include <stdio.h>
#include <string.h>

#define ROWS(tab) (sizeof(tab) / sizeof((tab)[0]))

struct good_case {
	const char *in;
	int n;
	int cpu[8];	    /* the first (up to) 8, in order */
	const char *format; /* cpus_format of the result */
};

static const struct good_case good[] = {
	{"0", 1, {0}, "0"},
	{"3", 1, {3}, "3"},
	{"0-3", 4, {0, 1, 2, 3}, "0-3"},
	{"0-3,8", 5, {0, 1, 2, 3, 8}, "0-3,8"},
	{"8,0-1", 3, {8, 0, 1}, "8,0-1"}, /* order kept: worker 0 on CPU 8 */
	{"2,4,6", 3, {2, 4, 6}, "2,4,6"},
	{"5-5", 1, {5}, "5"},
	{"1023", 1, {1023}, "1023"},
	{"0-1023", 1024, {0, 1, 2, 3, 4, 5, 6, 7}, "0-1023"},
};

struct bad_case {
	const char *in;
	const char *says; /* part of the error line */
};

static const struct bad_case bad[] = {
	{"", "\"\" is not a CPU number"},	  {"x", "\"x\" is not a CPU number"},
	{"1,", "\"\" is not a CPU number"},	  {",1", "\"\" is not a CPU number"},
	{"1,,2", "\"\" is not a CPU number"},	  {"-1", "\"-1\" is not a CPU number"},
	{"1-", "\"1-\" is not a CPU number"},	  {"1-2-3", "\"1-2-3\" is not a CPU number"},
	{"0x2", "\"0x2\" is not a CPU number"},	  {"1 ", "\"1 \" is not a CPU number"},
	{"1024", "\"1024\" is not a CPU number"}, {"99999999999999999999", "is not a CPU number"},
	{"3-1", "range 3-1 goes down"},		  {"0,0", "CPU 0 is named twice"},
	{"0-3,2", "CPU 2 is named twice"},
};

static void parses_in_order(void **state)
{
	(void)state;
	for (size_t i = 0; i < ROWS(good); i++) {
		static struct cpu_list l;
		char err[128] = "", out[64];

		assert_int_equal(cpus_parse(good[i].in, &l, err, sizeof(err)), 0);
		assert_int_equal(l.n, good[i].n);
		for (int j = 0; j < l.n && j < 8; j++)
			assert_int_equal(l.cpu[j], good[i].cpu[j]);
		cpus_format(&l, out, sizeof(out));
		assert_string_equal(out, good[i].format);
	}
}

static void refuses_with_a_reason(void **state)
{
	(void)state;
	for (size_t i = 0; i < ROWS(bad); i++) {
		static struct cpu_list l;
		char err[128] = "";

		assert_int_equal(cpus_parse(bad[i].in, &l, err, sizeof(err)), -1);
		if (!strstr(err, bad[i].says))
			fail_msg("\"%s\": got \"%s\", want \"%s\"", bad[i].in, err, bad[i].says);
	}
}

static void index_and_within(void **state)
{
	static struct cpu_list list, set;
	char err[128];
	int missing = -1;

	(void)state;
	assert_int_equal(cpus_parse("8,2,5", &list, err, sizeof(err)), 0);
	assert_int_equal(cpus_index(&list, 8), 0);
	assert_int_equal(cpus_index(&list, 5), 2);
	assert_int_equal(cpus_index(&list, 3), -1);
	assert_int_equal(cpus_parse("0-5", &set, err, sizeof(err)), 0);
	assert_false(cpus_within(&list, &set, &missing));
	assert_int_equal(missing, 8);
	assert_int_equal(cpus_parse("0-8", &set, err, sizeof(err)), 0);
	assert_true(cpus_within(&list, &set, &missing));
}

/* The allowed set is sched_getaffinity's, and pinning narrows it to one CPU. */
static void allowed_and_pinned(void **state)
{
	static struct cpu_list before, after;
	cpu_set_t saved;

	(void)state;
	assert_int_equal(sched_getaffinity(0, sizeof(saved), &saved), 0);
	assert_int_equal(cpus_allowed(&before), 0);
	assert_int_equal(before.n, CPU_COUNT(&saved));
	for (int i = 1; i < before.n; i++)
		assert_true(before.cpu[i] > before.cpu[i - 1]);
	assert_int_equal(cpus_pin_self(before.cpu[before.n - 1]), 0);
	assert_int_equal(cpus_allowed(&after), 0);
	assert_int_equal(after.n, 1);
	assert_int_equal(after.cpu[0], before.cpu[before.n - 1]);
	assert_int_equal(sched_setaffinity(0, sizeof(saved), &saved), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_in_order),
		cmocka_unit_test(refuses_with_a_reason),
		cmocka_unit_test(index_and_within),
		cmocka_unit_test(allowed_and_pinned),
	};

	return cmocka_run_group_tests_name("cpus", tests, NULL, NULL);
}
