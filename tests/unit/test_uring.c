/*
 * test_uring.c - the uring engine's submission path, on a real ring.
 *
 * Includes engine_uring.c itself, to reach its statics; what it needs from
 * engine.c is stubbed in engine_stubs.h, so the test links with the common objects alone.
 * Built without liburing, there is nothing to test.
 */
#include "../../src/echod/engine_uring.c"
#include "../../src/echod/workers.c"
#include "engine_stubs.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

const struct engine engine_iterative, engine_threads, engine_epoll;

#ifdef HAVE_LIBURING

/* A hang is a failure too: get_sqe() used to retry forever. */
static void hung(int sig)
{
	(void)sig;
	static const char msg[] = "test_uring: get_sqe() did not return within 5 s\n";

	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

static void test_get_sqe_gives_up_when_the_ring_cannot_submit(void **state)
{
	struct worker w;
	int ring_fd, not_a_ring = open("/dev/null", O_RDONLY | O_CLOEXEC);

	(void)state;
	memset(&w, 0, sizeof(w));
	if (io_uring_queue_init(2, &w.ring, 0) < 0)
		skip();
	while (io_uring_get_sqe(&w.ring))
		; /* the submission queue is full */
	/* io_uring_enter(2) on a descriptor that is not a ring fails every time. */
	ring_fd = w.ring.ring_fd;
	w.ring.ring_fd = w.ring.enter_ring_fd = not_a_ring;
	signal(SIGALRM, hung);
	alarm(5);
	assert_null(get_sqe(&w));
	alarm(0);
	assert_int_not_equal(w.ring_err, 0); /* the worker stops with it */
	w.ring.ring_fd = w.ring.enter_ring_fd = ring_fd;
	io_uring_queue_exit(&w.ring);
	close(not_a_ring);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_sqe_gives_up_when_the_ring_cannot_submit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

int main(void)
{
	return 0; /* built without liburing: no engine to test */
}

#endif
