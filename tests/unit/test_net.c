/*
 * test_net.c - addresses and socket helpers (net).
 *
 * Address parsing and formatting are tables of inputs and expected results.
 * The socket tests use loopback only, port 0 and unix sockets in a private
 * temporary directory; every wait has a timeout, and nothing sleeps to wait
 * for something to happen.
 */
#include "net.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROWS(tab) (sizeof(tab) / sizeof((tab)[0]))
#define WAIT_MS	  5000 /* generous: only a broken test ever waits this long */

#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* Inputs too long to write out, filled in by main(). */
static char unix_longest[5 + SUN_PATH_MAX + 1];	 /* "unix:" and the longest path */
static char unix_too_long[5 + SUN_PATH_MAX + 2]; /* one byte more */
static char host_too_long[sizeof(((struct net_addr *)0)->host) + 1];

struct parse_case {
	const char *in;
	int rc;		 /* 0 or -EINVAL */
	const char *err; /* on error: a part of the message */
	bool is_unix;
	const char *host;
	uint16_t port;
	const char *path;
};

/* The default port passed to net_parse_addr in every case. */
#define DEF 7127

/* clang-format off */
static const struct parse_case parse_cases[] = {
	{"7127",		0, NULL, false, "", 7127, ""},
	{"0",			0, NULL, false, "", 0, ""},
	{"65535",		0, NULL, false, "", 65535, ""},
	{"127.0.0.1:80",	0, NULL, false, "127.0.0.1", 80, ""},
	{"127.0.0.1",		0, NULL, false, "127.0.0.1", DEF, ""},
	{"[::1]:7127",		0, NULL, false, "::1", 7127, ""},
	{"[::1]",		0, NULL, false, "::1", DEF, ""},
	{"[fe80::1%lo]:9",	0, NULL, false, "fe80::1%lo", 9, ""},
	{"::1",			0, NULL, false, "::1", DEF, ""},
	{"::",			0, NULL, false, "::", DEF, ""},
	{"localhost",		0, NULL, false, "localhost", DEF, ""},
	{"localhost:0",		0, NULL, false, "localhost", 0, ""},
	{":8080",		0, NULL, false, "", 8080, ""},
	{"unix:/tmp/x",		0, NULL, true, "", DEF, "/tmp/x"},
	{"unix:relative/sock",	0, NULL, true, "", DEF, "relative/sock"},
	{unix_longest,		0, NULL, true, "", DEF, unix_longest + 5},
	{"unix:",		-EINVAL, "unix socket path must be 1 to", false, NULL, 0, NULL},
	{unix_too_long,		-EINVAL, "unix socket path must be 1 to", false, NULL, 0, NULL},
	{"1.2.3.4:99999",	-EINVAL, "invalid port \"99999\"", false, NULL, 0, NULL},
	{"65536",		-EINVAL, "invalid port \"65536\"", false, NULL, 0, NULL},
	{"1.2.3.4:",		-EINVAL, "invalid port \"\"", false, NULL, 0, NULL},
	{"1.2.3.4:-1",		-EINVAL, "invalid port \"-1\"", false, NULL, 0, NULL},
	{"1.2.3.4:0x50",	-EINVAL, "invalid port \"0x50\"", false, NULL, 0, NULL},
	{"host:abc",		-EINVAL, "invalid port \"abc\"", false, NULL, 0, NULL},
	{"[::1]:99999",		-EINVAL, "invalid port \"99999\"", false, NULL, 0, NULL},
	{"[::1]:",		-EINVAL, "invalid port \"\"", false, NULL, 0, NULL},
	{"[::1",		-EINVAL, "malformed address \"[::1\"", false, NULL, 0, NULL},
	{"[::1]x",		-EINVAL, "malformed address \"[::1]x\"", false, NULL, 0, NULL},
	{"[]:80",		-EINVAL, "malformed address \"[]:80\"", false, NULL, 0, NULL},
	{"",			-EINVAL, "malformed address \"\"", false, NULL, 0, NULL},
	{host_too_long,		-EINVAL, "malformed address", false, NULL, 0, NULL},
};
/* clang-format on */

static void run_parse(void **state)
{
	const struct parse_case *pc = *state;
	char err[NET_ERRLEN] = "";
	struct net_addr a;
	int rc;

	memset(&a, 0xa5, sizeof(a));
	rc = net_parse_addr(pc->in, DEF, &a, err, sizeof(err));
	if (rc != pc->rc)
		fail_msg("\"%s\": returned %d (%s), want %d", pc->in, rc, err, pc->rc);
	if (rc < 0) {
		if (!strstr(err, pc->err))
			fail_msg("\"%s\": message \"%s\" does not say \"%s\"", pc->in, err,
				 pc->err);
		return;
	}
	assert_int_equal(a.is_unix, pc->is_unix);
	assert_string_equal(a.host, pc->host);
	assert_int_equal(a.port, pc->port);
	assert_string_equal(a.path, pc->path);
}

