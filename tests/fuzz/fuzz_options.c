/*
 * fuzz_options.c - the three command-line parsers on arbitrary argv.
 *
 * The input's first byte picks the parser: echod's config_parse, echoc's
 * client_config_parse or echoc bench's bench_parse_args; the rest, split at NUL
 * bytes, is argv after argv[0].  A parser must never crash, and what it
 * accepts must satisfy what the programs rely on afterwards: every value in
 * its documented range, the clashes bench_validate() refuses absent, a target to
 * connect to.  Parsing the same argv twice must give the same result (the
 * parsers share getopt's global cursor, which each call must reset).
 *
 * echoc bench resolves its target with getaddrinfo; here every call is made
 * numeric-only (AI_NUMERICHOST), so no input can cause a name lookup: a host
 * name is refused as unresolvable instead, which is the same error path.
 */
#include <netdb.h>

static int numeric_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
			       struct addrinfo **res)
{
	struct addrinfo h = *hints;

	h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
	return getaddrinfo(node, service, &h, res);
}

/* bench.c's parser is static: take the whole file; the rest of echoc bench is linked. */
#define getaddrinfo numeric_getaddrinfo
#include "../../src/echoc/bench.c"
#undef getaddrinfo

#include "config.h"
#include "echoc_config.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_WORDS 48

#include "fuzz_check.h"

enum program { ECHOD, ECHOC, BENCH, PROGRAMS };

static const char *const program_names[PROGRAMS] = {"echod", "echoc", "bench"};

struct words {
	char *text; /* the input, NUL-terminated, split in place */
	char *word[MAX_WORDS + 1];
	int n;
};

/* Splits the input at NUL bytes into words (empty words included). */
static void split_words(struct words *w, const uint8_t *data, size_t size)
{
	char *p, *end;

	w->text = malloc(size + 1);
	memcpy(w->text, data, size);
	w->text[size] = '\0';
	w->n = 0;
	for (p = w->text, end = w->text + size; p <= end && w->n < MAX_WORDS; p += strlen(p) + 1)
		w->word[w->n++] = p;
	if (size == 0)
		w->n = 0; /* no input: no arguments at all */
}

/* argv as main() would see it; getopt permutes it, so each parse gets its own copy. */
static int make_argv(const struct words *w, enum program prog, char **argv)
{
	argv[0] = (char *)program_names[prog];
	for (int i = 0; i < w->n; i++)
		argv[i + 1] = w->word[i];
	argv[w->n + 1] = NULL;
	return w->n + 1;
}

static bool is_choice(const char *s, const char *const *choices, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, choices[i]))
			return true;
	return false;
}

static void check_addr(const struct net_addr *a)
{
	CHECK(memchr(a->host, '\0', sizeof(a->host)));
	CHECK(memchr(a->path, '\0', sizeof(a->path)));
	if (a->is_unix)
		CHECK(a->path[0] && !a->host[0]);
	else
		CHECK(!a->path[0]);
}

static void check_echod(const struct config *c)
{
	static const char *const models[] = {"auto", "epoll", "uring", "threads", "iterative"};
	static const char *const formats[] = {"text", "json"};
	bool some_ip = false;

	CHECK(c->listen.n >= 0 && c->listen.n <= CONFIG_MAX_LISTEN);
	for (int i = 0; i < c->listen.n; i++) {
		check_addr(&c->listen.addr[i]);
		some_ip |= !c->listen.addr[i].is_unix;
	}
	CHECK(is_choice(c->model, models, 5));
	CHECK(is_choice(c->log_format, formats, 2));
	CHECK(c->workers >= 0 && c->workers <= 1024);
	CHECK(!c->workers || !strcmp(c->model, "auto") || !strcmp(c->model, "epoll") ||
	      !strcmp(c->model, "uring"));
	CHECK(c->buffer_bytes >= 1 && c->buffer_bytes <= 16 << 20);
	CHECK(c->backlog >= 1 && c->backlog <= 65535);
	CHECK(c->max_conns >= 0 && c->max_conns <= 10000000);
	CHECK(c->idle_timeout_ms >= 0 && c->idle_timeout_ms <= 86400L * 1000);
	CHECK(c->grace_ms >= 0 && c->grace_ms <= 3600L * 1000);
	CHECK(c->verbose >= 0 && !(c->verbose && c->quiet));
	CHECK(c->udp_rate >= 0 && c->udp_rate <= CONFIG_UDP_RATE_MAX);
	if (!c->udp)
		CHECK(c->udp_rate == CONFIG_UDP_RATE && !c->udp_allow_low_ports);
	else
		CHECK(!c->once && (c->listen.n == 0 || some_ip));
}

