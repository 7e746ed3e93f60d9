/*
 * test_config.c - command-line parsing and validation for echod and echoc.
 *
 * Each case is an argv vector and what the user must get: OK with some
 * settings, --help, --version, or a usage error whose one line names the
 * option and the value.  Settings are written "key=value ..." and compared
 * with what the parser filled in, so a case says only what it is about.
 */
#include "config.h"
#include "echoc_config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define ROWS(tab) (sizeof(tab) / sizeof((tab)[0]))
#define STR(x)	  STR2(x)
#define STR2(x)	  #x
#define MAX_ARGS  40

struct parse_case {
	const char *argv[MAX_ARGS]; /* NULL-terminated, argv[0] included */
	enum opts_result want;
	const char *expect; /* OPTS_OK: "key=value ..."; OPTS_ERROR: the whole message */
};

#define L16 "-l", "1", "-l", "2", "-l", "3", "-l", "4", "-l", "5", "-l", "6", "-l", "7", "-l", "8"
#define L16B                                                                                       \
	"-l", "9", "-l", "10", "-l", "11", "-l", "12", "-l", "13", "-l", "14", "-l", "15", "-l",   \
		"16"

/* clang-format off */
static const struct parse_case echod_cases[] = {
	{{"echod"}, OPTS_OK,
	 "model=auto workers=0 buffer=16384 backlog=" STR(SOMAXCONN) " grace=5000 idle=0 "
	 "max-conns=0 once=0 listen= verbose=0 quiet=0 log-format=text user="},
	{{"echod", "--once"}, OPTS_OK, "once=1 buffer=1024"},
	{{"echod", "--once", "--buffer", "4096"}, OPTS_OK, "once=1 buffer=4096"},
	{{"echod", "--buffer", "1"}, OPTS_OK, "buffer=1"},
	{{"echod", "--buffer", "0"}, OPTS_ERROR, "--buffer 0: must be 1 to 16777216"},
	{{"echod", "--grace", "0.5"}, OPTS_OK, "grace=500"},
	{{"echod", "--proxy-protocol"}, OPTS_OK, "proxy-timeout=5000"},
	{{"echod", "--proxy-protocol", "--proxy-timeout", "0.25"}, OPTS_OK, "proxy-timeout=250"},
	{{"echod", "--proxy-protocol", "--proxy-timeout", "0"}, OPTS_ERROR, "--proxy-timeout 0: must be more than 0 seconds"},
	{{"echod", "--proxy-protocol", "--proxy-timeout", "3601"}, OPTS_ERROR, "--proxy-timeout 3601: must be 0 to 3600 seconds"},
	{{"echod", "--proxy-timeout", "3"}, OPTS_ERROR, "--proxy-timeout applies only with --proxy-protocol"},
	{{"echod", "--grace", "0"}, OPTS_OK, "grace=0"},
	{{"echod", "--grace", "3600"}, OPTS_OK, "grace=3600000"},
	{{"echod", "--grace", "-1"}, OPTS_ERROR, "--grace -1: must be 0 to 3600 seconds"},
	{{"echod", "--grace", "3601"}, OPTS_ERROR, "--grace 3601: must be 0 to 3600 seconds"},
	{{"echod", "--grace", "soon"}, OPTS_ERROR, "--grace soon: not a number of seconds"},
	{{"echod", "--grace", "nan"}, OPTS_ERROR, "--grace nan: not a number of seconds"},
	{{"echod", "--grace", "1s"}, OPTS_ERROR, "--grace 1s: not a number of seconds"},
	{{"echod", "--idle-timeout", "1.25"}, OPTS_OK, "idle=1250"},
	{{"echod", "--idle-timeout", "0"}, OPTS_OK, "idle=0"},
	{{"echod", "--max-conns", "10"}, OPTS_OK, "max-conns=10"},
	{{"echod", "--max-conns", "-1"}, OPTS_ERROR, "--max-conns -1: must be 0 to 10000000"},
	{{"echod", "--backlog", "128"}, OPTS_OK, "backlog=128"},
	{{"echod", "--backlog", "0"}, OPTS_ERROR, "--backlog 0: must be 1 to 65535"},
	{{"echod", "-l", "127.0.0.1:0"}, OPTS_OK, "listen=127.0.0.1:0"},
	{{"echod", "--listen", "7000"}, OPTS_OK, "listen=:7000"},
	{{"echod", "--listen=[::1]:80"}, OPTS_OK, "listen=[::1]:80"},
	{{"echod", "-l", "127.0.0.1:1", "-l", "[::1]:2", "-l", "unix:/tmp/e.sock"}, OPTS_OK,
	 "listen=127.0.0.1:1,[::1]:2,unix:/tmp/e.sock"},
	{{"echod", "-l", "localhost"}, OPTS_OK, "listen=localhost:7127"},
	{{"echod", L16, L16B}, OPTS_OK, "listen=:1,:2,:3,:4,:5,:6,:7,:8,:9,:10,:11,:12,:13,:14,:15,:16"},
	{{"echod", L16, L16B, "-l", "17"}, OPTS_ERROR, "--listen 17: at most 16 addresses"},
	{{"echod", "-l", "[::1"}, OPTS_ERROR, "--listen [::1: malformed address \"[::1\""},
	{{"echod", "-l", "1.2.3.4:99999"}, OPTS_ERROR,
	 "--listen 1.2.3.4:99999: invalid port \"99999\" (0 to 65535)"},
	{{"echod", "-l", "unix:"}, OPTS_ERROR, "--listen unix:: unix socket path must be 1 to 107 bytes"},
	{{"echod", "-l"}, OPTS_ERROR, "option --listen needs a value"},
	{{"echod", "--listen"}, OPTS_ERROR, "option --listen needs a value"},
	{{"echod", "--workers"}, OPTS_ERROR, "option --workers needs a value"},
	{{"echod", "--workers", "4"}, OPTS_OK, "workers=4 model=auto"},
	{{"echod", "-w", "1024", "-m", "epoll"}, OPTS_OK, "workers=1024 model=epoll"},
	{{"echod", "-w", "2", "-m", "uring"}, OPTS_OK, "workers=2 model=uring"},
	{{"echod", "--workers", "0"}, OPTS_ERROR, "--workers 0: must be 1 to 1024"},
	{{"echod", "--workers", "1025"}, OPTS_ERROR, "--workers 1025: must be 1 to 1024"},
	{{"echod", "--workers", "two"}, OPTS_ERROR, "--workers two: not a whole number"},
	{{"echod", "--workers", "2.5"}, OPTS_ERROR, "--workers 2.5: not a whole number"},
	{{"echod", "--workers", "99999999999999999999"}, OPTS_ERROR,
	 "--workers 99999999999999999999: not a whole number"},
	{{"echod", "--workers", "2", "--model", "threads"}, OPTS_ERROR,
	 "--workers applies to the epoll and uring models, not threads"},
	{{"echod", "-m", "iterative", "-w", "2"}, OPTS_ERROR,
	 "--workers applies to the epoll and uring models, not iterative"},
	{{"echod", "--model", "threads"}, OPTS_OK, "model=threads workers=0"},
	{{"echod"}, OPTS_OK, "busy-poll=0"},
	{{"echod", "--busy-poll"}, OPTS_OK, "busy-poll=1 model=auto"},
	{{"echod", "--busy-poll", "-m", "epoll", "-w", "3"}, OPTS_OK, "busy-poll=1 model=epoll workers=3"},
	{{"echod", "-m", "uring", "--busy-poll"}, OPTS_OK, "busy-poll=1 model=uring"},
	{{"echod", "--busy-poll", "-m", "threads"}, OPTS_ERROR,
	 "--busy-poll applies to the epoll and uring models, not threads"},
	{{"echod", "-m", "iterative", "--busy-poll"}, OPTS_ERROR,
	 "--busy-poll applies to the epoll and uring models, not iterative"},
	{{"echod", "-m", "iterative", "--once"}, OPTS_OK, "model=iterative once=1 buffer=1024"},
	{{"echod", "--model", "foo"}, OPTS_ERROR,
	 "--model foo: must be one of auto|epoll|uring|threads|iterative"},
	{{"echod", "--model", "epol"}, OPTS_ERROR,
	 "--model epol: must be one of auto|epoll|uring|threads|iterative"},
	{{"echod", "--model", ""}, OPTS_ERROR,
	 "--model : must be one of auto|epoll|uring|threads|iterative"},
	{{"echod", "--log-format", "json"}, OPTS_OK, "log-format=json"},
	{{"echod", "--log-format", "xml"}, OPTS_ERROR, "--log-format xml: must be one of text|json"},
	/* The choices list is not itself a choice, nor is any run of it. */
	{{"echod", "-m", "auto|epoll"}, OPTS_ERROR,
	 "--model auto|epoll: must be one of auto|epoll|uring|threads|iterative"},
	{{"echod", "--log-format", "text|json"}, OPTS_ERROR,
	 "--log-format text|json: must be one of text|json"},
	{{"echod", "--log-format", "json|"}, OPTS_ERROR, "--log-format json|: must be one of text|json"},
	{{"echod", "-l", "::1]"}, OPTS_ERROR, "--listen ::1]: malformed address \"::1]\""},
	{{"echod", "-l", "::1]:7"}, OPTS_ERROR, "--listen ::1]:7: malformed address \"::1]:7\""},
	{{"echod", "-l", "[::1]]:7"}, OPTS_ERROR, "--listen [::1]]:7: malformed address \"[::1]]:7\""},
	{{"echod", "-l", "host[:7"}, OPTS_ERROR, "--listen host[:7: malformed address \"host[:7\""},
	{{"echod", "--idle-timeout", "0.0004"}, OPTS_OK, "idle=1"},
	{{"echod", "-v", "-v"}, OPTS_OK, "verbose=2 quiet=0"},
	{{"echod", "-vv"}, OPTS_OK, "verbose=2"},
	{{"echod", "-q"}, OPTS_OK, "quiet=1 verbose=0"},
	{{"echod", "-v", "-q"}, OPTS_ERROR, "cannot use --verbose with --quiet"},
	{{"echod", "--user", "nobody"}, OPTS_OK, "user=nobody"},
	{{"echod", "--bogus"}, OPTS_ERROR, "unknown option --bogus"},
	{{"echod", "--bogus=1"}, OPTS_ERROR, "unknown option --bogus=1"},
	{{"echod", "-x"}, OPTS_ERROR, "unknown option -x"},
	{{"echod", "-qx"}, OPTS_ERROR, "unknown option -x"},
	{{"echod", "--once=yes"}, OPTS_ERROR, "option --once takes no value"},
	{{"echod", "stray"}, OPTS_ERROR, "unexpected argument \"stray\" (addresses go after -l)"},
	{{"echod", "-h"}, OPTS_HELP, NULL},
	{{"echod", "--help"}, OPTS_HELP, NULL},
	{{"echod", "-V"}, OPTS_VERSION, NULL},
	{{"echod", "--version"}, OPTS_VERSION, NULL},
};

