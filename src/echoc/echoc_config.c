/*
 * echoc_config.c - echoc's options (message, interactive and pipe modes):
 * its table, defaults and checks (opts.c does the parsing).  "echoc bench"
 * has its own table, in bench.c.
 */
#include "echoc_config.h"

#include <string.h>

#define FIELD(member) offsetof(struct client_config, member)

/* echoc's options, in --help order. */
static const struct opt echoc_opts[] = {
	{"timeout", 't', OPT_SECONDS, FIELD(timeout_ms), "S", 0, 86400, NULL,
	 "give up when the server makes no progress for S seconds (default 5)"},
	{"once", 0, OPT_FLAG, FIELD(once), NULL, 0, 0, NULL,
	 "expect the server to close after the first echo (echod --once)"},
	{"no-newline", 'n', OPT_FLAG, FIELD(no_newline), NULL, 0, 0, NULL,
	 "send MESSAGE without the trailing newline"},
	{"udp", 'u', OPT_FLAG, FIELD(udp), NULL, 0, 0, NULL,
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
	res = opts_parse(echoc_opts, OPTS_COUNT(echoc_opts), cfg, argc, argv, true, &first, err,
			 errlen);
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
	opts_usage(echoc_opts, OPTS_COUNT(echoc_opts), out);
}