static void check_echoc(const struct client_config *c, int argc)
{
	check_addr(&c->target);
	CHECK(c->target.is_unix || c->target.host[0]);
	CHECK(c->timeout_ms >= 1 && c->timeout_ms <= 86400L * 1000);
	CHECK(!c->udp || (!c->once && !c->target.is_unix));
	CHECK(c->first_word >= 1 && c->first_word <= argc);
}

static void check_bench(struct bench_cfg *c)
{
	char err[CONFIG_ERRLEN];
	sa_family_t family = c->addr.ss_family;

	CHECK(bench_validate(c, err, sizeof(err)) == 0);
	CHECK(c->mode >= MODE_PINGPONG && c->mode <= MODE_IDLE);
	CHECK(!strcmp(c->mode_name, bench_mode_names[c->mode]));
	CHECK(c->conns >= 1 && c->conns <= 1000000);
	CHECK(c->threads >= 1 && c->threads <= 1024 && c->threads <= c->conns);
	CHECK(c->size >= 1 && c->size <= 64 << 20);
	CHECK(c->depth >= 1 && c->depth <= 65536);
	CHECK(c->duration_ms >= 1 && c->duration_ms <= 86400L * 1000);
	CHECK(c->warmup_ms >= 0 && c->warmup_ms <= 3600L * 1000);
	CHECK(c->timeout_ms >= 1 && c->timeout_ms <= 3600L * 1000);
	CHECK(c->rate >= 0 && c->rate <= 100000000);
	CHECK(c->mode != MODE_IDLE || c->rate > 0);
	CHECK(c->addrlen > 0 && c->addrlen <= sizeof(c->addr));
	CHECK(family == AF_INET || family == AF_INET6 || family == AF_UNIX);
	CHECK(!c->udp || family != AF_UNIX);
	CHECK(memchr(c->target, '\0', sizeof(c->target)) && c->target[0]);
}

/* The result of one parse, whatever the parser. */
struct outcome {
	enum opts_result res;
	char err[CONFIG_ERRLEN];
	union {
		struct config echod;
		struct client_config echoc;
		struct bench_cfg bench;
	} cfg;
	size_t cfg_size;
};

static void parse_once(enum program prog, const struct words *w, struct outcome *o)
{
	char *argv[MAX_WORDS + 2];
	int argc = make_argv(w, prog, argv);

	memset(o, 0, sizeof(*o));
	switch (prog) {
	case ECHOD:
		o->res = config_parse(&o->cfg.echod, argc, argv, o->err, sizeof(o->err));
		o->cfg_size = sizeof(o->cfg.echod);
		if (o->res == OPTS_OK)
			check_echod(&o->cfg.echod);
		break;
	case ECHOC:
		o->res = client_config_parse(&o->cfg.echoc, argc, argv, o->err, sizeof(o->err));
		o->cfg_size = sizeof(o->cfg.echoc);
		if (o->res == OPTS_OK)
			check_echoc(&o->cfg.echoc, argc);
		break;
	default:
		o->res = bench_parse_args(&o->cfg.bench, argc, argv, o->err, sizeof(o->err));
		o->cfg_size = sizeof(o->cfg.bench);
		if (o->res == OPTS_OK)
			check_bench(&o->cfg.bench);
		break;
	}
	CHECK(o->res >= OPTS_ERROR && o->res <= OPTS_VERSION);
	CHECK(memchr(o->err, '\0', sizeof(o->err)));
	/* A usage error always says why: main() prints err as the one line the user sees. */
	CHECK(o->res != OPTS_ERROR || o->err[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct outcome first, second;
	enum program prog;
	struct words w;

	if (size == 0)
		return 0;
	prog = (enum program)(data[0] % PROGRAMS);
	split_words(&w, data + 1, size - 1);
	parse_once(prog, &w, &first);
	parse_once(prog, &w, &second);
	CHECK(first.res == second.res);
	CHECK(!strcmp(first.err, second.err));
	/* Both configurations started from memset(0), so padding compares equal too. */
	if (first.res == OPTS_OK)
		CHECK(!memcmp(&first.cfg, &second.cfg, first.cfg_size));
	free(w.text);
	return 0;
}
