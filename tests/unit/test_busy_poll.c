/*
 * test_busy_poll.c - what --busy-poll asks of the kernel: the listeners'
 * options reach every accepted connection, the epoll instance's parameters
 * are the ones documented, and each refusal reads as one line saying why.
 */
#include "busy_poll.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef EPIOCGPARAMS
#define EPIOCGPARAMS _IOR(EPOLL_IOC_TYPE, 0x02, struct epoll_params)
#endif

static int sockopt(int fd, int opt)
{
	int v = -1;
	socklen_t len = sizeof(v);

	assert_int_equal(getsockopt(fd, SOL_SOCKET, opt, &v, &len), 0);
	return v;
}

/* A TCP listener on 127.0.0.1, port chosen by the kernel. */
static int listener(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)a, &len), 0);
	return fd;
}

static void accepted_sockets_inherit_the_listeners_options(void **state)
{
	struct sockaddr_in a;
	struct listener l = {.fd = listener(&a), .type = SOCK_STREAM};
	struct server srv = {.listeners = &l, .nlisteners = 1};
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), s;

	(void)state;
	busy_poll_listeners(&srv);
	assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	s = accept(l.fd, NULL, NULL);
	assert_true(s >= 0);
	assert_int_equal(sockopt(s, SO_BUSY_POLL), BUSY_POLL_USECS);
	/* Preferring busy polling takes CAP_NET_ADMIN; root has it. */
	if (geteuid() == 0)
		assert_int_equal(sockopt(s, SO_PREFER_BUSY_POLL), 1);
	close(s);
	close(c);
	close(l.fd);
}

static void unix_listeners_are_left_alone(void **state)
{
	struct listener l = {
		.fd = socket(AF_UNIX, SOCK_STREAM, 0), .type = SOCK_STREAM, .is_unix = true};
	struct server srv = {.listeners = &l, .nlisteners = 1};

	(void)state;
	assert_true(l.fd >= 0);
	busy_poll_listeners(&srv);
	assert_int_equal(sockopt(l.fd, SO_BUSY_POLL), 0);
	close(l.fd);
}

static bool kernel_at_least(int major, int minor)
{
	struct utsname u;
	int ma = 0, mi = 0;

	return uname(&u) == 0 && sscanf(u.release, "%d.%d", &ma, &mi) == 2 &&
	       (ma > major || (ma == major && mi >= minor));
}

static void epoll_gets_the_documented_parameters(void **state)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_params p = {0};

	(void)state;
	if (!kernel_at_least(6, 9)) {
		close(ep);
		skip();
	}
	assert_int_equal(busy_poll_epoll(ep, false), 0);
	assert_int_equal(ioctl(ep, EPIOCGPARAMS, &p), 0);
	assert_int_equal(p.busy_poll_usecs, BUSY_POLL_USECS);
	assert_int_equal(p.busy_poll_budget, BUSY_POLL_BUDGET);
	assert_int_equal(p.prefer_busy_poll, 1);
	close(ep);
}

static void a_refused_epoll_setting_is_an_error_code_not_a_crash(void **state)
{
	int fds[2];

	(void)state;
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(busy_poll_epoll(fds[0], false), -ENOTTY);
	close(fds[0]);
	close(fds[1]);
}

static void refusals_say_why_in_one_line(void **state)
{
	char line[256];

	(void)state;
	busy_poll_explain("SO_PREFER_BUSY_POLL", EPERM, line, sizeof(line));
	assert_string_equal(line,
			    "busy-poll: SO_PREFER_BUSY_POLL: needs CAP_NET_ADMIN (start echod "
			    "as root, --user drops it later); workers spin without it");
	busy_poll_explain("EPIOCSPARAMS", ENOTTY, line, sizeof(line));
	assert_non_null(strstr(line, "EPIOCSPARAMS: this kernel has no per-epoll busy polling "
				     "(Linux 6.9 or later)"));
	busy_poll_explain("SO_BUSY_POLL", ENOPROTOOPT, line, sizeof(line));
	assert_non_null(strstr(line, "CONFIG_NET_RX_BUSY_POLL"));
	busy_poll_explain("SO_BUSY_POLL", EBADF, line, sizeof(line));
	assert_non_null(strstr(line, strerror(EBADF)));
	assert_null(strchr(line, '\n'));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accepted_sockets_inherit_the_listeners_options),
		cmocka_unit_test(unix_listeners_are_left_alone),
		cmocka_unit_test(epoll_gets_the_documented_parameters),
		cmocka_unit_test(a_refused_epoll_setting_is_an_error_code_not_a_crash),
		cmocka_unit_test(refusals_say_why_in_one_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