static const struct parse_case echoc_cases[] = {
	{{"echoc"}, OPTS_OK, "target=localhost:7127 timeout=5000 once=0 no-newline=0 first-word=1"},
	{{"echoc", "127.0.0.1:9", "hello", "world"}, OPTS_OK,
	 "target=127.0.0.1:9 first-word=2"},
	{{"echoc", ":9", "hi"}, OPTS_OK, "target=localhost:9 first-word=2"},
	{{"echoc", "[::1]"}, OPTS_OK, "target=[::1]:7127 first-word=2"},
	{{"echoc", "unix:/tmp/e.sock", "hi"}, OPTS_OK, "target=unix:/tmp/e.sock first-word=2"},
	{{"echoc", "-n", "localhost", "-x", "--bogus"}, OPTS_OK,
	 "no-newline=1 target=localhost:7127 first-word=3"},
	{{"echoc", "--once", "-t", "0.25", "localhost:7"}, OPTS_OK,
	 "once=1 timeout=250 target=localhost:7 first-word=5"},
	{{"echoc", "--timeout", "0"}, OPTS_ERROR, "--timeout must be more than 0 seconds"},
	/* Less than the 1 ms resolution is rounded up to it, not down to 0. */
	{{"echoc", "-t", "0.0004", "localhost:7"}, OPTS_OK, "timeout=1"},
	{{"echoc", "--timeout", "never"}, OPTS_ERROR, "--timeout never: not a number of seconds"},
	{{"echoc", "-t"}, OPTS_ERROR, "option --timeout needs a value"},
	{{"echoc", "[::1", "hi"}, OPTS_ERROR, "[::1: malformed address \"[::1\""},
	{{"echoc", "host:abc"}, OPTS_ERROR, "host:abc: invalid port \"abc\" (0 to 65535)"},
	{{"echoc", "--bogus"}, OPTS_ERROR, "unknown option --bogus"},
	{{"echoc", "-h"}, OPTS_HELP, NULL},
	{{"echoc", "--version"}, OPTS_VERSION, NULL},
};
/* clang-format on */