/* net_format_sockaddr: what echod prints in its listening lines and logs. */
struct format_case {
	const char *name;
	int family;
	const char *addr; /* numeric address, or the unix path */
	uint16_t port;
	size_t buflen;
	const char *want;
};

/* clang-format off */
static const struct format_case format_cases[] = {
	{"ipv4",			AF_INET, "127.0.0.1", 7127, NET_NAMELEN, "127.0.0.1:7127"},
	{"ipv4 any, port 0",		AF_INET, "0.0.0.0", 0, NET_NAMELEN, "0.0.0.0:0"},
	{"ipv6 in brackets",		AF_INET6, "::1", 80, NET_NAMELEN, "[::1]:80"},
	{"ipv6 any",			AF_INET6, "::", 7127, NET_NAMELEN, "[::]:7127"},
	{"ipv4-mapped ipv6",		AF_INET6, "::ffff:10.0.0.1", 1, NET_NAMELEN,
					"[::ffff:10.0.0.1]:1"},
	{"unix path",			AF_UNIX, "/run/echod.sock", 0, NET_NAMELEN, "/run/echod.sock"},
	{"truncated to the buffer",	AF_INET, "127.0.0.1", 7127, 8, "127.0.0"},
};
/* clang-format on */

static socklen_t make_sockaddr(const struct format_case *fc, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_un *sun = (struct sockaddr_un *)ss;

	memset(ss, 0, sizeof(*ss));
	ss->ss_family = (sa_family_t)fc->family;
	switch (fc->family) {
	case AF_INET:
		sin->sin_port = htons(fc->port);
		assert_int_equal(inet_pton(AF_INET, fc->addr, &sin->sin_addr), 1);
		return sizeof(*sin);
	case AF_INET6:
		sin6->sin6_port = htons(fc->port);
		assert_int_equal(inet_pton(AF_INET6, fc->addr, &sin6->sin6_addr), 1);
		return sizeof(*sin6);
	default:
		strcpy(sun->sun_path, fc->addr);
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(fc->addr) + 1);
	}
}

static void run_format(void **state)
{
	const struct format_case *fc = *state;
	struct sockaddr_storage ss;
	char buf[NET_NAMELEN + 8];
	socklen_t len = make_sockaddr(fc, &ss);

	memset(buf, 'Z', sizeof(buf));
	net_format_sockaddr((struct sockaddr *)&ss, len, buf, fc->buflen);
	assert_string_equal(buf, fc->want);
	assert_int_equal(buf[fc->buflen], 'Z'); /* nothing written past buflen */
}

/* --- Sockets on loopback. --- */

static void parse_ok(const char *s, struct net_addr *a)
{
	char err[NET_ERRLEN];

	if (net_parse_addr(s, DEF, a, err, sizeof(err)) < 0)
		fail_msg("net_parse_addr \"%s\": %s", s, err);
}

/* Listens on s; returns the number of sockets, which go in fds. */
static int listen_ok(const char *s, int *fds, int max)
{
	char err[NET_ERRLEN] = "";
	struct net_addr a;
	int n;

	parse_ok(s, &a);
	n = net_listen(&a, SOCK_STREAM, 16, fds, max, err, sizeof(err));
	if (n <= 0)
		fail_msg("net_listen \"%s\": %d: %s", s, n, err);
	return n;
}

static int connect_ok(const char *s)
{
	char err[NET_ERRLEN] = "";
	struct net_addr a;
	int fd;

	parse_ok(s, &a);
	fd = net_connect(&a, SOCK_STREAM, WAIT_MS, err, sizeof(err));
	if (fd < 0)
		fail_msg("net_connect \"%s\": %d: %s", s, fd, err);
	return fd;
}

static int accept_ok(int lfd)
{
	int fd;

	assert_true(net_wait(lfd, POLLIN, WAIT_MS) & POLLIN);
	fd = net_accept(lfd);
	if (fd < 0)
		fail_msg("net_accept: %s", strerror(-fd));
	return fd;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int family_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ss.ss_family;
}

/* The local address of fd as "HOST:PORT", for connecting to it. */
static const char *local_name(int fd)
{
	static char name[NET_NAMELEN];

	net_format_local(fd, name, sizeof(name));
	return name;
}

