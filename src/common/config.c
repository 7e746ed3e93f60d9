/*
 * config.c - option tables, parsing and validation for both programs.
 *
 * getopt_long(3) does the scanning; everything it needs (the long options
 * and the short option string) is built from the table, and so is --help.
 * Validation happens here, before main() opens any socket, so a bad value
 * costs the user one clear line and exit status 2.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { OPTS_MAX = 64, OPT_LONG_ONLY_BASE = 256 };

#define FIELD(type, member) offsetof(struct type, member)

static void *field(void *dst, const struct opt *o)
{
	return (char *)dst + o->offset;
}

static bool has_arg(const struct opt *o)
{
	return o->argname != NULL;
}

/* The value getopt_long returns for o: its letter, or a code past 255. */
static int opt_val(const struct opt *tab, const struct opt *o)
{
	return o->short_name ? o->short_name : OPT_LONG_ONLY_BASE + (int)(o - tab);
}

static const struct opt *find_by_val(const struct opt *tab, size_t n, int val)
{
	for (size_t i = 0; i < n; i++)
		if (opt_val(tab, &tab[i]) == val)
			return &tab[i];
	return NULL;
}

/* Builds getopt_long's arguments from the table. */
static void build_getopt(const struct opt *tab, size_t n, bool stop_at_operand,
			 struct option *longs, char *shorts)
{
	size_t k = 0;

	if (stop_at_operand)
		shorts[k++] = '+';
	shorts[k++] = ':'; /* report a missing value as ':' */
	for (size_t i = 0; i < n; i++) {
		longs[i] = (struct option){tab[i].name, has_arg(&tab[i]) ? required_argument : 0,
					   NULL, opt_val(tab, &tab[i])};
		if (tab[i].short_name) {
			shorts[k++] = (char)tab[i].short_name;
			if (has_arg(&tab[i]))
				shorts[k++] = ':';
		}
	}
	longs[n] = (struct option){0};
	shorts[k] = '\0';
}

static int parse_num(const struct opt *o, const char *arg, long *out, char *err, size_t errlen)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (end == arg || *end || errno) {
		snprintf(err, errlen, "--%s %s: not a whole number", o->name, arg);
		return -EINVAL;
	}
	if (v < o->min || v > o->max) {
		snprintf(err, errlen, "--%s %s: must be %ld to %ld", o->name, arg, o->min, o->max);
		return -ERANGE;
	}
	*out = v;
	return 0;
}

static int parse_seconds(const struct opt *o, const char *arg, long *ms, char *err, size_t errlen)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (end == arg || *end || errno || !isfinite(v)) {
		snprintf(err, errlen, "--%s %s: not a number of seconds", o->name, arg);
		return -EINVAL;
	}
	if (v < (double)o->min || v > (double)o->max) {
		snprintf(err, errlen, "--%s %s: must be %ld to %ld seconds", o->name, arg, o->min,
			 o->max);
		return -ERANGE;
	}
	*ms = lround(v * 1000.0);
	return 0;
}

static int parse_choice(const struct opt *o, const char *arg, char *err, size_t errlen)
{
	size_t len = strlen(arg);

	for (const char *c = o->choices; len && c; c = strchr(c, '|'), c = c ? c + 1 : c)
		if (!strncmp(c, arg, len) && (c[len] == '|' || c[len] == '\0'))
			return 0;
	snprintf(err, errlen, "--%s %s: must be one of %s", o->name, arg, o->choices);
	return -EINVAL;
}