static void format_addr(const struct net_addr *a, char *buf, size_t len)
{
	if (a->is_unix)
		snprintf(buf, len, "unix:%s", a->path);
	else
		snprintf(buf, len, strchr(a->host, ':') ? "[%s]:%u" : "%s:%u", a->host, a->port);
}

/* The value of key in cfg, as text. */
static void echod_value(const struct config *cfg, const char *key, char *buf, size_t len)
{
	if (!strcmp(key, "model"))
		snprintf(buf, len, "%s", cfg->model);
	else if (!strcmp(key, "workers"))
		snprintf(buf, len, "%ld", cfg->workers);
	else if (!strcmp(key, "buffer"))
		snprintf(buf, len, "%ld", cfg->buffer_bytes);
	else if (!strcmp(key, "backlog"))
		snprintf(buf, len, "%ld", cfg->backlog);
	else if (!strcmp(key, "grace"))
		snprintf(buf, len, "%ld", cfg->grace_ms);
	else if (!strcmp(key, "proxy-timeout"))
		snprintf(buf, len, "%ld", cfg->proxy_timeout_ms);
	else if (!strcmp(key, "idle"))
		snprintf(buf, len, "%ld", cfg->idle_timeout_ms);
	else if (!strcmp(key, "max-conns"))
		snprintf(buf, len, "%ld", cfg->max_conns);
	else if (!strcmp(key, "once"))
		snprintf(buf, len, "%d", cfg->once);
	else if (!strcmp(key, "busy-poll"))
		snprintf(buf, len, "%d", cfg->busy_poll);
	else if (!strcmp(key, "verbose"))
		snprintf(buf, len, "%ld", cfg->verbose);
	else if (!strcmp(key, "quiet"))
		snprintf(buf, len, "%d", cfg->quiet);
	else if (!strcmp(key, "log-format"))
		snprintf(buf, len, "%s", cfg->log_format);
	else if (!strcmp(key, "user"))
		snprintf(buf, len, "%s", cfg->user ? cfg->user : "");
	else if (!strcmp(key, "listen"))
		for (int i = 0, n = 0; i < cfg->listen.n; i++) {
			n += snprintf(buf + n, len - (size_t)n, i ? "," : "");
			format_addr(&cfg->listen.addr[i], buf + n, len - (size_t)n);
			n += (int)strlen(buf + n);
		}
	else
		fail_msg("no such key \"%s\" in the test table", key);
}

