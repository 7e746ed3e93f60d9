/*
 * test_sandbox.c - the io_uring ring restrictions (sandbox_ring_start()): a
 * restricted ring runs the operations the uring engine submits and refuses
 * every other with -EACCES; with --no-sandbox it runs anything.
 *
 * seccomp and Landlock confine the whole process, test runner included, so
 * they are tested end to end instead (tests/e2e/test_sandbox.py).  Includes
 * sandbox.c itself so the test links with the common objects alone.
 */
#include "../../src/echod/sandbox.c"

#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#ifdef HAVE_LIBURING

struct fixture {
	struct io_uring ring;
	int pipe[2];
};

/* A ring created disabled, as the engine creates its rings, then started. */
static struct fixture *start_ring(bool no_sandbox)
{
	static struct fixture f;
	struct config cfg = {.no_sandbox = no_sandbox};
	struct io_uring_params p = {.flags = IORING_SETUP_R_DISABLED};

	if (io_uring_queue_init_params(8, &f.ring, &p) < 0)
		return NULL;
	assert_int_equal(sandbox_ring_start(&f.ring, &cfg), 0);
	assert_int_equal(pipe2(f.pipe, O_CLOEXEC), 0);
	assert_int_equal(write(f.pipe[1], "ping", 4), 4);
	return &f;
}

static void stop_ring(struct fixture *f)
{
	io_uring_queue_exit(&f->ring);
	close(f->pipe[0]);
	close(f->pipe[1]);
}

/* Submits the one SQE prepared and returns its completion's result. */
static int complete(struct fixture *f)
{
	struct io_uring_cqe *cqe;
	int res;

	assert_int_equal(io_uring_submit_and_wait(&f->ring, 1), 1);
	assert_int_equal(io_uring_peek_cqe(&f->ring, &cqe), 0);
	res = cqe->res;
	io_uring_cqe_seen(&f->ring, cqe);
	return res;
}

static void test_restricted_ring_runs_the_engines_operations(void **state)
{
	struct fixture *f = start_ring(false);
	char buf[8];

	(void)state;
	if (!f)
		skip();
	io_uring_prep_poll_add(io_uring_get_sqe(&f->ring), f->pipe[0], POLLIN);
	assert_true(complete(f) & POLLIN);
	io_uring_prep_read(io_uring_get_sqe(&f->ring), f->pipe[0], buf, sizeof(buf), 0);
	assert_int_equal(complete(f), 4);
	stop_ring(f);
}

static void test_restricted_ring_refuses_other_operations(void **state)
{
	struct fixture *f = start_ring(false);
	struct io_uring_sqe *sqe;
	char buf[8];

	(void)state;
	if (!f)
		skip();
	io_uring_prep_nop(io_uring_get_sqe(&f->ring));
	assert_int_equal(complete(f), -EACCES);
	io_uring_prep_write(io_uring_get_sqe(&f->ring), f->pipe[1], "x", 1, 0);
	assert_int_equal(complete(f), -EACCES);
	io_uring_prep_openat(io_uring_get_sqe(&f->ring), AT_FDCWD, "/", O_RDONLY, 0);
	assert_int_equal(complete(f), -EACCES);
	/* An allowed operation with a flag the engine never sets. */
	sqe = io_uring_get_sqe(&f->ring);
	io_uring_prep_read(sqe, f->pipe[0], buf, sizeof(buf), 0);
	sqe->flags |= IOSQE_ASYNC;
	assert_int_equal(complete(f), -EACCES);
	/* No registration but taking the buffer ring back. */
	assert_int_equal(io_uring_register_eventfd(&f->ring, f->pipe[1]), -EACCES);
	stop_ring(f);
}

static void test_unrestricted_ring_with_no_sandbox(void **state)
{
	struct fixture *f = start_ring(true);

	(void)state;
	if (!f)
		skip();
	io_uring_prep_nop(io_uring_get_sqe(&f->ring));
	assert_int_equal(complete(f), 0);
	stop_ring(f);
}

#else /* !HAVE_LIBURING */

static void test_built_without_liburing(void **state)
{
	(void)state;
	skip();
}

#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
#ifdef HAVE_LIBURING
		cmocka_unit_test(test_restricted_ring_runs_the_engines_operations),
		cmocka_unit_test(test_restricted_ring_refuses_other_operations),
		cmocka_unit_test(test_unrestricted_ring_with_no_sandbox),
#else
		cmocka_unit_test(test_built_without_liburing),
#endif
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
