/*
 * test_epoll.c - the epoll engine's bookkeeping that a test can reach
 * without serving: whether a worker's listeners are in its epoll set.
 *
 * Includes engine_epoll.c itself, to reach its statics; what it needs from
 * engine.c is stubbed in engine_stubs.h, so the test links with the common objects alone.
 */
#include "../../src/echod/engine_epoll.c"
#include "../../src/echod/workers.c"
#include "engine_stubs.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

const struct engine engine_iterative, engine_threads, engine_uring;

/* A worker with nl listening sockets (fd -1 where bad[i]) and epoll set epfd. */
struct fixture {
	struct config cfg;
	struct server srv;
	struct listener l[2];
	struct source lsrc[2];
	struct worker w;
};

static void fixture_setup(struct fixture *f, int epfd, const bool bad[2])
{
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < 2; i++) {
		f->l[i].fd = bad[i] ? -1 : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		f->l[i].type = SOCK_STREAM;
		f->lsrc[i] = (struct source){.kind = SRC_LISTENER, .fd = f->l[i].fd};
	}
	f->srv = (struct server){.cfg = &f->cfg, .listeners = f->l, .nlisteners = 2};
	f->w.srv = &f->srv;
	f->w.lsrc = f->lsrc;
	f->w.nlsrc = 2;
	f->w.epfd = epfd;
}

static void fixture_teardown(struct fixture *f)
{
	for (int i = 0; i < 2; i++)
		if (f->l[i].fd >= 0)
			close(f->l[i].fd);
	close(f->w.epfd);
}

/* True when fd is in the epoll set (a second ADD says EEXIST). */
static bool in_set(int epfd, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN};

	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
		return false;
	}
	return errno == EEXIST;
}

static void test_listening_adds_and_removes_every_listener(void **state)
{
	static const bool good[2] = {false, false};
	struct fixture f;

	(void)state;
	fixture_setup(&f, epoll_create1(EPOLL_CLOEXEC), good);
	set_listening(&f.w, true);
	assert_true(f.w.listening);
	assert_true(in_set(f.w.epfd, f.l[0].fd));
	assert_true(in_set(f.w.epfd, f.l[1].fd));
	set_listening(&f.w, false);
	assert_false(f.w.listening);
	assert_false(in_set(f.w.epfd, f.l[0].fd));
	assert_false(in_set(f.w.epfd, f.l[1].fd));
	fixture_teardown(&f);
}

static void test_listening_stays_off_when_epoll_ctl_fails(void **state)
{
	static const bool good[2] = {false, false};
	struct fixture f;

	(void)state;
	/* Not an epoll descriptor: every epoll_ctl fails with EINVAL. */
	fixture_setup(&f, open("/dev/null", O_RDONLY | O_CLOEXEC), good);
	assert_int_equal(set_listening(&f.w, true), -EINVAL);
	assert_false(f.w.listening);
	fixture_teardown(&f);
}

static void test_a_listener_that_fails_leaves_none_in_the_set(void **state)
{
	static const bool second_bad[2] = {false, true};
	struct fixture f;

	(void)state;
	fixture_setup(&f, epoll_create1(EPOLL_CLOEXEC), second_bad);
	set_listening(&f.w, true);
	/* All or nothing: a later retry adds both, without EEXIST on the first. */
	assert_false(f.w.listening);
	assert_false(in_set(f.w.epfd, f.l[0].fd));
	fixture_teardown(&f);
}

/*
 * --cpu-affinity: a worker watches the shared listeners and its own
 * per-worker one, never another worker's (which would undo the steering).
 */
static void test_a_worker_watches_only_its_own_listeners(void **state)
{
	struct listener l[3] = {{.type = SOCK_STREAM},
				{.type = SOCK_STREAM, .per_worker = true, .worker = 0},
				{.type = SOCK_STREAM, .per_worker = true, .worker = 1}};
	struct config cfg = {.buffer_bytes = 1024};
	struct server srv = {.cfg = &cfg, .listeners = l, .nlisteners = 3, .workers = 2};
	struct worker w[2] = {{.epfd = -1}, {.epfd = -1}};
	struct epoll_engine eng = {.srv = &srv, .w = w, .n = 2};
	int stop[2];

	(void)state;
	assert_int_equal(pipe2(stop, O_CLOEXEC), 0);
	srv.stop_fd = stop[0];
	assert_int_equal(metrics_init(&srv.metrics, 2), 0);
	for (int i = 0; i < 3; i++)
		l[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	for (int i = 0; i < 2; i++) {
		w[i].wake.fd = -1;
		assert_int_equal(setup(&eng, i), 0);
		assert_int_equal(w[i].nlsrc, 2);
		assert_true(in_set(w[i].epfd, l[0].fd));
		assert_true(in_set(w[i].epfd, l[1 + i].fd));
		assert_false(in_set(w[i].epfd, l[2 - i].fd));
		worker_free(&w[i]);
	}
	for (int i = 0; i < 3; i++)
		close(l[i].fd);
	close(stop[0]);
	close(stop[1]);
	metrics_free(&srv.metrics);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listening_adds_and_removes_every_listener),
		cmocka_unit_test(test_listening_stays_off_when_epoll_ctl_fails),
		cmocka_unit_test(test_a_listener_that_fails_leaves_none_in_the_set),
		cmocka_unit_test(test_a_worker_watches_only_its_own_listeners),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