static int parse_addr(const struct opt *o, const char *arg, struct addr_list *l, char *err,
		      size_t errlen)
{
	char why[NET_ERRLEN];

	if (l->n == CONFIG_MAX_LISTEN) {
		snprintf(err, errlen, "--%s %s: at most %d addresses", o->name, arg,
			 CONFIG_MAX_LISTEN);
		return -E2BIG;
	}
	if (net_parse_addr(arg, NET_DEFAULT_PORT, &l->addr[l->n], why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--%s %s: %s", o->name, arg, why);
		return -EINVAL;
	}
	l->n++;
	return 0;
}

/* Stores one option's value; returns 0 or -errno with the reason in err. */
static int apply(const struct opt *o, const char *arg, void *dst, char *err, size_t errlen)
{
	switch (o->kind) {
	case OPT_FLAG:
		*(bool *)field(dst, o) = true;
		return 0;
	case OPT_COUNT:
		++*(long *)field(dst, o);
		return 0;
	case OPT_NUM:
		return parse_num(o, arg, field(dst, o), err, errlen);
	case OPT_SECONDS:
		return parse_seconds(o, arg, field(dst, o), err, errlen);
	case OPT_CHOICE:
		if (parse_choice(o, arg, err, errlen) < 0)
			return -EINVAL;
		/* fall through */
	case OPT_STR:
		*(const char **)field(dst, o) = arg;
		return 0;
	case OPT_ADDR:
		return parse_addr(o, arg, field(dst, o), err, errlen);
	case OPT_HELP:
	case OPT_VERSION:
		return 0;
	}
	return -EINVAL;
}

/* Describes the option getopt could not use, from optopt or argv. */
static void describe_bad_option(const struct opt *tab, size_t n, char **argv, int val, char *err,
				size_t errlen)
{
	const struct opt *o = find_by_val(tab, n, optopt);

	if (val == ':' && o)
		snprintf(err, errlen, "option --%s needs a value", o->name);
	else if (o) /* --once=yes */
		snprintf(err, errlen, "option --%s takes no value", o->name);
	else if (optopt)
		snprintf(err, errlen, "unknown option -%c", optopt);
	else
		snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
}

enum opts_result opts_parse(const struct opt *tab, size_t n, void *dst, int argc, char **argv,
			    bool stop_at_operand, int *first_operand, char *err, size_t errlen)
{
	struct option longs[OPTS_MAX + 1];
	char shorts[2 * OPTS_MAX + 3];
	enum opts_result res = OPTS_OK;
	const struct opt *o;
	int val;

	if (n > OPTS_MAX)
		return OPTS_ERROR;
	build_getopt(tab, n, stop_at_operand, longs, shorts);
	optind = 0; /* glibc: start over, so tests may parse many times */
	opterr = 0;
	while ((val = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		if (val == '?' || val == ':') {
			describe_bad_option(tab, n, argv, val, err, errlen);
			return OPTS_ERROR;
		}
		o = find_by_val(tab, n, val);
		if (apply(o, optarg, dst, err, errlen) < 0)
			return OPTS_ERROR;
		if (o->kind == OPT_HELP && res == OPTS_OK)
			res = OPTS_HELP;
		if (o->kind == OPT_VERSION && res == OPTS_OK)
			res = OPTS_VERSION;
	}
	*first_operand = optind;
	return res;
}

/* Prints text wrapped to fit after a left column of indent characters. */
static void print_wrapped(FILE *out, const char *text, int indent)
{
	enum { WIDTH = 79 };
	int col = indent;

	while (*text) {
		int word = (int)strcspn(text, " ");

		if (col > indent && col + 1 + word > WIDTH) {
			fprintf(out, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', out);
			col++;
		}
		fprintf(out, "%.*s", word, text);
		col += word;
		text += word;
		text += strspn(text, " ");
	}
	fputc('\n', out);
}

void opts_usage(const struct opt *tab, size_t n, FILE *out)
{
	enum { LEFT = 28 };
	char left[64];

	for (size_t i = 0; i < n; i++) {
		const struct opt *o = &tab[i];
		int len = o->short_name ? snprintf(left, sizeof(left), "-%c, --%s", o->short_name,
						   o->name)
					: snprintf(left, sizeof(left), "    --%s", o->name);

		if (o->argname)
			snprintf(left + len, sizeof(left) - (size_t)len, " %s", o->argname);
		fprintf(out, "  %-*s", LEFT - 3, left);
		if (strlen(left) > LEFT - 3)
			fprintf(out, "\n%*s", LEFT - 1, "");
		fputc(' ', out);
		print_wrapped(out, o->help, LEFT);
	}
}

/* echod's options, in --help order. */
static const struct opt echod_opts[] = {
	{"listen", 'l', OPT_ADDR, FIELD(config, listen), "ADDR", 0, 0, NULL,
	 "listen on ADDR: PORT, HOST:PORT, [V6ADDR]:PORT or unix:PATH; repeatable "
	 "(default: every IPv4 and IPv6 address, port 7127)"},
	{"udp", 0, OPT_FLAG, FIELD(config, udp), NULL, 0, 0, NULL,
	 "also serve UDP echo on the same addresses and ports (off by default: an open UDP echo "
	 "can be abused as a reflector)"},
	{"udp-rate", 0, OPT_NUM, FIELD(config, udp_rate), "N", 0, CONFIG_UDP_RATE_MAX, NULL,
	 "UDP datagrams per second answered per source address, 0 = unlimited (default 1000: "
	 "far above what an interactive client or a test needs, yet it caps what a forged "
	 "source address can be made to receive)"},
	{"udp-allow-low-ports", 0, OPT_FLAG, FIELD(config, udp_allow_low_ports), NULL, 0, 0, NULL,
	 "answer UDP from the well-known service ports the loop guard refuses (echo, chargen, "
	 "ntp...; see echod(1)) too: lab use only, as two such services could loop"},
	{"once", 0, OPT_FLAG, FIELD(config, once), NULL, 0, 0, NULL,
	 "tutorial mode: echo the first chunk a client sends (up to --buffer bytes), then close"},
	{"model", 'm', OPT_CHOICE, FIELD(config, model), "MODEL", 0, 0,
	 "auto|epoll|uring|threads|iterative",
	 "auto | epoll | uring | threads | iterative (default auto)"},
	{"workers", 'w', OPT_NUM, FIELD(config, workers), "N", 1, 1024, NULL,
	 "worker threads for epoll and uring (default: number of CPUs)"},
	{"buffer", 0, OPT_NUM, FIELD(config, buffer_bytes), "BYTES", 1, 16 << 20, NULL,
	 "receive buffer per connection (default 1024 with --once, else 16384)"},
	{"backlog", 0, OPT_NUM, FIELD(config, backlog), "N", 1, 65535, NULL,
	 "listen backlog (default SOMAXCONN)"},
	{"max-conns", 0, OPT_NUM, FIELD(config, max_conns), "N", 0, 10000000, NULL,
	 "serve at most N connections at once; the rest wait in the backlog (0 = no limit)"},
	{"idle-timeout", 0, OPT_SECONDS, FIELD(config, idle_timeout_ms), "S", 0, 86400, NULL,
	 "close a connection idle for S seconds (default 0 = off)"},
	{"grace", 0, OPT_SECONDS, FIELD(config, grace_ms), "S", 0, 3600, NULL,
	 "on SIGTERM/SIGINT let open connections finish for up to S seconds (default 5)"},
	{"user", 0, OPT_STR, FIELD(config, user), "NAME", 0, 0, NULL,
	 "drop privileges to NAME after binding"},
	{"no-sandbox", 0, OPT_FLAG, FIELD(config, no_sandbox), NULL, 0, 0, NULL,
	 "do not confine the process after start-up (seccomp, Landlock, no new privileges)"},
	{"verbose", 'v', OPT_COUNT, FIELD(config, verbose), NULL, 0, 0, NULL,
	 "log every connection"},
	{"quiet", 'q', OPT_FLAG, FIELD(config, quiet), NULL, 0, 0, NULL,
	 "log errors only (the listening lines are still printed)"},
	{"log-format", 0, OPT_CHOICE, FIELD(config, log_format), "FORMAT", 0, 0, "text|json",
	 "text | json (default text)"},
	{"help", 'h', OPT_HELP, 0, NULL, 0, 0, NULL, "print this help and exit"},
	{"version", 'V', OPT_VERSION, 0, NULL, 0, 0, NULL, "print the version and exit"},
};

#define NOPTS(tab) (sizeof(tab) / sizeof((tab)[0]))

static void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->model = "auto";
	cfg->backlog = SOMAXCONN;
	cfg->grace_ms = 5000;
	cfg->log_format = "text";
	cfg->udp_rate = -1; /* not given */
}

/* True when every -l address is a unix socket, which has no UDP twin. */
static bool only_unix(const struct config *cfg)
{
	for (int i = 0; i < cfg->listen.n; i++)
		if (!cfg->listen.addr[i].is_unix)
			return false;
	return cfg->listen.n > 0;
}

/* The UDP options' clashes; fills in the --udp-rate default. */
static int validate_udp(struct config *cfg, char *err, size_t errlen)
{
	if (!cfg->udp && (cfg->udp_rate >= 0 || cfg->udp_allow_low_ports)) {
		snprintf(err, errlen, "--%s needs --udp",
			 cfg->udp_rate >= 0 ? "udp-rate" : "udp-allow-low-ports");
		return -EINVAL;
	}
	if (cfg->udp_rate < 0)
		cfg->udp_rate = CONFIG_UDP_RATE;
	if (!cfg->udp)
		return 0;
	/* Every datagram is already answered once; --once would mean nothing. */
	if (cfg->once) {
		snprintf(err, errlen, "cannot use --once with --udp");
		return -EINVAL;
	}
	if (only_unix(cfg)) {
		snprintf(err, errlen, "--udp needs an IP address to listen on, not only unix:");
		return -EINVAL;
	}
	return 0;
}

/* Checks the clashes between options, once every option is known. */
static int validate(struct config *cfg, char *err, size_t errlen)
{
	bool blocking = !strcmp(cfg->model, "threads") || !strcmp(cfg->model, "iterative");

	if (cfg->workers && blocking) {
		snprintf(err, errlen, "--workers applies to the epoll and uring models, not %s",
			 cfg->model);
		return -EINVAL;
	}
	if (cfg->verbose && cfg->quiet) {
		snprintf(err, errlen, "cannot use --verbose with --quiet");
		return -EINVAL;
	}
	if (!cfg->buffer_bytes)
		cfg->buffer_bytes = cfg->once ? CONFIG_ONCE_BUFFER : CONFIG_STREAM_BUFFER;
	return validate_udp(cfg, err, errlen);
}

enum opts_result config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	enum opts_result res;
	int first;

	config_defaults(cfg);
	res = opts_parse(echod_opts, NOPTS(echod_opts), cfg, argc, argv, false, &first, err,
			 errlen);
	if (res != OPTS_OK)
		return res;
	if (first < argc) {
		snprintf(err, errlen, "unexpected argument \"%s\" (addresses go after -l)",
			 argv[first]);
		return OPTS_ERROR;
	}
	return validate(cfg, err, errlen) < 0 ? OPTS_ERROR : OPTS_OK;
}

void config_usage(FILE *out)
{
	fprintf(out, "usage: echod [options]\n"
		     "Serve the Echo protocol (RFC 862) over TCP (and UDP with --udp).\n\n");
	opts_usage(echod_opts, NOPTS(echod_opts), out);
}

/* echoc's options, in --help order. */
static const struct opt echoc_opts[] = {
	{"timeout", 't', OPT_SECONDS, FIELD(client_config, timeout_ms), "S", 0, 86400, NULL,
	 "give up when the server makes no progress for S seconds (default 5)"},
	{"once", 0, OPT_FLAG, FIELD(client_config, once), NULL, 0, 0, NULL,
	 "expect the server to close after the first echo (echod --once)"},
	{"no-newline", 'n', OPT_FLAG, FIELD(client_config, no_newline), NULL, 0, 0, NULL,
	 "send MESSAGE without the trailing newline"},
	{"udp", 'u', OPT_FLAG, FIELD(client_config, udp), NULL, 0, 0, NULL,
	 "use UDP: one datagram per message, per line, or per block of standard input"},
	{"help", 'h', OPT_HELP, 0, NULL, 0, 0, NULL, "print this help and exit"},
	{"version", 'V', OPT_VERSION, 0, NULL, 0, 0, NULL, "print the version and exit"},
};

enum opts_result client_config_parse(struct client_config *cfg, int argc, char **argv, char *err,
				     size_t errlen)
{
	char why[NET_ERRLEN];
	enum opts_result res;
	int first;

	memset(cfg, 0, sizeof(*cfg));
	cfg->timeout_ms = 5000;
	res = opts_parse(echoc_opts, NOPTS(echoc_opts), cfg, argc, argv, true, &first, err, errlen);
	if (res != OPTS_OK)
		return res;
	if (net_parse_addr(first < argc ? argv[first] : "localhost", NET_DEFAULT_PORT, &cfg->target,
			   why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", argv[first], why);
		return OPTS_ERROR;
	}
	if (!cfg->target.is_unix && !cfg->target.host[0])
		strcpy(cfg->target.host, "localhost");
	if (cfg->timeout_ms == 0) {
		snprintf(err, errlen, "--timeout must be more than 0 seconds");
		return OPTS_ERROR;
	}
	/* A datagram has no stream for the server to close. */
	if (cfg->udp && (cfg->once || cfg->target.is_unix)) {
		snprintf(err, errlen, "cannot use %s with --udp", cfg->once ? "--once" : "unix:");
		return OPTS_ERROR;
	}
	cfg->first_word = first < argc ? first + 1 : argc;
	return OPTS_OK;
}

void client_config_usage(FILE *out)
{
	fprintf(out, "usage: echoc [options] [HOST][:PORT] [MESSAGE...]\n"
		     "       echoc bench [options] [HOST][:PORT]\n"
		     "Send MESSAGE (or standard input) to an echo server and print the echo.\n"
		     "HOST defaults to localhost, PORT to 7127.\n\n");
	opts_usage(echoc_opts, NOPTS(echoc_opts), out);
}