static void recv_exactly(int fd, char *buf, size_t n)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = net_recv(fd, buf + got, n - got, WAIT_MS);

		if (r <= 0)
			fail_msg("net_recv: %zd after %zu of %zu bytes", r, got, n);
		got += (size_t)r;
	}
}

static void test_loopback_round_trip(void **state)
{
	char name[NET_NAMELEN], peer[NET_NAMELEN], buf[16];
	int lfd, cfd, sfd;

	(void)state;
	assert_int_equal(listen_ok("127.0.0.1:0", &lfd, 1), 1);
	net_format_local(lfd, name, sizeof(name));
	assert_true(strncmp(name, "127.0.0.1:", 10) == 0);
	assert_int_not_equal(local_port(lfd), 0); /* the real port, not the 0 asked for */
	cfd = connect_ok(name);
	sfd = accept_ok(lfd);
	/* Both ends agree on who is who. */
	net_format_local(cfd, name, sizeof(name));
	net_format_peer(sfd, peer, sizeof(peer));
	assert_string_equal(name, peer);

	assert_int_equal(net_send_all(cfd, "ping", 4, WAIT_MS), 0);
	recv_exactly(sfd, buf, 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(net_send_all(sfd, buf, 4, WAIT_MS), 0);
	recv_exactly(cfd, buf, 4);
	assert_memory_equal(buf, "ping", 4);

	/* Nothing more was sent: a short wait times out, then the close is EOF. */
	assert_int_equal(net_recv(cfd, buf, sizeof(buf), 50), -ETIMEDOUT);
	close(sfd);
	assert_int_equal(net_recv(cfd, buf, sizeof(buf), WAIT_MS), 0);
	close(cfd);
	close(lfd);
}

struct reader {
	int fd;
	size_t want;
	size_t got;
	bool in_order;
};

static void *read_all(void *arg)
{
	struct reader *r = arg;
	char buf[65536];
	ssize_t n;

	r->in_order = true;
	while (r->got < r->want && (n = net_recv(r->fd, buf, sizeof(buf), WAIT_MS)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != (char)((r->got + (size_t)i) % 251))
				r->in_order = false;
		r->got += (size_t)n;
	}
	return NULL;
}

/* More than the socket buffers hold: net_send_all must finish partial sends. */
static void test_send_all_large(void **state)
{
	const size_t len = 8u << 20;
	char *data = test_malloc(len);
	struct reader r = {.want = len};
	pthread_t t;
	int lfd, cfd;

	(void)state;
	for (size_t i = 0; i < len; i++)
		data[i] = (char)(i % 251);
	listen_ok("127.0.0.1:0", &lfd, 1);
	cfd = connect_ok(local_name(lfd));
	r.fd = accept_ok(lfd);
	assert_int_equal(pthread_create(&t, NULL, read_all, &r), 0);
	assert_int_equal(net_send_all(cfd, data, len, WAIT_MS), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.got, len);
	assert_true(r.in_order);
	close(r.fd);
	close(cfd);
	close(lfd);
	test_free(data);
}

/* A peer that never reads: the send gives up after its timeout, not never. */
static void test_send_all_times_out(void **state)
{
	const size_t len = 64u << 20;
	char *data = test_calloc(1, len);
	int lfd, cfd, sfd;

	(void)state;
	listen_ok("127.0.0.1:0", &lfd, 1);
	cfd = connect_ok(local_name(lfd));
	sfd = accept_ok(lfd);
	assert_int_equal(net_send_all(cfd, data, len, 200), -ETIMEDOUT);
	close(sfd);
	close(cfd);
	close(lfd);
	test_free(data);
}

static void test_connect_refused(void **state)
{
	char err[NET_ERRLEN] = "", want[NET_ERRLEN], name[NET_NAMELEN];
	struct net_addr a;
	int lfd;

	(void)state;
	/* A port that was free a moment ago and has no listener now. */
	listen_ok("127.0.0.1:0", &lfd, 1);
	snprintf(name, sizeof(name), "%s", local_name(lfd));
	close(lfd);
	parse_ok(name, &a);
	assert_int_equal(net_connect(&a, SOCK_STREAM, WAIT_MS, err, sizeof(err)), -ECONNREFUSED);
	snprintf(want, sizeof(want), "connect %s: %s", name, strerror(ECONNREFUSED));
	assert_string_equal(err, want);
}

/* The contract's start failure: one line with the address and the reason. */
static void test_listen_address_in_use(void **state)
{
	char err[NET_ERRLEN] = "", want[NET_ERRLEN], name[NET_NAMELEN];
	struct net_addr a;
	int lfd, fd;

	(void)state;
	listen_ok("127.0.0.1:0", &lfd, 1);
	snprintf(name, sizeof(name), "%s", local_name(lfd));
	parse_ok(name, &a);
	assert_int_equal(net_listen(&a, SOCK_STREAM, 16, &fd, 1, err, sizeof(err)), -EADDRINUSE);
	snprintf(want, sizeof(want), "bind %s: %s", name, strerror(EADDRINUSE));
	assert_string_equal(err, want);
	close(lfd);
}

static bool ipv6_loopback_works(void)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) == 0;
	close(fd);
	return ok;
}