static void echoc_value(const struct client_config *cfg, const char *key, char *buf, size_t len)
{
	if (!strcmp(key, "target"))
		format_addr(&cfg->target, buf, len);
	else if (!strcmp(key, "timeout"))
		snprintf(buf, len, "%ld", cfg->timeout_ms);
	else if (!strcmp(key, "once"))
		snprintf(buf, len, "%d", cfg->once);
	else if (!strcmp(key, "no-newline"))
		snprintf(buf, len, "%d", cfg->no_newline);
	else if (!strcmp(key, "first-word"))
		snprintf(buf, len, "%d", cfg->first_word);
	else
		fail_msg("no such key \"%s\" in the test table", key);
}

typedef void value_fn(const void *cfg, const char *key, char *buf, size_t len);

/* Compares every "key=value" of expect with what value() reads from cfg. */
static void check_values(const void *cfg, value_fn *value, const char *expect)
{
	char spec[512], got[512];
	char *save, *kv;

	snprintf(spec, sizeof(spec), "%s", expect);
	for (kv = strtok_r(spec, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(kv, '=');

		assert_non_null(eq);
		*eq = '\0';
		got[0] = '\0';
		value(cfg, kv, got, sizeof(got));
		if (strcmp(got, eq + 1))
			fail_msg("%s is \"%s\", want \"%s\"", kv, got, eq + 1);
	}
}

static void echod_value_fn(const void *cfg, const char *key, char *buf, size_t len)
{
	echod_value(cfg, key, buf, len);
}

static void echoc_value_fn(const void *cfg, const char *key, char *buf, size_t len)
{
	echoc_value(cfg, key, buf, len);
}

/* getopt permutes argv, so each run gets its own copy of the case's vector. */
static int copy_argv(const struct parse_case *pc, char **argv)
{
	int argc = 0;

	while (pc->argv[argc]) {
		argv[argc] = (char *)pc->argv[argc];
		argc++;
	}
	argv[argc] = NULL;
	return argc;
}

static void check_result(const struct parse_case *pc, enum opts_result res, const char *err)
{
	static const char *const names[] = {"OPTS_OK", "OPTS_HELP", "OPTS_VERSION"};

	if (res != pc->want)
		fail_msg("result %s (%s), want %s", res == OPTS_ERROR ? "OPTS_ERROR" : names[res],
			 err, pc->want == OPTS_ERROR ? "OPTS_ERROR" : names[pc->want]);
	if (res == OPTS_ERROR)
		assert_string_equal(err, pc->expect);
}

static void run_echod(void **state)
{
	const struct parse_case *pc = *state;
	char *argv[MAX_ARGS], err[CONFIG_ERRLEN] = "";
	int argc = copy_argv(pc, argv);
	struct config cfg;
	enum opts_result res;

	res = config_parse(&cfg, argc, argv, err, sizeof(err));
	check_result(pc, res, err);
	if (res == OPTS_OK)
		check_values(&cfg, echod_value_fn, pc->expect);
}

static void run_echoc(void **state)
{
	const struct parse_case *pc = *state;
	char *argv[MAX_ARGS], err[CONFIG_ERRLEN] = "";
	int argc = copy_argv(pc, argv);
	struct client_config cfg;
	enum opts_result res;

	res = client_config_parse(&cfg, argc, argv, err, sizeof(err));
	check_result(pc, res, err);
	if (res == OPTS_OK)
		check_values(&cfg, echoc_value_fn, pc->expect);
}

/* Every option of the table is in --help, so the usage text cannot drift. */
static void test_usage_lists_every_option(void **state)
{
	static const char *const echod_opts[] = {
		"-l, --listen ADDR",   "--once",      "-m, --model MODEL", "-w, --workers N",
		"--buffer BYTES",      "--backlog N", "--max-conns N",	   "--idle-timeout S",
		"--grace S",	       "--user NAME", "-v, --verbose",	   "-q, --quiet",
		"--log-format FORMAT", "-h, --help",  "-V, --version",
	};
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	(void)state;
	assert_non_null(f);
	config_usage(f);
	fclose(f);
	assert_non_null(strstr(text, "usage: echod"));
	for (size_t i = 0; i < ROWS(echod_opts); i++)
		if (!strstr(text, echod_opts[i]))
			fail_msg("--help does not list \"%s\"", echod_opts[i]);
	free(text);
}

static char names[ROWS(echod_cases) + ROWS(echoc_cases)][96];
static struct CMUnitTest echod_tests[ROWS(echod_cases)];
static struct CMUnitTest echoc_tests[ROWS(echoc_cases)];

/* Names a case after its command line, e.g. "echod --workers 0". */
static const char *case_name(const struct parse_case *pc, char *buf, size_t len)
{
	size_t n = 0;

	for (int i = 0; pc->argv[i] && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? " " : "", pc->argv[i]);
	if (n >= len)
		strcpy(buf + len - 4, "...");
	return buf;
}

static void build(struct CMUnitTest *tests, const struct parse_case *cases, size_t n,
		  CMUnitTestFunction fn, char (*name)[96])
{
	for (size_t i = 0; i < n; i++)
		tests[i] = (struct CMUnitTest){case_name(&cases[i], name[i], sizeof(name[i])), fn,
					       NULL, NULL, (void *)&cases[i]};
}

static const struct CMUnitTest usage_tests[] = {
	cmocka_unit_test(test_usage_lists_every_option),
};

int main(void)
{
	int failed = 0;

	build(echod_tests, echod_cases, ROWS(echod_cases), run_echod, names);
	build(echoc_tests, echoc_cases, ROWS(echoc_cases), run_echoc, names + ROWS(echod_cases));
	failed += cmocka_run_group_tests_name("config_parse (echod)", echod_tests, NULL, NULL);
	failed +=
		cmocka_run_group_tests_name("client_config_parse (echoc)", echoc_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("usage", usage_tests, NULL, NULL);
	return failed ? 1 : 0;
}
