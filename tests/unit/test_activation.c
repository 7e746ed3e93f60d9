/*
 * test_activation.c - reading LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES and
 * NOTIFY_SOCKET: the parsing, as pure functions, and the notify datagram
 * over a real unix socket.
 *
 * Includes activation.c itself so the test links with the common objects.
 */
#include "../../src/echod/activation.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static void test_count(void **state)
{
	/* clang-format off */
	static const struct {
		const char *pid, *fds;
		int want;
	} cases[] = {
		{NULL, NULL, 0},
		{"100", NULL, 0},
		{NULL, "2", 0},	     /* as sd_listen_fds(): both or nothing */
		{"100", "2", 2},
		{"100", "0", 0},
		{"101", "2", 0},     /* meant for another process */
		{"100", "64", 64},
		{"100", "65", -EINVAL},
		{"100", "-1", -EINVAL},
		{"100", "2x", -EINVAL},
		{"100", "", -EINVAL},
		{"x", "2", -EINVAL},
		{"0", "2", -EINVAL},
		{"", "2", -EINVAL},
	};
	/* clang-format on */
	char why[ACTIVATION_ERRLEN];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why[0] = '\0';
		int got = activation_count(cases[i].pid, cases[i].fds, 100, why, sizeof(why));

		if (got != cases[i].want)
			fail_msg("LISTEN_PID=%s LISTEN_FDS=%s: got %d, want %d",
				 cases[i].pid ? cases[i].pid : "(unset)",
				 cases[i].fds ? cases[i].fds : "(unset)", got, cases[i].want);
		/* Every refusal names the variable. */
		if (got < 0 && !strstr(why, "LISTEN_"))
			fail_msg("no reason for LISTEN_FDS=%s: \"%s\"", cases[i].fds, why);
	}
}

static void test_fd_names(void **state)
{
	char buf[16];

	(void)state;
	activation_fd_name("web:echo:", 0, buf, sizeof(buf));
	assert_string_equal(buf, "web");
	activation_fd_name("web:echo:", 1, buf, sizeof(buf));
	assert_string_equal(buf, "echo");
	activation_fd_name("web:echo:", 2, buf, sizeof(buf));
	assert_string_equal(buf, "");
	activation_fd_name("web:echo:", 3, buf, sizeof(buf));
	assert_string_equal(buf, "");
	activation_fd_name(NULL, 0, buf, sizeof(buf));
	assert_string_equal(buf, "");
	activation_fd_name("a-very-long-name-indeed", 0, buf, sizeof(buf));
	assert_string_equal(buf, "a-very-long-nam"); /* cut, never overrun */
}

static void test_notify_address(void **state)
{
	struct sockaddr_un sa;
	socklen_t len;
	char long_path[sizeof(sa.sun_path) + 2];

	(void)state;
	assert_int_equal(notify_address("/run/systemd/notify", &sa, &len), 0);
	assert_string_equal(sa.sun_path, "/run/systemd/notify");
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) +
				      strlen("/run/systemd/notify") + 1);

	/* Abstract: a leading NUL, the length counts the name and no terminator. */
	assert_int_equal(notify_address("@sd-notify", &sa, &len), 0);
	assert_int_equal(sa.sun_path[0], '\0');
	assert_memory_equal(sa.sun_path + 1, "sd-notify", 9);
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 10);

	assert_int_equal(notify_address("relative/path", &sa, &len), -EINVAL);
	assert_int_equal(notify_address("", &sa, &len), -EINVAL);
	assert_int_equal(notify_address("@", &sa, &len), -EINVAL);
	assert_int_equal(notify_address(NULL, &sa, &len), -EINVAL);
	memset(long_path, 'x', sizeof(long_path) - 1);
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	assert_int_equal(notify_address(long_path, &sa, &len), -ENAMETOOLONG);
	long_path[sizeof(sa.sun_path)] = '\0'; /* exactly sun_path long: no room for the NUL */
	assert_int_equal(notify_address(long_path, &sa, &len), -ENAMETOOLONG);
}

/* The variables are gone once read, so nothing echod starts inherits them. */
static void test_take_unsets_the_variables(void **state)
{
	struct config cfg = {0};
	struct server srv = {.cfg = &cfg};
	struct activated_udp udp = {0};
	char pid[16], why[ACTIVATION_ERRLEN];

	(void)state;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "0", 1);
	setenv("LISTEN_FDNAMES", "", 1);
	assert_int_equal(activation_take(&srv, &udp, why, sizeof(why)), 0);
	assert_null(getenv("LISTEN_PID"));
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_FDNAMES"));
	assert_null(srv.listeners);

	/* Malformed: refused with a reason, and unset all the same. */
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "many", 1);
	assert_int_equal(activation_take(&srv, &udp, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "LISTEN_FDS=many"));
	assert_null(getenv("LISTEN_FDS"));
}

/* notify_open() + notify_ready() against an abstract socket standing in for systemd. */
static void test_notify_datagrams(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char env[64], why[ACTIVATION_ERRLEN], got[64];
	int sys = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ssize_t n;

	(void)state;
	snprintf(env, sizeof(env), "@echod-unit-%d", (int)getpid());
	memcpy(sa.sun_path + 1, env + 1, strlen(env) - 1);
	assert_true(sys >= 0);
	assert_int_equal(bind(sys, (struct sockaddr *)&sa,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(env))),
			 0);
	setenv("NOTIFY_SOCKET", env, 1);
	assert_int_equal(notify_open(why, sizeof(why)), 0);
	assert_null(getenv("NOTIFY_SOCKET")); /* unset, so nothing started inherits it */
	notify_ready();
	n = recv(sys, got, sizeof(got), MSG_DONTWAIT);
	assert_int_equal(n, 7);
	assert_memory_equal(got, "READY=1", 7);
	notify_stopping();
	n = recv(sys, got, sizeof(got), MSG_DONTWAIT);
	assert_int_equal(n, 10);
	assert_memory_equal(got, "STOPPING=1", 10);
	close(sys);
	close(atomic_exchange(&notify_fd, -1));

	/* Nobody listening there: a reason, and no socket kept. */
	setenv("NOTIFY_SOCKET", env, 1);
	assert_true(notify_open(why, sizeof(why)) < 0);
	assert_non_null(strstr(why, "NOTIFY_SOCKET="));
	assert_int_equal(atomic_load(&notify_fd), -1);
	notify_ready(); /* nothing to do, no crash */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_count),
		cmocka_unit_test(test_fd_names),
		cmocka_unit_test(test_take_unsets_the_variables),
		cmocka_unit_test(test_notify_address),
		cmocka_unit_test(test_notify_datagrams),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