/* Connects to HOST:port and checks that lfd is the socket that accepts it. */
static void check_accepts(int lfd, const char *host, uint16_t port)
{
	char name[NET_NAMELEN];
	int cfd, sfd;

	snprintf(name, sizeof(name), "%s:%u", host, port);
	cfd = connect_ok(name);
	sfd = accept_ok(lfd);
	close(sfd);
	close(cfd);
}

static void check_accepts_unix(int lfd, const char *name)
{
	int cfd = connect_ok(name), sfd = accept_ok(lfd);

	close(sfd);
	close(cfd);
}

/* The default listener: 0.0.0.0 and [::] (v6-only) on one port, even port 0. */
static void test_listen_wildcard_port0(void **state)
{
	int fds[4], n, v6only = 0;
	socklen_t len = sizeof(v6only);
	uint16_t port;

	(void)state;
	n = listen_ok("0", fds, 4);
	assert_int_equal(family_of(fds[0]), AF_INET);
	port = local_port(fds[0]);
	assert_int_not_equal(port, 0);
	check_accepts(fds[0], "127.0.0.1", port);
	if (n == 1) {
		close(fds[0]);
		assert_false(ipv6_loopback_works()); /* IPv4 alone only without IPv6 */
		skip();
	}
	assert_int_equal(n, 2);
	assert_int_equal(family_of(fds[1]), AF_INET6);
	assert_int_equal(local_port(fds[1]), port);
	assert_int_equal(getsockopt(fds[1], IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len), 0);
	assert_int_equal(v6only, 1);
	check_accepts(fds[1], "[::1]", port);
	close(fds[0]);
	close(fds[1]);
}

/* A name with several addresses and port 0: one port for all, as printed. */
static void test_listen_name_port0_shares_port(void **state)
{
	int fds[4], n;

	(void)state;
	n = listen_ok("localhost:0", fds, 4);
	for (int i = 0; i < n; i++) {
		assert_int_equal(local_port(fds[i]), local_port(fds[0]));
		assert_int_not_equal(local_port(fds[i]), 0);
	}
	while (n > 0)
		close(fds[--n]);
}

/* --- Unix sockets, in a private directory. --- */

static char tmpdir[64];

static int make_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/echod-test-net-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
	(void)state;
	return rmdir(tmpdir);
}

static void unix_name(char *buf, size_t len, const char *file)
{
	snprintf(buf, len, "unix:%s/%s", tmpdir, file);
}

