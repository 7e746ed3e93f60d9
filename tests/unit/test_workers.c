/*
 * test_workers.c - the event-loop engines' worker runner: all workers start
 * together or none serves, each set-up worker finishes once, and the first
 * error is the one returned.  Many more workers than CPUs, many times over:
 * a start-up race shows only that way.
 */
#include "../../src/echod/workers.c"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <unistd.h>

#include <cmocka.h>

enum { MAX_WORKERS = 16, ROUNDS = 200 };

struct fake {
	int fail_setup;	   /* index whose setup fails, or -1 */
	int fail_serve[2]; /* indexes whose serve fails (with -EIO - index), or -1 */
	atomic_int setups, serves, finishes;
	atomic_int served_before_all_set_up;
	atomic_int set_up;
	int n;
};

static int fake_setup(void *ctx, int i)
{
	struct fake *f = ctx;

	atomic_fetch_add(&f->setups, 1);
	if (i == f->fail_setup)
		return -ENOSPC;
	atomic_fetch_add(&f->set_up, 1);
	return 0;
}

static int fake_serve(void *ctx, int i)
{
	struct fake *f = ctx;

	if (atomic_load(&f->set_up) != f->n)
		atomic_fetch_add(&f->served_before_all_set_up, 1);
	atomic_fetch_add(&f->serves, 1);
	return i == f->fail_serve[0] || i == f->fail_serve[1] ? -EIO - i : 0;
}

static void fake_finish(void *ctx, int i)
{
	(void)i;
	atomic_fetch_add(&((struct fake *)ctx)->finishes, 1);
}

static int run_fake(struct fake *f, int n)
{
	struct worker_ops ops = {
		.ctx = f, .setup = fake_setup, .serve = fake_serve, .finish = fake_finish};

	f->n = n;
	return workers_run(&ops, n);
}

/* A lost wake-up hangs the runner: that is a failure too. */
static void hung(int sig)
{
	static const char msg[] = "test_workers: workers_run() hung\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

static void test_every_worker_serves_once_all_set_up(void **state)
{
	(void)state;
	signal(SIGALRM, hung);
	alarm(60);
	for (int round = 0; round < ROUNDS; round++) {
		for (int n = 1; n <= MAX_WORKERS; n *= 2) {
			struct fake f = {.fail_setup = -1, .fail_serve = {-1, -1}};

			assert_int_equal(run_fake(&f, n), 0);
			assert_int_equal(f.setups, n);
			assert_int_equal(f.serves, n);
			assert_int_equal(f.finishes, n);
			assert_int_equal(f.served_before_all_set_up, 0);
		}
	}
	alarm(0);
}

static void test_a_failed_setup_stops_everyone(void **state)
{
	(void)state;
	signal(SIGALRM, hung);
	alarm(60);
	for (int round = 0; round < ROUNDS / 4; round++) {
		for (int bad = 0; bad < 8; bad++) {
			struct fake f = {.fail_setup = bad, .fail_serve = {-1, -1}};

			assert_int_equal(run_fake(&f, 8), -ENOSPC);
			assert_int_equal(f.setups, 8);
			assert_int_equal(f.serves, 0);
			assert_int_equal(f.finishes, 7); /* every worker that did set up */
		}
	}
	alarm(0);
}

static void test_the_lowest_serve_error_wins(void **state)
{
	struct fake f = {.fail_setup = -1, .fail_serve = {5, 2}};

	(void)state;
	assert_int_equal(run_fake(&f, 8), -EIO - 2);
	assert_int_equal(f.finishes, 8);
}

static void test_deadlines(void **state)
{
	(void)state;
	assert_int_equal(deadline_earliest(0, 0), 0);
	assert_int_equal(deadline_earliest(0, 7), 7);
	assert_int_equal(deadline_earliest(7, 0), 7);
	assert_int_equal(deadline_earliest(9, 7), 7);
	assert_int_equal(deadline_timeout_ms(0, 100), -1);
	assert_int_equal(deadline_timeout_ms(100, 100), 0);
	assert_int_equal(deadline_timeout_ms(50, 100), 0);
	assert_int_equal(deadline_timeout_ms(150, 100), 50);
	assert_int_equal(deadline_timeout_ms(100 + 3600000, 100), 60000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_worker_serves_once_all_set_up),
		cmocka_unit_test(test_a_failed_setup_stops_everyone),
		cmocka_unit_test(test_the_lowest_serve_error_wins),
		cmocka_unit_test(test_deadlines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