/* Binds a unix socket at path and closes it: the file stays, nobody listens. */
static void leave_stale_socket(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_true(strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
}

static void test_unix_stale_socket_replaced(void **state)
{
	char name[NET_NAMELEN];
	struct stat st;
	int lfd, cfd, sfd;

	(void)state;
	unix_name(name, sizeof(name), "stale.sock");
	leave_stale_socket(name + 5);
	assert_int_equal(stat(name + 5, &st), 0);
	assert_int_equal(listen_ok(name, &lfd, 1), 1);
	cfd = connect_ok(name);
	sfd = accept_ok(lfd);
	assert_string_equal(local_name(lfd), name + 5);
	assert_int_equal(net_send_all(cfd, "x", 1, WAIT_MS), 0);
	close(sfd);
	close(cfd);
	close(lfd);
	assert_int_equal(unlink(name + 5), 0);
}

/* A live listener is never taken over: the second one fails, the first serves on. */
static void test_unix_live_socket_kept(void **state)
{
	char name[NET_NAMELEN], err[NET_ERRLEN] = "", want[NET_ERRLEN];
	struct net_addr a;
	int lfd, fd;

	(void)state;
	unix_name(name, sizeof(name), "live.sock");
	listen_ok(name, &lfd, 1);
	parse_ok(name, &a);
	assert_int_equal(net_listen(&a, SOCK_STREAM, 16, &fd, 1, err, sizeof(err)), -EADDRINUSE);
	snprintf(want, sizeof(want), "bind %s: %s", name + 5, strerror(EADDRINUSE));
	assert_string_equal(err, want);
	check_accepts_unix(lfd, name);
	close(lfd);
	assert_int_equal(unlink(name + 5), 0);
}

/* A file that is not a socket is the user's mistake, never something to delete. */
static void test_unix_regular_file_kept(void **state)
{
	char name[NET_NAMELEN], err[NET_ERRLEN] = "";
	struct net_addr a;
	struct stat st;
	FILE *f;
	int fd;

	(void)state;
	unix_name(name, sizeof(name), "precious.txt");
	f = fopen(name + 5, "w");
	assert_non_null(f);
	fputs("keep me\n", f);
	fclose(f);
	parse_ok(name, &a);
	assert_int_equal(net_listen(&a, SOCK_STREAM, 16, &fd, 1, err, sizeof(err)), -EADDRINUSE);
	assert_int_equal(stat(name + 5, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 8);
	assert_int_equal(unlink(name + 5), 0);
}

/* One verdict per accept(2) error, the same in every engine. */
static void test_accept_error_next(void **state)
{
	static const struct {
		int err;
		enum net_accept_next next;
	} cases[] = {
		{-EAGAIN, NET_ACCEPT_EMPTY},	 {-EWOULDBLOCK, NET_ACCEPT_EMPTY},
		{-EINTR, NET_ACCEPT_NEXT},	 {-ECONNABORTED, NET_ACCEPT_NEXT},
		{-EPROTO, NET_ACCEPT_NEXT},	 {-EPERM, NET_ACCEPT_NEXT},
		{-ENETUNREACH, NET_ACCEPT_NEXT}, {-EHOSTUNREACH, NET_ACCEPT_NEXT},
		{-EMFILE, NET_ACCEPT_PAUSE},	 {-ENFILE, NET_ACCEPT_PAUSE},
		{-ENOBUFS, NET_ACCEPT_PAUSE},	 {-ENOMEM, NET_ACCEPT_PAUSE},
		{-EBADF, NET_ACCEPT_PAUSE},	 {-EINVAL, NET_ACCEPT_PAUSE},
		{-ENOTSOCK, NET_ACCEPT_PAUSE},
	};

	(void)state;
	for (size_t i = 0; i < ROWS(cases); i++) {
		if (net_accept_error_next(cases[i].err) != cases[i].next)
			fail_msg("accept error %s: verdict %d, want %d", strerror(-cases[i].err),
				 net_accept_error_next(cases[i].err), cases[i].next);
	}
}

static struct CMUnitTest parse_tests[ROWS(parse_cases)];
static char parse_names[ROWS(parse_cases)][64];
static struct CMUnitTest format_tests[ROWS(format_cases)];

static const struct CMUnitTest socket_tests[] = {
	cmocka_unit_test(test_accept_error_next),
	cmocka_unit_test(test_loopback_round_trip),
	cmocka_unit_test(test_send_all_large),
	cmocka_unit_test(test_send_all_times_out),
	cmocka_unit_test(test_connect_refused),
	cmocka_unit_test(test_listen_address_in_use),
	cmocka_unit_test(test_listen_wildcard_port0),
	cmocka_unit_test(test_listen_name_port0_shares_port),
	cmocka_unit_test(test_unix_stale_socket_replaced),
	cmocka_unit_test(test_unix_live_socket_kept),
	cmocka_unit_test(test_unix_regular_file_kept),
};

static void fill_long_inputs(void)
{
	memcpy(unix_longest, "unix:", 5);
	memset(unix_longest + 5, 'a', SUN_PATH_MAX);
	memcpy(unix_too_long, "unix:", 5);
	memset(unix_too_long + 5, 'a', SUN_PATH_MAX + 1);
	memset(host_too_long, 'h', sizeof(host_too_long) - 1);
}

int main(void)
{
	int failed = 0;

	fill_long_inputs();
	for (size_t i = 0; i < ROWS(parse_cases); i++) {
		snprintf(parse_names[i], sizeof(parse_names[i]), "parse \"%.40s%s\"",
			 parse_cases[i].in, strlen(parse_cases[i].in) > 40 ? "..." : "");
		parse_tests[i] = (struct CMUnitTest){parse_names[i], run_parse, NULL, NULL,
						     (void *)&parse_cases[i]};
	}
	for (size_t i = 0; i < ROWS(format_cases); i++)
		format_tests[i] = (struct CMUnitTest){format_cases[i].name, run_format, NULL, NULL,
						      (void *)&format_cases[i]};
	failed += cmocka_run_group_tests_name("net_parse_addr", parse_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("net_format_sockaddr", format_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("net sockets", socket_tests, make_tmpdir,
					      remove_tmpdir);
	return failed ? 1 : 0;
}
